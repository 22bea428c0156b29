"""Training data: world clips rendered in parallel into memory, as tensors the components train on."""

import contextlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ltx_pipeline import constants
from world import cut_clip, generate_clip, generate_training_clip
from world.render import FLOOR_LINE


@dataclass
class ClipBatch:
    frames: torch.Tensor  # (N, F, H, W, 3) uint8
    audio: torch.Tensor  # (N, samples) float32, 16 kHz mono
    captions: list[str]
    impact_frames: list[list[int]]
    start_frames: list[int] | None = None  # the scene's frame each clip starts at (0: the scene's start)
    # Seam clips only (`is_seam_start`; None for the others): the scene's frames before the clip, (start, H, W, 3)
    # uint8, and its audio from the scene's start to one frame past the clip's end, (samples,) float32.
    context_frames: list[np.ndarray | None] | None = None
    scene_audio: list[np.ndarray | None] | None = None


WORLDS = ("original", "rich")  # `world.generate_clip` (balls released from rest), `world.generate_training_clip`
MID_SCENE_SEED_OFFSET = 104_729  # the draw of a clip's start frame: a stream apart from the scene's own


def seam_start_step(frame_rate: float) -> int:
    """Frames between the starts a seam clip may have: the fewest whole latent frames (8 pixel frames each) that last
    a whole number of audio latents (25 a second), so that the clip's first frame is on the scene's audio latent grid
    as on its latent frame grid: 24 at 24 and 30 fps, 8 at 25. 8 where no such count below 200 frames exists (the
    audio latents then start up to half a latent, 20 ms, from the frame, as long form's grid does)."""
    stride = constants.VIDEO_TEMPORAL_COMPRESSION
    for count in range(1, 26):
        latents = stride * count / frame_rate * constants.AUDIO_LATENTS_PER_SECOND
        if abs(latents - round(latents)) < 1e-9:
            return stride * count
    return stride


def is_seam_start(start_frame: int, frame_rate: float) -> bool:
    """Whether a clip starting at this scene frame is a seam clip: cut mid-scene at a seam start (`seam_start_step`),
    so that the scene's latents from the cut on are a window's latents as long form's "copy" seam hands them over."""
    return start_frame > 0 and start_frame % seam_start_step(frame_rate) == 0


class SeamCut(NamedTuple):
    """Where a seam clip's latents lie in its scene's (the scene encoded from its start)."""

    latent_start: int  # the scene's latent frame that is the clip's latent frame 0 (pixel frames start - 7 ... start)
    audio_start: int  # the scene's audio latent at the clip's first frame: the nearest, as long form's `_audio_grid`


def seam_cut(start_frame: int, frame_rate: float) -> SeamCut:
    """The latent cut of a seam clip that starts at `start_frame` of its scene (`is_seam_start`).

    The causal VAE's latent frame k > 0 holds pixel frames 8k - 7 ... 8k, so the scene's latent frame start / 8 ends at
    the clip's first frame: held clean, it is what "copy" hands a window (the window before's last latent, which
    encodes 8 frames ending at the window's frame 0), and the clip's later latent frames follow it as a window's do.
    """
    stride = constants.VIDEO_TEMPORAL_COMPRESSION
    if start_frame < stride or start_frame % stride:
        raise ValueError(f"`start_frame` must be a positive multiple of {stride}; got {start_frame}.")
    audio_start = round(start_frame / frame_rate * constants.AUDIO_LATENTS_PER_SECOND)
    return SeamCut(latent_start=start_frame // stride, audio_start=audio_start)


def mid_scene_start(
    seed: int, num_frames: int, fraction: float, seam_share: float = 0.0, frame_rate: float = 24.0
) -> int:
    """The scene frame the clip of `seed` starts at: with probability `fraction` a mid-scene start (the ball in flight,
    bouncing or at rest, as a long run's later windows start), else 0. A mid-scene start is, with probability
    `seam_share`, a seam start at `frame_rate` (a multiple of `seam_start_step` up to num_frames - 1, or the step
    itself if that is longer), else drawn uniformly from 1 to num_frames - 1."""
    rng = np.random.default_rng(seed + MID_SCENE_SEED_OFFSET)
    if rng.random() >= fraction:
        return 0
    if seam_share and rng.random() < seam_share:  # drawn only then: with seam_share 0 the starts are as before
        step = seam_start_step(frame_rate)
        return step * int(rng.integers(1, max((num_frames - 1) // step, 1) + 1))
    return int(rng.integers(1, num_frames))


class _Rendered(NamedTuple):
    frames: np.ndarray
    audio: np.ndarray
    caption: str
    impact_frames: list[int]
    context_frames: np.ndarray | None
    scene_audio: np.ndarray | None


def _render(args: tuple[int, int, int, int, float, str, int, bool]) -> _Rendered:
    seed, height, width, num_frames, frame_rate, world, start_frame, keep_scene = args
    generate = generate_training_clip if world == "rich" else generate_clip
    if not keep_scene:
        clip = generate(seed, height, width, num_frames, frame_rate, start_frame=start_frame)
        return _Rendered(clip.frames, clip.audio, clip.caption, [impact.frame for impact in clip.impacts], None, None)
    scene = generate(seed, height, width, num_frames, frame_rate, start_frame=start_frame, cut=False)
    clip = cut_clip(scene, start_frame, num_frames)  # what `generate` returns when it cuts
    impacts = [impact.frame for impact in clip.impacts]
    return _Rendered(clip.frames, clip.audio, clip.caption, impacts, scene.frames[:start_frame].copy(), scene.audio)


def render_clips(
    seeds: range | list[int],
    height: int,
    width: int,
    num_frames: int,
    frame_rate: float,
    workers: int = 1,
    world: str = "original",
    mid_scene_fraction: float = 0.0,
    seam_share: float = 0.0,
) -> ClipBatch:
    """Render one clip per seed (in `workers` processes) of `world` (one of WORLDS); seeds make the data set
    reproducible. A `mid_scene_fraction` of them start mid-scene (`mid_scene_start`), a `seam_share` of those at a seam
    start; a clip that starts at a seam start (`is_seam_start`, only with `seam_share` > 0) also keeps its scene's
    frames before it and its scene's audio (`ClipBatch.context_frames`, `scene_audio`)."""
    if world not in WORLDS:
        raise ValueError(f"`world` must be one of {WORLDS}; got {world!r}.")
    for name, value in (("mid_scene_fraction", mid_scene_fraction), ("seam_share", seam_share)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"`{name}` must be in [0, 1]; got {value}.")
    starts = [mid_scene_start(seed, num_frames, mid_scene_fraction, seam_share, frame_rate) for seed in seeds]
    jobs = [
        (
            seed,
            height,
            width,
            num_frames,
            frame_rate,
            world,
            start,
            bool(seam_share) and is_seam_start(start, frame_rate),
        )
        for seed, start in zip(seeds, starts, strict=True)
    ]
    frames = audio = None
    captions, impact_frames, context_frames, scene_audio = [], [], [], []
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        results = pool.map(_render, jobs, chunksize=8) if pool is not None else map(_render, jobs)
        # Each clip is copied into one preallocated array as it arrives: thousands of 128 px clips take tens of GB,
        # and a list of them stacked at the end would need twice that.
        for position, rendered in enumerate(results):
            if frames is None:
                frames = np.empty((len(jobs), *rendered.frames.shape), rendered.frames.dtype)
                audio = np.empty((len(jobs), *rendered.audio.shape), rendered.audio.dtype)
            frames[position], audio[position] = rendered.frames, rendered.audio
            captions.append(rendered.caption)
            impact_frames.append(rendered.impact_frames)
            context_frames.append(rendered.context_frames)
            scene_audio.append(rendered.scene_audio)
    return ClipBatch(
        frames=torch.from_numpy(frames),
        audio=torch.from_numpy(audio),
        captions=captions,
        impact_frames=impact_frames,
        start_frames=starts,
        context_frames=context_frames,
        scene_audio=scene_audio,
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
