"""Session 51's leftovers of converting frames (helper DJ): semi-planar and packed YUV (NV12 of an odd width, NV24,
P010, YUYV, VUYA) whose sum FFmpeg's conversion wraps are converted as planar YUV is; a pipe of pictures from a URL
warns of its colorspace once."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_io_sources import http_server  # noqa: F401 - the fixture
from test_review_50 import two_frame_clip

from pvt_deploy.errors import InputError
from pvt_deploy.io import sources
from pvt_deploy.io.sources import StreamSource, _frame_to_rgb, open_source

# the most blue above white (Y 255, Cb 255, Cr 128, limited range, BT.601) clipped: R 278 + 0, G 278 - 0.392 x 127 x
# 255/224, B 278 + 2.018 x 127; and mid-grey, (128 - 16) x 255 / 219 = 130.4
_BLUE_WHITE, _GREY = np.array([255, 229, 255]), 130


def _interleaved(pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """A frame of semi-planar or packed ``pix_fmt`` written sample by sample, as a decoder gives it: its left 8
    columns the most blue above white, the rest mid-grey (8-bit levels; of 10 bits, P010's, in the words' high
    bits)."""
    frame = av.VideoFrame(width, height, pix_fmt)
    columns = np.arange(width) < 8
    y, u = np.where(columns, 255, 128), np.where(columns, 255, 128)
    if pix_fmt in ("nv12", "nv24", "p010le"):
        deep = pix_fmt == "p010le"
        dtype = np.uint16 if deep else np.uint8
        step = 2 if pix_fmt != "nv24" else 1  # chroma's columns: one a pair of pixels, or one a pixel
        for index, rows in enumerate((np.tile(y, (height, 1)), None)):
            plane = frame.planes[index]
            words = np.frombuffer(memoryview(plane), dtype).reshape(plane.height, -1)
            if rows is None:  # Cb and Cr interleaved, each at its columns' first pixel
                rows = np.zeros((plane.height, 2 * plane.width), int)
                rows[:, 0::2], rows[:, 1::2] = u[::step][:plane.width], 128
            words[:, :rows.shape[1]] = rows << 8 if deep else rows  # 10 bits of 4x the 8-bit level, at bit 6
    elif pix_fmt == "yuyv422":  # Y0 Cb Y1 Cr for each pair of pixels (of an odd width, the last pair's Y1 unseen)
        pairs = np.where(np.arange(0, width + 1, 2) < 8, 255, 128)
        pixels = np.stack([pairs, pairs, pairs, np.full(pairs.size, 128)], axis=1).reshape(-1)
        np.frombuffer(memoryview(frame.planes[0]), np.uint8).reshape(height, -1)[:, :pixels.size] = pixels
    else:  # vuya: Cr Cb Y A for each pixel
        pixels = np.stack([np.full(width, 128), u, y, np.full(width, 255)], axis=1).reshape(-1)
        np.frombuffer(memoryview(frame.planes[0]), np.uint8).reshape(height, -1)[:, :4 * width] = pixels
    frame.colorspace, frame.color_range = 5, 1  # BT.601, limited
    return frame


def _assert_clipped(image: np.ndarray) -> None:
    """The blue-white columns clipped, not wrapped (blue 0), and the grey grey, away from the edge chroma blurs."""
    blue_white, grey = image[:, :4].reshape(-1, 3), image[:, -4:].reshape(-1, 3)
    assert np.abs(blue_white.astype(int) - _BLUE_WHITE).max() <= 1, blue_white[:3]
    assert np.abs(grey.astype(int) - _GREY).max() <= 1, grey[:3]


@pytest.mark.parametrize(("pix_fmt", "size"), [
    ("nv12", (17, 9)),  # NV12 of an odd width and height
    ("vuya", (16, 8)),  # packed 4:4:4
    ("yuyv422", (17, 8)),  # a webcam's packed 4:2:2, of an odd width
    ("nv12", (16, 8)),  # an even width: FFmpeg's conversion, which clips
], ids=["nv12-odd", "vuya", "yuyv422-odd", "nv12-even"])
def test_a_raw_clip_of_interleaved_yuv_is_clipped_not_wrapped(
        tmp_path: Path, pix_fmt: str, size: tuple[int, int]) -> None:
    """FFmpeg's conversion of 8-bit YUV sums in fixed point and wraps past 512 levels where it interpolates chroma
    in full (4:4:4, an odd width out): for planar YUV that was mended (08b0ac6, aa950dc), but NV12 of an odd width,
    packed 4:4:4 (VUYA) and YUYV of an odd width still read the most blue above white blue 0, not 255.
    They are converted as planar YUV is now. Raw video clips keep their layout (a camera's or a capture card's
    recording); fails before on the first three."""
    path = two_frame_clip(tmp_path / f"{pix_fmt}.mkv", _interleaved(pix_fmt, *size), "rawvideo")
    with open_source(path) as source:
        images = [frame.image for frame in source]
    assert len(images) == 2 and all(image.shape == (size[1], size[0], 3) for image in images)
    for image in images:
        _assert_clipped(image)


@pytest.mark.parametrize(("pix_fmt", "planar"), [("nv24", "yuv444p"), ("p010le", "yuv420p10le")])
@pytest.mark.parametrize("width", [16, 17])
def test_semi_planar_4_4_4_and_p010_are_clipped_and_read_as_their_planar_samples(
        pix_fmt: str, planar: str, width: int) -> None:
    """NV24 and P010 (a hardware decoder's 10-bit frames: NVDEC, VA-API, Quick Sync) wrapped at any width: P010 was
    converted by FFmpeg with chroma interpolated in full, whose sum wraps, NV24 by its default, which interpolates
    4:4:4 in full. No container FFmpeg writes holds them raw (Matroska refuses them, NUT and AVI read back as
    RGB 5:5:5), so the frames are made as a decoder gives them. Clipped now, and each the same picture as its
    samples in the planar layout (within 1 level: OpenCV's sums of rows in place or copied round alike but for
    its vector tails); fails before (blue 0)."""
    frame = _interleaved(pix_fmt, width, 8)
    image = _frame_to_rgb(frame)
    assert image.shape == (8, width, 3)
    _assert_clipped(image)
    same = _planar(planar, width, 8)
    assert np.abs(image.astype(int) - _frame_to_rgb(same)).max() <= 1


def _planar(pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """:func:`_interleaved`'s picture in the planar ``pix_fmt`` (yuv444p, or yuv420p10le: 10-bit samples, 4x the
    8-bit level), written sample by sample. Not ``frame.reformat(format=planar)``: FFmpeg's P010 to yuv420p10le
    now and then gave a chroma row of mid-grey (1 run in ~300 here), which made the test flaky."""
    frame = av.VideoFrame(width, height, pix_fmt)
    deep = pix_fmt.endswith("10le")
    columns = np.arange(width) < 8
    for index, level in enumerate((np.where(columns, 255, 128), np.where(columns, 255, 128), np.full(width, 128))):
        plane = frame.planes[index]
        words = np.frombuffer(memoryview(plane), np.uint16 if deep else np.uint8).reshape(plane.height, -1)
        step = 2 if plane.width < width else 1  # 4:2:0's chroma: a column per pair of pixels
        words[:, :plane.width] = (level[::step][:plane.width] * (4 if deep else 1))[None]
    frame.colorspace, frame.color_range = 5, 1  # BT.601, limited, as _interleaved's
    return frame


def test_a_pipe_of_pictures_from_a_url_warns_of_its_colorspace_once(
        http_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    """A URL FFmpeg reads as pictures (a picture demuxer) is read twice where it holds more than one: its first two
    frames, to tell a picture from a pipe of them, then all of them by a new stream, whose set of colorspaces
    warned of was its own. Its frames tagged with a colorspace FFmpeg's converter has no matrix for were said to
    be twice. No picture decoder here gives such a tag (JPEG, WebP: BT.601; JPEG 2000, TIFF, PGMYUV: none), so
    'none' (2) is taken for one, the rest real: two JPEG 2000 pictures over HTTP. Once now; fails before (twice)."""
    base, root = http_server
    frame = av.VideoFrame(16, 16, "yuv420p")
    for plane in frame.planes:
        np.frombuffer(memoryview(plane), np.uint8)[:] = 128
    codec = av.CodecContext.create("jpeg2000", "w")
    codec.width, codec.height, codec.pix_fmt, codec.time_base = 16, 16, "yuv420p", Fraction(1, 25)
    picture = b"".join(bytes(packet) for packet in codec.encode(frame) + codec.encode(None))
    (root / "pictures.j2k").write_bytes(picture * 2)
    weights = {tag: kr_kb for tag, kr_kb in sources._LUMA_WEIGHTS.items() if tag != 2}
    monkeypatch.setattr(sources, "_LUMA_WEIGHTS", weights)
    with caplog.at_level(logging.WARNING), open_source(f"{base}/pictures.j2k") as source:
        assert isinstance(source, StreamSource)  # a pipe of them, read again from its start
        images = [frame.image for frame in source]
    assert len(images) == 2 and all(np.abs(image.astype(int) - 130).max() <= 1 for image in images)
    said = [r.getMessage() for r in caplog.records if "colorspace" in r.getMessage()]
    assert said == [f"{base}/pictures.j2k: its frames are tagged with the colorspace reserved (2), which FFmpeg's "
                    "converter has no matrix for: read with BT.601's, as ffplay shows them (its colours may be off)"]


def test_empty_files_are_left_out_up_front_and_a_list_file_is_named_as_the_source(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A folder holding an empty .jpg (a copy that never started) said 'source DIR (2 images)', then '1/1' as the
    empty one was skipped; a .txt list said 'source 2 images', naming no list. Empty files of a picture's name are
    left out as those of a video's were, in the folder's one line, and so are a list's (a .txt list's named by it):
    the source counts what is read, and a list file is the source's name. An array after an empty file keeps the
    name of its place in the list. Fails before."""
    from cli_run import run
    from PIL import Image
    from test_tensorrt_build_fake import make_artifact

    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a.jpg", "c.png"):
        Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(folder / name)
    (folder / "b.jpg").touch()
    listing = tmp_path / "list.txt"
    listing.write_text("shots/a.jpg\nshots/b.jpg\nshots/c.png\n")
    hint = "0 bytes (a copy or download that never started: copy or download it again)"
    with caplog.at_level(logging.WARNING):
        with open_source(folder) as source:
            assert (source.spec, source.frames) == (str(folder), 2)
            assert [f.name for f in source] == ["a.jpg", "c.png"] and source.skipped == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"{folder}: running its 2 images; 1 empty file (b.jpg) left out: {hint}"]
        caplog.clear()
        with open_source(listing) as source:
            assert (source.spec, source.frames) == (str(listing), 2)
            assert [f.name for f in source] == ["a.jpg", "c.png"] and source.skipped == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"{listing}: running its 2 images; 1 empty file ({tmp_path / 'shots/b.jpg'}) left out: {hint}"]
        picture = np.full((16, 16, 3), 7, np.uint8)
        with open_source([picture, folder / "b.jpg", picture]) as source:
            assert source.frames == 2 and [f.name for f in source] == ["image0.jpg", "image2.jpg"]
    (folder / "a.jpg").write_bytes(b"")
    (folder / "c.png").write_bytes(b"")
    with pytest.raises(InputError) as caught:
        open_source(folder)
    assert caught.value.args[0] == f"no images found in folder {folder}, only 3 empty files (a.jpg, b.jpg, c.png): " \
                                   "0 bytes"
    with pytest.raises(InputError) as caught:
        open_source(listing)
    assert caught.value.args[0] == (f"{listing}: no images to read in {listing}, only 3 empty files "
                                    f"({tmp_path / 'shots/a.jpg'}, {tmp_path / 'shots/b.jpg'}, "
                                    f"{tmp_path / 'shots/c.png'}): 0 bytes")
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(folder / "a.jpg")
    monkeypatch.chdir(tmp_path)
    for given in ("shots", "list.txt"):
        code, out, err = run(monkeypatch, capsys, "infer", given, "--model", str(make_artifact(tmp_path / "art")),
                             "--no-save")
        assert code == 0, out + err
        said = " ".join((out + err).split())
        assert f"· source {given} (1 image)" in said and "1/1 shots/a.jpg" in said, said
        # the empty ones are still pictures the run could not read: the run's last line counts them
        assert said.endswith("2 unreadable images skipped"), said


def test_a_binary_txt_split_of_a_dataset_yaml_is_said_not_a_list_in_one_clean_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A picture saved as a split's val.txt was read for names: a warning quoted its bytes as escaped surrogates
    ('left out 93 line(s) that are not image files (\\udcff\\udcd8\\udcff\\udce0 JFIF ...)'), then 'holds no images'.
    It is said not to be a list, in one line and nothing more, for export --calib and val alike (dataset_images).
    A text list beside it still reads. Fails before."""
    from PIL import Image

    from pvt_deploy.export.calibration import dataset_images

    jpeg = tmp_path / "a.jpg"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(jpeg)
    (tmp_path / "val.txt").write_bytes(jpeg.read_bytes())
    (tmp_path / "train.txt").write_text("a.jpg\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: train.txt\nval: val.txt\nnames:\n  0: a\n")
    with caplog.at_level(logging.INFO), pytest.raises(InputError) as caught:
        dataset_images(str(tmp_path / "data.yaml"), what="val")
    assert caught.value.args[0] == (f"{tmp_path / 'data.yaml'}: val: val.txt: {tmp_path / 'val.txt'} is not a list "
                                    "of files: it holds binary data, not text")
    assert caught.value.hint == "a list names one image file a line"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    (tmp_path / "val.txt").write_text("a.jpg\n")
    assert dataset_images(str(tmp_path / "data.yaml"), what="val") == [tmp_path / "a.jpg"]
