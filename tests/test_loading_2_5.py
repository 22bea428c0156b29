"""Loading LTX-2.5: Lightricks' per-component files (a downloaded folder, a flat folder, the transformer file alone),
a diffusers-format folder, the version it is detected as, and the errors for incomplete or mismatched files. Every
checkpoint is tiny and written by the test itself (tests/official_layout_2_5.py)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import LTX2VideoTransformer3DModel
from diffusers.models.autoencoders.ltx2_diffusion_decoder import LTX2VideoDiffusionDecoderModel
from diffusers.pipelines.ltx2 import LTX2DurationHead, LTX2TextConnectors

from ltx_pipeline import loading, loading_2_5, tiny, versions
from ltx_pipeline.loading import CheckpointError, CheckpointNotFoundError, load_components
from tests import official_layout_2_5

WEIGHTED_COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder", "latent_upsampler", "text_encoder")
PROMPT = "a small red ball bounces on a wooden floor"


def assert_same_weights(original: torch.nn.Module, loaded: torch.nn.Module) -> None:
    expected, actual = original.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for key, tensor in expected.items():
        assert torch.equal(tensor, actual[key].to(tensor.dtype)), key


@pytest.fixture(scope="module")
def tiny_2_5() -> dict:
    decoder = tiny.build_tiny_diffusion_decoder()
    with torch.no_grad():  # statistics other than the defaults, so reading them is checked
        decoder.latents_mean.normal_(generator=torch.Generator().manual_seed(3))
        decoder.latents_std.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(4))
    return {
        "components": tiny.build_tiny_components("2.5"),
        "duration_head": tiny.build_tiny_duration_head(),
        "diffusion_decoder": decoder,
    }


@pytest.fixture(scope="module")
def official_folder(tiny_2_5: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("official") / "ltx-2.5"
    return official_layout_2_5.write_official_folder(
        folder, tiny_2_5["components"], tiny_2_5["duration_head"], tiny_2_5["diffusion_decoder"]
    )


def copy_folder(folder: Path, destination: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(folder, destination)
    for role in drop:
        (destination / official_layout_2_5.FILES[role]).unlink()
    return destination


# --- Per-component files -------------------------------------------------------------------------------------------


def test_official_folder_loads_back_bit_exact(tiny_2_5: dict, official_folder: Path) -> None:
    loaded = load_components(official_folder, torch_dtype=torch.float32)
    for name in WEIGHTED_COMPONENTS:
        assert_same_weights(tiny_2_5["components"][name], loaded.components[name])
    assert_same_weights(tiny_2_5["duration_head"], loaded.duration_head)
    # Gates folded back, q/k/v split, the coarse preview head dropped, statistics read: the very same decoder.
    assert_same_weights(tiny_2_5["diffusion_decoder"], loaded.diffusion_decoder)
    loaded_config, config = (
        {key: value for key, value in module.config.items() if not key.startswith("_")}
        for module in (loaded.diffusion_decoder, tiny_2_5["diffusion_decoder"])
    )
    assert loaded_config == config
    assert (loaded.version, loaded.variant) == ("2.5", "distilled")
    assert loaded.label == "LTX-2.5 distilled (ltx-2.5-22b-distilled-transformer-bf16.safetensors)"
    transformer = loaded.components["transformer"]
    assert transformer.config.ff_bias is False and transformer.config.use_keyframes_abs_pos_embedding is True
    # The embedded tokenizer splits a prompt exactly as the original does.
    assert loaded.components["tokenizer"](PROMPT).input_ids == tiny_2_5["components"]["tokenizer"](PROMPT).input_ids


def test_the_loaded_text_encoder_gives_the_original_prompt_embedding(tiny_2_5: dict, official_folder: Path) -> None:
    # lm_head is not stored (tied to the embeddings); the hidden states the connectors consume must still match.
    loaded = load_components(official_folder, torch_dtype=torch.float32)
    input_ids = torch.tensor([[2, 40, 41, 42, 43]])
    original, reloaded = tiny_2_5["components"]["text_encoder"], loaded.components["text_encoder"]
    with torch.no_grad():
        expected = original(input_ids=input_ids, output_hidden_states=True)
        actual = reloaded(input_ids=input_ids, output_hidden_states=True)
    assert len(actual.hidden_states) == original.config.text_config.num_hidden_layers + 1
    for expected_layer, actual_layer in zip(expected.hidden_states, actual.hidden_states, strict=True):
        assert torch.equal(expected_layer, actual_layer)
    assert torch.equal(expected.logits, actual.logits)


def test_transformer_file_finds_the_other_files_of_its_download(official_folder: Path) -> None:
    transformer_file = official_folder / official_layout_2_5.FILES["transformer"]
    loaded = load_components(transformer_file, torch_dtype=torch.float32)
    assert loaded.version == "2.5"
    assert loaded.duration_head is not None
    assert loaded.name == str(transformer_file)


def test_flat_folder_of_renamed_files_is_recognised_by_content(official_folder: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for index, role in enumerate(official_layout_2_5.FILES):
        shutil.copy(official_folder / official_layout_2_5.FILES[role], flat / f"part-{index}-ltx-2.5-dev.safetensors")
    files = loading_2_5.find_component_files(flat)
    attributes = {"video_vae_diffusion": "diffusion_vae"}
    roles = {role: getattr(files, attributes.get(role, role)).name for role in official_layout_2_5.FILES}
    assert roles == {role: f"part-{index}-ltx-2.5-dev.safetensors" for index, role in enumerate(roles)}
    assert load_components(flat, torch_dtype=torch.float32).variant == "dev"


def test_duration_head_is_optional(official_folder: Path, tmp_path: Path) -> None:
    folder = copy_folder(official_folder, tmp_path / "no-head", drop=("duration_head",))
    loaded = load_components(folder, torch_dtype=torch.float32)
    assert loaded.version == "2.5" and loaded.duration_head is None


def test_bfloat16_keeps_the_vocoder_in_float32(official_folder: Path) -> None:
    loaded = load_components(official_folder, torch_dtype=torch.bfloat16)
    assert next(loaded.components["transformer"].parameters()).dtype == torch.bfloat16
    assert next(loaded.components["text_encoder"].parameters()).dtype == torch.bfloat16
    assert next(loaded.components["vocoder"].parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    ("role", "error", "message"),
    [
        ("audio_vae", CheckpointNotFoundError, "vae/ltx-2.5-audio-vae-bf16.safetensors"),
        ("text_encoder", CheckpointNotFoundError, "text_encoders/gemma4-12b-with-proj-ltx-2.5-bf16.safetensors"),
    ],
)
def test_missing_component_file_names_the_file_to_download(
    official_folder: Path, tmp_path: Path, role: str, error: type, message: str
) -> None:
    folder = copy_folder(official_folder, tmp_path / f"no-{role}", drop=(role,))
    with pytest.raises(error, match=message):
        load_components(folder, torch_dtype=torch.float32)


def test_diffusion_decoder_vae_alone_asks_for_the_conv_vae(official_folder: Path, tmp_path: Path) -> None:
    folder = copy_folder(official_folder, tmp_path / "diffusion-vae", drop=("video_vae",))
    with pytest.raises(CheckpointError, match="only the diffusion-decoder video VAE.*ltx-2.5-video-vae-conv-bf16"):
        load_components(folder, torch_dtype=torch.float32)


def test_diffusion_decoder_is_optional(official_folder: Path, tmp_path: Path) -> None:
    folder = copy_folder(official_folder, tmp_path / "conv-only", drop=("video_vae_diffusion",))
    assert load_components(folder, torch_dtype=torch.float32).diffusion_decoder is None


def test_two_transformers_in_one_folder_ask_which(official_folder: Path, tmp_path: Path) -> None:
    folder = copy_folder(official_folder, tmp_path / "two")
    shutil.copy(
        folder / official_layout_2_5.FILES["transformer"],
        folder / "diffusion_models" / "ltx-2.5-22b-dev-transformer-bf16.safetensors",
    )
    with pytest.raises(CheckpointError, match="holds 2 LTX-2.5 transformer files.*pass the one to use"):
        load_components(folder, torch_dtype=torch.float32)


def test_text_encoder_of_another_fine_tune_is_refused(tiny_2_5: dict, official_folder: Path, tmp_path: Path) -> None:
    folder = copy_folder(official_folder, tmp_path / "other-gemma", drop=("text_encoder",))
    official_layout_2_5.write_text_encoder(
        folder / official_layout_2_5.FILES["text_encoder"], tiny_2_5["components"], gemma_version="gemma4-stock"
    )
    with pytest.raises(CheckpointError, match="trained with text encoder 'gemma4-tiny-ltx-v1'.*'gemma4-stock'"):
        load_components(folder, torch_dtype=torch.float32)


def test_a_separate_text_encoder_is_refused_for_2_5(official_folder: Path) -> None:
    with pytest.raises(ValueError, match="`text_encoder` cannot be given for an LTX-2.5 model"):
        load_components(official_folder, text_encoder="google/gemma-4-E4B-it")


def test_file_roles_are_read_from_the_headers(official_folder: Path) -> None:
    for role, relative in official_layout_2_5.FILES.items():
        assert loading_2_5.file_role(official_folder / relative) == role


def test_ltx_2_3_single_file_is_not_taken_for_2_5(tmp_path: Path) -> None:
    from tests import official_layout

    file = official_layout.write_official_checkpoint(
        tmp_path / "ltx-2.3-22b-distilled.safetensors", tiny.build_tiny_components("2.3"), "2.3"
    )
    assert not loading_2_5.is_ltx_2_5_transformer_file(file)
    assert loading_2_5.file_role(file) == "combined"
    # A folder holding it is not taken for an LTX-2.5 download either: the general loader's message stands.
    with pytest.raises(CheckpointError, match=r"has no model_index\.json.*or pass a single \.safetensors file"):
        load_components(tmp_path)


# --- Diffusers-format folders ------------------------------------------------------------------------------------


def test_diffusers_folder_round_trip(tiny_2_5: dict, tmp_path: Path) -> None:
    components = dict(
        tiny_2_5["components"],
        duration_head=tiny_2_5["duration_head"],
        diffusion_decoder=tiny_2_5["diffusion_decoder"],
    )
    folder = tmp_path / "LTX-2.5-Distilled-Diffusers"
    model_index = {"_class_name": "LTX2Pipeline"}
    for name, component in components.items():
        component.save_pretrained(folder / name)
        library = "transformers" if name in ("text_encoder", "tokenizer") else "diffusers"
        model_index[name] = [library, type(component).__name__]
    (folder / "model_index.json").write_text(json.dumps(model_index))
    loaded = load_components(folder, torch_dtype=torch.float32)
    for name in WEIGHTED_COMPONENTS:
        assert_same_weights(components[name], loaded.components[name])
    assert_same_weights(components["duration_head"], loaded.duration_head)
    assert_same_weights(components["diffusion_decoder"], loaded.diffusion_decoder)
    assert (loaded.version, loaded.variant) == ("2.5", "distilled")
    assert type(loaded.components["text_encoder"]).__name__ == "Gemma4UnifiedForConditionalGeneration"


# --- Version detection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_version", "version"),
    [("2.5", "2.5"), ("2.5.1", "2.5"), ("2.5-rc2", "2.5"), ("2.3.rc1", "2.3"), ("2.3.0", "2.3"), ("2", "2.0")],
)
def test_model_version_names_the_generation(model_version: str, version: str) -> None:
    assert versions.version_from_model_version(model_version, "'x.safetensors'") == version


@pytest.mark.parametrize("model_version", ["2.4.0", "3.0", "", "latest"])
def test_unknown_model_version_is_refused_with_what_is_supported(model_version: str) -> None:
    with pytest.raises(ValueError, match=r"'x.safetensors' declares model_version .*supported: LTX-2.5"):
        versions.version_from_model_version(model_version, "'x.safetensors'")


@pytest.mark.parametrize(
    ("text_encoder", "vocoder", "version"),
    [
        ("Gemma4UnifiedForConditionalGeneration", "LTX2VocoderWithBWE", "2.5"),
        ("Gemma3ForConditionalGeneration", "LTX2VocoderWithBWE", "2.3"),
        ("Gemma3ForConditionalGeneration", "LTX2Vocoder", "2.0"),
    ],
)
def test_model_index_names_the_generation(text_encoder: str, vocoder: str, version: str, tmp_path: Path) -> None:
    index = {"text_encoder": ["transformers", text_encoder], "vocoder": ["diffusers", vocoder]}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    assert versions.version_from_model_index(tmp_path) == version


def test_profiles_say_what_the_engine_does_differently() -> None:
    ltx_2_5, ltx_2_3 = versions.profile("2.5"), versions.profile("2.3")
    assert (ltx_2_5.distilled_stage_1_sampler, ltx_2_3.distilled_stage_1_sampler) == ("euler_ancestral", "euler")
    assert (ltx_2_5.image_conditioning_crf, ltx_2_3.image_conditioning_crf) == (18, 33)
    assert ltx_2_5.has_duration_head and not ltx_2_3.has_duration_head
    with pytest.raises(ValueError, match="`version` must be one of 2.5, 2.3, 2.0; got '2.4'"):
        versions.profile("2.4")


# --- Tiny and full-size 2.5 models ------------------------------------------------------------------------------


def test_tiny_2_5_text_encoder_feeds_its_connectors_and_duration_head(tiny_2_5: dict) -> None:
    components = tiny_2_5["components"]
    tokens = components["tokenizer"]([PROMPT], padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        hidden = components["text_encoder"](
            input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, output_hidden_states=True
        ).hidden_states
        embeds = torch.stack(hidden, dim=-1).flatten(2, 3)  # (B, T, D, L) -> (B, T, D * L), as LTX2Pipeline packs
        video, audio, _ = components["connectors"](embeds, tokens.attention_mask)
        seconds = tiny_2_5["duration_head"](video, audio)
    assert video.shape[-1] == components["transformer"].config.cross_attention_dim
    assert audio.shape[-1] == components["transformer"].config.audio_cross_attention_dim
    assert seconds.shape == (1,) and seconds.item() > 0


def test_tiny_2_5_transformer_differs_from_2_3_only_in_the_video_feed_forward_bias() -> None:
    keys_2_5 = set(tiny.build_tiny_components("2.5")["transformer"].state_dict())
    keys_2_3 = set(tiny.build_tiny_components("2.3")["transformer"].state_dict())
    assert keys_2_3 - keys_2_5 == {
        f"transformer_blocks.{i}.ff.net.{j}.{k}" for i in (0, 1) for j, k in ((0, "proj.bias"), (2, "bias"))
    }
    assert keys_2_5 - keys_2_3 == {"keyframes_abs_pos_embedding"}


def test_full_size_2_5_configs_build_the_released_architecture() -> None:
    with init_empty_weights():
        transformer = LTX2VideoTransformer3DModel(**loading_2_5.FULL_SIZE_2_5["transformer"])
        reference = LTX2VideoTransformer3DModel(**loading.FULL_SIZE_PRESETS["2.3"]["transformer"])
        connectors = LTX2TextConnectors(**loading_2_5.full_size_connectors_2_5(3840, 48))
        decoder = LTX2VideoDiffusionDecoderModel(**loading_2_5.FULL_SIZE_2_5["diffusion_decoder"])
        head = LTX2DurationHead(**loading_2_5.FULL_SIZE_2_5["duration_head"])
    count = sum(parameter.numel() for parameter in transformer.parameters())
    removed = sum(
        block.ff.net[0].proj.bias.numel() + block.ff.net[2].bias.numel() for block in reference.transformer_blocks
    )
    # 2.5 = 2.3 without the video feed-forward biases, plus one keyframe embedding of the video width.
    assert count == sum(p.numel() for p in reference.parameters()) - removed + 4096
    assert connectors.video_text_proj_in.in_features == 3840 * 49
    assert head.video_input_proj.in_features == 4096 and head.audio_input_proj.in_features == 2048
    assert sum(parameter.numel() for parameter in decoder.parameters()) > 0


# --- The Hub (from a local Hub cache: no network in tests) ----------------------------------------------------


@pytest.fixture
def hub_cache(official_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache holding a snapshot of `Lightricks/LTX-2.5` with the tiny files, as `hf download` leaves
    it (`snapshots/<revision>/<repo paths>`, `refs/main` naming the revision)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--Lightricks--LTX-2.5"
    shutil.copytree(official_folder, repo / "snapshots" / "0123456789abcdef")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return repo / "snapshots" / "0123456789abcdef"


@pytest.mark.parametrize(
    "model",
    ["Lightricks/LTX-2.5", "Lightricks/LTX-2.5/diffusion_models/ltx-2.5-22b-distilled-transformer-bf16.safetensors"],
)
def test_hub_repo_or_transformer_file_loads_every_component(tiny_2_5: dict, hub_cache: Path, model: str) -> None:
    loaded = load_components(model, torch_dtype=torch.float32, local_files_only=True)
    assert (loaded.version, loaded.name) == ("2.5", model)
    assert_same_weights(tiny_2_5["components"]["vae"], loaded.components["vae"])
    assert_same_weights(tiny_2_5["duration_head"], loaded.duration_head)


def test_hub_file_missing_from_the_cache_is_named(hub_cache: Path) -> None:
    (hub_cache / official_layout_2_5.FILES["audio_vae"]).unlink()
    with pytest.raises(CheckpointNotFoundError, match=r"`model`: Download of file 'vae/ltx-2.5-audio-vae-bf16"):
        load_components("Lightricks/LTX-2.5", torch_dtype=torch.float32, local_files_only=True)
