"""The threaded frame pipeline: order, batching, back-pressure, errors in order, Ctrl-C, stream gaps.

A fake backend (fixed boxes, optional delay or failure) keeps these fast and deterministic; the real
backends are exercised by the runtime, API and CLI tests.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runtime_artifacts import cached_clip, decode_video

from pvt_deploy.api import Model
from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import Frame, Reconnect, Source, StreamSource, open_source
from pvt_deploy.runtimes.base import Backend, BackendInfo, TensorSpec
from pvt_deploy.tasks.pipeline import GIL_SWITCH_S, Pipeline, Predictor, increment_dir
from pvt_deploy.tasks.preprocess import preprocess_spec

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
MANIFEST: dict[str, Any] = {
    "model": "fake", "task": "detect", "classes": ["thing", "other"],
    "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}],
    "outputs": [{"name": "boxes", "dtype": "float32", "shape": ["batch", 2, 4]},
                {"name": "scores", "dtype": "float32", "shape": ["batch", 2, 2]}],
    "preprocess": preprocess_spec("detect", (64, 64), dynamic=True, mean=MEAN, std=STD),
    "postprocess": {"nms": "host", "score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100},
    "dynamic": {"batch": [1, 8], "height": [32, 640], "width": [32, 640]},
    "weights": {"random_init": False},
}


class FakeBackend(Backend):
    """Two boxes per image whose score encodes the image's mean pixel, so results identify frames."""

    def __init__(self, *, delay: float = 0.0, fail_at: int | None = None,
                 error: BaseException | None = None) -> None:
        self.delay, self.fail_at, self.error = delay, fail_at, error
        self.calls = 0
        self.batches: list[int] = []
        self.info = BackendInfo("fake", "cpu", "fp32")

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("images", "float32", ("batch", 3, "height", "width"))]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("boxes", "float32", ("batch", 2, 4)), TensorSpec("scores", "float32", ("batch", 2, 2))]

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise self.error or RuntimeError("boom")
        if self.delay:
            time.sleep(self.delay)
        x = feed["images"]
        n = x.shape[0]
        self.batches.append(n)
        level = x[:, 0, :8, :8].mean(axis=(1, 2)) / 255.0  # in 0..1, from the top-left corner
        boxes = np.tile(np.array([[2, 2, 20, 20], [30, 30, 50, 50]], np.float32), (n, 1, 1))
        scores = np.zeros((n, 2, 2), np.float32)
        scores[:, 0, 0] = 0.1 + 0.8 * level
        scores[:, 1, 1] = 0.5
        return {"boxes": boxes, "scores": scores}


class ListSource(Source):
    """Frames from memory; counts how many were handed out and can fail after ``fail_after``."""

    kind = "video"
    fps, size = 10.0, (64, 48)

    def __init__(self, n: int, *, fail_after: int | None = None) -> None:
        self.n, self.fail_after = n, fail_after
        self.spec = "memory.mp4"
        self.frames = n
        self.produced = 0

    def _iter_frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            if self.fail_after is not None and i == self.fail_after:
                raise InputError("camera unplugged")
            self.produced += 1
            yield Frame(np.full((48, 64, 3), (i * 20) % 256, np.uint8), i, self.spec, i / 10)


def _model(backend: Backend) -> Model:
    m = Model.__new__(Model)
    m.source, m.imgsz, m.backend, m.manifest, m.last_summary = "fake", None, backend, dict(MANIFEST), None
    return m


def _levels(results: list[Any]) -> list[int]:
    return [round((float(r.boxes.conf[r.boxes.cls == 0][0]) - 0.1) / 0.8 * 255 / 20) for r in results]


def test_video_files_default_to_one_frame_per_backend_shard() -> None:
    sharded = FakeBackend()
    sharded.info = BackendInfo("fake", "cpu", "fp32", {"batch_shards": 2})
    pipeline = Pipeline(Predictor(sharded, MANIFEST), ListSource(5))
    assert pipeline.batch == 2
    results = list(pipeline)
    assert [r.frame for r in results] == list(range(5)) and sharded.batches == [2, 2, 1]
    images = ListSource(3)
    images.kind = "images"
    assert Pipeline(Predictor(sharded, MANIFEST), images).batch == 1
    live = ListSource(3)
    live.kind = "stream"
    assert Pipeline(Predictor(sharded, MANIFEST), live).batch == 1
    assert Pipeline(Predictor(FakeBackend(), MANIFEST), ListSource(3)).batch == 1  # no shards: 1
    static = {**MANIFEST, "dynamic": {"batch": [1, 1], "height": [32, 640], "width": [32, 640]}}
    assert Pipeline(Predictor(sharded, static), ListSource(3)).batch == 1  # the graph's range wins
    assert Pipeline(Predictor(sharded, MANIFEST), ListSource(3), batch=3).batch == 3  # asked for


@pytest.mark.parametrize("name, device, batch", [("torch", "cuda:0", 4), ("onnxruntime", "CUDAExecutionProvider", 4),
                                                 ("onnxruntime", "TensorrtExecutionProvider", 4),
                                                 ("tensorrt", "0", 4), ("torch", "cpu", 1),
                                                 ("triton", "http://127.0.0.1:8000/m", 1)])
def test_video_files_on_a_gpu_run_in_batches(name: str, device: str, batch: int) -> None:
    """A GPU at one frame per call waits on kernel launches; a video file runs GPU_VIDEO_BATCH frames
    per call there (a live stream still one), within the graph's batch range."""
    backend = FakeBackend()
    backend.info = BackendInfo(name, device, "fp32", {})
    assert Pipeline(Predictor(backend, MANIFEST), ListSource(3)).batch == batch
    live = ListSource(3)
    live.kind = "stream"
    assert Pipeline(Predictor(backend, MANIFEST), live).batch == 1
    static = {**MANIFEST, "dynamic": {"batch": [1, 2], "height": [32, 640], "width": [32, 640]}}
    assert Pipeline(Predictor(backend, static), ListSource(3)).batch == min(batch, 2)


@pytest.mark.parametrize("threaded", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_results_come_in_frame_order(threaded: bool, batch: int) -> None:
    backend = FakeBackend()
    results = list(Pipeline(Predictor(backend, MANIFEST), ListSource(10), batch=batch, threaded=threaded))
    assert [r.frame for r in results] == list(range(10))
    assert _levels(results) == list(range(10))
    assert backend.batches == [batch] * (10 // batch) + ([10 % batch] if 10 % batch else [])
    r = results[0]
    assert r.boxes.xyxy.shape == (2, 4) and r.orig_shape == (48, 64)
    assert set(r.speed) == {"preprocess", "inference", "postprocess"}


class SwitchSpy(FakeBackend):
    """Records Python's thread switch interval inside each inference call; takes the GIL back once
    per operator like PyTorch unless ``per_operator`` is False (ONNX Runtime, TensorRT)."""

    def __init__(self, *, per_operator: bool = True) -> None:
        super().__init__()
        self.gil_per_operator = per_operator
        self.seen: list[float] = []

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.seen.append(sys.getswitchinterval())
        return super().infer(feed)


def test_threaded_pytorch_pipeline_shortens_the_gil_switch_interval_and_restores_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = sys.getswitchinterval()
    assert before > GIL_SWITCH_S  # Python's default, 5 ms
    spy = SwitchSpy()
    first = Pipeline(Predictor(spy, MANIFEST), ListSource(6), batch=1)
    for i, _ in enumerate(first):
        if i == 1:  # a second pipeline running at the same time leaves the setting to the last one out
            assert list(Pipeline(Predictor(SwitchSpy(), MANIFEST), ListSource(2), batch=1))
            assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_S)
    assert spy.seen == pytest.approx([GIL_SWITCH_S] * 6)
    assert sys.getswitchinterval() == before
    failing = SwitchSpy()
    failing.fail_at = 2
    broken = iter(Pipeline(Predictor(failing, MANIFEST), ListSource(6), batch=1))
    with pytest.raises(RuntimeError, match="boom"):
        list(broken)
    assert sys.getswitchinterval() == before  # restored after an error too
    spy = SwitchSpy(per_operator=False)  # one GIL round trip per call: nothing to shorten
    list(Pipeline(Predictor(spy, MANIFEST), ListSource(2), batch=1))
    assert spy.seen == [before] * 2
    monkeypatch.setenv("PVT_DEPLOY_GIL_SWITCH_S", "0")  # 0: leave the interpreter's setting alone
    spy = SwitchSpy()
    list(Pipeline(Predictor(spy, MANIFEST), ListSource(2), batch=1))
    assert spy.seen == [before] * 2
    spy = SwitchSpy()
    list(Pipeline(Predictor(spy, MANIFEST), ListSource(2), batch=1, threaded=False))
    assert spy.seen == [before] * 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here (Windows)")
def test_a_process_forked_while_a_pytorch_pipeline_runs_starts_at_the_normal_switch_interval() -> None:
    """A fork while another thread runs a PyTorch pipeline (a fork pool started beside a running
    predict): the child has not that thread, so nothing would restore the interval it shortened, and
    the child ran at 0.2 ms for good, and counted a run that never ends (its own runs never restored
    anything either). The child starts as a process that runs nothing: the interval before the run."""
    before = sys.getswitchinterval()
    spy, started, release = SwitchSpy(), threading.Event(), threading.Event()
    real_infer = spy.infer

    def held(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        started.set()
        release.wait(30)
        return real_infer(feed)

    spy.infer = held  # type: ignore[method-assign]
    runner = threading.Thread(target=lambda: list(Pipeline(Predictor(spy, MANIFEST), ListSource(1), batch=1)))
    runner.start()
    try:
        assert started.wait(30) and sys.getswitchinterval() == pytest.approx(GIL_SWITCH_S)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, and leave at once (no test teardown in a forked copy of pytest)
            try:
                first = sys.getswitchinterval()
                list(Pipeline(Predictor(SwitchSpy(), MANIFEST), ListSource(1), batch=1))
                os.write(write, f"{first} {sys.getswitchinterval()}".encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            seen = [float(x) for x in pipe.read().split()]
        os.waitpid(pid, 0)
    finally:
        release.set()
        runner.join()
    assert seen == [before, before]  # at the start, and after a run of its own
    assert sys.getswitchinterval() == before


def test_decoder_does_not_run_ahead_of_a_slow_consumer() -> None:
    """Bounded queues: a slow consumer holds back decoding instead of piling frames up in memory."""
    source = ListSource(200)
    pipeline = Pipeline(Predictor(FakeBackend(), MANIFEST), source, batch=2)
    ahead = []
    for i, _ in enumerate(pipeline, 1):
        time.sleep(0.002)
        ahead.append(source.produced - i)
        if i == 60:
            break
    # In flight at most: 1 (decoder) + 4 (frame queue) + 2 (batch being built) + 2x2 (batch queue)
    # + 2 (inference) + 2x2 (output queue) + 2 (post) + 4 (result queue) = 23 frames.
    assert max(ahead) <= 23, max(ahead)
    summary = pipeline.summary()
    assert summary.frames == 60 and summary.interrupted


def test_a_source_error_arrives_after_the_frames_before_it() -> None:
    seen = []
    with pytest.raises(InputError, match="camera unplugged"):
        for r in Pipeline(Predictor(FakeBackend(), MANIFEST), ListSource(10, fail_after=6)):
            seen.append(r.frame)
    assert seen == [0, 1, 2, 3, 4, 5]


HOLD_S = 60.0  # a test's hold ends at its signal; this bound, far beyond any load, only ends one never signalled


class QueuedBackend(FakeBackend):
    """Runs a call on a thread of its own, as ONNX Runtime's CPU shards run a batch of at least one
    frame a core: ``submit`` returns at once. Logs each batch's submit and wait."""

    background_batch = 2

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[tuple[str, int]] = []
        self.pool = ThreadPoolExecutor(1)

    def submit(self, feed: Mapping[str, np.ndarray], *, lane: bool = False) -> Callable[[], dict[str, np.ndarray]]:
        index = sum(1 for event, _ in self.events if event.startswith("submit"))
        self.events.append(("submit lane" if lane else "submit", index))
        call = self.pool.submit(self.infer, feed)

        def wait() -> dict[str, np.ndarray]:
            self.events.append(("wait", index))
            return call.result()

        return wait


class KeptUpPredictor(Predictor):
    """A pipeline whose preprocessing keeps up: its ``submit`` of call ``i`` (of ``calls``) returns only once the
    preprocess stage has begun call ``i + lead + 1`` (or the last), so the ``lead`` calls after ``i`` are queued
    behind it, the stage putting each on the queue before it begins the next (the queue holds 2: ``lead`` <= 2).
    Where inference looks for a call behind the one it began, it is there, however the threads are scheduled."""

    def __init__(self, backend: Backend, manifest: dict[str, Any], *, calls: int, lead: int) -> None:
        super().__init__(backend, manifest)
        self.calls, self.lead = calls, lead
        self.begun = self.submitted = 0
        self.changed = threading.Condition()

    def preprocess(self, images: Any) -> Any:
        if threading.current_thread().name == "pvt-deploy-preprocess":
            with self.changed:
                self.begun += 1
                self.changed.notify_all()
        return super().preprocess(images)

    def submit(self, feed: Mapping[str, np.ndarray], *, lane: bool = False) -> Callable[[], dict[str, np.ndarray]]:
        behind = min(self.submitted + self.lead + 1, self.calls - 1)
        self.submitted += 1
        with self.changed:
            assert self.changed.wait_for(lambda: self.begun > behind, HOLD_S), f"call {behind} never preprocessed"
        return super().submit(feed, lane=lane)


class HeldSource(ListSource):
    """Hands out its frames up to ``held`` and the rest only once ``go`` is set, as a camera whose next
    frame has not come yet."""

    def __init__(self, n: int, held: int) -> None:
        super().__init__(n)
        self.held = held
        self.go = threading.Event()

    def _iter_frames(self) -> Iterator[Frame]:
        for i, frame in enumerate(super()._iter_frames()):
            if i == self.held and not self.go.wait(HOLD_S):
                raise AssertionError(f"frame {i} was held for ever: the results before it never came")
            yield frame


def test_a_batch_run_in_the_background_has_the_next_queued_behind_it() -> None:
    """On a backend whose calls run in the background (ONNX Runtime's CPU shards) the next batch is
    begun before the one in front is waited for, so a core that ends its frame takes the next one
    instead of waiting at the batch's end for the other. With nothing ready behind it a batch is handed
    on at once (a camera's frame does not wait for the next), and an error still comes after the frames
    before it. Before, each batch was begun only once the one before had ended."""
    # the next batch is always ready behind the one begun: it must be begun before that one is waited for
    backend = QueuedBackend()
    results = list(Pipeline(KeptUpPredictor(backend, MANIFEST, calls=4, lead=1), ListSource(8), batch=2))
    assert _levels(results) == list(range(8))
    assert backend.events.index(("submit", 2)) < backend.events.index(("wait", 1))
    assert backend.batches == [2, 2, 2, 2]

    # the frames after the first batch come only once its results are out: a batch that waited for the
    # next would wait for ever (for HOLD_S, and fail)
    held, results = HeldSource(4, held=2), []
    slow = QueuedBackend()
    for r in Pipeline(Predictor(slow, MANIFEST), held, batch=2):
        results.append(r)
        if r.frame == 1:
            held.go.set()
    assert _levels(results) == list(range(4))
    assert slow.events == [("submit", 0), ("wait", 0), ("submit", 1), ("wait", 1)]

    seen: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        for r in Pipeline(Predictor(QueuedBackend(delay=0.05, fail_at=3), MANIFEST), ListSource(10), batch=2):
            seen.append(r.frame)
    assert seen == [0, 1, 2, 3]


class PictureSource(ListSource):
    """Pictures in memory, as a folder gives them."""

    kind = "images"


def test_pictures_go_each_on_a_shard_thread_of_its_own() -> None:
    """Pictures (a folder, a list) go one a call, each on a thread of the backend's own (``lane``), as many
    in flight behind the one waited for as the backend has threads: a folder through ``pvt_v2_b0-cls`` on
    2 cores ran 91-96 -> 139-140 pictures a second. Before, each picture was begun once the one before had
    ended."""
    backend = QueuedBackend()  # pictures always ready behind those begun: as many begun as the backend has threads
    results = list(Pipeline(KeptUpPredictor(backend, MANIFEST, calls=6, lead=2), PictureSource(6)))
    assert _levels(results) == list(range(6)) and backend.batches == [1] * 6
    assert {event for event, _ in backend.events} == {"submit lane", "wait"}
    assert backend.events.index(("submit lane", 4)) < backend.events.index(("wait", 2))
    alone = QueuedBackend()  # a list of one picture (a service's call) keeps all the cores on it
    assert _levels(list(Pipeline(Predictor(alone, MANIFEST), PictureSource(1)))) == [0] and alone.events == []


def test_stage_errors_stop_every_thread() -> None:
    """The error reaches the caller only after the pipeline joined its four stage threads: none is
    left running (no sleep needed, nor a count that other tests' threads could move)."""
    before = set(threading.enumerate())
    source = ListSource(50)
    with pytest.raises(RuntimeError, match="boom"):
        list(Pipeline(Predictor(FakeBackend(fail_at=3), MANIFEST), source))
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == []
    assert source.produced < 50  # the decoder stopped too, rather than reading the video to its end


class SizedSource(ListSource):
    """Frames of the (height, width) sizes given, in order: a clip whose resolution changes midway (two
    encodings in one MPEG-TS), or a live feed (``kind="stream"``) that does."""

    def __init__(self, sizes: list[tuple[int, int]], kind: Any = "video") -> None:
        super().__init__(len(sizes))
        self.sizes, self.kind = sizes, kind
        self.handed_out = threading.Event()  # every frame taken (and queued) by the one reading them

    def _iter_frames(self) -> Iterator[Frame]:
        for i, (h, w) in enumerate(self.sizes):
            yield Frame(np.full((h, w, 3), 100, np.uint8), i, self.spec, i / 10)
        self.handed_out.set()


class SizeSpy(Predictor):
    """Records the picture sizes of each batch. Threaded (a decode thread of its own), its first batch waits
    until ``source`` has handed out every frame, so a live feed's next batches take all of it, up to ``batch``."""

    def __init__(self, manifest: dict[str, Any], source: SizedSource) -> None:
        super().__init__(FakeBackend(), manifest)
        self.source = source
        self.batches: list[list[tuple[int, int]]] = []

    def preprocess(self, images: Any) -> Any:
        if not self.batches and threading.current_thread().name == "pvt-deploy-preprocess":
            assert self.source.handed_out.wait(HOLD_S)
        self.batches.append([im.shape[:2] for im in images])
        return super().preprocess(images)


def test_a_batch_ends_where_a_clips_or_a_live_feeds_frame_size_changes() -> None:
    """``same_size`` (the default): frames of a clip whose resolution changes midway run in batches of one
    input size, each frame once and in order, inline and threaded, and a live feed's batch of the frames
    that have arrived ends at the change too; ``same_size=False`` pads them into full batches."""
    a, b = (48, 64), (20, 400)  # inputs 64x64 and 32x64
    sizes = [a] * 3 + [b] * 2 + [a] * 4
    for kind, threaded, same_size in [("video", False, True), ("video", True, True), ("stream", True, True),
                                      ("video", True, False)]:
        source = SizedSource(sizes, kind)
        spy = SizeSpy(MANIFEST, source)
        results = list(Pipeline(spy, source, batch=4, threaded=threaded, same_size=same_size))
        assert [r.frame for r in results] == list(range(9)) and [r.orig_shape for r in results] == sizes
        assert [size for batch in spy.batches for size in batch] == sizes
        if kind == "stream":  # what had arrived, up to 4, never two sizes
            assert all(len(set(batch)) == 1 for batch in spy.batches) and max(map(len, spy.batches)) == 4
        else:
            assert spy.batches == ([[a] * 3, [b] * 2, [a] * 4] if same_size else [sizes[:4], sizes[4:8], [a]])


@pytest.mark.parametrize("threaded", [False, True])
def test_a_frame_outside_the_graphs_range_comes_after_every_frame_before_it_at_any_batch(threaded: bool) -> None:
    """A picture the graph cannot take (a portrait 64x48 frame in a landscape clip plans to a height of 64,
    over the range's 32) ends the run with its error after the frames before it, at any ``batch``: at
    ``batch=4`` the two before it were dropped, as planning it to see whether it joined their batch raised
    the error first."""
    manifest = {**MANIFEST, "dynamic": {**MANIFEST["dynamic"], "height": [32, 32]}}
    for batch in (1, 4):
        done = []
        with pytest.raises(InputError, match=r"input height 64 is outside the graph's range \[32, 32\]"):
            for r in Pipeline(Predictor(FakeBackend(), manifest), SizedSource([(24, 64), (24, 64), (64, 48), (24, 64)]),
                              batch=batch, threaded=threaded):
                done.append(r.frame)
        assert done == [0, 1], batch


def test_keyboard_interrupt_mid_video_leaves_a_playable_mp4(tmp_path: Path) -> None:
    """Ctrl-C raised inside the pipeline (here: in the inference thread at the 5th call) propagates,
    and the H.264 file holds every frame written before it."""
    model = _model(FakeBackend(fail_at=5, error=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        for _ in model.predict(ListSource(30), stream=True, save=True, save_json=True, save_dir=tmp_path):
            pass
    codec, frames, size, _ = decode_video(tmp_path / "memory.mp4")
    assert (codec, size) == ("h264", (64, 48)) and frames == 4
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 4
    assert not (tmp_path / "predictions_coco.json").exists()  # a partial COCO file would score as a bad model
    assert model.last_summary is not None and model.last_summary.interrupted and model.last_summary.frames == 4


class _GreyCamera:
    """A live reader of flat grey 64x48 frames without timestamps; subclasses decide what ``grab`` does."""

    fps, size, frames, live, error = 30.0, (64, 48), None, True, None

    def grab(self) -> bool:
        return True

    def retrieve(self) -> np.ndarray:
        return np.full((48, 64, 3), 100, np.uint8)

    def timestamp(self) -> float | None:
        return None

    def close(self) -> None:
        pass


def test_live_stream_gap_is_waited_through() -> None:
    class Flaky(_GreyCamera):
        def __init__(self, n: int) -> None:
            self.left = n

        def grab(self) -> bool:
            if self.left == 0:
                raise ConnectionResetError("peer reset")
            self.left -= 1
            return True

    opens = iter([Flaky(3), Flaky(4)])

    def opener() -> Flaky:
        reader = next(opens, None)
        if reader is None:
            raise ConnectionRefusedError("gone")
        return reader

    source = StreamSource(opener, spec="fake://cam", reconnect=Reconnect(2, 0.01, 0.02), realtime=False)
    results = list(Pipeline(Predictor(FakeBackend(), MANIFEST), source, batch=4))
    assert len(results) == 7 and [r.frame for r in results] == list(range(7))


def test_ctrl_c_on_a_stalled_stream_finishes_the_outputs_at_once(tmp_path: Path) -> None:
    """A camera that sent a frame and froze: the reader thread sits in a read until its timeout
    (10 s, as PyAV's by default). Ctrl-C must not wait for it (nor for the decode thread's join, 5 s):
    ``docker stop`` kills after 10 s, which left an unplayable mp4. Checked by order, not by the clock:
    the run ended while the read was still frozen, and every thread of the run had ended by then (the
    decode thread was stopped, not left behind when its join timed out)."""
    thawed = threading.Event()
    read_returned = threading.Event()

    class Frozen(_GreyCamera):
        def __init__(self) -> None:
            self.sent = 0

        def grab(self) -> bool:
            if self.sent == 1:
                # the read, until the end of the test; its limit, far beyond any load, only ends a read
                # that the stop waited for
                thawed.wait(120)
                read_returned.set()
            self.sent += 1
            return True

    source = StreamSource(Frozen, spec="fake://cam", reconnect=Reconnect(0, 0.0, 0.0))
    model = _model(FakeBackend())
    before = set(threading.enumerate())
    run_threads: list[threading.Thread] = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as under a terminal
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))  # Ctrl-C, in the wait for a frame
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in model.predict(source, stream=True, save=True, save_json=True, save_dir=tmp_path):
                run_threads = [t for t in threading.enumerate() if t not in before]
                timer.start()
        stopped_in_the_read = not read_returned.is_set()
        left_running = [t.name for t in run_threads if t.is_alive() and not t.name.startswith("pvt-deploy-reader")]
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        thawed.set()
    assert stopped_in_the_read, "the stop waited for the frozen read"
    assert any(t.name == "pvt-deploy-decode" for t in run_threads) and not left_running, left_running
    _, frames, _, _ = decode_video(tmp_path / "cam.mp4")
    assert frames == 1 and len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 1


def test_video_outputs_follow_the_source(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    clip = cached_clip(tmp_path_factory)
    model = _model(FakeBackend())
    results = list(model.predict(open_source(clip, vid_stride=3), stream=True, save=True, save_json=True,
                                 save_dir=tmp_path, vid_stride=3))
    assert [r.frame for r in results] == [0, 3, 6, 9]
    codec, frames, size, fps = decode_video(tmp_path / "clip.mp4")
    assert (codec, frames, size) == ("h264", 4, (320, 180)) and fps == pytest.approx(10 / 3, rel=0.01)
    coco = (tmp_path / "predictions_coco.json").read_text()
    assert '"category_id":0' in coco  # custom classes keep their indices (not COCO's 1..90 ids)


def test_increment_dir(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "pvt_small"
    assert increment_dir(base) == base
    base.mkdir(parents=True)
    assert increment_dir(base) == tmp_path / "runs" / "pvt_small2"
    (tmp_path / "runs" / "pvt_small2").mkdir()
    assert increment_dir(base) == tmp_path / "runs" / "pvt_small3"
    digits = tmp_path / "runs" / "pvt_v2_b0"
    digits.mkdir()
    assert increment_dir(digits) == tmp_path / "runs" / "pvt_v2_b0_2"


def test_max_det_keeps_at_most_that_many_and_refuses_less_than_one() -> None:
    results = list(Pipeline(Predictor(FakeBackend(), MANIFEST, max_det=1), ListSource(3)))
    assert [len(r.boxes or ()) for r in results] == [1, 1, 1]  # FakeBackend finds two per frame
    for bad in (-1, 0):  # -1 was a Python slice from the end; 0 keeps nothing
        with pytest.raises(InputError, match="max_det must be an integer >= 1"):
            Predictor(FakeBackend(), MANIFEST, max_det=bad)


def test_a_video_written_into_a_folder_never_replaces_a_file_there(tmp_path: Path) -> None:
    (tmp_path / "memory.mp4").write_bytes(b"the user's own video")
    list(_model(FakeBackend()).predict(ListSource(4), stream=True, save=True, save_dir=tmp_path))
    assert (tmp_path / "memory.mp4").read_bytes() == b"the user's own video"
    assert decode_video(tmp_path / "memory_1.mp4")[1] == 4


def test_a_write_failure_mid_run_is_one_error_and_leaves_no_unfinished_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A full disk mid-video: the encoder's error becomes one InputError, and neither the mp4 nor
    the JSON Lines is left behind, under its final name or as a .part."""
    import errno

    import av

    from pvt_deploy.io import sinks

    real = sinks.VideoWriter.write
    calls = {"n": 0}

    def full_disk(self: sinks.VideoWriter, image: np.ndarray, timestamp: float | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise av.error.OSError(errno.ENOSPC, "No space left on device")
        real(self, image, timestamp)

    monkeypatch.setattr(sinks.VideoWriter, "write", full_disk)
    model = _model(FakeBackend())
    with pytest.raises(InputError, match="cannot write outputs to .*: No space left on device"):
        for _ in model.predict(ListSource(30), stream=True, save=True, save_json=True, save_dir=tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []
    assert model.last_summary is not None and model.last_summary.outputs == []


def test_a_write_failure_while_finishing_removes_what_was_unfinished(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The disk fills as the run ends: the mp4 finished before stays (complete, playable), the JSON
    Lines that could not be finalised goes, .part included, and the run says so in one error."""
    import errno

    from pvt_deploy.io import sinks

    def failing_close(self: sinks.JsonlWriter) -> Path:
        self._file.close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks.JsonlWriter, "close", failing_close)
    with pytest.raises(InputError, match="No space left on device"):
        list(_model(FakeBackend()).predict(ListSource(6), stream=True, save=True, save_json=True, save_dir=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.mp4"]
    assert decode_video(tmp_path / "memory.mp4")[1] == 6


def test_coco_ids_of_two_videos_never_merge_and_cost_nothing_per_frame(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A video's frames are named by its file (frame numbers alone are the ids of a lone video), a
    second video of the same name by its path, so COCOeval keeps them apart. The writer remembers
    sources, not frames (a stream runs for days)."""
    import json

    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.tasks.results import Boxes, Result

    names = [f"c{i}" for i in range(80)]
    writer = ResultWriter(tmp_path, task="detect", names=names, save=False, save_json=True)
    boxes = Boxes(np.array([[1, 2, 11, 22]], np.float32), np.array([0.9], np.float32), np.array([3]), names, (32, 32))
    for path in ("a/cam.mp4", "b/cam.mp4", "b/other.mp4"):
        for frame in range(3):
            writer.write(Result("detect", np.zeros((32, 32, 3), np.uint8), path, names, frame=frame, boxes=boxes))
    assert len(writer._coco_sources) == len(writer._coco_videos) == 3  # one per video, not per frame
    with caplog.at_level(logging.WARNING):
        writer.close()
    ids = [d["image_id"] for d in json.loads((tmp_path / "predictions_coco.json").read_text())]
    assert ids == [f"{name}:{frame}" for name in ("cam.mp4", "b/cam.mp4", "other.mp4") for frame in range(3)]
    assert "COCO image ids of b/cam.mp4 would be those of a/cam.mp4; using 'b/cam.mp4:<frame>'" in caplog.text


@pytest.mark.parametrize(("sources", "expected"), [
    # COCO's own file names: its ground truth's integer ids
    ([("000000000139.jpg", None), ("000000000285.jpg", None)], [139, 285]),
    ([("clip.mp4", 0), ("clip.mp4", 1)], [0, 1]),  # a lone video or stream: its frame numbers
    # any other mix: one string per image (its name without the extension) and per frame; they were
    # ints and strings in one file, and frame 12 of a video shared 12.jpg's id 12
    ([("000000000139.jpg", None), ("astronaut.jpg", None)], ["000000000139", "astronaut"]),
    ([("12.jpg", None), ("clip.mp4", 11), ("clip.mp4", 12)], ["12", "clip.mp4:11", "clip.mp4:12"]),
    ([("001.jpg", None), ("1.jpg", None)], ["001", "1"]),  # both read as 1: strings keep them apart
])
def test_coco_image_ids_have_one_type_per_file(tmp_path: Path, sources: list[tuple[str, int | None]],
                                               expected: list[object]) -> None:
    """pycocotools matches results to the ground truth's image ids and sorts them: a file that held
    ints and strings (numbered and named images, images and a video, two videos) could be neither
    matched nor sorted. Ids are integers where every source gives one, else all strings."""
    import json

    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.tasks.results import Boxes, Result

    names = [f"c{i}" for i in range(80)]
    boxes = Boxes(np.array([[1, 2, 11, 22]], np.float32), np.array([0.9], np.float32), np.array([3]), names, (32, 32))
    with ResultWriter(tmp_path, task="detect", names=names, save=False, save_json=True) as writer:
        for path, frame in sources:
            writer.write(Result("detect", np.zeros((32, 32, 3), np.uint8), path, names, frame=frame, boxes=boxes))
    assert [d["image_id"] for d in json.loads((tmp_path / "predictions_coco.json").read_text())] == expected


def test_increment_dir_reserves_the_folder_it_gives(tmp_path: Path) -> None:
    """Two runs started together each get a folder of their own: the folder is made as its name is
    chosen (before, both took the first free name and wrote into one folder)."""
    base = tmp_path / "runs" / "infer" / "pvt_small"
    first = increment_dir(base, create=True)
    second = increment_dir(base, create=True)  # nothing written in the first yet
    assert (first, second) == (base, base.parent / "pvt_small2") and first.is_dir() and second.is_dir()
    assert increment_dir(base) == base.parent / "pvt_small3" and not (base.parent / "pvt_small3").exists()
