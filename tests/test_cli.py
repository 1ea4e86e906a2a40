"""timm_inti.cli: what every command does with an expected failure, and the argument types."""
import argparse

import pytest

from timm_inti import CheckpointError
from timm_inti.cli import CommandError, UsageError, command, non_negative_int, positive_float, positive_int


def failing(error):
    @command('prog')
    def main(argv=None):
        raise error
    return main


@pytest.mark.parametrize('error, code, message', [
    (UsageError('--x 0 is not allowed'), 2, 'prog: error: --x 0 is not allowed'),
    (ValueError('inti_after must be a sequence'), 2, 'prog: error: inti_after must be a sequence'),
    (CommandError('a.mp4: not a video'), 1, 'prog: error: a.mp4: not a video'),
    (CheckpointError('ckpt.pth: truncated'), 1, 'prog: error: ckpt.pth: truncated'),
    (FileNotFoundError(2, 'No such file or directory', 'x.txt'), 1, 'prog: error: No such file or directory: x.txt'),
    (ModuleNotFoundError("No module named 'transformers'", name='transformers'), 1,
     "prog: error: No module named 'transformers' (pip install transformers)"),
    (KeyboardInterrupt(), 130, 'prog: interrupted'),
])
def test_expected_failures_end_with_one_line(error, code, message, capsys, monkeypatch):
    monkeypatch.delenv('TIMM_INTI_DEBUG', raising=False)
    assert failing(error)([]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_a_bug_keeps_its_traceback_and_debug_shows_every_one(monkeypatch):
    monkeypatch.delenv('TIMM_INTI_DEBUG', raising=False)
    with pytest.raises(KeyError):
        failing(KeyError('bug'))([])
    with pytest.raises(UsageError):
        failing(UsageError('bad'))(['--debug'])
    monkeypatch.setenv('TIMM_INTI_DEBUG', '1')
    with pytest.raises(CommandError):
        failing(CommandError('bad'))([])


def test_number_types():
    assert positive_int('3') == 3 and non_negative_int('0') == 0 and positive_float('0.5') == 0.5
    for parse, text in ((positive_int, '0'), (positive_int, '-1'), (non_negative_int, '-1'), (positive_float, '0'),
                        (positive_int, 'two')):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
