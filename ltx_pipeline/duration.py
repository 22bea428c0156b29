""" "Length from the prompt": LTX-2.5's duration head predicts how long the clip a prompt describes should be.

The head reads the text connectors' outputs for the prompt (reference `DurationPredictor`, Lightricks/LTX-2 1.2.0
`ltx_pipelines/utils/blocks.py`; diffusers `LTX2DurationHead`), so the prompt is encoded the way generation encodes
it: a leading `<bos>` (the Gemma 4 tokenizer does not add one; the reference prepends it), left padding to
`max_sequence_length`, every Gemma hidden state stacked. The predicted seconds are clamped to
[`min_seconds`, `max_seconds`] and snapped to the VAE's 8k + 1 frame grid by diffusers' `predict_num_frames`.
"""

import logging
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.pipelines.ltx2 import LTX2DurationHead, LTX2TextConnectors

from ltx_pipeline import constants, versions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DurationPrediction:
    num_frames: int  # on the 8k + 1 grid, within the bounds (or the nearest grid point when none is inside)
    seconds: float  # num_frames / frame_rate
    predicted_seconds: float  # the head's raw prediction, before clamping and snapping


def encode_for_connectors(
    prompt: str, tokenizer: Any, text_encoder: torch.nn.Module, max_sequence_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked hidden states (1, T, D * (layers + 1)) and their mask (1, T), left padded, `<bos>` first."""
    input_ids = tokenizer(prompt.strip(), truncation=True, max_length=max_sequence_length).input_ids
    if tokenizer.bos_token_id is not None and (not input_ids or input_ids[0] != tokenizer.bos_token_id):
        input_ids = [tokenizer.bos_token_id, *input_ids][:max_sequence_length]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    padding = max_sequence_length - len(input_ids)
    device = next(text_encoder.parameters()).device
    ids = torch.tensor([[pad_id] * padding + input_ids], device=device)
    mask = torch.tensor([[0] * padding + [1] * len(input_ids)], device=device)
    hidden_states = text_encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    # (B, T, D) x (layers + 1) -> (B, T, D, layers + 1) -> (B, T, D * (layers + 1)), as diffusers' LTX2Pipeline packs
    return torch.stack(hidden_states, dim=-1).flatten(2, 3), mask


@torch.no_grad()
def predict_num_frames(
    prompt: str,
    *,
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    connectors: LTX2TextConnectors,
    duration_head: LTX2DurationHead | None,
    frame_rate: float = constants.DEFAULT_FRAME_RATE,
    min_seconds: float = versions.AUTO_DURATION_MIN_SECONDS,
    max_seconds: float = versions.AUTO_DURATION_MAX_SECONDS,
    max_sequence_length: int = constants.MAX_SEQUENCE_LENGTH,
) -> DurationPrediction:
    """The frame count the prompt's scene calls for, from LTX-2.5's duration head.

    Pass the components of a loaded LTX-2.5 model (`LoadedModel.components` and `LoadedModel.duration_head`).
    """
    if duration_head is None:
        raise ValueError(
            "`duration_head` is None: length from the prompt needs LTX-2.5's duration head "
            f"({versions.OFFICIAL_FILES_2_5['duration_head']!r}); LTX-2.3 and 2.0 have none. Set the length instead."
        )
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"`prompt` must be a non-empty string; got {prompt!r}.")
    if not constants.MIN_FRAME_RATE <= frame_rate <= constants.MAX_FRAME_RATE:
        raise ValueError(
            f"`frame_rate` must be between {constants.MIN_FRAME_RATE} and {constants.MAX_FRAME_RATE} fps; "
            f"got {frame_rate!r}."
        )
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(
            f"`min_seconds` and `max_seconds` must satisfy 0 < min_seconds <= max_seconds; got {min_seconds!r} and "
            f"{max_seconds!r}."
        )
    prompt_embeds, mask = encode_for_connectors(prompt, tokenizer, text_encoder, max_sequence_length)
    connector_dtype = connectors.dtype  # the compute dtype: the fp8 memory modes store the weights in float8
    video_tokens, audio_tokens, _ = connectors(prompt_embeds.to(connector_dtype), mask, padding_side="left")
    predicted_seconds = duration_head(video_tokens, audio_tokens).item()
    num_frames = duration_head.predict_num_frames(
        video_tokens,
        audio_tokens,
        frame_rate=frame_rate,
        temporal_compression_ratio=constants.VIDEO_TEMPORAL_COMPRESSION,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
    )
    return DurationPrediction(num_frames, num_frames / frame_rate, predicted_seconds)
