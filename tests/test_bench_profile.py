"""``bench --profile``: each backend's time per operator type, from a run of its own (Backend.profile)."""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_runtime_artifacts import cached_export

from pvt_deploy.errors import BackendUnavailableError
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
