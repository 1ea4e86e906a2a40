""" InTI: Inter-frame Token Interpolation

An InTI layer sits between two Transformer blocks of a per-frame video ViT. It pairs
neighbouring frames (0, 1), (2, 3), ... and replaces each pair of tokens at the same
position by one linear combination of the two, so every later block sees half the frames:

    (B, T, N, D) -> (B, ceil(T / 2), N, D)

The combination weights are predicted token by token by a small context network
(after "Dynamic and Compressive Adaptation of Transformers From Images to Videos",
ECCV 2024, https://arxiv.org/abs/2408.06840). The paper publishes no code; the weight
network below is this project's design (docs/paper.md):

  * every token is normalised and projected to a small width (``hidden_dim``);
  * context is gathered at several spatial scales: the token itself and average-pooled
    k x k neighbourhoods on the patch grid (``kernel_sizes``), plus a global summary of
    the frame (``global_context``). Prefix tokens (class, registers) have no place on
    the grid: their local scales are the token itself and they see the global summary;
  * the context of both frames of a pair goes through an MLP that predicts two logits
    per position, normalised over the pair (``weighting='softmax'``).

The MLP's last projection starts at zero, so a fresh layer is an exact average of each
pair: a CLIP-initialised model starts as temporal average pooling.

``weighting`` also offers two ablations: ``'sigmoid'`` (independent, unnormalised gates)
and ``'mean'`` (fixed 0.5 / 0.5 weights, no weight network at all).

With an odd number of frames the last frame has no partner and passes through unchanged.

``partner_window=k`` (an opt-in ablation, default 1: off) lets a merge follow motion: the
token of the first frame at position p is combined with a k x k neighbourhood of p in the
second frame, weighted by a softmax over that window that the same MLP predicts (k * k more
logits). It starts close to the same-position average (off-centre logits start at -6, a
weight of 0.25% each), not exactly at it.

``pair_weights(x, grid_size)`` returns the weights a layer gives to the two frames of every
pair, for pictures and diagnostics (``timm_inti.visualize``); the forward pass itself stores
nothing.
"""
from typing import Literal, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from timm.layers import LayerNorm, LayerType, Mlp, get_act_layer, get_norm_layer, lecun_normal_

__all__ = ['InTI', 'merged_num_frames']

Weighting = Literal['softmax', 'sigmoid', 'mean']


def merged_num_frames(num_frames: int) -> int:
    """Frames left after one InTI layer: pairs merge, an odd last frame passes through."""
    return (num_frames + 1) // 2


class InTI(nn.Module):
    """Inter-frame Token Interpolation: merge neighbouring frames token by token.

    Args:
        dim: Token width.
        num_prefix_tokens: Tokens before the patch grid in every frame (class, registers).
        hidden_dim: Width of the weight network (default ``max(dim // 8, 16)``).
        kernel_sizes: Odd window sizes of the local context scales on the patch grid;
            ``1`` is the token itself.
        global_context: Add the frame's mean patch token as a global context scale.
        weighting: ``'softmax'`` (the pair's weights sum to one), ``'sigmoid'``
            (independent gates) or ``'mean'`` (fixed average, no weight network).
        norm_layer: Normalisation before the weight network.
        act_layer: Activation inside the weight network.
        partner_window: Odd side of the neighbourhood of the second frame that a token of
            the first frame draws from (1: the same position only, the method).
    """

    def __init__(
            self,
            dim: int,
            num_prefix_tokens: int = 1,
            hidden_dim: Optional[int] = None,
            kernel_sizes: Sequence[int] = (1, 3, 7),
            global_context: bool = True,
            weighting: Weighting = 'softmax',
            norm_layer: Optional[LayerType] = None,
            act_layer: Optional[LayerType] = None,
            partner_window: int = 1,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if weighting not in ('softmax', 'sigmoid', 'mean'):
            raise ValueError(f"InTI weighting must be 'softmax', 'sigmoid' or 'mean', got {weighting!r}")
        if isinstance(kernel_sizes, (str, bytes)) or not isinstance(kernel_sizes, Sequence) or any(
                isinstance(k, bool) or not hasattr(k, '__index__') for k in kernel_sizes):
            raise ValueError(
                f'InTI kernel_sizes must be a sequence of odd, positive integers such as (1, 3, 7), '
                f'got {kernel_sizes!r}')
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f'InTI kernel_sizes must be odd and positive, got {kernel_sizes}')
        for name, value in (('dim', dim), ('hidden_dim', 1 if hidden_dim is None else hidden_dim)):
            if isinstance(value, bool) or not hasattr(value, '__index__') or int(value) < 1:
                raise ValueError(f'InTI {name} must be a positive integer, got {value!r}')
        if weighting != 'mean' and not kernel_sizes and not global_context:
            raise ValueError('InTI needs at least one context scale (kernel_sizes or global_context)')
        if partner_window < 1 or partner_window % 2 == 0:
            raise ValueError(f'InTI partner_window must be odd and positive, got {partner_window}')
        if partner_window > 1 and weighting == 'mean':
            raise ValueError("InTI partner_window needs a weight network: not with weighting='mean'")
        self.num_prefix_tokens = num_prefix_tokens
        self.partner_window = partner_window
        self.kernel_sizes = kernel_sizes
        self.global_context = global_context
        self.weighting = weighting

        if weighting == 'mean':
            self.norm = self.reduce = self.mlp = None
            return
        hidden_dim = hidden_dim or max(dim // 8, 16)
        num_scales = len(kernel_sizes) + int(global_context)
        norm_layer = get_norm_layer(norm_layer) or LayerNorm
        act_layer = get_act_layer(act_layer) or nn.GELU
        self.norm = norm_layer(dim, **dd)
        self.reduce = nn.Linear(dim, hidden_dim, **dd)
        # context of both frames of a pair -> two logits per position (+ one per partner-window place)
        window = partner_window ** 2 if partner_window > 1 else 0
        self.mlp = Mlp(2 * num_scales * hidden_dim, hidden_dim, 2 + window, act_layer=act_layer, **dd)
        self.init_weights()

    def init_weights(self) -> None:
        """Fan-in init of the weight network, with its last projection at zero, so the layer starts as an exact average.

        As LoRA's and AIM's adapters: the layers before the zero projection keep unit-scale
        features, so the projection's first updates move the weights. timm's std 0.02 shrinks
        them by 50 / sqrt(fan_in) per layer (3x over both at ViT-B's width, 25x at width 64,
        where the ablation's weights stayed at 0.50 through training).

        timm's ViT init functions call this after re-initialising the children, so the
        zero projection survives ``model.init_weights()`` in any mode.
        """
        if self.mlp is None:
            return
        for m in (self.reduce, self.mlp.fc1):
            lecun_normal_(m.weight)
            nn.init.zeros_(m.bias)
        nn.init.zeros_(self.mlp.fc2.weight)
        nn.init.zeros_(self.mlp.fc2.bias)
        if self.partner_window > 1:
            with torch.no_grad():  # window logits: the centre at 0, the others at -6
                self.mlp.fc2.bias[2:] = -6.
                self.mlp.fc2.bias[2 + self.partner_window ** 2 // 2] = 0.

    def _context(self, x: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
        """Multi-scale context per token: (B, T, N, D) -> (B, T, N, num_scales * hidden_dim)."""
        batch = x.shape[0]
        height, width = grid_size
        p = self.num_prefix_tokens
        z = self.reduce(self.norm(x))
        prefix, patches = z[:, :, :p], z[:, :, p:]

        grid = rearrange(patches, 'b t (h w) c -> (b t) c h w', h=height, w=width)
        patch_ctx, prefix_ctx = [], []
        for k in self.kernel_sizes:
            if k == 1:
                patch_ctx.append(patches)
            else:
                pooled = F.avg_pool2d(grid, k, stride=1, padding=k // 2, count_include_pad=False)
                patch_ctx.append(rearrange(pooled, '(b t) c h w -> b t (h w) c', b=batch))
            prefix_ctx.append(prefix)
        if self.global_context:
            summary = patches.mean(dim=2, keepdim=True)
            patch_ctx.append(summary.expand_as(patches))
            prefix_ctx.append(summary.expand_as(prefix))
        return torch.cat([torch.cat(prefix_ctx, dim=-1), torch.cat(patch_ctx, dim=-1)], dim=2)

    def _check(self, x: torch.Tensor, grid_size: Tuple[int, int]) -> None:
        if x.ndim != 4:
            raise ValueError(f'InTI expects tokens of shape (B, T, N, D), got a {x.ndim}-D tensor {tuple(x.shape)}')
        expected = self.num_prefix_tokens + grid_size[0] * grid_size[1]
        if x.shape[2] != expected:
            raise ValueError(
                f'InTI expects {expected} tokens per frame ({self.num_prefix_tokens} prefix + '
                f'{grid_size[0]}x{grid_size[1]} grid), got {x.shape[2]}')

    def _logits(self, paired: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
        """Logits of the pairs of ``paired`` (B, 2P, N, D): (B, P, N, 2 [+ window])."""
        context = rearrange(self._context(paired, grid_size), 'b (t two) n c -> b t n (two c)', two=2)
        return self.mlp(context)

    def _normalise(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1) if self.weighting == 'softmax' else logits.sigmoid()

    def _partner_windows(self, second: torch.Tensor, grid_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k x k neighbourhood of every token in the second frames: (B, P, N, k*k, D), and which places exist.

        Prefix tokens have no neighbours: their window holds themselves at the centre only.
        """
        k, p = self.partner_window, self.num_prefix_tokens
        batch, height = second.shape[0], grid_size[0]
        grid = rearrange(second[:, :, p:], 'b t (h w) d -> (b t) d h w', h=height)
        windows = rearrange(F.unfold(grid, k, padding=k // 2), '(b t) (d kk) n -> b t n kk d', b=batch, kk=k * k)
        inside = F.unfold(grid.new_ones(1, 1, *grid_size), k, padding=k // 2)[0].T > 0  # (h w, kk)
        centre = k * k // 2
        prefix = F.pad(second[:, :, :p, None], (0, 0, centre, k * k - centre - 1))
        prefix_inside = F.one_hot(torch.tensor(centre, device=second.device), k * k).bool().expand(p, -1)
        return torch.cat([prefix, windows], dim=2), torch.cat([prefix_inside, inside], dim=0)

    def pair_weights(self, x: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
        """The weights this layer gives to the two frames of every pair, token by token.

        Args:
            x: The layer's input tokens, (B, T, N, D).
            grid_size: Patch grid (height, width).

        Returns:
            (B, T // 2, N, 2): weight of the first and of the second frame of each pair
            (summing to one for ``'softmax'`` and ``'mean'``; with a partner window the second
            one is the total over the window). Tokens follow the layout of ``x``: prefix
            tokens first, then the grid row by row.
        """
        self._check(x, grid_size)
        num_pairs = x.shape[1] // 2
        if self.weighting == 'mean' or num_pairs == 0:
            return x.new_full((x.shape[0], num_pairs, x.shape[2], 2), 0.5)
        logits = self._logits(x[:, :2 * num_pairs], grid_size)[..., :2]
        return self._normalise(logits).to(x.dtype)

    def forward(self, x: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
        """Merge neighbouring frames.

        Args:
            x: Tokens, (B, T, N, D) with N = num_prefix_tokens + grid_size[0] * grid_size[1].
            grid_size: Patch grid (height, width) of every frame.

        Returns:
            Tokens, (B, ceil(T / 2), N, D).
        """
        self._check(x, grid_size)
        num_frames = x.shape[1]
        if num_frames < 2:
            return x
        num_pairs = num_frames // 2
        paired = x[:, :2 * num_pairs]
        first, second = rearrange(paired, 'b (t two) n d -> two b t n d', two=2)

        if self.weighting == 'mean':
            merged = first * 0.5 + second * 0.5
        elif self.partner_window > 1:
            logits = self._logits(paired, grid_size)
            weights = self._normalise(logits[..., :2]).to(x.dtype)
            windows, inside = self._partner_windows(second, grid_size)
            place = logits[..., 2:].masked_fill(~inside, float('-inf')).softmax(dim=-1).to(x.dtype)
            partner = torch.einsum('btnkd,btnk->btnd', windows, place)
            merged = first * weights[..., :1] + partner * weights[..., 1:]
        else:
            weights = self._normalise(self._logits(paired, grid_size)).to(x.dtype)
            # zero logits give weights of exactly 0.5: the fresh layer is a bitwise exact average
            merged = first * weights[..., :1] + second * weights[..., 1:]

        if num_frames % 2:
            merged = torch.cat([merged, x[:, -1:]], dim=1)
        return merged

    def extra_repr(self) -> str:
        return (
            f'num_prefix_tokens={self.num_prefix_tokens}, kernel_sizes={self.kernel_sizes}, '
            f'global_context={self.global_context}, weighting={self.weighting!r}'
            + (f', partner_window={self.partner_window}' if self.partner_window > 1 else '')
        )
