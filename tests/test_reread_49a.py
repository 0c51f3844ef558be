"""Re-reading session 49's changes to io/sources.py, utils/ and errors.py (helper CQ): what they left wrong."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pvt_deploy.io.sources import _file_list, _read_list, open_source


@pytest.mark.parametrize("codec", ["utf-32-be", "utf-32-le", "utf-16-be", "utf-16-le", "utf-8"])
def test_a_list_in_any_text_decode_text_reads_is_taken_for_a_list(codec: str, tmp_path: Path) -> None:
    """e0e2e07 has decode_text read a list saved as UTF-32, but whether a .txt file is a list at all (_text: no NUL
    byte, or UTF-16's mark) knew UTF-16's marks alone: UTF-32's big-endian one (00 00 FE FF) begins with neither, so
    such a list was no list (_read_list None) and was read as a picture. Any list decode_text reads is one."""
    picture = tmp_path / "a.png"
    assert cv2.imwrite(str(picture), np.full((6, 10, 3), 200, np.uint8))
    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeff".encode(codec) + "a.png\n# a note\n".encode(codec))
    assert _file_list(listing)
    assert _read_list(listing) == [str(picture)]
    source = open_source(str(listing))
    frames = list(source)
    assert len(frames) == 1
    assert frames[0].path == str(picture)
    assert frames[0].image.shape == (6, 10, 3) and int(frames[0].image[0, 0, 0]) == 200
