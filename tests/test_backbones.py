"""The backbone table: registrations, cfgs, activations and text towers all come from it, and one entry adds a backbone."""
import copy
from functools import partial

import pytest
import safetensors.torch
import timm
import timm.models._registry as timm_registry
import torch
from timm.layers import LayerNorm, get_act_layer

import timm_inti
import timm_inti.vit
from conftest import TINY_KWARGS
from timm_inti.backbones import BACKBONES, VARIANTS, Backbone, Weights, find_backbone
from timm_inti.zero_shot import text_tower_for


def test_every_entry_is_registered_with_its_schedule_cfgs_and_activation():
    for backbone in BACKBONES.values():
        quarter = backbone.depth // 4
        for long_name, alias, variant in backbone.model_names():
            assert timm_inti.MODEL_ALIASES[alias] == long_name
            assert find_backbone(f'{alias}.x') == find_backbone(long_name) == (backbone, variant)
            for name in (long_name, alias):
                assert timm.list_pretrained(f'{name}.*') == sorted(f'{name}.{tag}' for tag in backbone.tags)
                assert timm.models.get_pretrained_cfg(name).tag == next(iter(backbone.tags))  # the first is the default
                for tag, weights in backbone.tags.items():
                    cfg = timm.models.get_pretrained_cfg(f'{name}.{tag}')
                    assert (cfg.hf_hub_id, cfg.mean, cfg.std, cfg.num_classes, cfg.input_size) == (
                        weights.hf_hub_id, weights.mean, weights.std, weights.num_classes,
                        (3, backbone.img_size, backbone.img_size))
        with torch.device('meta'):  # shapes only
            plain, deep, temporal = (timm.create_model(f'inti_{backbone.alias}{v}') for v in ('', '_deep', '_temporal'))
        assert plain.inti_after == temporal.inti_after == (quarter,)
        assert deep.inti_after == (quarter, 2 * quarter, 3 * quarter)
        assert temporal.adapters[0].down.out_features == backbone.embed_dim // 2 and plain.adapters is None
        assert (len(plain.blocks), plain.embed_dim, plain.patch_embed.img_size) == (
            backbone.depth, backbone.embed_dim, (backbone.img_size,) * 2)
    assert list(VARIANTS) == ['', '_deep', '_temporal']


def test_new_clip_towers_b32_and_l14_at_336():
    with torch.device('meta'):
        b32, l14_336 = timm.create_model('inti_vit_b32.laion2b'), timm.create_model('inti_vit_l14_336')
    assert b32.patch_embed.patch_size == (32, 32) and b32.patch_embed.grid_size == (7, 7) and b32.inti_after == (3,)
    assert isinstance(b32.blocks[0].mlp.act, get_act_layer('gelu'))
    assert l14_336.patch_embed.grid_size == (24, 24) and l14_336.inti_after == (6,)
    assert isinstance(l14_336.blocks[0].mlp.act, get_act_layer('quick_gelu'))
    assert l14_336.pretrained_cfg['hf_hub_id'] == 'timm/vit_large_patch14_clip_336.openai'


def test_unknown_tag_is_an_error_naming_the_known_tags():
    with pytest.raises(ValueError, match="unknown pretrained tag 'laion5b'.*known tags: openai, laion2b, datacompxl"):
        timm.create_model('inti_vit_b16', depth=1, inti_after=(1,), pretrained_cfg_overlay=dict(tag='laion5b'))
    with pytest.raises(ValueError, match="known tags: openai$"):
        BACKBONES['vit_large_patch14_clip_336'].weights('laion2b')


@pytest.fixture
def restored_registry():
    """Undo registrations made by a test: timm's registry and the backbone table as they were."""
    names = [n for n in dir(timm_registry) if n.startswith('_model') or n == '_module_to_models']
    saved = {n: copy.deepcopy(getattr(timm_registry, n)) for n in names}
    tables = (BACKBONES, timm_inti.MODEL_ALIASES, timm_inti.vit.default_cfgs)
    saved_tables = [dict(t) for t in tables]
    module_names = set(vars(timm_inti.vit))
    yield
    for n, v in saved.items():
        container = getattr(timm_registry, n)
        container.clear()
        container.update(v)
    for t, s in zip(tables, saved_tables):
        t.clear()
        t.update(s)
    for n in set(vars(timm_inti.vit)) - module_names:
        delattr(timm_inti.vit, n)
    timm_inti.vit.__all__[:] = [n for n in timm_inti.vit.__all__ if n in vars(timm_inti.vit)]


def test_adding_a_backbone_is_one_entry(restored_registry, hub_cache, tmp_path):
    """A new entry gives registered, loadable models (pretrained=True, through the Hub cache) with a text tower."""
    backbone = Backbone(
        'vit_tiny_patch8_clip_32', 'vit_t8', 'CLIP ViT-T/8 (test)',
        dict(patch_size=8, embed_dim=64, depth=4, num_heads=2, pre_norm=True, norm_layer=partial(LayerNorm, eps=1e-5)),
        tags={
            'openai': Weights('test-org/vit_tiny_patch8_clip_32.openai', 'quick_gelu', text_tower=('ViT-B-16-quickgelu', 'openai')),
            'laion2b': Weights('test-org/vit_tiny_patch8_clip_32.laion2b', 'gelu', text_tower=('ViT-B-16', 'laion2b_s34b_b88k')),
        },
        img_size=32)
    names = timm_inti.register_backbone(backbone)
    assert set(names) == {
        'inti_vit_tiny_patch8_clip_32', 'inti_vit_t8', 'inti_vit_tiny_patch8_clip_32_deep', 'inti_vit_t8_deep',
        'inti_vit_tiny_patch8_clip_32_temporal', 'inti_vit_t8_temporal'}
    assert set(names) <= set(timm.list_models('inti_*'))
    assert timm.list_pretrained('inti_vit_t8.*') == ['inti_vit_t8.laion2b', 'inti_vit_t8.openai']
    assert timm_inti.MODEL_ALIASES['inti_vit_t8'] == 'inti_vit_tiny_patch8_clip_32'

    for tag, tower_name in (('openai', 'vit_base_patch16_clip_quickgelu_224'), ('laion2b', 'vit_base_patch16_clip_224')):
        tower = timm.create_model(tower_name, num_classes=512, **TINY_KWARGS).eval()
        hub_cache(backbone.tags[tag].hf_hub_id, 'model.safetensors',
                  safetensors.torch.save({k: v.contiguous() for k, v in tower.state_dict().items()}))
        video = timm.create_model(f'inti_vit_t8.{tag}', pretrained=True).eval()
        assert video.inti_after == (1,) and video.patch_embed.img_size == (32, 32)
        x = torch.randn(2, 3, 1, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(video(x), tower(x[:, :, 0]), atol=1e-4, rtol=0)
        assert text_tower_for(video) == backbone.tags[tag].text_tower

    # and it saves and loads back by timm's local-dir: name
    timm_inti.save_pretrained(video, tmp_path / 'saved')
    loaded = timm.create_model(f'local-dir:{tmp_path / "saved"}', pretrained=True).eval()
    assert type(loaded.blocks[0].mlp.act) is type(video.blocks[0].mlp.act)
    with torch.no_grad():
        x = torch.randn(1, 3, 4, 32, 32)
        torch.testing.assert_close(loaded(x), video(x))


def test_a_backbone_without_weights_is_refused(restored_registry):
    with pytest.raises(ValueError, match='no pretrained tags'):
        timm_inti.register_backbone(Backbone('vit_x', 'x', 'X', dict(embed_dim=64, depth=4, num_heads=2)))
