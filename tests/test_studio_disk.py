"""The studio's disk as its users meet it, over HTTP: uploads no job used expire, outputs go by total size.

The page uploads a file once (`/gradio_api/upload`) and sends its server path with every run; gradio's cache sweep
removes files by the age of their inode. Here the sweep runs every second with a lifetime of a few seconds, and the
outputs may take 40 kB, which holds one small run (20-40 kB, as tests/test_retention.py checks) but not two.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client

from tests.studio_server import served
from ui import StudioConfig
from ui.retention import STAGE_FOLDER, RetentionPolicy

UPLOAD_LIFETIME_S = 6  # s: short, so the test sees the sweep (the studio's default is an hour)
OUTPUTS_LIMIT_BYTES = 40_000
SETTINGS = {
    "prompt": "a red ball drops on a wooden floor with a loud thud",
    "negative_prompt": "",
    "num_frames": 9,
    "frame_rate": 25.0,
    "resolution": "64x64",
    "seed": 3,
    "randomize_seed": False,
    "mode": "distilled",
    "num_inference_steps": 30,
    "modality_scale": 3.0,
    "audio_start_time": 0.0,
    "pad_audio": False,
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Client]]:
    config = StudioConfig(
        output_dir=tmp_path_factory.mktemp("outputs"),
        upload_sweep=(1, UPLOAD_LIFETIME_S),
        retention=RetentionPolicy(max_total_bytes=OUTPUTS_LIMIT_BYTES),
    )
    with served(config) as (url, _):
        yield url, Client(url, verbose=False), config.output_dir


def upload(url: str, path: Path) -> Path:
    """What the page does when a file is dropped on it: the server's copy's path."""
    with path.open("rb") as file:
        response = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files=[("files", (path.name, file))])
    response.raise_for_status()
    return Path(response.json()[0])


def tone(path: Path, pitch: float) -> Path:
    time_s = np.arange(8000) / 16_000
    sf.write(path, (0.3 * np.sin(2 * np.pi * pitch * time_s)).astype(np.float32), 16_000, subtype="PCM_16")
    return path


def test_an_upload_no_job_used_expires_and_one_a_job_used_stays(studio: tuple, tmp_path: Path) -> None:
    url, client, _ = studio
    unused = upload(url, tone(tmp_path / "unused.wav", 330.0))
    used = upload(url, tone(tmp_path / "used.wav", 440.0))
    assert unused.is_file() and used.is_file()
    time.sleep(UPLOAD_LIFETIME_S / 2)  # the run starts well after both arrived (an order of events, not a speed)
    # The server's copy, as the page sends it again for each run (no new upload).
    audio = {"path": str(used), "orig_name": used.name, "meta": {"_type": "gradio.FileData"}}
    status = client.predict(audio=audio, **SETTINGS, api_name="/audio_to_video")[3]
    assert "Done" in status, status
    deadline = time.monotonic() + 120  # a hang guard: the sweep runs every second
    while unused.exists():
        assert time.monotonic() < deadline, "an upload no job used was never removed"
        time.sleep(0.05)
    assert used.is_file(), "the upload the run used went with the unused one, though it was used since"


def test_outputs_beyond_the_size_limit_go_oldest_first(studio: tuple) -> None:
    _, client, output_dir = studio
    settings = {key: SETTINGS[key] for key in SETTINGS if key not in ("audio_start_time", "pad_audio")}
    first = Path(client.predict(**settings, api_name="/text_to_av")[3])
    second = Path(client.predict(**settings, api_name="/text_to_av")[3])
    kept = {path.name for path in output_dir.rglob("*") if path.is_file() and STAGE_FOLDER not in path.parts}
    assert kept == {second.name, second.with_suffix(".json").name}, kept  # the newest run, its recipe beside it
    assert first.name != second.name
