"""Video files in: decode -> sample frames -> transform -> clips (C, T, H, W), or evaluation views (V, C, T, H, W).

The files that name videos (manifests, annotation lists, Kinetics/SSv2, path lists) are read by ``formats``;
``transcode`` re-encodes a video for fast training (the ``timm-inti-prepare`` command runs it over a dataset).
"""
from .datasets import (
    BadVideoLog,
    VideoBatch,
    VideoDataset,
    VideoFolder,
    VideoList,
    VideoPaths,
    collate_videos,
    create_video_datasets,
)
from .decode import VideoDecodeError, VideoInfo, available_backends, probe, read_frames
from .formats import VIDEO_EXTENSIONS, read_manifest
from .sampling import dense_indices, sample_indices, segment_indices
from .transforms import VideoTransform, create_video_transform

__all__ = [
    'BadVideoLog', 'VideoBatch', 'VideoDataset', 'VideoFolder', 'VideoList', 'VideoPaths', 'collate_videos',
    'create_video_datasets', 'VIDEO_EXTENSIONS', 'read_manifest', 'VideoDecodeError', 'VideoInfo',
    'available_backends', 'probe', 'read_frames', 'dense_indices', 'sample_indices', 'segment_indices',
    'VideoTransform', 'create_video_transform',
]
