"""LTX-2.5's distilled stage-1 sampler: one ancestral Euler step on the rectified-flow path.

The reference (Lightricks/LTX-2 1.2.0, `ltx_core/components/diffusion_steps.py` `EulerAncestralDiffusionStep`, used by
`ltx_pipelines/distilled.py` from model_version 2.5 on) steps to a lower noise level `sigma_down` with plain Euler,
then re-noises up to `sigma_next`, rescaling the signal by (1 - sigma_next) / (1 - sigma_down) so the marginal stays
on the path x = (1 - sigma) x0 + sigma noise. `eta` 0 is plain Euler, 1 fully ancestral; stage 2 stays plain Euler.
"""

import torch

from ltx_pipeline import versions


def euler_ancestral_step(
    sample: torch.Tensor,
    denoised: torch.Tensor,
    sigma: float,
    sigma_next: float,
    noise: torch.Tensor | None,
    eta: float = versions.ANCESTRAL_ETA,
    s_noise: float = versions.ANCESTRAL_S_NOISE,
) -> torch.Tensor:
    """x at `sigma_next` from x at `sigma` and its clean estimate `denoised`; computed in float32, returned in
    `sample`'s dtype. `noise` (same shape) is needed when eta > 0; the last step (sigma_next 0) returns `denoised`."""
    if not 0 < sigma <= 1 or not 0 <= sigma_next < sigma:
        raise ValueError(
            f"`sigma` and `sigma_next` must satisfy 0 <= sigma_next < sigma <= 1; got {sigma}, {sigma_next}."
        )
    if sigma_next == 0:
        return denoised.to(sample.dtype)
    if eta > 0 and (noise is None or noise.shape != sample.shape):
        shape = None if noise is None else tuple(noise.shape)
        raise ValueError(f"`noise` must have the sample's shape {tuple(sample.shape)} when eta > 0; got {shape}.")
    x, x0 = sample.float(), denoised.float()
    sigma_down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * eta)
    ratio = sigma_down / sigma
    x = ratio * x + (1.0 - ratio) * x0  # Euler to sigma_down
    if eta > 0:
        signal = (1.0 - sigma_next) / (1.0 - sigma_down)
        added_variance = max(0.0, sigma_next**2 - (sigma_down * signal) ** 2)
        x = signal * x + noise.float() * s_noise * added_variance**0.5
    return x.to(sample.dtype)
