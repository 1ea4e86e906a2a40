"""timm-inti-predict over a collection: is the model the bottleneck, and does a killed run resume exactly?

1. Throughput. The model's own clips/s on ready-made views at batch size ``-b`` (the
   ceiling; timed before each pipeline run, the median kept), then files -> predictions
   clips/s through ``timm-inti-predict`` (decode, sample, transform in a DataLoader, the
   model, JSON lines written) with 0, 1 and 2 workers, the ratio of each to the ceiling,
   and the share of the loop spent waiting for decoded videos (near 0 when the model is
   the bottleneck; measured inside the run, so it holds on a loaded machine too). The
   prediction loop is timed, worker start-up included, model building not. The corpus is
   ``--files`` H.264 videos of ``--video-frames`` frames at ``--size``, with noise so that
   they decode like real ones.
2. Kill and resume. ``--resume-files`` small videos, 3% of them corrupt, predicted once
   without interruption and once killed (SIGKILL, with its loader workers) half-way and run
   again with the same ``--output``: every readable file must be answered exactly once,
   every bad one listed, exit status 1, and the output identical to the uninterrupted one.

    python benchmarks/predict.py                               # inti_vit_b16, 224 px, 8 frames, -b 8
    python benchmarks/predict.py --model-kwargs depth=6 --files 32
    python benchmarks/predict.py --quick                       # a tiny model and a few files (the test suite)
"""
import argparse
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import timm
import timm.utils
import torch

import timm_inti  # noqa: F401  (registers the models)
from timm_inti import predict
from timm_inti.evaluate import view_probabilities
from timm_inti.files import describe_machine, write_csv, write_text
from timm_inti.outputs import read_records
from timm_inti.video.synthetic import write_video

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2)


def save_checkpoint(path: Path, model_name: str, model_args: dict, num_classes: int) -> Path:
    """A random model saved as timm-inti-train saves one, so predict rebuilds it from the file alone."""
    model_args = dict(model_args, num_classes=num_classes)
    model = timm.create_model(model_name, **model_args)
    torch.save(dict(arch=model_name, model_args=model_args, state_dict=model.state_dict(),
                    label_names=[f'class{i}' for i in range(num_classes)], epoch=0), path)
    return path


def model_clips_per_second(checkpoint: Path, batch: int, device: str, seconds: float) -> float:
    """The model alone on ready views (B, 1, C, T, H, W): the most predict can reach."""
    args = predict.parse_args(['x', '--checkpoint', str(checkpoint), '--device', device])
    model, _ = predict.build_model(args)
    model.to(device).eval()
    views = torch.randn(batch, 1, 3, model.num_frames, *model.patch_embed.img_size, device=device)
    with torch.no_grad():
        view_probabilities(model, views)  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or count < 2:
            view_probabilities(model, views)
            if device == 'cuda':
                torch.cuda.synchronize()
            count += 1
    return count * batch / (time.perf_counter() - start)


def pipeline(videos, checkpoint: Path, batch: int, workers: int, device: str, tmp: Path):
    """Files -> predictions clips/s through timm-inti-predict, and the share of its loop spent waiting for videos."""
    output = tmp / f'throughput-{workers}.jsonl'
    args = predict.parse_args([*map(str, videos), '--checkpoint', str(checkpoint), '-b', str(batch), '-j', str(workers),
                               '--device', device, '--output', str(output), '--log-interval', '1e9'])
    summary = predict.run(args)
    output.unlink()
    return summary['predicted'] / summary['seconds'], summary['data_wait_seconds'] / summary['seconds']


def write_collection(folder: Path, count: int, corrupt_every: int = 33):
    """``count`` small videos, one in ``corrupt_every`` corrupt (alternately truncated and not a video)."""
    good, bad = [], []
    sample = None
    for i in range(count):
        path = folder / f'{i // 100:02d}' / f'{i:05d}.mp4'
        if i % corrupt_every == corrupt_every // 2:
            path.parent.mkdir(parents=True, exist_ok=True)
            if sample is not None and len(bad) % 2 == 0:
                path.write_bytes(sample[: len(sample) // 3])
            else:
                path.write_text('not a video')
            bad.append(str(path))
        else:
            write_video(path, num_frames=8 + i % 7, size=(32, 32), direction=1 if i % 2 else -1)
            sample = sample or path.read_bytes()
            good.append(str(path))
    return good, bad


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b'\n')
    except FileNotFoundError:
        return 0


def kill_and_resume(count: int, tmp: Path, workers: int = 2) -> dict:
    """The resume check: uninterrupted vs killed half-way and resumed, on ``count`` files with 3% corrupt."""
    folder = tmp / 'collection'
    good, bad = write_collection(folder, count)
    checkpoint = save_checkpoint(tmp / 'tiny.pth.tar', 'inti_vit_b16', dict(TINY, num_frames=4), 5)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(timm_inti.__file__).parent.parent),
                                                       os.environ.get('PYTHONPATH', '')]))

    def arguments(output):
        return [str(folder), '--checkpoint', str(checkpoint), '-j', str(workers), '-b', '4', '--output', str(output),
                '--device', 'cpu', '--log-interval', '1e9']

    def in_process(output):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = predict.main(arguments(output))
        return code, err.getvalue()

    start = time.perf_counter()
    clean_exit, _ = in_process(tmp / 'clean.jsonl')
    clean_seconds = time.perf_counter() - start

    killed_out = tmp / 'killed.jsonl'  # a separate process, so that it can be killed like a real run
    proc = subprocess.Popen([sys.executable, '-m', 'timm_inti.predict', *arguments(killed_out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    part = Path(f'{killed_out}.part-0')
    while _lines(part) < count // 2 and proc.poll() is None:
        time.sleep(0.005)
    killed_mid_run = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = _lines(part)
    resumed_exit, resumed_err = in_process(killed_out)

    records = read_records(killed_out)
    paths = [r['path'] for r in records]
    answered = [r['path'] for r in records if 'predictions' in r]
    listed = sorted(r['path'] for r in records if 'error' in r)
    identical = killed_out.read_bytes() == (tmp / 'clean.jsonl').read_bytes()
    return dict(
        files=count, corrupt=len(bad), killed_mid_run=killed_mid_run, lines_at_kill=at_kill,
        clean_exit=clean_exit, resumed_exit=resumed_exit,
        every_good_once=sorted(answered) == sorted(good) and len(paths) == len(set(paths)),
        every_bad_listed=listed == sorted(bad), identical=identical, clean_seconds=clean_seconds,
        ok=(killed_mid_run and resumed_exit == 1 and clean_exit == 1 and identical
            and sorted(answered) == sorted(good) and listed == sorted(bad) and len(paths) == len(set(paths))),
        summary=resumed_err.strip().splitlines()[-1] if resumed_err.strip() else '')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='inti_vit_b16')
    parser.add_argument('--model-kwargs', nargs='*', default={}, action=timm.utils.ParseKwargs)
    parser.add_argument('--num-frames', type=int, default=8)
    parser.add_argument('-b', '--batch-size', type=int, default=8)
    parser.add_argument('--files', type=int, default=48, help='videos for the throughput runs')
    parser.add_argument('--video-frames', type=int, default=64, help='frames per throughput video')
    parser.add_argument('--size', type=int, nargs=2, default=(240, 320), metavar=('H', 'W'))
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--resume-files', type=int, default=1000, help='videos for the kill-and-resume check')
    parser.add_argument('--seconds', type=float, default=10.0, help='timing of the model alone')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--quick', action='store_true', help='a tiny model, few files: checks that it runs')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results')
    args = parser.parse_args(argv)
    model_kwargs = dict(args.model_kwargs)
    if args.quick:
        model_kwargs = dict(TINY, **model_kwargs)
        args.num_frames, args.batch_size, args.files, args.video_frames = 4, 4, 12, 16
        args.size, args.resume_files, args.seconds = (48, 64), 40, 0.5

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = save_checkpoint(tmp / 'model.pth.tar', args.model,
                                     dict(model_kwargs, num_frames=args.num_frames), 400)
        videos = [write_video(tmp / 'throughput' / f'{i:03d}.mp4', num_frames=args.video_frames, size=tuple(args.size),
                              noise=True) for i in range(args.files)]
        # the model alone is timed before every pipeline run and the median taken, so that a
        # machine whose load drifts (a shared one) weighs on both sides alike
        ceilings, runs = [], []
        for workers in args.workers:
            ceilings.append(model_clips_per_second(checkpoint, args.batch_size, args.device, args.seconds))
            runs.append((workers, *pipeline(videos, checkpoint, args.batch_size, workers, args.device, tmp)))
            print(f'model alone {ceilings[-1]:.2f} clips/s; files -> predictions with {workers} workers '
                  f'{runs[-1][1]:.2f} clips/s, waiting for videos {runs[-1][2]:.0%} of the time', flush=True)
        ceiling = statistics.median(ceilings)
        rows.append(dict(what=f'model alone, batch {args.batch_size}', clips_per_s=round(ceiling, 2), ratio=1.0,
                         waiting=''))
        rows += [dict(what=f'files -> predictions, {workers} workers', clips_per_s=round(rate, 2),
                      ratio=round(rate / ceiling, 3), waiting=round(waiting, 3)) for workers, rate, waiting in runs]
        resume = kill_and_resume(args.resume_files, tmp)

    command = 'python benchmarks/predict.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    setup = (f'{args.model}{f" {model_kwargs}" if model_kwargs else ""}, {args.num_frames} frames, 1 view, '
             f'{args.files} H.264 files of '
             f'{args.video_frames} frames at {args.size[0]}x{args.size[1]}, device {args.device}')
    lines = [f'`{command}`', '', f'Machine: {describe_machine()}.', f'Setup: {setup}.', '',
             '| pipeline | clips/s | of the model alone | loop waiting for videos |', '|---|---:|---:|---:|']
    lines += [f'| {r["what"]} | {r["clips_per_s"]} | {r["ratio"]:.0%} | '
              f'{"" if r["waiting"] == "" else format(r["waiting"], ".0%")} |' for r in rows]
    lines += ['', f'Kill and resume: {resume["files"]} files, {resume["corrupt"]} corrupt, killed after '
                  f'{resume["lines_at_kill"]} answers'
                  f'{"" if resume["killed_mid_run"] else " (the run had ended: no kill)"}; '
                  f'every readable file answered once: {resume["every_good_once"]}; every bad one listed: '
                  f'{resume["every_bad_listed"]}; exit status {resume["resumed_exit"]}; identical to the uninterrupted '
                  f'run: {resume["identical"]}. ({resume["summary"]})', '']
    text = '\n'.join(lines)
    print(text)
    suffix = '_quick' if args.quick else ''
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / f'predict{suffix}.csv', rows, ['what', 'clips_per_s', 'ratio', 'waiting'])
    write_text(args.out / f'predict{suffix}.md', text)
    write_text(args.out / f'predict_resume{suffix}.json', json.dumps(resume, indent=2))
    return 0 if resume['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
