"""Error messages in the words of whoever reads them: command-line flags, page labels or API parameters.

The checks (`validation`, the pipelines) name Python arguments in backticks (`num_frames`) and write settings as
`pad_audio=True`. `in_user_terms` rewrites those names for one audience and replaces server paths with file names,
so a studio user never sees where the server keeps uploads or where the package is installed.
"""

import re
from collections.abc import Mapping

# The command line's flags for each argument the pipelines name.
CLI_FLAGS = {
    "prompt": "--prompt",
    "negative_prompt": "--negative-prompt",
    "height": "--height",
    "width": "--width",
    "num_frames": "--num-frames",
    "frame_rate": "--frame-rate",
    "seed": "--seed",
    "mode": "--mode",
    "num_inference_steps": "--steps",
    "modality_scale": "--modality-scale",
    "audio": "--audio",
    "audio_start_time": "--audio-start-time",
    "pad_audio": "--pad-audio",
    "image": "--image",
    "images": "--image",
    "frame_index": "--image FRAME",
    "strength": "--image STRENGTH",
    "max_pixel_frames": "--max-pixel-frames",
}
# The pipelines' inputs a file's sound is read from; `load_audio` calls the file it reads `path`.
SOUND_FILE_KEYWORDS = ("audio", "video")


def cli_flags(option_flags: Mapping[str, str], shared: Mapping[str, str] | None = None) -> dict[str, str]:
    """One subcommand's flags: `shared` (e.g. every subcommand's options), its own options' (`option_flags`,
    keyword -> flag), CLI_FLAGS, and `path` as the flag of the file it reads sound from (`--audio`, or `--video`
    for a retake), so an unreadable file is named by the flag that gave it; without one, `path` stays as it is."""
    flags = dict(shared or {}) | dict(option_flags) | CLI_FLAGS
    for keyword in SOUND_FILE_KEYWORDS:
        if keyword in option_flags:
            flags["path"] = option_flags[keyword]
    return flags


_BACKTICKED = re.compile(r"`([A-Za-z_][A-Za-z0-9_.\[\]]*)`")
_SETTING = re.compile(r"\b([a-z_]+)=(True|False|[-\w.]+)")
# An absolute path (or a quoted one): a slash-separated run with at least two parts.
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"`/,;()]+/)+([^\s'\"`/,;()]+)")


def in_user_terms(message: str, names: Mapping[str, str], hide_paths: bool = False, quote: str = "`{}`") -> str:
    """`message` with each named argument written as `names` spells it (inside `quote`), and, with `hide_paths`,
    every absolute path cut to its file name."""

    def name(match: re.Match) -> str:
        # `images[0].frame_index` is the argument `frame_index` to whoever gave one image
        argument = match[1] if match[1] in names else match[1].rsplit(".", 1)[-1]
        return quote.format(names[argument]) if argument in names else match[0]

    def setting(match: re.Match) -> str:
        argument, value = match[1], match[2]
        if argument not in names:
            return match[0]
        spelled = names[argument]
        if spelled.startswith("--"):  # flags: `--pad-audio`, `--num-frames 97`
            return spelled if value == "True" else f"{spelled} {value}"
        if value in ("True", "False"):  # page checkboxes: "Pad a short clip with silence" on
            return f"{quote.format(spelled)} {'on' if value == 'True' else 'off'}"
        return f"{quote.format(spelled)} = {value}"

    message = _BACKTICKED.sub(name, message)
    message = _SETTING.sub(setting, message)
    if hide_paths:
        message = _PATH.sub(lambda match: match[1], message)
    return message


def without_paths(value: object) -> object:
    """A recipe (or any JSON-like value) with every absolute path inside its strings cut to the file name."""
    if isinstance(value, str):
        return _PATH.sub(lambda match: match[1], value)
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(item) for item in value]
    return value
