"""GPU-provider probing's leftovers (session 51, helper DH): TensorRT's library looked up once per process; the CUDA
provider's warning said once where two threads probe one GPU at once; info without --device starting no GPU where
what it prints does not depend on it; a GPU provider that fails while the session is made not retried on the CPU by
ONNX Runtime.

No GPU, CUDA or TensorRT here: onnxruntime-gpu is a stand-in (its providers listed, the CUDA provider's probe answered
or made on stand-in sessions over real CPU ones), as in test_ort_providers_50."""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import threading
from typing import Any

import pytest
import test_ort_providers
import test_ort_providers_50
from cli_run import run

from pvt_deploy.runtimes import ort_providers
from pvt_deploy.runtimes.loader import backend_candidates
from pvt_deploy.runtimes.ort_providers import CPU, CUDA, TENSORRT, select_providers

pytest_plugins = ["export_fixtures"]

cuda_runs = test_ort_providers.cuda_runs  # a fixture: the CUDA provider's probe says it runs (no session made)

NVINFER = ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so", "nvinfer_10.dll", "nvinfer.dll")


def _count_nvinfer_loads(monkeypatch: pytest.MonkeyPatch, loads: bool) -> list[str]:
    """TensorRT's library names ``ctypes.CDLL`` is asked for, in order; each of them loads (a stand-in library of
    TensorRT 10.9.0) where ``loads``, else none does and ``import tensorrt`` fails (no TensorRT). The process's answer
    is forgotten."""
    asked: list[str] = []
    real = ctypes.CDLL

    class Library:
        @staticmethod
        def getInferLibVersion() -> int:
            return 100900

    def cdll(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name not in NVINFER:
            return real(name, *args, **kwargs)
        asked.append(name)
        if not loads:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return Library()

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    if not loads:
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # its import fails
    monkeypatch.setattr(ort_providers, "_nvinfer", {}, raising=False)
    return asked


def test_tensorrts_library_is_looked_up_once_per_process(
        monkeypatch: pytest.MonkeyPatch, cuda_runs: None, det_artifact: Any) -> None:
    """``tensorrt_libraries_load`` tried TensorRT's five library names and ``import tensorrt`` at every call (0.3 ms),
    and a folder's rows asked it for each (``auto``'s choice up front, then the INT8 flavour, the FP16 note and the
    INT8 note, each through ``select_providers``), as does each session's choice. It is looked up once per process;
    a library found is kept (its version read from it)."""
    import onnxruntime

    from pvt_deploy.runtimes.loader import backend_candidates, int8_onnx_file

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    asked = _count_nvinfer_loads(monkeypatch, loads=False)
    rows = {c.label: c for c in backend_candidates(det_artifact.folder)}
    assert rows["onnx-int8"].file == "model.int8.onnx" and rows["onnx-fp16"].reason == ""  # CUDA, no TensorRT EP
    assert int8_onnx_file(det_artifact.folder) == "model.int8.onnx"
    assert [p if isinstance(p, str) else p[0] for p in select_providers()] == [CUDA, CPU]
    assert asked == list(NVINFER)  # one look-up: each name tried once
    assert not ort_providers.tensorrt_libraries_load() and ort_providers.tensorrt_library_version() is None
    assert asked == list(NVINFER)

    asked = _count_nvinfer_loads(monkeypatch, loads=True)  # forgotten: looked up anew, and found
    assert [p if isinstance(p, str) else p[0] for p in select_providers()] == [TENSORRT, CUDA, CPU]
    assert int8_onnx_file(det_artifact.folder) == "model.int8.trt.onnx"
    assert ort_providers.tensorrt_libraries_load() and ort_providers.tensorrt_library_version() == "10.9.0"
    assert asked == ["libnvinfer.so.10"]


gpu_onnxruntime = test_ort_providers_50.gpu_onnxruntime  # a fixture: onnxruntime-gpu's stand-in (its CUDA provider's
# sessions log that cuDNN is missing and run on the CPU, or start on CUDA, as its "cuda" says)


def test_two_threads_probing_one_gpu_at_once_say_its_warning_once(
        gpu_onnxruntime: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """``auto``'s warning that the CUDA provider cannot run was said by the call that found no answer for its GPU, asked
    before the probe's lock: two threads loading models at once (the first sessions of a server) both found none while
    the first probed, and both said it. The call that probes says it, decided under the lock."""
    import onnxruntime

    stand_in = onnxruntime.InferenceSession
    waiting = threading.Event()  # a second thread waits for the probe's lock

    class Watched:  # the probe's lock, telling when a thread finds it held by another
        def __init__(self) -> None:
            self.lock = threading.RLock()

        def __enter__(self) -> None:
            if not self.lock.acquire(blocking=False):
                waiting.set()
                self.lock.acquire()

        def __exit__(self, *exc: object) -> None:
            self.lock.release()

    class Starting(stand_in):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:  # the probe's session starts once the other thread
            waiting.wait(10)  # has asked and waits for the lock
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ort_providers, "_probing", Watched())
    monkeypatch.setattr(onnxruntime, "InferenceSession", Starting)
    chosen: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.runtimes.ort_providers"):
        threads = [threading.Thread(target=lambda: chosen.append(select_providers())) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert chosen == [[CPU], [CPU]] and waiting.is_set()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("ONNX Runtime's CUDA provider cannot run here ("), said
    assert [e for e in gpu_onnxruntime["events"] if isinstance(e, list)] == [[(CUDA, {"device_id": 0}), CPU]]


cls_onnx = test_ort_providers.cls_onnx  # a fixture: the 64 px classifier's model.onnx and manifest.json, copied


def test_info_without_device_starts_no_gpu_where_its_rows_do_not_depend_on_it(
        gpu_onnxruntime: dict[str, Any], cls_onnx: Any, det_artifact: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """``info`` without ``--device`` asked ``select_providers`` for ``auto`` up front, as for ``cuda`` (which is refused
    there where the CUDA provider cannot run): on a GPU machine with onnxruntime-gpu that probe loads CUDA and cuDNN
    and makes a CUDA context (seconds), for a folder of model.onnx whose rows say nothing it decides (auto is never
    refused). The probe is made where a row depends on it: asked for (``--device cuda``), or a folder's FP16 note and
    INT8 flavour."""
    gpu_onnxruntime["cuda"] = "starts"
    code, out, err = run(monkeypatch, capfd, "info", str(cls_onnx.parent), "--json")
    assert code == 0, err
    assert next(r for r in json.loads(out)["backends"] if r["label"] == "onnx")["available"]
    assert gpu_onnxruntime["events"] == []  # no probe: no CUDA and cuDNN loaded, no session
    code, out, err = run(monkeypatch, capfd, "info", str(cls_onnx.parent), "--device", "cuda", "--json")
    assert code == 0, err
    assert gpu_onnxruntime["events"] == ["preloaded", [(CUDA, {"device_id": 0}), CPU]]  # asked for: probed

    gpu_onnxruntime["events"].clear()
    monkeypatch.setattr(ort_providers, "_probed", {})
    rows = {c.label: c for c in backend_candidates(det_artifact.folder)}  # the FP16 note and the INT8 flavour
    assert rows["onnx-fp16"].reason == "" and rows["onnx-int8"].file == "model.int8.trt.onnx"  # the GPU's
    assert gpu_onnxruntime["events"] == [[(CUDA, {"device_id": 0}), CPU]]  # probed (CUDA and cuDNN loaded before)


OUT_OF_MEMORY = "CUDA failure 2: out of memory ; GPU=0 ; expr=cudaMalloc(&p, bytes);"


def _gpu_sessions_fail_to_start(gpu_onnxruntime: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                failing: str) -> list[list[Any]]:
    """The CUDA provider's probe starts on it (TensorRT's libraries load); a session of a model file asked for the
    ``failing`` provider raises while it is made, as ONNX Runtime's Python binding raises a provider's C++ exception
    (``RuntimeError``: out of GPU memory), and ONNX Runtime's own ``InferenceSession.__init__`` (its fallback) does
    what it does with that. Returns the providers each session of a model file was asked for."""
    import onnxruntime
    from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession as Real

    asked: list[list[Any]] = []

    class Session(Real):  # type: ignore[misc]
        def _create_inference_session(self, providers: Any, provider_options: Any, disabled_optimizers: Any = None,
                                      ) -> None:
            names = [p if isinstance(p, str) else p[0] for p in providers or []]
            if self._model_path is not None:  # not the probe's graph (bytes)
                asked.append(list(providers))
                if failing in names:  # onnxruntime-gpu's own choice of what to retry with
                    self._fallback_providers = [CUDA, CPU] if {TENSORRT, CUDA} <= set(names) else [CPU]
                    raise RuntimeError(OUT_OF_MEMORY)
            super()._create_inference_session([CPU], None, disabled_optimizers)  # really loaded, run on the CPU
            self.on = [*[n for n in names if n != CPU][:1], CPU]

        def get_providers(self) -> list[str]:
            return list(self.on)

    gpu_onnxruntime["cuda"] = "starts"
    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    return asked


def test_cuda_refuses_a_session_its_provider_fails_to_start_in_one_line(
        gpu_onnxruntime: dict[str, Any], cls_onnx: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """A GPU provider that raised while the session was made (out of GPU memory) got ONNX Runtime's Python fallback:
    'EP Error ... Falling back' printed to stdout (amid infer's output, into --json's), a whole session of the model
    made again on the CPU, and only then the refusal, 'ONNX Runtime printed the reason above'. Sessions are made with
    ``enable_fallback=0``: ``--device cuda`` is refused in one line with ONNX Runtime's reason, exit 3, no CPU
    session made."""
    import cv2
    import numpy as np

    asked = _gpu_sessions_fail_to_start(gpu_onnxruntime, monkeypatch, CUDA)
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    code, out, err = run(monkeypatch, capfd, "infer", str(image), "--model", str(cls_onnx), "--device", "cuda",
                         "--no-save")
    assert code == 3, err
    assert err == (f"error: model.onnx: ONNX Runtime's {CUDA} failed to start a session of it ({OUT_OF_MEMORY}) "
                   "(--device cpu runs it on the CPU; pvt-deploy doctor lists what is found)\n")
    assert out == ""  # no 'EP Error ... Falling back'
    assert asked == [[(CUDA, {"device_id": 0, "use_tf32": 0}), CPU]]  # none again on the CPU


def test_auto_tries_its_next_provider_with_its_options_where_one_fails_to_start(
        gpu_onnxruntime: dict[str, Any], cls_onnx: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """``auto``'s TensorRT EP failing while the session is made was retried by ONNX Runtime's Python side on its own
    list, the CUDA provider without pvt-deploy's options (``use_tf32`` on again, GPU 0 whatever the device), printing
    to stdout. The next of auto's providers is tried, with its options, and a warning says why."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    asked = _gpu_sessions_fail_to_start(gpu_onnxruntime, monkeypatch, TENSORRT)
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.runtimes.onnxruntime"), \
            OnnxRuntimeBackend(cls_onnx, io_binding=False) as backend:
        assert backend.info.device == CUDA and backend.info.details["providers"] == [CUDA, CPU]
    assert [p if isinstance(p, str) else p[0] for p in asked[0]] == [TENSORRT, CUDA, CPU]
    assert asked[1:] == [[(CUDA, {"device_id": 0, "use_tf32": 0}), CPU]]
    assert capfd.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == [
        f"model.onnx: ONNX Runtime's {TENSORRT} failed to start a session of it ({OUT_OF_MEMORY}); trying {CUDA}"]
