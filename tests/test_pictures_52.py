"""Session 52's damaged pictures (helper DS): a JPEG or QOI cut short before its end marker, a PNG libpng refuses,
and a picture at a URL no decoder reads by its bytes are each said in one warning naming them, and libpng's own line
no longer reaches stderr."""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from test_io_sources import http_server  # noqa: F401 - the fixture
from test_pictures_51 import run_imported_inside_catch_warnings

from pvt_deploy.assets import sample_image
from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import open_source, read_encoded, read_image

SAID = "is damaged (cut short or corrupt): read with its unreadable parts concealed, and its results may be off there"


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings logged, each cleared once read."""
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    return said


def _qoi(rgb: np.ndarray) -> bytes:
    """``rgb`` as a QOI file, written by FFmpeg's encoder."""
    codec = av.CodecContext.create("qoi", "w")
    codec.width, codec.height, codec.pix_fmt, codec.time_base = rgb.shape[1], rgb.shape[0], "rgb24", Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return b"".join(bytes(packet) for packet in codec.encode(frame) + codec.encode(None))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_of_a_bad_filter(rgb: np.ndarray) -> bytes:
    """``rgb`` as an 8-bit RGB PNG whose tenth row names filter 7 (there are five, 0-4), its chunks' checksums
    right: what a bit flipped before the file was written leaves. libpng refuses it ('libpng error: bad adaptive
    filter value' on stderr); FFmpeg decodes it."""
    height, width = rgb.shape[:2]
    rows = bytearray(b"".join(b"\0" + rgb[y].tobytes() for y in range(height)))
    rows[10 * (3 * width + 1)] = 7
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(bytes(rows)))
            + _png_chunk(b"IEND", b""))


def test_a_jpeg_cut_by_a_few_bytes_is_said_damaged_and_a_whole_or_padded_one_is_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """FFmpeg's err_detect=explode, which told a JPEG cut short, passes one cut by a few hundred bytes or less: read
    with its last rows grey or repeated, and nothing said. A JPEG whose data stops before its end marker (FF D9) is
    damaged: one warning naming it, and a folder's run goes on to its next picture. A whole JPEG says nothing, nor
    one with bytes after its end (padding, the video a phone's motion photo appends), nor a progressive one. Fails
    before (no warning for the cuts of 2 and 100 bytes)."""
    whole = Path(sample_image("astronaut")).read_bytes()
    assert whole.endswith(b"\xff\xd9")
    folder = tmp_path / "shots"
    folder.mkdir()
    for cut in (2, 100, 3000):
        (folder / f"cut{cut}.jpg").write_bytes(whole[:-cut])
    rgb = read_image(sample_image("astronaut"))
    progressive = io.BytesIO()
    Image.fromarray(rgb).save(progressive, "JPEG", progressive=True, quality=80)
    clip = Path(sample_image("astronaut")).parent / "sample.mp4"
    (folder / "padded.jpg").write_bytes(whole + bytes(300))
    (folder / "motion.jpg").write_bytes(whole + clip.read_bytes()[:50_000])
    (folder / "progressive.jpg").write_bytes(progressive.getvalue())
    with caplog.at_level(logging.WARNING, "pvt_deploy"):
        for cut in (2, 100, 3000):
            image = read_image(folder / f"cut{cut}.jpg")
            assert image.shape == rgb.shape
            assert np.abs(image[:400].astype(int) - rgb[:400]).mean() < 3  # the rows before the cut, as whole (FFmpeg)
            assert _said(caplog) == [f"{folder / f'cut{cut}.jpg'} {SAID}"]
        for name in ("padded.jpg", "motion.jpg", "progressive.jpg"):
            assert read_image(folder / name).shape == rgb.shape
        assert np.array_equal(read_image(folder / "padded.jpg"), rgb)
        assert _said(caplog) == []
        with open_source(folder) as source:
            read = [Path(frame.path).name for frame in source]
        assert read == ["cut2.jpg", "cut100.jpg", "cut3000.jpg", "motion.jpg", "padded.jpg", "progressive.jpg"]
        assert _said(caplog) == [f"{folder / f'cut{cut}.jpg'} {SAID}" for cut in (2, 100, 3000)]
        read_encoded(whole[:-100])
        assert _said(caplog) == [f"<bytes> {SAID}"]


def test_a_cut_qoi_picture_is_said_damaged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """FFmpeg's QOI decoder checks nothing: a QOI file cut short read silently, its lost pixels black. One ends with
    its 8-byte end marker (seven 00 bytes, then 01): one that lacks it is damaged, one warning; a whole one reads
    exactly, and says nothing. Fails before (no warning)."""
    rgb = read_image(sample_image("chelsea"))
    whole = _qoi(rgb)
    assert whole[:4] == b"qoif" and whole.endswith(bytes(7) + b"\x01")
    (tmp_path / "whole.qoi").write_bytes(whole)
    (tmp_path / "cut.qoi").write_bytes(whole[:-5000])
    (tmp_path / "end.qoi").write_bytes(whole[:-8])  # the marker alone
    with caplog.at_level(logging.WARNING, "pvt_deploy"):
        assert np.array_equal(read_image(tmp_path / "whole.qoi"), rgb)
        assert _said(caplog) == []
        for name in ("cut.qoi", "end.qoi"):
            assert read_image(tmp_path / name).shape == rgb.shape
            assert _said(caplog) == [f"{tmp_path / name} {SAID}"]


def test_a_corrupt_png_is_one_line_of_ours_and_none_of_libpngs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """libpng printed its own error on stderr ('libpng error: bad adaptive filter value', 'libpng error: IDAT:
    incorrect data check') beside the line said of the picture, and a PNG it refused that FFmpeg decodes (a bad filter
    byte) read with that line alone. The PNG libpng refuses and FFmpeg decodes is said damaged, one warning; one
    neither decodes is one error; stderr holds nothing of libpng's. Fails before (libpng's lines, no warning)."""
    rgb = read_image(sample_image("coffee"))[:60, :80]
    (tmp_path / "filter.png").write_bytes(_png_of_a_bad_filter(rgb))
    whole = io.BytesIO()
    Image.fromarray(rgb).save(whole, "PNG")
    flipped = bytearray(whole.getvalue())
    flipped[len(flipped) // 2] ^= 0x55  # in the compressed pixels
    (tmp_path / "flipped.png").write_bytes(bytes(flipped))
    (tmp_path / "whole.png").write_bytes(whole.getvalue())
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, "pvt_deploy"):
        image = read_image(tmp_path / "filter.png")
        assert np.array_equal(image[:10], rgb[:10])  # the rows before the bad one, as they are
        assert _said(caplog) == [f"{tmp_path / 'filter.png'} {SAID}"]
        with pytest.raises(InputError, match=r"cannot decode image .*flipped\.png \(corrupt or not an image\)"):
            read_image(tmp_path / "flipped.png")
        assert np.array_equal(read_image(tmp_path / "whole.png"), rgb)
        assert _said(caplog) == []
    assert capfd.readouterr() == ("", "")


def test_what_else_is_said_on_stderr_while_libpngs_lines_are_held_is_kept_in_order(
        capfd: pytest.CaptureFixture[str]) -> None:
    """stderr is the process's: what another thread writes there while a PNG decodes is written once the decode
    ends, in its order, and only libpng's lines are left out, also where blocks overlap (two threads decoding)."""
    from pvt_deploy.io.sources import _libpng_lines_held

    capfd.readouterr()
    os.write(2, b"before\n")
    with _libpng_lines_held():
        os.write(2, b"libpng error: bad adaptive filter value\nanother thread's line\n")
        with _libpng_lines_held():
            os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
        os.write(2, b"a last line\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nanother thread's line\na last line\nafter\n"



@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX: a forked child")
def test_a_child_forked_while_stderr_is_held_writes_on_its_own_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """A process forked while another thread decodes a PNG (stderr stood in for) would have kept the stand-in as its
    stderr for good, the thread that puts it back not being in it: what it wrote once the parent's block ended went
    nowhere. The child has its stderr back as it starts."""
    from pvt_deploy.io.sources import _libpng_lines_held

    capfd.readouterr()
    go_read, go_write = os.pipe()
    with _libpng_lines_held():
        child = os.fork()
        if child == 0:  # the child: it writes once the parent's block has ended
            os.close(go_write)
            os.read(go_read, 1)
            os.write(2, b"the child's line\n")
            os._exit(0)
    os.close(go_read)
    os.write(go_write, b"x")
    os.close(go_write)
    assert os.waitpid(child, 0)[1] == 0
    assert capfd.readouterr().err == "the child's line\n"

def test_a_damaged_picture_at_a_url_that_its_bytes_do_not_decode_is_said_damaged(
        http_server: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """A picture at a URL is decoded from its bytes, as on disk; where they decode as no picture (a JPEG whose first
    marker is damaged: FFmpeg's demuxer cannot tell it from its bytes), the frame the URL's stream decoded stands,
    read leniently, and a JPEG cut short there said nothing. It is said damaged where FFmpeg's decoder would conceal
    parts of it; a TGA (no mark tells it) and a JPEG whose first marker alone is damaged, their pixels whole, say
    nothing. Fails before (no warning)."""
    base, root = http_server
    whole = Path(sample_image("chelsea")).read_bytes()
    (root / "cut.jpg").write_bytes(b"\0\0" + whole[2:len(whole) // 2])
    (root / "marker.jpg").write_bytes(b"\0\0" + whole[2:])
    rgb = read_image(sample_image("chelsea"))
    Image.fromarray(rgb).save(root / "plain.tga")
    with caplog.at_level(logging.WARNING, "pvt_deploy"):
        with open_source(f"{base}/cut.jpg") as source:
            assert [frame.image.shape for frame in source] == [rgb.shape]
        assert _said(caplog) == [f"{base}/cut.jpg {SAID}"]
        for name in ("marker.jpg", "plain.tga"):
            with open_source(f"{base}/{name}") as source:
                (image,) = [frame.image for frame in source]
            assert np.abs(image.astype(int) - rgb).mean() < 2, name
        assert _said(caplog) == []


def _label_tiff(ids: np.ndarray) -> bytes:
    """``ids`` as an 8-bit grey TIFF (a label map) whose Make tag declares a megabyte, past the file's end: Pillow
    skips the tag as it opens it, with a UserWarning ('Tag data larger than file. Skipping tag 271')."""
    height, width = ids.shape
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (271, 2, 10**6, 8), (273, 4, 1, 8 + 2 + 12 * 10 + 4), (277, 3, 1, 1), (278, 3, 1, height),
               (279, 4, 1, width * height)]
    fields = b"".join(struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries)
    return b"II*\0" + struct.pack("<IH", 8, len(entries)) + fields + b"\0\0\0\0" + ids.astype(np.uint8).tobytes()


def test_vals_label_reads_keep_pillows_warnings_quiet_where_pvt_deploy_was_imported_inside_catch_warnings(
        tmp_path: Path) -> None:
    """val reads a segmentation dataset's label maps with Pillow (their class ids, and whether they are colour
    pictures), without the filters io/sources puts back before its own Pillow reads: imported inside a caller's
    ``warnings.catch_warnings()``, a label TIFF whose tag points past its end printed Pillow's two lines
    ('PIL/TiffImagePlugin.py:946: UserWarning: Tag data larger than file. Skipping tag 271'). Nothing on stderr,
    the ids as stored. In a process of its own, with Python's default warning filters. Fails before."""
    ids = np.arange(30 * 40).reshape(30, 40) % 5
    (tmp_path / "label.tif").write_bytes(_label_tiff(ids))
    done = run_imported_inside_catch_warnings(
        "from pvt_deploy.evaluate import _colour_pictures, _read_label",
        "label = Path(sys.argv[1])\n"
        "ids, one_bit = _read_label(label)\n"
        "print(ids.shape, int(ids.max()), one_bit, _colour_pictures([label]))\n", tmp_path / "label.tif")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout == "(30, 40) 4 False ([], 1)\n"


def test_tga_pcx_sgi_qoi_and_dds_pictures_are_pictures_on_disk_and_in_folders(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A .tga photo was read as a video of one frame (FFmpeg's demuxers tell a TGA by its file name alone, and
    neither OpenCV nor FFmpeg from its bytes reads it), so infer wrote NAME.mp4 for it; and a folder of TGA, PCX,
    SGI, QOI or DDS pictures, which are read from their bytes, was 'no images' (their suffixes unlisted). Each is a
    picture: read as stored, listed in its folder, said nothing of. Fails before (the TGA a video, the folder
    empty)."""
    rgb = read_image(sample_image("chelsea"))
    suffixes = (".tga", ".pcx", ".sgi", ".qoi", ".dds")
    for suffix in suffixes:
        Image.fromarray(rgb).save(tmp_path / f"chelsea{suffix}")
    with caplog.at_level(logging.WARNING, "pvt_deploy"):
        with open_source(str(tmp_path / "chelsea.tga")) as source:
            assert source.kind == "image"
            (image,) = [frame.image for frame in source]
        assert np.array_equal(image, rgb)
        with open_source(str(tmp_path)) as source:
            frames = list(source)
        assert sorted(Path(frame.path).suffix for frame in frames) == sorted(suffixes)
        assert all(np.array_equal(frame.image, rgb) for frame in frames)
    assert _said(caplog) == [] and not [r for r in caplog.records if r.levelno >= logging.WARNING]
