"""Choose ONNX Runtime execution providers: TensorRT EP > CUDA EP > CPU.

Kept apart from the ONNX Runtime backend and pure (``available`` can be passed in) so the choice is
unit-testable on a CPU-only machine. ``onnxruntime-gpu`` lists the TensorRT and CUDA providers even
where their libraries are missing at run time; ONNX Runtime then falls back down the list given to
the session, which is why the CPU provider always closes the list.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pvt_deploy.errors import BackendUnavailableError, InputError

__all__ = ["CPU", "CUDA", "GPU_PROVIDERS", "TENSORRT", "ProviderSpec", "available_providers", "select_providers",
           "tensorrt_libraries_load"]

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

Device = Literal["auto", "cpu", "cuda", "tensorrt"]
ProviderSpec = str | tuple[str, dict[str, Any]]
"""What ``onnxruntime.InferenceSession(providers=...)`` takes: a name, or (name, options)."""

_GPU_HINT = ("pip uninstall -y onnxruntime && pip install onnxruntime-gpu (on a machine with an NVIDIA GPU), "
             "or use the Docker image: docker build -f docker/Dockerfile -t pvt-deploy .")


def available_providers() -> list[str]:
    """The providers this onnxruntime build offers (empty if onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def tensorrt_libraries_load() -> bool:
    """Whether TensorRT's runtime library loads in this process. ``onnxruntime-gpu`` lists its
    TensorRT provider whether or not TensorRT is installed; a session asked for it without
    ``libnvinfer`` prints an error and falls back, so ``auto`` leaves it out where this is False."""
    import ctypes

    def loads() -> bool:
        for name in ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so", "nvinfer_10.dll", "nvinfer.dll"):
            try:
                ctypes.CDLL(name)
            except OSError:
                continue
            return True
        return False

    if loads():
        return True
    try:  # TensorRT's pip wheels keep libnvinfer outside the loader's path; importing tensorrt loads it
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or installed for another CUDA
        return False
    return loads()


def select_providers(
    device: Device | str = "auto",
    *,
    fp16: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    device_id: int = 0,
    available: Sequence[str] | None = None,
) -> list[ProviderSpec]:
    """Provider list for ``device``, best first, always ending with the CPU provider.

    ``auto`` takes TensorRT EP > CUDA EP > CPU from what is available. Asking for ``cuda`` or
    ``tensorrt`` where that provider is absent raises :class:`BackendUnavailableError` (a silent CPU
    run would be mistaken for a GPU measurement). ``fp16`` lets the TensorRT EP use FP16 kernels on an
    FP32 graph. ``cache_dir`` turns on the TensorRT EP's engine and timing caches there (the caller
    creates the folder), without which every new session rebuilds its engines (minutes). ``available`` defaults to
    ``onnxruntime.get_available_providers()``, and then ``auto`` also leaves out a TensorRT provider
    whose libraries do not load (:func:`tensorrt_libraries_load`); an ``available`` passed in is taken
    as it is.
    """
    device = str(device).lower()
    if device not in ("auto", "cpu", "cuda", "tensorrt", "trt"):
        raise InputError(f"unknown ONNX Runtime device {device!r}; choose auto, cpu, cuda or tensorrt")
    have = list(available) if available is not None else available_providers()
    if available is None and device == "auto" and TENSORRT in have and not tensorrt_libraries_load():
        have.remove(TENSORRT)

    if device == "cpu":
        return [CPU]
    if device in ("tensorrt", "trt") and TENSORRT not in have:
        raise BackendUnavailableError(
            f"ONNX Runtime has no TensorRT execution provider here (available: {', '.join(have) or 'none'})",
            hint=_GPU_HINT + " with TensorRT installed")
    if device == "cuda" and CUDA not in have:
        raise BackendUnavailableError(
            f"ONNX Runtime has no CUDA execution provider here (available: {', '.join(have) or 'none'})",
            hint=_GPU_HINT)

    chosen: list[ProviderSpec] = []
    if device in ("auto", "tensorrt", "trt") and TENSORRT in have:
        chosen.append((TENSORRT, _tensorrt_options(device_id, fp16, cache_dir)))
    if CUDA in have:
        chosen.append((CUDA, {"device_id": device_id}))
    chosen.append(CPU)
    return chosen


def _tensorrt_options(device_id: int, fp16: bool, cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": device_id}
    if fp16:  # only when asked: TensorRT 11 has no weak-typing FP16 switch for the EP to flip
        options["trt_fp16_enable"] = True
    if cache_dir is not None:
        path = str(Path(cache_dir))
        options.update({
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": path,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": path,
        })
    return options
