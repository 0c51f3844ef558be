"""``pvt-deploy val``'s faults helper CD found in session 49: two pictures of one name scored against one label,
negative ids in a label, text files (lists, YOLO labels, dataset YAMLs) in UTF-16, a float label map."""

from __future__ import annotations

import codecs
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image

from pvt_deploy.assets import sample_image
from pvt_deploy.data import class_names
from pvt_deploy.errors import InputError
from pvt_deploy.evaluate import _mask_dataset


def _said(text: str) -> str:
    """``text`` on one line, as a terminal's wrapping is undone: the words, one space apart."""
    return " ".join(text.split())


def _label(path: Path, value: int, dtype: type = np.uint8) -> Path:
    """A 48x32 label map of one ``value``, of ``dtype`` (uint8: mode L; int32: mode I), saved losslessly."""
    Image.fromarray(np.full((32, 48), value, dtype)).save(path)
    return path


def _photo(path: Path) -> Path:
    """A 48x32 colour picture."""
    Image.fromarray(np.full((32, 48, 3), (90, 120, 30), np.uint8)).save(path)
    return path


def test_two_pictures_of_one_name_and_its_one_label_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """pics/a.jpg and pics/a.png with labels/a.png: both pictures were scored against the one label (the label
    counted twice), though it is the truth of one of them only, and the names do not say which. Refused in one
    line naming the first and how many, as two labels of one picture are (8bc7894). Two pictures of one name
    without a label are left out as before; one picture a label stays scored."""
    pics, labels = tmp_path / "pics", tmp_path / "labels"
    pics.mkdir()
    labels.mkdir()
    for stem in "abc":
        _photo(pics / f"{stem}.jpg")
        _label(labels / f"{stem}.png", 1)
    _photo(pics / "a.png")
    _photo(pics / "b.jpeg")
    code, out, err = run(monkeypatch, capsys, "val", str(pics), "--masks", str(labels), "--model", "pvt_tiny-seg",
                         "--imgsz", "64")
    assert code == 2 and out == "", err
    assert err.splitlines()[-1] == (f"error: dataset {pics}: 2 labels in {labels} are of several pictures of their "
                                    f"name in {pics} (a.png: a.jpg and a.png; ...): which one each labels is not "
                                    "said: keep one picture per label")
    (pics / "b.jpeg").unlink()
    with pytest.raises(InputError) as caught:
        _mask_dataset(pics, pics, labels, None, True)
    assert str(caught.value) == (f"dataset {pics}: 1 label in {labels} is of several pictures of its name in {pics} "
                                 "(a.png: a.jpg and a.png): which one it labels is not said: keep one picture per label")
    (labels / "a.png").unlink()  # a.jpg and a.png without a label: left out, as any picture without one
    dataset = _mask_dataset(pics, pics, labels, None, True)
    assert dataset.labels == {str(pics / f"{s}.jpg"): labels / f"{s}.png" for s in "bc"}
    one = tmp_path / "one"  # pictures and labels in one folder: x.jpg and x.jpeg beside the label x.png
    one.mkdir()
    _photo(one / "x.jpg")
    _photo(one / "x.jpeg")
    _label(one / "x.png", 1)
    with pytest.raises(InputError, match=r": 1 label in .* is of several pictures of its name in .* \(x\.png: "
                                         r"x\.jpeg and x\.jpg\): which one it labels"):
        _mask_dataset(one, one, one, None, True)


def test_negative_ids_in_a_label_are_said_once_for_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An int32 TIFF label (mode I) holding -1 (an 'ignore' some tools write) had those pixels ignored without a
    word, where values past the model's classes are said in one warning for the run: said so too, counted, with
    the ids the model's labels hold. The pixels stay ignored: the metrics are those of 255 in their place."""
    from pvt_deploy.api import Model

    pics, labels, same = tmp_path / "pics", tmp_path / "labels", tmp_path / "same"
    for folder in (pics, labels, same):
        folder.mkdir()
    for stem in "abc":
        _photo(pics / f"{stem}.jpg")
    ids = np.full((32, 48), 3, np.int32)
    ids[:, :20] = -1
    Image.fromarray(ids).save(labels / "a.tif")
    _label(labels / "b.tif", -7, np.int32)
    _label(labels / "c.png", 5)
    Image.fromarray(np.where(ids < 0, 255, ids).astype(np.uint8)).save(same / "a.png")  # -1 as 255: ignored
    _label(same / "b.png", 255)
    _label(same / "c.png", 5)
    with Model("pvt_tiny-seg", imgsz=64) as model:
        for reduce, said_ids in ((True, "1-150, 0 ignored: --reduce-zero-label"), (False, "0-149")):
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                report = model.val(pics, masks=labels, reduce_zero_label=reduce)
            warned = [r.getMessage() for r in caplog.records if "negative" in r.getMessage()]
            assert warned == [f"dataset {pics}: 2 of 3 labels hold negative values, no class id (a.tif: -1; its ids "
                              f"are {said_ids}): those pixels are ignored, as 255 is"], caplog.text
            assert report.metrics == model.val(pics, masks=same, reduce_zero_label=reduce).metrics


def _saved(text: str, encoding: str) -> bytes:
    """``text`` as a file saved in ``encoding``: utf8, utf8-bom (Windows Notepad's), utf16-le or utf16-be (their mark
    first, as Windows PowerShell 5's '>' and Out-File write)."""
    marks = {"utf8": b"", "utf8-bom": codecs.BOM_UTF8, "utf16-le": codecs.BOM_UTF16_LE, "utf16-be": codecs.BOM_UTF16_BE}
    return marks[encoding] + text.encode({"utf16-le": "utf-16-le", "utf16-be": "utf-16-be"}.get(encoding, "utf-8"))


ENCODINGS = ("utf8", "utf8-bom", "utf16-le", "utf16-be")


def test_one_reading_of_text_reads_utf8_and_utf16_and_says_what_it_cannot() -> None:
    """decode_text: UTF-8 with its mark or none, UTF-16 LE and BE with their marks, read alike; bytes of none of them
    one line, at the byte of the file (its mark counted); a name's byte that is not UTF-8 as the file system
    gives it where asked (a list's names)."""
    from pvt_deploy.utils.files import decode_text

    text = "0 0.5 0.5 0.2 0.2\r\ncafé: ü\n"
    for encoding in ENCODINGS:
        assert decode_text(_saved(text, encoding)) == text, encoding
    at = text.encode("cp1252").index(b"\xe9")
    neither = "neither UTF-8 nor UTF-16 text"  # a UTF-16 mark says the file is UTF-16 (test_text_files_50: UTF-32's)
    for data, said in ((text.encode("cp1252"), f"{neither}: invalid continuation byte at byte {at}"),
                       (codecs.BOM_UTF8 + text.encode("cp1252"), f"{neither}: invalid continuation byte at byte {at + 3}"),
                       (_saved("ab", "utf16-le") + b"x", "not valid UTF-16 text: truncated data at byte 6"),
                       (codecs.BOM_UTF16_BE + b"\xd8\x00\x00a", "not valid UTF-16 text: illegal UTF-16 surrogate at byte 2")):
        with pytest.raises(ValueError) as caught:
            decode_text(data)
        assert str(caught.value) == said
    assert decode_text(b"caf\xe9.jpg", errors="surrogateescape") == os.fsdecode(b"caf\xe9.jpg")


def test_a_yolo_dataset_saved_as_utf16_is_read_as_in_utf8(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A YOLO dataset whose files a Windows tool saved as UTF-16: its YOLO label files were 'cannot read it ('utf-8'
    codec ...)' and its dataset YAML 'is not a text file', where its .txt split lists were read. The lists, the
    labels, the YAML (its splits and its names) and a --names file are read by one reading, UTF-8 or UTF-16 alike;
    a file in neither is said in one line."""
    from pvt_deploy.data import given_names
    from pvt_deploy.evaluate import open_dataset, yolo_annotations
    from pvt_deploy.export.calibration import dataset_images

    label = "0 0.5 0.5 0.25 0.5\n1 0.1 0.1 0.3 0.1 0.2 0.3\n"
    boxes = {}
    for encoding in ENCODINGS:
        root = tmp_path / encoding
        (root / "images" / "val").mkdir(parents=True)
        (root / "labels" / "val").mkdir(parents=True)
        shutil.copy(sample_image("astronaut"), root / "images" / "val" / "astronaut.jpg")
        (root / "labels" / "val" / "astronaut.txt").write_bytes(_saved(label, encoding))
        (root / "list.txt").write_bytes(_saved("# the pictures\r\nimages/val/astronaut.jpg\r\n", encoding))
        (root / "data.yaml").write_bytes(_saved("val: list.txt\nnames:\n  0: person\n  1: bicycle # vélo\n", encoding))
        (root / "names.txt").write_bytes(_saved("person\nbicycle\n", encoding))
        dataset = open_dataset(root / "data.yaml", "detect", class_names("coco"))
        picture = root / "images" / "val" / "astronaut.jpg"
        assert dataset.images == [picture] and dataset.category_ids[:2] == [1, 2], encoding
        left_out: dict[str, list[str]] = {}
        boxes[encoding] = yolo_annotations(dataset.labels[str(picture)], 1, (100, 200), {0, 1}, left_out)
        assert left_out == {} and given_names(root / "names.txt", 2, "the model") == ["person", "bicycle"], encoding
    np.testing.assert_allclose([a["bbox"] for a in boxes["utf8"]], [[75, 25, 50, 50], [20, 10, 40, 20]])
    assert all(boxes[encoding] == boxes["utf8"] for encoding in ENCODINGS)
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path / "utf16-le" / "data.yaml"), "--model", "pvt_v2_b0",
                         "--imgsz", "160", "--json")
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["images"] == 1
    cp1252 = tmp_path / "cp1252"  # a Windows code page: no UTF-8 or UTF-16 text
    cp1252.mkdir()
    at = "0 0.5 0.5 0.2 0.2 # café\n".index("é")
    for name, text in (("label.txt", "0 0.5 0.5 0.2 0.2 # café\n"), ("data.yaml", "val: list.txt # café\n")):
        (cp1252 / name).write_bytes(text.encode("cp1252"))
    with pytest.raises(InputError) as caught:
        yolo_annotations(cp1252 / "label.txt", 1, (100, 200), {0}, {})
    assert str(caught.value) == (f"label {cp1252 / 'label.txt'}: cannot read it (neither UTF-8 nor UTF-16 text: "
                                 f"invalid continuation byte at byte {at})")
    with pytest.raises(InputError) as caught:
        dataset_images(cp1252 / "data.yaml")
    assert str(caught.value) == (f"dataset {cp1252 / 'data.yaml'}: cannot read it (neither UTF-8 nor UTF-16 text: "
                                 f"invalid continuation byte at byte {at - 4})")
    (cp1252 / "list.txt").write_bytes(_saved("a.jpg\n", "utf16-le") + b"\n")  # a byte short of its last letter
    code, out, err = run(monkeypatch, capsys, "infer", str(cp1252 / "list.txt"), "--model", "pvt_v2_b0-cls")
    assert code == 2 and out == "", err
    assert _said(err).startswith(f"error: cannot read the list {cp1252 / 'list.txt'}: not valid UTF-16 text: "
                                 "truncated data at byte 14")


def test_a_label_of_floats_is_refused_for_what_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A 32-bit float TIFF label (mode F, as GIS tools write rasters) was 'a picture of mode F, not one channel of
    class ids': it is one channel, of floats. Said so, and still refused (whole numbers among them too: a float
    is no class id); a colour label is still a picture of its mode."""
    from pvt_deploy.evaluate import _read_label

    pics, labels = tmp_path / "pics", tmp_path / "labels"
    pics.mkdir()
    labels.mkdir()
    _photo(pics / "a.jpg")
    Image.fromarray(np.full((32, 48), 3.0, np.float32)).save(labels / "a.tif")
    assert Image.open(labels / "a.tif").mode == "F"
    code, out, err = run(monkeypatch, capsys, "val", str(pics), "--masks", str(labels), "--model", "pvt_tiny-seg",
                         "--imgsz", "64")
    assert code == 2 and out == "", err
    assert _said(err[err.index("error:"):]) == (
        f"error: label {labels / 'a.tif'}: 32-bit floating-point values (a picture of mode F), not class ids: save "
        "the ids as whole numbers (an 8 or 16-bit PNG or TIFF)")
    _photo(labels / "b.png")
    with pytest.raises(InputError, match=r"b\.png: a picture of mode RGB, not one channel of class ids$"):
        _read_label(labels / "b.png")
