"""benchmarks/ablation.py: the flash-order tasks, the flash-frame weight, the statistics, and --quick runs."""
import csv
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from benchmarks import ablation

CFG = ablation.TaskConfig()
MOVING = ablation.TASKS['moving'].data


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
    # the flash boxes name the flash frames, in time order, and squares inside the frame
    frame, top, left = data.flash_box.unbind(dim=-1)
    assert torch.equal(frame, (data.frame_colour >= 0).nonzero()[:, 1].view(-1, 2))
    assert ((top >= 0) & (top <= CFG.size - CFG.square) & (left >= 0) & (left <= CFG.size - CFG.square)).all()
    n = torch.arange(120)
    red = torch.tensor(ablation.PALETTE[0][1])
    for e in range(2):
        pixel = data.clips[n, :, frame[:, e], top[:, e], left[:, e]]                   # (N, 3), with noise
        colour = torch.tensor([ablation.PALETTE[c][1] for c in data.frame_colour[n, frame[:, e]].tolist()])
        assert ((pixel - colour).abs() < 1).all() and red.shape == (3,)


def test_clips_are_deterministic_under_a_seed():
    a, b, c = (ablation.make_clips(16, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.clips, b.clips) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.frame_colour, b.frame_colour)
    assert not torch.allclose(a.clips, c.clips)


@pytest.mark.parametrize('cfg', [CFG, MOVING], ids=['flash', 'moving'])
def test_pixels_carry_the_label_and_reversing_the_frames_changes_it(cfg):
    data = ablation.make_clips(300, seed=11, cfg=cfg)
    assert torch.equal(oracle_label(data.clips, cfg), data.labels)
    backwards = oracle_label(data.clips.flip(2), cfg)
    assert torch.equal(backwards, ablation.reversed_label(data.labels, cfg))
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


def test_moving_task_moves_the_scene_between_frames():
    """Without noise, a frame without a flash is the previous one shifted by the camera, and not the same."""
    cfg = ablation.TaskConfig(clutter=0, noise=0., pan=2, texture=0.25)
    data = ablation.make_clips(40, seed=3, cfg=cfg)
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    moved = 0
    for clip, colours in zip(data.clips, data.frame_colour):
        quiet = [t for t in range(cfg.frames - 1) if colours[t] < 0 and colours[t + 1] < 0]
        t = quiet[0]
        found = [s for s in shifts if torch.equal(clip[:, t].roll(s, dims=(1, 2)), clip[:, t + 1])]
        assert found, 'the next frame is the same texture, panned'
        moved += found[0] != (0, 0)
    assert moved > 30  # a still camera is one of 25 velocities
    static = ablation.make_clips(40, seed=3, cfg=ablation.TaskConfig(noise=0.))
    quiet = (static.frame_colour[:, 0] < 0) & (static.frame_colour[:, 1] < 0)
    assert torch.equal(static.clips[quiet, :, 0], static.clips[quiet, :, 1])


def test_moving_clutter_moves_each_square_on_its_own():
    cfg = ablation.TaskConfig(clutter=3, noise=0., speed=2)
    data = ablation.make_clips(20, seed=4, cfg=cfg)
    first, last = data.clips[:, :, 0], data.clips[:, :, -1]
    assert (first != last).flatten(1).any(dim=1).float().mean() > 0.9
    # squares move, wrapping around the edges: never more than 3 squares of pixels, all of them when apart
    lit = (data.clips.abs().sum(dim=1) > 0).flatten(2).sum(dim=2)                        # (N, T) pixels not black
    flash = data.frame_colour >= 0
    assert (lit[~flash] <= 3 * 16).all() and (lit[~flash] == 3 * 16).float().mean() > 0.5


def test_flash_shares_cover_each_flash_once():
    data = ablation.make_clips(50, seed=7)
    shares = ablation.flash_shares(data, CFG, patch_size=8)
    assert shares.shape == (50, 2, 4, 4)
    torch.testing.assert_close(shares.sum(dim=(-2, -1)), torch.ones(50, 2))
    _, top, left = data.flash_box[0, 0].tolist()
    assert shares[0, 0, top // 8, left // 8] > 0 and shares[0, 0, (top + 3) // 8, (left + 3) // 8] > 0


def hand_set_inti(bias: float):
    task = ablation.TASKS['flash']
    model = ablation.build_row_model(ablation.METHODS['inti'], task, ablation.video_init(None, task, 0), 0, None)
    with torch.no_grad():
        model.inti['1'].mlp.fc2.bias.copy_(torch.tensor([bias, 0.]))
    return model, task


def test_flash_frame_weight_reads_the_weights_the_merge_used():
    """A hand-set bias gives the first frame of every pair sigmoid(b): the flash frame gets it when it comes first."""
    data = ablation.make_clips(60, seed=9)
    model, task = hand_set_inti(0.)
    assert ablation.flash_frame_weight(model, data, task) == pytest.approx(0.5, abs=1e-6)
    model, task = hand_set_inti(2.)
    frame = data.flash_box[..., 0]
    partner_free = data.frame_colour.gather(1, frame ^ 1) < 0
    first = torch.sigmoid(torch.tensor(2.))
    expected = torch.where(frame % 2 == 0, first, 1 - first)[partner_free].mean()
    assert ablation.flash_frame_weight(model, data, task) == pytest.approx(expected.item(), abs=1e-5)
    assert partner_free.float().mean() > 0.6


def test_t_interval():
    mean, std, low, high = ablation.t_interval([1., 2., 3.])
    assert (mean, std) == (2., 1.)
    assert (low, high) == pytest.approx((2 - 4.302653 / 3 ** 0.5, 2 + 4.302653 / 3 ** 0.5))
    assert math.isnan(ablation.t_interval([5.])[2]) and ablation.t_interval([5.])[0] == 5.
    assert ablation.verdict(dict(method='a - b', top1_ci_low=0.5, top1_ci_high=2.)) == 'a ahead'
    assert ablation.verdict(dict(method='a - b', top1_ci_low=-3., top1_ci_high=-1.)) == 'b ahead'
    assert ablation.verdict(dict(method='a - b', top1_ci_low=-1., top1_ci_high=2.)) == 'not resolved'


def test_inti_motion_row_swaps_in_a_partner_window():
    task = ablation.TASKS['moving']
    model = ablation.build_row_model(ablation.METHODS['inti_motion'], task, ablation.video_init(None, task, 0), 0, None)
    layer = model.inti['1']
    assert layer.partner_window == 3 and layer.kernel_sizes == (1, 3, 7) and layer.global_context
    out = model(torch.randn(2, 3, 8, 32, 32))
    assert out.shape == (2, 6)


def test_bad_flags_are_argparse_errors(capsys):
    for argv in (['--seeds', '0'], ['--methods', 'magic'], ['--epochs', '0'], ['--threads', '0'],
                 ['--methods', 'inti', 'inti'], ['--first-seed', '-1'], ['--task', 'spin'],
                 ['--resume', '--overwrite'], ['--tables-only'], ['--jobs', '0']):
        with pytest.raises(SystemExit):
            ablation.parse_args(argv)
    assert 'invalid choice' in capsys.readouterr().err


@pytest.mark.parametrize('argv, seeds', [
    ([], 5), (['--quick'], 1), (['--quick', '--seeds', '2'], 2), (['--quick', '--seeds=2'], 2), (['--seeds', '3'], 3)])
def test_seed_count_defaults_to_five_and_to_one_for_quick(argv, seeds):
    args = ablation.parse_args(argv)
    assert args.seeds == seeds and args.first_seed == 0 and args.task == 'both' and args.methods is None


def test_one_job_of_one_thread_per_cpu_by_default(monkeypatch):
    monkeypatch.setattr(ablation.os, 'sched_getaffinity', lambda pid: {0, 1, 2, 3, 4})
    assert (ablation.parse_args([]).jobs, ablation.parse_args([]).threads) == (5, 1)
    assert ablation.parse_args(['--threads', '2']).jobs == 2
    assert ablation.parse_args(['--threads', '8']).jobs == 1
    assert ablation.parse_args(['--quick']).jobs == 1 and ablation.parse_args(['--jobs', '3']).jobs == 3


def test_default_rows():
    assert ablation.TASKS['flash'].methods == ablation.HEADLINE
    assert ablation.TASKS['moving'].methods == ablation.HEADLINE + ('inti_motion',)
    assert ablation.TASKS['moving'].grid == 8 and ablation.TASKS['flash'].grid == 4


@pytest.mark.slow
def test_quick_run_writes_tables_intervals_and_pictures(tmp_path, restore_threads):
    assert ablation.main(['--quick', '--task', 'flash', '--seeds', '2', '--first-seed', '3', '--threads', '1',
                          '--out', str(tmp_path)]) == 0
    with open(tmp_path / 'ablation.csv', newline='') as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ablation.COLUMNS
        rows = {r['method']: r for r in reader}
    assert list(rows) == list(ablation.HEADLINE) + [f'{a} - {b}' for a, b in ablation.COMPARISONS[:4]]
    gflops = {name: float(rows[name]['gflops']) for name in ablation.HEADLINE}
    # the naive model on every frame costs most, every other frame exactly half of it
    assert gflops['naive'] > gflops['inti'] > gflops['frame_subsampling']
    assert gflops['frame_subsampling'] == pytest.approx(gflops['naive'] / 2, rel=1e-3)
    assert gflops['average_pooling'] < gflops['inti'] and gflops['inti_single_scale'] <= gflops['inti']
    assert gflops['tome'] == pytest.approx(gflops['inti'], rel=0.05)
    for r in rows.values():
        assert r['task'] == 'flash' and r['seeds'] == '2' and r['first_seed'] == '3'
        per_seed = [float(v) for v in r['top1_per_seed'].split()]
        assert len(per_seed) == 2
        assert float(r['top1_mean']) == pytest.approx(sum(per_seed) / 2, abs=1e-3)
        low, high = float(r['top1_ci_low']), float(r['top1_ci_high'])
        assert low <= float(r['top1_mean']) <= high
        # the image backbone of each seed, tested on single frames, so a backbone that lost a colour shows
        image_top1 = [float(v) for v in r['image_top1_per_seed'].split()]
        assert len(image_top1) == 2 and all(0 <= v <= 100 for v in image_top1)
    for name in ('naive', 'inti'):
        assert 0 <= float(rows[name]['top1_mean']) <= 100
    # the paired difference is taken seed by seed
    inti, pool = ([float(v) for v in rows[m]['top1_per_seed'].split()] for m in ('inti', 'average_pooling'))
    diff = [float(v) for v in rows['inti - average_pooling']['top1_per_seed'].split()]
    assert diff == pytest.approx([a - b for a, b in zip(inti, pool)], abs=1e-3)
    # the flash-frame weight: 0.5 for the average, none without a merge
    assert float(rows['average_pooling']['flash_weight_mean']) == 0.5
    assert math.isnan(float(rows['naive']['flash_weight_mean']))
    assert 0 < float(rows['inti']['flash_weight_mean']) < 1
    table = (tmp_path / 'ablation.md').read_text()
    assert '| `inti` |' in table and '`inti - tome`' in table and 'python benchmarks/ablation.py --quick' in table
    assert '2 seeds (3-4)' in table
    assert 'top-1 on single test frames, none or which colour, per seed: ' in table
    for name in ('ablation.png', 'ablation_merges_flash.png'):
        assert (tmp_path / name).read_bytes()[:4] == b'\x89PNG'


@pytest.mark.slow
def test_same_seed_same_result(restore_threads):
    torch.set_num_threads(1)
    task, methods = ablation.TASKS['flash'], ['inti', 'tome']
    first, second, other = (ablation.run_study(task, methods, [s], task.quick)[0] for s in (0, 0, 1))
    for a, b, c in zip(first, second, other):
        assert repr(a['per_seed']) == repr(b['per_seed'])  # every result to the last bit (NaN included)
        if a['kind'] == 'row':
            assert a['per_seed'][0]['loss'] != c['per_seed'][0]['loss']
    assert [r['kind'] for r in first] == ['row', 'row', 'difference']


def test_quick_moving_task_runs_its_motion_row(restore_threads):
    torch.set_num_threads(1)
    task = ablation.TASKS['moving']
    rows, kept = ablation.run_study(task, ['inti', 'inti_motion'], [0], task.quick)
    assert [r['method'] for r in rows] == ['inti', 'inti_motion', 'inti_motion - inti']
    assert rows[1]['gflops'] > rows[0]['gflops']  # the window costs a little more
    assert set(kept) == {'inti'}


def _quick(out, *argv):
    return ablation.main(['--quick', '--task', 'flash', '--methods', 'naive', 'inti', '--threads', '1',
                          '--out', str(out), *argv])


def _per_seed(out):
    with open(out / 'ablation.csv', newline='') as f:
        return {r['method']: (r['seed_list'], r['top1_per_seed'], r['flash_weight_per_seed'], r['image_top1_per_seed'])
                for r in csv.DictReader(f)}


@pytest.mark.slow
def test_resume_runs_only_the_missing_seeds_and_pools_runs(tmp_path, capsys, restore_threads):
    """Seeds run in separate processes (or machines) and pooled give the tables of one run over all of them."""
    assert _quick(tmp_path / 'one', '--seeds', '2') == 0
    assert _quick(tmp_path / 'a', '--seeds', '1') == 0
    assert 'Partial' not in (tmp_path / 'a' / 'ablation.md').read_text()
    capsys.readouterr()
    # --resume with a longer seed range: seed 0 is taken back, only seed 1 is trained
    assert _quick(tmp_path / 'a', '--seeds', '2', '--resume') == 0
    err = capsys.readouterr().err
    assert 'flash: seeds 0 taken from' in err and 'seed 0: image pre-training' not in err and 'seed 1: image' in err
    assert _per_seed(tmp_path / 'a') == _per_seed(tmp_path / 'one')
    # pooling: seed 1 from another run, its seed file joined to seed 0's; nothing left to train
    assert _quick(tmp_path / 'b', '--seeds', '1', '--first-seed', '1') == 0
    pooled = tmp_path / 'pooled'
    pooled.mkdir()
    records = [(tmp_path / run / ablation.SEEDS_FILE).read_text() for run in ('b', 'one')]
    (pooled / ablation.SEEDS_FILE).write_text(records[0] + records[1].splitlines(keepends=True)[0])
    capsys.readouterr()
    assert _quick(pooled, '--seeds', '2', '--resume') == 0
    assert 'image pre-training' not in capsys.readouterr().err
    assert _per_seed(pooled) == _per_seed(tmp_path / 'one')
    assert '2 seeds (0-1)' in (pooled / 'ablation.md').read_text()
    # --tables-only trains nothing and names the seeds still missing
    assert _quick(pooled, '--seeds', '3', '--resume', '--tables-only') == 0
    assert 'image pre-training' not in capsys.readouterr().err
    assert _per_seed(pooled) == _per_seed(tmp_path / 'one')
    text = (pooled / 'ablation.md').read_text()
    assert '**Partial: seeds 2 not done yet' in text and 'rebuilt from ablation_seeds.jsonl' in text
    assert _quick(tmp_path / 'empty', '--resume', '--tables-only') == 2
    assert 'no seeds to rebuild the tables from' in capsys.readouterr().err


@pytest.mark.slow
def test_an_earlier_run_is_kept_unless_asked(tmp_path, capsys, restore_threads):
    assert _quick(tmp_path, '--seeds', '1') == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    # the same command again: refused, nothing touched
    assert _quick(tmp_path, '--seeds', '1') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('ablation.py: error: ') and '--resume' in err[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # other settings cannot be pooled with these seeds
    assert _quick(tmp_path, '--seeds', '2', '--epochs', '2', '--resume') == 2
    err = capsys.readouterr().err
    assert 'seed 0 of task \'flash\' was run with other settings (study differ)' in err
    # nor other rows
    assert ablation.main(['--quick', '--task', 'flash', '--methods', 'tome', '--threads', '1', '--out', str(tmp_path),
                          '--resume']) == 2
    assert 'has no row tome' in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a torn or foreign file is named, not a traceback
    (tmp_path / ablation.SEEDS_FILE).write_text('{"task": "flash", "seed": 0\n')
    assert _quick(tmp_path, '--resume') == 2
    assert ablation.SEEDS_FILE in capsys.readouterr().err
    # --overwrite starts over
    assert _quick(tmp_path, '--seeds', '1', '--overwrite') == 0
    assert _per_seed(tmp_path)['inti'][0] == '0'


@pytest.mark.slow
def test_jobs_and_seeds_out_of_order_give_the_tables_of_one_run(tmp_path, capsys, restore_threads):
    """Seeds trained in worker processes (--jobs), or a seed run before the seeds after it, land in seed order."""
    assert _quick(tmp_path / 'one', '--seeds', '2') == 0
    assert _quick(tmp_path / 'jobs', '--seeds', '2', '--jobs', '2') == 0
    assert _per_seed(tmp_path / 'jobs') == _per_seed(tmp_path / 'one')
    assert (tmp_path / 'jobs' / ablation.SEEDS_FILE).read_text().count('\n') == 2
    text = (tmp_path / 'jobs' / 'ablation.md').read_text()
    assert '2 seeds (0-1)' in text and '2 jobs of 1 torch thread' in text and 'Partial' not in text
    if ablation.pyplot() is not None:
        assert (tmp_path / 'jobs' / 'ablation_merges_flash.png').stat().st_size > 0
    # seed 1 first, then --resume runs seed 0 before it
    assert _quick(tmp_path / 'late', '--seeds', '1', '--first-seed', '1') == 0
    assert _quick(tmp_path / 'late', '--seeds', '2', '--resume') == 0
    assert _per_seed(tmp_path / 'late') == _per_seed(tmp_path / 'one')
    assert '2 seeds (0-1)' in (tmp_path / 'late' / 'ablation.md').read_text()
    seeds = [json.loads(line)['seed'] for line in (tmp_path / 'late' / ablation.SEEDS_FILE).read_text().splitlines()]
    assert seeds == [0, 1]


@pytest.mark.slow
def test_against_says_which_intervals_of_a_rerun_overlap_the_published_ones(tmp_path, capsys, restore_threads):
    published = tmp_path / 'published'
    assert _quick(published, '--seeds', '2') == 0
    # the same seeds again: every interval overlaps its counterpart
    assert _quick(tmp_path / 'again', '--seeds', '2', '--against', str(published / 'ablation.csv')) == 0
    text = (tmp_path / 'again' / 'ablation.md').read_text()
    found = re.search(r'Against `(.+)`: (\d+) of (\d+) 95% intervals overlap', text)
    assert found and found[1] == str(published / 'ablation.csv') and found[2] == found[3] and int(found[3]) >= 1
    assert 'These do not' not in text
    checked = int(found[3])
    # an interval moved far away is named
    with open(published / 'ablation.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    # the first interval that was counted (a proper one: at chance, quick runs give many of zero width)
    r, key = next((r, key) for r in rows for key in ablation.MEASURES
                  if float(r[f'{key}_ci_low']) < float(r[f'{key}_ci_high']))
    r[f'{key}_ci_low'], r[f'{key}_ci_high'] = '1000', '1001'
    moved = tmp_path / 'moved.csv'
    with open(moved, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert _quick(tmp_path / 'again', '--seeds', '2', '--resume', '--tables-only', '--against', str(moved)) == 0
    text = (tmp_path / 'again' / 'ablation.md').read_text()
    assert f'{checked - 1} of {checked} 95% intervals overlap' in text
    assert f"These do not: flash `{r['method']}` {key}: [" in text and '[1e+03, 1e+03] there' in text
    assert f'{checked - 1} of {checked}' in capsys.readouterr().out
    # a file that is not the study's CSV: one line, before any training
    (tmp_path / 'other.csv').write_text('a,b\n1,2\n')
    assert _quick(tmp_path / 'fresh', '--against', str(tmp_path / 'other.csv')) == 2
    err = capsys.readouterr().err
    assert err.startswith('ablation.py: error: ') and 'other.csv' in err and 'image pre-training' not in err
    assert not (tmp_path / 'fresh' / 'ablation.csv').exists()
