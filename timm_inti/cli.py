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
           'positive_float', 'read_config', 'dump_config']

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


def read_config(parser: argparse.ArgumentParser, path: str) -> dict:
    """Flag defaults from a YAML file (timm's ``-c/--config``): ``{dest: value}``, checked as the flags would be.

    Keys are the parser's argument names, ``drop_path`` or ``drop-path``. An unknown key, a
    value of the wrong type or outside the flag's choices is refused as a :class:`UsageError`
    naming the file and the key.
    """
    import yaml
    with open(path) as f:
        try:
            values = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise UsageError(f'{path}: not YAML ({str(e).splitlines()[0]})') from e
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f'{path}: expected a mapping of flag names to values, got {type(values).__name__}')
    actions = {a.dest: a for a in parser._actions if a.dest not in ('help', argparse.SUPPRESS)}
    config = {}
    for key, value in values.items():
        dest = str(key).lstrip('-').replace('-', '_')
        action = actions.get(dest)
        if action is None:
            raise UsageError(f'{path}: unknown key {key!r}, not a flag of {parser.prog}')
        config[dest] = _check_value(action, value, f'{path}: {key}')
    return config


def _check_value(action: argparse.Action, value, where: str):
    if value is None:
        return None
    if action.nargs == 0:  # store_true, --x/--no-x
        if not isinstance(value, bool):
            raise UsageError(f'{where}: expected true or false, got {value!r}')
        return value
    if isinstance(action.default, dict):  # k=v pairs (timm's ParseKwargs): a mapping; lists as the (a, b) they were
        if not isinstance(value, dict):
            raise UsageError(f'{where}: expected a mapping of names to values, got {value!r}')
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    if action.type is None and action.choices is None:
        return value
    many = action.nargs not in (None, '?')
    items = value if many and isinstance(value, (list, tuple)) else [value]
    if many != isinstance(value, (list, tuple)) or isinstance(action.nargs, int) and len(items) != action.nargs:
        count = f'{action.nargs} values' if isinstance(action.nargs, int) else 'a list' if many else 'one value'
        raise UsageError(f'{where}: expected {count}, got {value!r}')
    try:
        items = [action.type(str(v)) if action.type else v for v in items]
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise UsageError(f'{where}: {e}') from e
    bad = [v for v in items if action.choices is not None and v not in action.choices]
    if bad:
        raise UsageError(f'{where}: {bad[0]!r} is not one of {", ".join(map(str, action.choices))}')
    return items if many else items[0]


def dump_config(values: dict) -> str:
    """``values`` as YAML that :func:`read_config` reads back (tuples as lists)."""
    import yaml

    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v
    return yaml.safe_dump({k: plain(v) for k, v in values.items()}, default_flow_style=None, sort_keys=False)


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
