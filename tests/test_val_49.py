"""``pvt-deploy val``'s faults left from session 48: a COCO file saved as UTF-16, TIFF labels spoken of as PNGs,
a picture with two label maps of its name, pictures and labels in one folder."""

from __future__ import annotations

import codecs
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image

from pvt_deploy.assets import sample_image
from pvt_deploy.data import class_names
from pvt_deploy.errors import InputError
from pvt_deploy.evaluate import _coco_dataset, _mask_dataset, confusion
from pvt_deploy.io.sources import open_source

COCO = {"info": {"description": "café"}, "images": [{"id": 1, "file_name": "astronaut.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50]}],
        "categories": [{"id": 1, "name": "person"}]}


def _said(text: str) -> str:
    """``text`` on one line, as a terminal's wrapping is undone: the words, one space apart."""
    return " ".join(text.split())


def test_a_coco_file_saved_as_utf16_is_read_and_known_as_coco(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A COCO file saved as UTF-16 with its byte-order mark (what Windows PowerShell 5's Out-File and '>' write)
    was 'not a readable JSON file ('utf-8' codec can't decode byte 0xff ...)' to val, and 'neither a readable
    image nor a video' given as pictures. Read in UTF-16 LE and BE as in UTF-8 with a mark or none; a file in
    none of them is said so in one line."""
    (tmp_path / "val2017").mkdir()
    shutil.copy(sample_image("astronaut"), tmp_path / "val2017" / "astronaut.jpg")
    text = json.dumps(COCO, ensure_ascii=False)
    encodings = {"utf8": text.encode(), "utf8-bom": codecs.BOM_UTF8 + text.encode(),
                 "utf16-le": codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
                 "utf16-be": codecs.BOM_UTF16_BE + text.encode("utf-16-be")}
    for name, data in encodings.items():
        instances = tmp_path / f"{name}_val2017.json"
        instances.write_bytes(data)
        dataset = _coco_dataset(instances, class_names("coco"), None, None)
        assert dataset.images == [tmp_path / "val2017" / "astronaut.jpg"], name
        assert dataset.coco is not None and dataset.coco["info"] == {"description": "café"}, name
        assert [a["bbox"] for a in dataset.coco["annotations"]] == [[10.0, 10.0, 50.0, 50.0]], name
        with pytest.raises(InputError, match="looks like a COCO annotation file"):
            open_source(instances)
    latin = tmp_path / "latin_val2017.json"  # a Windows tool's code page: no JSON text
    latin.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError) as caught:
        _coco_dataset(latin, class_names("coco"), None, None)
    at = text.encode("latin-1").index(b"\xe9")  # é, a byte no UTF-8 text has there
    assert str(caught.value) == (f"dataset {latin}: cannot read it (neither UTF-8 nor UTF-16 text: "
                                 f"invalid continuation byte at byte {at})")
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path / "utf16-le_val2017.json"), "--model", "pvt_v2_b0",
                         "--imgsz", "160", "--json")
    assert code == 0 and "Traceback" not in err, err
    report = json.loads(out)
    assert report["images"] == 1 and report["dataset"] == f"{tmp_path / 'utf16-le_val2017.json'} ({tmp_path / 'val2017'})"
    code, out, err = run(monkeypatch, capsys, "infer", str(tmp_path / "utf16-be_val2017.json"), "--model", "pvt_v2_b0")
    assert code == 2 and out == "" and _said(err).startswith(
        f"error: {tmp_path / 'utf16-be_val2017.json'} looks like a COCO annotation file (JSON), not pictures or a video")


def _gray(path: Path, value: int, mode: str = "L") -> Path:
    """A 48x32 picture or label map of one ``value`` (``mode`` 1, L or I;16), saved losslessly by its suffix."""
    if mode == "1":
        Image.fromarray(np.full((32, 48), bool(value))).save(path)
    else:
        Image.fromarray(np.full((32, 48), value, np.uint16 if mode == "I;16" else np.uint8)).save(path)
    return path


def _photo(path: Path) -> Path:
    """A 48x32 colour picture."""
    Image.fromarray(np.full((32, 48, 3), (90, 120, 30), np.uint8)).save(path)
    return path


def test_tiff_labels_are_said_as_labels_not_as_pngs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Lossless TIFF labels are read as PNGs are, but val's messages said 'label PNG' of them ('3 of 3 label PNGs
    are 1-bit (a.tif ...)', 'have no label PNG'): labels; where only the files' kinds can help, 'PNG or TIFF'."""
    from pvt_deploy.api import Model

    pics, labels = tmp_path / "pics", tmp_path / "labels"
    pics.mkdir()
    labels.mkdir()
    for stem in "abc":
        _photo(pics / f"{stem}.jpg")
    _gray(labels / "a.tif", 200, "I;16")  # past the 150 classes
    _gray(labels / "b.tif", 0, "1")  # 1-bit, all 0: ignored with --reduce-zero-label
    with Model("pvt_tiny-seg", imgsz=64) as model, caplog.at_level(logging.WARNING):
        report = model.val(pics, masks=labels)
    assert report.images == 2 and all(np.isnan(v) for v in report.metrics.values())
    said = _said(caplog.text)
    assert f"dataset {pics}: 1 of 3 pictures has no label and is left out" in said
    assert (f"dataset {pics}: 1 of 2 labels holds values past the model's 150 classes (a.tif: 200; its ids are 1-150, "
            "0 ignored: --reduce-zero-label)") in said
    assert f"dataset {pics}: 1 of 2 labels is 1-bit (b.tif: ids 0 and 1 only), read with --reduce-zero-label" in said
    assert f"dataset {pics}: no pixel of the model's classes in the 2 labels evaluated: mIoU measures nothing" in said
    assert "PNG" not in said
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError) as caught:
        _mask_dataset(pics, pics, tmp_path / "none", None, True)
    assert str(caught.value) == f"dataset {pics}: no picture in {pics} has a label PNG or TIFF of its name in " \
        f"{tmp_path / 'none'}"
    with pytest.raises(InputError, match=r"a segmenter is evaluated on pictures and their labels: give the dataset"):
        _mask_dataset(pics, pics, None, None, True)
    with pytest.raises(InputError) as caught:
        confusion(np.zeros((32, 48), np.int64), np.ones((16, 24), np.uint8), 150, reduce_zero_label=True)
    assert str(caught.value) == ("a label: 24x16 for a picture of 48x32 (a label has its picture's size, as "
                                 "MMSegmentation reads them)")


def test_a_picture_with_two_label_maps_of_its_name_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """labels/b.png beside labels/b.tif (or b.tiff, or b.PNG): the PNG was scored, the other never read, by the
    order of LABEL_SUFFIXES (and of the folder's listing for two of one suffix), without a word; they may hold
    other ids. Refused in one line naming the first and how many. A JPEG beside a lossless label is no second
    label: lossy ones are read only where there is no other (and refused)."""
    pics, labels = tmp_path / "pics", tmp_path / "labels"
    pics.mkdir()
    labels.mkdir()
    for stem in ("a", "b", "c"):
        _photo(pics / f"{stem}.jpg")
        _gray(labels / f"{stem}.png", 1)
    _gray(labels / "a.jpg", 1)
    _gray(labels / "b.tif", 2)
    _gray(labels / "c.tiff", 2)
    code, out, err = run(monkeypatch, capsys, "val", str(pics), "--masks", str(labels), "--model", "pvt_tiny-seg",
                         "--imgsz", "64")
    assert code == 2 and out == "", err
    assert err.splitlines()[-1] == (f"error: dataset {pics}: 2 pictures have several labels of their name in {labels} "
                                    "(b.jpg: b.png and b.tif; ...): which one is the truth is not said: keep one per picture")
    (labels / "c.tiff").unlink()
    with pytest.raises(InputError, match=r": 1 picture has several labels of its name in .* \(b\.jpg: b\.png and "
                                         r"b\.tif\): which one"):
        _mask_dataset(pics, pics, labels, None, True)
    (labels / "b.tif").unlink()
    _gray(labels / "b.PNG", 2)  # one suffix in another case: two of b's name still
    with pytest.raises(InputError, match=r"\(b\.jpg: b\.PNG and b\.png\)"):
        _mask_dataset(pics, pics, labels, None, True)
    (labels / "b.PNG").unlink()
    dataset = _mask_dataset(pics, pics, labels, None, True)
    assert dataset.labels == {str(pics / f"{s}.jpg"): labels / f"{s}.png" for s in "abc"}


def test_pictures_and_labels_in_one_folder_never_score_a_file_against_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--images X --masks X with a picture x.png beside its label x.tif (or the reverse): the PNG was taken for
    x's label and the TIFF for a picture, so the model ran on the label map and the picture was read as its
    truth (a gray picture scored as class ids; a colour one 'a picture of mode RGB'). Which is which the names
    do not say: refused, naming them. And one folder named two ways (relative, absolute) was two folders: each
    label map beside its picture was a picture too, scored against itself."""
    one = tmp_path / "one"
    one.mkdir()
    _photo(one / "x.png")
    _gray(one / "x.tif", 1)
    _photo(one / "y.jpg")
    _gray(one / "y.png", 1)
    code, out, err = run(monkeypatch, capsys, "val", str(one), "--masks", str(one), "--model", "pvt_tiny-seg",
                         "--imgsz", "64")
    assert code == 2 and out == "", err
    assert err.splitlines()[-1] == (f"error: dataset {one}: x.png and x.tif, in the one folder of pictures and "
                                    "labels: which is the picture and which its label is not said: give the labels "
                                    "a folder of their own (--masks)")
    _gray(one / "x.tif", 100)
    _gray(one / "x.png", 1)  # the reverse, both gray: still no telling
    with pytest.raises(InputError, match=r": x\.png and x\.tif, in the one folder"):
        _mask_dataset(one, one, one, None, True)
    (one / "x.tif").unlink()  # x.png alone: a label without its picture, no picture
    monkeypatch.chdir(tmp_path)
    for images, masks in ((one, one), (Path("one"), one), (one, Path("one"))):
        dataset = _mask_dataset(images, images, masks, None, True)
        assert dataset.images == [images / "y.jpg"], (images, masks)
        assert dataset.labels == {str(images / "y.jpg"): masks / "y.png"}
