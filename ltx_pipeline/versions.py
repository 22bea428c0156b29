"""Which LTX-2 generation a checkpoint is, and what the engine must do differently for each.

Facts and their sources: docs/LTX-2.5.md (reference: Lightricks/LTX-2 1.2.0 `ltx_pipelines/utils/constants.py`,
`distilled.py`, `ltx_core/text_encoders/gemma/`; diffusers' `scripts/convert_ltx2_to_diffusers.py`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ltx_pipeline import constants

VERSIONS: tuple[str, ...] = ("2.5", "2.3", "2.0")  # newest first

# LTX-2.5 constants (reference `distilled.py` and `utils/constants.py`).
ANCESTRAL_ETA = 1.0  # 2.5 distilled stage 1: fully ancestral Euler (eta 0 would be plain Euler)
ANCESTRAL_S_NOISE = 1.0  # scale of the re-injected noise
ANCESTRAL_NOISE_SEED_OFFSET = 10_000  # the sampler's noise generator is seeded with seed + this
IMAGE_CONDITIONING_CRF_2_5 = 18  # H.264 CRF image conditions are re-compressed at ("LTX_2_4_IMAGE_CRF")
AUTO_DURATION_MIN_SECONDS = 1.0  # duration-head prediction is clamped to this range (reference `AutoDuration`)
AUTO_DURATION_MAX_SECONDS = 20.0
DURATION_HEAD_POOLER_HEADS = 4  # not stored in the file; the value the head was trained with
GEMMA_4_UNIFIED_MODEL_TYPE = "gemma4_unified"  # the LTX-2.5 text encoder's transformers `model_type`

# The LTX-2.5 Hub repo and its files (reference README), as `hf download --local-dir` lays them out.
HUB_OFFICIAL_REPO_2_5 = "Lightricks/LTX-2.5"
OFFICIAL_FILES_2_5: dict[str, str] = {
    "transformer": "diffusion_models/ltx-2.5-22b-distilled-transformer-bf16.safetensors",
    "transformer_dev": "diffusion_models/ltx-2.5-22b-dev-transformer-bf16.safetensors",
    "text_encoder": "text_encoders/gemma4-12b-with-proj-ltx-2.5-bf16.safetensors",
    "video_vae": "vae/ltx-2.5-video-vae-conv-bf16.safetensors",
    "video_vae_diffusion": "vae/ltx-2.5-video-vae-bf16.safetensors",
    "audio_vae": "vae/ltx-2.5-audio-vae-bf16.safetensors",
    "spatial_upsampler": "latent_upscale_models/ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors",
    "temporal_upsampler": "latent_upscale_models/ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0.safetensors",
    "distilled_lora": "loras/ltx-2.5-22b-distilled-lora-450-bf16.safetensors",
    "duration_head": "model_patches/ltx-2.5-duration-head-bf16.safetensors",
}


@dataclass(frozen=True)
class VersionProfile:
    """What differs between generations, for the loader and the engine. Everything not here is shared."""

    version: str
    text_encoder_family: str  # transformers model_type of the text encoder
    distilled_stage_1_sampler: str  # "euler" or "euler_ancestral" (stage 2 is always Euler)
    dev_num_inference_steps: int
    stg_blocks: tuple[int, ...]
    image_conditioning_crf: int
    has_duration_head: bool  # "length from the prompt" is possible
    video_decoders: tuple[str, ...]  # "conv": AutoencoderKLLTX2Video; "diffusion": LTX2VideoDiffusionDecoderModel
    vocoder_sample_rate: int  # Hz of the vocoder's output
    layout: str  # how the official weights ship: "single file" or "per component"
    # The reference release whose cross-modal conditioning the transformer runs with: "1.0.0" (PyPI ltx-core, what
    # LTX-2.3 and 2.0 are judged against) or "1.2.0" (the first with LTX-2.5: own-timestep scale/shift, frozen
    # streams at modality sigma 0; `engine.cross_modulation`).
    reference_release: str


PROFILES: dict[str, VersionProfile] = {
    "2.5": VersionProfile(
        version="2.5",
        text_encoder_family=GEMMA_4_UNIFIED_MODEL_TYPE,
        distilled_stage_1_sampler="euler_ancestral",
        dev_num_inference_steps=constants.DEV_NUM_INFERENCE_STEPS,
        stg_blocks=constants.STG_BLOCKS_2_3,
        image_conditioning_crf=IMAGE_CONDITIONING_CRF_2_5,
        has_duration_head=True,
        video_decoders=("conv", "diffusion"),
        vocoder_sample_rate=48_000,
        layout="per component",
        reference_release="1.2.0",
    ),
    "2.3": VersionProfile(
        version="2.3",
        text_encoder_family="gemma3",
        distilled_stage_1_sampler="euler",
        dev_num_inference_steps=constants.DEV_NUM_INFERENCE_STEPS,
        stg_blocks=constants.STG_BLOCKS_2_3,
        image_conditioning_crf=constants.IMAGE_CONDITIONING_CRF,
        has_duration_head=False,
        video_decoders=("conv",),
        vocoder_sample_rate=48_000,
        layout="single file",
        reference_release="1.0.0",
    ),
    "2.0": VersionProfile(
        version="2.0",
        text_encoder_family="gemma3",
        distilled_stage_1_sampler="euler",
        dev_num_inference_steps=40,  # reference LTX_2_PARAMS
        stg_blocks=constants.STG_BLOCKS_2_0,
        image_conditioning_crf=constants.IMAGE_CONDITIONING_CRF,
        has_duration_head=False,
        video_decoders=("conv",),
        vocoder_sample_rate=24_000,
        layout="single file",
        reference_release="1.0.0",
    ),
}


def summary(version: str, has_duration_head: bool, video_decoder: str) -> str:
    """One line on what a loaded model's generation means for a run, for the command line's and the page's model
    line: e.g. "LTX-2.5: distilled stage 1 with ancestral Euler, image CRF 18, video decoder: diffusion, length
    from the prompt: yes"."""
    version_profile = profile(version)
    sampler = "ancestral Euler" if version_profile.distilled_stage_1_sampler == "euler_ancestral" else "Euler"
    length = "yes" if has_duration_head else "no"
    return (
        f"LTX-{version}: distilled stage 1 with {sampler}, image CRF {version_profile.image_conditioning_crf}, "
        f"video decoder: {video_decoder}, length from the prompt: {length}"
    )


def profile(version: str) -> VersionProfile:
    if version not in PROFILES:
        raise ValueError(f"`version` must be one of {', '.join(VERSIONS)}; got {version!r}.")
    return PROFILES[version]


def version_from_model_version(model_version: str, source: str) -> str:
    """'2.5.1' -> '2.5', '2.3.rc1' -> '2.3', '2' -> '2.0'; `source` names the file in the error.

    Like the reference's `detect_model_version`, '-' separates like '.' ('2.5-rc2' is 2.5). 2.4, the reference's
    name for pre-release 2.5 builds (Gemma 4, but the deterministic distilled sampler), is refused: it was never
    published."""
    parts = model_version.strip().replace("-", ".").split(".")
    numbers = []
    for part in parts:
        if not part.isdigit():
            break
        numbers.append(int(part))
    generation = (tuple(numbers) + (0,))[:2] if numbers else ()
    known = {(2, 5): "2.5", (2, 3): "2.3", (2, 0): "2.0"}
    if generation not in known:
        raise ValueError(
            f"{source} declares model_version {model_version!r}; supported: LTX-2.5 ('2.5...'), LTX-2.3 ('2.3...') "
            "and LTX-2.0 ('2.0...')."
        )
    return known[generation]


def version_from_model_index(folder: Path) -> str:
    """The generation of a diffusers-format folder: 2.5 has a Gemma 4 text encoder, 2.3 a vocoder with bandwidth
    extension, 2.0 neither (diffusers' conversion script writes exactly these classes)."""
    index_path = folder / "model_index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{folder.name}/model_index.json could not be read ({error}); expected a diffusers-format LTX-2 folder."
        ) from error
    text_encoder_class = (index.get("text_encoder") or [None, None])[1]
    vocoder_class = (index.get("vocoder") or [None, None])[1]
    if text_encoder_class == "Gemma4UnifiedForConditionalGeneration":
        return "2.5"
    if vocoder_class == "LTX2VocoderWithBWE":
        return "2.3"
    if vocoder_class == "LTX2Vocoder":
        return "2.0"
    raise ValueError(
        f"{folder.name}/model_index.json names text encoder {text_encoder_class!r} and vocoder {vocoder_class!r}; "
        "expected Gemma4UnifiedForConditionalGeneration (LTX-2.5), or LTX2VocoderWithBWE (LTX-2.3) / LTX2Vocoder "
        "(LTX-2.0)."
    )


def version_of_components(text_encoder: object, vocoder: object) -> str:
    """The generation of built components: LTX-2.5 has the Gemma 4 text encoder, LTX-2.3 the vocoder with bandwidth
    extension, LTX-2.0 neither (the classes diffusers' conversion script writes for each)."""
    from diffusers.pipelines.ltx2 import LTX2VocoderWithBWE

    if getattr(getattr(text_encoder, "config", None), "model_type", None) == GEMMA_4_UNIFIED_MODEL_TYPE:
        return "2.5"
    return "2.3" if isinstance(vocoder, LTX2VocoderWithBWE) else "2.0"
