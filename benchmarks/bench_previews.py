"""How much the step preview looks like the clip, on the embedded model: the stored preview decoder against the
per-token colour map every other VAE gets, on held-out clips.

Two measures, both the Pearson correlation between preview frames (scaled to the clip's size, as the studio shows
them) and the VAE's decoded frames (`ltx_pipeline.previews.preview_correlation`):
- world: held-out world clips (seeds never used to fit the decoder or to train the model), encoded and decoded by
  the embedded VAE; the preview is of the very latents the VAE decodes.
- generated: text-to-audio+video runs of the embedded model on held-out captions; the previews of the last step of
  each stage and of the first step of stage 2 against the run's final clip.

    .venv/bin/python benchmarks/bench_previews.py            # prints a table, appends it to RESULTS_PREVIEWS.md
"""

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from fit_preview_decoder import FIT_SEEDS, load_embedded_vae, round_trip  # noqa: E402

from ltx_pipeline import Finished, StepPreview, TI2VidTwoStagesPipeline  # noqa: E402
from ltx_pipeline.model_defaults import EMBEDDED_DEFAULTS  # noqa: E402
from ltx_pipeline.previews import LatentPreviewDecoder, preview_correlation, preview_decoder_for  # noqa: E402
from world import generate_clip  # noqa: E402

HELD_OUT_SEED = 60_000  # world clips neither the preview fit (FIT_SEEDS) nor training (< 5000) used
RESULTS = Path(__file__).with_name("RESULTS_PREVIEWS.md")


class BothDecoders:
    """The stored decoder, which the run shows, and the colour map on the same latents, kept for comparison."""

    def __init__(self, stored: LatentPreviewDecoder, colours: LatentPreviewDecoder) -> None:
        self.stored, self.colours, self.colour_previews = stored, colours, []

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        self.colour_previews.append(self.colours(latents))
        return self.stored(latents)


def world_scores(vae: torch.nn.Module, stored: LatentPreviewDecoder, colours: LatentPreviewDecoder, clips: int):
    rows = []
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + clips):
        size = EMBEDDED_DEFAULTS
        clip = generate_clip(seed, size.height, size.width, size.num_frames, size.frame_rate, num_balls=1 + seed % 2)
        latents, frames = round_trip(vae, clip.frames)
        shown = (stored(latents[None]), colours(latents[None]))
        rows.append(tuple(preview_correlation(preview, frames) for preview in shown))
    return np.array(rows)


def generated_scores(clips: int, colours: LatentPreviewDecoder) -> dict[str, np.ndarray]:
    pipe = TI2VidTwoStagesPipeline.from_model("embedded", torch_dtype=torch.float32)
    scores: dict[str, list] = {"stage 1, last step": [], "stage 2, first step": [], "stage 2, last step": []}
    for index in range(clips):
        both = BothDecoders(preview_decoder_for(pipe.vae), colours)
        pipe._preview_decoder = both
        caption = generate_clip(HELD_OUT_SEED + 1000 + index, 32, 32, 9).caption
        previews, final = [], None
        for event in pipe.stream(prompt=caption, seed=index, preview_audio=False, **EMBEDDED_DEFAULTS_KW):
            if isinstance(event, StepPreview):
                previews.append(event)
            elif isinstance(event, Finished):
                final = event.output.frames
        picks = {
            "stage 1, last step": max(i for i, p in enumerate(previews) if p.stage == 1),
            "stage 2, first step": min(i for i, p in enumerate(previews) if p.stage == 2),
            "stage 2, last step": len(previews) - 1,
        }
        for name, pick in picks.items():
            shown = (previews[pick].video, both.colour_previews[pick])
            scores[name].append(tuple(preview_correlation(preview, final) for preview in shown))
    return {name: np.array(rows) for name, rows in scores.items()}


EMBEDDED_DEFAULTS_KW = {
    "height": EMBEDDED_DEFAULTS.height,
    "width": EMBEDDED_DEFAULTS.width,
    "num_frames": EMBEDDED_DEFAULTS.num_frames,
    "frame_rate": EMBEDDED_DEFAULTS.frame_rate,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-clips", type=int, default=12)
    parser.add_argument("--generated-clips", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    vae = load_embedded_vae()
    stored, colours = preview_decoder_for(vae), LatentPreviewDecoder.fit_to_colours(vae)
    if stored.patch == 1:
        raise SystemExit("No stored preview decoder matches the embedded VAE: run tools/fit_preview_decoder.py first.")
    rows = [("world clips, VAE round trip", world_scores(vae, stored, colours, args.world_clips))]
    rows += [
        (f"generated, {name}", values) for name, values in generated_scores(args.generated_clips, colours).items()
    ]
    device = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    lines = [
        f"## {datetime.date.today()}: preview decoder (kernel {stored.kernel}, frames {stored.frames_kernel}, "
        f"patch {stored.patch}, {stored.num_weights:,} weights) against the colour map",
        "",
        f"- Device: {device}. Command: `.venv/bin/python benchmarks/bench_previews.py --world-clips "
        f"{args.world_clips} --generated-clips {args.generated_clips}`.",
        f"- Fitted on world seeds {FIT_SEEDS.start}-{FIT_SEEDS.stop - 1}; held out: world seeds {HELD_OUT_SEED}+, "
        f"captions of seeds {HELD_OUT_SEED + 1000}+ at {EMBEDDED_DEFAULTS.resolution} x {EMBEDDED_DEFAULTS.num_frames}.",
        "",
        "Pearson correlation between preview frames (scaled to the clip's size) and the decoded frames they stand for.",
        "",
        "| clips | n | preview decoder: mean (min) | colour map: mean (min) |",
        "|---|---|---|---|",
    ]
    for name, values in rows:
        lines.append(
            f"| {name} | {len(values)} | {values[:, 0].mean():.3f} ({values[:, 0].min():.3f}) "
            f"| {values[:, 1].mean():.3f} ({values[:, 1].min():.3f}) |"
        )
    table = "\n".join(lines)
    print(table)
    with RESULTS.open("a") as results:
        results.write("\n" + table + "\n")


if __name__ == "__main__":
    main()
