"""Faults found re-reading session 49's change outside io/sources.py (helper CR)."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from pvt_deploy.data import class_names
from pvt_deploy.errors import InputError
from pvt_deploy.evaluate import _coco_dataset

COCO = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [],
        "categories": [{"id": 1, "name": "person"}]}


@pytest.mark.parametrize("mark", [b"", codecs.BOM_UTF8])
def test_a_coco_file_of_a_byte_no_text_names_that_bytes_place_in_the_file(tmp_path: Path, mark: bytes) -> None:
    """val said where a COCO file stops being UTF-8 ('neither UTF-8 nor UTF-16 text: ... at byte N') by json's
    count, which starts after a UTF-8 byte-order mark: 3 bytes short for a file Windows Notepad saved, where
    every other text file pvt-deploy reads (decode_text) counts in the file, mark and all. The place is the
    byte's own; fails before with the mark (byte 138 for 141)."""
    body = json.dumps({**COCO, "info": {"description": "caf"}}).encode()
    bad = body.replace(b'"caf"', b'"caf\xe9"')  # a Windows code page's e acute: no UTF-8
    path = tmp_path / "instances.json"
    path.write_bytes(mark + bad)
    at = (mark + bad).index(b"\xe9")
    with pytest.raises(InputError, match=rf"{path}: cannot read it \(neither UTF-8 nor UTF-16 text: "
                                         rf"invalid continuation byte at byte {at}\)$"):
        _coco_dataset(path, class_names("coco"), None, None)


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_coco_file_with_its_byte_order_mark_is_read(tmp_path: Path, codec: str) -> None:
    """What val read before the fault above was mended, it reads: UTF-8, UTF-16 and UTF-32 with their marks."""
    (tmp_path / "a.jpg").write_bytes(b"")
    path = tmp_path / "instances.json"
    mark = "\ufeff" if codec == "utf-16-be" else ""  # utf-16, utf-32 and utf-8-sig write their own
    path.write_bytes((mark + json.dumps({**COCO, "info": {"description": "café"}})).encode(codec))
    dataset = _coco_dataset(path, class_names("coco"), tmp_path, None)
    assert [p.name for p in dataset.images] == ["a.jpg"]
