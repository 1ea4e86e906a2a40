"""The training command on real video files: learning, checkpoints, exact resumption, torchrun, frozen backbone."""
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from conftest import write_video
from timm.data import Mixup

from timm_inti import VideoVisionTransformer
from timm_inti.checkpoints import create_model_from_checkpoint
from timm_inti.cli import read_config
from timm_inti.predict import main as predict_main
from timm_inti.train import main, mix_clips

TINY = ['--model', 'inti_vit_b16', '--model-kwargs', 'embed_dim=64', 'depth=4', 'num_heads=2', 'patch_size=8',
        'inti_after=(2,)', '--img-size', '32', '--num-frames', '4', '--workers', '0', '--warmup-epochs', '0']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """Two classes that are easy to tell apart (dark or bright background, bar moving left or right)."""
    root = tmp_path_factory.mktemp('videos')
    for split, count in (('train', 4), ('val', 2)):
        for label, direction, background in (('left', -1, 20), ('right', 1, 200)):
            for k in range(count):
                write_video(root / split / label / f'{label}{k}.mp4', num_frames=16 + 4 * k, size=(32, 32),
                            direction=direction, background=background)
    return root


def summary(run_dir):
    with open(run_dir / 'summary.csv') as f:
        return list(csv.DictReader(f))


def env_with_repo():
    """This process's environment for a child, with the repository importable and torch's thread count.

    Bit-exact comparisons between a run here and one in a child need the same thread count
    (the order of a parallel sum changes the last bits); another test may have changed ours.
    """
    return dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]),
                OMP_NUM_THREADS=str(torch.get_num_threads()))


def test_learns_and_writes_checkpoints_logs_and_plots(data_dir, tmp_path, capsys):
    args = ['--data-dir', str(data_dir), *TINY, '-b', '4', '--epochs', '6', '--lr', '2e-3', '--output', str(tmp_path),
            '--experiment', 'run', '--model-ema', '--model-ema-decay', '0.5']
    assert main(args) == 0
    run = tmp_path / 'run'
    rows = summary(run)
    assert len(rows) == 6
    losses = [float(r['train_loss']) for r in rows]
    assert losses[-1] < 0.6 * losses[0], losses
    assert float(rows[-1]['eval_top1']) == 100.0
    assert json.loads((run / 'summary.json').read_text())[-1]['epoch'] == '5'
    assert (run / 'summary.png').stat().st_size > 0
    assert {'last.pth.tar', 'model_best.pth.tar'} <= {p.name for p in run.iterdir()}
    assert not any(p.name.startswith('tmp') for p in run.iterdir()), 'checkpoints are written atomically'

    checkpoint = torch.load(run / 'last.pth.tar', map_location='cpu', weights_only=True)
    assert checkpoint['arch'] == 'inti_vit_b16' and checkpoint['label_names'] == ['left', 'right']
    assert checkpoint['epoch'] == 5 and checkpoint['step'] == 12
    assert {'state_dict', 'state_dict_ema', 'optimizer', 'lr_scheduler', 'model_args'} <= set(checkpoint)
    model = timm.create_model(checkpoint['arch'], **checkpoint['model_args'])  # the contract rebuilds the model
    model.load_state_dict(checkpoint['state_dict'])
    assert model.num_classes == 2 and model.inti_after == (2,)

    # a validation folder with one of the classes is labelled by the checkpoint's classes, not its own
    only_right = tmp_path / 'only_right'
    (only_right / 'val').mkdir(parents=True)
    (only_right / 'val' / 'right').symlink_to(data_dir / 'val' / 'right')
    capsys.readouterr()
    assert main(['--data-dir', str(only_right), *TINY, '--eval-only', '--resume', str(run / 'last.pth.tar')]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['eval']['top1'] == 100.0


def test_eval_only_with_views(data_dir, tmp_path, capsys):
    assert main(['--data-dir', str(data_dir), *TINY, '--epochs', '1', '--output', str(tmp_path),
                 '--experiment', 'e']) == 0
    capsys.readouterr()
    assert main(['--data-dir', str(data_dir), *TINY, '--eval-only', '--resume', str(tmp_path / 'e' / 'last.pth.tar'),
                 '--test-clips', '2', '--test-crops', '3']) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result['views'] == 6 and set(result['eval']) == {'loss', 'top1', 'top5'}


@pytest.mark.slow
@pytest.mark.parametrize('num_samples', [1, 2])
def test_a_killed_run_resumes_to_the_same_weights(data_dir, tmp_path, num_samples):
    common = ['--data-dir', str(data_dir), *TINY, '-b', '2', '--epochs', '4', '--seed', '7', '--output', str(tmp_path),
              '--mixup', '0.5', '--model-ema', '--model-ema-decay', '0.9', '--num-samples', str(num_samples)]
    assert main([*common, '--experiment', 'straight']) == 0

    cmd = [sys.executable, '-m', 'timm_inti.train', *common, '--experiment', 'killed']
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env_with_repo())
    for line in proc.stderr:
        if line.startswith('epoch 1/'):  # epoch 1 is checkpointed and logged; epoch 2 is under way
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(summary(tmp_path / 'killed')) < 4
    assert main([*common, '--experiment', 'killed', '--resume', str(tmp_path / 'killed' / 'last.pth.tar')]) == 0

    assert [r['epoch'] for r in summary(tmp_path / 'killed')] == ['0', '1', '2', '3'], 'replayed epochs logged once'

    straight = torch.load(tmp_path / 'straight' / 'last.pth.tar', map_location='cpu', weights_only=True)
    resumed = torch.load(tmp_path / 'killed' / 'last.pth.tar', map_location='cpu', weights_only=True)
    assert resumed['epoch'] == straight['epoch'] == 3
    for key in ('state_dict', 'state_dict_ema'):
        for name, tensor in straight[key].items():
            assert torch.equal(tensor, resumed[key][name]), f'{key}.{name}'


def test_without_validation_there_is_no_best_checkpoint(data_dir, tmp_path, capsys):
    assert main(['--data-dir', str(data_dir), *TINY, '-b', '4', '--epochs', '2', '--val-split', '', '--output',
                 str(tmp_path), '--experiment', 'noval']) == 0
    assert 'no validation split: no "best" checkpoint is chosen' in capsys.readouterr().err
    files = sorted(p.name for p in (tmp_path / 'noval').iterdir() if p.name.endswith('.pth.tar'))
    assert files == ['checkpoint-0.pth.tar', 'checkpoint-1.pth.tar', 'last.pth.tar'], 'last only, no model_best'
    rows = summary(tmp_path / 'noval')
    assert len(rows) == 2 and not any(key.startswith('eval_') for key in rows[0])


def test_reusing_a_finished_run_resumes_it_only_when_asked(data_dir, tmp_path, capsys):
    common = ['--data-dir', str(data_dir), *TINY, '-b', '4', '--epochs', '1', '--output', str(tmp_path),
              '--experiment', 'run']
    assert main(common) == 0
    last = tmp_path / 'run' / 'last.pth.tar'
    before = {p.name: p.read_bytes() for p in (tmp_path / 'run').iterdir()}
    capsys.readouterr()
    assert main(common) == 2  # the same command again: refused, the run untouched
    assert f'--resume {last}' in capsys.readouterr().err
    assert main([*common, '--resume', str(last)]) == 0  # asked to resume a finished run: nothing to do
    assert 'finished its 1 epochs already' in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / 'run').iterdir()} == before
    assert main([*common[:-4], '--epochs', '2', '--output', str(tmp_path), '--experiment', 'run',
                 '--resume', str(last)]) == 0  # or to train on
    assert [r['epoch'] for r in summary(tmp_path / 'run')] == ['0', '1']


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(data_dir, tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29533',
           '-m', 'timm_inti.train', '--data-dir', str(data_dir), *TINY, '-b', '2', '--epochs', '2', '--device', 'cpu',
           '--output', str(tmp_path), '--experiment', 'ddp']
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env_with_repo(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'rank 0/2 on cpu' in proc.stderr and 'rank 1/2 on cpu' in proc.stderr
    rows = summary(tmp_path / 'ddp')
    assert len(rows) == 2, 'one process writes the log'
    assert all(int(r['train_samples']) == 8 for r in rows), 'both processes train: their samples add up'
    assert os.listdir(tmp_path) == ['ddp']


def test_frozen_backbone_trains_only_the_video_parts_and_head(data_dir, tmp_path):
    start = timm.create_model('inti_vit_b16', embed_dim=64, depth=4, num_heads=2, patch_size=8, img_size=32,
                              inti_after=(2,), num_classes=2, num_frames=4)
    initial = tmp_path / 'initial.pth'
    torch.save(start.state_dict(), initial)
    assert main(['--data-dir', str(data_dir), *TINY, '--epochs', '1', '--freeze-backbone', '--initial-checkpoint',
                 str(initial), '--output', str(tmp_path), '--experiment', 'peft', '--weight-decay', '0']) == 0
    trained = torch.load(tmp_path / 'peft' / 'last.pth.tar', map_location='cpu', weights_only=True)['state_dict']
    for name, tensor in start.state_dict().items():
        video_part = name.startswith(('inti.', 'temporal_embed', 'head.'))
        if name.startswith(('inti.2.mlp.fc2', 'head.')):
            assert not torch.equal(trained[name], tensor), f'{name} should train'
        elif not video_part:
            assert torch.equal(trained[name], tensor), f'{name} should stay frozen'


def test_cutmix_cuts_the_same_box_from_every_frame():
    mixup = Mixup(mixup_alpha=0., cutmix_alpha=1.0, label_smoothing=0., num_classes=2)
    clips = torch.stack([torch.zeros(3, 4, 16, 16), torch.ones(3, 4, 16, 16)])
    mixed, target = mix_clips(mixup, clips.clone(), torch.tensor([0, 1]))
    assert mixed.shape == clips.shape and target.shape == (2, 2)
    box = mixed[0, 0, 0] == 1  # the region pasted into clip 0
    assert box.any() and not box.all()
    for t in range(4):
        assert torch.equal(mixed[0, :, t] == 1, box.expand(3, 16, 16)), 'the same box on every frame'


@pytest.mark.parametrize('shared', [[], ['--shared-frames']])
def test_repeated_sampling_visits_every_video_once_per_epoch(data_dir, tmp_path, shared):
    """-b counts clips: 8 videos, -b 4 and 2 clips per video make 4 steps of 2 videos, 16 clips an epoch."""
    args = ['--data-dir', str(data_dir), *TINY, '-b', '4', '--num-samples', '2', '--epochs', '1', '--val-split', '',
            '--output', str(tmp_path), '--experiment', 'k2', *shared]
    assert main(args) == 0
    assert int(summary(tmp_path / 'k2')[0]['train_samples']) == 16
    assert torch.load(tmp_path / 'k2' / 'last.pth.tar', map_location='cpu', weights_only=True)['step'] == 4


# ---------------------------------------------------------------------------------------------
# any timm ViT name; checkpoints that describe their model; the log

GENERIC = ['--model', 'vit_small_patch16_224', '--model-kwargs', 'embed_dim=64', 'depth=4', 'num_heads=2',
           'patch_size=8', 'inti_after=(2,)', '--img-size', '32', '--num-frames', '4', '--warmup-epochs', '0']


@pytest.fixture(scope='module')
def generic_run(data_dir, tmp_path_factory):
    """A plain timm ViT name trained for 2 epochs with layer decay, default workers on a 1-CPU affinity: (run, log)."""
    out = tmp_path_factory.mktemp('generic')
    args = ['--data-dir', str(data_dir), *GENERIC, '-b', '4', '--epochs', '2', '--layer-decay', '0.75',
            '--output', str(out), '--experiment', 'g']
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, 'sched_getaffinity', lambda pid: {0}, raising=False)
        mp.setattr(sys, 'stderr', err)
        assert main(args) == 0, err.getvalue()[-3000:]
    return out / 'g', err.getvalue()


def test_a_plain_timm_vit_name_trains_into_a_video_model_that_predicts(generic_run, data_dir, tmp_path, capsys):
    run, _ = generic_run
    checkpoint = torch.load(run / 'last.pth.tar', map_location='cpu', weights_only=True)
    assert checkpoint['arch'] == 'vit_small_patch16_224'
    model, labels = create_model_from_checkpoint(run / 'last.pth.tar')
    assert isinstance(model, VideoVisionTransformer) and type(model).__name__ == 'VideoVisionTransformer'
    assert model.inti_after == (2,) and model.num_frames == 4 and labels == ['left', 'right']
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 2)

    out = tmp_path / 'predictions.jsonl'
    assert predict_main([str(data_dir / 'val'), '--checkpoint', str(run / 'model_best.pth.tar'), '--output', str(out),
                         '-j', '0']) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all({p['label'] for p in row['predictions']} == {'left', 'right'} for row in rows)


def test_the_log_has_one_line_per_epoch_with_time_speed_and_the_base_lr(generic_run):
    run, log = generic_run
    epochs = [line for line in log.splitlines() if line.startswith('epoch ')]
    assert len(epochs) == 2, log
    pattern = (r'^epoch 0/2: train loss \d\.\d{4}, 8 clips in \d+\.\d s \(\d+\.\d clips/s\); '
               r'eval top1 \d+\.\d\d, top5 100\.00, loss \d\.\d{4} in \d+\.\d s; lr 0\.0003$')
    assert re.match(pattern, epochs[0]), epochs[0]  # --lr, not the lowest layer-decay group's 0.0003 * 0.75 ** 5
    assert float(summary(run)[0]['lr']) == pytest.approx(3e-4)
    assert '1 loader workers per process' in log, 'the default -j is capped to the CPUs the process may use'
    assert 'Current checkpoints' not in log
    kept = [line for line in log.splitlines() if line.startswith('checkpoints kept in')]
    assert kept == [f'checkpoints kept in {run}: checkpoint-0.pth.tar (top1 {float(summary(run)[0]["eval_top1"]):.4g}),'
                    f' checkpoint-1.pth.tar (top1 {float(summary(run)[1]["eval_top1"]):.4g})']


def test_the_readme_eval_and_resume_lines_work_for_a_non_default_model(generic_run, data_dir, tmp_path, capsys):
    run, _ = generic_run
    copy = tmp_path / 'g'
    shutil.copytree(run, copy)
    capsys.readouterr()
    assert main(['--data-dir', str(data_dir), '--eval-only', '--resume', str(copy / 'model_best.pth.tar'),
                 '--test-clips', '2', '--test-crops', '3', '-j', '0']) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['views'] == 6

    # lr and epochs may change: the schedule is rebuilt from them
    assert main(['--data-dir', str(data_dir), '--resume', str(copy / 'last.pth.tar'), '--output', str(tmp_path),
                 '--experiment', 'g', '--epochs', '3', '--lr', '1e-4', '-j', '0']) == 0
    err = capsys.readouterr().err
    assert '--epochs 3 (was 2), --lr 0.0001 (was 0.0003): the schedule is rebuilt' in err
    rows = summary(copy)
    assert [r['epoch'] for r in rows] == ['0', '1', '2']
    assert float(rows[2]['lr']) == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * 2 / 3)))
    assert torch.load(copy / 'last.pth.tar', map_location='cpu', weights_only=True)['arch'] == 'vit_small_patch16_224'


def test_initial_checkpoint_takes_the_model_and_a_new_head_for_other_classes(generic_run, data_dir, tmp_path, capsys):
    run, _ = generic_run
    three = tmp_path / 'three'
    for name in ('left', 'right'):
        (three / 'train').mkdir(parents=True, exist_ok=True)
        (three / 'train' / name).symlink_to(data_dir / 'train' / name)
    (three / 'train' / 'more').symlink_to(data_dir / 'train' / 'left')
    assert main(['--data-dir', str(three), '--val-split', '', '--initial-checkpoint', str(run / 'last.pth.tar'),
                 '--epochs', '1', '-b', '4', '-j', '0', '--output', str(tmp_path), '--experiment', 'i']) == 0
    assert 'its head (2 classes: left, right) is not loaded' in capsys.readouterr().err
    checkpoint = torch.load(tmp_path / 'i' / 'last.pth.tar', map_location='cpu', weights_only=True)
    assert checkpoint['arch'] == 'vit_small_patch16_224' and checkpoint['label_names'] == ['left', 'more', 'right']
    assert checkpoint['model_args']['depth'] == 4 and checkpoint['model_args']['num_frames'] == 4


def run_case(argv, capsys):
    """``main(argv)``'s exit status and its last stderr line, asserting no traceback."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert 'Traceback' not in err and 'weights_only=False' not in err, err
    return code, (err.strip().splitlines() or [''])[-1], err


@pytest.fixture(scope='module')
def probes(data_dir, generic_run, tmp_path_factory):
    """Data and files for the probe table: a class of unreadable videos, a stray video, weights that are not."""
    root = tmp_path_factory.mktemp('probes')
    for name, extra in (('broken', 'train/broken/b{k}.mp4'), ('loose', 'train/stray{k}.mp4')):
        for split in ('train', 'val'):
            for label in ('left', 'right'):
                (root / name / split).mkdir(parents=True, exist_ok=True)
                (root / name / split / label).symlink_to(data_dir / split / label)
        for k in range(2):
            path = root / name / extra.format(k=k)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes((i * 31 + k) % 256 for i in range(3000)))
    (root / 'random.pth').write_bytes(b'\x80\x02' + bytes((i * 97 + 13) % 256 for i in range(4000)))
    (root / 'empty.pth').write_bytes(b'')
    (root / 'folder.pth').mkdir()
    return dict(root=str(root), data=str(data_dir), run=str(generic_run[0]))


def overlay(file):
    return ['--pretrained', '--model-kwargs', 'embed_dim=64', 'depth=4', 'num_heads=2', 'patch_size=8',
            'inti_after=(2,)', f"pretrained_cfg_overlay={{{{'file':'{file}'}}}}"]  # braces doubled for str.format


PROBES = [  # (args, exit status, message regex of the last line, files left under tmp besides those before)
    # names that cannot become a video model: refused before any data is read ({root}/loose would be refused)
    (['--data-dir', '{root}/loose', '--model', 'resnet18'], 2,
     r'resnet18 is a timm.models.resnet.ResNet, which is neither a timm VisionTransformer nor Eva: timm_inti turns '
     r'models of class timm.models.vision_transformer.VisionTransformer or timm.models.eva.Eva', ()),
    (['--data-dir', '{root}/loose', '--model', 'resnet18', '--img-size', '32'], 2, r'resnet18 is a .*ResNet', ()),
    (['--data-dir', '{root}/loose', '--model', 'convnext_atto'], 2,
     r'convnext_atto is a timm.models.convnext.ConvNeXt, .*VisionTransformer nor Eva', ()),
    (['--data-dir', '{root}/loose', *GENERIC[:8], '--img-size', '33', '--num-frames', '4'], 2,
     r'--img-size 33 is not a multiple of the patch size 8 of vit_small_patch16_224: use 32 or 40$', ()),
    # a class whose every training video is unreadable is refused, not silently left out
    (['--data-dir', '{root}/broken', *TINY, '--val-split', '', '-b', '2', '--epochs', '1', '--output', '{tmp}',
      '--experiment', 'b'], 1,
     r'epoch 0: every training video of broken \(1 of 3 classes\) was unreadable .*remove the class from', ('b',)),
    (['--data-dir', '{root}/broken', *TINY, '--val-split', '', '-b', '2', '--epochs', '1', '--output', '{tmp}',
      '--experiment', 'b', '--bad-files', 'skip'], 1, r'every training video of broken', ('b',)),
    # weights files that are not
    (['--data-dir', '{data}', *TINY[:2], *overlay('{root}/random.pth'), *TINY[8:]], 1,
     r'{root}/random.pth: cannot read the pretrained weights \(not a PyTorch weights file', ()),
    (['--data-dir', '{data}', *TINY[:2], *overlay('{root}/empty.pth'), *TINY[8:]], 1,
     r'{root}/empty.pth: cannot read the pretrained weights \(the file is empty, 0 bytes\)$', ()),
    (['--data-dir', '{data}', *TINY[:2], *overlay('{root}/folder.pth'), *TINY[8:]], 1,
     r'{root}/folder.pth: cannot read the pretrained weights \(not a file\)$', ()),
    (['--data-dir', '{data}', *TINY[:2], *overlay('{root}/nowhere.pth'), *TINY[8:]], 1,
     r'{root}/nowhere.pth: cannot read the pretrained weights \(no such file\)$', ()),
    (['--data-dir', '{data}', *TINY, '--initial-checkpoint', '{root}/random.pth'], 1,
     r'{root}/random.pth: not a readable checkpoint \(not a PyTorch weights file', ()),
    # a checkpoint describes its model: flags that contradict it are refused naming both values
    (['--data-dir', '{data}', '--eval-only', '--resume', '{run}/last.pth.tar', '--model', 'inti_vit_b16'], 2,
     r'--model inti_vit_b16 contradicts {run}/last.pth.tar, a checkpoint of vit_small_patch16_224: leave it out', ()),
    (['--data-dir', '{data}', '--eval-only', '--resume', '{run}/last.pth.tar', '--num-frames', '8'], 2,
     r'--num-frames 8 contradicts {run}/last.pth.tar, a checkpoint of num_frames=4', ()),
    (['--data-dir', '{data}', '--eval-only', '--resume', '{run}/last.pth.tar', '--img-size', '64'], 2,
     r'--img-size 64 contradicts .*, a checkpoint of img_size=32', ()),
    (['--data-dir', '{data}', '--resume', '{run}/last.pth.tar', '--model-kwargs', 'depth=2'], 2,
     r'--model-kwargs depth=2 contradicts .*, a checkpoint of depth=4', ()),
    (['--data-dir', '{data}', '--resume', '{run}/last.pth.tar', '--layer-decay', '0.5'], 2,
     r'--layer-decay 0.5 contradicts .*, a checkpoint of a run with --layer-decay 0.75', ()),
    (['--data-dir', '{root}/broken', '--resume', '{run}/last.pth.tar', '--output', '{tmp}', '--experiment', 'r'], 1,
     r'{run}/last.pth.tar was trained on 2 classes \(left, right\), \'train\' holds 3 \(broken, left, right\)', ()),
]


@pytest.mark.parametrize('case', PROBES, ids=[f'{i:02d}' for i in range(len(PROBES))])
def test_training_probe(case, probes, tmp_path, capsys):
    args, status, message, left = case
    values = dict(probes, tmp=str(tmp_path))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, last, err = run_case([a.format(**values) for a in args], capsys)
    assert code == status, err[-3000:]
    assert last.startswith('timm-inti-train: error: '), err[-3000:]
    expected = message.format(**{k: re.escape(v) for k, v in values.items()})
    assert re.search(expected, last), f'{expected!r} not in {last!r}'
    new = sorted(p.name for p in tmp_path.iterdir() if p.name not in before)
    assert new == sorted(left), new
    for name in left:  # a run folder, but nothing in it
        assert not list((tmp_path / name).iterdir())


RECIPES = sorted((Path(__file__).parent.parent / 'recipes').glob('*.yaml'))


def read_yaml(path):
    return yaml.safe_load(Path(path).read_text())


@pytest.mark.slow
def test_a_config_file_sets_defaults_flags_win_and_the_run_keeps_them(data_dir, tmp_path, capsys):
    config = tmp_path / 'recipe.yaml'
    config.write_text('epochs: 1\nlr: 1.0e-3\nsmoothing: 0.2\naa: rand-m7-n2-mstd0.5-inc1\nreprob: 0.5\n'
                      'hflip: 0.0\ndrop-path: 0.1\nmodel_kwargs: {embed_dim: 64, depth: 4, num_heads: 2, '
                      'patch_size: 8, inti_after: [2]}\n')
    tiny = [a for a in TINY if a not in ('--model-kwargs', 'embed_dim=64', 'depth=4', 'num_heads=2', 'patch_size=8',
                                         'inti_after=(2,)')]
    assert main(['-c', str(config), '--data-dir', str(data_dir), *tiny, '-b', '4', '--lr', '2e-3',
                 '--output', str(tmp_path), '--experiment', 'run']) == 0
    run = tmp_path / 'run'
    saved = read_yaml(run / 'args.yaml')
    assert saved['lr'] == 2e-3, 'the command line wins'
    assert (saved['smoothing'], saved['aa'], saved['reprob'], saved['hflip'], saved['drop_path']) == (
        0.2, 'rand-m7-n2-mstd0.5-inc1', 0.5, 0.0, 0.1), 'the file sets the rest'
    assert saved['model_kwargs']['inti_after'] == [2] and saved['config'] == str(config)
    assert saved['experiment'] == 'run' and saved['num_frames'] == 4

    # resume with the checkpoint and a longer schedule only: the run's arguments come from its args.yaml
    assert main(['--resume', str(run / 'last.pth.tar'), '--epochs', '2']) == 0
    assert [r['epoch'] for r in summary(run)] == ['0', '1'], 'continued in its own folder'
    resumed = read_yaml(run / 'args.yaml')
    assert resumed['epochs'] == 2 and resumed['resume'] == str(run / 'last.pth.tar')
    assert {k: v for k, v in resumed.items() if k not in ('epochs', 'resume')} == \
        {k: v for k, v in saved.items() if k not in ('epochs', 'resume')}
    checkpoint = torch.load(run / 'last.pth.tar', map_location='cpu', weights_only=False)
    assert checkpoint['args']['lr'] == 2e-3 and checkpoint['args']['reprob'] == 0.5


@pytest.mark.parametrize('content, message', [
    ('lr: 1e-3\nlearning_rate: 0.1\n', "unknown key 'learning_rate', not a flag of timm-inti-train"),
    ('epochs: 0\n', 'epochs: 0 is not a positive integer'),
    ('test_crops: 2\n', 'test_crops: 2 is not one of 1, 3'),
    ('scale: 0.5\n', 'scale: expected 2 values'),
    ('amp: yes please\n', 'amp: expected true or false'),
    ('- lr\n', 'expected a mapping'),
])
def test_a_bad_config_file_is_refused_in_one_line_naming_it(data_dir, tmp_path, capsys, content, message):
    config = tmp_path / 'bad.yaml'
    config.write_text(content)
    assert main(['-c', str(config), '--data-dir', str(data_dir), *TINY, '--output', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'timm-inti-train: error: {config}') and message in err[0], err
    assert not any(tmp_path.glob('*/args.yaml')), 'nothing started'


@pytest.mark.parametrize('argv, message', [
    (['--aa', 'rand-q9'], "--aa: auto-augment policy 'rand-q9'"),
    (['--hflip', '1.5'], '--hflip 1.5'),
    (['--predictions', 'p.txt'], 'name a .jsonl file'),
])
def test_bad_augmentation_and_output_flags_are_refused(data_dir, tmp_path, capsys, argv, message):
    assert main(['--data-dir', str(data_dir), *TINY, '--output', str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_every_recipe_loads_and_names_the_peer_recipe_it_follows():
    from timm_inti.train import _parser
    assert {p.stem for p in RECIPES} >= {'k400_vit_b16', 'k400_vit_l14', 'ssv2_vit_b16', 'ucf101_vit_b16',
                                         'hmdb51_vit_b16'}
    for recipe in RECIPES:
        values = read_config(_parser(), str(recipe))  # refuses unknown keys and bad values
        assert values['model'] == ('inti_vit_l14' if 'l14' in recipe.stem else 'inti_vit_b16')
        assert values['hflip'] == (0.0 if recipe.stem.startswith('ssv2') else 0.5), recipe.name
        assert values['test_clips'] == values['test_crops'] == 1, 'per-epoch validation: one view'
        text = recipe.read_text()
        assert 'repository' in text and 'file' in text and 'What differs' in text, recipe.name


@pytest.mark.slow
@pytest.mark.parametrize('recipe', RECIPES, ids=lambda p: p.stem)
def test_every_recipe_runs_one_epoch_of_its_tiny_version(data_dir, tmp_path, recipe):
    values = read_yaml(recipe)
    # the recipe's splits point at this data; the model shrinks; the rest is the recipe's
    argv = ['-c', str(recipe), '--data-dir', str(data_dir), '--train-split', 'train', '--val-split', 'val', *TINY,
            '--no-pretrained', '--no-amp', '-b', '4', '--grad-accum-steps', '1', '--epochs', '1',
            '--output', str(tmp_path), '--experiment', 'tiny']
    assert main(argv) == 0
    saved = read_yaml(tmp_path / 'tiny' / 'args.yaml')
    for key in ('aa', 'reprob', 'hflip', 'mixup', 'layer_decay', 'smoothing', 'drop_path', 'num_samples', 'lr'):
        assert saved[key] == values.get(key, saved[key]), key
    assert len(summary(tmp_path / 'tiny')) == 1
    if recipe.stem.startswith('ssv2'):
        assert saved['hflip'] == 0.0, 'left and right are labels in Something-Something'


@pytest.mark.slow
def test_eval_only_writes_predictions_per_class_accuracy_and_confusion(data_dir, tmp_path, capsys):
    data = tmp_path / 'data'
    (data / 'val' / 'left').mkdir(parents=True)
    (data / 'train').symlink_to(data_dir / 'train')
    (data / 'val' / 'right').symlink_to(data_dir / 'val' / 'right')
    for video in (data_dir / 'val' / 'left').iterdir():
        (data / 'val' / 'left' / video.name).symlink_to(video)
    (data / 'val' / 'left' / 'broken.mp4').write_bytes(b'not a video')  # skipped: no line, no count
    assert main(['--data-dir', str(data), *TINY, '-b', '4', '--epochs', '2', '--lr', '2e-3', '--output',
                 str(tmp_path), '--experiment', 'run', '--predictions', str(tmp_path / 'during.jsonl')]) == 0
    assert len((tmp_path / 'during.jsonl').read_text().splitlines()) == 4, 'validation writes them too'
    capsys.readouterr()
    out = tmp_path / 'eval' / 'predictions.jsonl'
    out.parent.mkdir()
    assert main(['--data-dir', str(data), *TINY, '--eval-only', '--resume', str(tmp_path / 'run' / 'last.pth.tar'),
                 '--test-clips', '2', '--predictions', str(out), '-vb', '3']) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    readable = sorted(str(p) for p in data.glob('val/*/*.mp4') if p.name != 'broken.mp4')
    assert sorted(line['path'] for line in lines) == readable, 'one line per readable validation video'
    for line in lines:
        assert line['label'] == Path(line['path']).parent.name, 'the true label'
        assert [p['label'] for p in line['predictions']] in (['left', 'right'], ['right', 'left'])
        assert line['predictions'][0]['probability'] >= line['predictions'][1]['probability']
    correct = sum(line['predictions'][0]['label'] == line['label'] for line in lines)
    assert result['eval']['top1'] == pytest.approx(100 * correct / len(lines))

    with open(out.with_suffix('.per_class.csv')) as f:
        per_class = list(csv.DictReader(f))
    assert [row['class'] for row in per_class] == ['left', 'right']
    assert sum(int(r['videos']) for r in per_class) == len(lines)
    assert 100 * sum(int(r['correct']) for r in per_class) / len(lines) == pytest.approx(result['eval']['top1'])
    with open(out.with_suffix('.confusion.csv')) as f:
        confusion = list(csv.reader(f))
    assert confusion[0][1:] == ['left', 'right']
    assert [int(confusion[i][i]) for i in (1, 2)] == [int(r['correct']) for r in per_class], 'its diagonal'
    assert sum(int(x) for row in confusion[1:] for x in row[1:]) == len(lines)
    assert out.with_suffix('.confusion.png').stat().st_size > 0


@pytest.mark.slow
def test_the_video_model_compiles_without_graph_breaks(data_dir, tmp_path):
    """``torch._dynamo.explain``: one graph for the whole model, InTI layers and temporal modules included."""
    x = torch.randn(2, 3, 4, 32, 32)
    for name, kwargs in (('inti_vit_b16', dict(inti_after=(2,))), ('inti_vit_b16_temporal', {})):
        model = timm.create_model(name, img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2,
                                  num_frames=4, num_classes=3, **kwargs).eval()
        explained = torch._dynamo.explain(model)(x)
        assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
        assert explained.graph_count == 1
    assert main(['--data-dir', str(data_dir), *TINY, '-b', '4', '--epochs', '1', '--torchcompile', 'eager',
                 '--model-ema', '--output', str(tmp_path), '--experiment', 'compiled']) == 0
    checkpoint = torch.load(tmp_path / 'compiled' / 'last.pth.tar', map_location='cpu', weights_only=True)
    assert not any(k.startswith('_orig_mod') for k in checkpoint['state_dict']), 'saved as the plain model'
