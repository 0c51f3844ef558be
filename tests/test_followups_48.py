"""Follow-ups of session 48's fixes, each where one path said or did a thing another did otherwise: an export
folder's file the disk fails to read."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image
from test_tensorrt_build_fake import make_artifact


def failing_disk(path: Path) -> Path:
    """``path`` made a file whose read fails with EIO, as a failing disk's does: Linux's /proc/self/mem read from
    offset 0 (no memory mapped there) is a regular file whose read says 'Input/output error'."""
    path.unlink(missing_ok=True)
    path.symlink_to("/proc/self/mem")
    with pytest.raises(OSError) as caught, path.open("rb") as f:
        f.read()
    assert caught.value.errno == errno.EIO
    return path


def test_an_export_folder_whose_onnx_the_disk_fails_to_read_is_said_as_the_lone_file_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """info and infer of the folder said 'error: art/model.onnx: Input/output error' (the hash's OSError, given the
    file's name), where of the lone file they say 'cannot read art/model.onnx: Input/output error', as export
    and bench do: the folder's hash against its manifest says it in those words."""
    folder = make_artifact(tmp_path / "art")
    onnx = failing_disk(folder / "model.onnx")
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photo)
    said = f"error: cannot read {onnx}: Input/output error\n"
    for args in (("info", str(folder)), ("info", str(folder), "--json"), ("info", str(onnx)),
                 ("infer", str(photo), "--model", str(folder), "--no-save"),
                 ("infer", str(photo), "--model", str(onnx), "--no-save")):
        assert run(monkeypatch, capsys, *args) == (2, "", said), args
    assert os.path.islink(onnx) and sorted(p.name for p in tmp_path.iterdir()) == ["IMG_0001.jpg", "art"]
