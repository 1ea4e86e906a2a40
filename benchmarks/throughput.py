"""Measured speed and memory: InTI against naive adaptation, frame subsampling and ToMe.

For one backbone (default ``inti_vit_b16``) and clip length, these methods:

  * ``naive``: the ViT on every frame (``inti_after=()``), the reference of every ratio;
  * ``inti``: the model as registered (ViT-B/16: one InTI layer after block 3);
  * ``inti_deep``: the deeper schedule (``<model>_deep``), when registered;
  * ``subsample``: the naive model on every other frame;
  * ``tome``: the naive model with ToMe merging inside each frame, at InTI's GFLOPs.

Measured: inference throughput (clips/s) and latency at each ``--batch-sizes``, the time of
a training step (forward, backward, AdamW step) at ``--train-batch``, and the peak memory of
both. Repetitions are interleaved across methods, so drifts in machine load hit all of them;
each figure is the median with the min-max spread, and ratios compare with ``naive`` in the
same run. Memory is measured in a fresh process per configuration, after a warm-up step (so
gradients and optimizer state already exist): on CPU (the default) the peak resident set
during one more step and its rise above the resident set before it (Linux and glibc: freed
memory is returned with malloc_trim, and /proc/self/clear_refs resets the peak); with CUDA, where timings use bf16 autocast and fused
attention, torch's peak allocation and its rise above the allocation before the step.

    python benchmarks/throughput.py                 # 2 CPU cores: about 10 minutes
    python benchmarks/throughput.py --quick         # a check that it runs: about a minute
    python benchmarks/throughput.py --device cuda --batch-sizes 1 32 --train-batch 16
"""
import argparse
import csv
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import timm_inti  # noqa: F401  (registers the models)
from timm_inti.flops import count_flops

sys.path.insert(0, str(Path(__file__).parent))
from baselines import apply_tome, subsample_frames, tome_r_for_flops  # noqa: E402

METHODS = ('naive', 'inti', 'inti_deep', 'subsample', 'tome')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='inti_vit_b16')
    parser.add_argument('--frames', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--train-batch', type=int, default=4)
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--methods', nargs='+', default=list(METHODS), choices=METHODS)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--quick', action='store_true', help='112 px, batch 1 and 2, one repetition')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results')
    parser.add_argument('--tome-r', type=int, default=None, help='ToMe merge rate (default: match InTI\'s GFLOPs)')
    parser.add_argument('--memory-child', nargs=2, metavar=('METHOD', 'PHASE'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.img_size, args.batch_sizes, args.train_batch, args.reps = 112, [1, 2], 1, 1
    return args


class Method:
    """A model and the frames it is fed."""

    def __init__(self, name, model, frames):
        self.name, self.model, self.frames = name, model, frames

    def __call__(self, clips):
        return self.model(subsample_frames(clips) if self.name == 'subsample' else clips)


def build(name, args, tome_r=None):
    kwargs = dict(img_size=args.img_size, num_frames=args.frames, num_classes=400)
    if name == 'inti':
        return Method(name, timm.create_model(args.model, **kwargs), args.frames)
    if name == 'inti_deep':
        return Method(name, timm.create_model(f'{args.model}_deep', **kwargs), args.frames)
    naive = timm.create_model(args.model, inti_after=(), **kwargs)
    if name == 'tome':
        return Method(name, apply_tome(naive, tome_r), args.frames)
    return Method(name, naive, (args.frames + 1) // 2 if name == 'subsample' else args.frames)


def autocast(device):
    return torch.autocast('cuda', dtype=torch.bfloat16) if device.type == 'cuda' else nullcontext()


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def clips_for(batch, args, device):
    return torch.randn(batch, 3, args.frames, args.img_size, args.img_size, device=device)


def infer(method, clips, device):
    with torch.inference_mode(), autocast(device):
        method(clips)
    sync(device)


def train_step(method, optimizer, clips, target, device):
    with autocast(device):
        loss = F.cross_entropy(method(clips).float(), target)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rss_kb(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def memory_child(args):
    """Runs in a fresh process: one configuration's peak memory above what it holds before the step."""
    device = torch.device(args.device)
    method_name, phase = args.memory_child
    method = build(method_name, args, args.tome_r)
    method.model.to(device)
    batch = args.train_batch if phase == 'train' else max(args.batch_sizes)
    clips = clips_for(batch, args, device)
    if phase == 'train':
        method.model.train()
        optimizer = torch.optim.AdamW(method.model.parameters(), lr=1e-4)
        target = torch.zeros(batch, dtype=torch.long, device=device)
        run = lambda: train_step(method, optimizer, clips, target, device)  # noqa: E731
    else:
        method.model.eval()
        run = lambda: infer(method, clips, device)  # noqa: E731
    run()  # warm-up: allocator caches, gradients and optimizer state exist from here on
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        peak = torch.cuda.max_memory_allocated()
        print(json.dumps(dict(peak_mb=peak / 2 ** 20, step_mb=(peak - before) / 2 ** 20)))
    else:
        ctypes.CDLL('libc.so.6').malloc_trim(0)  # give the warm-up's freed activations back to the OS
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # Linux: reset the peak resident set (VmHWM) to the current one
        before = _rss_kb('VmRSS:')
        run()
        peak = _rss_kb('VmHWM:')
        print(json.dumps(dict(peak_mb=peak / 1024, step_mb=(peak - before) / 1024)))


def measure_memory(name, phase, args):
    cmd = [sys.executable, __file__, '--memory-child', name, phase, '--model', args.model, '--frames', str(args.frames),
           '--img-size', str(args.img_size), '--train-batch', str(args.train_batch), '--device', args.device,
           '--batch-sizes', *map(str, args.batch_sizes), '--tome-r', str(args.tome_r)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def spread(values, scale=1.0):
    values = [v * scale for v in values]
    return statistics.median(values), min(values), max(values)


def machine(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{name}, {torch.get_num_threads()} threads'


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if f'{args.model}_deep' not in timm.list_models() and 'inti_deep' in args.methods:
        args.methods.remove('inti_deep')
    if 'naive' not in args.methods:
        args.methods.insert(0, 'naive')

    one = clips_for(1, args, torch.device('cpu'))
    inti_gflops = count_flops(build('inti', args).model.eval(), one).gflops
    if 'tome' in args.methods and args.tome_r is None:
        args.tome_r = tome_r_for_flops(lambda: build('naive', args).model, args.frames, inti_gflops)
    methods = [build(name, args, args.tome_r) for name in args.methods]
    gflops = {m.name: count_flops(m.model.eval(), one[:, :, :m.frames]).gflops for m in methods}
    print(f"GFLOPs per clip: {', '.join(f'{k} {v:.1f}' for k, v in gflops.items())} (ToMe r={args.tome_r})",
          file=sys.stderr)
    for m in methods:
        m.model.to(device)

    rows = []
    phases = [('infer', b) for b in args.batch_sizes] + [('train', args.train_batch)]
    for phase, batch in phases:
        clips = clips_for(batch, args, device)
        target = torch.zeros(batch, dtype=torch.long, device=device)
        runs = {}
        for m in methods:
            if phase == 'train':
                m.model.train()
                optimizer = torch.optim.AdamW(m.model.parameters(), lr=1e-4)
                runs[m.name] = lambda m=m, o=optimizer: train_step(m, o, clips, target, device)
            else:
                m.model.eval()
                runs[m.name] = lambda m=m: infer(m, clips, device)
            runs[m.name]()  # warm-up (and the optimizer's state)
        times = {name: [] for name in runs}
        for rep in range(args.reps):  # interleaved: every method once per repetition
            for name, run in runs.items():
                times[name].append(timed(run))
            print(f'{phase} batch {batch}: repetition {rep + 1}/{args.reps}', file=sys.stderr)
        naive_time = statistics.median(times['naive'])
        for name in runs:
            seconds, fastest, slowest = spread(times[name])
            rows.append(dict(phase=phase, batch=batch, method=name, gflops=gflops[name], seconds=seconds,
                             seconds_min=fastest, seconds_max=slowest, clips_per_s=batch / seconds,
                             speedup=naive_time / seconds))
        del runs

    memory_batch = {'infer': max(args.batch_sizes), 'train': args.train_batch}
    for phase in ('infer', 'train'):
        naive_memory = None
        for name in args.methods:
            mem = measure_memory(name, phase, args)
            naive_memory = naive_memory or mem
            row = next(r for r in rows if r['phase'] == phase and r['method'] == name and r['batch'] == memory_batch[phase])
            row.update(peak_mb=mem['peak_mb'], step_mb=mem['step_mb'],
                       peak_saving=1 - mem['peak_mb'] / naive_memory['peak_mb'],
                       step_saving=1 - mem['step_mb'] / naive_memory['step_mb'])
            print(f'{phase} memory of {name}: peak {mem["peak_mb"]:.0f} MB', file=sys.stderr)

    report(rows, args, device)
    return 0


def report(rows, args, device):
    where = 'cuda' if device.type == 'cuda' else 'cpu'
    header = (f'{args.model}, {args.frames} x {args.img_size} x {args.img_size} clips, {machine(device)}, '
              f'torch {torch.__version__}{", bf16 autocast" if where == "cuda" else ", fp32"}; '
              f'median of {args.reps} interleaved repetitions (min-max); ratios against naive in the same run.\n')
    lines = [header]
    for phase, title in (('infer', 'Inference'), ('train', 'Training step (forward, backward, AdamW)')):
        lines += [f'\n### {title}\n', '| method | batch | GFLOPs/clip | clips/s | ms per batch (min-max) | speed-up '
                  '| peak memory (MB) | step memory (MB) | step memory saved |', '|' + '---|' * 9]
        for r in rows:
            if r['phase'] != phase:
                continue
            memory = (f"{r['peak_mb']:.0f} | {r['step_mb']:.0f} | {100 * r['step_saving']:.0f}%" if 'peak_mb' in r
                      else ' | | ')
            lines.append(
                f"| {r['method']} | {r['batch']} | {r['gflops']:.1f} | {r['clips_per_s']:.2f} | "
                f"{1000 * r['seconds']:.0f} ({1000 * r['seconds_min']:.0f}-{1000 * r['seconds_max']:.0f}) | "
                f"{r['speedup']:.2f}x | {memory} |")
    table = '\n'.join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f'throughput_{where}' + ('_quick' if args.quick else '')
    fields = sorted({k for r in rows for k in r}, key=lambda k: list(rows[-1]).index(k) if k in rows[-1] else 99)
    with open(args.out / f'{stem}.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (args.out / f'{stem}.md').write_text(table + '\n')
    print(f'\nwrote {args.out / stem}.csv and .md', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
