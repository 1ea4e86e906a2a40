"""Clip transforms: the model's normalisation and sizes, one crop for all frames, evaluation views."""
import pytest
import timm
import torch

import timm_inti  # noqa: F401
from timm_inti.video import create_video_transform

CONFIG = dict(input_size=(3, 32, 32), interpolation='bilinear', mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5),
              crop_pct=1.0)


def frames(num=4, height=48, width=64):
    """Frame t is all t * 40 except a bright patch whose position moves with t."""
    x = torch.zeros(num, height, width, 3, dtype=torch.uint8)
    for t in range(num):
        x[t] = t * 40
        x[t, 10:20, 5 + 5 * t:15 + 5 * t] = 255
    return x


def test_output_layout_and_normalisation_follow_the_data_config():
    out = create_video_transform(CONFIG, is_training=False)(torch.full((3, 32, 32, 3), 153, dtype=torch.uint8))
    assert out.shape == (1, 3, 3, 32, 32) and out.dtype == torch.float32  # (V, C, T, H, W): one view
    out = out[0]
    expected = (torch.tensor(0.6) - torch.tensor(CONFIG['mean'])) / torch.tensor(CONFIG['std'])
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), expected, atol=1e-5, rtol=0)


def test_model_data_config_is_used():
    model = timm.create_model('inti_vit_b16', depth=1, inti_after=(1,))
    config = timm.data.resolve_input_data_config(model)
    out = create_video_transform(config, is_training=False)(torch.full((2, 300, 400, 3), 255, dtype=torch.uint8))[0]
    assert out.shape == (3, 2, 224, 224)
    expected = (1 - torch.tensor(timm.data.OPENAI_CLIP_MEAN)) / torch.tensor(timm.data.OPENAI_CLIP_STD)
    torch.testing.assert_close(out[:, 0, 100, 100], expected, atol=1e-5, rtol=0)


def test_training_crop_and_flip_are_the_same_for_every_frame():
    transform = create_video_transform(CONFIG, is_training=True, scale=(0.2, 0.6))
    still = frames(1).repeat(6, 1, 1, 1)  # six identical frames
    outputs = []
    for seed in range(6):
        torch.manual_seed(seed)
        out = transform(still)
        assert out.shape == (3, 6, 32, 32), 'a training clip is (C, T, H, W), no view axis'
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(6)), 'every frame gets the same crop and flip'
        outputs.append(out)
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:]), 'crops are random across clips'


def test_evaluation_keeps_frame_order_and_centres_the_crop():
    out = create_video_transform(dict(CONFIG, input_size=(3, 48, 48)), is_training=False)(frames())[0]
    levels = out[0, :, 40, 4] * CONFIG['std'][0] + CONFIG['mean'][0]  # a background pixel of each frame
    torch.testing.assert_close(levels, torch.tensor([0, 40, 80, 120]) / 255, atol=1e-2, rtol=0)


def test_three_crops_span_the_long_side():
    transform = create_video_transform(dict(CONFIG, input_size=(3, 48, 48)), is_training=False, num_crops=3)
    x = torch.zeros(2, 48, 96, 3, dtype=torch.uint8)
    x[:, :, :32] = 255  # left third white
    views = transform(x)
    assert views.shape == (3, 3, 2, 48, 48)  # (V, C, T, H, W)
    white = [(v[0] > 0).float().mean().item() for v in views]
    assert white[0] > 0.6 and white[2] == 0 and white[0] > white[1] > white[2]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r'uint8 frames \(T, H, W, 3\)'):
        create_video_transform(CONFIG, is_training=False)(torch.zeros(4, 3, 32, 32))
    with pytest.raises(ValueError, match='num_crops'):
        create_video_transform(CONFIG, is_training=False, num_crops=2)
    with pytest.raises(ValueError, match='one random crop'):
        create_video_transform(CONFIG, is_training=True, num_crops=3)
