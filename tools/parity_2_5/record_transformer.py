"""Record the reference LTX-2.5 transformer's outputs on a tiny per-component file, for tests/test_parity_2_5.py.

    python tools/parity_2_5/record_transformer.py --reference-src PATH [--extra-path PATH] [--out DIR]

`--reference-src` is `packages/ltx-core/src` of a Lightricks/LTX-2 checkout at 1.2.0 or later (the first release
with LTX-2.5; it is not on PyPI): read to measure, never imported by the project. `--extra-path` holds what that
source imports and the project's environment lacks (`einops`: `pip install --no-deps --target DIR einops`).

Two halves, two processes:
1. Here (the project's environment): write a seeded tiny LTX-2.5 transformer file in the official layout
   (`tests/official_layout_2_5.py`) and seeded inputs: token-packed video (1, 8, 8) and audio (1, 6, 32) latents,
   prompt contexts, RoPE coordinates (both implementations take the same (B, n, T, 2) bounds, so the test measures
   the transformer, not a coordinate convention), the step's sigma and the next one, and the noise an ancestral step
   adds.
2. `--record` (re-run with the reference source first on `sys.path`, nothing of the project imported): load the file
   with the reference's own builder (`SingleGPUModelBuilder`, `LTXModelConfigurator`,
   `LTXV_MODEL_COMFY_RENAMING_MAP`), run `LTXModel` on those inputs in float32 (plain, with the keyframe embedding,
   with the audio's tokens clean at the step's modality sigma, and audio-to-video as the reference's pipelines run
   it), `X0Model` on the plain and audio-to-video runs, take one distilled stage-1 step of each with
   `EulerAncestralDiffusionStep(eta=1, s_noise=1)` (LTX-2.5's sampler) and one plain Euler step, and save everything
   to `reference_outputs.safetensors`.

Audio-to-video ("a2v") builds the audio's `Modality` as 1.2.0's `modality_from_latent_state` does for a frozen
stream (ltx_pipelines/utils/helpers.py): per-token timesteps 0 (`denoise_mask * sigma`) and modality sigma 0. Only
the video is stepped: the reference's loops pull a frozen stream back to its clean latents after each step
(`post_process_latent`, mask 0). The loop itself is not run: `ltx_pipelines` imports torchaudio and OpenImageIO,
which the project's environment lacks; its per-step arithmetic is the ltx-core step objects used here.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SEED = 25
VIDEO_GRID = (2, 2, 2)  # latent frames, height, width
AUDIO_TOKENS = 6
TEXT_TOKENS = 16
SIGMA, SIGMA_NEXT = 0.909375, 0.725  # a stage-1 distilled step (reference DISTILLED_SIGMA_VALUES)
FPS = 24.0


def write_inputs(out: Path) -> None:
    sys.path.insert(0, str(REPO))
    import torch
    from safetensors.torch import save_file

    from ltx_pipeline import tiny
    from tests import official_layout_2_5

    components = tiny.build_tiny_components("2.5", seed=SEED)
    transformer = components["transformer"]
    with torch.no_grad():  # a non-zero keyframe embedding, so the parity covers it (the reference zero-initialises)
        transformer.keyframes_abs_pos_embedding.normal_(generator=torch.Generator().manual_seed(SEED))
    official_layout_2_5.write_transformer(out / "tiny_ltx_2_5_transformer.safetensors", components)

    generator = torch.Generator().manual_seed(SEED)
    config = transformer.config
    frames, height, width = VIDEO_GRID
    video_tokens = frames * height * width
    inputs = {
        "video.latent": torch.randn(1, video_tokens, config.in_channels, generator=generator),
        "audio.latent": torch.randn(1, AUDIO_TOKENS, config.audio_in_channels, generator=generator),
        "video.context": torch.randn(1, TEXT_TOKENS, config.cross_attention_dim, generator=generator),
        "audio.context": torch.randn(1, TEXT_TOKENS, config.audio_cross_attention_dim, generator=generator),
        "video.coords": transformer.rope.prepare_video_coords(1, frames, height, width, torch.device("cpu"), fps=FPS),
        "audio.coords": transformer.audio_rope.prepare_audio_coords(1, AUDIO_TOKENS, torch.device("cpu")),
        # The first latent frame is a single pixel frame (causal VAE): the tokens the keyframe embedding marks.
        "video.keyframes_mask": (torch.arange(video_tokens) < height * width).float().view(1, video_tokens, 1),
        "sigmas": torch.tensor([SIGMA, SIGMA_NEXT]),
        "video.noise": torch.randn(1, video_tokens, config.in_channels, generator=generator),
        "audio.noise": torch.randn(1, AUDIO_TOKENS, config.audio_in_channels, generator=generator),
    }
    inputs = {key: value.float().contiguous() for key, value in inputs.items()}
    save_file(inputs, str(out / "inputs.safetensors"), metadata={"facts": json.dumps({"seed": SEED, "fps": FPS})})


def record(out: Path) -> None:
    """Reference side: only the reference's code and torch."""
    import torch
    from ltx_core.components.diffusion_steps import EulerAncestralDiffusionStep, EulerDiffusionStep
    from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
    from ltx_core.model.transformer.modality import Modality
    from ltx_core.model.transformer.model import X0Model
    from ltx_core.model.transformer.model_configurator import LTXV_MODEL_COMFY_RENAMING_MAP, LTXModelConfigurator
    from safetensors.torch import load_file, save_file

    inputs = load_file(str(out / "inputs.safetensors"))
    model = SingleGPUModelBuilder(
        model_class_configurator=LTXModelConfigurator,
        model_path=str(out / "tiny_ltx_2_5_transformer.safetensors"),
        model_sd_ops=LTXV_MODEL_COMFY_RENAMING_MAP,
    ).build(device=torch.device("cpu"), dtype=torch.float32)
    model = model.eval()
    meta = [name for name, parameter in model.named_parameters() if parameter.is_meta]
    if meta:
        raise SystemExit(f"the reference left parameters unloaded: {meta[:5]}")

    sigma, sigma_next = inputs["sigmas"].tolist()
    outputs: dict[str, torch.Tensor] = {}
    # Runs: plain; with the keyframe embedding on the first latent frame; the audio's tokens clean (timesteps 0) at
    # the step's modality sigma; audio-to-video, the audio frozen (timesteps and modality sigma 0, see above).
    for run in ("plain", "keyframes", "frozen_audio", "a2v"):
        keyframes, audio_level = run == "keyframes", 0.0 if run in ("frozen_audio", "a2v") else sigma
        audio_sigma = 0.0 if run == "a2v" else sigma
        video = Modality(
            latent=inputs["video.latent"],
            sigma=torch.tensor([sigma]),
            timesteps=torch.full((*inputs["video.latent"].shape[:2], 1), sigma),  # (B, T, 1): denoise mask x sigma
            positions=inputs["video.coords"],
            context=inputs["video.context"],
            keyframes_mask=inputs["video.keyframes_mask"] if keyframes else None,
        )
        audio = Modality(
            latent=inputs["audio.latent"],
            sigma=torch.tensor([audio_sigma]),
            timesteps=torch.full((*inputs["audio.latent"].shape[:2], 1), audio_level),
            positions=inputs["audio.coords"],
            context=inputs["audio.context"],
        )
        with torch.no_grad():
            video_velocity, audio_velocity = model(video, audio, None)
            video_x0, audio_x0 = X0Model(model)(video, audio, None)
        suffix = "" if run == "plain" else f".{run}"
        outputs[f"video.velocity{suffix}"], outputs[f"audio.velocity{suffix}"] = video_velocity, audio_velocity
        if run not in ("plain", "a2v"):
            continue
        sigmas = torch.tensor([sigma, sigma_next])
        ancestral = EulerAncestralDiffusionStep(eta=1.0, s_noise=1.0)
        euler = EulerDiffusionStep()
        stepped = (("video", video_x0), ("audio", audio_x0)) if run == "plain" else (("video", video_x0),)
        for stream, x0 in stepped:
            latent = inputs[f"{stream}.latent"]
            outputs[f"{stream}.x0{suffix}"] = x0
            outputs[f"{stream}.ancestral_step{suffix}"] = ancestral.step(
                latent, x0, sigmas, 0, noise=inputs[f"{stream}.noise"]
            )
            outputs[f"{stream}.euler_step{suffix}"] = euler.step(latent, x0, sigmas, 0)
    outputs = {key: value.float().contiguous() for key, value in outputs.items()}
    save_file(outputs, str(out / "reference_outputs.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-src", type=Path, required=True, help="packages/ltx-core/src of LTX-2 >= 1.2.0")
    parser.add_argument("--extra-path", type=Path, action="append", default=[], help="extra import path (einops)")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "parity_2_5")
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.record:
        record(args.out)
        return
    write_inputs(args.out)
    paths = [str(args.reference_src.resolve()), *(str(path.resolve()) for path in args.extra_path)]
    # The reference runs in a clean process (cwd outside the repo, its source first on the path).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, str(Path(__file__).resolve()), "--record", "--out", str(args.out.resolve())]
    command += ["--reference-src", str(args.reference_src.resolve())]
    subprocess.run(command, check=True, env=env, cwd="/")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
