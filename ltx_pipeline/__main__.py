"""Command line: one subcommand per mode.

`python -m ltx_pipeline t2av --prompt ...`, `a2v --audio CLIP ...`, `v2a --video CLIP ...` and
`retake --video CLIP --start-time S --end-time E ...`; every subcommand's `--help` lists its inputs. Size, length and
rate default to the loaded model's own; every input error is one line naming the flag, with exit code 2.
`t2av --duration S` and `a2v --duration S|all` longer than one window (`--num-frames`) run as chained windows
(the `t2av-long` and `a2v-long` subcommands, which take the window and overlap themselves).
"""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from . import validation
from .assembly import (
    ParallelRunner,
    add_model_arguments,
    assemble,
    join_gpus,
    relaunch_on_gpus,
    settings_from_args,
    teardown,
)
from .audio import probe_audio_duration
from .conditioning import ImageCondition
from .limits import WorkLimit, default_work_limit
from .lora import parse_lora_argument
from .media import save_output
from .model_defaults import ModelDefaults, defaults_for_model, longest_frames_within
from .modes import MODES, Mode, Option
from .types import Finished, LongFormFinished, StageDecoded, StepPreview, WindowStarted
from .user_terms import cli_flags, in_user_terms

# Every argument the checks may name, as each subcommand spells it: its options' flags, then the others.
_OPTION_FLAGS = {name: {option.keyword: option.flag for option in mode.options} for name, mode in MODES.items()}
_EVERY_OPTION_FLAG = {keyword: flag for flags in _OPTION_FLAGS.values() for keyword, flag in flags.items()}
FLAGS = {name: cli_flags(flags, shared=_EVERY_OPTION_FLAG) for name, flags in _OPTION_FLAGS.items()}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (no usage block) and exit code 2, as every input
    error of this command is."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m ltx_pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    for mode in MODES.values():
        sub = commands.add_parser(mode.name, help=mode.summary, description=mode.summary)
        for option in mode.options + _extension_options(mode):
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


def _extension_options(mode: Mode) -> tuple[Option, ...]:
    """The long-form mode's own inputs that a mode it extends takes too, all optional (its window is --num-frames)."""
    if mode.extends_to is None:
        return ()
    flags = {option.flag for option in mode.options} | {"--window-frames"}
    extra = [option for option in MODES[mode.extends_to].options if option.flag not in flags]
    return tuple(dataclasses.replace(option, required=False, default=None) for option in extra)


def _chosen_mode(mode: Mode, args: argparse.Namespace) -> tuple[Mode, dict]:
    """The mode to run and its inputs: the long-form one where `--duration` was given to a mode it extends."""
    values = {option.keyword: getattr(args, _dest(option)) for option in mode.options}
    if mode.extends_to is None or getattr(args, "duration", None) is None:
        return mode, mode.stream_kwargs(values)
    long_mode = MODES[mode.extends_to]
    values |= {option.keyword: getattr(args, _dest(option)) for option in _extension_options(mode)}
    values["window_frames"] = values.pop("num_frames")
    present = {key: value for key, value in values.items() if value is not None}
    return long_mode, long_mode.stream_kwargs(present)


def _add_model_arguments(sub: argparse.ArgumentParser, mode: Mode) -> None:
    """What every mode's subcommand takes besides its inputs: the model, LoRAs, device, speed, limits and output."""
    add_model_arguments(sub)
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
    sub.add_argument(
        "--max-pixel-frames",
        type=int,
        default=None,
        help="refuse jobs above height x width x frames (default: LTX_MAX_PIXEL_FRAMES, else the device's limit)",
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


def resolve_defaults(args: argparse.Namespace, defaults: ModelDefaults) -> None:
    """Fills the size, length, rate and guidance the user left out with the model's own; an a2v clip shorter than
    the default length gets the longest length it covers, said on stderr. Modes that take a video keep its own."""
    if args.modality_scale is None:
        args.modality_scale = defaults.modality_scale
    if not hasattr(args, "height"):
        return
    args.height = defaults.height if args.height is None else args.height
    args.width = defaults.width if args.width is None else args.width
    args.frame_rate = defaults.frame_rate if args.frame_rate is None else args.frame_rate
    if getattr(args, "num_frames", 0) is not None:  # given, or a long-form mode's window (its own default)
        return
    args.num_frames = defaults.num_frames
    if args.command == "a2v" and not args.pad_audio:
        available = probe_audio_duration(args.audio) - args.audio_start_time
        covered = longest_frames_within(available, args.frame_rate, defaults.num_frames)
        if covered is not None and covered != args.num_frames:
            args.num_frames = covered
            print(
                f"note: the clip has {available:.2f} s of audio from {args.audio_start_time:g} s; using "
                f"--num-frames {covered} ({covered / args.frame_rate:.2f} s at {args.frame_rate:g} fps).",
                file=sys.stderr,
            )


def check_length_choice(args: argparse.Namespace) -> None:
    """`--length-from-prompt` picks the length itself: refused beside a length the user gave."""
    if not getattr(args, "length_from_prompt", False):
        return
    for keyword, flag in (("num_frames", "--num-frames"), ("duration_s", "--duration")):
        given = getattr(args, flag.removeprefix("--").replace("-", "_"), None)
        if given is not None:
            raise ValueError(
                f"`length_from_prompt` picks the length from the prompt; give it or `{keyword}`, not both "
                f"(got `{keyword}` {given})."
            )


def work_limit(args: argparse.Namespace, device: str) -> WorkLimit:
    if args.max_pixel_frames is not None:
        return WorkLimit(args.max_pixel_frames, source="set by --max-pixel-frames")
    return default_work_limit(device)


def one_line(error: BaseException, command: str) -> str:
    """An input error in subcommand `command`'s words (its flags, not Python arguments), on one line."""
    return " ".join(in_user_terms(str(error), FLAGS[command]).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    mode = MODES[args.command]
    context = None
    error_line = None  # printed last, after the process group's goodbye, so the error ends the output
    try:
        check_length_choice(args)
        settings = settings_from_args(args)  # before minutes of loading, not after
        resolve_defaults(args, defaults_for_model(args.model))
        limit = work_limit(args, settings.resolved_device)
        if hasattr(args, "height"):  # the size, the length and the work they make together, before loading
            validation.check_size(args.height, args.width)
            validation.check_frame_rate(args.frame_rate)
            frames = getattr(args, "num_frames", None) or getattr(args, "window_frames", None)  # one window's
            if frames is not None:
                validation.check_num_frames(frames)
                limit.check(args.height, args.width, frames)
        exit_code = relaunch_on_gpus(settings, argv)
        if exit_code is not None:
            return exit_code
        context = join_gpus(settings)
        images = [parse_image_argument(*values) for values in getattr(args, "image", [])]
        loras = [parse_lora_argument(*values) for values in args.lora]
        stage_2_loras = (
            [parse_lora_argument(args.distilled_lora, "1.0", "--distilled-lora")] if args.distilled_lora else []
        )
        run_mode, kwargs = _chosen_mode(mode, args)
        if run_mode.long_form:
            if images:
                raise ValueError("`--image` applies to one-window clips; long form (--duration) takes no images.")
            if context.world_size > 1:
                raise ValueError("Long form runs on one GPU; give --gpus 1 (or none) with --duration.")
            kwargs["output"] = args.output
        pipe = assemble(settings, run_mode.pipeline, context, loras, stage_2_loras, fuse_loras=args.fuse_loras)
        pipe.work_limit = limit
        runner = ParallelRunner(pipe, context)  # with one GPU, the plain stream
        if context.is_main:
            print(f"model: {pipe.model_label} ({pipe.model_summary})", file=sys.stderr)
        if run_mode.takes_images:
            kwargs["images"] = images
        if run_mode.writes_while_decoding and context.world_size == 1:  # ranks > 0 must not write the file too
            kwargs["output_path"] = args.output
        for event in runner.stream(**kwargs):  # events reach rank 0 only
            if isinstance(event, WindowStarted):
                print(
                    f"window {event.window} of {event.total_windows}: {event.start_s:.2f}-{event.end_s:.2f} s, "
                    f"{event.prompt[:60]}",
                    file=sys.stderr,
                )
            elif isinstance(event, LongFormFinished):
                state = "stopped" if event.stopped else "done"
                print(
                    f"{state} in {event.elapsed_s:.2f} s: {event.path} ({event.duration_s:.2f} s, "
                    f"+ {event.recipe_path.name})",
                    file=sys.stderr,
                )
            elif isinstance(event, StepPreview):
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
        error_line = f"error: {one_line(error, args.command)}"
        return 2
    finally:
        teardown(context)
        if error_line is not None and (context is None or context.is_main):
            print(error_line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
