"""How much work one generation may ask for, refused before any work: pixels x frames per job.

A 6400 x 6400 request held a 2-core server for minutes and a frame count of 800,000,001 ended in an allocator
error; both are valid sizes by the VAE's rules alone. The limit is a product (height x width x num_frames) so a
short clip may be large and a small one long. Its default fits the device (`default_work_limit`); the command line
(`--max-pixel-frames`), the studio (`--max-pixel-frames`) and the environment (`LTX_MAX_PIXEL_FRAMES`) change it.
"""

import os
from dataclasses import dataclass

import torch

from . import constants

MAX_PIXEL_FRAMES_ENV = "LTX_MAX_PIXEL_FRAMES"


@dataclass(frozen=True)
class WorkLimit:
    """The most pixel-frames (height x width x num_frames) one generation may ask for."""

    max_pixel_frames: int
    source: str = "this device's default"  # how the limit was set, for the message that names it

    def __post_init__(self) -> None:
        value = self.max_pixel_frames
        if isinstance(value, bool) or not isinstance(value, int) or value < constants.MIN_PIXEL_FRAMES:
            raise ValueError(
                f"`max_pixel_frames` must be a whole number of at least {constants.MIN_PIXEL_FRAMES:,} "
                f"(64 x 64 x 9, the smallest clip); got {value!r}."
            )

    def check(self, height: int, width: int, num_frames: int) -> None:
        """Raises ValueError naming the request, the limit and how to change it, when the job is too large."""
        work = height * width * num_frames
        if work <= self.max_pixel_frames:
            return
        frames_within = self.max_pixel_frames // (height * width)
        step = constants.VIDEO_TEMPORAL_COMPRESSION
        longest = (frames_within - 1) // step * step + 1  # the longest valid (8k + 1) count within the limit
        fits = (
            f"at {width} x {height} up to {longest} frames"
            if longest >= constants.MIN_NUM_FRAMES
            else "a smaller size"
        )
        raise ValueError(
            f"`height` x `width` x `num_frames` must be at most {self.max_pixel_frames:,} pixel-frames per job on this "
            f"server ({self.source}; {fits} fit); got {height} x {width} x {num_frames} = {work:,}."
        )


def default_work_limit(device: str | torch.device) -> WorkLimit:
    """`LTX_MAX_PIXEL_FRAMES` when set, else the device's default: GPUs take the reference's largest clips, a CPU
    what it renders in about a minute."""
    configured = os.environ.get(MAX_PIXEL_FRAMES_ENV)
    if configured:
        try:
            value = int(configured.replace("_", ""))
        except ValueError:
            raise ValueError(
                f"`{MAX_PIXEL_FRAMES_ENV}` must be a whole number of pixel-frames; got {configured!r}."
            ) from None
        return WorkLimit(value, source=f"set by {MAX_PIXEL_FRAMES_ENV}")
    if torch.device(device).type == "cpu":
        return WorkLimit(constants.CPU_MAX_PIXEL_FRAMES, source="the CPU default")
    return WorkLimit(constants.GPU_MAX_PIXEL_FRAMES, source="the GPU default")
