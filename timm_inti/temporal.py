""" Temporal modules that compose with InTI

The paper reports its best result with InTI plus extra temporal modules (87.6 top-1 on
Kinetics-400, 37% fewer GFLOPs than naive adaptation); which modules is this project's
choice (docs/paper.md): an ST-Adapter-style spatio-temporal adapter
(Pan et al., "ST-Adapter: Parameter-Efficient Image-to-Video Transfer Learning", NeurIPS
2022, https://arxiv.org/abs/2206.13559): a bottleneck with a depthwise 3-D convolution over
(T, h, w) on the patch grid, added to the tokens before a Transformer block:

    x <- x + up(dwconv3d(down(x)))          on patch tokens; prefix tokens pass unchanged

The depthwise convolution starts at zero, so a fresh adapter adds nothing and a
CLIP-initialised model is exactly the image model. An adapter runs on however many frames
its block sees: before an InTI layer every frame, after it the merged ones.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from einops import rearrange
from timm.layers import trunc_normal_

__all__ = ['STAdapter']


class STAdapter(nn.Module):
    """Spatio-temporal adapter: bottleneck, depthwise 3-D convolution over (T, h, w), projection back.

    Args:
        dim: Token width.
        hidden_dim: Bottleneck width.
        kernel_size: (time, height, width) size of the depthwise convolution; odd.
        num_prefix_tokens: Tokens before the patch grid in every frame (class, registers);
            they have no place on the grid and pass through unchanged.
    """

    def __init__(
            self,
            dim: int,
            hidden_dim: int,
            kernel_size: Sequence[int] = (3, 1, 1),
            num_prefix_tokens: int = 1,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        kernel_size = tuple(int(k) for k in kernel_size)
        if len(kernel_size) != 3 or any(k < 1 or k % 2 == 0 for k in kernel_size):
            raise ValueError(f'STAdapter kernel_size must be three odd positive sizes (t, h, w), got {kernel_size}')
        if hidden_dim < 1:
            raise ValueError(f'STAdapter hidden_dim must be positive, got {hidden_dim}')
        self.num_prefix_tokens = num_prefix_tokens
        self.down = nn.Linear(dim, hidden_dim, **dd)
        self.conv = nn.Conv3d(
            hidden_dim, hidden_dim, kernel_size, padding=tuple(k // 2 for k in kernel_size), groups=hidden_dim, **dd)
        self.up = nn.Linear(hidden_dim, dim, **dd)
        self.init_weights()

    def init_weights(self) -> None:
        """timm-style init with the convolution at zero, so a fresh adapter adds exactly nothing.

        timm's ViT init functions call this after re-initialising the children, so the zero
        convolution survives ``model.init_weights()`` in any mode.
        """
        for m in (self.down, self.up):
            trunc_normal_(m.weight, std=.02)
            nn.init.zeros_(m.bias)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
        """Tokens (B, T, N, D) with N = num_prefix_tokens + grid_size[0] * grid_size[1], in and out."""
        height, width = grid_size
        p = self.num_prefix_tokens
        patches = x[:, :, p:]
        z = rearrange(self.down(patches), 'b t (h w) c -> b c t h w', h=height, w=width)
        z = rearrange(self.conv(z), 'b c t h w -> b t (h w) c')
        patches = patches + self.up(z)
        return torch.cat([x[:, :, :p], patches], dim=2) if p else patches

    def extra_repr(self) -> str:
        return f'num_prefix_tokens={self.num_prefix_tokens}'
