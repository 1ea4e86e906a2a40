"""Convert an image checkpoint (CLIP, PE-Core, EVA02-CLIP, ...) into an InTI video checkpoint in the Hub layout.

    python weights/convert.py ViT-B-16.pt --model inti_vit_b16 --out inti_vit_b16.openai
    python weights/convert.py open_clip_pytorch_model.bin --model inti_vit_l14.laion2b --out out/
    python weights/convert.py model.safetensors --model inti_vit_b16_deep --num-frames 16 --out out/
    python weights/convert.py open_clip_model.safetensors --model inti_vit_b16_pe --out out/

The source may be OpenAI's release (a TorchScript archive) or any state dict with OpenAI / open_clip
key names (``visual.conv1.weight``, ..., also under ``state_dict`` with ``module.`` prefixes), or a
timm CLIP tower; for the Eva towers (PE-Core, DINOv3, EVA02-CLIP) what timm's Eva filter reads:
timm's layout, open_clip's (``visual.trunk.``), Meta's PE and DINOv3 releases. The pretrained tag in
``--model`` picks the activation (``.openai``: QuickGELU). The result loads with
``timm.create_model("local-dir:OUT", pretrained=True)``. ``--verify`` (the default) checks that a
one-frame clip through the video model gives what timm's image tower gives on the same weights.
"""
import argparse
import sys

import timm
import torch

from timm_inti import MODEL_ALIASES
from timm_inti.checkpoints import create_model
from timm_inti.cli import CommandError, UsageError, add_debug_argument, command, positive_int
from timm_inti.hub import check_save_folder, read_checkpoint, save_pretrained
from timm_inti.vit import VideoVisionTransformer


def image_tower(model, state_dict):
    """timm's own image tower for the video model's backbone, loaded with the same weights."""
    name = model.pretrained_cfg['hf_hub_id'].split('/')[-1]  # e.g. vit_base_patch16_clip_224.openai: CLIP's head
    # a ViT's activation follows the tag (OpenAI's QuickGELU); Eva towers have theirs in the architecture
    act = dict(act_layer=type(model.blocks[0].mlp.act)) if isinstance(model, VideoVisionTransformer) else {}
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=state_dict), num_classes=model.num_classes,
        img_size=model.patch_embed.img_size, **act).eval()


@command('convert.py')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='convert.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help='image checkpoint (OpenAI, open_clip or timm format)')
    parser.add_argument('--model', required=True,
                        help='registered InTI model, optionally with a tag: inti_vit_b16.laion2b')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-frames', type=positive_int, default=None)
    parser.add_argument('--allow-pickle', action='store_true', help='read arbitrary pickles (trusted files only)')
    parser.add_argument('--no-verify', dest='verify', action='store_false')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a README.md / config.json in --out that an earlier save did not write')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    arch = args.model.split('.')[0]
    if timm.is_model(arch) and arch not in timm.list_models('inti_*'):  # unknown names: create_model says so
        raise UsageError(f'--model {args.model} is not an InTI video model (convert.py makes one from CLIP image '
                         f'weights); the models: {", ".join(MODEL_ALIASES)}')

    check_save_folder(args.out, args.overwrite)  # before any work
    state_dict = read_checkpoint(args.source, allow_pickle=args.allow_pickle)
    kwargs = {} if args.num_frames is None else dict(num_frames=args.num_frames)
    model = create_model(
        args.model, pretrained=True, pretrained_cfg_overlay=dict(state_dict=state_dict, file=args.source),
        **kwargs).eval()
    if args.verify:
        x = torch.randn(2, 3, 1, *model.patch_embed.img_size)
        with torch.no_grad():
            diff = (model(x) - image_tower(model, state_dict)(x[:, :, 0])).abs().max().item()
        print(f'one-frame clip vs timm image tower: max |difference| {diff:.2e}', file=sys.stderr)
        if diff > 1e-4:
            raise CommandError(f'the converted model does not reproduce the image tower of {args.source} '
                               f'(max |difference| {diff:.2e})')
    save_pretrained(model, args.out, overwrite=args.overwrite)
    print(f'wrote {args.out}: {args.model}, InTI after {model.inti_after}, {model.num_frames} frames')
    return 0


if __name__ == '__main__':
    sys.exit(main())
