"""ONNX Runtime execution-provider selection (pure: the available list is passed in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pvt_deploy.errors import BackendUnavailableError, InputError
from pvt_deploy.runtimes.ort_providers import CPU, CUDA, TENSORRT, available_providers, select_providers
from pvt_deploy.utils import onnx_model

pytest_plugins = ["export_fixtures"]

GPU = [TENSORRT, CUDA, CPU]
CUDA_OPTIONS = {"device_id": 0, "use_tf32": 0}  # FP32 as IEEE FP32: the CUDA EP's use_tf32 is on by default


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    assert select_providers(available=GPU) == [(TENSORRT, {"device_id": 0}), (CUDA, CUDA_OPTIONS), CPU]
    assert select_providers(available=[CUDA, CPU]) == [(CUDA, CUDA_OPTIONS), CPU]
    assert select_providers(available=[CPU]) == [CPU]


def test_cpu_request_ignores_gpus() -> None:
    assert select_providers("cpu", available=GPU) == [CPU]


def test_cuda_request_skips_tensorrt() -> None:
    assert select_providers("cuda", available=GPU, device_id=1) == [(CUDA, {**CUDA_OPTIONS, "device_id": 1}), CPU]


def test_tensorrt_options_fp16_and_caches(tmp_path: object) -> None:
    providers = select_providers("tensorrt", fp16=True, cache_dir="/cache/trt", available=GPU)
    name, options = providers[0]
    assert name == TENSORRT
    assert options == {"device_id": 0, "trt_fp16_enable": True,
                       "trt_engine_cache_enable": True, "trt_engine_cache_path": "/cache/trt",
                       "trt_timing_cache_enable": True, "trt_timing_cache_path": "/cache/trt"}
    assert providers[1:] == [(CUDA, CUDA_OPTIONS), CPU]


@pytest.mark.parametrize("device, match", [("tensorrt", "TensorRT execution provider"),
                                           ("cuda", "CUDA execution provider")])
def test_missing_requested_provider_is_a_clear_error(device: str, match: str) -> None:
    with pytest.raises(BackendUnavailableError, match=match) as e:
        select_providers(device, available=[CPU])
    assert "onnxruntime-gpu" in str(e.value) and "\n" not in str(e.value)


def test_unknown_device_is_refused() -> None:
    with pytest.raises(InputError, match="unknown ONNX Runtime device"):
        select_providers("npu", available=GPU)


def test_default_available_comes_from_onnxruntime() -> None:
    import onnxruntime

    assert available_providers() == onnxruntime.get_available_providers()
    assert select_providers()[-1] == CPU


@pytest.fixture
def cuda_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's CUDA provider runs here, as far as provider selection can tell: its probe's answer
    (no probe session is made; the answers cached before are set aside)."""
    from pvt_deploy.runtimes import ort_providers

    monkeypatch.setattr(ort_providers, "_probed", {})
    monkeypatch.setattr(ort_providers, "probe_cuda_provider",
                        lambda device_id=0: ort_providers.CudaProvider(None, devices=1))


def test_auto_leaves_out_a_tensorrt_provider_whose_libraries_do_not_load(monkeypatch: pytest.MonkeyPatch,
                                                                         cuda_runs: None) -> None:
    """onnxruntime-gpu lists its TensorRT provider without TensorRT installed; a session asked for it
    prints an error and falls back, so ``auto`` asks only where libnvinfer loads."""
    from pvt_deploy.runtimes import ort_providers

    monkeypatch.setattr(ort_providers, "available_providers", lambda: list(GPU))
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: False)
    assert select_providers() == [(CUDA, CUDA_OPTIONS), CPU]
    assert select_providers("tensorrt")[0][0] == TENSORRT  # asked by name: tried, and refused if it falls back
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: True)
    assert [p[0] for p in select_providers()[:2]] == [TENSORRT, CUDA]


def test_a_gpu_provider_that_falls_back_is_refused(tmp_path: object) -> None:
    """ONNX Runtime runs a session on the next provider when the asked one cannot start (here: a CPU
    build asked for CUDA); with ``device='cuda'`` that silent CPU run is refused, naming the fallback."""
    from pathlib import Path

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    if CUDA in available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    path = Path(str(tmp_path)) / "relu.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["out"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(onnx_model(graph), str(path))
    with pytest.raises(BackendUnavailableError, match=r"could not start its CUDAExecutionProvider and fell back to "
                                                      r"CPUExecutionProvider") as e:
        OnnxRuntimeBackend(path, device="cuda", providers=[(CUDA, {"device_id": 0}), CPU])
    assert "onnxruntime-gpu[cuda,cudnn]" in str(e.value)
    with pytest.raises(BackendUnavailableError, match="could not start its TensorrtExecutionProvider") as e:
        OnnxRuntimeBackend(path, device="tensorrt", providers=[(TENSORRT, {"device_id": 0}), CPU])
    assert "pip install tensorrt" in str(e.value) and "--device cuda" in str(e.value)
    backend = OnnxRuntimeBackend(path, device="auto", providers=[(CUDA, {"device_id": 0}), CPU])  # auto: runs, warns
    assert backend.providers == [CPU]
    out = backend.infer({"images": np.full((1, 3, 4, 4), -1.0, np.float32)})
    assert float(out["out"].max()) == 0.0


# --- the TensorRT EP as the loader and the CLI use it: engine cache, profile, device index ----------------

def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cls_onnx(cls_artifact: Any, tmp_path: Path) -> Path:
    """The 64 px classifier export's model.onnx and manifest.json, copied (its folder is shared)."""
    import shutil

    folder = tmp_path / "pvt_tiny-cls"
    folder.mkdir()
    for name in ("model.onnx", "manifest.json"):
        shutil.copy(cls_artifact.folder / name, folder / name)
    return folder / "model.onnx"


@pytest.fixture
def tensorrt_here(monkeypatch: pytest.MonkeyPatch, cuda_runs: None) -> list[list[Any]]:
    """onnxruntime-gpu with TensorRT, as far as provider selection can tell (this onnxruntime then runs
    the session on its CPU provider); returns the ``providers`` each session was asked for."""
    import onnxruntime

    from pvt_deploy.runtimes import ort_providers

    monkeypatch.setattr(ort_providers, "available_providers", lambda: list(GPU))
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: True)
    monkeypatch.setattr(ort_providers, "tensorrt_library_version", lambda: "10.9.0", raising=False)
    asked: list[list[Any]] = []
    real = onnxruntime.InferenceSession

    def session(*args: Any, **kwargs: Any) -> Any:
        asked.append(list(kwargs.get("providers") or []))
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    return asked


def test_loader_gives_the_tensorrt_ep_an_engine_cache_and_the_exports_profile(
        cls_onnx: Path, tensorrt_here: list[list[Any]]) -> None:
    """Loaded as `infer`/`bench`/`check` load it, the TensorRT EP caches its engines beside the model
    (without a cache every run rebuilt them: minutes) and builds them for the export's range (batch
    1..8, 32 px up to the asked size), not for the first shape it meets."""
    import json

    from pvt_deploy.runtimes.loader import load_backend

    backend, _ = load_backend(cls_onnx)
    backend.close()
    name, options = tensorrt_here[-1][0]
    assert name == TENSORRT
    folder = Path(options["trt_engine_cache_path"])
    assert folder.parent == cls_onnx.parent / ".ort-cache" / "tensorrt" and folder.name.startswith("model.")
    assert folder.is_dir() and options["trt_timing_cache_path"] == str(folder)
    assert options["trt_engine_cache_enable"] is True and options["trt_timing_cache_enable"] is True
    assert (options["trt_profile_min_shapes"], options["trt_profile_opt_shapes"], options["trt_profile_max_shapes"]) == (
        "images:1x3x32x32", "images:1x3x64x64", "images:8x3x64x64")
    record = json.loads((folder / "key.json").read_text())
    assert record["model_sha256"] == _sha256(cls_onnx) and record["tensorrt"] == "10.9.0"
    assert record["fp16"] is False and record["profile"] == {
        "images": {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [8, 3, 64, 64]}}

    load_backend(cls_onnx)[0].close()  # the next run finds the same folder: its engines are reused
    assert tensorrt_here[-1][0][1]["trt_engine_cache_path"] == str(folder)

    load_backend(cls_onnx, imgsz=128)[0].close()  # a run at another size: a profile that covers it
    other = tensorrt_here[-1][0][1]
    assert (other["trt_profile_opt_shapes"], other["trt_profile_max_shapes"]) == (
        "images:1x3x128x128", "images:8x3x128x128")
    assert other["trt_engine_cache_path"] != str(folder)


def test_the_tensorrt_ep_builds_the_int8_graph_with_int8_enabled(det_artifact: Any,
                                                               tensorrt_here: list[list[Any]]) -> None:
    """`--precision int8` where ONNX Runtime has the TensorRT EP loads the symmetric Q/DQ graph, which
    TensorRT builds only with INT8 on ("int8 is not configured in the builder", onnxruntime#13381):
    the EP is asked for it there, and only there."""
    from pvt_deploy.runtimes.loader import load_backend

    backend, _ = load_backend(det_artifact.folder, precision="int8")
    backend.close()
    name, options = tensorrt_here[-1][0]
    assert name == TENSORRT and Path(backend.info.details["file"]).name == "model.int8.trt.onnx"
    assert options["trt_int8_enable"] is True and "trt_fp16_enable" not in options
    load_backend(det_artifact.folder)[0].close()
    assert "trt_int8_enable" not in tensorrt_here[-1][0][1]


def test_tensorrt_engine_cache_key_follows_graph_fp16_and_tensorrt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes an engine unusable elsewhere names its folder: ONNX Runtime's own engine names hash the
    file *name*, not its weights, so a re-exported model.onnx must not find the old engines."""
    from pvt_deploy.runtimes import ort_providers
    from pvt_deploy.runtimes.ort_providers import tensorrt_cache_dir, tensorrt_cache_key

    facts: dict[str, Any] = {"model_sha256": "ab" * 32, "onnxruntime": "1.31.1", "tensorrt": "10.9.0",
                             "gpu": "NVIDIA H100 (compute capability 9.0)", "fp16": False,
                             "profile": {"images": {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64],
                                                    "max": [8, 3, 64, 64]}}}
    key = tensorrt_cache_key(**facts)
    assert key == tensorrt_cache_key(**facts) and len(key) == 20
    changed = [{"fp16": True}, {"tensorrt": "10.10.0"}, {"tensorrt": None}, {"onnxruntime": "1.32.0"},
               {"gpu": "NVIDIA L4 (compute capability 8.9)"}, {"model_sha256": "cd" * 32},
               {"profile": {"images": {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [16, 3, 64, 64]}}}]
    keys = {tensorrt_cache_key(**{**facts, **change}) for change in changed}
    assert len(keys) == len(changed) and key not in keys

    path = tmp_path / "model.onnx"
    path.write_bytes(b"graph one")
    monkeypatch.setattr(ort_providers, "tensorrt_library_version", lambda: "10.9.0", raising=False)
    first = tensorrt_cache_dir(path)
    assert first is not None and first.parent == tmp_path / ".ort-cache" / "tensorrt"
    assert tensorrt_cache_dir(path) == first
    assert tensorrt_cache_dir(path, fp16=True) != first
    monkeypatch.setattr(ort_providers, "tensorrt_library_version", lambda: "10.10.0")
    assert tensorrt_cache_dir(path) != first
    monkeypatch.setattr(ort_providers, "tensorrt_library_version", lambda: "10.9.0", raising=False)
    others = [tensorrt_cache_dir(path, fp16=True), tensorrt_cache_dir(path, root=tmp_path / "shared")]
    neighbour = tmp_path / "other" / "model.onnx"  # another export's model.onnx in the same per-user cache
    neighbour.parent.mkdir()
    neighbour.write_bytes(b"graph three")
    kept = tensorrt_cache_dir(neighbour, root=tmp_path / "shared")
    path.write_bytes(b"graph two")  # re-exported: same name, new weights
    second = tensorrt_cache_dir(path)
    assert second is not None and second != first and second.is_dir()
    assert not first.exists() and others[0] is not None and not others[0].exists()  # its old engines are gone
    assert others[1] is not None and others[1].exists()  # another cache folder: not looked at
    assert kept is not None and tensorrt_cache_dir(path, root=tmp_path / "shared") != others[1] and kept.exists()
    assert not others[1].exists()
    assert tensorrt_cache_dir(path, root=tmp_path / "elsewhere").parent == tmp_path / "elsewhere" / "tensorrt"
    # an explicit cache_dir still wins, and no model means no default
    options = select_providers("tensorrt", cache_dir=tmp_path / "mine", model=path, available=GPU)[0][1]
    assert options["trt_engine_cache_path"] == str(tmp_path / "mine")
    assert "trt_engine_cache_path" not in select_providers("tensorrt", available=GPU)[0][1]


def test_a_shape_outside_the_tensorrt_ep_profile_is_refused_in_one_line(
        cls_onnx: Path, tensorrt_here: list[list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """On the TensorRT EP the backend reports its profile as a TensorRT engine does (the pipeline
    keeps a letterboxed size inside it) and refuses a feed outside it before the EP sees it."""
    import numpy as np
    import onnxruntime

    from pvt_deploy.errors import ShapeError
    from pvt_deploy.runtimes.loader import load_backend

    recording = onnxruntime.InferenceSession

    class OnTensorRT:  # the session as onnxruntime-gpu with TensorRT reports it; it runs on the CPU here
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._session = recording(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._session, name)

        def get_providers(self) -> list[str]:
            return list(GPU)

    monkeypatch.setattr(onnxruntime, "InferenceSession", OnTensorRT)
    backend, _ = load_backend(cls_onnx, io_binding=False)
    try:
        assert backend.info.device == TENSORRT
        assert backend.profiles == [{"input": "images", "min": [1, 3, 32, 32], "opt": [1, 3, 64, 64],
                                     "max": [8, 3, 64, 64]}]
        assert backend.info.details["trt_profile"] == {"min": "images:1x3x32x32", "opt": "images:1x3x64x64",
                                                       "max": "images:8x3x64x64"}
        assert backend.info.details["trt_engine_cache"] == tensorrt_here[-1][0][1]["trt_engine_cache_path"]
        assert backend.infer({"images": np.zeros((2, 3, 64, 64), np.float32)})["logits"].shape[0] == 2
        for shape in ((1, 3, 128, 128), (9, 3, 64, 64)):
            with pytest.raises(ShapeError, match=r"outside the engine's profile \(batch 1\.\.8, dim1 3, height 32\.\.64, "
                                                 r"width 32\.\.64\).*imgsz") as e:
                backend.infer({"images": np.zeros(shape, np.float32)})
            assert "\n" not in str(e.value)
    finally:
        backend.close()


def test_fp32_on_the_tensorrt_ep_is_reported_as_tf32(cls_onnx: Path, tensorrt_here: list[list[Any]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """FP32 on a GPU is IEEE FP32 where ONNX Runtime lets it: the CUDA EP is asked for use_tf32=0 (its
    default lets cuBLAS and cuDNN round float32 to TF32 on Ampere+), also as the TensorRT EP's fallback.
    The TensorRT EP has no such option and builds with TensorRT's TF32 flag on: an fp32 graph there is
    reported as tf32 (and `check` judges it with that tolerance), on the CUDA EP as fp32."""
    import onnxruntime

    from pvt_deploy.runtimes import tensorrt as rt_tensorrt
    from pvt_deploy.runtimes.loader import load_backend

    recording, first = onnxruntime.InferenceSession, {"provider": TENSORRT}

    class OnGpu:  # the session as onnxruntime-gpu reports it; it runs on the CPU here
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._session = recording(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._session, name)

        def get_providers(self) -> list[str]:
            return [first["provider"], *(p for p in GPU if p != first["provider"])]

    monkeypatch.setattr(onnxruntime, "InferenceSession", OnGpu)
    monkeypatch.setattr(rt_tensorrt, "_driver_device_info", lambda index: ("NVIDIA A10", "8.6"))  # Ampere: TF32
    backend, _ = load_backend(cls_onnx, io_binding=False)
    backend.close()
    assert tensorrt_here[-1][1] == (CUDA, CUDA_OPTIONS)  # the TensorRT EP's fallback for what it does not take
    assert "use_tf32" not in tensorrt_here[-1][0][1]  # not an option of the TensorRT EP: ONNX Runtime would refuse it
    assert (backend.info.device, backend.info.precision) == (TENSORRT, "tf32")
    first["provider"] = CUDA
    backend, _ = load_backend(cls_onnx, device="cuda", io_binding=False)
    backend.close()
    assert tensorrt_here[-1] == [(CUDA, CUDA_OPTIONS), CPU]
    assert (backend.info.device, backend.info.precision) == (CUDA, "fp32")


@pytest.mark.parametrize("device", ["cuda:3", "tensorrt:3"])
def test_a_gpu_index_past_the_gpus_is_refused_before_onnx_runtime(
        device: str, cls_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--device cuda:3` with one GPU: one line and exit 2, as the PyTorch and TensorRT backends say it
    (ONNX Runtime failed with a CUDA error blamed on the model)."""
    import cv2
    import numpy as np
    from cli_run import run

    from pvt_deploy.runtimes import ort_providers

    monkeypatch.setattr(ort_providers, "available_providers", lambda: list(GPU))
    monkeypatch.setattr(ort_providers, "cuda_device_count", lambda: 1, raising=False)
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    code, _, err = run(monkeypatch, capsys, "infer", str(image), "--model", str(cls_onnx), "--device", device,
                       "--no-save")
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "there is no CUDA device 3 here (1 visible, cuda:0)" in lines[-1], err
    assert "Traceback" not in err



def test_a_gpu_index_past_the_gpus_is_named_as_the_other_backends_name_it(
        cls_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Model(x.onnx, device=2)`` (a GPU index, as Ultralytics takes it) with one GPU: the PyTorch and TensorRT
    backends say ``device '2'``; ONNX Runtime's said ``device 2``, the int's repr."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.runtimes import ort_providers
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    monkeypatch.setattr(ort_providers, "available_providers", lambda: list(GPU))
    monkeypatch.setattr(ort_providers, "cuda_device_count", lambda: 1, raising=False)
    with pytest.raises(InputError) as refused:
        OnnxRuntimeBackend(cls_onnx, device=2)  # type: ignore[arg-type]
    assert refused.value.args[0] == "device '2': there is no CUDA device 2 here (1 visible, cuda:0)"


def test_no_tensorrt_ep_profile_is_worked_out_where_its_libraries_do_not_load(
        cls_onnx: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, cuda_runs: None) -> None:
    """onnxruntime-gpu lists its TensorRT EP where TensorRT is not installed, and ``auto`` then leaves it out:
    the profile was still worked out from the manifest (importing the TensorRT exporter, ~40 ms a session)
    and a manifest it cannot read warned about a profile no session would use."""
    import logging

    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.runtimes import ort_providers
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    unreadable = {**read_manifest(cls_onnx.parent), "dynamic": {"batch": [1, 8]}}  # no height/width ranges
    monkeypatch.setattr(ort_providers, "available_providers", lambda: list(GPU))
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: False)
    with caplog.at_level(logging.WARNING):
        OnnxRuntimeBackend(cls_onnx, manifest=unreadable, providers=None).close()
    assert "no TensorRT EP profile" not in caplog.text


def _hashes_of(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time ``path`` is hashed whole from now on: a sha256 whose digest is the file's."""
    import hashlib

    real, whole, seen = hashlib.sha256, _sha256(path), []

    class Counting:
        def __init__(self, *args: Any) -> None:
            self._h = real(*args)

        def update(self, data: bytes) -> None:
            self._h.update(data)

        def hexdigest(self) -> str:
            digest = self._h.hexdigest()
            if digest == whole:
                seen.append(digest)
            return digest

    monkeypatch.setattr(hashlib, "sha256", Counting)
    return seen


@pytest.mark.parametrize("where", ["tensorrt", "cpu"])
def test_one_load_reads_the_model_once_to_hash_it(where: str, cls_onnx: Path, monkeypatch: pytest.MonkeyPatch,
                                                  request: pytest.FixtureRequest) -> None:
    """A load checked the file's sha256 against the manifest, then hashed it again for the TensorRT EP's
    engine-cache key (on the CPU: for the rewritten graph's cache key): two full reads of a 100-250 MB
    graph before the session even opened it. One load reads it once to hash it, and still checks it."""
    from pvt_deploy.runtimes.loader import load_backend

    if where == "tensorrt":
        request.getfixturevalue("tensorrt_here")
    hashed = _hashes_of(cls_onnx, monkeypatch)
    for model in (cls_onnx.parent, cls_onnx):  # the export folder, and its model.onnx named
        hashed.clear()
        load_backend(model, device="auto" if where == "tensorrt" else "cpu")[0].close()
        assert len(hashed) == 1
    with open(cls_onnx, "r+b") as f:  # the check still reads the file: a changed one is refused
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(InputError, match="sha256 differs"):
        load_backend(cls_onnx.parent)
