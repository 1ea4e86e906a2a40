""" The data formats: every file that names videos, read in one place.

  * video files: ``VIDEO_EXTENSIONS``, ``is_video``, ``find_videos`` (a folder, recursively);
  * ``timm-inti-prepare``'s manifest (``manifest.csv``) and prepared lists: ``read_manifest``,
    ``frame_counts``, ``manifest_frame_counts``;
  * annotation lists: ``path label`` lines or a CSV with ``path`` and ``label`` columns
    (mmaction/Kinetics style; ``read_annotations``);
  * path lists for prediction: one path per line, a CSV with a ``path`` column or JSON lines
    with a ``path`` field (``read_path_list``);
  * Kinetics-400/600/700 annotation CSVs (``label,youtube_id,time_start,time_end,split``):
    ``is_kinetics_csv``, ``read_kinetics_csv``;
  * Something-Something v2: ``labels.json`` and the ``train.json`` / ``validation.json`` lists:
    ``read_ssv2_labels``, ``read_ssv2_list``;
  * class names, one per line in class-index order (``--labels``, ``--zero-shot-labels``):
    ``read_label_file``.

Only the standard library, and nothing else of the package, so that the datasets, the
``timm-inti-prepare`` command and the ``timm-inti-predict`` command all read a format the
same way. A file that is not what it should be is a ``ValueError`` naming the file (and the
line), which the commands print as one line.
"""
import csv
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Tuple, Union

__all__ = [
    'VIDEO_EXTENSIONS', 'MANIFEST', 'MANIFEST_COLUMNS', 'LIST_COLUMNS', 'is_video', 'find_videos', 'read_manifest',
    'is_manifest', 'csv_columns', 'frame_counts', 'manifest_frame_counts', 'read_annotations', 'read_path_list',
    'is_kinetics_csv', 'read_kinetics_csv', 'read_ssv2_labels', 'read_ssv2_list', 'read_label_file',
]

PathLike = Union[str, os.PathLike]

VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.mpg', '.mpeg', '.wmv', '.flv', '.gif')

MANIFEST = 'manifest.csv'
MANIFEST_COLUMNS = ['path', 'label', 'split', 'frames', 'fps', 'width', 'height']
LIST_COLUMNS = ['path', 'label', 'frames', 'fps', 'width', 'height']  # a prepared annotation list
_NUMBER_COLUMNS = {'frames': int, 'fps': float, 'width': int, 'height': int}
KINETICS_COLUMNS = {'youtube_id', 'time_start', 'time_end'}


# ------------------------------------------------------------------------------------------ video files

def is_video(path: PathLike) -> bool:
    """Whether the file name has a video extension (any case)."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def find_videos(folder: PathLike) -> List[str]:
    """Every video file under ``folder`` (links followed), folders and files in sorted order."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in sorted(files) if is_video(f))
    return found


# ------------------------------------------------------------------------------------------ manifests

def csv_columns(path: PathLike) -> List[str]:
    """The header of a CSV file."""
    with open(path, newline='') as f:
        return csv.DictReader(f).fieldnames or []


def is_manifest(path: PathLike) -> bool:
    """Whether ``path`` is a CSV with the frame counts and sizes of ``timm-inti-prepare`` (manifest or list)."""
    return str(path).lower().endswith('.csv') and os.path.isfile(path) and set(_NUMBER_COLUMNS) | {'path'} <= set(
        csv_columns(path))


def read_manifest(path: PathLike, root: PathLike = None) -> Dict[str, Dict]:
    """``manifest.csv`` (or a prepared list) as {absolute video path: row}, numbers parsed.

    Paths in the file are relative to ``root`` (default: the manifest's folder).
    """
    path = Path(path)
    root = path.parent if root is None else root
    rows = {}
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        missing = ({'path'} | set(_NUMBER_COLUMNS)) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f'{path}: not a manifest, the columns {sorted(missing)} are missing')
        for row in reader:
            try:
                parsed = dict(row, **{k: kind(row[k]) for k, kind in _NUMBER_COLUMNS.items()})
            except (TypeError, ValueError):
                raise ValueError(f'{path}: line {reader.line_num}: bad frames, fps, width or height in {row}') from None
            rows[os.path.abspath(os.path.join(root, row['path']))] = parsed
    return rows


def frame_counts(manifest: PathLike, root: PathLike = None) -> Dict[str, int]:
    """{absolute video path: frame count} of a manifest or prepared list (``read_manifest``'s checks), so that
    prepared videos are not opened to learn their length."""
    return {path: row['frames'] for path, row in read_manifest(manifest, root).items()}


def manifest_frame_counts(items: Iterable[PathLike]) -> Dict[str, int]:
    """``frame_counts`` of the manifests among ``items`` (predict's inputs): a manifest or prepared list CSV, or a
    folder holding ``manifest.csv``; anything else is passed over."""
    counts = {}
    for item in items:
        manifest = os.path.join(item, MANIFEST) if os.path.isdir(item) else item
        if is_manifest(manifest):
            counts.update(frame_counts(manifest))
    return counts


# ------------------------------------------------------------------------------------------ lists

def _text_lines(path: PathLike, what: str) -> Iterable[Tuple[int, str]]:
    """(line number, stripped line) of a text file, blank lines and ``#`` comments left out."""
    try:
        with open(path) as f:
            return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip() and not line.strip()[0] == '#']
    except UnicodeDecodeError as e:
        raise ValueError(f'{path}: not {what} ({e.reason} at byte {e.start})') from e


def _csv_rows(path: PathLike, required: Tuple[str, ...], what: str) -> List[Dict[str, str]]:
    """The rows of a CSV ``what`` (e.g. 'annotation list') that must have the ``required`` columns."""
    try:
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if not set(required) <= set(fields):
                columns = ' and '.join(f'"{c}"' for c in required)
                columns = f'{columns} columns' if len(required) > 1 else f'a {columns} column'
                raise ValueError(f'{path}: a CSV {what} needs {columns}, got {fields}')
            return list(reader)
    except UnicodeDecodeError as e:
        raise ValueError(f'{path}: not a text {what} ({e.reason} at byte {e.start})') from e


def read_annotations(list_file: PathLike) -> List[Tuple[str, str]]:
    """(path, label) rows of an annotation list: ``path label`` lines (a path may hold spaces; the label is the
    last word) or a CSV with ``path`` and ``label`` columns. Paths are as written (relative to the data root)."""
    if str(list_file).lower().endswith('.csv'):
        return [(row['path'], row['label']) for row in
                _csv_rows(list_file, ('path', 'label'), 'annotation list')]
    rows = []
    for line_no, line in _text_lines(list_file, 'a text annotation list'):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f'{list_file}:{line_no}: expected "path label", got {line!r}')
        rows.append((parts[0], parts[1]))
    return rows


def read_path_list(list_file: PathLike) -> List[str]:
    """Video paths of a list file: one per line, a CSV with a ``path`` column (a manifest), or JSON lines with a
    ``path`` field. Relative paths are relative to the list's folder. An empty list is a ValueError."""
    list_file = str(list_file)
    lower = list_file.lower()
    if lower.endswith('.csv'):
        paths = [row['path'] for row in _csv_rows(list_file, ('path',), 'list')]
    elif lower.endswith('.jsonl'):
        paths = []
        for line_no, line in _text_lines(list_file, 'a text list of videos'):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f'{list_file}:{line_no}: not a JSON line') from None
            if not (isinstance(row, dict) and isinstance(row.get('path'), str)):
                raise ValueError(f'{list_file}:{line_no}: expected an object with a "path", got {line[:80]!r}')
            paths.append(row['path'])
    else:
        paths = [line for _, line in _text_lines(list_file, 'a text list of videos')]
    if not paths:
        raise ValueError(f'{list_file}: the list holds no videos')
    base = os.path.dirname(list_file)
    return [p if os.path.isabs(p) else os.path.join(base, p) for p in paths]


# ------------------------------------------------------------------------------------------ Kinetics

def is_kinetics_csv(path: PathLike) -> bool:
    """Whether ``path`` is a Kinetics annotation CSV (``youtube_id``, ``time_start``, ``time_end`` columns)."""
    if Path(path).suffix.lower() != '.csv':
        return False
    with open(path, newline='') as f:
        header = next(csv.reader(f), [])
    return KINETICS_COLUMNS <= {h.strip() for h in header}


def read_kinetics_csv(csv_file: PathLike) -> List[Tuple[str, str]]:
    """(video id, label) of the labelled rows of a Kinetics CSV; the id is the released file name without its
    extension, ``{youtube_id}_{time_start:06d}_{time_end:06d}``. The unlabelled test rows are left out."""
    videos = []
    with open(csv_file, newline='') as f:
        for row in csv.DictReader(f):
            label = (row.get('label') or '').strip()
            if not label:  # the test lists of Kinetics-600/700 carry no labels
                continue
            try:
                video_id = (f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_"
                            f"{int(float(row['time_end'])):06d}")
            except (KeyError, TypeError, ValueError):
                raise ValueError(f'{csv_file}: a Kinetics row needs youtube_id, time_start and time_end, '
                                 f'got {row}') from None
            videos.append((video_id, label))
    return videos


# ------------------------------------------------------------------------------------------ Something-Something v2

def _read_json(path: PathLike, kind: type, what: str):
    """A JSON file whose top level is ``kind``, or a ValueError naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f'{path}: not {what} ({e})') from None
    if not isinstance(data, kind):
        raise ValueError(f'{path}: not {what} (the file holds a JSON {type(data).__name__})')
    return data


def read_ssv2_labels(path: PathLike) -> Dict[str, str]:
    """``labels.json``: {class name: index as text}."""
    return _read_json(path, dict, 'a Something-Something v2 labels.json (a JSON object {"class name": "index"})')


def read_ssv2_list(json_file: PathLike, classes: Dict[str, str]) -> List[Tuple[str, str]]:
    """(video id, label) of the labelled entries of a ``train.json`` / ``validation.json`` list; the label is the
    entry's template without brackets and must be one of ``classes``. Test lists (no template) give nothing."""
    entries = _read_json(json_file, list, 'a Something-Something v2 list of videos (a JSON list of '
                                          '{"id", "template", ...} objects)')
    videos = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or 'id' not in entry:
            raise ValueError(f'{json_file}: entry {number} is not a video ({{"id", "template", ...}}), '
                             f'got {json.dumps(entry)[:80]}')
        if 'template' not in entry:  # test lists carry no labels
            continue
        label = entry['template'].replace('[', '').replace(']', '')
        if label not in classes:
            raise ValueError(f'{json_file}: video {entry["id"]}: label {label!r} is not in labels.json')
        videos.append((str(entry['id']), label))
    return videos


# ------------------------------------------------------------------------------------------ class names

def read_label_file(path: PathLike, what: str = 'labels') -> List[str]:
    """Class names, one per line (blank lines skipped), in class-index order.

    An unreadable file is an ``OSError``; a binary or empty one a ``ValueError``; each names the file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            names = [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f'the {what} file {path} is not a text file ({e.reason} at byte {e.start})') from e
    except OSError as e:
        raise OSError(e.errno, f'cannot read the {what} file {path}: {e.strerror}', str(path)) from e
    if not names:
        raise ValueError(f'the {what} file {path} holds no names')
    return names
