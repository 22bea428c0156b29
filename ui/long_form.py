"""Long form in the studio: the audio and text tabs run `LongFormPipeline` when asked for more than one window.

A mode of the registry with `extends_to` (audio to video, text to audio+video) takes two more inputs on its page and
endpoint: `duration_s` (seconds of output; 0 keeps one window of the chosen Length) and `prompt_timeline`
('0-10 s: ...; 10-25 s: ...'). With a duration, the run is its long-form mode's, the chosen Length being one window,
as the command line's `--duration` does. Here: those inputs checked, the notice of the windows a length makes, and
the run's events turned into what the page shows (window progress, the growing preview of finished windows, the
final or stopped mp4).
"""

import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ltx_pipeline import StageDecoded, StepPreview, constants, validation
from ltx_pipeline.audio import probe_audio_duration
from ltx_pipeline.long_form import plan_windows, shared_frames
from ltx_pipeline.media import recipe_to_json, write_mp4, write_recipe
from ltx_pipeline.modes import MODES, Mode
from ltx_pipeline.streaming_mp4 import join_mp4s
from ltx_pipeline.types import LongFormFinished, WindowFinished, WindowStarted
from ltx_pipeline.user_terms import without_paths

from . import help as studio_help
from .previews import audio_for_widget, preview_grid

logger = logging.getLogger(__name__)

LONG_FORM_PARAMETERS = ("duration_s", "prompt_timeline")
LONG_FORM_DEFAULTS = {"duration_s": 0, "prompt_timeline": ""}  # 0: one window of the chosen Length
DURATION_LABEL = "Length (s)"
DURATION_INFO = "0: one clip of the Length above; longer: made as chained windows of that Length"
TIMELINE_LABEL = "Prompt timeline"
TIMELINE_PLACEHOLDER = "0-10 s: a red ball bounces on wood; 10-25 s: a blue ball rolls on metal"
TIMELINE_INFO = "optional, for runs longer than one window: each window takes the prompt of its time range"


def extends(mode: Mode) -> bool:
    """Whether the mode's tab and endpoint take a length beyond one window (its long-form mode's)."""
    return mode.extends_to is not None


def long_form_inputs(mode: Mode, values: Mapping[str, Any], num_frames: int) -> dict[str, Any] | None:
    """The long-form pipeline's own inputs when `duration_s` asks for a length (the chosen `num_frames` being one
    window), checked; None for one clip. A prompt timeline or an image needs, or excludes, a long run: said."""
    duration = values.get("duration_s")
    timeline = values.get("prompt_timeline") or ""
    if not isinstance(timeline, str):
        raise ValueError(f"`prompt_timeline` must be text like '0-10 s: ...; 10-25 s: ...'; got {timeline!r}.")
    if duration in (None, "", 0):
        if timeline.strip():
            raise ValueError(
                "`prompt_timeline` applies to runs longer than one window: give `duration_s` (seconds) too; "
                f"got `duration_s` {duration!r}."
            )
        return None
    duration = studio_help.real_number("duration_s", duration)
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"`duration_s` must be a number of seconds > 0 (0 for one clip); got {duration:g}.")
    if values.get("image"):
        raise ValueError(
            "`image` applies to one-clip runs; a run with `duration_s` (chained windows) takes no image: "
            "remove the image or set `duration_s` to 0."
        )
    if values.get("length_from_prompt"):
        raise ValueError(
            "`length_from_prompt` picks one clip's length; a run with `duration_s` has the length it asks for: "
            "untick it or set `duration_s` to 0."
        )
    if values.get("pad_audio"):
        raise ValueError(
            "`pad_audio` applies to one-clip runs; a run with `duration_s` uses the clip as it is: "
            "untick it or set `duration_s` to 0."
        )
    return {"duration_s": duration, "prompt_timeline": timeline.strip() or None, "window_frames": num_frames}


def check_audio_limit(limit_s: Any, name: str = "`max_audio_duration_s`") -> None:
    """A studio's longest clip for a long run: a finite number of seconds, at least the long-form pipeline's floor.
    `name` is the setting as its user gives it (the config field, or `app.py`'s flag)."""
    lowest = constants.LONG_FORM_MIN_AUDIO_LIMIT_S
    if (
        isinstance(limit_s, bool)
        or not isinstance(limit_s, (int, float))
        or not math.isfinite(limit_s)
        or limit_s < lowest
    ):
        raise ValueError(
            f"{name} must be a number of seconds >= {lowest:g} (default "
            f"{constants.LONG_FORM_MAX_AUDIO_DURATION_S:g}); got {limit_s!r}."
        )


def check_audio_length(audio: str, limit_s: float = constants.LONG_FORM_MAX_AUDIO_DURATION_S) -> None:
    """A clip longer than the studio's limit (`StudioConfig.max_audio_duration_s`) is refused before anything is
    loaded, naming the limit."""
    seconds = probe_audio_duration(audio)
    if seconds > limit_s:
        minutes = f" ({limit_s / 60:g} min)" if limit_s >= 60 else ""
        raise ValueError(
            f"`audio` lasts {seconds:.1f} s, longer than this studio's limit of {limit_s:g} s{minutes} "
            f"for a long clip; cut it to at most {limit_s:g} s."
        )


def window_count(duration_s: float, num_frames: int, frame_rate: float) -> int:
    """How many windows of `num_frames` frames a clip of `duration_s` seconds is made of."""
    total = max(1, math.ceil(duration_s * frame_rate - 1e-6))
    return len(plan_windows(total, num_frames, constants.LONG_FORM_OVERLAP_LATENT_FRAMES))


def plan_notice(duration_s: Any, num_frames: Any, frame_rate: Any) -> str:
    """What a length makes, before generating: '47.3 s as 13 windows of 97 frames (4.04 s) ...'; empty for one clip
    or while an input is invalid (the run names it)."""
    try:
        duration = studio_help.real_number("duration_s", duration_s) if duration_s not in (None, "") else 0.0
        count = studio_help.whole_number("num_frames", num_frames)
        validation.check_num_frames(count)
        rate = studio_help.real_number("frame_rate", frame_rate)
        validation.check_frame_rate(rate)
    except ValueError:
        return ""
    if duration <= 0 or not math.isfinite(duration):
        return ""
    windows = window_count(duration, count, rate)
    shared = shared_frames(constants.LONG_FORM_OVERLAP_LATENT_FRAMES)
    return (
        f"**{duration:.2f} s as {windows} window{'s' if windows != 1 else ''}** of {count} frames "
        f"({count / rate:.2f} s each, the Length above); each window continues the last {shared} frames of the one "
        "before. Progress shows the window in work, and the finished windows play as they come."
    )


def clip_length(audio: str | None, audio_start_time: Any, frame_rate: Any, window_frames: int) -> tuple[Any, str]:
    """(`duration_s` update, notice) for a new clip: longer than one window of the model's length, the whole clip from
    the start time is the default (floored to 0.01 s so it fits), with its length and window count; else 0 (one clip).
    No change while the clip or the other inputs are invalid (the audio help says why)."""
    if not audio:
        return gr.update(value=0), ""
    try:
        start = studio_help.real_number("audio_start_time", audio_start_time)
        rate = studio_help.real_number("frame_rate", frame_rate)
        validation.check_frame_rate(rate)
        available = probe_audio_duration(audio) - start
    except ValueError:
        return gr.skip(), ""
    if available * rate <= window_frames:
        return gr.update(value=0), ""
    duration = math.floor(available * 100) / 100
    notice = (
        f"The clip lasts **{available:.2f} s** from {start:g} s, longer than one window: the whole clip is made, as "
        f"**{window_count(duration, window_frames, rate)} windows** of {window_frames} frames. Set **Length (s)** to "
        "0 for one clip."
    )
    return gr.update(value=duration), notice


@dataclass
class LongFormRun:
    """What the page shows of one long run, updated event by event; the studio's files named by `new_path`."""

    job: str  # the tab's API name
    seed: int
    new_path: Callable[..., Path]  # StudioState.new_output_path
    progress: Callable
    two_stage: bool = True
    window: int = 0
    total_windows: int = 0
    parts: list[Path] = field(default_factory=list)  # each finished window as its own short mp4
    preview: str | None = None  # the finished windows so far, joined

    def on_event(self, event: Any) -> dict[str, Any] | None:
        """The page fields (of the tab's outputs, by name) an event changes; None for events it does not show."""
        if isinstance(event, WindowStarted):
            self.window, self.total_windows = event.window, event.total_windows
            self.progress((event.window - 1, event.total_windows), desc=self._where())
            span = f"{event.start_s:.1f}-{event.end_s:.1f} s"
            return {"status": _status(f"{self._where()} ({span}): {event.prompt[:80]}")}
        if isinstance(event, StepPreview):
            stages = 2 if self.two_stage else 1
            label = f"{self._where()} - stage {event.stage}/{stages} - step {event.step}/{event.total_steps}"
            self.progress((self.window - 1, self.total_windows), desc=label)
            fields = {
                "preview_image": preview_grid(event.video),
                "status": _status(f"{label} - {event.elapsed_s:.1f} s"),
            }
            if event.audio is not None:
                fields["preview_audio"] = audio_for_widget(event.audio)
            return fields
        if isinstance(event, WindowFinished):
            return {
                "stage_video": self._grown(event),
                "status": _status(
                    f"{self._where()} finished at {event.elapsed_s:.1f} s: {event.written_s:.2f} s so far"
                ),
            }
        if isinstance(event, StageDecoded):
            return None
        if isinstance(event, LongFormFinished):
            return self.finished(event)
        return None

    def _where(self) -> str:
        return f"Window {self.window} of {self.total_windows}"

    def _grown(self, event: WindowFinished) -> dict:
        """The growing preview: the finished windows so far, each written once, joined without re-encoding."""
        part = self.new_path(f"{self.job}-window{event.window}", stage=True)
        self.parts.append(write_mp4(part, event.frames, event.audio, event.frame_rate))
        joined = join_mp4s(self.parts, self.new_path(f"{self.job}-so-far", stage=True))
        if self.preview is not None:  # the page has its own copy (gradio caches each output it is sent)
            Path(self.preview).unlink(missing_ok=True)
        self.preview = str(joined)
        label = f"Finished so far: window{'s 1-' if event.window > 1 else ' '}{event.window} of {event.total_windows}"
        return gr.update(value=str(joined), label=f"{label} ({event.written_s:.1f} s)")

    def remove_parts(self) -> None:
        """The per-window files, once the run is over (the joined preview stays, for the last update)."""
        for part in self.parts:
            part.unlink(missing_ok=True)

    def finished(self, event: LongFormFinished) -> dict[str, Any]:
        """The final (or stopped) mp4 and its recipe, which names the user's files by name only."""
        recipe = without_paths(event.recipe)
        write_recipe(event.path, recipe)  # the file beside the mp4 too: no server path in it
        recipe = dict(json.loads(recipe_to_json(recipe)), output_file=event.path.name,
                      recipe_file=event.recipe_path.name)  # fmt: skip
        if event.stopped:
            finished = recipe.get("stopped_after_window", self.window)
            message = (
                f"Stopped after window {finished} of {self.total_windows}: {event.path.name} holds the first "
                f"{event.duration_s:.2f} s (the recipe says where it stopped)."
            )
        else:
            message = (
                f"Done in {event.elapsed_s:.1f} s - {self.total_windows} windows, {event.duration_s:.2f} s - "
                f"seed {self.seed} - {event.path.name}"
            )
        return {"final_video": str(event.path), "status": _status(message), "recipe": recipe}


def long_form_events(events: Iterator[Any], run: LongFormRun, stopped: Callable[[], bool],
                     on_stopped: Callable[[dict[str, Any]], None]) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The page fields of each event of a long run. Stop cancels the page's event, which closes this generator:
    the run then ends after its step and its finished windows are still written (`on_stopped` gets the mp4)."""
    last: dict[str, Any] | None = None
    try:
        for event in events:
            fields = run.on_event(event)
            if isinstance(event, LongFormFinished):
                last = fields
                if event.stopped:
                    on_stopped(fields)
            if fields is not None:
                yield fields
    except GeneratorExit:
        if stopped():
            for event in events:  # the pipeline was cancelled: this ends after the current step
                if isinstance(event, LongFormFinished):
                    on_stopped(run.on_event(event))
        raise
    if last is None and not stopped():
        raise RuntimeError("the pipeline's stream ended before the final video")
    if last is None:
        yield {"status": _status("Stopped before the first window finished; nothing was written.")}


def long_mode(mode: Mode) -> Mode:
    """The long-form mode a tab's run becomes with a `duration_s`."""
    return MODES[mode.extends_to]


def _status(message: str) -> str:
    return f"**{message}**"


@dataclass(frozen=True)
class LongFormControls:
    """A tab's inputs for a length beyond one window: the length, what it makes, and the prompt timeline."""

    duration: gr.Number
    notice: gr.Markdown
    timeline: gr.Textbox

    def inputs(self) -> list[gr.components.Component]:
        """In the order of `LONG_FORM_PARAMETERS`."""
        return [self.duration, self.timeline]


def long_form_controls(prefix: str) -> LongFormControls:
    """The widgets of `LongFormControls`, labelled as the errors name them."""
    duration = gr.Number(value=0, label=DURATION_LABEL, info=DURATION_INFO, minimum=0, elem_id=f"{prefix}-duration")
    notice = gr.Markdown(elem_id=f"{prefix}-windows-notice")
    timeline = gr.Textbox(
        value="",
        label=TIMELINE_LABEL,
        info=TIMELINE_INFO,
        placeholder=TIMELINE_PLACEHOLDER,
        lines=2,
        elem_id=f"{prefix}-timeline",
    )
    return LongFormControls(duration, notice, timeline)
