"""Baselines that cut a per-frame ViT's cost without InTI, for the benchmarks.

  * frame subsampling: feed every other frame to the naive model (``subsample_frames``);
  * ToMe-style token merging inside each frame (Bolya et al., "Token Merging: Your ViT But
    Faster", ICLR 2023): after the attention of every block, the ``r`` most similar pairs
    of tokens between two alternating halves of the frame's tokens are averaged (weighted by
    how many original tokens each stands for); attention is proportional (adds log size to
    its logits), and prefix tokens are never merged. Written here from the paper, on top of
    timm's own block parts; ``tome_r_for_flops`` picks the ``r`` whose fvcore GFLOPs match
    a budget (InTI's, in the benchmarks).

Both wrap a naive ``VideoVisionTransformer`` (``inti_after=()``) and keep its input and
output: clips (B, C, T, H, W) or images (B, C, H, W) in, logits out.
"""
from typing import Callable, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

import timm_inti  # noqa: F401  (registers the models)
from timm_inti.flops import count_flops

__all__ = ['subsample_frames', 'ToMeVideoViT', 'apply_tome', 'tome_r_for_flops']


def subsample_frames(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Every ``factor``-th frame of clips (B, C, T, H, W)."""
    return x[:, :, ::factor]


def bipartite_matching(metric: torch.Tensor, r: int, protected: int) -> Tuple[torch.Tensor, ...]:
    """Choose ``r`` merges per sequence: tokens at even positions (A) into their most similar odd one (B).

    The ``protected`` first tokens are neither merged away nor merged into.

    Returns:
        kept A positions (ascending, so token order and prefix tokens stay first), merged A
        positions, and the B position each merged token joins.
    """
    metric = F.normalize(metric, dim=-1)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = a @ b.transpose(1, 2)  # (B, Na, Nb) cosine similarities
    scores[:, :(protected + 1) // 2] = float('-inf')  # protected tokens at even positions stay
    scores[:, :, :protected // 2] = float('-inf')  # nothing merges into protected odd positions
    best, best_b = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    merged = order[:, :r]
    kept = order[:, r:].sort(dim=-1).values
    return kept, merged, best_b.gather(1, merged)


def merge_tokens(x: torch.Tensor, size: torch.Tensor, kept, merged, into) -> Tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted averages of the chosen pairs: (B, N, C) -> (B, N - r, C), sizes alike."""
    def pick(t, index):
        return t.gather(1, index[..., None].expand(-1, -1, t.shape[-1]))

    def combine(t):  # kept A tokens, then B tokens with their merged A partners added in
        a, b = t[:, ::2], t[:, 1::2]
        b = b.scatter_add(1, into[..., None].expand(-1, -1, t.shape[-1]), pick(a, merged))
        return torch.cat([pick(a, kept), b], dim=1)

    total = combine(x * size)
    size = combine(size)
    return total / size, size


def _attention(attn: nn.Module, x: torch.Tensor, size: torch.Tensor):
    """timm's Attention, with proportional attention (log size added to the logits) and its keys returned."""
    qkv = rearrange(attn.qkv(x), 'b n (three h d) -> three b h n d', three=3, h=attn.num_heads)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    bias = rearrange(size.log(), 'b n () -> b () () n').to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=attn.attn_drop.p if attn.training else 0.)
    out = attn.proj_drop(attn.proj(attn.norm(rearrange(out, 'b h n d -> b n (h d)'))))
    return out, k.mean(dim=1)


def tome_block(blk: nn.Module, x: torch.Tensor, size: torch.Tensor, r: int, protected: int):
    """One timm Block with a merge of ``r`` tokens between its attention and its MLP."""
    out, keys = _attention(blk.attn, blk.norm1(x), size)
    x = x + blk.drop_path1(blk.ls1(out))
    r = min(r, (x.shape[1] - protected) // 2)
    if r > 0:
        x, size = merge_tokens(x, size, *bipartite_matching(keys, r, protected))
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return x, size


class ToMeVideoViT(nn.Module):
    """A naive per-frame video ViT that merges ``r`` tokens per frame in every block."""

    def __init__(self, model: nn.Module, r: int):
        super().__init__()
        if model.inti_after:
            raise ValueError(f'ToMe wraps the naive model (inti_after=()), got inti_after={model.inti_after}')
        self.model = model
        self.r = r

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x, _, is_image = m._embed(x)  # (B, T, N, D), as the video model embeds clips
        batch = x.shape[0]
        x = rearrange(x, 'b t n d -> (b t) n d')
        size = torch.ones_like(x[..., :1])
        for blk in m.blocks:
            x, size = tome_block(blk, x, size, self.r, m.num_prefix_tokens)
        x = m.norm(rearrange(x, '(b t) n d -> b t n d', b=batch))
        return x.squeeze(1) if is_image else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.forward_features(x))


def apply_tome(model: nn.Module, r: int) -> ToMeVideoViT:
    """ToMe on a naive video ViT; the returned module shares the model's weights."""
    return ToMeVideoViT(model, r)


def tome_r_for_flops(
        model_or_name: Union[str, Callable[[], nn.Module]],
        num_frames: int,
        target_gflops: float,
        **model_kwargs,
) -> int:
    """The merge rate whose fvcore GFLOPs on one clip are closest to ``target_gflops``."""
    model = timm.create_model(model_or_name, inti_after=(), **model_kwargs) if isinstance(model_or_name, str) \
        else model_or_name()
    model.eval()
    x = torch.randn(1, model.in_chans, num_frames, *model.patch_embed.img_size)
    tokens = model.patch_embed.num_patches
    gflops = {}
    low, high = 0, tokens // 2
    while low < high:  # GFLOPs fall as r grows: binary search for the first r at or below the target
        mid = (low + high) // 2
        gflops[mid] = count_flops(apply_tome(model, mid), x).gflops
        if gflops[mid] > target_gflops:
            low = mid + 1
        else:
            high = mid
    for r in (low - 1, low):
        if r >= 0 and r not in gflops:
            gflops[r] = count_flops(apply_tome(model, r), x).gflops
    return min((r for r in (low - 1, low) if r >= 0), key=lambda r: abs(gflops[r] - target_gflops))
