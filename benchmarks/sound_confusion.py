"""Which floor material and room the embedded model's generated sound is heard as, for each prompted one.

bench_embedded.py scores material and room as right or wrong; this prints what the wrong ones were heard as, on the
same held-out clips, seeds and detectors (text to audio+video, distilled):

    python benchmarks/sound_confusion.py --clips 16 [--model DIR] [--modality-scale 3]

With --vary, each clip is generated once for every floor material and room instead, with the same seed and balls and
only those words of the caption changed: whether the caption's material and room reach the generated sound at all.
"""

import argparse
import collections
import dataclasses
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_embedded import HELD_OUT_SEED, load_trained, run_stream  # noqa: E402

from ltx_pipeline import TI2VidTwoStagesPipeline  # noqa: E402
from world import MATERIALS, ROOMS, detectors, generate_clip  # noqa: E402
from world.clip import caption  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--model", default="embedded", help="'embedded' or a diffusers-format folder")
    parser.add_argument("--modality-scale", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=10, help="the first clip's seed, as in bench_embedded.py")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vary", action="store_true", help="every material and room for each clip's seed and balls")
    args = parser.parse_args()
    if args.clips < 1:
        parser.error(f"--clips must be at least 1; got {args.clips}")
    if args.model != "embedded" and not (Path(args.model) / "model_index.json").is_file():
        parser.error(f"--model must be 'embedded' or a folder with a model_index.json; got {args.model!r}")
    torch.set_num_threads(args.threads)
    pipe = TI2VidTwoStagesPipeline(**load_trained(args.model))
    heard_as = collections.Counter()
    for index in range(args.clips):
        scene = generate_clip(HELD_OUT_SEED + index, 128, 128, 97, 24.0).scene
        variants = itertools.product(MATERIALS, ROOMS) if args.vary else [(scene.material, scene.room)]
        for material, room in variants:
            prompt = caption(dataclasses.replace(scene, material=material, room=room))
            heard = heard_material_and_room(pipe, prompt, args.seed + index, args.modality_scale)
            heard_as[(material, heard[0], room, heard[1])] += 1
            print(f"clip {index}: {material} floor, {room} room -> heard {heard[0]}, {heard[1]}", flush=True)
    print("\n| prompted material | heard as | prompted room | heard as | clips |\n|---|---|---|---|---|")
    for (material, heard_material, room, heard_room), count in sorted(heard_as.items()):
        print(f"| {material} | {heard_material} | {room} | {heard_room} | {count} |")
    for name, prompted_index in (("material", 0), ("room", 2)):
        right = sum(count for key, count in heard_as.items() if key[prompted_index] == key[prompted_index + 1])
        print(f"{name} heard as prompted: {right} of {sum(heard_as.values())}")


def heard_material_and_room(pipe: TI2VidTwoStagesPipeline, prompt: str, seed: int, modality_scale: float):
    """The (material, room) the detectors hear in the sound generated for `prompt`; "nothing" where no impact is."""
    stream = pipe.stream(
        prompt=prompt,
        seed=seed,
        modality_scale=modality_scale,
        height=128,
        width=128,
        num_frames=97,
        frame_rate=24.0,
        mode="distilled",
    )
    _, generated, _, _ = run_stream(stream)
    sound = detectors.classify_sound(generated.waveform.float().mean(dim=0).numpy(), generated.sampling_rate)
    return sound or ("nothing", "nothing")


if __name__ == "__main__":
    main()
