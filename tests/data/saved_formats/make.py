"""Write the saved-format fixtures of tests/test_video_cfg.py: tiny models as the code of the day saves them.

Each model (``registered``: ``inti_vit_b16`` shrunk; ``generic``: timm's ``vit_tiny_patch16_224`` made a
video model) is written twice, as ``timm_inti.save_pretrained`` writes a folder (``<name>/``) and as
``timm-inti-train``'s saver writes a training checkpoint (``<name>.pth.tar``), every video option set
away from its default. ``expected.safetensors`` holds a fixed input clip and each model's output on it.

The committed files were written by the code of main at 768fe58, before the video options became one
dataclass (timm_inti.video_cfg), with::

    cd /work/main && PYTHONPATH=$PWD .venv/bin/python /path/to/tests/data/saved_formats/make.py

Rerun it (from any checkout, PYTHONPATH naming that checkout) only to record a new format on purpose.
"""
import shutil
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from timm_inti import create_video_model, save_pretrained
from timm_inti.checkpoints import CheckpointSaver, VideoClassificationTask

HERE = Path(__file__).resolve().parent

# the eight video options, none at its default
VIDEO = dict(num_frames=4, inti_after=(1,), inti_hidden_dim=8, inti_kernel_sizes=(1, 3), inti_global_context=False,
             inti_weighting='sigmoid', adapter_dim=4, adapter_kernel_size=(3, 1, 3))
TINY = dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=1., num_classes=3)
MODELS = {'registered': 'inti_vit_b16', 'generic': 'vit_tiny_patch16_224'}
LABELS = ['a', 'b', 'c']


def main() -> None:
    torch.manual_seed(0)
    clip = torch.randn(1, 3, VIDEO['num_frames'], TINY['img_size'], TINY['img_size'])
    expected = {'clip': clip}
    for name, arch in MODELS.items():
        model_args = dict(TINY, **VIDEO)
        model = create_video_model(arch, **model_args)
        with torch.no_grad():  # the zero-initialised parts too, so every parameter shows in the output
            for p in model.parameters():
                p.normal_(std=0.2)
        model.eval()
        with torch.no_grad():
            expected[name] = model(clip)

        folder = HERE / name
        shutil.rmtree(folder, ignore_errors=True)
        save_pretrained(model, folder, label_names=LABELS)
        (folder / 'README.md').unlink()  # the card is not part of the format under test

        run = HERE / f'{name}-run'
        run.mkdir(exist_ok=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # no state: a small file
        task = VideoClassificationTask(model, arch=arch, model_args=model_args, label_names=LABELS,
                                       run_args=dict(model=arch, epochs=1))
        saver = CheckpointSaver(model=model, optimizer=optimizer, checkpoint_dir=str(run), recovery_dir=str(run),
                                task=task)
        saver.save_checkpoint(0, metric=0.)
        shutil.move(run / 'last.pth.tar', HERE / f'{name}.pth.tar')
        shutil.rmtree(run)
    save_file({k: v.contiguous() for k, v in expected.items()}, HERE / 'expected.safetensors')
    print(f'timm {timm.__version__}, torch {torch.__version__}: wrote', ', '.join(sorted(
        p.name for p in HERE.iterdir() if p.name != Path(__file__).name)))


if __name__ == '__main__':
    main()
