"""predict over a collection: inputs, workers, resumable outputs after a kill, features, torchrun, zero-shot."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import timm
import torch
from conftest import TINY_KWARGS, write_video

from timm_inti.cli import UsageError
from timm_inti.outputs import read_records
from timm_inti.predict import expand_inputs, main
from timm_inti.video.formats import manifest_frame_counts

NUM_GOOD = 36


@pytest.fixture(scope='module')
def collection(tmp_path_factory):
    """36 small videos in nested folders, 4 corrupt ones among them, a text file to ignore; a tiny checkpoint."""
    root = tmp_path_factory.mktemp('collection')
    good = [write_video(root / 'videos' / f'group{i % 3}' / f'{i:02d}.mp4', num_frames=8 + i % 5, size=(32, 32),
                        direction=1 if i % 2 else -1) for i in range(NUM_GOOD)]
    sample = good[0].read_bytes()
    bad = [root / 'videos' / 'group0' / '03a_truncated.mp4', root / 'videos' / 'group1' / '17a_text.mp4',
           root / 'videos' / 'group2' / '30a_empty.webm', root / 'videos' / 'group2' / '31a_half.mkv']
    bad[0].write_bytes(sample[:600])
    bad[1].write_text('not a video')
    bad[2].write_bytes(b'')
    bad[3].write_bytes(sample[: len(sample) // 2])
    (root / 'videos' / 'notes.txt').write_text('ignored: not a video extension')
    model_args = dict(TINY_KWARGS, num_classes=3, num_frames=4)
    torch.manual_seed(0)
    model = timm.create_model('inti_vit_b16', **model_args)
    checkpoint = root / 'last.pth.tar'
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, state_dict=model.state_dict(),
                    label_names=['left', 'right', 'still'], epoch=1), checkpoint)
    inputs = expand_inputs([str(root / 'videos')])
    return dict(root=root, videos=str(root / 'videos'), good=[str(p) for p in good], bad=[str(p) for p in bad],
                checkpoint=str(checkpoint), inputs=inputs)


@pytest.fixture(scope='module')
def clean_run(collection, tmp_path_factory):
    """One uninterrupted one-process run with 2 workers: the reference output and features."""
    out = tmp_path_factory.mktemp('clean')
    code = main([collection['videos'], '--checkpoint', collection['checkpoint'], '-j', '2', '-b', '4',
                 '--output', str(out / 'out.jsonl'), '--features', str(out / 'features.npy'), '--top-k', '2'])
    return dict(code=code, output=out / 'out.jsonl', features=out / 'features.npy', dir=out)


def test_inputs_are_folders_globs_and_lists(collection, tmp_path):
    videos = collection['inputs']
    assert len(videos) == NUM_GOOD + 4 and not any(v.endswith('.txt') for v in videos)
    assert set(collection['good'] + collection['bad']) == set(videos)
    assert videos == sorted(videos)  # folders in sorted order, recursively
    root = collection['videos']
    assert expand_inputs([f'{root}/group1/*.mp4', f'{root}/group1/01.mp4']) == sorted(
        v for v in videos if '/group1/' in v and v.endswith('.mp4'))  # a video named twice counts once
    assert expand_inputs([f'{root}/**/0?.mp4']) == sorted(v for v in collection['good'] if os.path.basename(v) < '10')
    (tmp_path / 'list.txt').write_text(f'# a comment\n{collection["good"][3]}\n\n{collection["good"][1]}\n')
    assert expand_inputs([str(tmp_path / 'list.txt')]) == [collection['good'][3], collection['good'][1]]
    (tmp_path / 'sub').mkdir()
    os.symlink(root, tmp_path / 'sub' / 'videos')
    (tmp_path / 'sub' / 'manifest.csv').write_text(
        'path,label,frames,fps,width,height\nvideos/group0/00.mp4,a,8,25,32,32\nvideos/group2/02.mp4,b,10,25,32,32\n')
    assert expand_inputs([str(tmp_path / 'sub' / 'manifest.csv')]) == [
        str(tmp_path / 'sub' / 'videos' / 'group0' / '00.mp4'), str(tmp_path / 'sub' / 'videos' / 'group2' / '02.mp4')]
    assert manifest_frame_counts([str(tmp_path / 'sub' / 'manifest.csv'), str(tmp_path / 'list.txt')]) == {
        str(tmp_path / 'sub' / 'videos' / 'group0' / '00.mp4'): 8,
        str(tmp_path / 'sub' / 'videos' / 'group2' / '02.mp4'): 10}
    assert len(manifest_frame_counts([str(tmp_path / 'sub')])) == 2, 'a folder with a manifest.csv'
    assert manifest_frame_counts([str(tmp_path / 'sub' / 'videos')]) == {}, 'a folder without one'
    (tmp_path / 'list.jsonl').write_text(json.dumps(dict(path=collection['good'][5])) + '\n')
    assert expand_inputs([str(tmp_path / 'list.jsonl')]) == [collection['good'][5]]
    (tmp_path / 'nopath.csv').write_text('file,label\na.mp4,x\n')
    with pytest.raises(ValueError, match='needs a "path" column'):  # timm_inti.video.formats; exit 2 in the command
        expand_inputs([str(tmp_path / 'nopath.csv')])
    (tmp_path / 'empty_dir').mkdir()
    with pytest.raises(UsageError, match='no video files under'):
        expand_inputs([str(tmp_path / 'empty_dir')])


def test_a_collection_through_workers(collection, clean_run, capsys):
    assert clean_run['code'] == 1  # some files are corrupt
    records = read_records(clean_run['output'])
    assert [r['path'] for r in records] == collection['inputs']  # every video once, in input order
    for r in records:
        if r['path'] in collection['bad']:
            assert 'predictions' not in r and r['error']
        else:
            assert [p['label'] for p in r['predictions']][0] in ('left', 'right', 'still')
            assert (len(r['predictions']) == 2
                    and r['predictions'][0]['probability'] >= r['predictions'][1]['probability'])
    assert not list(clean_run['dir'].glob('*part*')), 'the per-process parts are merged and removed'


def test_features_hold_one_finite_vector_per_readable_video_in_input_order(collection, clean_run, tmp_path):
    features = np.load(clean_run['features'])
    index = read_records(clean_run['features'].with_suffix('.index.jsonl'))
    good_in_order = [p for p in collection['inputs'] if p not in collection['bad']]
    assert [r['path'] for r in index] == good_in_order
    assert features.shape == (NUM_GOOD, TINY_KWARGS['embed_dim']) and features.dtype == np.float32
    assert np.isfinite(features).all()
    # a vector does not depend on the batch it came in: one video alone gives its row
    one = good_in_order[7]
    assert main([one, '--checkpoint', collection['checkpoint'], '-j', '0',
                 '--features', str(tmp_path / 'one.safetensors')]) == 0
    from safetensors.numpy import load_file
    np.testing.assert_allclose(load_file(tmp_path / 'one.safetensors')['features'][0], features[7],
                               atol=1e-5, rtol=1e-4)
    assert len(set(map(tuple, features.round(4).tolist()))) > 1, 'different videos, different vectors'


def _part_lines(path):
    try:
        return path.read_bytes().count(b'\n')
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_killed_and_resumed_gives_the_uninterrupted_output(collection, clean_run, tmp_path):
    args = [collection['videos'], '--checkpoint', collection['checkpoint'], '-j', '1', '-b', '1', '--top-k', '2',
            '--output', str(tmp_path / 'out.jsonl'), '--features', str(tmp_path / 'features.npy')]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.Popen([sys.executable, '-m', 'timm_inti.predict', *args, '--clips', '1'], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    part = tmp_path / 'out.jsonl.part-0'
    deadline = time.monotonic() + 120
    while _part_lines(part) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, 'the run ended before it could be killed: ' + proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its loader worker, mid-run
    proc.wait()
    proc.stderr.close()
    assert not (tmp_path / 'out.jsonl').exists()
    done = _part_lines(part)
    assert 6 <= done < len(collection['inputs'])
    with open(part, 'a') as f:
        f.write('{"path": "' + collection['inputs'][done][:10])  # as if the kill had come mid-line

    assert main(args) == 1  # resumed: the failures of both runs are in the output
    assert (tmp_path / 'out.jsonl').read_bytes() == clean_run['output'].read_bytes()
    np.testing.assert_array_equal(np.load(tmp_path / 'features.npy'), np.load(clean_run['features']))
    assert ((tmp_path / 'features.index.jsonl').read_bytes()
            == clean_run['features'].with_suffix('.index.jsonl').read_bytes())
    assert not list(tmp_path.glob('*part*'))


@pytest.mark.slow
def test_a_killed_features_run_loses_only_the_videos_in_flight(collection, clean_run, tmp_path, capsys):
    """--features alone, killed after N vectors: the rerun computes only the rest, and the file is byte for byte
    the uninterrupted run's."""
    features = tmp_path / 'features.npy'
    args = [collection['videos'], '--checkpoint', collection['checkpoint'], '-j', '0', '-b', '1',
            '--features', str(features)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.Popen([sys.executable, '-m', 'timm_inti.predict', *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    index = tmp_path / 'features.npy.part-0.jsonl'
    deadline = time.monotonic() + 120
    while _part_lines(index) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, 'the run ended before it could be killed: ' + proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not features.exists()
    done = len(read_records(index))
    assert 5 <= done < NUM_GOOD
    with open(tmp_path / 'features.npy.part-0.f32', 'ab') as f:
        f.write(b'\x01' * 100)  # as if the kill had come in the middle of a vector
    capsys.readouterr()

    assert main(args) == 1  # the unreadable videos have no vector, so they are tried (and fail) again
    total = len(collection['inputs'])
    assert f'{total - done} videos to do, {done} of {total} already done' in capsys.readouterr().err
    assert features.read_bytes() == clean_run['features'].read_bytes()
    assert ((tmp_path / 'features.index.jsonl').read_bytes()
            == clean_run['features'].with_suffix('.index.jsonl').read_bytes())
    assert not list(tmp_path.glob('*part*'))


def test_features_of_another_width_into_an_existing_file_is_one_line(collection, clean_run, tmp_path, capsys):
    features = tmp_path / 'features.npy'
    features.write_bytes(clean_run['features'].read_bytes())
    index = clean_run['features'].with_suffix('.index.jsonl')
    (tmp_path / 'features.index.jsonl').write_bytes(index.read_bytes())
    wider = tmp_path / 'wider.pth.tar'
    model_args = dict(TINY_KWARGS, num_classes=3, num_frames=4, embed_dim=96, num_heads=3)
    model = timm.create_model('inti_vit_b16', **model_args)
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, state_dict=model.state_dict(),
                    label_names=['left', 'right', 'still'], epoch=1), wider)
    before = features.read_bytes()
    capsys.readouterr()
    code = main([collection['good'][0], collection['bad'][0], '--checkpoint', str(wider), '-j', '0',
                 '--features', str(features)])
    err = capsys.readouterr().err
    assert code == 2 and 'Traceback' not in err
    assert err.strip().splitlines()[-1] == (
        f'timm-inti-predict: error: --features {features} holds 64-d vectors of an earlier run, {wider} gives 96-d '
        f'ones: name another file (or remove it and its parts to start anew)')
    assert features.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['features.index.jsonl', 'features.npy', 'wider.pth.tar'], \
        'refused before any part file is opened'


def test_a_rerun_skips_everything_done(collection, clean_run, tmp_path, capsys):
    out = tmp_path / 'out.jsonl'
    out.write_bytes(clean_run['output'].read_bytes())
    first = read_records(out)[:5]
    out.write_text(''.join(json.dumps(r) + '\n' for r in first))
    assert main([collection['videos'], '--checkpoint', collection['checkpoint'], '-j', '0', '-b', '8', '--top-k', '2',
                 '--output', str(out), '--log-interval', '0.001']) == 1
    err = capsys.readouterr().err
    assert f'{len(collection["inputs"]) - 5} videos to do, 5 of {len(collection["inputs"])} already done' in err
    assert 'videos/s, ETA' in err  # progress lines when stderr is not a terminal
    summary = err.strip().splitlines()[-1]
    good_done = sum(r['path'] in collection['good'] for r in first)
    assert 0 < good_done < 5, 'the first five hold a bad file, whose failure counts again in the summary'
    assert summary.startswith(
        f'timm-inti-predict: {NUM_GOOD - good_done} videos predicted, 5 skipped as already done, 4 failed (listed in')
    assert out.read_bytes() == clean_run['output'].read_bytes()


@pytest.mark.slow
def test_torchrun_two_gloo_processes_split_the_videos(collection, clean_run, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]),
               OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m',
         'timm_inti.predict', collection['videos'], '--checkpoint', collection['checkpoint'], '-j', '1', '-b', '4',
         '--top-k', '2', '--device', 'cpu', '--output', str(tmp_path / 'out.jsonl'), '--features',
         str(tmp_path / 'features.npy')], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # the bad files
    total = len(collection['inputs'])
    assert f'rank 0: {total // 2} videos to do' in proc.stderr and f'rank 1: {total // 2} videos to do' in proc.stderr
    assert (tmp_path / 'out.jsonl').read_bytes() == clean_run['output'].read_bytes()
    np.testing.assert_allclose(np.load(tmp_path / 'features.npy'), np.load(clean_run['features']), atol=1e-5, rtol=1e-4)
    assert not list(tmp_path.glob('*part*'))


@pytest.mark.slow
def test_zero_shot_builds_the_text_head_once_and_scores_as_one_file(open_clip_b16, collection, tmp_path, monkeypatch):
    import open_clip
    calls = []
    build = open_clip.build_zero_shot_classifier
    monkeypatch.setattr(open_clip, 'build_zero_shot_classifier', lambda *a, **k: calls.append(1) or build(*a, **k))
    clip_file = tmp_path / 'open_clip.pt'
    torch.save(open_clip_b16.state_dict(), clip_file)
    labels = tmp_path / 'classes.txt'
    labels.write_text('archery\nbowling\ncooking\n')
    alone = tmp_path / 'alone.mp4'  # the same video again, alone in the last batch
    os.symlink(collection['good'][0], alone)
    videos = [collection['good'][0], collection['good'][1], str(alone)]
    assert main([*videos, '--model', 'inti_vit_b16', '--checkpoint', str(clip_file), '--zero-shot-labels', str(labels),
                 '--text-tower', f'ViT-B-16-quickgelu:{clip_file}', '--num-frames', '2', '--top-k', '3', '-j', '1',
                 '-b', '2', '--output', str(tmp_path / 'all.jsonl'), '--features', str(tmp_path / 'clip.npy')]) == 0
    assert len(calls) == 1, 'one text head for the whole collection'
    records = read_records(tmp_path / 'all.jsonl')
    in_batch, by_itself = ({p['label']: p['probability'] for p in records[i]['predictions']} for i in (0, 2))
    assert in_batch.keys() == by_itself.keys() == {'archery', 'bowling', 'cooking'}
    for label in by_itself:
        assert in_batch[label] == pytest.approx(by_itself[label], abs=1e-5)
    features = np.load(tmp_path / 'clip.npy')
    assert features.shape == (3, 512)  # CLIP's image-text space, not the 768-d pre-logits
    np.testing.assert_allclose(features[0], features[2], atol=1e-4, rtol=1e-4)
