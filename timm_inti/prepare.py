"""``python -m timm_inti.prepare SRC DST``: the ``timm-inti-prepare`` command (see ``timm_inti.video.prepare``)."""
import sys

from .video.prepare import main

__all__ = ['main']

if __name__ == '__main__':
    sys.exit(main())
