"""benchmarks/pipeline.py --quick: the end-to-end benchmark runs and writes its tables (no timed assertions)."""
import csv

import pytest

from benchmarks import pipeline


@pytest.mark.slow
def test_pipeline_quick(tmp_path, capsys):
    assert pipeline.main(['--quick', '--out', str(tmp_path)]) == 0
    report = (tmp_path / 'pipeline_quick.md').read_text()
    assert report.strip() in capsys.readouterr().out, 'the report is printed too'
    for heading in ('## Storage choices', '## Per core, per source', '## Loaders and the model',
                    '## Extrapolation to 16 cores and one GPU', 'not a measurement', 'load average'):
        assert heading in report
    with open(tmp_path / 'pipeline_quick.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    by_table = {}
    for row in rows:
        by_table.setdefault(row['table'], []).append(row)
    assert {r['storage'].split(',')[0] for r in by_table['storage']} >= {
        'source (H.264', 'H.264 short side 48', 'JPEG frames (q90) in one tar'}
    assert sorted({(r['files'], r['workers']) for r in by_table['loader']}) == [
        (stage, str(w)) for stage in ('prepared', 'source') for w in (0, 1, 2)]
    for row in by_table['per_core'] + by_table['loader']:
        for key in ('decode', 'transform', 'both', 'both_k2', 'train_k1', 'train_k2', 'predict'):
            if row.get(key):
                assert float(row[key]) > 0, (key, row)
    prepared = [r for r in by_table['per_core'] if r['files'].startswith('prepared')]
    assert prepared and all(r['size'].endswith('x48') for r in prepared), 'prepared to the quick short side'
    assert {r['model'] for r in by_table['extrapolation']} == {'inti_vit_b16 (naive: no InTI)', 'inti_vit_b16'}
