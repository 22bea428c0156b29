"""Load LTX-2 checkpoints into diffusers' own component classes.

`load_components(model)` accepts the model shipped in the repo ("embedded"), a diffusers-format folder or Hub repo
(`diffusers/LTX-2.3-Diffusers`, `Lightricks/LTX-2`), or an official single file (`ltx-2.3-22b-distilled.safetensors`,
local or `Lightricks/LTX-2.3/<file>`). Single files are converted key by key into diffusers' names and loaded with
strict key and shape checks into modules built on the meta device (no random initialisation). Tensors come from
safetensors' memory map: when `torch_dtype` is the file's dtype the weights stay file-backed (copy-on-write) until
used, so loading a 43 GiB LTX-2.3 file takes little process memory and the file is read from disk once, when the
weights move to the GPU (measured in benchmarks/RESULTS.md). Do not rewrite the file in place while a model loaded
from it is in use.

Official single-file layout (reference: Lightricks ltx-core `model_configurator.py` files and diffusers'
`scripts/convert_ltx2_to_diffusers.py`):
  model.diffusion_model.*                        transformer
  model.diffusion_model.{video,audio}_embeddings_connector.*   text connectors
  text_embedding_projection.*                    connectors' input projection (outside the model prefix)
  vae.{encoder,decoder,per_channel_statistics}.* video VAE
  audio_vae.{encoder,decoder,per_channel_statistics}.*  audio VAE
  vocoder.*                                      vocoder (LTX-2.3: vocoder.vocoder.*, vocoder.bwe_generator.*,
                                                 vocoder.mel_stft.*)
The file's safetensors metadata holds `config` (JSON with transformer / vae / audio_vae / vocoder sections) and
`model_version`. The Gemma-3 text encoder and the spatial upsampler live in other files.
"""

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.loaders.single_file_utils import (
    convert_ltx2_audio_vae_to_diffusers,
    convert_ltx2_transformer_to_diffusers,
    convert_ltx2_vae_to_diffusers,
)
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2Vocoder, LTX2VocoderWithBWE
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

from ltx_pipeline import constants, tiny

logger = logging.getLogger(__name__)

COMPONENT_NAMES: tuple[str, ...] = (
    "tokenizer",
    "text_encoder",
    "connectors",
    "transformer",
    "vae",
    "audio_vae",
    "vocoder",
    "latent_upsampler",
    "scheduler",
)
EMBEDDED_MODEL_DIR = Path(__file__).parent / "embedded_model"
SUPPORTED_VERSIONS: tuple[str, ...] = ("2.3", "2.0")

# Subfolders a diffusers-format LTX-2 folder must have; `latent_upsampler` is optional (Lightricks/LTX-2 has one,
# diffusers/LTX-2.3-Diffusers does not: its upsampler ships as the official single file).
DIFFUSERS_SUBFOLDERS: tuple[str, ...] = (
    "transformer",
    "vae",
    "audio_vae",
    "vocoder",
    "connectors",
    "text_encoder",
    "tokenizer",
    "scheduler",
)

TRANSFORMER_PREFIX = "model.diffusion_model."
CONNECTOR_PREFIXES = (
    TRANSFORMER_PREFIX + "video_embeddings_connector.",
    TRANSFORMER_PREFIX + "audio_embeddings_connector.",
    "text_embedding_projection.",
    TRANSFORMER_PREFIX + "text_embedding_projection.",
)
VAE_PREFIX = "vae."
AUDIO_VAE_PREFIX = "audio_vae."
VOCODER_PREFIX = "vocoder."
LORA_KEY_MARKERS = (".lora_A.", ".lora_B.", ".lora_down.", ".lora_up.", "lora_A.weight", "lora_B.weight")
UPSAMPLER_REQUIRED_KEYS = ("initial_conv.weight", "final_conv.weight")

# Renames LTX-2.3 needs on top of diffusers' single-file LTX-2.0 functions (diffusers'
# scripts/convert_ltx2_to_diffusers.py, LTX_2_3_TRANSFORMER_KEYS_RENAME_DICT / LTX_2_3_VIDEO_VAE_RENAME_DICT).
TRANSFORMER_2_3_RENAMES = {"audio_prompt_adaln_single": "audio_prompt_adaln", "prompt_adaln_single": "prompt_adaln"}
VAE_EXTRA_RENAMES = {
    "up_blocks.7": "up_blocks.3.upsamplers.0",
    "up_blocks.8": "up_blocks.3",
    # timestep-conditioned decoders only
    "last_time_embedder": "time_embedder",
    "last_scale_shift_table": "scale_shift_table",
}
# Connector renames, from diffusers' LTX_2_0 / LTX_2_3 CONNECTORS_KEYS_RENAME_DICT.
CONNECTOR_RENAMES = {
    TRANSFORMER_PREFIX: "",
    "video_embeddings_connector": "video_connector",
    "audio_embeddings_connector": "audio_connector",
    "transformer_1d_blocks": "transformer_blocks",
    "text_embedding_projection.audio_aggregate_embed": "audio_text_proj_in",
    "text_embedding_projection.video_aggregate_embed": "video_text_proj_in",
    "text_embedding_projection.aggregate_embed": "text_proj_in",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
# Vocoder renames, from diffusers' LTX_2_3_VOCODER_RENAME_DICT (LTX-2.0 files use the same names, minus BWE).
VOCODER_RENAMES = {
    "resblocks": "resnets",
    "conv_pre": "conv_in",
    "conv_post": "conv_out",
    "act_post": "act_out",
    "downsample.lowpass": "downsample",
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what was expected."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path or Hub file that does not exist or could not be downloaded."""


@dataclass(frozen=True)
class LoadedModel:
    """Components ready for `TI2VidTwoStagesPipeline(**components)`, and what they are."""

    components: dict[str, Any]  # keys: COMPONENT_NAMES
    name: str  # what the user pointed at: "embedded", a folder, a Hub id or a file name
    version: str  # "2.5", "2.3" or "2.0"
    variant: str  # "distilled" or "dev"
    label: str  # human label for the UI and the recipe
    is_random: bool  # True only for the random tiny fallback
    duration_head: Any = None  # LTX-2.5's LTX2DurationHead ("length from the prompt") when it was loaded
    diffusion_decoder: Any = None  # LTX-2.5's LTX2VideoDiffusionDecoderModel when its VAE file was there too


# --- Entry point ----------------------------------------------------------------------------------------------------


def load_components(
    model: str | os.PathLike,
    *,
    spatial_upsampler: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool = False,
) -> LoadedModel:
    """Load every pipeline component from `model`.

    Args:
        model: "embedded", a diffusers-format folder, a Hub repo id of one (`diffusers/LTX-2.3-Diffusers`), an
            official single `.safetensors` file, or a Hub file (`Lightricks/LTX-2.3/ltx-2.3-22b-distilled.safetensors`).
            LTX-2.5 (`loading_2_5`): a folder of its per-component files, its transformer file (the other files
            found beside it), or a diffusers-format folder with a Gemma 4 text encoder.
        spatial_upsampler: the latent upsampler: an official upsampler `.safetensors` file (local or Hub file), or a
            diffusers folder / Hub repo holding `LTX2LatentUpsamplerModel`. By default the folder's own
            `latent_upsampler`, else the official x2 upsampler of the model's version from the Hub.
        text_encoder: the Gemma-3 text encoder and tokenizer (Hub id or folder; a diffusers folder's `text_encoder`
            and `tokenizer` subfolders also work). Default: the folder's own, else `OFFICIAL_TEXT_ENCODER_REPO`.
        torch_dtype: floating dtype of the loaded weights; None: bf16 where a CUDA GPU is available, float32
            otherwise (most CPUs compute bf16 far slower: the embedded model's 97-frame clip took 145 s in bf16 and
            4.5 s in float32 on a 2-core EPYC). The vocoder always stays float32 (bf16 degrades the
            bandwidth-extension audio).
        local_files_only: never touch the network; Hub ids must already be in the local cache.
    """
    if not isinstance(model, str | os.PathLike) or not str(model).strip():
        raise ValueError(
            f"`model` must be 'embedded', a folder, a .safetensors file or a Hub id (e.g. "
            f"'{constants.HUB_DIFFUSERS_REPO}'); got {model!r}."
        )
    if torch_dtype is None:
        torch_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ValueError(f"`torch_dtype` must be a floating torch dtype such as torch.bfloat16; got {torch_dtype!r}.")
    for argument, value in (("spatial_upsampler", spatial_upsampler), ("text_encoder", text_encoder)):
        if value is not None and (not isinstance(value, str | os.PathLike) or not str(value).strip()):
            raise ValueError(f"`{argument}` must be a path or Hub id, or None for the default; got {value!r}.")
    options = _Options(torch_dtype, local_files_only)

    name = str(model)
    if name == constants.EMBEDDED_MODEL_NAME:
        return _load_embedded(spatial_upsampler, text_encoder, options)
    path = Path(name).expanduser()
    if not path.exists():  # a Hub file or repo: download it, then load the local copy like any other
        hub_file = _parse_hub_file(name) or _official_2_5_hub_file(name)
        if hub_file is not None:
            path = _download_hub_file(*hub_file, argument="model", options=options)
        elif _is_hub_repo_id(name):
            path = _download_hub_repo(name, options)
        else:
            raise CheckpointNotFoundError(
                f"`model` {name!r} was not found: it is not 'embedded', an existing folder or file, a Hub repo id "
                f"('owner/name') or a Hub file ('owner/name/file.safetensors')."
            )
        if hub_file is not None and path.is_file():
            _fetch_ltx_2_5_hub_files(path, hub_file[0], options)
    ltx_2_5 = _ltx_2_5_loader(path, text_encoder)
    if ltx_2_5 is not None:
        return ltx_2_5(
            path,
            name,
            spatial_upsampler=spatial_upsampler,
            torch_dtype=options.torch_dtype,
            local_files_only=options.local_files_only,
        )
    if path.is_dir():
        return _load_diffusers_folder(path, name, spatial_upsampler, text_encoder, options)
    return _load_single_file(path, name, spatial_upsampler, text_encoder, options)


def _official_2_5_hub_file(name: str) -> tuple[str, str] | None:
    """`Lightricks/LTX-2.5` (a per-component repo, no diffusers folder) means its distilled transformer file."""
    from ltx_pipeline import versions

    return (name, versions.OFFICIAL_FILES_2_5["transformer"]) if name == versions.HUB_OFFICIAL_REPO_2_5 else None


def _fetch_ltx_2_5_hub_files(transformer_file: Path, repo_id: str, options: "_Options") -> None:
    """A downloaded LTX-2.5 transformer file needs its sibling files: fetch them into the same snapshot folder."""
    from ltx_pipeline import loading_2_5

    if loading_2_5.is_ltx_2_5_transformer_file(transformer_file):
        loading_2_5.download_official_siblings(repo_id, options)


def _ltx_2_5_loader(path: Path, text_encoder: str | os.PathLike | None) -> Callable[..., LoadedModel] | None:
    """The LTX-2.5 loader for `path` when it is LTX-2.5 (per-component files or a diffusers folder), else None."""
    from ltx_pipeline import loading_2_5, versions  # loading_2_5 builds on this module

    is_diffusers_2_5 = path.is_dir() and loading_2_5.is_diffusers_2_5_folder(path)
    is_official_2_5 = (path.is_dir() and loading_2_5.is_official_2_5_folder(path)) or (
        path.is_file() and path.suffix in (".safetensors", ".sft") and loading_2_5.is_ltx_2_5_transformer_file(path)
    )
    if (is_diffusers_2_5 or is_official_2_5) and text_encoder is not None:
        raise ValueError(
            "`text_encoder` cannot be given for an LTX-2.5 model: its fine-tuned Gemma 4 ships with it (the "
            f"{versions.OFFICIAL_FILES_2_5['text_encoder']!r} file or the folder's text_encoder); got {text_encoder!r}."
        )
    if is_diffusers_2_5:
        return loading_2_5.load_diffusers_folder
    if is_official_2_5:
        return loading_2_5.load_official_path
    return None


@dataclass(frozen=True)
class _Options:
    torch_dtype: torch.dtype
    local_files_only: bool


# --- Embedded model -------------------------------------------------------------------------------------------------


def _load_embedded(spatial_upsampler: str | None, text_encoder: str | None, options: _Options) -> LoadedModel:
    if (EMBEDDED_MODEL_DIR / "model_index.json").is_file():
        loaded = _load_diffusers_folder(EMBEDDED_MODEL_DIR, "embedded", spatial_upsampler, text_encoder, options)
        return LoadedModel(
            components=loaded.components,
            name=constants.EMBEDDED_MODEL_NAME,
            version=loaded.version,
            variant="distilled",  # trained for, and benchmarked with, the distilled 8 + 3 step schedule
            label=constants.EMBEDDED_MODEL_LABEL,
            is_random=False,
        )
    logger.warning(
        "The embedded model folder %s is absent: using tiny LTX-2.3 components with RANDOM weights. "
        "Outputs will be noise; pass a real checkpoint as `model` for real results.",
        EMBEDDED_MODEL_DIR,
    )
    components = tiny.build_tiny_components("2.3")
    for component_name, component in components.items():
        if isinstance(component, torch.nn.Module) and component_name != "vocoder":
            component.to(options.torch_dtype)
    return LoadedModel(
        components=components,
        name=constants.EMBEDDED_MODEL_NAME,
        version="2.3",
        variant="distilled",
        label=tiny.RANDOM_MODEL_LABEL,
        is_random=True,
    )


# --- Diffusers-format folders and Hub repos ------------------------------------------------------------------------

DIFFUSERS_CLASSES: dict[str, type] = {
    "transformer": LTX2VideoTransformer3DModel,
    "vae": AutoencoderKLLTX2Video,
    "audio_vae": AutoencoderKLLTX2Audio,
    "connectors": LTX2TextConnectors,
}


def _load_diffusers_folder(
    folder: Path, name: str, spatial_upsampler: str | None, text_encoder: str | None, options: _Options
) -> LoadedModel:
    logger.info("Loading the diffusers-format folder %s", folder)
    if not (folder / "model_index.json").is_file():
        raise CheckpointError(
            f"Folder {str(folder)!r} has no model_index.json: expected a diffusers-format LTX-2 folder with "
            f"subfolders {', '.join(DIFFUSERS_SUBFOLDERS)} (or pass a single .safetensors file)."
        )
    needed = [sub for sub in DIFFUSERS_SUBFOLDERS if not (sub in ("text_encoder", "tokenizer") and text_encoder)]
    missing = [sub for sub in needed if not (folder / sub).is_dir()]
    if missing:
        raise CheckpointError(
            f"Diffusers folder {str(folder)!r} lacks the subfolder(s) {', '.join(missing)}: expected "
            f"{', '.join(DIFFUSERS_SUBFOLDERS)} (a complete LTX-2 pipeline saved with save_pretrained)."
        )
    vocoder_class = _diffusers_vocoder_class(folder / "vocoder")
    version = "2.3" if vocoder_class is LTX2VocoderWithBWE else "2.0"
    dtype_kwargs = {"torch_dtype": options.torch_dtype, "local_files_only": options.local_files_only}
    components: dict[str, Any] = {}
    # The parts most likely to fail (a download, another path) first, before the big weights.
    if spatial_upsampler is not None:
        components["latent_upsampler"] = _load_spatial_upsampler(spatial_upsampler, options)
    elif (folder / "latent_upsampler").is_dir():
        components["latent_upsampler"] = LTX2LatentUpsamplerModel.from_pretrained(
            folder, subfolder="latent_upsampler", **dtype_kwargs
        )
    else:
        components["latent_upsampler"] = _load_spatial_upsampler(_default_upsampler(version, None), options)
    if text_encoder is None:
        components["tokenizer"] = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
        components["text_encoder"] = Gemma3ForConditionalGeneration.from_pretrained(
            folder, subfolder="text_encoder", dtype=options.torch_dtype, local_files_only=options.local_files_only
        )
    else:
        components["tokenizer"], components["text_encoder"] = _load_text_encoder(text_encoder, options)
    components["scheduler"] = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    components["vocoder"] = vocoder_class.from_pretrained(
        folder, subfolder="vocoder", torch_dtype=torch.float32, local_files_only=options.local_files_only
    )
    for sub, cls in DIFFUSERS_CLASSES.items():
        components[sub] = cls.from_pretrained(folder, subfolder=sub, **dtype_kwargs)

    for component in components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    variant = "distilled" if "distill" in name.lower() else "dev"
    return LoadedModel(
        components={key: components[key] for key in COMPONENT_NAMES},
        name=name,
        version=version,
        variant=variant,
        label=f"LTX-{version} {variant} ({name})",
        is_random=False,
    )


def _diffusers_vocoder_class(vocoder_folder: Path) -> type:
    """LTX-2.3 folders hold `LTX2VocoderWithBWE` (48 kHz), LTX-2.0 folders `LTX2Vocoder` (24 kHz)."""
    config = json.loads((vocoder_folder / "config.json").read_text())
    class_name = config.get("_class_name")
    if class_name == "LTX2VocoderWithBWE":
        return LTX2VocoderWithBWE
    if class_name == "LTX2Vocoder":
        return LTX2Vocoder
    raise CheckpointError(
        f"{str(vocoder_folder / 'config.json')!r} names vocoder class {class_name!r}; expected 'LTX2Vocoder' "
        f"(LTX-2.0) or 'LTX2VocoderWithBWE' (LTX-2.3)."
    )


def _is_hub_repo_id(name: str) -> bool:
    looks_like_a_file = name.endswith((".safetensors", ".sft"))
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith(".") and not looks_like_a_file


def _parse_hub_file(name: str) -> tuple[str, str] | None:
    """'owner/repo/sub/file.safetensors' -> ('owner/repo', 'sub/file.safetensors'); None if not that shape."""
    if name.startswith(("/", ".", "~")) or not name.endswith((".safetensors", ".sft")):
        return None
    parts = name.split("/")
    if len(parts) < 3 or not _is_hub_repo_id("/".join(parts[:2])):
        return None
    return "/".join(parts[:2]), "/".join(parts[2:])


def _download_failure_message(what: str, error: Exception, options: _Options) -> str:
    mode = "it is not in the local Hugging Face cache (local_files_only)" if options.local_files_only else "no network"
    return (
        f"Download of {what} from the Hugging Face Hub failed ({mode}: {type(error).__name__}: {error}). "
        "Download it where there is network access (e.g. `hf download <repo>`), then point at the local "
        "folder or .safetensors file instead."
    )


def _download_hub_file(repo_id: str, filename: str, *, argument: str, options: _Options) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=options.local_files_only))
    except Exception as error:  # huggingface_hub raises several unrelated types for "not available"
        raise CheckpointNotFoundError(
            f"`{argument}`: " + _download_failure_message(f"file {filename!r} of repo {repo_id!r}", error, options)
        ) from error


def _download_hub_repo(repo_id: str, options: _Options) -> Path:
    from huggingface_hub import snapshot_download

    # Only the diffusers subfolders: Lightricks/LTX-2 also holds tens of GB of single files.
    patterns = ["model_index.json"] + [
        f"{sub}/*" for sub in (*DIFFUSERS_SUBFOLDERS, "latent_upsampler", "duration_head")
    ]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=options.local_files_only))
    except Exception as error:
        raise CheckpointNotFoundError(
            "`model`: " + _download_failure_message(f"diffusers repo {repo_id!r}", error, options)
        ) from error


# --- Text encoder and spatial upsampler ----------------------------------------------------------------------------


def _load_text_encoder(source: str | os.PathLike, options: _Options) -> tuple[Any, Gemma3ForConditionalGeneration]:
    """Gemma-3 and its tokenizer from a Hub id or folder (plain, or a diffusers folder's subfolders)."""
    source_path = Path(source).expanduser()
    kwargs: dict[str, Any] = {"local_files_only": options.local_files_only}
    tokenizer_kwargs, encoder_kwargs = dict(kwargs), dict(kwargs)
    if source_path.is_dir():
        if (source_path / "text_encoder").is_dir():
            tokenizer_kwargs["subfolder"], encoder_kwargs["subfolder"] = "tokenizer", "text_encoder"
        source = source_path
    elif not _is_hub_repo_id(str(source)):
        raise CheckpointNotFoundError(
            f"`text_encoder` {str(source)!r} is neither a folder nor a Hub repo id; expected a Gemma-3 text encoder "
            f"such as {constants.OFFICIAL_TEXT_ENCODER_REPO!r} or a local copy of it."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **tokenizer_kwargs)
        text_encoder = Gemma3ForConditionalGeneration.from_pretrained(
            source, dtype=options.torch_dtype, **encoder_kwargs
        )
    except (OSError, ValueError) as error:  # transformers raises ValueError for a folder without a tokenizer
        if source_path.is_dir():
            raise CheckpointError(
                f"`text_encoder` folder {str(source_path)!r} could not be loaded as a Gemma-3 text encoder with its "
                f"tokenizer ({error})."
            ) from error
        raise CheckpointNotFoundError(
            "`text_encoder`: " + _download_failure_message(f"text encoder repo {str(source)!r}", error, options)
        ) from error
    return tokenizer, text_encoder.eval()


def _default_upsampler(version: str, next_to: Path | None) -> str:
    """The official x2 spatial upsampler for `version`: a copy next to the model file if there is one, else the Hub."""
    if version == "2.3":
        repo, filename = constants.HUB_OFFICIAL_REPO, constants.OFFICIAL_SPATIAL_UPSAMPLER_FILE
    else:
        repo, filename = constants.HUB_OFFICIAL_REPO_2_0, constants.OFFICIAL_SPATIAL_UPSAMPLER_FILE_2_0
    if next_to is not None and (next_to / filename).is_file():
        return str(next_to / filename)
    return f"{repo}/{filename}"


def _load_spatial_upsampler(source: str | os.PathLike, options: _Options) -> LTX2LatentUpsamplerModel:
    name = str(source)
    path = Path(name).expanduser()
    if path.is_dir():
        subfolder = "latent_upsampler" if (path / "latent_upsampler").is_dir() else None
        return LTX2LatentUpsamplerModel.from_pretrained(
            path, subfolder=subfolder, torch_dtype=options.torch_dtype, local_files_only=options.local_files_only
        ).eval()
    if not path.is_file():
        hub_file = _parse_hub_file(name)
        if hub_file is not None:
            path = _download_hub_file(*hub_file, argument="spatial_upsampler", options=options)
        elif _is_hub_repo_id(name):
            try:
                return LTX2LatentUpsamplerModel.from_pretrained(
                    name,
                    subfolder="latent_upsampler",
                    torch_dtype=options.torch_dtype,
                    local_files_only=options.local_files_only,
                ).eval()
            except OSError as error:
                raise CheckpointNotFoundError(
                    "`spatial_upsampler`: " + _download_failure_message(f"upsampler repo {name!r}", error, options)
                ) from error
        else:
            raise CheckpointNotFoundError(
                f"`spatial_upsampler` file {name!r} does not exist; expected an official spatial upsampler such as "
                f"{constants.OFFICIAL_SPATIAL_UPSAMPLER_FILE!r}."
            )
    with _open_safetensors(path, "spatial_upsampler") as handle:
        shapes = _read_shapes(handle)
        keys = list(shapes)
        if not all(key in shapes for key in UPSAMPLER_REQUIRED_KEYS):
            raise CheckpointError(
                f"`spatial_upsampler` {str(path)!r} is not a spatial upsampler file: it lacks "
                f"{', '.join(UPSAMPLER_REQUIRED_KEYS)}; expected a file like "
                f"{constants.OFFICIAL_SPATIAL_UPSAMPLER_FILE!r} (first keys: {_first(keys)})."
            )
        config = _upsampler_config(shapes, _file_config(handle, path))
        mapping = {key: key for key in keys}  # the official upsampler already uses diffusers' names
        return _build_and_load(
            LTX2LatentUpsamplerModel, config, mapping, handle, shapes, path, options.torch_dtype, "spatial_upsampler"
        )


def _upsampler_config(shapes: dict[str, tuple[int, ...]], metadata_config: dict) -> dict[str, Any]:
    """LatentUpsampler architecture from tensor shapes; the spatial scale from the metadata (reference field)."""
    initial_shape = shapes["initial_conv.weight"]
    mid_channels = initial_shape[0]
    config: dict[str, Any] = {
        "in_channels": initial_shape[1],
        "mid_channels": mid_channels,
        "num_blocks_per_stage": sum(1 for key in shapes if re.fullmatch(r"res_blocks\.\d+\.conv1\.weight", key)),
        "dims": len(initial_shape) - 2,
    }
    if "upsampler.conv.weight" in shapes:  # SpatialRationalResampler
        config.update(
            spatial_upsample=True,
            temporal_upsample=False,
            use_rational_resampler=True,
            rational_spatial_scale=float(metadata_config.get("spatial_scale", 2.0)),
        )
    else:
        expansion = shapes["upsampler.0.weight"][0] // mid_channels  # 4: spatial, 2: temporal, 8: both
        config.update(
            spatial_upsample=expansion in (4, 8), temporal_upsample=expansion in (2, 8), use_rational_resampler=False
        )
    return config


# --- Official single files ---------------------------------------------------------------------------------------


def _load_single_file(
    path: Path, name: str, spatial_upsampler: str | None, text_encoder: str | None, options: _Options
) -> LoadedModel:
    logger.info("Loading the official single-file checkpoint %s", path)
    with _open_safetensors(path, "model") as handle:
        shapes = _read_shapes(handle)
        keys = list(shapes)
        _check_combined_checkpoint(path, keys)
        metadata = handle.metadata() or {}
        file_config = _file_config(handle, path)
        version = _file_version(path, metadata, keys)
        configs = _configs_from_file(shapes, file_config, version, path)
        mappings = _official_key_mappings(keys, version, path)
        classes = {
            "transformer": LTX2VideoTransformer3DModel,
            "connectors": LTX2TextConnectors,
            "vae": AutoencoderKLLTX2Video,
            "audio_vae": AutoencoderKLLTX2Audio,
            "vocoder": LTX2VocoderWithBWE if version == "2.3" else LTX2Vocoder,
        }
        # Everything that can fail is checked before the tens of GB of weights are read.
        modules = {name: _empty_module(cls, configs[name]) for name, cls in classes.items()}
        for name, module in modules.items():
            check_weights_fit(module, mappings[name], shapes, path, name)
        components: dict[str, Any] = {
            "latent_upsampler": _load_spatial_upsampler(
                spatial_upsampler or _default_upsampler(version, path.parent), options
            ),
            "scheduler": FlowMatchEulerDiscreteScheduler(**constants.SCHEDULER_CONFIG),
        }
        components["tokenizer"], components["text_encoder"] = _load_text_encoder(
            text_encoder or constants.OFFICIAL_TEXT_ENCODER_REPO, options
        )
        for name, module in modules.items():
            dtype = torch.float32 if name == "vocoder" else options.torch_dtype
            components[name] = _read_weights(module, mappings[name], handle, dtype)
    variant = _file_variant(path)
    return LoadedModel(
        components={key: components[key] for key in COMPONENT_NAMES},
        name=name,
        version=version,
        variant=variant,
        label=f"LTX-{version} {variant} ({path.name})",
        is_random=False,
    )


@contextmanager
def _open_safetensors(path: Path, argument: str) -> Iterator[Any]:
    """`safe_open` (header only, tensors read on demand) with errors that name the argument and the file."""
    if not path.is_file():
        raise CheckpointNotFoundError(f"`{argument}` file {str(path)!r} does not exist.")
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"`{argument}` {str(path)!r} is not a safetensors file ({error}); expected an official LTX-2 "
            ".safetensors checkpoint or a diffusers-format folder."
        ) from error
    with handle:
        yield handle


def _check_combined_checkpoint(path: Path, keys: list[str]) -> None:
    if any(key.startswith(TRANSFORMER_PREFIX) for key in keys):
        return
    if any(marker in key for key in keys for marker in LORA_KEY_MARKERS):
        raise CheckpointError(
            f"`model` {str(path)!r} is a LoRA file (it holds lora_A/lora_B weights), not a model; expected a combined "
            f"LTX-2 checkpoint with model.diffusion_model.* keys such as {constants.OFFICIAL_DISTILLED_FILE!r}."
        )
    if all(key in keys for key in UPSAMPLER_REQUIRED_KEYS):
        kind = "a standalone spatial upsampler file (pass it as `spatial_upsampler`)"
    elif any(key.startswith(("vae.", "encoder.", "decoder.", "per_channel_statistics.")) for key in keys):
        kind = "a standalone VAE file"
    else:
        kind = "a standalone VAE/LoRA/upsampler file"
    raise CheckpointError(
        f"`model` {str(path)!r} has none of the expected key prefixes: this looks like {kind}; expected a combined "
        f"LTX-2 checkpoint with model.diffusion_model.* keys (first keys: {_first(keys)})."
    )


def _file_config(handle: Any, path: Path) -> dict:
    metadata = handle.metadata() or {}
    if "config" not in metadata:
        return {}
    try:
        return json.loads(metadata["config"])
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{str(path)!r}: the safetensors metadata 'config' is not valid JSON ({error}); expected the JSON "
            "config official LTX-2 files carry."
        ) from error


def _file_version(path: Path, metadata: dict[str, str], keys: list[str]) -> str:
    model_version = metadata.get("model_version")
    if model_version is not None:
        major_minor = ".".join(model_version.split(".")[:2])
        if major_minor == "2":
            major_minor = "2.0"
        if major_minor not in SUPPORTED_VERSIONS:
            raise CheckpointError(
                f"{str(path)!r} declares model_version {model_version!r}; this product supports LTX-2.3 and "
                "LTX-2.0 single files, and LTX-2.5 as Lightricks ships it: one file per component (pass the folder "
                "or the transformer file)."
            )
        return major_minor
    # No version stamp: LTX-2.3 is the one with per-modality text projections and prompt AdaLN.
    is_2_3 = any("video_aggregate_embed" in key or "prompt_adaln_single" in key for key in keys)
    return "2.3" if is_2_3 else "2.0"


def _file_variant(path: Path) -> str:
    """Distilled or dev, from the file name as Lightricks names its files (the header does not say)."""
    name = path.name.lower()
    if "distill" in name:
        return "distilled"
    if "dev" not in name:
        logger.warning(
            "%s: the file name says neither 'distilled' nor 'dev'; treating it as the dev model (30-step schedule "
            "with guidance). Rename the file if it is a distilled checkpoint.",
            path,
        )
    return "dev"


def _first(keys: Iterable[str], count: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:count])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > count else "")


def _read_shapes(handle: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, from the safetensors header alone."""
    return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


# Key mappings: {diffusers key: official key}. Diffusers' own conversion functions rename keys inside a state dict;
# feeding them {official key: official key} yields the renaming without reading a tensor.


def _rename_with(convert: Callable[[dict], dict], official_keys: Iterable[str]) -> dict[str, str]:
    return convert({key: key for key in official_keys})


def _apply_renames(mapping: dict[str, str], renames: dict[str, str]) -> dict[str, str]:
    renamed = {}
    for diffusers_key, official_key in mapping.items():
        for old, new in renames.items():
            diffusers_key = diffusers_key.replace(old, new)
        renamed[diffusers_key] = official_key
    return renamed


def _official_key_mappings(keys: list[str], version: str, path: Path) -> dict[str, dict[str, str]]:
    connector_keys = [key for key in keys if key.startswith(CONNECTOR_PREFIXES)]
    transformer_keys = [key for key in keys if key.startswith(TRANSFORMER_PREFIX) and key not in connector_keys]
    vae_keys = [key for key in keys if key.startswith(VAE_PREFIX)]
    audio_vae_keys = [key for key in keys if key.startswith(AUDIO_VAE_PREFIX)]
    vocoder_keys = [key for key in keys if key.startswith(VOCODER_PREFIX)]
    used = set(connector_keys) | set(transformer_keys) | set(vae_keys) | set(audio_vae_keys) | set(vocoder_keys)
    ignored = [key for key in keys if key not in used]
    if ignored:
        logger.warning("%s: ignoring %d keys outside the known components: %s", path, len(ignored), _first(ignored))

    transformer = _rename_with(convert_ltx2_transformer_to_diffusers, transformer_keys)
    if version == "2.3":
        transformer = _apply_renames(transformer, TRANSFORMER_2_3_RENAMES)
    vae = _apply_renames(_rename_with(convert_ltx2_vae_to_diffusers, vae_keys), VAE_EXTRA_RENAMES)
    vae = {key: official for key, official in vae.items() if not _is_unused_vae_statistic(official)}
    return {
        "transformer": transformer,
        "connectors": _apply_renames({key: key for key in connector_keys}, CONNECTOR_RENAMES),
        "vae": vae,
        "audio_vae": _rename_with(convert_ltx2_audio_vae_to_diffusers, audio_vae_keys),
        "vocoder": {_vocoder_key(key): key for key in vocoder_keys},
    }


def _is_unused_vae_statistic(official_key: str) -> bool:
    # diffusers drops these statistics (LTX_2_0_VAE_SPECIAL_KEYS_REMAP); its single-file function keeps them.
    return "per_channel_statistics.channel" in official_key or "per_channel_statistics.mean-of-stds" in official_key


def _vocoder_key(official_key: str) -> str:
    key = official_key.removeprefix(VOCODER_PREFIX)  # once: LTX-2.3 keys are vocoder.vocoder.*
    key = re.sub(r"(^|\.)ups\.", r"\1upsamplers.", key)  # "ups" alone: "upsample.filter" must survive
    for old, new in VOCODER_RENAMES.items():
        key = key.replace(old, new)
    return key


def _build_and_load(
    cls: type,
    config: dict[str, Any],
    mapping: dict[str, str],
    handle: Any,
    shapes: dict[str, tuple[int, ...]],
    path: Path,
    dtype: torch.dtype,
    component_name: str,
) -> torch.nn.Module:
    """Build `cls(**config)` on the meta device, check keys and shapes strictly, then read each tensor once."""
    module = _empty_module(cls, config)
    check_weights_fit(module, mapping, shapes, path, component_name)
    return _read_weights(module, mapping, handle, dtype)


def _empty_module(cls: type, config: dict[str, Any]) -> torch.nn.Module:
    """`cls(**config)` with its parameters on the meta device: no random initialisation, no memory."""
    with init_empty_weights():
        return cls(**config)


def _read_weights(
    module: torch.nn.Module, mapping: dict[str, str], handle: Any, dtype: torch.dtype
) -> torch.nn.Module:
    state_dict = {}
    for diffusers_key, official_key in mapping.items():
        tensor = handle.get_tensor(official_key)
        state_dict[diffusers_key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    module.load_state_dict(state_dict, strict=True, assign=True)
    return module.eval()


def check_weights_fit(
    module: torch.nn.Module,
    mapping: dict[str, str],
    shapes: dict[str, tuple[int, ...]],
    path: Path,
    component_name: str,
) -> None:
    """Raise unless the file's tensors (`mapping`: diffusers key -> file key) are exactly `module`'s, shape for
    shape."""
    expected_shapes = {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}
    class_name = type(module).__name__
    missing, unexpected = sorted(expected_shapes.keys() - mapping.keys()), sorted(mapping.keys() - expected_shapes)
    if missing or unexpected:
        raise CheckpointError(
            f"{str(path)!r}: the {component_name} weights do not match diffusers' {class_name} built from the "
            f"file's config. Missing keys: {_first(missing) or 'none'}. Unexpected keys (as converted, with their "
            f"file names): {_first(f'{key} <- {mapping[key]}' for key in unexpected) or 'none'}."
        )
    mismatched = [
        f"{key} {shapes[official]} (expected {expected_shapes[key]})"
        for key, official in mapping.items()
        if shapes[official] != expected_shapes[key]
    ]
    if mismatched:
        raise CheckpointError(
            f"{str(path)!r}: the {component_name} weights have other shapes than diffusers' {class_name} built "
            f"from the file's config: {_first(mismatched, 3)}."
        )


# --- Diffusers configs from the file's metadata -------------------------------------------------------------------


def _configs_from_file(
    shapes: dict[str, tuple[int, ...]], file_config: dict, version: str, path: Path
) -> dict[str, dict[str, Any]]:
    sections = ("transformer", "vae", "audio_vae", "vocoder")
    if not all(section in file_config for section in sections):
        logger.warning(
            "%s: no (complete) config in the safetensors metadata; using the full-size LTX-%s presets.", path, version
        )
        return {name: dict(config) for name, config in FULL_SIZE_PRESETS[version].items()}
    transformer_config = file_config["transformer"]
    return {
        "transformer": transformer_kwargs(transformer_config, version),
        "connectors": connectors_kwargs(transformer_config, shapes),
        "vae": video_vae_kwargs(file_config["vae"], path),
        "audio_vae": audio_vae_kwargs(file_config["audio_vae"]),
        "vocoder": vocoder_kwargs(file_config["vocoder"], shapes),
    }


def _rope_double_precision(transformer_config: dict) -> bool:
    return transformer_config.get("frequencies_precision", False) == "float64"


def transformer_kwargs(config: dict, version: str) -> dict[str, Any]:
    """LTX2VideoTransformer3DModel kwargs from the metadata's `transformer` section (ltx-core LTXModelConfigurator
    field names and defaults)."""
    max_pos = config.get("positional_embedding_max_pos", [20, 2048, 2048])
    gated = config.get("apply_gated_attention", False)
    cross_attention_adaln = config.get("cross_attention_adaln", False)
    return {
        "in_channels": config.get("in_channels", 128),
        "out_channels": config.get("out_channels", 128),
        "num_attention_heads": config.get("num_attention_heads", 32),
        "attention_head_dim": config.get("attention_head_dim", 128),
        "cross_attention_dim": config.get("cross_attention_dim", 4096),
        "pos_embed_max_pos": max_pos[0],
        "base_height": max_pos[1],
        "base_width": max_pos[2],
        "gated_attn": gated,
        "cross_attn_mod": cross_attention_adaln,
        "audio_in_channels": config.get("audio_in_channels", 128),
        "audio_out_channels": config.get("audio_out_channels", 128),
        "audio_num_attention_heads": config.get("audio_num_attention_heads", 32),
        "audio_attention_head_dim": config.get("audio_attention_head_dim", 64),
        "audio_cross_attention_dim": config.get("audio_cross_attention_dim", 2048),
        "audio_pos_embed_max_pos": config.get("audio_positional_embedding_max_pos", [20])[0],
        "audio_gated_attn": gated,
        "audio_cross_attn_mod": cross_attention_adaln,
        "num_layers": config.get("num_layers", 48),
        "norm_eps": config.get("norm_eps", 1e-6),
        "caption_channels": config.get("caption_channels", 3840),
        "rope_theta": config.get("positional_embedding_theta", 10000.0),
        "rope_double_precision": _rope_double_precision(config),
        "rope_type": config.get("rope_type", "split"),
        "timestep_scale_multiplier": config.get("timestep_scale_multiplier", 1000),
        "cross_attn_timestep_scale_multiplier": config.get("av_ca_timestep_scale_multiplier", 1),
        # LTX-2.0 projects captions inside the transformer; LTX-2.3 does it in the connectors.
        "use_prompt_embeddings": not config.get("caption_proj_before_connector", False),
        "use_prompt_adaln_single": config.get("use_prompt_adaln_single", True),
        "ff_bias": config.get("ff_bias", True),
        "audio_ff_bias": config.get("audio_ff_bias", True),
        "use_keyframes_abs_pos_embedding": config.get("use_keyframes_abs_pos_embedding", False),
        # Not stored in the file: diffusers' LTX-2.3 conversion turns on the STG-capable attention processor.
        "perturbed_attn": version == "2.3",
    }


def connectors_kwargs(config: dict, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """LTX2TextConnectors kwargs from the metadata's `transformer` section plus tensor shapes (ltx-core
    Embeddings1DConnectorConfigurator and the feature extractor)."""
    per_modality = config.get("caption_proj_before_connector", False)
    projection_key = next(
        (
            key
            for key in shapes
            if key.endswith(("text_embedding_projection.aggregate_embed.weight", "video_aggregate_embed.weight"))
        ),
        None,
    )
    if projection_key is None:
        raise CheckpointError("the checkpoint has no text_embedding_projection weights; expected an LTX-2 checkpoint.")
    caption_channels = config.get("caption_channels", 3840)
    flat_dim = shapes[projection_key][1]  # caption_channels x (text encoder layers + 1)

    def registers(modality: str) -> int | None:
        key = f"{TRANSFORMER_PREFIX}{modality}_embeddings_connector.learnable_registers"
        return shapes[key][0] if key in shapes else None

    video_heads = config.get("connector_num_attention_heads", 30)
    video_head_dim = config.get("connector_attention_head_dim", 128)
    return {
        "caption_channels": caption_channels,
        "text_proj_in_factor": flat_dim // caption_channels,
        "video_connector_num_attention_heads": video_heads,
        "video_connector_attention_head_dim": video_head_dim,
        "video_connector_num_layers": config.get("connector_num_layers", 2),
        "video_connector_num_learnable_registers": registers("video"),
        "video_gated_attn": config.get("connector_apply_gated_attention", False),
        "audio_connector_num_attention_heads": config.get("audio_connector_num_attention_heads", video_heads),
        "audio_connector_attention_head_dim": config.get("audio_connector_attention_head_dim", video_head_dim),
        "audio_connector_num_layers": config.get("audio_connector_num_layers", config.get("connector_num_layers", 2)),
        "audio_connector_num_learnable_registers": registers("audio"),
        "audio_gated_attn": config.get("connector_apply_gated_attention", False),
        "connector_rope_base_seq_len": config.get("connector_positional_embedding_max_pos", [1])[0],
        "rope_theta": config.get("positional_embedding_theta", 10000.0),
        "rope_double_precision": _rope_double_precision(config),
        "causal_temporal_positioning": False,
        "rope_type": config.get("rope_type", "split"),
        "per_modality_projections": per_modality,
        "video_hidden_dim": config.get("num_attention_heads", 32) * config.get("attention_head_dim", 128),
        "audio_hidden_dim": config.get("audio_num_attention_heads", 32) * config.get("audio_attention_head_dim", 64),
        "proj_bias": any(key.endswith("aggregate_embed.bias") for key in shapes),
    }


VAE_DOWNSAMPLE_TYPES = {
    "compress_space_res": "spatial",
    "compress_time_res": "temporal",
    "compress_all_res": "spatiotemporal",
}
VAE_UPSAMPLE_TYPES = {"compress_space": "spatial", "compress_time": "temporal", "compress_all": "spatiotemporal"}


def _vae_blocks(
    blocks: list, names: dict[str, str], path: Path, side: str
) -> tuple[list[dict], list[tuple[str, dict]]]:
    """Split an official block list [res_x, resample, res_x, ..., resample, res_x] into its res_x blocks and its
    resampling blocks; diffusers' AutoencoderKLLTX2Video can express no other order."""
    blocks = [(name, {"num_layers": params} if isinstance(params, int) else dict(params)) for name, params in blocks]
    res_blocks = [params for name, params in blocks[0::2] if name == "res_x"]
    resamplers = [(name, params) for name, params in blocks[1::2] if name in names]
    if len(blocks) % 2 == 0 or len(res_blocks) != len(blocks[0::2]) or len(resamplers) != len(blocks[1::2]):
        raise CheckpointError(
            f"{str(path)!r}: video VAE {side} blocks {[name for name, _ in blocks]} are not supported; expected "
            f"res_x blocks alternating with one of {', '.join(names)}, starting and ending with res_x."
        )
    return res_blocks, resamplers


def video_vae_kwargs(config: dict, path: Path) -> dict[str, Any]:
    """AutoencoderKLLTX2Video kwargs from the metadata's `vae` section (ltx-core VideoEncoder / ConvVideoDecoder)."""
    class_name = config.get("_class_name", "CausalVideoAutoencoder")
    if class_name != "CausalVideoAutoencoder":
        raise CheckpointError(
            f"{str(path)!r}: video VAE {class_name!r} is not supported; expected CausalVideoAutoencoder."
        )
    for field, value in (("norm_layer", "pixel_norm"), ("latent_log_var", "uniform"), ("dims", 3)):
        if config.get(field, value) != value:
            raise CheckpointError(
                f"{str(path)!r}: video VAE {field}={config[field]!r} is not supported; expected {value!r}."
            )
    latent_channels = config.get("latent_channels", 128)
    patch_size = config.get("patch_size", 4)

    encoder_res, downsamplers = _vae_blocks(config.get("encoder_blocks", []), VAE_DOWNSAMPLE_TYPES, path, "encoder")
    channels, block_out_channels = latent_channels, []
    for _, params in downsamplers:
        channels *= params.get("multiplier", 2)
        block_out_channels.append(channels)
    downsample_type = [VAE_DOWNSAMPLE_TYPES[name] for name, _ in downsamplers]

    decoder_res, upsamplers = _vae_blocks(config.get("decoder_blocks", []), VAE_UPSAMPLE_TYPES, path, "decoder")
    channels, decoder_block_out_channels = config.get("decoder_base_channels", 128), []
    for _, params in upsamplers:
        channels *= params.get("multiplier", 1)
        decoder_block_out_channels.append(channels)
    # diffusers' decoder reverses every per-block tuple into decoding order except `upsample_type`, which it takes
    # in decoding order already; the official list is in encoding order.
    upsample_type = [VAE_UPSAMPLE_TYPES[name] for name, _ in reversed(upsamplers)]
    return {
        "in_channels": config.get("in_channels", 3),
        "out_channels": config.get("out_channels", 3),
        "latent_channels": latent_channels,
        "block_out_channels": tuple(block_out_channels),
        "down_block_types": ("LTX2VideoDownBlock3D",) * len(downsamplers),
        "decoder_block_out_channels": tuple(decoder_block_out_channels),
        "layers_per_block": tuple(params["num_layers"] for params in encoder_res),
        "decoder_layers_per_block": tuple(params["num_layers"] for params in decoder_res),
        "spatio_temporal_scaling": (True,) * len(downsamplers),
        "decoder_spatio_temporal_scaling": (True,) * len(upsamplers),
        "decoder_inject_noise": tuple(params.get("inject_noise", False) for params in decoder_res),
        "downsample_type": tuple(downsample_type),
        "upsample_type": tuple(upsample_type),
        "upsample_residual": tuple(params.get("residual", False) for _, params in upsamplers),
        "upsample_factor": tuple(params.get("multiplier", 1) for _, params in upsamplers),
        # ltx-core's VideoDecoderConfigurator builds a timestep-conditioned decoder when the header omits the key.
        "timestep_conditioning": config.get("timestep_conditioning", True),
        "patch_size": patch_size,
        "patch_size_t": 1,
        "resnet_norm_eps": 1e-6,
        "encoder_causal": True,
        "decoder_causal": config.get("causal_decoder", False),
        # ltx-core's VideoEncoderConfigurator pads the encoder by "spatial_padding_mode" (default zeros) and reads no
        # encoder-specific key; its decoder reads the same key with default reflect. Some configs spell the decoder's
        # "decoder_spatial_padding_mode".
        "encoder_spatial_padding_mode": config.get("spatial_padding_mode", "zeros"),
        "decoder_spatial_padding_mode": config.get(
            "spatial_padding_mode", config.get("decoder_spatial_padding_mode", "reflect")
        ),
        "spatial_compression_ratio": patch_size * 2 ** sum(kind != "temporal" for kind in downsample_type),
        "temporal_compression_ratio": 2 ** sum(kind != "spatial" for kind in downsample_type),
    }


def audio_vae_kwargs(config: dict) -> dict[str, Any]:
    """AutoencoderKLLTX2Audio kwargs from the metadata's `audio_vae` section (ltx-core AudioDecoderConfigurator)."""
    params = config.get("model", {}).get("params", {})
    ddconfig = params.get("ddconfig", {})
    preprocessing = config.get("preprocessing", {})
    stft, mel = preprocessing.get("stft", {}), preprocessing.get("mel", {})
    mel_bins = ddconfig.get("mel_bins") or mel.get("n_mel_channels") or config.get("variables", {}).get("mel_bins")
    attn_resolutions = ddconfig.get("attn_resolutions", [8, 16, 32])
    return {
        "base_channels": ddconfig.get("ch", 128),
        "output_channels": ddconfig.get("out_ch", 2),
        "ch_mult": tuple(ddconfig.get("ch_mult", (1, 2, 4))),
        "num_res_blocks": ddconfig.get("num_res_blocks", 2),
        "attn_resolutions": tuple(attn_resolutions) if attn_resolutions else None,
        "in_channels": ddconfig.get("in_channels", 2),
        "resolution": ddconfig.get("resolution", 256),
        "latent_channels": ddconfig.get("z_channels", 8),
        "norm_type": ddconfig.get("norm_type", "pixel"),
        "causality_axis": ddconfig.get("causality_axis", "height"),
        "dropout": ddconfig.get("dropout", 0.0),
        "mid_block_add_attention": ddconfig.get("mid_block_add_attention", True),
        "sample_rate": params.get("sampling_rate", 16000),
        "mel_hop_length": stft.get("hop_length", 160),
        "is_causal": stft.get("causal", True),
        "mel_bins": mel_bins,
        "double_z": ddconfig.get("double_z", True),
    }


def _generator_kwargs(config: dict, apply_final_activation: bool, in_channels: int) -> dict[str, Any]:
    """One HiFi-GAN / BigVGAN generator (ltx-core `Vocoder`) in LTX2Vocoder's terms."""
    is_amp = config.get("resblock", "1") == "AMP1"
    final_act_fn = None
    if apply_final_activation:
        final_act_fn = "tanh" if config.get("use_tanh_at_final", True) else "clamp"
    return {
        "in_channels": in_channels,
        "hidden_channels": config.get("upsample_initial_channel", 1024),
        "out_channels": 2,
        "upsample_kernel_sizes": list(config.get("upsample_kernel_sizes", [16, 15, 8, 4, 4])),
        "upsample_factors": list(config.get("upsample_rates", [6, 5, 2, 2, 2])),
        "resnet_kernel_sizes": list(config.get("resblock_kernel_sizes", [3, 7, 11])),
        "resnet_dilations": [list(d) for d in config.get("resblock_dilation_sizes", [[1, 3, 5]] * 3)],
        "act_fn": config.get("activation", "snake") if is_amp else "leaky_relu",
        "leaky_relu_negative_slope": 0.1,  # ltx-core LRELU_SLOPE
        "antialias": is_amp,
        "antialias_ratio": 2,  # ltx-core Activation1d defaults
        "antialias_kernel_size": 12,
        "final_act_fn": final_act_fn,
        "final_bias": config.get("use_bias_at_final", True),
    }


def vocoder_kwargs(config: dict, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """LTX2Vocoder (LTX-2.0, flat config) or LTX2VocoderWithBWE (LTX-2.3, `vocoder` + `bwe`) kwargs
    (ltx-core VocoderConfigurator)."""
    if "bwe" not in config:
        generator = _generator_kwargs(config, True, shapes["vocoder.conv_pre.weight"][1])
        return {**generator, "output_sampling_rate": config.get("output_sampling_rate", 24000)}
    bwe = config["bwe"]
    main = _generator_kwargs(config.get("vocoder", {}), True, shapes["vocoder.vocoder.conv_pre.weight"][1])
    extension = _generator_kwargs(bwe, False, shapes["vocoder.bwe_generator.conv_pre.weight"][1])
    return {
        **main,
        **{f"bwe_{name}": value for name, value in extension.items()},
        "filter_length": bwe["n_fft"],
        "hop_length": bwe["hop_length"],
        "window_length": bwe["n_fft"],
        "num_mel_channels": bwe["num_mels"],
        "input_sampling_rate": bwe["input_sampling_rate"],
        "output_sampling_rate": bwe["output_sampling_rate"],
    }


# Full-size configs for files without metadata, from diffusers' scripts/convert_ltx2_to_diffusers.py (2.0, 2.3).
_TRANSFORMER_COMMON: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048,
    "num_layers": 48,
    "caption_channels": 3840,
    "rope_double_precision": True,
    "rope_type": "split",
    "timestep_scale_multiplier": 1000,
    "cross_attn_timestep_scale_multiplier": 1000,
}
_AUDIO_VAE: dict[str, Any] = {
    "base_channels": 128,
    "output_channels": 2,
    "ch_mult": (1, 2, 4),
    "num_res_blocks": 2,
    "attn_resolutions": None,
    "in_channels": 2,
    "resolution": 256,
    "latent_channels": 8,
    "norm_type": "pixel",
    "causality_axis": "height",
    "mid_block_add_attention": False,
    "sample_rate": 16000,
    "mel_hop_length": 160,
    "is_causal": True,
    "mel_bins": 64,
    "double_z": True,
}
_CONNECTORS_COMMON: dict[str, Any] = {
    "caption_channels": 3840,
    "text_proj_in_factor": 49,
    "video_connector_num_learnable_registers": 128,
    "audio_connector_num_learnable_registers": 128,
    "connector_rope_base_seq_len": 4096,
    "rope_double_precision": True,
    "rope_type": "split",
}
_VAE_COMMON: dict[str, Any] = {
    "latent_channels": 128,
    "patch_size": 4,
    "decoder_causal": False,
    "encoder_spatial_padding_mode": "zeros",
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}
FULL_SIZE_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "2.0": {
        "transformer": {**_TRANSFORMER_COMMON, "use_prompt_embeddings": True},
        "connectors": {
            **_CONNECTORS_COMMON,
            "video_connector_num_attention_heads": 30,
            "video_connector_attention_head_dim": 128,
            "video_connector_num_layers": 2,
            "audio_connector_num_attention_heads": 30,
            "audio_connector_attention_head_dim": 128,
            "audio_connector_num_layers": 2,
        },
        "vae": {
            **_VAE_COMMON,
            "block_out_channels": (256, 512, 1024, 2048),
            "decoder_block_out_channels": (256, 512, 1024),
            "layers_per_block": (4, 6, 6, 2, 2),
            "decoder_layers_per_block": (5, 5, 5, 5),
            "decoder_spatial_padding_mode": "reflect",
        },
        "audio_vae": _AUDIO_VAE,
        "vocoder": {"hidden_channels": 1024, "output_sampling_rate": 24000},
    },
    "2.3": {
        "transformer": {
            **_TRANSFORMER_COMMON,
            "gated_attn": True,
            "cross_attn_mod": True,
            "audio_gated_attn": True,
            "audio_cross_attn_mod": True,
            "use_prompt_embeddings": False,
            "perturbed_attn": True,
        },
        "connectors": {
            **_CONNECTORS_COMMON,
            "video_connector_num_attention_heads": 32,
            "video_connector_attention_head_dim": 128,
            "video_connector_num_layers": 8,
            "video_gated_attn": True,
            "audio_connector_num_attention_heads": 32,
            "audio_connector_attention_head_dim": 64,
            "audio_connector_num_layers": 8,
            "audio_gated_attn": True,
            "per_modality_projections": True,
            "video_hidden_dim": 4096,
            "audio_hidden_dim": 2048,
            "proj_bias": True,
        },
        "vae": {
            **_VAE_COMMON,
            "block_out_channels": (256, 512, 1024, 1024),
            "decoder_block_out_channels": (256, 512, 512, 1024),
            "layers_per_block": (4, 6, 4, 2, 2),
            "decoder_layers_per_block": (4, 6, 4, 2, 2),
            "decoder_spatio_temporal_scaling": (True, True, True, True),
            "decoder_inject_noise": (False, False, False, False, False),
            "upsample_type": ("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
            "upsample_residual": (False, False, False, False),
            "upsample_factor": (2, 2, 1, 2),
            "decoder_spatial_padding_mode": "zeros",
        },
        "audio_vae": _AUDIO_VAE,
        # LTX2VocoderWithBWE's own defaults are the LTX-2.3 vocoder (diffusers' conversion script passes the same).
        "vocoder": {},
    },
}
