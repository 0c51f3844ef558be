"""ONNX Runtime execution-provider selection (pure: the available list is passed in)."""

from __future__ import annotations

import pytest

from pvt_deploy.errors import BackendUnavailableError, InputError
from pvt_deploy.runtimes.ort_providers import CPU, CUDA, TENSORRT, available_providers, select_providers
from pvt_deploy.utils import onnx_model

GPU = [TENSORRT, CUDA, CPU]


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    assert select_providers(available=GPU) == [(TENSORRT, {"device_id": 0}), (CUDA, {"device_id": 0}), CPU]
    assert select_providers(available=[CUDA, CPU]) == [(CUDA, {"device_id": 0}), CPU]
    assert select_providers(available=[CPU]) == [CPU]


def test_cpu_request_ignores_gpus() -> None:
    assert select_providers("cpu", available=GPU) == [CPU]


def test_cuda_request_skips_tensorrt() -> None:
    assert select_providers("cuda", available=GPU, device_id=1) == [(CUDA, {"device_id": 1}), CPU]


def test_tensorrt_options_fp16_and_caches(tmp_path: object) -> None:
    providers = select_providers("tensorrt", fp16=True, cache_dir="/cache/trt", available=GPU)
    name, options = providers[0]
    assert name == TENSORRT
    assert options == {"device_id": 0, "trt_fp16_enable": True,
                       "trt_engine_cache_enable": True, "trt_engine_cache_path": "/cache/trt",
                       "trt_timing_cache_enable": True, "trt_timing_cache_path": "/cache/trt"}
    assert providers[1:] == [(CUDA, {"device_id": 0}), CPU]


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


def test_auto_leaves_out_a_tensorrt_provider_whose_libraries_do_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu lists its TensorRT provider without TensorRT installed; a session asked for it
    prints an error and falls back, so ``auto`` asks only where libnvinfer loads."""
    from pvt_deploy.runtimes import ort_providers

    monkeypatch.setattr(ort_providers, "available_providers", lambda: list(GPU))
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: False)
    assert select_providers() == [(CUDA, {"device_id": 0}), CPU]
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
