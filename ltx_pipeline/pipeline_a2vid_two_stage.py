"""Audio to video in two stages, after the reference `A2VidPipelineTwoStage` (ltx_pipelines/a2vid_two_stage.py)."""

import logging
import os
import time
from collections.abc import Iterator

import torch

from . import constants, validation
from .audio import load_audio, seconds_to_samples
from .conditioning import ImageCondition
from .engine import Stage, StageResult, frozen_stream, run_stages
from .pipeline_common import LTXAVPipelineBase, RunRequest, stage_1_guidance
from .types import Audio, Finished, GuidanceParams, LTXAVOutput, PipelineEvent

logger = logging.getLogger(__name__)


class A2VidPipelineTwoStage(LTXAVPipelineBase):
    """Generates video driven by an audio clip.

    The clip is cut to exactly `num_frames / frame_rate` seconds from `audio_start_time`, encoded by the audio
    VAE and held clean through both stages while only the video is denoised: the transformer hears it through
    its audio-to-video cross-attention at every step. The output carries the original cut, sample for sample,
    at its original sample rate.
    """

    # Plain Euler on every generation, LTX-2.5 included: in the reference (ltx-pipelines 1.2.0) the ancestral stage 1
    # is `DistilledPipeline`'s alone (text/images to AV, no frozen stream); its pipelines with a frozen stream or
    # held tokens, `A2VidPipelineTwoStage` and the distilled `RetakePipeline`, step with Euler.
    versioned_stage_1_sampler = False

    def stream(
        self,
        audio: str | os.PathLike | Audio,
        prompt: str,
        negative_prompt: str | None = None,
        audio_start_time: float = 0.0,
        pad_audio: bool = False,
        height: int = constants.DEFAULT_HEIGHT,
        width: int = constants.DEFAULT_WIDTH,
        num_frames: int = constants.DEFAULT_NUM_FRAMES,
        frame_rate: float = constants.DEFAULT_FRAME_RATE,
        seed: int = constants.DEFAULT_SEED,
        mode: str | None = None,
        num_inference_steps: int | None = None,
        modality_scale: float | None = None,
        cfg_scale: float | None = None,
        stg_scale: float | None = None,
        rescale_scale: float | None = None,
        stg_blocks: tuple[int, ...] | None = None,
        images: list[ImageCondition] | None = None,
        output_path: str | os.PathLike | None = None,
    ) -> Iterator[PipelineEvent]:
        """Checks every input and reads the clip, then returns a generator of events.

        `audio` is a file path (wav, flac, ogg, mp3, or a video's audio track) or an `Audio`. A clip shorter
        than the chosen duration is an error unless `pad_audio=True`, which pads it with silence and records so.
        `modality_scale` (> 1 adds a pass with cross-modal attention off) steers the video toward the sound.
        With `output_path` (an .mp4) the final decode is encoded into that file as it runs (the output's
        `written_mp4`; `media.save_output` to the same path then writes the recipe alone).
        """
        mode = mode or self.model_variant
        stg_blocks = tuple(stg_blocks) if stg_blocks is not None else self.default_stg_blocks()
        video_guidance = stage_1_guidance(
            mode, stg_blocks, constants.VIDEO_CFG_SCALE, cfg_scale, stg_scale, rescale_scale, modality_scale
        )
        recipe, conditions, opened_images = self.prepare_request(
            RunRequest(
                prompt,
                negative_prompt,
                height,
                width,
                num_frames,
                frame_rate,
                seed,
                mode,
                num_inference_steps,
                video_guidance=video_guidance,
                images=images,
            )
        )
        output_path = validation.check_output_path(output_path)
        validation.check_audio_start_time(audio_start_time)
        if not isinstance(pad_audio, bool):
            raise ValueError(f"`pad_audio` must be True or False; got {pad_audio!r}.")
        clip, padded_s = self.cut_audio(audio, audio_start_time, num_frames, frame_rate, pad_audio)
        recipe.inputs |= {
            "audio": "<in-memory Audio>" if isinstance(audio, Audio) else str(audio),
            "audio_start_time": audio_start_time,
            "audio_duration_s": num_frames / frame_rate,
            "audio_padded_with_silence_s": padded_s,
        }
        recipe.audio_sampling_rate = clip.sampling_rate
        return self.run_with_cleanup(
            self._generate(recipe, clip, video_guidance, num_inference_steps, conditions, opened_images, output_path)
        )

    def cut_audio(
        self, audio: str | os.PathLike | Audio, start_time: float, num_frames: int, frame_rate: float, pad: bool
    ) -> tuple[Audio, float]:
        """The clip's samples for num_frames / frame_rate seconds from `start_time`; returns the cut and any padding."""
        duration_s = num_frames / frame_rate
        if isinstance(audio, Audio):
            first = round(start_time * audio.sampling_rate)
            if first >= audio.num_samples:
                raise ValueError(
                    f"`audio_start_time` must be before the end of the clip ({audio.duration_s:.2f} s); "
                    f"got {start_time} s."
                )
            count = seconds_to_samples(duration_s, audio.sampling_rate)
            clip = Audio(audio.waveform[:, first : first + count], audio.sampling_rate)
        elif isinstance(audio, (str, os.PathLike)):
            clip = load_audio(audio, start_time=start_time, duration=duration_s)
        else:
            raise ValueError(f"`audio` must be a file path or an Audio; got {type(audio).__name__}.")
        needed = seconds_to_samples(duration_s, clip.sampling_rate)
        missing = needed - clip.num_samples
        if missing <= 0:
            return clip, 0.0
        available_s = clip.num_samples / clip.sampling_rate
        if not pad:
            suggestion = validation.frames_for_duration(available_s, frame_rate)
            if suggestion / frame_rate > available_s:
                suggestion -= constants.VIDEO_TEMPORAL_COMPRESSION
            hint = (
                f"choose num_frames={suggestion} ({suggestion / frame_rate:.2f} s)"
                if suggestion >= 1 + constants.VIDEO_TEMPORAL_COMPRESSION
                else "use a longer clip"
            )
            raise ValueError(
                f"`audio` from {start_time:g} s lasts {available_s:.2f} s, shorter than the {duration_s:.2f} s that "
                f"num_frames={num_frames} at {frame_rate:g} fps needs; {hint}, or pass pad_audio=True to pad "
                "with silence."
            )
        logger.warning(
            "The audio clip is %.2f s short; padding it with silence (pad_audio=True).", missing / clip.sampling_rate
        )
        waveform = torch.nn.functional.pad(clip.waveform, (0, missing))
        return Audio(waveform, clip.sampling_rate), missing / clip.sampling_rate

    @torch.no_grad()
    def _generate(
        self, recipe, clip: Audio, video_guidance: GuidanceParams, num_inference_steps, conditions, images, output_path
    ):
        start = time.perf_counter()
        device = self._execution_device
        height, width = recipe.height, recipe.width
        num_frames, frame_rate = recipe.num_frames, recipe.frame_rate
        stage_1_sigmas, stage_2_sigmas = self.stage_sigmas(recipe.mode, num_inference_steps)
        recipe.stage_1_sigmas, recipe.stage_2_sigmas = stage_1_sigmas, stage_2_sigmas
        timings = recipe.timings_s

        # 1. Encode the prompt (and the negative prompt, where CFG needs it) and the audio clip
        self.activate_stage_loras(1)
        positive, negative = self.encode_prompts(recipe.prompt, recipe.negative_prompt, video_guidance, device=device)
        geometry_1 = self.latent_geometry(height // 2, width // 2, num_frames, frame_rate)
        # Held clean through both stages: every audio token's timestep is 0, the audio's modality sigma the step's.
        audio = frozen_stream(self.pack_audio(self.encode_audio(clip, geometry_1.audio_frames, device)))
        timings["encoding"] = self.elapsed(start)
        run = self.run_context(recipe, (positive, negative), start, kept_audio=clip)

        # 2. Stage 1: video from noise at half resolution, guided on video alone; the audio stays clean
        held_1 = self.encode_image_conditions(conditions, images, geometry_1, height // 2, width // 2, device)
        stage_1 = Stage(1, geometry_1, stage_1_sigmas, self.video_spec(held_1, geometry_1, video_guidance), audio)

        # 3. Stage 2: the video upsampled 2x, re-noised to the first stage-2 sigma and refined at full resolution
        #    (reference: no guidance), the audio still clean
        def stage_2(result: StageResult) -> Stage:
            geometry_2 = self.latent_geometry(height, width, num_frames, frame_rate)
            upsampled = self.pack_video(self.upsample_video(result.video_latents, geometry_1))
            held_2 = self.encode_image_conditions(conditions, images, geometry_2, height, width, device)
            video = self.video_spec(held_2, geometry_2, GuidanceParams(), upsampled, stage_2_sigmas[0])
            return Stage(2, geometry_2, stage_2_sigmas, video, audio)

        result = yield from run_stages(self, run, stage_1, stage_2)
        if result is None:
            return

        # 4. Decode the final video (into the mp4 as it comes, where one is asked for); the audio is the original
        #    cut, unmodified
        decode_start = self.elapsed(start)
        latents = self.unpack_video(result.video_latents, result.stage.geometry)
        if output_path is None:
            frames = self.decode_video(latents, run.noise.generator)
        else:
            frames = self.decode_video_to_mp4(latents, clip, frame_rate, output_path, timings, run.noise.generator)
        timings["decode"] = self.elapsed(start) - decode_start
        timings["total"] = self.elapsed(start)
        output = LTXAVOutput(
            frames=frames, audio=clip, frame_rate=frame_rate, recipe=recipe.to_dict(), written_mp4=output_path
        )
        yield Finished(elapsed_s=timings["total"], output=output)
