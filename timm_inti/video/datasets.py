""" Video classification datasets: class folders and annotation lists.

  * ``VideoFolder``: ``root/<class>/<video>`` as timm's image folders (timm's own folder
    walk, video extensions), classes in natural sort order;
  * ``VideoList``: an annotation list, either mmaction/Kinetics-style lines
    ``relative/path.mp4 label`` (label an index or a class name), or a CSV with ``path``
    and ``label`` columns. Paths are relative to ``root``.

  * ``VideoPaths``: plain video paths without labels (``timm-inti-predict``); an item's
    label is its position in the list.

An item is ``(clip, label, bad)``: a training ``clip`` is (C, T, H, W); an evaluation one
is always its views (V, C, T, H, W), V = ``num_clips`` temporal clips x ``num_crops`` spatial
crops, clip-major, V = 1 included, so a batch of them is (B, V, C, T, H, W);
``bad`` lists the ``(path, reason)`` of videos that could not be decoded on the way.
A video that cannot be decoded never raises inside a DataLoader worker. With
``bad_files='skip'`` its item has ``clip=None`` and ``collate_videos`` drops it from the
batch; with ``'replace'`` the next decodable video of the dataset stands in. The batch
carries the failures to the main process, where ``BadVideoLog`` reports each file once
and counts them.
"""
import logging
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from timm.data.readers.reader_image_folder import find_images_and_targets, natural_key

from .decode import VideoDecodeError, VideoInfo, read_frames
from .formats import MANIFEST, VIDEO_EXTENSIONS, csv_columns, frame_counts, read_annotations
from .sampling import sample_indices
from .transforms import create_video_transform

__all__ = [
    'VideoDataset', 'VideoFolder', 'VideoList', 'VideoPaths', 'VideoBatch', 'BadVideoLog', 'collate_videos',
    'create_video_datasets',
]

_logger = logging.getLogger(__name__)

BAD_FILE_POLICIES = ('skip', 'replace')
_MAX_REPLACEMENTS = 16


class VideoDataset(torch.utils.data.Dataset):
    """Labelled videos decoded, sampled and transformed into clips.

    Args:
        samples: (path, class index) pairs.
        classes: Class names, by index.
        transform: Decoded uint8 frames (T, H, W, 3) -> clip tensor (``create_video_transform``).
        num_frames: Frames per clip.
        train: Random sampling (one clip), or deterministic multi-clip evaluation sampling.
        num_clips: Temporal clips per video for evaluation.
        stride: Dense sampling with this frame stride; segment (TSN) sampling when None.
        bad_files: 'skip' or 'replace' a video that cannot be decoded.
        backend: Decoding backend ('pyav', 'torchcodec'; default: the first available).
        num_samples: Training only: clips per decoded video (repeated sampling): the item's clip is
            (num_samples, C, T, H, W), each with its own crop and flip and, unless
            ``shared_frames``, its own frames (own offsets in the segments, or own windows).
            Own frames cost a decode each where the reader seeks (short keyframe intervals);
            the open, the probe and any decoding of the frames in between are shared.
        shared_frames: The num_samples clips share one set of frames and differ in crop and
            flip only, as VideoMAE's repeated augmentation: one decode for all of them.
        frame_counts: {absolute path: frame count} from a ``timm-inti-prepare`` manifest.
    """

    def __init__(
            self,
            samples: Sequence[Tuple[str, int]],
            classes: Sequence[str],
            transform: Callable[[torch.Tensor], torch.Tensor],
            num_frames: int,
            train: bool,
            num_clips: int = 1,
            stride: Optional[int] = None,
            bad_files: str = 'skip',
            backend: Optional[str] = None,
            num_samples: int = 1,
            frame_counts: Optional[Dict[str, int]] = None,
            shared_frames: bool = False,
    ):
        if num_samples < 1 or (num_samples > 1 and not train):
            raise ValueError(f'num_samples (clips per video) must be positive and is for training, got {num_samples}')
        if bad_files not in BAD_FILE_POLICIES:
            raise ValueError(f'bad_files must be one of {BAD_FILE_POLICIES}, got {bad_files!r}')
        if train and num_clips != 1:
            raise ValueError('training samples one clip per video')
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform
        self.num_frames = num_frames
        self.train = train
        self.num_clips = num_clips
        self.stride = stride
        self.bad_files = bad_files
        self.backend = backend
        self.num_samples = num_samples
        self.shared_frames = shared_frames
        self.frame_counts = dict(frame_counts or {})

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> List[int]:
        return [label for _, label in self.samples]

    def _indices(self, info: VideoInfo) -> List[int]:
        if self.num_samples > 1:  # one decode, K clips (the reader decodes a repeated frame once)
            draws = 1 if self.shared_frames else self.num_samples
            clips = [sample_indices(info.num_frames, self.num_frames, True, stride=self.stride) for _ in range(draws)]
            return torch.cat(clips * (self.num_samples // draws)).tolist()
        indices = sample_indices(info.num_frames, self.num_frames, self.train, self.num_clips, self.stride)
        return indices.flatten().tolist()

    def load(self, path: str) -> torch.Tensor:
        """Decode, sample and transform one video: a training clip (C, T, H, W), K training clips
        (K, C, T, H, W) with ``num_samples`` K > 1, or evaluation views (V, C, T, H, W)
        (raises ``VideoDecodeError``)."""
        frames, _ = read_frames(path, self._indices, backend=self.backend,
                                num_frames=self.frame_counts.get(os.path.abspath(path)))
        if self.train and self.num_samples > 1:
            return torch.stack([self.transform(clip) for clip in frames.split(self.num_frames)])  # own crops
        if self.train:
            return self.transform(frames)
        # each temporal clip gives its crops (crops, C, T, H, W); clip-major
        return torch.cat([self.transform(clip) for clip in frames.split(self.num_frames)])

    def __getitem__(self, index: int):
        bad = []
        for attempt in range(_MAX_REPLACEMENTS if self.bad_files == 'replace' else 1):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                return self.load(path), label, tuple(bad)
            except VideoDecodeError as e:
                bad.append((e.path, e.reason))
        if self.bad_files == 'skip':
            return None, -1, tuple(bad)
        raise RuntimeError(f'{len(bad)} videos in a row could not be decoded, the first: {bad[0][0]}: {bad[0][1]}')


class VideoFolder(VideoDataset):
    """``root/<class>/<video>`` (any depth below the class folder), timm's image-folder layout for videos.

    ``class_to_idx`` fixes the class order (e.g. a validation folder takes the training one's).
    """

    def __init__(self, root: str, class_to_idx: Optional[Dict[str, int]] = None, **kwargs):
        if not os.path.isdir(root):
            raise FileNotFoundError(f'video folder {root} does not exist')
        files, _ = find_images_and_targets(root, types=VIDEO_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f'no videos ({", ".join(VIDEO_EXTENSIONS)}) in class folders under {root}')
        # the class is the folder right below root, however deep the video (timm's walk names it after the
        # innermost folder, which would merge root/a/part1 and root/b/part1); '' for a video in root itself
        names = [os.path.normpath(os.path.relpath(path, root)).split(os.sep) for path, _ in files]
        names = [parts[0] if len(parts) > 1 else '' for parts in names]
        found = {name: i for i, name in enumerate(sorted(set(names), key=natural_key))}
        samples = [(path, found[name]) for (path, _), name in zip(files, names)]
        if '' in found:
            loose = [os.path.basename(path) for path, target in samples if target == found['']]
            raise ValueError(f'{root} holds {_some(loose)} outside any class folder: move each into '
                             f'{root}/<class name>/')
        if class_to_idx is None:
            class_to_idx = found
        else:  # another split's classes, in its order
            name_of = {index: name for name, index in found.items()}
            unknown = sorted(set(found) - set(class_to_idx))
            if unknown:
                files = [path for path, target in samples if name_of[target] in unknown]
                known = _some(sorted(class_to_idx, key=class_to_idx.get), 'class', 'classes')
                raise ValueError(f'{root}: {_some(unknown, "class", "classes")} not among the {known} of training '
                                 f'({len(files)} videos, e.g. {files[0]}): a model cannot predict a class it was not '
                                 f'trained on')
            samples = [(path, class_to_idx[name_of[target]]) for path, target in samples]
        self.root = root
        self.class_to_idx = class_to_idx
        classes = sorted(class_to_idx, key=class_to_idx.get)
        for manifest in (os.path.join(root, MANIFEST), os.path.join(os.path.dirname(os.path.normpath(root)), MANIFEST)):
            if os.path.isfile(manifest) and 'frame_counts' not in kwargs:  # a timm-inti-prepare output
                kwargs['frame_counts'] = frame_counts(manifest)
                break
        super().__init__(samples, classes, **kwargs)


def _some(names: Sequence[str], one: str = 'video', many: str = 'videos', limit: int = 5) -> str:
    shown = ', '.join(names[:limit]) + (f' and {len(names) - limit} more' if len(names) > limit else '')
    return f'{len(names)} {one if len(names) == 1 else many} ({shown})'


class VideoList(VideoDataset):
    """An annotation list: lines ``path label`` or a CSV with ``path`` and ``label`` columns.

    Labels are class indices or class names. Names become classes in sorted order unless
    ``classes`` gives them; indices take their names from ``classes`` when given.
    """

    def __init__(self, list_file: str, root: str = '', classes: Optional[Sequence[str]] = None, **kwargs):
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f'annotation list {list_file} does not exist')
        rows = read_annotations(list_file)
        if not rows:
            raise ValueError(f'{list_file}: no annotations')
        labels = [label for _, label in rows]
        if all(label.lstrip('-').isdigit() for label in labels):
            targets = [int(label) for label in labels]
            classes = list(classes) if classes else [str(i) for i in range(max(targets) + 1)]
        else:
            classes = list(classes) if classes else sorted(set(labels))
            index = {name: i for i, name in enumerate(classes)}
            unknown = sorted(set(labels) - set(index))
            if unknown:
                raise ValueError(f'{list_file}: labels not among the classes: {", ".join(unknown[:5])}')
            targets = [index[label] for label in labels]
        if min(targets) < 0 or max(targets) >= len(classes):
            raise ValueError(f'{list_file}: class indices must lie in [0, {len(classes)}), '
                             f'got {min(targets)}..{max(targets)}')
        self.root = root
        samples = [(os.path.join(root, path), target) for (path, _), target in zip(rows, targets)]
        if 'frame_counts' not in kwargs and list_file.endswith('.csv') and 'frames' in csv_columns(list_file):
            kwargs['frame_counts'] = frame_counts(list_file, root)  # a timm-inti-prepare list
        super().__init__(samples, classes, **kwargs)


class VideoPaths(VideoDataset):
    """Video files without labels, for prediction: the label of item ``i`` is ``i``, its position.

    Evaluation sampling and views (``train=False``); an unreadable file is skipped
    (``clip=None``), so ``collate_videos`` drops it and the batch's ``bad`` names it. Over a
    collection any failure of one file counts as unreadable, so that one odd file never
    stops a run of millions.
    """

    def __init__(self, paths: Sequence[str], **kwargs):
        super().__init__([(str(p), i) for i, p in enumerate(paths)], classes=[], train=False, bad_files='skip',
                         **kwargs)

    def load(self, path: str) -> torch.Tensor:
        try:
            return super().load(path)
        except VideoDecodeError:
            raise
        except Exception as e:
            raise VideoDecodeError(path, f'cannot be read ({type(e).__name__}: {e})') from e


class VideoBatch(NamedTuple):
    clips: torch.Tensor  # training (B, C, T, H, W); evaluation views (B, V, C, T, H, W)
    labels: torch.Tensor  # (B,)
    bad: Tuple[Tuple[str, str], ...]  # (path, reason) of videos that could not be decoded


def collate_videos(items) -> VideoBatch:
    """Stack the decodable clips of a batch and gather the failures."""
    bad = tuple(b for _, _, item_bad in items for b in item_bad)
    good = [(clip, label) for clip, label, _ in items if clip is not None]
    if not good:
        return VideoBatch(torch.empty(0), torch.empty(0, dtype=torch.long), bad)
    clips, labels = zip(*good)
    return VideoBatch(torch.stack(clips), torch.tensor(labels, dtype=torch.long), bad)


class BadVideoLog:
    """Reports every video that could not be decoded once, with its reason, and counts them."""

    def __init__(self, logger: logging.Logger = _logger):
        self.reasons: Dict[str, str] = {}
        self.logger = logger

    def update(self, bad: Sequence[Tuple[str, str]]) -> None:
        for path, reason in bad:
            if path not in self.reasons:
                self.reasons[path] = reason
                self.logger.warning(f'unreadable video skipped: {path}: {reason}')

    def __len__(self) -> int:
        return len(self.reasons)

    def summary(self) -> str:
        return f'{len(self)} unreadable video{"s" if len(self) != 1 else ""}'


def _split_dataset(data_dir: str, split: str, classes: Optional[Sequence[str]] = None, **kwargs) -> VideoDataset:
    path = split if os.path.isabs(split) else os.path.join(data_dir or '', split)
    if os.path.isdir(path):
        class_to_idx = {name: i for i, name in enumerate(classes)} if classes else None
        return VideoFolder(path, class_to_idx=class_to_idx, **kwargs)
    if os.path.isfile(path):
        return VideoList(path, root=data_dir or os.path.dirname(path), classes=classes, **kwargs)
    raise FileNotFoundError(f'split {split!r}: {path} is neither a class folder nor an annotation list')


def create_video_datasets(
        data_dir: str,
        data_config: Dict,
        num_frames: int,
        train_split: str = 'train',
        val_split: str = 'val',
        test_clips: int = 1,
        test_crops: int = 1,
        stride: Optional[int] = None,
        bad_files: str = 'skip',
        eval_only: bool = False,
        backend: Optional[str] = None,
        classes: Optional[Sequence[str]] = None,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        num_samples: int = 1,
        shared_frames: bool = False,
        augmentation: Optional[Dict] = None,
) -> Tuple[Optional[VideoDataset], Optional[VideoDataset]]:
    """The training and validation datasets of a data folder, ready for a DataLoader with ``collate_videos``.

    Each split is a class folder (``data_dir/train/<class>/...``) or an annotation list
    (``data_dir/train.txt``, ``train.csv``, or an absolute path). The validation split
    takes the training split's classes. ``eval_only`` builds the validation split alone;
    an empty ``val_split`` builds none. ``bad_files`` is the training policy: evaluation
    always skips unreadable videos, since a stand-in would be counted twice in the metrics.
    ``classes`` (a model's class names, by index) labels the validation split when there is
    no training split. ``num_samples``: training clips per decoded video (repeated
    sampling; ``shared_frames``: the same frames, own crops). Videos prepared by
    ``timm-inti-prepare`` take their frame counts from its manifest. ``augmentation``: more
    training augmentation, ``create_video_transform``'s keywords (auto_augment, re_prob, ...).
    """
    common = dict(num_frames=num_frames, stride=stride, backend=backend)
    train_set = None
    if not eval_only:
        train_set = _split_dataset(
            data_dir, train_split, train=True, bad_files=bad_files, num_samples=num_samples,
            shared_frames=shared_frames,
            transform=create_video_transform(data_config, is_training=True, scale=scale, ratio=ratio, hflip=hflip,
                                             **(augmentation or {})),
            **common)
    val_set = None
    if val_split:
        val_set = _split_dataset(
            data_dir, val_split, classes=train_set.classes if train_set is not None else classes, train=False,
            num_clips=test_clips,
            bad_files='skip',
            transform=create_video_transform(data_config, is_training=False, num_crops=test_crops), **common)
    return train_set, val_set
