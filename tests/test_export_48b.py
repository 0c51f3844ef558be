"""Export: faults found by helper BU in session 48 (the output folder's name, the order of the input checks,
an unused --calib)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_run import run

import pvt_deploy.export.onnx as export_onnx
from pvt_deploy.export.swap import owner


def test_an_output_folder_whose_name_the_file_system_cannot_take_is_refused_before_the_model_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export -o out/<300 a>``: only the parent folder was checked, so the model was built, then refused worded
    '... (File name too long)'; ``-o <300 a>`` in a folder that is there said 'cannot write the export to X: File name
    too long (X)'. The export is built beside its folder, in a hidden folder named after it some 30
    bytes longer (``.NAME.pvt-new-HOST-PID-XXXX``), so a name the system takes (240 bytes, a folder made already)
    failed the same way. Each is one line, exit 2, before the model is built, nothing made."""
    loaded: list[Any] = []
    real_load = export_onnx._load
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **kw: loaded.append(a) or real_load(*a, **kw))
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = name_max - len(f"..pvt-new-{owner()}-abcd")  # the staging folder's name just fits
    made = tmp_path / ("d" * 240)
    made.mkdir()
    for out in (tmp_path / "out" / ("a" * 300), tmp_path / ("a" * 300), tmp_path / "out" / ("b" * 240), made,
                tmp_path / "out" / ("c" * (longest + 1))):
        code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                                "--no-parity", "-o", str(out))
        said = f"error: cannot write to output folder {out}: File name too long\n"
        assert (code, stdout, err.lstrip("\n")) == (2, "", said)  # (a blank line from the progress display)
        assert loaded == []
        assert sorted(p.name for p in tmp_path.iterdir()) == [made.name]  # nothing made, nothing left
        assert list(made.iterdir()) == []
    out = tmp_path / "out" / ("c" * longest)
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity",
                       "-o", str(out))
    assert code == 0, err
    assert len(loaded) == 1
    assert {"manifest.json", "model.onnx"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [out.name]


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
            assert (code, stdout, err.lstrip("\n")) == (2, "", f"error: {said}\n"), fmt
        assert looked == []
    code, stdout, err = run(monkeypatch, capsys, "export", "--format", "engine", "--model", "pvt_v2_b0-cls")
    assert (code, stdout, err.strip()) == (3, "", "error: TensorRT is not installed")
    assert looked == [True]
    assert list(tmp_path.iterdir()) == []
