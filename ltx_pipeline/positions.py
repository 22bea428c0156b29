"""Video positions at the transformer's precision, as the reference computes them.

The reference casts the video tokens' positions (pixel coordinates, time in seconds) to the model's dtype before the
transformer (ltx-core 1.0.0 `VideoLatentTools.create_initial_state`), so in a bf16 run the [start, end) midpoint, its
division by the maximum positions and the centring to [-1, 1] are all rounded to bf16 before the float32 rotary
frequencies multiply them (`rope.generate_freqs`); the released weights were trained and are run that way. diffusers
computes the same grid in float32. Audio positions stay float32 in both.

Measured on the tiny official LTX-2.3 file in bf16 (tests/test_parity.py), distilled stage 1 after 8 steps: video
latents 2.2e-2 rel. L2 from the reference's with float32 positions, 3.5e-3 with the reference's bf16 positions (what
remains is bf16 arithmetic in other places: the reference also keeps its latents in bf16 between steps).
"""

import torch
from diffusers import LTX2VideoTransformer3DModel
from diffusers.models.transformers.transformer_ltx2 import LTX2AudioVideoRotaryPosEmbed

VIDEO_ROTARY_MODULES = ("rope", "cross_attn_rope")  # the video self-attention's and the cross-modal one's


class ReferencePrecisionRotaryPosEmbed(LTX2AudioVideoRotaryPosEmbed):
    """diffusers' rotary-embedding module that rounds video positions to its transformer's dtype where that is bf16
    or fp16, as the reference does; float32, and modules `use_reference_position_precision` did not mark, unchanged.
    The dtype is read at each forward, so a later `.to(torch.bfloat16)` is followed."""

    def forward(
        self, coords: torch.Tensor, device: str | torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        transformer = self.__dict__.get("_ltx_transformer")
        if transformer is not None and coords.ndim == 4 and transformer.dtype in (torch.bfloat16, torch.float16):
            coords = reference_grid(coords, self, transformer.dtype)
        return super().forward(coords, device=device)


def use_reference_position_precision(transformer: LTX2VideoTransformer3DModel) -> None:
    """Gives `transformer`'s video rotary embeddings the reference's position precision (see the module docstring).
    In place and idempotent: the modules keep their state (they hold no weights) and change class, unless they
    already derive from `ReferencePrecisionRotaryPosEmbed` (`attention_processors.HalfTableRotaryPosEmbed` does)."""
    for name in VIDEO_ROTARY_MODULES:
        module = getattr(transformer, name, None)
        if module is None:
            continue
        # A plain attribute, not a registered submodule (that would make the module tree a cycle); copies and pickles
        # of the transformer carry it along and point it at the copy.
        object.__setattr__(module, "_ltx_transformer", transformer)
        if type(module) is LTX2AudioVideoRotaryPosEmbed:
            module.__class__ = ReferencePrecisionRotaryPosEmbed


def reference_grid(coords: torch.Tensor, module: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """(B, dims, N, 2) float32 [start, end) positions -> (B, dims, N) midpoints on which diffusers' float32 rotary
    arithmetic yields the reference's `dtype` grid: its `(mid / max) * 2 - 1` rounded to `dtype` at every step."""
    maximum = (module.base_num_frames, module.base_height, module.base_width)[: coords.shape[1]]
    rounded = coords.to(dtype)
    middle = (rounded[..., 0] + rounded[..., 1]) / 2.0  # in `dtype`, as ltx-core's generate_freqs
    centred = torch.stack([middle[:, i] / maximum[i] for i in range(len(maximum))], dim=1) * 2 - 1
    # The maxima as Python numbers, not a tensor made of them: that would copy from the host in every forward, which
    # a CUDA graph capture refuses (the whole-forward graph of SpeedOptions.forward_graph was refused, run 36).
    widened = (centred.float() + 1) / 2
    return torch.stack([widened[:, i] * maximum[i] for i in range(len(maximum))], dim=1)


def token_positions(
    transformer: LTX2VideoTransformer3DModel,
    batch: int,
    num_frames: int,
    height: int,
    width: int,
    fps: float,
    audio_num_frames: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The video grid's and the audio tokens' positions (`video_coords`, `audio_coords`), as the transformer's forward
    makes them when given none: made once by its callers, since diffusers' making copies from the host (its patch
    size and scale factors), which waits for the queued GPU work and which a CUDA graph capture refuses."""
    video = transformer.rope.prepare_video_coords(batch, num_frames, height, width, device, fps=fps)
    audio = transformer.audio_rope.prepare_audio_coords(batch, audio_num_frames, device)
    return video, audio
