"""The loader picks the runtime from the artifact and honours backend/precision/device."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_runtime_artifacts import cached_export

from pvt_deploy.errors import (
    BackendUnavailableError,
    InputError,
    ModelNotFoundError,
    PvtDeployError,
    ShapeError,
)
from pvt_deploy.manifest import read_manifest, write_manifest
from pvt_deploy.runtimes import loader
from pvt_deploy.runtimes.loader import backend_candidates, describe_artifact, load_backend, resolve_model
from pvt_deploy.utils import onnx_model


@pytest.fixture(scope="module")
def det_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "det")


@pytest.fixture()
def det_copy(det_export: Path, tmp_path: Path) -> Path:
    """A private copy of the export to damage or extend."""
    target = tmp_path / "pvt_v2_b0"
    shutil.copytree(det_export, target)
    return target


def _loaded(*args: Any, **kwargs: Any) -> tuple[str, str, str | None, dict[str, Any]]:
    backend, manifest = load_backend(*args, **kwargs)
    with backend:
        return backend.info.name, backend.info.precision, backend.info.details.get("file"), manifest


def test_folder_runs_fp32_onnx_by_default(det_export: Path) -> None:
    name, precision, file, manifest = _loaded(det_export)
    assert (name, precision, Path(str(file)).name) == ("onnxruntime", "fp32", "model.onnx")
    assert manifest["task"] == "detect" and "files" in manifest


@pytest.mark.parametrize(("precision", "filename"), [("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx")])
def test_precision_picks_the_file(det_export: Path, precision: str, filename: str) -> None:
    name, got, file, _ = _loaded(det_export, precision=precision)
    assert (name, got, Path(str(file)).name) == ("onnxruntime", precision, filename)


def test_backend_torch_rebuilds_the_export_weights(det_export: Path) -> None:
    name, precision, _, manifest = _loaded(det_export, backend="torch")
    assert (name, precision) == ("torch", "fp32")
    assert manifest["weights"]["random_init"] is False
    assert manifest["weights"]["source"].endswith("weights.pth")


def test_torch_refuses_an_export_without_weights(det_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    """bench (``random_weights_ok``) times the architecture with random weights instead, and says why: it
    warned "no weights given", as if the export had been made without any."""
    manifest = read_manifest(det_copy)
    manifest["weights"]["source"] = "/nowhere/weights.pth"
    write_manifest(det_copy, manifest)
    (det_copy / "weights.pth").unlink()
    with pytest.raises(InputError, match="cannot rebuild the PyTorch model"):
        load_backend(det_copy, backend="torch")
    with caplog.at_level("WARNING"):
        name, *_ = _loaded(det_copy, backend="torch", random_weights_ok=True)  # what bench uses
    assert name == "torch"
    warning = next(r.getMessage() for r in caplog.records if "RANDOMLY INITIALISED" in r.getMessage())
    assert (f"{det_copy}: the export's weights /nowhere/weights.pth are not on this machine; bench times the "
            "architecture without them") in warning, warning


def test_engine_is_skipped_where_tensorrt_cannot_run(det_copy: Path) -> None:
    if loader.tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT runs here")
    (det_copy / "model.engine").write_bytes(b"not a plan")
    name, *_ = _loaded(det_copy)
    assert name == "onnxruntime"
    with pytest.raises(BackendUnavailableError):
        load_backend(det_copy, backend="trt")
    with pytest.raises(InputError, match="GPU"):
        load_backend(det_copy / "model.engine", device="cpu")


def test_missing_files_and_wrong_backends_are_one_line_errors(det_copy: Path) -> None:
    with pytest.raises(InputError, match=r"no model\.engine"):
        load_backend(det_copy, backend="trt")
    (det_copy / "model.fp16.onnx").unlink()
    with pytest.raises(InputError, match=r"model\.fp16\.onnx"):
        load_backend(det_copy, precision="fp16")
    with pytest.raises(InputError, match="unknown backend"):
        load_backend(det_copy, backend="tflite")
    with pytest.raises(InputError, match="unknown precision"):
        load_backend(det_copy, precision="fp8")
    with pytest.raises(InputError, match="needs a triton:"):
        load_backend(det_copy, backend="triton")


def test_changed_file_fails_the_sha256_check(det_copy: Path) -> None:
    with open(det_copy / "model.onnx", "r+b") as f:
        f.truncate(os.path.getsize(det_copy / "model.onnx") // 2)
    with pytest.raises(InputError, match="sha256"):
        load_backend(det_copy)


def test_lone_onnx_reads_its_metadata(det_export: Path, tmp_path: Path) -> None:
    lone = tmp_path / "elsewhere" / "detector.onnx"
    lone.parent.mkdir()
    shutil.copyfile(det_export / "model.onnx", lone)
    name, precision, _, manifest = _loaded(lone)
    assert (name, precision) == ("onnxruntime", "fp32")
    assert manifest["task"] == "detect" and len(manifest["classes"]) == 80
    assert manifest["preprocess"] == read_manifest(det_export)["preprocess"]
    with pytest.raises(InputError, match="ONNX file"):
        load_backend(lone, backend="torch")


def test_onnx_without_metadata_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])])
    path = tmp_path / "foreign.onnx"
    onnx.save(onnx_model(graph), str(path))
    with pytest.raises(InputError, match="no pvt-deploy metadata"):
        load_backend(path)
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01garbage")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        load_backend(tmp_path / "garbage.onnx")


def test_checkpoint_runs_with_pytorch(det_export: Path) -> None:
    name, _, _, manifest = _loaded(det_export / "weights.pth")
    assert name == "torch" and manifest["task"] == "detect" and manifest["weights"]["random_init"] is False


def test_names_and_paths_that_do_not_exist() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        load_backend("pvt_huge")
    with pytest.raises(ModelNotFoundError, match="no such file"):
        load_backend("exports/nothing_here")
    with pytest.raises(ModelNotFoundError, match="export it first"):
        load_backend("pvt_v2_b0", backend="onnx")


def test_imgsz_outside_the_dynamic_range(det_export: Path) -> None:
    with pytest.raises(ShapeError, match="outside the graph's dynamic range"):
        load_backend(det_export, imgsz=640)


def test_zoo_name_resolves_to_its_export_folder(det_export: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model("pvt_v2_b0") == "pvt_v2_b0"
    shutil.copytree(det_export, tmp_path / "exports" / "pvt_v2_b0")
    assert resolve_model("pvt_v2_b0") == str(Path("exports") / "pvt_v2_b0")
    assert resolve_model(None) == "pvt_small"  # no exports/pvt_small here
    name, *_ = _loaded("pvt_v2_b0")
    assert name == "onnxruntime"
    name, *_ = _loaded("pvt_v2_b0", backend="torch", imgsz=64)  # an explicit torch skips the folder
    assert name == "torch"


def test_triton_urls_are_delegated(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvt_deploy.runtimes import triton

    seen = {}

    def fake(url: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        seen["url"] = url
        raise BackendUnavailableError("no server here")

    monkeypatch.setattr(triton, "load_triton", fake)
    with pytest.raises(PvtDeployError, match="no server"):
        load_backend("triton://localhost:8000/pvt_small")
    assert seen["url"] == "triton://localhost:8000/pvt_small"


def test_candidates_and_description(det_export: Path) -> None:
    rows = {c.label: c for c in backend_candidates(det_export)}
    assert rows["torch"].available and rows["onnx"].available and rows["onnx-int8"].available
    assert not rows["trt"].available and "model.engine" in rows["trt"].reason
    info = describe_artifact(det_export)
    assert info["task"] == "detect" and info["num_classes"] == 80
    assert {f["name"]: f["check"] for f in info["files"]}["model.onnx"] == "ok"
    assert info["dynamic"]["height"] == [64, 320]


def test_misleading_inputs_get_errors_that_name_the_real_problem(tmp_path: Path) -> None:
    import torch

    from pvt_deploy.errors import BackendUnavailableError, InputError
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.runtimes.torch import _resolve_device

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        load_backend(empty)
    with pytest.raises(InputError, match="is a folder, not a checkpoint file"):
        load_backend("pvt_v2_b0-cls", weights=tmp_path)
    if not torch.cuda.is_available():  # "gpu" is an alias of "cuda" for every backend
        with pytest.raises(BackendUnavailableError, match="no usable CUDA"):
            _resolve_device("gpu")


def test_an_option_the_backend_does_not_take_is_bad_input(det_export: Path) -> None:
    # Model(..., **options) / load_backend(..., **options) hand extra options to the backend's
    # constructor: a typo or another backend's option is named, with the ones that backend takes
    with pytest.raises(InputError, match=r"the ONNX Runtime backend takes no option 'thread' \(its options: threads, "):
        load_backend(det_export, thread=1)
    with pytest.raises(InputError, match=r"the PyTorch backend takes no option 'cuda_graph' \(its options: threads\)"):
        load_backend("pvt_v2_b0-cls", cuda_graph=True)
    backend, _ = load_backend(det_export, threads=1, shard=False)  # options it takes still arrive
    assert backend.info.details["intra_op_threads"] == 1 and backend.info.details["batch_shards"] == 1
    backend.close()


def test_torch_rebuilds_a_random_export_from_its_recorded_seed(det_copy: Path) -> None:
    """weights.seed in the manifest: PyTorch draws the same random model again; without it (exports
    from before the seeding, or from a module built elsewhere) the random weights stay unreproducible."""
    (det_copy / "weights.pth").unlink()
    manifest = read_manifest(det_copy)
    manifest["weights"] = {"source": None, "sha256": None, "random_init": True, "seed": 0}
    write_manifest(det_copy, manifest)
    row = next(c for c in backend_candidates(det_copy) if c.label == "torch")
    assert row.available and row.file is None and "seed 0" in row.reason
    name, _, _, loaded = _loaded(det_copy, backend="torch")
    assert name == "torch" and loaded["weights"]["random_init"] is True and loaded["weights"]["seed"] == 0
    for weights in ({"source": None, "sha256": None, "random_init": True},  # an older export: no seed
                    {"source": None, "sha256": None, "random_init": True, "seed": True}):  # not a seed
        write_manifest(det_copy, {**manifest, "weights": weights})
        row = next(c for c in backend_candidates(det_copy) if c.label == "torch")
        assert not row.available and "random weights, which PyTorch cannot reproduce" in row.reason
        with pytest.raises(InputError, match="cannot rebuild the PyTorch model"):
            load_backend(det_copy, backend="torch")


def test_a_folder_without_an_export_does_not_shadow_a_zoo_name(det_export: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pvt_deploy.manifest import is_export_folder

    monkeypatch.chdir(tmp_path)
    shadow = tmp_path / "pvt_v2_b0-cls"
    shadow.mkdir()
    (shadow / "readme.txt").write_text("my notes")
    assert not is_export_folder(shadow) and not is_export_folder(tmp_path / "missing")
    assert resolve_model("pvt_v2_b0-cls") == "pvt_v2_b0-cls"
    for kwargs in ({}, {"backend": "torch"}):
        name, _, _, manifest = _loaded("pvt_v2_b0-cls", imgsz=64, **kwargs)
        assert name == "torch" and manifest["model"] == "pvt_v2_b0-cls"
    assert describe_artifact("pvt_v2_b0-cls")["kind"] == "zoo model (PyTorch)"
    with pytest.raises(InputError, match="no manifest.json"):  # spelled as a path, the folder is meant
        load_backend("./pvt_v2_b0-cls")
    shutil.copytree(det_export, tmp_path / "exports" / "pvt_v2_b0-cls")  # the zoo name's export wins
    assert resolve_model("pvt_v2_b0-cls") == str(Path("exports") / "pvt_v2_b0-cls")
    shutil.copyfile(det_export / "model.onnx", shadow / "model.onnx")  # a graph makes it an export
    assert is_export_folder(shadow) and resolve_model("pvt_v2_b0-cls") == "pvt_v2_b0-cls"
    (shadow / "model.onnx").unlink()
    shutil.copyfile(det_export / "manifest.json", shadow / "manifest.json")  # and so does a manifest
    assert is_export_folder(shadow) and resolve_model("pvt_v2_b0-cls") == "pvt_v2_b0-cls"


def test_imgsz_is_rounded_to_the_stride_before_the_range_check(det_export: Path) -> None:
    """The Predictor's rule (round up to the stride, then the range), whoever asks: 40 on a [64, 320]
    graph runs at 64, and 330 (352) is refused."""
    manifest = read_manifest(det_export)
    assert loader.check_imgsz(manifest, 40) == (64, 64) and loader.check_imgsz(manifest, "33,320") == (64, 320)
    with pytest.raises(ShapeError, match=r"^imgsz 330x330 \(rounded up to the stride 32: 352x352\): height 352"):
        loader.check_imgsz(manifest, 330)
    name, *_ = _loaded(det_export, imgsz=40)
    assert name == "onnxruntime"
    _, _, _, zoo = _loaded("pvt_v2_b0-cls", imgsz="96")  # a string is a size here too (was read as 9x6)
    assert zoo["preprocess"]["imgsz"] == [96, 96]
    # a classifier's center crop is fed as asked: no rounding
    crop = {**manifest, "preprocess": {**manifest["preprocess"], "resize": "resize_crop"}}
    assert loader.check_imgsz(crop, 70) == (70, 70)
    with pytest.raises(ShapeError, match=r"^imgsz 40x40: height 40 is outside"):
        loader.check_imgsz(crop, 40)


def test_imgsz_and_triton_hints_name_the_python_argument_or_the_cli_option(det_export: Path, tmp_path: Path) -> None:
    """From Python the hints named CLI options: "re-export with --dynamic or --imgsz", "run --model
    triton://...". They are spelled as the caller gave them: the option under a pvt-deploy command,
    else the argument (``dynamic=True``, ``model``)."""
    from pvt_deploy.errors import cli_spelling

    static = {**read_manifest(det_export), "dynamic": None}
    static["preprocess"] = {**static["preprocess"], "imgsz": [64, 64]}
    model_dir = tmp_path / "repo" / "m"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.onnx").write_bytes(b"")
    graph = model_dir / "1" / "model.onnx"
    for cli, imgsz, dynamic, model in ((False, "imgsz", "dynamic=True", "model"),
                                       (True, "--imgsz", "--dynamic", "--model")):
        with contextlib.ExitStack() as stack:
            if cli:
                stack.enter_context(cli_spelling())
            with pytest.raises(ShapeError) as refused:
                loader.check_imgsz(static, 96)
            served = loader.served_by_triton(model_dir)
        assert str(refused.value) == (f"this graph was exported for a fixed 64x64 input; {imgsz} 96x96 cannot run on "
                                      f"it (drop {imgsz}, or re-export with {dynamic} or {imgsz})")
        assert served == (f"serve it (tritonserver --model-repository {model_dir.parent}) and run {model} "
                          f"triton://HOST:8000/m; its graph runs here as {model} {graph}")


def test_load_backend_takes_weights_as_a_path_only() -> None:
    """``load_backend("pvt_v2_b0-cls", weights=3)`` raised TypeError from pathlib, and ``weights=""``
    was taken for the current folder; each is one InputError line, as through ``Model``."""
    for bad in (3, "", "  ", b"ckpt.pth"):
        with pytest.raises(InputError, match=r"weights= must be a checkpoint file's path or an http\(s\) URL"):
            load_backend("pvt_v2_b0-cls", weights=bad)  # type: ignore[arg-type]
