"""Where audio-to-video sync is won or lost: the embedded model's A2V scored after stage 1 and at the end.

    python benchmarks/a2v_stage_sync.py --clips 16 [--model DIR]

For each held-out world scene (the clips and seeds of `bench_embedded.py`), the A2V pipeline's stage-1 decode (half
size, the `StageDecoded` event) and its final frames are scored as `bench_embedded.py` scores A2V; the world's own
clips at half size are scored too (the detectors' ceiling there). Prints one row each.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_embedded  # noqa: E402

from ltx_pipeline import A2VidPipelineTwoStage, Audio, Finished  # noqa: E402
from ltx_pipeline.types import StageDecoded  # noqa: E402
from training.data import downsample_video, frames_to_video  # noqa: E402
from world import generate_clip  # noqa: E402

FRAME_RATE = 24.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--modality-scale", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="embedded", help="'embedded' (the shipped weights) or a model folder")
    args = parser.parse_args()
    if args.clips < 1 or args.threads < 1:
        parser.error(f"--clips and --threads must be >= 1; got {args.clips} and {args.threads}")
    if args.model != "embedded" and not (Path(args.model) / "model_index.json").is_file():
        parser.error(f"--model must be 'embedded' or a folder with a model_index.json; got {args.model!r}")
    torch.set_num_threads(args.threads)
    clips = [
        generate_clip(bench_embedded.HELD_OUT_SEED + index, 128, 128, 97, FRAME_RATE) for index in range(args.clips)
    ]
    a2v = A2VidPipelineTwoStage(**bench_embedded.load_trained(args.model))
    scores = {name: bench_embedded.Scores() for name in ("world at half size", "stage 1 (half size)", "final")}
    for index, clip in enumerate(clips):
        audio = Audio(waveform=torch.from_numpy(clip.audio)[None], sampling_rate=clip.sampling_rate)
        geometry = {"height": 128, "width": 128, "num_frames": 97, "frame_rate": FRAME_RATE, "mode": "distilled"}
        for event in a2v.stream(
            audio=audio, prompt=clip.caption, seed=10 + index, modality_scale=args.modality_scale, **geometry
        ):
            if isinstance(event, StageDecoded):
                bench_embedded.score_a2v(scores["stage 1 (half size)"], clip, event.frames, FRAME_RATE)
            elif isinstance(event, Finished):
                bench_embedded.score_a2v(scores["final"], clip, event.output.frames, FRAME_RATE)
        half = downsample_video(frames_to_video(torch.from_numpy(clip.frames)[None]), 2)[0]
        half = ((half.permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        bench_embedded.score_a2v(scores["world at half size"], clip, half, FRAME_RATE)
        print(f"  clip {index} done", flush=True)
    columns = ("A2V median error", "A2V within 2 frames", "A2V within 2 fr, slow / middle / fast impacts")
    print("| frames | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name, score in scores.items():
        row = score.row(FRAME_RATE)
        print(f"| {name} | " + " | ".join(row[column] for column in columns) + " |")


if __name__ == "__main__":
    main()
