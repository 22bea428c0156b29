"""Speed and memory options applied to a pipeline's components.

Both kinds of option act on the real diffusers components in place, so the product's pipelines, the CLI, the app and
the benchmarks all run the same code:

- `SpeedOptions` (regional compilation, CUDA graphs, attention backend, fp8 matrix products, the feed-forwards'
  GELU in the matrix product's epilogue, the out-of-place rotary embedding, the compiled video decoder, the fp8
  feed-forwards' one-pass scales, the fp8 inputs' norms in one pass) through `apply_speed_options`;
- `MemoryMode` ("full-gpu-bf16", "fp8-storage", "24gb", "16gb"), picked by name, through `apply_memory_mode`.
"""

import argparse
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from diffusers.hooks import apply_group_offloading, apply_layerwise_casting
from diffusers.hooks.group_offloading import _is_group_offload_enabled
from diffusers.hooks.layerwise_casting import _LAYERWISE_CASTING_HOOK as LAYERWISE_CASTING_HOOK
from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN
from diffusers.models.activations import GELU
from diffusers.models.attention import FeedForward
from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements
from diffusers.models.transformers.transformer_ltx2 import LTX2Attention
from torch import nn

from .. import constants
from . import forward_graphs
from .attention_processors import OutOfPlaceRotaryAttnProcessor, use_out_of_place_rotary
from .compile_cache import use_persistent_compile_cache
from .fp8_kernels import FP8_DTYPE, quantize_rows, quantize_to_fp8
from .fused_norms import FusedNormsPass

logger = logging.getLogger(__name__)

FP8_SCALINGS = ("rowwise", "tensor")
# Components that run in bf16; the vocoder stays in float32 (bf16 degrades its bandwidth-extension output).
BF16_COMPONENTS = (
    "text_encoder",
    "connectors",
    "transformer",
    "vae",
    "audio_vae",
    "latent_upsampler",
    "diffusion_decoder",
    "duration_head",
)
FLOAT32_COMPONENTS = ("vocoder",)
# Components whose weights `fp8-storage` keeps in float8 (the ones that hold nearly all of the parameters).
FP8_STORAGE_COMPONENTS = ("transformer", "connectors", "text_encoder")
# LTX-2.5's optional modules, held by the pipeline beside its registered components (`LTXAVPipelineBase`): placed
# by the memory modes like the VAE.
OPTIONAL_COMPONENTS = ("diffusion_decoder", "duration_head")


class MemoryMode(str, Enum):
    """Where the weights live and in which precision they are stored (each mode's `Placement`: `PLACEMENTS`)."""

    FULL_GPU_BF16 = "full-gpu-bf16"  # every component on the GPU in bf16 (about 64 GiB with the text encoder)
    FP8_STORAGE = "fp8-storage"  # as above, large components stored in float8 and cast to bf16 layer by layer
    GPU_24GB = "24gb"  # the transformer resident in its own fp8 layers (compilable), the rest streamed; tiled VAE
    GPU_16GB = "16gb"  # fp8 storage; every component streamed, the transformer group by group; tiled VAE decode

    @classmethod
    def from_name(cls, name: "str | MemoryMode") -> "MemoryMode":
        """The mode called `name`; a clear ValueError listing the valid names otherwise."""
        if isinstance(name, cls):
            return name
        for mode in cls:
            if mode.value == name:
                return mode
        valid = ", ".join(repr(mode.value) for mode in cls)
        raise ValueError(f"`memory_mode` must be one of {valid}; got {name!r}.")


@dataclass(frozen=True)
class Placement:
    """What a memory mode keeps where: the declaration `apply_memory_mode` carries out.

    fp8_storage: components whose layer weights are stored in float8 e4m3 and cast to bf16 layer by layer (diffusers'
        layerwise-casting hook, which torch.compile cannot trace).
    fp8_layers: components whose Linear layers become `Fp8StorageLinear`s (float8 weights with per-channel scales,
        dequantized inside their own forward: no hook, so they compile and can be replayed in a CUDA graph).
    streamed: components whose weights stay in CPU memory and are streamed to the GPU as they run (the transformer
        in groups of blocks, the others layer by layer); every other component is resident on the GPU.
    tiled_vae: decode the video in spatial tiles (bounded activation memory).
    """

    fp8_storage: tuple[str, ...] = ()
    streamed: tuple[str, ...] = ()
    tiled_vae: bool = False
    fp8_layers: tuple[str, ...] = ()

    def hooks_transformer(self) -> bool:
        """Whether this placement leaves hooks on the transformer that move or cast its weights in each forward."""
        return "transformer" in self.fp8_storage or "transformer" in self.streamed


# The text encoder, the connectors and the decoders run once or twice a generation: streaming them costs little time.
# The transformer runs 11+ times: the "24gb" mode keeps it resident (about 18 GiB of fp8 weights for LTX-2.3's 19B),
# its Linear layers as `Fp8StorageLinear`s so that it compiles.
_STREAMED_BESIDE_TRANSFORMER = (
    "text_encoder",
    "connectors",
    "vae",
    "audio_vae",
    "vocoder",
    "latent_upsampler",
    *OPTIONAL_COMPONENTS,
)
_FP8_STORAGE_BESIDE_TRANSFORMER = tuple(name for name in FP8_STORAGE_COMPONENTS if name != "transformer")
PLACEMENTS: dict["MemoryMode", Placement] = {
    MemoryMode.FULL_GPU_BF16: Placement(),
    MemoryMode.FP8_STORAGE: Placement(fp8_storage=FP8_STORAGE_COMPONENTS),
    MemoryMode.GPU_24GB: Placement(
        _FP8_STORAGE_BESIDE_TRANSFORMER, _STREAMED_BESIDE_TRANSFORMER, tiled_vae=True, fp8_layers=("transformer",)
    ),
    MemoryMode.GPU_16GB: Placement(
        FP8_STORAGE_COMPONENTS, ("transformer", *_STREAMED_BESIDE_TRANSFORMER), tiled_vae=True
    ),
}


def streams_transformer(memory_mode: "str | MemoryMode | None") -> bool:
    """Whether `memory_mode` streams the transformer's weights (its fp8 products must then be made before)."""
    return memory_mode is not None and "transformer" in PLACEMENTS[MemoryMode.from_name(memory_mode)].streamed


def available_attention_backends() -> list[str]:
    """diffusers attention backends whose packages are importable here (a GPU may still be needed to run them)."""
    available = []
    for backend in AttentionBackendName:
        try:
            _check_attention_backend_requirements(backend)  # private diffusers helper: raises when a package lacks
        except (RuntimeError, ImportError, ValueError):
            continue
        if backend.value.endswith("_hub"):
            continue  # hub backends download kernels at first use; the product runs offline
        available.append(backend.value)
    return available


@dataclass(frozen=True)
class SpeedOptions:
    """Speed options for the transformer, the component that takes nearly all of the time.

    compile: diffusers' regional compilation, `transformer.compile_repeated_blocks(fullgraph=True)`: one compiled
        graph shared by the 48 identical blocks (compiled at the first forward of each new shape). Not with the
        "fp8-storage" and "16gb" memory modes, whose hooks torch.compile cannot trace (`check_speed_for_memory_mode`).
    attention_backend: a diffusers attention backend name, e.g. "native" (PyTorch SDPA), "_native_cudnn",
        "_native_flash", "flash" or "_flash_3" where those packages are installed; None keeps the default.
    video_attention_backend: a backend for the video self-attention alone (each block's `attn1`), which holds
        nearly all of the attention FLOPs at video sizes; the other attentions (text, audio, cross-modal: short
        sequences) keep `attention_backend`. None: the same as the others.
    fp8: swap the transformer blocks' video-side Linear layers for `Fp8Linear` (Hopper fp8 tensor-core products
        through `torch._scaled_mm`; weights quantized once, activations on the fly). Changes outputs slightly.
    fp8_scaling: "rowwise" (one scale per token and per output channel) or "tensor" (one scale per tensor).
    cuda_graphs: with `compile`, compile the blocks in torch's "reduce-overhead" mode: each block's kernels are
        replayed as a CUDA graph, which removes the per-kernel launch cost that dominates at small sizes (stage 1).
        The transformer's four rotary-embedding modules are graphed too, so that their tables are outputs of a graph,
        which each block's graph reads in place instead of copying them into its own buffers. Graphs are recorded per
        block and shape at the first passes, so the first run of a new size is slower.
        torch keeps them per thread: a process that generates from several threads (the studio's workers) records
        them again in each (measured only from one thread, in benchmarks/bench_full_size.py).
    gelu_epilogue: on CUDA, run each feed-forward's first matrix product and its tanh GELU as one cuBLASLt call
        (`torch._addmm_activation`, the GELU applied in the product's epilogue), instead of writing the 4x-wide
        product and reading it back for a separate GELU kernel. Applies to the video and audio feed-forwards of
        every block; outputs equal the unfused ones within bf16 rounding (elsewhere than CUDA, the same computation).
        Feed-forwards whose first projection is an `Fp8Linear` (`fp8=True`: the video ones) are left alone, since
        `torch._scaled_mm` has no GELU epilogue.
    fused_rotary: every attention computes its split rotary embedding out of place
        (`attention_processors.OutOfPlaceRotaryAttnProcessor`), so that with `compile` the queries' and keys'
        normalisation, rotation and bf16 cast are one kernel instead of a float32 round trip through memory. On CUDA
        the norm and rotation of each attention's queries and keys run as one pass of a Triton kernel
        (`rotary_kernels`), which reads the projections and the rotary tables once, where inductor made a reduction
        and a second pass, and the rotary-embedding modules return float16 tables there (`HalfTableRotaryPosEmbed`),
        which halves what the kernel reads of them and rounds each rotated value by an eighth of its bf16 rounding at
        most. Otherwise the same arithmetic; it matters only compiled.
    compile_vae: torch.compile the video VAE's decoder (a graph per decoded size, e.g. stage 1's and the final one,
        compiled at the first decode of that size), outputs within bf16 rounding of eager. Not with the "24gb" and
        "16gb" memory modes, whose VAE streams its weights layer by layer and decodes in tiles.
    fp8_row_kernel: with `fp8` (row-wise), each video feed-forward's first-product bias, GELU and the second
        product's fp8 input scales in one pass of a Triton kernel (`Fp8GeluFeedForward`, `fp8_kernels`; on CUDA with
        the GPU's tanh instruction and the scale's inverse, at the memory's rate) instead of inductor's kernel,
        which loops over each long row once per reduction and runs well below that rate; elsewhere than CUDA the same
        float32 arithmetic in PyTorch. Outputs within bf16 rounding of `fp8` alone (the GELU is applied before, not
        after, rounding to bf16, and the fast math moves a few fp8 values to a neighbouring one). With `fused_rotary`
        (this project's attention processor) it also does each gated video attention's output gating and its
        out-projection's fp8 scales in one pass (`fuse_fp8_gated_outputs`), reading the attention output once where
        compiled it took a transposing copy and two more reads.
    fused_norms: with `compile`, each RMS norm of the blocks is computed with its modulation, the residual add before
        it and, where its rows feed row-wise fp8 products, their input scales, in one pass of a Triton kernel
        (`fused_norms.FusedNormsPass`, a custom pass over each compiled block's graph), where inductor loops over
        each row of 4,096 values once per dependent reduction. Outputs within bf16 rounding of the unfused ones (on
        CUDA the scale's inverse, as for `fp8_row_kernel`). It pays with fp8 products; on bf16 products the forward
        takes about as long, and its deviation from eager is lower (one rounding to bf16 where inductor rounds twice).
    forward_graph: on CUDA, the transformer's whole forward recorded as one CUDA graph per call signature (shapes,
        the other arguments, the LoRA state) and replayed (`forward_graphs`), instead of `cuda_graphs`' graph per
        block with the CPU launching and copying between them. The first pass of each signature runs as usual and
        is recorded; the graphs hold one more copy of the forward's activations. Not with `cuda_graphs` (a graph
        cannot hold torch.compile's own), nor with the "fp8-storage" and "16gb" memory modes (their hooks move and
        cast weights during the forward; "24gb" holds its fp8 weights in its own layers, without hooks). Elsewhere
        than CUDA the forward runs as usual. Outputs unchanged; it pays most at small sizes (stage 1), where launches
        and copies weigh most.

    What each option gains, and its deviation from eager bf16, is measured in benchmarks/RESULTS.md.
    """

    compile: bool = False
    attention_backend: str | None = None
    fp8: bool = False
    fp8_scaling: str = "rowwise"
    video_attention_backend: str | None = None
    cuda_graphs: bool = False
    gelu_epilogue: bool = False
    fused_rotary: bool = False
    compile_vae: bool = False
    fp8_row_kernel: bool = False
    fused_norms: bool = False
    forward_graph: bool = False

    def __post_init__(self) -> None:
        if self.forward_graph and self.cuda_graphs:
            raise ValueError(
                "`forward_graph=True` records the whole forward as one CUDA graph, which cannot hold the per-block "
                "graphs of `cuda_graphs=True`: set one of them."
            )
        if self.cuda_graphs and not self.compile:
            raise ValueError("`cuda_graphs=True` needs `compile=True` (the graphs are recorded by torch.compile).")
        if self.fp8_row_kernel and not (self.fp8 and self.fp8_scaling == "rowwise"):
            raise ValueError(
                "`fp8_row_kernel=True` needs `fp8=True` with `fp8_scaling='rowwise'`; got "
                f"fp8={self.fp8}, fp8_scaling={self.fp8_scaling!r}."
            )
        if self.fused_norms and not self.compile:
            raise ValueError("`fused_norms=True` needs `compile=True` (it is a pass over the compiled graphs).")
        valid_backends = [backend.value for backend in AttentionBackendName]
        for name in ("attention_backend", "video_attention_backend"):
            value = getattr(self, name)
            if value is not None and value not in valid_backends:
                raise ValueError(f"`{name}` must be None or one of {', '.join(valid_backends)}; got {value!r}.")
        if self.fp8_scaling not in FP8_SCALINGS:
            raise ValueError(f"`fp8_scaling` must be one of {', '.join(FP8_SCALINGS)}; got {self.fp8_scaling!r}.")


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """The `SpeedOptions` flags, shared by the command line and the studio."""
    parser.add_argument("--compile", action="store_true", help="regional torch.compile of the transformer blocks")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="with --compile: replay each block as a CUDA graph (faster small sizes)",
    )
    parser.add_argument("--attention-backend", default=None, help="a diffusers attention backend, e.g. _native_cudnn")
    parser.add_argument(
        "--video-attention-backend",
        default=None,
        help="an attention backend for the video self-attention alone (the others keep --attention-backend)",
    )
    parser.add_argument("--fp8", action="store_true", help="fp8 matrix products in the transformer (Hopper GPUs)")
    parser.add_argument(
        "--gelu-epilogue",
        action="store_true",
        help="each feed-forward's first product and its GELU as one cuBLASLt call (CUDA; not on fp8 layers)",
    )
    parser.add_argument(
        "--fused-rotary",
        action="store_true",
        help="rotary embedding computed out of place, so compiled blocks fuse it with the query/key norms",
    )
    parser.add_argument(
        "--compile-vae",
        action="store_true",
        help="torch.compile the video VAE's decoder (compiled at each new size; not with --memory-mode 24gb or 16gb)",
    )
    parser.add_argument(
        "--fp8-row-kernel",
        action="store_true",
        help="with --fp8: each feed-forward's bias, GELU and fp8 scales in one pass (a Triton kernel on CUDA); "
        "with --fused-rotary also each gated attention output's gating and fp8 scales",
    )
    parser.add_argument(
        "--fused-norms",
        action="store_true",
        help="with --compile: each norm, its modulation, the residual add before it (and with --fp8 the fp8 scales) "
        "in one pass (a Triton kernel)",
    )
    parser.add_argument(
        "--forward-graph",
        action="store_true",
        help="replay the transformer's whole forward as one CUDA graph per input shape (instead of --cuda-graphs)",
    )


def speed_options_from_args(args: argparse.Namespace) -> SpeedOptions:
    """`SpeedOptions` from the flags of `add_speed_arguments`; a ValueError names a bad combination."""
    return SpeedOptions(
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        attention_backend=args.attention_backend,
        video_attention_backend=args.video_attention_backend,
        fp8=args.fp8,
        gelu_epilogue=args.gelu_epilogue,
        fused_rotary=args.fused_rotary,
        compile_vae=args.compile_vae,
        fp8_row_kernel=args.fp8_row_kernel,
        fused_norms=args.fused_norms,
        forward_graph=args.forward_graph,
    )


# --- fp8 matrix products ------------------------------------------------------------------------------------------


class Fp8Linear(nn.Module):
    """A Linear layer computed as an fp8 x fp8 product with float32 scales, accumulated in float32.

    The output has the input's dtype (bf16 in the product's GPU modes).

    The weight is quantized once (per output channel or per tensor); each input is quantized on the fly with the
    same granularity (per token or per tensor). On a GPU with fp8 tensor cores (Hopper, Ada) `torch._scaled_mm`
    runs the product there; elsewhere `emulate=True` computes the same quantized product in float32.
    """

    def __init__(self, linear: nn.Linear, scaling: str = "rowwise", emulate: bool = False) -> None:
        super().__init__()
        if scaling not in FP8_SCALINGS:
            raise ValueError(f"`scaling` must be one of {', '.join(FP8_SCALINGS)}; got {scaling!r}.")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.scaling = scaling
        self.emulate = emulate
        weight_fp8, weight_scale = quantize_to_fp8(linear.weight, scaling)
        # Frozen parameters, not buffers: diffusers' group offloading with streams (the "16gb" mode on a GPU) takes
        # a group's buffers to the GPU but never back, so every block's fp8 weights stayed resident (run 37).
        self.weight_fp8 = nn.Parameter(weight_fp8, requires_grad=False)  # (out_features, in_features)
        # _scaled_mm wants the second operand's scale as (1, out_features) for row-wise scaling.
        self.weight_scale = nn.Parameter(
            weight_scale.reshape(1, -1) if scaling == "rowwise" else weight_scale, requires_grad=False
        )
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        leading_shape = hidden_states.shape[:-1]
        inputs = hidden_states.reshape(-1, self.in_features)  # (..., in) -> (tokens, in)
        output = self.product(*self.quantize_input(inputs), hidden_states.dtype)
        return output.reshape(*leading_shape, self.out_features)

    def quantize_input(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, in) -> their fp8 values and scales, as `product` takes them."""
        return quantize_to_fp8(inputs, self.scaling)

    def product(
        self, inputs_fp8: torch.Tensor, input_scale: torch.Tensor, dtype: torch.dtype, add_bias: bool = True
    ) -> torch.Tensor:
        """The quantized product: (tokens, in) fp8 values and their scales -> (tokens, out) in `dtype`."""
        if self.emulate:
            product = (inputs_fp8.float() * input_scale) @ (
                self.weight_fp8.float() * self.weight_scale.reshape(-1, 1)
            ).T
            output = product.to(dtype)
        else:
            # The weight is stored (out, in) row-major, so its transpose is the column-major operand cuBLAS wants.
            output = torch._scaled_mm(
                inputs_fp8, self.weight_fp8.T, scale_a=input_scale, scale_b=self.weight_scale, out_dtype=dtype
            )
        if add_bias and self.bias is not None:
            output = output + self.bias.to(output.dtype)
        return output

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scaling={self.scaling}"


def _drop_hooks(module: nn.Module) -> None:
    """Removes diffusers' hooks from a module that was just replaced. They point back at it (its registry, and the
    `forward` they wrap), so the replaced layer and its weight would otherwise wait for Python's cycle collector
    instead of being freed at once: the "fp8-storage" mode's casting hooks are on every layer `fp8=True` replaces."""
    registry = module.__dict__.pop("_diffusers_hook", None)
    if registry is not None:  # (its `remove_hook` refuses a layerwise-casting hook, so the links are cut here)
        for hook in registry.hooks.values():
            hook.fn_ref = None
        registry.hooks.clear()
        registry._fn_refs.clear()
        registry._module_ref = None
    module.__dict__.pop("forward", None)


def fp8_matmul_supported(device: torch.device | str) -> bool:
    """True where `torch._scaled_mm` runs on fp8 tensor cores: CUDA devices of compute capability 8.9 or newer."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 9)


def _fp8_eligible(name: str, module: nn.Module) -> bool:
    # Only the repeated blocks' video-side projections: they hold ~all of the FLOPs. Embeddings, modulation and the
    # output projection stay in bf16, and so do the tiny attention gates (precision matters more than speed there)
    # and the audio stream's layers (too few tokens for fp8 to pay, see constants.FP8_SKIP_LINEAR_PARTS).
    return (
        isinstance(module, nn.Linear)
        and not isinstance(module, Fp8StorageLinear)  # already fp8: its weights are quantized once
        and "transformer_blocks." in name
        and ".lora_" not in name  # a LoRA's own matrices: PEFT reads their `weight`, and they are small
        and not name.endswith(constants.FP8_SKIP_LINEAR_SUFFIXES)
        and not any(part in name for part in constants.FP8_SKIP_LINEAR_PARTS)
        and module.in_features % constants.FP8_FEATURE_MULTIPLE == 0
        and module.out_features % constants.FP8_FEATURE_MULTIPLE == 0
    )


def _replace_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    # setattr with the last name part also replaces an entry of a ModuleList or Sequential ("net.0").
    parent_name, _, child_name = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child_name, module)


def quantize_linear_layers_to_fp8(
    model: nn.Module, scaling: str = "rowwise", emulate: bool | None = None, device: torch.device | str | None = None
) -> int:
    """Replace the eligible Linear layers of `model`'s repeated blocks by `Fp8Linear`, in place.

    Frees each bf16 weight as its fp8 copy is made. With `device`, each layer is moved there and quantized there
    (a GPU quantizes fast; the rest of the model stays where it is, for a memory mode to place). `emulate=None` uses
    the fp8 kernels where the layers' device has them and the float32 emulation elsewhere. Returns the number of
    layers replaced.
    """
    if emulate is None:
        emulate = not fp8_matmul_supported(device if device is not None else next(model.parameters()).device)
    # Names, not modules: a list of the modules would keep every bf16 weight alive until the last layer is done
    # (on an 80 GB card the full-size transformer's in-place quantization then ran out of memory, run 36).
    targets = [name for name, module in model.named_modules() if _fp8_eligible(name, module)]
    for name in targets:
        linear = model.get_submodule(name)
        if device is not None:
            linear = linear.to(device)
        _replace_submodule(model, name, Fp8Linear(linear, scaling=scaling, emulate=emulate))
        _drop_hooks(linear)
        del linear
    logger.info(
        "Replaced %d Linear layers with fp8 products (%s scaling, emulate=%s).", len(targets), scaling, emulate
    )
    return len(targets)


# --- fp8 weight storage without hooks -----------------------------------------------------------------------------


class Fp8StorageLinear(nn.Linear):
    """A Linear layer whose weight is stored in float8 e4m3 with one float32 scale per output channel, dequantized
    to the input's dtype inside its own forward, then an ordinary product.

    Half the memory of a bf16 weight, and, unlike diffusers' layerwise-casting hook (which builds an `nn.Parameter`
    in a hook around the forward), a pure function of the module's buffers: torch.compile traces it, fusing the
    dequantization into one pass, and a CUDA graph can replay it. The per-channel scale keeps each row's largest
    weight at e4m3's largest value, so small weights keep their precision (the hook casts without a scale).

    An `nn.Linear` to PEFT, as bitsandbytes' and torchao's quantized Linears are, so that a LoRA loaded after the
    "24gb" mode wraps it like any Linear; its `compute_dtype` (the attribute PEFT reads for those layers) keeps the
    adapter's matrices in bf16 beside it rather than in the stored float8.
    """

    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16) -> None:
        nn.Module.__init__(self)  # not nn.Linear's: it would allocate a full-precision weight
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.compute_dtype = compute_dtype
        weight_fp8, weight_scale = quantize_to_fp8(linear.weight, "rowwise")
        self.register_buffer("weight_fp8", weight_fp8)  # (out_features, in_features)
        self.register_buffer("weight_scale", weight_scale)  # (out_features, 1), float32
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(compute_dtype), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The stored float8 values, without their scales: where and how the weight is stored, for code that looks
        a Linear's weight up for that (PEFT places adapters on its device). The weight as computed is
        `dequantized_weight`; nothing may be added to this one (a LoRA fused into it would lose its precision)."""
        return self.weight_fp8

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The (out_features, in_features) weight in `dtype`: each fp8 value (exact in bf16) times its row's scale,
        computed in `dtype` (compiled, one pass reading 1 byte and writing 2 per weight in bf16)."""
        return self.weight_fp8.to(dtype) * self.weight_scale.to(dtype)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(hidden_states.dtype)
        return F.linear(hidden_states, self.dequantized_weight(hidden_states.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weights in float8 e4m3"


def _fp8_storage_skip_patterns(model: nn.Module) -> tuple[str, ...]:
    """The module-name patterns diffusers' layerwise casting leaves in bf16 for `model` (its defaults, the model's own
    `_skip_layerwise_casting_patterns`, and PEFT's adapter layers), so that both kinds of fp8 storage store the same
    layers."""
    patterns = (*DEFAULT_SKIP_MODULES_PATTERN, *(getattr(model, "_skip_layerwise_casting_patterns", None) or ()))
    return (*patterns, "lora_")


def store_linear_weights_in_fp8(
    model: nn.Module, device: torch.device | str | None = None, compute_dtype: torch.dtype = torch.bfloat16
) -> int:
    """Replace each plain Linear layer of `model` (not `Fp8Linear`s, not the layers diffusers' fp8 storage leaves in
    bf16: norms, patchify projections, LoRA adapters) by an `Fp8StorageLinear` on `device`, in place.

    One layer at a time: each is moved to `device` (a GPU quantizes fast) and quantized there, and its bf16 weight
    freed, so a model loaded in CPU memory needs about its fp8 size on the device. Returns the number replaced.
    """
    patterns = _fp8_storage_skip_patterns(model)
    targets = [
        name
        for name, module in model.named_modules()
        if type(module) is nn.Linear and not any(re.search(pattern, name) for pattern in patterns)
    ]
    for name in targets:
        linear = model.get_submodule(name)
        if device is not None:
            linear = linear.to(device)
        _replace_submodule(model, name, Fp8StorageLinear(linear, compute_dtype))
        _drop_hooks(linear)
    logger.info("Stored the weights of %d Linear layers in fp8 (per-channel scales).", len(targets))
    return len(targets)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of `model`'s parameters and buffers as placed (fp8 weights at 1 byte each), without touching them
    (works on the meta device)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


# --- Feed-forward GELU in the matrix product's epilogue -----------------------------------------------------------


class LinearTanhGelu(nn.Module):
    """A diffusers `GELU(approximate="tanh")` activation module (a feed-forward's `net[0]`) as one cuBLASLt call.

    diffusers computes `gelu(proj(x))` in two passes over the 4x-wide product: the matrix product writes it, then a
    separate kernel (a Triton one when compiled) reads and rewrites it. On CUDA, `torch._addmm_activation(...,
    use_gelu=True)` applies the tanh-approximate GELU in cuBLASLt's epilogue (CUBLASLT_EPILOGUE_GELU_BIAS), and
    inductor keeps that op as an extern call, so the fusion survives `torch.compile`.

    The module holds the GELU's own `proj` Linear under the same name, so state dicts, LoRA loading, offloading and
    layerwise-casting hooks find it where they did; the "24gb" mode's `Fp8StorageLinear` there keeps the epilogue
    (its weight dequantized, then the one call).
    """

    def __init__(self, gelu: GELU) -> None:
        super().__init__()
        if not _is_fusable_gelu(gelu):
            raise ValueError(
                "`gelu` must be a diffusers GELU with approximate='tanh' and a plain nn.Linear or Fp8StorageLinear "
                f"`proj`; got {type(gelu).__name__} with approximate={getattr(gelu, 'approximate', None)!r} and "
                f"proj={type(getattr(gelu, 'proj', None)).__name__}."
            )
        self.proj = gelu.proj

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self._runs_in_epilogue(hidden_states):
            # diffusers' GELU.forward; its float32 upcast on mps is for torch < 2.0, which this project does not run.
            return F.gelu(self.proj(hidden_states), approximate="tanh")
        proj = self.proj
        weight = proj.weight if type(proj) is nn.Linear else proj.dequantized_weight(hidden_states.dtype)
        leading_shape = hidden_states.shape[:-1]
        inputs = hidden_states.reshape(-1, proj.in_features)  # (..., in) -> (tokens, in)
        output = torch._addmm_activation(proj.bias, inputs, weight.t(), use_gelu=True)
        return output.reshape(*leading_shape, proj.out_features)  # (tokens, out) -> (..., out)

    def _runs_in_epilogue(self, hidden_states: torch.Tensor) -> bool:
        """Whether the product can bypass the Linear's own forward: only where that forward is a plain product (of
        the weight as stored, or of an `Fp8StorageLinear`'s dequantized weight)."""
        proj = self.proj
        if type(proj) is nn.Linear:
            # Weights stored in another dtype (fp8-storage) or on another device (offloading) are cast or moved by
            # the Linear's forward hooks, which calling it runs.
            stored_as_computed = (
                proj.weight.dtype == hidden_states.dtype and proj.weight.device == hidden_states.device
            )
        elif type(proj) is Fp8StorageLinear:
            stored_as_computed = proj.weight_fp8.device == hidden_states.device
        else:
            return False  # a LoRA or fp8-product layer swapped in since runs its own forward
        return (
            hidden_states.is_cuda  # on the CPU the same call computes the exact (erf) GELU, not the tanh one
            and proj.bias is not None  # the epilogue is GELU_BIAS
            and proj.bias.dtype == hidden_states.dtype
            and stored_as_computed
            # torch._addmm_activation has no derivative.
            and not (torch.is_grad_enabled() and (hidden_states.requires_grad or _requires_grad(proj)))
        )

    def extra_repr(self) -> str:
        return "approximate=tanh, GELU in the product's epilogue on CUDA"


def _requires_grad(module: nn.Module) -> bool:
    return any(parameter.requires_grad for parameter in module.parameters())


def _is_fusable_gelu(module: nn.Module) -> bool:
    # cuBLASLt's GELU epilogue is the tanh approximation. A plain Linear (or its fp8-stored form) only:
    # `torch._scaled_mm` (Fp8Linear) has no GELU epilogue, and LoRA or other Linear subclasses have forwards of their
    # own.
    return (
        isinstance(module, GELU)
        and module.approximate == "tanh"
        and type(module.proj) in (nn.Linear, Fp8StorageLinear)
    )


def fuse_feed_forward_gelu(model: nn.Module) -> int:
    """Replace each tanh `GELU` activation module of `model` whose `proj` is a plain Linear by `LinearTanhGelu`.

    In place; the Linear layers themselves are kept, not copied. Replaced modules are no longer `GELU`s, so a
    second call replaces none. Returns the number of modules replaced.
    """
    targets = [name for name, module in model.named_modules() if name and _is_fusable_gelu(module)]
    for name in targets:
        _replace_submodule(model, name, LinearTanhGelu(model.get_submodule(name)))
    logger.info("Fused the GELU into the first product of %d feed-forwards.", len(targets))
    return len(targets)


class Fp8GeluFeedForward(nn.Module):
    """A diffusers `FeedForward` (tanh GELU) whose two products are `Fp8Linear`s, with the first product's bias, the
    GELU and the second product's input scales in one pass over the 4x-wide hidden state.

    Unfused, the first product's output goes through memory three times before the second product reads it: the
    bias add and GELU (bf16), then, compiled, inductor's row reduction for the scales and the fp8 cast, which loops
    over each row of the hidden state once per reduction. Here the first product writes its bf16 output once and
    `fp8_kernels.quantize_rows` reads it once, adding the bias and applying the GELU in float32 (no bf16 rounding
    between them, so outputs differ from the unfused ones within that rounding).

    The module holds the feed-forward's `net` under the same name (`net.0.proj`, `net.2`), so state dicts and hooks
    find the layers where they were.
    """

    def __init__(self, feed_forward: nn.Module) -> None:
        super().__init__()
        if not _is_fusable_fp8_feed_forward(feed_forward):
            net = getattr(feed_forward, "net", None)
            raise ValueError(
                "`feed_forward` must be a diffusers FeedForward of a tanh GELU around a row-wise Fp8Linear, a Dropout "
                "of 0 and a row-wise Fp8Linear; got "
                f"{type(feed_forward).__name__} with net {[type(module).__name__ for module in net or []]}."
            )
        self.net = feed_forward.net

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        up, down = self.net[0].proj, self.net[2]
        leading_shape = hidden_states.shape[:-1]
        inputs = hidden_states.reshape(-1, up.in_features)  # (..., dim) -> (tokens, dim)
        hidden = up.product(*up.quantize_input(inputs), hidden_states.dtype, add_bias=False)  # (tokens, inner)
        output = down.product(*quantize_rows(hidden, bias=up.bias, gelu=True), hidden_states.dtype)
        return output.reshape(*leading_shape, down.out_features)  # (tokens, dim) -> (..., dim)


def _is_fusable_fp8_feed_forward(module: nn.Module) -> bool:
    net = getattr(module, "net", None)
    return (
        isinstance(module, FeedForward)
        and len(net) == 3
        and isinstance(net[0], GELU)
        and net[0].approximate == "tanh"
        and isinstance(net[0].proj, Fp8Linear)
        and net[0].proj.scaling == "rowwise"
        and isinstance(net[1], nn.Dropout)
        and net[1].p == 0
        and isinstance(net[2], Fp8Linear)
        and net[2].scaling == "rowwise"
    )


def fuse_fp8_feed_forwards(model: nn.Module) -> int:
    """Replace each feed-forward of `model` whose two products are row-wise `Fp8Linear`s by `Fp8GeluFeedForward`,
    in place (the layers are kept, not copied). Returns the number replaced."""
    targets = [name for name, module in model.named_modules() if name and _is_fusable_fp8_feed_forward(module)]
    for name in targets:
        _replace_submodule(model, name, Fp8GeluFeedForward(model.get_submodule(name)))
    logger.info("Fused bias, GELU and fp8 scales between the products of %d feed-forwards.", len(targets))
    return len(targets)


def fuse_fp8_gated_outputs(model: nn.Module) -> int:
    """Turn on `fp8_gated_output` in each `OutOfPlaceRotaryAttnProcessor` (`fused_rotary`) of `model` whose attention
    has gates and a row-wise `Fp8Linear` out-projection: the gating and that product's fp8 scales in one pass.
    Returns the number turned on."""
    fused = 0
    for module in model.modules():
        if not (isinstance(module, LTX2Attention) and isinstance(module.processor, OutOfPlaceRotaryAttnProcessor)):
            continue
        out = module.to_out[0]
        if module.to_gate_logits is not None and isinstance(out, Fp8Linear) and out.scaling == "rowwise":
            module.processor.fp8_gated_output = True
            fused += 1
    logger.info("Gating and fp8 scales of %d attention outputs in one pass.", fused)
    return fused


# --- Applying the options to a pipeline ---------------------------------------------------------------------------


def _components(target: object) -> dict[str, object]:
    """The named components of a pipeline (its `components` and the `OPTIONAL_COMPONENTS` it holds), a dict of
    components, or {"transformer": model}."""
    if isinstance(target, Mapping):
        return dict(target)
    if hasattr(target, "components"):
        components = dict(target.components)
        for name in OPTIONAL_COMPONENTS:  # held beside the registered components, placed with them
            if isinstance(module := getattr(target, name, None), nn.Module):
                components[name] = module
        return components
    if isinstance(target, nn.Module):
        return {"transformer": target}
    raise ValueError(
        f"`pipe` must be a diffusers pipeline, a dict of components or a transformer; got {type(target).__name__}."
    )


def _modules(components: dict[str, object]) -> Iterator[tuple[str, nn.Module]]:
    for name, component in components.items():
        if isinstance(component, nn.Module):
            yield name, component


ROTARY_EMBEDDINGS = ("rope", "audio_rope", "cross_attn_rope", "cross_attn_audio_rope")


def rotary_embeddings(transformer: nn.Module) -> list[nn.Module]:
    """The LTX-2 transformer's rotary-embedding modules (video, audio, and the two of the cross-modal attentions)."""
    return [module for name in ROTARY_EMBEDDINGS if isinstance(module := getattr(transformer, name, None), nn.Module)]


def apply_speed_options(pipe: object, options: SpeedOptions, fp8_device: torch.device | str | None = None) -> None:
    """Apply `options` to the transformer of `pipe` (a pipeline, a dict of components or the transformer itself), and
    `compile_vae` to its video VAE. `fp8_device`: where the fp8 layers are made (`quantize_linear_layers_to_fp8`'s
    `device`; default: where the transformer is).

    Order matters: the attention backend, the fp8 layers and the fused feed-forwards are set first, so that
    compilation sees them; the feed-forwards are fused after the fp8 layers are made, so those are left alone.
    """
    components = _components(pipe)
    transformer, vae = components.get("transformer"), components.get("vae")
    if not isinstance(transformer, nn.Module):
        raise ValueError("`pipe` has no `transformer` component to apply speed options to.")
    if options.compile_vae and not isinstance(getattr(vae, "decoder", None), nn.Module):
        raise ValueError(
            f"`compile_vae=True` needs a `vae` component with a decoder; `pipe` has {sorted(components)}."
        )
    if options.fused_rotary:
        swapped = use_out_of_place_rotary(transformer)
        logger.info("Out-of-place rotary embedding in %d attentions.", swapped)
    if options.attention_backend is not None:
        try:
            transformer.set_attention_backend(options.attention_backend)
        except (RuntimeError, ImportError) as error:
            raise _backend_error("attention_backend", options.attention_backend, error) from error
    if options.video_attention_backend is not None:
        backend = options.video_attention_backend
        try:
            _check_attention_backend_requirements(AttentionBackendName(backend))
        except (RuntimeError, ImportError) as error:
            raise _backend_error("video_attention_backend", backend, error) from error
        for block in transformer.transformer_blocks:
            block.attn1.set_attention_backend(backend)
    if options.fp8:
        if _is_group_offload_enabled(transformer):
            # Group offloading moves the parameters it found when it was set up; new fp8 layers would stay behind.
            raise ValueError(
                "`fp8=True` cannot be applied to a transformer that already streams its weights (memory mode '16gb'): "
                "apply the speed options before the memory mode, or use memory mode 'fp8-storage' or 'full-gpu-bf16'."
            )
        quantize_linear_layers_to_fp8(transformer, scaling=options.fp8_scaling, device=fp8_device)
        if options.fp8_row_kernel:
            fuse_fp8_feed_forwards(transformer)
            fuse_fp8_gated_outputs(transformer)
    if options.gelu_epilogue:
        fuse_feed_forward_gelu(transformer)
    if options.compile:
        if options.fused_norms:  # torch.compile takes a mode or options, not both: "reduce-overhead" is the graphs
            compile_options = {
                "post_grad_custom_post_pass": FusedNormsPass(),
                "triton.cudagraphs": options.cuda_graphs,
            }
            transformer.compile_repeated_blocks(fullgraph=True, options=compile_options)
        else:
            transformer.compile_repeated_blocks(
                fullgraph=True, mode="reduce-overhead" if options.cuda_graphs else None
            )
        if options.cuda_graphs:
            for module in rotary_embeddings(transformer):
                module.compile(mode="reduce-overhead")
    if options.forward_graph or forward_graphs.enabled(transformer):
        forward_graphs.enable(transformer)  # anew: graphs recorded before would replay the modules replaced above
    if options.compile_vae:
        # Static shapes: the few sizes a pipeline decodes each get their own graph rather than one dynamic-shape one.
        vae.decoder.compile(dynamic=False)
    logger.info("Speed options applied: %s", options)


def _backend_error(name: str, backend: str, error: Exception) -> ValueError:
    return ValueError(
        f"`{name}` {backend!r} cannot run here ({error}); available: {', '.join(available_attention_backends())}."
    )


def decoder_spatial_upscale(vae: nn.Module) -> int:
    """Pixels per latent along height and width that the video VAE's decoder really produces."""
    factor = vae.config.patch_size
    for block in vae.decoder.up_blocks:
        for upsampler in block.upsamplers or []:
            factor *= upsampler.stride[1]
    return factor


def enable_vae_tiling(vae: nn.Module) -> bool:
    """Spatially tiled VAE decode with diffusers' default tiles (512 px, stride 448 px), where it is exact in size.

    diffusers sizes its tiles with `vae.spatial_compression_ratio`. An LTX-2.3 VAE built without
    `spatial_compression_ratio=32` in its config derives 64 from its four spatio-temporal stages (one of which only
    upsamples time), and the tiled decode then returns frames of the wrong size (864x576 for 768x512). Tiling is
    enabled only when the ratio matches the decoder; returns whether it was enabled.
    """
    upscale = decoder_spatial_upscale(vae)
    if vae.spatial_compression_ratio != upscale:
        logger.warning(
            "VAE tiling left off: the VAE's spatial_compression_ratio is %d but its decoder upsamples by %d, so tiled "
            "decoding would return frames of the wrong size. Load the VAE with spatial_compression_ratio=%d.",
            vae.spatial_compression_ratio,
            upscale,
            upscale,
        )
        return False
    vae.enable_tiling()
    return True


def apply_memory_mode(pipe: object, mode: "str | MemoryMode", device: torch.device | str) -> MemoryMode:
    """Place `pipe`'s components for memory `mode` (a name or a `MemoryMode`) on `device`; returns the mode.

    - "full-gpu-bf16": every component on `device`, in bf16 (vocoder in float32).
    - "fp8-storage": as above, with the transformer's, connectors' and text encoder's layer weights stored in float8
      e4m3 and cast to bf16 just before each layer runs (diffusers layerwise casting).
    - "24gb": the transformer resident on `device`, its Linear layers `Fp8StorageLinear`s (float8 weights with
      per-channel scales, dequantized in their own forward: it compiles), its other weights in bf16; every other
      component's weights in CPU memory (the connectors' and text encoder's in float8), streamed to `device` layer by
      layer, the next prefetched on a side stream while the current one computes (diffusers group offloading); tiled
      VAE decode.
    - "16gb": fp8 storage as "fp8-storage", every component streamed, the transformer group by group of blocks.
    LTX-2.5's diffusion decoder and duration head, where the pipeline holds them, are placed like the VAE. Each
    mode's declaration is `PLACEMENTS[mode]`.
    """
    mode = MemoryMode.from_name(mode)
    placement = PLACEMENTS[mode]
    device = torch.device(device)
    components = _components(pipe)
    for name, module in _modules(components):
        target = torch.device("cpu") if name in placement.streamed else device
        if name in placement.fp8_layers:  # layer by layer onto the device: it never holds the bf16 weights
            store_linear_weights_in_fp8(module, target)
        if target.type != "cpu":  # cast on the GPU (fast), after the move
            module.to(device=target)
        if name in BF16_COMPONENTS + FLOAT32_COMPONENTS:
            _cast_floating_weights(module, torch.float32 if name in FLOAT32_COMPONENTS else torch.bfloat16)
        if name in placement.fp8_storage:
            _store_in_fp8(module)
        if target.type == "cpu":  # cast where the weights are (a GPU, if built there), then move the smaller copy
            module.to(device=target)
        _use_fp8_products_on(module, device)
    use_stream = device.type == "cuda"
    for name, module in _modules(components):
        if name not in placement.streamed:
            continue
        if name == "transformer":
            module.enable_group_offload(
                onload_device=device,
                offload_type="block_level",
                num_blocks_per_group=1 if use_stream else constants.OFFLOAD_TRANSFORMER_BLOCKS_PER_GROUP,
                use_stream=use_stream,
            )
        else:
            # leaf level: each layer is its own group, so even the 12B text encoder needs little GPU memory.
            apply_group_offloading(module, onload_device=device, offload_type="leaf_level", use_stream=use_stream)
    if placement.tiled_vae:
        if isinstance(components.get("vae"), nn.Module):
            enable_vae_tiling(components["vae"])
        if hasattr(components.get("diffusion_decoder"), "enable_tiling"):
            components["diffusion_decoder"].enable_tiling()
    logger.info("Memory mode %r applied on %s.", mode.value, device)
    return mode


def _use_fp8_products_on(module: nn.Module, device: torch.device) -> None:
    """Point `module`'s `Fp8Linear`s at the fp8 kernels where `device` has them (the float32 emulation elsewhere):
    the streaming modes make them before the weights reach the device, where they were told to emulate."""
    emulate = not fp8_matmul_supported(device)
    for submodule in module.modules():
        if isinstance(submodule, Fp8Linear):
            submodule.emulate = emulate


def _cast_floating_weights(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast a module's floating parameters and buffers to `dtype` where its parameters are not all `dtype` already.

    fp8 layers (`Fp8Linear` swapped in by `SpeedOptions(fp8=True)`, `Fp8StorageLinear` by the "24gb" mode) keep their
    float8 weights and float32 scales.
    """
    plain = [submodule for submodule in module.modules() if not isinstance(submodule, (Fp8Linear, Fp8StorageLinear))]
    if all(
        parameter.dtype == dtype
        for submodule in plain
        for parameter in submodule._parameters.values()
        if parameter is not None and parameter.element_size() > 1
    ):
        return  # e.g. loaded in bf16: leave float32 buffers such as rotary frequencies alone
    for submodule in plain:
        for parameter in submodule._parameters.values():
            if parameter is not None and parameter.is_floating_point() and parameter.element_size() > 1:
                parameter.data = parameter.data.to(dtype)
        for key, buffer in submodule._buffers.items():
            if buffer is not None and buffer.is_floating_point() and buffer.element_size() > 1:
                submodule._buffers[key] = buffer.to(dtype)


def _store_in_fp8(module: nn.Module) -> None:
    if hasattr(module, "enable_layerwise_casting"):  # diffusers models know which of their layers to leave alone
        module.enable_layerwise_casting(storage_dtype=FP8_DTYPE, compute_dtype=torch.bfloat16)
    else:  # the transformers text encoder: Linear layers only, norms and embeddings untouched
        apply_layerwise_casting(
            module,
            storage_dtype=FP8_DTYPE,
            compute_dtype=torch.bfloat16,
            skip_modules_pattern=constants.FP8_STORAGE_SKIP_PATTERNS,
        )
    declare_compute_dtypes(module)


def declare_compute_dtypes(module: nn.Module) -> None:
    """Give each layer of `module` whose weights diffusers' layerwise-casting hook stores in another dtype a
    `compute_dtype` attribute: the dtype its hook computes in.

    PEFT places a LoRA adapter in its base layer's weight dtype unless that layer declares a `compute_dtype` (as
    bitsandbytes' 4-bit layers do): an adapter loaded after the fp8 storage (a LoRA picked per run in the
    "fp8-storage", "24gb" and "16gb" modes) would otherwise be cast to float8, which PEFT's forward cannot compute
    with. Declared, it stays in the compute dtype; the base layer's stored weights are not touched.
    """
    for submodule in module.modules():
        registry = getattr(submodule, "_diffusers_hook", None)
        hook = None if registry is None else registry.get_hook(LAYERWISE_CASTING_HOOK)
        if hook is not None:
            submodule.compute_dtype = hook.compute_dtype


def check_speed_for_memory_mode(speed: SpeedOptions, memory_mode: "str | MemoryMode | None") -> None:
    """Raises ValueError for speed options that `memory_mode` cannot take (checked before any model is loaded).

    Compiled blocks, per-block and whole-forward CUDA graphs need a transformer without hooks: every mode but
    "fp8-storage" (its layerwise-casting hook builds an `nn.Parameter` in each layer's forward, which torch.compile's
    full-graph capture refuses) and "16gb" (its offloading hooks move each group of blocks' weights onto the GPU).
    """
    if memory_mode is None:
        return
    mode = MemoryMode.from_name(memory_mode)
    placement = PLACEMENTS[mode]
    if speed.compile_vae and placement.tiled_vae:
        raise ValueError(
            f"`compile_vae=True` cannot be combined with memory mode {mode.value!r} (its VAE streams its weights "
            "layer by layer and decodes in tiles); use memory mode 'fp8-storage' or 'full-gpu-bf16', or leave "
            "compile_vae off."
        )
    if not placement.hooks_transformer():
        return
    why = (
        "its transformer streams its weights onto the GPU in hooks around each group of blocks"
        if "transformer" in placement.streamed
        else "its fp8 storage casts each layer's weights in a hook that torch.compile's full-graph capture cannot "
        "trace"
    )
    if speed.compile:
        raise ValueError(
            f"`compile=True` cannot be combined with memory mode {mode.value!r} ({why}); use memory mode '24gb' or "
            "'full-gpu-bf16', or leave compile off (fp8=True still gives fp8 products)."
        )
    if speed.forward_graph:
        raise ValueError(
            f"`forward_graph=True` cannot be combined with memory mode {mode.value!r} ({why}, which a CUDA graph "
            "cannot replay); use memory mode '24gb' or 'full-gpu-bf16', or leave forward_graph off."
        )


def use_expandable_segments() -> bool:
    """Lets PyTorch's CUDA allocator grow and shrink its segments page by page (`expandable_segments:True`), unless
    the user's `PYTORCH_CUDA_ALLOC_CONF` / `PYTORCH_ALLOC_CONF` already says; returns whether it is now on.

    The memory modes make their fp8 weights on the GPU layer by layer: each layer's bf16 weight arrives, its fp8 copy
    is made, the bf16 one is freed. With fixed segments the fp8 copies end up scattered through segments whose freed
    space a later, larger allocation cannot use and `empty_cache` cannot return: on an H100 capped at 24 GiB, the
    '24gb' mode held 17.75 GiB of weights and 18.5 GiB of such free space, and the text encoder's 1.9 GiB embedding
    table no longer fit (benchmarks/RESULTS.md, run 37). Segments of pages return what is free."""
    for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        setting = re.search(r"expandable_segments:(\w+)", os.environ.get(name, ""))
        if setting:
            return setting.group(1).lower() == "true"
    setter = getattr(torch._C, "_accelerator_setAllocatorSettings", None)
    try:
        if setter is not None:
            setter("expandable_segments:True")
        else:  # older PyTorch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.cuda.memory._set_allocator_settings("expandable_segments:True")
    except RuntimeError as error:  # e.g. a driver without virtual memory management
        logger.warning("The CUDA allocator keeps fixed segments (%s).", error)
        return False
    logger.info("The CUDA allocator grows and returns its segments page by page (expandable_segments).")
    return True


def place_pipeline(
    pipe: object, device: torch.device | str, memory_mode: "str | MemoryMode | None", speed: SpeedOptions
) -> None:
    """Puts `pipe` on `device` with a memory mode (None: every component as loaded) and speed options.

    The order is the one that works for every combination: fp8 products must be in place before the "24gb" and
    "16gb" modes set up their fp8 storage and offloading (they only cast and stream the weights they find), and
    everywhere else after the mode's casts.
    """
    check_speed_for_memory_mode(speed, memory_mode)
    if speed.compile or speed.compile_vae:
        use_persistent_compile_cache()
    if memory_mode is not None and torch.device(device).type == "cuda":
        use_expandable_segments()
    streamed = memory_mode is not None and bool(PLACEMENTS[MemoryMode.from_name(memory_mode)].streamed)
    if streamed:
        # A resident transformer's fp8 layers are made on the device, layer by layer, as the mode then makes the
        # rest: a model loaded in CPU memory is quantized at the GPU's pace, and never whole in bf16 on the GPU.
        apply_speed_options(pipe, speed, fp8_device=None if streams_transformer(memory_mode) else device)
        apply_memory_mode(pipe, memory_mode, device)
        return
    if memory_mode is None:
        pipe.to(device)
        for name, module in _modules(_components(pipe)):
            if name in OPTIONAL_COMPONENTS:  # not registered with the pipeline, so `pipe.to` leaves them
                module.to(device)
    else:
        apply_memory_mode(pipe, memory_mode, device)
    apply_speed_options(pipe, speed)
