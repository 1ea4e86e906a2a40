""" Backbones and their weights, as data (open_clip's configs-as-data, in one table).

Every registered InTI model comes from one ``Backbone`` entry: the image ViT's arguments,
its default InTI schedule (a quarter of the blocks) and, per pretrained tag, the image
weights timm publishes (``Weights``: Hub id, MLP activation, normalisation, head width) and
the open_clip text tower trained with them. ``timm_inti.vit`` generates the ``@register_model``
entrypoints, the pretrained cfgs and the short aliases from this table, and
``timm_inti.zero_shot`` finds text towers in it; nothing else lists backbones or tags.

Adding a backbone, or a tag, is one entry: append it to ``BACKBONES`` here, or pass a
``Backbone`` to ``timm_inti.register_backbone`` from your own code.

Each backbone is registered in three variants (``VARIANTS``), under a timm-style long name
``inti_<name><variant>`` and a short alias ``inti_<alias><variant>``:

  * ``''``: one InTI layer after a quarter of the blocks (37.5% fewer block FLOPs);
  * ``'_deep'``: InTI after every quarter (3 layers);
  * ``'_temporal'``: the plain schedule plus a spatio-temporal adapter before every block,
    bottleneck width ``embed_dim // 2``.

This module is data only: it imports no model code.
"""
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from timm.data import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_INCEPTION_MEAN,
    IMAGENET_INCEPTION_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)
from timm.layers import LayerNorm

__all__ = ['Weights', 'Backbone', 'BACKBONES', 'VARIANTS', 'find_backbone', 'find_weights']


@dataclass(frozen=True)
class Weights:
    """Image weights timm publishes for a backbone, under one pretrained tag.

    Args:
        hf_hub_id: The Hub repository of timm's image tower ("org/name").
        act_layer: MLP activation the weights were trained with (OpenAI's CLIP: ``'quick_gelu'``);
            None keeps the architecture's own (timm's default, GELU).
        mean, std: Input normalisation.
        num_classes: Width of the pretrained head: CLIP's image projection, 0 for none (the
            pooled features are the output), or the classes of a classifier.
        text_tower: The open_clip (model name, pretrained tag) trained with these image weights,
            for zero-shot classification; None for image-only weights.
        crop_pct, license: As in timm's pretrained cfgs.
    """
    hf_hub_id: str
    act_layer: Optional[str] = None
    mean: Tuple[float, ...] = OPENAI_CLIP_MEAN
    std: Tuple[float, ...] = OPENAI_CLIP_STD
    num_classes: int = 512
    text_tower: Optional[Tuple[str, str]] = None
    crop_pct: float = 1.0
    license: str = 'mit'


@dataclass(frozen=True)
class Backbone:
    """One image ViT architecture and the weights it can load.

    Args:
        name: timm-style architecture name without the ``inti_`` prefix ("vit_base_patch16_clip_224").
        alias: Short name without the prefix ("vit_b16").
        description: Human name of the tower, for docstrings and cards ("CLIP ViT-B/16").
        vit_args: Arguments of timm's ``VisionTransformer`` (patch size, width, depth, heads, norms,
            prefix tokens, pooling).
        tags: Pretrained tag -> ``Weights``; the first tag is the default.
        img_size: Frame size the registered models are built for (the weights are resampled by
            timm's checkpoint filter if they were trained at another size).
    """
    name: str
    alias: str
    description: str
    vit_args: Dict[str, Any]
    tags: Dict[str, Weights] = field(default_factory=dict)
    img_size: int = 224

    @property
    def depth(self) -> int:
        return self.vit_args['depth']

    @property
    def embed_dim(self) -> int:
        return self.vit_args['embed_dim']

    def model_names(self) -> Iterator[Tuple[str, str, str]]:
        """(long name, alias, variant) of every registered model of this backbone."""
        for variant in VARIANTS:
            yield f'inti_{self.name}{variant}', f'inti_{self.alias}{variant}', variant

    def model_args(self, variant: str) -> Dict[str, Any]:
        """ViT arguments plus the variant's InTI schedule and temporal modules (the frame size comes from the cfg)."""
        return dict(self.vit_args, **VARIANTS[variant](self))

    def weights(self, tag: Optional[str]) -> Weights:
        """The weights of ``tag`` (None: the default tag); an unknown tag is a ValueError naming the known ones."""
        if tag is None:
            return next(iter(self.tags.values()))
        if tag not in self.tags:
            raise ValueError(
                f'unknown pretrained tag {tag!r} for the {self.description} backbone; '
                f'known tags: {", ".join(self.tags)}')
        return self.tags[tag]


def _quarter(b: Backbone) -> int:
    return max(b.depth // 4, 1)


# variant suffix -> the InTI schedule and temporal modules it adds to the backbone's ViT arguments
VARIANTS: Dict[str, Callable[[Backbone], Dict[str, Any]]] = {
    '': lambda b: dict(inti_after=(_quarter(b),)),
    '_deep': lambda b: dict(inti_after=tuple(k * _quarter(b) for k in (1, 2, 3))),
    '_temporal': lambda b: dict(inti_after=(_quarter(b),), adapter_dim=b.embed_dim // 2, adapter_kernel_size=(3, 1, 1)),
}

_CLIP_NORM = dict(pre_norm=True, norm_layer=partial(LayerNorm, eps=1e-5))


def _openai(arch: str, text_model: str, **kwargs) -> Weights:
    return Weights(
        f'timm/{arch}.openai', act_layer='quick_gelu', text_tower=(f'{text_model}-quickgelu', 'openai'), **kwargs)


BACKBONES: Dict[str, Backbone] = {b.name: b for b in [
    Backbone(
        'vit_base_patch16_clip_224', 'vit_b16', 'CLIP ViT-B/16',
        dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, **_CLIP_NORM),
        tags={
            'openai': _openai('vit_base_patch16_clip_224', 'ViT-B-16', crop_pct=0.9),
            'laion2b': Weights(
                'timm/vit_base_patch16_clip_224.laion2b', 'gelu', text_tower=('ViT-B-16', 'laion2b_s34b_b88k')),
            'datacompxl': Weights(
                'timm/vit_base_patch16_clip_224.datacompxl', 'gelu', text_tower=('ViT-B-16', 'datacomp_xl_s13b_b90k')),
        }),
    Backbone(
        'vit_large_patch14_clip_224', 'vit_l14', 'CLIP ViT-L/14',
        dict(patch_size=14, embed_dim=1024, depth=24, num_heads=16, **_CLIP_NORM),
        tags={
            'openai': _openai('vit_large_patch14_clip_224', 'ViT-L-14', num_classes=768),
            'laion2b': Weights(
                'timm/vit_large_patch14_clip_224.laion2b', 'gelu', IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD,
                num_classes=768, text_tower=('ViT-L-14', 'laion2b_s32b_b82k')),
            'datacompxl': Weights(
                'timm/vit_large_patch14_clip_224.datacompxl', 'gelu', num_classes=768,
                text_tower=('ViT-L-14', 'datacomp_xl_s13b_b90k')),
        }),
    Backbone(
        'vit_base_patch32_clip_224', 'vit_b32', 'CLIP ViT-B/32',
        dict(patch_size=32, embed_dim=768, depth=12, num_heads=12, **_CLIP_NORM),
        tags={
            'openai': _openai('vit_base_patch32_clip_224', 'ViT-B-32', crop_pct=0.9),
            'laion2b': Weights(
                'timm/vit_base_patch32_clip_224.laion2b', 'gelu', crop_pct=0.9,
                text_tower=('ViT-B-32', 'laion2b_s34b_b79k')),
            'datacompxl': Weights(
                'timm/vit_base_patch32_clip_224.datacompxl', 'gelu', text_tower=('ViT-B-32', 'datacomp_xl_s13b_b90k')),
        }),
    Backbone(
        'vit_large_patch14_clip_336', 'vit_l14_336', 'CLIP ViT-L/14 at 336 px',
        dict(patch_size=14, embed_dim=1024, depth=24, num_heads=16, **_CLIP_NORM),
        tags={'openai': _openai('vit_large_patch14_clip_336', 'ViT-L-14-336', num_classes=768)},
        img_size=336),
    # SigLIP (2): no class token; an attention-pool head pools every frame, then the frames are averaged.
    # The pooled features are the image embedding (no projection, head width 0).
    Backbone(
        'vit_base_patch16_siglip_224', 'vit_b16_siglip', 'SigLIP ViT-B/16',
        dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, class_token=False, global_pool='map'),
        tags={
            'v2_webli': Weights(
                'timm/vit_base_patch16_siglip_224.v2_webli', None, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD,
                num_classes=0, text_tower=('ViT-B-16-SigLIP2', 'webli'), crop_pct=0.9, license='apache-2.0'),
            'webli': Weights(
                'timm/vit_base_patch16_siglip_224.webli', None, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD,
                num_classes=0, text_tower=('ViT-B-16-SigLIP', 'webli'), crop_pct=0.9, license='apache-2.0'),
        }),
    # DINOv2 with registers: a class token and 4 registers (5 prefix tokens), LayerScale; trained at 518 px,
    # registered at 224 px (timm's checkpoint filter resamples the position embedding)
    Backbone(
        'vit_base_patch14_reg4_dinov2', 'vit_b14_dinov2', 'DINOv2 ViT-B/14 with registers',
        dict(patch_size=14, embed_dim=768, depth=12, num_heads=12, init_values=1e-5, reg_tokens=4, no_embed_class=True),
        tags={'lvd142m': Weights(
            'timm/vit_base_patch14_reg4_dinov2.lvd142m', None, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD,
            num_classes=0, license='apache-2.0')}),
    # the original supervised ViT (AugReg): an ImageNet-1k classifier out of the box
    Backbone(
        'vit_base_patch16_224', 'vit_b16_augreg', 'ViT-B/16 (AugReg, ImageNet-21k)',
        dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
        tags={
            'augreg2_in21k_ft_in1k': Weights(
                'timm/vit_base_patch16_224.augreg2_in21k_ft_in1k', None, IMAGENET_INCEPTION_MEAN,
                IMAGENET_INCEPTION_STD, num_classes=1000, crop_pct=0.9, license='apache-2.0'),
            'augreg_in21k': Weights(
                'timm/vit_base_patch16_224.augreg_in21k', None, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD,
                num_classes=21843, crop_pct=0.9, license='apache-2.0'),
        }),
]}


def find_backbone(model_name: str) -> Optional[Tuple[Backbone, str]]:
    """(backbone, variant) of a registered InTI model name (long or alias, with or without a tag)."""
    name = model_name.split('.')[0]
    for b in BACKBONES.values():
        for long_name, alias, variant in b.model_names():
            if name in (long_name, alias):
                return b, variant
    return None


def find_weights(hf_hub_id: Optional[str]) -> Optional[Tuple[Backbone, str, Weights]]:
    """(backbone, tag, weights) of the image weights published as ``hf_hub_id``."""
    for b in BACKBONES.values():
        for tag, w in b.tags.items():
            if hf_hub_id and w.hf_hub_id == hf_hub_id:
                return b, tag, w
    return None
