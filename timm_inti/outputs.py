""" What the collection commands write as they go: resumable result files and a progress line.

``timm-inti-predict``'s outputs survive a kill: each process appends what it finishes to part
files of its own (``PATH.part-RANK...``), flushed line by line; at the end rank 0 merges the
parts into the final file (atomically, ``timm_inti.files``) in input order, as one process
would have written it. A rerun reads what is done (a line torn by a kill is dropped) and skips
it; ``check_settings`` refuses to mix answers of other settings into an output.

``Progress`` is the one progress display of ``timm-inti-predict`` and ``timm-inti-prepare``:
a tqdm bar on a terminal, plain lines in a log.
"""
import glob
import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from .cli import CommandError, UsageError
from .files import atomic_path, write_atomic, write_json

__all__ = ['read_records', 'JsonlOutput', 'FeatureOutput', 'check_settings', 'Progress']


def read_records(path) -> List[dict]:
    """The complete JSON lines of a file (none if it does not exist); a torn last line is left out."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        return []
    records = []
    for line in data.split(b'\n')[:-1]:  # the part after the last newline is torn (or empty)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get('path'), str):
            records.append(record)
    return records


def _check_ours(path: Path, flag: str) -> None:
    """Refuse to merge into (and so replace) an existing file that this command did not write."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, 'rb') as f:
        head = f.read(1 << 16).split(b'\n')
    lines = [line for line in head[:-1] if line.strip()] or head[:1]
    try:
        ours = all(isinstance(json.loads(line).get('path'), str) for line in lines[:10])
    except (ValueError, AttributeError):
        ours = False
    if not ours:
        raise UsageError(f'{flag} {path} exists and is not a list of results of this command (JSON lines with a '
                         f'"path"): it would be replaced; name another file')


def _parts(path: Path, pattern: str) -> List[Path]:
    return sorted(path.parent.glob(glob.escape(path.name) + pattern))


class _Appender:
    """Appends JSON lines to a part file owned by this process, each flushed as it is written.

    A line torn by a kill (bytes after the last newline) is cut off first.
    """

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            with open(path, 'rb+') as f:
                data = f.read()
                f.truncate(data.rfind(b'\n') + 1)
        self.file = open(path, 'a')

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + '\n')
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class JsonlOutput:
    """``--output``: records in ``PATH.part-RANK`` while running, merged into PATH in input order at the end."""

    def __init__(self, path: str, rank: int):
        self.path = Path(path)
        self.part = Path(f'{path}.part-{rank}')
        _check_ours(self.path, '--output')
        self.done = {r['path']: r for r in self._all()}
        self.appender = None

    def _all(self) -> List[dict]:
        return [r for p in [self.path] + _parts(self.path, '.part-*') for r in read_records(p)]

    def open(self) -> None:
        self.appender = _Appender(self.part)

    def write(self, record: dict) -> None:
        if record['path'] not in self.done:
            self.appender.write(record)

    def close(self) -> None:
        if self.appender is not None:
            self.appender.close()

    def merge(self, inputs: Sequence[str]) -> Dict[str, dict]:
        """Write PATH with every record, the inputs first in input order; remove the parts."""
        records: Dict[str, dict] = {}
        for record in self._all():
            records.setdefault(record['path'], record)
        ordered = [records[p] for p in inputs if p in records]
        inputs_set = set(inputs)
        ordered += [r for p, r in records.items() if p not in inputs_set]
        write_atomic(self.path, lambda f: f.writelines(json.dumps(r) + '\n' for r in ordered))
        for part in _parts(self.path, '.part-*'):
            part.unlink()
        return records


class FeatureOutput:
    """``--features``: vectors appended per video to a part file per process, one file in input order at the end.

    Each vector is appended to ``PATH.part-RANK.f32`` (raw float32 rows) and flushed, then
    named in the process's part index (``PATH.part-RANK.jsonl``, lines ``{"path", "row",
    "dim"}``): a kill loses at most the videos in flight, and bytes of a row that the index
    does not name (cut by a kill) are cut off before appending again. Unreadable videos have
    no row (``--output`` lists them); without ``--output`` a rerun tries them again.
    """

    def __init__(self, path: str, rank: int):
        self.path = Path(path)
        self.index = self.path.with_suffix('.index.jsonl')
        self.rank = rank
        self.part_index = Path(f'{path}.part-{rank}.jsonl')
        self.part_data = Path(f'{path}.part-{rank}.f32')
        final = self._final_index()
        self.dim = self._load_final().shape[1] if final else None
        self.dim = self._check_dim(self.dim, self._part_records(), f'{self.path}\'s parts')
        self.done = {r['path'] for r in final} | {r['path'] for r in self._part_records()}
        self.appender = self.data = None
        self.rows = 0

    def _check_dim(self, dim: Optional[int], records: Sequence[dict], what: str) -> Optional[int]:
        for r in records:
            if dim is None:
                dim = r['dim']
            elif r['dim'] != dim:
                raise UsageError(f'--features {self.path}: {what} hold vectors of {r["dim"]} and {dim} numbers: '
                                 f'remove them and run again')
        return dim

    def _part_records(self, rank='*') -> List[dict]:
        """The rows of the part indexes whose bytes are all in their data file."""
        records = []
        for part in _parts(self.path, f'.part-{rank}.jsonl'):
            data = part.with_suffix('.f32')
            size = data.stat().st_size if data.is_file() else 0
            records += [dict(r, data=data) for r in read_records(part)
                        if isinstance(r.get('row'), int) and isinstance(r.get('dim'), int)
                        and (r['row'] + 1) * r['dim'] * 4 <= size]
        return records

    def _final_index(self) -> List[dict]:
        _check_ours(self.index, '--features index')
        records = read_records(self.index)
        if records or self.path.exists():
            rows = self._load_final().shape[0] if self.path.exists() else 0
            if rows != len(records):
                raise CommandError(
                    f'{self.path} has {rows} rows but {self.index} names {len(records)} videos (a merge was '
                    f'interrupted?): remove both and run again')
        return records

    def _load_final(self):
        try:
            if self.path.suffix == '.npy':
                array = np.load(self.path, mmap_mode='r')
            else:
                array = load_file(self.path)['features']
        except Exception as e:
            raise UsageError(f'--features {self.path} exists and is not a features file of this command '
                             f'({type(e).__name__}: {e}): it would be replaced; name another file') from e
        if array.ndim != 2:
            raise UsageError(f'--features {self.path} exists and holds a {array.ndim}-d array, not one vector per '
                             f'video: it would be replaced; name another file')
        return array

    def open(self) -> None:
        mine = self._part_records(self.rank)
        self.rows = 1 + max([r['row'] for r in mine] or [-1])
        self.appender = _Appender(self.part_index)
        self.data = open(self.part_data, 'ab')
        self.data.truncate(self.rows * (self.dim or 0) * 4)  # a row cut by a kill, not in the index

    def check(self, dim: int, model: str) -> None:
        """Refuse vectors of another width than those already in the file (another model's)."""
        if self.dim is not None and dim != self.dim:
            raise UsageError(f'--features {self.path} holds {self.dim}-d vectors of an earlier run, {model} gives '
                             f'{dim}-d ones: name another file (or remove it and its parts to start anew)')
        self.dim = dim

    def write(self, path: str, vector: Optional[torch.Tensor]) -> None:
        if path in self.done or vector is None:
            return
        self.data.write(np.ascontiguousarray(vector.float().cpu().numpy(), dtype=np.float32).tobytes())
        self.data.flush()  # the bytes first, then the line that names them
        self.appender.write(dict(path=path, row=self.rows, dim=int(vector.numel())))
        self.rows += 1

    def close(self) -> None:
        if self.appender is not None:
            self.appender.close()
            self.data.close()

    def merge(self, inputs: Sequence[str]) -> int:
        """Write PATH and its index: the inputs' vectors in input order, then any earlier others; remove the parts."""
        sources = {}  # path -> (array, row)
        final = self._final_index()
        if final:
            array = self._load_final()
            for row, r in enumerate(final):
                sources.setdefault(r['path'], (array, row))
        parts = {}
        for r in self._part_records():
            if r['path'] in sources:
                continue
            if r['data'] not in parts:
                parts[r['data']] = np.memmap(r['data'], dtype=np.float32, mode='r').reshape(-1, r['dim'])
            sources[r['path']] = (parts[r['data']], r['row'])
        inputs_set = set(inputs)
        order = [p for p in inputs if p in sources] + [p for p in sources if p not in inputs_set]
        dim = next(iter(sources.values()))[0].shape[1] if sources else 0
        with atomic_path(self.path) as tmp:
            if self.path.suffix == '.npy':
                out = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.float32, shape=(len(order), dim))
                for i, p in enumerate(order):
                    array, row = sources[p]
                    out[i] = array[row]
                out.flush()
                del out
            else:
                out = (np.stack([sources[p][0][sources[p][1]] for p in order]) if order
                       else np.zeros((0, dim), np.float32))
                save_file({'features': np.ascontiguousarray(out, dtype=np.float32)}, str(tmp),
                          metadata={'index': self.index.name})
        write_atomic(self.index, lambda f: f.writelines(json.dumps(dict(path=p)) + '\n' for p in order))
        del parts, sources
        legacy = _parts(self.path, '.part-*-*.npy')  # shards of versions before per-video parts: recomputed
        for part in _parts(self.path, '.part-*.f32') + _parts(self.path, '.part-*.jsonl') + legacy:
            part.unlink()
        return len(order)


def check_settings(path: str, flag: str, settings: dict, write: bool) -> None:
    """Refuse to add to an output made with other settings; record them beside an output that has none.

    ``PATH.settings.json`` holds them; a rerun with the same settings resumes, any other is
    refused naming what changed (its answers would sit beside the earlier ones as "already done").
    """
    record = Path(f'{path}.settings.json')
    results = Path(path).exists() or bool(_parts(Path(path), '.part-*'))
    if record.is_file() and results:
        try:
            before = json.loads(record.read_text())
        except ValueError:
            before = None
        if before != settings:
            if not isinstance(before, dict):
                raise UsageError(f'{record} is not a settings record of this command: remove it, or name another '
                                 f'{flag} file')
            changed = ', '.join(f'{k} {before.get(k)!r} -> {v!r}' for k, v in settings.items() if before.get(k) != v)
            raise UsageError(f'{flag} {path} holds results of other settings ({changed}): name another file, or run '
                             f'with the same settings to resume')
    elif write:  # a new output (or one from before settings were recorded): these are its settings
        write_json(record, settings)


class Progress:
    """Progress over ``total`` videos: a tqdm bar with rate and ETA on a terminal (when ``bar``); otherwise a plain
    line on stderr every ``interval`` seconds and one at the end (``interval=inf``: none), for logs.

    ``update(n, failed)`` counts n more videos done, ``failed`` of them unreadable; ``write`` prints a line that
    does not break the bar.
    """

    def __init__(self, prog: str, total: int, interval: float = 30.0, bar: bool = True, prefix: str = ''):
        self.prog, self.total, self.interval, self.prefix = prog, total, interval, prefix
        self.bar = tqdm(total=total, desc=prog, unit='video', dynamic_ncols=True) if bar and sys.stderr.isatty() \
            else None
        self.count = self.failed = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.count += n
        self.failed += failed
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(unreadable=self.failed, refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= self.interval or (self.count >= self.total and self.interval != float('inf')):
            self.last = now
            rate = self.count / max(now - self.start, 1e-9)
            eta = timedelta(seconds=round((self.total - self.count) / rate)) if rate > 0 else '?'
            self.write(f'{self.prog}: {self.prefix}{self.count}/{self.total} videos '
                       f'({100 * self.count / max(self.total, 1):.1f}%), {rate:.2f} videos/s, ETA {eta}, '
                       f'{self.failed} unreadable')

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
