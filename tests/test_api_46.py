"""The Python API and the runtimes as a program embedding them uses them (session 46)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runtime_artifacts import cached_export

from pvt_deploy.runtimes.loader import load_backend


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def test_pytorch_takes_a_read_only_array_without_pytorchs_warning(cls_export: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only feed (``np.frombuffer`` of a request's bytes, a memory-mapped file) reached
    ``torch.from_numpy`` as it was, and PyTorch warned that writing to the tensor 'will result in undefined
    behavior' (once a process, so the spy below stands in for the warning: it refuses what PyTorch warns
    of). The backend copies such an array; its outputs are a writable copy's."""
    import torch

    backend, _ = load_backend(cls_export, backend="torch")
    from_numpy = torch.from_numpy

    def strict(array: np.ndarray) -> Any:
        assert array.flags.writeable, "a read-only array given to torch.from_numpy (PyTorch warns)"
        return from_numpy(array)

    monkeypatch.setattr(torch, "from_numpy", strict)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    read_only = np.frombuffer(x.tobytes(), np.float32).reshape(x.shape)
    assert not read_only.flags.writeable
    with backend:
        name = backend.inputs[0].name
        want = backend.infer({name: x.copy()})
        got = backend.infer({name: read_only})
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


# The child leaves a real-time scheduling policy it was given for the normal one first: a real-time task cannot join
# a cgroup without real-time time (cgroup v1 with RT group scheduling: EINVAL), and a test process's thread can be
# one (SVT-AV1 run as root makes the thread that encodes SCHED_FIFO for good; test_benchmarks_cli now encodes on a
# thread of its own). A refusal all the same is a cgroup this machine will not let the test use (exit 77, a skip).
QUOTA_SCRIPT = """
import os, sys
os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
try:
    with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
except OSError as e:
    print("the kernel refused to move a process into it:", e, file=sys.stderr)
    sys.exit(77)
from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
from pvt_deploy.runtimes.torch import cpu_per_core, physical_cores
backend = OnnxRuntimeBackend(sys.argv[2])
print(len(cpu_per_core() or []), physical_cores(), backend.info.details["intra_op_threads"],
      backend.info.details["worker_cpus"])
"""


def _quota_cgroup() -> tuple[Path, str, str] | None:
    """A fresh cgroup of this machine's CPU controller (v1 or v2) and how its quota of one CPU is
    written: (folder, file, value); None where this process may not make one (not root, no cgroupfs)."""
    import uuid

    root = Path("/sys/fs/cgroup")
    for mount, file, value in ((root / "cpu", "cpu.cfs_quota_us", "100000"), (root, "cpu.max", "100000 100000")):
        if not (mount / file).exists() and not (mount / "cgroup.controllers").exists():
            continue
        folder = mount / f"pvt-deploy-test-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir()
            (folder / file).write_text(value)
            if file == "cpu.cfs_quota_us":
                (folder / "cpu.cfs_period_us").write_text("100000")
            return folder, file, value
        except OSError:
            if folder.is_dir():
                folder.rmdir()
    return None


def test_a_cpu_quota_sets_the_default_threads(cls_export: Path) -> None:
    """In a container given a CPU quota (``docker run --cpus 1``, a Kubernetes CPU limit) every CPU of the
    host is still in the affinity mask, and a backend ran a thread per host core on the CPU time the quota
    allows (ONNX Runtime's workers spinning between operators). The default thread count is now no more
    than the quota, and such a session's workers are not pinned (it has not every core). A real cgroup of
    one CPU, with a real session in a process inside it; where no cgroup can be made (not root) the fake
    tree below checks the reading."""
    import os
    import subprocess
    import sys

    from pvt_deploy.runtimes.torch import cpu_per_core

    if len(cpu_per_core() or []) < 2:
        pytest.skip("one core: a quota of one CPU changes nothing")
    made = _quota_cgroup()
    if made is None:
        pytest.skip("cannot make a cgroup here (not root, or no cgroup file system)")
    folder = made[0]
    try:
        run = subprocess.run([sys.executable, "-c", QUOTA_SCRIPT, str(folder), str(cls_export / "model.onnx")],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    finally:
        folder.rmdir()  # empty again: the process has ended
    if run.returncode == 77:
        pytest.skip(f"cannot use a new cgroup here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr[-2000:]
    cores, counted, intra, pinned = run.stdout.split(maxsplit=3)
    assert int(cores) >= 2 and (counted, intra, pinned.strip()) == ("1", "1", "None")


@pytest.mark.parametrize(("cpu_max", "want"), [("150000 100000", 2), ("100000 100000", 1), ("50000 100000", 1),
                                                ("max 100000", None)])
def test_the_cgroup_v2_quota_is_read_up_to_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     cpu_max: str, want: int | None) -> None:
    """cgroup v2's ``cpu.max`` (the process's own cgroup, or one above it: here the root of a tree standing
    for /sys/fs/cgroup), rounded up to whole CPUs; ``max`` is no quota."""
    from pvt_deploy.runtimes import torch as runtime

    with open("/proc/self/cgroup", encoding="utf-8") as f:
        if not any(line.startswith("0::") for line in f):
            pytest.skip("no cgroup v2 line for this process")
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    monkeypatch.setattr(runtime, "CGROUP_ROOT", str(tmp_path))
    assert runtime.cpu_quota() == want
    cores = len(runtime.cpu_per_core() or [None])
    assert runtime.physical_cores() == min(cores, want or cores)


@pytest.fixture(scope="module")
def det_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pvt_deploy import Model

    with Model(cached_export(tmp_path_factory, "det")) as model:
        yield model


def test_a_result_pickles_without_its_cached_drawing(det_model: Any, tmp_path: Path) -> None:
    """A result sent to another process (a multiprocessing pool's return value) carried the drawing
    ``plot()`` caches beside the picture, which every result of ``predict(save=True)`` holds (drawn in
    the pipeline): twice the picture's bytes through the pipe. Pickled, it is the picture and the
    outputs; the other process's ``plot()`` draws the same picture afresh."""
    import pickle

    picture = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    result = det_model.predict(picture, save=True, save_dir=tmp_path / "out")[0]
    drawn = result.plot()
    data = pickle.dumps(result)
    assert len(data) < picture.nbytes * 1.1, (len(data), picture.nbytes)
    copy = pickle.loads(data)
    assert np.array_equal(copy.orig_img, picture) and np.array_equal(copy.boxes.data, result.boxes.data)
    assert copy.draw_conf == result.draw_conf and np.array_equal(copy.plot(), drawn)


def test_a_results_repr_stays_short_however_many_classes_it_found() -> None:
    """``repr`` (a log line, a debugger) listed every class a detector found: 80 classes made over a
    thousand characters. It names the five most frequent and counts the rest; ``verbose()`` (the CLI's
    line) still names every class."""
    from pvt_deploy.models import resolve_name
    from pvt_deploy.tasks.results import Boxes, Result

    names = list(resolve_name("pvt_v2_b0").classes)
    cls = np.repeat(np.arange(80), [3 if c < 5 else 1 for c in range(80)])
    boxes = Boxes(np.tile(np.array([[1, 2, 30, 40]], np.float32), (len(cls), 1)), np.full(len(cls), 0.5, np.float32),
                  cls.astype(np.int64), names, (48, 64))
    result = Result("detect", np.zeros((48, 64, 3), np.uint8), names=names, boxes=boxes)
    assert len(repr(result)) < 200, repr(result)
    assert repr(result).endswith("3 person, 3 bicycle, 3 car, 3 motorcycle, 3 airplane and 75 more classes)")
    assert result.verbose().count(", ") == 79 and "toothbrush" in result.verbose()


def test_more_onnx_runtime_threads_than_cores_do_not_spin(cls_export: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ONNX Runtime's workers spin while they wait (pvt-deploy's default: inside a run), each holding a
    core: given more threads than the process has cores (``threads=`` copied from a larger server, a
    container's quota) they took the cores the working threads needed, so that a session of 128 threads
    on 2 cores took 13 s to load and 2000 did not load in two minutes. Such a session's workers wait
    without spinning, and a warning says why; up to the cores they spin as before."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
    from pvt_deploy.runtimes.torch import physical_cores

    cores = physical_cores()
    many = cores * 32
    with caplog.at_level("WARNING"), OnnxRuntimeBackend(cls_export / "model.onnx", threads=many,
                                                         rewrite=False) as backend:
        options = backend._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert backend.info.details["spin"] == "never" and backend.info.details["intra_op_threads"] == many
        x = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 96)).astype(np.float32)
        assert backend.infer({backend.inputs[0].name: x})["logits"].shape == (1, 1000)
    assert f"threads={many} is more than the {cores} core(s)" in caplog.text
    caplog.clear()
    with OnnxRuntimeBackend(cls_export / "model.onnx", threads=cores, rewrite=False) as backend:
        assert backend.info.details["spin"] == "run"
    assert "more than" not in caplog.text


def _letterboxed(picture: np.ndarray, content_hw: tuple[int, int], input_hw: tuple[int, int],
                 pad: list[float]) -> np.ndarray:
    """The graph input built by hand: ``picture`` resized (bilinear) to ``content_hw`` at the top left of an
    ``input_hw`` input of the pad colour."""
    import cv2

    x = np.empty((1, 3, *input_hw), np.float32)
    x[0] = np.asarray(pad, np.float32)[:, None, None]
    h, w = content_hw
    x[0, :, :h, :w] = cv2.resize(picture, (w, h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    return x


def test_a_strip_under_the_graphs_minimum_is_padded_up_to_it(det_model: Any, tmp_path_factory: pytest.TempPathFactory,
                                                              tmp_path: Path) -> None:
    """A wide strip letterboxes to less than a dynamic graph's smallest height (these exports take 64..320;
    101x999 at imgsz 128 is 13x128 of picture, 32 rows after the stride): the whole run failed, saying
    'pass a smaller imgsz', where the letterbox pads it up to the minimum as it pads to the stride. The
    detector's boxes come back in the picture's pixels (the graph's own boxes for that padded input, scaled
    by 999/128 and 101/13); the segmenter's (align: 13 rows resized to 32, padded to 64) class map is the
    picture's size and mmseg's two resizes of the graph's logits for that input. A 2x2000 strip runs too."""
    import torch
    import torch.nn.functional as F

    from pvt_deploy import Model
    from pvt_deploy.tasks.postprocess import multiclass_nms

    picture = np.random.default_rng(7).integers(0, 256, (101, 999, 3), np.uint8)
    pad = det_model.manifest["preprocess"]["pad_value"]
    (r,) = det_model.predict(picture, imgsz=128)
    assert r.orig_shape == (101, 999) and len(r.boxes)
    out = det_model.backend.infer({"images": _letterboxed(picture, (13, 128), (64, 128), pad)})
    boxes = out["boxes"][0].copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, 128)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, 13)
    real = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    post = det_model.manifest["postprocess"]
    want = multiclass_nms(boxes[real], out["scores"][0][real], score_threshold=post["score_threshold"],
                          iou_threshold=post["iou_threshold"], max_detections=post["max_detections"]).boxes
    want = (want / np.array([128 / 999, 13 / 101] * 2, np.float32)).clip(0, [999, 101, 999, 101])
    np.testing.assert_allclose(r.boxes.xyxy, want, atol=1e-3)
    (strip,) = det_model.predict(np.full((2, 2000, 3), 90, np.uint8), imgsz=128)
    assert strip.orig_shape == (2, 2000)
    assert np.all(strip.boxes.xyxy >= 0) and np.all(strip.boxes.xyxy <= [2000, 2, 2000, 2])

    with Model(cached_export(tmp_path_factory, "seg")) as seg:
        assert seg.manifest["preprocess"]["resize"] == "align"
        (m,) = seg.predict(picture, imgsz=128)
        logits = seg.backend.infer({"images": _letterboxed(picture, (32, 128), (64, 128), pad)})["seg_logits"]
        full = F.interpolate(torch.from_numpy(logits), size=(64, 128), mode="bilinear", align_corners=False)
        full = F.interpolate(full[:, :, :32, :128], size=(101, 999), mode="bilinear", align_corners=False)[0]
        assert m.mask.shape == (101, 999)
        differ = m.mask != full.argmax(0).numpy()
        top2 = full.topk(2, dim=0).values.numpy()
        assert differ.mean() < 1e-3 and np.all(top2[0][differ] - top2[1][differ] < 1e-5)  # only near-ties
        assert seg.predict(np.full((2, 2000, 3), 90, np.uint8), imgsz=128)[0].mask.shape == (2, 2000)


def test_a_closed_pil_image_is_one_input_error(det_model: Any, tmp_path: Path) -> None:
    """A PIL image closed (``close()``), or opened lazily and used after its ``with Image.open(...)`` block,
    raised Pillow's own error from deep in the pipeline (``ValueError: Operation on closed image``, or a bare
    AssertionError). It is one line of :class:`InputError` saying how to keep the pixels, alone or in a list;
    what it says to do (``load()`` inside the block) runs."""
    from PIL import Image

    from pvt_deploy.errors import InputError

    path = tmp_path / "a.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path)
    closed = Image.open(path)
    closed.load()
    closed.close()
    with Image.open(path) as lazy:
        pass
    with Image.open(path) as loaded:
        loaded.load()
    for image, why in ((closed, "Operation on closed image"), (lazy, "AssertionError")):
        for source in (image, [path, image]):
            with pytest.raises(InputError) as e:
                det_model.predict(source)
            assert str(e.value) == (f"cannot read the PIL image's pixels ({why}) (read them before the image or its "
                                    "file is closed: image.load() or image.copy() inside 'with Image.open(...)')")
    (r,) = det_model.predict(loaded)
    assert np.array_equal(r.orig_img, np.asarray(Image.open(path).convert("RGB")))


def test_an_encoded_picture_in_memory_runs_as_its_file_does(det_model: Any, tmp_path: Path) -> None:
    """What a web service gets from an upload, an encoded picture as bytes, a bytearray, a memoryview or a
    binary file object (BytesIO, an open file), was refused ('unsupported source type bytes'; for a BytesIO
    'give list(...) of a BytesIO', which iterates its lines). It runs as the picture's file does: a JPEG
    turned by its EXIF orientation comes upright, in RGB, with the file's boxes, alone or in a list. What is
    not a picture is one line: text-mode file, a file object read to its end, a path given as bytes."""
    import io

    from PIL import Image

    from pvt_deploy.errors import InputError
    from pvt_deploy.io.sources import read_image

    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:24, :, 0] = 250  # red on top, green below: upright only if the orientation is applied
    pixels[24:, :, 1] = 250
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turned a quarter clockwise
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    data = path.read_bytes()
    want = read_image(path)
    assert want.shape == (64, 48, 3)
    (ref,) = det_model.predict(path)
    with open(path, "rb") as opened:
        given = [data, bytearray(data), memoryview(data), io.BytesIO(data), opened]
        for source in given:
            (r,) = det_model.predict(source)
            assert np.array_equal(r.orig_img, want), type(source)
            np.testing.assert_array_equal(r.boxes.data, ref.boxes.data)
    results = det_model.predict([path, data, io.BytesIO(data)])
    assert all(np.array_equal(r.orig_img, want) for r in results)
    refused = {io.StringIO("x"): r"the file object <StringIO> is open as text, not bytes \(open the picture with "
                                 r"open\(path, 'rb'\)\)$",
               io.BytesIO(): r"the file object <BytesIO> gave no bytes \(read to its end already\? seek\(0\) first\)$",
               b"clip.mp4": r"cannot decode image <bytes> \(corrupt or not an image\) \(bytes and file objects are "
                            r"decoded as an image file's contents; give a video, or a path, by its name \(a str\)\)$"}
    for source, message in refused.items():
        with pytest.raises(InputError, match=message):
            det_model.predict(source)
