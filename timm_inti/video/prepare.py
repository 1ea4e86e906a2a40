""" Prepare a video dataset once, into a form that trains fast: ``timm-inti-prepare SRC DST``.

Every video is decoded, turned upright (display matrix), scaled to a short side of
``--short-side`` pixels (never enlarged), optionally capped to ``--max-fps`` frames per
second, and re-encoded with libx264 as MP4 with a keyframe every ``--gop`` frames and the
index at the front (``faststart``), tuned for fast decoding (x264 ``--tune fastdecode``:
CAVLC entropy coding, no deblocking filter). Audio is dropped. The defaults come from the storage
measurements of ``benchmarks/pipeline.py`` (see docs/data.md, "Feeding the model"): a
prepared 360p-1080p source decodes several times faster, and short groups of pictures
let segment sampling seek instead of decoding every frame in between.

Source layouts (``--annotations`` names the annotation files; without it they are looked
for in SRC, SRC/annotations and SRC/labels):

  * class folders: ``SRC/<class>/<video>`` or ``SRC/<split>/<class>/<video>``
    (split one of train, val, validation, test): the output keeps the folders;
  * annotation lists: ``path label`` lines or CSVs with ``path`` and ``label`` columns,
    paths relative to SRC;
  * Kinetics-400/600/700: the annotation CSVs (``label,youtube_id,time_start,time_end,split``)
    with videos named ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` anywhere under SRC;
  * Something-Something v2: ``labels.json`` and the ``train.json`` / ``validation.json``
    lists, videos ``{id}.webm`` anywhere under SRC.

The output keeps each video's path relative to SRC (extension ``.mp4``) and writes

  * ``DST/manifest.csv``: path (relative to DST), label, split, frames, fps, width, height
    of every prepared video; the datasets read frame counts from it instead of opening files;
  * for annotation layouts, one list per annotation file, ``DST/<name>.csv`` with the same
    columns, ready for ``timm-inti-train --data-dir DST --train-split train.csv --val-split ...``;
  * ``DST/prepare_report.csv``: every source that could not be prepared, with its reason;
  * ``DST/prepare_settings.json``: the settings, which a rerun must repeat to resume.

Runs in parallel over ``-j`` processes with a progress bar (plain log lines when stderr is
not a terminal). It can be stopped at any time and run again: finished videos are skipped,
and each is written under a temporary name and renamed when complete, so a final name
never holds half a video. An unreadable source is reported and counted, never fatal; the
exit status is 1 for them only with ``--strict``.

Every write stays inside DST: a listed path (relative, with ``..``, or absolute) must lie in
SRC, DST may not lie inside SRC (and an earlier output found inside SRC is never taken for
sources), and a lock file (``DST/.prepare.lock``) refuses a second run into DST while one
runs. A source whose timestamps are broken but whose frames decode is written in decode
order with clean constant-rate timestamps (``timm_inti.video.decode``).
"""
import argparse
import csv
import dataclasses
import errno
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..cli import CommandError, UsageError, add_debug_argument, command, non_negative_int, positive_int
from ..files import atomic_path, write_csv, write_json
from .decode import VIDEO_EXTENSIONS, VideoDecodeError

__all__ = ['Job', 'find_jobs', 'prepare_video', 'read_manifest', 'main', 'DEFAULT_SHORT_SIDE', 'DEFAULT_GOP']



def _say(message: str) -> None:
    """A progress or report line on stderr (stdout stays free for pipes)."""
    print(message, file=sys.stderr, flush=True)


PROG = 'timm-inti-prepare'
# chosen from benchmarks/pipeline.py's storage table (docs/data.md, "Feeding the model")
DEFAULT_SHORT_SIDE = 256
DEFAULT_GOP = 16
DEFAULT_CRF = 23
DEFAULT_TUNE = 'fastdecode'  # CAVLC, no deblocking: measured 2-4x faster to decode for 10% more disk
SPLIT_NAMES = ('train', 'val', 'validation', 'test')
MANIFEST = 'manifest.csv'
REPORT = 'prepare_report.csv'
SETTINGS = 'prepare_settings.json'
LOCK = '.prepare.lock'
MANIFEST_COLUMNS = ['path', 'label', 'split', 'frames', 'fps', 'width', 'height']
X264_PRESETS = ('ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow',
                'placebo')
X264_TUNES = ('film', 'animation', 'grain', 'stillimage', 'psnr', 'ssim', 'fastdecode', 'zerolatency')
MIN_FPS = 0.01  # --max-fps below this is a typo (a frame every 100 s), and rounds to a rate of 0
LIST_COLUMNS = ['path', 'label', 'frames', 'fps', 'width', 'height']


@dataclass(frozen=True)
class Job:
    """One source video to prepare: ``source`` (a path, or None when the annotation names a missing file)."""
    source: Optional[str]
    output: str  # relative to DST, '/'-separated
    label: str
    split: str
    missing: str = ''  # why there is no source, for the report


# ---------------------------------------------------------------------------------------- layouts

def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _walk(root: Path, exclude: Optional[Path] = None) -> List[Path]:
    """Every non-hidden file under root (not under ``exclude``, nor in an earlier output), in a stable order."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.') and Path(folder) / d != exclude
                         and not (Path(folder) / d / SETTINGS).is_file())
        files += [Path(folder) / n for n in sorted(names) if not n.startswith('.')]
    return files


def _output_name(relative: str) -> str:
    return str(Path(relative).with_suffix('.mp4').as_posix())


def _indexed_job(src: Path, index: Dict[str, Path], video_id: str, label: str, split: str, listed_in: Path) -> Job:
    """The job for a video an annotation file names by id (Kinetics, SSv2), found in ``index`` or reported missing."""
    source = index.get(video_id)
    if source is None:
        return Job(None, f'{split}/{video_id}.mp4', label, split,
                   f'{listed_in.name}: no video {video_id}.* under {src}')
    return Job(str(source), _output_name(source.relative_to(src).as_posix()), label, split)


def _folder_jobs(src: Path, dst: Path) -> List[Job]:
    jobs = []
    for path in _walk(src, exclude=dst):
        parts = path.relative_to(src).parts
        if len(parts) >= 3 and parts[0].lower() in SPLIT_NAMES:
            split, label = parts[0], parts[1]
        elif len(parts) >= 2:
            split, label = '', parts[0]
        else:
            continue  # a file beside the class folders (a README, a list): not a sample
        jobs.append(Job(str(path), _output_name(path.relative_to(src).as_posix()), label, split))
    return jobs


def _read_list(list_file: Path) -> List[Tuple[str, str]]:
    from .datasets import _read_annotations
    return _read_annotations(str(list_file))


def _index_by_stem(src: Path, dst: Path) -> Dict[str, Path]:
    index = {}
    for path in _walk(src, exclude=dst):
        if _is_video(path):
            index.setdefault(path.stem, path)
    return index


def _kinetics_rows(csv_file: Path) -> List[Dict[str, str]]:
    with open(csv_file, newline='') as f:
        return list(csv.DictReader(f))


def _is_kinetics_csv(path: Path) -> bool:
    if path.suffix.lower() != '.csv':
        return False
    with open(path, newline='') as f:
        header = next(csv.reader(f), [])
    return {'youtube_id', 'time_start', 'time_end'} <= {h.strip() for h in header}


def _kinetics_jobs(src: Path, csv_file: Path, index: Dict[str, Path]) -> List[Job]:
    split = csv_file.stem
    jobs = []
    for row in _kinetics_rows(csv_file):
        label = (row.get('label') or '').strip()
        if not label:  # the test lists of Kinetics-600/700 carry no labels
            continue
        try:
            name = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        except (KeyError, ValueError):
            raise UsageError(f'{csv_file}: a Kinetics row needs youtube_id, time_start and time_end, got {row}')
        jobs.append(_indexed_job(src, index, name, label, split, csv_file))
    return jobs


def _ssv2_label(entry: Dict) -> str:
    return entry['template'].replace('[', '').replace(']', '')


def _read_json(path: Path, kind: type, what: str):
    """A JSON file whose top level is ``kind``, or a UsageError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f'{path}: not {what} ({e})') from None
    if not isinstance(data, kind):
        raise UsageError(f'{path}: not {what} (the file holds a JSON {type(data).__name__})')
    return data


def _ssv2_jobs(src: Path, json_file: Path, classes: Dict[str, str], index: Dict[str, Path]) -> List[Job]:
    split = json_file.stem
    entries = _read_json(json_file, list, 'a Something-Something v2 list of videos (a JSON list of '
                                          '{"id", "template", ...} objects)')
    jobs = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or 'id' not in entry:
            raise UsageError(f'{json_file}: entry {number} is not a video ({{"id", "template", ...}}), '
                             f'got {json.dumps(entry)[:80]}')
        if 'template' not in entry:  # test lists carry no labels
            continue
        label = _ssv2_label(entry)
        if label not in classes:
            raise UsageError(f'{json_file}: video {entry["id"]}: label {label!r} is not in labels.json')
        jobs.append(_indexed_job(src, index, str(entry['id']), label, split, json_file))
    return jobs


def _list_jobs(src: Path, list_file: Path) -> List[Job]:
    split = list_file.stem
    jobs = []
    for path, label in _read_list(list_file):
        source = Path(os.path.normpath(src / path))  # an absolute path stays itself; '..' is resolved
        try:
            relative = source.relative_to(src)
        except ValueError:
            raise UsageError(f'{list_file}: {path} lies outside the source folder {src}: the output keeps each '
                             f'video\'s path below SRC, so a listed video must lie in SRC') from None
        jobs.append(Job(str(source), _output_name(relative.as_posix()), label, split))
    return jobs


def _find_annotations(src: Path) -> List[Path]:
    """Annotation files in SRC, SRC/annotations or SRC/labels: SSv2 JSON lists, Kinetics CSVs."""
    found = []
    for folder in (src, src / 'annotations', src / 'labels'):
        if not folder.is_dir():
            continue
        if (folder / 'labels.json').is_file():
            found += [folder / f'{s}.json' for s in ('train', 'validation') if (folder / f'{s}.json').is_file()]
        found += [p for p in sorted(folder.glob('*.csv')) if _is_kinetics_csv(p)]
    return found


def find_jobs(src: Path, dst: Path, annotations: Sequence[Path] = ()) -> Tuple[List[Job], str]:
    """The videos of a source dataset and the layout they were found in."""
    annotations = list(annotations) or _find_annotations(src)
    if not annotations:
        return _folder_jobs(src, dst), 'class folders'
    jobs, layouts, index = [], set(), None
    for ann in annotations:
        if not ann.is_file():
            raise UsageError(f'annotation file {ann} does not exist')
        if ann.suffix.lower() == '.json':
            labels_file = ann.parent / 'labels.json'
            if not labels_file.is_file():
                raise UsageError(f'{ann}: Something-Something v2 lists need labels.json beside them ({labels_file})')
            index = index if index is not None else _index_by_stem(src, dst)
            jobs += _ssv2_jobs(src, ann, _read_json(labels_file, dict, 'a Something-Something v2 labels.json '
                                                    '(a JSON object {"class name": "index"})'), index)
            layouts.add('Something-Something v2')
        elif _is_kinetics_csv(ann):
            index = index if index is not None else _index_by_stem(src, dst)
            jobs += _kinetics_jobs(src, ann, index)
            layouts.add('Kinetics')
        else:
            jobs += _list_jobs(src, ann)
            layouts.add('annotation lists')
    return jobs, ', '.join(sorted(layouts))


# ------------------------------------------------------------------------------------------ encoding

@dataclass(frozen=True)
class Options:
    short_side: int = DEFAULT_SHORT_SIDE
    max_fps: float = 0.0
    gop: int = DEFAULT_GOP
    crf: int = DEFAULT_CRF
    preset: str = 'veryfast'
    tune: str = DEFAULT_TUNE


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _target_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
    """Displayed (width, height) at the given short side (never enlarged), even for yuv420p."""
    if short_side and min(width, height) > short_side:
        scale = short_side / min(width, height)
        width, height = width * scale, height * scale
    return _even(width), _even(height)


def prepare_video(source: str, output: Path, options: Options = Options()) -> None:
    """Re-encode one video upright at the options' size, rate and keyframe interval (raises VideoDecodeError).

    The output has clean constant-rate timestamps. A source whose timestamps are missing,
    repeated or out of order (``timm_inti.video.decode`` reads those in decode order) is
    written in decode order at its codec's frame rate.
    """
    from .decode import _check_path, _UnusableTimestamps

    source = _check_path(source)
    try:
        _encode(source, output, options, in_order=False)
    except _UnusableTimestamps:  # nothing of the first attempt is left: atomic_path removed its temporary
        _encode(source, output, options, in_order=True)


def _encode(source: str, output: Path, options: Options, in_order: bool) -> None:
    import av
    import numpy as np

    from .decode import _checked, _displayed, _first_frames, _in_order_info, _open_pyav, _pyav_info

    if in_order:
        container, stream = _open_pyav(source)
        with container:
            info = _in_order_info(source, container, stream)
    container, stream = _open_pyav(source)
    with container:
        if not in_order:
            info = _pyav_info(source, container, stream)
        time_base, start = Fraction(stream.time_base or 1), stream.start_time or 0
        source_rate = Fraction(info.fps).limit_denominator(1001)
        rate = source_rate
        if options.max_fps and rate > options.max_fps:
            rate = Fraction(options.max_fps).limit_denominator(1001)
        count = 0
        try:
            frames = container.decode(stream)
            if in_order:  # the k-th decoded frame is shown at k / rate
                timed = ((k / source_rate, frame) for k, frame in enumerate(frames))
            else:
                first, rest = _first_frames(source, _checked(frames),
                                            lambda frame: round((frame.pts - start) * time_base * source_rate))
                timed = (((frame.pts - start) * time_base, frame) for frame in itertools.chain([first], rest))
            with atomic_path(output) as tmp, av.open(str(tmp), 'w', format='mp4',
                                                     options={'movflags': '+faststart'}) as out:
                video = None
                for seconds, frame in timed:
                    if video is None:  # the first frame carries the display matrix
                        info = _displayed(info, frame.rotation or 0)
                        width, height = _target_size(info.width, info.height, options.short_side)
                        x264 = {'g': str(options.gop), 'keyint_min': str(min(options.gop, 25)),
                                'crf': str(options.crf), 'preset': options.preset, 'threads': '1'}
                        if options.tune:
                            x264['tune'] = options.tune
                        video = out.add_stream('libx264', rate=rate, options=x264)
                        video.width, video.height, video.pix_fmt = width, height, 'yuv420p'
                        video.codec_context.time_base = 1 / rate
                    # constant rate out: frame n shows the source at n / rate (drops frames above the cap)
                    n = math.floor(seconds * rate + Fraction(1, 2) - Fraction(1, 10 ** 6))  # nearest, ties earlier
                    if n < count:
                        continue
                    if info.rotation:
                        pixels = frame.to_ndarray(format='rgb24', width=height if info.rotation % 180 else width,
                                                  height=width if info.rotation % 180 else height,
                                                  interpolation='BICUBIC')
                        picture = av.VideoFrame.from_ndarray(
                            np.ascontiguousarray(np.rot90(pixels, info.rotation // 90)), format='rgb24')
                    else:
                        picture = frame.reformat(width=width, height=height, format='yuv420p', interpolation='BICUBIC')
                    picture.time_base = video.codec_context.time_base
                    while count <= n:  # a gap in a variable-rate source repeats the frame
                        picture.pts = count
                        for packet in video.encode(picture):
                            out.mux(packet)
                        count += 1
                if video is None:
                    raise VideoDecodeError(source, 'the video stream holds no decodable frame')
                expected = round(info.num_frames * rate / source_rate)
                if count < 0.9 * expected:
                    raise VideoDecodeError(source, f'truncated or damaged: only {count} of {expected} frames decode')
                for packet in video.encode():
                    out.mux(packet)
        except av.FFmpegError as e:
            raise VideoDecodeError(source, f'truncated or damaged video data ({e.strerror or e})') from e


def _manifest_row(dst: Path, job: Job) -> Dict:
    from .decode import probe
    info = probe(dst / job.output)
    return dict(path=job.output, label=job.label, split=job.split, frames=info.num_frames, fps=round(info.fps, 6),
                width=info.width, height=info.height)


def _remove_stale_temporaries(output: Path) -> None:
    """Temporaries a killed run left beside ``output`` (``atomic_path`` names them ``.NAME.*.tmp``)."""
    for stale in output.parent.glob(f'.{output.name}.*.tmp'):
        stale.unlink(missing_ok=True)


def _run_job(job: Job, dst: Path, options: Options):
    """(manifest row, None, skipped) or (None, reason, False); never raises for a bad source."""
    if job.source is None:
        return None, job.missing, False
    output = dst / job.output
    try:
        skipped = output.is_file()
        if not skipped:
            if not _is_video(Path(job.source)):
                raise VideoDecodeError(job.source, f'not a video file (extension {Path(job.source).suffix or "none"})')
            output.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(output)
            prepare_video(job.source, output, options)
        return _manifest_row(dst, job), None, skipped
    except VideoDecodeError as e:
        return None, e.reason, False
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # every later file would fail too
            raise
        return None, f'{type(e).__name__}: {e}', False


def _worker(args):
    index, job, dst, options = args
    return index, _run_job(job, dst, options)


# ------------------------------------------------------------------------------------------ manifests

def read_manifest(path, root=None) -> Dict[str, Dict]:
    """``manifest.csv`` (or a prepared list) as {absolute video path: row}, numbers parsed.

    Paths in the file are relative to ``root`` (default: the manifest's folder).
    """
    path = Path(path)
    root = path.parent if root is None else root
    rows = {}
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        missing = {'path', 'frames', 'fps', 'width', 'height'} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f'{path}: not a manifest, the columns {sorted(missing)} are missing')
        for row in reader:
            try:
                parsed = dict(row, frames=int(row['frames']), fps=float(row['fps']), width=int(row['width']),
                              height=int(row['height']))
            except (TypeError, ValueError):
                raise ValueError(f'{path}: line {reader.line_num}: bad frames, fps, width or height in {row}')
            rows[os.path.abspath(os.path.join(root, row['path']))] = parsed
    return rows


class _Progress:
    """A tqdm bar with ETA on a terminal; a log line every ``interval`` seconds otherwise."""

    def __init__(self, total: int, interval: float = 30.0):
        self.total, self.done, self.failed, self.interval = total, 0, 0, interval
        self.start = self.last = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc='prepare', unit='video', dynamic_ncols=True)

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(unreadable=self.failed, refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= self.interval or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else math.inf
            eta_text = time.strftime('%H:%M:%S', time.gmtime(eta)) if math.isfinite(eta) else '?'
            _say(f'{self.done}/{self.total} videos ({100 * self.done / max(self.total, 1):.1f}%), '
                         f'{rate:.2f} videos/s, ETA {eta_text}, {self.failed} unreadable')

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _max_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not (value == 0 or (math.isfinite(value) and value >= MIN_FPS)):
        raise argparse.ArgumentTypeError(f'{text} is not 0 (keep the rate) or a rate of at least {MIN_FPS} frames '
                                         f'per second')
    return value


def _crf(text: str) -> int:
    value = non_negative_int(text)
    if value > 51:
        raise argparse.ArgumentTypeError(f'{text} is not an x264 quality (0-51; lower is better, 23 typical)')
    return value


def _tune(text: str) -> str:
    unknown = [t for t in text.split(',') if t not in X264_TUNES] if text != 'none' else []
    if unknown:
        raise argparse.ArgumentTypeError(f'{text!r} is not an x264 tune (one or more of {", ".join(X264_TUNES)}, '
                                         f'comma-separated, or none)')
    return text


def _lock(dst: Path):
    """Hold DST's lock file for the run; another prepare into DST is refused while it runs (released at exit)."""
    import fcntl
    handle = open(dst / LOCK, 'a+')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or '?'
        handle.close()
        raise UsageError(f'another {PROG} (process {pid}) is preparing into {dst}: wait for it to finish, or use '
                         f'another output folder') from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split('\n\n')[0].strip(' .') + '.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('src', type=Path, metavar='SRC', help='the source dataset folder')
    parser.add_argument('dst', type=Path, metavar='DST', help='the output folder (created; a rerun resumes)')
    parser.add_argument('--annotations', type=Path, nargs='+', default=(),
                        help='annotation files: "path label" lists, CSVs, Kinetics CSVs, SSv2 train/validation '
                             'JSON (default: labels.json + JSON lists or Kinetics CSVs in SRC, SRC/annotations or '
                             'SRC/labels, else class folders)')
    parser.add_argument('--short-side', type=non_negative_int, default=DEFAULT_SHORT_SIDE,
                        help='scale videos down to this short side in pixels (0: keep the size)')
    parser.add_argument('--max-fps', type=_max_fps, default=0.0,
                        help=f'cap the frame rate (0: keep it; else at least {MIN_FPS})')
    parser.add_argument('--gop', type=positive_int, default=DEFAULT_GOP,
                        help='keyframe interval in frames (1: every frame a keyframe)')
    parser.add_argument('--crf', type=_crf, default=DEFAULT_CRF,
                        help='x264 quality, 0-51 (lower: better, larger)')
    parser.add_argument('--preset', default='veryfast', choices=X264_PRESETS,
                        help='x264 preset (speed of preparing against file size)')
    parser.add_argument('--tune', type=_tune, default=DEFAULT_TUNE,
                        help='x264 tune; fastdecode makes files that decode several times faster for about 10%% '
                             'more disk; "none" for x264\'s default coding (CABAC, deblocking)')
    parser.add_argument('-j', '--workers', type=positive_int, default=os.cpu_count() or 1,
                        help='processes preparing videos in parallel')
    parser.add_argument('--strict', action='store_true', help='exit with status 1 when any source was unreadable')
    add_debug_argument(parser)
    return parser


@command(PROG)
def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    src, dst = args.src.resolve(), args.dst.resolve()
    if not src.is_dir():
        raise UsageError(f'source {src} is not a folder')
    if src == dst:
        raise UsageError(f'the output {dst} must not be the source folder')
    if src in dst.parents:
        raise UsageError(f'the output {dst} lies inside the source {src}: a later run would take its videos for '
                         f'sources; put it beside SRC')
    jobs, layout = find_jobs(src, dst, [a.resolve() for a in args.annotations])
    if not jobs:
        raise UsageError(f'no videos found in {src} (layout: {layout})')
    outputs = {}
    for job in jobs:
        before = outputs.get(job.output)
        if before is not None and before.source != job.source:
            raise UsageError(f'{job.source} and {before.source} would both become {dst / job.output}')
        if before is not None and (before.label, before.split) != (job.label, job.split):
            raise UsageError(f'{job.source or job.output} is listed twice: as {before.label!r} in '
                             f'{before.split or "the class folders"} and as {job.label!r} in '
                             f'{job.split or "the class folders"}; a video has one label and one split')
        outputs[job.output] = job
    jobs = list(outputs.values())
    for job in jobs:  # the one check that every write stays in DST, whatever the layout made of a path
        if dst not in (dst / job.output).resolve().parents:
            raise UsageError(f'{job.source}: its output {dst / job.output} would lie outside {dst}')
    dst.mkdir(parents=True, exist_ok=True)
    lock = _lock(dst)
    try:
        return _prepare_all(args, src, dst, jobs, layout)
    finally:
        lock.close()


def _prepare_all(args, src: Path, dst: Path, jobs: List[Job], layout: str) -> int:
    """Prepare every job into DST (its lock held), write the manifest, lists and report."""
    options = Options(args.short_side, args.max_fps, args.gop, args.crf, args.preset,
                      '' if args.tune == 'none' else args.tune)
    settings = dst / SETTINGS
    if settings.is_file():  # a rerun resumes: it must not mix videos prepared two ways
        before = json.loads(settings.read_text())
        if before != dataclasses.asdict(options):
            changed = ', '.join(f'{k} {before.get(k)!r} -> {v!r}' for k, v in dataclasses.asdict(options).items()
                                if before.get(k) != v)
            raise UsageError(f'{dst} was prepared with other settings ({changed}): use a new output folder, '
                             f'or the same settings to resume')
    else:
        write_json(settings, dataclasses.asdict(options))
    _say(f'{PROG}: {len(jobs)} videos ({layout}) from {src} to {dst}: short side {options.short_side or "kept"}, '
                 f'keyframe every {options.gop} frames, {args.workers} processes')

    rows, failures, skipped = [], [], 0
    work = [(i, job, dst, options) for i, job in enumerate(jobs)]
    pool = None
    if args.workers > 1 and len(jobs) > 1:  # before the progress bar's thread starts: fork copies no thread
        methods = multiprocessing.get_all_start_methods()
        pool = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn').Pool(min(args.workers, len(jobs)))
    progress = _Progress(len(jobs))
    try:
        results = map(_worker, work) if pool is None else pool.imap_unordered(_worker, work, chunksize=1)
        for index, (row, reason, was_skipped) in results:
            job = jobs[index]
            if row is not None:
                rows.append(row)
                skipped += was_skipped
            else:
                failures.append(dict(path=job.source or job.output, label=job.label, split=job.split, reason=reason))
                _say(f'unreadable: {job.source or job.output}: {reason}')
            progress.update(row is None)
        if pool is not None:
            pool.close()
            pool.join()
    except BaseException:
        if pool is not None:
            pool.terminate()  # workers stopped mid-write leave their temporaries: removed below
            pool.join()
            for parent in sorted({(dst / job.output).parent for job in jobs}):
                for stale in parent.glob('.*.mp4.*.tmp'):
                    stale.unlink(missing_ok=True)
        raise
    finally:
        progress.close()

    rows.sort(key=lambda r: (r['split'], r['path']))
    write_csv(dst / MANIFEST, rows, MANIFEST_COLUMNS)
    failures.sort(key=lambda r: r['path'])
    write_csv(dst / REPORT, failures, ['path', 'label', 'split', 'reason'])
    if args.annotations or layout != 'class folders':
        for split in sorted({job.split for job in jobs}):
            write_csv(dst / f'{split}.csv', [{k: r[k] for k in LIST_COLUMNS} for r in rows if r['split'] == split],
                      LIST_COLUMNS)
    _say(f'{PROG}: {len(rows)} videos ready ({skipped} already done), {len(failures)} unreadable '
                 f'(listed in {dst / REPORT}); manifest {dst / MANIFEST}')
    if failures and args.strict:
        raise CommandError(f'{len(failures)} of {len(jobs)} source videos could not be prepared: see {dst / REPORT}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
