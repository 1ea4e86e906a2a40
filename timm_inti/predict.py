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
import json
import logging
import os
import sys
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import timm
import timm.utils
import torch

from .cli import CommandError, UsageError, add_debug_argument, command, non_negative_int, positive_float, positive_int

__all__ = ['main', 'parse_args', 'run', 'build_model', 'expand_inputs', 'manifest_frame_counts', 'read_records']

PROG = 'timm-inti-predict'
LIST_SUFFIXES = ('.txt', '.csv', '.jsonl', '.lst')
FEATURE_SUFFIXES = ('.npy', '.safetensors')


class PredictError(UsageError):
    """A problem with the command's setup (model, checkpoint, labels): one line, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('videos', nargs='+',
                        help='video files, folders, glob patterns or list files (.txt, .csv, .jsonl)')
    group = parser.add_argument_group('Model')
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
    from timm_inti.checkpoints import read_label_file
    try:
        return read_label_file(path, what)
    except (OSError, ValueError) as e:
        raise PredictError(str(e)) from e


def build_model(args):
    """The model, its label names (or None), from --model / --checkpoint / --pretrained-path."""
    from timm_inti import CheckpointError
    from timm_inti.checkpoints import create_model, create_model_from_checkpoint
    from timm_inti.hub import OFFLINE_DOC, hub_unreachable
    kwargs = dict(getattr(args, 'model_kwargs', None) or {})
    kwargs.update({} if args.num_frames is None else dict(num_frames=args.num_frames))
    pretrained_path = getattr(args, 'pretrained_path', None)
    if pretrained_path:
        kwargs['pretrained_cfg_overlay'] = dict(file=pretrained_path)
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

def _is_video(name: str) -> bool:
    from timm_inti.video import VIDEO_EXTENSIONS
    return name.lower().endswith(VIDEO_EXTENSIONS)


def _walk(folder: str) -> List[str]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in sorted(files) if _is_video(f))
    return found


def _read_list(list_file: str) -> List[str]:
    """Paths from a list file: one per line, a CSV with a ``path`` column, or JSON lines with ``path``."""
    import csv
    base = os.path.dirname(list_file)
    try:
        with open(list_file, newline='') as f:
            if list_file.lower().endswith('.csv'):
                reader = csv.DictReader(f)
                if 'path' not in (reader.fieldnames or []):
                    raise UsageError(f'{list_file}: a CSV list needs a "path" column, got {reader.fieldnames}')
                paths = [row['path'] for row in reader]
            elif list_file.lower().endswith('.jsonl'):
                paths = []
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        raise UsageError(f'{list_file}:{line_no}: not a JSON line') from None
                    if not (isinstance(row, dict) and isinstance(row.get('path'), str)):
                        raise UsageError(f'{list_file}:{line_no}: expected an object with a "path", '
                                         f'got {line.strip()[:80]!r}')
                    paths.append(row['path'])
            else:
                paths = [line.strip() for line in f if line.strip() and not line.lstrip().startswith('#')]
    except UnicodeDecodeError as e:
        raise UsageError(f'{list_file}: not a text list of videos ({e.reason} at byte {e.start})') from e
    if not paths:
        raise UsageError(f'{list_file}: the list holds no videos')
    paths = [p if os.path.isabs(p) else os.path.join(base, p) for p in paths]
    if not any(_is_video(p) or os.path.exists(p) for p in paths):
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
            found = _walk(item)
            if not found:
                raise UsageError(f'no video files under {item}')
        elif os.path.isfile(item) and item.lower().endswith(LIST_SUFFIXES):
            found = _read_list(item)
        elif os.path.exists(item) or not glob.has_magic(item):
            found = [item]
        else:
            found = []
            for match in sorted(glob.glob(item, recursive=True)):
                found.extend(_walk(match) if os.path.isdir(match) else [match] if _is_video(match) else [])
            if not found:
                raise UsageError(f'no video files match {item}')
        videos.extend(found)
    return list(dict.fromkeys(videos))


def manifest_frame_counts(items: Iterable[str]) -> Dict[str, int]:
    """{absolute path: frame count} from the ``timm-inti-prepare`` manifests among the inputs (a manifest
    CSV, or a folder holding ``manifest.csv``), so that prepared videos are not probed for their length."""
    import csv

    from timm_inti.video.prepare import MANIFEST, read_manifest
    counts = {}
    for item in items:
        manifest = os.path.join(item, MANIFEST) if os.path.isdir(item) else item
        if not (manifest.lower().endswith('.csv') and os.path.isfile(manifest)):
            continue
        with open(manifest, newline='') as f:
            columns = set(csv.DictReader(f).fieldnames or [])
        if {'path', 'frames', 'fps', 'width', 'height'} <= columns:
            counts.update({path: row['frames'] for path, row in read_manifest(manifest).items()})
    return counts


# ---------------------------------------------------------------------------------------------
# resumable outputs

def read_records(path) -> List[dict]:
    """The complete JSON lines of a file (none if it does not exist); a torn last line is left out."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        return []
    records = []
    for line in data.split(b'\n')[:-1]:  # the part after the last newline is torn (or empty)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get('path'), str):
            records.append(record)
    return records


def _check_ours(path: Path, flag: str) -> None:
    """Refuse to merge into (and so replace) an existing file that this command did not write."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, 'rb') as f:
        head = f.read(1 << 16).split(b'\n')
    lines = [line for line in head[:-1] if line.strip()] or head[:1]
    try:
        ours = all(isinstance(json.loads(line).get('path'), str) for line in lines[:10])
    except (ValueError, AttributeError):
        ours = False
    if not ours:
        raise UsageError(f'{flag} {path} exists and is not a list of results of this command (JSON lines with a '
                         f'"path"): it would be replaced; name another file')


def _parts(path: Path, pattern: str) -> List[Path]:
    return sorted(path.parent.glob(glob.escape(path.name) + pattern))


class _Appender:
    """Appends JSON lines to a part file owned by this process, each flushed as it is written.

    A line torn by a kill (bytes after the last newline) is cut off first.
    """

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            with open(path, 'rb+') as f:
                data = f.read()
                f.truncate(data.rfind(b'\n') + 1)
        self.file = open(path, 'a')

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + '\n')
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class JsonlOutput:
    """``--output``: records in ``PATH.part-RANK`` while running, merged into PATH in input order at the end."""

    def __init__(self, path: str, rank: int):
        self.path = Path(path)
        self.part = Path(f'{path}.part-{rank}')
        _check_ours(self.path, '--output')
        self.done = {r['path']: r for r in self._all()}
        self.appender = None

    def _all(self) -> List[dict]:
        return [r for p in [self.path] + _parts(self.path, '.part-*') for r in read_records(p)]

    def open(self) -> None:
        self.appender = _Appender(self.part)

    def write(self, record: dict) -> None:
        if record['path'] not in self.done:
            self.appender.write(record)

    def close(self) -> None:
        if self.appender is not None:
            self.appender.close()

    def merge(self, inputs: Sequence[str]) -> Dict[str, dict]:
        """Write PATH with every record, the inputs first in input order; remove the parts."""
        from timm_inti.files import write_atomic
        records: Dict[str, dict] = {}
        for record in self._all():
            records.setdefault(record['path'], record)
        ordered = [records[p] for p in inputs if p in records]
        inputs_set = set(inputs)
        ordered += [r for p, r in records.items() if p not in inputs_set]
        write_atomic(self.path, lambda f: f.writelines(json.dumps(r) + '\n' for r in ordered))
        for part in _parts(self.path, '.part-*'):
            part.unlink()
        return records


class FeatureOutput:
    """``--features``: vectors appended per video to a part file per process, one file in input order at the end.

    Each vector is appended to ``PATH.part-RANK.f32`` (raw float32 rows) and flushed, then
    named in the process's part index (``PATH.part-RANK.jsonl``, lines ``{"path", "row",
    "dim"}``): a kill loses at most the videos in flight, and bytes of a row that the index
    does not name (cut by a kill) are cut off before appending again. Unreadable videos have
    no row (``--output`` lists them); without ``--output`` a rerun tries them again.
    """

    def __init__(self, path: str, rank: int):
        self.path = Path(path)
        self.index = self.path.with_suffix('.index.jsonl')
        self.rank = rank
        self.part_index = Path(f'{path}.part-{rank}.jsonl')
        self.part_data = Path(f'{path}.part-{rank}.f32')
        final = self._final_index()
        self.dim = self._load_final().shape[1] if final else None
        self.dim = self._check_dim(self.dim, self._part_records(), f'{self.path}\'s parts')
        self.done = {r['path'] for r in final} | {r['path'] for r in self._part_records()}
        self.appender = self.data = None
        self.rows = 0

    def _check_dim(self, dim: Optional[int], records: Sequence[dict], what: str) -> Optional[int]:
        for r in records:
            if dim is None:
                dim = r['dim']
            elif r['dim'] != dim:
                raise UsageError(f'--features {self.path}: {what} hold vectors of {r["dim"]} and {dim} numbers: '
                                 f'remove them and run again')
        return dim

    def _part_records(self, rank='*') -> List[dict]:
        """The rows of the part indexes whose bytes are all in their data file."""
        records = []
        for part in _parts(self.path, f'.part-{rank}.jsonl'):
            data = part.with_suffix('.f32')
            size = data.stat().st_size if data.is_file() else 0
            records += [dict(r, data=data) for r in read_records(part)
                        if isinstance(r.get('row'), int) and isinstance(r.get('dim'), int)
                        and (r['row'] + 1) * r['dim'] * 4 <= size]
        return records

    def _final_index(self) -> List[dict]:
        _check_ours(self.index, '--features index')
        records = read_records(self.index)
        if records or self.path.exists():
            rows = self._load_final().shape[0] if self.path.exists() else 0
            if rows != len(records):
                from timm_inti.cli import CommandError
                raise CommandError(
                    f'{self.path} has {rows} rows but {self.index} names {len(records)} videos (a merge was '
                    f'interrupted?): remove both and run again')
        return records

    def _load_final(self):
        import numpy as np
        try:
            if self.path.suffix == '.npy':
                array = np.load(self.path, mmap_mode='r')
            else:
                from safetensors.numpy import load_file
                array = load_file(self.path)['features']
        except Exception as e:
            raise UsageError(f'--features {self.path} exists and is not a features file of this command '
                             f'({type(e).__name__}: {e}): it would be replaced; name another file') from e
        if array.ndim != 2:
            raise UsageError(f'--features {self.path} exists and holds a {array.ndim}-d array, not one vector per '
                             f'video: it would be replaced; name another file')
        return array

    def open(self) -> None:
        mine = self._part_records(self.rank)
        self.rows = 1 + max([r['row'] for r in mine] or [-1])
        self.appender = _Appender(self.part_index)
        self.data = open(self.part_data, 'ab')
        self.data.truncate(self.rows * (self.dim or 0) * 4)  # a row cut by a kill, not in the index

    def check(self, dim: int, model: str) -> None:
        """Refuse vectors of another width than those already in the file (another model's)."""
        if self.dim is not None and dim != self.dim:
            raise UsageError(f'--features {self.path} holds {self.dim}-d vectors of an earlier run, {model} gives '
                             f'{dim}-d ones: name another file (or remove it and its parts to start anew)')
        self.dim = dim

    def write(self, path: str, vector: Optional[torch.Tensor]) -> None:
        if path in self.done or vector is None:
            return
        import numpy as np
        self.data.write(np.ascontiguousarray(vector.float().cpu().numpy(), dtype=np.float32).tobytes())
        self.data.flush()  # the bytes first, then the line that names them
        self.appender.write(dict(path=path, row=self.rows, dim=int(vector.numel())))
        self.rows += 1

    def close(self) -> None:
        if self.appender is not None:
            self.appender.close()
            self.data.close()

    def merge(self, inputs: Sequence[str]) -> int:
        """Write PATH and its index: the inputs' vectors in input order, then any earlier others; remove the parts."""
        import numpy as np

        from timm_inti.files import atomic_path, write_atomic
        sources = {}  # path -> (array, row)
        final = self._final_index()
        if final:
            array = self._load_final()
            for row, r in enumerate(final):
                sources.setdefault(r['path'], (array, row))
        parts = {}
        for r in self._part_records():
            if r['path'] in sources:
                continue
            if r['data'] not in parts:
                parts[r['data']] = np.memmap(r['data'], dtype=np.float32, mode='r').reshape(-1, r['dim'])
            sources[r['path']] = (parts[r['data']], r['row'])
        inputs_set = set(inputs)
        order = [p for p in inputs if p in sources] + [p for p in sources if p not in inputs_set]
        dim = next(iter(sources.values()))[0].shape[1] if sources else 0
        with atomic_path(self.path) as tmp:
            if self.path.suffix == '.npy':
                out = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.float32, shape=(len(order), dim))
                for i, p in enumerate(order):
                    array, row = sources[p]
                    out[i] = array[row]
                out.flush()
                del out
            else:
                from safetensors.numpy import save_file
                out = (np.stack([sources[p][0][sources[p][1]] for p in order]) if order
                       else np.zeros((0, dim), np.float32))
                save_file({'features': np.ascontiguousarray(out, dtype=np.float32)}, str(tmp),
                          metadata={'index': self.index.name})
        write_atomic(self.index, lambda f: f.writelines(json.dumps(dict(path=p)) + '\n' for p in order))
        del parts, sources
        legacy = _parts(self.path, '.part-*-*.npy')  # shards of versions before per-video parts: recomputed
        for part in _parts(self.path, '.part-*.f32') + _parts(self.path, '.part-*.jsonl') + legacy:
            part.unlink()
        return len(order)


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


def _check_settings(path: str, flag: str, settings: dict, write: bool) -> None:
    """Refuse to add to an output made with other settings; record them beside an output that has none.

    ``PATH.settings.json`` holds them; a rerun with the same settings resumes, any other is
    refused naming what changed (its answers would sit beside the earlier ones as "already done").
    """
    from timm_inti.files import write_json
    record = Path(f'{path}.settings.json')
    results = Path(path).exists() or bool(_parts(Path(path), '.part-*'))
    if record.is_file() and results:
        try:
            before = json.loads(record.read_text())
        except ValueError:
            before = None
        if before != settings:
            if not isinstance(before, dict):
                raise UsageError(f'{record} is not a settings record of this command: remove it, or name another '
                                 f'{flag} file')
            changed = ', '.join(f'{k} {before.get(k)!r} -> {v!r}' for k, v in settings.items() if before.get(k) != v)
            raise UsageError(f'{flag} {path} holds results of other settings ({changed}): name another file, or run '
                             f'with the same settings to resume')
    elif write:  # a new output (or one from before settings were recorded): these are its settings
        write_json(record, settings)


def _picture_folders(inputs: Sequence[str]) -> Dict[str, str]:
    """--show-merges folder names: a video's file name, with a digest of its path where two share a name."""
    import hashlib
    names: Dict[str, int] = {}
    for path in inputs:
        names[Path(path).name] = names.get(Path(path).name, 0) + 1
    return {p: Path(p).name if names[Path(p).name] == 1 else
            f'{Path(p).name}-{hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]}' for p in inputs}


# ---------------------------------------------------------------------------------------------
# progress

class Progress:
    """A bar with videos/s and ETA on a terminal; otherwise a plain line every ``interval`` seconds."""

    def __init__(self, total: int, interval: float, bar: bool, prefix: str = ''):
        from tqdm.auto import tqdm
        self.total, self.interval, self.prefix = total, interval, prefix
        self.bar = tqdm(total=total, unit='video', dynamic_ncols=True) if bar and sys.stderr.isatty() else None
        self.count = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.count / max(now - self.start, 1e-9)
            eta = (self.total - self.count) / rate if rate > 0 else float('inf')
            self.write(f'{PROG}: {self.prefix}{self.count}/{self.total} videos, {rate:.1f} videos/s, '
                       f'ETA {timedelta(seconds=round(eta)) if eta != float("inf") else "?"}')

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# the run

def _feature_space(args, model, label_names) -> Optional[str]:
    from timm_inti.zero_shot import ZeroShotHead
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
    from timm_inti.zero_shot import ZeroShotHead
    if space == 'pre-logits':
        return getattr(model, 'head_hidden_size', None) or getattr(model, 'num_features', None)
    projection = model.head.projection if isinstance(model.head, ZeroShotHead) else model.head
    return getattr(projection, 'out_features', None)


def _step(model, classify: bool, space: Optional[str]):
    """(N, C, T, H, W) clips -> a tuple: class probabilities (if classifying), embeddings (if extracting)."""
    from timm_inti.evaluate import probabilities
    from timm_inti.zero_shot import ZeroShotHead
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
    if args.pretrained_path and args.checkpoint:
        raise UsageError(f'--pretrained-path {args.pretrained_path} and --checkpoint {args.checkpoint} both give the '
                         f'weights: leave one out')
    for flag, path in (('--output', args.output), ('--features', args.features)):
        if path and os.path.abspath(path) in {os.path.abspath(v) for v in args.videos if os.path.isfile(v)}:
            raise UsageError(f'{flag} {path} is also an input (a list of the videos): the answers would replace it; '
                             f'name another file')
    if args.output and args.features and os.path.abspath(args.output) in (
            os.path.abspath(args.features), os.path.abspath(Path(args.features).with_suffix('.index.jsonl'))):
        raise UsageError(f'--output {args.output} would overwrite the features or their index')
    return args


def run(args: argparse.Namespace) -> dict:
    """Predict (and embed) the videos of ``args``; returns the summary (counts and seconds)."""
    import timm_inti  # noqa: F401  (registers the models)
    from timm_inti.evaluate import average_over_views
    from timm_inti.video import VideoPaths, collate_videos, create_video_transform

    inputs = expand_inputs(args.videos)
    device = timm.utils.init_distributed_device(args)
    rank, world = args.rank, args.world_size
    group = None
    if args.distributed:  # control messages on a CPU group that waits as long as the slowest rank needs
        group = torch.distributed.new_group(backend='gloo', timeout=timedelta(days=7))
    prefix = f'rank {rank}: ' if args.distributed else ''

    model, label_names = build_model(args)
    if args.show_merges and not getattr(model, 'inti', None):
        raise UsageError(f'--show-merges: {args.checkpoint or args.model} has no InTI layers, so nothing is merged')
    if args.zero_shot_labels:
        from timm_inti.zero_shot import create_text_tower, set_zero_shot_head, text_tower_for
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
            from timm_inti.hub import OFFLINE_DOC, hub_unreachable
            if not hub_unreachable(e):
                raise
            raise CommandError(
                f'text tower {shown}: its weights are not in the Hugging Face cache and the Hub cannot be reached '
                f'(HF_HUB_OFFLINE=1 or no network): give a local copy with --text-tower {name}:FILE (an open_clip '
                f'checkpoint) or --text-tower local-dir:DIR (see {OFFLINE_DOC})') from e
        except RuntimeError as e:  # open_clip's word for an unknown model name or missing weights
            raise UsageError(f'text tower {shown}: {e}') from e
        set_zero_shot_head(model, label_names, clip_model, tokenizer)  # once: the head scores every video
        del clip_model
    if args.labels:
        label_names = _read_lines(args.labels, 'labels')
    classify = bool(label_names)
    if not classify and not args.features:
        raise PredictError(
            f'{args.model} has no class names: give --labels FILE, or --zero-shot-labels FILE for a CLIP model '
            f'(whose {model.num_classes}-d output is an embedding), or extract embeddings with --features FILE')
    if classify and len(label_names) != model.num_classes:
        raise PredictError(f'{len(label_names)} label names for a model with {model.num_classes} classes')
    space = _feature_space(args, model, label_names if classify else None)

    for path in (args.output, args.features):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture_folders = _picture_folders(inputs) if args.show_merges else {}
    output = JsonlOutput(args.output, rank) if args.output else None
    features = FeatureOutput(args.features, rank) if args.features else None
    if features is not None and _feature_dim(model, space):
        features.check(_feature_dim(model, space), args.checkpoint or args.model)
    if args.output:  # after the outputs' own checks: a file that is not ours gets no record
        _check_settings(args.output, '--output', _settings(args, 'output'), write=rank == 0)
    if args.features:
        _check_settings(args.features, '--features', _settings(args, 'features', space), write=rank == 0)
    if group is not None:
        torch.distributed.barrier(group=group)  # every rank has read what is done before any writes
    stores = [s for s in (output, features) if s is not None]

    def needed(path: str) -> bool:
        if output is not None and path not in output.done:
            return True
        if features is not None and path not in features.done:  # a video known to be unreadable has no vector
            return output is None or 'error' not in output.done[path]
        return not stores
    pending = [p for p in inputs if needed(p)]
    mine = pending[rank::world]
    for store in stores:
        store.open()

    model.to(device).eval()
    num_frames = args.num_frames or model.num_frames
    transform = create_video_transform(timm.data.resolve_input_data_config(model), is_training=False,
                                       num_crops=args.crops)
    dataset = VideoPaths(mine, transform=transform, num_frames=num_frames, num_clips=args.clips,
                         stride=args.stride, backend=args.backend, frame_counts=manifest_frame_counts(args.videos))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate_videos,
        pin_memory=device.type == 'cuda', persistent_workers=False)
    step = _step(model, classify, space)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.amp else nullcontext
    top_k = min(args.top_k, len(label_names)) if classify else 0

    if stores:
        print(f'{PROG}: {prefix}{len(mine)} videos to do, {len(inputs) - len(pending)} of {len(inputs)} already done',
              file=sys.stderr, flush=True)
    # with outputs in files, a bar (rank 0, on a terminal) or plain lines; without, stdout is the progress
    progress = Progress(len(mine), args.log_interval if stores else float('inf'), bar=rank == 0 and bool(stores),
                        prefix=prefix)
    failed_now: List[str] = []
    predicted = 0
    start = waited_from = time.monotonic()
    waited = 0.0  # seconds the loop waited for the loader: ~0 when the model is the bottleneck
    position = {p: i for i, p in enumerate(mine)}
    try:
        for batch in loader:
            waited += time.monotonic() - waited_from
            results = []  # (position, record, vector)
            for path, reason in batch.bad:
                progress.write(f'{PROG}: error: {path}: {reason}')
                failed_now.append(path)
                results.append((position.get(path, -1), dict(path=path, error=reason), None))
            if len(batch.clips):
                with torch.no_grad(), autocast():
                    outputs = average_over_views(step, batch.clips.to(device, non_blocking=True))
                probs = outputs[0] if classify else None
                vectors = outputs[-1] if space else None
                if features is not None:
                    features.check(vectors.shape[1], args.checkpoint or args.model)
                if classify:
                    top = probs.topk(top_k)
                    values, indices = top.values.tolist(), top.indices.tolist()
                for j, index in enumerate(batch.labels.tolist()):
                    record = dict(path=mine[index])
                    if classify:
                        record['predictions'] = [dict(label=label_names[i], probability=round(p, 6))
                                                 for p, i in zip(values[j], indices[j])]
                    results.append((index, record, vectors[j] if space else None))
                predicted += len(batch.clips)
                if args.show_merges:
                    from timm_inti.visualize import write_merges
                    for j, index in enumerate(batch.labels.tolist()):
                        write_merges(model, batch.clips[j, 0], Path(args.show_merges) / picture_folders[mine[index]],
                                     title=mine[index])
            for _, record, vector in sorted(results, key=lambda r: r[0]):
                if output is not None:
                    output.write(record)
                elif args.json or classify:
                    _print_record(record, args.json)
                if features is not None:
                    features.write(record['path'], vector)
            progress.update(len(results))
            waited_from = time.monotonic()
    finally:
        progress.close()
        for store in stores:
            store.close()
    seconds = time.monotonic() - start

    counts = torch.tensor([predicted, len(failed_now)], dtype=torch.float64)
    if group is not None:
        torch.distributed.all_reduce(counts, group=group)
    predicted, failed = (int(c) for c in counts.tolist())
    skipped = len(inputs) - len(pending)
    failed_paths = failed_now
    if rank == 0:
        if output is not None:
            records = output.merge(inputs)
            failed_paths = [p for p in inputs if 'error' in records.get(p, {})]
        if features is not None:
            features.merge(inputs)
    status = torch.tensor([len(failed_paths) if rank == 0 else 0], dtype=torch.float64)
    if group is not None:
        torch.distributed.all_reduce(status, group=group)  # after the merge: rank 0 is done with the files
        torch.distributed.destroy_process_group()
    summary = dict(inputs=len(inputs), predicted=predicted, skipped=skipped, failed=failed,
                   failed_total=int(status.item()) if output is not None else failed, seconds=seconds,
                   data_wait_seconds=waited, rank=rank, world_size=world)
    if rank == 0 and stores:
        where = f' (listed in {args.output} with their errors)' if output is not None else ''
        skip_note = f', {skipped} skipped as already done' if stores else ''
        rate = predicted / seconds if seconds > 0 else 0.0
        print(f'{PROG}: {predicted} videos predicted{skip_note}, {summary["failed_total"]} failed{where}, '
              f'{seconds:.1f} s ({rate:.1f} videos/s{f" on this rank of {world}" if world > 1 else ""})',
              file=sys.stderr, flush=True)
    return summary


@command(PROG)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    summary = run(args)
    return 1 if summary['failed_total'] else 0


if __name__ == '__main__':
    sys.exit(main())
