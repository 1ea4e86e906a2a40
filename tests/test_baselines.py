"""The benchmark baselines: frame subsampling and ToMe-style token merging."""
import sys
from pathlib import Path

import timm
import torch

from conftest import TINY_KWARGS
from timm_inti.flops import count_flops

sys.path.insert(0, str(Path(__file__).parents[1] / 'benchmarks'))
from baselines import apply_tome, bipartite_matching, merge_tokens, subsample_frames, tome_r_for_flops  # noqa: E402


def naive():
    return timm.create_model('inti_vit_b16', inti_after=(), **TINY_KWARGS).eval()


def test_no_merging_is_the_naive_model():
    model = naive()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(apply_tome(model, 0)(x), model(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(apply_tome(model, 0)(x[:, :, 0]), model(x[:, :, 0]), rtol=0, atol=1e-6)


def test_every_block_merges_r_tokens_per_frame():
    with torch.no_grad():
        feats = apply_tome(naive(), 2).forward_features(torch.randn(2, 3, 4, 32, 32))
    assert feats.shape == (2, 4, 17 - 4 * 2, 64)
    assert apply_tome(naive(), 2)(torch.randn(1, 3, 4, 32, 32)).shape == (1, 512)


def test_merges_are_size_weighted_and_spare_the_class_token():
    # token 0 (protected) is identical to token 1, the most tempting merge there is
    x = torch.tensor([[[1., 0.], [1., 0.], [0., 1.], [0., 1.], [5., 5.]]])
    size = torch.tensor([[[1.], [1.], [2.], [1.], [1.]]])
    kept, merged, into = bipartite_matching(x, r=1, protected=1)
    out, new_size = merge_tokens(x, size, kept, merged, into)
    assert out.shape == (1, 4, 2) and torch.equal(out[0, 0], x[0, 0]), 'the class token stays, and first'
    # token 2 (size 2) merges into its equal, token 3 (size 1): kept even tokens, then the odd ones
    torch.testing.assert_close(out[0], torch.tensor([[1., 0.], [5., 5.], [1., 0.], [0., 1.]]))
    assert new_size.flatten().tolist() == [1., 1., 1., 3.]
    weighted = merge_tokens(torch.tensor([[[9., 9.], [1., 1.], [4., 4.]]]), torch.tensor([[[1.], [2.], [1.]]]),
                            torch.tensor([[0]]), torch.tensor([[1]]), torch.tensor([[0]]))
    torch.testing.assert_close(weighted[0][0, 1], torch.tensor([2., 2.]))  # (2 * 1 + 1 * 4) / 3


def test_gradients_flow_and_gflops_fall_as_r_grows():
    model = apply_tome(naive(), 3).train()
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    x = torch.randn(1, 3, 4, 32, 32)
    gflops = [count_flops(apply_tome(naive(), r), x).total for r in (0, 1, 2, 4)]
    assert gflops == sorted(gflops, reverse=True) and len(set(gflops)) == 4


def test_merge_rate_matches_a_budget():
    x = torch.randn(1, 3, 4, 32, 32)
    target = count_flops(apply_tome(naive(), 3), x).gflops
    assert tome_r_for_flops(naive, 4, target) == 3


def test_subsampling_keeps_every_other_frame():
    x = torch.arange(8.).view(1, 1, 8, 1, 1).expand(2, 3, 8, 4, 4)
    assert subsample_frames(x)[0, 0, :, 0, 0].tolist() == [0, 2, 4, 6]
