"""benchmarks/ablation.py: the flash-order task, and a --quick end-to-end run of the study."""
import csv
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from benchmarks import ablation

CFG = ablation.TaskConfig()


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def oracle_label(clips: torch.Tensor, cfg: ablation.TaskConfig) -> torch.Tensor:
    """Read the label off the pixels alone: the saturated squares, their colours and their frames."""
    # how much each channel stands out from the other two; a flash is ~1, muted clutter at most 0.2
    saturation = torch.stack([
        clips[:, c] - torch.stack([clips[:, o] for o in range(3) if o != c]).amax(dim=0) for c in range(3)], dim=1)
    windows = F.avg_pool2d(rearrange(saturation, 'n c t h w -> (n c t) () h w'), cfg.square, stride=1)
    score = rearrange(windows.amax(dim=(-2, -1)), '(n c t) () -> n c t', c=3, t=clips.shape[2])
    best, colour = score.max(dim=1)                                                     # (N, T)
    flash = best > 0.5
    assert (flash.sum(dim=1) == 2).all(), 'every clip must show exactly two flashes'
    frames = flash.nonzero()[:, 1].view(-1, 2)                                          # in time order
    first, second = colour.gather(1, frames).unbind(dim=1)
    index = {pair: i for i, pair in enumerate(cfg.pairs)}
    return torch.tensor([index[(a, b)] for a, b in zip(first.tolist(), second.tolist())])


def test_clips_shapes_dtypes_and_balanced_labels():
    data = ablation.make_clips(120, seed=5)
    assert data.clips.shape == (120, 3, CFG.frames, CFG.size, CFG.size) and data.clips.dtype == torch.float32
    assert data.labels.shape == (120,) and data.labels.dtype == torch.int64
    assert CFG.num_classes == 6
    assert data.labels.bincount(minlength=CFG.num_classes).tolist() == [20] * 6
    # two flashes per clip, in two different frames, of the colours the label names, in that order
    assert ((data.frame_colour >= 0).sum(dim=1) == 2).all()
    drawn = data.frame_colour[data.frame_colour >= 0].view(-1, 2)
    assert drawn.tolist() == [list(CFG.pairs[i]) for i in data.labels.tolist()]


def test_clips_are_deterministic_under_a_seed():
    a, b, c = (ablation.make_clips(16, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.clips, b.clips) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.frame_colour, b.frame_colour)
    assert not torch.allclose(a.clips, c.clips)


def test_pixels_carry_the_label_and_reversing_the_frames_changes_it():
    data = ablation.make_clips(300, seed=11)
    assert torch.equal(oracle_label(data.clips, CFG), data.labels)
    backwards = oracle_label(data.clips.flip(2), CFG)
    assert torch.equal(backwards, ablation.reversed_label(data.labels, CFG))
    assert (backwards != data.labels).all()
    assert torch.equal(ablation.reversed_label(backwards, CFG), data.labels)
    assert ablation.class_names(CFG)[0] == 'red, then green'


def test_frame_set_for_image_pretraining():
    data = ablation.make_clips(30, seed=2)
    frames, labels = ablation.frame_set(data, seed=0)
    assert frames.shape == (120, 3, CFG.size, CFG.size) and labels.shape == (120,)
    assert (labels == 0).sum() == 60  # half without a flash, half with one of 3 colours
    first = data.frame_colour[0]
    flash_frame = int((first >= 0).nonzero()[0])
    assert torch.equal(frames[0], data.clips[0, :, flash_frame]) and labels[0] == first[flash_frame] + 1


def test_task_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match='colours'):
        ablation.TaskConfig(colours=1)
    with pytest.raises(ValueError, match='2 frames'):
        ablation.TaskConfig(frames=1)


def test_bad_flags_are_argparse_errors(capsys):
    for argv in (['--seeds', '0'], ['--methods', 'magic'], ['--epochs', '0'], ['--threads', '0'],
                 ['--methods', 'inti', 'inti']):
        with pytest.raises(SystemExit):
            ablation.parse_args(argv)
    assert 'invalid choice' in capsys.readouterr().err


@pytest.mark.parametrize('argv, seeds', [
    ([], 3), (['--quick'], 1), (['--quick', '--seeds', '2'], 2), (['--quick', '--seeds=2'], 2), (['--seeds', '5'], 5)])
def test_seed_count_defaults_to_three_and_to_one_for_quick(argv, seeds):
    assert ablation.parse_args(argv).seeds == seeds


def test_quick_run_writes_the_table(tmp_path, restore_threads):
    assert ablation.main(['--quick', '--threads', '1', '--out', str(tmp_path)]) == 0
    with open(tmp_path / 'ablation.csv', newline='') as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ['method', 'gflops', 'top1_mean', 'top1_std', 'seeds']
        rows = {r['method']: r for r in reader}
    assert list(rows) == list(ablation.METHODS)
    gflops = {name: float(r['gflops']) for name, r in rows.items()}
    # the naive model on every frame costs most, every other frame exactly half of it
    assert gflops['naive'] > gflops['inti'] > gflops['frame_subsampling']
    assert gflops['frame_subsampling'] == pytest.approx(gflops['naive'] / 2, rel=1e-3)
    # the fixed average has no weight network, the adapters cost extra, the ablations of InTI cost no more
    assert gflops['average_pooling'] < gflops['inti'] < gflops['inti_temporal']
    assert gflops['inti_single_scale'] <= gflops['inti'] and gflops['inti_sigmoid'] == gflops['inti']
    assert gflops['tome'] == pytest.approx(gflops['inti'], rel=0.05)
    for r in rows.values():
        assert 0 <= float(r['top1_mean']) <= 100
        assert math.isnan(float(r['top1_std']))  # one seed: no spread
        assert r['seeds'] == '1'
    table = (tmp_path / 'ablation.md').read_text()
    assert '| inti |' in table and 'python benchmarks/ablation.py --quick' in table
    assert (tmp_path / 'ablation.png').stat().st_size > 0


def test_same_seed_same_result(restore_threads):
    torch.set_num_threads(1)
    methods = ['inti', 'tome']
    first, second, other = (ablation.run_study(methods, [s], ablation.QUICK) for s in (0, 0, 1))
    for a, b, c in zip(first, second, other):
        assert a['per_seed'] == b['per_seed']  # top-1 and the last epoch's loss, to the last bit
        assert a['per_seed'][0]['loss'] != c['per_seed'][0]['loss']
