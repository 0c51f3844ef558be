"""``pvt-deploy export`` end to end (a real process) and its error paths (one line, exit code)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run
from dataset_files import dataset as _dataset
from dataset_files import jpgs as _jpgs
from export_fixtures import Artifact

from pvt_deploy.cli import main
from pvt_deploy.utils.files import sha256_file

pytest_plugins = ["export_fixtures"]


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
    assert "after simplification" in proc.stderr  # node counts reported on the console
    # Without weights every command initialises from the same seed: the zoo name run by PyTorch in this
    # process gives what the export made in another process gives, and torch's global RNG is left alone.
    import numpy as np
    import torch

    from pvt_deploy import Model
    from pvt_deploy.assets import sample_image

    rng = torch.get_rng_state()
    with Model("pvt_v2_b0-cls", imgsz=64) as zoo, Model(out) as exported:
        a, b = zoo.predict(str(sample_image("chelsea")))[0].probs, exported.predict(str(sample_image("chelsea")))[0].probs
    assert torch.equal(rng, torch.get_rng_state())
    assert a is not None and b is not None
    assert a.top.tolist() == b.top.tolist() and np.allclose(a.conf, b.conf, rtol=1e-3, atol=1e-6)


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
    # quantized on the CPU INT8 layout: SR convs as MatMuls, channels-last depthwise MLP convs, attention as
    # plain operators, fused GELU; the depthwise convs and the patch convs of stages 2-4 static INT8,
    # calibrated on the bundled images
    assert record["layout"] == {"patch_matmuls": 6, "depthwise_channels_last": 8, "sra_attention": 8, "gelu": 8,
                                "plain_attention": 8}
    assert record["static_depthwise"]["convs"] == 8 and record["static_depthwise"]["calibration"]["images"] >= 1
    assert record["static_patch_convs"]["convs"] == 3


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "export", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    return int(e.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("argv, code, text", [
    (["--model", "pvt_nonexistent"], 2, "unknown model 'pvt_nonexistent'"),
    (["--model", "pvt_v2_b0-cls", "--imgsz", "big"], 2, "--imgsz 'big'"),
    (["--model", "pvt_v2_b0-cls", "--imgsz", "224x"], 2, "'224x': a number is missing"),
    (["--model", "pvt_v2_b0-cls", "--int8", "--calib", "/nonexistent/calib"], 2, "calibration images: no such file or folder: /nonexistent/calib"),
    (["--model", "pvt_v2_b0-cls", "--opset", "13"], 2, "opset >= 17"),
    # past what torch's exporters write: was a RuntimeError traceback (exit 1) after the model loaded
    (["--model", "pvt_v2_b0-cls", "--opset", "24"], 2, "--opset 24: torch"),
    # dynamo converts to newer opsets (24 and 25 pass the gate), up to what onnx defines
    (["--model", "pvt_v2_b0-cls", "--opset", "99", "--exporter", "dynamo"], 2, "--opset 99: onnx"),
    (["--model", "pvt_v2_b0-cls", "--nms", "graph"], 2, "--nms graph is for detection models"),
    (["--model", "pvt_v2_b0", "--exporter", "jit"], 2, "--exporter 'jit'"),
    (["--model", "pvt_v2_b0-cls", "--weights", "/nonexistent/w.pth"], 2, "does not exist"),
    # a folder was "weights file tests does not exist", where infer says what it is
    (["--model", "pvt_v2_b0-cls", "--weights", "tests"], 2, "weights tests is a folder, not a checkpoint file"),
    (["--model", "exports/definitely/missing.pth"], 2, "missing.pth"),
    (["--model", "pvt_v2_b0-cls", "--min-size", "256", "--max-size", "64"], 2,
     "--min-size 256 is larger than --max-size 64"),
    (["--model", "pvt_v2_b0-cls", "--min-size", "512"], 2, "--min-size 512 is larger than --imgsz 224x224"),
    (["--model", "pvt_v2_b0-cls", "--imgsz", "256", "--max-size", "128"], 2,
     "--max-size 128 is smaller than --imgsz 256x256"),
    (["--model", "pvt_v2_b0-cls", "--min-size", "16"], 2, "--min-size 16: must be at least 32"),
    (["--model", "pvt_v2_b0", "--min-size", "33", "--imgsz", "32"], 2,
     "--min-size 33 (rounded up to 64) is larger than --imgsz 32x32"),
    (["--model", "pvt_v2_b0", "--max-size", "300", "--imgsz", "300"], 2,
     "--max-size 300 (rounded down to 288) is smaller than --imgsz 320x320"),
    (["--model", "pvt_v2_b0-cls", "-o", "."], 2, "is (or holds) the current folder"),
    (["--model", "pvt_v2_b0-cls", "--format", "triton", "--instance-kind", "tpu"], 2, "--instance-kind 'tpu'"),
    # was "... but task='detect' was asked", the Python spelling
    (["--model", "pvt_v2_b0-cls", "--task", "detect"], 2,
     "--task 'detect': 'pvt_v2_b0-cls' is a classify model (drop --task, or give the backbone, pvt_v2_b0, with it)"),
    (["--model", "pvt_v2_b0", "--task", "bogus"], 2, "--task 'bogus': choose one of detect, segment, classify"),
])
def test_cli_errors_are_one_line(argv: list[str], code: int, text: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run(argv, monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == code, err
    assert len(lines) == 1 and text in lines[0], err
    assert "Traceback" not in err


def test_the_dynamo_exporter_may_write_opsets_past_torchscripts(tmp_path: Path) -> None:
    """--opset 24 was refused for both exporters (torch's ONNX_MAX_OPSET is the TorchScript exporter's),
    though dynamo converts to it and its graph passes the gate (24 and 25, pvt_v2_b0-cls, torch 2.13). Checked
    through the next argument check, which comes after the opset's: no export is made."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.export import export_onnx

    with pytest.raises(InputError, match="batch 0: must be >= 1"):
        export_onnx("pvt_v2_b0-cls", tmp_path / "out", exporter="dynamo", opset=24, batch=0)
    with pytest.raises(InputError, match="opset 24: torch .*TorchScript exporter writes opsets up to 23"):
        export_onnx("pvt_v2_b0-cls", tmp_path / "out", opset=24, batch=0)


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"min_size": 512}, "min_size 512 is larger than imgsz 224x224 (the default; pass imgsz)"),
    ({"imgsz": 256, "max_size": 128}, "max_size 128 is smaller than imgsz 256x256"),
    ({"nms": "graph"}, "nms graph is for detection models"),
    ({"imgsz": "224x"}, "imgsz '224x': a number is missing"),
    ({"task": "segment"}, "task 'segment': 'pvt_v2_b0-cls' is a classify model (drop task, or give the backbone"),
])
def test_export_onnx_errors_name_its_arguments(kwargs: dict[str, object], text: str, tmp_path: Path) -> None:
    """The checks ``export`` and ``export_onnx`` share named the CLI's options in Python too
    (``export_onnx(..., min_size=512)``: "--min-size 512 is larger than --imgsz 224x224"); the CLI's
    messages above still name its options."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.export import export_onnx

    with pytest.raises(InputError) as e:
        export_onnx("pvt_v2_b0-cls", tmp_path / "x", **kwargs)
    assert str(e.value).startswith(text), e.value
    assert not (tmp_path / "x").exists()


def test_a_mistyped_int8_flavour_is_refused_without_int8_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--int8-flavour gpu`` without ``--int8`` exported (exit 0) and said nothing of the word, where a
    mistyped ``--int8-cpu`` is refused with or without ``--int8``: a choice is checked whether used or not."""
    out = tmp_path / "x"
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "--no-parity", "--int8-flavour", "gpu", "-o", str(out)],
                   monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: --int8-flavour 'gpu': choose one of"), err
    assert not out.exists()


@pytest.mark.parametrize("argv, text", [
    (["--model", "pvt_v2_b0-cls", "--nms", "graph"], "--nms graph is for detection models; pvt_v2_b0-cls is a classify"),
    (["--model", "pvt_v2_b0", "--seg-output", "argmax"], "--seg-output argmax is for segmentation models; pvt_v2_b0 is"),
])
def test_an_option_of_another_task_is_refused_before_the_model_is_built(
        argv: list[str], text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--model pvt_v2_b0-cls --nms graph`` built the model (its random-weights warning first, seconds for a
    large one) before saying that graph NMS is for detectors, which the zoo name says already."""
    import pvt_deploy.models

    def not_reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before its task's options were checked")

    monkeypatch.setattr(pvt_deploy.models, "create_model", not_reached)
    rc, err = _run(argv, monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and text in lines[0] and "WARNING" not in err, err


def test_cli_export_interrupted_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Typer turns a Ctrl-C inside a command into exit 130 without a word; the last line says it."""
    from pvt_deploy.export import onnx as export_onnx_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(export_onnx_module, "_load", interrupted)
    code, err = _run(["--model", "pvt_v2_b0-cls", "-o", str(tmp_path / "x")], monkeypatch, capsys)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("code_, reason", [("ENOSPC", "No space left on device"), ("EIO", "Input/output error")])
def test_cli_export_that_cannot_write_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], code_: str, reason: str) -> None:
    """A full disk while the graph is saved was a traceback and exit 1; the staging folder goes, the
    message is one line, exit 2. So is a disk failing (EIO), which was still a traceback."""
    import errno

    from pvt_deploy.export import graph

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(getattr(errno, code_), reason, str(tmp_path / "x" / "model.onnx"))

    monkeypatch.setattr(graph, "save_model", full)
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity", "-o", str(tmp_path / "x")],
                     monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: cannot write the export to {tmp_path / 'x'}: {reason}")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging folder left


def test_export_and_infer_say_why_a_folder_is_unwritable_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One probe and one reason (utils.files.unwritable_reason) behind export's output folder, infer's
    outputs and a Triton repository: a file in the path, or the system's refusal of a new file."""
    import errno
    import tempfile

    from pvt_deploy.errors import InputError
    from pvt_deploy.export import export
    from pvt_deploy.tasks.pipeline import check_writable

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for reason in (f"{blocker} is a file, not a folder", "Read-only file system"):
        if reason.startswith("Read-only"):
            def refuse(*args: object, **kwargs: object) -> None:
                raise OSError(errno.EROFS, "Read-only file system")
            monkeypatch.setattr(tempfile, "mkstemp", refuse)
            target = tmp_path / "out" / "x"
        else:
            target = blocker / "out" / "x"
        with pytest.raises(InputError) as infer_refused:
            check_writable(target)
        with pytest.raises(InputError) as export_refused:
            export("pvt_v2_b0-cls", target, imgsz=32, parity=False)
        with pytest.raises(InputError) as triton_refused:
            export("pvt_v2_b0-cls", tmp_path / "ok", format="triton", triton_repo=target, imgsz=32, parity=False)
        assert str(infer_refused.value) == f"cannot write outputs to {target}: {reason}"
        assert str(export_refused.value) == f"cannot write to output folder {target}: {reason}"
        if reason.startswith("Read-only"):  # a file in its path is check_repository's to say
            assert str(triton_refused.value) == (f"cannot write a Triton model repository at {target} ({reason}) "
                                                 "(choose another triton_repo)")  # from Python: not --triton-repo
        else:  # said "choose another --triton-repo" from Python too
            assert str(triton_refused.value).endswith("(move the file, or choose another triton_repo)")


def test_cli_unwritable_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """An -o below a file was found only once the model had loaded (its random-weights warnings first,
    seconds of work for a big model), and said "(File exists)": now before the model, naming the file."""
    from pvt_deploy.export import onnx as export_onnx_module

    def not_reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output folder was checked")

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with monkeypatch.context() as m:
        m.setattr(export_onnx_module, "_load", not_reached)
        rc, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(blocker / "sub" / "x")],
                       monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == f"error: cannot write to output folder {blocker / 'sub' / 'x'}: {blocker} is a file, not a folder"
    assert blocker.read_text() == "not a folder"
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


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_unreadable_calibration_images_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    mixed = _jpgs(tmp_path / "mixed", good=2, bad=1)
    out = tmp_path / "q"
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out), "--int8", "--int8-flavour", "trt",
                      "--calib", str(mixed), "--no-simplify"], monkeypatch, capsys)
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith("mixed: skipped 1 unreadable image(s): bad0.jpg"), warnings
    m = json.loads((out / "manifest.json").read_text())
    assert m["precision"]["int8"]["calibration"] == {"source": str(mixed), "images": 2, "method": "minmax"}
    assert m["export"]["parity_images"] == str(mixed) and m["parity"]["model.int8.trt.onnx"]["passed"]


def test_cli_calibration_and_parity_images_as_a_file_or_a_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--calib and --images take what check --images takes (open_source): a folder, one image, or a glob,
    recursive with ** (--calib 'shots/**/*.jpg' found only the images one folder down)."""
    shots = _jpgs(tmp_path / "shots", good=3, bad=0)
    (shots / "notes.md").write_text("not an image")
    _jpgs(shots / "sub", good=1, bad=0)
    out = tmp_path / "q"
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out), "--int8", "--int8-flavour", "trt",
                      "--calib", str(shots / "**" / "good*.jpg"), "--images", str(shots / "good1.jpg"), "--no-simplify"],
                     monkeypatch, capsys)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["precision"]["int8"]["calibration"]["images"] == 4 and m["export"]["parity_images"] == str(shots / "good1.jpg")
    for arg, message in ((shots / "none*.jpg", "no images found in glob"),
                         (shots / "notes.md", "is neither a readable image nor a video")):
        code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(tmp_path / "r"), "--images", str(arg)],
                         monkeypatch, capsys)
        assert code == 2 and message in err and "Traceback" not in err, err


def test_cli_failed_reexport_keeps_the_previous_export(cls_artifact: Artifact, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The audit's case: a full export, re-exported with a calibration folder of corrupt images."""
    import shutil

    folder = tmp_path / "cab2"
    shutil.copytree(cls_artifact.folder, folder)
    (folder / "model.engine").write_bytes(b"an engine built on a GPU")
    before = _snapshot(folder)
    allbad = _jpgs(tmp_path / "allbad", good=0, bad=2)
    code, err = _run(["--model", "pvt_v2_b0-cls", "--int8", "--calib", str(allbad), "-o", str(folder)],
                     monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "none of its 2 image(s) can be read (bad0.jpg, bad1.jpg)" in lines[0]
    assert "RANDOMLY" not in caplog.text and "traced" not in caplog.text  # refused before the model was built
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["allbad", "cab2"]


def test_cli_reusing_an_export_folder_refuses_what_it_cannot_honour(cls_artifact: Artifact, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    folder = tmp_path / "src"
    shutil.copytree(cls_artifact.folder, folder)
    before = _snapshot(folder)
    other = tmp_path / "other.pth"
    other.write_bytes(b"weights")
    for extra, text in ((["-o", str(tmp_path / "elsewhere")], "-o "), (["--weights", str(other)], "--weights")):
        code, err = _run(["--model", str(folder), "--half", "--opset", "18", *extra], monkeypatch, capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {text}"), err
        assert _snapshot(folder) == before and not (tmp_path / "elsewhere").exists()
    # options that only shape a new graph are listed as ignored, --opset included
    code, err = _run(["--model", str(folder), "-o", str(folder), "--half", "--opset", "18", "--exporter", "dynamo",
                      "--no-parity"], monkeypatch, capsys)
    assert code == 0, err
    assert "ignoring --opset, --exporter (export from the model name" in caplog.text
    assert "model.fp16.onnx" in json.loads((folder / "manifest.json").read_text())["files"]
    # nothing to add: a bare `export --model exports/NAME` (meant as a re-export) did nothing, in silence
    before = _snapshot(folder)
    caplog.clear()
    code, err = _run(["--model", str(folder), "--imgsz", "96"], monkeypatch, capsys)
    said = " ".join(caplog.text.split())
    assert code == 0 and _snapshot(folder) == before, err
    assert f"{folder} is an export folder, extended in place: nothing to add without --half or --int8" in said, said
    # with the --imgsz asked for, which the folder's graph was not made at
    assert f"give the model name: pvt-deploy export --model pvt_tiny-cls --imgsz 96 --half -o {folder}" in said, said
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pvt_deploy.export"):
        code, err = _run(["--model", str(folder), "--half"], monkeypatch, capsys)
    assert code == 0 and _snapshot(folder) == before, err
    assert "model.fp16.onnx already there (parity passed or not run): nothing to add" in caplog.text, caplog.text


def test_the_hint_of_an_extended_export_is_a_command_that_runs(cls_artifact: Artifact, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """`export --model exports/NAME` ignores the graph options given, naming the command that exports the folder
    again with them. For a classifier given --task features that was `--model pvt_tiny-cls --task features`,
    which export refuses (a -cls name takes no other task), and a segmenter's --seg-output argmax stayed in a
    command for another task. The command now gives the backbone with --task and leaves out the options of the
    task it leaves; where no export gives what was asked (--seg-output argmax of a classifier), it says so."""
    import shlex
    import shutil

    import typer

    from pvt_deploy.cli import app
    from pvt_deploy.export.onnx import _check_task_options
    from pvt_deploy.manifest import read_manifest, reexport_command
    from pvt_deploy.models import resolve_name

    export = typer.main.get_command(app).commands["export"]  # type: ignore[attr-defined]

    def runs_as(command: str) -> str:  # parsed by the CLI, then the checks export makes of a zoo name's task
        params = export.make_context("export", shlex.split(command)[2:]).params
        entry = resolve_name(params["model"], params["task"])
        _check_task_options(entry.name, entry.task, params["nms"], params["seg_output"])
        return f"{entry.name} {params['nms']} {params['seg_output']}"

    folder = tmp_path / "cls"
    shutil.copytree(cls_artifact.folder, folder)
    before = _snapshot(folder)

    def ignoring(args: list[str]) -> str:
        caplog.clear()
        code, err = _run(["--model", str(folder), *args], monkeypatch, capsys)
        assert code == 0 and _snapshot(folder) == before, err
        return next(r.getMessage() for r in caplog.records if "ignoring" in r.getMessage())

    for args, rebuilt in ((["--task", "features"], "pvt_tiny-features host logits"),
                          (["--task", "segment", "--seg-output", "argmax"], "pvt_tiny-seg host argmax")):
        said = ignoring(args)
        assert runs_as(said.split("change them: ", 1)[1].removesuffix(")")) == rebuilt, said
    said = ignoring(["--seg-output", "argmax"])
    assert said.endswith("ignoring --seg-output (--seg-output argmax is for segmentation models, not a classify "
                         "model: no export of pvt_tiny-cls gives that)"), said
    # a word that names no task is refused before the folder is touched, as for a fresh export (ea93147)
    code, err = _run(["--model", str(folder), "--task", "detection"], monkeypatch, capsys)
    assert code == 2 and _snapshot(folder) == before
    assert err.strip().splitlines()[-1] == "error: --task 'detection': choose one of detect, segment, classify, features"
    seg = {**read_manifest(folder), "model": "pvt_tiny-seg", "task": "segment", "postprocess": {"seg_output": "argmax"}}
    assert runs_as(reexport_command(folder, seg, {"--task": "classify"})) == "pvt_tiny-cls host logits"


def test_cli_info_says_which_int8_flavour_each_file_is(det_artifact: Artifact, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`info` showed "int8" for both INT8 files: model.int8.onnx (the CPU's asymmetric uint8 Q/DQ) and
    model.int8.trt.onnx (TensorRT's symmetric int8), two different graphs. The precision says which, as the
    manifest does, in the files table, the backends table and --json."""
    from cli_run import run

    code, out, err = run(monkeypatch, capsys, "info", str(det_artifact.folder))
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines()
            if line.startswith("│") and ".onnx" in line}
    assert rows["model.int8.onnx"] == "int8 (cpu)" and rows["model.int8.trt.onnx"] == "int8 (trt)", out
    assert rows["model.onnx"] == "fp32" and rows["model.fp16.onnx"] == "fp16", out
    backends = [line for line in out.splitlines() if "onnx-int8" in line]
    assert len(backends) == 1 and "int8 (cpu)" in backends[0], out
    code, out, err = run(monkeypatch, capsys, "info", str(det_artifact.folder), "--json")
    assert code == 0, err
    files = {f["name"]: f for f in json.loads(out)["files"]}
    assert {name: (f["precision"], f.get("flavour")) for name, f in files.items()} == {
        "model.onnx": ("fp32", None), "model.fp16.onnx": ("fp16", None),
        "model.int8.onnx": ("int8", "cpu"), "model.int8.trt.onnx": ("int8", "trt")}, files


def test_a_renamed_graph_without_its_manifest_runs_as_the_precision_it_holds(
        det_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """`cp model.fp16.onnx half.onnx; pvt-deploy bench --model half.onnx` timed "onnx fp32": a lone file's
    precision was guessed from its name. It is read from the graph (float16 weights, quantization nodes)
    where the loader already has it parsed for its metadata, so a name says nothing either way."""
    from cli_run import run

    from pvt_deploy.runtimes.loader import describe_artifact, load_backend

    copies = {"half.onnx": ("model.fp16.onnx", "fp16"), "q.onnx": ("model.int8.onnx", "int8"),
              "t.onnx": ("model.int8.trt.onnx", "int8"), "mine.fp16.onnx": ("model.onnx", "fp32")}
    for name, (source, precision) in copies.items():
        shutil.copyfile(det_artifact.folder / source, tmp_path / name)
        backend, manifest = load_backend(tmp_path / name, device="cpu")
        with backend:
            assert backend.info.precision == precision, (name, backend.info.precision)
        assert describe_artifact(tmp_path / name)["files"][0]["precision"] == precision, name
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(tmp_path / "half.onnx"), "--iters", "1",
                         "--warmup", "0")
    assert code == 0, err
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("onnx")] == [["onnx-fp16", "fp16"]], out
    assert "half.onnx: an FP16 graph on the CPU runs through casts" in caplog.text  # FP16's warning comes too


def test_cli_info_and_infer_on_a_lone_onnx_of_random_weights(cls_artifact: Artifact, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from pvt_deploy.assets import sample_images

    lone = tmp_path / "lone.onnx"
    shutil.copy(cls_artifact.folder / "model.onnx", lone)
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "info", str(lone)])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    assert not e.value.code and "weights: RANDOM" in out.out + out.err
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "infer", str(sample_images()[0]), "--model", str(lone),
                                      "-o", str(tmp_path / "runs")])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    assert not e.value.code, out.err
    assert "RANDOM WEIGHTS" in out.out + out.err
    # the lone graph ran: the photo was written back with its top-k panel drawn on it
    import cv2
    import numpy as np

    (saved,) = (tmp_path / "runs").iterdir()
    assert saved.name == sample_images()[0].name
    photo, drawn = cv2.imread(str(sample_images()[0])), cv2.imread(str(saved))
    diff = np.abs(drawn.astype(int) - photo).mean(axis=2)
    assert drawn.shape == photo.shape and diff[:20, :40].mean() > 20  # the panel, not JPEG's re-encoding
    assert diff[-100:, -100:].mean() < 3  # the rest of the photo as it was


@pytest.mark.parametrize("build_fails", [True, False])
def test_cli_trt_engine_is_built_before_the_export_replaces_the_old_one(
        build_fails: bool, cls_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--format trt builds model.engine inside the new export: a failed build keeps the previous export."""
    import shutil

    import pvt_deploy.export.tensorrt as trt_export
    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.manifest import file_entry, read_manifest, write_manifest

    def fake_build(folder: Path, *, precision: str, **kwargs: object) -> Path:
        assert folder.name.startswith(".cab2.pvt-new-") and (folder / "manifest.json").is_file()
        if build_fails:
            raise PvtDeployError("TensorRT could not build model.onnx (out of memory)")
        (folder / "model.engine").write_bytes(b"plan")
        manifest = read_manifest(folder)
        manifest["files"]["model.engine"] = file_entry(folder / "model.engine", precision, source="model.onnx")
        write_manifest(folder, manifest)
        return folder / "model.engine"

    monkeypatch.setattr(trt_export, "require_tensorrt", lambda: None)
    monkeypatch.setattr(trt_export, "build_engine", fake_build)
    folder = tmp_path / "cab2"
    shutil.copytree(cls_artifact.folder, folder)
    before = _snapshot(folder)
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "--no-simplify", "--no-parity", "--format", "trt",
                      "-o", str(folder)], monkeypatch, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cab2"]
    if build_fails:
        assert code == 1 and "out of memory" in err
        assert _snapshot(folder) == before
    else:
        assert code == 0, err
        m = read_manifest(folder)
        assert m["model"] == "pvt_v2_b0-cls" and set(m["files"]) == {"model.onnx", "model.engine"}
        assert (folder / "model.engine").read_bytes() == b"plan"


def test_summary_table_shows_every_digit_in_80_columns(cls_artifact: Artifact, det_artifact: Artifact,
                                                       tmp_path: Path) -> None:
    """Logs and CI consoles are 80 columns wide: no figure of the summary may be cut to '…', nor folded onto
    a second line (export --model pvt_small --half --int8: 'model.int8.trt.onnx', 'int8/cpu', '137.0' MB and
    'no dets' made the table 81 wide, its cosine printed as '0.99990' with the last '8' alone on the next line)."""
    import io
    import re

    from rich.console import Console

    from pvt_deploy.cli.export import summary_table

    big = tmp_path / "big"  # the detector's manifest as pvt_small's: files over 100 MB, no detection clear
    big.mkdir()
    manifest = json.loads((det_artifact.folder / "manifest.json").read_text())
    for entry in manifest["files"].values():
        entry["bytes"] = 137_000_000
    for report in manifest["parity"].values():
        report["task"].update(required_ref=0, required_test=0)  # agreement 'none clear', its widest
    (big / "manifest.json").write_text(json.dumps(manifest))
    for folder, files in ((cls_artifact.folder, 1), (big, 4)):
        console = Console(width=80, record=True, file=io.StringIO())
        console.print(summary_table(folder))
        lines = console.export_text().splitlines()
        assert "…" not in "".join(lines) and max(len(line.rstrip()) for line in lines) <= 80
        rows = [line for line in lines if line.startswith("model.")]
        assert len(rows) == files, lines
        assert not [line for line in lines if line.startswith(" ") and line.strip()], lines  # nothing folded under
        for row in rows:
            assert re.search(r"\b(fp32|fp16|int8/cpu|int8/trt)\b.*\d\.\d{6}\s+\d\.\de[-+]\d\d\s", row), row


def test_cli_triton_repository_beside_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``--format triton`` writes exports/triton/<model>: a config that tritonclient parses, the export's
    graph (same bytes), and the instance kind asked for."""
    from shlex import quote

    from test_triton_export import model_config_pb2, parse_config

    out = tmp_path / "my exports" / "b0"
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "--no-simplify", "--no-parity", "--format", "triton",
                    "--instance-kind", "cpu", "-o", str(out)], monkeypatch, capsys)
    assert rc == 0, err
    model_dir = tmp_path / "my exports" / "triton" / "pvt_v2_b0-cls"
    cfg = parse_config(model_dir / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_CPU
    assert (model_dir / "1" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    # where the Triton model went and how to run it were an INFO line among the trace's; the end says them
    lines = err.strip().splitlines()
    assert lines[-1].startswith("next: ") and lines[-2] == (
        f"triton: {quote(str(model_dir))}: serve it (tritonserver --model-repository {quote(str(model_dir.parent))}) "
        f"and run --model triton://HOST:8000/pvt_v2_b0-cls; its graph runs here as --model "
        f"{quote(str(model_dir / '1' / 'model.onnx'))}"), err  # a path with a space is one shell word


def test_two_exports_of_one_model_are_served_side_by_side_under_their_own_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A Triton model is named after the exported model, not its export folder, and the CLI had no way to
    name it otherwise: a second export of pvt_v2_b0-cls (another -o, --half, other weights) into the
    repository replaced the first, and one tritonserver cannot serve two models of one name (two
    repositories holding it make it unavailable). --triton-name names it; a name Triton cannot serve is
    refused before the export, in one line."""
    from test_triton_export import parse_config

    first = tmp_path / "exports" / "a"
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "--no-simplify", "--no-parity", "--format", "triton",
                    "-o", str(first)], monkeypatch, capsys)
    assert rc == 0, err
    repo = tmp_path / "exports" / "triton"
    config = (repo / "pvt_v2_b0-cls" / "config.pbtxt").read_bytes()

    rc, err = _run(["--model", str(first), "--no-parity", "--format", "triton", "--triton-name", "b0-second"],
                   monkeypatch, capsys)
    assert rc == 0, err
    assert (repo / "pvt_v2_b0-cls" / "config.pbtxt").read_bytes() == config  # the first model is as it was
    assert parse_config(repo / "b0-second" / "config.pbtxt").name == "b0-second"
    assert (repo / "b0-second" / "1" / "model.onnx").read_bytes() == (first / "model.onnx").read_bytes()
    assert "run --model triton://HOST:8000/b0-second;" in err.strip().splitlines()[-2], err

    rc, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "--format", "triton", "--triton-name", ".hidden",
                    "-o", str(tmp_path / "exports" / "c")], monkeypatch, capsys)
    assert rc == 2 and err.strip() == "error: Triton model name '.hidden' must be letters, digits, '_', '.', '-'", err
    assert not (tmp_path / "exports" / "c").exists()  # refused before the export


def test_a_detector_from_a_backbone_checkpoint_says_its_head_is_random(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A classifier's checkpoint into a detector loads the backbone only: the summary at the end of the
    export says how many tensors stayed random, as it says RANDOM for a model without weights (the one
    warning about it had scrolled away above the trace and parity lines)."""
    import torch

    from pvt_deploy.models import create_model

    torch.save(create_model("pvt_v2_b0-cls", seed=0).state_dict(), tmp_path / "b0cls.pth")
    out = tmp_path / "det"
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "export", "--model", "pvt_v2_b0", "--weights",
                                      str(tmp_path / "b0cls.pth"), "--imgsz", "64", "--no-parity", "--no-simplify", "-o",
                                      str(out)])  # (the weights line is the point: no onnxslim pass)
    with pytest.raises(SystemExit) as e:
        main()
    assert not e.value.code
    captured = capsys.readouterr()
    text = " ".join(captured.err.split())  # the summary goes to stderr (stdout: the folder); undo Rich's folding
    random = json.loads((out / "manifest.json").read_text())["weights"]["randomly_initialised_tensors"]
    assert random == 36 and f"weights: {random} tensors RANDOMLY INITIALISED" in text
    assert "weights: RANDOM (no --weights given)" not in text


def test_tensorrt_and_triton_options_without_their_format_are_warned_about(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--workspace 4`` or ``--max-batch 4`` on a plain ONNX export did nothing, silently: the user who
    forgot ``--format trt`` learned it at the end, with no engine. The export warns before its work."""
    from pvt_deploy.cli.export import _unused_options

    trt = {"--workspace": True, "--min-shape": True, "--timing-cache": False}
    triton = {"--max-batch": True, "--instances": False}
    assert _unused_options("onnx", "onnx", trt=trt, triton=triton) == [
        "--max-batch: Triton option, unused without --format triton",
        "--workspace, --min-shape: TensorRT options, unused without --format trt (or --format triton "
        "--triton-backend trt)"]
    assert _unused_options("trt", "onnx", trt=trt, triton={}) == []
    assert _unused_options("triton", "trt", trt=trt, triton=triton) == []  # a plan for Triton: an engine is built
    assert _unused_options("triton", "onnx", trt=trt, triton=triton)[0].startswith("--workspace, --min-shape")
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                                      "--no-parity", "--workspace", "4", "-o", str(tmp_path / "cls")])
    with pytest.raises(SystemExit) as e:
        main()
    assert not e.value.code
    err = capsys.readouterr().err
    assert err.splitlines()[0] == ("warning: --workspace: TensorRT option, unused without --format trt (or --format "
                                   "triton --triton-backend trt)")


@pytest.mark.parametrize("flag, value, line", [
    ("--instances", "0", "error: Triton instances (--instances) 0: must be >= 1"),
    ("--max-batch", "-1", "error: Triton max_batch (--max-batch) -1: must be >= 0; 0 turns Triton's batching off"),
])
def test_triton_settings_out_of_range_fail_before_the_export(flag: str, value: str, line: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """They were checked only when the Triton model was written, after tracing and the parity gate."""
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--format", "triton", flag, value, "-o", str(tmp_path / "x")],
                   monkeypatch, capsys)
    assert rc == 2 and err.strip().splitlines()[-1] == line
    assert not (tmp_path / "x").exists() and "traced" not in err


@pytest.mark.parametrize("name", ["engine", "TensorRT", "TRT"])
def test_cli_format_takes_ultralytics_and_trtexec_names_for_trt(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``yolo export format=engine`` habits: ``--format engine`` was "choose one of onnx, trt, triton"
    (exit 2); it is ``--format trt``, as ``infer --backend engine`` already was."""
    import pvt_deploy.export.tensorrt as trt_export
    from pvt_deploy.errors import BackendUnavailableError

    asked = []

    def no_tensorrt() -> None:
        asked.append(True)
        raise BackendUnavailableError("TensorRT is not installed (stub)")

    monkeypatch.setattr(trt_export, "require_tensorrt", no_tensorrt)
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--format", name, "-o", str(tmp_path / "x")], monkeypatch, capsys)
    assert rc == 3 and asked and "TensorRT is not installed (stub)" in err, err
    from pvt_deploy.export import export

    # the Python API takes them too: it was "choose one of onnx, trt, triton"
    with pytest.raises(BackendUnavailableError, match="stub"):
        export("pvt_v2_b0-cls", tmp_path / "y", format=name)
    rc, err = _run(["--model", "pvt_v2_b0-cls", "--format", "torch", "-o", str(tmp_path / "x")], monkeypatch, capsys)
    assert rc == 2 and "--format 'torch': choose one of onnx, trt, triton" in err, err


def test_cli_export_ends_with_the_commands_that_run_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """``yolo export`` ends with the predict command for the file it wrote; pvt-deploy's export ended with
    figures only. Its last line on stderr now gives infer/check/bench on the folder, and they run."""
    import shlex

    from pvt_deploy.assets import sample_images

    folder = tmp_path / "my cls"
    caplog.set_level(logging.INFO, logger="pvt_deploy")
    # --images with --no-parity was opened for nothing (a clip decoded; a missing one refused, exit 2), unsaid
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity", "--no-simplify", "-o", str(folder),
                      "--images", str(tmp_path / "gone.mp4")], monkeypatch, capsys)
    assert code == 0, err
    assert "--images is not used: it names the pictures parity runs on, and parity is off" in caplog.text, caplog.text
    # --no-simplify: the graph line said "1112 -> 1112 nodes after simplification", of a step that never ran
    said = " ".join(err.split())
    assert "after simplification" not in said and "nodes (not simplified)" in said, err
    # the figures say the node counts in the words of the export's log ("1112 nodes (not simplified)"), not
    # their own ("1112 nodes (not simplified: --no-simplify)"; "1112 -> 507 nodes after simplification")
    logged = [r.getMessage().rsplit("; ", 1)[1] for r in caplog.records if " traced with " in r.getMessage()]
    assert len(logged) == 1 and f"opset 17, {logged[0]}; batch" in said, (logged, err)
    line = err.strip().splitlines()[-1]
    assert line.startswith("next: "), err
    commands = [shlex.split(c) for c in line.removeprefix("next: ").split(" · ")]
    assert [c[:2] for c in commands] == [["pvt-deploy", "infer"], ["pvt-deploy", "check"], ["pvt-deploy", "bench"]]
    infer = [str(sample_images()[0]) if word == "SOURCE" else word for word in commands[0][1:]]
    monkeypatch.chdir(tmp_path)
    got, _, err = run(monkeypatch, capsys, *infer, "--no-save")
    assert got == 0 and "1 image" in err and "on onnxruntime" in " ".join(err.split()), err


@pytest.mark.skipif(sys.platform == "win32" or shutil.which("bash") is None,
                    reason="a file name of bytes is POSIX's; bash reads the hint back")
def test_cli_export_into_a_folder_whose_name_is_not_utf8(tmp_path: Path) -> None:
    """An export into ``caf\\xe9/`` (a Latin-1 name: an old camera's card, a zip made on Windows) ended with
    ``next: pvt-deploy infer SOURCE --model '.../caf\\udce9'``, a folder that does not exist; where stdout is
    strict UTF-8 (an en_US.UTF-8 desktop, ``PYTHONIOENCODING=utf-8``) it ended, once the export was written,
    with a UnicodeEncodeError traceback and exit 1. The hint now quotes the byte as bash reads it back
    (``caf$'\\xe9'``), and stdout is the folder's bytes. A child process: its real stdout and stderr are
    the point (pytest's capture encodes otherwise), which costs an import of torch."""
    import os

    from pvt_deploy.utils import shell_quote

    folder = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9 1")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable, "-m", "pvt_deploy", "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                           "--no-parity", "--no-simplify", "-o", folder], capture_output=True, env=env, timeout=600,
                          cwd=tmp_path, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert proc.stdout == os.fsencode(folder) + b"\n"
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("next: ") and "udc" not in line, line
    words = [c.split(" --model ", 1)[1] for c in line.removeprefix("next: ").split(" · ")]
    assert words == [shell_quote(folder)] * 3 and words[0].endswith("/caf$'\\xe9'' 1'"), words
    odd = os.fsdecode(b"it's \xff\xfe/x")
    for word, meant in ((words[0], folder), (shell_quote(odd), odd)):
        said = subprocess.run(["bash", "-c", "printf %s " + word], capture_output=True, check=True).stdout
        assert said == os.fsencode(meant), word


def test_cli_profile_shapes_in_trtexec_and_polygraphy_spelling(
        cls_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--min-shape images:1x3x32x32`` (trtexec's ``--minShapes=images:...``) and ``images:[1,3,64,64]``
    (Polygraphy's) were "expected NxCxHxW"; the engine's profile gets those shapes. Another input name
    is refused, naming the graph's."""
    import shutil

    import pvt_deploy.export.tensorrt as trt_export
    from pvt_deploy.errors import PvtDeployError

    profiles = []

    def fake_build(folder: Path, *, shapes: dict[str, list[int]] | None = None, **kwargs: object) -> Path:
        profiles.append(shapes)
        raise PvtDeployError("stop after the profile (fake TensorRT)")

    monkeypatch.setattr(trt_export, "require_tensorrt", lambda: None)
    monkeypatch.setattr(trt_export, "build_engine", fake_build)
    folder = tmp_path / "cls"
    shutil.copytree(cls_artifact.folder, folder)
    code, err = _run(["--model", str(folder), "--format", "trt", "--min-shape", "images:1x3x32x32",
                      "--opt-shape", "images:[1,3,64,64]", "--max-shape", "2x3x64x64"], monkeypatch, capsys)
    assert code == 1 and "stop after the profile" in err, err
    assert profiles == [{"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [2, 3, 64, 64]}]
    code, err = _run(["--model", str(folder), "--format", "trt", "--min-shape", "input:1x3x32x32"], monkeypatch, capsys)
    assert code == 2 and "--min-shape 'input:1x3x32x32': the graph's input is named images" in err, err


def test_dataset_yaml_splits_resolve_as_ultralytics_resolves_them(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """--calib / --images data.yaml (Ultralytics' data=): the val split's images, else train's; a split is a
    folder (recursive), a .txt list or a list of those, relative to `path` (from the current folder, else
    from the YAML's folder) or, without `path`, to the YAML's folder; Roboflow's `../train/images`."""
    from pvt_deploy.export.calibration import usable_images

    def names(data: Path, limit: int | None = None) -> list[str]:
        return [str(p.relative_to(tmp_path)) for p in usable_images(data, limit, what="calibration")]

    ds = tmp_path / "ds"
    data = _dataset(ds)
    _jpgs(ds / "images" / "val" / "night", good=1, bad=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `path: .` is not the current folder here: the YAML's folder is used
    val = ["ds/images/val/good0.jpg", "ds/images/val/good1.jpg", "ds/images/val/night/good0.jpg"]
    assert names(data) == val and names(data, 2) == val[:2]
    data.write_text("train: images/train\nnames: [person]\n")  # no val, no path
    assert names(data) == [f"ds/images/train/good{i}.jpg" for i in range(3)]
    monkeypatch.chdir(tmp_path)  # a relative path is looked for from the current folder first
    (tmp_path / "other.yaml").write_text("path: ds\nvalidation: images/val/night\n")
    assert names(tmp_path / "other.yaml") == ["ds/images/val/night/good0.jpg"]
    (ds / "val.txt").write_text("./images/train/good2.jpg\nimages/val/good1.jpg\n")
    data.write_text("val: [val.txt, ../images/val/night]\ntrain: images/train\n")  # ../ as Roboflow writes it
    assert names(data) == ["ds/images/train/good2.jpg", "ds/images/val/good1.jpg", "ds/images/val/night/good0.jpg"]


def test_a_split_list_is_read_as_infer_reads_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A split's .txt list was checked apart from infer's lists: a line that is not an image (a video, a
    label file) was dropped unsaid, and a URL was "no such file: https:/host/a.jpg". The lines that are not
    images are still left out, as Ultralytics leaves them out, but a warning names them; the rest is read as
    infer reads a list (a URL is refused by name, a missing file is "no such file")."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.export.calibration import usable_images

    ds = tmp_path / "ds"
    data = _dataset(ds, yaml="val: val.txt\n")
    monkeypatch.chdir(tmp_path)
    (ds / "val.txt").write_text("images/val/good0.jpg\nclip.mp4\nlabels/val/good0.txt\nimages/val/good1.jpg\n")
    with caplog.at_level("WARNING", logger="pvt_deploy.export"):
        assert [p.name for p in usable_images(data, what="calibration")] == ["good0.jpg", "good1.jpg"]
    assert f"{data}: val: val.txt: left out 2 line(s) that are not image files (clip.mp4, " in caplog.text
    (ds / "val.txt").write_text("images/val/good0.jpg\nhttps://example.com/a.jpg\n")
    with pytest.raises(InputError, match=r"val.txt: https://example.com/a.jpg is a URL or a camera: a list takes"):
        usable_images(data, what="calibration")


def test_unreadable_pictures_are_said_of_what_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The warning for unreadable calibration / parity pictures, and the error when none reads, said
    "calibration folder X" of whatever X was: a glob, a .txt list, a dataset YAML. They name what was given."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.export.calibration import usable_images

    monkeypatch.chdir(tmp_path)
    _jpgs(tmp_path / "mixed", good=2, bad=1)
    _jpgs(tmp_path / "allbad", good=0, bad=2)
    (tmp_path / "mixed.txt").write_text("mixed/good0.jpg\nmixed/bad0.jpg\n")
    (tmp_path / "allbad.txt").write_text("allbad/bad0.jpg\nallbad/bad1.jpg\n")
    _dataset(tmp_path / "ds", yaml="val: ../mixed\n")
    _dataset(tmp_path / "dsbad", yaml="val: ../allbad\n")
    cases = [("mixed", "allbad", "folder"), ("mixed/*.jpg", "allbad/*.jpg", "glob"),
             ("mixed.txt", "allbad.txt", "list"), ("ds/data.yaml", "dsbad/data.yaml", "dataset YAML")]
    for mixed, allbad, word in cases:
        caplog.clear()
        with caplog.at_level("WARNING", logger="pvt_deploy.export"):
            assert [p.name for p in usable_images(mixed, what="calibration")][0] == "good0.jpg"
        assert f"calibration {word} {mixed}: skipped 1 unreadable image(s): bad0.jpg" in caplog.text, caplog.text
        with pytest.raises(InputError) as e:
            usable_images(allbad, what="parity")
        assert e.value.args[0] == f"parity {word} {allbad}: none of its 2 image(s) can be read (bad0.jpg, bad1.jpg)"


@pytest.mark.parametrize("yamls", [["data.yaml"], ["data.yaml", "more.yaml"]])
def test_a_glob_of_yaml_files_is_refused_naming_them(yamls: list[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`--calib 'ds/*.yaml'` was taken for one YAML file and said "no such file: ds/*.yaml". A glob is a set
    of images, so a glob that matches YAML files is refused in one line that names them (one match too: what
    runs must not change when a second YAML appears), before any work."""
    ds = tmp_path / "ds"
    data = _dataset(ds)
    for name in yamls[1:]:
        (ds / name).write_text(data.read_text())
    pattern = str(ds / "*.yaml")
    for option in ("--calib", "--images"):
        code, err = _run(["--model", "pvt_v2_b0-cls", "--int8", option, pattern, "-o", str(tmp_path / "q")],
                         monkeypatch, capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        what = "calibration" if option == "--calib" else "parity"
        which = "a YAML file" if len(yamls) == 1 else f"{len(yamls)} YAML files"
        named = ", ".join(str(ds / n) for n in yamls)
        assert lines[0] == (f"error: {what} images: {pattern} matches {which} ({named}): a glob is read as images; "
                            "name one dataset YAML on its own"), err
    assert not (tmp_path / "q").exists()


def _ramp_clip(path: Path, frames: int, *, fmt: str | None = None) -> Path:
    """A 64x64 clip whose frame n is grey level 6n, so a decoded frame tells which one it is."""
    import av
    import numpy as np

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for n in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 6 * n, np.uint8), format="rgb24")
            out.mux(stream.encode(picture))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("name, fmt", [("clip.mp4", None), ("clip.mkv", None), ("clip.h264", "h264")])
def test_a_videos_calibration_frames_are_spread_over_the_whole_clip(name: str, fmt: str | None,
                                                                    tmp_path: Path) -> None:
    """`export --calib clip.mp4` was refused ("... is wanted, not a video"); it takes --calib-size frames
    spread over the clip, not its first ones: with the frame count an mp4 stores, with the length and rate
    an mkv stores, and (a raw .h264 stores neither) thinned while the whole clip is decoded. Each frame is
    the one its name says (its pixels are that frame's grey level)."""
    from pvt_deploy.export.calibration import usable_images

    clip = _ramp_clip(tmp_path / name, 40, fmt=fmt)
    frames = usable_images(clip, 4, what="calibration")
    numbers = [getattr(f, "index", None) for f in frames]
    if fmt is None:
        assert numbers == [0, 10, 20, 30], numbers
        # evenly spaced when the count does not divide the clip: every 14th, not 3 of every 13th (0, 26, 39)
        assert [getattr(f, "index", None) for f in usable_images(clip, 3, what="calibration")] == [0, 14, 28]
    else:
        assert len(numbers) == 4 and numbers == sorted(set(numbers)) and numbers[0] == 0 and numbers[-1] >= 30, numbers
    assert [f.name for f in frames] == [f"{name}#frame={n}" for n in numbers]
    for f, n in zip(frames, numbers, strict=True):
        assert abs(float(getattr(f, "image").mean()) - 6 * n) < 4, f.name  # noqa: B009


def _gop_clip(path: Path, *, frames: int = 200, gop: int = 25, fmt: str | None = None) -> Path:
    """A 320x240 H.264 clip with B-frames and a keyframe every ``gop`` frames, whose frame n is grey level
    37n mod 256 (neighbours 37 levels apart) with a square moving over it: each frame tells its number."""
    import av
    import numpy as np

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=25, options={
            "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2", "crf": "18", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for n in range(frames):
            image = np.full((240, 320, 3), 37 * n % 256, np.uint8)
            image[100:140, 3 * n % 280:3 * n % 280 + 40] = 255 - 37 * n % 256
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("name, fmt, gop", [("gop.mp4", None, 25), ("gop.mkv", None, 25), ("gop.h264", "h264", 25),
                                           ("onegop.mkv", None, 250)])
def test_a_videos_calibration_frames_are_found_by_seeking_to_them(name: str, fmt: str | None, gop: int, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """`export --calib clip.mp4` decoded the whole clip to pick its frames (80 s of a 20-minute 720p recording
    before the export began). Where the file can seek (mp4, mkv) each frame is now found from the keyframe
    before it: the same frames, bit for bit, that reading the clip whole gives them, and their numbers, for
    far fewer frames decoded. A raw .h264 (no index, numbered by its decode order) is still read whole, and
    so is a clip whose keyframes lie so far apart that seeking would decode as many frames."""
    import numpy as np

    from pvt_deploy.export.calibration import usable_images
    from pvt_deploy.io import sources

    clip = _gop_clip(tmp_path / name, fmt=fmt, gop=gop)
    with sources.open_source(clip) as whole:
        reference = {f.index: f.image for f in whole}
    assert len(reference) == 200
    grabs = 0
    grab = sources.PyAVReader.grab

    def counted(self: sources.PyAVReader) -> bool:
        nonlocal grabs
        grabs += 1
        return grab(self)

    monkeypatch.setattr(sources.PyAVReader, "grab", counted)
    with caplog.at_level(logging.DEBUG, logger="pvt_deploy"):
        frames = usable_images(clip, 5, what="calibration")
    numbers = [getattr(f, "index", None) for f in frames]
    sought = fmt is None and gop < 200
    if fmt is None:
        assert numbers == [0, 40, 80, 120, 160], numbers  # 4 of them mid-GOP, after B-frames
    for f in frames:
        n = getattr(f, "index")  # noqa: B009
        assert np.array_equal(getattr(f, "image"), reference[n]), f.name  # noqa: B009
        assert abs(float(np.median(reference[n])) - 37 * n % 256) <= 3, f.name
    assert (f"{clip}: 5 frame(s) found by seeking: 0, 40, 80, 120, 160" in caplog.text) == sought, caplog.text
    assert ("decoding the whole clip" in caplog.text) != sought, caplog.text
    assert ("seeking would decode about" in caplog.text) == (gop > 200), caplog.text
    assert grabs < 100 if sought else grabs >= 200, grabs  # up to a GOP a frame and the last GOP, not 200


def test_cli_export_calibrates_and_compares_on_a_videos_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--calib and --images take a video file: the INT8 graph is calibrated on --calib-size frames spread over
    the clip and parity runs on 4 frames spread over the other; the manifest names the frames used."""
    calib = _ramp_clip(tmp_path / "calib.mp4", 40)
    parity = _ramp_clip(tmp_path / "parity.mkv", 20)
    out = tmp_path / "q"
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out), "--int8", "--int8-flavour", "trt",
                      "--calib", str(calib), "--calib-size", "4", "--images", str(parity), "--no-simplify"],
                     monkeypatch, capsys)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["precision"]["int8"]["calibration"] == {
        "source": str(calib), "images": 4, "method": "minmax",
        "frames": ["calib.mp4#frame=0", "calib.mp4#frame=10", "calib.mp4#frame=20", "calib.mp4#frame=30"]}
    assert m["export"]["parity_images"] == str(parity)
    assert m["export"]["parity_frames"] == [f"parity.mkv#frame={n}" for n in (0, 5, 10, 15)]
    assert m["parity"]["model.int8.trt.onnx"]["passed"] and m["parity"]["model.int8.trt.onnx"]["images"] == 4
    assert m["parity"]["model.int8.trt.onnx"]["image_source"] == str(parity)
    # a variant added later is gated on its own pictures: its report names them (the manifest said only the
    # first export's parity.mkv, for an FP16 file compared on calib.mp4's frames)
    code, err = _run(["--model", str(out), "--half", "--images", str(calib)], monkeypatch, capsys)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    fp16 = m["parity"]["model.fp16.onnx"]
    assert fp16["image_source"] == str(calib) and fp16["images"] == 4, fp16
    assert fp16["frames"] == [f"calib.mp4#frame={n}" for n in (0, 10, 20, 30)], fp16
    assert m["parity"]["model.int8.trt.onnx"]["image_source"] == str(parity)


def test_the_rebuild_command_keeps_the_calibration_and_the_parity_pictures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command that rebuilds an export (a changed file's error, extend's hint) said `--int8` for an
    export calibrated with `--calib 'my clips/calib.mp4' --calib-size 4 --int8-flavour trt` and gated on
    `--images`: following it calibrated on the bundled photos, a different model, and gated it on other
    pictures. It now gives them back, each path as the user gave it (relative here), shell-quoted."""
    import shlex

    import typer

    from pvt_deploy.cli import app
    from pvt_deploy.manifest import read_manifest, reexport_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my clips").mkdir()
    _ramp_clip(tmp_path / "my clips" / "calib.mp4", 12)
    _ramp_clip(tmp_path / "parity.mkv", 8)
    calib, parity = str(Path("my clips") / "calib.mp4"), "parity.mkv"
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", "q", "--int8", "--int8-flavour", "trt",
                      "--calib", calib, "--calib-size", "4", "--images", parity, "--no-simplify"], monkeypatch, capsys)
    assert code == 0, err
    export = typer.main.get_command(app).commands["export"]  # type: ignore[attr-defined]

    def params_of(command: str) -> dict[str, object]:
        return dict(export.make_context("export", shlex.split(command)[2:]).params)

    rebuilt = params_of(reexport_command("q", read_manifest("q")))
    assert {k: rebuilt[k] for k in ("int8", "int8_flavour", "calib", "calib_size", "images")} == {
        "int8": True, "int8_flavour": "trt", "calib": calib, "calib_size": 4, "images": parity}, rebuilt
    # the defaults stay out: calibrated on 8 of --calib's pictures, gated on 4 of them (as that export records)
    manifest = read_manifest("q")
    manifest["precision"]["int8"]["calibration"]["images"] = 8
    manifest["export"]["parity_images"] = calib
    rebuilt = params_of(reexport_command("q", manifest))
    assert (rebuilt["calib"], rebuilt["calib_size"], rebuilt["images"]) == (calib, None, None), rebuilt


def test_export_refuses_a_stream_and_a_clip_that_does_not_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A stream or camera cannot calibrate an export (its frames differ from run to run), and a clip that does
    not decode, or holds no frame, has no frames to give: each is one line naming what was given, exit 2,
    before any work (check --images still takes a stream)."""
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(_ramp_clip(tmp_path / "whole.mp4", 10).read_bytes()[:300])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = [("rtsp://cam.local/live", "is a stream or a camera, whose frames differ from run to run"),
             ("rtmp://cam.local/app/key", "is a stream or a camera"), ("0", "is a stream or a camera"),
             (str(corrupt), "is cut short"), (str(empty), ": 0 bytes")]
    for option, what in (("--calib", "calibration"), ("--images", "parity")):
        for given, said in cases:
            code, err = _run(["--model", "pvt_v2_b0-cls", "--int8", option, given, "-o", str(tmp_path / "q")],
                             monkeypatch, capsys)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
            assert lines[0].startswith(f"error: {what} images: ") and given in lines[0] and said in lines[0], err
    assert not (tmp_path / "q").exists()


def test_cli_export_calibrates_on_a_picture_or_a_video_file_served_over_http(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`export --int8 --calib http://host/chelsea.jpg` (or clip.mp4) was refused as "a stream or a camera, whose
    frames differ from run to run", though infer runs the same URL as a picture, or as a finite video. A
    picture's URL is that picture, read as infer reads it; a video file's is --calib-size frames spread over the
    clip, decoded in one pass, named by the URL without its login (which the manifest never holds)."""
    import numpy as np
    from test_io_sinks import served

    from pvt_deploy.assets import sample_image
    from pvt_deploy.export.calibration import usable_images
    from pvt_deploy.io.sources import open_source, read_image

    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(sample_image("chelsea"), site / "chelsea.jpg")
    _ramp_clip(site / "calib.mp4", 40)
    with served(site, login=("user", "secret")) as base:
        secret = base.replace("http://", "http://user:secret@")
        shown = base.replace("http://", "http://***@")
        [picture] = usable_images(f"{secret}/chelsea.jpg", what="calibration")
        assert picture.name == f"{shown}/chelsea.jpg"
        image = getattr(picture, "image")  # noqa: B009
        with open_source(f"{secret}/chelsea.jpg") as source:  # what infer runs
            assert np.array_equal(image, next(iter(source)).image)
        np.testing.assert_array_equal(image, read_image(site / "chelsea.jpg"))  # the file's picture, to the pixel
        out = tmp_path / "q"
        code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out), "--int8", "--int8-flavour",
                          "trt", "--calib", f"{secret}/calib.mp4", "--calib-size", "4", "--images",
                          f"{secret}/chelsea.jpg", "--no-simplify"], monkeypatch, capsys)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["precision"]["int8"]["calibration"] == {
        "source": f"{shown}/calib.mp4", "images": 4, "method": "minmax",
        "frames": [f"{shown}/calib.mp4#frame={n}" for n in (0, 10, 20, 30)]}
    assert m["export"]["parity_images"] == f"{shown}/chelsea.jpg" and "parity_frames" not in m["export"]
    assert m["parity"]["model.int8.trt.onnx"]["passed"] and m["parity"]["model.int8.trt.onnx"]["images"] == 1
    assert "secret" not in (out / "manifest.json").read_text() and "secret" not in err


def test_export_refuses_a_live_feed_over_http_once_opened_and_a_url_that_does_not_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An http(s) URL is live or not by what opening it says (an MJPEG camera is; a file is not), not by its
    scheme: the camera is refused in one line, exit 2, its login not shown (the refusal printed the URL as
    given, password and all); a URL that does not answer is infer's one line. Nothing is written."""
    import socket

    from test_cli_infer import paced_camera

    asked: list[str] = []
    with socket.socket() as s, paced_camera(asked.append) as camera:
        s.bind(("127.0.0.1", 0))  # a port that nothing listens on, bound (not listened on) for the whole test
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/clip.mp4"
        secret = camera.replace("http://", "http://user:secret@")
        for option, what in (("--calib", "calibration"), ("--images", "parity")):
            for given, said in ((secret, f"{camera.replace('http://', 'http://***@')} is a stream or a camera"),
                                (closed, f"cannot open stream {closed}: ")):
                code, err = _run(["--model", "pvt_v2_b0-cls", "--int8", option, given, "-o", str(tmp_path / "q")],
                                 monkeypatch, capsys)
                lines = [ln for ln in err.splitlines() if ln.strip()]
                assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
                assert lines[0].startswith(f"error: {what} images: {said}") and "secret" not in err, err
        assert asked == ["/cam.mjpg"] * 2  # opened, as infer opens it, to learn that it is live
        # a URL ending .yaml is no dataset YAML on disk: it was "no such file: http://user:secret@..."
        code, err = _run(["--model", "pvt_v2_b0-cls", "--int8", "--calib", closed.replace("http://", "http://u:secret@")
                          .replace("clip.mp4", "data.yaml"), "-o", str(tmp_path / "q")], monkeypatch, capsys)
    assert code == 2 and "error: calibration images: cannot open stream http://***@" in err and "secret" not in err, err
    assert not (tmp_path / "q").exists()


def test_an_unused_calib_is_said_and_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    """`export --calib clip.mp4 --images cat.jpg` without --int8 decoded the clip and used none of it, without a
    word: a user believed the export calibrated on it. It is said in one warning and not read (without
    --images, parity runs on it: no warning, as the other calibration tests show)."""
    from pvt_deploy.assets import sample_image
    from pvt_deploy.export import calibration

    clip = _ramp_clip(tmp_path / "calib.mp4", 10)
    picture = tmp_path / "cat.jpg"
    shutil.copy(sample_image("chelsea"), picture)
    read: list[str] = []
    usable = calibration.usable_images
    monkeypatch.setattr(calibration, "usable_images",
                        lambda spec, *a, **k: (read.append(str(spec)), usable(spec, *a, **k))[1])
    out = tmp_path / "e"
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out), "--calib", str(clip),
                      "--images", str(picture), "--no-simplify"], monkeypatch, capsys)
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "--calib" in r.getMessage()]
    assert warnings == ["--calib is not used: it calibrates INT8 (--int8) and is what parity runs on without "
                        "--images"], warnings
    assert read == [str(picture)], read
    m = json.loads((out / "manifest.json").read_text())
    assert m["export"]["parity_images"] == str(picture) and "int8" not in m["precision"]


@pytest.mark.parametrize("text, said", [
    ("names: [person]\nnc: 1\n", "data.yaml is not a dataset YAML: no val or train image split (its keys: names, nc)"),
    ("- images/val\n", "data.yaml is not a dataset YAML: no val or train image split (it holds a list)"),
    ("path: nowhere\nval: images/val\n", "data.yaml: path: nowhere is not a folder (looked for "),
    ("val: images/test\ndownload: https://example.com/ds.zip\n",
     "data.yaml: val: images/test not found (looked for {ds}/images/test) (pvt-deploy downloads no dataset"),
    ("val: labels/val\n", "data.yaml: val: labels/val holds no images"),
    ("val: [images/val, 7]\n", "data.yaml: val: ['images/val', 7] is not a path or a list of paths"),
    ("val: list.txt\n", "data.yaml: val: list.txt: no such file: gone.jpg"),
    ("val: talk.mp4\n", "data.yaml: val: talk.mp4 is a video: a split is a folder of images"),  # not read as a list
    ("val: 'images/val\n", "data.yaml is not valid YAML (line 2)"),
])
def test_a_yaml_that_is_not_a_dataset_is_one_line_before_any_work(
        text: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    ds = tmp_path / "ds"
    data = _dataset(ds, yaml=text)
    (ds / "list.txt").write_text("images/val/good0.jpg\ngone.jpg\n")
    (ds / "talk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)))
    monkeypatch.chdir(tmp_path)
    for option in ("--calib", "--images"):
        code, err = _run(["--model", "pvt_v2_b0-cls", "--int8", option, str(data), "-o", str(tmp_path / "q")],
                         monkeypatch, capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        what = "calibration" if option == "--calib" else "parity"
        assert lines[0].startswith(f"error: {what} images: {data}") and said.format(ds=ds) in lines[0], err
    assert "RANDOMLY" not in caplog.text and not (tmp_path / "q").exists()  # refused before the model was built


def test_cli_export_calibrates_on_a_dataset_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`export --int8 --calib data.yaml` said "data.yaml is neither a readable image nor a video"; it calibrates
    on the val split (2 images here, not train's 3), which the parity gate then runs too."""
    data = _dataset(tmp_path / "ds")
    out = tmp_path / "q"
    code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out), "--int8", "--int8-flavour", "trt",
                      "--calib", str(data), "--no-simplify"], monkeypatch, capsys)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["precision"]["int8"]["calibration"] == {"source": str(data), "images": 2, "method": "minmax"}
    assert m["export"]["parity_images"] == str(data) and m["parity"]["model.int8.trt.onnx"]["passed"]
    assert m["parity"]["model.int8.trt.onnx"]["images"] == 2


def test_the_opset_help_names_the_maxima_the_option_is_checked_against(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``export --help`` said "torchscript up to torch's maximum, 23 in torch 2.13" whatever torch was
    installed: a number written by hand. It now names what ``max_opset`` (the limit ``--opset`` is
    refused past) gives for each exporter, here and now."""
    import pvt_deploy.export.onnx as onnx_export

    def help_text() -> str:
        code, out, err = run(monkeypatch, capsys, "export", "--help")
        assert code == 0, out + err
        return " ".join(out.replace("│", " ").split())

    real = help_text()
    here = f"Here: up to {onnx_export.max_opset('torchscript')[0]} with torchscript, {onnx_export.max_opset('dynamo')[0]} with dynamo."
    assert here in real, real
    monkeypatch.setattr(onnx_export, "max_opset", lambda exporter="torchscript": (41 if exporter == "torchscript" else 42, ""))
    assert ("ONNX opset: torchscript 17 (default) up to torch's maximum; dynamo 18 (default) or newer, converted. "
            "Here: up to 41 with torchscript, 42 with dynamo.") in help_text()


def test_an_opset_the_dynamo_exporter_cannot_write_is_warned_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """`export --exporter dynamo --opset 17` wrote opset 18, said in an INFO line among the others: the
    user asked for 17 and got a file of another opset. It is a warning that says how to get 17; the
    figures and the manifest give the opset written. (Without --opset dynamo's default, 18, is no
    surprise, and is not warned of: test_export_dynamo.)"""
    import pvt_deploy.models

    create_model = pvt_deploy.models.create_model

    def one_block_a_stage(*args: object, **kwargs: object) -> object:
        """One block a stage, as test_export_dynamo traces: the same layers, less for dynamo to trace."""
        model = create_model(*args, **kwargs)  # type: ignore[arg-type]
        for i in range(1, 5):
            setattr(model, f"block{i}", getattr(model, f"block{i}")[:1])
        return model

    monkeypatch.setattr(pvt_deploy.models, "create_model", one_block_a_stage)
    out = tmp_path / "d17"
    with caplog.at_level(logging.INFO, logger="pvt_deploy"):  # the opset written is the point, not the gate
        code, err = _run(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "-o", str(out), "--exporter", "dynamo",
                          "--opset", "17", "--no-parity"], monkeypatch, capsys)
    assert code == 0, err
    said = [r for r in caplog.records if "opset" in r.getMessage() and r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in said] == ["--opset 17: the dynamo exporter writes opset 18 and newer; writing "
                                              "opset 18 (--exporter torchscript writes 17)"], caplog.text
    assert "graph: dynamo, opset 18," in " ".join(err.split())
    assert json.loads((out / "manifest.json").read_text())["export"]["opset"] == 18


def test_the_figures_count_nodes_in_the_logs_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One export printed "1112 nodes, 507 after simplification" in its log and "1112 -> 507 nodes after
    simplification" in the figures under it (and "(not simplified)" against "(not simplified:
    --no-simplify)"). The figures now use the log's words."""
    from rich.console import Console

    import pvt_deploy.manifest
    from pvt_deploy.cli.export import _print_export_figures

    def figures(simplified: bool) -> str:
        manifest = {"export": {"exporter": "torchscript", "opset": 17, "nodes_before": 1112, "nodes_after": 507 if simplified else 1112,
                               "simplified": simplified},
                    "dynamic": {"batch": [1, 8], "height": [32, 1344], "width": [32, 1344]}}
        monkeypatch.setattr(pvt_deploy.manifest, "read_manifest", lambda folder: manifest)
        console = Console(record=True, width=200)
        _print_export_figures(console, tmp_path, 1.0)
        return console.export_text()

    assert "graph: torchscript, opset 17, 1112 nodes, 507 after simplification; batch 1-8" in figures(True)
    assert "graph: torchscript, opset 17, 1112 nodes (not simplified); batch 1-8" in figures(False)


def test_calib_given_for_a_dynamic_int8_file_already_there_is_not_said_to_be_unused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_artifact: Artifact, tmp_path: Path) -> None:
    """A dynamic INT8 file (--int8-cpu dynamic; a classifier's by default) reads no calibration pictures, made
    again neither: the warning called it 'calibrated on bundled sample images' and said to delete it to
    calibrate on the pictures given. Only the calibrated (static) files are named."""
    folder = tmp_path / "det"
    shutil.copytree(det_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["precision"]["int8"]["cpu"]["method"] = "dynamic"  # as --int8-cpu dynamic records it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    mine = _jpgs(tmp_path / "mine", 1, 0)

    def unused(flavour: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", "--int8-flavour",
                               flavour, "--calib", str(mine))
        assert code == 0, err
        return [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()]

    (warned,) = unused("both")  # was: model.int8.onnx, model.int8.trt.onnx are already there
    assert ": model.int8.trt.onnx is already there, calibrated on " in warned and "model.int8.onnx" not in warned
    assert unused("cpu") == []  # was: model.int8.onnx is already there, calibrated on bundled sample images
