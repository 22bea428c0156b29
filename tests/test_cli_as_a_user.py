"""The command line as a user meets it: the README's examples as written, and bad inputs, in real subprocesses."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ltx_pipeline.__main__ import main
from ltx_pipeline.media import probe_mp4

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_cli(arguments: list[str], cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    environment.pop("LTX_MAX_PIXEL_FRAMES", None)
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout_s
    )


def readme_cli_examples() -> list[list[str]]:
    """The commands of the README's "Command line" section, split as a shell would."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Command line") :]
    section = section[: section.index("\n## ", 1)]
    return [shlex.split(line)[1:] for line in re.findall(r"^python -m ltx_pipeline .+$", section, re.MULTILINE)]


@pytest.mark.slow  # four generations in fresh processes: 20-30 s on an idle 2-core CPU, minutes when it is shared
def test_the_readmes_examples_run_as_written_on_the_embedded_model(tmp_path):
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    examples = readme_cli_examples()
    assert [example[2] for example in examples] == ["t2av", "a2v", "v2a", "retake"]
    for arguments in examples:
        result = run_cli(arguments, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        (tmp_path / f"{arguments[2]}.log").write_text(result.stderr)
        output = tmp_path / arguments[arguments.index("--output") + 1]
        info = probe_mp4(output)
        # The embedded model's own size; the a2v clip (4.00 s) gets the longest length it covers: 89 frames; v2a and
        # retake take the t2av example's clip.
        assert (info.width, info.height, info.frame_rate) == (128, 128, 24.0)
        assert info.num_frames == (89 if arguments[2] == "a2v" else 97)
        assert info.audio_duration_s == pytest.approx(info.num_frames / 24, abs=1e-3)
    assert "using --num-frames 89" in (tmp_path / "a2v.log").read_text()


def test_a_huge_frame_count_is_one_line_naming_the_flags_and_the_limit_and_exit_2(tmp_path):
    """800,000,001 frames ended in an allocator error and a traceback (exit 1): now refused before loading (the
    error is the only line: no "model: ..." line, which follows loading)."""
    arguments = ["-m", "ltx_pipeline", "t2av", "--prompt", "a red ball", "--num-frames", "800000001"]
    result = run_cli(arguments, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: `--height` x `--width` x `--num-frames` must be at most 4,210,688 pixel-frames per job on this "
        "server (the CPU default; at 128 x 128 up to 257 frames fit); got 128 x 128 x 800000001 = 13,107,200,016,384."
    ]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["--height", "6400", "--width", "6400"], ["at most 4,210,688 pixel-frames", "6400 x 6400 x 97"]),
        (["--num-frames", "abc"], ["argument --num-frames: invalid int value: 'abc'"]),
        (["--num-frames", "100"], ["`--num-frames` must be 8k+1"]),
        (["--max-pixel-frames", "10"], ["`--max-pixel-frames` must be a whole number of at least"]),
    ],
)
def test_every_input_error_is_one_line_naming_the_flag_and_exit_2(tmp_path, capsys, monkeypatch, arguments, fragments):
    monkeypatch.delenv("LTX_MAX_PIXEL_FRAMES", raising=False)
    command = ["t2av", "--prompt", "a red ball", *arguments, "--output", str(tmp_path / "x.mp4")]
    try:
        code = main(command)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "x.mp4").exists()


def test_a_short_a2v_clip_names_the_flags_that_fix_it(tmp_path, capsys):
    clip = REPO_ROOT / "examples" / "audio" / "drum_pattern_120bpm.wav"
    command = ["a2v", "--audio", str(clip), "--prompt", "a red ball", "--num-frames", "97"]
    assert main([*command, "--output", str(tmp_path / "x.mp4")]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and "Traceback" not in message
    assert "--pad-audio" in message and "--num-frames 97" in message and "pad_audio" not in message, message


@pytest.mark.parametrize(("command", "flag"), [("a2v", "--audio"), ("retake", "--video")])
def test_an_unreadable_file_is_named_by_the_flag_that_gave_it(tmp_path, capsys, command, flag):
    """`load_audio` calls the file it reads `path`; the command line names the flag the user gave it with."""
    empty = tmp_path / "empty.wav"
    empty.touch()
    arguments = [command, flag, str(empty), "--prompt", "a red ball", "--output", str(tmp_path / "x.mp4")]
    if command == "retake":
        arguments += ["--regenerate", "audio", "--start-time", "0", "--end-time", "0.2"]
    assert main(arguments) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"error: `{flag}` ") and "empty" in message and "--output" not in message, message
    assert not (tmp_path / "x.mp4").exists()
