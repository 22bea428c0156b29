"""Stage 2 of the two-stage pipeline split over 1, 2 and 4 GPUs of one host with context parallelism.

Times the product's own stage-2 loop (`LTXAVPipelineBase.denoise`: 3 distilled steps, one transformer pass each) at
1536x1024 x 121 frames (24,576 video tokens, 126 audio tokens, 1,024 prompt tokens) with the full-size LTX-2.3
transformer in bf16 (random weights: speed does not depend on their values). Each GPU count runs as its own torchrun
job; the table gives seconds per stage 2, speed-up, scaling efficiency (speed-up / GPUs; targets >= 80% at 2 GPUs,
>= 65% at 4) and the peak memory of every GPU.

    python benchmarks/bench_context_parallel.py --gpus 1,2,4 --out results/context_parallel.json
    python benchmarks/bench_context_parallel.py --tiny --gpus 1,2       # CPU dry run over gloo, tiny model

It refuses to start when the host has fewer GPUs than the largest count asked for.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ltx_pipeline import constants  # noqa: E402

# Scaling-efficiency targets of issue 6: speed-up / number of GPUs.
EFFICIENCY_TARGETS = {2: 0.80, 4: 0.65}
FULL_SIZE = (1536, 1024, 121)  # width, height, frames: the reference two-stage output size
TINY_SIZE = (128, 128, 9)


def parse_gpu_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise SystemExit(f"--gpus must list positive GPU counts, e.g. 1,2,4; got {text!r}.")
    return counts


# --- One torchrun job ------------------------------------------------------------------------------------------------


def build_pipeline(tiny: bool, device: torch.device):
    """The product's pipeline with the full-size transformer (bf16) and audio VAE on `device`, tiny other components.

    Stage 2 only touches the transformer and the scheduler, and reads latent sizes from the VAEs' configs; the tiny
    video VAE has the real 32x / 8x latent grid.
    """
    from diffusers import AutoencoderKLLTX2Audio, LTX2VideoTransformer3DModel

    from ltx_pipeline import TI2VidTwoStagesPipeline
    from ltx_pipeline.tiny import build_tiny_components

    components = build_tiny_components("2.3", seed=0)
    if not tiny:
        from bench_full_size import AUDIO_VAE_2_3, TRANSFORMER_2_3, default_dtype

        # Its config sets the audio latent width (8 channels x 16 mel bins) the transformer takes.
        components["audio_vae"] = AutoencoderKLLTX2Audio(**AUDIO_VAE_2_3).eval()

        # Every rank seeds the same way, so all hold the same weights.
        with torch.device(device), default_dtype(torch.bfloat16):
            torch.manual_seed(1)
            components["transformer"] = LTX2VideoTransformer3DModel(**TRANSFORMER_2_3).eval().requires_grad_(False)
    pipe = TI2VidTwoStagesPipeline(**components)
    return pipe.to(device)


def run_worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from ltx_pipeline.engine import StreamSpec, denoise
    from ltx_pipeline.engine.prompt import TextConditioning
    from ltx_pipeline.engine.streams import NoiseSource
    from ltx_pipeline.parallel import check_context_parallel_sizes, enable_context_parallel, init_distributed, teardown

    context = init_distributed()
    on_gpu = context.device.type == "cuda"
    width, height, num_frames = TINY_SIZE if args.tiny else FULL_SIZE
    pipe = build_pipeline(args.tiny, context.device)
    if args.attention_backend:
        pipe.transformer.set_attention_backend(args.attention_backend)
    check_context_parallel_sizes(pipe, context, height=height, width=width, num_frames=num_frames)
    enable_context_parallel(pipe, context, attention=args.attention)

    # Stage-2 inputs as the pipeline builds them: upsampled latents noised to the first stage-2 sigma (pure noise
    # here), and one prompt after the connectors (random, with the all-ones mask the registers give).
    generator = torch.Generator().manual_seed(0)
    geometry = pipe.latent_geometry(height, width, num_frames, constants.DEFAULT_FRAME_RATE)
    noise = NoiseSource(generator, context.device)
    video_latents = pipe.video_noise(geometry, noise)
    audio_latents = pipe.audio_noise(geometry, noise)
    config, tokens = pipe.transformer.config, pipe.max_sequence_length
    text = TextConditioning(
        video=torch.randn(1, tokens, config.cross_attention_dim, generator=generator).to(context.device),
        audio=torch.randn(1, tokens, config.audio_cross_attention_dim, generator=generator).to(context.device),
        mask=torch.ones(1, tokens, dtype=torch.int64, device=context.device),
        all_real=True,
    )
    plain = StreamSpec()
    sigmas = list(constants.DISTILLED_STAGE_2_SIGMAS)

    def stage_2() -> float:
        if on_gpu:
            torch.cuda.synchronize()
        dist.barrier()
        start = time.perf_counter()
        steps = denoise(
            pipe.transformer, plain, plain, video_latents, audio_latents, sigmas, geometry, text, None, bool
        )
        for _ in steps:
            pass
        if on_gpu:
            torch.cuda.synchronize()
        dist.barrier()
        return time.perf_counter() - start

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    warmup_s = stage_2()
    times_s = [stage_2() for _ in range(args.repeats)]
    rank_result = {
        "rank": context.rank,
        "device": torch.cuda.get_device_name(context.device) if on_gpu else "cpu",
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated(context.device) / 2**30, 2) if on_gpu else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved(context.device) / 2**30, 2) if on_gpu else None,
    }
    ranks = [None] * context.world_size
    dist.all_gather_object(ranks, rank_result)
    if context.is_main:
        result = {
            "gpus": context.world_size,
            "attention": args.attention if context.world_size > 1 else None,
            "attention_backend": args.attention_backend or "native",
            "size": f"{width}x{height}x{num_frames}",
            "video_tokens": geometry.frames * geometry.height * geometry.width,
            "audio_tokens": geometry.audio_frames,
            "prompt_tokens": tokens,
            "steps": len(sigmas) - 1,
            "warmup_s": round(warmup_s, 3),
            "times_s": [round(t, 3) for t in times_s],
            "stage_2_s": round(statistics.median(times_s), 3),
            "ranks": ranks,
        }
        Path(args.result).write_text(json.dumps(result, indent=1))
    teardown(context)


# --- Launcher --------------------------------------------------------------------------------------------------------


def run_job(args: argparse.Namespace, gpus: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "result.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={gpus}",
            __file__,
            "--worker",
            "--result",
            str(result_path),
            "--attention",
            args.attention,
            "--repeats",
            str(args.repeats),
        ]
        if args.attention_backend:
            command += ["--attention-backend", args.attention_backend]
        if args.tiny:
            command.append("--tiny")
        env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks")])}
        if args.tiny:
            env |= {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        print(f"--- {gpus} GPU(s): {' '.join(command)}", flush=True)
        completed = subprocess.run(command, env=env, timeout=args.timeout_s)
        if completed.returncode != 0 or not result_path.exists():
            return {"gpus": gpus, "error": f"torchrun exited with {completed.returncode}"}
        return json.loads(result_path.read_text())


def table(results: list[dict]) -> str:
    baseline = next((r for r in results if r.get("gpus") == 1 and "stage_2_s" in r), None)
    lines = [
        "| GPUs | stage 2 (s) | speed-up | scaling efficiency | target | peak allocated per GPU (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        if "stage_2_s" not in result:
            lines.append(f"| {result['gpus']} | {result['error']} | | | | |")
            continue
        gpus, seconds = result["gpus"], result["stage_2_s"]
        speedup = efficiency = ""
        if baseline is not None:
            speedup = f"{baseline['stage_2_s'] / seconds:.2f}x"
            efficiency = f"{baseline['stage_2_s'] / seconds / gpus:.0%}"
        target = f">= {EFFICIENCY_TARGETS[gpus]:.0%}" if gpus in EFFICIENCY_TARGETS else ""
        peaks = ", ".join(str(rank["peak_allocated_gib"]) for rank in result["ranks"])
        lines.append(f"| {gpus} | {seconds:.2f} | {speedup} | {efficiency} | {target} | {peaks} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", default="1,2,4", help="GPU counts to run, comma-separated")
    parser.add_argument("--attention", default="ulysses", choices=("ulysses", "ring"))
    parser.add_argument("--attention-backend", default=None, help="e.g. _native_cudnn (ring needs one with LSE)")
    parser.add_argument("--repeats", type=int, default=2, help="timed stage-2 runs after one warm-up run")
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU processes over gloo (a dry run)")
    parser.add_argument("--timeout-s", type=float, default=540.0, help="limit per torchrun job")
    parser.add_argument("--out", default="results/context_parallel.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    counts = parse_gpu_counts(args.gpus)
    available = torch.cuda.device_count()
    if not args.tiny and available < counts[-1]:
        advice = f"pass --gpus with counts up to {available}" if available else "--tiny runs a CPU dry run"
        raise SystemExit(
            f"This benchmark needs {counts[-1]} CUDA GPUs on one host for --gpus {args.gpus}; this host has "
            f"{available}. Run it on a multi-GPU machine, or {advice}."
        )
    results = [run_job(args, gpus) for gpus in counts]
    device = "cpu (tiny model, gloo)" if args.tiny else torch.cuda.get_device_name(0)
    report = table(results)
    print(f"\nStage 2 at {results[0].get('size', '?')}, {args.attention} attention, device: {device}\n\n{report}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "device": device,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "results": results,
        "table": report,
    }
    out.write_text(json.dumps(summary, indent=1))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
