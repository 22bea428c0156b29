"""LTX-2.3 synchronized audio and video: text to audio+video and audio to video, as diffusers pipelines."""

from .pipeline_a2vid_two_stage import A2VidPipelineTwoStage
from .pipeline_common import GenerationCancelled
from .pipeline_retake import RetakePipeline
from .pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline
from .pipeline_v2aud import V2AudPipeline
from .types import Audio, Finished, GuidanceParams, LTXAVOutput, PipelineEvent, Recipe, StageDecoded, StepPreview

__all__ = [
    "A2VidPipelineTwoStage",
    "Audio",
    "Finished",
    "GenerationCancelled",
    "GuidanceParams",
    "LTXAVOutput",
    "PipelineEvent",
    "Recipe",
    "RetakePipeline",
    "StageDecoded",
    "StepPreview",
    "TI2VidTwoStagesPipeline",
    "V2AudPipeline",
]
