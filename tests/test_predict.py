"""The predict command on real video files: labels, views, JSON, zero-shot, and files it cannot read."""
import json
import os
import subprocess
import sys

import pytest
import timm
import torch

from conftest import TINY_KWARGS
from timm_inti.predict import main


@pytest.fixture
def videos(make_video, tmp_path):
    good = [make_video('a.mp4', num_frames=30), make_video('b.webm', num_frames=20, codec='libvpx-vp9')]
    truncated = tmp_path / 'broken.mp4'
    truncated.write_bytes(good[0].read_bytes()[:2000])
    notes = tmp_path / 'notes.mp4'
    notes.write_text('not a video')
    return good, [truncated, notes]


@pytest.fixture
def trained_checkpoint(tmp_path):
    """A checkpoint as timm-inti-train writes it, whose model strongly prefers 'right'."""
    model_args = dict(TINY_KWARGS, num_classes=2, num_frames=4)
    model = timm.create_model('inti_vit_b16', **model_args)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([-5.0, 5.0]))
    path = tmp_path / 'last.pth.tar'
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, state_dict=model.state_dict(),
                    label_names=['left', 'right'], epoch=3), path)
    return path


def test_training_checkpoint_json_and_views(videos, trained_checkpoint, capsys):
    good, _ = videos
    code = main([*map(str, good), '--checkpoint', str(trained_checkpoint), '--json', '--clips', '2', '--crops', '3'])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [r['file'] for r in results] == [str(p) for p in good]
    for r in results:
        assert [p['label'] for p in r['predictions']] == ['right', 'left']
        assert sum(p['probability'] for p in r['predictions']) == pytest.approx(1, abs=1e-5)
        assert r['predictions'][0]['probability'] > 0.99


def test_unreadable_files_get_one_line_each_and_a_failing_exit(videos, trained_checkpoint, capsys):
    good, bad = videos
    code = main([str(bad[0]), str(good[0]), str(bad[1]), '--checkpoint', str(trained_checkpoint), '--top-k', '1'])
    out, err = capsys.readouterr()
    assert code == 1
    assert 'Traceback' not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith('timm-inti-predict: error: ') for line in lines)
    assert str(bad[0]) in lines[0] and str(bad[1]) in lines[1]
    assert out.splitlines() == [str(good[0]), out.splitlines()[1]] and 'right' in out.splitlines()[1]


def test_zero_shot_labels_with_a_local_text_tower(open_clip_b16, make_video, tmp_path, capsys):
    clip_file = tmp_path / 'open_clip.pt'
    torch.save(open_clip_b16.state_dict(), clip_file)  # image tower for the model, text tower for the labels
    labels = tmp_path / 'classes.txt'
    labels.write_text('archery\nbowling\ncooking\n')
    video = make_video('c.mp4', num_frames=16)
    code = main([str(video), '--model', 'inti_vit_b16', '--checkpoint', str(clip_file), '--zero-shot-labels',
                 str(labels), '--text-tower', f'ViT-B-16-quickgelu:{clip_file}', '--json', '--num-frames', '4'])
    assert code == 0
    predictions = json.loads(capsys.readouterr().out)[0]['predictions']
    assert sorted(p['label'] for p in predictions) == ['archery', 'bowling', 'cooking']


def test_setup_problems_are_one_line_errors(videos, trained_checkpoint, tmp_path, capsys):
    good, _ = videos
    assert main([str(good[0]), '--checkpoint', str(tmp_path / 'missing.pth')]) == 2
    assert 'missing.pth: no such checkpoint file' in capsys.readouterr().err
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'\x00' * 100)
    assert main([str(good[0]), '--checkpoint', str(junk)]) == 2
    assert 'junk.pth: not a readable checkpoint' in capsys.readouterr().err
    labels = tmp_path / 'three.txt'
    labels.write_text('a\nb\nc\n')
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--labels', str(labels)]) == 2
    assert '3 label names for a model with 2 classes' in capsys.readouterr().err


def test_runs_as_a_module(videos, trained_checkpoint):
    good, _ = videos
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-m', 'timm_inti.predict', str(good[0]), '--checkpoint',
                           str(trained_checkpoint), '--top-k', '1'], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(good[0]) and 'right' in proc.stdout
