"""Long form as plain data: the windows a long clip is cut into, and the prompt timeline applied per window.

A clip longer than one window is generated as windows of `window_frames` pixel frames (8k + 1), each holding its
first `overlap` latent frames clean: copies of the last `overlap` latent frames of the window before. In pixel time
those K latent frames are the window's first 8(K - 1) + 1 frames (the causal VAE's first latent frame holds one
frame, each later one eight), so consecutive windows share that many frames and a window starts
`window_frames - (8(K - 1) + 1)` frames after the one before. The shared frames are written once, from the earlier
window (which generated them); the later window writes from the frame after them.
"""

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import constants


@dataclass(frozen=True)
class Window:
    """One window of a long clip, in pixel frames of the whole clip."""

    index: int  # 0-based
    start_frame: int  # the clip's frame that is this window's frame 0
    num_frames: int  # 8k + 1: what the model generates
    held_latent_frames: int  # latent frames held clean from the window before (0 for the first window)
    first_written: int  # this window's first frame written to the output: after the frames it shares
    num_written: int  # frames it adds to the output

    @property
    def latent_frames(self) -> int:
        return (self.num_frames - 1) // constants.VIDEO_TEMPORAL_COMPRESSION + 1

    @property
    def written_start_frame(self) -> int:
        """The clip's frame where this window's output begins."""
        return self.start_frame + self.first_written


def shared_frames(overlap: int) -> int:
    """Pixel frames that `overlap` latent frames at a window's start decode to: 8(K - 1) + 1."""
    return constants.VIDEO_TEMPORAL_COMPRESSION * (overlap - 1) + 1


def check_window(window_frames: int, overlap: int) -> None:
    """The window is a valid clip length and the overlap a whole number of its latent frames, smaller than it."""
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    if isinstance(window_frames, bool) or not isinstance(window_frames, int) or window_frames < 1 + step:
        raise ValueError(f"`window_frames` must be an integer 8k+1 of at least {1 + step}; got {window_frames!r}.")
    if (window_frames - 1) % step:
        raise ValueError(f"`window_frames` must be 8k+1 (e.g. 97 or 121); got {window_frames}.")
    latent_frames = (window_frames - 1) // step + 1
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
        raise ValueError(f"`overlap_latent_frames` must be an integer of at least 1; got {overlap!r}.")
    if overlap >= latent_frames:
        raise ValueError(
            f"`overlap_latent_frames` must be smaller than the window's {latent_frames} latent frames "
            f"(window_frames={window_frames}); got {overlap}."
        )


def plan_windows(total_frames: int, window_frames: int, overlap: int) -> list[Window]:
    """The windows that cover `total_frames` frames, every frame written by exactly one window.

    All windows are `window_frames` long but the last, which is the shortest 8k + 1 that reaches the end (its
    frames past the end are generated and not written). A clip that fits one window is one window.
    """
    check_window(window_frames, overlap)
    if isinstance(total_frames, bool) or not isinstance(total_frames, int) or total_frames < 1:
        raise ValueError(f"`total_frames` must be a positive integer; got {total_frames!r}.")
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    shared = shared_frames(overlap)
    stride = window_frames - shared
    windows, start = [], 0
    while True:
        first = 0 if not windows else shared
        needed = total_frames - start
        num_frames = (
            window_frames if needed > window_frames else max(1 + step, math.ceil((needed - 1) / step) * step + 1)
        )
        held = 0 if not windows else overlap
        windows.append(Window(len(windows), start, num_frames, held, first, min(num_frames, needed) - first))
        if needed <= window_frames:
            return windows
        start += stride


# --- Prompt timeline -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSegment:
    """A prompt for a time range of the clip, [start_s, end_s)."""

    start_s: float
    end_s: float
    prompt: str


_RANGE = re.compile(r"(?:^|[;\n])\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*s?\s*:")


def parse_prompt_timeline(text: str) -> list[PromptSegment]:
    """'0-10 s: a red ball ...; 10-25 s: a blue ball ...' -> segments; ';' or a new line before each range.

    The ranges must be in order and must not overlap; gaps take the run's main prompt.
    """
    if not isinstance(text, str):
        raise ValueError(
            f"`prompt_timeline` must be text like '0-10 s: ...; 10-25 s: ...'; got {type(text).__name__}."
        )
    matches = list(_RANGE.finditer(text))
    if not matches or text[: matches[0].start()].strip(" ;\n"):
        raise ValueError(
            "`prompt_timeline` must be ranges with prompts, like '0-10 s: a red ball ...; 10-25 s: a blue ball ...'; "
            f"got {text[:80]!r}."
        )
    segments = []
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        prompt = text[match.end() : end].strip(" ;\n")
        segments.append(PromptSegment(float(match.group(1)), float(match.group(2)), prompt))
    return segments


def check_prompt_timeline(segments: list[PromptSegment], duration_s: float) -> None:
    """Each range is non-empty, inside the clip, after the one before; each prompt is non-empty."""
    previous_end = 0.0
    for segment in segments:
        label = f"{segment.start_s:g}-{segment.end_s:g} s"
        if not segment.prompt:
            raise ValueError(f"`prompt_timeline` range {label} has no prompt.")
        if segment.end_s <= segment.start_s:
            raise ValueError(f"`prompt_timeline` range {label} must end after it starts.")
        if segment.start_s < previous_end:
            raise ValueError(
                f"`prompt_timeline` range {label} must start at or after {previous_end:g} s (the range before ends there)."
            )
        if segment.start_s >= duration_s:
            raise ValueError(f"`prompt_timeline` range {label} starts past the clip's end ({duration_s:.2f} s).")
        previous_end = segment.end_s


def window_prompt(segments: list[PromptSegment], start_s: float, end_s: float, default: str) -> str:
    """The prompt of the segment covering most of [start_s, end_s) (a window's new frames); `default` in gaps."""
    best, best_cover = default, 0.0
    for segment in segments:
        cover = min(end_s, segment.end_s) - max(start_s, segment.start_s)
        if cover > best_cover:
            best, best_cover = segment.prompt, cover
    uncovered = (end_s - start_s) - sum(
        max(0.0, min(end_s, segment.end_s) - max(start_s, segment.start_s)) for segment in segments
    )
    return default if uncovered > best_cover else best


# --- Disk -------------------------------------------------------------------------------------------------------------


def estimated_mp4_bytes(num_frames: int, height: int, width: int, duration_s: float) -> int:
    """A generous size for the mp4 of a long run (see `LONG_FORM_DISK_BITS_PER_PIXEL`)."""
    video_bits = num_frames * height * width * constants.LONG_FORM_DISK_BITS_PER_PIXEL
    audio_bits = duration_s * constants.LONG_FORM_DISK_AUDIO_BITS_PER_SECOND
    return int((video_bits + audio_bits) / 8) + constants.LONG_FORM_DISK_MARGIN_BYTES


def check_free_space(output: Path, needed_bytes: int) -> None:
    """Refuses a run whose output folder (or the nearest existing parent) has less free space than it will write."""
    folder = Path(output).resolve().parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise ValueError(
            f"`output` {str(output)!r}: {folder} has {free / 2**20:.0f} MiB free; this clip needs up to "
            f"{needed_bytes / 2**20:.0f} MiB. Free some space or write elsewhere."
        )
