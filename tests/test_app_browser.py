"""The studio in a real headless Chromium: both modes end to end, previews before the final video, Stop, bad inputs.

Needs Debian's browser and Playwright's Python package (no browser download):
    apt-get install -y chromium && pip install playwright==1.65.2
Run with `pytest -m browser tests/test_app_browser.py`. Skips, saying why, where no browser is installed.
"""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ltx_pipeline.media import probe_mp4
from tests.studio_server import free_port
from ui.help import format_frame_count
from ui.state import EXAMPLES_DIR, REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FRAME_RATE = 24.0  # the page's default
NUM_FRAMES = 9
CLICK_TRACK = EXAMPLES_DIR / "audio" / "click_track_120bpm.wav"
STARTUP_TIMEOUT_S = 120  # imports and the embedded model on a busy 2-core machine
RUN_TIMEOUT_MS = 120_000

# Records, in the page, when each output first shows a new file: the test then checks the order of arrival.
WATCH_OUTPUTS_JS = """
(prefix) => {
  window.__arrivals = [];
  const outputs = [["preview", `#${prefix}-preview img`], ["stage1", `#${prefix}-stage1 video`],
                   ["final", `#${prefix}-final video`]];
  const sourceOf = (selector) => {
    const element = document.querySelector(selector);
    return element && element.getAttribute("src");
  };
  const seen = new Map(outputs.map(([name, selector]) => [name, sourceOf(selector)]));  // earlier runs' files
  const watch = () => {
    for (const [name, selector] of outputs) {
      const source = sourceOf(selector);
      if (source && seen.get(name) !== source) {
        seen.set(name, source);
        const label = document.querySelector(`#${prefix}-${name}`).innerText;  // what the page calls it then
        window.__arrivals.push({name, source, label, time: performance.now()});
      }
    }
  };
  new MutationObserver(watch).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                       attributeFilter: ["src"]});
}
"""


def browser_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)")
    pytest.importorskip("playwright", reason="pip install playwright (the package only; the browser is Debian's)")


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python app.py` itself, on a free port, with the embedded model, offline."""
    browser_or_skip()
    port = free_port()
    output_dir = tmp_path_factory.mktemp("outputs")
    log_path = output_dir / "app.log"
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "LTX_MODEL": "embedded"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--output-dir", str(output_dir)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"app.py did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser(studio_url: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, studio_url: str) -> Iterator:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(studio_url)
    page.wait_for_selector("#t2av-prompt textarea", timeout=60_000)
    yield page
    context.close()


def choose(page, elem_id: str, option: str) -> None:
    """Pick `option` in a gradio dropdown."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def set_small_run(page, prefix: str) -> None:
    choose(page, f"{prefix}-resolution", "64 x 64 - smoke test - real weights only")  # the embedded model's is 128
    choose(page, f"{prefix}-frames", format_frame_count(NUM_FRAMES, FRAME_RATE))


def generate_and_check(page, prefix: str, download_dir: Path, audio_channels: int = 2) -> Path:
    """Clicks Generate, waits for the final video, checks previews came first, downloads and probes the mp4."""
    page.evaluate(WATCH_OUTPUTS_JS, prefix)
    page.locator(f"#{prefix}-generate").click()
    page.wait_for_selector(f"#{prefix}-final video[src]", timeout=RUN_TIMEOUT_MS)
    try:
        page.wait_for_function(
            f"document.querySelector('#{prefix}-status').innerText.includes('Done')", timeout=RUN_TIMEOUT_MS
        )
    except Exception:
        pytest.fail(f"no 'Done' in the status: {page.locator(f'#{prefix}-status').inner_text()!r}")
    # The step preview leaves the page once the final video is there.
    page.wait_for_function(f"!document.querySelector('#{prefix}-preview img')", timeout=30_000)
    arrivals = page.evaluate("window.__arrivals")
    names = [arrival["name"] for arrival in arrivals]
    assert "preview" in names and "stage1" in names and "final" in names, names
    first = {name: names.index(name) for name in ("preview", "stage1", "final")}
    assert first["preview"] < first["stage1"] < first["final"], names
    # Several distinct step previews arrive while it runs, not only one at the end, each called a preview.
    assert sum(name == "preview" for name in names[: first["final"]]) >= 3, names
    labels = {arrival["label"] for arrival in arrivals if arrival["name"] == "preview"}
    assert all("Preview" in label and "not the final video" in label for label in labels), labels

    with page.expect_download() as download_info:
        page.locator(f"#{prefix}-final").get_by_role("link", name="Download").or_(
            page.locator(f"#{prefix}-final").get_by_role("button", name="Download")
        ).first.click()
    path = download_dir / f"{prefix}.mp4"
    download_info.value.save_as(path)
    info = probe_mp4(path)
    assert (info.width, info.height, info.num_frames) == (64, 64, NUM_FRAMES)
    assert info.audio_codec == "flac" and info.audio_channels == audio_channels  # A2V: the clip's own
    assert info.audio_duration_s == pytest.approx(NUM_FRAMES / FRAME_RATE, abs=0.03)
    assert info.video_duration_s == pytest.approx(NUM_FRAMES / FRAME_RATE, abs=0.03)
    return path


def error_toast(page, text: str) -> None:
    """Waits for gradio's error message carrying `text`."""
    page.locator("[data-testid='toast-text']").filter(has_text=text).first.wait_for(timeout=30_000)


def test_text_to_audio_video_in_the_browser(page, tmp_path: Path) -> None:
    prompt = page.locator("#t2av-prompt textarea")
    # The page opens at the loaded model's own size and length (the embedded model's: 128 x 128, 97 frames).
    assert page.locator("#t2av-resolution input").input_value().startswith("128 x 128")
    assert page.locator("#t2av-frames input").input_value() == format_frame_count(97, 24.0)
    prompt.fill("A red ball in a bright room")
    hint = page.get_by_text("does not describe any sound")
    hint.wait_for(timeout=10_000)
    # Its suggestions are in the embedded model's words, not real weights' ("a voice, rain").
    assert "voice" not in hint.inner_text() and "rain" not in hint.inner_text()
    prompt.fill("A red ball drops on a wooden floor with a sharp thud that echoes")
    page.get_by_text("does not describe any sound").wait_for(state="hidden", timeout=10_000)

    set_small_run(page, "t2av")
    generate_and_check(page, "t2av", tmp_path)

    # A bad input is explained and the page keeps working: the prompt the user typed is still there.
    prompt.fill("x" * 5_000)
    page.locator("#t2av-generate").click()
    error_toast(page, "must be at most 4000 characters; got 5000 characters")
    page.wait_for_function(
        "document.querySelector('#t2av-status').innerText.includes('Ready for the next run')", timeout=30_000
    )
    assert len(prompt.input_value()) == 5_000


def test_stop_ends_a_run_and_the_page_stays_ready(page, tmp_path: Path) -> None:
    start_long_run(page)
    page.locator("#t2av-stop").click()
    page.wait_for_function(
        "document.querySelector('#t2av-status').innerText.includes('Ready for the next run')", timeout=30_000
    )
    time.sleep(1)  # any late status (a failure message would come now) has arrived
    status = page.locator("#t2av-status").inner_text()
    assert "Stopped" in status and "error" not in status, status  # it says it stopped, not that it failed
    assert page.locator("#t2av-final video").count() == 0
    assert page.locator("#t2av-preview img").count() == 0  # nor does its last step preview stay, like an output
    # The next run starts at once and finishes: the stopped one let go of the pipeline.
    page.locator("#t2av-mode").get_by_text("distilled", exact=True).click()
    set_small_run(page, "t2av")
    generate_and_check(page, "t2av", tmp_path)


def start_long_run(page) -> None:
    """The model's own size with 60 guided dev steps: long enough to act while it runs."""
    page.locator("#t2av-prompt textarea").fill("A bell rings in a stone hall")
    page.get_by_text("More settings").click()
    page.locator("#t2av-mode").get_by_text("dev", exact=True).click()
    page.locator("#t2av-steps input[type=number]").fill("60")
    page.locator("#t2av-steps input[type=number]").press("Enter")
    page.locator("#t2av-generate").click()
    page.wait_for_function(
        "document.querySelector('#t2av-status').innerText.includes('Stage 1/2 - step')", timeout=RUN_TIMEOUT_MS
    )


def test_a_job_waiting_behind_another_shows_its_place_and_an_estimate(browser, page, studio_url: str) -> None:
    start_long_run(page)
    other = browser.new_context().new_page()
    other.goto(studio_url)
    other.wait_for_selector("#t2av-prompt textarea", timeout=60_000)
    other.locator("#t2av-prompt textarea").fill("a red ball bounces on a wood floor with hollow knocks")
    other.locator("#t2av-generate").click()
    # gradio's tracker on the final video's box: "queue: 1/1" and a time
    other.locator("#t2av-final").get_by_text(re.compile(r"queue: \d+/\d+")).first.wait_for(timeout=30_000)
    page.locator("#t2av-stop").click()
    other.wait_for_function(
        "document.querySelector('#t2av-status').innerText.includes('Done')", timeout=RUN_TIMEOUT_MS
    )
    other.context.close()


def test_an_image_at_a_frame_with_its_crop_notice(page, tmp_path: Path) -> None:
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.new("RGB", (256, 64), (200, 200, 20)).save(wide)
    page.locator("#t2av-prompt textarea").fill("A red ball drops on a wooden floor with a sharp thud that echoes")
    set_small_run(page, "t2av")
    page.get_by_text("Start from an image (optional)").first.click()
    image = page.locator("#t2av-image")
    image.get_by_role("button", name="Capture from camera").wait_for(timeout=10_000)  # webcam beside upload
    frame_index = page.locator("#t2av-image-frame input[type=range]")
    page.wait_for_function(
        "document.querySelector('#t2av-image-frame input[type=range]').max === '8'", timeout=10_000
    )  # the slider spans the 9-frame clip

    image.locator("input[type=file]").set_input_files(str(wide))
    notice = page.locator("#t2av-image-notice")
    notice.get_by_text("is cropped at the left and right to fit the 64x64 frame; 25% of it is kept").wait_for(
        timeout=30_000
    )
    page.locator("#t2av-image-frame input[type=number]").fill("8")
    page.locator("#t2av-image-frame input[type=number]").press("Enter")
    assert frame_index.input_value() == "8"
    generate_and_check(page, "t2av", tmp_path)
    assert "25% of it is kept" in page.locator("#t2av-status").inner_text()  # said again after the run


def test_audio_to_video_in_the_browser(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Audio to video").click()
    page.wait_for_selector("#a2v-prompt textarea")

    # A file that is not audio is refused with the reader's message, before any generation.
    not_audio = tmp_path / "picture.wav"
    not_audio.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2_000))
    page.locator("#a2v-audio input[type=file]").set_input_files(str(not_audio))
    page.get_by_text("Cannot use this input").wait_for(timeout=30_000)

    page.locator("#a2v-audio").get_by_role("button", name="Clear").click()
    page.locator("#a2v-audio input[type=file]").set_input_files(str(CLICK_TRACK))
    page.get_by_text("The clip has 4.00 s of audio").wait_for(timeout=30_000)
    # The 4.00 s clip is shorter than the default 97 frames (4.04 s): the length follows it, with a notice.
    notice = page.locator("#a2v-length-notice")
    notice.get_by_text("Length set to 89 frames - 3.71 s at 24 fps").wait_for(timeout=30_000)
    assert page.locator("#a2v-frames input").input_value() == format_frame_count(89, FRAME_RATE)
    page.locator("#a2v-prompt textarea").fill("A metronome ticks on a wooden piano in a quiet room")
    set_small_run(page, "a2v")
    generate_and_check(page, "a2v", tmp_path, audio_channels=1)


def test_only_outputs_and_examples_are_served(studio_url: str) -> None:
    assert httpx.get(f"{studio_url}gradio_api/file={REPO_ROOT / 'app.py'}").status_code == 403
    assert httpx.get(f"{studio_url}gradio_api/file={CLICK_TRACK}").status_code == 200


def write_tone(path: Path, seconds: float, sampling_rate: int = 16_000, channels: int = 1) -> Path:
    import numpy as np
    import soundfile as sf

    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * time)
    sf.write(path, np.repeat(tone[:, None], channels, axis=1).astype(np.float32), sampling_rate, subtype="PCM_16")
    return path


def upload(page, path: Path) -> None:
    clear = page.locator("#a2v-audio").get_by_role("button", name="Clear")
    if clear.count():
        clear.click()
    page.locator("#a2v-audio input[type=file]").set_input_files(str(path))


def test_bad_audio_and_settings_through_the_page(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Audio to video").click()
    page.locator("#a2v-prompt textarea").fill("A speaker cone pulses in a dark room; a low tone hums")
    set_small_run(page, "a2v")
    help_text = page.locator("#a2v-audio-help")

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    upload(page, empty)
    help_text.get_by_text("is empty (0 bytes)").wait_for(timeout=30_000)
    page.locator("#a2v-generate").click()
    error_toast(page, "is empty (0 bytes)")

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(200))
    upload(page, corrupt)
    help_text.get_by_text("Cannot use this input").wait_for(timeout=30_000)
    page.locator("#a2v-generate").click()
    error_toast(page, "corrupt.wav' is not a readable audio")

    upload(page, write_tone(tmp_path / "blip.wav", 0.1))
    help_text.get_by_text("only 0.10 s of audio").wait_for(timeout=30_000)
    page.locator("#a2v-generate").click()
    error_toast(page, "shorter than the 0.38 s")

    upload(page, write_tone(tmp_path / "ten_minutes.wav", 600.0, sampling_rate=8_000))
    help_text.get_by_text("more than the longest video").wait_for(timeout=60_000)

    page.locator("#a2v-frames input").fill("100")
    page.locator("#a2v-frames input").press("Enter")
    page.locator("#a2v-generate").click()
    error_toast(page, '"Length" must be 8k+1')  # the page's label, not the Python argument

    upload(page, write_tone(tmp_path / "surround.wav", 1.0, sampling_rate=96_000, channels=8))
    # A new clip sets the length to the longest it covers (17 frames here): pick the short one after that, not
    # before it lands (the two raced, and the run made 17 frames).
    page.locator("#a2v-length-notice").get_by_text("Length set to 17 frames").wait_for(timeout=30_000)
    choose(page, "a2v-frames", format_frame_count(NUM_FRAMES, FRAME_RATE))
    help_text.get_by_text("The clip has 1.00 s of audio").wait_for(timeout=30_000)
    generate_and_check(page, "a2v", tmp_path, audio_channels=8)  # the app kept serving; all 8 channels kept (FLAC)


def download_final(page, prefix: str, path: Path) -> Path:
    """Waits for the tab's final video and status, then saves the mp4 as the page's Download gives it."""
    page.wait_for_selector(f"#{prefix}-final video[src]", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function(
        f"document.querySelector('#{prefix}-status').innerText.includes('Done')", timeout=RUN_TIMEOUT_MS
    )
    return download(page, prefix, path)


def download(page, prefix: str, path: Path) -> Path:
    """Saves the tab's final mp4 as the page's Download gives it."""
    with page.expect_download() as download_info:
        page.locator(f"#{prefix}-final").get_by_role("link", name="Download").or_(
            page.locator(f"#{prefix}-final").get_by_role("button", name="Download")
        ).first.click()
    download_info.value.save_as(path)
    return path


def test_video_to_audio_and_retake_in_the_browser(page, tmp_path: Path) -> None:
    from tests.test_pipeline_v2a import video_packets, write_video

    # Video to audio: a 20-frame video is described on upload, its usable 17 frames filled in and said so.
    page.get_by_role("tab", name="Video to audio").click()
    page.wait_for_selector("#v2a-prompt textarea")
    page.locator("#v2a-video input[type=file]").set_input_files(str(write_video(tmp_path / "ball.mp4", num_frames=20)))
    notice = page.locator("#v2a-video-notice")
    notice.get_by_text("20 frames at 24 fps").wait_for(timeout=30_000)
    notice.get_by_text("set to 17").wait_for(timeout=30_000)
    page.locator("#v2a-prompt textarea").fill("A red ball drops on a wooden floor with a sharp thud that echoes")
    page.locator("#v2a-generate").click()
    info = probe_mp4(download_final(page, "v2a", tmp_path / "v2a.mp4"))
    assert (info.width, info.height, info.num_frames) == (64, 64, 17)
    assert info.audio_codec == "flac" and info.audio_duration_s == pytest.approx(17 / 24, abs=0.03)
    assert "re-encoded" in page.locator("#v2a-status").inner_text()  # trimmed: the page says so

    # Retake of a 17-frame clip's sound between 0.2 and 0.5 s: the picture is the clip's own, copied.
    page.get_by_role("tab", name="Retake").click()
    page.wait_for_selector("#retake-prompt textarea")
    clip = write_video(tmp_path / "clip.mp4")
    page.locator("#retake-video input[type=file]").set_input_files(str(clip))
    page.locator("#retake-video-notice").get_by_text("17 frames at 24 fps").wait_for(timeout=30_000)
    page.locator("#retake-start-time input").fill("0.2")
    page.locator("#retake-end-time input").fill("0.5")
    page.locator("#retake-regenerate").get_by_text("audio", exact=True).click()
    page.locator("#retake-prompt textarea").fill("A red ball drops on a metal floor with a loud clank")
    page.locator("#retake-generate").click()
    retaken = download_final(page, "retake", tmp_path / "retake.mp4")
    assert video_packets(retaken) == video_packets(clip)
