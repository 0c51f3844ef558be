"""Session 48's review of val and export (CB): faults found in the code this session changed."""

from __future__ import annotations

from pathlib import Path

from pvt_deploy.evaluate import yolo_annotations


def test_yolo_label_of_a_class_nan_or_inf_is_left_out_not_a_traceback(tmp_path: Path) -> None:
    """A YOLO label line whose class is "nan" or "inf" (float() reads both) raised ValueError/OverflowError
    from int() deep in val, a traceback for one bad line; it is left out as any class that is no class id,
    counted in the run's one warning, and the file's good line is read."""
    label = tmp_path / "a.txt"
    label.write_text("nan 0.5 0.5 0.1 0.1\ninf 0.5 0.5 0.2 0.2\n-inf 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.25 0.5\n"
                     "0 nan 0.5 0.2 0.2\n")
    left_out: dict[str, list[str]] = {}
    boxes = yolo_annotations(label, 7, (100, 200), range(80), left_out)
    assert [(b["image_id"], b["category_id"], b["bbox"]) for b in boxes] == [(7, 1, [75.0, 25.0, 50.0, 50.0])]
    assert left_out == {
        "of a class that is not a class id": [f"{label} line 1: 'nan 0.5 0.5 0.1 0.1'",
                                              f"{label} line 2: 'inf 0.5 0.5 0.2 0.2'",
                                              f"{label} line 3: '-inf 0.5 0.5 0.2 0.2'"],
        "of coordinates past 0..1 (YOLO's are fractions of the picture's width and height, not pixels)":
            [f"{label} line 5: '0 nan 0.5 0.2 0.2'"]}


def test_coco_sizes_left_empty_are_not_given_as_before(tmp_path: Path) -> None:
    """A COCO file whose sizes are empty strings ("width": "", as converters write an unknown one) was read as
    sizes not given (a falsy value), its boxes scored; 6136c38's reading of sizes as numbers refused it, exit 2
    ("has the width '', not a number of pixels"). Empty, as null and 0, is not given; a size that is no number
    is still refused."""
    import json
    import shutil

    import pytest

    from pvt_deploy.assets import sample_image
    from pvt_deploy.data import class_names
    from pvt_deploy.errors import InputError
    from pvt_deploy.evaluate import _coco_dataset

    shutil.copy(sample_image("astronaut"), tmp_path / "astronaut.jpg")
    coco = {"images": [{"id": 1, "file_name": "astronaut.jpg", "width": "", "height": " "}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}]}
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(coco))
    dataset = _coco_dataset(instances, class_names("coco"), tmp_path, None)
    assert dataset.images == [tmp_path / "astronaut.jpg"]
    assert dataset.coco is not None
    assert [(im["width"], im["height"]) for im in dataset.coco["images"]] == [(None, None)]
    coco["images"][0]["width"] = "wide"
    instances.write_text(json.dumps(coco))
    with pytest.raises(InputError, match=r"has the width 'wide', not a number of pixels"):
        _coco_dataset(instances, class_names("coco"), tmp_path, None)


def test_label_maps_beside_their_pictures_are_not_scored_as_pictures(tmp_path: Path) -> None:
    """--images X --masks X (label PNGs beside their pictures, a layout 59aedd6 reads: a JPEG there is a
    picture): every label PNG was also one of the pictures, paired with itself, so val ran the model on the
    label maps and scored them as well (2 pictures of 1). Only the pictures are scored."""
    import cv2
    import numpy as np

    from pvt_deploy.evaluate import _mask_dataset

    for stem in ("a", "b"):
        assert cv2.imwrite(str(tmp_path / f"{stem}.jpg"), np.full((32, 48, 3), 90, np.uint8))
        assert cv2.imwrite(str(tmp_path / f"{stem}.png"), np.ones((32, 48), np.uint8))
    dataset = _mask_dataset(tmp_path, tmp_path, tmp_path, None, True)
    assert dataset.images == [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    assert dataset.labels == {str(tmp_path / "a.jpg"): tmp_path / "a.png", str(tmp_path / "b.jpg"): tmp_path / "b.png"}
