""" Decoding video files into uint8 frames.

Two backends:

  * ``'pyav'`` (the default): PyAV, whose wheels bundle FFmpeg, so it works on a bare machine;
  * ``'torchcodec'``: used when it imports and finds FFmpeg's shared libraries.

Only the requested frames are returned. PyAV decodes forward from the last position and
seeks when a keyframe lies between it and the next requested frame (from the container's
keyframe index; without one, when that frame is more than 2 s ahead), so a sparse sample
of a long video decodes only the groups of pictures it touches. Frame ``i`` is the frame
whose timestamp is ``i / fps`` after the start of the stream.

Timestamps of scraped web video can be broken while every frame decodes: missing, all
equal, or out of order (a remux that lost them). The first two decoded frames are checked,
and every frame read in sequence after them: when a timestamp is missing or does not
increase, the video is read again in decode order, frame ``i`` being the ``i``-th decoded
frame, its length counted from its packets and its rate the codec's (25 when none is
stored). The same happens when the timestamps end before the frames do (variable frame
rate, wrong metadata). A file is called truncated or damaged only when its frames fail to
decode.

Frames come out as they are meant to be seen: a rotation in the stream's display matrix
(phone videos store portrait clips as rotated landscape frames) is applied, and
``VideoInfo``'s height and width are the displayed ones. ``short_side`` has FFmpeg's
scaler shrink the frames while converting them to RGB, which costs far less than
converting at full size and resizing afterwards.

Every failure (missing file, not a video, no video stream, truncated or damaged data)
raises ``VideoDecodeError``, whose message starts with the path.
"""
import bisect
import dataclasses
import importlib.util
import itertools
import math
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from einops import rearrange

__all__ = ['VideoDecodeError', 'VideoInfo', 'available_backends', 'probe', 'read_frames']


Indices = Union[Sequence[int], Callable[['VideoInfo'], Sequence[int]]]


class VideoDecodeError(ValueError):
    """A video that cannot be read; the message says which file and why."""

    def __init__(self, path, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: ``num_frames`` frames of ``height`` x ``width`` at ``fps`` frames per second."""
    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    duration: float
    backend: str
    rotation: int = 0  # counter-clockwise degrees applied to the stored frames (0, 90, 180, 270)


def _torchcodec_usable() -> bool:
    if importlib.util.find_spec('torchcodec') is None:
        return False
    try:  # importing the decoders loads FFmpeg's shared libraries, which may be missing
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:
        return False
    return True


def available_backends() -> List[str]:
    """Backends that work here, the default first."""
    backends = []
    if importlib.util.find_spec('av') is not None:
        backends.append('pyav')
    if _torchcodec_usable():
        backends.append('torchcodec')
    return backends


def _check_path(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(path, 'no such file')
    if os.path.isdir(path):
        raise VideoDecodeError(path, 'is a directory, not a video file')
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, 'empty file')
    return path


def _resolve_backend(backend: Optional[str]) -> str:
    backends = available_backends()
    if backend is None:
        if not backends:
            raise ImportError('no video backend: pip install "timm-inti[video]" (PyAV)')
        return backends[0]
    if backend not in ('pyav', 'torchcodec'):
        raise ValueError(f"unknown video backend {backend!r}: use 'pyav' or 'torchcodec'")
    if backend not in backends:
        hint = 'pip install av' if backend == 'pyav' else 'pip install torchcodec, and FFmpeg\'s shared libraries'
        raise ImportError(f'video backend {backend!r} is not usable here ({hint})')
    return backend


# ----------------------------------------------------------------------------------------------- PyAV

# seek when the next wanted frame is this many seconds ahead of the decoder's position
_SEEK_AHEAD_SECONDS = 2.0


def _tag_seconds(text: Optional[str]) -> float:
    """A Matroska ``DURATION`` tag ("00:00:10.040000000") in seconds, or 0."""
    try:
        hours, minutes, seconds = (text or '').split(':')
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return 0.0


def _pyav_info(path: str, container, stream, num_frames: Optional[int] = None) -> VideoInfo:
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if fps <= 0:
        raise VideoDecodeError(path, 'the video stream has no frame rate')
    if num_frames:  # known (a manifest): no need to look further
        return VideoInfo(path, int(num_frames), fps, stream.height, stream.width, num_frames / fps, 'pyav')
    # the video stream's own length; the container's spans every stream (an audio track can be longer)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = _tag_seconds(stream.metadata.get('DURATION'))  # Matroska/WebM per-track tag
    if not duration and len(container.streams) == 1 and container.duration is not None:
        duration = container.duration / 1e6  # microseconds (av.time_base)
    num_frames = stream.frames or round(duration * fps)
    if num_frames <= 0:  # no length in the metadata: the frames are counted and read in decode order
        raise _UnusableTimestamps()
    return VideoInfo(path, int(num_frames), fps, stream.height, stream.width, duration or num_frames / fps, 'pyav')


class _UnusableTimestamps(Exception):
    """The frames' timestamps are missing, repeated or out of order: read them in decode order."""


# the nominal rate of a video whose frames carry no usable time at all
_NOMINAL_FPS = 25.0


def _checked(frames):
    """Decoded frames, raising ``_UnusableTimestamps`` at the first whose timestamp is missing or does not increase."""
    previous = None
    for frame in frames:
        if frame.pts is None or (previous is not None and frame.pts <= previous):
            raise _UnusableTimestamps()
        previous = frame.pts
        yield frame


def _in_order_info(path: str, container, stream, num_frames: Optional[int] = None) -> VideoInfo:
    """``VideoInfo`` for reading in decode order: the frame count from the packets, the codec's frame rate.

    Reads (demuxes, does not decode) the whole stream unless ``num_frames`` is known; the
    caller opens the file again to decode it.
    """
    rate = stream.codec_context.framerate or stream.guessed_rate or stream.average_rate
    fps = float(rate) if rate and 0 < float(rate) <= 1000 else _NOMINAL_FPS
    if not num_frames:
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
    if num_frames <= 0:
        raise VideoDecodeError(path, 'the video stream holds no frames')
    return VideoInfo(path, int(num_frames), fps, stream.height, stream.width, num_frames / fps, 'pyav')


def _displayed(info: VideoInfo, rotation: int) -> VideoInfo:
    rotation = round(rotation / 90) % 4 * 90
    if rotation == info.rotation:
        return info
    height, width = (info.width, info.height) if rotation % 180 else (info.height, info.width)
    return dataclasses.replace(info, height=height, width=width, rotation=rotation)


def _output_size(info: VideoInfo, short_side: Optional[int]) -> Optional[Tuple[int, int]]:
    """The stored (width, height) to scale to so that the displayed short side is ``short_side``."""
    if not short_side or min(info.height, info.width) <= short_side:
        return None
    scale = short_side / min(info.height, info.width)
    height, width = (max(2, round(info.height * scale)), max(2, round(info.width * scale)))
    return (height, width) if info.rotation % 180 else (width, height)


def _to_rgb(frame, rotation: int, size: Optional[Tuple[int, int]]):
    if size is None:
        pixels = frame.to_ndarray(format='rgb24')
    else:
        pixels = frame.to_ndarray(format='rgb24', width=size[0], height=size[1], interpolation='BILINEAR')
    return np.ascontiguousarray(np.rot90(pixels, rotation // 90)) if rotation else pixels


def _keyframe_indices(stream, info: VideoInfo) -> List[int]:
    """Frame indices of the keyframes in the container's index (empty when it has none).

    MP4 indexes decoding timestamps, which run a constant B-frame delay behind the
    presentation ones: counted from the first entry (frame 0, a keyframe), they line up.
    """
    entries = stream.index_entries
    if not entries:
        return []
    time_base, first = float(stream.time_base), min(entry.timestamp for entry in entries)
    return sorted({round((entry.timestamp - first) * time_base * info.fps) for entry in entries if entry.is_keyframe})


def _open_pyav(path: str, threads: int = 0):
    import av
    try:
        container = av.open(path)
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f'not a readable video ({e.strerror or e})') from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, 'no video stream')
    stream = container.streams.video[0]
    # default: FFmpeg's slice threading, one thread for most files; DataLoader workers already decode
    # in parallel and frame threading measured 30% slower on 2 cores (benchmarks/decode.py)
    if threads:
        stream.thread_type = 'AUTO'
        stream.thread_count = threads
    return container, stream


def _pyav_read(path: str, indices: Indices, short_side: Optional[int] = None, threads: int = 0,
               num_frames: Optional[int] = None) -> Tuple[torch.Tensor, VideoInfo]:
    try:
        return _pyav_read_timed(path, indices, short_side, threads, num_frames)
    except _UnusableTimestamps:  # count the frames again: a length from broken timestamps is wrong too
        return _pyav_read_in_order(path, indices, short_side, threads, num_frames, recount=True)
    except _EndsEarly:  # the timestamps end before the frames may: the frames decide
        return _pyav_read_in_order(path, indices, short_side, threads, num_frames, recount=False)


class _EndsEarly(Exception):
    """The frames' timestamps end before a requested frame: decode order decides whether the data does."""


def _first_frames(path: str, frames, index_of: Callable):
    """The first decoded frame, and the decoder's frames from it on.

    The first two must be at least half a frame period apart (``index_of`` tells them apart):
    timestamps packed closer (a remux that numbered frames 0, 1, 2 in milliseconds) are unusable.
    """
    head = list(itertools.islice(frames, 2))
    if not head:
        raise VideoDecodeError(path, 'the video stream holds no decodable frame (truncated or damaged file?)')
    if len(head) == 2 and index_of(head[1]) <= index_of(head[0]):
        raise _UnusableTimestamps()
    return head[0], itertools.chain(head[1:], frames)


def _pyav_read_timed(path: str, indices: Indices, short_side: Optional[int] = None, threads: int = 0,
                     num_frames: Optional[int] = None) -> Tuple[torch.Tensor, VideoInfo]:
    """Frame ``i`` is the one whose timestamp is ``i / fps`` from the start, found by seeking."""
    import av
    container, stream = _open_pyav(path, threads)
    with container:
        info = _pyav_info(path, container, stream, num_frames)
        time_base, start = float(stream.time_base), stream.start_time or 0
        keyframes = _keyframe_indices(stream, info)
        seek_ahead = max(1, int(_SEEK_AHEAD_SECONDS * info.fps))

        def index_of(frame) -> int:
            return round((frame.pts - start) * time_base * info.fps)

        found = {}
        try:
            last, frames = _first_frames(path, _checked(container.decode(stream)), index_of)
            info = _displayed(info, last.rotation or 0)  # the first frame's side data carries the display matrix
            indices = _check_indices(indices, info)
            wanted = sorted(set(int(i) for i in indices))
            size = _output_size(info, short_side)
            position, current = index_of(last), None  # the last decoded frame's index, its pixels once converted
            for target in wanted:
                if position < target:
                    if frames is None:
                        seek = True
                    elif keyframes:  # seek when a keyframe between here and the target saves decoding
                        k = bisect.bisect_right(keyframes, target) - 1
                        seek = k >= 0 and keyframes[k] > position + 1
                    else:
                        seek = target - position > seek_ahead
                    if seek:
                        container.seek(start + int(target / info.fps / time_base), stream=stream, backward=True)
                        frames = _checked(container.decode(stream))
                    for frame in frames:
                        last, current, position = frame, None, index_of(frame)
                        if position >= target:
                            break
                    else:
                        frames = None
                        if target - position > _tolerated(info):
                            raise _EndsEarly()
                if current is None:
                    current = _to_rgb(last, info.rotation, size)
                found[target] = current
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f'truncated or damaged video data ({e.strerror or e})') from e
    return _stack(found, indices, info, size)


def _tolerated(info: VideoInfo) -> int:
    """Metadata frame counts can be a little high: a short tail is tolerated by repeating the last frame."""
    return max(3, math.ceil(0.05 * info.num_frames))


def _stack(found, indices, info: VideoInfo, size) -> Tuple[torch.Tensor, VideoInfo]:
    if size is not None:
        height, width = next(iter(found.values())).shape[:2]
        info = dataclasses.replace(info, height=height, width=width)
    return torch.stack([torch.from_numpy(found[int(i)]) for i in indices]), info


def _pyav_read_in_order(path: str, indices: Indices, short_side: Optional[int] = None, threads: int = 0,
                        num_frames: Optional[int] = None, recount: bool = True) -> Tuple[torch.Tensor, VideoInfo]:
    """Frame ``i`` is the ``i``-th decoded frame, whatever its timestamp: one pass from the start, no seeking."""
    import av
    if recount:
        container, stream = _open_pyav(path)
        with container:
            info = _in_order_info(path, container, stream, num_frames)
    container, stream = _open_pyav(path, threads)
    with container:
        if not recount:
            info = _pyav_info(path, container, stream, num_frames)
        found = {}
        try:
            frames = enumerate(container.decode(stream))
            _, first = next(frames, (0, None))
            if first is None:
                raise VideoDecodeError(path, 'the video stream holds no decodable frame (truncated or damaged file?)')
            info = _displayed(info, first.rotation or 0)
            indices = _check_indices(indices, info)
            wanted = set(int(i) for i in indices)
            size = _output_size(info, short_side)
            position, last = 0, first
            for position, last in itertools.chain([(0, first)], frames):
                if position in wanted:
                    found[position] = _to_rgb(last, info.rotation, size)
                if len(found) == len(wanted):
                    break
            missing = sorted(wanted - set(found))
            if missing and missing[-1] - position > _tolerated(info):
                raise VideoDecodeError(
                    path, f'frame {missing[-1]} of {info.num_frames} could not be decoded: the data ends after frame '
                          f'{position} (truncated or damaged file?)')
            if missing:  # a short tail: the last frame stands in
                pixels = _to_rgb(last, info.rotation, size)
                found.update({i: pixels for i in missing})
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f'truncated or damaged video data ({e.strerror or e})') from e
    return _stack(found, indices, info, size)


def _pyav_probe(path: str) -> VideoInfo:
    import av
    try:
        try:
            container, stream = _open_pyav(path)
            with container:
                info = _pyav_info(path, container, stream)
                time_base, start = float(stream.time_base), stream.start_time or 0
                first, _ = _first_frames(path, _checked(container.decode(stream)),
                                         lambda frame: round((frame.pts - start) * time_base * info.fps))
        except _UnusableTimestamps:  # decode order: the frames are counted, as read_frames counts them
            container, stream = _open_pyav(path)
            with container:
                info = _in_order_info(path, container, stream)
            container, stream = _open_pyav(path)
            with container:
                first = next(iter(container.decode(stream)), None)
            if first is None:
                raise VideoDecodeError(path, 'the video stream holds no decodable frame (truncated or damaged file?)')
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f'truncated or damaged video data ({e.strerror or e})') from e
    return _displayed(info, first.rotation or 0)


# ----------------------------------------------------------------------------------------- torchcodec

def _torchcodec_decoder(path: str):
    from torchcodec.decoders import VideoDecoder
    try:
        decoder = VideoDecoder(path, dimension_order='NHWC')
    except Exception as e:  # torchcodec raises RuntimeError / ValueError with FFmpeg's message
        raise VideoDecodeError(path, f'not a readable video ({e})') from e
    meta = decoder.metadata
    fps = float(meta.average_fps or 0)
    num_frames = int(meta.num_frames or 0)
    if fps <= 0 or num_frames <= 0:
        raise VideoDecodeError(path, 'the video stream holds no frames')
    info = VideoInfo(path, num_frames, fps, meta.height, meta.width, float(meta.duration_seconds or num_frames / fps),
                     'torchcodec')
    return decoder, info


def _torchcodec_read(path: str, indices: Indices, short_side: Optional[int] = None) -> Tuple[torch.Tensor, VideoInfo]:
    decoder, info = _torchcodec_decoder(path)
    indices = _check_indices(indices, info)
    try:
        frames = decoder.get_frames_at(indices=indices).data
    except Exception as e:
        raise VideoDecodeError(path, f'truncated or damaged video data ({e})') from e
    size = _output_size(info, short_side)
    if size is not None:
        frames = torch.nn.functional.interpolate(
            rearrange(frames, 't h w c -> t c h w'), size=size[::-1], mode='bilinear', antialias=True)
        frames = rearrange(frames, 't c h w -> t h w c').contiguous()
        info = dataclasses.replace(info, height=size[1], width=size[0])
    return frames, info


def _check_indices(indices: Indices, info: VideoInfo) -> List[int]:
    if callable(indices):
        indices = indices(info)
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError('read_frames needs at least one frame index')
    if min(indices) < 0 or max(indices) >= info.num_frames:
        raise ValueError(f'frame indices must lie in [0, {info.num_frames}) for {info.path}, '
                         f'got {min(indices)}..{max(indices)}')
    return indices


# -------------------------------------------------------------------------------------------- public

def probe(path, backend: Optional[str] = None) -> VideoInfo:
    """Read a video's frame count, rate and size without decoding its frames."""
    path = _check_path(path)
    if _resolve_backend(backend) == 'torchcodec':
        return _torchcodec_decoder(path)[1]
    return _pyav_probe(path)


def read_frames(path, indices: Indices, backend: Optional[str] = None, short_side: Optional[int] = None,
                threads: int = 0, num_frames: Optional[int] = None) -> Tuple[torch.Tensor, VideoInfo]:
    """Decode the frames at ``indices`` (in that order, repeats allowed), upright.

    Args:
        path: A video file.
        indices: Frame indices, or a function of the video's ``VideoInfo`` returning them
            (so a sampler can see the frame count without opening the file twice).
        backend: 'pyav' or 'torchcodec' (default: the first of ``available_backends()``).
        short_side: Shrink frames whose short side is longer to this short side (aspect kept),
            while decoding; larger frames cost more to convert and to transform.
        threads: PyAV decoder threads (frame and slice threading); 0 leaves FFmpeg's default
            (slice threading only, which most H.264 files do not use): best with one
            DataLoader worker per core.
        num_frames: The frame count when known (from a ``timm-inti-prepare`` manifest), which
            spares PyAV counting the packets of a stream whose container stores no count.

    Returns:
        uint8 frames (len(indices), H, W, 3) in RGB, and the video's ``VideoInfo`` (its
        height and width those of the returned frames).
    """
    path = _check_path(path)
    if _resolve_backend(backend) == 'torchcodec':
        return _torchcodec_read(path, indices, short_side)
    return _pyav_read(path, indices, short_side, threads, num_frames)
