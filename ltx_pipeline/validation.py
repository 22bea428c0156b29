"""Input checks shared by the pipelines, the command line and the app.

Each check raises `ValueError` naming the argument, the value received and what is valid. Nothing is rounded,
clamped or resized here: a wrong value is an error, with the nearest valid values offered.
"""

import math
import os
from pathlib import Path

from . import constants
from .types import GuidanceParams


def valid_frame_counts(limit: int = 257) -> list[int]:
    """Frame counts the video VAE accepts (8k + 1), up to `limit`."""
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    return list(range(1 + step, limit + 1, step))


def nearest_valid_frame_counts(num_frames: int) -> tuple[int, int]:
    """The valid counts just below and just above `num_frames` (equal when it is valid)."""
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    below = max(1 + step, (num_frames - 1) // step * step + 1)
    above = max(1 + step, math.ceil((num_frames - 1) / step) * step + 1)
    return below, above


def frames_for_duration(seconds: float, frame_rate: float) -> int:
    """The valid frame count whose duration is closest to `seconds` (ties go to the shorter clip)."""
    below, above = nearest_valid_frame_counts(max(1, math.floor(seconds * frame_rate)))
    candidates = sorted({below, above, above + constants.VIDEO_TEMPORAL_COMPRESSION})
    return min(candidates, key=lambda count: (abs(count / frame_rate - seconds), count))


def check_output_path(path: "str | os.PathLike | None") -> Path | None:
    """`output_path` as a Path (None stays None): a file name ending in .mp4 that is not a folder."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`output_path` must be None or a file path ending in .mp4; got {type(path).__name__}.")
    mp4_path = Path(path)
    if mp4_path.suffix.lower() != ".mp4" or mp4_path.is_dir():
        raise ValueError(f"`output_path` must be a file name ending in .mp4; got {str(mp4_path)!r}.")
    return mp4_path


def check_num_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        raise ValueError(f"`num_frames` must be an integer 8k+1 (e.g. 97 or 121); got {num_frames!r}.")
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    if num_frames < 1 + step or (num_frames - 1) % step != 0:
        below, above = nearest_valid_frame_counts(num_frames)
        nearest = f"{below} or {above}" if below != above else f"{below}"
        raise ValueError(f"`num_frames` must be 8k+1 and at least {1 + step} (nearest: {nearest}); got {num_frames}.")


def check_size(height: int, width: int, multiple: int = constants.TWO_STAGE_SIZE_MULTIPLE) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < multiple or value % multiple != 0:
            if isinstance(value, int) and not isinstance(value, bool):
                lower = max(multiple, value // multiple * multiple)
                upper = max(multiple, math.ceil(value / multiple) * multiple)
                nearest = f" (nearest: {lower} or {upper})" if lower != upper else f" (nearest: {lower})"
            else:
                nearest = ""
            raise ValueError(
                f"`{name}` must be a positive multiple of {multiple} pixels for two-stage generation{nearest}; "
                f"got {value!r}."
            )


def check_frame_rate(frame_rate: float) -> None:
    if (
        isinstance(frame_rate, bool)
        or not isinstance(frame_rate, (int, float))
        or not math.isfinite(frame_rate)
        or not constants.MIN_FRAME_RATE <= frame_rate <= constants.MAX_FRAME_RATE
    ):
        raise ValueError(
            f"`frame_rate` must be a number from {constants.MIN_FRAME_RATE:g} to {constants.MAX_FRAME_RATE:g} "
            f"frames per second; got {frame_rate!r}."
        )


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"`seed` must be an integer from 0 to 2**63 - 1; got {seed!r}.")


def check_steps(num_inference_steps: int, name: str = "num_inference_steps") -> None:
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
        raise ValueError(f"`{name}` must be an integer from 1 to 200; got {num_inference_steps!r}.")
    if not 1 <= num_inference_steps <= 200:
        raise ValueError(f"`{name}` must be from 1 to 200; got {num_inference_steps}.")


def check_scale(name: str, value: float, minimum: float, maximum: float = constants.MAX_GUIDANCE_SCALE) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not minimum <= value <= maximum
    ):
        raise ValueError(f"`{name}` must be a number from {minimum:g} to {maximum:g}; got {value!r}.")


def check_guidance(params: GuidanceParams, modality: str, num_layers: int) -> None:
    """Checks one modality's guidance; `num_layers` is the transformer's depth, for the STG block indices."""
    check_scale(f"{modality}_cfg_scale", params.cfg_scale, 1.0)
    check_scale(f"{modality}_stg_scale", params.stg_scale, 0.0)
    check_scale(f"{modality}_rescale_scale", params.rescale_scale, 0.0, 1.0)
    check_scale(f"{modality}_modality_scale" if modality == "audio" else "modality_scale", params.modality_scale, 1.0)
    if params.stg_scale > 0:
        if not params.stg_blocks:
            raise ValueError(f"`stg_blocks` must name at least one block when `{modality}_stg_scale` > 0; got none.")
        bad = [block for block in params.stg_blocks if not 0 <= block < num_layers]
        if bad:
            raise ValueError(
                f"`stg_blocks` must be block indices from 0 to {num_layers - 1} (this model has {num_layers} "
                f"blocks); got {list(params.stg_blocks)}."
            )


def check_prompt(prompt: str, name: str = "prompt", allow_empty: bool = False) -> None:
    if not isinstance(prompt, str):
        raise ValueError(f"`{name}` must be a string; got {type(prompt).__name__}.")
    if not allow_empty and not prompt.strip():
        raise ValueError(f"`{name}` must describe the clip; got an empty prompt.")
    if len(prompt) > constants.MAX_PROMPT_CHARS:
        raise ValueError(
            f"`{name}` must be at most {constants.MAX_PROMPT_CHARS} characters; got {len(prompt)} characters."
        )


def check_audio_start_time(audio_start_time: float) -> None:
    if (
        isinstance(audio_start_time, bool)
        or not isinstance(audio_start_time, (int, float))
        or not math.isfinite(audio_start_time)
        or audio_start_time < 0
    ):
        raise ValueError(f"`audio_start_time` must be a number of seconds >= 0; got {audio_start_time!r}.")


def check_mode(mode: str) -> None:
    if mode not in ("distilled", "dev"):
        raise ValueError(f"`mode` must be 'distilled' or 'dev'; got {mode!r}.")
