"""The backbone table: registrations, cfgs, activations and text towers come from it; one entry adds a backbone."""
import copy
from functools import partial

import pytest
import safetensors.torch
import timm
import timm.models._registry as timm_registry
import torch
from conftest import TINY_KWARGS
from timm.layers import LayerNorm, get_act_layer

import timm_inti
import timm_inti.vit
from timm_inti.backbones import BACKBONES, VARIANTS, Backbone, Weights, find_backbone
from timm_inti.zero_shot import text_tower_for


@pytest.mark.slow
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
            'openai': Weights('test-org/vit_tiny_patch8_clip_32.openai', 'quick_gelu',
                              text_tower=('ViT-B-16-quickgelu', 'openai')),
            'laion2b': Weights('test-org/vit_tiny_patch8_clip_32.laion2b', 'gelu',
                               text_tower=('ViT-B-16', 'laion2b_s34b_b88k')),
        },
        img_size=32)
    names = timm_inti.register_backbone(backbone)
    assert set(names) == {
        'inti_vit_tiny_patch8_clip_32', 'inti_vit_t8', 'inti_vit_tiny_patch8_clip_32_deep', 'inti_vit_t8_deep',
        'inti_vit_tiny_patch8_clip_32_temporal', 'inti_vit_t8_temporal'}
    assert set(names) <= set(timm.list_models('inti_*'))
    assert timm.list_pretrained('inti_vit_t8.*') == ['inti_vit_t8.laion2b', 'inti_vit_t8.openai']
    assert timm_inti.MODEL_ALIASES['inti_vit_t8'] == 'inti_vit_tiny_patch8_clip_32'

    for tag, tower_name in (('openai', 'vit_base_patch16_clip_quickgelu_224'),
                            ('laion2b', 'vit_base_patch16_clip_224')):
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


# -- issue 16: timm's other image ViTs ---------------------------------------------------------

FAMILIES = [  # (registered model with tag, timm's image model of the same weights)
    ('inti_vit_b16_siglip.v2_webli', 'vit_base_patch16_siglip_224.v2_webli'),
    ('inti_vit_b14_dinov2.lvd142m', 'vit_base_patch14_reg4_dinov2.lvd142m'),
    ('inti_vit_b16_augreg.augreg2_in21k_ft_in1k', 'vit_base_patch16_224.augreg2_in21k_ft_in1k'),
    ('inti_vit_b32.laion2b', 'vit_base_patch32_clip_224.laion2b'),
]


def safetensors_bytes(model):
    return safetensors.torch.save({k: v.contiguous() for k, v in model.state_dict().items()})


def image_model_in_hub_cache(hub_cache, image_name, **kwargs):
    """Random weights for timm's ``image_name``, stored where its pretrained cfg downloads from; loaded back by timm."""
    model = timm.create_model(image_name, **kwargs)
    hub_cache(timm.models.get_pretrained_cfg(image_name).hf_hub_id, 'model.safetensors', safetensors_bytes(model))
    return timm.create_model(image_name, pretrained=True, **kwargs).eval()


def check_one_frame_is_the_image(hub_cache, video_name, image_name, video_class):
    """The registered model and ``create_video_model`` of timm's image name, both ``pretrained=True`` from the Hub
    files timm's image model loads, give that image model's output for one frame and for 8 copies of it."""
    image = image_model_in_hub_cache(hub_cache, image_name, **TINY_KWARGS)
    registered = timm.create_model(video_name, pretrained=True, inti_after=(1,), **TINY_KWARGS).eval()
    generic = timm_inti.create_video_model(image_name, pretrained=True, **TINY_KWARGS).eval()
    assert generic.inti_after == (1,) and type(generic) is video_class  # a quarter of 4 blocks
    assert generic.pretrained_cfg['hf_hub_id'] == registered.pretrained_cfg['hf_hub_id']
    assert generic.pretrained_cfg['mean'] == registered.pretrained_cfg['mean'] == image.pretrained_cfg['mean']
    x = torch.randn(2, 3, 32, 32)
    expected = image(x)
    for video in (registered, generic):
        torch.testing.assert_close(video(x[:, :, None]), expected, atol=1e-5, rtol=1e-5)
        # InTI at its averaging init, temporal embedding at zero: 8 copies of the image are the image
        torch.testing.assert_close(video(x[:, :, None].expand(-1, -1, 8, -1, -1)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('video_name, image_name', FAMILIES)
@torch.no_grad()
def test_one_frame_and_a_repeated_frame_give_timms_image_output(hub_cache, video_name, image_name):
    check_one_frame_is_the_image(hub_cache, video_name, image_name, timm_inti.VideoVisionTransformer)


@torch.no_grad()
def test_siglip_pools_every_frame_then_averages_the_frames():
    model = timm.create_model('inti_vit_b16_siglip', inti_after=(), num_classes=0, **TINY_KWARGS).eval()
    assert model.num_prefix_tokens == 0 and model.attn_pool is not None
    x = torch.randn(2, 3, 3, 32, 32)
    per_frame = torch.stack([model(x[:, :, t]) for t in range(3)], dim=1)  # each frame through the attention pool
    torch.testing.assert_close(model(x), per_frame.mean(dim=1), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@torch.no_grad()
def test_full_size_dinov2_at_224_matches_timms_model_at_224(hub_cache):
    """DINOv2 is trained at 518 px; both sides resample its position embedding to the 224 px grid."""
    image = image_model_in_hub_cache(hub_cache, 'vit_base_patch14_reg4_dinov2.lvd142m', img_size=224)
    video = timm.create_model('inti_vit_b14_dinov2', pretrained=True).eval()
    assert video.num_prefix_tokens == 5 and video.inti_after == (3,) and video.patch_embed.grid_size == (16, 16)
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(video(x[:, :, None]), image(x), atol=1e-4, rtol=1e-4)


def test_generic_path_refuses_other_classes_naming_the_supported_one():
    for name, cls in (('resnet18', 'ResNet'), ('deit_tiny_distilled_patch16_224', 'VisionTransformerDistilled')):
        with pytest.raises(TypeError, match=rf'{name} is a timm\.models\..*{cls}.*VisionTransformer or .*Eva'):
            timm_inti.create_video_model(name)
    with pytest.raises(ValueError, match='features_only is for the registered InTI models'):
        timm_inti.create_video_model('vit_base_patch16_224', features_only=True, **TINY_KWARGS)


@torch.no_grad()
def test_generic_path_takes_video_kwargs_saves_and_loads_back(tmp_path):
    model = timm_inti.create_video_model(
        'vit_base_patch16_siglip_224.webli', num_frames=4, inti_after=(2, 3), adapter_dim=16, num_classes=5,
        **TINY_KWARGS).eval()
    assert (model.inti_after, model.num_frames, model.num_classes) == ((2, 3), 4, 5) and model.adapters is not None
    for p in model.parameters():
        p.normal_(std=0.02)
    timm_inti.save_pretrained(model, tmp_path / 'saved')
    loaded = timm_inti.create_video_model(f'local-dir:{tmp_path / "saved"}', pretrained=True).eval()
    assert (loaded.inti_after, loaded.num_frames, loaded.num_classes) == ((2, 3), 4, 5)
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    # registered names go through timm
    assert timm_inti.create_video_model('inti_vit_b16', **TINY_KWARGS).inti_after == (3,)


def test_flops_of_each_family_near_the_schedule_bound():
    """Closed form at full size (meta device): within 0.5 points of the block-schedule bound at 8 frames."""
    from timm_inti.flops import formula_flops
    for alias in ('inti_vit_b16_siglip', 'inti_vit_b14_dinov2', 'inti_vit_b16_augreg', 'inti_vit_l14_336'):
        with torch.device('meta'):
            model, naive = timm.create_model(alias), timm.create_model(alias, inti_after=())
        bound = 1 - sum(model.num_frames_after(8)) / (len(model.blocks) * 8)
        reduction = 1 - formula_flops(model, 8).total / formula_flops(naive, 8).total
        assert bound - 0.005 < reduction < bound, alias
    with torch.device('meta'):
        siglip = timm.create_model('inti_vit_b16_siglip')
    assert formula_flops(siglip, 8).by_module['attn_pool'] > 0  # the attention-pool head is counted, per frame


@pytest.mark.parametrize('alias, kwargs', [
    ('inti_vit_b16_siglip', {}), ('inti_vit_b14_dinov2', {}), ('inti_vit_b16_augreg', dict(num_classes=10)),
])
def test_fvcore_and_the_closed_form_agree_per_family(alias, kwargs):
    from timm_inti.flops import count_flops, formula_flops
    model = timm.create_model(alias, inti_after=(1, 3), **dict(TINY_KWARGS, **kwargs)).eval()
    for frames in (1, 5, 8):
        counted = count_flops(model, torch.randn(1, 3, frames, 32, 32))
        assert formula_flops(model, frames).total == counted.total
        if model.attn_pool is not None:
            assert formula_flops(model, frames).by_module['attn_pool'] == counted.by_module['attn_pool']


@pytest.mark.parametrize('model', ['inti_vit_b14_dinov2', 'inti_vit_b16_eva02'])
def test_a_tiny_model_of_each_family_trains_and_predicts(model, tmp_path, capsys):
    """No special case in the commands: DINOv2 (5 prefix tokens, timm's VisionTransformer) and EVA02-CLIP (timm's Eva
    class, rotary embeddings) through timm-inti-train and timm-inti-predict."""
    from timm_inti.predict import main as predict
    from timm_inti.train import main as train
    from timm_inti.video.synthetic import write_video

    for split, count in (('train', 2), ('val', 1)):
        for label, direction in (('left', -1), ('right', 1)):
            for k in range(count):
                write_video(tmp_path / 'data' / split / label / f'{label}{k}.mp4', num_frames=12, size=(32, 32),
                            direction=direction)
    tiny = ['embed_dim=64', 'depth=4', 'num_heads=2', 'patch_size=8', 'inti_after=(1,)']
    assert train(['--data-dir', str(tmp_path / 'data'), '--model', model, '--model-kwargs', *tiny,
                  '--img-size', '32', '--num-frames', '4', '--workers', '0', '--warmup-epochs', '0', '--epochs', '1',
                  '-b', '2', '--output', str(tmp_path / 'runs'), '--experiment', 'run']) == 0
    capsys.readouterr()
    video = tmp_path / 'data' / 'val' / 'left' / 'left0.mp4'
    assert predict([str(video), '--checkpoint', str(tmp_path / 'runs' / 'run' / 'last.pth.tar'), '--json',
                    '--top-k', '2']) == 0
    assert {'left', 'right'} <= set(capsys.readouterr().out.replace('"', ' ').split())


def test_the_flops_benchmark_counts_a_new_family(tmp_path):
    from benchmarks import flops as benchmark
    assert benchmark.main(['--models', 'inti_vit_b16_siglip', '--frames', '2', '--out', str(tmp_path / 'flops')]) == 0
    row = (tmp_path / 'flops' / 'flops.md').read_text().splitlines()[2].split(' | ')
    assert row[0] == '| inti_vit_b16_siglip' and float(row[-1].rstrip(' |')) == 0.0  # formula vs fvcore (%)
