"""Write tiny checkpoints in the official LTX-2 single-file layout, for the loading tests.

The inverse of `ltx_pipeline.loading`'s conversion, written out rule by rule (not derived from the loader's tables),
so a test that converts back and compares state dicts checks both directions. The layout and metadata follow the
reference: Lightricks ltx-core `model_configurator.py` files (field names, key prefixes) and diffusers'
`scripts/convert_ltx2_to_diffusers.py` (key names).
"""

import json
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKLLTX2Video
from safetensors.torch import save_file

# Config entries the official file cannot express, and why; a round trip may change exactly these.
CONFIG_KEYS_NOT_ROUND_TRIPPED: dict[str, dict[str, str]] = {
    "transformer": {"perturbed_attn": "a runtime attention-processor choice; the loader turns it on for LTX-2.3"},
    "connectors": {"rope_double_precision": "the file has one frequencies_precision for transformer and connectors"},
    "vocoder": {"final_act_fn": "the reference always applies tanh or clamp to the main vocoder's output"},
}


def tiny_2_3_four_stage_vae() -> AutoencoderKLLTX2Video:
    """A tiny video VAE with LTX-2.3's four-stage decoder (temporal-only and spatial-only upsamplers), so the
    `up_blocks.7` / `up_blocks.8` renames are exercised."""
    torch.manual_seed(1)
    return AutoencoderKLLTX2Video(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_block_out_channels=(16, 32, 32, 64),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        decoder_spatio_temporal_scaling=(True, True, True, True),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
        upsample_residual=(False, False, False, False),
        upsample_factor=(2, 2, 1, 2),
        decoder_causal=False,
        decoder_spatial_padding_mode="zeros",
        patch_size=4,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    ).eval()


# --- Keys --------------------------------------------------------------------------------------------------------


def _replace_all(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for new, old in pairs:
        key = key.replace(new, old)
    return key


TRANSFORMER_NAMES = (  # (diffusers, official)
    ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
    ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
    ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
    ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
    ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
    ("norm_q", "q_norm"),
    ("norm_k", "k_norm"),
)
TRANSFORMER_PREFIXES = (  # whole leading module names, longest first
    ("audio_time_embed.", "audio_adaln_single."),
    ("time_embed.", "adaln_single."),
    ("audio_proj_in.", "audio_patchify_proj."),
    ("proj_in.", "patchify_proj."),
    ("audio_prompt_adaln.", "audio_prompt_adaln_single."),
    ("prompt_adaln.", "prompt_adaln_single."),
)


def transformer_key(key: str) -> str:
    for new, old in TRANSFORMER_PREFIXES:
        if key.startswith(new):
            key = old + key[len(new) :]
            break
    return "model.diffusion_model." + _replace_all(key, TRANSFORMER_NAMES)


def connectors_key(key: str) -> str:
    projections = {
        "text_proj_in.": "text_embedding_projection.aggregate_embed.",
        "video_text_proj_in.": "text_embedding_projection.video_aggregate_embed.",
        "audio_text_proj_in.": "text_embedding_projection.audio_aggregate_embed.",
    }
    for new, old in projections.items():
        if key.startswith(new):
            return old + key[len(new) :]  # stored outside the model.diffusion_model prefix (ltx-core key ops)
    modality, rest = key.split("_connector.", 1)
    rest = _replace_all(
        rest, (("transformer_blocks", "transformer_1d_blocks"), ("norm_q", "q_norm"), ("norm_k", "k_norm"))
    )
    return f"model.diffusion_model.{modality}_embeddings_connector.{rest}"


def video_vae_key(key: str, num_down_blocks: int) -> str:
    statistics = {"latents_mean": "mean-of-means", "latents_std": "std-of-means"}
    if key in statistics:
        return f"vae.per_channel_statistics.{statistics[key]}"
    rules = (
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", lambda i: f"encoder.down_blocks.{2 * i + 1}."),
        (r"encoder\.down_blocks\.(\d+)\.", lambda i: f"encoder.down_blocks.{2 * i}."),
        (r"encoder\.mid_block\.", lambda _: f"encoder.down_blocks.{2 * num_down_blocks}."),
        (r"decoder\.mid_block\.", lambda _: "decoder.up_blocks.0."),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda i: f"decoder.up_blocks.{2 * i + 1}."),
        (r"decoder\.up_blocks\.(\d+)\.", lambda i: f"decoder.up_blocks.{2 * i + 2}."),
    )
    for pattern, official in rules:
        match = re.match(pattern, key)
        if match:
            index = int(match.group(1)) if match.groups() else 0
            key = official(index) + key[match.end() :]
            break
    return "vae." + key.replace("resnets", "res_blocks")


def audio_vae_key(key: str) -> str:
    statistics = {"latents_mean": "mean-of-means", "latents_std": "std-of-means"}
    if key in statistics:
        return f"audio_vae.per_channel_statistics.{statistics[key]}"
    return "audio_vae." + key


def vocoder_key(key: str) -> str:
    """LTX-2.3 keys gain one more level (vocoder.vocoder.*, vocoder.bwe_generator.*, vocoder.mel_stft.*)."""
    names = (
        ("conv_in", "conv_pre"),
        ("conv_out", "conv_post"),
        ("resnets", "resblocks"),
        ("upsamplers", "ups"),
        ("act_out", "act_post"),
        ("downsample.filter", "downsample.lowpass.filter"),
    )
    return "vocoder." + _replace_all(key, names)


def official_state_dict(components: dict) -> dict[str, torch.Tensor]:
    """The combined checkpoint's tensors, under official names."""
    vae = components["vae"]
    renamers = {
        "transformer": transformer_key,
        "connectors": connectors_key,
        "vae": lambda key: video_vae_key(key, len(vae.config.block_out_channels)),
        "audio_vae": audio_vae_key,
        "vocoder": vocoder_key,
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, rename in renamers.items():
        for key, tensor in components[name].state_dict().items():
            official = rename(key)
            assert official not in tensors, f"two {name} keys map to {official}"
            tensors[official] = tensor.detach().clone().contiguous()
    # Statistics the real files carry and diffusers drops.
    latent_channels = vae.config.latent_channels
    tensors["vae.per_channel_statistics.channel"] = torch.arange(latent_channels, dtype=torch.float32)
    tensors["vae.per_channel_statistics.mean-of-stds"] = torch.ones(latent_channels)
    return tensors


# --- Metadata config ---------------------------------------------------------------------------------------------


def transformer_section(transformer_config: dict, connectors_config: dict) -> dict:
    t, c = transformer_config, connectors_config
    assert t["gated_attn"] == t["audio_gated_attn"] and t["cross_attn_mod"] == t["audio_cross_attn_mod"]
    section = {
        # Values the reference configurator asserts (check_config_value).
        "dropout": 0.0,
        "attention_bias": True,
        "activation_fn": "gelu-approximate",
        "qk_norm": "rms_norm",
        "standardization_norm": "rms_norm",
        "norm_elementwise_affine": False,
        "positional_embedding_type": "rope",
        "use_audio_video_cross_attention": True,
        "av_cross_ada_norm": True,
        "use_middle_indices_grid": True,
        "num_attention_heads": t["num_attention_heads"],
        "attention_head_dim": t["attention_head_dim"],
        "in_channels": t["in_channels"],
        "out_channels": t["out_channels"],
        "num_layers": t["num_layers"],
        "cross_attention_dim": t["cross_attention_dim"],
        "norm_eps": t["norm_eps"],
        "caption_channels": t["caption_channels"],
        "positional_embedding_theta": t["rope_theta"],
        "positional_embedding_max_pos": [t["pos_embed_max_pos"], t["base_height"], t["base_width"]],
        "timestep_scale_multiplier": t["timestep_scale_multiplier"],
        "audio_num_attention_heads": t["audio_num_attention_heads"],
        "audio_attention_head_dim": t["audio_attention_head_dim"],
        "audio_in_channels": t["audio_in_channels"],
        "audio_out_channels": t["audio_out_channels"],
        "audio_cross_attention_dim": t["audio_cross_attention_dim"],
        "audio_positional_embedding_max_pos": [t["audio_pos_embed_max_pos"]],
        "av_ca_timestep_scale_multiplier": t["cross_attn_timestep_scale_multiplier"],
        "rope_type": t["rope_type"],
        "frequencies_precision": "float64" if t["rope_double_precision"] else "float32",
        "apply_gated_attention": t["gated_attn"],
        "cross_attention_adaln": t["cross_attn_mod"],
        "use_prompt_adaln_single": t["use_prompt_adaln_single"],
        "ff_bias": t["ff_bias"],
        "audio_ff_bias": t["audio_ff_bias"],
        "connector_num_attention_heads": c["video_connector_num_attention_heads"],
        "connector_attention_head_dim": c["video_connector_attention_head_dim"],
        "connector_num_layers": c["video_connector_num_layers"],
        "audio_connector_num_attention_heads": c["audio_connector_num_attention_heads"],
        "audio_connector_attention_head_dim": c["audio_connector_attention_head_dim"],
        "audio_connector_num_layers": c["audio_connector_num_layers"],
        "connector_positional_embedding_max_pos": [c["connector_rope_base_seq_len"]],
        "connector_apply_gated_attention": c["video_gated_attn"],
    }
    if not t["use_prompt_embeddings"]:  # LTX-2.3 "V2" feature extractor: projection before the connectors
        section.update(
            caption_proj_before_connector=True,
            caption_projection_first_linear=False,
            caption_proj_input_norm=False,
            caption_projection_second_linear=False,
        )
    return section


def video_vae_section(config: dict) -> dict:
    encoder_blocks: list = []
    downsample_names = {
        "spatial": "compress_space_res",
        "temporal": "compress_time_res",
        "spatiotemporal": "compress_all_res",
    }
    channels = config["latent_channels"]
    for layers, out_channels, kind in zip(
        config["layers_per_block"], config["block_out_channels"], config["downsample_type"], strict=False
    ):
        encoder_blocks.append(["res_x", {"num_layers": layers}])
        encoder_blocks.append([downsample_names[kind], {"multiplier": out_channels // channels}])
        channels = out_channels
    encoder_blocks.append(["res_x", {"num_layers": config["layers_per_block"][-1]}])

    upsample_names = {"spatial": "compress_space", "temporal": "compress_time", "spatiotemporal": "compress_all"}
    # diffusers lists upsample_type in decoding order, the other decoder tuples (and the official list) in encoding
    # order.
    upsample_types = tuple(reversed(config["upsample_type"]))
    decoder_blocks: list = []
    for index, layers in enumerate(config["decoder_layers_per_block"]):
        decoder_blocks.append(["res_x", {"num_layers": layers, "inject_noise": config["decoder_inject_noise"][index]}])
        if index < len(upsample_types):
            decoder_blocks.append(
                [
                    upsample_names[upsample_types[index]],
                    {"residual": config["upsample_residual"][index], "multiplier": config["upsample_factor"][index]},
                ]
            )
    return {
        "_class_name": "CausalVideoAutoencoder",
        "dims": 3,
        "in_channels": config["in_channels"],
        "out_channels": config["out_channels"],
        "latent_channels": config["latent_channels"],
        "encoder_blocks": encoder_blocks,
        "decoder_blocks": decoder_blocks,
        "decoder_base_channels": config["decoder_block_out_channels"][0] // config["upsample_factor"][0],
        "patch_size": config["patch_size"],
        "norm_layer": "pixel_norm",
        "latent_log_var": "uniform",
        "causal_decoder": config["decoder_causal"],
        "timestep_conditioning": config["timestep_conditioning"],
        "spatial_padding_mode": config["decoder_spatial_padding_mode"],
        "encoder_spatial_padding_mode": config["encoder_spatial_padding_mode"],
    }


def audio_vae_section(config: dict) -> dict:
    return {
        "model": {
            "params": {
                "sampling_rate": config["sample_rate"],
                "ddconfig": {
                    "ch": config["base_channels"],
                    "out_ch": config["output_channels"],
                    "ch_mult": list(config["ch_mult"]),
                    "num_res_blocks": config["num_res_blocks"],
                    "attn_resolutions": list(config["attn_resolutions"] or []),
                    "in_channels": config["in_channels"],
                    "resolution": config["resolution"],
                    "z_channels": config["latent_channels"],
                    "norm_type": config["norm_type"],
                    "causality_axis": config["causality_axis"],
                    "dropout": config["dropout"],
                    "mid_block_add_attention": config["mid_block_add_attention"],
                    "double_z": config["double_z"],
                    "mel_bins": config["mel_bins"],
                },
            }
        },
        "preprocessing": {
            "stft": {"hop_length": config["mel_hop_length"], "causal": config["is_causal"], "filter_length": 1024},
            "mel": {"n_mel_channels": config["mel_bins"]},
        },
    }


def _generator_section(config: dict, prefix: str = "") -> dict:
    is_amp = config[f"{prefix}act_fn"] != "leaky_relu"
    return {
        "resblock": "AMP1" if is_amp else "1",
        "stereo": True,
        "activation": config[f"{prefix}act_fn"] if is_amp else "snake",
        "upsample_initial_channel": config[f"{prefix}hidden_channels"],
        "upsample_rates": list(config[f"{prefix}upsample_factors"]),
        "upsample_kernel_sizes": list(config[f"{prefix}upsample_kernel_sizes"]),
        "resblock_kernel_sizes": list(config[f"{prefix}resnet_kernel_sizes"]),
        "resblock_dilation_sizes": [list(d) for d in config[f"{prefix}resnet_dilations"]],
        "use_tanh_at_final": config[f"{prefix}final_act_fn"] == "tanh",
        "use_bias_at_final": config[f"{prefix}final_bias"],
    }


def vocoder_section(config: dict, with_bwe: bool) -> dict:
    if not with_bwe:
        return {**_generator_section(config), "output_sampling_rate": config["output_sampling_rate"]}
    bwe = {
        **_generator_section(config, "bwe_"),
        "input_sampling_rate": config["input_sampling_rate"],
        "output_sampling_rate": config["output_sampling_rate"],
        "n_fft": config["filter_length"],
        "hop_length": config["hop_length"],
        "num_mels": config["num_mel_channels"],
    }
    assert config["filter_length"] == config["window_length"], "the reference uses n_fft as the window length"
    return {"vocoder": _generator_section(config), "bwe": bwe}


def official_metadata(components: dict, version: str) -> dict[str, str]:
    with_bwe = hasattr(components["vocoder"], "bwe_generator")
    config = {
        "transformer": transformer_section(
            dict(components["transformer"].config), dict(components["connectors"].config)
        ),
        "vae": video_vae_section(dict(components["vae"].config)),
        "audio_vae": audio_vae_section(dict(components["audio_vae"].config)),
        "vocoder": vocoder_section(dict(components["vocoder"].config), with_bwe),
    }
    return {"config": json.dumps(config), "model_version": f"{version}.0"}


def write_official_checkpoint(path: Path, components: dict, version: str, with_metadata: bool = True) -> Path:
    """Save `components` (diffusers modules) as one official-layout `.safetensors` file."""
    metadata = official_metadata(components, version) if with_metadata else None
    save_file(official_state_dict(components), str(path), metadata=metadata)
    return path


def write_spatial_upsampler(path: Path, upsampler: torch.nn.Module) -> Path:
    """Save a latent upsampler the way the official upsampler files are: diffusers' own key names, flat config."""
    config = dict(upsampler.config)
    metadata_config = {
        "in_channels": config["in_channels"],
        "mid_channels": config["mid_channels"],
        "num_blocks_per_stage": config["num_blocks_per_stage"],
        "dims": config["dims"],
        "spatial_upsample": config["spatial_upsample"],
        "temporal_upsample": config["temporal_upsample"],
        "spatial_scale": config["rational_spatial_scale"],
        "rational_resampler": config["use_rational_resampler"],
    }
    tensors = {key: tensor.detach().clone().contiguous() for key, tensor in upsampler.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(metadata_config)})
    return path
