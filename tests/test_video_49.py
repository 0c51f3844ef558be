"""Video frames FFmpeg decodes, the same on every path: a file, the same file at a URL (a real HTTP server on
127.0.0.1), and a picture FFmpeg decodes (:func:`_ffmpeg_picture`). More than 8 bits a channel are rounded to 8
one way; non-square pixels are widened to the width a player shows, one way."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_io_sources import http_server  # noqa: F401 - the fixture

from pvt_deploy.io.sources import _ffmpeg_picture, open_source


def _encoded(path: Path, codec: str, pix_fmt: str, frames: list[av.VideoFrame], **options: str) -> Path:
    """``frames`` encoded by ``codec`` as ``pix_fmt`` into a Matroska file (one frame each 1/25 s)."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, pix_fmt
        for i, frame in enumerate(frames):
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _every_path(path: Path, url: str) -> dict[str, list[np.ndarray]]:
    """The frames of ``path`` read from the file, from its ``url``, and the first as a picture FFmpeg decodes."""
    seen = {}
    for name, spec in (("file", path), ("url", url)):
        with open_source(spec) as source:
            seen[name] = [frame.image for frame in source]
    picture = _ffmpeg_picture(np.fromfile(path, np.uint8))
    assert picture is not None
    seen["picture"] = [picture]
    return seen


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """A decoded plane of 16-bit samples as FFmpeg holds them, its padding cut."""
    plane = frame.planes[index]
    return np.frombuffer(bytes(plane), np.uint16).reshape(plane.height, plane.line_size // 2)[:, :plane.width]


def _need(*codecs: str) -> None:
    missing = [c for c in codecs if c not in av.codecs_available]
    if missing:
        pytest.skip(f"this FFmpeg has no {', '.join(missing)} codec")


def test_16_bit_rgb_video_is_rounded_to_8_bits_as_a_16_bit_png_on_every_path(
        tmp_path: Path, http_server: tuple[str, Path]) -> None:  # noqa: F811
    """A lossless 16-bit RGB clip (FFV1 gbrp16le, as archives and scanners keep film) read from the file and
    from a URL came through FFmpeg's rgb24, which cuts the low byte (half the pixels 1 off, some 2), where the
    same samples as a picture FFmpeg decodes were rounded (v + 128) // 257, as a 16-bit PNG's are. Each path
    now gives the rounded samples, pixel for pixel."""
    _need("ffv1")
    base, root = http_server
    rng = np.random.default_rng(49)
    samples = [rng.integers(0, 65536, (48, 80, 3), dtype=np.uint16) for _ in range(2)]
    frames = [av.VideoFrame.from_ndarray(s, format="rgb48le") for s in samples]
    path = _encoded(root / "film.mkv", "ffv1", "gbrp16le", frames)
    with av.open(str(path)) as container:  # lossless: the clip holds the samples given
        decoded = [f.to_ndarray(format="rgb48le") for f in container.decode(video=0)]
    assert all(np.array_equal(d, s) for d, s in zip(decoded, samples, strict=True))
    expected = [((s.astype(np.uint32) + 128) // 257).astype(np.uint8) for s in samples]
    seen = _every_path(path, f"{base}/film.mkv")
    for name, images in seen.items():
        assert all(np.array_equal(i, e) for i, e in zip(images, expected, strict=False)), name
    assert len(seen["file"]) == len(seen["url"]) == 2


def test_12_bit_gray_video_is_rounded_to_8_bits_on_every_path(
        tmp_path: Path, http_server: tuple[str, Path]) -> None:  # noqa: F811
    """A 12-bit gray clip (FFV1 gray12le: a thermal or X-ray camera's) holding each of the 4096 levels: level v
    is round(v * 255 / 4095) on each path. FFmpeg's rgb24 cut it (1 off for half the levels), and its rgb48 of
    12-bit gray is 1 off for 3 % (its 16 bits are v << 4 plus a part of v, not 65535 / 4095 of v)."""
    _need("ffv1")
    base, root = http_server
    frame = av.VideoFrame(64, 64, "gray12le")
    levels = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    frame.planes[0].update(np.pad(levels, ((0, 0), (0, frame.planes[0].line_size // 2 - 64))).tobytes())
    path = _encoded(root / "thermal.mkv", "ffv1", "gray12le", [frame])
    with av.open(str(path)) as container:
        assert np.array_equal(_plane(next(container.decode(video=0)), 0), levels)
    level = ((levels.astype(np.uint32) * 510 + 4095) // 8190).astype(np.uint8)  # round(v * 255 / 4095), 0.5 up
    expected = np.repeat(level[:, :, None], 3, axis=2)
    for name, images in _every_path(path, f"{base}/thermal.mkv").items():
        assert len(images) == 1 and np.array_equal(images[0], expected), name


def _bt601(y: np.ndarray, u: np.ndarray, v: np.ndarray, bits: int) -> np.ndarray:
    """Limited-range BT.601 YUV samples of ``bits`` bits as RGB, 0-255 (unrounded): FFmpeg's matrix for a
    stream that names none."""
    scale = 1 << (bits - 8)
    luma = (y - 16.0 * scale) / (219 * scale)
    cb, cr = (u - 128.0 * scale) / (224 * scale), (v - 128.0 * scale) / (224 * scale)
    rgb = np.stack([luma + 1.402 * cr, luma - 0.344136 * cb - 0.714136 * cr, luma + 1.772 * cb], axis=-1)
    return np.clip(rgb * 255, 0, 255)


def test_10_bit_yuv_video_is_the_same_on_every_path_white_at_255(
        tmp_path: Path, http_server: tuple[str, Path]) -> None:  # noqa: F811
    """A 10-bit H.264 clip (High 10, yuv420p10le: HEVC Main 10 and ProRes are YUV of 10 or 12 bits too) of 16x16
    blocks of one colour, white and black among them. The file and the URL came through FFmpeg's default rgb24,
    up to 3 levels off the matrix's sum and white 253; the picture path through its rgb48, white 65283, rounded
    to 254. Each path now gives one picture: inside each block (where its chroma is its own) the BT.601 sum of
    its decoded samples rounded, white 255 and black 0."""
    _need("libx264")
    base, root = http_server
    rng = np.random.default_rng(10)
    colours = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    colours[0, 0], colours[0, 1] = 255, 0
    picture = np.repeat(np.repeat(colours, 16, axis=0), 16, axis=1)
    path = _encoded(root / "high10.mkv", "libx264", "yuv420p10le",
                    [av.VideoFrame.from_ndarray(picture, format="rgb24")], qp="0", preset="ultrafast")
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0))
    assert decoded.format.name == "yuv420p10le" and decoded.colorspace in (2, 5, 6)  # unnamed, or BT.601's
    y, u, v = (_plane(decoded, i).astype(np.float64) for i in range(3))
    exact = _bt601(y, np.repeat(np.repeat(u, 2, 0), 2, 1), np.repeat(np.repeat(v, 2, 0), 2, 1), 10)
    inside = np.zeros((64, 96), bool)  # 3 pixels in from each block's edge: chroma is the block's alone there
    for r in range(4):
        for c in range(6):
            inside[16 * r + 3:16 * r + 13, 16 * c + 3:16 * c + 13] = True
    seen = _every_path(path, f"{base}/high10.mkv")
    first = seen["file"][0]
    for name, images in seen.items():
        assert len(images) == 1 and np.array_equal(images[0], first), name
    assert np.abs(first.astype(np.float64) - exact)[inside].max() < 0.55  # rounded (FFmpeg's sum is fixed-point)
    assert (first[3:13, 3:13] == 255).all() and (first[3:13, 19:29] == 0).all()



def _ts_part(width: int, height: int, sar: Fraction, level: int) -> bytes:
    """20 frames of H.264 in MPEG-TS of ``width`` x ``height`` stored pixels of ``sar`` (width to height), grey
    ``level`` with a white square in the middle: 120 pixels high, 120 / ``sar`` stored pixels wide."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "veryfast"})  # B-frames
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.sample_aspect_ratio = sar
        picture = np.full((height, width, 3), level, np.uint8)
        side = round(120 / sar)
        picture[height // 2 - 60:height // 2 + 60, (width - side) // 2:(width + side) // 2] = 255
        for i in range(20):  # a keyframe (the first) further before the switch than FFmpeg's 16 threads reach
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.mark.parametrize(("first", "then"), [
    ((720, 576, Fraction(16, 15)), (720, 576, Fraction(64, 45))),  # a DVB channel's 4:3 programme, then a 16:9 one
    ((720, 576, Fraction(64, 45)), (1280, 720, Fraction(1))),  # SD 16:9, then HD of square pixels
])
def test_pixels_whose_shape_changes_midway_are_widened_as_each_frame_says_on_every_path(
        tmp_path: Path, http_server: tuple[str, Path],  # noqa: F811
        first: tuple[int, int, Fraction], then: tuple[int, int, Fraction]) -> None:
    """A broadcast recording (MPEG-TS, whose container says no pixel shape: each H.264 sequence header does)
    whose pixels change shape midway, as a channel's do between a 4:3 and a 16:9 programme or SD and HD: frames
    were all widened by the first frame's shape, so the 16:9 programme came 768 wide, squeezed, and the HD one
    1820x720, stretched by 64:45. A player (ffplay, VLC) shows each frame at its own: 768 then 1024, 1024x576
    then 1280x720. So do the file and its URL now, the white square square in each."""
    _need("libx264")
    base, root = http_server
    (root / "channel.ts").write_bytes(_ts_part(*first, level=60) + _ts_part(*then, level=160))
    shown = [(round(w * sar), h) for w, h, sar in (first, then)]
    for spec in (root / "channel.ts", f"{base}/channel.ts"):
        with open_source(spec) as source:
            assert source.size == shown[0]
            frames = [frame.image for frame in source]
        assert [(f.shape[1], f.shape[0]) for f in frames] == [shown[0]] * 20 + [shown[1]] * 20, spec
        for image in (frames[0], frames[-1]):
            rows, cols = np.nonzero(image[..., 1] > 220)
            assert abs((cols.max() - cols.min() + 1) - 120) <= 2 and rows.max() - rows.min() + 1 == 120, spec
