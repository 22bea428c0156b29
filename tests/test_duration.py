"""Length from the prompt: LTX-2.5's duration head on tiny real components, seeded."""

import copy
import math

import pytest
import torch

from ltx_pipeline import tiny
from ltx_pipeline.duration import encode_for_connectors, predict_num_frames

PROMPT = "a man speaks in a dark room"


@pytest.fixture(scope="module")
def components() -> dict:
    return {**tiny.build_tiny_components("2.5"), "duration_head": tiny.build_tiny_duration_head()}


def head_predicting(components: dict, seconds: float) -> torch.nn.Module:
    """The tiny head made to predict `seconds` for any prompt (its last layer outputs log-seconds)."""
    head = copy.deepcopy(components["duration_head"])
    with torch.no_grad():
        head.mlp_out.weight.zero_()
        head.mlp_out.bias.fill_(math.log(seconds))
    return head


def predict(components: dict, **kwargs) -> object:
    parts = {name: components[name] for name in ("tokenizer", "text_encoder", "connectors", "duration_head")}
    return predict_num_frames(PROMPT, **{**parts, "max_sequence_length": 32, **kwargs})


@pytest.mark.parametrize(
    ("seconds", "frame_rate", "num_frames"),
    [
        (6.0, 24.0, 137),  # 144 frames, floored onto the 8k + 1 grid
        (100.0, 24.0, 473),  # clamped to 20 s = 480 frames, then snapped
        (0.1, 24.0, 25),  # clamped up to 1 s = 24 frames; flooring to 17 would undershoot, so the next grid point
        (6.0, 25.0, 145),
    ],
)
def test_prediction_becomes_a_frame_count_on_the_grid_within_bounds(
    components: dict, seconds: float, frame_rate: float, num_frames: int
) -> None:
    result = predict(components, duration_head=head_predicting(components, seconds), frame_rate=frame_rate)
    assert result.predicted_seconds == pytest.approx(seconds, rel=1e-5)
    assert result.num_frames == num_frames
    assert result.seconds == pytest.approx(num_frames / frame_rate)


def test_custom_bounds(components: dict) -> None:
    result = predict(components, duration_head=head_predicting(components, 9.0), min_seconds=2.0, max_seconds=4.0)
    assert result.num_frames == 89  # clamped to 4 s = 96 frames, floored to 8 * 11 + 1


def test_prediction_depends_on_the_prompt(components: dict) -> None:
    parts = {name: components[name] for name in ("tokenizer", "text_encoder", "connectors", "duration_head")}
    first = predict_num_frames("a bell rings", **parts, max_sequence_length=32).predicted_seconds
    second = predict_num_frames("rain and wind in a city street at night", **parts, max_sequence_length=32)
    assert first != second.predicted_seconds


def test_prompt_starts_with_bos_even_when_the_tokenizer_adds_none(components: dict) -> None:
    tokenizer, encoder = components["tokenizer"], components["text_encoder"]
    ids = tokenizer(PROMPT).input_ids
    assert ids[0] != tokenizer.bos_token_id  # like Gemma 4's tokenizer
    embeds, mask = encode_for_connectors(PROMPT, tokenizer, encoder, max_sequence_length=16)
    expected_ids = [tokenizer.pad_token_id] * (16 - len(ids) - 1) + [tokenizer.bos_token_id, *ids]
    assert mask.tolist() == [[0] * (16 - len(ids) - 1) + [1] * (len(ids) + 1)]
    with torch.no_grad():
        hidden = encoder(input_ids=torch.tensor([expected_ids]), attention_mask=mask, output_hidden_states=True)
    assert torch.equal(embeds, torch.stack(hidden.hidden_states, dim=-1).flatten(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_head": None}, r"`duration_head` is None: length from the prompt needs LTX-2.5's duration head"),
        ({"frame_rate": 0.0}, r"`frame_rate` must be between 1.0 and 60.0 fps; got 0.0"),
        ({"min_seconds": 5.0, "max_seconds": 2.0}, r"got 5.0 and 2.0"),
    ],
)
def test_invalid_arguments_are_named(components: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predict(components, **kwargs)
