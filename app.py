"""LTX-2.3 audio+video studio: parse the command line, then launch the Gradio app.

    python app.py                                  # the embedded model, offline, http://127.0.0.1:7860
    python app.py --model Lightricks/LTX-2.3       # real weights (also: LTX_MODEL=... python app.py)
    python app.py --model ... --num-gpus 4         # each generation split over 4 GPUs (re-run under torchrun)

On Hugging Face Spaces this file is the `app_file`; settings come from the environment there.
"""

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

with contextlib.suppress(ImportError):
    import spaces  # noqa: F401 - on a ZeroGPU Space this must come before torch is imported; absent elsewhere

from ltx_pipeline import assembly  # noqa: E402
from ui import StudioConfig, StudioState, build_demo, launch_options  # noqa: E402
from ui.long_form import check_audio_limit  # noqa: E402
from ui.retention import RetentionPolicy, parse_size  # noqa: E402
from ui.zerogpu import on_zero_gpu  # noqa: E402

# s: how long the other ranks of a multi-GPU studio wait for rank 0's next request (an idle page) before the
# collective times out; torch's NCCL default (10 min) would end an idle studio.
SERVING_TIMEOUT_S = 7 * 24 * 3600


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = StudioConfig()
    parser = argparse.ArgumentParser(description="LTX-2.3 audio+video studio (Gradio).")
    assembly.add_model_arguments(parser, environment=True)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("LTX_CONCURRENCY", defaults.concurrency_limit)),
        help="generations at once (default 1; env LTX_CONCURRENCY)",
    )
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue_size, help="jobs allowed to wait")
    parser.add_argument(
        "--max-pixel-frames",
        type=int,
        default=None,
        help="refuse jobs above height x width x frames (default: 128x128x257 on a CPU, 1920x1088x257 on a GPU); "
        "env LTX_MAX_PIXEL_FRAMES",
    )
    parser.add_argument(
        "--max-audio-duration",
        type=float,
        default=defaults.max_audio_duration_s,
        metavar="SECONDS",
        help=f"refuse long runs from audio clips longer than this (default {defaults.max_audio_duration_s:g}, 10 min)",
    )
    parser.add_argument(
        "--keep-outputs-days", type=float, default=7.0, help="outputs older than this are removed (default 7)"
    )
    parser.add_argument(
        "--max-outputs-size", default="5gb", help="the oldest outputs are removed beyond this total (default 5gb)"
    )
    parser.add_argument(
        "--keep-stage-files", action="store_true", help="keep each run's stage-1 clip (default: removed after an hour)"
    )
    parser.add_argument("--max-file-size", default=defaults.max_file_size, help="upload limit, e.g. 50mb")
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir, help="where mp4s are written")
    parser.add_argument(
        "--lora-folder",
        type=Path,
        default=Path(os.environ.get("LTX_LORA_FOLDER", defaults.lora_folder)),
        help="LoRA .safetensors files offered in the page's picker (default loras/; env LTX_LORA_FOLDER)",
    )
    parser.add_argument(
        "--distilled-lora",
        default=None,
        help="dev checkpoints: the official distilled LoRA, applied in stage 2 of every run (needs --concurrency 1)",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="a public gradio.live link (needs the internet)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    """The studio's settings; raises ValueError naming the first bad option."""
    settings = assembly.settings_from_args(args)
    check_audio_limit(args.max_audio_duration, "--max-audio-duration")
    return StudioConfig(
        model=settings.model,
        spatial_upsampler=settings.spatial_upsampler,
        text_encoder=settings.text_encoder,
        device=settings.device,
        memory_mode=settings.memory_mode,
        speed=settings.speed,
        concurrency_limit=args.concurrency,
        max_queue_size=args.max_queue,
        max_file_size=args.max_file_size,
        output_dir=args.output_dir.resolve(),
        lora_folder=args.lora_folder.expanduser().resolve(),
        distilled_lora=args.distilled_lora,
        num_gpus=settings.num_gpus,
        max_pixel_frames=args.max_pixel_frames,
        max_audio_duration_s=args.max_audio_duration,
        retention=RetentionPolicy(
            max_age_s=args.keep_outputs_days * 86400.0,
            max_total_bytes=parse_size(args.max_outputs_size),
            keep_stage_files=args.keep_stage_files,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if config.num_gpus > 1:
        # Ctrl+C reaches torchrun and the ranks too; a launching process waits for them to shut down cleanly.
        previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
        # One process per GPU under torchrun, each running this file with the same options.
        exit_code = assembly.relaunch_on_gpus(config.settings, argv, entry=[os.path.abspath(__file__)])
        if exit_code is not None:
            return exit_code
        signal.signal(signal.SIGINT, previous)
    # Other ranks wait for rank 0's next request (an idle page) as long as the page is up.
    context = assembly.join_gpus(config.settings, timeout_s=SERVING_TIMEOUT_S)
    state = StudioState(config, context)
    try:
        if not context.is_main:
            # Ranks other than 0 run what rank 0's page asks until rank 0 closes. torchrun hands Ctrl+C to every
            # rank: here it would cut a collective in half and leave rank 0 waiting, so rank 0 alone ends the run.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            state.serve()
            return 0
        if on_zero_gpu():
            state.load()  # GPU workers are forked per call: they must inherit a loaded model, not a loader mid-flight
        else:
            state.start_loading()  # the page opens at once; the first generation waits for the model
        demo = build_demo(state)
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options(config))
    finally:
        state.close()
        assembly.teardown(context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
