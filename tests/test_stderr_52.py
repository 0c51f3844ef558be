"""The one hold on the process's stderr (session 52, helper DV): libpng's lines while a PNG decodes, PyTorch's
profiler notes under ``bench --profile`` and ONNX Runtime's log while the CUDA provider is probed are kept off file
descriptor 2 through :func:`pvt_deploy.utils.stderr.stderr_held`. Each of the three stood in for descriptor 2 on its
own: two whose windows crossed on two threads left it pointing at a temporary file for the rest of the process, and
the probe kept what other threads said in its window.

No GPU here: the probe's session is a stand-in that says what ONNX Runtime says (a log line on descriptor 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pvt_deploy
from pvt_deploy.io.sources import _libpng_lines_held
from pvt_deploy.runtimes import ort_providers
from pvt_deploy.runtimes.ort_providers import CPU, CUDA

#: What ONNX Runtime logs where cuDNN is missing, and the reason the probe reads from it
NO_CUDNN_LOG = ("2026-12-07 12:00:00.123456789 [E:onnxruntime:Default, provider_bridge_ort.cc:2251 "
                "TryGetProviderInfo_CUDA] [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
                "libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file\n")
CUDNN_MISSING = "Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open " \
                "shared object file"
KINETO_NOTE = "STAGE:2026-12-07 12:00:00 4242:4242 ActivityProfilerController.cpp:314] Completed Stage: Warm Up\n"

#: A script holding stderr through two of the three holds (sys.argv[1], sys.argv[2]: probe, png, kineto), each on a
#: thread of its own, in crossing order: the first begins, the second begins, the first ends, the second ends. Each
#: says a line it drops and one it does not in its window; the script says one more line after both.
CROSSING = textwrap.dedent("""\
    import os, sys, threading
    from types import SimpleNamespace
    import numpy as np

    from pvt_deploy.io.sources import _libpng_lines_held
    from pvt_deploy.runtimes import ort_providers
    from pvt_deploy.runtimes.torch import _kineto_notes_hidden

    NOTES = {"probe": %r, "png": "libpng error: bad adaptive filter value\\n", "kineto": %r}
    inside = {name: threading.Event() for name in sys.argv[1:]}
    leave = {name: threading.Event() for name in sys.argv[1:]}
    probed = []

    def window(name):
        os.write(2, NOTES[name].encode() + f"{name}'s line\\n".encode())
        inside[name].set()
        leave[name].wait(30)

    class Session:  # the probe's session starts on the GPU, saying a log line while it starts
        def __init__(self, model, providers=None, **kwargs):
            window("probe")
        def get_providers(self):
            return [%r, %r]
        def disable_fallback(self):
            pass
        def run(self, *args):
            return [np.ones(1, np.float32)]

    def hold(name):
        if name == "probe":
            probed.append(ort_providers._cuda_session(SimpleNamespace(InferenceSession=Session)))
            return
        with (_libpng_lines_held() if name == "png" else _kineto_notes_hidden()):
            window(name)

    first, second = (threading.Thread(target=hold, args=(name,)) for name in sys.argv[1:])
    first.start(); inside[sys.argv[1]].wait(30)
    second.start(); inside[sys.argv[2]].wait(30)
    leave[sys.argv[1]].set(); first.join(30)
    leave[sys.argv[2]].set(); second.join(30)
    os.write(2, b"after both\\n")
    for used, reason, said in probed:  # what the probe read of its window: its session's log line
        print(reason, NOTES["probe"] in said)
    """) % (NO_CUDNN_LOG, KINETO_NOTE, CUDA, CPU)


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(pvt_deploy.__file__).parents[1]))  # the code under test
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


@pytest.mark.parametrize(("first", "second"), [("probe", "png"), ("png", "probe"), ("kineto", "png")])
def test_holds_on_two_threads_ending_in_crossing_order_leave_stderr_the_real_one(
        first: str, second: str, tmp_path: Path) -> None:
    """A PNG decoded on a reader thread while the CUDA provider is probed (or PyTorch profiled): each stood in for
    descriptor 2 on its own and put back, as it ended, what it had found there; where the second began inside the
    first's window and ended after it, that was the first's temporary file, and all the process said on stderr
    from then on (FFmpeg's, ONNX Runtime's lines, a crash's traceback) was lost. With one hold for all, stderr is
    the real one after both, each drops its own lines, and the rest is said in its order. Fails before (nothing
    after both reaches stderr)."""
    done = _run(CROSSING, first, second, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"{first}'s line\n{second}'s line\nafter both\n"
    assert done.stdout == ("None True\n" if "probe" in (first, second) else "")  # no reason: the session ran on CUDA


def test_a_line_another_thread_says_in_the_probes_window_reaches_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """The CUDA probe read ONNX Runtime's log by pointing descriptor 2 at a file of its own while its session
    started, and kept all it found there: another thread's line said meanwhile (an FFmpeg warning of a stream
    opening, a log line) never reached stderr. The probe drops ONNX Runtime's log lines only and reads its reason
    from them; the other thread's line is said. Fails before (stderr empty)."""

    def elsewhere() -> None:
        os.write(2, b"another thread's line\n")

    class Session:  # cuDNN missing: the provider is left out, logged, and the session runs on the CPU
        def __init__(self, model: Any, providers: Any = None, **kwargs: Any) -> None:
            os.write(2, NO_CUDNN_LOG.encode())
            other = threading.Thread(target=elsewhere)
            other.start()
            other.join()

        def get_providers(self) -> list[str]:
            return [CPU]

    capfd.readouterr()
    used, reason, said = ort_providers._cuda_session(SimpleNamespace(InferenceSession=Session))
    assert (used, reason) == ([CPU], CUDNN_MISSING)
    assert said == (NO_CUDNN_LOG + "another thread's line").strip()  # all its window held, as the row's log
    assert capfd.readouterr() == ("", "another thread's line\n")


def test_a_line_said_before_a_later_hold_began_is_not_kept_for_its_end(capfd: pytest.CaptureFixture[str]) -> None:
    """Holds that overlap without end (PNGs decoded on two reader threads, one beginning before the other ends)
    kept every line back until none was open. A line is said once every hold open when it was said has ended:
    one said before the second began, as soon as the first ends. Fails before (said only as the second ends)."""
    capfd.readouterr()
    holds = [_libpng_lines_held(), _libpng_lines_held()]
    try:
        holds[0].__enter__()
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\nearly\n")
        holds[1].__enter__()
        os.write(2, b"late\n")
        holds.pop(0).__exit__(None, None, None)
        said_while_the_second_is_open = capfd.readouterr().err
        os.write(2, b"libpng error: IDAT: incorrect data check\nlast\n")
    finally:  # the process's stderr its own again, whatever failed
        for hold in holds:
            hold.__exit__(None, None, None)
    assert said_while_the_second_is_open == "early\n"
    assert capfd.readouterr().err == "late\nlast\n"


CLOSED = textwrap.dedent("""\
    import os, sys
    from pvt_deploy.io.sources import _libpng_lines_held
    from pvt_deploy.runtimes.torch import _kineto_notes_hidden

    os.close(2)
    for hold in (_libpng_lines_held, _kineto_notes_hidden, _libpng_lines_held):
        with hold():
            os.write(1, b"inside ")
        try:
            os.fstat(2)
        except OSError:
            continue
        print("descriptor 2 open after", hold.__name__)
        break
    else:
        print("closed")
    """)


@pytest.mark.skipif(sys.platform == "win32", reason="a closed descriptor 2 is POSIX's")
def test_a_hold_where_stderr_is_closed_holds_nothing_and_leaves_it_closed(tmp_path: Path) -> None:
    """A process started with descriptor 2 closed (a daemon's): the PNG hold made its file first, which took the
    lowest free descriptor, 2, so it 'held' a copy of its own file and left it as the process's stderr. A hold
    where descriptor 2 cannot be copied holds nothing and leaves it closed. Fails before (open after the PNG's)."""
    done = _run(CLOSED, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "inside inside inside closed\n")


def test_a_threads_line_held_comes_before_its_line_said_as_the_last_hold_ends(
        capfd: pytest.CaptureFixture[str]) -> None:
    """The last hold to end put the real stderr back first and wrote what it held after: a thread that had said a
    line in the window (a log line, while a reader thread decoded a PNG) and said its next one as the hold ended
    had that one on stderr first, its own lines in reverse order. What was held is written before the real stderr
    is back. The other thread says its next line as the hold writes back (asked by ``drop``, which the write-back
    calls for its first line). Fails before ('next' before 'held')."""
    from pvt_deploy.utils.stderr import stderr_held

    wrote, ending, said = threading.Event(), threading.Event(), threading.Event()

    def other() -> None:
        os.write(2, b"held\n")  # in the window
        wrote.set()
        assert ending.wait(30)
        os.write(2, b"next\n")  # as the hold ends
        said.set()

    def drop(line: str) -> bool:
        if not ending.is_set():
            ending.set()
            assert said.wait(30)
        return line.startswith("libpng ")

    capfd.readouterr()
    thread = threading.Thread(target=other)
    with stderr_held(drop):
        thread.start()
        assert wrote.wait(30)
    thread.join(30)
    assert capfd.readouterr().err == "held\nnext\n"
