"""``bench`` leftovers (helper DK, session 51): an interrupt after the last backend is timed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from test_runtime_artifacts import cached_export


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def test_an_interrupt_as_the_spinner_closes_keeps_every_row(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """Ctrl-C (or SIGTERM) in the milliseconds after the last backend was timed, while bench's spinner closed, lost
    the whole report: 'interrupted', exit 130, nothing on stdout, though every row had been measured. The rows are
    shown (--json's ``interrupted`` true, as the exit says), nothing named as not timed, and the exit is 130.
    (The spinner is a progress bar since session 52: the interrupt comes as its display closes.)"""
    import contextlib
    from collections.abc import Iterator

    from pvt_deploy.cli import bench as bench_cli

    real_display = bench_cli.progress_display

    @contextlib.contextmanager
    def closes_then_interrupted(console: Any) -> Iterator[Any]:
        with real_display(console) as shown:
            yield shown
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_cli, "progress_display", closes_then_interrupted)
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx,torch",
                         "--warmup", "0", "--iters", "1", "--json")
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    report = json.loads(out)
    assert report["interrupted"] is True and "not timed" not in err
    assert [(r["backend"], r["status"]) for r in report["results"]] == [("onnx", "ok"), ("torch", "ok")]
    assert report["results"][1]["vs_torch"] == 1.0 and report["results"][0]["vs_torch"] > 0

    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                         "--warmup", "0", "--iters", "1")
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    rows = out.split("─\n", 1)[1].split("host:")[0].splitlines()  # the table's rows, under its rule
    assert [line.split()[0] for line in rows] == ["onnx"], out


def test_an_interrupt_as_the_rows_are_compared_hands_them_over(
        monkeypatch: pytest.MonkeyPatch, cls_export: Path) -> None:
    """benchmark() compared the rows with PyTorch's after its try: a Ctrl-C there, every backend timed, was a bare
    KeyboardInterrupt without them. It is a BenchInterrupted holding them all, none untimed."""
    from pvt_deploy import bench

    real = bench._compare_with_torch
    calls = []

    def interrupted_once(report: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real(report)

    monkeypatch.setattr(bench, "_compare_with_torch", interrupted_once)
    with pytest.raises(KeyboardInterrupt) as stopped:
        bench.benchmark(cls_export, backends="torch,onnx", warmup=0, iters=1)
    assert isinstance(stopped.value, bench.BenchInterrupted) and stopped.value.untimed == []
    report = stopped.value.report
    assert report["interrupted"] is True
    assert [(r["backend"], r["status"], r["vs_torch"] > 0) for r in report["results"]] == [
        ("torch", "ok", True), ("onnx", "ok", True)]
