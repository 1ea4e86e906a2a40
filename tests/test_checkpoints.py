"""timm_inti.checkpoints: the one builder (registered, generic and refused names), weights files that cannot be read,
loading a checkpoint's weights with or without its head."""
import re

import pytest
import timm
import torch
from conftest import TINY_KWARGS

import timm_inti
from timm_inti import CheckpointError, VideoVisionTransformer
from timm_inti.checkpoints import create_model, create_model_from_checkpoint, load_weights

VIDEO = dict(TINY_KWARGS, num_frames=4, inti_after=(2,))


@pytest.mark.parametrize('name', ['inti_vit_b16', 'vit_small_patch16_224', 'vit_base_patch16_siglip_224.v2_webli'])
def test_registered_and_plain_timm_names_become_video_models(name):
    model = create_model(name, num_classes=3, **VIDEO)
    assert isinstance(model, VideoVisionTransformer) and model.inti_after == (2,) and model.num_frames == 4
    assert model(torch.randn(2, 3, 4, 32, 32)).shape == (2, 3)
    assert model.pretrained_cfg['architecture'] == name.split('.')[0]


@pytest.mark.parametrize('name, kwargs', [
    ('resnet18', {}),
    ('resnet18', dict(img_size=32)),  # an argument ResNet does not take: still the class is named, not the argument
    ('convnext_atto', {}),
])
def test_other_model_classes_are_refused_naming_the_supported_ones(name, kwargs):
    with pytest.raises(ValueError) as error:
        create_model(name, num_frames=4, **kwargs)
    message = str(error.value)
    assert message.startswith(f'{name} is a timm.models.') and '\n' not in message
    assert 'timm.models.vision_transformer.VisionTransformer' in message and 'timm.models.eva.Eva' in message
    assert 'num_frames' not in message and 'img_size' not in message


def test_an_argument_the_model_does_not_take_is_named():
    with pytest.raises(ValueError, match=r"vit_small_patch16_224: .*unexpected keyword argument 'not_an_arg'"):
        create_model('vit_small_patch16_224', not_an_arg=1, **VIDEO)


def _random_pickle_bytes() -> bytes:
    return b'\x80\x02' + bytes((i * 97 + 13) % 256 for i in range(4000))  # PROTO opcode, then noise


@pytest.mark.parametrize('kind, reason', [
    ('random', r'not a PyTorch weights file'),
    ('other_bytes', r'neither safetensors nor a PyTorch file'),
    ('empty', r'the file is empty, 0 bytes'),
    ('missing', r'no such file'),
    ('folder', r'not a file'),
])
@pytest.mark.parametrize('name', ['inti_vit_b16', 'vit_small_patch16_224'])
def test_unreadable_pretrained_files_are_named_with_a_reason(tmp_path, kind, reason, name):
    path = tmp_path / 'weights.pth'
    if kind == 'random':
        path.write_bytes(_random_pickle_bytes())
    elif kind == 'other_bytes':
        path.write_bytes(b'GIF89a' + bytes(2000))
    elif kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'folder':
        path.mkdir()
    with pytest.raises(CheckpointError) as error:
        create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **VIDEO)
    message = str(error.value)
    assert message.startswith(f'{path}: cannot read the pretrained weights (') and message.endswith(')')
    assert re.search(reason, message), message
    assert 'weights_only=False' not in message and 'trust' not in message


def test_random_bytes_as_a_checkpoint_never_get_the_advice_to_unpickle(tmp_path):
    path = tmp_path / 'weights.pth'
    path.write_bytes(_random_pickle_bytes())
    model = timm.create_model('inti_vit_b16', **VIDEO)
    for load in (lambda: load_weights(model, path), lambda: create_model_from_checkpoint(path, 'inti_vit_b16')):
        with pytest.raises(CheckpointError) as error:
            load()
        assert str(error.value).startswith(f'{path}: not a readable checkpoint (not a PyTorch weights file')
        assert 'weights_only' not in str(error.value) and 'trust' not in str(error.value)


@pytest.mark.parametrize('config, reason', [
    ('{broken', r'not valid JSON \(Expecting property name'),
    ('', r'not valid JSON'),
    ('{"model_type": "bert"}', r'not a timm model config'),
])
def test_a_broken_config_json_is_named_from_the_python_api(tmp_path, config, reason):
    timm_inti.save_pretrained(timm.create_model('inti_vit_b16', **VIDEO), tmp_path / 'saved')
    (tmp_path / 'saved' / 'config.json').write_text(config)
    for build in (timm_inti.create_video_model, create_model):
        with pytest.raises(CheckpointError, match=f'^{tmp_path}/saved/config.json: {reason}'):
            build(f'local-dir:{tmp_path / "saved"}')


def test_a_frame_size_off_the_patch_grid_gets_advice_the_model_accepts():
    model = timm.create_model('inti_vit_b16', **VIDEO)
    with pytest.raises(ValueError, match=r'frame size 33x33 is not a multiple of the patch size 8x8: resize or crop '
                                         r'the frames to a multiple, e.g. 32x32$'):
        model(torch.randn(1, 3, 2, 33, 33))
    with pytest.raises(ValueError, match=r'e.g. 40x32, and create the model with img_size=\(40, 32\)$'):
        model(torch.randn(1, 3, 2, 41, 33))
    resized = timm.create_model('inti_vit_b16', **dict(VIDEO, img_size=(40, 32)))  # as advised
    assert resized(torch.randn(1, 3, 2, 40, 32)).shape == model(torch.randn(1, 3, 2, 32, 32)).shape


def test_load_weights_can_leave_the_head_for_new_classes(tmp_path):
    source = timm.create_model('inti_vit_b16', num_classes=5, **VIDEO)
    torch.save(source.state_dict(), tmp_path / 'five.pth')
    target = timm.create_model('inti_vit_b16', num_classes=3, **VIDEO)
    head = target.head.weight.detach().clone()
    with pytest.raises(CheckpointError, match=r'five.pth does not fit inti_vit_b16: .*head.weight'):
        load_weights(target, tmp_path / 'five.pth')
    load_weights(target, tmp_path / 'five.pth', except_head=True)
    assert torch.equal(target.head.weight, head)
    assert torch.equal(target.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_an_eva_name_becomes_a_video_eva_through_the_commands_builder():
    model = create_model('eva02_tiny_patch14_224', num_classes=3, img_size=28, depth=2, num_frames=4, inti_after=(1,))
    assert type(model).__name__ == 'VideoEva' and model.inti_after == (1,) and model.num_frames == 4
    assert model(torch.randn(2, 3, 4, 28, 28)).shape == (2, 3)
