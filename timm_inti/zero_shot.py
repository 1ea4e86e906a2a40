""" Zero-shot classification heads from the text embeddings of an image-text model.

A video model initialised from image-text weights (CLIP, SigLIP 2) outputs the image
embedding: CLIP's image projection is its head, SigLIP's attention-pooled features are the
embedding itself. ``set_zero_shot_head`` swaps the head for one that scores the embedding
against the text embeddings of class names, written into prompt templates and averaged per
class (open_clip's ``build_zero_shot_classifier``), exactly as the image-text model scores
images:

    logits = logit_scale * normalize(head(pooled)) @ normalize(text_embeddings) [+ logit_bias]

CLIP turns the logits into probabilities with a softmax over classes; SigLIP, trained with a
sigmoid loss, with an independent sigmoid per class and its learned ``logit_bias``
(``ZeroShotHead.probabilities`` applies the right one).

The text tower must be the one trained with the image weights: ``text_tower_for(model)``
finds it in the backbone table (``timm_inti.backbones``) from the model's pretrained cfg,
``create_text_tower`` builds it with open_clip (downloading its weights, or from a local
checkpoint path).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones import find_backbone, find_weights

__all__ = ['VIDEO_TEMPLATES', 'ZeroShotHead', 'text_tower_for', 'create_text_tower', 'set_zero_shot_head']

# the action prompts used with CLIP on Kinetics (as in ActionCLIP and X-CLIP)
VIDEO_TEMPLATES = tuple(
    f'{medium} of {subject}.'
    for medium in ('a photo', 'a video', 'an example', 'a demonstration')
    for subject in ('{}', 'a person {}', 'a person using {}', 'a person doing {}', 'a person during {}',
                    'a person performing {}', 'a person practicing {}')
)

class ZeroShotHead(nn.Module):
    """The model's embedding head, then scaled cosine similarity to fixed class text embeddings.

    Args:
        projection: The head that makes the image embedding: CLIP's image projection (a Linear
            layer), or ``nn.Identity`` where the pooled features are the embedding (SigLIP).
        class_embeddings: (embed_dim, num_classes) text embeddings, one column per class.
        logit_scale: The image-text model's learned temperature, ``logit_scale.exp()``.
        logit_bias: SigLIP's learned bias; with it, scores are independent sigmoids per class.
        embed_dim: Width of the embedding when ``projection`` has no ``out_features``.
    """

    def __init__(
            self,
            projection: nn.Module,
            class_embeddings: torch.Tensor,
            logit_scale: float = 100.0,
            logit_bias: Optional[float] = None,
            embed_dim: Optional[int] = None,
    ):
        super().__init__()
        width = getattr(projection, 'out_features', embed_dim)
        if width is not None and class_embeddings.shape[0] != width:
            raise ValueError(
                f'text embeddings have {class_embeddings.shape[0]} dims, the image embedding '
                f'{width}: the towers do not belong together')
        self.projection = projection
        self.register_buffer('class_embeddings', F.normalize(class_embeddings.float(), dim=0))
        self.logit_scale = logit_scale
        self.logit_bias = logit_bias

    @property
    def num_classes(self) -> int:
        return self.class_embeddings.shape[1]

    @property
    def scoring(self) -> str:
        """``'sigmoid'`` (SigLIP: an independent probability per class) or ``'softmax'`` (CLIP)."""
        return 'softmax' if self.logit_bias is None else 'sigmoid'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.projection(x), dim=-1)
        logits = self.logit_scale * image @ self.class_embeddings.to(image.dtype)
        return logits if self.logit_bias is None else logits + self.logit_bias

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities from this head's logits, as the image-text model computes them."""
        return logits.softmax(dim=-1) if self.logit_bias is None else logits.sigmoid()


# how to name a text tower when none is known: the Python call and the command's flag
_EXPLICIT = ('name one matching the image weights: timm-inti-predict --text-tower MODEL:PRETRAINED (an open_clip '
             'model name and its tag or checkpoint file) or --text-tower local-dir:DIR; in Python '
             'create_text_tower(MODEL, PRETRAINED)')


def text_tower_for(model: nn.Module) -> Tuple[str, str]:
    """The open_clip (model name, pretrained tag) whose text tower matches ``model``'s image weights.

    Looked up in the backbone table, by the registered architecture and tag, or for a model from
    ``create_video_model`` by the Hub id of its image weights.
    """
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    arch, tag, hub_id = cfg.get('architecture'), cfg.get('tag'), cfg.get('hf_hub_id')
    found = find_backbone(arch) if arch else None
    if found is not None and (tag is None or tag in found[0].tags):
        backbone, weights = found[0], found[0].weights(tag)
        tag = tag or next(iter(backbone.tags))
    else:
        by_hub_id = find_weights(hub_id)
        if by_hub_id is None:
            raise ValueError(
                f'no known text tower for {arch or type(model).__name__} (pretrained tag {tag!r}, weights '
                f'{hub_id!r}): the backbone table (timm_inti.backbones) does not list these weights; {_EXPLICIT}')
        backbone, tag, weights = by_hub_id
    if weights.text_tower is None:
        raise ValueError(
            f'no known text tower for {backbone.description} weights {tag!r}: they are image-only weights, '
            f'trained without text (no text tower scores them; a CLIP or SigLIP backbone has one)')
    if model.embed_dim != backbone.embed_dim:
        raise ValueError(
            f'no known text tower for a {model.embed_dim}-wide model: the {backbone.description} text tower '
            f'({weights.text_tower[0]}) belongs to {backbone.embed_dim}-wide image weights; {_EXPLICIT}')
    return weights.text_tower


def create_text_tower(model_name: str, pretrained: Optional[str], device='cpu'):
    """An open_clip model and its tokenizer; ``pretrained`` is an open_clip tag or a checkpoint path.

    ``model_name`` may also be ``local-dir:DIR`` (open_clip's folder layout: ``open_clip_config.json``
    and the weights), which needs no Hub. Weights that are neither cached nor reachable raise an
    ``OSError`` saying how to give a local copy (docs/offline.md).
    """
    import logging

    import open_clip

    from .hub import OFFLINE_DOC, hub_unreachable
    disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)  # open_clip logs the error it then raises: say it once
    try:
        clip_model = open_clip.create_model(model_name, pretrained=pretrained, device=device)
    except RuntimeError as e:
        if not hub_unreachable(e):
            raise
        raise OSError(
            f'text tower {model_name}:{pretrained}: its weights are not in the Hugging Face cache and the Hub cannot '
            f'be reached (HF_HUB_OFFLINE=1 or no network): give a local open_clip checkpoint, '
            f'create_text_tower({model_name!r}, "/path/to/open_clip_pytorch_model.bin") or '
            f'create_text_tower("local-dir:/path/to/folder", None) (see {OFFLINE_DOC})') from e
    finally:
        logging.disable(disabled)
    return clip_model.eval(), open_clip.get_tokenizer(model_name)


@torch.no_grad()
def set_zero_shot_head(
        model: nn.Module,
        classnames: Sequence[str],
        clip_model: nn.Module,
        tokenizer,
        templates: Sequence[str] = VIDEO_TEMPLATES,
) -> ZeroShotHead:
    """Replace ``model``'s embedding head by a zero-shot head over ``classnames``; returns the head.

    ``clip_model`` is the open_clip model whose text tower matches the image weights; a
    ``logit_bias`` on it (SigLIP) makes the head score with sigmoids.
    """
    from open_clip import build_zero_shot_classifier
    if not isinstance(model.head, (nn.Linear, nn.Identity)):
        raise ValueError(
            'the model head must be the image embedding head: CLIP\'s image projection (a Linear layer) or none '
            f'(nn.Identity, where the pooled features are the embedding, as in SigLIP); '
            f'got {type(model.head).__name__}')
    if not classnames:
        raise ValueError('zero-shot classification needs at least one class name')
    device = next(model.parameters()).device
    class_embeddings = build_zero_shot_classifier(
        clip_model, tokenizer, list(classnames), list(templates), device=device)
    bias = getattr(clip_model, 'logit_bias', None)
    head = ZeroShotHead(
        model.head, class_embeddings, float(clip_model.logit_scale.exp()),
        logit_bias=None if bias is None else float(bias), embed_dim=model.num_features)
    model.head = head
    model.num_classes = head.num_classes
    return head
