"""From frames to results, overlapped: decode | preprocess | inference | postprocess+draw | write.

:class:`Predictor` is one backend plus the shared pre/post-processing for its manifest: a batch of
RGB frames in, one :class:`~pvt_deploy.tasks.results.Result` per frame out. :class:`Pipeline` runs
a :class:`~pvt_deploy.io.sources.Source` through it with one thread per stage and bounded queues,
so while the backend runs frame *n*, frame *n+1* is being resized and frame *n-1* drawn; the
caller's thread consumes results (and encodes them with :class:`ResultWriter`). Why this shape:

* End-to-end throughput approaches model-only throughput: decode (PyAV), resize (OpenCV),
  inference (ORT/torch/TensorRT), drawing (OpenCV) and encode (libx264) all release the GIL.
* Memory stays flat on hour-long clips: queues are bounded (a slow stage back-pressures the
  decoder instead of buffering frames) and results are handed on, never accumulated.
* Order is kept (one thread per stage, FIFO queues), so frame *n* of the output is frame *n* of the
  input, and an error travels down the queues *after* the frames decoded before it: a truncated or
  dropped source still yields everything it delivered, then the error.
* Python's thread switch interval is 0.2 ms while a threaded pipeline runs a PyTorch model (the
  interpreter's default is 5 ms; ``PVT_DEPLOY_GIL_SWITCH_S`` overrides, 0 leaves it alone). PyTorch
  releases the GIL around every operator and must take it back before the next one; when another
  stage is running Python code at that moment, the default makes the model wait up to 5 ms per
  operator (the convoy effect), which hurts most where operators are short: on a GPU, or a small
  input. A ``pvt_v2_b0-cls`` forward at 32x32 on one CPU thread: 8.6 ms alone, 1915 ms beside a
  thread spinning in Python at 5 ms, 99 ms at 0.2 ms (a scratch measurement). Three alternating runs
  of ``PVT_DEPLOY_GIL_SWITCH_S=0 python benchmarks/video_overhead.py --part fps --backend torch
  --imgsz 128`` against the default on the 2-core Zen 3: ratio to model-only 0.611 / 0.483 / 0.514
  at 5 ms, 0.661 / 0.551 / 0.517 at 0.2 ms. ONNX Runtime, TensorRT and Triton release the GIL once
  per call and keep Python's default (one run each of the ONNX Runtime default above: 1.045 at
  0.2 ms, 1.140 at 5 ms, inside this VM's spread).
* Stopping is cooperative: closing the iterator (Ctrl-C in the consumer, ``break``, an exception
  in any stage) sets one event that every blocking queue operation polls, and asks the source to stop
  (a live stream's wait for a frame a stalled camera never sends), so threads exit and the caller's
  ``with`` blocks finalise the outputs (the H.264 writer writes its trailer).

Live streams reconnect inside the source (see :mod:`pvt_deploy.io.sources`); the pipeline simply
waits through the gap. Batching groups ``batch`` frames per inference call; for live streams it takes
what has arrived instead of waiting for a full batch, so latency does not grow. By default a video
file goes in batches of the backend's ``batch_shards`` (ONNX Runtime on the CPU: one frame per
core, each core running its own frame; see :mod:`pvt_deploy.runtimes.onnxruntime`), everything
else one frame at a time: on the 2-core dev VM a 720p clip through ``pvt_v2_b0`` at 640 ran at
4.11, 4.21 and 4.16 end-to-end FPS against 3.86, 3.66 and 3.93 with ``--batch 1`` (three
alternating runs of ``python benchmarks/video_overhead.py --part fps``), since a single-threaded
shard loses less to the decode, draw and encode threads than two threads that synchronise at
every operator. The next batch is queued behind a batch that runs on those shards (``submit``; see
``Pipeline._infer_loop``), so a core that ends its frame takes the next one rather than waiting for
the other core's (2-3 % more end-to-end FPS on the 2-core Xeon, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pvt_deploy.errors import InputError, ShapeError, option, stop_reason
from pvt_deploy.manifest import batch_limit
from pvt_deploy.runtimes.base import Backend
from pvt_deploy.tasks.preprocess import Letterbox, Preprocessor
from pvt_deploy.tasks.results import FrameLike, Result, draw_threshold, make_results
from pvt_deploy.utils import size_pair

__all__ = ["STAGES", "Pipeline", "Predictor", "ResultWriter", "RunSummary", "StageTimes", "check_outputs",
           "check_settings", "check_writable", "increment_dir", "output_error"]

log = logging.getLogger(__name__)

STAGES = ("decode", "preprocess", "inference", "postprocess", "draw", "write")
_POLL_S = 0.1  # how often blocked queue operations look at the stop event
_JOIN_S = 5.0  # how long closing waits for a stage thread (an inference call in flight) before leaving it
GIL_SWITCH_S = 2e-4  # sys.setswitchinterval while a threaded pipeline runs (see the module docstring)
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


def _after_fork_in_child() -> None:
    """A fork while another thread ran in :func:`short_gil_switch`: that thread is not in the child, so
    nothing would restore the interval; the child starts as a process that runs nothing does."""
    global _switch_lock, _switch_users
    _switch_lock = threading.Lock()  # a thread of the parent may have held it at the fork
    if _switch_users:
        sys.setswitchinterval(_switch_saved)
        _switch_users = 0


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def short_gil_switch() -> Iterator[None]:
    """Run the block with Python's thread switch interval at most :data:`GIL_SWITCH_S` (or
    ``PVT_DEPLOY_GIL_SWITCH_S`` seconds; 0: unchanged), restoring it when the last user leaves."""
    global _switch_users, _switch_saved
    text = os.environ.get("PVT_DEPLOY_GIL_SWITCH_S", "")
    try:
        wanted = float(text) if text.strip() else GIL_SWITCH_S
    except ValueError:
        log.warning("PVT_DEPLOY_GIL_SWITCH_S=%r is not a number of seconds; using %g", text, GIL_SWITCH_S)
        wanted = GIL_SWITCH_S
    if wanted <= 0:
        yield
        return
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(wanted, _switch_saved))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


class StageTimes:
    """Busy time per stage (not time spent waiting on queues) and frames it handled, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.frames: dict[str, int] = dict.fromkeys(STAGES, 0)

    def add(self, stage: str, seconds: float, frames: int = 1) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.frames[stage] = self.frames.get(stage, 0) + frames

    def ms_per_frame(self, stage: str) -> float | None:
        n = self.frames.get(stage, 0)
        return 1000.0 * self.seconds[stage] / n if n else None

    def to_json(self) -> dict[str, dict[str, float | int | None]]:
        out: dict[str, dict[str, float | int | None]] = {}
        for stage in self.seconds:
            ms = self.ms_per_frame(stage)
            if ms is None:
                continue
            out[stage] = {"ms_per_frame": round(ms, 3), "fps": round(1000.0 / ms, 2) if ms > 0 else None,
                          "frames": self.frames[stage], "seconds": round(self.seconds[stage], 4)}
        return out


@dataclass
class RunSummary:
    """What a run did: frames, wall time, throughput, per-stage cost, and what went wrong on the way.

    ``model_fps`` is frames per second of inference busy time alone (the backend's own throughput
    inside the run), so ``fps / model_fps`` says how well the other stages are hidden.
    """

    frames: int = 0
    seconds: float = 0.0
    stages: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    skipped: int = 0
    dropped: int = 0
    source_error: str | None = None
    interrupted: bool = False
    outputs: list[str] = field(default_factory=list)
    #: the folders of ``outputs`` that get a file per picture or frame (``labels``, ``crops``) -> files written
    #: there: a stream labelled for days would list millions of paths, and they would stay in memory
    files_in: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_fps(self) -> float | None:
        ms = self.stages.get("inference", {}).get("ms_per_frame")
        return 1000.0 / float(ms) if ms else None

    def to_json(self) -> dict[str, Any]:
        model_fps = self.model_fps
        return {"frames": self.frames, "seconds": round(self.seconds, 3), "fps": round(self.fps, 3),
                "model_fps": round(model_fps, 3) if model_fps else None,
                "pipeline_efficiency": round(self.fps / model_fps, 3) if model_fps else None,
                "stages": self.stages, "skipped": self.skipped, "dropped": self.dropped,
                "source_error": self.source_error, "interrupted": self.interrupted, "outputs": self.outputs,
                "files_in": self.files_in}


# --------------------------------------------------------------------------------------------------
# Predictor: one backend + the shared pre/post-processing
# --------------------------------------------------------------------------------------------------


def check_settings(*, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
                   draw_conf: float | None = None) -> None:
    """Refuse detection settings outside their range (``conf``/``iou``/``draw_conf`` in [0, 1], ``max_det``
    >= 1: 0 would keep no detection, and a negative one would count from the end), named as the user
    gave them (:func:`~pvt_deploy.errors.option`: ``--conf`` in ``pvt-deploy infer``, ``conf`` in Python)."""
    for name, value in (("conf", conf), ("draw_conf", draw_conf), ("iou", iou)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InputError(f"{option(name)} must be in [0, 1], got {value}")
    if max_det is not None and (isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1):
        raise InputError(f"{option('max_det')} must be an integer >= 1, got {max_det!r}")


def check_outputs(task: str, *, save_txt: bool = False, save_crop: bool = False) -> None:
    """Refuse outputs the model's ``task`` has nothing for, named as the user gave them: YOLO label files
    (``save_txt``) are a detector's boxes or a classifier's top-5, and crops (``save_crop``) a detector's."""
    if save_txt and task not in ("detect", "classify"):
        also = f"; its class maps are {option('save_mask')}'s" if task == "segment" else ""
        raise InputError(f"{option('save_txt')} writes YOLO labels of detections or classes; a {task} model has "
                         f"none{also}")
    if save_crop and task != "detect":
        raise InputError(f"{option('save_crop')} cuts out detected boxes; a {task} model has none")


GPU_VIDEO_BATCH = 4
"""Frames per call for a video file on a GPU. One frame at a time leaves the GPU waiting on the
host's kernel launches: on an H200, ``pvt_v2_b0`` at 640 under PyTorch FP16 took 17.9 ms for one
image and 23.4 ms for eight (``benchmarks/speed.py --device cuda``), and inside ``pvt-deploy infer``,
beside the decode, draw and encode threads, 43 ms per frame at batch 1."""


class Predictor:
    """Runs batches of RGB frames through ``backend`` as ``manifest`` says (preprocess, postprocess).

    ``imgsz`` overrides the preprocessing size of a dynamic graph (a static graph only takes its
    exported size). ``conf``/``iou``/``classes``/``max_det`` override the manifest's detection
    settings; ``topk`` the classification's. ``draw_conf``: the score from which boxes are drawn
    (:func:`~pvt_deploy.tasks.results.draw_threshold`).
    """

    def __init__(self, backend: Backend, manifest: Mapping[str, Any], *, imgsz: int | str | Sequence[int] | None = None,
                 conf: float | None = None, iou: float | None = None, classes: Sequence[int] | None = None,
                 max_det: int | None = None, topk: int | None = None, draw_conf: float | None = None) -> None:
        self.backend = backend
        self.manifest = manifest
        self.task = str(manifest["task"])
        self.names: list[str] = [str(n) for n in manifest.get("classes") or []]
        self.palette: list[list[int]] | None = manifest.get("palette")  # a segmenter's checkpoint's colours
        self.post = dict(manifest.get("postprocess") or {})
        self.conf, self.iou, self.max_det, self.topk = conf, iou, max_det, topk
        self.classes = list(classes) if classes is not None else None
        check_settings(conf=conf, iou=iou, max_det=max_det, draw_conf=draw_conf)
        self.draw_conf = draw_threshold(conf, draw_conf)
        pre = dict(manifest.get("preprocess") or {})
        dynamic = manifest.get("dynamic") or None
        size = size_pair(imgsz)
        if not dynamic and size is not None and pre.get("imgsz") and list(size) != [int(v) for v in pre["imgsz"]]:
            raise ShapeError(f"this graph takes a fixed {pre['imgsz'][0]}x{pre['imgsz'][1]} input, not {size[0]}x{size[1]}",
                             hint="drop --imgsz, or re-export with --dynamic")
        self.preprocessor = Preprocessor(pre, dynamic=bool(dynamic), imgsz=size,
                                         dynamic_range=self._dynamic_range(dynamic))
        self.input_name = backend.inputs[0].name if backend.inputs else "images"
        batch_dim = backend.inputs[0].shape[0] if backend.inputs and backend.inputs[0].shape else "batch"
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        # A Triton model sends a larger batch in pieces of its max_batch_size (its profile's batch): only a
        # backend that runs a batch in one go (a TensorRT engine) is bound by its profile's batch
        profiles = None if getattr(backend, "max_batch_size", 0) else getattr(backend, "profiles", None)
        most = batch_limit(manifest, profiles)
        self.max_batch = self.fixed_batch or (most if most is not None else 1 << 20)

    def _dynamic_range(self, dynamic: Mapping[str, Any] | None) -> dict[str, list[int]] | None:
        """The manifest's range, narrowed to a TensorRT engine's profile when that is what runs."""
        if not dynamic:
            return None
        ranges = {k: list(v) for k, v in dynamic.items() if k in ("height", "width")}
        profiles = getattr(self.backend, "profiles", None)
        if profiles:
            try:
                lo, hi = profiles[0]["min"], profiles[0]["max"]
                for i, name in ((2, "height"), (3, "width")):
                    a, b = ranges.get(name, [0, 1 << 30])
                    ranges[name] = [max(int(a), int(lo[i])), min(int(b), int(hi[i]))]
            except (KeyError, IndexError, TypeError):
                pass
        return ranges

    def auto_batch(self, kind: str) -> int:
        """The batch a source of ``kind`` runs in when none is asked for: for a video file
        :data:`GPU_VIDEO_BATCH` frames on a GPU backend, else the backend's ``batch_shards`` (both
        within the graph's batch range); 1 for everything else (a live stream wants each frame now)."""
        if kind != "video":
            return 1
        info = getattr(self.backend, "info", None)
        if info is not None and info.on_gpu:
            return max(1, min(GPU_VIDEO_BATCH, self.max_batch))
        shards = int((getattr(info, "details", None) or {}).get("batch_shards") or 1)
        return max(1, min(shards, self.max_batch))

    def check_batch(self, batch: int) -> None:
        """Refuse a ``batch`` the graph cannot take, or that the backend cannot run at this size
        (:meth:`Backend.check_size <pvt_deploy.runtimes.base.Backend.check_size>`: PyTorch's memory),
        before any frame is read. The preprocessing's size bounds every input it feeds."""
        if batch < 1:
            raise InputError(f"{option('batch')} must be >= 1, got {batch}")
        if batch > self.max_batch:
            raise ShapeError(f"{option('batch')} {batch} is more than this graph takes ({self.max_batch})",
                             hint=f"lower {option('batch')}, or re-export with a larger batch range")
        self.backend.check_size(max(batch, self.fixed_batch or 1), *self.preprocessor.imgsz)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], list[Letterbox]]:
        array, records = self.preprocessor.batch(images)
        if self.fixed_batch and array.shape[0] < self.fixed_batch:  # a static-batch graph: pad with copies
            pad = np.repeat(array[-1:], self.fixed_batch - array.shape[0], axis=0)
            array = np.concatenate([array, pad], axis=0)
        return {self.input_name: array}, records

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.backend.infer(feed)

    def submit(self, feed: Mapping[str, np.ndarray], *, lane: bool = False) -> Callable[[], dict[str, np.ndarray]]:
        """``infer`` begun (:meth:`~pvt_deploy.runtimes.base.Backend.submit`); the function returned waits
        for the outputs."""
        return self.backend.submit(feed, lane=lane)

    def postprocess(self, outputs: Mapping[str, np.ndarray], records: Sequence[Letterbox],
                    frames: Sequence[FrameLike], *, video: bool = False,
                    speed: Mapping[str, float] | None = None) -> list[Result]:
        n = len(frames)
        if self.fixed_batch and n < self.fixed_batch:
            outputs = {k: v[:n] for k, v in outputs.items()}
        return make_results(outputs, records, frames, task=self.task, names=self.names, palette=self.palette,
                            post=self.post, video=video, conf=self.conf, iou=self.iou, classes=self.classes,
                            max_det=self.max_det, topk=self.topk, draw_conf=self.draw_conf, speed=speed)

    def __call__(self, frames: Sequence[FrameLike] | Sequence[Any] | Any, *, video: bool = False) -> list[Result]:
        """Sequential pre -> infer -> post for one batch, with ``speed`` filled in. ``frames``: a list
        of :class:`~pvt_deploy.io.sources.Frame` (or alike), or of pictures as ``Model.predict`` takes
        them (numpy RGB arrays, PIL images, named ``image0.jpg``, ``image1.jpg``...); one alone is a
        batch of one."""
        frames = _as_frames(frames)
        t0 = time.perf_counter()
        feed, records = self.preprocess([f.image for f in frames])
        t1 = time.perf_counter()
        outputs = self.infer(feed)
        t2 = time.perf_counter()
        results = self.postprocess(outputs, records, frames, video=video)
        t3 = time.perf_counter()
        _set_speed(results, t1 - t0, t2 - t1, t3 - t2)
        return results


def _as_frames(items: Any) -> list[FrameLike]:
    """A batch for :meth:`Predictor.__call__`: frames as they are, pictures made frames (checked and
    converted as ``Model.predict`` does); a lone frame or picture (an array is one picture, not a
    list of rows) is a batch of one."""
    from pvt_deploy.io.sources import Frame, as_rgb_array, is_picture

    if is_picture(items) or hasattr(items, "image"):
        items = [items]
    try:
        items = list(items)
    except TypeError:
        raise InputError(f"a batch is a list of frames or pictures, got {type(items).__name__}") from None
    return [item if hasattr(item, "image") else Frame(as_rgb_array(item), i, f"image{i}.jpg")
            for i, item in enumerate(items)]


def _set_speed(results: Sequence[Result], pre_s: float, infer_s: float, post_s: float) -> None:
    n = max(len(results), 1)
    speed = {"preprocess": 1000 * pre_s / n, "inference": 1000 * infer_s / n, "postprocess": 1000 * post_s / n}
    for r in results:
        r.speed = dict(speed)


# --------------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------------


class _End:
    """End of the frames (a singleton travelling through the queues)."""


_END = _End()


@dataclass
class _Failure:
    """An exception raised in a stage, delivered to the consumer in frame order."""

    error: BaseException


@dataclass
class _Batch:
    frames: list[Any]
    feed: dict[str, np.ndarray]
    records: list[Letterbox]
    pre_s: float
    outputs: dict[str, np.ndarray] | None = None
    infer_s: float = 0.0


class _Stopped(Exception):
    """The pipeline is closing; a stage leaves its loop."""


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue
    raise _Stopped


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    raise _Stopped


class Pipeline:
    """Iterate ``source`` through ``predictor``, yielding :class:`Result` in frame order.

    ``batch`` frames per inference call (``None``: :meth:`Predictor.auto_batch`). ``threaded``
    (default: for videos, streams and image folders) runs each stage in its own thread with bounded
    queues; otherwise stages run inline.
    ``draw`` renders ``result.plot(**plot)`` in the post-processing thread (for writers and ``--show``,
    which draw with the same settings and so take that picture).
    ``same_size`` (default): a batch holds frames of one input size only, ending early where the next
    frame's differs, so none is padded to another's size and ``batch`` changes no result: they are
    ``batch=1``'s (to the backend's float rounding; ``pvt-deploy val`` gives the pictures in order of
    size to keep the batches full). ``False`` pads a batch's pictures to the largest.
    The source is closed when iteration ends. ``summary()`` reports frames, FPS and stage times.
    """

    def __init__(self, predictor: Predictor, source: Any, *, batch: int | None = None,
                 threaded: bool | None = None, draw: bool = False, queue_frames: int | None = None,
                 same_size: bool = True, plot: Mapping[str, Any] | None = None) -> None:
        kind = getattr(source, "kind", "images")
        if batch is None:
            batch = predictor.auto_batch(kind)
        predictor.check_batch(batch)
        self.predictor = predictor
        self.source = source
        self.batch = batch
        self.video = kind in ("video", "stream")
        self.live = kind == "stream"
        self.threaded = threaded if threaded is not None else kind in ("video", "stream", "images")
        # several pictures (a folder, a glob, a list of more than one): the backend's shard threads take one each
        self.pictures = not self.video and getattr(source, "frames", None) != 1
        self.draw = draw
        self.plot: dict[str, Any] = dict(plot or {})
        self.same_size = same_size
        self.queue_frames = queue_frames or max(4, 2 * batch)
        self.times = StageTimes()
        self.frames_done = 0
        self.interrupted = False
        self._t0: float | None = None
        self._t1: float | None = None
        self._used = False

    # -- public -------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Result]:
        if self._used:
            raise InputError("a Pipeline can be iterated only once")
        self._used = True
        return self._run()

    @property
    def skipped(self) -> int:
        """Unreadable pictures: those skipped as they were read, and those the source left out up front (empty
        files, said in its one line)."""
        return int(getattr(self.source, "skipped", 0) or 0) + int(getattr(self.source, "left_out", 0))

    def summary(self, outputs: Sequence[str | os.PathLike[str]] = (), frames: int | None = None,
                files_in: Mapping[Path, int] | None = None) -> RunSummary:
        """The run so far. ``frames``: the count to report instead of the results handed out (those a
        writer completed: a Ctrl-C inside a write stops one result short of the outputs); ``files_in``:
        files written into each folder ``outputs`` names (:attr:`ResultWriter.files_in`)."""
        end = self._t1 if self._t1 is not None else time.perf_counter()
        seconds = end - self._t0 if self._t0 is not None else 0.0
        return RunSummary(frames=self.frames_done if frames is None else frames, seconds=seconds, stages=self.times.to_json(),
                          skipped=self.skipped,
                          dropped=int(getattr(self.source, "dropped", 0) or 0),
                          source_error=getattr(self.source, "error", None), interrupted=self.interrupted,
                          outputs=[str(p) for p in outputs],
                          files_in={str(k): n for k, n in (files_in or {}).items()})

    # -- driver -------------------------------------------------------------------------------------
    def _run(self) -> Iterator[Result]:
        self._t0 = time.perf_counter()
        inner: Generator[Result, None, None] = self._run_threaded() if self.threaded else self._run_inline()
        try:
            for result in inner:
                self.frames_done += 1
                yield result
        except (KeyboardInterrupt, GeneratorExit):
            self.interrupted = True
            raise
        finally:
            inner.close()
            self._t1 = time.perf_counter()
            close = getattr(self.source, "close", None)
            if close is not None:
                close()

    def _run_inline(self) -> Generator[Result, None, None]:
        pending: list[Any] = []
        frames = iter(self.source)
        try:
            while True:
                t0 = time.perf_counter()
                frame = next(frames, None)
                if frame is not None:
                    self.times.add("decode", time.perf_counter() - t0)
                    if not self._fits(pending, frame):
                        batch, pending = pending, []
                        yield from self._post(self._infer(self._pre(batch)))
                    pending.append(frame)
                if pending and (frame is None or len(pending) >= self.batch):
                    batch, pending = pending, []
                    yield from self._post(self._infer(self._pre(batch)))
                if frame is None:
                    return
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def _fits(self, pending: list[Any], frame: Any) -> bool:
        """Whether ``frame`` may join the batch ``pending``: always, but with ``same_size`` only where its
        input is of their size. A frame of no input size (outside the graph's range) joins no batch: the
        one before it runs first, then the frame's error is raised, so the frames before it are all
        processed, as at ``batch=1``."""
        if not self.same_size or not pending or self.predictor.preprocessor.one_size:  # one size: nothing to plan
            return True
        plan = self.predictor.preprocessor.plan
        try:
            size = plan(*frame.image.shape[:2]).input_hw
        except InputError:
            return False
        return size == plan(*pending[0].image.shape[:2]).input_hw

    def _pre(self, frames: list[Any]) -> _Batch:
        t0 = time.perf_counter()
        feed, records = self.predictor.preprocess([f.image for f in frames])
        dt = time.perf_counter() - t0
        self.times.add("preprocess", dt, len(frames))
        return _Batch(frames, feed, records, dt)

    def _infer(self, batch: _Batch) -> _Batch:
        t0 = time.perf_counter()
        batch.outputs = self.predictor.infer(batch.feed)
        batch.infer_s = time.perf_counter() - t0
        batch.feed = {}  # the input tensor is not needed any more: free it before post-processing
        self.times.add("inference", batch.infer_s, len(batch.frames))
        return batch

    def _post(self, batch: _Batch) -> list[Result]:
        assert batch.outputs is not None
        t0 = time.perf_counter()
        results = self.predictor.postprocess(batch.outputs, batch.records, batch.frames, video=self.video)
        post_s = time.perf_counter() - t0
        self.times.add("postprocess", post_s, len(batch.frames))
        _set_speed(results, batch.pre_s, batch.infer_s, post_s)
        if self.draw:
            t1 = time.perf_counter()
            for r in results:
                r.plot(**self.plot)
            self.times.add("draw", time.perf_counter() - t1, len(results))
        return results

    # -- threads ------------------------------------------------------------------------------------
    def _run_threaded(self) -> Generator[Result, None, None]:
        per_operator = bool(getattr(self.predictor.backend, "gil_per_operator", False))
        with short_gil_switch() if per_operator else contextlib.nullcontext():
            yield from self._run_threads()

    def _run_threads(self) -> Generator[Result, None, None]:
        stop = threading.Event()
        q_frames: queue.Queue[Any] = queue.Queue(maxsize=self.queue_frames)
        q_batches: queue.Queue[Any] = queue.Queue(maxsize=2)
        q_outputs: queue.Queue[Any] = queue.Queue(maxsize=2)
        q_results: queue.Queue[Any] = queue.Queue(maxsize=max(2, 2 * self.batch))
        stages: list[tuple[str, Callable[[], None]]] = [
            ("decode", lambda: self._decode_loop(q_frames, stop)),
            ("preprocess", lambda: self._batch_loop(q_frames, q_batches, stop)),
            ("inference", lambda: self._infer_loop(q_batches, q_outputs, stop)),
            ("postprocess", lambda: self._map_loop(q_outputs, q_results, stop, self._post, many=True)),
        ]
        threads = [threading.Thread(target=fn, name=f"pvt-deploy-{name}", daemon=True) for name, fn in stages]
        for t in threads:
            t.start()
        try:
            while True:
                try:
                    item = q_results.get(timeout=_POLL_S)
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and q_results.empty():
                        raise RuntimeError("pipeline threads ended without a result or an error") from None
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    error = item.error
                    item = None
                    try:
                        raise error
                    finally:  # the traceback holds this frame: no cycle through its locals (see Model._run)
                        del error
                yield item
        finally:
            stop.set()
            # the decode thread may be inside the source, waiting for a live frame that a stalled camera
            # never sends: it would not see ``stop`` until _JOIN_S is spent
            stop_source = getattr(self.source, "stop", None)
            if stop_source is not None:
                stop_source()
            for t in threads:
                t.join(timeout=_JOIN_S)
            alive = [t.name for t in threads if t.is_alive()]
            if alive:
                log.debug("pipeline threads still finishing: %s", ", ".join(alive))

    def _decode_loop(self, out: queue.Queue[Any], stop: threading.Event) -> None:
        frames: Iterator[Any] | None = None
        try:
            # inside the try: a source that cannot start (one already used and closed) is a failure
            # sent on like any other, not a dead thread that leaves the consumer waiting for ever
            frames = iter(self.source)
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                self.times.add("decode", time.perf_counter() - t0)
                _put(out, frame, stop)
            _put(out, _END, stop)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - delivered to the consumer after the frames before it
            _put_quietly(out, _Failure(e), stop)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # in this thread: the decoder is never closed under a running decode call

    def _batch_loop(self, inp: queue.Queue[Any], out: queue.Queue[Any], stop: threading.Event) -> None:
        pending: list[Any] = []
        try:
            while True:
                item = _get(inp, stop)
                if isinstance(item, (_End, _Failure)):
                    if pending:
                        _put(out, self._pre(pending), stop)
                    _put(out, item, stop)
                    return
                if not self._fits(pending, item):
                    batch, pending = pending, []
                    _put(out, self._pre(batch), stop)
                pending.append(item)
                if self.live:  # take what has arrived; never wait for a full batch on a live feed
                    while len(pending) < self.batch:
                        try:
                            nxt = inp.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(nxt, (_End, _Failure)):
                            _put(out, self._pre(pending), stop)
                            _put(out, nxt, stop)
                            return
                        if not self._fits(pending, nxt):
                            batch, pending = pending, []
                            _put(out, self._pre(batch), stop)
                        pending.append(nxt)
                if self.live or len(pending) >= self.batch:
                    batch, pending = pending, []
                    _put(out, self._pre(batch), stop)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001
            _put_quietly(out, _Failure(e), stop)

    def _infer_loop(self, inp: queue.Queue[Any], out: queue.Queue[Any], stop: threading.Event) -> None:
        """The inference stage. Where the backend runs a batch in the background
        (:attr:`~pvt_deploy.runtimes.base.Backend.background_batch`: ONNX Runtime's CPU shards, where a
        thread that ends its frame takes the next one queued) the next batch, where it is ready, is begun
        (:meth:`Predictor.submit`) before the one in front of it is waited for, so it is queued when a
        core comes free and no core waits at a batch's end for the others; with nothing ready behind it
        a batch is handed on as soon as it ends (a live feed's frame never waits for the next). A smaller
        batch (a clip's last, a live feed's) runs as :meth:`Predictor.infer` once the one in front has
        ended, as every batch of any other backend does. Pictures (a folder, a glob, a list of more than
        one) go each call on a shard thread of its own (``lane``), ``background_batch`` of them in flight
        behind the one waited for: a picture takes longer on one thread than on all of them, but the
        threads together run more pictures a second (a folder of 48 through ``pvt_v2_b0-cls`` on the
        2-core Xeon: 91-96 -> 139-140 a second), with the same outputs (to float rounding) and no padding
        of pictures of different sizes to one batch. A batch's inference time is the wall time from its
        start, or from the end of the batch before it where that is later, to its end: the stage's times
        add up to its wall time."""
        running: list[tuple[_Batch, Callable[[], dict[str, np.ndarray]], float]] = []
        last = 0.0

        def finish() -> None:
            nonlocal last
            batch, wait, started = running.pop(0)
            batch.outputs = wait()
            now = time.perf_counter()
            batch.infer_s = now - max(started, last)
            last = now
            batch.feed = {}  # the input tensor is not needed any more: free it before post-processing
            self.times.add("inference", batch.infer_s, len(batch.frames))
            _put(out, batch, stop)

        try:
            while True:
                if running and inp.empty():
                    finish()
                    continue
                item = _get(inp, stop)
                if isinstance(item, (_End, _Failure)):
                    while running:
                        finish()
                    _put(out, item, stop)
                    return
                size = next(iter(item.feed.values())).shape[0] if item.feed else 0
                background = int(getattr(self.predictor.backend, "background_batch", 0) or 0)  # 0 once shards fail
                lanes = background > 0 and self.pictures  # each call on a shard thread of its own
                # batches in flight behind the one waited for: none where a batch runs before submit returns
                ahead = background if lanes else 1 if 0 < background <= size else 0
                started = time.perf_counter()
                try:
                    if ahead:
                        wait = self.predictor.submit(item.feed, lane=lanes)
                    else:  # run now, as ``infer`` (after the batch in front, so never two at once)
                        while running:
                            finish()
                        wait = _ready(self.predictor.infer(item.feed))
                except BaseException:
                    while running:  # the batches before it first: an error comes after their frames
                        finish()
                    raise
                running.append((item, wait, started))
                while len(running) > ahead:
                    finish()
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - after the batches before it, like any stage's error
            _put_quietly(out, _Failure(e), stop)

    def _map_loop(self, inp: queue.Queue[Any], out: queue.Queue[Any], stop: threading.Event,
                  fn: Callable[[Any], Any], many: bool = False) -> None:
        try:
            while True:
                item = _get(inp, stop)
                if isinstance(item, (_End, _Failure)):
                    _put(out, item, stop)
                    return
                result = fn(item)
                if many:
                    for r in result:
                        _put(out, r, stop)
                else:
                    _put(out, result, stop)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001
            _put_quietly(out, _Failure(e), stop)


def _ready(outputs: dict[str, np.ndarray]) -> Callable[[], dict[str, np.ndarray]]:
    """A call's outputs, already there, in the form :meth:`Predictor.submit` gives them."""
    return lambda: outputs


def _put_quietly(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    with contextlib.suppress(_Stopped):
        _put(q, item, stop)


# --------------------------------------------------------------------------------------------------
# Writing results
# --------------------------------------------------------------------------------------------------


def increment_dir(base: str | os.PathLike[str], *, create: bool = False) -> Path:
    """``runs/infer/pvt_small`` if free, else ``pvt_small2``, ``pvt_small3``, ... (never overwrite a run).

    Names ending in a digit get a separator (``pvt_v2_b0_2``) so the count stays readable. ``create``
    makes the folder, atomically: two runs started together get a folder each (each took the first
    free name, and they shared it).
    """
    path = Path(base)
    sep = "_" if path.name[-1:].isdigit() else ""
    n = 1
    while True:
        candidate = path if n == 1 else path.parent / f"{path.name}{sep}{n}"
        if not create:
            if not os.path.lexists(candidate):
                return candidate
        else:
            with contextlib.suppress(FileExistsError):  # taken, maybe a moment ago by another run
                candidate.mkdir(parents=True)
                return candidate
        n += 1


def output_error(folder: str | os.PathLike[str], error: OSError | str) -> InputError:
    """The one-line error for outputs that cannot be written to ``folder`` (bad input: exit 2)."""
    if isinstance(error, str):
        reason = error
    else:  # numpy's short write has no errno ("53010 requested and 36864 written"): a full disk, in practice
        reason = error.strerror or (f"{error} (is the disk full?)" if error.errno is None else str(error))
    return InputError(f"cannot write outputs to {os.fspath(folder)}: {reason}")


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Raise :func:`output_error` now, before a model loads or a frame decodes, when files cannot be
    written to ``folder``: it or an ancestor is a file, or its nearest existing ancestor refuses a new
    file (read-only file system, permissions). Creates nothing: a probe file is made and removed."""
    from pvt_deploy.utils.files import unwritable_reason

    reason = unwritable_reason(folder)
    if reason is not None:
        raise output_error(folder, reason)


def _is_coco(names: Sequence[str]) -> bool:
    return len(names) == 80 and names[0] == "person"


class ResultWriter:
    """Everything ``infer`` writes for one run, in ``save_dir``:

    * ``save``: annotated images under their own names; videos and streams as annotated H.264
      ``<name>.mp4`` at the source's frame rate (divided by ``vid_stride``) and size, each frame at
      its source time, with a video file's audio carried over, also one read from an http(s) URL
      (from the result's ``location``, the URL with the user name and password its ``path`` shows
      without; ``audio=False``: silent; ``predict`` gives it for a live feed, which cannot be read
      again);
    * ``save_json``: ``predictions.jsonl``, one line per processed frame or image, plus
      ``predictions_coco.json`` (COCO results format) for detection models;
    * ``save_txt``: a YOLO label file per image or frame, ``labels/<name>.txt`` (a frame's
      ``<name>_<frame>.txt``, the frame number of its JSON line; :meth:`Result.save_txt`; ``save_conf``:
      with scores); ``save_crop``: each drawn box cut from the original picture,
      ``crops/<class>/<name>.jpg`` (:meth:`Result.save_crop`). ``outputs`` names those two folders, not
      each file (a stream labelled for days makes millions), and :attr:`files_in` counts the files in each.

    ``plot``: the settings of :meth:`Result.plot` (``line_width``, ``labels``, ``conf``) the annotated
    images and videos are drawn with.

    No file that exists before the run is replaced: a name already taken (the input itself when
    ``save_dir`` is its folder, an earlier run's output) gets ``_1``, ``_2``...
    (:func:`~pvt_deploy.io.sinks.free_path`), for images, masks and videos alike, and an earlier
    run's JSON, ``labels/`` or ``crops/`` makes this run's ``predictions_1.jsonl``,
    ``predictions_coco_1.json``, ``labels_1/`` and ``crops_1/`` (one ``_N`` for them all), so that the
    label files and crops of two runs never mix in one folder (``labels_N/`` and ``crops_N/`` are made as
    their names are chosen, so a run started beside this one takes the next; :meth:`close` removes them
    where they stayed empty).

    ``close(error)``: videos and JSON Lines are finalised even after an error or Ctrl-C (what was
    written stays valid and playable, and holds the same frames: :meth:`write` records a result in
    every output or, stopped before it began, in none); the COCO file is only written by a run that completed, and
    a run that processed nothing leaves no JSON file at all. A failed write (full disk,
    permissions) raises :func:`output_error` and drops the files still being written, so no
    final-named file is partial.
    """

    def __init__(self, save_dir: str | os.PathLike[str], *, task: str, names: Sequence[str], save: bool = True,
                 save_json: bool = False, fps: float | None = None, vid_stride: int = 1, codec: str = "auto",
                 mask_pngs: bool = False, audio: bool = True, save_txt: bool = False, save_conf: bool = False,
                 save_crop: bool = False, plot: Mapping[str, Any] | None = None) -> None:
        from pvt_deploy.io.sinks import FreeNames

        check_outputs(task, save_txt=save_txt, save_crop=save_crop)
        self.save_dir = Path(save_dir)
        self.task = task
        self.names = list(names)
        self.save = save
        self.save_json = save_json
        self.save_txt = save_txt
        self.save_conf = save_conf
        self.save_crop = save_crop
        self.plot: dict[str, Any] = dict(plot or {})
        self._free_names = FreeNames()  # labels/ and crops/<class>/: a name per frame, no listing per name
        self.files_in: dict[Path, int] = {}  # labels/ and crops/ (in outputs) -> files written there
        self.fps = fps
        self.vid_stride = max(1, vid_stride)
        self.codec = codec
        self.audio = audio
        self.mask_pngs = mask_pngs
        self.outputs: list[Path] = []
        self._images: Any = None
        self._video: Any = None
        self._video_key: str | None = None
        self._jsonl: Any = None
        self._coco: Any = None
        self._coco_sources: dict[str, int] = {}  # each source with detections -> its number (COCO ids at close)
        self._coco_videos: list[bool] = []  # by that number: whether the source has frames
        self._taken: set[str] = set()  # names given out in this run (pictures, videos, masks, JSON)
        self._failed = False
        self._results = 0
        # the folders this run makes and leaves empty (nothing read, or a write that failed) are removed,
        # so that the next run is not moved on to <model>2 past an empty one, and -o a/b/c leaves no a/b
        from pvt_deploy.utils.files import make_folders, remove_made_folders

        self._made_dirs: list[Path] = []
        self._run_dirs: list[Path] = []  # labels_N/, crops_N/: made at once, removed at close if left empty
        self._run_locks: list[int] = []  # held on them while the run lasts (a later run removes them once free)
        self._labels, self._crops = self.save_dir / "labels", self.save_dir / "crops"
        try:
            self._made_dirs = make_folders(self.save_dir)
            # an earlier run's JSON, labels/ and crops/ in the folder are kept, like its images: this run's
            # share the next free _N (a killed run's predictions.jsonl.part counts as taken), so that its
            # label files and crops never mix with another run's (a run stopped at frame 5 and run again
            # wrote labels/clip_0_1.txt ... clip_4_1.txt, then clip_5.txt on, beside the first run's clip_0.txt)
            from pvt_deploy.io.sinks import COCO80_TO_91, JsonlWriter, free_paths

            files = [("predictions", ".jsonl")] + ([("predictions_coco", ".json")] if task == "detect" else [])
            wanted = [*files] if save_json else []
            wanted += [("labels", "")] if save_txt else []
            wanted += [("crops", "")] if save_crop else []
            if save_txt or save_crop:
                self._sweep_earlier_runs()
            while True:  # labels_N/ and crops_N/ are made as they are chosen, and predictions_N.jsonl.part: a run
                # started beside this one into the folder found them free too, and wrote its labels into the same
                # folder, its JSON lines into the same file
                free = free_paths(self.save_dir, wanted, self._taken, partial=JsonlWriter.PART) if wanted else []
                paths = dict(zip(wanted, free, strict=True))
                if not self._make_run_folders([paths[k] for k in (("labels", ""), ("crops", "")) if k in paths]):
                    continue
                try:
                    self._jsonl = JsonlWriter(paths[files[0]], new=True) if save_json else None
                except FileExistsError:
                    self._remove_empty_run_folders()
                    continue
                break
            self._labels = paths.get(("labels", ""), self._labels)
            self._crops = paths.get(("crops", ""), self._crops)
            if save_json and task == "detect":
                ids = COCO80_TO_91 if _is_coco(self.names) else None
                self._coco = _spooled_coco_writer(paths[files[1]], category_ids=ids, image_ids=self._coco_ids)
        except BaseException as e:  # whatever it is (a Ctrl-C too), what was taken goes: the run's locks with it
            self._discard()
            self._remove_empty_run_folders()
            remove_made_folders(self._made_dirs)
            if isinstance(e, OSError):
                raise output_error(self.save_dir, e) from None
            raise

    def _make_run_folders(self, folders: list[Path]) -> bool:
        """Make this run's ``labels_N/`` and ``crops_N/`` (:attr:`_run_dirs`), each locked as it is made, for
        as long as the run lasts: a run killed before it wrote into them leaves them unlocked, and a later run
        removes them (:meth:`_sweep_earlier_runs`). False, none kept, where another run made one first."""
        from pvt_deploy.utils.files import lacks_locks, lock

        for folder in folders:
            try:
                folder.mkdir()
            except FileExistsError:
                self._remove_empty_run_folders()
                return False
            self._run_dirs.append(folder)  # made: removed at close, or where a later one fails here
            try:
                fd = lock(folder, wait=False)
            except OSError as e:
                if not lacks_locks(e):  # not for want of locks (the folder gone meanwhile): no run without one
                    raise
                continue  # no locks on this file system: no run can tell it abandoned either
            if fd is None:  # a run looking whether it is a killed run's, this moment: made again as the next _N
                self._remove_empty_run_folders()
                return False
            self._run_locks.append(fd)
        return True

    def _remove_empty_run_folders(self) -> None:
        """Remove this run's ``labels_N/`` and ``crops_N/`` where they are empty, and release them."""
        for folder in self._run_dirs:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        for fd in self._run_locks:
            os.close(fd)
        self._run_dirs, self._run_locks = [], []

    def _sweep_earlier_runs(self) -> None:
        """Remove the temporary files that killed runs left in the folder's ``labels*/`` and
        ``crops*/<class>/`` (:func:`~pvt_deploy.utils.files.remove_abandoned_temps`), as the next run into the
        folder does for its other files: this run writes its own ``labels_N/`` and ``crops_N/`` and would not
        list the earlier ones, where a label file or crop torn by ``kill -9`` stayed, hidden, for good. Such
        a folder that a killed run left empty (or with those files alone) is removed, before this run picks
        its own, where its lock says its run is gone (:func:`~pvt_deploy.utils.files.abandoned_folder`): a
        run's close() removes its own when they stay empty, and one killed left them for good, each moving
        every later run on to the next ``_N``. A run at work keeps its folders locked, written into or not."""
        import re

        from pvt_deploy.utils.files import abandoned_folder, remove_abandoned_temps

        def folders(parent: Path, name: str = r".+") -> list[Path]:
            with contextlib.suppress(OSError), os.scandir(parent) as entries:
                return [Path(e.path) for e in entries if re.fullmatch(name, e.name) and e.is_dir(follow_symlinks=False)]
            return []

        for earlier in folders(self.save_dir, r"(labels|crops)(_\d+)?"):
            inside = folders(earlier) if earlier.name.startswith("crops") else []  # crops_N/<class>/
            with abandoned_folder(earlier) as gone:
                for folder in [earlier, *inside]:
                    remove_abandoned_temps(folder)
                for folder in [*inside, earlier] if gone else []:
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only if empty
                        log.info("removed %s, left empty by a run that was killed", folder)

    @property
    def frames_written(self) -> int:
        return int(getattr(self._video, "frames_written", 0) or 0)

    def write(self, result: Result) -> None:
        """Record ``result`` in every output, or in none: Ctrl-C and SIGTERM wait until its picture or
        video frame, label file, crops, JSON line and COCO rows are all written. A stop that came between
        two of them left a frame in the video, or a picture, label file and crops, that predictions.jsonl
        does not have. A new video is opened before that step: checking its audio source (a URL) can take
        seconds, and a stop there records nothing of the frame.

        A write that fails (a full disk) removes the files this result had got so far (its picture, mask,
        label file, crops): the run ends with :func:`output_error`, which drops the video and JSON being
        written, and the pictures, labels and crops it keeps are those of whole results, not also the label
        file of a frame whose crops the disk could not take."""
        from pvt_deploy.utils.signals import interrupts_deferred

        try:
            if self.save and result.frame is not None and (self._video is None or result.path != self._video_key):
                self._open_video(result)
            with interrupts_deferred():
                written: list[Path] = []
                try:
                    self._write_all(result, written)
                except OSError:
                    self._failed = True  # before a stop held meanwhile raises: the outputs are dropped all the same
                    self._unwrite(written)
                    raise
                self._results += 1
        except OSError as e:  # av.error.OSError too: a full disk, a folder made read-only mid-run
            self._failed = True
            raise output_error(self.save_dir, e) from None

    def _write_all(self, result: Result, written: list[Path]) -> None:
        """Write ``result`` into every output; ``written`` gets each file as it is named (see :meth:`write`)."""
        from pvt_deploy.io.sinks import MAX_NAME_BYTES

        def named(folder: Path, stem: str, suffix: str) -> Path:
            written.append(self._free_names(folder, stem, suffix))
            return written[-1]

        if self.save:
            if result.frame is not None:
                self._video.write(result.plot(**self.plot), result.timestamp)
            else:
                self._write_image(result, written)
        pictures = list(written)  # the annotated picture and its mask
        labels = crops = 0
        if self.save_txt or self.save_crop:
            # the frame's number stays whole: save_crop cuts a name to MAX_NAME_BYTES, and a long video's crops
            # were named without it (<name>.jpg, <name>_1.jpg... beside labels/<name>_<frame>.txt)
            frame = "" if result.frame is None else f"_{result.frame}"
            stem = _safe_stem(result.path, "image", MAX_NAME_BYTES - len(frame)) + frame
            if self.save_txt:
                result.save_txt(named(self._labels, stem, ".txt"), self.save_conf)
                labels = 1
            if self.save_crop:
                crops = len(result.save_crop(self._crops, stem + ".jpg", namer=named))
        if self._jsonl is not None:
            self._jsonl.write(result.to_dict())
        if self._coco is not None and result.boxes is not None:
            self._coco.add(self._coco_source(result), result.boxes.xyxy, result.boxes.conf, result.boxes.cls)
        self.outputs += pictures
        self._count(self._labels, labels)
        self._count(self._crops, crops)

    def _unwrite(self, written: list[Path]) -> None:
        """Remove the files of a result whose write failed, and the class folders of this run's crops that
        this leaves empty (its labels_N/ and crops_N/ left empty go at :meth:`close`)."""
        for path in reversed(written):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            if path.parent.parent == self._crops:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only if empty

    def _count(self, folder: Path, files: int) -> None:
        if files:
            if folder not in self.files_in:
                self.files_in[folder] = 0
                self.outputs.append(folder)
            self.files_in[folder] += files

    @property
    def results_written(self) -> int:
        """Results whose outputs were all written (a write that failed or was interrupted is not one)."""
        return self._results

    def _coco_source(self, result: Result) -> tuple[int, int | None]:
        """Where a result's COCO image_id comes from: its source's number and its frame (None for an
        image); the ids themselves are given at close (:meth:`_coco_ids`), when every source is known.
        One entry per image or video, none per frame (streams run for days)."""
        number = self._coco_sources.setdefault(result.path, len(self._coco_sources))
        if number == len(self._coco_videos):
            self._coco_videos.append(result.frame is not None)
        return number, result.frame

    def _coco_ids(self) -> Callable[[int, int | None], int | str]:
        """The COCO image_id of frame ``frame`` (None: an image) of source number ``n``, one type per file.

        Integers where every source gives one: images whose file names are numbers
        (``000000397133.jpg`` -> 397133, as COCO's own ground truth numbers them), or the frames of a
        lone video or stream (its frame numbers). Otherwise every id is a string: an image's file name
        without its extension (``"astronaut"``, ``"000000397133"``), a video's frame ``"<name>:<frame>"``
        (``"cam.mp4:12"``). A run that mixed them wrote both (pycocotools sorts ids, and ``1`` and
        ``"a"`` do not sort), and the frames of a video shared the ids of images named by numbers.
        Two sources that would share ids (``001.jpg`` and ``1.jpg``, ``a.jpg`` and ``a.png``, two
        ``cam.mp4``) would have their detections merged by ``COCOeval``: a later one is named by its
        file name or its full path, with a warning."""
        from pvt_deploy.io.sinks import coco_image_id

        paths = list(self._coco_sources)
        numbers = [coco_image_id(p) for p in paths]
        prefixes: list[int | str]
        if not any(self._coco_videos) and all(isinstance(n, int) for n in numbers) and len(set(numbers)) == len(numbers):
            prefixes = list(numbers)
        elif self._coco_videos == [True]:
            prefixes = [""]  # "": the bare frame numbers
        else:
            owners: dict[str, str] = {}
            prefixes = []
            for path, video in zip(paths, self._coco_videos, strict=True):
                candidates = (Path(path).name, path) if video else (Path(path).stem, Path(path).name, path)
                chosen = next((c for c in candidates if owners.setdefault(c, path) == path), path)
                if chosen != candidates[0]:
                    log.warning("COCO image ids of %s would be those of %s; using %r", path, owners[candidates[0]],
                                f"{chosen}:<frame>" if video else chosen)
                prefixes.append(chosen)

        def image_id(n: int, frame: int | None) -> int | str:
            prefix = prefixes[n]
            if frame is None:
                return prefix
            return frame if prefix == "" else f"{prefix}:{frame}"

        return image_id

    def _write_image(self, result: Result, written: list[Path]) -> None:
        from pvt_deploy.io.sinks import ImageWriter, write_new

        if self._images is None:
            self._images = ImageWriter(self.save_dir, taken=self._taken)
        name = Path(result.path.replace("\\", "/")).name or "image.jpg"
        written.append(self._images.write(result.plot(**self.plot), name))
        if self.mask_pngs and result.mask is not None:
            written.append(write_new(self.save_dir, written[-1].stem + "_mask", ".png", self._taken,
                                     result._mask_png().data))

    def _open_video(self, result: Result) -> None:
        """Finish the video being written and start the one of ``result``'s source."""
        from pvt_deploy.io.sinks import VideoWriter, audio_source, free_path

        self._close_video()
        fps = (self.fps or 25.0) / self.vid_stride
        h, w = result.orig_shape
        stem = _safe_stem(result.path)
        target = free_path(self.save_dir, stem, ".mp4", self._taken)
        # location: the URL as given, password and all, which path shows without (display only)
        audio = audio_source(result.location or result.path) if self.audio else None
        # a clip.mp4 that another run into the folder finishes first takes the name: this one is the next free
        self._video = VideoWriter(target, fps, (w, h), self.codec, audio_from=audio,
                                  next_name=lambda: free_path(self.save_dir, stem, ".mp4", self._taken))
        self._video_key = result.path

    def _close_video(self) -> None:
        if self._video is not None:
            video, self._video = self._video, None
            path = video.close()
            if path is not None:
                self.outputs.append(Path(path))

    def close(self, error: BaseException | None = None) -> list[Path]:
        """Finalise every output (see the class docstring); returns the files written."""
        self._remove_empty_run_folders()  # their files are all written by write()
        if not self._failed:
            try:
                self._finish(error)
            except OSError as e:  # the trailer or a rename met a full disk: nothing partial stays
                self._failed = True
                self._discard()
                raise output_error(self.save_dir, e) from None
        self._discard()  # after a failed write: drop what was still being written
        if not self.outputs:  # those still empty: not a file another process put there
            from pvt_deploy.utils.files import remove_made_folders

            remove_made_folders(self._made_dirs)
        return self.outputs

    def _finish(self, error: BaseException | None) -> None:
        try:
            if error is not None and self._video is not None:
                done = self._video.frames_written
                if isinstance(error, GeneratorExit):  # the caller stopped reading: its choice, not a fault
                    log.info("%s: the caller stopped after %d frames; keeping them", self._video.path, done)
                else:
                    log.warning("%s: %s; keeping the %d frames written", self._video.path, stop_reason(error), done)
            self._close_video()
        finally:  # a sink stays in place until it is done with, so that a failed close is discarded
            if self._jsonl is not None:
                if self._results:
                    self.outputs.append(self._jsonl.close())
                else:  # nothing was processed: no empty predictions file
                    self._jsonl.discard()
                self._jsonl = None
            if self._coco is not None:
                if error is None and self._results:
                    self.outputs.append(self._coco.close())
                else:
                    self._coco.discard()
                    if error is not None:  # the caller's own stop (GeneratorExit) is not a fault
                        log.log(logging.INFO if isinstance(error, GeneratorExit) else logging.WARNING,
                                "%s: not written (the run did not complete)", self._coco.path)
                self._coco = None

    def _discard(self) -> None:
        """Drop every output still being written (their temporary files), keeping none."""
        video, self._video = self._video, None
        jsonl, self._jsonl = self._jsonl, None
        coco, self._coco = self._coco, None
        if video is not None:
            video.discard()
        if jsonl is not None:
            jsonl.discard()
        if coco is not None:
            coco.discard()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.close(exc)


_PLACEHOLDER = '{"image_id":0,'  # how a spooled row made with the id 0 begins (CocoJsonWriter.add)


def _spooled_coco_writer(path: Path, *, category_ids: Sequence[int] | None,
                         image_ids: Callable[[], Callable[[int, int | None], int | str]] | None = None) -> Any:
    """A :class:`~pvt_deploy.io.sinks.CocoJsonWriter` that keeps its rows in a temporary file.

    The COCO results format is one JSON list written at the end, and ``CocoJsonWriter`` holds every
    detection in memory until then: ~3 KB per frame, so RSS grew by 3.2 MiB per 1000 frames of a
    720p video (``benchmarks/video_overhead.py``) and would reach gigabytes over hours of video. Here
    each row is appended to an anonymous temporary file as it comes and streamed into the same
    atomically written file at ``close``, so memory stays flat; the output is byte-identical.

    ``image_ids``: ``add`` takes ``(source number, frame)`` for an image id, and at ``close`` the id each
    row gets is what the function ``image_ids()`` returns says, once every source of the run is known.
    """
    import json

    from pvt_deploy.io.sinks import CocoJsonWriter
    from pvt_deploy.utils.files import atomic_open, json_dumps

    class SpooledCocoJsonWriter(CocoJsonWriter):
        def __init__(self) -> None:
            super().__init__(path, category_ids=category_ids)
            self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - open until close()
            self._rows = 0

        def add(self, image_id: Any, *args: Any, **kwargs: Any) -> None:
            # a spool line: the image id, a tab, the rest of the row. The rows are made with the id 0 and each
            # written as one JSON text less its first field (a row per detection: no second dump per row)
            super().add(0, *args, **kwargs)
            given = json_dumps(image_id, separators=(",", ":"))
            for row in self.results:
                self._spool.write(f"{given}\t{json_dumps(row, separators=(',', ':'))[len(_PLACEHOLDER):]}\n")
            self._rows += len(self.results)
            self.results.clear()

        def __len__(self) -> int:
            return self._rows

        def discard(self) -> None:
            """Write nothing (a run that did not complete, or a failed write)."""
            if not self._closed:
                self._closed = True
                self._spool.close()

        def close(self) -> Path:
            if not self._closed:
                self._closed = True
                try:
                    self._spool.seek(0)
                    final = image_ids() if image_ids is not None else None
                    spooled, shown = "", ""  # the rows of an image share its id: mapped once for them all
                    with atomic_open(self.path, "w") as f:
                        f.write("[\n" if self._rows else "[]\n")
                        for i, line in enumerate(self._spool):
                            given, _, rest = line.rstrip("\n").partition("\t")
                            if given != spooled:
                                spooled = given
                                shown = given if final is None else json_dumps(final(*json.loads(given)))
                            f.write(("" if i == 0 else ",\n") + '{"image_id":' + shown + "," + rest)
                        if self._rows:
                            f.write("\n]\n")
                finally:
                    self._spool.close()
            return self.path

    return SpooledCocoJsonWriter()


def _safe_stem(path: str, default: str = "video", limit: int | None = None) -> str:
    """An output file stem for a video path, stream URL or ``webcam0`` (or a picture's file or URL), of
    :data:`~pvt_deploy.io.sinks.MAX_NAME_BYTES` or ``limit`` bytes at most."""
    from pvt_deploy.io.sources import is_url

    if is_url(path):
        from urllib.parse import urlsplit

        parts = urlsplit(path)
        text = Path(parts.path).stem or parts.hostname or "stream"
    else:
        text = Path(path.replace("\\", "/")).stem or default
    from pvt_deploy.io.sinks import MAX_NAME_BYTES, safe_name

    return safe_name(text, default, limit=MAX_NAME_BYTES if limit is None else limit)
