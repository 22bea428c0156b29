"""The fp8 row quantization of the transformer's activations, alone: each way of computing it, timed on one GPU.

At 768x512x121 (6,144 video tokens) the fp8 forward quantizes rows of 4,096 values (the inputs of the attention
and feed-forward products) and of 16,384 (the feed-forward's hidden state, after its bias and tanh GELU). Inside the
compiled forward these kernels ran at a fifth of the card's memory rate (benchmarks/RESULTS.md, runs 14 and 18).
This script times each variant on the same rows with `triton.testing.do_bench` (L2 flushed between calls), reports
microseconds, the memory rate (bf16 read + fp8 write) and how many fp8 values differ from the float32 reference:

    python benchmarks/bench_row_kernel.py --out row_kernel.json

Variants: PyTorch eager; inductor compiling the unfused path (bias add and GELU in bf16, then the row scales and the
cast, as the transformer's `Fp8Linear`s do) with its default choices and with persistent row reductions; this
project's Triton kernel (`ltx_pipeline.fp8_kernels`), exact or with the fast math it uses on CUDA. (Run 19 also
timed the kernel reading each row in chunks, twice: slower in every configuration, so the kernel lost that path.)
"""

import argparse
import contextlib
import datetime
import functools
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ltx_pipeline.speed import fp8_kernels  # noqa: E402

# (label, rows, features, bias and GELU)
SHAPES = [
    ("feed-forward hidden, 768x512x121", 6144, 16384, True),
    ("block input, 768x512x121", 6144, 4096, False),
    ("feed-forward hidden, 384x256x121", 1536, 16384, True),
]


ROW_LIMIT = 16_384  # the feed-forward's hidden width: the longest rows a persistent reduction is asked to hold


@contextlib.contextmanager
def persistent_row_reductions(limit: int = ROW_LIMIT):
    """Inductor compiles row reductions of up to `limit` values as persistent ones (the row held in registers, one
    pass over memory) instead of its default 1,024, for what is compiled in this thread meanwhile. Its caches of
    compiled graphs are bypassed, so that graphs compiled earlier with the default choices are not reused."""
    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config
    from torch._inductor.choices import InductorChoices
    from torch._inductor.runtime.hints import ReductionHint
    from torch._inductor.virtualized import V

    class PersistentRows(InductorChoices):
        @staticmethod
        def should_use_persistent_reduction(features, cooperative_reduction, *args, **kwargs) -> bool:
            if (
                inductor_config.triton.persistent_reductions
                and not cooperative_reduction
                and features.get_reduction_hint() == ReductionHint.INNER
                and V.graph.sizevars.statically_known_leq(features.reduction_numel, limit)
            ):
                return True
            return InductorChoices.should_use_persistent_reduction(features, cooperative_reduction, *args, **kwargs)

    patches = {"fx_graph_cache": False, "fx_graph_remote_cache": False}
    with inductor_config.patch(patches), functorch_config.patch(enable_autograd_cache=False):
        with V.set_choices_handler(PersistentRows()):
            yield


def unfused(rows: torch.Tensor, bias: torch.Tensor | None, gelu: bool):
    """What the transformer computes without the kernel: bias and GELU in bf16, then the row-wise quantization."""
    values = rows if bias is None else rows + bias
    values = F.gelu(values, approximate="tanh") if gelu else values
    return fp8_kernels.quantize_to_fp8(values, "rowwise")


def variants(compiled_default, compiled_persistent) -> dict:
    kernel = fp8_kernels.launch_quantize_rows
    table = {
        "eager (PyTorch)": unfused,
        "inductor, default choices": compiled_default,
        "inductor, persistent rows": compiled_persistent,
        "kernel, exact": lambda r, b, g: kernel(r, b, g),
        "kernel, fast math": lambda r, b, g: kernel(r, b, g, fast_math=True),
    }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="row_kernel.json")
    args = parser.parse_args()
    from bench_full_size import persistent_row_reductions
    from triton.testing import do_bench

    compiled_default = torch.compile(unfused, fullgraph=True, dynamic=False)
    persistent = torch.compile(unfused, fullgraph=True, dynamic=False)

    def compiled_persistent(rows, bias, gelu):
        with persistent_row_reductions():
            return persistent(rows, bias, gelu)

    results = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "command": " ".join(["python", *sys.argv]),
        "rows": [],
    }
    print(f"{'shape':36} {'variant':46} {'us':>8} {'TB/s':>6} {'changed':>8}")
    for label, count, features, biased in SHAPES:
        torch.manual_seed(0)
        rows = (torch.randn(count, features, device="cuda") * 2).to(torch.bfloat16)
        bias = torch.randn(features, device="cuda", dtype=torch.bfloat16) if biased else None
        reference_values, _ = fp8_kernels.quantize_rows_reference(rows, bias, biased)
        for name, function in variants(compiled_default, compiled_persistent).items():
            try:
                values, _ = function(rows, bias, biased)
                call = functools.partial(function, rows, bias, biased)
                micros = statistics.median(do_bench(call, return_mode="all")) * 1e3
            except Exception as error:  # a variant that fails to build is a result
                print(f"{label:36} {name:46} failed: {type(error).__name__}: {str(error)[:200]}")
                results["rows"].append({"shape": label, "variant": name, "error": f"{type(error).__name__}: {error}"})
                continue
            changed = (values.float() != reference_values.float()).float().mean().item()
            rate = 3 * count * features / (micros * 1e-6) / 1e12
            print(f"{label:36} {name:46} {micros:8.1f} {rate:6.2f} {changed:8.2%}")
            results["rows"].append(
                {"shape": label, "variant": name, "us": round(micros, 1), "tb_s": round(rate, 2), "changed": changed}
            )
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
