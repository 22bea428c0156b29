"""The official reference's transformer forward, eager, at the pipelines' stage-2 size: the yardstick for ours.

Builds the LTX-2.3 transformer of Lightricks' `ltx-core` (1.0.0 from PyPI, `LTXModelConfigurator`) at full size with
random bf16 weights on the GPU, and times one forward of one distilled pass (batch 1, 1,024 text tokens, the same
token counts and keyword content as `bench_full_size.py`'s forwards) eagerly, as the reference runs it. Run it in its
own process before `bench_full_size.py` in the same device call (both need most of an 80 GB card), then divide:
`eager_native` and the fastest sections of that run against this file's `ms`.

    python benchmarks/bench_reference_forward.py --out ref.json [--tiny]

The config is the official file's metadata made from the diffusers configs (`tests/official_layout.py`, as the
parity suite writes it), so both implementations have the same architecture. Positions come from diffusers' rotary
module (both take the same (B, n, T, 2) bounds, as the parity suite checks).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPE = (768, 512, 121)  # width, height, frames: the pipelines' stage-2 size
TINY_SHAPE = (64, 64, 17)
FRAME_RATE = 24.0
TEXT_TOKENS = 1024


def configs(tiny: bool) -> tuple[dict, torch.nn.Module]:
    """The official metadata config and a diffusers transformer on the meta device (for its rotary module)."""
    from diffusers import LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    from ltx_pipeline import loading
    from ltx_pipeline.tiny import tiny_component_kwargs
    from tests.official_layout import transformer_section
    from tests.official_layout_2_5 import REFERENCE_CHECKED_VALUES

    kwargs = tiny_component_kwargs("2.3") if tiny else loading.FULL_SIZE_PRESETS["2.3"]
    with torch.device("meta"):
        transformer = LTX2VideoTransformer3DModel(**kwargs["transformer"])
        connectors = LTX2TextConnectors(**kwargs["connectors"])
    section = transformer_section(dict(transformer.config), dict(connectors.config)) | REFERENCE_CHECKED_VALUES
    return {"transformer": section}, transformer


def inputs(transformer: torch.nn.Module, device: torch.device, tiny: bool) -> dict:
    """Random latents and prompt states, the sigma of a stage-2 pass, positions as the pipelines make them."""
    width, height, num_frames = TINY_SHAPE if tiny else SHAPE
    config = transformer.config
    frames, rows, columns = (num_frames - 1) // 8 + 1, height // 32, width // 32
    audio_tokens = round(num_frames / FRAME_RATE * 25)
    text_tokens = 16 if tiny else TEXT_TOKENS
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device, torch.bfloat16)

    cpu = torch.device("cpu")
    return {
        "video": randn(1, frames * rows * columns, config.in_channels),
        "audio": randn(1, audio_tokens, config.audio_in_channels),
        "video_context": randn(1, text_tokens, config.cross_attention_dim),
        "audio_context": randn(1, text_tokens, config.audio_cross_attention_dim),
        "video_positions": transformer.rope.prepare_video_coords(1, frames, rows, columns, cpu, fps=FRAME_RATE).to(
            device
        ),
        "audio_positions": transformer.audio_rope.prepare_audio_coords(1, audio_tokens, cpu).to(device),
        "sigma": 0.725,
    }


def reference_forward(model: torch.nn.Module, data: dict) -> tuple:
    from ltx_core.model.transformer.modality import Modality

    sigma = torch.tensor([data["sigma"]], device=data["video"].device)

    def modality(stream: str) -> Modality:
        latent = data[stream]
        return Modality(
            latent=latent,
            sigma=sigma,
            timesteps=torch.full((*latent.shape[:2], 1), data["sigma"], device=latent.device),
            positions=data[f"{stream}_positions"],
            context=data[f"{stream}_context"],
        )

    return model(modality("video"), modality("audio"), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_reference_forward.json")
    parser.add_argument("--tiny", action="store_true", help="the tiny config on the CPU: a dry run")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    config, diffusers_transformer = configs(args.tiny)
    begin = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        torch.manual_seed(0)
        model = LTXModelConfigurator.from_config(config).eval().requires_grad_(False)
        for parameter in model.parameters():  # the reference leaves some made with torch.empty (a file fills them)
            parameter.normal_(0.0, 0.02)
    torch.set_default_dtype(previous)
    build_s = time.perf_counter() - begin
    data = inputs(diffusers_transformer, device, args.tiny)
    times = []
    with torch.no_grad():
        for index in range(args.repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            video, audio = reference_forward(model, data)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if index:  # the first pass warms up
                times.append((time.perf_counter() - start) * 1e3)
    from importlib.metadata import version

    import ltx_core  # noqa: F401  (its version, for the record)

    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "ltx_core": version("ltx-core"),
        "shape": "x".join(map(str, TINY_SHAPE if args.tiny else SHAPE)),
        "params_billion": round(sum(parameter.numel() for parameter in model.parameters()) / 1e9, 3),
        "build_s": round(build_s, 1),
        "ms": round(statistics.median(times), 2),
        "times_ms": [round(value, 2) for value in times],
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
        "outputs": [list(video.shape), list(audio.shape)],
        "finite": bool(torch.isfinite(video).all() and torch.isfinite(audio).all()),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1), flush=True)


if __name__ == "__main__":
    main()
