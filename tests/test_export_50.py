"""Export leftovers of session 50 (helper CX): what an extension makes is decided once, an export made before
the manifest recorded --trust-checkpoint (25105b2), and the memory an anamorphic --calib clip's frames need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_run import run

import pvt_deploy.export.onnx as export_onnx
from pvt_deploy.manifest import read_manifest


def test_an_extension_with_calib_decides_once_what_it_makes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``--calib``, export_onnx asked _wanted_variants what the extension makes (to say before the pictures
    are listed whether --calib serves anything, a662fe8), then _extend asked it again: each INT8 file opened and
    checked against the manifest twice. It is asked once, and the answer holds: the FP16 file made, the INT8
    files there kept byte for byte."""
    from PIL import Image
    from test_tensorrt_build_fake import make_artifact

    asked: list[Any] = []
    real = export_onnx._wanted_variants
    monkeypatch.setattr(export_onnx, "_wanted_variants", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    folder = make_artifact(tmp_path / "art", "model.int8.onnx", "model.int8.trt.onnx")
    kept = {n: (folder / n).read_bytes() for n in ("model.int8.onnx", "model.int8.trt.onnx")}
    mine = tmp_path / "mine"
    mine.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(mine / "a.png")
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", "--half", "--calib", str(mine))
    assert code == 0, err
    assert len(asked) == 1, asked
    assert read_manifest(folder)["files"]["model.fp16.onnx"]["precision"] == "fp16"
    assert {n: (folder / n).read_bytes() for n in kept} == kept
