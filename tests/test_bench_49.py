"""``pvt-deploy bench`` stopped part-way (helper CP's review, session 49)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from test_runtime_artifacts import cached_export


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


@pytest.fixture
def stop_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Sends a signal (``stop["signal"]``, SIGINT unless the test sets another) to this process, synchronously
    to this thread, as the backend ``stop["label"]`` starts to be timed; Python's own SIGINT handler in place,
    as under a terminal."""
    from pvt_deploy import bench

    real = bench._bench_one
    stop: dict[str, Any] = {"signal": signal.SIGINT, "label": None}

    def timed(label: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if label == stop["label"]:
            signal.raise_signal(stop["signal"])
        return real(label, *args, **kwargs)

    monkeypatch.setattr(bench, "_bench_one", timed)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupted_bench_shows_the_backends_it_timed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path,
        stop_at: dict[str, Any]) -> None:
    """Ctrl-C while the second of three backends was timed printed nothing but 'interrupted' (exit 130): the
    first backend's figures, already measured, were lost, with --json too. They are printed (the JSON marked
    ``"interrupted": true``), the backends not timed named on stderr, and the exit is still 130."""
    stop_at["label"] = "onnx-int8"
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends",
                         "onnx,onnx-int8,torch", "--warmup", "0", "--iters", "2", "--json")
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    report = json.loads(out)
    assert report["interrupted"] is True and report["iters"] == 2
    (row,) = report["results"]
    assert row["backend"] == "onnx" and row["status"] == "ok" and row["vs_torch"] is None
    assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["max"] and row["throughput_fps"] > 0
    assert "not timed: onnx-int8, torch" in err

    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends",
                         "onnx,onnx-int8,torch", "--warmup", "0", "--iters", "2")
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    rows = out.split("─\n", 1)[1].split("host:")[0].splitlines()  # the table's rows, under its rule
    assert [line.split()[0] for line in rows] == ["onnx"], out
    assert "p50 ms" in out and "not timed: onnx-int8, torch" in err


def test_a_sigterm_keeps_them_too_and_exits_143(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path,
        stop_at: dict[str, Any]) -> None:
    stop_at.update(signal=signal.SIGTERM, label="torch")
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx,torch",
                         "--warmup", "0", "--iters", "1", "--json")
    assert code == 143 and err.strip().splitlines()[-1] == "terminated", err
    report = json.loads(out)
    assert report["interrupted"] is True and [r["backend"] for r in report["results"]] == ["onnx"]


def test_an_uninterrupted_bench_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        cls_export: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                         "--warmup", "0", "--iters", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["interrupted"] is False and [r["status"] for r in report["results"]] == ["ok"]


def test_the_api_raises_an_interrupt_that_holds_the_rows(
        cls_export: Path, stop_at: dict[str, Any]) -> None:
    """benchmark() called from a script still stops on Ctrl-C (a KeyboardInterrupt), its rows on the error."""
    stop_at["label"] = "onnx"
    from pvt_deploy.bench import BenchInterrupted, benchmark

    with pytest.raises(KeyboardInterrupt) as stopped:
        benchmark(cls_export, backends="torch,onnx", warmup=0, iters=1)
    assert isinstance(stopped.value, BenchInterrupted) and stopped.value.untimed == ["onnx"]
    report = stopped.value.report
    (row,) = report["results"]
    assert report["interrupted"] is True and row["backend"] == "torch" and row["vs_torch"] == 1.0


def test_a_damaged_manifest_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        cls_export: Path, tmp_path: Path) -> None:
    """An export whose manifest.json cannot be read was tried by each of the five backends in turn: five notes
    on stdout saying the same, then the error saying it five times over (exit 2), where info and check say it
    once. bench now says it once too, before any backend loads."""
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(cls_export, folder)
    (folder / "manifest.json").write_text("{bad", encoding="utf-8")
    for command in (["bench", "--model", str(folder), "--warmup", "0", "--iters", "1"], ["info", str(folder)]):
        code, out, err = run(monkeypatch, capsys, *command)
        assert code == 2 and out == "", (command, out)
        assert err.splitlines() == [f"error: {folder / 'manifest.json'}: unreadable manifest (Expecting property "
                                    "name enclosed in double quotes: line 1 column 2 (char 1))"], (command, err)


def test_the_peak_mb_note_says_what_a_gpu_row_measured() -> None:
    """The table's note said a GPU row's peak MB was torch.cuda.max_memory_allocated, which only PyTorch's row
    reads: ONNX Runtime's CUDA provider and TensorRT allocate outside torch (bench._cuda_peak reads what the GPU
    holds beyond its level before loading). And it says the unit: MB, 10^6 bytes, as info and export write them
    (it was MiB until session 50)."""
    from rich.console import Console

    from pvt_deploy.cli.bench import render

    def row(backend: str, device: str, gpu_mb: float) -> dict[str, Any]:
        return {"backend": backend, "status": "ok", "precision": "fp32", "device": device,
                "latency_ms": {"p50": 2.0, "p90": 3.0, "p99": 4.0, "mean": 2.5}, "throughput_fps": 400.0,
                "stages_ms": {"preprocess": 0.1, "inference": 2.5, "postprocess": 0.2}, "vs_torch": None,
                "memory_mb": {"rss_peak_delta": 12.0, "cuda_peak": gpu_mb}}

    report = {"model": "m", "task": "classify", "input_shape": [1, 3, 64, 64], "iters": 3,
              "host": {"cpu": "cpu", "physical_cores": 2, "gpu": "H100"},
              "results": [row("torch", "cuda:0", 77.0), row("onnx", "CUDAExecutionProvider", 300.0)]}
    console = Console(record=True, width=80)
    render(report, console)
    raw = console.export_text()
    text = " ".join(raw.split())
    cells = [line.split() for line in raw.splitlines()]
    assert [c[8] for c in cells if c and c[0] in ("torch", "onnx")] == ["77", "300"], text
    assert ("peak MB = MB (10^6 bytes) the backend added: resident memory on the CPU; on a GPU, PyTorch's max_memory_allocated, "
            "another runtime's GPU memory in use above what it was before loading") in text, text
