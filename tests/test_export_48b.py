"""Export: faults found by helper BU in session 48 (the output folder's name, the order of the input checks,
an unused --calib)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_run import run

import pvt_deploy.export.onnx as export_onnx
from pvt_deploy.manifest import read_manifest


def test_an_output_folder_whose_name_the_file_system_cannot_take_is_refused_before_the_model_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export -o out/<300 a>``: only the parent folder was checked, so the model was built, then refused worded
    '... (File name too long)'; ``-o <300 a>`` in a folder that is there said 'cannot write the export to X: File name
    too long (X)'. Each is one line, exit 2, before the model is built, nothing made. The export is built beside its
    folder, in a hidden folder named after it some 30 bytes longer (``.NAME.pvt-new-HOST-PID-XXXX``), which a name
    past 224 bytes made too long: such a name was refused too (session 48), until session 51 cut it there to fit
    (SwappedFolder._named): a name of 255 bytes (85 CJK letters, cut at a letter) exports, and exports again over
    the first (the old folder set aside under such a name), the user's file carried over, nothing hidden left."""
    loaded: list[Any] = []
    real_load = export_onnx._load
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **kw: loaded.append(a) or real_load(*a, **kw))
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    made = tmp_path / ("d" * 240)
    made.mkdir()
    for out in (tmp_path / "out" / ("a" * 300), tmp_path / ("a" * 300), tmp_path / "out" / ("b" * (name_max + 1)),
                made / "out" / ("\u4e2d" * 86)):
        code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                                "--no-parity", "-o", str(out))
        said = f"error: cannot write to output folder {out}: File name too long\n"
        assert (code, stdout, err) == (2, "", said)  # one line (the progress display's stop wrote a blank one above)
        assert loaded == []
        assert sorted(p.name for p in tmp_path.iterdir()) == [made.name]  # nothing made, nothing left
        assert list(made.iterdir()) == []
    out = tmp_path / "out" / ("\u4e2d" * 85)
    assert len(os.fsencode(out.name)) == name_max == 255
    for n in (1, 2):
        code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity",
                           "-o", str(out))
        assert code == 0, err
        assert len(loaded) == n
        assert {"manifest.json", "model.onnx"} <= {p.name for p in out.iterdir()}
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [out.name]
        (out / "notes.txt").write_text("the user's")
    assert (out / "notes.txt").read_text() == "the user's"


def test_a_model_that_is_not_there_is_said_before_tensorrt_is_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export --format engine --model <missing path>`` said TensorRT is missing (exit 3) before it said the model
    is not there: the model is checked first, in the words of an ONNX export of it, exit 2; a model that is there
    still meets the missing TensorRT (its exit 3). TensorRT is made missing here, as on this CPU machine, so that
    the test says the same where it is installed."""
    import pvt_deploy.export.tensorrt as export_tensorrt
    from pvt_deploy.errors import BackendUnavailableError

    looked: list[bool] = []

    def no_tensorrt() -> None:
        looked.append(True)
        raise BackendUnavailableError("TensorRT is not installed")

    monkeypatch.setattr(export_tensorrt, "require_tensorrt", no_tensorrt)
    monkeypatch.chdir(tmp_path)
    gone = tmp_path / "ckpts" / "gone.pth"
    for model, said in ((str(gone), f"{gone}: no such checkpoint file or export folder"),
                        ("gone.safetensors", "gone.safetensors: no such checkpoint file or export folder"),
                        ("exports/gone", "exports/gone: no such checkpoint file or export folder"),
                        ("pvt_v2_b9-cls", "unknown model 'pvt_v2_b9-cls'; did you mean 'pvt_v2_b5-cls'? known "
                         "backbones: pvt_v2_b0, pvt_v2_b1, pvt_v2_b2, pvt_v2_b2_li, pvt_v2_b3, pvt_v2_b4, "
                         "pvt_v2_b5 (suffix -seg, -cls or -features for other tasks)")):
        for fmt in ("onnx", "engine", "trt"):
            code, stdout, err = run(monkeypatch, capsys, "export", "--format", fmt, "--model", model)
            assert (code, stdout, err) == (2, "", f"error: {said}\n"), fmt
        assert looked == []
    code, stdout, err = run(monkeypatch, capsys, "export", "--format", "engine", "--model", "pvt_v2_b0-cls")
    assert (code, stdout, err) == (3, "", "error: TensorRT is not installed\n")
    assert looked == [True]
    assert list(tmp_path.iterdir()) == []


def test_a_calib_folder_for_int8_files_already_there_is_said_unused_and_not_listed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Extending an export that has its INT8 files with ``--int8 --calib FOLDER``: the folder was listed first (a
    'video left out' warning for its clip, a clip of its own decoded, a URL fetched), then said to be unused. That
    is decided first: nothing is listed, one warning; the files are kept byte for byte."""
    import logging

    from PIL import Image
    from test_tensorrt_build_fake import make_artifact

    import pvt_deploy.export.calibration as calibration

    listed: list[Any] = []
    real_usable = calibration.usable_images
    monkeypatch.setattr(calibration, "usable_images", lambda *a, **kw: listed.append(a) or real_usable(*a, **kw))
    folder = make_artifact(tmp_path / "art", "model.int8.onnx", "model.int8.trt.onnx")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "manifest.json"}  # (it lists an FP16 file made)
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48), (90, 120, 30)).save(mine / name)
    (mine / "clip.mp4").write_bytes(b"not a video either")  # left out of a folder's pictures, with a warning
    for args in (["--int8"], ["--int8", "--int8-flavour", "cpu"], ["--int8", "--half", "--no-parity"]):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), *args, "--calib", str(mine))
        assert code == 0, err
        files = "model.int8.onnx is" if "cpu" in args else "model.int8.onnx, model.int8.trt.onnx are"
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
            f"{folder}: --calib {mine} is not used: {files} already there, calibrated on ? (delete "
            f"{'it' if 'cpu' in args else 'them'} to calibrate on the pictures given)"], args
        assert listed == []
        if "--half" in args:  # an FP16 file made, whose parity does not run: the pictures are of no use
            assert read_manifest(folder)["files"]["model.fp16.onnx"]["precision"] == "fp16"
            (folder / "model.fp16.onnx").unlink()
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before
    # the parity of a new FP16 file runs on them (no --images): listed, as before
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", "--half", "--calib", str(mine))
    assert code == 0, err
    assert [Path(a[0]) for a in listed] == [mine]
    assert read_manifest(folder)["parity"]["model.fp16.onnx"]["image_source"] == str(mine)
