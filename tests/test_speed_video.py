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
    writer = ResultWriter(tmp_path, task="detect", names=[f"c{i}" for i in range(80)], save=False, save_json=True)
    try:
        assert type(writer._coco).__name__ == "SpooledCocoJsonWriter"
        assert isinstance(writer._coco, CocoJsonWriter)
    finally:
        writer.close()
    assert not (tmp_path / "predictions_coco.json").exists()  # a run that processed nothing writes no JSON
