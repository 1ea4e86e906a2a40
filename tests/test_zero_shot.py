"""Zero-shot heads: the same scores as CLIP, from a random open_clip model (offline)."""
import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F

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
    assert text_tower_for(timm.create_model('inti_vit_b16', depth=1, inti_after=(1,))) == ('ViT-B-16-quickgelu', 'openai')
    assert text_tower_for(timm.create_model('inti_vit_l14.laion2b', depth=1, inti_after=(1,))) == ('ViT-L-14', 'laion2b_s32b_b82k')
    # ViT-B/32 is as wide as ViT-B/16: the tower follows the architecture, not the width
    assert text_tower_for(timm.create_model('inti_vit_b32.laion2b', depth=1, inti_after=(1,))) == ('ViT-B-32', 'laion2b_s34b_b79k')
    assert text_tower_for(timm.create_model('inti_vit_l14_336', depth=1, inti_after=(1,))) == ('ViT-L-14-336-quickgelu', 'openai')
    published = set(open_clip.list_pretrained())
    towers = [w.text_tower for b in BACKBONES.values() for w in b.tags.values() if w.text_tower]
    assert len(towers) >= 10 and all(tower in published for tower in towers)
    with pytest.raises(ValueError, match='no known text tower for a 64-wide model'):
        text_tower_for(timm.create_model('inti_vit_b16', depth=1, inti_after=(1,), embed_dim=64, num_heads=2))
    assert len(VIDEO_TEMPLATES) == 28 and all('{}' in t for t in VIDEO_TEMPLATES)


def test_mismatched_towers_are_refused():
    with pytest.raises(ValueError, match='do not belong together'):
        ZeroShotHead(torch.nn.Linear(64, 512), torch.randn(768, 3))
