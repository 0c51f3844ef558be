"""Session 50's leftovers of reading pictures and frames (helper CW): a picture FFmpeg decodes but cannot convert is
undecodable in the words of any other; Pillow's warning of a large picture is silenced without a warnings state each
read changes (not thread-safe); 8-bit YUV whose sum FFmpeg's conversion wraps is converted as deeper YUV is."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pvt_deploy.io.sources import open_source


def _jpeg2000_10_bit(path: Path) -> Path:
    """A 16x8 JPEG 2000 picture of 10-bit YUV 4:4:4 (grey), written by FFmpeg's encoder."""
    import av

    frame = av.VideoFrame(16, 8, "yuv444p10le")
    for plane in frame.planes:
        samples = np.frombuffer(memoryview(plane), np.uint16).reshape(plane.height, plane.line_size // 2)
        samples[:] = 512
    with av.open(str(path), "w", format="image2", options={"update": "1"}) as out:
        stream = out.add_stream("jpeg2000", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 8, "yuv444p10le"
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_a_picture_ffmpeg_decodes_but_cannot_convert_is_undecodable_as_any_other(tmp_path: Path) -> None:
    """A picture past OpenCV's size limits is FFmpeg's; one of more than 8 bits of YUV (a 10-bit JPEG 2000) is
    converted by OpenCV's arithmetic (_yuv_to_rgb), which raises cv2.error for a picture too large for it.
    That error was not caught: the picture was 'cannot decode image X (OpenCV(...) resize.cpp ...)', the
    conversion's words, where a picture FFmpeg cannot decode is 'cannot decode image X (...CV_IO_MAX_IMAGE...)'
    with what raises OpenCV's limits. Both are that now. OpenCV's limits are lowered (its environment variables,
    read as it loads: a child process), the conversion made to fail as a huge picture's does."""
    import subprocess
    import sys

    path = _jpeg2000_10_bit(tmp_path / "scan.jp2")
    script = ("import sys, cv2\n"
              "from pvt_deploy.errors import InputError\n"
              "from pvt_deploy.io import sources\n"
              "print(sources.read_image(sys.argv[1]).shape)\n"  # FFmpeg's picture, converted
              "def too_large(*args, **kwargs):\n"
              "    raise cv2.error('OpenCV(5.1.0) resize.cpp:4155: error: (-215:Assertion failed) inv_scale_x > 0')\n"
              "sources._yuv_to_rgb = too_large\n"
              "try:\n"
              "    sources.read_image(sys.argv[1])\n"
              "except InputError as e:\n"
              "    print(e)\n")
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_WIDTH": "4", "OPENCV_IO_MAX_IMAGE_HEIGHT": "4"}
    done = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    shape, said = done.stdout.splitlines()
    assert shape == "(8, 16, 3)"
    assert said.startswith(f"cannot decode image {path} (OpenCV(") and "CV_IO_MAX_IMAGE_WIDTH" in said, said
    assert said.endswith("(past OpenCV's size limits, 1048576 pixels a side and 1073741824 in all: the environment "
                         "variables OPENCV_IO_MAX_IMAGE_WIDTH, OPENCV_IO_MAX_IMAGE_HEIGHT and "
                         "OPENCV_IO_MAX_IMAGE_PIXELS raise them)"), said
    assert "inv_scale_x" not in said


THREADED_READS = """
import sys, threading, warnings
from PIL import Image
from pvt_deploy.io.sources import read_image

Image.MAX_IMAGE_PIXELS = 1000  # Pillow's warning past 1000 pixels, its error past 2000
first_opening, second_opening, first_done = threading.Event(), threading.Event(), threading.Event()
real_open = Image.open

def opened_in_turn(*args, **kwargs):
    if not first_opening.is_set():  # the first read: it goes on once the second is opening its picture too
        first_opening.set()
        assert second_opening.wait(60)
    else:  # the second: it opens its picture once the first read has ended
        second_opening.set()
        assert first_done.wait(60)
    return real_open(*args, **kwargs)

Image.open = opened_in_turn
filters = list(warnings.filters)
images = {}

def first():
    try:
        images["a"] = read_image(sys.argv[1])
    finally:
        first_done.set()

def second():
    assert first_opening.wait(60)
    images["b"] = read_image(sys.argv[2])

threads = [threading.Thread(target=first), threading.Thread(target=second)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(120)
assert sorted(images) == ["a", "b"] and all((image == 200).all() for image in images.values()), images
print("filters left:", [f for f in warnings.filters if f not in filters])
"""


def test_pictures_read_on_threads_say_no_pillow_warning_and_leave_no_warning_filter(tmp_path: Path) -> None:
    """Pillow warns of a picture past its own limit (a DecompressionBombWarning, two lines on stderr), which
    pvt-deploy does not say: it checks the memory to decode a picture itself. It was silenced by a
    warnings.catch_warnings around each read, which is not thread-safe: of two threads reading pictures at once
    (infer's readers), the one that ended last put back the filters as the other had made them, and its filter
    stayed for good. Here the second read's Pillow opens its picture after the first read has ended: no filter
    is left behind, and no warning is said (Pillow's limit lowered below the pictures' size). In a process of its
    own, as a program imports pvt-deploy: pytest takes back the warning filters a module makes as it is imported."""
    import subprocess
    import sys

    from PIL import Image

    pictures = []
    for name in ("a", "b"):  # RGBA TIFFs, which Pillow reads (their stored colour), of 1600 pixels
        pictures.append(tmp_path / f"{name}.tiff")
        Image.fromarray(np.full((40, 40, 4), 200, np.uint8)).save(pictures[-1])
    done = subprocess.run([sys.executable, "-c", THREADED_READS, *map(str, pictures)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "filters left: []\n"
    assert "Warning" not in done.stderr, done.stderr


def _out_of_gamut_clip(path: Path, pix_fmt: str, sar: Fraction | None = None) -> Path:
    """Two frames of lossless H.264 ``pix_fmt`` (8-bit YUV, limited range, BT.601), 16x8 pixels of ``sar``: their
    left half the most blue above white (Y 255, Cb 255, Cr 128: blue past 512 levels, 255 clipped), their right
    half mid-grey."""
    import av

    source = av.VideoFrame(16, 8, "yuv444p")
    for plane, (left, right) in zip(source.planes, ((255, 128), (255, 128), (128, 128)), strict=True):
        samples = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        samples[:, :8], samples[:, 8:] = left, right
    frame = source.reformat(format=pix_fmt)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 16, 8, pix_fmt
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        for i in range(2):
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(("pix_fmt", "sar", "width"), [("yuv444p", None, 16), ("yuv420p", Fraction(21, 16), 21)],
                         ids=["4:4:4", "4:2:0-widened-to-odd"])
def test_an_out_of_gamut_8_bit_yuv_frame_is_clipped_not_wrapped(
        tmp_path: Path, pix_fmt: str, sar: Fraction | None, width: int) -> None:
    """FFmpeg's default conversion of 8-bit YUV to RGB sums in fixed point and wraps past 512 levels where it
    interpolates chroma in full, as it does unasked for 4:4:4 (H.264 High 4:4:4, VP9 profile 1, a screen
    recording) and for an odd width a frame is widened to (non-square pixels): the most blue above white came blue
    0, not 255. Those frames are converted as frames of more than 8 bits are (the sum rounded, then clipped); the
    grey beside them is the same grey."""
    path = _out_of_gamut_clip(tmp_path / f"{pix_fmt}.mkv", pix_fmt, sar)
    with open_source(path) as source:
        images = [frame.image for frame in source]
    assert len(images) == 2 and all(image.shape == (8, width, 3) for image in images)
    for image in images:
        blue_white = image[:, :width // 4].reshape(-1, 3)  # away from the halves' edge, which chroma blurs
        grey = image[:, -(width // 4):].reshape(-1, 3)
        exact = np.array([255, 229, 255])  # R 278 + 0, G 278 - 0.392 x 127 x 255/224, B 278 + 2.018 x 127: clipped
        assert np.abs(blue_white.astype(int) - exact).max() <= 1, blue_white[:3]
        assert np.abs(grey.astype(int) - 130).max() <= 1, grey[:3]  # (128 - 16) x 255 / 219 = 130.4
