"""Loading checkpoints into diffusers' LTX-2 classes: official single files, diffusers folders, the embedded model,
and the errors a user sees for the wrong file. Every checkpoint here is tiny and written by the test itself."""

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
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


def test_lt_2_3_four_stage_vae_decoder_loads_back(tmp_path: Path) -> None:
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
