"""Which stream's self-attention an STG pass skips.

diffusers' LTX-2 transformer skips the self-attention of both streams in its `spatio_temporal_guidance_blocks`. The
reference skips a stream's only where that stream's guider does STG (`multi_modal_guider_denoising_func` in
ltx-pipelines 1.0.0 builds `SKIP_VIDEO_SELF_ATTN` and `SKIP_AUDIO_SELF_ATTN` per guider). They differ when one stream
has STG and the other none, as in A2V, whose held audio has no guidance: on the tiny official file the first dev
step's video estimate moved by 6e-4 (rel. L2) from the reference's (tests/test_parity.py).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

SELF_ATTENTIONS = {"video": "attn1", "audio": "audio_attn1"}  # the diffusers block's attribute per stream


@contextmanager
def perturb_only(transformer: torch.nn.Module, blocks: tuple[int, ...], streams: set[str]) -> Iterator[None]:
    """Within the context, an STG pass over `blocks` leaves the self-attention of every stream not in `streams`
    unperturbed. Nothing changes where `streams` holds both."""
    spared = [attribute for stream, attribute in SELF_ATTENTIONS.items() if stream not in streams]
    handles = []
    if spared:
        # A hook on the transformer itself: recorded forward graphs (`forward_graphs`) run none of these hooks, and
        # they replay only for a transformer without any.
        handles.append(transformer.register_forward_pre_hook(_unchanged))
        for index in blocks:
            block = transformer.transformer_blocks[index]
            for attribute in spared:
                attention = getattr(block, attribute)
                handles.append(attention.register_forward_pre_hook(_unperturbed, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _unperturbed(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    return args, {**kwargs, "perturbation_mask": None, "all_perturbed": False}


def _unchanged(module: torch.nn.Module, args: tuple) -> None:
    return None
