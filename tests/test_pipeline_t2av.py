import math

import numpy as np
import pytest
import torch
from transformers import GemmaTokenizer

from ltx_pipeline import (
    Finished,
    GenerationCancelled,
    StageDecoded,
    StepPreview,
    TI2VidTwoStagesPipeline,
)
from ltx_pipeline.constants import DISTILLED_STAGE_1_SIGMAS, DISTILLED_STAGE_2_SIGMAS
from ltx_pipeline.engine import transformer_velocity
from ltx_pipeline.engine.prompt import TOKENIZER_LOCK, TextConditioning
from ltx_pipeline.engine.streams import NoiseSource

SMALL = {"prompt": "a red ball bounces on a metal floor", "height": 64, "width": 64, "num_frames": 9, "seed": 0}


@pytest.fixture
def pipe(tiny_components):
    return TI2VidTwoStagesPipeline(**tiny_components)


def final(events):
    return [event for event in events if isinstance(event, Finished)][0].output


@pytest.mark.parametrize("version", ["2.3", "2.0"])
@pytest.mark.parametrize("mode", ["distilled", "dev"])
def test_generates_video_and_audio_of_equal_duration(version, mode, tiny_components, tiny_components_2_0):
    components = tiny_components if version == "2.3" else tiny_components_2_0
    pipe = TI2VidTwoStagesPipeline(**components)
    steps = 2 if mode == "dev" else None
    output = pipe(**SMALL | {"num_frames": 17, "frame_rate": 25.0}, mode=mode, num_inference_steps=steps)
    assert output.frames.shape == (17, 64, 64, 3)
    assert output.frames.dtype == np.uint8
    assert output.frames.flags["C_CONTIGUOUS"]  # one plain block for the mp4 writer, not a strided view
    assert output.audio.num_channels == 2
    assert output.audio.sampling_rate == pipe.vocoder.config.output_sampling_rate
    assert output.audio.num_samples == math.floor(17 / 25 * output.audio.sampling_rate)
    assert torch.isfinite(output.audio.waveform).all()
    assert output.recipe["mode"] == mode


def test_events_arrive_in_order_with_their_fields(pipe):
    events = list(pipe.stream(**SMALL))
    kinds = [type(event).__name__ for event in events]
    stage_1 = len(DISTILLED_STAGE_1_SIGMAS) - 1
    stage_2 = len(DISTILLED_STAGE_2_SIGMAS) - 1
    assert kinds == ["StepPreview"] * stage_1 + ["StageDecoded"] + ["StepPreview"] * stage_2 + ["Finished"]
    previews = [event for event in events if isinstance(event, StepPreview)]
    assert [(p.stage, p.step, p.total_steps) for p in previews] == [(1, i, stage_1) for i in range(1, stage_1 + 1)] + [
        (2, i, stage_2) for i in range(1, stage_2 + 1)
    ]
    assert all(p.video.dtype == np.uint8 and p.video.ndim == 4 and p.video.shape[-1] == 3 for p in previews)
    assert all(p.audio is not None and p.audio.num_samples > 0 for p in previews)
    elapsed = [event.elapsed_s for event in events]
    assert elapsed == sorted(elapsed)
    stage_decoded = events[stage_1]
    assert isinstance(stage_decoded, StageDecoded)
    assert stage_decoded.frames.shape == (9, 32, 32, 3)  # half resolution
    assert stage_decoded.audio.duration_s == pytest.approx(9 / 24, abs=1 / 24)


def test_distilled_mode_runs_one_transformer_pass_per_step(pipe):
    calls = []
    handle = pipe.transformer.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    try:
        pipe(**SMALL)
    finally:
        handle.remove()
    assert len(calls) == len(DISTILLED_STAGE_1_SIGMAS) - 1 + len(DISTILLED_STAGE_2_SIGMAS) - 1


def test_dev_mode_runs_cfg_stg_and_modality_passes(pipe):
    calls = []
    handle = pipe.transformer.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        pipe(**SMALL, mode="dev", num_inference_steps=3)
    finally:
        handle.remove()
    # Stage 1: batched cond+uncond, STG, isolated modality = 3 passes a step; stage 2: one pass a step.
    assert len(calls) == 3 * 3 + len(DISTILLED_STAGE_2_SIGMAS) - 1


def test_same_seed_same_clip_other_seed_other_clip(pipe):
    first, again, other = pipe(**SMALL), pipe(**SMALL), pipe(**SMALL | {"seed": 1})
    assert np.array_equal(first.frames, again.frames)
    assert torch.equal(first.audio.waveform, again.audio.waveform)
    assert not np.array_equal(first.frames, other.frames)


def test_modality_scale_changes_the_result(pipe):
    plain = pipe(**SMALL, modality_scale=1.0)
    synced = pipe(**SMALL, modality_scale=3.0)
    assert not np.array_equal(plain.frames, synced.frames)


def test_cancel_stops_between_steps_and_the_pipeline_runs_again(pipe):
    events = []
    for event in pipe.stream(**SMALL):
        events.append(event)
        if len(events) == 2:
            pipe.cancel()
    assert len(events) == 2
    assert not any(isinstance(event, Finished) for event in events)
    assert pipe(**SMALL).frames.shape == (9, 64, 64, 3)  # the flag does not leak into the next run


def test_call_raises_when_cancelled_midway(pipe):
    def stop_at_first_preview(event_stream):
        for event in event_stream:
            pipe.cancel()
            yield event

    stream = pipe.stream
    pipe.stream = lambda **kwargs: stop_at_first_preview(stream(**kwargs))
    with pytest.raises(GenerationCancelled):
        pipe(**SMALL)


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    loaded = TI2VidTwoStagesPipeline.from_pretrained(tmp_path / "model")
    original, reloaded = pipe(**SMALL), loaded(**SMALL)
    # Reloaded weights are bit-equal; the decoder's float rounding may differ by one level of 255.
    assert np.abs(original.frames.astype(int) - reloaded.frames.astype(int)).max() <= 1
    assert torch.allclose(original.audio.waveform, reloaded.audio.waveform, atol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_frames": 100}, "`num_frames` must be 8k+1 and at least 9 (nearest: 97 or 105); got 100."),
        ({"num_frames": 4}, "`num_frames`"),
        ({"num_frames": 9.0}, "`num_frames` must be an integer"),
        (
            {"height": 96},
            "`height` must be a positive multiple of 64 pixels for two-stage generation (nearest: 64 or 128); got 96.",
        ),
        ({"width": 0}, "`width`"),
        ({"frame_rate": 0}, "`frame_rate`"),
        ({"frame_rate": float("nan")}, "`frame_rate`"),
        ({"seed": -1}, "`seed`"),
        ({"prompt": ""}, "`prompt` must describe the clip"),
        ({"prompt": "x" * 5000}, "`prompt` must be at most 4000 characters; got 5000"),
        ({"mode": "turbo"}, "`mode` must be 'distilled' or 'dev'; got 'turbo'."),
        ({"modality_scale": 0.5}, "`modality_scale` must be a number from 1 to 20; got 0.5."),
        ({"modality_scale": 25.0}, "`modality_scale`"),
        ({"mode": "dev", "num_inference_steps": 0}, "`num_inference_steps` must be from 1 to 200; got 0."),
        ({"num_inference_steps": 5}, "`num_inference_steps` applies to mode='dev' only"),
        ({"audio_cfg_scale": -2.0, "mode": "dev"}, "`audio_cfg_scale`"),
        ({"stg_scale": 1.0, "stg_blocks": (7,)}, "`stg_blocks` must be block indices from 0 to 1"),
    ],
)
def test_invalid_inputs_are_rejected_before_any_work(pipe, change, message):
    calls = []
    handle = pipe.transformer.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(ValueError) as error:
            pipe.stream(**SMALL | change)
    finally:
        handle.remove()
    assert message in str(error.value)
    assert not calls


def test_a_word_level_model_names_the_words_it_does_not_know(pipe, caplog):
    known = pipe.tokenizer.init_kwargs["known_words"]
    assert {"red", "ball", "bounces"} <= set(known)
    assert pipe.unknown_words("A red ball bounces") == []
    assert pipe.unknown_words("a red zeppelin hums over the ball's xylophone") == [
        "zeppelin",
        "hums",
        "over",
        "ball's",
        "xylophone",
    ]
    with caplog.at_level("WARNING"):
        output = pipe(**SMALL | {"prompt": "a red zeppelin bounces"})
    assert output.recipe["unknown_words"] == ["zeppelin"]
    assert "zeppelin" in caplog.text


def test_open_vocabulary_models_never_warn(tiny_components):
    components = dict(tiny_components)
    components["tokenizer"] = GemmaTokenizer(vocab=components["tokenizer"].get_vocab(), merges=[])
    assert TI2VidTwoStagesPipeline(**components).unknown_words("a zeppelin hums") == []


def test_every_tokenizer_call_holds_the_lock_that_pipelines_sharing_the_tokenizer_share(pipe, monkeypatch):
    """A studio's slots share one tokenizer, whose padding settings outlive each call: one slot counting a prompt's
    tokens (no padding) while another encodes its prompt (padded) stripped the other's padding (the connectors then
    refused the sequence). Each call now holds one lock, whichever pipeline makes it."""
    held = []
    tokenize = type(pipe.tokenizer).__call__

    def recording(tokenizer, *args, **kwargs):
        held.append(TOKENIZER_LOCK.locked())
        return tokenize(tokenizer, *args, **kwargs)

    monkeypatch.setattr(type(pipe.tokenizer), "__call__", recording)
    pipe(**SMALL)
    assert len(held) >= 3 and all(held)  # the prompt's and the negative prompt's counts, the prompt's encoding


def test_decoded_audio_fills_the_clip_and_keeps_what_the_latents_alone_decode(pipe):
    # 17 frames at 24 fps: 0.708 s, 18 audio latent frames, whose causal decode alone stops 30 ms short of them.
    generator = torch.Generator().manual_seed(0)
    channels, mel_bins = pipe.audio_vae.config.latent_channels, pipe.audio_vae.config.mel_bins // 4
    latents = torch.randn(1, channels, 18, mel_bins, generator=generator)
    audio = pipe.decode_audio(latents, num_frames=17, frame_rate=24.0)
    rate = audio.sampling_rate
    assert audio.waveform.shape[-1] == round(17 / 24 * rate)
    assert audio.waveform[..., -int(0.01 * rate) :].abs().amax() > 0  # decoded to the end, not padded with silence
    with torch.no_grad():
        alone = pipe.vocoder(pipe.audio_vae.decode(latents, return_dict=False)[0])[0].float()
    settled = alone.shape[-1] // 2  # before the vocoder's reach of the end
    assert torch.allclose(audio.waveform[..., :settled], alone[..., :settled], atol=1e-5)


def spy_prompt_masks(pipe) -> tuple[list, object]:
    masks = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(
            (kwargs["encoder_attention_mask"], kwargs["audio_encoder_attention_mask"])
        ),
        with_kwargs=True,
    )
    return masks, handle


@pytest.mark.parametrize("mode", ["distilled", "dev"])
def test_the_transformer_gets_no_prompt_mask_where_every_token_is_real(pipe, mode):
    # LTX-2.x's connectors replace the padding with learnable registers: every token is real.
    masks, handle = spy_prompt_masks(pipe)
    try:
        pipe(**SMALL, mode=mode, num_inference_steps=2 if mode == "dev" else None)
    finally:
        handle.remove()
    assert masks and all(video is None and audio is None for video, audio in masks)


def with_padding(mask: torch.Tensor) -> torch.Tensor:
    padded = mask.clone()
    padded[:, :3] = 0  # left padding
    return padded


def test_a_prompt_mask_with_padding_reaches_the_transformer(pipe):
    # Connectors whose mask keeps padding (diffusers' own connectors return all ones, with registers or without).
    padding = pipe.connectors.register_forward_hook(lambda module, args, out: (*out[:2], with_padding(out[2])))
    masks, handle = spy_prompt_masks(pipe)
    try:
        pipe(**SMALL | {"prompt": "a mask with padding"})
    finally:
        handle.remove()
        padding.remove()
    video, audio = masks[0]
    assert video is audio and video.shape == (1, pipe.max_sequence_length)
    assert int(video.sum()) == video.numel() - 3


def test_no_prompt_mask_computes_what_an_all_ones_mask_computes(pipe):
    geometry = pipe.latent_geometry(64, 64, 9, 24.0)
    generator = torch.Generator().manual_seed(0)
    noise = NoiseSource(generator, torch.device("cpu"))
    video, audio = pipe.video_noise(geometry, noise), pipe.audio_noise(geometry, noise)
    text = pipe.encode_prompt(SMALL["prompt"], torch.device("cpu"))
    assert text.all_real and text.transformer_mask is None
    masked = TextConditioning(video=text.video, audio=text.audio, mask=torch.ones_like(text.mask))
    with torch.no_grad():
        unmasked_velocity = transformer_velocity(pipe.transformer, video, audio, text, 0.725, geometry)
        masked_velocity = transformer_velocity(pipe.transformer, video, audio, masked, 0.725, geometry)
    for unmasked, with_mask in zip(unmasked_velocity, masked_velocity, strict=True):
        torch.testing.assert_close(unmasked, with_mask, rtol=1e-5, atol=1e-6)
