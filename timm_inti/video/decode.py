""" Decoding video files into uint8 frames.

Two backends:

  * ``'pyav'`` (the default): PyAV, whose wheels bundle FFmpeg, so it works on a bare machine;
  * ``'torchcodec'``: used when it imports and finds FFmpeg's shared libraries.

Only the requested frames are returned. PyAV decodes forward from the last position and
seeks when a keyframe lies between it and the next requested frame (from the container's
keyframe index; without one, when that frame is more than 2 s ahead), so a sparse sample
of a long video decodes only the groups of pictures it touches. Frame ``i`` is the frame
whose timestamp is ``i / fps`` after the start of the stream.

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
import math
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from einops import rearrange

__all__ = ['VideoDecodeError', 'VideoInfo', 'available_backends', 'probe', 'read_frames']

VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.mpg', '.mpeg', '.wmv', '.flv', '.gif')

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
    if num_frames <= 0:  # no metadata for this stream: count its packets
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        container.seek(0)
        duration = num_frames / fps
    if num_frames <= 0:
        raise VideoDecodeError(path, 'the video stream holds no frames')
    return VideoInfo(path, int(num_frames), fps, stream.height, stream.width, duration or num_frames / fps, 'pyav')


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
    import av
    container, stream = _open_pyav(path, threads)
    with container:
        info = _pyav_info(path, container, stream, num_frames)
        time_base, start = float(stream.time_base), stream.start_time or 0
        keyframes = _keyframe_indices(stream, info)
        position = -1
        seek_ahead = max(1, int(_SEEK_AHEAD_SECONDS * info.fps))
        # metadata frame counts can be a little high: tolerate a short tail by repeating the last frame
        tolerated = max(3, math.ceil(0.05 * info.num_frames))

        def index_of(frame) -> int:
            return round((frame.pts - start) * time_base * info.fps) if frame.pts is not None else position

        found = {}
        try:
            frames = container.decode(stream)
            last = next(frames, None)  # its side data carries the display matrix
            if last is None:
                raise VideoDecodeError(path, 'the video stream holds no decodable frame (truncated or damaged file?)')
            info = _displayed(info, last.rotation or 0)
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
                        frames = container.decode(stream)
                    for frame in frames:
                        if frame.pts is None:
                            continue
                        last, current, position = frame, None, index_of(frame)
                        if position >= target:
                            break
                    else:
                        frames = None
                        if target - position > tolerated:
                            raise VideoDecodeError(
                                path, f'frame {target} of {info.num_frames} could not be decoded: the data ends '
                                      f'after frame {position} (truncated or damaged file?)')
                if current is None:
                    current = _to_rgb(last, info.rotation, size)
                found[target] = current
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f'truncated or damaged video data ({e.strerror or e})') from e
    if size is not None:
        height, width = found[wanted[0]].shape[:2]
        info = dataclasses.replace(info, height=height, width=width)
    return torch.stack([torch.from_numpy(found[int(i)]) for i in indices]), info


def _pyav_probe(path: str) -> VideoInfo:
    import av
    container, stream = _open_pyav(path)
    with container:
        info = _pyav_info(path, container, stream)
        try:
            first = next(iter(container.decode(stream)), None)
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f'truncated or damaged video data ({e.strerror or e})') from e
        return _displayed(info, (first.rotation or 0) if first is not None else 0)


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
