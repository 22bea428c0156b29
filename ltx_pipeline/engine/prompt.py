"""A prompt after the text encoder and the per-modality connectors."""

import threading
from dataclasses import dataclass

import torch

# A studio's pipelines share one tokenizer, and a fast tokenizer keeps its padding and truncation settings between
# calls: a call without padding in one thread strips the padding from another's encoding midway. Every tokenizer call
# of the pipelines holds this lock.
TOKENIZER_LOCK = threading.Lock()


@dataclass(frozen=True)
class TextConditioning:
    """One prompt after the text encoder and the per-modality connectors."""

    video: torch.Tensor  # (B, S, video_cross_attention_dim)
    audio: torch.Tensor  # (B, S, audio_cross_attention_dim)
    mask: torch.Tensor  # (B, S), 1 where a token is real
    # Every token is real, as after LTX-2.x's connectors (their learnable registers replace the padding). The
    # transformer then gets no mask: its additive bias would be all zeros, so the softmax is the same, and attention
    # runs its unmasked kernels.
    all_real: bool = False

    @property
    def transformer_mask(self) -> torch.Tensor | None:
        """The mask the transformer's text cross-attentions take: None where every token is real."""
        return None if self.all_real else self.mask
