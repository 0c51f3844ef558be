"""``Model(...).predict(...)`` on every kind of source, and what a Result offers."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from test_runtime_artifacts import cached_clip, cached_export, decode_video

from pvt_deploy import Model, api
from pvt_deploy.assets import sample_image, sample_images_dir
from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import read_image


@pytest.fixture(scope="module")
def det_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    m = Model(cached_export(tmp_path_factory, "det"))
    yield m  # type: ignore[misc]
    m.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_clip(tmp_path_factory)


def test_model_describes_itself(det_model: Model) -> None:
    assert det_model.task == "detect" and len(det_model.names) == 80 and det_model.names[0] == "person"
    assert det_model.backend.info.name == "onnxruntime"
    assert det_model.manifest["model"] == "pvt_v2_b0"
    assert "detect" in repr(det_model)


def test_predict_an_image_path(det_model: Model, tmp_path: Path) -> None:
    results = det_model.predict(str(sample_image("coffee")))
    assert isinstance(results, list) and len(results) == 1
    r = results[0]
    assert r.task == "detect" and r.path.endswith("coffee.jpg") and r.frame is None
    assert r.orig_shape == (400, 600) and len(r.boxes) > 0
    b = r.boxes
    assert b.xyxy.dtype == np.float32 and b.cls.dtype == np.int64 and (np.diff(b.conf) <= 0).all()
    assert (b.xyxy[:, [0, 2]] <= 600).all() and (b.xyxy[:, [1, 3]] <= 400).all() and (b.xyxy >= 0).all()
    assert np.allclose(b.xyxyn[:, 2], b.xyxy[:, 2] / 600) and b.xywh.shape == (len(b), 4)
    assert b[b.conf > 0.0].labels == [r.names[c] for c in b.cls]
    r.draw_conf = None  # every box (this test model's scores stay under the default 0.25)
    plotted = r.plot()
    assert plotted.shape == r.orig_img.shape and not np.array_equal(plotted, r.orig_img)
    record = json.loads(r.to_json())
    assert record["width"] == 600 and len(record["detections"]) == len(b)
    assert set(record["detections"][0]) == {"box", "score", "class_id", "class"}
    saved = r.save(tmp_path / "coffee_pred.png")
    assert cv2.imread(str(saved)).shape == (400, 600, 3)


def test_predict_a_folder_an_array_and_a_list(det_model: Model) -> None:
    folder = det_model.predict(sample_images_dir(), conf=0.06)
    assert [Path(r.path).name for r in folder] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    assert all((r.boxes.conf > 0.06).all() for r in folder)
    image = read_image(sample_image("chelsea"))
    from_array = det_model.predict(image)[0]
    from_path = next(r for r in folder if r.path.endswith("chelsea.jpg"))
    assert from_array.path == "image0.jpg"
    assert np.allclose(from_array.boxes.xyxy[from_array.boxes.conf > 0.06], from_path.boxes.xyxy, atol=1e-3)
    many = det_model.predict([image, image[::2, ::2]], batch=2, classes=[0, 1, 2])
    assert [r.orig_shape for r in many] == [(300, 451), (150, 226)]
    assert all(set(r.boxes.cls.tolist()) <= {0, 1, 2} for r in many)


def test_a_list_mixing_pictures_and_files_treats_files_as_a_list_of_files_does(det_model: Model,
                                                                              tmp_path: Path) -> None:
    """An unreadable file in ``[array, "a.jpg", "broken.jpg"]`` stopped the whole list with an
    InputError, where ``["a.jpg", "broken.jpg"]`` skips it with a warning and counts it; now both
    skip it, and a missing file is refused up front in both."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    coffee = str(sample_image("coffee"))
    image = read_image(sample_image("chelsea"))[::2, ::2]
    files = det_model.predict([coffee, str(broken)], conf=0.06)
    assert [r.path for r in files] == [coffee] and det_model.last_summary.skipped == 1
    mixed = det_model.predict([image, str(broken), coffee], conf=0.06)
    assert [r.path for r in mixed] == ["image0.jpg", coffee] and det_model.last_summary.skipped == 1
    np.testing.assert_allclose(mixed[1].boxes.xyxy, files[0].boxes.xyxy, atol=1e-3)
    for listed in ([str(tmp_path / "gone.jpg"), coffee], [image, str(tmp_path / "gone.jpg")]):
        with pytest.raises(InputError, match="no such file: .*gone.jpg"):
            det_model.predict(listed)


def test_code_written_for_ultralytics_reads_the_boxes(det_model: Model) -> None:
    # `r.boxes.cpu().numpy().xyxy` and `r.boxes.data` (x1, y1, x2, y2, conf, cls rows) are how
    # Ultralytics code reads its tensors; here they are numpy already and must give the same numbers
    r = det_model.predict(read_image(sample_image("chelsea")))[0]
    assert len(r.boxes) > 0 and r.cpu() is r and r.numpy() is r
    called = det_model(read_image(sample_image("chelsea")), conf=0.06)[0]  # model(...) is model.predict(...)
    assert np.array_equal(called.boxes.xyxy, r.boxes.xyxy[r.boxes.conf > 0.06])
    boxes = r.boxes.cpu().numpy()
    assert boxes is r.boxes and np.array_equal(boxes.xyxy, r.boxes.xyxy)
    data = r.boxes.data
    assert data.shape == (len(r.boxes), 6) and data.dtype == np.float32
    assert np.array_equal(data[:, :4], r.boxes.xyxy) and np.array_equal(data[:, 4], r.boxes.conf)
    assert np.array_equal(data[:, 5].astype(np.int64), r.boxes.cls)
    kept = r.boxes[r.boxes.conf > float(np.median(r.boxes.conf))]
    assert np.array_equal(kept.data, data[data[:, 4] > float(np.median(r.boxes.conf))])


def test_mixed_lists_float_pictures_and_unknown_suffixes(det_model: Model, tmp_path: Path) -> None:
    path = sample_image("chelsea")
    image = read_image(path)
    ref = det_model.predict(image)[0]
    for mixed in ([str(path), image], [image, path]):  # paths and arrays in one list, either order
        results = det_model.predict(mixed)
        assert len(results) == 2 and sum(r.path.endswith("chelsea.jpg") for r in results) == 1
        for r in results:
            assert np.allclose(r.boxes.xyxy, ref.boxes.xyxy, atol=1e-3)
    # img.astype(np.float32) keeps 0..255; 0..1 floats are still read as 0..1
    for floats in (image.astype(np.float32), image.astype(np.float64) / 255.0):
        r = det_model.predict(floats)[0]
        assert np.abs(r.orig_img.astype(int) - image).max() <= 1
        assert np.allclose(r.boxes.xyxy, ref.boxes.xyxy, atol=0.5)
    with pytest.raises(InputError, match="cannot encode an image as '.xyz'"):
        ref.save(tmp_path / "x.xyz")
    assert not list(tmp_path.iterdir())


def test_predict_a_video_as_a_stream(det_model: Model, clip: Path) -> None:
    gen = det_model.predict(clip, stream=True, vid_stride=2, batch=2)
    assert not isinstance(gen, list)
    results = list(gen)
    assert [r.frame for r in results] == [0, 2, 4, 6, 8]
    assert all(r.orig_shape == (180, 320) and r.path == str(clip) for r in results)
    assert results[1].timestamp == pytest.approx(0.2, abs=0.01)
    summary = det_model.last_summary
    assert summary is not None and summary.frames == 5 and summary.stages["inference"]["frames"] == 5


def test_a_caller_that_stops_reading_a_stream_is_not_warned_about(det_model: Model, clip: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A service that takes the first frames of predict(stream=True, save=True) and breaks out was warned
    on every request, 'clip.mp4: stopped by GeneratorExit; keeping the 4 frames written' (Python's name for
    its own choice), and with save_json 'predictions_coco.json: not written'. Info lines now; the frames
    written are kept, and decode."""
    caplog.set_level(logging.INFO, logger="pvt_deploy")
    for i, _ in enumerate(det_model.predict(clip, stream=True, save=True, save_json=True, save_dir=tmp_path / "out")):
        if i == 3:
            break
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
    assert any("the caller stopped after" in r.getMessage() for r in caplog.records)
    (video,) = (tmp_path / "out").glob("*.mp4")
    with av.open(str(video)) as f:
        assert sum(1 for _ in f.decode(video=0)) >= 4


@contextlib.contextmanager
def _ctrl_c_while_the_second_result_is_written(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real Ctrl-C (SIGINT to this thread, Python's own handler, as under a terminal) while the second
    result's outputs are written: the writer holds it until they are all there."""
    import signal

    from pvt_deploy.tasks.pipeline import ResultWriter

    real = ResultWriter._write_all

    def stopped_in_the_second(self: ResultWriter, result: Any, written: list[Path]) -> None:
        if self.results_written == 1:
            signal.raise_signal(signal.SIGINT)
        real(self, result, written)

    monkeypatch.setattr(ResultWriter, "_write_all", stopped_in_the_second)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _two_pictures_kept(model: Model, out: Path, pictures: list[str]) -> None:
    assert model.last_summary is not None and model.last_summary.frames == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(p).name for p in pictures[:2])


def test_a_ctrl_c_held_for_the_result_a_loop_breaks_on_is_raised_at_close(
        det_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that came while the second picture was written is held, that result handed back, and the
    stop raised at the next step: a loop that broke on that result and closed the generator never got it
    (close() returned: the user's Ctrl-C was swallowed). close() raises it now, after the outputs are
    finished, as does closing such a run at exit (quietly: the process is ending)."""
    pictures = [str(p) for p in sorted(sample_images_dir().glob("*.jpg"))[:3]]
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    got: list[str] = []
    with _ctrl_c_while_the_second_result_is_written(monkeypatch), pytest.raises(KeyboardInterrupt), \
            contextlib.closing(det_model.predict(pictures, stream=True, save=True, save_dir=tmp_path / "a")) as results:
        for r in results:
            got.append(str(r.path))
            if len(got) == 2:
                break
    assert got == pictures[:2] and not unraisable
    _two_pictures_kept(det_model, tmp_path / "a", pictures)
    with _ctrl_c_while_the_second_result_is_written(monkeypatch):  # still open at exit
        run = det_model.predict(pictures, stream=True, save=True, save_dir=tmp_path / "b")
        assert [next(run).path, next(run).path] == pictures[:2]
        api._close_open_runs()
    assert not unraisable
    with pytest.raises(StopIteration):  # closed
        next(run)
    _two_pictures_kept(det_model, tmp_path / "b", pictures)


def test_a_ctrl_c_held_for_a_result_whose_generator_is_dropped_is_a_warning(
        det_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A loop over predict(stream=True) that breaks on the result a Ctrl-C came with drops the generator
    without a step or close(): Python cannot raise from an object it collects (it prints 'Exception ignored
    in' and goes on), so the run ends as a stopped one and a warning says the Ctrl-C was not raised and
    how to get it; the stop went by without a word before."""
    pictures = [str(p) for p in sorted(sample_images_dir().glob("*.jpg"))[:3]]
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with _ctrl_c_while_the_second_result_is_written(monkeypatch):
        for i, _ in enumerate(det_model.predict(pictures, stream=True, save=True, save_dir=tmp_path)):
            if i == 1:
                break
    assert not unraisable
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "a Ctrl-C came while its last result was written" in warnings[0], warnings
    assert "contextlib.closing" in warnings[0]
    _two_pictures_kept(det_model, tmp_path, pictures)


def test_long_videos_and_streams_need_stream_true(det_model: Model, clip: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "MAX_LIST_FRAMES", 5)
    with pytest.raises(InputError, match="stream=True"):
        det_model.predict(clip)
    assert len(det_model.predict(clip, vid_stride=2)) == 5  # 5 frames after the stride: allowed


def test_save_writes_annotated_media_and_json(det_model: Model, clip: Path, tmp_path: Path) -> None:
    det_model.predict(sample_images_dir(), save=True, save_json=True, save_dir=tmp_path / "images")
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "predictions.jsonl", "predictions_coco.json"]
    coco = json.loads((tmp_path / "images" / "predictions_coco.json").read_text())
    assert coco and {"image_id", "category_id", "bbox", "score"} == set(coco[0])
    assert coco[0]["image_id"] in ("astronaut", "chelsea", "coffee") and 1 <= coco[0]["category_id"] <= 90
    with pytest.raises(InputError, match="save_dir"):
        det_model.predict(clip, save=True)
    image = read_image(sample_image("chelsea"))
    det_model.predict([image, image[:, ::-1]], save=True, save_dir=tmp_path / "arrays")
    assert sorted(p.name for p in (tmp_path / "arrays").iterdir()) == ["image0.jpg", "image1.jpg"]


def test_segmentation_and_classification_results(tmp_path_factory: pytest.TempPathFactory,
                                                  tmp_path: Path) -> None:
    image = read_image(sample_image("coffee"))[::3, ::3]
    with Model(cached_export(tmp_path_factory, "seg")) as seg:
        r = seg.predict(image)[0]
    assert r.mask is not None and r.mask.shape == r.orig_shape == (134, 200) and r.mask.dtype == np.int32
    areas = r.areas()
    assert sum(a["pixels"] for a in areas) == 134 * 200 and areas[0]["pixels"] >= areas[-1]["pixels"]
    assert json.loads(r.to_json())["classes"][0]["class"] == areas[0]["class"]
    assert r.plot().shape == (134, 200, 3)
    # the overlay is the mask's class colours blended half and half with the photo, at every pixel
    from pvt_deploy.tasks.visualize import palette

    blend = 0.5 * r.orig_img.astype(np.float64) + 0.5 * palette(150)[r.mask]
    assert np.abs(r.plot(legend=0).astype(np.float64) - blend).max() <= 1
    assert cv2.imread(str(r.save_mask(tmp_path / "mask.png")), cv2.IMREAD_UNCHANGED).shape == (134, 200)
    with Model(cached_export(tmp_path_factory, "cls")) as cls:
        r = cls.predict(image, topk=3)[0]
    assert r.probs is not None and len(r.probs.top) == 3 and r.probs.top1 == r.probs.top5[0]
    assert r.probs.cpu().numpy() is r.probs
    assert 0 < r.probs.top1conf <= 1 and r.verbose().count("%") == 3
    assert [t["class"] for t in json.loads(r.to_json())["top"]] == r.probs.labels
    # probs.data: every class's probability, as Ultralytics code reads it
    assert r.probs.data.shape == (len(cls.names),) and abs(float(r.probs.data.sum()) - 1) < 1e-4
    assert int(r.probs.data.argmax()) == r.probs.top1 and np.allclose(r.probs.data[r.probs.top], r.probs.conf)
    # printed (a log line, the REPL), the top-k and not all 1000 names and probabilities (27 kB)
    assert len(repr(r.probs)) < 300 and "top=" in repr(r.probs) and "tench" not in repr(r.probs)


def test_boxes_print_without_the_model_s_class_list(det_model: Model) -> None:
    boxes = det_model.predict(read_image(sample_image("coffee")), conf=0.06, max_det=2)[0].boxes
    assert boxes is not None and len(boxes) == 2
    assert "xyxy=" in repr(boxes) and "toothbrush" not in repr(boxes) and len(repr(boxes)) < 400


def test_imgsz_is_parsed_as_the_cli_parses_it(det_model: Model) -> None:
    # one parser for Model(imgsz=...), predict(imgsz=...), `--imgsz` and the exporter: a string is a
    # size, not a sequence of characters ("128" once became 1x2), and a malformed one is refused
    assert det_model.predictor(imgsz="128").preprocessor.imgsz == (128, 128)
    assert det_model.predictor(imgsz="96x128").preprocessor.imgsz == (96, 128)
    assert det_model.predictor(imgsz=(np.int64(96), 128)).preprocessor.imgsz == (96, 128)
    for bad, why in [("abc", "not whole numbers"), ((128, 1.5), "not whole numbers"), ((1, 2, 3), "not one or two"),
                     (0, "at least 1"), (True, "not whole numbers")]:
        with pytest.raises(InputError, match=why):
            det_model.predictor(imgsz=bad)


# -- settings, lifetime and Result methods as a first user meets them ----------------------------------


def test_settings_take_numpy_numbers_and_class_names_and_refuse_wrong_types(det_model: Model, clip: Path) -> None:
    image = read_image(sample_image("chelsea"))
    ref = det_model.predict(image, conf=0.05)[0]
    assert len(det_model.predict(image, conf=np.float32(0.05), max_det=np.int64(3))[0].boxes) == 3
    assert [r.frame for r in det_model.predict(clip, vid_stride=np.int64(2), batch=np.int64(2))] == [0, 2, 4, 6, 8]
    wanted = {int(c) for c in ref.boxes.cls[:2]}
    by_name = det_model.predict(image, classes=[det_model.names[c] for c in wanted])[0]
    by_array = det_model.predict(image, classes=np.array(sorted(wanted)))[0]
    assert set(by_name.boxes.cls.tolist()) == set(by_array.boxes.cls.tolist()) == wanted
    assert set(det_model.predict(image, classes=det_model.names[min(wanted)])[0].boxes.cls.tolist()) == {min(wanted)}
    cases: list[tuple[dict[str, Any], str]] = [({"conf": "0.3"}, "conf must be a number"), ({"iou": True}, "iou must be a number"),
                        ({"classes": [500]}, "no class 500"), ({"classes": [-1]}, "no class -1"),
                        ({"classes": ["unicorn"]}, "unknown class 'unicorn'"), ({"classes": [0.5]}, "class ids"),
                        ({"topk": 0}, "topk must be an integer >= 1"), ({"topk": "3"}, "topk must be"),
                        ({"batch": "2"}, "batch must be an integer"), ({"batch": 2.0}, "batch must be an integer"),
                        ({"max_det": 2.5}, "max_det must be an integer"),
                        ({"stream": "no"}, "stream must be True or False, got 'no'"),
                        ({"save": 1}, "save must be True or False"), ({"threaded": "yes"}, "threaded must be")]
    for kwargs, why in cases:
        with pytest.raises(InputError, match=why):
            det_model.predict(image, **kwargs)
    assert len(det_model.predict(image, stream=np.bool_(False), threaded=False)) == 1  # numpy's bools are bools


def test_settings_for_another_task_are_reported(det_model: Model, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="pvt_deploy.api"):
        det_model.predict(np.zeros((64, 64, 3), np.uint8), topk=3, conf=0.2)
    assert [r.getMessage() for r in caplog.records] == [
        "topk= applies to classify models; a detect model has no use for it: ignored"]


def test_a_ctrl_c_inside_a_write_is_not_counted_as_a_frame(det_model: Model, clip: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary counts the frames the outputs hold: a Ctrl-C that lands inside the third write
    (encoding the frame, writing its JSON line) leaves two, and the summary said three."""
    import json

    from pvt_deploy.tasks.pipeline import ResultWriter

    real = ResultWriter.write
    calls = {"n": 0}

    def write(self: ResultWriter, result: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(self, result)

    monkeypatch.setattr(ResultWriter, "write", write)
    with pytest.raises(KeyboardInterrupt):
        det_model.predict(clip, save_json=True, save_dir=tmp_path / "out")
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 2 and det_model.last_summary is not None and det_model.last_summary.frames == 2
    assert [json.loads(line)["frame"] for line in lines] == [0, 1]


def test_a_stream_closed_before_its_first_result_leaves_nothing_open(det_model: Model, clip: Path,
                                                                     tmp_path: Path) -> None:
    from pvt_deploy.io.sources import open_source

    closed: list[bool] = []

    def watched() -> Any:  # a video source that records being closed
        src = open_source(str(clip))
        close = src.close

        def record() -> None:
            closed.append(True)
            close()

        src.close = record  # type: ignore[method-assign]
        return src

    src = watched()
    gen = det_model.predict(src, stream=True, save_json=True, save_dir=tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["predictions.jsonl.part"]
    assert not isinstance(gen, list)
    gen.close()  # type: ignore[attr-defined]
    assert closed and not (tmp_path / "out").exists()  # the video closed; no .part file, no empty folder left
    assert det_model.last_summary is not None and det_model.last_summary.frames == 0
    # an output folder that cannot be made closes the source it opened too
    closed.clear()
    src = watched()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write outputs"):
        det_model.predict(src, stream=True, save_json=True, save_dir=tmp_path / "file" / "out")
    assert closed


# A server thread (daemon, as anyio's and most pools' are) streaming a video to a client that stalls,
# and a generator kept in a global: both still open when the process exits after their second frame.
EXIT_SCRIPT = """
import sys, threading
from pvt_deploy import Model

model, clip, held_out, global_out = sys.argv[1:]
started, stalled = threading.Event(), threading.Event()

def client(results):
    for i, _ in enumerate(results):
        if i == 1:
            started.set()
            stalled.wait()

model_ = Model(model)
threading.Thread(target=client, daemon=True,
                 args=(model_.predict(clip, stream=True, save=True, save_json=True, save_dir=held_out),)).start()
started.wait(30)
kept = model_.predict(clip, stream=True, save=True, save_json=True, save_dir=global_out)
next(kept), next(kept)
"""


def test_stream_runs_still_open_at_exit_leave_finished_outputs(tmp_path_factory: pytest.TempPathFactory,
                                                              clip: Path, tmp_path: Path) -> None:
    """A process that exits while a ``predict(stream=True, save=True)`` generator is still open (held by
    a daemon server thread, or a global): the run was never closed, so its annotated video stayed a
    hidden, unplayable temporary file beside ``predictions.jsonl.part`` (the daemon thread's run, every
    time), or Python's teardown aborted the process ('terminate called without an active exception',
    exit 134, about one run in six). Both now end as a dropped generator does: outputs finished."""
    script = tmp_path / "exit_worker.py"
    script.write_text(EXIT_SCRIPT)
    outs = [tmp_path / "held", tmp_path / "global"]
    done = subprocess.run([sys.executable, str(script), str(cached_export(tmp_path_factory, "det")), str(clip),
                           *map(str, outs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for out in outs:
        assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "predictions.jsonl"], out.name
        assert decode_video(out / "clip.mp4")[1] == 2
        assert len((out / "predictions.jsonl").read_text().splitlines()) == 2


def test_weights_task_and_lists_that_cannot_apply_are_refused(tmp_path_factory: pytest.TempPathFactory,
                                                              det_model: Model, clip: Path) -> None:
    export = cached_export(tmp_path_factory, "det")
    with pytest.raises(InputError, match="weights= does not apply to the export"):
        Model(export, weights=export / "weights.pth")  # was run with the export's weights, silently
    with pytest.raises(InputError, match="a model file runs with its own weights"):
        Model(export / "model.onnx", weights=export / "weights.pth")
    with pytest.raises(InputError, match="is a detect model, not 'classify'"):
        Model(export, task="classify")
    with pytest.raises(InputError, match="model must be"):
        Model(123)
    # weights=3 was a TypeError from pathlib; "" read as the current folder ("weights  is a folder")
    for weights in (3, "", b"w.pth"):
        with pytest.raises(InputError, match=r"weights= must be a checkpoint file's path or an http\(s\) URL"):
            Model("pvt_v2_b0-cls", weights=weights)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="is a video: a list takes image files"):
        det_model.predict([str(sample_image("coffee")), clip])  # was skipped with a warning: []
    with pytest.raises(InputError, match="is a folder: a list takes image files"):
        det_model.predict([sample_images_dir()])  # was "no such file"


def test_result_methods_return_new_arrays_and_refuse_bad_arguments(det_model: Model, tmp_path: Path) -> None:
    results = det_model.predict([read_image(sample_image("coffee")), read_image(sample_image("chelsea"))])
    assert results.index(results[1]) == 1  # == on results compared arrays: "truth value ... ambiguous"
    r = results[0]
    first = r.plot()
    first[:] = 0  # drawing on the returned picture must not change the result's own drawing
    assert r.plot().max() > 0 and r.plot() is not r.plot()
    r.save(tmp_path / "a.png")
    assert cv2.imread(str(tmp_path / "a.png")).max() > 0
    bad: list[tuple[dict[str, Any], str]] = [({"line_width": -3}, "line_width"), ({"line_width": 0}, "line_width"),
                        ({"line_width": "3"}, "line_width"), ({"alpha": 2}, "alpha"), ({"legend": -1}, "legend")]
    for kwargs, why in bad:
        with pytest.raises(InputError, match=why):
            r.plot(**kwargs)
    with pytest.raises(InputError, match="it is a folder"):
        r.save(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):  # as any failed write: ResultWriter turns it into its one-line error
        r.save(tmp_path / "file" / "x.jpg")


def test_plot_without_labels_draws_only_the_boxes() -> None:
    from pvt_deploy.tasks.results import Boxes, Result
    from pvt_deploy.tasks.visualize import draw_boxes, palette

    image = np.full((200, 300, 3), 255, np.uint8)
    boxes = Boxes(np.array([[50, 60, 150, 160]], np.float32), np.array([0.9], np.float32), np.array([0]),
                  ["person"], (200, 300))
    r = Result("detect", image, names=["person"], boxes=boxes)
    bare = image.copy()
    cv2.rectangle(bare, (50, 60), (150, 160), tuple(int(c) for c in palette(1)[0]), 3)
    assert np.array_equal(r.plot(labels=False, line_width=3), bare)  # an empty label box was drawn above it
    with_name = r.plot(conf=False, line_width=3)
    assert not np.array_equal(with_name, bare) and not np.array_equal(with_name, r.plot(line_width=3))
    with pytest.raises(ValueError, match="line_width must be >= 1"):
        draw_boxes(image, [[0, 0, 5, 5]], None, [0], None, line_width=-1)  # cv2 would fill the box


def test_plot_draws_the_boxes_a_saving_run_was_filtered_to(det_model: Model, tmp_path: Path) -> None:
    """With ``save=True`` the pipeline draws each result and caches the picture; after
    ``r.boxes = r.boxes[...]`` ``plot()`` and ``save()`` returned that stale picture with every box.
    Now a result whose outputs were replaced is drawn afresh, as one never drawn would be."""
    image = read_image(sample_image("coffee"))
    r = det_model.predict([image], conf=0.06, save=True, save_dir=tmp_path / "run")[0]
    assert len(r.boxes) > 1
    r.boxes = r.boxes[:1]
    undrawn = det_model.predict(image, conf=0.06)[0]
    undrawn.boxes = undrawn.boxes[:1]
    assert np.array_equal(r.plot(), undrawn.plot())
    assert np.array_equal(cv2.imread(str(r.save(tmp_path / "one.png")))[..., ::-1], undrawn.plot())


def test_pictures_show_the_confident_boxes_and_the_results_keep_every_one(det_model: Model, tmp_path: Path) -> None:
    """The default conf (0.05) keeps what a COCO mAP needs, up to 100 boxes an image: clutter on a
    picture. Boxes are drawn from 0.25 unless a conf was asked for (then from it) or draw_conf says."""
    from pvt_deploy.tasks.results import DRAW_CONF, Boxes, Result

    image = read_image(sample_image("coffee"))
    assert det_model.predict(image)[0].draw_conf == DRAW_CONF == 0.25
    assert det_model.predict(image, conf=0.06)[0].draw_conf == 0.06
    r = det_model.predict([image], conf=0.06, draw_conf=1.0, save=True, save_dir=tmp_path / "run")[0]
    assert r.draw_conf == 1.0 and len(r.boxes) > 1 and len(r.to_dict()["detections"]) == len(r.boxes)
    assert np.array_equal(r.plot(), image)  # every box in the results, none drawn (the pipeline's drawing too)
    for bad in (1.5, -0.1, "0.3"):
        with pytest.raises(InputError, match="draw_conf"):
            det_model.predict(image, draw_conf=bad)  # type: ignore[arg-type]
    canvas = np.full((200, 300, 3), 255, np.uint8)
    xyxy = np.array([[50, 60, 150, 160], [20, 20, 280, 180]], np.float32)
    both = Boxes(xyxy, np.array([0.9, 0.1], np.float32), np.array([0, 0]), ["person"], (200, 300))
    sure = Boxes(xyxy[:1], np.array([0.9], np.float32), np.array([0]), ["person"], (200, 300))
    drawn = Result("detect", canvas, names=["person"], boxes=both, draw_conf=0.25).plot()
    assert np.array_equal(drawn, Result("detect", canvas, names=["person"], boxes=sure).plot())
    assert not np.array_equal(drawn, Result("detect", canvas, names=["person"], boxes=both).plot())  # None: all


def test_json_decimals_take_a_whole_number() -> None:
    """``to_json(decimals="1")`` raised ``TypeError: 'str' object cannot be interpreted as an
    integer`` from ``round`` (a detection's only: other tasks ignored it) and ``decimals=-1`` rounded
    the corners to tens; now each is one InputError line, as ``plot()``'s settings are."""
    from pvt_deploy.tasks.results import Boxes, Result

    boxes = Boxes(np.array([[50.123, 60.456, 150.5, 160.25]], np.float32), np.array([0.9], np.float32),
                  np.array([0]), ["person"], (200, 300))
    r = Result("detect", np.zeros((200, 300, 3), np.uint8), names=["person"], boxes=boxes)
    assert json.loads(r.to_json(decimals=np.int64(1)))["detections"][0]["box"] == [50.1, 60.5, 150.5, 160.2]
    for bad in ("1", 1.5, -1, None, True):
        with pytest.raises(InputError, match="decimals must be an integer >= 0"):
            r.to_json(decimals=bad)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="decimals must be an integer >= 0"):
            boxes.to_list(bad)  # type: ignore[arg-type]
    seg = Result("segment", np.zeros((4, 4, 3), np.uint8), names=["a"], mask=np.zeros((4, 4), np.int32))
    with pytest.raises(InputError, match="decimals"):
        seg.to_dict(decimals="2")  # type: ignore[arg-type]


def test_save_mask_needs_a_png_name(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    with Model(cached_export(tmp_path_factory, "seg")) as seg:
        r = seg.predict(read_image(sample_image("coffee"))[::4, ::4])[0]
    with pytest.raises(InputError, match="name it .png"):
        r.save_mask(tmp_path / "mask.jpg")  # PNG bytes were written under the .jpg name
    mask = cv2.imread(str(r.save_mask(tmp_path / "mask.PNG")), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and np.array_equal(mask, r.mask)


def test_an_empty_class_list_is_refused_as_an_unknown_class_is(det_model: Model) -> None:
    """classes=[] would drop every detection without a word; like classes=[500], it is bad input."""
    image = read_image(sample_image("chelsea"))
    assert len(det_model.predict(image, conf=0.0)[0].boxes) > 0
    for empty in ([], (), np.array([], dtype=np.int64)):
        with pytest.raises(InputError, match="classes names no class"):
            det_model.predict(image, classes=empty)
    with pytest.raises(InputError, match="--classes names no class"):
        api.class_ids([], det_model.names, what="--classes")


def test_a_mistyped_class_name_says_which_it_may_be() -> None:
    """``--classes persn`` said only "unknown class 'persn'", as a mistyped model name no longer does: with
    80 (or 1000) names to look through, the nearest is named. A name near none is said unknown as before."""
    from pvt_deploy.data import class_names

    coco = class_names("coco")
    with pytest.raises(InputError) as e:
        api.class_ids(["persn", "car"], coco, what="--classes")
    assert str(e.value) == "--classes: unknown class 'persn'; did you mean 'person'? (use ids or names of this " \
                           "model's classes)"
    with pytest.raises(InputError) as e:
        api.class_ids(["Traffic Lite"], coco)
    assert "did you mean 'traffic light'?" in str(e.value)
    with pytest.raises(InputError) as e:
        api.class_ids(["unicorn"], coco)
    assert str(e.value) == "classes: unknown class 'unicorn' (use ids or names of this model's classes)"


def test_imgsz_follows_the_cli_rule_stride_first_then_the_range(tmp_path_factory: pytest.TempPathFactory,
                                                               det_model: Model) -> None:
    """Model(imgsz=...), predict(imgsz=...) and --imgsz: rounded up to the stride, then checked against the
    graph's range [64, 320], when the settings are given (before any frame is read)."""
    from pvt_deploy.errors import ShapeError

    image = read_image(sample_image("chelsea"))
    with Model(cached_export(tmp_path_factory, "det"), imgsz=40) as small:  # 40 -> 64: inside the range
        assert small.predictor().preprocessor.imgsz == (64, 64)
        got = json.loads(small.predict(image, conf=0.0)[0].to_json())["detections"]
        assert got and got == json.loads(det_model.predict(image, imgsz=64, conf=0.0)[0].to_json())["detections"]
    # named as Python gives it (it said --imgsz, the CLI's option, here too)
    with pytest.raises(ShapeError, match=r"^imgsz 330x330 \(rounded up to the stride 32: 352x352\): height 352"):
        det_model.predictor(imgsz=330)


def test_a_run_that_ends_early_frees_its_pictures_without_the_garbage_collector(det_model: Model) -> None:
    """A server drops streams half way (a client disconnects) and has runs fail; each run's source
    holds its pictures, so no reference cycle may keep the run alive until Python's cyclic garbage
    collector passes by (measured before the fix: 40 abandoned streams of ten 1080p pictures each
    grew the process to 1.6 GB with the collector on)."""
    import gc
    import weakref

    from pvt_deploy.io.sources import Frame, Source

    class Pictures(Source):
        kind = "images"
        spec = "pictures"

        def __init__(self, fail: bool = False) -> None:
            self.fail = fail

        def _iter_frames(self) -> Any:
            for i in range(3):
                yield Frame(np.zeros((40, 40, 3), np.uint8), i, f"p{i}.jpg")
            if self.fail:
                raise OSError("the disk went away")

    def abandoned(threaded: bool) -> list[weakref.ref[Any]]:
        src = Pictures()
        gen = det_model.predict(src, stream=True, threaded=threaded)
        return [weakref.ref(src), weakref.ref(next(iter(gen)))]  # the generator is dropped here

    def closed(threaded: bool) -> list[weakref.ref[Any]]:
        src = Pictures()
        gen = det_model.predict(src, stream=True, threaded=threaded)
        result = next(iter(gen))
        gen.close()  # type: ignore[union-attr]
        return [weakref.ref(src), weakref.ref(result)]

    def thrown(threaded: bool) -> list[weakref.ref[Any]]:  # an error thrown in by the caller ends the run
        src = Pictures()
        gen = det_model.predict(src, stream=True, threaded=threaded)
        result = next(iter(gen))
        with pytest.raises(ValueError, match="client went away"):
            gen.throw(ValueError("client went away"))  # type: ignore[union-attr]
        return [weakref.ref(src), weakref.ref(result)]

    def failed(threaded: bool) -> list[weakref.ref[Any]]:
        src = Pictures(fail=True)
        try:
            det_model.predict(src, threaded=threaded)
        except OSError:
            pass
        else:
            raise AssertionError("the source's error was not raised")
        return [weakref.ref(src)]

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for run in (abandoned, closed, thrown, failed):
            for threaded in (False, True):
                refs = run(threaded)
                assert all(ref() is None for ref in refs), f"{run.__name__}, threaded={threaded}: still alive"
    finally:
        if enabled:
            gc.enable()


@pytest.mark.parametrize("kind", ["det", "seg", "cls"])
def test_threads_sharing_a_model_get_the_results_a_sequential_run_gets(tmp_path_factory: pytest.TempPathFactory,
                                                                       kind: str) -> None:
    """README: one Model may be shared by server threads, each call returning its own results, checked
    against sequential runs result by result. Six calls at once (pictures of six sizes, alone, as a
    list and as batches of two and three, which run as two shards on the ONNX Runtime shard pool
    beside the other calls' shards): every result's numbers, path and shape are its own picture's."""
    import threading

    rng = np.random.default_rng(7)
    sizes = [(96, 128), (128, 96), (64, 64), (100, 150), (120, 80), (72, 200)]
    pictures = [rng.integers(0, 255, (*hw, 3), np.uint8) for hw in sizes]
    calls: list[tuple[Any, dict[str, int]]] = [
        (pictures[i], {}) if i % 3 == 0 else (pictures[i:i + 2], {"batch": 2}) if i % 3 == 1
        else (pictures[i - 2:i + 1], {"batch": 3}) for i in range(6)]

    def numbers(results: list[Any]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for r in results:
            values = ((r.boxes.xyxy, r.boxes.conf, r.boxes.cls) if r.task == "detect" else
                      (r.mask,) if r.task == "segment" else (r.probs.data,))
            out.append((r.path, r.orig_shape, *values))
        return out

    with Model(cached_export(tmp_path_factory, kind), threads=2) as model:
        sequential = [numbers(model.predict(source, imgsz=128, **kw)) for source, kw in calls]
        together: list[Any] = [None] * len(calls)
        start = threading.Barrier(len(calls), timeout=60)

        def call(i: int) -> None:
            source, kw = calls[i]
            start.wait()
            together[i] = numbers(model.predict(source, imgsz=128, **kw))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    for i, (got, want) in enumerate(zip(together, sequential, strict=True)):
        assert got is not None and len(got) == len(want), f"call {i}"
        for g, w in zip(got, want, strict=True):
            assert g[:2] == w[:2], f"call {i}"
            for a, b in zip(g[2:], w[2:], strict=True):
                assert a.shape == b.shape and np.allclose(a, b, atol=1e-4), f"call {i}: {w[:2]}"
    assert {w[1] for n in sequential for w in n} == set(sizes)  # six shapes: a picture's result in another call shows


def test_each_thread_sees_the_summary_of_its_own_run(det_model: Model) -> None:
    """Server threads sharing one Model: ``last_summary`` is the calling thread's last run (it was
    whichever run finished last, so a thread read another's frame count and times)."""
    import threading

    picture = read_image(sample_image("coffee"))
    done = threading.Barrier(2, timeout=60)
    seen: dict[int, int | None] = {}

    def run(n: int) -> None:
        det_model.predict([picture] * n)
        done.wait()  # both runs are over before either reads its summary
        summary = det_model.last_summary
        seen[n] = summary.frames if summary is not None else None

    threads = [threading.Thread(target=run, args=(n,)) for n in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert seen == {1: 1, 3: 3}



# A server's master loads a model and forks its workers (gunicorn --preload, a multiprocessing fork
# pool). The parent runs the model first, forks, and the child reports each step it gets through
# on stdout; the parent kills a child that stops, so a hang fails the test instead of holding it.
FORK_SCRIPT = """
import os, sys, time
import numpy as np
from pvt_deploy import Model

source, kind = sys.argv[1], sys.argv[2]
picture = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)

def numbers(results):
    r = results[0]
    return r.probs.data if kind == "torch" else np.concatenate([r.boxes.xyxy.ravel(), r.boxes.conf])

if kind == "torch":
    model = Model(source, imgsz=64)
    run = lambda m: m.predict(picture)
else:  # two threads, a batch of two: the batch runs as two shards on the shard pool's thread
    model = Model(source, threads=2)
    run = lambda m: m.predict([picture, picture], batch=2)
reference = numbers(run(model))
pid = os.fork()
if pid == 0:
    same = np.allclose(numbers(run(model)), reference, atol=1e-5)
    print("predicted in the child", same, flush=True)
    if kind == "torch":
        again = Model(source, imgsz=64)
        print("loaded in the child", np.allclose(numbers(run(again)), reference, atol=1e-5), flush=True)
    model.close()
    print("closed in the child", flush=True)
    os._exit(0)
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    if os.waitpid(pid, os.WNOHANG)[0]:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("the child hung", flush=True)
"""


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here (Windows)")


def run_forked(tmp_path: Path, source: str, kind: str) -> list[str]:
    import subprocess
    import sys

    script = tmp_path / "fork_worker.py"
    script.write_text(FORK_SCRIPT)
    done = subprocess.run([sys.executable, str(script), source, kind], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


@needs_fork
def test_a_pytorch_model_runs_in_a_process_forked_after_it_ran(tmp_path: Path) -> None:
    """A PyTorch model loaded and run, then the process forked (gunicorn --preload): the worker's first
    call hung for ever (GNU OpenMP's team of the forking thread is its parent's), and so did loading
    another model in the worker. Now both run, at the parent's thread count, with the parent's numbers."""
    assert run_forked(tmp_path, "pvt_v2_b0-cls", "torch") == [
        "predicted in the child True", "loaded in the child True", "closed in the child"]


@needs_fork
def test_an_onnx_runtime_model_runs_and_closes_in_a_forked_process(tmp_path: Path,
                                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """An ONNX Runtime model used in a forked child: a batch split into shards waited for ever on the
    parent's shard thread, and close() waited for ever on the parent's ORT worker threads."""
    source = str(cached_export(tmp_path_factory, "det"))
    assert run_forked(tmp_path, source, "onnx") == ["predicted in the child True", "closed in the child"]


# A process forks while a predict(stream=True, save=True) generator is part way (a fork pool started
# beside it): the child has a copy of the generator but none of its threads, nor any claim on the
# parent's output files.
FORKED_GENERATOR_SCRIPT = """
import gc, json, os, sys
from pvt_deploy import Model
from pvt_deploy.errors import InputError

clip, out = sys.argv[1], sys.argv[2]
gen = Model("pvt_v2_b0-cls", imgsz=64).predict(clip, stream=True, save=True, save_json=True, save_dir=out)
next(gen)
pid = os.fork()
if pid == 0:
    import signal
    signal.alarm(30)  # a child that hangs (closing its copy of the decoder did) ends, and the test goes on
    try:
        next(gen)
    except InputError as e:
        print("child:", e, flush=True)
    except BaseException as e:
        print("child:", type(e).__name__, e, flush=True)
    gen.close()
    del gen
    gc.collect()  # the run's own generator is collected here, as at a child's exit
    os._exit(0)
status = os.waitpid(pid, 0)[1]
print("child ended", "by itself" if os.WIFEXITED(status) else f"by signal {os.WTERMSIG(status)}", flush=True)
print("parent:", 1 + sum(1 for _ in gen), "frames", flush=True)
print(sorted(os.listdir(out)), len(open(os.path.join(out, "predictions.jsonl")).read().splitlines()), flush=True)
"""


@needs_fork
def test_a_stream_generator_forked_part_way_stays_the_parents(tmp_path: Path,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    """Going on in the child failed with 'pipeline threads ended without a result or an error', and its
    copy, closed or collected there, finished the parent's files: its mp4 renamed with one frame, and
    the parent then ended with 'cannot write outputs to ...: No such file or directory' (or the child
    hung, closing its copy of the decoder the parent's decode thread was inside). The child is now told
    in one line and keeps its copy unfinished; the parent writes every frame."""
    import subprocess
    import sys

    script = tmp_path / "forked_generator.py"
    script.write_text(FORKED_GENERATOR_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(cached_clip(tmp_path_factory)), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    child, ended, parent, files = done.stdout.splitlines()
    assert "cannot go on in another one (a forked child): call predict in this process" in child
    assert ended == "child ended by itself"  # not by the alarm (collecting the parent's frames hung in FFmpeg's scaler threads)
    assert parent == "parent: 10 frames"
    assert files == "['clip.mp4', 'predictions.jsonl'] 10"
    with av.open(str(tmp_path / "out" / "clip.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_a_model_sent_to_another_process_is_refused_in_one_line(det_model: Model) -> None:
    """``ProcessPoolExecutor().submit(work, model)`` or a spawn Pool pickles its arguments: it failed
    with "cannot pickle 'InferenceSession' object" deep in a multiprocessing traceback."""
    import copy
    import pickle

    for send in (pickle.dumps, copy.deepcopy):
        with pytest.raises(InputError, match="cannot be pickled or copied.*load the model in each process"):
            send(det_model)


USER_SCRIPT = '''
from __future__ import annotations
import numpy as np
from pvt_deploy import Model
from pvt_deploy.tasks.results import Result

img = np.zeros((64, 64, 3), np.uint8)
with Model("exports/pvt_small", device=0, imgsz="480,640") as m:
    results = m.predict(["a.jpg", img], conf=0.3, classes=["person", 2], imgsz=(480, 640))
    first: Result = results[0]
    print(len(results), first.to_json(), m.predict(img, classes="person")[0].boxes)
    print(m.predict(img, classes=2), m.predict(img, classes=np.array([0, 2])), m(img)[0].probs)
    for r in m.predict("video.mp4", stream=True):
        print(r.boxes.cpu().numpy().xyxy if r.boxes is not None else r.mask)
    gen = m.predict("video.mp4", stream=True)
    gen.close()
    either = m.predict("video.mp4", stream=bool(len(img)))
    print(either, m.predictor(classes=["person"], imgsz="480,640"))
    wrong: int = m.predict(img)[0]
'''


def test_the_public_api_types_as_readme_uses_it(tmp_path: Path) -> None:
    """``mypy --strict`` on a user script written as README's "Python API" section reads: its one
    error is the deliberate one. ``from pvt_deploy import Model`` was ``Any`` to a type checker (a
    lazy module attribute), so nothing was checked at all; once it was not, a list from ``predict``
    was not indexable, a stream's ``close()`` unknown, and ``classes=["person", 2]`` /
    ``imgsz="480,640"`` were refused."""
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    config = tmp_path / "mypy.ini"  # the user's errors only; the package found from any working folder
    # torch is not read (its names are Any): no type of the API the script uses is torch's, and reading
    # torch's stubs was 12 of mypy's 16 s of CPU on a cold cache (CI's); the errors are the same
    config.write_text(f"[mypy]\nstrict = True\nfollow_imports = silent\nmypy_path = {root}\n"
                      "[mypy-torch.*]\nfollow_imports = skip\n")
    # In a child process: mypy run in-process keeps its whole program state (3 million objects on a cold
    # cache), and every later gc.collect() of the test session paid for them (2.5 s each; bench calls it
    # twice per backend)
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
                           str(root / ".mypy_cache" / "api"), "--no-error-summary", str(script)],
                          capture_output=True, text=True, check=False)
    stdout, stderr = done.stdout, done.stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    wrong = USER_SCRIPT.splitlines().index('    wrong: int = m.predict(img)[0]') + 1
    assert len(errors) == 1 and f"user.py:{wrong}: error: Incompatible types" in errors[0], stdout + stderr
    assert 'expression has type "Result"' in errors[0]


def test_the_predictor_runs_pictures_as_one_batch(det_model: Model) -> None:
    """``Model.predictor()`` is the batch-level API; called with pictures as ``predict`` takes them it
    raised ``AttributeError: 'numpy.ndarray' object has no attribute 'image'``. Now a list of arrays
    and PIL images runs as one batch, with ``predict``'s results; a lone array is one picture."""
    from PIL import Image

    coffee = read_image(sample_image("coffee"))
    astronaut = np.asarray(Image.open(sample_image("astronaut")).convert("RGB"))
    pictures = [coffee[::2, ::2], Image.fromarray(astronaut)]
    predictor = det_model.predictor(conf=0.06)
    batch = predictor(pictures)
    expected = det_model.predict(pictures, conf=0.06, batch=2, same_size=False)  # one batch too: padded alike
    assert [r.orig_shape for r in batch] == [(200, 300), astronaut.shape[:2]] and [r.path for r in batch] == [
        "image0.jpg", "image1.jpg"]
    for got, want in zip(batch, expected, strict=True):
        assert len(got.boxes) == len(want.boxes) > 0 and (got.boxes.cls == want.boxes.cls).all()
        np.testing.assert_allclose(got.boxes.xyxy, want.boxes.xyxy, atol=1e-3)
    (alone,) = predictor(coffee)
    assert alone.orig_shape == (400, 600) and alone.speed["inference"] > 0
    with pytest.raises(InputError, match="HxW, HxWx3 or HxWx4"):
        predictor([np.zeros((0, 8, 3), np.uint8)])


def test_a_source_given_twice_fails_instead_of_hanging(det_model: Model, clip: Path) -> None:
    """An opened Source is used up (and closed) by its run. Passed to predict again, the decode
    thread died on "source ... is closed" with a traceback on stderr and the caller waited for its
    frames for ever; now the caller gets that InputError, and no pipeline thread is left."""
    import threading

    from pvt_deploy.io.sources import open_source

    source = open_source(str(clip))
    assert source.frames is not None and len(det_model.predict(source, imgsz=64)) == source.frames
    before = set(threading.enumerate())
    outcome: list[BaseException | int] = []

    def again() -> None:
        try:
            outcome.append(len(det_model.predict(source, imgsz=64)))
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome.append(e)

    caller = threading.Thread(target=again, daemon=True)
    caller.start()
    caller.join(60)
    assert not caller.is_alive(), "predict on a used source hung"
    assert isinstance(outcome[0], InputError) and "is closed" in str(outcome[0])
    assert not [t.name for t in set(threading.enumerate()) - before if t.name.startswith("pvt-deploy")]


def test_a_closed_model_refuses_before_it_opens_the_source_or_the_outputs(tmp_path_factory: pytest.TempPathFactory,
                                                                         clip: Path, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """After ``close()`` a call raises InputError ("… is closed", README). It did, but only from the
    runtime's first batch: the source was opened first (a video's decode thread started, a stream
    connected; a missing file said 'no such file', not that the model was closed), the output folder
    made, and the writer warned 'predictions_coco.json: not written (the run did not complete)'."""
    with Model(cached_export(tmp_path_factory, "det")) as m:
        pass
    caplog.clear()  # the export's own warnings, where this test made it
    out = tmp_path / "out"
    for source in (str(clip), str(tmp_path / "missing.jpg"), np.zeros((32, 32, 3), np.uint8)):
        with pytest.raises(InputError, match=r"^Model\('pvt_v2_b0'\) is closed"):
            m.predict(source, save=True, save_json=True, save_dir=out)
        with pytest.raises(InputError, match="is closed"):
            next(iter(m.predict(source, stream=True)))
    with pytest.raises(InputError, match="is closed"):
        m.predictor()
    assert not out.exists() and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_an_empty_source_is_refused_instead_of_running_the_current_folder(det_model: Model, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict("")`` (an unset variable, a blank line of a config; ``pvt-deploy infer ""`` too) read
    the empty path as the current folder (``Path("")`` is ``.``) and ran every image in it."""
    (tmp_path / "coffee.jpg").write_bytes(sample_image("coffee").read_bytes())
    monkeypatch.chdir(tmp_path)
    for blank in ("", "  "):
        with pytest.raises(InputError, match="the source is an empty name"):
            det_model.predict(blank)
    assert [r.path for r in det_model.predict(".")] == ["coffee.jpg"]  # the folder, when it is asked for


def test_arrays_whose_values_are_not_pixels_are_refused(det_model: Model) -> None:
    """A normalised tensor ((x/255 - mean) / std: -2.1..2.6), a centred one, NaN, or 16-bit values in
    an int32 or float array were clipped into a picture without a word: a black or white one, and
    detections of nothing. Pixels are 0..1 or 0..255 floats, 0..255 integers or uint16."""
    image = read_image(sample_image("chelsea"))[::4, ::4]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    nan = image.astype(np.float32)
    nan[0, 0, 0] = np.nan
    inf = image / 255.0
    inf[1, 1, 1] = np.inf
    noisy = image / 255.0
    noisy[image == 0] = -1e-7  # rounding noise below 0 is still a pixel
    ringing = image / 255.0
    ringing[image == 0] = -0.04  # and so is a bicubic resize's dip below 0 (the picture's black)
    for bad, says in [((image / 255.0 - mean) / std, r"values lie in -2\.\d+\.\.1\.\d+, not 0\.\.1 or 0\.\.255"),
                      (image.astype(np.float32) - 128, r"values lie in -128\.\.87, not 0\.\.1 or 0\.\.255"),
                      (image.astype(np.float32) * 257, r"values lie in 0\.\.55255, not 0\.\.1 or 0\.\.255"),
                      (nan, "NaN or infinite values"), (inf, "NaN or infinite values"),
                      (image.astype(np.int32) * 257, r"int32 picture's values lie in 0\.\.55255, not 0\.\.255"),
                      (image.astype(np.int16) - 128, r"int16 picture's values lie in -128\.\.87, not 0\.\.255")]:
        for given in (bad, [image, bad]):
            with pytest.raises(InputError, match=says):
                det_model.predict(given)
    # pixels in every form the README names still give the uint8 picture
    for same in (image / 255.0, image.astype(np.float32), image.astype(np.int64), image.astype(np.uint16) * 257,
                 noisy, ringing):
        assert np.abs(det_model.predict(same)[0].orig_img.astype(int) - image).max() <= 1


def test_images_none_of_which_can_be_read_are_an_error_as_one_is(det_model: Model, tmp_path: Path) -> None:
    """``predict("broken.jpg")`` raises, but ``predict(["broken.jpg"])`` (or a folder of broken files)
    returned ``[]`` with only a log line: a server got "no detections" for pictures it never saw.
    ``pvt-deploy infer`` exits 2 for it ("nothing decodable"); one unreadable file among others is still
    skipped with a warning."""
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    broken = [str(tmp_path / "broken.jpg"), str(tmp_path / "empty.png")]
    for source in (broken[:1], broken, str(tmp_path), str(tmp_path / "*.*")):
        with pytest.raises(InputError, match=r"no images could be read from .* \((1 unreadable image|2 unreadable images) skipped\)"):
            det_model.predict(source)
        with pytest.raises(InputError, match="no images could be read"):
            list(det_model.predict(source, stream=True))
    kept = det_model.predict([*broken, str(sample_image("coffee"))])
    assert len(kept) == 1 and det_model.last_summary.skipped == 2
    assert det_model.predict([]) == []  # nothing asked for is not a picture that could not be read


def test_a_size_pytorch_has_no_memory_for_is_refused_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model('pvt_v2_b0-cls').predict(img, imgsz=5000) ended in 'PyTorch failed: ... you tried to allocate
    152100000000 bytes' (a failure of the tool, and where the allocation is granted a process the kernel
    kills): its attention grows with the square of the pixels. The estimate refuses it first, naming the
    setting as Python does and the size that fits, which then runs."""
    import re

    from pvt_deploy.errors import ShapeError
    from pvt_deploy.utils import cpu

    model = Model("pvt_v2_b0-cls")
    picture = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with pytest.raises(ShapeError, match=r"^imgsz 8192x8192 at batch 1 needs about 2,208 GB for PyTorch's largest "
                                         r"attention and the rest of its forward pass, more than the .* GB free in this machine's memory \(pass imgsz \d+ or less\)$"):
        model.predict(picture, imgsz=8192)  # 2.2 TB: more than any machine here has, refused before it runs
    monkeypatch.setattr(cpu, "available_memory", lambda: 100_000_000)  # 100 MB free: 1024x1024 needs 738 MB
    with pytest.raises(ShapeError, match=r"imgsz 1024x1024 at batch 2 needs about 1.4 GB .* more than the 0.1 GB "
                                         r"free .* \(pass imgsz (\d+) or less or a smaller batch\)$"):
        model.predict([picture, picture], imgsz=1024, batch=2)
    with pytest.raises(ShapeError, match=r"\(pass imgsz (\d+) or less\)$") as refused:
        model.predict(picture, imgsz=1024)
    fits = int(re.findall(r"pass imgsz (\d+)", str(refused.value))[0])
    assert fits == 384 and model.backend.memory_needed(1, fits, fits) <= 100_000_000 < model.backend.memory_needed(1, fits + 32, fits + 32)
    assert model.predict(picture, imgsz=fits)[0].probs is not None  # the size it names runs
    with pytest.raises(ShapeError, match="1024x1024 at batch 1 needs"):  # the backend itself, fed directly
        model.backend.infer({"images": np.zeros((1, 3, 1024, 1024), np.float32)})


def test_boxes_forms_are_ultralytics_by_hand() -> None:
    """xywh is (centre x, centre y, width, height); the normalised forms divide x by the width and y by
    the height of orig_shape (H, W) -- a 100x200 picture, so a swap shows."""
    from pvt_deploy.tasks.results import Boxes

    b = Boxes(np.array([[10, 20, 50, 80]], np.float32), np.array([0.9], np.float32), np.array([3]),
              ("a",) * 4, (100, 200))
    np.testing.assert_allclose(b.xywh, [[30, 50, 40, 60]])
    np.testing.assert_allclose(b.xyxyn, [[0.05, 0.2, 0.25, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(b.xywhn, [[0.15, 0.5, 0.2, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(b.data, [[10, 20, 50, 80, 0.9, 3]], rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Result.save_txt / save_crop: YOLO label files and crops (Ultralytics' names)
# --------------------------------------------------------------------------------------------------


def _three_boxes(image: np.ndarray, names: list[str]) -> Any:
    from pvt_deploy.tasks.results import Boxes, Result

    xyxy = np.array([[10.4, 20.6, 50.2, 80.9], [-5.5, 150.2, 40.0, 230.0], [100, 100, 120, 130],
                     [310, 10, 330, 20]], np.float32)
    boxes = Boxes(xyxy, np.array([0.9, 0.8, 0.1, 0.7], np.float32), np.array([1, 1, 0, 2]), names,
                  image.shape[:2])
    return Result("detect", image, names=names, boxes=boxes, draw_conf=0.25)  # the 0.1 box is not drawn


def test_save_txt_writes_yolo_lines_of_the_drawn_boxes_normalised_by_the_original_size(tmp_path: Path) -> None:
    r = _three_boxes(np.zeros((200, 300, 3), np.uint8), ["cat", "traffic light", "dog"])
    rows = [line.split() for line in r.save_txt(tmp_path / "a.txt").read_text().splitlines()]
    kept = r.boxes[r.boxes.conf >= 0.25]
    assert [int(row[0]) for row in rows] == [1, 1, 2] and all(len(row) == 5 for row in rows)
    for row, (x1, y1, x2, y2) in zip(rows, kept.xyxy.tolist(), strict=True):
        expected = [(x1 + x2) / 2 / 300, (y1 + y2) / 2 / 200, (x2 - x1) / 300, (y2 - y1) / 200]
        assert [float(v) for v in row[1:]] == pytest.approx(expected, abs=1e-6)
        assert all(len(v.split(".")[1]) == 6 for v in row[1:])
    scored = [line.split() for line in r.save_txt(tmp_path / "b.txt", save_conf=True).read_text().splitlines()]
    assert [row[:5] for row in scored] == rows and [float(row[5]) for row in scored] == pytest.approx([0.9, 0.8, 0.7])
    r.boxes = r.boxes[r.boxes.conf > 0.95]  # nothing: an empty file, a YOLO dataset's background picture
    assert r.save_txt(tmp_path / "c.txt").read_bytes() == b""
    from pvt_deploy.tasks.results import Probs, Result

    every = np.array([0.05, 0.4, 0.1, 0.2, 0.15, 0.02, 0.08], np.float32)
    top = np.argsort(-every)[:6]
    names = [f"class {i}" for i in range(7)]  # a name with a space: the rest of the line
    probs = Result("classify", np.zeros((8, 8, 3), np.uint8), names=names,
                   probs=Probs(top, every[top], names, every))
    lines = probs.save_txt(tmp_path / "p.txt").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [names[i] for i in top[:5]]
    values = [float(line.split(" ", 1)[0]) for line in lines]
    assert values == sorted(values, reverse=True) and sum(values) <= 1 and values[0] == pytest.approx(0.4)
    seg = Result("segment", np.zeros((4, 4, 3), np.uint8), names=["a"], mask=np.zeros((4, 4), np.int32))
    with pytest.raises(InputError, match="save_mask"):
        seg.save_txt(tmp_path / "s.txt")
    assert not (tmp_path / "s.txt").exists()


def test_save_crop_cuts_each_drawn_box_from_the_original_rounded_out_and_clipped(tmp_path: Path) -> None:
    picture = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    r = _three_boxes(picture, ["cat", "a/../b", "dog"])
    r.plot(line_width=4)  # drawing makes no difference: crops are of the original picture
    written = r.save_crop(tmp_path / "crops", "shot.png")
    # the box outside the picture has no pixel left: skipped; the two of class 1 are shot and shot_1
    assert written == [tmp_path / "crops" / "a_.._b" / "shot.png", tmp_path / "crops" / "a_.._b" / "shot_1.png"]
    for path, (y1, y2, x1, x2) in zip(written, [(20, 81, 10, 51), (150, 200, 0, 40)], strict=True):
        crop = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(crop, picture[y1:y2, x1:x2])
    again = r.save_crop(tmp_path / "crops", "shot.png")  # an earlier call's files are not replaced
    assert [p.name for p in again] == ["shot_2.png", "shot_3.png"]
    jpg = r.save_crop(tmp_path / "j", "frame.mp4")  # no picture type: JPEG
    assert [p.name for p in jpg] == ["frame.jpg", "frame_1.jpg"] and cv2.imread(str(jpg[0])).shape == (61, 41, 3)
    grey = _three_boxes(picture[..., 0].copy(), ["cat", "b", "dog"])  # a grey picture (IndexError before)
    written = grey.save_crop(tmp_path / "grey", "g.png")
    assert np.array_equal(cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED), picture[20:81, 10:51, 0])
    from pvt_deploy.tasks.results import Result

    for task, kwargs in (("classify", {}), ("segment", {"mask": np.zeros((4, 4), np.int32)})):
        with pytest.raises(InputError, match="no boxes"):
            Result(task, np.zeros((4, 4, 3), np.uint8), **kwargs).save_crop(tmp_path / "x")


def test_save_crop_numbers_the_crops_of_each_class_folder_on_their_own(tmp_path: Path) -> None:
    """The first crop of a class was named shot_2.png when two crops of another class came before it: the
    names given out were shared by every class folder."""
    r = _three_boxes(np.zeros((200, 300, 3), np.uint8), ["cat", "dog", "bird"])
    r.draw_conf = None  # the 0.1 box of class 0 too
    written = r.save_crop(tmp_path, "shot.png")
    assert [str(p.relative_to(tmp_path)) for p in written] == ["dog/shot.png", "dog/shot_1.png", "cat/shot.png"]


def test_predict_writes_labels_and_crops_and_refuses_them_where_the_task_has_none(
        det_model: Model, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    picture = read_image(sample_image("coffee"))
    (r,) = det_model.predict(picture, conf=0.07, save_dir=tmp_path, save_conf=True, save_crop=True, line_width=2)
    assert (tmp_path / "labels" / "image0.txt").read_text() == r.save_txt(tmp_path / "x.txt", save_conf=True).read_text()
    assert len(r.shown_boxes()) > 0 and len(list((tmp_path / "crops").rglob("*.jpg"))) == len(r.shown_boxes())
    assert not (tmp_path / "image0.jpg").exists()  # save=False: labels and crops only
    with pytest.raises(InputError, match="line_width must be an integer >= 1"):
        det_model.predict(picture, line_width=0)
    with pytest.raises(InputError, match="need save_dir"):
        det_model.predict(picture, save_txt=True)
    with Model(cached_export(tmp_path_factory, "seg")) as seg:
        with pytest.raises(InputError, match="save_txt writes YOLO labels .* class maps are save_mask's"):
            seg.predict(picture, save_txt=True, save_dir=tmp_path / "seg")
        with pytest.raises(InputError, match="save_crop cuts out detected boxes; a segment model has none"):
            seg.predict(picture, save_crop=True, save_dir=tmp_path / "seg")
    assert not (tmp_path / "seg").exists()


def test_a_label_file_that_cannot_be_written_is_the_writers_one_line_error(
        det_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pvt_deploy.utils import files

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    (tmp_path / "labels").write_text("a file where the labels folder goes: a name taken, the run's is labels_1")
    monkeypatch.setattr(files, "atomic_write_bytes", read_only)
    with pytest.raises(InputError, match=f"^cannot write outputs to {re.escape(str(tmp_path))}: Read-only file system$"):
        det_model.predict(read_image(sample_image("coffee")), save_dir=tmp_path, save_txt=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels"]  # nothing else, nothing partial


def test_label_and_crop_files_of_a_long_stream_are_counted_per_folder_not_kept(tmp_path: Path) -> None:
    """A stream labelled for days: the writer listed every label and crop file in its outputs, and its
    name picker kept every name given out (~250 bytes a frame, hundreds of MB a day). Now the outputs name
    labels/ and crops/ once, files_in counts their files, and the names given out are not kept."""
    import pickle

    from pvt_deploy.tasks.pipeline import ResultWriter

    frames = 60
    writer = ResultWriter(tmp_path / "run", task="detect", names=["cat", "traffic light", "dog"], save=False,
                          save_txt=True, save_crop=True)
    with writer:
        for i in range(frames):
            r = _three_boxes(np.full((200, 300, 3), i, np.uint8), ["cat", "traffic light", "dog"])
            r.path, r.frame = "cam.mp4", i
            writer.write(r)
            if i == 1:
                held = len(pickle.dumps(writer._free_names.__dict__))  # what the name picker holds
    labels, crops = tmp_path / "run" / "labels", tmp_path / "run" / "crops"
    assert writer.outputs == [labels, crops]
    assert writer.files_in == {labels: frames, crops: 2 * frames}  # 3 drawn boxes a frame, one outside it
    assert len(list(labels.iterdir())) == frames and sum(1 for _ in crops.rglob("*.jpg")) == 2 * frames
    assert sorted(p.name for p in (crops / "traffic_light").iterdir())[:3] == ["cam_0.jpg", "cam_0_1.jpg", "cam_1.jpg"]
    now = len(pickle.dumps(writer._free_names.__dict__))
    # the name picker holds no more after 60 frames than after 2 (its last stem per folder: a digit more)
    assert now <= held + 8, (held, now)


def test_a_full_disk_mid_frame_leaves_no_file_of_that_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills at a frame's second crop: its picture, label file and first crop were left, under
    final names, beside the whole frames before it, as if it had been recorded with one box. The failed
    frame's files go; the frames before keep theirs."""
    import errno

    from pvt_deploy.io import sinks
    from pvt_deploy.tasks.pipeline import ResultWriter

    real, crops_written = sinks.write_named, []

    def full_at_the_fifth_crop(data: Any, namer: Any, directory: Any, stem: str, suffix: str) -> Path:
        if Path(directory).parent.name == "crops":  # crops are written by write_named (since 24cd2d8)
            if len(crops_written) == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            crops_written.append(directory)
        return real(data, namer, directory, stem, suffix)

    monkeypatch.setattr(sinks, "write_named", full_at_the_fifth_crop)
    names = ["cat", "traffic light", "dog"]
    writer = ResultWriter(tmp_path, task="detect", names=names, save_txt=True, save_crop=True)
    with pytest.raises(InputError, match="No space left on device"), writer:
        for i in range(5):  # 2 crops a picture (3 drawn boxes, one outside it): the 5th is picture 2's first
            r = _three_boxes(np.full((200, 300, 3), 40 * i, np.uint8), names)
            r.path = str(tmp_path / "in" / f"p{i}.png")
            writer.write(r)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["p0.png", "p1.png"]
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["p0.txt", "p1.txt"]
    assert sorted(p.name for p in (tmp_path / "crops").rglob("*.jpg")) == ["p0.jpg", "p0_1.jpg", "p1.jpg", "p1_1.jpg"]
    assert writer.files_in == {tmp_path / "labels": 2, tmp_path / "crops": 4} and writer.results_written == 2


def test_a_run_into_a_folder_with_an_earlier_runs_labels_removes_what_a_killed_one_left_there(tmp_path: Path) -> None:
    """``kill -9`` mid-write leaves a hidden temporary label file or crop in labels/ or crops/<class>/. The
    next run wrote into those folders and so removed it; writing labels_1/ and crops_1/ it no longer
    listed them. It removes such files from every earlier run's labels*/ and crops*/<class>/ it finds."""
    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.utils.files import TEMP_GRACE_S

    torn = [tmp_path / "labels" / ".cam_7.txt.abcd1234.part.txt", tmp_path / "crops" / "dog" / ".cam_7.jpg.abcd1234.part.jpg"]
    kept = [tmp_path / "labels" / "cam_6.txt", tmp_path / "crops" / "dog" / "cam_6.jpg"]
    for path in torn + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"0 0.5")
    old = torn[0].stat().st_mtime - TEMP_GRACE_S - 1
    for path in torn:
        os.utime(path, (old, old))
    names = ["cat", "traffic light", "dog"]
    with ResultWriter(tmp_path, task="detect", names=names, save=False, save_txt=True, save_crop=True) as writer:
        r = _three_boxes(np.zeros((200, 300, 3), np.uint8), names)
        r.path, r.frame = "cam.mp4", 0
        writer.write(r)
    assert [p.exists() for p in torn + kept] == [False, False, True, True]
    assert sorted(p.name for p in (tmp_path / "labels_1").iterdir()) == ["cam_0.txt"]


def test_a_killed_runs_empty_labels_and_crops_go_at_the_next_run_and_a_running_ones_stay(tmp_path: Path) -> None:
    """A run makes its labels_N/ and crops_N/ as it starts and close() removes them where they stay empty;
    one killed (kill -9) before it wrote a label left them, and each later run moved on past them to the
    next _N, for good. A run holds a lock on its folders while it lasts: the next run removes a killed run's
    (with the torn crop and the class folder inside) before it picks its own, and keeps a running one's."""
    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.utils.files import TEMP_GRACE_S

    script = ("import sys, time\nfrom pvt_deploy.tasks.pipeline import ResultWriter\n"
              "ResultWriter(sys.argv[1], task='detect', names=['cat'], save=False, save_txt=True, save_crop=True)\n"
              "print('made', flush=True)\ntime.sleep(300)\n")

    def run_started() -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline() == "made\n"
        return process

    killed = run_started()
    killed.kill()
    killed.wait()
    running = run_started()
    try:
        torn = tmp_path / "crops" / "dog" / ".cam_7.jpg.abcd1234.part.jpg"  # the killed run's crop, half written
        torn.parent.mkdir()
        torn.write_bytes(b"\xff\xd8")
        folders = ["crops", "crops_1", "labels", "labels_1"]
        assert sorted(p.name for p in tmp_path.iterdir()) == folders
        old = torn.stat().st_mtime - TEMP_GRACE_S - 1  # made long enough ago to be locked by a running run
        for path in [torn, torn.parent, *(tmp_path / name for name in folders)]:
            os.utime(path, (old, old))
        names = ["cat", "traffic light", "dog"]
        with ResultWriter(tmp_path, task="detect", names=names, save=False, save_txt=True, save_crop=True) as writer:
            r = _three_boxes(np.zeros((200, 300, 3), np.uint8), names)
            r.path = str(tmp_path / "in" / "a.png")
            writer.write(r)
        assert sorted(p.name for p in tmp_path.iterdir()) == folders
        assert writer.files_in == {tmp_path / "labels": 1, tmp_path / "crops": 2}
        assert [p.name for p in (tmp_path / "labels").iterdir()] == ["a.txt"] and not torn.exists()
        assert sorted(p.relative_to(tmp_path / "crops").as_posix() for p in (tmp_path / "crops").rglob("*")) == \
            ["traffic_light", "traffic_light/a.jpg", "traffic_light/a_1.jpg"]  # no dog/: the killed run's
        assert not any((tmp_path / "labels_1").iterdir()) and not any((tmp_path / "crops_1").iterdir())  # running
    finally:
        running.kill()
        running.wait()


def test_two_runs_started_together_into_one_folder_keep_their_labels_and_crops_apart(tmp_path: Path) -> None:
    """Two runs on pictures (no JSON) started together with -o out --save-txt --save-crop: each found no
    labels/ yet (a run made it at its first label file), so both wrote labels/ and crops/, mixed. A run's
    labels_N/ and crops_N/ are made as their names are chosen; those left empty go at the end."""
    from pvt_deploy.tasks.pipeline import ResultWriter

    names = ["cat", "traffic light", "dog"]
    first = ResultWriter(tmp_path, task="detect", names=names, save=False, save_txt=True, save_crop=True)
    second = ResultWriter(tmp_path, task="detect", names=names, save=False, save_txt=True, save_crop=True)
    empty = ResultWriter(tmp_path, task="detect", names=names, save=False, save_txt=True, save_crop=True)
    for writer, picture in ((first, "a.png"), (second, "b.png")):
        with writer:
            r = _three_boxes(np.zeros((200, 300, 3), np.uint8), names)
            r.path = str(tmp_path / "in" / picture)
            writer.write(r)
    empty.close()  # wrote nothing: its folders go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops", "crops_1", "labels", "labels_1"]
    assert [p.name for p in (tmp_path / "labels").iterdir()] == ["a.txt"]
    assert [p.name for p in (tmp_path / "labels_1").iterdir()] == ["b.txt"]
    assert sorted(p.name for p in (tmp_path / "crops").rglob("*.jpg")) == ["a.jpg", "a_1.jpg"]
    assert sorted(p.name for p in (tmp_path / "crops_1").rglob("*.jpg")) == ["b.jpg", "b_1.jpg"]
    assert first.files_in == {tmp_path / "labels": 1, tmp_path / "crops": 2}
    assert second.files_in == {tmp_path / "labels_1": 1, tmp_path / "crops_1": 2}


def test_a_run_whose_crops_folder_cannot_be_made_leaves_no_labels_folder(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """labels/ is made, then crops/ fails (a full disk: no inode left): the run ends with its one-line error,
    and the labels/ it had just made went with it, not left empty for the next run to step past."""
    import errno

    from pvt_deploy.tasks.pipeline import ResultWriter

    real = Path.mkdir

    def no_room_for_crops(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name == "crops":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", no_room_for_crops)
    with pytest.raises(InputError, match="No space left on device"):
        ResultWriter(tmp_path, task="detect", names=["cat"], save=False, save_txt=True, save_crop=True)
    assert list(tmp_path.iterdir()) == []


def _open_fds() -> int:
    """The descriptors this process has open, counted after a collection: a file held by an object of an
    earlier test that awaits the garbage collector (in a reference cycle) would be counted on one side of a
    comparison and be gone on the other, whenever the collector happened to run in between."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors in /proc")
@pytest.mark.parametrize("error", [ValueError("a later step"), KeyboardInterrupt()])
def test_a_writer_that_fails_as_it_starts_lets_go_of_its_folders_and_their_locks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """A ResultWriter locks its labels_N/ and crops_N/ as it makes them; a failure after that other than an
    OSError (a ValueError of a later step, a Ctrl-C) left both descriptors open until the process ended (a
    server calling predict() again and again piled them up) and the two empty folders behind, each run
    after moving on to the next _N. Now the error comes through, and nothing the writer took is left."""
    from pvt_deploy.io import sinks
    from pvt_deploy.tasks.pipeline import ResultWriter

    def fails(self: Any, path: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(sinks.JsonlWriter, "__init__", fails)  # the step after the folders
    before = _open_fds()
    for _ in range(3):
        with pytest.raises(type(error)):
            ResultWriter(tmp_path, task="detect", names=["cat"], save=False, save_json=True, save_txt=True,
                         save_crop=True)
    assert _open_fds() == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors in /proc")
def test_a_writer_goes_on_without_locks_only_where_the_file_system_has_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any OSError of the lock on labels_N/ read as 'this file system has no locks', and the run went on
    without one, where a later run may take its folder for a killed run's. Only the errors that say so
    (ENOLCK: NFS without its lock service; EOPNOTSUPP, ENOSYS) let it go on unlocked; another (EIO) is the
    one-line output error, and what the writer made and opened is gone."""
    import errno

    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.utils import files

    def no_lock(code: int) -> Any:
        def flock(fd: int, *, wait: bool = True) -> bool:
            raise OSError(code, os.strerror(code))
        return flock

    names = ["cat", "traffic light", "dog"]
    monkeypatch.setattr(files, "flock", no_lock(errno.ENOLCK))
    with ResultWriter(tmp_path / "nfs", task="detect", names=names, save=False, save_txt=True) as writer:
        r = _three_boxes(np.zeros((200, 300, 3), np.uint8), names)
        r.path = "a.png"
        writer.write(r)
    assert [p.name for p in (tmp_path / "nfs" / "labels").iterdir()] == ["a.txt"]
    monkeypatch.setattr(files, "flock", no_lock(errno.EIO))
    before = _open_fds()
    with pytest.raises(InputError, match=r"^cannot write outputs to .*: Input/output error$"):
        ResultWriter(tmp_path / "io", task="detect", names=names, save=False, save_txt=True, save_crop=True)
    assert _open_fds() == before and not (tmp_path / "io").exists()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names locked files through /proc")
def test_a_picture_whose_temporary_file_cannot_be_locked_is_not_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file of an atomic write (.a.XXXXXXXX.part.png) was written unlocked after any OSError of
    its lock, where another run's sweep (remove_abandoned_temps) may take it for a killed writer's and
    delete it mid-write. Only the errors that say there are no locks (ENOLCK) let it be written unlocked;
    another (EIO) is the one-line output error, and no temporary file is left."""
    import errno
    import fcntl

    from pvt_deploy.tasks.pipeline import ResultWriter

    real = fcntl.flock

    def temporary_files_fail(code: int) -> Any:
        def flock(fd: int, operation: int) -> None:
            if ".part" in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(code, os.strerror(code))
            real(fd, operation)
        return flock

    names = ["cat", "traffic light", "dog"]
    r = _three_boxes(np.zeros((200, 300, 3), np.uint8), names)
    r.path = "a.png"
    monkeypatch.setattr(fcntl, "flock", temporary_files_fail(errno.ENOLCK))
    with ResultWriter(tmp_path / "nfs", task="detect", names=names, save=True) as writer:
        writer.write(r)
    assert [p.name for p in (tmp_path / "nfs").iterdir()] == ["a.png"]
    assert read_image(tmp_path / "nfs" / "a.png").shape == (200, 300, 3)
    monkeypatch.setattr(fcntl, "flock", temporary_files_fail(errno.EIO))
    with pytest.raises(InputError, match=r"^cannot write outputs to .*: Input/output error$"), \
            ResultWriter(tmp_path / "io", task="detect", names=names, save=True) as writer:
        writer.write(r)
    assert not (tmp_path / "io").exists(), list((tmp_path / "io").rglob("*"))


def test_many_crops_of_one_class_in_a_frame_do_not_list_the_folder_per_crop(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A crowded frame (30 people): each crop after the first in a class folder listed that folder again
    (free_path), which grows by the crops of every frame: quadratic over a long video."""
    import os as os_module

    from pvt_deploy.io import sinks
    from pvt_deploy.tasks.pipeline import ResultWriter
    from pvt_deploy.tasks.results import Boxes, Result

    listed: list[str] = []
    real = os_module.listdir
    monkeypatch.setattr(sinks.os, "listdir", lambda p=".": listed.append(str(p)) or real(p))
    n = 30
    xyxy = np.array([[i * 10, 5, i * 10 + 8, 40] for i in range(n)], np.float32)
    writer = ResultWriter(tmp_path / "run", task="detect", names=["person"], save=False, save_crop=True)
    with writer:
        for frame in range(3):
            boxes = Boxes(xyxy, np.full(n, 0.9, np.float32), np.zeros(n, np.int64), ["person"], (60, 320))
            r = Result("detect", np.full((60, 320, 3), frame, np.uint8), names=["person"], boxes=boxes, draw_conf=0.25)
            r.path, r.frame = "cam.mp4", frame
            writer.write(r)
    assert len([p for p in listed if p.endswith("person")]) == 1, listed  # the class folder, once
    crops = sorted(p.name for p in (tmp_path / "run" / "crops" / "person").iterdir())
    assert len(crops) == 3 * n and "cam_2_29.jpg" in crops and "cam_0.jpg" in crops


def test_outputs_of_a_very_long_source_name_fit_the_file_systems_limit(tmp_path: Path) -> None:
    """A 244-byte picture or video name (ext4 takes 255) plus _<frame>, _1 and .txt went past 255 bytes:
    "File name too long" stopped the run. Names are cut to 200 bytes, a whole character at a time."""
    from pvt_deploy.tasks.pipeline import ResultWriter

    long_stems = ["a" * 240, "é" * 120, "x" * 199 + "é"]  # 240 bytes, 240 bytes (2 each), 201 (é cut whole)
    names = ["cat", "traffic light", "dog"]
    for save, source, frame in ((True, ".jpg", None), (False, ".mp4", 123456)):  # pictures; a video's frames
        with ResultWriter(tmp_path / "run", task="detect", names=names, save=save, save_txt=True,
                          save_crop=True) as writer:
            for stem in long_stems:
                for _ in range(2):  # the same names again: _1
                    r = _three_boxes(np.full((200, 300, 3), 40, np.uint8), names)
                    r.path, r.frame = str(tmp_path / f"{stem}{source}"), frame
                    writer.write(r)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    # per name and write: a picture (pictures only), a label file and 2 crops (one box is outside the picture)
    assert len(files) == 3 * 2 * (1 + 1 + 2) + 3 * 2 * (1 + 2), sorted(p.name[-20:] for p in files)
    assert max(len(p.name.encode()) for p in files) <= 255
    assert any(p.name == "x" * 199 + ".jpg" for p in files)  # the é that did not fit is left out whole
    for p in files:
        p.name.encode().decode()  # whole characters
