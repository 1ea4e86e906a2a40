""" Backbones and their weights, as data (open_clip's configs-as-data, in one table).

Every registered InTI model comes from one ``Backbone`` entry: the timm image class it is built on
(``VisionTransformer`` or ``Eva``) and that class's arguments, its default InTI schedule (a quarter
of the blocks) and, per pretrained tag, the image weights timm publishes (``Weights``: Hub id, MLP
activation, normalisation, head width) and the open_clip text tower trained with them.
``timm_inti.vit`` generates the ``@register_model`` entrypoints, the pretrained cfgs and the short
aliases from this table, and ``timm_inti.zero_shot`` finds text towers in it; nothing else lists
backbones or tags.

Adding a backbone, or a tag, is one entry: append it to ``BACKBONES`` here, or pass a
``Backbone`` to ``timm_inti.register_backbone`` from your own code.

Each backbone is registered in three variants (``VARIANTS``, each a ``timm_inti.video_cfg.VideoCfg``),
under a timm-style long name ``inti_<name><variant>`` and a short alias ``inti_<alias><variant>``:

  * ``''``: one InTI layer after a quarter of the blocks (37.5% fewer block FLOPs);
  * ``'_deep'``: InTI after every quarter (3 layers);
  * ``'_temporal'``: the plain schedule plus a spatio-temporal adapter before every block,
    bottleneck width ``embed_dim // 2``.

This module is data only: it imports no model code (``video_cfg`` holds the options' names and defaults only).
"""
from dataclasses import asdict, dataclass, field
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

from .video_cfg import VideoCfg, quarter_schedule

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
        vit_args: Arguments of the timm image class (patch size, width, depth, heads, norms,
            prefix tokens, pooling; for ``Eva`` also the rotary embedding and MLP type).
        tags: Pretrained tag -> ``Weights``; the first tag is the default.
        img_size: Frame size the registered models are built for (the weights are resampled by
            timm's checkpoint filter if they were trained at another size).
        model_class: The timm image class, by name: ``'VisionTransformer'``
            (``timm.models.vision_transformer``) or ``'Eva'`` (``timm.models.eva``: Perception
            Encoder, DINOv3, EVA02); ``timm_inti.vit`` maps it to its video class.
        family: The kind of tower, for model cards: ``'clip'``, ``'siglip'``, ``'dinov2'``,
            ``'augreg'``, ``'pe'``, ``'dinov3'`` or ``'eva02'``.
    """
    name: str
    alias: str
    description: str
    vit_args: Dict[str, Any]
    tags: Dict[str, Weights] = field(default_factory=dict)
    img_size: int = 224
    model_class: str = 'VisionTransformer'
    family: str = 'clip'

    @property
    def num_prefix_tokens(self) -> int:
        """Class token plus registers, whichever image class's argument names they use."""
        args = self.vit_args
        return int(args.get('class_token', True)) + args.get('reg_tokens', 0) + args.get('num_reg_tokens', 0)

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
        """ViT arguments plus the variant's video options, every field of ``VideoCfg`` (the frame size comes
        from the cfg)."""
        return dict(self.vit_args, **asdict(VARIANTS[variant](self)))

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
    return quarter_schedule(b.depth)[0]


# variant suffix -> the video options (InTI schedule, temporal modules) it adds to the backbone's ViT arguments
VARIANTS: Dict[str, Callable[[Backbone], VideoCfg]] = {
    '': lambda b: VideoCfg(inti_after=(_quarter(b),)),
    '_deep': lambda b: VideoCfg(inti_after=tuple(k * _quarter(b) for k in (1, 2, 3))),
    '_temporal': lambda b: VideoCfg(inti_after=(_quarter(b),), adapter_dim=b.embed_dim // 2),
}

_CLIP_NORM = dict(pre_norm=True, norm_layer=partial(LayerNorm, eps=1e-5))


def _openai(arch: str, text_model: str, **kwargs) -> Weights:
    return Weights(
        f'timm/{arch}.openai', act_layer='quick_gelu', text_tower=(f'{text_model}-quickgelu', 'openai'), **kwargs)


# timm's Eva arguments shared by a family (timm.models.eva's registrations, less the size)
_PE_ARGS = dict(
    mlp_ratio=4.0, global_pool='map', attn_type='rope', use_pre_transformer_norm=True, use_rot_pos_emb=True,
    rope_grid_offset=1., rope_grid_indexing='xy', attn_pool_num_heads=8, attn_pool_mlp_ratio=4.,
    norm_layer=partial(LayerNorm, eps=1e-5))
_DINOV3_ARGS = dict(
    dynamic_img_size=True, qkv_bias=False, init_values=1e-5, rope_type='dinov3', rope_temperature=100,
    rope_rotate_half=True, use_rot_pos_emb=True, use_abs_pos_emb=False, num_reg_tokens=4, use_fc_norm=False,
    norm_layer=partial(LayerNorm, eps=1e-5))
_EVA02_CLIP_ARGS = dict(
    qkv_fused=False, mlp_ratio=4 * 2 / 3, swiglu_mlp=True, scale_mlp=True, scale_attn_inner=True,
    use_rot_pos_emb=True, ref_feat_shape=(16, 16), global_pool='token')


def _dinov3(arch: str, tag: str, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD) -> Weights:
    return Weights(f'timm/{arch}.{tag}', None, mean, std, num_classes=0, license='dinov3-license')


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
        family='siglip',
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
        family='dinov2',
        tags={'lvd142m': Weights(
            'timm/vit_base_patch14_reg4_dinov2.lvd142m', None, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD,
            num_classes=0, license='apache-2.0')}),
    # the original supervised ViT (AugReg): an ImageNet-1k classifier out of the box
    Backbone(
        'vit_base_patch16_224', 'vit_b16_augreg', 'ViT-B/16 (AugReg, ImageNet-21k)',
        dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
        family='augreg',
        tags={
            'augreg2_in21k_ft_in1k': Weights(
                'timm/vit_base_patch16_224.augreg2_in21k_ft_in1k', None, IMAGENET_INCEPTION_MEAN,
                IMAGENET_INCEPTION_STD, num_classes=1000, crop_pct=0.9, license='apache-2.0'),
            'augreg_in21k': Weights(
                'timm/vit_base_patch16_224.augreg_in21k', None, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD,
                num_classes=21843, crop_pct=0.9, license='apache-2.0'),
        }),
    # timm's Eva class: 2-D rotary position embeddings (the same for every frame's patch grid).
    # Perception Encoder (PE-Core): CLIP-style, an attention pool (per frame), then the projection (the head)
    *[Backbone(
        f'vit_pe_core_{size}_patch{patch}_{px}', alias, f'Perception Encoder PE-Core {human}',
        dict(patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads, **_PE_ARGS,
             ref_feat_shape=(ref, ref)),
        tags={'fb': Weights(
            f'timm/vit_pe_core_{size}_patch{patch}_{px}.fb', None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
            num_classes=proj, text_tower=(text, 'meta'), license='apache-2.0')},
        img_size=px, model_class='Eva', family='pe')
      for size, patch, px, alias, human, dim, depth, heads, ref, proj, text in [
          ('base', 16, 224, 'vit_b16_pe', 'ViT-B/16', 768, 12, 12, 14, 1024, 'PE-Core-B-16'),
          ('large', 14, 336, 'vit_l14_336_pe', 'ViT-L/14 at 336 px', 1024, 24, 16, 24, 1024, 'PE-Core-L-14-336'),
          ('small', 16, 384, 'vit_s16_384_pe', 'ViT-S/16 at 384 px', 384, 12, 6, 24, 512, 'PE-Core-S-16-384'),
          ('tiny', 16, 384, 'vit_t16_384_pe', 'ViT-T/16 at 384 px', 192, 12, 3, 24, 512, 'PE-Core-T-16-384'),
      ]],
    # DINOv3: self-supervised, a class token and 4 registers, no absolute position embedding; timm's default
    # pooling (the mean of the patch tokens); trained at 256 px, registered at 224 (rope has no fixed grid)
    *[Backbone(
        f'vit_{size}_patch16_dinov3', alias, f'DINOv3 ViT-{letter}/16',
        dict(patch_size=16, embed_dim=dim, depth=depth, num_heads=heads, **_DINOV3_ARGS),
        tags={'lvd1689m': _dinov3(f'vit_{size}_patch16_dinov3', 'lvd1689m'), **(
            {'sat493m': _dinov3(f'vit_{size}_patch16_dinov3', 'sat493m', (0.430, 0.411, 0.296), (0.213, 0.156, 0.143))}
            if size == 'large' else {})},
        model_class='Eva', family='dinov3')
      for size, letter, alias, dim, depth, heads in [
          ('small', 'S', 'vit_s16_dinov3', 384, 12, 6),
          ('base', 'B', 'vit_b16_dinov3', 768, 12, 12),
          ('large', 'L', 'vit_l16_dinov3', 1024, 24, 16),
      ]],
    # EVA02-CLIP: SwiGLU MLPs with a norm inside, a norm inside attention, class-token pooling, the projection
    *[Backbone(
        f'eva02_{size}_patch{patch}_clip_224', alias, f'EVA02-CLIP ViT-{letter}/{patch}',
        dict(patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads, **_EVA02_CLIP_ARGS),
        tags={'merged2b': Weights(
            f'timm/eva02_{size}_patch{patch}_clip_224.merged2b', None, num_classes=proj, crop_pct=0.9,
            text_tower=(text, text_tag))},
        model_class='Eva', family='eva02')
      for size, letter, patch, alias, dim, depth, heads, proj, text, text_tag in [
          ('base', 'B', 16, 'vit_b16_eva02', 768, 12, 12, 512, 'EVA02-B-16', 'merged2b_s8b_b131k'),
          ('large', 'L', 14, 'vit_l14_eva02', 1024, 24, 16, 768, 'EVA02-L-14', 'merged2b_s4b_b131k'),
      ]],
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
