""" Clip transforms: decoded uint8 frames (T, H, W, 3) -> normalised float clips.

One shape per use: a training transform returns one clip (C, T, H, W); an evaluation
transform always returns views (V, C, T, H, W), V = 1 or 3 spatial crops, so evaluation
clips keep their view axis from here to the model (``timm_inti.evaluate``).

Sizes, interpolation, mean, std and crop_pct come from the model's data config
(``timm.data.resolve_input_data_config(model)``, which also knows a model built at another
``img_size``), as timm's image transforms take them.
The work is torchvision's ``transforms.v2``: frames travel as one ``tv_tensors.Video``, so
random crops and flips draw their parameters once per clip and every frame gets the same.

  * training: random resized crop, horizontal flip (``hflip`` 0 for Something-Something,
    where left and right are labels), then, as timm's train transform and the video
    fine-tuning recipes (VideoMAE, UniFormerV2) order them: colour jitter (off with an
    auto-augment policy, as in timm), an auto-augment policy in timm's string format
    (``rand-m7-n4-mstd0.5-inc1``, ``augmix-m5-w4-d2``, ``original``, ``v0``: timm's own
    factories), normalisation, and timm's random erasing. Every random draw is made once
    per clip: a policy's ops, their magnitudes, the erased boxes and their fill are the
    same on every frame (:class:`SameForEveryFrame`);
  * evaluation: resize the short side to ``size / crop_pct`` and take the centre crop, or,
    with ``num_crops=3``, resize the short side to ``size`` and take three crops along the
    long side (start, centre, end), as in the standard three-crop video test.
"""
import math
import random
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from einops import rearrange
from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_interp_mode, str_to_pil_interp
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ['VideoTransform', 'SameForEveryFrame', 'create_video_transform', 'auto_augment_policy']


def _size(data_config: Dict[str, Any]) -> Tuple[int, int]:
    size = data_config['input_size']
    return tuple(size[-2:]) if isinstance(size, (tuple, list)) else (size, size)


class SameForEveryFrame:
    """An image transform applied to every frame of a clip with the same random draws.

    timm's policies and random erasing draw from Python's ``random``, NumPy's and torch's
    global generators; the generators' states are taken before the first frame and put back
    before every other, so each frame gets the ops, magnitudes, boxes and fill the first got
    (identical frames in, identical frames out), and the generators move on once per clip,
    as for one image.

    Args:
        transform: An image transform: a PIL image -> PIL image (``pil=True``: timm's
            auto-augment policies), or a (C, H, W) tensor -> tensor (random erasing).
        pil: Frames travel to ``transform`` as PIL images (uint8 in and out).
    """

    def __init__(self, transform: Callable, pil: bool = False):
        self.transform = transform
        self.pil = pil

    def _one(self, frame: torch.Tensor) -> torch.Tensor:
        if not self.pil:
            return self.transform(frame)
        return v2.functional.pil_to_tensor(self.transform(v2.functional.to_pil_image(frame)))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` (T, C, H, W): uint8 for a PIL transform (a new tensor comes back), any dtype for a tensor
        transform (which may work in place, as timm's ``RandomErasing`` does: ``frames`` comes back)."""
        state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        out = torch.empty_like(frames) if self.pil else frames
        for t, frame in enumerate(frames):
            random.setstate(state[0])
            np.random.set_state(state[1])
            torch.set_rng_state(state[2])
            out[t] = self._one(frame)
        return out

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.transform!r})'


def auto_augment_policy(config_str: str, data_config: Dict[str, Any]) -> Callable:
    """timm's auto-augment policy named by ``config_str`` (timm's ``--aa`` format), with the hparams timm's
    train transform gives it (translation relative to the size, fill with the mean colour, interpolation).

    ``rand-...`` (RandAugment; ``mstd101`` draws each magnitude uniformly, ``n1`` takes one op:
    TrivialAugment-like), ``augmix-...``, or an AutoAugment policy (``original``, ``v0``, ``3a``...).
    Raises ``ValueError`` naming the string when timm does not know it.
    """
    mean = data_config['mean']
    hparams = dict(translate_const=int(min(_size(data_config)) * 0.45),
                   img_mean=tuple(min(255, round(255 * x)) for x in mean))
    interpolation = data_config.get('interpolation') or 'bicubic'
    if interpolation != 'random':
        hparams['interpolation'] = str_to_pil_interp(interpolation)
    try:
        if config_str.startswith('rand'):
            return rand_augment_transform(config_str, hparams)
        if config_str.startswith('augmix'):
            return augment_and_mix_transform(config_str, dict(hparams, translate_pct=0.3))
        return auto_augment_transform(config_str, hparams)
    except (AssertionError, KeyError, ValueError, IndexError) as e:
        raise ValueError(f'auto-augment policy {config_str!r} is not one timm knows ({type(e).__name__}: {e}); '
                         f'timm\'s format: rand-m9-n2-mstd0.5-inc1, augmix-m5-w4-d2, original, v0, 3a') from e


class VideoTransform:
    """Decoded frames (T, H, W, 3) uint8 -> (C, T, H, W) float for training, (V, C, T, H, W) views for evaluation.

    ``augment`` (uint8 frames) and ``erase`` (normalised frames) are training's per-clip
    transforms, (T, C, H, W) -> (T, C, H, W), e.g. :class:`SameForEveryFrame`.
    """

    def __init__(self, spatial: v2.Transform, mean: Sequence[float], std: Sequence[float], num_crops: int = 1,
                 crop_size: Tuple[int, int] = None, views: bool = True, augment: Optional[Callable] = None,
                 erase: Optional[Callable] = None):
        if num_crops > 1 and not views:
            raise ValueError('several crops are views: a transform with num_crops > 1 returns (V, C, T, H, W)')
        self.spatial = spatial
        self.augment = augment
        self.erase = erase
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
        if self.augment is not None:
            video = tv_tensors.Video(self.augment(video.as_subclass(torch.Tensor)))
        views = self._three_crops(video) if self.num_crops == 3 else [video]
        views = [self.normalize(v).as_subclass(torch.Tensor) for v in views]
        if self.erase is not None:
            views = [self.erase(v) for v in views]
        views = [rearrange(v, 't c h w -> c t h w') for v in views]
        return torch.stack(views) if self.views else views[0]

    def __repr__(self) -> str:
        extra = ''.join(f', {name}={getattr(self, name)}' for name in ('augment', 'erase') if getattr(self, name))
        return f'{type(self).__name__}(spatial={self.spatial}, num_crops={self.num_crops}, views={self.views}{extra})'


def create_video_transform(
        data_config: Dict[str, Any],
        is_training: bool,
        num_crops: int = 1,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        color_jitter: Optional[float] = None,
        auto_augment: Optional[str] = None,
        re_prob: float = 0.0,
        re_mode: str = 'pixel',
        re_count: int = 1,
) -> VideoTransform:
    """The train or eval clip transform for a timm data config.

    The training transform returns a clip (C, T, H, W), the evaluation one its views
    (V, C, T, H, W), V = ``num_crops``.

    Args:
        data_config: ``timm.data.resolve_input_data_config(model)`` or a dict with input_size,
            interpolation, mean, std and crop_pct.
        is_training: Random resized crop and flip, instead of resize and crop.
        num_crops: Evaluation only: 1 (centre) or 3 (along the long side).
        scale, ratio, hflip, color_jitter, auto_augment, re_prob, re_mode, re_count: Training
            augmentation, as timm's ``create_transform`` names them, drawn once per clip.
            ``color_jitter`` (brightness, contrast, saturation) is off by default here (timm's
            train.py: 0.4) and, as in timm, off under an ``auto_augment`` policy other than 3a.
    """
    size = _size(data_config)
    interpolation = str_to_interp_mode(data_config.get('interpolation') or 'bicubic')
    mean, std = data_config['mean'], data_config['std']
    if num_crops not in (1, 3):
        raise ValueError(f'num_crops must be 1 or 3, got {num_crops}')
    if is_training:
        if num_crops != 1:
            raise ValueError('training takes one random crop per clip')
        spatial = [
            v2.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=interpolation, antialias=True),
            v2.RandomHorizontalFlip(hflip),
        ]
        if color_jitter and not (auto_augment and '3a' not in auto_augment):  # one draw per clip: v2 on a Video
            spatial.append(v2.ColorJitter(*(float(color_jitter),) * 3))
        augment = SameForEveryFrame(auto_augment_policy(auto_augment, data_config), pil=True) if auto_augment \
            else None
        erase = SameForEveryFrame(RandomErasing(re_prob, mode=re_mode, max_count=re_count, device='cpu')) \
            if re_prob > 0 else None
        return VideoTransform(v2.Compose(spatial), mean, std, views=False, augment=augment, erase=erase)
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
