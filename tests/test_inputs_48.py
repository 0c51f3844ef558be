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
