import math

import numpy as np
import pytest
import soundfile as sf
import torch

from ltx_pipeline import Audio, Finished, StageDecoded, StepPreview
from ltx_pipeline.pipeline_a2vid_two_stage import A2VidPipelineTwoStage

SMALL = {"prompt": "a drum is struck in a small room", "height": 64, "width": 64, "num_frames": 17, "seed": 0}
FRAME_RATE = 25.0


@pytest.fixture
def pipe(tiny_components):
    return A2VidPipelineTwoStage(**tiny_components)


def write_clip(path, seconds=2.0, sampling_rate=44100, channels=2, beat_hz=3.0):
    time_s = np.arange(int(seconds * sampling_rate)) / sampling_rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * time_s)
    clicks = 0.5 * (np.sin(2 * np.pi * beat_hz * time_s) > 0.95)
    waveform = np.stack([tone if channel % 2 == 0 else clicks for channel in range(channels)], axis=1)
    sf.write(path, waveform.astype(np.float32), sampling_rate, subtype="FLOAT")
    return sf.read(path, dtype="float32", always_2d=True)[0]


@pytest.mark.parametrize(("sampling_rate", "channels"), [(44100, 2), (22050, 1), (96000, 8)])
def test_output_carries_the_original_cut_sample_for_sample(pipe, tmp_path, sampling_rate, channels):
    samples = write_clip(tmp_path / "clip.wav", sampling_rate=sampling_rate, channels=channels)
    output = pipe(audio=tmp_path / "clip.wav", audio_start_time=0.5, frame_rate=FRAME_RATE, **SMALL)
    first = round(0.5 * sampling_rate)
    count = math.floor(17 / FRAME_RATE * sampling_rate)
    assert output.audio.sampling_rate == sampling_rate
    assert output.audio.num_channels == channels
    assert np.array_equal(output.audio.waveform.numpy().T, samples[first : first + count])
    assert output.frames.shape == (17, 64, 64, 3)
    assert output.audio.duration_s == pytest.approx(17 / FRAME_RATE, abs=1 / sampling_rate)


def test_audio_latents_stay_clean_through_both_stages(pipe, tmp_path):
    write_clip(tmp_path / "clip.wav")
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            (kwargs["audio_hidden_states"].clone(), kwargs["audio_timestep"], kwargs["sigma"], kwargs["audio_sigma"])
        ),
        with_kwargs=True,
    )
    try:
        pipe(audio=tmp_path / "clip.wav", frame_rate=FRAME_RATE, **SMALL)
    finally:
        handle.remove()
    assert len(seen) == 11
    assert all(torch.equal(audio, seen[0][0]) for audio, *_ in seen)  # bit-identical at every step of both stages
    assert all(float(timestep.abs().max()) == 0.0 for _, timestep, *_ in seen)  # every audio token seen as clean
    # The audio stream's modality sigma is the step's sigma, as in the reference: it drives the audio prompt AdaLN
    # and the video side's cross-modal AdaLN, so 0 here moved the video 10 % from the reference over stage 1.
    assert all(torch.equal(audio_sigma, sigma) and float(sigma.min()) > 0 for *_, sigma, audio_sigma in seen)


def test_the_transformer_sees_the_same_input_shapes_as_in_text_to_audio_video(pipe, tmp_path):
    # So compiled blocks and recorded CUDA graphs made by a text-to-AV run (the studio's warm-up) serve audio to video
    # without compiling again: the held-clean audio's per-token timesteps were (1, tokens) against (1,) before.
    from ltx_pipeline.pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline

    write_clip(tmp_path / "clip.wav")
    t2av = TI2VidTwoStagesPipeline.from_pipe(pipe)
    shapes = {"t2av": set(), "a2v": set()}
    current = []

    def record(module, args, kwargs):
        tensors = {name: value for name, value in kwargs.items() if torch.is_tensor(value)}
        current[0].add(tuple(sorted((name, tuple(value.shape)) for name, value in tensors.items())))

    handle = pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        current[:] = [shapes["t2av"]]
        t2av(frame_rate=FRAME_RATE, **SMALL)
        current[:] = [shapes["a2v"]]
        pipe(audio=tmp_path / "clip.wav", frame_rate=FRAME_RATE, **SMALL)
    finally:
        handle.remove()
    assert len(shapes["t2av"]) == 2  # one set of shapes per stage
    assert shapes["a2v"] == shapes["t2av"]


def test_video_follows_the_audio(pipe, tmp_path):
    write_clip(tmp_path / "slow.wav", beat_hz=2.0)
    write_clip(tmp_path / "fast.wav", beat_hz=7.0)
    slow = pipe(audio=tmp_path / "slow.wav", frame_rate=FRAME_RATE, **SMALL)
    fast = pipe(audio=tmp_path / "fast.wav", frame_rate=FRAME_RATE, **SMALL)
    assert not np.array_equal(slow.frames, fast.frames)


def test_in_memory_audio_is_cut_like_a_file(pipe, tmp_path):
    samples = write_clip(tmp_path / "clip.wav")
    audio = Audio(torch.from_numpy(samples.T.copy()), 44100)
    from_memory = pipe(audio=audio, audio_start_time=0.25, frame_rate=FRAME_RATE, **SMALL)
    from_file = pipe(audio=tmp_path / "clip.wav", audio_start_time=0.25, frame_rate=FRAME_RATE, **SMALL)
    assert torch.equal(from_memory.audio.waveform, from_file.audio.waveform)
    assert np.array_equal(from_memory.frames, from_file.frames)


def test_events_stream_in_order_with_the_clip_at_stage_one(pipe, tmp_path):
    write_clip(tmp_path / "clip.wav")
    events = list(pipe.stream(audio=tmp_path / "clip.wav", frame_rate=FRAME_RATE, **SMALL))
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["StepPreview"] * 8 + ["StageDecoded"] + ["StepPreview"] * 3 + ["Finished"]
    assert all(event.audio is None for event in events if isinstance(event, StepPreview))
    stage_1 = events[8]
    assert isinstance(stage_1, StageDecoded) and stage_1.frames.shape == (17, 32, 32, 3)
    assert torch.equal(stage_1.audio.waveform, events[-1].output.audio.waveform)


def test_short_clip_is_an_error_that_offers_a_frame_count(pipe, tmp_path):
    write_clip(tmp_path / "short.wav", seconds=0.5)
    with pytest.raises(ValueError) as error:
        pipe.stream(audio=tmp_path / "short.wav", frame_rate=FRAME_RATE, **SMALL)
    message = str(error.value)
    assert "`audio` from 0 s lasts 0.50 s, shorter than the 0.68 s" in message
    assert "num_frames=9 (0.36 s)" in message and "pad_audio=True" in message


def test_pad_audio_pads_with_silence_and_records_it(pipe, tmp_path):
    samples = write_clip(tmp_path / "short.wav", seconds=0.5)
    output = pipe(audio=tmp_path / "short.wav", pad_audio=True, frame_rate=FRAME_RATE, **SMALL)
    waveform = output.audio.waveform.numpy().T
    assert waveform.shape[0] == math.floor(17 / FRAME_RATE * 44100)
    assert np.array_equal(waveform[: len(samples)], samples)
    assert not waveform[len(samples) :].any()
    assert output.recipe["audio_padded_with_silence_s"] == pytest.approx(0.18, abs=1e-3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audio_start_time": -1.0}, "`audio_start_time`"),
        ({"audio_start_time": 5.0}, "start"),
        ({"audio": "missing.wav"}, "missing.wav"),
        ({"audio": 3}, "`audio` must be a file path or an Audio; got int."),
        ({"pad_audio": "yes"}, "`pad_audio` must be True or False"),
        ({"num_frames": 16}, "`num_frames` must be 8k+1"),
    ],
)
def test_invalid_inputs_are_rejected(pipe, tmp_path, change, message):
    write_clip(tmp_path / "clip.wav")
    kwargs = {"audio": tmp_path / "clip.wav", "frame_rate": FRAME_RATE, **SMALL} | change
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        pipe.stream(**kwargs)
    assert message in str(error.value)


def test_cancel_stops_the_run(pipe, tmp_path):
    write_clip(tmp_path / "clip.wav")
    events = []
    for event in pipe.stream(audio=tmp_path / "clip.wav", frame_rate=FRAME_RATE, **SMALL):
        events.append(event)
        pipe.cancel()
    assert len(events) == 1 and not isinstance(events[-1], Finished)
