"""``bench --profile``: each backend's time per operator type, from a run of its own (Backend.profile)."""

from __future__ import annotations

import collections
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from cli_run import run
from test_runtime_artifacts import cached_export

from pvt_deploy.errors import BackendUnavailableError
from pvt_deploy.runtimes.base import Backend
from pvt_deploy.runtimes.loader import load_backend


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def _feed() -> dict[str, np.ndarray]:
    return {"images": np.random.default_rng(0).uniform(0, 255, (1, 3, 128, 128)).astype(np.float32)}


def test_onnxruntime_profile_counts_the_optimised_graphs_nodes_and_leaves_no_file(
        cls_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second session of the graph the backend runs, with its settings and ORT's profiler on: per operator
    type the nodes of that type in the graph as ORT optimised it, ms per call, share, provider. ORT writes its
    trace as onnxruntime_profile_<time>.json in the working folder by default: nothing may be left there or in
    the temporary folder."""
    import onnxruntime as ort

    from pvt_deploy.runtimes.onnxruntime import session_options

    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    backend, _ = load_backend(cls_export, backend="onnx", device="cpu")
    profile = backend.profile(_feed(), 2)
    path, providers, _ = backend._load  # type: ignore[attr-defined]
    options = session_options(ort, *backend._settings)  # type: ignore[attr-defined]
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(path, sess_options=options, providers=providers)
    backend.close()
    assert list(work.iterdir()) == [] and list(temp.iterdir()) == []
    graph = collections.Counter(node.op_type for node in onnx.load(str(tmp_path / "optimised.onnx")).graph.node)
    assert {op["op"]: op["nodes"] for op in profile["ops"]} == dict(graph)
    assert {"Conv", "MatMul", "LayerNormalization"} <= set(graph)
    assert {op["provider"] for op in profile["ops"]} == {"CPUExecutionProvider"}
    assert profile["calls"] == 2 and abs(sum(op["share"] for op in profile["ops"]) - 1) < 1e-6
    assert profile["total_ms"] == pytest.approx(sum(op["ms"] for op in profile["ops"]), abs=1e-3)
    assert [op["ms"] for op in profile["ops"]] == sorted((op["ms"] for op in profile["ops"]), reverse=True)


def test_torch_profile_is_aten_self_time(cls_export: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """PyTorch: each ATen operator's self time (its children's not counted twice), shares of their sum; the
    lines PyTorch's profiler prints on stderr as it starts and stops ("USDT:... profiler_start") are not
    printed."""
    backend, _ = load_backend(cls_export, backend="torch", device="cpu", threads=1)
    profile = backend.profile(_feed(), 1)
    backend.close()
    names = [op["op"] for op in profile["ops"]]
    assert names and all(name.startswith("aten::") for name in names)
    assert "aten::addmm" in names and "provider" not in profile["ops"][0]
    assert profile["calls"] == 1 and abs(sum(op["share"] for op in profile["ops"]) - 1) < 1e-6
    assert all(op["nodes"] >= 1 and op["ms"] >= 0 for op in profile["ops"])
    assert "USDT" not in capfd.readouterr().err


def test_a_backend_that_cannot_profile_says_why() -> None:
    from pvt_deploy.runtimes.triton import TritonBackend

    triton = TritonBackend.__new__(TritonBackend)  # no server: profile() asks none
    with pytest.raises(BackendUnavailableError, match="Triton server runs the model.*metrics"):
        triton.profile(_feed(), 3)


def _count_profiling_sessions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """ONNX Runtime sessions made from here on: whether each one profiles."""
    import onnxruntime as ort

    made: list[bool] = []
    real = ort.InferenceSession

    def counting(*args: Any, sess_options: Any = None, **kwargs: Any) -> Any:
        made.append(bool(sess_options is not None and sess_options.enable_profiling))
        return real(*args, sess_options=sess_options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counting)
    return made


def test_bench_profile_json_and_without_it_nothing_changes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    made = _count_profiling_sessions(monkeypatch)
    args = ("bench", "--model", str(cls_export), "--backends", "onnx,onnx-int8", "--warmup", "0", "--iters", "2",
            "--json")
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0, err
    assert all("profile" not in row for row in json.loads(out)["results"]) and made and not any(made)
    made.clear()
    code, out, err = run(monkeypatch, capsys, *args, "--profile")
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert [row["status"] for row in rows] == ["ok", "ok"] and made.count(True) == 2
    for row in rows:
        profile = row["profile"]
        assert profile["calls"] == 2 and "error" not in profile and profile["total_ms"] > 0
        assert "MatMul" in {op["op"] for op in profile["ops"]}
        assert abs(sum(op["share"] for op in profile["ops"]) - 1) < 1e-6
        assert row["latency_ms"]["p50"] > 0  # the timed runs' figures stand beside it


def test_bench_profile_tables_and_a_profile_that_fails_costs_the_row_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """Text: after the latency table, one operator table per backend (80 columns, the --top slowest and the
    rest as 'other'). A backend that cannot profile (Backend.profile's default), or whose profiler fails,
    has the reason in its place: its row is timed as ever and the exit code is 0."""
    from pvt_deploy.runtimes.torch import TorchBackend

    def broken(self: Any, feed: Any, calls: int = 10) -> dict[str, Any]:
        raise RuntimeError("profiler\nexploded")

    monkeypatch.setattr(TorchBackend, "profile", Backend.profile)
    args = ("bench", "--model", str(cls_export), "--backends", "torch,onnx", "--warmup", "0", "--iters", "1")
    code, out, err = run(monkeypatch, capsys, *args, "--top", "3")  # --top alone: it asks for the tables
    assert code == 0, err
    assert "torch profile: the torch backend cannot time its operators" in out
    table = out[out.index("onnx: "):]
    assert re.search(r"^onnx: \d+\.\d\d ms of operators per call, 1 profiled call$", table, re.M), table
    lines = table.splitlines()
    assert lines[1].split() == ["op", "nodes", "ms", "share", "provider"]
    assert len([line for line in lines[3:] if line.rstrip().endswith("ort-cpu")]) == 3
    assert re.search(r"^other \(\d+ types\) +\d+ +\d+\.\d{3} +\d+\.\d%", table, re.M), table
    assert max(len(line) for line in out.splitlines()) <= 80
    monkeypatch.setattr(TorchBackend, "profile", broken)
    code, out, err = run(monkeypatch, capsys, *args, "--profile", "--json")
    assert code == 0, err
    rows = {row["backend"]: row for row in json.loads(out)["results"]}
    assert rows["torch"]["status"] == "ok" and rows["torch"]["latency_ms"]["p50"] > 0
    assert rows["torch"]["profile"] == {"calls": 0, "total_ms": None, "ops": [],
                                        "error": "RuntimeError: profiler exploded"}
    assert rows["onnx"]["profile"]["ops"]


@pytest.mark.parametrize("argv, said", [
    (["--dumpProfile"], "No such option: --dumpProfile. Did you mean --profile?"),
    (["--exportProfile=p.json"], "No such option: --exportProfile. Did you mean --profile --json?"),
    (["--profile", "--separateProfileRun"],
     "No such option: --separateProfileRun. Profiling (--profile) is always a run of its own, after the timed runs."),
])
def test_trtexecs_profile_options_are_answered_with_ours(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], said: str) -> None:
    code, _, err = run(monkeypatch, capsys, "bench", "--model", "exports/x/model.engine", *argv)
    assert code == 2 and said in " ".join(err.replace("│", " ").split()), err


def test_bench_memory_is_the_timed_runs_not_the_profiles(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """The profile's second session (a second copy of the graph in memory) comes after the row's memory is
    measured: the peak MB stays the timed runs' own, as the latency does."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    def costly(self: Any, feed: Any, calls: int = 10) -> dict[str, Any]:
        held = np.ones(64 << 20, np.float32)  # 256 MiB, every page written
        time.sleep(0.05)  # sampled every 5 ms
        return {"calls": calls, "total_ms": float(held[0]), "ops": []}

    monkeypatch.setattr(OnnxRuntimeBackend, "profile", costly)
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx", "--warmup",
                         "0", "--iters", "1", "--profile", "--json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert row["profile"]["total_ms"] == 1.0 and row["memory_mb"]["rss_peak_delta"] < 128
