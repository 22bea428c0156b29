"""The registry of modes that the command line, the studio and the API read.

A mode is its pipeline plus the inputs a user gives it, each declared once with its pipeline keyword (also the API
parameter), its command-line flag and its page label, so that every error can name the input in the user's terms.
A new mode is one `Mode` here and one pipeline file.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import constants
from .pipeline_a2vid_two_stage import A2VidPipelineTwoStage
from .pipeline_common import LTXAVPipelineBase
from .pipeline_long_form import LongFormPipeline
from .pipeline_retake import RetakePipeline
from .pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline
from .pipeline_v2aud import V2AudPipeline


@dataclass(frozen=True)
class Option:
    """One input of a mode."""

    keyword: str  # the pipeline's keyword argument, and the API parameter
    flag: str  # the command-line flag
    label: str  # the page's label
    help: str = ""
    type: Callable[[str], Any] = str  # parses the command line's text
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] | None = None
    switch: bool = False  # a flag without a value (store_true)


PROMPT = Option("prompt", "--prompt", "Prompt", "what to see and hear", required=True)
NEGATIVE_PROMPT = Option(
    "negative_prompt", "--negative-prompt", "Negative prompt", "default: the reference negative prompt (dev mode)"
)
SEED = Option("seed", "--seed", "Seed", type=int, default=constants.DEFAULT_SEED)
SCHEDULE = Option("mode", "--mode", "Mode", "default: the model's own", choices=("distilled", "dev"))
STEPS = Option("num_inference_steps", "--steps", "Steps (dev mode)", "stage-1 steps in dev mode", type=int)
MODALITY_SCALE = Option(
    "modality_scale", "--modality-scale", "Modality scale", ">1 tightens audio-video sync", type=float
)
NUM_FRAMES = Option(
    "num_frames", "--num-frames", "Length",
    "8k+1, e.g. 97 or 121; default: the model's own (embedded: 97; real weights: 121), for a2v at most the clip's length",
    type=int,
)  # fmt: skip
LENGTH_FROM_PROMPT = Option(
    "length_from_prompt", "--length-from-prompt", "Length from the prompt",
    "LTX-2.5 with its duration head: the model picks the length (1-20 s) from the prompt, in place of --num-frames",
    default=False, switch=True,
)  # fmt: skip
FRAME_RATE = Option("frame_rate", "--frame-rate", "Frame rate (fps)", "default: the model's own (24)", type=float)
HEIGHT = Option(
    "height", "--height", "Resolution", "multiple of 64; default: the model's own (embedded: 128; 512)", type=int
)
WIDTH = Option(
    "width", "--width", "Resolution", "multiple of 64; default: the model's own (embedded: 128; 768)", type=int
)
AUDIO = Option(
    "audio", "--audio", "Your audio", "audio file (wav, flac, ogg, mp3) or a video with a sound track", required=True
)
AUDIO_START_TIME = Option(
    "audio_start_time", "--audio-start-time", "Start at (s)", "seconds into the clip where the cut starts", float, 0.0
)
PAD_AUDIO = Option(
    "pad_audio", "--pad-audio", "Pad a short clip with silence", "pad a clip shorter than the video with silence",
    default=False, switch=True,
)  # fmt: skip
VIDEO = Option("video", "--video", "Your video", "video file (mp4, webm, mov)", required=True)
VIDEO_FRAMES = Option(
    "num_frames", "--num-frames", "Use the first frames", "use only the video's first N frames (8k+1)", type=int
)
FIT = Option(
    "fit", "--fit", "Fit to the model's size", "crop or resize a video whose size is not a multiple of 64",
    choices=("crop", "resize"),
)  # fmt: skip
CLIP = Option("video", "--video", "Your clip", "a clip with picture and sound (mp4, webm, mov)", required=True)
START_TIME = Option("start_time", "--start-time", "From (s)", "start of the span to regenerate", float, required=True)
END_TIME = Option("end_time", "--end-time", "To (s)", "end of the span to regenerate", float, required=True)
REGENERATE = Option(
    "regenerate", "--regenerate", "Regenerate", "which streams to regenerate in the span", default="both",
    choices=("video", "audio", "both"),
)  # fmt: skip


def duration_value(text: str) -> float | str:
    """`--duration`: seconds, or 'all' for the whole audio clip."""
    if text == "all":
        return text
    try:
        return float(text)
    except ValueError as error:
        raise ValueError(f"`--duration` takes seconds or 'all'; got {text!r}.") from error


DURATION = Option(
    "duration_s", "--duration", "Length (s)",
    "seconds of output; past one window (--num-frames / --window-frames) it is made as chained windows; "
    "'all': the whole audio clip", duration_value, required=True,
)  # fmt: skip
CLIP_DURATION = Option(
    "duration_s", "--duration", "Length (s)", "seconds of the clip to use; default: all of it from --audio-start-time",
    duration_value, default="all",
)  # fmt: skip
PROMPT_TIMELINE = Option(
    "prompt_timeline", "--prompt-timeline", "Prompt timeline",
    "prompts for time ranges, '0-10 s: ...; 10-25 s: ...'; each window takes the range covering most of it",
)  # fmt: skip
WINDOW_FRAMES = Option(
    "window_frames", "--window-frames", "Window (frames)",
    "one window's length, 8k+1: the model's clip length (121; 97 for the embedded model)", int,
    constants.DEFAULT_NUM_FRAMES,
)  # fmt: skip
OVERLAP = Option(
    "overlap_latent_frames", "--overlap-latent-frames", "Overlap (latent frames)",
    "latent frames each window holds from the one before (K latent frames = 8(K-1)+1 frames)", int,
    constants.LONG_FORM_OVERLAP_LATENT_FRAMES,
)  # fmt: skip
MAX_AUDIO_DURATION = Option(
    "max_audio_duration_s", "--max-audio-duration", "Longest audio (s)", "longer audio files are refused", float,
    constants.LONG_FORM_MAX_AUDIO_DURATION_S,
)  # fmt: skip
LONG_FORM_OPTIONS = (PROMPT_TIMELINE, WINDOW_FRAMES, OVERLAP)

SHARED_OPTIONS = (PROMPT, NEGATIVE_PROMPT, SEED, SCHEDULE, STEPS, MODALITY_SCALE)
SIZE_OPTIONS = (NUM_FRAMES, FRAME_RATE, HEIGHT, WIDTH)


@dataclass(frozen=True)
class Mode:
    """One direction the product generates in."""

    name: str  # the command-line subcommand
    api_name: str  # the API endpoint and the studio tab's id
    title: str  # the tab's title
    summary: str  # one line for help texts
    pipeline: type[LTXAVPipelineBase]
    options: tuple[Option, ...]  # in the order the pipeline and the page take them
    takes_images: bool  # stills held at a frame (image to video, keyframes)
    generates_audio: bool  # previews carry sound
    two_stage: bool  # half size, upsample, full size; otherwise one stage at the input video's size
    # Long form: the pipeline writes its windows to `output=` as they finish and ends with `LongFormFinished`.
    long_form: bool = False
    # The long-form mode this one becomes when the asked length (`--duration`) is given (the command line).
    extends_to: str | None = None
    # The pipeline takes `output_path=` and encodes the mp4 while its final decode runs (one GPU).
    writes_while_decoding: bool = False

    def stream_kwargs(self, values: dict[str, Any]) -> dict[str, Any]:
        """The pipeline's keyword arguments from `values` (by keyword), each option's default where absent; an
        option left at None is left to the pipeline's own default ("all" for a duration: the whole audio clip)."""
        kwargs = {option.keyword: values.get(option.keyword, option.default) for option in self.options}
        if kwargs.get("duration_s") == "all":
            kwargs["duration_s"] = None
        return {keyword: value for keyword, value in kwargs.items() if value is not None}


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(
            "t2av",
            "text_to_av",
            "Text to audio+video",
            "text to audio+video",
            TI2VidTwoStagesPipeline,
            (*SHARED_OPTIONS, *SIZE_OPTIONS, LENGTH_FROM_PROMPT),
            takes_images=True,
            generates_audio=True,
            two_stage=True,
            extends_to="t2av-long",
            writes_while_decoding=True,
        ),
        Mode(
            "a2v",
            "audio_to_video",
            "Audio to video",
            "audio to video: the video follows the clip, which is kept unmodified",
            A2VidPipelineTwoStage,
            (AUDIO, AUDIO_START_TIME, PAD_AUDIO, *SHARED_OPTIONS, *SIZE_OPTIONS),
            takes_images=True,
            generates_audio=False,
            two_stage=True,
            extends_to="a2v-long",
            writes_while_decoding=True,
        ),
        Mode(
            "t2av-long",
            "text_to_av_long",
            "Text to audio+video, long",
            "text to audio+video of any length, as chained windows with both streams continuous",
            LongFormPipeline,
            (DURATION, *LONG_FORM_OPTIONS, *SHARED_OPTIONS, FRAME_RATE, HEIGHT, WIDTH),
            takes_images=False,
            generates_audio=True,
            two_stage=True,
            long_form=True,
        ),
        Mode(
            "a2v-long",
            "audio_to_video_long",
            "Audio to video, long",
            "audio to video for a whole song or voiceover, as chained windows; the mp4 carries the whole clip",
            LongFormPipeline,
            (
                AUDIO,
                AUDIO_START_TIME,
                CLIP_DURATION,
                *LONG_FORM_OPTIONS,
                MAX_AUDIO_DURATION,
                *SHARED_OPTIONS,
                FRAME_RATE,
                HEIGHT,
                WIDTH,
            ),
            takes_images=False,
            generates_audio=False,
            two_stage=True,
            long_form=True,
        ),
        Mode(
            "v2a",
            "video_to_audio",
            "Video to audio",
            "video to audio: new sound for a video, whose frames are kept",
            V2AudPipeline,
            (VIDEO, VIDEO_FRAMES, FIT, *SHARED_OPTIONS),
            takes_images=False,
            generates_audio=True,
            two_stage=False,
        ),
        Mode(
            "retake",
            "retake",
            "Retake",
            "retake: regenerate one time span of a clip's video, audio or both",
            RetakePipeline,
            (CLIP, START_TIME, END_TIME, REGENERATE, VIDEO_FRAMES, FIT, *SHARED_OPTIONS),
            takes_images=False,
            generates_audio=True,
            two_stage=False,
        ),
    )
}


def mode_named(name: str) -> Mode:
    """The mode of a subcommand or API name; an unknown one is an error listing the valid names."""
    for mode in MODES.values():
        if name in (mode.name, mode.api_name):
            return mode
    valid = ", ".join(f"{mode.name} ({mode.api_name})" for mode in MODES.values())
    raise ValueError(f"Unknown mode {name!r}; the modes are {valid}.")
