"""The InTI layer on its own: shapes, the averaging init, the weighting, and its context."""
import math

import pytest
import torch
import torch.nn as nn

from timm_inti import InTI, merged_num_frames


def tokens(batch=2, frames=8, grid=(4, 4), prefix=1, dim=32):
    return torch.randn(batch, frames, prefix + grid[0] * grid[1], dim)


def randomize_(layer: InTI, std=0.3):
    """Give the zero-initialised last projection weights, as training would."""
    with torch.no_grad():
        nn.init.normal_(layer.mlp.fc2.weight, std=std)
        nn.init.normal_(layer.mlp.fc2.bias, std=std)
    return layer


@pytest.mark.parametrize('frames', [1, 2, 3, 7, 8, 16])
@pytest.mark.parametrize('prefix', [0, 1, 4])
def test_output_shape(frames, prefix):
    layer = InTI(32, num_prefix_tokens=prefix)
    x = tokens(frames=frames, grid=(3, 5), prefix=prefix)
    out = layer(x, (3, 5))
    assert out.shape == (2, math.ceil(frames / 2), prefix + 15, 32)
    assert merged_num_frames(frames) == out.shape[1]


@pytest.mark.parametrize('weighting', ['softmax', 'sigmoid', 'mean'])
@pytest.mark.parametrize('prefix', [0, 1])
def test_fresh_layer_is_exact_pair_average(weighting, prefix):
    layer = InTI(32, num_prefix_tokens=prefix, weighting=weighting)
    x = tokens(frames=8, prefix=prefix) * 10
    out = layer(x, (4, 4))
    expected = (x[:, 0::2] + x[:, 1::2]) / 2
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert torch.equal(out, expected), 'zero logits give weights of exactly 0.5'


def test_odd_last_frame_passes_through_and_one_frame_is_identity():
    layer = randomize_(InTI(32))
    x = tokens(frames=5)
    out = layer(x, (4, 4))
    assert torch.equal(out[:, -1], x[:, -1])
    one = tokens(frames=1)
    assert torch.equal(layer(one, (4, 4)), one)


def test_softmax_weights_make_a_convex_combination_that_varies_by_token():
    layer = randomize_(InTI(32))
    x = tokens(frames=2)
    a, b = x[:, 0], x[:, 1]
    out = layer(x, (4, 4))[:, 0]
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    assert (out >= lo - 1e-5).all() and (out <= hi + 1e-5).all()
    # recover the weight of the second frame per token: out = a + w (b - a)
    w = ((out - a) / (b - a))[..., 0]
    assert ((w > 0) & (w < 1)).all()
    assert w.std() > 0.05, 'weights should differ from token to token'
    assert not torch.allclose(out, (a + b) / 2, atol=1e-3)


def test_sigmoid_weighting_is_not_normalised():
    layer = randomize_(InTI(32, weighting='sigmoid'))
    x = torch.ones(1, 2, 17, 32)
    out = layer(x, (4, 4))[0, 0, :, 0]  # = w_a + w_b for all-ones input
    assert not torch.allclose(out, torch.ones_like(out), atol=1e-2)


def test_mean_weighting_has_no_parameters():
    assert sum(p.numel() for p in InTI(32, weighting='mean').parameters()) == 0


def _weight_of_position(layer, x, pos):
    """The second frame's weight for one position of the first pair."""
    out = layer(x, (5, 5))
    a, b = x[0, 0, pos], x[0, 1, pos]
    return ((out[0, 0, pos] - a) / (b - a)).mean()


def test_local_context_windows_see_neighbours_only():
    # kernel sizes (1, 3), no global scale: position (2, 2) sees its 3x3 window and nothing else
    layer = randomize_(InTI(32, num_prefix_tokens=1, kernel_sizes=(1, 3), global_context=False))
    x = tokens(batch=1, frames=2, grid=(5, 5))
    centre = 1 + 2 * 5 + 2
    base = _weight_of_position(layer, x, centre)
    near, far = x.clone(), x.clone()
    near[0, 0, centre + 1] += 5 * torch.randn(32)  # right neighbour
    far[0, 0, 1 + 0 * 5 + 0] += 5 * torch.randn(32)  # top-left corner, two steps away
    assert not torch.allclose(_weight_of_position(layer, near, centre), base)
    torch.testing.assert_close(_weight_of_position(layer, far, centre), base)


def test_global_context_reaches_every_token_and_the_class_token():
    layer = randomize_(InTI(32, num_prefix_tokens=1, kernel_sizes=(1, 3), global_context=True))
    x = tokens(batch=1, frames=2, grid=(5, 5))
    centre = 1 + 2 * 5 + 2
    far = x.clone()
    far[0, 0, 1] += 5 * torch.randn(32)
    assert not torch.allclose(_weight_of_position(layer, far, centre), _weight_of_position(layer, x, centre))
    # the class token has no neighbourhood: it is steered by the frame's global summary
    assert not torch.allclose(_weight_of_position(layer, far, 0), _weight_of_position(layer, x, 0))


def test_gradients_reach_the_zero_initialised_projection():
    layer = InTI(32)
    x = tokens().requires_grad_()
    # a target that prefers the second frame: the projection must learn to tilt the weights
    loss = (layer(x, (4, 4)) - x[:, 1::2].detach()).pow(2).mean()
    loss.backward()
    assert layer.mlp.fc2.weight.grad.abs().sum() > 0
    assert x.grad is not None


def test_weight_network_learns_at_the_optimisers_pace():
    """The layers before the zero projection keep unit-scale features (fan-in init, as LoRA's first factor), so
    the projection's updates move the weights at once; at timm's std 0.02 they are ~25x smaller and the same 20
    AdamW steps leave the mean weight at 0.525."""
    torch.manual_seed(0)
    layer = InTI(64)
    x = torch.randn(8, 4, 17, 64)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    for _ in range(20):
        loss = (layer(x, (4, 4)) - x[:, 0::2]).pow(2).mean()  # the target is the first frame of every pair
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert layer.pair_weights(x, (4, 4))[..., 0].mean() > 0.55


def test_init_weights_keeps_the_average():
    layer = randomize_(InTI(32))
    layer.init_weights()
    x = tokens()
    torch.testing.assert_close(layer(x, (4, 4)), (x[:, 0::2] + x[:, 1::2]) / 2, atol=1e-6, rtol=0)


def test_bad_input_is_named():
    layer = InTI(32)
    with pytest.raises(ValueError, match=r'\(B, T, N, D\).*3-D'):
        layer(torch.randn(2, 17, 32), (4, 4))
    with pytest.raises(ValueError, match='expects 17 tokens per frame.*got 20'):
        layer(torch.randn(2, 2, 20, 32), (4, 4))
    with pytest.raises(ValueError, match='odd'):
        InTI(32, kernel_sizes=(1, 2))
    with pytest.raises(ValueError, match='weighting'):
        InTI(32, weighting='max')


@pytest.mark.parametrize('weighting', ['softmax', 'sigmoid', 'mean'])
def test_pair_weights_are_the_weights_the_merge_used(weighting):
    layer = InTI(32, weighting=weighting)
    if weighting != 'mean':
        randomize_(layer)
    x = tokens(frames=5)
    weights = layer.pair_weights(x, (4, 4))
    assert weights.shape == (2, 2, 17, 2)
    expected = x[:, 0:4:2] * weights[..., :1] + x[:, 1:4:2] * weights[..., 1:]
    torch.testing.assert_close(layer(x, (4, 4))[:, :2], expected)
    if weighting != 'sigmoid':
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 2, 17))
    if weighting != 'mean':
        assert weights[..., 0].std() > 0.05
    assert layer.pair_weights(tokens(frames=1), (4, 4)).shape == (2, 0, 17, 2)


def test_partner_window_starts_near_the_average_and_is_opt_in():
    assert InTI(32).partner_window == 1 and InTI(32).mlp.fc2.out_features == 2
    layer = InTI(32, partner_window=3)
    assert layer.mlp.fc2.out_features == 2 + 9 and 'partner_window=3' in repr(layer)
    x = tokens(frames=4)
    out = layer(x, (4, 4))
    average = (x[:, 0::2] + x[:, 1::2]) / 2
    # 8 off-centre places at e^-6 each: the partner token keeps about 98% of its weight
    assert (out - average).abs().max() < 0.05 * x.abs().max()
    with pytest.raises(ValueError, match='partner_window'):
        InTI(32, partner_window=2)
    with pytest.raises(ValueError, match='partner_window'):
        InTI(32, partner_window=3, weighting='mean')


def test_partner_window_can_follow_motion():
    """Hand-set logits that pick the place one column to the right follow content that moved right."""
    layer = InTI(8, num_prefix_tokens=1, partner_window=3)
    with torch.no_grad():
        layer.mlp.fc2.bias.fill_(-30.)
        layer.mlp.fc2.bias[:2] = 0.              # the two frames weigh 0.5 each
        layer.mlp.fc2.bias[2 + 1 * 3 + 2] = 30.  # window place (same row, one column right)
    first = torch.randn(1, 1, 1 + 4 * 5, 8)
    grid = first[:, 0, 1:].view(1, 4, 5, 8)
    # the second frame: the first one moved one column right (a new column enters on the left)
    second_grid = torch.cat([torch.randn(1, 4, 1, 8), grid[:, :, :4]], dim=2)
    second = torch.cat([first[:, :, :1] + 1, second_grid.reshape(1, 1, 20, 8)], dim=2)
    out = layer(torch.cat([first, second], dim=1), (4, 5))[:, 0]
    out_grid = out[:, 1:].view(1, 4, 5, 8)
    # where a right neighbour exists, the partner token is the first frame's own content
    torch.testing.assert_close(out_grid[:, :, :4], grid[:, :, :4])
    # the last column has no place to the right: its window falls back to the places that exist
    assert torch.isfinite(out).all() and not torch.allclose(out_grid[:, :, 4], grid[:, :, 4])
    # the class token has no neighbours: its own partner only
    torch.testing.assert_close(out[:, 0], (first[:, 0, 0] + second[:, 0, 0]) / 2)
