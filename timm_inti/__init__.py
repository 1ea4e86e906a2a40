"""timm-inti: InTI (Inter-frame Token Interpolation) video ViTs for timm.

``import timm_inti`` registers the models with timm; then ``timm.create_model("inti_vit_b16")``
and the ``hf-hub:`` / ``local-dir:`` names work as for timm's own models.
``timm_inti.create_video_model`` turns any other timm ViT (``VisionTransformer`` or ``Eva``) into a video model,
and ``timm_inti.predict_video(model, "clip.mp4")`` answers one file as ``timm-inti-predict`` does.
"""
from .backbones import Backbone, Weights
from .hub import push_to_hub, read_checkpoint, save_pretrained
from .inti import InTI, merged_num_frames
from .video_cfg import VideoCfg
from .vit import (
    MODEL_ALIASES,
    CheckpointError,
    VideoEva,
    VideoTransformerMixin,
    VideoVisionTransformer,
    checkpoint_filter_fn,
    create_video_model,
    register_backbone,
    resample_temporal_embed,
)

__all__ = [
    'Backbone', 'CheckpointError', 'InTI', 'MODEL_ALIASES', 'VideoEva', 'VideoTransformerMixin',
    'VideoCfg', 'VideoVisionTransformer', 'Weights', 'checkpoint_filter_fn', 'create_video_model', 'merged_num_frames',
    'predict_video', 'push_to_hub', 'read_checkpoint', 'register_backbone', 'resample_temporal_embed',
    'save_pretrained',
]

__version__ = '0.1.0'


def __getattr__(name: str):
    # the video readers load on first use, so `import timm_inti` (registering the models) stays light
    if name == 'predict_video':
        from .inference import predict_video
        return predict_video
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

