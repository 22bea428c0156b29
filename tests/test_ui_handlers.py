"""The studio's handlers as plain functions, over the embedded tiny model on CPU (64 x 64 px, 9 frames)."""

import logging
import math
import re
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from ltx_pipeline import validation
from ltx_pipeline.media import probe_mp4
from ltx_pipeline.model_defaults import defaults_for_model
from ltx_pipeline.tiny import RANDOM_MODEL_LABEL
from ui import help as studio_help
from ui.handlers import StudioHandlers, build_request, pick_loras
from ui.state import AUDIO_TO_VIDEO, EXAMPLES_DIR, STUDIO_MODES, TEXT_TO_AV, StudioConfig, StudioState
from ui.zerogpu import estimate_gpu_seconds, on_gpu

CLICK_TRACK = EXAMPLES_DIR / "audio" / "click_track_120bpm.wav"
FRAME_RATE = 25.0
NUM_FRAMES = 9  # 0.36 s at 25 fps

# Widget values in the order the handlers take them after their own (prompt ... modality_scale).
T2AV_WIDGETS = {
    "prompt": "a red ball drops on a wooden floor with a loud thud",
    "negative_prompt": "",
    "num_frames": NUM_FRAMES,
    "frame_rate": FRAME_RATE,
    "resolution": "64x64",
    "seed": 7,
    "randomize_seed": False,
    "mode": "distilled",
    "num_inference_steps": 30,
    "modality_scale": 3.0,
}
A2V_WIDGETS = {"audio": str(CLICK_TRACK), "audio_start_time": 0.0, "pad_audio": False, **T2AV_WIDGETS}


def is_skip(value: object) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1


def without_heartbeats(updates) -> list:
    """A run's updates less the no-change heartbeats it yields while a step computes (`ui.pump`)."""
    return [update for update in updates if not all(is_skip(value) for value in update)]


def next_update(run) -> tuple:
    """The run's next update that changes something (heartbeats skipped)."""
    return next(update for update in run if not all(is_skip(value) for value in update))


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StudioState:
    studio = StudioState(StudioConfig(output_dir=tmp_path_factory.mktemp("outputs")))
    studio.load()
    return studio


@pytest.fixture(scope="module")
def handlers(state: StudioState) -> StudioHandlers:
    return StudioHandlers(state)


def write_clip(path: Path, seconds: float, sampling_rate: int = 16_000, channels: int = 1) -> Path:
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * time)
    sf.write(path, np.repeat(tone[:, None], channels, axis=1).astype(np.float32), sampling_rate, subtype="PCM_16")
    return path


# ---- streaming ------------------------------------------------------------------------------------------------------


def test_text_to_av_streams_step_previews_then_stage_1_then_final(handlers: StudioHandlers) -> None:
    updates = list(handlers.text_to_av(**T2AV_WIDGETS))
    preview_image, preview_audio, stage_video, final_video, status, recipe = zip(*updates, strict=True)

    assert final_video[0] is None and stage_video[0] is None  # the first yield clears the previous run
    step_indices = [index for index, image in enumerate(preview_image[:-1]) if isinstance(image, np.ndarray)]
    stage_index = next(index for index, video in enumerate(stage_video[:-1]) if isinstance(video, str))
    final_indices = [index for index, video in enumerate(final_video) if isinstance(video, str)]
    assert final_indices == [len(updates) - 1]
    # 8 distilled stage-1 steps, then the decoded stage 1, then 3 stage-2 steps, then the final mp4.
    assert len(step_indices) == 8 + 3
    assert step_indices[7] < stage_index < step_indices[8]
    assert "Stage 1/2 - step 1/8" in status[step_indices[0]] and "Stage 2/2 - step 3/3" in status[step_indices[-1]]
    for index in step_indices:
        sampling_rate, waveform = preview_audio[index]
        assert waveform.dtype == np.int16 and sampling_rate > 0
        assert preview_image[index].dtype == np.uint8 and preview_image[index].shape[0] >= 96
    for index in range(1, len(updates) - 1):  # between the first and last yield, only what changed is sent
        assert is_skip(final_video[index]) and is_skip(recipe[index])

    stage_1 = probe_mp4(stage_video[stage_index])
    assert (stage_1.width, stage_1.height, stage_1.num_frames) == (32, 32, NUM_FRAMES)
    final = probe_mp4(final_video[-1])
    assert (final.width, final.height, final.num_frames) == (64, 64, NUM_FRAMES)
    assert final.audio_duration_s == pytest.approx(NUM_FRAMES / FRAME_RATE, abs=0.03)
    assert recipe[-1]["seed"] == 7 and recipe[-1]["num_frames"] == NUM_FRAMES
    assert "seed 7" in status[-1]
    # The last yield carries every output, so an API caller gets the stage-1 clip and a preview too.
    assert stage_video[-1] == stage_video[stage_index] and isinstance(preview_image[-1], np.ndarray)


def test_audio_to_video_keeps_the_users_audio(handlers: StudioHandlers) -> None:
    updates = list(handlers.audio_to_video(**A2V_WIDGETS))
    preview_image, stage_video, final_video, status, recipe = zip(*updates, strict=True)
    assert sum(isinstance(image, np.ndarray) for image in preview_image[:-1]) == 8 + 3
    assert isinstance(final_video[-1], str) and isinstance(stage_video[-1], str)
    final = probe_mp4(final_video[-1])
    assert final.num_frames == NUM_FRAMES
    assert final.audio_duration_s == pytest.approx(NUM_FRAMES / FRAME_RATE, abs=0.03)
    assert recipe[-1]["pipeline"] == "A2VidPipelineTwoStage" and recipe[-1]["audio_start_time"] == 0.0


def test_many_channel_high_rate_audio_is_accepted(handlers: StudioHandlers, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "surround.wav", 1.0, sampling_rate=96_000, channels=8)
    final_video = list(handlers.audio_to_video(**{**A2V_WIDGETS, "audio": str(clip)}))[-1][2]
    info = probe_mp4(final_video)
    assert info.audio_channels == 8 and info.audio_duration_s == pytest.approx(NUM_FRAMES / FRAME_RATE, abs=0.03)


def test_ten_minute_clip_uses_only_the_cut_from_the_start_time(handlers: StudioHandlers, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "long.wav", 600.0, sampling_rate=8_000)
    widgets = {**A2V_WIDGETS, "audio": str(clip), "audio_start_time": 300.0}
    updates = list(handlers.audio_to_video(**widgets))
    assert probe_mp4(updates[-1][2]).audio_duration_s == pytest.approx(NUM_FRAMES / FRAME_RATE, abs=0.03)
    message, suggested = handlers.audio_help(str(clip), 300.0, NUM_FRAMES, FRAME_RATE)[::2]
    assert "300.00 s of audio" in message and "longest video" in message and suggested is None


def test_a_long_run_from_a_clip_over_the_studios_limit_is_refused_naming_it(tmp_path: Path) -> None:
    # A studio limited to 2 s: nothing is loaded, the clip is refused before any work.
    state = StudioState(StudioConfig(output_dir=tmp_path / "outputs", max_audio_duration_s=2.0))
    clip = write_clip(tmp_path / "three_seconds.wav", 3.0, sampling_rate=8_000)
    with pytest.raises(gr.Error) as error:
        list(StudioHandlers(state).audio_to_video(**{**A2V_WIDGETS, "audio": str(clip)}, duration_s=2.5))
    assert "lasts 3.0 s, longer than this studio's limit of 2 s for a long clip" in error.value.message
    assert not state.is_loaded
    with pytest.raises(ValueError, match=r"`max_audio_duration_s` must be a number of seconds >= 1 .*; got 0\.5\."):
        StudioConfig(output_dir=tmp_path, max_audio_duration_s=0.5)


def test_a_start_image_conditions_the_first_frame(handlers: StudioHandlers, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "red.png"
    Image.new("RGB", (96, 64), (220, 30, 30)).save(image)
    recipe = list(handlers.text_to_av(**T2AV_WIDGETS, image=str(image), image_strength=0.8))[-1][5]
    assert len(recipe["images"]) == 1 and recipe["images"][0]["frame_index"] == 0
    assert recipe["images"][0]["strength"] == 0.8
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    with pytest.raises(gr.Error, match="image"):
        list(handlers.audio_to_video(**A2V_WIDGETS, image=str(not_an_image)))


def test_an_image_at_a_later_frame_reaches_the_pipeline_as_a_keyframe(
    handlers: StudioHandlers, tmp_path: Path
) -> None:
    from PIL import Image

    image = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (20, 40, 220)).save(image)
    widgets = {**A2V_WIDGETS, "image": str(image), "image_strength": 1.0, "image_frame_index": NUM_FRAMES - 1}
    recipe = list(handlers.audio_to_video(**widgets))[-1][4]
    # The recipe names the image by its file name, not by where the server keeps it.
    assert recipe["images"] == [{"image": "blue.png", "frame_index": NUM_FRAMES - 1, "strength": 1.0, "notice": None}]


def test_a_wide_image_is_announced_before_the_run_and_after_it(handlers: StudioHandlers, tmp_path: Path) -> None:
    from PIL import Image

    from ltx_pipeline.conditioning import aspect_notice

    wide = Image.new("RGB", (256, 64), (200, 200, 20))
    wide.save(tmp_path / "wide.png")
    notice = aspect_notice(wide, 64, 64)
    assert notice and "25%" in notice
    assert handlers.image_notice(str(tmp_path / "wide.png"), "64x64") == notice
    assert handlers.image_notice(str(tmp_path / "wide.png"), "256x64") == ""  # same shape: nothing cropped
    assert handlers.image_notice(None, "64x64") == ""
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert handlers.image_notice(str(tmp_path / "broken.png"), "64x64").startswith("**Cannot use this input:**")
    updates = list(handlers.text_to_av(**T2AV_WIDGETS, image=str(tmp_path / "wide.png")))
    assert updates[-1][5]["images"][0]["notice"] == notice
    assert "Done in" in updates[-1][4] and notice in updates[-1][4]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"image_frame_index": NUM_FRAMES},
            f'"Frame index" must be a frame of the clip, 0 to {NUM_FRAMES - 1}; got {NUM_FRAMES}.',
        ),
        ({"image_frame_index": 2.5}, '"Frame index" must be a whole number; got 2.5.'),
        ({"image_strength": 1.5}, '"Image strength" must be a number from 0 to 1; got 1.5.'),
        ({"image_strength": -0.1}, '"Image strength" must be a number from 0 to 1; got -0.1.'),
        ({"image": "missing.png"}, '"Image" file not found: missing.png'),
    ],
)
def test_bad_image_settings_give_the_pipelines_message_before_loading(
    handlers: StudioHandlers, state: StudioState, tmp_path: Path, overrides: dict, message: str
) -> None:
    from PIL import Image

    image = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(image)
    with pytest.raises(gr.Error) as error:
        next(handlers.text_to_av(**{**T2AV_WIDGETS, "image": str(image), **overrides}))
    assert error.value.message == message
    assert state.idle_slots == state.config.concurrency_limit


def test_frame_index_slider_spans_the_chosen_clip(handlers: StudioHandlers) -> None:
    assert handlers.frame_index_range(97, 0) == gr.update(maximum=96)
    assert handlers.frame_index_range(17, 40) == gr.update(maximum=16, value=16)  # moved where the user sees it
    assert is_skip(handlers.frame_index_range(100, 0))  # an invalid length is explained by the run, not here


# ---- stop -----------------------------------------------------------------------------------------------------------


def test_stop_ends_the_run_within_one_step_and_leaves_the_app_ready(
    handlers: StudioHandlers, state: StudioState
) -> None:
    run = handlers.text_to_av(**T2AV_WIDGETS)
    next_update(run)  # the clearing yield
    first_step = next_update(run)
    assert "Stage 1/2 - step 1/8" in first_step[4]
    assert state.is_running("local", TEXT_TO_AV)
    # Another session's Stop must not end this run.
    assert "Stopped" not in handlers.stop("text_to_av", gr.Request(session_hash="someone-else"))
    assert "Stopped" not in handlers.stop("audio_to_video", None)
    assert state.is_running("local", TEXT_TO_AV)
    assert "Stopped" in handlers.stop("text_to_av", None)
    rest = without_heartbeats(run)
    assert len(rest) == 1, "the run must end at the next step"
    assert "Stopped at stage 1, step 1" in rest[0][4] and is_skip(rest[0][3])
    assert not state.is_running("local", TEXT_TO_AV) and state.idle_slots == state.config.concurrency_limit
    assert "Stopped" not in handlers.stop("text_to_av", None)
    # Ready for the next run: it streams from its first step again.
    next_run = handlers.audio_to_video(**A2V_WIDGETS)
    next_update(next_run)
    assert "Stage 1/2 - step 1/8" in next_update(next_run)[3]
    next_run.close()  # returns at once; the run lets go of its pipeline in its own thread, within a step
    deadline = time.monotonic() + 30
    while state.idle_slots < state.config.concurrency_limit:
        assert time.monotonic() < deadline, "the closed run still holds the pipeline"
        time.sleep(0.05)


def test_stop_from_another_thread_while_a_step_runs(handlers: StudioHandlers, state: StudioState) -> None:
    run = handlers.text_to_av(**T2AV_WIDGETS)
    next_update(run)
    next_update(run)
    stopper = threading.Timer(0.01, handlers.stop, args=("text_to_av", None))
    stopper.start()
    rest = without_heartbeats(run)  # the pipeline's own cancel flag ends the step loop
    stopper.join()
    assert all(not isinstance(update[3], str) for update in rest)  # no final video
    assert "Stopped at" in rest[-1][4]
    assert state.idle_slots == state.config.concurrency_limit


def test_the_page_says_ready_after_stop_only_once_the_run_let_go(handlers: StudioHandlers, state: StudioState) -> None:
    run = handlers.text_to_av(**T2AV_WIDGETS)
    next_update(run)
    next_update(run)
    assert "Ready" not in handlers.stop("text_to_av", None)
    finisher = threading.Timer(0.5, lambda: list(run))  # the stopped run ends its step a moment later
    finisher.start()
    started = time.monotonic()
    assert "Stopped. Ready for the next run." in handlers.stopped("text_to_av", None)
    assert time.monotonic() - started >= 0.4 and not state.is_running("local", TEXT_TO_AV)
    finisher.join()
    assert "Ready for the next run." in handlers.stopped("audio_to_video", None)  # nothing was running there


# ---- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("widget", "value", "message"),
    [
        ("num_frames", 100, '"Length" must be 8k+1 and at least 9 (nearest: 97 or 105); got 100.'),
        ("num_frames", "97.5", "\"Length\" must be a whole number; got '97.5'."),
        ("prompt", "x" * 5_000, '"Prompt" must be at most 4000 characters; got 5000 characters.'),
        ("prompt", "   ", '"Prompt" must describe the clip; got an empty prompt.'),
        ("resolution", "big", '"Resolution" must be WIDTHxHEIGHT'),
        ("resolution", "100x64", '"Resolution (width)" must be a positive multiple of 64 pixels'),
        ("frame_rate", 0, '"Frame rate (fps)" must be a number from 1 to 60 frames per second; got 0.0.'),
        ("seed", -1, '"Seed" must be an integer from 0 to 2**63 - 1; got -1.'),
        ("mode", "fast", "\"Mode\" must be one of 'auto', 'distilled', 'dev'; got 'fast'."),
    ],
)
def test_bad_widget_values_become_gr_error_in_the_pages_words(
    handlers: StudioHandlers, widget: str, value: object, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ui.handlers")
    with pytest.raises(gr.Error) as error:
        next(handlers.text_to_av(**{**T2AV_WIDGETS, widget: value}))
    assert message in error.value.message
    assert "`" not in error.value.message  # no Python argument names
    assert error.value.print_exception is False  # gradio prints no traceback for an input error
    refusals = [record for record in caplog.records if "Refused an input" in record.getMessage()]
    assert len(refusals) == 1 and refusals[0].exc_info is None  # one line in the log


def bad_clip(kind: str, folder: Path) -> Path:
    if kind == "empty":
        path = folder / "empty.wav"
        path.write_bytes(b"")
    elif kind == "corrupt":
        path = folder / "corrupt.wav"
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(200))
    elif kind == "renamed":
        path = folder / "picture.wav"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1000))
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize("kind", ["empty", "corrupt", "renamed"])
def test_unreadable_audio_is_a_clear_error_before_any_generation(
    handlers: StudioHandlers, state: StudioState, tmp_path: Path, kind: str
) -> None:
    path = bad_clip(kind, tmp_path)
    with pytest.raises(gr.Error) as error:
        next(handlers.audio_to_video(**{**A2V_WIDGETS, "audio": str(path)}))
    assert str(path.name) in error.value.message and "audio" in error.value.message
    assert handlers.audio_help(str(path), 0.0, NUM_FRAMES, FRAME_RATE)[0].startswith("**Cannot use this input:**")
    assert state.idle_slots == state.config.concurrency_limit


def test_a_clip_shorter_than_the_video_names_the_frame_count_or_padding(
    handlers: StudioHandlers, tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "blip.wav", 0.1)
    with pytest.raises(gr.Error) as error:
        list(handlers.audio_to_video(**{**A2V_WIDGETS, "audio": str(clip)}))
    message = error.value.message
    assert "0.10 s" in message and '"Pad a short clip with silence" on' in message and "pad_audio" not in message
    assert str(tmp_path) not in message  # nothing of where the server keeps uploads
    padded = list(handlers.audio_to_video(**{**A2V_WIDGETS, "audio": str(clip), "pad_audio": True}))
    assert padded[-1][4]["audio_padded_with_silence_s"] == pytest.approx(NUM_FRAMES / FRAME_RATE - 0.1, abs=1e-3)


def test_missing_audio_is_a_clear_error(handlers: StudioHandlers) -> None:
    with pytest.raises(gr.Error, match="upload or record"):
        next(handlers.audio_to_video(**{**A2V_WIDGETS, "audio": None}))


# ---- help and cheap updates -----------------------------------------------------------------------------------------


def test_frame_count_menu_labels_each_count_with_its_duration(handlers: StudioHandlers) -> None:
    choices = studio_help.frame_count_choices(25.0)
    assert ("97 frames - 3.88 s at 25 fps", 97) in choices
    assert [value for _, value in choices] == validation.valid_frame_counts(studio_help.MAX_MENU_FRAMES)
    update = handlers.frame_choices(24, 97)
    assert ("97 frames - 4.04 s at 24 fps", 97) in update["choices"] and update["value"] == 97
    assert is_skip(handlers.frame_choices(0, 97))


def test_a_frame_rate_the_model_was_not_trained_at_is_named_under_the_length(handlers: StudioHandlers) -> None:
    known = defaults_for_model(handlers.state.config.model).frame_rates
    assert known == (24.0,)  # the embedded model learned 24 fps clips only
    assert handlers.frame_choices(24, 97)["info"] == studio_help.FRAME_COUNT_INFO
    info = handlers.frame_choices(12.5, 97)["info"]
    assert info.startswith(studio_help.FRAME_COUNT_INFO) and "trained at 24 fps only" in info and "12.5 fps" in info
    assert studio_help.frame_rate_note(30.0, None) == ""  # real weights: any rate


def test_audio_help_offers_the_frame_count_matching_the_clip(handlers: StudioHandlers) -> None:
    # The click track lasts 4.00 s: 121 frames (4.84 s) outlast it, 97 frames (3.88 s) fit it.
    message, button, suggested = handlers.audio_help(str(CLICK_TRACK), 0.0, 121, 25.0)
    assert "shorter than the video" in message and "97 frames - 3.88 s at 25 fps" in message
    assert suggested == 97 and button["visible"] is True and button["value"] == "Use 97 frames"
    assert handlers.use_suggested_frames(suggested)["value"] == 97
    message, button, suggested = handlers.audio_help(str(CLICK_TRACK), 0.0, 49, 25.0)
    assert "uses the first 1.96 s" in message and suggested == 97
    message, button, suggested = handlers.audio_help(str(CLICK_TRACK), 0.0, 97, 25.0)
    assert "fits it" in message and suggested is None and button["visible"] is False
    message, _, suggested = handlers.audio_help(str(CLICK_TRACK), 5.0, 97, 25.0)
    assert "leaves no audio" in message and suggested is None


def test_prompt_without_sound_words_gets_a_hint_in_the_models_words(handlers: StudioHandlers) -> None:
    from world import WORLD_VOCABULARY

    hint = handlers.prompt_hint("a red ball in a bright room")
    assert "does not describe any sound" in hint and "voice" not in hint and "rain" not in hint
    # Every suggestion (quoted in italics, or in parentheses) uses words the embedded model knows.
    phrases = re.findall(r'\*"([^"]+)"\*|\(([^)]+)\)', hint.split("It knows")[0])
    words = {word for phrase in phrases for part in phrase for word in re.findall(r"[a-z]+", part)}
    assert words and words <= set(WORLD_VOCABULARY), words
    assert "source" in studio_help.sound_hint("A red ball in a bright room, close-up, window light")
    assert handlers.prompt_hint("a red ball bounces on the floor with echoes") == ""  # known to both embedded models
    assert handlers.prompt_hint("") == ""


def test_prompt_hint_names_words_the_embedded_model_ignores(handlers: StudioHandlers) -> None:
    hint = handlers.prompt_hint("a red ball bounces with a loud thud near a giraffe")
    assert handlers.state.prompt_vocabulary is not None  # the embedded model's tokenizer knows few words whole
    assert "giraffe" in hint and "ignore" in hint and "source" not in hint


def test_example_prompts_all_describe_sound() -> None:
    from ui.layout import load_example_prompts
    from world import WORLD_VOCABULARY

    examples = load_example_prompts()
    general = examples[TEXT_TO_AV] + [prompt for _, prompt in examples[AUDIO_TO_VIDEO]]
    embedded = examples["embedded_text_to_av"] + [prompt for _, prompt in examples["embedded_audio_to_video"]]
    assert all(studio_help.sound_hint(prompt) == "" for prompt in general + embedded)
    # The embedded model's examples stay inside the vocabulary it learned (the bouncing-ball world's captions).
    for prompt in embedded:
        assert set(re.findall(r"[a-z]+", prompt.lower())) <= set(WORLD_VOCABULARY), prompt
    for path, _ in examples[AUDIO_TO_VIDEO] + examples["embedded_audio_to_video"]:
        assert (EXAMPLES_DIR / path).stat().st_size < 200_000


def test_model_note_names_the_loaded_model(handlers: StudioHandlers, tmp_path: Path) -> None:
    assert handlers.state.model_label in handlers.model_note()
    if handlers.state.model_label == RANDOM_MODEL_LABEL:
        assert "RANDOM" in handlers.model_note() and "--model" in handlers.model_note()
    assert handlers.model_status()[1]["active"] is False  # loaded: the page stops refreshing the note
    missing = StudioState(StudioConfig(model=str(tmp_path / "no-such-model"), output_dir=tmp_path))
    assert "loading" in StudioHandlers(missing).model_note()
    assert StudioHandlers(missing).model_status()[1]["active"] is True
    with pytest.raises(gr.Error, match="could not be loaded"):
        list(StudioHandlers(missing).text_to_av(**T2AV_WIDGETS))
    assert "could not be loaded" in StudioHandlers(missing).model_note()
    assert "no-such-model" in StudioHandlers(missing).model_note()
    assert StudioHandlers(missing).model_status()[1]["active"] is False  # a failed load stops the refreshing


def test_steps_slider_is_live_in_dev_mode_only(handlers: StudioHandlers) -> None:
    assert handlers.steps_control("dev")["interactive"] is True
    assert handlers.steps_control("distilled")["interactive"] is False


def test_request_takes_steps_in_dev_mode_and_draws_a_seed_when_asked() -> None:
    widgets = {**T2AV_WIDGETS, "num_inference_steps": 12.0}
    assert build_request(TEXT_TO_AV, widgets).num_inference_steps is None  # distilled: fixed schedule
    assert build_request(TEXT_TO_AV, {**widgets, "mode": "dev"}).num_inference_steps == 12
    assert build_request(TEXT_TO_AV, {**widgets, "mode": "auto"}).mode is None  # the checkpoint's own schedule
    seeds = {build_request(TEXT_TO_AV, {**widgets, "randomize_seed": True}).seed for _ in range(4)}
    assert len(seeds) > 1 and 7 not in seeds


# ---- ZeroGPU --------------------------------------------------------------------------------------------------------


def test_zerogpu_wrapper_is_a_no_op_without_spaces(handlers: StudioHandlers) -> None:
    try:
        import spaces  # noqa: F401
    except ImportError:
        assert on_gpu(handlers.text_to_av, lambda *args: 60) == handlers.text_to_av
    else:
        pytest.skip("the spaces package is installed here")


def test_zerogpu_duration_grows_with_the_request() -> None:
    short = estimate_gpu_seconds(121, "768x512", "distilled", 30, 3.0)
    long = estimate_gpu_seconds(257, "1536x1024", "dev", 30, 3.0)
    assert 30 <= short < long <= 300
    assert estimate_gpu_seconds("abc", "768x512", "dev", 30, 3.0) == 60
    assert math.isfinite(estimate_gpu_seconds(9, "64x64", "distilled", None, 1.0))


# ---- wiring ---------------------------------------------------------------------------------------------------------


def test_generation_shares_one_bounded_queue_and_cheap_updates_skip_it(tmp_path: Path) -> None:
    from ui import build_demo

    config = StudioConfig(output_dir=tmp_path, concurrency_limit=2, max_queue_size=5)
    demo = build_demo(StudioState(config))  # wiring only: nothing is loaded
    assert demo._queue.max_size == 5
    functions = {function.api_name: function for function in demo.fns.values()}
    endpoints = [mode.api_name for mode in STUDIO_MODES]  # one tab and endpoint per mode of the registry
    assert endpoints == ["text_to_av", "audio_to_video", "video_to_audio", "retake"]
    for endpoint in endpoints:
        generation = functions[endpoint]
        assert generation.queue and generation.api_visibility == "public"
        assert (generation.concurrency_id, generation.concurrency_limit) == ("generation", 2)
    others = [function for name, function in functions.items() if name not in endpoints]
    assert others and all(not function.queue for function in others)
    assert all(function.api_visibility != "public" for function in others)


def test_two_concurrent_runs_match_a_run_alone(tmp_path: Path) -> None:
    """With a concurrency limit of 2, two runs share the weights at once and each equals a run made alone."""
    import av

    state = StudioState(StudioConfig(output_dir=tmp_path, concurrency_limit=2))
    handlers = StudioHandlers(state)

    def frames(path: str) -> np.ndarray:
        with av.open(path) as container:
            return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])

    alone = frames(list(handlers.text_to_av(**T2AV_WIDGETS))[-1][3])
    results: dict[int, str] = {}

    def generate(index: int) -> None:
        session = gr.Request(session_hash=f"session-{index}")
        results[index] = list(handlers.text_to_av(**T2AV_WIDGETS, request=session))[-1][3]

    threads = [threading.Thread(target=generate, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] != results[1]
    for index in range(2):
        np.testing.assert_array_equal(frames(results[index]), alone)
    assert state.idle_slots == 2


# ---- LoRAs ----------------------------------------------------------------------------------------------------------

LORA_MODULES = ["transformer_blocks.0.attn1.to_q", "transformer_blocks.0.ff.net.2", "proj_out"]


def video_frames(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def mean_difference(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first.astype(np.int16) - second.astype(np.int16)).mean())


def write_studio_lora(state: StudioState, path: Path, widen: bool = False) -> Path:
    """A LoRA in the official layout for the studio's own transformer (`widen`: one layer for twice its inputs)."""
    import torch

    from tests.lora_files import official_lora_tensors, random_lora_layers, write_lora

    with state.run("lora-writer", TEXT_TO_AV) as run:
        layers = random_lora_layers(run.pipeline.transformer, LORA_MODULES, seed=3)
    if widen:
        lora_a, lora_b = layers[LORA_MODULES[0]]
        layers[LORA_MODULES[0]] = (torch.cat([lora_a, lora_a], dim=1), lora_b)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_lora(path, official_lora_tensors(layers))


@pytest.fixture(scope="module")
def lora_handlers(tmp_path_factory: pytest.TempPathFactory) -> StudioHandlers:
    folder = tmp_path_factory.mktemp("loras")
    config = StudioConfig(output_dir=tmp_path_factory.mktemp("outputs"), lora_folder=folder, concurrency_limit=2)
    state = StudioState(config)
    state.load()
    write_studio_lora(state, folder / "style" / "crayon.safetensors")
    write_studio_lora(state, folder / "too-wide.safetensors", widen=True)
    return StudioHandlers(state)


def test_the_picker_lists_the_lora_folder_and_an_absent_folder_lists_nothing(
    lora_handlers: StudioHandlers, tmp_path: Path
) -> None:
    assert list(lora_handlers.state.lora_files()) == ["style/crayon.safetensors", "too-wide.safetensors"]
    assert lora_handlers.lora_choices()[0]["choices"][0] == ("none", "")
    absent = StudioState(StudioConfig(output_dir=tmp_path, lora_folder=tmp_path / "no-such-folder"))
    assert absent.lora_files() == {}


@pytest.mark.parametrize("memory_mode", ["fp8-storage", "24gb", "16gb"])
def test_the_picker_is_on_in_the_memory_modes_that_store_weights_in_fp8(
    lora_handlers: StudioHandlers, tmp_path: Path, memory_mode: str
) -> None:
    # LoRAs picked per run keep their matrices in bf16 beside the fp8 weights (tests/test_lora.py checks the outputs).
    folder = lora_handlers.state.config.lora_folder
    studio = StudioState(StudioConfig(output_dir=tmp_path, lora_folder=folder, memory_mode=memory_mode))
    assert studio.lora_picker_off_reason is None
    assert list(studio.lora_files()) == list(lora_handlers.state.lora_files())
    picked = pick_loras([("style/crayon.safetensors", 1.0)], studio.lora_files(), studio.lora_picker_off_reason)
    assert [spec.path.name for spec in picked] == ["crayon.safetensors"]


def test_the_page_says_why_a_lora_folder_with_files_cannot_be_used(
    lora_handlers: StudioHandlers, tmp_path: Path
) -> None:
    from ltx_pipeline.speed.acceleration import SpeedOptions
    from ui import build_demo

    def lora_blocks(studio: StudioState) -> tuple[list, list[str], list]:
        demo = build_demo(studio)
        sections = [block for block in demo.blocks.values() if (block.elem_id or "").endswith("-loras")]
        notes = [block.value or "" for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
        pickers = [block for block in demo.blocks.values() if (block.elem_id or "").endswith("-lora-1")]
        return sections, notes, pickers

    folder = lora_handlers.state.config.lora_folder
    fp8_products = StudioConfig(output_dir=tmp_path, lora_folder=folder, speed=SpeedOptions(fp8=True))
    sections, notes, pickers = lora_blocks(StudioState(fp8_products))
    assert sections and all(section.visible for section in sections)
    assert any("cannot be picked per run with fp8 products" in note for note in notes)
    assert pickers and not any(picker.visible for picker in pickers)
    sections, notes, pickers = lora_blocks(
        StudioState(StudioConfig(output_dir=tmp_path, lora_folder=folder, memory_mode="24gb"))
    )
    assert sections and all(section.visible for section in sections)
    assert not any("cannot be picked" in note for note in notes)
    assert pickers and all(picker.visible for picker in pickers)


@pytest.mark.slow  # 10 s of two studio runs; tests/test_lora.py checks per-run LoRAs in 16gb against bf16 quickly
def test_a_lora_picked_in_the_16gb_mode_changes_the_run_and_none_gives_the_base_again(
    lora_handlers: StudioHandlers, tmp_path: Path
) -> None:
    # The mode that streams the transformer block by block and stores it in fp8: where a picked LoRA failed.
    config = StudioConfig(output_dir=tmp_path, lora_folder=lora_handlers.state.config.lora_folder, memory_mode="16gb")
    handlers = StudioHandlers(StudioState(config))

    def generate(**loras: object) -> np.ndarray:
        return video_frames(list(handlers.text_to_av(**T2AV_WIDGETS, **loras))[-1][3])

    base = generate()
    on = generate(lora_1="style/crayon.safetensors", lora_1_strength=1.0)
    assert mean_difference(on, base) > 1.0
    np.testing.assert_array_equal(generate(), base)


def test_a_lora_reaches_the_pipeline_strength_0_keeps_the_output_and_1_changes_it(
    lora_handlers: StudioHandlers,
) -> None:
    def generate(**loras: object) -> tuple[np.ndarray, dict]:
        final_video, recipe = list(lora_handlers.text_to_av(**T2AV_WIDGETS, **loras))[-1][3::2]
        return video_frames(final_video), recipe

    base, base_recipe = generate()
    assert base_recipe["loras"] == []
    crayon = "crayon.safetensors"  # by name: the recipe shows no server path
    off, off_recipe = generate(lora_1="style/crayon.safetensors", lora_1_strength=0.0)
    assert off_recipe["loras"] == [{"file": crayon, "strength": 0.0, "stages": [1, 2]}]
    np.testing.assert_array_equal(off, base)
    on, on_recipe = generate(lora_2="style/crayon.safetensors", lora_2_strength=1.0)
    assert on_recipe["loras"] == [{"file": crayon, "strength": 1.0, "stages": [1, 2]}]
    assert mean_difference(on, base) > 1.0
    again, again_recipe = generate()  # the LoRA is taken off again
    assert again_recipe["loras"] == []
    np.testing.assert_array_equal(again, base)


def test_runs_with_different_loras_take_turns_and_each_matches_a_run_alone(lora_handlers: StudioHandlers) -> None:
    with_lora = {"lora_1": "style/crayon.safetensors", "lora_1_strength": 1.0}
    alone = {
        "base": video_frames(list(lora_handlers.text_to_av(**T2AV_WIDGETS))[-1][3]),
        "lora": video_frames(list(lora_handlers.text_to_av(**T2AV_WIDGETS, **with_lora))[-1][3]),
    }
    results: dict[str, str] = {}

    def generate(name: str) -> None:
        loras = with_lora if name == "lora" else {}
        session = gr.Request(session_hash=f"session-{name}")
        results[name] = list(lora_handlers.text_to_av(**T2AV_WIDGETS, **loras, request=session))[-1][3]

    threads = [threading.Thread(target=generate, args=(name,)) for name in ("lora", "base")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_array_equal(video_frames(results["base"]), alone["base"])
    # H.264 does not always encode the LoRA's busy frames to the same bytes twice (the frames handed to the encoder
    # are identical), so the LoRA run is compared by distance: far nearer its run alone than the base clip.
    lora_gap = mean_difference(alone["lora"], alone["base"])
    assert mean_difference(video_frames(results["lora"]), alone["lora"]) < 0.2 * lora_gap
    assert lora_handlers.state.idle_slots == 2


@pytest.mark.parametrize(
    ("loras", "message"),
    [
        ({"lora_1": "too-wide.safetensors"}, r"LoRA file '.*too-wide\.safetensors' does not fit this model: "),
        ({"lora_3": "../secrets.safetensors"}, '"LoRA 3" must be a file of the studio'),
        ({"lora_1": "style/crayon.safetensors", "lora_1_strength": 2.5}, '"LoRA 1" strength must be between 0.0'),
        ({"lora_1": "style/crayon.safetensors", "lora_2": "style/crayon.safetensors"}, "is listed twice"),
    ],
)
def test_a_bad_lora_is_a_clear_error_and_the_next_run_is_clean(
    lora_handlers: StudioHandlers, loras: dict, message: str
) -> None:
    with pytest.raises(gr.Error, match=message):
        list(lora_handlers.text_to_av(**T2AV_WIDGETS, **loras))
    assert lora_handlers.state.idle_slots == 2
    recipe = list(lora_handlers.text_to_av(**T2AV_WIDGETS))[-1][5]
    assert recipe["loras"] == []


def test_the_distilled_lora_runs_in_stage_2_of_every_run(lora_handlers: StudioHandlers, tmp_path: Path) -> None:
    distilled = lora_handlers.state.config.lora_folder / "style" / "crayon.safetensors"
    with pytest.raises(ValueError, match="`concurrency_limit` must be 1 with a `distilled_lora`"):
        StudioConfig(output_dir=tmp_path, distilled_lora=str(distilled), concurrency_limit=2)
    with pytest.raises(ValueError, match="`distilled_lora` file does not exist"):
        StudioConfig(output_dir=tmp_path, distilled_lora=str(tmp_path / "missing.safetensors"))
    state = StudioState(StudioConfig(output_dir=tmp_path, distilled_lora=str(distilled), lora_folder=tmp_path))
    recipe = list(StudioHandlers(state).text_to_av(**T2AV_WIDGETS))[-1][5]
    assert recipe["loras"] == [{"file": distilled.name, "strength": 1.0, "stages": [2]}]  # no server path


@pytest.mark.parametrize(
    ("clip", "start", "expected"),
    [
        ("drum_pattern_120bpm.wav", 0.0, 89),  # 4.00 s: 97 frames (4.04 s) would need 0.04 s more
        ("ball_world_metal_hall.wav", 0.0, 97),  # 4.04 s: exactly the embedded model's length
        ("speech_espeak.wav", 0.0, 97),  # 4.70 s: capped at the longest the embedded model makes
        ("drum_pattern_120bpm.wav", 2.5, 33),
    ],
)
def test_a_new_clip_sets_the_longest_length_it_covers_with_a_notice(
    handlers: StudioHandlers, clip: str, start: float, expected: int
) -> None:
    update, notice = handlers.fit_length_to_clip(str(EXAMPLES_DIR / "audio" / clip), start, 24.0)
    assert update["value"] == expected
    assert f"Length set to **{expected} frames - {expected / 24:.2f} s at 24 fps**" in notice


def test_no_clip_or_a_clip_shorter_than_any_video_leaves_the_length(handlers: StudioHandlers, tmp_path: Path) -> None:
    update, notice = handlers.fit_length_to_clip(None, 0.0, 24.0)
    assert is_skip(update) and notice == ""
    blip = tmp_path / "blip.wav"
    sf.write(blip, np.zeros(800, np.float32), 16_000)  # 0.05 s: shorter than 9 frames
    update, notice = handlers.fit_length_to_clip(str(blip), 0.0, 24.0)
    assert is_skip(update) and notice == ""


def test_the_step_preview_is_a_small_smooth_strip_of_three_frames() -> None:
    from ui.previews import preview_grid

    latent_frames = np.random.default_rng(0).integers(0, 256, (13, 4, 4, 3), dtype=np.uint8)  # the embedded stage 1
    strip = preview_grid(latent_frames)
    assert strip.shape == (128, 3 * 128 + 2 * 4, 3)  # start, middle and end, as 128 px thumbnails
    assert len(np.unique(strip[64, :128, 0])) > 16  # scaled smoothly: not 4 flat blocks per row
    assert strip.dtype == np.uint8


# ---- video to audio and retake ---------------------------------------------------------------------------------------

VIDEO_WIDGETS = {
    "prompt": "a red ball drops on a wooden floor with a loud thud",
    "negative_prompt": "",
    "seed": 7,
    "randomize_seed": False,
    "mode": "distilled",
    "num_inference_steps": 30,
    "modality_scale": 1.0,
}


def test_the_video_to_audio_tab_gives_the_video_new_sound_and_keeps_its_frames(
    handlers: StudioHandlers, tmp_path: Path
) -> None:
    from tests.test_pipeline_v2a import video_packets, write_video

    video = write_video(tmp_path / "in.mp4")
    updates = without_heartbeats(handlers.video_to_audio(video=str(video), num_frames=None, fit="", **VIDEO_WIDGETS))
    preview_image, preview_audio, final_video, status, recipe = updates[-1]  # no stage-1 clip: one stage
    assert final_video and "Done" in status
    assert video_packets(final_video) == video_packets(video)  # the frames as they were, copied
    assert probe_mp4(final_video).audio_duration_s == pytest.approx(17 / 24, abs=0.01)
    assert recipe["video"] == "in.mp4" and recipe["video_copied"] is True


def test_the_retake_tab_regenerates_the_span(handlers: StudioHandlers, tmp_path: Path) -> None:
    from tests.test_pipeline_v2a import write_video

    video = write_video(tmp_path / "in.mp4")
    span = {"start_time": 0.4, "end_time": 0.6, "regenerate": "both"}
    updates = without_heartbeats(handlers.retake(video=str(video), num_frames=None, fit="", **span, **VIDEO_WIDGETS))
    *_, final_video, status, recipe = updates[-1]
    assert probe_mp4(final_video).num_frames == 17
    assert (recipe["start_time"], recipe["end_time"], recipe["regenerate"]) == (0.4, 0.6, "both")


def test_a_video_that_does_not_fit_is_refused_in_the_tabs_words(handlers: StudioHandlers, tmp_path: Path) -> None:
    from tests.test_pipeline_v2a import write_video

    video = write_video(tmp_path / "long.mp4", num_frames=20)
    with pytest.raises(gr.Error, match=r'"Your video" has 20 frames.*"Use the first frames" = 17'):
        next_update(handlers.video_to_audio(video=str(video), num_frames=None, fit="", **VIDEO_WIDGETS))
    span = {"start_time": 0.5, "end_time": 0.5, "regenerate": "both"}
    with pytest.raises(gr.Error, match=r'"From \(s\)" and "To \(s\)" must satisfy 0 <= start < end'):
        next_update(handlers.retake(video=str(write_video(tmp_path / "ok.mp4")), num_frames=None, fit="", **span,
                                    **VIDEO_WIDGETS))  # fmt: skip


def test_a_new_video_is_described_and_its_usable_length_filled_in(handlers: StudioHandlers, tmp_path: Path) -> None:
    from tests.test_pipeline_v2a import write_video

    notice, frames = handlers.video_help(str(write_video(tmp_path / "odd.mp4", num_frames=20, height=80)))
    assert "20 frames at 24 fps" in notice and "64 x 80" in notice
    assert "set to 17" in notice and frames["value"] == 17
    assert "Fit to the model's size" in notice
    notice, frames = handlers.video_help(str(write_video(tmp_path / "fits.mp4")))
    assert "17 frames" in notice and frames["value"] is None and "Fit" not in notice


def test_a_mode_the_registry_does_not_know_is_an_error(state: StudioState) -> None:
    with pytest.raises(ValueError, match="Unknown mode 'foley'"), state.run("someone", "foley"):
        pass
    assert state.idle_slots == state.config.concurrency_limit  # the slot went back


@pytest.mark.slow  # one embedded-model generation at the page's default size on the CPU
def test_the_page_says_it_warms_up_while_the_compiled_fast_path_warms_up(tmp_path: Path) -> None:
    from ltx_pipeline.speed.acceleration import SpeedOptions

    # forward_graph counts as compiled (off CUDA it runs as usual), so the warm-up runs without a CPU compile.
    warming = StudioState(StudioConfig(output_dir=tmp_path, speed=SpeedOptions(forward_graph=True)))
    page = StudioHandlers(warming)
    thread = warming.start_loading()
    notes = []
    while thread.is_alive():
        notes.append(page.model_status())
        thread.join(0.2)
    assert any("Warming up" in note and status["active"] for note, status in notes)
    assert "Warming up" not in page.model_note() and page.model_status()[1]["active"] is False
    assert StudioState(StudioConfig(output_dir=tmp_path)).warm_up() is None  # nothing compiled: no warm-up
