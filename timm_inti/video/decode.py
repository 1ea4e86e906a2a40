""" Decoding video files into uint8 frames.

Two backends:

  * ``'pyav'`` (the default): PyAV, whose wheels bundle FFmpeg, so it works on a bare machine;
  * ``'torchcodec'``: used when it imports and finds FFmpeg's shared libraries.

Only the requested frames are returned. PyAV decodes forward from the last position and
seeks to the nearest preceding keyframe when the next requested frame is far ahead, so a
sparse sample of a long video does not decode the whole file. Frame ``i`` is the frame
whose timestamp is ``i / fps`` after the start of the stream.

Every failure (missing file, not a video, no video stream, truncated or damaged data)
raises ``VideoDecodeError``, whose message starts with the path.
"""
import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

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


def _pyav_info(path: str, container, stream) -> VideoInfo:
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if fps <= 0:
        raise VideoDecodeError(path, 'the video stream has no frame rate')
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1e6  # microseconds (av.time_base)
    else:
        duration = 0.0
    num_frames = stream.frames or round(duration * fps)
    if num_frames <= 0:  # no metadata at all: count the packets of the stream
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        container.seek(0)
        duration = num_frames / fps
    if num_frames <= 0:
        raise VideoDecodeError(path, 'the video stream holds no frames')
    return VideoInfo(path, int(num_frames), fps, stream.height, stream.width, duration or num_frames / fps, 'pyav')


def _open_pyav(path: str):
    import av
    try:
        container = av.open(path)
    except av.FFmpegError as e:
        raise VideoDecodeError(path, f'not a readable video ({e.strerror or e})') from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, 'no video stream')
    # PyAV's default threading: frame threading measured 30% slower on 2 cores (benchmarks/decode.py),
    # and DataLoader workers already decode in parallel
    return container, container.streams.video[0]


def _pyav_read(path: str, indices: Indices) -> Tuple[torch.Tensor, VideoInfo]:
    import av
    container, stream = _open_pyav(path)
    with container:
        info = _pyav_info(path, container, stream)
        indices = _check_indices(indices, info)
        time_base, start = float(stream.time_base), stream.start_time or 0
        seek_ahead = max(1, int(_SEEK_AHEAD_SECONDS * info.fps))
        # metadata frame counts can be a little high: tolerate a short tail by repeating the last frame
        tolerated = max(3, math.ceil(0.05 * info.num_frames))

        wanted = sorted(set(int(i) for i in indices))
        found = {}
        frames = None
        position, current = -1, None  # index and pixels of the last decoded frame
        try:
            for target in wanted:
                if current is not None and position >= target:
                    found[target] = current
                    continue
                if frames is None or target - position > seek_ahead:
                    container.seek(start + int(target / info.fps / time_base), stream=stream, backward=True)
                    frames = container.decode(stream)
                for frame in frames:
                    if frame.pts is None:
                        continue
                    position = round((frame.pts - start) * time_base * info.fps)
                    if position >= target:
                        current = frame.to_ndarray(format='rgb24')
                        found[target] = current
                        break
                else:
                    frames = None
                    if current is None or target - position > tolerated:
                        raise VideoDecodeError(
                            path, f'frame {target} of {info.num_frames} could not be decoded: the data ends after '
                                  f'frame {position} (truncated or damaged file?)')
                    found[target] = current
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f'truncated or damaged video data ({e.strerror or e})') from e
    return torch.stack([torch.from_numpy(found[int(i)]) for i in indices]), info


def _pyav_probe(path: str) -> VideoInfo:
    container, stream = _open_pyav(path)
    with container:
        return _pyav_info(path, container, stream)


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


def _torchcodec_read(path: str, indices: Indices) -> Tuple[torch.Tensor, VideoInfo]:
    decoder, info = _torchcodec_decoder(path)
    indices = _check_indices(indices, info)
    try:
        frames = decoder.get_frames_at(indices=indices).data
    except Exception as e:
        raise VideoDecodeError(path, f'truncated or damaged video data ({e})') from e
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


def read_frames(path, indices: Indices, backend: Optional[str] = None) -> Tuple[torch.Tensor, VideoInfo]:
    """Decode the frames at ``indices`` (in that order, repeats allowed).

    Args:
        path: A video file.
        indices: Frame indices, or a function of the video's ``VideoInfo`` returning them
            (so a sampler can see the frame count without opening the file twice).
        backend: 'pyav' or 'torchcodec' (default: the first of ``available_backends()``).

    Returns:
        uint8 frames (len(indices), H, W, 3) in RGB, and the video's ``VideoInfo``.
    """
    path = _check_path(path)
    if _resolve_backend(backend) == 'torchcodec':
        return _torchcodec_read(path, indices)
    return _pyav_read(path, indices)
