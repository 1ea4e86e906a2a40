"""Export a timm-inti-train checkpoint to the Hub layout, with its label names.

    python weights/export.py output/train/run/model_best.pth.tar --out inti-k400 --finetuned-on "Kinetics-400"
    python weights/export.py output/train/run/last.pth.tar --use-ema --out inti-k400-ema

The checkpoint carries the architecture (``arch``, ``model_args``) and ``label_names``;
``--labels FILE`` (one name per line) overrides the names. The folder loads with
``timm.create_model("local-dir:OUT", pretrained=True)``; publish it with weights/publish.py.
"""
import argparse
import sys

import timm

import timm_inti
from timm_inti.hub import read_checkpoint, save_pretrained


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='a checkpoint written by timm-inti-train')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--use-ema', action='store_true', help='export the EMA weights')
    parser.add_argument('--labels', default=None, help='class names, one per line (default: the checkpoint\'s)')
    parser.add_argument('--finetuned-on', default='a video classification dataset',
                        help='the data the weights were fine-tuned on, for the model card')
    args = parser.parse_args(argv)
    try:
        checkpoint = read_checkpoint(args.checkpoint)
        if not isinstance(checkpoint, dict) or 'arch' not in checkpoint or 'state_dict' not in checkpoint:
            raise timm_inti.CheckpointError(f'{args.checkpoint}: not a timm-inti-train checkpoint (no arch / state_dict)')
        key = 'state_dict_ema' if args.use_ema else 'state_dict'
        if checkpoint.get(key) is None:
            raise timm_inti.CheckpointError(f'{args.checkpoint}: no {key} in the checkpoint')
        model = timm.create_model(checkpoint['arch'], **checkpoint.get('model_args', {}))
        model.load_state_dict(timm.models.clean_state_dict(checkpoint[key]))
        labels = checkpoint.get('label_names')
        if args.labels:
            with open(args.labels) as f:
                labels = [line.strip() for line in f if line.strip()]
        save_pretrained(model.eval(), args.out, label_names=labels, finetuned_on=args.finetuned_on)
    except (timm_inti.CheckpointError, ValueError, OSError) as e:
        print(f'export: error: {e}', file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {checkpoint['arch']}, {model.num_classes} classes, epoch {checkpoint.get('epoch')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
