"""The weights/ tools end to end: convert CLIP checkpoints, export training checkpoints, publish, cards."""
import importlib.util
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from conftest import TINY_KWARGS

WEIGHTS = Path(__file__).parents[1] / 'weights'


def tool(name):
    spec = importlib.util.spec_from_file_location(f'weights_{name}', WEIGHTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def one_frame_output(folder, x):
    model = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize('layout', ['open_clip_training', 'openai_torchscript'])
def test_convert_open_clip_and_openai_checkpoints(open_clip_b16, tmp_path, layout, capsys):
    x = torch.randn(1, 3, 1, 224, 224)
    source = tmp_path / 'clip.pt'
    if layout == 'open_clip_training':
        state_dict = {f'module.{k}': v for k, v in open_clip_b16.state_dict().items()}
        torch.save({'epoch': 1, 'state_dict': state_dict}, source)
    else:  # OpenAI releases TorchScript archives of the whole CLIP model
        traced = torch.jit.trace_module(open_clip_b16, {'encode_image': x[:, :, 0]}, check_trace=False)
        traced.save(str(source))
    assert tool('convert')([str(source), '--model', 'inti_vit_b16', '--out', str(tmp_path / 'out')]) == 0
    assert 'max |difference|' in capsys.readouterr().err
    with torch.no_grad():
        expected = open_clip_b16.encode_image(x[:, :, 0])
    torch.testing.assert_close(one_frame_output(tmp_path / 'out', x), expected, atol=1e-4, rtol=0)


def test_convert_timm_tower_with_its_tag_and_frame_count(tmp_path):
    tower = timm.create_model('vit_base_patch16_clip_224', num_classes=512).eval()  # GELU: a LAION tower
    source = tmp_path / 'tower.safetensors'
    safetensors.torch.save_file(tower.state_dict(), source)
    out = tmp_path / 'out'
    assert tool('convert')([str(source), '--model', 'inti_vit_b16_deep.laion2b', '--num-frames', '16',
                            '--out', str(out)]) == 0
    converted = timm.create_model(f'local-dir:{out}', pretrained=True)
    assert converted.num_frames == 16 and converted.inti_after == (3, 6, 9)
    x = torch.randn(1, 3, 1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(converted.eval()(x), tower(x[:, :, 0]), atol=1e-4, rtol=0)


def test_convert_refuses_weights_of_another_architecture(tmp_path, capsys):
    source = tmp_path / 'small.safetensors'
    safetensors.torch.save_file(timm.create_model('vit_base_patch16_clip_224', **TINY_KWARGS).state_dict(), source)
    assert tool('convert')([str(source), '--model', 'inti_vit_b16', '--out', str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith('convert.py: error: ') and 'Traceback' not in err, err
    assert f'{source} does not fit inti_vit_b16' in last and 'shape mismatches' in last
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('use_ema', [False, True])
def test_export_a_training_checkpoint_with_labels(tmp_path, use_ema):
    model_args = dict(TINY_KWARGS, num_classes=3, num_frames=4)
    model = timm.create_model('inti_vit_b16', **model_args).eval()
    ema = timm.create_model('inti_vit_b16', **model_args).eval()
    checkpoint = tmp_path / 'last.pth.tar'
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, state_dict=model.state_dict(),
                    state_dict_ema=ema.state_dict(), label_names=['a', 'b', 'c'], epoch=9), checkpoint)
    out = tmp_path / 'out'
    args = [str(checkpoint), '--out', str(out), '--finetuned-on', 'tiny clips'] + (['--use-ema'] if use_ema else [])
    assert tool('export')(args) == 0
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = (ema if use_ema else model)(x)
    torch.testing.assert_close(one_frame_output(out, x), expected, rtol=0, atol=0)
    loaded = timm.create_model(f'local-dir:{out}', pretrained=True)
    assert loaded.pretrained_cfg['label_names'] == ['a', 'b', 'c']
    assert 'Fine-tuned on tiny clips' in (out / 'README.md').read_text()


def test_export_refuses_what_is_not_a_training_checkpoint(tmp_path, capsys):
    plain = tmp_path / 'plain.pth'
    torch.save(timm.create_model('inti_vit_b16', **TINY_KWARGS).state_dict(), plain)
    assert tool('export')([str(plain), '--out', str(tmp_path / 'out')]) == 1
    assert 'not a timm-inti-train checkpoint' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_publish_checks_the_folder_loads_back(tmp_path, capsys):
    from timm_inti.hub import save_pretrained
    save_pretrained(timm.create_model('inti_vit_b16', **TINY_KWARGS), tmp_path / 'good')
    assert tool('publish')([str(tmp_path / 'good'), '--repo-id', 'me/x', '--dry-run']) == 0
    assert 'dry run: would upload to me/x' in capsys.readouterr().out
    (tmp_path / 'good' / 'model.safetensors').write_bytes(b'broken')
    assert tool('publish')([str(tmp_path / 'good'), '--repo-id', 'me/x', '--dry-run']) == 1
    assert 'does not load back' in capsys.readouterr().err


def test_model_cards_for_registered_variants(tmp_path):
    assert tool('cards')(['--out', str(tmp_path), '--models', 'inti_vit_l14_deep']) == 0
    card = (tmp_path / 'inti_vit_l14_deep.laion2b.md').read_text()
    assert 'after block 6 (8 -> 4 frames), after block 12 (4 -> 2 frames), after block 18 (2 -> 1 frames)' in card
    assert 'GFLOPs per 8-frame clip: 305.4' in card  # as benchmarks/flops.py measures with fvcore
    assert 'An initialisation, not a trained video model' in card and 'timm/vit_large_patch14_clip_224.laion2b' in card
    assert 'inti_vit_l14_deep.laion2b' in card and '2408.06840' in card
    assert 'Temporal modules: none' in card


def test_model_card_of_a_temporal_variant_names_its_adapters(tmp_path):
    assert tool('cards')(['--out', str(tmp_path), '--models', 'inti_vit_b16_temporal']) == 0
    card = (tmp_path / 'inti_vit_b16_temporal.openai.md').read_text()
    assert 'adapter before every block (ST-Adapter style: bottleneck width 384, depthwise 3x1x1' in card
    assert 'GFLOPs per 8-frame clip: 95.4' in card  # 37.2% below the same model with inti_after=()


def test_model_cards_of_the_new_clip_towers(tmp_path):
    cards = tool('cards')
    assert cards(['--out', str(tmp_path), '--models', 'inti_vit_b32', 'inti_vit_l14_336']) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'inti_vit_b32.datacompxl.md', 'inti_vit_b32.laion2b.md', 'inti_vit_b32.openai.md', 'inti_vit_l14_336.openai.md']
    card = (tmp_path / 'inti_vit_l14_336.openai.md').read_text()
    assert 'patch 14, 336x336 frames' in card and 'timm/vit_large_patch14_clip_336.openai' in card
    assert 'GFLOPs per 8-frame clip: 957.5' in card  # as benchmarks/flops.py counts with fvcore
    # the default set: the CLIP backbones, whose cards describe a CLIP initialisation
    spec = importlib.util.spec_from_file_location('weights_cards', WEIGHTS / 'cards.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    CARD_MODELS = module.CARD_MODELS
    assert {'inti_vit_b16', 'inti_vit_b32_temporal', 'inti_vit_l14_336_deep'} <= set(CARD_MODELS)
    assert not any('siglip' in m or 'dinov2' in m or 'augreg' in m for m in CARD_MODELS)


def test_one_reader_for_training_checkpoints_and_weights_files(tmp_path):
    """What export.py and timm-inti-predict --checkpoint read through: timm_inti.checkpoints."""
    import timm_inti
    from timm_inti.checkpoints import create_model_from_checkpoint
    model_args = dict(TINY_KWARGS, num_classes=3, num_frames=4)
    model, ema = (timm.create_model('inti_vit_b16', **model_args).eval() for _ in range(2))
    training = tmp_path / 'last.pth.tar'
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, state_dict={f'module.{k}': v for k, v in
               model.state_dict().items()}, state_dict_ema=ema.state_dict(), label_names=['a', 'b', 'c'],
               epoch=0), training)
    for use_ema, expected in ((False, model), (True, ema)):
        loaded, labels = create_model_from_checkpoint(training, use_ema=use_ema, num_frames=8)  # kwargs override
        assert labels == ['a', 'b', 'c'] and loaded.num_frames == 8
        assert torch.equal(loaded.blocks[0].attn.qkv.weight, expected.blocks[0].attn.qkv.weight)

    weights = tmp_path / 'weights.safetensors'
    safetensors.torch.save_file(model.state_dict(), weights)
    loaded, labels = create_model_from_checkpoint(weights, 'inti_vit_b16', **dict(TINY_KWARGS, num_frames=4))
    assert labels is None and loaded.num_classes == 3, 'the class count follows head.weight'
    assert torch.equal(loaded.head.weight, model.head.weight)
    with pytest.raises(timm_inti.CheckpointError, match='no EMA weights in this file'):
        create_model_from_checkpoint(weights, 'inti_vit_b16', use_ema=True)
    with pytest.raises(timm_inti.CheckpointError, match='without its architecture'):
        create_model_from_checkpoint(weights)


# ------------------------------------------------------------------------------------ bad input, as a table
# Row: (tool, argv with {tmp} and {ckpt} (a training checkpoint) and {plain} (a state dict), setup, exit status,
# message regex). Every file under tmp is checked unchanged, and nothing may be added.

def _users_folder(tmp):
    (tmp / 'out').mkdir()
    (tmp / 'out' / 'README.md').write_text('# my own notes\n')
    (tmp / 'out' / 'config.json').write_text('{"mine": true}')


WEIGHTS_CASES = [
    ('export', '{ckpt} --out {tmp}/out', _users_folder, 1,
     r'{tmp}/out holds README.md, config.json that save_pretrained did not write: they would be replaced; name '
     r'another folder \(or pass overwrite=True, --overwrite\)'),
    ('convert', '{plain} --model inti_vit_b16 --out {tmp}/out --no-verify', _users_folder, 1,
     r'{tmp}/out holds README.md, config.json that save_pretrained did not write'),
    ('convert', '{plain} --model resnet50 --out {tmp}/out', None, 2,
     r'--model resnet50 is not an InTI video model \(convert.py makes one from CLIP image weights\); the models: '
     r'inti_vit_b16, '),
    ('cards', '--models resnet50 --out {tmp}/cards', None, 2, r'no pretrained tags for resnet50; the models: '),
    ('publish', '{tmp}/saved --repo-id my-org/my-model --dry-run', None, 1, r'local-dir:{tmp}/saved: no such folder'),
    ('publish', '{tmp}/saved --repo-id "my org/my model" --dry-run', None, 2,
     r"--repo-id 'my org/my model' is not a repository id the Hub accepts: Repo id must use alphanumeric chars"),
    ('publish', '{tmp}/saved --repo-id just-a-name --dry-run', None, 2,
     r"--repo-id 'just-a-name' is not a repository id the Hub accepts: a repository id is ORG/NAME"),
]


@pytest.mark.parametrize('name, line, setup, code, message', WEIGHTS_CASES,
                         ids=[f'{i:02d}:{c[0]} {c[1][:40]}' for i, c in enumerate(WEIGHTS_CASES)])
def test_weights_tools_refuse(tmp_path_factory, tmp_path, capsys, name, line, setup, code, message):
    import re
    import shlex

    from table import check_case
    inputs = tmp_path_factory.mktemp('inputs')
    model_args = dict(TINY_KWARGS, num_classes=2, num_frames=4)
    model = timm.create_model('inti_vit_b16', **model_args)
    torch.save(dict(arch='inti_vit_b16', model_args=model_args, state_dict=model.state_dict(), epoch=0,
                    label_names=['a', 'b']), inputs / 'last.pth.tar')
    plain = inputs / 'plain.safetensors'
    safetensors.torch.save_file(timm.create_model('inti_vit_b16', **TINY_KWARGS).state_dict(), plain)
    if setup is not None:
        setup(tmp_path)
    values = dict(tmp=str(tmp_path), ckpt=str(inputs / 'last.pth.tar'), plain=str(inputs / 'plain.safetensors'))
    argv = shlex.split(line.format(**values))
    message = message.format(**{k: re.escape(v) for k, v in values.items()})
    check_case(tool(name), f'{name}.py', argv, tmp_path, code, message, capsys)

