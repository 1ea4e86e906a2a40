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

This module is the command: layouts to jobs, the worker pool, the manifest and report. One
video's re-encoding is ``timm_inti.video.transcode``; the annotation files and the manifest
are read and named by ``timm_inti.video.formats``.
"""
import argparse
import dataclasses
import errno
import json
import math
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .cli import CommandError, UsageError, add_debug_argument, command, non_negative_int, positive_int
from .files import write_csv, write_json
from .outputs import Progress
from .video.decode import VideoDecodeError, probe
from .video.formats import (
    LIST_COLUMNS,
    MANIFEST,
    MANIFEST_COLUMNS,
    is_kinetics_csv,
    is_video,
    read_annotations,
    read_kinetics_csv,
    read_ssv2_labels,
    read_ssv2_list,
)
from .video.transcode import (
    DEFAULT_CRF,
    DEFAULT_GOP,
    DEFAULT_SHORT_SIDE,
    DEFAULT_TUNE,
    X264_PRESETS,
    X264_TUNES,
    Options,
    prepare_video,
)

__all__ = ['Job', 'find_jobs', 'main']

PROG = 'timm-inti-prepare'
SPLIT_NAMES = ('train', 'val', 'validation', 'test')
REPORT = 'prepare_report.csv'
SETTINGS = 'prepare_settings.json'
LOCK = '.prepare.lock'
MIN_FPS = 0.01  # --max-fps below this is a typo (a frame every 100 s), and rounds to a rate of 0


def _say(message: str) -> None:
    """A report line on stderr (stdout stays free for pipes)."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Job:
    """One source video to prepare: ``source`` (a path, or None when the annotation names a missing file)."""
    source: Optional[str]
    output: str  # relative to DST, '/'-separated
    label: str
    split: str
    missing: str = ''  # why there is no source, for the report


# ---------------------------------------------------------------------------------------- layouts

def _source_files(root: Path, exclude: Optional[Path] = None) -> List[Path]:
    """Every non-hidden file under root (not under ``exclude``, nor in an earlier output), in a stable order.

    Every file, not only videos: a file in a class folder that is not a video is reported, not passed over.
    """
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
    for path in _source_files(src, exclude=dst):
        parts = path.relative_to(src).parts
        if len(parts) >= 3 and parts[0].lower() in SPLIT_NAMES:
            split, label = parts[0], parts[1]
        elif len(parts) >= 2:
            split, label = '', parts[0]
        else:
            continue  # a file beside the class folders (a README, a list): not a sample
        jobs.append(Job(str(path), _output_name(path.relative_to(src).as_posix()), label, split))
    return jobs


def _index_by_stem(src: Path, dst: Path) -> Dict[str, Path]:
    index = {}
    for path in _source_files(src, exclude=dst):
        if is_video(path):
            index.setdefault(path.stem, path)
    return index


def _kinetics_jobs(src: Path, csv_file: Path, index: Dict[str, Path]) -> List[Job]:
    return [_indexed_job(src, index, video_id, label, csv_file.stem, csv_file)
            for video_id, label in read_kinetics_csv(csv_file)]


def _ssv2_jobs(src: Path, json_file: Path, index: Dict[str, Path]) -> List[Job]:
    labels_file = json_file.parent / 'labels.json'
    if not labels_file.is_file():
        raise UsageError(f'{json_file}: Something-Something v2 lists need labels.json beside them ({labels_file})')
    return [_indexed_job(src, index, video_id, label, json_file.stem, json_file)
            for video_id, label in read_ssv2_list(json_file, read_ssv2_labels(labels_file))]


def _list_jobs(src: Path, list_file: Path) -> List[Job]:
    split = list_file.stem
    jobs = []
    for path, label in read_annotations(list_file):
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
        found += [p for p in sorted(folder.glob('*.csv')) if is_kinetics_csv(p)]
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
            index = index if index is not None else _index_by_stem(src, dst)
            jobs += _ssv2_jobs(src, ann, index)
            layouts.add('Something-Something v2')
        elif is_kinetics_csv(ann):
            index = index if index is not None else _index_by_stem(src, dst)
            jobs += _kinetics_jobs(src, ann, index)
            layouts.add('Kinetics')
        else:
            jobs += _list_jobs(src, ann)
            layouts.add('annotation lists')
    return jobs, ', '.join(sorted(layouts))


def _manifest_row(dst: Path, job: Job) -> Dict:
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
            if not is_video(job.source):
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
    import fcntl  # POSIX only: imported where the lock is taken
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
    progress = Progress(PROG, len(jobs))
    try:
        results = map(_worker, work) if pool is None else pool.imap_unordered(_worker, work, chunksize=1)
        for index, (row, reason, was_skipped) in results:
            job = jobs[index]
            if row is not None:
                rows.append(row)
                skipped += was_skipped
            else:
                failures.append(dict(path=job.source or job.output, label=job.label, split=job.split, reason=reason))
                progress.write(f'unreadable: {job.source or job.output}: {reason}')
            progress.update(failed=row is None)
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
