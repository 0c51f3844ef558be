"""Stop requests (SIGTERM, Ctrl-C) turned into an exception, so that a stopped command still finishes its outputs.

``kill``, ``timeout`` and ``docker stop`` send SIGTERM, whose default action ends the process at
once: an mp4 without its trailer, ``.part`` files, an export's staging folder, a benchmark's child
processes. Raised as an exception in the main thread instead, it unwinds through the ``with`` and
``finally`` blocks that finalise or remove them. The CLI (``pvt_deploy.cli.main``) and the benchmark
scripts (``benchmarks/common.run``) share this one policy.

A stop request asked again is a second problem: Python raises KeyboardInterrupt for every Ctrl-C, so
an impatient second Ctrl-C landed *inside* that clean-up (in the flush of a 4K mp4, ~1 s) and undid
it. So SIGINT follows SIGTERM's rule (:func:`sigterm_raises`), and the few steps that must not stop
half-way hold both signals until they are done (:func:`interrupts_deferred`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["REPEAT_S", "interrupts_deferred", "sigterm_raises"]

#: A second SIGTERM this soon after the first is the same request (``timeout`` and ``kill -TERM
#: -PGID`` signal the process and then its whole process group) and is ignored while the clean-up
#: runs; a later one ends the process at once, clean-up or not (a stuck clean-up can still be stopped).
#: Ctrl-C is counted with SIGTERM: one stop request, whichever signal asked for it.
REPEAT_S = 2.0


class _StopRequests:
    """The handler :func:`sigterm_raises` installs for SIGTERM and SIGINT (one instance, so the two
    signals share one count): the first raises, a repeat within :data:`REPEAT_S` is ignored, a later
    one gets its signal's default action."""

    def __init__(self, exception: Callable[[], BaseException], received: threading.Event) -> None:
        self.exception = exception
        self.received = received
        self.first_at: float | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.receive(signum)

    @property
    def asked(self) -> bool:
        """Whether a stop request is being handled (a signal now would be a repeat)."""
        return self.first_at is not None

    def receive(self, signum: int, *, held: bool = False) -> None:
        """Act on a signal. One that :func:`interrupts_deferred` ``held`` while a file was being
        finished is never a late repeat: that step ends by itself, and the time a repeat is judged
        by is when Python runs its handler, which a long call in C (the flush of a 4K encoder, ~1 s)
        delays past :data:`REPEAT_S` even for a Ctrl-C pressed twice in a second."""
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.received.set()
            raise self.exception()
        if not held and now - self.first_at > REPEAT_S:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


@contextlib.contextmanager
def sigterm_raises(exception: Callable[[], BaseException], *,
                   only_if_default: bool = False) -> Iterator[threading.Event]:
    """While inside, the first SIGTERM raises ``exception()`` in the main thread; a repeat within
    :data:`REPEAT_S` is ignored and a later one has SIGTERM's default action. Yields an event that is
    set once SIGTERM came. The handlers it replaced are put back on the way out (commands may run
    in-process, in tests).

    Ctrl-C keeps raising KeyboardInterrupt the first time, and its repeats get the same rule, counted
    with SIGTERM's: a second Ctrl-C while the outputs are being finalised no longer interrupts that,
    and a third one later still ends the process. This applies only where SIGINT has Python's own
    handler (not where a parent ignores it, as a shell does for background jobs).

    Outside the main thread (only it may set handlers), or with ``only_if_default`` when the parent
    process chose how SIGTERM is handled (some supervisors ignore it), SIGTERM is left as it is.
    """
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    handler = _StopRequests(exception, received)
    previous: dict[int, Any] = {}
    if not only_if_default or signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[Callable[[], bool]]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them: for steps that must not stop
    half-way, such as writing an mp4's trailer (without it the file does not play) and renaming it
    into place.

    A held signal goes to the handler the block found once the block is over: under
    :func:`sigterm_raises` a first request raises and a repeat of the request being handled is
    ignored, however late (see :meth:`_StopRequests.receive`); Python's own SIGINT handler raises
    KeyboardInterrupt; SIGTERM's default action ends the process. Yields a function that says
    whether a held signal will act, so that a long step inside (an audio remux) can give up early
    instead of making a stop wait for it. A signal that is ignored stays ignored. Only the main
    thread can take signals; elsewhere nothing is held (and no signal interrupts that thread).
    """
    held: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    def will_act() -> bool:
        return any(not (isinstance(previous[s], _StopRequests) and previous[s].asked) for s in held)

    if threading.current_thread() is not threading.main_thread():
        yield will_act
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None and handler != signal.SIG_IGN:  # None: a handler Python cannot put back
            previous[signum] = signal.signal(signum, hold)
    try:
        yield will_act
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        for number in held:  # the first that raises ends the delivery: the rest asked for the same
            old = previous[number]
            if isinstance(old, _StopRequests):
                old.receive(number, held=True)
            elif callable(old):
                old(number, None)
            elif old == signal.SIG_DFL:
                os.kill(os.getpid(), number)
