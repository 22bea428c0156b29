"""What both LTX-2 audio-video pipelines share: components, prompt encoding, latents, the denoising loop, decoding.

The two pipelines differ only in what they do with audio (generate it, or hold the user's clip clean), so each
keeps its own `stream()` and shares the steps below. Latent packing, normalisation and prompt encoding are
diffusers' own (`LTX2Pipeline`'s static helpers); the loop is written out here because diffusers' loop cannot
stream audio estimates, freeze one modality, or take per-modality guidance of 0.
"""

import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    LTX2Pipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.hooks.group_offloading import _is_group_offload_enabled
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2Vocoder, LTX2VocoderWithBWE
from transformers import Gemma3ForConditionalGeneration, PreTrainedTokenizerBase

from . import constants, limits, validation, versions
from .audio import prepare_audio_vae_input, seconds_to_samples
from .conditioning import (
    ImageCondition,
    aspect_notice,
    check_image_conditions,
    load_image,
    prepare_image,
)
from .duration import DurationPrediction, encode_for_connectors, predict_num_frames
from .engine.cross_modulation import use_reference_1_2_modulation
from .engine.latents import LatentGeometry
from .engine.prompt import TOKENIZER_LOCK, TextConditioning
from .engine.stages import RunContext
from .engine.streams import HeldImages, NoiseSource, StreamSpec, image_tokens, with_images
from .lora import StageLoras, lora_fingerprint
from .positions import use_reference_position_precision
from .previews import LatentPreviewDecoder, preview_decoder_for
from .speed import streamed_decode
from .streamed_write import write_while_decoding
from .types import Audio, Finished, GuidanceParams, LTXAVOutput, PipelineEvent, Recipe

logger = logging.getLogger(__name__)


class GenerationCancelled(RuntimeError):
    """Raised by `__call__` when `cancel()` stopped the run."""


def dev_sigmas(num_inference_steps: int) -> list[float]:
    """The reference LTX2Scheduler's dev schedule (ltx_core/components/schedulers.py), with its default token count."""
    sigmas = torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float64)
    slope = (constants.DEV_MAX_SHIFT - constants.DEV_BASE_SHIFT) / (
        constants.DEV_SHIFT_MAX_TOKENS - constants.DEV_SHIFT_BASE_TOKENS
    )
    shift = constants.DEV_BASE_SHIFT + slope * (constants.DEV_SHIFT_MAX_TOKENS - constants.DEV_SHIFT_BASE_TOKENS)
    nonzero = sigmas != 0
    sigmas[nonzero] = math.exp(shift) / (math.exp(shift) + (1 / sigmas[nonzero] - 1))
    # Stretch so the last non-zero sigma lands on the terminal value.
    one_minus = 1.0 - sigmas[nonzero]
    sigmas[nonzero] = 1.0 - one_minus / (one_minus[-1] / (1.0 - constants.DEV_TERMINAL_SIGMA))
    return [float(sigma) for sigma in sigmas]


@dataclass(frozen=True)
class RunRequest:
    """What every mode's run shares; `LTXAVPipelineBase.prepare_request` checks it before any work."""

    prompt: str
    negative_prompt: str | None  # None: the reference negative prompt, where CFG needs one
    height: int  # px
    width: int  # px
    num_frames: int  # 8k + 1
    frame_rate: float  # frames per second
    seed: int
    mode: str  # "distilled" or "dev"
    num_inference_steps: int | None = None  # dev mode's stage-1 steps; None: the default
    video_guidance: GuidanceParams | None = None  # None: the video is not generated (held clean)
    audio_guidance: GuidanceParams | None = None  # None: the audio is not generated (held clean)
    images: list[ImageCondition] | None = None  # stills held at frames of the clip


class LTXAVPipelineBase(DiffusionPipeline):
    """Components and steps shared by `TI2VidTwoStagesPipeline` and `A2VidPipelineTwoStage`."""

    model_cpu_offload_seq = "text_encoder->connectors->transformer->latent_upsampler->vae->audio_vae->vocoder"
    _callback_tensor_inputs = ["video_latents", "audio_latents"]
    # Per-stage LoRA sets (`ltx_pipeline.lora.StageLoras`): the user's LoRAs in both stages, the dev checkpoint's
    # distilled LoRA in stage 2 only, as the reference two-stage pipelines apply them. None: no LoRAs.
    stage_loras: StageLoras | None = None
    # The most pixel-frames one run may ask for (`ltx_pipeline.limits`); None: the default for the device it runs on.
    work_limit: limits.WorkLimit | None = None
    # Whether a distilled run's stage 1 steps with the model generation's own sampler (LTX-2.5: ancestral Euler, as
    # the reference's `DistilledPipeline`); a mode the reference runs with plain Euler on every generation sets False.
    versioned_stage_1_sampler: bool = True

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKLLTX2Video,
        audio_vae: AutoencoderKLLTX2Audio,
        text_encoder: Gemma3ForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        connectors: LTX2TextConnectors,
        transformer: LTX2VideoTransformer3DModel,
        vocoder: LTX2Vocoder | LTX2VocoderWithBWE,
        latent_upsampler: LTX2LatentUpsamplerModel,
    ):
        super().__init__()
        self.register_modules(
            scheduler=scheduler,
            vae=vae,
            audio_vae=audio_vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            connectors=connectors,
            transformer=transformer,
            vocoder=vocoder,
            latent_upsampler=latent_upsampler,
        )
        # Video positions rounded to the transformer's dtype in bf16 runs, as the reference (see `positions`).
        use_reference_position_precision(transformer)
        if transformer is not None and self.version_profile.reference_release == "1.2.0":  # LTX-2.5
            use_reference_1_2_modulation(transformer)
        self._cancel_event = threading.Event()
        self._preview_decoder: LatentPreviewDecoder | None = None
        self._prompt_cache: dict[tuple, TextConditioning] = {}
        self.model_label = "custom components"  # shown in recipes and the app; `from_model` sets the real one
        self.model_variant = "distilled"  # "distilled" or "dev": the default `mode` of a run
        # LTX-2.5's optional parts, set by `from_model` where their files were there (see `loading.LoadedModel`).
        self.duration_head: torch.nn.Module | None = None  # "length from the prompt"
        self.diffusion_decoder: torch.nn.Module | None = None
        # Words a word-level tokenizer (the embedded model's) knows whole; it spells any other word letter by
        # letter, which the model never saw in training. None for open-vocabulary tokenizers such as Gemma's.
        known_words = getattr(tokenizer, "init_kwargs", {}).get("known_words")
        self.prompt_vocabulary = frozenset(word.lower() for word in known_words) if known_words else None

    # ---- loading --------------------------------------------------------------------------------------------------

    @classmethod
    def from_model(cls, model: str = constants.EMBEDDED_MODEL_NAME, **kwargs: Any) -> "LTXAVPipelineBase":
        """Loads the embedded model, a Hub id, a diffusers-format folder or an official single file.

        Keyword arguments go to `ltx_pipeline.loading.load_components` (e.g. `spatial_upsampler`, `text_encoder`,
        `torch_dtype`).
        """
        from .loading import load_components

        loaded = load_components(model, **kwargs)
        pipe = cls(**loaded.components)
        pipe.model_label = loaded.label
        pipe.model_variant = loaded.variant
        pipe.duration_head, pipe.diffusion_decoder = loaded.duration_head, loaded.diffusion_decoder
        return pipe

    @classmethod
    def from_pipe(cls, other: "LTXAVPipelineBase") -> "LTXAVPipelineBase":
        """The other mode of the same model, sharing every component (no extra memory)."""
        pipe = cls(**other.components)
        pipe.model_label = other.model_label
        pipe.model_variant = other.model_variant
        pipe.duration_head, pipe.diffusion_decoder = other.duration_head, other.diffusion_decoder
        return pipe

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of `prompt` the model's vocabulary lacks, in order of appearance (none for open-vocabulary models)."""
        if self.prompt_vocabulary is None:
            return []
        words = re.findall(r"[a-z]+(?:'[a-z]+)?", prompt.lower())
        return list(dict.fromkeys(word for word in words if word not in self.prompt_vocabulary))

    def clear_prompt_cache(self) -> None:
        """Forgets cached prompt encodings (call after changing the text encoder's or connectors' weights)."""
        self._prompt_cache.clear()

    # ---- run control ----------------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stops a running `stream()` between steps; safe to call from another thread."""
        self._cancel_event.set()

    @property
    def interrupt(self) -> bool:
        return self._cancel_event.is_set()

    def __call__(self, **kwargs: Any) -> LTXAVOutput:
        """Runs `stream()` to the end and returns the final output."""
        for event in self.stream(**kwargs):
            if isinstance(event, Finished):
                return event.output
        raise GenerationCancelled("The generation was cancelled before it finished.")

    # ---- steps ----------------------------------------------------------------------------------------------------

    @property
    def max_sequence_length(self) -> int:
        return min(constants.MAX_SEQUENCE_LENGTH, self.tokenizer.model_max_length)

    @property
    def is_ltx_2_3(self) -> bool:
        return bool(self.transformer.config.cross_attn_mod)

    @property
    def model_version(self) -> str:
        """The LTX-2 generation of the loaded components ("2.5", "2.3" or "2.0"), read from the components
        themselves so that every way of building a pipeline agrees: LTX-2.5 has the Gemma 4 text encoder, 2.3 the
        vocoder with bandwidth extension (as `versions.version_from_model_index` tells diffusers folders apart)."""
        return versions.version_of_components(self.text_encoder, self.vocoder)

    @property
    def version_profile(self) -> versions.VersionProfile:
        """What the engine does for this generation (sampler, image CRF, duration head...)."""
        return versions.profile(self.model_version)

    @property
    def model_summary(self) -> str:
        """One line naming the generation and what it means for a run (`versions.summary`)."""
        return versions.summary(self.model_version, self.duration_head is not None, self.video_decoder_name)

    def stage_1_sampler(self, mode: str) -> str:
        """The stage-1 sampler a run in `mode` uses: the version's distilled one, Euler in dev mode."""
        versioned = mode == "distilled" and self.versioned_stage_1_sampler
        return self.version_profile.distilled_stage_1_sampler if versioned else "euler"

    def ancestral_noise(self, seed: int, mode: str) -> NoiseSource | None:
        """The noise of LTX-2.5's ancestral stage 1, seeded `seed + 10000` as the reference's (so its first draw
        is not the initial noise), on the CPU like all of the project's noise; None where stage 1 is plain Euler."""
        if self.stage_1_sampler(mode) != "euler_ancestral":
            return None
        generator = torch.Generator().manual_seed(seed + versions.ANCESTRAL_NOISE_SEED_OFFSET)
        return NoiseSource(generator, self._execution_device)

    def default_stg_blocks(self) -> tuple[int, ...]:
        blocks = constants.STG_BLOCKS_2_3 if self.is_ltx_2_3 else constants.STG_BLOCKS_2_0
        # A toy model has fewer blocks than the reference's block 28; perturb its last block instead of
        # silently perturbing nothing (diffusers runs the pass and changes nothing for a missing block).
        num_layers = self.transformer.config.num_layers
        return tuple(block if block < num_layers else num_layers - 1 for block in blocks)

    def prepare_request(self, request: "RunRequest") -> tuple[Recipe, list[ImageCondition], list[PIL.Image.Image]]:
        """Checks the inputs every mode shares, before any work, and opens the images; returns the recipe's shared
        part with them."""
        prompt, negative_prompt, height, width = request.prompt, request.negative_prompt, request.height, request.width
        num_frames, frame_rate, seed, mode = request.num_frames, request.frame_rate, request.seed, request.mode
        num_inference_steps = request.num_inference_steps
        video_guidance, audio_guidance = request.video_guidance, request.audio_guidance
        validation.check_prompt(prompt)
        if negative_prompt is not None:
            validation.check_prompt(negative_prompt, "negative_prompt", allow_empty=True)
        validation.check_size(height, width)
        if self.vae.config.decoder_spatial_padding_mode == "reflect":
            # Reflection padding needs at least 2 latent cells per side in stage 1 (half size, 32 px per cell).
            minimum = 4 * self.vae.config.spatial_compression_ratio
            for name, value in (("height", height), ("width", width)):
                if value < minimum:
                    raise ValueError(f"`{name}` must be at least {minimum} pixels for this model; got {value}.")
        validation.check_num_frames(num_frames)
        self.check_work(height, width, num_frames)
        validation.check_frame_rate(frame_rate)
        validation.check_seed(seed)
        validation.check_mode(mode)
        if num_inference_steps is not None:
            if mode == "distilled":
                raise ValueError(
                    "`num_inference_steps` applies to mode='dev' only; the distilled schedule has a fixed "
                    f"{len(constants.DISTILLED_STAGE_1_SIGMAS) - 1} + {len(constants.DISTILLED_STAGE_2_SIGMAS) - 1} "
                    f"steps; got num_inference_steps={num_inference_steps} with mode='distilled'."
                )
            validation.check_steps(num_inference_steps)
        num_layers = self.transformer.config.num_layers
        if video_guidance is not None:
            validation.check_guidance(video_guidance, "video", num_layers)
        if audio_guidance is not None:
            validation.check_guidance(audio_guidance, "audio", num_layers)
        unknown = self.unknown_words(prompt)
        if unknown:
            logger.warning("The model does not know these words and will ignore their meaning: %s", ", ".join(unknown))
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt or "")):
            num_tokens = self.count_tokens(text)
            if num_tokens > self.max_sequence_length:
                raise ValueError(
                    f"`{name}` must fit in {self.max_sequence_length} text-encoder tokens; got {num_tokens} tokens."
                )
        conditions, opened_images, image_entries = self.read_image_conditions(
            request.images, num_frames, height, width
        )
        recipe = Recipe(
            pipeline=type(self).__name__,
            model=self.model_label,
            mode=mode,
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            num_frames=num_frames,
            frame_rate=frame_rate,
            seed=seed,
            unknown_words=self.unknown_words(prompt),
            images=image_entries,
            loras=self.lora_recipe(),
            model_version=self.model_version,
            stage_1_sampler=self.stage_1_sampler(mode),
            video_decoder=None if video_guidance is None else self.video_decoder_name,
            video_guidance=None if video_guidance is None else video_guidance.__dict__,
            audio_guidance=None if audio_guidance is None else audio_guidance.__dict__,
        )
        return recipe, conditions, opened_images

    def predict_length(self, prompt: str, frame_rate: float) -> DurationPrediction:
        """ "Length from the prompt": the frame count LTX-2.5's duration head predicts for `prompt` (1-20 s on the
        8k + 1 grid); a clear error for a model without the head, before any work."""
        if self.duration_head is None:
            raise ValueError(
                f"`length_from_prompt` needs a model with LTX-2.5's duration head; the loaded model "
                f"({self.model_label}, LTX-{self.model_version}) has none. Set `num_frames` instead, or load LTX-2.5 "
                f"with its {versions.OFFICIAL_FILES_2_5['duration_head'].rsplit('/', 1)[-1]} file."
            )
        validation.check_prompt(prompt)
        validation.check_frame_rate(frame_rate)
        _move_unless_streamed(self.duration_head, next(self.connectors.parameters()).device)
        with TOKENIZER_LOCK:
            return predict_num_frames(
                prompt,
                tokenizer=self.tokenizer,
                text_encoder=self.text_encoder,
                connectors=self.connectors,
                duration_head=self.duration_head,
                frame_rate=frame_rate,
                max_sequence_length=self.max_sequence_length,
            )

    def check_work(self, height: int, width: int, num_frames: int) -> None:
        """Refuses a job above the pixel-frames one run may ask for (`ltx_pipeline.limits`), before any work."""
        (self.work_limit or limits.default_work_limit(self._execution_device)).check(height, width, num_frames)

    def stage_sigmas(self, mode: str, num_inference_steps: int | None) -> tuple[list[float], list[float]]:
        if mode == "distilled":
            return list(constants.DISTILLED_STAGE_1_SIGMAS), list(constants.DISTILLED_STAGE_2_SIGMAS)
        return dev_sigmas(num_inference_steps or constants.DEV_NUM_INFERENCE_STEPS), list(
            constants.DISTILLED_STAGE_2_SIGMAS
        )

    def count_tokens(self, text: str) -> int:
        """Text-encoder tokens of `text`, special tokens included."""
        with TOKENIZER_LOCK:
            input_ids = self.tokenizer(text, add_special_tokens=True).input_ids
        bos = self.tokenizer.bos_token_id
        prepended = self.model_version == "2.5" and bos is not None and (not input_ids or input_ids[0] != bos)
        return len(input_ids) + int(prepended)  # LTX-2.5's encoding adds the `<bos>` its tokenizer leaves out

    @torch.no_grad()
    def encode_prompt(self, prompt: str, device: torch.device) -> TextConditioning:
        """Gemma-3 hidden states -> per-modality connectors; cached per prompt for the pipeline's lifetime."""
        # LoRAs on the connectors change the encoding, so their state is part of the key.
        key = (prompt, self.max_sequence_length, str(device), lora_fingerprint(self.connectors))
        if key not in self._prompt_cache:
            # diffusers' own Gemma prompt encoding (left padding, all hidden states stacked); it tokenizes and runs
            # the text encoder in one call, so concurrent runs encode their prompts one at a time.
            with TOKENIZER_LOCK:
                if self.version_profile.text_encoder_family == versions.GEMMA_4_UNIFIED_MODEL_TYPE:
                    # The Gemma 4 tokenizer adds no `<bos>`; LTX-2.5 was trained with one (reference tokenizer).
                    embeds, mask = encode_for_connectors(
                        prompt, self.tokenizer, self.text_encoder, self.max_sequence_length
                    )
                    embeds, mask = embeds.to(device), mask.to(device)
                else:
                    embeds, mask = LTX2Pipeline._get_gemma_prompt_embeds(
                        self, prompt, max_sequence_length=self.max_sequence_length, device=device
                    )
            padding_side = "left" if self.model_version == "2.5" else getattr(self.tokenizer, "padding_side", "left")
            video, audio, connector_mask = self.connectors(embeds, mask, padding_side=padding_side)
            if len(self._prompt_cache) >= 8:
                self._prompt_cache.pop(next(iter(self._prompt_cache)))
            self._prompt_cache[key] = TextConditioning(
                video=video, audio=audio, mask=connector_mask, all_real=bool(connector_mask.bool().all())
            )
        return self._prompt_cache[key]

    def encode_prompts(
        self, prompt: str, negative_prompt: str | None, *guidance: GuidanceParams, device: torch.device
    ) -> tuple[TextConditioning, TextConditioning | None]:
        """The prompt's encoding, and the negative prompt's (None: the reference one) where any stream's guidance
        runs CFG."""
        positive = self.encode_prompt(prompt, device)
        if all(params.cfg_scale == 1.0 for params in guidance):
            return positive, None
        return positive, self.encode_prompt(
            constants.DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt, device
        )

    def run_context(
        self, recipe: Recipe, texts: tuple[TextConditioning, TextConditioning | None], started: float, **options: Any
    ) -> RunContext:
        """What every stage of a one-clip run shares: its length, its prompt encodings, its noise (seeded by the
        recipe's seed, drawn on the CPU), its clock and timings; `options` are `RunContext`'s others."""
        return RunContext(
            num_frames=recipe.num_frames,
            frame_rate=recipe.frame_rate,
            positive=texts[0],
            negative=texts[1],
            noise=NoiseSource(torch.Generator().manual_seed(recipe.seed), self._execution_device),
            stage_1_ancestral_noise=self.ancestral_noise(recipe.seed, recipe.mode),
            started=started,
            timings=recipe.timings_s,
            **options,
        )

    def latent_geometry(self, height: int, width: int, num_frames: int, frame_rate: float) -> LatentGeometry:
        duration_s = num_frames / frame_rate
        return LatentGeometry(
            frames=(num_frames - 1) // self.vae.config.temporal_compression_ratio + 1,
            height=height // self.vae.config.spatial_compression_ratio,
            width=width // self.vae.config.spatial_compression_ratio,
            audio_frames=round(duration_s * self.audio_latents_per_second),
            frame_rate=frame_rate,
        )

    @property
    def audio_latents_per_second(self) -> float:
        config = self.audio_vae.config
        return config.sample_rate / config.mel_hop_length / self.audio_vae.temporal_compression_ratio

    def video_noise(self, geometry: LatentGeometry, noise: NoiseSource) -> torch.Tensor:
        """Packed video noise, drawn in the latents' (1, C, F, H, W) layout (noise lives in the normalised space)."""
        shape = (1, self.transformer.config.in_channels, geometry.frames, geometry.height, geometry.width)
        return LTX2Pipeline._pack_latents(
            noise(shape), self.transformer.config.patch_size, self.transformer.config.patch_size_t
        )

    def audio_noise(self, geometry: LatentGeometry, noise: NoiseSource) -> torch.Tensor:
        """Packed audio noise, drawn in the latents' (1, C, L, M) layout."""
        latent_mel_bins = self.audio_vae.config.mel_bins // self.audio_vae.mel_compression_ratio
        shape = (1, self.audio_vae.config.latent_channels, geometry.audio_frames, latent_mel_bins)
        return LTX2Pipeline._pack_audio_latents(noise(shape))

    def pack_video(self, latents: torch.Tensor) -> torch.Tensor:
        """Un-normalised (B, C, F, H, W) -> normalised, packed (B, F*H*W, C)."""
        latents = LTX2Pipeline._normalize_latents(
            latents.float(), self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        )
        return LTX2Pipeline._pack_latents(
            latents, self.transformer.config.patch_size, self.transformer.config.patch_size_t
        )

    def unpack_video(self, packed: torch.Tensor, geometry: LatentGeometry) -> torch.Tensor:
        """Normalised, packed (B, F*H*W, C) -> un-normalised (B, C, F, H, W)."""
        latents = LTX2Pipeline._unpack_latents(
            packed,
            geometry.frames,
            geometry.height,
            geometry.width,
            self.transformer.config.patch_size,
            self.transformer.config.patch_size_t,
        )
        return LTX2Pipeline._denormalize_latents(
            latents, self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        )

    def pack_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Un-normalised (B, C, L, M) -> normalised, packed (B, L, C*M)."""
        packed = LTX2Pipeline._pack_audio_latents(latents.float())
        return LTX2Pipeline._normalize_audio_latents(packed, self.audio_vae.latents_mean, self.audio_vae.latents_std)

    def unpack_audio(self, packed: torch.Tensor) -> torch.Tensor:
        """Normalised, packed (B, L, C*M) -> un-normalised (B, C, L, M)."""
        latents = LTX2Pipeline._denormalize_audio_latents(
            packed, self.audio_vae.latents_mean, self.audio_vae.latents_std
        )
        latent_mel_bins = self.audio_vae.config.mel_bins // self.audio_vae.mel_compression_ratio
        return LTX2Pipeline._unpack_audio_latents(latents, packed.shape[1], num_mel_bins=latent_mel_bins)

    @torch.no_grad()
    def encode_audio(self, clip: Audio, audio_frames: int, device: torch.device) -> torch.Tensor:
        """The clip's un-normalised audio latents (1, C, audio_frames, M)."""
        mel = prepare_audio_vae_input(clip).to(device, self.audio_vae.dtype)
        latents = self.audio_vae.encode(mel).latent_dist.mode().float()
        # The causal encoder yields an extra frame or so past the clip: keep exactly the clip's span.
        if latents.shape[2] < audio_frames:
            raise RuntimeError(f"The audio VAE produced {latents.shape[2]} latent frames; {audio_frames} needed.")
        return latents[:, :, :audio_frames]

    def upsample_video(self, packed: torch.Tensor, geometry: LatentGeometry) -> torch.Tensor:
        """Stage-1 packed latents -> un-normalised latents at twice the height and width."""
        latents = self.unpack_video(packed, geometry)
        upsampler_dtype = next(self.latent_upsampler.parameters()).dtype
        # The upsampler works on un-normalised latents (as diffusers' LTX2LatentUpsamplePipeline feeds it).
        return self.latent_upsampler(latents.to(upsampler_dtype)).float()

    def read_image_conditions(
        self, images: list[ImageCondition] | None, num_frames: int, height: int, width: int
    ) -> tuple[list[ImageCondition], list[PIL.Image.Image], list[dict[str, Any]]]:
        """Checks and opens the conditioning images up front; returns them with their recipe entries."""
        conditions = list(images or [])
        check_image_conditions(conditions, num_frames)
        opened = [load_image(condition.image, f"images[{index}].image") for index, condition in enumerate(conditions)]
        entries = []
        for condition, image in zip(conditions, opened, strict=True):
            notice = aspect_notice(image, height, width)
            if notice:
                logger.warning(notice)
            source = condition.image if isinstance(condition.image, (str, os.PathLike)) else "<in-memory image>"
            entries.append(
                {
                    "image": str(source),
                    "frame_index": condition.frame_index,
                    "strength": condition.strength,
                    "notice": notice,
                }
            )
        return conditions, opened, entries

    @torch.no_grad()
    def encode_image_conditions(
        self,
        conditions: list[ImageCondition],
        images: list[PIL.Image.Image],
        geometry: LatentGeometry,
        height: int,
        width: int,
        device: torch.device,
    ) -> HeldImages | None:
        """Each still encoded at this stage's size (strength 0: not at all), as the reference's two-stage pipelines
        hold them (`combined_image_conditionings`): at frame 0 over the first latent frame's tokens, at a later frame
        as tokens of its own appended to the clip, at that frame's time. None without any."""
        grid, appended = [], []
        for condition, image in zip(conditions, images, strict=True):
            if condition.strength <= 0:
                continue
            pixels = prepare_image(image, height, width, self.version_profile.image_conditioning_crf)
            pixels = pixels.to(device, self.vae.dtype)
            latents = self.pack_video(self.vae.encode(pixels).latent_dist.mode())  # (1, h*w, C)
            if condition.frame_index == 0:
                grid.append((slice(0, geometry.tokens_per_frame), latents, condition.strength))
            else:
                positions = self.keyframe_positions(geometry, condition.frame_index, device)
                appended.append((latents, condition.strength, positions))
        if not grid and not appended:
            return None
        held = image_tokens(geometry.frames * geometry.tokens_per_frame, grid, latents.shape[-1], device)
        clean, mask = held if held is not None else (None, None)
        return HeldImages(
            clean=clean,
            mask=mask,
            appended=torch.cat([tokens for tokens, _, _ in appended] or [latents[:, :0]], dim=1),
            appended_mask=torch.cat(
                [torch.full((1, tokens.shape[1], 1), 1 - strength, device=device) for tokens, strength, _ in appended]
                or [torch.ones(1, 0, 1, device=device)],
                dim=1,
            ),
            appended_positions=torch.cat(
                [positions for _, _, positions in appended] or [torch.zeros(1, 3, 0, 2, device=device)], dim=2
            ),
        )

    def grid_positions(self, geometry: LatentGeometry, device: torch.device) -> torch.Tensor:
        """The video grid's [start, end) positions (1, 3, S, 2), as the transformer makes them (time in seconds)."""
        return self.transformer.rope.prepare_video_coords(
            1, geometry.frames, geometry.height, geometry.width, device, fps=geometry.frame_rate
        )

    def keyframe_positions(self, geometry: LatentGeometry, frame_index: int, device: torch.device) -> torch.Tensor:
        """A keyframe's tokens at pixel frame `frame_index` (1, 3, h*w, 2): its one latent frame spans
        [frame_index, frame_index + 8) pixel frames, without the first frame's causal shift, in seconds (reference
        `VideoConditionByKeyframeIndex`); rows and columns as the grid's."""
        positions = self.transformer.rope.prepare_video_coords(1, 1, geometry.height, geometry.width, device, fps=1.0)
        temporal_scale = self.vae.config.temporal_compression_ratio
        positions[:, 0, :, 0] = frame_index / geometry.frame_rate
        positions[:, 0, :, 1] = (frame_index + temporal_scale) / geometry.frame_rate
        return positions

    def video_spec(
        self,
        held: HeldImages | None,
        geometry: LatentGeometry,
        guidance: GuidanceParams,
        start: torch.Tensor | None = None,
        noise_scale: float = 1.0,
    ) -> StreamSpec:
        """A generated video stream: from noise or from `start` (packed) noised to `noise_scale`, with `held` stills."""
        device = start.device if start is not None else self._execution_device
        grid = self.grid_positions(geometry, device) if held is not None else None
        return with_images(held, grid, guidance, start, noise_scale)

    # ---- decoding -------------------------------------------------------------------------------------------------

    def preview_video(self, packed: torch.Tensor, geometry: LatentGeometry) -> np.ndarray:
        if self._preview_decoder is None:
            self._preview_decoder = preview_decoder_for(self.vae)
        return self._preview_decoder(self.unpack_video(packed, geometry))

    @property
    def video_decoder_name(self) -> str:
        """The decoder of final videos: "diffusion" (LTX-2.5's diffusion decoder, the reference's default where its
        file is there) or "conv" (the VAE's decoder)."""
        return "diffusion" if self.diffusion_decoder is not None else "conv"

    def decode_video(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """Un-normalised (1, C, F, H, W) latents -> (num_frames, height, width, 3) uint8.

        A final decode passes the run's `generator`: LTX-2.5's diffusion decoder, where loaded, samples the pixels
        from it (one step, as the reference passes its seeded generator on to the decoder). Without one (the stage-1
        look between stages) the VAE decodes.
        """
        if generator is not None and self.diffusion_decoder is not None:
            return self.diffusion_decode_video(latents, generator)
        timestep = None
        if self.vae.config.timestep_conditioning:
            timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=self.vae.dtype)
        video = self.vae.decode(latents.to(self.vae.dtype), timestep, return_dict=False)[0]
        return _video_to_uint8(video[0])

    def diffusion_decode_video(self, latents: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """LTX-2.5's diffusion decoder (diffusers' `LTX2VideoDiffusionDecoderModel.decode`, as
        `LTX2VideoDiffusionDecodePipeline` calls it) on un-normalised latents."""
        decoder = self.diffusion_decoder
        _move_unless_streamed(decoder, latents.device)
        video = decoder.decode(latents.to(decoder.dtype), generator=generator, return_dict=False)[0]
        return _video_to_uint8(video[0])

    def decode_video_chunks(
        self, latents: torch.Tensor, generator: torch.Generator | None = None
    ) -> Iterator[np.ndarray]:
        """Un-normalised (1, C, F, H, W) latents -> consecutive (f, height, width, 3) uint8 chunks of the decode.

        Streamed over time (`speed.streamed_decode`: the same values as `decode_video`) on a CUDA GPU where the
        decoder allows it and runs as loaded; a tiled ("24gb", "16gb") or compiled (`compile_vae`) decoder, or one on
        the CPU, gives one whole chunk (on the CPU, PyTorch runs the short chunks' 3-D convolutions on its slow
        reference path, not oneDNN's: several times slower than the whole decode). LTX-2.5's diffusion decoder, where
        `decode_video` would use it, decodes whole too.
        """
        decoder = getattr(self.vae, "decoder", None)
        tiled = getattr(self.vae, "use_tiling", False) or getattr(self.vae, "use_framewise_decoding", False)
        compiled = getattr(decoder, "_compiled_call_impl", None) is not None
        diffusion = generator is not None and self.diffusion_decoder is not None  # LTX-2.5's decoder: whole
        if diffusion or tiled or compiled or latents.device.type != "cuda" or not streamed_decode.can_stream(decoder):
            yield self.decode_video(latents, generator)
            return
        timestep = None
        if self.vae.config.timestep_conditioning:
            timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=self.vae.dtype)
        chunks = streamed_decode.decode_streamed(
            decoder, latents.to(self.vae.dtype), timestep, chunk_latent_frames=constants.DECODE_CHUNK_LATENT_FRAMES
        )
        yield from _frames_one_chunk_behind(chunks)

    def decode_video_to_mp4(
        self,
        latents: torch.Tensor,
        audio: Audio,
        frame_rate: float,
        path: str | os.PathLike,
        timings: dict,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """`decode_video`, with each decoded chunk encoded into the mp4 at `path` (with `audio`) as it comes.

        Records in `timings` the seconds from the last decoded frame to the finished file ("mp4_after_decode").
        """
        num_frames = (latents.shape[2] - 1) * self.vae.config.temporal_compression_ratio + 1
        written = write_while_decoding(
            path, self.decode_video_chunks(latents, generator), audio, frame_rate, num_frames
        )
        timings["mp4_after_decode"] = written.finish_after_decode_s
        return written.frames

    def decode_audio(self, latents: torch.Tensor, num_frames: int, frame_rate: float, preview: bool = False) -> Audio:
        """Un-normalised (1, C, L, M) audio latents -> waveform lasting exactly num_frames / frame_rate seconds.

        A preview skips the LTX-2.3 vocoder's bandwidth extension and returns its 16 kHz base waveform, which
        costs a fraction of the full 48 kHz decode.
        """
        # Copies of the last latent frame carry the decode past the end, so that the causal VAE's shortfall and the
        # vocoder's edge fall beyond the trim below; the causal VAE decodes the frames before them unchanged.
        tail = latents[:, :, -1:].expand(-1, -1, constants.AUDIO_DECODE_TAIL_LATENT_FRAMES, -1)
        mel = self.audio_vae.decode(torch.cat([latents, tail], dim=2).to(self.audio_vae.dtype), return_dict=False)[0]
        vocoder, sampling_rate = self.vocoder, int(self.vocoder.config.output_sampling_rate)
        if preview and isinstance(self.vocoder, LTX2VocoderWithBWE):
            vocoder, sampling_rate = self.vocoder.vocoder, int(self.vocoder.config.input_sampling_rate)
        # Vocoders run in their own dtype; the pipeline keeps them in float32 (bf16 degrades BWE audio).
        waveform = vocoder(mel.to(next(vocoder.parameters()).dtype))[0].float()
        if not torch.isfinite(waveform).all():
            raise ValueError("The decoded audio contains NaN or Inf values; no file was written.")
        # Audio and video last exactly as long (the tail frames make the decode longer; silence pads a shorter one).
        target = seconds_to_samples(num_frames / frame_rate, sampling_rate)
        waveform = torch.nn.functional.pad(waveform, (0, max(0, target - waveform.shape[-1])))[..., :target]
        return Audio(waveform=waveform.cpu(), sampling_rate=sampling_rate)

    def lora_recipe(self) -> list[dict[str, Any]]:
        """The LoRAs a run applies, for its recipe: file, strength and the stages that use it."""
        if self.stage_loras is None:
            return []
        entries = []
        for name, (group, identity) in self.stage_loras.files.items():
            stages = [1, 2] if group == "user" else [2]
            entries.append({"file": str(identity[0]), "strength": self.stage_loras.stage_2[name], "stages": stages})
        return entries

    def activate_stage_loras(self, stage: int) -> None:
        """Switches the transformer to the LoRA set of `stage` (a no-op without LoRAs)."""
        if self.stage_loras is not None:
            self.stage_loras.for_stage(self, stage)

    def elapsed(self, start: float) -> float:
        return time.perf_counter() - start

    def run_with_cleanup(self, events: Iterator[PipelineEvent]) -> Iterator[PipelineEvent]:
        """Frees offloaded models and clears the cancel flag however the stream ends (finished, cancelled, closed)."""
        self._cancel_event.clear()
        try:
            yield from events
        finally:
            self._cancel_event.clear()
            self.maybe_free_model_hooks()


def _frames_one_chunk_behind(videos: Iterator[torch.Tensor]) -> Iterator[np.ndarray]:
    """Decoder output chunks (1, 3, f, H, W) -> (f, H, W, 3) uint8 arrays, each handed over once the next chunk's work
    is queued: on a GPU the copy to (pinned) host memory runs behind the decode, which never waits for the caller (a
    synchronising copy per chunk left the GPU idle while the next chunk was launched). NaN or Inf in any chunk raises
    before the last chunk is handed over, so a file being written from them is never finished."""
    finite: torch.Tensor | None = None
    pending: tuple[torch.Tensor, torch.cuda.Event | None] | None = None
    for video in videos:
        chunk_finite = torch.isfinite(video).all()
        finite = chunk_finite if finite is None else finite & chunk_finite
        frames = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        frames = frames.permute(1, 2, 3, 0).contiguous()  # (3, f, H, W) -> (f, H, W, 3)
        copied = None
        if frames.device.type == "cuda":
            host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
            frames = host
        if pending is not None:
            yield _host_frames(*pending)
        pending = (frames, copied)
    if finite is not None and not bool(finite):
        raise ValueError("The decoded video contains NaN or Inf values; no file was written.")
    if pending is not None:
        yield _host_frames(*pending)


def _host_frames(frames: torch.Tensor, copied: "torch.cuda.Event | None") -> np.ndarray:
    if copied is not None:
        copied.synchronize()  # waits without holding the GIL
    return frames.numpy()


def _move_unless_streamed(module: torch.nn.Module, device: torch.device) -> None:
    """Moves one of LTX-2.5's optional modules (not registered with the pipeline, so `pipe.to` leaves it) to the
    device it runs on, unless a memory mode streams its weights there (`speed.acceleration.apply_memory_mode`)."""
    if _is_group_offload_enabled(module):
        return
    if next(module.parameters()).device != device:
        module.to(device)


def _video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """Decoder output (3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8; NaN or Inf is an error, never a broken file."""
    if not torch.isfinite(video).all():
        raise ValueError("The decoded video contains NaN or Inf values; no file was written.")
    frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    # Made contiguous where the decode ran (on a GPU, one fast copy): the host then receives one plain block, not a
    # channel-planar view that every later reader (the mp4 writer's conversion, the app) walks with strides.
    return frames.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def stage_1_guidance(
    mode: str,
    stg_blocks: tuple[int, ...],
    dev_cfg_scale: float,
    cfg_scale: float | None,
    stg_scale: float | None,
    rescale_scale: float | None,
    modality_scale: float | None,
) -> GuidanceParams:
    """One modality's stage-1 guidance: the reference dev defaults, or one pass per step for the distilled model.

    Any scale the caller gives wins over the mode's default (`None` means "the default").
    """
    dev = mode == "dev"

    def pick(value: float | None, dev_default: float, distilled_default: float) -> float:
        if value is not None:
            return value
        return dev_default if dev else distilled_default

    return GuidanceParams(
        cfg_scale=pick(cfg_scale, dev_cfg_scale, 1.0),
        stg_scale=pick(stg_scale, constants.STG_SCALE, 0.0),
        rescale_scale=pick(rescale_scale, constants.RESCALE_SCALE, 0.0),
        modality_scale=pick(modality_scale, constants.MODALITY_SCALE, 1.0),
        stg_blocks=stg_blocks,
    )
