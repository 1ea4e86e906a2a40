""" Transcoding one video for fast training: ``prepare_video(source, output, Options(...))``.

The video is decoded, turned upright (display matrix), scaled to a short side of
``short_side`` pixels (never enlarged), optionally capped to ``max_fps`` frames per second,
and re-encoded with libx264 as MP4 with a keyframe every ``gop`` frames and the index at the
front (``faststart``), tuned for fast decoding (x264 ``tune=fastdecode``: CAVLC entropy
coding, no deblocking filter). Audio is dropped. The output has clean constant-rate
timestamps; a source whose timestamps are broken but whose frames decode is written in
decode order (``timm_inti.video.decode``). The defaults come from the storage measurements
of ``benchmarks/pipeline.py`` (docs/data.md, "Feeding the model").

The ``timm-inti-prepare`` command (``timm_inti.prepare``) runs this over a dataset.
"""
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Tuple

import numpy as np

from ..files import atomic_path
from .decode import (
    VideoDecodeError,
    _check_path,
    _checked,
    _displayed,
    _first_frames,
    _in_order_info,
    _open_pyav,
    _pyav_info,
    _UnusableTimestamps,
)

__all__ = ['Options', 'prepare_video', 'DEFAULT_SHORT_SIDE', 'DEFAULT_GOP', 'DEFAULT_CRF', 'DEFAULT_TUNE',
           'X264_PRESETS', 'X264_TUNES']

# chosen from benchmarks/pipeline.py's storage table (docs/data.md, "Feeding the model")
DEFAULT_SHORT_SIDE = 256
DEFAULT_GOP = 16
DEFAULT_CRF = 23
DEFAULT_TUNE = 'fastdecode'  # CAVLC, no deblocking: measured 2-4x faster to decode for 10% more disk
X264_PRESETS = ('ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow',
                'placebo')
X264_TUNES = ('film', 'animation', 'grain', 'stillimage', 'psnr', 'ssim', 'fastdecode', 'zerolatency')


@dataclass(frozen=True)
class Options:
    """How ``prepare_video`` encodes: short side (0: keep the size), frame-rate cap (0: keep it), keyframe interval,
    x264 quality, preset and tune ('': x264's default coding)."""
    short_side: int = DEFAULT_SHORT_SIDE
    max_fps: float = 0.0
    gop: int = DEFAULT_GOP
    crf: int = DEFAULT_CRF
    preset: str = 'veryfast'
    tune: str = DEFAULT_TUNE


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _target_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
    """Displayed (width, height) at the given short side (never enlarged), even for yuv420p."""
    if short_side and min(width, height) > short_side:
        scale = short_side / min(width, height)
        width, height = width * scale, height * scale
    return _even(width), _even(height)


def prepare_video(source: str, output: Path, options: Options = Options()) -> None:
    """Re-encode one video upright at the options' size, rate and keyframe interval (raises VideoDecodeError).

    The output has clean constant-rate timestamps. A source whose timestamps are missing,
    repeated or out of order (``timm_inti.video.decode`` reads those in decode order) is
    written in decode order at its codec's frame rate.
    """
    source = _check_path(source)
    try:
        _encode(source, output, options, in_order=False)
    except _UnusableTimestamps:  # nothing of the first attempt is left: atomic_path removed its temporary
        _encode(source, output, options, in_order=True)


def _encode(source: str, output: Path, options: Options, in_order: bool) -> None:
    import av  # PyAV: the video extra

    if in_order:
        container, stream = _open_pyav(source)
        with container:
            info = _in_order_info(source, container, stream)
    container, stream = _open_pyav(source)
    with container:
        if not in_order:
            info = _pyav_info(source, container, stream)
        time_base, start = Fraction(stream.time_base or 1), stream.start_time or 0
        source_rate = Fraction(info.fps).limit_denominator(1001)
        rate = source_rate
        if options.max_fps and rate > options.max_fps:
            rate = Fraction(options.max_fps).limit_denominator(1001)
        count = 0
        try:
            frames = container.decode(stream)
            if in_order:  # the k-th decoded frame is shown at k / rate
                timed = ((k / source_rate, frame) for k, frame in enumerate(frames))
            else:
                first, rest = _first_frames(source, _checked(frames),
                                            lambda frame: round((frame.pts - start) * time_base * source_rate))
                timed = (((frame.pts - start) * time_base, frame) for frame in itertools.chain([first], rest))
            with atomic_path(output) as tmp, av.open(str(tmp), 'w', format='mp4',
                                                     options={'movflags': '+faststart'}) as out:
                video = None
                for seconds, frame in timed:
                    if video is None:  # the first frame carries the display matrix
                        info = _displayed(info, frame.rotation or 0)
                        width, height = _target_size(info.width, info.height, options.short_side)
                        x264 = {'g': str(options.gop), 'keyint_min': str(min(options.gop, 25)),
                                'crf': str(options.crf), 'preset': options.preset, 'threads': '1'}
                        if options.tune:
                            x264['tune'] = options.tune
                        video = out.add_stream('libx264', rate=rate, options=x264)
                        video.width, video.height, video.pix_fmt = width, height, 'yuv420p'
                        video.codec_context.time_base = 1 / rate
                    # constant rate out: frame n shows the source at n / rate (drops frames above the cap)
                    n = math.floor(seconds * rate + Fraction(1, 2) - Fraction(1, 10 ** 6))  # nearest, ties earlier
                    if n < count:
                        continue
                    if info.rotation:
                        pixels = frame.to_ndarray(format='rgb24', width=height if info.rotation % 180 else width,
                                                  height=width if info.rotation % 180 else height,
                                                  interpolation='BICUBIC')
                        picture = av.VideoFrame.from_ndarray(
                            np.ascontiguousarray(np.rot90(pixels, info.rotation // 90)), format='rgb24')
                    else:
                        picture = frame.reformat(width=width, height=height, format='yuv420p', interpolation='BICUBIC')
                    picture.time_base = video.codec_context.time_base
                    while count <= n:  # a gap in a variable-rate source repeats the frame
                        picture.pts = count
                        for packet in video.encode(picture):
                            out.mux(packet)
                        count += 1
                if video is None:
                    raise VideoDecodeError(source, 'the video stream holds no decodable frame')
                expected = round(info.num_frames * rate / source_rate)
                if count < 0.9 * expected:
                    raise VideoDecodeError(source, f'truncated or damaged: only {count} of {expected} frames decode')
                for packet in video.encode():
                    out.mux(packet)
        except av.FFmpegError as e:
            raise VideoDecodeError(source, f'truncated or damaged video data ({e.strerror or e})') from e
