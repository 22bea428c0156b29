"""Long form through the studio's API (gradio_client on a running studio, embedded model at 64 x 64 px): the audio
and text endpoints make chained windows when given `duration_s`, with a prompt timeline, and refuse bad input naming
the API parameter."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ltx_pipeline import constants
from ltx_pipeline.media import probe_mp4
from ltx_pipeline.modes import MODES
from tests.studio_server import served
from ui import StudioConfig, StudioState
from ui.handlers import page_parameters
from ui.long_form import clip_length, plan_notice, window_count
from ui.zerogpu import MAX_DURATION_S, clip_gpu_seconds, duration_for, group_seconds, windows_per_call

FRAME_RATE = 25.0
WINDOW = 17  # frames: two latent frames held of three, so each window adds 8 frames after the first
SETTINGS = {
    "prompt": "a red ball drops on a wooden floor with a loud thud",
    "negative_prompt": "",
    "num_frames": WINDOW,
    "frame_rate": FRAME_RATE,
    "resolution": "64x64",
    "seed": 3,
    "randomize_seed": False,
    "mode": "distilled",
    "num_inference_steps": 30,
    "modality_scale": 3.0,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    output_dir = tmp_path_factory.mktemp("outputs")
    with served(StudioConfig(output_dir=output_dir)) as (url, _):
        yield url, output_dir


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> Client:
    return Client(server[0], verbose=False, download_files=True)


def write_clicks(path: Path, seconds: float, sampling_rate: int = 16_000) -> Path:
    """A 16-bit mono wav of a click every 0.3 s over a quiet tone."""
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    sound = 0.05 * np.sin(2 * np.pi * 220 * time)
    sound[(time % 0.3) < 0.01] = 0.8
    sf.write(path, sound.astype(np.float32), sampling_rate, subtype="PCM_16")
    return path


def mp4_sound(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=-1)


def test_the_audio_endpoint_makes_a_clip_longer_than_one_window_with_its_whole_sound(
    client: Client, tmp_path: Path
) -> None:
    clip = write_clicks(tmp_path / "clicks.wav", 1.2)
    job = client.submit(
        audio=handle_file(str(clip)),
        audio_start_time=0.0,
        pad_audio=False,
        **SETTINGS,
        duration_s=1.2,
        prompt_timeline="0-0.5 s: a red ball on wood; 0.5-1.2 s: a blue ball on metal",
        api_name="/audio_to_video",
    )
    outputs = list(job)
    _, so_far, final_video, status, recipe = job.result()
    statuses = [output[3] for output in outputs if isinstance(output[3], str)]
    # 30 frames: windows of 17 frames from frames 0, 8 and 16 -> "window 3 of 3", with each step under it.
    assert any("Window 2 of 3 - stage 1/2 - step 1/8" in status for status in statuses), statuses
    assert any("Window 3 of 3 (0.6-1.2 s): a blue ball on metal" in status for status in statuses), statuses
    assert "Done" in status and "3 windows, 1.20 s" in status
    info = probe_mp4(final_video)
    assert (info.width, info.num_frames, info.frame_rate) == (64, 30, FRAME_RATE)
    # The mp4 carries the clip's own sound, sample for sample (16-bit source).
    source, _ = sf.read(clip, dtype="int16")
    assert np.array_equal(mp4_sound(final_video)[0].astype(np.int64) >> 16, source.astype(np.int64))
    # The growing preview: every finished window, joined.
    assert probe_mp4(so_far).num_frames == 30
    assert recipe["pipeline"] == "LongFormPipeline" and recipe["windows"] == 3 and recipe["window_frames"] == WINDOW
    assert recipe["window_prompts"] == ["a red ball on wood", "a blue ball on metal", "a blue ball on metal"]
    assert recipe["audio"] == "clicks.wav" and recipe["stopped"] is False


def test_the_text_endpoint_asks_for_a_length_beyond_one_window(client: Client) -> None:
    preview, preview_audio, so_far, final_video, status, recipe = client.predict(
        **SETTINGS, duration_s=1.0, api_name="/text_to_av"
    )
    info = probe_mp4(final_video)
    assert (info.num_frames, info.audio_codec) == (25, "flac")
    assert info.audio_duration_s == pytest.approx(1.0, abs=0.02)
    assert recipe["windows"] == 2 and recipe["duration_s"] == 1.0 and "2 windows" in status
    # Without `duration_s`, the same endpoint makes one clip of `num_frames`, as before.
    *_, single, _, single_recipe = client.predict(**SETTINGS, api_name="/text_to_av")
    assert probe_mp4(single).num_frames == WINDOW and single_recipe["pipeline"] == "TI2VidTwoStagesPipeline"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prompt_timeline": "0-1 s: a ball"}, "`prompt_timeline` applies to runs longer than one window"),
        ({"duration_s": 1.0, "prompt_timeline": "a ball, then another"}, "`prompt_timeline` must be ranges"),
        ({"duration_s": 1.0, "prompt_timeline": "0-5 s: a; 2-3 s: b"}, "must start at or after 5 s"),
        ({"duration_s": -2}, "`duration_s` must be a number of seconds > 0"),
        # One window of 9 frames is two latent frames: the two held would be all of it.
        ({"duration_s": 1.0, "num_frames": 9}, "smaller than the window's 2 latent frames (`num_frames` = 9)"),
        ({"duration_s": 6.0, "length_from_prompt": True}, "`length_from_prompt` picks one clip's length"),
    ],
)
def test_bad_long_form_input_names_the_api_parameter(client: Client, overrides: dict, message: str) -> None:
    with pytest.raises(AppError, match=message.replace("(", r"\(").replace(")", r"\)")):
        client.predict(**{**SETTINGS, **overrides}, api_name="/text_to_av")


def test_audio_longer_than_the_limit_is_refused_naming_it(client: Client, tmp_path: Path) -> None:
    limit = constants.LONG_FORM_MAX_AUDIO_DURATION_S
    clip = tmp_path / "long.wav"
    sf.write(clip, np.zeros(int((limit + 1) * 8_000), np.int16), 8_000, subtype="PCM_16")
    with pytest.raises(
        AppError, match=rf"`audio` lasts {limit + 1:.1f} s, longer than this studio's limit of {limit:g} s"
    ):
        client.predict(
            audio=handle_file(str(clip)), audio_start_time=0.0, pad_audio=False, **SETTINGS, duration_s=limit,
            api_name="/audio_to_video",
        )  # fmt: skip


def test_a_length_the_disk_cannot_hold_is_refused_before_any_work(client: Client, server: tuple[str, Path]) -> None:
    free_bytes = shutil.disk_usage(server[1]).free
    # Twice what the free space holds at the estimate's bits per pixel (64 x 64 px at 25 fps).
    seconds = 2 * free_bytes * 8 / (64 * 64 * constants.LONG_FORM_DISK_BITS_PER_PIXEL * FRAME_RATE)
    with pytest.raises(AppError, match=r"MiB free; this clip needs up to \d+ MiB") as refused:
        client.predict(**SETTINGS, duration_s=round(seconds), api_name="/text_to_av")
    assert str(server[1]) not in str(refused.value)  # no server path


def test_the_page_says_what_a_length_makes_before_generating(tmp_path: Path) -> None:
    clip = write_clicks(tmp_path / "song.wav", 9.0)
    duration, notice = clip_length(str(clip), 0.0, 24.0, 97)
    assert duration["value"] == 9.0 and "**9.00 s** from 0 s" in notice and "**3 windows** of 97 frames" in notice
    short, no_notice = clip_length(str(clip), 6.0, 24.0, 97)  # 3 s from 6 s: one clip
    assert short["value"] == 0 and no_notice == ""
    assert "**60.00 s as 17 windows** of 97 frames (4.04 s each" in plan_notice(60, 97, 24.0)
    assert plan_notice(0, 97, 24.0) == ""


@pytest.mark.parametrize("mode_name", ["a2v", "t2av"])
def test_zero_gpu_asks_for_one_clip_per_call_and_a_long_run_goes_call_by_call(mode_name: str) -> None:
    mode = MODES[mode_name]
    duration = duration_for(mode, page_parameters(mode))
    request = {**SETTINGS, "resolution": "768x512", "num_frames": 97, "frame_rate": 24.0, "audio": "clip.wav"}
    one_window = duration(**request)
    assert one_window == int(clip_gpu_seconds(97, "768x512", "distilled", 30, 3.0, mode.two_stage))
    # A long run never asks through the page's one call (`on_gpu` keeps it in the studio process): ten minutes
    # go as calls of as many windows as fit (`tests/test_zerogpu.py` runs them).
    assert duration(**request, duration_s=600.0) == one_window
    windows = window_count(600.0, 97, 24.0)
    per_call = windows_per_call(clip_gpu_seconds(97, "768x512", "distilled", 30, 3.0), windows)
    assert 1 < per_call < windows and group_seconds(per_call, one_window) <= MAX_DURATION_S


def test_stop_keeps_the_finished_windows_and_the_recipe_says_where(tmp_path: Path) -> None:
    """The handlers as plain functions, as the page calls them: Stop during window 2, then the page's "stopped"."""
    from ui.handlers import StudioHandlers

    state = StudioState(StudioConfig(output_dir=tmp_path))
    handlers = StudioHandlers(state)
    run = handlers.text_to_av(**SETTINGS, duration_s=2.0)
    for outputs in run:
        if isinstance(outputs[4], str) and "Window 2 of 6 - stage 1/2 - step 2/8" in outputs[4]:
            break
    handlers.stop("text_to_av")
    run.close()  # what gradio's cancel does
    status, final_video, recipe = handlers.stopped_with_file("text_to_av")
    assert "Stopped after window 1 of 6" in status and "holds the first 0.68 s" in status
    assert probe_mp4(final_video).num_frames == WINDOW
    assert recipe["stopped"] is True and recipe["stopped_after_window"] == 1 and recipe["written_s"] == 0.68
