"""`pvt-deploy doctor` (session 50, helper CY): the TensorRT provider marked unused where the CUDA provider it runs on
does not start.

No GPU here: onnxruntime-gpu is a stand-in (the CUDA provider listed, a driver answering one device, sessions over
real CPU sessions of the probe's graph), as in test_doctor_49b."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pvt_deploy import doctor
from pvt_deploy.runtimes import ort_providers

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
NO_CUDNN_LOG = (
    "2026-12-07 12:00:00.123456789 [E:onnxruntime:Default, provider_bridge_ort.cc:2251 TryGetProviderInfo_CUDA] "
    "[ONNXRuntimeError] : 1 : FAIL : Failed to load library libonnxruntime_providers_cuda.so with error: "
    "libcudnn.so.9: cannot open shared object file: No such file or directory\n")


@pytest.fixture
def gpu_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """onnxruntime-gpu on a machine with one GPU, its TensorRT provider listed: ``cuda`` says whether a session
    starts on the CUDA provider ("starts") or logs that cuDNN is missing and runs on the CPU ("no cuDNN");
    ``trt_libraries`` whether TensorRT's libraries load."""
    import onnxruntime

    state: dict[str, Any] = {"cuda": "starts", "trt_libraries": True}

    class Session(onnxruntime.InferenceSession):  # type: ignore[misc]
        def __init__(self, model: Any, providers: Any = None, **kwargs: Any) -> None:
            if state["cuda"] == "no cuDNN":
                os.write(2, NO_CUDNN_LOG.encode())
            super().__init__(model, providers=[CPU], **kwargs)  # the probe's graph is really loaded and run
            self.on = [CUDA, CPU] if state["cuda"] == "starts" else [CPU]

        def get_providers(self) -> list[str]:
            return list(self.on)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(ort_providers, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: state["trt_libraries"])
    return state


@pytest.mark.parametrize(("cuda", "trt_libraries", "marks"), [
    ("starts", True, "Tensorrt, CUDA, CPU"),
    ("starts", False, "Tensorrt (unused: no TensorRT libraries), CUDA, CPU"),
    ("no cuDNN", True, "Tensorrt (unused: needs the CUDA provider), CUDA (unused: does not start), CPU"),
    ("no cuDNN", False, "Tensorrt (unused: no TensorRT libraries, needs the CUDA provider), CUDA (unused: does not "
                        "start), CPU"),
])
def test_the_tensorrt_provider_is_unused_where_the_cuda_provider_does_not_start(
        gpu_onnxruntime: dict[str, Any], cuda: str, trt_libraries: bool, marks: str) -> None:
    """ONNX Runtime's TensorRT provider runs on the CUDA provider's libraries (CUDA, cuDNN) and GPU: where a session
    cannot start on the CUDA provider (no cuDNN), doctor marked the CUDA provider unused and the TensorRT one usable,
    from TensorRT's libraries alone."""
    gpu_onnxruntime.update(cuda=cuda, trt_libraries=trt_libraries)
    rows = {c.key: c for c in doctor._onnxruntime()}
    assert rows["onnxruntime_cuda"].status == ("ok" if cuda == "starts" else "missing")
    assert rows["onnxruntime"].summary.endswith(f"providers: {marks}"), rows["onnxruntime"].summary
    assert rows["onnxruntime"].info["tensorrt_provider_usable"] is (cuda == "starts" and trt_libraries)
    assert rows["onnxruntime"].info["cuda_provider_usable"] is (cuda == "starts")
