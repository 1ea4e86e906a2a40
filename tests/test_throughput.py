"""benchmarks/throughput.py on shrunken models: the tables it writes and its memory measurement."""
import csv
import os

import pytest
import timm
import torch

import timm_inti  # noqa: F401  (registers the models)
from benchmarks import throughput
from timm_inti.flops import formula_flops


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_args(tiny_kwargs, **extra):
    kwargs = dict(tiny_kwargs, inti_after=(1,), **extra)
    return ['--model-kwargs'] + [f'{k}={v!r}'.replace(' ', '') for k, v in kwargs.items()]


def test_quick_run_writes_csv_and_markdown(tiny_kwargs, tmp_path, restore_threads):
    argv = ['--quick', '--no-memory', '--threads', '1', '--models', 'inti_vit_b16', '--frames', '4',
            '--out', str(tmp_path)] + tiny_args(tiny_kwargs)
    assert throughput.main(argv) == 0

    with open(tmp_path / 'throughput_cpu_quick.csv') as f:
        rows = list(csv.DictReader(f))
    phases = [('inference', '1'), ('inference', '2'), ('training', '1')]
    assert [(r['phase'], r['batch']) for r in rows] == [p for p in phases for _ in range(4)]
    methods = [r['method'] for r in rows[:4]]
    assert methods[:3] == ['naive', 'inti_vit_b16', 'subsample 1/2'] and methods[3].startswith('tome r=')

    gflops = {r['method']: float(r['gflops']) for r in rows[:4]}
    naive = timm.create_model('inti_vit_b16', inti_after=(), num_classes=400, **tiny_kwargs)
    inti = timm.create_model('inti_vit_b16', inti_after=(1,), num_classes=400, **tiny_kwargs)
    assert gflops['naive'] == pytest.approx(formula_flops(naive, 4).gflops)
    assert gflops['inti_vit_b16'] == pytest.approx(formula_flops(inti, 4).gflops)
    assert gflops['subsample 1/2'] == pytest.approx(formula_flops(naive, 2).gflops)
    assert gflops['naive'] > gflops[methods[3]] > gflops['subsample 1/2']
    for r in rows:
        assert float(r['median_ms']) > 0 and float(r['p25_ms']) <= float(r['median_ms']) <= float(r['p75_ms'])
        assert r['peak_mib'] == ''  # --no-memory
        if r['method'] == 'naive':
            assert float(r['speedup']) == 1.0

    table = (tmp_path / 'throughput_cpu_quick.md').read_text()
    assert table.startswith('Machine: ') and '**training, batch 1, 4 frames**' in table
    assert not list(tmp_path.glob('.*.tmp'))  # written through temporary files, none left over
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / 'throughput_cpu_quick.csv').stat().st_mode & 0o777 == 0o666 & ~umask



def test_an_eva_tower_is_timmed_without_tome_and_says_why(tiny_kwargs, tmp_path, restore_threads):
    argv = ['--quick', '--no-memory', '--threads', '1', '--models', 'inti_vit_b16_eva02', '--frames', '2', '--batches',
            '1', '--reps', '1', '--out', str(tmp_path)] + tiny_args(tiny_kwargs)
    assert throughput.main(argv) == 0
    with open(tmp_path / 'throughput_cpu_quick_inti_vit_b16_eva02.csv') as f:  # not the ViT-B/16 table's file
        rows = list(csv.DictReader(f))
    assert [r['method'] for r in rows[:3]] == ['naive', 'inti_vit_b16_eva02', 'subsample 1/2'] and len(rows) == 6
    table = (tmp_path / 'throughput_cpu_quick_inti_vit_b16_eva02.md').read_text()
    assert 'Note: ToMe left out: inti_vit_b16_eva02 is a timm Eva tower' in table

@pytest.mark.slow
def test_memory_measurement_sees_fewer_activations():
    """Fresh-process RSS accounting: InTI after 1 of 4 blocks keeps 5/8 of naive's block activations."""
    kwargs = dict(img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=2, num_classes=10)
    naive = throughput.Spec('naive', 'inti_vit_b16', tuple(sorted(dict(kwargs, inti_after=()).items())))
    inti = throughput.Spec('inti', 'inti_vit_b16', tuple(sorted(dict(kwargs, inti_after=(1,)).items())))
    naive_mem = throughput.measure_memory_isolated(naive, batch=4, frames=8, train=True, threads=1)
    inti_mem = throughput.measure_memory_isolated(inti, batch=4, frames=8, train=True, threads=1)
    assert naive_mem['step_mib'] > 20  # 32 frames x 65 tokens x 128 channels x 4 blocks of activations
    assert inti_mem['step_mib'] < 0.8 * naive_mem['step_mib']
    assert inti_mem['peak_mib'] < naive_mem['peak_mib']
