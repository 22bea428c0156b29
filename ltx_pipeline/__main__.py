"""Command line: one subcommand per mode.

`python -m ltx_pipeline t2av --prompt ...`, `a2v --audio CLIP ...`, `v2a --video CLIP ...` and
`retake --video CLIP --start-time S --end-time E ...`; every subcommand's `--help` lists its inputs.
"""

import argparse
import logging
import sys
from pathlib import Path

import torch

from . import constants, parallel
from .acceleration import (
    MemoryMode,
    add_speed_arguments,
    check_speed_for_memory_mode,
    place_pipeline,
    speed_options_from_args,
)
from .conditioning import ImageCondition
from .lora import StageLoras, parse_lora_argument
from .media import save_output
from .modes import MODES, Mode, Option
from .types import Finished, StageDecoded, StepPreview


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ltx_pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for mode in MODES.values():
        sub = commands.add_parser(mode.name, help=mode.summary, description=mode.summary)
        for option in mode.options:
            if option.switch:
                sub.add_argument(option.flag, action="store_true", help=option.help)
            else:
                sub.add_argument(
                    option.flag,
                    type=option.type,
                    default=option.default,
                    required=option.required,
                    choices=option.choices,
                    help=option.help or None,
                )
        _add_model_arguments(sub, mode)
    return parser


def _add_model_arguments(sub: argparse.ArgumentParser, mode: Mode) -> None:
    """What every mode's subcommand takes besides its inputs: the model, LoRAs, device, speed and output."""
    sub.add_argument(
        "--model",
        default=constants.EMBEDDED_MODEL_NAME,
        help="'embedded' (ships with the repo), a Hub id, a diffusers folder, or an official .safetensors file",
    )
    sub.add_argument("--spatial-upsampler", default=None, help="official spatial upsampler file (single-file models)")
    sub.add_argument("--text-encoder", default=None, help="Gemma-3 Hub id or folder (single-file models)")
    if mode.takes_images:
        sub.add_argument(
            "--image",
            nargs=3,
            action="append",
            default=[],
            metavar=("PATH", "FRAME", "STRENGTH"),
            help="hold a still at a frame with a strength in [0, 1] (repeatable); frame 0 = image to video",
        )
    sub.add_argument(
        "--lora",
        nargs=2,
        action="append",
        default=[],
        metavar=("PATH", "STRENGTH"),
        help="a LoRA (official or diffusers/PEFT .safetensors) applied in both stages (repeatable)",
    )
    sub.add_argument(
        "--distilled-lora",
        default=None,
        help="the official distilled LoRA, applied in stage 2 only (the dev checkpoint's two-stage path)",
    )
    sub.add_argument("--fuse-loras", action="store_true", help="merge the LoRAs into the weights for speed")
    sub.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    sub.add_argument(
        "--memory-mode",
        choices=[memory_mode.value for memory_mode in MemoryMode],
        default=None,
        help="GPU memory layout; default: everything on --device in the model's dtype",
    )
    add_speed_arguments(sub)
    sub.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="GPUs of this host to split each generation over (context parallelism, started through torchrun)",
    )
    sub.add_argument("--output", type=Path, default=Path("outputs/clip.mp4"))


def parse_image_argument(path: str, frame: str, strength: str) -> ImageCondition:
    """`--image PATH FRAME STRENGTH` -> ImageCondition; the pipeline checks the values themselves."""
    try:
        return ImageCondition(path, frame_index=int(frame), strength=float(strength))
    except ValueError as error:
        raise ValueError(
            f"`--image` takes PATH FRAME STRENGTH with an integer frame and a number strength; got {path} {frame} {strength}."
        ) from error


def _dest(option: Option) -> str:
    """Where argparse keeps an option's value: its flag, without dashes."""
    return option.flag.removeprefix("--").replace("-", "_")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    mode = MODES[args.command]
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    context = None
    try:
        if args.num_gpus > 1 and not parallel.launched_by_torchrun():
            return parallel.launch(sys.argv[1:] if argv is None else list(argv), args.num_gpus, args.device)
        context = parallel.process_context(args.num_gpus, args.device)
        images = [parse_image_argument(*values) for values in getattr(args, "image", [])]
        loras = [parse_lora_argument(*values) for values in args.lora]
        stage_2_loras = (
            [parse_lora_argument(args.distilled_lora, "1.0", "--distilled-lora")] if args.distilled_lora else []
        )
        speed = speed_options_from_args(args)
        check_speed_for_memory_mode(speed, args.memory_mode)  # before minutes of loading, not after
        pipe = mode.pipeline.from_model(
            args.model, spatial_upsampler=args.spatial_upsampler, text_encoder=args.text_encoder, torch_dtype=dtype
        )
        if loras or stage_2_loras:
            # Before the speed and memory options: fp8 layers and offloading must see the LoRA layers.
            pipe.stage_loras = StageLoras.load(pipe, loras, stage_2_loras=stage_2_loras, fuse=args.fuse_loras)
        place_pipeline(pipe, context.device, args.memory_mode, speed)
        parallel.enable_context_parallel(pipe, context)
        runner = parallel.ParallelRunner(pipe, context)  # with one GPU, the plain stream
        if context.is_main:
            print(f"model: {pipe.model_label}", file=sys.stderr)
        kwargs = mode.stream_kwargs({option.keyword: getattr(args, _dest(option)) for option in mode.options})
        if mode.takes_images:
            kwargs["images"] = images
        for event in runner.stream(**kwargs):  # events reach rank 0 only
            if isinstance(event, StepPreview):
                print(
                    f"stage {event.stage} step {event.step}/{event.total_steps}  {event.elapsed_s:6.2f} s",
                    file=sys.stderr,
                )
            elif isinstance(event, StageDecoded):
                print(f"stage {event.stage} decoded      {event.elapsed_s:6.2f} s", file=sys.stderr)
            elif isinstance(event, Finished):
                video_path, recipe_path = save_output(event.output, args.output)
                print(f"done in {event.elapsed_s:.2f} s: {video_path} (+ {recipe_path.name})", file=sys.stderr)
    except (ValueError, FileNotFoundError) as error:
        if context is None or context.is_main:
            print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        parallel.teardown(context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
