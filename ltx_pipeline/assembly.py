"""Model -> LoRAs -> speed and memory options -> the GPUs each generation runs on, assembled once for the command
line and the studio, so neither reaches into `speed` or `parallel` itself.

    settings = settings_from_args(args)                     # or ModelSettings(...), checked on creation
    if (exit_code := relaunch_on_gpus(settings, argv)) is not None:
        return exit_code                                    # re-run under torchrun for --num-gpus > 1
    context = join_gpus(settings)
    pipe = assemble(settings, TI2VidTwoStagesPipeline, context, loras=...)
    runner = ParallelRunner(pipe, context)                  # one GPU: the plain stream
"""

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import constants, parallel
from .lora import LoraSpec, StageLoras
from .parallel import DistributedContext, ParallelRunner
from .pipeline_common import LTXAVPipelineBase
from .speed.acceleration import (
    MemoryMode,
    SpeedOptions,
    add_speed_arguments,
    check_speed_for_memory_mode,
    place_pipeline,
    speed_options_from_args,
)

__all__ = [
    "DistributedContext",
    "ModelSettings",
    "ParallelRunner",
    "SpeedOptions",
    "add_model_arguments",
    "assemble",
    "default_device",
    "join_gpus",
    "lone_process",
    "relaunch_on_gpus",
    "settings_from_args",
    "teardown",
]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ModelSettings:
    """Which weights, where, how fast, on how many GPUs; checked on creation, before anything loads."""

    model: str = constants.EMBEDDED_MODEL_NAME  # "embedded", a Hub id, a diffusers folder or a .safetensors file
    spatial_upsampler: str | None = None  # single-file models: the official upsampler file (default: from the Hub)
    text_encoder: str | None = None  # single-file models: Gemma-3 Hub id or folder (default: the reference one)
    device: str | None = None  # None: CUDA when available, else CPU
    memory_mode: str | None = None  # a MemoryMode name; None: everything on `device` in the model's dtype
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    num_gpus: int = 1  # GPUs each generation is split over (context parallelism, started through torchrun)

    def __post_init__(self) -> None:
        if self.memory_mode is not None:
            MemoryMode.from_name(self.memory_mode)
        check_speed_for_memory_mode(self.speed, self.memory_mode)
        parallel.check_num_gpus(self.num_gpus, self.resolved_device)

    @property
    def resolved_device(self) -> str:
        return self.device or default_device()

    @property
    def dtype(self) -> torch.dtype:
        """bf16 on a GPU, float32 on the CPU."""
        return torch.bfloat16 if self.resolved_device.startswith("cuda") else torch.float32


def add_model_arguments(parser: argparse.ArgumentParser, environment: bool = False) -> None:
    """The flags of `ModelSettings`; with `environment`, defaults from LTX_MODEL, LTX_DEVICE, LTX_MEMORY_MODE and
    LTX_NUM_GPUS (the studio's way on a Space)."""

    def env(name: str, default: Any) -> Any:
        return os.environ.get(name, default) if environment else default

    parser.add_argument(
        "--model",
        default=env("LTX_MODEL", constants.EMBEDDED_MODEL_NAME),
        help="'embedded' (ships with the repo), a Hub id, a diffusers folder, or an official .safetensors file; "
        "LTX-2.5 as Lightricks ships it (its folder of per-component files, or its transformer file), LTX-2.3, "
        "LTX-2.0; the version is read from the files and named on the 'model:' line at startup"
        + ("; env LTX_MODEL" if environment else ""),
    )
    parser.add_argument(
        "--spatial-upsampler", default=None, help="official spatial upsampler file (single-file models)"
    )
    parser.add_argument("--text-encoder", default=None, help="Gemma-3 Hub id or folder (single-file models)")
    parser.add_argument("--device", default=env("LTX_DEVICE", None), help="cuda, cuda:1, cpu (default: auto)")
    parser.add_argument(
        "--memory-mode",
        choices=[memory_mode.value for memory_mode in MemoryMode],
        default=env("LTX_MEMORY_MODE", None),
        help="GPU memory layout; default: everything on --device in the model's dtype",
    )
    add_speed_arguments(parser)
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=int(env("LTX_NUM_GPUS", 1)),
        help="GPUs of this host to split each generation over (context parallelism, started through torchrun)",
    )


def settings_from_args(args: argparse.Namespace) -> ModelSettings:
    """`ModelSettings` from the flags of `add_model_arguments`; a ValueError names the first bad one."""
    return ModelSettings(
        model=args.model,
        spatial_upsampler=args.spatial_upsampler,
        text_encoder=args.text_encoder,
        device=args.device,
        memory_mode=args.memory_mode,
        speed=speed_options_from_args(args),
        num_gpus=args.num_gpus,
    )


def relaunch_on_gpus(
    settings: ModelSettings, argv: Sequence[str] | None, entry: list[str] | None = None
) -> int | None:
    """For several GPUs outside torchrun: runs the same command under torchrun and returns its exit code; else None."""
    if settings.num_gpus == 1 or parallel.launched_by_torchrun():
        return None
    command = sys.argv[1:] if argv is None else list(argv)
    return parallel.launch(command, settings.num_gpus, settings.resolved_device, entry=entry)


def join_gpus(settings: ModelSettings, timeout_s: float | None = None) -> DistributedContext:
    """This process's place in the generation: one of torchrun's ranks, or a lone process."""
    if parallel.launched_by_torchrun() and timeout_s is not None:
        # Joined here, before process_context() (which reuses the group), for a longer collective timeout.
        backend = "nccl" if settings.resolved_device.startswith("cuda") else "gloo"
        parallel.init_distributed(backend, timeout_s=timeout_s)
    return parallel.process_context(settings.num_gpus, settings.resolved_device)


def lone_process(settings: ModelSettings) -> DistributedContext:
    """The context of a process that runs every generation by itself."""
    return DistributedContext(
        rank=0, world_size=1, local_rank=0, device=torch.device(settings.resolved_device), backend="none"
    )


def assemble(
    settings: ModelSettings,
    pipeline_class: type[LTXAVPipelineBase],
    context: DistributedContext,
    loras: Sequence[LoraSpec] = (),
    stage_2_loras: Sequence[LoraSpec] = (),
    fuse_loras: bool = False,
) -> LTXAVPipelineBase:
    """Loads the model as `pipeline_class`, adds the LoRAs, applies the memory mode and speed options on the
    device, and splits the transformer over the context's GPUs (a no-op for one)."""
    pipe = pipeline_class.from_model(
        settings.model,
        spatial_upsampler=settings.spatial_upsampler,
        text_encoder=settings.text_encoder,
        torch_dtype=settings.dtype,
    )
    if loras or stage_2_loras:
        # Before the speed and memory options: fp8 layers and offloading must see the LoRA layers.
        pipe.stage_loras = StageLoras.load(pipe, list(loras), stage_2_loras=list(stage_2_loras), fuse=fuse_loras)
    place_pipeline(pipe, context.device, settings.memory_mode, settings.speed)
    parallel.enable_context_parallel(pipe, context)
    return pipe


def teardown(context: DistributedContext | None) -> None:
    parallel.teardown(context)
