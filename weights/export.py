"""Export a timm-inti-train checkpoint to the Hub layout, with its label names.

    python weights/export.py output/train/run/model_best.pth.tar --out inti-k400 --finetuned-on "Kinetics-400"
    python weights/export.py output/train/run/last.pth.tar --use-ema --out inti-k400-ema

The checkpoint carries the architecture (``arch``, ``model_args``) and ``label_names``;
``--labels FILE`` (one name per line) overrides the names. The folder loads with
``timm.create_model("local-dir:OUT", pretrained=True)``; publish it with weights/publish.py.
"""
import argparse
import sys

from timm_inti import CheckpointError
from timm_inti.checkpoints import (
    create_model_from_checkpoint,
    is_training_checkpoint,
    read_checkpoint_metadata,
)
from timm_inti.cli import UsageError, add_debug_argument, command
from timm_inti.hub import check_save_folder, save_pretrained
from timm_inti.video.formats import read_label_file


@command('export.py')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='export.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='a checkpoint written by timm-inti-train')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--use-ema', action='store_true', help='export the EMA weights')
    parser.add_argument('--labels', default=None, help='class names, one per line (default: the checkpoint\'s)')
    parser.add_argument('--finetuned-on', default='a video classification dataset',
                        help='the data the weights were fine-tuned on, for the model card')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a README.md / config.json in --out that an earlier save did not write')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    check_save_folder(args.out, args.overwrite)  # before any work
    checkpoint = read_checkpoint_metadata(args.checkpoint)
    if not is_training_checkpoint(checkpoint):
        raise CheckpointError(f'{args.checkpoint}: not a timm-inti-train checkpoint (no arch / state_dict); '
                              f'weights/convert.py converts plain weights')
    labels = read_label_file(args.labels) if args.labels else None
    model, label_names = create_model_from_checkpoint(args.checkpoint, use_ema=args.use_ema)
    if labels and len(labels) != model.num_classes:
        raise UsageError(f'--labels {args.labels} holds {len(labels)} names for a model with '
                         f'{model.num_classes} classes')
    save_pretrained(model.eval(), args.out, label_names=labels or label_names, finetuned_on=args.finetuned_on,
                    overwrite=args.overwrite)
    print(f"wrote {args.out}: {checkpoint['arch']}, {model.num_classes} classes, epoch {checkpoint.get('epoch')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
