"""LTX-2.5 at full size on one GPU: end-to-end A2V and T2AV, the diffusion decoder against the VAE decoder, peak memory.

Every component is built at the LTX-2.5 size (`loading_2_5.FULL_SIZE_2_5`: diffusers' conversion script, version
"2.5") with random bf16 weights (the vocoder in float32, as the pipeline keeps it): speed does not depend on weight
values. The one size no source states is the fine-tuned Gemma 4 12B text encoder's: it is built here with Gemma 3
12B's text sizes (`GEMMA_4_12B_ASSUMED`, text tower only), which the results name. The pipelines run as the product
runs a loaded 2.5 model: distilled, stage 1 with ancestral Euler (`versions.PROFILES["2.5"]`), the final video
decoded by the diffusion decoder (the reference's default) or, for the comparison, by the VAE.

    python benchmarks/bench_full_size_2_5.py --out $OUT/bench_2_5.json                 # eager, then with --speed
    python benchmarks/bench_full_size_2_5.py --speed compile,gelu_epilogue,fused_rotary --out ...
    python benchmarks/bench_full_size_2_5.py --tiny --out /tmp/bench_2_5_tiny.json     # CPU dry run of every path

Sections (`--sections`): build, decoders (the same 768x512x121 latents through each decoder), duration (the
duration head's prediction), e2e_t2av and e2e_a2v (each decoded both ways), e2e_memory (peak of each memory mode
the product offers, T2AV). Results go to `--out` as JSON after every section and as a table on stdout, with the device.
"""

import argparse
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

from bench_full_size import BenchRun, default_dtype, free_memory, parameter_count  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.models.autoencoders.ltx2_diffusion_decoder import LTX2VideoDiffusionDecoderModel  # noqa: E402
from diffusers.pipelines.ltx2 import (  # noqa: E402
    LTX2DurationHead,
    LTX2LatentUpsamplerModel,
    LTX2TextConnectors,
    LTX2VocoderWithBWE,
)
from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration  # noqa: E402

from ltx_pipeline import loading_2_5, tiny  # noqa: E402
from ltx_pipeline.pipeline_a2vid_two_stage import A2VidPipelineTwoStage  # noqa: E402
from ltx_pipeline.pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline  # noqa: E402
from ltx_pipeline.speed import acceleration  # noqa: E402
from ltx_pipeline.types import Finished, StageDecoded  # noqa: E402

# Gemma 4 12B's sizes are in neither source (docs/LTX-2.5.md, "Not verified"): Gemma 3 12B's text tower stands in.
GEMMA_4_12B_ASSUMED = {
    "text_config": {
        "hidden_size": 3840,
        "intermediate_size": 15360,
        "num_hidden_layers": 48,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 256,
        "vocab_size": 262144,
        "max_position_embeddings": 131072,
        "sliding_window": 1024,
        "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 8,
    },
    "vision_config": None,
    "audio_config": None,
}
LATENT_UPSAMPLER = {"in_channels": 128, "mid_channels": 1024, "num_blocks_per_stage": 4, "dims": 3}
FULL_E2E = (512, 768, 121)  # height, width, frames
TINY_E2E = (128, 128, 17)
FRAME_RATE = 24.0
PROMPT = "a man speaks to the camera in a quiet kitchen while a kettle starts to whistle behind him"
SECTIONS = ("build", "decoders", "duration", "e2e_t2av", "e2e_a2v", "e2e_memory")


class Bench(BenchRun):
    """The device, the size, the deadline and the results; the results file is written after every section."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.size = TINY_E2E if args.tiny else FULL_E2E
        self.results["device"] = device_name(self.device)
        self.results["text_encoder_sizes"] = "tiny" if args.tiny else "assumed: Gemma 3 12B's text tower"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} threads)"


def full_size_kwargs() -> dict[str, dict]:
    sizes = loading_2_5.FULL_SIZE_2_5
    text = GEMMA_4_12B_ASSUMED["text_config"]
    return {
        "text_encoder": GEMMA_4_12B_ASSUMED,
        "connectors": loading_2_5.full_size_connectors_2_5(text["hidden_size"], text["num_hidden_layers"]),
        "transformer": sizes["transformer"],
        "vae": sizes["vae"],
        "audio_vae": sizes["audio_vae"],
        "vocoder": sizes["vocoder"],
        "latent_upsampler": LATENT_UPSAMPLER,
        "diffusion_decoder": sizes["diffusion_decoder"],
        "duration_head": sizes["duration_head"],
    }


def build(bench: Bench) -> dict:
    """Every component, randomly initialised on the device in bf16 (the vocoder in float32); the tiny ones with
    `--tiny`."""
    if bench.args.tiny:
        components = tiny.build_tiny_components("2.5")
        extras = {
            "duration_head": tiny.build_tiny_duration_head(),
            "diffusion_decoder": tiny.build_tiny_diffusion_decoder(),
        }
        return {"components": components, **extras}
    kwargs = full_size_kwargs()
    components: dict = {"tokenizer": tiny.build_word_tokenizer(), "scheduler": FlowMatchEulerDiscreteScheduler()}
    large = {
        "connectors": LTX2TextConnectors,
        "transformer": LTX2VideoTransformer3DModel,
        "diffusion_decoder": LTX2VideoDiffusionDecoderModel,
        "duration_head": LTX2DurationHead,
    }
    # Some small models compute filters with integer products CUDA lacks: built on the CPU, then moved.
    small = {
        "vae": AutoencoderKLLTX2Video,
        "audio_vae": AutoencoderKLLTX2Audio,
        "latent_upsampler": LTX2LatentUpsamplerModel,
    }
    built = {}
    with torch.device(bench.device), default_dtype(torch.bfloat16):
        torch.manual_seed(0)
        components["text_encoder"] = Gemma4UnifiedForConditionalGeneration(
            Gemma4UnifiedConfig(**kwargs["text_encoder"])
        ).eval()
        for index, (name, cls) in enumerate(large.items()):
            torch.manual_seed(index + 1)
            built[name] = cls(**kwargs[name]).eval()
    with default_dtype(torch.bfloat16):
        for index, (name, cls) in enumerate(small.items()):
            torch.manual_seed(index + 10)
            components[name] = cls(**kwargs[name]).eval().to(bench.device)
    torch.manual_seed(20)
    components["vocoder"] = LTX2VocoderWithBWE(**kwargs["vocoder"]).eval().to(bench.device)
    components["connectors"], components["transformer"] = built.pop("connectors"), built.pop("transformer")
    for module in [*components.values(), *built.values()]:
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
    return {"components": components, **built}


def make_pipelines(state: dict) -> tuple[TI2VidTwoStagesPipeline, A2VidPipelineTwoStage]:
    t2av = TI2VidTwoStagesPipeline(**state["components"])
    t2av.duration_head, t2av.diffusion_decoder = state["duration_head"], state["diffusion_decoder"]
    t2av.set_progress_bar_config(disable=True)
    return t2av, A2VidPipelineTwoStage.from_pipe(t2av)


def time_s(bench: Bench, function, warmup: int = 1, repeats: int = 3) -> tuple[float, list[float]]:
    """Median seconds of `function()` after `warmup` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        bench.synchronize()
        begin = time.perf_counter()
        function()
        bench.synchronize()
        times.append(time.perf_counter() - begin)
    return round(statistics.median(times), 3), [round(value, 3) for value in times]


# --- Sections -------------------------------------------------------------------------------------------------------


def section_build(bench: Bench, state: dict) -> None:
    begin = time.perf_counter()
    state.update(build(bench))
    bench.record("build", "seconds", round(time.perf_counter() - begin, 1))
    modules = {
        **state["components"],
        "duration_head": state["duration_head"],
        "diffusion_decoder": state["diffusion_decoder"],
    }
    counts = {name: parameter_count(module) for name, module in modules.items() if isinstance(module, torch.nn.Module)}
    bench.record("build", "parameters_millions", {name: round(count / 1e6, 1) for name, count in counts.items()})
    bench.record("build", "allocated_gib", bench.allocated_gib())
    t2av, _ = make_pipelines(state)
    bench.record("build", "model", {"version": t2av.model_version, "summary": t2av.model_summary})


def final_latents(bench: Bench, pipe: TI2VidTwoStagesPipeline) -> torch.Tensor:
    """Random un-normalised latents of the final (full-size) video, (1, 128, F, H/32, W/32)."""
    height, width, num_frames = bench.size
    geometry = pipe.latent_geometry(height, width, num_frames, FRAME_RATE)
    channels = pipe.vae.config.latent_channels
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, channels, geometry.frames, geometry.height, geometry.width, generator=generator)
    return latents.to(bench.device)


def section_decoders(bench: Bench, state: dict) -> None:
    """The same latents decoded by the VAE and by the diffusion decoder (one step, as released): time and peak."""
    pipe, _ = make_pipelines(state)
    latents = final_latents(bench, pipe)
    bench.record("decoders", "latents", tuple(latents.shape))
    decoders = {
        "vae": lambda: pipe.decode_video(latents),
        "diffusion": lambda: pipe.decode_video(latents, torch.Generator().manual_seed(0)),
    }
    for name, decode in decoders.items():
        free_memory()
        bench.reset_peak()
        with torch.no_grad():
            median, runs = time_s(bench, decode, warmup=1, repeats=1 if bench.args.tiny else 3)
        bench.record("decoders", name, {"median_s": median, "runs_s": runs, "peak_gib": bench.peak_gib()})


def section_duration(bench: Bench, state: dict) -> None:
    pipe, _ = make_pipelines(state)
    bench.reset_peak()
    prediction = pipe.predict_length(PROMPT, FRAME_RATE)
    with torch.no_grad():
        median, runs = time_s(bench, lambda: pipe.predict_length(PROMPT, FRAME_RATE))
    bench.record("duration", "predict_s", {"median_s": median, "runs_s": runs, "peak_gib": bench.peak_gib()})
    bench.record("duration", "prediction", {"num_frames": prediction.num_frames, "seconds": prediction.seconds})


def audio_file(bench: Bench) -> str:
    """A 6 s stereo 48 kHz clip (a decaying tone every half second over noise), written once."""
    import soundfile

    path = Path(bench.args.work_dir) / "bench_2_5_clip.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        rate = 48_000
        t = np.arange(int(6.0 * rate)) / rate
        tone = np.sin(2 * np.pi * 440 * t) * np.exp(-8 * (t % 0.5))
        noise = np.random.default_rng(0).normal(0, 0.02, t.shape)
        soundfile.write(path, np.stack([tone + noise, tone - noise], axis=1).astype(np.float32), rate)
    return str(path)


def run(bench: Bench, pipe, audio: str | None) -> dict:
    """One distilled generation from the prompt (or clip) to frames and sound; times from the call."""
    height, width, num_frames = bench.size
    pipe._prompt_cache.clear()  # text encoding is part of every timed run
    free_memory()
    bench.reset_peak()
    kwargs = {"prompt": PROMPT, "height": height, "width": width, "num_frames": num_frames, "frame_rate": FRAME_RATE}
    if audio is not None:
        kwargs["audio"] = audio
    begin = time.perf_counter()
    stage_1_decoded_s, output = None, None
    for event in pipe.stream(**kwargs, mode="distilled"):
        if isinstance(event, StageDecoded):
            stage_1_decoded_s = event.elapsed_s
        elif isinstance(event, Finished):
            output = event.output
    bench.synchronize()
    recipe = output.recipe
    return {
        "end_to_end_s": round(time.perf_counter() - begin, 2),
        "stage_1_decoded_s": None if stage_1_decoded_s is None else round(stage_1_decoded_s, 2),
        "timings_s": {key: round(value, 2) for key, value in recipe.get("timings_s", {}).items()},
        "peak_gib": bench.peak_gib(),
        "frames": tuple(output.frames.shape),
        "audio": tuple(output.audio.waveform.shape),
        "stage_1_sampler": recipe.get("stage_1_sampler"),
        "video_decoder": recipe.get("video_decoder"),
    }


def e2e(bench: Bench, state: dict, section: str, audio_to_video: bool) -> None:
    """The pipeline with each final decoder, after one warm-up run (kernels, allocator)."""
    t2av, a2v = make_pipelines(state)
    pipe = a2v if audio_to_video else t2av
    audio = audio_file(bench) if audio_to_video else None
    begin = time.perf_counter()
    run(bench, pipe, audio)
    bench.record(section, "warmup_s", round(time.perf_counter() - begin, 1))
    for decoder in ("diffusion", "vae"):
        if bench.left_s() < bench.args.reserve_s:
            bench.record(section, decoder, f"skipped: deadline ({bench.left_s():.0f} s left)")
            continue
        pipe.diffusion_decoder = state["diffusion_decoder"] if decoder == "diffusion" else None
        bench.record(section, decoder, run(bench, pipe, audio))


def section_e2e_t2av(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_t2av", audio_to_video=False)


def section_e2e_a2v(bench: Bench, state: dict) -> None:
    e2e(bench, state, "e2e_a2v", audio_to_video=True)


def section_e2e_memory(bench: Bench, state: dict) -> None:
    """T2AV's peak under each of the product's memory modes with the `--speed` options (LTX-2.5's diffusion decoder
    and duration head placed by the mode too), each on a fresh set of components (a mode moves and casts weights),
    where the deadline leaves time. Compiled options get a first run that compiles (`<mode>_warmup_s`); a mode that
    cannot take them is recorded as refused, with the product's message."""
    options = speed_options(bench)
    for mode in bench.args.memory_modes.split(",") if bench.args.memory_modes else ():
        if bench.left_s() < bench.args.e2e_reserve_s:
            bench.record("e2e_memory", mode, f"skipped: deadline ({bench.left_s():.0f} s left)")
            continue
        try:
            acceleration.check_speed_for_memory_mode(options, mode)
        except ValueError as error:
            bench.record("e2e_memory", mode, f"refused: {error}")
            continue
        state.clear()
        torch._dynamo.reset()
        free_memory()
        state.update(build(bench))
        t2av, _ = make_pipelines(state)
        acceleration.place_pipeline(t2av, bench.device, mode, options)
        if options.compile:
            begin = time.perf_counter()
            run(bench, t2av, None)
            bench.record("e2e_memory", f"{mode}_warmup_s", round(time.perf_counter() - begin, 1))
        bench.record("e2e_memory", mode, run(bench, t2av, None))


def speed_options(bench: Bench) -> "acceleration.SpeedOptions":
    """The `--speed` switches as `SpeedOptions`."""
    names = [name for name in bench.args.speed.split(",") if name]
    return acceleration.SpeedOptions(**{name: True for name in names})


def apply_speed(bench: Bench, state: dict) -> None:
    """`--speed`: the product's speed options, applied to the transformer before the sections that follow."""
    if not bench.args.speed:
        return
    acceleration.apply_speed_options(state["components"]["transformer"], speed_options(bench))
    bench.record("build", "speed_options", [name for name in bench.args.speed.split(",") if name])


SECTION_FUNCTIONS = {
    "build": section_build,
    "decoders": section_decoders,
    "duration": section_duration,
    "e2e_t2av": section_e2e_t2av,
    "e2e_a2v": section_e2e_a2v,
    "e2e_memory": section_e2e_memory,
}


def table(results: dict) -> str:
    """The end-to-end and decoder figures as a markdown table."""
    lines = [f"device: {results['device']}", "", "| run | seconds | peak GiB |", "|---|---|---|"]
    for section, values in results["sections"].items():
        for key, value in values.items():
            if isinstance(value, dict) and ("end_to_end_s" in value or "median_s" in value):
                seconds = value.get("end_to_end_s", value.get("median_s"))
                lines.append(f"| {section} {key} | {seconds} | {value.get('peak_gib')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_full_size_2_5.json")
    parser.add_argument("--work-dir", default=os.environ.get("OUT", "/tmp"), help="where the clip goes")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--tiny", action="store_true", help="tiny components on CPU: a dry run of every code path")
    parser.add_argument("--speed", default="", help="comma list of SpeedOptions switches, e.g. compile,gelu_epilogue")
    parser.add_argument("--memory-modes", default="", help="comma list of memory modes for e2e_memory, e.g. 24gb")
    parser.add_argument("--deadline-s", type=float, default=560.0, help="skip what would start after this")
    parser.add_argument("--reserve-s", type=float, default=30.0, help="time kept free at the deadline")
    parser.add_argument("--e2e-reserve-s", type=float, default=120.0, help="time a fresh build and run needs")
    args = parser.parse_args()
    unknown = [name for name in args.sections.split(",") if name not in SECTION_FUNCTIONS]
    if unknown:
        parser.error(f"--sections takes {', '.join(SECTIONS)}; got {', '.join(unknown)}.")
    bench = Bench(args)
    state: dict = {}
    for name in args.sections.split(","):
        if bench.left_s() < args.reserve_s:
            bench.record(name, "skipped", f"deadline ({bench.left_s():.0f} s left)")
            continue
        if name != "build" and "components" not in state:
            section_build(bench, state)
        begin = time.perf_counter()
        try:
            SECTION_FUNCTIONS[name](bench, state)
            if name == "build":
                apply_speed(bench, state)
        except Exception as error:
            bench.results["errors"][name] = traceback.format_exc()[-3000:]
            print(f"!! section {name} failed: {type(error).__name__}: {error}", flush=True)
        bench.record(name, "section_s", round(time.perf_counter() - begin, 1))
        bench.save()
    print(table(bench.results))


if __name__ == "__main__":
    main()
