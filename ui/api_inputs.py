"""Named errors for values gradio itself cannot read, before any handler runs.

An API call with a seed of "abc" or a text file as the image fails inside the component's own `preprocess`, and
gradio answers with a generic "The upstream app has raised an exception". Each wrapped component instead raises a
`gr.Error` naming its API parameter, what it received and what it takes, without a traceback in the log.
"""

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr

logger = logging.getLogger(__name__)

MAX_SHOWN_CHARS = 60  # a received value longer than this is cut in the message

# What each kind of component takes, for the message.
EXPECTED = {
    gr.Number: "a number",
    gr.Slider: "a number",
    gr.Image: "an image file (PNG, JPEG, WebP, ...)",
    gr.Audio: "an audio file (wav, flac, ogg, mp3, ...) or a video with a sound track",
    gr.Checkbox: "true or false",
    gr.Video: "a video file (mp4, webm, mov)",
}


def _received(payload: Any) -> str:
    """The value as the caller sent it, by file name for uploads (never the server's copy's path)."""
    name = getattr(payload, "orig_name", None) or getattr(payload, "path", None)
    if name:
        return f"the file {Path(str(name)).name!r}"
    shown = repr(payload)
    return shown if len(shown) <= MAX_SHOWN_CHARS else shown[:MAX_SHOWN_CHARS] + "..."


def _named(preprocess: Callable[[Any], Any], name: str, expected: str) -> Callable[[Any], Any]:
    def checked(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Exception as error:
            message = f"`{name}` must be {expected}; got {_received(payload)}."
            logger.info("Refused an input: %s (%s)", message, type(error).__name__)
            raise gr.Error(message, title="Please check the inputs", print_exception=False) from None

    return checked


def _any_number(payload: Any) -> Any:
    """No bounds: the handler checks the value against the other inputs (a frame index against the length)."""
    return payload


def name_input_errors(components: Mapping[str, gr.components.Component], unbounded: tuple[str, ...] = ()) -> None:
    """Wraps each component's `preprocess` so a value it cannot read is an error naming `name` (its API parameter).
    Components named in `unbounded` pass any value on to the handler, which checks it with the other inputs."""
    for name, component in components.items():
        expected = next((text for kind, text in EXPECTED.items() if isinstance(component, kind)), None)
        if expected is None:
            continue
        preprocess = _any_number if name in unbounded else component.preprocess
        component.preprocess = _named(preprocess, name, expected)
