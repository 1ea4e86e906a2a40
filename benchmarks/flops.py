"""FLOPs of InTI models against naive per-frame adaptation.

By default: the headline, ``inti_vit_b16`` and ``inti_vit_b16_deep`` at 8 frames, printed
(about 20 s on 2 cores). ``--all``: every variant of CLIP ViT-B/16 and ViT-L/14 at 8, 16
and 32 frames, and the plain variant (one InTI layer after a quarter of the blocks) of every
other backbone of the table (timm_inti.backbones) at 8 frames, written to
benchmarks/results/flops.{csv,md,png} (the published table). Name models to count others.

For each model and clip length: fvcore's count with attention included, the naive model
(the same ViT, with the same temporal modules if any, and ``inti_after=()``), the reduction, the
InTI layers' own share, and the
closed-form cost model of timm_inti.flops, which must agree with fvcore within 1%, and the
bound of the block schedule alone (the reduction if only the Transformer blocks cost
anything: 37.5% for one InTI layer after a quarter of the blocks); patch embedding, head and
the InTI layers themselves make the real reduction slightly smaller.
GFLOPs here are 10^9 multiply-adds (fvcore's convention, the one the video literature
uses), for one view at the model's frame size (224x224; 336x336 for the _336 models) at batch 1.
No network and no weights are needed: the models are built without initialising their weights
(counts depend on shapes only).

    python benchmarks/flops.py                       # the headline, printed
    python benchmarks/flops.py --all                 # the published table (benchmarks/results/flops.*)
    python benchmarks/flops.py --models inti_vit_b16 inti_vit_b16_siglip --frames 8 16 --out /tmp/flops
"""
import argparse
import sys
import time
from pathlib import Path

import timm
import torch

from timm_inti.backbones import BACKBONES
from timm_inti.files import pyplot, write_csv, write_png, write_text
from timm_inti.flops import count_flops, formula_flops

# backbones whose variants the default run sweeps over clip lengths; the others at 8 frames
SWEEP_BACKBONES = ('vit_base_patch16_clip_224', 'vit_large_patch14_clip_224')
SWEEP_FRAMES = (8, 16, 32)
# the default run: the README's headline
HEADLINE = (('inti_vit_b16', 8), ('inti_vit_b16_deep', 8))
RESULTS = Path(__file__).parent / 'results'

COLUMNS = [
    'model', 'frames', 'params_m', 'gflops', 'naive_gflops', 'reduction_pct', 'schedule_bound_pct',
    'inti_share_pct', 'formula_gflops', 'formula_diff_pct',
]
HEADERS = [
    'model', 'frames', 'params (M)', 'GFLOPs', 'naive GFLOPs', 'reduction (%)', 'block-schedule bound (%)',
    'InTI share (%)', 'formula GFLOPs', 'formula vs fvcore (%)',
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--all', action='store_true',
                        help='count the published set (see above) and write it to --out (default: %s)' % RESULTS)
    parser.add_argument('--models', nargs='+', help='registered model names (default: see above)')
    parser.add_argument('--frames', nargs='+', type=int, help='clip lengths (default: see above)')
    parser.add_argument('--out', type=Path, help='write flops.{csv,md,png} here (default: print only; with --all: '
                        'benchmarks/results)')
    args = parser.parse_args(argv)
    if args.all and args.out is None:
        args.out = RESULTS
    return args


def default_jobs(models=None, frames=None, all=False):
    """(model, frames) pairs: the headline, or with ``all`` the published set, unless models or frames are given."""
    if not all and models is None:
        return [(name, t) for name, t in HEADLINE] if frames is None else [
            (name, t) for name in dict.fromkeys(n for n, _ in HEADLINE) for t in frames]
    sweep = [alias for b in SWEEP_BACKBONES for _, alias, _ in BACKBONES[b].model_names()]
    if models is None:  # the other backbones' plain variant: their deep and temporal variants cost the same way
        models = sweep + [alias for b in BACKBONES.values() if b.name not in SWEEP_BACKBONES
                          for _, alias, variant in b.model_names() if not variant]
    if frames is not None:
        return [(name, t) for name in models for t in frames]
    return [(name, t) for name in models for t in (SWEEP_FRAMES if name in sweep else (8,))]


def clip(model, frames):
    return torch.randn(1, model.in_chans, frames, *model.patch_embed.img_size)


def build(name, **kwargs):
    """The model with uninitialised (zeroed) weights: counts depend on shapes only, and a ViT-L's init takes longer
    than its count."""
    model = timm.create_model(name, device='meta', **kwargs).to_empty(device='cpu').eval()
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.zero_()
    return model


def measure(name, frames, naive_cache):
    model = build(name)
    naive = build(name, inti_after=())
    # variants sharing a backbone (and temporal modules) share a naive count; repr spells out the layers but not
    # the frame size or the prefix tokens (ViT-L/14 at 224 and 336 px print the same)
    key = (repr(naive), tuple(naive.patch_embed.img_size), naive.num_prefix_tokens, frames)
    if key not in naive_cache:
        naive_cache[key] = count_flops(naive, clip(naive, frames))
    naive_count = naive_cache[key]
    if abs(formula_flops(naive, frames).total - naive_count.total) > 0.01 * naive_count.total:
        raise RuntimeError(f'the naive count of {name} at {frames} frames is not its own (a cache collision)')
    count = count_flops(model, clip(model, frames))
    formula = formula_flops(model, frames)
    return dict(
        model=name,
        frames=frames,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        gflops=count.gflops,
        naive_gflops=naive_count.gflops,
        reduction_pct=100 * (1 - count.total / naive_count.total),
        schedule_bound_pct=100 * (1 - sum(model.num_frames_after(frames)) / (len(model.blocks) * frames)),
        inti_share_pct=100 * count.inti_share,
        formula_gflops=formula.gflops,
        formula_diff_pct=100 * (formula.total - count.total) / count.total,
    )


def markdown(rows):
    lines = ['| ' + ' | '.join(HEADERS) + ' |', '|' + '---|' * len(HEADERS)]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['frames']} | {r['params_m']:.1f} | {r['gflops']:.1f} | {r['naive_gflops']:.1f} "
            f"| {r['reduction_pct']:.1f} | {r['schedule_bound_pct']:.1f} | {r['inti_share_pct']:.2f} "
            f"| {r['formula_gflops']:.1f} "
            f"| {r['formula_diff_pct']:+.2f} |")
    return '\n'.join(lines)


def plot(rows, path):
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(10, 4.5))
    naive_done = set()
    names = list(dict.fromkeys(r['model'] for r in rows))
    swept = [n for n in names if sum(r['model'] == n for r in rows) > 1]
    for name in names:
        if swept and name not in swept:
            continue  # a model at one clip length is no line beside the swept ones; the table has it
        mine = [r for r in rows if r['model'] == name]
        frames = [r['frames'] for r in mine]
        ax.plot(frames, [r['gflops'] for r in mine], marker='o', label=name)
        naive = tuple(r['naive_gflops'] for r in mine)
        if naive not in naive_done:
            naive_done.add(naive)
            ax.plot(frames, naive, linestyle='--', color='gray', marker='x', label=f'naive ({name} backbone)')
    ax.set_xlabel('frames per clip')
    ax.set_ylabel('GFLOPs (10^9 multiply-adds)')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_title('InTI vs naive per-frame adaptation, one view')
    ax.legend(fontsize=8, loc='center left', bbox_to_anchor=(1.02, 0.5))  # beside the plot, not over the lines
    ax.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    write_png(path, fig)
    return True


def main(argv=None):
    args = parse_args(argv)
    jobs = default_jobs(args.models, args.frames, all=args.all)
    rows, naive_cache = [], {}
    start = time.perf_counter()
    for i, (name, frames) in enumerate(jobs, 1):
        print(f'[{i}/{len(jobs)}] {name}, {frames} frames ...', end=' ', file=sys.stderr, flush=True)
        t = time.perf_counter()
        rows.append(measure(name, frames, naive_cache))
        print(f"{rows[-1]['gflops']:.1f} GFLOPs ({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)

    table = markdown(rows) + (
        '\n\nGFLOPs = 10^9 multiply-adds (fvcore, attention included), batch 1, one view at the model\'s size '
        '(224x224 unless the name says 336 or 384). '
        'Block-schedule bound: the reduction if only the Transformer blocks cost anything.')
    print(table)
    print()
    for r in rows:
        print(f"{r['model']}, {r['frames']} frames: {r['gflops']:.1f} GFLOPs against {r['naive_gflops']:.1f} naive, "
              f"{r['reduction_pct']:.1f}% fewer")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(args.out / 'flops.csv', rows, COLUMNS)
        write_text(args.out / 'flops.md', table + '\n')
        wrote = ['flops.csv', 'flops.md'] + (['flops.png'] if plot(rows, args.out / 'flops.png') else [])
        print(f"\nwrote {', '.join(str(args.out / w) for w in wrote)}", file=sys.stderr)
    else:
        print(f'\nprinted only; --all writes the published table ({RESULTS / "flops.md"})', file=sys.stderr)
    print(f'{len(rows)} counts in {time.perf_counter() - start:.0f} s', file=sys.stderr)
    worst = max(abs(r['formula_diff_pct']) for r in rows)
    if worst > 1.0:
        print(f'fvcore and the closed-form model differ by {worst:.2f}% (> 1%)', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
