"""LTX-2.5 as a user meets it: the version named on the command line, the page and in every recipe, and "length from
the prompt" (the duration head) through the command line (a real subprocess), the API (gradio_client on a running
studio) and the page's handlers. The model is a tiny LTX-2.5 in Lightricks' per-component layout, written here, its
duration head set to predict 1.4 s (33 frames at 24 fps: 33.6 floored onto the 8k + 1 grid)."""

import json
import math
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client

from ltx_pipeline import tiny
from ltx_pipeline.__main__ import main
from ltx_pipeline.media import probe_mp4
from ltx_pipeline.modes import MODES
from tests import official_layout_2_5
from tests.studio_server import served
from tests.test_app_client import SETTINGS
from tests.test_cli_as_a_user import run_cli
from tests.test_ui_handlers import T2AV_WIDGETS
from ui import StudioConfig, StudioState
from ui.handlers import StudioHandlers, page_parameters
from ui.zerogpu import duration_for

PREDICTED_SECONDS = 1.4
PREDICTED_FRAMES = 33  # at 24 fps
PROMPT = "a red ball bounces on a metal floor"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    head = tiny.build_tiny_duration_head()
    with torch.no_grad():  # the last layer gives log-seconds: a constant prediction for every prompt
        head.mlp_out.weight.zero_()
        head.mlp_out.bias.fill_(math.log(PREDICTED_SECONDS))
    destination = tmp_path_factory.mktemp("ltx25") / "LTX-2.5"
    return official_layout_2_5.write_official_folder(destination, tiny.build_tiny_components("2.5"), head)


def t2av_arguments(model: str, output: Path, *extra: str) -> list[str]:
    return [
        "-m", "ltx_pipeline", "t2av", "--model", model, "--prompt", PROMPT, "--height", "64", "--width", "64",
        "--frame-rate", "24", "--output", str(output), *extra,
    ]  # fmt: skip


def test_cli_names_the_version_and_takes_the_length_from_the_prompt(folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "clip.mp4"
    result = run_cli(t2av_arguments(str(folder), output, "--length-from-prompt"), tmp_path, timeout_s=300)
    assert result.returncode == 0, result.stderr[-2000:]
    model_line = next(line for line in result.stderr.splitlines() if line.startswith("model: "))
    assert model_line.startswith("model: LTX-2.5 distilled")
    assert (
        "LTX-2.5: distilled stage 1 with ancestral Euler" in model_line and "length from the prompt: yes" in model_line
    )
    info = probe_mp4(output)
    assert info.num_frames == PREDICTED_FRAMES
    assert info.audio_duration_s == pytest.approx(PREDICTED_FRAMES / 24, abs=0.03)
    recipe = json.loads(output.with_suffix(".json").read_text())
    assert recipe["model_version"] == "2.5" and recipe["stage_1_sampler"] == "euler_ancestral"
    assert recipe["num_frames"] == PREDICTED_FRAMES
    assert recipe["length_from_prompt"] == {"predicted_seconds": PREDICTED_SECONDS, "num_frames": PREDICTED_FRAMES}


def test_cli_refuses_length_from_the_prompt_beside_a_length(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Refused before loading, so in this process (a subprocess would spend its time importing torch).
    arguments = t2av_arguments(str(folder), tmp_path / "clip.mp4", "--length-from-prompt", "--num-frames", "17")
    assert main(arguments[2:]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: `--length-from-prompt` picks the length from the prompt; give it or `--num-frames`, not both (got "
        "`--num-frames` 17)."
    ]


def test_cli_refuses_length_from_the_prompt_for_a_model_without_a_duration_head(tmp_path: Path) -> None:
    result = run_cli(t2av_arguments("embedded", tmp_path / "clip.mp4", "--length-from-prompt"), tmp_path)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: `--length-from-prompt` needs a model with LTX-2.5's duration head")
    assert "LTX-2.3) has none. Set `--num-frames` instead" in error
    assert "Traceback" not in result.stderr and not (tmp_path / "clip.mp4").exists()


@pytest.fixture(scope="module")
def studio(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, StudioState]]:
    with served(StudioConfig(model=str(folder), output_dir=tmp_path_factory.mktemp("outputs"))) as (url, state):
        yield Client(url, verbose=False, download_files=True), state


def test_api_takes_the_length_from_the_prompt_and_names_the_version(studio: tuple[Client, StudioState]) -> None:
    client, state = studio
    settings = {**SETTINGS, "frame_rate": 24.0}
    *_, final_video, status, recipe = client.predict(**settings, length_from_prompt=True, api_name="/text_to_av")
    assert "Done" in status
    assert probe_mp4(final_video).num_frames == PREDICTED_FRAMES
    assert recipe["model_version"] == "2.5" and recipe["length_from_prompt"]["num_frames"] == PREDICTED_FRAMES
    # Without it (and from clients that predate it) the length is the one asked for.
    *_, final_video, _, recipe = client.predict(**settings, api_name="/text_to_av")
    assert probe_mp4(final_video).num_frames == settings["num_frames"] and "length_from_prompt" not in recipe
    note = StudioHandlers(state).model_note()
    assert "LTX-2.5: distilled stage 1 with ancestral Euler" in note and "LTX-2.3 follows the clip" in note


def test_page_refuses_length_from_the_prompt_without_a_duration_head_in_its_own_words(tmp_path: Path) -> None:
    state = StudioState(StudioConfig(output_dir=tmp_path))
    state.load()
    handlers = StudioHandlers(state)
    assert "(LTX-2.3: distilled stage 1 with Euler" in handlers.model_note()
    with pytest.raises(gr.Error) as error:
        list(handlers.text_to_av(**T2AV_WIDGETS, length_from_prompt=True))
    assert error.value.message.startswith('"Length from the prompt" needs a model with LTX-2.5')
    assert 'Set "Length" instead' in error.value.message


def test_zero_gpu_asks_for_the_longest_length_the_head_may_pick() -> None:
    mode = MODES["t2av"]
    duration = duration_for(mode, page_parameters(mode))
    request = {**T2AV_WIDGETS, "resolution": "768x512", "num_frames": 25, "frame_rate": 24.0}
    given = duration(**request)
    predicted = duration(**request, length_from_prompt=True)
    assert predicted > given
    assert predicted == duration(**{**request, "num_frames": 473})  # 20 s at 24 fps, on the 8k + 1 grid
