"""Cheap RGB previews of video latents: a linear latent-to-RGB map fitted to the pipeline's own video VAE.

A preview must cost far less than a denoising step, so it never touches the VAE decoder. Instead, the VAE
encoder is run once on a handful of flat-colour and gradient clips; a least-squares fit from each latent token to
the mean colour of the pixels it covers gives a (channels -> RGB) matrix that works for any LTX-2 VAE, real or tiny.
"""

from dataclasses import dataclass

import numpy as np
import torch

# Fitting clips: 9 frames (one latent frame after the first) at 64 x 64 px, enough for a 2 x 2 latent grid.
_FIT_FRAMES = 9
_FIT_SIZE = 64
_FIT_RIDGE = 1e-3  # Tikhonov regulariser for the least-squares fit


@dataclass(frozen=True)
class LatentRGBProjection:
    weight: torch.Tensor  # (latent_channels, 3)
    bias: torch.Tensor  # (3,)

    @classmethod
    @torch.no_grad()
    def fit(cls, vae: torch.nn.Module, seed: int = 0) -> "LatentRGBProjection":
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
        pooled = torch.nn.functional.avg_pool3d(clips[:, :, 1:], (clips.shape[2] - 1, patch, patch))
        first = torch.nn.functional.avg_pool2d(clips[:, :, 0], patch).unsqueeze(2)
        targets = torch.cat([first, pooled], dim=2)[:, :, : latents.shape[2]]
        # (K, C, f, h, w) -> (K*f*h*w, C)
        features = latents.permute(0, 2, 3, 4, 1).reshape(-1, latents.shape[1])
        targets = targets.permute(0, 2, 3, 4, 1).reshape(-1, 3)
        design = torch.cat([features, torch.ones(len(features), 1)], dim=1)
        gram = design.T @ design + _FIT_RIDGE * torch.eye(design.shape[1])
        solution = torch.linalg.solve(gram, design.T @ targets)
        return cls(weight=solution[:-1], bias=solution[-1])

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """(1, C, F, H, W) un-normalised video latents -> (F, H, W, 3) uint8 preview frames."""
        latents = latents[0].float().cpu()
        # (C, F, H, W) -> (F, H, W, C) @ (C, 3)
        rgb = latents.permute(1, 2, 3, 0) @ self.weight + self.bias
        rgb = torch.nan_to_num(rgb, nan=0.0, posinf=1.0, neginf=-1.0)  # a preview never fails a run
        return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
