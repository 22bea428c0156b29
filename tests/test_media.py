"""mp4 and recipe output: both streams, exact durations, clear errors, atomic writes, frame conversion."""

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from ltx_pipeline.audio import load_audio
from ltx_pipeline.media import frames_to_uint8, probe_mp4, save_output, write_mp4, write_recipe
from ltx_pipeline.types import Audio, LTXAVOutput


def _gradient_frames(num_frames: int = 17, height: int = 64, width: int = 96) -> np.ndarray:
    """(F, H, W, 3) uint8: red rises down the frame, green across it, blue with time."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, height)[None, :, None]
    frames[..., 1] = np.linspace(0, 255, width)[None, None, :]
    frames[..., 2] = np.linspace(0, 255, num_frames)[:, None, None]
    return frames


def _tones(sampling_rate: int, num_samples: int, num_channels: int) -> Audio:
    time = torch.arange(num_samples) / sampling_rate
    tones = [0.5 * torch.sin(2 * math.pi * (440.0 + 220.0 * channel) * time) for channel in range(num_channels)]
    return Audio(torch.stack(tones), sampling_rate)


def _decoded_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_mp4_round_trip(tmp_path):
    frames = _gradient_frames()
    audio = _tones(48000, 34000, 2)  # 17 frames at 24 fps = 0.7083 s = 34000 samples

    path = write_mp4(tmp_path / "clip.mp4", frames, audio, frame_rate=24.0)
    info = probe_mp4(path)

    assert path == tmp_path / "clip.mp4"
    assert (info.width, info.height, info.num_frames, info.frame_rate) == (96, 64, 17, 24.0)
    assert (info.video_codec, info.audio_codec) == ("h264", "flac")
    assert (info.audio_sample_rate, info.audio_channels) == (48000, 2)
    assert info.video_duration_s == pytest.approx(17 / 24, abs=1e-9)
    assert info.audio_duration_s == pytest.approx(info.video_duration_s, abs=1e-9)
    decoded = _decoded_frames(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 3  # H.264 at crf 18, RGB order kept
    decoded_audio = load_audio(path)
    assert decoded_audio.waveform.shape == (2, 34000)
    # Float tones are stored as 24-bit FLAC: within half a 24-bit step of the input, sample-aligned.
    assert (decoded_audio.waveform - audio.waveform).abs().max() <= 2**-24


def _int16_noise(sampling_rate: int, num_samples: int, num_channels: int) -> Audio:
    """What a 16-bit file reads as: int16 / 32768, full scale, every value distinct from its neighbours."""
    generator = torch.Generator().manual_seed(0)
    samples = torch.randint(-32768, 32768, (num_channels, num_samples), generator=generator)
    return Audio(samples.float() / 32768, sampling_rate)


@pytest.mark.parametrize(("sampling_rate", "num_channels"), [(16000, 1), (44100, 2), (48000, 6), (37800, 8)])
def test_16_bit_audio_is_kept_sample_for_sample_with_its_channels(tmp_path, sampling_rate, num_channels):
    audio = _int16_noise(sampling_rate, round(9 / 24 * sampling_rate), num_channels)
    path = write_mp4(tmp_path / "clip.mp4", _gradient_frames(9, 32, 32), audio, 24.0)

    info = probe_mp4(path)
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("flac", sampling_rate, num_channels)
    with av.open(str(path)) as container:
        decoded = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=-1)
    assert decoded.dtype == np.int16
    # packed s16: (1, S * C) -> (C, S)
    decoded = torch.from_numpy(decoded.reshape(-1, num_channels).T.copy())
    assert torch.equal(decoded, (audio.waveform * 32768).to(torch.int16))


@pytest.mark.parametrize(
    ("sampling_rate", "num_channels", "frame_rate", "written_rate"),
    [
        (44100, 1, 25.0, 44100),
        (16000, 8, 30000 / 1001, 16000),
        (96000, 2, 60.0, 96000),
        (37800, 2, 24.0, 37800),  # FLAC carries any rate: never resampled
    ],
)
def test_mp4_audio_rates_channels_and_frame_rates(tmp_path, sampling_rate, num_channels, frame_rate, written_rate):
    frames = _gradient_frames(num_frames=9, height=32, width=32)
    audio = _tones(sampling_rate, round(9 / frame_rate * sampling_rate), num_channels)

    info = probe_mp4(write_mp4(tmp_path / "clip.mp4", frames, audio, frame_rate))

    assert (info.audio_sample_rate, info.audio_channels) == (written_rate, num_channels)
    assert info.frame_rate == pytest.approx(frame_rate, rel=1e-12)
    assert info.num_frames == 9
    assert info.video_duration_s == pytest.approx(9 / frame_rate, abs=1e-9)
    assert abs(info.audio_duration_s - info.video_duration_s) <= 1 / written_rate


def test_more_than_eight_channels_are_mixed_to_stereo(tmp_path, caplog):
    audio = _tones(48000, 18000, 10)
    path = write_mp4(tmp_path / "many.mp4", _gradient_frames(9, 32, 32), audio, 24.0)
    assert probe_mp4(path).audio_channels == 2
    assert "mixing 10 to stereo" in caplog.text


def test_audio_within_one_frame_is_fitted_to_the_video(tmp_path):
    frames = _gradient_frames(9, 32, 32)  # 0.375 s at 24 fps = 18000 samples at 48 kHz
    for num_samples in (18000 - 1999, 18000 + 1999):  # just under one frame (2000 samples) short or long
        info = probe_mp4(write_mp4(tmp_path / "clip.mp4", frames, _tones(48000, num_samples, 2), 24.0))
        assert info.audio_duration_s == pytest.approx(0.375, abs=1e-9)


def test_audio_more_than_one_frame_off_is_an_error(tmp_path):
    with pytest.raises(ValueError) as error:
        write_mp4(tmp_path / "clip.mp4", _gradient_frames(9, 32, 32), _tones(48000, 22001, 2), 24.0)
    message = str(error.value)
    assert "`audio` lasts 0.4584 s (22001 samples at 48000 Hz)" in message
    assert "`frames` last 0.3750 s (9 at 24 fps)" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("frames", "waveform", "frame_rate", "fragments"),
    [
        (np.zeros((9, 32, 33, 3), np.uint8), None, 24.0, ["`frames`", "even", "32x33"]),
        (np.zeros((9, 32, 32, 3), np.float32), None, 24.0, ["`frames`", "uint8", "float32", "frames_to_uint8"]),
        (np.zeros((9, 32, 32), np.uint8), None, 24.0, ["`frames`", "(9, 32, 32)"]),
        (None, torch.full((2, 18000), float("nan")), 24.0, ["`audio.waveform`", "NaN or Inf"]),
        (None, torch.full((2, 18000), float("inf")), 24.0, ["`audio.waveform`", "NaN or Inf"]),
        (None, None, 0.0, ["`frame_rate`", "0.0", "> 0"]),
        (None, None, float("nan"), ["`frame_rate`", "nan"]),
    ],
)
def test_bad_inputs_raise_clear_errors_and_write_nothing(tmp_path, frames, waveform, frame_rate, fragments):
    frames = _gradient_frames(9, 32, 32) if frames is None else frames
    audio = _tones(48000, 18000, 2) if waveform is None else Audio(waveform, 48000)
    with pytest.raises(ValueError) as error:
        write_mp4(tmp_path / "clip.mp4", frames, audio, frame_rate)
    for fragment in fragments:
        assert fragment in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_path_must_be_an_mp4(tmp_path):
    with pytest.raises(ValueError, match=r"`path` must end in \.mp4; got '.*clip\.mkv'"):
        write_mp4(tmp_path / "clip.mkv", _gradient_frames(9, 32, 32), _tones(48000, 18000, 2), 24.0)


def test_failed_write_leaves_the_previous_file_and_no_partial_file(tmp_path):
    path = tmp_path / "clip.mp4"
    write_mp4(path, _gradient_frames(9, 32, 32), _tones(48000, 18000, 2), 24.0)
    previous = path.read_bytes()

    too_wide_for_x264 = np.zeros((1, 2, 16386, 3), np.uint8)  # passes our checks, fails inside the encoder
    with pytest.raises(av.error.FFmpegError):
        write_mp4(path, too_wide_for_x264, _tones(48000, 2000, 2), 24.0)

    assert path.read_bytes() == previous
    assert sorted(tmp_path.iterdir()) == [path]


def test_rewriting_replaces_the_file(tmp_path):
    path = tmp_path / "nested" / "clip.mp4"  # missing folders are made
    write_mp4(path, _gradient_frames(9, 32, 32), _tones(48000, 18000, 2), 24.0)
    write_mp4(path, _gradient_frames(17, 64, 64), _tones(48000, 34000, 2), 24.0)
    assert (probe_mp4(path).num_frames, probe_mp4(path).width) == (17, 64)
    assert sorted(path.parent.iterdir()) == [path]


# --- Recipe and save_output -------------------------------------------------------------------------------------------


def test_write_recipe_beside_the_video(tmp_path):
    recipe = {"prompt": "Ein Hund bellt — «wuff»", "seed": np.int64(10), "guidance": {"cfg": 3.0}, "lora": Path("x")}
    json_path = write_recipe(tmp_path / "clip.mp4", recipe)

    assert json_path == tmp_path / "clip.json"
    text = json_path.read_text(encoding="utf-8")
    assert "Ein Hund bellt — «wuff»" in text  # UTF-8, not \u escapes
    assert text.index('"guidance"') < text.index('"lora"') < text.index('"prompt"') < text.index('"seed"')
    assert "\n  " in text  # indented
    assert json.loads(text) == {"prompt": recipe["prompt"], "seed": 10, "guidance": {"cfg": 3.0}, "lora": "x"}


@pytest.mark.parametrize(
    ("recipe", "fragment"),
    [({"scale": float("nan")}, "nan"), ({"model": object()}, "object"), (["not", "a", "dict"], "must be a dict")],
)
def test_unstorable_recipe_is_an_error(tmp_path, recipe, fragment):
    with pytest.raises(ValueError, match="`recipe`") as error:
        write_recipe(tmp_path / "clip.mp4", recipe)
    assert fragment in str(error.value).lower()
    assert list(tmp_path.iterdir()) == []


def test_save_output_writes_video_and_recipe(tmp_path):
    output = LTXAVOutput(_gradient_frames(9, 32, 32), _tones(48000, 18000, 1), 24.0, {"seed": 10, "mode": "distilled"})
    mp4_path, json_path = save_output(output, tmp_path / "out.mp4")

    assert (mp4_path, json_path) == (tmp_path / "out.mp4", tmp_path / "out.json")
    assert probe_mp4(mp4_path).num_frames == 9
    assert json.loads(json_path.read_text(encoding="utf-8")) == {"mode": "distilled", "seed": 10}

    unstorable = LTXAVOutput(output.frames, output.audio, 24.0, {"model": object()})
    with pytest.raises(ValueError, match="`recipe`"):
        save_output(unstorable, tmp_path / "other.mp4")
    assert not (tmp_path / "other.mp4").exists()


def test_probe_mp4_errors(tmp_path):
    with pytest.raises(ValueError, match="`path` must be an existing mp4 file"):
        probe_mp4(tmp_path / "missing.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match=r"`path` '.*text\.mp4' is not a readable video file"):
        probe_mp4(tmp_path / "text.mp4")


# --- frames_to_uint8 --------------------------------------------------------------------------------------------------


def test_frames_to_uint8_ranges_and_layouts():
    zero_one = np.array([0.0, 0.5, 1.0, 1.2, -0.1], np.float32).reshape(1, 1, 5, 1).repeat(3, axis=-1)
    np.testing.assert_array_equal(frames_to_uint8(zero_one)[0, 0, :, 0], [0, 128, 255, 255, 0])

    minus_one_one = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 1, 3, 1).expand(1, 1, 3, 3)
    np.testing.assert_array_equal(frames_to_uint8(minus_one_one, value_range=(-1.0, 1.0))[0, 0, :, 0], [0, 128, 255])

    vae_layout = torch.rand(1, 3, 9, 8, 16, dtype=torch.bfloat16)  # (B, C, F, H, W)
    converted = frames_to_uint8(vae_layout, channels_first=True)
    assert converted.shape == (9, 8, 16, 3) and converted.dtype == np.uint8
    expected = np.round(vae_layout[0].float().permute(1, 2, 3, 0).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(converted, expected)

    frames = _gradient_frames(9, 32, 32)
    np.testing.assert_array_equal(frames_to_uint8(frames[None]), frames)


def test_frames_to_uint8_errors():
    broken = torch.zeros(9, 8, 8, 3)
    broken[4, 2, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="`decoded_video` holds NaN or Inf"):
        frames_to_uint8(broken, name="decoded_video")
    with pytest.raises(ValueError, match=r"`video` must hold one video.*\(2, 9, 8, 8, 3\)"):
        frames_to_uint8(torch.zeros(2, 9, 8, 8, 3))
    with pytest.raises(ValueError, match=r"`video` must have 3 \(RGB\) channels"):
        frames_to_uint8(torch.zeros(9, 8, 8, 4))
    with pytest.raises(ValueError, match=r"`value_range` must be two finite numbers .* got \(1.0, 0.0\)"):
        frames_to_uint8(torch.zeros(9, 8, 8, 3), value_range=(1.0, 0.0))


def test_conversion_threads_do_not_change_a_byte(tmp_path):
    # Noise, so that every frame differs and a frame out of order would show; 2 threads, 5 frames: the lead is bounded.
    frames = np.random.default_rng(0).integers(0, 256, (21, 32, 48, 3), dtype=np.uint8)
    audio = _tones(48000, 42000, 2)
    files = [
        write_mp4(tmp_path / f"clip_{threads}.mp4", frames, audio, 24.0, threads=threads) for threads in (0, 2, None)
    ]
    assert files[0].read_bytes() == files[1].read_bytes() == files[2].read_bytes()


@pytest.mark.parametrize("threads", [-1, 1.5, True, "4"])
def test_conversion_threads_must_be_a_count(tmp_path, threads):
    with pytest.raises(ValueError, match=rf"`threads` must be None or an int >= 0 .*got {threads!r}"):
        write_mp4(tmp_path / "clip.mp4", _gradient_frames(9, 32, 32), _tones(48000, 18000, 2), 24.0, threads=threads)
    assert not list(tmp_path.iterdir())
