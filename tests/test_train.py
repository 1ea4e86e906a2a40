"""The training command on real video files: learning, checkpoints, exact resumption, torchrun, frozen backbone."""
import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import timm
import torch
from conftest import write_video
from timm.data import Mixup

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


@pytest.mark.parametrize('num_samples', [1, 2])
def test_a_killed_run_resumes_to_the_same_weights(data_dir, tmp_path, num_samples):
    common = ['--data-dir', str(data_dir), *TINY, '-b', '2', '--epochs', '4', '--seed', '7', '--output', str(tmp_path),
              '--mixup', '0.5', '--model-ema', '--model-ema-decay', '0.9', '--num-samples', str(num_samples)]
    assert main([*common, '--experiment', 'straight']) == 0

    cmd = [sys.executable, '-m', 'timm_inti.train', *common, '--experiment', 'killed']
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env_with_repo())
    for line in proc.stderr:
        if line.startswith('epoch 1:'):  # epoch 1 is checkpointed and logged; epoch 2 is under way
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
