"""Writing files atomically: through a temporary file in the same folder, then ``os.replace``.

The one home of atomic writes in the project (checkpoints, results, manifests, plots). A
run that stops half-way leaves the previous file in place, never a truncated one under the
final name, and a failed write (disk full) removes its temporary file and names the path.
"""
import contextlib
import errno
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Union

__all__ = ['atomic_path', 'write_atomic', 'write_csv', 'write_json', 'write_text', 'pyplot', 'write_png',
           'describe_machine']


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``, on failure remove it.

    For writers that want a file name (``torch.save``, ``safetensors.torch.save_file``,
    ``fig.savefig``). An ``OSError`` while writing (a full disk, say) is raised again naming
    ``path``, not the temporary name.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(e.errno, f'cannot write {path}: {os.strerror(e.errno)}', str(path)) from e
        raise


def write_atomic(path: Union[str, Path], write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then move it onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') if binary else open(tmp, 'w', newline='') as f:
            write(f)


def write_csv(path: Path, rows, columns) -> None:
    import csv

    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    write_atomic(path, write)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_json(path: Path, obj, indent: int = 2) -> None:
    write_atomic(path, lambda f: json.dump(obj, f, indent=indent))


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no plot (pip install "timm-inti[plot]")', file=sys.stderr)
        return None
    return plt


def write_png(path: Path, fig) -> None:
    """Save a matplotlib figure atomically, then close it."""
    write_atomic(path, lambda f: fig.savefig(f, format='png', dpi=120), binary=True)
    import matplotlib.pyplot as plt
    plt.close(fig)


def describe_machine(device: str = 'cpu') -> str:
    """The machine a result came from, for the line printed beside every figure.

    The CPU model, logical CPUs, torch threads and the load average (figures measured while
    other work ran are not comparable), and the GPU on ``device='cuda'``.
    """
    import platform

    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    text = f'{cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads'
    if hasattr(os, 'getloadavg'):
        text += ', load average ' + ' / '.join(f'{x:.1f}' for x in os.getloadavg())
    if device == 'cuda' and torch.cuda.is_available():
        text = f'{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}); {text}'
    return text
