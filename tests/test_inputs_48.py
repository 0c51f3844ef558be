"""Inputs as users give them, made for real in tmp_path: a glob that matches only hidden pictures, an mp4 cut in
its trailing index's header, a COCO annotation file given as pictures, a .txt list replaced while it is read, and
a library's message of several lines in a warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image

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
