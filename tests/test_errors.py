"""Bad input and faults, as a new user meets them: every command ends with ONE line ``PROG: error: ...``.

The table below feeds each case to a command in-process and asserts on the exit status
(2: usage or configuration, 1: runtime), the message (a regex; ``{name}`` stands for a
path of the ``world`` fixture or the case's ``tmp``, escaped) and the files left on disk:
a failing command changes no file that was there before, and leaves no new file except
those its row allows (``writes``, globs relative to ``tmp``). Adding a case is one line.

Row: ``Case(COMMAND_LINE, EXIT_STATUS, MESSAGE_REGEX, setup=..., writes=(...))``; the
command line names the command first (train, export, convert, publish) and may use
``{train}`` (a tiny training run on the test videos, output in ``{tmp}/out``).
"""
import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Tuple

import pytest
import timm
import torch
from conftest import TINY_KWARGS, write_video
from table import snapshot

from timm_inti.hub import save_pretrained
from timm_inti.predict import main as predict_main
from timm_inti.train import main as train_main

TINY_ARGS = ('--model inti_vit_b16 --model-kwargs embed_dim=64 depth=4 num_heads=2 patch_size=8 inti_after=(2,) '
             '--img-size 32 --num-frames 4 --workers 0')
TRAIN = f'--data-dir {{data}} {TINY_ARGS} -b 2 --epochs 1 --output {{tmp}}/out'

def tool(name):
    """The main() of weights/NAME.py, a script outside the package."""
    import importlib.util
    path = Path(__file__).parents[1] / 'weights' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(f'weights_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


COMMANDS = {  # name -> (prog, main)
    'train': ('timm-inti-train', lambda: train_main),
    'export': ('export.py', lambda: tool('export')),
    'convert': ('convert.py', lambda: tool('convert')),
    'publish': ('publish.py', lambda: tool('publish')),
    'cards': ('cards.py', lambda: tool('cards')),
    'predict': ('timm-inti-predict', lambda: predict_main),
}


def copy_run(tmp: Path, world) -> None:
    """A finished run in the case's output folder, as a user's earlier run with the same --experiment."""
    shutil.copytree(world['run_dir'], tmp / 'out' / 'run')


def saved(config: Optional[str] = None, weights: Optional[bytes] = None) -> Callable:
    """A save_pretrained folder at {tmp}/saved, its config.json or weights replaced."""
    def setup(tmp: Path, world) -> None:
        shutil.copytree(world['saved'], tmp / 'saved')
        if config is not None:
            (tmp / 'saved' / 'config.json').write_text(config)
        if weights is not None:
            (tmp / 'saved' / 'model.safetensors').write_bytes(weights)
    return setup


class Case(NamedTuple):
    line: str
    code: int
    message: str
    setup: Optional[Callable] = None
    writes: Tuple[str, ...] = ()


CASES = [
    # training flags, refused up front
    Case('train {train} --epochs 0', 2, r'argument --epochs: 0 is not a positive integer'),
    Case('train {train} --grad-accum-steps 0', 2, r'argument --grad-accum-steps: 0 is not a positive integer'),
    Case('train {train} -b 0', 2, r'argument -b/--batch-size: 0 is not a positive integer'),
    Case('train {train} --num-frames -4', 2, r'argument --num-frames: -4 is not a positive integer'),
    Case('train {train} --lr 0', 2, r'argument --lr: 0 is not a positive number'),
    Case('train {train} --workers -1', 2, r'argument -j/--workers: -1 is not a non-negative integer'),
    Case('train {train} --checkpoint-hist 0', 2, r'argument --checkpoint-hist: 0 is not a positive integer'),
    Case('train {train} --eval-metric top3', 2, r"argument --eval-metric: invalid choice: 'top3'"),
    Case('train {train} --model-ema-decay 1.5', 2, r'--model-ema-decay 1.5 is not in \(0, 1\)'),
    Case('train {train} --smoothing 1', 2, r'--smoothing 1.0 is not in \[0, 1\)'),
    Case('train {train} --mixup -1', 2, r'--mixup -1.0 is negative'),
    Case('train {train} --eval-only', 2, r'--eval-only evaluates a checkpoint: give --resume or --initial-checkpoint'),
    Case('train {train} --eval-only --resume {run_ckpt} --val-split ""', 2, r'--eval-only needs a validation split'),
    Case('train {train} --val-split "" --eval-metric loss', 2, r'--eval-metric loss ranks validation results'),
    Case('train {train} --resume {run_ckpt} --initial-checkpoint {plain}', 2, r'leave out --initial-checkpoint'),
    Case('train {train} --num-classes 1', 2, r'--num-classes 1, but the data has 2 classes \(left, right\)'),
    Case('train {train} --num-classes 3', 2, r'--num-classes 3, but the data has 2 classes'),
    Case('train {train} -b 64', 2, r"-b 64 is more than the 8 training videos of 'train': no full batch"),
    Case('train {train} --model no_such_model', 2, r"unknown model 'no_such_model'"),
    Case('train {train} --model-kwargs not_an_arg=1', 2, r"unexpected keyword argument 'not_an_arg'"),
    Case('train {train} --opt not_an_optimizer', 2, r'--opt not_an_optimizer: not an optimizer timm knows'),
    Case('train {train} --sched not_a_schedule', 2, r"--sched not_a_schedule: Unknown scheduler"),
    # a run folder is never overwritten
    Case('train {train} --experiment run', 2,
         r'{tmp}/out/run already holds a run \(last.pth.tar, model_best.pth.tar, summary.csv, checkpoint-0.pth.tar\): '
         r'continue it with '
         r'--resume {tmp}/out/run/last.pth.tar, or start anew under another --experiment name', setup=copy_run),
    Case('train {train} --experiment run --resume {run_ckpt}', 2,
         r'{tmp}/out/run holds another run .* than the one --resume {run_ckpt} continues', setup=copy_run),
    # data
    Case('train {train} --data-dir ""', 2, r'give --data-dir DIR'),
    Case('train {train} --data-dir {tmp}/nowhere', 1, r'--data-dir {tmp}/nowhere: no such folder'),
    Case('train {train} --train-split {tmp}/none.txt', 1, r"split '{tmp}/none.txt': {tmp}/none.txt is neither"),
    Case('train {train} --data-dir {no_val}', 2, r'no validation split: {no_val}/val does not exist; .*--val-split ""'),
    Case('train {train} --data-dir {loose}', 2, r'{loose}/train holds 1 video \(stray.mp4\) outside any class folder'),
    Case('train {train} --data-dir {extra_val}', 2,
         r'{extra_val}/val: 1 class \(up\) not among the 2 classes \(left, right\) of training \(2 videos, '
         r'e.g. {extra_val}/val/up/'),
    Case('train {train} --data-dir {corrupt} --bad-files skip --experiment c', 1,
         r'epoch 0 trained on no clip: none of the 4 training videos could be decoded \(4 unreadable videos',
         writes=('out', 'out/c')),
    Case('train {train} --train-split {missing_list} --val-split "" --experiment m', 1,
         r'16 videos in a row could not be decoded, the first: {data}/nope/.*--bad-files skip',
         writes=('out', 'out/m')),
    Case('train {train} --train-split {missing_list} --val-split "" --experiment m --workers 1', 1,
         r'^timm-inti-train: error: 16 videos in a row could not be decoded, the first: {data}/nope/.*no such file; ',
         writes=('out', 'out/m')),
    Case('train {train} --data-dir {bad_val} --experiment v', 1,
         r"validation split 'val' has no readable video \(4 unreadable .*--val-split \"\"", writes=('out', 'out/v')),
    # checkpoints
    Case('train {train} --resume {empty}', 1, r'{empty}: not a readable checkpoint \(the file is empty, 0 bytes\)'),
    Case('train {train} --resume {random}', 1, r'{random}: not a readable checkpoint'),
    Case('train {train} --resume {tmp}/missing.pth.tar', 1, r'{tmp}/missing.pth.tar: no such checkpoint file'),
    Case('train {train} --resume {plain}', 1, r'{plain}: not a training checkpoint .*--initial-checkpoint'),
    Case('train {train} --resume {deeper}', 2, r'--model-kwargs depth=4 contradicts {deeper}, a checkpoint of depth=5'),
    Case('train {train} --resume {other_arch}', 2,
         r'--model inti_vit_b16 contradicts {other_arch}, a checkpoint of inti_vit_l14: leave it out'),
    Case('train {train} --initial-checkpoint {empty}', 1, r'{empty}: not a readable checkpoint \(the file is empty'),
    Case('train {train} --initial-checkpoint {random}', 1, r'{random}: not a readable checkpoint'),
    # export
    Case('export {empty} --out {tmp}/x', 1, r'{empty}: not a readable checkpoint \(the file is empty'),
    Case('export {random} --out {tmp}/x', 1, r'{random}: not a readable checkpoint'),
    Case('export {plain} --out {tmp}/x', 1, r'{plain}: not a timm-inti-train checkpoint'),
    Case('export {run_ckpt} --out {tmp}/x --use-ema', 1, r'{run_ckpt}: no EMA weights .*leave out --use-ema'),
    Case('export {run_ckpt} --out {tmp}/x --labels {binary}', 2, r'the labels file {binary} is not a text file'),
    Case('export {run_ckpt} --out {tmp}/x --labels {three}', 2, r'--labels {three} holds 3 names for a model with 2'),
    Case('export {run_ckpt} --out {tmp}/x --labels {tmp}/no.txt', 1, r'cannot read the labels file {tmp}/no.txt'),
    # convert
    Case('convert {empty} --model inti_vit_b16 --out {tmp}/x', 1, r'{empty}: not a readable checkpoint'),
    Case('convert {plain} --model no_such_model --out {tmp}/x', 2, r"unknown model 'no_such_model'"),
    Case('convert {plain} --model inti_vit_b16 --num-frames 0 --out {tmp}/x', 2, r'--num-frames: 0 is not a positive'),
    # publish (and any local-dir: name)
    Case('cards --models no_such_model --out {tmp}/cards', 2, r'no pretrained tags for no_such_model; the models: '),
    Case('publish {tmp}/nothing --repo-id a/b --dry-run', 1, r'local-dir:{tmp}/nothing: no such folder'),
    Case('publish {tmp}/saved --repo-id a/b --dry-run', 1, r'{tmp}/saved/config.json: not valid JSON', saved('')),
    Case('publish {tmp}/saved --repo-id a/b --dry-run', 1, r'config.json: not valid JSON .* line 1', saved('{"a": ')),
    Case('publish {tmp}/saved --repo-id a/b --dry-run', 1, r'{tmp}/saved/config.json: not a timm model config',
         saved('{"model_type": "bert"}')),
    Case('publish {tmp}/saved --repo-id a/b --dry-run', 1, r'config.json: not a timm model config', saved('[1, 2]')),
    Case('publish {tmp}/saved --repo-id a/b --dry-run', 1, r"architecture 'resnet_x' is not a registered timm model",
         saved('{"architecture": "resnet_x"}')),
    Case('publish {tmp}/saved --repo-id a/b --dry-run', 1, r'config.json: "model_args" must be an object',
         saved('{"architecture": "inti_vit_b16", "model_args": [4]}')),
    Case('publish {tmp}/saved --repo-id a/b --dry-run', 1, r'{tmp}/saved does not load back.*cannot read',
         saved(weights=b'')),
    # predict
    Case('predict {video} --checkpoint {empty}', 1, r'{empty}: not a readable checkpoint \(the file is empty'),
    Case('predict {video} --checkpoint {run_ckpt} --use-ema', 1, r'{run_ckpt}: no EMA weights'),
    Case('predict {video} --checkpoint {run_ckpt} --labels {binary}', 2, r'the labels file {binary} is not a text'),
    Case('predict {video} --model local-dir:{tmp}/saved', 1, r'{tmp}/saved/config.json: not valid JSON', saved('')),
    Case('predict {video} --checkpoint {run_ckpt} --top-k 0', 2, r'argument --top-k: 0 is not a positive integer'),
    Case('predict {video} --checkpoint {run_ckpt} --stride 0', 2, r'argument --stride: 0 is not a positive integer'),
]


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Data folders, checkpoints and files, good and bad, shared by the cases (which never change them)."""
    root = tmp_path_factory.mktemp('world')
    w = {}

    def videos(name, layout):
        for rel in layout:
            write_video(root / name / rel, num_frames=12, size=(32, 32))
        return root / name

    good = [f'{split}/{label}/{label}{k}.mp4' for split, n in (('train', 4), ('val', 2))
            for label in ('left', 'right') for k in range(n)]
    w['data'] = videos('data', good)
    w['loose'] = videos('loose', good + ['train/stray.mp4'])
    w['no_val'] = videos('no_val', [p for p in good if p.startswith('train/')])
    w['extra_val'] = videos('extra_val', good + ['val/up/u0.mp4', 'val/up/u1.mp4'])
    w['corrupt'] = videos('corrupt', [p for p in good if p.startswith('val/')])
    w['bad_val'] = videos('bad_val', [p for p in good if p.startswith('train/')])
    for k in range(4):
        bad = root / 'bad_val' / 'val' / ('left', 'right')[k % 2] / f'bad{k}.mp4'
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(b'not a video' * 100)
    w['video'] = w['data'] / good[0]
    for k in range(4):
        bad = root / 'corrupt' / 'train' / ('left', 'right')[k % 2] / f'bad{k}.mp4'
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(b'not a video' * 100)

    out = root / 'runs'
    assert train_main(shlex.split(TRAIN.format(data=w['data'], tmp=out)) + ['-b', '4', '--experiment', 'run']) == 0
    w['run_dir'] = out / 'out' / 'run'
    w['run_ckpt'] = w['run_dir'] / 'last.pth.tar'

    w['missing_list'] = root / 'missing.txt'
    w['missing_list'].write_text(''.join(f'nope/{k}.mp4 {k % 2}\n' for k in range(4)))
    (root / 'empty.pth').write_bytes(b'')
    w['empty'] = root / 'empty.pth'
    w['random'] = root / 'random.bin'
    w['random'].write_bytes(bytes(range(256)) * 16)
    model = timm.create_model('inti_vit_b16', **dict(TINY_KWARGS, num_frames=4, inti_after=(2,), num_classes=2))
    w['plain'] = root / 'plain.pth'
    torch.save(model.state_dict(), w['plain'])
    deeper = timm.create_model('inti_vit_b16',
                               **dict(TINY_KWARGS, depth=5, num_frames=4, inti_after=(2,), num_classes=2))
    for name, arch, state in (('deeper', 'inti_vit_b16', deeper.state_dict()), ('other_arch', 'inti_vit_l14', {})):
        w[name] = root / f'{name}.pth.tar'
        args = dict(TINY_KWARGS, depth=5, num_frames=4, inti_after=(2,), num_classes=2) if state else {}
        torch.save(dict(arch=arch, state_dict=state, optimizer={}, epoch=0, version=2, model_args=args), w[name])
    w['binary'] = root / 'labels.bin'
    w['binary'].write_bytes(b'\xff\xfe\x00\x01' * 10)
    w['three'] = root / 'three.txt'
    w['three'].write_text('a\nb\nc\n')
    w['saved'] = root / 'saved'
    save_pretrained(model, w['saved'])
    return {k: str(v) for k, v in w.items()}


@pytest.mark.parametrize('case', CASES, ids=[f'{i:02d}:{c.line.replace("{train} ", "")}' for i, c in enumerate(CASES)])
def test_error_case(case, world, tmp_path, capsys):
    if case.setup is not None:
        case.setup(tmp_path, world)
    values = dict(world, tmp=str(tmp_path))
    values['train'] = TRAIN.format(**values)
    argv = shlex.split(case.line.format(**values))
    prog, main = COMMANDS[argv[0]]
    before = snapshot(tmp_path)
    capsys.readouterr()

    try:
        code = main()(argv[1:])
    except SystemExit as e:  # argparse's refusal: usage, then one error line, exit 2
        code = e.code

    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1] if err.strip() else ''
    assert 'Traceback' not in err, err
    assert code == case.code, f'exit {code}, not {case.code}: {err[-2000:]}'
    assert last.startswith(f'{prog}: error: '), err[-2000:]
    expected = case.message.format(**{k: re.escape(v) for k, v in values.items()})
    assert re.search(expected, last), f'{expected!r} not in {last!r}'
    after = snapshot(tmp_path)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f'changed or removed: {changed}'
    new = [p for p in after if p not in before and not any(fnmatch.fnmatch(p, g) for g in case.writes)]
    assert not new, f'left on disk: {new}'


def test_debug_shows_the_traceback(world, tmp_path, monkeypatch):
    argv = shlex.split(TRAIN.format(data=world['data'], tmp=tmp_path)) + ['--resume', world['empty']]
    from timm_inti import CheckpointError
    with pytest.raises(CheckpointError, match='the file is empty'):
        train_main(argv + ['--debug'])
    monkeypatch.setenv('TIMM_INTI_DEBUG', '1')
    with pytest.raises(CheckpointError, match='the file is empty'):
        train_main(argv)


def _run_with_file_size_limit(code: str, limit: int) -> subprocess.CompletedProcess:
    """Run Python ``code`` where no file may grow past ``limit`` bytes: a write fails as on a full disk."""
    import resource

    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]))
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                          preexec_fn=limit_files, timeout=300)


def test_a_full_disk_during_training_names_the_file_and_leaves_no_temporary(world, tmp_path):
    argv = shlex.split(TRAIN.format(data=world['data'], tmp=tmp_path)) + ['--experiment', 'full']
    proc = _run_with_file_size_limit(f'import sys; from timm_inti.train import main; sys.exit(main({argv!r}))',
                                     limit=200_000)  # the summary fits, a checkpoint does not
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'timm-inti-train: error: cannot write {tmp_path}/out/full/last.pth.tar: '), last
    assert 'Traceback' not in proc.stderr
    assert sorted(os.listdir(tmp_path / 'out' / 'full')) == [], 'no checkpoint, no temporary file'


def test_a_full_disk_during_save_pretrained_keeps_the_old_folder(tmp_path):
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS)
    save_pretrained(model, tmp_path / 'out')
    before = snapshot(tmp_path / 'out')
    code = ('import timm, timm_inti; from timm_inti.hub import save_pretrained; '
            f'save_pretrained(timm.create_model("inti_vit_b16", **{TINY_KWARGS!r}), {str(tmp_path / "out")!r})')
    proc = _run_with_file_size_limit(code, limit=100_000)
    assert proc.returncode == 1
    assert f'OSError: [Errno 27] cannot write {tmp_path / "out"}: File too large' in proc.stderr
    assert snapshot(tmp_path / 'out') == before, 'the earlier save is whole, no temporary folder is left'


def test_a_killed_save_pretrained_leaves_a_folder_the_next_save_removes(tmp_path):
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS)
    code = ('import os, signal, timm, timm_inti, timm_inti.hub as hub\n'
            'def killed(model, directory, **kwargs):\n'
            '    (directory / "model.safetensors").write_bytes(b"partial")\n'
            '    os.kill(os.getpid(), signal.SIGKILL)\n'
            'hub.save_for_hf = killed\n'
            f'hub.save_pretrained(timm.create_model("inti_vit_b16", **{TINY_KWARGS!r}), {str(tmp_path / "out")!r})\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name.startswith('.tmp-') for p in (tmp_path / 'out').iterdir()] == [True], 'what a kill leaves'
    save_pretrained(model, tmp_path / 'out')
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['README.md', 'config.json', 'model.safetensors']


def test_a_pickle_save_over_a_safetensors_save_is_the_one_that_loads(tmp_path):
    first = timm.create_model('inti_vit_b16', **TINY_KWARGS)
    second = timm.create_model('inti_vit_b16', **TINY_KWARGS)
    with torch.no_grad():
        second.head.weight.add_(1.0)
    save_pretrained(first, tmp_path / 'out')
    save_pretrained(second, tmp_path / 'out', safe_serialization=False)
    assert not (tmp_path / 'out' / 'model.safetensors').exists()
    loaded = timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True)
    assert torch.equal(loaded.head.weight, second.head.weight)
    save_pretrained(first, tmp_path / 'out')  # and back: the pickle goes
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['README.md', 'config.json', 'model.safetensors']


def test_a_video_deep_in_a_class_folder_keeps_that_class(tmp_path):
    """root/<class>/part1/x.mp4 is of <class>: timm's walk would name it 'part1', merging classes."""
    from timm_inti.video import VideoFolder
    for rel in ('abseiling/part1/a.mp4', 'archery/part1/b.mp4', 'archery/c.mp4'):
        write_video(tmp_path / 'train' / rel, num_frames=4, size=(16, 16))
    folder = VideoFolder(str(tmp_path / 'train'), num_frames=2, train=True, transform=lambda x: x)
    assert folder.classes == ['abseiling', 'archery']
    assert sorted((Path(p).name, t) for p, t in folder.samples) == [('a.mp4', 0), ('b.mp4', 1), ('c.mp4', 1)]
