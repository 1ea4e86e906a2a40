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

from timm_inti.backbones import BACKBONES
from timm_inti.hub import model_card

# timm_inti.hub.model_card describes a CLIP initialisation (CLIP image tower, CLIP's projection as the
# head): cards for the CLIP backbones of the table; the other families need a backbone-neutral card
CARD_MODELS = [alias for b in BACKBONES.values() if b.description.startswith('CLIP ')
               for _, alias, _ in b.model_names()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'cards')
    parser.add_argument('--models', nargs='+', default=CARD_MODELS)
    args = parser.parse_args(argv)
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
