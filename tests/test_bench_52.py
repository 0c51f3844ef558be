"""bench: the runs of each backend as they go (helper DT, session 52)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_runtime_artifacts import cached_export


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def test_bench_says_each_backends_runs_as_they_end(cls_export: Path) -> None:
    """bench showed a spinner and the backend's name for the whole of its runs (minutes for a large model on a
    CPU: 23 runs of pvt_small's detector) with no count of them. ``steps(done, total)`` follows ``progress(label)``:
    once the backend has loaded, then after each warmup and timed run; a backend skipped (no engine here) loads
    nothing and runs nothing."""
    from pvt_deploy.bench import benchmark

    said: list[object] = []
    report = benchmark(cls_export, backends="onnx,trt,torch", imgsz=64, warmup=2, iters=3, progress=said.append,
                       steps=lambda done, total: said.append((done, total)))
    assert [(r["backend"], r["status"]) for r in report["results"]] == [("onnx", "ok"), ("trt", "skipped"),
                                                                        ("torch", "ok")]
    runs = [(done, 5) for done in range(6)]
    assert said == ["onnx", *runs, "trt", "torch", *runs]


def test_check_says_each_backends_pictures_as_they_are_run(cls_export: Path) -> None:
    """check showed 'running torch' and a spinner while a backend ran every picture (8 by default, seconds each
    for a large detector on a CPU); ``steps(done, total)`` counts them, as bench's runs, once the backend loaded."""
    from pvt_deploy.bench import cross_check

    said: list[object] = []
    report = cross_check(cls_export, backends="onnx,torch", max_images=2, progress=said.append,
                         steps=lambda done, total: said.append((done, total)))
    assert [row["backend"] for row in report["results"] if row["status"] == "ok"] == ["torch", "onnx"]
    pictures = [(0, 2), (1, 2), (2, 2)]
    assert said == ["torch", *pictures, "onnx", *pictures]
