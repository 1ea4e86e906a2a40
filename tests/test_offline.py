"""docs/offline.md, followed with HF_HUB_OFFLINE=1 and an empty Hugging Face cache: predictions and zero-shot labels
from local files only, and the Hub failures name the flag that fixes them.

A tiny open_clip model in open_clip's folder layout (``open_clip_config.json`` and
``open_clip_model.safetensors``, as a Hub repository of CLIP weights holds them) stands in
for the downloaded CLIP weights: its image tower is the InTI model's, its text tower scores
the class names. Everything runs in a fresh process whose cache is an empty folder.
"""
import json
import os
import subprocess
import sys

import pytest
from conftest import write_video

SCRIPT = r'''
import json, sys
from pathlib import Path
import open_clip, timm, torch
from safetensors.torch import save_file
import timm_inti
from timm_inti.hub import save_pretrained
from timm_inti.predict import main as predict
from timm_inti.zero_shot import create_text_tower

tmp = Path(sys.argv[1])
video = sys.argv[2]
tiny = dict(embed_dim=64, depth=4, num_heads=2, patch_size=8, img_size=32)
tiny_args = ['--model-kwargs'] + [f'{k}={v}' for k, v in tiny.items()]

# the "downloaded" CLIP weights: an open_clip folder
clip_dir = tmp / 'clip'
clip_dir.mkdir()
cfg = dict(embed_dim=512, quick_gelu=True,
           vision_cfg=dict(image_size=32, layers=4, width=64, head_width=32, patch_size=8),
           text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=1))
torch.manual_seed(0)
clip = open_clip.CLIP(**cfg)
(clip_dir / 'open_clip_config.json').write_text(json.dumps(dict(model_cfg=cfg)))
save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, clip_dir / 'open_clip_model.safetensors')
weights = str(clip_dir / 'open_clip_model.safetensors')
result = {}

# section 2: the image tower from a local file
model = timm.create_model('inti_vit_b16', pretrained=True, pretrained_cfg_overlay=dict(file=weights), **tiny)
result['image_tower_loaded'] = torch.equal(model.patch_embed.proj.weight, clip.visual.conv1.weight)
# section 3: the text tower from open_clip's folder
text_model, tokenizer = create_text_tower(f'local-dir:{clip_dir}', None)
result['text_tower_loaded'] = torch.equal(text_model.token_embedding.weight, clip.token_embedding.weight)
# without local files: one clear error naming what fixes it
try:
    create_text_tower('ViT-B-16-quickgelu', 'openai')
except OSError as e:
    result['text_tower_error'] = str(e)

# section 4: predict, zero-shot, from the local files
(tmp / 'classes.txt').write_text('walking\nrunning\njumping\n')
result['zero_shot_code'] = predict([video, '--model', 'inti_vit_b16', *tiny_args, '--pretrained-path', weights,
                                    '--zero-shot-labels', str(tmp / 'classes.txt'), '--text-tower',
                                    f'local-dir:{clip_dir}', '-j', '0', '--output', str(tmp / 'zero_shot.jsonl')])
# a fine-tuned model's folder
head = timm.create_model('inti_vit_b16', num_classes=2, **tiny)
save_pretrained(head, tmp / 'finetuned', label_names=['left', 'right'])
result['folder_code'] = predict([video, '--model', f'local-dir:{tmp / "finetuned"}', '-j', '0',
                                 '--output', str(tmp / 'finetuned.jsonl')])
# the Hub names alone, offline with an empty cache: exit 1, one line naming the flags
result['hub_code'] = predict([video, '--model', 'inti_vit_b16', *tiny_args, '-j', '0'])
print(json.dumps(result))
'''


@pytest.mark.slow
def test_the_offline_page_gives_predictions_and_zero_shot_labels_from_local_files(tmp_path):
    video = write_video(tmp_path / 'clip.mp4', num_frames=16, size=(32, 32))
    empty_cache = tmp_path / 'hf_home'
    empty_cache.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HOME=str(empty_cache),
               PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get('PYTHONPATH', '')]))
    for var in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'TORCH_HOME', 'XDG_CACHE_HOME'):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path), str(video)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['image_tower_loaded'] and result['text_tower_loaded']
    assert result['zero_shot_code'] == 0 and result['folder_code'] == 0, proc.stderr[-3000:]
    zero_shot = [json.loads(line) for line in (tmp_path / 'zero_shot.jsonl').read_text().splitlines()]
    assert [r['path'] for r in zero_shot] == [str(video)]
    assert {p['label'] for p in zero_shot[0]['predictions']} == {'walking', 'running', 'jumping'}
    finetuned = [json.loads(line) for line in (tmp_path / 'finetuned.jsonl').read_text().splitlines()]
    assert {p['label'] for p in finetuned[0]['predictions']} == {'left', 'right'}
    # the failures say how to work offline
    assert 'create_text_tower("local-dir:/path/to/folder", None)' in result['text_tower_error']
    assert 'docs/offline.md' in result['text_tower_error']
    assert result['hub_code'] == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ('timm-inti-predict: error: --model inti_vit_b16: its weights are not in the Hugging Face cache '
                    'and the Hub cannot be reached (HF_HUB_OFFLINE=1 or no network): give local weights with '
                    '--pretrained-path FILE, --model local-dir:DIR or --checkpoint FILE (see docs/offline.md)'), last
    assert not list(empty_cache.rglob('blobs/*')), 'nothing came from (or into) a Hub cache'
