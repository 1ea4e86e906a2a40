"""A small ablation of InTI on two synthetic video tasks that 2 CPU cores train in minutes.

The tasks ("flash order"): every clip holds two flashes, saturated squares of two different
colours (red, green or blue), each shown in a single frame, over clutter (squares of muted
colours, the same size) and Gaussian pixel noise. The label is the ordered colour pair, e.g.
"red, then blue": 6 classes, chance 16.7%. Frame order matters: a clip played backwards shows
the same flashes in the other order and has another label. Evidence is sparse in time (2
frames of 8), so what a merge keeps of a pair of frames matters: averaging halves a flash and
blurs its time, dropping every other frame misses it half the time.

  * ``flash``: static clutter on black, 32x32 frames, 8x8 patches (a 4x4 patch grid).
  * ``moving``: the harder variant. The clutter squares move (each its own velocity, up to 2
    pixels a frame on each axis), the camera pans (up to 2 pixels a frame; every clutter square
    moves with it), so tokens at the same position of two frames no longer show the same thing;
    32x32 frames with 4x4 patches, an 8x8 patch grid, on which InTI's 3x3 and 7x7 context windows
    differ from the global one. ``TaskConfig(texture=...)`` adds a background texture that pans
    too; the default task has none (with it, image pre-training lost one flash colour).

Clips are generated in memory from a seed; the train set (seed 1000 + s), test set (2000 + s)
and pre-training set (3000 + s) of seed s are disjoint draws.

The model: a shrunken ``inti_vit_b16`` built through timm's registry (4 blocks, 2 heads, 8
frames; width 64 on the flash task, 32 on the moving one, whose 8x8 grid has 4x the tokens).
As in the paper's image-to-video setting, every row starts from one image model: per seed,
the naive ViT is first trained on single frames (is there a flash in this frame, and which
colour), then each row builds its video model on that backbone with a new head, the rest as
the library initialises it for CLIP weights: temporal embedding at zero, InTI layers at their
averaging init, adapters adding nothing. Training: AdamW and a cosine schedule from timm's
factories, cross-entropy, a fixed number of epochs.

Rows (``--methods``; default: the first six, and ``inti_motion`` on the moving task):

  * ``naive``: every block sees every frame (``inti_after=()``);
  * ``frame_subsampling``: the naive model on every other frame, in training and test;
  * ``average_pooling``: a merge after block 1 with fixed 0.5 / 0.5 weights (``inti_weighting='mean'``);
  * ``inti``: InTI after block 1 (a quarter of the blocks, the paper's schedule): learned,
    multi-scale, softmax-normalised weights;
  * ``inti_single_scale``: InTI with the token itself as its only context scale;
  * ``tome``: the naive model with ToMe-style token merging inside every frame, its merge
    rate chosen so that its GFLOPs come closest to ``inti``'s;
  * ``inti_motion``: InTI whose merge follows motion: a token of the first frame is combined
    with a 3x3 neighbourhood of the second frame, weighted by a learned softmax
    (``InTI(partner_window=3)``, swapped into the registry's model);
  * ``inti_sigmoid``: InTI with independent sigmoid gates instead of the softmax;
  * ``inti_temporal``: InTI plus a spatio-temporal adapter (width 32) before every block.

Reported per task and row: test top-1 in percent per seed, its mean, sample standard deviation
and 95% t-interval over the seeds; top-1 on the test clips whose two flashes fall into one
merged pair of frames; GFLOPs per clip (10^9 multiply-adds: fvcore with attention included,
batch 1); and, for rows with a merge, the mean weight the merge gives to the flash frame at the
flash's patches (each patch weighted by its share of the flash's pixels), over the test flashes
whose partner frame in the pair shows no flash: 0.5 is what averaging gives. Paired
differences: every row of a seed shares data, image backbone and batch order, so the study
reports per-seed differences (``inti`` minus ``average_pooling``, ``naive`` and ``tome``;
``inti`` minus ``inti_single_scale``; ``inti_motion`` minus ``inti``) with 95% t-intervals over
the seeds (scipy's t quantile); an interval that excludes 0 is a difference these seeds
resolve. A seed fixes everything: data, initial weights and batch order; torch runs on
``--threads`` threads per job (default 1, which also makes a seed's result independent of the
number of cores), so a rerun on the same machine reproduces the table, and ``--first-seed``
gives fresh seeds. The script sets ``OMP_WAIT_POLICY=PASSIVE`` unless the
environment sets it: on a shared machine, OpenMP threads that spin while they wait for a
descheduled partner made training 10x slower; the arithmetic does not change.

The study trains one job per task and seed, ``--jobs`` at a time (default: one per CPU), each in its
own process of ``--threads`` threads: the tiny models use a second thread poorly, so on 2 cores
two one-thread jobs train a seed 1.8x faster than one two-thread job. The files are rewritten as
each job finishes, seeds in seed order, so a run stopped early leaves whole seeds behind (the
markdown names the seeds still missing). Every seed's results and the settings that fixed them
go to ablation_seeds.jsonl: ``--resume`` keeps the seeds there and runs only the others, so seeds
split over machines pool into one table (join the files, then ``--resume --tables-only``). An
--out that holds a run is never overwritten without ``--resume`` or ``--overwrite``.

Results go to ``--out`` (default benchmarks/results): ablation_seeds.jsonl, ablation.csv (per task: one line per row
and one per paired difference, with the per-seed values), ablation.md, ablation.png, and
ablation_merges_TASK.png (merge pictures of the first seed's trained ``inti`` model on a test
clip whose flashes fall into two different pairs). No pictures without matplotlib. Progress
goes to stderr, the tables to stdout.

    python benchmarks/ablation.py                            # the full study: both tasks, 5 seeds
    python benchmarks/ablation.py --quick --out /tmp/abl     # a tiny run in seconds, to check that it works
    python benchmarks/ablation.py --task moving --first-seed 5 --seeds 5 --out /tmp/fresh
    python benchmarks/ablation.py --resume                   # continue a stopped study (seeds done are kept)
    python benchmarks/ablation.py --jobs 1 --threads 2       # one job at a time, in this process
"""
# ruff: noqa: E402  (OpenMP reads its settings when torch loads it)
import os

# OpenMP threads that spin while they wait are 10x slower when another process holds the other core
# (measured on a shared 2-core machine: 2.3 s against 0.26 s per training step); the arithmetic is the same
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import argparse
import copy
import csv
import json
import math
import multiprocessing
import platform
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
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
from timm_inti.baselines import apply_tome, subsample_frames, tome_r_for_flops
from timm_inti.files import pyplot, write_csv, write_png, write_text
from timm_inti.flops import count_flops
from timm_inti.inti import InTI

COLUMNS = [
    'task', 'method', 'gflops', 'seeds', 'first_seed', 'seed_list',
    'top1_mean', 'top1_std', 'top1_ci_low', 'top1_ci_high', 'top1_per_seed',
    'one_pair_mean', 'one_pair_ci_low', 'one_pair_ci_high', 'one_pair_per_seed',
    'flash_weight_mean', 'flash_weight_ci_low', 'flash_weight_ci_high', 'flash_weight_per_seed',
    'image_top1_per_seed',
]
# what the study measures per row and seed, each with a 95% interval
MEASURES = ('top1', 'one_pair', 'flash_weight')
# paired differences (a - b) reported when both rows ran
COMPARISONS = [
    ('inti', 'average_pooling'), ('inti', 'naive'), ('inti', 'tome'), ('inti', 'inti_single_scale'),
    ('inti_motion', 'inti'),
]

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
        clutter: Muted squares per clip.
        noise: Standard deviation of the Gaussian pixel noise (pixel values are in [0, 1]).
        speed: Largest speed of a clutter square, pixels per frame on each axis (0: static).
        pan: Largest camera speed, pixels per frame on each axis (0: a still camera).
        texture: Contrast of the background texture (0: black), which shows the pan.
    """
    frames: int = 8
    size: int = 32
    square: int = 4
    colours: int = 3
    clutter: int = 4
    noise: float = 0.15
    speed: int = 0
    pan: int = 0
    texture: float = 0.

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f'a flash-order clip needs at least 2 frames, got frames={self.frames}')
        if not 2 <= self.colours <= len(PALETTE):
            raise ValueError(f'colours must be between 2 and {len(PALETTE)}, got {self.colours}')
        if not 1 <= self.square <= self.size:
            raise ValueError(f'square must be between 1 and size={self.size}, got {self.square}')
        if self.clutter < 0 or self.noise < 0 or self.speed < 0 or self.pan < 0 or not 0 <= self.texture <= 0.5:
            raise ValueError(f'clutter, noise, speed and pan must be non-negative and texture in [0, 0.5], '
                             f'got {self.clutter}, {self.noise}, {self.speed}, {self.pan}, {self.texture}')

    @property
    def pairs(self) -> List[Tuple[int, int]]:
        """Label ``i`` is colour ``pairs[i][0]`` first, then colour ``pairs[i][1]``."""
        return [(a, b) for a in range(self.colours) for b in range(self.colours) if a != b]

    @property
    def num_classes(self) -> int:
        return len(self.pairs)

    @property
    def moving(self) -> bool:
        return bool(self.speed or self.pan)


class ClipSet(NamedTuple):
    """Clips of the flash-order task and what was drawn into them.

    clips: float32 (N, 3, T, H, W); labels: int64 (N,); frame_colour: int64 (N, T), the colour
    index flashing in each frame or -1 for none; flash_box: int64 (N, 2, 3), per flash in time
    order its frame, and the top and left pixel of its square in that frame.
    """
    clips: torch.Tensor
    labels: torch.Tensor
    frame_colour: torch.Tensor
    flash_box: torch.Tensor


def class_names(cfg: TaskConfig) -> List[str]:
    return [f'{PALETTE[a][0]}, then {PALETTE[b][0]}' for a, b in cfg.pairs]


def reversed_label(labels: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """The label of the same clip played backwards: the same colours in the other order."""
    pairs = cfg.pairs
    table = torch.tensor([pairs.index((b, a)) for a, b in pairs])
    return table[labels]


def _squares(top: torch.Tensor, left: torch.Tensor, side: int, size: int) -> torch.Tensor:
    """Boolean masks of ``side`` x ``side`` squares at (top, left), wrapping around the edges, any leading
    shape: (..., size, size)."""
    coords = torch.arange(size)
    rows = (coords - top[..., None]) % size < side
    cols = (coords - left[..., None]) % size < side
    return rows[..., :, None] & cols[..., None, :]


def _paint(clips: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Paint ``colour`` (N, 3) into ``clips`` (N, 3, T, H, W) where ``mask`` (N, T, H, W) is set."""
    return torch.where(mask[:, None], rearrange(colour, 'n c -> n c () () ()'), clips)


def make_clips(num_clips: int, seed: int, cfg: TaskConfig = TaskConfig()) -> ClipSet:
    """Generate ``num_clips`` clips of the flash-order task from ``seed``, in memory.

    Every class appears equally often (up to one clip), in random order. The two flash frames
    are a uniformly random pair of distinct frames, the flashes' places uniform over the frame
    they show in. With motion, clutter square k sits at ``corner_k + (v_k + v_camera) t`` in
    frame t (wrapping around the edges) and the background texture at ``v_camera t``.
    """
    if num_clips < 1:
        raise ValueError(f'num_clips must be positive, got {num_clips}')
    g = torch.Generator().manual_seed(seed)
    n, t, size, side = num_clips, cfg.frames, cfg.size, cfg.square
    labels = (torch.arange(n) % cfg.num_classes)[torch.randperm(n, generator=g)]
    colour_pair = torch.tensor(cfg.pairs)[labels]                                    # (N, 2)
    when = torch.rand(n, t, generator=g).argsort(dim=1)[:, :2].sort(dim=1).values     # (N, 2), t1 < t2
    where = torch.randint(0, size - side + 1, (n, 2, 2), generator=g)                # (N, flash, yx)

    # clutter: muted colours, a grey level in [0.25, 0.75] with a tint of at most +-0.1
    corner = torch.randint(0, size - side + 1, (n, cfg.clutter, 2), generator=g)
    grey = 0.25 + 0.5 * torch.rand(n, cfg.clutter, 1, generator=g)
    tint = 0.2 * (torch.rand(n, cfg.clutter, 3, generator=g) - 0.5)
    clutter_colour = grey + tint

    time_axis = torch.arange(t)
    clips = torch.zeros(n, 3, t, size, size)
    if cfg.moving:
        velocity = torch.randint(-cfg.speed, cfg.speed + 1, (n, cfg.clutter, 2), generator=g)
        camera = torch.randint(-cfg.pan, cfg.pan + 1, (n, 2), generator=g)
        # clutter at corner + (v + v_camera) t: (N, K, T, yx)
        corner = corner[:, :, None] + (velocity + camera[:, None])[:, :, None] * time_axis[:, None]
    else:
        camera = torch.zeros(n, 2, dtype=torch.long)
        corner = repeat(corner, 'n k yx -> n k t yx', t=t)
    if cfg.texture:
        cells = cfg.texture * torch.rand(n, 1, (size + 1) // 2, (size + 1) // 2, generator=g)
        texture = F.interpolate(cells, scale_factor=2, mode='nearest')[:, 0, :size, :size]   # (N, H, W), 2x2 cells
        shift = camera[:, None] * time_axis[:, None]                                        # (N, T, yx)
        rows = (torch.arange(size) - shift[..., :1]) % size                                 # (N, T, H)
        cols = (torch.arange(size) - shift[..., 1:]) % size                                 # (N, T, W)
        background = texture[torch.arange(n)[:, None, None, None], rows[..., :, None], cols[..., None, :]]
        clips = clips + background[:, None]
    for k in range(cfg.clutter):
        clips = _paint(clips, _squares(corner[:, k, :, 0], corner[:, k, :, 1], side, size), clutter_colour[:, k])
    palette = torch.tensor([rgb for _, rgb in PALETTE])
    frame_colour = torch.full((n, t), -1, dtype=torch.long)
    for e in range(2):
        mask = _squares(where[:, e, 0], where[:, e, 1], side, size)                   # (N, H, W)
        in_frame = F.one_hot(when[:, e], t).bool()                                     # (N, T)
        clips = _paint(clips, mask[:, None] & in_frame[..., None, None], palette[colour_pair[:, e]])
        frame_colour.scatter_(1, when[:, e:e + 1], colour_pair[:, e:e + 1])
    clips += cfg.noise * torch.randn(clips.shape, generator=g)
    return ClipSet(clips, labels, frame_colour, torch.cat([when[..., None], where], dim=-1))


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


def flash_shares(data: ClipSet, cfg: TaskConfig, patch_size: int) -> torch.Tensor:
    """Share of each flash's pixels in every patch of its frame: (N, 2, h, w), summing to one per flash."""
    _, top, left = data.flash_box.unbind(dim=-1)
    mask = _squares(top, left, cfg.square, cfg.size).float()                          # (N, 2, H, W)
    return F.avg_pool2d(mask, patch_size) * patch_size ** 2 / cfg.square ** 2


# ----------------------------------------------------------------------------------------------
# The rows
# ----------------------------------------------------------------------------------------------

MODEL = 'inti_vit_b16'
INTI_AFTER = (1,)  # after a quarter of the 4 blocks


@dataclass(frozen=True)
class Method:
    """One row: ``timm.create_model(MODEL, **task.backbone, inti_after=INTI_AFTER, **model_kwargs)``, its InTI
    layers rebuilt with ``inti_layer`` when given, fed every ``subsample``-th frame, with ToMe merging when ``tome``."""
    name: str
    model_kwargs: Dict = field(default_factory=dict)
    subsample: int = 1
    tome: bool = False
    inti_layer: Dict = field(default_factory=dict)


METHODS: Dict[str, Method] = {m.name: m for m in (
    Method('naive', dict(inti_after=())),
    Method('frame_subsampling', dict(inti_after=()), subsample=2),
    Method('average_pooling', dict(inti_weighting='mean')),
    Method('inti'),
    Method('inti_single_scale', dict(inti_kernel_sizes=(1,), inti_global_context=False)),
    Method('tome', dict(inti_after=()), tome=True),
    Method('inti_motion', inti_layer=dict(partner_window=3)),
    Method('inti_sigmoid', dict(inti_weighting='sigmoid')),
    Method('inti_temporal', dict(adapter_dim=32)),
)}
HEADLINE = ('naive', 'frame_subsampling', 'average_pooling', 'inti', 'inti_single_scale', 'tome')


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one stage: AdamW with a cosine schedule stepped every update."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: int = 0


@dataclass(frozen=True)
class StudyConfig:
    """How much data and training one seed of a task gets."""
    train_clips: int
    test_clips: int
    pretrain_clips: int
    video: TrainConfig
    image: TrainConfig


@dataclass(frozen=True)
class Task:
    """A variant of the task: its clips, its model's shape, its default rows and its training budget."""
    name: str
    description: str
    data: TaskConfig
    backbone: Dict
    methods: Tuple[str, ...]
    study: StudyConfig
    quick: StudyConfig

    @property
    def patch_size(self) -> int:
        return self.backbone['patch_size']

    @property
    def grid(self) -> int:
        return self.data.size // self.patch_size


_QUICK = StudyConfig(train_clips=64, test_clips=64, pretrain_clips=32,
                     video=TrainConfig(epochs=1, batch_size=32, lr=1e-3),
                     image=TrainConfig(epochs=1, batch_size=64, lr=3e-3))

# Image pre-training: a warm-up epoch and lr 1e-3. At lr 3e-3 without warm-up, the moving task's image model put one
# flash colour into "no flash" (top-1 on single frames 66.7%, seed 0), and its video rows stayed near 30%.
_IMAGE = TrainConfig(epochs=8, batch_size=64, lr=1e-3, warmup_epochs=1)

# Budget: both tasks, 5 seeds; the measured time is in benchmarks/results/ablation.md and docs/ablation.md.
# The flash task's rows converge only after 24 epochs (at 16, a row reached 50-90% depending on the seed, and the
# seed-to-seed spread hid every difference); the moving task's 8x8 grid costs 4x the tokens, so its model is narrower,
# and it gets twice the clips of its first version (1000 clips: every row stayed below 35%).
TASKS: Dict[str, Task] = {t.name: t for t in (
    Task('flash', 'static clutter, still camera, 4x4 patch grid',
         TaskConfig(),
         dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2),
         HEADLINE,
         StudyConfig(train_clips=2000, test_clips=1000, pretrain_clips=3000,
                     video=TrainConfig(epochs=24, batch_size=32, lr=1e-3), image=_IMAGE),
         _QUICK),
    # no background texture (with texture=0.25, image pre-training lost a colour at every learning rate tried):
    # the pan shows in the clutter, which moves with the camera
    Task('moving', 'moving clutter, camera pan, 8x8 patch grid',
         TaskConfig(clutter=6, speed=2, pan=2),
         dict(img_size=32, patch_size=4, embed_dim=32, depth=4, num_heads=2),
         HEADLINE + ('inti_motion',),
         StudyConfig(train_clips=2000, test_clips=1000, pretrain_clips=1500,
                     video=TrainConfig(epochs=8, batch_size=32, lr=1e-3), image=_IMAGE),
         _QUICK),
)}


def model_kwargs(method: Method, task: Task, num_classes: Optional[int] = None) -> Dict:
    kwargs = dict(task.backbone, num_frames=task.data.frames, num_classes=num_classes or task.data.num_classes,
                  inti_after=INTI_AFTER)
    kwargs.update(method.model_kwargs)
    return kwargs


def method_input(method: Method, clips: torch.Tensor) -> torch.Tensor:
    """The row's input: every ``subsample``-th frame."""
    return subsample_frames(clips, method.subsample) if method.subsample > 1 else clips


def video_init(backbone: Optional[Dict[str, torch.Tensor]], task: Task, seed: int) -> Dict[str, torch.Tensor]:
    """The weights every row of ``seed`` starts from: the image backbone, a new head, a zero temporal embedding."""
    torch.manual_seed(seed)
    model = timm.create_model(MODEL, **model_kwargs(METHODS['naive'], task))
    if backbone is not None:
        # not the image model's temporal embedding: one-frame inputs resample it and train its middle entries
        fresh = ('head.', 'temporal_embed')
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in backbone.items() if not k.startswith(fresh)}, strict=False)
        if unexpected or sorted(missing) != ['head.bias', 'head.weight', 'temporal_embed']:
            raise RuntimeError(f'the image backbone does not fit the video model (missing: {missing}, '
                               f'unexpected: {unexpected})')
    return model.state_dict()


def build_row_model(method: Method, task: Task, init: Dict[str, torch.Tensor], seed: int,
                tome_r: Optional[int]) -> nn.Module:
    """The row's model, starting from ``init`` (the naive model's weights); its own layers keep their init."""
    torch.manual_seed(seed)
    model = timm.create_model(MODEL, **model_kwargs(method, task))
    for key, layer in list(model.inti.items()) if method.inti_layer else ():
        model.inti[key] = InTI(
            model.embed_dim, num_prefix_tokens=layer.num_prefix_tokens, hidden_dim=layer.reduce.out_features,
            kernel_sizes=layer.kernel_sizes, global_context=layer.global_context, weighting=layer.weighting,
            **method.inti_layer)
    missing, unexpected = model.load_state_dict(init, strict=False)
    own = [k for k in missing if not k.startswith(model.video_only_prefixes)]
    if unexpected or own:
        raise RuntimeError(f'{method.name}: the naive weights do not fit (unexpected: {unexpected}, missing: {own})')
    if method.tome:
        if tome_r is None:
            raise ValueError(f'{method.name}: ToMe needs a merge rate')
        apply_tome(model, tome_r)
    return model


def gflops_of(method: Method, task: Task, tome_r: Optional[int]) -> float:
    """GFLOPs (10^9 multiply-adds, fvcore with attention) of one clip through the row's model."""
    init = video_init(None, task, 0)
    model = build_row_model(method, task, init, 0, tome_r).eval()
    cfg = task.data
    return count_flops(model, method_input(method, torch.zeros(1, 3, cfg.frames, cfg.size, cfg.size))).gflops


def find_tome_r(task: Task) -> int:
    """The ToMe merge rate whose GFLOPs come closest to the ``inti`` row's."""
    target = gflops_of(METHODS['inti'], task, None)
    kwargs = model_kwargs(METHODS['tome'], task)
    return tome_r_for_flops(MODEL, kwargs.pop('num_frames'), target, **kwargs)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

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
def row_logits(model: nn.Module, method: Method, clips: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of every clip, (N, num_classes)."""
    model.eval()
    return torch.cat([model(method_input(method, clips[i:i + batch_size])) for i in range(0, len(clips), batch_size)])


@torch.no_grad()
def flash_frame_weight(model: nn.Module, data: ClipSet, task: Task, batch_size: int = 256) -> float:
    """Mean weight the first InTI layer gives to the flash frame at the flash's patches.

    Over the flashes whose partner frame (the other frame of its merged pair) shows no flash;
    each patch counts with its share of the flash's pixels. Averaging gives 0.5.
    """
    from timm_inti.visualize import merge_weights
    model.eval()
    first, second = [], []
    for i in range(0, len(data.labels), batch_size):
        merges = merge_weights(model, data.clips[i:i + batch_size])[0]
        first.append(merges.weights)
        second.append(merges.second)
    first, second = torch.cat(first), torch.cat(second)                              # (N, P, h, w)
    frame = data.flash_box[..., 0]                                                    # (N, 2)
    partner = frame ^ 1
    alone = (partner < data.frame_colour.shape[1]) & (
        data.frame_colour.gather(1, partner.clamp(max=data.frame_colour.shape[1] - 1)) < 0)
    pair = repeat((frame // 2).clamp(max=first.shape[1] - 1), 'n e -> n e h w', h=first.shape[2], w=first.shape[3])
    weight = torch.where(rearrange(frame % 2 == 0, 'n e -> n e () ()'),
                         first.gather(1, pair), second.gather(1, pair))                 # (N, 2, h, w)
    per_flash = (weight * flash_shares(data, task.data, task.patch_size)).sum(dim=(-2, -1))
    return per_flash[alone].mean().item()


def pretrain_backbone(task: Task, seed: int, num_clips: int, train_cfg: TrainConfig,
                      test_set: ClipSet) -> Tuple[Dict[str, torch.Tensor], float]:
    """The image model of ``seed``: the naive ViT trained on single frames (flash colour or none); and its top-1 in %
    on single frames of ``test_set``, so that a backbone that lost a colour shows in the results."""
    frames, labels = frame_set(make_clips(num_clips, 3000 + seed, task.data), seed)
    random_seed(seed)
    model = timm.create_model(MODEL, **model_kwargs(METHODS['naive'], task, num_classes=1 + task.data.colours))
    fit(model, frames, labels, train_cfg, seed)
    frames, labels = frame_set(test_set, seed)
    predicted = row_logits(model, METHODS['naive'], frames).argmax(dim=1)
    return model.state_dict(), 100 * (predicted == labels).float().mean().item()


def one_pair(data: ClipSet) -> torch.Tensor:
    """The clips whose two flashes fall into one merged pair of frames."""
    frame = data.flash_box[..., 0]
    return frame[:, 0] // 2 == frame[:, 1] // 2


def run_row(method: Method, seed: int, init: Dict[str, torch.Tensor], train_set: ClipSet, test_set: ClipSet,
            task: Task, train_cfg: TrainConfig, tome_r: Optional[int]) -> Tuple[Dict[str, float], nn.Module]:
    """Train one row for one seed: test top-1 in %, overall and on clips whose flashes share an InTI pair,
    the flash-frame weight (NaN without a merge), the last epoch's loss; and the trained model."""
    random_seed(seed)
    model = build_row_model(method, task, init, seed, tome_r)
    loss = fit(model, train_set.clips, train_set.labels, train_cfg, seed, transform=lambda x: method_input(method, x))
    logits = row_logits(model, method, test_set.clips)
    same_pair = one_pair(test_set)
    correct = logits.argmax(dim=1) == test_set.labels
    weight = flash_frame_weight(model, test_set, task) if len(model.inti) and method.subsample == 1 else math.nan
    return dict(
        top1=100 * correct.sum().item() / len(correct),
        one_pair=100 * correct[same_pair].sum().item() / max(int(same_pair.sum()), 1),
        flash_weight=weight,
        loss=loss,
    ), model


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------

def t_interval(values: Sequence[float]) -> Tuple[float, float, float, float]:
    """Mean, sample standard deviation and the 95% t-interval of the mean (NaN where undefined)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan, math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan, math.nan
    from scipy.stats import t
    std = statistics.stdev(values)
    half = t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
    return mean, std, mean - half, mean + half


def summarise(task: str, method: str, gflops: float, seeds: Sequence[int], per_seed: Dict[str, List[float]]) -> Dict:
    """One CSV line: per-seed values, their means and 95% intervals."""
    row = dict(task=task, method=method, gflops=gflops, seeds=len(seeds), first_seed=seeds[0],
               seed_list=' '.join(map(str, seeds)))
    for key in MEASURES:
        mean, std, low, high = t_interval(per_seed[key])
        row.update({f'{key}_mean': mean, f'{key}_ci_low': low, f'{key}_ci_high': high,
                    f'{key}_per_seed': ' '.join(f'{v:.6g}' for v in per_seed[key])})
        if key == 'top1':
            row['top1_std'] = std
    return row


class TaskRun:
    """One task's study in progress: its rows, their GFLOPs, and the results of the seeds run so far."""

    def __init__(self, task: Task, methods: Sequence[str], study: StudyConfig):
        self.task, self.methods, self.study = task, list(methods), study
        self.tome_r = find_tome_r(task) if 'tome' in methods else None
        if self.tome_r is not None:
            print(f'{task.name}: ToMe merge rate for the inti GFLOPs: r={self.tome_r}', file=sys.stderr, flush=True)
        self.gflops = {name: gflops_of(METHODS[name], task, self.tome_r) for name in methods}
        self._forget_seeds()

    def _forget_seeds(self) -> None:
        self.seeds: List[int] = []
        self.results: Dict[str, List[Dict[str, float]]] = {name: [] for name in self.methods}
        self.image_top1: List[float] = []
        self.seconds_per_seed: List[float] = []
        self.kept: Dict[str, Tuple[nn.Module, ClipSet]] = {}

    def empty(self) -> 'TaskRun':
        """This run with no seeds done (its rows, ToMe rate and GFLOPs kept), for a ``--jobs`` worker to run a seed."""
        run = copy.copy(self)
        run._forget_seeds()
        return run

    @property
    def seconds(self) -> float:
        return sum(self.seconds_per_seed)

    @property
    def settings(self) -> Dict:
        """Everything that fixes a seed's results besides the seed: task, model shape and training."""
        return dict(model=MODEL, inti_after=list(INTI_AFTER), data=asdict(self.task.data),
                    backbone=self.task.backbone, study=asdict(self.study))

    def records(self) -> List[Dict]:
        """One JSON-able record per seed done: what ``restore`` takes back."""
        return [dict(task=self.task.name, seed=seed, settings=self.settings, image_top1=self.image_top1[i],
                     seconds=self.seconds_per_seed[i], results={name: self.results[name][i] for name in self.methods})
                for i, seed in enumerate(self.seeds)]

    def restore(self, record: Dict) -> None:
        """Take back a seed run elsewhere with the same settings (an earlier run, see ``check_records``, or a worker
        process), in its place in seed order."""
        at = sum(seed < record['seed'] for seed in self.seeds)
        self.seeds.insert(at, record['seed'])
        self.image_top1.insert(at, record['image_top1'])
        self.seconds_per_seed.insert(at, record['seconds'])
        for name in self.methods:
            self.results[name].insert(at, record['results'][name])

    def run_seed(self, seed: int, keep: Sequence[str] = ('inti',)) -> Dict:
        """Train and test every row on ``seed`` and add the results in seed order; keep the trained ``keep`` models
        and the test set of the run's first seed. Returns the seed's record (see ``records``)."""
        task, study, start = self.task, self.study, time.perf_counter()
        train_set = make_clips(study.train_clips, 1000 + seed, task.data)
        test_set = make_clips(study.test_clips, 2000 + seed, task.data)
        backbone, image_top1 = pretrain_backbone(task, seed, study.pretrain_clips, study.image, test_set)
        init = video_init(backbone, task, seed)
        print(f'{task.name} seed {seed}: image pre-training and data, {time.perf_counter() - start:.0f} s; the image '
              f'model\'s top-1 on single test frames {image_top1:.1f}%', file=sys.stderr, flush=True)
        results = {}
        for name in self.methods:
            row_start = time.perf_counter()
            result, model = run_row(METHODS[name], seed, init, train_set, test_set, task, study.video, self.tome_r)
            results[name] = result
            if not self.seeds and name in keep:
                self.kept[name] = (model, test_set)
            print(f"[{task.name}] seed {seed} {name}: top-1 {result['top1']:.1f}% "
                  f"(flashes in one pair: {result['one_pair']:.1f}%), flash-frame weight {result['flash_weight']:.3f}, "
                  f"last-epoch loss {result['loss']:.3f}, {time.perf_counter() - row_start:.0f} s",
                  file=sys.stderr, flush=True)
        record = dict(task=task.name, seed=seed, settings=self.settings, image_top1=image_top1,
                      seconds=time.perf_counter() - start, results=results)
        self.restore(record)
        return record

    def rows(self) -> List[Dict]:
        """CSV lines: one per row, then one per paired difference, with the per-seed results under ``per_seed``."""
        image_top1 = ' '.join(f'{v:.6g}' for v in self.image_top1)
        rows = []
        for name in self.methods:
            per_seed = {key: [r[key] for r in self.results[name]] for key in MEASURES}
            row = summarise(self.task.name, name, self.gflops[name], self.seeds, per_seed)
            row.update(per_seed=self.results[name], tome_r=self.tome_r if METHODS[name].tome else None, kind='row',
                       image_top1_per_seed=image_top1)
            rows.append(row)
        for a, b in COMPARISONS:
            if a in self.results and b in self.results:
                per_seed = {key: [x[key] - y[key] for x, y in zip(self.results[a], self.results[b])]
                            for key in MEASURES}
                row = summarise(self.task.name, f'{a} - {b}', self.gflops[a] - self.gflops[b], self.seeds, per_seed)
                row.update(per_seed=per_seed, tome_r=None, kind='difference', image_top1_per_seed=image_top1)
                rows.append(row)
        return rows


SEEDS_FILE = 'ablation_seeds.jsonl'


def read_records(path: Path) -> List[Dict]:
    """The seeds an earlier run wrote to ``path``, one JSON record per task and seed (blank lines skipped).

    Raises ValueError, naming the file and line, for a line that is not a record of a known task.
    """
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record['task'], record['seed'], record['results'], record['settings'], record['image_top1'], \
                    record['seconds']
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f'{path}, line {number}: not a seed record of this study ({e!r})') from None
            if record['task'] not in TASKS:
                raise ValueError(f'{path}, line {number}: unknown task {record["task"]!r}')
            records.append(record)
    return records


def check_records(records: Sequence[Dict], runs: Sequence[TaskRun], path: Path) -> Dict[str, List[Dict]]:
    """``records`` (from ``read_records(path)``) per task of ``runs``.

    Raises ValueError, naming the file, for a seed run with other settings (task, model or training) or without
    one of the rows, and a seed written twice.
    """
    by_task: Dict[str, List[Dict]] = {run.task.name: [] for run in runs}
    for record in records:
        name, seed = record['task'], record['seed']
        run = next(r for r in runs if r.task.name == name)
        if record['settings'] != run.settings:
            changed = sorted(k for k in run.settings if record['settings'].get(k) != run.settings[k])
            raise ValueError(f'{path}: seed {seed} of task {name!r} was run with other settings '
                             f'({", ".join(changed)} differ); give another --out, or --overwrite')
        missing = [m for m in run.methods if m not in record['results']]
        if missing:
            raise ValueError(f'{path}: seed {seed} of task {name!r} has no row {", ".join(missing)}; '
                             f'give the same --methods, another --out, or --overwrite')
        if any(r['seed'] == seed for r in by_task[name]):
            raise ValueError(f'{path}: seed {seed} of task {name!r} is there twice')
        by_task[name].append(record)
    return by_task


def _seed_job(run: TaskRun, seed: int, threads: int,
              keep: Sequence[str]) -> Tuple[Dict, Dict[str, Tuple[nn.Module, ClipSet]]]:
    """One seed of ``run`` (an ``empty()`` one) in a worker process of ``--jobs``: the seed's record, and the ``keep``
    models trained."""
    torch.set_num_threads(threads)
    return run.run_seed(seed, keep), run.kept


def run_study(task: Task, methods: Sequence[str], seeds: Sequence[int], study: StudyConfig,
              keep: Sequence[str] = ('inti',)) -> Tuple[List[Dict], Dict[str, Tuple[nn.Module, ClipSet]]]:
    """Train and test every method on every seed of ``task``: the CSV lines, and the first seed's kept models."""
    run = TaskRun(task, methods, study)
    for seed in seeds:
        run.run_seed(seed, keep)
    return run.rows(), run.kept


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def _ci(row: Dict, key: str, digits: int = 1) -> str:
    mean, low, high = row[f'{key}_mean'], row[f'{key}_ci_low'], row[f'{key}_ci_high']
    if math.isnan(mean):
        return '-'
    if math.isnan(low):
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]'


def verdict(row: Dict) -> str:
    """What the 95% interval of a paired difference says."""
    low, high = row['top1_ci_low'], row['top1_ci_high']
    if math.isnan(low):
        return 'one seed: no interval'
    a, b = row['method'].split(' - ')
    if low > 0:
        return f'{a} ahead'
    if high < 0:
        return f'{b} ahead'
    return 'not resolved'


def markdown(task: Task, rows: List[Dict], study: StudyConfig, command: str, image_top1: Sequence[float] = ()) -> str:
    """The task's tables: rows, then paired differences."""
    methods = [r for r in rows if r['kind'] == 'row']
    differences = [r for r in rows if r['kind'] == 'difference']
    naive = next((r['gflops'] for r in methods if r['method'] == 'naive'), None)
    cfg, video = task.data, study.video
    seed_list = [int(v) for v in methods[0]['seed_list'].split()] if methods else []
    contiguous = seed_list == list(range(seed_list[0], seed_list[0] + len(seed_list))) if seed_list else False
    seeds = f'{seed_list[0]}-{seed_list[-1]}' if contiguous and len(seed_list) > 1 else ', '.join(map(str, seed_list))
    seeds = f"{len(seed_list)} seed{'s' if len(seed_list) != 1 else ''} ({seeds})"
    lines = [
        f'### Task `{task.name}`: {task.description}', '',
        '| method | GFLOPs (vs naive) | top-1 (%) [95% CI] | per seed | top-1, both flashes in one pair (%) '
        '| weight on the flash frame |',
        '|---|---|---|---|---|---|',
    ]
    for r in methods:
        name = f"`{r['method']}`" + (f" (r={r['tome_r']})" if r['tome_r'] is not None else '')
        ratio = f" ({100 * r['gflops'] / naive:.1f}%)" if naive else ''
        per_seed = ', '.join(f"{x['top1']:.1f}" for x in r['per_seed'])
        lines.append(f"| {name} | {r['gflops']:.4f}{ratio} | {_ci(r, 'top1')} | {per_seed} | {_ci(r, 'one_pair')} "
                     f"| {_ci(r, 'flash_weight', 3)} |")
    if differences:
        lines += ['', '| paired difference | GFLOPs | top-1 (points) [95% CI] | per seed '
                      '| both flashes in one pair (points) [95% CI] | what the interval says |',
                  '|---|---|---|---|---|---|']
        for r in differences:
            per_seed = ', '.join(f'{v:+.1f}' for v in r['per_seed']['top1'])
            lines.append(f"| `{r['method']}` | {r['gflops']:+.4f} | {_ci(r, 'top1')} | {per_seed} "
                         f"| {_ci(r, 'one_pair')} | {verdict(r)} |")
    lines += [
        '',
        f'Task: flash order, {task.description} ({cfg.num_classes} classes, chance {100 / cfg.num_classes:.1f}%; '
        f'{cfg.frames} frames of {cfg.size}x{cfg.size}, {cfg.clutter} clutter squares'
        + (f' moving up to {cfg.speed} px/frame, camera pan up to {cfg.pan} px/frame' if cfg.moving else ', static')
        + (f', background texture {cfg.texture}' if cfg.texture else '')
        + f', noise {cfg.noise}); {study.train_clips} training and '
        f'{study.test_clips} test clips per seed. Model: {MODEL} shrunken to '
        + ', '.join(f'{k}={v}' for k, v in task.backbone.items())
        + f', InTI after block {INTI_AFTER[0]}; image pre-training on {study.pretrain_clips} clips\' single frames '
        f'({study.image.epochs} epochs, lr {study.image.lr}, {study.image.warmup_epochs} warm-up; its top-1 on '
        'single test frames, none or which colour, per seed: '
        + (', '.join(f'{v:.1f}%' for v in image_top1) or '-')
        + f'), then {video.epochs} epochs of AdamW (lr {video.lr}, batch {video.batch_size}, '
        f'cosine). {seeds}; intervals: 95% t-intervals over the seeds; paired '
        f'differences are taken seed by seed (same data, backbone and batch order). "Both flashes in one pair": the '
        f'test clips whose two flash frames make one merged pair (about 1 in 7). Weight on the flash frame: the first '
        f'InTI layer\'s weight for the flash frame at the flash\'s patches, on test flashes whose partner frame shows '
        f'no flash (averaging: 0.5). GFLOPs: 10^9 multiply-adds per clip (fvcore, attention included). '
        f'Command: `{command}`',
    ]
    return '\n'.join(lines)


def plot(results: Dict[str, List[Dict]], path: Path) -> bool:
    """Per task: top-1 against GFLOPs with 95% intervals, and the paired differences with theirs."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(len(results), 2, figsize=(13, 4.5 * len(results)), squeeze=False)
    for (ax, forest), (name, rows) in zip(axes, results.items()):
        methods = [r for r in rows if r['kind'] == 'row']
        for r in methods:
            low, high = r['top1_ci_low'], r['top1_ci_high']
            err = [[0.], [0.]] if math.isnan(low) else [[r['top1_mean'] - low], [high - r['top1_mean']]]
            ax.errorbar(r['gflops'], r['top1_mean'], yerr=err, marker='o', capsize=3, linestyle='none',
                        label=r['method'])
        ax.margins(x=0.15)
        (left, right), (low, high) = ax.get_xlim(), ax.get_ylim()
        shift, gap, last = (right - left) / 50, (high - low) / 25, -math.inf
        for r in sorted(methods, key=lambda r: r['top1_mean']):
            last = max(r['top1_mean'], last + gap)
            ax.annotate(r['method'], (r['gflops'], r['top1_mean']), xytext=(r['gflops'] + shift, last),
                        textcoords='data', fontsize=8, va='center', ha='left',
                        arrowprops=dict(arrowstyle='-', color='0.6', lw=0.5))
        ax.set_xlabel('GFLOPs per clip (10^9 multiply-adds)')
        ax.set_ylabel('test top-1 (%)')
        ax.set_title(f"task '{name}': top-1, mean and 95% interval over {methods[0]['seeds']} seeds", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc='best')

        differences = [r for r in rows if r['kind'] == 'difference']
        for y, r in enumerate(differences):
            for key, offset, colour, label in (('top1', 0.12, 'C0', 'all test clips'),
                                               ('one_pair', -0.12, 'C1', 'both flashes in one pair')):
                mean, low, high = r[f'{key}_mean'], r[f'{key}_ci_low'], r[f'{key}_ci_high']
                err = [[0.], [0.]] if math.isnan(low) else [[mean - low], [high - mean]]
                forest.errorbar(mean, y + offset, xerr=err, marker='o', capsize=3, color=colour,
                                label=label if y == 0 else None)
        forest.axvline(0, color='0.3', lw=0.8)
        forest.set_yticks(range(len(differences)), [r['method'] for r in differences], fontsize=8)
        forest.invert_yaxis()
        forest.set_xlabel('paired difference in top-1 (points), mean and 95% interval over seeds')
        forest.set_title(f"task '{name}': differences seed by seed", fontsize=10)
        forest.grid(True, axis='x', alpha=0.3)
        if differences:
            forest.legend(fontsize=7, loc='best')
    fig.tight_layout()
    write_png(path, fig)
    return True


def picture_clip(data: ClipSet) -> int:
    """A test clip whose two flashes fall into two different pairs, each beside a frame without a flash."""
    frame = data.flash_box[..., 0]
    apart = (frame[:, 0] // 2 != frame[:, 1] // 2).nonzero()
    if not len(apart):
        return 0
    return int(apart[0])


def write_pictures(task: Task, kept: Dict[str, Tuple[nn.Module, ClipSet]], out: Path) -> List[Path]:
    """ablation_merges_TASK.png: the contact sheet of the first seed's trained ``inti`` on one test clip."""
    if pyplot() is None or 'inti' not in kept:
        return []
    from timm_inti.visualize import display_frames, show_merges
    model, data = kept['inti']
    index = picture_clip(data)
    clip = data.clips[index]
    frame, top, left = data.flash_box[index].T.tolist()
    colours = [PALETTE[c][0] for c in data.frame_colour[index][frame].tolist()]
    merges, fig = show_merges(model, clip, frames=display_frames(clip))
    shares = flash_shares(ClipSet(*(x[index:index + 1] for x in data)), task.data, task.patch_size)[0]
    weights = [float(((merges[0].weights if f % 2 == 0 else merges[0].second)[0, f // 2] * share).sum())
               for f, share in zip(frame, shares)]
    fig.suptitle(f"task '{task.name}': trained inti (first seed), test clip {index}\n{colours[0]} flash in frame "
                 f"{frame[0]}, {colours[1]} in frame {frame[1]}; weight on the flash frame at the flash's patches: "
                 f"{weights[0]:.2f} and {weights[1]:.2f}", fontsize=8)
    path = out / f'ablation_merges_{task.name}.png'
    write_png(path, fig)
    return [path]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', default='both', choices=('both',) + tuple(TASKS),
                        help='which task (default: both)')
    parser.add_argument('--methods', nargs='+', choices=list(METHODS), metavar='METHOD',
                        help=f"rows to run (default: each task's own: {', '.join(HEADLINE)}, and inti_motion on "
                             f"the moving task); any of {', '.join(METHODS)}")
    parser.add_argument('--seeds', type=int, help='number of seeds (default 5; --quick: 1)')
    parser.add_argument('--first-seed', type=int, default=0, help='first seed (default 0): seeds S .. S+N-1')
    parser.add_argument('--epochs', type=int, help='video training epochs for every task (default: the task\'s)')
    parser.add_argument('--quick', action='store_true', help='a tiny configuration that runs in seconds')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads per job (default 1)')
    parser.add_argument('--jobs', type=int,
                        help='tasks and seeds trained at once, each in its own process of --threads threads (default: '
                             'the CPUs this process may use divided by --threads; --quick: 1). The tiny models use '
                             'a second thread poorly: on 2 cores, two one-thread jobs train a seed 1.8x faster '
                             'than one two-thread job')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results', help='output folder')
    again = parser.add_mutually_exclusive_group()
    again.add_argument('--resume', action='store_true',
                       help=f'keep the seeds of the earlier run in --out ({SEEDS_FILE}, same settings) and run '
                            f'only the others; seeds from other runs can be pooled by joining their {SEEDS_FILE} files')
    again.add_argument('--overwrite', action='store_true', help='replace an earlier run in --out')
    parser.add_argument('--against', type=Path, metavar='CSV',
                        help='an ablation.csv of other seeds (the published one): say whether every 95%% interval '
                             'overlaps its counterpart there')
    parser.add_argument('--tables-only', action='store_true',
                        help=f'with --resume: rebuild the tables from {SEEDS_FILE} and train nothing (after joining '
                             f'the files of several runs); seeds not there are reported as missing')
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = 1 if args.quick else 5
    if args.seeds < 1:
        parser.error(f'--seeds must be at least 1, got {args.seeds}')
    if args.first_seed < 0:
        parser.error(f'--first-seed must be non-negative, got {args.first_seed}')
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be at least 1, got {args.epochs}')
    if args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    if args.jobs is None:
        args.jobs = 1 if args.quick else max(1, len(os.sched_getaffinity(0)) // args.threads)
    if args.jobs < 1:
        parser.error(f'--jobs must be at least 1, got {args.jobs}')
    if args.tables_only and not args.resume:
        parser.error('--tables-only rebuilds the tables of the seeds in --out: give --resume too')
    if args.methods is not None and len(set(args.methods)) != len(args.methods):
        parser.error(f'--methods lists a method twice: {args.methods}')
    return args


def write_results(runs: List[TaskRun], seeds: Sequence[int], args: argparse.Namespace, command: str,
                  elapsed: float, tasks: Optional[Sequence[Task]] = None,
                  other: Optional[Dict[Tuple[str, str, str], Tuple[float, float]]] = None) -> List[Path]:
    """Write the seeds, the CSV, the markdown and the plot for the seeds done so far; the tables of ``tasks`` (default:
    every run's) are marked partial until all of ``seeds`` are done."""
    tasks = [run.task for run in runs] if tasks is None else tasks
    tables = []
    for run in runs:
        text = markdown(run.task, run.rows(), run.study, command, run.image_top1)
        text += (f'\n\nWall time: {run.seconds / 60:.1f} min ('
                 + ', '.join(f'seed {s}: {t / 60:.1f}' for s, t in zip(run.seeds, run.seconds_per_seed)) + ').')
        missing = [s for s in seeds if s not in run.seeds] if run.task in tasks else []
        if missing:
            text = (f'**Partial: seeds {", ".join(map(str, missing))} not done yet; `--resume` runs them and keeps '
                    f'the seeds done.**\n\n') + text
        tables.append(text)
    machine = platform.processor() or platform.machine()
    # the seeds first: the tables can always be rebuilt from them
    write_text(args.out / SEEDS_FILE, ''.join(json.dumps(r) + '\n' for run in runs for r in run.records()))
    write_csv(args.out / 'ablation.csv', [{k: r[k] for k in COLUMNS} for run in runs for r in run.rows()], COLUMNS)
    if args.tables_only:
        how = f'rebuilt from {SEEDS_FILE}, whose seeds may have run on other machines or in other processes'
    else:
        how = (f'this process: {elapsed / 60:.1f} min on {os.cpu_count()} logical CPUs ({machine}), {args.jobs} '
               f'job{"s" if args.jobs > 1 else ""} of {args.threads} torch thread{"s" if args.threads > 1 else ""}')
    if other is not None:
        tables.append(against([r for run in runs for r in run.rows()], other, args.against))
    write_text(args.out / 'ablation.md', '\n\n'.join(tables) + (
        f'\n\nTotal wall time: {sum(run.seconds for run in runs) / 60:.1f} min, the seeds\' own times ({how}); '
        f'torch {torch.__version__}, timm {timm.__version__}.\n'))
    wrote = [args.out / SEEDS_FILE, args.out / 'ablation.csv', args.out / 'ablation.md']
    if plot({run.task.name: run.rows() for run in runs}, args.out / 'ablation.png'):
        wrote.append(args.out / 'ablation.png')
    return wrote


def read_intervals(path: Path) -> Dict[Tuple[str, str, str], Tuple[float, float]]:
    """The 95% intervals of an ablation.csv, (task, row, measure) -> (low, high); ValueError naming the file."""
    try:
        with open(path, newline='') as f:
            return {(r['task'], r['method'], key): (float(r[f'{key}_ci_low']), float(r[f'{key}_ci_high']))
                    for r in csv.DictReader(f) for key in MEASURES}
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as e:
        raise ValueError(f'{path}: not an ablation.csv of this study ({e!r})') from None


def against(rows: Sequence[Dict], other: Dict[Tuple[str, str, str], Tuple[float, float]], path: Path) -> str:
    """Whether each 95% interval of ``rows`` overlaps the one of the same task, row and measure in ``other`` (from
    ``read_intervals(path)``): a rerun on other seeds should give intervals that overlap the published ones.
    Intervals undefined on either side (one seed) and fixed values on both (the average's 0.5) are not counted."""
    checked, apart = 0, []
    for r in rows:
        for key in MEASURES:
            here, there = (r[f'{key}_ci_low'], r[f'{key}_ci_high']), other.get((r['task'], r['method'], key))
            if there is None or any(math.isnan(v) for v in here + there) or here[0] == here[1] == there[0] == there[1]:
                continue
            checked += 1
            if here[0] > there[1] or there[0] > here[1]:
                apart.append(f"{r['task']} `{r['method']}` {key}: [{here[0]:.3g}, {here[1]:.3g}] here, "
                             f"[{there[0]:.3g}, {there[1]:.3g}] there")
    text = (f'Against `{path}`: {checked - len(apart)} of {checked} 95% intervals overlap (top-1, top-1 with both '
            f'flashes in one pair and the weight on the flash frame, of every row and paired difference in both).')
    return text + (' These do not: ' + '; '.join(apart) + '.' if apart else '')


def _error(message: str) -> int:
    print(f'ablation.py: error: {message}', file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(['python', 'benchmarks/ablation.py'] + list(sys.argv[1:] if argv is None else argv))
    tasks = list(TASKS.values()) if args.task == 'both' else [TASKS[args.task]]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    seeds_path = args.out / SEEDS_FILE
    earlier = [p for p in (seeds_path, args.out / 'ablation.csv') if p.exists()]
    if earlier and not (args.resume or args.overwrite):
        return _error(f'{earlier[0]} holds an earlier run: --resume adds seeds to it (the seeds done are kept), '
                      f'--overwrite starts over, or give another --out')
    if args.tables_only and not seeds_path.exists():
        return _error(f'{seeds_path} does not exist: --tables-only has no seeds to rebuild the tables from')
    if args.resume and earlier and not seeds_path.exists():
        return _error(f'{earlier[0]} has no {SEEDS_FILE} beside it to resume from (an older version of this '
                      f'script wrote it): --overwrite starts over')
    other = None
    if args.against is not None:
        try:
            other = read_intervals(args.against)
        except ValueError as e:
            return _error(str(e))
    resume = args.resume and seeds_path.exists()
    records: List[Dict] = []
    if resume:
        try:
            records = read_records(seeds_path)
        except ValueError as e:
            return _error(str(e))
    # tasks the file holds and this run does not: their seeds stay in the tables
    names = {r['task'] for r in records}
    kept_only = [TASKS[name] for name in TASKS if name in names and TASKS[name] not in tasks]

    start = time.perf_counter()
    runs = []
    for task in [t for t in TASKS.values() if t in tasks or t in kept_only]:
        study = task.quick if args.quick else task.study
        if args.epochs is not None:
            study = replace(study, video=replace(study.video, epochs=args.epochs))
        runs.append(TaskRun(task, args.methods or task.methods, study))
    if resume:
        try:
            resumed = check_records(records, runs, seeds_path)
        except ValueError as e:
            return _error(str(e))
        for run in runs:
            for record in sorted(resumed[run.task.name], key=lambda r: r['seed']):
                run.restore(record)
            if run.seeds:
                print(f'{run.task.name}: seeds {", ".join(map(str, run.seeds))} taken from {seeds_path}',
                      file=sys.stderr, flush=True)
    # seed by seed; the files on disk always hold whole seeds of each task
    active = [run for run in runs if run.task not in kept_only]
    todo = [] if args.tables_only else [s for s in seeds if any(s not in run.seeds for run in active)]
    wrote: List[Path] = []
    pictures: List[Path] = []
    if args.jobs == 1:
        for seed in todo:
            for run in active:
                if seed in run.seeds:
                    continue
                first = not run.seeds
                run.run_seed(seed)
                if first:
                    pictures += write_pictures(run.task, run.kept, args.out)
            wrote = write_results(runs, seeds, args, command, time.perf_counter() - start, tasks, other)
    elif todo:
        # every task of every seed in a worker process, so that the jobs stay busy to the end; the pictures come from
        # the first seed of a task that has none yet
        pictured = {run.task.name: bool(run.seeds) for run in active}
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context('spawn')) as pool:
            jobs = [pool.submit(_seed_job, run.empty(), seed, args.threads,
                                () if pictured[run.task.name] or seed != todo[0] else ('inti',))
                    for seed in todo for run in active if seed not in run.seeds]
            for job in as_completed(jobs):
                if job.exception() is not None:
                    for waiting in jobs:
                        waiting.cancel()
                record, kept = job.result()
                run = next(r for r in active if r.task.name == record['task'])
                run.restore(record)
                if kept:
                    run.kept = kept
                    pictures += write_pictures(run.task, kept, args.out)
                wrote = write_results(runs, seeds, args, command, time.perf_counter() - start, tasks, other)
    if not wrote:
        wrote = write_results(runs, seeds, args, command, time.perf_counter() - start, tasks, other)
    print('\n\n'.join(markdown(run.task, run.rows(), run.study, command, run.image_top1) for run in runs))
    if other is not None:
        print('\n' + against([r for run in runs for r in run.rows()], other, args.against))
    print(f"\nwrote {', '.join(str(w) for w in wrote + pictures)} in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
