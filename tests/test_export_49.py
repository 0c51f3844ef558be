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
