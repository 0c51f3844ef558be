"""``pvt-deploy val`` on datasets as people give them (session 48's review): pictures beside the class
folders, COCO sizes written as strings, YOLO prediction files given as labels, label maps saved as JPEG,
TIFF or 1-bit PNG.

As in test_val, the truth is made from the model's own output, so a model scored against it has a known
figure (top-1, AP or mIoU 1.0) and each change moves it by an amount known here.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from test_val_47 import _coco, det_model, truth  # noqa: F401 - det_model, truth: fixtures

from pvt_deploy.api import Model
from pvt_deploy.assets import sample_images

pytest_plugins = ["export_fixtures"]


def _said(text: str) -> str:
    """``text`` on one line, as a terminal's wrapping is undone: the words, one space apart."""
    return " ".join(text.split())


def test_pictures_beside_the_class_folders_are_said_left_out(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        cls_artifact: Any, tmp_path: Path) -> None:
    """val/x.jpg next to val/cat/ and val/dog/ is of no class: it was left out without a word, the figure
    on fewer pictures than the folder holds. Said with a count; a folder of pictures and no class folders
    (ImageNet's val as downloaded, before it is sorted) says it holds them in its one line."""
    photos = sample_images()
    with Model(str(cls_artifact.folder)) as model:
        results = model.predict(photos[:2])
        root = tmp_path / "val"
        for r in results:
            (root / r.probs.labels[0]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(r.path, root / r.probs.labels[0] / Path(r.path).name)
        shutil.copyfile(photos[2], root / photos[2].name)
        with caplog.at_level(logging.WARNING):
            report = model.val(root)
    assert report.images == 2 and report.metrics["top1"] == 1.0
    assert f"dataset {root}: 1 picture ({photos[2].name}) is beside its class folders, of no class: left out" in \
        _said(caplog.text)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in photos:
        shutil.copyfile(p, flat / p.name)
    code, out, err = run(monkeypatch, capsys, "val", str(flat), "--model", str(cls_artifact.folder))
    assert code == 2 and out == "" and "Traceback" not in err
    assert (f"error: dataset {flat}: no class folders in it (val/<class>/*.jpg); its 3 pictures ({photos[0].name}, "
            "...) are in no class folder: sort them into one folder per class") in _said(err)


def test_coco_sizes_written_as_strings_are_read_and_garbage_is_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_artifact: Any, det_model: Model, truth: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    """A tool that writes "width": "640" (as strings) made every picture 'not of the size it gives them
    (astronaut.jpg 512x512, 512x512 in the file)', a warning of boxes that would not fit, for a figure
    that was right. Sizes written as strings are the numbers they spell (a wrong one is still said);
    one that is no number of pixels is refused in one line, exit 2."""
    strings = [{**im, "width": str(im["width"]), "height": f" {im['height']}.0"} for im in truth["images"]]
    with caplog.at_level(logging.WARNING):
        report = det_model.val(_coco(tmp_path / "strings", truth, images=strings))
    assert report.images == 3 and report.metrics["AP"] == 1.0
    assert "not of the size it" not in caplog.text
    first = truth["images"][0]
    wrong = [{**strings[0], "width": "100"}, *strings[1:]]  # read as a number: a size the picture is not
    with caplog.at_level(logging.WARNING):
        det_model.val(_coco(tmp_path / "wrong", truth, images=wrong))
    assert (f"1 of 3 pictures is not of the size it lists ({first['file_name']} {first['width']}x"
            f"{first['height']}, 100x{first['height']} in the file)") in _said(caplog.text)
    garbage = [{**truth["images"][0], "height": "480px"}, *truth["images"][1:]]
    code, out, err = run(monkeypatch, capsys, "val", str(_coco(tmp_path / "garbage", truth, images=garbage)),
                         "--model", str(det_artifact.folder))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"image id 1 ({first['file_name']}) has the height '480px', not a number of pixels" in _said(err)


def test_yolo_prediction_lines_given_as_labels_are_one_warning_with_a_count(
        det_model: Model, truth: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """A label line with a 6th column (class cx cy w h conf: a prediction file's, as Ultralytics' save_conf
    writes them) is no label, and was left out with a warning of its own, one a line: a dataset of such files
    is thousands. One warning for the run says how many lines were left out and why, naming the first."""
    for split in ("images", "labels"):
        (tmp_path / split / "val").mkdir(parents=True)
    shapes = {im["id"]: (im["width"], im["height"]) for im in truth["images"]}
    first = None
    for image_id, p in enumerate(truth["paths"], 1):
        shutil.copyfile(p, tmp_path / "images" / "val" / Path(p).name)
        w, h = shapes[image_id]
        lines = [f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / w!r} "
                 f"{(a['bbox'][1] + a['bbox'][3] / 2) / h!r} {a['bbox'][2] / w!r} {a['bbox'][3] / h!r}"
                 for a in truth["annotations"] if a["image_id"] == image_id]
        label = tmp_path / "labels" / "val" / (Path(p).stem + ".txt")
        # each box again, as a prediction file has it: left out, so the truth is as it was
        label.write_text("\n".join(lines + [f"{line} 0.87" for line in lines]) + "\n")
        if lines and first is None:
            first = f"{label} line {len(lines) + 1}: '{lines[0]} 0.87'"
    data = tmp_path / "data.yaml"
    data.write_text(f"val: images/val\nnames: {json.dumps(list(det_model.names))}\n")
    with caplog.at_level(logging.WARNING):
        report = det_model.val(data)
    assert report.images == 3 and report.metrics["AP"] == 1.0 and report.metrics["AR100"] == 1.0, report.metrics
    n = len(truth["annotations"])
    assert len(caplog.records) == 1, caplog.text
    assert (f"dataset {data}: {n} of the {2 * n} lines of its label files are left out: {n} with a 6th column "
            "(class cx cy w h and a confidence, as a prediction file's lines: predictions, not labels?) "
            f"({first}, ...)") == _said(caplog.records[0].getMessage())


def _segmentation_set(model: Model, root: Path, save: Any) -> tuple[Path, Path, dict[str, Any]]:
    """root/images (the sample photos) and root/labels, each photo's label ``save(mask + 1, folder, stem)``
    made from the segmenter's own mask (ADE20K's ids: 0 is other, class k is k + 1). Returns the two
    folders and each photo's mask by stem."""
    import numpy as np

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    masks = {}
    for r in model.predict(sample_images()):
        shutil.copyfile(r.path, root / "images" / Path(r.path).name)
        masks[Path(r.path).stem] = r.mask
        save((r.mask + 1).astype(np.uint8), root / "labels", Path(r.path).stem)
    return root / "images", root / "labels", masks


def test_label_maps_saved_as_jpeg_are_refused_and_as_tiff_read(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        seg_artifact: Any, tmp_path: Path) -> None:
    """Label maps saved as JPEG were 'no picture ... has a label PNG of its name', the why left to guess,
    and the compression of a JPEG changes the class ids along every edge: refused, saying so (beside label
    PNGs: left out, said). Lossless TIFFs (as GIS tools write label maps) were not read at all: they are
    read as PNGs are, mIoU 1.0 on the model's own masks; a JPEG-compressed one is refused."""
    from PIL import Image

    with Model(str(seg_artifact.folder)) as model:
        photos, tiffs, _ = _segmentation_set(model, tmp_path / "tiff", lambda a, folder, stem: Image.fromarray(a).save(
            folder / f"{stem}.tif", compression="tiff_lzw"))
        report = model.val(photos, masks=tiffs)
        assert report.images == 3 and report.metrics["mIoU"] == 1.0 and report.metrics["aAcc"] == 1.0
        pictures, jpegs, _ = _segmentation_set(model, tmp_path / "jpeg", lambda a, folder, stem: Image.fromarray(a).save(
            folder / f"{stem}.jpg", quality=95))
        (jpegs / "astronaut.jpg").rename(jpegs / "astronaut.JPEG")
        code, out, err = run(monkeypatch, capsys, "val", str(pictures), "--masks", str(jpegs), "--model",
                             str(seg_artifact.folder))
        assert code == 2 and out == "" and "Traceback" not in err
        assert (f"error: dataset {pictures}: its labels in {jpegs} are JPEG files (astronaut.JPEG, ...): JPEG's "
                "compression changes the class ids along every edge, so no figure measured on them is right: save "
                "the label maps as PNG") in _said(err)
        for p in sample_images()[1:]:  # beside label PNGs: the pictures of a JPEG label are left out, said
            Image.open(jpegs / f"{p.stem}.jpg").save(jpegs / f"{p.stem}.png")  # (wrong ids, but no figure is asserted)
        with caplog.at_level(logging.WARNING):
            assert model.val(pictures, masks=jpegs).images == 2
        assert (f"dataset {pictures}: 1 of 3 pictures has a JPEG label (astronaut.JPEG), left out: JPEG's "
                "compression changes the class ids") in _said(caplog.text)
        assert "no label and" not in caplog.text
        Image.open(tiffs / "chelsea.tif").save(tiffs / "chelsea.tif", compression="jpeg")
        code, out, err = run(monkeypatch, capsys, "val", str(photos), "--masks", str(tiffs), "--model",
                             str(seg_artifact.folder))
        assert code == 2 and out == "" and "Traceback" not in err
        assert (f"error: label {tiffs / 'chelsea.tif'}: JPEG-compressed, which changes the class ids along every "
                "edge: save it as PNG") in _said(err)


def test_a_1_bit_label_png_is_read_as_ids_0_and_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 1-bit PNG (mode 1: a binary mask, as an image editor saves one) holds 0 and 1 only, one channel of
    class ids: it was refused as 'a 1 picture, not one channel of class ids'. Read as ids 0 and 1 (as
    MMSegmentation's Pillow reading gives them): a two-class segmenter's own masks so saved score mIoU 1.0.
    With --reduce-zero-label, ADE20K's setting and the default, their 0 is ignored and 1 is class 0, every
    pixel a miss: said, naming --no-reduce-zero-label."""
    import numpy as np
    import torch
    from PIL import Image

    from pvt_deploy.models import create_model

    ckpt = tmp_path / "two.pth"
    torch.save(create_model("pvt_tiny-seg", num_classes=2, seed=0).state_dict(), ckpt)
    with Model(str(ckpt), names=["background", "object"], imgsz=64) as model:
        pictures, labels, masks = _segmentation_set(model, tmp_path / "set", lambda a, folder, stem: Image.fromarray(
            a == 2).convert("1").save(folder / f"{stem}.png"))  # a: mask + 1, so 2 is the object
        assert all(Image.open(labels / f"{stem}.png").mode == "1" for stem in masks)
        assert all(set(np.unique(m).tolist()) == {0, 1} for m in masks.values())  # both classes, in each
        with caplog.at_level(logging.WARNING):
            report = model.val(pictures, masks=labels, reduce_zero_label=False)
        assert report.images == 3 and report.metrics == {"mIoU": 1.0, "mAcc": 1.0, "aAcc": 1.0}
        assert "1-bit" not in caplog.text
        with caplog.at_level(logging.WARNING):
            report = model.val(pictures, masks=labels)
        assert report.metrics == {"mIoU": 0.0, "mAcc": 0.0, "aAcc": 0.0}  # 0 ignored; the object's 1 as class 0
    assert ("3 of 3 labels are 1-bit (astronaut.png: ids 0 and 1 only), read with --reduce-zero-label: 0 is "
            "ignored and 1 is class 0 (background); --no-reduce-zero-label reads 0 and 1 as classes 0 and 1") in \
        _said(caplog.text)
