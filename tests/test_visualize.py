"""timm_inti.visualize: reading the weights InTI used, mapping them to frames and patches, and the pictures."""
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import timm_inti  # noqa: F401
from tests.conftest import TINY_KWARGS, write_video
from timm_inti.video import create_video_transform, read_frames, sample_indices
from timm_inti.visualize import contact_sheet, display_frames, merge_weights, show_merges, write_merges

MARKED = [(0, 1), (2, 3), (3, 0)]  # patches (row, column) of the 4x4 grid where the first frame should win
GAIN = 4.


def hand_set_model(num_frames=4):
    """A tiny model whose only InTI layer gives the first frame sigmoid(GAIN * gelu(+-1)) at every patch.

    The patch embedding and block 0 are switched off (tokens are the position embeddings), each
    patch's position embedding is +-(e0 - e1) (+ at MARKED), and the weight network reads that sign.
    """
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS, num_frames=num_frames, inti_after=(1,),
                              inti_kernel_sizes=(1,), inti_global_context=False).eval()
    dim = model.embed_dim
    direction = torch.zeros(dim)
    direction[0], direction[1] = 1., -1.
    sign = -torch.ones(4, 4)
    for r, c in MARKED:
        sign[r, c] = 1.
    inti = model.inti['1']
    with torch.no_grad():
        for p in (model.patch_embed.proj.weight, model.patch_embed.proj.bias, model.cls_token, model.temporal_embed,
                  model.blocks[0].attn.proj.weight, model.blocks[0].attn.proj.bias,
                  model.blocks[0].mlp.fc2.weight, model.blocks[0].mlp.fc2.bias):
            if p is not None:  # CLIP's patch embedding has no bias
                p.zero_()
        model.pos_embed.zero_()
        model.pos_embed[0, 1:] = sign.flatten()[:, None] * direction
        # after a LayerNorm, +-(e0 - e1) is +-sqrt(dim / 2) (e0 - e1): read it back as +-1
        inti.reduce.weight.zero_()
        inti.reduce.bias.zero_()
        inti.reduce.weight[0] = direction / (2 * (dim / 2) ** 0.5)
        inti.mlp.fc1.weight.zero_()
        inti.mlp.fc1.bias.zero_()
        inti.mlp.fc1.weight[0, 0] = 1.  # the first frame's sign
        inti.mlp.fc2.weight.zero_()
        inti.mlp.fc2.bias.zero_()
        inti.mlp.fc2.weight[0, 0] = GAIN  # logit of the first frame; the second's stays 0
    expected = torch.sigmoid(GAIN * F.gelu(sign))
    return model, expected


def test_hand_set_weights_put_the_heat_on_the_marked_patches():
    model, expected = hand_set_model()
    clip = torch.rand(3, 4, 32, 32)
    (merges,) = merge_weights(model, clip)
    assert merges.layer == '1' and merges.spans == [((0, 1), (1, 2)), ((2, 3), (3, 4))]
    assert merges.weights.shape == (1, 2, 4, 4)
    torch.testing.assert_close(merges.weights[0, 0], expected, atol=2e-3, rtol=0)
    torch.testing.assert_close(merges.weights[0, 1], expected, atol=2e-3, rtol=0)
    hot = (merges.weights[0, 0] > 0.9).nonzero().tolist()
    assert hot == [list(rc) for rc in MARKED]
    # the class token sees a zero token: weight 0.5, reported apart from the grid
    torch.testing.assert_close(merges.prefix, torch.full((1, 2, 1), 0.5), atol=1e-3, rtol=0)

    # the picture draws that grid over the frame, row by row, with patch (r, c) at its pixels
    fig = contact_sheet(display_frames(clip), [merges])
    heat = fig.axes[2].images[-1]
    assert torch.equal(torch.as_tensor(heat.get_array()), merges.weights[0, 0])
    assert tuple(heat.get_extent()) == (0, 32, 32, 0)  # left, right, bottom, top: row 0 at the top
    assert 'frame 0' in fig.axes[0].get_title() and 'frame 1' in fig.axes[1].get_title()
    assert 'class 0.50' in fig.axes[2].get_title()
    assert len([ax for ax in fig.axes if ax.images]) == 6  # two pairs, three panels each


def test_merged_frames_are_traced_back_to_the_input_frames():
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS, num_frames=6, inti_after=(1, 2, 3)).eval()
    merges = merge_weights(model, torch.randn(2, 3, 6, 32, 32))
    assert [m.layer for m in merges] == ['1', '2', '3']
    assert merges[0].spans == [((0, 1), (1, 2)), ((2, 3), (3, 4)), ((4, 5), (5, 6))]
    assert merges[1].spans == [((0, 2), (2, 4))]       # frame 4-5 has no partner and passes through
    assert merges[2].spans == [((0, 4), (4, 6))]
    assert merges[1].pair_name(0) == 'InTI after block 2: frames 0-1 + frames 2-3'
    assert [m.weights.shape for m in merges] == [(2, 3, 4, 4), (2, 1, 4, 4), (2, 1, 4, 4)]
    # a fresh model averages: every weight is exactly 0.5
    assert all(torch.equal(m.weights, torch.full_like(m.weights, 0.5)) for m in merges)


def test_reading_the_weights_leaves_the_model_as_it_was():
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS, num_frames=4, inti_after=(1,))
    nn.init.normal_(model.inti['1'].mlp.fc2.weight)
    clip = torch.randn(1, 3, 4, 32, 32)
    model.eval()
    before = model(clip)
    merges, fig = show_merges(model.train(), clip[0])
    assert model.training and not model.inti['1']._forward_pre_hooks
    assert torch.equal(model.eval()(clip), before)
    weights = merges[0].weights
    assert weights.std() > 0 and ((weights > 0) & (weights < 1)).all()
    assert fig.axes[2].images


def test_a_model_without_inti_is_named():
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS, num_frames=4, inti_after=())
    try:
        merge_weights(model, torch.randn(3, 4, 32, 32))
    except ValueError as e:
        assert 'no InTI layers' in str(e)
    else:
        raise AssertionError('expected a ValueError')


def test_pictures_of_a_real_video_through_a_full_size_model(tmp_path):
    """A decoded mp4, the eval transform and inti_vit_b16 at 224x224 (random weights, one 8-frame clip)."""
    video = write_video(tmp_path / 'clip.mp4', num_frames=40, size=(96, 128))
    frames, _ = read_frames(video, lambda info: sample_indices(info.num_frames, 8, False, 1, None).flatten())
    model = timm.create_model('inti_vit_b16', pretrained=False).eval()
    with torch.no_grad():
        nn.init.normal_(model.inti['3'].mlp.fc2.weight, std=0.5)
    transform = create_video_transform(timm.data.resolve_input_data_config(model), is_training=False)
    clip = transform(frames)
    assert clip.shape == (3, 8, 224, 224)
    written = write_merges(model, clip, tmp_path / 'merges', title='clip.mp4')
    assert [p.name for p in written] == [f'inti3_pair{j}.png' for j in range(4)] + ['contact_sheet.png']
    for path in written:
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert not list((tmp_path / 'merges').glob('.*.tmp'))
    # the drawn frames are the decoded ones: the model's normalisation is undone
    shown = display_frames(clip, model)
    assert shown.shape == (8, 224, 224, 3) and 0 <= shown.min() and shown.max() <= 1
    assert shown.mean() < 0.35  # write_video's frames are mostly black
