"""``pvt-deploy export`` end to end (a real process) and its error paths (one line, exit code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pvt_deploy.cli import main


def test_cli_export_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "cls"
    proc = subprocess.run([sys.executable, "-m", "pvt_deploy", "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                           "-o", str(out), "--half"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.fp16.onnx", "manifest.json", ".ort-cache"}
    from pvt_deploy.runtimes.ort_session import optimized_graph

    graph = optimized_graph(out / "model.onnx")  # what a backend session loads: the parity gate built it
    assert graph.cached and graph.changed and graph.path.parent == out / ".ort-cache"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"]["random_init"] and manifest["parity"]["model.fp16.onnx"]["passed"]
    assert "RANDOM" in proc.stderr and "Traceback" not in proc.stderr
    assert "nodes after simplification" in proc.stderr  # node counts reported on the console


def test_cli_int8_default_is_the_api_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--int8` without `--int8-cpu` picks the per-graph flavour (dynamic for a classifier), like export_onnx."""
    import inspect

    from pvt_deploy.export import export_onnx

    assert inspect.signature(export_onnx).parameters["int8_cpu"].default == "auto"
    out = tmp_path / "q"
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "64", "-o", str(out), "--int8", "--int8-flavour", "cpu",
                      "--no-parity"], monkeypatch, capsys)
    assert code == 0, err
    record = json.loads((out / "manifest.json").read_text())["precision"]["int8"]["cpu"]
    assert record["method"] == "dynamic" and record["ops"] == ["MatMul", "Gemm"]
    # quantized on the CPU INT8 layout: SR convs as MatMuls, channels-last depthwise MLP convs, fused attention
    # and GELU; the depthwise convs static INT8, calibrated on the bundled images
    assert record["layout"] == {"patch_matmuls": 6, "depthwise_channels_last": 8, "sra_attention": 8, "gelu": 8}
    assert record["static_depthwise"]["convs"] == 8 and record["static_depthwise"]["calibration"]["images"] >= 1


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "export", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    return int(e.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("argv, code, text", [
    (["--model", "pvt_nonexistent"], 2, "unknown model 'pvt_nonexistent'"),
    (["--model", "pvt_v2_b0-cls", "--imgsz", "big"], 2, "--imgsz 'big'"),
    (["--model", "pvt_v2_b0-cls", "--int8", "--calib", "/nonexistent/calib"], 2, "calibration folder"),
    (["--model", "pvt_v2_b0-cls", "--opset", "13"], 2, "opset >= 17"),
    (["--model", "pvt_v2_b0-cls", "--nms", "graph"], 2, "--nms graph is for detection models"),
    (["--model", "pvt_v2_b0", "--exporter", "jit"], 2, "--exporter 'jit'"),
    (["--model", "pvt_v2_b0-cls", "--weights", "/nonexistent/w.pth"], 2, "does not exist"),
    (["--model", "exports/definitely/missing.pth"], 2, "missing.pth"),
])
def test_cli_errors_are_one_line(argv: list[str], code: int, text: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run(argv, monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == code, err
    assert len(lines) == 1 and text in lines[0], err
    assert "Traceback" not in err


def test_cli_unwritable_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(blocker / "sub")], monkeypatch, capsys)
    assert rc == 2 and "cannot write to output folder" in err and "Traceback" not in err
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(blocker)], monkeypatch, capsys)
    assert rc == 2 and "is not a folder" in err


def test_cli_trt_without_tensorrt_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from pvt_deploy.errors import BackendUnavailableError
    from pvt_deploy.export.tensorrt import require_tensorrt

    try:
        require_tensorrt()
    except BackendUnavailableError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    rc, err = _run(["--model", "pvt_v2_b0", "--format", "trt", "-o", str(tmp_path / "x")], monkeypatch, capsys)
    assert rc == 3 and "TensorRT" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # failed before any export work


def test_export_says_when_int8_is_slower_than_fp32_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    import pvt_deploy.manifest
    from pvt_deploy.cli.export import _print_export_figures

    def figures(speedup: float) -> str:
        manifest = {"precision": {"int8": {"cpu": {"cpu_ort_speedup_vs_fp32": speedup}}}}
        monkeypatch.setattr(pvt_deploy.manifest, "read_manifest", lambda folder: manifest)
        console = Console(record=True, width=200)
        _print_export_figures(console, tmp_path, 1.0)
        return console.export_text()

    assert "0.76x the speed of model.onnx" in figures(0.76)
    assert "speed of model.onnx" not in figures(2.8)
