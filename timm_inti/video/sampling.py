""" Which frames of a video make a clip.

Two strategies, each for training (random) and evaluation (deterministic, several clips):

  * segment sampling (TSN): the video is cut into ``num_frames`` equal segments and one
    frame is taken from each: at random for training, at the same relative offset in every
    segment for evaluation (the centre for one clip; evenly spread offsets for several);
  * dense sampling: ``num_frames`` frames ``stride`` apart from one window: a random window
    for training, evenly spread windows for evaluation (the centre for one clip).

Videos shorter than a clip still give ``num_frames`` indices, in order: segment sampling
repeats frames (segments are shorter than a frame), dense sampling clamps the window to
the video, repeating its last frame. Randomness comes from ``generator`` (default: torch's
global generator, which DataLoader seeds per worker).
"""
from typing import Optional

import torch

__all__ = ['segment_indices', 'dense_indices', 'sample_indices']


def _check(num_video_frames: int, num_frames: int, num_clips: int) -> None:
    if num_video_frames < 1:
        raise ValueError(f'cannot sample from a video of {num_video_frames} frames')
    if num_frames < 1 or num_clips < 1:
        raise ValueError(f'num_frames and num_clips must be positive, got {num_frames} and {num_clips}')


def segment_indices(
        num_video_frames: int,
        num_frames: int,
        train: bool,
        num_clips: int = 1,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """TSN-style sampling: one frame from each of ``num_frames`` equal segments.

    Returns:
        Frame indices, (num_frames,) when training, (num_clips, num_frames) for evaluation.
    """
    _check(num_video_frames, num_frames, num_clips)
    segment = num_video_frames / num_frames
    starts = torch.arange(num_frames, dtype=torch.float64) * segment
    if train:
        offsets = torch.rand(num_frames, generator=generator, dtype=torch.float64) * segment
        return (starts + offsets).long().clamp_(max=num_video_frames - 1)
    offsets = (torch.arange(num_clips, dtype=torch.float64) + 0.5) / num_clips * segment
    return (starts[None] + offsets[:, None]).long().clamp_(max=num_video_frames - 1)


def dense_indices(
        num_video_frames: int,
        num_frames: int,
        stride: int,
        train: bool,
        num_clips: int = 1,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """``num_frames`` frames ``stride`` apart from one window of the video.

    Returns:
        Frame indices, (num_frames,) when training, (num_clips, num_frames) for evaluation.
    """
    _check(num_video_frames, num_frames, num_clips)
    if stride < 1:
        raise ValueError(f'stride must be positive, got {stride}')
    span = (num_frames - 1) * stride + 1
    room = max(num_video_frames - span, 0)  # window start positions beyond the first
    steps = torch.arange(num_frames) * stride
    if train:
        start = torch.randint(room + 1, (1,), generator=generator)
        return (start + steps).clamp_(max=num_video_frames - 1)
    starts = ((torch.arange(num_clips, dtype=torch.float64) + 0.5) / num_clips * room).round().long()
    return (starts[:, None] + steps[None]).clamp_(max=num_video_frames - 1)


def sample_indices(
        num_video_frames: int,
        num_frames: int,
        train: bool,
        num_clips: int = 1,
        stride: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Segment sampling, or dense sampling when a ``stride`` is given."""
    if stride:
        return dense_indices(num_video_frames, num_frames, stride, train, num_clips, generator)
    return segment_indices(num_video_frames, num_frames, train, num_clips, generator)
