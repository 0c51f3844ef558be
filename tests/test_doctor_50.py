"""`pvt-deploy doctor` (session 50, helper CY): what ``--require gpu`` means and what its failure says, the TensorRT
provider marked unused where the CUDA provider it runs on does not start, and the H.264 row's claim of the size its
encoders were opened at.

No GPU here: onnxruntime-gpu is a stand-in (the CUDA provider listed, a driver answering one device, sessions over
real CPU sessions of the probe's graph), as in test_doctor_49b; the encoders are PyAV's own."""

from __future__ import annotations

from typing import Any

import pytest
import test_ort_providers_50
from cli_run import run

from pvt_deploy import doctor

CPU_ORT_HINT = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (on a machine with an NVIDIA GPU)"

#: onnxruntime-gpu's stand-in (its three providers listed, a driver answering one device): ``cuda``, "starts" or
#: "no cuDNN"; ``trt_libraries``, whether TensorRT's libraries load
gpu_onnxruntime = test_ort_providers_50.gpu_onnxruntime


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


def test_require_gpu_without_onnxruntime_gpu_says_what_is_missing_and_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A machine with PyTorch's CUDA and the CPU onnxruntime (this one's, its CUDA row made ok): ``--require gpu``
    (pvt-deploy runs on the GPU: an export's model.onnx too) fails, exit 3, and its line said 'ONNX Runtime CUDA
    missing' only. It says that gpu asked for it, why it is missing and the pip install of onnxruntime-gpu; ``cuda``
    asks for PyTorch's alone."""
    real = doctor.collect

    def collect(**kwargs: Any) -> list[doctor.Check]:
        checks = real(**kwargs)
        for c in checks:
            if c.key == "cuda":
                c.status, c.summary, c.hint = "ok", "cuda:0 a stand-in GPU", None
        return checks

    monkeypatch.setattr(doctor, "collect", collect)
    code, out, err = run(monkeypatch, capsys, "doctor", "--no-encoders", "--require", "gpu")
    assert (code, err) == (3, "error: --require asks for, and this machine cannot use: gpu's ONNX Runtime CUDA "
                              f"missing: this onnxruntime has no CUDA provider (a CPU build) ({CPU_ORT_HINT})\n")
    assert "ONNX Runtime CUDA" in out  # the table is printed before
    code, _, err = run(monkeypatch, capsys, "doctor", "--no-encoders", "--require", "cuda")
    assert (code, err) == (0, "")
    code, _, err = run(monkeypatch, capsys, "doctor", "--no-encoders", "--require", "onnxruntime_cuda", "--require",
                       "tritonclient")
    assert code == 3 and err.startswith("error: --require asks for, and this machine cannot use: ONNX Runtime CUDA "
                                        "missing: this onnxruntime has no CUDA provider"), err  # asked by its name


def test_several_parts_lacking_each_say_why_and_their_hints_their_names() -> None:
    """Where ``--require`` lacks several parts, each is said with its why, and each hint after its part's name; a part
    asked for by its own name and by gpu is gpu's; a word of one part (ort_cuda) is not said."""
    rows = [doctor.Check("cuda", "CUDA (torch)", "missing", summary="no usable CUDA device", hint="get a GPU"),
            doctor.Check("onnxruntime_cuda", "ONNX Runtime CUDA", "missing", summary="a CPU build", hint=CPU_ORT_HINT),
            doctor.Check("tritonclient", "tritonclient", "warn")]
    assert doctor.shortfall(rows, ["Cuda,GPU", "tritonclient"]) == (
        "gpu's CUDA (torch) missing: no usable CUDA device; gpu's ONNX Runtime CUDA missing: a CPU build; "
        "tritonclient warn", f"CUDA (torch): get a GPU; ONNX Runtime CUDA: {CPU_ORT_HINT}")
    assert doctor.shortfall(rows[1:2], ["ort_cuda"]) == ("ONNX Runtime CUDA missing: a CPU build", CPU_ORT_HINT)
    assert doctor.shortfall(rows[2:], ["triton"]) == ("tritonclient warn", None)


def test_the_h264_row_says_the_size_its_encoders_were_opened_at(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each encoder is opened for one 256x256 frame, and the row said 'usable' / 'h264_nvenc yes': NVENC's size limits
    are its GPU's, and infer opens it at the video's size. The row says the size it opened them at, and that a hardware
    encoder may refuse another. NVENC here is a stand-in: libx264's context under its name (this machine's NVENC
    cannot open: no driver)."""
    import av

    real = av.CodecContext.create
    monkeypatch.setattr(av.CodecContext, "create",
                        lambda name, mode="r": real("libx264" if name == "h264_nvenc" else name, mode))
    (row,) = [r for r in doctor._pyav(True) if r.key == "h264_encoders"]
    opened = [n for n in ("h264_nvenc", "libx264", "libopenh264") if n in row.info["usable"]]
    assert opened[:2] == ["h264_nvenc", "libx264"], row
    said = ", ".join(f"{n} {'yes' if n in opened else 'no'}" for n in ("h264_nvenc", "libx264", "libopenh264"))
    assert row.summary == (f"opened at 256x256: {said} (h264_nvenc: a size past its GPU's limits is written with "
                           "libx264 instead, with a warning)")  # test_doctor_51: what it says, and where none opens
    assert row.info["probes"]["libx264"] == row.info["probes"]["h264_nvenc"] == "encodes 256x256"
    assert row.info["probe_size"] == [256, 256]
    monkeypatch.undo()
    (row,) = [r for r in doctor._pyav(True) if r.key == "h264_encoders"]
    if "h264_nvenc" not in row.info["usable"]:  # no NVIDIA driver: no word of a GPU's limits
        assert row.summary.startswith("opened at 256x256: h264_nvenc no, libx264 yes") and "limits" not in row.summary
        assert row.info["probes"]["h264_nvenc"].startswith(("cannot open (", "not in this FFmpeg build"))
