"""benchmarks/deploy.py on shrunken models: every runtime and method measured in one rotation, and its tables."""
import csv

import pytest
import torch

from benchmarks import deploy


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_quick_run_measures_every_runtime_and_method_side_by_side(tmp_path, restore_threads):
    pytest.importorskip('onnxruntime')
    argv = ['--quick', '--threads', '1', '--batches', '1', '--reps', '2', '--frames', '4',
            '--runtimes', 'eager', 'onnxruntime', 'bf16', '--out', str(tmp_path)]
    assert deploy.main(argv) == 0
    with open(tmp_path / 'deploy_cpu_quick_b1.csv') as f:
        rows = list(csv.DictReader(f))
    runtimes = ['eager', 'onnxruntime'] + (['bf16'] if deploy.native_bf16('cpu') else [])
    methods = ['naive', 'inti_vit_b16', 'inti_vit_b16_deep']
    assert [(r['runtime'], r['method']) for r in rows] == [(rt, m) for rt in runtimes for m in methods]
    for r in rows:
        assert float(r['median_ms']) > 0 and r['reps'] == '2'
        if r['method'] == 'naive':
            assert float(r['speedup']) == 1.0  # every round's ratio to itself
        if r['runtime'] == 'eager':
            assert float(r['vs_eager']) == 1.0
    text = (tmp_path / 'deploy_cpu_quick_b1.md').read_text()
    assert 'Command: `python benchmarks/deploy.py --quick' in text and 'Machine: ' in text
    assert "of eager's" in text  # the ONNX Runtime speed-up is compared with eager's
    assert 'Per-operator profile, batch 1' in text and '| MatMul |' in text and '| aten::' in text
    if not deploy.native_bf16('cpu'):
        assert 'eager bf16 left out' in text
