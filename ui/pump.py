"""Runs a generation handler's generator in a worker thread, so the event answers within a heartbeat.

Gradio advances a generator handler one `next()` at a time, and both its cancel route (`job.cancel()` from
gradio_client, the page's Stop) and a closing client wait for the `next()` in progress: a denoising step of more
than ~5 s made `job.cancel()` time out. Here the worker runs the generator and hands over what it yields; the
handler yields those, or a no-change update every `HEARTBEAT_S`, so a cancel lands within a heartbeat. Work nobody
reads any more (the client went away and gradio stopped pulling) is stopped at its next step.
"""

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

logger = logging.getLogger(__name__)

HEARTBEAT_S = 0.5  # s: the longest the handler goes without yielding, so the longest a cancel waits
ABANDONED_S = 30.0  # s without a request (gradio asks again right after each yield while its client listens)

Item = TypeVar("Item")
_DONE = object()
_WANT = object()
_CLOSE = object()


def pumped(
    updates: Iterator[Item],
    heartbeat: Callable[[], Item],
    stop: Callable[[], object],
    abandoned_s: float = ABANDONED_S,
    stopped: Callable[[], bool] = lambda: False,
) -> Iterator[Item]:
    """Yields what `updates` yields, in lockstep (the worker advances `updates` only when asked for the next item,
    as gradio would itself), and `heartbeat()` whenever the item asked for takes longer than `HEARTBEAT_S`.

    Closing this generator (Stop, a cancel) calls `stop()` (e.g. the pipeline's cancel flag, so the step in progress
    is the last) and the worker then closes `updates`, whose own clean-up (returning the pipeline to the pool) runs
    in the worker. Nobody asking for an item for `abandoned_s` (the client went away and gradio stopped pulling)
    closes `updates` the same way. Once `stopped()` is true (Stop was clicked: gradio cancels the event and asks for
    nothing more) the worker runs `updates` to its end unasked, so the stopped run lets go of its pipeline at once.
    An exception from `updates` is raised here.
    """
    requests: queue.Queue = queue.Queue()  # WANT or CLOSE, from this generator to the worker
    results: queue.Queue = queue.Queue()  # (item, error), from the worker

    def work() -> None:
        try:
            while True:
                waited_s = 0.0
                while True:
                    try:
                        request = requests.get(timeout=HEARTBEAT_S)
                        break
                    except queue.Empty:
                        waited_s += HEARTBEAT_S
                    if stopped():  # run to the end unasked: a stopped run ends within its step, then lets go
                        request = _WANT
                        break
                    if waited_s >= abandoned_s:
                        logger.info("Nobody asked for this run's output for %.0f s (the client left).", waited_s)
                        return
                if request is _CLOSE:
                    return
                try:
                    item = next(updates)
                except StopIteration:
                    results.put((_DONE, None))
                    return
                results.put((item, None))
        except BaseException as error:  # handed to the handler, which raises it
            results.put((_DONE, error))
        finally:
            updates.close()

    # The worker runs in a copy of this context: gradio finds the event's progress tracker there.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(work,), name="generation", daemon=True)
    worker.start()
    finished = False
    try:
        while True:
            requests.put(_WANT)
            while True:
                try:
                    item, error = results.get(timeout=HEARTBEAT_S)
                    break
                except queue.Empty:
                    yield heartbeat()
            if error is not None:
                finished = True
                raise error
            if item is _DONE:
                finished = True
                return
            yield item
    finally:
        if not finished:
            stop()
            requests.put(_CLOSE)
