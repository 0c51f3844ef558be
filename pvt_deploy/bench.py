"""Measure backends side by side: speed (:func:`benchmark`) and agreement (:func:`cross_check`).

Both run every backend on the *same* preprocessed input through the *same* post-processing, so a
difference between two rows is the runtime's alone. They return plain dicts (JSON-ready) that the
``bench``/``check`` commands print and that ``benchmarks/`` scripts can store.

Agreement is measured with the export parity gate's own comparison (:mod:`pvt_deploy.export.parity`),
so ``check`` and the numbers recorded at export mean the same thing.

Benchmark method: the input is a real photo resized to ``imgsz`` (so detection post-processing sees
realistic score maps), ``warmup`` untimed runs, then ``iters`` timed runs of pre -> infer -> post.
Latency percentiles are of the inference call; the stage split is the mean of each stage.
Memory is the peak resident set size above the level before the backend was loaded (sampled every
5 ms in a thread); on a GPU, PyTorch's ``torch.cuda.max_memory_allocated`` and the other runtimes' GPU
memory in use above its level before loading (:func:`_cuda_peak`). Both in MB, 10^6 bytes (``memory_mb``),
as info and export give file sizes.

With ``profile``, each backend that ran then has a run of its own that times its operators
(:meth:`~pvt_deploy.runtimes.base.Backend.profile`, as trtexec's ``--dumpProfile --separateProfileRun``):
profiling slows a run, so the latency and memory figures are those of the unprofiled runs before it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pvt_deploy.errors import (
    BackendUnavailableError,
    EngineMismatchError,
    InputError,
    PvtDeployError,
    cannot_read,
    renamed,
)
from pvt_deploy.utils import joined_lines, megabytes

if TYPE_CHECKING:
    from pvt_deploy.runtimes.base import Backend

__all__ = ["BENCH_BACKENDS", "BenchInterrupted", "benchmark", "cross_check", "parse_backends"]

log = logging.getLogger(__name__)

# label -> (backend, precision) for load_backend
BENCH_BACKENDS: dict[str, tuple[str, str | None]] = {
    "torch": ("torch", None), "torch-fp16": ("torch", "fp16"), "onnx": ("onnx", "fp32"),
    "onnx-fp16": ("onnx", "fp16"), "onnx-int8": ("onnx", "int8"), "trt": ("trt", None), "triton": ("triton", None),
}
DEFAULT_BACKENDS = ("torch", "onnx", "onnx-fp16", "onnx-int8", "trt")  # also all that an export folder offers

Progress = Callable[[str], None]
Steps = Callable[[int, int], None]
"""``steps(done, total)``: the runs of the backend ``progress`` last named, ``total`` its warmup and timed runs."""


def parse_backends(text: str | Sequence[str] | None, choices: Sequence[str] = tuple(BENCH_BACKENDS)) -> list[str]:
    """``"torch,onnx"`` -> ``["torch", "onnx"]``, validated against every label; ``None`` -> the default ones,
    :data:`DEFAULT_BACKENDS` (not torch-fp16 or triton). ``choices``: the labels the command takes, which an
    unknown one is answered with (check's are an export folder's, its caller refusing bench's others)."""
    if text is None:
        return list(DEFAULT_BACKENDS)
    items = text.split(",") if isinstance(text, str) else list(text)
    from pvt_deploy.runtimes.loader import BACKEND_ALIASES

    labels = [s.strip().lower() for s in items if s.strip()]
    # the backend's other names, with or without a precision: ort-int8 -> onnx-int8, onnxrt -> onnx
    labels = [BACKEND_ALIASES.get(base, base) + sep + rest for base, sep, rest in (x.partition("-") for x in labels)]
    unknown = [x for x in labels if x not in BENCH_BACKENDS]
    if unknown:
        raise InputError(f"unknown backend {unknown[0]!r}; choose from {', '.join(choices)}")
    if not labels:
        raise InputError(f"--backends names no backend; choose from {', '.join(choices)}")
    return list(dict.fromkeys(labels))


# --------------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; ru_maxrss elsewhere as a fallback)."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        scale = 1 if platform.system() == "Darwin" else 1024
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _release_free_memory() -> None:
    """Hand memory that earlier backends freed back to the OS (glibc ``malloc_trim``), so the next
    backend's added RSS counts its own allocations instead of reusing theirs unseen."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class PeakRSS:
    """Sample RSS in a thread; ``peak - baseline`` is what the code inside the block added at most."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _release_free_memory()
        self.baseline = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, name="pvt-deploy-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the sampling here (what the block does after this is not counted); once."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def delta_mb(self) -> float:
        """In MB, 10^6 bytes (:func:`~pvt_deploy.utils.megabytes`)."""
        return megabytes(self.peak - self.baseline)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def _bench_image(manifest: Mapping[str, Any], imgsz: tuple[int, int] | None) -> np.ndarray:
    """The bundled astronaut photo at the graph's input size (so the letterbox is a no-op)."""
    import cv2

    from pvt_deploy.assets import sample_image
    from pvt_deploy.io.sources import read_image

    size = imgsz or tuple(int(v) for v in (manifest.get("preprocess") or {}).get("imgsz", (640, 640)))
    h, w = int(size[0]), int(size[1])
    image = read_image(sample_image("astronaut"))
    return np.ascontiguousarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))


def _stats(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"mean": round(float(a.mean()), 3), "std": round(float(a.std()), 3), "min": round(float(a.min()), 3),
            "p50": round(float(np.percentile(a, 50)), 3), "p90": round(float(np.percentile(a, 90)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}


def _pair(imgsz: int | Sequence[int] | None) -> tuple[int, int] | None:
    if imgsz is None:
        return None
    if isinstance(imgsz, int):
        return imgsz, imgsz
    v = [int(x) for x in imgsz]
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def host_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    from pvt_deploy.manifest import tool_versions
    from pvt_deploy.runtimes.torch import physical_cores

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "physical_cores": physical_cores(), "logical_cpus": os.cpu_count(),
                            "platform": platform.platform(), "python": platform.python_version(),
                            "versions": tool_versions("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt")}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


# --------------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------------


def benchmark(model: str | os.PathLike[str] | None = None, *, backends: str | Sequence[str] | None = None,
              imgsz: int | Sequence[int] | None = None, batch: int = 1, warmup: int = 3, iters: int = 20,
              device: str | None = None, progress: Progress | None = None, profile: bool = False,
              trust: bool = False, steps: Steps | None = None) -> dict[str, Any]:
    """Time each backend label (``torch``, ``onnx``, ``onnx-fp16``, ``onnx-int8``, ``trt``) on ``model``.

    Returns ``{"model", "artifact", "task", "input_shape", "batch", "warmup", "iters", "host", "interrupted",
    "results": [...]}`` (``artifact`` is ``model``, under the key check's and info's reports share);
    each result has ``backend``, ``status`` (``ok``/``skipped``/``failed``), and when ok
    ``latency_ms`` (p50/p90/p99...), ``throughput_fps`` (batch x 1000 / mean ms), ``stages_ms`` (preprocess/inference/postprocess
    means), ``memory_mb`` and ``vs_torch`` (PyTorch p50 / this p50). Backends that cannot run here
    are ``skipped`` with the ``reason``. With ``profile`` each ``ok`` row has a ``profile``: its operators
    timed in a run of their own after the timed ones (:func:`_profile`), or why they could not be.
    ``trust`` lets the checkpoint PyTorch loads (``model``, or the one an export was made from) be fully
    unpickled, as ``Model(..., trust=True)`` does (``--trust-checkpoint``). A Ctrl-C or SIGTERM raises
    :class:`BenchInterrupted`, a KeyboardInterrupt that holds the report of the rows timed before it.
    ``progress(label)`` is called as each backend starts (before it loads), ``steps(done, total)`` once it has
    loaded and after each of its runs, warmup included (``total`` = ``warmup + iters``).
    """
    from pvt_deploy.manifest import is_export_folder, read_manifest
    from pvt_deploy.runtimes.loader import is_checkpoint_url, require_model, resolve_model

    labels = parse_backends(backends)
    if batch < 1 or iters < 1 or warmup < 0:
        raise InputError("batch and iters must be >= 1 and warmup >= 0")
    _refuse_unknown_device(device)
    target = resolve_model(model)
    require_model(target)
    # an export folder's manifest, read once: one that is damaged (or missing beside its graphs) is said once,
    # as info and check say it, not by each backend in turn, five times in the table, five in the error
    manifest = read_manifest(Path(target)) if is_export_folder(Path(target)) else None
    own = _lone_file_backend(target) if backends is None else None
    if own is not None:  # trtexec --onnx=x.onnx: the backend that runs the file, not five rows of which four skip
        labels = [own]
    # a checkpoint's URL is loaded as given (from the cache it was just downloaded to), so that the rows'
    # hints ("export --model ...") and the report name the URL, not the cache's file
    given = os.fspath(model) if model is not None and is_checkpoint_url(os.fspath(model)) else target
    size = _pair(imgsz)
    if manifest is not None:
        _refuse_size_outside(manifest, size, batch)
    report: dict[str, Any] = {"model": str(given), "artifact": str(given), "task": None, "imgsz": list(size) if size else None,
                              "input_shape": None, "batch": batch, "warmup": warmup, "iters": iters,
                              "device": device or "auto", "host": host_info(), "interrupted": False,
                              "results": []}
    try:  # Ctrl-C, SIGTERM, wherever they land (a row, the progress shown, gc between rows): the rows timed
        _load_runtimes(labels)  # so far are the caller's to show
        absent = _absent_variants(Path(target), manifest, device) if backends is None else frozenset()
        for label in labels:
            if progress is not None:
                progress(label)
            row = _bench_one(label, given, size, batch, warmup, iters, device, report,
                             own_precision=own is not None, profile=profile, trust=trust, steps=steps)
            if row["backend"] in absent:  # a variant the export lacks, not asked for by name: no cause of failure
                row["exit_code"] = None
            report["results"].append(row)
            gc.collect()
        _compare_with_torch(report)  # inside: an interrupt as the last row is compared still hands the rows over
    except KeyboardInterrupt as e:
        report["interrupted"] = True
        _compare_with_torch(report)
        raise BenchInterrupted(report, labels[len(report["results"]):]) from e  # a row per label, in order
    return report


def _refuse_unknown_device(device: str | None) -> None:
    """A ``device`` no backend takes (a typo, ``cuda:x``) is said once, before any work: each backend refused it
    in turn, a row each, and the error said it again for each. Which devices are there (``cuda:3`` on a machine
    of one GPU, ``cuda`` without CUDA) is each backend's to say, in its row."""
    from pvt_deploy.errors import option
    from pvt_deploy.runtimes.onnxruntime import _parse_device
    from pvt_deploy.runtimes.ort_providers import DEVICES

    try:
        kind, _ = _parse_device(device)
    except InputError:
        kind = None
    if kind not in DEVICES:
        raise InputError(f"{option('device')} {device}: no such device; choose cpu, cuda, cuda:N, N (a GPU's "
                         "index) or tensorrt")


class BenchInterrupted(KeyboardInterrupt):
    """A :func:`benchmark` stopped by Ctrl-C or SIGTERM (an interrupt still, to a caller that does not look):
    ``report`` holds the rows of the backends timed before it, ``report["interrupted"]`` true, and
    ``untimed`` the labels it did not finish, the one it was timing first."""

    def __init__(self, report: dict[str, Any], untimed: Sequence[str]) -> None:
        super().__init__()
        self.report = report
        self.untimed = list(untimed)


def _compare_with_torch(report: dict[str, Any]) -> None:
    """Each row's ``vs_torch``: PyTorch's p50 over its own, None without a PyTorch row that ran."""
    reference = next((r for r in report["results"] if r["backend"] == "torch" and r["status"] == "ok"), None)
    for row in report["results"]:
        if reference is not None and row["status"] == "ok":
            row["vs_torch"] = round(reference["latency_ms"]["p50"] / row["latency_ms"]["p50"], 3)
        else:
            row.setdefault("vs_torch", None)


def _lone_file_backend(target: str | os.PathLike[str]) -> str | None:
    """The one backend label that runs ``target`` when it is a file of its own (an ``.onnx``, an engine, a
    checkpoint, a checkpoint URL's file in the download cache, as :func:`resolve_model` gives it) or a Triton
    model (``triton://``: every other label 'cannot run' it), else None (an export folder, a zoo name: every
    default label)."""
    from pvt_deploy.runtimes.loader import file_backend
    from pvt_deploy.runtimes.triton import is_triton_url

    if is_triton_url(os.fspath(target)):
        return "triton"
    # the loader's own rule; an .onnx at the file's own precision (_bench_one's own_precision)
    return file_backend(target) if Path(target).is_file() else None


def _refuse_size_outside(manifest: Mapping[str, Any], size: tuple[int, int] | None, batch: int = 1) -> None:
    """An export folder (its ``manifest``) refuses an ``imgsz`` outside its graph's range, or a ``batch`` larger
    than its graph takes, before any backend loads, as ``infer`` does (:func:`~pvt_deploy.runtimes.loader.check_imgsz`,
    :meth:`~pvt_deploy.tasks.pipeline.Predictor.check_batch`): each backend tried it in turn, after loading,
    and bench tabled every one of them as skipped for that one reason under an empty table."""
    from pvt_deploy.errors import ShapeError, option
    from pvt_deploy.manifest import batch_limit
    from pvt_deploy.runtimes.loader import check_imgsz

    if size is not None:
        check_imgsz(manifest, size)
    most = batch_limit(manifest)  # what the Predictor of every backend will judge (before an engine's own profile)
    if most is not None and batch > most:  # the Predictor's words
        raise ShapeError(f"{option('batch')} {batch} is more than this graph takes ({most})",
                         hint=f"lower {option('batch')}, or re-export with a larger batch range")


def _load_runtimes(labels: Sequence[str]) -> None:
    """Load the runtimes' libraries, the code every backend shares (OpenCV, the pipeline) and start
    the thread pools before anything is measured, so the first backend's peak MB does not carry these
    one-time costs (~60 MB) that the later ones share."""
    import cv2  # noqa: F401

    import pvt_deploy.runtimes.loader  # noqa: F401
    import pvt_deploy.tasks.pipeline  # noqa: F401

    if any(label.startswith("onnx") for label in labels):
        with contextlib.suppress(Exception):
            import onnxruntime
            from onnx import TensorProto, helper

            from pvt_deploy.utils import onnx_model

            graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "prime",
                                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
            model = onnx_model(graph)
            session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            session.run(None, {"x": np.zeros((1, 3, 8, 8), np.float32)})
            del session
    if any(label.startswith("torch") for label in labels):
        with contextlib.suppress(Exception):
            import torch

            torch.zeros(8).add_(1)


def _absent_variants(folder: Path, manifest: Mapping[str, Any] | None, device: str | None) -> frozenset[str]:
    """Labels of an export folder (its ``manifest``, None for anything else) whose not running is no cause of
    failure unless named (:meth:`~pvt_deploy.runtimes.loader.Candidate.failure_code`: the variants it lacks),
    as in check. A Triton model folder has no variants: each label's row says how it runs."""
    from pvt_deploy.manifest import is_triton_model_folder
    from pvt_deploy.runtimes.loader import backend_candidates

    if manifest is None or is_triton_model_folder(folder):
        return frozenset()
    candidates = backend_candidates(folder, manifest, device=device)
    return frozenset(c.label for c in candidates if not c.available and c.failure_code(named=False) is None)


def nothing_ran(rows: list[dict[str, Any]], what: str) -> PvtDeployError:
    """The error for a run that could not do its job, given the rows of the backends that could not
    run: the exit code is that of the most telling cause, a bad input (a size outside the graph's
    range: 2) before a changed or foreign engine (4) before a backend that crashed (1) before a
    missing runtime (3). Every backend of that cause is named, in the rows' order: where PyTorch and ONNX
    Runtime both refused a size, the first alone (PyTorch's estimate) left out what the export's graph said.
    Backends refused for the same reason share it (``torch, onnx: ...``): a Triton model folder is the same
    words for each of the five default backends."""
    grouped: dict[tuple[Any, bool, str], list[str]] = {}
    for row in rows:
        key = (row.get("exit_code"), row.get("status") == "failed", str(row.get("reason", row["status"])))
        grouped.setdefault(key, []).append(str(row["backend"]))
    reasons = [(code, failed, f"{', '.join(names)}: {reason}") for (code, failed, reason), names in grouped.items()]
    for code, kind in ((InputError.exit_code, InputError), (EngineMismatchError.exit_code, EngineMismatchError)):
        said = [text for c, _, text in reasons if c == code]
        if said:
            return kind(f"{what}: {'; '.join(said)}")
    crashed = next((text for _, failed, text in reasons if failed), None)
    if crashed is not None:  # not "unavailable here" (3): it was there, and it failed
        return PvtDeployError(f"{what}: {crashed}")
    listed = "; ".join(text for _, _, text in reasons)
    return BackendUnavailableError(f"{what} ({listed})" if listed else what)


def _bench_one(label: str, target: str, size: tuple[int, int] | None, batch: int, warmup: int, iters: int,
               device: str | None, report: dict[str, Any], *, own_precision: bool = False,
               profile: bool = False, trust: bool = False, steps: Steps | None = None) -> dict[str, Any]:
    """One row. ``own_precision``: load ``target`` (a lone file) at the precision it holds, the row then
    labelled by it (``onnx-int8`` for a ``model.int8.onnx``). ``profile``: then time the backend's
    operators (:func:`_profile`), after the memory is measured. ``steps``: :func:`benchmark`'s."""
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.tasks.pipeline import Predictor

    def ran(done: int) -> None:  # between the runs, outside the times taken
        if steps is not None:
            steps(done, warmup + iters)

    kind, precision = BENCH_BACKENDS[label]
    if own_precision:
        precision = None
    row: dict[str, Any] = {"backend": label, "status": "skipped"}
    cuda = _cuda_reset(device)
    gpu_mb = None
    operators = None
    try:
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            with renamed(backend="backends"):  # the loader's errors name --backends onnx, which bench takes
                try:
                    backend, manifest = load_backend(target, backend=kind, precision=precision, device=device,
                                                     imgsz=size, random_weights_ok=True, trust=trust)
                except OSError as e:  # the disk failed (EIO) under the model's files: a bad input, not a crash
                    name = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes)) else target
                    raise cannot_read(name, e) from e
            row["load_s"] = round(time.perf_counter() - t0, 3)
            try:
                predictor = Predictor(backend, manifest, imgsz=size)
                predictor.check_batch(batch)
                image = _bench_image(manifest, size)
                frames = [_BenchFrame(image) for _ in range(batch)]
                feed, records = predictor.preprocess([f.image for f in frames])
                ran(0)
                for done in range(1, warmup + 1):
                    predictor.infer(feed)
                    ran(done)
                pre, inf, post = [], [], []
                for done in range(warmup + 1, warmup + iters + 1):
                    t0 = time.perf_counter()
                    feed, records = predictor.preprocess([f.image for f in frames])
                    t1 = time.perf_counter()
                    outputs = predictor.infer(feed)
                    t2 = time.perf_counter()
                    predictor.postprocess(outputs, records, frames)
                    t3 = time.perf_counter()
                    pre.append(1000 * (t1 - t0))
                    inf.append(1000 * (t2 - t1))
                    post.append(1000 * (t3 - t2))
                    ran(done)
                gpu_mb = _cuda_peak(backend.info, cuda)  # before close(): what the backend holds counts
                if profile:
                    mem.stop()
                    operators = _profile(backend, feed, min(iters, PROFILE_CALLS))
            finally:
                info = backend.info
                backend.close()
    except PvtDeployError as e:
        row.update(reason=str(e), exit_code=e.exit_code)
        return row
    except Exception as e:  # a backend crashing must not take the other rows with it
        log.debug("benchmark of %s failed", label, exc_info=True)
        row.update(status="failed", reason=f"{type(e).__name__}: {joined_lines(e)[:300]}")
        return row
    if own_precision:
        row["backend"] = next((k for k, v in BENCH_BACKENDS.items() if v == (kind, info.precision)), label)
    report["task"] = report["task"] or manifest.get("task")
    report["input_shape"] = report["input_shape"] or list(feed[predictor.input_name].shape)
    e2e = [a + b + c for a, b, c in zip(pre, inf, post, strict=True)]
    latency = _stats(inf)
    row.update(
        status="ok", precision=info.precision, device=info.device, runtime=info.name,
        file=info.details.get("file") or info.details.get("engine"),
        latency_ms=latency, end_to_end_ms=_stats(e2e),
        throughput_fps=round(1000.0 * batch / latency["mean"], 3) if latency["mean"] > 0 else None,
        stages_ms={"preprocess": round(float(np.mean(pre)), 3), "inference": round(float(np.mean(inf)), 3),
                   "postprocess": round(float(np.mean(post)), 3)},
        memory_mb={"rss_peak_delta": round(mem.delta_mb, 1), "cuda_peak": gpu_mb},
        random_weights=bool((manifest.get("weights") or {}).get("random_init")),
    )
    if operators is not None:
        row["profile"] = operators
    return row


PROFILE_CALLS = 10  # the most calls a profile times (fewer where --iters is less)


def _profile(backend: Backend, feed: Mapping[str, np.ndarray], calls: int) -> dict[str, Any]:
    """The backend's operator times (:meth:`~pvt_deploy.runtimes.base.Backend.profile`), or, where it cannot
    give them or fails, ``{"calls": 0, "total_ms": None, "ops": [], "error": why}``: the row's timings
    stand either way."""
    from pvt_deploy.runtimes.base import one_line

    try:
        return dict(backend.profile(feed, calls))
    except Exception as e:  # a profile that fails must not cost the row its timings
        log.debug("profile of %s failed", backend.info.name, exc_info=True)
        why = str(e) if isinstance(e, PvtDeployError) else f"{type(e).__name__}: {one_line(e)}"
        return {"calls": 0, "total_ms": None, "ops": [], "error": why}


class _BenchFrame:
    """A stand-in frame for post-processing (results need a picture and a name)."""

    index = 0
    path = "bench.jpg"
    timestamp = None

    def __init__(self, image: np.ndarray) -> None:
        self.image = image


def _cuda_reset(device: str | None) -> tuple[int, int] | None:
    """Before a row: the GPU ``device`` names (``cuda:N``, ``N``, ONNX Runtime's ``tensorrt:N``; ``cuda``,
    ``tensorrt``, none: the current one), its torch peak counter reset, and the bytes in use on it now, from
    which a backend that allocates outside torch is measured; None without CUDA. Only that GPU: asking
    every GPU would start a CUDA context (hundreds of MB) on each."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from pvt_deploy.runtimes.base import device_text
    from pvt_deploy.runtimes.torch import _resolve_device

    try:  # read as the backends read it: --device cpu is no GPU (it was read as the current one, whose
        # counters were then reset, making a CUDA context for a CPU run); the TensorRT EP's is a CUDA device
        kind, colon, number = (device_text(device) or "").lower().partition(":")
        gpu = _resolve_device("cuda" + colon + number if kind in ("tensorrt", "trt") else device)
    except PvtDeployError:
        return None  # the row's load says what is wrong with it (cuda:N past the GPUs there are)
    if gpu.type != "cuda":
        return None
    index = gpu.index if gpu.index is not None else torch.cuda.current_device()
    torch.cuda.synchronize(index)
    torch.cuda.reset_peak_memory_stats(index)
    free, total = torch.cuda.mem_get_info(index)
    return index, total - free


def _cuda_peak(info: Any, before: tuple[int, int] | None) -> float | None:
    """A row's GPU memory in MB (10^6 bytes), or None for a backend on the CPU (its row reads the RSS peak): for
    PyTorch on CUDA its allocator's peak; for ONNX Runtime's CUDA or TensorRT provider and TensorRT,
    which allocate outside torch's allocator (their arena, the engine and its context, so torch's peak
    read ~0), what the GPU holds now beyond what it held before loading. (Every row read torch's
    peak, the CPU ones too: 0 MB on a GPU machine.)"""
    if before is None or not info.on_gpu:
        return None
    import torch

    index, used = before
    if info.name == "torch":
        return round(megabytes(torch.cuda.max_memory_allocated(index)), 1)
    free, total = torch.cuda.mem_get_info(index)
    return round(megabytes(max(0, total - free - used)), 1)


# --------------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------------

def _check_images(images: str | os.PathLike[str] | None, limit: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    """The first ``limit`` pictures of ``check --images`` (:func:`~pvt_deploy.export.calibration.open_images`,
    as export reads its images, and a video's frames too), else of the bundled sample photos; and the
    source's kind (``images``, ``video``...), so that a video's are counted as frames."""
    from pvt_deploy.assets import sample_images
    from pvt_deploy.export.calibration import open_images

    out = []
    with open_images(images if images is not None else sample_images(), videos=True, what="check",
                     keep=limit) as src:
        for frame in src:
            out.append((frame.path, frame.image))
            if len(out) >= limit:
                break
        kind = str(src.kind)
    if not out:
        raise InputError(f"no readable images in {images}")
    return out, kind


def _exported_as(model: str) -> str:
    """``model`` as export's ``--model`` to paste where export builds from it (a zoo name, a checkpoint or its
    URL), else ``NAME`` (a lone graph or engine, which export does not take)."""
    from pvt_deploy.manifest import CHECKPOINT_SUFFIXES
    from pvt_deploy.models.zoo import resolve_name
    from pvt_deploy.utils import shell_quote

    if not model.lower().endswith(CHECKPOINT_SUFFIXES):
        try:
            resolve_name(model)
        except PvtDeployError:
            return "NAME"
    return shell_quote(model)


def cross_check(artifact: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None,
                backends: str | Sequence[str] | None = None, tolerance: float | None = None,
                imgsz: int | Sequence[int] | None = None, device: str | None = None, max_images: int = 8,
                gate_agreement: bool | None = None, progress: Progress | None = None,
                trust: bool = False, steps: Steps | None = None) -> dict[str, Any]:
    """Run every backend that can run ``artifact`` here on the same inputs and compare with a reference.

    The reference is PyTorch when the export's weights are available, else ``model.onnx``. The
    comparison is the export parity gate's (:mod:`pvt_deploy.export.parity`): per float output
    max_abs / max_rel / cosine (a detector's candidates order-free: its sorted best-class scores, and
    each candidate clear of its level's top-k cut against the nearest, box and scores), and task agreement on final results (detections matched at IoU 0.5
    with the same class, segmentation pixels, classification top-1), judged against the gate's
    per-precision tolerances scaled by ``tolerance`` (``0.5``: twice as strict). As in the gate,
    agreement is only gated for trained weights (``gate_agreement=None``): a random network is all
    near-ties. ``report["passed"]`` is False when any backend that ran is outside tolerance, or failed to
    run (its row ``failed``, with the ``reason`` and ``exit_code``, the others compared). A row with
    nothing to compare (only integer or post-NMS outputs, agreement not gated) is ``checked: False``, and
    ``report["checked"]`` is False when no row was checked: it passed without judging anything.
    ``trust``: the checkpoint PyTorch rebuilds the export from may be fully unpickled (an mmengine training
    file the export was made from with ``--trust-checkpoint``), as in :func:`benchmark`. ``progress(label)``
    as each backend that can run starts, ``steps(done, total)`` once it has loaded and after each picture it has
    run (``total`` the pictures), as in :func:`benchmark`.
    """
    from dataclasses import asdict

    from pvt_deploy.export.parity import Comparison, check_tolerance, resolve_tolerances
    from pvt_deploy.manifest import MANIFEST_NAME, is_triton_model_folder, read_manifest
    from pvt_deploy.runtimes.loader import (
        backend_candidates,
        load_backend,
        require_model,
        resolve_model,
        shadows_zoo_name,
    )
    from pvt_deploy.tasks.pipeline import Predictor
    from pvt_deploy.utils import shell_quote
    from pvt_deploy.utils.files import json_safe

    _refuse_unknown_device(device)  # as bench says it
    folder = Path(resolve_model(artifact))
    require_model(str(folder))  # a path that is not there: "no such file or folder", as in bench and infer
    graphs = sorted(folder.glob("*.onnx")) if folder.is_dir() and not (folder / MANIFEST_NAME).is_file() else []
    if graphs and not shadows_zoo_name(str(folder)):  # read_manifest's advice, --model its .onnx, is infer's
        raise InputError(f"{folder}: no {MANIFEST_NAME} (not a pvt-deploy export folder): check compares the "
                         "backends of an export folder, its manifest naming the model and weights",
                         hint=f"to time the graph alone: pvt-deploy bench --model {shell_quote(str(graphs[0]))}")
    if not folder.is_dir() or shadows_zoo_name(str(folder)):
        raise InputError(f"check needs an export folder (with manifest.json), got {artifact}",
                         hint=f"pvt-deploy export --model {_exported_as(os.fspath(artifact))} writes one under exports/")
    if is_triton_model_folder(folder):  # the loader's advice (run its 1/model.onnx) is infer's and bench's
        raise InputError(f"{folder} is a Triton model folder: check compares the backends of an export folder; "
                         "check the export it was made from (pvt-deploy check --model exports/NAME)",
                         hint=f"to time the served model: pvt-deploy bench --model triton://HOST:8000/{folder.name}")
    try:
        tolerances = resolve_tolerances(tolerance)
    except (TypeError, ValueError) as e:
        raise InputError(f"--tolerance: {e}") from e
    manifest = read_manifest(folder)
    if gate_agreement is None:
        gate_agreement = not (manifest.get("weights") or {}).get("random_init", False)
    wanted = parse_backends(backends, DEFAULT_BACKENDS) if backends is not None else None
    if wanted is not None and (other := [label for label in wanted if label not in DEFAULT_BACKENDS]):
        # bench's torch-fp16 and triton are not among an export folder's files, so check would skip them
        # unseen and then say that fewer than two backends "can run here" (exit 3)
        raise InputError(f"--backends {other[0]}: check compares an export folder's backends, "
                         f"{', '.join(DEFAULT_BACKENDS)}")
    if wanted is not None and len(wanted) < 2:
        raise InputError(f"--backends {','.join(wanted)}: check compares backends, so name at least two "
                         "(or leave --backends out for every one that runs here)")
    inputs, kind = _check_images(images, max_images)
    size = _pair(imgsz)
    _refuse_size_outside(manifest, size)
    report: dict[str, Any] = {"artifact": str(folder), "task": manifest.get("task"), "images": len(inputs),
                              "source_kind": kind, "imgsz": list(size) if size else None, "input_shape": None,
                              "reference": None, "agreement_gated": gate_agreement, "results": [], "passed": True,
                              "checked": False}
    runs: dict[str, list[dict[str, np.ndarray]]] = {}
    metas: list[Any] = []
    for cand in backend_candidates(folder, manifest, device=device):
        if wanted is not None and cand.label not in wanted:
            continue
        if not cand.available:
            report["results"].append({"backend": cand.label, "status": "skipped", "reason": cand.reason,
                                      "exit_code": cand.failure_code(named=wanted is not None)})
            continue
        if progress is not None:
            progress(cand.label)
        kind, precision = BENCH_BACKENDS[cand.label]
        try:
            with renamed(backend="backends"):  # as in bench
                backend, loaded = load_backend(folder, backend=kind, precision=precision, device=device, imgsz=size,
                                               trust=trust)
        except PvtDeployError as e:
            # a runtime missing here (3) or an engine for another GPU (4) is no fault of the export, but a file
            # of it that is refused (truncated, changed since the export, the weights PyTorch rebuilds it from
            # changed: 2) fails the check, as a graph that loads and cannot run does
            status = "failed" if e.exit_code == InputError.exit_code else "skipped"
            report["results"].append({"backend": cand.label, "status": status, "reason": str(e),
                                      "exit_code": e.exit_code})
            continue
        try:
            predictor = Predictor(backend, loaded, imgsz=size)
            outs, records_of = [], []
            if steps is not None:
                steps(0, len(inputs))
            for _, image in inputs:
                feed, records = predictor.preprocess([image])
                report["input_shape"] = report["input_shape"] or list(feed[predictor.input_name].shape)
                outs.append(predictor.infer(feed))
                records_of.append(records)
                if steps is not None:
                    steps(len(outs), len(inputs))
        except Exception as e:  # as in bench: one backend failing to run must not take the others' rows with it
            log.debug("check of %s failed", cand.label, exc_info=True)
            code = e.exit_code if isinstance(e, PvtDeployError) else PvtDeployError.exit_code
            reason = str(e) if isinstance(e, PvtDeployError) else f"{type(e).__name__}: {joined_lines(e)[:300]}"
            report["results"].append({"backend": cand.label, "status": "failed", "reason": reason, "exit_code": code})
            continue
        finally:
            backend.close()
        runs[cand.label], metas = outs, records_of
        report["results"].append({"backend": cand.label, "status": "ok", "precision": backend.info.precision,
                                  "device": backend.info.device})
    if len(runs) < 2:  # a check that compared nothing must not pass
        what = (f"{folder}: only {next(iter(runs))} can run this artifact here, so there is nothing to compare "
                "it with" if runs else f"{folder}: no backend can run this artifact here")
        raise nothing_ran([r for r in report["results"] if r["status"] != "ok"], what)
    reference = "torch" if "torch" in runs else next(iter(runs))
    report["reference"] = reference
    post = manifest.get("postprocess") or {}
    for row in report["results"]:
        if row["status"] != "ok":
            continue
        if row["backend"] == reference:
            row.update(reference=True, passed=True)
            continue
        tol = tolerances.get(row["precision"], tolerances["fp32"])
        comparison = Comparison(str(manifest.get("task")), post, max_rel=tol.max_rel)
        for ref_out, out, records in zip(runs[reference], runs[row["backend"]], metas, strict=True):
            comparison.add(ref_out, out, records)
        result = comparison.result()
        failures = check_tolerance(result, tol, gate_agreement=gate_agreement)
        # as the export's gate says it (run_parity): no float output to compare (graph NMS, argmax masks)
        # and an agreement that is not gated (random weights) judged nothing, so the row is not "ok"
        checked = bool(result["outputs"]) or gate_agreement
        row.update(json_safe(result))
        row.update(tolerance=asdict(tol), passed=not failures, checked=checked, failures=failures)
        report["passed"] = report["passed"] and not failures
        report["checked"] = report["checked"] or checked
    if any(row["status"] == "failed" for row in report["results"]):
        report["passed"] = False  # a backend that could not run has not agreed
    return report
