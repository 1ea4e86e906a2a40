""" Export an InTI model to a graph a server runs: ``timm-inti-export OUT.onnx --model NAME``.

    timm-inti-export inti.onnx --model inti_vit_b16                       # ONNX, opset 18
    timm-inti-export inti.pt2 --checkpoint run/model_best.pth.tar         # torch.export (ExportedProgram)
    timm-inti-export k400.onnx --model hf-hub:org/inti-k400 --num-frames 16

The model is built as ``timm-inti-predict`` builds it (``--model``, ``--checkpoint``,
``--pretrained-path``, ``--use-ema``, ``--model-kwargs``, ``--num-frames``), in eval mode and
float32, and traced with ``torch.export``; ``--format onnx`` (the default for a ``.onnx`` name) then converts
it with ``torch.onnx.export(..., dynamo=True)`` at opset 18 (the opset of torch's ONNX
function library: no version conversion; ONNX Runtime >= 1.14, TensorRT 10 and OpenVINO
read it), ``--format pt2`` saves the ``ExportedProgram`` with ``torch.export.save``
(``torch.export.load`` runs it; AOTInductor compiles it).

The input ``video`` is (batch, 3, frames, height, width) float32, normalised; the output
``logits`` is (batch, num_classes) (a CLIP-initialised model without a classifier: its
embedding). The batch axis is dynamic. The frame axis is dynamic where InTI's pairing
allows one graph: an InTI layer merges frames in pairs and passes an odd last frame
through, so a model with L InTI layers runs the same operations for every multiple of
2**L frames (a graph for 8 frames also serves 16 or 32). A ``--num-frames`` that is not such
a multiple (an odd count), or one that leaves a single frame after the last InTI layer
(8 frames for ``_deep``: torch.export fixes an axis of size 1, so a dynamic graph's frames
are 2M, 3M, ... for M = 2**L), or ``--static-frames``, fixes the frame axis at that count,
and the command says so.

Beside the graph, ``OUT.json`` holds what a server needs to feed it: the data config
(``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``, as
``timm_inti.video.create_video_transform`` takes it), the frames (count, dynamic, multiple),
the evaluation views, the class names when known, and the parity check's result.

Unless ``--no-check``, the written graph is run (ONNX Runtime on the CPU, or
``torch.export.load``) on random clips and compared with the eager model; a difference
above ``--atol`` (default 1e-4) is an error and leaves no files. Graph and JSON are written
under temporary names and renamed; an existing output is refused without ``--overwrite``.

ONNX needs ``onnx`` and ``onnxscript`` (and ``onnxruntime`` for the check):
``pip install "timm-inti[export]"``.
"""
import argparse
import importlib
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import timm
import timm.utils
import torch

from .cli import CommandError, UsageError, add_debug_argument, command, positive_float, positive_int
from .predict import add_model_arguments, build_model, check_model_arguments  # the commands' one builder

__all__ = ['main', 'parse_args', 'export_model', 'load_graph', 'frame_multiple', 'preprocess_facts', 'facts_path',
           'dynamic_frames_allowed', 'OPSET', 'FORMATS']

PROG = 'timm-inti-export'
OPSET = 18  # torch's ONNX function library (onnxscript torchlib) is written at 18: no version conversion
FORMATS = {'.onnx': 'onnx', '.pt2': 'pt2'}
INPUT_NAME, OUTPUT_NAME = 'video', 'logits'
# what each format needs beyond torch, as the [export] extra installs it
REQUIREMENTS = {'onnx': ('onnx', 'onnxscript'), 'check-onnx': ('onnxruntime',), 'pt2': (), 'check-pt2': ()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('output', help='the graph to write: NAME.onnx or NAME.pt2 (its facts go to NAME.onnx.json)')
    parser.add_argument('--format', choices=sorted(set(FORMATS.values())), default=None,
                        help='onnx or pt2 (default: from the output name)')
    group = parser.add_argument_group('Model (as timm-inti-predict takes it)')
    add_model_arguments(group)
    group.add_argument('--num-frames', type=positive_int, default=None,
                       help='frames per clip (default: the model\'s); the frame axis is dynamic for multiples of '
                            '2**(InTI layers), fixed otherwise')
    group.add_argument('--labels', default=None, help='class names, one per line, for the facts file '
                                                      '(default: the checkpoint\'s or the model config\'s)')
    group = parser.add_argument_group('Graph')
    group.add_argument('--opset', type=positive_int, default=OPSET,
                       help='ONNX opset (default: %(default)s; another one goes through ONNX\'s version converter)')
    group.add_argument('--static-frames', action='store_true', help='fix the frame axis at --num-frames')
    group.add_argument('--no-check', action='store_true', help='skip running the graph against the eager model')
    group.add_argument('--atol', type=positive_float, default=1e-4,
                       help='largest absolute difference from eager the check accepts (default: %(default)s)')
    group.add_argument('--overwrite', action='store_true', help='replace an existing output and its facts file')
    add_debug_argument(parser)
    return parser


def facts_path(graph: os.PathLike) -> Path:
    """The preprocessing facts beside a graph: ``model.onnx`` -> ``model.onnx.json``."""
    graph = Path(graph)
    return graph.with_name(graph.name + '.json')


def require(what: str) -> None:
    """Import the optional packages ``what`` needs (a key of ``REQUIREMENTS``), or end with one line naming them."""
    missing = []
    for name in REQUIREMENTS[what]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        need = 'the check of an ONNX graph' if what == 'check-onnx' else f'--format {what}'
        hint = ', or skip the check with --no-check' if what.startswith('check') else ''
        raise UsageError(f'{need} needs {" and ".join(missing)}, which {"is" if len(missing) == 1 else "are"} not '
                         f'installed: pip install "timm-inti[export]" (or pip install {" ".join(missing)}){hint}')


def frame_multiple(model: torch.nn.Module) -> int:
    """The frame counts one graph of ``model`` serves are the multiples of this: 2 ** (its InTI layers).

    Every InTI layer halves the frames, and an odd count takes another path (its last frame
    passes through): a clip whose frames stay even through every layer runs the same operations.
    """
    return 2 ** len(getattr(model, 'inti', ()))


def dynamic_frames_allowed(num_frames: int, multiple: int) -> bool:
    """Whether a graph traced at ``num_frames`` can have a dynamic frame axis (see ``frame_multiple``).

    The count must be a multiple of ``multiple`` and leave at least 2 frames after the last
    InTI layer: torch.export specialises an axis of size 1 (PyTorch's size-1 broadcasting and
    layout rules), so a graph's frames after the merges range over 2, 3, ...
    """
    return num_frames % multiple == 0 and num_frames >= 2 * multiple


def _dynamic_shapes(multiple: int, dynamic_frames: bool):
    from torch.export import Dim
    axes = {0: Dim('batch', min=1)}
    if dynamic_frames:  # frames = multiple * k, k >= 2 (see dynamic_frames_allowed)
        axes[2] = multiple * Dim('frames_over_multiple', min=2) if multiple > 1 else Dim('frames', min=2)
    return (axes,)


def export_model(model: torch.nn.Module, path: os.PathLike, fmt: str, num_frames: int, dynamic_frames: bool,
                 opset: int = OPSET) -> None:
    """Trace ``model`` (eval, float32) on clips of ``num_frames`` frames and write the graph to ``path``.

    Writes ``path`` itself (not atomically: callers pass a temporary name). ``dynamic_frames``
    makes the frame axis dynamic over the multiples of ``frame_multiple(model)``, which
    ``num_frames`` must be.
    """
    multiple = frame_multiple(model)
    if dynamic_frames and not dynamic_frames_allowed(num_frames, multiple):
        raise ValueError(f'a dynamic frame axis needs a multiple of {multiple} frames, at least {2 * multiple}; '
                         f'got {num_frames}')
    size = model.patch_embed.img_size
    example = (torch.randn(2, model.in_chans, num_frames, *size),)
    shapes = _dynamic_shapes(multiple, dynamic_frames)
    if fmt == 'pt2':
        program = torch.export.export(model, example, dynamic_shapes=shapes)
        torch.export.save(program, str(path))
    elif fmt == 'onnx':
        program = torch.onnx.export(model, example, dynamo=True, opset_version=opset, dynamic_shapes=shapes,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False)
        program.save(str(path), external_data=False)
    else:
        raise ValueError(f'unknown format {fmt!r}; one of {sorted(set(FORMATS.values()))}')


def load_graph(path: os.PathLike, fmt: Optional[str] = None, providers: Optional[Sequence[str]] = None,
               session_options=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function running an exported graph: clips (B, C, T, H, W) float32 -> (B, num_classes), on the CPU.

    ``onnx``: an ONNX Runtime session (``providers``, default the CPU one); ``pt2``:
    ``torch.export.load(path).module()``. ``fmt`` defaults to the one the name's suffix says.
    """
    path = Path(path)
    if (fmt or FORMATS.get(path.suffix.lower())) == 'pt2':
        module = torch.export.load(str(path)).module()

        def run_pt2(clips: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(clips)
        return run_pt2
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), sess_options=session_options,
                                           providers=list(providers or ['CPUExecutionProvider']))
    name = session.get_inputs()[0].name

    def run_onnx(clips: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: clips.detach().cpu().numpy()})[0])
    return run_onnx


def check_parity(model: torch.nn.Module, run: Callable[[torch.Tensor], torch.Tensor],
                 shapes: Sequence[Tuple[int, int]]) -> float:
    """Largest absolute difference between ``run`` and the eager model over random clips of (batch, frames)."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch, frames in shapes:
        clips = torch.randn(batch, model.in_chans, frames, *model.patch_embed.img_size, generator=generator)
        with torch.inference_mode():
            expected = model(clips)
        got = run(clips)
        if tuple(got.shape) != tuple(expected.shape):
            raise CommandError(f'the exported graph gives {tuple(got.shape)} for {tuple(clips.shape)}, '
                               f'eager {tuple(expected.shape)}')
        worst = max(worst, (got.float() - expected.float()).abs().max().item())
    return worst


def _check_shapes(num_frames: int, multiple: int, dynamic: bool) -> List[Tuple[int, int]]:
    """(batch, frames) of the parity check: the model's frames, and another batch and frame count if dynamic."""
    return [(1, num_frames), (2, num_frames + multiple)] if dynamic else [(1, num_frames), (2, num_frames)]


def preprocess_facts(model: torch.nn.Module, label_names: Optional[Sequence[str]], num_frames: int,
                     dynamic_frames: bool) -> Dict[str, Any]:
    """What a server needs to feed the graph, as JSON-ready data (see the module docstring)."""
    data_config = timm.data.resolve_input_data_config(model)
    multiple = frame_multiple(model)
    frames = 'frames' if dynamic_frames else num_frames
    return dict(
        input=dict(name=INPUT_NAME, dtype='float32', layout='(batch, channels, frames, height, width)',
                   shape=['batch', model.in_chans, frames, *model.patch_embed.img_size]),
        output=dict(name=OUTPUT_NAME, dtype='float32', shape=['batch', model.num_classes]),
        frames=dict(num_frames=num_frames, dynamic=dynamic_frames, multiple_of=multiple if dynamic_frames else None,
                    min_frames=2 * multiple if dynamic_frames else None, inti_layers=len(getattr(model, 'inti', ()))),
        data_config={k: (list(v) if isinstance(v, tuple) else v) for k, v in data_config.items()},
        views=('frames: timm_inti.video segment sampling (VideoPaths, num_clips temporal clips); each frame: resize '
               'the short side to input_size / crop_pct and take the centre crop (num_crops=1), or resize it to '
               'input_size and take three crops along the long side (num_crops=3), as '
               'timm_inti.video.create_video_transform(data_config, is_training=False); uint8 -> [0, 1] -> '
               '(x - mean) / std; a video\'s class probabilities are the softmax of each view\'s logits averaged '
               'over its views (timm_inti.evaluate.average_over_views)'),
        label_names=list(label_names) if label_names else None,
    )


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    if args.format is None:
        args.format = FORMATS.get(Path(args.output).suffix.lower())
        if args.format is None:
            raise UsageError(f'{args.output}: cannot tell the format from the name; end it in .onnx or .pt2, '
                             f'or give --format')
    if args.opset != OPSET and args.format != 'onnx':
        raise UsageError('--opset is for --format onnx')
    check_model_arguments(args)
    return args


def _refuse_existing(paths: Sequence[Path]) -> None:
    for path in paths:
        if path.exists():
            raise UsageError(f'{path} exists; give --overwrite to replace it (or another output name)')


def _say(message: str) -> None:
    print(f'{PROG}: {message}', file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Build, export, check and describe; returns the facts written beside the graph."""
    import timm_inti
    from timm_inti.files import atomic_path, write_json

    output = Path(args.output)
    facts_file = facts_path(output)
    if not args.overwrite:
        _refuse_existing([output, facts_file])
    require(args.format)
    if not args.no_check:
        require(f'check-{args.format}')

    model, label_names = build_model(args)
    if not hasattr(model, 'num_frames') or not hasattr(model, 'inti'):
        raise UsageError(f'{args.checkpoint or args.model} is not an InTI video model (timm.list_models("inti*") '
                         f'lists them; timm_inti.create_video_model makes one of another timm ViT)')
    if args.labels:
        from timm_inti.video.formats import read_label_file
        try:
            label_names = read_label_file(args.labels)
        except (OSError, ValueError) as e:
            raise UsageError(str(e)) from e
    if label_names and len(label_names) != model.num_classes:
        raise UsageError(f'{len(label_names)} label names for a model with {model.num_classes} classes')
    model = model.float().eval()
    num_frames = model.num_frames
    multiple = frame_multiple(model)
    dynamic = not args.static_frames and dynamic_frames_allowed(num_frames, multiple)
    if not args.static_frames and not dynamic:
        suggest = max(2 * multiple, num_frames + multiple - num_frames % multiple)
        why = (f'{num_frames} is not one (an odd count at some layer takes another path)' if num_frames % multiple else
               f'{num_frames} leaves 1 frame after the last layer, a size torch.export fixes')
        _say(f'the frame axis is fixed at {num_frames} frames: the {len(model.inti)} InTI layer(s) of this model '
             f'run one graph for every multiple of {multiple} frames from {2 * multiple} on, and {why}; '
             f'--num-frames {suggest} gives a dynamic frame axis')

    what = f'{args.format}' + (f' (opset {args.opset})' if args.format == 'onnx' else '')
    frames_text = f'frames: multiples of {multiple} from {2 * multiple}' if dynamic else f'{num_frames} frames (fixed)'
    _say(f'exporting {args.checkpoint or args.model} to {what}: dynamic batch, {frames_text} ...')
    output.parent.mkdir(parents=True, exist_ok=True)
    facts = dict(format=args.format, file=output.name, opset=args.opset if args.format == 'onnx' else None,
                 model=args.model if args.checkpoint is None else None, checkpoint=args.checkpoint,
                 torch=torch.__version__, timm=timm.__version__, timm_inti=timm_inti.__version__)
    facts.update(preprocess_facts(model, label_names, num_frames, dynamic))
    with ExitStack() as stack:  # both files appear together, or neither (a failed export or check)
        graph_tmp = stack.enter_context(atomic_path(output))
        facts_tmp = stack.enter_context(atomic_path(facts_file))
        export_model(model, graph_tmp, args.format, num_frames, dynamic, args.opset)
        if not args.no_check:
            shapes = _check_shapes(num_frames, multiple, dynamic)
            worst = check_parity(model, load_graph(graph_tmp, args.format), shapes)
            facts['parity'] = dict(max_abs_diff=worst, atol=args.atol, runtime='onnxruntime CPUExecutionProvider'
                                   if args.format == 'onnx' else 'torch.export.load', batch_frames=shapes)
            if not worst <= args.atol:
                raise CommandError(f'the exported graph differs from the eager model by {worst:.3g} '
                                   f'(more than --atol {args.atol}); nothing written')
            _say(f'checked: max abs difference from eager {worst:.2g} over (batch, frames) {shapes}')
        write_json(facts_tmp, facts)
    _say(f'wrote {output} and {facts_file}')
    return facts


@command(PROG)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    run(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
