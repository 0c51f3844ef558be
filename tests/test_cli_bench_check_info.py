"""``pvt-deploy bench``, ``check`` and ``info`` through the console entry point."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from cli_run import reexport_command, run
from dataset_files import dataset
from test_runtime_artifacts import cached_export

from pvt_deploy.manifest import read_manifest, write_manifest
from pvt_deploy.runtimes.ort_providers import available_providers


def torch_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())

# Three tests below ask for --device cuda to see what a machine without it says; with
# onnxruntime-gpu on a GPU the same command runs instead.
no_ort_cuda = pytest.mark.skipif("CUDAExecutionProvider" in available_providers(),
                                 reason="ONNX Runtime has a CUDA provider here: --device cuda runs")


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


@pytest.fixture(scope="module")
def seg_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "seg")


def test_bench_json_lists_backends_side_by_side(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                cls_export: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends",
                         "torch,onnx,onnx-int8,onnx-fp16,trt", "--warmup", "1", "--iters", "3", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["task"] == "classify" and report["input_shape"] == [1, 3, 128, 128] and report["iters"] == 3
    assert {"cpu", "physical_cores", "versions"} <= set(report["host"])
    rows = {r["backend"]: r for r in report["results"]}
    assert list(rows) == ["torch", "onnx", "onnx-int8", "onnx-fp16", "trt"]
    for label in ("torch", "onnx", "onnx-int8"):
        row = rows[label]
        assert row["status"] == "ok", row
        assert set(row["latency_ms"]) >= {"p50", "p90", "p99", "mean"}
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert set(row["stages_ms"]) == {"preprocess", "inference", "postprocess"} and row["throughput_fps"] > 0
        assert row["memory_mb"]["rss_peak_delta"] is not None and row["vs_torch"] > 0
    assert rows["torch"]["vs_torch"] == 1.0 and rows["onnx-int8"]["precision"] == "int8"
    assert rows["onnx-fp16"]["status"] == "skipped" and "model.fp16.onnx" in rows["onnx-fp16"]["reason"]
    assert rows["trt"]["status"] == "skipped" and rows["trt"]["reason"]


def test_bench_gpu_memory_is_the_rows_own(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          cls_export: Path) -> None:
    """On a machine with CUDA every row's memory was torch's CUDA peak: the CPU rows' too (0 MB in the
    table instead of their RSS) and ONNX Runtime's CUDA rows' (its arena is not torch's). A CPU row
    reads its RSS; a GPU row outside torch what the GPU holds beyond what it held before loading. A
    GPU is faked: the counters below are what bench reads."""
    import torch

    from pvt_deploy import bench
    from pvt_deploy.runtimes.base import BackendInfo

    used = [1 << 30]
    touched: list[object] = []  # the GPUs whose counters were reset (each makes a CUDA context there)
    for name, fake in (("is_available", lambda: True), ("device_count", lambda: 1), ("current_device", lambda: 0),
                       ("get_device_name", lambda device=None: "NVIDIA H100 (fake)"),
                       ("synchronize", lambda device=None: None),
                       ("reset_peak_memory_stats", lambda device=None: touched.append(device)),
                       ("max_memory_allocated", lambda device=None: 77 << 20),
                       ("mem_get_info", lambda device=None: ((80 << 30) - used[0], 80 << 30))):
        monkeypatch.setattr(torch.cuda, name, fake)
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                         "--device", "cpu", "--warmup", "0", "--iters", "1", "--json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert row["status"] == "ok" and row["memory_mb"]["cuda_peak"] is None
    assert row["memory_mb"]["rss_peak_delta"] is not None
    # --device cpu touches no GPU (the device was read by a regex, for which "cpu" named the current GPU);
    # the device is read as the backends read it: cuda and none are the current GPU, cuda:N past them none
    assert touched == [] and bench._cuda_reset("cpu") is None and bench._cuda_reset("cuda:1") is None
    assert bench._cuda_reset("cuda") == bench._cuda_reset(0) == (0, 1 << 30) and touched == [0, 0]
    # ONNX Runtime's TensorRT EP (--backends onnx --device tensorrt[:N]) runs on that GPU too: read as none
    # since the device was read as torch reads it, so its row had no GPU memory
    assert bench._cuda_reset("tensorrt") == bench._cuda_reset("trt:0") == (0, 1 << 30)
    assert bench._cuda_reset("tensorrt:1") is None and touched == [0, 0, 0, 0]
    before = bench._cuda_reset(None)
    used[0] += 300 << 20  # what ONNX Runtime's CUDA arena or a TensorRT engine took: 300 MiB, in MB (10^6 bytes)
    assert bench._cuda_peak(BackendInfo("onnxruntime", "CUDAExecutionProvider", "fp32"), before) == 314.6
    assert bench._cuda_peak(BackendInfo("tensorrt", "cuda:0", "fp16"), before) == 314.6
    assert bench._cuda_peak(BackendInfo("torch", "cuda:0", "fp16"), before) == 80.7  # 77 MiB
    assert bench._cuda_peak(BackendInfo("onnxruntime", "CPUExecutionProvider", "fp32"), before) is None


def test_bench_table_and_a_zoo_model(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    code, out, err = run(monkeypatch, capsys, "bench", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                         "--backends", "torch,onnx", "--warmup", "0", "--iters", "2")
    assert code == 0, err
    assert "torch" in out and "1.00x" in out and "p50 ms" in out
    table = out.split("host:")[0].splitlines()
    assert max(len(line) for line in table) <= 80  # fits a common terminal with every figure whole
    assert "onnx: skipped" in out and "export it first" in out


def test_check_passes_when_backends_agree(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          seg_export: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(seg_export), "--json", "--max-images", "2")
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] and report["reference"] == "torch" and report["task"] == "segment"
    onnx = next(r for r in report["results"] if r["backend"] == "onnx")
    assert onnx["agreement"] >= 0.999 and onnx["outputs"]["seg_logits"]["cosine"] > 0.9999 and onnx["passed"]
    assert onnx["task"]["metric"] == "pixel_agreement" and report["agreement_gated"] is False  # random weights
    assert any(r["status"] == "skipped" and r["backend"] == "trt" for r in report["results"])


def test_check_says_the_input_shape_it_compared_at(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """``check --imgsz 100x150`` (or the model's default) compared at a size that neither its table nor its
    JSON gave, where bench's give ``input_shape``; a CI job could not tell what size had passed. Both say it."""
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--imgsz", "100x150",
                         "--backends", "torch,onnx", "--max-images", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["imgsz"] == [100, 150] and report["input_shape"] == [1, 3, 100, 150], report
    from rich.console import Console

    from pvt_deploy.cli.check import render

    console = Console(record=True, width=100)
    render(report, console)  # the table the command prints without --json, from this one run
    assert "input 1x3x100x150" in " ".join(console.export_text().split()), console.export_text()
    # and its --help said "(dynamic graphs; multiples of 32, rounded up ...)": a classifier's centre crop is fed
    # as asked, as above; only a letterbox (detectors, segmenters) is rounded up to the stride
    from typer.main import get_command

    from pvt_deploy.cli import app

    text = next(p.help for p in get_command(app).commands["check"].params if p.name == "imgsz")  # type: ignore[attr-defined]
    assert "multiples of 32, rounded up" not in text and "classifier" in text, text


def test_check_fails_with_exit_5_outside_tolerance(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--tolerance", "1e-6",
                         "--max-images", "1")
    assert code == 5
    assert "FAIL" in out and "max_rel" in out and "Traceback" not in err
    assert f"{cls_export}: 1 image vs torch" in " ".join(out.split())  # "1 images"; a video's are frames
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: onnx, onnx-int8 disagree with torch") and "max_rel" in last


def test_check_json_is_strict_json_when_a_figure_is_infinite(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """``check --tolerance inf --json`` printed ``"max_rel": Infinity`` and ``"min_cosine": -Infinity``,
    which are not JSON: jq and JavaScript refuse the whole report. Non-finite figures are the strings
    "inf", "-inf", "nan", as in manifest.json. (``--tolerance inf`` is refused now, 942036e; unbounded
    limits stand in the defaults here, as a library caller's own tolerances may have them.)"""
    from pvt_deploy.export import parity

    inf = float("inf")
    monkeypatch.setitem(parity.DEFAULT_TOLERANCES, "fp32", parity.Tolerance(min_cosine=-inf, max_rel=inf,
                                                                             min_agreement=-inf))
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export),
                         "--backends", "torch,onnx", "--max-images", "1", "--json")
    assert code == 0, err

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    report = json.loads(out, parse_constant=refuse)
    onnx = next(r for r in report["results"] if r["backend"] == "onnx")
    assert onnx["tolerance"] == {"min_cosine": "-inf", "max_rel": "inf", "min_agreement": "-inf"}
    assert float(onnx["tolerance"]["max_rel"]) == float("inf") and onnx["passed"]


def test_check_without_export_weights_uses_onnx_as_reference(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cls"
    shutil.copytree(cls_export, folder)
    manifest = read_manifest(folder)
    manifest["weights"] = {"source": None, "sha256": None, "random_init": True}
    write_manifest(folder, manifest)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--json", "--max-images", "1")
    assert code == 0, err
    report = json.loads(out)
    assert report["reference"] == "onnx"
    torch_row = next(r for r in report["results"] if r["backend"] == "torch")
    assert torch_row["status"] == "skipped" and "random weights" in torch_row["reason"]
    code, _, err = run(monkeypatch, capsys, "check", "--model", "pvt_v2_b0")
    assert code == 2 and "export folder" in err


@pytest.mark.parametrize("command", [("bench", "--iters", "1"), ("check",)])
def test_a_size_outside_the_graph_is_refused_before_any_backend_loads(
        command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cls_export: Path) -> None:
    """``bench``/``check --imgsz`` outside an export's range loaded every backend (checkpoint, FP16 warning),
    bench printed a table of rows all skipped for that one reason, and only then the error; ``infer`` says
    it before loading anything. The export's range is checked first, as infer checks it."""
    from pvt_deploy.runtimes import loader

    def not_reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("a backend was loaded before --imgsz was checked")

    monkeypatch.setattr(loader, "load_backend", not_reached)
    code, out, err = run(monkeypatch, capsys, command[0], "--model", str(cls_export), "--imgsz", "2000", *command[1:])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("error: --imgsz 2000x2000") and "outside the graph's dynamic range" in lines[0], err


def test_info_shows_files_ranges_and_backends(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              cls_export: Path, tmp_path: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "info", str(cls_export))
    assert code == 0, err
    for needle in ("pvt_v2_b0-cls", "classify", "1000 classes", "images float32 [batch, 3, height, width]",
                   "resize_crop", "height 64..320", "model.int8.onnx", "parity at export", "trt", "no model.engine"):
        assert needle in out, needle
    folder = tmp_path / "changed"
    shutil.copytree(cls_export, folder)
    with open(folder / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    code, out, _ = run(monkeypatch, capsys, "info", str(folder), "--json")
    facts = json.loads(out)
    # "everything as JSON": every class name (it gave the first 10 of 1000, for a script to take as the list)
    assert facts["num_classes"] == 1000 and facts["classes"] == read_manifest(cls_export)["classes"]
    assert {f["name"]: f["check"] for f in facts["files"]} == {"model.onnx": "ok", "model.int8.onnx": "MISMATCH"}
    from pvt_deploy.utils.files import sha256_file

    assert {f["name"]: f["sha256"] for f in facts["files"]} == {n: sha256_file(folder / n)
                                                                 for n in ("model.onnx", "model.int8.onnx")}
    available = {b["label"]: (b["available"], b["reason"]) for b in facts["backends"]}
    assert available["onnx"][0] is True
    assert available["onnx-int8"][0] is False and "changed since the export" in available["onnx-int8"][1]
    lone = tmp_path / "lone.onnx"
    shutil.copyfile(cls_export / "model.onnx", lone)
    code, out, _ = run(monkeypatch, capsys, "info", str(lone), "--json")
    assert code == 0 and json.loads(out)["kind"] == "ONNX file (manifest from its metadata)"
    assert json.loads(out)["classes"] == facts["classes"]
    code, _, err = run(monkeypatch, capsys, "info", str(tmp_path / "nothing.onnx"))
    assert code == 2 and err.strip().startswith("error: no such file")


def test_bench_fails_fast_on_an_unknown_model_and_when_nothing_runs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "bench", "--model", "pvt_v2_bO-cls", "--backends", "onnx")
    assert code == 2 and out == "" and "did you mean 'pvt_v2_b0-cls'?" in err
    code, _, err = run(monkeypatch, capsys, "bench", "--model", "missing/model.onnx")
    assert code == 2 and "no such file or folder" in err
    # a real model whose only asked backend cannot run: the table says why, the exit code says what failed
    code, out, err = run(monkeypatch, capsys, "bench", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                         "--backends", "onnx", "--json")
    assert code == 2 and json.loads(out)["results"][0]["status"] == "skipped"  # a zoo name has no ONNX graph
    assert "no backend could be benchmarked" in err and "export it first" in err
    code, _, err = run(monkeypatch, capsys, "bench", "--model", "pvt_v2_b0-cls", "--backends", ",")
    assert code == 2 and "--backends names no backend" in err


@no_ort_cuda
def test_bench_refuses_a_batch_the_graph_cannot_take_before_any_backend_loads(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """``bench --batch 9`` on an export of batch 1-4 loaded every backend (checkpoint, FP16 warning), printed
    an empty table titled "(?) input ?" above one "skipped" line per backend, then the error. Refused
    first in one line, as an --imgsz outside the graph's range is."""
    from pvt_deploy.runtimes import loader

    def not_reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("a backend was loaded before --batch was checked")

    monkeypatch.setattr(loader, "load_backend", not_reached)
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--batch", "9", "--iters", "1")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("error: --batch 9 is more than this graph takes (4)"), err


def test_bench_of_a_lone_file_times_the_backend_that_runs_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    """``bench --model x.onnx`` (as ``trtexec --onnx=x.onnx``) tried all five default backends on the one file:
    four rows skipped ("model.int8.onnx holds a int8 graph, not fp32", "--backends torch cannot run it
    directly"), and an ONNX file pvt-deploy did not make failed with "torch: foreign.onnx is an ONNX file;
    --backends torch cannot run it", not with what is wrong with it, under an empty table titled "(?) input
    ?". A lone file's default is the backend that runs it, at the file's own precision; when nothing ran,
    no table."""
    import onnx
    from onnx import TensorProto, helper

    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export / "model.int8.onnx"),
                         "--warmup", "0", "--iters", "1", "--json")
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert [(r["backend"], r["status"], r["precision"]) for r in rows] == [("onnx-int8", "ok", "int8")], rows
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "foreign.onnx"))
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(tmp_path / "foreign.onnx"), "--iters", "1")
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err
    assert last.startswith("error: no backend could be benchmarked here: onnx:") and "no pvt-deploy metadata" in last
    assert "torch:" not in out + err and "trt:" not in out + err, out + err
    assert "input ?" not in out, out  # no empty table when nothing ran: the reasons and the error


def test_bench_exit_code_says_why_nothing_ran(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             cls_export: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                       "--device", "cuda", "--iters", "1")
    assert code == 3 and "CUDA" in err  # a runtime missing here
    code, _, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                       "--imgsz", "4000", "--iters", "1")
    assert code == 2 and "4000" in err  # a size outside the graph's range is the user's input
    # the default list names variants this export lacks (no model.engine): "not asked for by name", as
    # in check, so they do not turn "no CUDA here" (3) into "bad input" (2); asked for by name they do
    if not torch_cuda():
        code, _, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--device", "cuda",
                           "--iters", "1")
        assert code == 3 and "CUDA" in err and "trt:" in err, err
    code, _, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "trt")
    assert code == 2 and "no model.engine" in err


def test_check_says_why_no_backend_can_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          cls_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    shutil.copytree(cls_export, folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--backends", "onnx,onnx-int8")
    assert code == 2 and "nothing to compare" in err and "onnx:" in err and "sha256" in err
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--backends", "onnx")
    assert code == 2 and "name at least two" in err


def test_check_of_no_export_says_so_and_points_where_it_leads(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    """``check --model graphs/`` (an .onnx, no manifest.json) answered with infer's advice, "an .onnx that
    pvt-deploy exported runs on its own: --model graphs/model.onnx", and check given that file refused it
    ("check needs an export folder"); a path that does not exist was "check needs an export folder" too,
    not "no such file". Each now says what it is and where to go (bench times a lone graph)."""
    lone = tmp_path / "graphs"
    lone.mkdir()
    shutil.copyfile(cls_export / "model.onnx", lone / "model.onnx")
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(lone))
    message = " ".join(err.split())
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1, err
    assert f"{lone}: no manifest.json" in message and f"pvt-deploy bench --model {lone / 'model.onnx'}" in message
    assert "runs on its own" not in message, message
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(tmp_path / "gone" / "model.onnx"))
    assert (code, out) == (2, "") and f"no such file or folder: {tmp_path / 'gone' / 'model.onnx'}" in err, err


def test_check_tables_the_others_when_one_backend_fails_to_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    """A graph ONNX Runtime loads but cannot run (here a model.int8.onnx whose Reshape fails; a GPU provider
    out of memory) ended check at once with that one error: no table, no JSON for the backends that had run
    and agreed. As bench does, the row is "failed" with its reason, the others are compared and tabled,
    and the exit code is the failure's."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pvt_deploy.manifest import file_entry

    folder = tmp_path / "cls"
    shutil.copytree(cls_export, folder)
    source = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    graph = helper.make_graph([helper.make_node("Reshape", ["images", "shape"], ["logits"])], "broken",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
                              [numpy_helper.from_array(np.array([-1, 1000], np.int64), "shape")])
    broken = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=source.ir_version)
    broken.metadata_props.extend(source.metadata_props)
    onnx.save(broken, str(folder / "model.int8.onnx"))
    manifest = read_manifest(folder)
    manifest["files"]["model.int8.onnx"] = file_entry(folder / "model.int8.onnx", "int8")
    write_manifest(folder, manifest)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--max-images", "1", "--json")
    rows = {r["backend"]: r for r in json.loads(out)["results"]}
    assert code == 2 and "Traceback" not in err, err
    assert rows["onnx"]["passed"] and rows["onnx-int8"]["status"] == "failed", rows
    assert "onnx-int8:" in err.strip().splitlines()[-1], err


def test_check_fails_on_a_file_of_the_export_that_was_truncated(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    """A model.int8.onnx cut short (its sha256 no longer the manifest's) was "skipped" as a backend that
    cannot run here, and check passed (exit 0) on the others, where a whole int8 graph that ONNX Runtime
    cannot run fails it (above). The export is damaged: the row is "failed", the others are tabled, exit 2."""
    folder = tmp_path / "cls"
    shutil.copytree(cls_export, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    with (folder / "model.int8.onnx").open("r+b") as f:
        f.truncate(1000)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--max-images", "1", "--json")
    rows = {r["backend"]: r for r in json.loads(out)["results"]}
    assert code == 2 and "Traceback" not in err, err
    assert rows["onnx"]["passed"] and rows["onnx-int8"]["status"] == "failed", rows
    assert "model.int8.onnx: sha256 differs from the manifest" in err.strip().splitlines()[-1], err


def test_check_refuses_a_bench_backend_that_an_export_folder_has_not(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """bench's torch-fp16 and triton were accepted by check, never run, and then reported as "only
    torch can run this artifact here" (exit 3, not available) though torch-fp16 was never tried."""
    for backends, label in (("torch,torch-fp16", "torch-fp16"), ("onnx,triton", "triton")):
        code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--backends", backends)
        assert (code, out) == (2, ""), err
        assert f"--backends {label}:" in err and "onnx-int8, trt" in err and len(err.strip().splitlines()) == 1


@no_ort_cuda
def test_check_that_compares_nothing_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          cls_export: Path) -> None:
    """Random weights (no PyTorch) and no CUDA here: nothing can run, so the check must not pass."""
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--device", "cuda")
    assert code == 3 and "no backend can run" in err and "CUDA" in err


@no_ort_cuda
def test_info_device_says_what_runs_on_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         cls_export: Path) -> None:
    code, out, _ = run(monkeypatch, capsys, "info", str(cls_export), "--device", "cuda", "--json")
    rows = {b["label"]: b for b in json.loads(out)["backends"]}
    assert code == 0 and rows["onnx"]["available"] is False and "CUDA" in rows["onnx"]["reason"]
    code, out, _ = run(monkeypatch, capsys, "info", str(cls_export), "--device", "cpu", "--json")
    assert json.loads(out)["backends"][1]["available"] is True
    code, _, err = run(monkeypatch, capsys, "info", str(cls_export), "--device", "bogus")
    assert code == 2 and "bogus" in err


def test_models_lists_the_bare_backbones_too(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "models", "--task", "features", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 11 and {r["task"] for r in rows} == {"features"}
    assert next(r for r in rows if r["name"] == "pvt_small-features")["params_m"] == pytest.approx(23.97, abs=0.01)
    code, _, err = run(monkeypatch, capsys, "models", "--task", "bogus")
    assert code == 2 and "features" in err


def test_models_says_which_entries_have_official_weights_by_url(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``pvt-deploy models`` listed no URLs: a user had to find the official checkpoints in the official
    READMEs. ``--json`` gives each entry's official URL (the GitHub release asset of its ImageNet classifier,
    as whai362/PVT's classification/README.md links it) and what of the entry it holds; the table marks it."""
    code, out, err = run(monkeypatch, capsys, "models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0, err
    release = "https://github.com/whai362/PVT/releases/download/v2/"
    assert rows["pvt_v2_b0-cls"]["official_weights"] == release + "pvt_v2_b0.pth"
    assert rows["pvt_v2_b2_li-cls"]["official_weights"] == release + "pvt_v2_b2_li.pth"
    assert rows["pvt_small-cls"]["official_part"] == "model"
    assert rows["pvt_small"]["official_weights"] == release + "pvt_small.pth"  # the detector: its backbone
    assert rows["pvt_small"]["official_part"] == rows["pvt_small-seg"]["official_part"] == "backbone"
    assert all(r["official_weights"] for r in rows.values())
    code, out, err = run(monkeypatch, capsys, "models", "--task", "classify")
    lines = out.splitlines()
    assert code == 0 and "official" in lines[2] and all(len(line) <= 100 for line in lines if "│" in line)
    assert "model" in next(line for line in lines if "pvt_v2_b0-cls" in line)


@pytest.mark.parametrize("unbuffered", [True, False])
def test_json_on_stdout_to_a_full_disk_is_one_line_and_exit_2(tmp_path: Path, unbuffered: bool) -> None:
    """``pvt-deploy models --json > FILE`` where the file system takes only the first KiB (a full disk, a
    file size limit). With PYTHONUNBUFFERED=1, which the Docker images set, Python's stdout dropped what
    the short write left and the command exited 0 with a truncated JSON; buffered, it ended in a
    traceback (exit 1). Now both are one line and exit 2, as for every other write a full disk refuses."""
    import os
    import resource
    import subprocess

    # (not measured by `make coverage`: the size limit holds for its data file too, whose failed save at
    # exit would be a traceback of coverage's own)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED" and not k.startswith("COVERAGE_")}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    with open(tmp_path / "models.json", "wb") as out:
        done = subprocess.run([sys.executable, "-m", "pvt_deploy", "models", "--json"], stdout=out,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024)))
    assert (tmp_path / "models.json").stat().st_size == 1024  # the limit was met (the JSON is ~8 KiB)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: cannot write the output: File too large"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/PID/mem is Linux's")
def test_json_to_an_output_that_takes_nothing_ends(tmp_path: Path) -> None:
    """``pvt-deploy models --json > /proc/self/mem`` from a shell: the shell opens its own memory file and then
    becomes pvt-deploy, whose writes to it take 0 bytes and say no error (that memory is gone). Python's
    buffered writer retried such a write forever at exit, a process spinning until killed; a write that
    takes nothing is a failed output, one line and exit 2."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    done = subprocess.run(["sh", "-c", 'exec "$0" -m pvt_deploy models --json > /proc/self/mem', sys.executable],
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: cannot write the output: Input/output error"


def closed_pipe_run(*args: str, stderr_too: bool = False, timeout: float = 120) -> tuple[int, str]:
    """``pvt-deploy ARGS | head -1`` (``2>&1 | head -1`` with ``stderr_too``), its reader gone before the
    first write: (exit code, what stderr said where it is not the pipe)."""
    import os
    import subprocess
    import tempfile

    read, write = os.pipe()
    os.close(read)  # every write to the pipe now fails with EPIPE
    with tempfile.TemporaryFile() as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
        code = subprocess.run([sys.executable, "-m", "pvt_deploy", *args], stdout=write,
                              stderr=write if stderr_too else log, env=env, timeout=timeout).returncode
        os.close(write)
        log.seek(0)
        return code, log.read().decode(errors="replace")


def test_a_reader_that_stops_reading_stdout_leaves_the_exit_code_the_commands() -> None:
    """``pvt-deploy models | head -1`` exited 1 with nothing on stderr (Click's answer to a closed pipe),
    which README keeps for the tool's own failures and which fails a ``set -o pipefail`` script. What the
    reader did not take is dropped; the command ends as it would have: 0 here, 2 for a bad input."""
    code, err = closed_pipe_run("models")
    assert code == 0 and err == "", err
    code, err = closed_pipe_run("info", "no/such/export", "--json")
    assert code == 2 and err.strip() == "error: no such file or folder: no/such/export", err


@pytest.fixture(scope="module")
def helps_at_80() -> dict[str, str]:
    """Each command's ``--help`` as a terminal of 80 columns gets it (COLUMNS and TERMINAL_WIDTH, which Typer
    reads once, at its import: a process of its own), by command name; one process for every command."""
    import os
    import subprocess

    from typer.main import get_command

    from pvt_deploy.cli import app

    commands = get_command(app).commands  # type: ignore[attr-defined]
    script = ("import sys\nfrom pvt_deploy.cli import main\n"
              f"for cmd in {list(commands)!r}:\n"
              "    print('=== ' + cmd)\n    sys.argv = ['pvt-deploy', cmd, '--help']\n"
              "    try:\n        main()\n    except SystemExit:\n        pass\n")
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    text = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120).stdout
    helps = dict(part.split("\n", 1) for part in text.split("=== ")[1:])
    assert list(helps) == list(commands), text[-2000:]
    return helps


def test_help_fits_an_80_column_terminal_without_cutting_anything(helps_at_80: dict[str, str]) -> None:
    """Every command's --help at 80 columns: long flags fold onto a second line rather than end in "…"
    (``--allow-parity-fail…`` cannot be typed), and flags read as flags."""
    out = "".join(helps_at_80[cmd] for cmd in ("export", "infer", "bench", "check", "info", "models", "doctor"))
    assert out.count("Usage: pvt-deploy") == 7
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out, [line for line in out.splitlines() if "…" in line]
    assert "--allow-parity-fai" in out
    # an on/off flag shows no <bool> type ("--half true" is an error, not a way to write it), and one
    # that is off by default has no --no- twin to read past
    assert "<bool>" not in out and "<int>" in out
    for twin in ("--no-trust-checkpoint", "--no-allow-parity-failure", "--no-version-compatible", "--no-show"):
        assert twin not in out
    assert "--no-parity" in out and "--no-save-json" in out  # the ones that turn a default off stay


def test_every_help_is_readable_at_80_columns(helps_at_80: dict[str, str]) -> None:
    """An option table's columns are set by its widest flag, type (``<int range> [x>=1]``) and --no- twin
    together: in ``infer --help`` at 80 columns the help text had about 20 (--model's took nine lines) and
    --trust-checkpoint folded in two; ``check --help`` cut "exports/pvt_smal" / "l" and "--no-gate-agreem" /
    "ent". Their options are grouped in tables as export's are, and at 80 columns every flag and every
    word of every option's help shows whole."""
    from typer.main import get_command

    from pvt_deploy.cli import app

    commands = get_command(app).commands  # type: ignore[attr-defined]
    for name, command in commands.items():
        out = helps_at_80[name]
        words = set(out.replace("│", " ").split())
        for p in command.params:
            for flag in [*p.opts, *getattr(p, "secondary_opts", [])]:
                assert flag in words or flag in out, (name, flag)
            for word in (getattr(p, "help", None) or "").split():
                assert word in words, (name, p.name, word)


def test_help_shows_every_option_help_as_written(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Help is rendered as Rich markup, where a ``[bracketed]`` part of a text is a style tag and
    vanishes: export's --instance-kind read "gpu or cpu ." for "... gpu or cpu [default: auto for
    onnx, gpu for trt]". On a terminal wide enough that nothing wraps, each text shows word for word.
    Every command's --imgsz takes the same three forms, and says so in the same words; bench's and
    infer's --model, the same artifacts."""
    from typer.main import get_command

    from pvt_deploy.cli import app

    monkeypatch.setenv("COLUMNS", "1000")
    for name, command in get_command(app).commands.items():  # type: ignore[attr-defined]
        code, out, _ = run(monkeypatch, capsys, name, "--help")
        shown = " ".join(out.split())
        texts = [p.help for p in command.params if getattr(p, "help", None)]
        assert code == 0 and texts
        for text in texts:
            assert " ".join(text.split()) in shown, (name, text)
        imgsz = next((p.help for p in command.params if p.name == "imgsz"), None)
        # one size syntax (utils.size_pair) for every command: export said "N or HxW", the rest "H or H,W"
        assert imgsz is None or imgsz.startswith("Input size N, HxW or H,W"), (name, imgsz)
        device = next((p.help for p in command.params if p.name == "device"), None)
        assert device is None or "cpu, cuda, cuda:N" in device, (name, device)  # info had "(cpu, cuda)"
    # bench loads what infer loads (loader.load_backend); its help had "Export folder, .onnx, zoo name..."
    helps = {name: next(p.help for p in command.params if p.name == "model")
             for name, command in get_command(app).commands.items() if name in ("infer", "bench")}  # type: ignore[attr-defined]
    assert helps["bench"] == helps["infer"]
    # a checkpoint's URL is a model (loader.local_model) since --model https://.../x.pth came; no help said so
    for name, command in get_command(app).commands.items():  # type: ignore[attr-defined]
        text = next((p.help for p in command.params if p.name in ("model", "artifact")), None)
        if name in ("export", "infer", "bench", "info"):
            assert text is not None and "checkpoint file (.pth, .safetensors) or its http(s):// URL" in text, name
    # export's --weights said "(official, mmdet/mmseg, timm names) ... or 'official'": two meanings of one word,
    # and not what 'official' loads into a detector; it says what infer's does
    for name in ("export", "infer"):
        weights = next(p.help for p in get_command(app).commands[name].params if p.name == "weights")  # type: ignore[attr-defined]
        assert ("'official': the zoo model's official file (the ImageNet classifier, or a detector's/segmenter's "
                "backbone: pvt-deploy models)") in " ".join(weights.split()), name
        assert "(official," not in weights, name
    # check --images reads a stream or a camera as a video (README); its help listed a video file only
    images = next(p.help for p in get_command(app).commands["check"].params if p.name == "images")  # type: ignore[attr-defined]
    assert "stream URL or webcam index" in images


def test_help_says_each_options_default() -> None:
    """An option whose help shows no default left the user to guess what runs without it: infer's --max-det
    (100, from the export), --imgsz and --precision, check's --imgsz, export's TensorRT --workspace and
    profile shapes. Each option with a value says its default, shown by Typer or in its text; the ones
    left out here default to nothing (no weights, no cache, every class, every backend, every task)."""
    from typer.main import get_command

    from pvt_deploy.cli import app

    nothing = {("export", "--weights"), ("export", "--timing-cache"), ("infer", "--classes"), ("infer", "--weights"),
               ("check", "--backends"), ("models", "--task"), ("val", "--weights")}
    silent = []
    for name, command in get_command(app).commands.items():  # type: ignore[attr-defined]
        for p in command.params:
            if p.param_type_name != "option" or getattr(p, "is_flag", False) or p.name == "help":
                continue
            shown = p.show_default not in (False, None) and p.default is not None
            if not shown and "default" not in (p.help or "").lower() and (name, p.opts[0]) not in nothing:
                silent.append(f"{name} {p.opts[0]}")
    assert silent == []


def test_help_examples_are_commands_that_parse() -> None:
    """``export --help`` showed examples and ``infer --help`` (the command a new user runs first), ``bench``,
    ``check`` and ``info`` none. Each command that takes an artifact shows at least one, and every example
    is a command its parser takes as written (options, values and arguments)."""
    import shlex

    from typer.main import get_command

    from pvt_deploy.cli import app

    commands = get_command(app).commands  # type: ignore[attr-defined]
    for name in ("export", "infer", "bench", "check", "info"):
        examples = [line.strip() for line in (commands[name].help or "").splitlines()
                    if line.strip().startswith("pvt-deploy ")]
        assert examples, name
        for example in examples:
            words = shlex.split(example)
            assert words[1] == name, example
            commands[name].make_context(name, words[2:])  # raises on an unknown option or a bad value


def test_top_level_help_lists_each_command_on_one_line(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``pvt-deploy --help``, a new user's first screen, broke export's and doctor's summaries where their
    docstrings break a line ("optionally with FP16 and" / "INT8 variants, ..."), however wide the terminal:
    Typer keeps single line breaks in its command list under Rich markup. Each summary is one line."""
    import inspect

    from typer.main import get_command

    from pvt_deploy.cli import app

    monkeypatch.setenv("COLUMNS", "1000")
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert code == 0
    commands = get_command(app).commands  # type: ignore[attr-defined]
    assert any("\n" in inspect.cleandoc(c.help or "").split("\n\n")[0] for c in commands.values())  # the case
    for name, command in commands.items():
        summary = " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())
        assert any(summary in line for line in out.splitlines()), (name, summary)


def test_check_rebuilds_a_seeded_random_export_in_pytorch(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An export of a zoo name without weights is the seeded random init; with the seed in its manifest
    (weights.seed), PyTorch rebuilds exactly that model, so check compares torch with onnx and passes."""
    import numpy as np
    import torch

    from pvt_deploy.export import export_onnx
    from pvt_deploy.models import RANDOM_INIT_SEED, build_deploy_module, create_model
    from pvt_deploy.runtimes.loader import load_backend

    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "cls", imgsz=64, max_size=128, simplify=False, parity=False)
    manifest = read_manifest(folder)
    assert manifest["weights"]["random_init"] is True and manifest["weights"]["source"] is None
    manifest["weights"].setdefault("seed", RANDOM_INIT_SEED)  # what export/onnx.py records for a zoo name
    write_manifest(folder, manifest)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--json", "--max-images", "2")
    assert code == 0, err
    report = json.loads(out)
    assert report["reference"] == "torch" and report["passed"]
    onnx = next(r for r in report["results"] if r["backend"] == "onnx")
    assert onnx["passed"] and onnx["outputs"]["logits"]["cosine"] > 0.99999
    # the torch backend's outputs are the export's PyTorch reference (the seeded zoo model), bit for bit
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 64)).astype(np.float32)
    backend, _ = load_backend(folder, backend="torch")
    with backend:
        got = backend.infer({"images": x})
    reference = build_deploy_module(create_model("pvt_v2_b0-cls", seed=RANDOM_INIT_SEED))
    with torch.no_grad():
        want = reference(torch.from_numpy(x))[0].numpy()
    np.testing.assert_array_equal(got["logits"], want)
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--json")
    facts = json.loads(out)
    torch_row = next(b for b in facts["backends"] if b["label"] == "torch")
    assert code == 0 and torch_row["available"] and "seed 0" in torch_row["reason"]
    assert facts["weights"] == {"source": None, "random_init": True, "seed": RANDOM_INIT_SEED}


def test_a_folder_named_like_a_zoo_model_does_not_take_the_name_over(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """./pvt_v2_b0-cls/ without an export in it: --model pvt_v2_b0-cls is still the zoo model."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pvt_v2_b0-cls").mkdir()
    (tmp_path / "pvt_v2_b0-cls" / "notes.txt").write_text("not an export")
    code, out, err = run(monkeypatch, capsys, "info", "pvt_v2_b0-cls", "--json")
    assert code == 0, err
    assert json.loads(out)["kind"] == "zoo model (PyTorch)"
    code, out, err = run(monkeypatch, capsys, "bench", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--backends",
                         "torch", "--warmup", "0", "--iters", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0]["status"] == "ok"
    code, _, err = run(monkeypatch, capsys, "info", "./pvt_v2_b0-cls")  # a path: the folder is what is meant
    assert code == 2 and "no manifest.json" in err
    code, _, err = run(monkeypatch, capsys, "check", "--model", "pvt_v2_b0-cls")
    assert code == 2 and "check needs an export folder" in err
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity",
                       "--no-simplify", "-o", str(tmp_path / "out"))
    assert code == 0, err  # exported from the zoo, not refused as "an export folder" to reuse
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["model"] == "pvt_v2_b0-cls"


def test_tables_on_a_narrow_terminal_keep_every_character(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """At 40 columns rich cut every cell to "model.on…" / "pvt_v2_b0-…"; the tables are now laid out
    wider than the terminal (which wraps the lines) instead, so each file and model name, digest and
    figure stays whole and can be copied."""
    monkeypatch.setenv("COLUMNS", "40")
    code, out, err = run(monkeypatch, capsys, "info", str(cls_export))
    assert code == 0, err
    for name in ("model.onnx", "model.int8.onnx"):
        assert f"│ {name} " in out, out
    from pvt_deploy.utils.files import sha256_file

    assert sha256_file(cls_export / "model.int8.onnx")[:16] in out
    code, out, err = run(monkeypatch, capsys, "models", "--task", "classify")
    assert code == 0, err
    assert "…" not in out
    for name in ("pvt_v2_b2_li-cls", "pvt_medium-cls", "top-1 75.1", "13.23M", "224x224"):
        assert name in out, name


def _usage_error(err: str) -> str:
    """Typer's error box as one line of words."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", err).split())


@pytest.mark.parametrize("argv, said", [
    # Ultralytics, MMDeploy, Polygraphy and trtexec names: Click's own guesses were "--help" for
    # --half, "--model" for --atol, and nothing for --fp16, --saveEngine or --onnxrt
    (["infer", "--half"], "No such option: --half. Did you mean --precision fp16?"),
    (["infer", "--score-thr", "0.3"], "No such option: --score-thr. Did you mean --conf?"),
    (["infer", "--project", "runs/x"], "No such option: --project. Did you mean --output?"),
    (["infer", "--source", "clip.mp4"],
     "No such option: --source. Did you mean pvt-deploy infer clip.mp4 (source is an argument, not an option)?"),
    # Ultralytics' data=coco8.yaml: a dataset YAML is export's --calib and check's --images, not infer's
    (["infer", "source=clip.mp4", "data=coco8.yaml"], "Did you mean: pvt-deploy infer clip.mp4 (left out: "
     "data=coco8.yaml: The class names come with the model; a dataset YAML gives export --calib and check "
     "--images their images; infer runs a split given as its folder: pvt-deploy infer DATASET/images/val)"),
    (["export", "data=coco8.yaml", "int8=True"], "Did you mean: pvt-deploy export --calib coco8.yaml --int8$"),
    (["check", "data=coco8.yaml"], "Did you mean: pvt-deploy check --images coco8.yaml$"),
    (["infer", "--images", "shots/"],  # check's and export's --images; click offered --imgsz
     "No such option: --images. Did you mean pvt-deploy infer shots/ (source is an argument, not an option)?"),
    (["export", "--fp16"], "No such option: --fp16. Did you mean --half?"),
    (["export", "--saveEngine", "m.engine"], "No such option: --saveEngine. Did you mean --format trt?"),
    (["export", "--minShapes", "images:1x3x320x320"], "No such option: --minShapes. Did you mean --min-shape?"),
    (["export", "--trt-opt-shapes", "images:[1,3,640,640]"], "No such option: --trt-opt-shapes. Did you mean --opt-shape?"),
    (["export", "--hardwareCompatibilityLevel=ampere+"],
     "No such option: --hardwareCompatibilityLevel. Did you mean --hardware-compatible?"),
    (["export", "--noTF32"], "No such option: --noTF32. TF32 is off unless asked for: an FP32 engine is built "
     "without it (--tf32 lets TensorRT use it)."),
    # Polygraphy's --atol is absolute, --tolerance a factor: written as --tolerance 1e-3 it made every
    # tolerance a thousand times stricter and failed a sound export
    (["check", "--atol", "1e-3"], "No such option: --atol. pvt-deploy check --tolerance scales the per-precision tolerances (0.5 = "
     "twice as strict, 2 = twice as loose); it takes no absolute or relative tolerance."),
    (["check", "model=exports/x", "atol=1e-3"], "Did you mean: pvt-deploy check --model exports/x (left out: "
     "atol=1e-3: pvt-deploy check --tolerance scales the per-precision tolerances"),
    (["check", "--onnxrt", "--trt"], "No such option: --onnxrt. Did you mean --backends onnx?"),
    (["bench", "--warmUp", "5"], "No such option: --warmUp. Did you mean --warmup?"),
    (["bench", "--shape", "224x224", "--num-iter", "100"], "No such option: --shape. Did you mean --imgsz?"),
    (["info", "--model", "exports/x"],
     "No such option: --model. Did you mean pvt-deploy info exports/x (artifact is an argument, not an option)?"),
    # polygraphy inspect model x.onnx --show layers (inspect: info), trtexec --dumpLayerInfo
    (["info", "x.onnx", "--show", "layers"], "No such option: --show. Did you mean --graph?"),
    (["info", "--dumpLayerInfo"], "No such option: --dumpLayerInfo. Did you mean --graph?"),
    # one command's option given to another
    (["bench", "--precision", "int8"], "No such option: --precision. A precision is picked with --backends"),
    (["check", "-o", "report.json"], "No such option: -o. The report goes to the terminal; --json prints it"),
    (["infer", "--json"], "No such option: --json. Did you mean --save-json?"),
    (["check", "--precision", "int8"],
     "No such option: --precision. A precision is picked with --backends: onnx, onnx-fp16, onnx-int8, trt.$"),
    (["predict", "clip.mp4"], "No such command 'predict'. Did you mean 'infer'?"),
    (["version"], "No such command 'version'. Did you mean '--version'?"),
    (["inspect", "model.onnx"], "No such command 'inspect'. Did you mean 'info'?"),
    (["run", "model.onnx"], "No such command 'run'. Did you mean 'check'?"),
    # key=value arguments: the command written with options
    (["export", "model=pvt_v2_b0", "format=engine", "half=True", "simplify=False", "imgsz=640", "device=0"],
     "Did you mean: pvt-deploy export --model pvt_v2_b0 --format engine --half --no-simplify --imgsz 640 "
     "(left out: device=0: The export traces on the CPU"),
    (["infer", "source=clip.mp4", "model=m", "conf=0.3", "classes=[0,2]", "half=True", "augment=True"],
     "pvt-deploy takes options, not key=value arguments. Did you mean: pvt-deploy infer clip.mp4 --model m "
     "--conf 0.3 --classes 0,2 --precision fp16 (left out: augment=True: no such option)"),
    # yolo predict's output options are infer's own (show_labels=False is --hide-labels)
    (["infer", "source=a.jpg", "save_txt=True", "save_conf=True", "save_crop=True", "show_labels=False",
      "show_conf=False", "line_width=2"],
     "Did you mean: pvt-deploy infer a.jpg --save-txt --save-conf --save-crop --hide-labels --hide-conf --line-width 2$"),
    (["bench", "model=exports/x", "iterations=5"], "Did you mean: pvt-deploy bench --model exports/x --iters 5"),
    # yolo's defaults written out: save_txt=False and show=False are --save-txt's and --show's defaults
    (["infer", "source=clip.mp4", "model=m", "save_txt=False", "show=False", "simplify=True"],
     "Did you mean: pvt-deploy infer clip.mp4 --model m (left out: simplify=True: no such option)$"),
    (["info", "model=exports/x"], "Did you mean: pvt-deploy info exports/x"),
    # None is the default (yolo's line_width=None, classes=None): left out, not --line-width None
    (["infer", "source=a.jpg", "line_width=None", "classes=None", "conf=0.3"],
     "Did you mean: pvt-deploy infer a.jpg --conf 0.3$"),
    # the model as an argument (polygraphy run model.onnx, which 'run' is answered with): Click said
    # "Got unexpected extra argument(s) (model.onnx)"
    (["check", "exports/x/model.onnx"],
     "Did you mean pvt-deploy check --model exports/x/model.onnx (the model is an option, not an argument)?"),
    (["bench", "--iters", "3", "exports/x"],
     "Did you mean pvt-deploy bench --iters 3 --model exports/x (the model is an option, not an argument)?"),
    (["export", "pvt_v2_b0", "--half"],
     "Did you mean pvt-deploy export --model pvt_v2_b0 --half (the model is an option, not an argument)?"),
    # after a '--' (the end of the options) the model too: the suggestion was 'check -- --model ...', which
    # Click then refused ("Got unexpected extra argument(s) (--model ...)")
    (["check", "--imgsz", "64", "--", "exports/x/model.onnx"],
     "Did you mean pvt-deploy check --imgsz 64 --model exports/x/model.onnx (the model is an option, not an argument)?"),
    # a value's spaces are its own (only a Python list's go): the path was shown as myclip.mp4
    (["infer", "source=my clip.mp4", "classes=[0, 2]"], "Did you mean: pvt-deploy infer 'my clip.mp4' --classes 0,2"),
    # a class name in a Python list keeps its space and loses its quotes: it was --classes '"trafficlight",0'
    (["infer", "source=a.jpg", 'classes=["traffic light", 0]'],
     "Did you mean: pvt-deploy infer a.jpg --classes 'traffic light,0'"),
])
def test_other_tools_spellings_are_answered_with_ours(
        argv: list[str], said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # nothing named like the arguments exists
    code, _, err = run(monkeypatch, capsys, *argv)
    assert code == 2 and "Traceback" not in err, err
    message = _usage_error(err)
    assert message.endswith(said[:-1]) if said.endswith("$") else said in message, err
    assert "Possible options" not in err  # Click's look-alike guesses are replaced, not added to


@pytest.mark.parametrize("command", [["export", "--model", "pvt_v2_b0-cls", "--calib"], ["check", "--images"]])
def test_an_unquoted_glob_for_one_path_option_says_to_quote_it(
        command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``export --calib imgs/*.jpg`` unquoted: the shell hands the option its first file and the command the
    rest, and Click said "Got unexpected extra arguments (imgs/b.jpg imgs/c.jpg)". It now says what
    happened and how to write it, before any work."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"")
    code, _, err = run(monkeypatch, capsys, *command, "imgs/a.jpg", "imgs/b.jpg", "imgs/c.jpg")
    assert code == 2 and "Traceback" not in err, err
    message = _usage_error(err)
    assert "unexpected extra" not in message
    assert (f"{command[-1]} takes one folder, image or glob, and the shell gave it 3 files (imgs/a.jpg ...): quote "
            f"the glob, which the shell expands (as in {command[-1]} 'imgs/*.jpg'), or give the folder") in message, err
    # other options keep Click's words: bench --model m.onnx a.jpg is no glob for --model
    code, _, err = run(monkeypatch, capsys, "bench", "--model", "imgs/a.jpg", "imgs/b.jpg", "imgs/c.jpg")
    assert code == 2 and "unexpected extra argument" in _usage_error(err) and "glob" not in err, err


def test_check_takes_a_file_of_an_export_as_its_folder(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """``polygraphy run model.onnx`` habits: ``check --model exports/x/model.onnx`` was "check needs an export
    folder" although the file is in one; it checks that folder, and says so."""
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export / "model.onnx"), "--json",
                         "--max-images", "2", "--backends", "torch,onnx")
    assert code == 0, err
    report = json.loads(out)
    assert report["artifact"] == str(cls_export) and report["passed"]
    assert [r["backend"] for r in report["results"]] == ["torch", "onnx"]
    # it said "checking every backend of the export that runs here" whatever --backends chose
    assert f"model.onnx is a file of the export {cls_export}: checking its torch,onnx" in " ".join(err.split())


def test_check_of_a_triton_model_says_what_check_takes(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], cls_export: Path,
                                                      tmp_path: Path) -> None:
    """``check --model tri/NAME`` (a Triton model folder) answered with infer's advice, 'its graph runs here as
    --model tri/NAME/1/model.onnx', and check given that file said 'check needs an export folder': each
    pointed at the other. Both now say that check compares an export folder's backends."""
    from pvt_deploy.export.triton import export_triton

    model_dir = export_triton(cls_export, tmp_path / "tri")
    for given in (model_dir, model_dir / "1" / "model.onnx"):
        code, _, err = run(monkeypatch, capsys, "check", "--model", str(given))
        message = " ".join(err.split())
        assert code == 2 and "Traceback" not in err, err
        assert f"{model_dir} is a Triton model folder: check compares the backends of an export folder" in message
        assert "runs here as" not in message and "needs an export folder" not in message


def test_check_ends_with_its_verdict(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                     cls_export: Path) -> None:
    """``polygraphy run`` ends with PASSED; a passing check ended with its table and skip notes, the
    verdict left to the exit code. Its last line says which backends agreed with which reference."""
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--max-images", "2",
                         "--backends", "torch,onnx")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "passed: onnx agrees with torch within tolerance", out


def test_check_that_compared_nothing_says_unchecked_not_passed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An argmax (or graph-NMS) export of random weights has no float output to compare and its agreement is
    not gated, so nothing about the ONNX graph was judged; the export's gate lists it "unchecked", but check
    tabled it "ok" and ended "passed: onnx agrees with torch within tolerance". Now the row and the JSON say
    unchecked, and the last line says that nothing was compared and how to compare it."""
    from rich.console import Console
    from test_runtime_artifacts import make_export

    from pvt_deploy.cli.check import render, verdict

    folder = make_export(tmp_path / "argmax", "pvt_v2_b0-seg", imgsz=(64, 64), extra=(), seg_output="argmax")
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--max-images", "1", "--json")
    report = json.loads(out)
    row = next(r for r in report["results"] if r["backend"] == "onnx")
    assert code == 0 and row["checked"] is False and report["checked"] is False, err
    console = Console(record=True, width=80)
    render(report, console)  # what the command prints without --json, then its last line
    onnx_row = next(ln for ln in console.export_text().splitlines() if "ort-cpu" in ln)
    assert "unchecked" in onnx_row and " ok " not in onnx_row, onnx_row
    assert verdict(report).startswith("unchecked: onnx") and "passed" not in verdict(report), verdict(report)


def test_check_compares_on_a_dataset_yaml(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          cls_export: Path, tmp_path: Path) -> None:
    """``check --images data.yaml`` (``data=coco8.yaml``, which check's spelling answers with --images) said
    "data.yaml is neither a readable image nor a video". It compares on the val split (train where there is
    none: test_cli_export.py); a YAML that names no split is one line and exit 2, and so is a glob of YAML
    files, which was taken for one YAML file ("no such file: ds/*.yaml"), as export takes them."""
    data = dataset(tmp_path / "ds")  # val 2, train 3
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--images", str(data),
                         "--json", "--backends", "torch,onnx")
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 2 and report["passed"]  # val's 2, not train's 3
    pattern = str(tmp_path / "ds" / "*.yaml")
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--images", pattern)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and lines == [f"error: {pattern} matches a YAML file ({data}): a glob is read as images; name "
                                   "one dataset YAML on its own"], err
    data.write_text("names: [person]\n")
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--images", str(data))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {data} is not a dataset YAML: no val or train image split (its keys: names)")


def test_check_keeps_a_stream_url_as_typed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           cls_export: Path) -> None:
    """``check --images rtsp://host/...`` (README: check compares on a stream's first frames) was read as a path,
    which folds ``//`` into ``/``: "bad stream URL rtsp:/127.0.0.1:1/live: no host". The URL now reaches the
    stream reader as typed; nothing listens on port 1, so it is the connection that fails, in one line."""
    url = "rtsp://127.0.0.1:1/live"
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--images", url)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert url in lines[0] and "no host" not in lines[0], lines[0]


def test_check_compares_a_detectors_boxes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """An export whose graph returned every box x1.5 passed check ("ok", "passed", exit 0): only a
    detector's sorted best-class scores were compared, and on random weights detections are not gated.
    Boxes are compared now (each candidate clear of its level's top-k cut against the nearest in the
    other run), so it fails with exit 5 and says so; the export it was made from passes."""
    import numpy as np
    import onnx

    from pvt_deploy.manifest import file_entry

    folder = tmp_path / "det"
    shutil.copytree(cached_export(tmp_path_factory, "det"), folder)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--backends", "torch,onnx",
                         "--max-images", "1", "--json")
    onnx_row = next(r for r in json.loads(out)["results"] if r["backend"] == "onnx")
    assert code == 0 and onnx_row["passed"] and onnx_row["outputs"]["boxes"]["elements"] > 0, err
    assert onnx_row["outputs"]["boxes"]["max_abs"] < 1e-2, onnx_row["outputs"]["boxes"]
    model = onnx.load(str(folder / "model.onnx"))
    producer = next(n for n in model.graph.node if "boxes" in n.output)
    producer.output[list(producer.output).index("boxes")] = "boxes_unscaled"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.5, np.float32), "one_and_a_half"))
    model.graph.node.append(onnx.helper.make_node("Mul", ["boxes_unscaled", "one_and_a_half"], ["boxes"]))
    onnx.save(model, str(folder / "model.onnx"))
    manifest = read_manifest(folder)
    manifest["files"]["model.onnx"] = file_entry(folder / "model.onnx", "fp32")
    write_manifest(folder, manifest)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--backends", "torch,onnx",
                         "--max-images", "1")
    assert code == 5 and "FAIL" in out and "Traceback" not in err, (out, err)
    assert "error: onnx disagrees with torch beyond tolerance (onnx: boxes: mean_rel" in " ".join(err.split()), err


@pytest.mark.skipif(torch_cuda(), reason="PyTorch has CUDA here: torch-fp16 runs")
def test_torch_fp16_on_a_cpu_says_how_to_ask_for_fp32_in_each_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path,
        tmp_path: Path) -> None:
    """``bench --backends torch-fp16`` on a CPU was skipped with "(use --precision fp32 on CPU)": bench has no
    --precision (its precision is the --backends label). Each command now names its own way."""
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "torch-fp16",
                         "--iters", "1")
    said = " ".join((out + err).split())
    assert code != 0 and "(use --backends torch on a CPU)" in said and "--precision" not in said, said
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    code, out, err = run(monkeypatch, capsys, "infer", str(tmp_path / "a.png"), "--model", str(cls_export), "--backend",
                         "torch", "--precision", "fp16", "--device", "cpu")
    assert code != 0 and "(use --precision fp32 on a CPU)" in " ".join(err.split()), err


def test_bench_says_its_fps_is_of_the_mean_as_the_json_holds_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """The table's FPS (batch / mean ms, --json's throughput_fps) stood beside p50 with nothing saying which:
    read as 1000 / p50 it disagreed with the p50 column. The footer says it is of the mean, and the cell
    is --json's figure."""
    from rich.console import Console

    from pvt_deploy.cli.bench import render

    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                         "--warmup", "0", "--iters", "3", "--batch", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    row = report["results"][0]
    assert row["throughput_fps"] == pytest.approx(2000 / row["latency_ms"]["mean"], rel=1e-3)
    console = Console(record=True, width=80)
    render(report, console)
    text = console.export_text()
    cells = next(ln for ln in text.splitlines() if ln.lstrip().startswith("onnx")).split()
    assert f"{row['throughput_fps']:.1f}" in cells, text
    assert "FPS = batch x 1000 / mean ms (throughput_fps in --json)" in " ".join(text.split()), text


def test_check_compares_an_int8_export_of_the_tensorrt_flavour_alone(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    """``export --int8 --int8-flavour trt`` writes model.int8.trt.onnx only. ``check`` then skipped INT8
    ("onnx-int8: no model.int8.onnx in the folder (pvt-deploy export ... --int8)", a flag the export had),
    and ``check --backends torch,onnx-int8`` ended "only torch can run this artifact", though ONNX
    Runtime's CPU provider runs TensorRT's symmetric Q/DQ (the export's parity gate ran it). The onnx-int8
    row now runs the flavour the folder has, judged at the INT8 tolerance, and info says where it runs."""
    import numpy as np

    from pvt_deploy.export.calibration import Batch
    from pvt_deploy.export.precision import prepare_for_quantization, quantize_int8
    from pvt_deploy.manifest import file_entry

    folder = tmp_path / "trt-int8"
    shutil.copytree(cls_export, folder, ignore=shutil.ignore_patterns("model.int8.onnx", ".ort-cache"))
    prepared = tmp_path / "prepared.onnx"
    prepare_for_quantization(folder / "model.onnx", prepared)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 3, 128, 128)).astype(np.float32)
    model8, _ = quantize_int8(prepared, tmp_path / "scratch.onnx", flavour="trt",
                              batches=[Batch(images=pixels, metas=[], names=["a"])], source=folder / "model.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model8.graph.node}
    import onnx

    onnx.save_model(model8, str(folder / "model.int8.trt.onnx"))
    manifest = read_manifest(folder)
    files = {k: v for k, v in manifest["files"].items() if k != "model.int8.onnx"}
    files["model.int8.trt.onnx"] = file_entry(folder / "model.int8.trt.onnx", "int8")
    write_manifest(folder, {**manifest, "files": files})

    code, out, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--backends", "torch,onnx-int8", "--json")
    assert code == 0, out + err
    rows = {r["backend"]: r for r in json.loads(out)["results"]}
    assert rows["onnx-int8"]["status"] == "ok" and rows["onnx-int8"]["precision"] == "int8", rows["onnx-int8"]
    assert rows["onnx-int8"]["passed"] is True and rows["onnx-int8"]["checked"] is True
    assert rows["onnx-int8"]["tolerance"]["min_cosine"] == 0.98 and rows["onnx-int8"]["outputs"]["logits"]["cosine"] > 0.98
    code, out, err = run(monkeypatch, capsys, "info", str(folder))
    said = " ".join(out.split())
    assert code == 0 and "on ONNX Runtime's CPU provider (the export has no model.int8.onnx)" in said.replace("│ ", ""), out


def _trusted_export(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    tmp_path: Path) -> tuple[Path, Path, str]:
    """(checkpoint, export folder, export's stderr): a checkpoint that needs full unpickling (an mmengine
    training file, here one holding a Path beside its weights), exported with --trust-checkpoint."""
    import torch

    from pvt_deploy.models import create_model

    ckpt = tmp_path / "trained.pth"
    torch.save({"model": create_model("pvt_v2_b0-cls", seed=7).state_dict(), "args": Path("/train/run1")}, ckpt)
    folder = tmp_path / "cls"
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(ckpt), "--trust-checkpoint", "--imgsz", "64",
                       "--max-size", "128", "--no-parity", "--no-simplify", "-o", str(folder))
    assert code == 0, err
    return ckpt, folder, err


def test_check_bench_and_info_take_trust_checkpoint_as_export_and_infer_do(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A checkpoint that needs full unpickling (an mmengine training file, here one holding a Path beside its
    weights) exports with --trust-checkpoint, and the export's next: line says check and bench it; but check
    and bench, which rebuild it in PyTorch, and info of the checkpoint refused it with 'pass
    --trust-checkpoint (export, infer)' and had no such option (Click: 'No such option'). Now each takes it,
    and the next: line gives it to check and bench."""
    import shlex

    ckpt, folder, err = _trusted_export(monkeypatch, capsys, tmp_path)
    steps = next(line for line in err.splitlines() if line.startswith("next: "))[len("next: "):].split(" · ")
    check_command = next(shlex.split(s)[1:] for s in steps if s.startswith("pvt-deploy check "))
    assert check_command == ["check", "--model", str(folder), "--trust-checkpoint"], steps
    assert steps[2] == f"pvt-deploy bench --model {folder} --trust-checkpoint" and "--trust" not in steps[0]
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(folder), "--max-images", "2")
    assert code == 2 and "refusing to unpickle" in err and "pass --trust-checkpoint (trust=True in Python)" in err
    code, out, err = run(monkeypatch, capsys, *check_command, "--max-images", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["reference"] == "torch" and report["passed"] and report["checked"]
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(ckpt), "--trust-checkpoint", "--imgsz", "64",
                         "--warmup", "0", "--iters", "1", "--json")
    assert code == 0, err
    assert [(r["backend"], r["status"]) for r in json.loads(out)["results"]] == [("torch", "ok")]
    code, out, err = run(monkeypatch, capsys, "info", str(ckpt), "--trust-checkpoint", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["kind"] == "PyTorch checkpoint" and facts["model"] == "pvt_v2_b0-cls", err


def test_an_export_extended_without_trust_checkpoint_still_says_check_and_bench_need_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    """An export made with --trust-checkpoint, extended later by an export into its folder (which reuses its
    graph and loads no checkpoint, so is given no flag): its next: line left --trust-checkpoint off check
    and bench, which then refused the checkpoint they rebuild the export from; and the command that
    exports the folder again (said where there is nothing to add) left it off export. The manifest records
    that the export was loaded so (weights.trust_checkpoint), and each command, run as written, works."""
    import shlex

    ckpt, folder, err = _trusted_export(monkeypatch, capsys, tmp_path)
    assert read_manifest(folder)["weights"]["trust_checkpoint"] is True
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--half", "--no-parity")
    assert code == 0 and "model.fp16.onnx" in read_manifest(folder)["files"], err
    steps = next(line for line in err.splitlines() if line.startswith("next: "))[len("next: "):].split(" · ")
    assert steps[1:] == [f"pvt-deploy check --model {folder} --trust-checkpoint",
                         f"pvt-deploy bench --model {folder} --trust-checkpoint"], steps
    code, out, err = run(monkeypatch, capsys, *shlex.split(steps[1])[1:], "--max-images", "2", "--json")
    assert code == 0 and json.loads(out)["reference"] == "torch", err
    again = reexport_command(monkeypatch, capsys, caplog, folder)
    assert again[:6] == ["pvt-deploy", "export", "--model", "pvt_v2_b0-cls", "--weights", str(ckpt)], again
    assert "--trust-checkpoint" in again, again
    code, _, err = run(monkeypatch, capsys, *again[1:], "--no-parity")
    assert code == 0 and read_manifest(folder)["weights"]["trust_checkpoint"] is True, err


def test_a_safetensors_checkpoint_exported_with_trust_checkpoint_passes_no_flag_on(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--trust-checkpoint given with a safetensors file (tensors only: nothing to unpickle, never needs it) was
    recorded in the manifest all the same, and every next: line and re-export command after asked for the
    flag. Only a file that may need it is recorded so; the next: line of this one has no flag."""
    from safetensors.torch import save_file

    from pvt_deploy.models import create_model

    ckpt = tmp_path / "trained.safetensors"
    save_file(create_model("pvt_v2_b0-cls", seed=7).state_dict(), str(ckpt))
    folder = tmp_path / "cls"
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(ckpt), "--trust-checkpoint", "--imgsz", "64",
                       "--max-size", "128", "--no-parity", "--no-simplify", "-o", str(folder))
    assert code == 0, err
    weights = read_manifest(folder)["weights"]
    assert weights["source"] == str(ckpt.resolve()) and "trust_checkpoint" not in weights, weights
    steps = next(line for line in err.splitlines() if line.startswith("next: "))
    assert "--trust-checkpoint" not in steps and f"pvt-deploy check --model {folder}" in steps, steps


def test_a_missing_engine_is_said_as_bench_says_it(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """check and info said a missing engine their own way ('export with --format trt on a GPU machine') where
    bench, and the rows of the other missing files, give the command that makes it."""
    from pvt_deploy.runtimes.loader import backend_candidates

    trt = next(c for c in backend_candidates(cls_export) if c.label == "trt")
    command = f"pvt-deploy export --model {cls_export} --format trt"
    assert not trt.available and trt.reason.startswith(f"no model.engine in the folder ({command}"), trt.reason
    code, _, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "trt")
    assert code == 2 and command in " ".join(err.split()), err
