"""Pretrained loading: CLIP checkpoints in timm, OpenAI and open_clip formats, the Hub path, and refusals."""
import io

import pytest
import safetensors.torch
import timm
import torch
from conftest import TINY_KWARGS

import timm_inti


def safetensors_bytes(state_dict):
    return safetensors.torch.save({k: v.contiguous() for k, v in state_dict.items()})


@pytest.mark.parametrize('layout', ['openai', 'open_clip_training'])
def test_open_clip_and_openai_checkpoints_reproduce_encode_image(open_clip_b16, layout, tmp_path):
    state_dict = open_clip_b16.state_dict()  # OpenAI's key names: visual.conv1.weight, visual.proj, ...
    if layout == 'open_clip_training':  # what open_clip's trainer saves: DDP prefixes under 'state_dict'
        state_dict = {'epoch': 32, 'name': 'run', 'state_dict': {f'module.{k}': v for k, v in state_dict.items()}}
    path = tmp_path / 'clip.pt'
    torch.save(state_dict, path)
    video = timm.create_model('inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(2, 3, 1, 224, 224)
    with torch.no_grad():
        expected = open_clip_b16.encode_image(x[:, :, 0])
        torch.testing.assert_close(video(x), expected, atol=1e-4, rtol=0)


def test_timm_checkpoint_file(tmp_path):
    tower = timm.create_model('vit_base_patch16_clip_quickgelu_224', num_classes=512, **TINY_KWARGS).eval()
    path = tmp_path / 'model.safetensors'
    path.write_bytes(safetensors_bytes(tower.state_dict()))
    video = timm.create_model(
        'inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY_KWARGS).eval()
    x = torch.randn(2, 3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(video(x), tower(x[:, :, 0]), atol=1e-4, rtol=0)


@pytest.mark.parametrize('name, tower_name, full_size', [
    ('inti_vit_b16', 'vit_base_patch16_clip_quickgelu_224', True),
    ('inti_vit_b16.laion2b', 'vit_base_patch16_clip_224', False),
])
def test_pretrained_true_downloads_from_the_hub(hub_cache, name, tower_name, full_size):
    """``pretrained=True`` takes timm's Hub path; the offline cache serves the file a download would."""
    size_kwargs = {} if full_size else TINY_KWARGS
    tower = timm.create_model(tower_name, num_classes=512, **size_kwargs).eval()
    repo_id = timm.models.get_pretrained_cfg(name if '.' in name else f'{name}.openai').hf_hub_id
    assert repo_id.startswith('timm/vit_base_patch16_clip_224.')
    hub_cache(repo_id, 'model.safetensors', safetensors_bytes(tower.state_dict()))

    video = timm.create_model(name, pretrained=True, **size_kwargs).eval()
    size = 224 if full_size else 32
    x = torch.randn(1, 3, 1, size, size)
    with torch.no_grad():
        torch.testing.assert_close(video(x), tower(x[:, :, 0]), atol=1e-4, rtol=0)
    # InTI at its averaging init, temporal embedding at zero
    assert torch.count_nonzero(video.temporal_embed) == 0
    assert all(torch.count_nonzero(layer.mlp.fc2.weight) == 0 for layer in video.inti.values())


def test_new_head_other_channels_and_size_from_image_weights(tmp_path):
    tower = timm.create_model('vit_base_patch16_clip_quickgelu_224', num_classes=512, **TINY_KWARGS)
    path = tmp_path / 'model.safetensors'
    path.write_bytes(safetensors_bytes(tower.state_dict()))
    overlay = dict(file=str(path))
    kwargs = dict(TINY_KWARGS, img_size=48)
    model = timm.create_model(
        'inti_vit_b16', pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10, in_chans=1, **kwargs)
    assert model.head.out_features == 10
    assert model.pos_embed.shape == (1, 1 + 6 * 6, 64)  # resampled from the 4x4 grid by timm's filter
    torch.testing.assert_close(model.blocks[1].mlp.fc1.weight, tower.blocks[1].mlp.fc1.weight)
    assert model(torch.randn(2, 1, 4, 48, 48)).shape == (2, 10)


def test_video_checkpoint_keeps_trained_inti_and_resamples_time(tmp_path):
    trained = timm.create_model('inti_vit_b16', num_frames=8, **TINY_KWARGS)
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_(std=0.02)
    path = tmp_path / 'video.safetensors'
    path.write_bytes(safetensors_bytes(trained.state_dict()))
    loaded = timm.create_model(
        'inti_vit_b16', num_frames=16, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY_KWARGS)
    torch.testing.assert_close(loaded.inti['3'].mlp.fc2.weight, trained.inti['3'].mlp.fc2.weight)
    assert loaded.temporal_embed.shape == (1, 16, 1, 64)
    torch.testing.assert_close(
        loaded.temporal_embed, timm_inti.resample_temporal_embed(trained.temporal_embed.detach(), 16))


@pytest.mark.parametrize('change, message', [
    (dict(depth=2, inti_after=(1,)), r'missing keys: inti\.1\..*unexpected keys: blocks\.2\.'),
    (dict(embed_dim=32, num_heads=2),
     r'shape mismatches.*blocks\.0\.attn\.proj\.bias \(64,\) vs \(32,\).* and \d+ more'),
    (dict(inti_after=(2,)), r'missing keys: inti\.2\..*unexpected keys: inti\.3\.'),
])
def test_checkpoint_that_does_not_fit_is_refused_naming_file_and_keys(tmp_path, change, message):
    source = timm.create_model('inti_vit_b16', **TINY_KWARGS)
    path = tmp_path / 'video.safetensors'
    path.write_bytes(safetensors_bytes(source.state_dict()))
    kwargs = dict(TINY_KWARGS, **change)
    with pytest.raises(timm_inti.CheckpointError, match=message) as err:
        timm.create_model('inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    assert str(path) in str(err.value)


def test_image_checkpoint_missing_a_key_is_refused(tmp_path):
    state_dict = timm.create_model('vit_base_patch16_clip_quickgelu_224', num_classes=512, **TINY_KWARGS).state_dict()
    del state_dict['blocks.1.attn.qkv.weight']
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    path = tmp_path / 'clip.pt'
    path.write_bytes(buffer.getvalue())
    with pytest.raises(timm_inti.CheckpointError,
                       match=r'clip\.pt does not fit .*missing keys: blocks\.1\.attn\.qkv\.weight'):
        timm.create_model('inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY_KWARGS)


def test_weights_missing_offline_name_the_local_remedy(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 (conftest) and an empty cache (other tests fill the session's): the error says how to load a
    local copy."""
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path))
    expected = (r'vit_base_patch16_clip_224\.openai: cannot read the pretrained weights \(.*\); without the Hub, '
                r'load a local copy: pretrained_cfg_overlay=dict\(file=PATH\), or a local-dir:DIR name '
                r'\(see docs/offline\.md\)')
    with pytest.raises(timm_inti.CheckpointError, match=expected):
        timm.create_model('inti_vit_b16', pretrained=True)
