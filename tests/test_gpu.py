"""The CUDA paths on a real GPU: PyTorch FP32/FP16 and ONNX Runtime's CUDA provider against the CPU.

Marked ``gpu``; skipped (with the reason) wherever PyTorch sees no CUDA device, which includes
CPU-only CI. The ONNX Runtime tests also need ``onnxruntime-gpu`` and skip without its CUDA
provider. One real export serves them all: ``pvt_v2_b0`` (RetinaNet) with seeded synthetic weights
in the official layout, FP32 and FP16 graphs, dynamic sizes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import no_cuda_reason

from pvt_deploy.runtimes.ort_providers import CUDA, available_providers, tensorrt_libraries_load

_REASON = no_cuda_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]
ORT_CUDA = pytest.mark.skipif(CUDA not in available_providers(),
                              reason="ONNX Runtime has no CUDA provider here (pip install onnxruntime-gpu)")


@pytest.fixture(scope="module")
def det(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from pvt_deploy.export import export_onnx
    from pvt_deploy.models import create_model
    from pvt_deploy.models.synthetic import seeded_state_dict

    folder = tmp_path_factory.mktemp("gpu")
    model = create_model("pvt_v2_b0")
    weights = folder / "pvt_v2_b0-seed0.pth"
    torch.save(seeded_state_dict(model, 0), weights)
    export_onnx("pvt_v2_b0", folder / "det", weights=weights, imgsz=256, dynamic=True, half=True)
    return folder / "det"


def _run(det: Path, **kwargs: Any) -> tuple[dict[str, np.ndarray], Any, Any]:
    """Outputs of two real photos through the backend ``kwargs`` loads, its info, and the letterbox
    records (the same for every backend: the export's preprocessing)."""
    from pvt_deploy.io.sources import read_image
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.tasks.pipeline import Predictor

    assets = Path(__file__).resolve().parents[1] / "pvt_deploy" / "assets"
    photos = [read_image(assets / name) for name in ("astronaut.jpg", "coffee.jpg")]
    backend, manifest = load_backend(det, **kwargs)
    with backend:
        feed, records = Predictor(backend, manifest, imgsz=(256, 320)).preprocess(photos)
        return backend.infer(feed), backend.info, records


def _scores(det: Path, ref: dict[str, np.ndarray], test: dict[str, np.ndarray], records: Any) -> dict[str, float]:
    """Each image's class scores sorted, compared as the export's parity gate does (the top-k
    candidates of a RetinaNet head come in score order, so near-ties swap places between runtimes)."""
    from pvt_deploy.export.parity import compare_outputs
    from pvt_deploy.manifest import read_manifest

    report = compare_outputs("detect", ref, test, records, read_manifest(det)["postprocess"])
    stats: dict[str, float] = report["outputs"]["scores"]
    return stats


def test_torch_cuda_fp32_and_fp16_match_the_cpu(det: Path) -> None:
    ref, _, records = _run(det, backend="torch", device="cpu")
    fp32, info, _ = _run(det, backend="torch", device="cuda")
    assert info.device.startswith("cuda") and info.details["gpu"]
    fp16, info16, _ = _run(det, backend="torch", device="cuda", precision="fp16")
    assert info16.precision == "fp16"
    for out in (fp32, fp16):  # one output contract for every device and precision
        assert {k: (v.shape, v.dtype) for k, v in out.items()} == {k: (v.shape, v.dtype) for k, v in ref.items()}
    s32, s16 = _scores(det, ref, fp32, records), _scores(det, ref, fp16, records)
    assert s32["cosine"] > 0.9999 and s32["max_abs"] < 5e-3, s32  # TF32 convolutions: ~1e-3
    assert s16["cosine"] > 0.999 and s16["max_abs"] < 3e-2, s16


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnx", marks=ORT_CUDA)])
def test_fp32_on_the_gpu_meets_the_fp32_tolerance(det: Path, backend: str) -> None:
    """FP32 on a GPU is IEEE FP32: PyTorch's cuDNN convolutions and the CUDA EP's GEMMs and convolutions
    used TF32 (a 10-bit mantissa) on Ampere+ by default, outside the FP32 tolerance `check` judges with.
    Not run where this was written (no GPU): written to be run on one."""
    import torch

    from pvt_deploy.export.parity import DEFAULT_TOLERANCES, check_tolerance, compare_outputs
    from pvt_deploy.manifest import read_manifest

    before = (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    ref, _, records = _run(det, backend=backend, device="cpu")
    out, info, _ = _run(det, backend=backend, device="cuda")
    assert info.precision == "fp32" and not info.device.startswith("CPU"), info
    report = compare_outputs("detect", ref, out, records, read_manifest(det)["postprocess"])
    assert check_tolerance(report, DEFAULT_TOLERANCES["fp32"], gate_agreement=False) == [], report["outputs"]
    assert (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()) == before  # the caller's


@ORT_CUDA
def test_onnxruntime_cuda_matches_the_cpu_and_binds_io(det: Path) -> None:
    ref, _, records = _run(det, backend="onnx", device="cpu")
    out, info, _ = _run(det, backend="onnx", device="cuda")
    assert info.details["providers"][0] == CUDA and info.details["io_binding"] is True
    half, info16, _ = _run(det, backend="onnx", device="cuda", precision="fp16")
    assert info16.precision == "fp16" and info16.details["file"].endswith("model.fp16.onnx")
    assert all(v.dtype == ref[k].dtype for k, v in half.items())  # FP16 graph, FP32 outputs
    s32, s16 = _scores(det, ref, out, records), _scores(det, ref, half, records)
    assert s32["cosine"] > 0.9999 and s32["max_abs"] < 5e-3, s32
    assert s16["cosine"] > 0.999 and s16["max_abs"] < 3e-2, s16


@ORT_CUDA
def test_auto_runs_on_the_gpu_without_asking_for_missing_tensorrt(det: Path) -> None:
    from pvt_deploy.errors import BackendUnavailableError
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    backend, _ = load_backend(det, backend="onnx")
    with backend:
        assert backend.info.details["providers"][0] in (CUDA, "TensorrtExecutionProvider")
        assert tensorrt_libraries_load() or backend.info.details["providers"][0] == CUDA
    if tensorrt_libraries_load():
        return
    with pytest.raises(BackendUnavailableError, match="could not start its TensorrtExecutionProvider") as e:
        OnnxRuntimeBackend(det / "model.onnx", device="tensorrt")
    assert "pip install tensorrt" in str(e.value)


@pytest.mark.parametrize("backend, precision", [("torch", "fp16"),
                                                pytest.param("onnx", "fp16", marks=ORT_CUDA)])
def test_cli_infer_video_on_the_gpu(det: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], backend: str, precision: str) -> None:
    from test_runtime_artifacts import decode_video, make_clip

    from pvt_deploy.cli import main

    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(320, 180), fps=12.0)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "infer", str(clip), "--model", str(det), "--backend", backend,
                                      "--device", "cuda", "--precision", precision, "--imgsz", "256", "-o", str(out)])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    assert exc.value.code == 0, captured.err
    videos = [p for p in out.rglob("*") if p.suffix in (".mp4", ".mkv")]
    assert len(videos) == 1
    codec, frames, size, _ = decode_video(videos[0])
    assert frames == 12 and size == (320, 180) and codec in ("h264", "hevc", "mpeg4")
    lines = [json.loads(line) for p in out.rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == 12
