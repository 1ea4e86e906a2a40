""" One call from a video file to an answer: ``timm_inti.predict_video(model, "clip.mp4", top_k=5)``.

What Hugging Face's ``pipeline`` and mmaction2's ``inference_recognizer`` give their users,
with exactly the decoding, sampling, evaluation views and view averaging of
``timm-inti-predict`` (``VideoPaths``, ``create_video_transform``, ``timm_inti.evaluate``),
so an answer here is the command's answer for the same file and settings.
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import timm
import torch

from .evaluate import view_probabilities
from .video import VideoDecodeError, VideoPaths, create_video_transform

__all__ = ['predict_video']


@torch.no_grad()
def predict_video(
        model: torch.nn.Module,
        video: Union[str, Path],
        top_k: int = 5,
        label_names: Optional[Sequence[str]] = None,
        num_clips: int = 1,
        num_crops: int = 1,
        num_frames: Optional[int] = None,
        stride: Optional[int] = None,
) -> List[Tuple[str, float]]:
    """The ``top_k`` (label, probability) pairs of one video file, most likely first.

    Args:
        model: A video classifier (a fine-tuned InTI model, or one with a zero-shot head from
            ``timm_inti.zero_shot.set_zero_shot_head``). It is put in eval mode.
        video: Path of the video file.
        top_k: How many labels to return (at most the number of classes).
        label_names: Class names, one per output; default: the model's (``pretrained_cfg['label_names']``,
            saved by ``timm_inti.save_pretrained`` and the training checkpoints).
        num_clips, num_crops: Evaluation views (temporal clips x spatial crops: 1, or 3 crops),
            averaged as ``timm-inti-predict --clips --crops`` does.
        num_frames: Frames per clip; default: the model's ``num_frames``.
        stride: Dense sampling with this frame stride; default: TSN segments over the whole video.

    Raises:
        ValueError: No label names (a CLIP-initialised model outputs embeddings: give it a
            zero-shot head and ``label_names``), or as many names as the model has not classes.
        VideoDecodeError: The file cannot be read as a video.
    """
    label_names = list(label_names if label_names is not None else model.pretrained_cfg.get('label_names') or [])
    if not label_names:
        raise ValueError(
            f'{type(model).__name__} has no label names: pass label_names=, or give a CLIP-initialised model a '
            f'zero-shot head first (timm_inti.zero_shot.set_zero_shot_head) and pass its class names')
    if len(label_names) != model.num_classes:
        raise ValueError(f'{len(label_names)} label names for a model with {model.num_classes} classes')
    if top_k < 1:
        raise ValueError(f'top_k must be at least 1, got {top_k}')
    model.eval()
    transform = create_video_transform(timm.data.resolve_input_data_config(model), is_training=False,
                                       num_crops=num_crops)
    dataset = VideoPaths([str(video)], transform=transform, num_frames=num_frames or model.num_frames,
                         num_clips=num_clips, stride=stride)
    views, _, bad = dataset[0]
    if views is None:
        raise VideoDecodeError(*bad[0])
    device = next(model.parameters()).device
    probs = view_probabilities(model, views[None].to(device))[0]
    top = probs.topk(min(top_k, len(label_names)))
    return [(label_names[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]
