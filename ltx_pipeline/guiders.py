"""Guidance for one modality, after the reference implementation's `MultiModalGuider` (ltx_core/components/guiders.py)."""

from dataclasses import dataclass

import torch

from .types import GuidanceParams


@dataclass(frozen=True)
class MultiModalGuider:
    """Combines up to four denoised estimates of one modality into the guided estimate.

    Works in x0 (denoised) space: CFG and modality guidance add `(scale - 1) * (cond - other)`, STG adds
    `scale * (cond - perturbed)`, then the result is rescaled toward the conditional estimate's std.
    """

    params: GuidanceParams

    @property
    def needs_unconditional(self) -> bool:
        return self.params.cfg_scale != 1.0

    @property
    def needs_perturbed(self) -> bool:
        return self.params.stg_scale != 0.0

    @property
    def needs_isolated(self) -> bool:
        return self.params.modality_scale != 1.0

    def guide(
        self,
        cond: torch.Tensor,
        uncond: torch.Tensor | None,
        perturbed: torch.Tensor | None,
        isolated: torch.Tensor | None,
    ) -> torch.Tensor:
        cond = cond.float()
        guided = cond.clone()
        if self.needs_unconditional:
            guided += (self.params.cfg_scale - 1) * (cond - uncond.float())
        if self.needs_perturbed:
            guided += self.params.stg_scale * (cond - perturbed.float())
        if self.needs_isolated:
            guided += (self.params.modality_scale - 1) * (cond - isolated.float())
        if self.params.rescale_scale != 0:
            # Reference rescaling: pull the guided estimate's std back toward the conditional one.
            factor = cond.std() / guided.std()
            guided = guided * (self.params.rescale_scale * factor + (1 - self.params.rescale_scale))
        return guided
