"""The settings a run takes when the user names none, for the model that is loaded.

The command line, the studio, the API and the README's examples all take their defaults from here, so that a bare
command gives a real clip in seconds on the embedded model and the reference's size on real weights.
"""

import math
from dataclasses import dataclass

from . import constants, validation


@dataclass(frozen=True)
class ModelDefaults:
    """One model's defaults: size, length, rate and guidance, and the longest clip it is offered."""

    height: int  # px
    width: int  # px
    num_frames: int  # 8k + 1
    frame_rate: float  # frames per second
    modality_scale: float | None  # None: the pipeline's own (3 for dev, 1 for distilled checkpoints)
    max_num_frames: int  # the longest clip an uploaded audio clip is fitted to, and the studio's menu offers
    sizes: tuple[str, ...] | None = None  # "WxH" sizes the model was trained at; None: any multiple of 64
    frame_rates: tuple[float, ...] | None = (
        None  # fps the model was trained at (the studio warns at others); None: any
    )

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


# The embedded model learned from 128 x 128, 97-frame, 24 fps clips of the bouncing-ball world (training/, world/),
# and runs the distilled schedule with one pass a step: modality guidance made its sync and material no better
# (benchmarks/RESULTS_EMBEDDED.md, 2026-12-02).
EMBEDDED_DEFAULTS = ModelDefaults(
    height=128,
    width=128,
    num_frames=97,
    frame_rate=24.0,
    modality_scale=1.0,
    max_num_frames=97,
    sizes=("128x128",),
    frame_rates=(24.0,),  # its only training rate (training/README.md); other rates: benchmarks/RESULTS_EMBEDDED.md
)
# Real LTX-2.3 weights: the reference pipelines' defaults.
REFERENCE_DEFAULTS = ModelDefaults(
    height=constants.DEFAULT_HEIGHT,
    width=constants.DEFAULT_WIDTH,
    num_frames=constants.DEFAULT_NUM_FRAMES,
    frame_rate=constants.DEFAULT_FRAME_RATE,
    modality_scale=None,
    max_num_frames=257,  # 10.7 s at 24 fps, the reference's longest
)


def defaults_for_model(model: str) -> ModelDefaults:
    """The defaults for `--model` / `LTX_MODEL` as given (known before loading, so inputs are checked first)."""
    return EMBEDDED_DEFAULTS if model == constants.EMBEDDED_MODEL_NAME else REFERENCE_DEFAULTS


def longest_frames_within(seconds: float, frame_rate: float, max_num_frames: int) -> int | None:
    """The longest valid frame count (8k + 1, at most `max_num_frames`) whose video lasts no longer than `seconds`;
    None when even the shortest clip is longer."""
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    # A hair of tolerance: 97 frames at 24 fps is 4.041666... s, and a clip cut to that length must count.
    whole = math.floor(seconds * frame_rate + 1e-6)
    count = min(max_num_frames, (whole - 1) // step * step + 1 if whole >= 1 else 0)
    if count < constants.MIN_NUM_FRAMES:
        return None
    validation.check_num_frames(count)
    return count
