"""Write tiny LoRA files in the official Lightricks layout and in diffusers' layout, for the LoRA tests.

Official keys are built from the checkpoint key rules in `tests/official_layout.py` (written independently of the
loader): a checkpoint key `model.diffusion_model.X.weight` becomes the LoRA keys `diffusion_model.X.lora_A.weight`
and `diffusion_model.X.lora_B.weight`, which is what ltx-trainer saves (PEFT state dict plus a `diffusion_model.`
prefix) and what the reference's `LTXV_LORA_COMFY_RENAMING_MAP` strips again.
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.official_layout import connectors_key, transformer_key

# {diffusers module name: (lora_A [rank, in], lora_B [out, rank])}
LoraLayers = dict[str, tuple[torch.Tensor, torch.Tensor]]


def random_lora_layers(model: torch.nn.Module, module_names: list[str], rank: int = 2, seed: int = 0) -> LoraLayers:
    """Random A and B for each named Linear of `model` (B non-zero, so the LoRA changes outputs)."""
    generator = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    layers = {}
    for name in module_names:
        linear = modules[name]
        lora_a = torch.randn(rank, linear.in_features, generator=generator) * 0.5
        lora_b = torch.randn(linear.out_features, rank, generator=generator) * 0.5
        layers[name] = (lora_a, lora_b)
    return layers


def _official_module_key(module: str, component: str) -> str:
    """`model.diffusion_model.X` (or a top-level connector key) without its `.weight`, minus the `model.` wrapper."""
    checkpoint_key = (transformer_key if component == "transformer" else connectors_key)(module + ".weight")
    return checkpoint_key.removeprefix("model.").removesuffix(".weight")


def official_lora_tensors(
    transformer_layers: LoraLayers,
    connector_layers: LoraLayers | None = None,
    kohya: bool = False,
    alpha: float | None = None,
) -> dict[str, torch.Tensor]:
    """Official-layout tensors; `kohya` writes `lora_down` / `lora_up` (+ `alpha` when given) instead of A / B."""
    down, up = ("lora_down", "lora_up") if kohya else ("lora_A", "lora_B")
    tensors = {}
    for component, layers in (("transformer", transformer_layers), ("connectors", connector_layers or {})):
        for module, (lora_a, lora_b) in layers.items():
            key = _official_module_key(module, component)
            tensors[f"{key}.{down}.weight"] = lora_a.contiguous()
            tensors[f"{key}.{up}.weight"] = lora_b.contiguous()
            if alpha is not None:
                tensors[f"{key}.alpha"] = torch.tensor(float(alpha))
    return tensors


def diffusers_lora_tensors(
    transformer_layers: LoraLayers, connector_layers: LoraLayers | None = None
) -> dict[str, torch.Tensor]:
    """diffusers-layout tensors: `transformer.<module>.lora_A.weight`, `connectors.<module>.lora_B.weight`."""
    tensors = {}
    for component, layers in (("transformer", transformer_layers), ("connectors", connector_layers or {})):
        for module, (lora_a, lora_b) in layers.items():
            tensors[f"{component}.{module}.lora_A.weight"] = lora_a.contiguous()
            tensors[f"{component}.{module}.lora_B.weight"] = lora_b.contiguous()
    return tensors


def write_lora(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path))
    return path
