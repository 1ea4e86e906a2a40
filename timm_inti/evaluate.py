""" Running a model over evaluation views, and averaging them: the one place it happens.

Evaluation clips carry a view axis from the transform to the model: a batch is
(B, V, C, T, H, W), V = temporal clips x spatial crops (1 included). The views of all
videos go through the model as one batch of B * V clips; each video's outputs are then
averaged over its V views. Training's validation and ``timm-inti-predict`` both call this.
"""
import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple, Union

import torch
from einops import rearrange

from .files import pyplot, write_atomic, write_csv, write_png

__all__ = ['average_over_views', 'probabilities', 'view_probabilities', 'write_evaluation']

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


def write_evaluation(path: Union[str, Path], records: Sequence[Dict], classes: Sequence[str]) -> List[str]:
    """Per-video predictions and what they add up to, as mmaction2 users dump and inspect results.

    ``records``: one per video, ``{"path", "label" (the true class), "predictions": [{"label",
    "probability"}, ...] best first}``, ``timm-inti-predict --output``'s lines plus the truth.
    Writes, each atomically: ``path`` (JSONL, one line per record); ``STEM.per_class.csv``
    (class, videos, correct, top1 in %: its correct column sums to top-1 times the videos);
    ``STEM.confusion.csv`` (a row per true class, a column per predicted class, counts); and
    ``STEM.confusion.png``, rows normalised, when matplotlib is installed. Returns the paths.
    """
    path = Path(path)
    stem = path.with_suffix('')
    index = {name: i for i, name in enumerate(classes)}
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.int64)
    for record in records:
        confusion[index[record['label']], index[record['predictions'][0]['label']]] += 1
    write_atomic(path, lambda f: f.writelines(json.dumps(r) + '\n' for r in records))
    videos, correct = confusion.sum(dim=1), confusion.diagonal()
    per_class = [{'class': name, 'videos': int(n), 'correct': int(c),
                  'top1': round(100 * int(c) / int(n), 4) if n else ''} for name, n, c in zip(classes, videos, correct)]
    written = [str(path), f'{stem}.per_class.csv', f'{stem}.confusion.csv']
    write_csv(written[1], per_class, ['class', 'videos', 'correct', 'top1'])
    write_csv(written[2], [dict(zip(['true \\ predicted', *classes], [name, *map(int, row)]))
                           for name, row in zip(classes, confusion)], ['true \\ predicted', *classes])
    plt = pyplot()
    if plt is not None:
        side = min(4 + 0.25 * len(classes), 40)
        fig, ax = plt.subplots(figsize=(side, side))
        shown = ax.imshow(confusion / videos.clamp_min(1)[:, None], cmap='Blues', vmin=0, vmax=1)
        if len(classes) <= 60:
            ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
            ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel('predicted')
        ax.set_ylabel('true')
        ax.set_title(f'{len(records)} videos, top-1 {100 * int(correct.sum()) / max(len(records), 1):.2f}%')
        fig.colorbar(shown, ax=ax, fraction=0.046)
        fig.tight_layout()
        write_png(f'{stem}.confusion.png', fig)
        written.append(f'{stem}.confusion.png')
    return written
