"""Session 50's leftovers of reading text files (helper CW): a text file is read by one reader that says in one line
which file it cannot read and where, and what a file marked UTF-32 is."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from pvt_deploy.errors import InputError
from pvt_deploy.utils.files import decode_text

BROKEN_UTF32 = (  # (bytes, what decode_text says of them)
    (codecs.BOM_UTF32_BE + "ab".encode("utf-32-be") + b"\x00\x11\x00\x00",
     "not valid UTF-32 text: code point not in range(0x110000) at byte 12"),
    (codecs.BOM_UTF32_LE + "val: x\n".encode("utf-32-le") + b"\x00\xd8\x00\x00",
     "not valid UTF-32 text: code point in surrogate code point range(0xd800, 0xe000) at byte 32"),
    (codecs.BOM_UTF32_LE + "ab".encode("utf-32-le") + b"c\x00", "not valid UTF-32 text: truncated data at byte 12"),
)


@pytest.mark.parametrize(("data", "said"), BROKEN_UTF32, ids=["beyond-unicode", "surrogate", "truncated"])
def test_a_broken_utf32_file_is_said_to_be_broken_utf32(data: bytes, said: str) -> None:
    """A file with UTF-32's byte-order mark and a code unit that is no character was 'neither UTF-8 nor UTF-16
    text', where its mark says it is UTF-32 (which it reads): it is said to be UTF-32 gone wrong, at the byte of
    the file, its mark counted."""
    with pytest.raises(ValueError) as caught:
        decode_text(data)
    assert str(caught.value) == said


def test_every_text_file_read_says_in_one_line_which_file_it_cannot_read_and_where(tmp_path: Path) -> None:
    """The five readers of a user's text file (a calibration dataset YAML, a dataset YAML's names, a --names file,
    a COCO file, a YOLO label) each decoded the file and said its own words of a fault; one reader (read_text) says
    it the same way for all: what the file is, the file, and why (the byte, or the system's reason)."""
    from pvt_deploy.data import given_names, yaml_names
    from pvt_deploy.evaluate import _coco_dataset, yolo_annotations
    from pvt_deploy.export.calibration import dataset_images

    data, said = BROKEN_UTF32[1]
    files = {name: tmp_path / name for name in ("data.yaml", "names.txt", "instances.json", "label.txt")}
    for path in files.values():
        path.write_bytes(data)
    readers = (
        (lambda p: dataset_images(p), files["data.yaml"], "dataset "),
        (lambda p: yaml_names(p), files["data.yaml"], "dataset "),
        (lambda p: given_names(p, 2, "the model"), files["names.txt"], "names "),
        (lambda p: _coco_dataset(p, ["person"], None, None), files["instances.json"], "dataset "),
        (lambda p: yolo_annotations(p, 1, (10, 10), {0}, {}), files["label.txt"], "label "),
    )
    for read, path, what in readers:
        with pytest.raises(InputError) as caught:
            read(path)
        assert str(caught.value) == f"{what}{path}: cannot read it ({said})"
    folder = tmp_path / "folder.txt"  # one the system cannot read: its reason, not OSError's text of the path again
    folder.mkdir()
    with pytest.raises(InputError) as caught:
        yolo_annotations(folder, 1, (10, 10), {0}, {})
    assert str(caught.value) == f"label {folder}: cannot read it (Is a directory)"

