"""Measured speed and memory of InTI against naive adaptation, frame subsampling and ToMe.

For one clip length and every method below, inference (clips/s, latency) and a training
step (forward + backward), each with its peak memory:

  * ``naive``: the ViT on every frame (the InTI model's backbone with ``inti_after=()``);
  * the InTI schedules (``--models``, all on that backbone);
  * ``subsample 1/k``: the naive model on every k-th frame;
  * ``tome r=R``: the naive model with ToMe-style token merging inside every frame, the merge
    rate R chosen so its fvcore GFLOPs come closest to the first InTI model's. Only for timm's
    ``VisionTransformer`` towers: an ``Eva`` tower (PE-Core, DINOv3, EVA02) rotates every token
    by its grid position, which a merged token no longer has, so its table leaves ToMe out and
    says so.

Timings are interleaved: every round runs every method once, in rotating order, so load
from elsewhere on the machine hits all methods alike. Reported: median time per batch with
its 25th-75th percentiles, and the speed-up over naive as the median of per-round ratios.
Memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident set size of a
fresh process per measurement, with glibc told to return freed buffers at once
(``MALLOC_MMAP_THRESHOLD_``) so that RSS follows live tensors. "step" memory is the peak
minus what was resident before the step (weights, input): activations and gradients.

On CUDA (picked automatically when present) models run under bf16 autocast with fused
attention (``F.scaled_dot_product_attention``); on CPU in float32, fused attention too.
Models have random weights: speed and memory do not depend on them. No network needed.

    python benchmarks/throughput.py --quick    # check that it works: few reps, small batches
    python benchmarks/throughput.py            # the full run, for a quiet machine
"""
import argparse
import gc
import os
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer
from timm.utils import ParseKwargs

import timm_inti
from timm_inti.baselines import apply_tome, subsample_frames, tome_r_for_flops
from timm_inti.files import describe_machine, write_csv, write_text
from timm_inti.flops import count_flops, formula_flops

COLUMNS = [
    'device', 'phase', 'frames', 'batch', 'method', 'gflops', 'median_ms', 'p25_ms', 'p75_ms', 'clips_per_s',
    'speedup', 'speedup_p25', 'speedup_p75', 'peak_mib', 'step_mib', 'peak_reduction_pct', 'step_reduction_pct',
    'reps',
]


@dataclass(frozen=True)
class Spec:
    """How to build one method: plain data, so a fresh process can rebuild it for memory."""
    name: str
    model: str                 # registered name
    model_kwargs: tuple        # sorted (key, value) pairs for timm.create_model
    subsample: int = 1         # feed every k-th frame
    tome_r: Optional[int] = None

    def build(self) -> torch.nn.Module:
        model = timm.create_model(self.model, **dict(self.model_kwargs))
        if self.tome_r is not None:
            apply_tome(model, self.tome_r)
        return model

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return subsample_frames(x, self.subsample) if self.subsample > 1 else x


DEFAULT_MODELS = ['inti_vit_b16', 'inti_vit_b16_deep']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS,
                        help='InTI models on one backbone; the baselines match the first one\'s GFLOPs')
    parser.add_argument('--frames', type=int, default=8, help='frames per clip')
    parser.add_argument('--batches', nargs='+', type=int, help='inference batch sizes (default 1 8; --quick: 1 2)')
    parser.add_argument('--train-batch', type=int,
                        help='training batch size (default 8, a fine-tuning batch per device; --quick: 1)')
    parser.add_argument('--reps', type=int, help='timed rounds (default 10; --quick: 3)')
    parser.add_argument('--warmup', type=int, help='untimed calls per method first (default 2; --quick: 1)')
    parser.add_argument('--quick', action='store_true', help='few reps and small batches, to check that it works')
    parser.add_argument('--subsample', type=int, default=2, help='frame subsampling factor of the baseline')
    parser.add_argument('--tome-r', type=int, help='ToMe merge rate (default: searched to match GFLOPs)')
    parser.add_argument('--num-classes', type=int, default=400, help='classifier size (Kinetics-400: 400)')
    parser.add_argument('--model-kwargs', nargs='*', default={}, action=ParseKwargs,
                        help='more timm.create_model kwargs, e.g. img_size=160')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--no-memory', action='store_true', help='skip the memory measurements')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results', help='output folder')
    args = parser.parse_args(argv)
    if args.device == 'auto':
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    elif args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device')
    if args.batches is None:
        args.batches = [1, 2] if args.quick else [1, 8]
    if args.train_batch is None:
        args.train_batch = 1 if args.quick else 8
    args.reps = args.reps or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if min(args.batches + [args.train_batch, args.reps, args.frames, args.subsample]) < 1:
        parser.error('batch sizes, --reps, --frames and --subsample must be positive')
    return args


def make_specs(args) -> Tuple[List[Spec], List[str]]:
    """The methods to time, and notes on any left out (for the table's header)."""
    def spec(name, model, **kwargs):
        model_kwargs = dict(args.model_kwargs, num_frames=args.frames, num_classes=args.num_classes)
        model_kwargs.update(kwargs.pop('model_kwargs', {}))
        return Spec(name, model, tuple(sorted(model_kwargs.items())), **kwargs)

    first = args.models[0]
    naive = spec('naive', first, model_kwargs=dict(inti_after=()))
    inti = [spec(name, name) for name in args.models]
    backbones = {s.name: timm.create_model(s.model, **dict(s.model_kwargs, inti_after=())) for s in inti[1:]}
    reference = naive.build()
    for name, other in backbones.items():
        if (other.embed_dim, len(other.blocks), other.patch_embed.patch_size) != (
                reference.embed_dim, len(reference.blocks), reference.patch_embed.patch_size):
            raise SystemExit(f'--models must share one backbone: {name} differs from {first}')

    methods = [naive] + inti + [
        spec(f'subsample 1/{args.subsample}', first, model_kwargs=dict(inti_after=()), subsample=args.subsample)]
    if not isinstance(reference, VisionTransformer):
        kind = 'Eva' if isinstance(reference, Eva) else type(reference).__name__
        return methods, [f'ToMe left out: {first} is a timm {kind} tower, whose rotary position embeddings turn each '
                         f'token by its place on the patch grid, and a merged token has none (apply_tome supports '
                         f'timm\'s VisionTransformer)']
    r = args.tome_r
    if r is None:
        target = formula_flops(inti[0].build(), args.frames).gflops
        print(f'searching the ToMe merge rate for {target:.1f} GFLOPs (fvcore; about a minute for ViT-B) ...',
              file=sys.stderr, flush=True)
        model_kwargs = {k: v for k, v in naive.model_kwargs if k != 'num_frames'}
        r = tome_r_for_flops(first, args.frames, target, **model_kwargs)
    return methods + [spec(f'tome r={r}', first, model_kwargs=dict(inti_after=()), tome_r=r)], []


def clip_for(model: torch.nn.Module, batch: int, frames: int, device: str) -> torch.Tensor:
    return torch.randn(batch, model.in_chans, frames, *model.patch_embed.img_size, device=device)


def gflops_of(spec: Spec, model: torch.nn.Module, frames: int) -> float:
    """Per-clip GFLOPs (multiply-adds): the closed form for naive/InTI (it equals fvcore), fvcore for ToMe."""
    frames = len(range(0, frames, spec.subsample))
    if spec.tome_r is None:
        return formula_flops(model, frames).gflops
    return count_flops(model.eval(), clip_for(model, 1, frames, 'cpu')).gflops  # model on CPU


def make_step(spec: Spec, model: torch.nn.Module, x: torch.Tensor, train: bool, device: str) -> Callable[[], None]:
    """One inference call or one training step (forward, loss, backward, free the gradients)."""
    autocast = torch.autocast('cuda', dtype=torch.bfloat16) if device == 'cuda' else nullcontext()
    if train:
        target = torch.randint(0, model.num_classes, (x.shape[0],), device=device)

        def step():
            with autocast:
                loss = F.cross_entropy(model(spec.prepare(x)).float(), target)
            loss.backward()
            model.zero_grad(set_to_none=True)
    else:
        def step():
            with torch.inference_mode(), autocast:
                model(spec.prepare(x))
    return step


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_interleaved(steps: Dict[str, Callable[[], None]], reps: int, warmup: int, device: str,
                     label: str) -> Dict[str, List[float]]:
    """Seconds per call of every step, ``reps`` rounds, each running every step once in rotating order."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times = {name: [] for name in names}
    for i in range(reps):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            _sync(device)
            start = time.perf_counter()
            steps[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
        print(f'  {label}: round {i + 1}/{reps}', file=sys.stderr, flush=True)
    return times


def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def measure_memory(spec: Spec, batch: int, frames: int, train: bool, device: str,
                   threads: Optional[int] = None) -> Dict[str, float]:
    """Peak memory of one step, in MiB: ``peak`` in all, ``step`` above what was resident before it.

    On CPU this reads the process's resident set size, so it is meant to run in a fresh
    process (``measure_memory_isolated``) where nothing else has been allocated.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = spec.build().to(device).train(train)
    x = clip_for(model, batch, frames, device)
    step = make_step(spec, model, x, train, device)
    step()  # warm-up: one-off allocations (kernels, thread pools) are not the method's
    gc.collect()
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        try:  # reset the peak to the current RSS (Linux >= 4.0), else the warm-up's peak stays in it
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        except OSError:
            pass
        before = _rss_kib('VmRSS') * 1024
        step()
        peak = _rss_kib('VmHWM') * 1024
    return dict(peak_mib=peak / 2 ** 20, step_mib=(peak - before) / 2 ** 20)


def measure_memory_isolated(spec: Spec, batch: int, frames: int, train: bool,
                            threads: Optional[int]) -> Dict[str, float]:
    """CPU ``measure_memory`` in a fresh process, with freed buffers returned to the OS at once."""
    saved = os.environ.get('MALLOC_MMAP_THRESHOLD_')
    os.environ['MALLOC_MMAP_THRESHOLD_'] = str(64 * 1024)  # glibc: mmap (and munmap on free) every buffer >= 64 KiB
    try:
        with ProcessPoolExecutor(1, mp_context=get_context('spawn'), max_tasks_per_child=1) as pool:
            return pool.submit(measure_memory, spec, batch, frames, train, 'cpu', threads).result()
    finally:
        if saved is None:
            del os.environ['MALLOC_MMAP_THRESHOLD_']
        else:
            os.environ['MALLOC_MMAP_THRESHOLD_'] = saved


def quantiles(values: List[float]):
    """Median, 25th and 75th percentiles."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method='inclusive')
    return q2, q1, q3


def machine(device: str) -> str:
    if device == 'cuda':
        return f'{describe_machine(device)}, bf16 autocast'
    return f'{describe_machine(device)}, float32'


def markdown(rows, header: str) -> str:
    lines = [header, '']
    for phase in dict.fromkeys(r['phase'] for r in rows):
        for batch in dict.fromkeys(r['batch'] for r in rows if r['phase'] == phase):
            sel = [r for r in rows if r['phase'] == phase and r['batch'] == batch]
            unit = 'step' if phase == 'training' else 'batch'
            lines += [
                f"**{phase}, batch {batch}, {sel[0]['frames']} frames**", '',
                f'| method | GFLOPs/clip | ms/{unit} (median [p25, p75]) | clips/s | speed-up vs naive [p25, p75] '
                '| peak MiB | step MiB | peak / step vs naive |',
                '|---|---|---|---|---|---|---|---|',
            ]
            for r in sel:
                memory = ('| - | - | - |' if r['peak_mib'] is None else
                          f"| {r['peak_mib']:.0f} | {r['step_mib']:.0f} "
                          f"| {-r['peak_reduction_pct']:+.1f}% / {-r['step_reduction_pct']:+.1f}% |")
                lines.append(
                    f"| {r['method']} | {r['gflops']:.1f} | {r['median_ms']:.1f} "
                    f"[{r['p25_ms']:.1f}, {r['p75_ms']:.1f}] "
                    f"| {r['clips_per_s']:.2f} | {r['speedup']:.2f}x [{r['speedup_p25']:.2f}, {r['speedup_p75']:.2f}] "
                    + memory)
            lines.append('')
    return '\n'.join(lines)


def build_models(specs: List[Spec], frames: int, device: str):
    """One model per distinct spec (subsampling reuses the naive one), and every method's GFLOPs."""
    models, built = {}, {}
    for spec in specs:
        key = (spec.model, spec.model_kwargs, spec.tome_r)
        if key not in built:
            built[key] = spec.build()
        models[spec.name] = built[key]
    gflops = {s.name: gflops_of(s, models[s.name], frames) for s in specs}  # on CPU, before moving
    print('GFLOPs per clip: ' + ', '.join(f'{n} {g:.1f}' for n, g in gflops.items()), file=sys.stderr)
    return {name: model.to(device) for name, model in models.items()}, gflops


def run_timings(specs: List[Spec], args) -> List[dict]:
    """Interleaved timings of every phase (inference at each batch size, training); one row per method."""
    models, gflops = build_models(specs, args.frames, args.device)
    rows = []
    phases = [('inference', b, False) for b in args.batches] + [('training', args.train_batch, True)]
    for phase, batch, train in phases:
        steps = {}
        for spec in specs:
            model = models[spec.name].train(train)
            x = clip_for(model, batch, args.frames, args.device)
            steps[spec.name] = make_step(spec, model, x, train, args.device)
        times = time_interleaved(steps, args.reps, args.warmup, args.device, f'{phase}, batch {batch}')
        naive = times[specs[0].name]
        for spec in specs:
            t = times[spec.name]
            median, p25, p75 = quantiles(t)
            speedup = quantiles([n / m for n, m in zip(naive, t)])
            rows.append(dict(
                device=args.device, phase=phase, frames=args.frames, batch=batch, method=spec.name,
                gflops=gflops[spec.name], median_ms=1e3 * median, p25_ms=1e3 * p25, p75_ms=1e3 * p75,
                clips_per_s=batch / median, speedup=speedup[0], speedup_p25=speedup[1], speedup_p75=speedup[2],
                peak_mib=None, step_mib=None, peak_reduction_pct=None, step_reduction_pct=None, reps=args.reps))
    return rows


def run_memory(specs: List[Spec], rows: List[dict], args) -> None:
    """Peak memory of every row's step, each measured alone (see ``measure_memory``)."""
    for row in rows:
        spec = next(s for s in specs if s.name == row['method'])
        print(f"  memory: {row['phase']}, batch {row['batch']}, {spec.name}", file=sys.stderr, flush=True)
        train = row['phase'] == 'training'
        if args.device == 'cpu':
            row.update(measure_memory_isolated(spec, row['batch'], args.frames, train, args.threads))
        else:
            row.update(measure_memory(spec, row['batch'], args.frames, train, args.device))
            gc.collect()
            torch.cuda.empty_cache()
    for row in rows:
        base = next(r for r in rows if (r['phase'], r['batch'], r['method']) == (row['phase'], row['batch'], 'naive'))
        row['peak_reduction_pct'] = 100 * (1 - row['peak_mib'] / base['peak_mib'])
        row['step_reduction_pct'] = 100 * (1 - row['step_mib'] / base['step_mib'])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    timm.layers.set_fused_attn(True)
    if args.device == 'cuda':
        torch.backends.cudnn.benchmark = True
    load_before = os.getloadavg()
    started = time.perf_counter()
    torch.manual_seed(0)

    specs, notes = make_specs(args)
    rows = run_timings(specs, args)
    gc.collect()  # the timing models are gone: memory runs build their own
    if args.device == 'cuda':
        torch.cuda.empty_cache()
    if not args.no_memory:
        run_memory(specs, rows, args)

    load_after = os.getloadavg()
    header = '\n'.join([
        f"Machine: {machine(args.device)}; torch {torch.__version__}, timm {timm.__version__}, timm-inti "
        f"{timm_inti.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after; {args.reps} interleaved rounds "
        f"after {args.warmup} warm-up calls per method.",
        f"Command: `python benchmarks/throughput.py {shlex.join(argv)}`",
        'GFLOPs = 10^9 multiply-adds per clip; speed-up = median over rounds of naive time / method time; '
        'step MiB = peak minus memory resident before the step (activations, gradients).',
    ] + [f'Note: {n}.' for n in notes])
    stem = f"throughput_{args.device}{'_quick' if args.quick else ''}" + (
        '' if args.models[0] == DEFAULT_MODELS[0] else f'_{args.models[0]}')  # another tower keeps its own file
    write_results(args.out, stem, rows, COLUMNS, markdown(rows, header), started)
    return 0


def write_results(out: Path, stem: str, rows: List[dict], columns: List[str], table: str, started: float) -> None:
    """Print the markdown table, then write it and the rows as ``out/stem.md`` and ``out/stem.csv``."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f'{stem}.csv', rows, columns)
    write_text(out / f'{stem}.md', table + '\n')
    print(f'wrote {out / stem}.csv and .md in {time.perf_counter() - started:.0f} s', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
