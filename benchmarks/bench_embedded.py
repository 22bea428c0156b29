"""Benchmark of the embedded model against issue 4's targets, next to the untrained (random) tiny model.

    python benchmarks/bench_embedded.py [--clips 32] [--threads 2] [--skip-random] [--out benchmarks/RESULTS_EMBEDDED.md]

Every clip goes through the product's own pipelines (`A2VidPipelineTwoStage.stream`, `TI2VidTwoStagesPipeline
.stream`) on held-out world scenes (seeds never used in training), and is judged by the detectors in
`world.detectors`, which the "world (ground truth)" row validates on the world's own clips:

- A2V sync: the world's audio goes in with its caption; for each known impact, |nearest visual impact - impact|
  ("A2V median error"), and the share within 2 frames split by impact speed (`world.scene.IMPACT_SPEED_BANDS`: a
  slow impact starts a hop shorter than one latent frame).
- T2AV sync: the caption goes in; % of visual impacts with an audio onset within 2 frames, and the reverse.
- V2A sync: the world's frames go in as an mp4 without their sound, with the caption; % of known impacts with a
  generated audio onset within 2 frames (`V2AudPipeline.stream`).
- Prompt adherence (T2AV clips): ball colour from pixel hue, floor material and room from the sound.
- Each at modality_scale 1.0 and 3.0 (distilled mode otherwise).
- Speed: a 97-frame clip at the demo resolution on this CPU, end to end, and the time to the first preview.

`--held-out` adds audio to video on audio from generators the training did not use (`benchmarks/held_out_audio.py`),
at each of 24, 25 and 30 fps, distilled, the first of `--modality-scales`:
- irregular tosses (one ball re-tossed at irregular moments, the world's physics and sounds) and drum patterns at
  DRUM_TEMPI_BPM on another drum kit: % of onsets with a visual impact within 2 frames and the median offset (the
  impacts read lane by lane, `world.detectors.visual_impacts_in_lanes`: several balls may share the beat), and %
  of the visual impacts shown that are within 2 frames of an onset;
- the bundled drum example (examples/audio/drum_pattern_120bpm.wav, its onsets read by the detector): % of onsets
  seen within 2 frames over the whole clip and over its last second (does the ball keep following the beat);
- the bundled espeak speech and a whispered voice: Pearson correlation of the pulsing light's size with the
  loudness (`world.detectors.loudness_tracking`).
`--skip-in-world` leaves out the world-clip figures above.
"""

import argparse
import datetime
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from held_out_audio import (  # noqa: E402
    DRUM_BARS,
    DRUM_TEMPI_BPM,
    HeldOutClip,
    drum_pattern,
    hummed_voice,
    irregular_tosses,
    voice_caption,
)

from ltx_pipeline import (  # noqa: E402
    A2VidPipelineTwoStage,
    Audio,
    Finished,
    StepPreview,
    TI2VidTwoStagesPipeline,
    V2AudPipeline,
)
from ltx_pipeline.media import write_mp4  # noqa: E402
from ltx_pipeline.tiny import build_tiny_components  # noqa: E402
from world import (
    SAMPLE_RATE,  # noqa: E402
    detectors,  # noqa: E402
    generate_clip,  # noqa: E402
)

HELD_OUT_SEED = 900_000  # training uses seeds below 10_000_000 * data_seed + num_clips with data_seed 0: < 5000
TOLERANCE_FRAMES = 2
WARM_RUNS = 3  # speed: runs after the first (cold) one; their median is reported
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "ltx_pipeline" / "embedded_model"
EXAMPLE_AUDIO = Path(__file__).resolve().parents[1] / "examples" / "audio"
HELD_OUT_FRAME_RATES = (24.0, 25.0, 30.0)
TOSS_SEED, DRUM_SEED, VOICE_SEED = 7_000_000, 7_100_000, 7_200_000  # far from every training seed (< 5,000,000)
LAST_SECOND_S = 1.0  # the drum example's tail: is the beat still followed there


@dataclass
class Scores:
    a2v_errors_s: list[float] = field(default_factory=list)  # per known impact
    a2v_speeds: list[float] = field(default_factory=list)  # the same impacts' speeds
    t2av_visual_matched: int = 0
    t2av_visual_total: int = 0
    t2av_audio_matched: int = 0
    t2av_audio_total: int = 0
    v2a_heard: int = 0
    v2a_total: int = 0
    colour_hits: int = 0
    material_hits: int = 0
    room_hits: int = 0
    clips: int = 0
    seconds: list[float] = field(default_factory=list)

    def row(self, frame_rate: float) -> dict[str, str]:
        errors = np.array(self.a2v_errors_s)
        tolerance = TOLERANCE_FRAMES / frame_rate

        def percent(hits: int, total: int) -> str:
            return f"{100 * hits / total:.0f}% ({hits}/{total})" if total else "n/a (0 detected)"

        median = np.median(errors) if len(errors) else np.inf
        within = errors <= tolerance + 1e-9
        return {
            # inf where no visual impact at all was detected in a clip; a median of inf means most impacts had none.
            "A2V median error": "> clip (unmatched)" if not np.isfinite(median) else f"{1000 * median:.0f} ms",
            "A2V within 2 frames": percent(int(within.sum()), len(errors)),
            "A2V within 2 fr, slow / middle / fast impacts": " / ".join(
                f"{100 * hits / count:.0f}% of {count}" if count else "-"
                for _, _, count, hits in detectors.hits_by_speed(self.a2v_speeds, within.tolist())
            ),
            "T2AV visual->audio within 2 fr": percent(self.t2av_visual_matched, self.t2av_visual_total),
            "T2AV audio->visual within 2 fr": percent(self.t2av_audio_matched, self.t2av_audio_total),
            "V2A impacts heard within 2 fr": percent(self.v2a_heard, self.v2a_total),
            "colour": percent(self.colour_hits, self.clips),
            "material": percent(self.material_hits, self.clips),
            "room": percent(self.room_hits, self.clips),
            "s / clip": f"{np.mean(self.seconds):.1f}" if self.seconds else "-",
        }


def run_stream(events) -> tuple[np.ndarray, Audio, float, float | None]:
    """Drains a pipeline stream: final frames, audio, wall time and time to the first preview."""
    start = time.perf_counter()
    first_preview = None
    for event in events:
        if isinstance(event, StepPreview) and first_preview is None:
            first_preview = time.perf_counter() - start
        if isinstance(event, Finished):
            return event.output.frames, event.output.audio, time.perf_counter() - start, first_preview
    raise RuntimeError("the stream ended without a Finished event")


def score_t2av(scores: Scores, clip, frames: np.ndarray, audio: np.ndarray, rate: int, frame_rate: float) -> None:
    tolerance = TOLERANCE_FRAMES / frame_rate
    visual = detectors.visual_impacts(frames, frame_rate)
    onsets = detectors.audio_onsets(audio, rate)
    scores.t2av_visual_total += len(visual)
    scores.t2av_visual_matched += detectors.match_events(visual, onsets, tolerance)[1]
    scores.t2av_audio_total += len(onsets)
    scores.t2av_audio_matched += detectors.match_events(onsets, visual, tolerance)[1]
    scores.clips += 1
    scores.colour_hits += detectors.ball_colour(frames) == clip.scene.balls[0].colour
    sound = detectors.classify_sound(audio, rate)
    if sound is not None:
        scores.material_hits += sound[0] == clip.scene.material
        scores.room_hits += sound[1] == clip.scene.room


def score_a2v(scores: Scores, clip, frames: np.ndarray, frame_rate: float) -> None:
    truth = np.array([impact.time for impact in clip.impacts])
    errors, _ = detectors.match_events(truth, detectors.visual_impacts(frames, frame_rate), np.inf)
    scores.a2v_errors_s.extend(errors.tolist())
    scores.a2v_speeds.extend(impact.speed for impact in clip.impacts)


def score_v2a(scores: Scores, clip, audio: np.ndarray, rate: int, frame_rate: float) -> None:
    truth = np.array([impact.time for impact in clip.impacts])
    scores.v2a_total += len(truth)
    scores.v2a_heard += detectors.match_events(
        truth, detectors.audio_onsets(audio, rate), TOLERANCE_FRAMES / frame_rate
    )[1]


def silent_mp4(clip, frame_rate: float, folder: Path) -> Path:
    """The clip's frames as an mp4 whose sound track is silence (video to audio ignores it)."""
    silence = Audio(torch.zeros(2, round(len(clip.frames) / frame_rate * 48000)), 48000)
    return write_mp4(folder / "clip.mp4", clip.frames, silence, frame_rate)


def world_scores(clips, frame_rate: float) -> Scores:
    """The detectors on the world's own clips: the ceiling every model row is judged against."""
    scores = Scores()
    for clip in clips:
        score_a2v(scores, clip, clip.frames, frame_rate)
        score_t2av(scores, clip, clip.frames, clip.audio, clip.sampling_rate, frame_rate)
        score_v2a(scores, clip, clip.audio, clip.sampling_rate, frame_rate)
    return scores


def model_scores(components: dict, clips, args: argparse.Namespace, modality_scale: float) -> Scores:
    t2av = TI2VidTwoStagesPipeline(**components)
    a2v = A2VidPipelineTwoStage(**components)
    v2a = V2AudPipeline(**components)
    scores = Scores()
    geometry = {
        "height": args.height,
        "width": args.width,
        "num_frames": args.num_frames,
        "frame_rate": args.frame_rate,
        "mode": "distilled",
    }
    video_guidance = {"cfg_scale": args.cfg_scale}  # None: the distilled default, one pass per step
    audio_guidance = {"audio_cfg_scale": args.audio_cfg_scale}
    for index, clip in enumerate(clips):
        seed = args.seed + index
        audio = Audio(waveform=torch.from_numpy(clip.audio)[None], sampling_rate=clip.sampling_rate)
        frames, _, seconds_a2v, _ = run_stream(
            a2v.stream(
                audio=audio,
                prompt=clip.caption,
                seed=seed,
                modality_scale=modality_scale,
                **video_guidance,
                **geometry,
            )
        )
        score_a2v(scores, clip, frames, args.frame_rate)
        frames, generated, seconds, _ = run_stream(
            t2av.stream(
                prompt=clip.caption,
                seed=seed,
                modality_scale=modality_scale,
                **video_guidance,
                **audio_guidance,
                **geometry,
            )
        )
        waveform = generated.waveform.float().cpu().mean(dim=0).numpy()
        score_t2av(scores, clip, frames, waveform, generated.sampling_rate, args.frame_rate)
        seconds_v2a = 0.0
        if not args.skip_v2a:
            with tempfile.TemporaryDirectory() as folder:
                video = silent_mp4(clip, args.frame_rate, Path(folder))
                stream = v2a.stream(
                    video=video, prompt=clip.caption, seed=seed, modality_scale=modality_scale, mode="distilled"
                )
                _, sound, seconds_v2a, _ = run_stream(stream)
            waveform = sound.waveform.float().mean(dim=0).numpy()
            score_v2a(scores, clip, waveform, sound.sampling_rate, args.frame_rate)
        scores.seconds.extend([seconds_a2v, seconds, seconds_v2a])
        print(
            f"  clip {index}: {clip.caption[:60]}... a2v {seconds_a2v:.1f} s, t2av {seconds:.1f} s, "
            f"v2a {seconds_v2a:.1f} s",
            flush=True,
        )
    return scores


def speed(components: dict, args: argparse.Namespace) -> dict[str, float]:
    """A 97-frame clip at the demo resolution, text to audio+video, distilled, default guidance: the first (cold)
    run and the median of WARM_RUNS more."""
    pipe = TI2VidTwoStagesPipeline(**components)
    prompt = "a small red ball bounces on a metal floor in a large dark hall, ringing clanks with long echoes"
    results = {}
    warm_seconds, warm_previews = [], []
    for run in range(1 + WARM_RUNS):
        _, _, seconds, first_preview = run_stream(
            pipe.stream(
                prompt=prompt,
                height=args.height,
                width=args.width,
                num_frames=args.num_frames,
                frame_rate=args.frame_rate,
                seed=1,
                mode="distilled",
            )
        )
        if run == 0:
            results["cold end to end (s)"], results["cold first preview (s)"] = seconds, first_preview
        else:
            warm_seconds.append(seconds)
            warm_previews.append(first_preview)
    results["warm end to end, median (s)"] = float(np.median(warm_seconds))
    results["warm first preview, median (s)"] = float(np.median(warm_previews))
    return results


# --- held-out audio -------------------------------------------------------------------------------------------------


def bundled_audio(name: str, num_samples: int) -> np.ndarray:
    """A bundled example's 16 kHz mono samples, cut (or padded with silence) to `num_samples`."""
    import soundfile

    audio, rate = soundfile.read(EXAMPLE_AUDIO / name, dtype="float32")
    audio = detectors.resample(audio.mean(axis=1) if audio.ndim == 2 else audio, rate, SAMPLE_RATE)
    return np.pad(audio, (0, max(num_samples - len(audio), 0)))[:num_samples]


def held_out_clips(num_frames: int, frame_rate: float, tosses: int) -> dict[str, list[HeldOutClip]]:
    """The held-out sets at one frame rate: tosses, drum patterns, the drum example and two voices."""
    num_samples = round(num_frames / frame_rate * SAMPLE_RATE)
    bars = list(DRUM_BARS)
    example = bundled_audio("drum_pattern_120bpm.wav", num_samples)
    drum_caption = drum_pattern(DRUM_SEED, 120.0, 9, frame_rate).caption  # a drum scene's words, any balls
    speech = bundled_audio("speech_espeak.wav", num_samples)
    return {
        "tosses": [irregular_tosses(TOSS_SEED + index, num_frames, frame_rate) for index in range(tosses)],
        "drums": [
            drum_pattern(DRUM_SEED + index, tempo, num_frames, frame_rate, bars[index % len(bars)])
            for index, tempo in enumerate(DRUM_TEMPI_BPM)
        ],
        "example": [
            HeldOutClip("drum_pattern_120bpm.wav", example, detectors.audio_onsets(example), drum_caption, None)
        ],
        "voices": [
            HeldOutClip("speech_espeak.wav", speech, np.array([]), voice_caption(VOICE_SEED), None),
            hummed_voice(VOICE_SEED, num_frames, frame_rate),
        ],
    }


@dataclass
class HeldOutScores:
    errors_s: dict[str, list[float]] = field(default_factory=dict)  # set -> per onset, |nearest visual impact - onset|
    shown: int = 0  # visual impacts in the tosses' and drums' clips
    shown_real: int = 0  # of them, within 2 frames of an onset
    example_last: list[float] = field(default_factory=list)  # the drum example's errors in its last second
    tracking: dict[str, float] = field(default_factory=dict)  # voice -> correlation

    def add(self, name: str, clip: HeldOutClip, frames: np.ndarray, frame_rate: float) -> None:
        """Score one clip's frames (a model's, or the world's rendering) against its onsets or loudness."""
        if name == "voices":
            self.tracking[clip.name] = detectors.loudness_tracking(frames, frame_rate, clip.audio, SAMPLE_RATE)
            return
        shown = detectors.visual_impacts_in_lanes(frames, frame_rate)
        errors, _ = detectors.match_events(clip.onsets, shown, np.inf)
        self.errors_s.setdefault(name, []).extend(errors.tolist())
        if name == "example":
            last = clip.onsets > len(frames) / frame_rate - LAST_SECOND_S
            self.example_last.extend(errors[last].tolist())
        else:
            self.shown += len(shown)
            self.shown_real += detectors.match_events(shown, clip.onsets, TOLERANCE_FRAMES / frame_rate)[1]

    def row(self, frame_rate: float) -> dict[str, str]:
        tolerance = TOLERANCE_FRAMES / frame_rate + 1e-9

        def seen(errors: list[float]) -> str:
            if not errors:
                return "-"
            hits = int((np.array(errors) <= tolerance).sum())
            return f"{100 * hits / len(errors):.0f}% ({hits}/{len(errors)})"

        def median(errors: list[float]) -> str:
            value = np.median(errors) if errors else np.inf
            return f"{1000 * value:.0f} ms" if np.isfinite(value) else "> clip (unmatched)"

        row = {}
        for name in ("tosses", "drums"):
            row[f"{name}: seen within 2 fr"] = seen(self.errors_s.get(name, []))
            row[f"{name}: median offset"] = median(self.errors_s.get(name, []))
        row["impacts shown that are real"] = (
            f"{100 * self.shown_real / self.shown:.0f}% ({self.shown_real}/{self.shown})" if self.shown else "-"
        )
        row["drum example: seen within 2 fr (last second)"] = (
            f"{seen(self.errors_s.get('example', []))} ({seen(self.example_last)})"
            if self.errors_s.get("example")
            else "-"
        )
        row["pulse-loudness r (espeak / whispered)"] = (
            " / ".join(f"{value:.2f}" for value in self.tracking.values()) if self.tracking else "-"
        )
        return row


def held_out_truth(sets: dict[str, list[HeldOutClip]], frame_rate: float) -> HeldOutScores:
    """The detectors on the world's own rendering of the tosses and drum patterns (their ceiling)."""
    scores = HeldOutScores()
    for name, clips in sets.items():
        for clip in clips:
            if clip.frames is not None:
                scores.add(name, clip, clip.frames, frame_rate)
    return scores


def held_out_model(
    components: dict, sets: dict[str, list[HeldOutClip]], args: argparse.Namespace, frame_rate: float
) -> HeldOutScores:
    a2v = A2VidPipelineTwoStage(**components)
    scores = HeldOutScores()
    for name, clips in sets.items():
        for index, clip in enumerate(clips):
            audio = Audio(waveform=torch.from_numpy(clip.audio)[None], sampling_rate=SAMPLE_RATE)
            frames, _, seconds, _ = run_stream(
                a2v.stream(
                    audio=audio,
                    prompt=clip.caption,
                    seed=args.seed + index,
                    modality_scale=args.modality_scales[0],
                    height=args.height,
                    width=args.width,
                    num_frames=args.num_frames,
                    frame_rate=frame_rate,
                    mode="distilled",
                )
            )
            scores.add(name, clip, frames, frame_rate)
            print(f"  {frame_rate:g} fps, {clip.name}: {seconds:.1f} s", flush=True)
    return scores


def held_out_report(models: dict, args: argparse.Namespace) -> list[str]:
    rows = []
    for frame_rate in HELD_OUT_FRAME_RATES:
        sets = held_out_clips(args.num_frames, frame_rate, args.held_out_tosses)
        rows.append((f"world (ground truth), {frame_rate:g} fps", held_out_truth(sets, frame_rate).row(frame_rate)))
        for name, build in models.items():
            print(f"held-out audio, {name}, {frame_rate:g} fps", flush=True)
            scores = held_out_model(build(), sets, args, frame_rate)
            rows.append((f"{name}, {frame_rate:g} fps", scores.row(frame_rate)))
            print(markdown_table(rows), flush=True)
    return [
        "## Held-out audio to video (generators the training did not use)",
        "",
        f"Audio to video, distilled, modality_scale {args.modality_scales[0]:g}, {args.num_frames} frames at "
        f"{args.width}x{args.height}; {args.held_out_tosses} irregular-toss clips, drum patterns at "
        f"{', '.join(f'{t:g}' for t in DRUM_TEMPI_BPM)} bpm, the bundled drum example, the bundled espeak speech and a "
        "whispered voice (`benchmarks/held_out_audio.py`). Targets: >= 85% of onsets seen within 2 frames, median "
        "offset <= 40 ms, pulse-loudness correlation >= 0.7.",
        "",
        markdown_table(rows),
        "",
    ]


def load_trained(model: str, device: str = "cpu") -> dict:
    # float32 on the CPU: bf16 matrix products are slower there and the model is small.
    pipe = TI2VidTwoStagesPipeline.from_model(model, torch_dtype=torch.float32)
    return {
        key: component.to(device) if isinstance(component, torch.nn.Module) else component
        for key, component in pipe.components.items()
    }


def markdown_table(rows: list[tuple[str, dict[str, str]]]) -> str:
    header = list(rows[0][1])
    lines = ["| model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    lines += [f"| {name} | " + " | ".join(values[key] for key in header) + " |" for name, values in rows]
    return "\n".join(lines)


def guidance_label(args: argparse.Namespace) -> str:
    """The non-default guidance of a row, e.g. ", audio CFG 3"; empty for the distilled default."""
    scales = {"video CFG": args.cfg_scale, "audio CFG": args.audio_cfg_scale}
    return "".join(f", {label} {value:g}" for label, value in scales.items() if value is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--clips",
        type=int,
        default=32,
        help="held-out scenes per model and modality scale (16 swing ~5 points between seeds; 32 take ~20 min on 2 cores)",
    )
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--num-frames", type=int, default=97)
    parser.add_argument("--frame-rate", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the issue's target machine has 2 cores)")
    parser.add_argument("--modality-scales", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--held-out", action="store_true", help="add audio to video on held-out generators' audio")
    parser.add_argument("--held-out-tosses", type=int, default=3, help="irregular-toss clips per frame rate")
    parser.add_argument("--skip-in-world", action="store_true", help="leave out the world-clip sync and adherence")
    parser.add_argument("--skip-v2a", action="store_true", help="leave out video to audio (it writes an mp4: PyAV)")
    parser.add_argument("--device", default="cpu", help="where the trained model runs, e.g. cuda (default cpu)")
    parser.add_argument("--skip-random", action="store_true", help="score the trained model alone, not the random one")
    parser.add_argument("--cfg-scale", type=float, default=None, help="video CFG in both pipelines (default: none)")
    parser.add_argument("--audio-cfg-scale", type=float, default=None, help="audio CFG in T2AV (default: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_EMBEDDED.md"))
    parser.add_argument(
        "--model",
        default="embedded",
        help="the trained model to score: 'embedded' (the shipped one) or a diffusers-format folder, e.g. a candidate",
    )
    args = parser.parse_args()
    if args.clips < 1 or args.threads < 1 or args.held_out_tosses < 1:
        parser.error(
            f"--clips, --threads and --held-out-tosses must be >= 1; got --clips {args.clips}, --threads "
            f"{args.threads}, --held-out-tosses {args.held_out_tosses}"
        )
    if args.model != "embedded" and not (Path(args.model) / "model_index.json").is_file():
        parser.error(f"--model must be 'embedded' or a folder with a model_index.json; got {args.model!r}")
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(sys.argv)
    clips = [
        generate_clip(HELD_OUT_SEED + index, args.height, args.width, args.num_frames, args.frame_rate)
        for index in range(args.clips)
    ]

    models = {} if args.skip_random else {"random (tiny, untrained)": lambda: build_tiny_components("2.3")}
    if args.model != "embedded":
        models = {f"{args.model} (trained)": lambda: load_trained(args.model, args.device), **models}
    elif (EMBEDDED_DIR / "model_index.json").is_file():
        models = {"embedded (trained)": lambda: load_trained("embedded", args.device), **models}
    rows = [("world (ground truth)", world_scores(clips, args.frame_rate).row(args.frame_rate))]
    speeds = {}
    for name, build in models.items():
        if args.skip_in_world and args.skip_speed:
            break
        components = build()
        for modality_scale in args.modality_scales if not args.skip_in_world else []:
            print(f"{name}, modality_scale {modality_scale}", flush=True)
            scores = model_scores(components, clips, args, modality_scale)
            rows.append(
                (f"{name}, modality_scale {modality_scale:g}{guidance_label(args)}", scores.row(args.frame_rate))
            )
            print(markdown_table(rows), flush=True)
        if not args.skip_speed:
            speeds[name] = speed(components, args)
            print(name, speeds[name], flush=True)

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    report = [
        "# Embedded model benchmark (issue 4)",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Command: `{command}`",
        f"- Device: CPU, {cpu}, torch threads {args.threads}, torch {torch.__version__}"
        + (f"; the trained model on {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""),
        f"- Clips: {args.clips} held-out world scenes (seeds {HELD_OUT_SEED}+), {args.num_frames} frames at "
        f"{args.frame_rate:g} fps, {args.width}x{args.height} (stage 1 at half size), distilled mode (8 + 3 steps)",
        "- Targets: A2V median <= 40 ms and >= 90% within 2 frames; T2AV >= 80% both ways; adherence >= 90%;",
        "  V2A >= 80% of impacts heard within 2 frames;",
        "  97 frames end to end < 20 s and first preview < 2 s on a 2-core CPU.",
        "",
    ]
    if not args.skip_in_world:
        report += [
            "## Sync and prompt adherence",
            "",
            markdown_table(rows),
            "",
            "The world row runs the same detectors on the ground-truth clips (their accuracy ceiling).",
            "",
        ]
    if args.held_out:
        report += held_out_report({name: build for name, build in models.items() if "random" not in name}, args)
    if speeds:
        report += ["## Speed (text to audio+video, 97 frames, distilled, default guidance)", ""]
        keys = list(next(iter(speeds.values())))
        report += ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        report += [
            f"| {name} | " + " | ".join(f"{values[key]:.2f}" for key in keys) + " |" for name, values in speeds.items()
        ]
        report.append("")
    args.out.write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
