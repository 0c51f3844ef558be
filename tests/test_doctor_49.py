"""`pvt-deploy doctor`'s exit code (session 49, helper CG): 0 with every part pvt-deploy needs working, 1 with one
broken or missing, 3 with a part --require names not usable here; a health check for an image on its GPU."""

from __future__ import annotations

import json
import sys
import types

import pytest
from cli_run import run

from pvt_deploy import doctor


def test_doctor_passes_where_only_optional_parts_are_missing(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """No GPU, no TensorRT (this machine, or any without them): exit 0, as the parts pvt-deploy needs work."""
    rows = {c.key: c for c in doctor.collect(probe_encoders=False)}
    assert not [k for k, c in rows.items() if c.status != "ok" and k not in doctor.OPTIONAL_PARTS]
    code, stdout, err = run(monkeypatch, capsys, "doctor", "--json", "--no-encoders")
    assert (code, err) == (0, "")
    assert json.loads(stdout)["components"]["tensorrt"]["status"] == rows["tensorrt"].status


def test_doctor_fails_naming_a_part_that_is_broken_or_missing(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """An onnxruntime that imports but does not work, and a requirement that is not installed: doctor said so in
    its table and exited 0, which a health check reads as healthy. Exit 1, the line naming them; the table is
    still printed."""
    monkeypatch.setitem(sys.modules, "onnxruntime", types.ModuleType("onnxruntime"))  # importable, nothing works
    code, stdout, err = run(monkeypatch, capsys, "doctor", "--no-encoders")
    assert (code, err) == (1, "error: pvt-deploy needs, and this install lacks or cannot use: ONNX Runtime error\n")
    assert "ONNX Runtime" in stdout and "probe failed" in stdout
    declared = ["pyyaml-not-a-real-dist>=6", "rich>=13"]
    monkeypatch.setattr(doctor.metadata, "requires", lambda dist: declared if dist == "pvt-deploy" else None)
    code, stdout, err = run(monkeypatch, capsys, "doctor", "--json", "--no-encoders")
    assert code == 1
    assert err == ("error: pvt-deploy needs, and this install lacks or cannot use: ONNX Runtime error, "
                   "pyyaml-not-a-real-dist missing\n")
    assert json.loads(stdout)["components"]["pyyaml-not-a-real-dist"]["status"] == "missing"


def test_doctor_require_makes_optional_parts_mandatory(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``docker run --gpus all IMAGE doctor --require gpu,tensorrt``: exit 3 where either is not usable here,
    naming them (exit 0 where both are: a GPU machine with TensorRT); a part it does not know, or the encoders
    required unopened, is exit 2 before anything is probed."""
    rows = {c.key: c for c in doctor.collect(probe_encoders=False)}
    lacking = [rows[k] for k in ("cuda", "onnxruntime_cuda", "tensorrt") if rows[k].status != "ok"]  # gpu: both CUDAs
    code, stdout, err = run(monkeypatch, capsys, "doctor", "--no-encoders", "--require", "gpu,TensorRT")
    if lacking:  # each said with why, and how to get it (test_doctor_50 has the line whole)
        assert code == 3 and err.startswith("error: --require asks for, and this machine cannot use: "), err
        for c in lacking:
            assert f"{c.name} {c.status}: {c.summary}" in err and (c.hint or "") in err, (c, err)
    else:
        assert (code, err) == (0, "")
    assert "TensorRT" in stdout  # the table, either way
    code, _, err = run(monkeypatch, capsys, "doctor", "--no-encoders", "--require", "tritonclient", "--require", "cpu_int8")
    assert code == (0 if rows["tritonclient"].status == rows["cpu_int8"].status == "ok" else 3), err
    probed: list[bool] = []
    monkeypatch.setattr(doctor, "collect", lambda **kw: probed.append(True) or [])
    for args, said in (
            (["--require", "gpus"], "--require gpus: choose from cuda, onnxruntime_cuda, tensorrt, h264_encoders, "
                                    "tritonclient, cpu_int8 (or gpu, ort_cuda, trt, triton, h264); the other parts "
                                    "are always required"),
            (["--require", "onnxruntime"], "--require onnxruntime: choose from cuda, onnxruntime_cuda, tensorrt, "
                                           "h264_encoders, tritonclient, cpu_int8 (or gpu, ort_cuda, trt, triton, "
                                           "h264); the other parts are always required"),
            (["--no-encoders", "--require", "h264"], "--require h264 needs the encoders opened (--encoders)")):
        code, stdout, err = run(monkeypatch, capsys, "doctor", *args)
        assert (code, stdout, err) == (2, "", f"error: {said}\n")
    assert probed == []
