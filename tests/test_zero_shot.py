"""Zero-shot heads: the same scores as CLIP, from a random open_clip model (offline)."""
import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import TINY_KWARGS

import timm_inti
from timm_inti.backbones import BACKBONES
from timm_inti.zero_shot import VIDEO_TEMPLATES, ZeroShotHead, set_zero_shot_head, text_tower_for

CLASSES = ['archery', 'juggling balls', 'swimming backstroke']


@torch.no_grad()
def test_zero_shot_head_scores_clips_as_clip_scores_images(open_clip_b16):
    video = timm.create_model(
        'inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(state_dict=open_clip_b16.state_dict())).eval()
    tokenizer = open_clip.get_tokenizer('ViT-B-16-quickgelu')
    head = set_zero_shot_head(video, CLASSES, open_clip_b16, tokenizer, templates=['a video of {}.'])
    assert isinstance(video.head, ZeroShotHead) and video.num_classes == 3 and head.num_classes == 3

    x = torch.randn(2, 3, 1, 224, 224)
    image = F.normalize(open_clip_b16.encode_image(x[:, :, 0]), dim=-1)
    text = F.normalize(open_clip_b16.encode_text(tokenizer([f'a video of {c}.' for c in CLASSES])), dim=-1)
    expected = open_clip_b16.logit_scale.exp() * image @ text.T
    torch.testing.assert_close(video(x), expected, atol=1e-3, rtol=1e-4)
    assert video(torch.randn(1, 3, 8, 224, 224)).shape == (1, 3)  # and on clips


def test_text_towers_follow_the_pretrained_tag():
    assert text_tower_for(timm.create_model('inti_vit_b16', depth=1, inti_after=(1,))) == (
        'ViT-B-16-quickgelu', 'openai')
    assert text_tower_for(timm.create_model('inti_vit_l14.laion2b', depth=1, inti_after=(1,))) == (
        'ViT-L-14', 'laion2b_s32b_b82k')
    # ViT-B/32 is as wide as ViT-B/16: the tower follows the architecture, not the width
    assert text_tower_for(timm.create_model('inti_vit_b32.laion2b', depth=1, inti_after=(1,))) == (
        'ViT-B-32', 'laion2b_s34b_b79k')
    assert text_tower_for(timm.create_model('inti_vit_l14_336', depth=1, inti_after=(1,))) == (
        'ViT-L-14-336-quickgelu', 'openai')
    published = set(open_clip.list_pretrained())
    towers = [w.text_tower for b in BACKBONES.values() for w in b.tags.values() if w.text_tower]
    assert len(towers) >= 10 and all(tower in published for tower in towers)
    with pytest.raises(ValueError, match='no known text tower for a 64-wide model'):
        text_tower_for(timm.create_model('inti_vit_b16', depth=1, inti_after=(1,), embed_dim=64, num_heads=2))
    assert len(VIDEO_TEMPLATES) == 28 and all('{}' in t for t in VIDEO_TEMPLATES)


def test_mismatched_towers_are_refused():
    with pytest.raises(ValueError, match='do not belong together'):
        ZeroShotHead(torch.nn.Linear(64, 512), torch.randn(768, 3))


def fake_tokenizer(texts, context_length=64):
    """Stands in for SigLIP 2's Gemma tokenizer (it needs transformers, not installed here): any token ids
    give text embeddings, and both sides of the comparison use the same ones."""
    ids = [[(hash(word) % 1000) + 1 for word in text.split()][:context_length] for text in texts]
    return torch.tensor([row + [0] * (context_length - len(row)) for row in ids])


@pytest.mark.slow
@torch.no_grad()
def test_siglip2_zero_shot_scores_clips_as_open_clip_scores_images(hub_cache):
    """Sigmoid scoring with SigLIP's logit bias; the image tower comes through the Hub cache as timm publishes it."""
    import warnings

    import safetensors.torch
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        siglip = open_clip.create_model('ViT-B-16-SigLIP2', pretrained=None).eval()
    assert text_tower_for(timm.create_model('inti_vit_b16_siglip', device='meta')) == ('ViT-B-16-SigLIP2', 'webli')
    with torch.no_grad():
        siglip.logit_bias.fill_(-3.0)  # away from its init, so a missing bias shows
    trunk = {k: v.contiguous() for k, v in siglip.visual.trunk.state_dict().items()}  # timm's SigLIP ViT
    hub_cache('timm/vit_base_patch16_siglip_224.v2_webli', 'model.safetensors', safetensors.torch.save(trunk))
    video = timm.create_model('inti_vit_b16_siglip', pretrained=True).eval()
    head = set_zero_shot_head(video, CLASSES, siglip, fake_tokenizer, templates=['a video of {}.'])
    assert head.scoring == 'sigmoid' and head.logit_bias == -3.0

    x = torch.randn(2, 3, 1, 224, 224)
    image = F.normalize(siglip.encode_image(x[:, :, 0]), dim=-1)
    text = F.normalize(siglip.encode_text(fake_tokenizer([f'a video of {c}.' for c in CLASSES])), dim=-1)
    expected = siglip.logit_scale.exp() * image @ text.T + siglip.logit_bias
    logits = video(x)
    torch.testing.assert_close(logits, expected, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(head.probabilities(logits), torch.sigmoid(expected), atol=1e-4, rtol=1e-4)


def test_text_towers_of_other_families_and_of_the_generic_path():
    with torch.device('meta'):
        generic = timm_inti.create_video_model('vit_base_patch16_siglip_224.webli')
        dinov2 = timm.create_model('inti_vit_b14_dinov2')
    assert text_tower_for(generic) == ('ViT-B-16-SigLIP', 'webli')  # found by its image weights' Hub id
    with pytest.raises(ValueError, match='no known text tower for DINOv2.*image-only'):
        text_tower_for(dinov2)
    with pytest.raises(ValueError,
                       match="no known text tower for vit_base_patch16_224.*'timm/vit_base_patch16_224.augreg_in1k'"):
        text_tower_for(timm_inti.create_video_model('vit_base_patch16_224.augreg_in1k', **TINY_KWARGS))
    with pytest.raises(ValueError, match='image embedding head'):
        set_zero_shot_head(_with_head(torch.nn.Sequential()), CLASSES, None, None)


def _with_head(head):
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS)
    model.head = head
    return model


# -- the Eva towers trained with text: PE-Core and EVA02-CLIP ----------------------------------

def open_clip_with_a_small_text_tower(name):
    """A random open_clip model: the full image tower (timm's Eva inside open_clip), a one-block text tower."""
    import warnings
    torch.manual_seed(0)
    text_cfg = dict(open_clip.get_model_config(name)['text_cfg'], width=64, heads=2, layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return open_clip.create_model(name, pretrained=None, text_cfg=text_cfg).eval()


@pytest.mark.slow
@pytest.mark.parametrize('video_name, clip_name', [('inti_vit_b16_pe', 'PE-Core-B-16'),
                                                   ('inti_vit_b16_eva02', 'EVA02-B-16')])
@torch.no_grad()
def test_pe_and_eva02_zero_shot_scores_clips_as_open_clip_scores_images(video_name, clip_name, tmp_path):
    """The whole open_clip checkpoint (image and text towers) loads through the checkpoint filter."""
    model = open_clip_with_a_small_text_tower(clip_name)
    path = tmp_path / 'open_clip_model.pt'
    torch.save(model.state_dict(), path)
    video = timm.create_model(video_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert text_tower_for(video)[0] == clip_name
    tokenizer = open_clip.get_tokenizer(clip_name)
    set_zero_shot_head(video, CLASSES, model, tokenizer, templates=['a video of {}.'])

    x = torch.randn(2, 3, 1, 224, 224)
    image = F.normalize(model.encode_image(x[:, :, 0]), dim=-1)
    text = F.normalize(model.encode_text(tokenizer([f'a video of {c}.' for c in CLASSES])), dim=-1)
    expected = model.logit_scale.exp() * image @ text.T
    torch.testing.assert_close(video(x), expected, atol=1e-4, rtol=0)
    assert video(x.expand(-1, -1, 8, -1, -1)).shape == (2, 3)


def test_text_towers_of_the_eva_families():
    with torch.device('meta'):
        pe_l, eva02, dinov3 = (timm.create_model(n) for n in ('inti_vit_l14_336_pe', 'inti_vit_l14_eva02',
                                                              'inti_vit_b16_dinov3'))
        generic = timm_inti.create_video_model('vit_pe_core_base_patch16_224.fb')
    assert text_tower_for(pe_l) == ('PE-Core-L-14-336', 'meta')
    assert text_tower_for(eva02) == ('EVA02-L-14', 'merged2b_s4b_b131k')
    assert text_tower_for(generic) == ('PE-Core-B-16', 'meta')  # by its image weights' Hub id
    with pytest.raises(ValueError, match='no known text tower for DINOv3 ViT-B/16 weights.*image-only'):
        text_tower_for(dinov3)
