"""Long form: a whole song or scene as chained two-stage windows, both streams continuous across the seams.

Audio to video (an `audio` is given) holds each window's own slice of the user's sound clean, as
`A2VidPipelineTwoStage` holds its one cut; text to audio+video (no `audio`) generates both streams per window. Either
way each window after the first holds clean what it shares with the window before (`ltx_pipeline.long_form`):

- video: its first K latent frames are the previous window's last K, in each stage at that stage's size (stage 1's
  half-size result for stage 1, stage 2's full-size result for stage 2), so motion continues across the seam;
- audio (text to audio+video): the audio latent frames of the shared time are the previous window's final ones.
  Audio latents sit on one grid for the whole clip (25 a second from time 0); a window's first audio latent is the
  grid's nearest to its start, so a window's sound and picture are at most half a latent (20 ms) apart and never
  drift; its last is the first at or past its end, so its sound covers all it writes.

Time positions: each window's own, from 0, as in training (the transformer derives them from the window's length);
the clip's absolute time is never shown to the model, so no window sees positions past what it was trained on.

The output is written window by window to one mp4 (`StreamingMp4Writer`); nothing holds the whole video. A Stop
ends the run after the current step; the windows finished before it make a valid file, and the recipe says where
it stopped.

A run is resumable: `plan_run()` checks a request into a `LongFormPlan`, `run_windows()` makes any range of its
windows from a `LongFormResume` (the one before's held latents and sound, the noise generators' states) and hands
back the next one, and `LongFormWriter` grows the mp4 from their events. `stream()` is the three in one process; a
host whose GPU calls are short (a ZeroGPU Space, `ui.zerogpu`) runs groups of windows as separate calls, passing
the plan and resume points, both plain tensors and data that pickle, and keeps the writer itself. The clip is the
same either way.
"""

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import constants, validation
from .audio import load_audio, probe_audio_duration, seconds_to_samples
from .engine import Stage, StageResult, frozen_stream, image_tokens, run_stages
from .engine.latents import LatentGeometry
from .engine.stages import RunContext
from .engine.streams import NoiseSource, held_stream
from .long_form import (
    PromptSegment,
    Window,
    check_free_space,
    check_prompt_timeline,
    check_window,
    estimated_mp4_bytes,
    parse_prompt_timeline,
    plan_windows,
    shared_frames,
    window_prompt,
)
from .media import _check_mp4_path, write_recipe
from .pipeline_common import GenerationCancelled, LTXAVPipelineBase, RunRequest, stage_1_guidance
from .streaming_mp4 import StreamingMp4Writer
from .types import Audio, GuidanceParams, LongFormFinished, PipelineEvent, Recipe, WindowFinished, WindowStarted

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Carry:
    """What a window hands the next: its latent tails at both stages' sizes, and its audio."""

    video_stage_1: torch.Tensor  # packed (1, K * tokens per frame, C), half size
    video_stage_2: torch.Tensor  # packed, full size
    audio_latents: torch.Tensor | None  # packed (1, A, C): the window's final audio latents (text to audio+video)
    audio_first: int  # the audio grid's index of the window's first audio latent
    audio_tail: Audio | None  # the end of its sound, held back to cross into the next window's (text to audio+video)

    def to(self, device: torch.device | str) -> "_Carry":
        """The same carry with its tensors on `device` (the CPU before it leaves a GPU process)."""
        audio_latents = self.audio_latents.to(device) if self.audio_latents is not None else None
        tail = _audio_to(self.audio_tail, device)
        return _Carry(
            self.video_stage_1.to(device), self.video_stage_2.to(device), audio_latents, self.audio_first, tail
        )


@dataclasses.dataclass(frozen=True)
class ClipPart:
    """The user's sound (audio to video) from its start time, whole or the part some windows need: `audio` begins
    at sample `start` of the whole."""

    audio: Audio
    start: int = 0  # the whole sound's sample that is `audio`'s first

    @property
    def sampling_rate(self) -> int:
        return self.audio.sampling_rate

    def samples(self, begin: int, end: int | None) -> torch.Tensor:
        """The whole sound's samples `begin` to `end` (None: to its end), from this part (which must hold them)."""
        if begin < self.start:
            raise ValueError(f"samples from {begin} are not in this part of the clip, which starts at {self.start}")
        return self.audio.waveform[:, begin - self.start : None if end is None else end - self.start]

    def part(self, begin: int, end: int | None) -> "ClipPart":
        """The part from sample `begin` to `end` (None: to the end), a copy: a view would pickle the whole sound."""
        return ClipPart(Audio(self.samples(begin, end).clone(), self.sampling_rate), begin)


@dataclasses.dataclass(frozen=True)
class LongFormPlan:
    """A checked long run as plain data: what every window needs, wherever it runs (it pickles)."""

    recipe: Recipe  # the run's recipe before its first window (the writer fills in the rest)
    output: Path  # the mp4
    clip: ClipPart | None  # the user's sound from its start time, audio to video; None: text to audio+video
    windows: tuple[Window, ...]
    segments: tuple[PromptSegment, ...]
    video_guidance: GuidanceParams
    audio_guidance: GuidanceParams | None
    preview_audio: bool

    def for_windows(self, first: int, end: int) -> "LongFormPlan":
        """The plan with only the sound that windows `first` to `end` (exclusive) read: what a call that makes just
        those windows is sent (ZeroGPU), so a long song is not sent again with every call."""
        if self.clip is None:
            return self
        frame_rate, rate = self.recipe.frame_rate, self.clip.sampling_rate
        begin = seconds_to_samples(self.windows[first].start_frame / frame_rate, rate)
        stop = None  # the last window writes the sound to the clip's end
        if end < len(self.windows):
            stop = max(
                seconds_to_samples((w.start_frame + w.num_frames) / frame_rate, rate) for w in self.windows[first:end]
            )
        return dataclasses.replace(self, clip=self.clip.part(begin, stop))


@dataclasses.dataclass(frozen=True)
class LongFormResume:
    """Where a run stands after a window: all the next window needs of the ones before. Yielded by `run_windows()`
    after each window; passed back to it, the run goes on as if it had never paused."""

    next_window: int  # 0-based index of the window to make next
    carry: _Carry  # what the last window hands the next (its held latents, its audio tail)
    noise_state: torch.Tensor  # the run's noise generator (`torch.Generator.get_state()`)
    ancestral_noise_state: torch.Tensor | None  # LTX-2.5's stage-1 ancestral noise generator; None without one
    started: float  # time.perf_counter() at the run's start (elapsed times count from it)

    def to(self, device: torch.device | str) -> "LongFormResume":
        return dataclasses.replace(self, carry=self.carry.to(device))


@dataclasses.dataclass(frozen=True)
class _RunPlan:
    """What every window of one run shares."""

    noise: NoiseSource  # one generator for the whole run: a seed gives the same clip
    started: float  # time.perf_counter() at the run's start
    sigmas: tuple[list[float], list[float]]  # stage 1, stage 2
    video_guidance: GuidanceParams
    audio_guidance: GuidanceParams | None  # None: the audio is the user's, held clean
    preview_audio: bool
    ancestral_noise: NoiseSource | None = None  # LTX-2.5 distilled: stage 1's ancestral noise, one source per run


class LongFormPipeline(LTXAVPipelineBase):
    """Generates a clip of any length as windows; audio to video when `audio` is given, text to audio+video if not."""

    def stream(self, prompt: str, output: str | os.PathLike, **kwargs: Any) -> Iterator[PipelineEvent]:
        """Checks every input (`plan_run()`, which names them), then returns a generator of events.

        The events: per window `WindowStarted`, its `StepPreview`s and `StageDecoded`, `WindowFinished`; at the end
        `LongFormFinished` with the mp4 and recipe written at `output`.
        """
        return self.run_with_cleanup(self._generate(self.plan_run(prompt, output, **kwargs)))

    def plan_run(
        self,
        prompt: str,
        output: str | os.PathLike,
        audio: str | os.PathLike | Audio | None = None,
        duration_s: float | None = None,
        prompt_timeline: str | list[PromptSegment] | None = None,
        negative_prompt: str | None = None,
        audio_start_time: float = 0.0,
        window_frames: int = constants.DEFAULT_NUM_FRAMES,
        overlap_latent_frames: int = constants.LONG_FORM_OVERLAP_LATENT_FRAMES,
        height: int = constants.DEFAULT_HEIGHT,
        width: int = constants.DEFAULT_WIDTH,
        frame_rate: float = constants.DEFAULT_FRAME_RATE,
        seed: int = constants.DEFAULT_SEED,
        mode: str | None = None,
        num_inference_steps: int | None = None,
        modality_scale: float | None = None,
        cfg_scale: float | None = None,
        audio_cfg_scale: float | None = None,
        max_audio_duration_s: float = constants.LONG_FORM_MAX_AUDIO_DURATION_S,
        preview_audio: bool = True,
        seam: str = constants.LONG_FORM_SEAM,
        held_strength: float = constants.LONG_FORM_HELD_STRENGTH,
    ) -> LongFormPlan:
        """Checks every input (and the free disk space) and reads the audio: the run as a `LongFormPlan`.

        `output`: where the mp4 and its recipe are written. `duration_s`: the clip's length; with `audio`,
        None means the whole clip from `audio_start_time`. `window_frames` (8k + 1) is one window's length, the
        model's own clip length (121 for LTX-2.3, 97 for the embedded model); `overlap_latent_frames` how many of
        its latent frames it holds from the window before. `prompt_timeline`: '0-10 s: ...; 10-25 s: ...' (or a
        list of `PromptSegment`), each window taking the range that covers most of its new frames. `seam`: how a
        window's held latents are made ("reencode": its shared frames as the window before decoded them, encoded
        again, so the first is a true one-frame latent; "copy": the window before's last latents as they are).
        `held_strength`: how firmly the held video latents are kept (1: exactly; lower lets the model repaint them,
        as an image's strength does).
        """
        mode = mode or self.model_variant
        check_window(window_frames, overlap_latent_frames)  # before the shared checks, which call it `num_frames`
        if seam not in constants.LONG_FORM_SEAMS:
            raise ValueError(f"`seam` must be one of {', '.join(constants.LONG_FORM_SEAMS)}; got {seam!r}.")
        validation.check_scale("held_strength", held_strength, 0.0, 1.0)
        stg_blocks = self.default_stg_blocks()
        video_guidance = stage_1_guidance(
            mode, stg_blocks, constants.VIDEO_CFG_SCALE, cfg_scale, None, None, modality_scale
        )
        audio_guidance = None
        if audio is None:
            audio_guidance = stage_1_guidance(
                mode, stg_blocks, constants.AUDIO_CFG_SCALE, audio_cfg_scale, None, None, modality_scale
            )
        recipe, _, _ = self.prepare_request(
            RunRequest(
                prompt,
                negative_prompt,
                height,
                width,
                window_frames,
                frame_rate,
                seed,
                mode,
                num_inference_steps,
                video_guidance=video_guidance,
                audio_guidance=audio_guidance,
            )
        )
        # Windows are decoded one by one and joined: with the VAE, whose decode of a latent is fixed, not a sampling
        # decoder that would draw new pixel noise at every seam.
        recipe.video_decoder = "conv"
        output_path = _check_mp4_path(output)
        clip, duration_s = self._read_request_audio(audio, audio_start_time, duration_s, max_audio_duration_s)
        total_frames = _frames_for(duration_s, frame_rate)
        segments = prompt_timeline if prompt_timeline is not None else []
        if isinstance(segments, str):
            segments = parse_prompt_timeline(segments) if segments.strip() else []
        check_prompt_timeline(segments, duration_s)
        for segment in segments:
            validation.check_prompt(segment.prompt, "prompt_timeline")
            num_tokens = self.count_tokens(segment.prompt)
            if num_tokens > self.max_sequence_length:
                raise ValueError(
                    f"`prompt_timeline` prompts must fit in {self.max_sequence_length} text-encoder tokens; the one "
                    f"for {segment.start_s:g}-{segment.end_s:g} s has {num_tokens}."
                )
        # The disk first: a length too long for it is refused before its windows are planned.
        check_free_space(output_path, estimated_mp4_bytes(total_frames, height, width, duration_s))
        windows = plan_windows(total_frames, window_frames, overlap_latent_frames)
        recipe.num_frames = total_frames
        recipe.inputs |= {
            "long_form": True,
            "duration_s": duration_s,
            "num_inference_steps": num_inference_steps,
            "window_frames": window_frames,
            "overlap_latent_frames": overlap_latent_frames,
            "seam": seam,
            "held_strength": held_strength,
            "windows": len(windows),
            "prompt_timeline": [dataclasses.asdict(segment) for segment in segments],
        }
        if clip is not None:
            recipe.inputs |= {
                "audio": "<in-memory Audio>" if isinstance(audio, Audio) else str(audio),
                "audio_start_time": audio_start_time,
            }
            recipe.audio_sampling_rate = clip.sampling_rate
        recipe.stage_1_sigmas, recipe.stage_2_sigmas = self.stage_sigmas(recipe.mode, num_inference_steps)
        if clip is not None:  # audio to video steps with plain Euler, as the reference's A2V pipeline does
            recipe.stage_1_sampler = "euler"
        return LongFormPlan(
            recipe,
            output_path,
            ClipPart(clip) if clip is not None else None,
            tuple(windows),
            tuple(segments),
            video_guidance,
            audio_guidance,
            preview_audio,
        )

    def __call__(self, **kwargs: Any) -> LongFormFinished:
        """Runs `stream()` to the end; returns its `LongFormFinished` (the mp4 is already written, also after a Stop)."""
        for event in self.stream(**kwargs):
            if isinstance(event, LongFormFinished):
                return event
        raise GenerationCancelled("The generation was stopped before its first window finished; nothing was written.")

    def _read_request_audio(
        self,
        audio: str | os.PathLike | Audio | None,
        start_time: float,
        duration_s: float | None,
        max_duration_s: float,
    ) -> tuple[Audio | None, float]:
        """The user's clip from `start_time` for `duration_s` (None: to its end), and the clip's duration."""
        validation.check_scale(
            "max_audio_duration_s", max_duration_s, constants.LONG_FORM_MIN_AUDIO_LIMIT_S, float("inf")
        )
        if duration_s is not None and (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, (int, float))
            or not math.isfinite(duration_s)
            or duration_s <= 0
        ):
            raise ValueError(f"`duration_s` must be a number of seconds > 0; got {duration_s!r}.")
        if audio is None:
            if duration_s is None:
                raise ValueError("`duration_s` is needed without `audio`: how long the clip is; got None.")
            return None, float(duration_s)
        validation.check_audio_start_time(start_time)
        if isinstance(audio, Audio):
            available_s = audio.duration_s
        elif isinstance(audio, (str, os.PathLike)):
            if not Path(audio).is_file():
                raise ValueError(f"`audio` {str(audio)!r} is not a file; give an audio file or a video with sound.")
            available_s = probe_audio_duration(audio)
        else:
            raise ValueError(f"`audio` must be a file path or an Audio; got {type(audio).__name__}.")
        if available_s > max_duration_s:
            raise ValueError(
                f"`audio` lasts {available_s:.1f} s, longer than the limit of {max_duration_s:g} s "
                f"(`max_audio_duration_s`, --max-audio-duration); cut it or raise the limit."
            )
        if start_time >= available_s:
            raise ValueError(
                f"`audio_start_time` must be before the end of the clip ({available_s:.2f} s); got {start_time} s."
            )
        remaining_s = available_s - start_time
        if duration_s is not None and duration_s > remaining_s + 1e-9:
            raise ValueError(
                f"`duration_s` must fit the clip: from {start_time:g} s it lasts {remaining_s:.2f} s; got {duration_s} s."
            )
        duration_s = float(duration_s if duration_s is not None else remaining_s)
        if isinstance(audio, Audio):
            first = round(start_time * audio.sampling_rate)
            count = seconds_to_samples(duration_s, audio.sampling_rate)
            return Audio(audio.waveform[:, first : first + count], audio.sampling_rate), duration_s
        return load_audio(audio, start_time=start_time, duration=duration_s), duration_s

    def run_windows(
        self, plan: LongFormPlan, resume: LongFormResume | None = None, end: int | None = None
    ) -> Iterator[PipelineEvent | LongFormResume]:
        """The windows of `plan` from `resume` (None: the first) up to `end` (0-based, exclusive; None: the last):
        each window's events, then a `LongFormResume` to go on from. A Stop (`cancel()`) ends it after the current
        step, before that window's resume point. Writes nothing: `LongFormWriter` makes the mp4 of the events."""
        end = len(plan.windows) if end is None else end
        first = resume.next_window if resume is not None else 0
        if not 0 <= first < end <= len(plan.windows):
            raise ValueError(
                f"`end` must be after the next window ({first}) and at most {len(plan.windows)}; got {end}."
            )
        return self.run_with_cleanup(self._windows(plan, resume, end))

    @torch.no_grad()
    def _generate(self, plan: LongFormPlan) -> Iterator[PipelineEvent]:
        """Every window of `plan` in this process, written as it comes."""
        writer = LongFormWriter(plan)
        resume = None
        try:
            for event in self._windows(plan, None, len(plan.windows)):
                if isinstance(event, LongFormResume):
                    resume = event
                    continue
                writer.on_event(event)
                yield event
            finished = writer.finish(resume)
        except BaseException:
            writer.abort()
            raise
        if finished is not None:
            yield finished

    @torch.no_grad()
    def _windows(
        self, plan: LongFormPlan, resume: LongFormResume | None, end: int
    ) -> Iterator[PipelineEvent | LongFormResume]:
        device = self._execution_device
        recipe, frame_rate, windows = plan.recipe, plan.recipe.frame_rate, plan.windows
        noise = torch.Generator().manual_seed(recipe.seed)
        # Audio to video steps with plain Euler, as the reference's A2V pipeline does (`plan_run` says so in the recipe).
        ancestral_noise = None if plan.clip is not None else self.ancestral_noise(recipe.seed, recipe.mode)
        carry, started = None, time.perf_counter()
        if resume is not None:
            noise.set_state(resume.noise_state)
            if ancestral_noise is not None:
                ancestral_noise.generator.set_state(resume.ancestral_noise_state)
            carry, started = resume.carry.to(device), resume.started
        run_plan = _RunPlan(
            noise=NoiseSource(noise, device),
            started=started,
            sigmas=(recipe.stage_1_sigmas, recipe.stage_2_sigmas),
            video_guidance=plan.video_guidance,
            audio_guidance=plan.audio_guidance,
            preview_audio=plan.preview_audio,
            ancestral_noise=ancestral_noise,
        )
        for window in windows[resume.next_window if resume is not None else 0 : end]:
            written_start_s = window.written_start_frame / frame_rate
            written_end_s = (window.written_start_frame + window.num_written) / frame_rate
            prompt = window_prompt(list(plan.segments), written_start_s, written_end_s, recipe.prompt)
            yield WindowStarted(window.index + 1, len(windows), window.start_frame / frame_rate, written_end_s, prompt)
            result = yield from self._run_window(recipe, window, prompt, plan.clip, carry, run_plan, device)
            if result is None:
                return
            frames, sound, carry = self._window_output(
                recipe, window, plan.clip, carry, result, last=window is windows[-1]
            )
            yield WindowFinished(
                window=window.index + 1,
                total_windows=len(windows),
                elapsed_s=self.elapsed(started),
                frames=frames,
                audio=sound,
                frame_rate=frame_rate,
                written_s=written_end_s,
            )
            ancestral_state = ancestral_noise.generator.get_state() if ancestral_noise is not None else None
            yield LongFormResume(window.index + 1, carry, noise.get_state(), ancestral_state, started)

    def _run_window(
        self,
        recipe: Recipe,
        window: Window,
        prompt: str,
        clip: ClipPart | None,
        carry: _Carry | None,
        plan: _RunPlan,
        device: torch.device,
    ) -> Iterator[PipelineEvent]:
        """Both stages of one window, holding clean what it shares with the window before; returns its stage results
        (stage 1, stage 2), or None when the run was stopped."""
        height, width, frame_rate = recipe.height, recipe.width, recipe.frame_rate
        stage_1_sigmas, stage_2_sigmas = plan.sigmas
        self.activate_stage_loras(1)
        guidance = [plan.video_guidance] + ([plan.audio_guidance] if plan.audio_guidance is not None else [])
        positive, negative = self.encode_prompts(prompt, recipe.negative_prompt, *guidance, device=device)
        geometry_1 = self.latent_geometry(height // 2, width // 2, window.num_frames, frame_rate)
        geometry_2 = self.latent_geometry(height, width, window.num_frames, frame_rate)
        run = RunContext(
            num_frames=window.num_frames,
            frame_rate=frame_rate,
            positive=positive,
            negative=negative,
            noise=plan.noise,
            started=plan.started,
            timings={},
            preview_audio=plan.preview_audio,
            stage_1_ancestral_noise=plan.ancestral_noise,
        )
        if clip is not None:
            # The window's own slice of the user's sound, held clean in both stages as in A2VidPipelineTwoStage.
            sound = self._audio_slice(clip, window.start_frame, window.num_frames, frame_rate, pad=True)
            audio_1 = frozen_stream(self.pack_audio(self.encode_audio(sound, geometry_1.audio_frames, device)))
            run = dataclasses.replace(run, kept_audio=sound)
        else:
            first, count = self._audio_grid(window, frame_rate)
            geometry_1 = dataclasses.replace(geometry_1, audio_frames=count)
            geometry_2 = dataclasses.replace(geometry_2, audio_frames=count)
            held_audio = self._held_audio(carry, first, count, device)
            audio_1 = held_stream(held_audio, plan.audio_guidance)  # a generated stream, part held
        stage_1 = Stage(
            1,
            geometry_1,
            stage_1_sigmas,
            held_stream(self._held_video(carry, 1, geometry_1, recipe, device), plan.video_guidance),
            audio_1,
        )
        stage_1_results: list[StageResult] = []

        def stage_2(result: StageResult) -> Stage:
            stage_1_results.append(result)
            upsampled = self.pack_video(self.upsample_video(result.video_latents, geometry_1))
            held_2 = self._held_video(carry, 2, geometry_2, recipe, device)
            video = held_stream(held_2, GuidanceParams(), upsampled, stage_2_sigmas[0])
            if clip is not None:
                return Stage(2, geometry_2, stage_2_sigmas, video, audio_1)
            # Stage 2 refines the stage-1 audio from the first stage-2 sigma; the shared part stays held.
            audio = held_stream(held_audio, GuidanceParams(), result.audio_latents, stage_2_sigmas[0])
            return Stage(2, geometry_2, stage_2_sigmas, video, audio)

        result = yield from run_stages(self, run, stage_1, stage_2)
        if result is None:
            return None
        return stage_1_results[0], result

    def _held_video(
        self, carry: _Carry | None, stage: int, geometry: LatentGeometry, recipe: Recipe, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(clean, mask) holding the window's first K latent frames at the previous window's last K, at this stage's
        size; None for the first window."""
        if carry is None:
            return None
        tail = carry.video_stage_1 if stage == 1 else carry.video_stage_2
        num_tokens = geometry.frames * geometry.tokens_per_frame
        strength = recipe.inputs["held_strength"]
        return image_tokens(num_tokens, [(slice(0, tail.shape[1]), tail, strength)], tail.shape[-1], device)

    def _encode_frames(self, frames: np.ndarray, height: int, width: int) -> torch.Tensor:
        """(F, H, W, 3) uint8 frames (F = 8k + 1) -> packed latents (1, k+1 latent frames x tokens, C) at `height` x
        `width` (area-averaged when smaller), encoded as the VAE encodes a clip."""
        device = self._execution_device
        pixels = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1  # (F, 3, H, W)
        if pixels.shape[-2:] != (height, width):
            pixels = torch.nn.functional.interpolate(pixels, size=(height, width), mode="area")
        pixels = pixels.permute(1, 0, 2, 3).unsqueeze(0).to(self.vae.dtype)  # (F, 3, H, W) -> (1, 3, F, H, W)
        return self.pack_video(self.vae.encode(pixels).latent_dist.mode())

    def _audio_grid(self, window: Window, frame_rate: float) -> tuple[int, int]:
        """The window's audio latents on the clip's grid: the first (nearest to its start) and how many (to the first
        at or past its end)."""
        per_second = self.audio_latents_per_second
        first = round(window.start_frame / frame_rate * per_second)
        end = math.ceil((window.start_frame + window.num_frames) / frame_rate * per_second - 1e-9)
        return first, end - first

    def _held_audio(
        self, carry: _Carry | None, first: int, count: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(clean, mask) holding the audio latents the window shares with the one before, on the clip's grid."""
        if carry is None:
            return None
        previous = carry.audio_latents
        shared = carry.audio_first + previous.shape[1] - first
        tail = previous[:, previous.shape[1] - shared :]
        return image_tokens(count, [(slice(0, shared), tail, 1.0)], previous.shape[-1], device)

    def _audio_slice(self, clip: ClipPart, first_frame: int, num_frames: int, frame_rate: float, pad: bool) -> Audio:
        """The clip's samples from frame `first_frame` for `num_frames` frames, silence past its end where `pad`.

        Sample boundaries are `seconds_to_samples(frame / frame_rate)`, so consecutive slices join without a gap."""
        rate = clip.sampling_rate
        begin = seconds_to_samples(first_frame / frame_rate, rate)
        end = seconds_to_samples((first_frame + num_frames) / frame_rate, rate)
        waveform = clip.samples(begin, end)
        if pad and waveform.shape[-1] < end - begin:
            waveform = torch.nn.functional.pad(waveform, (0, end - begin - waveform.shape[-1]))
        return Audio(waveform, rate)

    def _window_output(
        self,
        recipe: Recipe,
        window: Window,
        clip: ClipPart | None,
        carry: _Carry | None,
        results: tuple[StageResult, StageResult],
        last: bool,
    ) -> tuple[np.ndarray, Audio, _Carry]:
        """The frames and sound the window adds to the output, and what it hands the next window."""
        stage_1, stage_2 = results
        frame_rate = recipe.frame_rate
        overlap = recipe.inputs["overlap_latent_frames"]
        decoded = self.decode_video(self.unpack_video(stage_2.video_latents, stage_2.stage.geometry))
        frames = decoded[window.first_written : window.first_written + window.num_written]
        if recipe.inputs["seam"] == "reencode" and not last:
            # The next window's first frames are this window's last ones: encoded again, its held latent 0 is a
            # first latent (one frame), as the model reads position 0, not the 8-frame latent that ended this window.
            shared = decoded[window.num_frames - shared_frames(overlap) : window.num_frames]
            tail_1 = self._encode_frames(shared, recipe.height // 2, recipe.width // 2)
            tail_2 = self._encode_frames(shared, recipe.height, recipe.width)
        else:
            tail_1 = stage_1.video_latents[:, -overlap * stage_1.stage.geometry.tokens_per_frame :]
            tail_2 = stage_2.video_latents[:, -overlap * stage_2.stage.geometry.tokens_per_frame :]
        if clip is not None:
            # The user's own samples for exactly the frames written, so the windows' slices join into the whole clip;
            # the last runs to the clip's end (the video may end up to one frame after it).
            begin = seconds_to_samples(window.written_start_frame / frame_rate, clip.sampling_rate)
            end = None
            if not last:
                end = seconds_to_samples(
                    (window.written_start_frame + window.num_written) / frame_rate, clip.sampling_rate
                )
            sound = Audio(clip.samples(begin, end), clip.sampling_rate)
            return frames, sound, _Carry(tail_1, tail_2, None, 0, None)
        first, count = self._audio_grid(window, frame_rate)
        decoded = self.decode_audio(self.unpack_audio(stage_2.audio_latents), count, self.audio_latents_per_second)
        rate = decoded.sampling_rate
        grid_start = seconds_to_samples(first / self.audio_latents_per_second, rate)
        begin = seconds_to_samples(window.written_start_frame / frame_rate, rate) - grid_start
        end = seconds_to_samples((window.written_start_frame + window.num_written) / frame_rate, rate) - grid_start
        # Where a window's sound starts after the time it writes from (its first grid latent is up to half a latent
        # late, which only a one-frame overlap above 50 fps can exceed), silence fills the gap.
        waveform = torch.nn.functional.pad(decoded.waveform, (max(0, -begin), 0))[:, max(0, begin) : max(end, 0)]
        held = carry.audio_tail.waveform if carry is not None else waveform[:, :0]
        # The previous window's held-back end crosses into this window's sound of the same time, over as much of it
        # as this window decoded (all of it, but at those rates).
        crossfade = min(held.shape[-1], max(0, begin))
        fade = torch.linspace(0.0, 1.0, crossfade)
        mixed = (
            held[:, held.shape[-1] - crossfade :] * (1 - fade) + decoded.waveform[:, begin - crossfade : begin] * fade
        )
        waveform = torch.cat([held[:, : held.shape[-1] - crossfade], mixed, waveform], dim=-1)
        tail = None
        if not last:
            keep = min(seconds_to_samples(constants.LONG_FORM_AUDIO_CROSSFADE_S, rate), waveform.shape[-1] // 2)
            tail = Audio(waveform[:, waveform.shape[-1] - keep :], rate)
            waveform = waveform[:, : waveform.shape[-1] - keep]
        return frames, Audio(waveform, rate), _Carry(tail_1, tail_2, stage_2.audio_latents, first, tail)


class LongFormWriter:
    """Grows a run's mp4 from its window events and finishes it with its recipe, in whichever process holds the file
    (the windows may be made elsewhere, `run_windows()`)."""

    def __init__(self, plan: LongFormPlan):
        self.plan = plan
        self.recipe = copy.deepcopy(plan.recipe)
        self.recipe.inputs |= {"window_seconds": [], "window_prompts": []}
        self.started = time.perf_counter()
        self.finished_windows = 0
        self._window_started = self.started
        self._writer = StreamingMp4Writer(plan.output, plan.recipe.frame_rate)

    def on_event(self, event: PipelineEvent) -> None:
        """Notes a window's prompt when it starts; appends its frames and sound when it finishes."""
        if isinstance(event, WindowStarted):
            self._window_started = time.perf_counter()
            self.recipe.inputs["window_prompts"].append(event.prompt)
        elif isinstance(event, WindowFinished):
            self._writer.append(event.frames, event.audio)
            self.finished_windows += 1
            self.recipe.inputs["window_seconds"].append(time.perf_counter() - self._window_started)

    def finish(self, resume: LongFormResume | None) -> LongFormFinished | None:
        """Closes the mp4 and writes its recipe; `resume`: the last finished window's resume point (its held-back
        sound ends a stopped file). None, the file removed, when no window finished."""
        if self.finished_windows == 0:
            self._writer.abort()
            return None
        total = len(self.plan.windows)
        stopped = self.finished_windows < total
        if stopped and resume is not None and resume.carry.audio_tail is not None:
            self._writer.append(None, _audio_to(resume.carry.audio_tail, "cpu"))
        path = self._writer.close()
        frame_rate = self.recipe.frame_rate
        duration = self._writer.frames_written / frame_rate
        self.recipe.inputs |= {"stopped": stopped, "written_s": duration}
        if stopped:
            self.recipe.inputs["stopped_after_window"] = self.finished_windows
            logger.info(
                "Stopped after window %d of %d: %s holds %.2f s.", self.finished_windows, total, path, duration
            )
        elapsed = time.perf_counter() - self.started
        self.recipe.timings_s = {"total": elapsed}
        recipe_path = write_recipe(path, self.recipe.to_dict())
        return LongFormFinished(
            elapsed_s=elapsed,
            path=path,
            recipe_path=recipe_path,
            duration_s=duration,
            stopped=stopped,
            recipe=self.recipe.to_dict(),
        )

    def abort(self) -> None:
        """Removes the unfinished file (after an error)."""
        self._writer.abort()


def portable(event: PipelineEvent | LongFormResume) -> PipelineEvent | LongFormResume:
    """The event with its tensors on the CPU, to pickle it out of a GPU process."""
    if isinstance(event, LongFormResume):
        return event.to("cpu")
    audio = getattr(event, "audio", None)
    if isinstance(audio, Audio):
        return dataclasses.replace(event, audio=_audio_to(audio, "cpu"))
    return event


def _audio_to(audio: Audio | None, device: torch.device | str) -> Audio | None:
    return Audio(audio.waveform.to(device), audio.sampling_rate) if audio is not None else None


def _frames_for(duration_s: float, frame_rate: float) -> int:
    """Frames that cover `duration_s`: the video may end up to one frame after the sound, never before."""
    return max(1, math.ceil(duration_s * frame_rate - 1e-6))
