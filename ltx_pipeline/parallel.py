"""Context-parallel generation over the GPUs (or CPU processes) of one host, launched with `torchrun`.

Every process holds the whole pipeline and runs the whole generation; only the transformer's video tokens (and the
prompt tokens they attend to) are split across processes, by diffusers' own context parallelism: Ulysses
(all-to-all over attention heads) or ring attention (all-gather of keys and values), over NCCL on CUDA and gloo on
CPU. The transformer gathers its video output after `proj_out`, so every process steps the same latents and decodes
the same clip; only rank 0 reports events and writes files.

    context = process_context(num_gpus, device)      # joins torchrun's group (or stands alone for 1)
    pipe = TI2VidTwoStagesPipeline.from_model(...)
    place_pipeline(pipe, context.device, memory_mode, speed)
    enable_context_parallel(pipe, context)           # no-op for one process
    runner = ParallelRunner(pipe, context)
    for event in runner.stream(prompt=..., ...):     # events on rank 0 only; sizes checked first
        ...
    teardown(context)

`launch()` re-executes a command under `torchrun --standalone --nproc-per-node N`.
"""

import contextlib
import datetime
import inspect
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

logger = logging.getLogger(__name__)

ATTENTION_KINDS = ("ulysses", "ring")
DEFAULT_PIPELINE = "default"  # the name of a ParallelRunner's only pipeline
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device  # cuda:<local_rank> with NCCL, cpu with gloo
    backend: str  # "nccl", "gloo", or "none" for a lone process

    @property
    def is_main(self) -> bool:
        """Rank 0 reports progress and writes the outputs; the other ranks only compute."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun started (its environment names a rank and a world size)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def check_num_gpus(num_gpus: int, device: str | torch.device) -> None:
    """`num_gpus` must be a positive int that this host can honour on `device` ("cpu" runs gloo processes)."""
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise ValueError(f"`num_gpus` must be a positive integer; got {num_gpus!r}.")
    device = torch.device(device)
    if device.type == "cuda" and num_gpus > torch.cuda.device_count():
        raise ValueError(
            f"`num_gpus` must be at most the {torch.cuda.device_count()} CUDA GPU(s) visible on this host; "
            f"got {num_gpus}."
        )
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"`device` must be 'cuda' or 'cpu' for a run over several processes; got {str(device)!r}.")


def launch(argv: list[str], num_gpus: int, device: str | torch.device = "cuda", entry: list[str] | None = None) -> int:
    """Re-runs a command as `num_gpus` processes under torchrun; returns torchrun's exit code.

    `entry` is what follows torchrun's options, before `argv`: `["-m", "ltx_pipeline"]` by default (the command
    line), or a script path such as the app's `[os.path.abspath(__file__)]`. torchrun's `--standalone` rendezvous
    picks a free local port, so two launches can share a host.
    """
    check_num_gpus(num_gpus, device)
    entry = ["-m", "ltx_pipeline"] if entry is None else entry
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={num_gpus}"]
    command += [*entry, *argv]
    logger.info("launching %d processes: %s", num_gpus, " ".join(command))
    return subprocess.call(command)


def init_distributed(backend: str | None = None, timeout_s: float | None = None) -> DistributedContext:
    """Joins the process group that torchrun set up in this process's environment.

    `backend` defaults to "nccl" when CUDA is available and "gloo" otherwise. Each rank uses the GPU of its local
    rank. `timeout_s` bounds every collective (torch's default otherwise). Calling it twice in one process returns
    the same context.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"init_distributed() needs the environment torchrun sets; missing {', '.join(missing)}. "
            "Start the command with `torchrun --nproc-per-node N` (or pass --num-gpus N to the CLI)."
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"`backend` must be 'nccl' or 'gloo'; got {backend!r}.")
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        # With device_id, NCCL binds the communicator to this rank's GPU at once instead of guessing later.
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world_size,
            device_id=device if backend == "nccl" else None,
            timeout=datetime.timedelta(seconds=timeout_s) if timeout_s is not None else None,
        )
    logger.info("rank %d of %d on %s (%s)", rank, world_size, device, backend)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def process_context(num_gpus: int, device: str | torch.device) -> DistributedContext:
    """The context of this process for a run on `num_gpus` GPUs: joins torchrun's group, or stands alone.

    Under torchrun the world size must equal `num_gpus`; without torchrun `num_gpus` must be 1 (call `launch()`
    for more). With one process nothing distributed is set up and `device` is used as given.
    """
    check_num_gpus(num_gpus, device)
    if not launched_by_torchrun():
        if num_gpus != 1:
            raise RuntimeError(f"{num_gpus} GPUs need {num_gpus} processes: start them with launch() or torchrun.")
        return DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device(device), backend="none")
    world_size = int(os.environ["WORLD_SIZE"])
    if world_size != num_gpus:
        raise ValueError(f"`num_gpus` must equal torchrun's {world_size} processes; got {num_gpus}.")
    return init_distributed("nccl" if torch.device(device).type == "cuda" else "gloo")


def teardown(context: DistributedContext | None = None) -> None:
    """Leaves the process group (after a barrier, so no rank exits while another still sends)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if context is not None:
        logger.info("rank %d left the process group", context.rank)


def context_parallel_plan(transformer: torch.nn.Module) -> dict[str, Any]:
    """Where diffusers splits and gathers `LTX2VideoTransformer3DModel`'s sequences.

    diffusers 0.42.1's own `_cp_plan` splits the video and prompt tokens, the video RoPE and gathers after
    `proj_out`, but it expects the "interleaved" RoPE layout (B, S, D): LTX-2.3 and LTX-2.0 checkpoints use "split"
    RoPE, laid out (B, heads, S, D/2), which its plan leaves whole (a shape error in the first attention). It also
    leaves the per-video-token RoPE of the audio-video cross-attention (`cross_attn_rope`) whole, and the per-token
    timesteps that image conditioning passes. This plan is the same plan with those fixed. Audio tokens stay whole on every rank: they are ~0.5% of the tokens at 1536x1024,
    and attention over keys repeated on every rank gives the same result as over the keys once.
    """
    if transformer.config.rope_type == "split":
        rope_split = ContextParallelInput(split_dim=2, expected_dims=4, split_output=True)  # (B, H, S, D/2)
    else:
        rope_split = ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)  # (B, S, D)
    return {
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False),
            "encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False),
            "encoder_attention_mask": ContextParallelInput(split_dim=1, expected_dims=2, split_output=False),
            # Per-token timesteps (B, S) of image conditioning follow their tokens; a (B,) timestep stays whole
            # (diffusers logs once that it leaves a tensor of other dims unsplit).
            "timestep": ContextParallelInput(split_dim=1, expected_dims=2, split_output=False),
        },
        "rope": {0: rope_split, 1: rope_split},
        "cross_attn_rope": {0: rope_split, 1: rope_split},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def _attention_degrees(attention: str, world_size: int) -> dict[str, int]:
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"`attention` must be one of {', '.join(map(repr, ATTENTION_KINDS))}; got {attention!r}.")
    return {f"{attention}_degree": world_size}


def check_attention_heads(transformer: torch.nn.Module, attention: str, world_size: int) -> None:
    """Ulysses hands each rank a share of the attention heads: both streams' head counts must split evenly."""
    _attention_degrees(attention, world_size)
    if attention != "ulysses":
        return
    for name in ("num_attention_heads", "audio_num_attention_heads"):
        heads = transformer.config[name]
        if heads % world_size:
            raise ValueError(
                f"Ulysses attention over {world_size} processes needs head counts divisible by {world_size}; this "
                f"transformer's {name} is {heads}. Use attention='ring' or a number of GPUs that divides {heads}."
            )


def check_context_parallel_sizes(
    pipe: Any, context: DistributedContext, height: int, width: int, num_frames: int, frame_rate: float = 24.0
) -> None:
    """Every sequence that is split must split evenly: video tokens of both stages and the prompt tokens.

    Call it with the request's values before `stream()`; it raises a ValueError naming the argument otherwise.
    Nothing is padded or resized silently.
    """
    world_size = context.world_size
    if world_size == 1:
        return
    prompt_tokens = pipe.max_sequence_length
    if prompt_tokens % world_size:
        raise ValueError(
            f"The prompt is padded to {prompt_tokens} tokens, which do not split over {world_size} processes; "
            f"use a number of GPUs that divides {prompt_tokens}."
        )
    for stage, scale in ((1, 2), (2, 1)):
        geometry = pipe.latent_geometry(height // scale, width // scale, num_frames, frame_rate)
        # One token per latent cell: LTX-2 transformers patchify 1 x 1 x 1.
        tokens = geometry.frames * geometry.height * geometry.width
        if tokens % world_size:
            raise ValueError(
                f"`height`={height}, `width`={width}, `num_frames`={num_frames} give {tokens} video tokens in "
                f"stage {stage} ({geometry.frames} x {geometry.height} x {geometry.width} latent cells), which do "
                f"not split evenly over {world_size} processes. Pick a size whose stage-{stage} token count is a "
                f"multiple of {world_size}, e.g. a width that is a multiple of {64 * world_size} px."
            )


# diffusers 0.42.1 backends whose forward returns the log-sum-exp that ring attention merges chunks with; all are
# CUDA-only and bf16/fp16-only ("native" raises "Native attention does not support return_lse=True").
RING_ATTENTION_BACKENDS = ("_native_cudnn", "_native_flash", "flash", "_flash_3")


def attention_backend_name(transformer: torch.nn.Module) -> str:
    """The diffusers attention backend the transformer's attention processors dispatch to."""
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            if processor._attention_backend is not None:
                return AttentionBackendName(processor._attention_backend).value
            break
    active, _ = _AttentionBackendRegistry.get_active_backend()
    return AttentionBackendName(active).value


def check_ring_attention_backend(transformer: torch.nn.Module) -> None:
    backend = attention_backend_name(transformer)
    if backend not in RING_ATTENTION_BACKENDS:
        raise ValueError(
            f"Ring attention needs an attention backend that returns the log-sum-exp, one of "
            f"{', '.join(RING_ATTENTION_BACKENDS)} (CUDA, bf16); the transformer uses {backend!r}. Set one with the "
            "speed option `attention_backend` first, or use attention='ulysses'."
        )


@contextlib.contextmanager
def _cpu_device_index() -> Iterator[None]:
    """diffusers 0.42.1's `ModelMixin._resolve_parallel_config` computes `rank % torch.accelerator.device_count()`,
    which divides by zero on a host without an accelerator. On such a host only, it reads 1 for the duration of the
    call (the device it then builds is `cpu:0`, the CPU)."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


class _WholeTimestepNoteFilter(logging.Filter):
    """Drops diffusers' note that a (B,) timestep is left unsplit: this plan splits only per-token (B, S) ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Expected input tensor to have 2 dimensions, but got 1 dimensions")


PROMPT_MASK_ARGUMENTS = ("encoder_attention_mask", "audio_encoder_attention_mask")


def _drop_uniform_prompt_masks(
    module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Forward pre-hook of a context-parallel transformer: passes the prompt masks as None when they are uniform.

    diffusers 0.42.1's context-parallel attention cannot take LTX-2's prompt mask: Ulysses all-gathers the mask
    but keeps all its heads while the queries keep 1/N of them ("output with shape [1, 1, 8, 1024] doesn't match
    the broadcast shape [1, 2, 8, 1024]"), and the ring backends that return the log-sum-exp either refuse masks
    (`_native_flash`) or reuse the local mask for every rotated key chunk. After LTX-2's text connectors the mask
    is uniform (learnable registers replace the padding, and the connectors return an all-zero mask), and a
    uniform additive bias does not change a softmax, so passing None is exact.
    """
    for name in PROMPT_MASK_ARGUMENTS:
        mask = kwargs.get(name)
        if mask is None:
            continue
        if not bool((mask == mask.flatten(1)[:, :1].view(-1, *[1] * (mask.ndim - 1))).all()):
            raise ValueError(
                f"`{name}` masks some prompt tokens and not others; diffusers' context-parallel attention cannot "
                "apply such a mask. Run on one GPU, or use text connectors with learnable registers (LTX-2.x)."
            )
        kwargs[name] = None
    return args, kwargs


def enable_context_parallel(pipe: Any, context: DistributedContext, attention: str = "ulysses") -> None:
    """Splits the pipeline's transformer over the processes of `context` with diffusers' context parallelism.

    Place the pipeline on `context.device` first (`pipe.to(context.device)` or a memory mode), and pick the attention
    backend (speed options) first: diffusers checks the backend supports context parallelism here. One world of
    processes, one parallel transformer: calling it twice raises diffusers' RuntimeError.
    """
    degrees = _attention_degrees(attention, context.world_size)
    if context.world_size == 1:
        logger.info("one process: context parallelism not needed")
        return
    if not dist.is_initialized():
        raise RuntimeError("enable_context_parallel() needs init_distributed() to have run in this process.")
    check_attention_heads(pipe.transformer, attention, context.world_size)
    if attention == "ring":
        check_ring_attention_backend(pipe.transformer)
    config = ContextParallelConfig(**degrees)
    with _cpu_device_index():
        pipe.transformer.enable_parallelism(config=config, cp_plan=context_parallel_plan(pipe.transformer))
    pipe.transformer.register_forward_pre_hook(_drop_uniform_prompt_masks, with_kwargs=True)
    split_logger = logging.getLogger("diffusers.hooks.context_parallel")
    if not any(isinstance(existing, _WholeTimestepNoteFilter) for existing in split_logger.filters):
        split_logger.addFilter(_WholeTimestepNoteFilter())
    logger.info("transformer split over %d processes with %s attention", context.world_size, attention)


class ParallelRunner:
    """Runs pipeline streams on every rank in step with rank 0, which alone sees the events.

    Each transformer call is a collective operation, so all ranks must run the same request and stop at the same
    step. Rank 0's request is sent to the others before the run; after every event rank 0 sends whether
    `cancel()` was called, and every rank then cancels its pipeline at the same step boundary. Use `runner.cancel()`,
    not `pipe.cancel()`, on a parallel pipeline: a flag read by rank 0 alone would leave the others waiting.

    `pipelines` is one pipeline, or several by name (the app's "t2av" and "a2v" over the same components).
    Command line: every rank calls `stream()` with its (identical) arguments. App: rank 0 calls `stream()` per
    request and `close()` at exit, the other ranks call `serve()`. `stream()` checks each request's size with
    `check_context_parallel_sizes` before anything is sent.
    """

    def __init__(self, pipelines: Any, context: DistributedContext):
        self.pipelines = dict(pipelines) if isinstance(pipelines, Mapping) else {DEFAULT_PIPELINE: pipelines}
        self.context = context
        self._cancel_requested = threading.Event()

    def cancel(self) -> None:
        """Stops the running stream on every rank at the next step boundary; safe from another thread on rank 0."""
        self._cancel_requested.set()

    def pipeline(self, pipeline_name: str = DEFAULT_PIPELINE) -> "ParallelPipelineView":
        """A stand-in for `pipelines[pipeline_name]` whose `stream()` and `cancel()` go through this runner."""
        if pipeline_name not in self.pipelines:
            raise ValueError(f"`pipeline_name` must be one of {sorted(self.pipelines)}; got {pipeline_name!r}.")
        return ParallelPipelineView(self, pipeline_name)

    def stream(self, pipeline_name: str = DEFAULT_PIPELINE, **kwargs: Any) -> Iterator[Any]:
        """`pipelines[pipeline_name].stream(**kwargs)` on every rank with rank 0's request; events on rank 0 only."""
        if pipeline_name not in self.pipelines:
            raise ValueError(f"`pipeline_name` must be one of {sorted(self.pipelines)}; got {pipeline_name!r}.")
        # Checked before the request leaves rank 0: a size that does not split is refused before any collective.
        self._check_size(self.pipelines[pipeline_name], kwargs)
        request = self._exchange((pipeline_name, kwargs))
        if request is None:
            raise RuntimeError("rank 0 closed the runner; no request to run.")
        return self._run(*request)

    def serve(self) -> None:
        """Ranks other than 0: run every request rank 0 sends until rank 0 calls `close()`."""
        if self.context.is_main:
            raise RuntimeError("serve() runs on the ranks other than 0; rank 0 calls stream() and close().")
        while (request := self._exchange(None)) is not None:
            try:
                for _ in self._run(*request):
                    pass
            except ValueError as error:
                # An invalid request fails the same way on every rank; rank 0 reports it to the user.
                logger.info("rank %d: request refused: %s", self.context.rank, error)

    def close(self) -> None:
        """Rank 0: tells the serving ranks to return from `serve()`."""
        if self.context.is_main and self.context.world_size > 1:
            self._exchange(None)

    def _exchange(self, request: tuple[str, dict[str, Any]] | None) -> tuple[str, dict[str, Any]] | None:
        if self.context.world_size == 1:
            return request
        message = [request if self.context.is_main else None]
        dist.broadcast_object_list(message, src=0, device=self._collective_device)
        return message[0]

    @property
    def _collective_device(self) -> torch.device:
        return self.context.device

    def _agree_to_stop(self, stop: bool) -> bool:
        """Rank 0's decision, the same on every rank."""
        if self.context.world_size == 1:
            return stop
        flag = torch.tensor([int(stop and self.context.is_main)], device=self._collective_device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def _check_size(self, pipe: Any, request: dict[str, Any]) -> None:
        if self.context.world_size == 1:
            return
        size = inspect.signature(pipe.stream).bind_partial(**request)
        size.apply_defaults()
        arguments = size.arguments
        if "height" not in arguments:  # the modes that take a video: its own size (trimmed where asked)
            from .video_input import probe_video

            info = probe_video(arguments["video"])
            arguments = {
                "height": info.height,
                "width": info.width,
                "num_frames": arguments.get("num_frames") or info.num_frames,
                "frame_rate": float(info.frame_rate),
            }
        check_context_parallel_sizes(
            pipe,
            self.context,
            height=arguments["height"],
            width=arguments["width"],
            num_frames=arguments["num_frames"],
            frame_rate=arguments["frame_rate"],
        )

    def _run(self, pipeline_name: str, request: dict[str, Any]) -> Iterator[Any]:
        pipe = self.pipelines[pipeline_name]
        self._cancel_requested.clear()
        events = pipe.stream(**request)
        return self._in_step(pipe, events)

    def _in_step(self, pipe: Any, events: Iterator[Any]) -> Iterator[Any]:
        awaiting_decision = False
        try:
            for event in events:
                # Every rank's stream is paused at the same yield here; rank 0's consumer sees the event first,
                # so a cancel (or a closed generator) decided while it looks takes effect before the next step.
                awaiting_decision = True
                if self.context.is_main:
                    yield event
                if self._agree_to_stop(self._cancel_requested.is_set()):
                    pipe.cancel()
                awaiting_decision = False
        finally:
            if awaiting_decision and self.context.is_main:
                # Rank 0's consumer closed the generator at an event: the other ranks wait for this decision.
                self._agree_to_stop(True)
            events.close()


class ParallelPipelineView:
    """What the app holds instead of a pipeline on rank 0: `stream()` and `cancel()` reach every rank.

    Any other attribute is the pipeline's own.
    """

    def __init__(self, runner: ParallelRunner, pipeline_name: str):
        self._runner = runner
        self._pipeline_name = pipeline_name

    def stream(self, **kwargs: Any) -> Iterator[Any]:
        return self._runner.stream(self._pipeline_name, **kwargs)

    def cancel(self) -> None:
        self._runner.cancel()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner.pipelines[self._pipeline_name], name)
