"""Write tiny LTX-2.5 checkpoints in Lightricks' per-component layout, for the loading tests.

The inverse of `ltx_pipeline.loading_2_5`, written rule by rule from the reference (Lightricks/LTX-2 1.2.0: the key
ops in `ltx_core/.../model_configurator.py`, `encoder_configurator.py`, `gemma_assets.py`, `duration_head/`) and
diffusers' `scripts/convert_ltx2_to_diffusers.py`; per-key renames shared with LTX-2.3 come from
`tests.official_layout`. Folders and file names follow the `Lightricks/LTX-2.5` Hub repo.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tests import official_layout

MODEL_VERSION = "2.5.1"
GEMMA_VERSION = "gemma4-tiny-ltx-v1"
FILES = {  # role -> path inside the folder, as `hf download Lightricks/LTX-2.5 --local-dir` lays them out
    "transformer": "diffusion_models/ltx-2.5-22b-distilled-transformer-bf16.safetensors",
    "text_encoder": "text_encoders/gemma4-12b-with-proj-ltx-2.5-bf16.safetensors",
    "video_vae": "vae/ltx-2.5-video-vae-conv-bf16.safetensors",
    "audio_vae": "vae/ltx-2.5-audio-vae-bf16.safetensors",
    "spatial_upsampler": "latent_upscale_models/ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors",
    "duration_head": "model_patches/ltx-2.5-duration-head-bf16.safetensors",
    "video_vae_diffusion": "vae/ltx-2.5-video-vae-bf16.safetensors",
}


# Values the reference's LTXModelConfigurator insists on (`check_config_value`), which real headers carry.
REFERENCE_CHECKED_VALUES = {
    "num_embeds_ada_norm": 1000,
    "use_linear_projection": False,
    "only_cross_attention": False,
    "cross_attention_norm": True,
    "double_self_attention": False,
    "upcast_attention": False,
    "share_ff": False,
}


def _tensors(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().clone().contiguous() for key, tensor in named.items()}


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def transformer_tensors(components: dict) -> dict[str, torch.Tensor]:
    """Transformer and connectors, minus the connectors' input projection (which ships in the text encoder file)."""
    tensors = {official_layout.transformer_key(k): v for k, v in components["transformer"].state_dict().items()}
    for key, tensor in components["connectors"].state_dict().items():
        official = official_layout.connectors_key(key)
        if official.startswith("model.diffusion_model."):
            tensors[official] = tensor
    return _tensors(tensors)


def write_transformer(path: Path, components: dict, model_version: str | None = MODEL_VERSION) -> Path:
    transformer_config = dict(components["transformer"].config)
    section = official_layout.transformer_section(transformer_config, dict(components["connectors"].config))
    section["use_keyframes_abs_pos_embedding"] = transformer_config["use_keyframes_abs_pos_embedding"]
    section.update(REFERENCE_CHECKED_VALUES)
    metadata = {"config": json.dumps({"transformer": section})}
    metadata["gemma_source_checkpoint"] = json.dumps({"gemma_version": GEMMA_VERSION})
    if model_version is not None:
        metadata["model_version"] = model_version
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(transformer_tensors(components), str(path), metadata=metadata)
    return path


def gemma_4_file_key(key: str) -> str:
    """transformers' Gemma 4 name -> the flat name the released file uses (reference
    `_flatten_gemma4_unified_keys_for_comfy`)."""
    return "model." + key.removeprefix("model.language_model.") if key.startswith("model.language_model.") else key


def write_text_encoder(path: Path, components: dict, gemma_version: str = GEMMA_VERSION) -> Path:
    """Gemma 4 weights (flat names, no tied lm_head), the connectors' projection, the tokenizer as byte tensors and
    the HF config as `gemma_config` metadata."""
    encoder = components["text_encoder"]
    tensors = {gemma_4_file_key(k): v for k, v in encoder.state_dict().items() if k != "lm_head.weight"}
    for key, tensor in components["connectors"].state_dict().items():
        official = official_layout.connectors_key(key)
        if official.startswith("text_embedding_projection."):
            tensors[official] = tensor
    with tempfile.TemporaryDirectory() as folder:
        components["tokenizer"].save_pretrained(folder)
        tensors["tokenizer_json"] = _bytes_tensor((Path(folder) / "tokenizer.json").read_bytes())
        for name in ("tokenizer_config.json",):
            tensors[f"hf_asset__{name}"] = _bytes_tensor((Path(folder) / name).read_bytes())
    config = {**encoder.config.to_dict(), "gemma_version": gemma_version}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(tensors), str(path), metadata={"format": "pt", "gemma_config": json.dumps(config)})
    return path


def write_video_vae(path: Path, vae: torch.nn.Module) -> Path:
    """The conv VAE with bare `encoder.` / `decoder.` / `per_channel_statistics.` keys (the standalone file's)."""
    num_down_blocks = len(vae.config.block_out_channels)
    tensors = {
        official_layout.video_vae_key(k, num_down_blocks).removeprefix("vae."): v for k, v in vae.state_dict().items()
    }
    channels = vae.config.latent_channels
    tensors["per_channel_statistics.channel"] = torch.arange(channels, dtype=torch.float32)
    tensors["per_channel_statistics.mean-of-stds"] = torch.ones(channels)
    metadata = {
        "config": json.dumps({"vae": official_layout.video_vae_section(dict(vae.config))}),
        "model_version": MODEL_VERSION,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(tensors), str(path), metadata=metadata)
    return path


def write_audio_vae(path: Path, components: dict) -> Path:
    """Audio VAE and vocoder in one file, with their `audio_vae.` / `vocoder.` prefixes."""
    tensors = {official_layout.audio_vae_key(k): v for k, v in components["audio_vae"].state_dict().items()}
    tensors.update({official_layout.vocoder_key(k): v for k, v in components["vocoder"].state_dict().items()})
    config = {
        "audio_vae": official_layout.audio_vae_section(dict(components["audio_vae"].config)),
        "vocoder": official_layout.vocoder_section(dict(components["vocoder"].config), with_bwe=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(tensors), str(path), metadata={"config": json.dumps(config), "model_version": MODEL_VERSION})
    return path


def write_duration_head(path: Path, head: torch.nn.Module) -> Path:
    """`duration_head.*`, the pooler as `nn.MultiheadAttention` stores it (q, k, v fused into in_proj)."""
    state = dict(head.state_dict())
    pooler = "attention_pooler."
    fused_weight = torch.cat([state.pop(f"{pooler}to_{name}.weight") for name in "qkv"])
    fused_bias = torch.cat([state.pop(f"{pooler}to_{name}.bias") for name in "qkv"])
    state[f"{pooler}cross_attn.in_proj_weight"], state[f"{pooler}cross_attn.in_proj_bias"] = fused_weight, fused_bias
    state[f"{pooler}cross_attn.out_proj.weight"] = state.pop(f"{pooler}to_out.weight")
    state[f"{pooler}cross_attn.out_proj.bias"] = state.pop(f"{pooler}to_out.bias")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors({f"duration_head.{k}": v for k, v in state.items()}), str(path))
    return path


def write_official_folder(
    folder: Path,
    components: dict,
    duration_head: torch.nn.Module | None = None,
    diffusion_decoder: torch.nn.Module | None = None,
) -> Path:
    """Every component file of a tiny LTX-2.5 model under `folder`, in the Hub repo's subfolders."""
    write_transformer(folder / FILES["transformer"], components)
    write_text_encoder(folder / FILES["text_encoder"], components)
    write_video_vae(folder / FILES["video_vae"], components["vae"])
    write_audio_vae(folder / FILES["audio_vae"], components)
    (folder / FILES["spatial_upsampler"]).parent.mkdir(parents=True, exist_ok=True)
    official_layout.write_spatial_upsampler(folder / FILES["spatial_upsampler"], components["latent_upsampler"])
    if duration_head is not None:
        write_duration_head(folder / FILES["duration_head"], duration_head)
    if diffusion_decoder is not None:
        write_diffusion_vae(folder / FILES["video_vae_diffusion"], diffusion_decoder, components["vae"])
    return folder


DIFFUSION_DECODER_NAMES = (  # (diffusers, reference), diffusers' LTX_2_5_DIFFUSION_DECODER_RENAME_DICT reversed
    ("t_embedder.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
    ("t_embedder.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
    (".attn.to_out.0.", ".attn.proj."),
    (".attn.norm_q.", ".attn.q_norm."),
    (".attn.norm_k.", ".attn.k_norm."),
)
GATED = {".attn.to_out.0.": ".gate_msa", ".mlp.w_down.": ".gate_mlp", ".context_proj.": ".gate_ctx"}


def diffusion_decoder_tensors(decoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The decoder as a gated distilled file stores it: `decoder.*` reference names, q/k/v fused, every gated Linear
    divided by a static power-of-two gate stored beside it (so folding it back is exact), and a `coarse_*` preview
    head the loader must drop."""
    state = {
        key.removeprefix("decoder."): value
        for key, value in decoder.state_dict().items()
        if key.startswith("decoder.")
    }
    tensors: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(7)
    gates: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for part, gate_suffix in GATED.items():
            if part in key:
                gate_key = key.split(part)[0] + gate_suffix
                if gate_key not in gates:
                    exponents = torch.randint(-1, 2, (value.shape[0],), generator=generator)
                    gates[gate_key] = 2.0 ** exponents.float()
                gate = gates[gate_key]
                value = value / (gate.unsqueeze(1) if value.ndim == 2 else gate)
        for projection in ("to_q", "to_k", "to_v"):
            if f".attn.{projection}." in key:
                break
        else:
            tensors[_replace_all(key, DIFFUSION_DECODER_NAMES)] = value
    for key in [key for key in state if ".attn.to_q." in key]:
        leaf = key.rsplit(".", 1)[1]
        block = key[: -len(f"to_q.{leaf}")]
        fused = torch.cat([state[f"{block}{projection}.{leaf}"] for projection in ("to_q", "to_k", "to_v")])
        tensors[_replace_all(f"{block}qkv.{leaf}", DIFFUSION_DECODER_NAMES)] = fused
    tensors.update(gates)
    tensors["coarse_head.weight"] = torch.randn(4, 8, generator=generator)
    return {f"decoder.{key}": value for key, value in tensors.items()}


def _replace_all(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for new, old in pairs:
        key = key.replace(new, old)
    return key


def diffusion_vae_section(config: dict) -> dict:
    """`CausalDiffusionVAE` metadata: decoder hyper-parameters under `decoder` (reference
    `_build_diffusion_video_decoder`), `model_output_type` beside it."""
    return {
        "_class_name": "CausalDiffusionVAE",
        "model_output_type": config["decoder_model_output_type"],
        "decoder": {
            "in_channels": config["latent_channels"],
            "out_channels": config["out_channels"],
            "patch_size": config["patch_size"],
            "head_dim": config["decoder_head_dim"],
            "stage_channels": list(config["decoder_stage_channels"]),
            "stage_depths": list(config["decoder_stage_depths"]),
            "stage_kernels": [list(kernel) for kernel in config["decoder_stage_kernels"]],
            "upsamples": [
                [list(stride), reduction]
                for stride, reduction in zip(
                    config["decoder_upsample_strides"], config["decoder_upsample_channel_reductions"], strict=True
                )
            ],
            "stage5_kernel": list(config["decoder_stage5_kernel"]),
            "t_emb_dim": config["decoder_t_emb_dim"],
            "timestep_scale_multiplier": config["decoder_timestep_scale_multiplier"],
            "default_num_inference_steps": config["decoder_num_inference_steps"],
        },
    }


def write_diffusion_vae(path: Path, decoder: torch.nn.Module, vae: torch.nn.Module) -> Path:
    """`vae/ltx-2.5-video-vae-bf16.safetensors`: the conv encoder (bare `encoder.*`), the diffusion decoder, the
    latent statistics."""
    num_down_blocks = len(vae.config.block_out_channels)
    tensors = {
        official_layout.video_vae_key(k, num_down_blocks).removeprefix("vae."): v
        for k, v in vae.state_dict().items()
        if k.startswith("encoder.")
    }
    tensors.update(diffusion_decoder_tensors(decoder))
    tensors["per_channel_statistics.mean-of-means"] = decoder.latents_mean
    tensors["per_channel_statistics.std-of-means"] = decoder.latents_std
    metadata = {
        "config": json.dumps({"vae": diffusion_vae_section(dict(decoder.config))}),
        "model_version": MODEL_VERSION,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(tensors), str(path), metadata=metadata)
    return path
