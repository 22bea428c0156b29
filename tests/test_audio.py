"""Audio front end: exact cuts of real files, clear errors, band-limited resampling, the reference log-mel."""

import fractions
import math
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch

from ltx_pipeline.audio import (
    load_audio,
    log_mel_spectrogram,
    mel_filter_bank,
    prepare_audio_vae_input,
    probe_audio_duration,
    resample,
    seconds_to_samples,
    to_stereo,
    validate_audio,
)
from ltx_pipeline.constants import AUDIO_SAMPLE_RATE, MEL_BINS, MEL_HOP_LENGTH, MEL_LOG_FLOOR
from ltx_pipeline.media import write_mp4
from ltx_pipeline.types import Audio


def _tones(sampling_rate: int, num_samples: int, frequencies: list[float]) -> np.ndarray:
    """(channels, samples) float32 sines, one frequency per channel, amplitude 0.5."""
    time = np.arange(num_samples) / sampling_rate
    return np.stack([0.5 * np.sin(2 * np.pi * frequency * time) for frequency in frequencies]).astype(np.float32)


def _clicks(sampling_rate: int, num_samples: int, every_s: float) -> np.ndarray:
    """(1, samples): a click of 0.75 at every `every_s` seconds, silence between."""
    clicks = np.zeros((1, num_samples), np.float32)
    clicks[0, :: round(every_s * sampling_rate)] = 0.75
    return clicks


def _write_audio_only_with_pyav(path: Path, waveform: np.ndarray, sampling_rate: int, codec: str) -> None:
    """An m4a (AAC) or webm (Opus) file holding `waveform` (2, samples)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sampling_rate)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(waveform), format="fltp", layout="stereo")
        frame.sample_rate = sampling_rate
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_video_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input file the tests read, made here, with the samples that were written where they are exact."""
    folder = tmp_path_factory.mktemp("audio_inputs")
    files = {}

    def add(name: str) -> Path:
        files[name] = folder / name
        return files[name]

    # Lossless: integer samples written as integers read back as int / full scale, exactly.
    stereo_44k = _tones(44100, 2 * 44100, [440.0, 660.0])
    stereo_44k_int16 = np.round(stereo_44k * 32767).astype(np.int16)
    soundfile.write(add("stereo_44k_pcm16.wav"), stereo_44k_int16.T, 44100, subtype="PCM_16")
    clicks_int32 = np.round(_clicks(48000, 72000, 0.25) * 2**23).astype(np.int32) * 256  # 24 significant bits
    soundfile.write(add("mono_48k_pcm24.flac"), clicks_int32.T, 48000, subtype="PCM_24")
    eight_channels = (np.random.default_rng(0).uniform(-0.9, 0.9, (8, 96000 // 2))).astype(np.float32)
    soundfile.write(add("eight_96k_float.wav"), eight_channels.T, 96000, subtype="FLOAT")
    soundfile.write(add("stereo_44k.mp3"), stereo_44k.T, 44100, format="MP3")
    soundfile.write(
        add("stereo_48k.ogg"), _tones(48000, 48000, [300.0, 500.0]).T, 48000, format="OGG", subtype="VORBIS"
    )
    _write_audio_only_with_pyav(add("stereo_44k.m4a"), stereo_44k, 44100, "aac")
    _write_audio_only_with_pyav(add("stereo_48k.webm"), _tones(48000, 48000, [300.0, 500.0]), 48000, "libopus")
    frames = np.zeros((25, 32, 32, 3), np.uint8)
    write_mp4(add("clip.mp4"), frames, Audio(torch.from_numpy(_tones(48000, 48000, [440.0, 880.0])), 48000), 25.0)
    # Broken inputs.
    add("empty.wav").write_bytes(b"")
    soundfile.write(add("header_only.wav"), np.zeros((0, 2), np.float32), 44100)
    add("text.wav").write_text("This is a text file that only pretends to be audio.\n" * 20)
    flac_bytes = files["mono_48k_pcm24.flac"].read_bytes()
    add("truncated.flac").write_bytes(flac_bytes[: len(flac_bytes) // 2])
    nan_samples = stereo_44k[:, :4410].copy()
    nan_samples[1, 1000] = np.nan
    soundfile.write(add("nan_float.wav"), nan_samples.T, 44100, subtype="FLOAT")
    _write_video_only(add("video_only.mp4"))
    files_samples = {
        "stereo_44k_pcm16.wav": stereo_44k_int16 / 2**15,
        "mono_48k_pcm24.flac": clicks_int32 / 2**31,
        "eight_96k_float.wav": eight_channels,
    }
    return {"folder": folder, "samples": files_samples, **files}


# --- Exact cuts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sampling_rate", "num_channels"),
    [("stereo_44k_pcm16.wav", 44100, 2), ("mono_48k_pcm24.flac", 48000, 1), ("eight_96k_float.wav", 96000, 8)],
)
@pytest.mark.parametrize(("start_time", "duration"), [(0.0, None), (0.25, 0.2), (0.0123, 0.1234567), (0.4, 0.05)])
def test_lossless_cut_is_the_written_samples(audio_files, name, sampling_rate, num_channels, start_time, duration):
    written = audio_files["samples"][name]
    audio = load_audio(audio_files[name], start_time=start_time, duration=duration)

    start = round(start_time * sampling_rate)
    stop = written.shape[1] if duration is None else start + math.floor(duration * sampling_rate)
    assert audio.sampling_rate == sampling_rate
    assert audio.waveform.dtype == torch.float32
    assert audio.waveform.shape == (num_channels, stop - start)
    np.testing.assert_array_equal(audio.waveform.numpy(), written[:, start:stop].astype(np.float32))


@pytest.mark.parametrize(
    ("name", "sampling_rate", "expected_samples"),
    [
        ("stereo_44k.mp3", 44100, 88200),  # LAME's gapless header: exactly what was written
        ("stereo_48k.ogg", 48000, 48000),
        ("stereo_44k.m4a", 44100, None),  # length from the mp4 header, to its millisecond timescale
        ("stereo_48k.webm", 48000, 48000),
        ("clip.mp4", 48000, 48000),  # our own mp4: sample-exact length
    ],
)
def test_compressed_cut_equals_the_same_span_of_a_full_decode(audio_files, name, sampling_rate, expected_samples):
    full = load_audio(audio_files[name])
    cut = load_audio(audio_files[name], start_time=0.3, duration=0.25)

    assert full.sampling_rate == cut.sampling_rate == sampling_rate
    assert full.num_channels == cut.num_channels == 2
    if expected_samples is not None:
        assert full.num_samples == expected_samples
    else:
        assert abs(full.num_samples - 88200) <= sampling_rate // 1000  # not the 1024-padded 89088 a decoder yields
    start = round(0.3 * sampling_rate)
    assert cut.num_samples == seconds_to_samples(0.25, sampling_rate)
    torch.testing.assert_close(cut.waveform, full.waveform[:, start : start + cut.num_samples], rtol=0, atol=0)


def test_compressed_decode_is_the_written_sound(audio_files):
    """Lossy, but aligned: the mp3 and the mp4's AAC hold the tones at the sample positions they were written at."""
    written = _tones(44100, 2 * 44100, [440.0, 660.0])
    decoded = load_audio(audio_files["stereo_44k.mp3"]).waveform.numpy()
    assert np.abs(decoded[:, 2000:-2000] - written[:, 2000:-2000]).max() < 0.02
    written_48k = _tones(48000, 48000, [440.0, 880.0])
    decoded_48k = load_audio(audio_files["clip.mp4"]).waveform.numpy()
    assert np.abs(decoded_48k - written_48k).max() < 0.1


def test_cut_past_the_end_returns_what_the_file_has(audio_files):
    audio = load_audio(audio_files["mono_48k_pcm24.flac"], start_time=1.25, duration=10.0)
    assert audio.num_samples == 72000 - 60000
    mp4_audio = load_audio(audio_files["clip.mp4"], start_time=0.5, duration=10.0)
    assert mp4_audio.num_samples == 24000


def test_seconds_to_samples_survives_float_error():
    assert 57 / 25 * 48000 < 109440  # the float product falls just short of the integer
    assert seconds_to_samples(57 / 25, 48000) == 109440
    assert seconds_to_samples(121 / 24, 44100) == 222337  # 222337.5 floors
    assert seconds_to_samples(0.5, 16000) == 8000


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("stereo_44k_pcm16.wav", 2.0), ("mono_48k_pcm24.flac", 1.5), ("stereo_44k.mp3", 2.0), ("clip.mp4", 1.0)],
)
def test_probe_audio_duration(audio_files, name, seconds):
    assert probe_audio_duration(audio_files[name]) == pytest.approx(seconds, abs=1e-3)


# --- Errors -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("missing.wav", ["`path`", "missing.wav", "does not exist"]),
        ("empty.wav", ["`path`", "empty.wav", "empty (0 bytes)"]),
        ("header_only.wav", ["`path`", "header_only.wav", "holds no audio", "0 samples"]),
        ("text.wav", ["`path`", "text.wav", "not a readable audio"]),
        ("truncated.flac", ["`path`", "truncated.flac", "corrupt"]),
        ("video_only.mp4", ["`path`", "video_only.mp4", "no audio stream", "video"]),
        ("nan_float.wav", ["`path`", "nan_float.wav", "NaN or Inf", "1000 samples"]),
    ],
)
def test_bad_files_raise_clear_errors(audio_files, name, fragments):
    path = audio_files.get(name, audio_files["folder"] / name)
    with pytest.raises(ValueError) as error:
        load_audio(path)
    for fragment in fragments:
        assert fragment in str(error.value)
    if name not in ("nan_float.wav", "truncated.flac", "header_only.wav"):  # the probe reads headers only
        with pytest.raises(ValueError, match="`path`"):
            probe_audio_duration(path)


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        ({"start_time": -0.5}, ["`start_time`", "-0.5", ">= 0"]),
        ({"start_time": float("nan")}, ["`start_time`", "nan"]),
        ({"start_time": 2.0}, ["`start_time`", "2.0", "beyond the end", "lasts 2.000 s"]),
        ({"start_time": 7.5}, ["`start_time`", "7.5", "lasts 2.000 s"]),
        ({"duration": 0.0}, ["`duration`", "0.0", "> 0"]),
        ({"duration": -1}, ["`duration`", "-1"]),
        ({"duration": float("inf")}, ["`duration`", "inf"]),
        ({"duration": 1e-7}, ["`duration`", "1e-07", "shorter than one sample"]),
    ],
)
def test_bad_arguments_raise_clear_errors(audio_files, arguments, fragments):
    with pytest.raises(ValueError) as error:
        load_audio(audio_files["stereo_44k_pcm16.wav"], **arguments)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_start_beyond_the_end_of_a_container_file_names_its_duration(audio_files):
    with pytest.raises(ValueError, match=r"`start_time` 1\.0 s is at or beyond the end .* lasts 1\.000 s"):
        load_audio(audio_files["clip.mp4"], start_time=1.0)


def test_validate_audio_names_the_problem():
    with pytest.raises(ValueError, match=r"`audio\.waveform` must have shape \(channels >= 1, samples >= 1\)"):
        validate_audio(Audio(torch.zeros(100), 16000))
    with pytest.raises(ValueError, match=r"`audio\.waveform` holds NaN or Inf"):
        validate_audio(Audio(torch.tensor([[0.0, float("inf")]]), 16000))
    with pytest.raises(ValueError, match=r"`audio\.sampling_rate` must be a positive integer .* got 0"):
        validate_audio(Audio(torch.zeros(1, 10), 0))


# --- Resampling -------------------------------------------------------------------------------------------------------


def test_resample_keeps_a_1khz_tone_at_1khz():
    source = Audio(torch.from_numpy(_tones(44100, 44100, [1000.0]) * 2), 44100)  # amplitude 1
    resampled = resample(source, 16000)

    assert resampled.sampling_rate == 16000
    assert resampled.num_samples == math.ceil(44100 * 16000 / 44100) == 16000
    spectrum = np.abs(np.fft.rfft(resampled.waveform[0].numpy() * np.hanning(16000)))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(1000.0, abs=1.0)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    np.testing.assert_allclose(resampled.waveform[0, 100:-100].numpy(), expected[100:-100], atol=2e-3)


def test_resample_length_and_band_limit():
    # 12 kHz does not exist at 16 kHz: a band-limited resampler removes it instead of folding it down to 4 kHz.
    above_nyquist = resample(Audio(torch.from_numpy(_tones(48000, 4800, [12000.0])), 48000), 16000)
    assert above_nyquist.num_samples == 1600
    assert above_nyquist.waveform[:, 100:-100].abs().max() < 0.01
    odd_length = resample(Audio(torch.zeros(2, 1001), 44100), 16000)
    assert odd_length.waveform.shape == (2, math.ceil(1001 * 160 / 441))


def test_resample_refuses_rates_without_a_common_factor():
    with pytest.raises(ValueError, match=r"`audio` at 44099 Hz cannot be resampled to 16000 Hz .* \(gcd 1\)"):
        resample(Audio(torch.zeros(1, 100), 44099), 16000)
    assert resample(Audio(torch.zeros(1, 22050), 22050), 16000).num_samples == 16000  # gcd 50: fine


def test_resample_to_the_same_rate_is_identity():
    audio = Audio(torch.randn(2, 1000), 16000)
    assert resample(audio, 16000) is audio
    with pytest.raises(ValueError, match=r"`target_rate` must be a positive integer .* got 0"):
        resample(audio, 0)


# --- Log-mel for the audio VAE ----------------------------------------------------------------------------------------


def test_mel_filter_bank_matches_librosa_slaney():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000, htk=False, norm="slaney")
    filter_bank = mel_filter_bank()
    assert filter_bank.shape == (513, 64)
    np.testing.assert_allclose(filter_bank.numpy(), expected.T, rtol=0, atol=1e-6)


def test_log_mel_matches_librosa_melspectrogram():
    librosa = pytest.importorskip("librosa")
    waveform = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (1, 2, 8000)).astype(np.float32))
    magnitude_mel = librosa.feature.melspectrogram(
        y=waveform.numpy(), sr=16000, n_fft=1024, hop_length=160, win_length=1024, window="hann", center=True,
        pad_mode="reflect", power=1.0, n_mels=64, fmin=0, fmax=8000, htk=False, norm="slaney",
    )  # fmt: skip
    expected = np.log(np.maximum(magnitude_mel, 1e-5)).transpose(0, 1, 3, 2)  # (B, C, mel, T) -> (B, C, T, mel)
    np.testing.assert_allclose(log_mel_spectrogram(waveform).numpy(), expected, rtol=0, atol=1e-4)


def test_log_mel_layout_peak_and_floor():
    tone = torch.from_numpy(_tones(16000, 16000, [1000.0]))[None]  # (1, 1, 16000)
    silence = torch.zeros(1, 1, 16000)
    log_mel = log_mel_spectrogram(torch.cat([tone, silence], dim=1))

    assert log_mel.shape == (1, 2, 16000 // MEL_HOP_LENGTH + 1, MEL_BINS)
    fft_bin_of_1khz = round(1000 / (16000 / 1024))
    assert log_mel[0, 0].mean(dim=0).argmax() == mel_filter_bank()[fft_bin_of_1khz].argmax()
    torch.testing.assert_close(log_mel[0, 1], torch.full_like(log_mel[0, 1], math.log(MEL_LOG_FLOOR)))


def test_log_mel_rejects_wrong_layout_and_too_short_input():
    with pytest.raises(ValueError, match=r"`waveform` must be a floating-point tensor of shape \(batch, channels"):
        log_mel_spectrogram(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match="`waveform` holds 512 samples"):
        log_mel_spectrogram(torch.zeros(1, 2, 512))


def test_prepare_audio_vae_input_maps_channels_and_resamples():
    rng = np.random.default_rng(0)
    mono = Audio(torch.from_numpy(rng.uniform(-0.5, 0.5, (1, 44100)).astype(np.float32)), 44100)
    stereo = Audio(torch.from_numpy(_tones(48000, 24000, [440.0, 3000.0])), 48000)
    eight = Audio(torch.from_numpy(rng.uniform(-0.5, 0.5, (8, 9600)).astype(np.float32)), 96000)

    mono_input = prepare_audio_vae_input(mono)
    assert mono_input.shape == (1, 2, 16000 // MEL_HOP_LENGTH + 1, MEL_BINS)
    torch.testing.assert_close(mono_input[0, 0], mono_input[0, 1], rtol=0, atol=0)

    stereo_input = prepare_audio_vae_input(stereo)
    assert stereo_input.shape == (1, 2, 8000 // MEL_HOP_LENGTH + 1, MEL_BINS)
    assert (stereo_input[0, 0] - stereo_input[0, 1]).abs().max() > 1.0  # left and right stay distinct

    eight_input = prepare_audio_vae_input(eight)
    downmix = resample(Audio(eight.waveform.mean(dim=0, keepdim=True), 96000), AUDIO_SAMPLE_RATE)
    torch.testing.assert_close(eight_input[0, 0], log_mel_spectrogram(downmix.waveform[None])[0, 0])
    torch.testing.assert_close(eight_input[0, 0], eight_input[0, 1], rtol=0, atol=0)


def test_prepare_audio_vae_input_rejects_audio_too_short_for_the_stft():
    with pytest.raises(ValueError, match=r"`audio` lasts 10\.0 ms; the audio VAE needs at least 32 ms"):
        prepare_audio_vae_input(Audio(torch.zeros(2, 480), 48000))


def test_to_stereo():
    assert to_stereo(torch.ones(1, 5)).shape == (2, 5)
    stereo = torch.randn(2, 5)
    assert to_stereo(stereo) is stereo
    torch.testing.assert_close(to_stereo(torch.arange(12.0).reshape(4, 3))[1], torch.tensor([4.5, 5.5, 6.5]))
