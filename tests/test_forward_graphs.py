"""The whole transformer forward as CUDA graphs (ltx_pipeline.speed.forward_graphs, SpeedOptions(forward_graph=True)).

On the CPU: the option's checks, the signature a graph is recorded under, and that the pipelines run as without it
(no CUDA: no graphs). The recording and replays themselves need a GPU (`pytest -m gpu`).
"""

import argparse
import logging

import numpy as np
import pytest
import torch
from diffusers.hooks import apply_layerwise_casting

from ltx_pipeline import TI2VidTwoStagesPipeline
from ltx_pipeline.speed import forward_graphs
from ltx_pipeline.speed.acceleration import (
    SpeedOptions,
    add_speed_arguments,
    apply_speed_options,
    check_speed_for_memory_mode,
    speed_options_from_args,
)
from ltx_pipeline.tiny import build_tiny_components, tiny_component_kwargs

SMALL = {"prompt": "a red ball bounces", "height": 64, "width": 64, "num_frames": 9, "seed": 0}


def transformer_inputs(device: str = "cpu", seed: int = 0, frames: int = 2) -> dict:
    generator = torch.Generator().manual_seed(seed)
    config = tiny_component_kwargs("2.3")["transformer"]
    timestep = torch.tensor([600.0])
    inputs = {
        "hidden_states": torch.randn(1, frames * 6, config["in_channels"], generator=generator),
        "audio_hidden_states": torch.randn(1, 5, config["audio_in_channels"], generator=generator),
        "encoder_hidden_states": torch.randn(1, 8, config["cross_attention_dim"], generator=generator),
        "audio_encoder_hidden_states": torch.randn(1, 8, config["audio_cross_attention_dim"], generator=generator),
        "timestep": timestep,
        "sigma": timestep,
        "num_frames": frames,
        "height": 2,
        "width": 3,
        "fps": 24.0,
        "audio_num_frames": 5,
        "use_cross_timestep": True,
        "return_dict": False,
    }
    return {name: value.to(device) if torch.is_tensor(value) else value for name, value in inputs.items()}


def test_forward_graph_cannot_be_combined_with_per_block_graphs():
    with pytest.raises(ValueError, match="forward_graph=True.*cuda_graphs=True"):
        SpeedOptions(compile=True, cuda_graphs=True, forward_graph=True)


@pytest.mark.parametrize("memory_mode", ["fp8-storage", "16gb"])
def test_forward_graph_is_refused_with_the_memory_modes_that_hook_the_weights(memory_mode):
    with pytest.raises(ValueError, match=f"forward_graph=True.*memory mode '{memory_mode}'.*'full-gpu-bf16'"):
        check_speed_for_memory_mode(SpeedOptions(forward_graph=True), memory_mode)
    for allowed in ("full-gpu-bf16", "24gb"):  # the "24gb" transformer is resident, in fp8 layers without hooks
        check_speed_for_memory_mode(SpeedOptions(forward_graph=True), allowed)


def test_forward_graph_flag_reaches_the_speed_options():
    parser = argparse.ArgumentParser()
    add_speed_arguments(parser)
    assert speed_options_from_args(parser.parse_args(["--compile", "--forward-graph"])).forward_graph
    assert not speed_options_from_args(parser.parse_args([])).forward_graph


def test_a_signature_holds_the_shapes_and_other_arguments_but_not_the_tensor_values():
    transformer = build_tiny_components()["transformer"]
    key = forward_graphs.signature(transformer, (), transformer_inputs(seed=0))
    assert key == forward_graphs.signature(transformer, (), transformer_inputs(seed=1))  # new values: a replay
    assert key != forward_graphs.signature(transformer, (), transformer_inputs(frames=3))  # a new size
    assert key != forward_graphs.signature(transformer, (("lora", 1.0, False),), transformer_inputs())  # LoRAs
    perturbed = {**transformer_inputs(), "spatio_temporal_guidance_blocks": [0]}
    assert key != forward_graphs.signature(transformer, (), perturbed)
    assert key != forward_graphs.signature(transformer, (), {**transformer_inputs(), "isolate_modalities": True})
    with torch.no_grad():
        assert key != forward_graphs.signature(transformer, (), transformer_inputs())  # grad mode
    # An argument with no cheap comparable value: no graph.
    assert forward_graphs.signature(transformer, (), {**transformer_inputs(), "attention_kwargs": {}}) is None


def test_a_pipeline_run_leaves_the_transformer_unhooked_for_the_graphs():
    # Every pipeline run leaves an empty diffusers hook registry on the transformer (maybe_free_model_hooks): not a
    # hook that a replay would skip, so the next run may still replay.
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components())
    pipe(**SMALL)
    assert getattr(pipe.transformer, "_diffusers_hook", None) is not None
    assert not any(forward_graphs._hooked(module) for module in pipe.transformer.modules())
    apply_layerwise_casting(pipe.transformer, storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert any(forward_graphs._hooked(module) for module in pipe.transformer.modules())


def test_applying_speed_options_again_keeps_the_option_with_no_graphs_recorded_before():
    transformer = build_tiny_components()["transformer"]
    apply_speed_options(transformer, SpeedOptions(forward_graph=True))
    graphs = forward_graphs.recorded(transformer)
    graphs.graphs[("recorded",)] = None
    apply_speed_options(transformer, SpeedOptions(fused_rotary=True))
    assert forward_graphs.enabled(transformer)
    assert forward_graphs.recorded(transformer).graphs == {}


def test_pipeline_with_forward_graph_on_cpu_computes_what_it_does_without():
    components = build_tiny_components()
    reference = TI2VidTwoStagesPipeline(**components)(**SMALL)
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components())
    apply_speed_options(pipe, SpeedOptions(forward_graph=True))
    output = pipe(**SMALL)
    assert forward_graphs.enabled(pipe.transformer)
    assert np.array_equal(output.frames, reference.frames)
    assert torch.equal(output.audio.waveform, reference.audio.waveform)


# --- On a GPU ---------------------------------------------------------------------------------------------------


def cuda_transformer() -> torch.nn.Module:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return build_tiny_components()["transformer"].to("cuda")


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return ((output - reference).norm() / reference.norm()).item()


@pytest.mark.gpu
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_forward_graph_on_gpu_replays_what_the_forward_computes(compiled):
    transformer = cuda_transformer()
    apply_speed_options(transformer, SpeedOptions(compile=compiled, forward_graph=True))
    graphs = forward_graphs.recorded(transformer)
    first, second = transformer_inputs("cuda", seed=0), transformer_inputs("cuda", seed=1)
    perturbed = {**second, "spatio_temporal_guidance_blocks": [0]}
    with torch.no_grad():
        references = [transformer(**inputs) for inputs in (first, second, perturbed)]
        recorded = forward_graphs.forward(transformer, (), **first)  # runs as usual, then records
        replayed = forward_graphs.forward(transformer, (), **second)
        assert len(graphs.graphs) == 1
        perturbed_output = forward_graphs.forward(transformer, (), **perturbed)  # a new signature: a second graph
        assert len(graphs.graphs) == 2 and not graphs.refused
        replayed_again = forward_graphs.forward(transformer, (), **first)
        for output, reference in zip(
            (recorded, replayed, perturbed_output, replayed_again), (*references, references[0]), strict=True
        ):
            assert relative_error(output[0], reference[0]) < 1e-5
            assert relative_error(output[1], reference[1]) < 1e-5
        assert relative_error(replayed[0], references[1][0]) < 1e-5  # a later replay left earlier outputs alone
        forward_graphs.forward(transformer, (("lora", 0.5, False),), **first)  # a new LoRA state
        assert len(graphs.graphs) == 1


@pytest.mark.gpu
def test_forward_graph_on_gpu_runs_a_hooked_transformer_as_usual(caplog):
    transformer = cuda_transformer()
    apply_layerwise_casting(transformer, storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    apply_speed_options(transformer, SpeedOptions(forward_graph=True))
    inputs = transformer_inputs("cuda")
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="ltx_pipeline.speed.forward_graphs"):
        reference = transformer(**inputs)
        outputs = [forward_graphs.forward(transformer, (), **inputs) for _ in range(2)]
    assert not forward_graphs.recorded(transformer).graphs
    assert "without a CUDA graph" in caplog.text and "hooks" in caplog.text
    assert all(torch.equal(output[0], reference[0]) for output in outputs)


@pytest.mark.gpu
def test_pipeline_with_forward_graph_on_gpu_matches_the_pipeline_without():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    reference = TI2VidTwoStagesPipeline(**build_tiny_components()).to("cuda")(**SMALL)
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components()).to("cuda")
    apply_speed_options(pipe, SpeedOptions(forward_graph=True))
    outputs = [pipe(**SMALL) for _ in range(2)]  # the second run replays what the first recorded
    graphs = forward_graphs.recorded(pipe.transformer)
    assert len(graphs.graphs) == 2 and graphs.recordings == 2  # stage 1 and stage 2
    for output in outputs:
        assert np.abs(output.frames.astype(int) - reference.frames.astype(int)).max() <= 2


def test_a_refused_capture_says_where_it_was_refused():
    """The log of a refused capture names the innermost lines outside PyTorch (the operation a capture refused)."""
    from ltx_pipeline.speed.forward_graphs import _raised_at

    def copies_from_the_host():
        raise RuntimeError("Cannot copy between CPU and CUDA tensors during CUDA graph capture")

    def forward():
        copies_from_the_host()

    try:
        forward()
    except RuntimeError as error:
        where = _raised_at(error)
    *_, outer, inner = where.split(" > ")
    assert outer.startswith("test_forward_graphs.py:") and outer.endswith(" in forward")
    assert inner.startswith("test_forward_graphs.py:") and inner.endswith(" in copies_from_the_host")


@pytest.mark.parametrize("fused_rotary", [False, True])
def test_the_forward_makes_no_tensor_from_host_data(monkeypatch: pytest.MonkeyPatch, fused_rotary: bool) -> None:
    """A CUDA graph capture refuses a copy from the host: the transformer's forward as the pipelines set it up (bf16,
    the reference's position precision, with or without the fused rotary's half tables), given the rotary
    coordinates the graphs make once, builds no tensor from Python data on its device. The meta device stands for
    the GPU. (The reference precision's grid made its maxima a device tensor in every forward, and the product's
    whole-forward graph was refused on the GPU, run 36.)"""
    from ltx_pipeline.positions import use_reference_position_precision
    from ltx_pipeline.speed.attention_processors import use_out_of_place_rotary

    transformer = build_tiny_components()["transformer"].to(torch.bfloat16)
    use_reference_position_precision(transformer)
    if fused_rotary:
        use_out_of_place_rotary(transformer)
    transformer.to("meta")

    def meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.zeros(*shape, device="meta", dtype=dtype)

    config = transformer.config
    kwargs = {
        "hidden_states": meta(1, 2, config.in_channels),
        "audio_hidden_states": meta(1, 9, config.audio_in_channels),
        "encoder_hidden_states": meta(1, 16, config.cross_attention_dim),
        "audio_encoder_hidden_states": meta(1, 16, config.audio_cross_attention_dim),
        "timestep": meta(1, dtype=torch.float32),
        "audio_timestep": meta(1, 9, dtype=torch.float32),
        "sigma": meta(1, dtype=torch.float32),
        "audio_sigma": meta(1, dtype=torch.float32),
        "num_frames": 2,
        "height": 1,
        "width": 1,
        "fps": 24.0,
        "audio_num_frames": 9,
        "use_cross_timestep": True,
        "return_dict": False,
    }
    forward_graphs.add_rotary_coordinates(transformer, kwargs)
    made_on_device = []
    tensor, as_tensor = torch.tensor, torch.as_tensor

    def watched(make):
        def make_and_note(*args, **kwargs):
            made = make(*args, **kwargs)
            if made.device.type != "cpu":
                made_on_device.append(made.shape)
            return made

        return make_and_note

    monkeypatch.setattr(torch, "tensor", watched(tensor))
    monkeypatch.setattr(torch, "as_tensor", watched(as_tensor))
    with torch.no_grad():
        video, audio = transformer(**kwargs)
    assert video.device.type == "meta" and audio.device.type == "meta"
    assert made_on_device == []


def test_an_euler_step_copies_nothing_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's size is made on the latents' device: a tensor moved there from the host would wait for all queued
    GPU work at every step. The meta device stands for the GPU; the values are those of the reference's float32
    subtraction (tests/test_parity.py)."""
    from ltx_pipeline.engine import euler_step

    moved = []
    to = torch.Tensor.to

    def watched_to(self, *args, **kwargs):
        result = to(self, *args, **kwargs)
        if self.device.type == "cpu" and result.device.type != "cpu":
            moved.append(tuple(self.shape))
        return result

    monkeypatch.setattr(torch.Tensor, "to", watched_to)
    latents, estimate = torch.zeros(1, 8, 4, device="meta"), torch.zeros(1, 8, 4, device="meta")
    assert euler_step(latents, estimate, 0.909375, 0.725).device.type == "meta"
    assert moved == []


def test_every_pass_is_given_the_token_positions_made_once_per_stage():
    """Without them diffusers' forward makes the positions in every pass, with copies from the host that wait for the
    queued GPU work; the loop makes them once per stage and hands them to each pass."""
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components())
    seen = []

    def note(module, args, kwargs):
        seen.append((kwargs.get("video_coords"), kwargs.get("audio_coords")))

    pipe.transformer.register_forward_pre_hook(note, with_kwargs=True)
    pipe(**SMALL)
    assert len(seen) > 2
    assert all(video is not None and audio is not None for video, audio in seen)
    # One set per stage: the stage's passes share the same tensors (expanded to the pass's batch).
    assert len({video.data_ptr() for video, _ in seen}) == 2 == len({audio.data_ptr() for _, audio in seen})
