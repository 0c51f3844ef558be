"""Paths of the inspection commands (``bench``, ``check``, ``info``, ``doctor``, ``models``), the zoo's
name handling and the Triton repository export that no other test ran, driven as a user would: through
the ``pvt-deploy`` entry point or the public API, asserting exit codes, messages, figures and files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from test_runtime_artifacts import cached_export


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


# --------------------------------------------------------------------------------------------------
# zoo names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "meant"), [
    ("pvt_v2_b0_cls", "pvt_v2_b0-cls"),  # '_' for '-': was "did you mean 'pvt_v2_b0'?", the detector
    ("pvt_small-classify", "pvt_small-cls"),
    ("pvt_tiny-feature", "pvt_tiny-features"),
    ("pvt_v2_b0-Seg", "pvt_v2_b0-seg"),
    ("pvt_v2_b0-segment", "pvt_v2_b0-seg"),
    ("pvt_smal-seg", "pvt_small-seg"),
    ("pvt_v2_bO-cls", "pvt_v2_b0-cls"),
    ("pvt-small", "pvt_small"),
    ("PVT_V2_B2LI", "pvt_v2_b2_li"),
])
def test_a_mistyped_zoo_name_suggests_the_model_of_the_same_task(typed: str, meant: str) -> None:
    from pvt_deploy.errors import ModelNotFoundError
    from pvt_deploy.models.zoo import resolve_name

    with pytest.raises(ModelNotFoundError) as exc:
        resolve_name(typed)
    assert f"did you mean {meant!r}?" in str(exc.value)
    assert resolve_name(meant).name == meant  # the suggestion is a real name


def test_a_mistyped_task_suffix_on_the_command_line_names_the_classifier(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "bench", "--model", "pvt_v2_b0_cls", "--backends", "torch")
    assert code == 2 and out == ""
    assert last_line(err).startswith("error: unknown model 'pvt_v2_b0_cls'; did you mean 'pvt_v2_b0-cls'? ")
    code, _, err = run(monkeypatch, capsys, "info", "resnet50")
    assert code == 2 and "did you mean" not in err and "known backbones: pvt_tiny, " in err


# --------------------------------------------------------------------------------------------------
# export --format triton
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def triton_source(cls_export: Path, tmp_path: Path) -> Path:
    """A copy of the session's classifier export (export --format triton reuses its model.onnx in place)."""
    import shutil

    folder = tmp_path / "cls"
    shutil.copytree(cls_export, folder)
    return folder


@pytest.mark.parametrize("blocked", ["repo", "repo/pvt_v2_b0-cls"])
def test_a_file_where_the_triton_model_folder_goes_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], triton_source: Path, tmp_path: Path,
        blocked: str) -> None:
    """A file named like the repository or like the model in it: was a NotADirectoryError traceback."""
    repo = tmp_path / "repo"
    (tmp_path / blocked).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / blocked).write_text("mine")
    graph = (triton_source / "model.onnx").read_bytes()
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(triton_source), "--format", "triton",
                       "--triton-repo", str(repo), "--no-parity")
    assert code == 2 and "Traceback" not in err
    what = (f"a Triton model repository at {repo}" if blocked == "repo" else  # found before the export
            f"the Triton model pvt_v2_b0-cls to {repo / 'pvt_v2_b0-cls' / '1'}")
    assert last_line(err) == (f"error: {tmp_path / blocked} is a file, not a folder: cannot write {what} (move the "
                              "file, or choose another --triton-repo)")
    assert (tmp_path / blocked).read_text() == "mine"  # the user's file is untouched
    assert (triton_source / "model.onnx").read_bytes() == graph
    if blocked != "repo":
        assert [p.name for p in repo.iterdir()] == ["pvt_v2_b0-cls"]  # nothing else written in the repository


@pytest.mark.parametrize(("option", "message"), [
    (["--instances", "0"], "error: Triton instances (--instances) 0: must be >= 1"),
    (["--max-batch", "-1"], "error: Triton max_batch (--max-batch) -1: must be >= 0; 0 turns Triton's batching off"),
])
def test_a_triton_setting_out_of_range_names_its_flag(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], triton_source: Path, tmp_path: Path,
        option: list[str], message: str) -> None:
    """Was "max_batch must be >= 0, instances >= 1, max_queue_delay_us >= 0, version >= 1" for either."""
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(triton_source), "--format", "triton",
                       "--triton-repo", str(tmp_path / "repo"), "--no-parity", *option)
    assert code == 2 and last_line(err) == message
    assert not (tmp_path / "repo").exists()


def test_python_only_triton_settings_out_of_range(triton_source: Path, tmp_path: Path) -> None:
    from pvt_deploy.errors import InputError
    from pvt_deploy.export.triton import export_triton

    with pytest.raises(InputError, match=r"^Triton max_queue_delay_us -5: must be >= 0$"):
        export_triton(triton_source, tmp_path / "repo", max_queue_delay_us=-5)
    with pytest.raises(InputError, match=r"^Triton version 0: must be >= 1$"):
        export_triton(triton_source, tmp_path / "repo", version=0)
    assert not (tmp_path / "repo").exists()


# --------------------------------------------------------------------------------------------------
# doctor
# --------------------------------------------------------------------------------------------------


def doctor_rows(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """``pvt-deploy doctor --no-encoders`` at 200 columns: {component: its table row}."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(monkeypatch, capsys, "doctor", "--no-encoders")
    assert code == 0, err
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1]:
            rows[cells[1]] = line
    return rows


def test_doctor_labels_a_cpu_int8_warning_as_a_warning_not_as_optional(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A CPU whose 8-bit GEMMs are no faster (a Zen 1 EPYC) read "CPU INT8 │ optional │"."""
    import pvt_deploy.utils.cpu as cpu

    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(cpu, "int8_gemm_gain", lambda: 1.05)
    monkeypatch.setitem(sys.modules, "tritonclient", None)  # an optional package that is missing
    rows = doctor_rows(monkeypatch, capsys)
    cells = [c.strip() for c in rows["CPU INT8"].split("│")]
    assert cells[2] == "warn" and cells[4].startswith("no VNNI: model.int8.onnx runs exact"), cells
    assert "8-bit GEMMs 1.1x FP32's rate here" in rows["CPU INT8"]
    cells = [c.strip() for c in rows["tritonclient"].split("│")]
    assert cells[2] == "optional" and cells[4] == "not installed (for the Triton backend (optional))", cells
    from pvt_deploy.doctor import _packages

    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "tritonclient" else object())
    (row,) = [c for c in _packages() if c.key == "tritonclient"]
    assert row.hint == "pip install 'tritonclient[http,grpc]'"  # quoted: zsh reads [http,grpc] as a glob


def test_doctor_with_libraries_missing_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("torch", "onnxruntime", "av", "cv2", "onnxslim"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    code, out, err = run(monkeypatch, capsys, "doctor", "--json", "--no-encoders")
    assert (code, err) == (1, "error: pvt-deploy needs, and this install lacks or cannot use: PyTorch missing, "
                              "ONNX Runtime missing, PyAV missing, OpenCV missing, onnxslim missing\n")
    rows = json.loads(out)["components"]
    want = {"torch": "pip install torch (CPU: pip install torch --index-url https://download.pytorch.org/whl/cpu)",
            "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu on an NVIDIA machine)",
            "av": "pip install av", "opencv": "pip install opencv-python-headless", "onnxslim": "pip install onnxslim"}
    for key, hint in want.items():
        assert rows[key]["status"] == "missing" and rows[key]["hint"] == hint and rows[key]["version"] is None, key
    assert rows["cuda"] == {**rows["cuda"], "status": "missing", "summary": "needs PyTorch"}
    assert "cpu_int8" not in rows  # measured with ONNX Runtime, which is missing
    assert rows["onnx"]["status"] == "ok" and rows["python"]["status"] == "ok"


def test_info_on_a_triton_model_folder_checks_the_served_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], triton_source: Path,
        tmp_path: Path) -> None:
    """The manifest beside config.pbtxt listed the export folder's model.onnx and model.int8.onnx, which
    are not in a Triton model folder: `info` showed both "missing". It now lists the served file."""
    from pvt_deploy.export.triton import export_triton
    from pvt_deploy.utils.files import sha256_file

    repo = tmp_path / "repo"
    code, out, err = run(monkeypatch, capsys, "export", "--model", str(triton_source), "--format", "triton",
                         "--triton-repo", str(repo), "--no-parity")
    assert code == 0, err
    model_dir = repo / "pvt_v2_b0-cls"
    code, out, err = run(monkeypatch, capsys, "info", str(model_dir), "--json")
    assert code == 0, err
    facts = json.loads(out)
    files = facts["files"]
    assert [(f["name"], f["precision"], f["check"]) for f in files] == [("1/model.onnx", "fp32", "ok")]
    assert files[0]["sha256"] == sha256_file(triton_source / "model.onnx")
    # what runs it: Triton, or its graph here; it was called an export folder lacking model.onnx, with
    # "pvt-deploy export --model <triton folder> --half" as the fix
    served = (f"serve it (tritonserver --model-repository {repo}) and run --model triton://HOST:8000/pvt_v2_b0-cls; "
              f"its graph runs here as --model {model_dir / '1' / 'model.onnx'}")
    assert facts["kind"] == "Triton model folder"
    assert [(b["label"], b["available"], b["reason"]) for b in facts["backends"]] == [("triton", False, served)]
    for command in (("infer", "--model", str(model_dir), "--no-save"),
                    ("bench", "--model", str(model_dir), "--backends", "onnx")):
        code, out, err = run(monkeypatch, capsys, *command)
        line = last_line(err)  # bench prefixes the backend it tried
        assert code == 2 and line.startswith("error: ") and line.endswith(f"{model_dir} is a Triton model folder: "
                                                                           f"{served}"), (command, line)
    # the repository itself, where one of its models was meant: named, not "no manifest.json"
    for command in (("info", str(repo)), ("infer", "--model", str(repo), "--no-save"),
                    ("bench", "--model", str(repo), "--backends", "onnx")):
        code, out, err = run(monkeypatch, capsys, *command)
        assert code == 2 and f"{repo} is a Triton model repository (models: pvt_v2_b0-cls), not one model" \
            in last_line(err), (command, last_line(err))
    # check compares an export folder's backends: it points at the export the model was made from (712f29a)
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(model_dir))
    line = last_line(err)
    assert code == 2 and line.startswith(f"error: {model_dir} is a Triton model folder: check compares"), line
    assert "pvt-deploy bench --model triton://HOST:8000/pvt_v2_b0-cls" in line

    # the repository already holds the model: serving another precision replaces it, and says so
    export_triton(triton_source, repo, source="model.int8.onnx")
    assert (model_dir / "1" / "model.onnx").read_bytes() == (triton_source / "model.int8.onnx").read_bytes()
    beside = json.loads((model_dir / "manifest.json").read_text())
    assert beside["files"] == {"1/model.onnx": json.loads((triton_source / "manifest.json").read_text())["files"][
        "model.int8.onnx"]}
    assert beside["triton"]["precision"] == "int8" and beside["triton"]["source"] == "model.int8.onnx"
    assert sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")) == [
        "1", "1/model.onnx", "config.pbtxt", "manifest.json"]  # no temporary file left


# --------------------------------------------------------------------------------------------------
# bench / check
# --------------------------------------------------------------------------------------------------


def test_a_backend_crashing_mid_bench_is_a_failed_row_and_the_others_are_measured(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    from pvt_deploy.tasks.pipeline import Predictor

    real_infer = Predictor.infer
    calls = {"n": 0}

    def infer(self: Any, feed: Any) -> Any:
        if self.backend.info.name.lower().startswith("onnx"):
            calls["n"] += 1
            if calls["n"] == 2:  # after the warm-up run: a crash in the timed loop
                raise RuntimeError("device lost\n  at op 12")
        return real_infer(self, feed)

    monkeypatch.setattr(Predictor, "infer", infer)
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "torch,onnx",
                         "--warmup", "1", "--iters", "2", "--json")
    assert code == 0, err
    rows = {r["backend"]: r for r in json.loads(out)["results"]}
    assert rows["onnx"] == {"backend": "onnx", "status": "failed", "reason": "RuntimeError: device lost at op 12",
                            "load_s": rows["onnx"]["load_s"], "vs_torch": None}
    assert rows["torch"]["status"] == "ok" and rows["torch"]["vs_torch"] == 1.0
    assert rows["torch"]["latency_ms"]["min"] <= rows["torch"]["latency_ms"]["p50"] <= rows["torch"]["latency_ms"]["max"]
    monkeypatch.setenv("COLUMNS", "80")
    calls["n"] = 0
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx",
                         "--warmup", "1", "--iters", "2")
    assert code == 1 and "Traceback" not in err  # it crashed: not "unavailable here" (3)
    assert "onnx: failed: RuntimeError: device lost at op 12" in out
    assert last_line(err) == "error: no backend could be benchmarked here: onnx: RuntimeError: device lost at op 12"


def test_bench_library_checks_its_numbers_and_takes_an_int_size(cls_export: Path) -> None:
    from pvt_deploy.bench import benchmark, parse_backends
    from pvt_deploy.errors import InputError

    with pytest.raises(InputError, match=r"^batch and iters must be >= 1 and warmup >= 0$"):
        benchmark(cls_export, backends="onnx", iters=0)
    with pytest.raises(InputError, match=r"^unknown backend 'tflite'; choose from torch, torch-fp16, onnx, "):
        parse_backends(["onnx", "TFLite"])
    assert parse_backends(["ORT", "pytorch", "onnx", "TensorRT"]) == ["onnx", "torch", "trt"]
    # every name the loader knows a backend by (Polygraphy's onnxrt, Ultralytics' engine), with a precision too
    assert parse_backends("onnxrt,ort-int8,engine,pt-fp16") == ["onnx", "onnx-int8", "trt", "torch-fp16"]
    report = benchmark(cls_export, backends="onnx", imgsz=96, warmup=0, iters=1)
    assert report["imgsz"] == [96, 96] and report["input_shape"] == [1, 3, 96, 96]
    assert report["results"][0]["status"] == "ok" and report["results"][0]["vs_torch"] is None


def test_check_on_unreadable_images_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                cls_export: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a picture")
    (bad / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--images", str(bad))
    assert code == 2 and out == "" and last_line(err) == f"error: no readable images in {bad}"
    assert sorted(p.name for p in bad.iterdir()) == ["a.jpg", "b.png"]
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--tolerance", "0")
    assert code == 2 and last_line(err) == "error: --tolerance: parity tolerance factor must be positive, not 0.0"


def test_check_of_a_detector_on_a_video_compares_its_frames(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A folder of another task (detection), compared on the first frames of the bundled clip."""
    from pvt_deploy.assets import sample_video

    det = cached_export(tmp_path_factory, "det")
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(det), "--images", str(sample_video()),
                         "--max-images", "2", "--backends", "torch,onnx", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["task"] == "detect" and report["images"] == 2 and report["reference"] == "torch"
    from rich.console import Console

    from pvt_deploy.cli.check import render

    console = Console(record=True, width=300)
    render(report, console)  # the table's title counts a video's frames as frames (it said "2 images")
    assert report["source_kind"] == "video" and f"{det}: 2 frames vs torch" in console.export_text()
    onnx = next(r for r in report["results"] if r["backend"] == "onnx")
    assert onnx["passed"] and onnx["task"]["metric"] == "detection_f1" and onnx["outputs"]["scores"]["cosine"] > 0.999


def test_check_and_bench_agree_on_a_variant_the_export_lacks(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str],
                                                             cls_export: Path) -> None:
    """``--backends onnx-fp16`` on an export without model.fp16.onnx is the input's fault (2), with the
    command that adds it, in check as in bench; check exited 3, "not available here"."""
    assert not (cls_export / "model.fp16.onnx").exists()
    code, _, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "onnx-fp16",
                       "--warmup", "0", "--iters", "1")
    assert code == 2 and "model.fp16.onnx" in last_line(err)
    code, _, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--backends", "onnx,onnx-fp16")
    line = last_line(err)
    assert code == 2 and "onnx-fp16: no model.fp16.onnx in the folder" in line and "--half" in line, line
