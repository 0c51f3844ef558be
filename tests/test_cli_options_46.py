"""``pvt-deploy export`` / ``check`` given option values a user may type that the tool cannot honour:
one line, the exit code, the output folder as it was."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cli_run import run


@pytest.mark.parametrize("args, runs", [
    ([], "the parity gate"),  # dynamic: parity runs PyTorch on pictures planned at --imgsz
    (["--static", "--no-parity"], "tracing a static graph"),  # the trace itself runs at --imgsz
    (["--no-parity", "--int8", "--int8-flavour", "trt"], "INT8 calibration"),
])
def test_an_imgsz_whose_pytorch_run_cannot_fit_in_memory_is_refused_before_the_trace(
        args: list[str], runs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--imgsz 100000 (a typo, a pixel count): the export ran PyTorch at that size and failed with a traceback
    deep in NumPy ('Unable to allocate 112. GiB') or PyTorch ('you tried to allocate 155538739456 bytes' at
    5000), or was killed by the kernel where the allocation was granted. Refused before the trace, as infer
    refuses it, naming what runs at that size and a size that fits; the output folder is left as it was."""
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: 8 << 30)  # 8 GiB free, on any machine
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    t0 = time.perf_counter()
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "100000",
                            "--no-simplify", "-o", str(out), *args)
    assert code == 2, err[-2000:]
    assert time.perf_counter() - t0 < 60  # before the trace and any run at that size
    assert "Traceback" not in err and stdout == ""
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "--imgsz 100000x100000" in line and runs in line, line
    assert "8.6 GB free in this machine's memory" in line and "pass --imgsz " in line
    assert ("--no-parity" in line) == (runs == "the parity gate")  # the one way to keep the size, where there is one
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left beside it


def test_an_infinite_parity_tolerance_is_refused_by_export_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--parity-tolerance inf (and check --tolerance inf) scaled every limit to infinity (min cosine -inf,
    max_rel inf): the gate passed any output, the manifest and check's table said 'ok', and check exited 0 on
    files it had not judged. Refused as 0 and nan are, before any work; a large finite factor still loosens."""
    from pvt_deploy.export import export_onnx

    out = tmp_path / "out"
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                            "--parity-tolerance", "inf", "-o", str(out))
    assert code == 2 and stdout == "" and not out.exists(), err[-2000:]
    assert err.strip().splitlines()[-1] == ("error: --parity-tolerance: parity tolerance factor must be finite, "
                                            "not inf (it would pass any output)")
    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "cls", imgsz=32, parity=False, simplify=False)
    code, stdout, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--tolerance", "inf")
    assert code == 2 and stdout == "", err[-2000:]
    assert err.strip().splitlines()[-1] == ("error: --tolerance: parity tolerance factor must be finite, not inf "
                                            "(it would pass any output)")
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--tolerance", "1e6",
                       "--max-images", "1")
    assert code == 0, err[-2000:]
