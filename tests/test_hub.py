"""The Hub layout: round trips through local-dir: and hf-hub:, every pretrained tag, atomic writes, refusals."""
import json
import shutil

import pytest
import safetensors.torch
import timm
import torch
from conftest import TINY_KWARGS

import timm_inti
import timm_inti.hub
from timm_inti.backbones import BACKBONES
from timm_inti.hub import push_to_hub, read_checkpoint, save_pretrained


def outputs_equal(a, b, frames, size):
    x = torch.randn(1, 3, frames, size, size)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def randomized(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.02)
    return model


@pytest.mark.parametrize('kwargs, frames, size', [
    (dict(), 2, 224),  # inti_vit_b16 as registered (a short clip keeps the full-size forward cheap)
    (dict(TINY_KWARGS, num_frames=16, inti_after=(1, 3), num_classes=5, img_size=48), 16, 48),
])
def test_save_then_local_dir_rebuilds_an_identical_model(tmp_path, kwargs, frames, size):
    model = randomized(timm.create_model('inti_vit_b16', **kwargs))
    labels = [f'class {i}' for i in range(model.num_classes)] if model.num_classes < 10 else None
    save_pretrained(model, tmp_path / 'out', label_names=labels)
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    loaded = timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True)
    assert (loaded.num_frames, loaded.inti_after, loaded.num_classes) == \
        (model.num_frames, model.inti_after, model.num_classes)
    assert loaded.pretrained_cfg.get('label_names') == labels
    assert outputs_equal(model, loaded, frames, size)


def test_hf_hub_name_rebuilds_from_the_hub_cache(tmp_path, hub_cache):
    model = randomized(timm.create_model('inti_vit_b16.laion2b', **dict(TINY_KWARGS, num_classes=3, num_frames=4)))
    save_pretrained(model, tmp_path / 'out', label_names=['a', 'b', 'c'], finetuned_on='a test')
    for f in (tmp_path / 'out').iterdir():
        hub_cache('some-org/inti-test', f.name, f.read_bytes())
    loaded = timm.create_model('hf-hub:some-org/inti-test', pretrained=True)
    assert outputs_equal(model, loaded, 4, 32)
    assert type(loaded.blocks[0].mlp.act) is type(model.blocks[0].mlp.act)  # GELU for laion2b
    assert loaded.pretrained_cfg['label_names'] == ['a', 'b', 'c']
    card = (tmp_path / 'out' / 'README.md').read_text()
    assert 'Fine-tuned on a test' in card and 'arXiv' in card or '2408.06840' in card


@pytest.fixture(scope='module')
def clip_towers(tmp_path_factory):
    """Random CLIP image towers in timm's format, as the timm/ Hub repositories hold them."""
    root = tmp_path_factory.mktemp('towers')
    paths = {}
    for width, name in (('b16', 'vit_base_patch16_clip_224'), ('l14', 'vit_large_patch14_clip_224')):
        tower = timm.create_model(name, num_classes=512 if width == 'b16' else 768)
        paths[width] = root / f'{name}.safetensors'
        safetensors.torch.save_file(tower.state_dict(), paths[width])
        del tower
    return paths


# the CLIP ViT-B/16 and ViT-L/14 variants, whose towers the fixture writes;
# tests/test_backbones.py loads the other families
CLIP_MODELS = sorted(
    long_name for b in ('vit_base_patch16_clip_224', 'vit_large_patch14_clip_224')
    for long_name, _, _ in BACKBONES[b].model_names())


@pytest.mark.slow
@pytest.mark.parametrize('model_name', CLIP_MODELS)
def test_every_pretrained_tag_loads_through_the_hub(model_name, clip_towers, hub_cache):
    tower_file = clip_towers['l14' if 'large' in model_name else 'b16']
    tower_weights = safetensors.torch.load_file(tower_file)
    for tagged in timm.list_pretrained(f'{model_name}.*'):
        hub_cache(timm.models.get_pretrained_cfg(tagged).hf_hub_id, 'model.safetensors', tower_file)
        model = timm.create_model(tagged, pretrained=True)
        last = f'blocks.{len(model.blocks) - 1}.mlp.fc2.weight'
        torch.testing.assert_close(model.blocks[-1].mlp.fc2.weight, tower_weights[last], rtol=0, atol=0)
        torch.testing.assert_close(model.head.weight, tower_weights['head.weight'], rtol=0, atol=0)
        assert torch.count_nonzero(model.temporal_embed) == 0
        expected_act = 'QuickGELU' if tagged.endswith('.openai') else 'GELU'
        assert type(model.blocks[0].mlp.act).__name__ == expected_act, tagged


def test_writes_are_atomic_and_failures_leave_the_old_folder(tmp_path, monkeypatch):
    first = randomized(timm.create_model('inti_vit_b16', **TINY_KWARGS))
    save_pretrained(first, tmp_path / 'out')
    before = {p.name: p.read_bytes() for p in (tmp_path / 'out').iterdir()}

    def broken_save(model, directory, **kwargs):  # dies after writing part of the weights
        (directory / 'model.safetensors').write_bytes(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(timm_inti.hub, 'save_for_hf', broken_save)
    with pytest.raises(OSError, match='disk full'):
        save_pretrained(randomized(timm.create_model('inti_vit_b16', **TINY_KWARGS)), tmp_path / 'out')
    assert {p.name: p.read_bytes() for p in (tmp_path / 'out').iterdir()} == before, 'no partial file, no leftovers'


@pytest.mark.parametrize('damage', ['truncated', 'corrupt'])
def test_damaged_checkpoints_are_refused_naming_the_file(tmp_path, damage):
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS)
    save_pretrained(model, tmp_path / 'out')
    weights = tmp_path / 'out' / 'model.safetensors'
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == 'truncated' else b'\x07garbage' * 64)
    with pytest.raises(timm_inti.CheckpointError, match='cannot read the pretrained weights') as err:
        timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True)
    assert str(tmp_path / 'out') in str(err.value)

    torch.save(model.state_dict(), tmp_path / 'model.pth')
    (tmp_path / 'model.pth').write_bytes((tmp_path / 'model.pth').read_bytes()[:5000])
    for path in (weights, tmp_path / 'model.pth'):
        with pytest.raises(timm_inti.CheckpointError, match=f'{path}: not a readable checkpoint'):
            read_checkpoint(path)
        with pytest.raises(timm_inti.CheckpointError, match=str(path)):
            timm.create_model('inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              **TINY_KWARGS)


def test_another_architecture_is_refused(tmp_path):
    save_pretrained(timm.create_model('inti_vit_b16', **TINY_KWARGS), tmp_path / 'out')
    config = json.loads((tmp_path / 'out' / 'config.json').read_text())
    config['model_args']['depth'] = 2
    config['model_args']['inti_after'] = [1]
    (tmp_path / 'out' / 'config.json').write_text(json.dumps(config))
    expected = r'does not fit inti_vit_b16: missing keys: inti\.1\..*unexpected keys: blocks\.2'
    with pytest.raises(timm_inti.CheckpointError, match=expected):
        timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True)


class Opaque:
    """A pickled object that weights_only loading refuses."""


def test_no_pickle_unless_asked(tmp_path):
    path = tmp_path / 'pickled.pth'
    torch.save({'weights': torch.ones(2), 'extra': Opaque()}, path)
    with pytest.raises(timm_inti.CheckpointError, match='if you trust the file, allow pickle'):
        read_checkpoint(path)
    assert isinstance(read_checkpoint(path, allow_pickle=True)['extra'], Opaque)


def test_push_to_hub_dry_run_and_upload(tmp_path, monkeypatch):
    model = timm.create_model('inti_vit_b16', **dict(TINY_KWARGS, num_classes=2))
    folder = push_to_hub(model, 'me/inti-tiny', label_names=['x', 'y'], dry_run=True, local_dir=tmp_path / 'dry')
    assert sorted(p.name for p in folder.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    assert 'hf-hub:me/inti-tiny' in (folder / 'README.md').read_text()

    calls = {}

    class FakeApi:  # records what would be sent; huggingface_hub itself is not under test
        def __init__(self, token=None):
            calls['token'] = token

        def create_repo(self, repo_id, private, exist_ok):
            calls['create'] = (repo_id, private, exist_ok)
            return type('Repo', (), {'repo_id': repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns):
            calls['files'] = sorted(p.name for p in __import__('pathlib').Path(folder_path).iterdir())
            return type('Commit', (), {'commit_url': f'https://huggingface.co/{repo_id}/commit/1'})()

    monkeypatch.setattr('huggingface_hub.HfApi', FakeApi)
    url = push_to_hub(model, 'me/inti-tiny', label_names=['x', 'y'], private=True, token='secret')
    assert url == 'https://huggingface.co/me/inti-tiny/commit/1'
    assert calls == dict(token='secret', create=('me/inti-tiny', True, True),
                         files=['README.md', 'config.json', 'model.safetensors'])
    shutil.rmtree(folder)


def test_a_foreign_hub_config_is_named(hub_cache):
    from timm_inti.checkpoints import create_model
    hub_cache('some-org/a-bert', 'config.json', b'{"model_type": "bert", "hidden_size": 768}')
    with pytest.raises(timm_inti.CheckpointError, match='hf-hub:some-org/a-bert config.json: not a timm model config'):
        create_model('hf-hub:some-org/a-bert', pretrained=True)


# ---------------------------------------------------------------------------- save_pretrained refusals, as a table
# Row: (setup(folder), call(model, folder), exception, message regex). The folder's files before the call are
# checked unchanged after it, and nothing is added.

def _users_file(name, text):
    def setup(folder):
        folder.mkdir()
        (folder / name).write_text(text)
    return setup


SAVE_CASES = [
    (None, lambda m, d: save_pretrained(m, ''), ValueError, r"save_pretrained needs a folder to write to, got ''"),
    (None, lambda m, d: save_pretrained(m, d, label_names='abc'), ValueError,
     r"label_names must be a list of class names, one per class, not the string 'abc'"),
    (None, lambda m, d: save_pretrained(m, d, label_names=['a', 'b']), ValueError,
     r'2 label names for a model with 3 classes'),
    (_users_file('README.md', '# my project\n'), lambda m, d: save_pretrained(m, d), FileExistsError,
     r'/out holds README.md that save_pretrained did not write: they would be replaced; name another folder '
     r'\(or pass overwrite=True, --overwrite\)'),
    (_users_file('config.json', '{"hidden_size": 768}'), lambda m, d: save_pretrained(m, d), FileExistsError,
     r'/out holds config.json, that save_pretrained did not write|/out holds config.json that save_pretrained'),
    (_users_file('model.safetensors', 'weights of mine'), lambda m, d: save_pretrained(m, d), FileExistsError,
     r'/out holds model.safetensors that save_pretrained did not write'),
]


@pytest.mark.parametrize('setup, call, error, message', SAVE_CASES, ids=[str(i) for i in range(len(SAVE_CASES))])
def test_save_pretrained_refuses(tmp_path, monkeypatch, setup, call, error, message):
    from table import snapshot
    monkeypatch.chdir(tmp_path)
    model = timm.create_model('inti_vit_b16', **dict(TINY_KWARGS, num_classes=3))
    if setup is not None:
        setup(tmp_path / 'out')
    before = snapshot(tmp_path)
    with pytest.raises(error, match=message):
        call(model, tmp_path / 'out')
    assert snapshot(tmp_path) == before


def test_save_pretrained_over_its_own_save_or_with_overwrite_and_ordinary_file_modes(tmp_path):
    import os
    model = timm.create_model('inti_vit_b16', **dict(TINY_KWARGS, num_classes=3))
    save_pretrained(model, tmp_path / 'out', label_names=['a', 'b', 'c'])
    save_pretrained(model, tmp_path / 'out', label_names=['x', 'y', 'z'])  # its own earlier save: replaced
    assert timm.create_model(f'local-dir:{tmp_path / "out"}').pretrained_cfg['label_names'] == ['x', 'y', 'z']
    mask = os.umask(0)
    os.umask(mask)
    for path in (tmp_path / 'out').iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, f'{path.name} has mode {oct(path.stat().st_mode)}'
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'README.md').write_text('# my project\n')
    save_pretrained(model, tmp_path / 'mine', overwrite=True)
    assert 'timm-inti' in (tmp_path / 'mine' / 'README.md').read_text()
