"""Cheap RGB previews of video latents: a tiny decoder from each latent token (with its neighbours) to a patch of
pixels, fitted per model to what that model's own VAE decodes.

A preview must cost far less than a denoising step, so it never runs the VAE decoder. A model may ship a preview
decoder fitted offline (`tools/fit_preview_decoder.py`: a one-hidden-layer network per token neighbourhood, trained
from the latents of representative clips to the VAE's decodes of those latents, so the preview resembles the decoded
clip); it is found by a fingerprint of the VAE it was fitted to. Any other VAE (real weights, tiny test models) gets a per-token
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
_TRAIN_LEARNING_RATE = 2e-3  # Adam, for fitted decoders (tools/fit_preview_decoder.py)
_TRAIN_BATCH = 512  # tokens per step


@dataclass(frozen=True)
class LatentPreviewDecoder:
    """Each latent token's neighbourhood (`kernel` x `kernel` tokens over `frames_kernel` latent frames, edges
    repeated) -> a `patch` x `patch` RGB patch in [-1, 1], through `weights` (a GELU between layers)."""

    weights: tuple[torch.Tensor, ...]  # (inputs + 1, outputs) per layer: the last row is the bias
    kernel: int  # latent tokens per side of the neighbourhood read (odd)
    frames_kernel: int  # latent frames of the neighbourhood (odd)
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
        return cls(weights=(torch.linalg.solve(gram, design.T @ targets),), kernel=1, frames_kernel=1, patch=1)

    @classmethod
    def fit_to_decodes(
        cls,
        pairs: Iterable[tuple[torch.Tensor, np.ndarray]],
        shape: "PreviewShape",
        epochs: int,
        seed: int = 0,
    ) -> "LatentPreviewDecoder":
        """A decoder of `shape` trained (Adam, mean squared error) on `pairs` of un-normalised (C, f, h, w) latents and
        their VAE decode, (F, H, W, 3) uint8: each token's neighbourhood to the mean, over the frames its latent frame
        covers, of the pixels under it, area-averaged to `patch` x `patch`."""
        features, targets, counts = _training_data(pairs, shape)
        generator = torch.Generator().manual_seed(seed)
        hidden = torch.nn.Linear(features.shape[1], shape.hidden)
        output = torch.nn.Linear(shape.hidden, targets.shape[1])
        for layer in (hidden, output):  # seeded, whatever the global RNG holds
            bound = 1 / layer.in_features**0.5
            with torch.no_grad():
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
                layer.bias.zero_()
        network = torch.nn.Sequential(hidden, torch.nn.GELU(), output)
        optimiser = torch.optim.Adam(network.parameters(), _TRAIN_LEARNING_RATE)
        for _ in range(epochs):
            order = torch.randperm(len(features), generator=generator)
            for batch in order.split(_TRAIN_BATCH):
                # Each token weighs as many frames as its latent frame covers (the first covers one).
                loss = ((network(features[batch]) - targets[batch]) ** 2 * counts[batch, None]).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        weights = tuple(torch.cat([layer.weight.T, layer.bias[None]]).detach() for layer in (hidden, output))
        return cls(weights=weights, kernel=shape.kernel, frames_kernel=shape.frames_kernel, patch=shape.patch)

    def save(self, path: Path, fingerprint: str, notes: dict[str, str]) -> None:
        shape = {"kernel": self.kernel, "frames_kernel": self.frames_kernel, "patch": self.patch}
        metadata = {name: str(value) for name, value in shape.items()} | {"vae_fingerprint": fingerprint}
        tensors = {f"weight_{index}": weight.half().contiguous() for index, weight in enumerate(self.weights)}
        safetensors.torch.save_file(tensors, str(path), metadata | notes)

    @classmethod
    def load(cls, path: Path) -> "LatentPreviewDecoder":
        with safetensors.safe_open(str(path), "pt") as handle:
            metadata = handle.metadata()
            weights = tuple(handle.get_tensor(f"weight_{index}").float() for index in range(len(handle.keys())))
        shape = {name: int(metadata[name]) for name in ("kernel", "frames_kernel", "patch")}
        return cls(weights=weights, **shape)

    @property
    def num_weights(self) -> int:
        return sum(weight.numel() for weight in self.weights)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """(1, C, f, h, w) un-normalised video latents -> (f, h * patch, w * patch, 3) uint8 preview frames."""
        features = _neighbourhoods(latents[0].float().cpu(), self.kernel, self.frames_kernel)
        frames, height, width, _ = features.shape
        for index, weight in enumerate(self.weights):
            features = features @ weight[:-1] + weight[-1]
            if index < len(self.weights) - 1:
                features = F.gelu(features)
        # (f, h, w, 3*p*p) -> (f, h, w, 3, p, p) -> (f, h*p, w*p, 3)
        rgb = features.reshape(frames, height, width, 3, self.patch, self.patch).permute(0, 1, 4, 2, 5, 3)
        rgb = rgb.reshape(frames, height * self.patch, width * self.patch, 3)
        rgb = torch.nan_to_num(rgb, nan=0.0, posinf=1.0, neginf=-1.0)  # a preview never fails a run
        return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


@dataclass(frozen=True)
class PreviewShape:
    """What a fitted preview decoder reads and writes."""

    kernel: int = 3  # latent tokens per side of the neighbourhood
    frames_kernel: int = 3  # latent frames of the neighbourhood: the one shown and its neighbours
    patch: int = 4  # preview pixels per latent token per side
    hidden: int = 128  # units of the hidden layer


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """A short hash of what makes a VAE's decodes its own (its latent statistics and last decoder layer), so a stored
    preview decoder is used only with the VAE it was fitted to."""
    # The config without its private keys (`_name_or_path` and the like change with how the VAE was loaded).
    config = {key: value for key, value in dict(vae.config).items() if not key.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    state = vae.state_dict()
    for name in sorted(name for name in state if name.startswith("decoder.conv_out") or "latents_" in name):
        # Rounded to bf16, so the same weights loaded in float32 (CPU) or bf16 (GPU) share the fingerprint.
        digest.update(state[name].detach().to(torch.bfloat16).float().cpu().numpy().tobytes())
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


def _neighbourhoods(latents: torch.Tensor, kernel: int, frames_kernel: int = 1) -> torch.Tensor:
    """(C, f, h, w) -> (f, h, w, C * frames_kernel * kernel * kernel): each token's neighbourhood, edges repeated."""
    channels, frames, height, width = latents.shape
    radius, frames_radius = kernel // 2, frames_kernel // 2
    padded = F.pad(latents[None], (radius, radius, radius, radius, frames_radius, frames_radius), mode="replicate")[0]
    # per neighbouring frame: (f, C, h+2r, w+2r) -> (f, C*k*k, h*w) -> (f, h, w, C*k*k)
    columns = [
        F.unfold(padded[:, offset : offset + frames].transpose(0, 1), kernel)
        .transpose(1, 2)
        .reshape(frames, height, width, -1)
        for offset in range(frames_kernel)
    ]
    return torch.cat(columns, dim=-1)


def _training_data(
    pairs: Iterable[tuple[torch.Tensor, np.ndarray]], shape: PreviewShape
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (N, D), targets (N, 3*p*p) in [-1, 1], frames each target averages (N,)) over every token."""
    features, targets, counts = [], [], []
    for latents, decoded in pairs:
        neighbourhoods = _neighbourhoods(latents.float().cpu(), shape.kernel, shape.frames_kernel)
        frames, height, width, _ = neighbourhoods.shape
        pixels = torch.as_tensor(decoded).float() / 127.5 - 1.0  # (F, H, W, 3)
        covered = _covered_frames(frames, len(pixels))
        means = torch.stack([pixels[indices].mean(0) for indices in covered]).permute(0, 3, 1, 2)  # (f, 3, H, W)
        means = F.avg_pool2d(means, pixels.shape[2] // (width * shape.patch))  # (f, 3, h*p, w*p)
        # (f, 3, h, p, w, p) -> (f, h, w, 3*p*p), as `__call__` lays a patch out
        means = means.reshape(frames, 3, height, shape.patch, width, shape.patch).permute(0, 2, 4, 1, 3, 5)
        features.append(neighbourhoods.reshape(frames * height * width, -1))
        targets.append(means.reshape(frames * height * width, -1))
        counts.append(torch.tensor([float(len(indices)) for indices in covered]).repeat_interleave(height * width))
    if not features:
        raise ValueError("`pairs` must hold at least one (latents, decoded) pair; got none.")
    return torch.cat(features), torch.cat(targets), torch.cat(counts)


def _covered_frames(latent_frames: int, num_frames: int) -> list[list[int]]:
    """The pixel frames each latent frame of a causal LTX VAE decodes to: the first alone, then eight each."""
    step = constants.VIDEO_TEMPORAL_COMPRESSION
    return [[0]] + [
        list(range(step * (index - 1) + 1, min(step * index + 1, num_frames))) for index in range(1, latent_frames)
    ]


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
