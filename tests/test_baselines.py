"""The comparison baselines (timm_inti/baselines.py): ToMe-style token merging and frame subsampling."""
import copy

import pytest
import timm
import torch

import timm_inti  # noqa: F401  (registers the models)
from timm_inti.baselines import _bipartite_merge, apply_tome, subsample_frames, tome_num_tokens, tome_r_for_flops
from timm_inti.flops import count_flops


def naive(tiny_kwargs, **kwargs):
    return timm.create_model('inti_vit_b16', inti_after=(), num_frames=4, **dict(tiny_kwargs, **kwargs)).eval()


@pytest.fixture
def clip():
    return torch.randn(2, 3, 4, 32, 32)


def test_r0_is_the_unmodified_model(tiny_kwargs, clip):
    model = naive(tiny_kwargs)
    expected = model(clip)
    state = copy.deepcopy(model.state_dict())
    apply_tome(model, 0)
    assert torch.equal(model(clip), expected)
    assert model.state_dict().keys() == state.keys()


@pytest.mark.parametrize('reg_tokens', [0, 2])
@pytest.mark.parametrize('r', [1, 3, 10])
def test_merged_token_counts_and_prefix_tokens_kept(tiny_kwargs, clip, r, reg_tokens):
    model = naive(tiny_kwargs, reg_tokens=reg_tokens)
    p = model.num_prefix_tokens
    _, reference = model.forward_intermediates(clip, indices=[0], output_fmt='NLC', return_prefix_tokens=True)
    apply_tome(model, r)
    final, intermediates = model.forward_intermediates(clip, output_fmt='NLC', return_prefix_tokens=True)

    counts = tome_num_tokens(17 + reg_tokens, depth=4, r=r, num_prefix_tokens=p)
    merged_per_block = [min(r, (n - p) // 2) for n in counts]
    assert [patches.shape[2] + p for patches, _ in intermediates] == [n - m for n, m in zip(counts, merged_per_block)]
    assert final.shape == (2, 4, counts[-1] - merged_per_block[-1], 64)
    # merging comes after attention and the MLP works token by token, so block 0's prefix
    # tokens are the unmodified model's, at the front
    torch.testing.assert_close(intermediates[0][1], reference[0][1])
    assert all(prefix.shape[2] == p for _, prefix in intermediates)


def test_merging_duplicates_is_exact():
    """Size-weighted averages plus proportional attention: merging identical tokens changes nothing."""
    model = timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=8, depth=2).eval()
    patches = torch.randn(2, 8, model.embed_dim).repeat_interleave(2, dim=1)  # pairs (2i, 2i+1) identical
    tokens = torch.cat([torch.randn(2, 1, model.embed_dim), patches], dim=1)
    expected = model.blocks(tokens)
    apply_tome(model, 8)  # block 0 merges every pair, block 1 attends over 8 tokens of size 2
    merged = model.blocks(tokens)
    assert merged.shape[1] == 1 + 4  # block 1 merges 4 of its 8 patch tokens, after its attention
    torch.testing.assert_close(merged[:, 0], expected[:, 0], rtol=1e-5, atol=1e-5)


def test_bipartite_merge_conserves_mass_and_merges_most_similar():
    x = torch.randn(3, 10, 5)
    size = torch.randint(1, 4, (3, 10, 1)).float()
    keys = torch.randn(3, 10, 4)
    keys[:, 4] = keys[:, 7] * 2  # a-token 4 (even index) and b-token 7 (odd index) point the same way
    merged, merged_size = _bipartite_merge(x, size, keys, r=1)
    assert merged.shape == (3, 9, 5) and merged_size.shape == (3, 9, 1)
    torch.testing.assert_close(merged_size.sum(1), size.sum(1))
    torch.testing.assert_close((merged * merged_size).sum(1), (x * size).sum(1))
    # the 4 kept a tokens come first, then the 5 b tokens in order: b-token 7 is b[3]
    expected = (x[:, 4] * size[:, 4] + x[:, 7] * size[:, 7]) / (size[:, 4] + size[:, 7])
    torch.testing.assert_close(merged[:, 4 + 3], expected)
    torch.testing.assert_close(merged_size[:, 4 + 3], size[:, 4] + size[:, 7])


def test_gradients_flow_in_train_mode_and_with_checkpointing(tiny_kwargs, clip):
    model = apply_tome(naive(tiny_kwargs), 3).train()
    model(clip).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if 'blocks' in n)

    model.zero_grad()
    model.set_grad_checkpointing(True)  # blocks re-run in backward must see the sizes of their forward
    model(clip).square().sum().backward()
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-5)


def test_images_work(tiny_kwargs):
    model = apply_tome(naive(tiny_kwargs), 4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 3, 64)  # 17 -> 13 -> 9 -> 5 -> 3


def test_gflops_fall_as_r_grows_and_r_for_flops_is_closest(tiny_kwargs):
    model = naive(tiny_kwargs)
    x = torch.randn(1, 3, 4, 32, 32)
    gflops = [count_flops(apply_tome(model, r), x).gflops for r in range(9)]
    assert all(a > b for a, b in zip(gflops, gflops[1:]))  # 16 patches: r up to 8 merges more each time

    target = (gflops[2] + 2 * gflops[3]) / 3  # nearer to r=3
    assert tome_r_for_flops('inti_vit_b16', 4, target, **tiny_kwargs) == 3
    factory = lambda **kw: naive(tiny_kwargs, **kw)  # noqa: E731
    assert tome_r_for_flops(factory, 4, gflops[6] + 1e-9) == 6
    assert tome_r_for_flops(factory, 4, 2 * gflops[0]) == 0
    assert tome_r_for_flops(factory, 4, 0.0) == 8


def test_bad_input_is_refused(tiny_kwargs):
    with pytest.raises(ValueError, match='naive model'):
        apply_tome(timm.create_model('inti_vit_b16', inti_after=(1,), **tiny_kwargs), 2)
    with pytest.raises(ValueError, match='non-negative int'):
        apply_tome(naive(tiny_kwargs), -1)
    with pytest.raises(ValueError, match=r'\(B, C, T, H, W\)'):
        subsample_frames(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='factor'):
        subsample_frames(torch.randn(1, 3, 4, 32, 32), factor=0)


def test_subsample_frames(clip):
    assert torch.equal(subsample_frames(clip), clip[:, :, [0, 2]])
    assert torch.equal(subsample_frames(clip[:, :, :3], factor=2), clip[:, :, [0, 2]])
    assert torch.equal(subsample_frames(clip, factor=1), clip)


def test_runs_under_bf16_autocast(tiny_kwargs, clip):
    """The GPU benchmark path runs bf16 autocast; the log-size attention bias must follow."""
    model = apply_tome(naive(tiny_kwargs), 3).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(clip)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
