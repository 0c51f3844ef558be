"""``pvt-deploy val`` of a segmenter with ``--masks`` given a folder of pictures (session 50, helper CY): Cityscapes'
pictures are PNGs (leftImg8bit/), which a labels folder was read as holding, so the line spoke of labels that no
picture had (or of labels saved as JPEG, for a folder of JPEG photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image

from pvt_deploy.errors import InputError
from pvt_deploy.evaluate import _mask_dataset

HOLDS = ("holds pictures ({first}), not label maps (one channel of class ids each, of its picture's name, as ADE20K's "
         "annotations/): give --masks the folder of the labels")


def _photo(path: Path) -> Path:
    """A 48x32 colour picture (RGB), as Cityscapes' leftImg8bit PNGs are."""
    Image.fromarray(np.full((32, 48, 3), (90, 120, 30), np.uint8)).save(path)
    return path


def _label(path: Path, value: int = 7) -> Path:
    """A 48x32 label map: one channel of class ids (mode L), as Cityscapes' gtFine *_labelIds PNGs are."""
    Image.fromarray(np.full((32, 48), value, np.uint8)).save(path)
    return path


def _cityscapes(root: Path) -> tuple[Path, Path]:
    """Cityscapes' layout, one city of its val split: (its pictures' folder, its labels' folder)."""
    pictures, labels = root / "leftImg8bit" / "val" / "frankfurt", root / "gtFine" / "val" / "frankfurt"
    pictures.mkdir(parents=True)
    labels.mkdir(parents=True)
    for stem in ("frankfurt_000000_000294", "frankfurt_000000_000576"):
        _photo(pictures / f"{stem}_leftImg8bit.png")
        _label(labels / f"{stem}_gtFine_labelIds.png")
        _photo(labels / f"{stem}_gtFine_color.png")  # its colours, beside: not the one of the labels to judge
    return pictures, labels


def test_masks_given_the_pictures_folder_says_it_holds_pictures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``val leftImg8bit/val/frankfurt --masks leftImg8bit/val/frankfurt``: each PNG picture was taken for the label
    of its name beside it, and the line said 'no picture in X has a label PNG or TIFF of its name in X'."""
    pictures, _ = _cityscapes(tmp_path)
    first = "frankfurt_000000_000294_leftImg8bit.png: RGB, ..."
    code, out, err = run(monkeypatch, capsys, "val", str(pictures), "--masks", str(pictures), "--model",
                         "pvt_tiny-seg", "--imgsz", "64")
    assert (code, out) == (2, ""), err
    assert err.splitlines()[-1] == f"error: dataset {pictures}: the masks folder {pictures} {HOLDS.format(first=first)}"
    # the pictures elsewhere, --masks given Cityscapes' pictures: the same, not 'no picture ... has a label'
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "frankfurt_000000_000294.jpg")
    with pytest.raises(InputError) as caught:
        _mask_dataset(photos, photos, pictures, None, True)
    assert str(caught.value) == f"dataset {photos}: the masks folder {pictures} {HOLDS.format(first=first)}"


def test_masks_given_a_folder_of_jpeg_photos_says_it_holds_pictures_not_jpeg_labels(tmp_path: Path) -> None:
    """--masks given ADE20K's images/ (JPEG photos): the line said its labels were JPEG files, to be saved as PNG. A
    gray JPEG is still a label saved lossy (test_val_48), and a folder of nothing Pillow reads is judged by names."""
    pictures, jpegs = tmp_path / "pictures", tmp_path / "jpegs"
    pictures.mkdir()
    jpegs.mkdir()
    _photo(pictures / "ADE_val_00000001.png")
    _photo(jpegs / "ADE_val_00000001.jpg")
    with pytest.raises(InputError) as caught:
        _mask_dataset(pictures, pictures, jpegs, None, True)
    assert str(caught.value) == f"dataset {pictures}: the masks folder {jpegs} " + HOLDS.format(
        first="ADE_val_00000001.jpg: RGB")
    Image.fromarray(np.full((32, 48), 7, np.uint8)).save(jpegs / "ADE_val_00000001.jpg")
    with pytest.raises(InputError, match=r"its labels in .* are JPEG files \(ADE_val_00000001\.jpg\)"):
        _mask_dataset(pictures, pictures, jpegs, None, True)
    (jpegs / "ADE_val_00000001.jpg").write_bytes(b"not a picture")
    with pytest.raises(InputError, match=r"its labels in .* are JPEG files"):
        _mask_dataset(pictures, pictures, jpegs, None, True)


def test_pictures_and_labels_of_other_names_in_one_folder_say_the_pictures_are_taken_for_labels(
        tmp_path: Path) -> None:
    """Cityscapes' pictures and labels in one folder (x_leftImg8bit.png, x_gtFine_labelIds.png), given as pictures
    and --masks: every PNG there is a label beside its picture, so none was scored, and the line said no picture had
    a label. It says the PNG pictures were taken for labels, and that a label is named as its picture."""
    one = tmp_path / "one"
    one.mkdir()
    for stem in ("a", "b"):
        _photo(one / f"{stem}_leftImg8bit.png")
        _label(one / f"{stem}_gtFine_labelIds.png")
    with pytest.raises(InputError) as caught:
        _mask_dataset(one, one, one, None, True)
    assert str(caught.value) == (
        f"dataset {one}: its PNG or TIFF pictures (a_leftImg8bit.png: RGB, ...) are taken for labels in the one "
        "folder of pictures and labels, and no label has a picture of its name: give the labels a folder of their own "
        "(--masks), each of its picture's name")
    # the labels in a folder of their own, of their pictures' names: read
    labels = tmp_path / "labels"
    labels.mkdir()
    for stem in ("a", "b"):
        (one / f"{stem}_gtFine_labelIds.png").rename(labels / f"{stem}_leftImg8bit.png")
    dataset = _mask_dataset(one, one, labels, None, True)
    assert dataset.labels == {str(one / f"{s}_leftImg8bit.png"): labels / f"{s}_leftImg8bit.png" for s in "ab"}
    # Cityscapes' labels folder (its label maps and their colours), of names other than the pictures': as before
    _, gtfine = _cityscapes(tmp_path / "cityscapes")
    with pytest.raises(InputError) as caught:
        _mask_dataset(one, one, gtfine, None, True)
    assert str(caught.value) == f"dataset {one}: no picture in {one} has a label PNG or TIFF of its name in {gtfine}"
