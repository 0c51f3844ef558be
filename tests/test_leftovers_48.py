"""Leftovers of session 48 (helper CC): the --calib warning of an extension that still reads the pictures,
and a Triton model's name or repository path that the file system cannot take."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cli_run import run

from pvt_deploy.manifest import read_manifest


def _pictures(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48), (90, 120, 30)).save(folder / name)
    return folder


def test_a_calib_folder_that_still_serves_the_files_made_is_not_said_unused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Extending an export whose INT8 files are there with ``--int8 --half --calib FOLDER``, parity on and no
    ``--images``: the FP16 file's parity runs on the folder's pictures, yet the warning said '--calib FOLDER is
    not used'. It says they serve that parity only; where an INT8 file is made (the other one missing), that
    they are used for it; with ``--no-parity``, as before, that they are not used."""
    from test_tensorrt_build_fake import make_artifact

    mine = _pictures(tmp_path / "mine")
    said = "already there, calibrated on ? (delete {} to calibrate on the pictures given)"
    both = "model.int8.onnx, model.int8.trt.onnx are " + said.format("them")
    for args, files, use in (
            (["--int8", "--half"], ("model.int8.onnx", "model.int8.trt.onnx"),
             "serves only the parity of model.fp16.onnx: " + both),
            (["--int8", "--half", "--no-parity"], ("model.int8.onnx", "model.int8.trt.onnx"), "is not used: " + both),
            (["--int8", "--half"], ("model.int8.onnx",), "is used only for model.int8.trt.onnx, model.fp16.onnx: "
             "model.int8.onnx is " + said.format("it"))):
        folder = make_artifact(tmp_path / f"art{len(files)}{len(args)}", *files)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), *args, "--calib", str(mine))
        assert code == 0, err
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
            f"{folder}: --calib {mine} {use}"], args
        manifest = read_manifest(folder)
        assert manifest["files"]["model.fp16.onnx"]["precision"] == "fp16"
        if "--no-parity" not in args:  # what the warning says they serve, they did
            assert manifest["parity"]["model.fp16.onnx"]["image_source"] == str(mine)
        if len(files) == 1:
            assert manifest["precision"]["int8"]["calibration"]["source"] == str(mine)
