"""Video to audio (foley): new sound for a video the user already has.

The reference ships no such pipeline; this one is the audio-to-video pipeline turned around. The video is encoded
by the video VAE and held clean (every video token's timestep 0, the video's modality sigma the step's sigma, as
the reference holds any clean stream) while the audio is denoised from noise, hearing the picture through the
video-to-audio cross-attention at every step. One stage at the video's own size: there is no low-resolution video
to upsample. The output keeps the video's own frames, copied from the file where nothing was changed.
"""

import logging
import os
import time
from collections.abc import Iterator

import torch

from . import constants
from .engine import Stage, StreamSpec, frozen_stream, run_stages
from .pipeline_common import LTXAVPipelineBase, RunRequest, stage_1_guidance
from .types import Finished, LTXAVOutput, PipelineEvent
from .video_input import VideoClip, frames_to_pixels, read_video

logger = logging.getLogger(__name__)


class V2AudPipeline(LTXAVPipelineBase):
    """Generates audio for a given video; the video comes back unchanged."""

    # Plain Euler on LTX-2.5 too, as the reference's pipelines with a frozen stream step (see A2VidPipelineTwoStage).
    versioned_stage_1_sampler = False

    def stream(
        self,
        video: str | os.PathLike,
        prompt: str,
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
        """Checks every input and reads the video, then returns a generator of events.

        `video` is a file (mp4, webm, mov; its own sound is ignored). Its frame count must be 8k+1, or pass
        `num_frames` to use its first frames; its size must be a multiple of 64, or pass `fit="crop"` (centre crop)
        or `fit="resize"`. The scales guide the audio (dev defaults: CFG 7, STG 1, rescale 0.7, modality 3).
        """
        mode = mode or self.model_variant
        stg_blocks = tuple(stg_blocks) if stg_blocks is not None else self.default_stg_blocks()
        audio_guidance = stage_1_guidance(
            mode, stg_blocks, constants.AUDIO_CFG_SCALE, cfg_scale, stg_scale, rescale_scale, modality_scale
        )
        clip = read_video(video, num_frames=num_frames, fit=fit, check_work=self.check_work)
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
                audio_guidance=audio_guidance,
            )
        )
        recipe.inputs |= {
            "video": os.path.basename(str(video)),
            "video_changes": list(clip.changes),
            "video_copied": clip.copyable,
        }
        if not clip.copyable:
            reason = "; ".join(clip.changes) or f"an mp4 cannot hold its {clip.codec} stream"
            recipe.inputs["video_reencoded_because"] = reason
            logger.warning("The output re-encodes the video (%s).", reason)
        return self.run_with_cleanup(self._generate(recipe, clip, audio_guidance, num_inference_steps, preview_audio))

    @torch.no_grad()
    def encode_video(self, clip: VideoClip, device: torch.device) -> torch.Tensor:
        """The clip's packed, normalised video latents."""
        pixels = frames_to_pixels(clip.frames).to(device, self.vae.dtype)
        return self.pack_video(self.vae.encode(pixels).latent_dist.mode())

    @torch.no_grad()
    def _generate(self, recipe, clip: VideoClip, audio_guidance, num_inference_steps, preview_audio):
        start = time.perf_counter()
        device = self._execution_device
        num_frames, frame_rate = recipe.num_frames, recipe.frame_rate
        sigmas, _ = self.stage_sigmas(recipe.mode, num_inference_steps)
        recipe.stage_1_sigmas = sigmas
        timings = recipe.timings_s

        # 1. Encode the prompt and the video, which stays clean throughout
        self.activate_stage_loras(1)
        positive, negative = self.encode_prompts(recipe.prompt, recipe.negative_prompt, audio_guidance, device=device)
        video = frozen_stream(self.encode_video(clip, device))
        timings["encoding"] = self.elapsed(start)
        run = self.run_context(recipe, (positive, negative), start, preview_audio=preview_audio)

        # 2. One stage at the video's size: the audio from noise, guided on audio alone
        geometry = self.latent_geometry(clip.height, clip.width, num_frames, frame_rate)
        stage = Stage(1, geometry, sigmas, video, StreamSpec(guidance=audio_guidance))
        result = yield from run_stages(self, run, stage)
        if result is None:
            return

        # 3. Decode the audio; the frames are the video's own
        decode_start = self.elapsed(start)
        audio = self.decode_audio(self.unpack_audio(result.audio_latents), num_frames, frame_rate)
        timings["decode"] = self.elapsed(start) - decode_start
        timings["total"] = self.elapsed(start)
        recipe.audio_sampling_rate = audio.sampling_rate
        output = LTXAVOutput(
            frames=clip.frames,
            audio=audio,
            frame_rate=frame_rate,
            recipe=recipe.to_dict(),
            video_source=clip.source if clip.copyable else None,
        )
        yield Finished(elapsed_s=timings["total"], output=output)
