"""The video options as one dataclass: names, defaults and checks in one place; flat kwargs and saved files as before.

The files under tests/data/saved_formats/ were written by main's code at 768fe58, before ``VideoCfg``
existed, by tests/data/saved_formats/make.py (its docstring has the command that regenerates them).
"""
import dataclasses
import json
from pathlib import Path

import pytest
import timm
import torch
from conftest import TINY_KWARGS
from safetensors.torch import load_file

import timm_inti
from timm_inti.backbones import BACKBONES, VARIANTS
from timm_inti.checkpoints import create_model_from_checkpoint
from timm_inti.video_cfg import VIDEO_KWARGS, VideoCfg

SAVED = Path(__file__).parent / 'data' / 'saved_formats'
# the options make.py set, none at its default (as json and torch.load give them back: tuples are lists)
SAVED_VIDEO = dict(num_frames=4, inti_after=[1], inti_hidden_dim=8, inti_kernel_sizes=[1, 3],
                   inti_global_context=False, inti_weighting='sigmoid', adapter_dim=4, adapter_kernel_size=[3, 1, 3])


@pytest.fixture(scope='module')
def expected():
    return load_file(SAVED / 'expected.safetensors')


def _options(model) -> dict:
    """The eight options as the built layers hold them."""
    inti = next(iter(model.inti.values()))
    adapter = model.adapters[0]
    return dict(
        num_frames=model.num_frames, inti_after=list(model.inti_after), inti_hidden_dim=inti.reduce.out_features,
        inti_kernel_sizes=list(inti.kernel_sizes), inti_global_context=inti.global_context,
        inti_weighting=inti.weighting, adapter_dim=adapter.down.out_features,
        adapter_kernel_size=list(adapter.conv.kernel_size))


@pytest.mark.parametrize('name', ['registered', 'generic'])
@pytest.mark.parametrize('load', ['local-dir', 'create_video_model', 'checkpoint'])
@torch.no_grad()
def test_files_saved_before_the_dataclass_load_with_identical_outputs(name, load, expected):
    if load == 'checkpoint':
        checkpoint = torch.load(SAVED / f'{name}.pth.tar', map_location='cpu', weights_only=True)
        assert {k: checkpoint['model_args'][k] for k in SAVED_VIDEO} == \
            {k: tuple(v) if isinstance(v, list) else v for k, v in SAVED_VIDEO.items()}  # flat, as train.py saves
        model, labels = create_model_from_checkpoint(SAVED / f'{name}.pth.tar')
        assert labels == ['a', 'b', 'c']
    else:
        config = json.loads((SAVED / name / 'config.json').read_text())
        assert {k: config['model_args'][k] for k in SAVED_VIDEO} == SAVED_VIDEO  # flat, tuples as lists
        create = timm.create_model if load == 'local-dir' and name == 'registered' else timm_inti.create_video_model
        model = create(f'local-dir:{SAVED / name}', pretrained=True)
    assert _options(model) == SAVED_VIDEO
    assert torch.equal(model.eval()(expected['clip']), expected[name])


@pytest.mark.parametrize('name', ['registered', 'generic'])
def test_saving_again_writes_the_same_model_args(tmp_path, name):
    model = timm_inti.create_video_model(f'local-dir:{SAVED / name}', pretrained=True)
    timm_inti.save_pretrained(model, tmp_path / 'again')
    before = json.loads((SAVED / name / 'config.json').read_text())
    after = json.loads((tmp_path / 'again' / 'config.json').read_text())
    assert after['model_args'] == before['model_args']


def test_the_option_names_are_the_fields_and_the_models_take_each():
    assert VIDEO_KWARGS == tuple(f.name for f in dataclasses.fields(VideoCfg)) == (
        'num_frames', 'inti_after', 'inti_hidden_dim', 'inti_kernel_sizes', 'inti_global_context', 'inti_weighting',
        'adapter_dim', 'adapter_kernel_size')
    options = dict(num_frames=4, inti_after=(1, 3), inti_hidden_dim=8, inti_kernel_sizes=(1, 3),
                   inti_global_context=False, inti_weighting='sigmoid', adapter_dim=4, adapter_kernel_size=(3, 1, 3))
    assert set(options) == set(VIDEO_KWARGS)
    for model in (timm.create_model('inti_vit_b16', **TINY_KWARGS, **options),
                  timm_inti.create_video_model('vit_small_patch16_224', **TINY_KWARGS, **options)):
        assert _options(model) == {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def test_defaults_live_in_the_dataclass():
    """A model built with no video option has the dataclass's defaults (the registered schedule aside)."""
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS, inti_after=(2,))
    defaults = VideoCfg()
    inti, = model.inti.values()
    assert (model.num_frames, inti.kernel_sizes, inti.global_context, inti.weighting, model.adapters) == \
        (defaults.num_frames, defaults.inti_kernel_sizes, defaults.inti_global_context, defaults.inti_weighting, None)
    temporal = timm.create_model('inti_vit_b16_temporal', **TINY_KWARGS)
    assert temporal.adapters[0].conv.kernel_size == defaults.adapter_kernel_size
    assert temporal.adapters[0].down.out_features == 768 // 2  # the table's width: half the B/16 entry's embed_dim


def test_the_backbone_table_variants_are_video_cfgs():
    b16 = BACKBONES['vit_base_patch16_clip_224']
    assert {v: VARIANTS[v](b16) for v in VARIANTS} == {
        '': VideoCfg(inti_after=(3,)), '_deep': VideoCfg(inti_after=(3, 6, 9)),
        '_temporal': VideoCfg(inti_after=(3,), adapter_dim=384)}
    assert set(VIDEO_KWARGS) <= set(b16.model_args('_temporal'))


def test_checked_normalises_and_refuses_with_the_models_messages():
    import numpy as np
    cfg = VideoCfg(num_frames=np.int32(4), inti_after=[np.int64(1), torch.tensor(3)]).checked(depth=4)
    assert (cfg.num_frames, cfg.inti_after) == (4, (1, 3)) and type(cfg.num_frames) is int
    with pytest.raises(ValueError, match=r'between 1 and depth=4, e\.g\. \(1,\); got \(5,\)'):
        VideoCfg(inti_after=(5,)).checked(depth=4)
    with pytest.raises(ValueError, match=r'adapter_dim must be an integer of at least 0, got -1'):
        VideoCfg(adapter_dim=-1).checked(depth=4)
    with pytest.raises(TypeError, match='inti_afterr'):
        VideoCfg(inti_afterr=(1,))


def test_pop_from_splits_video_from_image_kwargs():
    kwargs = dict(embed_dim=64, num_frames=16, inti_after=(3,), num_classes=5)
    assert VideoCfg.pop_from(kwargs) == VideoCfg(num_frames=16, inti_after=(3,))
    assert kwargs == dict(embed_dim=64, num_classes=5)
