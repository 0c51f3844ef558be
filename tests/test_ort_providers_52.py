"""GPU-provider leftovers (session 52, helper DR): ``auto`` left with the CPU provider alone after its GPU providers
failed to start a session makes the session ``--device cpu`` makes; ``--device tensorrt`` refused at session
creation names ``cuda`` and ``auto`` where the CUDA provider runs; doctor's CUDA probe makes its session as every
other session is made (``enable_fallback=0``) and reads why it did not start from the session and ONNX Runtime's log.

No GPU, CUDA or TensorRT here: onnxruntime-gpu is a stand-in over real CPU sessions, as in test_ort_providers_50/51."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import test_ort_providers
import test_ort_providers_50
import test_ort_providers_51
from cli_run import run

from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
from pvt_deploy.runtimes.ort_providers import CPU, CUDA, TENSORRT

pytest_plugins = ["export_fixtures"]

cls_onnx = test_ort_providers.cls_onnx  # a fixture: the 64 px classifier's model.onnx and manifest.json, copied
gpu_onnxruntime = test_ort_providers_50.gpu_onnxruntime  # a fixture: onnxruntime-gpu's stand-in
OUT_OF_MEMORY = test_ort_providers_51.OUT_OF_MEMORY

#: What a backend's details say of how its session was set up (what ``--device cpu`` sets up for the CPU provider)
SETUP = ("providers", "intra_op_threads", "spin", "worker_cpus", "io_binding", "batch_shards", "graph_rewrites")


def test_auto_left_with_the_cpu_provider_makes_the_session_cpu_makes(
        gpu_onnxruntime: dict[str, Any], cls_onnx: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """``auto`` whose GPU providers all failed to start a session (out of GPU memory) went on with the CPU provider
    but with the settings made for the GPU: the graph as exported, not this CPU's copy (its rewrites), workers not
    pinned, batches not split into shards. The settings follow the providers tried: it is ``--device cpu``'s
    session, and a warning says why for each provider left out."""
    asked = test_ort_providers_51._gpu_sessions_fail_to_start(gpu_onnxruntime, monkeypatch, CUDA)
    with OnnxRuntimeBackend(cls_onnx, device="cpu") as cpu:
        want = {k: cpu.info.details[k] for k in SETUP}
        loads = cpu._load
    asked.clear()
    assert want["graph_rewrites"] and want["batch_shards"] > 1  # a CPU session's own settings, here at least
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.runtimes.onnxruntime"), \
            OnnxRuntimeBackend(cls_onnx, device="auto") as backend:
        assert {k: backend.info.details[k] for k in SETUP} == want
        assert backend._load == loads  # the CPU's copy of the graph, loaded again by the shards' session
        assert backend._settings[3] == (",".join(str(c + 1) for c in want["worker_cpus"])
                                        if want["worker_cpus"] else None)  # pinned as cpu's (profile() reuses them)
    assert [[p if isinstance(p, str) else p[0] for p in a] for a in asked] == [[TENSORRT, CUDA, CPU], [CUDA, CPU], [CPU]]
    assert [r.getMessage() for r in caplog.records] == [
        f"model.onnx: ONNX Runtime's {TENSORRT} failed to start a session of it ({OUT_OF_MEMORY}); trying {CUDA}",
        f"model.onnx: ONNX Runtime's {CUDA} failed to start a session of it ({OUT_OF_MEMORY}); trying {CPU}"]


def test_tensorrt_refused_at_session_creation_names_cuda_where_it_runs(
        gpu_onnxruntime: dict[str, Any], cls_onnx: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """``--device tensorrt`` whose TensorRT provider failed to start a session was refused with '--device cpu runs it
    on the CPU' alone, where the CUDA provider under it runs here: the hint names ``cuda`` and ``auto`` too. Where the
    CUDA provider fails, ``cuda`` is refused naming the CPU alone, as before."""
    import cv2
    import numpy as np

    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    test_ort_providers_51._gpu_sessions_fail_to_start(gpu_onnxruntime, monkeypatch, TENSORRT)
    code, out, err = run(monkeypatch, capfd, "infer", str(image), "--model", str(cls_onnx), "--device", "tensorrt",
                         "--no-save")
    assert (code, out) == (3, ""), err
    assert err == (f"error: model.onnx: ONNX Runtime's {TENSORRT} failed to start a session of it ({OUT_OF_MEMORY}) "
                   "(--device cuda runs it on ONNX Runtime's CUDA provider, --device auto on the first provider that "
                   "starts, --device cpu on the CPU; pvt-deploy doctor lists what is found)\n")
    code, out, err = run(monkeypatch, capfd, "infer", str(image), "--model", str(cls_onnx), "--device", "auto",
                         "--no-save")
    assert code == 0, err  # as the hint says: the CUDA provider, after the TensorRT one failed

    test_ort_providers_51._gpu_sessions_fail_to_start(gpu_onnxruntime, monkeypatch, CUDA)
    code, out, err = run(monkeypatch, capfd, "infer", str(image), "--model", str(cls_onnx), "--device", "cuda",
                         "--no-save")
    assert code == 3 and err.endswith("(--device cpu runs it on the CPU; pvt-deploy doctor lists what is found)\n")


def test_info_of_a_folder_probes_no_gpu_where_onnx_runtime_has_no_cuda_provider(
        cls_onnx: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """A guard, found sound (no fault before): with the CPU onnxruntime (this machine's: no CUDA provider listed),
    ``auto``'s rows that depend on the session's providers (an FP16 file's note, the INT8 flavour of a folder that
    has both) ask for no CUDA probe (seconds on a GPU machine), and ``info`` of a folder whose manifest describes an
    engine that is not there imports neither PyTorch nor TensorRT."""
    import json
    import shutil
    import subprocess
    import sys

    import onnxruntime

    from pvt_deploy.runtimes import ort_providers
    from pvt_deploy.runtimes.loader import backend_candidates

    assert CUDA not in onnxruntime.get_available_providers()
    folder = cls_onnx.parent
    for name in ("model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx"):
        shutil.copy(cls_onnx, folder / name)  # stand-ins: the rows choose by the files there
    cls_onnx.unlink()  # FP16 and INT8 only

    def probed(*args: Any) -> Any:
        raise AssertionError("the CUDA provider was probed")

    monkeypatch.setattr(ort_providers, "_cuda_provider", probed)
    monkeypatch.setattr(ort_providers, "probe_cuda_provider", probed)
    for device in (None, "auto"):
        rows = {c.label: c for c in backend_candidates(folder, device=device)}
        assert rows["onnx-fp16"].reason.startswith("CPU only") and rows["onnx-int8"].file == "model.int8.onnx"

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tensorrt"] = {"version": "10.9.0", "gpu": "NVIDIA H100", "compute_capability": "9.0",
                            "precision": "fp32", "tf32": False, "profiles": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    script = ("import sys\nfrom pvt_deploy.cli import main\nsys.argv = ['pvt-deploy', 'info', sys.argv[1]]\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ('torch', 'tensorrt') if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300)
    assert "tensorrt: 10.9.0 on NVIDIA H100 (cc 9.0), fp32" in " ".join(done.stdout.split()), done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
