"""Frame sampling: in range, in order, deterministic under a seed, and the right count for short videos."""
import pytest
import torch

from timm_inti.video import dense_indices, sample_indices, segment_indices


@pytest.mark.parametrize('num_video_frames', [1, 3, 8, 9, 100, 301])
def test_segment_training_takes_one_frame_per_segment(num_video_frames):
    for seed in range(5):
        idx = segment_indices(num_video_frames, 8, train=True, generator=torch.Generator().manual_seed(seed))
        assert idx.shape == (8,) and idx.dtype == torch.long
        assert idx.min() >= 0 and idx.max() < num_video_frames
        assert torch.all(idx[1:] >= idx[:-1]), 'frames stay in temporal order'
        segment = num_video_frames / 8
        for k, i in enumerate(idx.tolist()):  # frame k lies in segment k (short videos repeat frames)
            assert int(k * segment) <= i <= max(int(k * segment), int((k + 1) * segment - 1e-9))


def test_training_sampling_is_deterministic_under_a_seed_and_random_across_seeds():
    draw = lambda seed, f: f(generator=torch.Generator().manual_seed(seed))  # noqa: E731
    seg = lambda generator: segment_indices(300, 8, train=True, generator=generator)  # noqa: E731
    dense = lambda generator: dense_indices(300, 8, 4, train=True, generator=generator)  # noqa: E731
    for f in (seg, dense):
        assert torch.equal(draw(1, f), draw(1, f))
        assert len({tuple(draw(s, f).tolist()) for s in range(10)}) > 5


def test_segment_evaluation_is_centred_and_spreads_several_clips():
    assert segment_indices(80, 8, train=False).tolist() == [[5, 15, 25, 35, 45, 55, 65, 75]]
    clips = segment_indices(80, 8, train=False, num_clips=2)
    assert clips.tolist() == [[2, 12, 22, 32, 42, 52, 62, 72], [7, 17, 27, 37, 47, 57, 67, 77]]


def test_dense_sampling_strides_and_windows():
    idx = dense_indices(100, 8, 4, train=True, generator=torch.Generator().manual_seed(0))
    assert torch.all(idx[1:] - idx[:-1] == 4) and idx.max() < 100
    centre = dense_indices(100, 8, 4, train=False)
    before, after = centre[0, 0].item(), 99 - centre[0, -1].item()  # frames left out on each side
    assert centre.shape == (1, 8) and abs(before - after) <= 1
    clips = dense_indices(100, 8, 4, train=False, num_clips=3)
    starts = clips[:, 0].tolist()
    assert starts == sorted(starts) and starts[0] < 35 < starts[2] and clips.max() < 100


def test_short_videos_give_a_full_clip_in_order():
    idx = dense_indices(5, 8, 2, train=True)
    assert idx.tolist() == [0, 2, 4, 4, 4, 4, 4, 4]  # clamped: the last frame repeats
    assert segment_indices(2, 4, train=False).tolist() == [[0, 0, 1, 1]]
    assert sample_indices(1, 8, train=True).tolist() == [0] * 8


def test_sample_indices_dispatches_and_bad_arguments_are_named():
    assert torch.equal(sample_indices(100, 8, train=False, stride=2), dense_indices(100, 8, 2, train=False))
    assert torch.equal(sample_indices(100, 8, train=False), segment_indices(100, 8, train=False))
    with pytest.raises(ValueError, match='video of 0 frames'):
        segment_indices(0, 8, train=True)
    with pytest.raises(ValueError, match='stride'):
        dense_indices(10, 4, 0, train=True)


def _dataset(tmp_path, num_samples, transform):
    from conftest import write_video

    from timm_inti.video import VideoDataset
    path = write_video(tmp_path / 'v.mp4', num_frames=80)
    return VideoDataset([(str(path), 0)], ['a'], transform, num_frames=4, train=True, num_samples=num_samples)


def test_repeated_sampling_gives_k_clips_with_their_own_frames_and_crops(tmp_path):
    from conftest import frame_id
    calls = []

    def transform(frames):  # identity, so the frame indices can be read back; counts its calls (one crop each)
        calls.append(len(frames))
        return frames.permute(3, 0, 1, 2).float() / 255

    dataset = _dataset(tmp_path, 3, transform)
    torch.manual_seed(1)
    clips, label, bad = dataset[0]
    assert clips.shape == (3, 3, 4, 48, 64) and label == 0 and bad == ()
    assert calls == [4, 4, 4], 'each clip is transformed (cropped) on its own'
    ids = [[frame_id(clip[:, t]) for t in range(4)] for clip in clips]
    for clip_ids in ids:  # each clip is a segment sample: one frame from each quarter, in order
        assert [i // 20 for i in clip_ids] == [0, 1, 2, 3], ids
    assert len({tuple(i) for i in ids}) == 3, f'three different clips: {ids}'
    torch.manual_seed(1)
    again, _, _ = dataset[0]
    assert torch.equal(again, clips), 'reproducible under a seed'
    torch.manual_seed(2)
    assert not torch.equal(dataset[0][0], clips)


def test_repeated_sampling_is_for_training_only(tmp_path):
    from timm_inti.video import VideoDataset
    with pytest.raises(ValueError, match='num_samples'):
        VideoDataset([('x.mp4', 0)], ['a'], lambda f: f, num_frames=4, train=False, num_samples=2)
    with pytest.raises(ValueError, match='num_samples'):
        VideoDataset([('x.mp4', 0)], ['a'], lambda f: f, num_frames=4, train=True, num_samples=0)


def test_shared_frames_decode_once_and_differ_in_crop_only(tmp_path):
    from conftest import frame_id
    calls = []

    def transform(frames):
        calls.append(len(frames))
        return frames.permute(3, 0, 1, 2).float() / 255

    dataset = _dataset(tmp_path, 3, transform)
    dataset.shared_frames = True
    clips, _, _ = dataset[0]
    assert clips.shape == (3, 3, 4, 48, 64) and calls == [4, 4, 4]
    ids = [[frame_id(clip[:, t]) for t in range(4)] for clip in clips]
    assert ids[0] == ids[1] == ids[2] and [i // 20 for i in ids[0]] == [0, 1, 2, 3]
