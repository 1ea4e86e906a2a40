"""Token-reduction baselines that InTI is compared against at the same GFLOPs budget.

* ``subsample_frames``: naive per-frame adaptation on every ``factor``-th frame.
* ``apply_tome``: ToMe-style token merging inside every frame (Bolya et al., "Token Merging:
  Your ViT But Faster", ICLR 2023, https://github.com/facebookresearch/ToMe), on a naive
  video ViT (``inti_after=()``). Every block merges ``r`` tokens per frame between its
  attention and its MLP: the patch tokens are split alternately into two sets, each token of
  the first set is matched to its most similar token of the second (cosine similarity of the
  attention keys, averaged over heads), and the ``r`` best-matched pairs are merged. Merged
  tokens are size-weighted averages, and attention is proportional: a token that stands for
  ``s`` patches gets ``log(s)`` added to its attention logits. Prefix tokens (class,
  registers) are never merged and keep their place at the front.
* ``tome_r_for_flops``: the merge rate whose fvcore GFLOPs come closest to a budget.

The ToMe blocks are timm's own ``Block`` modules with another ``forward``: the norms,
attention (fused when timm uses it), MLP, layer scale and drop path are the block's
own, and the state dict does not change. Merging is differentiable (gather and
scatter-add) and works in train and eval mode, with gradient checkpointing, on clips
(B, C, T, H, W) and on images (B, C, H, W).
"""
from typing import Callable, List, Optional, Union

import torch
import torch.nn as nn
from einops import rearrange
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer

__all__ = ['apply_tome', 'tome_num_tokens', 'tome_r_for_flops', 'subsample_frames', 'ToMeBlock']


def subsample_frames(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Every ``factor``-th frame of a clip: (B, C, T, H, W) -> (B, C, ceil(T / factor), H, W)."""
    if x.ndim != 5:
        raise ValueError(f'subsample_frames expects a clip (B, C, T, H, W), got a {x.ndim}-D tensor {tuple(x.shape)}')
    if factor < 1:
        raise ValueError(f'subsample_frames needs factor >= 1, got {factor}')
    return x[:, :, ::factor]


def tome_num_tokens(num_tokens: int, depth: int, r: int, num_prefix_tokens: int = 1) -> List[int]:
    """Tokens per frame that each of ``depth`` ToMe blocks takes in (the merge comes after attention).

    Each block merges ``min(r, (n - num_prefix_tokens) // 2)`` pairs of its ``n`` tokens.
    """
    counts = []
    for _ in range(depth):
        counts.append(num_tokens)
        num_tokens -= min(r, (num_tokens - num_prefix_tokens) // 2)
    return counts


class _ToMeState:
    """Token sizes between the blocks of one model: ``sizes[i]`` is what block ``i`` takes in.

    Indexed by block, not a single running value, so a block re-run by gradient
    checkpointing during backward sees the same sizes as in its forward pass, and every
    forward pass starts from ``sizes[0] = None``: every token stands for one patch.
    """

    def __init__(self, depth: int) -> None:
        self.sizes: List[Optional[torch.Tensor]] = [None] * (depth + 1)


def _stash_qkv(module: nn.Module, args, output: torch.Tensor) -> None:
    """Forward hook on ``attn.qkv``: keep its output so the block can read the keys."""
    module._tome_qkv = output


def _bipartite_merge(x: torch.Tensor, size: torch.Tensor, keys: torch.Tensor, r: int):
    """Merge ``r`` tokens of ``x`` (B, M, D) by bipartite soft matching on ``keys`` (B, M, C).

    Returns the merged tokens (B, M - r, D) as size-weighted averages and their sizes (B, M - r, 1).
    """
    with torch.no_grad():
        keys = keys / keys.norm(dim=-1, keepdim=True)
        a, b = keys[:, ::2], keys[:, 1::2]
        similarity, match = (a @ b.transpose(-1, -2)).max(dim=-1)  # best partner in b of every token in a
        order = similarity.argsort(dim=-1, descending=True)
        src, kept = order[:, :r], order[:, r:]   # a tokens merged away / kept
        dst = match.gather(1, src)             # their partners in b
    # one pass carries the size-weighted sum and the total size
    y = torch.cat([x * size, size], dim=-1)
    y_a, y_b = y[:, ::2], y[:, 1::2]
    width = y.shape[-1]
    kept = y_a.gather(1, rearrange(kept, 'b n -> b n ()').expand(-1, -1, width))
    merged = y_b.scatter_add(
        1, rearrange(dst, 'b n -> b n ()').expand(-1, -1, width),
        y_a.gather(1, rearrange(src, 'b n -> b n ()').expand(-1, -1, width)))
    y = torch.cat([kept, merged], dim=1)
    size = y[..., -1:]
    return y[..., :-1] / size, size


class ToMeBlock(Block):
    """timm's ``Block`` that merges ``tome_r`` tokens per sequence between attention and MLP.

    ``apply_tome`` turns the blocks of a model into this class; it is not built directly.
    """
    tome_r: int
    tome_index: int
    num_prefix_tokens: int
    _tome_state: _ToMeState

    def forward(
            self,
            x: torch.Tensor,
            attn_mask: Optional[torch.Tensor] = None,
            is_causal: bool = False,
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError('ToMe blocks merge tokens and cannot take an attention mask or causal attention')
        sizes = self._tome_state.sizes
        size = sizes[self.tome_index]  # None for the first block: every token is one patch
        # proportional attention: a token that stands for s patches counts s times as a key
        bias = None if size is None else rearrange(size.log().to(x.dtype), 'b n () -> b () () n')
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=bias)))
        qkv = self.attn.qkv._tome_qkv  # left there by the forward hook apply_tome put on attn.qkv
        del self.attn.qkv._tome_qkv

        p = self.num_prefix_tokens
        r = min(self.tome_r, (x.shape[1] - p) // 2)
        if r > 0:
            keys = rearrange(qkv, 'b n (three h d) -> three b h n d', three=3, h=self.attn.num_heads)[1]
            keys = self.attn.k_norm(keys).mean(dim=1)  # (B, N, head_dim), averaged over heads
            if size is None:
                size = x.new_ones(x.shape[0], x.shape[1], 1)
            patches, patch_size = _bipartite_merge(x[:, p:], size[:, p:], keys[:, p:], r)
            x = torch.cat([x[:, :p], patches], dim=1)
            size = torch.cat([size[:, :p], patch_size], dim=1)
        sizes[self.tome_index + 1] = size

        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x

    def extra_repr(self) -> str:
        return f'tome_r={self.tome_r}'


def apply_tome(model: VisionTransformer, r: int) -> VisionTransformer:
    """Make every block of ``model`` merge ``r`` tokens per frame, ToMe-style, in place.

    ``model`` is a naive ``VideoVisionTransformer`` (``inti_after=()``) or any timm
    ``VisionTransformer`` built from timm's standard ``Block``. ``r=0`` merges nothing and
    computes exactly what the unmodified model computes; calling again changes ``r``.
    Parameters and state dict are unchanged. Tokens after the first merge are no longer on
    the patch grid: ``forward_intermediates(output_fmt='NCHW')`` cannot reshape them
    (``'NLC'`` works), and average pooling (``global_pool='avg'``) weighs merged tokens as one.

    Returns:
        The same model, for chaining.
    """
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        raise ValueError(f'ToMe merge rate r must be a non-negative int, got {r!r}')
    if not isinstance(model, VisionTransformer):
        raise TypeError(f'apply_tome expects a timm VisionTransformer, got {type(model).__name__}')
    if len(getattr(model, 'inti', ())):
        raise ValueError(
            f'apply_tome expects a naive model (inti_after=()); this one has InTI layers after blocks '
            f'{model.inti_after}: InTI merges frames of aligned token grids, which ToMe scrambles')
    if getattr(model, 'adapters', None) is not None:
        raise ValueError('apply_tome expects a model without spatio-temporal adapters: they convolve over the '
                         'patch grid, which ToMe scrambles')
    for i, blk in enumerate(model.blocks):
        if type(blk) not in (Block, ToMeBlock) or type(blk.attn) is not Attention:
            raise TypeError(
                f"apply_tome supports timm's Block with timm's Attention; block {i} is a {type(blk).__name__} "
                f"with {type(blk.attn).__name__}")

    state = _ToMeState(len(model.blocks))
    for i, blk in enumerate(model.blocks):
        if type(blk) is Block:
            blk.__class__ = ToMeBlock
            blk._tome_hook = blk.attn.qkv.register_forward_hook(_stash_qkv)
        blk.tome_r = r
        blk.tome_index = i
        blk.num_prefix_tokens = model.num_prefix_tokens
        blk._tome_state = state
    model.tome_r = r
    return model


def tome_r_for_flops(
        model_name_or_factory: Union[str, Callable[..., VisionTransformer]],
        num_frames: int,
        target_gflops: float,
        **model_kwargs,
) -> int:
    """The ToMe merge rate whose fvcore GFLOPs on one clip come closest to ``target_gflops``.

    Args:
        model_name_or_factory: A registered model name, built with ``num_frames=num_frames``
            and ``inti_after=()`` unless ``model_kwargs`` says otherwise, or a callable
            returning a naive model.
        num_frames: Frames of the clip (batch 1, the model's image size), and the model's
            ``num_frames`` (so ``model_kwargs`` cannot hold it).
        target_gflops: Budget in GFLOPs (10^9 multiply-adds, as ``timm_inti.flops.count_flops``).
        model_kwargs: Passed to ``timm.create_model`` or the factory.

    GFLOPs fall as r grows until every block merges half its tokens, so the search is a
    bisection over r with a handful of fvcore counts. The count includes ToMe's own
    matching products (the key similarities), as fvcore sees them.
    """
    from timm_inti.flops import count_flops  # fvcore is only needed here

    if isinstance(model_name_or_factory, str):
        import timm
        model_kwargs.setdefault('inti_after', ())
        model = timm.create_model(model_name_or_factory, num_frames=num_frames, **model_kwargs)
    else:
        model = model_name_or_factory(**model_kwargs)
    model.eval()
    clip = torch.randn(1, model.patch_embed.proj.in_channels, num_frames, *model.patch_embed.img_size)
    cache = {}

    def gflops(r: int) -> float:
        if r not in cache:
            cache[r] = count_flops(apply_tome(model, r), clip).gflops
        return cache[r]

    num_tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    low, high = 0, (num_tokens - model.num_prefix_tokens) // 2  # beyond high every block merges all it can
    if gflops(low) <= target_gflops:
        return low
    if gflops(high) >= target_gflops:
        return high
    while high - low > 1:  # invariant: gflops(low) > target > gflops(high)
        mid = (low + high) // 2
        if gflops(mid) > target_gflops:
            low = mid
        else:
            high = mid
    return min((low, high), key=lambda r: (abs(gflops(r) - target_gflops), r))

