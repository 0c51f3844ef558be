"""``bench`` consistent with info and check: a bad --device said once, an interrupt between backends, the
manifest read once (helper CV, session 50)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import run
from test_runtime_artifacts import cached_export


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "mps"])
def test_bench_says_a_bad_device_once_before_any_work(
        device: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """``bench --device bogus`` loaded each backend, which refused it in its own words, a row each, and the error
    said it again for each (five times). It is one line now, exit 2, before anything loads."""
    from pvt_deploy.runtimes import loader

    def not_reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("a backend was loaded before --device was checked")

    monkeypatch.setattr(loader, "load_backend", not_reached)
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--device", device,
                         "--iters", "1", "--warmup", "0")
    assert code == 2 and out == "", out
    assert err.splitlines() == [f"error: --device {device}: no such device; choose cpu, cuda, cuda:N, N (a GPU's "
                                "index) or tensorrt"], err
    from pvt_deploy.bench import benchmark
    from pvt_deploy.errors import InputError

    with pytest.raises(InputError, match=f"^device {device}: no such device"):
        benchmark(cls_export, device=device)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--device", device)
    assert code == 2 and out == "" and err.startswith(f"error: --device {device}: no such device;"), err


def _raise_in(frame_name: str, real: object) -> object:
    """``real`` (a callable), raising KeyboardInterrupt instead where ``frame_name`` calls it, from the second
    call there on: Ctrl-C landing at that point of bench's loop, between two backends."""
    import sys

    calls = {"n": 0}

    def stand_in(*args: object, **kwargs: object) -> object:
        if sys._getframe(1).f_code.co_name == frame_name:
            calls["n"] += 1
            if calls["n"] >= 2:
                raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[operator]

    return stand_in


def test_an_interrupt_between_backends_keeps_the_rows_timed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """Ctrl-C inside a measurement kept the rows timed before it (d4710ce), but one that landed between two
    backends (the garbage collection after a row, the progress line before the next) lost them all: 'interrupted'
    alone, exit 130. It keeps them wherever it lands."""
    import gc
    import types

    from pvt_deploy import bench

    # after the second row, at bench's gc.collect() between rows (PeakRSS's own, inside a row, are untouched)
    monkeypatch.setattr(bench, "gc", types.SimpleNamespace(collect=_raise_in("benchmark", gc.collect)))
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends",
                         "onnx,onnx-int8,torch", "--warmup", "0", "--iters", "1", "--json")
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert [(r["backend"], r["status"]) for r in report["results"]] == [("onnx", "ok"), ("onnx-int8", "ok")]
    assert "not timed: torch" in err
    monkeypatch.undo()

    # as the second backend's progress is shown: from Python, the first row on the interrupt
    from pvt_deploy.bench import BenchInterrupted, benchmark

    def progress(label: str) -> None:
        if label == "torch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stopped:
        benchmark(cls_export, backends="onnx,torch", warmup=0, iters=1, progress=progress)
    assert isinstance(stopped.value, BenchInterrupted) and stopped.value.untimed == ["torch"]
    assert [r["backend"] for r in stopped.value.report["results"]] == ["onnx"]
    assert stopped.value.report["interrupted"] is True


def test_bench_reads_an_exports_manifest_once_before_the_backends(
        monkeypatch: pytest.MonkeyPatch, cls_export: Path) -> None:
    """bench read the export's manifest three times before its first backend loaded (the damaged-manifest check,
    the --imgsz range, the variants the export lacks): once now, handed to the other two."""
    from pvt_deploy import manifest as manifest_module
    from pvt_deploy.bench import benchmark

    real = manifest_module.read_manifest
    reads: list[str] = []
    started: list[int] = []

    def counted(folder: object) -> dict[str, object]:
        reads.append(str(folder))
        return real(folder)  # type: ignore[arg-type]

    monkeypatch.setattr(manifest_module, "read_manifest", counted)
    report = benchmark(cls_export, imgsz=64, batch=2, warmup=0, iters=1,
                       progress=lambda label: started.append(len(reads)))
    assert started[0] == 1 and reads[0] == str(cls_export), reads
    assert {r["backend"]: r["status"] for r in report["results"]}["onnx"] == "ok"


def test_bench_memory_is_in_decimal_mb_as_info_and_export_sizes_are(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """bench's peak MB were MiB (2**20 bytes) where info and export give decimal MB: one unit now, MB, 10^6
    bytes. And the artifact each report is of is under one key in every --json (bench's 'model', info's 'path'
    and check's 'artifact' stay)."""
    import numpy as np

    from pvt_deploy.bench import PeakRSS

    with PeakRSS() as mem:
        held = np.ones(50_000_000, np.uint8)  # 50 MB (47.7 MiB), every page written
        mem.stop()
    assert held[-1] == 1 and 49.9 < mem.delta_mb < 60, mem.delta_mb

    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                         "--warmup", "0", "--iters", "1", "--json")
    report = json.loads(out)
    assert code == 0 and report["artifact"] == report["model"] == str(cls_export), err
    code, out, err = run(monkeypatch, capsys, "info", str(cls_export), "--json")
    facts = json.loads(out)
    assert code == 0 and facts["artifact"] == facts["path"] == str(cls_export), err
