"""Everything timm users and timm's own tooling call, on the registered models.

The first checks follow timm's tests/test_models.py (its "non-standard" checks, which timm
runs on its ViTs): what they assert about cfgs, features and heads must hold here too.
"""
import pytest
import timm
import timm.optim
import timm.utils
import torch
from conftest import TINY_KWARGS
from timm.layers import get_channel_dim

import timm_inti
from timm_inti.backbones import BACKBONES, find_backbone

LONG_NAMES = sorted(timm_inti.MODEL_ALIASES.values())
# every variant of the first two CLIP towers, the plain variant of every other VisionTransformer architecture
# (the variants differ only in their schedule, which the first ones cover; at 4x4 patches ViT-L/14 at 336 px
# is ViT-L/14), and of the first (smallest registered) Eva tower of each family: the sizes of a family share
# their code path, and the full-size large ones cost ~10 s each on CPU
_SWEPT = ('vit_base_patch16_clip_224', 'vit_large_patch14_clip_224')
_EVA_SWEPT = {b.family: b.name for b in reversed(list(BACKBONES.values())) if b.model_class == 'Eva'}
FORWARD_NAMES = sorted(
    long_name for b in BACKBONES.values() for long_name, _, variant in b.model_names()
    if b.name in _SWEPT or not variant and (
        b.name in _EVA_SWEPT.values() if b.model_class == 'Eva'
        else all(b.vit_args != BACKBONES[s].vit_args for s in _SWEPT)))
FAMILIES = sorted(BACKBONES)


def tiny(name='inti_vit_b16', **kwargs):
    return timm.create_model(name, **dict(TINY_KWARGS, **kwargs))


def test_registry_names_tags_and_aliases():
    names = timm.list_models('inti_*')
    for alias, long_name in timm_inti.MODEL_ALIASES.items():
        assert alias in names and long_name in names
        assert timm.list_pretrained(f'{alias}.*') == [
            t.replace(long_name, alias) for t in timm.list_pretrained(f'{long_name}.*')]
        tags = [t.split('.', 1)[1] for t in timm.list_pretrained(f'{alias}.*')]
        for tag in tags:
            cfg, alias_cfg = (timm.models.get_pretrained_cfg(f'{long_name}.{tag}'),
                              timm.models.get_pretrained_cfg(f'{alias}.{tag}'))
            assert cfg.hf_hub_id == alias_cfg.hf_hub_id and cfg.hf_hub_id.startswith(('timm/vit_', 'timm/eva02_'))
        assert timm.models.get_pretrained_cfg(alias).tag == timm.models.get_pretrained_cfg(long_name).tag in tags
    for tag in ('openai', 'laion2b', 'datacompxl'):
        assert f'inti_vit_b16.{tag}' in timm.list_pretrained('inti_vit_b16.*')
    assert timm.models.get_pretrained_cfg('inti_vit_b16').tag == 'openai'
    assert timm.models.is_model_pretrained('inti_vit_b16')


@pytest.mark.parametrize('model_name', LONG_NAMES)
def test_default_cfgs_non_std_as_timm_tests_them(model_name):
    """timm's test_model_default_cfgs_non_std, at each model's full size and default input.

    On the meta device: the checks are about shapes, cfgs and keys, which meta tensors carry
    without computing (a full-size ViT-L/14 at 336 px takes ~40 s on CPU per variant).
    """
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False).eval()
        input_tensor = torch.randn(1, *model.default_cfg['input_size'])
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg
    feat_dim = getattr(model, 'feature_dim', None)
    with torch.no_grad():
        outputs = model.forward_features(input_tensor)
        outputs_pre = model.forward_head(outputs, pre_logits=True)
        assert outputs.shape[feat_dim] == model.num_features
        assert outputs_pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        outputs = model(input_tensor)
        assert outputs.shape[feat_dim] == model.head_hidden_size
        assert outputs.shape == outputs_pre.shape
    assert cfg['first_conv'] + '.weight' in state_dict
    classifier = cfg['classifier']
    if cfg['num_classes']:
        assert classifier + '.weight' in state_dict
        assert cfg['num_classes'] == state_dict[classifier + '.weight'].shape[0]
    else:  # the pooled features are the output (SigLIP's embedding, DINOv2's features): no head
        assert classifier + '.weight' not in state_dict and model.num_classes == 0


@pytest.mark.slow
@pytest.mark.parametrize('model_name', FORWARD_NAMES)
def test_forward_backward_every_variant(model_name):
    """Full depth and width; small frames (4x4 patches) keep it fast. 8 frames reach every InTI layer."""
    patch = find_backbone(model_name)[0].vit_args['patch_size']
    model = timm.create_model(model_name, img_size=4 * patch, num_classes=42)
    x = torch.randn(2, 3, 8, 4 * patch, 4 * patch)
    out = model(x)
    assert out.shape == (2, 42) and not torch.isnan(out).any()
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_feature_info_features_only_and_intermediates():
    model = tiny(inti_after=(2,)).eval()
    x = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert [y.shape for y in inter] == [(2, 64, t, 4, 4) for t in (6, 6, 3, 3)]  # NCTHW, frames per block
        tokens = model.forward_intermediates(x, indices=[0, 3], output_fmt='NLC', intermediates_only=True)
        assert [y.shape for y in tokens] == [(2, 6, 16, 64), (2, 3, 16, 64)]
        with_prefix = model.forward_intermediates(x, indices=1, return_prefix_tokens=True, intermediates_only=True)
        assert with_prefix[0][1].shape == (2, 3, 1, 64)
        # an image batch gives image-shaped maps, as timm's tests expect
        images = model.forward_intermediates(x[:, :, 0], intermediates_only=True)
        assert [y.shape for y in images] == [(2, 64, 4, 4)] * 4
        assert model.forward_intermediates(
            x, stop_early=True, indices=[1], intermediates_only=True)[0].shape == (2, 64, 6, 4, 4)

    features = tiny(inti_after=(2,), features_only=True, out_indices=(1, 2, 3)).eval()
    assert features.feature_info.channels() == [64, 64, 64]
    assert features.feature_info.reduction() == [8, 8, 8]
    with torch.no_grad():
        maps = features(x)
        assert [m.shape for m in maps] == [(2, 64, 6, 4, 4), (2, 64, 3, 4, 4), (2, 64, 3, 4, 4)]
        image_maps = features(x[:, :, 0])
    for m in image_maps:
        assert m.shape[get_channel_dim('NCHW')] == 64 and m.shape[2:] == (4, 4)


@pytest.mark.parametrize('family', FAMILIES)
def test_timm_checks_per_family(family):
    """Forward, backward, forward_intermediates and features_only on a shrunken model of each family."""
    backbone = BACKBONES[family]
    prefix = backbone.num_prefix_tokens
    model = tiny(f'inti_{backbone.alias}', num_classes=7, inti_after=(1,))
    assert model.num_prefix_tokens == prefix
    x = torch.randn(2, 3, 4, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, return_prefix_tokens=True)
        assert final.shape == (2, 2, prefix + 16, 64)
        if prefix:  # (spatial, prefix) pairs; without prefix tokens just the maps, as in timm
            inter, prefix_tokens = zip(*inter)
            assert [p.shape for p in prefix_tokens] == [(2, t, prefix, 64) for t in (4, 2, 2, 2)]
        assert [m.shape for m in inter] == [(2, 64, t, 4, 4) for t in (4, 2, 2, 2)]
    features = tiny(f'inti_{backbone.alias}', inti_after=(1,), features_only=True, out_indices=(0, 3)).eval()
    with torch.no_grad():
        assert [m.shape for m in features(x)] == [(2, 64, 4, 4, 4), (2, 64, 2, 4, 4)]


def test_pruning_for_features_drops_unused_inti_layers():
    model = tiny(inti_after=(1, 3))
    model.prune_intermediate_layers(indices=[1])
    assert len(model.blocks) == 2 and model.inti_after == (1,)


def test_classifier_api():
    model = tiny(num_classes=5)
    assert model.get_classifier() is model.head and model.head.out_features == 5
    model.reset_classifier(11)
    assert model.num_classes == 11 and model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 11)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 64)
    assert tiny(num_classes=0, global_pool='avg')(torch.randn(1, 3, 4, 32, 32)).shape == (1, 64)


def test_layer_decay_groups_inti_with_the_block_it_feeds():
    model = tiny(inti_after=(2,))
    optimizer = timm.optim.create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    scale_of = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            assert p not in scale_of, 'a parameter is in two groups'
            scale_of[p] = (group['lr_scale'], group['weight_decay'])
    params = dict(model.named_parameters())
    assert set(scale_of) == set(params.values())
    assert scale_of[params['inti.2.mlp.fc2.weight']][0] == scale_of[params['blocks.2.mlp.fc1.weight']][0]
    assert scale_of[params['blocks.1.mlp.fc1.weight']][0] < scale_of[params['blocks.2.mlp.fc1.weight']][0]
    assert scale_of[params['temporal_embed']] == (scale_of[params['pos_embed']][0], 0.0)  # stem, no decay
    assert scale_of[params['head.weight']][0] == 1.0


def test_model_ema_tracks_the_model():
    model = tiny(num_classes=3)
    ema = timm.utils.ModelEmaV3(model, decay=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    optimizer.step()
    ema.update(model)
    ema_w, w = ema.module.blocks[0].mlp.fc1.weight, model.blocks[0].mlp.fc1.weight
    assert not torch.equal(ema_w, w)
    with torch.no_grad():
        assert ema.module(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3)


def test_data_config_comes_from_the_pretrained_cfg():
    model = tiny()
    config = timm.data.resolve_data_config(model=model)
    assert config['mean'] == timm.data.OPENAI_CLIP_MEAN and config['interpolation'] == 'bicubic'
    assert config['input_size'] == model.pretrained_cfg['input_size']  # as for timm's ViTs: the weights' size
    assert timm.data.resolve_data_config(
        model=timm.create_model('inti_vit_l14.laion2b', depth=2, inti_after=(1,)))['mean'] == \
        timm.data.IMAGENET_INCEPTION_MEAN


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = tiny(inti_after=(2,)).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
