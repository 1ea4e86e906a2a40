""" Running a model over evaluation views, and averaging them: the one place it happens.

Evaluation clips carry a view axis from the transform to the model: a batch is
(B, V, C, T, H, W), V = temporal clips x spatial crops (1 included). The views of all
videos go through the model as one batch of B * V clips; each video's outputs are then
averaged over its V views. Training's validation and ``timm-inti-predict`` both call this.
"""
from typing import Callable, Tuple, Union

import torch
from einops import rearrange

__all__ = ['average_over_views', 'probabilities', 'view_probabilities']

Outputs = Union[torch.Tensor, Tuple[torch.Tensor, ...]]


def average_over_views(fn: Callable[[torch.Tensor], Outputs], views: torch.Tensor) -> Outputs:
    """``fn`` on the (B * V, C, T, H, W) clips of ``views`` (B, V, C, T, H, W), its outputs averaged over V.

    ``fn`` returns a (B * V, ...) tensor, or a tuple of them (e.g. probabilities and
    embeddings from one forward pass); each comes back (B, ...) in float32.
    """
    if views.ndim != 6:
        raise ValueError(f'expected evaluation views (B, V, C, T, H, W), '
                         f'got a {views.ndim}-d tensor {tuple(views.shape)}')
    num_views = views.shape[1]
    outputs = fn(rearrange(views, 'b v c t h w -> (b v) c t h w'))

    def mean(x: torch.Tensor) -> torch.Tensor:
        return rearrange(x.float(), '(b v) ... -> b v ...', v=num_views).mean(dim=1)
    return tuple(mean(x) for x in outputs) if isinstance(outputs, tuple) else mean(outputs)


def probabilities(model: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities from ``model``'s logits: a softmax, unless its head says otherwise.

    A zero-shot head of a sigmoid-trained image-text model (SigLIP) turns its logits into
    independent per-class probabilities (``ZeroShotHead.probabilities``).
    """
    head_probabilities = getattr(getattr(model, 'head', None), 'probabilities', None)
    return head_probabilities(logits) if callable(head_probabilities) else logits.softmax(dim=-1)


def view_probabilities(model: torch.nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Class probabilities (B, K) of ``views`` (B, V, C, T, H, W): each view's probabilities, averaged over views."""
    return average_over_views(lambda clips: probabilities(model, model(clips).float()), views)
