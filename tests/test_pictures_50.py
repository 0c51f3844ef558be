"""Session 50's leftovers of reading pictures and frames (helper CW): a picture FFmpeg decodes but cannot convert is
undecodable in the words of any other; Pillow's warning of a large picture is silenced without a warnings state each
read changes (not thread-safe)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


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
    converted by OpenCV's arithmetic (_planar_yuv_to_rgb), which raises cv2.error for a picture too large for it.
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
              "sources._planar_yuv_to_rgb = too_large\n"
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

