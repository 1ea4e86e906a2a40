"""timm-inti-prepare: every source layout prepared and trained on, resumption after a kill, bad sources, rotation."""
import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import frame_id, write_video

from timm_inti.files import atomic_path
from timm_inti.prepare import main
from timm_inti.train import main as train_main
from timm_inti.video import VideoFolder, VideoList, create_video_transform, probe, read_frames
from timm_inti.video.formats import read_manifest

PLAIN = dict(input_size=(3, 32, 32), interpolation='bilinear', mean=(0., 0., 0.), std=(1., 1., 1.), crop_pct=1.0)
TINY = ['--model', 'inti_vit_b16', '--model-kwargs', 'embed_dim=64', 'depth=4', 'num_heads=2', 'patch_size=8',
        'inti_after=(2,)', '--img-size', '32', '--num-frames', '4', '--workers', '0', '--warmup-epochs', '0']
CLASSES = (('left', -1, 20), ('right', 1, 200))


def rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def write_clip(path, k, direction, background, **kwargs):
    kwargs = dict(dict(num_frames=20 + 4 * k, size=(48, 64), direction=direction, background=background), **kwargs)
    return write_video(path, **kwargs)


def train_one_epoch(data_dir, tmp_path, *split_args):
    args = ['--data-dir', str(data_dir), *split_args, *TINY, '-b', '2', '--epochs', '1', '--output', str(tmp_path),
            '--experiment', 'run']
    assert train_main(args) == 0
    summary = rows(tmp_path / 'run' / 'summary.csv')
    assert len(summary) == 1 and int(summary[0]['train_samples']) > 0


def test_class_folders(tmp_path):
    src = tmp_path / 'src'
    for split, count in (('train', 2), ('val', 1)):
        for label, direction, background in CLASSES:
            for k in range(count):
                write_clip(src / split / label / f'{label}{k}.avi', k, direction, background, codec='mpeg4')
    dst = tmp_path / 'dst'
    assert main([str(src), str(dst), '--short-side', '32', '-j', '2']) == 0
    manifest = rows(dst / 'manifest.csv')
    assert [r['path'] for r in manifest] == ['train/left/left0.mp4', 'train/left/left1.mp4', 'train/right/right0.mp4',
                                             'train/right/right1.mp4', 'val/left/left0.mp4', 'val/right/right0.mp4']
    for row in manifest:  # the manifest tells the truth about every prepared file
        info = probe(dst / row['path'])
        assert (int(row['frames']), float(row['fps']), int(row['width']), int(row['height'])) == \
            (info.num_frames, info.fps, info.width, info.height) == (info.num_frames, 25.0, 42, 32)
        assert row['label'] in ('left', 'right') and row['split'] in ('train', 'val')
    assert int(manifest[1]['frames']) == 24
    assert rows(dst / 'prepare_report.csv') == []
    train = VideoFolder(str(dst / 'train'), num_frames=4, train=False, transform=create_video_transform(PLAIN, False))
    assert train.frame_counts[str(dst / 'train' / 'left' / 'left1.mp4')] == 24, 'the dataset reads the manifest'
    train_one_epoch(dst, tmp_path)


def test_annotation_list(tmp_path):
    src = tmp_path / 'src'
    lines = {'train': [], 'val': []}
    for split, count in (('train', 2), ('val', 1)):
        for label, direction, background in CLASSES:
            for k in range(count):
                write_clip(src / 'clips' / f'{split}_{label}{k}.mp4', k, direction, background)
                lines[split].append(f'clips/{split}_{label}{k}.mp4 {label}')
    (src / 'train.txt').write_text('\n'.join(lines['train']) + '\n')
    (src / 'val.txt').write_text('\n'.join(lines['val']) + '\n')
    dst = tmp_path / 'dst'
    assert main([str(src), str(dst), '--short-side', '32', '-j', '1',
                 '--annotations', str(src / 'train.txt'), str(src / 'val.txt')]) == 0
    train_list = rows(dst / 'train.csv')
    assert [(r['path'], r['label']) for r in train_list] == [
        ('clips/train_left0.mp4', 'left'), ('clips/train_left1.mp4', 'left'),
        ('clips/train_right0.mp4', 'right'), ('clips/train_right1.mp4', 'right')]
    dataset = VideoList(str(dst / 'train.csv'), root=str(dst), num_frames=4, train=False,
                        transform=create_video_transform(PLAIN, False))
    assert sorted(dataset.frame_counts.values()) == [20, 20, 24, 24]
    train_one_epoch(dst, tmp_path, '--train-split', 'train.csv', '--val-split', 'val.csv')


def test_kinetics_csv(tmp_path):
    """The downloaders' layout: annotations/{train,validate}.csv, videos {youtube_id}_{start:06d}_{end:06d}.mp4."""
    src = tmp_path / 'k400'
    for split, count in (('train', 2), ('validate', 1)):
        lines = ['label,youtube_id,time_start,time_end,split']
        for label, direction, background in CLASSES:
            for k in range(count):
                youtube_id = f'{label[:3]}{split[:2]}{k}xxxx'
                lines.append(f'"{label} things",{youtube_id},{10 * k},{10 * k + 10},{split}')
                write_clip(src / split / f'{youtube_id}_{10 * k:06d}_{10 * k + 10:06d}.mp4', k, direction, background)
        if split == 'train':
            lines.append('"left things",gone0000000,0,10,train')  # a video the download missed
        (src / 'annotations').mkdir(parents=True, exist_ok=True)
        (src / 'annotations' / f'{split}.csv').write_text('\n'.join(lines) + '\n')
    dst = tmp_path / 'dst'
    assert main([str(src), str(dst), '--short-side', '32', '-j', '2']) == 0  # annotations found in SRC/annotations
    train_list = rows(dst / 'train.csv')
    assert len(train_list) == 4 and {r['label'] for r in train_list} == {'left things', 'right things'}
    assert train_list[0]['path'] == 'train/lef' 'tr0xxxx_000000_000010.mp4'
    report = rows(dst / 'prepare_report.csv')
    assert len(report) == 1 and 'gone0000000' in report[0]['reason']
    train_one_epoch(dst, tmp_path, '--train-split', 'train.csv', '--val-split', 'validate.csv')


def test_something_something_v2_json(tmp_path):
    src = tmp_path / 'ssv2'
    templates = {'left': 'Moving [something] from right to left', 'right': 'Moving [something] from left to right'}
    (src / 'labels').mkdir(parents=True)
    (src / 'labels' / 'labels.json').write_text(json.dumps(
        {'Moving something from right to left': '0', 'Moving something from left to right': '1'}))
    video_id = 100
    for split, count in (('train', 2), ('validation', 1)):
        entries = []
        for label, direction, background in CLASSES:
            for k in range(count):
                write_clip(src / '20bn-something-something-v2' / f'{video_id}.webm', k, direction, background,
                           codec='libvpx-vp9')
                entries.append(dict(id=str(video_id), label=f'moving a cup {label}', template=templates[label],
                                    placeholders=['a cup']))
                video_id += 1
        (src / 'labels' / f'{split}.json').write_text(json.dumps(entries))
    dst = tmp_path / 'dst'
    assert main([str(src), str(dst), '--short-side', '32', '-j', '1']) == 0  # found in SRC/labels, as SSv2 ships them
    val = rows(dst / 'validation.csv')
    assert [(r['path'], r['label']) for r in val] == [
        ('20bn-something-something-v2/104.mp4', 'Moving something from right to left'),
        ('20bn-something-something-v2/105.mp4', 'Moving something from left to right')]
    train_one_epoch(dst, tmp_path, '--train-split', 'train.csv', '--val-split', 'validation.csv')


def test_bad_sources_are_reported_and_counted(tmp_path, capsys):
    src = tmp_path / 'src'
    good = write_clip(src / 'a' / 'good.mp4', 0, 1, 0)
    (src / 'a' / 'zero.mp4').write_bytes(b'')
    (src / 'a' / 'notes.mp4').write_text('not a video at all')
    (src / 'b' / 'corrupt.mp4').parent.mkdir()
    (src / 'b' / 'corrupt.mp4').write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    (src / 'b' / 'readme.txt').write_text('a text file in a class folder')
    dst = tmp_path / 'dst'
    assert main([str(src), str(dst), '-j', '2']) == 0, 'unreadable sources are not fatal by default'
    report = {r['path'].split('/')[-1]: r['reason'] for r in rows(dst / 'prepare_report.csv')}
    assert set(report) == {'zero.mp4', 'notes.mp4', 'corrupt.mp4', 'readme.txt'}
    assert report['zero.mp4'] == 'empty file' and 'not a readable video' in report['notes.mp4']
    assert 'not a video file' in report['readme.txt']
    assert [r['path'] for r in rows(dst / 'manifest.csv')] == ['a/good.mp4']
    assert '1 videos ready (0 already done), 4 unreadable' in capsys.readouterr().err
    assert main([str(src), str(dst), '--strict']) == 1
    assert 'timm-inti-prepare: error: 4 of 5 source videos could not be prepared' in capsys.readouterr().err
    assert main([str(src), str(dst), '--gop', '4']) == 2, 'a rerun with other settings would mix two preparations'
    assert 'gop 16 -> 4' in capsys.readouterr().err
    assert main([str(tmp_path / 'nowhere'), str(dst)]) == 2


@pytest.mark.parametrize('rotation', [90, 270])
def test_rotated_videos_are_upright_after_prepare(tmp_path, rotation):
    src = tmp_path / 'src'
    write_video(src / 'phone' / 'portrait.mov', num_frames=20, size=(48, 64), rotation=rotation)
    assert probe(src / 'phone' / 'portrait.mov').rotation == rotation
    assert main([str(src), str(tmp_path / 'dst'), '--short-side', '48']) == 0
    out = tmp_path / 'dst' / 'phone' / 'portrait.mp4'
    info = probe(out)
    assert (info.rotation, info.height, info.width) == (0, 48, 64), 'stored upright, no display matrix left'
    frames, _ = read_frames(out, [0, 9, 19])
    assert [frame_id(f) for f in frames] == [0, 9, 19]


def test_max_fps_and_keyframe_interval(tmp_path):
    import av
    src = tmp_path / 'src'
    write_video(src / 'a' / 'fast.mp4', num_frames=50, fps=50)
    assert main([str(src), str(tmp_path / 'dst'), '--max-fps', '25', '--gop', '5']) == 0
    out = tmp_path / 'dst' / 'a' / 'fast.mp4'
    info = probe(out)
    assert (info.fps, info.num_frames) == (25.0, 25)
    frames, _ = read_frames(out, [0, 10, 24])
    assert [frame_id(f) for f in frames] == [0, 20, 48], 'every other frame, at its time'
    with av.open(str(out)) as container:
        keys = [i for i, packet in enumerate(container.demux(video=0)) if packet.is_keyframe]
    gaps = [b - a for a, b in zip(keys, keys[1:] + [info.num_frames])]
    assert keys[0] == 0 and max(gaps) <= 5, keys  # x264 may add a keyframe at a scene cut, never fewer


def _final_files(dst):
    return sorted(p for p in dst.rglob('*.mp4') if not p.name.startswith('.'))


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_output(tmp_path):
    src = tmp_path / 'src'
    for k in range(6):
        write_video(src / 'c' / f'v{k}.mp4', num_frames=100, size=(144, 192), noise=True, direction=1 + k % 3)
    straight = tmp_path / 'straight'
    assert main([str(src), str(straight), '--short-side', '96', '-j', '1']) == 0

    killed = tmp_path / 'killed'
    cmd = [sys.executable, '-m', 'timm_inti.prepare', str(src), str(killed), '--short-side', '96', '-j', '1']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_final_files(killed)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _final_files(killed)
    assert 2 <= len(done) < 6, 'killed part-way'
    assert not (killed / 'manifest.csv').exists()
    for path in done:  # whatever carries a final name is complete
        assert path.read_bytes() == (straight / path.relative_to(killed)).read_bytes(), path.name

    assert main([str(src), str(killed), '--short-side', '96', '-j', '2']) == 0
    assert ([p.relative_to(killed) for p in _final_files(killed)]
            == [p.relative_to(straight) for p in _final_files(straight)])
    for path in _final_files(straight):
        assert path.read_bytes() == (killed / path.relative_to(straight)).read_bytes(), path.name
    assert (killed / 'manifest.csv').read_text() == (straight / 'manifest.csv').read_text()
    assert not [p for p in killed.rglob('*.tmp')], 'no temporary file is left behind'
    manifest = read_manifest(killed / 'manifest.csv')
    assert {row['frames'] for row in manifest.values()} == {100}


def test_a_failed_write_leaves_no_final_file(tmp_path, monkeypatch):
    from timm_inti import prepare
    src = tmp_path / 'src'
    write_video(src / 'c' / 'a.mp4', num_frames=30)
    real = prepare.prepare_video

    def half_then_fail(source, output, options=prepare.Options()):
        with atomic_path(output) as tmp:
            tmp.write_bytes(b'half a video')
            raise OSError(5, 'Input/output error')
    monkeypatch.setattr(prepare, 'prepare_video', half_then_fail)
    assert main([str(src), str(tmp_path / 'dst'), '-j', '1']) == 0
    assert not (tmp_path / 'dst' / 'c' / 'a.mp4').exists() and not list((tmp_path / 'dst').rglob('*.tmp'))
    assert 'Input/output error' in rows(tmp_path / 'dst' / 'prepare_report.csv')[0]['reason']
    monkeypatch.setattr(prepare, 'prepare_video', real)
    assert main([str(src), str(tmp_path / 'dst'), '-j', '1']) == 0
    assert probe(tmp_path / 'dst' / 'c' / 'a.mp4').num_frames == 30
    assert torch.is_tensor(read_frames(tmp_path / 'dst' / 'c' / 'a.mp4', [29])[0])


def test_broken_timestamps_come_out_clean_and_train(tmp_path):
    """Sources whose frames all decode but whose timestamps are equal, shuffled or packed: prepared in decode
    order at the codec's rate, with constant-rate timestamps; a truncated file is still reported."""
    import av

    from timm_inti.video.synthetic import write_broken_timestamps
    src = tmp_path / 'src'
    for label, kinds in (('left', ('equal', 'shuffled')), ('right', ('packed', 'equal'))):
        for k, kind in enumerate(kinds):
            write_broken_timestamps(src / 'train' / label / f'{kind}{k}.mkv', kind, num_frames=24 + 2 * k)
    good = write_video(tmp_path / 'good.mp4', num_frames=60, size=(96, 128), noise=True,
                       container_options={'movflags': 'faststart'})
    (src / 'train' / 'left' / 'truncated.mp4').write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    dst = tmp_path / 'dst'
    assert main([str(src), str(dst), '--short-side', '32', '-j', '1']) == 0
    report = rows(dst / 'prepare_report.csv')
    assert [r['path'].split('/')[-1] for r in report] == ['truncated.mp4'], report
    assert 'truncated or damaged' in report[0]['reason']
    manifest = rows(dst / 'manifest.csv')
    assert len(manifest) == 4
    for row in manifest:
        with av.open(str(dst / row['path'])) as container:
            stream = container.streams.video[0]
            pts = [frame.pts for frame in container.decode(stream)]
            step = round(1 / (25 * stream.time_base))
        assert pts == [k * step for k in range(len(pts))], 'clean constant-rate timestamps'
        assert (int(row['frames']), float(row['fps'])) == (len(pts), 25.0)
        frames, _ = read_frames(dst / row['path'], [0, len(pts) - 1])
        assert [frame_id(f) for f in frames] == [0, len(pts) - 1], 'every frame, in decode order'
    assert sorted(int(r['frames']) for r in manifest) == [24, 24, 26, 26]



# ------------------------------------------------------------------------------------ bad input, as a table
# Row: (arguments after SRC DST, setup(tmp) -> extra files, exit status, message regex). SRC holds a/v0.mp4 and
# b/v1.mp4; no row may write anything (the table checks every file under tmp).

def _listing(text):
    def setup(tmp):
        (tmp / 'list.txt').write_text(text.format(tmp=tmp))
        return ['--annotations', tmp / 'list.txt']
    return setup


def _ssv2(train, labels='{"a": "0"}'):
    def setup(tmp):
        (tmp / 'ann').mkdir()
        (tmp / 'ann' / 'labels.json').write_text(labels)
        (tmp / 'ann' / 'train.json').write_text(train)
        return ['--annotations', tmp / 'ann' / 'train.json']
    return setup


def _held_lock(tmp):
    import fcntl
    (tmp / 'dst').mkdir()
    handle = open(tmp / 'dst' / '.prepare.lock', 'w')
    handle.write('4242')
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held_lock.handle = handle  # released when the next row replaces it, or at exit
    return []


PREPARE_CASES = [
    (['--preset', 'bogus'], None, 2, r"argument --preset: invalid choice: 'bogus'"),
    (['--tune', 'bogus'], None, 2, r"argument --tune: 'bogus' is not an x264 tune \(one or more of film, "),
    (['--crf', '99'], None, 2, r'argument --crf: 99 is not an x264 quality \(0-51'),
    (['--max-fps', 'nan'], None, 2, r'argument --max-fps: nan is not 0 \(keep the rate\) or a rate of at least 0.01'),
    (['--max-fps', '1e-9'], None, 2, r'argument --max-fps: 1e-9 is not 0 \(keep the rate\) or a rate of at least'),
    (['--max-fps', 'inf'], None, 2, r'argument --max-fps: inf is not 0'),
    ([], _listing('../outside.mp4 a\n'), 2, r'list.txt: ../outside.mp4 lies outside the source folder .*/src'),
    ([], _listing('{tmp}/elsewhere/x.mp4 a\n'), 2, r'list.txt: .*/elsewhere/x.mp4 lies outside the source folder'),
    ([], _listing('a/v0.mp4 a\nb/v1.mp4 b\na/v0.mp4 b\n'), 2,
     r"src/a/v0.mp4 is listed twice: as 'a' in list and as 'b' in list; a video has one label and one split"),
    ([], _listing(''), 2, r'no videos found in'),
    ([], lambda tmp: ((tmp / 'list.bin').write_bytes(b'\xff\xfe\x00\x01' * 8), ['--annotations', tmp / 'list.bin'])[1],
     2, r'list.bin: not a text annotation list'),
    ([], _ssv2('[1, 2, 3]'), 2, r'ann/train.json: entry 1 is not a video \({"id", "template", ...}\), got 1'),
    ([], _ssv2('{"id": "1"}'), 2, r'ann/train.json: not a Something-Something v2 list .* holds a JSON dict\)'),
    ([], _ssv2('[{"template": "a"}]'), 2, r'ann/train.json: entry 1 is not a video .*got {"template": "a"}'),
    ([], _ssv2('[{"id": 1, "template": "a"}]', labels='["a"]'), 2,
     r'ann/labels.json: not a Something-Something v2 labels.json .* holds a JSON list\)'),
    ([], _held_lock, 2, r'another timm-inti-prepare \(process 4242\) is preparing into .*/dst: wait for it'),
]


@pytest.mark.parametrize('extra, setup, code, message', PREPARE_CASES,
                         ids=[f'{i:02d}:{" ".join(map(str, c[0])) or c[3][:30]}' for i, c in enumerate(PREPARE_CASES)])
def test_prepare_refuses(tmp_path, capsys, extra, setup, code, message):
    from table import check_case
    src = tmp_path / 'src'
    for rel in ('a/v0.mp4', 'b/v1.mp4'):
        write_video(src / rel, num_frames=4, size=(16, 16))
    argv = [src, tmp_path / 'dst', *extra, *(setup(tmp_path) if setup else [])]
    check_case(main, 'timm-inti-prepare', argv, tmp_path, code, message, capsys)


def test_the_output_inside_the_source_is_refused_and_earlier_outputs_are_not_sources(tmp_path, capsys):
    from table import check_case
    src = tmp_path / 'src'
    for rel in ('a/v0.mp4', 'b/v1.mp4'):
        write_video(src / rel, num_frames=4, size=(16, 16))
    check_case(main, 'timm-inti-prepare', [src, src / 'prepared'], tmp_path, 2,
               r'the output .*/src/prepared lies inside the source .*/src: a later run would take its videos', capsys)
    # an output made inside SRC anyway (an older version, a copy) is never read as a class folder
    assert main([str(src), str(tmp_path / 'first'), '-j', '1']) == 0
    (tmp_path / 'first').rename(src / 'old_output')
    assert main([str(src), str(tmp_path / 'second'), '-j', '1']) == 0
    assert [r['path'] for r in rows(tmp_path / 'second' / 'manifest.csv')] == ['a/v0.mp4', 'b/v1.mp4']


def test_listed_paths_are_relative_to_the_source_even_when_absolute(tmp_path):
    src = tmp_path / 'src'
    write_video(src / 'a' / 'v0.mp4', num_frames=4, size=(16, 16))
    write_video(src / 'b' / 'v1.mp4', num_frames=4, size=(16, 16))
    (tmp_path / 'list.txt').write_text(f'{src}/a/v0.mp4 a\nb/../b/v1.mp4 b\n')
    dst = tmp_path / 'dst'
    assert main([str(src), str(dst), '--annotations', str(tmp_path / 'list.txt'), '-j', '1']) == 0
    assert [r['path'] for r in rows(dst / 'manifest.csv')] == ['a/v0.mp4', 'b/v1.mp4']
    assert (dst / 'a' / 'v0.mp4').is_file() and (dst / 'b' / 'v1.mp4').is_file()
    assert sorted(p.name for p in src.rglob('*') if p.is_file()) == ['v0.mp4', 'v1.mp4'], 'nothing written in SRC'


def test_a_full_disk_stops_the_run_and_leaves_no_worker_temporary(tmp_path, monkeypatch, capsys):
    """One worker's write fails for lack of space while another is mid-write: the run stops, and the temporary
    of the worker that was stopped is removed too."""
    import errno

    from timm_inti import prepare
    src = tmp_path / 'src'
    for k in range(2):
        write_video(src / 'c' / f'v{k}.mp4', num_frames=4, size=(16, 16))

    def fill_or_stall(source, output, options=prepare.Options()):
        with atomic_path(output) as tmp:
            tmp.write_bytes(b'part of a video')
            if source.endswith('v0.mp4'):
                time.sleep(60)  # in flight when the other one fails
            time.sleep(1.0)
            raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(prepare, 'prepare_video', fill_or_stall)
    code = main([str(src), str(tmp_path / 'dst'), '-j', '2'])
    err = capsys.readouterr().err
    assert code == 1 and 'Traceback' not in err
    assert err.strip().splitlines()[-1] == f'timm-inti-prepare: error: cannot write {tmp_path}/dst/c/v1.mp4: ' \
                                           f'No space left on device'
    assert sorted(p.name for p in (tmp_path / 'dst').rglob('*')) == ['.prepare.lock', 'c', 'prepare_settings.json']


@pytest.mark.slow
def test_sources_with_broken_timestamps_train_as_they_are(tmp_path):
    """Not prepared first: the training datasets read them in decode order too."""
    from timm_inti.video.synthetic import write_broken_timestamps
    for label, kinds in (('left', ('equal', 'shuffled')), ('right', ('packed', 'equal'))):
        for k, kind in enumerate(kinds):
            write_broken_timestamps(tmp_path / 'data' / 'train' / label / f'{kind}{k}.mkv', kind, num_frames=24,
                                    size=(32, 32))
    train_one_epoch(tmp_path / 'data', tmp_path / 'runs', '--val-split', '')
    summary = rows(tmp_path / 'runs' / 'run' / 'summary.csv')
    assert int(summary[0]['train_samples']) == 4, 'every clip trained on, none unreadable'
