"""Text to synchronized audio and video in two stages, after the reference `TI2VidTwoStagesPipeline`."""

import logging
import os
import time
from collections.abc import Iterator

import torch

from . import constants, validation
from .conditioning import ImageCondition
from .engine import Stage, StageResult, StreamSpec, run_stages
from .pipeline_common import LTXAVPipelineBase, RunRequest, stage_1_guidance
from .types import Finished, GuidanceParams, LTXAVOutput, PipelineEvent

logger = logging.getLogger(__name__)


class TI2VidTwoStagesPipeline(LTXAVPipelineBase):
    """Generates video and audio together from a prompt.

    Stage 1 denoises both streams from one noise state at half the requested width and height; the latent
    upsampler doubles the video latents; stage 2 re-noises both streams to the first stage-2 sigma and refines
    them at full size. Distilled mode runs the reference's 8 + 3 sigmas with one transformer pass per step; dev
    mode runs `num_inference_steps` guided steps in stage 1 (CFG, STG, rescale, modality guidance per modality).
    """

    def stream(
        self,
        prompt: str,
        negative_prompt: str | None = None,
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
        audio_modality_scale: float | None = None,
        audio_cfg_scale: float | None = None,
        audio_stg_scale: float | None = None,
        audio_rescale_scale: float | None = None,
        stg_blocks: tuple[int, ...] | None = None,
        images: list[ImageCondition] | None = None,
        preview_audio: bool = True,
        length_from_prompt: bool = False,
        output_path: str | os.PathLike | None = None,
    ) -> Iterator[PipelineEvent]:
        """Checks every input, then returns a generator of `StepPreview`, `StageDecoded` and `Finished` events.

        `None` for a scale means the mode's default: the reference dev values in dev mode (video CFG 3, audio
        CFG 7, STG 1 on block 28, rescale 0.7, modality 3), a single unguided pass per step in distilled mode.
        The audio scales default to the video ones where the dev defaults agree. `cancel()` ends the stream
        between steps. `length_from_prompt` (models with LTX-2.5's duration head): the head picks `num_frames`
        from the prompt (1-20 s, on the 8k + 1 grid), in place of the one given; the recipe keeps its prediction.
        With `output_path` (an .mp4) the final decode is encoded into that file as it runs (the output's
        `written_mp4`; `media.save_output` to the same path then writes the recipe alone).
        """
        output_path = validation.check_output_path(output_path)
        mode = mode or self.model_variant
        prediction = None
        if length_from_prompt:
            prediction = self.predict_length(prompt, frame_rate)
            num_frames = prediction.num_frames
        stg_blocks = tuple(stg_blocks) if stg_blocks is not None else self.default_stg_blocks()
        video_guidance = stage_1_guidance(
            mode, stg_blocks, constants.VIDEO_CFG_SCALE, cfg_scale, stg_scale, rescale_scale, modality_scale
        )
        audio_guidance = stage_1_guidance(
            mode,
            stg_blocks,
            constants.AUDIO_CFG_SCALE,
            audio_cfg_scale,
            stg_scale if audio_stg_scale is None else audio_stg_scale,
            rescale_scale if audio_rescale_scale is None else audio_rescale_scale,
            modality_scale if audio_modality_scale is None else audio_modality_scale,
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
                audio_guidance=audio_guidance,
                images=images,
            )
        )
        if prediction is not None:
            recipe.inputs["length_from_prompt"] = {
                "predicted_seconds": round(prediction.predicted_seconds, 3),
                "num_frames": prediction.num_frames,
            }
        return self.run_with_cleanup(
            self._generate(
                recipe,
                video_guidance,
                audio_guidance,
                num_inference_steps,
                preview_audio,
                conditions,
                opened_images,
                output_path,
            )
        )

    @torch.no_grad()
    def _generate(
        self,
        recipe,
        video_guidance,
        audio_guidance,
        num_inference_steps,
        preview_audio,
        conditions,
        images,
        output_path,
    ):
        start = time.perf_counter()
        device = self._execution_device
        height, width = recipe.height, recipe.width
        num_frames, frame_rate = recipe.num_frames, recipe.frame_rate
        stage_1_sigmas, stage_2_sigmas = self.stage_sigmas(recipe.mode, num_inference_steps)
        recipe.stage_1_sigmas, recipe.stage_2_sigmas = stage_1_sigmas, stage_2_sigmas
        timings = recipe.timings_s

        # 1. Encode the prompt (and the negative prompt, where CFG needs it)
        self.activate_stage_loras(1)
        positive, negative = self.encode_prompts(
            recipe.prompt, recipe.negative_prompt, video_guidance, audio_guidance, device=device
        )
        timings["text_encoding"] = self.elapsed(start)
        run = self.run_context(recipe, (positive, negative), start, preview_audio=preview_audio)

        # 2. Stage 1: both streams from noise at half resolution
        geometry_1 = self.latent_geometry(height // 2, width // 2, num_frames, frame_rate)
        held_1 = self.encode_image_conditions(conditions, images, geometry_1, height // 2, width // 2, device)
        stage_1 = Stage(
            number=1,
            geometry=geometry_1,
            sigmas=stage_1_sigmas,
            video=self.video_spec(held_1, geometry_1, video_guidance),
            audio=StreamSpec(guidance=audio_guidance),
        )

        # 3. Stage 2: the video latents upsampled 2x, both streams re-noised to the first stage-2 sigma and refined
        #    at full resolution, one pass per step (reference: no guidance)
        def stage_2(result: StageResult) -> Stage:
            geometry_2 = self.latent_geometry(height, width, num_frames, frame_rate)
            upsampled = self.pack_video(self.upsample_video(result.video_latents, geometry_1))
            held_2 = self.encode_image_conditions(conditions, images, geometry_2, height, width, device)
            return Stage(
                number=2,
                geometry=geometry_2,
                sigmas=stage_2_sigmas,
                video=self.video_spec(held_2, geometry_2, GuidanceParams(), upsampled, stage_2_sigmas[0]),
                audio=StreamSpec(clean=result.audio_latents, noise_scale=stage_2_sigmas[0]),
            )

        result = yield from run_stages(self, run, stage_1, stage_2)
        if result is None:
            return

        # 4. Decode the final audio, then the video (into the mp4 as it comes, where one is asked for)
        decode_start = self.elapsed(start)
        audio = self.decode_audio(self.unpack_audio(result.audio_latents), num_frames, frame_rate)
        latents = self.unpack_video(result.video_latents, result.stage.geometry)
        if output_path is None:
            frames = self.decode_video(latents, run.noise.generator)
        else:
            frames = self.decode_video_to_mp4(latents, audio, frame_rate, output_path, timings, run.noise.generator)
        timings["decode"] = self.elapsed(start) - decode_start
        timings["total"] = self.elapsed(start)
        recipe.audio_sampling_rate = audio.sampling_rate
        output = LTXAVOutput(
            frames=frames, audio=audio, frame_rate=frame_rate, recipe=recipe.to_dict(), written_mp4=output_path
        )
        yield Finished(elapsed_s=timings["total"], output=output)
