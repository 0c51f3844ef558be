"""The video pipeline's memory fix: COCO results are spooled to disk, not held per frame.

``benchmarks/video_overhead.py`` found RSS growing 3.2 MiB per 1000 frames of a 720p video with
``--save-json`` (flat without it): ``CocoJsonWriter`` keeps every detection in memory until the
end. ``ResultWriter`` now uses a spooled writer; it must write exactly the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pvt_deploy.io.sinks import CocoJsonWriter
from pvt_deploy.tasks.pipeline import ResultWriter, _spooled_coco_writer


def _detections(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 500, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 100, (n, 2))], axis=1)
    return boxes, rng.uniform(0.05, 1, n), rng.integers(0, 80, n)


def test_spooled_writer_is_byte_identical_and_holds_nothing(tmp_path: Path) -> None:
    plain = CocoJsonWriter(tmp_path / "plain.json")
    spooled = _spooled_coco_writer(tmp_path / "spooled.json", category_ids=plain.category_ids.tolist())
    for frame in range(50):
        boxes, scores, classes = _detections(frame, frame % 7)  # includes frames without detections
        image_id = np.int64(frame) if frame % 2 else frame
        plain.add(image_id, boxes, scores, classes)
        spooled.add(image_id, boxes, scores, classes)
        assert spooled.results == []  # nothing accumulates in memory
    assert len(spooled) == len(plain) > 0
    assert spooled.close().read_bytes() == plain.close().read_bytes()


def test_spooled_writer_without_detections_writes_an_empty_list(tmp_path: Path) -> None:
    spooled = _spooled_coco_writer(tmp_path / "empty.json", category_ids=None)
    spooled.add(0, np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert spooled.close().read_text() == "[]\n"


def test_result_writer_uses_the_spooled_writer(tmp_path: Path) -> None:
    """What the pipeline writes with --save-json: rows leave memory as each frame is written, and the
    file holds every detection as COCO results (xywh, COCO's own category ids: 'stop sign' is 13,
    'toothbrush' 90, since COCO skips ids such as 12)."""
    import json

    from pvt_deploy.data import class_names
    from pvt_deploy.tasks.results import Boxes, Result

    names = list(class_names("coco"))
    empty = ResultWriter(tmp_path / "none", task="detect", names=names, save=False, save_json=True)
    empty.close()
    assert not (tmp_path / "none" / "predictions_coco.json").exists()  # a run that processed nothing writes no JSON

    writer = ResultWriter(tmp_path, task="detect", names=names, save=False, save_json=True)
    classes = np.array([0, 11, 79])
    expected = []
    try:
        for frame in range(20):
            boxes, scores, _ = _detections(frame, 3)
            boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)
            writer.write(Result("detect", np.zeros((600, 600, 3), np.uint8), "cam.mp4", names, frame=frame,
                                boxes=Boxes(boxes, scores, classes, names, (600, 600))))
            assert writer._coco.results == []  # nothing accumulates in memory
            expected += [(frame, [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], float(c), cat)
                         for b, c, cat in zip(boxes.astype(np.float64), scores, (1, 13, 90), strict=True)]
    finally:
        writer.close()
    rows = json.loads((tmp_path / "predictions_coco.json").read_text())
    assert len(rows) == len(expected) == 60
    for row, (image_id, bbox, score, category) in zip(rows, expected, strict=True):
        assert row["image_id"] == image_id and row["category_id"] == category
        assert np.allclose(row["bbox"], bbox, atol=1e-3) and abs(row["score"] - score) <= 1e-5
