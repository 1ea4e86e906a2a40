"""timm's Eva class as a video model: Perception Encoder, DINOv3 and EVA02-CLIP, with 2-D rotary embeddings."""
import pytest
import timm
import torch
from conftest import TINY_KWARGS, check_grad_checkpointing
from test_backbones import check_one_frame_is_the_image, safetensors_bytes

import timm_inti
from timm_inti import VideoEva, VideoVisionTransformer
from timm_inti.backbones import BACKBONES

EVA_BACKBONES = sorted(name for name, b in BACKBONES.items() if b.model_class == 'Eva')
# one tower per family, with the tag its image weights are published under
FAMILIES = [
    ('inti_vit_b16_pe.fb', 'vit_pe_core_base_patch16_224.fb'),
    ('inti_vit_s16_dinov3.lvd1689m', 'vit_small_patch16_dinov3.lvd1689m'),
    ('inti_vit_b16_eva02.merged2b', 'eva02_base_patch16_clip_224.merged2b'),
]


def random_image_model(name, **kwargs):
    """timm's image model with weights far from their init (so that every path changes the output)."""
    model = timm.create_model(name, **dict(TINY_KWARGS, **kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    return model


def test_the_families_are_registered_as_eva_video_models():
    assert {b.family for b in BACKBONES.values() if b.model_class == 'Eva'} == {'pe', 'dinov3', 'eva02'}
    for name in EVA_BACKBONES:
        backbone = BACKBONES[name]
        with torch.device('meta'):
            model = timm.create_model(f'inti_{backbone.alias}')
            image = timm.create_model(name)
        assert type(model) is VideoEva and isinstance(model, timm.models.eva.Eva)
        assert model.rope is not None and model.num_prefix_tokens == backbone.num_prefix_tokens
        # the same architecture as timm's image model of that name: same parameters, same shapes
        assert {k: v.shape for k, v in model.state_dict().items() if not k.startswith(model.video_only_prefixes)} \
            == {k: v.shape for k, v in image.state_dict().items()}


@pytest.mark.parametrize('name', EVA_BACKBONES)
@torch.no_grad()
def test_one_frame_and_eight_copies_give_the_image_output_of_every_tower(name, tmp_path):
    """Loaded through ``pretrained=True`` with a file overlay, as a user's own checkpoint would be."""
    image = random_image_model(name)
    path = tmp_path / 'model.safetensors'
    path.write_bytes(safetensors_bytes(image))
    video = timm.create_model(
        f'inti_{BACKBONES[name].alias}', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
        inti_after=(1,), **TINY_KWARGS).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = image(x)
    assert torch.equal(video(x[:, :, None]), expected)  # the same operations: exactly timm's output
    assert torch.equal(video(x), expected)  # an image batch is a one-frame clip
    torch.testing.assert_close(video(x[:, :, None].expand(-1, -1, 8, -1, -1)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('video_name, image_name', FAMILIES)
@torch.no_grad()
def test_hub_weights_load_for_the_registered_model_and_the_generic_path(hub_cache, video_name, image_name):
    """``pretrained=True`` from the Hub layout, and ``create_video_model`` of timm's own Eva name."""
    check_one_frame_is_the_image(hub_cache, video_name, image_name, VideoEva)


@torch.no_grad()
def test_naive_adaptation_is_the_image_model_per_frame_then_averaged():
    """The rotary embedding of the patch grid is the same for every frame; PE's attention pool runs per frame."""
    for name in ('vit_pe_core_base_patch16_224', 'vit_small_patch16_dinov3', 'eva02_base_patch16_clip_224'):
        image = random_image_model(name)
        naive = timm_inti.create_video_model(name, inti_after=(), **TINY_KWARGS).eval()
        naive.load_state_dict(image.state_dict(), strict=False)
        x = torch.randn(2, 3, 5, 32, 32)
        per_frame = torch.stack([image(x[:, :, t]) for t in range(5)], dim=1).mean(dim=1)
        torch.testing.assert_close(naive(x), per_frame, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_fresh_inti_is_the_image_model_on_pair_averaged_tokens():
    image = random_image_model('vit_pe_core_base_patch16_224')
    video = timm_inti.create_video_model('vit_pe_core_base_patch16_224', inti_after=(1,), **TINY_KWARGS).eval()
    video.load_state_dict(image.state_dict(), strict=False)
    assert torch.count_nonzero(video.inti['1'].mlp.fc2.weight) == 0  # averaging init
    frames = torch.randn(2, 3, 4, 32, 32)
    x = frames.repeat_interleave(2, dim=2)  # f0 f0 f1 f1 ...: the merge averages identical frames
    expected = torch.stack([image(frames[:, :, t]) for t in range(4)], dim=1).mean(dim=1)
    torch.testing.assert_close(video(x), expected, atol=1e-5, rtol=1e-5)


def test_other_eva_models_through_the_generic_path():
    """Any Eva name works: mixed (per-block) rope, a register without class token, EVA02's MIM tower."""
    for name, prefix in (('vit_small_patch16_rope_mixed_224', 1), ('vit_base_patch16_rope_reg1_gap_256', 1),
                         ('eva02_tiny_patch14_224', 1)):
        model = timm_inti.create_video_model(name, num_classes=3, **TINY_KWARGS)
        assert isinstance(model, VideoEva) and model.num_prefix_tokens == prefix
        out = model(torch.randn(2, 3, 4, 32, 32))
        assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert not issubclass(VideoEva, VideoVisionTransformer)  # they share the mixin, not each other
    assert VideoEva._forward_blocks is VideoVisionTransformer._forward_blocks  # one implementation of time


@pytest.mark.parametrize('alias', ['inti_vit_b16_pe_temporal', 'inti_vit_s16_dinov3_deep'])
def test_gradient_checkpointing_and_temporal_variants(alias):
    model = timm.create_model(alias, num_classes=4, **dict(TINY_KWARGS, inti_after=(1, 2)))
    if model.adapters is not None:  # adapters start at zero; make them count
        torch.nn.init.normal_(model.adapters[0].up.weight, std=0.1)
    grads = check_grad_checkpointing(model, torch.randn(2, 3, 4, 32, 32))
    assert grads['temporal_embed'].abs().sum() > 0 and grads['inti.1.mlp.fc2.weight'].abs().sum() > 0


@torch.no_grad()
def test_intermediates_and_features_with_dinov3_registers():
    model = timm.create_model('inti_vit_s16_dinov3', inti_after=(2,), **TINY_KWARGS).eval()
    x = torch.randn(2, 3, 6, 32, 32)
    final, inter = model.forward_intermediates(x, return_prefix_tokens=True)
    torch.testing.assert_close(final, model.forward_features(x))
    maps, prefix = zip(*inter)
    assert [m.shape for m in maps] == [(2, 64, t, 4, 4) for t in (6, 6, 3, 3)]
    assert [p.shape for p in prefix] == [(2, t, 5, 64) for t in (6, 6, 3, 3)]  # class token + 4 registers
    features = timm.create_model(
        'inti_vit_s16_dinov3', inti_after=(2,), features_only=True, out_indices=(0, 3), **TINY_KWARGS).eval()
    assert [m.shape for m in features(x)] == [(2, 64, 6, 4, 4), (2, 64, 3, 4, 4)]


@torch.no_grad()
def test_video_checkpoint_of_an_eva_model_loads_back_and_saves_by_local_dir(tmp_path):
    trained = timm.create_model('inti_vit_b16_eva02', num_frames=8, num_classes=5, **TINY_KWARGS)
    for p in trained.parameters():
        p.normal_(std=0.02)
    timm_inti.save_pretrained(trained, tmp_path / 'saved')
    loaded = timm.create_model(f'local-dir:{tmp_path / "saved"}', pretrained=True).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    assert type(loaded) is VideoEva
    torch.testing.assert_close(loaded(x), trained.eval()(x))
    path = tmp_path / 'video.safetensors'
    path.write_bytes(safetensors_bytes(trained))
    resampled = timm.create_model('inti_vit_b16_eva02', num_frames=16, num_classes=5, pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(path)), **TINY_KWARGS)
    assert resampled.temporal_embed.shape == (1, 16, 1, 64)


def test_an_eva_checkpoint_that_does_not_fit_is_refused(tmp_path):
    path = tmp_path / 'model.safetensors'
    path.write_bytes(safetensors_bytes(random_image_model('vit_pe_core_base_patch16_224', depth=2)))
    with pytest.raises(timm_inti.CheckpointError, match=r'model\.safetensors does not fit .*missing keys: blocks\.2'):
        timm.create_model('inti_vit_b16_pe', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                          inti_after=(1,), **TINY_KWARGS)
