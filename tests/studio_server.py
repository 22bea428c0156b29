"""A live studio for the API tests: the page built for a `StudioConfig`, served on a free local port."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from ui import StudioConfig, StudioState, build_demo, launch_options


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(config: StudioConfig) -> Iterator[tuple[str, StudioState]]:
    """The studio's URL and state while it serves (its model loaded first), closed afterwards."""
    state = StudioState(config)
    state.load()
    demo = build_demo(state)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(config),
    )
    try:
        yield url, state
    finally:
        demo.close()
