"""timm_inti.outputs: the progress line shared by timm-inti-predict and timm-inti-prepare, and the settings record.
(The resumable --output / --features files are exercised end to end in tests/test_predict_collection.py.)"""
import json

import pytest

from timm_inti.cli import UsageError
from timm_inti.outputs import Progress, check_settings


def test_progress_in_a_log_is_a_plain_line_with_rate_eta_and_unreadable_count(capsys):
    progress = Progress('prog', total=3, interval=0.0, prefix='rank 1: ')
    assert progress.bar is None, 'stderr is not a terminal under pytest: no bar'
    progress.update(2, failed=1)
    progress.update()
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith('prog: rank 1: 2/3 videos (66.7%), ')
    assert 'videos/s, ETA ' in lines[0] and lines[0].endswith('1 unreadable')
    assert lines[1].startswith('prog: rank 1: 3/3 videos (100.0%)') and ', ETA 0:00:00, ' in lines[1]


def test_progress_every_interval_and_at_the_end_or_never(capsys):
    progress = Progress('prog', total=4, interval=3600.0)
    for _ in range(4):
        progress.update()
    assert capsys.readouterr().err.count('\n') == 1, 'within the interval: only the line at the end'
    silent = Progress('prog', total=2, interval=float('inf'))
    silent.update(2)
    silent.write('a message')
    assert capsys.readouterr().err == 'a message\n'


def test_settings_are_recorded_then_a_rerun_must_repeat_them(tmp_path):
    out = tmp_path / 'out.jsonl'
    check_settings(str(out), '--output', dict(model='a', top_k=5), write=True)
    record = tmp_path / 'out.jsonl.settings.json'
    assert json.loads(record.read_text()) == dict(model='a', top_k=5)
    out.write_text('{"path": "v.mp4"}\n')  # results exist now
    check_settings(str(out), '--output', dict(model='a', top_k=5), write=True)
    with pytest.raises(UsageError, match=r"--output .*out.jsonl holds results of other settings \(top_k 5 -> 3\)"):
        check_settings(str(out), '--output', dict(model='a', top_k=3), write=True)
