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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert 'GFLOPs per 8-frame clip of 224x224 frames: 305.4' in card  # as benchmarks/flops.py measures
    assert 'An initialisation, not a trained video model' in card and 'timm/vit_large_patch14_clip_224.laion2b' in card
    assert 'inti_vit_l14_deep.laion2b' in card and '2408.06840' in card
    assert 'Temporal modules: none' in card


def test_model_card_of_a_temporal_variant_names_its_adapters(tmp_path):
    assert tool('cards')(['--out', str(tmp_path), '--models', 'inti_vit_b16_temporal']) == 0
    card = (tmp_path / 'inti_vit_b16_temporal.openai.md').read_text()
    assert 'adapter before every block (ST-Adapter style: bottleneck width 384, depthwise 3x1x1' in card
    assert 'GFLOPs per 8-frame clip of 224x224 frames: 95.4' in card  # 37.2% below inti_after=()


def test_model_cards_of_the_new_clip_towers(tmp_path):
    cards = tool('cards')
    assert cards(['--out', str(tmp_path), '--models', 'inti_vit_b32', 'inti_vit_l14_336']) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'inti_vit_b32.datacompxl.md', 'inti_vit_b32.laion2b.md', 'inti_vit_b32.openai.md', 'inti_vit_l14_336.openai.md']
    card = (tmp_path / 'inti_vit_l14_336.openai.md').read_text()
    assert 'patch 14, 336x336 frames' in card and 'timm/vit_large_patch14_clip_336.openai' in card
    assert 'GFLOPs per 8-frame clip of 336x336 frames: 957.5' in card  # as benchmarks/flops.py counts
    # the default set: every registered model, each card worded for its family
    spec = importlib.util.spec_from_file_location('weights_cards', WEIGHTS / 'cards.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    CARD_MODELS = module.CARD_MODELS
    assert {'inti_vit_b16', 'inti_vit_b32_temporal', 'inti_vit_l14_336_deep'} <= set(CARD_MODELS)
    assert {'inti_vit_b16_siglip', 'inti_vit_b14_dinov2_deep', 'inti_vit_b16_pe', 'inti_vit_s16_dinov3',
            'inti_vit_l14_eva02_temporal'} <= set(CARD_MODELS)


@pytest.mark.parametrize('name, tower, licence, cited', [
    ('inti_vit_b16_pe', 'Perception Encoder (PE-Core) image tower `timm/vit_pe_core_base_patch16_224.fb`',
     'license: "apache-2.0"', '2504.13181'),
    ('inti_vit_s16_dinov3', 'self-supervised DINOv3 image tower `timm/vit_small_patch16_dinov3.lvd1689m`',
     'license_name: "dinov3-license"', '2508.10104'),
    ('inti_vit_l14_eva02', 'EVA02-CLIP image tower `timm/eva02_large_patch14_clip_224.merged2b`',
     'license: "mit"', '2303.15389'),
    ('inti_vit_b14_dinov2', 'DINOv2 image tower (with registers) `timm/vit_base_patch14_reg4_dinov2.lvd142m`',
     'license: "apache-2.0"', '2304.07193'),
    ('inti_vit_b16_augreg', 'supervised ViT (AugReg, ImageNet-21k) `timm/vit_base_patch16_224.augreg2_in21k_ft_in1k`',
     'license: "apache-2.0"', '2106.10270'),
    ('inti_vit_b16_siglip', 'SigLIP image tower `timm/vit_base_patch16_siglip_224.v2_webli`', 'license: "apache-2.0"',
     '2303.15343'),
])
def test_cards_word_each_family_its_own_way(tmp_path, name, tower, licence, cited):
    assert tool('cards')(['--out', str(tmp_path), '--models', name]) == 0
    card = sorted(tmp_path.iterdir())[0].read_text()
    assert tower in card and licence in card and cited in card and '2408.06840' in card
    assert 'CLIP image tower' not in card or 'eva02' in name  # EVA02-CLIP's is one


def test_card_of_a_model_from_scratch_states_only_what_is_known(tmp_path):
    """No tower, no licence, the GFLOPs of its own size: a width-64 model is not a CLIP tower (issue 23)."""
    from timm_inti.flops import count_flops
    from timm_inti.hub import model_card
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS).eval()
    card = model_card(model, finetuned_on='a test set')
    assert 'vit_base_patch16_clip_224' not in card and 'CLIP image tower' not in card
    assert 'starting weights: unknown' in card and 'Licence: unknown' in card and 'license: "other"' in card
    gflops = count_flops(model, torch.randn(1, 3, 8, 32, 32)).gflops
    assert f'GFLOPs per 8-frame clip of 32x32 frames: {gflops:.1f}' in card
    assert 'Origin of the weights: unknown' in model_card(model)


def test_origin_is_recorded_when_hub_weights_load_and_carried_by_the_saved_config(hub_cache, tmp_path):
    import timm_inti
    image = timm.create_model('vit_pe_core_base_patch16_224', **TINY_KWARGS)
    hub_cache('timm/vit_pe_core_base_patch16_224.fb', 'model.safetensors',
              safetensors.torch.save({k: v.contiguous() for k, v in image.state_dict().items()}))
    model = timm.create_model('inti_vit_b16_pe', pretrained=True, inti_after=(1,), **TINY_KWARGS)
    assert timm_inti.hub.initialised_from(model) == 'timm/vit_pe_core_base_patch16_224.fb'
    timm_inti.save_pretrained(model, tmp_path / 'saved', finetuned_on='a test set')
    card = (tmp_path / 'saved' / 'README.md').read_text()
    assert 'Fine-tuned on a test set, starting from the Perception Encoder (PE-Core) image tower' in card
    assert 'Licence: apache-2.0' in card
    loaded = timm.create_model(f'local-dir:{tmp_path / "saved"}', pretrained=True)
    assert timm_inti.hub.initialised_from(loaded) == 'timm/vit_pe_core_base_patch16_224.fb'
    # from a file, the source is not known: nothing is recorded
    from_file = timm.create_model('inti_vit_b16_pe', pretrained=True, inti_after=(1,), **TINY_KWARGS,
                                  pretrained_cfg_overlay=dict(file=str(tmp_path / 'saved' / 'model.safetensors')))
    assert timm_inti.hub.initialised_from(from_file) is None


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


@pytest.mark.slow
def test_convert_an_open_clip_pe_core_checkpoint(tmp_path, capsys):
    """open_clip's PE-Core: timm's Eva inside ``visual.trunk``, the text tower beside it (dropped)."""
    from test_zero_shot import open_clip_with_a_small_text_tower
    clip = open_clip_with_a_small_text_tower('PE-Core-B-16')
    source = tmp_path / 'open_clip_model.safetensors'
    safetensors.torch.save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, source)
    assert tool('convert')([str(source), '--model', 'inti_vit_b16_pe', '--out', str(tmp_path / 'out')]) == 0
    assert 'max |difference|' in capsys.readouterr().err
    x = torch.randn(1, 3, 1, 224, 224)
    with torch.no_grad():
        expected = clip.encode_image(x[:, :, 0])
    torch.testing.assert_close(one_frame_output(tmp_path / 'out', x), expected, atol=1e-4, rtol=0)


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

