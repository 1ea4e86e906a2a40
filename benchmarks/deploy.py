"""InTI's speed-up over naive adaptation in the runtimes models are served in.

naive (the ViT on every frame), InTI and ``_deep`` on one backbone (default ViT-B/16 at
8x224), at batch 1 and 8, in:

  * ``eager fp32``: PyTorch eager, float32 (as ``benchmarks/throughput.py`` on the CPU);
  * ``compile``: ``torch.compile`` (inductor, default mode), float32;
  * ``onnxruntime``: the graph ``timm-inti-export`` writes (ONNX opset 18, dynamic batch, and
    frames where it allows) in ONNX Runtime's CPU provider, float32, intra-op threads = torch's;
  * ``eager bf16``: the model and clip in bfloat16, where the CPU has native bf16
    (``avx512_bf16`` or ``amx_bf16``; elsewhere it would measure emulation, and is left out).

``--device cuda`` runs eager, compile and bf16 on the GPU and ONNX Runtime's CUDA provider
(inputs and outputs bound on the GPU). Not run by the project so far: no GPU here.

Timings use ``benchmarks/throughput.py``'s protocol and code: every round runs every
(runtime, method) once in rotating order; reported are the median time per batch with its
25th-75th percentiles, the speed-up over naive in the same runtime (median of per-round
ratios) and the speed over eager fp32 for the same method. Random weights (speed does not
depend on them); nothing is downloaded.

    python benchmarks/deploy.py --quick   # shrunken models, to check that it works
    python benchmarks/deploy.py           # ViT-B/16, 8x224, batch 1 and 8
"""
import argparse
import copy
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import timm
import torch

if __package__ in (None, ''):  # run as a file (python benchmarks/deploy.py): the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm_inti  # noqa: E402
from benchmarks.throughput import Spec, clip_for, quantiles, time_interleaved, write_results  # noqa: E402
from timm_inti.export import dynamic_frames_allowed, export_model, frame_multiple, load_graph  # noqa: E402
from timm_inti.files import describe_machine  # noqa: E402

COLUMNS = ['device', 'runtime', 'batch', 'frames', 'method', 'median_ms', 'p25_ms', 'p75_ms', 'clips_per_s',
           'speedup', 'speedup_p25', 'speedup_p75', 'vs_eager', 'reps']
QUICK_KWARGS = dict(img_size=64, patch_size=16, embed_dim=64, num_heads=2)  # 12 blocks: _deep's schedule fits


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['inti_vit_b16', 'inti_vit_b16_deep'],
                        help='InTI models on one backbone; naive is the first one with inti_after=()')
    parser.add_argument('--frames', type=int, default=8, help='frames per clip')
    parser.add_argument('--batches', nargs='+', type=int, help='batch sizes (default 1 8; --quick: 1 2)')
    parser.add_argument('--runtimes', nargs='+', default=['eager', 'compile', 'onnxruntime', 'bf16'],
                        choices=['eager', 'compile', 'onnxruntime', 'bf16'], help='runtimes to measure')
    parser.add_argument('--reps', type=int, help='timed rounds (default 5; --quick: 2)')
    parser.add_argument('--warmup', type=int, help='untimed calls per step first (default 1)')
    parser.add_argument('--quick', action='store_true', help='shrunken models, few rounds: to check that it works')
    parser.add_argument('--num-classes', type=int, default=400, help='classifier size (Kinetics-400: 400)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, help='torch and ONNX Runtime intra-op threads (default: torch\'s)')
    parser.add_argument('--no-profile', action='store_true',
                        help='skip the per-operator profile (eager and ONNX Runtime, batch 1) at the end')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results', help='output folder')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device')
    args.batches = args.batches or ([1, 2] if args.quick else [1, 8])
    args.reps = args.reps or (2 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else 1
    if min(args.batches + [args.reps, args.frames]) < 1 or args.warmup < 0:
        parser.error('batch sizes, --reps and --frames must be positive, --warmup not negative')
    return args


def native_bf16(device: str) -> bool:
    """Whether bfloat16 runs natively: a CUDA GPU, or a CPU with avx512_bf16 or AMX."""
    if device == 'cuda':
        return torch.cuda.is_bf16_supported()
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def make_specs(args) -> List[Spec]:
    kwargs = dict(QUICK_KWARGS if args.quick else {}, num_frames=args.frames, num_classes=args.num_classes)
    naive = Spec('naive', args.models[0], tuple(sorted(dict(kwargs, inti_after=()).items())))
    return [naive] + [Spec(name, name, tuple(sorted(kwargs.items()))) for name in args.models]


def onnx_runner(model: torch.nn.Module, folder: Path, name: str, args) -> Callable[[torch.Tensor], None]:
    """Export ``model`` as timm-inti-export does (dynamic batch and frames) and run it in ONNX Runtime."""
    import onnxruntime
    path = folder / f'{name}.onnx'
    dynamic = dynamic_frames_allowed(args.frames, frame_multiple(model))  # as timm-inti-export decides
    export_model(model, path, 'onnx', args.frames, dynamic)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    if args.device == 'cpu':
        run = load_graph(path, session_options=options)
        return lambda x: run(x)
    session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                           providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])
    if session.get_providers()[0] != 'CUDAExecutionProvider':
        raise SystemExit('onnxruntime has no CUDA provider here: pip install onnxruntime-gpu')
    binding = session.io_binding()

    def run_cuda(x: torch.Tensor) -> None:  # input and output stay on the GPU, as eager's do
        binding.bind_input(session.get_inputs()[0].name, 'cuda', 0, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(session.get_outputs()[0].name, 'cuda')
        session.run_with_iobinding(binding)
    return run_cuda


def build_steps(specs: List[Spec], args, folder: Path) -> Dict[str, Dict[str, Callable]]:
    """runtime -> method -> a function of the clip (B, C, T, H, W) float32 on the device."""
    models = {s.name: s.build().eval() for s in specs}
    runtimes = {}
    for runtime in args.runtimes:
        steps = {}
        for spec in specs:
            model = models[spec.name]
            if runtime == 'eager':
                steps[spec.name] = model.to(args.device)
            elif runtime == 'compile':
                steps[spec.name] = torch.compile(copy.deepcopy(model).to(args.device))
            elif runtime == 'bf16':
                bf16 = copy.deepcopy(model).to(args.device, torch.bfloat16)
                steps[spec.name] = lambda x, m=bf16: m(x.to(torch.bfloat16))
            else:
                print(f'exporting {spec.name} to ONNX ...', file=sys.stderr, flush=True)
                steps[spec.name] = onnx_runner(copy.deepcopy(model).cpu(), folder, spec.name.replace(' ', '_'), args)
        runtimes[runtime] = steps
    return runtimes


def _call(fn: Callable, x: torch.Tensor) -> Callable[[], None]:
    def step():
        with torch.inference_mode():
            fn(x)
    return step


def run_timings(specs: List[Spec], args, folder: Path) -> List[dict]:
    runtimes = build_steps(specs, args, folder)
    reference = specs[0].build()
    rows = []
    for batch in args.batches:
        torch.manual_seed(0)
        x = clip_for(reference, batch, args.frames, args.device)
        steps = {f'{runtime} / {spec.name}': _call(fns[spec.name], x) for runtime, fns in runtimes.items()
                 for spec in specs}
        times = time_interleaved(steps, args.reps, args.warmup, args.device, f'batch {batch}')
        times = {tuple(name.split(' / ', 1)): t for name, t in times.items()}
        for runtime in runtimes:
            naive = times[(runtime, specs[0].name)]
            for spec in specs:
                t = times[(runtime, spec.name)]
                median, p25, p75 = quantiles(t)
                speedup = quantiles([n / m for n, m in zip(naive, t)])
                eager = times.get(('eager', spec.name))
                vs_eager = quantiles([e / m for e, m in zip(eager, t)])[0] if eager else None
                rows.append(dict(device=args.device, runtime=runtime, batch=batch, frames=args.frames,
                                 method=spec.name, median_ms=1e3 * median, p25_ms=1e3 * p25, p75_ms=1e3 * p75,
                                 clips_per_s=batch / median, speedup=speedup[0], speedup_p25=speedup[1],
                                 speedup_p75=speedup[2], vs_eager=vs_eager, reps=args.reps))
    return rows


def ort_op_times(model: torch.nn.Module, x: torch.Tensor, folder: Path, name: str, args) -> Dict[str, float]:
    """ONNX Runtime's own profile of one call: milliseconds per operator type (kernel time)."""
    import json

    import onnxruntime
    path = folder / f'{name}.onnx'
    if not path.exists():
        export_model(model, path, 'onnx', args.frames, dynamic_frames_allowed(args.frames, frame_multiple(model)))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / f'{name}_profile')
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=['CPUExecutionProvider'])
    for _ in range(2):  # the first run's one-off allocations are not counted
        session.run(None, {session.get_inputs()[0].name: x.numpy()})
    trace = session.end_profiling()
    totals: Dict[str, float] = {}
    with open(trace) as f:
        events = [e for e in json.load(f) if e.get('cat') == 'Node' and e.get('name', '').endswith('_kernel_time')]
    for e in events[len(events) // 2:]:  # the second run
        op = e.get('args', {}).get('op_name', '?')
        totals[op] = totals.get(op, 0.0) + e['dur'] / 1e3
    return totals


def eager_op_times(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, float]:
    """torch.profiler's self CPU time of one eager call: milliseconds per aten operator."""
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    return {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages() if e.self_cpu_time_total > 0}


def profile_tables(specs: List[Spec], args, folder: Path) -> List[str]:
    """Per-operator time of naive and the first InTI model, eager and ONNX Runtime, batch 1: where the time goes."""
    naive, inti = specs[0].build().eval(), specs[1].build().eval()
    torch.manual_seed(0)
    x = clip_for(naive, 1, args.frames, 'cpu')
    lines = [f'**Per-operator profile, batch 1** (one call each, after one untimed call; {specs[1].name} vs naive)', '']
    for runtime, measure in (('eager fp32 (torch.profiler, self CPU time)', lambda m, n: eager_op_times(m, x)),
                             ('onnxruntime (its profiler, kernel time)',
                              lambda m, n: ort_op_times(m, x, folder, n, args))):
        a, b = measure(naive, specs[0].name), measure(inti, specs[1].name)  # ONNX: the timed runs' graphs
        total_a, total_b = sum(a.values()), sum(b.values())
        lines += [f'{runtime}: total {total_a:.0f} ms naive, {total_b:.0f} ms {specs[1].name} '
                  f'({total_a / total_b:.2f}x)', '',
                  '| operator | naive ms | InTI ms | naive / InTI | share of InTI time |', '|---|---|---|---|---|']
        for op in sorted(set(a) | set(b), key=lambda k: -max(a.get(k, 0), b.get(k, 0)))[:12]:
            ratio = f'{a.get(op, 0) / b[op]:.2f}x' if b.get(op) else '-'
            lines.append(f'| {op} | {a.get(op, 0):.1f} | {b.get(op, 0):.1f} | {ratio} | '
                         f'{100 * b.get(op, 0) / total_b:.1f}% |')
        lines.append('')
    return lines


def summary(rows: List[dict], specs: List[Spec]) -> List[str]:
    """Per runtime and batch: every InTI model's speed-up, and whether it is within 10% of eager's."""
    batches = list(dict.fromkeys(r['batch'] for r in rows))
    lines = ['| runtime | ' + ' | '.join(f'{s.name}, batch {b}' for b in batches for s in specs[1:]) + ' |',
             '|---' * (1 + len(specs[1:]) * len(batches)) + '|']
    eager = {(r['batch'], r['method']): r['speedup'] for r in rows if r['runtime'] == 'eager'}
    for runtime in dict.fromkeys(r['runtime'] for r in rows):
        cells = []
        for batch in batches:
            for spec in specs[1:]:
                r = next(r for r in rows if (r['runtime'], r['batch'], r['method']) == (runtime, batch, spec.name))
                cell = f"{r['speedup']:.2f}x"
                if runtime != 'eager' and (batch, spec.name) in eager:
                    ratio = r['speedup'] / eager[(batch, spec.name)]
                    cell += f" ({ratio:.2f} of eager's: {'within' if abs(ratio - 1) <= 0.10 else 'NOT within'} 10%)"
                cells.append(cell)
        lines.append(f'| {runtime} | ' + ' | '.join(cells) + ' |')
    return lines


def markdown(rows: List[dict], specs: List[Spec], header: str) -> str:
    lines = [header, '', '**InTI / naive speed-up per runtime** (median of per-round ratios)', '']
    lines += summary(rows, specs) + ['']
    for batch in dict.fromkeys(r['batch'] for r in rows):
        lines += [f"**batch {batch}, {rows[0]['frames']} frames**", '',
                  '| runtime | method | ms/batch (median [p25, p75]) | clips/s | speed-up vs naive [p25, p75] '
                  '| speed vs eager fp32 |', '|---|---|---|---|---|---|']
        for r in (r for r in rows if r['batch'] == batch):
            vs = '-' if r['vs_eager'] is None else f"{r['vs_eager']:.2f}x"
            lines.append(f"| {r['runtime']} | {r['method']} | {r['median_ms']:.1f} [{r['p25_ms']:.1f}, "
                         f"{r['p75_ms']:.1f}] | {r['clips_per_s']:.2f} | {r['speedup']:.2f}x "
                         f"[{r['speedup_p25']:.2f}, {r['speedup_p75']:.2f}] | {vs} |")
        lines.append('')
    return '\n'.join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    timm.layers.set_fused_attn(True)
    notes = []
    if 'bf16' in args.runtimes and not native_bf16(args.device):
        args.runtimes = [r for r in args.runtimes if r != 'bf16']
        notes.append('eager bf16 left out: this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16 flag), '
                     'so it would measure emulation')
    if 'onnxruntime' in args.runtimes:
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise SystemExit(f'deploy.py: the onnxruntime runtime needs {e.name}: pip install "timm-inti[export]"')
    load_before = os.getloadavg()
    started = time.perf_counter()
    specs = make_specs(args)
    with tempfile.TemporaryDirectory(prefix='timm_inti_deploy_') as folder:
        rows = run_timings(specs, args, Path(folder))
        profile = [] if args.no_profile or 'onnxruntime' not in args.runtimes or args.device != 'cpu' else \
            profile_tables(specs, args, Path(folder))
    load_after = os.getloadavg()
    ort = ''
    if 'onnxruntime' in args.runtimes:
        import onnxruntime
        ort = f', onnxruntime {onnxruntime.__version__}'
    header = '\n'.join([
        f"Machine: {describe_machine(args.device)}; torch {torch.__version__}{ort}, timm {timm.__version__}, "
        f"timm-inti {timm_inti.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; {args.reps} interleaved rounds "
        f"after {args.warmup} warm-up call(s) per step (every runtime and method in one rotation); "
        f"{time.perf_counter() - started:.0f} s in all.",
        f"Command: `python benchmarks/deploy.py {shlex.join(argv)}`",
        'speed-up = median over rounds of naive time / method time in the same runtime; speed vs eager fp32 = '
        'the same method\'s eager time / its time here.',
    ] + [f'Note: {n}.' for n in notes])
    default_batches = args.batches == ([1, 2] if args.quick else [1, 8])
    stem = f"deploy_{args.device}{'_quick' if args.quick else ''}" + (
        '' if default_batches else '_b' + '_'.join(map(str, args.batches)))  # a partial run keeps its own file
    write_results(args.out, stem, rows, COLUMNS,
                  markdown(rows, specs, header) + ('\n' + '\n'.join(profile) if profile else ''), started)
    return 0


if __name__ == '__main__':
    sys.exit(main())
