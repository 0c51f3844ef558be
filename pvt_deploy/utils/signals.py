"""SIGTERM turned into an exception, so that a stopped command still finishes its outputs.

``kill``, ``timeout`` and ``docker stop`` send SIGTERM, whose default action ends the process at
once: an mp4 without its trailer, ``.part`` files, an export's staging folder, a benchmark's child
processes. Raised as an exception in the main thread instead, it unwinds through the ``with`` and
``finally`` blocks that finalise or remove them. The CLI (``pvt_deploy.cli.main``) and the benchmark
scripts (``benchmarks/common.run``) share this one policy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["REPEAT_S", "sigterm_raises"]

#: A second SIGTERM this soon after the first is the same request (``timeout`` and ``kill -TERM
#: -PGID`` signal the process and then its whole process group) and is ignored while the clean-up
#: runs; a later one ends the process at once, clean-up or not (a stuck clean-up can still be stopped).
REPEAT_S = 2.0


@contextlib.contextmanager
def sigterm_raises(exception: Callable[[], BaseException], *,
                   only_if_default: bool = False) -> Iterator[threading.Event]:
    """While inside, the first SIGTERM raises ``exception()`` in the main thread; a repeat within
    :data:`REPEAT_S` is ignored and a later one has SIGTERM's default action. Yields an event that is
    set once SIGTERM came. The handler it replaced is put back on the way out (commands may run
    in-process, in tests).

    Outside the main thread (only it may set handlers), or with ``only_if_default`` when the parent
    process chose how SIGTERM is handled (some supervisors ignore it), nothing changes.
    """
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread() or (
            only_if_default and signal.getsignal(signal.SIGTERM) != signal.SIG_DFL):
        yield received
        return
    first_at: list[float] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not first_at:
            first_at.append(now)
            received.set()
            raise exception()
        if now - first_at[0] > REPEAT_S:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
