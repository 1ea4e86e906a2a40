"""Test session setup: offline, with a private Hugging Face cache that tests fill themselves.

The environment is set before anything imports huggingface_hub, so every download in the
suite goes through the real Hub code path but is served from this cache, as it would be
for a user with ``HF_HUB_OFFLINE=1``.
"""
import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

_HF_HOME = tempfile.mkdtemp(prefix='timm_inti_hf_home_')
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ['HF_HOME'] = _HF_HOME
os.environ['HF_HUB_OFFLINE'] = '1'
for _var in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_TOKEN'):
    os.environ.pop(_var, None)

import pytest  # noqa: E402
import torch  # noqa: E402

# a shrunken ViT: 4 blocks of width 64 on 32x32 frames (4x4 patch grid)
TINY_KWARGS = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2)


@pytest.fixture
def tiny_kwargs():
    return dict(TINY_KWARGS)


def put_in_hub_cache(repo_id: str, filename: str, data: bytes, revision: str = 'main') -> Path:
    """Store ``data`` as ``filename`` of Hub repo ``repo_id`` in the session's cache, in the Hub's layout.

    blobs/<sha256>, snapshots/<commit>/<filename> linking to it, refs/<revision> naming the commit:
    what ``huggingface_hub`` leaves behind after a download.
    """
    repo_dir = Path(_HF_HOME) / 'hub' / ('models--' + repo_id.replace('/', '--'))
    ref = repo_dir / 'refs' / revision
    if ref.exists():
        commit = ref.read_text().strip()
    else:
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    blob = repo_dir / 'blobs' / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo_dir / 'snapshots' / commit / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
    return link


@pytest.fixture
def hub_cache():
    """``put(repo_id, filename, data)`` into the session's offline Hub cache."""
    return put_in_hub_cache


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
