"""LTX-2.5's ancestral Euler step: the cases the parity fixture does not reach (its values are in test_parity_2_5)."""

import pytest
import torch

from ltx_pipeline.sampling_2_5 import euler_ancestral_step

SAMPLE = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))
DENOISED = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1))


def test_last_step_returns_the_clean_estimate() -> None:
    assert torch.equal(euler_ancestral_step(SAMPLE, DENOISED, 0.421875, 0.0, noise=None), DENOISED)


def test_eta_zero_is_plain_euler() -> None:
    sigma, sigma_next = 0.725, 0.421875
    expected = DENOISED + (SAMPLE - DENOISED) * sigma_next / sigma
    torch.testing.assert_close(euler_ancestral_step(SAMPLE, DENOISED, sigma, sigma_next, None, eta=0.0), expected)


def test_noise_scales_with_s_noise() -> None:
    noise = torch.ones_like(SAMPLE)
    without = euler_ancestral_step(SAMPLE, DENOISED, 0.9, 0.7, noise, s_noise=0.0)
    with_noise = euler_ancestral_step(SAMPLE, DENOISED, 0.9, 0.7, noise)
    assert (with_noise - without).abs().min() > 0.1


@pytest.mark.parametrize(
    ("sigma", "sigma_next", "noise", "message"),
    [
        (0.7, 0.9, DENOISED, r"0 <= sigma_next < sigma <= 1; got 0.7, 0.9"),
        (0.9, 0.7, None, r"`noise` must have the sample's shape \(1, 4, 8\) when eta > 0; got None"),
        (0.9, 0.7, torch.zeros(1, 4), r"got \(1, 4\)"),
    ],
)
def test_invalid_arguments_are_named(sigma: float, sigma_next: float, noise, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        euler_ancestral_step(SAMPLE, DENOISED, sigma, sigma_next, noise)
