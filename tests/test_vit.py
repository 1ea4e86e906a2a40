"""The video ViT: equivalence with the CLIP image tower, clip handling, the InTI schedule, bad input."""
import math

import pytest
import timm
import torch
from conftest import check_grad_checkpointing

import timm_inti
from timm_inti import VideoVisionTransformer


def tiny(name='inti_vit_b16', **kwargs):
    from conftest import TINY_KWARGS
    return timm.create_model(name, **dict(TINY_KWARGS, **kwargs))


def clip(batch=2, frames=8, size=32):
    return torch.randn(batch, 3, frames, size, size)


def image_tower_and_video_model(video_name='inti_vit_b16', tower='vit_base_patch16_clip_quickgelu_224', **kwargs):
    """A random CLIP image tower and a video model loaded from its weights through timm's pretrained path."""
    from conftest import TINY_KWARGS
    size_kwargs = dict(TINY_KWARGS)
    tower = timm.create_model(tower, num_classes=512, **size_kwargs).eval()
    video = timm.create_model(
        video_name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=tower.state_dict()),
        **size_kwargs, **kwargs).eval()
    return tower, video


@torch.no_grad()
def test_naive_equals_image_tower_per_frame_then_averaged():
    tower, naive = image_tower_and_video_model(inti_after=())
    x = clip(frames=8)
    expected = torch.stack([tower(x[:, :, t]) for t in range(8)], dim=1).mean(dim=1)
    torch.testing.assert_close(naive(x), expected, atol=1e-4, rtol=0)


@torch.no_grad()
def test_one_frame_clip_and_image_batch_equal_the_image_tower():
    tower, video = image_tower_and_video_model()
    x = clip(frames=1)
    expected = tower(x[:, :, 0])
    torch.testing.assert_close(video(x), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(video(x[:, :, 0]), expected, atol=1e-4, rtol=0)


@torch.no_grad()
def test_fresh_inti_model_is_the_tower_on_pair_averaged_tokens():
    """At init InTI averages frame pairs: a clip of identical pairs gives the per-frame answer."""
    tower, video = image_tower_and_video_model()
    frames = clip(frames=4)
    x = frames.repeat_interleave(2, dim=2)  # f0 f0 f1 f1 f2 f2 f3 f3
    expected = torch.stack([tower(frames[:, :, t]) for t in range(4)], dim=1).mean(dim=1)
    torch.testing.assert_close(video(x), expected, atol=1e-4, rtol=0)


@torch.no_grad()
def test_full_size_b16_matches_its_image_tower():
    tower = timm.create_model('vit_base_patch16_clip_quickgelu_224', num_classes=512).eval()
    video = timm.create_model(
        'inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(state_dict=tower.state_dict())).eval()
    assert video.inti_after == (3,) and video.num_frames == 8 and video.num_classes == 512
    x = torch.randn(1, 3, 1, 224, 224)
    expected = tower(x[:, :, 0])
    torch.testing.assert_close(video(x), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(video(x[:, :, 0]), expected, atol=1e-4, rtol=0)


def test_activation_follows_the_pretrained_tag():
    from timm.layers import get_act_layer
    quick_gelu, gelu = get_act_layer('quick_gelu'), get_act_layer('gelu')
    assert quick_gelu is not gelu
    assert isinstance(tiny('inti_vit_b16').blocks[0].mlp.act, quick_gelu)  # .openai is the default
    assert isinstance(tiny('inti_vit_b16.openai').blocks[0].mlp.act, quick_gelu)
    assert isinstance(tiny('inti_vit_b16.laion2b').blocks[0].mlp.act, gelu)
    assert isinstance(tiny('inti_vit_l14.datacompxl', inti_after=(2,)).blocks[0].mlp.act, gelu)
    assert isinstance(tiny('inti_vit_b16.laion2b', act_layer='quick_gelu').blocks[0].mlp.act, quick_gelu)


@pytest.mark.parametrize('frames', [1, 2, 3, 5, 8, 12])
def test_frame_counts_through_the_schedule(frames):
    model = tiny(inti_after=(1, 3)).eval()
    expected_frames = math.ceil(math.ceil(frames / 2) / 2)
    with torch.no_grad():
        feats = model.forward_features(clip(frames=frames))
        out = model.forward_head(feats)
    assert feats.shape == (2, expected_frames, 17, 64)
    assert out.shape == (2, 512)
    assert model.num_frames_after(frames) == [frames, math.ceil(frames / 2), math.ceil(frames / 2), expected_frames]


def test_forward_backward_odd_and_other_lengths_with_grad_checkpointing():
    model = tiny(num_classes=5, inti_after=(2,))
    check_grad_checkpointing(model, clip(frames=5))


def test_temporal_embedding_is_learned_zero_at_init_and_resampled():
    model = tiny(num_frames=4)
    assert model.temporal_embed.shape == (1, 4, 1, 64)
    assert torch.count_nonzero(model.temporal_embed) == 0
    assert 'temporal_embed' in model.no_weight_decay()
    with torch.no_grad():
        model.temporal_embed.copy_(torch.arange(4.).view(1, 4, 1, 1).expand(1, 4, 1, 64))
    resampled = timm_inti.resample_temporal_embed(model.temporal_embed, 8)
    assert resampled.shape == (1, 8, 1, 64)
    assert resampled[0, 0, 0, 0] == 0 and resampled[0, -1, 0, 0] == 3  # ends kept, linear in between
    assert torch.all(resampled[0, 1:, 0, 0] >= resampled[0, :-1, 0, 0])
    # a clip of another length uses the resampled embedding: the output depends on it
    x = clip(frames=8)
    with torch.no_grad():
        out = model(x)
        model.temporal_embed.zero_()
        assert not torch.allclose(model(x), out)


def test_temporal_embedding_marks_frame_order():
    model = tiny(inti_after=()).eval()
    with torch.no_grad():
        model.temporal_embed.normal_(std=1.0)
        x = clip(frames=8)
        assert not torch.allclose(model(x), model(x.flip(2)), atol=1e-4)
        model.temporal_embed.zero_()
        torch.testing.assert_close(model(x), model(x.flip(2)), atol=1e-5, rtol=1e-5)


def test_other_image_sizes_and_patch_grids():
    model = tiny(img_size=(32, 48), inti_after=(2,)).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 4, 32, 48)).shape == (1, 2, 1 + 4 * 6, 64)
    dynamic = tiny(dynamic_img_size=True, inti_after=(2,)).eval()
    with torch.no_grad():
        assert dynamic.forward_features(torch.randn(1, 3, 4, 40, 24)).shape == (1, 2, 1 + 5 * 3, 64)
        assert dynamic(torch.randn(1, 3, 4, 40, 24)).shape == (1, 512)


@pytest.mark.parametrize('kwargs, tokens', [
    (dict(class_token=False, global_pool='avg'), 16),
    (dict(reg_tokens=2), 19),
    (dict(global_pool='map'), 17),
])
def test_without_class_token_with_registers_or_attention_pooling(kwargs, tokens):
    model = tiny(inti_after=(1,), num_classes=3, **kwargs)
    x = clip(frames=4)
    assert model.forward_features(x).shape == (2, 2, tokens, 64)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()


def test_head_averages_pooled_frames():
    model = tiny(inti_after=(), num_classes=7).eval()
    feats = torch.randn(2, 3, 17, 64)
    expected = model.head(feats[:, :, 0].mean(dim=1))  # class tokens averaged over frames, then the head
    torch.testing.assert_close(model.forward_head(feats), expected)
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats[:, :, 0].mean(dim=1))
    model.reset_classifier(0, '')  # no pooling: tokens per frame stay
    assert model.forward_head(feats).shape == (2, 3, 17, 64)


def test_schedule_validation():
    with pytest.raises(ValueError, match='inti_after'):
        tiny(inti_after=(0,))
    with pytest.raises(ValueError, match='inti_after'):
        tiny(inti_after=(3, 2))
    with pytest.raises(ValueError, match='inti_after'):
        tiny(inti_after=(5,))
    with pytest.raises(ValueError, match='num_frames'):
        tiny(num_frames=0)
    with pytest.raises(ValueError, match='patch_drop_rate'):
        tiny(inti_after=(2,), patch_drop_rate=0.5)
    assert tiny(inti_after=(), patch_drop_rate=0.5).inti_after == ()


@pytest.mark.parametrize('kwargs, message', [
    (dict(inti_after='12'), r"inti_after must be a sequence of distinct, increasing integer block counts between 1 and "
                            r"depth=4, e\.g\. \(1,\); got '12' \(str\)"),
    (dict(inti_after=(1.5,)), r'got \(1\.5,\), where 1\.5 is not an integer'),
    (dict(inti_after=(True,)), r'where True is not an integer'),
    (dict(inti_after=3), r'got 3 \(int\)'),
    (dict(inti_after=(3, 1)), r'between 1 and depth=4.*got \(3, 1\)'),
    (dict(inti_after=(2, 2)), r'distinct.*got \(2, 2\)'),
    (dict(inti_after=(5,)), r'between 1 and depth=4.*got \(5,\)'),
    (dict(num_frames=2.5), r'num_frames must be an integer of at least 1, got 2\.5 \(float\)'),
    (dict(num_frames='8'), r"num_frames must be an integer of at least 1, got '8' \(str\)"),
    (dict(adapter_dim=-4), r'adapter_dim must be an integer of at least 0, got -4'),
    (dict(inti_kernel_sizes='37'),
     r"kernel_sizes must be a sequence of odd, positive integers such as \(1, 3, 7\), got '37'"),
    (dict(inti_kernel_sizes=(1, 2.5)), r'kernel_sizes must be a sequence of odd, positive integers'),
    (dict(inti_hidden_dim=0), r'InTI hidden_dim must be a positive integer, got 0'),
])
def test_bad_model_arguments_are_refused_up_front(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_integer_like_schedules_are_accepted():
    import numpy as np
    assert tiny(inti_after=[np.int64(1), torch.tensor(3)], num_frames=np.int32(4)).inti_after == (1, 3)


def test_bad_input_gets_a_clear_error():
    model = tiny()
    with pytest.raises(ValueError, match=r'clip \(B, C, T, H, W\) or an image batch.*3-D'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='6-D'):
        model(torch.randn(1, 3, 2, 2, 32, 32))
    with pytest.raises(ValueError, match='expected 3 channels.*got 1'):
        model(torch.randn(2, 1, 8, 32, 32))
    with pytest.raises(ValueError, match=r'looks like \(B, T, C, H, W\)'):
        model(torch.randn(2, 8, 3, 32, 32))
    with pytest.raises(ValueError, match='at least one frame'):
        model(torch.randn(2, 3, 0, 32, 32))
    with pytest.raises(ValueError, match='expected 32x32 frames, got 48x40'):
        model(torch.randn(2, 3, 8, 48, 40))
    dynamic = tiny(dynamic_img_size=True)
    with pytest.raises(ValueError, match='not a multiple of the patch size'):
        dynamic(torch.randn(2, 3, 8, 36, 32))
    with pytest.raises(ValueError,
                       match=r'empty batch: expected at least one clip in dim 0, got input shape \(0, 3, 8, 32, 32\)'):
        model(torch.randn(0, 3, 8, 32, 32))


def test_input_of_the_wrong_type_or_dtype_is_named():
    import numpy as np
    model = tiny()
    expected = r'expects a float tensor clip \(B, C, T, H, W\) or image batch \(B, C, H, W\)'
    with pytest.raises(TypeError, match=expected + r', got a numpy\.ndarray: convert it with torch\.from_numpy'):
        model(np.zeros((1, 3, 2, 32, 32), dtype=np.float32))
    with pytest.raises(TypeError, match=expected + r', got a builtins\.list: stack the clips with torch\.stack'):
        model([torch.randn(3, 2, 32, 32)])
    with pytest.raises(TypeError, match=expected + r', got dtype torch\.uint8: scale uint8 frames to \[0, 1\]'):
        model(torch.zeros(1, 3, 2, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError,
                       match=r'the input is torch\.float16 and the model torch\.float32: convert one to the other'):
        model(torch.zeros(1, 3, 2, 32, 32, dtype=torch.float16))
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():  # mixed precision is the supported way
        assert model(torch.randn(1, 3, 2, 32, 32).bfloat16()).shape == (1, 512)
    half = tiny().to(torch.bfloat16)
    with torch.no_grad():
        assert half(torch.randn(1, 3, 2, 32, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_is_a_timm_vision_transformer():
    model = tiny()
    assert isinstance(model, VideoVisionTransformer)
    assert isinstance(model, timm.models.VisionTransformer)
    assert model.pretrained_cfg['hf_hub_id'] == 'timm/vit_base_patch16_clip_224.openai'
