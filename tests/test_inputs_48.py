"""Inputs as users give them, made for real in tmp_path: a glob that matches only hidden pictures, an mp4 cut in
its trailing index's header, a COCO annotation file given as pictures, a .txt list replaced while it is read, and
a library's message of several lines in a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image
from test_inputs_47 import fragmented_clip
from test_io_sources import http_server  # noqa: F401 - the fixture
from test_tensorrt_build_fake import make_artifact

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import open_source

APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 4000  # a Mac's ._NAME: no picture


def picture(path: Path, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 48, 3), value, np.uint8)).save(path)
    return path


def test_a_glob_that_matches_only_hidden_pictures_says_so_as_a_folder_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of hidden pictures only says they are hidden (test_inputs_47); the glob FOLDER/* of the same
    folder said 'no images found' with the image types, .jpg among them. A glob whose name starts with a dot
    asks for hidden files, and runs them."""
    folder = tmp_path / "from a mac"
    (folder / "._IMG_0001.jpg").parent.mkdir()
    (folder / "._IMG_0001.jpg").write_bytes(APPLE_DOUBLE)
    picture(folder / ".hidden.jpg")
    (folder / "notes.txt").write_text("not a picture\n")
    hint = ("a Mac writes a ._NAME beside each photo it copies (its metadata, no picture); to run a hidden picture, "
            "give it by name or a glob whose name starts with a dot ('{}')")
    for pattern, dotted in (("*", ".*"), ("*.jpg", ".*.jpg")):
        glob = f"{folder}/{pattern}"
        with pytest.raises(InputError) as caught:
            open_source(glob)
        assert caught.value.args[0] == (f"no images found in glob {glob}, only 2 hidden files ({folder}/._IMG_0001.jpg, "
                                        f"{folder}/.hidden.jpg), which a glob leaves out as the shell's does")
        assert caught.value.hint == hint.format(f"{folder}/{dotted}")
        with open_source(f"{folder}/{dotted}") as source:  # as the hint says: the picture, and the Mac's file skipped
            assert [Path(f.path).name for f in source] == [".hidden.jpg"]
    deep = tmp_path / "trips"  # in folders below, by a recursive glob: the hidden picture of a folder
    picture(deep / "day1" / ".IMG_0002.jpg")
    with pytest.raises(InputError) as caught:
        open_source(f"{deep}/**/*.jpg")
    assert caught.value.args[0].endswith(f"only 1 hidden file ({deep}/day1/.IMG_0002.jpg), which a glob leaves out "
                                         "as the shell's does")
    with open_source(f"{deep}/**/.*.jpg") as source:
        assert [Path(f.path).name for f in source] == [".IMG_0002.jpg"]
    picture(deep / "day1" / "IMG_0003.jpg")  # beside a picture that runs, left out as a folder leaves it
    with open_source(f"{deep}/**/*.jpg") as source:
        assert [Path(f.path).name for f in source] == ["IMG_0003.jpg"]
    code, out, err = run(monkeypatch, capsys, "infer", f"{folder}/*", "--model", "pvt_v2_b0-cls", "--no-save")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "only 2 hidden files" in err and ".jpg, .jpeg" not in err


def test_a_fragmented_mp4_cut_in_its_trailing_index_header_runs_without_a_warning_where_the_cut_tells_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """88abc4d made a cut in the mfra box (the fragments' index for seeking, after every frame) quiet; a cut in
    its first 8 bytes, its header, still warned 'ends inside its last box's header'. Past 5 bytes the header
    names the box ("mf", "mfr": no other top-level box's kind begins so), and the file holds every frame. Before
    that (the size, then "m") it is as much the header of the next fragment's moof, whose frames the cut lost,
    which nothing else shows (a fragmented mp4 declares only the fragments it holds): that still warns."""
    whole = fragmented_clip(tmp_path / "whole.mp4")
    data = whole.read_bytes()
    with open_source(whole) as source:
        pictures = [f.image for f in source]
    mfra, moof = data.rindex(b"mfra") - 4, data.rindex(b"moof") - 4
    cut = tmp_path / "cut.mp4"

    def read(end: int) -> tuple[int, str | None, str]:
        cut.write_bytes(data[:end])
        caplog.clear()
        with caplog.at_level(logging.WARNING), open_source(cut) as source:
            frames = list(source)
        assert all(np.array_equal(f.image, p) for f, p in zip(frames, pictures, strict=False))
        return len(frames), source.error, caplog.text  # type: ignore[attr-defined]

    for header in (6, 7):
        assert read(mfra + header) == (20, None, ""), header
    for header in range(1, 6):  # the size and "m" of the index, or of a moof: not told apart
        frames, error, said = read(mfra + header)
        assert frames == 20 and error == f"the file ends inside its last box's header, {header} of 8 bytes " \
            "(truncated file?)" and error in said
    for header in range(1, 8):  # the next fragment's header: its frames are lost, and said
        frames, error, said = read(moof + header)
        assert frames == 15 and error == f"the file ends inside its last box's header, {header} of 8 bytes " \
            "(truncated file?)" and error in said


COCO = ('{"info": {"description": "mine"}, "licenses": [], "images": [{"id": 1, "file_name": "a.jpg", "width": 48, '
        '"height": 32}], "annotations": [], "categories": [{"id": 1, "name": "person"}]}')


def test_a_coco_annotation_file_given_as_pictures_says_what_it_is_and_what_takes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``check --images instances.json`` (and infer, export --calib) said 'neither a readable image nor a video',
    after reading the file whole as a picture and probing it as a video. It is a COCO annotation file, which val
    takes; its pictures are in the folder beside, as COCO lays them out. Any other JSON is said to be JSON."""
    coco = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    coco.parent.mkdir(parents=True)
    coco.write_text(COCO)
    wanted = (f"{coco} looks like a COCO annotation file (JSON), not pictures or a video (pvt-deploy val takes it: "
              f"pvt-deploy val {coco} --model EXPORT; to run or compare on its pictures, {{}})")
    with pytest.raises(InputError) as caught:
        open_source(coco)
    assert str(caught.value) == wanted.format("give the folder they are in")
    picture(tmp_path / "coco" / "val2017" / "a.jpg")
    with pytest.raises(InputError) as caught:
        open_source(coco)
    assert str(caught.value) == wanted.format(f"give their folder ({tmp_path / 'coco' / 'val2017'})")
    export = make_artifact(tmp_path / "export")
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(export), "--images", str(coco))
    assert code == 2 and out == "" and err == f"error: {wanted.format(f'give their folder ({coco.parents[1]}/val2017)')}\n"
    roboflow = tmp_path / "_annotations.coco.json"  # a BOM, and categories first, as exporters write them
    roboflow.write_bytes(b"\xef\xbb\xbf" + b'\n{"categories": [], "images": [], "annotations": []}')
    with pytest.raises(InputError, match="looks like a COCO annotation file"):
        open_source(roboflow)
    results = tmp_path / "predictions.json"  # a COCO results list, or any other JSON: JSON, and what to give
    results.write_text('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]')
    with pytest.raises(InputError) as caught:
        open_source(results)
    assert str(caught.value) == (f"{results} is a JSON file, not pictures or a video (give an image or video file, a "
                                 "folder or glob of images, a .txt list, a URL or a camera)")
    misnamed = picture(tmp_path / "photo.jpg").rename(tmp_path / "photo.json")  # a picture's bytes still run
    with open_source(misnamed) as source:
        assert [f.image.shape for f in source] == [(32, 48, 3)]


def test_a_list_replaced_as_it_is_opened_is_read_as_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .txt list was told a list by one read of it and listed by another: replaced in between (a script that
    writes it anew and renames it into place, as safe writers do), its new bytes were read for names. Here it is
    replaced by a picture the moment it is first opened: the list as it was is read, its two pictures run,
    where the picture's bytes were read for names ('no such file: ...')."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"{picture(tmp_path / 'a.jpg', 10)}\n{picture(tmp_path / 'b.jpg', 20)}\n")
    replacement = picture(tmp_path / "new.jpg", 30).rename(tmp_path / "new.txt")  # a picture under .txt
    real_open = Path.open
    opened: list[Path] = []

    def open_then_replaced(self: Path, *args: object, **kwargs: object) -> object:
        handle = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        if self == listing and not opened:
            opened.append(self)
            replacement.replace(listing)  # the open file still reads the list that was there
        return handle

    monkeypatch.setattr(Path, "open", open_then_replaced)
    with open_source(listing) as source:
        assert [Path(f.path).name for f in source] == ["a.jpg", "b.jpg"]
    assert opened == [listing]
    with open_source(listing) as source:  # opened again, it is the picture it is now
        assert [f.image[0, 0, 0] for f in source] == [30]


def test_a_picture_past_opencvs_size_limits_is_ffmpegs_picture_on_disk_as_at_a_url(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], http_server: tuple[str, Path]) -> None:  # noqa: F811
    """OpenCV raises for a picture wider or taller than 2^20 pixels (a line-scan camera's strip, a long panorama),
    where it returns nothing for a file it cannot decode: its error, two lines ('... in function
    'validateInputImageSize'\\n'), ended infer of a folder in a traceback, the rest of its pictures lost. The file
    on disk was then skipped with a warning, where the same file at a URL was FFmpeg's picture: both are FFmpeg's
    picture now, the pixels it holds. One FFmpeg cannot decode either (cut short after its header) is the
    picture's skip warning, OpenCV's words on one line (not a '\\n' written into it), and what raises the limits."""
    folder = tmp_path / "scans"
    strip = folder / "strip.bmp"
    folder.mkdir()
    row = (np.arange(1100000) % 251).astype(np.uint8)  # 1.1 MB
    Image.fromarray(row[None]).save(strip)
    cut = folder / "cut.bmp"
    cut.write_bytes(strip.read_bytes()[:4096])  # its header, 1100000 wide, and 3 kB of its pixels
    picture(folder / "photo.jpg")
    with caplog.at_level(logging.WARNING), open_source(folder) as source:
        pictures = {Path(f.path).name: f.image for f in source}
    assert sorted(pictures) == ["photo.jpg", "strip.bmp"]
    assert pictures["strip.bmp"].shape == (1, 1100000, 3) and (pictures["strip.bmp"] == row[None, :, None]).all()
    url, _ = http_server  # the same file at a URL
    with open_source(f"{url}/scans/strip.bmp") as source:
        (frame,) = list(source)
    assert np.array_equal(frame.image, pictures["strip.bmp"])
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert message.startswith(f"skipping cannot decode image {cut} (OpenCV(") and "CV_IO_MAX_IMAGE_WIDTH" in message
    assert message.endswith(") (past OpenCV's size limits, 1048576 pixels a side and 1073741824 in all: the "
                            "environment variables OPENCV_IO_MAX_IMAGE_WIDTH, OPENCV_IO_MAX_IMAGE_HEIGHT and "
                            "OPENCV_IO_MAX_IMAGE_PIXELS raise them)")
    assert "\n" not in message and "  " not in message
    code, out, err = run(monkeypatch, capsys, "infer", str(cut), "--model", "pvt_v2_b0-cls", "--no-save")
    assert code == 2 and out == "" and err.startswith(f"error: cannot decode image {cut} (OpenCV(")
    assert err.count("\n") == 1 and "\\n" not in err
