"""Audio front end: read a user's audio exactly, resample it, and build the log-mel input of the audio VAE.

`load_audio` returns the file's own decoded samples at the file's own sample rate and channel count; nothing is
resampled, remixed or normalised, so the A2V pipeline can hand the cut back unmodified. `prepare_audio_vae_input`
then does what the reference `AudioProcessor` does for the audio VAE (ltx_core/model/audio_vae/ops.py): resample to
16 kHz and take a log-magnitude slaney mel spectrogram.
"""

import logging
import math
import os
from pathlib import Path

import av
import numpy as np
import soundfile
import torch

from ltx_pipeline.constants import (
    AUDIO_SAMPLE_RATE,
    AUDIO_VAE_MIN_SAMPLES,
    MEL_BINS,
    MEL_F_MAX,
    MEL_F_MIN,
    MEL_HOP_LENGTH,
    MEL_LOG_FLOOR,
    MEL_N_FFT,
    MEL_WIN_LENGTH,
    RESAMPLE_LOWPASS_FILTER_WIDTH,
    RESAMPLE_MAX_KERNEL_ELEMENTS,
    RESAMPLE_ROLLOFF,
    SAMPLE_COUNT_TOLERANCE,
)
from ltx_pipeline.types import Audio

logger = logging.getLogger(__name__)

# Full scale of FFmpeg's integer sample formats: int samples / scale -> [-1, 1). Unsigned 8 bit is offset by 128.
_PYAV_INTEGER_FULL_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


# --- Reading ----------------------------------------------------------------------------------------------------------


def seconds_to_samples(seconds: float, sampling_rate: int) -> int:
    """floor(seconds * sampling_rate), where a product within `SAMPLE_COUNT_TOLERANCE` of an integer counts as it.

    This is how many samples `load_audio(path, duration=seconds)` returns when the file is long enough.
    """
    exact = seconds * sampling_rate
    nearest = round(exact)
    if abs(exact - nearest) <= SAMPLE_COUNT_TOLERANCE:
        return int(nearest)
    return math.floor(exact)


def load_audio(path: str | os.PathLike, start_time: float = 0.0, duration: float | None = None) -> Audio:
    """Read `duration` seconds of audio starting at `start_time`, as the file's own samples.

    Returns waveform (channels, samples) float32 at the file's sample rate and channel count. The cut starts at
    sample round(start_time * rate) and holds `seconds_to_samples(duration, rate)` samples, or fewer where the file
    ends first (the caller checks the length). wav, flac and ogg are read with libsndfile (exact seeking);
    anything else (mp3, m4a, mp4, webm, ...) with FFmpeg through PyAV, decoding from the start of the stream so
    that the samples match a full decode exactly.
    """
    audio_path = _check_audio_path(path)
    _check_start_time(start_time)
    _check_duration(duration)
    info = _soundfile_info(audio_path)
    if info is None:
        audio = _load_with_pyav(audio_path, start_time, duration)
    else:
        audio = _load_with_soundfile(audio_path, info, start_time, duration)
    _check_finite_samples(audio, audio_path, start_time)
    peak = float(audio.waveform.abs().max())
    if peak > 1.0:
        logger.warning("%s holds samples beyond [-1, 1] (peak %.3f); they are kept as they are.", audio_path, peak)
    return audio


def probe_audio_duration(path: str | os.PathLike) -> float:
    """The duration in seconds of a file's (first) audio stream, read from its header where it has one."""
    audio_path = _check_audio_path(path)
    info = _soundfile_info(audio_path)
    if info is not None:
        return info.frames / info.samplerate
    with _open_with_pyav(audio_path) as container:
        stream = _first_audio_stream(container, audio_path)
        declared_samples = _declared_num_samples(stream)
        if declared_samples is not None:
            return declared_samples / stream.codec_context.sample_rate
        if container.duration is not None and container.duration > 0:
            return container.duration / av.time_base
    # No length in the header (some raw or streamed files): decode to count.
    return load_audio(audio_path).duration_s


def _check_audio_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a file path (str or Path); got {type(path).__name__} {path!r}.")
    audio_path = Path(path)
    if not audio_path.exists():
        raise ValueError(f"`path` {str(audio_path)!r} does not exist; give the path of an audio or video file.")
    if not audio_path.is_file():
        raise ValueError(f"`path` {str(audio_path)!r} is not a file; give the path of an audio or video file.")
    if audio_path.stat().st_size == 0:
        raise ValueError(f"`path` {str(audio_path)!r} is empty (0 bytes); give a file that holds audio.")
    return audio_path


def _soundfile_info(audio_path: Path) -> soundfile._SoundFileInfo | None:
    """libsndfile's view of the file, or None where FFmpeg (PyAV) should read it instead."""
    try:
        info = soundfile.info(str(audio_path))
    except soundfile.LibsndfileError:
        return None
    # libsndfile 1.2.2 decodes some MP3s differently when read in pieces or after a seek (a 440 Hz sine read at an
    # offset came back shifted); FFmpeg decodes MP3 gaplessly and the same way every time.
    if info.format == "MP3":
        return None
    if info.format == "WAV":
        _check_wav_not_truncated(audio_path, info)
    return info


WAV_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)  # what streaming writers put in the header before they know the length


def _check_wav_not_truncated(audio_path: Path, info: soundfile._SoundFileInfo) -> None:
    """A WAV whose data chunk declares more bytes than the file holds was cut short (an interrupted copy or
    upload): libsndfile reads the part that is there, which would pass for a short clip. Call it damaged."""
    with open(audio_path, "rb") as file:
        header = file.read(4096)
    position = 12  # after "RIFF", the size and "WAVE"
    while position + 8 <= len(header):
        chunk_id, chunk_size = (
            header[position : position + 4],
            int.from_bytes(header[position + 4 : position + 8], "little"),
        )
        if chunk_id == b"data":
            available = audio_path.stat().st_size - (position + 8)
            if chunk_size not in WAV_UNKNOWN_DATA_SIZES and chunk_size > available:
                bytes_per_frame = max(1, available // max(1, info.frames)) if info.frames else 1
                declared_s = chunk_size / bytes_per_frame / info.samplerate
                raise ValueError(
                    f"`audio` file {audio_path.name!r} is damaged: its header declares {declared_s:.2f} s of audio "
                    f"but the file ends after {info.frames / info.samplerate:.2f} s (cut short while copying or "
                    "uploading?). Upload the whole file."
                )
            return
        position += 8 + chunk_size + (chunk_size % 2)


def _is_real_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_start_time(start_time: float) -> None:
    if not _is_real_number(start_time) or not math.isfinite(start_time) or start_time < 0:
        raise ValueError(f"`start_time` must be a finite number of seconds >= 0; got {start_time!r}.")


def _check_duration(duration: float | None) -> None:
    if duration is None:
        return
    if not _is_real_number(duration) or not math.isfinite(duration) or duration <= 0:
        raise ValueError(
            f"`duration` must be None (to the end of the file) or a finite number of seconds > 0; got {duration!r}."
        )


def _cut_bounds(start_time: float, duration: float | None, sampling_rate: int) -> tuple[int, int | None]:
    """First sample and end sample (exclusive, None = to the end) of the cut."""
    start_sample = round(start_time * sampling_rate)
    if duration is None:
        return start_sample, None
    num_samples = seconds_to_samples(duration, sampling_rate)
    if num_samples == 0:
        raise ValueError(
            f"`duration` {duration!r} s is shorter than one sample at {sampling_rate} Hz; "
            f"give at least {1 / sampling_rate:.3g} s."
        )
    return start_sample, start_sample + num_samples


def _start_beyond_end_error(start_time: float, audio_path: Path, total_samples: int, sampling_rate: int) -> ValueError:
    file_duration = total_samples / sampling_rate
    return ValueError(
        f"`start_time` {start_time!r} s is at or beyond the end of {str(audio_path)!r}, which lasts "
        f"{file_duration:.3f} s ({total_samples} samples at {sampling_rate} Hz); give a start_time "
        f"below {file_duration:.3f}."
    )


def _load_with_soundfile(
    audio_path: Path, info: soundfile._SoundFileInfo, start_time: float, duration: float | None
) -> Audio:
    start_sample, end_sample = _cut_bounds(start_time, duration, info.samplerate)
    if info.frames == 0:
        raise ValueError(
            f"`path` {str(audio_path)!r} holds no audio: its {info.format} header is valid but announces "
            f"0 samples; give a file that holds sound."
        )
    if start_sample >= info.frames:
        raise _start_beyond_end_error(start_time, audio_path, info.frames, info.samplerate)
    num_frames = -1 if end_sample is None else end_sample - start_sample
    try:
        samples, _ = soundfile.read(
            str(audio_path), start=start_sample, frames=num_frames, dtype="float32", always_2d=True
        )
    except soundfile.LibsndfileError as error:
        raise ValueError(
            f"`path` {str(audio_path)!r} is corrupt: its {info.format} header reads but its audio "
            f"does not decode ({error})."
        ) from error
    if samples.shape[0] == 0:
        raise ValueError(
            f"`path` {str(audio_path)!r} is corrupt: its header announces {info.frames} samples but "
            f"none decode from sample {start_sample} on."
        )
    # (samples, channels) -> (channels, samples)
    waveform = torch.from_numpy(np.ascontiguousarray(samples.T))
    return Audio(waveform=waveform, sampling_rate=info.samplerate)


def _open_with_pyav(audio_path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(audio_path))
    except av.error.FFmpegError as error:
        raise ValueError(
            f"`path` {str(audio_path)!r} is not a readable audio or video file (neither libsndfile nor "
            f"FFmpeg recognises it: {error}); give a wav, flac, ogg, mp3, m4a, mp4 or webm file."
        ) from error


def _first_audio_stream(container: av.container.InputContainer, audio_path: Path) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        kinds = ", ".join(stream.type for stream in container.streams) or "none"
        raise ValueError(f"`path` {str(audio_path)!r} has no audio stream (streams: {kinds}); give a file with sound.")
    return container.streams.audio[0]


def _declared_num_samples(stream: av.audio.stream.AudioStream) -> int | None:
    """The stream's length from the container header (an mp4 edit list, say), in samples; None where unknown."""
    if stream.duration is None or stream.duration <= 0 or stream.time_base is None:
        return None
    return round(stream.duration * stream.time_base * stream.codec_context.sample_rate)


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """An FFmpeg audio frame as float32 (channels, samples), scaled exactly as libsndfile scales PCM."""
    samples = frame.to_ndarray()
    format_name = frame.format.name.rstrip("p")  # "s16p" -> "s16"
    if not frame.format.is_planar:
        # Interleaved formats arrive as (1, samples * channels): (1, S*C) -> (C, S)
        samples = samples.reshape(-1, frame.layout.nb_channels).T
    if format_name in _PYAV_INTEGER_FULL_SCALE:
        offset = 128.0 if format_name == "u8" else 0.0
        return ((samples.astype(np.float64) - offset) / _PYAV_INTEGER_FULL_SCALE[format_name]).astype(np.float32)
    return samples.astype(np.float32)


def _load_with_pyav(audio_path: Path, start_time: float, duration: float | None) -> Audio:
    with _open_with_pyav(audio_path) as container:
        stream = _first_audio_stream(container, audio_path)
        sampling_rate = stream.codec_context.sample_rate
        num_channels = stream.codec_context.layout.nb_channels
        start_sample, end_sample = _cut_bounds(start_time, duration, sampling_rate)
        declared_samples = _declared_num_samples(stream)
        stop_sample = end_sample
        if end_sample is not None and declared_samples is not None and end_sample > declared_samples:
            stop_sample = None  # the cut reaches past the declared end, maybe into padding: decode all to tell
        kept: list[np.ndarray] = []
        decoded_samples = 0
        last_frame_samples = 0
        try:
            for frame in container.decode(stream):
                samples = _frame_to_float(frame)
                if frame.sample_rate != sampling_rate or samples.shape[0] != num_channels:
                    raise ValueError(
                        f"`path` {str(audio_path)!r} changes its audio format mid-stream (from "
                        f"{num_channels} channels at {sampling_rate} Hz to {samples.shape[0]} at "
                        f"{frame.sample_rate} Hz), which is not supported; convert it to wav first."
                    )
                frame_start = decoded_samples
                decoded_samples += samples.shape[1]
                last_frame_samples = samples.shape[1]
                keep_from = max(start_sample, frame_start)
                keep_to = decoded_samples if end_sample is None else min(end_sample, decoded_samples)
                if keep_to > keep_from:
                    kept.append(samples[:, keep_from - frame_start : keep_to - frame_start])
                if stop_sample is not None and decoded_samples >= stop_sample:
                    break
        except av.error.FFmpegError as error:
            raise ValueError(
                f"`path` {str(audio_path)!r} is corrupt: its audio stops decoding after "
                f"{decoded_samples} samples ({error})."
            ) from error
    if decoded_samples == 0:
        raise ValueError(f"`path` {str(audio_path)!r} is corrupt: its audio stream decodes to no samples.")
    total_samples = decoded_samples
    # Encoders pad the last frame (AAC to 1024 samples); the container's declared length says where the sound ends.
    # Only a surplus of under two frames counts as padding, so a wrong header never cuts real sound.
    reached_end = stop_sample is None or decoded_samples < stop_sample
    surplus = decoded_samples - (declared_samples or decoded_samples)
    if reached_end and 0 < surplus < 2 * last_frame_samples:
        total_samples = declared_samples
    if start_sample >= total_samples:
        raise _start_beyond_end_error(start_time, audio_path, total_samples, sampling_rate)
    cut = np.concatenate(kept, axis=1) if kept else np.zeros((num_channels, 0), np.float32)
    cut = cut[:, : total_samples - start_sample]
    return Audio(waveform=torch.from_numpy(np.ascontiguousarray(cut)), sampling_rate=sampling_rate)


def _check_finite_samples(audio: Audio, audio_path: Path, start_time: float) -> None:
    finite = torch.isfinite(audio.waveform)
    if bool(finite.all()):
        return
    first_bad = int((~finite).any(dim=0).nonzero()[0, 0])
    raise ValueError(
        f"`path` {str(audio_path)!r} holds NaN or Inf samples (the first at {first_bad} samples, "
        f"{start_time + first_bad / audio.sampling_rate:.3f} s into the file); give a clean file."
    )


# --- Checking and reshaping waveforms ---------------------------------------------------------------------------------


def validate_audio(audio: Audio, name: str = "audio") -> None:
    """Raise a ValueError naming `name` unless `audio` is an Audio of finite (channels, samples) float samples."""
    if not isinstance(audio, Audio):
        raise ValueError(f"`{name}` must be an ltx_pipeline.types.Audio; got {type(audio).__name__}.")
    waveform = audio.waveform
    if not isinstance(waveform, torch.Tensor) or not waveform.is_floating_point():
        kind = f"{waveform.dtype} tensor" if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise ValueError(f"`{name}.waveform` must be a floating-point torch.Tensor; got a {kind}.")
    if waveform.ndim != 2 or waveform.shape[0] == 0 or waveform.shape[1] == 0:
        raise ValueError(
            f"`{name}.waveform` must have shape (channels >= 1, samples >= 1); got {tuple(waveform.shape)}."
        )
    if not bool(torch.isfinite(waveform).all()):
        raise ValueError(f"`{name}.waveform` holds NaN or Inf samples; every sample must be finite.")
    rate = audio.sampling_rate
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
        raise ValueError(f"`{name}.sampling_rate` must be a positive integer number of Hz; got {rate!r}.")


def to_stereo(waveform: torch.Tensor) -> torch.Tensor:
    """(channels, samples) -> (2, samples): mono is duplicated, stereo kept, more channels averaged into both sides.

    Averaging (rather than keeping the first two channels) keeps every channel's sound, e.g. the dialogue that 5.1
    puts in the centre channel, and cannot clip; a file's channel layout is unknown here, so no layout-aware mix.
    """
    num_channels = waveform.shape[0]
    if num_channels == 2:
        return waveform
    if num_channels == 1:
        return waveform.expand(2, -1).contiguous()
    return waveform.mean(dim=0, keepdim=True).expand(2, -1).contiguous()


# --- Resampling -------------------------------------------------------------------------------------------------------


def _sinc_kernel_half_width(orig_freq: int, new_freq: int) -> int:
    """Input samples on each side of an output sample that the kernel reaches (rates divided by their gcd)."""
    return math.ceil(RESAMPLE_LOWPASS_FILTER_WIDTH * orig_freq / (min(orig_freq, new_freq) * RESAMPLE_ROLLOFF))


def _sinc_resample_kernel(
    orig_freq: int, new_freq: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, int]:
    # Adapted from torchaudio.functional.functional._get_sinc_resample_kernel (sinc_interp_hann), BSD-2-Clause.
    # orig_freq and new_freq are already divided by their gcd: the kernel has one phase per output sample of a period.
    base_freq = min(orig_freq, new_freq) * RESAMPLE_ROLLOFF
    width = _sinc_kernel_half_width(orig_freq, new_freq)
    input_offsets = torch.arange(-width, width + orig_freq, dtype=torch.float64, device=device)[None, None] / orig_freq
    output_phases = torch.arange(0, -new_freq, -1, dtype=torch.float64, device=device)[:, None, None] / new_freq
    # time of each input tap relative to each output sample, in units of the cutoff period
    t = ((output_phases + input_offsets) * base_freq).clamp(
        -RESAMPLE_LOWPASS_FILTER_WIDTH, RESAMPLE_LOWPASS_FILTER_WIDTH
    )
    window = torch.cos(t * math.pi / RESAMPLE_LOWPASS_FILTER_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernels = sinc * window * (base_freq / orig_freq)  # (new_freq, 1, 2 * width + orig_freq)
    return kernels.to(dtype), width


def resample(audio: Audio, target_rate: int) -> Audio:
    """Band-limited windowed-sinc (polyphase) resampling, as torchaudio.functional.resample with its defaults.

    Returns `audio` itself when it is already at `target_rate`. Output length is ceil(samples * target / source).
    """
    validate_audio(audio)
    if not isinstance(target_rate, (int, np.integer)) or isinstance(target_rate, bool) or target_rate <= 0:
        raise ValueError(f"`target_rate` must be a positive integer number of Hz; got {target_rate!r}.")
    if audio.sampling_rate == target_rate:
        return audio
    # Adapted from torchaudio.functional.functional._apply_sinc_resample_kernel, BSD-2-Clause.
    gcd = math.gcd(int(audio.sampling_rate), int(target_rate))
    orig_freq, new_freq = int(audio.sampling_rate) // gcd, int(target_rate) // gcd
    if new_freq * (2 * _sinc_kernel_half_width(orig_freq, new_freq) + orig_freq) > RESAMPLE_MAX_KERNEL_ELEMENTS:
        raise ValueError(
            f"`audio` at {audio.sampling_rate} Hz cannot be resampled to {target_rate} Hz here: the two rates share "
            f"no large common factor (gcd {gcd}); convert the file to a standard rate such as 48000 Hz first."
        )
    waveform = audio.waveform
    kernels, width = _sinc_resample_kernel(orig_freq, new_freq, waveform.dtype, waveform.device)
    num_channels, num_samples = waveform.shape
    padded = torch.nn.functional.pad(waveform, (width, width + orig_freq))
    # (C, S) -> (C, 1, S) -> conv -> (C, new_freq, periods) -> (C, periods * new_freq)
    resampled = torch.nn.functional.conv1d(padded[:, None], kernels, stride=orig_freq)
    resampled = resampled.transpose(1, 2).reshape(num_channels, -1)
    target_length = math.ceil(new_freq * num_samples / orig_freq)
    return Audio(waveform=resampled[:, :target_length].contiguous(), sampling_rate=int(target_rate))


# --- Log-mel spectrogram for the audio VAE ----------------------------------------------------------------------------


def _hz_to_mel_slaney(frequency_hz: float) -> float:
    # Slaney's Auditory Toolbox scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    linear_hz_per_mel, break_hz = 200.0 / 3.0, 1000.0
    log_step = math.log(6.4) / 27.0
    if frequency_hz < break_hz:
        return frequency_hz / linear_hz_per_mel
    return break_hz / linear_hz_per_mel + math.log(frequency_hz / break_hz) / log_step


def _mel_to_hz_slaney(mels: torch.Tensor) -> torch.Tensor:
    linear_hz_per_mel, break_hz = 200.0 / 3.0, 1000.0
    log_step = math.log(6.4) / 27.0
    break_mel = break_hz / linear_hz_per_mel
    return torch.where(
        mels >= break_mel, break_hz * torch.exp(log_step * (mels - break_mel)), mels * linear_hz_per_mel
    )


def mel_filter_bank() -> torch.Tensor:
    """The (n_fft // 2 + 1, MEL_BINS) = (513, 64) float32 slaney-scale, slaney-normalised triangular filter bank.

    Computed as torchaudio.functional.melscale_fbanks(513, 0, 8000, 64, 16000, norm="slaney", mel_scale="slaney").
    """
    # Adapted from torchaudio.functional.functional.melscale_fbanks / _create_triangular_filterbank, BSD-2-Clause.
    num_frequencies = MEL_N_FFT // 2 + 1
    fft_frequencies = torch.linspace(0, AUDIO_SAMPLE_RATE // 2, num_frequencies)
    mel_points = torch.linspace(_hz_to_mel_slaney(MEL_F_MIN), _hz_to_mel_slaney(MEL_F_MAX), MEL_BINS + 2)
    filter_edges_hz = _mel_to_hz_slaney(mel_points)  # (MEL_BINS + 2,)
    edge_spacing = filter_edges_hz[1:] - filter_edges_hz[:-1]
    slopes = filter_edges_hz[None, :] - fft_frequencies[:, None]  # (num_frequencies, MEL_BINS + 2)
    rising = -slopes[:, :-2] / edge_spacing[:-1]
    falling = slopes[:, 2:] / edge_spacing[1:]
    filter_bank = torch.clamp(torch.minimum(rising, falling), min=0.0)
    # Slaney normalisation: each triangle has unit area, so wide high filters are not louder.
    filter_bank *= (2.0 / (filter_edges_hz[2:] - filter_edges_hz[:-2]))[None, :]
    return filter_bank


def log_mel_spectrogram(waveform: torch.Tensor) -> torch.Tensor:
    """(batch, channels, samples) at 16 kHz -> (batch, channels, time, MEL_BINS) float32 log-mel.

    The reference AudioProcessor's transform: |STFT| (n_fft 1024, Hann window 1024, hop 160, centred, reflect
    padding), slaney mel bank 0-8 kHz, then log(clamp(mel, 1e-5)). time = samples // 160 + 1.
    """
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or not waveform.is_floating_point():
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise ValueError(
            f"`waveform` must be a floating-point tensor of shape (batch, channels, samples); got {shape}."
        )
    batch, num_channels, num_samples = waveform.shape
    if num_samples < AUDIO_VAE_MIN_SAMPLES:
        raise ValueError(
            f"`waveform` holds {num_samples} samples; the centred STFT needs at least "
            f"{AUDIO_VAE_MIN_SAMPLES} ({AUDIO_VAE_MIN_SAMPLES / AUDIO_SAMPLE_RATE * 1000:.0f} ms at "
            f"{AUDIO_SAMPLE_RATE} Hz)."
        )
    flat = waveform.to(torch.float32).reshape(batch * num_channels, num_samples)
    window = torch.hann_window(MEL_WIN_LENGTH, device=flat.device, dtype=torch.float32)
    spectrum = torch.stft(
        flat,
        n_fft=MEL_N_FFT,
        hop_length=MEL_HOP_LENGTH,
        win_length=MEL_WIN_LENGTH,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    magnitude = spectrum.abs()  # power 1; (B*C, 513, time)
    filter_bank = mel_filter_bank().to(flat.device)
    # (B*C, 513, time) -> (B*C, time, 513) @ (513, mel) -> (B*C, time, mel)
    mel = torch.matmul(magnitude.transpose(-1, -2), filter_bank)
    log_mel = torch.log(torch.clamp(mel, min=MEL_LOG_FLOOR))
    return log_mel.reshape(batch, num_channels, -1, MEL_BINS)


def prepare_audio_vae_input(audio: Audio) -> torch.Tensor:
    """The audio VAE's input for `audio`: (1, 2, time, MEL_BINS) float32 log-mel at 16 kHz.

    Channels: stereo as is; mono duplicated into both (as ComfyUI's LTX audio VAE does; the reference's own encoder
    takes 2 channels and has no mono path); more than two averaged into both sides (see `to_stereo`).
    """
    validate_audio(audio)
    stereo = Audio(waveform=to_stereo(audio.waveform.to(torch.float32)), sampling_rate=audio.sampling_rate)
    at_vae_rate = resample(stereo, AUDIO_SAMPLE_RATE)
    if at_vae_rate.num_samples < AUDIO_VAE_MIN_SAMPLES:
        raise ValueError(
            f"`audio` lasts {audio.duration_s * 1000:.1f} ms; the audio VAE needs at least "
            f"{AUDIO_VAE_MIN_SAMPLES / AUDIO_SAMPLE_RATE * 1000:.0f} ms."
        )
    return log_mel_spectrogram(at_vae_rate.waveform[None])  # (1, AUDIO_VAE_CHANNELS, time, MEL_BINS)
