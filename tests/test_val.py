"""``pvt-deploy val`` and ``Model.val``: COCO box AP, top-1/top-5 and mIoU on labelled datasets on disk.

The labels are made from the export's own predictions, so the exact metric is known: a model scored
against its own confident boxes has AP 1.0, and each change to the labels moves the metric by an amount
worked out here by hand (a missed box lowers that category's recall by one of its boxes; a picture in
another class folder costs one top-1 hit; relabelled pixels cost exactly their share of pixel accuracy).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_run import run
from PIL import Image

from pvt_deploy.api import Model
from pvt_deploy.assets import sample_images
from pvt_deploy.errors import InputError
from pvt_deploy.evaluate import _category_ids, segmentation_metrics

pytest_plugins = ["export_fixtures"]

TRUTH_SCORE = 0.15  # the perturbed detector's top boxes on the sample photos score 0.15-0.3 at 160 px


def _coco_dataset(root: Path, results: list[Any], names: list[str]) -> tuple[Path, dict[int, int]]:
    """COCO's layout under ``root``: val2017/ (the sample photos) and annotations/instances_val2017.json
    whose boxes are the results' boxes scoring >= TRUTH_SCORE. Returns (the JSON, boxes per category)."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations, per_category = [], [], {}
    for image_id, r in enumerate(results, 1):
        name = Path(r.path).name
        shutil.copyfile(r.path, root / "val2017" / name)
        h, w = r.orig_shape
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for (x1, y1, x2, y2), score, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                                                strict=True):
            if score >= TRUTH_SCORE:
                category = int(cls) + 1
                per_category[category] = per_category.get(category, 0) + 1
                # no "iscrowd", "area" or "id": as some labelling tools export them (COCOeval needs the first two)
                annotations.append({"image_id": image_id, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1]})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path, per_category


@pytest.fixture(scope="module")
def det_model(det_artifact: Any) -> Model:
    with Model(str(det_artifact.folder)) as model:
        yield model


@pytest.fixture(scope="module")
def coco(det_model: Model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, int]]:
    results = det_model.predict(sample_images())
    path, per_category = _coco_dataset(tmp_path_factory.mktemp("coco"), results, det_model.names)
    assert sum(per_category.values()) >= 3, per_category  # the test needs boxes to find
    return path, per_category


def test_a_detector_scored_against_its_own_confident_boxes_has_ap_one(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_artifact: Any,
        coco: tuple[Path, dict[int, int]]) -> None:
    path, _ = coco
    code, out, err = run(monkeypatch, capsys, "val", str(path), "--model", str(det_artifact.folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["task"] == "detect" and report["images"] == 3 and report["backend"] == "onnxruntime"
    assert report["metrics"]["AP"] == 1.0 and report["metrics"]["AP50"] == 1.0 and report["metrics"]["AR100"] == 1.0
    assert "val2017" in report["dataset"]  # found beside annotations/, as COCO lays it out
    # beside it, the zoo's published figure for the model and the --imgsz of its official test size
    assert report["imgsz"] == [160, 160] and report["published"] == {
        "metric": "COCO box AP", "value": 0.372, "size": "1333x800 (keep ratio)", "imgsz": "800,1333"}
    # INT8 moves scores and boxes: below 1, above 0; side by side with FP32 in one table, in percent, and
    # its difference in points
    code, out, err = run(monkeypatch, capsys, "val", str(path), "--model", str(det_artifact.folder),
                         "--precision", "fp32,int8")
    assert code == 0, err
    line = next(row for row in out.splitlines() if "AP @ IoU 0.50:0.95" in row)
    fp32, int8, delta = (float(v) for v in line.replace("│", " ").split()[-3:])
    assert fp32 == 100.0 and 0 < int8 <= 100 and delta == pytest.approx(int8 - fp32, abs=0.011), out
    assert "int8 − fp32" in out and "3 pictures of" in out and err.count("(detect) on onnxruntime") == 2
    assert "published for pvt_v2_b0 (official weights): COCO box AP 37.2 at 1333x800 (keep ratio), --imgsz 800,1333; " \
           "measured here at 160x160" in " ".join(out.split())
    code, out, err = run(monkeypatch, capsys, "val", str(path), "--model", str(det_artifact.folder),
                         "--precision", "int8,fp32", "--json")
    runs = json.loads(out)["runs"]
    assert code == 0 and [r["precision"] for r in runs] == ["int8", "fp32"] and runs[1]["metrics"]["AP"] == 1.0
    assert runs[1]["published"]["value"] == 0.372  # rounded as in a single report
    assert runs[0]["metrics"]["AP"] == pytest.approx(int8 / 100, abs=1e-4)


def test_a_precision_the_export_lacks_fails_before_any_is_measured(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    for k, picture in enumerate(sample_images()):
        (tmp_path / f"class{k}").mkdir()
        shutil.copyfile(picture, tmp_path / f"class{k}" / picture.name)
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path), "--model", str(cls_artifact.folder),
                         "--precision", "fp32,fp16")
    assert code == 2 and "no model.fp16.onnx" in err and "on onnxruntime" not in err and out == "", err


def test_a_missed_box_costs_its_category_one_box_of_recall(
        det_model: Model, coco: tuple[Path, dict[int, int]], tmp_path: Path) -> None:
    path, per_category = coco
    data = json.loads(path.read_text())
    moved = data["annotations"][0]
    moved["bbox"] = [0.0, 0.0, 1.0, 1.0]  # a box no detection overlaps
    root = tmp_path / "moved"
    shutil.copytree(path.parent.parent, root)
    (root / "annotations" / path.name).write_text(json.dumps(data))
    report = det_model.val(root / "annotations" / path.name)
    # AR100: the mean over categories of the recall at each IoU threshold; the moved box's category
    # finds n-1 of its n boxes at every threshold, the others all of theirs
    n = per_category[moved["category_id"]]
    expected = (len(per_category) - 1 + (n - 1) / n) / len(per_category)
    assert report.metrics["AR100"] == pytest.approx(expected, abs=1e-9)
    assert report.metrics["AP"] < 1.0 and report.images == 3 and report.fps > 0
    assert det_model.val(root / "annotations" / path.name, limit=1).images == 1


def test_an_ultralytics_dataset_yaml_with_yolo_labels_scores_as_its_coco_twin(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_artifact: Any, det_model: Model, tmp_path: Path) -> None:
    """coco8.yaml's layout: images/val beside labels/val, one ``class cx cy w h`` line an object (or a
    polygon, read as its bounding box), class names in the YAML. The same confident boxes as above:
    AP 1.0; a line of neither form is left out with a warning."""
    import logging

    results = det_model.predict(sample_images())
    for split in ("images", "labels"):
        (tmp_path / split / "val").mkdir(parents=True)
    for k, r in enumerate(results):
        shutil.copyfile(r.path, tmp_path / "images" / "val" / Path(r.path).name)
        h, w = r.orig_shape
        lines = []
        for (x1, y1, x2, y2), score, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                                                strict=True):
            if score < TRUTH_SCORE:
                continue
            if k == 0:  # a polygon: the box's corners
                corners = [x1 / w, y1 / h, x2 / w, y1 / h, x2 / w, y2 / h, x1 / w, y2 / h]
                lines.append(" ".join([str(int(cls)), *map(repr, corners)]))
            else:
                lines.append(f"{int(cls)} {(x1 + x2) / 2 / w!r} {(y1 + y2) / 2 / h!r} {(x2 - x1) / w!r} "
                             f"{(y2 - y1) / h!r}")
        label = tmp_path / "labels" / "val" / (Path(r.path).stem + ".txt")
        if k == 1:
            lines.append("3 0.5 0.5")
            odd = f"{label} line {len(lines)}: '3 0.5 0.5'"
        label.write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(det_model.names))
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path}\nval: images/val\nnames:\n{names}\n")
    with caplog.at_level(logging.WARNING):
        code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(det_artifact.folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 3 and report["metrics"]["AP"] == 1.0 and report["metrics"]["AR100"] == 1.0
    assert f"1 neither 'class cx cy w h' nor a polygon ({odd})" in " ".join(caplog.text.split())


def test_categories_match_by_name_else_by_id_order_else_refused() -> None:
    names = ["person", "bicycle", "car"]
    by_name = [{"id": 7, "name": "Car"}, {"id": 3, "name": "person"}]
    assert _category_ids(by_name, names, Path("x.json")) == [3, -1, 7]
    by_order = [{"id": 9, "name": "c"}, {"id": 2, "name": "a"}, {"id": 5, "name": "b"}]
    assert _category_ids(by_order, names, Path("x.json")) == [2, 5, 9]
    # in id order "car" would be scored as person: one name misspelt must not shuffle the others
    shuffled = [{"id": 1, "name": "car"}, {"id": 2, "name": "bike"}, {"id": 3, "name": "person"}]
    with pytest.raises(InputError, match=r"its categories in order would make car class 0 \(person\), but it "
                                         r"names class 2"):
        _category_ids(shuffled, names, Path("x.json"))
    with pytest.raises(InputError, match="2 categories, 1 of them not among the model's 3 classes"):
        _category_ids([{"id": 1, "name": "person"}, {"id": 2, "name": "zebra"}], names, Path("x.json"))


def test_a_class_folder_named_after_two_classes_is_refused_by_name(tmp_path: Path) -> None:
    from pvt_deploy.evaluate import open_dataset
    from pvt_deploy.models import resolve_name

    names = list(resolve_name("pvt_v2_b0-cls").classes)  # ImageNet: two classes are called "crane"
    for folder in ("crane", "tench"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(sample_images()[0], tmp_path / folder / "a.jpg")
    with pytest.raises(InputError, match=r"2 class folders for a model of 1000 classes, some not named after one "
                                         r"of its classes \(crane \(names 2 classes\)\)"):
        open_dataset(tmp_path, "classify", names)
    (tmp_path / "crane").rename(tmp_path / "goldfish")
    dataset = open_dataset(tmp_path, "classify", names)
    assert sorted(dataset.labels.values()) == [0, 1]  # tench 0, goldfish 1


def test_a_classifier_loses_one_hit_of_top1_per_picture_filed_under_another_class(
        cls_artifact: Any, tmp_path: Path) -> None:
    with Model(str(cls_artifact.folder)) as model:
        results = model.predict(sample_images(), topk=10)
        root = tmp_path / "val"
        for r in results:
            folder = root / r.probs.labels[0]
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(r.path, folder / Path(r.path).name)
        report = model.val(root)
        assert report.metrics == {"top1": 1.0, "top5": 1.0} and report.images == 3
        # one picture under its third-ranked class: a top-5 hit, not a top-1 one; another under its
        # tenth-ranked: neither
        for r, rank in zip(results[:2], (2, 9), strict=True):
            name = Path(r.path).name
            target = root / r.probs.labels[rank]
            target.mkdir(exist_ok=True)
            (root / r.probs.labels[0] / name).rename(target / name)
        report = model.val(root)
        assert report.metrics == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}


@pytest.fixture(scope="module")
def ade(seg_artifact: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ADE20K's layout (images/validation, annotations/validation) of the sample photos, each labelled with
    the segmenter's own mask at batch 1 (ADE20K's PNGs: 0 is "other", class k is k + 1): mIoU 1.0."""
    root = tmp_path_factory.mktemp("ade")
    (root / "images" / "validation").mkdir(parents=True)
    (root / "annotations" / "validation").mkdir(parents=True)
    with Model(str(seg_artifact.folder)) as model:
        for r in model.predict(sample_images(), batch=1):
            shutil.copyfile(r.path, root / "images" / "validation" / Path(r.path).name)
            Image.fromarray((r.mask + 1).astype(np.uint8)).save(root / "annotations" / "validation" /
                                                                 f"{Path(r.path).stem}.png")
    return root


def test_a_segmenter_loses_exactly_the_relabelled_pixels(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seg_artifact: Any, ade: Path,
        tmp_path: Path) -> None:
    root = tmp_path / "ade"
    shutil.copytree(ade, root)
    folder = root / "annotations" / "validation"
    labels = {p.stem: np.asarray(Image.open(p)).copy() for p in sorted(folder.glob("*.png"))}
    # the first picture's top rows are "other" (ignored); a block of the second gets another class
    first, second = sorted(labels)[:2]
    labels[first][:40] = 0
    block = labels[second][:30, :50]
    wrong = (block.astype(np.int64) % 150) + 1  # k + 1 -> the next class (wrapping), never the predicted one
    labels[second][:30, :50] = wrong
    for stem, label in labels.items():
        Image.fromarray(label).save(folder / f"{stem}.png")
    code, out, err = run(monkeypatch, capsys, "val", str(root), "--model", str(seg_artifact.folder), "--json")
    assert code == 0, err
    report = json.loads(out)
    counted = sum(label.size for label in labels.values()) - labels[first][:40].size
    assert report["metrics"]["aAcc"] == pytest.approx((counted - block.size) / counted, abs=1e-6)
    assert report["metrics"]["mIoU"] < 1.0 and report["images"] == 3


def test_val_batch_2_runs_pictures_of_one_input_size_together_and_keeps_the_metric(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seg_artifact: Any, ade: Path) -> None:
    # astronaut 512x512 is fed at 128x128, chelsea and coffee at 96x128 (landscape): in name order, batch 2
    # padded chelsea to 128x128 beside astronaut and mIoU fell to 77 %; by input size nothing is padded.
    # ONNX Runtime's CPU shards run each picture of a batch as a call of its own: the masks are batch 1's
    code, out, err = run(monkeypatch, capsys, "val", str(ade), "--model", str(seg_artifact.folder), "--batch", "2",
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["metrics"] == {"mIoU": 1.0, "mAcc": 1.0, "aAcc": 1.0} and report["images"] == 3


def test_val_in_batches_counts_skips_and_progresses_over_the_whole_dataset(
        seg_artifact: Any, ade: Path, tmp_path: Path) -> None:
    from pvt_deploy.evaluate import evaluate

    root = tmp_path / "ade"
    shutil.copytree(ade, root)
    (root / "images" / "validation" / "broken.jpg").write_bytes(b"not a picture")  # no header: sorted last
    shutil.copyfile(root / "annotations" / "validation" / "chelsea.png", root / "annotations" / "validation" / "broken.png")
    calls: list[tuple[int, int]] = []
    with Model(str(seg_artifact.folder)) as model:
        report = evaluate(model, root, batch=3, progress=lambda done, total: calls.append((done, total)))
    assert report.metrics == {"mIoU": 1.0, "mAcc": 1.0, "aAcc": 1.0}
    assert (report.images, report.skipped) == (3, 1) and calls == [(1, 4), (2, 4), (3, 4)]
    assert report.fps is not None and report.fps > 0


def test_a_detectors_ap_at_batch_2_is_batch_1s(det_model: Model, tmp_path: Path) -> None:
    # at 224 px astronaut is fed at 224x224, chelsea and coffee at 160x224; in name order chelsea (boxes of
    # the truth) was padded to 224x224 beside astronaut and AP fell to 0.98
    results = det_model.predict(sorted(sample_images()), imgsz=224)
    path, _ = _coco_dataset(tmp_path, results, det_model.names)
    one, two = (det_model.val(path, imgsz=224, batch=batch) for batch in (1, 2))
    assert one.metrics["AP"] == 1.0
    np.testing.assert_equal((two.metrics, two.per_class), (one.metrics, one.per_class))  # NaN where no small box


def test_predict_same_size_batches_give_batch_1s_masks_inline_and_threaded(seg_artifact: Any) -> None:
    pictures = sorted(str(p) for p in sample_images())  # astronaut (128x128 input) first, then two of 96x128
    with Model(str(seg_artifact.folder)) as model:
        one = {r.path: r.mask for r in model.predict(pictures, batch=1)}
        padded = {r.path: r.mask for r in model.predict(pictures, batch=2, same_size=False)}
        assert any((padded[p] != one[p]).any() for p in pictures)  # what same_size is for
        for threaded in (False, True):  # same_size is predict's default: batch changes no result
            same = {r.path: r.mask for r in model.predict(pictures, batch=2, threaded=threaded)}
            assert all(np.array_equal(same[p], one[p]) for p in pictures), threaded


def test_segmentation_metrics_by_hand() -> None:
    # truth rows, prediction columns: class 0 has 3 pixels, 2 found; class 1 has 1, found, plus 1 false
    matrix = np.array([[2, 1, 0], [0, 1, 0], [0, 0, 0]])
    metrics, per_class = segmentation_metrics(matrix, ["a", "b", "c"])
    assert per_class == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 2)}  # c: in neither, left out
    assert metrics["mIoU"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics["mAcc"] == pytest.approx((2 / 3 + 1) / 2) and metrics["aAcc"] == pytest.approx(3 / 4)


def test_classes_that_share_a_name_keep_an_iou_each() -> None:
    """--names car,car,bus: two classes named car each keep their IoU (one overwrote the other's)."""
    matrix = np.array([[2, 1, 0], [0, 1, 0], [0, 0, 3]])
    _, per_class = segmentation_metrics(matrix, ["car", "car", "bus"])
    assert per_class == {"car (0)": pytest.approx(2 / 3), "car (1)": pytest.approx(1 / 2), "bus": 1.0}


def test_255_is_ignored_with_reduce_zero_label_whatever_the_class_count() -> None:
    """MMSegmentation's reduce_zero_label: 0 -> 255, k -> k - 1, and 255 stays 255 (ignored). 255 became
    254, ignored only while the model has fewer than 255 classes."""
    from pvt_deploy.evaluate import confusion

    truth = np.array([[0, 1, 255, 255]])
    matrix = confusion(np.array([[7, 0, 254, 254]]), truth, 300, reduce_zero_label=True)
    assert matrix.sum() == 1 and matrix[0, 0] == 1


@pytest.mark.parametrize("layout", ["missing", "folder-for-detector", "json-for-classifier", "no-images"])
def test_a_dataset_that_does_not_fit_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_artifact: Any,
        cls_artifact: Any, coco: tuple[Path, dict[int, int]], tmp_path: Path, layout: str) -> None:
    path, _ = coco
    model, data, message = {
        "missing": (det_artifact.folder, tmp_path / "nope.json", "no such file or folder"),
        "folder-for-detector": (det_artifact.folder, path.parent.parent, "COCO instances JSON"),
        "json-for-classifier": (cls_artifact.folder, path, "folder of class folders"),
        "no-images": (det_artifact.folder, path, "none of the JSON's first pictures"),
    }[layout]
    args = ["val", str(data), "--model", str(model)]
    if layout == "no-images":
        args += ["--images", str(tmp_path)]
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def _pycocotools(truth: Path, detections: list[dict[str, Any]], image_ids: list[int] | None = None) -> list[float]:
    """COCOeval's 12 stats run directly on the files (not through pvt_deploy.evaluate), NaN for -1."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(truth))
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) if v >= 0 else float("nan") for v in ev.stats]


def test_coco_files_as_tools_write_them_score_as_pycocotools_says(
        det_model: Model, coco: tuple[Path, dict[int, int]], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """String image ids (as hand-written converters write them), pictures in subfolders, a picture the JSON
    lists that is not on disk (left out, with a warning; the first one too), one not of the size the JSON
    gives it (said), no detections at all, no boxes at all (said), ids or files listed twice (refused)."""
    import logging

    path, _ = coco
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"][0] += 0.2 * data["annotations"][0]["bbox"][2]  # overlaps its box by 2/3: AP < 1
    for k, a in enumerate(data["annotations"], 1):  # what pycocotools' own COCO() needs of a file
        a.update(id=k, iscrowd=0, area=a["bbox"][2] * a["bbox"][3])
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(data))
    results = det_model.predict([str(path.parent.parent / "val2017" / im["file_name"]) for im in data["images"]])
    detections = [{"image_id": im["id"], "category_id": int(c) + 1, "score": s, "bbox": [x1, y1, x2 - x1, y2 - y1]}
                  for im, r in zip(data["images"], results, strict=True)
                  for (x1, y1, x2, y2), s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                                                    strict=True)]
    expected = _pycocotools(reference, detections)
    assert 0 < expected[0] < 1
    # the same file as a labelling tool writes it: ids "frame-1", ..., pictures under val2017/sub/
    (tmp_path / "val2017" / "sub").mkdir(parents=True)
    for im in data["images"]:
        shutil.copyfile(path.parent.parent / "val2017" / im["file_name"], tmp_path / "val2017" / "sub" / im["file_name"])
        im["file_name"] = f"sub/{im['file_name']}"
        im["id"] = f"frame-{im['id']}"
    for a in data["annotations"]:
        a["image_id"] = f"frame-{a['image_id']}"
    tool = tmp_path / "annotations" / "instances_val2017.json"
    tool.parent.mkdir()
    tool.write_text(json.dumps(data))
    report = det_model.val(tool)
    assert report.images == 3
    np.testing.assert_allclose(list(report.metrics.values()), expected, atol=1e-9)
    # a picture missing on disk: the others are measured, as COCOeval over their ids; a picture of another
    # size than the file gives it (its boxes are in other pixels) is said. The first one missing: the
    # folder is still found beside annotations/
    (tmp_path / "val2017" / data["images"][0]["file_name"]).unlink()
    w, h = data["images"][1]["width"], data["images"][1]["height"]
    data["images"][1]["width"] = 2 * w
    tool.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        report = det_model.val(tool)
    assert report.images == 2 and "1 of the 3 pictures it lists is not in" in caplog.text
    assert (f"1 of 2 pictures is not of the size it lists ({Path(data['images'][1]['file_name']).name} {w}x{h}, "
            f"{2 * w}x{h} in the file)") in caplog.text
    np.testing.assert_allclose(list(report.metrics.values()), _pycocotools(reference, detections, [2, 3]), atol=1e-9)
    # no detection above the threshold: AP 0 where there are boxes, none (NaN) for sizes there are none of
    report = det_model.val(tool, conf=0.99)
    assert report.metrics["AP"] == 0.0 and report.metrics["AR100"] == 0.0
    assert [np.isnan(v) for v in report.metrics.values()] == [np.isnan(v) for v in expected]
    # no box at all among the pictures: nothing to measure, said (the table was all dashes)
    tool.write_text(json.dumps({**data, "annotations": []}))
    with caplog.at_level(logging.WARNING):
        assert all(np.isnan(v) for v in det_model.val(tool).metrics.values())
    assert "no box of its categories in the 2 pictures evaluated: AP and AR measure nothing" in caplog.text
    # an id or a file listed twice: COCO's index would give one picture both's boxes
    for twice, message in ((dict(data["images"][0], file_name=data["images"][1]["file_name"]), "listed twice"),
                           (dict(data["images"][0], id=data["images"][1]["id"]), "image id 'frame-2' is listed twice")):
        tool.write_text(json.dumps({**data, "images": [twice, *data["images"][1:]]}))
        with pytest.raises(InputError, match=message):
            det_model.val(tool)


def test_class_folders_taken_in_sorted_order_must_not_contradict_their_names(cls_artifact: Any, tmp_path: Path) -> None:
    """ImageNet's 1000 folders named after its classes: the two "crane" folders cannot both be called so,
    hence not all names match, and sorted (alphabetical) order made "abacus" class 0 (tench): every
    picture scored against another class, silently. Refused; wnid folders (no name a class) are in order."""
    from pvt_deploy.evaluate import open_dataset

    with Model(str(cls_artifact.folder)) as model:
        names = list(model.names)
        seen: set[str] = set()
        for i, n in enumerate(names):
            folder = n if n.lower() not in seen else f"{n} {i}"  # crane, crane 134; Cardigan, cardigan 474
            seen.add(n.lower())
            (tmp_path / "named" / folder).mkdir(parents=True)
            (tmp_path / "wnid" / f"n{i:08d}").mkdir(parents=True)
        with pytest.raises(InputError, match=r"its class folders in order would make .* class 0 \(tench\), but "
                                             r"it names class \d+; \(Cardigan \(names 2 classes\), cardigan 474, "
                                             r"crane \(names 2 classes\), \.\.\.\) name no single class"):
            open_dataset(tmp_path / "named", "classify", names)
        results = model.predict(sample_images(), topk=5)
        for r in results:
            shutil.copyfile(r.path, tmp_path / "wnid" / f"n{r.probs.top1:08d}" / Path(r.path).name)
        report = model.val(tmp_path / "wnid")
        assert report.metrics == {"top1": 1.0, "top5": 1.0} and report.images == 3


def test_imagenet_wnid_folders_of_a_subset_are_their_classes(cls_artifact: Any, tmp_path: Path) -> None:
    """Imagenette's layout: a few of ImageNet's class folders, named by WordNet id (n01440764, ...). Not
    one per class and no class names, they were refused; each is its ImageNet class."""
    from pvt_deploy.data import imagenet_wnids

    wnids = imagenet_wnids()
    assert wnids[0] == "n01440764" and wnids[999] == "n15075141"  # tench ... toilet tissue
    with Model(str(cls_artifact.folder)) as model:
        results = model.predict(sample_images(), topk=5)
        for r in results:
            folder = tmp_path / wnids[r.probs.top1]
            folder.mkdir(exist_ok=True)
            shutil.copyfile(r.path, folder / Path(r.path).name)
        report = model.val(tmp_path)
    assert report.metrics == {"top1": 1.0, "top5": 1.0} and report.images == 3


def test_yolo_background_pictures_count_and_a_class_past_the_names_is_said(
        det_model: Model, coco: tuple[Path, dict[int, int]], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A picture without a label file is a background picture (Ultralytics): its detections are false
    positives, as COCOeval counts them over the same pictures. A label line of a class the YAML does not
    name was dropped by COCOeval without a word, one in pixels scaled to a box far off the picture; each
    is left out with a warning (Ultralytics refuses both)."""
    import logging

    path, _ = coco
    data = json.loads(path.read_text())
    for k, a in enumerate(data["annotations"], 1):
        a.update(id=k, iscrowd=0, area=a["bbox"][2] * a["bbox"][3])
    background = max(data["images"], key=lambda im: sum(a["image_id"] == im["id"] for a in data["annotations"]))
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != background["id"]]
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(data))
    for split in ("images", "labels"):
        (tmp_path / split / "val").mkdir(parents=True)
    for im in data["images"]:
        shutil.copyfile(path.parent.parent / "val2017" / im["file_name"], tmp_path / "images" / "val" / im["file_name"])
        w, h = im["width"], im["height"]
        lines = [f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / w!r} {(a['bbox'][1] + a['bbox'][3] / 2) / h!r} "
                 f"{a['bbox'][2] / w!r} {a['bbox'][3] / h!r}" for a in data["annotations"] if a["image_id"] == im["id"]]
        if im is not background:
            lines.append(f"{len(det_model.names)} 0.5 0.5 0.2 0.2")  # class 80 of an 80-name YAML
            lines.append("0 320 240 50 60")  # pixels: a person box no detection could ever match
            (tmp_path / "labels" / "val" / f"{Path(im['file_name']).stem}.txt").write_text("\n".join(lines) + "\n")
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(f"path: {tmp_path}\nval: images/val\nnames: {json.dumps(list(det_model.names))}\n")
    with caplog.at_level(logging.WARNING):
        report = det_model.val(yaml_file)
    text = " ".join(caplog.text.split())
    assert "2 of a class not among the dataset's names (" in text and " '80 0.5 0.5 0.2 0.2', ...)" in text
    assert ("2 of coordinates past 0..1 (YOLO's are fractions of the picture's width and height, not pixels) ("
            in text) and " '0 320 240 50 60', ...)" in text
    results = det_model.predict([str(tmp_path / "images" / "val" / im["file_name"]) for im in data["images"]])
    detections = [{"image_id": im["id"], "category_id": int(c) + 1, "score": s, "bbox": [x1, y1, x2 - x1, y2 - y1]}
                  for im, r in zip(data["images"], results, strict=True)
                  for (x1, y1, x2, y2), s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                                                    strict=True)]
    expected = _pycocotools(reference, detections)
    assert report.images == 3 and expected[0] < 1
    np.testing.assert_allclose(list(report.metrics.values()), expected, atol=1e-6)


def test_a_label_png_of_another_size_than_its_picture_is_named_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seg_artifact: Any, tmp_path: Path) -> None:
    """MMSegmentation compares a label with the prediction at its picture's size: another size is refused,
    naming the file (it said 'a label PNG of 320x256 for a picture of 640x512', of 2000 files)."""
    picture = sample_images()[0]
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    shutil.copyfile(picture, tmp_path / "images" / Path(picture).name)
    with Image.open(picture) as im:
        w, h = im.size
    png = tmp_path / "masks" / f"{Path(picture).stem}.png"
    Image.fromarray(np.ones((h // 2, w // 2), np.uint8)).save(png)
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                         "--model", str(seg_artifact.folder))
    assert code == 2 and "Traceback" not in err and out == "", err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    message = f"error: label {png}: {w // 2}x{h // 2} for a picture of {w}x{h}"
    assert message in " ".join(err.split()), err  # as one line, however the terminal wraps it


def test_limit_takes_a_classifiers_classes_in_turn(tmp_path: Path) -> None:
    """--limit 5000 of ImageNet's val (50 a class, sorted) took the first 100 classes whole: a top-1 of
    fish, birds and amphibians. The classes are taken in turn, so every one is sampled alike."""
    from pvt_deploy.evaluate import open_dataset
    from pvt_deploy.models import resolve_name

    names = list(resolve_name("pvt_v2_b0-cls").classes)
    for folder in ("tench", "goldfish", "great white shark"):
        (tmp_path / folder).mkdir()
        for k in range(3):
            shutil.copyfile(sample_images()[0], tmp_path / folder / f"{k}.jpg")
    dataset = open_dataset(tmp_path, "classify", names, limit=4)
    assert [dataset.labels[str(p)] for p in dataset.images] == [1, 2, 0, 1]  # goldfish, great white shark, tench
    assert [p.name for p in dataset.images] == ["0.jpg", "0.jpg", "0.jpg", "1.jpg"]
    assert len(open_dataset(tmp_path, "classify", names).images) == 9


def test_a_dataset_copied_by_a_mac_counts_its_pictures_as_infer_does(tmp_path: Path) -> None:
    """A Mac copying a dataset to a USB stick or a share writes ._NAME beside each file (its metadata, no
    picture): val counted each as a picture of its class folder (or of the segmenter's picture folder),
    a failed read and a count twice the dataset's, where infer leaves hidden files out (08990eb). A still
    GIF, which infer reads as a picture (0c73a69), was left out. val lists a folder as infer does."""
    from pvt_deploy.evaluate import open_dataset
    from pvt_deploy.models import resolve_name

    junk = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 200
    names = list(resolve_name("pvt_v2_b0-cls").classes)
    for folder in ("tench", "goldfish"):
        (tmp_path / "cls" / folder).mkdir(parents=True)
        shutil.copyfile(sample_images()[0], tmp_path / "cls" / folder / "0.jpg")
        (tmp_path / "cls" / folder / "._0.jpg").write_bytes(junk)
    Image.open(sample_images()[0]).convert("P").save(tmp_path / "cls" / "tench" / "logo.gif")
    dataset = open_dataset(tmp_path / "cls", "classify", names)
    assert sorted(f"{p.parent.name}/{p.name}" for p in dataset.images) == [
        "goldfish/0.jpg", "tench/0.jpg", "tench/logo.gif"]
    for sub in ("pictures", "labels"):
        (tmp_path / "seg" / sub).mkdir(parents=True)
    shutil.copyfile(sample_images()[0], tmp_path / "seg" / "pictures" / "a.jpg")
    (tmp_path / "seg" / "pictures" / "._a.jpg").write_bytes(junk)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "seg" / "labels" / "a.png")
    seg = open_dataset(tmp_path / "seg", "segment", ["x"], images=tmp_path / "seg" / "pictures",
                       masks=tmp_path / "seg" / "labels")
    assert [p.name for p in seg.images] == ["a.jpg"]


def test_yolo_names_as_a_list_or_ids_to_names_quoted_or_not(tmp_path: Path) -> None:
    """``names: {"0": person}`` (a YAML written from JSON) is read as Ultralytics reads it: class ids."""
    from pvt_deploy.evaluate import open_dataset

    for split in ("images", "labels"):
        (tmp_path / split / "val").mkdir(parents=True)
    shutil.copyfile(sample_images()[0], tmp_path / "images" / "val" / "a.jpg")
    (tmp_path / "labels" / "val" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    names = ["person", "bicycle", "car"]
    for written in ("[person, bicycle, car]", "{0: person, 1: bicycle, 2: car}", '{"0": person, "1": bicycle, "2": car}'):
        (tmp_path / "data.yaml").write_text(f"val: images/val\nnames: {written}\n")
        assert open_dataset(tmp_path / "data.yaml", "detect", names).category_ids == [1, 2, 3], written


def test_coco_files_of_windows_tools_and_roboflow_are_read(coco: tuple[Path, dict[int, int]], tmp_path: Path) -> None:
    """Windows tools write UTF-8 with a BOM (json.loads refused it: 'Unexpected UTF-8 BOM'); Roboflow lists
    its dataset's name as category 0, which no box has (it was refused as a category the model lacks).
    A category whose id is not a number is refused: its boxes could never meet a detection's."""
    from pvt_deploy.evaluate import open_dataset

    path, _ = coco
    data = json.loads(path.read_text())
    names = [c["name"] for c in data["categories"]]
    data["categories"].insert(0, {"id": 0, "name": "pets-and-forks", "supercategory": "none"})
    for c in data["categories"][1:]:
        c["supercategory"] = "pets-and-forks"
    marked = tmp_path / "_annotations.coco.json"
    marked.write_text(json.dumps(data), encoding="utf-8-sig")
    dataset = open_dataset(marked, "detect", names, images=path.parent.parent / "val2017")
    assert len(dataset.images) == 3 and dataset.category_ids == list(range(1, len(names) + 1))
    data["categories"][5]["id"] = "5"
    marked.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"category '{names[4]}' has the id '5', not a number"):
        open_dataset(marked, "detect", names, images=path.parent.parent / "val2017")


def test_dataset_options_a_dataset_does_not_read_are_said(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    (tmp_path / "val" / "tench").mkdir(parents=True)
    shutil.copyfile(sample_images()[0], tmp_path / "val" / "tench" / "a.jpg")
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path / "val"), "--model", str(cls_artifact.folder),
                         "--masks", str(tmp_path), "--no-reduce-zero-label", "--conf", "0.3", "--json")
    assert code == 0 and json.loads(out)["images"] == 1, err
    assert "warning: --masks, --no-reduce-zero-label: not read for this classify model's dataset" in err
    assert "warning: --conf filters detections; a classify model has none: ignored" in err  # as infer says it
