"""Thin handlers between the page's widgets and the pipelines: widgets -> request -> pipeline stream -> files.

Each public method of `StudioHandlers` is what one gradio event calls, and is tested as a plain function. The
generation handlers are generators: they yield every step's preview, the decoded stage-1 clip, then the final
mp4. A `ValueError` from the request or the pipeline becomes a `gr.Error` with the same message.
"""

import inspect
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from ltx_pipeline import Finished, StageDecoded, StepPreview, constants, validation
from ltx_pipeline.audio import probe_audio_duration
from ltx_pipeline.conditioning import ImageCondition, aspect_notice, check_image_conditions, load_image
from ltx_pipeline.lora import LoraSpec, check_lora_spec
from ltx_pipeline.media import recipe_to_json, save_output, write_mp4
from ltx_pipeline.model_defaults import defaults_for_model, longest_frames_within
from ltx_pipeline.modes import SHARED_OPTIONS, SIZE_OPTIONS, Mode, Option, mode_named
from ltx_pipeline.pipeline_long_form import LongFormPlan, LongFormResume
from ltx_pipeline.pipeline_retake import STREAMS as RETAKE_STREAMS
from ltx_pipeline.pipeline_retake import check_span
from ltx_pipeline.tiny import RANDOM_MODEL_LABEL
from ltx_pipeline.user_terms import in_user_terms, without_paths
from ltx_pipeline.video_input import check_video, probe_video

from . import help as studio_help
from .long_form import (
    LONG_FORM_DEFAULTS,
    LONG_FORM_PARAMETERS,
    LongFormRun,
    check_audio_length,
    extends,
    long_form_events,
    long_form_inputs,
    long_mode,
    window_count,
)
from .previews import audio_for_widget, preview_grid
from .pump import pumped
from .retention import using_uploads
from .state import STUDIO_MODES, TEXT_TO_AV, StudioState
from .zerogpu import check_window_fits, clip_gpu_seconds, on_zero_gpu, windows_in_calls, windows_in_worker

logger = logging.getLogger(__name__)

MAX_RANDOM_SEED = 2**31 - 1  # random seeds stay in a range every client and JSON parser reads exactly
LOCAL_SESSION = "local"  # the session of a handler called without a gradio request (tests, scripts)
AUTO_MODE = "auto"  # the checkpoint's own schedule: distilled for a distilled file, dev otherwise
SCHEDULES = (AUTO_MODE, "distilled", "dev")
MAX_LISTED_WORDS = 120  # a vocabulary this small is listed in full in the prompt hint
LORA_SLOTS = 3  # LoRAs one run can pick, each with its own strength
NO_LORA = ""  # the picker's "none" choice
STOP_WAIT_S = 300.0  # s the page waits for a stopped run to finish its step before saying so
STOP_POLL_S = 0.1  # s between checks while it waits


SHARED_PARAMETERS = ("prompt", "negative_prompt")
SIZE_PARAMETERS = ("num_frames", "frame_rate", "resolution")
SCHEDULE_PARAMETERS = ("seed", "randomize_seed", "mode", "num_inference_steps", "modality_scale")
IMAGE_PARAMETERS = ("image", "image_strength", "image_frame_index")
LORA_PARAMETERS = tuple(
    name for slot in range(1, LORA_SLOTS + 1) for name in (f"lora_{slot}", f"lora_{slot}_strength")
)
# Inputs added to a mode after its endpoint was published: they come last, with a default, so that a client calling
# the endpoint with its earlier parameters, by name or in order, gets what it got before.
LATE_PARAMETERS = {"length_from_prompt": False}


PARAMETER_DEFAULTS = {
    "image": None,
    "image_strength": 1.0,
    "image_frame_index": 0,
    **LONG_FORM_DEFAULTS,
    **{
        name: NO_LORA if not name.endswith("strength") else constants.DEFAULT_LORA_STRENGTH for name in LORA_PARAMETERS
    },
    **LATE_PARAMETERS,
}


def sets_size(mode: Mode) -> bool:
    """Whether the user picks the clip's size, length and rate (otherwise they are its video's)."""
    return any(option.keyword == "height" for option in mode.options)


def own_options(mode: Mode) -> tuple[Option, ...]:
    """The mode's own inputs, which its tab shows above the controls every tab has (late ones included)."""
    return tuple(option for option in mode.options if option not in SHARED_OPTIONS + SIZE_OPTIONS)


def late_options(mode: Mode) -> tuple[Option, ...]:
    """The mode's own inputs that its endpoint takes last (`LATE_PARAMETERS`)."""
    return tuple(option for option in own_options(mode) if option.keyword in LATE_PARAMETERS)


def page_parameters(mode: Mode) -> tuple[str, ...]:
    """The mode's endpoint parameters in order (the page's inputs): its own, then the shared ones, then (a mode with a
    long form) the length beyond one window and the prompt timeline, last so earlier positional calls still fit."""
    size = SIZE_PARAMETERS if sets_size(mode) else ()
    images = IMAGE_PARAMETERS if mode.takes_images else ()
    own = tuple(option.keyword for option in own_options(mode) if option.keyword not in LATE_PARAMETERS)
    late = tuple(option.keyword for option in late_options(mode))
    long_form = LONG_FORM_PARAMETERS if extends(mode) else ()
    return (*own, *SHARED_PARAMETERS, *size, *SCHEDULE_PARAMETERS, *images, *LORA_PARAMETERS, *late, *long_form)


@dataclass(frozen=True)
class GenerationRequest:
    """One job, checked and typed; what the widgets (or an API call) asked for."""

    job: str  # the mode's API name
    prompt: str
    negative_prompt: str | None  # None: the reference negative prompt
    height: int  # the clip's size, length and rate: chosen, or its video's
    width: int
    num_frames: int
    frame_rate: float
    seed: int
    mode: str | None  # "distilled", "dev", or None for the checkpoint's own
    num_inference_steps: int | None  # dev only
    modality_scale: float
    sized: bool = True  # the pipeline takes the size, length and rate (otherwise it reads them from its video)
    image: str | None = None  # a still held at `image_frame_index` (0: image to video) with `image_strength`
    image_strength: float = 1.0
    image_frame_index: int = 0
    loras: tuple[LoraSpec, ...] = ()  # LoRA files of the studio's folder, applied in both stages
    inputs: Mapping[str, Any] = field(default_factory=dict)  # the mode's own inputs, by pipeline keyword
    long_form: Mapping[str, Any] | None = None  # long-form inputs (length, timeline, window); None: one clip

    @property
    def pipeline_job(self) -> str:
        """The API name of the mode whose pipeline runs the job: the tab's, or its long form's."""
        return long_mode(mode_named(self.job)).api_name if self.long_form is not None else self.job

    def stream_kwargs(self) -> dict[str, Any]:
        if self.long_form is not None:
            kwargs = {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "seed": self.seed}
            kwargs |= {"mode": self.mode, "num_inference_steps": self.num_inference_steps}
            kwargs |= {"modality_scale": self.modality_scale, "height": self.height, "width": self.width}
            own = {key: value for key, value in self.inputs.items() if key != "pad_audio"}
            return kwargs | {"frame_rate": self.frame_rate} | own | dict(self.long_form)
        kwargs = {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "mode": self.mode,
            "num_inference_steps": self.num_inference_steps,
            "modality_scale": self.modality_scale,
        }
        if self.sized:
            kwargs |= {"height": self.height, "width": self.width, "num_frames": self.num_frames}
            kwargs |= {"frame_rate": self.frame_rate, "images": [self.image_condition()] if self.image else None}
        return kwargs | dict(self.inputs)

    def files(self) -> list[Path]:
        """The files the job reads (uploads, or example clips): its image and its mode's own file inputs."""
        values = [self.image, *self.inputs.values()]
        return [Path(value) for value in values if isinstance(value, (str, Path)) and Path(value).is_file()]

    def image_condition(self) -> ImageCondition:
        return ImageCondition(self.image, frame_index=self.image_frame_index, strength=self.image_strength)


def build_request(job: str | Mode, values: Mapping[str, Any], loras: tuple[LoraSpec, ...] = ()) -> GenerationRequest:
    """Widget values by parameter name -> a checked request; raises ValueError naming the first bad input. Loads
    nothing (a video or clip is only probed)."""
    mode = job if isinstance(job, Mode) else mode_named(job)
    values = {**PARAMETER_DEFAULTS, **values}
    prompt, negative_prompt = values.get("prompt"), values.get("negative_prompt")
    validation.check_prompt(prompt if prompt is not None else "")
    if negative_prompt:
        validation.check_prompt(negative_prompt, "negative_prompt", allow_empty=True)
    schedule = values.get("mode")
    if schedule not in SCHEDULES:
        raise ValueError(f"`mode` must be one of {', '.join(map(repr, SCHEDULES))}; got {schedule!r}.")
    seed = values.get("seed")
    if values.get("randomize_seed"):
        seed = random.SystemRandom().randint(0, MAX_RANDOM_SEED)
    seed = studio_help.whole_number("seed", seed)
    validation.check_seed(seed)
    steps = None
    if schedule == "dev":
        steps = studio_help.whole_number("num_inference_steps", values.get("num_inference_steps"))
        validation.check_steps(steps)
    modality_scale = studio_help.real_number("modality_scale", values.get("modality_scale"))
    if sets_size(mode):
        num_frames = studio_help.whole_number("num_frames", values.get("num_frames"))
        validation.check_num_frames(num_frames)
        frame_rate = studio_help.real_number("frame_rate", values.get("frame_rate"))
        validation.check_frame_rate(frame_rate)
        height, width = studio_help.parse_resolution(values.get("resolution"))
        validation.check_size(height, width)
        inputs = _audio_inputs(values) if mode.name == "a2v" else {}
        if any(option.keyword == "length_from_prompt" for option in mode.options) and values.get("length_from_prompt"):
            inputs = {
                **inputs,
                "length_from_prompt": True,
            }  # only when asked: the long-form pipeline has no such input
    else:
        height, width, num_frames, frame_rate, inputs = _video_inputs(mode, values)
    request = GenerationRequest(
        job=mode.api_name,
        prompt=prompt,
        negative_prompt=negative_prompt or None,
        height=height,
        width=width,
        num_frames=num_frames,
        frame_rate=frame_rate,
        seed=seed,
        mode=None if schedule == AUTO_MODE else schedule,
        num_inference_steps=steps,
        modality_scale=modality_scale,
        sized=sets_size(mode),
        loras=tuple(loras),
        inputs=inputs,
        long_form=long_form_inputs(mode, values, num_frames) if extends(mode) else None,
    )
    image = values.get("image")
    if image and mode.takes_images:
        strength = studio_help.real_number("image_strength", values.get("image_strength"))
        frame_index = studio_help.whole_number("image_frame_index", values.get("image_frame_index"))
        request = replace(request, image=str(image), image_strength=strength, image_frame_index=frame_index)
        # The pipeline's own checks, before the model is touched: frame inside the clip, strength in [0, 1], and
        # a file that opens as an image.
        check_image_conditions([request.image_condition()], num_frames)
        load_image(request.image, "image")
    return request


def _audio_inputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Audio to video's own inputs, checked: the clip (its header read), where to start, whether to pad."""
    audio = values.get("audio")
    if not audio:
        raise ValueError("`audio` is missing: upload or record a clip first.")
    audio_start_time = studio_help.real_number("audio_start_time", values.get("audio_start_time", 0.0))
    validation.check_audio_start_time(audio_start_time)
    pad_audio = values.get("pad_audio", False)
    if not isinstance(pad_audio, bool):
        raise ValueError(f"`pad_audio` must be True or False; got {pad_audio!r}.")
    # Reading the header catches an empty, corrupt or non-audio file before the model is touched.
    probe_audio_duration(audio)
    return {"audio": str(audio), "audio_start_time": audio_start_time, "pad_audio": pad_audio}


def _video_inputs(mode: Mode, values: Mapping[str, Any]) -> tuple[int, int, int, float, dict[str, Any]]:
    """A video mode's own inputs, checked against the video's header: (height, width, frames, rate, inputs)."""
    video = values.get("video")
    if not video:
        raise ValueError("`video` is missing: upload a video first.")
    wanted = values.get("num_frames")
    num_frames = None if wanted in (None, "", 0) else studio_help.whole_number("num_frames", wanted)
    fit = values.get("fit") or None
    info = probe_video(video)
    retake = mode.name == "retake"
    num_frames, (height, width) = check_video(info, num_frames, fit, constants.TWO_STAGE_SIZE_MULTIPLE, sound=retake)
    frame_rate = float(info.frame_rate)
    inputs = {"video": str(video), "num_frames": num_frames, "fit": fit}
    if retake:
        start = studio_help.real_number("start_time", values.get("start_time"))
        end = studio_help.real_number("end_time", values.get("end_time"))
        check_span(start, end, num_frames / frame_rate)
        regenerate = values.get("regenerate") or "both"
        if regenerate not in RETAKE_STREAMS:
            raise ValueError(f"`regenerate` must be 'video', 'audio' or 'both'; got {regenerate!r}.")
        inputs |= {"start_time": start, "end_time": end, "regenerate": regenerate}
    return height, width, num_frames, frame_rate, inputs


def pick_loras(
    choices: Sequence[tuple[str | None, float | int | str | None]],
    files: Mapping[str, Path],
    off_reason: str | None = None,
) -> tuple[LoraSpec, ...]:
    """Picker rows (file name relative to the LoRA folder, strength) -> checked LoRAs; empty rows are skipped.

    Only files of the studio's folder are accepted, so an API caller cannot point the studio at other paths.
    """
    specs = []
    for index, (name, strength) in enumerate(choices, start=1):
        if not name:
            continue
        argument = f"lora_{index}"
        if off_reason is not None:
            raise ValueError(f"`{argument}` must be empty in this studio ({off_reason}); got {name!r}.")
        if name not in files:
            available = ", ".join(repr(choice) for choice in files) or "none (the LoRA folder has no files)"
            raise ValueError(f"`{argument}` must be a file of the studio's LoRA folder: {available}; got {name!r}.")
        value = studio_help.real_number(f"{argument}_strength", strength)
        specs.append(check_lora_spec(files[name], value, argument))
    return tuple(specs)


def lora_menu(files: Mapping[str, Path]) -> list[tuple[str, str]]:
    """(label, value) pairs for a LoRA picker: "none", then each file by its path in the folder."""
    return [("none", NO_LORA)] + [(name, name) for name in files]


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or LOCAL_SESSION


def _no_progress(*args: Any, **kwargs: Any) -> None:
    return None


class StudioHandlers:
    """Every handler the page wires up, over one `StudioState`."""

    def __init__(self, state: StudioState):
        self.state = state
        # (session, job) -> when its Stop was clicked: a cancelled event then "fails", and the page must say it
        # stopped, not that it ended with an error.
        self._stop_clicks: dict[tuple[str, str], float] = {}
        self._entry_points: dict[str, Callable[..., Iterator[tuple]]] = {}
        # (session, job) -> the page fields of a long run's mp4 kept at a Stop, for `stopped_with_file`.
        self._kept_at_stop: dict[tuple[str, str], dict[str, Any]] = {}
        # ZeroGPU: (session, job) -> the Stop of a long run whose windows go call by call (no pipeline is lent here).
        self._runs_in_calls: dict[tuple[str, str], threading.Event] = {}
        self._gpu_windows: Callable[..., Iterator[Any]] | None = None  # `_window_group` as a `spaces.GPU` function
        if on_zero_gpu():
            self._gpu_window_calls()  # made with the page, before it launches, as ZeroGPU functions are

    # ---- generation -----------------------------------------------------------------------------------------------

    def generation(self, mode: Mode) -> Callable[..., Iterator[tuple]]:
        """The generation handler of `mode`: its page's inputs (`page_parameters`) by name or in order, yielding
        the tab's outputs (`_Update.outputs`). One function for every mode, its signature made from the registry so
        that gradio names the endpoint's parameters."""
        if mode.api_name not in self._entry_points:
            self._entry_points[mode.api_name] = self._entry_point(mode)
        return self._entry_points[mode.api_name]

    def __getattr__(self, name: str) -> Callable[..., Iterator[tuple]]:
        """`handlers.text_to_av` and the like: a mode's generation handler by its API name."""
        mode = next((mode for mode in STUDIO_MODES if mode.api_name == name), None)
        if mode is None:
            raise AttributeError(name)
        return self.generation(mode)

    def _entry_point(self, mode: Mode) -> Callable[..., Iterator[tuple]]:
        names = page_parameters(mode)
        parameters = [
            inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=PARAMETER_DEFAULTS.get(name, None)
            )
            if name in PARAMETER_DEFAULTS
            else inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for name in names
        ]
        parameters += [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request),
            inspect.Parameter(
                "progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress(), annotation=gr.Progress
            ),
        ]
        signature = inspect.Signature(parameters)

        def generate(*args: Any, **kwargs: Any) -> Iterator[tuple]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            request, progress = values.pop("request"), values.pop("progress")
            terms = _terms(request, mode)
            with user_errors(terms):
                lora_rows = [(values[f"lora_{slot}"], values[f"lora_{slot}_strength"]) for slot in range(1, 4)]
                job = build_request(mode, values, loras=self._pick_loras(lora_rows))
            for update in self._pumped(job, _session(request), progress, terms):
                yield update.outputs(mode)

        generate.__signature__ = signature
        # gradio finds the request and progress parameters by their annotations.
        generate.__annotations__ = {"request": gr.Request, "progress": gr.Progress}
        generate.__name__ = generate.__qualname__ = mode.api_name
        generate.__doc__ = f"{mode.title}: yields {', '.join(_Update.output_names(mode))}."
        return generate

    def _pick_loras(self, rows: list[tuple[str | None, float]]) -> tuple[LoraSpec, ...]:
        return pick_loras(rows, self.state.lora_files(), self.state.lora_picker_off_reason)

    def _pumped(
        self, job: GenerationRequest, session: str, progress: Callable, terms: "UserTerms"
    ) -> Iterator["_Update"]:
        """`_generate` in a worker thread (`ui.pump`): a cancel lands within a heartbeat, not after the step."""
        started: list = []  # the run `_generate` starts: a late close must not stop this session's next run
        updates = self._generate(job, session, progress, terms, started)

        def stop() -> None:
            for run in started:
                if isinstance(run, threading.Event):  # a ZeroGPU long run's Stop (`_generate_long_in_calls`)
                    run.set()
                else:
                    self.state.stop_run(run)

        def stopped() -> bool:
            return any((run if isinstance(run, threading.Event) else run.stop_requested).is_set() for run in started)

        abandoned_s = self.state.config.abandoned_after_s
        return pumped(updates, heartbeat=_Update, stop=stop, abandoned_s=abandoned_s, stopped=stopped)

    def _generate(
        self,
        job: GenerationRequest,
        session: str,
        progress: Callable,
        terms: "UserTerms | None" = None,
        started: list | None = None,
    ) -> Iterator["_Update"]:
        progress = progress or _no_progress
        terms = terms or UserTerms()
        with user_errors(terms):
            self.state.work_limit.check(job.height, job.width, job.num_frames)  # before the model is touched
            if job.long_form is not None and "audio" in job.inputs:
                check_audio_length(job.inputs["audio"], self.state.config.max_audio_duration_s)
            if job.long_form is not None and self.state.config.num_gpus > 1:
                raise ValueError(
                    f"`duration_s` must be 0 in this studio: long runs (chained windows) run on one GPU and it runs "
                    f"on {self.state.config.num_gpus}; got {job.long_form['duration_s']:g} s."
                )
            in_calls = job.long_form is not None and on_zero_gpu()
            if in_calls:
                window_s = _window_gpu_seconds(job)
                check_window_fits(window_s, job.num_frames, job.height, job.width)
                total = window_count(job.long_form["duration_s"], job.long_form["window_frames"], job.frame_rate)
        waiting = "Loading the model..." if not self.state.is_loaded else "Starting..."
        yield _Update(None, None, None, None, _status(waiting), None)  # clears the previous run's outputs
        try:
            self.state.load()
        except Exception as error:
            message = terms.say(f"The model `{self.state.config.model}` could not be loaded: {error}")
            raise gr.Error(message) from error
        if in_calls:
            yield from self._generate_long_in_calls(job, session, progress, terms, started, (total, window_s))
            return
        with (
            user_errors(terms),
            using_uploads(job.files()),
            self.state.run(session, job.job, job.loras, job.pipeline_job) as run,
        ):
            if started is not None:
                started.append(run)
            if run.stop_requested.is_set():  # stopped while other runs held the LoRAs
                yield _Update(status=_status("Stopped before the start. Ready for the next run."))
                return
            if job.long_form is not None:
                limit = self.state.config.max_audio_duration_s  # the pipeline's own check, at the studio's limit
                output = self.state.new_output_path(job.job)
                events = run.pipeline.stream(output=output, max_audio_duration_s=limit, **job.stream_kwargs())
                yield from self._generate_long(job, events, session, progress, run.stop_requested.is_set)
                return
            last, step_update, stage_update = None, _Update(), _Update()
            with closing(run.pipeline.stream(**job.stream_kwargs())) as events:
                for event in events:
                    if run.stop_requested.is_set():
                        break
                    last = event
                    if isinstance(event, StepPreview):
                        step_update = self._on_step(event, job, progress)
                        yield step_update
                    elif isinstance(event, StageDecoded):
                        stage_update = self._on_stage(event, job)
                        yield stage_update
                    elif isinstance(event, Finished):
                        # The last yield is what an API caller gets: it carries every output, not only the new ones.
                        final = self._on_finished(event, job, stage_video=stage_update.stage_video)
                        yield replace(
                            final,
                            preview_image=step_update.preview_image,
                            preview_audio=step_update.preview_audio,
                            stage_video=stage_update.stage_video,
                        )
            if not isinstance(last, Finished):
                if not run.stop_requested.is_set():
                    raise RuntimeError("the pipeline's stream ended before the final video")
                where = f"stage {last.stage}, step {last.step}" if isinstance(last, StepPreview) else "the start"
                yield _Update(status=_status(f"Stopped at {where}. Ready for the next run."))

    def _generate_long(
        self,
        job: GenerationRequest,
        events: Iterator[Any],
        session: str,
        progress: Callable,
        stopped: Callable[[], bool],
    ) -> Iterator["_Update"]:
        """A run of chained windows (`ui.long_form`) from its pipeline events: window progress, the growing preview,
        the final mp4; a Stop keeps the finished windows as a playable mp4 (`stopped_with_file` shows it)."""
        self._kept_at_stop.pop((session, job.job), None)
        shown = LongFormRun(job.job, job.seed, self.state.new_output_path, progress)
        fields: dict[str, Any] = {}

        def keep(kept: dict[str, Any]) -> None:
            self._kept_at_stop[(session, job.job)] = kept

        try:
            for update in long_form_events(events, shown, stopped, keep):
                fields |= update
                if "final_video" in update:  # the last yield is what an API caller gets: every output
                    update = fields | {"stage_video": shown.preview or gr.skip()}
                yield _Update(**update)
        finally:
            shown.remove_parts()
        self.state.prune_outputs()

    def _generate_long_in_calls(
        self,
        job: GenerationRequest,
        session: str,
        progress: Callable,
        terms: "UserTerms",
        started: list | None,
        windows: tuple[int, float],
    ) -> Iterator["_Update"]:
        """ZeroGPU: a long run whose windows go to the GPU in groups, one call each (`ui.zerogpu.windows_in_calls`);
        this process grows the mp4, shows the progress and takes the Stop, as `_generate_long` does in one process.
        `windows`: how many the run makes, and one's estimated GPU seconds."""
        key, stop = (session, job.job), threading.Event()
        self._runs_in_calls[key] = stop
        if started is not None:
            started.append(stop)
        output = self.state.new_output_path(job.job)
        request = {"job": job, "session": session, "output": str(output)}
        stop_file = output.with_suffix(".stop")
        events = windows_in_calls(self._gpu_window_calls(), request, *windows, stop_file, stop.is_set)
        try:
            with user_errors(terms), using_uploads(job.files()):
                yield from self._generate_long(job, events, session, progress, stop.is_set)
        finally:
            if self._runs_in_calls.get(key) is stop:
                del self._runs_in_calls[key]

    def _gpu_window_calls(self) -> Callable[..., Iterator[Any]]:
        """`_window_group` as a `spaces.GPU` function asking for its `gpu_seconds`, made once."""
        if self._gpu_windows is None:
            import spaces

            self._gpu_windows = spaces.GPU(duration=_requested_seconds)(self._window_group)
        return self._gpu_windows

    def _window_group(
        self,
        job: GenerationRequest,
        session: str,
        output: str,
        plan: LongFormPlan | None,
        resume: LongFormResume | None,
        end: int,
        gpu_seconds: int,
        stop_file: str,
    ) -> Iterator[Any]:
        """One ZeroGPU call of a long run, in the GPU worker: the first plans the run (and yields the plan), each
        makes windows up to `end` from `resume` (`ui.zerogpu.windows_in_worker`, which `stop_file` stops)."""
        limit = self.state.config.max_audio_duration_s
        with self.state.run(session, job.job, job.loras, job.pipeline_job) as run:
            pipeline = run.pipeline
            if plan is None:
                plan = pipeline.plan_run(output=output, max_audio_duration_s=limit, **job.stream_kwargs())
                end = min(end, len(plan.windows))
                yield plan
            yield from windows_in_worker(pipeline, plan, resume, end, stop_file)

    def _on_step(self, event: StepPreview, job: GenerationRequest, progress: Callable) -> "_Update":
        stages = 2 if mode_named(job.job).two_stage else 1
        label = f"Stage {event.stage}/{stages} - step {event.step}/{event.total_steps}"
        progress((event.step, event.total_steps), desc=label)
        preview_audio = audio_for_widget(event.audio) if event.audio is not None else gr.skip()
        return _Update(
            preview_image=preview_grid(event.video),
            preview_audio=preview_audio,
            status=_status(f"{label} - {event.elapsed_s:.1f} s - seed {job.seed}"),
        )

    def _on_stage(self, event: StageDecoded, job: GenerationRequest) -> "_Update":
        path = self.state.new_output_path(f"{job.job}-stage{event.stage}", stage=True)
        write_mp4(path, event.frames, event.audio, event.frame_rate)
        height, width = event.frames.shape[1:3]
        message = f"Stage {event.stage} decoded ({width} x {height}) at {event.elapsed_s:.1f} s; refining..."
        return _Update(stage_video=str(path), status=_status(message))

    def _on_finished(self, event: Finished, job: GenerationRequest, stage_video: Any = None) -> "_Update":
        path = self.state.new_output_path(job.job)
        # The recipe names the user's files by name: where the server keeps uploads is none of a client's business.
        output = replace(event.output, recipe=without_paths(event.output.recipe))
        path, recipe_path = save_output(output, path)
        # Retention spares this run's files (its client has yet to fetch them, its stage-1 clip among them).
        stage_files = [Path(stage_video)] if isinstance(stage_video, str) else []
        self.state.prune_outputs(keep=[path, recipe_path, *stage_files])
        recipe = dict(json.loads(recipe_to_json(output.recipe)), output_file=path.name, recipe_file=recipe_path.name)
        message = _status(f"Done in {event.elapsed_s:.1f} s - seed {job.seed} - {path.name}")
        notices = [entry["notice"] for entry in event.output.recipe.get("images", []) if entry.get("notice")]
        if event.output.recipe.get("video_reencoded_because"):
            notices.append(f"The video was re-encoded: {event.output.recipe['video_reencoded_because']}.")
        return _Update(final_video=str(path), status="\n\n".join([message, *notices]), recipe=recipe)

    def stop(self, job: str, request: gr.Request | None = None) -> str:
        """Stop for the tab of mode `job` (its API name)."""
        return self._stop(job, request)

    def _stop(self, job: str, request: gr.Request | None) -> str:
        self._stop_clicks[(_session(request), job)] = time.monotonic()
        in_calls = self._runs_in_calls.get((_session(request), job))
        if in_calls is not None:
            in_calls.set()
        if self.state.stop(_session(request), job) or in_calls is not None:
            return _status("Stopped; the step in progress finishes first...")
        return _status("Ready for the next run.")

    def _is_running(self, session: str, job: str) -> bool:
        """A run of `job` in flight for `session`: on a lent pipeline, or (ZeroGPU) a long run going call by call."""
        return self.state.is_running(session, job) or (session, job) in self._runs_in_calls

    def stopped(self, job: str, request: gr.Request | None = None) -> str:
        """After Stop in the tab of mode `job`: "ready" once its run has let go of its pipeline."""
        return self._stopped(job, request)

    def _stopped(self, job: str, request: gr.Request | None) -> str:
        """After Stop: "ready" only once the stopped run has let go of its pipeline. Gradio's cancel of the event
        completes only then too, and a Generate clicked before would be cancelled with it."""
        session, deadline = _session(request), time.monotonic() + STOP_WAIT_S
        while self._is_running(session, job):
            if time.monotonic() > deadline:
                return _status("The stopped run is still finishing its step; try again shortly.")
            time.sleep(STOP_POLL_S)
        return _status("Stopped. Ready for the next run.")

    def stopped_with_file(self, job: str, request: gr.Request | None = None) -> tuple[str, Any, Any]:
        """After Stop in a tab with a long form: (status, final video, recipe); a stopped long run's finished windows
        show as its playable mp4."""
        status = self._stopped(job, request)
        kept = self._kept_at_stop.pop((_session(request), job), None)
        if kept is None:
            return status, gr.skip(), gr.skip()
        return kept["status"], kept["final_video"], kept["recipe"]

    def after_failure(self, job: str = TEXT_TO_AV, request: gr.Request | None = None) -> str:
        """The status line after a run's event failed: stopped by the user (Stop cancels the event), or an error
        (which shows as a message on the page)."""
        session = _session(request)
        clicked = self._stop_clicks.pop((session, job), None)
        if clicked is not None and time.monotonic() - clicked < STOP_WAIT_S:
            if self._is_running(session, job):  # the page says "ready" once the stopped run let go
                return _status("Stopped; the step in progress finishes first...")
            return _status("Stopped. Ready for the next run.")
        return _status("The last run ended with an error (see the message). Ready for the next run.")

    # ---- cheap updates (queue=False) ------------------------------------------------------------------------------

    def model_note(self) -> str:
        """Which model the page runs, and what to expect from it."""
        state = self.state
        if state.load_error is not None:
            return f"**The model `{state.config.model}` could not be loaded:** {state.load_error}"
        if not state.is_loaded:
            return f"Model: `{state.config.model}` (loading; the first generation waits for it)."
        note = f"Model: **{state.model_label}** ({state.model_summary})."
        if state.model_summary.startswith("LTX-2.5"):
            note += " " + studio_help.LTX_2_5_NOTE
        if state.is_warming_up:
            note += " Warming up: compiling the fast path at the default size; a generation started now waits for it."
        if state.model_label == RANDOM_MODEL_LABEL:
            note += " Start the app with `--model Lightricks/LTX-2.3` (or `LTX_MODEL=...`) for real clips."
        return note

    def model_status(self) -> tuple[str, dict]:
        """The model note, and whether the page should keep refreshing it (while the model loads or warms up)."""
        loading = not self.state.is_loaded and self.state.load_error is None
        return self.model_note(), gr.update(active=loading or self.state.is_warming_up)

    def prompt_hint(self, prompt: str) -> str:
        """Gentle hints under the prompt: describe the sound; words a small model will ignore."""
        prompt = prompt or ""
        vocabulary = self.state.prompt_vocabulary
        known = sorted(vocabulary) if vocabulary is not None and len(vocabulary) <= MAX_LISTED_WORDS else None
        hints = [
            studio_help.sound_hint(prompt, small_vocabulary=vocabulary is not None),
            studio_help.unknown_words_hint(self.state.unknown_words(prompt), known),
        ]
        return "\n\n".join(hint for hint in hints if hint)

    def frame_choices(self, frame_rate: float, num_frames: int) -> dict:
        """New menu labels for a new frame rate, keeping the chosen count, and a note where the model was not trained
        at that rate; no change while the rate is invalid."""
        try:
            frame_rate = studio_help.real_number("frame_rate", frame_rate)
            choices = studio_help.frame_count_choices(frame_rate)
        except ValueError:
            return gr.skip()
        # A rate the model was not trained at is allowed, and said so under the length menu.
        note = studio_help.frame_rate_note(frame_rate, defaults_for_model(self.state.config.model).frame_rates)
        return gr.update(
            choices=choices, value=num_frames, info=" ".join([studio_help.FRAME_COUNT_INFO, note]).strip()
        )

    def steps_control(self, mode: str) -> dict:
        """The steps slider applies to the dev schedule only; distilled runs its fixed 8 + 3 steps."""
        return gr.update(interactive=mode == "dev")

    def audio_help(
        self, audio: str | None, audio_start_time: float, num_frames: int, frame_rate: float
    ) -> tuple[str, dict, int | None]:
        """(advice markdown, 'use N frames' button, N) for the uploaded clip and the chosen length."""
        hidden = gr.update(visible=False)
        if not audio:
            return "", hidden, None
        try:
            clip_seconds = probe_audio_duration(audio)
            start = studio_help.real_number("audio_start_time", audio_start_time)
            validation.check_audio_start_time(start)
            count = studio_help.whole_number("num_frames", num_frames)
            validation.check_num_frames(count)
            rate = studio_help.real_number("frame_rate", frame_rate)
            validation.check_frame_rate(rate)
        except ValueError as error:
            return f"**Cannot use this input:** {UserTerms().say(str(error))}", hidden, None
        message, suggested = studio_help.audio_duration_advice(clip_seconds, start, count, rate)
        if suggested is None:
            return message, hidden, None
        return message, gr.update(visible=True, value=f"Use {suggested} frames"), suggested

    def fit_length_to_clip(self, audio: str | None, audio_start_time: float, frame_rate: float) -> tuple[Any, str]:
        """(Length update, notice) for a new clip: the longest valid length it covers from the start time, up to the
        model's longest; no change (and no notice) without a clip or with inputs the audio help already flags."""
        if not audio:
            return gr.skip(), ""
        try:
            available = probe_audio_duration(audio) - studio_help.real_number("audio_start_time", audio_start_time)
            rate = studio_help.real_number("frame_rate", frame_rate)
            validation.check_frame_rate(rate)
        except ValueError:
            return gr.skip(), ""
        longest = defaults_for_model(self.state.config.model).max_num_frames
        count = longest_frames_within(available, rate, longest)
        if count is None:
            return gr.skip(), ""
        reason = "the longest this model makes" if count == longest else "the longest the clip covers"
        notice = f"Length set to **{studio_help.format_frame_count(count, rate)}** for this clip ({reason})."
        return gr.update(value=count), notice

    def video_help(self, video: str | None) -> tuple[str, Any]:
        """(notice, "use the first frames" update) for a new video: its frames, size and rate, and what the model
        needs of them. A frame count that is not 8k+1 gets the longest valid count filled in (said in the notice);
        a size off the 64 px grid names the fit options."""
        if not video:
            return "", gr.skip()
        try:
            info = probe_video(video)
        except (ValueError, FileNotFoundError) as error:
            return f"**Cannot use this video:** {UserTerms().say(str(error))}", gr.skip()
        rate = float(info.frame_rate)
        lines = [f"The video: {info.num_frames} frames at {rate:g} fps ({info.num_frames / rate:.2f} s), "
                 f"{info.width} x {info.height}."]  # fmt: skip
        frames_update = gr.update(value=None)
        below, _ = validation.nearest_valid_frame_counts(info.num_frames)
        if info.num_frames < constants.MIN_NUM_FRAMES:
            lines.append(f"It is too short: the model needs at least {constants.MIN_NUM_FRAMES} frames.")
        elif below != info.num_frames:
            lines.append(
                f"The model takes 8k+1 frames: **Use the first frames** is set to {below} "
                f"({below / rate:.2f} s); the output is then re-encoded."
            )
            frames_update = gr.update(value=below)
        multiple = constants.TWO_STAGE_SIZE_MULTIPLE
        if info.width % multiple or info.height % multiple:
            lines.append(
                f"Its size is not a multiple of {multiple} pixels: pick **Fit to the model's size** (centre-crop or "
                f"resize to {info.width // multiple * multiple} x {info.height // multiple * multiple})."
            )
        return "\n\n".join(lines), frames_update

    def use_suggested_frames(self, suggested: int | None) -> dict:
        return gr.update(value=suggested) if suggested else gr.skip()

    def image_notice(self, image: str | None, resolution: str) -> str:
        """Before the run: whether the image opens, and how much of it the centre crop keeps at this size."""
        if not image:
            return ""
        try:
            height, width = studio_help.parse_resolution(resolution)
            validation.check_size(height, width)
            opened = load_image(image, "image")
        except (ValueError, FileNotFoundError) as error:
            return f"**Cannot use this input:** {UserTerms().say(str(error))}"
        return aspect_notice(opened, height, width) or ""

    def frame_index_range(self, num_frames: int, frame_index: int) -> dict:
        """The frame-index slider spans the chosen clip (0 to num_frames - 1); an index past a shorter clip moves
        to its last frame, where the user sees it."""
        try:
            count = studio_help.whole_number("num_frames", num_frames)
            validation.check_num_frames(count)
        except ValueError:
            return gr.skip()
        last = count - 1
        if isinstance(frame_index, (int, float)) and frame_index > last:
            return gr.update(maximum=last, value=last)
        return gr.update(maximum=last)

    def lora_choices(self) -> list[dict]:
        """Fresh picker menus after files were added to or removed from the LoRA folder."""
        choices = lora_menu(self.state.lora_files())
        return [gr.update(choices=choices) for _ in range(LORA_SLOTS)]


@dataclass(frozen=True)
class _Update:
    """What one yield changes on the page; `gr.skip()` leaves a widget as it is."""

    preview_image: Any = field(default_factory=gr.skip)
    preview_audio: Any = field(default_factory=gr.skip)
    stage_video: Any = field(default_factory=gr.skip)
    final_video: Any = field(default_factory=gr.skip)
    status: Any = field(default_factory=gr.skip)
    recipe: Any = field(default_factory=gr.skip)

    @staticmethod
    def output_names(mode: Mode) -> tuple[str, ...]:
        """The tab's outputs in order: a step preview, its sound where the mode makes sound, the stage-1 clip where
        there is a stage 2, then the final mp4, the status and the recipe."""
        names = ("preview_image", "preview_audio" if mode.generates_audio else None)
        names += ("stage_video" if mode.two_stage else None, "final_video", "status", "recipe")
        return tuple(name for name in names if name is not None)

    def outputs(self, mode: Mode) -> tuple:
        return tuple(getattr(self, name) for name in self.output_names(mode))


def _status(message: str) -> str:
    return f"**{message}**"


def _window_gpu_seconds(job: GenerationRequest) -> float:
    """ZeroGPU: the estimated GPU seconds of one window of a long run (`ui.zerogpu.clip_gpu_seconds`)."""
    schedule = job.mode or AUTO_MODE
    resolution = f"{job.width}x{job.height}"
    two_stage = mode_named(job.pipeline_job).two_stage
    return clip_gpu_seconds(
        job.num_frames, resolution, schedule, job.num_inference_steps, job.modality_scale, two_stage
    )


def _requested_seconds(*args: Any, **kwargs: Any) -> int:
    """What a ZeroGPU call of `_window_group` asks for: the `gpu_seconds` it is given."""
    return kwargs["gpu_seconds"]


@dataclass(frozen=True)
class UserTerms:
    """Whose words an error is written in: the page's labels, or the API's parameter names; never a server path."""

    names: Mapping[str, str] = field(default_factory=lambda: studio_help.PAGE_LABELS)
    quote: str = '"{}"'

    def say(self, message: str) -> str:
        return in_user_terms(message, self.names, hide_paths=True, quote=self.quote)


API_TERMS = UserTerms(studio_help.API_NAMES, "`{}`")


def _terms(request: gr.Request | None, mode: Mode | None = None) -> UserTerms:
    """gradio_client marks its calls (`x-gradio-user: api`); the page's own calls get the page's labels, those of
    the mode's own inputs as its tab shows them (video to audio's `num_frames` is "Use the first frames")."""
    headers = getattr(request, "headers", None) or {}
    if headers.get("x-gradio-user") == "api":
        return API_TERMS
    own = {option.keyword: option.label for option in own_options(mode)} if mode is not None else {}
    return UserTerms({**studio_help.PAGE_LABELS, **own})


@contextmanager
def user_errors(terms: UserTerms | None = None) -> Iterator[None]:
    """Turns a ValueError (a bad input) into gr.Error with the same message in the user's terms, logged as one line;
    other failures get a clear message too (and their traceback in the log)."""
    terms = terms or UserTerms()
    try:
        yield
    except gr.Error:
        raise
    except (ValueError, FileNotFoundError) as error:
        message = terms.say(str(error))
        logger.info("Refused an input: %s", message)
        raise gr.Error(message, title="Please check the inputs", print_exception=False) from None
    except torch.OutOfMemoryError as error:
        raise gr.Error("The GPU ran out of memory. Try fewer frames or a smaller resolution.") from error
    except Exception as error:
        logger.exception("Generation failed")
        raise gr.Error(terms.say(f"Generation failed: {type(error).__name__}: {error}")) from error
