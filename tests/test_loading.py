"""Loading checkpoints into diffusers' LTX-2 classes: official single files, diffusers folders, the embedded model,
and the errors a user sees for the wrong file. Every checkpoint here is tiny and written by the test itself."""

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder, LTX2VocoderWithBWE
from safetensors.torch import save_file

from ltx_pipeline import constants, loading, tiny
from ltx_pipeline.loading import CheckpointError, CheckpointNotFoundError, load_components
from tests import official_layout

WEIGHTED_COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder", "latent_upsampler", "text_encoder")


def assert_same_weights(original: torch.nn.Module, loaded: torch.nn.Module) -> None:
    expected, actual = original.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for key, tensor in expected.items():
        assert torch.equal(tensor, actual[key].to(tensor.dtype)), key


def config_differences(original: Any, loaded: Any) -> set[str]:
    # JSON turns tuples into lists; that is no difference.
    expected, actual = (json.loads(json.dumps(dict(module.config), default=str)) for module in (original, loaded))
    keys = {key for key in expected.keys() | actual.keys() if not key.startswith("_")}
    return {key for key in keys if expected.get(key) != actual.get(key)}


@pytest.fixture(scope="module", params=["2.3", "2.0"])
def official_checkpoint(request, tmp_path_factory) -> dict:
    """Tiny components, and the same weights written as an official single file, upsampler file and Gemma folder."""
    version = request.param
    folder = tmp_path_factory.mktemp(f"official-{version}")
    components = tiny.build_tiny_components(version)
    text_encoder_folder = folder / "gemma"
    components["text_encoder"].save_pretrained(text_encoder_folder)
    components["tokenizer"].save_pretrained(text_encoder_folder)
    return {
        "version": version,
        "components": components,
        "file": official_layout.write_official_checkpoint(
            folder / f"ltx-{version}-22b-distilled.safetensors", components, version
        ),
        "upsampler": official_layout.write_spatial_upsampler(
            folder / "upsampler.safetensors", components["latent_upsampler"]
        ),
        "text_encoder": text_encoder_folder,
        "folder": folder,
    }


def load_official(checkpoint: dict, file: Path | None = None, **kwargs) -> loading.LoadedModel:
    return load_components(
        file or checkpoint["file"],
        spatial_upsampler=str(checkpoint["upsampler"]),
        text_encoder=str(checkpoint["text_encoder"]),
        torch_dtype=kwargs.pop("torch_dtype", torch.float32),
        **kwargs,
    )


# --- Official single files ---------------------------------------------------------------------------------------


def test_official_single_file_loads_back_bit_exact(official_checkpoint: dict) -> None:
    loaded = load_official(official_checkpoint)
    original = official_checkpoint["components"]
    assert set(loaded.components) == set(loading.COMPONENT_NAMES)
    for name in WEIGHTED_COMPONENTS:
        assert_same_weights(original[name], loaded.components[name])
    for name, not_round_tripped in official_layout.CONFIG_KEYS_NOT_ROUND_TRIPPED.items():
        assert config_differences(original[name], loaded.components[name]) <= set(not_round_tripped), name
    for name in ("vae", "audio_vae", "latent_upsampler"):
        assert config_differences(original[name], loaded.components[name]) == set(), name
    assert loaded.version == official_checkpoint["version"]
    assert loaded.variant == "distilled"
    assert loaded.is_random is False
    assert official_checkpoint["file"].name in loaded.label and f"LTX-{loaded.version}" in loaded.label
    expected_vocoder = "LTX2VocoderWithBWE" if loaded.version == "2.3" else "LTX2Vocoder"
    assert type(loaded.components["vocoder"]).__name__ == expected_vocoder
    prompt = "a red ball bounces on a wooden floor"
    assert loaded.components["tokenizer"](prompt).input_ids == original["tokenizer"](prompt).input_ids


def test_official_single_file_in_bfloat16_keeps_the_vocoder_in_float32(official_checkpoint: dict) -> None:
    loaded = load_official(official_checkpoint, torch_dtype=torch.bfloat16)
    assert next(loaded.components["transformer"].parameters()).dtype == torch.bfloat16
    assert next(loaded.components["vae"].parameters()).dtype == torch.bfloat16
    assert next(loaded.components["vocoder"].parameters()).dtype == torch.float32
    assert not any(p.is_meta for p in loaded.components["transformer"].parameters())


def test_dev_file_name_gives_the_dev_variant(official_checkpoint: dict, tmp_path: Path) -> None:
    dev_file = tmp_path / "ltx-2.3-22b-dev.safetensors"
    dev_file.symlink_to(official_checkpoint["file"])
    assert load_official(official_checkpoint, dev_file).variant == "dev"


def test_ltx_2_3_four_stage_vae_decoder_loads_back(tmp_path: Path) -> None:
    components = tiny.build_tiny_components("2.3")
    components["vae"] = official_layout.tiny_2_3_four_stage_vae()
    file = official_layout.write_official_checkpoint(tmp_path / "ltx-2.3-22b-dev.safetensors", components, "2.3")
    components["text_encoder"].save_pretrained(tmp_path / "gemma")
    components["tokenizer"].save_pretrained(tmp_path / "gemma")
    upsampler = official_layout.write_spatial_upsampler(tmp_path / "up.safetensors", components["latent_upsampler"])
    loaded = load_components(
        file, spatial_upsampler=str(upsampler), text_encoder=str(tmp_path / "gemma"), torch_dtype=torch.float32
    )
    assert_same_weights(components["vae"], loaded.components["vae"])
    assert config_differences(components["vae"], loaded.components["vae"]) == set()
    latents = torch.randn(1, 8, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = components["vae"].decode(latents).sample
        actual = loaded.components["vae"].decode(latents).sample
    assert expected.shape == (1, 3, 9, 64, 64)
    assert torch.equal(expected, actual)


# --- Diffusers-format folders and the embedded model ---------------------------------------------------------------


def save_diffusers_folder(components: dict, folder: Path) -> Path:
    model_index = {"_class_name": "LTX2Pipeline"}
    for name, component in components.items():
        component.save_pretrained(folder / name)
        model_index[name] = ["diffusers", type(component).__name__]
    (folder / "model_index.json").write_text(json.dumps(model_index))
    return folder


def test_default_dtype_is_float32_without_a_gpu_and_bf16_when_asked() -> None:
    # The embedded model is stored in bf16; most CPUs compute bf16 far slower than float32.
    default = load_components("embedded")
    expected = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    assert next(default.components["transformer"].parameters()).dtype == expected
    asked = load_components("embedded", torch_dtype=torch.bfloat16)
    assert next(asked.components["transformer"].parameters()).dtype == torch.bfloat16
    assert next(asked.components["vocoder"].parameters()).dtype == torch.float32


@pytest.mark.parametrize("version", ["2.3", "2.0"])
def test_diffusers_folder_round_trip(version: str, tmp_path: Path) -> None:
    components = tiny.build_tiny_components(version)
    folder = save_diffusers_folder(components, tmp_path / f"LTX-{version}-Distilled-Diffusers")
    loaded = load_components(folder, torch_dtype=torch.float32)
    for name in WEIGHTED_COMPONENTS:
        assert_same_weights(components[name], loaded.components[name])
        if name != "text_encoder":
            assert config_differences(components[name], loaded.components[name]) == set(), name
    assert loaded.version == version
    assert loaded.variant == "distilled"
    assert config_differences(components["scheduler"], loaded.components["scheduler"]) == set()


def test_embedded_falls_back_to_random_tiny_model_when_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loading, "EMBEDDED_MODEL_DIR", tmp_path / "no-embedded-model")
    with caplog.at_level(logging.WARNING, logger="ltx_pipeline.loading"):
        loaded = load_components(constants.EMBEDDED_MODEL_NAME, torch_dtype=torch.float32)
    assert loaded.is_random is True
    assert loaded.label == tiny.RANDOM_MODEL_LABEL
    assert loaded.version == "2.3"
    assert set(loaded.components) == set(loading.COMPONENT_NAMES)
    assert "RANDOM" in caplog.text and "no-embedded-model" in caplog.text


def test_embedded_loads_the_shipped_folder_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    components = tiny.build_tiny_components("2.3", seed=3)
    monkeypatch.setattr(loading, "EMBEDDED_MODEL_DIR", save_diffusers_folder(components, tmp_path / "embedded"))
    loaded = load_components(constants.EMBEDDED_MODEL_NAME, torch_dtype=torch.float32)
    assert loaded.is_random is False
    assert loaded.label == constants.EMBEDDED_MODEL_LABEL
    assert_same_weights(components["transformer"], loaded.components["transformer"])


# --- Errors: each names the file and what was expected ------------------------------------------------------------


def test_missing_path_is_named() -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"/no/such/dir/ltx\.safetensors.*not found"):
        load_components("/no/such/dir/ltx.safetensors")


def test_not_a_safetensors_file(tmp_path: Path) -> None:
    file = tmp_path / "ltx-2.3-22b-distilled.safetensors"
    file.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"ltx-2\.3-22b-distilled\.safetensors.*is not a safetensors file"):
        load_components(file)


def test_standalone_vae_file_is_recognised(tmp_path: Path) -> None:
    file = tmp_path / "video_vae.safetensors"
    save_file({"decoder.conv_in.conv.weight": torch.zeros(2), "encoder.conv_in.conv.weight": torch.zeros(2)}, file)
    with pytest.raises(CheckpointError, match=r"video_vae\.safetensors.*standalone VAE file.*model\.diffusion_model"):
        load_components(file)


def test_lora_passed_as_model(tmp_path: Path) -> None:
    file = tmp_path / "ltx-2.3-22b-distilled-lora-384.safetensors"
    save_file({"diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 2)}, file)
    with pytest.raises(CheckpointError, match=r"distilled-lora-384\.safetensors.* is a LoRA file.*not a model"):
        load_components(file)


def test_upsampler_passed_as_model(official_checkpoint: dict) -> None:
    with pytest.raises(CheckpointError, match=r"upsampler\.safetensors.*spatial upsampler.*model\.diffusion_model"):
        load_components(official_checkpoint["upsampler"])


def test_non_upsampler_passed_as_spatial_upsampler(official_checkpoint: dict) -> None:
    with pytest.raises(CheckpointError, match=r"`spatial_upsampler`.*distilled\.safetensors.*not a spatial upsampler"):
        load_components(
            official_checkpoint["file"],
            spatial_upsampler=str(official_checkpoint["file"]),
            text_encoder=str(official_checkpoint["text_encoder"]),
        )


def rewrite(source: Path, target: Path, edit) -> Path:
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    edit(tensors, metadata)
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_missing_keys_are_listed(official_checkpoint: dict, tmp_path: Path) -> None:
    missing = "model.diffusion_model.transformer_blocks.1.attn1.to_q.weight"
    file = rewrite(official_checkpoint["file"], tmp_path / "ltx-broken.safetensors", lambda t, m: t.pop(missing))
    with pytest.raises(
        CheckpointError,
        match=r"ltx-broken\.safetensors.*transformer.*Missing keys: transformer_blocks\.1\.attn1\.to_q\.weight",
    ):
        load_official(official_checkpoint, file)


def test_unexpected_keys_are_listed_with_their_file_names(official_checkpoint: dict, tmp_path: Path) -> None:
    extra = "model.diffusion_model.transformer_blocks.9.attn1.to_q.weight"
    file = rewrite(
        official_checkpoint["file"], tmp_path / "ltx-extra.safetensors", lambda t, m: t.update({extra: torch.zeros(1)})
    )
    with pytest.raises(
        CheckpointError, match=r"ltx-extra\.safetensors.*Unexpected keys.*<- " + extra.replace(".", r"\.")
    ):
        load_official(official_checkpoint, file)


def test_file_without_config_uses_full_size_presets_and_says_what_does_not_fit(
    official_checkpoint: dict, tmp_path: Path
) -> None:
    file = rewrite(official_checkpoint["file"], tmp_path / "ltx-no-config.safetensors", lambda t, m: m.pop("config"))
    with pytest.raises(
        CheckpointError,
        match=r"ltx-no-config\.safetensors.*do not match diffusers' .* Missing keys: transformer_blocks\.\d+\..*in all\)",
    ):
        load_official(official_checkpoint, file)


def test_unsupported_model_version(official_checkpoint: dict, tmp_path: Path) -> None:
    file = rewrite(
        official_checkpoint["file"], tmp_path / "ltx-2.5.safetensors", lambda t, m: m.update(model_version="2.5.0")
    )
    with pytest.raises(
        CheckpointError, match=r"ltx-2\.5\.safetensors.*model_version '2\.5\.0'.*LTX-2\.3 and LTX-2\.0"
    ):
        load_official(official_checkpoint, file)


def test_hub_repo_that_cannot_be_downloaded_says_how_to_use_a_local_folder() -> None:
    with pytest.raises(
        CheckpointNotFoundError, match=r"Download of diffusers repo 'no-such-owner/no-such-repo'.*failed.*local folder"
    ):
        load_components("no-such-owner/no-such-repo", local_files_only=True)


def test_hub_file_that_cannot_be_downloaded_says_how_to_use_a_local_file() -> None:
    with pytest.raises(
        CheckpointNotFoundError, match=r"ltx-2\.3-22b-distilled\.safetensors.*failed.*\.safetensors file instead"
    ):
        load_components("no-such-owner/no-such-repo/ltx-2.3-22b-distilled.safetensors", local_files_only=True)


def test_diffusers_folder_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"has no model_index\.json.*diffusers-format"):
        load_components(tmp_path)


def test_diffusers_folder_missing_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"lacks the subfolder\(s\) transformer, vae, audio_vae"):
        load_components(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, r"`model` must be"),
        ({"model": "embedded", "torch_dtype": torch.int8}, r"`torch_dtype` must be a floating torch dtype.*int8"),
        ({"model": "embedded", "text_encoder": ""}, r"`text_encoder` must be a path or Hub id"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_components(**kwargs)


def test_weights_of_the_wrong_shape_are_listed(official_checkpoint: dict, tmp_path: Path) -> None:
    def widen_audio_heads(tensors: dict, metadata: dict) -> None:
        config = json.loads(metadata["config"])
        config["transformer"]["audio_attention_head_dim"] *= 2
        metadata["config"] = json.dumps(config)

    file = rewrite(official_checkpoint["file"], tmp_path / "ltx-wrong-shape.safetensors", widen_audio_heads)
    with pytest.raises(CheckpointError, match=r"ltx-wrong-shape\.safetensors.*other shapes.*\(expected \("):
        load_official(official_checkpoint, file)


def test_missing_relative_file_is_not_mistaken_for_a_hub_repo() -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"'models/ltx-2\.3-22b-dev\.safetensors' was not found"):
        load_components("models/ltx-2.3-22b-dev.safetensors")


def test_spatial_upsampler_from_a_diffusers_folder(official_checkpoint: dict, tmp_path: Path) -> None:
    upsampler = official_checkpoint["components"]["latent_upsampler"]
    upsampler.save_pretrained(tmp_path / "latent_upsampler")
    loaded = load_components(
        official_checkpoint["file"],
        spatial_upsampler=str(tmp_path),
        text_encoder=str(official_checkpoint["text_encoder"]),
        torch_dtype=torch.float32,
    )
    assert_same_weights(upsampler, loaded.components["latent_upsampler"])
    scheduler_config = loaded.components["scheduler"].config
    assert {key: scheduler_config[key] for key in constants.SCHEDULER_CONFIG} == constants.SCHEDULER_CONFIG


# --- Configs from real headers agree with diffusers' own conversion ----------------------------------------------
# The loader derives diffusers configs from the `config` JSON in the file header. These tests feed it the header
# configs of the real files (LTX-2.3: as reproduced in mlx-video's converter `build_embedded_config("2.3")`; LTX-2.0:
# the sections published by projects that read the ltx-2-19b-dev header, plus ltx-core's 2.0 VAE block lists) and
# compare with the full-size configs diffusers' scripts/convert_ltx2_to_diffusers.py writes. The real files cannot be
# downloaded here; this is the check that does not depend on our own writer.

REAL_2_3_HEADER_CONFIG = {
    "transformer": {
        "attention_head_dim": 128,
        "caption_channels": 3840,
        "cross_attention_dim": 4096,
        "in_channels": 128,
        "norm_eps": 1e-6,
        "num_attention_heads": 32,
        "num_layers": 48,
        "out_channels": 128,
        "audio_num_attention_heads": 32,
        "audio_attention_head_dim": 64,
        "audio_out_channels": 128,
        "audio_cross_attention_dim": 2048,
        "audio_positional_embedding_max_pos": [20],
        "connector_attention_head_dim": 128,
        "connector_num_attention_heads": 32,
        "connector_num_layers": 8,
        "connector_positional_embedding_max_pos": [4096],
        "connector_num_learnable_registers": 128,
        "apply_gated_attention": True,
        "connector_apply_gated_attention": True,
        "caption_projection_first_linear": False,
        "caption_projection_second_linear": False,
        "caption_proj_input_norm": False,
        "caption_proj_before_connector": True,
        "audio_connector_attention_head_dim": 64,
        "audio_connector_num_attention_heads": 32,
        "cross_attention_adaln": True,
        "rope_type": "split",
        "frequencies_precision": "float64",
        "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000.0,
    },
    "vae": {
        "_class_name": "CausalVideoAutoencoder",
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 128,
        "patch_size": 4,
        "norm_layer": "pixel_norm",
        "spatial_padding_mode": "zeros",
        "timestep_conditioning": False,
        "decoder_blocks": [
            ["res_x", {"num_layers": 4}],
            ["compress_space", {"multiplier": 2}],
            ["res_x", {"num_layers": 6}],
            ["compress_time", {"multiplier": 2}],
            ["res_x", {"num_layers": 4}],
            ["compress_all", {"multiplier": 1}],
            ["res_x", {"num_layers": 2}],
            ["compress_all", {"multiplier": 2}],
            ["res_x", {"num_layers": 2}],
        ],
        "encoder_blocks": [
            ["res_x", {"num_layers": 4}],
            ["compress_space_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 6}],
            ["compress_time_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 4}],
            ["compress_all_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 2}],
            ["compress_all_res", {"multiplier": 1}],
            ["res_x", {"num_layers": 2}],
        ],
    },
    "audio_vae": {
        "model": {
            "params": {
                "ddconfig": {
                    "double_z": True,
                    "mel_bins": 64,
                    "z_channels": 8,
                    "resolution": 256,
                    "in_channels": 2,
                    "out_ch": 2,
                    "ch": 128,
                    "ch_mult": [1, 2, 4],
                    "num_res_blocks": 2,
                    "dropout": 0.0,
                    "mid_block_add_attention": False,
                    "norm_type": "pixel",
                    "causality_axis": "height",
                },
                "sampling_rate": 16000,
            }
        }
    },
    "vocoder": {
        "vocoder": {
            "upsample_initial_channel": 1536,
            "resblock": "AMP1",
            "upsample_rates": [5, 2, 2, 2, 2, 2],
            "resblock_kernel_sizes": [3, 7, 11],
            "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "stereo": True,
            "use_tanh_at_final": False,
            "activation": "snakebeta",
            "use_bias_at_final": False,
        },
        "bwe": {
            "upsample_initial_channel": 512,
            "resblock": "AMP1",
            "upsample_rates": [6, 5, 2, 2, 2],
            "resblock_kernel_sizes": [3, 7, 11],
            "upsample_kernel_sizes": [12, 11, 4, 4, 4],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "stereo": True,
            "use_tanh_at_final": False,
            "activation": "snakebeta",
            "use_bias_at_final": False,
            "apply_final_activation": False,
            "input_sampling_rate": 16000,
            "output_sampling_rate": 48000,
            "hop_length": 80,
            "n_fft": 512,
            "win_size": 512,
            "num_mels": 64,
        },
    },
}
REAL_2_3_SHAPES = {  # the tensors whose shapes the loader reads
    "text_embedding_projection.video_aggregate_embed.weight": (4096, 188160),
    "text_embedding_projection.video_aggregate_embed.bias": (4096,),
    "text_embedding_projection.audio_aggregate_embed.weight": (2048, 188160),
    "text_embedding_projection.audio_aggregate_embed.bias": (2048,),
    "model.diffusion_model.video_embeddings_connector.learnable_registers": (128, 4096),
    "model.diffusion_model.audio_embeddings_connector.learnable_registers": (128, 2048),
    "vocoder.vocoder.conv_pre.weight": (1536, 128, 7),
    "vocoder.bwe_generator.conv_pre.weight": (512, 128, 7),
}

REAL_2_0_HEADER_CONFIG = {
    "transformer": {
        "rope_type": "split",
        "frequencies_precision": "float64",
        "positional_embedding_theta": 10000.0,
        "timestep_scale_multiplier": 1000,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "av_ca_timestep_scale_multiplier": 1000.0,
        "attention_head_dim": 128,
        "num_attention_heads": 32,
        "audio_attention_head_dim": 64,
        "audio_num_attention_heads": 32,
        "caption_channels": 3840,
        "connector_positional_embedding_max_pos": [4096],
    },
    "vae": {
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 128,
        "encoder_spatial_padding_mode": "zeros",
        "decoder_spatial_padding_mode": "reflect",
        "timestep_conditioning": False,
        "encoder_blocks": [
            ["res_x", {"num_layers": 4}],
            ["compress_space_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 6}],
            ["compress_time_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 6}],
            ["compress_all_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 2}],
            ["compress_all_res", {"multiplier": 2}],
            ["res_x", {"num_layers": 2}],
        ],
        "decoder_blocks": [
            ["res_x", {"num_layers": 5, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 5, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 5, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 5, "inject_noise": False}],
        ],
    },
    "audio_vae": {
        "model": {
            "params": {
                "ddconfig": {
                    "double_z": True,
                    "mel_bins": 64,
                    "z_channels": 8,
                    "attn_resolutions": [],
                    "mid_block_add_attention": False,
                    "norm_type": "pixel",
                    "causality_axis": "height",
                }
            }
        },
        "preprocessing": {"stft": {"filter_length": 1024, "hop_length": 160}, "mel": {"n_mel_channels": 64}},
    },
    "vocoder": {
        "resblock": "1",
        "stereo": True,
        "upsample_initial_channel": 1024,
        "upsample_rates": [6, 5, 2, 2, 2],
        "upsample_kernel_sizes": [16, 15, 8, 4, 4],
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    },
}
REAL_2_0_SHAPES = {
    "text_embedding_projection.aggregate_embed.weight": (3840, 188160),
    "model.diffusion_model.video_embeddings_connector.learnable_registers": (128, 3840),
    "model.diffusion_model.audio_embeddings_connector.learnable_registers": (128, 3840),
    "vocoder.conv_pre.weight": (1024, 128, 7),
}

# Where the loader follows the reference implementation instead of diffusers' conversion, on purpose.
ALLOWED_DIFFERENCES = {
    # ltx-core applies clamp(-1, 1) to the main vocoder's output (use_tanh_at_final=False); diffusers passes None.
    ("2.3", "vocoder"): {"final_act_fn"},
    # ltx-core's default attention resolutions (8, 16, 32) are never reached at resolution 256: no module differs.
    ("2.3", "audio_vae"): {"attn_resolutions"},
}
COMPONENT_CLASSES = {
    "transformer": LTX2VideoTransformer3DModel,
    "connectors": LTX2TextConnectors,
    "vae": AutoencoderKLLTX2Video,
    "audio_vae": AutoencoderKLLTX2Audio,
}


def full_config(cls: type, kwargs: dict) -> dict:
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return json.loads(json.dumps({**defaults, **kwargs}))


@pytest.mark.parametrize(
    ("version", "header_config", "shapes"),
    [("2.3", REAL_2_3_HEADER_CONFIG, REAL_2_3_SHAPES), ("2.0", REAL_2_0_HEADER_CONFIG, REAL_2_0_SHAPES)],
)
def test_real_header_configs_give_diffusers_own_full_size_configs(
    version: str, header_config: dict, shapes: dict
) -> None:
    derived = loading._configs_from_file(shapes, header_config, version, Path(f"ltx-{version}.safetensors"))
    vocoder_class = LTX2VocoderWithBWE if version == "2.3" else LTX2Vocoder
    for name, cls in {**COMPONENT_CLASSES, "vocoder": vocoder_class}.items():
        expected = full_config(cls, loading.FULL_SIZE_PRESETS[version][name])
        actual = full_config(cls, derived[name])
        different = {key for key in expected if expected[key] != actual[key]}
        assert different == ALLOWED_DIFFERENCES.get((version, name), set()), (
            name,
            {k: (expected[k], actual[k]) for k in different},
        )


@pytest.mark.parametrize(
    ("version", "header_config", "shapes"),
    [("2.3", REAL_2_3_HEADER_CONFIG, REAL_2_3_SHAPES), ("2.0", REAL_2_0_HEADER_CONFIG, REAL_2_0_SHAPES)],
)
def test_full_size_official_key_layout_fits_modules_built_from_the_header(
    version: str, header_config: dict, shapes: dict
) -> None:
    """Full size, no weights: diffusers' full-size modules on the meta device, written under official names, must
    map back onto modules built from the real header config, key for key and shape for shape."""
    classes = {**COMPONENT_CLASSES, "vocoder": LTX2VocoderWithBWE if version == "2.3" else LTX2Vocoder}
    with init_empty_weights():
        full_size = {name: cls(**loading.FULL_SIZE_PRESETS[version][name]) for name, cls in classes.items()}
    official_shapes = {
        key: tuple(tensor.shape) for key, tensor in official_layout.official_state_dict(full_size).items()
    }
    for key, shape in shapes.items():  # the real shapes the header config is read with
        assert official_shapes[key] == shape, key
    path = Path(f"ltx-{version}-full-size.safetensors")
    configs = loading._configs_from_file(official_shapes, header_config, version, path)
    mappings = loading._official_key_mappings(list(official_shapes), version, path)
    parameters = {}
    for name, cls in classes.items():
        with init_empty_weights():
            module = cls(**configs[name])
        loading.check_weights_fit(module, mappings[name], official_shapes, path, name)
        parameters[name] = sum(parameter.numel() for parameter in module.parameters())
    if version == "2.3":  # sizes of the real LTX-2.3 components (shared/REFERENCE.md), at the precision given there
        rounded = {name: round(count / 1e9, 2) for name, count in parameters.items()}
        assert rounded == {"transformer": 18.99, "connectors": 3.17, "vae": 0.73, "audio_vae": 0.05, "vocoder": 0.13}
        assert round(parameters["audio_vae"] / 1e6) == 53 and round(parameters["vocoder"] / 1e6) == 129


def test_text_encoder_folder_that_is_not_gemma(official_checkpoint: dict, tmp_path: Path) -> None:
    empty_folder = tmp_path / "empty-folder"
    empty_folder.mkdir()
    with pytest.raises(CheckpointError, match=r"`text_encoder` folder .*empty-folder.*not be loaded as a Gemma-3"):
        load_components(
            official_checkpoint["file"],
            spatial_upsampler=str(official_checkpoint["upsampler"]),
            text_encoder=str(empty_folder),
        )


def test_file_name_without_variant_is_treated_as_dev_with_a_warning(
    official_checkpoint: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    renamed = tmp_path / "my-finetune.safetensors"
    renamed.symlink_to(official_checkpoint["file"])
    with caplog.at_level(logging.WARNING, logger="ltx_pipeline.loading"):
        assert load_official(official_checkpoint, renamed).variant == "dev"
    assert "my-finetune.safetensors" in caplog.text and "neither 'distilled' nor 'dev'" in caplog.text
