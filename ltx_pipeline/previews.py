"""Cheap RGB previews of video latents: a small linear decoder from each latent token (with its neighbours) to a
patch of pixels, fitted per model to what that model's own VAE decodes.

A preview must cost far less than a denoising step, so it never runs the VAE decoder. A model may ship a preview
decoder fitted offline (`tools/fit_preview_decoder.py`: least squares from the latents of representative clips to
the VAE's decodes of those latents, so the preview resembles the decoded clip, not the clip before encoding); it is
found by a fingerprint of the VAE it was fitted to. Any other VAE (real weights, tiny test models) gets a per-token
colour map fitted on first use from flat-colour clips run through its encoder, which works for any LTX-2 VAE.
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F

from . import constants

# Preview decoders fitted offline, one file per VAE (`tools/fit_preview_decoder.py`).
PREVIEW_DECODER_DIR = Path(__file__).parent / "preview_decoders"

# Fallback fitting clips: 9 frames (one latent frame after the first) at 64 x 64 px, enough for a 2 x 2 latent grid.
_FIT_FRAMES = 9
_FIT_SIZE = 64
_FIT_RIDGE = 1e-3  # Tikhonov regulariser for the flat-colour least-squares fit


@dataclass(frozen=True)
class LatentPreviewDecoder:
    """Each latent token's `kernel` x `kernel` neighbourhood (edges repeated) -> a `patch` x `patch` RGB patch."""

    weight: torch.Tensor  # (channels * kernel * kernel + 1, 3 * patch * patch); the last row is the bias
    kernel: int  # latent tokens per side of the neighbourhood read (odd)
    patch: int  # preview pixels per latent token per side

    @classmethod
    @torch.no_grad()
    def fit_to_colours(cls, vae: torch.nn.Module, seed: int = 0) -> "LatentPreviewDecoder":
        """A per-token colour map (kernel 1, patch 1) for any VAE: the least-squares fit from each latent token of a
        handful of flat-colour and gradient clips to the mean colour of the pixels it covers."""
        device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
        generator = torch.Generator().manual_seed(seed)
        colours = torch.rand(12, 3, generator=generator) * 2 - 1  # RGB in [-1, 1]
        clips = colours[:, :, None, None, None].expand(-1, -1, _FIT_FRAMES, _FIT_SIZE, _FIT_SIZE).clone()
        ramp = torch.linspace(-1, 1, _FIT_SIZE)
        for index in range(4):  # horizontal and vertical ramps in a few channels keep the fit from degenerating
            clips[index, index % 3] = ramp.view(1, 1, -1) if index < 2 else ramp.view(1, -1, 1)
        latents = vae.encode(clips.to(device, dtype)).latent_dist.mode().float().cpu()
        # Mean colour of the pixels under each latent token: (K, 3, F, H, W) -> (K, 3, f, h, w).
        patch = _FIT_SIZE // latents.shape[-1]
        pooled = F.avg_pool3d(clips[:, :, 1:], (clips.shape[2] - 1, patch, patch))
        first = F.avg_pool2d(clips[:, :, 0], patch).unsqueeze(2)
        targets = torch.cat([first, pooled], dim=2)[:, :, : latents.shape[2]]
        # (K, C, f, h, w) -> (K*f*h*w, C)
        features = latents.permute(0, 2, 3, 4, 1).reshape(-1, latents.shape[1])
        targets = targets.permute(0, 2, 3, 4, 1).reshape(-1, 3)
        design = torch.cat([features, torch.ones(len(features), 1)], dim=1)
        gram = design.T @ design + _FIT_RIDGE * torch.eye(design.shape[1])
        return cls(weight=torch.linalg.solve(gram, design.T @ targets), kernel=1, patch=1)

    @classmethod
    def fit_to_decodes(
        cls, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], kernel: int, patch: int, ridge: float
    ) -> "LatentPreviewDecoder":
        """The least-squares decoder from `pairs` of (un-normalised (C, f, h, w) latents, their VAE decode
        (3, F, H, W) in [-1, 1]): each token's neighbourhood to the pixels of every frame its latent frame covers,
        area-averaged to `patch` x `patch`. `ridge` is relative to the mean diagonal of the normal equations."""
        gram = moments = None
        for latents, decoded in pairs:
            features = _neighbourhoods(latents.float().cpu(), kernel).double()  # (f, h, w, D)
            frames, height, width, dims = features.shape
            pool = decoded.shape[-1] // (width * patch)
            targets = F.avg_pool2d(decoded.float().cpu().transpose(0, 1), pool)  # (F, 3, h*patch, w*patch)
            if gram is None:
                gram = torch.zeros(dims, dims, dtype=torch.float64)
                moments = torch.zeros(dims, 3 * patch * patch, dtype=torch.float64)
            for latent_frame, covered in enumerate(_covered_frames(frames, targets.shape[0])):
                tokens = features[latent_frame].reshape(height * width, dims)
                # (3, h*p, w*p) -> (h*w, 3*p*p): the frames one latent frame covers, summed (least squares sees each)
                summed = targets[covered].sum(0).reshape(3, height, patch, width, patch).permute(1, 3, 0, 2, 4)
                gram += len(covered) * tokens.T @ tokens
                moments += tokens.T @ summed.reshape(height * width, -1).double()
        if gram is None:
            raise ValueError("`pairs` must hold at least one (latents, decoded) pair; got none.")
        gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=torch.float64)
        return cls(weight=torch.linalg.solve(gram, moments).float(), kernel=kernel, patch=patch)

    def save(self, path: Path, fingerprint: str, notes: dict[str, str]) -> None:
        metadata = {"kernel": str(self.kernel), "patch": str(self.patch), "vae_fingerprint": fingerprint}
        safetensors.torch.save_file({"weight": self.weight.contiguous()}, str(path), metadata | notes)

    @classmethod
    def load(cls, path: Path) -> "LatentPreviewDecoder":
        with safetensors.safe_open(str(path), "pt") as handle:
            metadata = handle.metadata()
            weight = handle.get_tensor("weight").float()
        return cls(weight=weight, kernel=int(metadata["kernel"]), patch=int(metadata["patch"]))

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """(1, C, f, h, w) un-normalised video latents -> (f, h * patch, w * patch, 3) uint8 preview frames."""
        features = _neighbourhoods(latents[0].float().cpu(), self.kernel)
        frames, height, width, _ = features.shape
        rgb = features @ self.weight  # (f, h, w, 3*p*p)
        # (f, h, w, 3, p, p) -> (f, h*p, w*p, 3)
        rgb = rgb.reshape(frames, height, width, 3, self.patch, self.patch).permute(0, 1, 4, 2, 5, 3)
        rgb = rgb.reshape(frames, height * self.patch, width * self.patch, 3)
        rgb = torch.nan_to_num(rgb, nan=0.0, posinf=1.0, neginf=-1.0)  # a preview never fails a run
        return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """A short hash of what makes a VAE's decodes its own (its latent statistics and last decoder layer), so a stored
    preview decoder is used only with the VAE it was fitted to."""
    digest = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    state = vae.state_dict()
    for name in sorted(name for name in state if name.startswith("decoder.conv_out") or "latents_" in name):
        digest.update(state[name].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def preview_decoder_for(vae: torch.nn.Module, folder: Path = PREVIEW_DECODER_DIR) -> LatentPreviewDecoder:
    """The decoder stored in `folder` for this VAE, else a colour map fitted now."""
    fingerprint = vae_fingerprint(vae)
    for path in sorted(folder.glob("*.safetensors")):
        with safetensors.safe_open(str(path), "pt") as handle:
            stored = handle.metadata().get("vae_fingerprint")
        if stored == fingerprint:
            return LatentPreviewDecoder.load(path)
    return LatentPreviewDecoder.fit_to_colours(vae)


def _neighbourhoods(latents: torch.Tensor, kernel: int) -> torch.Tensor:
    """(C, f, h, w) -> (f, h, w, C * kernel * kernel + 1): each token's neighbourhood, edges repeated, and a 1."""
    channels, frames, height, width = latents.shape
    radius = kernel // 2
    padded = F.pad(latents.transpose(0, 1), (radius,) * 4, mode="replicate") if radius else latents.transpose(0, 1)
    # (f, C, h+2r, w+2r) -> (f, C*k*k, h*w) -> (f, h, w, C*k*k)
    unfolded = F.unfold(padded, kernel).transpose(1, 2).reshape(frames, height, width, channels * kernel * kernel)
    return torch.cat([unfolded, torch.ones(frames, height, width, 1)], dim=-1)


def _covered_frames(latent_frames: int, num_frames: int) -> list[list[int]]:
    """The pixel frames each latent frame of a causal LTX VAE decodes to: the first alone, then eight each."""
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    return [[0]] + [list(range(step * (index - 1) + 1, min(step * index + 1, num_frames))) for index in range(1, latent_frames)]


def preview_correlation(preview: np.ndarray, decoded: np.ndarray) -> float:
    """How much a preview looks like the clip: the Pearson correlation, over every pixel and channel, between the
    decoded (F, H, W, 3) frames and the (f, h, w, 3) preview frame of the latent frame each belongs to, scaled
    smoothly to the clip's size as the studio shows it."""
    frames = torch.from_numpy(preview).permute(0, 3, 1, 2).float()  # (f, 3, h, w)
    frames = F.interpolate(frames, size=decoded.shape[1:3], mode="bilinear", align_corners=False)
    owners = [index for index, covered in enumerate(_covered_frames(len(frames), len(decoded))) for _ in covered]
    shown = frames[owners].flatten()
    target = torch.from_numpy(decoded).permute(0, 3, 1, 2).float()[: len(owners)].flatten()
    shown, target = shown - shown.mean(), target - target.mean()
    return float((shown * target).sum() / (shown.norm() * target.norm()).clamp_min(1e-12))
