"""A review of this session's picture reading (session 49): a photo's EXIF orientation, 1 to 8, read from a JPEG, a
PNG, a TIFF and a WebP as Pillow's exif_transpose shows it, on the file, its bytes and its header's size; every kind
of PNG turned by its orientation as its unturned pixels are; a damaged orientation read unturned. Since a4e57f5 a
PNG is turned by pvt-deploy (_exif_oriented), not by OpenCV's decode: these hold that turn to a reference that is
not pvt-deploy's, pixel for pixel."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import picture_size, read_encoded, read_image

# What each EXIF orientation does to the stored pixels to show them (Pillow's exif_transpose, as arrays)
SHOWN: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1)}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiff_exif(orientation: int) -> bytes:
    """An EXIF block (little-endian TIFF) of one tag, the orientation, as a PNG's eXIf chunk holds it."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\0" + struct.pack("<IH", 8, 1) + entry + b"\0\0\0\0"


def with_exif(png: bytes, exif: bytes) -> bytes:
    """``png`` with an eXIf chunk of ``exif`` right after its header (IHDR), before its pixels."""
    return png[:33] + png_chunk(b"eXIf", exif) + png[33:]


def test_every_orientation_of_a_jpeg_png_tiff_and_webp_reads_as_pillow_shows_it(tmp_path: Path) -> None:
    """A phone's photo says how to show it in its EXIF orientation: 8 of them, turns and mirrors. Each reads as
    Pillow's exif_transpose shows it, from the file and from its bytes, and picture_size (the header alone) says
    its shape: a JPEG's and a WebP's EXIF block, a PNG's eXIf chunk (turned by pvt-deploy, not OpenCV, since
    a4e57f5), a TIFF's tag."""
    rng = np.random.default_rng(49)
    stored = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # noise: any wrong turn or mirror is far off
    checked = 0
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        picture = Image.fromarray(stored)
        files = {"jpg": {"exif": exif.tobytes(), "quality": 95}, "png": {"exif": exif.tobytes()},
                 "webp": {"exif": exif.tobytes(), "lossless": True}, "tiff": {"tiffinfo": {0x0112: orientation}}}
        for ext, options in files.items():
            path = tmp_path / f"o{orientation}.{ext}"
            picture.save(path, **options)
            with Image.open(path) as opened:
                shown = np.asarray(ImageOps.exif_transpose(opened).convert("RGB")).astype(int)
            if ext != "jpg":  # lossless: the stored pixels, as the orientation shows them
                assert np.array_equal(shown, SHOWN[orientation](stored)), path.name
            for image in (read_image(path), read_encoded(path.read_bytes())):
                assert image.shape == shown.shape, path.name
                # the same JPEG decoded by another build of libjpeg may differ by a level or two
                assert np.abs(image.astype(int) - shown).max() <= (8 if ext == "jpg" else 0), path.name
            assert picture_size(path) == shown.shape[:2], path.name
            checked += 1
    assert checked == 32


@pytest.mark.parametrize("kind", ["rgb16", "rgba16", "gray16", "gray", "gray_alpha", "palette", "1-bit", "animated"])
def test_each_kind_of_png_is_turned_by_its_orientation_as_its_pixels_read_unturned(tmp_path: Path,
                                                                                   kind: str) -> None:
    """A PNG's orientation (its eXIf chunk before its pixels) turns the picture it decodes to, whatever its kind:
    16 bits a channel, gray, gray and alpha, a palette, 1 bit, an animated PNG's first frame. Each of the 8 reads as
    the PNG without the chunk reads, turned and mirrored as the orientation says, from the file and its bytes, and
    picture_size says that shape."""
    rng = np.random.default_rng(7)
    if kind in ("rgb16", "rgba16", "gray16"):
        channels = {"rgb16": (3,), "rgba16": (4,), "gray16": ()}[kind]
        ok, encoded = cv2.imencode(".png", rng.integers(0, 65536, (5, 9, *channels), dtype=np.uint16))
        assert ok
        png = encoded.tobytes()
    else:
        picture = Image.fromarray(rng.integers(0, 256, (5, 9, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        if kind == "animated":
            picture.save(buffer, "PNG", save_all=True, append_images=[Image.fromarray(255 - np.asarray(picture))])
        else:
            picture.convert({"gray": "L", "gray_alpha": "LA", "palette": "P", "1-bit": "1"}[kind]).save(buffer, "PNG")
        png = buffer.getvalue()
    assert png[12:16] == b"IHDR"
    unturned = read_encoded(png)
    assert unturned.shape == (5, 9, 3) and unturned.std() > 0
    for orientation in range(1, 9):
        data = with_exif(png, tiff_exif(orientation))
        path = tmp_path / f"{kind}-{orientation}.png"
        path.write_bytes(data)
        expected = SHOWN[orientation](unturned)
        for image in (read_image(path), read_encoded(data)):
            assert image.shape == expected.shape and np.array_equal(image, expected), (kind, orientation)
        assert picture_size(path) == expected.shape[:2], (kind, orientation)


def test_a_png_with_a_damaged_orientation_reads_unturned_and_a_cut_header_is_one_line(tmp_path: Path) -> None:
    """An eXIf chunk that says no orientation of 1-8 (0, 9, bytes that are no EXIF, an empty chunk) turns nothing:
    the PNG reads as stored, picture_size agreeing, with no error; a PNG cut within its header is one line."""
    stored = np.random.default_rng(3).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "PNG")
    png = buffer.getvalue()
    damaged = {"zero": tiff_exif(0), "nine": tiff_exif(9), "noise": bytes(range(7, 250, 6)),
               "cut": tiff_exif(6)[:12], "empty": b""}
    for name, exif in damaged.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(with_exif(png, exif))
        assert np.array_equal(read_image(path), stored), name
        assert np.array_equal(read_encoded(path.read_bytes()), stored), name
        assert picture_size(path) == (4, 6), name
    cut = tmp_path / "cut.png"
    cut.write_bytes(png[:20])
    with pytest.raises(InputError) as error:
        read_image(cut)
    assert str(error.value) == f"cannot decode image {cut} (corrupt or not an image)"
    assert picture_size(cut) is None
