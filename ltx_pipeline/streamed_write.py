"""An mp4 written while the final video decode runs: each decoded chunk of frames goes to the encoder's thread.

The pipelines' last step used to decode the whole clip and then encode it, one after the other; here the encoder
(`StreamingMp4Writer`'s background thread, the same H.264 + FLAC encoding as `media.write_mp4`) works on the first
frames while the decoder makes the next, so the file is finished shortly after the last frame is decoded.
"""

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio import validate_audio
from .media import _check_mp4_path, _encodable_audio, _exact_frame_rate, _fit_audio_to_video
from .streaming_mp4 import StreamingMp4Writer
from .types import Audio

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamedWrite:
    """What `write_while_decoding` made: the frames, the file, and when each finished."""

    frames: np.ndarray  # (num_frames, height, width, 3) uint8, every chunk in order
    path: Path
    decode_s: float  # from the call to the last chunk decoded (the decode and the encoder's waits for it)
    finish_after_decode_s: float  # from the last chunk decoded to the finished file at `path`


def audio_for_frames(audio: Audio, first_frame: int, end_frame: int, frame_rate: Fraction) -> Audio:
    """The samples that play with frames [first_frame, end_frame): consecutive ranges tile the clip exactly."""
    first = round(Fraction(first_frame) / frame_rate * audio.sampling_rate)
    end = round(Fraction(end_frame) / frame_rate * audio.sampling_rate)
    return Audio(waveform=audio.waveform[:, first:end], sampling_rate=audio.sampling_rate)


def write_while_decoding(
    path: str | os.PathLike, chunks: Iterable[np.ndarray], audio: Audio, frame_rate: float, num_frames: int
) -> StreamedWrite:
    """Encodes `chunks` ((f, H, W, 3) uint8 each, `num_frames` in all) with `audio` into an mp4 at `path` as they come.

    `audio` must last num_frames / frame_rate seconds to within one frame (padded or trimmed to exactly that, as
    `media.write_mp4` does); each chunk is encoded with the samples that play with it. On any error nothing is left
    at `path`.
    """
    mp4_path = _check_mp4_path(path)
    validate_audio(audio)
    exact_rate = _exact_frame_rate(frame_rate)
    encodable = _encodable_audio(audio)
    fitted = Audio(
        _fit_audio_to_video(encodable.waveform, encodable.sampling_rate, num_frames, exact_rate),
        encodable.sampling_rate,
    )
    # Every chunk may wait in the queue: the decoder never waits for the encoder (the frames are kept anyway).
    writer = StreamingMp4Writer(mp4_path, exact_rate, pending_windows=num_frames)
    start = time.perf_counter()
    decoded: list[np.ndarray] = []
    written = 0
    try:
        for frames in chunks:
            writer.append(frames, audio_for_frames(fitted, written, written + len(frames), exact_rate))
            decoded.append(frames)
            written += len(frames)
        if written != num_frames:
            raise ValueError(f"The decoder made {written} frames where {num_frames} were expected.")
        decoded_at = time.perf_counter()
        frames = np.concatenate(decoded)  # while the encoder finishes
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finished_at = time.perf_counter()
    logger.info("Wrote %s while decoding (%.3f s after the last frame).", mp4_path, finished_at - decoded_at)
    return StreamedWrite(
        frames=frames,
        path=mp4_path,
        decode_s=decoded_at - start,
        finish_after_decode_s=finished_at - decoded_at,
    )
