""" Clip transforms: decoded uint8 frames (T, H, W, 3) -> normalised float clips.

One shape per use: a training transform returns one clip (C, T, H, W); an evaluation
transform always returns views (V, C, T, H, W), V = 1 or 3 spatial crops, so evaluation
clips keep their view axis from here to the model (``timm_inti.evaluate``).

Sizes, interpolation, mean, std and crop_pct come from the model's data config
(``timm.data.resolve_input_data_config(model)``, which also knows a model built at another
``img_size``), as timm's image transforms take them.
The work is torchvision's ``transforms.v2``: frames travel as one ``tv_tensors.Video``, so
random crops and flips draw their parameters once per clip and every frame gets the same.

  * training: random resized crop, horizontal flip;
  * evaluation: resize the short side to ``size / crop_pct`` and take the centre crop, or,
    with ``num_crops=3``, resize the short side to ``size`` and take three crops along the
    long side (start, centre, end), as in the standard three-crop video test.
"""
import math
from typing import Any, Dict, Sequence, Tuple

import torch
from einops import rearrange
from timm.data.transforms import str_to_interp_mode
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ['VideoTransform', 'create_video_transform']


def _size(data_config: Dict[str, Any]) -> Tuple[int, int]:
    size = data_config['input_size']
    return tuple(size[-2:]) if isinstance(size, (tuple, list)) else (size, size)


class VideoTransform:
    """Decoded frames (T, H, W, 3) uint8 -> (C, T, H, W) float for training, (V, C, T, H, W) views for evaluation."""

    def __init__(self, spatial: v2.Transform, mean: Sequence[float], std: Sequence[float], num_crops: int = 1,
                 crop_size: Tuple[int, int] = None, views: bool = True):
        if num_crops > 1 and not views:
            raise ValueError('several crops are views: a transform with num_crops > 1 returns (V, C, T, H, W)')
        self.spatial = spatial
        self.views = views
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)])
        self.num_crops = num_crops
        self.crop_size = crop_size

    def _three_crops(self, video: torch.Tensor):
        height, width = video.shape[-2:]
        crop_h, crop_w = self.crop_size
        if width >= height:  # crops slide along the long side
            tops, lefts = [(height - crop_h) // 2] * 3, [0, (width - crop_w) // 2, width - crop_w]
        else:
            tops, lefts = [0, (height - crop_h) // 2, height - crop_h], [(width - crop_w) // 2] * 3
        return [v2.functional.crop(video, top, left, crop_h, crop_w) for top, left in zip(tops, lefts)]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f'expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}')
        video = self.spatial(tv_tensors.Video(rearrange(frames, 't h w c -> t c h w')))
        views = self._three_crops(video) if self.num_crops == 3 else [video]
        views = [rearrange(self.normalize(v).as_subclass(torch.Tensor), 't c h w -> c t h w') for v in views]
        return torch.stack(views) if self.views else views[0]

    def __repr__(self) -> str:
        return f'{type(self).__name__}(spatial={self.spatial}, num_crops={self.num_crops}, views={self.views})'


def create_video_transform(
        data_config: Dict[str, Any],
        is_training: bool,
        num_crops: int = 1,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
) -> VideoTransform:
    """The train or eval clip transform for a timm data config.

    The training transform returns a clip (C, T, H, W), the evaluation one its views
    (V, C, T, H, W), V = ``num_crops``.

    Args:
        data_config: ``timm.data.resolve_input_data_config(model)`` or a dict with input_size,
            interpolation, mean, std and crop_pct.
        is_training: Random resized crop and flip, instead of resize and crop.
        num_crops: Evaluation only: 1 (centre) or 3 (along the long side).
        scale, ratio, hflip: Training augmentation, as timm's train transform names them.
    """
    size = _size(data_config)
    interpolation = str_to_interp_mode(data_config.get('interpolation') or 'bicubic')
    mean, std = data_config['mean'], data_config['std']
    if num_crops not in (1, 3):
        raise ValueError(f'num_crops must be 1 or 3, got {num_crops}')
    if is_training:
        if num_crops != 1:
            raise ValueError('training takes one random crop per clip')
        spatial = v2.Compose([
            v2.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=interpolation, antialias=True),
            v2.RandomHorizontalFlip(hflip),
        ])
        return VideoTransform(spatial, mean, std, views=False)
    if num_crops == 3:
        spatial = v2.Resize(min(size), interpolation=interpolation, antialias=True)
        return VideoTransform(spatial, mean, std, num_crops=3, crop_size=size)
    crop_pct = data_config.get('crop_pct') or 1.0
    scale_size = math.floor(min(size) / crop_pct)
    spatial = v2.Compose([
        v2.Resize(scale_size, interpolation=interpolation, antialias=True),
        v2.CenterCrop(size),
    ])
    return VideoTransform(spatial, mean, std)
