"""The transformer's whole forward replayed as CUDA graphs (`SpeedOptions(forward_graph=True)`).

`cuda_graphs=True` lets torch.compile record a graph per block, and each replay copies the block's inputs into its
graph's buffers; between the 48 blocks the CPU still launches, checks dynamo's guards and copies. Here the whole
forward is one graph per call signature, replayed after one copy of the inputs, with the same outputs; it gains most
at stage 1's small size, where those launches and copies weigh most (measured in benchmarks/RESULTS.md).

A replay skips everything Python would check, so a graph is reused only for the same signature: the shapes, dtypes
and devices of the tensor arguments, the values of the others, where the weights are, grad mode, and a `state` the
caller vouches for, the transformer's LoRA fingerprint (`lora.lora_fingerprint`: adapters and strengths are baked
into a graph). The pipelines compute it once per denoising loop, since it takes milliseconds. A new state drops
every graph recorded under another one.

The first call of a signature runs the forward as usual, on a side stream (so it also warms up compilation,
autotuning and cuBLAS there, outside any capture), then records it; later calls copy their tensors into the graph's
input buffers, replay it and return copies of its outputs. Graphs share one memory pool, which is safe because
replays run one at a time (a lock, and each replay's stream waits for the previous one). Where a graph cannot be
recorded (no CUDA, modules with hooks, such as diffusers' offloading or layerwise casting, an argument with no
comparable value, an operation a capture refuses), the forward runs as usual, and a refused capture is logged once.
Hooks added to the blocks after a signature was recorded are not seen by its replays.
"""

import logging
import os
import threading
import traceback
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .. import constants
from ..lora import lora_fingerprint
from ..positions import token_positions

logger = logging.getLogger(__name__)

_ATTRIBUTE = constants.FORWARD_RUNNER_ATTRIBUTE  # where `enable` keeps a transformer's graphs; the engine calls them
_PLAIN_VALUES = (bool, int, float, str, type(None))


class _Graph:
    """One recorded forward: its input buffers, the graph, and the outputs it writes."""

    def __init__(self, static: dict[str, Any], graph: torch.cuda.CUDAGraph, outputs: Any) -> None:
        self.static = static
        self.tensor_names = [name for name, value in static.items() if torch.is_tensor(value)]
        self.graph = graph
        self.output_leaves, self.output_spec = tree_flatten(outputs)

    def replay(self, kwargs: dict[str, Any]) -> Any:
        for name in self.tensor_names:
            if name in kwargs:  # the rotary coordinates made at recording are not passed again
                self.static[name].copy_(kwargs[name])
        self.graph.replay()
        leaves = [leaf.clone() if torch.is_tensor(leaf) else leaf for leaf in self.output_leaves]
        return tree_unflatten(leaves, self.output_spec)


class ForwardGraphs:
    """A transformer's recorded forwards, by call signature (see the module's docstring)."""

    def __init__(self) -> None:
        self.graphs: dict[tuple, _Graph] = {}
        self.refused: set[tuple | None] = set()
        self.recordings = 0  # recordings attempted so far (a new signature each)
        self.lock = threading.Lock()
        self.pool = None
        self.stream: torch.cuda.Stream | None = None
        self.last_replay: torch.cuda.Event | None = None

    def loop_state(self, transformer: torch.nn.Module) -> tuple:
        """What the recorded forwards depend on besides their inputs, fixed during a denoising loop and milliseconds
        to find, so the engine asks once per loop: the LoRA fingerprint."""
        return lora_fingerprint(transformer)

    def __call__(self, transformer: torch.nn.Module, state: tuple, kwargs: dict[str, Any]) -> Any:
        hidden_states = kwargs.get("hidden_states")
        on_cuda = torch.is_tensor(hidden_states) and hidden_states.is_cuda
        hooked = on_cuda and _hooked(transformer)
        if hooked and not self.refused:
            self.refuse(None, "the transformer has forward hooks")
        key = signature(transformer, state, kwargs) if on_cuda and not hooked else None
        if key is None:
            return transformer(**kwargs)
        with self.lock:
            graph = self.graphs.get(key)
            if graph is None and key in self.refused:
                return transformer(**kwargs)
            if self.last_replay is not None:  # the buffers and the pool are free once the last replay is done
                torch.cuda.current_stream().wait_event(self.last_replay)
            if graph is None:
                outputs = self.record(transformer, key, kwargs)
            else:
                outputs = graph.replay(kwargs)
            self.last_replay = torch.cuda.Event()
            self.last_replay.record()
            return outputs

    def record(self, transformer: torch.nn.Module, key: tuple, kwargs: dict[str, Any]) -> Any:
        """Runs the forward for `kwargs` (its outputs are returned) and records it as the graph of `key`."""
        self.recordings += 1
        if self.graphs:  # what differs from the signature recorded last, for a reader wondering why it records again
            last = next(reversed(self.graphs))
            changed = [part for part, before in zip(key, last, strict=False) if part != before]
            logger.info("Recording the transformer's forward for a new signature; changed: %s", changed)
        state = key[0]
        for stale in [old for old in self.graphs if old[0] != state]:
            del self.graphs[stale]
        if len(self.graphs) >= constants.FORWARD_GRAPHS_KEPT:
            del self.graphs[next(iter(self.graphs))]  # the oldest
        static = {name: value.clone() if torch.is_tensor(value) else value for name, value in kwargs.items()}
        add_rotary_coordinates(transformer, static)
        hooked = any(_hooked(module) for module in transformer.modules())
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
            self.stream = torch.cuda.Stream(kwargs["hidden_states"].device)
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            outputs = transformer(**static)  # this call's answer; compiles and warms up outside the capture
            if hooked:
                self.refuse(key, "its modules have hooks (e.g. diffusers' offloading or layerwise casting)")
            else:
                graph = torch.cuda.CUDAGraph()
                try:
                    with torch.cuda.graph(
                        graph, pool=self.pool, stream=self.stream, capture_error_mode="thread_local"
                    ):
                        graph_outputs = transformer(**static)
                except RuntimeError as error:
                    message = str(error).splitlines()[0] if str(error) else ""
                    self.refuse(key, f"{type(error).__name__}: {message} (at {_raised_at(error)})")
                else:
                    self.graphs[key] = _Graph(static, graph, graph_outputs)
        current.wait_stream(self.stream)
        for leaf in tree_flatten(outputs)[0]:
            if torch.is_tensor(leaf):
                leaf.record_stream(current)  # made on the side stream, used on this one
        return outputs

    def refuse(self, key: tuple | None, reason: str) -> None:
        if not self.refused:
            logger.warning("The transformer's forward runs without a CUDA graph for these inputs: %s", reason)
        self.refused.add(key)


def _raised_at(error: BaseException) -> str:
    """Where `error` was raised: the three innermost frames outside PyTorch's own code (the model's or the project's
    lines that did what a capture refuses, or the compiled code's), innermost last, as "file:line in function"."""
    frames = traceback.extract_tb(error.__traceback__)
    outside = [frame for frame in frames if f"{os.sep}torch{os.sep}" not in frame.filename] or frames
    if not outside:
        return "unknown"
    return " > ".join(f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" for frame in outside[-3:])


def _hooked(module: torch.nn.Module) -> bool:
    """Hooks must see every forward, and a replay runs none: diffusers' (offloading, layerwise casting) or torch's.
    An empty diffusers registry is no hook: every pipeline run leaves one on the transformer
    (`maybe_free_model_hooks` resets the stateful hooks through it)."""
    registry = getattr(module, "_diffusers_hook", None)
    return bool(module._forward_pre_hooks or module._forward_hooks or (registry is not None and registry.hooks))


def signature(transformer: torch.nn.Module, state: tuple, kwargs: dict[str, Any]) -> tuple | None:
    """What a recorded forward depends on beyond its tensors' values; None where no graph can be used."""
    weights = next(transformer.parameters(), None)
    parts: list[Any] = [
        state,
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
        None if weights is None else (weights.device, weights.data_ptr()),  # the weights moved: a new graph
    ]
    for name, value in sorted(kwargs.items()):
        if torch.is_tensor(value):
            parts.append((name, tuple(value.shape), value.dtype, value.device))
        elif isinstance(value, _PLAIN_VALUES):
            parts.append((name, value))
        elif isinstance(value, (list, tuple)) and all(isinstance(item, _PLAIN_VALUES) for item in value):
            parts.append((name, tuple(value)))
        else:
            return None  # e.g. an `attention_kwargs` dict: no value to compare cheaply
    return tuple(parts)


def add_rotary_coordinates(transformer: torch.nn.Module, static: dict[str, Any]) -> None:
    """The rotary coordinates as inputs made once, where the caller gave none (`positions.token_positions`: the
    forward's own making copies from the host, which a capture cannot hold); they depend only on the signature."""
    if static.get("video_coords") is not None and static.get("audio_coords") is not None:
        return
    hidden_states = static["hidden_states"]
    video, audio = token_positions(
        transformer, hidden_states.shape[0], static["num_frames"], static["height"], static["width"],
        static.get("fps", 24.0), static["audio_num_frames"], hidden_states.device,  # 24: the forward's default
    )  # fmt: skip
    for name, made in (("video_coords", video), ("audio_coords", audio)):
        if static.get(name) is None:
            static[name] = made


def enable(transformer: torch.nn.Module) -> None:
    """Records and replays `transformer`'s forward as CUDA graphs wherever `forward` is called with it."""
    setattr(transformer, _ATTRIBUTE, ForwardGraphs())


def recorded(transformer: torch.nn.Module) -> ForwardGraphs | None:
    """`transformer`'s graphs, None where `enable` was not called on it."""
    return getattr(transformer, _ATTRIBUTE, None)


def enabled(transformer: torch.nn.Module) -> bool:
    return recorded(transformer) is not None


def forward(transformer: torch.nn.Module, state: tuple, **kwargs: Any) -> Any:
    """`transformer(**kwargs)`, replayed from a CUDA graph where `enable` was called on it and the call's signature
    (with `state`, see the module's docstring) was recorded before."""
    graphs = recorded(transformer)
    if graphs is None:
        return transformer(**kwargs)
    return graphs(transformer, state, kwargs)
