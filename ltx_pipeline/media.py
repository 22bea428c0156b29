"""Writing results: H.264 + FLAC mp4 files with exactly matching stream durations, and the JSON recipe beside them."""

import collections
import dataclasses
import enum
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from ltx_pipeline.audio import to_stereo, validate_audio
from ltx_pipeline.constants import (
    FRAME_RATE_MAX_DENOMINATOR,
    MP4_AUDIO_CODEC,
    MP4_AUDIO_INT16_SCALE,
    MP4_AUDIO_INT24_SCALE,
    MP4_AUDIO_LAYOUTS,
    MP4_CONVERSION_THREADS_MAX,
    MP4_CRF,
    MP4_PRESET,
    MP4_VIDEO_CODEC,
)
from ltx_pipeline.types import Audio, LTXAVOutput

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Mp4Info:
    """What an mp4 holds, as its container declares it (`probe_mp4`)."""

    width: int  # px
    height: int  # px
    frame_rate: float  # frames per second
    num_frames: int
    video_duration_s: float
    audio_duration_s: float | None  # None where the file has no audio stream
    audio_sample_rate: int | None  # Hz
    audio_channels: int | None
    video_codec: str  # FFmpeg decoder name, e.g. "h264"
    audio_codec: str | None  # e.g. "flac"


# --- Frames -----------------------------------------------------------------------------------------------------------


def frames_to_uint8(
    video: torch.Tensor | np.ndarray,
    value_range: tuple[float, float] = (0.0, 1.0),
    channels_first: bool = False,
    name: str = "video",
) -> np.ndarray:
    """Decoded video as (frames, height, width, 3) uint8 RGB.

    `video` is float with `value_range` mapped to 0..255: (0, 1) for diffusers' postprocessed output
    (`output_type="np"` / `"pt"`), (-1, 1) for the raw VAE decoder output. Values past the range (decoders overshoot
    a little) are clipped to it. Layout (F, H, W, 3) or (1, F, H, W, 3); with `channels_first`, the VAE's
    (3, F, H, W) or (1, 3, F, H, W). A uint8 input is only checked and reshaped. NaN or Inf raise a ValueError
    naming `name`.
    """
    if isinstance(video, torch.Tensor):
        array = video.detach().to("cpu", torch.uint8 if video.dtype == torch.uint8 else torch.float32).numpy()
    elif isinstance(video, np.ndarray):
        array = video
    else:
        raise ValueError(f"`{name}` must be a torch.Tensor or numpy array; got {type(video).__name__}.")
    low, high = value_range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"`value_range` must be two finite numbers (low, high) with low < high; got {value_range!r}.")
    expected = "(1, 3, F, H, W) or (3, F, H, W)" if channels_first else "(1, F, H, W, 3) or (F, H, W, 3)"
    if array.ndim == 5:
        if array.shape[0] != 1:
            raise ValueError(f"`{name}` must hold one video, {expected}; got a batch of shape {array.shape}.")
        array = array[0]
    if array.ndim != 4:
        raise ValueError(f"`{name}` must have shape {expected}; got {array.shape}.")
    if channels_first:
        array = np.moveaxis(array, 0, -1)  # (3, F, H, W) -> (F, H, W, 3)
    if array.shape[-1] != 3:
        raise ValueError(f"`{name}` must have 3 (RGB) channels in layout {expected}; got shape {array.shape}.")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"`{name}` must be float (in {value_range}) or uint8; got dtype {array.dtype}.")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` holds NaN or Inf values; the decoder output is broken (check dtype and inputs).")
    unit = (array.astype(np.float32) - low) / (high - low)
    return np.ascontiguousarray(np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8))


# --- mp4 --------------------------------------------------------------------------------------------------------------


def _exact_frame_rate(frame_rate: float) -> Fraction:
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float, np.integer, np.floating, Fraction)):
        raise ValueError(f"`frame_rate` must be a number of frames per second; got {frame_rate!r}.")
    if not math.isfinite(frame_rate) or frame_rate <= 0:
        raise ValueError(f"`frame_rate` must be a finite number of frames per second > 0; got {frame_rate!r}.")
    return Fraction(frame_rate).limit_denominator(FRAME_RATE_MAX_DENOMINATOR)


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"`frames` must be a numpy array (F, H, W, 3) uint8; got {type(frames).__name__}.")
    if frames.dtype != np.uint8:
        raise ValueError(
            f"`frames` must be uint8 (F, H, W, 3); got dtype {frames.dtype} (convert float decoder "
            f"output with frames_to_uint8)."
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"`frames` must have shape (frames >= 1, height, width, 3); got {frames.shape}.")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(
            f"`frames` must have an even height and width for H.264 yuv420p; got {height}x{width} "
            f"(height x width). Generate at a multiple of 32 px instead of resizing."
        )


def _check_mp4_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a file path (str or Path); got {type(path).__name__} {path!r}.")
    mp4_path = Path(path)
    if mp4_path.suffix.lower() != ".mp4":
        raise ValueError(f"`path` must end in .mp4; got {str(mp4_path)!r}.")
    if mp4_path.is_dir():
        raise ValueError(f"`path` {str(mp4_path)!r} is a directory; give a file name ending in .mp4.")
    return mp4_path


def _fit_audio_to_video(
    waveform: torch.Tensor, sampling_rate: int, num_frames: int, frame_rate: Fraction
) -> torch.Tensor:
    """Pad with silence or trim so the audio lasts exactly num_frames / frame_rate; more than a frame off is an error."""
    video_duration = Fraction(num_frames) / frame_rate
    audio_duration = Fraction(waveform.shape[-1], sampling_rate)
    if abs(audio_duration - video_duration) > 1 / frame_rate:
        raise ValueError(
            f"`audio` lasts {float(audio_duration):.4f} s ({waveform.shape[-1]} samples at {sampling_rate} Hz) but "
            f"`frames` last {float(video_duration):.4f} s ({num_frames} at {float(frame_rate):g} fps); they may "
            f"differ by at most one frame ({float(1 / frame_rate):.4f} s)."
        )
    target_samples = round(video_duration * sampling_rate)
    difference = target_samples - waveform.shape[-1]
    if difference:
        logger.debug("Fitting audio to the video: %+d samples at %d Hz.", difference, sampling_rate)
    if difference > 0:
        return torch.nn.functional.pad(waveform, (0, difference))
    return waveform[:, :target_samples]


def _encodable_audio(audio: Audio) -> Audio:
    """The audio as FLAC can carry it: its own rate and channels (up to 8; more are mixed to stereo, with a warning)."""
    waveform = audio.waveform.detach().to("cpu", torch.float32)
    if waveform.shape[0] not in MP4_AUDIO_LAYOUTS:
        logger.warning("The mp4 carries at most %d audio channels; mixing %d to stereo.", 8, waveform.shape[0])
        waveform = to_stereo(waveform)
    return Audio(waveform=waveform, sampling_rate=int(audio.sampling_rate))


def _pcm_samples(waveform: torch.Tensor) -> tuple[np.ndarray, str]:
    """(1, samples * channels) interleaved PCM and its PyAV format: 16-bit where that holds every sample exactly (any
    16-bit source, so the file decodes to the input sample for sample), 24-bit in int32 otherwise."""
    scaled_16 = waveform.double() * MP4_AUDIO_INT16_SCALE
    in_range = bool((scaled_16 >= -MP4_AUDIO_INT16_SCALE).all()) and bool((scaled_16 < MP4_AUDIO_INT16_SCALE).all())
    if in_range and bool((scaled_16 == scaled_16.round()).all()):
        samples, sample_format = scaled_16.to(torch.int16), "s16"
    else:
        scaled_24 = (waveform.double() * MP4_AUDIO_INT24_SCALE / 256).round().clamp(-(2**23), 2**23 - 1)
        if bool((waveform.abs() > 1).any()):
            logger.warning("Audio samples beyond [-1, 1] are clipped to full scale in the mp4.")
        samples, sample_format = (scaled_24 * 256).to(torch.int32), "s32"
    # (C, S) -> (1, S * C): packed formats interleave the channels sample by sample
    return samples.T.contiguous().reshape(1, -1).numpy(), sample_format


def _conversion_threads(threads: int | None) -> int:
    if threads is None:
        return min(MP4_CONVERSION_THREADS_MAX, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(
            f"`threads` must be None or an int >= 0 (0: convert on the encoding thread); got {threads!r}."
        )
    return threads


def _video_frames(frames: np.ndarray, threads: int) -> Iterator[av.VideoFrame]:
    """The frames as yuv420p VideoFrames in order, converted by `threads` threads ahead of the caller (0: by it).

    The conversion is the one the encoder would make itself (the same swscale call with the same defaults).
    """

    def convert(pixels: np.ndarray) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24").reformat(format="yuv420p")

    if threads == 0:
        yield from map(convert, frames)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mp4-convert") as pool:
        pending: collections.deque = collections.deque()
        for pixels in frames:
            pending.append(pool.submit(convert, pixels))
            if len(pending) > 2 * threads:  # a bounded lead: converted frames held at once, whatever the clip's length
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _encode_mp4(path: Path, frames: np.ndarray, audio: Audio, frame_rate: Fraction, threads: int) -> None:
    # A movie timescale of one tick per audio sample lets the mp4 edit list state the audio's length exactly
    # (the default of 1000 rounds it to milliseconds).
    options = {"movie_timescale": str(audio.sampling_rate), "movflags": "+faststart"}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        video_stream = container.add_stream(
            MP4_VIDEO_CODEC, rate=frame_rate, options={"crf": str(MP4_CRF), "preset": MP4_PRESET}
        )
        video_stream.width = frames.shape[2]
        video_stream.height = frames.shape[1]
        video_stream.pix_fmt = "yuv420p"
        video_stream.codec_context.time_base = 1 / frame_rate
        # x264 threads on whole frames rather than on slices of each (PyAV's default): more throughput per core.
        video_stream.codec_context.thread_type = "FRAME"
        audio_stream, audio_frame = _audio_stream(container, audio)
        for index, video_frame in enumerate(_video_frames(frames, threads)):
            video_frame.pts = index
            container.mux(video_stream.encode(video_frame))
        container.mux(video_stream.encode())
        container.mux(audio_stream.encode(audio_frame))
        container.mux(audio_stream.encode())


def _audio_stream(container: av.container.OutputContainer, audio: Audio) -> tuple[av.audio.stream.AudioStream, Any]:
    """The lossless audio stream for `audio`, and the whole clip as one frame for it (PyAV cuts it into the
    encoder's frames; the rate is unchanged, so nothing is resampled)."""
    layout = MP4_AUDIO_LAYOUTS[audio.num_channels]
    samples, sample_format = _pcm_samples(audio.waveform)
    stream = container.add_stream(MP4_AUDIO_CODEC, rate=audio.sampling_rate)
    stream.layout = layout
    stream.format = sample_format
    frame = av.AudioFrame.from_ndarray(samples, format=sample_format, layout=layout)
    frame.sample_rate = audio.sampling_rate
    frame.pts = 0
    return stream, frame


def write_with_audio(source: Path, path: str | os.PathLike, num_frames: int, audio: Audio) -> Path:
    """An mp4 holding `source`'s first video stream as it is (its packets copied, no re-encode) and `audio`,
    lasting `num_frames` frames, atomically (video to audio, retake of the sound alone)."""
    mp4_path = _check_mp4_path(path)
    validate_audio(audio)
    encodable = _encodable_audio(audio)

    def write(temporary_path: Path) -> None:
        with av.open(str(source)) as reader:
            video_in = reader.streams.video[0]
            rate = Fraction(video_in.average_rate)
            fitted = _fit_audio_to_video(encodable.waveform, encodable.sampling_rate, num_frames, rate)
            fitted_audio = Audio(waveform=fitted.contiguous(), sampling_rate=encodable.sampling_rate)
            options = {"movie_timescale": str(encodable.sampling_rate), "movflags": "+faststart"}
            with av.open(str(temporary_path), mode="w", format="mp4", options=options) as writer:
                video_out = writer.add_stream_from_template(video_in)
                audio_stream, audio_frame = _audio_stream(writer, fitted_audio)
                for packet in reader.demux(video_in):
                    if packet.dts is None:  # the demuxer's flush packet
                        continue
                    packet.stream = video_out
                    writer.mux(packet)
                writer.mux(audio_stream.encode(audio_frame))
                writer.mux(audio_stream.encode())

    _write_atomically(mp4_path, write)
    logger.info("Wrote %s (the video's own frames, copied, with new audio).", mp4_path)
    return mp4_path


def _write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Run write(temporary_path) in path's folder, then rename onto path; on failure nothing is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary_path = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")
    try:
        write(temporary_path)
        os.replace(temporary_path, path)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise
    return path


def write_mp4(
    path: str | os.PathLike, frames: np.ndarray, audio: Audio, frame_rate: float, threads: int | None = None
) -> Path:
    """Write frames and audio as an H.264 (yuv420p) + FLAC mp4, atomically.

    frames: (F, H, W, 3) uint8 RGB with even H and W. audio: 1 to 8 channels kept as they are, at its own rate, in
    16-bit samples where that is exact (every 16-bit source) and 24-bit otherwise; more than 8 channels are mixed to
    stereo. It must last F / frame_rate seconds to within one frame and is padded with silence or trimmed to exactly
    that.
    threads: threads converting the frames to yuv420p ahead of the encoder (None: one per CPU core, at most
    `MP4_CONVERSION_THREADS_MAX`; 0: on the encoding thread). The file is the same whatever the number.
    """
    mp4_path = _check_mp4_path(path)
    _check_frames(frames)
    conversion_threads = _conversion_threads(threads)
    validate_audio(audio)
    exact_rate = _exact_frame_rate(frame_rate)
    encodable = _encodable_audio(audio)
    fitted = _fit_audio_to_video(encodable.waveform, encodable.sampling_rate, frames.shape[0], exact_rate)
    fitted_audio = Audio(waveform=fitted.contiguous(), sampling_rate=encodable.sampling_rate)
    _write_atomically(
        mp4_path,
        lambda temporary_path: _encode_mp4(temporary_path, frames, fitted_audio, exact_rate, conversion_threads),
    )
    logger.info(
        "Wrote %s (%d frames at %g fps, %d Hz %d-channel audio).",
        mp4_path,
        frames.shape[0],
        float(exact_rate),
        fitted_audio.sampling_rate,
        fitted_audio.num_channels,
    )
    return mp4_path


def probe_mp4(path: str | os.PathLike) -> Mp4Info:
    """Read an mp4's streams from its header (no decoding): sizes, rates, frame count, codecs and durations."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise ValueError(f"`path` must be an existing mp4 file; got {path!r}.")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise ValueError(f"`path` {str(path)!r} is not a readable video file ({error}).") from error
    with container:
        if not container.streams.video:
            raise ValueError(f"`path` {str(path)!r} has no video stream.")
        video = container.streams.video[0]
        frame_rate = float(video.average_rate)
        num_frames = video.frames or sum(1 for packet in container.demux(video) if packet.size)
        if video.duration is not None:
            video_duration = float(video.duration * video.time_base)
        else:
            video_duration = num_frames / frame_rate
        audio_duration = audio_rate = audio_channels = audio_codec = None
        if container.streams.audio:
            audio = container.streams.audio[0]
            audio_rate = audio.codec_context.sample_rate
            audio_channels = audio.codec_context.layout.nb_channels
            audio_codec = audio.codec_context.name
            if audio.duration is not None:
                audio_duration = float(audio.duration * audio.time_base)
        return Mp4Info(
            width=video.codec_context.width,
            height=video.codec_context.height,
            frame_rate=frame_rate,
            num_frames=num_frames,
            video_duration_s=video_duration,
            audio_duration_s=audio_duration,
            audio_sample_rate=audio_rate,
            audio_channels=audio_channels,
            video_codec=video.codec_context.name,
            audio_codec=audio_codec,
        )


# --- Recipe -----------------------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """json.dumps `default`: the few non-JSON types a recipe holds, as plain values; anything else is an error."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} {value!r:.80}")


def recipe_to_json(recipe: dict) -> str:
    """The recipe as readable JSON text: sorted keys, 2-space indent, UTF-8 characters kept, a final newline."""
    if not isinstance(recipe, dict):
        raise ValueError(f"`recipe` must be a dict; got {type(recipe).__name__}.")
    try:
        return (
            json.dumps(recipe, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False, default=_json_value)
            + "\n"
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`recipe` holds a value JSON cannot store ({error}); use str, numbers (finite), bools, "
            f"None, lists and dicts with str keys."
        ) from error


def write_recipe(path: str | os.PathLike, recipe: dict) -> Path:
    """Write the recipe as JSON beside the video: same folder and stem, suffix .json. Returns the JSON path."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a file path (str or Path); got {type(path).__name__} {path!r}.")
    text = recipe_to_json(recipe)
    json_path = Path(path).with_suffix(".json")
    return _write_atomically(json_path, lambda temporary_path: temporary_path.write_text(text, encoding="utf-8"))


def save_output(output: LTXAVOutput, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a finished generation: the mp4 at `path` and its recipe beside it. Returns (mp4 path, json path)."""
    if not isinstance(output, LTXAVOutput):
        raise ValueError(f"`output` must be an LTXAVOutput; got {type(output).__name__}.")
    recipe_to_json(output.recipe)  # fail on an unstorable recipe before spending time on the video
    if output.written_mp4 is not None:  # encoded while it was decoded: the file is there already
        mp4_path = _check_mp4_path(path)
        if mp4_path.resolve() != output.written_mp4.resolve():
            _write_atomically(mp4_path, lambda temporary_path: shutil.copyfile(output.written_mp4, temporary_path))
        return mp4_path, write_recipe(mp4_path, output.recipe)
    if output.video_source is not None:
        mp4_path = write_with_audio(output.video_source, path, len(output.frames), output.audio)
        return mp4_path, write_recipe(mp4_path, output.recipe)
    mp4_path = write_mp4(path, output.frames, output.audio, output.frame_rate)
    return mp4_path, write_recipe(mp4_path, output.recipe)
