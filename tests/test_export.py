"""timm-inti-export: ONNX and torch.export graphs give the eager answers; the facts beside them feed a server.

Each export runs the graph in its runtime (ONNX Runtime, ``torch.export.load``) on clips of
another batch and frame count than it was traced with, with InTI weights that do not
average (a fresh layer's exact 0.5 / 0.5 would hide a wrong pairing).
"""
import json
import re
import sys
from pathlib import Path

import pytest
import timm
import torch
from conftest import TINY_KWARGS

from timm_inti.checkpoints import create_model_from_checkpoint
from timm_inti.export import facts_path, frame_multiple, load_graph
from timm_inti.export import main as export_main

DEPLOY_DOC = Path(__file__).parents[1] / 'docs' / 'deploy.md'
VARIANTS = {  # tiny stand-ins of the three schedules: plain (one InTI layer), _deep (two), _temporal (adapters)
    'plain': ('inti_vit_b16', dict(inti_after=(2,))),
    'deep': ('inti_vit_b16_deep', dict(inti_after=(1, 2))),
    'temporal': ('inti_vit_b16_temporal', dict(inti_after=(2,))),
}


def write_checkpoint(path: Path, variant: str, num_frames: int = 4, **kwargs) -> Path:
    """A checkpoint as timm-inti-train writes it, with InTI weights, adapters and temporal embedding off their init."""
    arch, schedule = VARIANTS[variant]
    model_args = dict(TINY_KWARGS, num_classes=3, num_frames=num_frames, **schedule, **kwargs)
    model = timm.create_model(arch, **model_args)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(('inti.', 'adapters.', 'temporal_embed')):
                p.normal_(std=0.3)
    torch.save(dict(arch=arch, model_args=model_args, state_dict=model.state_dict(), label_names=['a', 'b', 'c'],
                    epoch=1), path)
    return path


def eager_and_graph(checkpoint: Path, graph: Path):
    model, _ = create_model_from_checkpoint(checkpoint)
    return model.eval(), load_graph(graph)


def max_diff(model, run, batch: int, frames: int) -> float:
    clips = torch.randn(batch, 3, frames, 32, 32)
    with torch.inference_mode():
        expected = model(clips)
    got = run(clips)
    assert got.shape == expected.shape
    return (got - expected).abs().max().item()


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    lines = [line for line in err.strip().splitlines() if 'error:' in line]
    assert len(lines) == 1 and lines[0].startswith('timm-inti-export: error: '), err
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize('fmt', ['onnx', 'pt2'])
@pytest.mark.parametrize('variant', list(VARIANTS))
def test_graph_gives_eager_answers_for_any_batch_and_frame_multiple(variant, fmt, tmp_path, capsys):
    if fmt == 'onnx':
        pytest.importorskip('onnxruntime')
    multiple = 2 ** len(VARIANTS[variant][1]['inti_after'])
    checkpoint = write_checkpoint(tmp_path / 'last.pth.tar', variant, num_frames=2 * multiple)
    graph = tmp_path / f'model.{fmt}'
    assert export_main([str(graph), '--checkpoint', str(checkpoint)]) == 0
    model, run = eager_and_graph(checkpoint, graph)
    assert frame_multiple(model) == multiple
    # the traced length, the model's own (the stored embedding), other multiples and batches
    for batch, frames in [(1, 2 * multiple), (3, 3 * multiple), (2, 4 * multiple), (1, 5 * multiple)]:
        assert max_diff(model, run, batch, frames) <= 1e-4, (batch, frames)

    facts = json.loads(facts_path(graph).read_text())
    assert facts['format'] == fmt and facts['frames'] == dict(
        num_frames=2 * multiple, dynamic=True, multiple_of=multiple, min_frames=2 * multiple,
        inti_layers=len(model.inti))
    assert facts['label_names'] == ['a', 'b', 'c'] and facts['input']['shape'] == ['batch', 3, 'frames', 32, 32]
    assert facts['data_config']['input_size'] == [3, 32, 32] and len(facts['data_config']['mean']) == 3
    assert facts['parity']['max_abs_diff'] <= 1e-4
    assert facts['opset'] == (18 if fmt == 'onnx' else None)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['last.pth.tar', graph.name, graph.name + '.json'])


@pytest.mark.slow
@pytest.mark.parametrize('variant, fmt, frames', [('plain', 'onnx', 5), ('temporal', 'pt2', 3), ('deep', 'pt2', 6),
                                                   ('deep', 'onnx', 4)])  # 4 / 4: one frame after the merges
def test_frame_counts_off_the_pairing_give_a_fixed_frame_axis_and_say_so(variant, fmt, frames, tmp_path, capsys):
    if fmt == 'onnx':
        pytest.importorskip('onnxruntime')
    checkpoint = write_checkpoint(tmp_path / 'last.pth.tar', variant)
    graph = tmp_path / f'model.{fmt}'
    assert export_main([str(graph), '--checkpoint', str(checkpoint), '--num-frames', str(frames)]) == 0
    err = capsys.readouterr().err
    multiple = 2 ** len(VARIANTS[variant][1]['inti_after'])
    assert f'the frame axis is fixed at {frames} frames' in err and f'every multiple of {multiple} frames' in err
    assert ('an odd count' in err) == (frames % multiple != 0)
    model, run = eager_and_graph(checkpoint, graph)
    model, _ = create_model_from_checkpoint(checkpoint, num_frames=frames)  # as the export built it
    model.eval()
    assert max_diff(model, run, 2, frames) <= 1e-4  # the odd count itself: its last frame passes through
    assert json.loads(facts_path(graph).read_text())['frames']['dynamic'] is False
    with pytest.raises(Exception):  # another count is refused by the runtime, not answered wrongly
        run(torch.randn(1, 3, frames + 1, 32, 32))


@pytest.mark.slow
def test_b16_shaped_onnx_graph_matches_eager(tmp_path):
    pytest.importorskip('onnxruntime')
    model_args = dict(num_classes=10, num_frames=8)
    model = timm.create_model('inti_vit_b16', **model_args)
    with torch.no_grad():
        for p in model.inti.parameters():
            p.normal_(std=0.05)
    checkpoint = tmp_path / 'b16.pth.tar'
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, state_dict=model.state_dict(), epoch=1), checkpoint)
    graph = tmp_path / 'b16.onnx'
    assert export_main([str(graph), '--checkpoint', str(checkpoint), '--no-check']) == 0
    run = load_graph(graph)
    clips = torch.randn(1, 3, 8, 224, 224)
    with torch.inference_mode():
        expected = model.eval()(clips)
    assert (run(clips) - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize('fmt, module, named', [
    ('onnx', 'onnxscript', 'onnxscript'),
    ('onnx', 'onnx', 'onnx'),
    ('onnx', 'onnxruntime', 'onnxruntime'),  # for the check; --no-check does without it
])
def test_a_missing_optional_package_is_one_line_naming_what_to_install(fmt, module, named, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as when not installed
    checkpoint = write_checkpoint(tmp_path / 'last.pth.tar', 'plain')
    graph = tmp_path / f'model.{fmt}'
    assert export_main([str(graph), '--checkpoint', str(checkpoint)]) == 2
    line = error_line(capsys)
    assert f'needs {named}' in line and 'pip install "timm-inti[export]"' in line
    assert ('--no-check' in line) == (module == 'onnxruntime')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last.pth.tar']


@pytest.mark.parametrize('args, message', [
    (['{tmp}/model.tflite'], r'cannot tell the format from the name; end it in \.onnx or \.pt2'),
    (['{tmp}/model.pt2', '--opset', '17'], r'--opset is for --format onnx'),
    (['{tmp}/old.onnx'], r'old\.onnx exists; give --overwrite'),
    (['{tmp}/fresh.onnx'], r'fresh\.onnx\.json exists; give --overwrite'),
    (['{tmp}/model.pt2', '--checkpoint', '{tmp}/missing.pth'], r'missing\.pth: no such checkpoint file'),
    (['{tmp}/model.pt2', '--model', 'resnet18', '--checkpoint', '{tmp}/image.pth'],
     r'resnet18 is a timm\.models\.resnet\.ResNet, which is neither a timm VisionTransformer nor Eva'),
    (['{tmp}/model.pt2', '--checkpoint', '{tmp}/image.pth', '--pretrained-path', '{tmp}/image.pth'],
     r'--pretrained-path .*image\.pth and --checkpoint .*image\.pth both give the weights: leave one out'),
    (['{tmp}/model.pt2', '--pretrained-path', '{tmp}/missing.safetensors'],
     r'missing\.safetensors: cannot read the pretrained weights \(no such file\)'),
])
def test_refusals_are_one_line_and_leave_the_files_as_they_were(args, message, tmp_path, capsys):
    (tmp_path / 'old.onnx').write_bytes(b'earlier graph')
    (tmp_path / 'fresh.onnx.json').write_text('{}')
    torch.save(timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=8, depth=2).state_dict(),
               tmp_path / 'image.pth')
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code = export_main([a.format(tmp=tmp_path) for a in args])
    assert code in (1, 2)
    assert re.search(message, error_line(capsys))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_export(tmp_path):
    checkpoint = write_checkpoint(tmp_path / 'last.pth.tar', 'plain')
    graph = tmp_path / 'model.pt2'
    graph.write_bytes(b'earlier graph')
    assert export_main([str(graph), '--checkpoint', str(checkpoint), '--overwrite', '--no-check']) == 0
    model, run = eager_and_graph(checkpoint, graph)
    assert max_diff(model, run, 2, 6) <= 1e-4


def serving_snippet() -> str:
    """The Python block of docs/deploy.md after the serving marker, exactly as a user copies it."""
    text = DEPLOY_DOC.read_text()
    match = re.search(r'<!-- serving snippet: tested by tests/test_export\.py -->\s*```python\n(.*?)```', text, re.S)
    assert match, f'{DEPLOY_DOC}: no serving snippet'
    return match.group(1)


@pytest.mark.slow
def test_documented_serving_lines_give_predicts_answers_on_a_real_video(tmp_path, make_video, monkeypatch, capsys):
    pytest.importorskip('onnxruntime')
    from timm_inti.predict import main as predict_main
    checkpoint = write_checkpoint(tmp_path / 'last.pth.tar', 'plain')
    make_video('clip.mp4', num_frames=30)
    assert export_main([str(tmp_path / 'inti.onnx'), '--checkpoint', str(checkpoint)]) == 0
    assert predict_main([str(tmp_path / 'clip.mp4'), '--checkpoint', str(checkpoint), '--json', '--workers', '0',
                         '--clips', '2', '--crops', '3', '--top-k', '3']) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = {p['label']: p['probability'] for p in record['predictions']}

    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(serving_snippet(), str(DEPLOY_DOC), 'exec'), namespace)
    probs = namespace['probs']
    assert probs.shape == (1, 3)
    got = dict(zip(namespace['facts']['label_names'], probs[0].tolist()))
    assert got == pytest.approx(expected, abs=1e-4)
    printed = capsys.readouterr().out
    assert 'clip.mp4' in printed
