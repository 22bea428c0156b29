"""LoRA files on the LTX-2 transformer and text connectors, as diffusers/PEFT adapters.

Accepted layouts (each `.safetensors`):
- official Lightricks / ComfyUI: `diffusion_model.<ltx-core module>.lora_A.weight` / `.lora_B.weight`, the layout
  ltx-trainer writes (PEFT state dict with a `diffusion_model.` prefix) and the reference loads through
  `LTXV_LORA_COMFY_RENAMING_MAP` (ltx-core `loader/sd_ops.py`); kohya-style `.lora_down` / `.lora_up` with an
  optional `.alpha` per layer are read too;
- diffusers: `transformer.<diffusers module>.lora_A.weight` (+ `connectors.*`), as `save_lora_weights` writes;
- bare PEFT: `<diffusers module>.lora_A.weight` (optionally under `base_model.model.`), for the transformer.

Key conversion and loading are diffusers' own (`LTX2LoraLoaderMixin.lora_state_dict`,
`load_lora_into_transformer`); this module adds what a product needs around them: checked inputs, connector keys
routed to the connectors, a shape check that names the file and the first mismatching layers before anything is
injected, strengths via `set_adapters`, per-stage adapter sets and fusing.

Scaling follows the reference: a layer's update is `strength * B @ A` (ltx-core `fuse_loras._prepare_deltas`
ignores any alpha). Files that carry an explicit `.alpha` per layer (kohya / ComfyUI convention) get the usual
`alpha / rank` factor, folded into B, as ComfyUI applies them; a diffusers file's own adapter metadata (its
`lora_alpha`) is honoured as diffusers does.

Adapter weights take their base layer's compute dtype and device (PEFT places them on load): the model's dtype, or,
beside weights stored in float8 (memory modes "fp8-storage", "24gb", "16gb"), the dtype those layers compute in
(`speed.acceleration.declare_compute_dtypes`, `Fp8StorageLinear.compute_dtype`), so LoRAs can be loaded, switched
and unloaded after the mode is applied without touching the fp8 weights; they are never fused into them.
"""

import logging
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders.lora_pipeline import LTX2LoraLoaderMixin

from . import constants
from .loading import CONNECTOR_RENAMES

logger = logging.getLogger(__name__)

# The model components a LoRA can adapt, as named on the pipeline and in diffusers' LoRA keys.
LORA_COMPONENTS: tuple[str, ...] = ("transformer", "connectors")
# Official-layout modules that diffusers' LTX-2 conversion maps onto the transformer but that live in the text
# connectors (see `loading.CONNECTOR_PREFIXES`, the same modules in a checkpoint).
_CONNECTOR_MODULES = ("video_embeddings_connector.", "audio_embeddings_connector.", "text_embedding_projection.")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_down|lora_up)\.weight$")
_MAX_LISTED_MISMATCHES = 5


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA file and the strength it is applied with (`strength * B @ A`, as the reference applies it)."""

    path: Path
    strength: float = constants.DEFAULT_LORA_STRENGTH


def check_lora_spec(path: str | Path, strength: float, argument: str = "lora") -> LoraSpec:
    """A validated `LoraSpec`; raises ValueError naming `argument`, the value and what is valid."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise ValueError(f"`{argument}` strength must be a number; got {strength!r} for {path}.")
    low, high = constants.MIN_LORA_STRENGTH, constants.MAX_LORA_STRENGTH
    if not math.isfinite(strength) or not low <= strength <= high:
        raise ValueError(f"`{argument}` strength must be between {low} and {high}; got {strength!r} for {path}.")
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"`{argument}` path must be a path to a .safetensors file; got {path!r}.")
    path = Path(path).expanduser()
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"`{argument}` must be a .safetensors LoRA file; got {str(path)!r}.")
    if not path.is_file():
        raise ValueError(f"`{argument}` file does not exist: {str(path)!r}.")
    return LoraSpec(path=path, strength=float(strength))


def check_lora_specs(
    loras: Iterable[LoraSpec | tuple[str | Path, float]] | None, argument: str = "loras"
) -> list[LoraSpec]:
    """Validates a list of `LoraSpec` or `(path, strength)` pairs, e.g. from `--lora PATH STRENGTH`."""
    if loras is None:
        return []
    if isinstance(loras, (str, Path, LoraSpec)):
        raise ValueError(f"`{argument}` must be a list of (path, strength) pairs; got {loras!r}.")
    specs = []
    for index, item in enumerate(loras):
        name = f"{argument}[{index}]"
        if isinstance(item, LoraSpec):
            specs.append(check_lora_spec(item.path, item.strength, name))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            specs.append(check_lora_spec(item[0], item[1], name))
        else:
            raise ValueError(f"`{name}` must be a (path, strength) pair or a LoraSpec; got {item!r}.")
    return specs


def parse_lora_argument(path: str, strength: str, argument: str = "--lora") -> LoraSpec:
    """`--lora PATH STRENGTH` from the command line: the strength arrives as text."""
    try:
        value = float(strength)
    except ValueError:
        raise ValueError(f"`{argument}` strength must be a number; got {strength!r} for {path}.") from None
    return check_lora_spec(path, value, argument)


def list_lora_files(folder: str | Path, argument: str = "lora_folder") -> list[Path]:
    """The `.safetensors` files under `folder` (subfolders included), sorted, for the app's LoRA picker."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"`{argument}` must be an existing folder; got {str(folder)!r}.")
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() == ".safetensors" and path.is_file())


# --- Reading and converting one file ----------------------------------------------------------------------------


def read_lora_state_dict(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict | None]:
    """The file's LoRA tensors under diffusers module names, split by component, and diffusers' adapter metadata.

    Returns `({"transformer": {module.lora_A.weight: tensor, ...}, "connectors": {...}}, metadata)`; kohya
    `.alpha` factors are already folded into `lora_B`.
    """
    try:
        # diffusers' LTX-2 conversion of the official layout (diffusion_model.* and text_embedding_projection.*).
        state_dict, metadata = LTX2LoraLoaderMixin.lora_state_dict(
            str(path.parent),
            weight_name=path.name,
            use_safetensors=True,
            local_files_only=True,
            return_lora_metadata=True,
        )
    except Exception as error:  # safetensors, OSError, JSON metadata: all mean "not a LoRA file we can read"
        raise ValueError(f"LoRA file {str(path)!r} could not be read as safetensors: {error}") from error
    if not state_dict:
        raise ValueError(f"LoRA file {str(path)!r} holds no tensors.")
    is_bare_peft = all(_LORA_KEY.match(key) or key.endswith(".alpha") for key in state_dict) and not any(
        key.startswith(f"{component}.") for key in state_dict for component in LORA_COMPONENTS
    )
    if is_bare_peft:
        # get_peft_model_state_dict of the transformer alone: keys are transformer modules.
        state_dict = {
            f"transformer.{key.removeprefix('base_model.model.')}": value for key, value in state_dict.items()
        }

    split: dict[str, dict[str, torch.Tensor]] = {component: {} for component in LORA_COMPONENTS}
    unplaced = []
    for key, value in state_dict.items():
        if key.startswith("text_embedding_projection."):
            continue  # diffusers copied these to `connectors.*` and, in a file without diffusion_model.*, kept them
        component, _, name = key.partition(".")
        if component == "transformer" and name.startswith(_CONNECTOR_MODULES):
            component, name = "connectors", _connector_name(name)
        if component not in split:
            unplaced.append(key)
            continue
        split[component][name] = value
    if unplaced:
        raise ValueError(
            f"LoRA file {str(path)!r} has keys for neither the transformer nor the text connectors "
            f"(first: {', '.join(sorted(unplaced)[:_MAX_LISTED_MISMATCHES])})."
        )
    return {component: _to_peft_layers(tensors, path) for component, tensors in split.items()}, metadata


def _connector_name(name: str) -> str:
    # The checkpoint's connector renames (loading.CONNECTOR_RENAMES); diffusers' LoRA conversion applied its
    # transformer renames (q_norm -> norm_q) already, which the connectors share.
    for old, new in CONNECTOR_RENAMES.items():
        name = name.replace(old, new)
    return name


def _to_peft_layers(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """kohya `lora_down` / `lora_up` / `alpha` -> PEFT `lora_A` / `lora_B` with alpha / rank folded into B."""
    alphas = {key.removesuffix(".alpha"): value for key, value in tensors.items() if key.endswith(".alpha")}
    layers: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.endswith(".alpha"):
            continue
        match = _LORA_KEY.match(key)
        if match is None:
            layers[key] = value  # reported by the fit check as a key that is not a LoRA layer
            continue
        module, kind = match["module"], match["kind"]
        kind = {"lora_down": "lora_A", "lora_up": "lora_B"}.get(kind, kind)
        layers[f"{module}.{kind}.weight"] = value
    for module, alpha in alphas.items():
        down, up = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        if down not in layers or up not in layers:
            raise ValueError(f"LoRA file {str(path)!r} has `{module}.alpha` without both LoRA matrices.")
        rank = layers[down].shape[0]
        layers[up] = layers[up] * (float(alpha) / rank)
    return layers


# --- Checking that a LoRA fits the model ----------------------------------------------------------------------------


def _linear_shape(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of a Linear, or of the Linear inside a PEFT LoRA wrapper; None otherwise."""
    base = getattr(module, "base_layer", module)
    if isinstance(base, torch.nn.Linear):
        return base.in_features, base.out_features
    return None


def lora_mismatches(layers: Mapping[str, torch.Tensor], model: torch.nn.Module, component: str) -> list[str]:
    """Human-readable reasons why `layers` (PEFT keys) do not fit `model`; empty when they fit."""
    modules = dict(model.named_modules())
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    problems = []
    for key, tensor in sorted(layers.items()):
        match = _LORA_KEY.match(key)
        if match is None:
            problems.append(f"{component}.{key}: not a LoRA weight (expected *.lora_A.weight / *.lora_B.weight)")
            continue
        by_module.setdefault(match["module"], {})[match["kind"]] = tensor
    for name, pair in by_module.items():
        where = f"{component}.{name}"
        if name not in modules:
            problems.append(f"{where}: no such module in the {component}")
            continue
        shape = _linear_shape(modules[name])
        if shape is None:
            problems.append(
                f"{where}: is a {type(modules[name]).__name__}, not a torch Linear "
                "(load LoRAs before fp8 products or other layer swaps: `fp8=True`)"
            )
            continue
        if set(pair) != {"lora_A", "lora_B"}:
            problems.append(f"{where}: has {sorted(pair)} but needs both lora_A and lora_B")
            continue
        in_features, out_features = shape
        lora_a, lora_b = pair["lora_A"], pair["lora_B"]
        expected_a = (lora_a.shape[0], in_features)
        expected_b = (out_features, lora_a.shape[0])
        if (
            lora_a.ndim != 2
            or lora_b.ndim != 2
            or tuple(lora_a.shape) != expected_a
            or tuple(lora_b.shape) != expected_b
        ):
            problems.append(
                f"{where}: lora_A {list(lora_a.shape)} / lora_B {list(lora_b.shape)} do not fit a "
                f"{in_features} -> {out_features} linear layer (need [rank, {in_features}] / [{out_features}, rank])"
            )
    return problems


def _check_fits(path: Path, layers: dict[str, dict[str, torch.Tensor]], pipe: Any) -> None:
    problems = []
    for component, tensors in layers.items():
        if not tensors:
            continue
        model = getattr(pipe, component, None)
        if model is None:
            problems.append(f"{component}: the pipeline has no {component}")
            continue
        problems.extend(lora_mismatches(tensors, model, component))
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED_MISMATCHES])
        more = (
            f" (and {len(problems) - _MAX_LISTED_MISMATCHES} more)" if len(problems) > _MAX_LISTED_MISMATCHES else ""
        )
        raise ValueError(f"LoRA file {str(path)!r} does not fit this model: {shown}{more}.")
    if not any(layers.values()):
        raise ValueError(f"LoRA file {str(path)!r} holds no LoRA layers (no *.lora_A / *.lora_B weights).")


# --- Loading, strengths, fusing ------------------------------------------------------------------------------------


def _loaded_adapters(model: torch.nn.Module | None) -> list[str]:
    return list(getattr(model, "peft_config", {}) or {})


def adapter_names(pipe: Any) -> list[str]:
    """Every adapter loaded on the pipeline's transformer or connectors, in load order."""
    names: list[str] = []
    for component in LORA_COMPONENTS:
        for name in _loaded_adapters(getattr(pipe, component, None)):
            if name not in names:
                names.append(name)
    return names


def _adapter_name(prefix: str, path: Path, taken: set[str]) -> str:
    stem = re.sub(r"[^0-9A-Za-z_]+", "_", path.stem).strip("_")[:48] or "lora"
    index = 0
    while f"{prefix}_{index}_{stem}" in taken:
        index += 1
    return f"{prefix}_{index}_{stem}"


def load_loras(
    pipe: Any,
    loras: Sequence[LoraSpec | tuple[str | Path, float]],
    *,
    adapter_prefix: str = "user",
    components: Sequence[str] = LORA_COMPONENTS,
) -> list[str]:
    """Loads each LoRA file as a PEFT adapter and activates exactly these adapters at their strengths.

    Every file is checked (readable, LoRA layers only, every layer fits the model) before any is injected, so a
    bad file leaves the pipeline as it was. Layers for a component not in `components` are skipped (logged).
    Returns the adapter names, in the order of `loras`.
    """
    if not re.fullmatch(r"[A-Za-z][0-9A-Za-z_]*", adapter_prefix):
        raise ValueError(f"`adapter_prefix` must be letters, digits and '_'; got {adapter_prefix!r}.")
    if not components or not set(components) <= set(LORA_COMPONENTS):
        raise ValueError(f"`components` must be a non-empty subset of {LORA_COMPONENTS}; got {components!r}.")
    specs = check_lora_specs(loras)
    prepared = []
    for spec in specs:
        layers, metadata = read_lora_state_dict(spec.path)
        for component in LORA_COMPONENTS:
            if component not in components and layers[component]:
                logger.info("%s: skipping its %d %s tensors", spec.path, len(layers[component]), component)
                layers[component] = {}
        _check_fits(spec.path, layers, pipe)
        prepared.append((spec, layers, metadata))

    taken = set(adapter_names(pipe))
    names = []
    for spec, layers, metadata in prepared:
        name = _adapter_name(adapter_prefix, spec.path, taken)
        taken.add(name)
        for component, tensors in layers.items():
            if not tensors:
                continue
            with warnings.catch_warnings():
                # Several adapters on one model is the point here; PEFT warns about it on every second load.
                warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                LTX2LoraLoaderMixin.load_lora_into_transformer(
                    {f"{component}.{key}": value for key, value in tensors.items()},
                    transformer=getattr(pipe, component),
                    adapter_name=name,
                    metadata=_component_metadata(metadata, component),
                    _pipeline=pipe,
                    # diffusers' default in `load_lora_weights`: no random init of the LoRA matrices first.
                    low_cpu_mem_usage=True,
                    prefix=component,
                )
        logger.info("Loaded LoRA %s as adapter %r (strength %g)", spec.path, name, spec.strength)
        names.append(name)
    if prepared:
        for component in components:
            _drop_compiled_graphs(getattr(pipe, component, None))
    set_lora_strengths(pipe, {name: spec.strength for name, (spec, _, _) in zip(names, prepared, strict=True)})
    return names


def _component_metadata(metadata: dict | None, component: str) -> dict | None:
    # diffusers' adapter metadata is keyed "<component>.<LoraConfig field>"; load_lora_adapter strips the prefix.
    if not metadata:
        return None
    return {key: value for key, value in metadata.items() if key.startswith(f"{component}.")} or None


def set_lora_strengths(pipe: Any, strengths: Mapping[str, float]) -> None:
    """Makes exactly the adapters in `strengths` active, each at its strength; strength 0 leaves it off.

    With no active adapter left, LoRA layers are disabled, so outputs equal the base model's bit for bit.
    """
    for name, strength in strengths.items():
        if name not in adapter_names(pipe):
            raise ValueError(f"LoRA adapter {name!r} is not loaded; loaded: {adapter_names(pipe)}.")
        low, high = constants.MIN_LORA_STRENGTH, constants.MAX_LORA_STRENGTH
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not low <= strength <= high:
            raise ValueError(f"LoRA strength for {name!r} must be between {low} and {high}; got {strength!r}.")
    for component in LORA_COMPONENTS:
        _set_component(pipe, component, dict(strengths))


def _lora_layers(model: torch.nn.Module) -> Iterable[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return (module for module in model.modules() if isinstance(module, BaseTunerLayer))


def _is_fused(model: torch.nn.Module | None) -> bool:
    return model is not None and any(layer.merged for layer in _lora_layers(model))


def _stores_weights_in_fp8(layer: Any) -> bool:
    """Whether a LoRA layer's base layer holds no full-precision weight to fuse into: an `Fp8StorageLinear` ("24gb"),
    a Linear whose weights a casting hook stores in float8 ("fp8-storage", "16gb"), an `Fp8Linear` (`fp8=True`)."""
    weight = getattr(layer.get_base_layer(), "weight", None)
    return weight is None or weight.element_size() == 1


def _check_weights_can_change(model: torch.nn.Module, component: str, fusing: bool) -> None:
    """Refuses to fuse LoRAs into, or take them out of, base layers whose weights are stored in float8: the update
    would be rounded to fp8's 3 mantissa bits, and taking it out again would not give back the weights. LoRAs
    loaded before such a mode was applied may have been fused into the full-precision weights then."""
    kinds = sorted(
        {type(layer.get_base_layer()).__name__ for layer in _lora_layers(model) if _stores_weights_in_fp8(layer)}
    )
    if not kinds:
        return
    if fusing:
        action, advice = (
            "fused into",
            "fuse them when loading, before the memory mode (`fuse_loras=True`, --fuse-loras), or leave them unfused",
        )
    else:
        action, advice = "taken out of", "they stay fused: load the model again to change or remove them"
    raise ValueError(
        f"LoRAs cannot be {action} the {component}'s {', '.join(kinds)} layers (weights stored in float8: memory "
        f"modes 'fp8-storage', '24gb' and '16gb', `fp8=True`); {advice}."
    )


def fuse_loras(pipe: Any) -> None:
    """Merges the active adapters, at their current strengths, into the base weights (no per-layer LoRA cost).

    For runs whose LoRAs and strengths stay fixed. Unfusing subtracts the same update again, which in bf16 does not
    give back the original weights exactly, so do not fuse and unfuse around every run.
    """
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if not _loaded_adapters(model) or _is_fused(model):
            continue
        layers = list(_lora_layers(model))
        if layers and not layers[0].disable_adapters:
            _check_weights_can_change(model, component, fusing=True)
            model.fuse_lora(adapter_names=list(layers[0].active_adapters))


def unfuse_loras(pipe: Any) -> None:
    """Takes fused adapters back out of the base weights; they stay loaded and active."""
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if _is_fused(model):
            _check_weights_can_change(model, component, fusing=False)
            model.unfuse_lora()


def unload_loras(pipe: Any, names: Sequence[str] | None = None) -> None:
    """Removes the named adapters (default: all) from the transformer and connectors, unfusing them first."""
    unfuse_loras(pipe)
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        loaded = _loaded_adapters(model)
        if not loaded:
            continue
        if names is None or set(loaded) <= set(names):
            model.unload_lora()
        else:
            model.delete_adapters([name for name in names if name in loaded])
        _drop_compiled_graphs(model)


def _drop_compiled_graphs(model: torch.nn.Module | None) -> None:
    """Drops the graphs torch.compile traced for `model`'s compiled modules (the regionally compiled blocks of
    `SpeedOptions(compile=True)`), after adapters were added or removed; they are traced again at their next forward.

    PEFT's layers, adapter names and scalings are part of what is traced, so each adapter set gets graphs of its own,
    and torch.compile keeps them all for the blocks' shared code up to `torch._dynamo.config.recompile_limit` (8),
    past which a block compiled with fullgraph=True fails the run (the studio's ninth LoRA file). As forward graphs
    do (`speed.forward_graphs`), only the current set's are kept.
    """
    if model is None:
        return
    compiled = {type(module) for module in model.modules() if getattr(module, "_compiled_call_impl", None) is not None}
    for module_class in compiled:
        torch._dynamo.eval_frame.remove_from_cache(module_class.forward)
        logger.info("Dropped the compiled graphs of %s (the LoRA set changed).", module_class.__name__)


def lora_fingerprint(model: torch.nn.Module | None) -> tuple:
    """What the model's LoRA layers currently add: for a cache key of outputs computed with `model`.

    `()` when no adapter is active; otherwise the active adapters with their scalings and whether they are fused.
    """
    if model is None:
        return ()
    state = set()
    for layer in _lora_layers(model):
        if layer.disable_adapters:
            continue
        for name in layer.active_adapters:
            if name in layer.scaling:
                state.add((name, float(layer.scaling[name]), name in layer.merged_adapters))
    return tuple(sorted(state))


# --- Per-stage adapter sets (reference two-stage pipelines) ---------------------------------------------------------


@dataclass(frozen=True)
class StageLoras:
    """Which adapters run in each stage, at which strength.

    The reference two-stage pipelines build stage 1 with the user's LoRAs and stage 2 with the user's LoRAs plus
    the distilled LoRA (ltx-pipelines `ti2vid_two_stages.py`, `a2vid_two_stage.py`). `for_stage` switches the
    transformer to one set; the connectors keep stage 1's set throughout, because prompts are encoded once,
    before stage 1. Stage-2-only LoRAs are loaded onto the transformer alone: the reference hands them to its
    diffusion stage only, so any connector layers they carry are skipped (logged).
    """

    stage_1: Mapping[str, float] = field(default_factory=dict)  # adapter name -> strength
    stage_2: Mapping[str, float] = field(default_factory=dict)
    fuse: bool = False  # merge each stage's set into the weights; only when both stages use the same set
    # adapter name -> (group, file identity), so `update` reuses adapters whose file has not changed
    files: Mapping[str, tuple[str, tuple]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fuse and dict(self.stage_1) != dict(self.stage_2):
            raise ValueError(
                "`fuse` needs the same LoRAs and strengths in both stages (fused weights cannot switch cheaply or "
                f"exactly between stages); got stage 1 {dict(self.stage_1)} and stage 2 {dict(self.stage_2)}."
            )

    @classmethod
    def load(
        cls,
        pipe: Any,
        loras: Sequence[LoraSpec | tuple[str | Path, float]] = (),
        stage_2_loras: Sequence[LoraSpec | tuple[str | Path, float]] = (),
        fuse: bool = False,
    ) -> "StageLoras":
        """Loads `loras` for both stages and `stage_2_loras` (e.g. the official distilled LoRA) for stage 2 only.

        Leaves stage 1's set active. `loras` items are `LoraSpec`s or `(path, strength)` pairs.
        """
        return cls().update(pipe, loras, stage_2_loras, fuse)

    def update(
        self,
        pipe: Any,
        loras: Sequence[LoraSpec | tuple[str | Path, float]] = (),
        stage_2_loras: Sequence[LoraSpec | tuple[str | Path, float]] = (),
        fuse: bool = False,
    ) -> "StageLoras":
        """The sets for a new request: adapters of unchanged files are kept (only strengths change), adapters of
        files no longer asked for are unloaded, new files are loaded. Returns the new `StageLoras`."""
        groups = {"user": check_lora_specs(loras, "loras"), "stage2": check_lora_specs(stage_2_loras, "stage_2_loras")}
        if fuse and groups["stage2"]:
            raise ValueError(
                "`fuse` needs the same LoRAs in both stages (fused weights cannot switch cheaply or exactly between "
                f"stages); got {len(groups['stage2'])} stage-2-only LoRA(s). Leave them unfused."
            )
        wanted: dict[tuple[str, tuple], LoraSpec] = {}
        for group, specs in groups.items():
            for spec in specs:
                identity = (group, _file_identity(spec.path))
                if identity in wanted:
                    raise ValueError(f"LoRA file {str(spec.path)!r} is listed twice; give it once with one strength.")
                wanted[identity] = spec
        unfuse_loras(pipe)
        kept = {identity: name for name, identity in self.files.items() if identity in wanted}
        stale = [name for name, identity in self.files.items() if identity not in wanted]
        if stale:
            unload_loras(pipe, stale)
        for group in groups:
            missing = [
                (identity, spec) for identity, spec in wanted.items() if identity[0] == group and identity not in kept
            ]
            # Stage-2-only LoRAs go on the transformer alone: prompts are encoded once, before stage 1, and the
            # reference applies its stage-2 LoRAs to the diffusion transformer only (its prompt encoder gets none).
            targets = ("transformer",) if group == "stage2" else LORA_COMPONENTS
            specs = [spec for _, spec in missing]
            names = load_loras(pipe, specs, adapter_prefix=group, components=targets) if missing else []
            kept.update({identity: name for (identity, _), name in zip(missing, names, strict=True)})
        stage_1 = {kept[identity]: spec.strength for identity, spec in wanted.items() if identity[0] == "user"}
        stage_2 = stage_1 | {
            kept[identity]: spec.strength for identity, spec in wanted.items() if identity[0] == "stage2"
        }
        stages = StageLoras(stage_1, stage_2, fuse, {name: identity for identity, name in kept.items()})
        stages.for_stage(pipe, 1)
        return stages

    def for_stage(self, pipe: Any, stage: int) -> None:
        """Activates this stage's adapters on the transformer (and stage 1's on the connectors)."""
        if stage not in (1, 2):
            raise ValueError(f"`stage` must be 1 or 2; got {stage!r}.")
        strengths = dict(self.stage_1 if stage == 1 else self.stage_2)
        transformer = pipe.transformer
        if not _loaded_adapters(transformer):
            return
        if self.fuse:
            if not _is_fused(transformer):
                set_lora_strengths(pipe, strengths)
                fuse_loras(pipe)
            return
        _set_component(pipe, "transformer", strengths)
        _set_component(pipe, "connectors", dict(self.stage_1))


def _file_identity(path: Path) -> tuple:
    """Resolved path, size and modification time: a file rewritten in place counts as a new file."""
    status = path.stat()
    return (str(path.resolve()), status.st_size, status.st_mtime_ns)


def _set_component(pipe: Any, component: str, strengths: dict[str, float]) -> None:
    """Activates the adapters of `strengths` that this component holds; disables its LoRA layers if none."""
    model = getattr(pipe, component, None)
    loaded = _loaded_adapters(model)
    if not loaded:
        return
    if _is_fused(model):
        raise ValueError(f"The {component}'s LoRAs are fused; call `unfuse_loras(pipe)` before changing them.")
    active = {name: float(value) for name, value in strengths.items() if name in loaded and value != 0}
    if active:
        model.enable_lora()
        model.set_adapters(list(active), weights=list(active.values()))
    else:
        model.disable_lora()
