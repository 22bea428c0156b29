"""The studio's disk: outputs go by age and total size, stage-1 clips only while a run needs them."""

import os
import time
from pathlib import Path

import pytest

from ui import StudioConfig, StudioState
from ui.handlers import StudioHandlers
from ui.retention import STAGE_FOLDER, STAGE_LIFETIME_S, RetentionPolicy, parse_size, prune

REPO_ROOT = Path(__file__).resolve().parent.parent
WIDGETS = {
    "prompt": "a small red ball bounces on a wood floor in a small bright room, hollow knocks with short echoes",
    "negative_prompt": "",
    "num_frames": 9,
    "frame_rate": 24.0,
    "resolution": "64x64",
    "seed": 1,
    "randomize_seed": False,
    "mode": "auto",
    "num_inference_steps": 30,
    "modality_scale": 1.0,
}


def write(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(size))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_prune_removes_old_runs_then_the_oldest_beyond_the_size_limit(tmp_path: Path) -> None:
    day = 86400.0
    ancient = [write(tmp_path / "d1" / f"old.{suffix}", 10, 9 * day) for suffix in ("mp4", "json")]
    older = [write(tmp_path / "d2" / f"older.{suffix}", 400, 2 * day) for suffix in ("mp4", "json")]
    newer = [write(tmp_path / "d2" / f"newer.{suffix}", 400, 1 * day) for suffix in ("mp4", "json")]
    stale_stage = write(tmp_path / STAGE_FOLDER / "d2" / "run-stage1.mp4", 10, STAGE_LIFETIME_S + 60)
    fresh_stage = write(tmp_path / STAGE_FOLDER / "d2" / "new-stage1.mp4", 10, 60)

    removed = prune(tmp_path, RetentionPolicy(max_age_s=7 * day, max_total_bytes=1000))

    # Gone: the week-old run, the stale stage clip, then the older run (both runs' 1,600 bytes exceed 1,000).
    assert set(removed) == {*ancient, *older, stale_stage}
    assert all(path.exists() for path in [*newer, fresh_stage])
    assert not (tmp_path / "d1").exists()  # empty folders go too


def test_sizes_and_bad_policies_are_clear() -> None:
    assert parse_size("5gb") == 5 * 10**9 and parse_size("500MB") == 5 * 10**8 and parse_size("1024") == 1024
    with pytest.raises(ValueError, match="must be a size such as 5gb"):
        parse_size("lots")
    with pytest.raises(ValueError, match="must be a positive number"):
        RetentionPolicy(max_age_s=0)


def test_the_studio_keeps_outputs_within_its_policy(tmp_path: Path) -> None:
    """Two runs under a limit that holds one: after the second, only its files remain; stage clips sit apart."""
    config = StudioConfig(output_dir=tmp_path, retention=RetentionPolicy(max_total_bytes=40_000))
    handlers = StudioHandlers(StudioState(config))
    first = list(handlers.text_to_av(**WIDGETS))[-1]
    second = list(handlers.text_to_av(**WIDGETS))[-1]
    first_video, second_video = Path(first[3]), Path(second[3])
    run_bytes = second_video.stat().st_size + second_video.with_suffix(".json").stat().st_size
    assert 20_000 < run_bytes <= 40_000, f"the limit must hold one run (mp4 + recipe) but not two; one is {run_bytes}"
    assert Path(first[2]).is_relative_to(tmp_path / STAGE_FOLDER)  # stage-1 clips apart, removed after a while
    assert second_video.exists() and second_video.with_suffix(".json").exists()
    assert not first_video.exists() and not first_video.with_suffix(".json").exists()


def test_the_app_takes_the_retention_options() -> None:
    import app

    config = app.config_from_args(app.parse_args(["--keep-outputs-days", "2", "--max-outputs-size", "300mb"]))
    assert config.retention == RetentionPolicy(max_age_s=2 * 86400.0, max_total_bytes=300 * 10**6)
    with pytest.raises(ValueError, match="`--max-outputs-size` must be a size such as 5gb or 500mb; got 'x'."):
        app.config_from_args(app.parse_args(["--max-outputs-size", "x"]))


def test_uploads_of_jobs_waiting_in_the_queue_are_kept_until_their_job_starts(tmp_path: Path) -> None:
    # A job's uploads were only touched once it started, so one waiting in gradio's queue for over an hour lost its
    # input to the cache sweep. The server's lifespan now touches the uploads of the waiting jobs.
    import asyncio

    import gradio as gr
    from gradio.data_classes import PredictBodyInternal
    from gradio.queueing import Event, EventQueue
    from gradio.routes import App

    from ui.retention import keeping_queued_uploads, queued_upload_paths

    uploads = tmp_path / "uploads"
    waiting = write(uploads / "a" / "clip.wav", 10, 3000.0)
    idle = write(uploads / "b" / "other.wav", 10, 3000.0)  # uploaded, asked for by no job
    example = write(tmp_path / "examples" / "example.wav", 10, 3000.0)  # not an upload: never touched
    with gr.Blocks() as demo:
        clip, name = gr.Audio(type="filepath"), gr.Textbox()
        gr.Button().click(lambda audio, text: text, [clip, name], name)
    demo.queue()
    event = Event("session", next(iter(demo.fns.values())), None, None)
    file_input = {"path": str(waiting), "meta": {"_type": "gradio.FileData"}}
    event.data = PredictBodyInternal(data=[file_input, {"path": str(example)}], event_id="e", fn_index=0)
    waiting_jobs = EventQueue(event.concurrency_id, 1)
    waiting_jobs.queue.append(event)
    demo._queue.event_queue_per_concurrency_id[event.concurrency_id] = waiting_jobs
    assert queued_upload_paths(demo._queue) == [waiting, example]

    async def serve_briefly() -> None:
        async with keeping_queued_uploads(interval_s=0.05, upload_folder=uploads)(App.create_app(demo)):
            await asyncio.sleep(0.3)

    asyncio.run(serve_briefly())
    assert time.time() - waiting.stat().st_mtime < 60
    assert time.time() - idle.stat().st_mtime > 2900 and time.time() - example.stat().st_mtime > 2900
