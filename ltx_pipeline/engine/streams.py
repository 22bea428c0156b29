"""One stream of one stage as data: what it starts from, which tokens are generated, how it is guided.

After the reference's `ModalitySpec` and conditioning items (ltx_pipelines/utils/blocks.py, ltx_core/conditioning):
every held-clean token, whether it belongs to an image, a kept time span or a whole frozen stream, is a 0 in its
stream's denoise mask. The denoising loop then gives each token the timestep `mask * sigma` while the stream's
modality sigma stays the step's sigma (0 for a frozen stream where the transformer follows reference 1.2.0, see
`cross_modulation`), and pulls the token's clean estimate back to `clean` by `1 - mask`.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..types import GuidanceParams


@dataclass(frozen=True, eq=False)
class StreamSpec:
    """One stream (video or audio) of one stage; latents are packed and normalised, (1, S, C)."""

    # What held tokens are held at, and what a start below full noise is noised from; None: nothing is known.
    clean: torch.Tensor | None = None
    # (1, S, 1): 1 where a token is generated, 0 where it is held clean, between for a partial hold (an image's
    # strength s gives 1 - s). None: every token is generated.
    denoise_mask: torch.Tensor | None = None
    noise_scale: float = 1.0  # the noise level the stream starts from (stage 2 starts at its first sigma)
    guidance: GuidanceParams = field(default_factory=GuidanceParams)
    # Tokens appended after the stream's own grid (a keyframe at a later frame, as the reference's
    # `VideoConditionByKeyframeIndex`): how many; they are dropped from the stage's result.
    appended: int = 0
    # Every token's [start, end) positions (1, 3, S, 2), time in seconds, where the grid's own do not cover them
    # (appended tokens); None: the transformer's grid.
    positions: torch.Tensor | None = None

    @functools.cached_property
    def frozen(self) -> bool:
        """Every token held clean: the stream is conditioning only and is never stepped. Read once (it looks at the
        mask on its device), not at every step of the loop."""
        return self.denoise_mask is not None and not bool(self.denoise_mask.any())


def frozen_stream(clean: torch.Tensor) -> StreamSpec:
    """A stream held clean as a whole (the audio of audio-to-video, the video of video-to-audio)."""
    return StreamSpec(clean=clean, denoise_mask=torch.zeros_like(clean[..., :1]), noise_scale=0.0)


def start_latents(spec: StreamSpec, fresh_noise: Callable[[], torch.Tensor], noise: "NoiseSource") -> torch.Tensor:
    """The stream's first latents, as the reference's `GaussianNoiser`: noise weighted by `mask * noise_scale`.

    One noise draw for the whole stream (none for a frozen one). A stream starting from full noise draws it in the
    latents' own layout (`fresh_noise`, packed after), one starting part-way draws it in the packed layout: the draws
    this project has always made, so a seed keeps its clip.
    """
    if spec.frozen:
        return spec.clean
    if spec.noise_scale == 1.0:
        drawn = fresh_noise()
        if spec.appended:
            drawn = torch.cat([drawn, noise((1, spec.appended, drawn.shape[-1]))], dim=1)
        if spec.clean is None:
            return drawn
    else:
        if spec.clean is None:
            raise ValueError(f"A stream starting at noise level {spec.noise_scale} needs clean latents to noise.")
        drawn = noise(tuple(spec.clean.shape))
    weight = spec.noise_scale if spec.denoise_mask is None else spec.denoise_mask * spec.noise_scale
    return weight * drawn + (1 - weight) * spec.clean.to(torch.float32)


class NoiseSource:
    """Draws standard normal noise from one seeded generator, on the CPU, so a seed gives the same clip anywhere."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.generator, self.device = generator, device

    def __call__(self, shape: tuple[int, ...]) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        return randn_tensor(shape, generator=self.generator, device=self.device, dtype=torch.float32)


@dataclass(frozen=True)
class HeldImages:
    """Stills held in a video stream: written over the tokens of the first latent frame, or appended as tokens of
    their own at their frame's time (the reference's `VideoConditionByLatentIndex` and
    `VideoConditionByKeyframeIndex`)."""

    clean: torch.Tensor | None  # (1, S, C) over the grid, None where no still replaces grid tokens
    mask: torch.Tensor | None  # (1, S, 1) denoise mask over the grid (1 - strength where held)
    appended: torch.Tensor  # (1, N, C) appended tokens' latents
    appended_mask: torch.Tensor  # (1, N, 1)
    appended_positions: torch.Tensor  # (1, 3, N, 2)


def image_tokens(
    num_tokens: int, images: list[tuple[slice, torch.Tensor, float]], num_channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Held image latents over the grid and the denoise mask they make: `images` holds (token slice, packed
    latents, strength). Returns (clean, mask) for the whole grid, or None without images."""
    if not images:
        return None
    clean = torch.zeros(1, num_tokens, num_channels, device=device)
    mask = torch.ones(1, num_tokens, 1, device=device)
    for tokens, latents, strength in images:
        clean[:, tokens] = latents
        mask[:, tokens] = 1 - strength
    return clean, mask


def held_stream(
    held: tuple[torch.Tensor, torch.Tensor] | None,
    guidance: GuidanceParams,
    start: torch.Tensor | None = None,
    noise_scale: float = 1.0,
) -> StreamSpec:
    """A generated stream holding some of its own tokens: `held` is (clean, denoise mask) over all its tokens (e.g.
    `image_tokens`), None for none; it starts from noise, or from `start` (packed) noised to `noise_scale`."""
    if held is None:
        return StreamSpec(clean=start, noise_scale=noise_scale, guidance=guidance)
    clean, mask = held
    if start is not None:
        clean = torch.where(mask < 1, clean, start)
    return StreamSpec(clean=clean, denoise_mask=mask, noise_scale=noise_scale, guidance=guidance)


def with_images(
    held: HeldImages | None,
    grid_positions: torch.Tensor,
    guidance: GuidanceParams,
    start: torch.Tensor | None = None,
    noise_scale: float = 1.0,
) -> StreamSpec:
    """A generated video stream, from noise or from `start` (packed, noised to `noise_scale`), holding `held`."""
    if held is None:
        return StreamSpec(clean=start, noise_scale=noise_scale, guidance=guidance)
    num_tokens, num_channels = grid_positions.shape[2], held.appended.shape[-1]
    device = held.appended.device
    clean = start if start is not None else torch.zeros(1, num_tokens, num_channels, device=device)
    mask = torch.ones(1, num_tokens, 1, device=device)
    if held.mask is not None:
        clean = torch.where(held.mask < 1, held.clean, clean)
        mask = held.mask
    appended = held.appended.shape[1]
    positions = torch.cat([grid_positions, held.appended_positions], dim=2) if appended else None
    return StreamSpec(
        clean=torch.cat([clean, held.appended], dim=1),
        denoise_mask=torch.cat([mask, held.appended_mask], dim=1),
        noise_scale=noise_scale,
        guidance=guidance,
        appended=appended,
        positions=positions,
    )


@dataclass(frozen=True)
class TimeSpan:
    """A span of the clip in seconds, [start_s, end_s)."""

    start_s: float
    end_s: float


def video_frame_seconds(latent_frames: int, temporal_compression: int, frame_rate: float) -> torch.Tensor:
    """(latent_frames, 2): each latent frame's [start, end) in seconds; the first holds pixel frame 0 alone.

    The reference's `get_pixel_coords` with its causal fix: latent frame f covers pixel frames
    [max(0, f * c - c + 1), f * c + 1).
    """
    frames = torch.arange(latent_frames, dtype=torch.float64)
    start = (frames * temporal_compression + 1 - temporal_compression).clamp(min=0)
    end = frames * temporal_compression + 1
    return torch.stack([start, end], dim=-1) / frame_rate


def audio_frame_seconds(latent_frames: int, downsample: int, hop_length: int, sample_rate: int) -> torch.Tensor:
    """(latent_frames, 2): each audio latent frame's [start, end) in seconds, the reference `AudioPatchifier`'s
    causal timings: frame i covers mel frames [max(0, i * d + 1 - d), (i + 1) * d + 1 - d)."""
    frames = torch.arange(latent_frames + 1, dtype=torch.float64)
    bounds = (frames * downsample + 1 - downsample).clamp(min=0) * hop_length / sample_rate
    return torch.stack([bounds[:-1], bounds[1:]], dim=-1)


def span_mask(frame_seconds: torch.Tensor, span: TimeSpan, tokens_per_frame: int) -> torch.Tensor:
    """(1, frames * tokens_per_frame, 1): 1 for the tokens of frames that overlap `span`, 0 elsewhere.

    As the reference's `TemporalRegionMask`: a frame is inside when it ends after the start and starts before the end.
    """
    inside = (frame_seconds[:, 1] > span.start_s) & (frame_seconds[:, 0] < span.end_s)
    return inside.float().repeat_interleave(tokens_per_frame)[None, :, None]
