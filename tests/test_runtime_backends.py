"""PyTorch and ONNX Runtime backends: same graph, same pre/post-processing, same answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runtime_artifacts import cached_export, make_export

from pvt_deploy.errors import BackendUnavailableError, ShapeError
from pvt_deploy.io.sources import Frame, read_image
from pvt_deploy.runtimes.loader import load_backend
from pvt_deploy.tasks.pipeline import Predictor
from pvt_deploy.utils import onnx_model


@pytest.fixture(scope="module")
def det_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "det")


@pytest.fixture(scope="module")
def seg_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "seg")


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def _frames() -> list[Frame]:
    """Two bundled photos at a third of their size (post-processing cost scales with pixels)."""
    import cv2

    from pvt_deploy.assets import sample_images

    out = []
    for i, p in enumerate(sample_images()[:2]):
        image = read_image(p)
        small = cv2.resize(image, (image.shape[1] // 3, image.shape[0] // 3), interpolation=cv2.INTER_AREA)
        out.append(Frame(small, i, str(p)))
    return out


def _both(folder: Path, **settings: object) -> tuple[list, list]:
    """Each backend's results of the frames one at a time, then of the frames as one batch: pictures of
    two sizes, padded to the larger (on a 2-core machine ONNX Runtime runs it in its shard session)."""
    out = []
    for backend_name in ("torch", "onnx"):
        backend, manifest = load_backend(folder, backend=backend_name)
        with backend:
            predictor = Predictor(backend, manifest, **settings)  # type: ignore[arg-type]
            frames = _frames()
            assert len({f.image.shape for f in frames}) == len(frames) > 1
            out.append([r for f in frames for r in predictor([f])] + predictor(frames))
    return out[0], out[1]


def test_torch_and_onnxruntime_agree_on_detections(det_export: Path) -> None:
    ref, ort = _both(det_export)
    assert any(len(r.boxes) for r in ref)
    for a, b in zip(ref, ort, strict=True):
        assert a.boxes.xyxy.shape == b.boxes.xyxy.shape
        # Each box has its twin: same class, corners within 0.05 px, score within 1e-4 (runtimes sum in
        # different orders: 1.7e-5 apart on a score of 0.08 with torch 2.11 and onnxruntime 1.30 on an
        # AVX-512 Xeon), not necessarily in the same row (near-tied scores may swap places).
        for box, conf, cls in zip(a.boxes.xyxy, a.boxes.conf, a.boxes.cls, strict=True):
            twin = ((np.abs(b.boxes.xyxy - box).max(axis=1) <= 0.05) & (np.abs(b.boxes.conf - conf) <= 1e-4)
                    & (b.boxes.cls == cls))
            near = int(np.abs(b.boxes.xyxy - box).max(axis=1).argmin())
            assert twin.any(), (box, conf, cls, b.boxes.xyxy[near], b.boxes.conf[near], b.boxes.cls[near])
        assert np.allclose(np.sort(a.boxes.conf), np.sort(b.boxes.conf), atol=1e-4)
        h, w = a.orig_shape
        assert (a.boxes.xyxy[:, [0, 2]] <= w).all() and (a.boxes.xyxy[:, [1, 3]] <= h).all()


def test_torch_and_onnxruntime_agree_on_segmentation(seg_export: Path) -> None:
    ref, ort = _both(seg_export)
    for a, b in zip(ref, ort, strict=True):
        assert a.mask.shape == a.orig_shape == b.mask.shape
        assert np.mean(a.mask == b.mask) > 0.999


def test_torch_and_onnxruntime_agree_on_classification(cls_export: Path) -> None:
    ref, ort = _both(cls_export)
    for a, b in zip(ref, ort, strict=True):
        assert a.probs.top5 == b.probs.top5
        assert np.allclose(a.probs.top5conf, b.probs.top5conf, atol=1e-5)


def test_onnxruntime_backend_describes_itself(det_export: Path) -> None:
    backend, _ = load_backend(det_export, backend="onnx")
    with backend:
        assert [s.name for s in backend.inputs] == ["images"]
        assert backend.inputs[0].dtype == "float32" and backend.inputs[0].shape[1] == 3
        assert [s.name for s in backend.outputs] == ["boxes", "scores"]
        assert backend.info.name == "onnxruntime" and backend.info.precision == "fp32"
        assert backend.info.details["providers"][-1] == "CPUExecutionProvider"
        assert backend.info.details["intra_op_threads"] >= 1
        out = backend.infer({"images": np.zeros((2, 3, 96, 128), np.float32)})
        assert out["boxes"].shape[0] == 2 and out["scores"].shape[2] == 80


def test_worker_threads_get_a_core_each_and_leave_the_first_to_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvt_deploy.runtimes import onnxruntime as ort_backend
    from pvt_deploy.runtimes import torch as torch_backend

    # a session with fewer threads than cores shares the machine: pinned, every such session of every
    # process would crowd onto the same first cores
    for cores, threads, want in [([0, 1], 2, "2"), ([0, 2, 4, 6], 4, "3;5;7"), ([0, 2, 4, 6], 2, None),
                                 ([4, 5], 2, "6"), ([0, 1], 3, None), ([0, 1], 1, None), (None, 2, None)]:
        monkeypatch.setattr(torch_backend, "cpu_per_core", lambda cores=cores: cores)
        assert ort_backend.worker_affinities(threads) == want, (cores, threads)


def _thread_cpus() -> dict[str, str]:
    """Each thread of this process and the CPUs it may run on (Linux); a thread that ends while it is read is
    left out."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("Cpus_allowed_list:"):
                out[task.name] = line.split(":", 1)[1].strip()
    return out


def _new_thread_cpus(before: dict[str, str], want: str) -> dict[str, str]:
    """The threads started since ``before`` and their CPUs, once one of them is on ``want`` (or after 3 s):
    ONNX Runtime's worker sets its own affinity as it starts, which a loaded machine may not have run yet
    when the session returns (a CI run read the worker on 0-1)."""
    deadline = time.monotonic() + 3.0
    while True:
        new = {t: cpus for t, cpus in _thread_cpus().items() if t not in before}
        if want in new.values() or time.monotonic() > deadline:
            return new
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread affinities from Linux /proc")
def test_onnxruntime_pins_its_worker_thread_where_it_says(cls_export: Path) -> None:
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
    from pvt_deploy.runtimes.torch import cpu_per_core

    cores = cpu_per_core()
    if cores is None or len(cores) < 2:
        pytest.skip("needs two physical cores and a readable CPU topology")
    before = _thread_cpus()
    with OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", threads=2) as pinned:
        assert pinned.info.details["worker_cpus"] == [cores[1]]
        new = _new_thread_cpus(before, str(cores[1]))
        assert str(cores[1]) in new.values(), new  # ONNX Runtime applied it to the worker it started
        out = pinned.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})
        # A second model beside it (a detector and a classifier in one server) pins too: called in turn it
        # keeps pinning's gain, called at once the two leave two threads on every core (the callers on the
        # first). Letting it float (9146b51) brought back the caller and worker taking turns on one core.
        before = _thread_cpus()
        with OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", threads=2) as beside:
            assert beside.info.details["worker_cpus"] == [cores[1]]
            new = _new_thread_cpus(before, str(cores[1]))
            assert str(cores[1]) in new.values(), new
    with OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", threads=2, pin=False) as free:
        assert free.info.details["worker_cpus"] is None
        assert np.array_equal(free.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})["logits"], out["logits"])


def test_io_binding_binds_outputs_on_the_gpu_the_session_runs_on(monkeypatch: pytest.MonkeyPatch,
                                                                  cls_export: Path) -> None:
    """``providers=[("CUDAExecutionProvider", {"device_id": 1}), ...]`` without ``device``: the session
    ran on GPU 1, but IO binding bound its outputs to GPU 0 (the ``device`` argument's, by default).
    They go where the session's CUDA provider is registered. Faked: a real CPU session that reports
    the CUDA provider on GPU 1, as onnxruntime-gpu's does, and hands bind_output's device over."""
    import onnxruntime as ort

    import pvt_deploy.runtimes.onnxruntime as ort_backend

    real, bound = ort.InferenceSession, []

    class Binding:
        def __init__(self, binding: Any) -> None:
            self._binding = binding

        def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0) -> None:
            bound.append((device_type, device_id))
            self._binding.bind_output(name)  # this machine's memory stands in for the GPU's

        def __getattr__(self, name: str) -> Any:
            return getattr(self._binding, name)

    class OnGpu1:
        def __init__(self, path: str, sess_options: Any = None, providers: Any = None, **kwargs: Any) -> None:
            self._session = real(path, sess_options=sess_options, providers=["CPUExecutionProvider"], **kwargs)

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_provider_options(self) -> dict[str, dict[str, str]]:
            return {"CUDAExecutionProvider": {"device_id": "1"}, "CPUExecutionProvider": {}}

        def io_binding(self) -> Binding:
            return Binding(self._session.io_binding())

        def __getattr__(self, name: str) -> Any:
            return getattr(self._session, name)

    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 128, 128)).astype(np.float32)
    with ort_backend.OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu") as b:
        reference = b.infer({"images": x})["logits"]
    monkeypatch.setattr(ort, "InferenceSession", OnGpu1)
    monkeypatch.setattr(ort_backend, "_preload_gpu_libraries", lambda ort: None)
    with ort_backend.OnnxRuntimeBackend(cls_export / "model.onnx",
                                        providers=[("CUDAExecutionProvider", {"device_id": 1}),
                                                   "CPUExecutionProvider"]) as b:
        assert b.info.details["io_binding"] is True
        np.testing.assert_allclose(b.infer({"images": x})["logits"], reference, rtol=1e-5, atol=1e-5)
    assert bound == [("cuda", 1)]


def test_a_model_that_does_not_fit_the_gpu_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's move to the GPU failing (CUDA out of memory on a shared GPU, CUDA in a forked
    worker) was PyTorch's RuntimeError, a traceback, where the same failure in a run is one line.
    A GPU is faked: is_available/device_count say there is one, and the move fails as CUDA's does."""
    import torch

    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.runtimes.torch import TorchBackend

    class Model(torch.nn.Identity):
        output_names = ("logits",)

        def to(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of "
                               "79.19 GiB of which 3.06 MiB is free.\nIf reserved but unallocated memory is large "
                               "try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(PvtDeployError) as caught:
        TorchBackend(Model(), device="cuda:0")
    message = caught.value.args[0]
    assert message.startswith("PyTorch cannot put the model on cuda:0: CUDA out of memory. Tried to allocate")
    assert "\n" not in message and "nvidia-smi" in (caught.value.hint or "") and caught.value.exit_code == 1


def test_workers_spin_inside_a_run_unless_told_otherwise(cls_export: Path) -> None:
    from pvt_deploy.errors import InputError
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    # (allow_spinning, force_spinning_stop) as the session got them
    for spin, mode, entries in [(None, "run", ("1", "1")), (True, "always", ("1", "")), ("never", "never", ("0", ""))]:
        kwargs = {} if spin is None else {"spin": spin}
        with OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", **kwargs) as backend:
            assert backend.info.details["spin"] == mode
            options = backend._session.get_session_options()

            def entry(key: str, options: Any = options) -> str:
                try:
                    return str(options.get_session_config_entry(key))
                except RuntimeError:  # not set
                    return ""

            got = (entry("session.intra_op.allow_spinning"), entry("session.force_spinning_stop"))
            assert got == entries, (spin, got)
    with pytest.raises(InputError, match="spin must be"):
        OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", spin="sometimes")


def test_static_graph_refuses_other_sizes(tmp_path: Path) -> None:
    folder = make_export(tmp_path / "static", "pvt_v2_b0-cls", dynamic=False, extra=())
    backend, manifest = load_backend(folder)
    with backend:
        with pytest.raises(ShapeError, match="takes"):
            backend.infer({"images": np.zeros((1, 3, 160, 128), np.float32)})
        with pytest.raises(ShapeError, match="fixed 128x128"):
            Predictor(backend, manifest, imgsz=160)
    with pytest.raises(ShapeError, match="fixed 128x128"):
        load_backend(folder, imgsz=160)


def test_onnxruntime_runs_an_input_whose_graph_declares_no_shape(tmp_path: Path) -> None:
    """ONNX Runtime lists a shape of [] for a scalar and for a value whose graph declares no shape (another
    tool's tensor of unknown rank) alike, and the backend took it for a scalar's: such an input refused every
    feed ('takes []'), and such an output read as a scalar, although TensorSpec.shape None is what says
    'not declared' (58005b1; info --json writes it null). The graph says which: u None, the scalar m ()."""
    import onnx
    from onnx import TensorProto, helper

    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["u"]), helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, [])])
    onnx.save(onnx_model(graph), str(tmp_path / "other.onnx"))
    x = np.linspace(-1, 2, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    with OnnxRuntimeBackend(tmp_path / "other.onnx", device="cpu") as backend:
        assert [(s.name, s.shape) for s in (*backend.inputs, *backend.outputs)] == [("x", None), ("u", None),
                                                                                   ("m", ())]
        out = backend.infer({"x": x})
        np.testing.assert_array_equal(out["u"], np.maximum(x, 0))
        assert out["m"].shape == () and float(out["m"]) == 2.0
        assert backend.infer({"x": x[0, 0]})["u"].shape == (4, 4)  # any rank


def test_torch_fp16_needs_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        load_backend("pvt_v2_b0-cls", precision="fp16", device="cpu")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        load_backend("pvt_v2_b0-cls", device="cuda")


def test_torch_backend_returns_float32_numpy() -> None:
    backend, manifest = load_backend("pvt_v2_b0-cls", imgsz=96)
    with backend:
        out = backend.infer({"images": np.full((1, 3, 96, 96), 128, np.float32)})
        assert set(out) == {"logits"} and out["logits"].dtype == np.float32 and out["logits"].shape == (1, 1000)
        assert backend.info.name == "torch" and backend.info.details["threads"] >= 1
    assert manifest["task"] == "classify" and len(manifest["classes"]) == 1000


def test_int8_on_a_cpu_without_vnni_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The CPU INT8 graphs use full 8-bit weights; on x86 without VNNI ORT's U8S8 kernels saturate, so
    sessions re-base the weights to uint8 (exact) and, where the CPU's 8-bit GEMMs are no faster than its
    float ones, say that INT8 is not faster than FP32 there. With the rewrite off the warning is about
    accuracy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import pvt_deploy.utils.cpu as cpu
    from pvt_deploy.runtimes import onnxruntime as ort_backend

    consts = [numpy_helper.from_array(np.array(v, dtype), name) for name, v, dtype in (
        ("sx", 0.02, np.float32), ("zx", 128, np.uint8), ("w", np.full((4, 2), 10), np.int8),
        ("sw", 0.1, np.float32), ("zw", 0, np.int8))]  # small products: no U8S8 sum saturates
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["images", "sx", "zx"], ["q"]),
                               helper.make_node("DequantizeLinear", ["q", "sx", "zx"], ["x"]),
                               helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wf"]),
                               helper.make_node("MatMul", ["x", "wf"], ["y"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 2])], consts)
    path = tmp_path / "model.int8.onnx"
    onnx.save_model(onnx_model(graph), str(path))
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    x = np.linspace(-2, 2, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    expected = (np.clip(np.rint(x / 0.02) + 128, 0, 255) - 128) * 0.02 @ np.full((4, 2), 1.0)

    def warnings(flags: frozenset[str], gain: float | None = 1.05, **options: object) -> list[str]:
        monkeypatch.setattr(ort_backend, "_warned_vnni", False)
        monkeypatch.setattr(cpu, "cpu_flags", lambda: flags)
        monkeypatch.setattr(cpu, "int8_gemm_gain", lambda: gain)  # 8-bit GEMM rate / FP32 rate, measured
        caplog.clear()
        with caplog.at_level("WARNING", logger=ort_backend.__name__):
            for _ in range(2):
                backend = ort_backend.OnnxRuntimeBackend(path, device="cpu", **options)
                np.testing.assert_allclose(backend.infer({"images": x})["y"], expected, rtol=1e-5)
            ort_backend.OnnxRuntimeBackend(path, device="cpu", precision="fp32")  # FP32: no warning either
        return [r.getMessage() for r in caplog.records]

    assert warnings(frozenset({"avx2", "avx512_vnni"})) == []  # a VNNI CPU: nothing to say
    (exact,) = warnings(frozenset({"avx2", "fma"}))  # a Zen 1: 8-bit GEMMs at the FP32 rate
    assert "no VNNI" in exact and "runs exact" in exact and "model.onnx (FP32)" in exact and "1.1x" in exact
    assert warnings(frozenset({"avx2", "fma"}), gain=1.6) == []  # a Zen 3: INT8 can pay, nothing to warn about
    (unknown,) = warnings(frozenset({"avx2", "fma"}), gain=None)
    assert "not faster" in unknown and "x the FP32 rate" not in unknown
    (saturating,) = warnings(frozenset({"avx2", "fma"}), rewrite=False)
    assert "may saturate" in saturating and "model.onnx (FP32)" in saturating


def test_a_backend_closed_while_a_call_is_under_way(cls_export: Path) -> None:
    """A server shutting down closes the backend while other threads still call it: a call that
    finds it closed says so (not "'NoneType' object has no attribute 'run'"), and a batch call must
    not bring the shard session and its thread back to life after ``close``."""
    import threading

    from pvt_deploy.errors import InputError
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    before = set(threading.enumerate())
    for batch in (1, 2):
        backend = OnnxRuntimeBackend(cls_export / "model.onnx", device="cpu", threads=2, pin=False)
        assert backend.info.details["batch_shards"] == 2
        prepare = backend._prepare_feed

        def close_meanwhile(feed: Any, prepare: Any = prepare, backend: Any = backend) -> Any:
            arrays = prepare(feed)
            backend.close()  # as another thread would, between the call's check and its run
            return arrays

        backend._prepare_feed = close_meanwhile  # type: ignore[method-assign]
        with pytest.raises(InputError, match="closed"):
            backend.infer({"images": np.zeros((batch, 3, 64, 64), np.float32)})
        assert backend._shard_session is None and backend._pool is None
        assert backend.providers == ["CPUExecutionProvider"]  # was AttributeError on the closed session
        assert not [t.name for t in set(threading.enumerate()) - before if t.name.startswith("pvt-ort-shard")]


def test_a_bad_feed_is_one_error_line_on_either_backend(cls_export: Path) -> None:
    """``backend.infer`` is public API (README: the ``Backend`` protocol). A feed that is an array
    rather than ``{"images": array}``, a batch of no images, complex values or an input too small
    for the network are the same PvtDeployError on both backends; PyTorch raised its own
    RuntimeError (and a TypeError for the bare array), ONNX Runtime also printed its kernel's error."""
    from pvt_deploy.errors import InputError, PvtDeployError

    torch_backend, _ = load_backend("pvt_v2_b0-cls", imgsz=64)
    onnx_backend, _ = load_backend(cls_export, backend="onnx")
    for backend in (torch_backend, onnx_backend):
        with backend:
            good = np.zeros((1, 3, 64, 64), np.float32)
            with pytest.raises(InputError, match="a feed maps input names to arrays"):
                backend.infer(good)  # type: ignore[arg-type]
            with pytest.raises(ShapeError, match=r"shape \[0, 3, 64, 64\]: no values"):
                backend.infer({"images": np.zeros((0, 3, 64, 64), np.float32)})
            with pytest.raises(InputError, match="complex64 values"):
                backend.infer({"images": good.astype(np.complex64)})
            with pytest.raises(ShapeError, match=r"input shape \[\[?1, 3, 16, 16\]"):
                backend.infer({"images": np.zeros((1, 3, 16, 16), np.float32)})
            assert backend.infer({"images": good})["logits"].shape == (1, 1000)
    with pytest.raises(PvtDeployError):
        torch_backend.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})  # closed


def _attention_net() -> Any:
    """A module for TorchBackend whose largest attention takes 1000 bytes per input pixel (1024x1024: 1.05 GB)."""
    import torch

    class Net(torch.nn.Module):
        output_names = ("logits",)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (x.mean((2, 3)),)

        def peak_bytes(self, batch: int, height: int, width: int) -> int:
            return batch * height * width * 1000

    return Net()


def test_pytorch_on_an_integrated_gpu_counts_the_memory_the_os_frees_on_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Jetson's GPU shares the machine's memory, and cudaMemGetInfo's free figure there leaves out the
    page cache and swap the OS gives back on demand (CUDA driver API, cuMemGetInfo: the integrated GPU on
    Tegra). After reading a video it can say 0.3 GB with 3 GB available, and the size check refused
    an input that fits (exit 2). On an integrated GPU the memory is judged as on the CPU; a discrete
    GPU's own memory is still what CUDA reports. (No GPU here: a one-GPU box is faked.)"""
    import types

    import torch

    from pvt_deploy.runtimes.torch import TorchBackend
    from pvt_deploy.utils import cpu

    backend = TorchBackend(_attention_net(), device="cpu")
    backend._device = torch.device("cuda", 0)
    integrated = [1]
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: types.SimpleNamespace(is_integrated=integrated[0]))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (300 << 20, 8 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    monkeypatch.setattr(cpu, "available_memory", lambda: 3 << 30)
    backend.check_size(1, 1024, 1024)  # fits in the 3 GB the OS has for it
    with pytest.raises(ShapeError, match=r"1024x1024 at \S*batch 4 needs about 4.8 GB .* more than the 3.2 GB free on cuda:0"):
        backend.check_size(4, 1024, 1024)  # what does not fit there is still refused
    integrated[0] = 0  # a discrete GPU: its own memory, as CUDA reports it
    with pytest.raises(ShapeError, match=r"needs about 1.2 GB .* more than the 0.3 GB free on cuda:0"):
        backend.check_size(1, 1024, 1024)


def test_a_size_whose_attention_alone_takes_all_the_free_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The size check let through an input whose largest attention needed exactly the free memory; the
    rest of the forward pass (the other activations, the allocator's room: measured at 1.05-1.3x the
    attention at 1024-1536 px) then ran out or swapped. It is counted now, and the boundary is exact."""

    from pvt_deploy.runtimes import torch as torch_runtime
    from pvt_deploy.runtimes.torch import TorchBackend
    from pvt_deploy.utils import cpu

    backend = TorchBackend(_attention_net(), device="cpu")
    attention = 1024 * 1024 * 1000
    free = [attention]
    monkeypatch.setattr(cpu, "available_memory", lambda: free[0])
    with pytest.raises(ShapeError, match=r"needs about 1.2 GB for PyTorch's largest attention and the rest of its "
                                         r"forward pass, more than the 1.0 GB free .* \(pass \S*imgsz 928 or less\)"):
        backend.infer({"images": np.zeros((1, 3, 1024, 1024), np.float32)})
    need = attention + torch_runtime.REST_FIXED + torch_runtime.REST_PER_PIXEL * 1024 * 1024
    assert backend.memory_needed(1, 1024, 1024) == need
    free[0] = need - 1
    with pytest.raises(ShapeError):
        backend.check_size(1, 1024, 1024)
    free[0] = need
    assert backend.infer({"images": np.zeros((1, 3, 1024, 1024), np.float32)})["logits"].shape == (1, 3)


def test_pytorch_out_of_memory_is_not_called_a_shape_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's out-of-memory message mentions ``max_split_size_mb``; its "size" made the run's error a
    ShapeError ("cannot run the input shape", exit 2) where the input was fine and memory short."""
    from pvt_deploy.errors import PvtDeployError

    backend, _ = load_backend("pvt_v2_b0-cls", imgsz=64)
    oom = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB. If reserved "
           "but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True or "
           "max_split_size_mb to avoid fragmentation")

    def out_of_memory(x: Any) -> Any:
        raise RuntimeError(oom)

    with backend:
        monkeypatch.setattr(backend, "_module", out_of_memory)
        with pytest.raises(PvtDeployError, match=r"ran out of memory on the input shape \[1, 3, 64, 64\]") as e:
            backend.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})
        assert not isinstance(e.value, ShapeError) and "smaller batch" in str(e.value)


def test_yes_no_options_take_only_true_or_false(cls_export: Path) -> None:
    """``Model(m, shard="no")`` ran sharded (``"no"`` is truthy), ``pin="no"`` pinned and
    ``io_binding="no"`` turned IO binding on: a yes/no option now takes True or False (numpy's too)
    and refuses anything else in one line, as ``predict(stream="no")`` does."""
    from pvt_deploy.errors import InputError

    for option, value in (("shard", "no"), ("pin", "no"), ("rewrite", "no"), ("fp16", 0), ("shard", None)):
        with pytest.raises(InputError, match=f"{option} must be True or False, got {value!r}"):
            load_backend(cls_export, backend="onnx", **{option: value})
    with pytest.raises(InputError, match="io_binding must be 'auto', True or False, got 'no'"):
        load_backend(cls_export, backend="onnx", io_binding="no")
    backend, _ = load_backend(cls_export, backend="onnx", shard=np.False_, pin=False, io_binding=False)
    with backend:
        assert backend.info.details["batch_shards"] == 1 and backend.info.details["worker_cpus"] is None
        assert backend.info.details["io_binding"] is False


def test_path_options_are_paths_and_get_their_folders(cls_export: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """``optimized_model_path`` in a folder that did not exist made ONNX Runtime fail, reported as
    "the cached CPU graph does not load; rebuilding it" and then "model.onnx: ONNX Runtime cannot load
    it" (a sound model, its cache thrown away); ``optimized_model_path=3`` wrote a file named ``3`` in
    the working folder; ``cache_dir=3`` was a TypeError; ``providers="CPUExecutionProvider"`` was
    read letter by letter. Now folders are made as ``cache_dir``'s always was, and the rest refused."""
    import logging

    from pvt_deploy.errors import InputError

    target = tmp_path / "new" / "sub" / "optimized.onnx"
    with caplog.at_level(logging.WARNING):
        backend, _ = load_backend(cls_export, backend="onnx", optimized_model_path=target,
                                  providers="CPUExecutionProvider")
    with backend:
        assert target.is_file() and backend.providers == ["CPUExecutionProvider"]
        assert backend.infer({"images": np.zeros((1, 3, 64, 64), np.float32)})["logits"].shape == (1, 1000)
    assert not [r.message for r in caplog.records if "does not load" in r.message or "could not start" in r.message]
    for option, value in (("optimized_model_path", 3), ("cache_dir", 3), ("cache_dir", "")):
        with pytest.raises(InputError, match=f"{option} must be a path, got {value!r}"):
            load_backend(cls_export, backend="onnx", **{option: value})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot make the folder .*a-file"):
        load_backend(cls_export, backend="onnx", optimized_model_path=blocker / "x.onnx")


def test_a_directly_built_backend_reads_the_precision_from_the_graph_not_its_name(tmp_path: Path) -> None:
    """``OnnxRuntimeBackend(path)`` built without the loader (no manifest to read the precision from)
    guessed it from the file's name: a ``model.fp16.onnx`` copied to ``x.onnx`` ran as FP32, an FP32 graph
    named ``y.fp16.onnx`` as FP16 (and one named ``z_int8.onnx`` as INT8, with the VNNI warning), as
    ``info`` and ``bench`` then said. It now reads it from the graph, as the loader does for a lone file."""
    import shutil

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    def graph(path: Path, half: bool) -> Path:
        w = np.arange(8, dtype=np.float16 if half else np.float32).reshape(4, 2)
        nodes = ([helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
                  helper.make_node("MatMul", ["xh", "W"], ["yh"]),
                  helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT)] if half
                 else [helper.make_node("MatMul", ["x", "W"], ["y"])])
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              initializer=[numpy_helper.from_array(w, "W")])
        onnx.save(onnx_model(g), path)
        return path

    fp16 = graph(tmp_path / "model.fp16.onnx", half=True)
    fp32 = graph(tmp_path / "model.onnx", half=False)
    cases = {shutil.copy(fp16, tmp_path / "x.onnx"): "fp16", fp16: "fp16",
             shutil.copy(fp32, tmp_path / "half.onnx"): "fp32", shutil.copy(fp32, tmp_path / "y.fp16.onnx"): "fp32",
             shutil.copy(fp32, tmp_path / "z_int8.onnx"): "fp32"}
    for path, precision in cases.items():
        with OnnxRuntimeBackend(path, device="cpu", threads=1) as backend:
            assert backend.precision == precision, path
            out = backend.infer({"x": np.ones((1, 4), np.float32)})["y"]
            np.testing.assert_array_equal(out, [[12, 16]])
    with OnnxRuntimeBackend(tmp_path / "x.onnx", device="cpu", threads=1, precision="fp16") as given:
        assert given.precision == "fp16"  # what the loader passes from the manifest is taken as it is
