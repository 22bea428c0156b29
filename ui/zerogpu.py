"""Optional Hugging Face ZeroGPU support: `spaces.GPU` with a duration computed from the request.

Where the `spaces` package is absent (any machine but a Space), `on_gpu` returns the handler unchanged.
"""

import logging
import math
from collections.abc import Callable
from typing import Any

from ltx_pipeline import constants, validation, versions
from ltx_pipeline.modes import Mode
from ltx_pipeline.video_input import probe_video

from . import help as studio_help
from .long_form import window_count

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
    """Seconds of GPU to ask ZeroGPU for: stage 1 at half size with its guidance passes, stage 2 at full size; a
    one-stage mode runs the stage-1 schedule at full size."""
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
        seconds = SAFETY_FACTOR * (
            FIXED_OVERHEAD_S + stage_1_steps * passes * forward_seconds(num_frames, height, width)
        )
        return int(min(MAX_DURATION_S, max(MIN_DURATION_S, seconds)))
    stage_1 = stage_1_steps * passes * forward_seconds(num_frames, height // 2, width // 2)
    stage_2 = STAGE_2_STEPS * forward_seconds(num_frames, height, width)
    seconds = SAFETY_FACTOR * (FIXED_OVERHEAD_S + stage_1 + stage_2)
    return int(min(MAX_DURATION_S, max(MIN_DURATION_S, seconds)))


def windows_asked(values: dict[str, Any]) -> int:
    """How many windows a request makes: `duration_s` > 0 on a tab that extends asks for chained windows of the chosen
    Length (`ui.long_form`); 1 for one clip, or while an input is invalid (the handler names it at once)."""
    duration_s = values.get("duration_s")
    if duration_s in (None, "", 0):
        return 1
    try:
        duration_s = studio_help.real_number("duration_s", duration_s)
        num_frames = studio_help.whole_number("num_frames", values.get("num_frames"))
        validation.check_num_frames(num_frames)
        frame_rate = studio_help.real_number("frame_rate", values.get("frame_rate"))
        validation.check_frame_rate(frame_rate)
        if not math.isfinite(duration_s) or duration_s <= 0:
            return 1
        return window_count(duration_s, num_frames, frame_rate)
    except ValueError:  # e.g. a window too short to hold the overlap
        return 1


def duration_for(mode: Mode, parameters: tuple[str, ...]) -> Callable[..., int]:
    """What `spaces.GPU` calls with a mode's handler arguments (named `parameters`, in order): its GPU seconds. A
    mode that takes a video reads its size and length from the video's header. A long run (`duration_s`) asks for
    its window count times one window's seconds, at most `MAX_DURATION_S`: ZeroGPU ends a call at its duration, so a
    run needing more ends there with ZeroGPU's error (a warning in the log says so beforehand)."""

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
        window_s = estimate_gpu_seconds(
            num_frames, size, schedule, values.get("num_inference_steps"), values.get("modality_scale"), mode.two_stage
        )
        windows = windows_asked(values)
        if windows * window_s > MAX_DURATION_S:
            logger.warning(
                "ZeroGPU: a run of %d windows needs about %d s of GPU, more than the %d s a call may ask for; it "
                "will be stopped there",
                windows,
                windows * window_s,
                MAX_DURATION_S,
            )
        return min(MAX_DURATION_S, windows * window_s)

    return duration


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (the `spaces` package says so), where each call runs in a forked GPU worker."""
    try:
        from spaces.config import Config
    except ImportError:
        return False
    return bool(Config.zero_gpu)


def on_gpu(handler: Callable, duration: Callable[..., int]) -> Callable:
    """`spaces.GPU(duration=duration)(handler)` on a Space with the `spaces` package; `handler` itself elsewhere."""
    try:
        import spaces
    except ImportError:
        return handler
    logger.info("ZeroGPU: %s asks for a GPU per call, duration from the request", handler.__name__)
    return spaces.GPU(duration=duration)(handler)
