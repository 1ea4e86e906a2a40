""" Zero-shot classification heads from CLIP text embeddings.

A CLIP-initialised InTI model (pretrained head = CLIP's image projection) outputs CLIP image
embeddings. ``set_zero_shot_head`` swaps that head for one that scores the embedding against
the text embeddings of class names, written into prompt templates and averaged per class
(open_clip's ``build_zero_shot_classifier``), exactly as CLIP classifies images:

    logits = logit_scale * normalize(projection(pooled)) @ normalize(text_embeddings)

The text tower must be the one trained with the image weights: ``text_tower_for(model)``
finds it from the model's pretrained tag, ``create_text_tower`` builds it with open_clip
(downloading its weights, or from a local checkpoint path).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['VIDEO_TEMPLATES', 'TEXT_TOWERS', 'ZeroShotHead', 'text_tower_for', 'create_text_tower', 'set_zero_shot_head']

# the action prompts used with CLIP on Kinetics (as in ActionCLIP and X-CLIP)
VIDEO_TEMPLATES = tuple(
    f'{medium} of {subject}.'
    for medium in ('a photo', 'a video', 'an example', 'a demonstration')
    for subject in ('{}', 'a person {}', 'a person using {}', 'a person doing {}', 'a person during {}',
                    'a person performing {}', 'a person practicing {}')
)

# (image width, pretrained tag) -> the open_clip (model, pretrained) trained with those image weights
TEXT_TOWERS = {
    (768, 'openai'): ('ViT-B-16-quickgelu', 'openai'),
    (768, 'laion2b'): ('ViT-B-16', 'laion2b_s34b_b88k'),
    (768, 'datacompxl'): ('ViT-B-16', 'datacomp_xl_s13b_b90k'),
    (1024, 'openai'): ('ViT-L-14-quickgelu', 'openai'),
    (1024, 'laion2b'): ('ViT-L-14', 'laion2b_s32b_b82k'),
    (1024, 'datacompxl'): ('ViT-L-14', 'datacomp_xl_s13b_b90k'),
}


class ZeroShotHead(nn.Module):
    """CLIP's image projection followed by cosine similarity to fixed class text embeddings."""

    def __init__(self, projection: nn.Linear, class_embeddings: torch.Tensor, logit_scale: float = 100.0):
        super().__init__()
        if class_embeddings.shape[0] != projection.out_features:
            raise ValueError(
                f'text embeddings have {class_embeddings.shape[0]} dims, the image projection '
                f'{projection.out_features}: the towers do not belong together')
        self.projection = projection
        self.register_buffer('class_embeddings', F.normalize(class_embeddings.float(), dim=0))
        self.logit_scale = logit_scale

    @property
    def num_classes(self) -> int:
        return self.class_embeddings.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.projection(x), dim=-1)
        return self.logit_scale * image @ self.class_embeddings.to(image.dtype)


def text_tower_for(model: nn.Module) -> Tuple[str, str]:
    """The open_clip (model name, pretrained tag) whose text tower matches ``model``'s CLIP weights."""
    tag = model.pretrained_cfg.get('tag')
    key = (model.embed_dim, tag)
    if key not in TEXT_TOWERS:
        raise ValueError(
            f'no known text tower for a {model.embed_dim}-wide model with pretrained tag {tag!r}; '
            f'pass one explicitly (open_clip model name and pretrained tag or checkpoint)')
    return TEXT_TOWERS[key]


def create_text_tower(model_name: str, pretrained: Optional[str], device='cpu'):
    """An open_clip model and its tokenizer; ``pretrained`` is an open_clip tag or a checkpoint path."""
    import open_clip
    clip_model = open_clip.create_model(model_name, pretrained=pretrained, device=device)
    return clip_model.eval(), open_clip.get_tokenizer(model_name)


@torch.no_grad()
def set_zero_shot_head(
        model: nn.Module,
        classnames: Sequence[str],
        clip_model: nn.Module,
        tokenizer,
        templates: Sequence[str] = VIDEO_TEMPLATES,
) -> ZeroShotHead:
    """Replace ``model``'s CLIP projection head by a zero-shot head over ``classnames``; returns the head."""
    from open_clip import build_zero_shot_classifier
    if not isinstance(model.head, nn.Linear):
        raise ValueError(f'the model head must be CLIP\'s image projection (a Linear layer), got {type(model.head).__name__}')
    if not classnames:
        raise ValueError('zero-shot classification needs at least one class name')
    device = next(model.parameters()).device
    class_embeddings = build_zero_shot_classifier(
        clip_model, tokenizer, list(classnames), list(templates), device=device)
    head = ZeroShotHead(model.head, class_embeddings, float(clip_model.logit_scale.exp()))
    model.head = head
    model.num_classes = head.num_classes
    return head
