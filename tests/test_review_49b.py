"""Session 49's export, val and doctor changes reviewed (helper CL): faults found in them and fixed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from cli_run import run


def test_an_output_folder_that_is_a_loop_of_links_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export -o out`` where ``out`` itself is a loop of links (out -> back -> out): cd6dac1 says such a link on
    the way to ``-o out/x``, but its probe of the parent of the path given let ``out`` itself pass, and its real
    path is itself: the swap set the link aside as an old export (.out.pvt-old-...), left it there, and made a
    folder in its place, exit 0. Refused before the model loads, nothing made, as infer refuses the same ``-o``."""
    import pvt_deploy.export.onnx as export_onnx

    (tmp_path / "out").symlink_to("back")
    (tmp_path / "back").symlink_to("out")
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **k: pytest.fail("the model was loaded"))
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                            "--no-parity", "-o", str(tmp_path / "out"))
    assert (code, stdout) == (2, "")
    assert err == (f"error: cannot write to output folder {tmp_path / 'out'}: {tmp_path / 'out'} is a link that "
                   f"leads nowhere ({os.strerror(errno.ELOOP)})\n")
    assert sorted((p.name, os.readlink(p)) for p in tmp_path.iterdir()) == [("back", "out"), ("out", "back")]
