"""benchmarks/predict.py --quick: the throughput table and the kill-and-resume check at a small scale."""
import csv
import json

import pytest

from benchmarks import predict as predict_benchmark


@pytest.mark.slow
def test_quick_run_prints_the_table_and_passes_the_resume_check(tmp_path, capsys):
    assert predict_benchmark.main(['--quick', '--out', str(tmp_path)]) == 0
    with open(tmp_path / 'predict_quick.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['what'] for r in rows] == ['model alone, batch 4'] + [
        f'files -> predictions, {w} workers' for w in (0, 1, 2)]
    assert all(float(r['clips_per_s']) > 0 for r in rows)
    for r in rows[1:]:
        assert abs(float(r['ratio']) - float(r['clips_per_s']) / float(rows[0]['clips_per_s'])) < 0.01
        assert 0 <= float(r['waiting']) <= 1
    resume = json.loads((tmp_path / 'predict_resume_quick.json').read_text())
    assert resume['killed_mid_run'] and 0 < resume['lines_at_kill'] < resume['files']
    assert resume['every_good_once'] and resume['every_bad_listed'] and resume['identical']
    assert resume['resumed_exit'] == 1 and resume['corrupt'] >= 1
    out = capsys.readouterr().out
    assert 'Machine:' in out and '| files -> predictions, 2 workers |' in out
