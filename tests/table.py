"""The error-table check shared by the modules' test files (the pattern of tests/test_errors.py).

``check_case(main, prog, argv, tmp, code, message, writes)`` runs a command in-process and
asserts its exit status, that its last stderr line is ``PROG: error: ...`` matching
``message`` (a regex), that there is no traceback, and that under ``tmp`` no file changed and
no new path appeared except those matching the ``writes`` globs.
"""
import fnmatch
import hashlib
import re
from pathlib import Path


def snapshot(folder: Path):
    """Every path under ``folder``: a digest for files, None for folders."""
    found = {}
    for path in sorted(folder.rglob('*')):
        rel = str(path.relative_to(folder))
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return found


def check_case(main, prog: str, argv, tmp: Path, code: int, message: str, capsys, writes=()):
    before = snapshot(tmp)
    capsys.readouterr()
    try:
        got = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's refusal: usage, then one error line, exit 2
        got = e.code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1] if err.strip() else ''
    assert 'Traceback' not in err, err
    assert got == code, f'exit {got}, not {code}: {err[-2000:]}'
    assert last.startswith(f'{prog}: error: '), err[-2000:]
    assert re.search(message, last), f'{message!r} not in {last!r}'
    after = snapshot(tmp)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f'changed or removed: {changed}'
    new = [p for p in after if p not in before and not any(fnmatch.fnmatch(p, g) for g in writes)]
    assert not new, f'left on disk: {new}'
    return last
