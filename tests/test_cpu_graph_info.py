"""``pvt-deploy info`` names each ONNX file's CPU graph: the copy with this CPU's exact rewrites that
ONNX Runtime's CPU sessions load (``.ort-cache/``), so that a program's own ONNX Runtime session can load it
too; before any session here has built it, info says so and builds nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from cli_run import run
from export_fixtures import Artifact, images

from pvt_deploy.runtimes.ort_session import CACHE_DIRNAME, optimized_graph

pytest_plugins = ["export_fixtures"]


def _files(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], folder: Path, *,
           code: int = 0) -> dict[str, Any]:
    """``info --json``'s files by name; ``code``: the exit expected (1 where a file changed)."""
    got, out, err = run(monkeypatch, capsys, "info", str(folder), "--json")
    assert got == code, err
    return {f["name"]: f for f in json.loads(out)["files"]}


def test_info_names_the_cpu_graph_a_plain_session_loads_with_the_same_outputs(
        cls_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "export"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(CACHE_DIRNAME))
    assert _files(monkeypatch, capsys, folder)["model.onnx"]["cpu_graph"] is None
    assert not (folder / CACHE_DIRNAME).exists()  # info built nothing
    code, out, _ = run(monkeypatch, capsys, "info", str(folder))
    assert code == 0 and "model.onnx: not built here yet" in out

    built = optimized_graph(folder / "model.onnx")
    assert built.changed
    graph = _files(monkeypatch, capsys, folder)["model.onnx"]["cpu_graph"]
    assert (folder / graph["path"]) == built.path and graph["path"].startswith(CACHE_DIRNAME)
    assert graph["rewrites"] and all(v > 0 for v in graph["rewrites"].values())
    code, out, _ = run(monkeypatch, capsys, "info", str(folder))
    assert code == 0 and f"model.onnx -> {graph['path']}" in " ".join(out.split())

    x = images(2, 64, 64)
    outputs = []
    for path in (folder / "model.onnx", folder / graph["path"]):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"images": x})[0])
    scale = float(np.abs(outputs[0]).max())
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=1e-4 * scale)


def test_a_lone_files_hint_names_the_file_as_given(cls_artifact: Artifact, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    lone = tmp_path / "lone" / "model.onnx"
    lone.parent.mkdir()
    shutil.copy(cls_artifact.folder / "model.onnx", lone)
    monkeypatch.setenv("COLUMNS", "300")  # a long temporary path stays on one line
    code, out, _ = run(monkeypatch, capsys, "info", str(lone))
    assert code == 0 and f"pvt-deploy bench --model {lone}" in " ".join(out.split())


def test_a_changed_file_gets_no_cpu_graph_line(cls_artifact: Artifact, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "export"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(CACHE_DIRNAME))
    with (folder / "model.onnx").open("ab") as f:
        f.write(b"\0")
    row = _files(monkeypatch, capsys, folder, code=1)["model.onnx"]
    assert row["check"] == "MISMATCH" and "cpu_graph" not in row


def test_speed_own_session_variants_run_the_export_and_its_cpu_graph_as_the_backend(cls_artifact: Artifact) -> None:
    """``benchmarks/speed.py``'s ``onnx-session`` / ``onnx-session-cpu``: plain sessions on model.onnx and on
    the CPU graph, giving the backend's outputs (what the benchmark's agreement column then compares)."""
    import bench_scripts

    speed = bench_scripts.load("speed", keep=True)
    feed = {"images": images(2, 64, 64)}
    loaded = {name: speed.load_variant(name, cls_artifact.folder, 1)
              for name in ("onnx", "onnx-session", "onnx-session-cpu")}
    try:
        assert loaded["onnx-session"].details["graph"] == "model.onnx"
        assert loaded["onnx-session-cpu"].details["graph"] != "model.onnx"  # the rewritten copy
        # threads=1 (--threads 1): recorded, as the backend's are; the record said 'onnxruntime defaults' alone
        assert loaded["onnx"].details["intra_op_threads"] == loaded["onnx-session"].details["intra_op_threads"] == 1
        assert loaded["onnx-session"].details["session"] == "onnxruntime defaults, intra_op_num_threads 1"
        ref = loaded["onnx"].infer(feed)
        for name in ("onnx-session", "onnx-session-cpu"):
            out = loaded[name].infer(feed)
            assert out.keys() == ref.keys(), name
            for key, value in ref.items():
                np.testing.assert_allclose(out[key], value, rtol=0, atol=1e-4 * float(np.abs(value).max()))
    finally:
        for v in loaded.values():
            v.close()


def test_the_not_built_hint_is_a_command_that_builds_each_files_cpu_graph(
        det_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """'pvt-deploy bench --model FOLDER' built nothing on a GPU machine (its default device is the GPU) and never
    model.int8.trt.onnx's CPU graph beside model.int8.onnx (the folder's INT8 backend loads that): info then
    still said 'not built here yet'. The hint runs on the CPU, naming that file itself."""
    folder = tmp_path / "export"
    shutil.copytree(det_artifact.folder, folder, ignore=shutil.ignore_patterns(CACHE_DIRNAME))
    monkeypatch.setenv("COLUMNS", "300")
    code, out, _ = run(monkeypatch, capsys, "info", str(folder))
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if "not built here yet" in line}
    assert code == 0 and sorted(lines) == ["model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx", "model.onnx"]
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        assert lines[name].endswith(f"pvt-deploy bench --model {folder} --device cpu)"), lines[name]
    trt = lines["model.int8.trt.onnx"]
    assert trt.endswith(f"pvt-deploy bench --model {folder / 'model.int8.trt.onnx'} --device cpu)"), trt
