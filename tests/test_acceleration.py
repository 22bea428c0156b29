"""The speed and memory switches of ltx_pipeline.speed.acceleration, on tiny real components on CPU."""

import argparse
import contextlib
import importlib.util
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
from diffusers.hooks.group_offloading import _is_group_offload_enabled
from diffusers.models.activations import GELU
from diffusers.models.attention_dispatch import _AttentionBackendRegistry
from diffusers.models.transformers.transformer_ltx2 import (
    LTX2Attention,
    LTX2AudioVideoAttnProcessor,
    LTX2AudioVideoRotaryPosEmbed,
    LTX2PerturbedAttnProcessor,
    apply_split_rotary_emb,
)
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from benchmarks.bench_full_size import unfuse_feed_forward_gelu, use_diffusers_rotary  # the benchmark's undo steps
from ltx_pipeline import TI2VidTwoStagesPipeline, constants
from ltx_pipeline.speed import acceleration, forward_graphs, fp8_kernels, rotary_kernels
from ltx_pipeline.speed.acceleration import (
    FP8_DTYPE,
    ROTARY_EMBEDDINGS,
    Fp8GeluFeedForward,
    Fp8Linear,
    Fp8StorageLinear,
    LinearTanhGelu,
    MemoryMode,
    SpeedOptions,
    add_speed_arguments,
    apply_memory_mode,
    apply_speed_options,
    available_attention_backends,
    decoder_spatial_upscale,
    enable_vae_tiling,
    fp8_matmul_supported,
    fuse_feed_forward_gelu,
    fuse_fp8_feed_forwards,
    place_pipeline,
    quantize_linear_layers_to_fp8,
    quantize_to_fp8,
    rotary_embeddings,
    speed_options_from_args,
    weight_bytes,
)
from ltx_pipeline.speed.attention_processors import HalfTableRotaryPosEmbed, OutOfPlaceRotaryAttnProcessor
from ltx_pipeline.speed.fused_norms import fuse_modulated_norms
from ltx_pipeline.speed.rotary_kernels import apply_split_rotary_emb_out_of_place
from ltx_pipeline.tiny import build_tiny_components, tiny_component_kwargs

VIDEO_FRAMES, VIDEO_HEIGHT, VIDEO_WIDTH, AUDIO_FRAMES, TEXT_TOKENS = 2, 2, 3, 5, 8


@pytest.fixture(autouse=True)
def restore_global_attention_backend():
    # diffusers' set_attention_backend also changes a process-wide default; keep it from leaking between tests.
    saved = _AttentionBackendRegistry._active_backend
    yield
    _AttentionBackendRegistry.set_active_backend(saved)


def transformer_inputs(dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    config = tiny_component_kwargs("2.3")["transformer"]
    video_tokens = VIDEO_FRAMES * VIDEO_HEIGHT * VIDEO_WIDTH
    timestep = torch.tensor([600.0])
    return {
        "hidden_states": torch.randn(1, video_tokens, config["in_channels"], generator=generator).to(dtype),
        "audio_hidden_states": torch.randn(1, AUDIO_FRAMES, config["audio_in_channels"], generator=generator).to(
            dtype
        ),
        "encoder_hidden_states": torch.randn(1, TEXT_TOKENS, config["cross_attention_dim"], generator=generator).to(
            dtype
        ),
        "audio_encoder_hidden_states": torch.randn(
            1, TEXT_TOKENS, config["audio_cross_attention_dim"], generator=generator
        ).to(dtype),
        "timestep": timestep,
        "sigma": timestep,
        "num_frames": VIDEO_FRAMES,
        "height": VIDEO_HEIGHT,
        "width": VIDEO_WIDTH,
        "audio_num_frames": AUDIO_FRAMES,
        "return_dict": False,
    }


@torch.no_grad()
def run_transformer(transformer: nn.Module, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    video, audio = transformer(**transformer_inputs(dtype))
    return video.float(), audio.float()


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return ((output - reference).norm() / reference.norm()).item()


# --- Names and validation -------------------------------------------------------------------------------------


def test_memory_mode_from_name_accepts_each_documented_name():
    names = ("full-gpu-bf16", "fp8-storage", "24gb", "16gb")
    assert [MemoryMode.from_name(name) for name in names] == list(MemoryMode)


def test_unknown_memory_mode_lists_the_valid_names():
    with pytest.raises(ValueError, match="memory_mode.*'full-gpu-bf16', 'fp8-storage', '24gb', '16gb'.*got '12gb'"):
        MemoryMode.from_name("12gb")


def test_unknown_attention_backend_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="attention_backend.*native.*got 'fastest'"):
        SpeedOptions(attention_backend="fastest")


def test_unknown_fp8_scaling_is_refused():
    with pytest.raises(ValueError, match="fp8_scaling.*rowwise, tensor.*got 'channel'"):
        SpeedOptions(fp8=True, fp8_scaling="channel")


def test_backend_whose_package_is_missing_gives_a_value_error_naming_what_runs_here():
    if "flash" in available_attention_backends():
        pytest.skip("flash-attn is installed here, so the 'flash' backend is available")
    transformer = build_tiny_components()["transformer"]
    with pytest.raises(ValueError, match="attention_backend.*'flash'.*available: .*native"):
        apply_speed_options(transformer, SpeedOptions(attention_backend="flash"))


def test_speed_options_need_a_transformer():
    with pytest.raises(ValueError, match="no `transformer`"):
        apply_speed_options({"vae": nn.Linear(2, 2)}, SpeedOptions(compile=True))


# --- fp8 products -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scaling", ["rowwise", "tensor"])
def test_fp8_quantization_round_trips_within_e4m3_precision(scaling):
    torch.manual_seed(0)
    tensor = torch.randn(64, 96) * torch.logspace(-2, 2, 64).unsqueeze(1)  # rows of very different magnitudes
    values, scale = quantize_to_fp8(tensor, scaling)
    assert values.dtype == FP8_DTYPE
    assert scale.shape == ((64, 1) if scaling == "rowwise" else ())
    restored = values.float() * scale
    # e4m3 keeps 3 mantissa bits: relative rounding error <= 2^-4 for normal values; below the normal range the
    # absolute error is at most half the smallest subnormal step (2^-10) times the scale.
    tolerance = tensor.abs() * 2**-4 + scale * 2**-10
    assert torch.all((restored - tensor).abs() <= tolerance * 1.0001)
    assert torch.all(values.float().abs().amax(dim=-1) <= torch.finfo(FP8_DTYPE).max)


@pytest.mark.parametrize("scaling", ["rowwise", "tensor"])
def test_fp8_linear_matches_its_float_emulation_and_stays_near_the_linear(scaling):
    torch.manual_seed(0)
    linear = nn.Linear(128, 64).to(torch.bfloat16)
    inputs = torch.randn(3, 10, 128, dtype=torch.bfloat16)
    reference = linear(inputs).float()
    emulated = Fp8Linear(linear, scaling=scaling, emulate=True)(inputs).float()
    assert emulated.shape == reference.shape
    error = relative_error(emulated, reference)
    assert 1e-3 < error < 0.08, error  # quantized (not a copy of the bf16 product) yet close to it
    try:
        kernel = Fp8Linear(linear, scaling=scaling, emulate=False)(inputs).float()
    except (RuntimeError, NotImplementedError) as error:
        pytest.skip(f"torch._scaled_mm does not run on this CPU build: {error}")
    assert relative_error(kernel, emulated) < 1e-2  # same quantized operands; only bf16 output rounding differs


def test_quantizing_the_tiny_transformer_swaps_only_block_projections():
    transformer = build_tiny_components()["transformer"]
    reference_video, reference_audio = run_transformer(transformer)
    # The layers whose inputs are video tokens (or text, for the video's cross-attention keys and values).
    video_side = ("attn1.", "attn2.", "ff.", "audio_to_video_attn.to_q", "audio_to_video_attn.to_out")
    video_side += ("video_to_audio_attn.to_k", "video_to_audio_attn.to_v")
    expected = [
        name
        for name, module in transformer.named_modules()
        if isinstance(module, nn.Linear)
        and name.startswith("transformer_blocks.")
        and name.split(".", 2)[2].startswith(video_side)
        and not name.endswith("to_gate_logits")
    ]
    replaced = quantize_linear_layers_to_fp8(transformer, scaling="rowwise", emulate=True)
    assert replaced == len(expected) > 0
    assert all(isinstance(transformer.get_submodule(name), Fp8Linear) for name in expected)
    assert isinstance(transformer.proj_in, nn.Linear) and isinstance(transformer.proj_out, nn.Linear)
    block = transformer.transformer_blocks[0]
    assert isinstance(block.attn1.to_gate_logits, nn.Linear)
    # The audio stream's own layers see ~25 tokens a second: they stay in bf16.
    for kept in (block.audio_attn1.to_q, block.audio_ff.net[2], block.video_to_audio_attn.to_q):
        assert type(kept) is nn.Linear
    assert type(block.audio_to_video_attn.to_k) is nn.Linear
    video, audio = run_transformer(transformer)
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()
    assert 1e-4 < relative_error(video, reference_video) < 0.1
    assert 1e-4 < relative_error(audio, reference_audio) < 0.1


def test_fp8_kernels_are_reported_only_for_cuda_devices_that_have_them():
    assert fp8_matmul_supported("cpu") is False


@pytest.mark.gpu
def test_fp8_speed_option_on_gpu_uses_the_kernel():
    if not torch.cuda.is_available() or not fp8_matmul_supported("cuda"):
        pytest.skip("needs a CUDA GPU with fp8 tensor cores (compute capability >= 8.9)")
    transformer = build_tiny_components()["transformer"].to("cuda", torch.bfloat16)
    apply_speed_options(transformer, SpeedOptions(fp8=True))
    assert not transformer.transformer_blocks[0].attn1.to_q.emulate


# --- fp8 scales in one pass (fp8_kernels) --------------------------------------------------------------------


@pytest.mark.parametrize("bias, gelu", [(False, False), (True, False), (True, True)])
def test_row_quantization_computes_the_scales_of_the_biased_gelu_in_float32(bias, gelu):
    torch.manual_seed(0)
    rows = (torch.randn(5, 96) * torch.logspace(-2, 2, 5).unsqueeze(1)).to(torch.bfloat16)
    row_bias = torch.randn(96, dtype=torch.bfloat16) if bias else None
    values, scales = fp8_kernels.quantize_rows(rows, row_bias, gelu)
    expected = rows.float() + (row_bias.float() if bias else 0)
    expected = F.gelu(expected, approximate="tanh") if gelu else expected
    expected_values, expected_scales = quantize_to_fp8(expected, "rowwise")
    assert values.dtype == FP8_DTYPE and scales.shape == (5, 1)
    assert torch.equal(values.float(), expected_values.float()) and torch.equal(scales, expected_scales)


def test_row_quantization_names_the_shapes_it_cannot_take():
    with pytest.raises(ValueError, match=r"`rows` must be 2-D.*got \(2, 3, 4\) and None"):
        fp8_kernels.quantize_rows(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"`bias` None or \(features,\); got \(2, 4\) and \(3,\)"):
        fp8_kernels.quantize_rows(torch.zeros(2, 4), bias=torch.zeros(3))


TRITON_INTERPRETER_CHECK = """
import torch, torch.nn.functional as F
from ltx_pipeline.speed import fp8_kernels
torch.manual_seed(0)
for features, bias, gelu in [(4096, False, False), (16384, True, True), (100, True, False)]:
    rows = (torch.randn(4, features) * 3).to(torch.bfloat16)
    row_bias = torch.randn(features, dtype=torch.bfloat16) if bias else None
    values, scales = fp8_kernels.launch_quantize_rows(rows, row_bias, gelu, values_dtype=torch.float32)
    _, expected_scales = fp8_kernels.quantize_rows_reference(rows, row_bias, gelu)
    expected = rows.float() + (row_bias.float() if bias else 0)
    expected = F.gelu(expected, approximate="tanh") if gelu else expected
    expected_values = (expected / expected_scales).clamp(-448, 448)
    assert torch.equal(scales, expected_scales), features
    # the GELU as x sigmoid(2u) in the kernel, as 0.5 x (1 + tanh(u)) in torch: float32 rounding apart
    assert (values - expected_values).abs().max() <= (1e-4 if gelu else 0), features
print("ok")
"""


def run_in_tritons_interpreter(script: str) -> None:
    """Runs `script` (which prints "ok") with TRITON_INTERPRET=1: the kernels run on CUDA; Triton's interpreter runs
    the same programs on the CPU (slowly), where they are checked."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed (CUDA builds of torch ship it)")
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_row_quantization_kernel_computes_the_reference_in_tritons_interpreter():
    run_in_tritons_interpreter(TRITON_INTERPRETER_CHECK)


@pytest.mark.gpu
@pytest.mark.parametrize("features, bias, gelu", [(4096, False, False), (16384, True, True)])
def test_row_quantization_kernel_on_gpu_matches_the_reference_eager_and_compiled(features, bias, gelu):
    if not torch.cuda.is_available() or fp8_kernels.triton is None:
        pytest.skip("needs a CUDA GPU and Triton")
    torch.manual_seed(0)
    rows = (torch.randn(300, features, device="cuda") * 3).to(torch.bfloat16)
    row_bias = torch.randn(features, device="cuda", dtype=torch.bfloat16) if bias else None
    reference_values, reference_scales = fp8_kernels.quantize_rows_reference(rows, row_bias, gelu)
    exact = fp8_kernels.launch_quantize_rows(rows, row_bias, gelu)
    compiled = torch.compile(fp8_kernels.quantize_rows, fullgraph=True)
    fast = (fp8_kernels.quantize_rows(rows, row_bias, gelu), compiled(rows, row_bias, gelu))
    # exact arithmetic: the same values but where float32 rounding of the GELU crosses an fp8 rounding boundary;
    # fast math (what quantize_rows runs on CUDA): a few more (0.07-0.11 % on an H200, bench_row_kernel.py)
    for (values, scales), most_changed in ((exact, 1e-3 if gelu else 0.0), (fast[0], 5e-3), (fast[1], 5e-3)):
        assert torch.allclose(scales, reference_scales, rtol=1e-6, atol=0)
        changed = (values.float() != reference_values.float()).float().mean().item()
        assert changed <= most_changed, changed
        assert torch.allclose(values.float(), reference_values.float(), rtol=2**-3, atol=2**-9)


def test_fp8_row_kernel_needs_row_wise_fp8():
    with pytest.raises(ValueError, match=r"fp8_row_kernel=True.*fp8=True.*got fp8=False, fp8_scaling='rowwise'"):
        SpeedOptions(fp8_row_kernel=True)
    with pytest.raises(ValueError, match=r"got fp8=True, fp8_scaling='tensor'"):
        SpeedOptions(fp8=True, fp8_scaling="tensor", fp8_row_kernel=True)


def transformer_beside_fp8_alone(options: SpeedOptions) -> tuple[nn.Module, nn.Module]:
    """Two tiny transformers of the same weights: one with `options` applied, one with `SpeedOptions(fp8=True)`."""
    transformer, reference = build_tiny_components()["transformer"], build_tiny_components()["transformer"]
    apply_speed_options(transformer, options)
    apply_speed_options(reference, SpeedOptions(fp8=True))
    return transformer, reference


def test_fp8_row_kernel_fuses_each_video_feed_forward_and_keeps_outputs():
    transformer, reference = transformer_beside_fp8_alone(SpeedOptions(fp8=True, fp8_row_kernel=True))
    reference_video, reference_audio = run_transformer(reference)
    blocks = transformer.transformer_blocks
    assert all(isinstance(block.ff, Fp8GeluFeedForward) for block in blocks)
    assert not any(isinstance(block.audio_ff, Fp8GeluFeedForward) for block in blocks)  # bf16 products there
    assert isinstance(blocks[0].ff.net[0].proj, Fp8Linear)  # the layers keep their names
    assert set(transformer.state_dict()) == set(reference.state_dict())
    assert fuse_fp8_feed_forwards(transformer) == 0  # nothing left to fuse
    video, audio = run_transformer(transformer)
    # float32 on the CPU: the bias + GELU + scales in one step compute what the three steps computed
    assert relative_error(video, reference_video) < 1e-5
    assert relative_error(audio, reference_audio) < 1e-5


def test_fp8_gelu_feed_forward_refuses_a_feed_forward_without_fp8_products():
    feed_forward = build_tiny_components()["transformer"].transformer_blocks[0].ff
    with pytest.raises(ValueError, match=r"FeedForward of a tanh GELU.*got FeedForward with net \['GELU', 'Dropout'"):
        Fp8GeluFeedForward(feed_forward)


def test_fp8_row_kernel_flag_reaches_the_speed_options():
    parser = argparse.ArgumentParser()
    add_speed_arguments(parser)
    assert speed_options_from_args(parser.parse_args(["--fp8", "--fp8-row-kernel"])).fp8_row_kernel
    with pytest.raises(ValueError, match="fp8_row_kernel=True"):
        speed_options_from_args(parser.parse_args(["--fp8-row-kernel"]))


def test_fp8_row_kernel_with_fused_rotary_gates_each_video_attention_output_in_one_pass():
    options = SpeedOptions(fp8=True, fp8_row_kernel=True, fused_rotary=True)
    transformer, reference = build_tiny_components()["transformer"], build_tiny_components()["transformer"]
    apply_speed_options(transformer, options)
    apply_speed_options(reference, SpeedOptions(fp8=True, fused_rotary=True))
    gated = {
        name.rsplit(".", 1)[-1]
        for name, module in transformer.transformer_blocks[0].named_modules()
        if getattr(getattr(module, "processor", None), "fp8_gated_output", False)
    }
    # the video-query attentions, whose out-projections are fp8; the audio ones stay bf16
    assert gated == {"attn1", "attn2", "audio_to_video_attn"}
    video, audio = run_transformer(transformer)
    reference_video, reference_audio = run_transformer(reference)
    # float32 on the CPU: the gating and the scales in one step compute what the two steps computed
    assert relative_error(video, reference_video) < 1e-5
    assert relative_error(audio, reference_audio) < 1e-5


def test_gated_heads_name_the_shapes_they_cannot_take():
    with pytest.raises(ValueError, match=r"`attention` must be \(B, T, H, D\).*got \(1, 2, 3\) and \(1, 2\)"):
        fp8_kernels.quantize_gated_heads(torch.zeros(1, 2, 3), torch.zeros(1, 2))


GATED_HEADS_INTERPRETER_CHECK = """
import torch
from ltx_pipeline.speed import fp8_kernels
torch.manual_seed(0)
for heads, head_dim in [(32, 128), (3, 20)]:
    attention = torch.randn(2, heads, 5, head_dim).transpose(1, 2)  # cuDNN's layout seen as (B, T, H, D)
    logits = torch.randn(2, 5, heads)
    values, scales = fp8_kernels.launch_gated_heads(attention, logits, values_dtype=torch.float32)
    _, expected_scales = fp8_kernels.gated_heads_reference(attention, logits)
    gated = (attention * 2 * torch.sigmoid(logits).unsqueeze(-1)).reshape(10, heads * head_dim)
    assert torch.allclose(scales, expected_scales, rtol=1e-6), heads
    assert torch.allclose(values, (gated / expected_scales).clamp(-448, 448), rtol=1e-5, atol=1e-5), heads
print("ok")
"""


def test_gated_heads_kernel_computes_the_reference_in_tritons_interpreter():
    run_in_tritons_interpreter(GATED_HEADS_INTERPRETER_CHECK)


@pytest.mark.gpu
def test_gated_heads_kernel_on_gpu_matches_the_reference():
    if not torch.cuda.is_available() or fp8_kernels.triton is None:
        pytest.skip("needs a CUDA GPU and Triton")
    torch.manual_seed(0)
    attention = torch.randn(1, 32, 600, 128, device="cuda").to(torch.bfloat16).transpose(1, 2)  # (B, T, H, D)
    logits = torch.randn(1, 600, 32, device="cuda").to(torch.bfloat16)
    values, scales = fp8_kernels.quantize_gated_heads(attention, logits)
    expected_values, expected_scales = fp8_kernels.gated_heads_reference(attention, logits)
    # the GPU's sigmoid and a bf16 rounding of the gated value now and then on the other side; the scale's inverse
    assert torch.allclose(scales, expected_scales, rtol=2**-7)
    changed = (values.float() != expected_values.float()).float().mean().item()
    assert changed < 2e-2, changed
    assert torch.allclose(values.float(), expected_values.float(), rtol=2**-3, atol=2**-9)


# --- The video norms, their modulation and fp8 scales in one pass ----------------------------------------------


def test_fused_norms_need_compile():
    with pytest.raises(ValueError, match=r"fused_norms=True.*needs `compile=True`"):
        SpeedOptions(fp8=True, fused_norms=True)
    assert SpeedOptions(compile=True, fused_norms=True).fused_norms  # bf16 products: the norms alone


def test_fused_norms_flag_reaches_the_speed_options():
    parser = argparse.ArgumentParser()
    add_speed_arguments(parser)
    assert speed_options_from_args(parser.parse_args(["--compile", "--fused-norms"])).fused_norms
    with pytest.raises(ValueError, match="fused_norms=True"):
        speed_options_from_args(parser.parse_args(["--fused-norms"]))


def diffusers_block_norm(block: nn.Module, hidden, update, update_bias, gate, scale, shift):
    """What a diffusers LTX-2 block computes before its feed-forward: the residual add, norm3, the modulation, then
    `Fp8Linear`'s quantization of the result."""
    residual = hidden + (update + update_bias) * gate
    modulated = block.norm3(residual) * (1 + scale) + shift
    return (residual, modulated, *quantize_to_fp8(modulated.reshape(-1, modulated.shape[-1]), "rowwise"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_modulated_norm_reference_computes_what_the_diffusers_block_does(dtype):
    block = build_tiny_components()["transformer"].transformer_blocks[0].to(dtype)
    generator = torch.Generator().manual_seed(0)
    dim = block.scale_shift_table.shape[1]
    hidden, update = (torch.randn(2, 6, dim, generator=generator).to(dtype) for _ in range(2))
    update_bias = torch.randn(dim, generator=generator).to(dtype)
    gate, scale, shift = (torch.randn(2, 1, dim, generator=generator).to(dtype) for _ in range(3))
    expected = diffusers_block_norm(block, hidden, update, update_bias, gate, scale, shift)
    fused = fp8_kernels.modulated_rms_norm_reference(
        hidden, scale, shift, block.norm3.eps, update.reshape(12, dim), update_bias, gate
    )
    if dtype == torch.float32:  # the same float32 arithmetic
        for output, reference in zip(fused, expected, strict=True):
            assert torch.equal(output.float(), reference.float())
    else:  # the fused one rounds to bf16 once where eager rounds each step: within bf16's rounding
        for output, reference in zip(fused[:2], expected[:2], strict=True):
            assert relative_error(output.float(), reference.float()) < 1e-2
        assert relative_error(fused[2].float() * fused[3], expected[2].float() * expected[3]) < 5e-2


# In float32: Triton's interpreter truncates casts to bf16 rather than rounding them (-3.6369 -> -3.625); the GPU test
# below checks the bf16 roundings.
MODULATED_NORM_INTERPRETER_CHECK = """
import torch
from ltx_pipeline.speed import fp8_kernels
torch.manual_seed(0)
for features, residual, per_token in [(4096, True, False), (100, False, True), (48, True, True)]:
    def draw(*shape):
        return torch.randn(*shape) * 2
    hidden = draw(2, 3, features)
    scale, shift = draw(2, 3 if per_token else 1, features), draw(2, 3 if per_token else 1, features)
    extra = (draw(6, features), draw(features), draw(2, 1, features)) if residual else (None, None, None)
    outputs = fp8_kernels.launch_modulated_rms_norm(hidden, scale, shift, 1e-6, *extra, values_dtype=torch.float32)
    expected = fp8_kernels.modulated_rms_norm_reference(hidden, scale, shift, 1e-6, *extra)
    assert torch.equal(outputs[0], expected[0]) if residual else outputs[0].numel() == 0
    for output, reference in zip(outputs[1:2] + outputs[3:], expected[1:2] + expected[3:]):
        assert torch.allclose(output, reference, rtol=1e-5, atol=1e-6), features  # float32 sums in another order
    values = (expected[1].reshape(-1, features) / outputs[3]).clamp(-448, 448)
    assert torch.allclose(outputs[2], values, rtol=1e-5, atol=1e-5), features
print("ok")
"""


def test_modulated_norm_kernel_computes_the_reference_in_tritons_interpreter():
    run_in_tritons_interpreter(MODULATED_NORM_INTERPRETER_CHECK)


def test_fused_norms_pass_fuses_a_norm_feeding_a_bf16_product_without_fp8_scales():
    norm = build_tiny_components()["transformer"].transformer_blocks[0].norm1  # diffusers' RMSNorm, no weight

    def block(hidden: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(norm(hidden) * (1 + scale) + shift, weight)

    arguments = (torch.randn(1, 6, 32), torch.randn(1, 1, 32), torch.randn(1, 1, 32), torch.randn(16, 32))
    module = make_fx(block, tracing_mode="fake")(*arguments)  # fake values, as in inductor's post-grad graphs
    assert fuse_modulated_norms(module.graph) == 1
    module.recompile()
    calls = [node for node in module.graph.nodes if node.target == torch.ops.ltx_pipeline.modulated_rms_norm.default]
    assert len(calls) == 1 and calls[0].args[-1] is False  # no fp8 scales: nothing quantizes these rows
    assert torch.equal(module(*arguments), block(*arguments))  # float32: the same arithmetic


def test_fused_norms_pass_leaves_a_graph_without_a_modulated_norm_as_it_is():
    linear = nn.Linear(32, 16)
    graph = make_fx(lambda hidden: linear(torch.nn.functional.rms_norm(hidden, (32,)) + 1))(
        torch.randn(1, 6, 32)
    ).graph
    before = [node.target for node in graph.nodes]
    assert fuse_modulated_norms(graph) == 0
    assert [node.target for node in graph.nodes] == before


def compiled_outputs(fused_norms: bool, fp8: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    torch._dynamo.reset()
    transformer = build_tiny_components()["transformer"]
    apply_speed_options(transformer, SpeedOptions(compile=True, fp8=fp8, fused_norms=fused_norms))
    with torch._inductor.config.patch(fx_graph_cache=False):  # a cached graph would not run the pass again
        return run_transformer(transformer)


# The fp8 case compiles for ~18 s on 2 cores: in the slow run (the pass itself is the same; the GPU tests run fp8).
@pytest.mark.parametrize("fp8", [pytest.param(True, marks=pytest.mark.slow), False], ids=["fp8", "bf16-products"])
def test_fused_norms_replace_each_block_norm_and_keep_outputs(caplog, fp8):
    reference_video, reference_audio = compiled_outputs(fused_norms=False, fp8=fp8)
    with caplog.at_level(logging.INFO, logger="ltx_pipeline.speed.fused_norms"):
        video, audio = compiled_outputs(fused_norms=True, fp8=fp8)
    # The blocks share one graph: in each stream norm1 (self-attention), norm2 (text), the cross-modal norm twice
    # (one modulation for its own queries, one for the other attention's keys and values) and norm3 (feed-forward).
    fused = [
        record.getMessage().split()[1] for record in caplog.records if record.name == "ltx_pipeline.speed.fused_norms"
    ]
    assert fused == ["10"]
    # float32 on the CPU: the same arithmetic as the compiled graph's
    assert relative_error(video, reference_video) < 1e-5
    assert relative_error(audio, reference_audio) < 1e-5


@pytest.mark.gpu
def test_modulated_norm_kernel_on_gpu_matches_the_reference():
    if not torch.cuda.is_available() or fp8_kernels.triton is None:
        pytest.skip("needs a CUDA GPU and Triton")
    torch.manual_seed(0)

    def draw(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, device="cuda") * 2).to(torch.bfloat16)

    hidden, scale, shift = draw(2, 300, 4096), draw(2, 1, 4096), draw(2, 1, 4096)
    extra = (draw(600, 4096), draw(4096), draw(2, 1, 4096))
    expected = fp8_kernels.modulated_rms_norm_reference(hidden, scale, shift, 1e-6, *extra)
    outputs = torch.ops.ltx_pipeline.modulated_rms_norm(hidden, scale, shift, 1e-6, *extra, True, True)
    # Fused multiply-adds and float32 sums in another order: now and then the neighbouring bf16 value; in the
    # modulated rows such a step of the norm is scaled by (1 + scale), up to ~8 here.
    for output, reference, most in zip(outputs[:2], expected[:2], (2**-12, 2**-3), strict=True):
        changed = (output != reference).float().mean().item()
        difference = (output.float() - reference.float()).abs() - reference.float().abs() * 2**-7
        assert changed < 5e-2 and difference.max().item() <= most, (changed, difference.max().item())
    # The fp8 values and scales are those of the kernel's own modulated rows (fast math: the scale's inverse).
    values, scales = quantize_to_fp8(outputs[1].reshape(600, 4096), "rowwise")
    assert torch.allclose(outputs[3], scales, rtol=1e-6, atol=0)
    changed = (outputs[2].float() != values.float()).float().mean().item()
    assert changed < 5e-3, changed
    assert torch.allclose(outputs[2].float(), values.float(), rtol=2**-3, atol=2**-9)


@pytest.mark.gpu
def test_fused_norms_on_gpu_replace_the_norms_in_the_graphed_blocks(caplog):
    if not fp8_matmul_supported("cuda" if torch.cuda.is_available() else "cpu"):
        pytest.skip("needs a CUDA GPU with fp8 matrix products")
    outputs = []
    for fused_norms in (False, True):
        torch._dynamo.reset()
        transformer = build_tiny_components()["transformer"].to("cuda", torch.bfloat16)
        options = SpeedOptions(compile=True, cuda_graphs=True, fp8=True, fused_norms=fused_norms)
        apply_speed_options(transformer, options)
        with caplog.at_level(logging.INFO, logger="ltx_pipeline.speed.fused_norms"), torch.no_grad():
            with torch._inductor.config.patch(fx_graph_cache=False):
                inputs = {
                    name: value.to("cuda") if isinstance(value, torch.Tensor) else value
                    for name, value in transformer_inputs(torch.bfloat16).items()
                }
                for _ in range(3):  # recorded at the first passes, then replayed
                    torch.compiler.cudagraph_mark_step_begin()  # the last pass's outputs are not read again
                    video, audio = transformer(**inputs)
        outputs.append((video.float(), audio.float()))
    fused = [
        record.getMessage().split()[1] for record in caplog.records if record.name == "ltx_pipeline.speed.fused_norms"
    ]
    assert fused == ["10"]
    (reference_video, reference_audio), (video, audio) = outputs
    assert relative_error(video, reference_video) < 5e-2  # fp8 values that round the other way, on a tiny model
    assert relative_error(audio, reference_audio) < 5e-2


# --- GELU in the feed-forward product's epilogue --------------------------------------------------------------


def feed_forward_activations(transformer: nn.Module) -> list[nn.Module]:
    """Each block's video and audio feed-forward's first module: diffusers' `GELU` (`net[0]`), or what replaced it."""
    return [ff.net[0] for block in transformer.transformer_blocks for ff in (block.ff, block.audio_ff)]


def test_fused_module_computes_the_tanh_gelu_off_cuda():
    torch.manual_seed(0)
    gelu = GELU(16, 64, approximate="tanh")
    inputs = 4 * torch.randn(3, 5, 16)  # pre-activations of magnitude ~2, where tanh and erf GELU differ most
    with torch.no_grad():
        output = LinearTanhGelu(gelu)(inputs)
        pre_activations = gelu.proj(inputs)
        flat_inputs = inputs.reshape(-1, 16)  # (3, 5, 16) -> (15, 16)
        cpu_epilogue = torch._addmm_activation(gelu.proj.bias, flat_inputs, gelu.proj.weight.t(), use_gelu=True)
    assert output.shape == (3, 5, 64)
    assert torch.equal(output, F.gelu(pre_activations, approximate="tanh"))
    exact = F.gelu(pre_activations)
    assert (output - exact).abs().max() > 1e-4
    # Why the CPU path must not take the epilogue: there the same op computes the exact GELU.
    assert torch.allclose(cpu_epilogue.reshape(3, 5, 64), exact, atol=1e-6)


def test_fused_module_refuses_a_gelu_it_cannot_fuse():
    with pytest.raises(ValueError, match="approximate='tanh'.*got GELU with approximate='none'"):
        LinearTanhGelu(GELU(16, 64))


def test_gelu_epilogue_fuses_every_feed_forward_and_keeps_outputs():
    transformer = build_tiny_components()["transformer"]
    reference_video, reference_audio = run_transformer(transformer)
    gelu_names = [name for name, module in transformer.named_modules() if isinstance(module, GELU)]
    assert sorted(gelu_names) == sorted(
        f"transformer_blocks.{index}.{ff}.net.0"
        for index in range(len(transformer.transformer_blocks))
        for ff in ("ff", "audio_ff")
    )
    projections = [gelu.proj for gelu in feed_forward_activations(transformer)]
    parameter_names = set(transformer.state_dict())

    apply_speed_options(transformer, SpeedOptions(gelu_epilogue=True))
    fused = feed_forward_activations(transformer)
    assert len(fused) == 2 * len(transformer.transformer_blocks)
    assert all(isinstance(module, LinearTanhGelu) for module in fused)
    assert not any(isinstance(module, GELU) for module in transformer.modules())
    assert all(module.proj is proj for module, proj in zip(fused, projections, strict=True))  # the same Linears
    assert set(transformer.state_dict()) == parameter_names
    video, audio = run_transformer(transformer)
    assert torch.equal(video, reference_video) and torch.equal(audio, reference_audio)


def test_fusing_twice_does_not_nest_and_unfusing_restores_the_gelu_modules():
    transformer = build_tiny_components()["transformer"]
    reference_video, _ = run_transformer(transformer)
    expected = 2 * len(transformer.transformer_blocks)
    assert fuse_feed_forward_gelu(transformer) == expected
    apply_speed_options(transformer, SpeedOptions(gelu_epilogue=True))
    fused = feed_forward_activations(transformer)
    assert sum(isinstance(module, LinearTanhGelu) for module in transformer.modules()) == expected
    assert all(type(module.proj) is nn.Linear for module in fused)

    assert unfuse_feed_forward_gelu(transformer) == expected
    restored = feed_forward_activations(transformer)
    assert all(type(module) is GELU and module.approximate == "tanh" for module in restored)
    assert all(new.proj is old.proj for new, old in zip(restored, fused, strict=True))
    assert torch.equal(run_transformer(transformer)[0], reference_video)


def test_gelu_epilogue_leaves_the_fp8_feed_forwards_alone():
    transformer, reference = transformer_beside_fp8_alone(SpeedOptions(fp8=True, gelu_epilogue=True))
    reference_video, reference_audio = run_transformer(reference)
    for block in transformer.transformer_blocks:
        assert type(block.ff.net[0]) is GELU and isinstance(block.ff.net[0].proj, Fp8Linear)
        assert isinstance(block.audio_ff.net[0], LinearTanhGelu)  # the audio stream stays in bf16 products
    video, audio = run_transformer(transformer)
    assert torch.equal(video, reference_video) and torch.equal(audio, reference_audio)


@pytest.mark.parametrize("memory_mode", ["fp8-storage", "24gb"])
def test_gelu_epilogue_under_an_fp8_memory_mode_computes_what_the_mode_computes(memory_mode: str):
    reference_video, reference_audio = transformer_output_in_mode(memory_mode)

    components = build_tiny_components()
    place_pipeline(components, "cpu", memory_mode, SpeedOptions(gelu_epilogue=True))
    fused = feed_forward_activations(components["transformer"])
    assert all(isinstance(module, LinearTanhGelu) for module in fused)
    if memory_mode == "24gb":  # its own fp8 layer, no hook
        assert all(isinstance(module.proj, Fp8StorageLinear) for module in fused)
    else:  # still stored in fp8, cast by the hook
        assert all(module.proj.weight.dtype == FP8_DTYPE for module in fused)
    video, audio = run_transformer(components["transformer"], torch.bfloat16)
    assert torch.equal(video, reference_video) and torch.equal(audio, reference_audio)


def test_gelu_epilogue_and_fused_rotary_flags_reach_the_speed_options():
    parser = argparse.ArgumentParser()
    add_speed_arguments(parser)
    assert speed_options_from_args(parser.parse_args(["--gelu-epilogue"])).gelu_epilogue
    assert speed_options_from_args(parser.parse_args(["--fused-rotary"])).fused_rotary
    defaults = speed_options_from_args(parser.parse_args([]))
    assert not defaults.gelu_epilogue and not defaults.fused_rotary


@pytest.mark.gpu
def test_gelu_epilogue_on_gpu_matches_the_unfused_product_within_bf16_rounding():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: the GELU epilogue is cuBLASLt's")
    torch.manual_seed(0)
    gelu = GELU(256, 1024, approximate="tanh").to("cuda", torch.bfloat16)
    inputs = torch.randn(2, 77, 256, device="cuda", dtype=torch.bfloat16)
    fused = LinearTanhGelu(gelu)
    with torch.no_grad():
        reference = F.gelu(F.linear(inputs, gelu.proj.weight, gelu.proj.bias), approximate="tanh").float()
        assert fused._runs_in_epilogue(inputs)
        eager = fused(inputs)
        compiled = torch.compile(fused, fullgraph=True)(inputs)
    assert eager.shape == (2, 77, 1024) and eager.dtype == torch.bfloat16
    # The epilogue rounds to bf16 once, after the GELU; the unfused path also rounds the product before it.
    for output in (eager, compiled):
        torch.testing.assert_close(output.float(), reference, rtol=2**-7, atol=2**-7)


# --- Attention backend and compilation -----------------------------------------------------------------------


# --- Out-of-place rotary embedding -----------------------------------------------------------------------------


def test_out_of_place_split_rotary_computes_what_diffusers_computes():
    generator = torch.Generator().manual_seed(0)
    batch, tokens, heads, head_dim = 1, 10, 4, 16
    cos, sin = (
        torch.randn(batch, tokens, heads, head_dim // 2, generator=generator).transpose(1, 2) for _ in range(2)
    )  # (B, H, T, D/2), the layout diffusers' rotary module returns
    tokens_first = torch.randn(batch, tokens, heads * head_dim, generator=generator).bfloat16()
    heads_first = torch.randn(batch, heads, tokens, head_dim, generator=generator)
    for x in (tokens_first, heads_first):
        expected = apply_split_rotary_emb(x, (cos, sin))
        rotated = apply_split_rotary_emb_out_of_place(x, (cos, sin))
        assert rotated.dtype == x.dtype and rotated.shape == expected.shape
        torch.testing.assert_close(rotated, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="even head size; got 15"):
        apply_split_rotary_emb_out_of_place(torch.randn(1, 2, 3, 15), (torch.ones(1, 2, 3, 7), torch.ones(1, 2, 3, 7)))


@pytest.mark.parametrize("perturbed_attn", [False, True], ids=["tiny-config", "perturbed-attention"])
def test_fused_rotary_gives_every_attention_the_processor_and_keeps_outputs_with_and_without_stg(perturbed_attn):
    # The full-size 2.3 config builds its blocks with LTX2PerturbedAttnProcessor (STG through a perturbation mask);
    # the tiny one with LTX2AudioVideoAttnProcessor. The new processor stands in for both.
    torch.manual_seed(0)
    config = {**tiny_component_kwargs("2.3")["transformer"], "perturbed_attn": perturbed_attn}
    transformer = LTX2VideoTransformer3DModel(**config).eval()
    attentions = [module for module in transformer.modules() if isinstance(module, LTX2Attention)]
    diffusers_processor = LTX2PerturbedAttnProcessor if perturbed_attn else LTX2AudioVideoAttnProcessor
    assert attentions and all(type(a.processor) is diffusers_processor for a in attentions)
    assert {a.rope_type for a in attentions} == {"split"}
    stg = {"spatio_temporal_guidance_blocks": [0], "perturbation_mask": torch.zeros(1)}
    with torch.no_grad():
        references = [transformer(**transformer_inputs(), **extra) for extra in ({}, stg)]

    apply_speed_options(transformer, SpeedOptions(fused_rotary=True))
    assert all(type(a.processor) is OutOfPlaceRotaryAttnProcessor for a in attentions)
    rotary = rotary_embeddings(transformer)
    assert len(rotary) == len(ROTARY_EMBEDDINGS) and all(type(m) is HalfTableRotaryPosEmbed for m in rotary)
    with torch.no_grad():
        outputs = [transformer(**transformer_inputs(), **extra) for extra in ({}, stg)]
    for (video, audio), (reference_video, reference_audio) in zip(outputs, references, strict=True):
        assert relative_error(video, reference_video) < 1e-6
        assert relative_error(audio, reference_audio) < 1e-6
    if perturbed_attn:  # STG did perturb, so the perturbed path was compared too
        assert relative_error(outputs[1][0], outputs[0][0]) > 1e-3

    assert use_diffusers_rotary(transformer) == len(attentions)
    assert all(type(a.processor) is diffusers_processor for a in attentions)
    assert all(type(module) is LTX2AudioVideoRotaryPosEmbed for module in rotary)


def test_half_table_rotary_keeps_float32_tables_off_cuda_and_the_tables_diffusers_makes():
    transformer = build_tiny_components()["transformer"]
    coords = transformer.rope.prepare_video_coords(1, 2, 2, 2, torch.device("cpu"), fps=24.0)
    reference = transformer.rope(coords)
    apply_speed_options(transformer, SpeedOptions(fused_rotary=True))
    tables = transformer.rope(coords)  # on CPU the PyTorch path rotates in float32 with float32 tables
    assert all(t.dtype == torch.float32 and torch.equal(t, r) for t, r in zip(tables, reference, strict=True))


NORM_ROTARY_INTERPRETER_CHECK = """
import torch
from ltx_pipeline.speed import rotary_kernels
torch.manual_seed(0)
for heads, half, shared in [(4, 8, True), (3, 5, False)]:
    # the tables as diffusers' rotary module returns them: (B, T, H, D/2) seen as (B, H, T, D/2)
    cos, sin = (torch.randn(2, 7, heads, half).transpose(1, 2) for _ in range(2))
    norms = [torch.nn.RMSNorm(heads * 2 * half, eps=1e-6) for _ in range(2)]
    for norm in norms:
        torch.nn.init.normal_(norm.weight)
    projections = [torch.randn(2, 7, heads * 2 * half) * 3 for _ in range(2 if shared else 1)]
    outputs = rotary_kernels.launch_norm_rotary(projections, norms[: len(projections)], (cos, sin))
    for projection, norm, output in zip(projections, norms, outputs):
        expected = rotary_kernels.norm_rotary_reference(projection, norm, (cos, sin))
        assert torch.allclose(output, expected, rtol=1e-5, atol=1e-5), (heads, (output - expected).abs().max())
    # float16 tables (HalfTableRotaryPosEmbed on CUDA): each rotated value off by at most a few of their roundings
    half_tables = (cos.clamp(-1, 1).half(), sin.clamp(-1, 1).half())
    outputs = rotary_kernels.launch_norm_rotary(projections, norms[: len(projections)], half_tables)
    for projection, norm, output in zip(projections, norms, outputs):
        normed = norm(projection).abs()
        expected = rotary_kernels.norm_rotary_reference(projection, norm, (cos.clamp(-1, 1), sin.clamp(-1, 1)))
        assert ((output - expected).abs() <= 2 * 2**-11 * normed.amax(-1, keepdim=True) + 1e-6).all()
print("ok")
"""


def test_norm_rotary_kernel_computes_the_reference_in_tritons_interpreter():
    run_in_tritons_interpreter(NORM_ROTARY_INTERPRETER_CHECK)


def test_norm_and_rotate_off_cuda_computes_what_the_processor_computed_unfused():
    generator = torch.Generator().manual_seed(0)
    cos, sin = (torch.randn(1, 6, 4, 8, generator=generator).transpose(1, 2) for _ in range(2))
    query, key = (torch.randn(1, 6, 64, generator=generator).bfloat16() for _ in range(2))
    norms = (torch.nn.RMSNorm(64, eps=1e-6).bfloat16(), torch.nn.RMSNorm(64, eps=1e-6).bfloat16())
    rotated = rotary_kernels.norm_and_rotate(query, key, norms, (cos, sin))
    for output, projection, norm in zip(rotated, (query, key), norms, strict=True):
        expected = apply_split_rotary_emb_out_of_place(norm(projection), (cos, sin))
        assert output.dtype == torch.bfloat16 and torch.equal(output, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("shared", [True, False], ids=["self-attention", "cross-attention"])
def test_norm_rotary_kernel_on_gpu_matches_the_reference(shared):
    if not torch.cuda.is_available() or rotary_kernels.triton is None:
        pytest.skip("needs a CUDA GPU and Triton")
    torch.manual_seed(0)
    heads, half, tokens = 32, 64, 600
    tables = [
        tuple(torch.randn(1, tokens, heads, half, device="cuda").transpose(1, 2) for _ in range(2))
        for _ in range(1 if shared else 2)
    ]
    norms = tuple(torch.nn.RMSNorm(heads * 2 * half, eps=1e-6).to("cuda", torch.bfloat16) for _ in range(2))
    for norm in norms:
        torch.nn.init.normal_(norm.weight)
    query, key = ((torch.randn(1, tokens, heads * 2 * half, device="cuda") * 3).bfloat16() for _ in range(2))
    key_table = None if shared else tables[1]
    outputs = rotary_kernels.norm_and_rotate(query, key, norms, tables[0], key_table)
    compiled = torch.compile(rotary_kernels.norm_and_rotate, fullgraph=True)(query, key, norms, tables[0], key_table)
    for output, compiled_output, projection, norm, table in zip(
        outputs, compiled, (query, key), norms, (tables[0], tables[-1]), strict=True
    ):
        expected = rotary_kernels.norm_rotary_reference(projection, norm, table)
        # torch's norm kernel and this one sum the squares in different orders: a bf16 rounding apart at most
        torch.testing.assert_close(output, expected, rtol=2**-7, atol=2**-6)
        assert torch.equal(compiled_output, output)


@pytest.mark.gpu
def test_fused_rotary_on_gpu_rotates_with_half_tables_and_keeps_outputs():
    if not torch.cuda.is_available() or rotary_kernels.triton is None:
        pytest.skip("needs a CUDA GPU and Triton")
    torch.manual_seed(0)
    transformer = build_tiny_components()["transformer"].to("cuda")
    inputs = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in transformer_inputs().items()}
    with torch.no_grad():
        reference = transformer(**inputs)
        apply_speed_options(transformer, SpeedOptions(fused_rotary=True))
        coords = transformer.rope.prepare_video_coords(
            1, VIDEO_FRAMES, VIDEO_HEIGHT, VIDEO_WIDTH, torch.device("cuda")
        )
        assert all(table.dtype == torch.float16 for table in transformer.rope(coords))
        outputs = transformer(**inputs)
    for output, expected in zip(outputs, reference, strict=True):
        assert relative_error(output, expected) < 1e-3  # float16 tables: about 2^-12 relative per rotated value


def test_fused_rotary_keeps_each_attentions_backend_in_either_order():
    transformer = build_tiny_components()["transformer"]
    apply_speed_options(transformer, SpeedOptions(video_attention_backend="_native_math", fused_rotary=True))
    for block in transformer.transformer_blocks:
        assert type(block.attn1.processor) is OutOfPlaceRotaryAttnProcessor
        assert block.attn1.processor._attention_backend.value == "_native_math"
        assert getattr(block.attn2.processor._attention_backend, "value", None) != "_native_math"
    apply_speed_options(transformer, SpeedOptions(attention_backend="_native_math"))
    apply_speed_options(transformer, SpeedOptions(fused_rotary=True))  # a second time: nothing to swap
    processors = [m.processor for m in transformer.modules() if isinstance(m, LTX2Attention)]
    assert all(p._attention_backend.value == "_native_math" for p in processors)


def test_attention_backend_option_reaches_every_attention_and_keeps_outputs():
    transformer = build_tiny_components()["transformer"]
    reference_video, reference_audio = run_transformer(transformer)
    apply_speed_options(transformer, SpeedOptions(attention_backend="_native_math"))
    processors = [module.processor for module in transformer.modules() if hasattr(module, "processor")]
    assert processors and all(p._attention_backend.value == "_native_math" for p in processors)
    video, audio = run_transformer(transformer)
    assert relative_error(video, reference_video) < 1e-5
    assert relative_error(audio, reference_audio) < 1e-5


def test_video_attention_backend_reaches_the_video_self_attention_alone():
    transformer = build_tiny_components()["transformer"]
    reference_video, reference_audio = run_transformer(transformer)
    apply_speed_options(transformer, SpeedOptions(video_attention_backend="_native_math"))
    for block in transformer.transformer_blocks:
        assert block.attn1.processor._attention_backend.value == "_native_math"
        for other in (block.attn2, block.audio_attn1, block.audio_to_video_attn, block.video_to_audio_attn):
            assert getattr(other.processor._attention_backend, "value", None) != "_native_math"
    video, audio = run_transformer(transformer)
    assert relative_error(video, reference_video) < 1e-5
    assert relative_error(audio, reference_audio) < 1e-5


def test_unknown_video_attention_backend_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="video_attention_backend.*native.*got 'fastest'"):
        SpeedOptions(video_attention_backend="fastest")


def test_cuda_graphs_need_compile():
    with pytest.raises(ValueError, match="cuda_graphs=True.*compile=True"):
        SpeedOptions(cuda_graphs=True)


def test_cuda_graphs_option_compiles_each_repeated_block_and_the_rotary_embeddings():
    transformer = build_tiny_components()["transformer"]
    apply_speed_options(transformer, SpeedOptions(compile=True, cuda_graphs=True))
    assert all(block._compiled_call_impl is not None for block in transformer.transformer_blocks)
    rotary = rotary_embeddings(transformer)
    assert len(rotary) == len(ROTARY_EMBEDDINGS)
    assert all(module._compiled_call_impl is not None for module in rotary)


@pytest.mark.slow
def test_pipeline_runs_with_cuda_graphs_option():
    # On the CPU torch.compile records no graphs; this checks that the pipeline's marked passes run compiled.
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components())
    apply_speed_options(pipe, SpeedOptions(compile=True, cuda_graphs=True))
    output = pipe(prompt="a red ball", height=64, width=64, num_frames=9, seed=0)
    assert output.frames.shape == (9, 64, 64, 3)


def test_compile_option_compiles_each_repeated_block_and_nothing_else():
    transformer = build_tiny_components()["transformer"]
    apply_speed_options({"transformer": transformer}, SpeedOptions(compile=True))
    blocks = list(transformer.transformer_blocks)
    assert blocks and all(block._compiled_call_impl is not None for block in blocks)
    assert transformer._compiled_call_impl is None  # regional: the model itself stays eager
    assert all(module._compiled_call_impl is None for module in rotary_embeddings(transformer))  # graphs only


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [SpeedOptions(compile=True), SpeedOptions(compile=True, gelu_epilogue=True, fused_rotary=True)],
    ids=["compile", "compile-fused"],
)
def test_compiled_transformer_matches_eager_on_cpu(options):
    transformer = build_tiny_components()["transformer"]
    reference_video, reference_audio = run_transformer(transformer)
    apply_speed_options(transformer, options)
    video, audio = run_transformer(transformer)
    assert relative_error(video, reference_video) < 1e-4
    assert relative_error(audio, reference_audio) < 1e-4


def test_compile_vae_option_compiles_the_video_decoder_alone():
    components = build_tiny_components()
    apply_speed_options(components, SpeedOptions(compile_vae=True))
    assert components["vae"].decoder._compiled_call_impl is not None
    assert components["vae"].encoder._compiled_call_impl is None  # the A2V and image-conditioning encodes stay eager
    assert all(block._compiled_call_impl is None for block in components["transformer"].transformer_blocks)


def test_compile_vae_flag_reaches_the_speed_options():
    parser = argparse.ArgumentParser()
    add_speed_arguments(parser)
    assert speed_options_from_args(parser.parse_args(["--compile-vae"])).compile_vae
    assert not speed_options_from_args(parser.parse_args([])).compile_vae


def test_compile_vae_without_a_vae_names_the_components_given():
    transformer = build_tiny_components()["transformer"]
    with pytest.raises(ValueError, match=r"compile_vae=True.*`vae`.*\['transformer'\]"):
        apply_speed_options(transformer, SpeedOptions(compile=True, compile_vae=True))
    assert all(block._compiled_call_impl is None for block in transformer.transformer_blocks)  # nothing half-applied


def test_compile_vae_with_the_24gb_mode_is_a_clear_error_before_anything_moves():
    components = build_tiny_components()
    with pytest.raises(ValueError, match=r"compile_vae=True.*'24gb'.*'fp8-storage' or 'full-gpu-bf16'"):
        place_pipeline(components, "cpu", "24gb", SpeedOptions(compile_vae=True))
    assert components["vae"].decoder._compiled_call_impl is None
    assert next(components["transformer"].parameters()).dtype == torch.float32  # the memory mode was not applied


@pytest.mark.slow
def test_compiled_vae_decoder_matches_eager_on_cpu():
    vae = build_tiny_components()["vae"]
    latents = torch.randn(1, vae.config.latent_channels, 2, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = vae.decode(latents, return_dict=False)[0]
        apply_speed_options({"transformer": nn.Linear(2, 2), "vae": vae}, SpeedOptions(compile_vae=True))
        decoded = vae.decode(latents, return_dict=False)[0]
    assert vae.decoder._compiled_call_impl is not None
    assert relative_error(decoded, reference) < 1e-4


# --- Memory modes ----------------------------------------------------------------------------------------------


def test_full_gpu_bf16_mode_puts_components_in_bf16_and_the_vocoder_in_float32():
    components = build_tiny_components()
    assert apply_memory_mode(components, "full-gpu-bf16", "cpu") is MemoryMode.FULL_GPU_BF16
    for name in ("text_encoder", "connectors", "transformer", "vae", "audio_vae", "latent_upsampler"):
        assert next(components[name].parameters()).dtype == torch.bfloat16, name
    assert next(components["vocoder"].parameters()).dtype == torch.float32
    video, _ = run_transformer(components["transformer"], torch.bfloat16)
    assert torch.isfinite(video).all()


def transformer_output_in_mode(memory_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiny transformer's (video, audio) output with fresh components placed in `memory_mode` on the CPU."""
    components = build_tiny_components()
    apply_memory_mode(components, memory_mode, "cpu")
    return run_transformer(components["transformer"], torch.bfloat16)


def test_fp8_storage_mode_stores_block_weights_in_fp8_and_computes_close_to_bf16():
    reference_video, _ = transformer_output_in_mode("full-gpu-bf16")

    components = build_tiny_components()
    apply_memory_mode(components, "fp8-storage", "cpu")
    transformer = components["transformer"]
    assert transformer.transformer_blocks[0].ff.net[2].weight.dtype == FP8_DTYPE
    assert transformer.transformer_blocks[0].norm1 is not None  # the model itself still builds its norms
    text_layer = components["text_encoder"].model.language_model.layers[0]
    assert text_layer.mlp.down_proj.weight.dtype == FP8_DTYPE
    assert text_layer.input_layernorm.weight.dtype == torch.bfloat16  # norms stay out of fp8
    assert components["text_encoder"].lm_head.weight.dtype == torch.bfloat16  # tied to the token embedding
    video, _ = run_transformer(transformer, torch.bfloat16)
    assert 1e-4 < relative_error(video, reference_video) < 0.1


def test_the_16gb_mode_computes_what_fp8_storage_computes():
    reference_video, reference_audio = transformer_output_in_mode("fp8-storage")

    components = build_tiny_components()
    apply_memory_mode(components, "16gb", "cpu")
    assert components["vae"].use_tiling
    assert all(
        _is_group_offload_enabled(components[name])
        for name in ("transformer", "text_encoder", "connectors", "vae", "audio_vae")
    )
    assert components["transformer"].transformer_blocks[0].ff.net[2].weight.dtype == FP8_DTYPE
    video, audio = run_transformer(components["transformer"], torch.bfloat16)
    assert torch.equal(video, reference_video) and torch.equal(audio, reference_audio)


def test_the_24gb_mode_keeps_the_transformer_in_fp8_layers_without_hooks_and_streams_the_rest():
    reference_video, reference_audio = transformer_output_in_mode("full-gpu-bf16")
    hooked_video, hooked_audio = transformer_output_in_mode("fp8-storage")

    components = build_tiny_components()
    apply_memory_mode(components, "24gb", "cpu")
    transformer = components["transformer"]
    assert components["vae"].use_tiling
    assert not _is_group_offload_enabled(transformer)
    assert all(
        _is_group_offload_enabled(components[name]) for name in ("text_encoder", "connectors", "vae", "audio_vae")
    )
    assert not any(forward_graphs._hooked(module) for module in transformer.modules())
    layer = transformer.transformer_blocks[0].ff.net[2]
    assert isinstance(layer, Fp8StorageLinear) and layer.weight_fp8.dtype == FP8_DTYPE
    # Every Linear but the ones diffusers' fp8 storage leaves in bf16 too (the patchify projections).
    plain = [name for name, module in transformer.named_modules() if type(module) is nn.Linear]
    assert plain == ["proj_in", "proj_out"]
    assert all(parameter.dtype == torch.bfloat16 for parameter in transformer.parameters())
    assert transformer.dtype == torch.bfloat16
    # Per-channel scales: as close to bf16 as the hook's unscaled fp8 storage, within fp8 rounding.
    video, audio = run_transformer(transformer, torch.bfloat16)
    for output, reference, hooked in ((video, reference_video, hooked_video), (audio, reference_audio, hooked_audio)):
        assert 1e-4 < relative_error(output, reference) < 1.5 * relative_error(hooked, reference) + 0.01


def test_fp8_products_on_top_of_fp8_storage_compute_in_bf16():
    reference_video, _ = transformer_output_in_mode("full-gpu-bf16")

    components = build_tiny_components()
    apply_memory_mode(components, "fp8-storage", "cpu")
    apply_speed_options(components, SpeedOptions(fp8=True))
    transformer = components["transformer"]
    assert isinstance(transformer.transformer_blocks[0].ff.net[2], Fp8Linear)
    video, audio = run_transformer(transformer, torch.bfloat16)
    assert video.shape == reference_video.shape and torch.isfinite(audio).all()
    assert 1e-4 < relative_error(video, reference_video) < 0.15


def test_fp8_products_after_the_16gb_mode_are_refused_with_the_order_that_works():
    components = build_tiny_components()
    apply_memory_mode(components, "16gb", "cpu")
    with pytest.raises(ValueError, match="fp8=True.*'16gb'.*before the memory mode"):
        apply_speed_options(components, SpeedOptions(fp8=True))


class _CpuStreams:
    """Stands in for a GPU's streams, so that diffusers' group offloading takes its stream path (the one the "16gb"
    mode takes on a GPU) on the CPU."""

    class Stream:
        def synchronize(self) -> None:
            pass

    def __init__(self, device: torch.device) -> None:
        pass

    def stream(self, stream):
        return contextlib.nullcontext()

    def current_stream(self):
        return self.Stream()


@pytest.fixture
def cpu_streams(monkeypatch) -> list:
    """diffusers' group offloading on the stream path it takes on a GPU (the memory modes' path there), with the CPU
    standing in for the GPU: each transfer makes a new copy, as one to a GPU does (a CPU tensor moved to the CPU is
    otherwise itself), and the CPU copies need no pinning. The product's offloading calls are routed onto that path
    (diffusers refuses streams for a CPU device). Returns the offloading groups, as they are made."""
    from diffusers.hooks import group_offloading
    from diffusers.models.modeling_utils import ModelMixin

    monkeypatch.setattr(group_offloading, "TorchDeviceBackend", _CpuStreams)
    transfer = group_offloading.ModuleGroup._transfer_tensor_to_device
    monkeypatch.setattr(
        group_offloading.ModuleGroup,
        "_transfer_tensor_to_device",
        lambda group, tensor, source, stream: transfer(group, tensor, source.clone(), stream),
    )
    monkeypatch.setattr(
        group_offloading.ModuleGroup,
        "_pinned_memory_tensors",
        contextlib.contextmanager(lambda group: (yield group.cpu_param_dict)),
    )
    groups = []
    make_group = group_offloading.ModuleGroup.__init__

    def recorded(group, *args, **kwargs):
        make_group(group, *args, **kwargs)
        groups.append(group)

    monkeypatch.setattr(group_offloading.ModuleGroup, "__init__", recorded)

    def offload_with_streams(module, onload_device, offload_type="block_level", num_blocks_per_group=None, **_):
        config = group_offloading.GroupOffloadingConfig(
            onload_device=torch.device(onload_device),
            offload_device=torch.device("cpu"),
            offload_type=group_offloading.GroupOffloadingType(offload_type),
            num_blocks_per_group=num_blocks_per_group,
            non_blocking=True,
            stream=_CpuStreams.Stream(),
            record_stream=False,
            low_cpu_mem_usage=True,
        )
        group_offloading._apply_group_offloading(module, config)

    monkeypatch.setattr(acceleration, "apply_group_offloading", offload_with_streams)
    monkeypatch.setattr(ModelMixin, "enable_group_offload", offload_with_streams)
    return groups


def left_on_the_gpu(groups: list) -> list[torch.Tensor]:
    """The offloaded tensors that do not point at their CPU copies (with `cpu_streams`: still "on the GPU")."""
    return [
        tensor
        for group in groups
        for tensor, copy in group.cpu_param_dict.items()
        if tensor.data_ptr() != copy.data_ptr()
    ]


def test_fp8_products_streamed_with_prefetching_leave_the_gpu_after_each_group(cpu_streams):
    # Run 37 (benchmarks/RESULTS.md): the 16gb mode with fp8 products ran out of its 16 GiB at stage 2 with 15 GiB
    # allocated. diffusers' group offloading with streams brings a group's parameters and buffers to the GPU but
    # points only its parameters back at their CPU copies, and `Fp8Linear` held its fp8 weights in buffers: every
    # block stayed resident after its first forward.
    transformer = build_tiny_components()["transformer"].to(torch.bfloat16)
    apply_speed_options(transformer, SpeedOptions(fp8=True))
    transformer.enable_group_offload("cpu", offload_type="block_level", num_blocks_per_group=1)
    assert any(isinstance(module, Fp8Linear) for module in transformer.transformer_blocks.modules())
    for _ in range(2):  # the first forward traces the order of the groups, the second prefetches along it
        run_transformer(transformer, torch.bfloat16)
        left = left_on_the_gpu(cpu_streams)
        assert not left, f"{len(left)} tensors left on the GPU after the forward, e.g. {[t.shape for t in left[:3]]}"


@pytest.mark.parametrize("memory_mode", ["24gb", "16gb"])
def test_streaming_modes_leave_only_what_they_keep_resident_on_the_gpu_after_a_run(cpu_streams, memory_mode):
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components())
    pipe.set_progress_bar_config(disable=True)
    place_pipeline(pipe, "cpu", memory_mode, SpeedOptions(fp8=True))
    assert len(cpu_streams) > 100  # every streamed component's layers (and the transformer's blocks in 16gb)
    events = list(pipe.stream(prompt="a red ball bounces", height=64, width=64, num_frames=9, frame_rate=24.0))
    assert events[-1].output.frames.shape == (9, 64, 64, 3)
    # Scalars aside (the text encoder's embedding scale, 2 bytes), every streamed weight is back in CPU memory.
    left = [tensor for tensor in left_on_the_gpu(cpu_streams) if tensor.numel() > 1]
    assert not left, f"{len(left)} tensors left on the GPU after the run, e.g. {[t.shape for t in left[:3]]}"


@pytest.mark.parametrize("memory_mode", ["24gb", "16gb"])
def test_fp8_products_before_a_streaming_mode_keep_their_fp8_weights(memory_mode):
    components = build_tiny_components()
    place_pipeline(components, "cpu", memory_mode, SpeedOptions(fp8=True))
    layer = components["transformer"].transformer_blocks[0].ff.net[2]
    assert layer.weight_fp8.dtype == FP8_DTYPE and layer.weight_scale.dtype == torch.float32
    assert components["transformer"].proj_in.weight.dtype == torch.bfloat16
    video, audio = run_transformer(components["transformer"], torch.bfloat16)
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()


@pytest.mark.parametrize(
    ("memory_mode", "options"),
    [
        ("fp8-storage", SpeedOptions(attention_backend="_native_math", fp8=True)),
        pytest.param("24gb", SpeedOptions(attention_backend="_native_math"), marks=pytest.mark.slow),
    ],
)
def test_t2av_pipeline_runs_under_memory_mode_and_speed_options(memory_mode, options):
    from ltx_pipeline.pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline
    from ltx_pipeline.types import Finished

    pipe = TI2VidTwoStagesPipeline(**build_tiny_components())
    pipe.set_progress_bar_config(disable=True)
    apply_memory_mode(pipe, memory_mode, "cpu")
    apply_speed_options(pipe, options)
    events = list(pipe.stream(prompt="a red ball bounces", height=64, width=64, num_frames=9, frame_rate=24.0))
    output = events[-1].output
    assert isinstance(events[-1], Finished)
    assert output.frames.shape == (9, 64, 64, 3) and output.frames.dtype == np.uint8
    assert output.audio.waveform.shape[-1] == int(9 / 24.0 * output.audio.sampling_rate)


@pytest.mark.gpu
def test_streaming_modes_keep_streamed_weights_off_the_gpu_between_forwards():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: group offloading streams weights from CPU memory to a GPU")
    for memory_mode, transformer_device in (("16gb", "cpu"), ("24gb", "cuda")):
        components = build_tiny_components()
        apply_memory_mode(components, memory_mode, "cuda")
        assert next(components["transformer"].transformer_blocks[0].parameters()).device.type == transformer_device
        assert next(components["text_encoder"].parameters()).device.type == "cpu"


# --- VAE tiling ------------------------------------------------------------------------------------------------


def small_ltx23_layout_vae(spatial_compression_ratio: int | None) -> AutoencoderKLLTX2Video:
    """The LTX-2.3 video VAE's layout (block types, up/down sampling, 32x/8x compression) at small widths."""
    torch.manual_seed(0)
    return AutoencoderKLLTX2Video(
        latent_channels=16,
        block_out_channels=(8, 16, 32, 32),
        decoder_block_out_channels=(8, 16, 16, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True, True),
        decoder_inject_noise=(False,) * 5,
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
        upsample_residual=(False,) * 4,
        upsample_factor=(2, 2, 1, 2),
        patch_size=4,
        decoder_spatial_padding_mode="zeros",
        spatial_compression_ratio=spatial_compression_ratio,
    ).eval()


@pytest.mark.parametrize(
    ("height", "width"), [(256, 384), (512, 768), pytest.param(1024, 1536, marks=pytest.mark.slow)]
)
def test_tiled_decode_returns_the_untiled_size_when_the_compression_ratio_is_right(height, width):
    vae = small_ltx23_layout_vae(spatial_compression_ratio=32)
    latents = torch.randn(1, 16, 2, height // 32, width // 32)  # 2 latent frames = 9 video frames
    with torch.no_grad():
        untiled = vae.decode(latents).sample
        assert enable_vae_tiling(vae)
        tiled = vae.decode(latents).sample
    assert untiled.shape == tiled.shape == (1, 3, 9, height, width)
    assert torch.isfinite(tiled).all()


def test_tiling_is_refused_when_the_vae_misstates_its_compression_ratio():
    vae = small_ltx23_layout_vae(spatial_compression_ratio=None)  # derives 64 from its four stages
    assert vae.spatial_compression_ratio == 64 and decoder_spatial_upscale(vae) == 32
    latents = torch.randn(1, 16, 2, 8, 12)
    with torch.no_grad():
        vae.enable_tiling()  # what diffusers would do unchecked: the wrong size
        assert vae.decode(latents).sample.shape[-2:] != (256, 384)
        vae.disable_tiling()
        assert not enable_vae_tiling(vae)
        assert not vae.use_tiling
        assert vae.decode(latents).sample.shape[-2:] == (256, 384)


def test_tiny_vae_tiling_is_exact():
    vae = build_tiny_components()["vae"]
    assert decoder_spatial_upscale(vae) == vae.spatial_compression_ratio == 32
    assert enable_vae_tiling(vae)


def test_tiled_decode_matches_untiled_where_one_tile_covers_the_frame():
    vae = small_ltx23_layout_vae(spatial_compression_ratio=32)
    latents = torch.randn(1, 16, 2, constants.DEFAULT_HEIGHT // 64, constants.DEFAULT_WIDTH // 64)
    with torch.no_grad():
        untiled = vae.decode(latents).sample
        enable_vae_tiling(vae)
        tiled = vae.decode(latents).sample
    assert torch.equal(tiled, untiled)  # 256x384 is under the 512 px tile: tiling must not change anything


def test_place_pipeline_orders_fp8_products_and_the_24gb_mode_so_both_apply():
    from ltx_pipeline.speed.acceleration import Fp8Linear, place_pipeline

    components = build_tiny_components()
    place_pipeline(components, "cpu", "24gb", SpeedOptions(fp8=True))
    assert any(isinstance(module, Fp8Linear) for module in components["transformer"].modules())
    fp8_layers = [module for module in components["transformer"].modules() if isinstance(module, Fp8Linear)]
    assert all(layer.weight_fp8.dtype == FP8_DTYPE for layer in fp8_layers)


def test_compiled_options_keep_torch_compile_caches_in_the_persistent_folder(tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir

    # As a process finds them: importing diffusers' models has made inductor write its /tmp default into the variable.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.setenv("LTX_COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    components = build_tiny_components()
    place_pipeline(components, "cpu", "full-gpu-bf16", SpeedOptions(compile=True))
    assert cache_dir() == str(tmp_path / "cache" / "inductor")  # where inductor now writes what it compiles
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "triton")
    # A user's own choice of torch's folder stays.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    place_pipeline(build_tiny_components(), "cpu", "full-gpu-bf16", SpeedOptions(compile=True))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


@pytest.mark.parametrize(("memory_mode", "why"), [("fp8-storage", "hook"), ("16gb", "streams its weights")])
def test_compile_with_a_hooked_transformer_is_a_clear_error_before_anything_moves(memory_mode, why):
    # Compiled, the first forward fails inside dynamo: the layerwise-casting hook builds an nn.Parameter.
    components = build_tiny_components()
    with pytest.raises(
        ValueError, match=rf"`compile=True` cannot be combined with memory mode '{memory_mode}' .*{why}"
    ):
        place_pipeline(components, "cpu", memory_mode, SpeedOptions(compile=True))
    assert components["transformer"].transformer_blocks[0].ff.net[2].weight.dtype == torch.float32


# --- fp8 weight storage without hooks ("24gb") -------------------------------------------------------------------


def test_fp8_storage_linear_computes_dequantize_then_linear():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48).to(torch.bfloat16)
    layer = Fp8StorageLinear(linear)
    assert layer.weight_fp8.dtype == FP8_DTYPE and layer.weight_scale.shape == (48, 1)
    assert layer.weight_scale.dtype == torch.float32 and layer.bias.dtype == torch.bfloat16
    weight = layer.weight_fp8.to(torch.bfloat16) * layer.weight_scale.to(torch.bfloat16)
    inputs = torch.randn(2, 5, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(inputs), F.linear(inputs, weight, layer.bias))
        # Each row's largest weight maps to e4m3's largest: rows keep fp8's relative precision (3 mantissa bits).
        error = (weight.float() - linear.weight.float()).abs()
        assert (error <= linear.weight.float().abs() * 2**-4 + layer.weight_scale * 2**-9).all()
        assert relative_error(layer(inputs).float(), linear(inputs).float()) < 0.05


def test_fp8_storage_linear_compiles_in_one_graph():
    torch.manual_seed(0)
    layer = Fp8StorageLinear(nn.Linear(32, 16))
    inputs = torch.randn(3, 32)
    with torch.no_grad():
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")(inputs)
        assert torch.equal(compiled, layer(inputs))


def test_the_24gb_transformer_compiles_its_blocks_in_full_graphs():
    torch._dynamo.reset()
    components = build_tiny_components()
    place_pipeline(components, "cpu", "24gb", SpeedOptions(fused_rotary=True, gelu_epilogue=True))
    transformer = components["transformer"]
    eager_video, eager_audio = run_transformer(transformer, torch.bfloat16)
    for block in transformer.transformer_blocks:  # inductor's CPU compile takes a minute: the slow test below
        block.compile(fullgraph=True, backend="aot_eager")
    video, audio = run_transformer(transformer, torch.bfloat16)
    assert torch.equal(video, eager_video) and torch.equal(audio, eager_audio)


@pytest.fixture
def compile_cache_in_tmp(tmp_path, monkeypatch):
    """Compiled options point torch's caches at a persistent folder through the environment: a temporary one here,
    and the environment restored after the test."""
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LTX_COMPILE_CACHE_DIR", str(tmp_path / "cache"))


def test_compiled_options_are_accepted_by_the_24gb_mode(compile_cache_in_tmp):
    components = build_tiny_components()
    options = SpeedOptions(compile=True, fp8=True, fp8_row_kernel=True, fused_rotary=True, fused_norms=True)
    place_pipeline(components, "cpu", "24gb", options)
    transformer = components["transformer"]
    assert all(block._compiled_call_impl is not None for block in transformer.transformer_blocks)
    assert any(isinstance(module, Fp8Linear) for module in transformer.modules())
    assert any(isinstance(module, Fp8StorageLinear) for module in transformer.modules())


@pytest.mark.slow
def test_the_24gb_mode_with_compile_runs_inductor_on_cpu(compile_cache_in_tmp):
    torch._dynamo.reset()
    reference = build_tiny_components()
    apply_memory_mode(reference, "24gb", "cpu")
    reference_video, _ = run_transformer(reference["transformer"], torch.bfloat16)
    components = build_tiny_components()
    place_pipeline(components, "cpu", "24gb", SpeedOptions(compile=True, gelu_epilogue=True))
    video, _ = run_transformer(components["transformer"], torch.bfloat16)
    assert relative_error(video, reference_video) < 0.03  # inductor rounds to bf16 at other points


def test_fp8_products_made_on_the_cpu_use_the_device_kernels_where_the_mode_places_them():
    components = build_tiny_components()
    quantize_linear_layers_to_fp8(components["transformer"], emulate=False)  # as made for another device
    apply_memory_mode(components, "24gb", "cpu")
    layers = [module for module in components["transformer"].modules() if isinstance(module, Fp8Linear)]
    assert layers and all(layer.emulate for layer in layers)  # the CPU has no fp8 kernels


def full_size_transformer_in_the_24gb_mode(fp8_products: bool) -> nn.Module:
    """LTX-2.3's full-size transformer on the meta device (no memory), placed as the "24gb" mode places it."""
    from ltx_pipeline.loading import FULL_SIZE_PRESETS

    with torch.device("meta"):
        transformer = LTX2VideoTransformer3DModel(**FULL_SIZE_PRESETS["2.3"]["transformer"])  # cast by the mode
    if fp8_products:
        quantize_linear_layers_to_fp8(transformer, emulate=True)
    apply_memory_mode({"transformer": transformer}, "24gb", "meta")
    return transformer


@pytest.mark.parametrize("fp8_products", [False, True])
def test_the_24gb_transformer_holds_about_one_byte_per_linear_weight(fp8_products):
    tiny = build_tiny_components()["transformer"]
    linear_weights = sum(module.weight.numel() for module in tiny.modules() if isinstance(module, nn.Linear))
    total = sum(parameter.numel() for parameter in tiny.parameters())
    apply_memory_mode({"transformer": tiny}, "24gb", "cpu")
    layers = [module for module in tiny.modules() if isinstance(module, Fp8StorageLinear)]
    fp8_weights = sum(layer.weight_fp8.numel() for layer in layers)
    assert fp8_weights > 0.7 * linear_weights  # all but the two patchify projections
    # 1 byte per stored weight, 2 per bf16 parameter left (biases, norms, modulation tables), plus the buffers.
    other_buffers = sum(
        buffer.numel() * buffer.element_size() for buffer in tiny.buffers() if buffer.dtype != FP8_DTYPE
    )
    assert weight_bytes(tiny) == fp8_weights + 2 * (total - fp8_weights) + other_buffers

    transformer = full_size_transformer_in_the_24gb_mode(fp8_products)
    tensors = [*transformer.parameters(), *transformer.buffers()]
    fp8 = sum(tensor.numel() for tensor in tensors if tensor.dtype == FP8_DTYPE)
    bf16 = sum(tensor.numel() for tensor in tensors if tensor.dtype == torch.bfloat16)
    assert fp8 > 18e9 and bf16 < 0.1e9  # ~19B weights in fp8, the bf16 rest small
    assert weight_bytes(transformer) <= 18.5 * 2**30


def test_model_settings_take_compiled_options_with_the_24gb_mode_and_refuse_them_with_16gb():
    from ltx_pipeline.assembly import ModelSettings

    fastest = SpeedOptions(compile=True, forward_graph=True, fp8=True, fused_rotary=True, gelu_epilogue=True)
    assert ModelSettings(device="cpu", memory_mode="24gb", speed=fastest).speed == fastest
    with pytest.raises(ValueError, match=r"`compile=True` cannot be combined with memory mode '16gb'.*'24gb'"):
        ModelSettings(device="cpu", memory_mode="16gb", speed=fastest)
    with pytest.raises(ValueError, match=r"`forward_graph=True` cannot be combined with memory mode 'fp8-storage'"):
        ModelSettings(device="cpu", memory_mode="fp8-storage", speed=SpeedOptions(forward_graph=True))


def test_fp8_products_can_be_made_layer_by_layer_on_another_device():
    # The "24gb" mode's way for a model loaded in CPU memory: each layer quantized where it will run (here the meta
    # device stands for the GPU), the rest left for the mode to place.
    transformer = build_tiny_components()["transformer"]
    replaced = quantize_linear_layers_to_fp8(transformer, device="meta")
    layers = [module for module in transformer.modules() if isinstance(module, Fp8Linear)]
    assert len(layers) == replaced > 0
    assert all(layer.weight_fp8.device.type == "meta" and layer.emulate for layer in layers)
    assert transformer.proj_in.weight.device.type == "cpu"


@pytest.mark.parametrize("hooked", [False, True])
def test_fp8_products_free_each_bf16_layer_as_they_go(monkeypatch: pytest.MonkeyPatch, hooked: bool) -> None:
    """While layer k is quantized, the bf16 layers before it are gone, without waiting for Python's cycle collector:
    the full-size transformer quantized in place on an 80 GB card held every bf16 weight to the end and ran out of
    memory (run 36). Hooked: the "fp8-storage" mode's casting hooks, which point back at their layer, are on them."""
    import gc
    import weakref

    from diffusers.hooks import apply_layerwise_casting

    from ltx_pipeline.speed import acceleration

    transformer = build_tiny_components()["transformer"]
    if hooked:
        apply_layerwise_casting(transformer, storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    originals = [weakref.ref(module) for module in transformer.modules() if type(module) is nn.Linear]
    alive_at_each_layer = []

    class CountingFp8Linear(Fp8Linear):
        def __init__(self, linear: nn.Linear, **kwargs) -> None:
            alive_at_each_layer.append(sum(ref() is not None for ref in originals))
            super().__init__(linear, **kwargs)

    monkeypatch.setattr(acceleration, "Fp8Linear", CountingFp8Linear)
    total = sum(ref() is not None for ref in originals)
    gc.collect()
    gc.disable()
    try:
        replaced = quantize_linear_layers_to_fp8(transformer, emulate=True)
    finally:
        gc.enable()
    assert replaced > 2
    # Layer k (0-based) sees the originals less the k already replaced: none of those is kept alive.
    assert alive_at_each_layer == [total - k for k in range(replaced)]


@pytest.mark.parametrize(
    "user_setting, expected_calls, expected",
    [
        (None, ["expandable_segments:True"], True),
        ("max_split_size_mb:64", ["expandable_segments:True"], True),
        ("expandable_segments:False", [], False),  # the user's choice stands
        ("garbage_collection_threshold:0.6,expandable_segments:True", [], True),
    ],
)
def test_memory_modes_turn_on_expandable_segments_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, user_setting: str | None, expected_calls: list[str], expected: bool
) -> None:
    from ltx_pipeline.speed.acceleration import use_expandable_segments

    calls: list[str] = []
    monkeypatch.setattr(torch._C, "_accelerator_setAllocatorSettings", calls.append, raising=False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    if user_setting is None:
        monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    else:
        monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", user_setting)
    assert use_expandable_segments() is expected
    assert calls == expected_calls
