"""Shared pieces of the benchmark scripts: synthetic-weight artifacts, real inputs, fair timing.

Why each piece exists:

* **Weights.** Official weights cannot be downloaded here and random-init RetinaNet heads detect
  nothing, so every benchmark model gets seeded synthetic weights
  (:func:`pvt_deploy.models.synthetic.seeded_state_dict`). For detectors the classification head is
  then *calibrated* once on the bundled photos (a gain and a bias on ``retina_cls`` only): with the
  plain seeded head every anchor scores ~0.12 or ~1.0, so either hundreds of thousands of (box,
  class) pairs reach NMS or the top 100 detections all tie at 1.0 and agreement says nothing. The
  calibrated head gives tens of detections per image with scores spread over 0.05..0.9, like a
  trained detector, which makes detection agreement meaningful and post-processing cost realistic.
* **Inputs.** Agreement is measured on real photos (the bundled samples, plus flips and crops so
  there are more than three), preprocessed by the same :class:`~pvt_deploy.tasks.pipeline.Predictor`
  every backend uses. Speed is measured on a real photo too.
* **Timing.** Variants are run *interleaved* (A, B, C, A, B, C ...) in one process, so a burst of load
  from another process hits all of them alike; medians and p90 are reported with the load average
  before and after. PyTorch runs under ``inference_mode`` with threads = physical cores (what
  :class:`~pvt_deploy.runtimes.torch.TorchBackend` does) — a fair eager baseline.

Artifacts and weights are cached under ``--work`` (default ``~/.cache/pvt-deploy-bench``), keyed by
model, size and the pvt-deploy version, so a second run skips the exports.

* **Command line.** Every script's ``main`` runs through :func:`run`: Ctrl-C prints ``interrupted``
  and exits 130, SIGTERM (``timeout``, ``kill``) raises :class:`Terminated` so every ``finally``
  clean-up (temporary folders, export staging folders, child processes) runs, then exits 143; an
  error meant for the user (``PvtDeployError``) is one ``error: ...`` line, not a traceback.
  Arguments are checked before any model work (:func:`int_at_least`, :func:`parse_choices`,
  :func:`check_models`, :func:`check_output_file`, :func:`check_work`): a bad one is one :class:`ArgumentParser`
  error line and exit 2, and ``--json`` is known to be writable before a long run starts; it is
  written atomically (:func:`write_json`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import gc
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

log = logging.getLogger("benchmarks")

DEFAULT_WORK = Path(os.environ.get("PVT_BENCH_WORK", Path.home() / ".cache" / "pvt-deploy-bench"))
SEED = 0
# Detector head calibration: logit spread of the top candidates, and how many (anchor, class) pairs
# of the bundled photos clear the score threshold.
DET_LOGIT_SPREAD = 5.0
DET_CANDIDATES = 200
# Standard deviation of the box deltas (dx, dy, dw, dh) the calibrated regression head predicts; a
# trained RetinaNet's deltas are small, a seeded random head's are large enough for exp(dw) to blow
# boxes up to the image border, where the slightest change moves them.
DET_DELTA_STD = 0.2
# Smallest input side an export accepts (``pvt_deploy.export.onnx.STRIDE``; not imported here so that
# checking the arguments does not load PyTorch).
MIN_IMGSZ = 32


# --------------------------------------------------------------------------------------------------
# Machine state
# --------------------------------------------------------------------------------------------------


def load_average() -> float:
    """1-minute load average (0.0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def _busy_and_own() -> tuple[float, float] | None:
    """(CPU seconds the whole machine spent busy, counting time the hypervisor gave other VMs; CPU seconds
    of this process and of its children it has waited for), or None where ``/proc/stat`` is not there."""
    import resource

    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    return (user + nice + system + irq + softirq + steal) / tick, own


@contextlib.contextmanager
def others_cpu() -> Iterator[dict[str, float | None]]:
    """How much of the machine's CPU went to other processes (and other VMs) during the block: ``share`` (set on
    leaving it; None where the OS does not say) is their CPU time over the block's wall time times the CPUs;
    ``seconds`` their CPU time and ``own_seconds`` this process's. This process and the children it waited for
    inside the block (a CLI run) are not "other". A share of the cores taken by something else slows what is
    timed without a trace in its own figures."""
    result: dict[str, float | None] = {"share": None, "seconds": None, "own_seconds": None}
    start, t0 = _busy_and_own(), time.perf_counter()
    try:
        yield result
    finally:
        end, wall = _busy_and_own(), time.perf_counter() - t0
        if start is not None and end is not None and wall > 0:
            own = end[1] - start[1]
            others = max(0.0, (end[0] - start[0]) - own)
            result.update(share=round(others / (wall * (os.cpu_count() or 1)), 3), seconds=round(others, 3),
                          own_seconds=round(own, 3))


def machine() -> dict[str, Any]:
    """CPU model, cores, versions, GPU and the date: what every figure was measured on."""
    from pvt_deploy.bench import host_info

    info = host_info()
    flags: list[str] = []
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((x for x in f if x.startswith("flags")), "")
        have = set(line.split(":", 1)[-1].split())
        flags = [x for x in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
                 if x in have]
    info["isa"] = flags
    info["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    info["load_average_1m"] = load_average()
    info["commit"] = source_commit()
    return info


def source_commit() -> str | None:
    """The git commit of the code being measured (``+changes`` when the working tree differs from
    it), or None outside a git checkout: the version string stays the same from commit to commit,
    so a printed table is tied to its code by this."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return None
    return head.stdout.strip() + ("+changes" if dirty else "")


def cuda_available() -> tuple[bool, str]:
    """(usable, why not) for PyTorch CUDA."""
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return False, f"no CUDA device (torch {torch.__version__})"
    return True, ""


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when PyTorch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    ok, _ = cuda_available()
    return "cuda" if ok else "cpu"


# --------------------------------------------------------------------------------------------------
# Synthetic weights and artifacts
# --------------------------------------------------------------------------------------------------


def _quiet_random_init() -> contextlib.AbstractContextManager[None]:
    """create_model warns loudly about random init; here the weights are replaced right after."""
    logger = logging.getLogger("pvt_deploy.models.zoo")

    @contextlib.contextmanager
    def cm() -> Iterator[None]:
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)

    return cm()


def _calibrate_detector_head(model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Scale ``retina_cls`` and set its bias so the bundled photos give a realistic score spread, and
    scale ``retina_reg`` so box deltas have a trained detector's magnitude."""
    import torch

    from pvt_deploy.models import build_deploy_module
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    state = dict(state)
    w_key, b_key = "bbox_head.retina_cls.weight", "bbox_head.retina_cls.bias"
    state[b_key] = torch.zeros_like(state[b_key])
    model.load_state_dict(state)
    deploy = build_deploy_module(model, "detect")
    pre = Preprocessor(preprocess_spec("detect", (640, 640), dynamic=True, mean=deploy.mean_values,
                                       std=deploy.std_values), dynamic=True)
    logits: list[torch.Tensor] = []
    deltas: list[torch.Tensor] = []
    hooks = [model.bbox_head.retina_cls.register_forward_hook(lambda _m, _i, out: logits.append(out.flatten())),
             model.bbox_head.retina_reg.register_forward_hook(lambda _m, _i, out: deltas.append(out.flatten()))]
    try:
        with torch.inference_mode():
            for _, image in bundled_photos():
                x, _ = pre.batch([image])
                deploy(torch.from_numpy(x))
    finally:
        for hook in hooks:
            hook.remove()
    raw = torch.cat(logits).sort(descending=True).values
    gain = DET_LOGIT_SPREAD / float(raw[0] - raw[DET_CANDIDATES])
    bias = math.log(0.05 / 0.95) - gain * float(raw[DET_CANDIDATES])
    state[w_key] = state[w_key] * gain
    state[b_key] = torch.full_like(state[b_key], bias)
    reg_gain = DET_DELTA_STD / float(torch.cat(deltas).std())
    state["bbox_head.retina_reg.weight"] = state["bbox_head.retina_reg.weight"] * reg_gain
    state["bbox_head.retina_reg.bias"] = state["bbox_head.retina_reg.bias"] * reg_gain
    return state


def synthetic_checkpoint(zoo_name: str, work: Path) -> Path:
    """Seeded synthetic weights for ``zoo_name`` in the official layout (cached ``.pth``)."""
    import torch

    from pvt_deploy.models import create_model, resolve_name
    from pvt_deploy.models.synthetic import seeded_state_dict

    entry = resolve_name(zoo_name)
    path = work / "weights" / f"{entry.name}-seed{SEED}.pth"
    if path.is_file():
        return path
    with _quiet_random_init():
        model = create_model(entry.name)
    state = seeded_state_dict(model, SEED)
    if entry.task == "detect":
        state = _calibrate_detector_head(model, state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _export_code_digest() -> str:
    """A short hash of the code that builds exports (``pvt_deploy/export`` and ``pvt_deploy/models``):
    part of a cached export's folder name, so a change to that code between releases rebuilds it
    instead of benchmarking a graph the current code would not write."""
    import hashlib

    import pvt_deploy

    root = Path(pvt_deploy.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*root.joinpath("export").rglob("*.py"), *root.joinpath("models").rglob("*.py")]):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


# Graphs of a benchmark export that a script's --file can name (artifact() makes the FP16 and CPU INT8
# ones on request).
GRAPH_FILES = ("model.onnx", "model.int8.onnx", "model.fp16.onnx")


def artifact_graph(zoo_name: str, work: Path, name: str, *, imgsz: int) -> tuple[Path, dict[str, Any]]:
    """The cached export of ``zoo_name`` with graph ``name`` (one of :data:`GRAPH_FILES`) added when it
    lacks it: (that graph's path, the export's manifest); exits with one line when it is not there."""
    from pvt_deploy.manifest import read_manifest

    folder = artifact(zoo_name, work, imgsz=imgsz, int8=name == "model.int8.onnx", half=name == "model.fp16.onnx")
    manifest = read_manifest(folder)
    path = folder / name
    if not path.is_file():
        have = ", ".join(sorted(manifest.get("files") or {})) or "none"
        raise SystemExit(f"error: {name} is not in the export {folder} (it holds: {have})")
    return path, manifest


def artifact(zoo_name: str, work: Path, *, imgsz: int | tuple[int, int], int8: bool = False,
             half: bool = False, int8_cpu: str = "auto") -> Path:
    """Export ``zoo_name`` with synthetic weights (dynamic graph) into the cache; add variants asked for.

    The export's own parity gate is skipped: the benchmarks measure agreement themselves.
    """
    from pvt_deploy import __version__
    from pvt_deploy.export import export_onnx
    from pvt_deploy.manifest import read_manifest

    hw = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    weights = synthetic_checkpoint(zoo_name, work)
    folder = work / "exports" / f"{zoo_name}-{hw[0]}x{hw[1]}-{__version__}-{_export_code_digest()}"
    for stale in folder.parent.glob(f"{zoo_name}-{hw[0]}x{hw[1]}-*"):  # built by other code: never used again
        if stale != folder and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    have: set[str] = set()
    if (folder / "manifest.json").is_file():
        have = set(read_manifest(folder).get("files") or {})
    want_int8 = int8 and "model.int8.onnx" not in have
    want_half = half and "model.fp16.onnx" not in have
    if "model.onnx" not in have:
        export_onnx(zoo_name, folder, weights=weights, imgsz=hw, half=half, int8=int8, int8_flavour="cpu",
                    int8_cpu=int8_cpu, parity=False)
    elif want_int8 or want_half:
        export_onnx(folder, half=want_half, int8=want_int8, int8_flavour="cpu", int8_cpu=int8_cpu, parity=False)
    return folder


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """The bundled sample photos as RGB arrays."""
    from pvt_deploy.assets import sample_images
    from pvt_deploy.io.sources import read_image

    return [(p.name, read_image(p)) for p in sample_images()]


def eval_photos() -> list[tuple[str, np.ndarray]]:
    """Twelve real pictures for agreement: each bundled photo as is, mirrored, a centre crop and a
    shifted crop (different content at different scales, so detections differ between them)."""
    out: list[tuple[str, np.ndarray]] = []
    for name, im in bundled_photos():
        h, w = im.shape[:2]
        out.append((name, im))
        out.append((f"{name}:flip", np.ascontiguousarray(im[:, ::-1])))
        out.append((f"{name}:crop", np.ascontiguousarray(im[h // 8: h - h // 8, w // 8: w - w // 8])))
        out.append((f"{name}:corner", np.ascontiguousarray(im[: 3 * h // 4, w // 4:])))
    return out


def bench_input(predictor: Any, batch: int) -> tuple[dict[str, np.ndarray], list[Any]]:
    """A (batch, 3, H, W) feed made of real photos, preprocessed as at inference."""
    photos = [im for _, im in bundled_photos()]
    images = [photos[i % len(photos)] for i in range(batch)]
    feed, records = predictor.preprocess(images)
    return feed, records


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Latencies (seconds) of one variant, measured interleaved with the others."""

    seconds: list[float] = field(default_factory=list)

    def summary(self, batch: int = 1) -> dict[str, float | int]:
        ms = np.asarray(self.seconds, dtype=np.float64) * 1000.0
        if ms.size == 0:
            return {}
        med = float(np.median(ms))
        return {"median_ms": round(med, 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
                "mean_ms": round(float(ms.mean()), 2), "min_ms": round(float(ms.min()), 2), "runs": int(ms.size),
                "images_per_s": round(1000.0 * batch / med, 2) if med > 0 else 0.0}


def round_orders(n: int) -> list[list[int]]:
    """The orders in which :func:`interleaved` runs ``n`` variants (indices), one per round, repeated: a
    Williams design. Over one cycle (``n`` rounds, ``2n`` for an odd ``n``) each variant runs once a
    round, as often in each place as the others, and right after each of the others equally often.

    Rotating one order (ABCD, BCDA, CDAB, DABC), as this did before, keeps each variant's predecessor:
    the variant listed after PyTorch ran right after it in every round but the one it opened."""
    if n == 0:
        return [[]]
    # 0, 1, n-1, 2, n-2, ...: steps of +1, -2, +3, -4 ..., all different mod an even n
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    orders = [[(i + shift) % n for i in first] for shift in range(n)]
    if n % 2:  # mod an odd n they pair up (+1 = -4 mod 5); the orders reversed add the steps back
        orders += [order[::-1] for order in orders]
    return orders


# Idle time before each timed call in :func:`interleaved` (see there).
GAP_S = 0.05


def interleaved(runs: Mapping[str, Callable[[], Any]], *, rounds: int, warmup: int = 2,
                budget_s: float | None = None, sync: Callable[[], None] | None = None,
                gap_s: float = GAP_S) -> dict[str, Timing]:
    """Run every callable ``warmup`` times, then ``rounds`` rounds of one call each, in turn (a new
    order each round, see :func:`round_orders`), with ``gap_s`` of idle time before each timed call.

    The gap lets the previous variant's worker threads go idle first: PyTorch's OpenMP workers keep
    spinning for milliseconds after a forward pass, and on two cores the call that starts right
    after one runs on a contended core (pvt_small classifier, ONNX Runtime right after PyTorch:
    55-75 ms; after a pause: 51-53 ms). Every variant gets the same gap, so none is favoured, and
    each is timed as it runs in an application that does other work between calls.

    ``budget_s`` stops early (after at least 3 rounds) when the measured time runs out, so one slow
    variant cannot stretch a suite past its time box. ``sync`` (e.g. ``torch.cuda.synchronize``) is
    called before each clock read for asynchronous devices.
    """
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    gc.collect()
    out = {k: Timing() for k in runs}
    t_start = time.perf_counter()
    gc_was = gc.isenabled()
    gc.disable()  # a collection inside one timed call would charge it to whichever variant ran
    try:
        names = list(runs)
        orders = round_orders(len(names))
        for r in range(rounds):
            # A new order each round so that every variant runs right after every other one equally
            # often: the variant that runs right after PyTorch inherits its cold caches and its OpenMP
            # workers still spinning down.
            for i in orders[r % len(orders)]:
                name = names[i]
                fn = runs[name]
                if sync is not None:
                    sync()
                if gap_s > 0:
                    time.sleep(gap_s)
                t0 = time.perf_counter()
                fn()
                if sync is not None:
                    sync()
                out[name].seconds.append(time.perf_counter() - t0)
            if budget_s is not None and r >= 2 and time.perf_counter() - t_start > budget_s:
                break
            gc.collect()
    finally:
        if gc_was:
            gc.enable()
    return out


def ort_cpu_session(model: str | os.PathLike[str] | Any, *, level: str = "all", threads: int | None = None,
                    spin: bool | str = "run", pin: bool = True, save_to: Path | None = None,
                    profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime CPU session on ``model`` (a path or a ``ModelProto``) with the backend's defaults:
    optimisation level ``level``, ``threads`` intra-op threads (default physical cores), workers
    spinning only inside a run (``spin``: ``"run"``, ``True``/``"always"`` or ``False``/``"never"``),
    each worker on a core of its own (``pin``): the backend's own ``session_options``."""
    import onnxruntime as ort

    from pvt_deploy.runtimes.onnxruntime import session_options, spin_mode, worker_affinities
    from pvt_deploy.runtimes.torch import physical_cores

    cores = physical_cores()
    intra = threads or cores
    so = session_options(ort, intra, cores, spin_mode(spin), worker_affinities(intra) if pin else None)
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
    if save_to is not None:
        so.optimized_model_filepath = str(save_to)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def median_call(fn: Callable[[], Any], n: int = 5, warmup: int = 0) -> float:
    """Median seconds of ``n`` calls of ``fn`` after ``warmup`` untimed ones (a quick, non-interleaved figure)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def median_s(t: Timing) -> float:
    return statistics.median(t.seconds) if t.seconds else float("nan")


# --------------------------------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------------------------------


def agreement(task: str, post: Mapping[str, Any], ref: Sequence[Mapping[str, np.ndarray]],
              test: Sequence[Mapping[str, np.ndarray]], metas: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Task agreement + cosine of ``test`` against ``ref`` (per-image outputs), with the export
    parity gate's own :class:`~pvt_deploy.export.parity.Comparison`."""
    from pvt_deploy.export.parity import Comparison
    from pvt_deploy.utils.files import json_safe

    comp = Comparison(task, post)
    for r, t, m in zip(ref, test, metas, strict=True):
        comp.add(r, t, m)
    result = comp.result()
    cosines = [s["cosine"] for s in result["outputs"].values() if "cosine" in s]
    summary: dict[str, Any] = {"cosine": round(min(cosines), 6) if cosines else None}
    t = result.get("task") or {}
    if task == "detect":
        summary.update(detection_f1=round(t.get("f1", 0.0), 4), precision=round(t.get("precision", 0.0), 4),
                       recall=round(t.get("recall", 0.0), 4), ref_detections=t.get("ref_detections"),
                       required=t.get("required_ref"), test_detections=t.get("test_detections"),
                       required_test=t.get("required_test"))
    elif task == "classify":
        # Top-1 as it reads: the same best class. The parity gate also passes a "near-tie" (the candidate's
        # best within 0.02 probability of the reference's), but the seeded weights spread 1000 classes'
        # probability so thin (best 0.01-0.04) that most of the reference's top 5 sit within 0.02 of its
        # best: with that rule a wrong class there still read as top-1 1.00.
        images, ties = t.get("images") or 0, t.get("top1_ties", 0)
        summary.update(top1=round(t.get("top1_agreement", 0.0) - (ties / images if images else 0.0), 4),
                       top1_near_ties=ties, top5=round(t.get("top5_overlap", 0.0), 4))
    elif task == "segment":
        summary.update(pixel_agreement=round(t.get("pixel_agreement", 0.0), 4))
    summary["images"] = result.get("images")
    return dict(json_safe(summary))


def agreement_text(a: Mapping[str, Any] | None) -> str:
    """One short cell: ``F1 0.980 cos 0.9991`` / ``top1 1.00 top5 0.96 cos 0.9990``. An F1 where neither
    side had a detection it must reproduce compared nothing: ``F1 no dets`` / ``F1 none clear``, as the
    export's and ``check``'s tables say it (:func:`pvt_deploy.export.parity.agreement_text`)."""
    if not a:
        return "-"
    cos = a.get("cosine")
    tail = f" cos {cos:.4f}" if isinstance(cos, float) else ""
    if "detection_f1" in a:
        from pvt_deploy.export.parity import agreement_text as task_agreement_text

        task = {"metric": "detection_f1", "required_ref": a.get("required"), "required_test": a.get("required_test"),
                "ref_detections": a.get("ref_detections"), "test_detections": a.get("test_detections")}
        return f"F1 {task_agreement_text({'agreement': float(a['detection_f1']), 'task': task})}{tail}"
    if "top1" in a:
        ties = a.get("top1_near_ties") or 0
        return f"top1 {a['top1']:.2f}{f' ({ties} near-tie)' if ties else ''} top5 {a['top5']:.2f}{tail}"
    if "pixel_agreement" in a:
        return f"pix {a['pixel_agreement']:.3f}{tail}"
    return tail.strip() or "-"


def run_per_image(infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], predictor: Any,
                  photos: Sequence[tuple[str, np.ndarray]]) -> tuple[list[dict[str, np.ndarray]], list[list[Any]]]:
    """Outputs and letterbox records of ``infer`` on each photo, one image per call."""
    outs, metas = [], []
    for _, image in photos:
        feed, records = predictor.preprocess([image])
        outs.append(infer(feed))
        metas.append(records)
    return outs, metas


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically. Where that fails after all (the folder went away or
    the disk filled up during the run), the results go to a file in the temporary folder instead and
    the run ends with one ``error:`` line naming it (exit 1), rather than a traceback that loses them."""
    from pvt_deploy.utils.files import atomic_write_text, json_dumps

    p = Path(path)
    text = json_dumps(data, indent=2, default=str) + "\n"
    try:
        atomic_write_text(p, text)  # the package's own writer: temp file beside it, fsync, rename
    except OSError as e:
        why = e.strerror or str(e)
        try:
            fd, rescue = tempfile.mkstemp(prefix=f"pvt-bench-{p.stem}-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(text)
        except OSError:
            raise SystemExit(f"error: cannot write {p}: {why}; the results are lost") from None
        raise SystemExit(f"error: cannot write {p}: {why}; the results were saved to {rescue}") from None


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    """Plain aligned text (copy-pastes into a README as is)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def header_lines(info: Mapping[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
    return (f"{info.get('date')} | {info.get('cpu')} ({info.get('physical_cores')} cores, "
            f"{'/'.join(info.get('isa') or []) or 'no AVX2'}){gpu} | {platform.system()} | {versions} | "
            f"load {info.get('load_average_1m')}" + (f" | commit {info['commit']}" if info.get("commit") else ""))


# --------------------------------------------------------------------------------------------------
# Command line: argument checks, signals, user errors
# --------------------------------------------------------------------------------------------------


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (see :func:`run`) so that ``finally`` clean-ups run.

    A ``BaseException`` like ``KeyboardInterrupt``: the scripts' ``except Exception`` clauses (one
    variant failing must not end a suite) do not swallow it.
    """


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a script's ``main(argv)`` and turn its endings into exit codes a shell expects.

    * Ctrl-C (SIGINT): ``interrupted`` on stderr, exit 130;
    * SIGTERM: raised as :class:`Terminated` so ``finally`` blocks and context managers clean up
      (temporary folders, export staging folders, child processes), ``terminated``, exit 143;
    * stdout is line-buffered, so ``| tee log`` shows each table as it is printed;
    * an error meant for the user (:class:`pvt_deploy.errors.PvtDeployError`): ``error: ...`` (and
      its hint) on stderr, its exit code — not a traceback. Anything else is a bug and keeps its
      traceback.

    A signal the parent set to be ignored (SIGTERM under some supervisors) stays ignored.
    """
    from pvt_deploy.utils.files import printable_streams
    from pvt_deploy.utils.signals import sigterm_raises

    printable_streams()
    with contextlib.suppress(AttributeError, ValueError):  # progress shows line by line through a pipe (| tee)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with sigterm_raises(Terminated, only_if_default=True):
        try:
            return main(argv)
        except KeyboardInterrupt:
            _say("interrupted")
            return 130
        except Terminated:
            _say("terminated")
            return 143
        except Exception as e:
            code = _user_error(e)
            if code is None:
                raise
            return code


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def _user_error(e: Exception) -> int | None:
    """Print ``e`` as one ``error:`` line (its hint included) when it is a PvtDeployError; its exit code
    (None: not one)."""
    errors = sys.modules.get("pvt_deploy.errors")  # never loaded: the error cannot be one of its
    if errors is None or not isinstance(e, errors.PvtDeployError):
        return None
    _say(f"error: {' '.join(str(e).split()) or type(e).__name__}")
    return int(getattr(e, "exit_code", 1) or 1)


class ArgumentParser(argparse.ArgumentParser):
    """Every script's parser: a bad argument is one line, ``speed.py: error: ...``, and exit 2, as README
    says; argparse's own printed its usage (four lines of options for ``speed.py``) above it, where the
    error was hard to find. ``--help`` still prints the usage.

    ``description`` is the script's docstring: ``--help`` shows its first line above the options and the
    rest, as written, below them. It showed the first line only, so ``speed.py --help`` did not say what
    is timed (the inference call, interleaved), what "vs torch" divides, or ``export_cost.py --help`` what
    its target is, which someone running the scripts on their own machine needs to read the figures."""

    def __init__(self, *, description: str | None = None, **kwargs: Any) -> None:
        summary, _, details = (description or "").strip().partition("\n")
        super().__init__(description=summary or None, epilog=details.strip("\n") or None,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse ``type=``: an integer >= ``minimum`` (``--rounds 0`` is refused, not replaced by a default)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def seconds_arg(text: str) -> float:
    """argparse ``type=``: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


#: argparse ``type=``: one input side in pixels, at least :data:`MIN_IMGSZ` (the graph's stride).
imgsz_arg = int_at_least(MIN_IMGSZ)


def imgsz_pair(text: str) -> tuple[int, int]:
    """``640`` -> (640, 640); ``480,640`` or ``480x640`` -> (480, 640) (the CLI's parser), each side
    >= :data:`MIN_IMGSZ`. Raises ``ValueError`` with a message for the user."""
    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.utils import size_pair

    try:
        pair = size_pair(text, what="size")
    except PvtDeployError as e:
        raise ValueError(str(e)) from None
    if pair is None:
        raise ValueError("expected H or H,W (integers), got an empty string")
    if min(pair) < MIN_IMGSZ:
        raise ValueError(f"each side must be at least {MIN_IMGSZ} (the graph's stride), got {text!r}")
    return pair


def parse_choices(parser: argparse.ArgumentParser, option: str, text: str, choices: Sequence[str]) -> list[str]:
    """Comma-separated names from ``choices`` (order kept, repeats dropped); an empty list or an unknown
    name is a parser error naming the valid ones (with a "did you mean" where one is close)."""
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        parser.error(f"{option}: empty; choose from {', '.join(choices)}")
    for name in names:
        if name not in choices:
            close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            parser.error(f"{option}: unknown {name!r}; {hint}choose from {', '.join(choices)}")
    return names


def parse_int_pairs(parser: argparse.ArgumentParser, option: str, text: str, *, sep: str, form: str,
                    examples: str, what: str) -> list[tuple[int, int]]:
    """Comma-separated pairs of positive integers written ``a{sep}b`` (any case), in order; a malformed
    pair, one below 1 or an empty list is a parser error that shows ``form`` and ``examples`` (its
    first item is the example of one pair) and calls the numbers ``what``."""
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        try:
            a, b = (int(v) for v in item.lower().split(sep))
        except ValueError:
            parser.error(f"{option} {item!r}: expected {form}, e.g. {examples.split(',')[0]}")
        if min(a, b) < 1:
            parser.error(f"{option} {item!r}: {what} must be at least 1")
        pairs.append((a, b))
    if not pairs:
        parser.error(f"{option}: empty; give {form} pairs, e.g. {examples}")
    return pairs


def add_model_options(parser: argparse.ArgumentParser, *, model: str, batch: int) -> None:
    """The options of the one-model tuning scripts: ``--model`` (a zoo name, synthetic weights),
    ``--imgsz`` (default: the zoo size), ``--batch`` and ``--work`` (the export cache); read them back
    with :func:`model_and_size`."""
    parser.add_argument("--model", default=model, help="zoo name; synthetic weights")
    parser.add_argument("--imgsz", type=imgsz_arg, default=None,
                        help="default: the zoo size (640 detectors, 224 classifiers)")
    parser.add_argument("--batch", type=int_at_least(1), default=batch)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of weights and exports")


def model_and_size(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Any, int]:
    """Check the options :func:`add_model_options` added (parser errors, exit 2), set warnings-only
    logging, and return the zoo entry and the input side."""
    check_work(parser, args.work)
    entry = check_models(parser, "--model", [args.model])[args.model]
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return entry, int(args.imgsz or entry.imgsz[0])


def check_models(parser: argparse.ArgumentParser, option: str, names: Sequence[str]) -> dict[str, Any]:
    """Zoo entries of ``names`` (``pvt_v2_b0``, ``pvt_small-cls`` ...); an unknown name is a parser error
    with the zoo's own "did you mean". Loads PyTorch (the zoo module does), so call it after the cheap
    checks."""
    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.models import resolve_name

    out: dict[str, Any] = {}
    for name in names:
        try:
            out[name] = resolve_name(name)
        except PvtDeployError as e:
            parser.error(f"{option}: {' '.join(str(e).split())}")
    return out


def _probe_writable(folder: Path) -> str | None:
    """Why files cannot be created under ``folder`` (None: they can). ``folder`` need not exist yet:
    its nearest existing parent is tried, which must be a folder."""
    from pvt_deploy.utils.files import probe_writable

    try:
        probe_writable(folder)
    except NotADirectoryError as e:
        return f"{e.filename} is not a folder"
    except OSError as e:
        return f"cannot create files in {e.filename}: {e.strerror or e}"
    return None


def check_output_file(parser: argparse.ArgumentParser, option: str, path: Path | None) -> None:
    """Refuse (parser error, exit 2) an output file that could not be written at the end of the run:
    a folder, or a path under a file or in a folder where files cannot be created."""
    if path is None:
        return
    if str(path).strip() == "":
        parser.error(f"{option}: empty path")
    if path.is_dir():
        parser.error(f"{option} {path}: is a folder; give a file name, e.g. {path / 'results.json'}")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO: the atomic write would replace it
        parser.error(f"{option} {path}: exists and is not a regular file")
    why = _probe_writable(path.parent if str(path.parent) else Path("."))
    if why:
        parser.error(f"{option} {path}: {why}")


def check_work(parser: argparse.ArgumentParser, work: Path, option: str = "--work") -> None:
    """The cache folder must be a folder (or creatable) where files can be written."""
    if work.exists() and not work.is_dir():
        parser.error(f"{option} {work}: is not a folder")
    why = _probe_writable(work)
    if why:
        parser.error(f"{option} {work}: {why}")
