"""Video files in: decode -> sample frames -> transform -> clips (C, T, H, W), or evaluation views (V, C, T, H, W)."""
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
from .decode import VIDEO_EXTENSIONS, VideoDecodeError, VideoInfo, available_backends, probe, read_frames
from .sampling import dense_indices, sample_indices, segment_indices
from .transforms import VideoTransform, create_video_transform

__all__ = [
    'BadVideoLog', 'VideoBatch', 'VideoDataset', 'VideoFolder', 'VideoList', 'VideoPaths', 'collate_videos',
    'create_video_datasets', 'VIDEO_EXTENSIONS', 'VideoDecodeError', 'VideoInfo', 'available_backends', 'probe',
    'read_frames', 'dense_indices', 'sample_indices', 'segment_indices', 'VideoTransform', 'create_video_transform',
]
