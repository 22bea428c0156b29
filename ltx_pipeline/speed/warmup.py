"""One generation run before the users' own, so that compiled options compile while nobody waits.

With `SpeedOptions.compile`, `compile_vae` or `forward_graph`, a process's first generation of each size compiles
the blocks (loaded from the persistent cache after the first time: `compile_cache`) and records its CUDA graphs.
The studio runs this at start, at its default size, in the background; its page says so meanwhile.
"""

import time
from dataclasses import dataclass

from .. import constants
from ..pipeline_common import LTXAVPipelineBase
from ..types import Finished
from .acceleration import SpeedOptions


@dataclass(frozen=True)
class WarmUp:
    """What a warm-up generation did."""

    seconds: float
    num_frames: int  # frames it generated (its output is discarded)


def needs_warm_up(speed: SpeedOptions) -> bool:
    """Whether `speed` holds options whose first generation of a size pays a compile or a graph recording."""
    return speed.compile or speed.compile_vae or speed.forward_graph


def warm_up(pipeline: LTXAVPipelineBase, height: int, width: int, num_frames: int, frame_rate: float) -> WarmUp:
    """Runs `pipeline` (text to audio+video) once at the given size on a fixed prompt and discards the clip."""
    start = time.perf_counter()
    frames = 0
    events = pipeline.stream(
        prompt=constants.WARM_UP_PROMPT, height=height, width=width, num_frames=num_frames, frame_rate=frame_rate
    )
    for event in events:
        if isinstance(event, Finished):
            frames = len(event.output.frames)
    return WarmUp(seconds=time.perf_counter() - start, num_frames=frames)
