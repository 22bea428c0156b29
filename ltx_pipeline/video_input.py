"""A user's video as the model takes it (video to audio, retake), and its frames written back unchanged.

Nothing is trimmed, cropped or resized unless the caller asks: a frame count that is not 8k+1 is an error offering
`num_frames`, a size that is not a multiple of the model's grid an error offering `fit="crop"` or `fit="resize"`.
Where the frames are used as they are, the output copies the file's own video packets (no re-encode).
"""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import PIL.Image
import torch

from . import constants, validation

logger = logging.getLogger(__name__)

FITS = ("crop", "resize")
# Codecs whose packets an mp4 can hold as they are.
MP4_COPYABLE_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"})


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, from its header and a count of its frames."""

    num_frames: int
    width: int
    height: int
    frame_rate: Fraction
    codec: str
    has_audio: bool


@dataclass(frozen=True)
class VideoClip:
    """Frames ready for the model, and where they came from."""

    frames: np.ndarray  # (F, H, W, 3) uint8 RGB
    frame_rate: Fraction
    source: Path  # the file read
    # What was done to the frames (trimmed, cropped, resized), one sentence each; empty: the file's frames as they are.
    changes: tuple[str, ...] = field(default=())
    codec: str = ""

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    @property
    def copyable(self) -> bool:
        """The output can copy the file's video packets: the frames are unchanged and an mp4 holds the codec."""
        return not self.changes and self.codec in MP4_COPYABLE_CODECS


def probe_video(path: str | os.PathLike, name: str = "video") -> VideoInfo:
    """Reads a video file's header and counts its frames (no decoding); a clear error for anything else."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be a video file path (mp4, webm, mov); got {type(path).__name__}.")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"`{name}` file not found: {file.name}")
    try:
        with av.open(str(file)) as container:
            if not container.streams.video:
                raise ValueError(f"`{name}` {file.name} has no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
            return VideoInfo(
                num_frames=num_frames,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                frame_rate=Fraction(rate) if rate else Fraction(0),
                codec=stream.codec_context.name,
                has_audio=bool(container.streams.audio),
            )
    except av.error.FFmpegError as error:
        raise ValueError(f"`{name}` {file.name} is not a readable video file (mp4, webm, mov): {error}") from error


def check_video(
    info: VideoInfo, num_frames: int | None, fit: str | None, multiple: int, name: str = "video", sound: bool = False
) -> tuple[int, tuple[int, int]]:
    """The frame count and (height, width) the model will take, or an error offering the explicit option; with
    `sound`, a video without a sound track is an error too."""
    if sound and not info.has_audio:
        raise ValueError(
            f"`{name}` has no sound track; this mode regenerates part of a clip's picture and sound, so it needs "
            "both (give the video sound with video to audio first)."
        )
    if fit is not None and fit not in FITS:
        raise ValueError(f"`fit` must be None, 'crop' or 'resize'; got {fit!r}.")
    if info.frame_rate <= 0:
        raise ValueError(f"`{name}` declares no frame rate; re-encode it with one.")
    validation.check_frame_rate(float(info.frame_rate))
    if num_frames is None:
        if (
            info.num_frames < 1 + constants.VIDEO_TEMPORAL_COMPRESSION
            or (info.num_frames - 1) % constants.VIDEO_TEMPORAL_COMPRESSION
        ):
            below, _ = validation.nearest_valid_frame_counts(info.num_frames)
            if below > info.num_frames:
                raise ValueError(
                    f"`{name}` has {info.num_frames} frames; the model needs at least "
                    f"{1 + constants.VIDEO_TEMPORAL_COMPRESSION}."
                )
            raise ValueError(
                f"`{name}` has {info.num_frames} frames; the model takes 8k+1 frames. Pass num_frames={below} to use "
                f"its first {below} frames ({below / float(info.frame_rate):.2f} s)."
            )
        num_frames = info.num_frames
    else:
        validation.check_num_frames(num_frames)
        if num_frames > info.num_frames:
            raise ValueError(f"`num_frames` must be at most the video's {info.num_frames} frames; got {num_frames}.")
    size = (info.height, info.width)
    if info.height % multiple or info.width % multiple:
        target = _fitted_size(info.height, info.width, multiple)
        if target is None:
            raise ValueError(
                f"`{name}` is {info.width}x{info.height}; the model needs at least {multiple}x{multiple}."
            )
        if fit is None:
            raise ValueError(
                f"`{name}` is {info.width}x{info.height}; the model takes sizes that are multiples of {multiple} "
                f"pixels. Pass fit='crop' to centre-crop it to {target[1]}x{target[0]}, or fit='resize' to scale it "
                f"to {target[1]}x{target[0]}."
            )
        size = target
    return num_frames, size


def _fitted_size(height: int, width: int, multiple: int) -> tuple[int, int] | None:
    """The largest multiple-of-`multiple` size within (height, width), or None when nothing fits."""
    target = (height // multiple * multiple, width // multiple * multiple)
    return target if min(target) > 0 else None


def read_video(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fit: str | None = None,
    multiple: int = constants.TWO_STAGE_SIZE_MULTIPLE,
    name: str = "video",
    check_work: Callable[[int, int, int], None] | None = None,
    sound: bool = False,
) -> VideoClip:
    """The first `num_frames` frames (None: all, which must be 8k+1) as the model takes them; its audio is ignored.
    `check_work(height, width, num_frames)` runs on the header's figures before anything is decoded."""
    info = probe_video(path, name)
    num_frames, (height, width) = check_video(info, num_frames, fit, multiple, name, sound)
    if check_work is not None:
        check_work(height, width, num_frames)
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == num_frames:
                break
    changes = []
    if num_frames < info.num_frames:
        changes.append(f"trimmed to its first {num_frames} of {info.num_frames} frames")
    if (height, width) != (info.height, info.width):
        frames = [_fit_frame(pixels, height, width, fit) for pixels in frames]
        verb = "centre-cropped" if fit == "crop" else "resized"
        changes.append(f"{verb} from {info.width}x{info.height} to {width}x{height}")
    for change in changes:
        logger.info("The video was %s.", change)
    return VideoClip(np.stack(frames), info.frame_rate, Path(path), tuple(changes), info.codec)


def _fit_frame(pixels: np.ndarray, height: int, width: int, fit: str) -> np.ndarray:
    if fit == "crop":
        top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
        return pixels[top : top + height, left : left + width]
    return np.asarray(PIL.Image.fromarray(pixels).resize((width, height), PIL.Image.LANCZOS))


def frames_to_pixels(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (1, 3, F, H, W) in [-1, 1], as the video VAE takes them."""
    return (torch.from_numpy(frames).float() / 127.5 - 1).permute(3, 0, 1, 2)[None]
