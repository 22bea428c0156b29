"""Fits the embedded model's step-preview decoder to its own VAE and stores it in ltx_pipeline/preview_decoders/.

The decoder maps each latent token's neighbourhood (3 x 3 tokens over 3 latent frames) through one hidden layer to a
4 x 4 px patch, trained on the latents of world clips (the embedded model's training world) against the VAE's decodes
of those same latents, so a preview looks like what the VAE will decode. Refit whenever the embedded VAE changes
(tests/test_previews.py fails until then); benchmarks/bench_previews.py measures it on held-out clips:

    .venv/bin/python tools/fit_preview_decoder.py
"""

import argparse
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ltx_pipeline.loading import EMBEDDED_MODEL_DIR  # noqa: E402
from ltx_pipeline.model_defaults import EMBEDDED_DEFAULTS  # noqa: E402
from ltx_pipeline.previews import (  # noqa: E402
    PREVIEW_DECODER_DIR,
    LatentPreviewDecoder,
    PreviewShape,
    vae_fingerprint,
)
from world import generate_clip  # noqa: E402

logger = logging.getLogger("fit_preview_decoder")

FIT_SEEDS = range(50_000, 50_040)  # world clips the fit reads; training used seeds < 5000, the benchmark 60_000+
FIT_FRAMES = 49  # frames per fitting clip: 7 latent frames, the first and six of eight frames each
EPOCHS = 30  # 0.864 against 0.867 after 60 on held-out clips, in half the time


def load_embedded_vae() -> torch.nn.Module:
    from diffusers import AutoencoderKLLTX2Video

    return AutoencoderKLLTX2Video.from_pretrained(EMBEDDED_MODEL_DIR / "vae", torch_dtype=torch.float32).eval()


@torch.no_grad()
def round_trip(vae: torch.nn.Module, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """(F, H, W, 3) uint8 frames -> (un-normalised (C, f, h, w) latents, their (F, H, W, 3) uint8 decode)."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # (1, 3, F, H, W)
    latents = vae.encode(video).latent_dist.mode()
    decoded = vae.decode(latents, None, return_dict=False)[0][0].clamp(-1, 1)  # (3, F, H, W)
    return latents[0], ((decoded.permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()


def world_pairs(vae: torch.nn.Module, seeds: range, num_frames: int) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """(latents, decode) of world clips at the embedded model's size and rate, one or two balls."""
    size = EMBEDDED_DEFAULTS
    for seed in seeds:
        clip = generate_clip(seed, size.height, size.width, num_frames, size.frame_rate, num_balls=1 + seed % 2)
        yield round_trip(vae, clip.frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--pairs-cache", type=Path, help="keep the encoded clips here (and reuse them if present)")
    parser.add_argument("--output", type=Path, default=PREVIEW_DECODER_DIR / "embedded.safetensors")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    vae = load_embedded_vae()
    if args.pairs_cache is not None and args.pairs_cache.is_file():
        pairs = torch.load(args.pairs_cache, weights_only=False)
    else:
        pairs = list(world_pairs(vae, FIT_SEEDS, FIT_FRAMES))
        if args.pairs_cache is not None:
            torch.save(pairs, args.pairs_cache)
    shape = PreviewShape()
    decoder = LatentPreviewDecoder.fit_to_decodes(pairs, shape, epochs=args.epochs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    notes = {
        "fitted_on": f"world clips, seeds {FIT_SEEDS.start}-{FIT_SEEDS.stop - 1}, 128x128x{FIT_FRAMES}",
        "epochs": str(args.epochs),
        "hidden": str(shape.hidden),
    }
    decoder.save(args.output, vae_fingerprint(vae), notes)
    logger.info("Wrote %s (%d weights)", args.output, decoder.num_weights)


if __name__ == "__main__":
    main()
