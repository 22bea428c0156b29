"""Full-size LoRA cost on one GPU: load a rank-384 official-layout LoRA, forward unfused vs fused vs base.

Random bf16 weights at the real LTX-2.3 transformer size; the LoRA targets every attention projection and
feed-forward Linear of the 48 blocks (as a guess at the distilled LoRA's coverage; ~3.9 B parameters).
"""

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import LTX2VideoTransformer3DModel  # noqa: E402

from benchmarks.bench_full_size import TRANSFORMER_2_3, default_dtype  # noqa: E402
from ltx_pipeline import lora  # noqa: E402
from ltx_pipeline.engine import transformer_velocity  # noqa: E402
from ltx_pipeline.engine.latents import LatentGeometry  # noqa: E402
from ltx_pipeline.engine.prompt import TextConditioning  # noqa: E402
from tests.official_layout import transformer_key  # noqa: E402

OUT = Path(sys.argv[1])
RANK = int(sys.argv[2]) if len(sys.argv) > 2 else 384
results: dict = {"device": torch.cuda.get_device_name(), "rank": RANK}


def log(key, value):
    results[key] = value
    print(key, value, flush=True)
    OUT.write_text(json.dumps(results, indent=1))


def sync_time(fn, repeats=1):
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        value = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, value


class Pipe:  # the two attributes lora.py uses
    def __init__(self, transformer):
        self.transformer = transformer
        self.connectors = None
        self.hf_device_map = None  # diffusers' offload check reads these two
        self.components = {"transformer": transformer}


start = time.perf_counter()
with torch.device("cuda"), default_dtype(torch.bfloat16):
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(**TRANSFORMER_2_3).eval().requires_grad_(False)
log("build_s", round(time.perf_counter() - start, 1))
log("transformer_gib", round(torch.cuda.memory_allocated() / 2**30, 2))

targets = [
    name
    for name, module in transformer.named_modules()
    if isinstance(module, torch.nn.Linear)
    and name.startswith("transformer_blocks.")
    and ("attn" in name.split(".")[2] or "ff" in name.split(".")[2])
    and not name.endswith("to_gate_logits")
]
log("lora_layers", len(targets))
modules = dict(transformer.named_modules())
tensors = {}
generator = torch.Generator(device="cuda").manual_seed(1)
for name in targets:
    linear = modules[name]
    key = transformer_key(name + ".weight").removeprefix("model.").removesuffix(".weight")
    a = torch.randn(RANK, linear.in_features, device="cuda", generator=generator) / linear.in_features**0.5
    b = torch.randn(linear.out_features, RANK, device="cuda", generator=generator) * 1e-3
    tensors[f"{key}.lora_A.weight"] = a.to(torch.bfloat16).cpu()
    tensors[f"{key}.lora_B.weight"] = b.to(torch.bfloat16).cpu()
log("lora_params_billion", round(sum(t.numel() for t in tensors.values()) / 1e9, 3))
path = Path("/tmp/distilled_like.safetensors")
start = time.perf_counter()
save_file(tensors, str(path))
del tensors
log("lora_file_gib", round(path.stat().st_size / 2**30, 2))
log("lora_write_s", round(time.perf_counter() - start, 1))

# Inputs: 768x512x121 at stage-2 size (the dev path's stage 2 runs there), 1,024 text tokens.
frames, height, width = 16, 16, 24
generator = torch.Generator(device="cuda").manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=generator, device="cuda").to(torch.bfloat16)


# The pipelines' one transformer call, with the all-ones prompt masks of the run this benchmark recorded.
inputs = {
    "video": randn(1, frames * height * width, 128),
    "audio": randn(1, 126, 128),
    "text": TextConditioning(
        video=randn(1, 1024, 4096),
        audio=randn(1, 1024, 2048),
        mask=torch.ones(1, 1024, device="cuda", dtype=torch.int64),
    ),
    "sigma": 0.725,
    "geometry": LatentGeometry(frames=frames, height=height, width=width, audio_frames=126, frame_rate=24.0),
}


@torch.no_grad()
def forward():
    return transformer_velocity(transformer, **inputs)[0]


forward()
base_ms, base_out = sync_time(forward, 5)
log("forward_base_ms", round(base_ms * 1000, 1))
base_out = base_out.float().clone()
probe = modules[targets[0]].weight.detach().clone()

pipe = Pipe(transformer)
start = time.perf_counter()
(name,) = lora.load_loras(pipe, [(path, 1.0)], adapter_prefix="stage2")
torch.cuda.synchronize()
log("load_loras_s", round(time.perf_counter() - start, 1))
log("gib_with_lora", round(torch.cuda.memory_allocated() / 2**30, 2))
forward()
lora_ms, lora_out = sync_time(forward, 5)
log("forward_unfused_ms", round(lora_ms * 1000, 1))
log("lora_changes_output_max_abs", float((lora_out.float() - base_out).abs().max()))

switch_s, _ = sync_time(lambda: lora.set_lora_strengths(pipe, {name: 0.0}), 1)
log("switch_off_s", round(switch_s, 3))
off_ms, off_out = sync_time(forward, 5)
log("forward_strength0_ms", round(off_ms * 1000, 1))
log("strength0_bit_exact", bool(torch.equal(off_out.float(), base_out)))
switch_s, _ = sync_time(lambda: lora.set_lora_strengths(pipe, {name: 1.0}), 1)
log("switch_on_s", round(switch_s, 3))

fuse_s, _ = sync_time(lambda: lora.fuse_loras(pipe), 1)
log("fuse_s", round(fuse_s, 2))
fused_ms, fused_out = sync_time(forward, 5)
log("forward_fused_ms", round(fused_ms * 1000, 1))
log("fused_vs_unfused_max_abs", float((fused_out.float() - lora_out.float()).abs().max()))
log("unfused_output_scale", float(lora_out.float().abs().max()))
unfuse_s, _ = sync_time(lambda: lora.unfuse_loras(pipe), 1)
log("unfuse_s", round(unfuse_s, 2))
weight_now = modules[targets[0]].weight.detach()  # PEFT keeps the original Linear as base_layer
log("bf16_weight_drift_after_fuse_unfuse_max_abs", float((weight_now.float() - probe.float()).abs().max()))
log("bf16_weight_drift_changed_fraction", float((weight_now != probe).float().mean()))
lora.unload_loras(pipe)
after_ms, after_out = sync_time(forward, 3)
log("after_unload_vs_base_max_abs", float((after_out.float() - base_out).abs().max()))
log("peak_gib", round(torch.cuda.max_memory_allocated() / 2**30, 2))
