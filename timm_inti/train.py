""" Fine-tune an InTI video model: timm's train.py, for clips.

    timm-inti-train --data-dir DIR --model inti_vit_b16 --pretrained --num-frames 8 \\
        -b 16 --epochs 30 --opt adamw --lr 3e-4 --sched cosine --layer-decay 0.75 --amp

    torchrun --nproc_per_node=8 -m timm_inti.train --data-dir DIR ...                  # one node, 8 GPUs
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29500 -m timm_inti.train --data-dir DIR ...                # two nodes

Flags keep timm's train.py names. The machinery is timm's: the classification task, loss,
optimizer, scheduler, Mixup/CutMix, EMA, AMP scaler, checkpoint saver and resume helpers,
distributed setup; this file adds what clips need (Mixup over time, multi-view evaluation,
the video datasets, a frozen-backbone mode) and exact resumption.

A YAML file sets defaults, as timm's ``-c/--config`` (keys are the flags' names, ``drop_path`` or
``drop-path``; flags on the command line win; ``recipes/`` holds the peers' fine-tuning recipes):

    timm-inti-train -c recipes/k400_vit_b16.yaml --data-dir DIR --lr 5e-4

Every run writes its resolved arguments to ``OUTPUT/NAME/args.yaml``; ``--resume`` of a run
takes its arguments from there (the command line still wins: ``--epochs``, ``--lr``, ...),
and continues in the checkpoint's folder.

Resuming is exact at epoch boundaries: every epoch reseeds the Python, NumPy and torch
generators, the loader's shuffling and its workers from ``--seed`` and the epoch number,
so a run killed mid-epoch and restarted with ``--resume OUTPUT/last.pth.tar`` replays the
interrupted epoch and ends with the same weights as an uninterrupted run.
"""
import argparse
import csv
import glob
import json
import logging
import os
import random
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import timm
import timm.optim
import timm.scheduler
import timm.utils
import torch
from einops import rearrange
from timm.data import Mixup, resolve_input_data_config
from timm.data.distributed_sampler import OrderedDistributedSampler
from timm.loss import SoftTargetCrossEntropy
from timm.task import ClassificationEvaluator, evaluation_sample_limit

from .checkpoints import (
    CheckpointSaver,
    VideoClassificationTask,
    create_model,
    is_training_checkpoint,
    load_weights,
    read_checkpoint_metadata,
    resume_ema,
    resume_training,
)
from .cli import (
    CommandError,
    UsageError,
    add_debug_argument,
    command,
    dump_config,
    non_negative_int,
    positive_float,
    positive_int,
    read_config,
)
from .evaluate import view_probabilities, write_evaluation
from .files import pyplot, write_csv, write_json, write_png, write_text

_logger = logging.getLogger('timm_inti.train')



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='timm-inti-train',
        description='Fine-tune an InTI video ViT on class-folder or annotation-list video datasets.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('-c', '--config', default='', metavar='FILE.yaml',
                        help='YAML file of flag defaults (e.g. recipes/k400_vit_b16.yaml); command-line flags win')
    group = parser.add_argument_group('Dataset')
    group.add_argument('--data-dir', metavar='DIR', help='root with train/ and val/ class folders, or of list paths')
    group.add_argument('--train-split', default='train',
                       help='folder or annotation list (path relative to --data-dir or absolute)')
    group.add_argument('--val-split', default='val', help='folder or annotation list; "" for no validation')
    group.add_argument('--num-frames', type=positive_int, default=8, help='frames per clip')
    group.add_argument('--test-clips', type=positive_int, default=1, help='temporal clips per video for evaluation')
    group.add_argument('--test-crops', type=int, default=1, choices=(1, 3),
                       help='spatial crops per clip for evaluation')
    group.add_argument('--stride', type=positive_int, default=None,
                       help='dense sampling with this frame stride (default: segments)')
    group.add_argument('--num-samples', type=positive_int, default=1, metavar='K',
                       help='repeated sampling: K training clips from each video, opened once; each clip has its '
                            'own frames and crop (only --shared-frames makes one decode serve all K). -b counts '
                            'clips: a step takes -b/K videos, and an epoch visits every video once, K clips of each')
    group.add_argument('--shared-frames', action='store_true',
                       help='with --num-samples: the K clips share their frames and differ in crop and flip only '
                            '(VideoMAE\'s repeated augmentation): one decode for K clips, also from files with '
                            'short keyframe intervals, where own frames cost a decode each')
    group.add_argument('--bad-files', default='replace', choices=('skip', 'replace'),
                       help='a training video that cannot be decoded: replace it by the next one, or skip it '
                            '(evaluation always skips); each is reported once and counted')

    group = parser.add_argument_group('Augmentation (training clips; each draw is made once per clip)')
    group.add_argument('--scale', type=float, nargs=2, default=[0.08, 1.0], metavar=('MIN', 'MAX'),
                       help='random resized crop: area fraction')
    group.add_argument('--ratio', type=float, nargs=2, default=[3 / 4, 4 / 3], metavar=('MIN', 'MAX'),
                       help='random resized crop: aspect ratio')
    group.add_argument('--hflip', type=float, default=0.5,
                       help='horizontal flip probability (0 for Something-Something: left and right are labels)')
    group.add_argument('--color-jitter', type=float, default=None, metavar='PCT',
                       help='brightness, contrast, saturation jitter (as timm: off under --aa other than 3a)')
    group.add_argument('--aa', default=None, metavar='NAME',
                       help='auto-augment policy in timm\'s format, the same ops and magnitudes on every frame: '
                            'rand-m7-n4-mstd0.5-inc1 (RandAugment), rand-m10-n1-mstd101 (TrivialAugment-like), '
                            'augmix-m5-w4-d2, original, v0')
    group.add_argument('--reprob', type=float, default=0.0, help='random erasing probability (one box set per clip)')
    group.add_argument('--remode', default='pixel', choices=('const', 'rand', 'pixel'), help='random erasing fill')
    group.add_argument('--recount', type=positive_int, default=1, help='random erasing: at most this many boxes')

    group = parser.add_argument_group('Model')
    group.add_argument('--model', default='inti_vit_b16',
                       help='an InTI model, any timm VisionTransformer name (vit_small_patch16_224, ...), '
                            'hf-hub:ORG/NAME or local-dir:DIR; --resume, --eval-only and --initial-checkpoint of a '
                            'timm-inti-train checkpoint take it (and the frames, size, kwargs) from the checkpoint')
    group.add_argument('--pretrained', action=argparse.BooleanOptionalAction, default=False,
                       help='start from pretrained (CLIP) weights')
    group.add_argument('--initial-checkpoint', default='', help='load these model weights before training')
    group.add_argument('--resume', default='', help='resume model, optimizer, scaler, EMA and epoch from a checkpoint')
    group.add_argument('--num-classes', type=positive_int, default=None,
                       help='the number of classes in the data (the default; any other count is refused)')
    group.add_argument('--img-size', type=positive_int, default=None, help='frame size (default: the model\'s)')
    group.add_argument('--model-kwargs', nargs='*', default={}, action=timm.utils.ParseKwargs,
                       help='extra model kwargs, k=v (e.g. embed_dim=64 depth=4 inti_after="(2,)")')
    group.add_argument('--drop-path', type=float, default=None, help='stochastic depth rate, in [0, 1)')
    group.add_argument('--grad-checkpointing', action='store_true', help='trade compute for activation memory')
    group.add_argument('--freeze-backbone', action='store_true',
                       help='parameter-efficient: train only the InTI layers, temporal modules and the head')

    group = parser.add_argument_group('Optimization')
    group.add_argument('-b', '--batch-size', type=positive_int, default=8, help='clips per process per step')
    group.add_argument('-vb', '--validation-batch-size', type=positive_int, default=None)
    group.add_argument('--epochs', type=positive_int, default=30)
    group.add_argument('--opt', default='adamw')
    group.add_argument('--lr', type=positive_float, default=3e-4)
    group.add_argument('--weight-decay', type=float, default=0.05)
    group.add_argument('--momentum', type=float, default=0.9)
    group.add_argument('--opt-eps', type=float, default=None)
    group.add_argument('--opt-betas', type=float, nargs='+', default=None)
    group.add_argument('--layer-decay', type=float, default=None, help='layer-wise lr decay (e.g. 0.75)')
    group.add_argument('--clip-grad', type=positive_float, default=None)
    group.add_argument('--clip-mode', default='norm')
    group.add_argument('--sched', default='cosine')
    group.add_argument('--sched-on-updates', action='store_true', help='step the scheduler every update')
    group.add_argument('--warmup-epochs', type=non_negative_int, default=0)
    group.add_argument('--warmup-lr', type=float, default=1e-6)
    group.add_argument('--min-lr', type=float, default=1e-6)
    group.add_argument('--cooldown-epochs', type=non_negative_int, default=0)
    group.add_argument('--decay-epochs', type=positive_float, default=30)
    group.add_argument('--decay-rate', type=positive_float, default=0.1)
    group.add_argument('--grad-accum-steps', type=positive_int, default=1)

    group = parser.add_argument_group('Regularization')
    group.add_argument('--smoothing', type=float, default=0.1, help='label smoothing')
    group.add_argument('--mixup', type=float, default=0.0, help='mixup alpha')
    group.add_argument('--cutmix', type=float, default=0.0, help='cutmix alpha (the same box on every frame)')
    group.add_argument('--mixup-prob', type=float, default=1.0)
    group.add_argument('--mixup-switch-prob', type=float, default=0.5)
    group.add_argument('--model-ema', action=argparse.BooleanOptionalAction, default=False,
                       help='keep an EMA of the weights; evaluate and keep it')
    group.add_argument('--model-ema-decay', type=float, default=0.9998, help='in (0, 1)')

    group = parser.add_argument_group('Misc')
    group.add_argument('--amp', action=argparse.BooleanOptionalAction, default=False, help='mixed precision')
    group.add_argument('--amp-dtype', default='float16', choices=('float16', 'bfloat16'))
    group.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    group.add_argument('-j', '--workers', type=non_negative_int, default=None,
                       help='DataLoader worker processes per training process (default: 4, at most the CPUs this '
                            'process may use)')
    group.add_argument('--seed', type=int, default=42)
    group.add_argument('--output', default='./output/train', help='base folder for runs')
    group.add_argument('--experiment', default='',
                       help='run name (default: time and model); a run folder is never overwritten: '
                            'continue one with --resume OUTPUT/NAME/last.pth.tar')
    group.add_argument('--checkpoint-hist', type=positive_int, default=3)
    group.add_argument('--eval-metric', default='top1', choices=('top1', 'top5', 'loss'),
                       help='validation metric that ranks checkpoints (model_best)')
    group.add_argument('--eval-only', action='store_true', help='evaluate --resume/--initial-checkpoint and exit')
    group.add_argument('--predictions', default='', metavar='FILE.jsonl',
                       help='write each validation video\'s predictions and true label (timm-inti-predict\'s '
                            '--output lines, plus "label"), FILE.per_class.csv and FILE.confusion.csv (and .png); '
                            'during training, the last validation\'s')
    group.add_argument('--torchcompile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                       help='torch.compile the model (timm\'s flag; default backend inductor)')
    group.add_argument('--log-interval', type=positive_int, default=50)
    add_debug_argument(parser)
    return parser


# a resumed run's args.yaml gives everything but what names this invocation's inputs and outputs
_NOT_INHERITED = ('resume', 'initial_checkpoint', 'eval_only', 'pretrained', 'predictions', 'debug')


def _parse_args(argv):
    """timm's two passes: ``-c FILE`` and, with ``--resume``, the run's ``args.yaml`` set the defaults (the run's
    over the file's); the command line wins. Returns the arguments and their values as parsed, for args.yaml."""
    parser = _parser()
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument('-c', '--config', default='')
    first.add_argument('--resume', default='')
    known, _ = first.parse_known_args(argv)
    defaults = read_config(parser, known.config) if known.config else {}
    run_dir = os.path.dirname(os.path.abspath(known.resume)) if known.resume else ''
    if run_dir and os.path.isfile(os.path.join(run_dir, 'args.yaml')):  # a run of this command: continue it
        run = read_config(parser, os.path.join(run_dir, 'args.yaml'))
        defaults.update({k: v for k, v in run.items() if k not in _NOT_INHERITED})
        defaults.update(output=os.path.dirname(run_dir), experiment=os.path.basename(run_dir))
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    return args, dict(vars(args))


def mix_clips(mixup_fn: Mixup, x: torch.Tensor, target: torch.Tensor):
    """timm's Mixup/CutMix on clips: time folds into channels, so CutMix cuts the same box from every frame."""
    frames = x.shape[2]
    mixed, target = mixup_fn(rearrange(x, 'b c t h w -> b (c t) h w'), target)
    return rearrange(mixed, 'b (c t) h w -> b c t h w', t=frames), target


def seed_epoch(seed: int, epoch: int, rank: int, generator: torch.Generator) -> None:
    """Every epoch starts from generators that depend only on the seed, the epoch and the rank."""
    timm.utils.random_seed(seed + 1000 * epoch, rank)
    generator.manual_seed(seed + 1000 * epoch)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; derive Python's and NumPy's from it
    worker_seed = torch.initial_seed() % 2 ** 32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def freeze_backbone(model) -> int:
    """Train only the video parts (InTI, temporal modules, temporal embedding) and the head; return trainable count."""
    trainable = tuple(model.video_only_prefixes) + (model.pretrained_cfg.get('classifier') or 'head',)
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trainable)
        count += param.numel() if param.requires_grad else 0
    return count


@torch.no_grad()
def validate(model, loader, args, device, amp_autocast, progress, bad_log) -> Dict[str, float]:
    """Top-1/top-5 and loss of views (B, V, C, T, H, W): each video's probabilities averaged over its views.

    With ``--predictions``, each video's top-5 and true label, per-class accuracy and the confusion matrix too."""
    model.eval()
    evaluator = ClassificationEvaluator(device=device, max_samples=evaluation_sample_limit(loader))
    seen = torch.zeros((), dtype=torch.int64, device=device)
    rows = [] if args.predictions else None  # (dataset index, top-5 classes, their probabilities, true class)
    order = list(loader.sampler) if args.predictions else None
    for step, (views, target, bad) in enumerate(progress(loader, desc='eval')):
        bad_log.update(bad)
        if rows is not None:  # the batch's videos, less the unreadable ones collate_videos dropped
            failed = {path for path, _ in bad}
            batch = [i for i in order[step * loader.batch_size:(step + 1) * loader.batch_size]
                     if loader.dataset.samples[i][0] not in failed]
        if not len(views):
            continue
        views, target = views.to(device), target.to(device)
        with amp_autocast():
            probs = view_probabilities(model, views)
        evaluator.update(probs.clamp_min(1e-12).log(), target)  # log of averaged probabilities = its own logits
        seen += len(target)
        if rows is not None:
            top = probs.float().topk(min(5, probs.shape[1]))
            rows += zip(batch, top.indices.tolist(), top.values.tolist(), target.tolist(), strict=True)
    if rows is not None:
        _write_predictions(args, loader.dataset, rows)
    if args.distributed:
        torch.distributed.all_reduce(seen)
    if not seen:  # metrics of nothing would read as 0% and decide "best" on nothing
        raise CommandError(f'validation split {args.val_split!r} has no readable video ({len(bad_log)} unreadable '
                           f'reported above): nothing to measure; fix its files, or train without validation '
                           f'(--val-split "")')
    return dict(evaluator.compute(distributed=args.distributed))


def _write_predictions(args, dataset, rows) -> None:
    """Gather every process's rows; the primary writes ``--predictions`` and the per-class files beside it."""
    if args.distributed:
        parts = [None] * args.world_size
        torch.distributed.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part]
    if not timm.utils.is_primary(args):
        return
    names = dataset.classes
    by_index = {row[0]: row for row in rows}  # the distributed sampler's padding repeats videos
    records = [dict(path=dataset.samples[i][0], label=names[truth],
                    predictions=[dict(label=names[k], probability=round(p, 6)) for k, p in zip(classes, probs)])
               for i, classes, probs, truth in (by_index[i] for i in sorted(by_index))]
    _logger.info(f'predictions of {len(records)} videos: ' + ', '.join(write_evaluation(args.predictions, records,
                                                                                        names)))


def train_one_epoch(epoch, task, loader, optimizer, lr_scheduler, args, device, amp_autocast, loss_scaler,
                    mixup_fn, progress, bad_log) -> Tuple[Dict[str, float], torch.Tensor, torch.Tensor]:
    """One epoch: its mean loss and clip count, and per class the clips trained on and the videos that failed."""
    model = task.get_trainable_module()
    model.train()
    accum = args.grad_accum_steps
    updates_per_epoch = (len(loader) + accum - 1) // accum
    num_updates = epoch * updates_per_epoch
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    samples = torch.zeros((), dtype=torch.float64, device=device)
    num_classes = len(loader.dataset.classes)
    class_of = {str(path): label for path, label in loader.dataset.samples}
    trained = torch.zeros(num_classes, dtype=torch.int64)  # clips per class
    failed = torch.zeros(num_classes, dtype=torch.int64)  # unreadable videos per class
    optimizer.zero_grad()
    last_idx = len(loader) - 1
    for batch_idx, (clips, target, bad) in enumerate(progress(loader, desc=f'epoch {epoch}')):
        bad_log.update(bad)
        for path, _ in bad:
            if str(path) in class_of:
                failed[class_of[str(path)]] += 1
        need_update = batch_idx == last_idx or (batch_idx + 1) % accum == 0
        if clips.ndim == 6:  # repeated sampling: (videos, K clips, ...) -> clips, each with its video's label
            target = target.repeat_interleave(clips.shape[1])
            clips = rearrange(clips, 'b k c t h w -> (b k) c t h w')
        if mixup_fn is not None and len(clips) % 2:  # skipped videos can leave an odd batch; Mixup pairs clips
            clips, target = clips[:-1], target[:-1]
        if not len(clips):
            continue
        trained += torch.bincount(target, minlength=num_classes)
        clips, target = clips.to(device), target.to(device)
        if mixup_fn is not None:
            clips, target = mix_clips(mixup_fn, clips, target)
        sync = nullcontext() if need_update or not args.distributed else task.no_sync()
        with sync:
            with amp_autocast():
                loss = task(clips, target)['loss']
            scaled = loss / accum
            if loss_scaler is not None:
                loss_scaler(scaled, optimizer, clip_grad=args.clip_grad, clip_mode=args.clip_mode,
                            parameters=task.get_clip_parameters(), need_update=need_update)
            else:
                scaled.backward()
                if need_update:
                    if args.clip_grad is not None:
                        timm.utils.dispatch_clip_grad(task.get_clip_parameters(), args.clip_grad, mode=args.clip_mode)
                    optimizer.step()
        loss_sum += loss.detach().double() * clips.shape[0]
        samples += clips.shape[0]
        if need_update:
            optimizer.zero_grad()
            num_updates += 1
            task.num_updates = num_updates
            task.update_ema(step=num_updates)
            if lr_scheduler is not None:
                lr_scheduler.step_update(num_updates=num_updates)
    if args.distributed:
        torch.distributed.all_reduce(loss_sum)
        torch.distributed.all_reduce(samples)
        counts = torch.stack([trained, failed]).to(device)
        torch.distributed.all_reduce(counts)
        trained, failed = counts.cpu()
    return dict(loss=(loss_sum / samples.clamp_min(1)).item(), samples=int(samples.item())), trained, failed


def _check_unlearned_classes(epoch: int, label_names, trained: torch.Tensor, failed: torch.Tensor, args) -> None:
    """Refuse to go on when every training video of a class that the epoch read was unreadable.

    The model would still answer that class, never having seen it, and the run's metrics
    would hide it; with ``--bad-files replace`` the epoch trains on other classes' videos in
    their place. A class with no video read at all (only a dropped last batch) is not counted.
    """
    unlearned = [name for name, n_trained, n_failed in zip(label_names, trained.tolist(), failed.tolist())
                 if n_failed and not n_trained]
    if unlearned:
        raise CommandError(
            f'epoch {epoch}: every training video of {_shown(unlearned)} ({len(unlearned)} of {len(label_names)} '
            f'classes) was unreadable (listed above), so the model would never learn '
            f'{"it" if len(unlearned) == 1 else "them"}; '
            f'fix or replace those videos, or remove the class from {args.train_split!r}; nothing was saved '
            f'for this epoch')


def plot_summary(summary_csv: str, path: str) -> bool:
    """PNG curves of loss, accuracy and learning rate from timm's summary.csv (needs matplotlib)."""
    plt = pyplot()
    if plt is None:
        return False
    with open(summary_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return False
    epochs = [int(r['epoch']) for r in rows]
    panels = [('loss', ['train_loss', 'eval_loss']), ('accuracy (%)', ['eval_top1', 'eval_top5']),
              ('learning rate', ['lr'])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], marker='o', label=key)
        ax.set_title(title)
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(plt.matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:  # no validation: no accuracy curves
            ax.legend(fontsize=8)
    fig.tight_layout()
    write_png(path, fig)
    return True


class _StderrHandler(logging.StreamHandler):
    """timm's console log handler, writing to the ``sys.stderr`` of the moment (tests and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextmanager
def _console_logging():
    """timm's default logging (INFO to stderr) while a run lasts, then the logging as it was.

    timm's ``setup_default_logging`` adds a handler on every call and leaves it, so calling
    ``main`` twice in one process printed every line twice, and later code logged at INFO.
    """
    handler = _StderrHandler()
    handler.setFormatter(timm.utils.FormatterNoInfo())
    level = logging.root.level
    logging.root.addHandler(handler)
    logging.root.setLevel(logging.INFO)
    try:
        yield
    finally:
        logging.root.removeHandler(handler)
        logging.root.setLevel(level)


def _check_args(args) -> None:
    """Refuse, before any work, flag values that would fail late or train something else than asked."""
    if not 0 < args.model_ema_decay < 1:
        raise UsageError(f'--model-ema-decay {args.model_ema_decay} is not in (0, 1)')
    if not 0 <= args.smoothing < 1:
        raise UsageError(f'--smoothing {args.smoothing} is not in [0, 1)')
    if args.drop_path is not None and not 0 <= args.drop_path < 1:
        raise UsageError(f'--drop-path {args.drop_path} is not in [0, 1)')
    for flag in ('mixup', 'cutmix'):
        if getattr(args, flag) < 0:
            raise UsageError(f'--{flag} {getattr(args, flag)} is negative (0 turns it off)')
    for flag in ('mixup_prob', 'mixup_switch_prob'):
        if not 0 <= getattr(args, flag) <= 1:
            raise UsageError(f'--{flag.replace("_", "-")} {getattr(args, flag)} is not a probability in [0, 1]')
    splits = [args.val_split] if args.eval_only else [args.train_split, args.val_split]
    if not args.data_dir and not all(os.path.isabs(split) for split in splits if split):
        raise UsageError('give --data-dir DIR (a folder with train/ and val/ class folders, or annotation lists)')
    if args.data_dir and not os.path.isdir(args.data_dir):
        raise CommandError(f'--data-dir {args.data_dir}: no such folder')
    if args.val_split and args.data_dir is not None:
        val_path = args.val_split if os.path.isabs(args.val_split) else os.path.join(args.data_dir, args.val_split)
        if not os.path.exists(val_path):
            raise UsageError(f'no validation split: {val_path} does not exist; give --val-split FOLDER_OR_LIST, or '
                             f'--val-split "" to train without validation')
    if args.eval_only and not (args.resume or args.initial_checkpoint):
        raise UsageError('--eval-only evaluates a checkpoint: give --resume or --initial-checkpoint')
    if args.eval_only and not args.val_split:
        raise UsageError('--eval-only needs a validation split; --val-split is empty')
    if args.eval_metric != 'top1' and not args.val_split and not args.eval_only:
        raise UsageError(f'--eval-metric {args.eval_metric} ranks validation results, but --val-split is empty')
    if args.resume and args.initial_checkpoint:
        raise UsageError('--resume restores the weights already; leave out --initial-checkpoint')
    if not 0 <= args.hflip <= 1 or not 0 <= args.reprob <= 1:
        raise UsageError(f'--hflip {args.hflip} and --reprob {args.reprob} are probabilities in [0, 1]')
    if not 0 < args.scale[0] <= args.scale[1] <= 1 or not 0 < args.ratio[0] <= args.ratio[1]:
        raise UsageError(f'--scale {args.scale} needs 0 < MIN <= MAX <= 1, --ratio {args.ratio} 0 < MIN <= MAX')
    if args.aa:
        from timm_inti.video.transforms import auto_augment_policy
        try:
            auto_augment_policy(args.aa, dict(input_size=(3, 224, 224), mean=(0.5, 0.5, 0.5)))
        except ValueError as e:
            raise UsageError(f'--aa: {e}') from e
    if args.predictions and not args.predictions.endswith('.jsonl'):
        raise UsageError(f'--predictions {args.predictions}: name a .jsonl file (the per-class files go beside it)')
    if args.predictions and not args.val_split:
        raise UsageError('--predictions writes validation predictions, but --val-split is empty')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise UsageError(f'--device {args.device}, but no CUDA device is available (use --device cpu)')


_RUN_FILES = ('last.pth.tar', 'model_best.pth.tar', 'summary.csv')


def _check_run_folder(args) -> None:
    """A folder that holds a run is continued only with --resume of one of its checkpoints, never overwritten."""
    if args.eval_only or not args.experiment:
        return
    run_dir = os.path.join(args.output, args.experiment)
    held = [name for name in _RUN_FILES if os.path.exists(os.path.join(run_dir, name))]
    held += sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(run_dir), 'checkpoint-*.pth.tar')))
    if not held:
        return
    if args.resume and os.path.realpath(os.path.dirname(os.path.abspath(args.resume))) == os.path.realpath(run_dir):
        return
    last = os.path.join(run_dir, 'last.pth.tar')
    how = f'continue it with --resume {last}' if os.path.exists(last) else 'remove it'
    if args.resume:
        raise UsageError(f'{run_dir} holds another run ({", ".join(held)}) than the one --resume {args.resume} '
                         f'continues: choose a new --experiment name for it, or resume {last}')
    raise UsageError(f'{run_dir} already holds a run ({", ".join(held)}): {how}, or start anew under another '
                     f'--experiment name (or without one, for a new time-stamped folder)')


def _raise_data_failure(error: RuntimeError) -> None:
    """The dataset's "N videos in a row could not be decoded" (``--bad-files replace``), from the main process or
    re-raised by a DataLoader worker with its traceback in the message, as one line."""
    lines = [line for line in str(error).strip().splitlines() if 'could not be decoded' in line]
    if lines:
        message = lines[-1].split('RuntimeError: ', 1)[-1]
        raise CommandError(f'{message}; check the training split, or drop unreadable videos with --bad-files skip') \
            from error


def _truncate_summary(summary_csv: str, start_epoch: int) -> None:
    """A resumed run replays epochs from ``start_epoch``: drop their rows, written before the run stopped."""
    if not os.path.exists(summary_csv):
        return
    with open(summary_csv, newline='') as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, list(reader)
    kept = [r for r in rows if int(r['epoch']) < start_epoch]
    if len(kept) != len(rows):
        write_csv(summary_csv, kept, columns)


# model kwargs that regularise training and may change between a run and its resumption
_TRAINING_KWARGS = ('drop_rate', 'pos_drop_rate', 'patch_drop_rate', 'proj_drop_rate', 'attn_drop_rate',
                    'drop_path_rate')


def _given_flags(argv) -> Set[str]:
    """The flags (argparse dests) on the command line, as opposed to their defaults."""
    parser = _parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _same(a: Any, b: Any) -> bool:
    """Model-kwarg equality across spellings: lists and tuples alike, ``32`` the same size as ``(32, 32)``."""
    def norm(x):
        return tuple(norm(v) for v in x) if isinstance(x, (list, tuple)) else x
    a, b = norm(a), norm(b)
    if isinstance(a, int) and isinstance(b, tuple):
        a = (a,) * len(b)
    if isinstance(b, int) and isinstance(a, tuple):
        b = (b,) * len(a)
    return a == b


def _take_model_from_checkpoint(args, checkpoint: Dict[str, Any], given: Set[str]) -> None:
    """Set the model flags of ``args`` from a training checkpoint, refusing a flag that contradicts it.

    The architecture, its kwargs, the frames and the frame size are the checkpoint's; the
    regularisation kwargs (``--drop-path``, ``drop_rate``, ...) may change and are taken from
    the command line when given.
    """
    path = args.resume or args.initial_checkpoint
    flag = '--resume' if args.resume else '--initial-checkpoint'
    saved = dict(checkpoint.get('model_args') or {})
    saved.pop('num_classes', None)  # the data's (training) or the checkpoint's labels (evaluation) decide

    def refuse(ours: str, theirs: str):
        raise UsageError(f'{ours} contradicts {path}, a checkpoint of {theirs}: leave it out ({flag} takes the model '
                         f'from the checkpoint), or start a new run without {flag}')

    arch = checkpoint['arch']
    if 'model' in given and args.model != arch:
        refuse(f'--model {args.model}', arch)
    frames = saved.pop('num_frames', args.num_frames)
    if 'num_frames' in given and args.num_frames != frames:
        refuse(f'--num-frames {args.num_frames}', f'num_frames={frames}')
    if 'img_size' in given and not _same(args.img_size, saved.get('img_size')):
        refuse(f'--img-size {args.img_size}',
               f'img_size={saved["img_size"]}' if 'img_size' in saved else f'{arch} at its default frame size')
    kwargs = dict(args.model_kwargs) if 'model_kwargs' in given else {}
    for key, value in kwargs.items():
        if key not in _TRAINING_KWARGS and not (key in saved and _same(value, saved[key])):
            refuse(f'--model-kwargs {key}={value!r}',
                   f'{key}={saved[key]!r}' if key in saved else f'{arch} without {key} (its default)')
    run = checkpoint.get('args') if isinstance(checkpoint.get('args'), dict) else {}
    if args.resume and not args.eval_only:  # the optimizer's state fits only its own parameter groups
        for dest in ('opt', 'layer_decay', 'freeze_backbone'):
            if dest in run and dest in given and getattr(args, dest) != run[dest]:
                option = '--' + dest.replace('_', '-')
                refuse(f'{option} {getattr(args, dest)}', f'a run with {option} {run[dest]}')
            setattr(args, dest, run.get(dest, getattr(args, dest)))
    if args.eval_only and 'model_ema' not in given:
        args.model_ema = bool(run.get('model_ema'))  # evaluate what the run validated
    drop_path = saved.pop('drop_path_rate', None)
    args.model, args.num_frames, args.img_size = arch, frames, None  # img_size, if any, stays in the kwargs
    args.model_kwargs = dict(saved, **{k: v for k, v in kwargs.items() if k in _TRAINING_KWARGS})
    if 'drop_path' not in given:
        args.drop_path = drop_path


def _shown(names, limit: int = 5) -> str:
    return ', '.join(names[:limit]) + (', ...' if len(names) > limit else '')


def _check_img_size(model, img_size) -> None:
    """Refuse an --img-size off the model's patch grid before any data is read, with sizes that fit."""
    patch = getattr(getattr(model, 'patch_embed', None), 'patch_size', None)
    if img_size is None or patch is None or getattr(model.patch_embed, 'dynamic_img_pad', False):
        return
    step = max(patch)
    if patch[0] != patch[1] or img_size % step == 0:
        return
    below, above = (img_size // step) * step, (img_size // step + 1) * step
    fits = f'{below} or {above}' if below else str(above)
    arch = (getattr(model, 'pretrained_cfg', None) or {}).get('architecture', 'the model')
    raise UsageError(f'--img-size {img_size} is not a multiple of the patch size {step} of {arch}: use {fits}')


def _take_optimizer_flags(optimizer, args) -> None:
    """--lr and --weight-decay of this run, not the resumed optimizer state's (which restores its groups' values)."""
    for group in optimizer.param_groups:
        group['initial_lr'] = args.lr  # the scheduler's base; layer decay scales it by the group's lr_scale
        if group.get('weight_decay'):  # groups without decay (norms, biases) keep 0
            group['weight_decay'] = args.weight_decay


def _schedule_changes(args, run: Optional[Dict[str, Any]]) -> List[str]:
    """The schedule's flags that differ from the resumed run's, as 'FLAG NEW (was OLD)'."""
    if not isinstance(run, dict):
        return []
    ours = dict(timm.scheduler.scheduler_kwargs(args), lr=args.lr)
    theirs = dict(timm.scheduler.scheduler_kwargs(argparse.Namespace(**run)), lr=run.get('lr', args.lr))
    flags = {'num_epochs': 'epochs', 'step_on_epochs': 'sched_on_updates'}
    return [f'--{flags.get(k, k).replace("_", "-")} {ours[k]} (was {theirs[k]})'
            for k in ours if k in theirs and ours[k] != theirs[k]]


def _cpu_count() -> int:
    """The CPUs this process may run on (a cgroup or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _base_lr(optimizer) -> float:
    """The scheduled learning rate, as --lr sets it: layer decay scales each group's by its lr_scale."""
    group = optimizer.param_groups[0]
    scale = group.get('lr_scale', 1.0)
    return group['lr'] / scale if scale else group['lr']


def _epoch_line(epoch: int, num_epochs: int, train: Dict[str, float], train_s: float,
                evaluation: Optional[Dict[str, float]], eval_s: float, lr: float) -> str:
    text = (f'epoch {epoch}/{num_epochs}: train loss {train["loss"]:.4f}, {train["samples"]} clips in '
            f'{train_s:.1f} s ({train["samples"] / max(train_s, 1e-9):.1f} clips/s)')
    if evaluation is not None:
        text += (f'; eval top1 {evaluation["top1"]:.2f}, top5 {evaluation["top5"]:.2f}, '
                 f'loss {evaluation["loss"]:.4f} in {eval_s:.1f} s')
    return text + f'; lr {lr:.3g}'


@command('timm-inti-train')
def main(argv=None) -> int:
    with _console_logging(), warnings.catch_warnings():
        # torch warns of more workers than CPUs at every epoch; _main says it once
        warnings.filterwarnings('ignore', message='This DataLoader will create', category=UserWarning)
        return _main(argv)


def _main(argv) -> int:
    args, run_args = _parse_args(argv)
    _check_args(args)
    source = args.resume or args.initial_checkpoint
    checkpoint = read_checkpoint_metadata(source) if source else None  # None: a weights file (.safetensors)
    if is_training_checkpoint(checkpoint):  # it describes its model
        _take_model_from_checkpoint(args, checkpoint, _given_flags(argv))
    _check_run_folder(args)
    cpus = _cpu_count()
    if args.workers is None:
        args.workers = min(4, cpus)
    device = timm.utils.init_distributed_device(args)
    primary = timm.utils.is_primary(args)
    if args.workers > cpus and primary:
        _logger.warning(f'-j {args.workers}: more loader workers than the {cpus} CPUs this process may use, '
                        f'which slows decoding down (-j {cpus} or fewer fits)')
    if args.distributed:
        _logger.info(f'rank {args.rank}/{args.world_size} on {device}')
    timm.utils.random_seed(args.seed, args.rank)

    from timm_inti.video import BadVideoLog, collate_videos, create_video_datasets

    if args.batch_size % args.num_samples:
        raise UsageError(f'-b/--batch-size counts clips and must be a multiple of --num-samples: '
                         f'got -b {args.batch_size} and --num-samples {args.num_samples}')
    model_kwargs = dict(num_frames=args.num_frames, **args.model_kwargs)
    if args.img_size is not None:
        model_kwargs['img_size'] = args.img_size
    if args.drop_path is not None:
        model_kwargs['drop_path_rate'] = args.drop_path
    # the data decides the class count; build once without a head to read the data config
    headless = create_model(args.model, num_classes=0, **model_kwargs)
    data_config = resolve_input_data_config(headless)
    _check_img_size(headless, args.img_size)
    del headless
    classes = None
    if args.eval_only:  # the model's classes, in its order, label the validation split
        classes = (checkpoint or {}).get('label_names')
    train_set, val_set = create_video_datasets(
        args.data_dir, data_config, num_frames=args.num_frames, train_split=args.train_split,
        val_split=args.val_split, test_clips=args.test_clips, test_crops=args.test_crops, stride=args.stride,
        bad_files=args.bad_files, eval_only=args.eval_only, classes=classes, num_samples=args.num_samples,
        shared_frames=args.shared_frames, scale=tuple(args.scale), ratio=tuple(args.ratio), hflip=args.hflip,
        augmentation=dict(color_jitter=args.color_jitter, auto_augment=args.aa, re_prob=args.reprob,
                          re_mode=args.remode, re_count=args.recount))
    label_names = (val_set if args.eval_only else train_set).classes
    if args.num_classes is not None and args.num_classes != len(label_names):
        raise UsageError(f'--num-classes {args.num_classes}, but the data has {len(label_names)} classes '
                         f'({_shown(label_names)}): '
                         f'leave out --num-classes to take the data\'s count')
    saved_labels = list((checkpoint or {}).get('label_names') or [])
    if args.resume and saved_labels and saved_labels != list(label_names):
        raise CommandError(f'{args.resume} was trained on {len(saved_labels)} classes ({_shown(saved_labels)}), '
                           f'{args.train_split!r} holds {len(label_names)} ({_shown(label_names)}): resume on the same '
                           f'data, or start from its weights with --initial-checkpoint')
    num_classes = len(label_names)
    model_kwargs['num_classes'] = num_classes
    world = args.world_size if args.distributed else 1
    videos_per_step = args.batch_size // args.num_samples * world  # -b counts clips, K of them per video
    if train_set is not None and len(train_set) < videos_per_step:
        batch = f'-b {args.batch_size}' + (f' / --num-samples {args.num_samples}' if args.num_samples > 1 else '') + (
            f' x {world} processes' if world > 1 else '')
        raise UsageError(f'{batch} is more than the {len(train_set)} training videos of {args.train_split!r}: '
                         f'no full batch, nothing to train on (the last, incomplete batch is dropped); lower -b')

    if args.pretrained and source and primary:
        _logger.info(f'--pretrained: not loaded, {source} holds all the weights')
    model = create_model(args.model, pretrained=args.pretrained and not source, **model_kwargs)
    if args.initial_checkpoint:
        new_head = bool(saved_labels) and saved_labels != list(label_names)
        if new_head and primary:
            _logger.info(f'{args.initial_checkpoint}: its head ({len(saved_labels)} classes: {_shown(saved_labels)}) '
                         f'is not loaded: a new head learns the {num_classes} classes of the data')
        load_weights(model, args.initial_checkpoint, use_ema=True, except_head=new_head)
    if args.freeze_backbone:
        count = freeze_backbone(model)
        if primary:
            _logger.info(f'frozen backbone: {count / 1e6:.2f}M trainable parameters')
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(device)

    amp_dtype = torch.bfloat16 if args.amp_dtype == 'bfloat16' else torch.float16
    amp_autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if args.amp else nullcontext
    scaled = args.amp and amp_dtype == torch.float16 and device.type == 'cuda'
    loss_scaler = timm.utils.NativeScaler(device=device.type) if scaled else None

    mixup_active = args.mixup > 0 or args.cutmix > 0
    mixup_fn = Mixup(
        mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob, switch_prob=args.mixup_switch_prob,
        label_smoothing=args.smoothing, num_classes=num_classes) if mixup_active else None
    criterion_kwargs = dict(soft_targets=True) if mixup_active else dict(smoothing=args.smoothing)
    saved_model_args = {k: v for k, v in model_kwargs.items()
                        if isinstance(v, (int, float, str, bool, tuple, list, dict))}
    task = VideoClassificationTask(
        model, arch=args.model, model_args=saved_model_args, label_names=label_names, run_args=vars(args),
        criterion=SoftTargetCrossEntropy() if mixup_active else None,
        criterion_kwargs=None if mixup_active else criterion_kwargs, device=device, verbose=primary)

    try:
        optimizer = timm.optim.create_optimizer_v2(model, **timm.optim.optimizer_kwargs(cfg=args))
    except (AssertionError, ValueError) as e:  # timm's refusal of an unknown --opt
        raise UsageError(f'--opt {args.opt}: not an optimizer timm knows ({e}); '
                         f'timm.optim.list_optimizers() lists them') from e
    resume_epoch = None
    if args.resume and args.eval_only:  # the weights only (the EMA's with --model-ema), not the optimizer's state
        load_weights(model, args.resume, use_ema=args.model_ema)
    elif args.resume:
        checkpoint = resume_training(task, args.resume, args.model, optimizer=optimizer, loss_scaler=loss_scaler,
                                     log_info=primary)
        resume_epoch = checkpoint['epoch'] + 1 if checkpoint.get('version', 1) > 1 else checkpoint['epoch']
        _take_optimizer_flags(optimizer, args)
    if args.model_ema and not args.eval_only:
        task.setup_ema(decay=args.model_ema_decay)
        if args.resume:
            resume_ema(task, args.resume, checkpoint)
    if args.torchcompile:  # timm's order: compile, then DDP
        task.compile(backend=args.torchcompile)
        task.compile_ema(backend=args.torchcompile)
    if args.distributed:
        task.prepare_distributed(device_ids=[device] if device.type == 'cuda' else None)

    generator = torch.Generator()
    train_sampler = val_sampler = None
    if args.distributed:
        train_sampler = torch.utils.data.DistributedSampler(train_set, shuffle=True, seed=args.seed, drop_last=True)
        if val_set is not None:
            val_sampler = OrderedDistributedSampler(val_set)  # pads evenly; the evaluator drops the padding
    loader_kwargs = dict(num_workers=args.workers, worker_init_fn=_seed_worker, generator=generator,
                         collate_fn=collate_videos, pin_memory=device.type == 'cuda')
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size // args.num_samples,  # videos; each gives --num-samples clips
        shuffle=train_sampler is None, sampler=train_sampler, drop_last=True,
        **loader_kwargs) if train_set is not None else None
    val_loader = torch.utils.data.DataLoader(
        val_set, batch_size=args.validation_batch_size or args.batch_size, shuffle=False, sampler=val_sampler,
        **loader_kwargs) if val_set is not None else None

    from tqdm.auto import tqdm

    def progress(iterable, desc):  # a bar on a terminal, quiet in logs and on other ranks
        return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None if primary else True)

    eval_model = lambda: task.get_eval_model(ema=task.has_ema())  # noqa: E731
    bad_log = BadVideoLog(_logger)
    if args.eval_only:
        metrics = validate(eval_model(), val_loader, args, device, amp_autocast, progress, bad_log)
        if primary:
            print(json.dumps(dict(eval=metrics, views=args.test_clips * args.test_crops, unreadable=len(bad_log),
                                  **(dict(predictions=args.predictions) if args.predictions else {}))))
        return 0

    updates_per_epoch = (len(train_loader) + args.grad_accum_steps - 1) // args.grad_accum_steps
    try:
        lr_scheduler, num_epochs = timm.scheduler.create_scheduler_v2(
            optimizer, **timm.scheduler.scheduler_kwargs(args), updates_per_epoch=updates_per_epoch)
    except (AssertionError, ValueError) as e:
        raise UsageError(f'--sched {args.sched}: {e or "not a scheduler timm knows"}') from e
    task.lr_scheduler = lr_scheduler
    start_epoch = resume_epoch or 0
    task.num_updates = start_epoch * updates_per_epoch
    if lr_scheduler is not None and start_epoch > 0:
        saved = checkpoint.get('lr_scheduler')
        changed = _schedule_changes(args, checkpoint.get('args'))
        if changed and primary:
            _logger.info(f'{", ".join(changed)}: the schedule is rebuilt from this run\'s flags at epoch {start_epoch}')
        if saved is not None and not changed:  # a plateau schedule's state depends on the metrics so far
            lr_scheduler.load_state_dict(saved)
        if args.sched_on_updates:
            lr_scheduler.step_update(task.num_updates)
        else:
            lr_scheduler.step(start_epoch)

    validating = val_loader is not None
    saver = output_dir = None
    if primary:
        exp_name = args.experiment or '-'.join([time.strftime('%Y%m%d-%H%M%S'),
                                                timm.models.safe_model_name(args.model)])
        output_dir = timm.utils.get_outdir(args.output, exp_name, inc=not args.experiment)
        decreasing = args.eval_metric == 'loss'
        saver = CheckpointSaver(
            model=model, optimizer=optimizer, amp_scaler=loss_scaler, checkpoint_dir=output_dir,
            recovery_dir=output_dir, decreasing=decreasing, max_history=args.checkpoint_hist, task=task)
        if args.resume:
            saver.load_state_dict_from_checkpoint(args.resume)
            _truncate_summary(os.path.join(output_dir, 'summary.csv'), start_epoch)
        clips = f'{len(train_set)} training videos' + (
            f' ({args.num_samples} clips each, --num-samples)' if args.num_samples > 1 else '')
        _logger.info(f'output: {output_dir}; {clips}, {num_classes} classes, {num_epochs} epochs from {start_epoch}; '
                     f'{args.workers} loader workers per process')
        if not validating:
            _logger.info('no validation split: no "best" checkpoint is chosen; last.pth.tar holds the final model')
        if start_epoch >= num_epochs:
            _logger.info(f'{args.resume} finished its {num_epochs} epochs already: nothing to train '
                         f'(raise --epochs to train on)')

    summary_csv = os.path.join(output_dir, 'summary.csv') if output_dir else None
    for epoch in range(start_epoch, num_epochs):
        seed_epoch(args.seed, epoch, args.rank, generator)
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        started = time.perf_counter()
        try:
            train_metrics, trained, failed = train_one_epoch(
                epoch, task, train_loader, optimizer, lr_scheduler, args, device, amp_autocast, loss_scaler, mixup_fn,
                progress, bad_log)
        except RuntimeError as e:
            _raise_data_failure(e)
            raise
        if not train_metrics['samples']:
            raise CommandError(f'epoch {epoch} trained on no clip: none of the {len(train_set)} training videos '
                               f'could be decoded ({bad_log.summary()}, listed above); nothing was saved')
        _check_unlearned_classes(epoch, label_names, trained, failed, args)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        eval_metrics = validate(eval_model(), val_loader, args, device, amp_autocast, progress, bad_log) \
            if val_loader else None
        eval_s = time.perf_counter() - started
        lr = _base_lr(optimizer)
        metric = eval_metrics[args.eval_metric] if eval_metrics else None  # no validation: no "best"
        if primary:
            try:
                saver.save_checkpoint(epoch, metric=metric)
                if epoch == start_epoch:  # beside the run's first checkpoint: a run that fails earlier leaves nothing
                    write_text(os.path.join(output_dir, 'args.yaml'),
                               dump_config(dict(run_args, experiment=os.path.basename(output_dir))))
                timm.utils.update_summary(epoch, train_metrics, eval_metrics, filename=summary_csv, lr=lr)
                with open(summary_csv) as f:
                    write_json(os.path.join(output_dir, 'summary.json'), list(csv.DictReader(f)))
                plot_summary(summary_csv, os.path.join(output_dir, 'summary.png'))
            except OSError as e:  # a full disk: say where (timm's summary writer does not)
                if e.filename:
                    raise
                raise OSError(e.errno, f'cannot write in {output_dir}: {e.strerror}', output_dir) from e
            _logger.info(_epoch_line(epoch, num_epochs, train_metrics, train_s, eval_metrics, eval_s, lr))
        if lr_scheduler is not None:
            lr_scheduler.step(epoch + 1, train_metrics['loss'] if metric is None else metric)

    if args.distributed:
        torch.distributed.destroy_process_group()
    if saver is not None and saver.checkpoint_files:
        _logger.info(f'checkpoints kept in {output_dir}: {saver.describe(args.eval_metric)}')
    if saver is not None and saver.best_metric is not None:
        _logger.info(f'best {args.eval_metric}: {saver.best_metric} (epoch {saver.best_epoch})')
    if primary:
        _logger.info(f'done: {bad_log.summary()} in the data')
    return 0


if __name__ == '__main__':
    sys.exit(main())
