"""timm_inti.predict_video: one call from a file to an answer, the same answer as timm-inti-predict."""
import json

import pytest
import timm
import torch
from conftest import TINY_KWARGS

import timm_inti
from timm_inti.hub import save_pretrained
from timm_inti.predict import main as predict
from timm_inti.video import VideoDecodeError

LABELS = ['archery', 'bowling', 'cooking']


@pytest.fixture
def saved_model(tmp_path):
    model = timm.create_model('inti_vit_b16', **TINY_KWARGS, num_classes=3, num_frames=4).eval()
    save_pretrained(model, tmp_path / 'model', label_names=LABELS)
    return f'local-dir:{tmp_path / "model"}'


@pytest.mark.parametrize('clips, crops', [(1, 1), (2, 3)])
def test_predict_video_gives_the_commands_answer(saved_model, make_video, capsys, clips, crops):
    video = make_video('clip.mp4', num_frames=24)
    model = timm.create_model(saved_model, pretrained=True)
    answer = timm_inti.predict_video(model, video, top_k=2, num_clips=clips, num_crops=crops)
    assert predict([str(video), '--model', saved_model, '--json', '--top-k', '2', '--clips', str(clips),
                    '--crops', str(crops)]) == 0
    command = json.loads(capsys.readouterr().out)['predictions']
    assert [label for label, _ in answer] == [p['label'] for p in command]
    assert [p for _, p in answer] == pytest.approx([p['probability'] for p in command], abs=1e-5)
    assert answer[0][1] >= answer[1][1]


def test_predict_video_refuses_what_it_cannot_answer(make_video, tmp_path):
    video = make_video('clip.mp4', num_frames=12)
    embedder = timm.create_model('inti_vit_b16', **TINY_KWARGS, num_frames=4)  # CLIP-style: an embedding, no labels
    with pytest.raises(ValueError, match='no label names.*set_zero_shot_head'):
        timm_inti.predict_video(embedder, video)
    classifier = timm.create_model('inti_vit_b16', **TINY_KWARGS, num_classes=3, num_frames=4)
    with pytest.raises(ValueError, match='2 label names for a model with 3 classes'):
        timm_inti.predict_video(classifier, video, label_names=['a', 'b'])
    broken = tmp_path / 'broken.mp4'
    broken.write_text('not a video')
    with pytest.raises(VideoDecodeError, match='broken.mp4'):
        timm_inti.predict_video(classifier, broken, label_names=LABELS)
    top = timm_inti.predict_video(classifier, video, label_names=LABELS, top_k=10)  # capped at the classes
    assert sorted(label for label, _ in top) == LABELS
    assert sum(p for _, p in top) == pytest.approx(1, abs=1e-5)
    assert torch.is_grad_enabled()  # no_grad inside, the caller's autograd state left alone
