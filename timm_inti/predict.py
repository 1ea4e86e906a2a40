""" Say what is in video files, or embed them: ``timm-inti-predict VIDEOS... --model NAME``.

    timm-inti-predict clip.mp4 --model hf-hub:org/inti-k400                  # a fine-tuned model with labels
    timm-inti-predict clip.mp4 --model inti_vit_b16 --zero-shot-labels classes.txt
    timm-inti-predict videos/ --checkpoint run/model_best.pth.tar -j 8 -b 16 --output predictions.jsonl
    timm-inti-predict manifest.csv --model inti_vit_b16 --features embeddings.npy -j 8
    torchrun --nproc_per_node=8 -m timm_inti.predict videos/ --checkpoint ... --output predictions.jsonl

VIDEOS are files, folders (searched recursively for video files), glob patterns ('**/*.mp4'),
or list files: ``.txt`` (one path per line), ``.csv`` with a ``path`` column (a manifest) or
``.jsonl`` with a ``path`` field; relative paths in a list are relative to its folder.

Videos are read by the evaluation dataset of training (``VideoPaths``: the same decoding,
sampling and views) in a DataLoader with ``-j`` workers, ``-b`` videos per batch; each
video's probabilities (and embeddings) are averaged over its views (temporal clips x spatial
crops) by ``timm_inti.evaluate``.

Labels come from ``--labels FILE`` (one per line), else the checkpoint or the model's config;
a class-names file given among the videos is recognised and refused, naming the flag.
Offline, ``--pretrained-path FILE``, ``--model local-dir:DIR`` or ``--checkpoint FILE`` give
the weights and ``--text-tower local-dir:DIR`` the text tower (docs/offline.md).
A CLIP-initialised model outputs CLIP embeddings, not classes: give it class names with
``--zero-shot-labels FILE`` and it scores them with the matching CLIP text tower (built once).

Outputs survive a crash:

  * ``--output FILE.jsonl``: one JSON line per video, ``{"path", "predictions": [{"label",
    "probability"}...]}`` or ``{"path", "error"}``. While running, each process appends a line
    per finished video to ``FILE.jsonl.part-RANK`` and flushes it; at the end the parts are
    merged into FILE.jsonl (atomically) in input order, as one process would have written it.
  * ``--features FILE.npy`` (or ``.safetensors``, tensor ``features``): one float32 vector per
    readable video, rows in input order, and ``FILE.index.jsonl`` naming each row's video.
    While running, each process appends every vector to ``FILE.npy.part-RANK.f32`` and names
    it in ``FILE.npy.part-RANK.jsonl``, as ``--output`` does: a kill loses only the videos in flight.

A rerun with the same outputs skips the videos already in them (or in their parts) and
does the rest; a line torn by a kill is dropped. The settings that decide an output's
content (model, weights, views, ``--top-k``, labels, feature space) are recorded beside it
in ``FILE.settings.json``; a rerun with other settings is refused rather than mixing answers.
Under ``torchrun`` the videos are split between processes (gloo on CPUs, NCCL on GPUs);
outputs must be on a filesystem every node sees. A video that cannot be read gets an
``error`` line and a line on stderr; the others go on, and the exit status is 1.
"""
import argparse
import glob
import hashlib
import json
import logging
import os
import sys
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import timm
import timm.utils
import torch

from .checkpoints import create_model, create_model_from_checkpoint
from .cli import CommandError, UsageError, add_debug_argument, command, non_negative_int, positive_float, positive_int
from .evaluate import average_over_views, probabilities
from .hub import OFFLINE_DOC, hub_unreachable
from .outputs import FeatureOutput, JsonlOutput, Progress, check_settings
from .video import VideoPaths, collate_videos, create_video_transform
from .video.formats import find_videos, is_video, manifest_frame_counts, read_label_file, read_path_list
from .visualize import write_merges
from .vit import CheckpointError
from .zero_shot import ZeroShotHead, create_text_tower, set_zero_shot_head, text_tower_for

__all__ = ['main', 'parse_args', 'run', 'build_model', 'add_model_arguments', 'check_model_arguments', 'expand_inputs']

PROG = 'timm-inti-predict'
LIST_SUFFIXES = ('.txt', '.csv', '.jsonl', '.lst')
FEATURE_SUFFIXES = ('.npy', '.safetensors')


class PredictError(UsageError):
    """A problem with the command's setup (model, checkpoint, labels): one line, exit 2."""


def add_model_arguments(group) -> None:
    """The flags ``build_model`` reads, for every command that builds a model from a name or a checkpoint (predict,
    export); ``check_model_arguments`` checks them after parsing."""
    group.add_argument('--model', default='inti_vit_b16',
                       help='timm model name, hf-hub:org/name or local-dir:PATH (default: %(default)s)')
    group.add_argument('--checkpoint', default=None,
                       help='a training checkpoint (timm-inti-train) or a weights file (.safetensors, .pth)')
    group.add_argument('--pretrained-path', default=None, metavar='FILE',
                       help='the model\'s pretrained weights from this local file instead of the Hub, as timm\'s '
                            'flag (pretrained_cfg_overlay=dict(file=FILE)): a CLIP image checkpoint (OpenAI, '
                            'open_clip or timm format); see docs/offline.md')
    group.add_argument('--use-ema', action='store_true', help='the EMA weights of a training checkpoint')
    group.add_argument('--model-kwargs', nargs='*', default={}, action=timm.utils.ParseKwargs,
                       help='extra model kwargs, k=v (e.g. embed_dim=64 depth=4)')


def check_model_arguments(args: argparse.Namespace) -> None:
    if args.pretrained_path and args.checkpoint:
        raise UsageError(f'--pretrained-path {args.pretrained_path} and --checkpoint {args.checkpoint} both give the '
                         f'weights: leave one out')


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('videos', nargs='+',
                        help='video files, folders, glob patterns or list files (.txt, .csv, .jsonl)')
    group = parser.add_argument_group('Model')
    add_model_arguments(group)
    group.add_argument('--labels', default=None, help='class names, one per line, in class-index order')
    group.add_argument('--zero-shot-labels', default=None, help='class names, one per line, for zero-shot scoring')
    group.add_argument('--text-tower', default=None, metavar='MODEL:PRETRAINED',
                       help='open_clip text tower for zero-shot (default: the one matching the model\'s tag); '
                            'PRETRAINED may be a local checkpoint file, or give local-dir:DIR (open_clip\'s '
                            'folder: open_clip_config.json and the weights)')
    group.add_argument('--top-k', type=positive_int, default=5, help='labels per video (default: %(default)s)')
    group = parser.add_argument_group('Views')
    group.add_argument('--num-frames', type=positive_int, default=None, help='frames per clip (default: the model\'s)')
    group.add_argument('--clips', type=positive_int, default=1, help='temporal clips per video')
    group.add_argument('--crops', type=int, default=1, choices=(1, 3), help='spatial crops per clip')
    group.add_argument('--stride', type=positive_int, default=None,
                       help='dense sampling stride (default: segment sampling)')
    group.add_argument('--backend', default=None, choices=('pyav', 'torchcodec'), help='video decoder')
    group = parser.add_argument_group('Outputs')
    group.add_argument('--output', default=None, metavar='FILE.jsonl',
                       help='one JSON line per video; a rerun skips the videos already there')
    group.add_argument('--features', default=None, metavar='FILE.npy|FILE.safetensors',
                       help='one embedding per video, rows in input order, paths in FILE.index.jsonl')
    group.add_argument('--feature-space', default='auto', choices=('auto', 'pre-logits', 'clip'),
                       help='pre-logits: the pooled token before the head; clip: CLIP\'s image-text space '
                            '(a CLIP-initialised model\'s projection head); auto: clip for a CLIP-initialised '
                            'model (no class names, or zero-shot), pre-logits for a fine-tuned classifier')
    group.add_argument('--json', action='store_true', help='without --output: print JSON lines instead of text')
    group.add_argument('--show-merges', default=None, metavar='DIR',
                       help='pictures of what the InTI layers merge in the first view of every video: '
                            'DIR/VIDEO_FILE_NAME/inti{k}_pair{j}.png and contact_sheet.png (timm_inti.visualize); '
                            'videos of the same file name in different folders get NAME-DIGEST folders')
    group = parser.add_argument_group('Running')
    group.add_argument('-b', '--batch-size', type=positive_int, default=8, help='videos per batch')
    group.add_argument('-j', '--workers', type=non_negative_int, default=min(4, os.cpu_count() or 1),
                       help='DataLoader worker processes decoding videos (default: %(default)s)')
    group.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    group.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    group.add_argument('--log-interval', type=positive_float, default=30.0,
                       help='seconds between progress lines when stderr is not a terminal')
    add_debug_argument(parser)
    return parser


def _read_lines(path: str, what: str) -> List[str]:
    try:
        return read_label_file(path, what)
    except (OSError, ValueError) as e:
        raise PredictError(str(e)) from e


def build_model(args):
    """The model, its label names (or None), from --model / --checkpoint / --pretrained-path."""
    kwargs = dict(args.model_kwargs)
    kwargs.update({} if args.num_frames is None else dict(num_frames=args.num_frames))
    if args.pretrained_path:
        kwargs['pretrained_cfg_overlay'] = dict(file=args.pretrained_path)
    try:
        if args.checkpoint is None:
            model = create_model(args.model, pretrained=True, **kwargs)
            return model, model.pretrained_cfg.get('label_names')
        return create_model_from_checkpoint(args.checkpoint, args.model, use_ema=args.use_ema, **kwargs)
    except Exception as e:
        if not hub_unreachable(e):
            raise
        raise CheckpointError(
            f'--model {args.model}: its weights are not in the Hugging Face cache and the Hub cannot be reached '
            f'(HF_HUB_OFFLINE=1 or no network): give local weights with --pretrained-path FILE, --model '
            f'local-dir:DIR or --checkpoint FILE (see {OFFLINE_DOC})') from e


# ---------------------------------------------------------------------------------------------
# inputs

def _read_list(list_file: str) -> List[str]:
    """The videos of a list file (``timm_inti.video.formats.read_path_list``), refused when it names none."""
    paths = read_path_list(list_file)
    if not any(is_video(p) or os.path.exists(p) for p in paths):
        base = os.path.dirname(list_file)
        first = os.path.relpath(paths[0], base) if base else paths[0]
        raise UsageError(
            f'{list_file}: none of its {len(paths)} lines names a video file or an existing path (the first: '
            f'{first!r}): a list of class names? give it with --labels FILE (a fine-tuned model\'s classes, in '
            f'class-index order) or --zero-shot-labels FILE (names for a CLIP model to score)')
    return paths


def expand_inputs(items: Iterable[str]) -> List[str]:
    """The videos named by files, folders (recursively, video extensions), glob patterns and list files.

    In the order given, each video once. A named file that does not exist stays in the list
    (it is reported as unreadable, like any other bad file); a pattern or folder that finds
    no video is a usage error.
    """
    videos: List[str] = []
    for item in items:
        if os.path.isdir(item):
            found = find_videos(item)
            if not found:
                raise UsageError(f'no video files under {item}')
        elif os.path.isfile(item) and item.lower().endswith(LIST_SUFFIXES):
            found = _read_list(item)
        elif os.path.exists(item) or not glob.has_magic(item):
            found = [item]
        else:
            found = []
            for match in sorted(glob.glob(item, recursive=True)):
                found.extend(find_videos(match) if os.path.isdir(match) else [match] if is_video(match) else [])
            if not found:
                raise UsageError(f'no video files match {item}')
        videos.extend(found)
    return list(dict.fromkeys(videos))


def _settings(args, kind: str, space: Optional[str] = None) -> dict:
    """What decides an output's content: the model and its weights, the views, and the output's own options."""
    def file(path):
        return os.path.abspath(path) if path else None
    settings = dict(model=args.model, checkpoint=file(args.checkpoint), pretrained_path=file(args.pretrained_path),
                    use_ema=args.use_ema, model_kwargs={k: repr(v) for k, v in sorted(args.model_kwargs.items())},
                    num_frames=args.num_frames, clips=args.clips, crops=args.crops, stride=args.stride)
    if kind == 'output':
        settings.update(labels=file(args.labels), zero_shot_labels=file(args.zero_shot_labels),
                        text_tower=args.text_tower, top_k=args.top_k)
    else:
        settings.update(feature_space=space)
    return settings


def _picture_folders(inputs: Sequence[str]) -> Dict[str, str]:
    """--show-merges folder names: a video's file name, with a digest of its path where two share a name."""
    names: Dict[str, int] = {}
    for path in inputs:
        names[Path(path).name] = names.get(Path(path).name, 0) + 1
    return {p: Path(p).name if names[Path(p).name] == 1 else
            f'{Path(p).name}-{hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]}' for p in inputs}


# ---------------------------------------------------------------------------------------------
# the run

def _feature_space(args, model, label_names) -> Optional[str]:
    if not args.features:
        return None
    clip_head = isinstance(model.head, ZeroShotHead) or (
        label_names is None and isinstance(model.head, torch.nn.Linear))
    space = args.feature_space
    if space == 'auto':
        space = 'clip' if clip_head else 'pre-logits'
    if space == 'clip' and not clip_head:
        raise UsageError('--feature-space clip needs a CLIP-initialised model (its head is CLIP\'s image '
                         'projection); this one has a classifier head: use pre-logits')
    return space


def _feature_dim(model, space: str) -> Optional[int]:
    """The width of the vectors ``_step`` extracts in ``space`` (None when the model does not say)."""
    if space == 'pre-logits':
        return getattr(model, 'head_hidden_size', None) or getattr(model, 'num_features', None)
    projection = model.head.projection if isinstance(model.head, ZeroShotHead) else model.head
    return getattr(projection, 'out_features', None)


def _step(model, classify: bool, space: Optional[str]):
    """(N, C, T, H, W) clips -> a tuple: class probabilities (if classifying), embeddings (if extracting)."""
    projection = model.head.projection if isinstance(model.head, ZeroShotHead) else model.head

    def step(clips):
        pre = model.forward_head(model.forward_features(clips), pre_logits=True)
        outputs = []
        if classify:
            outputs.append(probabilities(model, model.head(pre).float()))
        if space is not None:
            outputs.append(pre if space == 'pre-logits' else projection(pre))
        return tuple(outputs)
    return step


def _print_record(record: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record), flush=True)
    elif 'predictions' in record:
        print(record['path'])
        for p in record['predictions']:
            print(f"  {p['probability']:.3f}  {p['label']}")
        sys.stdout.flush()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise UsageError(f'--device {args.device}: CUDA is not available here; use --device cpu')
    if args.features and not args.features.lower().endswith(FEATURE_SUFFIXES):
        raise UsageError(f'--features {args.features}: the file must end in .npy or .safetensors')
    check_model_arguments(args)
    for flag, path in (('--output', args.output), ('--features', args.features)):
        if path and os.path.abspath(path) in {os.path.abspath(v) for v in args.videos if os.path.isfile(v)}:
            raise UsageError(f'{flag} {path} is also an input (a list of the videos): the answers would replace it; '
                             f'name another file')
    if args.output and args.features and os.path.abspath(args.output) in (
            os.path.abspath(args.features), os.path.abspath(Path(args.features).with_suffix('.index.jsonl'))):
        raise UsageError(f'--output {args.output} would overwrite the features or their index')
    return args


def _zero_shot_labels(args, model) -> List[str]:
    """--zero-shot-labels: put a zero-shot head on the model (the text tower built once) and return the names."""
    label_names = _read_lines(args.zero_shot_labels, 'zero-shot labels')
    if args.text_tower and args.text_tower.startswith(('local-dir:', 'hf-hub:')):  # open_clip's own schemas
        name, pretrained = args.text_tower, None
    elif args.text_tower:
        name, _, pretrained = args.text_tower.partition(':')
    else:
        name, pretrained = text_tower_for(model)  # a ValueError that names --text-tower
    shown = f'{name}:{pretrained}' if pretrained else name
    try:
        clip_model, tokenizer = create_text_tower(name, pretrained or None)
    except OSError as e:
        if not hub_unreachable(e):
            raise
        raise CommandError(
            f'text tower {shown}: its weights are not in the Hugging Face cache and the Hub cannot be reached '
            f'(HF_HUB_OFFLINE=1 or no network): give a local copy with --text-tower {name}:FILE (an open_clip '
            f'checkpoint) or --text-tower local-dir:DIR (see {OFFLINE_DOC})') from e
    except RuntimeError as e:  # open_clip's word for an unknown model name or missing weights
        raise UsageError(f'text tower {shown}: {e}') from e
    set_zero_shot_head(model, label_names, clip_model, tokenizer)  # once: the head scores every video
    return label_names


def _model_and_labels(args) -> Tuple[torch.nn.Module, Optional[List[str]], Optional[str]]:
    """The model, its class names (None: it only embeds) and the feature space of --features (None: no features)."""
    model, label_names = build_model(args)
    if args.show_merges and not getattr(model, 'inti', None):
        raise UsageError(f'--show-merges: {args.checkpoint or args.model} has no InTI layers, so nothing is merged')
    if args.zero_shot_labels:
        label_names = _zero_shot_labels(args, model)
    if args.labels:
        label_names = _read_lines(args.labels, 'labels')
    if not label_names and not args.features:
        raise PredictError(
            f'{args.model} has no class names: give --labels FILE, or --zero-shot-labels FILE for a CLIP model '
            f'(whose {model.num_classes}-d output is an embedding), or extract embeddings with --features FILE')
    if label_names and len(label_names) != model.num_classes:
        raise PredictError(f'{len(label_names)} label names for a model with {model.num_classes} classes')
    label_names = label_names or None
    return model, label_names, _feature_space(args, model, label_names)


def _open_outputs(args, model, space: Optional[str], rank: int) -> Tuple[Optional[JsonlOutput],
                                                                         Optional[FeatureOutput]]:
    """--output and --features, each checked against what is already there (files, parts, settings)."""
    for path in (args.output, args.features):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    output = JsonlOutput(args.output, rank) if args.output else None
    features = FeatureOutput(args.features, rank) if args.features else None
    if features is not None and _feature_dim(model, space):
        features.check(_feature_dim(model, space), args.checkpoint or args.model)
    if args.output:  # after the outputs' own checks: a file that is not ours gets no record
        check_settings(args.output, '--output', _settings(args, 'output'), write=rank == 0)
    if args.features:
        check_settings(args.features, '--features', _settings(args, 'features', space), write=rank == 0)
    return output, features


def _pending(inputs: Sequence[str], output: Optional[JsonlOutput], features: Optional[FeatureOutput]) -> List[str]:
    """The inputs a run still has to do: not in --output, or (readable and) without a vector in --features."""
    def needed(path: str) -> bool:
        if output is not None and path not in output.done:
            return True
        if features is not None and path not in features.done:  # a video known to be unreadable has no vector
            return output is None or 'error' not in output.done[path]
        return output is None and features is None
    return [p for p in inputs if needed(p)]


def _loader(args, model, videos: Sequence[str]) -> torch.utils.data.DataLoader:
    """The evaluation views of ``videos`` (training's evaluation dataset), batched."""
    transform = create_video_transform(timm.data.resolve_input_data_config(model), is_training=False,
                                       num_crops=args.crops)
    dataset = VideoPaths(videos, transform=transform, num_frames=args.num_frames or model.num_frames,
                         num_clips=args.clips, stride=args.stride, backend=args.backend,
                         frame_counts=manifest_frame_counts(args.videos))
    return torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate_videos,
        pin_memory=next(model.parameters()).device.type == 'cuda', persistent_workers=False)


def _predict(args, model, videos: Sequence[str], label_names: Optional[List[str]], space: Optional[str],
             output: Optional[JsonlOutput], features: Optional[FeatureOutput], progress: Progress) -> Dict:
    """Run the model over ``videos``; each finished video goes to the outputs (or stdout) in order within its batch.

    Returns the counts: predicted, failed (unreadable now) and the seconds spent, of them waiting for the loader.
    """
    device = next(model.parameters()).device
    classify = label_names is not None
    step = _step(model, classify, space)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.amp else nullcontext
    top_k = min(args.top_k, len(label_names)) if classify else 0
    picture_folders = _picture_folders(videos) if args.show_merges else {}
    position = {p: i for i, p in enumerate(videos)}
    predicted = failed = 0
    start = waited_from = time.monotonic()
    waited = 0.0  # seconds the loop waited for the loader: ~0 when the model is the bottleneck
    for batch in _loader(args, model, videos):
        waited += time.monotonic() - waited_from
        results = []  # (position, record, vector)
        for path, reason in batch.bad:
            progress.write(f'{PROG}: error: {path}: {reason}')
            results.append((position.get(path, -1), dict(path=path, error=reason), None))
        if len(batch.clips):
            with torch.no_grad(), autocast():
                outputs = average_over_views(step, batch.clips.to(device, non_blocking=True))
            vectors = outputs[-1] if space else None
            if features is not None:
                features.check(vectors.shape[1], args.checkpoint or args.model)
            if classify:
                top = outputs[0].topk(top_k)
                values, indices = top.values.tolist(), top.indices.tolist()
            for j, index in enumerate(batch.labels.tolist()):
                record = dict(path=videos[index])
                if classify:
                    record['predictions'] = [dict(label=label_names[i], probability=round(p, 6))
                                             for p, i in zip(values[j], indices[j])]
                results.append((index, record, vectors[j] if space else None))
                if args.show_merges:
                    write_merges(model, batch.clips[j, 0], Path(args.show_merges) / picture_folders[videos[index]],
                                 title=videos[index])
            predicted += len(batch.clips)
        for _, record, vector in sorted(results, key=lambda r: r[0]):
            if output is not None:
                output.write(record)
            elif args.json or classify:
                _print_record(record, args.json)
            if features is not None:
                features.write(record['path'], vector)
        failed += len(batch.bad)
        progress.update(len(results), failed=len(batch.bad))
        waited_from = time.monotonic()
    return dict(predicted=predicted, failed=failed, seconds=time.monotonic() - start, data_wait_seconds=waited)


def run(args: argparse.Namespace) -> dict:
    """Predict (and embed) the videos of ``args``; returns the summary (counts and seconds).

    Under torchrun each rank does its share of the videos not yet done; rank 0 then merges the outputs.
    """
    inputs = expand_inputs(args.videos)
    device = timm.utils.init_distributed_device(args)
    rank, world = args.rank, args.world_size
    group = None
    if args.distributed:  # control messages on a CPU group that waits as long as the slowest rank needs
        group = torch.distributed.new_group(backend='gloo', timeout=timedelta(days=7))
    prefix = f'rank {rank}: ' if args.distributed else ''

    model, label_names, space = _model_and_labels(args)
    output, features = _open_outputs(args, model, space, rank)
    stores = [s for s in (output, features) if s is not None]
    if group is not None:
        torch.distributed.barrier(group=group)  # every rank has read what is done before any writes
    pending = _pending(inputs, output, features)
    mine = pending[rank::world]
    if stores:
        print(f'{PROG}: {prefix}{len(mine)} videos to do, {len(inputs) - len(pending)} of {len(inputs)} already done',
              file=sys.stderr, flush=True)

    model.to(device).eval()
    for store in stores:
        store.open()
    # with outputs in files, a bar (rank 0, on a terminal) or plain lines; without, stdout is the progress
    progress = Progress(PROG, len(mine), args.log_interval if stores else float('inf'), bar=rank == 0 and bool(stores),
                        prefix=prefix)
    try:
        counts = _predict(args, model, mine, label_names, space, output, features, progress)
    finally:
        progress.close()
        for store in stores:
            store.close()

    totals = torch.tensor([counts['predicted'], counts['failed']], dtype=torch.float64)
    if group is not None:
        torch.distributed.all_reduce(totals, group=group)
    predicted, failed = (int(c) for c in totals.tolist())
    failed_total = failed
    if rank == 0:
        if output is not None:
            records = output.merge(inputs)
            failed_total = sum('error' in records.get(p, {}) for p in inputs)  # earlier runs' too
        if features is not None:
            features.merge(inputs)
    if group is not None:
        status = torch.tensor([failed_total if rank == 0 else 0], dtype=torch.float64)
        torch.distributed.all_reduce(status, group=group)  # after the merge: rank 0 is done with the files
        failed_total = int(status.item())
        torch.distributed.destroy_process_group()
    summary = dict(inputs=len(inputs), predicted=predicted, skipped=len(inputs) - len(pending), failed=failed,
                   failed_total=failed_total, seconds=counts['seconds'], data_wait_seconds=counts['data_wait_seconds'],
                   rank=rank, world_size=world)
    if rank == 0 and stores:
        _print_summary(args, summary)
    return summary


def _print_summary(args, summary: dict) -> None:
    where = f' (listed in {args.output} with their errors)' if args.output else ''
    seconds, world = summary['seconds'], summary['world_size']
    rate = summary['predicted'] / seconds if seconds > 0 else 0.0
    print(f'{PROG}: {summary["predicted"]} videos predicted, {summary["skipped"]} skipped as already done, '
          f'{summary["failed_total"]} failed{where}, {seconds:.1f} s ({rate:.1f} videos/s'
          f'{f" on this rank of {world}" if world > 1 else ""})', file=sys.stderr, flush=True)


@command(PROG)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    summary = run(args)
    return 1 if summary['failed_total'] else 0


if __name__ == '__main__':
    sys.exit(main())
