"""The predict command on real video files: labels, views, JSON, zero-shot, and files it cannot read."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from conftest import TINY_KWARGS, write_video

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
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # JSON lines, as --output
    assert [r['path'] for r in results] == [str(p) for p in good]
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


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('timm-inti-predict: error: '), err
    return lines[0]


def test_setup_problems_are_one_line_errors(videos, trained_checkpoint, tmp_path, capsys):
    good, _ = videos
    assert main([str(good[0]), '--checkpoint', str(tmp_path / 'missing.pth')]) == 1  # a file problem: runtime
    assert 'missing.pth: no such checkpoint file' in one_error_line(capsys)
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'\x00' * 100)
    assert main([str(good[0]), '--checkpoint', str(junk)]) == 1
    assert 'junk.pth: not a readable checkpoint' in one_error_line(capsys)
    labels = tmp_path / 'three.txt'
    labels.write_text('a\nb\nc\n')
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--labels', str(labels)]) == 2
    assert '3 label names for a model with 2 classes' in one_error_line(capsys)
    binary = tmp_path / 'labels.bin'
    binary.write_bytes(bytes(range(128, 256)))
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--labels', str(binary)]) == 2
    assert f'the labels file {binary} is not a text file' in one_error_line(capsys)
    assert main([str(tmp_path / 'nothing-*.mp4'), '--checkpoint', str(trained_checkpoint)]) == 2
    assert 'no video files match' in one_error_line(capsys)
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--features', str(tmp_path / 'f.txt')]) == 2
    assert 'must end in .npy or .safetensors' in one_error_line(capsys)
    if not torch.cuda.is_available():
        assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--device', 'cuda']) == 2
        assert '--device cuda: CUDA is not available here' in one_error_line(capsys)
    words = tmp_path / 'words.txt'
    words.write_text('a\nb\n')
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--zero-shot-labels', str(words),
                 '--text-tower', 'ViT-NOPE:none']) == 2
    assert 'text tower ViT-NOPE:none' in one_error_line(capsys)


@pytest.mark.parametrize('flag, value', [('--top-k', '0'), ('--top-k', '-1'), ('--stride', '0'), ('-b', '0'),
                                         ('--clips', '0'), ('-j', '-1')])
def test_bad_numbers_are_refused_up_front(videos, flag, value, capsys):
    good, _ = videos
    with pytest.raises(SystemExit) as exit_info:
        main([str(good[0]), flag, value])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('timm-inti-predict: error: argument') and value in last


def test_runs_as_a_module(videos, trained_checkpoint):
    good, _ = videos
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-m', 'timm_inti.predict', str(good[0]), '--checkpoint',
                           str(trained_checkpoint), '--top-k', '1'], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(good[0]) and 'right' in proc.stdout


def test_embeddings_without_class_names_and_the_feature_space(videos, trained_checkpoint, tmp_path, capsys):
    good, _ = videos
    # a CLIP-initialised model has no class names: its head is CLIP's projection, and its output the embedding
    clip_like = timm.create_model('inti_vit_b16', num_frames=4, num_classes=512, **TINY_KWARGS)  # CLIP ViT-B's 512
    weights = tmp_path / 'clip_like.pth'
    torch.save(clip_like.state_dict(), weights)
    kwargs = ['--model-kwargs'] + [f'{k}={v}' for k, v in TINY_KWARGS.items()]
    assert main([*map(str, good), '--checkpoint', str(weights), '--num-frames', '4', '--features',
                 str(tmp_path / 'clip.npy'), *kwargs]) == 0
    clip = np.load(tmp_path / 'clip.npy')
    assert clip.shape == (2, 512)  # the projection's output: CLIP's image-text space
    assert main([*map(str, good), '--checkpoint', str(weights), '--num-frames', '4', '--features',
                 str(tmp_path / 'pre.npy'), '--feature-space', 'pre-logits', *kwargs]) == 0
    pre = torch.from_numpy(np.load(tmp_path / 'pre.npy'))
    assert pre.shape == (2, TINY_KWARGS['embed_dim'])
    with torch.no_grad():
        torch.testing.assert_close(clip_like.head(pre), torch.from_numpy(clip), atol=1e-4, rtol=1e-4)
    capsys.readouterr()
    # a fine-tuned classifier's head is not CLIP's projection
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--features', str(tmp_path / 'x.npy'),
                 '--feature-space', 'clip']) == 2
    assert '--feature-space clip needs a CLIP-initialised model' in one_error_line(capsys)
    assert not (tmp_path / 'x.npy').exists()


def test_outputs_that_are_not_ours_are_never_replaced(videos, trained_checkpoint, tmp_path, capsys):
    good, _ = videos
    table = tmp_path / 'table.csv'
    table.write_text('path,label\na.mp4,x\n')
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--output', str(table)]) == 2
    assert f'--output {table} exists and is not a list of results' in one_error_line(capsys)
    assert table.read_text() == 'path,label\na.mp4,x\n' and not list(tmp_path.glob('table.csv.*'))
    other = tmp_path / 'other.npy'
    np.save(other, np.zeros(3))
    assert main([str(good[0]), '--checkpoint', str(trained_checkpoint), '--features', str(other),
                 '--feature-space', 'pre-logits']) == 2
    assert f'--features {other} exists and holds a 1-d array' in one_error_line(capsys)
    np.testing.assert_array_equal(np.load(other), np.zeros(3))


def test_show_merges_draws_every_video_it_predicts(videos, trained_checkpoint, tmp_path, capsys):
    good, _ = videos
    out = tmp_path / 'merges'
    assert main([str(p) for p in good] + ['--checkpoint', str(trained_checkpoint), '--show-merges', str(out),
                                          '-j', '0']) == 0
    for video in good:
        pictures = sorted(p.name for p in (out / video.name).iterdir())
        assert 'contact_sheet.png' in pictures and any(p.startswith('inti') for p in pictures), pictures
        assert all((out / video.name / p).stat().st_size > 1000 for p in pictures)


def test_show_merges_needs_an_inti_model(videos, tmp_path, capsys):
    good, _ = videos
    model_args = dict(TINY_KWARGS, num_classes=2, num_frames=4, inti_after=())
    naive = tmp_path / 'naive.pth.tar'
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, label_names=['left', 'right'], epoch=0,
                    state_dict=timm.create_model('inti_vit_b16', **model_args).state_dict()), naive)
    assert main([str(good[0]), '--checkpoint', str(naive), '--show-merges', str(tmp_path / 'm')]) == 2
    assert 'has no InTI layers' in capsys.readouterr().err
    assert not (tmp_path / 'm').exists()


def test_videos_with_broken_timestamps_get_predictions(trained_checkpoint, tmp_path, capsys):
    """Timestamps equal, shuffled or absent (a raw stream) while every frame decodes: not 'damaged'."""
    from timm_inti.video.synthetic import write_broken_timestamps
    paths = [write_broken_timestamps(tmp_path / name, kind) for kind, name in
             (('equal', 'equal.mp4'), ('shuffled', 'shuffled.mkv'), ('missing', 'missing.h264'))]
    code = main([*map(str, paths), '--checkpoint', str(trained_checkpoint), '--json', '--workers', '0'])
    out, err = capsys.readouterr()
    assert code == 0 and 'error' not in err, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [r['path'] for r in results] == [str(p) for p in paths]
    assert all(r['predictions'][0]['label'] == 'right' for r in results)


# ------------------------------------------------------------------------------------ bad input, as a table
# Row: (argv with {video} {ckpt} {tmp}, setup(tmp) or None, exit status, message regex, files it may leave).
# ``{ckpt}`` is the 'left'/'right' checkpoint, ``{tmp}`` the row's folder; every file under it is checked.

def _write(name, text):
    return lambda tmp: (tmp / name).write_text(text.format(tmp=tmp))


def _earlier_output(*extra):
    """An --output of an earlier run with the default settings (plus ``extra``), recorded beside it."""
    def setup(tmp):
        assert main([str(tmp / 'in' / 'a.mp4'), '--checkpoint', str(tmp / 'last.pth.tar'), '--output',
                     str(tmp / 'out.jsonl'), '-j', '0', *extra]) == 0
    return setup


PREDICT_CASES = [
    ('{tmp}/list.jsonl --checkpoint {ckpt} --output {tmp}/list.jsonl', _write('list.jsonl', '{{"path": "x"}}\n'),
     2, r'--output .*/list.jsonl is also an input \(a list of the videos\): the answers would replace it', ()),
    ('{tmp}/list.txt --checkpoint {ckpt} --features {tmp}/list.txt', _write('list.txt', '{tmp}/in/a.mp4\n'),
     2, r'--features .*/list.txt: the file must end in .npy', ()),
    ('{tmp}/classes.txt --checkpoint {ckpt}', _write('classes.txt', 'abseiling\nair drumming\n'), 2,
     r"classes.txt: none of its 2 lines names a video file or an existing path \(the first: 'abseiling'\): a list "
     r'of class names\? give it with --labels FILE .* or --zero-shot-labels FILE', ()),
    ('{video} --checkpoint {ckpt} --output {tmp}/out.jsonl --top-k 1', _earlier_output(), 2,
     r'--output .*/out.jsonl holds results of other settings \(top_k 5 -> 1\): name another file, or run with the '
     r'same settings to resume', ()),
    ('{video} --checkpoint {tmp}/other.pth.tar --output {tmp}/out.jsonl', _earlier_output(), 2,
     r'--output .*/out.jsonl holds results of other settings \(checkpoint .*/last.pth.tar. -> .*/other.pth.tar', ()),
    ('{video} --checkpoint {ckpt} --output {tmp}/out.jsonl --clips 2', _earlier_output(), 2,
     r'other settings \(clips 1 -> 2\)', ()),
    ('{video} --checkpoint {ckpt} --pretrained-path {tmp}/w.safetensors', None, 2,
     r'--pretrained-path .*/w.safetensors and --checkpoint .*/last.pth.tar both give the weights: leave one out', ()),
    ('{video} --checkpoint {ckpt} --zero-shot-labels {tmp}/words.txt', _write('words.txt', 'a\nb\n'), 2,
     r'no known text tower for a 64-wide model: .* --text-tower MODEL:PRETRAINED .* or --text-tower local-dir:DIR',
     ()),
]


@pytest.mark.parametrize('line, setup, code, message, writes', PREDICT_CASES,
                         ids=[f'{i:02d}:{c[0][:50]}' for i, c in enumerate(PREDICT_CASES)])
def test_predict_refuses(tmp_path, trained_checkpoint, capsys, line, setup, code, message, writes):
    from table import check_case
    video = write_video(tmp_path / 'in' / 'a.mp4', num_frames=8, size=(32, 32))
    other = tmp_path / 'other.pth.tar'
    torch.save(dict(torch.load(trained_checkpoint, weights_only=False), epoch=9), other)
    if setup is not None:
        setup(tmp_path)
    argv = line.format(video=video, ckpt=trained_checkpoint, tmp=tmp_path).split()
    check_case(main, 'timm-inti-predict', argv, tmp_path, code, message, capsys, writes)


def test_show_merges_of_two_videos_of_one_name_in_two_folders(trained_checkpoint, tmp_path):
    first = write_video(tmp_path / 'cam1' / 'clip.mp4', num_frames=8, size=(32, 32))
    second = write_video(tmp_path / 'cam2' / 'clip.mp4', num_frames=8, size=(32, 32), direction=-1)
    out = tmp_path / 'merges'
    assert main([str(first), str(second), '--checkpoint', str(trained_checkpoint), '--show-merges', str(out),
                 '-j', '0']) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 2 and all(f.startswith('clip.mp4-') for f in folders), folders
    sheets = [(out / f / 'contact_sheet.png').read_bytes() for f in folders]
    assert sheets[0] != sheets[1], 'each video keeps its own pictures'


def test_the_settings_of_an_output_are_recorded_and_a_rerun_with_them_resumes(videos, trained_checkpoint, tmp_path,
                                                                                capsys):
    good, _ = videos
    out = tmp_path / 'out.jsonl'
    args = [str(good[0]), '--checkpoint', str(trained_checkpoint), '--output', str(out), '--top-k', '1', '-j', '0']
    assert main(args) == 0
    settings = json.loads((tmp_path / 'out.jsonl.settings.json').read_text())
    assert settings['top_k'] == 1 and settings['checkpoint'] == str(trained_checkpoint)
    assert main([str(good[1])] + args) == 0
    assert '1 videos to do, 1 of 2 already done' in capsys.readouterr().err
