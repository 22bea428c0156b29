"""Plain data passed between the pipelines, the command line and the app."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Audio:
    """A waveform and its sample rate."""

    waveform: torch.Tensor  # (channels, samples), float32 in [-1, 1]
    sampling_rate: int  # Hz

    @property
    def num_channels(self) -> int:
        return self.waveform.shape[0]

    @property
    def num_samples(self) -> int:
        return self.waveform.shape[-1]

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sampling_rate


@dataclass(frozen=True)
class GuidanceParams:
    """One modality's guidance, as the reference `MultiModalGuiderParams` holds it.

    `cfg_scale` 1, `stg_scale` 0 and `modality_scale` 1 each switch their extra transformer pass off.
    """

    cfg_scale: float = 1.0
    stg_scale: float = 0.0
    rescale_scale: float = 0.0
    modality_scale: float = 1.0
    stg_blocks: tuple[int, ...] = ()


@dataclass(frozen=True)
class StepPreview:
    """Emitted after every denoising step: a cheap look at the current clean estimate."""

    stage: int  # 1 (half resolution) or 2 (full resolution)
    step: int  # 1-based within the stage
    total_steps: int  # steps in this stage
    elapsed_s: float  # since the run started
    video: np.ndarray  # (latent_frames, latent_height, latent_width, 3) uint8, a latent-to-RGB projection
    audio: Audio | None  # decoded estimate of the generated audio; None where audio is held fixed (A2V)


@dataclass(frozen=True)
class StageDecoded:
    """Emitted when stage 1 ends: its low-resolution video, decoded, with its audio."""

    stage: int
    elapsed_s: float
    frames: np.ndarray  # (num_frames, height, width, 3) uint8
    audio: Audio
    frame_rate: float


@dataclass(frozen=True)
class LTXAVOutput:
    """A finished generation."""

    frames: np.ndarray  # (num_frames, height, width, 3) uint8 RGB
    audio: Audio  # generated (T2AV) or the user's own cut, unmodified (A2V); lasts num_frames / frame_rate
    frame_rate: float  # frames per second
    recipe: dict[str, Any] = field(default_factory=dict)  # everything needed to reproduce the clip, plus timings
    # The file whose first video stream holds `frames` unchanged (video to audio): saving copies its packets.
    video_source: Path | None = None


@dataclass(frozen=True)
class Finished:
    """The last event of a stream."""

    elapsed_s: float
    output: LTXAVOutput


@dataclass(frozen=True)
class WindowStarted:
    """Long form: a window begins; the `StepPreview` and `StageDecoded` events until its `WindowFinished` are its own."""

    window: int  # 1-based
    total_windows: int
    start_s: float  # the clip's time at the window's first frame
    end_s: float  # the clip's time at the end of the last frame it writes
    prompt: str  # the prompt timeline's prompt for the window (or the main prompt)


@dataclass(frozen=True)
class WindowFinished:
    """Long form: a window is decoded and appended to the output; `frames` and `audio` are what it added."""

    window: int  # 1-based
    total_windows: int
    elapsed_s: float  # since the run started
    frames: np.ndarray  # (frames added, height, width, 3) uint8: the window's frames after those it shares
    audio: Audio  # the sound that plays with `frames` (the user's own in audio to video)
    frame_rate: float
    written_s: float  # the output's length so far


@dataclass(frozen=True)
class LongFormFinished:
    """Long form's last event: the mp4 was written window by window and is final (also after a Stop)."""

    elapsed_s: float
    path: Path  # the mp4
    recipe_path: Path  # its recipe, beside it
    duration_s: float  # of the mp4
    stopped: bool  # Stop ended the run early: the mp4 holds the windows finished before it
    recipe: dict[str, Any] = field(default_factory=dict)


PipelineEvent = StepPreview | StageDecoded | Finished | WindowStarted | WindowFinished | LongFormFinished
