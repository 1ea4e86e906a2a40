"""Clip transforms: the model's normalisation and sizes, one crop for all frames, evaluation views."""
import pytest
import timm
import timm.utils
import torch
from conftest import write_video

import timm_inti  # noqa: F401
from timm_inti.video import create_video_datasets, create_video_transform, read_frames
from timm_inti.video.transforms import SameForEveryFrame

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


AUGMENT = dict(auto_augment='rand-m9-n4-mstd0.5-inc1', re_prob=1.0, re_mode='pixel', re_count=2)


def decoded_clip(tmp_path, num=6):
    """Frames of a real (written, then decoded) video: distinct frames, uint8 (T, H, W, 3)."""
    path = write_video(tmp_path / 'clip.mp4', num_frames=num, size=(48, 64), noise=True)
    return read_frames(path, list(range(num)))[0]


def test_randaugment_and_erasing_are_drawn_once_per_clip(tmp_path):
    clip = decoded_clip(tmp_path)
    still = clip[:1].repeat(6, 1, 1, 1)  # one decoded frame, six times
    plain = create_video_transform(CONFIG, is_training=True, scale=(0.5, 1.0))
    augmented = create_video_transform(CONFIG, is_training=True, scale=(0.5, 1.0), **AUGMENT)
    changed = 0
    for seed in range(8):
        timm.utils.random_seed(seed)
        out = augmented(still)
        assert out.shape == (3, 6, 32, 32)
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(6)), 'identical frames in, identical frames out'
        timm.utils.random_seed(seed)
        changed += not torch.equal(out, plain(still))
    assert changed >= 6, 'RandAugment and erasing changed the clips'

    # frames that differ: each frame gets what the policy and erasing give that frame alone from the clip's draws
    policy = SameForEveryFrame(augmented.augment.transform, pil=True)
    frames_tchw = clip.permute(0, 3, 1, 2).contiguous()
    timm.utils.random_seed(3)  # Python's, NumPy's and torch's generators: timm's policies draw from all
    whole = policy(frames_tchw)
    for t in range(len(clip)):
        timm.utils.random_seed(3)
        assert torch.equal(whole[t], policy(frames_tchw[t:t + 1])[0]), f'frame {t} got other ops'


def test_erasing_puts_one_box_set_on_every_frame():
    transform = create_video_transform(CONFIG, is_training=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0,
                                       re_prob=1.0, re_mode='const')
    x = torch.stack([torch.full((32, 32, 3), 40 * t, dtype=torch.uint8) for t in range(4)])  # frames differ
    for seed in range(5):
        torch.manual_seed(seed)
        erased = transform(x)[0] == 0  # 'const' fills 0 after normalisation: no frame's own level is 0
        assert erased[0].any() and all(torch.equal(erased[0], erased[t]) for t in range(4)), 'the same box'


def test_hflip_zero_never_flips_and_one_always_does():
    x = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    x[:, :, :8] = 255  # a white left edge
    for hflip, white_left in ((0.0, True), (1.0, False)):
        transform = create_video_transform(CONFIG, is_training=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=hflip)
        for seed in range(20):
            torch.manual_seed(seed)
            out = transform(x)
            assert (out[0, 0, 16, 2] > out[0, 0, 16, 29]) == white_left, f'hflip {hflip}, seed {seed}'


def test_evaluation_is_deterministic_whatever_the_training_augmentation(tmp_path):
    for split in ('train', 'val'):
        write_video(tmp_path / split / 'a' / 'v.mp4', num_frames=12, size=(48, 64), noise=True)
    train_set, val_set = create_video_datasets(
        str(tmp_path), CONFIG, num_frames=4, test_crops=3, augmentation=dict(AUGMENT, color_jitter=0.4))
    assert train_set.transform.augment is not None and train_set.transform.erase is not None
    assert val_set.transform.augment is None and val_set.transform.erase is None
    torch.manual_seed(0)
    first = val_set[0][0]
    torch.manual_seed(1)
    assert torch.equal(first, val_set[0][0])


def test_unknown_augmentation_policy_is_named():
    with pytest.raises(ValueError, match="'rand-q9'"):
        create_video_transform(CONFIG, is_training=True, auto_augment='rand-q9')
