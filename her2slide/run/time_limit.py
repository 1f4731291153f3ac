"""A time limit for one slide of a batch, in whichever thread scores it.

A slide that hangs (a network share that stalls, a decoder that loops) must not hold a batch
for ever. When the limit passes, a timer thread asks the interpreter to raise
:class:`~her2slide.errors.SlideTimeout` in the thread scoring the slide (the main thread of a
serial batch, a worker thread on Dask) with ``PyThreadState_SetAsyncExc``. It is raised at that
thread's next Python instruction: between tiles at the latest, since each tile's work is native
code that returns within seconds (a call blocked for ever inside a native library is not
interrupted). SlideTimeout is a BaseException, so the clean-up runs as after Ctrl-C: the staging
folder is removed, the DataLoader workers are stopped, an earlier result stays.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from her2slide.errors import SlideTimeout


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``SlideTimeout`` in this thread if the block runs longer than ``seconds`` (None: no limit)."""
    if seconds is None:
        yield
        return
    thread = threading.get_ident()
    guard = threading.Lock()
    running = [True]

    def expire() -> None:
        with guard:
            if running[0]:
                _raise_in(thread, SlideTimeout)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with guard:
            running[0] = False
            _raise_in(thread, None)  # withdraw one set just now and not yet raised
        timer.cancel()


def _raise_in(thread: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None if exc is None else ctypes.py_object(exc))
