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
"""

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

    def stream(
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
    ) -> Iterator[PipelineEvent]:
        """Checks every input (and the free disk space), then returns a generator of events.

        The events: per window `WindowStarted`, its `StepPreview`s and `StageDecoded`, `WindowFinished`; at the end
        `LongFormFinished` with the mp4 and recipe written at `output`. `duration_s`: the clip's length; with `audio`,
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
        generation = self._generate(
            recipe, output_path, clip, windows, segments, video_guidance, audio_guidance, preview_audio
        )
        return self.run_with_cleanup(generation)

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

    @torch.no_grad()
    def _generate(
        self,
        recipe: Recipe,
        output: Path,
        clip: Audio | None,
        windows: list[Window],
        segments: list[PromptSegment],
        video_guidance: GuidanceParams,
        audio_guidance: GuidanceParams | None,
        preview_audio: bool,
    ) -> Iterator[PipelineEvent]:
        start = time.perf_counter()
        device = self._execution_device
        frame_rate = recipe.frame_rate
        stage_1_sigmas, stage_2_sigmas = self.stage_sigmas(recipe.mode, recipe.inputs["num_inference_steps"])
        recipe.stage_1_sigmas, recipe.stage_2_sigmas = stage_1_sigmas, stage_2_sigmas
        plan = _RunPlan(
            noise=NoiseSource(torch.Generator().manual_seed(recipe.seed), device),
            started=start,
            sigmas=(stage_1_sigmas, stage_2_sigmas),
            video_guidance=video_guidance,
            audio_guidance=audio_guidance,
            preview_audio=preview_audio,
            ancestral_noise=None if clip is not None else self.ancestral_noise(recipe.seed, recipe.mode),
        )
        if clip is not None:  # audio to video steps with plain Euler, as the reference's A2V pipeline does
            recipe.stage_1_sampler = "euler"
        writer = StreamingMp4Writer(output, frame_rate)
        window_seconds: list[float] = []
        recipe.inputs["window_seconds"] = window_seconds
        recipe.inputs["window_prompts"] = []
        carry: _Carry | None = None
        finished = 0
        try:
            for window in windows:
                window_start = time.perf_counter()
                written_start_s = window.written_start_frame / frame_rate
                written_end_s = (window.written_start_frame + window.num_written) / frame_rate
                prompt = window_prompt(segments, written_start_s, written_end_s, recipe.prompt)
                recipe.inputs["window_prompts"].append(prompt)
                yield WindowStarted(
                    window.index + 1, len(windows), window.start_frame / frame_rate, written_end_s, prompt
                )
                result = yield from self._run_window(recipe, window, prompt, clip, carry, plan, device)
                if result is None:
                    break
                frames, sound, carry = self._window_output(
                    recipe, window, clip, carry, result, last=window is windows[-1]
                )
                writer.append(frames, sound)
                finished += 1
                window_seconds.append(time.perf_counter() - window_start)
                yield WindowFinished(
                    window=window.index + 1,
                    total_windows=len(windows),
                    elapsed_s=self.elapsed(start),
                    frames=frames,
                    audio=sound,
                    frame_rate=frame_rate,
                    written_s=writer.frames_written / frame_rate,
                )
            if finished == 0:
                writer.abort()
                return
            stopped = finished < len(windows)
            if stopped and carry.audio_tail is not None:  # the held-back end of the last finished window's sound
                writer.append(None, carry.audio_tail)
            path = writer.close()
        except BaseException:
            writer.abort()
            raise
        duration = writer.frames_written / frame_rate
        recipe.inputs["stopped"] = stopped
        recipe.inputs["written_s"] = duration
        if stopped:
            recipe.inputs["stopped_after_window"] = finished
            logger.info("Stopped after window %d of %d: %s holds %.2f s.", finished, len(windows), path, duration)
        recipe.timings_s = {"total": self.elapsed(start)}
        recipe_path = write_recipe(path, recipe.to_dict())
        yield LongFormFinished(
            elapsed_s=self.elapsed(start),
            path=path,
            recipe_path=recipe_path,
            duration_s=duration,
            stopped=stopped,
            recipe=recipe.to_dict(),
        )

    def _run_window(
        self,
        recipe: Recipe,
        window: Window,
        prompt: str,
        clip: Audio | None,
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

    def _audio_slice(self, clip: Audio, first_frame: int, num_frames: int, frame_rate: float, pad: bool) -> Audio:
        """The clip's samples from frame `first_frame` for `num_frames` frames, silence past its end where `pad`.

        Sample boundaries are `seconds_to_samples(frame / frame_rate)`, so consecutive slices join without a gap."""
        rate = clip.sampling_rate
        begin = seconds_to_samples(first_frame / frame_rate, rate)
        end = seconds_to_samples((first_frame + num_frames) / frame_rate, rate)
        waveform = clip.waveform[:, begin:end]
        if pad and waveform.shape[-1] < end - begin:
            waveform = torch.nn.functional.pad(waveform, (0, end - begin - waveform.shape[-1]))
        return Audio(waveform, rate)

    def _window_output(
        self,
        recipe: Recipe,
        window: Window,
        clip: Audio | None,
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
            sound = Audio(clip.waveform[:, begin:end], clip.sampling_rate)
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


def _frames_for(duration_s: float, frame_rate: float) -> int:
    """Frames that cover `duration_s`: the video may end up to one frame after the sound, never before."""
    return max(1, math.ceil(duration_s * frame_rate - 1e-6))
