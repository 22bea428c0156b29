"""Training data: world clips rendered in parallel into memory, as tensors the components train on."""

import contextlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from world import generate_clip, generate_training_clip
from world.render import FLOOR_LINE


@dataclass
class ClipBatch:
    frames: torch.Tensor  # (N, F, H, W, 3) uint8
    audio: torch.Tensor  # (N, samples) float32, 16 kHz mono
    captions: list[str]
    impact_frames: list[list[int]]
    start_frames: list[int] | None = None  # the scene's frame each clip starts at (0: the scene's start)


WORLDS = ("original", "rich")  # `world.generate_clip` (balls released from rest), `world.generate_training_clip`
MID_SCENE_SEED_OFFSET = 104_729  # the draw of a clip's start frame: a stream apart from the scene's own


def mid_scene_start(seed: int, num_frames: int, fraction: float) -> int:
    """The scene frame the clip of `seed` starts at: with probability `fraction` one drawn uniformly from 1 to
    num_frames - 1 (the ball in flight, bouncing or at rest, as a long run's later windows start), else 0."""
    rng = np.random.default_rng(seed + MID_SCENE_SEED_OFFSET)
    if rng.random() >= fraction:
        return 0
    return int(rng.integers(1, num_frames))


def _render(args: tuple[int, int, int, int, float, str, int]) -> tuple[np.ndarray, np.ndarray, str, list[int]]:
    seed, height, width, num_frames, frame_rate, world, start_frame = args
    generate = generate_training_clip if world == "rich" else generate_clip
    clip = generate(seed, height, width, num_frames, frame_rate, start_frame=start_frame)
    return clip.frames, clip.audio, clip.caption, [impact.frame for impact in clip.impacts]


def render_clips(
    seeds: range | list[int],
    height: int,
    width: int,
    num_frames: int,
    frame_rate: float,
    workers: int = 1,
    world: str = "original",
    mid_scene_fraction: float = 0.0,
) -> ClipBatch:
    """Render one clip per seed (in `workers` processes) of `world` (one of WORLDS); seeds make the data set
    reproducible. A `mid_scene_fraction` of them start mid-scene (`mid_scene_start`)."""
    if world not in WORLDS:
        raise ValueError(f"`world` must be one of {WORLDS}; got {world!r}.")
    if not 0.0 <= mid_scene_fraction <= 1.0:
        raise ValueError(f"`mid_scene_fraction` must be in [0, 1]; got {mid_scene_fraction}.")
    starts = [mid_scene_start(seed, num_frames, mid_scene_fraction) for seed in seeds]
    jobs = [
        (seed, height, width, num_frames, frame_rate, world, start) for seed, start in zip(seeds, starts, strict=True)
    ]
    frames = audio = None
    captions, impact_frames = [], []
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        results = pool.map(_render, jobs, chunksize=8) if pool is not None else map(_render, jobs)
        # Each clip is copied into one preallocated array as it arrives: thousands of 128 px clips take tens of GB,
        # and a list of them stacked at the end would need twice that.
        for position, (clip_frames, clip_audio, clip_caption, clip_impacts) in enumerate(results):
            if frames is None:
                frames = np.empty((len(jobs), *clip_frames.shape), clip_frames.dtype)
                audio = np.empty((len(jobs), *clip_audio.shape), clip_audio.dtype)
            frames[position], audio[position] = clip_frames, clip_audio
            captions.append(clip_caption)
            impact_frames.append(clip_impacts)
    return ClipBatch(
        frames=torch.from_numpy(frames),
        audio=torch.from_numpy(audio),
        captions=captions,
        impact_frames=impact_frames,
        start_frames=starts,
    )


def frames_to_video(frames: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W, 3) uint8 -> (N, 3, F, H, W) float in [-1, 1], the VAE's input."""
    return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def downsample_video(video: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average (N, 3, F, H, W) by `factor` in height and width (the world rendered at a lower resolution)."""
    if factor == 1:
        return video
    batch, channels, num_frames, height, width = video.shape
    # (N, 3, F, H, W) -> (N*F, 3, H, W) for 2-D pooling, then back
    flat = video.permute(0, 2, 1, 3, 4).reshape(batch * num_frames, channels, height, width)
    pooled = torch.nn.functional.avg_pool2d(flat, factor)
    return pooled.reshape(batch, num_frames, channels, height // factor, width // factor).permute(0, 2, 1, 3, 4)


def motion_weight(video: torch.Tensor, moving_gain: float) -> torch.Tensor:
    """(N, 1, F, H, W) per-pixel loss weight: 1 + moving_gain on the balls and wherever they pass.

    A ball pixel is saturated and above the floor (walls and floors are greyer), or differs from the clip's median
    frame. The ball covers ~1% of the frame; an unweighted reconstruction loss learns the background and loses it.
    """
    median = video.median(dim=2, keepdim=True).values
    moving = (video - median).abs().amax(dim=1, keepdim=True) > 0.1
    brightest, darkest = video.amax(dim=1, keepdim=True), video.amin(dim=1, keepdim=True)
    saturation = (brightest - darkest) / (brightest + 1.0).clamp_min(1e-3)  # on [-1, 1] pixels: chroma / value
    above_floor = torch.arange(video.shape[3], device=video.device)[:, None] < FLOOR_LINE * video.shape[3]
    moving = (moving | ((saturation > 0.35) & (brightest > -0.3) & above_floor)).float()
    # Widen the mask by a pixel so the ball's edge counts too.
    moving = torch.nn.functional.max_pool3d(moving, kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))
    return 1.0 + moving_gain * moving
