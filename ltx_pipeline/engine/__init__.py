"""What every mode shares: stream specs, the denoising loop, and the runner of one or two stages.

A mode (text to audio+video, audio to video, video to audio, retake) is a declaration of one `StreamSpec` per stream
and stage; `run_stages` runs any pair of them and yields the same events for all. After the reference's
`ltx_pipelines/utils/blocks.py` and `helpers.py`.
"""

from .denoise import DenoiseStep, denoise, euler_step, transformer_velocity
from .stages import Stage, StageResult, run_stages
from .streams import StreamSpec, TimeSpan, frozen_stream, image_tokens, span_mask, start_latents

__all__ = [
    "DenoiseStep",
    "Stage",
    "StageResult",
    "StreamSpec",
    "TimeSpan",
    "denoise",
    "euler_step",
    "frozen_stream",
    "image_tokens",
    "run_stages",
    "span_mask",
    "start_latents",
    "transformer_velocity",
]
