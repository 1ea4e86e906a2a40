"""Writing benchmark results: through a temporary file in the same folder, then ``os.replace``.

A run that stops half-way leaves the previous results in place, never a truncated file.
"""
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then move it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with (os.fdopen(fd, 'wb') if binary else os.fdopen(fd, 'w', newline='')) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_csv(path: Path, rows, columns) -> None:
    import csv

    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    write_atomic(path, write)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


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
