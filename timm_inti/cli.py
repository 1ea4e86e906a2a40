"""What every timm-inti command shares: one-line errors, exit statuses, ``--debug``, argument types.

An expected failure ends a command with one line on stderr, ``PROG: error: MESSAGE``, as
argparse ends a usage error, and an exit status that says whose problem it is:

* 2, a usage or configuration problem (a bad flag value, a model kwarg that does not fit):
  raise :class:`UsageError`, or let a ``ValueError`` from the model API through;
* 1, a runtime problem (an unreadable file, a checkpoint that does not fit, a full disk):
  raise :class:`CommandError`, or let ``OSError``, ``CheckpointError``,
  ``VideoDecodeError`` or an ``ImportError`` of an optional dependency through;
* 130, interrupted (Ctrl-C).

A traceback is printed only with ``--debug`` or ``TIMM_INTI_DEBUG=1``, for bug reports.
Anything else (a bug) keeps its traceback.

    @command('timm-inti-predict')
    def main(argv=None) -> int:
        ...
"""
import argparse
import functools
import os
import sys
from typing import Callable, Optional, Sequence

__all__ = ['UsageError', 'CommandError', 'command', 'add_debug_argument', 'positive_int', 'non_negative_int',
           'positive_float']

DEBUG_ENV = 'TIMM_INTI_DEBUG'


class UsageError(Exception):
    """A bad argument or configuration: the command exits with status 2."""
    exit_code = 2


class CommandError(Exception):
    """A runtime failure the user can fix (a file, the disk, the data): the command exits with status 1."""
    exit_code = 1


def _debug(argv: Optional[Sequence[str]]) -> bool:
    if os.environ.get(DEBUG_ENV, '') not in ('', '0'):
        return True
    return '--debug' in (sys.argv[1:] if argv is None else argv)


def _exit_code(error: BaseException) -> Optional[int]:
    """The exit status of an expected failure, or None for a bug (which keeps its traceback)."""
    from .vit import CheckpointError  # the model API's error for a checkpoint that does not fit
    if isinstance(error, (UsageError, CommandError)):
        return error.exit_code
    if isinstance(error, (CheckpointError, OSError, EOFError, UnicodeDecodeError, ImportError)):
        return 1  # ImportError: an optional dependency is missing (PyAV, matplotlib, transformers for SigLIP 2)
    if type(error).__name__ == 'VideoDecodeError':  # without importing the video stack (PyAV)
        return 1
    if isinstance(error, ValueError):  # the model API and argument checks name the value and what fits
        return 2
    return None


def _message(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f'not a text file ({error.reason} at byte {error.start})'
    if isinstance(error, ModuleNotFoundError) and error.name:
        return f'{error} (pip install {error.name.split(".")[0]})'
    text = str(error)
    if isinstance(error, OSError) and error.strerror:  # not "[Errno 28] ...: 'path'"
        text = error.strerror
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f'{text}: {error.filename}'
    return text or type(error).__name__


def command(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Wrap a command's ``main(argv) -> int`` so expected failures end with ``PROG: error: ...``."""
    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: Optional[Sequence[str]] = None) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                if _debug(argv):
                    raise
                print(f'{prog}: interrupted', file=sys.stderr)
                return 130
            except Exception as e:
                code = _exit_code(e)
                if code is None or _debug(argv):
                    raise
                print(f'{prog}: error: {_message(e)}', file=sys.stderr)
                return code
        return run
    return wrap


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--debug', action='store_true',
                        help=f'print the full traceback of an error (also {DEBUG_ENV}=1), for bug reports')


def _number(kind, minimum, strict: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a number')
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f'{text} is not {what}')
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 0, True, 'a positive integer (1 or more)')
non_negative_int = _number(int, 0, False, 'a non-negative integer (0 or more)')
positive_float = _number(float, 0.0, True, 'a positive number')
