"""``pvt-deploy export`` / ``check`` given option values a user may type that the tool cannot honour:
one line, the exit code, the output folder as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from test_tensorrt_build_fake import make_artifact, use_fake  # noqa: F401 - use_fake: a fixture


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
    traced: list[tuple[int, ...]] = []  # the trace's example shapes: none, the refusal comes first

    def trace(module: object, example: tuple[Any, ...], *args: object, **kwargs: object) -> None:
        traced.append(tuple(example[0].shape))
        raise AssertionError("traced at --imgsz 100000")

    monkeypatch.setattr("torch.onnx.export", trace)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "100000",
                            "--no-simplify", "-o", str(out), *args)
    assert code == 2, err[-2000:]
    assert traced == []  # refused before the trace, by order rather than by a time a loaded machine could outrun
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


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_a_tensorrt_workspace_that_is_no_size_is_refused_before_the_export(
        value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--workspace nan passed the build's check (nan <= 0 is false) and inf was taken too: on a machine with
    TensorRT each failed in int(workspace * 2**30) with a traceback after the whole ONNX export (minutes of
    trace, calibration and parity), and -1 or 0 was refused only then. Refused before the export, where TensorRT
    is missing too (the value is the user's to fix either way)."""
    def no_export(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("exported before refusing")

    monkeypatch.setattr("pvt_deploy.export.onnx.export_onnx", no_export)
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--format", "trt",
                            "--workspace", value, "-o", str(tmp_path / "x"))
    assert code == 2 and stdout == "" and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == (f"error: TensorRT workspace_gib (--workspace) {float(value)}: must be a "
                                            "positive, finite number of GiB")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_build_engine_refuses_a_workspace_that_is_no_size_in_one_line(value: float, use_fake: Any,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    """build_engine(workspace_gib=nan / inf) went on to int(workspace_gib * 2**30): ValueError / OverflowError."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.export.tensorrt import build_engine

    trt = use_fake()
    art = make_artifact(tmp_path / "art")
    with pytest.raises(InputError, match=r"^TensorRT workspace_gib \(--workspace\) (nan|inf): must be a positive"):
        build_engine(art, workspace_gib=value)
    assert not any(kind == "build" for kind, _ in trt.calls) and not (art / "model.engine").exists()


def test_an_opset_past_the_dynamo_exporters_converter_is_refused_before_the_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--exporter dynamo --opset 26 (export --help said 'up to 28 with dynamo': what onnx defines) traced for a
    minute, then failed the graph check (exit 1, "No Op registered for Gelu with domain_version of 18"): torch
    writes opset 18 and converts it with onnxscript's version converter, which stops at its
    SUPPORTED_MAX_ONNX_OPSET (25), and past it torch kept opset 18 with opset-20 operators in it. The limit
    --opset is checked against, and the help's, is the converter's; the highest it gives is still taken."""
    from onnxscript.version_converter import _version_converter

    from pvt_deploy.export import onnx as onnx_export

    converts = _version_converter.SUPPORTED_MAX_ONNX_OPSET
    assert onnx_export.max_opset("dynamo")[0] == converts

    def no_trace(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("traced before refusing")

    monkeypatch.setattr(onnx_export, "trace_to_onnx", no_trace)
    out = tmp_path / "x"
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                            "--exporter", "dynamo", "--opset", str(converts + 1), "-o", str(out))
    assert code == 2 and stdout == "" and not out.exists(), err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: --opset {converts + 1}: onnxscript ") and f"up to {converts} (" in line, line
    code, stdout, _ = run(monkeypatch, capsys, "export", "--help")
    assert code == 0 and f"{converts} with dynamo." in " ".join(stdout.replace("│", " ").split())


@pytest.fixture(scope="module")
def cls_int8_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pvt_v2_b0 classifier up to 4096 px whose CPU INT8 graph runs attention as plain MatMuls (its
    scores held whole: (H*W/16) x (H*W/1024) floats, 10.5 GB at 2560x2560); the session's, as test_export_47's."""
    from export_fixtures import cached_big_cls_int8

    return cached_big_cls_int8(tmp_path_factory)


@pytest.mark.parametrize("command", ["bench", "infer", "check"])
def test_a_size_whose_onnx_runtime_run_cannot_get_its_memory_is_the_users_input(
        command: str, cls_int8_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """bench --imgsz 5000 --backends onnx (an export whose range takes it) exited 3, 'no backend could be
    benchmarked here', with ONNX Runtime's 'Failed to allocate memory for requested buffer of size ...' cut off
    mid-sentence, and ONNX Runtime's own coloured log of that error spilled onto the terminal; infer exited 1,
    'ONNX Runtime failed'. The size is the user's to change: one line, exit 2, naming it, what ONNX Runtime asked
    for and the memory free, as PyTorch's refusal does. The process's address space is capped a few GB above
    what it holds, so that the 10.5 GB of scores cannot be had on any machine."""
    import resource

    from pvt_deploy.assets import sample_image

    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: 8 << 30)  # PyTorch refuses it too (check)
    with open("/proc/self/statm", encoding="utf-8") as f:
        held = int(f.read().split()[0]) * resource.getpagesize()
    args = {"bench": ["bench", "--model", str(cls_int8_export), "--backends", "onnx-int8", "--iters", "1",
                      "--warmup", "0"],
            "infer": ["infer", str(sample_image("astronaut")), "--model", str(cls_int8_export), "--backend", "onnx",
                      "--precision", "int8", "-o", str(tmp_path / "out")],
            "check": ["check", "--model", str(cls_int8_export), "--backends", "torch,onnx-int8",
                      "--max-images", "1"]}[command]
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (held + (4 << 30), hard))
    try:
        code, stdout, err = run(monkeypatch, capfd, *args, "--imgsz", "2560")  # fd 2: ONNX Runtime logs there
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert code == 2, err[-2000:]
    assert "ExecuteKernel" not in err and "Failed to allocate" not in err and "Traceback" not in err, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "--imgsz 2560x2560" in line, line
    # check's line names PyTorch's refusal and ONNX Runtime's, the rows' order (31b73c1)
    assert ("model.int8.onnx: --imgsz 2560x2560 at --batch 1 needs more memory than ONNX Runtime could get: "
            "it asked for 10 GB at once, more than the 8.6 GB free in this machine's memory "
            "(pass a smaller --imgsz)") in line, line


def test_words_of_a_fixed_set_are_taken_in_any_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--task Detect, --exporter TorchScript, --nms Host (a capital from a README, a shell's history) were
    refused ('choose one of detect, ...') where --format ONNX and --backends ONNX were taken. Every fixed set of
    words is now taken in any case, as the word it names (the manifest records 'classify'); a word that names
    none is still refused, as given."""
    import json

    out = tmp_path / "cls"
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--task", "Classify",
                       "--exporter", "TorchScript", "--nms", "HOST", "--seg-output", "Logits", "--int8-flavour",
                       "Both", "--int8-cpu", "Auto", "--format", "ONNX", "--imgsz", "32", "--no-parity",
                       "--no-simplify", "-o", str(out))
    assert code == 0, err[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["task"], manifest["export"]["exporter"]) == ("classify", "torchscript")
    code, stdout, err = run(monkeypatch, capsys, "models", "--task", "Segment", "--json")
    assert code == 0, err[-2000:]
    assert {row["task"] for row in json.loads(stdout)} == {"segment"}
    for args, line in ((["export", "--model", "pvt_v2_b0-cls", "--task", "Bogus", "-o", str(tmp_path / "x")],
                        "error: --task 'Bogus': choose one of detect, segment, classify, features"),
                       (["export", "--model", "pvt_v2_b0-cls", "--exporter", "Onnx", "-o", str(tmp_path / "x")],
                        "error: --exporter 'Onnx': choose one of torchscript, dynamo"),
                       (["models", "--task", "Bogus"],
                        "error: --task 'Bogus': choose one of detect, segment, classify, features")):
        code, stdout, err = run(monkeypatch, capsys, *args)
        assert code == 2 and stdout == "" and err.strip().splitlines()[-1] == line, err[-2000:]
    assert not (tmp_path / "x").exists()
