"""Optional Hugging Face ZeroGPU support: `spaces.GPU` with a duration computed from the request.

Where the `spaces` package is absent (any machine but a Space), `on_gpu` returns the handler unchanged.

A ZeroGPU call lasts at most `MAX_DURATION_S` and runs in a forked GPU worker that hands back what it yields by
pickling it. A one-clip run is one call. A long run (chained windows) is not: its handler stays in the studio
process, which runs its windows as groups that each fit one call (`windows_in_calls`), passing the run's plan and
resume point (`ltx_pipeline.pipeline_long_form`) from call to call, and grows the mp4 itself.
"""

import functools
import inspect
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from ltx_pipeline import constants, versions
from ltx_pipeline.modes import Mode
from ltx_pipeline.pipeline_long_form import LongFormPipeline, LongFormPlan, LongFormResume, LongFormWriter, portable
from ltx_pipeline.types import PipelineEvent
from ltx_pipeline.video_input import probe_video

from . import help as studio_help

logger = logging.getLogger(__name__)

# Transformer forward time on an H100 (bf16, eager), fitted as a * tokens + b * tokens^2 to the measurements in the
# project's reference notes: 0.553 s at 6,144 video tokens and 2.672 s at 24,576.
SECONDS_PER_TOKEN = 8.4e-5  # s per video token per forward
SECONDS_PER_TOKEN_SQUARED = 1.0e-9  # s per (video token)^2 per forward: attention's quadratic share
FIXED_OVERHEAD_S = 20.0  # s: text encoding, VAE decodes, vocoder, moving weights onto the GPU
SAFETY_FACTOR = 1.5  # ZeroGPU stops a task at its duration; asking too little loses the whole run
MIN_DURATION_S = 30  # s
MAX_DURATION_S = 300  # s: what a ZeroGPU Space can ask for a single call
UNKNOWN_REQUEST_DURATION_S = 60  # s: for a request too malformed to estimate (the handler rejects it at once)
DISTILLED_STAGE_1_STEPS = len(constants.DISTILLED_STAGE_1_SIGMAS) - 1
STAGE_2_STEPS = len(constants.DISTILLED_STAGE_2_SIGMAS) - 1
LATENT_PIXELS = 32  # px per latent cell (video VAE spatial compression)


def forward_seconds(num_frames: int, height: int, width: int) -> float:
    """Estimated seconds for one transformer pass at this size on an H100."""
    latent_frames = (num_frames - 1) // constants.VIDEO_TEMPORAL_COMPRESSION + 1
    tokens = latent_frames * (height // LATENT_PIXELS) * (width // LATENT_PIXELS)
    return SECONDS_PER_TOKEN * tokens + SECONDS_PER_TOKEN_SQUARED * tokens**2


def estimate_gpu_seconds(
    num_frames: Any, resolution: Any, mode: Any, num_inference_steps: Any, modality_scale: Any, two_stage: bool = True
) -> int:
    """Seconds of GPU to ask ZeroGPU for one clip (or one window), from `MIN_DURATION_S` to `MAX_DURATION_S`."""
    seconds = clip_gpu_seconds(num_frames, resolution, mode, num_inference_steps, modality_scale, two_stage)
    return int(min(MAX_DURATION_S, max(MIN_DURATION_S, seconds)))


def clip_gpu_seconds(
    num_frames: Any, resolution: Any, mode: Any, num_inference_steps: Any, modality_scale: Any, two_stage: bool = True
) -> float:
    """Estimated seconds of one clip (or window) with `SAFETY_FACTOR`, unbounded: stage 1 at half size with its
    guidance passes, stage 2 at full size; a one-stage mode runs the stage-1 schedule at full size."""
    try:
        num_frames = studio_help.whole_number("num_frames", num_frames)
        height, width = studio_help.parse_resolution(resolution)
        modality_scale = studio_help.real_number("modality_scale", modality_scale)
        steps = studio_help.whole_number("num_inference_steps", num_inference_steps) if mode == "dev" else None
    except ValueError:
        return UNKNOWN_REQUEST_DURATION_S
    if mode != "distilled":  # "auto" may be a dev checkpoint: ask for the dearer schedule
        steps = steps or constants.DEV_NUM_INFERENCE_STEPS
        stage_1_steps, passes = steps, 4  # conditional, unconditional (CFG), perturbed (STG), isolated (modality)
    else:
        stage_1_steps, passes = DISTILLED_STAGE_1_STEPS, 1 + (modality_scale != 1.0)
    if not two_stage:
        return SAFETY_FACTOR * (FIXED_OVERHEAD_S + stage_1_steps * passes * forward_seconds(num_frames, height, width))
    stage_1 = stage_1_steps * passes * forward_seconds(num_frames, height // 2, width // 2)
    stage_2 = STAGE_2_STEPS * forward_seconds(num_frames, height, width)
    return SAFETY_FACTOR * (FIXED_OVERHEAD_S + stage_1 + stage_2)


def duration_for(mode: Mode, parameters: tuple[str, ...]) -> Callable[..., int]:
    """What `spaces.GPU` calls with a mode's handler arguments (named `parameters`, in order): its GPU seconds. A
    mode that takes a video reads its size and length from the video's header. A long run (`duration_s`) never asks
    through here: `on_gpu` keeps it in the studio process, whose windows ask call by call (`windows_in_calls`)."""

    def duration(*args: Any, **kwargs: Any) -> int:
        values = dict(zip(parameters, args, strict=False)) | kwargs
        size = values.get("resolution")
        num_frames = values.get("num_frames")
        if "video" in values:
            try:
                info = probe_video(values["video"])
            except (ValueError, FileNotFoundError):
                return UNKNOWN_REQUEST_DURATION_S
            size, num_frames = f"{info.width}x{info.height}", num_frames or info.num_frames
        if values.get("length_from_prompt"):
            # The duration head may pick up to its longest length: ask for the GPU time of that one.
            try:
                frame_rate = float(values.get("frame_rate"))
            except (TypeError, ValueError):
                return UNKNOWN_REQUEST_DURATION_S
            frames = int(versions.AUTO_DURATION_MAX_SECONDS * frame_rate)
            num_frames = frames // constants.VIDEO_TEMPORAL_COMPRESSION * constants.VIDEO_TEMPORAL_COMPRESSION + 1
        schedule = values.get("mode")
        return estimate_gpu_seconds(
            num_frames, size, schedule, values.get("num_inference_steps"), values.get("modality_scale"), mode.two_stage
        )

    return duration


# --- Long runs: groups of windows, one call each ---------------------------------------------------------------------


def is_long_run(values: dict[str, Any]) -> bool:
    """Whether a request asks for a length beyond one clip (`duration_s`), so its windows go call by call."""
    return values.get("duration_s") not in (None, "", 0)


def windows_per_call(window_s: float, total_windows: int) -> int:
    """How many windows of `window_s` estimated seconds (safety factor included) one call holds, within
    `MAX_DURATION_S`; `check_window_fits` refuses a window that alone exceeds it."""
    return max(1, min(total_windows, int(MAX_DURATION_S // window_s)))


def group_seconds(num_windows: int, window_s: float) -> int:
    """The duration one call of `num_windows` windows asks for."""
    return int(min(MAX_DURATION_S, max(MIN_DURATION_S, math.ceil(num_windows * window_s))))


def check_window_fits(window_s: float, num_frames: int, height: int, width: int) -> None:
    """Refuses a long run whose one window would need more than one ZeroGPU call, in the terms of the page's Length
    and Resolution, before anything runs."""
    if window_s > MAX_DURATION_S:
        raise ValueError(
            f"`num_frames` {num_frames} at `resolution` {width}x{height} needs about {window_s:.0f} s of GPU for one "
            f"window of a long run, more than the {MAX_DURATION_S} s a ZeroGPU call may last; pick a shorter "
            "`num_frames` or a smaller `resolution`."
        )


def windows_in_calls(
    gpu_windows: Callable[..., Iterator[Any]],
    request: dict[str, Any],
    total_windows: int,
    window_s: float,
    stop_file: Path,
    stopped: Callable[[], bool],
) -> Iterator[PipelineEvent]:
    """A long run's events, as `LongFormPipeline.stream()` yields them, made by calls of `gpu_windows` (a
    `spaces.GPU` function: it takes `request` and `plan`, `resume`, `end`, `gpu_seconds`, `stop_file` by name,
    plans the run in its first call, yields the `LongFormPlan`, then each window's events and `LongFormResume`).

    Each call makes the windows that fit `MAX_DURATION_S`; the plan and the last resume point go into the next. The
    mp4 grows here, in the studio process. `stopped()` true: `stop_file` tells the worker to stop after its step;
    no further call starts, and the finished windows make the mp4. Closed early (the page went away) or failed:
    the stop file is left for a call still in work, which removes it as it stops."""
    plan: LongFormPlan | None = None
    writer: LongFormWriter | None = None
    resume: LongFormResume | None = None
    per_call = windows_per_call(window_s, total_windows)
    first, finished = 0, None
    try:
        while first < total_windows and not stopped():
            end = min(first + per_call, total_windows)
            seconds = group_seconds(end - first, window_s)
            logger.info("ZeroGPU: windows %d-%d of %d in one call of %d s", first + 1, end, total_windows, seconds)
            # Each call is sent the sound its windows read, not the whole song again.
            part = plan.for_windows(first, end) if plan is not None else None
            calls = gpu_windows(**request, plan=part, resume=resume, end=end, gpu_seconds=seconds,
                                stop_file=str(stop_file))  # fmt: skip
            with closing(calls):
                for event in calls:
                    if isinstance(event, LongFormPlan):
                        plan, writer = event, LongFormWriter(event)
                        total_windows = len(plan.windows)
                    elif isinstance(event, LongFormResume):
                        resume = event
                    else:
                        writer.on_event(event)
                        yield event
                    if stopped():
                        stop_file.touch()
            if resume is None or resume.next_window < end:
                break  # stopped within the call
            first = end
        if writer is not None:
            finished = writer.finish(resume)
    except BaseException:
        stop_file.touch()
        if writer is not None:
            writer.abort()
        raise
    stop_file.unlink(missing_ok=True)
    if finished is not None:
        yield finished


def windows_in_worker(
    pipeline: LongFormPipeline, plan: LongFormPlan, resume: LongFormResume | None, end: int, stop_file: str
) -> Iterator[Any]:
    """The GPU worker's side of one call of `windows_in_calls`: the windows up to `end` from `resume`, each event
    with its tensors on the CPU (they are pickled back). The studio's Stop cannot reach the worker's memory: the
    `stop_file` it writes cancels the pipeline here, which ends after its step."""
    with closing(pipeline.run_windows(plan, resume, end)) as events:
        for event in events:
            if Path(stop_file).exists():
                pipeline.cancel()
            yield portable(event)
    Path(stop_file).unlink(missing_ok=True)


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (the `spaces` package says so), where each call runs in a forked GPU worker."""
    try:
        from spaces.config import Config
    except ImportError:
        return False
    return bool(Config.zero_gpu)


def on_gpu(handler: Callable, duration: Callable[..., int]) -> Callable:
    """`spaces.GPU(duration=duration)(handler)` on a Space with the `spaces` package; `handler` itself elsewhere. A
    handler that takes `duration_s` runs a long run outside the GPU call, in the studio process (its windows ask for
    the GPU call by call), and any other run in one call."""
    try:
        import spaces
    except ImportError:
        return handler
    logger.info("ZeroGPU: %s asks for a GPU per call, duration from the request", handler.__name__)
    in_one_call = spaces.GPU(duration=duration)(handler)
    signature = inspect.signature(handler)
    if "duration_s" not in signature.parameters:
        return in_one_call

    @functools.wraps(handler)
    def routed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        values = signature.bind_partial(*args, **kwargs).arguments
        yield from (handler if is_long_run(values) else in_one_call)(*args, **kwargs)

    return routed
