"""`pvt-deploy doctor` (session 49, helper CN): ONNX Runtime's CUDA provider is probed by a session, not read off
the provider list; ``--json`` carries the verdict; ``required_parts`` names its own arguments; and export hands
export_onnx no flag of its own (``_model_checked`` went in session 50) among the options.

No GPU here: the CUDA provider's session is a stand-in over a real CPU session of the probe's graph (so the graph
doctor builds is really loaded and run), which says what onnxruntime-gpu says where it starts, or where it cannot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cli_run import run

from pvt_deploy import doctor
from pvt_deploy.runtimes import ort_providers

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
#: What onnxruntime-gpu 1.2x logs where cuDNN is not installed (descriptor 2), then it runs on the CPU.
NO_CUDNN_LOG = (
    "2026-12-07 12:00:00.123456789 [E:onnxruntime:Default, provider_bridge_ort.cc:2251 TryGetProviderInfo_CUDA] "
    "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1844 onnxruntime::Provider& "
    "onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
    "libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file: No such file or "
    "directory\n"
    "2026-12-07 12:00:00.123500000 [W:onnxruntime:Default, onnxruntime_pybind_state.cc:1174 "
    "CreateExecutionProviderInstance] Failed to create CUDAExecutionProvider. Require cuDNN 9.* and CUDA 12.*.\n")
CUDNN_MISSING = ("Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open "
                 "shared object file: No such file or directory")


#: What the CUDA provider raises while a session starts (a driver older than its CUDA), as ONNX Runtime words it.
DRIVER_TOO_OLD = ("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 35: CUDA driver version is insufficient for CUDA "
                  "runtime version ; GPU=0 ; expr=cudaSetDevice(info_.device_id);")
#: What it raises where a run fails on a GPU this build has no kernels for (``EPFail``).
NO_KERNEL = "[ONNXRuntimeError] : 11 : EP_FAIL : CUDA failure 209: no kernel image is available for execution on the device"


@pytest.fixture
def gpu_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """onnxruntime-gpu on a machine with one GPU: the CUDA provider listed, the driver answering 1 device, and
    ``InferenceSession`` a stand-in whose behaviour the test sets (``how``): "starts" (on CUDA), "no cuDNN"
    (logged, then the CPU, as the C++ side does), "raises" (while the session starts: :data:`DRIVER_TOO_OLD`),
    "run fails" (starts on CUDA, its run raises ``EPFail``: :data:`NO_KERNEL`). ONNX Runtime's own Python side
    (its ``InferenceSession``, the stand-in's base) does what it does with those: with its fallback on, it prints
    'EP Error ...' and retries on the CPU. ``old``: it ignores ``enable_fallback``, as 1.22 and older do."""
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

    state: dict[str, Any] = {"how": "starts", "sessions": [], "old": False}

    class Failing:  # the C session's run, as the CUDA provider fails it; set_providers makes a new one
        def __init__(self, session: Any) -> None:
            self._session = session

        def run(self, *args: Any) -> Any:
            raise EPFail(NO_KERNEL)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._session, name)

    class Session(onnxruntime.InferenceSession):  # type: ignore[misc]
        def __init__(self, model: Any, providers: Any = None, **kwargs: Any) -> None:
            state["sessions"].append(providers)
            if state["how"] == "no cuDNN":
                os.write(2, NO_CUDNN_LOG.encode())
            if state["old"]:
                kwargs.pop("enable_fallback", None)
            super().__init__(model, providers=providers, **kwargs)

        def _create_inference_session(self, providers: Any, provider_options: Any, disabled_optimizers: Any = None,
                                      ) -> None:
            gpu = CUDA in [p if isinstance(p, str) else p[0] for p in providers or []]
            if gpu and state["how"] == "raises":
                self._fallback_providers = [CPU]
                raise RuntimeError(DRIVER_TOO_OLD)
            super()._create_inference_session([CPU], None, disabled_optimizers)  # the graph is really loaded
            self.on = [CUDA, CPU] if gpu and state["how"] in ("starts", "run fails") else [CPU]
            if gpu and state["how"] == "run fails":
                self._sess = Failing(self._sess)

        def get_providers(self) -> list[str]:
            return list(self.on)

        def run(self, *args: Any, **kwargs: Any) -> Any:
            out = super().run(*args, **kwargs)
            state["ran"] = out
            return out

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort_providers, "cuda_device_count", lambda: 1)
    return state


def rows() -> dict[str, doctor.Check]:
    return {c.key: c for c in doctor._onnxruntime()}


def test_onnxruntime_cuda_is_ok_only_where_a_session_starts_and_runs_on_it(
        gpu_onnxruntime: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """The ONNX Runtime row said "ok; providers: CUDA, CPU" wherever onnxruntime-gpu was installed, and ``doctor
    --require gpu`` looked at PyTorch only: an image without cuDNN passed. A session of a one-node graph is started on
    the CUDA provider and run; the row below ONNX Runtime's says whether it ran there, and why not, in ONNX Runtime's
    words, which do not reach the terminal or --json's output (the log on descriptor 2, the prints on stdout)."""
    checks = rows()
    assert checks["onnxruntime_cuda"].status == "ok", checks["onnxruntime_cuda"]
    assert checks["onnxruntime_cuda"].summary == f"a session runs on {CUDA} (device 0 of 1)"
    assert checks["onnxruntime"].summary.endswith("providers: CUDA, CPU")
    assert checks["onnxruntime"].info["cuda_provider_usable"] is True
    assert gpu_onnxruntime["sessions"] == [[(CUDA, {"device_id": 0}), CPU]]
    assert gpu_onnxruntime["ran"][0].tolist() == [2.0]  # the graph doctor built, run: x + x of 1
    for how, reason, providers in (
            ("no cuDNN", CUDNN_MISSING, [CPU]),  # left out by ONNX Runtime: its log says why
            ("raises", "RuntimeError: CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version "
                       "; GPU=0 ; expr=cudaSetDevice(info_.device_id);", []),  # no session
            ("run fails", "EPFail: CUDA failure 209: no kernel image is available for execution on the device",
             [CUDA, CPU])):  # its run raised, the session not moved to the CPU
        gpu_onnxruntime["how"] = how
        capfd.readouterr()
        checks = rows()
        assert capfd.readouterr() == ("", ""), how  # held back and read, not printed
        row = checks["onnxruntime_cuda"]
        assert (row.status, row.summary) == ("missing", f"{CUDA} does not start: {reason}"), how
        assert row.hint == ("pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA and cuDNN from pip), or install the CUDA "
                            "and cuDNN this onnxruntime-gpu was built for")
        assert row.info["session_providers"] == providers, how
        assert checks["onnxruntime"].status == "ok"  # the CPU provider pvt-deploy needs works
        assert checks["onnxruntime"].summary.endswith("providers: CUDA (unused: does not start), CPU")
        assert checks["onnxruntime"].info["cuda_provider_usable"] is False
    gpu_onnxruntime.update(how="raises", old=True)  # ONNX Runtime 1.22: its fallback, whatever it was asked
    capfd.readouterr()
    row = rows()["onnxruntime_cuda"]
    assert capfd.readouterr() == ("", "")  # its 'EP Error ... Falling back' held back, and quoted
    assert row.summary.startswith(f"{CUDA} does not start: ONNX Runtime runs the session on {CPU} and said: "), row
    assert "CUDA failure 35: CUDA driver version is insufficient" in row.summary and row.info["session_providers"] == [CPU]
    gpu_onnxruntime["old"] = False
    # through the CLI: optional (exit 0) until required; --json's output is JSON all the same
    gpu_onnxruntime["how"] = "no cuDNN"
    monkeypatch.setattr(doctor, "_tensorrt", lambda: [doctor.Check("tensorrt", "TensorRT", "ok")])
    code, out, err = run(monkeypatch, capfd, "doctor", "--json", "--no-encoders")
    assert (code, err) == (0, ""), err
    component = json.loads(out)["components"]["onnxruntime_cuda"]
    assert component["summary"] == f"{CUDA} does not start: {CUDNN_MISSING}"
    assert "libcudnn.so.9" in component["info"]["log"]
    for require in ("onnxruntime_cuda", "ORT_CUDA", "tensorrt,gpu"):
        code, out, err = run(monkeypatch, capfd, "doctor", "--no-encoders", "--require", require)
        assert code == 3, (require, err)
        assert f"ONNX Runtime CUDA missing: {CUDA} does not start: {CUDNN_MISSING}" in err, err
        assert "pip install 'onnxruntime-gpu[cuda,cudnn]'" in err  # and how to mend it
        assert "ONNX Runtime CUDA" in out and "libcudnn.so.9" in out  # the table's row
    gpu_onnxruntime["how"] = "starts"
    code, _, err = run(monkeypatch, capfd, "doctor", "--no-encoders", "--require", "onnxruntime_cuda,tensorrt")
    assert (code, err) == (0, "")


def test_onnxruntime_cuda_without_a_gpu_or_in_a_cpu_build_is_missing_without_a_session(
        gpu_onnxruntime: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """No driver or no device: no session is started (it would only log), the row says which; the CPU build of
    onnxruntime (this machine's) has no CUDA provider to try."""
    for devices, summary in ((None, "no CUDA device (no NVIDIA driver answers)"), (0, "no CUDA device")):
        monkeypatch.setattr(ort_providers, "cuda_device_count", lambda d=devices: d)
        checks = rows()
        row = checks["onnxruntime_cuda"]
        assert (row.status, row.summary) == ("missing", summary)
        assert row.hint == "the CUDA provider needs an NVIDIA GPU and its driver (in Docker: docker run --gpus all)"
        assert checks["onnxruntime"].summary.endswith("providers: CUDA (unused: no GPU), CPU")
    assert gpu_onnxruntime["sessions"] == []
    monkeypatch.undo()
    row = rows()["onnxruntime_cuda"]
    assert (row.status, row.summary) == ("missing", "this onnxruntime has no CUDA provider (a CPU build)")
    assert row.hint == "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (on a machine with an NVIDIA GPU)"


def test_require_gpu_is_pytorchs_cuda_and_onnxruntimes(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``gpu`` is each runtime pvt-deploy runs on a GPU with, so that ``doctor --require gpu,tensorrt`` (the README's
    check of an image) fails where either is not usable: PyTorch's CUDA working, ONNX Runtime's not, is exit 3."""
    assert doctor.required_parts(["gpu", "cuda"]) == ["cuda", "onnxruntime_cuda"]
    assert doctor.required_parts(["ort_cuda,trt"]) == ["onnxruntime_cuda", "tensorrt"]
    real = doctor.collect

    def collect(**kwargs: Any) -> list[doctor.Check]:
        checks = real(**kwargs)
        for c in checks:
            if c.key in ("cuda", "tensorrt"):
                c.status = "ok"
        return checks

    monkeypatch.setattr(doctor, "collect", collect)
    code, _, err = run(monkeypatch, capsys, "doctor", "--no-encoders", "--require", "gpu,tensorrt")
    assert (code, err) == (3, "error: --require asks for, and this machine cannot use: gpu's ONNX Runtime CUDA missing: "
                              "this onnxruntime has no CUDA provider (a CPU build) (pip uninstall -y onnxruntime && "
                              "pip install onnxruntime-gpu (on a machine with an NVIDIA GPU))\n")
    code, _, err = run(monkeypatch, capsys, "doctor", "--no-encoders", "--require", "cuda,tensorrt")
    assert (code, err) == (0, "")


def test_doctor_json_carries_the_verdict_its_exit_code_gives(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``doctor --json`` held the components only: a script had to read the exit code and parse its line on stderr
    to learn which parts failed. Its "verdict" says it by row key; the components are as they were."""
    import sys
    import types

    rows = {c.key: c for c in doctor.collect(probe_encoders=False)}
    code, out, _ = run(monkeypatch, capsys, "doctor", "--json", "--no-encoders")
    report = json.loads(out)
    assert set(report) == {"components", "verdict"} and set(report["components"]) == set(rows)
    assert (code, report["verdict"]) == (0, {"ok": True, "broken": [], "lacking": [], "required": []})
    monkeypatch.setattr(doctor, "_tensorrt", lambda: [doctor.Check("tensorrt", "TensorRT", "ok", "10.9.0")])
    code, out, _ = run(monkeypatch, capsys, "doctor", "--json", "--no-encoders", "--require", "tensorrt,gpu")
    lacking = [k for k in ("cuda", "onnxruntime_cuda") if rows[k].status != "ok"]  # both, on a machine without a GPU
    assert (code, json.loads(out)["verdict"]) == (3 if lacking else 0, {
        "ok": not lacking, "broken": [], "lacking": lacking, "required": ["tensorrt", "cuda", "onnxruntime_cuda"]})
    monkeypatch.setitem(sys.modules, "onnxruntime", types.ModuleType("onnxruntime"))  # importable, nothing works
    code, out, _ = run(monkeypatch, capsys, "doctor", "--json", "--no-encoders", "--require", "trt")
    assert (code, json.loads(out)["verdict"]) == (1, {"ok": False, "broken": ["onnxruntime"], "lacking": [],
                                                      "required": ["tensorrt"]})
    assert doctor.to_json([doctor.Check("tensorrt", "TensorRT", "missing")], ["tensorrt"])["verdict"] == {
        "ok": False, "broken": [], "lacking": ["tensorrt"], "required": ["tensorrt"]}


def test_required_parts_names_its_own_arguments(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``doctor.required_parts`` called from Python said '--require gpus' and 'drop --no-encoders', options of a
    command the caller did not run: it names its arguments (``require``, ``probe_encoders=True``), the CLI its
    options, as the project's other errors do."""
    from pvt_deploy.errors import InputError

    choose = ("choose from cuda, onnxruntime_cuda, tensorrt, h264_encoders, tritonclient, cpu_int8 "
              "(or gpu, ort_cuda, trt, triton, h264); the other parts are always required")
    with pytest.raises(InputError) as e:
        doctor.required_parts(["gpus"])
    assert str(e.value) == f"require gpus: {choose}"
    with pytest.raises(InputError) as e:
        doctor.required_parts(["tensorrt,H264"], probe_encoders=False)
    assert str(e.value) == "require h264 needs the encoders opened (probe_encoders=True)"
    assert doctor.required_parts(["tensorrt,H264"]) == ["tensorrt", "h264_encoders"]
    for args, said in ((["--require", "gpus"], f"--require gpus: {choose}"),
                       (["--no-encoders", "--require", "h264"], "--require h264 needs the encoders opened (--encoders)")):
        assert run(monkeypatch, capsys, "doctor", *args) == (2, "", f"error: {said}\n")


def test_export_takes_no_model_checked_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export(**onnx_options) hands its options to export_onnx, whose signature listed model_checked, the flag export
    itself passed (84aa096): export(..., model_checked=True) failed 'got multiple values for keyword argument'. The
    flag went (session 50): the check is a moment's (a path looked up, a zoo name), so export_onnx makes it whoever
    calls, and model_checked (or _model_checked) is an option export_onnx does not take, as any other."""
    import inspect

    from pvt_deploy.errors import InputError, ModelNotFoundError
    from pvt_deploy.export import export
    from pvt_deploy.export import onnx as export_onnx

    parameters = inspect.signature(export_onnx.export_onnx).parameters
    assert not {"model_checked", "_model_checked"} & set(parameters)
    checked: list[object] = []
    real = export_onnx.check_model_named
    monkeypatch.setattr(export_onnx, "check_model_named", lambda *a: checked.append(a[0]) or real(*a))
    with pytest.raises(TypeError, match="unexpected keyword argument 'model_checked'"):
        export("pvt_v2_b0-cls", tmp_path / "x", model_checked=True)
    assert checked == ["pvt_v2_b0-cls"]  # export's own check, before the call export_onnx refused
    checked.clear()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="exists and is not a folder"):
        export_onnx.export_onnx("pvt_v2_b0-cls", tmp_path / "file")
    assert checked == ["pvt_v2_b0-cls"]
    with pytest.raises(ModelNotFoundError, match="no such checkpoint file"):
        export("ckpts/gone.pth", tmp_path / "y", format="trt")  # before TensorRT is looked for (absent here)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
