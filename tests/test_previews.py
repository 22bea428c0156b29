"""The step preview looks like the clip: the embedded model's stored preview decoder against what its VAE decodes,
on held-out world clips and on a real run, and the colour map any other VAE gets."""

import numpy as np
import pytest
import torch

from ltx_pipeline import Finished, StepPreview, TI2VidTwoStagesPipeline
from ltx_pipeline.loading import EMBEDDED_MODEL_DIR
from ltx_pipeline.previews import LatentPreviewDecoder, preview_correlation, preview_decoder_for
from world import generate_clip

# benchmarks/RESULTS_PREVIEWS.md: 0.91 on held-out world clips and at a run's last step (0.84 and 0.87 at worst),
# against 0.37 and 0.31 for the colour map; a decoder that stops resembling the clip (a changed VAE) falls far below.
WORLD_CLIP_MIN_CORRELATION = 0.75
RUN_MIN_CORRELATION = 0.7


@pytest.fixture(scope="module")
def embedded_vae() -> torch.nn.Module:
    from diffusers import AutoencoderKLLTX2Video

    return AutoencoderKLLTX2Video.from_pretrained(EMBEDDED_MODEL_DIR / "vae", torch_dtype=torch.float32).eval()


@torch.no_grad()
def round_trip(vae: torch.nn.Module, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """(F, H, W, 3) uint8 -> ((1, C, f, h, w) latents, their (F, H, W, 3) uint8 decode)."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    latents = vae.encode(video).latent_dist.mode()
    decoded = vae.decode(latents, None, return_dict=False)[0][0].clamp(-1, 1)
    return latents, ((decoded.permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("seed", [61_000, 61_001])  # neither fitted on nor trained on
def test_the_embedded_models_preview_looks_like_its_decoded_clip(embedded_vae: torch.nn.Module, seed: int) -> None:
    decoder = preview_decoder_for(embedded_vae)
    assert decoder.patch > 1, "no stored preview decoder matches the embedded VAE: run tools/fit_preview_decoder.py"
    clip = generate_clip(seed, 128, 128, 33, 24.0, num_balls=1 + seed % 2)
    latents, decoded = round_trip(embedded_vae, clip.frames)
    preview = decoder(latents)
    assert preview.shape == (5, 8 * decoder.patch, 8 * decoder.patch, 3) and preview.dtype == np.uint8
    assert preview_correlation(preview, decoded) >= WORLD_CLIP_MIN_CORRELATION
    # The per-token colour map, for contrast, is far from it: the measure tells a good preview from a poor one.
    assert preview_correlation(LatentPreviewDecoder.fit_to_colours(embedded_vae)(latents), decoded) < 0.6


def test_a_runs_last_step_preview_looks_like_the_clip_it_makes() -> None:
    pipe = TI2VidTwoStagesPipeline.from_model("embedded", torch_dtype=torch.float32)
    prompt = generate_clip(61_002, 32, 32, 9).caption
    previews, final = [], None
    for event in pipe.stream(prompt=prompt, height=128, width=128, num_frames=33, frame_rate=24.0, seed=5):
        if isinstance(event, StepPreview):
            previews.append(event)
        elif isinstance(event, Finished):
            final = event.output.frames
    last = previews[-1]
    assert last.stage == 2 and last.step == last.total_steps
    assert preview_correlation(last.video, final) >= RUN_MIN_CORRELATION


def test_any_other_vae_gets_a_colour_map_fitted_on_first_use(tiny_components: dict) -> None:
    decoder = preview_decoder_for(tiny_components["vae"])
    assert (decoder.kernel, decoder.patch) == (1, 1)
    channels = tiny_components["vae"].config.latent_channels
    preview = decoder(torch.randn(1, channels, 2, 3, 4) * 1e6)  # wild latents still give a picture, not an error
    assert preview.shape == (2, 3, 4, 3) and preview.dtype == np.uint8


def test_the_correlation_tells_a_likeness_from_noise() -> None:
    rng = np.random.default_rng(0)
    decoded = rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    assert preview_correlation(decoded[[0, 8]], decoded) < 0.5  # two frames standing for nine noisy ones
    still = np.repeat(decoded[:1], 9, axis=0)
    assert preview_correlation(still[[0, 8]], still) == pytest.approx(1.0)


def test_the_stored_decoder_serves_the_embedded_vae_in_bf16_too(embedded_vae: torch.nn.Module) -> None:
    """A GPU studio loads the model in bf16: its previews come from the same stored decoder."""
    import copy

    in_bf16 = copy.deepcopy(embedded_vae).to(torch.bfloat16)
    assert preview_decoder_for(in_bf16).weights[0].shape == preview_decoder_for(embedded_vae).weights[0].shape
    assert preview_decoder_for(in_bf16).patch > 1
