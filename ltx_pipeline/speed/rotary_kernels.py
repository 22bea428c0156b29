"""The queries' and keys' RMS norm and split rotary embedding in one pass (a Triton kernel), for
`attention_processors.OutOfPlaceRotaryAttnProcessor`.

Each LTX-2 attention normalises its queries and keys over a token's H*D values (`rms_norm_across_heads`), then rotates
each head's two halves with float32 cos and sin tables. Compiled, inductor makes that in two kernels, a reduction for
the norm and a pass reading the projection again with the tables, for the video-sized rotations of each block (the
self-attention's queries and keys, the audio-to-video queries, the video-to-audio keys). This kernel, a program a
token, holds the row in registers and reads the projection and the tables once, for the queries and keys together
where they share a table (the self-attention). The arithmetic is torch's: the norm in float32 rounded to the
projection's dtype, as `torch.nn.RMSNorm` returns it, then the rotation in float32. It takes the tables in any float
dtype: `fused_rotary` makes them float16 on CUDA (`attention_processors.HalfTableRotaryPosEmbed`), which halves what
it reads of them. What it gains is measured in benchmarks/RESULTS.md.
"""

import torch

try:  # CUDA builds of torch ship Triton; elsewhere the PyTorch path runs
    import triton
    import triton.language as tl
except ImportError:
    triton = None


def apply_split_rotary_emb_out_of_place(x: torch.Tensor, freqs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """diffusers' `apply_split_rotary_emb` without in-place updates: the same result, in x's dtype.

    `x` is (B, T, H*D) with `freqs` (cos, sin) of shape (B, H, T, D/2), or already (B, H, T, D).
    """
    cos, sin = freqs
    reshaped = x.ndim != 4 and cos.ndim == 4
    if reshaped:
        batch, heads, tokens, _ = cos.shape
        x = x.reshape(batch, tokens, heads, -1).swapaxes(1, 2)  # (B, T, H*D) -> (B, H, T, D)
    if x.shape[-1] % 2 != 0:
        raise ValueError(f"The split rotary embedding needs an even head size; got {x.shape[-1]}.")
    first, second = x.float().chunk(2, dim=-1)  # (..., D) -> 2 x (..., D/2)
    rotated = torch.cat([first * cos - sin * second, second * cos + sin * first], dim=-1)
    if reshaped:
        rotated = rotated.swapaxes(1, 2).reshape(batch, tokens, -1)  # (B, H, T, D) -> (B, T, H*D)
    return rotated.to(x.dtype)


def norm_rotary_reference(
    projection: torch.Tensor, norm: torch.nn.RMSNorm, freqs: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """What the kernel computes, as the processor computes it unfused: `norm` (over the last dim), then the split
    rotary embedding. `projection` (B, T, H*D), `freqs` (cos, sin) of shape (B, H, T, D/2)."""
    return apply_split_rotary_emb_out_of_place(norm(projection), freqs)


if triton is not None:

    @triton.jit
    def _norm_rotary_rows(
        x_ptr,
        weight_ptr,
        out_ptr,
        row,
        width,
        first,
        second,
        inside,
        cos,
        sin,
        EPS: tl.constexpr,
    ):
        x_first = tl.load(x_ptr + row * width + first, mask=inside, other=0.0)
        x_second = tl.load(x_ptr + row * width + second, mask=inside, other=0.0)
        squares = x_first.to(tl.float32) * x_first.to(tl.float32) + x_second.to(tl.float32) * x_second.to(tl.float32)
        rstd = tl.rsqrt(tl.sum(tl.sum(squares, axis=1), axis=0) / width + EPS)
        weight_first = tl.load(weight_ptr + first, mask=inside, other=0.0).to(tl.float32)
        weight_second = tl.load(weight_ptr + second, mask=inside, other=0.0).to(tl.float32)
        # torch.nn.RMSNorm computes in float32 and returns the input's dtype; the rotation reads that back.
        normed_first = (x_first.to(tl.float32) * rstd * weight_first).to(x_first.dtype).to(tl.float32)
        normed_second = (x_second.to(tl.float32) * rstd * weight_second).to(x_first.dtype).to(tl.float32)
        rotated_first = normed_first * cos - sin * normed_second
        rotated_second = normed_second * cos + sin * normed_first
        tl.store(out_ptr + row * width + first, rotated_first.to(out_ptr.dtype.element_ty), mask=inside)
        tl.store(out_ptr + row * width + second, rotated_second.to(out_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _norm_rotary_kernel(
        x_ptr,
        weight_ptr,
        out_ptr,
        other_x_ptr,
        other_weight_ptr,
        other_out_ptr,
        cos_ptr,
        sin_ptr,
        tokens,
        heads,
        half,
        table_stride_b,
        table_stride_h,
        table_stride_t,
        table_stride_d,
        EPS: tl.constexpr,  # a constant, not an argument: inductor passes a float argument as float64
        PAIRED: tl.constexpr,  # a second projection (the keys) rotated with the same table
        BLOCK_H: tl.constexpr,
        BLOCK_HALF: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        batch, token = row // tokens, row % tokens
        head = tl.arange(0, BLOCK_H)[:, None]
        dim = tl.arange(0, BLOCK_HALF)[None, :]
        inside = (head < heads) & (dim < half)
        first = head * (2 * half) + dim  # each head's two halves within the token's row of H*D values
        second = first + half
        table = batch * table_stride_b + head * table_stride_h + token * table_stride_t + dim * table_stride_d
        cos = tl.load(cos_ptr + table, mask=inside, other=0.0).to(tl.float32)
        sin = tl.load(sin_ptr + table, mask=inside, other=0.0).to(tl.float32)
        width = heads * 2 * half
        _norm_rotary_rows(x_ptr, weight_ptr, out_ptr, row, width, first, second, inside, cos, sin, EPS)
        if PAIRED:
            _norm_rotary_rows(
                other_x_ptr, other_weight_ptr, other_out_ptr, row, width, first, second, inside, cos, sin, EPS
            )


def launch_norm_rotary(
    projections: list[torch.Tensor], norms: list[torch.nn.RMSNorm], freqs: tuple[torch.Tensor, torch.Tensor]
) -> list[torch.Tensor]:
    """`norm_rotary_reference` for one projection, or two sharing `freqs` and their shape, in one launch of the
    Triton kernel (also on CPU tensors under TRITON_INTERPRET=1). Projections (B, T, H*D), contiguous."""
    cos, sin = freqs
    batch, heads, tokens, half = cos.shape
    outputs = [torch.empty_like(projection) for projection in projections]
    paired = len(projections) == 2
    other = 1 if paired else 0  # not read unless paired
    _norm_rotary_kernel[(batch * tokens,)](
        projections[0],
        norms[0].weight,
        outputs[0],
        projections[other],
        norms[other].weight,
        outputs[other],
        cos,
        sin,
        tokens,
        heads,
        half,
        *cos.stride(),
        EPS=norms[0].eps,
        PAIRED=paired,
        BLOCK_H=triton.next_power_of_2(heads),
        BLOCK_HALF=triton.next_power_of_2(half),
        num_warps=8 if heads * half >= 2048 else 4,
    )
    return outputs


def kernel_fits(projection: torch.Tensor, norm: torch.nn.Module, freqs: tuple[torch.Tensor, torch.Tensor]) -> bool:
    """Whether the kernel computes `norm_rotary_reference(projection, norm, freqs)`: a CUDA tensor (B, T, H*D) with
    Triton installed, a `torch.nn.RMSNorm` with a weight and an eps, and tables (B, H, T, D/2)."""
    if triton is None or not projection.is_cuda or projection.dim() != 3:
        return False
    if not isinstance(norm, torch.nn.RMSNorm) or norm.weight is None or norm.eps is None:
        return False
    cos, sin = freqs
    if cos.dim() != 4 or cos.shape != sin.shape or cos.stride() != sin.stride():
        return False
    batch, heads, tokens, half = cos.shape
    return projection.shape == (batch, tokens, heads * 2 * half) and norm.weight.shape == (heads * 2 * half,)


def norm_and_rotate(
    query: torch.Tensor,
    key: torch.Tensor,
    norms: tuple[torch.nn.Module, torch.nn.Module],
    query_freqs: tuple[torch.Tensor, torch.Tensor],
    key_freqs: tuple[torch.Tensor, torch.Tensor] | None = None,
    kernel: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The queries and keys (B, T, H*D) normalised by `norms` and rotated by their tables (`key_freqs` None: the
    queries', as in a self-attention). With `kernel`, the Triton kernel for each that it fits (see `kernel_fits`),
    both in one launch where they share a table and a shape; the PyTorch path for the others."""
    shared = key_freqs is None
    key_freqs = query_freqs if shared else key_freqs
    query_fits = kernel and kernel_fits(query, norms[0], query_freqs)
    key_fits = kernel and kernel_fits(key, norms[1], key_freqs)
    if shared and query_fits and key_fits and query.shape == key.shape:
        query, key = launch_norm_rotary([query.contiguous(), key.contiguous()], list(norms), query_freqs)
        return query, key
    outputs = []
    for projection, norm, freqs, fits in (
        (query, norms[0], query_freqs, query_fits),
        (key, norms[1], key_freqs, key_fits),
    ):
        if fits:
            outputs.append(launch_norm_rotary([projection.contiguous()], [norm], freqs)[0])
        else:
            outputs.append(norm_rotary_reference(projection, norm, freqs))
    return outputs[0], outputs[1]
