"""Benchmark of long form (issue 26): seams, sync over a minute, time and peak memory as the length grows.

    python benchmarks/bench_long_form.py [--lengths 10 60 180] [--t2av-length 30] [--threads 2]
    python benchmarks/bench_long_form.py --full-size --lengths 10 60 180 --t2av-length 0   # one GPU, random weights
    python benchmarks/bench_long_form.py --full-size --tiny --lengths 2 --t2av-length 2    # CPU dry run of that path

Every generation runs `LongFormPipeline.stream` in its own process (so each peak memory is its own) and writes the
mp4 window by window; this process then reads the mp4 back and measures it:

- Audio to video at each length, on a track of held-out bouncing-ball world clips joined end to end (one ball,
  one floor, one room, so one prompt fits the whole track): wall time (model loaded), seconds of output per second
  of wall time, peak resident memory (and peak GPU memory), windows.
- Seams (every run): mean absolute difference between consecutive frames across a seam (the last frame one window
  wrote and the first the next wrote) against the same between consecutive frames within windows.
- Sync, on the audio-to-video run of 60 s (or the one nearest): % of the track's known impacts with a visual impact
  (`world.detectors.visual_impacts`) within 2 frames, and drift: the median signed offset (visual - known) of the
  impacts of the last 10 s.
- Text to audio+video (`--t2av-length`): seams of both streams; for the sound, the level change (dB, 50 ms before
  against 50 ms after) and the log-spectrum distance (dB, the same two pieces) at the seams against the same at the
  middle of every window.

The embedded model runs 128x128 with 97-frame windows at 24 fps (what it was trained on); `--full-size` builds every
LTX-2.3 component at its real size with random bf16 weights (`bench_full_size.build_components`) and runs 768x512
with 121-frame windows on the GPU: speed does not depend on weight values, the seams and sync of noise do.
"""

import argparse
import datetime
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ltx_pipeline import constants  # noqa: E402
from ltx_pipeline.long_form import plan_windows  # noqa: E402
from world import detectors, generate_clip  # noqa: E402

HELD_OUT_SEED = 900_000  # as bench_embedded: seeds the embedded model never saw in training
SCENE = {"colour": "red", "size": "large", "material": "wood", "room": "small"}
TOLERANCE_FRAMES = 2
DRIFT_WINDOW_S = 10.0  # the last this many seconds of the sync run
SOUND_PIECE_S = 0.05  # the audio pieces compared before and after a point
SYNC_LENGTH_S = 60.0
SEAM_NOTES = {
    "reencode": "the window before's last frames encoded again",
    "copy": "the window before's last latents as they are",
}


def world_track(seconds: float, frame_rate: float, folder: Path) -> tuple[Path, np.ndarray, str, np.ndarray]:
    """Held-out world clips joined end to end for `seconds`: a 16 kHz wav, its impact times, its caption, and the
    times where one clip gives way to the next (a new drop: no real scene does that, and no window saw it)."""
    pieces, impacts, elapsed, index, joins = [], [], 0.0, 0, []
    while elapsed < seconds:
        joins.append(elapsed)
        clip = generate_clip(HELD_OUT_SEED + index, num_frames=97, frame_rate=frame_rate, **SCENE)
        pieces.append(clip.audio)
        impacts += [elapsed + impact.time for impact in clip.impacts]
        elapsed += len(clip.audio) / clip.sampling_rate
        index += 1
    audio = np.concatenate(pieces)[: round(seconds * clip.sampling_rate)]
    path = folder / f"track_{seconds:g}s.wav"
    sf.write(path, audio.astype(np.float32), clip.sampling_rate, subtype="FLOAT")
    return path, np.array([time for time in impacts if time < seconds]), clip.caption, np.array(joins)


# --- One generation, in its own process -----------------------------------------------------------------------------


def build_pipeline(args: argparse.Namespace):
    from ltx_pipeline.pipeline_long_form import LongFormPipeline

    if not args.full_size:
        return LongFormPipeline.from_model(args.model, torch_dtype=torch.float32)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_full_size

    device = torch.device("cpu" if args.tiny else "cuda")
    bench = types.SimpleNamespace(args=types.SimpleNamespace(tiny=args.tiny), device=device)
    pipe = LongFormPipeline(**bench_full_size.build_components(bench))
    return pipe.to(device) if not args.tiny else pipe


def run_one(args: argparse.Namespace) -> None:
    """Generates one clip as `args.run_one` describes and writes what it measured as JSON."""
    from ltx_pipeline.types import LongFormFinished, WindowFinished

    request = json.loads(args.run_one)
    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args)
    gpu = torch.cuda.is_available() and args.full_size and not args.tiny
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    window_times = []
    for event in pipe.stream(**request["kwargs"]):
        if isinstance(event, WindowFinished):
            window_times.append(event.elapsed_s)
        if isinstance(event, LongFormFinished):
            finished = event
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "duration_s": finished.duration_s,
        "windows": finished.recipe["windows"],
        "window_end_s": window_times,
        "rss_after_load_mib": rss_loaded,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if gpu else None,
        "mp4_mib": finished.path.stat().st_size / 2**20,
    }
    Path(request["result"]).write_text(json.dumps(result))


def generate(args: argparse.Namespace, kwargs: dict, folder: Path, name: str) -> dict:
    """Runs one generation in a child process; returns what it measured."""
    result_path = folder / f"{name}.json"
    request = json.dumps({"kwargs": kwargs, "result": str(result_path)})
    command = [sys.executable, __file__, "--run-one", request, "--threads", str(args.threads)]
    command += ["--full-size"] * args.full_size + ["--tiny"] * args.tiny + ["--model", args.model]
    subprocess.run(command, check=True)
    return json.loads(result_path.read_text())


# --- Reading the mp4 back --------------------------------------------------------------------------------------------


def read_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def read_sound(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate, duration = stream.codec_context.sample_rate, float(stream.duration * stream.time_base)
        samples = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1).mean(axis=0)
    return samples[: round(duration * rate)], rate


def seam_frames(total_frames: int, window_frames: int, overlap: int) -> list[int]:
    """The first frame each window after the first wrote."""
    return [window.written_start_frame for window in plan_windows(total_frames, window_frames, overlap)[1:]]


def frame_seams(path: Path, seams: list[int]) -> dict:
    """Mean |frame difference| across seams and within windows, read frame by frame (never the whole video)."""
    across, within, previous = [], [], None
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            pixels = frame.to_ndarray(format="rgb24").astype(np.float32)
            if previous is not None:
                (across if index in seams else within).append(float(np.abs(pixels - previous).mean()))
            previous = pixels
    return {"across": float(np.mean(across)) if across else float("nan"), "within": float(np.mean(within))}


def sound_seams(path: Path, seams: list[int], frame_rate: float) -> dict:
    """Level change and log-spectrum distance of 50 ms before against 50 ms after each seam, and at every 0.25 s at
    least 0.25 s from a seam (the reference: how much the sound changes anyway); and the level there (quiet
    stretches change little wherever they are)."""
    samples, rate = read_sound(path)
    piece = round(SOUND_PIECE_S * rate)
    seams_s = np.array(seams) / frame_rate
    grid = np.arange(0.25, len(samples) / rate, 0.25)
    reference = [time for time in grid if np.abs(seams_s - time).min() >= 0.25]

    def changes(times: list[float]) -> tuple[float, float, float]:
        levels, spectra, loudness = [], [], []
        for time_s in times:
            at = round(time_s * rate)
            if at - piece < 0 or at + piece > len(samples):
                continue
            before, after = samples[at - piece : at], samples[at : at + piece]
            rms = [10 * np.log10(np.mean(part**2) + 1e-10) for part in (before, after)]
            levels.append(abs(rms[0] - rms[1]))
            loudness.append(np.mean(rms))
            spectrum = [
                20 * np.log10(np.abs(np.fft.rfft(part * np.hanning(piece))) + 1e-6) for part in (before, after)
            ]
            spectra.append(float(np.mean(np.abs(spectrum[0] - spectrum[1]))))
        return float(np.mean(levels)), float(np.mean(spectra)), float(np.mean(loudness))

    at_seams, elsewhere = changes(list(seams_s)), changes(reference)
    return {
        "level_db": (at_seams[0], elsewhere[0]),
        "spectrum_db": (at_seams[1], elsewhere[1]),
        "loudness_dbfs": (at_seams[2], elsewhere[2]),
    }


def sync(path: Path, impacts: np.ndarray, frame_rate: float, joins: np.ndarray, seams_s: np.ndarray) -> dict:
    frames = read_frames(path)
    visual = detectors.visual_impacts(frames, frame_rate)
    errors, hits = detectors.match_events(impacts, visual, TOLERANCE_FRAMES / frame_rate)
    hit = errors <= TOLERANCE_FRAMES / frame_rate + 1e-9

    def split(near: np.ndarray) -> str:
        return f"{int(hit[near].sum())}/{int(near.sum())} near, {int(hit[~near].sum())}/{int((~near).sum())} not"

    since_join = impacts - joins[np.searchsorted(joins, impacts, side="right") - 1]
    since_seam = np.array([time - max([0.0, *[seam for seam in seams_s if seam <= time]]) for time in impacts])
    end = len(frames) / frame_rate
    late = impacts >= end - DRIFT_WINDOW_S
    offsets = []
    for time_s in impacts[late]:
        if len(visual):
            nearest = visual[np.argmin(np.abs(visual - time_s))]
            if abs(nearest - time_s) < 0.5:  # a match, not a neighbouring bounce
                offsets.append(nearest - time_s)
    return {
        "within": hits / len(impacts),
        "hits": hits,
        "impacts": len(impacts),
        "drift_ms": 1000 * float(np.median(offsets)) if offsets else float("nan"),
        "drift_impacts": len(offsets),
        "within 1 s after a clip join": split(since_join < 1.0),
        "within 1 s after a seam": split((since_seam < 1.0) & (impacts >= 1.0)),
    }


# --- Report ----------------------------------------------------------------------------------------------------------


def device_name(args: argparse.Namespace) -> str:
    if args.full_size and not args.tiny and torch.cuda.is_available():
        return f"GPU, {torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU, {cpu}, torch threads {args.threads}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=float, nargs="*", default=[10.0, 60.0, 180.0], help="A2V lengths (s)")
    parser.add_argument("--t2av-length", type=float, default=30.0, help="T2AV length (s); 0 skips it")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full-size", action="store_true", help="real-size LTX-2.3, random weights, on the GPU")
    parser.add_argument("--tiny", action="store_true", help="with --full-size: the tiny components on the CPU")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--track-offset",
        type=float,
        default=0.0,
        help="A2V: start this many seconds into the track, so its clip joins (every 97 frames) fall elsewhere in "
        "the windows",
    )
    parser.add_argument(
        "--held-strength", type=float, default=constants.LONG_FORM_HELD_STRENGTH, help="1: held exactly"
    )
    parser.add_argument(
        "--overlap", type=int, default=constants.LONG_FORM_OVERLAP_LATENT_FRAMES, help="latent frames held per seam"
    )
    parser.add_argument(
        "--seam", choices=constants.LONG_FORM_SEAMS, default=constants.LONG_FORM_SEAM, help="how held latents are made"
    )
    parser.add_argument(
        "--model",
        default="embedded",
        help="without --full-size: the model to load (default: the embedded model; a "
        "folder in its format, e.g. a training candidate)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_LONG_FORM.md"))
    parser.add_argument("--keep", type=Path, default=None, help="a folder to keep the mp4s in")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        run_one(args)
        return
    full = args.full_size and not args.tiny
    height, width = (512, 768) if full else (64, 64) if args.tiny else (128, 128)
    window_frames = 121 if full else 17 if args.tiny else 97
    frame_rate = 24.0
    overlap = args.overlap
    shared = {"height": height, "width": width, "window_frames": window_frames, "overlap_latent_frames": overlap}
    shared |= {"frame_rate": frame_rate, "seed": args.seed, "mode": "distilled", "seam": args.seam}
    shared["held_strength"] = args.held_strength
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            folder = args.keep
        sync_length = min(args.lengths, key=lambda length: abs(length - SYNC_LENGTH_S), default=None)
        for length in args.lengths:
            offset = args.track_offset
            track, impacts, caption, joins = world_track(length + offset, frame_rate, folder)
            impacts, joins = impacts[impacts >= offset] - offset, joins - offset  # times in the output
            output = folder / f"a2v_{length:g}.mp4"
            kwargs = {"audio": str(track), "prompt": caption, "output": str(output), **shared}
            if offset:
                kwargs |= {"audio_start_time": offset, "duration_s": float(length)}
            print(f"audio to video, {length:g} s", flush=True)
            result = generate(args, kwargs, folder, f"a2v_{length:g}")
            total = round(result["duration_s"] * frame_rate)
            seams_at = seam_frames(total, window_frames, overlap)
            row = {"run": f"A2V {length:g} s", **result, "seams": frame_seams(output, seams_at)}
            if length == sync_length:
                row["sync"] = sync(output, impacts, frame_rate, joins, np.array(seams_at) / frame_rate)
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.t2av_length > 0:
            caption = world_track(1.0, frame_rate, folder)[2]
            output = folder / "t2av.mp4"
            kwargs = {"prompt": caption, "duration_s": args.t2av_length, "output": str(output), **shared}
            print(f"text to audio+video, {args.t2av_length:g} s", flush=True)
            result = generate(args, kwargs, folder, "t2av")
            total = round(result["duration_s"] * frame_rate)
            seams_at = seam_frames(total, window_frames, overlap)
            row = {"run": f"T2AV {args.t2av_length:g} s", **result, "seams": frame_seams(output, seams_at)}
            row["sound"] = sound_seams(output, seams_at, frame_rate)
            rows.append(row)
            print(json.dumps(row), flush=True)

    table = [
        "| run | windows | wall (s) | output s / wall s | s per window, median / fastest | peak RSS (MiB) "
        "| RSS after load (MiB) "
        "| peak GPU (MiB) | mp4 (MiB) | frame diff across seams / within |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        gpu = f"{row['peak_gpu_mib']:.0f}" if row["peak_gpu_mib"] is not None else "-"
        per_window = np.diff([0.0, *row["window_end_s"]])
        table.append(
            f"| {row['run']} | {row['windows']} | {row['seconds']:.1f} | {row['duration_s'] / row['seconds']:.3f} "
            f"| {np.median(per_window):.2f} / {np.min(per_window):.2f} | {row['peak_rss_mib']:.0f} "
            f"| {row['rss_after_load_mib']:.0f} "
            f"| {gpu} | {row['mp4_mib']:.1f} | {row['seams']['across']:.2f} / {row['seams']['within']:.2f} |"
        )
    for row in rows:
        if "sync" in row:
            found = row["sync"]
            notes.append(
                f"- A2V sync over {row['run'][4:]}: {100 * found['within']:.0f}% of known impacts "
                f"({found['hits']}/{found['impacts']}) seen within {TOLERANCE_FRAMES} frames (target >= 85%); drift: "
                f"median offset over the last {DRIFT_WINDOW_S:g} s {found['drift_ms']:+.0f} ms over "
                f"{found['drift_impacts']} impacts (target |median| <= 40 ms). Hits within 1 s after a clip join of "
                f"the track: {found['within 1 s after a clip join']}; within 1 s after a seam: "
                f"{found['within 1 s after a seam']}."
            )
        if "sound" in row:
            level, spectrum, loudness = (row["sound"][key] for key in ("level_db", "spectrum_db", "loudness_dbfs"))
            notes.append(
                f"- {row['run']} sound at seams against every 0.25 s elsewhere: level change {level[0]:.2f} vs "
                f"{level[1]:.2f} dB, log-spectrum distance {spectrum[0]:.2f} vs {spectrum[1]:.2f} dB "
                f"({SOUND_PIECE_S * 1000:.0f} ms before against after); level there {loudness[0]:.1f} vs "
                f"{loudness[1]:.1f} dBFS."
            )
    if full:
        model = "LTX-2.3 full size, random bf16 weights"
    elif args.tiny:
        model = "tiny, random"
    else:
        model = "embedded model" if args.model == "embedded" else f"{args.model} (embedded format)"
    report = [
        "# Long form benchmark (issue 26)",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Command: `python {' '.join(sys.argv)}`",
        f"- Device: {device_name(args)}",
        f"- Model: {model}; {width}x{height} (stage 1 at half size), {window_frames}-frame windows holding "
        f"{overlap} latent frames ({args.seam}: {SEAM_NOTES[args.seam]}; strength {args.held_strength:g}), "
        f"{frame_rate:g} fps, distilled (8 + 3 "
        "steps per window)",
        "- Audio: held-out bouncing-ball world clips (seeds 900000+, one red ball on wood in a small room) joined end "
        f"to end (97 frames each; audio to video from {args.track_offset:g} s into the track); text to audio+video "
        "prompted with their caption",
        "- Wall time excludes loading the model; each run is its own process, so each peak memory is its own.",
        "",
        *table,
        "",
        *notes,
        "",
    ]
    text = "\n".join(report)
    print(text)
    if args.out.exists():
        text = text + "\n" + args.out.read_text()  # newest first; earlier runs kept below
    args.out.write_text(text)


if __name__ == "__main__":
    main()
