"""The runner of one or two diffusion stages for any pair of stream specs, yielding the events every mode shares.

A mode declares its first `Stage` and, for a two-stage mode, how the second is made from the first's result (the
reference's stage 1, latent upsampler, stage 2). Between them the runner decodes stage 1 so the user sees it.
"""

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol

import torch

from ..types import Audio, PipelineEvent, StageDecoded, StepPreview
from .denoise import denoise
from .latents import LatentGeometry
from .prompt import TextConditioning
from .streams import NoiseSource, StreamSpec, start_latents


@dataclass(frozen=True)
class Stage:
    """One diffusion stage: its number (which LoRA set, what events say), size, schedule and streams."""

    number: int
    geometry: LatentGeometry
    sigmas: list[float]
    video: StreamSpec
    audio: StreamSpec


@dataclass(frozen=True)
class StageResult:
    """A finished stage's latents, packed and normalised."""

    stage: Stage
    video_latents: torch.Tensor
    audio_latents: torch.Tensor


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run shares."""

    num_frames: int
    frame_rate: float
    positive: TextConditioning
    negative: TextConditioning | None
    noise: NoiseSource
    started: float  # time.perf_counter() at the run's start
    timings: dict[str, float]
    preview_audio: bool = True
    kept_audio: Audio | None = None  # the user's audio, where the audio stream is held clean
    # LTX-2.5's distilled stage 1 steps with ancestral Euler, drawing its noise from this source (seeded apart from
    # `noise`); None: every stage steps with plain Euler.
    stage_1_ancestral_noise: NoiseSource | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def run_stages(
    pipe: "StagePipeline",
    run: RunContext,
    first: Stage,
    second: Callable[[StageResult], Stage] | None = None,
) -> Generator[PipelineEvent, None, StageResult | None]:
    """Runs `first`, then (decoding it for the user in between) the stage `second` makes from its result.

    Yields `StepPreview` after every step and `StageDecoded` between two stages; returns the last stage's result,
    or None when the run was cancelled.
    """
    result = yield from _run_stage(pipe, run, first)
    if result is None or second is None:
        return result
    yield _decoded(pipe, run, result)
    return (yield from _run_stage(pipe, run, second(result)))


def _run_stage(
    pipe: "StagePipeline", run: RunContext, stage: Stage
) -> Generator[PipelineEvent, None, StageResult | None]:
    stage_start = run.elapsed()
    pipe.activate_stage_loras(stage.number)
    geometry = stage.geometry
    # Video first, then audio: the order the noise is drawn in.
    video_latents = start_latents(stage.video, lambda: pipe.video_noise(geometry, run.noise), run.noise)
    audio_latents = start_latents(stage.audio, lambda: pipe.audio_noise(geometry, run.noise), run.noise)
    for state in denoise(
        pipe.transformer,
        stage.video,
        stage.audio,
        video_latents,
        audio_latents,
        stage.sigmas,
        geometry,
        run.positive,
        run.negative,
        lambda: pipe.interrupt,
        ancestral_noise=run.stage_1_ancestral_noise if stage.number == 1 else None,
    ):
        video_latents, audio_latents = state.video_latents, state.audio_latents
        video_estimate = _grid_tokens(state.video_estimate, stage.video)
        audio_preview = None
        if run.preview_audio and not stage.audio.frozen:
            audio_preview = pipe.decode_audio(
                pipe.unpack_audio(state.audio_estimate), run.num_frames, run.frame_rate, preview=True
            )
        yield StepPreview(
            stage=stage.number,
            step=state.step,
            total_steps=state.total_steps,
            elapsed_s=run.elapsed(),
            video=pipe.preview_video(video_estimate, geometry),
            audio=audio_preview,
        )
    if pipe.interrupt:
        return None
    run.timings[f"stage_{stage.number}"] = run.elapsed() - stage_start
    video_latents = _grid_tokens(video_latents, stage.video)
    return StageResult(stage=stage, video_latents=video_latents, audio_latents=audio_latents)


def _grid_tokens(latents: torch.Tensor, spec: StreamSpec) -> torch.Tensor:
    """The stream's own grid, without appended tokens (the reference's `clear_conditioning`)."""
    return latents[:, : latents.shape[1] - spec.appended] if spec.appended else latents


def _decoded(pipe: "StagePipeline", run: RunContext, result: StageResult) -> StageDecoded:
    """A finished first stage, decoded: its low-resolution video with its audio (or the user's own)."""
    frames = pipe.decode_video(pipe.unpack_video(result.video_latents, result.stage.geometry))
    if result.stage.audio.frozen and run.kept_audio is not None:
        audio = run.kept_audio
    else:
        audio = pipe.decode_audio(pipe.unpack_audio(result.audio_latents), run.num_frames, run.frame_rate)
    return StageDecoded(
        stage=result.stage.number, elapsed_s=run.elapsed(), frames=frames, audio=audio, frame_rate=run.frame_rate
    )


class StagePipeline(Protocol):
    """What the runner uses of a pipeline (`ltx_pipeline.pipelines.base.LTXAVPipelineBase` provides it)."""

    transformer: torch.nn.Module
    interrupt: bool

    def activate_stage_loras(self, stage: int) -> None: ...
    def video_noise(self, geometry: LatentGeometry, noise: NoiseSource) -> torch.Tensor: ...
    def audio_noise(self, geometry: LatentGeometry, noise: NoiseSource) -> torch.Tensor: ...
    def preview_video(self, packed: torch.Tensor, geometry: LatentGeometry): ...
    def decode_video(self, latents: torch.Tensor): ...
    def decode_audio(self, latents: torch.Tensor, num_frames: int, frame_rate: float, preview: bool = False): ...
    def unpack_video(self, packed: torch.Tensor, geometry: LatentGeometry) -> torch.Tensor: ...
    def unpack_audio(self, packed: torch.Tensor) -> torch.Tensor: ...
