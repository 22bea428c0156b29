"""`ui.pump`: a handler answers within a heartbeat while a step runs, a cancel lands at once, and a run nobody reads
is closed."""

import threading
import time

import pytest

from ui.pump import HEARTBEAT_S, pumped

HEARTBEAT = "heartbeat"


class SlowSteps:
    """A run whose steps take `step_s` each; records what happened to it."""

    def __init__(self, steps: int, step_s: float):
        self.steps, self.step_s = steps, step_s
        self.stopped = threading.Event()
        self.closed = threading.Event()
        self.done_steps = 0

    def run(self):
        try:
            for step in range(1, self.steps + 1):
                if self.stopped.is_set():
                    yield "stopped"
                    return
                time.sleep(self.step_s)
                self.done_steps = step
                yield f"step {step}"
        finally:
            self.closed.set()


def test_a_long_step_yields_heartbeats_and_a_close_returns_at_once() -> None:
    slow = SlowSteps(steps=3, step_s=3.0)
    handler = pumped(slow.run(), heartbeat=lambda: HEARTBEAT, stop=slow.stopped.set)
    started = time.monotonic()
    assert next(handler) == HEARTBEAT  # the step takes 3 s; the handler answers within a heartbeat
    assert time.monotonic() - started < HEARTBEAT_S + 2.0  # slack for a busy machine; the step takes 3 s
    started = time.monotonic()
    handler.close()  # what gradio's cancel does once the handler yields
    assert time.monotonic() - started < 2.0 and slow.stopped.is_set()  # not the 3 s step
    assert slow.closed.wait(timeout=10)  # the run ends after the step in progress, not after all three
    assert slow.done_steps == 1


def test_items_arrive_in_order_in_lockstep() -> None:
    slow = SlowSteps(steps=3, step_s=0.0)
    handler = pumped(slow.run(), heartbeat=lambda: HEARTBEAT, stop=slow.stopped.set)
    assert next(handler) == "step 1"
    time.sleep(0.2)
    assert slow.done_steps == 1  # nothing runs ahead of what was asked for
    assert [item for item in handler if item != HEARTBEAT] == ["step 2", "step 3"]
    assert not slow.stopped.is_set() and slow.closed.wait(timeout=5)


def test_a_run_nobody_reads_is_closed() -> None:
    slow = SlowSteps(steps=100, step_s=0.0)
    handler = pumped(slow.run(), heartbeat=lambda: HEARTBEAT, stop=slow.stopped.set, abandoned_s=0.3)
    assert next(handler) == "step 1"
    # The client left: gradio stops asking. The run is closed instead of holding the pipeline forever.
    assert slow.closed.wait(timeout=5) and slow.done_steps == 1


def test_an_error_in_the_run_reaches_the_handler() -> None:
    def failing():
        yield "step 1"
        raise ValueError("`num_frames` must be 8k+1")

    handler = pumped(failing(), heartbeat=lambda: HEARTBEAT, stop=lambda: None)
    assert next(handler) == "step 1"
    with pytest.raises(ValueError, match="must be 8k"):
        next(handler)


def test_a_stopped_run_lets_go_without_being_asked() -> None:
    """After Stop, gradio cancels the event and asks for nothing more: the run still ends and lets go at once."""
    slow = SlowSteps(steps=100, step_s=0.0)
    handler = pumped(slow.run(), heartbeat=lambda: HEARTBEAT, stop=slow.stopped.set, stopped=slow.stopped.is_set)
    assert next(handler) == "step 1"
    slow.stopped.set()  # the Stop button's handler sets the run's flag
    assert slow.closed.wait(timeout=5) and slow.done_steps == 1
