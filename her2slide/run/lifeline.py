"""Child processes that die with their parent.

The CNN engine reads tiles in DataLoader worker processes. If ``her2slide score`` is killed
(``kill -9``, the out-of-memory killer), nothing runs in it to stop them, and a worker blocked
on a full queue would wait forever holding its memory (~0.5 GB each). Two guards, either
enough on its own:

- on Linux the kernel sends the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
  set through ctypes; no dependency);
- everywhere, a daemon thread in the worker checks once a second that its parent is still
  its parent, and ends the process when it is not (the parent died and the worker was
  re-parented).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

#: linux/prctl.h
_PR_SET_PDEATHSIG = 1
#: Seconds between the watchdog's checks.
WATCH_INTERVAL_S = 1.0


def die_with_parent() -> None:
    """Make the calling process end when its parent does (the process that started it: the
    scoring process with fork, a fork server with forkserver, which dies with that process)."""
    parent = os.getppid()
    _parent_death_signal()
    if os.getppid() != parent:  # the parent died while the guard was being set
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="her2slide-lifeline", daemon=True).start()


def _parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl here: the watchdog alone guards


def _watch(parent_pid: int) -> None:
    stop = threading.Event()
    while not stop.wait(WATCH_INTERVAL_S):
        if os.getppid() != parent_pid:
            os._exit(1)
