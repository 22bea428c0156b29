"""A Triton flash-attention forward for the transformer's long, unmasked video self-attention, timed by
bench_attention.py.

The algorithm is FlashAttention-2's (online softmax over key blocks, one program per query block and head; Dao 2023,
arXiv:2307.08691), written after Triton's fused-attention tutorial. It reads and writes the (B, S, H, D) layout the
diffusers attention processors hand to their backends, so no transposes are made. Forward only, no mask, no dropout.
On an H200 it ran at 503 TFLOP/s alone (FlashAttention-2 350, cuDNN 616) and made the compiled forward slower than
the default SDPA (372.5 vs 358.8 ms at 768x512x121), so the product does not use it: benchmarks/RESULTS.md. At commit
c02cb7a it was a `video_attention_backend` of the pipelines, which is how the forward was measured.
"""

import math

import torch

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # CPU-only installs
    triton = None

# Program shape per head dimension: (BLOCK_M, BLOCK_N, num_warps, num_stages); for 128 the best of
# `bench_attention.py --sweep` on an H200 at the video self-attention's shape (32 heads x 128, 6,144 tokens).
BLOCK_CONFIGS = {64: (128, 128, 8, 3), 128: (128, 128, 8, 3)}
LOG2_E = 1.4426950408889634


if triton is not None:

    @triton.jit
    def _attention_forward(
        query,
        key,
        value,
        out,
        scale_log2,  # softmax scale times log2(e): the kernel works in base 2
        stride_qb,
        stride_qs,
        stride_qh,
        stride_kb,
        stride_ks,
        stride_kh,
        stride_vb,
        stride_vs,
        stride_vh,
        stride_ob,
        stride_os,
        stride_oh,
        heads,
        query_length,
        key_length,
        HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        EVEN_N: tl.constexpr,  # key_length % BLOCK_N == 0: no masking of the last key block
    ):
        block_m = tl.program_id(0)
        batch_head = tl.program_id(1)
        batch = batch_head // heads
        head = batch_head % heads
        rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, HEAD_DIM)
        q = tl.load(
            query + batch * stride_qb + head * stride_qh + rows[:, None] * stride_qs + dims[None, :],
            mask=rows[:, None] < query_length,
            other=0.0,
        )
        key_base = key + batch * stride_kb + head * stride_kh
        value_base = value + batch * stride_vb + head * stride_vh
        row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        for start in tl.range(0, key_length, BLOCK_N):
            columns = start + tl.arange(0, BLOCK_N)
            if EVEN_N:
                k = tl.load(key_base + columns[None, :] * stride_ks + dims[:, None])  # (HEAD_DIM, BLOCK_N)
                v = tl.load(value_base + columns[:, None] * stride_vs + dims[None, :])
            else:
                k = tl.load(
                    key_base + columns[None, :] * stride_ks + dims[:, None],
                    mask=columns[None, :] < key_length,
                    other=0.0,
                )
                v = tl.load(
                    value_base + columns[:, None] * stride_vs + dims[None, :],
                    mask=columns[:, None] < key_length,
                    other=0.0,
                )
            scores = tl.dot(q, k)
            if not EVEN_N:
                scores = tl.where(columns[None, :] < key_length, scores, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(scores, 1) * scale_log2)
            probabilities = tl.math.exp2(scores * scale_log2 - new_max[:, None])
            correction = tl.math.exp2(row_max - new_max)
            row_sum = row_sum * correction + tl.sum(probabilities, 1)
            acc = tl.dot(probabilities.to(v.dtype), v, acc * correction[:, None])
            row_max = new_max
        acc = acc / row_sum[:, None]
        tl.store(
            out + batch * stride_ob + head * stride_oh + rows[:, None] * stride_os + dims[None, :],
            acc.to(out.dtype.element_ty),
            mask=rows[:, None] < query_length,
        )


if triton is not None:

    @triton.jit
    def _attention_forward_tma(
        query_desc,  # (B, S, H, D) tensor descriptors: Hopper's tensor memory accelerator moves the blocks
        key_desc,
        value_desc,
        out_desc,
        scale_log2,
        key_length,
        HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        EVEN_N: tl.constexpr,
        heads: tl.constexpr,
    ):
        block_m = tl.program_id(0)
        batch_head = tl.program_id(1)
        batch = batch_head // heads
        head = batch_head % heads
        q = query_desc.load([batch, block_m * BLOCK_M, head, 0]).reshape(BLOCK_M, HEAD_DIM)
        row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        for start in tl.range(0, key_length, BLOCK_N):
            k = key_desc.load([batch, start, head, 0]).reshape(BLOCK_N, HEAD_DIM)  # rows past the end read as 0
            scores = tl.dot(q, k.T)
            if not EVEN_N:
                columns = start + tl.arange(0, BLOCK_N)
                scores = tl.where(columns[None, :] < key_length, scores, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(scores, 1) * scale_log2)
            probabilities = tl.math.exp2(scores * scale_log2 - new_max[:, None])
            correction = tl.math.exp2(row_max - new_max)
            row_sum = row_sum * correction + tl.sum(probabilities, 1)
            v = value_desc.load([batch, start, head, 0]).reshape(BLOCK_N, HEAD_DIM)
            acc = tl.dot(probabilities.to(v.dtype), v, acc * correction[:, None])
            row_max = new_max
        acc = acc / row_sum[:, None]
        out_desc.store([batch, block_m * BLOCK_M, head, 0], acc.to(out_desc.dtype).reshape(1, BLOCK_M, 1, HEAD_DIM))


def triton_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float | None = None,
    config: tuple[int, int, int, int] | None = None,
    use_tma: bool = False,
) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, S, H, D) tensors (fp16 or bf16, D 64 or 128), returned as (B, S_q, H, D).

    config: (BLOCK_M, BLOCK_N, num_warps, num_stages), for tuning; None: `BLOCK_CONFIGS`'s entry.
    use_tma: move blocks with tensor descriptors (Hopper and newer). In the H200 sweep it was no faster, and with
        BLOCK_N 128 it returned wrong results there (rel. L2 0.79; not investigated) though not in the forward.
    """
    batch, query_length, heads, head_dim = query.shape
    key_length = key.shape[1]
    if head_dim not in BLOCK_CONFIGS:
        raise ValueError(f"triton attention supports head dims {sorted(BLOCK_CONFIGS)}; got {head_dim}.")
    if query.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"triton attention runs in float16 or bfloat16; got {query.dtype}.")
    query, key, value = (tensor if tensor.stride(-1) == 1 else tensor.contiguous() for tensor in (query, key, value))
    out = torch.empty_like(query, memory_format=torch.contiguous_format)
    block_m, block_n, num_warps, num_stages = config or BLOCK_CONFIGS[head_dim]
    scale_log2 = (1.0 / math.sqrt(head_dim) if scale is None else scale) * LOG2_E
    grid = (triton.cdiv(query_length, block_m), batch * heads)
    shape = {"HEAD_DIM": head_dim, "BLOCK_M": block_m, "BLOCK_N": block_n, "EVEN_N": key_length % block_n == 0}
    launch = {"num_warps": num_warps, "num_stages": num_stages}
    if use_tma:
        descriptors = [
            TensorDescriptor.from_tensor(tensor, [1, rows, 1, head_dim])
            for tensor, rows in ((query, block_m), (key, block_n), (value, block_n), (out, block_m))
        ]
        _attention_forward_tma[grid](*descriptors, scale_log2, key_length, heads=heads, **shape, **launch)
        return out
    _attention_forward[grid](
        query,
        key,
        value,
        out,
        scale_log2,
        *query.stride()[:3],
        *key.stride()[:3],
        *value.stride()[:3],
        *out.stride()[:3],
        heads,
        query_length,
        key_length,
        **shape,
        **launch,
    )
    return out
