""" FLOP counting for video ViTs: fvcore with attention included, and a closed-form cost model.

Both count multiply-adds (MACs), the convention the video literature calls "GFLOPs".
fvcore has no handle for ``aten::scaled_dot_product_attention`` and would silently leave
attention out (ViT-B/16: 16.87 instead of 17.58 G per frame); ``count_flops`` adds one.
It also counts nothing for elementwise multiplies, which leaves out the 2-D rotary
embeddings of timm's Eva towers (PE, DINOv3, EVA02); ``count_flops`` counts those too
(``rope_flop_jit``: every query and key element is multiplied by a cosine and a sine,
two MACs), and no other elementwise work, so the ViT counts are unchanged.

The closed-form model counts what fvcore counts (matrix products, attention, the patch
convolution and layer norms) from the model's shape and InTI schedule alone, so the two
check each other, and the schedule's cost can be read without running anything.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import torch

from .inti import merged_num_frames

__all__ = ['FlopCount', 'count_flops', 'formula_flops', 'rope_flop_jit', 'sdpa_flop_jit']

_LAYER_NORM_FLOPS = 5  # per element with an affine transform, as fvcore counts it


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: Q K^T plus attn V, in MACs."""
    from fvcore.nn.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def rope_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """fvcore handle for ``aten::mul`` that counts the rotary embedding's multiplies and nothing else.

    A rotary embedding multiplies per-head queries or keys (B, heads, N, head_dim) by a sine or
    cosine table of the patch grid, (N, head_dim) (or (heads, N, head_dim) for per-head tables):
    one MAC per element. Every other multiply (layer scale, gating, InTI's weights, scalars) has
    another shape and counts nothing, as fvcore counts no elementwise work.
    """
    from fvcore.nn.jit_handles import get_shape
    shapes = [get_shape(x) for x in inputs[:2]]
    if any(s is None for s in shapes):
        return 0
    big, small = sorted(shapes, key=len, reverse=True)
    if len(big) == 4 and len(small) in (2, 3) and tuple(big[-len(small):]) == tuple(small) and small[-1] > 1:
        return math.prod(get_shape(outputs[0]))
    return 0


@dataclass
class FlopCount:
    """Multiply-adds of one forward pass, in total and for the InTI layers alone."""
    total: int
    inti: int
    by_module: Dict[str, int]

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    @property
    def inti_share(self) -> float:
        return self.inti / self.total


def count_flops(model: torch.nn.Module, inputs: torch.Tensor) -> FlopCount:
    """Count a forward pass of ``model`` on ``inputs`` with fvcore, attention included.

    fvcore is imported here, not at module load, so the closed-form model needs no fvcore.
    """
    with warnings.catch_warnings():  # fvcore scripts a loss function at import, which torch now warns about
        warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis
    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    if getattr(model, 'rope', None) is not None:  # timm's Eva: count the rotary embedding's multiplies
        analysis.set_op_handle('aten::mul', rope_flop_jit)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        by_module = dict(analysis.by_module())
    return FlopCount(total=by_module[''], inti=by_module.get('inti', 0), by_module=by_module)


def _block_macs(frames: int, tokens: int, dim: int, mlp_hidden: int) -> int:
    """One pre-norm Transformer block on ``frames`` frames of ``tokens`` tokens."""
    per_frame = (
        tokens * dim * 3 * dim          # qkv
        + 2 * tokens * tokens * dim     # attention: Q K^T and attn V
        + tokens * dim * dim            # output projection
        + 2 * tokens * dim * mlp_hidden  # MLP
        + 2 * _LAYER_NORM_FLOPS * tokens * dim
    )
    return frames * per_frame


def _eva_block_macs(frames: int, tokens: int, patches: int, block: torch.nn.Module, rope: bool) -> int:
    """One block of timm's Eva on ``frames`` frames: every linear layer of the block (q/k/v or fused qkv,
    projection, MLP or SwiGLU with its two input layers) and layer norm (EVA02's norms inside attention
    and MLP included) on every token, attention, and the rotary embedding on the patch tokens' queries
    and keys (a sine and a cosine multiply per element)."""
    dim = block.norm1.normalized_shape[0]
    linear = sum(_linear_macs(m) for m in block.modules())
    norms = sum(m.normalized_shape[0] for m in block.modules() if isinstance(m, torch.nn.LayerNorm))
    per_frame = (
        tokens * linear
        + 2 * tokens * tokens * dim          # attention: Q K^T and attn V
        + _LAYER_NORM_FLOPS * tokens * norms
        + (2 * 2 * patches * dim if rope else 0)  # queries and keys, times cos and sin
    )
    return frames * per_frame


def _inti_macs(frames: int, tokens: int, dim: int, inti: torch.nn.Module) -> int:
    """One InTI layer merging ``frames`` frames (pooling and elementwise work are not counted)."""
    if inti.mlp is None or frames < 2:
        return 0
    hidden = inti.reduce.out_features
    context = inti.mlp.fc1.in_features
    pairs = frames // 2
    pair_frames = 2 * pairs
    return (
        pair_frames * tokens * dim * (_LAYER_NORM_FLOPS + hidden)  # norm + reduce, paired frames only
        + pairs * tokens * (context * hidden + hidden * 2)         # weight MLP
    )


def _adapter_macs(frames: int, patches: int, adapter: torch.nn.Module) -> int:
    """One spatio-temporal adapter on the patch tokens of ``frames`` frames (the residual add is not counted)."""
    dim, hidden = adapter.down.in_features, adapter.down.out_features
    return frames * patches * (2 * dim * hidden + hidden * math.prod(adapter.conv.kernel_size))


def _linear_macs(layer: torch.nn.Module) -> int:
    return layer.in_features * layer.out_features if isinstance(layer, torch.nn.Linear) else 0


def _attn_pool_macs(frames: int, tokens: int, pool: torch.nn.Module) -> int:
    """timm's attention-pool head (``AttentionPoolLatent``, SigLIP's MAP head), run on every frame."""
    latent = pool.latent_len
    inner = pool.kv.out_features // 2
    per_frame = (
        tokens * _linear_macs(pool.kv)                # keys and values of every token
        + latent * _linear_macs(pool.q)               # the latent query
        + latent * tokens * 2 * inner                 # attention: Q K^T and attn V
        + latent * _linear_macs(pool.proj)
    )
    if pool.mlp is not None:
        per_frame += latent * (_LAYER_NORM_FLOPS * pool.proj.out_features
                               + _linear_macs(pool.mlp.fc1) + _linear_macs(pool.mlp.fc2))
    return frames * per_frame


def formula_flops(model: torch.nn.Module, num_frames: int, img_size: Sequence[int] = None) -> FlopCount:
    """Closed-form multiply-adds of a video model's forward pass on one clip (``VideoVisionTransformer`` or
    ``VideoEva``; Eva's per-block rotary tables (``rope_type='mixed'``) and q/k norms are not modelled)."""
    img_size = tuple(img_size or model.patch_embed.img_size)
    grid = model.patch_embed.dynamic_feat_size(img_size)
    patches = grid[0] * grid[1]
    tokens = patches + model.num_prefix_tokens
    dim = model.embed_dim
    proj = model.patch_embed.proj
    patch_macs = num_frames * patches * dim * proj.in_channels * math.prod(proj.kernel_size)
    norm_pre = 0 if isinstance(model.norm_pre, torch.nn.Identity) else _LAYER_NORM_FLOPS * num_frames * tokens * dim

    is_eva = hasattr(model, 'rope')  # timm's Eva (its blocks are written differently)
    rope = getattr(model, 'rope', None) is not None
    blocks = inti = adapters = 0
    frames = num_frames
    for i, blk in enumerate(model.blocks):
        if model.adapters is not None:
            adapters += _adapter_macs(frames, patches, model.adapters[i])
        if is_eva:
            blocks += _eva_block_macs(frames, tokens, patches, blk, rope)
        else:
            blocks += _block_macs(frames, tokens, dim, blk.mlp.fc1.out_features)
        key = str(i + 1)
        if key in model.inti:
            inti += _inti_macs(frames, tokens, dim, model.inti[key])
            frames = merged_num_frames(frames)

    norm = 0 if isinstance(model.norm, torch.nn.Identity) else _LAYER_NORM_FLOPS * frames * tokens * dim
    # the pooling head runs on every remaining frame, before the frames are averaged
    attn_pool = 0 if getattr(model, 'attn_pool', None) is None else _attn_pool_macs(frames, tokens, model.attn_pool)
    fc_norm = 0 if isinstance(model.fc_norm, torch.nn.Identity) else _LAYER_NORM_FLOPS * dim
    head = _linear_macs(model.head)
    by_module = dict(
        patch_embed=patch_macs, norm_pre=norm_pre, blocks=blocks, adapters=adapters, inti=inti, norm=norm,
        attn_pool=attn_pool, fc_norm=fc_norm, head=head)
    return FlopCount(total=sum(by_module.values()), inti=inti, by_module=by_module)
