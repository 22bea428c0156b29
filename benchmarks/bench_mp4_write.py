"""How long `write_mp4` takes to write a generated clip, with the frames converted to yuv420p on the encoding thread
(`threads=0`) or ahead of it (`threads=None`, the default), for random noise (what random weights generate, x264's
worst case) and for smooth motion:

    python benchmarks/bench_mp4_write.py [--frames 121] [--size 768x512] [--repeats 3] [--out results.json]

It prints a table with the CPU, the command and the date. Every file written is compared with the first one of its
content: the number of conversion threads must not change a byte.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ltx_pipeline.media import write_mp4  # noqa: E402
from ltx_pipeline.types import Audio  # noqa: E402

FRAME_RATE = 24.0  # frames per second
AUDIO_RATE = 48_000  # Hz, the LTX-2.3 vocoder's


def noise_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def smooth_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """A colour gradient moving a few pixels a frame, with a bright disc crossing it."""
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        shift = 4.0 * index
        disc = (rows - height / 2) ** 2 + (columns - (shift * 2) % width) ** 2 < (height / 8) ** 2
        frames[index, ..., 0] = (columns + shift) * 255 / (width + 4 * num_frames)
        frames[index, ..., 1] = rows * 255 / height
        frames[index, ..., 2] = 128 + 100 * np.sin((rows + columns + shift) / 40)
        frames[index][disc] = 240
    return frames


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--size", default="768x512", help="WIDTHxHEIGHT, even numbers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    try:
        width, height = (int(part) for part in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, e.g. 768x512; got {args.size!r}")
    if width < 2 or height < 2 or width % 2 or height % 2:
        parser.error(f"--size must have an even width and height >= 2; got {args.size!r}")
    if args.frames < 1 or args.repeats < 1:
        parser.error(f"--frames and --repeats must be >= 1; got {args.frames} and {args.repeats}")

    audio = Audio(torch.zeros(2, round(args.frames / FRAME_RATE * AUDIO_RATE)), AUDIO_RATE)
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "av": av.__version__,
        "command": "python " + " ".join(sys.argv),
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        warmup_audio = Audio(torch.zeros(2, round(9 / FRAME_RATE * AUDIO_RATE)), AUDIO_RATE)
        write_mp4(Path(folder) / "warmup.mp4", smooth_frames(9, height, width), warmup_audio, FRAME_RATE)
        for content, make in (("noise", noise_frames), ("smooth", smooth_frames)):
            frames = make(args.frames, height, width)
            first_digest = None
            for threads in (0, None):
                times = []
                for repeat in range(args.repeats):
                    path = Path(folder) / f"{content}_{threads}_{repeat}.mp4"
                    start = time.perf_counter()
                    write_mp4(path, frames, audio, FRAME_RATE, threads=threads)
                    times.append(time.perf_counter() - start)
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    first_digest = first_digest or digest
                    if digest != first_digest:
                        raise SystemExit(f"{content}: threads={threads} wrote a different file than threads=0")
                    size_mb = path.stat().st_size / 1e6
                    path.unlink()
                rows.append(
                    {
                        "content": content,
                        "threads": "0 (on the encoding thread)" if threads == 0 else "default (ahead of the encoder)",
                        "median_s": round(statistics.median(times), 3),
                        "min_s": round(min(times), 3),
                        "mb": round(size_mb, 1),
                    }
                )
    print(f"- Date: {env['date_utc']}\n- CPU: {env['cpu']}, {env['cpu_count']} logical cores; PyAV {env['av']}")
    print(f"- Command: `{env['command']}`\n- {args.frames} frames of {width}x{height} at {FRAME_RATE:g} fps\n")
    print("| content | yuv420p conversion | median s | min s | file MB |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['content']} | {row['threads']} | {row['median_s']} | {row['min_s']} | {row['mb']} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"env": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
