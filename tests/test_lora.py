"""LoRA loading on tiny real LTX-2.3 components: both file layouts, strengths, stages, fusing, errors.

Expected outputs come from an independent route: a copy of the model whose weights get `W + strength * B @ A`
added by hand (the reference's rule, ltx-core `fuse_loras`), compared with the adapter-loaded model.
"""

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ltx_pipeline import StageDecoded, TI2VidTwoStagesPipeline, constants
from ltx_pipeline.lora import (
    LoraSpec,
    StageLoras,
    adapter_names,
    check_lora_specs,
    fuse_loras,
    list_lora_files,
    load_loras,
    lora_fingerprint,
    parse_lora_argument,
    set_lora_strengths,
    unfuse_loras,
    unload_loras,
)
from ltx_pipeline.pipeline_common import LTXAVPipelineBase
from ltx_pipeline.tiny import build_tiny_components
from tests.lora_files import (
    LoraLayers,
    diffusers_lora_tensors,
    official_lora_tensors,
    random_lora_layers,
    write_lora,
)

# Modules across the model's kinds of Linear: attention, feed-forward, patchify, AdaLN, a2v cross-attention.
TRANSFORMER_MODULES = [
    "proj_in",
    "audio_proj_in",
    "time_embed.linear",
    "prompt_adaln.linear",
    "av_cross_attn_video_scale_shift.linear",
    "transformer_blocks.0.attn1.to_q",
    "transformer_blocks.0.attn1.to_out.0",
    "transformer_blocks.0.audio_attn2.to_k",
    "transformer_blocks.1.audio_to_video_attn.to_v",
    "transformer_blocks.1.ff.net.0.proj",
    "transformer_blocks.1.audio_ff.net.2",
]
CONNECTOR_MODULES = [
    "video_text_proj_in",
    "video_connector.transformer_blocks.0.attn1.to_q",
    "audio_connector.transformer_blocks.0.ff.net.2",
]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matrices gain nothing from threads, and on a shared, oversubscribed CPU two threads made a 64 px
    # pipeline run ~30x slower (0.3 s -> 8 s) than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pipe() -> TI2VidTwoStagesPipeline:
    """Fresh components per test: loading a LoRA changes the modules it targets."""
    return TI2VidTwoStagesPipeline(**build_tiny_components("2.3", seed=0))


def transformer_inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(1, 4, 8, generator=generator),  # 1 latent frame of 2 x 2
        "audio_hidden_states": torch.randn(1, 4, 32, generator=generator),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=generator),
        "audio_encoder_hidden_states": torch.randn(1, 6, 16, generator=generator),
        "encoder_attention_mask": torch.ones(1, 6),
        "audio_encoder_attention_mask": torch.ones(1, 6),
        "timestep": torch.tensor([600.0]),
        "audio_timestep": torch.tensor([600.0]),
        "sigma": torch.tensor([600.0]),
        "audio_sigma": torch.tensor([600.0]),
        "num_frames": 1,
        "height": 2,
        "width": 2,
        "audio_num_frames": 4,
        "use_cross_timestep": True,
        "return_dict": False,
    }


@torch.no_grad()
def transformer_output(transformer: torch.nn.Module) -> torch.Tensor:
    video, audio = transformer(**transformer_inputs())
    return torch.cat([video.flatten(), audio.flatten()])


@torch.no_grad()
def connectors_output(connectors: torch.nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, 16, 32 * 3, generator=generator)  # Gemma width x (layers + 1)
    video, audio, _ = connectors(embeds, torch.ones(1, 16, dtype=torch.long), padding_side="left")
    return torch.cat([video.flatten(), audio.flatten()])


@torch.no_grad()
def with_updates(model: torch.nn.Module, *updates: tuple[LoraLayers, float]) -> torch.nn.Module:
    """A copy of `model` with `strength * B @ A` added to each targeted weight by hand."""
    patched = copy.deepcopy(model)
    modules = dict(patched.named_modules())
    for layers, strength in updates:
        for name, (lora_a, lora_b) in layers.items():
            modules[name].weight += strength * (lora_b @ lora_a)
    return patched


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def official_file(tmp_path: Path, pipe, seed: int = 0, name: str = "style.safetensors") -> tuple[Path, LoraLayers]:
    layers = random_lora_layers(pipe.transformer, TRANSFORMER_MODULES, seed=seed)
    return write_lora(tmp_path / name, official_lora_tensors(layers)), layers


# --- Loading and strengths ------------------------------------------------------------------------------------------


def test_official_layout_adds_strength_times_b_a_and_strength_0_is_bit_exact(tmp_path, pipe):
    path, layers = official_file(tmp_path, pipe)
    base = transformer_output(pipe.transformer)
    expected = transformer_output(with_updates(pipe.transformer, (layers, 0.7)))
    expected_at_1 = transformer_output(with_updates(pipe.transformer, (layers, 1.0)))

    (name,) = load_loras(pipe, [(path, 0.7)])
    assert name.startswith("user_0_style")
    lora_output = transformer_output(pipe.transformer)
    assert_close(lora_output, expected)
    assert (lora_output - base).abs().max() > 1e-2

    set_lora_strengths(pipe, {name: 0.0})
    assert torch.equal(transformer_output(pipe.transformer), base)
    set_lora_strengths(pipe, {name: 1.0})
    assert_close(transformer_output(pipe.transformer), expected_at_1)


def test_diffusers_kohya_and_bare_peft_layouts_give_the_official_result(tmp_path, pipe):
    layers = random_lora_layers(pipe.transformer, TRANSFORMER_MODULES, seed=3)
    expected = transformer_output(with_updates(pipe.transformer, (layers, 1.0)))
    diffusers_path = write_lora(tmp_path / "d.safetensors", diffusers_lora_tensors(layers))
    # kohya: alpha / rank scales the update; alpha 4 at rank 2 doubles it, so write B / 2.
    halved = {module: (lora_a, lora_b / 2) for module, (lora_a, lora_b) in layers.items()}
    kohya_path = write_lora(tmp_path / "k.safetensors", official_lora_tensors(halved, kohya=True, alpha=4.0))
    # get_peft_model_state_dict of the transformer alone: bare module names.
    bare = {key.removeprefix("transformer."): value for key, value in diffusers_lora_tensors(layers).items()}
    bare_path = write_lora(tmp_path / "bare.safetensors", bare)

    for path in (diffusers_path, kohya_path, bare_path):
        (name,) = load_loras(pipe, [LoraSpec(path, 1.0)])
        assert_close(transformer_output(pipe.transformer), expected)
        unload_loras(pipe, [name])
    assert adapter_names(pipe) == []


def test_a_diffusers_saved_lora_keeps_its_alpha(tmp_path, pipe):
    # Train-side route: PEFT adapter with lora_alpha != r, saved by diffusers' own LTX-2 LoRA saver (metadata).
    from diffusers.loaders.lora_pipeline import LTX2LoraLoaderMixin
    from peft import LoraConfig, get_peft_model_state_dict

    trained = build_tiny_components("2.3", seed=0)["transformer"]
    config = LoraConfig(r=2, lora_alpha=3, target_modules=["to_q", "to_v", "ff.net.2"], init_lora_weights=False)
    trained.add_adapter(config, adapter_name="trained")
    expected = transformer_output(trained)
    LTX2LoraLoaderMixin.save_lora_weights(
        tmp_path,
        transformer_lora_layers=get_peft_model_state_dict(trained, adapter_name="trained"),
        weight_name="trained.safetensors",
        transformer_lora_adapter_metadata=config.to_dict(),
    )
    assert not torch.equal(transformer_output(pipe.transformer), expected)
    load_loras(pipe, [(tmp_path / "trained.safetensors", 1.0)])
    assert_close(transformer_output(pipe.transformer), expected)


def test_two_loras_add_up_and_unload_restores_the_base_model(tmp_path, pipe):
    first, first_layers = official_file(tmp_path, pipe, seed=1, name="a.safetensors")
    second_layers = random_lora_layers(pipe.transformer, TRANSFORMER_MODULES[3:8], seed=2)
    second = write_lora(tmp_path / "b.safetensors", diffusers_lora_tensors(second_layers))
    base = transformer_output(pipe.transformer)
    expected = transformer_output(with_updates(pipe.transformer, (first_layers, 0.5), (second_layers, 1.5)))

    names = load_loras(pipe, [(first, 0.5), (second, 1.5)])
    assert len(set(names)) == 2
    assert_close(transformer_output(pipe.transformer), expected)

    unload_loras(pipe)
    assert adapter_names(pipe) == []
    assert torch.equal(transformer_output(pipe.transformer), base)


def test_connector_keys_of_the_official_layout_reach_the_connectors(tmp_path, pipe):
    transformer_layers = random_lora_layers(pipe.transformer, TRANSFORMER_MODULES[:2], seed=4)
    connector_layers = random_lora_layers(pipe.connectors, CONNECTOR_MODULES, seed=5)
    path = write_lora(tmp_path / "c.safetensors", official_lora_tensors(transformer_layers, connector_layers))
    expected = connectors_output(with_updates(pipe.connectors, (connector_layers, 1.0)))
    assert lora_fingerprint(pipe.connectors) == ()

    (name,) = load_loras(pipe, [(path, 1.0)])
    assert_close(connectors_output(pipe.connectors), expected)
    assert lora_fingerprint(pipe.connectors) == ((name, 1.0, False),)


# --- Stages and fusing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3", "2.0"])
def test_every_linear_of_either_version_loads_from_the_official_layout(tmp_path, version):
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components(version, seed=0))
    linears = {
        component: [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
        for component, model in (("transformer", pipe.transformer), ("connectors", pipe.connectors))
    }
    transformer_layers = random_lora_layers(pipe.transformer, linears["transformer"], rank=1, seed=20)
    connector_layers = random_lora_layers(pipe.connectors, linears["connectors"], rank=1, seed=21)
    for layers in (transformer_layers, connector_layers):  # small updates keep the tiny model's outputs finite
        layers.update({name: (lora_a, lora_b * 0.1) for name, (lora_a, lora_b) in layers.items()})
    path = write_lora(tmp_path / "all.safetensors", official_lora_tensors(transformer_layers, connector_layers))
    expected_connectors = connectors_output(with_updates(pipe.connectors, (connector_layers, 1.0)))

    load_loras(pipe, [(path, 1.0)])
    lora_layers = sum(1 for module in pipe.transformer.modules() if hasattr(module, "lora_A"))
    assert lora_layers == len(linears["transformer"])
    assert_close(connectors_output(pipe.connectors), expected_connectors)


def test_stage_loras_switch_the_distilled_lora_on_for_stage_2_only(tmp_path, pipe):
    user, user_layers = official_file(tmp_path, pipe, seed=6, name="user.safetensors")
    distilled, distilled_layers = official_file(tmp_path, pipe, seed=7, name="distilled.safetensors")
    stage_1_expected = transformer_output(with_updates(pipe.transformer, (user_layers, 0.8)))
    stage_2_expected = transformer_output(with_updates(pipe.transformer, (user_layers, 0.8), (distilled_layers, 1.0)))

    stages = StageLoras.load(pipe, [(user, 0.8)], stage_2_loras=[(distilled, 1.0)])
    assert list(stages.stage_1.values()) == [0.8] and list(stages.stage_2.values()) == [0.8, 1.0]
    stage_1 = transformer_output(pipe.transformer)  # `load` leaves stage 1 active
    assert_close(stage_1, stage_1_expected)
    stages.for_stage(pipe, 2)
    assert_close(transformer_output(pipe.transformer), stage_2_expected)
    stages.for_stage(pipe, 1)
    assert torch.equal(transformer_output(pipe.transformer), stage_1)


def test_a_stage_2_lora_skips_connector_layers_even_ones_this_model_lacks(tmp_path, pipe):
    # LTX-2.0's `text_embedding_projection.aggregate_embed` does not exist in LTX-2.3 connectors.
    transformer_layers = random_lora_layers(pipe.transformer, TRANSFORMER_MODULES, seed=22)
    tensors = official_lora_tensors(transformer_layers)
    tensors["diffusion_model.text_embedding_projection.aggregate_embed.lora_A.weight"] = torch.zeros(2, 96)
    tensors["diffusion_model.text_embedding_projection.aggregate_embed.lora_B.weight"] = torch.zeros(32, 2)
    path = write_lora(tmp_path / "distilled.safetensors", tensors)
    expected = transformer_output(with_updates(pipe.transformer, (transformer_layers, 1.0)))
    with pytest.raises(ValueError, match=r"connectors\.text_proj_in: no such module in the connectors"):
        load_loras(pipe, [(path, 1.0)])  # as a user LoRA it does not fit

    stages = StageLoras.load(pipe, [], stage_2_loras=[(path, 1.0)])
    assert lora_fingerprint(pipe.connectors) == ()
    stages.for_stage(pipe, 2)
    assert_close(transformer_output(pipe.transformer), expected)


def test_stage_loras_without_user_loras_run_stage_1_on_the_base_model(tmp_path, pipe):
    distilled, _ = official_file(tmp_path, pipe, seed=8)
    base = transformer_output(pipe.transformer)
    stages = StageLoras.load(pipe, [], stage_2_loras=[(distilled, 1.0)])
    stages.for_stage(pipe, 2)
    assert not torch.equal(transformer_output(pipe.transformer), base)
    stages.for_stage(pipe, 1)
    assert torch.equal(transformer_output(pipe.transformer), base)


def test_update_keeps_unchanged_files_and_swaps_the_rest(tmp_path, pipe):
    first, first_layers = official_file(tmp_path, pipe, seed=16, name="first.safetensors")
    second, second_layers = official_file(tmp_path, pipe, seed=17, name="second.safetensors")
    distilled, _ = official_file(tmp_path, pipe, seed=18, name="distilled.safetensors")
    expected = transformer_output(with_updates(pipe.transformer, (first_layers, 0.3), (second_layers, 1.0)))
    stages = StageLoras.load(pipe, [(first, 1.0)], stage_2_loras=[(distilled, 1.0)])
    (first_name,) = stages.stage_1

    stages = stages.update(pipe, [(first, 0.3), (second, 1.0)])
    assert first_name in stages.stage_1  # same file: the adapter is reused, not read again
    assert sorted(adapter_names(pipe)) == sorted(stages.stage_2) and len(adapter_names(pipe)) == 2
    stages.for_stage(pipe, 2)
    assert_close(transformer_output(pipe.transformer), expected)

    stages.update(pipe, [])
    assert adapter_names(pipe) == []
    retrained = random_lora_layers(pipe.transformer, TRANSFORMER_MODULES, seed=19)
    expected = transformer_output(with_updates(pipe.transformer, (retrained, 1.0)))
    stages = StageLoras.load(pipe, [(first, 1.0)])
    modified_ns = first.stat().st_mtime_ns
    write_lora(first, official_lora_tensors(retrained))  # the same path rewritten: read afresh
    os.utime(first, ns=(modified_ns + 10**9, modified_ns + 10**9))  # a coarse-clock filesystem may not tick
    stages = stages.update(pipe, [(first, 1.0)])
    assert_close(transformer_output(pipe.transformer), expected)
    with pytest.raises(ValueError, match="listed twice"):
        stages.update(pipe, [(second, 1.0), (second, 0.5)])
    with pytest.raises(ValueError, match="`fuse` needs the same LoRAs"):
        stages.update(pipe, [(second, 1.0)], stage_2_loras=[(distilled, 1.0)], fuse=True)


def test_fused_loras_match_unfused_and_unfuse_restores(tmp_path, pipe):
    first, _ = official_file(tmp_path, pipe, seed=9, name="a.safetensors")
    second, _ = official_file(tmp_path, pipe, seed=10, name="b.safetensors")
    base = transformer_output(pipe.transformer)
    load_loras(pipe, [(first, 0.6), (second, 1.2)])
    unfused = transformer_output(pipe.transformer)

    fuse_loras(pipe)
    assert_close(transformer_output(pipe.transformer), unfused)
    with pytest.raises(ValueError, match="fused"):
        set_lora_strengths(pipe, {adapter_names(pipe)[0]: 1.0})
    unfuse_loras(pipe)
    assert_close(transformer_output(pipe.transformer), unfused)
    unload_loras(pipe)
    assert_close(transformer_output(pipe.transformer), base)


def test_fusing_needs_the_same_set_in_both_stages(tmp_path, pipe):
    user, _ = official_file(tmp_path, pipe, seed=11)
    with pytest.raises(ValueError, match="`fuse` needs the same LoRAs"):
        StageLoras(stage_1={"a": 1.0}, stage_2={"a": 1.0, "b": 1.0}, fuse=True)
    stages = StageLoras.load(pipe, [(user, 1.0)], fuse=True)
    unfused_expected = transformer_output(pipe.transformer)
    stages.for_stage(pipe, 2)
    assert_close(transformer_output(pipe.transformer), unfused_expected)


# --- Errors ---------------------------------------------------------------------------------------------------------


def test_a_lora_for_another_width_names_the_file_and_layer(tmp_path, pipe):
    wide = build_tiny_components("2.3", seed=0)["transformer"]
    wide_layers = random_lora_layers(wide, ["transformer_blocks.0.attn1.to_q"], seed=12)
    lora_a, lora_b = wide_layers["transformer_blocks.0.attn1.to_q"]
    wide_layers["transformer_blocks.0.attn1.to_q"] = (torch.cat([lora_a, lora_a], dim=1), lora_b)  # 64 inputs
    path = write_lora(tmp_path / "wide.safetensors", official_lora_tensors(wide_layers))
    with pytest.raises(ValueError) as error:
        load_loras(pipe, [(path, 1.0)])
    message = str(error.value)
    assert "wide.safetensors" in message
    assert "transformer.transformer_blocks.0.attn1.to_q: lora_A [2, 64]" in message
    assert "32 -> 32 linear layer" in message
    assert adapter_names(pipe) == []


def test_a_lora_for_missing_modules_names_the_first_keys_and_loads_nothing(tmp_path, pipe):
    good, _ = official_file(tmp_path, pipe, seed=13, name="good.safetensors")
    tensors = official_lora_tensors(random_lora_layers(pipe.transformer, TRANSFORMER_MODULES[:1], seed=14))
    tensors["diffusion_model.transformer_blocks.7.attn1.to_q.lora_A.weight"] = torch.zeros(2, 32)
    tensors["diffusion_model.transformer_blocks.7.attn1.to_q.lora_B.weight"] = torch.zeros(32, 2)
    path = write_lora(tmp_path / "deeper.safetensors", tensors)
    with pytest.raises(ValueError, match=r"deeper\.safetensors.*transformer_blocks\.7\.attn1\.to_q: no such module"):
        load_loras(pipe, [(good, 1.0), (path, 1.0)])
    assert adapter_names(pipe) == []  # checked before anything was injected


def test_bad_files_and_strengths_are_clear_errors(tmp_path, pipe):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"this is not a safetensors file")
    not_lora = write_lora(tmp_path / "vae.safetensors", {"vae.decoder.conv_in.weight": torch.zeros(2, 2)})
    good, _ = official_file(tmp_path, pipe)
    cases = [
        ([(tmp_path / "missing.safetensors", 1.0)], "does not exist"),
        ([(tmp_path / "style.ckpt", 1.0)], "must be a .safetensors LoRA file"),
        ([(corrupt, 1.0)], "corrupt.safetensors.*could not be read"),
        ([(not_lora, 1.0)], "vae.safetensors.*neither the transformer nor the text connectors"),
        ([(good, 2.5)], r"`loras\[0\]` strength must be between 0.0 and 2.0; got 2.5"),
        ([(good, float("nan"))], "strength must be between"),
        ([(good, "1")], "strength must be a number"),
        ([good], r"`loras\[0\]` must be a \(path, strength\) pair"),
    ]
    for loras, message in cases:
        with pytest.raises(ValueError, match=message):
            load_loras(pipe, loras)
    with pytest.raises(ValueError, match="must be a list"):
        check_lora_specs(good)
    with pytest.raises(ValueError, match="'missing' is not loaded"):
        set_lora_strengths(pipe, {"missing": 1.0})
    (name,) = load_loras(pipe, [(good, 1.0)])
    with pytest.raises(ValueError, match=f"strength for '{name}' must be between 0.0 and 2.0; got -1"):
        set_lora_strengths(pipe, {name: -1})
    unload_loras(pipe)
    assert adapter_names(pipe) == []
    assert constants.MIN_LORA_STRENGTH == 0.0 and constants.MAX_LORA_STRENGTH == 2.0


# --- End to end -----------------------------------------------------------------------------------------------------


def test_pipeline_output_with_a_lora_at_strength_0_and_1(tmp_path, pipe):
    path, _ = official_file(tmp_path, pipe, seed=15)
    request = {"prompt": "a red ball bounces", "height": 64, "width": 64, "num_frames": 9, "seed": 0}
    request["preview_audio"] = False
    base = pipe(**request)
    (name,) = load_loras(pipe, [(path, 1.0)])
    with_lora = pipe(**request)
    assert with_lora.frames.shape == base.frames.shape
    assert not np.array_equal(with_lora.frames, base.frames)
    set_lora_strengths(pipe, {name: 0.0})
    switched_off = pipe(**request)
    assert np.array_equal(switched_off.frames, base.frames)
    assert torch.equal(switched_off.audio.waveform, base.audio.waveform)


def test_command_line_strengths_and_the_lora_folder(tmp_path, pipe):
    good, _ = official_file(tmp_path, pipe)
    assert parse_lora_argument(str(good), "0.5") == LoraSpec(good, 0.5)
    with pytest.raises(ValueError, match=r"`--lora` strength must be a number; got 'strong'"):
        parse_lora_argument(str(good), "strong")
    (tmp_path / "styles").mkdir()
    nested = write_lora(tmp_path / "styles" / "Ink.SafeTensors", {"a.lora_A.weight": torch.zeros(1, 1)})
    (tmp_path / "notes.txt").write_text("not a LoRA")
    assert list_lora_files(tmp_path) == [good, nested]
    with pytest.raises(ValueError, match="`lora_folder` must be an existing folder"):
        list_lora_files(tmp_path / "nowhere")


@pytest.mark.skipif(
    not hasattr(LTXAVPipelineBase, "stage_loras"), reason="the pipelines' per-stage LoRA hook is not wired yet"
)
def test_dev_run_applies_the_stage_2_lora_in_stage_2_only(tmp_path, pipe):
    user, _ = official_file(tmp_path, pipe, seed=23, name="user.safetensors")
    distilled, _ = official_file(tmp_path, pipe, seed=24, name="distilled.safetensors")
    request = {"prompt": "a red ball bounces", "height": 64, "width": 64, "num_frames": 9, "seed": 0}
    request |= {"mode": "dev", "num_inference_steps": 2, "preview_audio": False}

    def run(stage_2_loras):
        pipe.stage_loras = StageLoras.load(pipe, [(user, 1.0)], stage_2_loras=stage_2_loras)
        events = list(pipe.stream(**request))
        unload_loras(pipe)
        stage_1 = next(event for event in events if isinstance(event, StageDecoded))
        return stage_1.frames, events[-1].output.frames

    stage_1_user, final_user = run([])
    stage_1_both, final_both = run([(distilled, 1.0)])
    assert np.array_equal(stage_1_both, stage_1_user)  # stage 1: the user's LoRA alone
    assert not np.array_equal(final_both, final_user)  # stage 2: the distilled LoRA joins


# --- The memory modes that store weights in fp8 ("fp8-storage", "24gb", "16gb") ------------------------------------


@torch.no_grad()
def bf16_transformer_output(transformer: torch.nn.Module) -> torch.Tensor:
    inputs = {
        name: value.to(torch.bfloat16) if torch.is_tensor(value) and value.is_floating_point() else value
        for name, value in transformer_inputs().items()
    }
    video, audio = transformer(**inputs)
    return torch.cat([video.flatten(), audio.flatten()]).float()


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return ((output - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("memory_mode", ["24gb", "16gb", "fp8-storage"])
def test_loras_loaded_before_an_fp8_memory_mode_run_on_its_fp8_weights(tmp_path, pipe, memory_mode):
    # What the command line does (`assemble` loads --lora before placing the model), in every mode with fp8 weights.
    from ltx_pipeline.speed.acceleration import Fp8StorageLinear, apply_memory_mode

    path, layers = official_file(tmp_path, pipe, seed=12)
    base = TI2VidTwoStagesPipeline(**build_tiny_components("2.3", seed=0))
    apply_memory_mode(base, "full-gpu-bf16", "cpu")
    base_output = bf16_transformer_output(base.transformer)
    patched = with_updates(pipe.transformer, (layers, 1.0))
    apply_memory_mode({"transformer": patched}, "full-gpu-bf16", "cpu")
    expected = bf16_transformer_output(patched)

    load_loras(pipe, [(path, 1.0)])
    apply_memory_mode(pipe, memory_mode, "cpu")
    wrapper = pipe.transformer.transformer_blocks[0].attn1.to_q
    if memory_mode == "24gb":
        assert isinstance(wrapper.base_layer, Fp8StorageLinear)
    else:  # stored in fp8 by the casting hook
        assert wrapper.base_layer.weight.dtype == torch.float8_e4m3fn
    assert all(layer.weight.dtype == torch.bfloat16 for layer in wrapper.lora_A.values())  # adapters stay in bf16
    output = bf16_transformer_output(pipe.transformer)
    assert relative_error(output, expected) < 0.1 < relative_error(base_output, expected)


def test_loras_fused_before_the_24gb_mode_stay_fused_and_cannot_be_taken_out(tmp_path, pipe):
    from ltx_pipeline.speed.acceleration import apply_memory_mode

    path, _ = official_file(tmp_path, pipe, seed=13)
    stages = StageLoras.load(pipe, [(path, 1.0)], fuse=True)
    unfused_reference = copy.deepcopy(pipe.transformer)
    apply_memory_mode({"transformer": unfused_reference}, "full-gpu-bf16", "cpu")
    expected = bf16_transformer_output(unfused_reference)

    apply_memory_mode(pipe, "24gb", "cpu")
    assert relative_error(bf16_transformer_output(pipe.transformer), expected) < 0.1
    with pytest.raises(ValueError, match=r"cannot be taken out of the transformer's Fp8StorageLinear layers.*again"):
        stages.update(pipe, [])


FP8_MEMORY_MODES = ["fp8-storage", "24gb", "16gb"]


def file_with_connectors(tmp_path: Path, pipe, seed: int, name: str) -> Path:
    """A LoRA for both components: each memory mode stores the connectors' weights in fp8 too."""
    transformer_layers = random_lora_layers(pipe.transformer, TRANSFORMER_MODULES, seed=seed)
    connector_layers = random_lora_layers(pipe.connectors, CONNECTOR_MODULES, seed=seed + 100)
    return write_lora(tmp_path / name, official_lora_tensors(transformer_layers, connector_layers))


@torch.no_grad()
def bf16_outputs(pipe) -> tuple[torch.Tensor, torch.Tensor]:
    """The transformer's and the connectors' outputs on bf16 inputs, as float32."""
    generator = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, 16, 32 * 3, generator=generator).to(torch.bfloat16)  # Gemma width x (layers + 1)
    video, audio, _ = pipe.connectors(embeds, torch.ones(1, 16, dtype=torch.long), padding_side="left")
    return bf16_transformer_output(pipe.transformer), torch.cat([video.flatten(), audio.flatten()]).float()


def stored_fp8_weights(pipe) -> dict[str, torch.Tensor]:
    """Copies of the float8 tensors of the transformer and connectors, by name as without LoRA layers."""
    weights = {}
    for component in ("transformer", "connectors"):
        model = getattr(pipe, component)
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.dtype == torch.float8_e4m3fn:
                weights[f"{component}.{name.replace('.base_layer', '')}"] = tensor.detach().clone()
    return weights


def streamed_parameters(model: torch.nn.Module) -> set[int]:
    """ids of the parameters that `model`'s offload groups (diffusers' group offloading) move to the device and back:
    each group's own list, fixed when the group is made, and those of the modules it moves."""
    streamed = set()
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = None if registry is None else registry.get_hook("group_offloading")
        if hook is not None:
            streamed |= {id(parameter) for parameter in hook.group.parameters}
            streamed |= {id(parameter) for member in hook.group.modules for parameter in member.parameters()}
    return streamed


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    assert all(torch.equal(actual[name].view(torch.uint8), expected[name].view(torch.uint8)) for name in expected)


@pytest.mark.parametrize("memory_mode", FP8_MEMORY_MODES)
def test_loras_picked_per_run_in_an_fp8_memory_mode_match_bf16_and_leave_the_fp8_weights(tmp_path, pipe, memory_mode):
    # What the studio does: the mode is applied at start-up, then each run's LoRAs are loaded, reweighted, swapped
    # and unloaded by `StageLoras.update`. Before, the adapters were cast to fp8 with the weights and PEFT's forward
    # failed on them.
    from ltx_pipeline.speed.acceleration import apply_memory_mode

    style = file_with_connectors(tmp_path, pipe, seed=16, name="style.safetensors")
    ink = file_with_connectors(tmp_path, pipe, seed=17, name="ink.safetensors")
    runs = {
        "style": [(style, 1.0)],
        "style at 0.5": [(style, 0.5)],
        "ink": [(ink, 1.0)],
        "both": [(style, 0.5), (ink, 1.0)],
    }
    reference = TI2VidTwoStagesPipeline(**build_tiny_components("2.3", seed=0))
    apply_memory_mode(reference, "full-gpu-bf16", "cpu")
    stages, expected = StageLoras(), {}
    for run, loras in runs.items():
        stages = stages.update(reference, loras)
        expected[run] = bf16_outputs(reference)

    apply_memory_mode(pipe, memory_mode, "cpu")
    base = bf16_outputs(pipe)
    fp8_weights = stored_fp8_weights(pipe)
    assert fp8_weights
    stages = StageLoras()
    for run, loras in runs.items():
        stages = stages.update(pipe, loras)
        outputs = bf16_outputs(pipe)
        for other, other_expected in expected.items():  # near its own LoRAs, within fp8's error; far from the rest
            for output, reference_output, base_output in zip(outputs, other_expected, base, strict=True):
                if other == run:
                    assert (
                        relative_error(output, reference_output) < 0.1 < relative_error(base_output, reference_output)
                    )
                else:
                    assert relative_error(output, reference_output) > 0.1
        adapters = [
            parameter
            for component in ("transformer", "connectors")
            for name, parameter in getattr(pipe, component).named_parameters()
            if ".lora_" in name
        ]
        assert adapters and all(adapter.dtype == torch.bfloat16 for adapter in adapters)
        if memory_mode == "16gb":  # the adapters stream with their blocks (diffusers made the groups again)
            streamed = streamed_parameters(pipe.transformer) | streamed_parameters(pipe.connectors)
            assert all(id(adapter) in streamed for adapter in adapters)
        assert_same_tensors(stored_fp8_weights(pipe), fp8_weights)  # not fused into the fp8 weights
    set_lora_strengths(pipe, dict.fromkeys(adapter_names(pipe), 0.0))  # loaded, switched off
    for output, base_output in zip(bf16_outputs(pipe), base, strict=True):
        assert torch.equal(output, base_output)
    stages.update(pipe, [])
    assert adapter_names(pipe) == []
    for output, base_output in zip(bf16_outputs(pipe), base, strict=True):
        assert torch.equal(output, base_output)
    assert_same_tensors(stored_fp8_weights(pipe), fp8_weights)


@pytest.mark.parametrize("memory_mode", FP8_MEMORY_MODES)
def test_fusing_loras_into_fp8_weights_is_refused_and_leaves_them(tmp_path, pipe, memory_mode):
    # fp8 keeps 3 mantissa bits: a fused update would be rounded away in part, and taking it out again would not
    # give the weights back. Unfused, the LoRA keeps working.
    from ltx_pipeline.speed.acceleration import apply_memory_mode

    path, _ = official_file(tmp_path, pipe, seed=15)
    apply_memory_mode(pipe, memory_mode, "cpu")
    stages = StageLoras().update(pipe, [(path, 1.0)])
    with_lora = bf16_transformer_output(pipe.transformer)
    fp8_weights = stored_fp8_weights(pipe)
    with pytest.raises(
        ValueError, match=r"cannot be fused into the transformer's .*Linear layers \(weights stored in float8"
    ):
        fuse_loras(pipe)
    with pytest.raises(ValueError, match=r"cannot be fused into the transformer's .*Linear layers"):
        stages.update(pipe, [(path, 1.0)], fuse=True)
    assert_same_tensors(stored_fp8_weights(pipe), fp8_weights)
    stages.update(pipe, [(path, 1.0)])  # unfused again
    assert adapter_names(pipe) == list(stages.stage_1)
    assert torch.equal(bf16_transformer_output(pipe.transformer), with_lora)


def test_compiled_24gb_blocks_run_loras_added_reweighted_swapped_and_removed_per_run(tmp_path, pipe):
    # The "24gb" mode is the one that compiles. PEFT's layers, adapter names and scalings are part of the traced
    # code, so each LoRA set recompiles the blocks, and a strength change once more; the compiled blocks keep giving
    # eager's outputs. Graphs of sets no longer loaded are dropped: torch.compile keeps at most `recompile_limit`
    # (8; 2 here) per block code, and with fullgraph=True the next one failed the run.
    from ltx_pipeline.speed.acceleration import SpeedOptions, place_pipeline

    torch._dynamo.reset()
    # The same layers in both blocks, so that the blocks share their graphs (a graph takes seconds to trace here).
    modules = [f"transformer_blocks.{block}.{layer}" for block in (0, 1) for layer in ("attn1.to_q", "ff.net.0.proj")]
    style, ink = (
        write_lora(tmp_path / name, official_lora_tensors(random_lora_layers(pipe.transformer, modules, seed=seed)))
        for seed, name in ((18, "style.safetensors"), (19, "ink.safetensors"))
    )
    place_pipeline(pipe, "cpu", "24gb", SpeedOptions(fused_rotary=True, gelu_epilogue=True))
    runs = [[], [(style, 1.0)], [(style, 0.5)], [(ink, 1.0)], []]
    stages, eager = StageLoras(), []
    for loras in runs:
        stages = stages.update(pipe, loras)
        eager.append(bf16_transformer_output(pipe.transformer))
    # diffusers' regional compilation, as `SpeedOptions(compile=True)` runs it; inductor on the CPU takes minutes.
    pipe.transformer.compile_repeated_blocks(fullgraph=True, backend="eager")
    with torch._dynamo.config.patch(recompile_limit=2):
        for loras, eager_output in zip(runs, eager, strict=True):
            stages = stages.update(pipe, loras)
            assert torch.equal(bf16_transformer_output(pipe.transformer), eager_output)
    assert all(block._compiled_call_impl is not None for block in pipe.transformer.transformer_blocks)


def test_fp8_products_leave_a_loras_own_matrices_in_place(tmp_path):
    """A LoRA of rank 16 loaded before `fp8=True` (the command line's order): its matrices are Linear layers of the
    blocks whose sizes fp8 products take, but PEFT reads their `weight`, so they stay as they are, and the run works."""
    from ltx_pipeline.speed.acceleration import Fp8Linear, SpeedOptions, _fp8_eligible, apply_speed_options

    pipe = TI2VidTwoStagesPipeline(**build_tiny_components())
    names = [name for name, module in pipe.transformer.named_modules() if _fp8_eligible(name, module)][:4]
    layers = random_lora_layers(pipe.transformer, names, rank=16, seed=3)
    load_loras(pipe, [(write_lora(tmp_path / "rank16.safetensors", official_lora_tensors(layers)), 1.0)])
    apply_speed_options(pipe, SpeedOptions(fp8=True))
    modules = dict(pipe.transformer.named_modules())
    assert all(isinstance(modules[f"{name}.base_layer"], Fp8Linear) for name in names)
    lora_matrices = [module for name, module in modules.items() if ".lora_" in name and hasattr(module, "in_features")]
    assert lora_matrices and not any(isinstance(module, Fp8Linear) for module in lora_matrices)
    assert torch.isfinite(transformer_output(pipe.transformer)).all()
