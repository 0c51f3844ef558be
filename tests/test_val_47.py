"""``pvt-deploy val`` on datasets as users bring them (session 47's review): COCO files of labelling tools,
YOLO labels, class folders and label PNGs with the faults such exports have.

As in test_val, the truth is made from the export's own confident boxes (or masks), so a model scored
against it has AP (mIoU) 1.0 and each change moves the figure by an amount known here.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_run import run

from pvt_deploy.api import Model
from pvt_deploy.assets import sample_images

pytest_plugins = ["export_fixtures"]

TRUTH_SCORE = 0.15  # as test_val: the perturbed detector's top boxes on the sample photos score 0.15-0.3


@pytest.fixture(scope="module")
def det_model(det_artifact: Any) -> Model:
    with Model(str(det_artifact.folder)) as model:
        yield model


@pytest.fixture(scope="module")
def truth(det_model: Model) -> dict[str, Any]:
    """A COCO instances file (as a dict) of the sample photos whose boxes are the detector's confident ones,
    ids 1, 2, ... as COCO's own; the photos' paths under ``"paths"``."""
    images, annotations = [], []
    results = det_model.predict(sample_images())
    for image_id, r in enumerate(results, 1):
        h, w = r.orig_shape
        images.append({"id": image_id, "file_name": Path(r.path).name, "width": w, "height": h})
        for (x1, y1, x2, y2), score, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                                                strict=True):
            if score >= TRUTH_SCORE:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    assert len(annotations) >= 3 and len({a["category_id"] for a in annotations}) >= 2, annotations
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(det_model.names)]
    return {"images": images, "annotations": annotations, "categories": categories,
            "paths": [str(r.path) for r in results]}


def _coco(root: Path, truth: dict[str, Any], **changes: Any) -> Path:
    """COCO's layout under ``root`` (val2017/ beside annotations/) of ``truth`` with ``changes`` to its lists."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    for p in truth["paths"]:
        shutil.copyfile(p, root / "val2017" / Path(p).name)
    data = {k: json.loads(json.dumps(v)) for k, v in truth.items() if k != "paths"}
    data.update(changes)
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def test_annotation_ids_from_0_or_repeated_score_as_numbered_ones(
        det_model: Model, truth: dict[str, Any], tmp_path: Path) -> None:
    """COCOeval keys the boxes by annotation id and takes a match with id 0 for none: Label Studio's
    exports number annotations from 0 (AP 0.91 of the truth's own boxes), a converter that numbers each
    picture's from 1, or merges two files, repeats ids (AP 0.01). The ids are the file's to name, not
    to score by."""
    from_0 = [{**a, "id": k} for k, a in enumerate(truth["annotations"])]
    repeated = [{**a, "id": 1} for a in truth["annotations"]]
    missing = [{k: v for k, v in a.items() if k != "id"} for a in truth["annotations"]]
    for name, boxes in (("from_0", from_0), ("repeated", repeated), ("missing", missing)):
        report = det_model.val(_coco(tmp_path / name, truth, annotations=boxes))
        assert report.images == 3
        assert report.metrics["AP"] == 1.0 and report.metrics["AR100"] == 1.0, (name, report.metrics)


def test_annotations_cocoeval_cannot_score_are_said_and_a_segmentation_gives_its_box(
        det_model: Model, truth: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An annotation without a category_id was a KeyError traceback from pycocotools; one of a category the
    file does not list, or whose bbox is not 4 numbers, was dropped without a word (a box nobody has to
    find); one of no width could never be found; one with a segmentation but no bbox (polygon or RLE, as
    some converters write them) was dropped, though it is an object to find. Now: the segmentation's
    extent is its box, the others are left out with one warning that counts them."""
    c = truth["annotations"][0]["category_id"]
    n = sum(a["category_id"] == c for a in truth["annotations"])
    k = len({a["category_id"] for a in truth["annotations"]})
    coffee = 2  # the photo with no box: nothing found there
    odd = [{"image_id": 1, "bbox": [10, 10, 30, 30]},
           {"image_id": 1, "category_id": 500, "bbox": [10, 10, 30, 30]},
           {"image_id": 1, "category_id": c, "bbox": ["10", "10", "30", "30"]},
           {"image_id": 1, "category_id": c, "bbox": [10, 10, 0, 30]}]
    polygon = {"image_id": coffee, "category_id": c, "iscrowd": 0, "segmentation": [[10, 10, 50, 10, 50, 60, 10, 60]]}
    path = _coco(tmp_path / "polygon", truth, annotations=truth["annotations"] + odd + [polygon])
    with caplog.at_level(logging.WARNING):
        report = det_model.val(path)
    # the polygon is one more box of category c, which no detection finds: c's recall n/(n+1) at every IoU
    assert report.metrics["AR100"] == pytest.approx((k - 1 + n / (n + 1)) / k, abs=1e-9)
    assert (f"4 of its {len(truth['annotations']) + 5} annotations are left out: 1 without a category_id "
            "(annotation '?' of astronaut.jpg); 1 of no category it lists (annotation '?' of astronaut.jpg, "
            "category 500); 1 without a box (a bbox of 4 numbers, or a segmentation) (annotation '?' of "
            "astronaut.jpg); 1 of no width or height") in " ".join(caplog.text.split())
    # an RLE's (uncompressed, as crowd regions are written) extent is its box as the polygon's is
    rle = {**polygon, "segmentation": {"size": [400, 600], "counts": [10 * 400 + 10, 50, 350, 50, 350]}}
    path = _coco(tmp_path / "rle", truth, annotations=truth["annotations"] + [rle])
    assert det_model.val(path).metrics["AR100"] == pytest.approx((k - 1 + n / (n + 1)) / k, abs=1e-9)


def test_a_yolo_box_of_no_width_is_left_out_with_a_warning(
        det_model: Model, truth: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A YOLO line of width or height 0 (a click in the labelling tool) is a box no detection can overlap:
    it cost recall (AP 0.92 of the truth's own boxes) without a word. Left out, said, as a COCO file's."""
    for split in ("images", "labels"):
        (tmp_path / split / "val").mkdir(parents=True)
    shapes = {im["id"]: (im["width"], im["height"]) for im in truth["images"]}
    for image_id, p in enumerate(truth["paths"], 1):
        shutil.copyfile(p, tmp_path / "images" / "val" / Path(p).name)
        w, h = shapes[image_id]
        lines = [f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / w!r} {(a['bbox'][1] + a['bbox'][3] / 2) / h!r} "
                 f"{a['bbox'][2] / w!r} {a['bbox'][3] / h!r}" for a in truth["annotations"] if a["image_id"] == image_id]
        if image_id == 2:  # the photo with no box
            lines += ["42 0.5 0.5 0 0.1", "42 0.5 0.5 0.1 0.0"]
        (tmp_path / "labels" / "val" / (Path(p).stem + ".txt")).write_text("\n".join(lines) + "\n")
    data = tmp_path / "data.yaml"
    data.write_text(f"val: images/val\nnames: {json.dumps(list(det_model.names))}\n")
    with caplog.at_level(logging.WARNING):
        report = det_model.val(data)
    assert report.images == 3 and report.metrics["AP"] == 1.0 and report.metrics["AR100"] == 1.0, report.metrics
    assert "2 of a box of no width or height (no detection can overlap one) (" in " ".join(caplog.text.split())


def test_categories_of_one_name_score_as_the_one_class_and_an_id_twice_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_artifact: Any, det_model: Model, truth: dict[str, Any], tmp_path: Path) -> None:
    """A label made twice in a labelling tool (fork and Fork) is two categories of one of the model's classes:
    the class's detections were of the last, so the first's boxes were never matched (AP 0.38 of the truth's
    own boxes, 0.47 here). They are scored as one, said; a category id listed twice (whose boxes are which?) is refused."""
    c = truth["annotations"][0]["category_id"]
    name = det_model.names[c - 1]
    twin = {"id": 500, "name": name.upper()}
    moved = [{**a, "category_id": 500} if a["category_id"] == c and k % 2 else a
             for k, a in enumerate(truth["annotations"])]
    assert any(a["category_id"] == 500 for a in moved) and any(a["category_id"] == c for a in moved)
    path = _coco(tmp_path / "twin", truth, annotations=moved, categories=truth["categories"] + [twin])
    with caplog.at_level(logging.WARNING):
        report = det_model.val(path)
    assert report.metrics["AP"] == 1.0 and report.metrics["AR100"] == 1.0, report.metrics
    assert f"categories of one name are scored as one, the model's class ({name}: {c}, 500)" in caplog.text
    path = _coco(tmp_path / "twice", truth, categories=truth["categories"] + [{"id": c, "name": "spoon"}])
    code, out, err = run(monkeypatch, capsys, "val", str(path), "--model", str(det_artifact.folder))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"category id {c} is listed twice ({name} and spoon)" in " ".join(err.split())


def test_a_datasets_split_folders_are_not_taken_for_its_classes(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    """A classifier of two classes given the dataset's root (train/ and val/, each of class folders) took
    train as class 0 and val as class 1, every picture of both splits scored so, exit 0, no word. The split
    folders are refused, naming the split to give; folders of other names taken in sorted order are said."""
    import torch

    from pvt_deploy.errors import InputError
    from pvt_deploy.models import create_model

    ckpt = tmp_path / "two.pth"
    torch.save(create_model("pvt_tiny-cls", num_classes=2, seed=0).state_dict(), ckpt)
    photos = sample_images()
    root = tmp_path / "pets"
    for split in ("train", "val"):
        for k, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            shutil.copyfile(photos[k], root / split / name / photos[k].name)
    with Model(str(ckpt), names=["cat", "dog"], imgsz=64) as model:
        with pytest.raises(InputError, match=r"train, val are a dataset's splits, not class folders: give the split "
                                             rf"to measure on \({root / 'val'}\)"):
            model.val(root)
        assert model.val(root / "val").images == 2  # the split itself: its folders are the classes by name
        (root / "val" / "cat").rename(root / "val" / "kitty")
        (root / "val" / "dog").rename(root / "val" / "puppy")
        with caplog.at_level(logging.WARNING):
            assert model.val(root / "val").images == 2
    assert "class folder names differ from the model's classes; taken in sorted order (kitty -> cat, ...)" in \
        " ".join(caplog.text.split())


def test_label_values_past_the_segmenters_classes_are_said(seg_artifact: Any, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Values past the model's classes (not 255) are ignored as 255 is: label PNGs of another class list
    (16-bit ids, a dataset of more classes) were scored on what was left of them, or on nothing (every
    metric a dash), without a word. Said, with the first file and value and the ids the model takes."""
    import numpy as np
    from PIL import Image

    with Model(str(seg_artifact.folder)) as model:
        n = len(model.names)
        (tmp_path / "images").mkdir()
        (tmp_path / "labels").mkdir()
        for r in model.predict(sample_images()):
            shutil.copyfile(r.path, tmp_path / "images" / Path(r.path).name)
            label = (r.mask + 1).astype(np.uint16)  # as ADE20K's: 0 is other, class k is k + 1
            label[:8] = n + 50  # past the classes: ignored, as 255
            Image.fromarray(label).save(tmp_path / "labels" / (Path(r.path).stem + ".png"))
        with caplog.at_level(logging.WARNING):
            report = model.val(tmp_path / "images", masks=tmp_path / "labels")
        assert report.metrics["mIoU"] == 1.0 and report.metrics["aAcc"] == 1.0
        assert (f"3 of 3 labels hold values past the model's {n} classes (astronaut.png: {n + 50}; its ids are "
                f"1-{n}, 0 ignored: --reduce-zero-label): those pixels are ignored") in " ".join(caplog.text.split())
        for p in (tmp_path / "labels").iterdir():  # every value past them: nothing measured
            Image.fromarray(np.full(Image.open(p).size[::-1], 1000, np.uint16)).save(p)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            report = model.val(tmp_path / "images", masks=tmp_path / "labels", reduce_zero_label=False)
        assert all(np.isnan(v) for v in report.metrics.values())
        text = " ".join(caplog.text.split())
        assert f"(astronaut.png: 1000; its ids are 0-{n - 1})" in text
        assert "no pixel of the model's classes in the 3 labels evaluated: mIoU measures nothing" in text


def test_a_coco_file_written_on_windows_finds_its_pictures_in_subfolders(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_artifact: Any,
        det_model: Model, truth: dict[str, Any], tmp_path: Path) -> None:
    """A converter run on Windows writes file_name sub\\x.jpg: on Linux or a Mac its pictures were 'not in
    val2017/ beside it', exit 2. The backslash is the separator it is. A file_name that is no name (a number,
    empty) is one line, exit 2."""
    images = [{**im, "file_name": "set1\\" + im["file_name"]} for im in truth["images"]]
    path = _coco(tmp_path / "windows", truth, images=images)
    (path.parent.parent / "val2017" / "set1").mkdir()
    for p in truth["paths"]:
        (path.parent.parent / "val2017" / Path(p).name).rename(path.parent.parent / "val2017" / "set1" / Path(p).name)
    report = det_model.val(path)
    assert report.images == 3 and report.metrics["AP"] == 1.0
    path = _coco(tmp_path / "number", truth, images=[{**truth["images"][0], "file_name": 17}, *truth["images"][1:]])
    code, out, err = run(monkeypatch, capsys, "val", str(path), "--model", str(det_artifact.folder))
    assert code == 2 and out == "" and "Traceback" not in err
    assert "image id 1 has the file_name 17, not a file's name" in " ".join(err.split())
