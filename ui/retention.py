"""How long the studio keeps what it writes: outputs by age and total size, stage-1 clips only while a run needs them,
uploads while a job uses them.

Each run writes an mp4 and its recipe (and a stage-1 mp4 shown during the run); nothing removed them, so a public
studio filled its disk. `prune` removes the oldest outputs first until both limits hold; it runs after every
finished run, so the folder never holds more than one run beyond the limits.

Uploads live in gradio's cache, which removes every file `UPLOAD_LIFETIME_S` after its inode last changed. An upload
no job uses goes that long after it arrived; `using_uploads` touches the files a job reads when it starts and when it
ends, so a job never loses its input to the sweep and a clip kept on the page for another run stays an hour after its
last use. A job still waiting in gradio's queue has not started: `keeping_queued_uploads` (the server's lifespan)
touches the uploads of waiting jobs every `QUEUED_UPLOAD_TOUCH_S`, so a long queue does not cost a job its input.
"""

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio.utils

logger = logging.getLogger(__name__)

STAGE_FOLDER = "stage1"  # under the output folder: stage-1 clips, removed after STAGE_LIFETIME_S unless kept
STAGE_LIFETIME_S = 3600.0  # s: long enough for the page to play a run's stage-1 clip, short enough not to pile up
UPLOAD_LIFETIME_S = 3600  # s: an upload no job has used for this long is removed (gradio's cache sweep)
UPLOAD_SWEEP_S = 600  # s between gradio's sweeps of its cache
QUEUED_UPLOAD_TOUCH_S = UPLOAD_SWEEP_S / 2  # s between touches of waiting jobs' uploads: twice per sweep
SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


@dataclass(frozen=True)
class RetentionPolicy:
    """Outputs older than `max_age_s` go, then the oldest until the folder holds at most `max_total_bytes`."""

    max_age_s: float = 7 * 86400.0  # a week
    max_total_bytes: int = 5 * 10**9  # 5 GB
    keep_stage_files: bool = False  # keep stage-1 clips like outputs (else removed after STAGE_LIFETIME_S)

    def __post_init__(self) -> None:
        if not isinstance(self.max_age_s, (int, float)) or not self.max_age_s > 0:
            raise ValueError(f"`max_age_s` (--keep-outputs-days) must be a positive number; got {self.max_age_s!r}.")
        if isinstance(self.max_total_bytes, bool) or not isinstance(self.max_total_bytes, int):
            raise ValueError(f"`max_total_bytes` must be a whole number of bytes; got {self.max_total_bytes!r}.")
        if self.max_total_bytes <= 0:
            raise ValueError(f"`max_total_bytes` (--max-outputs-size) must be positive; got {self.max_total_bytes}.")


def parse_size(text: str) -> int:
    """'5gb', '500mb', '1024' (bytes) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b)?\s*", str(text).lower())
    if match is None:
        raise ValueError(f"`--max-outputs-size` must be a size such as 5gb or 500mb; got {text!r}.")
    return int(float(match[1]) * SIZE_UNITS[match[2] or "b"])


def _run_files(folder: Path) -> list[list[Path]]:
    """The output folder's runs, each as its files (an mp4 and its recipe share a stem), oldest first."""
    runs: dict[Path, list[Path]] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            runs.setdefault(path.with_suffix(""), []).append(path)
    return sorted(runs.values(), key=lambda files: max(path.stat().st_mtime for path in files))


def prune(folder: Path, policy: RetentionPolicy, now: float | None = None, keep: Iterable[Path] = ()) -> list[Path]:
    """Removes what `policy` no longer keeps under `folder`, except the files in `keep` (the run just made, whose
    client has yet to fetch them: they count towards the size, and go after the next run); returns the removed
    files."""
    keep = {Path(path).resolve() for path in keep}
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    removed: list[Path] = []
    stage_folder = folder / STAGE_FOLDER
    runs = _run_files(folder)
    total = sum(path.stat().st_size for files in runs for path in files)
    for files in runs:
        newest = max(path.stat().st_mtime for path in files)
        is_stage = stage_folder in files[0].parents
        expired = now - newest > (STAGE_LIFETIME_S if is_stage and not policy.keep_stage_files else policy.max_age_s)
        if any(path.resolve() in keep for path in files):
            continue
        if expired or total > policy.max_total_bytes:
            for path in files:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)
                removed.append(path)
    for directory in sorted((path for path in folder.rglob("*") if path.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    if removed:
        logger.info("Retention: removed %d file(s) from %s", len(removed), folder)
    return removed


def _touch(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            os.utime(path)  # sets the inode's change time too, which gradio's sweep reads
        except OSError:  # removed meanwhile: the job itself reports a missing file
            pass


def _uploads(paths: Iterable[Path], upload_folder: Path | None) -> list[Path]:
    """Those of `paths` under `upload_folder` (gradio's own by default): examples and outputs are never touched."""
    folder = Path(upload_folder or gradio.utils.get_upload_folder()).resolve()
    return [path for path in map(Path, paths) if path.resolve().is_relative_to(folder)]


@contextmanager
def using_uploads(paths: Iterable[Path], upload_folder: Path | None = None) -> Iterator[None]:
    """While a job reads `paths`, and for `UPLOAD_LIFETIME_S` after it ends, gradio's sweep keeps those of them that
    are uploads (under `upload_folder`, gradio's own by default); other files (examples) are left untouched."""
    paths = _uploads(paths, upload_folder)
    _touch(paths)
    try:
        yield
    finally:
        _touch(paths)


def _named_files(value: Any) -> Iterator[Path]:
    """The files a request's payload names: gradio sends each file input as a dict with its server-side `path`."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield Path(value["path"])
        for item in value.values():
            yield from _named_files(item) if isinstance(item, (dict, list, tuple)) else ()
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _named_files(item)


def queued_upload_paths(queue: Any) -> list[Path]:
    """The files named by the inputs of the jobs waiting in gradio's `queue` (a `gradio.queueing.Queue`)."""
    paths: list[Path] = []
    for event_queue in list(queue.event_queue_per_concurrency_id.values()):
        for event in list(event_queue.queue):
            if event.data is not None:
                paths.extend(_named_files(event.data.data))
    return paths


def keeping_queued_uploads(interval_s: float = QUEUED_UPLOAD_TOUCH_S, upload_folder: Path | None = None) -> Any:
    """A lifespan for the studio's server (`demo.launch(app_kwargs={"lifespan": ...})`): while it runs, every
    `interval_s` the uploads of the jobs waiting in its queue are touched, so gradio's sweep keeps them until their job
    starts (`using_uploads` keeps them from then on)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        async def keep() -> None:
            while True:
                await asyncio.sleep(interval_s)
                queue = getattr(app.get_blocks(), "_queue", None)
                if queue is not None:
                    _touch(_uploads(queued_upload_paths(queue), upload_folder))

        task = asyncio.create_task(keep())
        try:
            yield
        finally:
            task.cancel()

    return lifespan
