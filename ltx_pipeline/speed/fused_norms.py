"""The video stream's RMS norm, modulation and fp8 scales as one kernel in the compiled transformer blocks.

Each LTX-2 block normalises its video stream four times (before the self-attention, the text cross-attention, the
audio-to-video cross-attention and the feed-forward), modulates it (x * (1 + scale) + shift) and hands it to fp8
products, which need each row's largest magnitude. Compiled, inductor fuses the residual add before a norm, the norm,
the modulation and the fp8 cast into one kernel, but over rows of 4,096 values it loops over each row once per
dependent reduction (mean square, then largest magnitude, then the cast), running well below the memory's rate.

`FusedNormsPass`, given to inductor as its post-grad custom pass, finds those computations in a block's graph (the
same aten ops whatever diffusers' Python looks like: they come from `diffusers.models.normalization.RMSNorm`, the
block's modulation and `acceleration.Fp8Linear`'s quantization) and replaces each with one call of
`modulated_rms_norm`, a custom op running `fp8_kernels.launch_modulated_rms_norm` on CUDA, which holds the row in
registers and reads it once, at the memory's rate for what it moves. The diffusers block's code is not changed or
copied; a graph the pass does not recognise is left as it is. What it gains is measured in benchmarks/RESULTS.md.
"""

import logging
import operator
from dataclasses import dataclass

import torch
from torch import fx
from torch._guards import detect_fake_mode
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
from torch._inductor.pattern_matcher import stable_topological_sort

from . import fp8_kernels
from .fp8_kernels import FP8_DTYPE, FP8_MAX

logger = logging.getLogger(__name__)

aten = torch.ops.aten
prims = torch.ops.prims


@torch.library.custom_op("ltx_pipeline::modulated_rms_norm", mutates_args=())
def modulated_rms_norm(
    hidden: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    eps: float,
    update: torch.Tensor | None,
    update_bias: torch.Tensor | None,
    gate: torch.Tensor | None,
    write_modulated: bool,
    quantize: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`fp8_kernels.modulated_rms_norm_reference` as one op: the Triton kernel with fast math on CUDA, the reference
    elsewhere. Returns (residual stream or an empty tensor without `update`, modulated rows or an empty tensor
    without `write_modulated`, fp8 values (B*T, D) and float32 scales (B*T, 1), or empty tensors without
    `quantize`)."""
    if fp8_kernels.kernel_available(hidden):
        return fp8_kernels.launch_modulated_rms_norm(
            hidden, scale, shift, eps, update, update_bias, gate, write_modulated, fast_math=True, quantize=quantize
        )
    residual, modulated, values, scales = fp8_kernels.modulated_rms_norm_reference(
        hidden, scale, shift, eps, update, update_bias, gate
    )
    return (  # distinct empty tensors: no output may alias another
        residual if update is not None else hidden.new_empty((0,)),
        modulated if write_modulated else hidden.new_empty((0,)),
        values if quantize else hidden.new_empty((0,), dtype=FP8_DTYPE),
        scales if quantize else hidden.new_empty((0,), dtype=torch.float32),
    )


@modulated_rms_norm.register_fake
def _(hidden, scale, shift, eps, update, update_bias, gate, write_modulated, quantize):
    batch, tokens, features = hidden.shape
    return (
        hidden.new_empty(hidden.shape if update is not None else (0,)),
        hidden.new_empty(hidden.shape if write_modulated else (0,)),
        hidden.new_empty((batch * tokens, features) if quantize else (0,), dtype=FP8_DTYPE),
        hidden.new_empty((batch * tokens, 1) if quantize else (0,), dtype=torch.float32),
    )


# --- Recognising the computations in a post-grad graph -----------------------------------------------------------


def _is_call(node: object, target: object, *leading_args: object) -> bool:
    """Whether `node` calls `target` with `leading_args` after its first argument (None matches anything)."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is target):
        return False
    arguments = node.args[1 : 1 + len(leading_args)]
    if len(arguments) != len(leading_args):
        return False
    return all(
        expected is None or argument == expected for argument, expected in zip(arguments, leading_args, strict=True)
    )


def _value(node: fx.Node) -> torch.Tensor | None:
    value = node.meta.get("val") if isinstance(node, fx.Node) else None
    return value if isinstance(value, torch.Tensor) else None


def _before_float_cast(node: object) -> object:
    """What `node` casts to float32 (`tensor.float()`), or `node` itself where it is float32 already (no cast)."""
    return node.args[0] if _is_call(node, prims.convert_element_type.default, torch.float32) else node


@dataclass(frozen=True)
class _Quantization:
    """`quantize_to_fp8(modulated.reshape(-1, D), "rowwise")` as it appears in the graph."""

    modulated: fx.Node  # the (B, T, D) tensor quantized
    rows: fx.Node  # its (B*T, D) view
    values: fx.Node  # the fp8 values
    scales: fx.Node  # the float32 scales (B*T, 1)


def _match_quantization(values: fx.Node) -> _Quantization | None:
    # values = convert(clamp(convert(rows, f32) / scales, -max, max), fp8);
    # scales = clamp_min(amax(convert(abs(rows), f32), [-1], True), MIN_AMAX) / max
    if not _is_call(values, prims.convert_element_type.default, FP8_DTYPE):
        return None
    upper = values.args[0]
    if not _is_call(upper, aten.clamp_max.default, FP8_MAX):
        return None
    lower = upper.args[0]
    if not _is_call(lower, aten.clamp_min.default, -FP8_MAX):
        return None
    scaled = lower.args[0]
    if not _is_call(scaled, aten.div.Tensor):
        return None
    as_float, scales = scaled.args
    if not _is_call(scales, aten.div.Tensor):
        return None
    rows = _before_float_cast(as_float)
    floor = scales.args[0]
    if scales.args[1] != FP8_MAX or not _is_call(floor, aten.clamp_min.default, fp8_kernels.constants.FP8_MIN_AMAX):
        return None
    amax = floor.args[0]
    if not _is_call(amax, aten.amax.default, [-1], True):
        return None
    magnitudes = _before_float_cast(amax.args[0])
    if not (_is_call(magnitudes, aten.abs.default) and magnitudes.args[0] is rows):
        return None
    if not (_is_call(rows, aten.reshape.default) or _is_call(rows, aten.view.default)):
        return None
    modulated, rows_value = rows.args[0], _value(rows)
    if rows_value is None or rows_value.dim() != 2 or _value(modulated) is None or _value(modulated).dim() != 3:
        return None
    return _Quantization(modulated=modulated, rows=rows, values=values, scales=scales)


@dataclass(frozen=True)
class _ModulatedNorm:
    """`RMSNorm(hidden) * (1 + scale) + shift` (diffusers' RMSNorm without weight) as it appears in the graph."""

    hidden: fx.Node
    scale: fx.Node
    shift: fx.Node
    eps: float


def _match_modulated_norm(modulated: fx.Node) -> _ModulatedNorm | None:
    # modulated = convert(hidden * rsqrt(mean(convert(hidden, f32) ** 2, [-1], True) + eps), dtype) * (scale + 1) + shift
    if not _is_call(modulated, aten.add.Tensor):
        return None
    product, shift = modulated.args
    if not _is_call(product, aten.mul.Tensor):
        return None
    normed, one_plus_scale = product.args
    if not _is_call(one_plus_scale, aten.add.Tensor, 1):
        return None
    # RMSNorm returns its input's dtype: a cast in bf16, none in float32
    unrounded = normed.args[0] if _is_call(normed, prims.convert_element_type.default) else normed
    if not _is_call(unrounded, aten.mul.Tensor):
        return None
    hidden, inverse_rms = unrounded.args
    if not (_is_call(inverse_rms, aten.rsqrt.default) and _is_call(inverse_rms.args[0], aten.add.Tensor)):
        return None
    mean_square, eps = inverse_rms.args[0].args
    if not (isinstance(eps, float) and _is_call(mean_square, aten.mean.dim, [-1], True)):
        return None
    square = mean_square.args[0]
    if not (_is_call(square, aten.pow.Tensor_Scalar, 2) and _before_float_cast(square.args[0]) is hidden):
        return None
    hidden_value, scale = _value(hidden), one_plus_scale.args[0]
    if hidden_value is None or hidden_value.dim() != 3 or _value(normed) is None:
        return None
    if not (_value(normed).dtype == hidden_value.dtype == _value(modulated).dtype):
        return None  # the kernel rounds the norm and the modulation to the stream's dtype, as eager does
    if not all(_broadcasts_over_rows(_value(node), hidden_value) for node in (scale, shift)):
        return None
    return _ModulatedNorm(hidden=hidden, scale=scale, shift=shift, eps=eps)


def _broadcasts_over_rows(value: torch.Tensor | None, hidden: torch.Tensor) -> bool:
    """Whether `value` is (B, 1 or T, D) for (B, T, D) `hidden`: one row a batch or one a token."""
    return (
        value is not None
        and value.dim() == 3
        and value.shape[0] == hidden.shape[0]
        and value.shape[1] in (1, hidden.shape[1])
        and value.shape[2] == hidden.shape[2]
    )


@dataclass(frozen=True)
class _Residual:
    """hidden = residual + (update + update_bias) * gate, the block's residual add before a norm."""

    residual: fx.Node
    update: fx.Node
    update_bias: fx.Node | None
    gate: fx.Node | None


def _match_residual(hidden: fx.Node) -> _Residual | None:
    # hidden = residual + update * gate (or gate * update, or no gate), the update often reshape(product + bias)
    if not _is_call(hidden, aten.add.Tensor) or not all(isinstance(argument, fx.Node) for argument in hidden.args):
        return None
    residual, change = hidden.args
    hidden_value, residual_value = _value(hidden), _value(residual)
    if hidden_value is None or residual_value is None or residual_value.shape != hidden_value.shape:
        return None
    if len(change.users) != 1:
        return None
    update, gate = change, None
    if _is_call(change, aten.mul.Tensor) and all(isinstance(argument, fx.Node) for argument in change.args):
        first, second = change.args
        # the update is the operand that is reshape(product + bias), else the one that is not one row a batch
        swap = _bias_add(second) is not None or (_bias_add(first) is None and _is_batch_row(_value(first)))
        update, gate = (second, first) if swap else (first, second)
        if not _broadcasts_over_rows(_value(gate), hidden_value) or len(update.users) != 1:
            return None
    update_bias = None
    peeled = _bias_add(update)
    if peeled is not None:
        update, update_bias = peeled
    update_value = _value(update)
    if (
        update_value is None
        or update_value.numel() != hidden_value.numel()
        or update_value.dtype != hidden_value.dtype
    ):
        return None
    return _Residual(residual=residual, update=update, update_bias=update_bias, gate=gate)


def _is_batch_row(value: torch.Tensor | None) -> bool:
    return value is not None and value.dim() == 3 and value.shape[1] == 1


def _bias_add(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """(product, bias) for `reshape(product + bias)` with a 1-D bias and no other user of the sum."""
    if not (_is_call(node, aten.reshape.default) or _is_call(node, aten.view.default)):
        return None
    total = node.args[0]
    if not _is_call(total, aten.add.Tensor) or len(total.users) != 1:
        return None
    product, bias = total.args
    bias_value = _value(bias) if isinstance(bias, fx.Node) else None
    if bias_value is None or bias_value.dim() != 1 or _value(product) is None or _value(product).dim() != 2:
        return None
    return product, bias


# --- The pass ------------------------------------------------------------------------------------------------------


def _quantizations_by_input(graph: fx.Graph) -> dict[fx.Node, list[_Quantization]]:
    """The graph's fp8 quantizations grouped by the tensor they quantize (q, k and v share theirs)."""
    found: dict[fx.Node, list[_Quantization]] = {}
    for node in graph.nodes:
        quantization = _match_quantization(node)
        if quantization is not None:
            found.setdefault(quantization.modulated, []).append(quantization)
    return found


def fuse_modulated_norms(graph: fx.Graph) -> int:
    """Replace each recognised norm + modulation in `graph` (with the residual add before it, and the fp8
    quantization after it where its rows feed fp8 products) by one `modulated_rms_norm` call, in place. Returns the
    number of calls made."""
    handled: set[fx.Node] = set()
    for modulated, quantizations in _quantizations_by_input(graph).items():
        if _fuse(graph, modulated, quantizations):
            handled.add(modulated)
    for node in list(graph.nodes):  # then the norms whose rows feed bf16 products alone
        if node not in handled and node.users and _fuse(graph, node, []):
            handled.add(node)
    if handled:
        stable_topological_sort(graph)  # users of a replaced residual add may come before the call
        graph.eliminate_dead_code()
        graph.lint()
    return len(handled)


def _fuse(graph: fx.Graph, modulated: fx.Node, quantizations: list[_Quantization]) -> bool:
    """One `modulated_rms_norm` call in place of `modulated`'s norm, its residual add and `quantizations`."""
    norm = _match_modulated_norm(modulated)
    if norm is None:
        return False
    # A norm feeding two modulations: the first call computes the residual add, the second reads its output.
    residual = _match_residual(norm.hidden)
    chain_rows = {quantization.rows for quantization in quantizations}
    write_modulated = any(user not in chain_rows for user in modulated.users)
    arguments = (
        norm.hidden if residual is None else residual.residual,
        norm.scale,
        norm.shift,
        norm.eps,
        None if residual is None else residual.update,
        None if residual is None else residual.update_bias,
        None if residual is None else residual.gate,
        write_modulated,
        bool(quantizations),
    )
    with graph.inserting_after(modulated):
        call = graph.call_function(torch.ops.ltx_pipeline.modulated_rms_norm.default, arguments)
    outputs, previous = [], call
    for index in range(4):
        with graph.inserting_after(previous):
            previous = graph.call_function(operator.getitem, (call, index))
        outputs.append(previous)
    _set_fake_values(call, outputs, arguments)
    residual_out, modulated_out, values, scales = outputs
    for quantization in quantizations:
        quantization.values.replace_all_uses_with(values)
        quantization.scales.replace_all_uses_with(scales)
    if write_modulated:
        modulated.replace_all_uses_with(modulated_out, delete_user_cb=lambda user, rows=chain_rows: user not in rows)
    if residual is not None:
        norm.hidden.replace_all_uses_with(residual_out)
    return True


def _set_fake_values(call: fx.Node, outputs: list[fx.Node], arguments: tuple) -> None:
    """Give the new nodes the shapes and dtypes inductor's lowering reads (`meta["val"]`)."""
    fake_arguments = [_value(argument) if isinstance(argument, fx.Node) else argument for argument in arguments]
    fake_mode = detect_fake_mode([value for value in fake_arguments if isinstance(value, torch.Tensor)])
    with fake_mode:
        fake_outputs = torch.ops.ltx_pipeline.modulated_rms_norm.default(*fake_arguments)
    call.meta["val"] = fake_outputs
    for output, value in zip(outputs, fake_outputs, strict=True):
        output.meta["val"] = value


class FusedNormsPass(CustomGraphPass):
    """Inductor's post-grad custom pass running `fuse_modulated_norms`: `torch.compile(..., options={
    "post_grad_custom_post_pass": FusedNormsPass()})`. `fused` counts the calls made over every graph it saw."""

    def __init__(self) -> None:
        self.fused = 0

    def __call__(self, graph: fx.Graph) -> None:
        fused = fuse_modulated_norms(graph)
        self.fused += fused
        logger.info("Fused %d norm + modulation computations (with fp8 scales where they feed fp8 products).", fused)

    def uuid(self) -> bytes:
        # Inductor's graph cache keys compiled graphs by this: the pass's and the kernel's source.
        return get_hash_for_files((__file__, fp8_kernels.__file__))
