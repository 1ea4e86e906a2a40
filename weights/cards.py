"""Write the model cards of the registered models (initialisations from their image towers) to weights/cards/.

    python weights/cards.py [--models inti_vit_b16_pe inti_vit_s16_dinov3 ...]

One card per model and pretrained tag, as README.md of a Hub repository would hold it for the
model ``timm.create_model("<name>.<tag>", pretrained=True)`` builds: architecture, InTI schedule,
GFLOPs at the model's input size (the closed-form model, which equals fvcore's count), the image
weights the tag loads, their licence, and the citations of InTI and of the tower's family (CLIP,
SigLIP, DINOv2, AugReg, Perception Encoder, DINOv3, EVA02-CLIP).
"""
import argparse
import sys
from pathlib import Path

import timm
import torch

import timm_inti
from timm_inti.backbones import BACKBONES
from timm_inti.cli import UsageError, add_debug_argument, command
from timm_inti.hub import model_card

# every registered model of the table; each card words its tower, licence and citation by the family
CARD_MODELS = [alias for b in BACKBONES.values() for _, alias, _ in b.model_names()]


@command('cards.py')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='cards.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'cards')
    parser.add_argument('--models', nargs='+', default=CARD_MODELS)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    unknown = [name for name in args.models
               if name not in timm_inti.MODEL_ALIASES or not timm.list_pretrained(f'{name}.*')]
    if unknown:
        raise UsageError(f'no pretrained tags for {", ".join(unknown)}; '
                         f'the models: {", ".join(timm_inti.MODEL_ALIASES)}')
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        for tagged in timm.list_pretrained(f'{name}.*'):
            with torch.device('meta'):  # the card needs shapes, not weights
                model = timm.create_model(tagged)
            path = args.out / f'{tagged}.md'
            # the card of what pretrained=True builds: the tag's image weights, from the Hub
            path.write_text(model_card(model, load_as=tagged, origin=model.pretrained_cfg['hf_hub_id']))
            print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
