"""ONNX Runtime's providers where onnxruntime-gpu lists a CUDA provider that cannot run (session 50, helper CZ): no GPU,
or no cuDNN. ``auto`` chose the TensorRT and CUDA providers from the list (the TensorRT one where TensorRT's libraries
load), and the session fell back to the CPU with ONNX Runtime's log on the terminal, without the CPU session's own
settings; ``cuda`` and ``tensorrt`` were refused only after it, 'ONNX Runtime printed the reason above'. The one probe
doctor makes (a session of a one-node graph) now decides for both, once per process, after the pip packages' CUDA and
cuDNN are loaded as for every GPU session.

No GPU here: onnxruntime-gpu is a stand-in (its three providers listed, a driver answering one device or none,
sessions over real CPU sessions that log what onnxruntime-gpu logs without cuDNN), as in test_doctor_49b/50."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_ort_providers
from cli_run import run

from pvt_deploy.errors import BackendUnavailableError
from pvt_deploy.runtimes import ort_providers
from pvt_deploy.runtimes.ort_providers import CPU, CUDA, TENSORRT, select_providers

pytest_plugins = ["export_fixtures"]

cls_onnx = test_ort_providers.cls_onnx  # a fixture: the 64 px classifier's model.onnx and manifest.json, copied

NO_CUDNN_LOG = (
    "2026-12-07 12:00:00.123456789 [E:onnxruntime:Default, provider_bridge_ort.cc:2251 TryGetProviderInfo_CUDA] "
    "[ONNXRuntimeError] : 1 : FAIL : Failed to load library libonnxruntime_providers_cuda.so with error: "
    "libcudnn.so.9: cannot open shared object file: No such file or directory\n")
CUDNN_MISSING = ("Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open "
                 "shared object file: No such file or directory")
CUDNN_HINT = ("pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA and cuDNN from pip), or install the CUDA and cuDNN "
              "this onnxruntime-gpu was built for")


@pytest.fixture
def gpu_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """onnxruntime-gpu: ``cuda`` says whether a session asked for a GPU provider starts on CUDA ("starts"), logs that
    cuDNN is missing and runs on the CPU ("no cuDNN"), starts only after ``onnxruntime.preload_dlls`` ("pip cuDNN":
    CUDA and cuDNN from pip packages), or whether the driver sees no GPU ("no GPU"); ``trt_libraries`` whether
    TensorRT's libraries load (they do). ``events``: the pip packages' libraries preloaded, and each session's
    providers asked. test_doctor_50 uses it too."""
    import onnxruntime

    state: dict[str, Any] = {"cuda": "no cuDNN", "trt_libraries": True, "events": []}

    class Session(onnxruntime.InferenceSession):  # type: ignore[misc]
        def __init__(self, model: Any, sess_options: Any = None, providers: Any = None, **kwargs: Any) -> None:
            names = [p if isinstance(p, str) else p[0] for p in providers or []]
            state["events"].append(list(providers or []))
            gpu = bool({CUDA, TENSORRT} & set(names))
            starts = state["cuda"] == "starts" or (state["cuda"] == "pip cuDNN" and "preloaded" in state["events"])
            if gpu and not starts:
                os.write(2, NO_CUDNN_LOG.encode())
            super().__init__(model, sess_options=sess_options, providers=[CPU], **kwargs)  # really loaded and run
            self.on = [CUDA, CPU] if gpu and starts else [CPU]

        def get_providers(self) -> list[str]:
            return list(self.on)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: state["events"].append("preloaded"), raising=False)
    monkeypatch.setattr(ort_providers, "_preloaded", False, raising=False)
    monkeypatch.setattr(ort_providers, "_probed", {}, raising=False)
    monkeypatch.setattr(ort_providers, "cuda_device_count", lambda: None if state["cuda"] == "no GPU" else 1)
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: state["trt_libraries"])
    return state


@pytest.mark.parametrize(("cuda", "problem", "hint"), [
    ("no cuDNN", f"{CUDA} does not start: {CUDNN_MISSING}", CUDNN_HINT),
    ("no GPU", "no CUDA device (no NVIDIA driver answers)",
     "the CUDA provider needs an NVIDIA GPU and its driver (in Docker: docker run --gpus all)"),
])
def test_auto_does_not_choose_a_gpu_provider_that_cannot_run(
        gpu_onnxruntime: dict[str, Any], cuda: str, problem: str, hint: str, caplog: pytest.LogCaptureFixture) -> None:
    """``auto`` chose the TensorRT EP (its libraries load) and the CUDA one, which both run on the CUDA provider's
    libraries and GPU: it takes the CPU, saying why once; ``cuda`` and ``tensorrt`` are refused in one line that says
    what is missing and how to get it. The probe is made once per process (after the pip packages' CUDA and cuDNN are
    preloaded), not per session."""
    gpu_onnxruntime["cuda"] = cuda
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.runtimes.ort_providers"):
        assert select_providers() == [CPU]
        assert select_providers("auto", fp16=True) == [CPU]
    assert [r.getMessage() for r in caplog.records] == [
        f"ONNX Runtime's CUDA provider cannot run here ({problem}): running on the CPU ({hint})"]
    probe = [] if cuda == "no GPU" else ["preloaded", [(CUDA, {"device_id": 0}), CPU]]
    assert gpu_onnxruntime["events"] == probe
    for device, what in (("cuda", "ONNX Runtime's CUDA provider"),
                         ("tensorrt", "ONNX Runtime's TensorRT provider runs on its CUDA provider, which")):
        with pytest.raises(BackendUnavailableError) as refused:
            select_providers(device)
        assert refused.value.args[0] == f"{what} cannot run here: {problem}"
        assert refused.value.hint == f"{hint}; or use device cpu"
    assert gpu_onnxruntime["events"] == probe  # asked once
    assert select_providers("cpu") == [CPU]


def test_auto_and_cuda_choose_the_gpu_where_the_cuda_provider_runs(gpu_onnxruntime: dict[str, Any]) -> None:
    """Where the probe's session runs on the CUDA provider, the choice is the list's, as before; a GPU other than
    the first is probed on itself."""
    gpu_onnxruntime["cuda"] = "starts"
    assert [p if isinstance(p, str) else p[0] for p in select_providers()] == [TENSORRT, CUDA, CPU]
    assert select_providers("cuda", device_id=1)[0] == (CUDA, {"device_id": 1, "use_tf32": 0})
    assert gpu_onnxruntime["events"] == ["preloaded", [(CUDA, {"device_id": 0}), CPU], [(CUDA, {"device_id": 1}), CPU]]


def test_doctor_probes_the_cuda_provider_as_a_run_starts_it(gpu_onnxruntime: dict[str, Any]) -> None:
    """doctor's probe session was made without ``onnxruntime.preload_dlls``, which every GPU session of a run is made
    after: with CUDA and cuDNN from pip (``pip install 'onnxruntime-gpu[cuda,cudnn]'``, its own row's hint, and
    no PyTorch imported first) it said 'does not start: libcudnn.so.9 ...' where infer ran on the GPU. One probe,
    the libraries loaded first, answers both."""
    from pvt_deploy import doctor

    gpu_onnxruntime["cuda"] = "pip cuDNN"
    rows = {c.key: c for c in doctor._onnxruntime()}
    assert rows["onnxruntime_cuda"].status == "ok", rows["onnxruntime_cuda"]
    assert rows["onnxruntime"].info["tensorrt_provider_usable"] is True
    assert gpu_onnxruntime["events"] == ["preloaded", [(CUDA, {"device_id": 0}), CPU]]
    assert [p if isinstance(p, str) else p[0] for p in select_providers()] == [TENSORRT, CUDA, CPU]


def test_infer_without_cudnn_runs_on_the_cpu_or_is_refused_in_one_line(
        gpu_onnxruntime: dict[str, Any], cls_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """``infer --device cuda`` without cuDNN: exit 3 and one line with ONNX Runtime's reason and the pip install,
    where it printed its log and the refusal said 'ONNX Runtime printed the reason above'. Without ``--device``
    the run is a CPU one from the start (the session asked for the CPU provider alone: its CPU settings, no TensorRT
    engine folder made beside the model), with one warning."""
    import cv2
    import numpy as np

    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.runtimes.ort_providers"):
        code, out, err = run(monkeypatch, capfd, "infer", str(image), "--model", str(cls_onnx), "--no-save")
    assert code == 0, err
    assert "on onnxruntime CPUExecutionProvider fp32" in err
    said = [r.getMessage() for r in caplog.records if "CUDA provider cannot run here" in r.getMessage()]
    assert len(said) == 1 and f"({CUDA} does not start: {CUDNN_MISSING}): running on the CPU" in said[0], said
    assert "[E:onnxruntime" not in err and "EP Error" not in out  # ONNX Runtime's own log, held back
    sessions = [e for e in gpu_onnxruntime["events"] if isinstance(e, list)]
    assert sessions[0] == [(CUDA, {"device_id": 0}), CPU] and sessions[1:] and all(s == [CPU] for s in sessions[1:])
    assert not (cls_onnx.parent / ".ort-cache" / "tensorrt").exists()
    code, out, err = run(monkeypatch, capfd, "infer", str(image), "--model", str(cls_onnx), "--device", "cuda",
                         "--no-save")
    assert code == 3, err
    assert err == (f"error: ONNX Runtime's CUDA provider cannot run here: {CUDA} does not start: {CUDNN_MISSING} "
                   f"({CUDNN_HINT}; or use --device cpu)\n")


def _gpu_runs_fail(gpu_onnxruntime: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                   which: Callable[[Any], bool]) -> None:
    """The CUDA provider starts (TensorRT's libraries do not load), and fails each run (``EPFail``: 'no kernel image
    is available for execution on the device') of a session started on it whose ``sess_options`` ``which`` takes."""
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

    class Failing:  # the C session's run, as the CUDA provider fails it; set_providers makes a new one
        def __init__(self, session: Any) -> None:
            self._session = session

        def run(self, *args: Any) -> Any:
            raise EPFail("CUDA failure 209: no kernel image is available for execution on the device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._session, name)

    stand_in = onnxruntime.InferenceSession

    class FailsOnGpu(stand_in):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.on[0] == CUDA and which(kwargs.get("sess_options")):
                self._sess = Failing(self._sess)

    gpu_onnxruntime["cuda"] = "starts"
    monkeypatch.setattr(onnxruntime, "InferenceSession", FailsOnGpu)
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: False)


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_run_the_gpu_provider_fails_is_not_moved_to_the_cpu(
        device: str, gpu_onnxruntime: dict[str, Any], cls_onnx: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """A session that started on the CUDA provider and whose run it fails (``EPFail``: 'no kernel image is available
    for execution on the device', a GPU this build has no kernels for) was moved to the CPU by ONNX Runtime's Python
    side, which printed 'EP Error ... Falling back' to stdout and ran that call and every later one on the CPU, the
    backend still saying CUDA. The failure is one line, and the session stays where it was."""
    import numpy as np

    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    # the model's sessions (the CUDA provider's probe, of a one-node graph without sess_options, runs: an operator
    # of the model's fails; a GPU this build has no kernels for fails the probe's too, and auto runs on the CPU)
    _gpu_runs_fail(gpu_onnxruntime, monkeypatch, lambda options: options is not None)
    with OnnxRuntimeBackend(cls_onnx, device=device, io_binding=False) as backend:
        assert backend.info.device == CUDA
        capfd.readouterr()
        with pytest.raises(PvtDeployError) as failed:
            backend.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})
        assert failed.value.args[0] == ("model.onnx: ONNX Runtime failed: CUDA failure 209: no kernel image is "
                                        "available for execution on the device")
        assert capfd.readouterr().out == ""  # no 'EP Error ... Falling back to CPU' print


# --- the loader's choices follow the providers the session gets (helper DA) ----------------------------------

@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_where_the_cuda_provider_cannot_run_the_graph_and_note_are_the_cpus(
        gpu_onnxruntime: dict[str, Any], det_artifact: Any, precision: str, caplog: pytest.LogCaptureFixture) -> None:
    """Where the CUDA provider cannot run (``auto`` runs on the CPU), the INT8 flavour was still chosen by ONNX
    Runtime's list: TensorRT's (``model.int8.trt.onnx``, its provider listed) ran on the CPU beside the CPU's own
    flavour; and an FP16 graph on the CPU got no 'slower than FP32' warning. Both follow the session now."""
    from pvt_deploy.runtimes.loader import int8_onnx_file, load_backend

    folder = det_artifact.folder
    assert (folder / "model.int8.onnx").is_file() and (folder / "model.int8.trt.onnx").is_file()
    name = {"int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}[precision]
    if precision == "int8":
        assert int8_onnx_file(folder) == name
    with caplog.at_level(logging.WARNING), load_backend(folder, backend="onnx", precision=precision)[0] as backend:
        assert Path(backend.info.details["file"]).name == name and backend.info.device == CPU
    slower = [r.getMessage() for r in caplog.records if "slower than FP32" in r.getMessage()]
    assert slower == ([f"{name}: an FP16 graph on the CPU runs through casts and is slower than FP32"]
                      if precision == "fp16" else [])
    sessions = [e for e in gpu_onnxruntime["events"] if isinstance(e, list)]
    assert sessions == [[(CUDA, {"device_id": 0}), CPU], [CPU]]  # the probe, then a CPU session alone


def test_the_int8_flavour_is_tensorrts_where_the_session_runs_it_on_a_gpu(
        gpu_onnxruntime: dict[str, Any], det_artifact: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same where the CUDA provider runs: TensorRT's flavour where the session gets the TensorRT EP, the CPU's
    where TensorRT's libraries do not load (``auto``: CUDA, and an INT8 graph then on the CPU). ``cuda`` takes
    TensorRT's flavour, as the list chose it before: the CUDA provider has a kernel for each of its nodes (int8
    Q/DQ around float ops) and none for the CPU flavour's dynamic INT8 (a classifier's ``DynamicQuantizeLinear`` and
    uint8 ``MatMulInteger``), which ran on the CPU between copies; the row and the load say the same."""
    from pvt_deploy.runtimes.loader import backend_candidates, int8_onnx_file, load_backend

    folder = det_artifact.folder
    gpu_onnxruntime["cuda"] = "starts"
    assert int8_onnx_file(folder) == "model.int8.trt.onnx"  # the TensorRT EP builds it
    assert int8_onnx_file(folder, "cpu") == "model.int8.onnx"
    monkeypatch.setattr(ort_providers, "tensorrt_libraries_load", lambda: False)
    assert int8_onnx_file(folder, "tensorrt") == "model.int8.trt.onnx"  # asked by name: tried (and refused)
    assert int8_onnx_file(folder) == "model.int8.onnx"
    for device in ("cuda", "cuda:0", "0"):
        assert int8_onnx_file(folder, device) == "model.int8.trt.onnx", device
    row = next(c for c in backend_candidates(folder, device="cuda") if c.label == "onnx-int8")
    assert row.available and row.file == "model.int8.trt.onnx" and row.reason == "", row
    with load_backend(folder, backend="onnx", precision="int8", device="cuda")[0] as backend:
        assert Path(backend.info.details["file"]).name == "model.int8.trt.onnx" and backend.info.device == CUDA


@pytest.mark.parametrize("cuda", ["no cuDNN", "no GPU"])
def test_candidate_rows_say_up_front_that_the_cuda_provider_cannot_run(
        gpu_onnxruntime: dict[str, Any], det_artifact: Any, cuda: str) -> None:
    """info/bench/check's rows asked ``select_providers`` with the list alone: for ``--device cuda`` the ONNX rows
    were available and the load was then refused. They now say why up front (the probe, once per process and GPU);
    with ``auto`` they run on the CPU: its INT8 flavour and the FP16 note."""
    from pvt_deploy.runtimes.loader import backend_candidates

    gpu_onnxruntime["cuda"] = cuda
    problem, hint = (f"{CUDA} does not start: {CUDNN_MISSING}", CUDNN_HINT) if cuda == "no cuDNN" else (
        "no CUDA device (no NVIDIA driver answers)",
        "the CUDA provider needs an NVIDIA GPU and its driver (in Docker: docker run --gpus all)")
    rows = {c.label: c for c in backend_candidates(det_artifact.folder, device="cuda")}
    for label in ("onnx", "onnx-fp16", "onnx-int8"):
        assert not rows[label].available and rows[label].exit_code == 3, rows[label]
        assert rows[label].reason == (f"ONNX Runtime's CUDA provider cannot run here: {problem} "
                                      f"({hint}; or use device cpu)")
    rows = {c.label: c for c in backend_candidates(det_artifact.folder)}
    assert all(rows[label].available for label in ("onnx", "onnx-fp16", "onnx-int8")), rows
    assert rows["onnx-int8"].file == "model.int8.onnx" and rows["onnx-int8"].reason == ""
    assert rows["onnx-fp16"].reason == "CPU only: FP16 runs through casts and is slower than FP32 here"
    probes = [e for e in gpu_onnxruntime["events"] if e == [(CUDA, {"device_id": 0}), CPU]]
    assert len(probes) == (0 if cuda == "no GPU" else 1)


def test_probes_on_two_threads_at_once_leave_stderr_and_stdout_as_they_were(
        gpu_onnxruntime: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe holds back what ONNX Runtime says by pointing descriptor 2 at a temporary file and ``sys.stdout`` at a
    buffer while its session starts, then puts back what it found. Two probes at once (a server loading a model per
    GPU on threads, the first sessions of a process) each put back what it found: the one that ended last put back the
    other's temporary file as descriptor 2 (deleted: all the process wrote to stderr from then on was lost) and its
    buffer as ``sys.stdout``. One probe runs at a time."""
    import sys
    import threading

    import numpy as np
    import onnxruntime

    inside = {0: threading.Event(), 1: threading.Event()}
    first_done = threading.Event()

    class Session:  # the CUDA provider starts on either GPU; GPU 1's probe, where nothing stops it, begins while
        def __init__(self, model: Any, providers: Any = None, **kwargs: Any) -> None:  # GPU 0's starts, ends after
            device = providers[0][1]["device_id"]
            inside[device].set()
            if device == 0:
                inside[1].wait(2)  # one at a time: GPU 1's waits for this one, which goes on
            else:
                first_done.wait(10)

        def get_providers(self) -> list[str]:
            return [CUDA, CPU]

        def disable_fallback(self) -> None:
            pass

        def run(self, *args: Any) -> list[Any]:
            return [np.ones(1, np.float32)]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(ort_providers, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # put back at teardown, whatever the probes leave
    stderr, stdout, kept = os.fstat(2), sys.stdout, os.dup(2)
    answers: dict[int, Any] = {}

    def probe(device: int) -> None:
        if device == 1:
            inside[0].wait(10)
        answers[device] = ort_providers.cuda_provider(device)
        if device == 0:
            first_done.set()

    threads = [threading.Thread(target=probe, args=(device,)) for device in (0, 1)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        now = os.fstat(2)
        assert (now.st_dev, now.st_ino) == (stderr.st_dev, stderr.st_ino)  # not a probe's temporary file
        assert sys.stdout is stdout
    finally:
        os.dup2(kept, 2)
        os.close(kept)
    assert sorted(answers) == [0, 1] and all(a.problem is None for a in answers.values()), answers


def test_the_profiling_session_on_a_gpu_is_not_moved_to_the_cpu_either(
        gpu_onnxruntime: dict[str, Any], cls_onnx: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """``profile`` (``bench --profile``) runs a second session of the graph with the backend's providers; where the
    provider failed its run (``EPFail``) ONNX Runtime's Python side still printed 'EP Error ... Falling back' to
    stdout (into ``bench --json``'s output) and timed the CPU's nodes instead. It fails in one line, as a run does."""
    import numpy as np

    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    _gpu_runs_fail(gpu_onnxruntime, monkeypatch, lambda options: getattr(options, "enable_profiling", False))
    with OnnxRuntimeBackend(cls_onnx, device="cuda", io_binding=False) as backend:
        capfd.readouterr()
        with pytest.raises(PvtDeployError) as failed:
            backend.profile({"images": np.zeros((1, 3, 64, 64), np.float32)}, calls=1)
        assert failed.value.args[0] == ("model.onnx: ONNX Runtime's profiler failed: CUDA failure 209: no kernel image "
                                        "is available for execution on the device")
        assert capfd.readouterr().out == ""  # no 'EP Error ... Falling back to CPU' print
