"""ONNX Runtime execution-provider selection (pure: the available list is passed in)."""

from __future__ import annotations

import pytest

from pvt_deploy.errors import BackendUnavailableError, InputError
from pvt_deploy.runtimes.ort_providers import CPU, CUDA, TENSORRT, available_providers, select_providers

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
