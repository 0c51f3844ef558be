"""Export: faults found in session 48 and fixed by helper CG in session 49 (the model's check run once, the
output folder's name measured where it really is, video calibration frames held at the model's size)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run

import pvt_deploy.export.onnx as export_onnx


def test_the_cli_export_checks_the_model_named_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """export() checks that the model names something before it looks for TensorRT, and export_onnx checked it
    again: once, whoever calls. export_onnx called alone still checks it."""
    checked: list[object] = []
    real = export_onnx.check_model_named
    monkeypatch.setattr(export_onnx, "check_model_named", lambda *a: checked.append(a[0]) or real(*a))
    (tmp_path / "file").write_text("")
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "-o", str(tmp_path / "file"))
    assert (code, stdout, err) == (2, "", f"error: output {tmp_path / 'file'} exists and is not a folder\n")
    assert checked == ["pvt_v2_b0-cls"]
    checked.clear()
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b9-cls", "-o", str(tmp_path / "x"))
    assert code == 2 and err.startswith("error: unknown model 'pvt_v2_b9-cls'")
    assert checked == ["pvt_v2_b9-cls"]
    checked.clear()
    from pvt_deploy.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="unknown model 'pvt_v2_b9-cls'"):
        export_onnx.export_onnx("pvt_v2_b9-cls", tmp_path / "x")
    assert checked == ["pvt_v2_b9-cls"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_the_output_folders_name_is_measured_where_a_link_given_as_output_leads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``-o link``, a link to a folder whose name is too long for the staging folder built beside it
    (``.NAME.pvt-new-HOST-PID-XXXX``): the name was measured on the link's, so the model was loaded, then refused in
    other words ('cannot write to output folder link (File name too long)'). The real folder is measured: one line,
    exit 2, before the model is loaded, nothing made; a link to the longest name that fits exports into it."""
    import os

    from pvt_deploy.export.swap import owner

    loaded: list[object] = []
    real_load = export_onnx._load
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **kw: loaded.append(a) or real_load(*a, **kw))
    real = tmp_path / "real"
    real.mkdir()
    longest = os.pathconf(real, "PC_NAME_MAX") - len(f"..pvt-new-{owner()}-abcd")  # the staging folder just fits
    link = tmp_path / "link"
    link.symlink_to(real / ("c" * (longest + 1)), target_is_directory=True)
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity",
                            "-o", str(link))
    assert (code, stdout, err) == (2, "", f"error: cannot write to output folder {link}: File name too long\n")
    assert loaded == []
    assert list(real.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    link.unlink()
    link.symlink_to(real / ("c" * longest), target_is_directory=True)
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity",
                       "-o", str(link))
    assert code == 0, err
    assert len(loaded) == 1
    assert link.is_symlink() and [p.name for p in real.iterdir()] == ["c" * longest]
    assert {"manifest.json", "model.onnx"} <= {p.name for p in link.iterdir()}
