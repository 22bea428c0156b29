"""LTX-2.5's audio-video cross-attention modulation, on diffusers' LTX-2 transformer.

Every block's audio-to-video and video-to-audio cross-attention normalises both streams with a scale/shift and gates
its update; the transformer computes both from timestep embeddings once per forward, two AdaLN modules a stream. The
reference's 1.2.0 release, the first with LTX-2.5, feeds the two different timesteps
(`ltx_core/model/transformer/transformer_args.py`, `MultiModalTransformerArgsPreprocessor.
_prepare_cross_attention_timestep`): the scale/shift reads the stream's own per-token timesteps, the gate the other
stream's sigma. diffusers 0.42.1's forward feeds both the same value: the other stream's sigma with
`use_cross_timestep=True` (reference 1.0.0's convention, which LTX-2.3 keeps and its parity suite measures), the
stream's own timesteps without. The two conventions agree while every token of a stream is at the step's sigma and
part where tokens are held clean: audio-to-video's audio, image-conditioned frames, kept time spans.

1.2.0 also gives a frozen stream (audio-to-video's audio, video-to-audio's video) the modality sigma 0, where 1.0.0
gave it the step's (`ltx_pipelines/utils/helpers.py`, `modality_from_latent_state`): that sigma drives the stream's
prompt AdaLN and the other stream's cross-attention gate. The engine reads it from the transformer
(`follows_reference_1_2`), so every caller of `engine.denoise` agrees.

`use_reference_1_2_modulation` gives one transformer 1.2.0's split, the pipelines do it for LTX-2.5 models
(`versions.VersionProfile.reference_release`): called with `use_cross_timestep=True`, as the engine calls it, the
gate keeps diffusers' reading and the scale/shift reads the stream's own timesteps. Nothing else changes: no weight,
no block (compiled blocks and their fused processors are untouched), and no hook, so the forward can still be
recorded as a CUDA graph (`speed.forward_graphs`), whose replays read the timesteps from the recorded inputs.
"""

import functools
import inspect
from typing import Any

import torch
from diffusers import LTX2VideoTransformer3DModel
from diffusers.models.transformers.transformer_ltx2 import LTX2AdaLayerNormSingle

# The forward's per-token timesteps, by stream, and the AdaLN module that makes that stream's cross-modal scale/shift.
SCALE_SHIFT_MODULES: dict[str, str] = {
    "timestep": "av_cross_attn_video_scale_shift",
    "audio_timestep": "av_cross_attn_audio_scale_shift",
}
_MARK = "_ltx_reference_1_2"  # set on a transformer that `use_reference_1_2_modulation` changed
_FORWARD_SIGNATURE = inspect.signature(LTX2VideoTransformer3DModel.forward)


class OwnTimestepScaleShift(LTX2AdaLayerNormSingle):
    """A stream's cross-modal scale/shift AdaLN that reads `own_timesteps`, the stream's per-token timesteps, where
    its transformer's forward set them (`_forward_with_own_timesteps`), instead of the value diffusers' forward hands
    it; elsewhere diffusers' module. The same weights and state-dict keys."""

    own_timesteps: torch.Tensor | None = None

    def forward(
        self,
        timestep: torch.Tensor,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        batch_size: int | None = None,
        hidden_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.own_timesteps is not None:
            timestep = self.own_timesteps.flatten()  # (B,) or (B, S) -> one a batch row or one a token
        return super().forward(timestep, added_cond_kwargs, batch_size, hidden_dtype)


def use_reference_1_2_modulation(transformer: LTX2VideoTransformer3DModel) -> None:
    """Gives `transformer` reference 1.2.0's cross-modal modulation (see the module docstring). In place and
    idempotent; do it before any offloading or parallelism wraps the transformer's forward, as the pipelines do when
    they are built. The two scale/shift modules change class and the transformer's forward is wrapped, so that during
    each call they read that call's own timesteps; one forward at a time, as the engine runs it."""
    for name in SCALE_SHIFT_MODULES.values():
        module = getattr(transformer, name)
        if type(module) is LTX2AdaLayerNormSingle:
            module.__class__ = OwnTimestepScaleShift
    if not follows_reference_1_2(transformer):
        # An instance attribute, not a subclass: the transformer keeps its class, so saving it and reading its type
        # are unchanged, and wrappers installed later (offloading, context parallelism) wrap this forward.
        transformer.forward = functools.partial(_forward_with_own_timesteps, transformer)
        transformer.__dict__[_MARK] = True


def follows_reference_1_2(transformer: torch.nn.Module) -> bool:
    """Whether `use_reference_1_2_modulation` changed `transformer`: the engine then runs it with 1.2.0's modality
    sigmas too (a frozen stream's is 0)."""
    return bool(transformer.__dict__.get(_MARK))


def _forward_with_own_timesteps(transformer: LTX2VideoTransformer3DModel, *args: Any, **kwargs: Any) -> Any:
    """diffusers' forward, with each stream's scale/shift module reading the stream's own timesteps of this call
    (the audio's default to the video's, as in diffusers' forward)."""
    arguments = _FORWARD_SIGNATURE.bind(transformer, *args, **kwargs).arguments
    video_timesteps = arguments["timestep"]
    audio_timesteps = arguments.get("audio_timestep")
    own = {
        "timestep": video_timesteps,
        "audio_timestep": video_timesteps if audio_timesteps is None else audio_timesteps,
    }
    modules = {stream: getattr(transformer, name) for stream, name in SCALE_SHIFT_MODULES.items()}
    for stream, module in modules.items():
        module.own_timesteps = own[stream]
    try:
        return type(transformer).forward(transformer, *args, **kwargs)
    finally:
        for module in modules.values():
            module.own_timesteps = None
