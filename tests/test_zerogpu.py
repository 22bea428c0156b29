"""Long runs on ZeroGPU: the studio's page handler with a stand-in for the third-party `spaces` package, whose
`GPU(duration=...)` records what each call asks for, refuses a call over ZeroGPU's 300 s and pickles what crosses
the call (its arguments in, every item it yields out), as the forked GPU worker does. Our own parts are real: the
handlers over the embedded model at 64 x 64 px, on the CPU."""

import functools
import pickle
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import gradio as gr
import numpy as np
import pytest

from ltx_pipeline.media import probe_mp4
from ltx_pipeline.modes import MODES
from ltx_pipeline.pipeline_long_form import LongFormPipeline, LongFormWriter
from ltx_pipeline.types import LongFormFinished, StepPreview, WindowFinished, WindowStarted
from tests.test_long_form_studio import FRAME_RATE, SETTINGS, WINDOW  # the same page request, one window of 17 frames
from ui import StudioConfig, StudioState
from ui.handlers import StudioHandlers, page_parameters
from ui.long_form import window_count
from ui.zerogpu import (
    MAX_DURATION_S,
    clip_gpu_seconds,
    duration_for,
    group_seconds,
    on_gpu,
    windows_in_calls,
    windows_in_worker,
    windows_per_call,
)

ZERO_GPU_LIMIT_S = 300  # what a ZeroGPU call may ask for, as the `spaces` package refuses it
# 3.4 s is 85 frames: 10 windows of about 30 s of estimated GPU each (the fixed overhead with its safety factor), so
# more than one call's 300 s.
LONG_S = 3.4
SHORTER_LONG_S = 1.6  # 40 frames: 4 windows


class GpuCall:
    """One call through the stand-in: what it asked for and what it yielded (by type name)."""

    def __init__(self, seconds: int):
        self.seconds = seconds
        self.yielded: list[str] = []

    @property
    def windows(self) -> int:
        return self.yielded.count("WindowFinished")


def fake_spaces(calls: list[GpuCall]) -> types.ModuleType:
    """A `spaces` module: `config.Config.zero_gpu` true, `GPU(duration=...)` as described above."""
    spaces, config = types.ModuleType("spaces"), types.ModuleType("spaces.config")
    config.Config = type("Config", (), {"zero_gpu": True})
    spaces.config = config

    def gpu(duration: Callable[..., int] | int = 60) -> Callable:
        def decorate(task: Callable[..., Iterator]) -> Callable[..., Iterator]:
            @functools.wraps(task)
            def call(*args, **kwargs) -> Iterator:
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                if seconds > ZERO_GPU_LIMIT_S:
                    raise gr.Error(f"ZeroGPU: a call may ask for at most {ZERO_GPU_LIMIT_S} s; asked {seconds} s")
                record = GpuCall(seconds)
                calls.append(record)
                args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
                for item in task(*args, **kwargs):
                    item = pickle.loads(pickle.dumps(item))
                    record.yielded.append(type(item).__name__)
                    yield item

            return call

        return decorate

    spaces.GPU = gpu
    return spaces


@pytest.fixture
def gpu_calls(monkeypatch: pytest.MonkeyPatch) -> list[GpuCall]:
    calls: list[GpuCall] = []
    spaces = fake_spaces(calls)
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.setitem(sys.modules, "spaces.config", spaces.config)
    return calls


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StudioState:
    # A work limit far above the CPU default: the refusal of a window too big for one call comes first.
    config = StudioConfig(output_dir=tmp_path_factory.mktemp("outputs"), max_pixel_frames=10**9)
    state = StudioState(config)
    state.load()
    return state


def page_handler(handlers: StudioHandlers) -> Callable[..., Iterator[tuple]]:
    """The text tab's Generate as the page wires it (`ui.layout`)."""
    mode = MODES["t2av"]
    return on_gpu(handlers.generation(mode), duration_for(mode, page_parameters(mode)))


def final_outputs(run: Iterator[tuple]) -> tuple:
    """The last yield: what an API caller gets."""
    return list(run)[-1]


def frames_and_sound(path: str) -> tuple[np.ndarray, np.ndarray]:
    with av.open(path) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    with av.open(path) as container:
        sound = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=-1)
    return frames, sound


def record_windows(monkeypatch: pytest.MonkeyPatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every finished window's frames and sound as the studio process's mp4 writer receives them, in order."""
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    on_event = LongFormWriter.on_event

    def recording(writer: LongFormWriter, event) -> None:
        if isinstance(event, WindowFinished):
            seen.append((np.array(event.frames), event.audio.waveform.numpy().copy()))
        on_event(writer, event)

    monkeypatch.setattr(LongFormWriter, "on_event", recording)
    return seen


def without_timings(recipe: dict) -> dict:
    return {
        key: value
        for key, value in recipe.items()
        if key not in ("timings_s", "window_seconds", "output_file", "recipe_file")
    }


@pytest.mark.slow  # 16 s: two whole runs through the page; the grouped windows are compared bit for bit in
# tests/test_long_form.py and the calls' sound parts below, by default
def test_a_long_run_goes_as_calls_that_each_fit_and_makes_the_clip_one_run_makes(
    state: StudioState, gpu_calls: list[GpuCall], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four windows, with ZeroGPU's limit lowered to what three windows ask for (the run is then more than one
    # call's worth), to keep the test short; `test_calls_hold_as_many_windows_as_fit` checks the real 300 s.
    window_s = clip_gpu_seconds(WINDOW, "64x64", "distilled", 30, 3.0)
    limit = int(3 * window_s) + 1
    generated = record_windows(monkeypatch)
    monkeypatch.setattr("ui.zerogpu.MAX_DURATION_S", limit)
    monkeypatch.setattr(sys.modules[__name__], "ZERO_GPU_LIMIT_S", limit)
    handlers = StudioHandlers(state)
    *_, final_video, status, recipe = final_outputs(page_handler(handlers)(**SETTINGS, duration_s=SHORTER_LONG_S))
    windows = window_count(SHORTER_LONG_S, WINDOW, FRAME_RATE)
    assert windows == 4 and "Done" in status and f"{windows} windows" in status
    assert windows * window_s > limit  # more than one call's worth
    assert [call.windows for call in gpu_calls] == [3, 1]
    for call in gpu_calls:
        assert call.seconds <= limit
        assert call.windows * window_s <= call.seconds  # each call asks for all its windows need
    # The same request off ZeroGPU: one run in this process. Same frames, same sound, same recipe.
    monkeypatch.delitem(sys.modules, "spaces")
    monkeypatch.delitem(sys.modules, "spaces.config")
    *_, single_video, _, single_recipe = final_outputs(
        page_handler(StudioHandlers(state))(**SETTINGS, duration_s=SHORTER_LONG_S)
    )
    assert len(gpu_calls) == 2  # no call without the package
    # The frames and sound as generated, window by window: bit for bit. (Not the mp4s' decoded frames: two encodes of
    # the same frames may differ, by up to 1.48 levels in a frame's mean on the CI machine, as the encoder's threads
    # round a pixel.)
    zero_gpu, single = generated[:windows], generated[windows:]
    assert len(zero_gpu) == len(single) == windows
    for (frames, sound), (single_frames, single_sound) in zip(zero_gpu, single, strict=True):
        np.testing.assert_array_equal(frames, single_frames)
        np.testing.assert_array_equal(sound, single_sound)
    assert probe_mp4(final_video).num_frames == probe_mp4(single_video).num_frames == 40
    np.testing.assert_array_equal(frames_and_sound(final_video)[1], frames_and_sound(single_video)[1])
    assert without_timings(recipe) == without_timings(single_recipe)
    assert recipe["windows"] == windows and recipe["stopped"] is False


@pytest.mark.slow  # 10 windows on the CPU; the stop file's round trip is tested at once below
def test_progress_and_stop_carry_across_calls(state: StudioState, gpu_calls: list[GpuCall]) -> None:
    """Stop in the second call's window: it ends after its step, the nine finished windows make the mp4."""
    handlers = StudioHandlers(state)
    run = page_handler(handlers)(**SETTINGS, duration_s=LONG_S)
    statuses = []
    for outputs in run:
        statuses.append(outputs[4])
        if isinstance(outputs[4], str) and "Window 10 of 10 - stage 1/2 - step 2/8" in outputs[4]:
            break
    assert any("Window 3 of 10 - stage 2/2 - step 1/3" in str(status) for status in statuses)
    assert any("Window 9 of 10 finished" in str(status) for status in statuses)
    assert len(gpu_calls) == 2  # the stop came in the second call
    handlers.stop("text_to_av")
    run.close()  # what gradio's cancel does
    status, final_video, recipe = handlers.stopped_with_file("text_to_av")
    assert "Stopped after window 9 of 10" in status
    assert probe_mp4(final_video).num_frames == WINDOW + 8 * 8
    assert recipe["stopped"] is True and recipe["stopped_after_window"] == 9
    assert recipe["written_s"] == pytest.approx((WINDOW + 64) / FRAME_RATE)
    assert not list(Path(final_video).parent.glob("*.stop"))
    assert handlers.stopped("text_to_av").startswith("**Stopped. Ready")


def test_a_window_too_big_for_one_call_is_refused_before_any_call(
    state: StudioState, gpu_calls: list[GpuCall]
) -> None:
    """1536 x 1024 at 257 frames with 60 dev steps needs far more than 300 s for one window: said in the page's words
    before anything runs."""
    handlers = StudioHandlers(state)
    assert clip_gpu_seconds(257, "1536x1024", "dev", 60, 3.0) > 1.5 * MAX_DURATION_S
    request = {**SETTINGS, "num_frames": 257, "resolution": "1536x1024", "mode": "dev", "duration_s": 30.0}
    request["num_inference_steps"] = 60
    with pytest.raises(gr.Error) as refused:
        list(page_handler(handlers)(**request))
    message = refused.value.message
    assert message.startswith('"Length" 257 at "Resolution" 1536x1024 needs about')
    assert "more than the 300 s a ZeroGPU call may last" in message and not gpu_calls


def test_one_clip_stays_one_call(state: StudioState, gpu_calls: list[GpuCall]) -> None:
    handlers = StudioHandlers(state)
    *_, final_video, status, _ = final_outputs(page_handler(handlers)(**SETTINGS))
    assert "Done" in status and probe_mp4(final_video).num_frames == WINDOW
    assert len(gpu_calls) == 1 and gpu_calls[0].yielded[-1] == "tuple"  # the page's outputs, from the worker


def test_calls_hold_as_many_windows_as_fit() -> None:
    # Ten minutes at 768 x 512: every call within the limit, together all the windows.
    window_s = clip_gpu_seconds(97, "768x512", "distilled", 30, 3.0)
    windows = window_count(600.0, 97, 24.0)
    per_call = windows_per_call(window_s, windows)
    assert per_call * window_s <= MAX_DURATION_S < (per_call + 1) * window_s
    assert group_seconds(per_call, window_s) <= MAX_DURATION_S
    assert windows_per_call(window_s, 2) == 2 and group_seconds(1, 5.0) == 30  # at least the minimum


def crossing(value):
    """`value` as the other side of a ZeroGPU call gets it: pickled."""
    return pickle.loads(pickle.dumps(value))


def test_the_studio_s_stop_reaches_the_worker_through_its_stop_file(tiny_components, tmp_path: Path) -> None:
    """The worker's pipeline never sees the studio's Stop flag (another process): the stop file ends its call after
    the step, and no further call starts. Tiny components, 4 windows at an estimate of 150 s each: 2 calls."""
    worker_pipeline = LongFormPipeline(**tiny_components)
    request = {"prompt": "a red ball bounces", "output": str(tmp_path / "long.mp4"), "duration_s": 2.0}
    request |= {"height": 64, "width": 64, "frame_rate": FRAME_RATE, "window_frames": 17, "overlap_latent_frames": 1}
    asked = []

    def gpu_windows(*, plan, resume, end, gpu_seconds, stop_file, **request):
        asked.append(gpu_seconds)
        plan, resume = crossing((plan, resume))
        if plan is None:
            plan = worker_pipeline.plan_run(**request)
            yield crossing(plan)
        for event in windows_in_worker(worker_pipeline, plan, resume, end, stop_file):
            yield crossing(event)

    stop, events = threading.Event(), []
    for event in windows_in_calls(gpu_windows, request, 4, 150.0, tmp_path / "long.stop", stop.is_set):
        events.append(event)
        if isinstance(event, StepPreview) and sum(isinstance(seen, WindowStarted) for seen in events) == 3:
            stop.set()  # in window 3, the second call's first
    assert asked == [300, 300]
    finished = events[-1]
    assert isinstance(finished, LongFormFinished) and finished.stopped
    assert [event.window for event in events if isinstance(event, WindowFinished)] == [1, 2]
    starts = [index for index, event in enumerate(events) if isinstance(event, WindowStarted)]
    window_3 = events[starts[2] :]
    steps = sum(isinstance(event, StepPreview) for event in window_3)
    assert steps <= 2  # of 11: it ended after the step in work when the worker saw the file
    assert probe_mp4(finished.path).num_frames == 33 and finished.recipe["stopped_after_window"] == 2
    assert not (tmp_path / "long.stop").exists()


def test_a_long_audio_run_sends_each_call_only_the_sound_its_windows_read(tiny_components, tmp_path: Path) -> None:
    """The studio holds the whole song; a call after the first is sent the part its windows read (from its first
    window's start; the last call to the song's end), not the whole clip again. 4 windows, 2 per call."""
    from tests.test_long_form import click_track

    worker_pipeline = LongFormPipeline(**tiny_components)
    request = {"prompt": "a red ball bounces", "output": str(tmp_path / "long.mp4"), "audio": click_track(2.0)}
    request |= {"height": 64, "width": 64, "frame_rate": FRAME_RATE, "window_frames": 17, "overlap_latent_frames": 1}
    sent, planned = [], []

    def gpu_windows(*, plan, resume, end, gpu_seconds, stop_file, **request):
        if plan is not None:  # the samples cross, not the whole clip's storage (a view would pickle all of it)
            waveform = plan.clip.audio.waveform
            assert len(pickle.dumps(plan.clip)) < waveform.numel() * waveform.element_size() + 1024
        plan, resume = crossing((plan, resume))
        sent.append(None if plan is None else (plan.clip.start, plan.clip.audio.waveform.shape[-1]))
        if plan is None:
            plan = worker_pipeline.plan_run(**request)
            planned.append(plan)
            yield crossing(plan)
        for event in windows_in_worker(worker_pipeline, plan, resume, end, stop_file):
            yield crossing(event)

    events = list(windows_in_calls(gpu_windows, request, 4, 150.0, tmp_path / "long.stop", lambda: False))
    assert isinstance(events[-1], LongFormFinished) and not events[-1].stopped
    assert [event.window for event in events if isinstance(event, WindowFinished)] == [1, 2, 3, 4]
    (whole,) = planned
    window_3 = whole.windows[2]
    start = round(window_3.start_frame / FRAME_RATE * whole.clip.sampling_rate)
    assert sent == [None, (start, whole.clip.audio.waveform.shape[-1] - start)]
