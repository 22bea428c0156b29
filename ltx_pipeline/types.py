"""Plain data passed between the pipelines, the command line and the app."""

from dataclasses import dataclass, field, fields
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


@dataclass
class Recipe:
    """Everything needed to reproduce a clip, and how its run went: made once from the checked request
    (`LTXAVPipelineBase.prepare_request`), completed by the run, stored beside the mp4 as `to_dict()`."""

    pipeline: str
    model: str
    mode: str  # "distilled" or "dev"
    prompt: str
    negative_prompt: str | None  # None: the reference negative prompt, where CFG needs one
    height: int  # px
    width: int  # px
    num_frames: int
    frame_rate: float  # frames per second
    seed: int
    unknown_words: list[str] = field(default_factory=list)  # prompt words a small model's vocabulary lacks
    images: list[dict[str, Any]] = field(default_factory=list)  # stills held at frames, with any crop notice
    loras: list[dict[str, Any]] = field(default_factory=list)
    model_version: str | None = None  # the LTX-2 generation of the weights: "2.5", "2.3" or "2.0"
    stage_1_sampler: str | None = None  # "euler", or "euler_ancestral" (LTX-2.5 distilled, noise seeded seed + 10000)
    video_decoder: str | None = None  # "conv" (the VAE) or "diffusion" (LTX-2.5's); None: the video is not decoded
    video_guidance: dict[str, Any] | None = None  # None: the video is not generated
    audio_guidance: dict[str, Any] | None = None  # None: the audio is not generated
    inputs: dict[str, Any] = field(default_factory=dict)  # the mode's own inputs and notes (a clip, a span, ...)
    stage_1_sigmas: list[float] | None = None
    stage_2_sigmas: list[float] | None = None  # None: one stage
    audio_sampling_rate: int | None = None  # Hz, of the output's sound
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as files and clients get it: the fields the run set, the mode's own inputs beside them."""
        values = {field.name: getattr(self, field.name) for field in fields(self) if field.name != "inputs"}
        kept = {name: value for name, value in values.items() if value is not None or name == "negative_prompt"}
        return kept | self.inputs


@dataclass(frozen=True)
class StepPreview:
    """Emitted after every denoising step: a cheap look at the current clean estimate."""

    stage: int  # 1 (half resolution) or 2 (full resolution)
    step: int  # 1-based within the stage
    total_steps: int  # steps in this stage
    elapsed_s: float  # since the run started
    video: np.ndarray  # (latent_frames, h, w, 3) uint8 from the model's preview decoder (`previews`), not the VAE
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
    # The finished mp4 of `frames` and `audio`, written while the final decode ran (a pipeline's `output_path`).
    written_mp4: Path | None = None


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
