"""timm_inti.files: atomic writes (a final name never holds half a file) and the machine line beside every figure."""
import csv
import errno
import json
import os

import pytest

from timm_inti.files import atomic_path, describe_machine, write_atomic, write_csv, write_json, write_text


def test_a_finished_write_replaces_the_file_with_ordinary_permissions(tmp_path):
    path = tmp_path / 'result.txt'
    path.write_text('old')
    write_text(path, 'new')
    assert path.read_text() == 'new'
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask, 'not the private mode of a temporary file'
    assert os.listdir(tmp_path) == ['result.txt'], 'no temporary left'


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'result.json'
    write_json(path, {'a': 1})

    def half(f):
        f.write('{"a": ')
        raise RuntimeError('stopped half-way')
    with pytest.raises(RuntimeError, match='half-way'):
        write_atomic(path, half)
    assert json.loads(path.read_text()) == {'a': 1}
    assert os.listdir(tmp_path) == ['result.json']


def test_a_full_disk_names_the_final_path(tmp_path):
    path = tmp_path / 'weights.bin'
    with pytest.raises(OSError) as error:
        with atomic_path(path) as tmp:
            assert tmp.parent == path.parent and tmp.name.startswith('.weights.bin.')
            tmp.write_bytes(b'part')
            raise OSError(errno.ENOSPC, 'No space left on device')
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(path)
    assert str(path) in error.value.strerror
    assert not os.listdir(tmp_path)


def test_csv_and_binary_writers(tmp_path):
    write_csv(tmp_path / 'rows.csv', [dict(a=1, b='x,y')], ['a', 'b'])
    with open(tmp_path / 'rows.csv', newline='') as f:
        assert list(csv.DictReader(f)) == [dict(a='1', b='x,y')]
    write_atomic(tmp_path / 'blob', lambda f: f.write(b'\x00\xff'), binary=True)
    assert (tmp_path / 'blob').read_bytes() == b'\x00\xff'


def test_describe_machine_says_cores_threads_and_load():
    text = describe_machine()
    assert f'{os.cpu_count()} logical CPUs' in text and 'torch threads' in text
    assert 'load average' in text
