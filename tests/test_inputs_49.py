"""Pictures, lists and messages as users meet them, made for real in tmp_path: a file's name that holds two spaces
in a row quoted in a library's message, a large picture whose header is read, a
PNG whose EXIF follows its pixels."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pvt_deploy.errors import InputError, stop_reason
from pvt_deploy.io.sources import _check_memory_to_decode, picture_size, read_encoded, read_image
from pvt_deploy.utils import joined_lines


def test_a_name_in_a_library_message_keeps_its_spaces_and_its_lines_are_joined(tmp_path: Path) -> None:
    """joined_lines made every run of white space one space, within a file's name the message quotes too: the
    system's 'No such file or directory: .../my  list.txt' (two spaces) named 'my list.txt', a file that is not
    the one given; so did a stopped run's reason (stop_reason). The lines of a library's message are still
    joined into one, each with the white space at its ends (OpenCV's error, which ends in a newline)."""
    with pytest.raises(OSError) as missing:
        (tmp_path / "my  list.txt").open("rb")
    assert joined_lines(missing.value) == f"[Errno 2] No such file or directory: '{tmp_path / 'my  list.txt'}'"
    with pytest.raises(cv2.error) as opencv:
        cv2.cvtColor(np.zeros((2, 2, 5), np.uint8), cv2.COLOR_BGR2GRAY)
    lines = str(opencv.value).splitlines()
    assert len(lines) > 1 and joined_lines(opencv.value) == " ".join(line.strip() for line in lines if line.strip())
    assert joined_lines("first line  \n\n   second  'a  b.jpg'\r\nthird\n") == "first line second  'a  b.jpg' third"
    said = InputError(f"cannot write {tmp_path / 'out  put.mp4'}:\n  No space left on device")
    assert stop_reason(said) == f"cannot write {tmp_path / 'out  put.mp4'}: No space left on device"


def test_a_pictures_header_is_read_without_a_copy_of_its_bytes(tmp_path: Path) -> None:
    """The memory check before a picture is decoded (_check_memory_to_decode: its header's size, its pages) read the
    header from a copy of all the file's bytes, on every picture: 50 MB more for a JPEG followed by 50 MB (a phone's
    photo with its gain map after it, as an MPO holds one), where the header is some hundred bytes. It reads them
    where they are; the picture decodes as before."""
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(photo, quality=95)
    photo.write_bytes(photo.read_bytes() + bytes(50_000_000))
    data = np.fromfile(photo, np.uint8)
    tracemalloc.start()
    try:
        frames = _check_memory_to_decode(data, photo)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames == 1 and peak < 5_000_000, peak
    image = read_image(photo)
    assert image.shape == (60, 80, 3) and abs(int(image.mean()) - 90) <= 1


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_png_whose_exif_follows_its_pixels_is_not_turned(tmp_path: Path) -> None:
    """A PNG whose eXIf chunk comes after its pixels (IDAT), which the PNG specification (3rd edition) does not
    allow and browsers show unturned, was turned by OpenCV's decode (orientation 6: a quarter clockwise), while
    picture_size had it unturned: val sized it one way and ran it the other. It reads as stored, as every browser
    shows it; the same chunk before the pixels still turns it."""
    stored = (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 3).astype(np.uint8)  # RGB, each pixel its own
    rows = b"".join(b"\0" + stored[y].tobytes() for y in range(stored.shape[0]))
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 6, 4, 8, 2, 0, 0, 0))  # 6x4, 8-bit RGB
    pixels = png_chunk(b"IDAT", zlib.compress(rows))
    exif = png_chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\x01" + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\0\0\0\0")
    start, end = b"\x89PNG\r\n\x1a\n" + header, png_chunk(b"IEND", b"")
    late, early = tmp_path / "late.png", tmp_path / "early.png"
    late.write_bytes(start + pixels + exif + end)
    early.write_bytes(start + exif + pixels + end)
    assert np.array_equal(read_image(late), stored) and picture_size(late) == (4, 6)
    assert np.array_equal(read_encoded(late.read_bytes()), stored)
    assert np.array_equal(read_image(early), np.rot90(stored, -1)) and picture_size(early) == (6, 4)


def test_an_animated_png_is_turned_by_its_exif_as_a_still_one_is(tmp_path: Path) -> None:
    """An animated PNG with its orientation (6) in an eXIf chunk before its pixels, as Pillow writes one, ran its first
    frame as stored: OpenCV's APNG decoder (4.11 on) reads no EXIF, where its libpng one (4.10) turned it, as it
    turns a still PNG, and picture_size had it turned. A PNG is turned by its header's eXIf, whichever OpenCV."""
    first = (np.arange(20 * 30 * 3).reshape(20, 30, 3) % 251).astype(np.uint8)
    frames = [Image.fromarray(first), Image.fromarray(255 - first)]
    exif = Image.Exif()
    exif[0x0112] = 6
    anim = tmp_path / "anim.png"
    frames[0].save(anim, save_all=True, append_images=frames[1:], exif=exif.tobytes())
    data = anim.read_bytes()
    assert data.index(b"eXIf") < data.index(b"acTL") < data.index(b"IDAT") < data.index(b"fdAT")
    image = read_image(anim)
    assert np.array_equal(image, np.rot90(first, -1)) and picture_size(anim) == image.shape[:2] == (30, 20)
