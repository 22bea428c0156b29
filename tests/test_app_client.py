"""Both named endpoints through gradio_client on a running studio (embedded tiny model, 64 x 64 px, 9 frames)."""

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from diffusers import LTX2VideoTransformer3DModel
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ltx_pipeline.media import probe_mp4
from tests.studio_server import free_port, served
from ui import StudioConfig, StudioState
from ui.retention import STAGE_FOLDER
from ui.state import EXAMPLES_DIR, REPO_ROOT

CLICK_TRACK = EXAMPLES_DIR / "audio" / "click_track_120bpm.wav"
FRAME_RATE = 25.0
NUM_FRAMES = 9
ABANDONED_AFTER_S = 5.0  # a run nobody asks output of for this long is stopped (the default's 30 s, shortened)
MAX_UPLOAD = "12mb"  # a 10-minute 8 kHz mono clip (9.6 MB) fits; the oversized file below does not

SETTINGS = {
    "prompt": "a red ball drops on a wooden floor with a loud thud",
    "negative_prompt": "",
    "num_frames": NUM_FRAMES,
    "frame_rate": FRAME_RATE,
    "resolution": "64x64",
    "seed": 3,
    "randomize_seed": False,
    "mode": "distilled",
    "num_inference_steps": 30,
    "modality_scale": 3.0,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StudioState]]:
    config = StudioConfig(
        output_dir=tmp_path_factory.mktemp("outputs"), max_file_size=MAX_UPLOAD, abandoned_after_s=ABANDONED_AFTER_S
    )
    with served(config) as (url, state):
        yield url, state


@pytest.fixture(scope="module")
def client(server: tuple[str, StudioState]) -> Client:
    return Client(server[0], verbose=False, download_files=True)


def write_clip(
    path: Path, seconds: float, sampling_rate: int = 16_000, channels: int = 1, distinct: bool = False
) -> Path:
    """A 16-bit wav of a tone; with `distinct`, each channel at its own pitch (so a swap or a mix shows)."""
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    pitches = [330.0 * (1 + channel if distinct else 1) for channel in range(channels)]
    tones = np.stack([0.3 * np.sin(2 * np.pi * pitch * time) for pitch in pitches], axis=1)
    sf.write(path, tones.astype(np.float32), sampling_rate, subtype="PCM_16")
    return path


def audio_to_video(client: Client, audio: Path, **overrides: object) -> tuple:
    arguments = {"audio": handle_file(str(audio)), "audio_start_time": 0.0, "pad_audio": False, **SETTINGS}
    return client.predict(**{**arguments, **overrides}, api_name="/audio_to_video")


def assert_clip(path: str, width: int = 64) -> None:
    info = probe_mp4(path)
    assert (info.width, info.num_frames) == (width, NUM_FRAMES)
    assert info.audio_codec == "flac" and info.audio_duration_s == pytest.approx(NUM_FRAMES / FRAME_RATE, abs=0.03)


def test_text_to_av_endpoint(client: Client) -> None:
    preview_image, preview_audio, stage_video, final_video, status, recipe = client.predict(
        **SETTINGS, api_name="/text_to_av"
    )
    assert_clip(final_video)
    assert_clip(stage_video, width=32)
    assert Path(preview_image).suffix == ".png" and Path(preview_audio).is_file()
    assert "Done" in status and recipe["seed"] == 3 and recipe["pipeline"] == "TI2VidTwoStagesPipeline"


def test_text_to_av_streams_through_the_client(client: Client) -> None:
    job = client.submit(**SETTINGS, api_name="/text_to_av")
    outputs = list(job)
    statuses = [output[4] for output in outputs if isinstance(output[4], str)]
    assert any("Stage 1/2 - step 1/8" in status for status in statuses)
    assert any("Stage 1 decoded" in status for status in statuses)
    assert "Done" in statuses[-1] and len(outputs) >= 8 + 3 + 2


def test_audio_to_video_endpoint(client: Client) -> None:
    preview_image, stage_video, final_video, status, recipe = audio_to_video(client, CLICK_TRACK)
    assert_clip(final_video)
    assert recipe["pipeline"] == "A2VidPipelineTwoStage" and "Done" in status


def bad_file(kind: str, folder: Path) -> Path:
    contents = {
        "empty": b"",
        "corrupt": b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(200),
        "renamed": b"\x89PNG\r\n\x1a\n" + bytes(2_000),
    }[kind]
    path = folder / f"{kind}.wav"
    path.write_bytes(contents)
    return path


@pytest.mark.parametrize("kind", ["empty", "corrupt", "renamed"])
def test_unreadable_audio_gets_a_clear_message(client: Client, tmp_path: Path, kind: str) -> None:
    with pytest.raises(AppError) as error:
        audio_to_video(client, bad_file(kind, tmp_path))
    message = str(error.value)
    assert f"{kind}.wav" in message, message
    assert any(reason in message for reason in ("empty", "not a readable audio", "no audio stream")), message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_frames": 100}, "`num_frames` must be 8k+1"),
        ({"prompt": "x" * 5_000}, "`prompt` must be at most 4000 characters; got 5000 characters."),
        ({"resolution": "65x64"}, "`resolution (width)` must be a positive multiple of 64"),
        ({"frame_rate": 500}, "`frame_rate` must be a number from 1 to 60"),
    ],
)
def test_invalid_settings_get_the_pipelines_message(client: Client, overrides: dict, message: str) -> None:
    with pytest.raises(AppError, match=re.escape(message)):
        client.predict(**{**SETTINGS, **overrides}, api_name="/text_to_av")


def test_a_job_over_the_work_limit_is_refused_at_once_naming_the_limit(client: Client) -> None:
    """6400 x 6400 held a 2-core server for minutes; now it is refused before any work."""
    started = time.monotonic()
    with pytest.raises(AppError, match=r"must be at most 4,210,688 pixel-frames per job on this server") as error:
        client.predict(**{**SETTINGS, "resolution": "6400x6400"}, api_name="/text_to_av")
    assert "got 6400 x 6400 x 9 = 368,640,000" in str(error.value)
    assert time.monotonic() - started < 30  # refused at once, where 6400 x 6400 held the server for minutes
    assert "Done" in client.predict(**SETTINGS, api_name="/text_to_av")[4]  # the next job is not stuck behind it


def test_a_clip_too_short_for_the_video_names_the_fix(client: Client, tmp_path: Path) -> None:
    with pytest.raises(AppError, match="shorter than the 0.36 s") as error:
        audio_to_video(client, write_clip(tmp_path / "blip.wav", 0.1))
    assert "pad_audio=True" in str(error.value)


def test_an_upload_over_the_size_limit_is_refused(
    server: tuple[str, StudioState], client: Client, tmp_path: Path
) -> None:
    huge = write_clip(tmp_path / "huge.wav", 200.0, sampling_rate=48_000)  # 19 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the limit first
        audio_to_video(client, huge)
    # A caller that ignores the limit is refused by the server itself.
    with huge.open("rb") as upload:
        response = httpx.post(f"{server[0]}gradio_api/upload", files={"files": ("huge.wav", upload, "audio/wav")})
    assert response.status_code == 413, response.text


def decoded_mp4_audio(path: str) -> tuple[np.ndarray, int]:
    """The mp4's audio as (samples, channels) int16, and its rate, decoded by FFmpeg."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        channels, rate = stream.codec_context.layout.nb_channels, stream.codec_context.sample_rate
        packed = np.concatenate([frame.to_ndarray() for frame in container.decode(stream)], axis=-1)
    assert packed.dtype == np.int16
    return packed.reshape(-1, channels), rate  # packed s16: (1, S * C) -> (S, C)


def test_odd_but_valid_clips_still_generate(client: Client, tmp_path: Path) -> None:
    """A 10-minute clip (only the cut is read) and 8-channel 96 kHz audio both work; the mp4 keeps the clip's
    samples, rate and channels exactly."""
    long_clip = write_clip(tmp_path / "ten_minutes.wav", 600.0, sampling_rate=8_000)
    assert_clip(audio_to_video(client, long_clip, audio_start_time=420.0)[2])
    surround = write_clip(tmp_path / "surround.wav", 1.0, sampling_rate=96_000, channels=8, distinct=True)
    final_video = audio_to_video(client, surround)[2]
    assert_clip(final_video)
    decoded, rate = decoded_mp4_audio(final_video)
    original, original_rate = sf.read(surround, dtype="int16", always_2d=True)
    assert (rate, decoded.shape[1]) == (original_rate, 8)
    assert np.array_equal(decoded, original[: len(decoded)])  # sample for sample, every channel in its place
    assert len(decoded) == round(NUM_FRAMES / FRAME_RATE * rate)


def test_cancelling_a_job_frees_the_studio_within_a_step(server: tuple[str, StudioState], client: Client) -> None:
    _, state = server
    job = client.submit(**{**SETTINGS, "mode": "dev", "num_inference_steps": 60}, api_name="/text_to_av")
    deadline = time.monotonic() + 60
    while not any("Stage 1/2 - step" in str(output[4]) for output in job.outputs()):
        assert time.monotonic() < deadline and not job.done(), "no step arrived"
        time.sleep(0.05)
    job.cancel()
    deadline = time.monotonic() + 30
    while state.idle_slots < state.config.concurrency_limit:
        assert time.monotonic() < deadline, "the cancelled run still holds the pipeline"
        time.sleep(0.05)
    steps_seen = [re.search(r"step (\d+)/60", str(output[4])) for output in job.outputs()]
    assert max(int(match[1]) for match in steps_seen if match) < 60
    assert "Done" in client.predict(**SETTINGS, api_name="/text_to_av")[4]  # still serving


@contextmanager
def slow_steps(seconds_per_pass: float | None = None) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Makes every transformer pass of every run slow, through a torch forward hook (the model is the real one):
    each pass takes `seconds_per_pass`, or, without it, lasts until the `release` event is set. Yields
    (`in_pass`, set while a pass waits; `release`)."""
    in_pass, release = threading.Event(), threading.Event()

    def hook(module: torch.nn.Module, args: tuple, output: object) -> None:
        if isinstance(module, LTX2VideoTransformer3DModel):
            in_pass.set()
            release.wait(seconds_per_pass)  # None: until released
            in_pass.clear()

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield in_pass, release
    finally:
        release.set()
        handle.remove()


def final_videos(state: StudioState) -> set[Path]:
    return {path for path in state.config.output_dir.rglob("*.mp4") if STAGE_FOLDER not in path.parts}


def wait_until_idle(state: StudioState) -> None:
    deadline = time.monotonic() + 120  # a hang guard, not a speed goal
    while state.idle_slots < state.config.concurrency_limit:
        assert time.monotonic() < deadline, "the run still holds the pipeline"
        time.sleep(0.05)


def test_cancel_returns_while_a_step_is_still_running(server: tuple[str, StudioState], client: Client) -> None:
    """gradio_client's cancel is an HTTP call with a 5 s timeout: it timed out when the server answered only after
    the step in progress. Here the step lasts until the cancel has returned."""
    _, state = server
    before = final_videos(state)
    with slow_steps() as (in_pass, release):
        job = client.submit(**SETTINGS, api_name="/text_to_av")
        assert in_pass.wait(60), "the run never reached the transformer"
        assert job.cancel()  # raised httpx.ReadTimeout when the server's cancel waited for the step
        assert in_pass.is_set() and not release.is_set()  # the step was still running when cancel returned
        release.set()
        wait_until_idle(state)
    assert final_videos(state) == before  # the cancelled run wrote nothing
    assert "Done" in client.predict(**SETTINGS, api_name="/text_to_av")[4]  # and the next job runs


def test_a_run_whose_client_went_away_is_stopped(server: tuple[str, StudioState], tmp_path: Path) -> None:
    """A real client (gradio_client in its own process) starts a long run and is killed: the studio stops the run
    and lets go of the pipeline, without writing the clip nobody will fetch."""
    url, state = server
    before = final_videos(state)
    script = (
        "import sys, json, time\n"
        "from gradio_client import Client\n"
        "job = Client(sys.argv[1], verbose=False).submit(**json.loads(sys.argv[2]), api_name='/text_to_av')\n"
        "while not any('step' in str(output[4]) for output in job.outputs()): time.sleep(0.05)\n"
        "print('running', flush=True)\n"
        "time.sleep(600)\n"
    )
    settings = json.dumps({**SETTINGS, "mode": "dev", "num_inference_steps": 60})
    with slow_steps(seconds_per_pass=0.3):  # 60 dev steps of several passes each: minutes unless stopped
        client_process = subprocess.Popen(
            [sys.executable, "-c", script, url, settings], stdout=subprocess.PIPE, text=True
        )
        try:
            assert client_process.stdout.readline().strip() == "running"
        finally:
            client_process.kill()
            client_process.wait()
        wait_until_idle(state)
    assert final_videos(state) == before


def test_serves_only_outputs_and_examples(server: tuple[str, StudioState], client: Client) -> None:
    url, state = server
    config = state.config
    final_video = client.predict(**SETTINGS, api_name="/text_to_av")[3]
    written = next(config.output_dir.rglob(Path(final_video).name))
    for path, allowed in [
        (REPO_ROOT / "app.py", False),
        (Path("/etc/passwd"), False),
        (REPO_ROOT / "ltx_pipeline" / "constants.py", False),
        (CLICK_TRACK, True),
        (written, True),
    ]:
        response = httpx.get(f"{url.rstrip('/')}/gradio_api/file={path}")
        assert (response.status_code == 200) == allowed, (path, response.status_code)


def test_model_comes_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import app

    monkeypatch.delenv("LTX_MODEL", raising=False)
    assert app.parse_args([]).model == "embedded"
    monkeypatch.setenv("LTX_MODEL", "Lightricks/LTX-2.3")
    assert app.parse_args([]).model == "Lightricks/LTX-2.3"
    assert app.parse_args(["--model", "/models/ltx.safetensors"]).model == "/models/ltx.safetensors"
    monkeypatch.setenv("LTX_CONCURRENCY", "2")
    assert app.parse_args([]).concurrency == 2


def test_num_gpus_defaults_to_1_and_a_bad_value_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    import app

    monkeypatch.delenv("LTX_NUM_GPUS", raising=False)
    args = app.parse_args(["--output-dir", str(tmp_path)])
    assert args.num_gpus == 1
    config = app.config_from_args(args)
    assert config.num_gpus == 1 and StudioState(config).context.world_size == 1
    monkeypatch.setenv("LTX_NUM_GPUS", "4")
    assert app.parse_args([]).num_gpus == 4
    # Refused before anything is launched or loaded.
    with pytest.raises(SystemExit, match=r"^error: `num_gpus` must be a positive integer; got 0\.$"):
        app.main(["--num-gpus", "0", "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"`concurrency_limit` must be 1 with `num_gpus` > 1"):
        app.main(["--num-gpus", "2", "--concurrency", "2", "--device", "cpu", "--output-dir", str(tmp_path)])
    too_many = torch.cuda.device_count() + 1
    with pytest.raises(SystemExit, match=rf"`num_gpus` must be at most the {too_many - 1} CUDA GPU\(s\)"):
        app.main(["--num-gpus", str(too_many), "--device", "cuda", "--output-dir", str(tmp_path)])


def test_speed_flags_reach_the_config_and_cuda_graphs_alone_is_a_clear_error(tmp_path: Path) -> None:
    import app

    args = app.parse_args(
        [
            "--compile",
            "--cuda-graphs",
            "--gelu-epilogue",
            "--fused-rotary",
            "--compile-vae",
            "--video-attention-backend",
            "_native_math",
        ]
    )
    speed = app.config_from_args(args).speed
    assert speed.compile and speed.cuda_graphs and speed.gelu_epilogue and speed.fused_rotary and speed.compile_vae
    assert speed.video_attention_backend == "_native_math"
    with pytest.raises(SystemExit, match=r"`cuda_graphs=True` needs `compile=True`"):
        app.main(["--cuda-graphs", "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"`compile_vae=True` cannot be combined with memory mode '24gb'"):
        app.main(["--compile-vae", "--memory-mode", "24gb", "--output-dir", str(tmp_path)])


def test_lora_options_come_from_the_flags_or_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import app

    monkeypatch.delenv("LTX_LORA_FOLDER", raising=False)
    assert app.parse_args([]).lora_folder == REPO_ROOT / "loras"
    monkeypatch.setenv("LTX_LORA_FOLDER", str(tmp_path))
    assert app.config_from_args(app.parse_args([])).lora_folder == tmp_path.resolve()
    assert app.parse_args([]).distilled_lora is None
    missing = tmp_path / "distilled.safetensors"
    with pytest.raises(SystemExit, match="`distilled_lora` file does not exist"):
        app.main(["--distilled-lora", str(missing), "--output-dir", str(tmp_path)])


def test_the_audio_limit_comes_from_its_flag_and_a_bad_one_is_refused_in_its_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import app

    assert app.config_from_args(app.parse_args([])).max_audio_duration_s == 600.0  # 10 min
    assert app.config_from_args(app.parse_args(["--max-audio-duration", "45"])).max_audio_duration_s == 45.0
    # Refused before anything is launched or loaded, naming the flag and what was given.
    for given, shown in (("0", "0.0"), ("-5", "-5.0"), ("nan", "nan"), ("inf", "inf")):
        with pytest.raises(SystemExit, match=rf"^error: --max-audio-duration must be a number of seconds >= 1 .*; "
                           rf"got {shown}\.$"):  # fmt: skip
            app.main(["--max-audio-duration", given, "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        app.parse_args(["--max-audio-duration", "ten minutes"])
    assert "argument --max-audio-duration: invalid float value: 'ten minutes'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_studio_over_2_processes_serves_a_generation_and_closes(tmp_path: Path) -> None:
    """`python app.py --num-gpus 2 --device cpu`: torchrun, 2 gloo ranks, rank 0's page, Ctrl+C ends every rank."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    log_path = tmp_path / "app.log"
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "LTX_MODEL": "embedded"}
    command = [sys.executable, "app.py", "--num-gpus", "2", "--device", "cpu", "--port", str(port)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, "--output-dir", str(tmp_path)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl+C below reaches torchrun and both ranks
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(1)
        settings = {**SETTINGS, "resolution": "128x128"}  # 16 stage-2 video tokens per latent frame: splits over 2
        final_video, status, recipe = Client(url, verbose=False).predict(**settings, api_name="/text_to_av")[3:]
        assert_clip(final_video, width=128)
        assert "Done" in status and recipe["seed"] == 3
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    log = log_path.read_text()
    assert "rank 0 left the process group" in log and "rank 1 left the process group" in log


def test_the_embedded_models_own_defaults_reach_both_endpoints(client: Client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/text_to_av", "/audio_to_video"):
        defaults = {item["parameter_name"]: item["parameter_default"] for item in endpoints[name]["parameters"]}
        # distilled, one pass a step: the embedded model's sync is no better with modality guidance
        assert defaults["modality_scale"] == 1.0
        assert (defaults["resolution"], defaults["num_frames"]) == ("128x128", 97)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seed": "abc"}, "`seed` must be a number; got 'abc'."),
        ({"image": "notes.txt"}, "`image` must be an image file (PNG, JPEG, WebP, ...); got the file 'notes.txt'."),
        # The frame index is checked against the length, not against a slider's 96: any length's last frame is valid.
        ({"image": "still.png", "image_frame_index": 100}, "`image_frame_index` must be a frame of the clip, 0 to 8"),
    ],
)
def test_a_malformed_api_value_gets_an_error_naming_the_parameter(
    client: Client, tmp_path: Path, overrides: dict, message: str
) -> None:
    from PIL import Image

    (tmp_path / "notes.txt").write_text("not a picture")
    Image.new("RGB", (64, 64), (90, 160, 40)).save(tmp_path / "still.png")
    if "image" in overrides:
        overrides = {**overrides, "image": handle_file(str(tmp_path / overrides["image"]))}
    with pytest.raises(AppError) as error:
        client.predict(**{**SETTINGS, **overrides}, api_name="/text_to_av")
    assert message in str(error.value)
    assert "upstream" not in str(error.value) and str(tmp_path) not in str(error.value)


def test_the_api_shows_no_server_paths(server: tuple[str, StudioState], client: Client, tmp_path: Path) -> None:
    url, state = server
    config_text = httpx.get(f"{url}config").text
    assert str(REPO_ROOT) not in config_text
    clip = write_clip(tmp_path / "my clip.wav", 1.0)
    final_video, _, recipe = audio_to_video(client, clip)[2:]
    assert recipe["audio"] == "my clip.wav"  # the file's name, not the server's upload folder
    written = next(state.config.output_dir.rglob(recipe["recipe_file"])).read_text()
    assert "/tmp/" not in written and str(REPO_ROOT) not in written


def test_a_truncated_clip_is_called_damaged_even_with_padding(client: Client, tmp_path: Path) -> None:
    """Half of a 1 s wav (an interrupted upload) used to pass as a 0.5 s clip and, with pad_audio, be padded."""
    whole = write_clip(tmp_path / "whole.wav", 1.0).read_bytes()
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(whole[: len(whole) // 2])
    for pad_audio in (False, True):
        with pytest.raises(AppError) as error:
            audio_to_video(client, truncated, pad_audio=pad_audio)
        message = str(error.value)
        assert "'cut.wav' is damaged: its header declares 1.00 s of audio but the file ends after 0.50 s" in message
        assert "shorter" not in message


def test_the_video_endpoints_give_new_sound_and_a_retake_over_http(client: Client, tmp_path: Path) -> None:
    from tests.test_pipeline_v2a import video_packets, write_video

    source = write_video(tmp_path / "clip.mp4")
    schedule = {key: SETTINGS[key] for key in ("negative_prompt", "seed", "randomize_seed", "mode")}
    common = {**schedule, "num_inference_steps": 30, "modality_scale": 1.0, "num_frames": None, "fit": ""}
    *_, foley, status, recipe = client.predict(
        video=handle_file(source), prompt=SETTINGS["prompt"], **common, api_name="/video_to_audio"
    )
    assert video_packets(foley) == video_packets(source) and recipe["video"] == "clip.mp4"
    assert probe_mp4(foley).audio_duration_s == pytest.approx(17 / 24, abs=0.01)
    *_, retaken, status, recipe = client.predict(
        video=handle_file(source), start_time=0.2, end_time=0.5, regenerate="video", prompt=SETTINGS["prompt"],
        **common, api_name="/retake",
    )  # fmt: skip
    assert probe_mp4(retaken).num_frames == 17 and recipe["regenerate"] == "video"
    with pytest.raises(AppError, match=r"`start_time` and `end_time` must satisfy 0 <= start < end"):
        client.predict(
            video=handle_file(source), start_time=0.5, end_time=9.0, regenerate="both", prompt=SETTINGS["prompt"],
            **common, api_name="/retake",
        )  # fmt: skip
