"""The training command on real video files: learning, checkpoints, exact resumption, torchrun, frozen backbone."""
import csv
import json
import os
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

from timm_inti.cli import read_config
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
