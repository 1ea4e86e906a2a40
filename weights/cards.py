"""Write the model cards of the registered CLIP variants (CLIP initialisations) to weights/cards/.

    python weights/cards.py

One card per model and pretrained tag, as README.md of a Hub repository would hold it:
architecture, InTI schedule, GFLOPs (the closed-form model, which matches fvcore), the
weights' origin and licence, and the citation.
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

# timm_inti.hub.model_card describes a CLIP initialisation (CLIP image tower, CLIP's projection as the
# head): cards for the CLIP backbones of the table; the other families need a backbone-neutral card
CARD_MODELS = [alias for b in BACKBONES.values() if b.description.startswith('CLIP ')
               for _, alias, _ in b.model_names()]


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
            path.write_text(model_card(model, load_as=tagged))
            print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
