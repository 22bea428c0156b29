"""LTX-2.3 at full size on one GPU: speed and memory of every component and of the product's pipelines.

Every component is built at the real LTX-2.3 size (configs from diffusers' `scripts/convert_ltx2_to_diffusers.py`,
version "2.3") with random bf16 weights: speed does not depend on weight values. Every variant runs in this one
process on the same weights as its baseline, so each figure is a ratio measured side by side.

    python benchmarks/bench_full_size.py --out results.json --sections env,build,components,e2e_baseline,...
    python benchmarks/bench_full_size.py --tiny --out /tmp/tiny.json     # CPU dry run of the same code paths

Analytic FLOPs of one transformer forward (batch 1, matrix products only, 2 FLOPs per multiply-add):
Nv video tokens, Na audio tokens, T text tokens, dv = 4096 video width, da = 2048 audio width, ia = 2048 inner
width of the audio<->video attentions, dt = 4096 / dat = 2048 text widths seen by the video / audio cross-attention.
Per block:
    video   28 Nv dv^2 (QKV+out of self-attn 8, Q+out of cross-attn 4, FFN 4x 16) + 4 Nv^2 dv + 4 Nv T dv + 4 T dt dv
    audio   28 Na da^2 + 4 Na^2 da + 4 Na T da + 4 T dat da
    a2v     4 Nv dv ia + 4 Na da ia + 4 Nv Na ia        (video queries, audio keys/values)
    v2a     4 Na da ia + 4 Nv dv ia + 4 Na Nv ia        (audio queries, video keys/values)
times 48 blocks. 768x512x121: Nv = 16*16*24 = 6,144, Na = 126, T = 1,024 -> 198 TFLOP.
"""

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.models.activations import GELU  # noqa: E402
from diffusers.models.transformers.transformer_ltx2 import (  # noqa: E402
    LTX2Attention,
    LTX2AudioVideoAttnProcessor,
    LTX2AudioVideoRotaryPosEmbed,
    LTX2PerturbedAttnProcessor,
)
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2VocoderWithBWE  # noqa: E402
from transformers import Gemma3Config, Gemma3ForConditionalGeneration  # noqa: E402

from ltx_pipeline import constants, loading  # noqa: E402
from ltx_pipeline.engine import transformer_velocity  # noqa: E402
from ltx_pipeline.engine.latents import LatentGeometry  # noqa: E402
from ltx_pipeline.engine.prompt import TextConditioning  # noqa: E402
from ltx_pipeline.positions import ReferencePrecisionRotaryPosEmbed  # noqa: E402
from ltx_pipeline.speed import acceleration, forward_graphs  # noqa: E402
from ltx_pipeline.speed.attention_processors import (  # noqa: E402
    HalfTableRotaryPosEmbed,
    OutOfPlaceRotaryAttnProcessor,
    swap_processor,
)
from ltx_pipeline.tiny import build_word_tokenizer, tiny_component_kwargs  # noqa: E402

# --- Full-size LTX-2.3 configs: the loader's presets, checked against the real checkpoint header in tests/test_loading.py
TRANSFORMER_2_3 = loading.FULL_SIZE_PRESETS["2.3"]["transformer"]
CONNECTORS_2_3 = loading.FULL_SIZE_PRESETS["2.3"]["connectors"]
VIDEO_VAE_2_3 = loading.FULL_SIZE_PRESETS["2.3"]["vae"]
AUDIO_VAE_2_3 = loading.FULL_SIZE_PRESETS["2.3"]["audio_vae"]
VOCODER_2_3 = loading.FULL_SIZE_PRESETS["2.3"]["vocoder"]
LATENT_UPSAMPLER_2_3 = {"in_channels": 128, "mid_channels": 1024, "num_blocks_per_stage": 4, "dims": 3}
# Gemma-3 12B (google/gemma-3-12b-it config): text tower, plus the SigLIP vision tower the class always builds.
GEMMA_3_12B = {
    "text_config": {
        "hidden_size": 3840,
        "intermediate_size": 15360,
        "num_hidden_layers": 48,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 256,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "sliding_window": 1024,
        "query_pre_attn_scalar": 256,
    },
    "vision_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 896,
        "patch_size": 14,
    },
    "mm_tokens_per_image": 256,
}

# (height, width, frames) of the transformer forwards: stage 1, stage 2 and the 1536x1024 scaling point.
FULL_SHAPES = {"384x256x121": (256, 384, 121), "768x512x121": (512, 768, 121), "1536x1024x121": (1024, 1536, 121)}
TINY_SHAPES = {"64x64x9": (64, 64, 9), "128x128x17": (128, 128, 17), "256x128x17": (128, 256, 17)}
FULL_E2E = (512, 768, 121)
TINY_E2E = (128, 128, 17)
FRAME_RATE = 24.0
TEXT_TOKENS = 1024
PROMPT = "a red ball bounces on a wooden floor in a large hall, each bounce echoes"


def full_size_component_kwargs() -> dict[str, dict]:
    return {
        "text_encoder": GEMMA_3_12B,
        "connectors": CONNECTORS_2_3,
        "transformer": TRANSFORMER_2_3,
        "vae": VIDEO_VAE_2_3,
        "audio_vae": AUDIO_VAE_2_3,
        "vocoder": VOCODER_2_3,
        "latent_upsampler": LATENT_UPSAMPLER_2_3,
    }


# --- Measurement helpers ------------------------------------------------------------------------------------------


class BenchRun:
    """Holds the device, the deadline and the results; writes the results file after every section (the LTX-2.5
    benchmark's runs too)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
        self.start = time.perf_counter()
        self.results: dict = {"sections": {}, "errors": {}}

    def left_s(self) -> float:
        return self.args.deadline_s - (time.perf_counter() - self.start)

    def record(self, section: str, key: str, value: object) -> None:
        self.results["sections"].setdefault(section, {})[key] = value
        print(f"[{time.perf_counter() - self.start:6.1f}s] {section}.{key} = {value}", flush=True)

    def save(self) -> None:
        Path(self.args.out).write_text(json.dumps(self.results, indent=1, default=str))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.device.type == "cuda" else None

    def allocated_gib(self) -> float | None:
        return round(torch.cuda.memory_allocated() / 2**30, 2) if self.device.type == "cuda" else None


class Bench(BenchRun):
    """A run of this benchmark: the transformer's shapes, the pipelines' size and the text length."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.shapes = dict(TINY_SHAPES if args.tiny else FULL_SHAPES)
        if args.no_large:  # the pipelines' two sizes only
            self.shapes = dict(list(self.shapes.items())[:2])
        self.e2e_size = TINY_E2E if args.tiny else FULL_E2E
        self.text_tokens = 16 if args.tiny else TEXT_TOKENS

    def time_ms(self, function, warmup: int, repeats: int) -> tuple[float, list[float]]:
        """Median milliseconds of `function()` after `warmup` calls, with CUDA events on a GPU."""
        for _ in range(warmup):
            function()
        times = []
        for _ in range(repeats):
            if self.device.type == "cuda":
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                function()
                end.record()
                torch.cuda.synchronize()
                times.append(begin.elapsed_time(end))
            else:
                begin_s = time.perf_counter()
                function()
                times.append((time.perf_counter() - begin_s) * 1e3)
        return round(statistics.median(times), 2), [round(t, 2) for t in times]


def deviation(output: torch.Tensor, reference: torch.Tensor) -> dict:
    output, reference = output.float(), reference.float()
    difference = (output - reference).abs()
    return {
        "max_abs": float(difference.max()),
        "rel_l2": float((output - reference).norm() / reference.norm()),
        "ref_max_abs": float(reference.abs().max()),
        "finite": bool(torch.isfinite(output).all()),
    }


def transformer_flops(num_video_tokens: int, num_audio_tokens: int, text_tokens: int, config) -> float:
    """Analytic matrix-product FLOPs of one forward (formula in this module's docstring)."""
    nv, na, t = num_video_tokens, num_audio_tokens, text_tokens
    dv = config.num_attention_heads * config.attention_head_dim
    da = config.audio_num_attention_heads * config.audio_attention_head_dim
    ia = da
    dt, dat = config.cross_attention_dim, config.audio_cross_attention_dim
    video = 28 * nv * dv**2 + 4 * nv**2 * dv + 4 * nv * t * dv + 4 * t * dt * dv
    audio = 28 * na * da**2 + 4 * na**2 * da + 4 * na * t * da + 4 * t * dat * da
    cross_modal = 2 * (4 * nv * dv * ia + 4 * na * da * ia + 4 * nv * na * ia)
    return float(config.num_layers * (video + audio + cross_modal))


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_components(bench: Bench) -> dict:
    """Every component, randomly initialised directly on the device (bf16; the vocoder in float32)."""
    kwargs = tiny_component_kwargs("2.3") if bench.args.tiny else full_size_component_kwargs()
    components: dict = {"tokenizer": build_word_tokenizer(), "scheduler": FlowMatchEulerDiscreteScheduler()}
    # The three large models are initialised on the device (in bf16, to fit); the small ones on the CPU, since
    # some of their constructors compute filters with integer matrix products that CUDA does not implement.
    large = {"connectors": LTX2TextConnectors, "transformer": LTX2VideoTransformer3DModel}
    small = {
        "vae": AutoencoderKLLTX2Video,
        "audio_vae": AutoencoderKLLTX2Audio,
        "latent_upsampler": LTX2LatentUpsamplerModel,
    }
    with torch.device(bench.device), default_dtype(torch.bfloat16):
        torch.manual_seed(0)
        components["text_encoder"] = Gemma3ForConditionalGeneration(Gemma3Config(**kwargs["text_encoder"])).eval()
        for index, (name, cls) in enumerate(large.items()):
            torch.manual_seed(index + 1)
            components[name] = cls(**kwargs[name]).eval()
    with default_dtype(torch.bfloat16):
        for index, (name, cls) in enumerate(small.items()):
            torch.manual_seed(index + 3)
            components[name] = cls(**kwargs[name]).eval().to(bench.device)
    torch.manual_seed(10)
    components["vocoder"] = LTX2VocoderWithBWE(**kwargs["vocoder"]).eval().to(bench.device)
    for component in components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
    return components


def parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- Transformer forward ------------------------------------------------------------------------------------------


def transformer_inputs(bench: Bench, transformer, height: int, width: int, num_frames: int, seed: int = 0) -> dict:
    """`transformer_velocity`'s arguments for one distilled pass of the product's pipelines (batch 1), random
    latents and prompt."""
    config = transformer.config
    geometry = LatentGeometry(
        frames=(num_frames - 1) // 8 + 1,
        height=height // 32,
        width=width // 32,
        audio_frames=round(num_frames / FRAME_RATE * 25),
        frame_rate=FRAME_RATE,
    )
    generator = torch.Generator(device=bench.device).manual_seed(seed)
    dtype = torch.bfloat16

    def randn(*shape):
        return torch.randn(*shape, generator=generator, device=bench.device, dtype=torch.float32).to(dtype)

    return {
        "video": randn(1, geometry.frames * geometry.tokens_per_frame, config.in_channels),
        "audio": randn(1, geometry.audio_frames, config.audio_in_channels),
        # The connectors' mask is all ones (learnable registers replace the padding), so the pipelines pass none
        # (TextConditioning.all_real; until run 28 this benchmark passed the all-ones masks: `with_text_masks`).
        "text": TextConditioning(
            video=randn(1, bench.text_tokens, config.cross_attention_dim),
            audio=randn(1, bench.text_tokens, config.audio_cross_attention_dim),
            mask=torch.ones(1, bench.text_tokens, device=bench.device, dtype=torch.int64),
            all_real=True,
        ),
        "sigma": 0.725,
        "geometry": geometry,
    }


def with_text_masks(inputs: dict) -> dict:
    """The inputs with the all-ones prompt masks the pipelines passed until TextConditioning.all_real (and this
    benchmark until run 28)."""
    return inputs | {"text": dataclasses.replace(inputs["text"], all_real=False)}


def forward(transformer, inputs: dict) -> tuple:
    """One transformer pass exactly as the pipelines make it (`engine.transformer_velocity`): a new step for
    torch.compile's CUDA graphs, and a replay where the whole forward is recorded (no LoRA here)."""
    return transformer_velocity(transformer, **inputs)


def graph_counts(graphs: "forward_graphs.ForwardGraphs") -> dict:
    return {"kept": len(graphs.graphs), "recordings": graphs.recordings, "refused": len(graphs.refused)}


def measure_transformer(bench: Bench, section: str, transformer, references: dict | None, shapes=None, **kw) -> dict:
    """ms per forward, TFLOP/s and deviation from `references` for each shape; returns the outputs."""
    outputs = {}
    shapes = shapes or list(bench.shapes)
    min_left_s = kw.get("min_left_s", bench.args.reserve_s)  # a shape that compiles needs a minute or more
    for label in shapes:
        if bench.left_s() < min_left_s:
            bench.record(section, f"{label}.skipped", f"deadline ({bench.left_s():.0f} s left)")
            continue
        height, width, num_frames = bench.shapes[label]
        inputs = kw.get("adapt_inputs", lambda inputs: inputs)(
            transformer_inputs(bench, transformer, height, width, num_frames)
        )
        repeats = 3 if label.startswith("1536") else bench.args.repeats
        bench.reset_peak()
        compile_start = time.perf_counter()
        with torch.no_grad():
            forward(transformer, inputs)
            bench.synchronize()
            first_call_s = time.perf_counter() - compile_start
            median, times = bench.time_ms(
                lambda inputs=inputs: forward(transformer, inputs), warmup=1, repeats=repeats
            )
            last = forward(transformer, inputs)  # a replay where graphs are recorded: the first pass is not one
        flops = transformer_flops(
            inputs["video"].shape[1],
            inputs["audio"].shape[1],
            bench.text_tokens,
            transformer.config,
        )
        entry = {
            "ms": median,
            "times_ms": times,
            "tflops": round(flops / (median / 1e3) / 1e12, 1),
            "analytic_tflop": round(flops / 1e12, 2),
            "first_call_s": round(first_call_s, 2),
            "peak_gib": bench.peak_gib(),
            "video_tokens": inputs["video"].shape[1],
            "audio_tokens": inputs["audio"].shape[1],
        }
        if references is not None and label in references:
            entry["video_dev"] = deviation(last[0], references[label][0])
            entry["audio_dev"] = deviation(last[1], references[label][1])
        else:
            entry["finite"] = bool(torch.isfinite(last[0]).all() and torch.isfinite(last[1]).all())
        outputs[label] = (last[0].detach().clone(), last[1].detach().clone())
        graphs = forward_graphs.recorded(transformer)
        if graphs is not None:
            entry["forward_graphs"] = graph_counts(graphs)
        bench.record(section, label, entry)
        del inputs, last
    return outputs


def compiled_shapes(bench: Bench) -> list[str]:
    """The shapes a compiled variant is measured at: all of them, or the pipelines' two with --no-compile-large."""
    shapes = list(bench.shapes)
    return shapes[:2] if bench.args.no_compile_large else shapes


# --- Undoing speed options between sections, so that one process measures each variant on the same weights ------


def uncompile_blocks(transformer) -> None:
    """Undo `apply_speed_options`' compilation (the blocks and rotary embeddings run eagerly again), drop the recorded
    whole-forward graphs and dynamo's caches."""
    for module in [*transformer.transformer_blocks, *acceleration.rotary_embeddings(transformer)]:
        module._compiled_call_impl = None
    if forward_graphs.enabled(transformer):
        delattr(transformer, constants.FORWARD_RUNNER_ATTRIBUTE)  # where `forward_graphs.enable` keeps them
    torch._dynamo.reset()
    free_memory()  # the graphs' memory pools and dynamo's compiled code go back to the allocator


def unfuse_feed_forward_gelu(transformer: torch.nn.Module) -> int:
    """Undo `acceleration.fuse_feed_forward_gelu`: each `LinearTanhGelu` becomes a diffusers `GELU` around the same
    `proj` (an fp8 or LoRA layer swapped in since stays). Returns the number of modules restored."""
    targets = [name for name, module in transformer.named_modules() if isinstance(module, acceleration.LinearTanhGelu)]
    for name in targets:
        proj = transformer.get_submodule(name).proj
        with torch.device("meta"):  # GELU builds a Linear of its own, replaced at once: allocate nothing for it
            gelu = GELU(proj.in_features, proj.out_features, approximate="tanh")
        gelu.proj = proj
        transformer.set_submodule(name, gelu)
    return len(targets)


def use_diffusers_rotary(transformer: torch.nn.Module) -> int:
    """Undo `attention_processors.use_out_of_place_rotary`: each attention gets back the processor class its block
    builds (`LTX2PerturbedAttnProcessor` where the block has perturbed attention), same backend, and each rotary
    embedding the class it had (video ones keep the reference's position precision, `ltx_pipeline.positions`).
    Returns how many attentions changed."""
    changed = 0
    for block in transformer.transformer_blocks:
        cls = LTX2PerturbedAttnProcessor if block.perturbed_attn else LTX2AudioVideoAttnProcessor
        for module in block.modules():
            if isinstance(module, LTX2Attention) and isinstance(module.processor, OutOfPlaceRotaryAttnProcessor):
                swap_processor(module, cls())
                changed += 1
    for module in transformer.modules():
        if type(module) is HalfTableRotaryPosEmbed:
            marked = "_ltx_transformer" in module.__dict__  # by `positions.use_reference_position_precision`
            module.__class__ = ReferencePrecisionRotaryPosEmbed if marked else LTX2AudioVideoRotaryPosEmbed
    return changed


# --- Sections -----------------------------------------------------------------------------------------------------


def section_env(bench: Bench, state: dict) -> None:
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name() if bench.device.type == "cuda" else platform.processor() or "cpu",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "available_attention_backends": acceleration.available_attention_backends(),
    }
    for key, value in env.items():
        bench.record("env", key, value)
    if bench.device.type != "cuda":
        return
    # The card's own ceilings, measured: a large bf16 product and the same through fp8 row-wise _scaled_mm.
    size = 8192
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    median, _ = bench.time_ms(lambda: a @ b, warmup=3, repeats=10)
    bench.record("env", "bf16_matmul_tflops_8192", round(2 * size**3 / (median / 1e3) / 1e12, 1))
    a8, scale_a = acceleration.quantize_to_fp8(a, "rowwise")
    b8, scale_b = acceleration.quantize_to_fp8(b, "rowwise")
    median, _ = bench.time_ms(
        lambda: torch._scaled_mm(a8, b8.T, scale_a=scale_a, scale_b=scale_b.reshape(1, -1), out_dtype=torch.bfloat16),
        warmup=3,
        repeats=10,
    )
    bench.record("env", "fp8_rowwise_matmul_tflops_8192", round(2 * size**3 / (median / 1e3) / 1e12, 1))


def section_build(bench: Bench, state: dict) -> None:
    begin = time.perf_counter()
    state["components"] = build_components(bench)
    bench.synchronize()
    bench.record("build", "seconds", round(time.perf_counter() - begin, 1))
    for name, component in state["components"].items():
        if isinstance(component, torch.nn.Module):
            bench.record("build", f"{name}_params_billion", round(parameter_count(component) / 1e9, 3))
    bench.record("build", "allocated_gib", bench.allocated_gib())


def section_components(bench: Bench, state: dict) -> None:
    components = state["components"]
    tokenizer, text_encoder, connectors = components["tokenizer"], components["text_encoder"], components["connectors"]
    tokens = tokenizer(
        [PROMPT], padding="max_length", max_length=bench.text_tokens, truncation=True, return_tensors="pt"
    ).to(bench.device)
    with torch.no_grad():

        def encode():
            return text_encoder(
                input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, output_hidden_states=True
            )

        bench.reset_peak()
        median, _ = bench.time_ms(encode, warmup=1, repeats=5)
        bench.record("components", "gemma_encode_ms", median)
        bench.record("components", "gemma_encode_peak_gib", bench.peak_gib())
        hidden = torch.stack(encode().hidden_states, dim=-1).flatten(2, 3)
        median, _ = bench.time_ms(lambda: connectors(hidden, tokens.attention_mask), warmup=1, repeats=5)
        bench.record("components", "connectors_ms", median)

        vae = components["vae"]
        for label in list(bench.shapes)[:2]:
            height, width, num_frames = bench.shapes[label]
            latents = torch.randn(
                1,
                vae.config.latent_channels,
                (num_frames - 1) // 8 + 1,
                height // 32,
                width // 32,
                device=bench.device,
                dtype=torch.bfloat16,
            )
            for tiled in (False, True):
                if tiled and not acceleration.enable_vae_tiling(vae):
                    bench.record("components", f"vae_decode_{label}_tiled", "refused: compression ratio mismatch")
                    continue
                bench.reset_peak()
                median, _ = bench.time_ms(
                    lambda latents=latents: vae.decode(latents, return_dict=False)[0], warmup=1, repeats=3
                )
                shape = tuple(vae.decode(latents, return_dict=False)[0].shape)
                name = f"vae_decode_{label}" + ("_tiled" if tiled else "")
                bench.record("components", name, {"ms": median, "peak_gib": bench.peak_gib(), "shape": shape})
                vae.disable_tiling()

        height, width, num_frames = bench.shapes[list(bench.shapes)[0]]
        latents = torch.randn(1, 128, (num_frames - 1) // 8 + 1, height // 32, width // 32, device=bench.device)
        latents = latents[:, : components["latent_upsampler"].config.in_channels].to(torch.bfloat16)
        median, _ = bench.time_ms(lambda: components["latent_upsampler"](latents), warmup=1, repeats=3)
        bench.record("components", "latent_upsampler_ms", median)

        audio_vae, vocoder = components["audio_vae"], components["vocoder"]
        audio_frames = round(bench.e2e_size[2] / FRAME_RATE * 25)
        audio_latents = torch.randn(
            1,
            audio_vae.config.latent_channels,
            audio_frames,
            audio_vae.config.mel_bins // 4,
            device=bench.device,
            dtype=torch.bfloat16,
        )
        median, _ = bench.time_ms(lambda: audio_vae.decode(audio_latents, return_dict=False)[0], warmup=1, repeats=3)
        bench.record("components", "audio_vae_decode_ms", median)
        mel = audio_vae.decode(audio_latents, return_dict=False)[0].float()
        median, _ = bench.time_ms(lambda: vocoder(mel), warmup=1, repeats=3)
        bench.record("components", "vocoder_fp32_ms", median)


def section_vae_decode_experiment(bench: Bench, state: dict) -> None:
    """The final video decode at the pipelines' size (0.38 s of run 11's 3.04 s A2V) eager, with the VAE in
    channels-last-3d memory format (an experiment: slower in run 12), and with its decoder compiled (the product's
    `SpeedOptions(compile_vae=True)` since run 12), each against the eager output. Put back as it was at the end."""
    vae = state["components"]["vae"]
    height, width, num_frames = bench.e2e_size
    shape = (1, vae.config.latent_channels, (num_frames - 1) // 8 + 1, height // 32, width // 32)
    latents = torch.randn(*shape, device=bench.device, dtype=torch.bfloat16)

    def decode() -> torch.Tensor:
        with torch.no_grad():
            return vae.decode(latents, return_dict=False)[0]

    def compile_decoder() -> None:
        vae.to(memory_format=torch.contiguous_format)
        acceleration.apply_speed_options(state["components"], acceleration.SpeedOptions(compile_vae=True))

    reference = decode()
    variants = {
        "eager": lambda: None,
        "channels_last_3d": lambda: vae.to(memory_format=torch.channels_last_3d),
        "compiled_decoder": compile_decoder,
    }
    try:
        for name, prepare in variants.items():
            if bench.left_s() < bench.args.compile_reserve_s:
                bench.record("vae_decode_experiment", f"{name}.skipped", f"deadline ({bench.left_s():.0f} s left)")
                continue
            prepare()
            begin = time.perf_counter()
            output = decode()
            bench.synchronize()
            first_call_s = round(time.perf_counter() - begin, 1)
            bench.reset_peak()
            median, times = bench.time_ms(decode, warmup=1, repeats=3)
            entry = {"ms": median, "times_ms": times, "first_call_s": first_call_s, "peak_gib": bench.peak_gib()}
            bench.record("vae_decode_experiment", name, {**entry, "dev": deviation(output, reference)})
    finally:
        vae.decoder._compiled_call_impl = None
        vae.to(memory_format=torch.contiguous_format)


def _audio_file(bench: Bench) -> str:
    """A 6 s stereo 48 kHz clip (a decaying tone every half second over noise), written once."""
    import soundfile

    path = Path(bench.args.work_dir) / "bench_clip.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        rate = 48_000
        t = np.arange(int(6.0 * rate)) / rate
        tone = np.sin(2 * np.pi * 440 * t) * np.exp(-8 * (t % 0.5))
        noise = np.random.default_rng(0).normal(0, 0.02, t.shape)
        soundfile.write(path, np.stack([tone + noise, tone - noise], axis=1).astype(np.float32), rate)
    return str(path)


def write_mp4_with_diffusers(path: Path, output) -> None:
    """The straightforward writer a diffusers user reaches for: `diffusers.utils.export_utils.encode_video` (the
    LTX-2 reference's PyAV writer: libx264 at its default preset, AAC audio)."""
    from diffusers.utils.export_utils import encode_video

    encode_video(
        torch.from_numpy(output.frames),
        fps=round(output.frame_rate),
        output_path=str(path),
        audio=output.audio.waveform,
        audio_sample_rate=output.audio.sampling_rate,
    )


def run_pipeline(
    bench: Bench,
    pipe,
    label: str,
    audio_path: str | None,
    write: bool,
    diffusers_writer: bool = False,
    streamed: bool = False,
) -> dict:
    """One generation from the prompt (T2AV) or audio file (A2V) to an mp4 on disk; times from the call.

    With `diffusers_writer` the output is written a second time, with diffusers' own writer (the baseline's
    straightforward way), and that write is timed too. With `streamed` the pipeline encodes the mp4 while it decodes
    the final video (`output_path`), so the generation ends with the file written."""
    from ltx_pipeline.media import write_mp4
    from ltx_pipeline.types import Finished, StageDecoded, StepPreview

    height, width, num_frames = bench.e2e_size
    pipe._prompt_cache.clear()  # text encoding is part of every timed run
    bench.reset_peak()
    begin = time.perf_counter()
    kwargs = {"prompt": PROMPT, "height": height, "width": width, "num_frames": num_frames, "frame_rate": FRAME_RATE}
    if audio_path is not None:
        kwargs["audio"] = audio_path
    first_preview_s = stage_1_decoded_s = None
    previews = 0
    output = None
    mp4_path = Path(bench.args.work_dir) / f"{label}.mp4"
    if streamed:
        kwargs["output_path"] = mp4_path
    for event in pipe.stream(**kwargs, mode="distilled"):
        if isinstance(event, StepPreview):
            previews += 1
            first_preview_s = first_preview_s if first_preview_s is not None else event.elapsed_s
        elif isinstance(event, StageDecoded):
            stage_1_decoded_s = event.elapsed_s
        elif isinstance(event, Finished):
            output = event.output
    generate_s = time.perf_counter() - begin
    if write and not streamed:
        write_mp4(mp4_path, output.frames, output.audio, output.frame_rate)
    total_s = time.perf_counter() - begin
    result = {
        "end_to_end_s": round(total_s, 2),
        "generate_s": round(generate_s, 2),
        "mp4_write_s": round(total_s - generate_s, 2) if write and not streamed else None,
        "streamed": streamed,
        "first_preview_s": round(first_preview_s, 2) if first_preview_s is not None else None,
        "stage_1_decoded_s": round(stage_1_decoded_s, 2) if stage_1_decoded_s is not None else None,
        "previews": previews,
        "timings_s": {key: round(value, 3) for key, value in output.recipe.get("timings_s", {}).items()},
        "peak_gib": bench.peak_gib(),
        "frames": tuple(output.frames.shape),
        "audio": tuple(output.audio.waveform.shape),
        "mp4_bytes": mp4_path.stat().st_size if write or streamed else None,
    }
    if write and diffusers_writer:
        diffusers_path = Path(bench.args.work_dir) / f"{label}_diffusers_writer.mp4"
        begin = time.perf_counter()
        write_mp4_with_diffusers(diffusers_path, output)
        result["diffusers_mp4_write_s"] = round(time.perf_counter() - begin, 2)
        result["end_to_end_diffusers_writer_s"] = round(generate_s + result["diffusers_mp4_write_s"], 2)
        result["diffusers_mp4_bytes"] = diffusers_path.stat().st_size
    return result


def e2e(
    bench: Bench,
    state: dict,
    section: str,
    warmup: bool = True,
    diffusers_writer: bool = False,
    streamed: bool = False,
) -> None:
    from ltx_pipeline.pipeline_a2vid_two_stage import A2VidPipelineTwoStage
    from ltx_pipeline.pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline

    t2av = TI2VidTwoStagesPipeline(**state["components"])
    t2av.set_progress_bar_config(disable=True)
    a2v = A2VidPipelineTwoStage.from_pipe(t2av)
    audio_path = _audio_file(bench)
    if bench.left_s() < bench.args.e2e_reserve_s:
        bench.record(section, "skipped", f"deadline ({bench.left_s():.0f} s left)")
        return
    if warmup:
        begin = time.perf_counter()
        run_pipeline(bench, t2av, f"{section}_warmup_t2av", None, write=False, streamed=streamed)
        run_pipeline(bench, a2v, f"{section}_warmup_a2v", audio_path, write=False, streamed=streamed)
        bench.record(section, "warmup_s", round(time.perf_counter() - begin, 1))
    for name, pipe, audio in (("t2av", t2av, None), ("a2v", a2v, audio_path)):
        if bench.left_s() < bench.args.reserve_s:
            bench.record(section, f"{name}.skipped", f"deadline ({bench.left_s():.0f} s left)")
            continue
        result = run_pipeline(
            bench, pipe, f"{section}_{name}", audio, write=True, diffusers_writer=diffusers_writer, streamed=streamed
        )
        graphs = forward_graphs.recorded(pipe.transformer)
        if graphs is not None:
            result["forward_graphs"] = graph_counts(graphs)
        bench.record(section, name, result)


def section_e2e_baseline(bench: Bench, state: dict) -> None:
    """The eager pipelines; each output is written by the product's writer (the same one every other e2e section
    uses) and again by diffusers' `encode_video`, the baseline's own straightforward writer."""
    e2e(bench, state, "e2e_baseline", diffusers_writer=True)


def section_eager(bench: Bench, state: dict) -> None:
    transformer = state["components"]["transformer"]
    transformer.reset_attention_backend()
    state["references"] = measure_transformer(bench, "eager_native", transformer, None)
    # The same forward with the all-ones prompt masks the pipelines passed before (eager: 492.1 against 487.9 ms
    # without them in run 26).
    label = list(bench.shapes)[1]
    measure_transformer(
        bench,
        "eager_native_text_mask",
        transformer,
        state["references"],
        shapes=[label],
        adapt_inputs=with_text_masks,
    )


def backend_options(backend: str, scope: str) -> dict:
    """SpeedOptions' attention fields for `backend` on every attention ("all") or the video self-attention alone."""
    return {"attention_backend": backend} if scope == "all" else {"video_attention_backend": backend}


def section_backends(bench: Bench, state: dict) -> None:
    """Each attention backend at the stage-2 size, on every attention and on the video self-attention alone."""
    transformer = state["components"]["transformer"]
    label = list(bench.shapes)[1]
    best = ({}, bench.results["sections"].get("eager_native", {}).get(label, {}).get("ms", math.inf))
    for backend in bench.args.backends.split(","):
        if backend == "native" or backend not in acceleration.available_attention_backends():
            continue
        for scope in ("all", "video"):
            section = f"eager_{backend}_{scope}"
            options = backend_options(backend, scope)
            try:
                acceleration.apply_speed_options(transformer, acceleration.SpeedOptions(**options))
                measure_transformer(bench, section, transformer, state.get("references"), shapes=[label])
                ms = bench.results["sections"][section][label]["ms"]
                if ms < best[1]:
                    best = (options, ms)
            except Exception as error:  # a backend that cannot run these inputs is a result, not a crash
                bench.record(section, "error", f"{type(error).__name__}: {str(error)[:300]}")
            finally:
                transformer.set_attention_backend("native")
    state["best_attention"] = best[0]
    bench.record("backends", "best_eager_attention", best[0] or "native everywhere")


def section_compile(bench: Bench, state: dict) -> None:
    transformer = state["components"]["transformer"]
    options = acceleration.SpeedOptions(compile=True, **state.get("best_attention", {}))
    bench.record("compile", "options", str(options))
    acceleration.apply_speed_options(transformer, options)
    measure_transformer(
        bench,
        "compile",
        transformer,
        state.get("references"),
        shapes=compiled_shapes(bench),
        min_left_s=bench.args.compile_reserve_s,
    )


def section_e2e_compiled(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_compiled")


def measure_cuda_graphs(
    bench: Bench, state: dict, section: str, options: "acceleration.SpeedOptions", change=None
) -> None:
    """The transformer as it stands (bf16 or fp8 layers), recompiled with CUDA graphs, at the two stage sizes;
    `change(transformer)`, if given, runs after the options are applied (an experiment's one difference)."""
    transformer = state["components"]["transformer"]
    uncompile_blocks(transformer)
    bench.record(section, "options", str(options))
    acceleration.apply_speed_options(transformer, options)
    if change is not None:
        change(transformer)
    measure_transformer(
        bench,
        section,
        transformer,
        state.get("references"),
        shapes=list(bench.shapes)[:2],
        min_left_s=bench.args.compile_reserve_s,
    )


def section_graphs(bench: Bench, state: dict) -> None:
    options = acceleration.SpeedOptions(compile=True, cuda_graphs=True, **state.get("best_attention", {}))
    measure_cuda_graphs(bench, state, "graphs", options)


def section_graphs_gelu(bench: Bench, state: dict) -> None:
    """As `graphs`, with each feed-forward's GELU in its first product's epilogue (`gelu_epilogue=True`; on the CPU
    of a --tiny run the feed-forwards compute what they do unfused). The transformer is left fused, for
    `e2e_graphs_gelu` and `profile`; the fp8 section un-fuses it first."""
    transformer = state["components"]["transformer"]
    options = acceleration.SpeedOptions(
        compile=True, cuda_graphs=True, gelu_epilogue=True, **state.get("best_attention", {})
    )
    measure_cuda_graphs(bench, state, "graphs_gelu", options)
    fused = sum(isinstance(module, acceleration.LinearTanhGelu) for module in transformer.modules())
    bench.record("graphs_gelu", "fused_feed_forwards", fused)


def section_e2e_graphs_gelu(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_graphs_gelu")


def fused_options(state: dict) -> "acceleration.SpeedOptions":
    """The product's fastest options on the transformer as it stands: CUDA graphs, GELU epilogue, fused rotary."""
    return acceleration.SpeedOptions(
        compile=True, cuda_graphs=True, gelu_epilogue=True, fused_rotary=True, **state.get("best_attention", {})
    )


def section_graphs_fused(bench: Bench, state: dict) -> None:
    """As `graphs_gelu`, with the out-of-place rotary embedding too (`fused_rotary=True`): the product's fastest bf16
    options. Left so, for `e2e_graphs_fused`; the fp8 section restores diffusers' processors and GELUs first."""
    options = fused_options(state)
    measure_cuda_graphs(bench, state, "graphs_fused", options)


def section_e2e_graphs_fused(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_graphs_fused")


def section_autotune(bench: Bench, state: dict) -> None:
    """An experiment, not a product option: the blocks compiled in torch's "max-autotune" mode (CUDA graphs, and
    inductor timing its own matrix-product kernels against cuBLAS), at the stage-2 size alone. Run 7 measured it
    slower than plain CUDA graphs (357.3 vs 349.8 ms) after a 275 s first pass, so the pipelines do not offer it. The
    transformer is left compiled with plain CUDA graphs for the later sections."""
    transformer = state["components"]["transformer"]
    label = list(bench.shapes)[1]
    uncompile_blocks(transformer)
    acceleration.apply_speed_options(transformer, acceleration.SpeedOptions(**state.get("best_attention", {})))
    transformer.compile_repeated_blocks(fullgraph=True, mode="max-autotune")
    bench.record("autotune", "options", 'compile_repeated_blocks(fullgraph=True, mode="max-autotune")')
    measure_transformer(
        bench,
        "autotune",
        transformer,
        state.get("references"),
        shapes=[label],
        min_left_s=bench.args.compile_reserve_s,
    )
    uncompile_blocks(transformer)
    options = acceleration.SpeedOptions(compile=True, cuda_graphs=True, **state.get("best_attention", {}))
    acceleration.apply_speed_options(transformer, options)


def section_attention_graphs(bench: Bench, state: dict) -> None:
    """Each of --backends on the video self-attention (and "all:NAME" on every attention), compiled with CUDA graphs
    at the two stage sizes; the fastest at stage 2 is kept for the later sections. Eager timings rank attention
    kernels poorly here (the eager forward pays per-call overheads that graphs remove), so this ranks compiled ones."""
    transformer = state["components"]["transformer"]
    label = list(bench.shapes)[1]
    best = ({}, bench.results["sections"].get("graphs", {}).get(label, {}).get("ms", math.inf))
    for entry in bench.args.backends.split(","):
        scope, backend = entry.split(":", 1) if ":" in entry else ("video", entry)
        if backend not in acceleration.available_attention_backends():
            bench.record(f"graphs_{scope}_{backend}", "skipped", "not available here")
            continue
        section = f"graphs_{scope}_{backend}"
        options = {"compile": True, "cuda_graphs": True, **backend_options(backend, scope)}
        try:
            transformer.set_attention_backend("native")  # the previous entry's backend off (graphs: recompiled)
            measure_cuda_graphs(bench, state, section, acceleration.SpeedOptions(**options))
            ms = bench.results["sections"][section][label]["ms"]
            if ms < best[1]:
                best = (backend_options(backend, scope), ms)
        except Exception as error:  # a backend that cannot run these inputs is a result, not a crash
            bench.record(section, "error", f"{type(error).__name__}: {str(error)[:300]}")
    uncompile_blocks(transformer)
    transformer.set_attention_backend("native")
    acceleration.apply_speed_options(transformer, acceleration.SpeedOptions(compile=True, cuda_graphs=True, **best[0]))
    state["best_attention"] = best[0]
    bench.record("attention_graphs", "best", best[0] or "native everywhere")


KERNEL_FAMILIES = {  # substrings of GPU kernel names -> family, first match wins
    "fp8 row kernel": ("_quantize_rows_kernel",),  # ltx_pipeline.fp8_kernels, with fp8_row_kernel=True
    "fused norm kernel": ("_modulated_rms_norm_kernel",),  # ltx_pipeline.fp8_kernels, with fused_norms=True
    "gated output kernel": ("_gated_heads_kernel",),  # ltx_pipeline.fp8_kernels, fp8_row_kernel + fused_rotary
    "norm rotary kernel": ("_norm_rotary_kernel",),  # ltx_pipeline.rotary_kernels, with fused_rotary
    # then: inductor names its fused kernels after the ops they feed ("triton_poi_fused_..._cudnn_attention_...")
    "fused elementwise (triton)": ("triton",),
    "attention": ("flash", "fmha", "sdpa", "attention", "mha"),
    "matrix products": ("gemm", "xmma", "cutlass", "nvjet", "_mm_", "matmul", "scaled_mm", "addmm", "aten::mm"),
}


def kernel_family(name: str) -> str:
    lowered = name.lower()
    return next((family for family, keys in KERNEL_FAMILIES.items() if any(k in lowered for k in keys)), "other")


def _self_time_us(event, on_gpu: bool) -> float:
    if not on_gpu:
        return event.self_cpu_time_total
    # torch >= 2.4 names it for any device; earlier ones for CUDA
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)


def section_profile(bench: Bench, state: dict) -> None:
    """One forward at the stage-2 size under torch.profiler, the transformer as the earlier sections left it: GPU
    time per kernel family and the longest kernels (CPU ops in a --tiny run). Kernels inside CUDA graphs may be
    hidden from the trace: profile after `compile` rather than `graphs` for the detail. A second `profile` in one
    run records as profile_2, and so on."""
    from torch.profiler import ProfilerActivity, profile

    state["profiles"] = state.get("profiles", 0) + 1
    section = "profile" if state["profiles"] == 1 else f"profile_{state['profiles']}"
    transformer = state["components"]["transformer"]
    label = list(bench.shapes)[1]
    inputs = transformer_inputs(bench, transformer, *bench.shapes[label])
    on_gpu = bench.device.type == "cuda"

    with torch.no_grad():
        forward(transformer, inputs)  # compiles (or records) a new shape outside the trace
        bench.synchronize()
        activities = [ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
        with profile(activities=activities) as trace:
            begin_s = time.perf_counter()
            forward(transformer, inputs)
            bench.synchronize()
            wall_ms = (time.perf_counter() - begin_s) * 1e3
    wanted = torch.autograd.DeviceType.CUDA if on_gpu else torch.autograd.DeviceType.CPU
    kernels = [
        (event.key, _self_time_us(event, on_gpu), event.count)
        for event in trace.key_averages()
        if event.device_type == wanted
    ]
    kernels = [(name, micros / 1e3, count) for name, micros, count in kernels if micros > 0]
    families: dict[str, float] = {}
    for name, ms, _ in kernels:
        families[kernel_family(name)] = families.get(kernel_family(name), 0.0) + ms
    bench.record(section, "shape", label)
    replayed = forward_graphs.enabled(transformer)
    bench.record(section, "traced", "the whole forward's graph, replayed" if replayed else "forward")
    bench.record(section, "wall_ms", round(wall_ms, 1))
    bench.record(section, "total_ms", round(sum(ms for _, ms, _ in kernels), 1))
    copies = [kernel for kernel in kernels if "memcpy" in kernel[0].lower() or "memset" in kernel[0].lower()]
    bench.record(
        section, "copies", {"ms": round(sum(ms for _, ms, _ in copies), 2), "count": sum(c for *_, c in copies)}
    )
    bench.record(section, "copies_by_name", [[name[:140], round(ms, 2), count] for name, ms, count in copies])
    bench.record(section, "launches", sum(count for *_, count in kernels))
    bench.record(section, "families_ms", {family: round(ms, 1) for family, ms in sorted(families.items())})
    top = sorted(kernels, key=lambda kernel: -kernel[1])[:40]
    bench.record(section, "longest", [[name[:140], round(ms, 2), count] for name, ms, count in top])


def section_e2e_graphs(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_graphs")


def section_fp8(bench: Bench, state: dict) -> None:
    transformer = state["components"]["transformer"]
    uncompile_blocks(transformer)
    # fp8 alone, on diffusers' own layers and processors (fp8_graphs_fused adds the fused rotary embedding).
    unfuse_feed_forward_gelu(transformer)
    use_diffusers_rotary(transformer)
    attention = state.get("best_attention", {})
    begin = time.perf_counter()
    bench.reset_peak()
    replaced = acceleration.quantize_linear_layers_to_fp8(transformer, scaling=bench.args.fp8_scaling)
    free_memory()
    bench.record("fp8", "quantize", {"layers": replaced, "seconds": round(time.perf_counter() - begin, 1)})
    bench.record("fp8", "transformer_params_gib_after", bench.allocated_gib())
    acceleration.apply_speed_options(transformer, acceleration.SpeedOptions(**attention))
    label = list(bench.shapes)[1]
    measure_transformer(bench, "fp8_eager", transformer, state.get("references"), shapes=[label])
    transformer.compile_repeated_blocks(fullgraph=True)
    bench.record("fp8_compile", "options", f"fp8 {bench.args.fp8_scaling}, compile, attention {attention or 'native'}")
    measure_transformer(
        bench,
        "fp8_compile",
        transformer,
        state.get("references"),
        shapes=compiled_shapes(bench),
        min_left_s=bench.args.compile_reserve_s,
    )


def section_fp8_layers(bench: Bench, state: dict) -> None:
    """The transformer's video-side layers made fp8 (as `fp8` does), without timing or compiling: for the fp8 sections
    that compile their own options (`fp8_graph_forward`) when the device call is short."""
    transformer = state["components"]["transformer"]
    uncompile_blocks(transformer)
    unfuse_feed_forward_gelu(transformer)
    use_diffusers_rotary(transformer)
    begin = time.perf_counter()
    replaced = acceleration.quantize_linear_layers_to_fp8(transformer, scaling=bench.args.fp8_scaling)
    free_memory()
    bench.record("fp8_layers", "quantize", {"layers": replaced, "seconds": round(time.perf_counter() - begin, 1)})
    bench.record("fp8_layers", "allocated_gib", bench.allocated_gib())


def section_e2e_fp8(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_fp8_compiled")


def section_fp8_graphs(bench: Bench, state: dict) -> None:
    """Needs the fp8 section first: its fp8 layers, recompiled with CUDA graphs."""
    options = acceleration.SpeedOptions(compile=True, cuda_graphs=True, **state.get("best_attention", {}))
    measure_cuda_graphs(bench, state, "fp8_graphs", options)


def section_e2e_fp8_graphs(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_fp8_graphs")


def section_fp8_graphs_fused(bench: Bench, state: dict) -> None:
    """Needs the fp8 section first: its fp8 layers with CUDA graphs, the out-of-place rotary embedding and the audio
    feed-forwards' GELU epilogue (the video ones are fp8, which has none): the product's fastest fp8 options."""
    options = fused_options(state)
    measure_cuda_graphs(bench, state, "fp8_graphs_fused", options)


def section_fp8_row_kernel(bench: Bench, state: dict) -> None:
    """Needs the fp8 section first: as `fp8_graphs_fused`, with each video feed-forward's bias, GELU and fp8 scales
    in one pass (`fp8_row_kernel=True`). Leaves the transformer so, for the sections after it: a `fp8_graphs_fused`
    after it measures this layout again (run it before, as the baseline)."""
    options = dataclasses.replace(fused_options(state), fp8=True, fp8_row_kernel=True)
    measure_cuda_graphs(bench, state, "fp8_row_kernel", options)


def section_fp8_row_kernel_compiled(bench: Bench, state: dict) -> None:
    """As `fp8_row_kernel`, compiled without CUDA graphs, so that a `profile` after it sees each kernel (run 17 timed
    the kernel's layout but did not trace it): `--sections env,build,fp8,profile,fp8_row_kernel_compiled,profile`."""
    options = dataclasses.replace(fused_options(state), cuda_graphs=False, fp8=True, fp8_row_kernel=True)
    measure_cuda_graphs(bench, state, "fp8_row_kernel_compiled", options)


class _Messages(logging.Handler):
    """Collects a logger's messages (the fused-norm pass says how many computations it replaced in each graph)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def measure_fused_norms(bench: Bench, state: dict, section: str) -> None:
    """`measure_cuda_graphs` with every fp8 option and `fused_norms`, recording what the graph pass said (nothing
    where inductor's cache already held the compiled graphs, as on a machine that ran the section before: run 25)."""
    options = dataclasses.replace(fused_options(state), fp8=True, fp8_row_kernel=True, fused_norms=True)
    messages, pass_logger = _Messages(), logging.getLogger("ltx_pipeline.speed.fused_norms")
    pass_logger.addHandler(messages)
    pass_logger.setLevel(logging.INFO)
    try:
        measure_cuda_graphs(bench, state, section, options)
    finally:
        pass_logger.removeHandler(messages)
    bench.record(section, "pass", messages.messages)


def section_fp8_fused_norms(bench: Bench, state: dict) -> None:
    """Needs the fp8 section first: as `fp8_row_kernel`, with each video norm, its modulation, the residual add
    before it and the fp8 scales in one pass (`fused_norms=True`). Leaves the transformer so."""
    measure_fused_norms(bench, state, "fp8_fused_norms")


def section_fp8_ungated_output_experiment(bench: Bench, state: dict) -> None:
    """After `fp8_fused_norms`: the same options with the attention outputs' gating and fp8 scales left to inductor
    (the processors' `fp8_gated_output` off), the layout before `fuse_fp8_gated_outputs`; turned back on after."""
    transformer = state["components"]["transformer"]
    processors = [
        module.processor
        for module in transformer.modules()
        if getattr(getattr(module, "processor", None), "fp8_gated_output", False)
    ]
    for processor in processors:
        processor.fp8_gated_output = False
    bench.record("fp8_ungated_output_experiment", "processors_changed", len(processors))
    options = dataclasses.replace(fused_options(state), fp8=True, fused_norms=True)
    try:
        measure_cuda_graphs(bench, state, "fp8_ungated_output_experiment", options)
    finally:
        for processor in processors:
            processor.fp8_gated_output = True


VIDEO_GATES = ("attn1.to_gate_logits", "attn2.to_gate_logits", "audio_to_video_attn.to_gate_logits")


def section_fp8_gates_experiment(bench: Bench, state: dict) -> None:
    """After `fp8_fused_norms`: the video attentions' gate-logit layers (4,096 -> 32, kept in bf16 by
    constants.FP8_SKIP_LINEAR_SUFFIXES) as fp8 products too, so that each norm kernel no longer writes the bf16
    modulated rows they read (the fused-norm pass then finds only fp8 consumers). Changes the gates' precision:
    the deviation from eager says by how much. Leaves the transformer so."""
    transformer = state["components"]["transformer"]
    gates = [
        (name, module)
        for name, module in transformer.named_modules()
        if name.endswith(VIDEO_GATES) and ".audio_attn" not in name and type(module) is torch.nn.Linear
    ]
    for name, module in gates:
        parent_name, _, child = name.rpartition(".")
        setattr(transformer.get_submodule(parent_name), child, acceleration.Fp8Linear(module, "rowwise"))
    bench.record("fp8_gates_experiment", "gates_quantized", len(gates))
    measure_fused_norms(bench, state, "fp8_gates_experiment")


def section_e2e_fp8_fused_norms(bench: Bench, state: dict) -> None:
    """After `fp8_fused_norms`: the pipelines with that section's transformer."""
    e2e(bench, state, "e2e_fp8_fused_norms")


# --- The whole forward as one CUDA graph (`forward_graph=True`) ----------------------------------------------------


def section_graph_forward(bench: Bench, state: dict) -> None:
    """As `graphs_fused` (the product's fastest bf16 options), with the whole forward recorded as one CUDA graph per
    shape instead of a graph per block (`forward_graph=True`). Leaves the transformer so, for `e2e_graph_forward`."""
    options = dataclasses.replace(fused_options(state), cuda_graphs=False, forward_graph=True)
    measure_cuda_graphs(bench, state, "graph_forward", options)


def section_float_tables_experiment(bench: Bench, state: dict) -> None:
    """As `graph_forward`, with the rotary tables in float32 as diffusers makes them (the layout until run 28), where
    `fused_rotary` makes them float16 on CUDA (`HalfTableRotaryPosEmbed`)."""

    def float_tables(transformer) -> None:
        for module in acceleration.rotary_embeddings(transformer):
            module.__class__ = LTX2AudioVideoRotaryPosEmbed

    options = dataclasses.replace(fused_options(state), cuda_graphs=False, forward_graph=True)
    measure_cuda_graphs(bench, state, "float_tables_experiment", options, change=float_tables)


def section_graph_forward_norms(bench: Bench, state: dict) -> None:
    """As `graph_forward`, with each block norm, its modulation and the residual add before it in one pass
    (`fused_norms=True` on bf16 products). Leaves the transformer so, for `e2e_graph_forward`."""
    options = dataclasses.replace(fused_options(state), cuda_graphs=False, forward_graph=True, fused_norms=True)
    measure_cuda_graphs(bench, state, "graph_forward_norms", options)


def section_e2e_graph_forward(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_graph_forward")


def section_fp8_graph_forward(bench: Bench, state: dict) -> None:
    """Needs the fp8 section first: as `fp8_fused_norms` (every fp8 option), with the whole forward recorded as one
    CUDA graph per shape instead of a graph per block. Leaves the transformer so, for `e2e_fp8_graph_forward`."""
    options = dataclasses.replace(
        fused_options(state), cuda_graphs=False, forward_graph=True, fp8=True, fp8_row_kernel=True, fused_norms=True
    )
    measure_cuda_graphs(bench, state, "fp8_graph_forward", options)


def section_e2e_fp8_graph_forward(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_fp8_graph_forward")


def section_e2e_fp8_graph_forward_streamed(bench: Bench, state: dict) -> None:
    """After `fp8_graph_forward`: the pipelines with that transformer, each encoding its mp4 while the final video
    decode runs (`output_path`: the decode streamed over time, each chunk of frames handed to the encoder's thread)."""
    e2e(bench, state, "e2e_fp8_graph_forward_streamed", streamed=True)


def section_e2e_baseline_streamed(bench: Bench, state: dict) -> None:
    """After `e2e_baseline` (which warmed them up): the eager pipelines writing their mp4 while decoding."""
    e2e(bench, state, "e2e_baseline_streamed", warmup=False, streamed=True)


def _noise_and_motion_frames(height: int, width: int, count: int) -> dict[str, np.ndarray]:
    """121 frames of uniform noise (what random weights decode to) and of a moving gradient (real content's kind)."""
    noise = np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    rows, columns = np.mgrid[0:height, 0:width]
    motion = np.stack([((columns + 4 * index) % 256 + rows // 4) % 256 for index in range(count)], axis=0).astype(
        np.uint8
    )
    return {"noise": noise, "motion": np.repeat(motion[..., None], 3, axis=-1)}


def section_mp4_encode(bench: Bench, state: dict) -> None:
    """The encoder alone at the pipelines' size, frames already decoded: `media.write_mp4` (whole clip) and
    `streamed_write.write_while_decoding` (16-frame chunks handed over at once), at the product's x264 preset and at
    faster ones (an experiment: the preset is swapped in the writer's module for the measurement). The encoder must
    keep pace with the decode for the file to be finished when the decode is."""
    from ltx_pipeline import streaming_mp4
    from ltx_pipeline.media import write_mp4
    from ltx_pipeline.streamed_write import write_while_decoding
    from ltx_pipeline.types import Audio

    height, width, num_frames = bench.e2e_size
    audio = Audio(torch.zeros(2, round(num_frames / FRAME_RATE * 48_000)), 48_000)
    work = Path(bench.args.work_dir)
    product_preset = streaming_mp4.MP4_PRESET
    for content, frames in _noise_and_motion_frames(height, width, num_frames).items():
        begin = time.perf_counter()
        write_mp4(work / f"encode_{content}.mp4", frames, audio, FRAME_RATE)
        bench.record("mp4_encode", f"{content}.write_mp4_s", round(time.perf_counter() - begin, 3))
        for preset in (product_preset, "superfast", "ultrafast"):
            streaming_mp4.MP4_PRESET = preset
            try:
                chunks = [frames[start : start + 16] for start in range(0, num_frames, 16)]
                begin = time.perf_counter()
                write_while_decoding(work / f"encode_{content}_{preset}.mp4", chunks, audio, FRAME_RATE, num_frames)
                seconds = round(time.perf_counter() - begin, 3)
            finally:
                streaming_mp4.MP4_PRESET = product_preset
            size = (work / f"encode_{content}_{preset}.mp4").stat().st_size
            bench.record("mp4_encode", f"{content}.streamed_{preset}", {"seconds": seconds, "bytes": size})


def section_text_mask_experiment(bench: Bench, state: dict) -> None:
    """After any section: the transformer as it stands at the stage-2 size with the all-ones prompt masks the
    pipelines passed before TextConditioning.all_real, for the within-run gain of passing none. A compiled
    transformer compiles the masked variant first (a minute or less)."""
    label = list(bench.shapes)[1]
    measure_transformer(
        bench,
        "text_mask_experiment",
        state["components"]["transformer"],
        state.get("references"),
        shapes=[label],
        min_left_s=bench.args.compile_reserve_s,
        adapt_inputs=with_text_masks,
    )


def section_fp8_unfused_rotary_experiment(bench: Bench, state: dict) -> None:
    """After the fp8 section: as `fp8_graph_forward`, with the queries' and keys' norm and rotation left to inductor
    (the processors' `norm_rotary_kernel` off, the layout before `rotary_kernels`); turned back on after."""
    transformer = state["components"]["transformer"]
    processors = [
        module.processor
        for module in transformer.modules()
        if isinstance(getattr(module, "processor", None), OutOfPlaceRotaryAttnProcessor)
    ]
    for processor in processors:
        processor.norm_rotary_kernel = False
    bench.record("fp8_unfused_rotary_experiment", "processors_changed", len(processors))
    options = dataclasses.replace(
        fused_options(state), cuda_graphs=False, forward_graph=True, fp8=True, fp8_row_kernel=True, fused_norms=True
    )
    try:
        measure_cuda_graphs(bench, state, "fp8_unfused_rotary_experiment", options)
    finally:
        for processor in processors:
            processor.norm_rotary_kernel = True


def section_e2e_fp8_graphs_fused(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_fp8_graphs_fused")


def section_e2e_fp8_row_kernel(bench: Bench, state: dict) -> None:
    """After `fp8_row_kernel`: the pipelines with the product's fastest fp8 transformer (that section's options)."""
    e2e(bench, state, "e2e_fp8_row_kernel")


def section_e2e_compile_vae(bench: Bench, state: dict) -> None:
    """The pipelines with the transformer as the sections before left it and the video decoder compiled
    (`SpeedOptions(compile_vae=True)`; its compile at each of the two decoded sizes falls in the warm-up)."""
    acceleration.apply_speed_options(state["components"], acceleration.SpeedOptions(compile_vae=True))
    try:
        e2e(bench, state, "e2e_compile_vae")
    finally:
        state["components"]["vae"].decoder._compiled_call_impl = None


def measure_memory_mode(
    bench: Bench,
    state: dict,
    mode: str,
    cap_gib: float,
    options: "acceleration.SpeedOptions | None" = None,
    section: str | None = None,
) -> None:
    """Fresh components placed for memory `mode` with `options` (default: fp8 products alone; `place_pipeline`, as
    the CLI and the studio do), then the pipelines end to end (audio file or prompt to mp4) with the process's GPU
    memory capped at `cap_gib` (`torch.cuda.set_per_process_memory_fraction`: an allocation past it fails as on a card
    of that size). Compiled options get a first run of each pipeline that compiles (`warmup_s`), then the timed one."""
    options = options or acceleration.SpeedOptions(fp8=True)
    section = section or f"mode_{mode}"
    state.pop("components", None)
    state.pop("references", None)
    torch._dynamo.reset()
    free_memory()
    bench.record(section, "speed_options", dataclasses.asdict(options))
    begin = time.perf_counter()
    components = build_components(bench)
    bench.synchronize()
    # As the product has them before placing (weights loaded in CPU memory): the random weights are made on the GPU,
    # where it is fast, then moved out, so the mode's setup peaks as it does for a user (all 67 GiB of bf16
    # components left on an 80 GB card beside the setup's fp8 copies ran out of memory).
    for module in components.values():
        if isinstance(module, torch.nn.Module):
            module.to("cpu")
    free_memory()
    bench.record(section, "allocated_gib_before_placing", bench.allocated_gib())
    acceleration.place_pipeline(components, bench.device, mode, options)
    free_memory()
    bench.record(section, "setup_s", round(time.perf_counter() - begin, 1))
    bench.record(section, "allocated_gib_after_setup", bench.allocated_gib())
    bench.record(section, "transformer_gib", round(acceleration.weight_bytes(components["transformer"]) / 2**30, 2))
    state["components"] = components
    if bench.device.type == "cuda":
        total = torch.cuda.get_device_properties(bench.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * 2**30 / total))
        bench.record(section, "memory_cap_gib", cap_gib)
    try:
        e2e(bench, state, section, warmup=options.compile)
    except torch.OutOfMemoryError:
        # What holds the capped memory when it runs out: the weights on the GPU, component by component.
        bench.record(section, "gpu_weights_at_oom_gib", gpu_weights(components))
        bench.record(section, "gpu_tensors_at_oom", live_gpu_tensors())
        bench.record(section, "allocated_gib_at_oom", bench.allocated_gib())
        raise
    finally:
        if bench.device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
        state.pop("components", None)
        torch._dynamo.reset()  # compiled blocks hold the section's modules
        free_memory()


def gpu_weights(components: dict) -> dict:
    """GiB of each component's parameters and buffers on a GPU (the transformer's also by top-level child), those
    above 0.01 GiB."""
    found = {}
    for name, module in components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        tensors = [*module.named_parameters(), *module.named_buffers()]
        for key, tensor in tensors:
            if tensor.device.type != "cuda":
                continue
            part = name if name != "transformer" else f"transformer.{key.split('.')[0]}"
            found[part] = found.get(part, 0) + tensor.numel() * tensor.element_size()
    return {part: round(size / 2**30, 2) for part, size in sorted(found.items()) if size >= 0.01 * 2**30}


def live_gpu_tensors(top: int = 8) -> dict:
    """Every live tensor on a GPU that Python's garbage collector can see (weights, caches, leftovers), grouped by
    dtype and shape: the `top` largest groups in GiB with their counts, and the total."""
    import gc
    import warnings

    groups: dict[str, list] = {}
    with warnings.catch_warnings():  # isinstance on some of torch's deprecated module attributes warns
        warnings.simplefilter("ignore")
        candidates = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
    for candidate in candidates:
        try:
            if candidate.device.type != "cuda":
                continue
            key = f"{str(candidate.dtype).removeprefix('torch.')}{tuple(candidate.shape)}"
            size = candidate.untyped_storage().nbytes()
        except (RuntimeError, ReferenceError):
            continue
        entry = groups.setdefault(key, [0, 0])
        entry[0] += size
        entry[1] += 1
    largest = sorted(groups.items(), key=lambda item: -item[1][0])[:top]
    found = {key: f"{size / 2**30:.2f} GiB x{count}" for key, (size, count) in largest}
    found["total_gib"] = round(sum(size for size, _ in groups.values()) / 2**30, 2)
    return found


def fastest_options() -> "acceleration.SpeedOptions":
    """The product's fastest options (those of `fp8_graph_forward`, the fastest measured forward): fp8 products with
    the row kernel, compiled blocks with fused norms, GELU epilogue and fused rotary, the whole forward as one graph."""
    return acceleration.SpeedOptions(
        compile=True,
        gelu_epilogue=True,
        fused_rotary=True,
        fp8=True,
        fp8_row_kernel=True,
        fused_norms=True,
        forward_graph=True,
    )


def section_first_generation(bench: Bench, state: dict) -> None:
    """The first generation of a process against the next ones (issue 28, item 4), placed the product's way.

    Fresh components are placed with `place_pipeline` and `fastest_options()`, as the command line and the studio do
    (so torch.compile's caches go where the product keeps them: `compile_cache`), then the studio's start-up warm-up
    (`speed.warmup.warm_up`, text to audio+video at the benchmark's size) is timed, then each pipeline twice, writing
    its mp4 while decoding. Run it as the only section of a process, twice in a row on one machine: the first process
    finds no cache (the first run after installing), the second finds the first one's (the first run after a
    restart). `first_over_warm` is the warm-up's time over the warm T2AV's."""
    from ltx_pipeline.pipeline_a2vid_two_stage import A2VidPipelineTwoStage
    from ltx_pipeline.pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline
    from ltx_pipeline.speed import compile_cache
    from ltx_pipeline.speed.warmup import warm_up

    section = "first_generation"
    state.pop("components", None)
    free_memory()
    cache = compile_cache.compile_cache_dir()
    bench.record(section, "cache_files_before", sum(1 for path in cache.rglob("*") if path.is_file()))
    begin = time.perf_counter()
    components = build_components(bench)
    t2av = TI2VidTwoStagesPipeline(**components)
    t2av.set_progress_bar_config(disable=True)
    options = fastest_options() if bench.device.type == "cuda" else acceleration.SpeedOptions(compile=True)
    acceleration.place_pipeline(t2av, bench.device, None, options)
    bench.synchronize()
    bench.record(section, "options", str(options))
    bench.record(section, "setup_s", round(time.perf_counter() - begin, 1))
    state["components"] = components
    height, width, num_frames = bench.e2e_size
    first = warm_up(t2av, height, width, num_frames, FRAME_RATE)
    bench.record(section, "warm_up_s", round(first.seconds, 2))
    a2v = A2VidPipelineTwoStage.from_pipe(t2av)
    audio_path = _audio_file(bench)
    for run in ("first", "second"):
        for name, pipe, audio in (("t2av", t2av, None), ("a2v", a2v, audio_path)):
            result = run_pipeline(bench, pipe, f"{section}_{name}_{run}", audio, write=True, streamed=True)
            bench.record(section, f"{name}.{run}", result)
    warm = bench.results["sections"][section]["t2av.second"]["end_to_end_s"]
    bench.record(section, "first_over_warm", round(first.seconds / warm, 2))
    bench.record(section, "cache_files_after", sum(1 for path in cache.rglob("*") if path.is_file()))
    state.pop("components", None)


def section_mode_24gb(bench: Bench, state: dict) -> None:
    """The "24gb" mode (the fp8 transformer resident, the rest streamed) under a 24 GiB cap."""
    measure_memory_mode(bench, state, "24gb", 24.0)


def mode_24gb_compiled_options(state: dict) -> "acceleration.SpeedOptions":
    """Every speed option the "24gb" mode allows, now that its transformer holds its fp8 weights in its own layers
    (no hook): the product's fastest fp8 set (`fp8_graph_forward`'s), the whole forward as one CUDA graph."""
    return dataclasses.replace(
        fused_options(state), cuda_graphs=False, forward_graph=True, fp8=True, fp8_row_kernel=True, fused_norms=True
    )


def section_mode_24gb_compiled(bench: Bench, state: dict) -> None:
    """The "24gb" mode under a 24 GiB cap with compiled blocks and the whole-forward CUDA graph (the graph's pool
    holds one more copy of the forward's activations, inside the cap)."""
    measure_memory_mode(bench, state, "24gb", 24.0, mode_24gb_compiled_options(state), "mode_24gb_compiled")


def section_mode_24gb_compiled_blocks(bench: Bench, state: dict) -> None:
    """As `mode_24gb_compiled` without the whole-forward graph (compiled blocks launched one by one): what the mode
    gives if the graph's activations do not fit under the cap."""
    options = dataclasses.replace(mode_24gb_compiled_options(state), forward_graph=False)
    measure_memory_mode(bench, state, "24gb", 24.0, options, "mode_24gb_compiled_blocks")


def section_mode_16gb(bench: Bench, state: dict) -> None:
    """The "16gb" mode (every component streamed, the transformer group by group) under a 16 GiB cap."""
    measure_memory_mode(bench, state, "16gb", 16.0)


SECTIONS = {
    "env": section_env,
    "build": section_build,
    "components": section_components,
    "e2e_baseline": section_e2e_baseline,
    "eager": section_eager,
    "backends": section_backends,
    "compile": section_compile,
    "e2e_compiled": section_e2e_compiled,
    "graphs": section_graphs,
    "graphs_gelu": section_graphs_gelu,
    "e2e_graphs_gelu": section_e2e_graphs_gelu,
    "graphs_fused": section_graphs_fused,
    "vae_decode_experiment": section_vae_decode_experiment,
    "e2e_graphs_fused": section_e2e_graphs_fused,
    "attention_graphs": section_attention_graphs,
    "autotune": section_autotune,
    "profile": section_profile,
    "e2e_graphs": section_e2e_graphs,
    "fp8": section_fp8,
    "fp8_layers": section_fp8_layers,
    "e2e_fp8": section_e2e_fp8,
    "fp8_graphs": section_fp8_graphs,
    "e2e_fp8_graphs": section_e2e_fp8_graphs,
    "fp8_graphs_fused": section_fp8_graphs_fused,
    "fp8_row_kernel": section_fp8_row_kernel,
    "fp8_row_kernel_compiled": section_fp8_row_kernel_compiled,
    "fp8_fused_norms": section_fp8_fused_norms,
    "e2e_fp8_fused_norms": section_e2e_fp8_fused_norms,
    "fp8_ungated_output_experiment": section_fp8_ungated_output_experiment,
    "fp8_gates_experiment": section_fp8_gates_experiment,
    "e2e_fp8_graphs_fused": section_e2e_fp8_graphs_fused,
    "e2e_fp8_row_kernel": section_e2e_fp8_row_kernel,
    "e2e_compile_vae": section_e2e_compile_vae,
    "mode_24gb": section_mode_24gb,
    "mode_24gb_compiled": section_mode_24gb_compiled,
    "mode_24gb_compiled_blocks": section_mode_24gb_compiled_blocks,
    "mode_16gb": section_mode_16gb,
    "first_generation": section_first_generation,
    "graph_forward": section_graph_forward,
    "graph_forward_norms": section_graph_forward_norms,
    "float_tables_experiment": section_float_tables_experiment,
    "e2e_graph_forward": section_e2e_graph_forward,
    "fp8_graph_forward": section_fp8_graph_forward,
    "e2e_fp8_graph_forward": section_e2e_fp8_graph_forward,
    "fp8_unfused_rotary_experiment": section_fp8_unfused_rotary_experiment,
    "text_mask_experiment": section_text_mask_experiment,
    "e2e_fp8_graph_forward_streamed": section_e2e_fp8_graph_forward_streamed,
    "e2e_baseline_streamed": section_e2e_baseline_streamed,
    "mp4_encode": section_mp4_encode,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_full_size.json")
    parser.add_argument("--work-dir", default=os.environ.get("OUT", "/tmp"), help="where mp4s and the clip go")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--tiny", action="store_true", help="tiny components on CPU: a dry run of every code path")
    parser.add_argument("--deadline-s", type=float, default=560.0, help="skip what would start after this")
    parser.add_argument("--reserve-s", type=float, default=20.0, help="time kept free at the deadline")
    parser.add_argument("--compile-reserve-s", type=float, default=120.0, help="time a new compiled shape needs")
    parser.add_argument("--e2e-reserve-s", type=float, default=60.0, help="time a pipeline section needs")
    parser.add_argument(
        "--no-compile-large", action="store_true", help="compiled variants at the two stage sizes only"
    )
    parser.add_argument("--no-large", action="store_true", help="transformer timings at the two stage sizes only")
    parser.add_argument(
        "--backends",
        default="_native_cudnn,_native_flash,_native_efficient",
        help="diffusers attention backends for the backends and attention_graphs sections (in attention_graphs, NAME "
        "is tried on the video self-attention and all:NAME on every attention)",
    )
    parser.add_argument("--fp8-scaling", default="rowwise", choices=acceleration.FP8_SCALINGS)
    parser.add_argument("--repeats", type=int, default=6, help="timed forwards per shape (3 at 1536x1024)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be 1 or more; got {args.repeats}.")
    bench = Bench(args)
    state: dict = {}
    graph_messages, graph_logger = _Messages(), logging.getLogger("ltx_pipeline.speed.forward_graphs")
    graph_logger.addHandler(graph_messages)  # why the whole-forward graphs record again, where they do
    graph_logger.setLevel(logging.INFO)
    for name in args.sections.split(","):
        if bench.left_s() < args.reserve_s:
            bench.record(name, "skipped", f"deadline ({bench.left_s():.0f} s left)")
            continue
        begin = time.perf_counter()
        try:
            SECTIONS[name](bench, state)
        except Exception as error:
            bench.results["errors"][name] = traceback.format_exc()[-3000:]
            print(f"!! section {name} failed: {type(error).__name__}: {error}", flush=True)
            traceback.print_exc()
        bench.record(name, "section_s", round(time.perf_counter() - begin, 1))
        free_memory()  # what a section left unreferenced is not held through the next (an 80 GB card runs them all)
        bench.record(name, "allocated_gib_after", bench.allocated_gib())
        if graph_messages.messages:
            bench.record(name, "forward_graphs_log", [message[:400] for message in graph_messages.messages[:12]])
            graph_messages.messages.clear()
        bench.save()
    print(json.dumps(bench.results["sections"], indent=1, default=str)[-6000:])


if __name__ == "__main__":
    main()
