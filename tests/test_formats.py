"""timm_inti.video.formats: every file that names videos, read once (the datasets, prepare and predict use it)."""
import ast
import json
import os
from pathlib import Path

import pytest

from timm_inti.video import formats
from timm_inti.video.formats import (
    find_videos,
    frame_counts,
    is_kinetics_csv,
    is_manifest,
    is_video,
    manifest_frame_counts,
    read_annotations,
    read_kinetics_csv,
    read_label_file,
    read_manifest,
    read_path_list,
    read_ssv2_labels,
    read_ssv2_list,
)


def test_it_imports_nothing_else_of_the_package():
    tree = ast.parse(Path(formats.__file__).read_text())
    imported = [n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names]
    relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative and not [m for m in imported if m and m.startswith('timm_inti')], imported
    assert not [m for m in imported if m and m.split('.')[0] in ('torch', 'timm', 'av', 'numpy')], \
        'the standard library only: reading a list must not need the video stack'


def test_video_files_by_extension_in_sorted_order(tmp_path):
    for name in ('b/2.MP4', 'b/1.webm', 'a/x.mkv', 'a/notes.txt', 'c.avi'):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b'')
    assert is_video('clip.MOV') and not is_video('clip.mov.txt')
    assert [os.path.relpath(p, tmp_path) for p in find_videos(tmp_path)] == ['c.avi', 'a/x.mkv', 'b/1.webm', 'b/2.MP4']


def test_annotation_lines_and_csv(tmp_path):
    lines = tmp_path / 'train.txt'
    lines.write_text('# a comment\nclass a/my video.mp4 3\n\n  b.mp4 jumping  \n')
    assert read_annotations(lines) == [('class a/my video.mp4', '3'), ('b.mp4', 'jumping')]
    table = tmp_path / 'val.csv'
    table.write_text('path,label,frames\na.mp4,run,10\n')
    assert read_annotations(table) == [('a.mp4', 'run')]
    (tmp_path / 'bad.txt').write_text('a.mp4 1\nlonely\n')
    with pytest.raises(ValueError, match=r'bad.txt:2: expected "path label", got \'lonely\''):
        read_annotations(tmp_path / 'bad.txt')
    (tmp_path / 'bad.csv').write_text('file,label\na.mp4,1\n')
    with pytest.raises(ValueError, match='a CSV annotation list needs "path" and "label" columns'):
        read_annotations(tmp_path / 'bad.csv')
    (tmp_path / 'binary.txt').write_bytes(b'\xff\xfe\x00a')
    with pytest.raises(ValueError, match='binary.txt: not a text annotation list'):
        read_annotations(tmp_path / 'binary.txt')


def test_path_lists_are_relative_to_their_folder(tmp_path):
    (tmp_path / 'l').mkdir()
    (tmp_path / 'l' / 'a.txt').write_text('x.mp4\n# skipped\n/abs/y.mp4\n')
    assert read_path_list(tmp_path / 'l' / 'a.txt') == [str(tmp_path / 'l' / 'x.mp4'), '/abs/y.mp4']
    (tmp_path / 'l' / 'm.csv').write_text('path,frames\nx.mp4,3\n')
    assert read_path_list(tmp_path / 'l' / 'm.csv') == [str(tmp_path / 'l' / 'x.mp4')]
    (tmp_path / 'l' / 'j.jsonl').write_text(json.dumps({'path': 'z.mp4', 'note': 1}) + '\n\n')
    assert read_path_list(tmp_path / 'l' / 'j.jsonl') == [str(tmp_path / 'l' / 'z.mp4')]
    (tmp_path / 'l' / 'bad.jsonl').write_text('{"path": "a.mp4"}\n{"file": "b.mp4"}\n')
    with pytest.raises(ValueError, match=r'bad.jsonl:2: expected an object with a "path"'):
        read_path_list(tmp_path / 'l' / 'bad.jsonl')
    (tmp_path / 'l' / 'empty.txt').write_text('# nothing\n')
    with pytest.raises(ValueError, match='the list holds no videos'):
        read_path_list(tmp_path / 'l' / 'empty.txt')


def test_kinetics_csv(tmp_path):
    csv_file = tmp_path / 'train.csv'
    csv_file.write_text('label,youtube_id,time_start,time_end,split\nabseiling,abc,5,15,train\n'
                        ',def,0.0,10.0,test\n"playing cards",ghi,12.0,22.0,train\n')
    assert is_kinetics_csv(csv_file) and not is_kinetics_csv(tmp_path / 'train.txt')
    assert read_kinetics_csv(csv_file) == [('abc_000005_000015', 'abseiling'), ('ghi_000012_000022', 'playing cards')]
    csv_file.write_text('label,youtube_id,time_start,time_end\nx,abc,soon,15\n')
    with pytest.raises(ValueError, match='a Kinetics row needs youtube_id, time_start and time_end'):
        read_kinetics_csv(csv_file)


def test_something_something_v2(tmp_path):
    (tmp_path / 'labels.json').write_text(json.dumps({'Pushing something from left to right': '0'}))
    classes = read_ssv2_labels(tmp_path / 'labels.json')
    (tmp_path / 'train.json').write_text(json.dumps([
        {'id': '7', 'template': 'Pushing [something] from left to right', 'label': 'pushing a cup ...'},
        {'id': 8}]))  # a test entry: no template
    assert read_ssv2_list(tmp_path / 'train.json', classes) == [('7', 'Pushing something from left to right')]
    (tmp_path / 'validation.json').write_text(json.dumps([{'id': '9', 'template': 'Dropping [something]'}]))
    with pytest.raises(ValueError, match="video 9: label 'Dropping something' is not in labels.json"):
        read_ssv2_list(tmp_path / 'validation.json', classes)
    (tmp_path / 'labels.json').write_text('[1, 2]')
    with pytest.raises(ValueError, match='labels.json: not a Something-Something v2 labels.json .* JSON list'):
        read_ssv2_labels(tmp_path / 'labels.json')


def test_manifest_rows_and_frame_counts(tmp_path):
    (tmp_path / 'out').mkdir()
    manifest = tmp_path / 'out' / 'manifest.csv'
    manifest.write_text('path,label,split,frames,fps,width,height\nc/a.mp4,c,,40,29.97,320,256\n')
    rows = read_manifest(manifest)
    path = str(tmp_path / 'out' / 'c' / 'a.mp4')
    assert rows == {path: dict(path='c/a.mp4', label='c', split='', frames=40, fps=29.97, width=320, height=256)}
    assert is_manifest(manifest) and not is_manifest(tmp_path / 'out')
    assert manifest_frame_counts([tmp_path / 'out']) == {path: 40}, 'a folder holding manifest.csv'
    assert frame_counts(manifest, root=tmp_path) == {str(tmp_path / 'c' / 'a.mp4'): 40}
    assert manifest_frame_counts([tmp_path, tmp_path / 'nothing.csv']) == {}, 'anything else is passed over'
    manifest.write_text('path,frames,fps,width,height\na.mp4,many,30,2,2\n')
    with pytest.raises(ValueError, match='line 2: bad frames, fps, width or height'):
        read_manifest(manifest)
    manifest.write_text('path,frames\na.mp4,3\n')
    with pytest.raises(ValueError, match=r"not a manifest, the columns \['fps', 'height', 'width'\] are missing"):
        read_manifest(manifest)


def test_class_name_files(tmp_path):
    (tmp_path / 'classes.txt').write_text('abseiling\n\n  playing cards \n')
    assert read_label_file(tmp_path / 'classes.txt') == ['abseiling', 'playing cards']
    (tmp_path / 'empty.txt').write_text('\n \n')
    with pytest.raises(ValueError, match='the labels file .*empty.txt holds no names'):
        read_label_file(tmp_path / 'empty.txt')
    with pytest.raises(OSError, match='cannot read the zero-shot labels file .*missing.txt'):
        read_label_file(tmp_path / 'missing.txt', 'zero-shot labels')
