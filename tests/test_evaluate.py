"""One way to run a model over evaluation views: (B, V, C, T, H, W) in, per-video averages out."""
import pytest
import timm
import torch
from conftest import TINY_KWARGS

from timm_inti.evaluate import average_over_views, view_probabilities


def test_probabilities_are_each_views_softmax_averaged_per_video():
    model = timm.create_model('inti_vit_b16', num_frames=4, num_classes=5, **TINY_KWARGS).eval()
    views = torch.randn(2, 3, 3, 4, 32, 32)  # 2 videos x 3 views
    with torch.no_grad():
        probs = view_probabilities(model, views)
        expected = torch.stack([model(v).softmax(dim=-1).mean(dim=0) for v in views])
    assert probs.shape == (2, 5)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(2))


def test_tuples_average_separately_and_views_must_be_six_dimensional():
    views = torch.arange(2 * 2 * 1 * 1 * 1 * 1, dtype=torch.float32).reshape(2, 2, 1, 1, 1, 1)
    mean, double = average_over_views(lambda x: (x.flatten(1), 2 * x.flatten(1)), views)
    assert mean.flatten().tolist() == [0.5, 2.5] and double.flatten().tolist() == [1.0, 5.0]
    with pytest.raises(ValueError, match=r'\(B, V, C, T, H, W\)'):
        average_over_views(lambda x: x, torch.zeros(2, 3, 4, 8, 8))
