"""Load LTX-2.5 into diffusers' classes: Lightricks' per-component files, or a diffusers-format folder.

LTX-2.5 ships one file per component (Hub repo `Lightricks/LTX-2.5`, folders as `hf download --local-dir` keeps them):

  diffusion_models/ltx-2.5-22b-{distilled,dev}-transformer-bf16.safetensors
      model.diffusion_model.*            transformer, and the text connectors (`*_embeddings_connector.*`)
      metadata: config.transformer, model_version, gemma_source_checkpoint
  text_encoders/gemma4-12b-with-proj-ltx-2.5-bf16.safetensors
      Gemma 4 (`gemma4_unified`) weights, HF-named (`model.language_model.*`) or flat (`model.layers.*`);
      text_embedding_projection.{video,audio}_aggregate_embed.*   the connectors' input projections;
      tokenizer_json and hf_asset__<file> tensors (uint8 bytes); metadata gemma_config (the HF config)
  vae/ltx-2.5-video-vae-conv-bf16.safetensors    encoder.*, decoder.*, per_channel_statistics.* (or vae.*)
  vae/ltx-2.5-video-vae-bf16.safetensors         the same encoder with a diffusion decoder (not loaded here)
  vae/ltx-2.5-audio-vae-bf16.safetensors         audio_vae.*, vocoder.*
  latent_upscale_models/ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors
  model_patches/ltx-2.5-duration-head-bf16.safetensors   duration_head.* (optional)

Files are told apart by their keys and metadata, not their names, so renamed files and a flat folder work too.
Facts and sources: docs/LTX-2.5.md. Key renames reuse `ltx_pipeline.loading` (2.5 keeps 2.3's names).
"""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.loaders.single_file_utils import convert_ltx2_audio_vae_to_diffusers, convert_ltx2_vae_to_diffusers
from diffusers.models.autoencoders.ltx2_diffusion_decoder import LTX2VideoDiffusionDecoderModel
from diffusers.pipelines.ltx2 import LTX2DurationHead, LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2VocoderWithBWE
from tokenizers import Tokenizer
from transformers import (
    AutoTokenizer,
    Gemma4UnifiedConfig,
    Gemma4UnifiedForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from ltx_pipeline import constants, loading, versions
from ltx_pipeline.loading import CheckpointError, CheckpointNotFoundError, LoadedModel

logger = logging.getLogger(__name__)

DURATION_HEAD_PREFIX = "duration_head."
TOKENIZER_TENSOR = "tokenizer_json"
ASSET_TENSOR_PREFIX = "hf_asset__"
GEMMA_CONFIG_METADATA = "gemma_config"
PROJECTION_PREFIX = "text_embedding_projection."
CONV_VAE_CLASS = "CausalVideoAutoencoder"
# Flat ("Comfy") Gemma 4 names -> transformers' names (reference `_build_gemma4_unified_llm_key_ops`), first match.
GEMMA_4_KEY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.layers.", "model.language_model.layers."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.norm.", "model.language_model.norm."),
    ("model.embed_vision.embedding_projection.", "model.embed_vision.multimodal_embedder.embedding_projection."),
    ("model.vision_embedder.", "model.embed_vision."),
    ("multi_modal_projector.embedding_projection.", "model.embed_vision.multimodal_embedder.embedding_projection."),
    ("vision_model.", "model.embed_vision."),
    ("audio_projector.", "model.embed_audio."),
)
# tokenizer_config.json entries that are not constructor arguments (reference `_TOKENIZER_CONFIG_SKIP`).
TOKENIZER_CONFIG_SKIP = frozenset(
    {"tokenizer_class", "auto_map", "model_max_length", "backend", "processor_class", "added_tokens_decoder"}
)
# The per-component files a loaded model needs, by role; the optional ones may be absent.
REQUIRED_ROLES: tuple[str, ...] = ("transformer", "text_encoder", "video_vae", "audio_vae")
OPTIONAL_ROLES: tuple[str, ...] = ("spatial_upsampler", "duration_head", "video_vae_diffusion")


@dataclass(frozen=True)
class ComponentFiles:
    """The LTX-2.5 per-component files of one model, by role."""

    transformer: Path
    text_encoder: Path
    video_vae: Path
    audio_vae: Path
    spatial_upsampler: Path | None = None
    duration_head: Path | None = None
    diffusion_vae: Path | None = None  # the video VAE file with the diffusion decoder, loaded beside the conv VAE


# --- Telling the files apart ------------------------------------------------------------------------------------


def file_role(path: Path) -> str | None:
    """What an LTX-2.5 component file holds, from its header alone: one of REQUIRED_ROLES / OPTIONAL_ROLES,
    "temporal_upsampler", "lora", "combined" (an LTX-2.3 / 2.0 single file), or None for anything else."""
    with loading._open_safetensors(path, "model") as handle:
        keys = list(handle.keys())
        metadata = handle.metadata() or {}
        if GEMMA_CONFIG_METADATA in metadata or TOKENIZER_TENSOR in keys:
            return "text_encoder"
        if any(marker in key for key in keys for marker in loading.LORA_KEY_MARKERS):
            return "lora"
        if any(key.startswith(loading.TRANSFORMER_PREFIX) for key in keys):
            # LTX-2.3 / 2.0 files hold every component; LTX-2.5's transformer file holds no VAE.
            return "combined" if any(key.startswith(loading.VAE_PREFIX) for key in keys) else "transformer"
        if any(key.startswith(DURATION_HEAD_PREFIX) for key in keys):
            return "duration_head"
        if any(key.startswith(loading.AUDIO_VAE_PREFIX) for key in keys):
            return "audio_vae"
        if all(key in keys for key in loading.UPSAMPLER_REQUIRED_KEYS):
            config = loading._upsampler_config(loading._read_shapes(handle), loading._file_config(handle, path))
            return "temporal_upsampler" if config.get("temporal_upsample") else "spatial_upsampler"
        if any(key.startswith(("encoder.", "decoder.", "vae.")) for key in keys):
            vae_class = loading._file_config(handle, path).get("vae", {}).get("_class_name", CONV_VAE_CLASS)
            return "video_vae" if vae_class == CONV_VAE_CLASS else "video_vae_diffusion"
    return None


def is_ltx_2_5_transformer_file(path: Path) -> bool:
    """True for a transformer file of the per-component layout: transformer keys and no VAE inside (LTX-2.3 and 2.0
    files hold every component)."""
    with loading._open_safetensors(path, "model") as handle:
        keys = list(handle.keys())
    has_transformer = any(key.startswith(loading.TRANSFORMER_PREFIX) for key in keys)
    return has_transformer and not any(key.startswith(loading.VAE_PREFIX) for key in keys)


def is_official_2_5_folder(folder: Path) -> bool:
    """A folder laid out like `hf download Lightricks/LTX-2.5 --local-dir`: no model_index.json, a transformer file
    in `diffusion_models/` (or beside the other files)."""
    if (folder / "model_index.json").is_file():
        return False
    return any(file_role(path) == "transformer" for path in _candidate_files(folder))


def is_diffusers_2_5_folder(folder: Path) -> bool:
    """A diffusers-format folder whose model_index.json names LTX-2.5's Gemma 4 text encoder. Unreadable or other
    folders give False: the general loader reports what is wrong with them."""
    try:
        return versions.version_from_model_index(folder) == "2.5"
    except ValueError:
        return False


def _candidate_files(folder: Path) -> list[Path]:
    """The .safetensors files of `folder` and of its immediate subfolders (the official layout is one level deep)."""
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*/*.safetensors"))
    return [path for path in files if path.is_file()]


def find_component_files(model: Path) -> ComponentFiles:
    """The component files of the model at `model`: an official-layout folder, or its transformer file (the other
    files are looked for next to it, and in the folder above when it sits in `diffusion_models/`)."""
    if model.is_file():
        folder = model.parent.parent if model.parent.name == "diffusion_models" else model.parent
        transformer = model
    else:
        folder, transformer = model, None
    found: dict[str, list[Path]] = {}
    for path in _candidate_files(folder):
        role = file_role(path)
        if role is not None:
            found.setdefault(role, []).append(path)
    if transformer is None:
        transformers_found = found.get("transformer", [])
        if len(transformers_found) != 1:
            raise CheckpointError(
                f"`model` folder {folder.name!r} holds {len(transformers_found)} LTX-2.5 transformer files "
                f"({', '.join(path.name for path in transformers_found) or 'none'}); pass the one to use as `model`, "
                f"e.g. '{folder.name}/{versions.OFFICIAL_FILES_2_5['transformer']}'."
            )
        transformer = transformers_found[0]
    files: dict[str, Path | None] = {"transformer": transformer}
    for role in REQUIRED_ROLES[1:] + OPTIONAL_ROLES:
        paths = found.get(role, [])
        if len(paths) > 1:
            raise CheckpointError(
                f"`model` folder {folder.name!r} holds several {role.replace('_', ' ')} files "
                f"({', '.join(path.name for path in paths)}); keep one."
            )
        files["diffusion_vae" if role == "video_vae_diffusion" else role] = paths[0] if paths else None
    missing = [role for role in REQUIRED_ROLES if files[role] is None]
    if "video_vae" in missing and files["diffusion_vae"] is not None:
        raise CheckpointError(
            f"`model` folder {folder.name!r} has only the diffusion-decoder video VAE "
            f"({files['diffusion_vae'].name}); this product's pipelines encode and decode with the convolutional VAE: "
            f"download {versions.OFFICIAL_FILES_2_5['video_vae']!r} from {versions.HUB_OFFICIAL_REPO_2_5!r} next to "
            "it (the diffusion decoder is then loaded too)."
        )
    if missing:
        expected = ", ".join(versions.OFFICIAL_FILES_2_5[role] for role in missing)
        raise CheckpointNotFoundError(
            f"`model`: the LTX-2.5 files for {', '.join(missing)} were not found in {folder.name!r} or its "
            f"subfolders; expected the official per-component files ({expected})."
        )
    return ComponentFiles(**files)


def download_official_siblings(repo_id: str, options: Any) -> None:
    """Download the official LTX-2.5 component files a model needs besides its transformer, from `repo_id`, into the
    local Hub cache (the snapshot folder mirrors the repo, so `find_component_files` then finds them). The duration
    head is optional: without it the model loads without "length from the prompt"."""
    for role in ("text_encoder", "video_vae", "audio_vae", "spatial_upsampler"):
        loading._download_hub_file(repo_id, versions.OFFICIAL_FILES_2_5[role], argument="model", options=options)
    try:
        loading._download_hub_file(
            repo_id, versions.OFFICIAL_FILES_2_5["duration_head"], argument="model", options=options
        )
    except CheckpointNotFoundError as error:
        logger.warning("No duration head: length from the prompt is unavailable (%s)", error)


# --- Entry points -------------------------------------------------------------------------------------------------


def load_official_path(path: Path, name: str, **kwargs: Any) -> LoadedModel:
    """`load_official_files` for an official-layout folder or a transformer file (see `find_component_files`)."""
    return load_official_files(find_component_files(path), name, **kwargs)


def load_official_files(
    files: ComponentFiles,
    name: str,
    *,
    spatial_upsampler: str | os.PathLike | None,
    torch_dtype: torch.dtype,
    local_files_only: bool,
) -> LoadedModel:
    """Every component from LTX-2.5 per-component files. Headers and key layouts of all files are checked before
    any weight is read."""
    options = loading._Options(torch_dtype, local_files_only)
    transformer_metadata = _metadata(files.transformer, "model")
    model_version = transformer_metadata.get("model_version")
    if model_version is not None and versions.version_from_model_version(model_version, files.transformer.name) != (
        "2.5"
    ):
        raise CheckpointError(
            f"`model` {files.transformer.name!r} declares model_version {model_version!r}: not an LTX-2.5 "
            "transformer; LTX-2.3 and 2.0 ship as one combined file, pass that instead."
        )
    with (
        loading._open_safetensors(files.transformer, "model") as transformer_file,
        loading._open_safetensors(files.text_encoder, "model") as text_encoder_file,
        loading._open_safetensors(files.video_vae, "model") as video_vae_file,
        loading._open_safetensors(files.audio_vae, "model") as audio_vae_file,
    ):
        gemma_config = _gemma_config(text_encoder_file, files.text_encoder)
        _check_gemma_version(transformer_metadata, gemma_config, files)
        transformer_config = loading._file_config(transformer_file, files.transformer).get("transformer", {})
        plans = {
            "transformer": _transformer_plan(transformer_file, transformer_config, files.transformer),
            "connectors": _connectors_plan(transformer_file, text_encoder_file, transformer_config, files),
            "vae": _video_vae_plan(video_vae_file, files.video_vae),
            **_audio_plans(audio_vae_file, files.audio_vae),
            "text_encoder": _text_encoder_plan(text_encoder_file, gemma_config, files.text_encoder),
        }
        modules = {role: loading._empty_module(plan.cls, plan.config) for role, plan in plans.items()}
        for role, plan in plans.items():
            loading.check_weights_fit(modules[role], plan.mapping, plan.shapes, plan.path, role)
        duration_head = _load_duration_head(files.duration_head, torch_dtype) if files.duration_head else None
        diffusion_decoder = None
        if files.diffusion_vae is not None:
            diffusion_decoder = load_diffusion_decoder_file(files.diffusion_vae, torch_dtype)
        upsampler_source = spatial_upsampler or files.spatial_upsampler
        if upsampler_source is None:
            upsampler_source = f"{versions.HUB_OFFICIAL_REPO_2_5}/{versions.OFFICIAL_FILES_2_5['spatial_upsampler']}"
        components: dict[str, Any] = {
            "latent_upsampler": loading._load_spatial_upsampler(upsampler_source, options),
            "tokenizer": _tokenizer_from_file(text_encoder_file, files.text_encoder),
            "scheduler": FlowMatchEulerDiscreteScheduler(**constants.SCHEDULER_CONFIG),
        }
        for role, plan in plans.items():
            dtype = torch.float32 if role == "vocoder" else torch_dtype
            components[role] = _read_plan_weights(modules[role], plan, dtype)
    components["text_encoder"].tie_weights()
    variant = loading._file_variant(files.transformer)
    return LoadedModel(
        components={key: components[key] for key in loading.COMPONENT_NAMES},
        name=name,
        version="2.5",
        variant=variant,
        label=f"LTX-2.5 {variant} ({files.transformer.name})",
        is_random=False,
        duration_head=duration_head,
        diffusion_decoder=diffusion_decoder,
    )


def load_transformer_file(path: Path, torch_dtype: torch.dtype = torch.float32) -> LTX2VideoTransformer3DModel:
    """Only the transformer of an LTX-2.5 transformer file (for parity checks and benchmarks)."""
    with loading._open_safetensors(path, "transformer") as handle:
        config = loading._file_config(handle, path).get("transformer", {})
        plan = _transformer_plan(handle, config, path)
        module = loading._empty_module(plan.cls, plan.config)
        loading.check_weights_fit(module, plan.mapping, plan.shapes, path, "transformer")
        return _read_plan_weights(module, plan, torch_dtype)


def load_diffusers_folder(
    folder: Path,
    name: str,
    *,
    spatial_upsampler: str | os.PathLike | None,
    torch_dtype: torch.dtype,
    local_files_only: bool,
) -> LoadedModel:
    """An LTX-2.5 pipeline saved in diffusers' format (Gemma 4 text encoder; `duration_head` subfolder optional)."""
    options = loading._Options(torch_dtype, local_files_only)
    missing = [sub for sub in loading.DIFFUSERS_SUBFOLDERS if not (folder / sub).is_dir()]
    if missing:
        raise CheckpointError(
            f"Diffusers folder {folder.name!r} lacks the subfolder(s) {', '.join(missing)}: expected "
            f"{', '.join(loading.DIFFUSERS_SUBFOLDERS)} (an LTX-2.5 pipeline saved with save_pretrained)."
        )
    kwargs = {"torch_dtype": torch_dtype, "local_files_only": local_files_only}
    components: dict[str, Any] = {}
    if spatial_upsampler is not None:
        components["latent_upsampler"] = loading._load_spatial_upsampler(spatial_upsampler, options)
    elif (folder / "latent_upsampler").is_dir():
        components["latent_upsampler"] = LTX2LatentUpsamplerModel.from_pretrained(
            folder, subfolder="latent_upsampler", **kwargs
        )
    else:
        hub_file = f"{versions.HUB_OFFICIAL_REPO_2_5}/{versions.OFFICIAL_FILES_2_5['spatial_upsampler']}"
        components["latent_upsampler"] = loading._load_spatial_upsampler(hub_file, options)
    components["tokenizer"] = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
    components["text_encoder"] = Gemma4UnifiedForConditionalGeneration.from_pretrained(
        folder, subfolder="text_encoder", dtype=torch_dtype, local_files_only=local_files_only
    )
    components["scheduler"] = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    components["vocoder"] = LTX2VocoderWithBWE.from_pretrained(
        folder, subfolder="vocoder", torch_dtype=torch.float32, local_files_only=local_files_only
    )
    for sub, cls in loading.DIFFUSERS_CLASSES.items():
        components[sub] = cls.from_pretrained(folder, subfolder=sub, **kwargs)
    duration_head = diffusion_decoder = None
    if (folder / "duration_head").is_dir():
        duration_head = LTX2DurationHead.from_pretrained(folder, subfolder="duration_head", **kwargs).eval()
    if (folder / "diffusion_decoder").is_dir():  # the subfolder diffusers' conversion script writes
        diffusion_decoder = LTX2VideoDiffusionDecoderModel.from_pretrained(
            folder, subfolder="diffusion_decoder", **kwargs
        ).eval()
    for component in components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    variant = "distilled" if "distill" in name.lower() else "dev"
    return LoadedModel(
        components={key: components[key] for key in loading.COMPONENT_NAMES},
        name=name,
        version="2.5",
        variant=variant,
        label=f"LTX-2.5 {variant} ({name})",
        is_random=False,
        duration_head=duration_head,
        diffusion_decoder=diffusion_decoder,
    )


# --- One component at a time ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How to build one module and where each of its tensors is: {diffusers key: (file key, handle)}."""

    cls: type
    config: dict[str, Any]
    mapping: dict[str, str]  # diffusers key -> file key, for `check_weights_fit`
    sources: dict[str, Any]  # diffusers key -> the open file holding it
    shapes: dict[str, tuple[int, ...]]  # file key -> shape
    path: Path  # the file named in errors (the main one when a module spans two)


def _plan(cls: type, config: dict, mapping: dict[str, str], handle: Any, path: Path) -> _Plan:
    shapes = loading._read_shapes(handle)
    return _Plan(cls, config, mapping, dict.fromkeys(mapping, handle), shapes, path)


def _read_plan_weights(module: torch.nn.Module, plan: _Plan, dtype: torch.dtype) -> torch.nn.Module:
    state_dict = {}
    for diffusers_key, file_key in plan.mapping.items():
        tensor = plan.sources[diffusers_key].get_tensor(file_key)
        state_dict[diffusers_key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    module.load_state_dict(state_dict, strict=True, assign=True)
    return module.eval()


def _metadata(path: Path, argument: str) -> dict[str, str]:
    with loading._open_safetensors(path, argument) as handle:
        return handle.metadata() or {}


def _transformer_plan(handle: Any, config: dict, path: Path) -> _Plan:
    keys = [key for key in handle.keys() if not key.startswith(loading.CONNECTOR_PREFIXES)]
    if not config:
        logger.warning("%s: no transformer config in the metadata; using the full-size LTX-2.5 config.", path)
    kwargs = FULL_SIZE_2_5["transformer"] if not config else transformer_kwargs_2_5(config)
    mapping = loading._official_key_mappings(keys, "2.3", path)["transformer"]  # 2.5 keeps 2.3's key names
    return _plan(LTX2VideoTransformer3DModel, kwargs, mapping, handle, path)


def transformer_kwargs_2_5(config: dict) -> dict[str, Any]:
    """LTX2VideoTransformer3DModel kwargs from a 2.5 file's `transformer` section: 2.3's reading (ff_bias and the
    keyframe embedding are read there too) with the STG-capable attention processor diffusers uses for 2.5."""
    return {**loading.transformer_kwargs(config, "2.3"), "perturbed_attn": True}


def _connectors_plan(transformer_file: Any, text_encoder_file: Any, config: dict, files: ComponentFiles) -> _Plan:
    """The connectors live in the transformer file; their input projection in the text-encoder file."""
    connector_keys = [key for key in transformer_file.keys() if key.startswith(loading.CONNECTOR_PREFIXES)]
    projection_keys = [key for key in text_encoder_file.keys() if key.startswith(PROJECTION_PREFIX)]
    if not projection_keys:
        raise CheckpointError(
            f"`model`: the text encoder file {files.text_encoder.name!r} has no {PROJECTION_PREFIX}* weights; "
            f"expected the LTX-2.5 encoder with its projection ({versions.OFFICIAL_FILES_2_5['text_encoder']!r}), "
            "not a stock Gemma 4."
        )
    shapes = {**loading._read_shapes(transformer_file), **loading._read_shapes(text_encoder_file)}
    kwargs = loading.connectors_kwargs(config, shapes) if config else dict(FULL_SIZE_2_5["connectors"])
    mapping = loading._apply_renames({key: key for key in connector_keys + projection_keys}, loading.CONNECTOR_RENAMES)
    sources = {
        key: text_encoder_file if file_key.startswith(PROJECTION_PREFIX) else transformer_file
        for key, file_key in mapping.items()
    }
    return _Plan(LTX2TextConnectors, kwargs, mapping, sources, shapes, files.transformer)


def _video_vae_plan(handle: Any, path: Path) -> _Plan:
    keys = [
        key for key in handle.keys() if key.startswith(("encoder.", "decoder.", "per_channel_statistics.", "vae."))
    ]
    config = loading._file_config(handle, path).get("vae")
    kwargs = loading.video_vae_kwargs(config, path) if config else dict(loading.FULL_SIZE_PRESETS["2.3"]["vae"])
    # diffusers' rename works on `vae.`-prefixed and bare keys alike (it only strips the prefix).
    mapping = loading._apply_renames(
        loading._rename_with(convert_ltx2_vae_to_diffusers, keys), loading.VAE_EXTRA_RENAMES
    )
    mapping = {key: file_key for key, file_key in mapping.items() if not loading._is_unused_vae_statistic(file_key)}
    return _plan(AutoencoderKLLTX2Video, kwargs, mapping, handle, path)


def _audio_plans(handle: Any, path: Path) -> dict[str, _Plan]:
    keys = list(handle.keys())
    file_config = loading._file_config(handle, path)
    shapes = loading._read_shapes(handle)
    audio_keys = [key for key in keys if key.startswith(loading.AUDIO_VAE_PREFIX)]
    vocoder_keys = [key for key in keys if key.startswith(loading.VOCODER_PREFIX)]
    if not vocoder_keys:
        raise CheckpointError(
            f"`model`: the audio VAE file {path.name!r} has no vocoder.* weights; expected "
            f"{versions.OFFICIAL_FILES_2_5['audio_vae']!r}, which holds the audio VAE and the vocoder."
        )
    presets = loading.FULL_SIZE_PRESETS["2.3"]  # 2.5's audio VAE and vocoder are 2.3's
    audio_kwargs = (
        loading.audio_vae_kwargs(file_config["audio_vae"]) if "audio_vae" in file_config else presets["audio_vae"]
    )
    vocoder_kwargs = loading.vocoder_kwargs(file_config["vocoder"], shapes) if "vocoder" in file_config else {}
    return {
        "audio_vae": _plan(
            AutoencoderKLLTX2Audio,
            audio_kwargs,
            loading._rename_with(convert_ltx2_audio_vae_to_diffusers, audio_keys),
            handle,
            path,
        ),
        "vocoder": _plan(
            LTX2VocoderWithBWE, vocoder_kwargs, {loading._vocoder_key(key): key for key in vocoder_keys}, handle, path
        ),
    }


# --- Text encoder --------------------------------------------------------------------------------------------------


def _gemma_config(handle: Any, path: Path) -> Gemma4UnifiedConfig:
    raw = (handle.metadata() or {}).get(GEMMA_CONFIG_METADATA)
    if raw is None:
        raise CheckpointError(
            f"`model`: the text encoder file {path.name!r} has no {GEMMA_CONFIG_METADATA!r} metadata; expected "
            f"the LTX-2.5 Gemma 4 file {versions.OFFICIAL_FILES_2_5['text_encoder']!r}."
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"`model`: {path.name!r}: metadata {GEMMA_CONFIG_METADATA!r} is not JSON ({error})."
        ) from error
    model_type = config.get("model_type")
    if model_type != versions.GEMMA_4_UNIFIED_MODEL_TYPE:
        raise CheckpointError(
            f"`model`: the text encoder file {path.name!r} holds a {model_type!r} model; LTX-2.5 needs its "
            f"fine-tuned Gemma 4 ({versions.GEMMA_4_UNIFIED_MODEL_TYPE!r})."
        )
    return Gemma4UnifiedConfig.from_dict(config)


def _check_gemma_version(transformer_metadata: dict[str, str], gemma_config: Gemma4UnifiedConfig, files: Any) -> None:
    """The transformer names the Gemma fine-tune it was trained with; another one gives wrong conditioning
    (the reference refuses the same mismatch, `_check_gemma_version`)."""
    raw = transformer_metadata.get("gemma_source_checkpoint")
    if raw is None:
        return
    try:
        expected = json.loads(raw).get("gemma_version")
    except (json.JSONDecodeError, AttributeError) as error:
        raise CheckpointError(
            f"`model` {files.transformer.name!r}: metadata gemma_source_checkpoint is not a JSON object ({error})."
        ) from error
    actual = getattr(gemma_config, "gemma_version", None)
    if expected != actual:
        raise CheckpointError(
            f"`model`: the transformer {files.transformer.name!r} was trained with text encoder {expected!r}, but "
            f"{files.text_encoder.name!r} is {actual!r}; use the text encoder file published with the transformer."
        )


def gemma_4_key(file_key: str) -> str:
    """A Gemma 4 key as stored in the LTX-2.5 file -> transformers' `Gemma4UnifiedForConditionalGeneration` key."""
    for prefix, replacement in GEMMA_4_KEY_PREFIXES:
        if file_key.startswith(prefix):
            return replacement + file_key[len(prefix) :]
    return file_key


def _text_encoder_plan(handle: Any, gemma_config: Gemma4UnifiedConfig, path: Path) -> _Plan:
    weight_keys = [
        key
        for key in handle.keys()
        if not key.startswith((PROJECTION_PREFIX, ASSET_TENSOR_PREFIX)) and key != TOKENIZER_TENSOR
    ]
    mapping = {gemma_4_key(key): key for key in weight_keys}
    embeddings = "model.language_model.embed_tokens.weight"
    if "lm_head.weight" not in mapping and embeddings in mapping:
        mapping["lm_head.weight"] = mapping[embeddings]  # tied to the input embeddings, not stored
    return _plan(Gemma4UnifiedForConditionalGeneration, {"config": gemma_config}, mapping, handle, path)


def _tokenizer_from_file(handle: Any, path: Path) -> PreTrainedTokenizerFast:
    """The tokenizer the LTX-2.5 file embeds: `tokenizer.json` and `tokenizer_config.json` stored as byte tensors."""
    keys = set(handle.keys())
    config_key = ASSET_TENSOR_PREFIX + "tokenizer_config.json"
    if TOKENIZER_TENSOR not in keys:
        raise CheckpointError(
            f"`model`: the text encoder file {path.name!r} has no {TOKENIZER_TENSOR!r} tensor; expected the LTX-2.5 "
            "file, which embeds its tokenizer."
        )
    tokenizer_config = json.loads(_tensor_bytes(handle.get_tensor(config_key))) if config_key in keys else {}
    kwargs = {key: value for key, value in tokenizer_config.items() if key not in TOKENIZER_CONFIG_SKIP}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_buffer(_tensor_bytes(handle.get_tensor(TOKENIZER_TENSOR))),
        model_max_length=constants.MAX_SEQUENCE_LENGTH,
        **kwargs,
    )


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.to(torch.uint8).numpy().tobytes()


# --- Diffusion video decoder ----------------------------------------------------------------------------------

# Reference names -> diffusers' (diffusers' scripts/convert_ltx2_to_diffusers.py LTX_2_5_DIFFUSION_DECODER_RENAME_DICT).
DIFFUSION_DECODER_RENAMES: tuple[tuple[str, str], ...] = (
    ("t_embedder.mlp.0.", "t_embedder.timestep_embedder.linear_1."),
    ("t_embedder.mlp.2.", "t_embedder.timestep_embedder.linear_2."),
    (".attn.proj.", ".attn.to_out.0."),
    (".attn.q_norm.", ".attn.norm_q."),
    (".attn.k_norm.", ".attn.norm_k."),
)
# Static AdaLN gates of distilled checkpoints, folded into the Linear they scale (W <- g W, b <- g b): parameter
# suffix (diffusers' name) -> the sibling gate's suffix (reference `_GATE_FOLD_TARGETS`).
DIFFUSION_DECODER_GATES: dict[str, str] = {
    ".attn.to_out.0.weight": ".gate_msa",
    ".attn.to_out.0.bias": ".gate_msa",
    ".mlp.w_down.weight": ".gate_mlp",
    ".mlp.w_down.bias": ".gate_mlp",
    ".context_proj.weight": ".gate_ctx",
    ".context_proj.bias": ".gate_ctx",
}
GATE_SUFFIXES = (".gate_msa", ".gate_mlp", ".gate_ctx")


def diffusion_decoder_kwargs(config: dict, path: Path) -> dict[str, Any]:
    """LTX2VideoDiffusionDecoderModel kwargs from a `CausalDiffusionVAE` `vae` section (reference
    `_build_diffusion_video_decoder`: hyper-parameters under `vae.decoder`, `model_output_type` beside it). Absent
    fields take the released decoder's values (diffusers' conversion script), not the reference class defaults."""
    decoder = config.get("decoder", config)
    released = FULL_SIZE_2_5["diffusion_decoder"]
    stage_channels = tuple(decoder.get("stage_channels", released["decoder_stage_channels"]))
    if decoder.get("stage5_channels", stage_channels[-1]) != stage_channels[-1] or decoder.get("rope_dim_split"):
        raise CheckpointError(
            f"`model` {path.name!r}: diffusion decoder stage5_channels={decoder.get('stage5_channels')!r}, "
            f"rope_dim_split={decoder.get('rope_dim_split')!r} cannot be expressed by diffusers' "
            f"LTX2VideoDiffusionDecoderModel (its stage 5 has stage_channels[-1] = {stage_channels[-1]} channels)."
        )
    upsamples = decoder.get("upsamples")
    strides = tuple(tuple(stride) for stride, _ in upsamples) if upsamples else released["decoder_upsample_strides"]
    reductions = (
        tuple(reduction for _, reduction in upsamples)
        if upsamples
        else released["decoder_upsample_channel_reductions"]
    )
    kernels = decoder.get("stage_kernels", released["decoder_stage_kernels"])
    return {
        **released,
        "out_channels": decoder.get("out_channels", 3),
        "latent_channels": decoder.get("in_channels", config.get("latent_channels", released["latent_channels"])),
        "patch_size": decoder.get("patch_size", released["patch_size"]),
        "decoder_head_dim": decoder.get("head_dim", decoder.get("na_head_dim", released["decoder_head_dim"])),
        "decoder_stage_channels": stage_channels,
        "decoder_stage_depths": tuple(decoder.get("stage_depths", released["decoder_stage_depths"])),
        "decoder_stage_kernels": tuple(tuple(kernel) for kernel in kernels),
        "decoder_upsample_strides": strides,
        "decoder_upsample_channel_reductions": reductions,
        "decoder_stage5_kernel": tuple(decoder.get("stage5_kernel", released["decoder_stage5_kernel"])),
        "decoder_t_emb_dim": decoder.get("t_emb_dim", released["decoder_t_emb_dim"]),
        "decoder_timestep_scale_multiplier": decoder.get(
            "timestep_scale_multiplier", released["decoder_timestep_scale_multiplier"]
        ),
        "decoder_model_output_type": config.get("model_output_type", released["decoder_model_output_type"]),
        "decoder_num_inference_steps": decoder.get(
            "default_num_inference_steps", released["decoder_num_inference_steps"]
        ),
    }


def _diffusion_decoder_state_dict(handle: Any) -> dict[str, torch.Tensor]:
    """The decoder's tensors under diffusers' names: renamed, q/k/v split, gates folded, `coarse_*` dropped."""
    decoder_keys = {}
    for key in handle.keys():
        prefix = next((prefix for prefix in ("vae.decoder.", "decoder.") if key.startswith(prefix)), None)
        if prefix is not None:
            decoder_keys[key.removeprefix(prefix)] = key
    gates = {name: key for name, key in decoder_keys.items() if name.endswith(GATE_SUFFIXES)}
    state_dict: dict[str, torch.Tensor] = {}
    for name, key in decoder_keys.items():
        if name in gates or name.startswith("coarse_") or ".coarse_" in name:
            continue
        for old, new in DIFFUSION_DECODER_RENAMES:
            name = name.replace(old, new)
        value = handle.get_tensor(key)
        suffix = next((leaf for leaf in DIFFUSION_DECODER_GATES if name.endswith(leaf)), None)
        gate_key = None if suffix is None else gates.get(name[: -len(suffix)] + DIFFUSION_DECODER_GATES[suffix])
        if gate_key is not None:
            gate = handle.get_tensor(gate_key).float()
            value = ((gate.unsqueeze(1) if value.ndim == 2 else gate) * value.float()).to(value.dtype)
        if name.endswith((".qkv.weight", ".qkv.bias")):  # one Linear(dim, 3 dim) -> to_q, to_k, to_v
            leaf = name.rsplit(".", 1)[1]
            block = name[: -len(f"qkv.{leaf}")]
            for projection, part in zip(("to_q", "to_k", "to_v"), value.chunk(3), strict=True):
                state_dict[f"decoder.{block}{projection}.{leaf}"] = part
            continue
        state_dict[f"decoder.{name}"] = value
    keys = set(handle.keys())
    for statistic, buffer in (("mean-of-means", "latents_mean"), ("std-of-means", "latents_std")):
        for prefix in ("vae.", ""):
            if f"{prefix}per_channel_statistics.{statistic}" in keys:
                state_dict[buffer] = handle.get_tensor(f"{prefix}per_channel_statistics.{statistic}")
    return state_dict


def load_diffusion_decoder_file(
    path: Path, torch_dtype: torch.dtype = torch.float32
) -> LTX2VideoDiffusionDecoderModel:
    """The diffusion decoder of an LTX-2.5 video VAE file (`vae/ltx-2.5-video-vae-bf16.safetensors`), converted as
    diffusers' `convert_ltx2_diffusion_video_vae` and the reference's `_build_diffusion_vae_decoder_sd_ops` do.
    Encoding stays with the conv VAE; the file's encoder is not read."""
    with loading._open_safetensors(path, "video_vae") as handle:
        config = loading._file_config(handle, path).get("vae", {})
        kwargs = diffusion_decoder_kwargs(config, path) if config else dict(FULL_SIZE_2_5["diffusion_decoder"])
        state_dict = _diffusion_decoder_state_dict(handle)
    module = loading._empty_module(LTX2VideoDiffusionDecoderModel, kwargs)
    shapes = {key: tuple(tensor.shape) for key, tensor in state_dict.items()}
    loading.check_weights_fit(module, {key: key for key in state_dict}, shapes, path, "diffusion decoder")
    module.load_state_dict({key: t.to(torch_dtype) for key, t in state_dict.items()}, strict=True, assign=True)
    return module.eval()


# --- Duration head ---------------------------------------------------------------------------------------------


def _load_duration_head(path: Path, dtype: torch.dtype) -> LTX2DurationHead:
    """The optional duration head. Its pooler is stored as `nn.MultiheadAttention` (q, k, v fused); diffusers keeps
    separate projections (the same split as diffusers' `convert_ltx2_duration_head`)."""
    with loading._open_safetensors(path, "duration_head") as handle:
        state_dict = {
            key.removeprefix(DURATION_HEAD_PREFIX): handle.get_tensor(key)
            for key in handle.keys()
            if key.startswith(DURATION_HEAD_PREFIX)
        }
    pooler = "attention_pooler."
    try:
        in_weight = state_dict.pop(pooler + "cross_attn.in_proj_weight")
        in_bias = state_dict.pop(pooler + "cross_attn.in_proj_bias")
        state_dict[pooler + "to_out.weight"] = state_dict.pop(pooler + "cross_attn.out_proj.weight")
        state_dict[pooler + "to_out.bias"] = state_dict.pop(pooler + "cross_attn.out_proj.bias")
        config = {
            "video_cross_attention_dim": state_dict["video_input_proj.weight"].shape[1],
            "audio_cross_attention_dim": state_dict["audio_input_proj.weight"].shape[1],
            "pooler_hidden_dim": in_weight.shape[1],
            "num_queries": state_dict[pooler + "query_tokens"].shape[0],
            "num_pooler_heads": versions.DURATION_HEAD_POOLER_HEADS,
            "mlp_hidden_dim": state_dict["mlp_hidden.weight"].shape[0],
        }
    except KeyError as error:
        raise CheckpointError(
            f"`duration_head` file {path.name!r} lacks {error}; expected "
            f"{versions.OFFICIAL_FILES_2_5['duration_head']!r} (duration_head.* weights)."
        ) from error
    for name, weight, bias in zip(("to_q", "to_k", "to_v"), in_weight.chunk(3), in_bias.chunk(3), strict=True):
        state_dict[f"{pooler}{name}.weight"], state_dict[f"{pooler}{name}.bias"] = weight, bias
    module = loading._empty_module(LTX2DurationHead, config)
    shapes = {key: tuple(tensor.shape) for key, tensor in state_dict.items()}
    loading.check_weights_fit(module, {key: key for key in state_dict}, shapes, path, "duration_head")
    module.load_state_dict({key: tensor.to(dtype) for key, tensor in state_dict.items()}, strict=True, assign=True)
    return module.eval()


# --- Full-size configs (for the benchmark; diffusers' scripts/convert_ltx2_to_diffusers.py, version "2.5") ---------

FULL_SIZE_2_5: dict[str, dict[str, Any]] = {
    "transformer": {
        **loading.FULL_SIZE_PRESETS["2.3"]["transformer"],
        "ff_bias": False,  # the only transformer deltas from 2.3
        "use_keyframes_abs_pos_embedding": True,  # 2.5.1+
    },
    # Input width and factor come from the Gemma 4 config (hidden_size, num_hidden_layers + 1), which neither
    # source states for the 12B encoder: `full_size_connectors_2_5` fills them in.
    "connectors": {
        key: value
        for key, value in loading.FULL_SIZE_PRESETS["2.3"]["connectors"].items()
        if key not in ("caption_channels", "text_proj_in_factor")
    },
    "vae": loading.FULL_SIZE_PRESETS["2.3"]["vae"],  # 2.5's conv VAE config is 2.3's
    "audio_vae": loading.FULL_SIZE_PRESETS["2.3"]["audio_vae"],
    "vocoder": loading.FULL_SIZE_PRESETS["2.3"]["vocoder"],
    "diffusion_decoder": {
        "out_channels": 3,
        "latent_channels": 128,
        "patch_size": 4,
        "decoder_head_dim": 64,
        "decoder_stage_channels": (2048, 1024, 512, 512, 256),
        "decoder_stage_depths": (4, 6, 4, 2, 8),
        "decoder_stage_kernels": ((3, 7, 7), (3, 7, 7), (3, 5, 5), (3, 5, 5)),
        "decoder_upsample_strides": ((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2)),
        "decoder_upsample_channel_reductions": (2, 2, 1, 2),
        "decoder_stage5_kernel": (11, 11, 11),
        "decoder_t_emb_dim": 384,
        "decoder_timestep_scale_multiplier": 1000.0,
        "decoder_model_output_type": "x0",
        "decoder_num_inference_steps": 1,
        "spatial_compression_ratio": 32,
        "temporal_compression_ratio": 8,
    },
    "duration_head": {  # widths of the connectors' outputs; the rest are LTX2DurationHead's (trained) defaults
        "video_cross_attention_dim": 4096,
        "audio_cross_attention_dim": 2048,
        "pooler_hidden_dim": 256,
        "num_queries": 1,
        "num_pooler_heads": versions.DURATION_HEAD_POOLER_HEADS,
        "mlp_hidden_dim": 256,
    },
}


def full_size_connectors_2_5(gemma_hidden_size: int, gemma_num_hidden_layers: int) -> dict[str, Any]:
    """LTX2TextConnectors kwargs of the full-size 2.5 model for a Gemma 4 text config (diffusers'
    `get_ltx2_connectors_config("2.5")`: the input is hidden_size wide, from num_hidden_layers + 1 hidden states)."""
    return {
        **FULL_SIZE_2_5["connectors"],
        "caption_channels": gemma_hidden_size,
        "text_proj_in_factor": gemma_num_hidden_layers + 1,
    }
