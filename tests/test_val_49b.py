"""``pvt-deploy val``'s faults helper CD found in session 49: two pictures of one name scored against one label,
negative ids in a label, text files (lists, YOLO labels, dataset YAMLs) in UTF-16, a float label map."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image

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
