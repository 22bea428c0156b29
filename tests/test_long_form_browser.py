"""Long form in the studio, in a real headless Chromium (`app.py` with the embedded model, offline): a clip longer
than one window is made whole by default, said before generating, with window progress and the finished windows
playing as they come; Stop keeps the finished windows as a playable mp4.

Needs Debian's browser and Playwright's Python package, as tests/test_app_browser.py (whose fixtures start the app).
"""

import re
from pathlib import Path

import pytest

from ltx_pipeline.media import probe_mp4
from tests.test_app_browser import (  # noqa: F401 (fixtures)
    RUN_TIMEOUT_MS,
    browser,
    choose,
    download,
    studio_url,
    upload,
    write_tone,
)
from tests.test_app_browser import (
    page as page,
)
from ui.help import format_frame_count
from ui.long_form import window_count

pytestmark = pytest.mark.browser

FRAME_RATE = 24.0
WINDOW = 17  # frames of one window


def small_run(page, prefix: str) -> None:
    """64 x 64 px and windows of 17 frames."""
    choose(page, f"{prefix}-resolution", "64 x 64 - smoke test - real weights only")
    choose(page, f"{prefix}-frames", format_frame_count(WINDOW, FRAME_RATE))


def status_has(page, prefix: str, text: str, timeout: int = RUN_TIMEOUT_MS) -> None:
    page.wait_for_function(f"document.querySelector('#{prefix}-status').innerText.includes({text!r})", timeout=timeout)


def status_matches(page, prefix: str, pattern: str) -> None:
    page.wait_for_function(
        f"new RegExp({pattern!r}).test(document.querySelector('#{prefix}-status').innerText)", timeout=RUN_TIMEOUT_MS
    )


def test_a_clip_longer_than_one_window_is_made_whole_by_default(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Audio to video").click()
    page.wait_for_selector("#a2v-prompt textarea")
    upload(page, write_tone(tmp_path / "song.wav", 5.0))
    # Before generating: the whole clip is the length, with its window count.
    page.locator("#a2v-clip-notice").get_by_text("The clip lasts 5.00 s from 0 s").wait_for(timeout=30_000)
    assert "2 windows of 97 frames" in page.locator("#a2v-clip-notice").inner_text()
    assert page.locator("#a2v-duration input").input_value() == "5"
    page.locator("#a2v-windows-notice").get_by_text("5.00 s as 2 windows").wait_for(timeout=30_000)
    page.locator("#a2v-prompt textarea").fill("A speaker cone pulses in a dark room; a low tone hums")
    small_run(page, "a2v")  # the Length is one window: 17 frames make 14 of them, each quick
    page.locator("#a2v-windows-notice").get_by_text("5.00 s as 14 windows").wait_for(timeout=30_000)
    page.locator("#a2v-generate").click()
    # Window progress, then the first window playing before the whole clip is done.
    status_matches(page, "a2v", r"Window \d+ of 14")
    page.locator("#a2v-stage1").get_by_text("Finished so far: window 1 of 14").wait_for(timeout=RUN_TIMEOUT_MS)
    assert page.locator("#a2v-final video").count() == 0
    page.wait_for_selector("#a2v-final video[src]", timeout=RUN_TIMEOUT_MS)
    status_has(page, "a2v", "Done")
    assert "14 windows, 5.00 s" in page.locator("#a2v-status").inner_text()
    info = probe_mp4(download(page, "a2v", tmp_path / "whole.mp4"))
    assert (info.width, info.num_frames) == (64, 120)  # 5 s at 24 fps
    assert info.audio_duration_s == pytest.approx(5.0, abs=1e-3)


def test_stop_keeps_the_finished_windows_as_a_playable_mp4(page, tmp_path: Path) -> None:
    page.locator("#t2av-prompt textarea").fill("A red ball drops on a wooden floor with a sharp thud that echoes")
    small_run(page, "t2av")
    page.locator("#t2av-duration input").fill("16")
    page.locator("#t2av-duration input").press("Enter")
    windows = window_count(16.0, WINDOW, FRAME_RATE)
    page.locator("#t2av-windows-notice").get_by_text(f"16.00 s as {windows} windows").wait_for(timeout=30_000)
    page.locator("#t2av-timeline textarea").fill("0-8 s: a red ball bounces on wood; 8-16 s: a blue ball on metal")
    page.locator("#t2av-generate").click()
    status_matches(page, "t2av", rf"Window ([2-9]|\d\d) of {windows}")  # the first window is finished
    page.locator("#t2av-stop").click()
    status_has(page, "t2av", "Stopped after window")
    status = page.locator("#t2av-status").inner_text()
    finished = int(re.search(rf"Stopped after window (\d+) of {windows}", status)[1])
    page.wait_for_selector("#t2av-final video[src]", timeout=30_000)
    info = probe_mp4(download(page, "t2av", tmp_path / "stopped.mp4"))
    # Each window after the first adds 8 frames (17 less the 9 it shares).
    assert info.num_frames == WINDOW + 8 * (finished - 1) and finished < windows
    assert info.audio_duration_s == pytest.approx(info.num_frames / FRAME_RATE, abs=0.05)
    # The recipe says where it stopped.
    page.get_by_text("Recipe (everything needed to reproduce this clip)").last.click()
    recipe = page.locator("#t2av-recipe").inner_text()
    assert "stopped_after_window" in recipe
