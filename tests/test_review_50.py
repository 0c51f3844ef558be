"""Session 50's review of the writer and picture/video commits (helper DD): 8-bit YUV of an odd width that FFmpeg's
conversion wraps where 08b0ac6 did not look (the frame's own width)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pvt_deploy.io.sources import open_source


def _clip(path: Path, codec: str, pix_fmt: str, size: tuple[int, int], options: dict[str, str]) -> Path:
    """Two lossless frames of ``pix_fmt`` (8-bit YUV, limited range, BT.601) of ``size``: their left 8 columns the
    most blue above white (Y 255, Cb 255, Cr 128: blue past 512 levels, 255 clipped), the rest mid-grey."""
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} in this PyAV")
    width, height = size
    source = av.VideoFrame(width, height, "yuv444p")
    for plane, (left, right) in zip(source.planes, ((255, 128), (255, 128), (128, 128)), strict=True):
        samples = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        samples[:, :8], samples[:, 8:] = left, right
    return two_frame_clip(path, source.reformat(format=pix_fmt), codec, options)


def two_frame_clip(path: Path, frame: av.VideoFrame, codec: str, options: dict[str, str] | None = None) -> Path:
    """Two of ``frame`` encoded by ``codec`` in a Matroska file (``rawvideo``: its layout kept), checked to decode
    in ``frame``'s layout and size, those under test."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=25, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, frame.format.name
        for i in range(2):
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(path)) as check:
        decoded = next(check.decode(video=0))
        assert (decoded.format.name, decoded.width, decoded.height) == (frame.format.name, frame.width, frame.height)
    return path


@pytest.mark.parametrize(("codec", "pix_fmt", "size", "options"), [
    ("libvpx-vp9", "yuv420p", (17, 9), {"lossless": "1"}),  # a VP9 recording of a window: odd width and height
    ("libvpx-vp9", "yuv440p", (17, 8), {"lossless": "1"}),  # VP9 profile 1
    ("ffv1", "yuv411p", (17, 8), {}),  # DV's layout
    ("ffv1", "yuv420p", (17, 8), {}),  # an even height: FFmpeg's table-driven conversion, which clips
], ids=["4:2:0-odd-by-odd", "4:4:0-odd-width", "4:1:1-odd-width", "4:2:0-odd-width-even-height"])
def test_an_out_of_gamut_frame_of_its_own_odd_width_is_clipped_not_wrapped(
        tmp_path: Path, codec: str, pix_fmt: str, size: tuple[int, int], options: dict[str, str]) -> None:
    """FFmpeg's conversion interpolates chroma in full, and its fixed-point sum wraps past 512 levels, for any odd
    width it gives, not only a width a frame is widened to (08b0ac6): a 4:2:0 frame of an odd width and height at
    its own size (a VP9 or AV1 recording of a window), and 4:4:0 or 4:1:1 of an odd width, read the most blue
    above white as blue 0, not 255. Only its table-driven conversion (4:2:0 and 4:2:2 of an even height, as they
    are) clips. The grey beside them is the same grey. Fails before on the first three."""
    path = _clip(tmp_path / f"{pix_fmt}.mkv", codec, pix_fmt, size, options)
    with open_source(path) as source:
        images = [frame.image for frame in source]
    assert len(images) == 2 and all(image.shape == (size[1], size[0], 3) for image in images)
    for image in images:
        blue_white = image[:, :4].reshape(-1, 3)  # away from the halves' edge, which chroma blurs
        grey = image[:, -4:].reshape(-1, 3)
        exact = np.array([255, 229, 255])  # R 278 + 0, G 278 - 0.392 x 127 x 255/224, B 278 + 2.018 x 127: clipped
        assert np.abs(blue_white.astype(int) - exact).max() <= 1, blue_white[:3]
        assert np.abs(grey.astype(int) - 130).max() <= 1, grey[:3]  # (128 - 16) x 255 / 219 = 130.4
