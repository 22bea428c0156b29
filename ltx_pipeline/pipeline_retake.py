"""Retake: regenerate one time span of a clip's video, audio or both, after the reference `RetakePipeline`.

As there (ltx_pipelines/retake.py), the clip's video and audio are encoded and denoised in one stage at the clip's
own size, each with a denoise mask from the span (the reference's `TemporalRegionMask`: 1 for the tokens whose time
overlaps [start, end), 0 elsewhere); a stream that is not regenerated is held clean as a whole. Unlike the
reference's output, everything outside the span is the clip itself: the frames of latent frames that were held and
the samples outside [start, end) come from the input, not from a VAE round trip.
"""

import logging
import math
import os
import time
from collections.abc import Iterator

import numpy as np
import torch

from . import constants
from .audio import load_audio, resample, seconds_to_samples
from .conditioning import latent_frame_of
from .engine import Stage, StreamSpec, TimeSpan, run_stages, span_mask
from .engine.streams import audio_frame_seconds, video_frame_seconds
from .pipeline_common import LTXAVPipelineBase, RunRequest, stage_1_guidance
from .types import Audio, Finished, LTXAVOutput, PipelineEvent
from .video_input import frames_to_pixels, read_video

logger = logging.getLogger(__name__)

STREAMS = ("video", "audio", "both")


class RetakePipeline(LTXAVPipelineBase):
    """Regenerates [start_time, end_time) of a clip; the rest of the clip is kept as it is."""

    # The reference's distilled `RetakePipeline` steps with plain Euler on every generation, LTX-2.5 included.
    versioned_stage_1_sampler = False

    def stream(
        self,
        video: str | os.PathLike,
        prompt: str,
        start_time: float,
        end_time: float,
        regenerate: str = "both",
        negative_prompt: str | None = None,
        num_frames: int | None = None,
        fit: str | None = None,
        seed: int = constants.DEFAULT_SEED,
        mode: str | None = None,
        num_inference_steps: int | None = None,
        modality_scale: float | None = None,
        cfg_scale: float | None = None,
        stg_scale: float | None = None,
        rescale_scale: float | None = None,
        stg_blocks: tuple[int, ...] | None = None,
        preview_audio: bool = True,
    ) -> Iterator[PipelineEvent]:
        """Checks every input and reads the clip, then returns a generator of events.

        `video` is a file with a picture and a sound track (mp4, webm, mov); `regenerate` is "video", "audio" or
        "both"; the prompt describes the new span. Frame count and size follow video-to-audio's rules
        (`num_frames`, `fit`).
        """
        if regenerate not in STREAMS:
            raise ValueError(f"`regenerate` must be 'video', 'audio' or 'both'; got {regenerate!r}.")
        mode = mode or self.model_variant
        stg_blocks = tuple(stg_blocks) if stg_blocks is not None else self.default_stg_blocks()
        scales = (cfg_scale, stg_scale, rescale_scale, modality_scale)
        video_guidance = stage_1_guidance(mode, stg_blocks, constants.VIDEO_CFG_SCALE, *scales)
        audio_guidance = stage_1_guidance(mode, stg_blocks, constants.AUDIO_CFG_SCALE, *scales)
        clip = read_video(video, num_frames=num_frames, fit=fit, check_work=self.check_work, sound=True)
        duration_s = clip.num_frames / float(clip.frame_rate)
        span = check_span(start_time, end_time, duration_s)
        recipe, _, _ = self.prepare_request(
            RunRequest(
                prompt,
                negative_prompt,
                clip.height,
                clip.width,
                clip.num_frames,
                float(clip.frame_rate),
                seed,
                mode,
                num_inference_steps,
                video_guidance=video_guidance if regenerate != "audio" else None,
                audio_guidance=audio_guidance if regenerate != "video" else None,
            )
        )
        sound = load_audio(video, duration=duration_s)
        if sound.num_samples < seconds_to_samples(duration_s, sound.sampling_rate):
            raise ValueError(
                f"`video` {os.path.basename(str(video))} has {sound.duration_s:.2f} s of sound for "
                f"{duration_s:.2f} s of picture; retake needs both to last the whole clip."
            )
        recipe.inputs |= {
            "video": os.path.basename(str(video)),
            "start_time": start_time,
            "end_time": end_time,
            "regenerate": regenerate,
            "video_changes": list(clip.changes),
        }
        return self.run_with_cleanup(
            self._generate(
                recipe, clip, sound, span, video_guidance, audio_guidance, num_inference_steps, preview_audio
            )
        )

    @torch.no_grad()
    def _generate(self, recipe, clip, sound, span, video_guidance, audio_guidance, num_inference_steps, preview_audio):
        start = time.perf_counter()
        device = self._execution_device
        num_frames, frame_rate = recipe.num_frames, recipe.frame_rate
        regenerate = recipe.inputs["regenerate"]
        sigmas, _ = self.stage_sigmas(recipe.mode, num_inference_steps)
        recipe.stage_1_sigmas = sigmas
        timings = recipe.timings_s

        # 1. Encode the prompt, the clip's frames and its sound
        self.activate_stage_loras(1)
        positive, negative = self.encode_prompts(
            recipe.prompt, recipe.negative_prompt, video_guidance, audio_guidance, device=device
        )
        geometry = self.latent_geometry(clip.height, clip.width, num_frames, frame_rate)
        pixels = frames_to_pixels(clip.frames).to(device, self.vae.dtype)
        video_latents = self.pack_video(self.vae.encode(pixels).latent_dist.mode())
        audio_latents = self.pack_audio(self.encode_audio(sound, geometry.audio_frames, device))
        timings["encoding"] = self.elapsed(start)

        # 2. The span's tokens from noise, the rest held clean (a stream not regenerated: held as a whole)
        video_seconds = video_frame_seconds(geometry.frames, self.vae.config.temporal_compression_ratio, frame_rate)
        audio_config = self.audio_vae.config
        audio_seconds = audio_frame_seconds(
            geometry.audio_frames,
            self.audio_vae.temporal_compression_ratio,
            audio_config.mel_hop_length,
            audio_config.sample_rate,
        )
        video_mask = span_mask(video_seconds, span, geometry.tokens_per_frame).to(device)
        audio_mask = span_mask(audio_seconds, span, 1).to(device)
        if regenerate == "audio":
            video_mask = torch.zeros_like(video_mask)
        if regenerate == "video":
            audio_mask = torch.zeros_like(audio_mask)
        video = StreamSpec(clean=video_latents, denoise_mask=video_mask, guidance=video_guidance)
        audio = StreamSpec(clean=audio_latents, denoise_mask=audio_mask, guidance=audio_guidance)
        run = self.run_context(
            recipe,
            (positive, negative),
            start,
            preview_audio=preview_audio,
            kept_audio=sound if audio.frozen else None,
        )
        result = yield from run_stages(self, run, Stage(1, geometry, sigmas, video, audio))
        if result is None:
            return

        # 3. Decode what was regenerated and put it into the clip
        decode_start = self.elapsed(start)
        frames = clip.frames
        if not video.frozen:
            decoded = self.decode_video(self.unpack_video(result.video_latents, geometry), run.noise.generator)
            frames = splice_frames(clip.frames, decoded, video_mask[0, :: geometry.tokens_per_frame, 0].cpu())
        new_sound = sound
        if not audio.frozen:
            generated = self.decode_audio(self.unpack_audio(result.audio_latents), num_frames, frame_rate)
            new_sound = splice_audio(sound, generated, span)
        timings["decode"] = self.elapsed(start) - decode_start
        timings["total"] = self.elapsed(start)
        recipe.audio_sampling_rate = new_sound.sampling_rate
        output = LTXAVOutput(
            frames=frames,
            audio=new_sound,
            frame_rate=frame_rate,
            recipe=recipe.to_dict(),
            video_source=clip.source if video.frozen and clip.copyable else None,
        )
        yield Finished(elapsed_s=timings["total"], output=output)


def check_span(start_time: float, end_time: float, duration_s: float) -> TimeSpan:
    """The span to regenerate: inside the clip and longer than zero, or an error naming both ends."""
    for name, value in (("start_time", start_time), ("end_time", end_time)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"`{name}` must be a number of seconds; got {value!r}.")
    if not 0 <= start_time < end_time <= duration_s + 1e-9:
        raise ValueError(
            f"`start_time` and `end_time` must satisfy 0 <= start < end <= {duration_s:.3f} (the clip's length in "
            f"seconds); got start_time={start_time}, end_time={end_time}."
        )
    return TimeSpan(float(start_time), float(end_time))


def splice_frames(original: np.ndarray, decoded: np.ndarray, regenerated: torch.Tensor) -> np.ndarray:
    """The decoded frames where their latent frame was regenerated (`regenerated[f]` > 0), the original elsewhere."""
    frames = original.copy()
    for index in range(len(frames)):
        if regenerated[latent_frame_of(index, constants.VIDEO_TEMPORAL_COMPRESSION)] > 0:
            frames[index] = decoded[index]
    return frames


def splice_audio(original: Audio, generated: Audio, span: TimeSpan) -> Audio:
    """The original samples outside the span, the generated ones (at the original's rate and channels) inside,
    with a short linear crossfade just inside each edge."""
    if generated.sampling_rate != original.sampling_rate:
        generated = resample(generated, original.sampling_rate)
    new = generated.waveform
    if new.shape[0] != original.num_channels:
        new = new.mean(0, keepdim=True).expand(original.num_channels, -1)
    new = torch.nn.functional.pad(new, (0, max(0, original.num_samples - new.shape[-1])))
    rate = original.sampling_rate
    first, last = round(span.start_s * rate), min(round(span.end_s * rate), original.num_samples)
    fade = min(round(constants.RETAKE_CROSSFADE_S * rate), (last - first) // 2)
    weight = torch.ones(last - first)
    if fade > 0:
        ramp = torch.linspace(0.0, 1.0, fade + 2)[1:-1]
        weight[:fade] = ramp
        weight[len(weight) - fade :] = ramp.flip(0)
    waveform = original.waveform.clone()
    segment = new[:, first:last]
    waveform[:, first:last] = weight * segment + (1 - weight) * original.waveform[:, first:last]
    return Audio(waveform, rate)
