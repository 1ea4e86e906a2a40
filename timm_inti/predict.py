""" Say what is in video files: ``timm-inti-predict VIDEO... --model NAME``.

    timm-inti-predict clip.mp4 --model hf-hub:org/inti-k400                  # a fine-tuned model with labels
    timm-inti-predict clip.mp4 --model inti_vit_b16 --zero-shot-labels classes.txt
    timm-inti-predict *.mp4 --checkpoint output/train/run/model_best.pth.tar --json
    timm-inti-predict clip.mp4 --model inti_vit_b16 --clips 4 --crops 3       # 12 views, averaged

Labels come from ``--labels FILE`` (one per line), else the checkpoint or the model's config.
A CLIP-initialised model outputs CLIP embeddings, not classes: give it class names with
``--zero-shot-labels FILE`` and it scores them with the matching CLIP text tower.
Each file's probabilities are averaged over its views (temporal clips x spatial crops).
A file that cannot be read gets one line on stderr; the others are still predicted, and
the exit status is 1.
"""
import argparse
import json
import logging
import os
import sys
from typing import List, Optional, Sequence

import timm
import torch
from einops import rearrange

__all__ = ['main']

_logger = logging.getLogger('timm_inti.predict')


class PredictError(Exception):
    """A problem with the command's setup (model, checkpoint, labels): one line, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='timm-inti-predict', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('videos', nargs='+', help='video files')
    parser.add_argument('--model', default='inti_vit_b16',
                        help='timm model name, hf-hub:org/name or local-dir:PATH (default: %(default)s)')
    parser.add_argument('--checkpoint', default=None,
                        help='a training checkpoint (timm-inti-train) or a weights file (.safetensors, .pth)')
    parser.add_argument('--use-ema', action='store_true', help='the EMA weights of a training checkpoint')
    parser.add_argument('--labels', default=None, help='class names, one per line, in class-index order')
    parser.add_argument('--zero-shot-labels', default=None, help='class names, one per line, for zero-shot scoring')
    parser.add_argument('--text-tower', default=None, metavar='MODEL:PRETRAINED',
                        help='open_clip text tower for zero-shot (default: the one matching the model\'s tag); '
                             'PRETRAINED may be a local checkpoint')
    parser.add_argument('--top-k', type=int, default=5)
    parser.add_argument('--json', action='store_true', help='print JSON instead of text')
    parser.add_argument('--num-frames', type=int, default=None, help='frames per clip (default: the model\'s)')
    parser.add_argument('--clips', type=int, default=1, help='temporal clips per video')
    parser.add_argument('--crops', type=int, default=1, choices=(1, 3), help='spatial crops per clip')
    parser.add_argument('--stride', type=int, default=None, help='dense sampling stride (default: segment sampling)')
    parser.add_argument('--backend', default=None, choices=('pyav', 'torchcodec'), help='video decoder')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser


def _read_lines(path: str, what: str) -> List[str]:
    from timm_inti.checkpoints import read_label_file
    try:
        return read_label_file(path, what)
    except (OSError, ValueError) as e:
        raise PredictError(str(e)) from e


def build_model(args):
    """The model, its label names (or None), from --model / --checkpoint."""
    from timm_inti.checkpoints import create_model, create_model_from_checkpoint
    kwargs = dict(getattr(args, 'model_kwargs', None) or {})
    kwargs.update({} if args.num_frames is None else dict(num_frames=args.num_frames))
    if args.checkpoint is None:
        model = create_model(args.model, pretrained=True, **kwargs)
        return model, model.pretrained_cfg.get('label_names')
    return create_model_from_checkpoint(args.checkpoint, args.model, use_ema=args.use_ema, **kwargs)


def predict_file(model, path: str, transform, num_frames: int, args) -> torch.Tensor:
    """Class probabilities of one video, averaged over its views."""
    from timm_inti.video import read_frames, sample_indices
    frames, _ = read_frames(
        path, lambda info: sample_indices(info.num_frames, num_frames, False, args.clips, args.stride).flatten(),
        backend=args.backend)
    views = [transform(clip) for clip in frames.split(num_frames)]
    views = torch.cat([v if v.ndim == 5 else v[None] for v in views]).to(args.device)  # (V, C, T, H, W)
    with torch.no_grad():
        return model(views).float().softmax(dim=-1).mean(dim=0)


def run(args) -> int:
    from timm_inti.video import VideoDecodeError, create_video_transform
    model, label_names = build_model(args)
    if args.zero_shot_labels:
        from timm_inti.zero_shot import create_text_tower, set_zero_shot_head, text_tower_for
        label_names = _read_lines(args.zero_shot_labels, 'zero-shot labels')
        if args.text_tower:
            name, _, pretrained = args.text_tower.partition(':')
        else:
            name, pretrained = text_tower_for(model)
        clip_model, tokenizer = create_text_tower(name, pretrained or None)
        set_zero_shot_head(model, label_names, clip_model, tokenizer)
    if args.labels:
        label_names = _read_lines(args.labels, 'labels')
    if not label_names:
        raise PredictError(
            f'{args.model} has no class names: give --labels FILE, or --zero-shot-labels FILE for a CLIP model '
            f'(whose {model.num_classes}-d output is an embedding)')
    if len(label_names) != model.num_classes:
        raise PredictError(f'{len(label_names)} label names for a model with {model.num_classes} classes')

    model.to(args.device).eval()
    num_frames = args.num_frames or model.num_frames
    transform = create_video_transform(timm.data.resolve_input_data_config(model), is_training=False, num_crops=args.crops)
    results, failed = [], 0
    for path in args.videos:
        try:
            probs = predict_file(model, path, transform, num_frames, args)
        except VideoDecodeError as e:
            print(f'timm-inti-predict: error: {e}', file=sys.stderr)
            results.append(dict(file=path, error=e.reason))
            failed += 1
            continue
        top = probs.topk(min(args.top_k, len(label_names)))
        predictions = [dict(label=label_names[i], probability=round(p, 6)) for p, i in zip(top.values.tolist(), top.indices.tolist())]
        results.append(dict(file=path, predictions=predictions))
        if not args.json:
            print(path)
            for p in predictions:
                print(f"  {p['probability']:.3f}  {p['label']}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    from timm_inti import CheckpointError
    try:
        return run(args)
    except (PredictError, CheckpointError, FileNotFoundError, RuntimeError, ValueError, ImportError) as e:
        print(f'timm-inti-predict: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
