"""Per-row fp8 quantization of activations in one pass over memory (a Triton kernel), for `acceleration.Fp8Linear`.

Each fp8 product's input needs a scale per row (token): its largest magnitude over the row. Compiled, inductor fuses
that into the kernel making the activation. For the feed-forward's hidden state (rows of 16,384 values: bias, tanh
GELU, then the scale and the cast) that kernel loops over each row once per dependent reduction and runs far below the
memory's rate, and inductor keeping each row in registers (persistent reductions) is no faster. This kernel holds the
row in registers and reads it once; with exact arithmetic (a correctly rounded division per value) it is bound by
that arithmetic, with the fast math it uses on CUDA (the GPU's tanh instruction, the scale's inverse) it runs at the
memory's rate. Measured in benchmarks/RESULTS.md (`benchmarks/bench_row_kernel.py` times the kernels alone).
"""

import torch
import torch.nn.functional as F

from .. import constants

try:  # CUDA builds of torch ship Triton; elsewhere the PyTorch reference below runs
    import triton
    import triton.language as tl
except ImportError:
    triton = None

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max


def quantize_to_fp8(tensor: torch.Tensor, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(values in float8 e4m3, float32 scale) with tensor ~= values * scale.

    A 2-D `tensor` (rows, features) gets one scale per row for "rowwise" (shape (rows, 1)) or one for the whole
    tensor for "tensor" (shape ()). The scale maps each row's (or the tensor's) largest magnitude to e4m3's largest.
    """
    # One float32 temporary, divided in place: a stage-2 feed-forward input of the 16gb mode is 384 MiB in float32,
    # and three such copies at once did not fit its cap (benchmarks/RESULTS.md, run 37). The largest magnitude is
    # found in the input's own dtype, exactly.
    source = tensor.detach()
    if source.dtype not in (torch.bfloat16, torch.float16, torch.float32):  # e.g. weights stored in float8
        source = source.float()
    magnitudes = source.abs()
    amax = (magnitudes.amax(dim=-1, keepdim=True) if scaling == "rowwise" else magnitudes.amax()).float()
    del magnitudes
    scale = amax.clamp(min=constants.FP8_MIN_AMAX) / FP8_MAX
    values = source.to(torch.float32, copy=True)
    return values.div_(scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def quantize_rows_reference(
    rows: torch.Tensor, bias: torch.Tensor | None = None, gelu: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_to_fp8(gelu(rows + bias), "rowwise")` (each step optional), computed in float32: what
    `quantize_rows` computes on CUDA, in PyTorch."""
    values = rows.float()
    if bias is not None:
        values = values + bias.float()
    if gelu:
        values = F.gelu(values, approximate="tanh")
    return quantize_to_fp8(values, "rowwise")


if triton is not None:

    @triton.jit
    def _store_fp8_row(
        values, inside, values_ptrs, scale_ptr, MIN_AMAX: tl.constexpr, FP8_MAX: tl.constexpr, FAST_MATH: tl.constexpr
    ):
        """Stores a float32 row's row-wise fp8 quantization: its values at `values_ptrs`, its scale at `scale_ptr`."""
        amax = tl.maximum(tl.max(tl.where(inside, tl.abs(values), 0.0), axis=0), MIN_AMAX)
        if FAST_MATH:  # a product with the scale's inverse rather than a correctly rounded division per value
            quantized = values * (FP8_MAX / amax)
        else:
            quantized = tl.math.div_rn(values, amax / FP8_MAX)
        quantized = tl.clamp(quantized, -FP8_MAX, FP8_MAX)
        tl.store(values_ptrs, quantized.to(values_ptrs.dtype.element_ty), mask=inside)
        tl.store(scale_ptr, amax / FP8_MAX)

    @triton.jit
    def _quantize_rows_kernel(
        rows_ptr,
        bias_ptr,
        values_ptr,
        scales_ptr,
        features,
        MIN_AMAX: tl.constexpr,  # constants, not arguments: inductor passes a float argument as float64
        FP8_MAX: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        GELU: tl.constexpr,
        FAST_MATH: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        columns = tl.arange(0, BLOCK)
        inside = columns < features
        values = tl.load(rows_ptr + row * features + columns, mask=inside, other=0.0).to(tl.float32)
        if HAS_BIAS:
            values += tl.load(bias_ptr + columns, mask=inside, other=0.0).to(tl.float32)
        if GELU:
            # torch's gelu(approximate="tanh"): 0.5 x (1 + tanh(u)), u = sqrt(2 / pi) (x + 0.044715 x^3)
            inner = 0.7978845608028654 * (values + 0.044715 * values * values * values)
            if FAST_MATH:  # the GPU's tanh instruction: relative error under 2^-10, below bf16's rounding
                tanh = tl.inline_asm_elementwise(
                    "tanh.approx.f32 $0, $1;", "=f,f", [inner], dtype=tl.float32, is_pure=True, pack=1
                )
                values = 0.5 * values * (1.0 + tanh)
            else:  # the same, as x sigmoid(2u)
                values = values * tl.sigmoid(2.0 * inner)
        _store_fp8_row(
            values, inside, values_ptr + row * features + columns, scales_ptr + row, MIN_AMAX, FP8_MAX, FAST_MATH
        )


def launch_quantize_rows(
    rows: torch.Tensor,
    bias: torch.Tensor | None = None,
    gelu: bool = False,
    values_dtype: torch.dtype = FP8_DTYPE,
    fast_math: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton kernel on contiguous (rows, features) `rows`; also on CPU tensors under TRITON_INTERPRET=1.
    `values_dtype=torch.float32` returns the scaled, clamped values before their cast to fp8 (Triton's interpreter
    rounds that cast wrongly where it carries into the exponent: 127.4 -> 64 rather than 128).
    fast_math (CUDA only; the interpreter has no PTX): the GPU's tanh instruction for the GELU and a product with the
    scale's inverse instead of a correctly rounded division. Exact, the kernel is bound by that arithmetic; with fast
    math it runs at the memory's rate, and a few fp8 values move to a neighbouring one."""
    count, features = rows.shape
    values = torch.empty((count, features), dtype=values_dtype, device=rows.device)
    scales = torch.empty((count, 1), dtype=torch.float32, device=rows.device)
    block = triton.next_power_of_2(features)
    _quantize_rows_kernel[(count,)](
        rows,
        rows if bias is None else bias,  # not read without a bias
        values,
        scales,
        features,
        MIN_AMAX=constants.FP8_MIN_AMAX,
        FP8_MAX=FP8_MAX,
        HAS_BIAS=bias is not None,
        GELU=gelu,
        FAST_MATH=fast_math,
        BLOCK=block,
        num_warps=min(max(block // 1024, 4), 16),  # 16 to 32 float32 values a thread
    )
    return values, scales


def kernel_available(tensor: torch.Tensor) -> bool:
    """Whether `quantize_rows` runs the Triton kernel for `tensor` (a CUDA tensor, Triton installed)."""
    return triton is not None and tensor.is_cuda


def quantize_rows(
    rows: torch.Tensor, bias: torch.Tensor | None = None, gelu: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(float8 e4m3 values, float32 scales of shape (rows, 1)) with gelu(rows + bias) ~= values * scales, the bias
    and the tanh GELU optional, for 2-D `rows` (rows, features). One pass of the Triton kernel with fast math on
    CUDA, the float32 arithmetic of `quantize_rows_reference` elsewhere."""
    if rows.dim() != 2 or (bias is not None and bias.shape != (rows.shape[1],)):
        raise ValueError(
            f"`rows` must be 2-D (rows, features) and `bias` None or (features,); got {tuple(rows.shape)} and "
            f"{None if bias is None else tuple(bias.shape)}."
        )
    if not kernel_available(rows):
        return quantize_rows_reference(rows, bias, gelu)
    return launch_quantize_rows(rows.contiguous(), None if bias is None else bias.contiguous(), gelu, fast_math=True)


# --- The transformer block's RMS norm + modulation (+ the residual add before it) with fp8 scales ---------------


def modulated_rms_norm_reference(
    hidden: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    eps: float,
    update: torch.Tensor | None = None,
    update_bias: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What `fused_norms.modulated_rms_norm` computes, in PyTorch (float32 between the roundings diffusers makes).

    `hidden` (B, T, D): the residual stream; with `update` ((B, T, D) or (B*T, D)) it first becomes
    hidden + (update + update_bias) * gate, rounded to hidden's dtype (the block's residual add; bias and gate
    optional). Then diffusers' RMSNorm without weight (rounded to hidden's dtype), the block's modulation
    normed * (1 + scale) + shift (rounded likewise; scale and shift broadcast as (B, 1 or T, D)), and its row-wise
    fp8 quantization. Returns (the residual stream, the modulated rows (B, T, D), their fp8 values (B*T, D) and
    float32 scales (B*T, 1)).
    """
    dtype = hidden.dtype
    residual = hidden
    if update is not None:
        change = update.reshape(hidden.shape).float()
        if update_bias is not None:
            change = change + update_bias.float()
        if gate is not None:
            change = change * gate.float()
        residual = (hidden.float() + change).to(dtype)
    values = residual.float()
    normed = (values * torch.rsqrt(values.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)
    modulated = (normed.float() * (1 + scale.float()) + shift.float()).to(dtype)
    fp8_values, scales = quantize_to_fp8(modulated.reshape(-1, modulated.shape[-1]), "rowwise")
    return residual, modulated, fp8_values, scales


if triton is not None:

    @triton.jit
    def _modulated_rms_norm_kernel(
        hidden_ptr,
        update_ptr,
        update_bias_ptr,
        gate_ptr,
        scale_ptr,
        shift_ptr,
        residual_ptr,
        modulated_ptr,
        values_ptr,
        scales_ptr,
        tokens,
        features,
        hidden_stride_b,
        hidden_stride_t,
        gate_stride_b,
        gate_stride_t,
        scale_stride_b,
        scale_stride_t,
        shift_stride_b,
        shift_stride_t,
        EPS: tl.constexpr,
        MIN_AMAX: tl.constexpr,
        FP8_MAX: tl.constexpr,
        HAS_UPDATE: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        HAS_GATE: tl.constexpr,
        WRITE_MODULATED: tl.constexpr,
        QUANTIZE: tl.constexpr,
        FAST_MATH: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        batch, token = row // tokens, row % tokens
        columns = tl.arange(0, BLOCK)
        inside = columns < features
        hidden = tl.load(hidden_ptr + batch * hidden_stride_b + token * hidden_stride_t + columns, mask=inside)
        dtype = hidden.dtype
        values = hidden.to(tl.float32)
        if HAS_UPDATE:
            change = tl.load(update_ptr + row * features + columns, mask=inside, other=0.0).to(tl.float32)
            if HAS_BIAS:
                change += tl.load(update_bias_ptr + columns, mask=inside, other=0.0).to(tl.float32)
            if HAS_GATE:
                gate_row = gate_ptr + batch * gate_stride_b + token * gate_stride_t
                change *= tl.load(gate_row + columns, mask=inside, other=0.0).to(tl.float32)
            residual = (values + change).to(dtype)
            tl.store(residual_ptr + row * features + columns, residual, mask=inside)
            values = residual.to(tl.float32)
        values = tl.where(inside, values, 0.0)
        inverse_rms = 1.0 / tl.sqrt(tl.sum(values * values, axis=0) / features + EPS)
        normed = (values * inverse_rms).to(dtype).to(tl.float32)
        scale = tl.load(scale_ptr + batch * scale_stride_b + token * scale_stride_t + columns, mask=inside, other=0.0)
        shift = tl.load(shift_ptr + batch * shift_stride_b + token * shift_stride_t + columns, mask=inside, other=0.0)
        modulated = (normed * (1.0 + scale.to(tl.float32)) + shift.to(tl.float32)).to(dtype)
        if WRITE_MODULATED:
            tl.store(modulated_ptr + row * features + columns, modulated, mask=inside)
        if QUANTIZE:
            values_row = values_ptr + row * features + columns
            _store_fp8_row(
                modulated.to(tl.float32), inside, values_row, scales_ptr + row, MIN_AMAX, FP8_MAX, FAST_MATH
            )


def _row_strides(tensor: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, int, int]:
    """`tensor` broadcast to (B, T, D) `shape`, with its batch and token strides (0 where broadcast)."""
    expanded = tensor.expand(shape)
    if expanded.stride(-1) != 1:
        expanded = expanded.contiguous()
    return expanded, expanded.stride(0), expanded.stride(1)


def launch_modulated_rms_norm(
    hidden: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    eps: float,
    update: torch.Tensor | None = None,
    update_bias: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
    write_modulated: bool = True,
    values_dtype: torch.dtype = FP8_DTYPE,
    fast_math: bool = False,
    quantize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`modulated_rms_norm_reference` as one pass of a Triton kernel, a program a row (also on CPU tensors under
    TRITON_INTERPRET=1; `values_dtype` and `fast_math` as for `launch_quantize_rows`). The residual stream is an empty
    tensor without `update` (it is `hidden` then), the modulated rows one without `write_modulated`, the fp8 values
    and scales empty tensors without `quantize` (for modulated rows that feed bf16 products)."""
    batch, tokens, features = hidden.shape
    hidden, hidden_stride_b, hidden_stride_t = _row_strides(hidden, hidden.shape)
    scale, scale_stride_b, scale_stride_t = _row_strides(scale, hidden.shape)
    shift, shift_stride_b, shift_stride_t = _row_strides(shift, hidden.shape)
    gate_stride_b = gate_stride_t = 0
    if gate is not None:
        gate, gate_stride_b, gate_stride_t = _row_strides(gate, hidden.shape)
    rows = batch * tokens
    full, empty = (batch, tokens, features), (0,)
    residual = torch.empty(empty if update is None else full, dtype=hidden.dtype, device=hidden.device)
    modulated = torch.empty(full if write_modulated else empty, dtype=hidden.dtype, device=hidden.device)
    values = torch.empty((rows, features) if quantize else empty, dtype=values_dtype, device=hidden.device)
    scales = torch.empty((rows, 1) if quantize else empty, dtype=torch.float32, device=hidden.device)
    block = triton.next_power_of_2(features)
    _modulated_rms_norm_kernel[(rows,)](
        hidden,
        hidden if update is None else update.reshape(rows, features).contiguous(),  # the unused pointers: not read
        hidden if update_bias is None else update_bias.contiguous(),
        hidden if gate is None else gate,
        scale,
        shift,
        residual,
        modulated,
        values,
        scales,
        tokens,
        features,
        hidden_stride_b,
        hidden_stride_t,
        gate_stride_b,
        gate_stride_t,
        scale_stride_b,
        scale_stride_t,
        shift_stride_b,
        shift_stride_t,
        EPS=eps,
        MIN_AMAX=constants.FP8_MIN_AMAX,
        FP8_MAX=FP8_MAX,
        HAS_UPDATE=update is not None,
        HAS_BIAS=update_bias is not None,
        HAS_GATE=gate is not None,
        WRITE_MODULATED=write_modulated,
        QUANTIZE=quantize,
        FAST_MATH=fast_math,
        BLOCK=block,
        num_warps=min(max(block // 1024, 4), 16),
    )
    return residual, modulated, values, scales


# --- A gated attention's output (per-head gates) with the out-projection's fp8 scales --------------------------


def gated_heads_reference(attention: torch.Tensor, gate_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What `quantize_gated_heads` computes, in PyTorch: the LTX-2.3 attention gating (each head's output times
    2 sigmoid(its gate logit), rounded to the attention's dtype), then row-wise fp8 quantization of each token's row.

    `attention` (B, T, H, D), any strides; `gate_logits` (B, T, H). Returns fp8 values (B*T, H*D) and float32 scales
    (B*T, 1).
    """
    batch, tokens, heads, head_dim = attention.shape
    gates = 2.0 * torch.sigmoid(gate_logits.float())
    gated = (attention.float() * gates.unsqueeze(-1)).to(attention.dtype)
    return quantize_to_fp8(gated.reshape(batch * tokens, heads * head_dim), "rowwise")  # (B, T, H, D) -> (B*T, H*D)


if triton is not None:

    @triton.jit
    def _gated_heads_kernel(
        attention_ptr,
        logits_ptr,
        values_ptr,
        scales_ptr,
        tokens,
        heads,
        head_dim,
        attention_stride_b,
        attention_stride_t,
        attention_stride_h,
        attention_stride_d,
        logits_stride_b,
        logits_stride_t,
        logits_stride_h,
        MIN_AMAX: tl.constexpr,
        FP8_MAX: tl.constexpr,
        FAST_MATH: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        batch, token = row // tokens, row % tokens
        head = tl.arange(0, BLOCK_H)[:, None]
        dim = tl.arange(0, BLOCK_D)[None, :]
        inside = (head < heads) & (dim < head_dim)
        row_start = attention_ptr + batch * attention_stride_b + token * attention_stride_t
        attention = tl.load(row_start + head * attention_stride_h + dim * attention_stride_d, mask=inside)
        logits_row = logits_ptr + batch * logits_stride_b + token * logits_stride_t
        logits = tl.load(logits_row + head * logits_stride_h, mask=head < heads, other=0.0).to(tl.float32)
        gated = (attention.to(tl.float32) * (2.0 * tl.sigmoid(logits))).to(attention.dtype).to(tl.float32)
        magnitudes = tl.where(inside, tl.abs(gated), 0.0)
        amax = tl.maximum(tl.max(tl.max(magnitudes, axis=1), axis=0), MIN_AMAX)
        if FAST_MATH:
            quantized = gated * (FP8_MAX / amax)
        else:
            quantized = tl.math.div_rn(gated, amax / FP8_MAX)
        quantized = tl.clamp(quantized, -FP8_MAX, FP8_MAX)
        output = values_ptr + row * heads * head_dim + head * head_dim + dim
        tl.store(output, quantized.to(values_ptr.dtype.element_ty), mask=inside)
        tl.store(scales_ptr + row, amax / FP8_MAX)


def launch_gated_heads(
    attention: torch.Tensor,
    gate_logits: torch.Tensor,
    values_dtype: torch.dtype = FP8_DTYPE,
    fast_math: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`gated_heads_reference` as one pass of a Triton kernel, a program a token, reading `attention` in whatever
    layout the attention backend left it (cuDNN's (B, H, T, D) seen as (B, T, H, D)); `values_dtype` and `fast_math`
    as for `launch_quantize_rows`."""
    batch, tokens, heads, head_dim = attention.shape
    values = torch.empty((batch * tokens, heads * head_dim), dtype=values_dtype, device=attention.device)
    scales = torch.empty((batch * tokens, 1), dtype=torch.float32, device=attention.device)
    block_h, block_d = triton.next_power_of_2(heads), triton.next_power_of_2(head_dim)
    _gated_heads_kernel[(batch * tokens,)](
        attention,
        gate_logits,
        values,
        scales,
        tokens,
        heads,
        head_dim,
        *attention.stride(),
        *gate_logits.stride(),
        MIN_AMAX=constants.FP8_MIN_AMAX,
        FP8_MAX=FP8_MAX,
        FAST_MATH=fast_math,
        BLOCK_H=block_h,
        BLOCK_D=block_d,
        num_warps=min(max(block_h * block_d // 1024, 4), 16),
    )
    return values, scales


def quantize_gated_heads(attention: torch.Tensor, gate_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 values (B*T, H*D), float32 scales (B*T, 1)) of the gated attention output: the Triton kernel with fast
    math on CUDA, `gated_heads_reference` elsewhere. `attention` (B, T, H, D), `gate_logits` (B, T, H)."""
    if attention.dim() != 4 or gate_logits.shape != attention.shape[:3]:
        raise ValueError(
            f"`attention` must be (B, T, H, D) and `gate_logits` (B, T, H); got {tuple(attention.shape)} and "
            f"{tuple(gate_logits.shape)}."
        )
    if not kernel_available(attention):
        return gated_heads_reference(attention, gate_logits)
    return launch_gated_heads(attention, gate_logits, fast_math=True)
