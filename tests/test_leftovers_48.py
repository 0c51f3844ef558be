"""Leftovers of session 48 (helper CC): the --calib warning of an extension that still reads the pictures,
and a Triton model's name or repository path that the file system cannot take."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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


def test_a_triton_model_name_too_long_for_its_folder_is_refused_before_the_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export --format triton --triton-name NAME``: a NAME the file system takes as a folder, but not the name
    the swap sets the old model folder aside under (``.NAME.pvt-triton-old-HOST-PID-XXXX``), was refused only
    after the export, at the swap ('cannot replace ... (File name too long); it is unchanged', exit 1, the export
    folder made); a longer one, once the export was done. Each is one line, exit 2, before the model is built,
    nothing made; ``export_triton`` refuses it alike, before the copy. Since session 51 that hidden name is cut to
    fit (SwappedFolder._named): a name of the longest length the file system takes is served, and served again over
    the first (its old folder set aside under the cut name), nothing hidden left; one byte longer is refused."""
    import os

    from test_tensorrt_build_fake import make_artifact

    import pvt_deploy.export.onnx as export_onnx
    from pvt_deploy.errors import InputError
    from pvt_deploy.export.triton import export_triton

    loaded: list[Any] = []
    real_load = export_onnx._load
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **kw: loaded.append(a) or real_load(*a, **kw))
    work = tmp_path / "work"
    work.mkdir()
    longest = os.pathconf(work, "PC_NAME_MAX")
    for name in ("m" * (longest + 1), "n" * 300):
        code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                                "--no-parity", "-o", str(work / "exp" / "x"), "--format", "triton",
                                "--triton-name", name)
        said = (f"error: cannot write to the Triton model {work / 'exp' / 'triton' / name} (File name too long) "
                "(choose a shorter Triton model name)\n")
        assert loaded == [], name  # refused before the model is built
        assert list(work.iterdir()) == []  # nothing made, nothing left
        assert (code, stdout, err) == (2, "", said)
    art = make_artifact(tmp_path / "art")
    repo = tmp_path / "repo"
    with pytest.raises(InputError, match=r"^cannot write to the Triton model .* \(File name too long\) "):
        export_triton(art, repo, name="m" * (longest + 1))
    assert not repo.exists()
    for _ in range(2):
        served = export_triton(art, repo, name="m" * longest)
        assert (served / "1" / "model.onnx").read_bytes() == (art / "model.onnx").read_bytes()
        assert sorted(p.name for p in repo.iterdir()) == ["m" * longest]
        assert not [p for p in served.iterdir() if p.name.startswith(".")]
