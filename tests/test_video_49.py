"""Video frames FFmpeg decodes, the same on every path: a file, the same file at a URL (a real HTTP server on
127.0.0.1), and a picture FFmpeg decodes (:func:`_ffmpeg_picture`). More than 8 bits a channel are rounded to 8
one way; non-square pixels are widened to the width a player shows, one way."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from unittest import mock

import av
import cv2
import numpy as np
import pytest
from test_io_sources import http_server  # noqa: F401 - the fixture

from pvt_deploy.io import sources
from pvt_deploy.io.sources import _FULL_CHROMA, _ffmpeg_picture, _frame_to_rgb, open_source


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
    # no picture format holds these samples: the clip's bytes are taken for a picture's (what FFmpeg's picture
    # demuxers read is a picture, a video's first frame is not), its first frame decoded as one
    with mock.patch.object(sources, "_IMAGE_DEMUXERS", (*sources._IMAGE_DEMUXERS, "matroska")):
        picture, _ = _ffmpeg_picture(np.fromfile(path, np.uint8))
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


def _yuv_sum(y: np.ndarray, u: np.ndarray, v: np.ndarray, bits: int, weights: tuple[float, float] = (0.299, 0.114),
             full: bool = False) -> np.ndarray:
    """YUV samples of ``bits`` bits as RGB, 0-255 (unrounded), by the matrix of ``weights`` (Kr, Kb: BT.601's,
    FFmpeg's for a stream that names none, by default), limited range or ``full``. As FFmpeg's swscale reads them,
    a sample of n bits is one of 8 bits times 2^(n-8): full-range white is 1020 at 10 bits, not 1023."""
    scale = 1 << (bits - 8)
    y, u, v = y / scale, u / scale - 128.0, v / scale - 128.0
    luma, cb, cr = (y / 255, u / 255, v / 255) if full else ((y - 16.0) / 219, u / 224, v / 224)
    kr, kb = weights
    kg = 1 - kr - kb
    rgb = np.stack([luma + 2 * (1 - kr) * cr, luma - 2 * (1 - kb) * kb / kg * cb - 2 * (1 - kr) * kr / kg * cr,
                    luma + 2 * (1 - kb) * cb], axis=-1)
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
    exact = _yuv_sum(y, np.repeat(np.repeat(u, 2, 0), 2, 1), np.repeat(np.repeat(v, 2, 0), 2, 1), 10)
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


def _yuv420p10(y: np.ndarray, u: np.ndarray, v: np.ndarray, colorspace: int, color_range: int) -> av.VideoFrame:
    """A yuv420p10le frame of these samples (chroma at half the size), tagged ``colorspace`` and ``color_range``."""
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p10le")
    for plane, samples in zip(frame.planes, (y, u, v), strict=True):
        padded = np.zeros((plane.height, plane.line_size // 2), np.uint16)
        padded[:, :plane.width] = samples
        plane.update(padded.tobytes())
    frame.colorspace, frame.color_range = colorspace, color_range
    return frame


@pytest.mark.parametrize(("colorspace", "color_range", "weights"), [
    (1, 1, (0.2126, 0.0722)),  # BT.709, limited: HD
    (1, 2, (0.2126, 0.0722)),  # BT.709, full: some cameras'
    (9, 1, (0.2627, 0.0593)),  # BT.2020: a phone's HDR (HLG, HDR10) HEVC
])
def test_10_bit_yuv_video_is_converted_by_the_matrix_and_range_it_names(
        tmp_path: Path, colorspace: int, color_range: int, weights: tuple[float, float]) -> None:
    """A lossless 10-bit H.264 clip of 16x16 blocks of one colour (luma varying inside each), tagged with its
    matrix and range, converted from its planes (not by FFmpeg's swscale, whose conversion with chroma
    interpolated in full costs twice to four times as much): inside each block the sum of the matrix it names
    rounded (a 601 sum of a 709 frame is up to 19 levels off), white 255 and black 0. A block of the most blue
    above white (Y 940, Cb 1023) is blue 255: swscale's sum past 512 levels wraps, blue 0."""
    _need("libx264")
    rng = np.random.default_rng(colorspace * 10 + color_range)
    luma, chroma = rng.integers(64, 941, (4, 6)), rng.integers(64, 961, (2, 4, 6))
    white, black = (1020, 0) if color_range == 2 else (940, 64)
    luma[0, :3], chroma[:, 0, :3] = (white, black, 940), ((512, 512, 1023), (512, 512, 512))  # and most blue
    noise = rng.integers(-6, 7, (64, 96))
    noise[:16, :48] = 0
    y = np.clip(np.kron(luma, np.ones((16, 16), int)) + noise, 0, 1023)
    u, v = (np.kron(c, np.ones((8, 8), int)) for c in chroma)
    path = _encoded(tmp_path / "tagged.mkv", "libx264", "yuv420p10le",
                    [_yuv420p10(y, u, v, colorspace, color_range)], qp="0", preset="ultrafast",
                    colorspace=("bt709" if colorspace == 1 else "bt2020nc"),
                    color_range=("pc" if color_range == 2 else "tv"))
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0))
    assert (decoded.colorspace, decoded.color_range) == (colorspace, color_range)
    assert all(np.array_equal(_plane(decoded, i), s) for i, s in enumerate((y, u, v)))  # lossless
    exact = _yuv_sum(y.astype(np.float64), np.repeat(np.repeat(u, 2, 0), 2, 1).astype(np.float64),
                     np.repeat(np.repeat(v, 2, 0), 2, 1).astype(np.float64), 10, weights, full=color_range == 2)
    inside = np.zeros((64, 96), bool)
    for r in range(4):
        for c in range(6):
            inside[16 * r + 3:16 * r + 13, 16 * c + 3:16 * c + 13] = True
    with open_source(path) as source:
        (image,) = [frame.image for frame in source]
    assert np.abs(image.astype(np.float64) - exact)[inside].max() < 0.55
    shown = [image[3:13, 16 * i + 3:16 * i + 13] for i in range(3)]
    assert (shown[0] == 255).all() and (shown[1] == 0).all() and (shown[2][..., 2] == 255).all()


def _smooth(pix_fmt: str, width: int, height: int, rng: np.random.Generator) -> av.VideoFrame:
    """A frame of ``pix_fmt`` whose planes are smooth (bicubic from 3x4 samples), luma and chroma within range."""
    bits = av.VideoFormat(pix_fmt).components[0].bits
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane in frame.planes:
        coarse = rng.uniform(20, 230, (3, 4)).astype(np.float32) * (1 << (bits - 8))
        smooth = np.asarray(cv2.resize(coarse, (plane.width, plane.height), interpolation=cv2.INTER_CUBIC))
        smooth = np.clip(smooth.round(), 16 << (bits - 8), 240 << (bits - 8)).astype(np.uint16)  # cubic overshoots
        samples = np.pad(smooth, ((0, 0), (0, plane.line_size // 2 - plane.width)))
        plane.update(samples.tobytes())
    return frame


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv422p10le", "yuv444p12le", "yuv420p16le", "yuva420p10le",
                                     "yuv420p9le"])
def test_high_bit_yuv_of_every_planar_layout_converts_as_ffmpeg_does(pix_fmt: str) -> None:
    """Planar YUV of 9 to 16 bits (4:2:0, 4:2:2, 4:4:4, alpha), of an odd size, under each matrix swscale has and
    both ranges, shown as stored and widened (non-square pixels): within 1 level of swscale's conversion with
    chroma interpolated in full, pixel for pixel (content smooth: at a sharp edge their bilinear weights differ).
    The same samples as P010 (semi-planar: swscale converts it) come out the same."""
    rng = np.random.default_rng(len(pix_fmt))
    for colorspace, color_range in [(2, 0), (1, 2), (4, 1), (7, 1), (9, 2)]:
        frame = _smooth(pix_fmt, 67, 35, rng)
        frame.colorspace, frame.color_range = colorspace, color_range
        for width in (67, 89):
            image = _frame_to_rgb(frame, width)
            ffmpeg = frame.reformat(width=width, format="rgb24", interpolation=_FULL_CHROMA).to_ndarray()
            assert image.shape == (35, width, 3)
            assert np.abs(image.astype(int) - ffmpeg).max() <= 1, (colorspace, color_range, width)
    if pix_fmt == "yuv420p10le":  # of an even size: swscale's P010 of an odd width is not the same samples
        frame = _smooth(pix_fmt, 68, 36, rng)
        semi = frame.reformat(format="p010le")
        assert np.abs(_frame_to_rgb(semi).astype(int) - _frame_to_rgb(frame)).max() <= 1
