"""Command line: `python -m ltx_pipeline t2av --prompt ...` and `python -m ltx_pipeline a2v --audio CLIP ...`."""

import argparse
import logging
import sys
from pathlib import Path

import torch

from . import constants, parallel, validation
from .acceleration import (
    MemoryMode,
    add_speed_arguments,
    check_speed_for_memory_mode,
    place_pipeline,
    speed_options_from_args,
)
from .audio import probe_audio_duration
from .conditioning import ImageCondition
from .limits import WorkLimit, default_work_limit
from .lora import StageLoras, parse_lora_argument
from .media import save_output
from .model_defaults import ModelDefaults, defaults_for_model, longest_frames_within
from .pipeline_a2vid_two_stage import A2VidPipelineTwoStage
from .pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline
from .types import Finished, StageDecoded, StepPreview
from .user_terms import CLI_FLAGS, in_user_terms


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (no usage block) and exit code 2, as every input
    error of this command is."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m ltx_pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    t2av = commands.add_parser("t2av", help="text to audio+video")
    a2v = commands.add_parser("a2v", help="audio to video: the video follows the clip, which is kept unmodified")
    a2v.add_argument("--audio", required=True, help="audio file (wav, flac, ogg, mp3) or a video with a sound track")
    a2v.add_argument("--audio-start-time", type=float, default=0.0, help="seconds into the clip where the cut starts")
    a2v.add_argument("--pad-audio", action="store_true", help="pad a clip shorter than the video with silence")
    for sub in (t2av, a2v):
        sub.add_argument("--prompt", required=True)
        sub.add_argument("--negative-prompt", default=None, help="default: the reference negative prompt (dev mode)")
        sub.add_argument(
            "--model",
            default=constants.EMBEDDED_MODEL_NAME,
            help="'embedded' (ships with the repo), a Hub id, a diffusers folder, or an official .safetensors file",
        )
        sub.add_argument(
            "--spatial-upsampler", default=None, help="official spatial upsampler file (single-file models)"
        )
        sub.add_argument("--text-encoder", default=None, help="Gemma-3 Hub id or folder (single-file models)")
        sub.add_argument(
            "--num-frames",
            type=int,
            default=None,
            help="8k+1, e.g. 97 or 121; default: the model's own (embedded: 97; real weights: 121), for a2v at most "
            "the clip's length",
        )
        sub.add_argument("--frame-rate", type=float, default=None, help="default: the model's own (24)")
        sub.add_argument(
            "--height", type=int, default=None, help="multiple of 64; default: the model's own (embedded: 128; 512)"
        )
        sub.add_argument(
            "--width", type=int, default=None, help="multiple of 64; default: the model's own (embedded: 128; 768)"
        )
        sub.add_argument(
            "--max-pixel-frames",
            type=int,
            default=None,
            help="refuse jobs above height x width x frames (default: LTX_MAX_PIXEL_FRAMES, else the device's limit)",
        )
        sub.add_argument("--seed", type=int, default=constants.DEFAULT_SEED)
        sub.add_argument("--mode", choices=("distilled", "dev"), default=None, help="default: the model's own")
        sub.add_argument("--steps", type=int, default=None, help="stage-1 steps in dev mode")
        sub.add_argument("--modality-scale", type=float, default=None, help=">1 tightens audio-video sync")
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
            choices=[mode.value for mode in MemoryMode],
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
    return parser


def parse_image_argument(path: str, frame: str, strength: str) -> ImageCondition:
    """`--image PATH FRAME STRENGTH` -> ImageCondition; the pipeline checks the values themselves."""
    try:
        return ImageCondition(path, frame_index=int(frame), strength=float(strength))
    except ValueError as error:
        raise ValueError(
            f"`--image` takes PATH FRAME STRENGTH with an integer frame and a number strength; got {path} {frame} {strength}."
        ) from error


def resolve_defaults(args: argparse.Namespace, defaults: ModelDefaults) -> None:
    """Fills the size, length, rate and guidance the user left out with the model's own; an a2v clip shorter than
    the default length gets the longest length it covers, said on stderr."""
    args.height = defaults.height if args.height is None else args.height
    args.width = defaults.width if args.width is None else args.width
    args.frame_rate = defaults.frame_rate if args.frame_rate is None else args.frame_rate
    if args.modality_scale is None:
        args.modality_scale = defaults.modality_scale
    if args.num_frames is not None:
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


def work_limit(args: argparse.Namespace) -> WorkLimit:
    if args.max_pixel_frames is not None:
        return WorkLimit(args.max_pixel_frames, source="set by --max-pixel-frames")
    return default_work_limit(args.device)


def one_line(error: BaseException) -> str:
    """An input error in the command line's words (flags, not Python arguments), on one line."""
    return " ".join(in_user_terms(str(error), CLI_FLAGS).split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pipeline_class = TI2VidTwoStagesPipeline if args.command == "t2av" else A2VidPipelineTwoStage
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    context = None
    error_line = None  # printed last, after the process group's goodbye, so the error ends the output
    try:
        resolve_defaults(args, defaults_for_model(args.model))
        # Before minutes of loading, not after: the size, the length and the work they make together.
        validation.check_size(args.height, args.width)
        validation.check_num_frames(args.num_frames)
        validation.check_frame_rate(args.frame_rate)
        limit = work_limit(args)
        limit.check(args.height, args.width, args.num_frames)
        if args.num_gpus > 1 and not parallel.launched_by_torchrun():
            return parallel.launch(sys.argv[1:] if argv is None else list(argv), args.num_gpus, args.device)
        context = parallel.process_context(args.num_gpus, args.device)
        images = [parse_image_argument(*values) for values in args.image]
        loras = [parse_lora_argument(*values) for values in args.lora]
        stage_2_loras = (
            [parse_lora_argument(args.distilled_lora, "1.0", "--distilled-lora")] if args.distilled_lora else []
        )
        speed = speed_options_from_args(args)
        check_speed_for_memory_mode(speed, args.memory_mode)  # before minutes of loading, not after
        pipe = pipeline_class.from_model(
            args.model, spatial_upsampler=args.spatial_upsampler, text_encoder=args.text_encoder, torch_dtype=dtype
        )
        if loras or stage_2_loras:
            # Before the speed and memory options: fp8 layers and offloading must see the LoRA layers.
            pipe.stage_loras = StageLoras.load(pipe, loras, stage_2_loras=stage_2_loras, fuse=args.fuse_loras)
        pipe.work_limit = limit
        place_pipeline(pipe, context.device, args.memory_mode, speed)
        parallel.enable_context_parallel(pipe, context)
        runner = parallel.ParallelRunner(pipe, context)  # with one GPU, the plain stream
        if context.is_main:
            print(f"model: {pipe.model_label}", file=sys.stderr)
        kwargs = {
            "prompt": args.prompt,
            "negative_prompt": args.negative_prompt,
            "num_frames": args.num_frames,
            "frame_rate": args.frame_rate,
            "height": args.height,
            "width": args.width,
            "seed": args.seed,
            "mode": args.mode,
            "num_inference_steps": args.steps,
            "modality_scale": args.modality_scale,
            "images": images,
        }
        if args.command == "a2v":
            kwargs.update(audio=args.audio, audio_start_time=args.audio_start_time, pad_audio=args.pad_audio)
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
        error_line = f"error: {one_line(error)}"
        return 2
    finally:
        parallel.teardown(context)
        if error_line is not None and (context is None or context.is_main):
            print(error_line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
