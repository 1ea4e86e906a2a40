"""A small ablation of InTI on a synthetic video task that 2 CPU cores train in minutes.

The task ("flash order"): every clip holds two flashes, saturated squares of two different
colours (red, green or blue), each shown in a single frame, over static clutter (squares of
muted colours, the same size) and Gaussian pixel noise. The label is the ordered colour pair,
e.g. "red, then blue": 6 classes, chance 16.7%. Frame order matters: a clip played backwards
shows the same flashes in the other order and has another label. Evidence is sparse in time
(2 frames of 8), so what a merge keeps of a pair of frames matters: averaging halves a flash
and blurs its time, dropping every other frame misses it half the time. Clips are generated in
memory from a seed; the train set (seed 1000 + s), test set (2000 + s) and pre-training set
(3000 + s) of seed s are disjoint draws.

The model: a shrunken ``inti_vit_b16`` built through timm's registry (32x32 frames, 8x8
patches, 4 blocks of width 64, 2 heads, 8 frames). As in the paper's image-to-video setting,
every row starts from one image model: per seed, the naive ViT is first trained on single
frames (is there a flash in this frame, and which colour), then each row builds its video
model on that backbone with a new head, the rest as the library initialises it for CLIP
weights: temporal embedding at zero, InTI layers at their averaging init, adapters adding
nothing. (Trained from scratch instead, these small models stayed near chance, under 20%, on
the cluttered task in this budget.) Training: AdamW and a cosine schedule from timm's factories,
cross-entropy, a fixed number of epochs.

Rows (``--methods``):

  * ``naive``: every block sees every frame (``inti_after=()``);
  * ``frame_subsampling``: the naive model on every other frame, in training and test;
  * ``average_pooling``: a merge after block 1 with fixed 0.5 / 0.5 weights (``inti_weighting='mean'``);
  * ``inti``: InTI after block 1 (a quarter of the blocks, the paper's schedule): learned,
    multi-scale, softmax-normalised weights;
  * ``inti_single_scale``: InTI with the token itself as its only context scale;
  * ``inti_sigmoid``: InTI with independent sigmoid gates instead of the softmax;
  * ``inti_temporal``: InTI plus a spatio-temporal adapter (width 32) before every block;
  * ``tome``: the naive model with ToMe-style token merging inside every frame, its merge
    rate chosen so that its GFLOPs come closest to ``inti``'s.

Reported per row: test top-1 in percent, mean and sample standard deviation over the seeds
(NaN for a single seed), and GFLOPs per clip (10^9 multiply-adds: fvcore with attention
included, batch 1). In the CSV, ``seeds`` is the number of seeds. A seed fixes everything:
data, initial weights and batch order; torch runs on ``--threads`` threads (default 2), so a
rerun on the same machine reproduces the table.

Results go to ``--out`` (default benchmarks/results): ablation.csv, ablation.md and
ablation.png (no plot without matplotlib). Progress goes to stderr, the table to stdout.

    python benchmarks/ablation.py                            # the full study: ~12 min on 2 CPU cores
    python benchmarks/ablation.py --quick --out /tmp/abl     # a tiny run in seconds, to check that it works
    python benchmarks/ablation.py --methods naive inti --seeds 5
"""
import argparse
import math
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import random_seed

import timm_inti  # noqa: F401  (registers the models)
from timm_inti.flops import count_flops

from timm_inti.baselines import apply_tome, subsample_frames, tome_r_for_flops
from timm_inti.files import pyplot, write_csv, write_png, write_text

COLUMNS = ['method', 'gflops', 'top1_mean', 'top1_std', 'seeds']

# ----------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------

PALETTE: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
    ('red', (1., 0., 0.)), ('green', (0., 1., 0.)), ('blue', (0., 0., 1.)))


@dataclass(frozen=True)
class TaskConfig:
    """The flash-order task: what a clip looks like.

    Args:
        frames: Frames per clip.
        size: Frame height and width, pixels.
        square: Side of the flashes and of the clutter squares, pixels.
        colours: Flash colours, the first ones of ``PALETTE``; ``c * (c - 1)`` classes.
        clutter: Static muted squares per clip.
        noise: Standard deviation of the Gaussian pixel noise (pixel values are in [0, 1]).
    """
    frames: int = 8
    size: int = 32
    square: int = 4
    colours: int = 3
    clutter: int = 4
    noise: float = 0.15

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f'a flash-order clip needs at least 2 frames, got frames={self.frames}')
        if not 2 <= self.colours <= len(PALETTE):
            raise ValueError(f'colours must be between 2 and {len(PALETTE)}, got {self.colours}')
        if not 1 <= self.square <= self.size:
            raise ValueError(f'square must be between 1 and size={self.size}, got {self.square}')
        if self.clutter < 0 or self.noise < 0:
            raise ValueError(f'clutter and noise must be non-negative, got {self.clutter} and {self.noise}')

    @property
    def pairs(self) -> List[Tuple[int, int]]:
        """Label ``i`` is colour ``pairs[i][0]`` first, then colour ``pairs[i][1]``."""
        return [(a, b) for a in range(self.colours) for b in range(self.colours) if a != b]

    @property
    def num_classes(self) -> int:
        return len(self.pairs)


class ClipSet(NamedTuple):
    """Clips of the flash-order task and what was drawn into them.

    clips: float32 (N, 3, T, H, W); labels: int64 (N,); frame_colour: int64 (N, T), the colour
    index flashing in each frame or -1 for none.
    """
    clips: torch.Tensor
    labels: torch.Tensor
    frame_colour: torch.Tensor


def class_names(cfg: TaskConfig) -> List[str]:
    return [f'{PALETTE[a][0]}, then {PALETTE[b][0]}' for a, b in cfg.pairs]


def reversed_label(labels: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """The label of the same clip played backwards: the same colours in the other order."""
    pairs = cfg.pairs
    table = torch.tensor([pairs.index((b, a)) for a, b in pairs])
    return table[labels]


def _squares(top: torch.Tensor, left: torch.Tensor, side: int, size: int) -> torch.Tensor:
    """Boolean masks of ``side`` x ``side`` squares at (top, left), any leading shape: (..., size, size)."""
    coords = torch.arange(size)
    rows = (coords >= top[..., None]) & (coords < top[..., None] + side)
    cols = (coords >= left[..., None]) & (coords < left[..., None] + side)
    return rows[..., :, None] & cols[..., None, :]


def make_clips(num_clips: int, seed: int, cfg: TaskConfig = TaskConfig()) -> ClipSet:
    """Generate ``num_clips`` clips of the flash-order task from ``seed``, in memory.

    Every class appears equally often (up to one clip), in random order. The two flash frames
    are a uniformly random pair of distinct frames, the positions uniform over the frame.
    """
    if num_clips < 1:
        raise ValueError(f'num_clips must be positive, got {num_clips}')
    g = torch.Generator().manual_seed(seed)
    n, t, size, side = num_clips, cfg.frames, cfg.size, cfg.square
    labels = (torch.arange(n) % cfg.num_classes)[torch.randperm(n, generator=g)]
    colour_pair = torch.tensor(cfg.pairs)[labels]                                    # (N, 2)
    when = torch.rand(n, t, generator=g).argsort(dim=1)[:, :2].sort(dim=1).values     # (N, 2), t1 < t2
    where = torch.randint(0, size - side + 1, (n, 2, 2), generator=g)                # (N, flash, yx)

    # static clutter: muted colours, a grey level in [0.25, 0.75] with a tint of at most +-0.1
    corner = torch.randint(0, size - side + 1, (n, cfg.clutter, 2), generator=g)
    grey = 0.25 + 0.5 * torch.rand(n, cfg.clutter, 1, generator=g)
    tint = 0.2 * (torch.rand(n, cfg.clutter, 3, generator=g) - 0.5)
    clutter_colour = grey + tint

    clips = torch.zeros(n, 3, t, size, size)
    for k in range(cfg.clutter):
        mask = _squares(corner[:, k, 0], corner[:, k, 1], side, size)                 # (N, H, W)
        clips = torch.where(rearrange(mask, 'n h w -> n () () h w'),
                            rearrange(clutter_colour[:, k], 'n c -> n c () () ()'), clips)
    palette = torch.tensor([rgb for _, rgb in PALETTE])
    frame_colour = torch.full((n, t), -1, dtype=torch.long)
    for e in range(2):
        mask = _squares(where[:, e, 0], where[:, e, 1], side, size)                   # (N, H, W)
        in_frame = F.one_hot(when[:, e], t).bool()                                     # (N, T)
        mask = rearrange(mask, 'n h w -> n () () h w') & rearrange(in_frame, 'n t -> n () t () ()')
        clips = torch.where(mask, rearrange(palette[colour_pair[:, e]], 'n c -> n c () () ()'), clips)
        frame_colour.scatter_(1, when[:, e:e + 1], colour_pair[:, e:e + 1])
    clips += cfg.noise * torch.randn(clips.shape, generator=g)
    return ClipSet(clips, labels, frame_colour)


def frame_set(data: ClipSet, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Single frames for image pre-training: both flash frames of every clip and two frames without.

    Returns frames (2 * 2 * N, 3, H, W) and labels: 0 for no flash, 1 + colour index otherwise.
    """
    g = torch.Generator().manual_seed(seed)
    flash = data.frame_colour >= 0
    # two of the frames without a flash, at random
    empty = torch.where(flash, 2., torch.rand(flash.shape, generator=g)).argsort(dim=1)[:, :2]
    chosen = torch.cat([flash.nonzero()[:, 1].view(-1, 2), empty], dim=1)             # (N, 4) frame indices
    frames = rearrange(data.clips, 'n c t h w -> n t c h w')
    frames = frames.gather(1, repeat(chosen, 'n k -> n k c h w', c=3, h=frames.shape[-2], w=frames.shape[-1]))
    labels = data.frame_colour.gather(1, chosen) + 1
    return rearrange(frames, 'n k c h w -> (n k) c h w'), rearrange(labels, 'n k -> (n k)')


# ----------------------------------------------------------------------------------------------
# The rows
# ----------------------------------------------------------------------------------------------

MODEL = 'inti_vit_b16'
BACKBONE = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2)
INTI_AFTER = (1,)  # after a quarter of the 4 blocks


@dataclass(frozen=True)
class Method:
    """One row: ``timm.create_model(MODEL, **BACKBONE, inti_after=INTI_AFTER, **model_kwargs)``,
    fed every ``subsample``-th frame, with ToMe merging when ``tome``."""
    name: str
    model_kwargs: Dict = field(default_factory=dict)
    subsample: int = 1
    tome: bool = False


METHODS: Dict[str, Method] = {m.name: m for m in (
    Method('naive', dict(inti_after=())),
    Method('frame_subsampling', dict(inti_after=()), subsample=2),
    Method('average_pooling', dict(inti_weighting='mean')),
    Method('inti'),
    Method('inti_single_scale', dict(inti_kernel_sizes=(1,), inti_global_context=False)),
    Method('inti_sigmoid', dict(inti_weighting='sigmoid')),
    Method('inti_temporal', dict(adapter_dim=BACKBONE['embed_dim'] // 2)),
    Method('tome', dict(inti_after=()), tome=True),
)}


def model_kwargs(method: Method, cfg: TaskConfig, num_classes: Optional[int] = None) -> Dict:
    kwargs = dict(BACKBONE, num_frames=cfg.frames, num_classes=num_classes or cfg.num_classes,
                  inti_after=INTI_AFTER)
    kwargs.update(method.model_kwargs)
    return kwargs


def prepare(method: Method, clips: torch.Tensor) -> torch.Tensor:
    """The row's input: every ``subsample``-th frame."""
    return subsample_frames(clips, method.subsample) if method.subsample > 1 else clips


def video_init(backbone: Optional[Dict[str, torch.Tensor]], cfg: TaskConfig, seed: int) -> Dict[str, torch.Tensor]:
    """The weights every row of ``seed`` starts from: the image backbone, a new head, a zero temporal embedding."""
    torch.manual_seed(seed)
    model = timm.create_model(MODEL, **model_kwargs(METHODS['naive'], cfg))
    if backbone is not None:
        # not the image model's temporal embedding: one-frame inputs resample it and train its middle entries
        fresh = ('head.', 'temporal_embed')
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in backbone.items() if not k.startswith(fresh)}, strict=False)
        if unexpected or sorted(missing) != ['head.bias', 'head.weight', 'temporal_embed']:
            raise RuntimeError(f'the image backbone does not fit the video model (missing: {missing}, '
                               f'unexpected: {unexpected})')
    return model.state_dict()


def build_model(method: Method, cfg: TaskConfig, init: Dict[str, torch.Tensor], seed: int,
                tome_r: Optional[int]) -> nn.Module:
    """The row's model, starting from ``init`` (the naive model's weights); its own layers keep their init."""
    torch.manual_seed(seed)
    model = timm.create_model(MODEL, **model_kwargs(method, cfg))
    missing, unexpected = model.load_state_dict(init, strict=False)
    own = [k for k in missing if not k.startswith(model.video_only_prefixes)]
    if unexpected or own:
        raise RuntimeError(f'{method.name}: the naive weights do not fit (unexpected: {unexpected}, missing: {own})')
    if method.tome:
        if tome_r is None:
            raise ValueError(f'{method.name}: ToMe needs a merge rate')
        apply_tome(model, tome_r)
    return model


def gflops_of(method: Method, cfg: TaskConfig, tome_r: Optional[int]) -> float:
    """GFLOPs (10^9 multiply-adds, fvcore with attention) of one clip through the row's model."""
    init = video_init(None, cfg, 0)
    model = build_model(method, cfg, init, 0, tome_r).eval()
    return count_flops(model, prepare(method, torch.zeros(1, 3, cfg.frames, cfg.size, cfg.size))).gflops


def find_tome_r(cfg: TaskConfig) -> int:
    """The ToMe merge rate whose GFLOPs come closest to the ``inti`` row's."""
    target = gflops_of(METHODS['inti'], cfg, None)
    kwargs = model_kwargs(METHODS['tome'], cfg)
    return tome_r_for_flops(MODEL, kwargs.pop('num_frames'), target, **kwargs)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one stage: AdamW with a cosine schedule stepped every update."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: int = 0


def fit(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, train_cfg: TrainConfig, seed: int,
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> float:
    """Train ``model`` with cross-entropy, batches in an order drawn from ``seed``; returns the last epoch's mean loss.

    ``transform`` maps a batch of ``inputs`` to the model's input (frame subsampling).
    """
    updates_per_epoch = len(labels) // train_cfg.batch_size
    if updates_per_epoch < 1:
        raise ValueError(f'{len(labels)} training samples make no batch of {train_cfg.batch_size}')
    optimizer = create_optimizer_v2(model, opt='adamw', lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched='cosine', num_epochs=train_cfg.epochs, warmup_epochs=train_cfg.warmup_epochs,
        min_lr=train_cfg.lr / 100, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    order = torch.Generator().manual_seed(seed)
    model.train()
    num_updates, loss_sum = 0, 0.
    for _ in range(num_epochs):
        loss_sum = 0.
        shuffled = torch.randperm(len(labels), generator=order)[:updates_per_epoch * train_cfg.batch_size]
        for index in rearrange(shuffled, '(u b) -> u b', b=train_cfg.batch_size):
            x = inputs[index]
            loss = F.cross_entropy(model(transform(x) if transform else x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            num_updates += 1
            scheduler.step_update(num_updates)
            loss_sum += loss.item()
    return loss_sum / updates_per_epoch


@torch.no_grad()
def predict(model: nn.Module, method: Method, clips: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of every clip, (N, num_classes)."""
    model.eval()
    return torch.cat([model(prepare(method, clips[i:i + batch_size])) for i in range(0, len(clips), batch_size)])


def pretrain_backbone(cfg: TaskConfig, seed: int, num_clips: int, train_cfg: TrainConfig) -> Dict[str, torch.Tensor]:
    """The image model of ``seed``: the naive ViT trained on single frames (flash colour or none)."""
    frames, labels = frame_set(make_clips(num_clips, 3000 + seed, cfg), seed)
    random_seed(seed)
    model = timm.create_model(MODEL, **model_kwargs(METHODS['naive'], cfg, num_classes=1 + cfg.colours))
    fit(model, frames, labels, train_cfg, seed)
    return model.state_dict()


def run_row(method: Method, seed: int, init: Dict[str, torch.Tensor], train_set: ClipSet, test_set: ClipSet,
            cfg: TaskConfig, train_cfg: TrainConfig, tome_r: Optional[int]) -> Dict[str, float]:
    """Train one row for one seed; test top-1 in %, overall and on clips whose flashes share an InTI pair."""
    random_seed(seed)
    model = build_model(method, cfg, init, seed, tome_r)
    loss = fit(model, train_set.clips, train_set.labels, train_cfg, seed, transform=lambda x: prepare(method, x))
    logits = predict(model, method, test_set.clips)
    flash_frames = (test_set.frame_colour >= 0).nonzero()[:, 1].view(-1, 2)
    one_pair = flash_frames[:, 0] // 2 == flash_frames[:, 1] // 2
    correct = logits.argmax(dim=1) == test_set.labels
    return dict(
        top1=100 * correct.sum().item() / len(correct),
        top1_one_pair=100 * correct[one_pair].sum().item() / max(int(one_pair.sum()), 1),
        loss=loss,
    )


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyConfig:
    task: TaskConfig = TaskConfig()
    train_clips: int = 2000
    test_clips: int = 1000
    pretrain_clips: int = 3000
    video: TrainConfig = TrainConfig(epochs=8, batch_size=32, lr=1e-3)
    image: TrainConfig = TrainConfig(epochs=8, batch_size=64, lr=3e-3)


QUICK = StudyConfig(
    train_clips=64, test_clips=64, pretrain_clips=32,
    video=TrainConfig(epochs=1, batch_size=32, lr=1e-3),
    image=TrainConfig(epochs=1, batch_size=64, lr=3e-3))


def run_study(methods: Sequence[str], seeds: Sequence[int], study: StudyConfig) -> List[Dict]:
    """Train and test every method on every seed; one result row per method."""
    cfg = study.task
    tome_r = find_tome_r(cfg) if 'tome' in methods else None
    if tome_r is not None:
        print(f'ToMe merge rate for the inti GFLOPs: r={tome_r}', file=sys.stderr, flush=True)
    gflops = {name: gflops_of(METHODS[name], cfg, tome_r) for name in methods}
    results = {name: [] for name in methods}
    jobs, done = len(methods) * len(seeds), 0
    for seed in seeds:
        start = time.perf_counter()
        backbone = pretrain_backbone(cfg, seed, study.pretrain_clips, study.image)
        init = video_init(backbone, cfg, seed)
        train_set = make_clips(study.train_clips, 1000 + seed, cfg)
        test_set = make_clips(study.test_clips, 2000 + seed, cfg)
        print(f'seed {seed}: image pre-training and data, {time.perf_counter() - start:.0f} s',
              file=sys.stderr, flush=True)
        for name in methods:
            start = time.perf_counter()
            result = run_row(METHODS[name], seed, init, train_set, test_set, cfg, study.video, tome_r)
            results[name].append(result)
            done += 1
            print(f"[{done}/{jobs}] seed {seed} {name}: top-1 {result['top1']:.1f}% "
                  f"(flashes in one pair: {result['top1_one_pair']:.1f}%), last-epoch loss {result['loss']:.3f}, "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    rows = []
    for name in methods:
        top1 = [r['top1'] for r in results[name]]
        rows.append(dict(
            method=name,
            gflops=gflops[name],
            top1_mean=statistics.fmean(top1),
            top1_std=statistics.stdev(top1) if len(top1) > 1 else math.nan,
            seeds=len(top1),
            top1_all=top1,
            top1_one_pair=statistics.fmean(r['top1_one_pair'] for r in results[name]),
            tome_r=tome_r if METHODS[name].tome else None,
            per_seed=results[name],
        ))
    return rows


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def markdown(rows: List[Dict], study: StudyConfig, command: str) -> str:
    naive = next((r['gflops'] for r in rows if r['method'] == 'naive'), None)
    headers = ['method', 'GFLOPs', 'vs naive', 'top-1 (%)', 'per seed', 'top-1, both flashes in one pair (%)']
    lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
    for r in rows:
        name = r['method'] + (f" (r={r['tome_r']})" if r['tome_r'] is not None else '')
        ratio = f"{100 * r['gflops'] / naive:.1f}%" if naive else '-'
        std = '' if math.isnan(r['top1_std']) else f" ± {r['top1_std']:.1f}"
        per_seed = ', '.join(f'{v:.1f}' for v in r['top1_all'])
        lines.append(f"| {name} | {r['gflops']:.4f} | {ratio} | {r['top1_mean']:.1f}{std} | {per_seed} "
                     f"| {r['top1_one_pair']:.1f} |")
    cfg, video = study.task, study.video
    lines += [
        '',
        f'Task: flash order ({cfg.num_classes} classes, chance {100 / cfg.num_classes:.1f}%; {cfg.frames} frames of '
        f'{cfg.size}x{cfg.size}, {cfg.clutter} clutter squares, noise {cfg.noise}); {study.train_clips} training and '
        f'{study.test_clips} test clips per seed. Model: {MODEL} shrunken to '
        + ', '.join(f'{k}={v}' for k, v in BACKBONE.items())
        + f', InTI after block {INTI_AFTER[0]}; image pre-training on single frames, then {video.epochs} epochs of '
        f'AdamW (lr {video.lr}, batch {video.batch_size}, cosine). Top-1: mean ± sample std over '
        f'{rows[0]["seeds"] if rows else 0} seeds; last column: the test clips whose two flash frames make one '
        f'merged pair (about 1 in 7). GFLOPs: 10^9 multiply-adds per clip (fvcore, attention included). '
        f'Command: `{command}`',
    ]
    return '\n'.join(lines)


def plot(rows: List[Dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        std = 0. if math.isnan(r['top1_std']) else r['top1_std']
        ax.errorbar(r['gflops'], r['top1_mean'], yerr=std, marker='o', capsize=3, linestyle='none', label=r['method'])
    # labels right of their points, pushed apart vertically where points crowd
    ax.margins(x=0.12)
    (left, right), (low, high) = ax.get_xlim(), ax.get_ylim()
    shift, gap, last = (right - left) / 50, (high - low) / 25, -math.inf
    for r in sorted(rows, key=lambda r: r['top1_mean']):
        last = max(r['top1_mean'], last + gap)
        ax.annotate(r['method'], (r['gflops'], r['top1_mean']), xytext=(r['gflops'] + shift, last), textcoords='data',
                    fontsize=8, va='center', ha='left', arrowprops=dict(arrowstyle='-', color='0.6', lw=0.5))
    ax.set_xlabel('GFLOPs per clip (10^9 multiply-adds)')
    ax.set_ylabel('test top-1 (%)')
    ax.set_title(f"InTI ablation, flash-order task (mean ± std over {rows[0]['seeds']} seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    write_png(path, fig)
    return True


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS), metavar='METHOD',
                        help=f"rows to run (default: all): {', '.join(METHODS)}")
    parser.add_argument('--seeds', type=int, help='number of seeds, 0 .. N-1 (default 3; --quick: 1)')
    parser.add_argument('--epochs', type=int, help='video training epochs (default 8; --quick: 1)')
    parser.add_argument('--quick', action='store_true', help='a tiny configuration that runs in seconds')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads (default 2)')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results', help='output folder')
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.seeds < 1:
        parser.error(f'--seeds must be at least 1, got {args.seeds}')
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be at least 1, got {args.epochs}')
    if args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    if len(set(args.methods)) != len(args.methods):
        parser.error(f'--methods lists a method twice: {args.methods}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    study = QUICK if args.quick else StudyConfig()
    if args.epochs is not None:
        study = replace(study, video=replace(study.video, epochs=args.epochs))
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(['python', 'benchmarks/ablation.py'] + list(sys.argv[1:] if argv is None else argv))

    start = time.perf_counter()
    rows = run_study(args.methods, range(args.seeds), study)
    elapsed = time.perf_counter() - start
    table = markdown(rows, study, command)
    print(table)
    write_csv(args.out / 'ablation.csv', [{k: r[k] for k in COLUMNS} for r in rows], COLUMNS)
    write_text(args.out / 'ablation.md', table + (
        f'\n\nWall time: {elapsed / 60:.1f} min on {os.cpu_count()} logical CPUs, {args.threads} torch threads.\n'))
    wrote = ['ablation.csv', 'ablation.md'] + (['ablation.png'] if plot(rows, args.out / 'ablation.png') else [])
    print(f"\nwrote {', '.join(str(args.out / w) for w in wrote)} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
