"""Attention kernels alone at the LTX-2.3 transformer's shapes on one GPU: ms, TFLOP/s and deviation of each.

    python benchmarks/bench_attention.py --out attention.json [--sweep]

Shapes (batch 1, bf16, 32 heads x 128): the video self-attention at 384x256x121 (1,536 tokens), 768x512x121
(6,144) and 1536x1024x121 (24,576), and the video-to-text cross-attention (6,144 queries, 1,024 keys). Kernels:
PyTorch SDPA's flash, cuDNN and memory-efficient backends, FlexAttention (compiled), and this project's Triton
kernel (`triton_attention.py` beside this script) with and without tensor descriptors; `--sweep` tries several block
shapes of the latter. Needs a CUDA GPU and Triton. Inputs are (B, S, H, D) tensors, SDPA sees their (B, H, S, D) views, as in diffusers' backends.
FLOPs: 4 Sq Sk D H (the two products, 2 per multiply-add). Deviation: relative L2 against float32 SDPA.
"""

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import flex_attention

sys.path.insert(0, str(Path(__file__).resolve().parent))

from triton_attention import BLOCK_CONFIGS, triton, triton_attention  # noqa: E402

HEADS, HEAD_DIM = 32, 128
SHAPES = {  # label: (query tokens, key tokens)
    "self 384x256x121": (1_536, 1_536),
    "self 768x512x121": (6_144, 6_144),
    "self 1536x1024x121": (24_576, 24_576),
    "video->text 768x512x121": (6_144, 1_024),
}
SWEEP = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 128, 8, 4), (64, 128, 4, 3)]


def sdpa(backend: SDPBackend):
    def run(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(backend):
            out = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (query, key, value)))
        return out.transpose(1, 2)

    return run


def flex():
    compiled = torch.compile(flex_attention, dynamic=False)

    def run(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return compiled(*(t.transpose(1, 2) for t in (query, key, value))).transpose(1, 2)

    return run


def kernels(sweep: bool) -> dict:
    found = {
        "sdpa flash": sdpa(SDPBackend.FLASH_ATTENTION),
        "sdpa cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
        "sdpa efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION),
        "flex (compiled)": flex(),
    }
    configs = SWEEP if sweep else [BLOCK_CONFIGS[HEAD_DIM]]
    for use_tma in (True, False):
        for config in configs:
            name = f"triton {'tma' if use_tma else 'pointers'} {config}"
            found[name] = lambda q, k, v, c=config, t=use_tma: triton_attention(q, k, v, config=c, use_tma=t)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("attention.json"))
    parser.add_argument("--sweep", action="store_true", help="several block shapes of the Triton kernel")
    args = parser.parse_args()
    if triton is None or not torch.cuda.is_available():
        parser.error(
            f"needs a CUDA GPU and Triton; here CUDA is {'available' if torch.cuda.is_available() else 'missing'} "
            f"and Triton is {'missing' if triton is None else 'installed'}"
        )
    from triton.testing import do_bench

    candidates = kernels(args.sweep)  # built once: FlexAttention compiles per shape, not per kernel table
    results = {
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "command": "python " + " ".join(sys.argv),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "rows": [],
    }
    generator = torch.Generator("cuda").manual_seed(0)
    rows = ["| shape | kernel | ms | TFLOP/s | rel. L2 vs fp32 |", "|---|---|---|---|---|"]
    for label, (query_tokens, key_tokens) in SHAPES.items():
        query = torch.randn(1, query_tokens, HEADS, HEAD_DIM, device="cuda", generator=generator, dtype=torch.bfloat16)
        key, value = (
            torch.randn(1, key_tokens, HEADS, HEAD_DIM, device="cuda", generator=generator, dtype=torch.bfloat16)
            for _ in range(2)
        )
        reference = sdpa(SDPBackend.EFFICIENT_ATTENTION)(query.float(), key.float(), value.float())
        flops = 4 * query_tokens * key_tokens * HEAD_DIM * HEADS
        for name, run in candidates.items():
            row = {"shape": label, "kernel": name}
            try:
                out = run(query, key, value)
                row["rel_l2"] = float((out.float() - reference).norm() / reference.norm())
                inputs = (query, key, value)
                row["ms"] = do_bench(
                    lambda run=run, inputs=inputs: run(*inputs), warmup=50, rep=200, return_mode="median"
                )
                row["tflops"] = flops / row["ms"] / 1e9
                rows.append(f"| {label} | {name} | {row['ms']:.3f} | {row['tflops']:.0f} | {row['rel_l2']:.2e} |")
            except Exception as error:  # a kernel that cannot run this shape is a result
                row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                rows.append(f"| {label} | {name} | error: {row['error'][:80]} | | |")
            results["rows"].append(row)
            print(rows[-1], flush=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\n{results['device']}, torch {results['torch']}, triton {results['triton']}, {results['date']}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
