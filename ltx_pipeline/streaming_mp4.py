"""An mp4 written window by window: frames and sound are appended as a long run makes them, never held whole.

The encoding (H.264 yuv420p at `MP4_CRF`, lossless FLAC at the sound's own rate and channels, exact frame rate, one
tick per audio sample) is media.py's, with its helpers; what differs is that the file grows. The sound is stored as
24-bit samples throughout (one format for the whole stream, whatever a window holds): a 16-bit source still decodes
sample for sample. A background thread converts and encodes each appended window
while the caller generates the next, and a bounded queue keeps at most `pending_windows` windows waiting. `close()`
finalises a valid, playable file at the path (written to a temporary name and renamed, as media.py does); `abort()`
leaves nothing behind.
"""

import logging
import os
import queue
import threading
import uuid
from pathlib import Path

import av
import numpy as np
import torch

from .constants import (
    MP4_AUDIO_CODEC,
    MP4_AUDIO_INT24_SCALE,
    MP4_AUDIO_LAYOUTS,
    MP4_CRF,
    MP4_PRESET,
    MP4_VIDEO_CODEC,
)
from .media import (
    _check_frames,
    _check_mp4_path,
    _conversion_threads,
    _encodable_audio,
    _exact_frame_rate,
    _video_frames,
    _write_atomically,
)
from .types import Audio

logger = logging.getLogger(__name__)

_DONE = object()


class StreamingMp4Writer:
    """Appends (frames, audio) windows to an mp4 on a background thread; `close()` makes the finished file."""

    def __init__(self, path: str | os.PathLike, frame_rate: float, pending_windows: int = 1):
        self.path = _check_mp4_path(path)
        self.frame_rate = _exact_frame_rate(frame_rate)
        self.frames_written = 0  # appended so far (the thread may still be encoding the last window)
        self.samples_written = 0
        self.sampling_rate: int | None = None
        self.num_channels: int | None = None
        self._size: tuple[int, int] | None = None
        self._temporary = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:12]}.partial.mp4")
        self._queue: queue.Queue = queue.Queue(maxsize=pending_windows)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def append(self, frames: np.ndarray | None, audio: Audio) -> None:
        """Queues one window: (F, H, W, 3) uint8 frames and the audio that plays with them (any length), or sound
        alone (`frames` None) after at least one window.

        Blocks while `pending_windows` windows wait to be encoded; raises the encoder thread's error, if any.
        """
        self._raise_error()
        if frames is None and self._thread is None:
            raise ValueError("The first window appended must hold frames; got `frames=None`.")
        if frames is not None:
            _check_frames(frames)
        encodable = _encodable_audio(audio)
        if self._thread is None:
            self._size = frames.shape[1:3]
            self.sampling_rate = encodable.sampling_rate
            self.num_channels = encodable.num_channels
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._encode, name="mp4-writer", daemon=True)
            self._thread.start()
        size = self._size if frames is None else frames.shape[1:3]
        if (size, encodable.sampling_rate, encodable.num_channels) != (
            self._size,
            self.sampling_rate,
            self.num_channels,
        ):
            raise ValueError(
                f"Every window must have the first one's size {self._size}, rate {self.sampling_rate} Hz and "
                f"{self.num_channels} channels; got {size}, {encodable.sampling_rate} Hz, {encodable.num_channels}."
            )
        self._queue.put((frames, encodable.waveform.contiguous()))
        self.frames_written += 0 if frames is None else len(frames)
        self.samples_written += encodable.num_samples

    def close(self) -> Path:
        """Encodes what is queued, finalises the file and moves it to `path`; returns the path."""
        if self._thread is None:
            raise ValueError(f"Nothing was appended to {self.path}; an mp4 needs at least one frame.")
        self._queue.put(_DONE)
        self._thread.join()
        self._raise_error()
        os.replace(self._temporary, self.path)
        logger.info("Wrote %s (%d frames, %d audio samples).", self.path, self.frames_written, self.samples_written)
        return self.path

    def abort(self) -> None:
        """Stops the encoder and removes the partial file."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._temporary.unlink(missing_ok=True)

    def _raise_error(self) -> None:
        if self._error is not None:
            self._temporary.unlink(missing_ok=True)
            raise RuntimeError(f"Writing {self.path} failed: {self._error}") from self._error

    def _encode(self) -> None:
        try:
            self._encode_queued()
        except BaseException as error:  # handed to the caller's next append() or close()
            self._error = error
            while self._queue.get() is not _DONE:  # let a blocked append() return
                pass

    def _encode_queued(self) -> None:
        rate = self.sampling_rate
        options = {"movie_timescale": str(rate), "movflags": "+faststart"}
        threads = _conversion_threads(None)
        with av.open(str(self._temporary), mode="w", format="mp4", options=options) as container:
            video_stream = container.add_stream(
                MP4_VIDEO_CODEC, rate=self.frame_rate, options={"crf": str(MP4_CRF), "preset": MP4_PRESET}
            )
            video_stream.height, video_stream.width = self._size
            video_stream.pix_fmt = "yuv420p"
            video_stream.codec_context.time_base = 1 / self.frame_rate
            video_stream.codec_context.thread_type = "FRAME"
            layout = MP4_AUDIO_LAYOUTS[self.num_channels]
            audio_stream = container.add_stream(MP4_AUDIO_CODEC, rate=rate)
            audio_stream.layout = layout
            audio_stream.format = "s32"
            frame_index = sample_index = 0
            while (item := self._queue.get()) is not _DONE:
                frames, waveform = item
                for video_frame in _video_frames(frames if frames is not None else [], threads):
                    video_frame.pts = frame_index
                    frame_index += 1
                    container.mux(video_stream.encode(video_frame))
                # PyAV cuts each chunk into the encoder's own frames and carries the remainder to the next chunk.
                audio_frame = av.AudioFrame.from_ndarray(_pcm_24(waveform), format="s32", layout=layout)
                audio_frame.sample_rate = rate
                audio_frame.pts = sample_index
                sample_index += waveform.shape[-1]
                container.mux(audio_stream.encode(audio_frame))
            container.mux(video_stream.encode())
            container.mux(audio_stream.encode())


def _pcm_24(waveform: torch.Tensor) -> np.ndarray:
    """(C, S) float -> (1, S * C) interleaved 24-bit samples in the top bits of int32, as FLAC stores them."""
    scaled = (waveform.double() * MP4_AUDIO_INT24_SCALE / 256).round().clamp(-(2**23), 2**23 - 1)
    # (C, S) -> (1, S * C): packed formats interleave the channels sample by sample
    return (scaled * 256).to(torch.int32).T.contiguous().reshape(1, -1).numpy()


def join_mp4s(parts: list[Path], path: str | os.PathLike) -> Path:
    """Joins mp4s written with the same settings (media.py's `write_mp4`: same size, rate and sound format) into
    one, end to end, by copying their packets (nothing is decoded or re-encoded); written atomically.

    The studio's growing long-form preview: each finished window is written once as its own short file, and the
    preview is those files joined, so showing it costs a copy of compressed packets, not an encode of the clip so far.
    """
    mp4_path = _check_mp4_path(path)
    if not parts:
        raise ValueError("`parts` must name at least one mp4 to join; got none.")

    def write(temporary: Path) -> None:
        with av.open(str(temporary), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
            streams: dict[int, av.stream.Stream] = {}
            offsets: dict[int, float] = {}  # s: where each stream's next part starts
            for part in parts:
                with av.open(str(part)) as source:
                    if not streams:
                        for stream in source.streams:
                            streams[stream.index] = output.add_stream_from_template(stream)
                            offsets[stream.index] = 0.0
                    ends = dict(offsets)
                    for packet in source.demux():
                        if packet.dts is None or packet.stream.index not in streams:
                            continue
                        base = packet.time_base
                        shift = round(offsets[packet.stream.index] / base)
                        end = (packet.pts + (packet.duration or 0) + shift) * base
                        ends[packet.stream.index] = max(ends[packet.stream.index], float(end))
                        packet.pts += shift
                        packet.dts += shift
                        packet.stream = streams[packet.stream.index]
                        output.mux(packet)
                    offsets = ends

    _write_atomically(mp4_path, write)
    return mp4_path
