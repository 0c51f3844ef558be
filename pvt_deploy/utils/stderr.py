"""One hold on the process's stderr (file descriptor 2) for every part that keeps a library's lines off it.

Libraries print on descriptor 2 themselves, below Python's ``sys.stderr``: libpng inside OpenCV's PNG decoder
('libpng error: ...'), PyTorch's profiler ('STAGE:... ActivityProfilerController.cpp...'), ONNX Runtime's log.
A part that keeps such lines off the terminal points descriptor 2 at a file (the stand-in) for a while and writes
back what else was said there. Descriptor 2 is the process's, not a thread's: parts doing so each on their own
(a PNG decoded on a reader thread while ``--device auto`` probed the CUDA provider) put back, when their windows
crossed, what they had found there, which was the other's file, and every C-level line said from then on (FFmpeg's,
ONNX Runtime's, a crash's faulthandler's) went into a deleted file; and the probe kept another thread's lines.

:func:`stderr_held` is the one mechanism: the holds of all threads share one stand-in, made once a process;
descriptor 2 is put back when the last open hold ends, whatever order they end in. Each hold names the lines it
drops and reads what was said in its window (:attr:`HeldStderr.said`). What no hold drops is written back on the
real stderr, in the order it came, as soon as every hold whose window it fell in has ended: a long hold (the
probe's session start) delays only the lines said inside its own window. Where descriptor 2 cannot be copied
(closed), a hold holds nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

__all__ = ["HeldStderr", "stderr_held"]


class HeldStderr:
    """One hold's window on the stand-in: the lines it drops (``drop(line)``, a line with its end), and, once the
    hold has ended, :attr:`said`: all that was written on descriptor 2 in its window, by any thread, as text
    (undecodable bytes replaced), dropped lines included; empty where stderr could not be held."""

    def __init__(self, drop: Callable[[str], bool]) -> None:
        self.drop = drop
        self.said = ""
        self.start = 0  # offsets in the stand-in: where the window begins and, once ended, where it ended
        self.end = 0


class _Hold:
    """The process's hold, under :data:`_lock`."""

    def __init__(self) -> None:
        self.real: int | None = None  # a copy of the real descriptor 2, while any hold is open
        self.fds: tuple[int, int] | None = None  # the stand-in: the end written through descriptor 2, the read end
        self.open: list[HeldStderr] = []
        self.ended: list[HeldStderr] = []  # ended holds whose windows reach into what is not written back yet
        self.base = 0  # the stand-in's offset of pending[0]
        self.pending = bytearray()  # read from the stand-in and not written back yet


_lock = threading.Lock()
_hold = _Hold()


@contextlib.contextmanager
def stderr_held(drop: Callable[[str], bool]) -> Iterator[HeldStderr]:
    """Inside, what is written on the process's stderr (descriptor 2: C libraries and Python alike) goes to a
    stand-in; the lines for which ``drop`` is true are left out, the rest is written on the real stderr in its
    order, once no hold open when it was said can drop it any more. The yielded :class:`HeldStderr` has what
    was said in the window as the block ends. Holds nest and cross on any threads."""
    window = HeldStderr(drop)
    began = _begin(window)
    try:
        yield window
    finally:
        if began:
            _end(window)


def _flush_python_stderr() -> None:
    """What Python holds for ``sys.stderr`` is written, before descriptor 2 changes or its stand-in is read."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or None (pythonw)
        sys.stderr.flush()


def _begin(window: HeldStderr) -> bool:
    _flush_python_stderr()
    with _lock:
        hold = _hold
        if not hold.open:
            try:
                real = os.dup(2)  # first: where descriptor 2 is closed, the stand-in is not made as descriptor 2
            except OSError:
                return False
            try:
                if hold.fds is None:
                    hold.fds = _stand_in()
                os.dup2(hold.fds[0], 2)
            except OSError:
                os.close(real)
                return False
            hold.real = real
        assert hold.fds is not None
        window.start = os.lseek(hold.fds[0], 0, os.SEEK_CUR)  # descriptor 2 shares the offset
        hold.open.append(window)
        return True


def _end(window: HeldStderr) -> None:
    _flush_python_stderr()  # Python's writes inside the window, into it
    with _lock:
        hold = _hold
        if window not in hold.open:  # a hold begun before this process forked: the child's stderr is its own
            return
        assert hold.fds is not None and hold.real is not None
        hold.open.remove(window)
        _read(hold)
        window.end = hold.base + len(hold.pending)
        window.said = hold.pending[window.start - hold.base:].decode("utf-8", "replace")
        hold.ended.append(window)
        _write_back(hold, hold.real)
        if not hold.open:
            # The real stderr back once what was held is written, not before: a thread that said a line in a window
            # and says its next as the last hold ends would have that one first. What is said while it is written
            # (after every window) follows it.
            os.dup2(hold.real, 2)
            os.close(hold.real)
            hold.real = None
            _read(hold)
            _write_back(hold, 2)
            os.ftruncate(hold.fds[0], 0)  # all written back: the stand-in starts empty again
            os.lseek(hold.fds[0], 0, os.SEEK_SET)
            os.lseek(hold.fds[1], 0, os.SEEK_SET)
            hold.base = 0
            hold.ended.clear()


def _read(hold: _Hold) -> None:
    """What was written on the stand-in since it was last read, onto :attr:`_Hold.pending`."""
    assert hold.fds is not None
    while chunk := os.read(hold.fds[1], 1 << 16):
        hold.pending += chunk


def _write_back(hold: _Hold, to: int) -> None:
    """Write on ``to`` (the real stderr) what was said before the earliest open window began, whole lines (all of
    it where none is open), less the lines an ended window they fall in drops."""
    if hold.open:
        upto = min(w.start for w in hold.open) - hold.base
        upto = hold.pending.rfind(b"\n", 0, upto) + 1
    else:
        upto = len(hold.pending)
    kept = bytearray()
    at = hold.base
    for line in bytes(hold.pending[:upto]).splitlines(keepends=True):
        text: str | None = None
        for w in hold.ended:
            if w.start < at + len(line) and at < w.end:
                text = line.decode("utf-8", "replace") if text is None else text
                if w.drop(text):
                    break
        else:
            kept += line
        at += len(line)
    del hold.pending[:upto]
    hold.base += upto
    hold.ended = [w for w in hold.ended if w.end > hold.base]
    with contextlib.suppress(OSError):  # stderr gone (a closed pipe): nothing more to say it on
        view = memoryview(kept)
        while view:
            view = view[os.write(to, view):]


def _stand_in() -> tuple[int, int]:
    """The stand-in, a temporary file opened twice: the end descriptor 2 is pointed at (its offset shared with every
    writer), and one read from at an offset of its own while others write on."""
    written, path = tempfile.mkstemp(prefix="pvt-deploy-stderr-")
    try:
        read = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        os.close(written)
        os.unlink(path)
        raise
    try:
        os.unlink(path)
    except OSError:  # Windows: an open file is not removed; it is as the process exits
        atexit.register(_remove, path, written, read)
    return written, read


def _remove(path: str, *fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)


def _before_fork() -> None:
    _lock.acquire()  # the hold is whole in the child: no thread is midway through changing it


def _after_fork_in_parent() -> None:
    _lock.release()


def _after_fork_in_child() -> None:
    """A forked child's stderr its own again where the fork came inside a hold (the threads that would end the
    holds are not in the child, and the parent writes back what its stand-in has), and no stand-in (the parent's
    is shared: the child makes its own)."""
    global _lock, _hold
    hold = _hold
    if hold.real is not None:
        with contextlib.suppress(OSError):
            os.dup2(hold.real, 2)
            os.close(hold.real)
    for fd in hold.fds or ():
        with contextlib.suppress(OSError):
            os.close(fd)
    _hold = _Hold()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
