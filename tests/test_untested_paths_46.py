"""The machine's files failing under a command (session 46): an ``OSError`` of the file system, a disk or a
network mount (a name too long, a read or write that fails with EIO, a network file system gone: ESTALE,
ENOTCONN, ETIMEDOUT) reaching the CLI was a traceback and exit 1, and a read failing inside ``export`` was
said as a write. Each is driven as a user meets it, with real files where the system can make the error
(a 300-character name, ``/proc/self/mem``, whose first page no process maps: reading or writing it at
offset 0 fails with EIO), and asserts what the user sees: one ``error:`` line naming what failed, exit 2."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run
from disk_faults import failing_disk

pytest_plugins = ["export_fixtures"]

LONG = "a" * 300  # over NAME_MAX (255) of every Linux and macOS file system: ENAMETOOLONG


def one_line_error(err: str) -> str:
    """The last line of stderr, which must be the one ``error: `` line, without a traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err and sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


@pytest.mark.parametrize("command", ["export", "infer", "val", "bench", "check", "info"])
def test_a_name_too_long_is_one_line_in_every_command(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A path with a component longer than the file system takes: Path.exists/is_dir raise ENAMETOOLONG
    (only ENOENT, ENOTDIR and ELOOP read as 'not there'), which was a traceback, exit 1, in all six."""
    path = str(tmp_path / f"{LONG}.pth")
    args = {"export": ["export", "--model", path, "-o", str(tmp_path / "x")],
            "infer": ["infer", path, "--model", "pvt_v2_b0-cls"],
            "val": ["val", path, "--model", "pvt_v2_b0-cls"],
            "bench": ["bench", "--model", path],
            "check": ["check", "--model", path],
            "info": ["info", path]}[command]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2
    assert one_line_error(err) == f"error: {path}: File name too long"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_verbose_adds_the_traceback_of_an_environment_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The one line is for the user; ``pvt-deploy --verbose`` (its switch for debug output) shows where in
    pvt-deploy the error came from as well, above the same line and exit code."""
    path = str(tmp_path / LONG)
    code, _, err = run(monkeypatch, capsys, "--verbose", "info", path)
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1] == f"error: {path}: File name too long"
    assert lines[0] == "Traceback (most recent call last):" and "OSError: [Errno 36]" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem is Linux's")
def test_json_to_a_failing_disk_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """``pvt-deploy models --json > FILE`` where the disk fails the write (EIO): a full disk was one line
    ('cannot write the output'), any other refusal a traceback, exit 1. Every failure of the command's own
    output is said so. The output here is this test's /proc/self/mem at offset 0, which fails every write
    with EIO and changes nothing (no process maps the first page)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    fd = os.open("/proc/self/mem", os.O_WRONLY)
    try:
        done = subprocess.run([sys.executable, "-m", "pvt_deploy", "models", "--json"], stdout=fd,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(fd)
    assert done.returncode == 2, done.stderr
    assert one_line_error(done.stderr) == "error: cannot write the output: Input/output error"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem is Linux's")
@pytest.mark.parametrize("command", ["export", "info"])
def test_a_checkpoint_the_disk_fails_to_read_is_said_as_a_read(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint whose read fails with EIO (a failing disk; here a link to /proc/self/mem, a regular file
    that no read at offset 0 gets a byte of): export said 'cannot write the export to X', a write it never
    began, and info was a traceback. Both say the read that failed, and export leaves no folder."""
    checkpoint = failing_disk(tmp_path / "ckpt.pth")
    args = {"export": ["export", "--model", "pvt_v2_b0-cls", "--weights", str(checkpoint), "--imgsz", "32",
                       "--no-parity", "--no-simplify", "-o", str(tmp_path / "x")],
            "info": ["info", str(checkpoint)]}[command]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2
    assert one_line_error(err) == f"error: cannot read the checkpoint {checkpoint}: Input/output error"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]


@pytest.mark.parametrize("name", ["ESTALE", "ENOTCONN", "ETIMEDOUT"])
def test_an_export_onto_a_network_mount_gone_is_one_line(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An export folder on an NFS mount whose server restarted (ESTALE), an sshfs mount whose process ended
    (ENOTCONN), a server that stopped answering (ETIMEDOUT): the graph's write failed outside the errnos
    export took as the folder's refusal, a traceback. It is that folder's write, said so, and the half-built
    export goes. (The file system is faked where the graph's file is written: graph.save_model raises.)"""

    from pvt_deploy.export import graph

    code_ = getattr(errno, name)

    def gone(*args: object, **kwargs: object) -> None:
        raise OSError(code_, os.strerror(code_), str(tmp_path / "x" / "model.onnx"))

    monkeypatch.setattr(graph, "save_model", gone)
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "32", "--no-parity",
                       "--no-simplify", "-o", str(tmp_path / "x"))
    assert code == 2
    assert one_line_error(err).startswith(f"error: cannot write the export to {tmp_path / 'x'}: {os.strerror(code_)}")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging folder left


@pytest.mark.parametrize("link", ["loop", "dangling"])
@pytest.mark.parametrize("command", ["export", "infer"])
def test_an_output_folder_under_a_link_to_nowhere_says_so(
        command: str, link: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``-o out/x`` where ``out`` is a loop of links, or a link to a folder that is gone: the output check took
    the link for missing and passed, and making the folder then said 'File exists' of a path that exists for no
    command. Both commands name the link and what is wrong with it before the model loads."""
    from pvt_deploy.assets import sample_image

    if link == "loop":
        (tmp_path / "out").symlink_to("back")
        (tmp_path / "back").symlink_to("out")
        why = os.strerror(errno.ELOOP)  # Too many levels of symbolic links
    else:
        (tmp_path / "out").symlink_to(tmp_path / "gone")
        why = "No such file or directory"
    out = tmp_path / "out" / "x"
    args = {"export": ["export", "--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out)],
            "infer": ["infer", str(sample_image()), "--model", "pvt_v2_b0-cls", "-o", str(out)]}[command]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2
    line = one_line_error(err)
    assert line.endswith(f": {tmp_path / 'out'} is a link that leads nowhere ({why})"), line
    assert line.startswith(f"error: cannot write {'to output folder' if command == 'export' else 'outputs to'} {out}")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX's")
def test_weights_that_are_a_named_pipe_are_named_as_such(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--weights <(curl ...)`` (a named pipe) said 'weights /dev/fd/63 does not exist' of a path that exists:
    a checkpoint is read more than once (its head, its CRCs, the tensors), which a pipe cannot give."""
    fifo = tmp_path / "ckpt.pth"
    os.mkfifo(fifo)
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--weights", str(fifo), "-o",
                       str(tmp_path / "x"))
    assert code == 2
    assert one_line_error(err) == (f"error: weights {fifo} is not a regular file (a pipe, socket or device): give "
                                   "the checkpoint file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", [["info", "{tmp}/missing.onnx"], ["models", "--json"]])
def test_a_failing_stderr_keeps_the_exit_code(tmp_path: Path, args: list[str]) -> None:
    """``2> FILE`` on a full disk (/dev/full: every write fails with ENOSPC) loses the error line, not the exit
    code: writing the line raised inside the CLI's handler, and Python's exit for that is 1, a failure of the
    tool. A missing file (info) stays exit 2, as does the output failing too (models --json > /dev/full)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, "-m", "pvt_deploy", *(a.format(tmp=tmp_path) for a in args)],
                              stdout=full, stderr=full, env=env, timeout=120)
    assert done.returncode == 2


@pytest.mark.parametrize(("args", "said"), [
    (["info", "{tmp}/x.onnx", "--verbose"], "No such option: --verbose. Did you mean pvt-deploy --verbose info "
                                            "{tmp}/x.onnx (--verbose is pvt-deploy's own option, given before the "
                                            "command)?"),
    (["infer", "-v", "photos/"], "No such option: -v. Did you mean pvt-deploy -v infer photos/ (-v is pvt-deploy's "
                                 "own option, given before the command)?"),
    (["check", "--version"], "No such option: --version. Did you mean pvt-deploy --version?"),
])
def test_the_apps_own_option_after_the_command_says_where_it_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
        said: str) -> None:
    """The error line of a failing file says ``pvt-deploy --verbose COMMAND`` shows where; given after the
    command's name (``info x.onnx --verbose``, as most tools take it) it was 'No such option: --verbose' alone,
    which reads as if there were none. The answer is the command with it in its place (exit 2, nothing run)."""
    monkeypatch.setenv("COLUMNS", "1000")  # the whole message on one line of Rich's box
    code, out, err = run(monkeypatch, capsys, *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and out == ""
    assert said.format(tmp=tmp_path) in err, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ and FIONREAD as Linux has them")
def test_json_to_a_non_blocking_pipe_waits_for_its_reader() -> None:
    """A pipe in non-blocking mode (O_NONBLOCK: set by the parent that made it, or left on a terminal by another
    program, and shared by every writer) answers a write to it when full with EAGAIN, on which Python's buffered
    writer gives up: ``pvt-deploy models --json`` to a reader that was behind wrote the first 4096 bytes and ended
    'write could not complete without blocking', exit 2. It waits for room as on a blocking pipe: the whole JSON,
    exit 0. The pipe here holds 4096 bytes and is read only once it is full."""
    import fcntl
    import json
    import termios
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ: the smallest a pipe holds (a page)
        os.set_blocking(w, False)
        done = subprocess.Popen([sys.executable, "-m", "pvt_deploy", "models", "--json"], stdout=w,
                                stderr=subprocess.PIPE, env=env)
        os.close(w)
        w = -1
        waited = time.monotonic()
        held = bytearray(4)
        while done.poll() is None and time.monotonic() - waited < 120:  # until the pipe is full, or it has ended
            fcntl.ioctl(r, termios.FIONREAD, held)
            if int.from_bytes(held, sys.byteorder) >= 4096:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the write past the full pipe, which ended the command
        with os.fdopen(r, "rb") as reader:
            r = -1
            out = reader.read()
        _, err = done.communicate(timeout=120)
        assert done.returncode == 0, err
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    assert len(out) > 4096 and json.loads(out), out[-200:]
