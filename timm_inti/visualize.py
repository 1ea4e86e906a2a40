"""Pictures of what InTI merges: the weight every patch gives to each frame of a merged pair.

    from timm_inti.visualize import show_merges, write_merges
    merges, fig = show_merges(model, clip)           # in a notebook: the contact sheet, and the numbers
    write_merges(model, clip, 'merges/')             # one PNG per InTI layer and pair, and contact_sheet.png

``clip`` is what the model eats, (C, T, H, W) (or a batch of one). The weights are read
with a forward pre-hook on every ``model.inti[k]`` that records the layer's input and asks
the layer for ``pair_weights``: the weights it used, recomputed from the same input, so the
forward pass itself is untouched (and stays compilable) when nobody is looking.

What the pictures show, per InTI layer and pair of frames: the first frame, the second frame,
and a heat map of the weight of the first frame at every patch (1: the merged token is the
first frame's, 0: the second's, 0.5: the average; red leans to the first, blue to the second).

Later InTI layers merge frames that earlier layers already merged. Every merged frame is
traced back to the span of input frames it summarises: after a layer, frame j summarises the
spans of its pair (2j and 2j + 1, or the odd last frame alone), so the second layer of
``inti_vit_b16_deep`` merges input frames 0-1 with 2-3, and its third layer 0-3 with 4-7. A
side of a pair is drawn as the mean of its input frames; its heat map is still the weight of
the tokens at that layer, which have been mixed across those frames and through the blocks.

Prefix tokens (class, registers) have no place on the patch grid: their weights are returned
separately (``LayerMerges.prefix``) and printed in the heat map's title, not drawn.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from einops import rearrange

from .files import pyplot, write_png

__all__ = ['LayerMerges', 'merge_weights', 'display_frames', 'pair_figure', 'contact_sheet', 'show_merges',
           'write_merges']

Span = Tuple[int, int]


@dataclass
class LayerMerges:
    """The weights one InTI layer gave on a batch of clips.

    Attributes:
        layer: The layer's key in ``model.inti``: the number of blocks before it.
        weights: (B, P, h, w): weight of the first side of each of the P pairs, per patch.
        prefix: (B, P, num_prefix_tokens): the same for the prefix tokens (class, registers).
        second: (B, P, h, w): weight of the second side (``1 - weights`` unless the layer uses
            ``weighting='sigmoid'``).
        spans: Per pair, the input frames [start, stop) that its first and its second side summarise.
    """
    layer: str
    weights: torch.Tensor
    prefix: torch.Tensor
    spans: List[Tuple[Span, Span]]
    second: torch.Tensor

    def pair_name(self, pair: int) -> str:
        first, second = (_span_name(s) for s in self.spans[pair])
        return f'InTI after block {self.layer}: {first} + {second}'


def _span_name(span: Span) -> str:
    start, stop = span
    return f'frame {start}' if stop - start == 1 else f'frames {start}-{stop - 1}'


def _as_batch(clip: torch.Tensor) -> torch.Tensor:
    if clip.ndim == 4:
        return clip[None]
    if clip.ndim != 5:
        raise ValueError(f'expected a clip (C, T, H, W) or a batch (B, C, T, H, W), got shape {tuple(clip.shape)}')
    return clip


@torch.no_grad()
def merge_weights(model: nn.Module, clips: torch.Tensor) -> List[LayerMerges]:
    """Run ``model`` on ``clips`` and return the weights of every InTI layer, in order.

    The model runs as it is (call ``model.eval()`` first for inference behaviour).

    Args:
        model: A video ViT with InTI layers in ``model.inti`` (``timm_inti.vit``).
        clips: (C, T, H, W) or (B, C, T, H, W), as the model takes them.
    """
    clips = _as_batch(clips)
    layers = getattr(model, 'inti', None)
    if not layers:
        raise ValueError(f'{type(model).__name__} has no InTI layers (model.inti is empty): nothing is merged')
    recorded, handles = [], []

    def hook(module, args, kwargs):
        x, grid_size = (list(args) + [kwargs[name] for name in ('x', 'grid_size') if name in kwargs])[:2]
        recorded.append((key_of[id(module)], module.pair_weights(x, grid_size).float().cpu(), tuple(grid_size),
                         module.num_prefix_tokens, x.shape[1]))

    key_of = {id(m): k for k, m in layers.items()}
    try:
        for module in layers.values():
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        param = next(model.parameters(), None)
        model(clips.to(param.device if param is not None else clips.device))
    finally:
        for h in handles:
            h.remove()

    spans: List[Span] = [(t, t + 1) for t in range(clips.shape[2])]
    merges = []
    for key, weights, (height, width), num_prefix, num_frames in recorded:
        if num_frames != len(spans):
            raise RuntimeError(f'InTI after block {key} saw {num_frames} frames, expected {len(spans)}')
        pairs = [(spans[2 * j], spans[2 * j + 1]) for j in range(num_frames // 2)]
        first, second = weights[..., 0], weights[..., 1]                           # (B, P, N)
        merges.append(LayerMerges(
            layer=key,
            weights=rearrange(first[..., num_prefix:], 'b p (h w) -> b p h w', h=height, w=width),
            prefix=first[..., :num_prefix],
            spans=pairs,
            second=rearrange(second[..., num_prefix:], 'b p (h w) -> b p h w', h=height, w=width),
        ))
        spans = [(a[0], b[1]) for a, b in pairs] + (spans[-1:] if num_frames % 2 else [])
    return merges


def display_frames(clip: torch.Tensor, model: Optional[nn.Module] = None) -> torch.Tensor:
    """Frames to draw, (T, H, W, 3) in [0, 1], from a model input clip (C, T, H, W).

    With ``model``, its normalisation (``timm.data.resolve_data_config``) is undone first.
    """
    clip = _as_batch(clip)[0].detach().float().cpu()
    if model is not None:
        from timm.data import resolve_data_config
        config = resolve_data_config(model=model)
        mean = torch.tensor(config['mean']).view(-1, 1, 1, 1)
        std = torch.tensor(config['std']).view(-1, 1, 1, 1)
        clip = clip * std + mean
    return rearrange(clip, 'c t h w -> t h w c').clamp(0, 1)


def _side(frames: torch.Tensor, span: Span) -> torch.Tensor:
    return frames[span[0]:span[1]].mean(dim=0)


def _draw_pair(axes, frames: torch.Tensor, merges: LayerMerges, pair: int, sample: int):
    """Draw one pair into three axes: first side, second side, heat map of the first side's weight."""
    (first, second), heat = merges.spans[pair], merges.weights[sample, pair]
    height, width = frames.shape[1:3]
    a, b = _side(frames, first), _side(frames, second)
    axes[0].imshow(a.numpy())
    axes[1].imshow(b.numpy())
    axes[2].imshow(((a + b) / 2).mean(dim=-1).numpy(), cmap='gray', vmin=0, vmax=1)
    image = axes[2].imshow(heat.numpy(), cmap='coolwarm', vmin=0, vmax=1, alpha=0.65, interpolation='nearest',
                           extent=(0, width, height, 0))
    prefix = merges.prefix[sample, pair]
    note = f' (class {prefix[0]:.2f})' if prefix.numel() else ''
    labels = (_span_name(first), _span_name(second), f'weight of {_span_name(first)}{note}')
    for ax, label in zip(axes, labels):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=7)
    return image


def pair_figure(frames: torch.Tensor, merges: LayerMerges, pair: int, sample: int = 0):
    """One pair of one layer: the two frames side by side and the heat map of the first one's weight."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    image = _draw_pair(axes, frames, merges, pair, sample)
    fig.colorbar(image, ax=axes, shrink=0.8, label='weight of the first frame')
    fig.suptitle(merges.pair_name(pair), fontsize=9)
    return fig


def contact_sheet(frames: torch.Tensor, merges: List[LayerMerges], sample: int = 0, title: Optional[str] = None):
    """Every pair of every layer, one row each: first side, second side, heat map."""
    plt = _pyplot()
    rows = [(m, j) for m in merges for j in range(len(m.spans))]
    if not rows:
        raise ValueError('no merged pairs to draw (a one-frame clip?)')
    fig, axes = plt.subplots(len(rows), 3, figsize=(6.5, 1.9 * len(rows) + 0.5), squeeze=False)
    image = None
    for row, (m, j) in enumerate(rows):
        image = _draw_pair(axes[row], frames, m, j, sample)
        axes[row, 0].set_ylabel(f'after block {m.layer}', fontsize=7)
    fig.colorbar(image, ax=axes, shrink=min(1., 3 / len(rows)), label='weight of the first frame')
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _pyplot():
    plt = pyplot()
    if plt is None:
        raise ImportError('merge pictures need matplotlib: pip install "timm-inti[plot]"')
    return plt


def _weights_in_eval(model: nn.Module, clip: torch.Tensor) -> List[LayerMerges]:
    was_training = model.training
    model.eval()
    try:
        return merge_weights(model, _as_batch(clip)[:1])
    finally:
        model.train(was_training)


def show_merges(model: nn.Module, clip: torch.Tensor, frames: Optional[torch.Tensor] = None,
                title: Optional[str] = None):
    """For notebooks: the weights of every InTI layer on ``clip`` and their contact sheet.

    Args:
        model: A video ViT with InTI layers; run in eval mode for this call.
        clip: The model's input, (C, T, H, W) or a batch of one.
        frames: What to draw, (T, H, W, 3) in [0, 1]; default: ``clip`` with the model's
            normalisation undone.

    Returns:
        (list of ``LayerMerges``, matplotlib figure).
    """
    merges = _weights_in_eval(model, clip)
    frames = display_frames(clip, model) if frames is None else frames
    return merges, contact_sheet(frames, merges, title=title)


def write_merges(model: nn.Module, clip: torch.Tensor, out_dir: Union[str, Path],
                 frames: Optional[torch.Tensor] = None, title: Optional[str] = None) -> List[Path]:
    """Write the merge pictures of ``clip`` to ``out_dir``; returns the paths written.

    One ``inti{k}_pair{j}.png`` per InTI layer (after block k) and pair j, and
    ``contact_sheet.png`` with all of them; every file is written atomically.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = _weights_in_eval(model, clip)
    frames = display_frames(clip, model) if frames is None else frames
    written = []
    for m in merges:
        for j in range(len(m.spans)):
            path = out_dir / f'inti{m.layer}_pair{j}.png'
            write_png(path, pair_figure(frames, m, j))
            written.append(path)
    path = out_dir / 'contact_sheet.png'
    write_png(path, contact_sheet(frames, merges, title=title))
    return written + [path]
