"""Frame sources: one iterator for images, folders, globs, video files, webcams and network streams.

Everything downstream (preprocess, backends, sinks) sees the same thing whatever the input was: a
:class:`Source` that yields :class:`Frame` objects holding an ``HxWx3`` uint8 **RGB** array, plus
metadata (``kind``, ``fps``, ``size``, ``frames``) for progress bars and video writers.

Decoding choices and why:

* Images go through ``cv2.imdecode`` on bytes read by numpy, so non-ASCII paths work on every OS.
  The flags keep 16-bit depth (scaled down here, not truncated) and let OpenCV apply the EXIF
  orientation, so phone photos come out upright without Pillow. A picture OpenCV cannot decode (a
  JPEG 2000 of 4:2:0 chroma), or past its size limits (2^20 pixels a side) or libpng's (10^6 a side),
  goes through FFmpeg, decoded as OpenCV decodes one, where FFmpeg's own limit lets it (some 268
  million pixels with its padding: a strip 2^20 wide up to 127 rows, 10^6 wide up to 140); OpenCV's
  2^30 pixels in all are past FFmpeg's. Neither decoding it, it is one line; OpenCV's log is not said.
* Video goes through PyAV (FFmpeg) with threaded decoding. Damaged packets are skipped as players
  do; a truncated file yields the frames it has and then ends with a warning instead of raising,
  because a partly recorded clip is still worth processing. A display matrix's rotation and mirror
  (phone videos; a front camera's is mirrored) are applied as FFmpeg's autorotate applies them.
* Live streams (RTSP/RTMP/MJPEG over HTTP, webcams) reconnect with exponential backoff after a
  drop and end cleanly when the retries run out, so a long-running ``infer`` on an edge box
  survives a camera reboot and still finalises its outputs when the camera is gone for good. The
  *first* connection is not retried: a wrong URL should fail at once with a clear error.
"""

from __future__ import annotations

import bisect
import contextlib
import fnmatch
import functools
import glob as globlib
import heapq
import io
import itertools
import logging
import math
import os
import re
import stat
import threading
import time
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import av
import cv2
import numpy as np
from av.video.plane import VideoPlane
from av.video.reformatter import Colorspace, Interpolation

from pvt_deploy.errors import InputError
from pvt_deploy.utils import count_of, joined_lines, shell_quote
from pvt_deploy.utils.files import decode_text, wide_codec
from pvt_deploy.utils.stderr import HeldStderr, stderr_held

log = logging.getLogger(__name__)

class _NoVideoStream(InputError):
    """A container PyAV opens that holds no video (an audio file, a subtitle track)."""


class _TooBigToDecode(InputError):
    """A picture whose header, or a video whose stream, declares more pixels than the memory free can decode
    and run (see :func:`_check_memory_to_run`): said as it is, not as an unreadable file or a stream that
    failed, and not retried as a dropped connection."""


SourceKind = Literal["image", "images", "video", "stream"]


def counted_as(kind: str | None) -> str:
    """What a count of a source of ``kind`` counts, in messages: frames of a video or a stream, images of
    pictures ("3 images in 0.07 s", "ms/image", "1 image vs torch")."""
    return "frame" if kind in ("video", "stream") else "image"

IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".tif", ".tiff", ".avif",
     ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic",
     ".tga", ".pcx", ".sgi", ".qoi", ".dds"}  # OpenCV reads none of these: FFmpeg does, TGA Pillow (_decode_picture)
)  # fmt: skip
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".mpg", ".mpeg",
     ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".gif", ".h264", ".h265", ".hevc", ".y4m"}
)  # fmt: skip
# HEIC/HEIF, an iPhone's photos: neither OpenCV nor the FFmpeg PyAV brings decodes them (nor Pillow without a
# plugin), and no dependency is taken for them: said as such, with how to convert them (_heic_not_read)
HEIC_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
_HEIC_HINT = ("convert to JPEG (macOS: sips -s format jpeg NAME.heic --out NAME.jpg; Linux: heif-convert NAME.heic "
              "NAME.jpg), or have the iPhone save JPEG: Settings > Camera > Formats > Most Compatible")
# An Ultralytics dataset YAML (data=coco8.yaml): what export --calib and check --images read as a split's images
DATASET_SUFFIXES = frozenset({".yaml", ".yml"})
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
# Schemes that only ever carry live feeds: an end of data there is a drop, never the end of a file.
_LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp"})
# Single-picture demuxers: a URL to a JPEG is one frame, not a live feed to reconnect to forever.
_IMAGE_DEMUXERS = ("_pipe", "image2")
# Demuxers that store a time for every frame (mp4/mov's sample table, mkv/webm's blocks, AVI's index),
# so that on a constant-rate clip a frame's time tells its number. MPEG-PS/TS carry one every few
# frames at most and FFmpeg fills in the rest, which goes wrong around damage.
_MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"  # FFmpeg's name for the demuxer of mp4, mov and their kin
_TIMED_DEMUXERS = (_MP4_DEMUXER, "matroska,webm", "avi")
# why a file has 0 bytes and what to do: a copy or download that never started (or a name touched)
_EMPTY_HINT = "a copy or download that never started: copy or download it again"
_MAX_BAD_PACKETS = 50  # consecutive undecodable packets before a video is given up on
_STOP_POLL_S = 0.1  # how often a wait for a live frame looks at the stop flag
# How long stopping waits for a stream's reader thread. It can sit in a network read for the whole read
# timeout (10 s by default); a stop must not: ``docker stop`` kills after 10 s, before the mp4's
# trailer. The thread is a daemon that writes nothing the run keeps, so it is left to end by itself.
_READER_JOIN_S = 0.5
_AVFMT_NOTIMESTAMPS = 0x80  # FFmpeg's flag for demuxers whose packets carry no timestamps (mpjpeg)
_AVFMT_TS_DISCONT = 0x200  # FFmpeg's flag for formats whose clock may jump (MPEG-TS, FLV, HLS)
_JUMP_AHEAD_S = 10.0  # a jump forward that far in such a format is a discontinuity (ffmpeg's -dts_delta_threshold)
# Demuxers whose packets carry a decode time only: AVI stores frames in decode order, one per tick of
# its rate, and the presentation times FFmpeg makes up from that are wrong for codecs that reorder
# (H.264 with B-frames came out 0.04, 0.12, 0.16, 0.08 s...; MPEG-4 Part 2 one frame late).
_DECODE_TIMED_DEMUXERS = ("avi",)

# ---------------------------------------------------------------------------------------------
# Frames and the Source interface
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded picture and where it came from.

    ``image`` is ``HxWx3`` uint8 RGB (the graph contract's colour order). ``index`` is the frame
    number in the source *before* ``vid_stride`` (so it maps to the file list or the video's frame
    numbers). ``path`` is the image file, the video file, the stream URL (credentials removed) or
    ``webcamN``. ``timestamp`` is seconds from the start of a video, seconds since opening for a
    live stream (spaced as the stream's own timestamps where it has them), ``None`` for still images.
    ``location`` is what ``path`` names for display only: the URL as given, user name and password
    included, of a file served over the network, which a writer reads again for its audio (None where
    ``path`` is the place itself, or for a live feed, which cannot be read again). Never shown: not in
    ``repr``, messages, output names or JSON.
    """

    image: np.ndarray
    index: int
    path: str
    timestamp: float | None = None
    location: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """Base name for output files: ``photo.jpg``, ``clip.mp4``, ``cam1`` (URL path), ``webcam0``."""
        if is_url(self.path):
            parts = urlsplit(self.path)
            return Path(parts.path).name or (parts.hostname or "stream")
        return Path(self.path).name or self.path


class Source(ABC):
    """An iterable of :class:`Frame` with metadata; close it (or use ``with``) to free decoders.

    ``frames`` is how many frames iteration will yield (after ``vid_stride``) where that is known
    up front, for progress bars; it can be an estimate for containers that store only a duration
    (mkv, webm: their length times their rate), which ``frames_exact`` False says.
    ``skipped`` counts unreadable images skipped in a folder or glob; ``dropped`` counts live frames
    discarded because the consumer was slower than the stream (``realtime`` mode).
    """

    kind: SourceKind
    spec: str = ""
    fps: float | None = None
    size: tuple[int, int] | None = None  # (width, height)
    frames: int | None = None
    frames_exact: bool = True
    skipped: int = 0
    dropped: int = 0
    _closed: bool = False

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise InputError(f"source {self.spec} is closed")
        return self._iter_frames()

    @abstractmethod
    def _iter_frames(self) -> Iterator[Frame]: ...

    def stop(self) -> None:  # noqa: B027 - not abstract: only a source that can wait for long overrides it
        """Ask an iteration running in another thread to end at its next chance, without waiting for
        it: a live stream stops waiting for a frame that may never come. Safe from any thread; the
        caller still closes the source. Files and folders need nothing here (a read ends by itself)."""

    def close(self) -> None:
        """Release files, decoders and connections. Safe to call twice."""
        self._closed = True

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, spec={self.spec!r}, fps={self.fps}, "
            f"size={self.size}, frames={self.frames})"
        )


# ---------------------------------------------------------------------------------------------
# Pixel conversion
# ---------------------------------------------------------------------------------------------


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale any decoded depth to uint8 (16-bit is rounded, not truncated; float assumes 0..1)."""
    if img.dtype == np.uint8:
        return img
    out: np.ndarray
    if img.dtype == np.uint16:
        out = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return out
    if np.issubdtype(img.dtype, np.floating):
        out = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return out
    if img.dtype == np.bool_:
        out = img.astype(np.uint8) * 255
        return out
    out = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _decoded_to_rgb(img: np.ndarray) -> np.ndarray:
    """OpenCV's decoded layout (gray, BGR, BGRA, any depth) -> contiguous HxWx3 uint8 RGB."""
    img = _to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels in (1, 2):  # gray (+ alpha): alpha is dropped like OpenCV's own colour decode
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _frame_to_rgb(frame: av.VideoFrame, width: int | None = None, *, source: str = "a picture FFmpeg decodes",
                  said: set[int] | None = None) -> np.ndarray:
    """A frame FFmpeg decoded (a video's, a stream's, a picture's) as HxWx3 uint8 RGB, ``width`` wide where given
    (a player's width of non-square pixels): the one conversion of every path. 8 bits a channel as FFmpeg converts
    them by default, as OpenCV's VideoCapture does, but for YUV whose sum that conversion wraps (4:4:4, most odd
    widths: :func:`_full_chroma`), converted as more than 8 are; more than 8 rounded to 8.
    FFmpeg's default conversion of YUV of more than 8 bits (a 10-bit HEVC's or H.264's, a ProRes's) to rgb24 is up
    to 4 levels off the matrix's sum, white 253, and its rgb48 up to 1.3, white 65283 (254 rounded): YUV is
    converted by :func:`_yuv_to_rgb`, the sum rounded, planar, semi-planar (NV12, a hardware decoder's P010) and
    packed (YUYV) alike, and the layouts it does not read (XV30's 10-bit fields, XYZ) by FFmpeg, more than 8 bits
    with chroma interpolated in full (its full_chroma_int: the sum rounded too, but a sum past 512 levels wraps).
    Its rgb24 of RGB and gray samples of more than 8 bits (16-bit FFV1 or PNG, 12-bit gray) cuts the low bits:
    those are taken at 16 bits and rounded as :func:`_to_uint8` rounds a 16-bit PNG's (gray as gray: FFmpeg's
    rgb48 of 10 or 12-bit gray is not 65535 / 1023 of it).

    YUV tagged with a colorspace FFmpeg's converter has no matrix for (YCgCo, BT.2020's constant luminance, ICtCp,
    a reserved value), which it refuses ('Operation not supported'), is converted by BT.601's, FFmpeg's default,
    as ffplay shows it (SDL's default matrix; FFmpeg's scaler before 8.0 fell back to it too), with one warning
    naming the tag for ``source`` (once for each tag in ``said``, where given: a video's frames)."""
    fmt = frame.format
    components = fmt.components
    yuv = len(components) >= 3 and not fmt.is_rgb  # YUV (and alpha), XYZ
    colorspace, tagged = int(frame.colorspace), None  # tagged: the matrix reformat is told, where not the frame's
    if colorspace not in _LUMA_WEIGHTS and yuv:
        if said is None or colorspace not in said:
            log.warning("%s: its frames are tagged with the colorspace %s, which FFmpeg's converter has no matrix "
                        "for: read with BT.601's, as ffplay shows them (its colours may be off)", source,
                        _UNMATCHED_COLORSPACES.get(colorspace, f"reserved ({colorspace})"))
            if said is not None:
                said.add(colorspace)
        colorspace, tagged = _BT601_TAG, Colorspace.ITU601
    deep = max(c.bits for c in components) > 8
    if yuv and (deep or _full_chroma(frame, width)):
        image = _yuv_to_rgb(frame, width or frame.width, colorspace)
        if image is not None:
            return image
    # contiguous: PyAV 18.1.1 (FFmpeg 8.1.3) gives rgb24 rows padded to 64 bytes, and to_ndarray a view without the
    # padding (a 96-pixel row, 288 bytes, held in 384), which every later step would read strided
    if not deep:
        return np.ascontiguousarray(frame.reformat(width=width, format="rgb24", src_colorspace=tagged,
                                                   threads=_SCALER_THREADS).to_ndarray())
    if yuv:
        return np.ascontiguousarray(frame.reformat(width=width, format="rgb24", src_colorspace=tagged,
                                                   interpolation=_FULL_CHROMA, threads=_SCALER_THREADS).to_ndarray())
    if len(components) <= 2:  # gray (and alpha)
        gray = frame.reformat(width=width, format="gray16le", threads=_SCALER_THREADS).to_ndarray()
        return cv2.cvtColor(_to_uint8(gray), cv2.COLOR_GRAY2RGB)
    return _to_uint8(frame.reformat(width=width, format="rgb48le", threads=_SCALER_THREADS).to_ndarray())


_FULL_CHROMA = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT


def _full_chroma(frame: av.VideoFrame, width: int | None) -> bool:
    """Whether FFmpeg's default conversion of ``frame``'s 8-bit YUV to RGB, ``width`` wide, interpolates its chroma
    in full, as it does unasked for chroma at the luma's size (4:4:4) and for any odd width out (a player's width of
    non-square pixels, or the frame's own: a VP9 or AV1 screen recording of 1365x767), but where its table-driven
    converter takes the frame as it is (:data:`_TABLE_CONVERTED` of an even height, which clips): its fixed-point
    sum wraps past 512 levels there, the most blue above white (Y 255, Cb 255; limited range) blue 0, not 255
    (FFmpeg 8's swscale; full range sums to 480 at most). Its other conversions clip, and cost half as much as
    :func:`_yuv_to_rgb`, which converts these. Checked against FFmpeg for each planar, semi-planar and packed
    layout, 16 to 20 pixels a side, as they are and widened."""
    fmt, w, h = frame.format, frame.width, frame.height
    if fmt.chroma_width(w) == w and fmt.chroma_height(h) == h:
        return True
    out = width or w
    return out % 2 == 1 and not (out == w and h % 2 == 0 and fmt.name in _TABLE_CONVERTED)


#: The layouts FFmpeg's swscale converts to RGB through its tables where the size stays and the height is even
#: (its unscaled yuv2rgb): chroma is not interpolated in full there, whatever the width
_TABLE_CONVERTED = frozenset({"yuv420p", "yuv422p", "yuva420p"})


# FFmpeg's scaler on one thread: a frame keeps its scaler, and the last frame a reader decoded (which it holds)
# freed in a forked child hung there for good, waiting on the scaler threads the fork did not copy (a child
# that collected garbage or left normally never ended). PyAV's default is one thread a core; a 1080p frame's
# conversion takes no more CPU on one, and the decode thread runs beside the model's threads either way
_SCALER_THREADS = 1

# Planar YUV of 8 bits, or of 9 to 16, little-endian, alpha or none ("yuv444p10msble" holds its samples in the high
# bits; "yuvj444p", full range whatever the frame's range says, sums to no more than 480 levels: FFmpeg's)
_PLANAR_YUV = re.compile(r"yuva?4[0-4][0-4]p(?:\d+le)?")

# Where Y, Cb and Cr lie in a frame (_yuv_samples): (plane, first sample, samples from one to the next) each, in
# bytes, or in 16-bit words for more than 8 bits. Planar YUV has three planes, semi-planar two (Cb and Cr
# interleaved: NV12, a hardware decoder's P010), packed one (YUYV 4:2:2, a webcam's; VUYA 4:4:4)
_PLANAR = ((0, 0, 1), (1, 0, 1), (2, 0, 1))
_NV12, _NV21 = ((0, 0, 1), (1, 0, 2), (1, 1, 2)), ((0, 0, 1), (1, 1, 2), (1, 0, 2))
_YUYV, _YVYU = ((0, 0, 2), (0, 1, 4), (0, 3, 4)), ((0, 0, 2), (0, 3, 4), (0, 1, 4))
_UYVY, _AYUV = ((0, 1, 2), (0, 0, 4), (0, 2, 4)), ((0, 1, 4), (0, 2, 4), (0, 3, 4))
_UYVA, _VUYA = ((0, 1, 4), (0, 0, 4), (0, 2, 4)), ((0, 2, 4), (0, 1, 4), (0, 0, 4))
# The semi-planar and packed layouts converted as planar YUV is, by their places and the bits a sample is read at:
# P010's and the like's 10 or 12 bits lie in the high bits of their words, read at 16 bits (the low bits, which
# FFmpeg's decoders leave 0, with them: a sample of n bits is one of 8 times 2^(n-8), as swscale reads it)
_INTERLEAVED_YUV = {
    "nv12": (_NV12, 8), "nv16": (_NV12, 8), "nv24": (_NV12, 8), "nv21": (_NV21, 8), "nv42": (_NV21, 8),
    "nv20le": (_NV12, 10), **{f"p{chroma}{bits}le": (_NV12, 16) for chroma in "024" for bits in (10, 12, 16)},
    "yuyv422": (_YUYV, 8), "yvyu422": (_YVYU, 8), "uyvy422": (_UYVY, 8), "y210le": (_YUYV, 16), "y212le": (_YUYV, 16),
    "ayuv": (_AYUV, 8), "uyva": (_UYVA, 8), "vuya": (_VUYA, 8), "vuyx": (_VUYA, 8), "ayuv64le": (_AYUV, 16),
    "xv36le": (_UYVA, 16), "vyu444": (((0, 1, 3), (0, 2, 3), (0, 0, 3)), 8),
}

# Kr and Kb of the matrix FFmpeg's swscale applies for a frame's colorspace (AVColorSpace): BT.601's where none
# is named (and for RGB's, 0); swscale refuses the others, which are read as BT.601 (BT470BG, 5: _frame_to_rgb)
_BT601 = (0.299, 0.114)
_LUMA_WEIGHTS = {0: _BT601, 1: (0.2126, 0.0722), 2: _BT601, 4: (0.30, 0.11), 5: _BT601, 6: _BT601,
                 7: (0.212, 0.087), 9: (0.2627, 0.0593)}
_BT601_TAG = 5
# The colorspaces swscale refuses, by FFmpeg's names (av_color_space_name); 3 and any past these are reserved
_UNMATCHED_COLORSPACES = {8: "YCgCo (8)", 10: "BT.2020 constant luminance (10)", 11: "SMPTE 2085 (11)",
                          12: "chromaticity-derived non-constant luminance (12)",
                          13: "chromaticity-derived constant luminance (13)", 14: "ICtCp (14)", 15: "IPT-C2 (15)",
                          16: "YCgCo-R even (16)", 17: "YCgCo-R odd (17)"}


def _yuv_to_rgb(frame: av.VideoFrame, width: int, colorspace: int | None = None) -> np.ndarray | None:
    """A frame of YUV of more than 8 bits, or of 8 where FFmpeg's sum wraps (:func:`_full_chroma`), planar,
    semi-planar or packed (:func:`_yuv_samples`), as HxWx3 uint8 RGB, ``width`` wide: the sum of the matrix of its
    colorspace and range, as FFmpeg's swscale applies them, rounded (within 0.5 of it), its chroma upsampled
    bilinearly from the centre of its samples, as swscale's full_chroma_int does. That costs twice as much
    (1080p 10-bit: 12.1 ms of CPU against 7.5, FFmpeg's default rgb24 6.6, up to 4 levels off; 4K 46.7, 40.7 and
    23.6; benchmarks/frame_convert.py on a loaded 2-core machine, the run e3e9f2e records), and its fixed-point sum wraps past 512 levels: the
    most blue above white (Y 940, Cb 1023) came blue 0. ``colorspace`` (an AVColorSpace) names the matrix, the
    frame's where not given: BT.601's stands for one swscale has none for (:func:`_frame_to_rgb`). None for another
    layout, which swscale converts, or a colorspace it has no matrix for.

    As swscale does, a sample of n bits is one of 8 bits times 2^(n-8): limited range is 16-235 (chroma 16-240)
    times that, and full range 0-255 times it (1020, not 1023, is white at 10 bits, so 1021-1023 are 255 too).
    Each channel's chroma term is summed at the chroma planes' size and upsampled (bilinear is linear: the same
    as upsampling the planes first), then added to luma, rounded and clipped to 8 bits by one addWeighted."""
    weights = _LUMA_WEIGHTS.get(int(frame.colorspace) if colorspace is None else colorspace)
    samples = _yuv_samples(frame)
    if weights is None or samples is None:
        return None
    y, u, v, bits = samples
    scale = float(1 << (bits - 8))
    if int(frame.color_range) == 2:  # full (JPEG) range
        luma, chroma, black = 1.0 / scale, 1.0 / scale, 0.0
    else:
        luma, chroma, black = 255 / (219 * scale), 255 / (224 * scale), -16 * 255 / 219
    kr, kb = weights
    kg = 1.0 - kr - kb
    size = (width, frame.height)
    if width != frame.width:
        y = cv2.resize(y.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    shown = u.shape == (frame.height, width)  # chroma at the size shown (4:4:4 as stored): nothing to upsample
    channels, term, upsampled = [], None, None  # term and upsampled: one buffer each for the three channels
    # R, G and B: each the sum of luma and of its weights of Cb and Cr (each of them 0 at 128 times the scale)
    for cb, cr in ((0.0, 2 * (1 - kr)), (-2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg), (2 * (1 - kb), 0.0)):
        term = cv2.addWeighted(u, cb * chroma, v, cr * chroma, black - (cb + cr) * chroma * 128 * scale,
                               dst=term, dtype=cv2.CV_32F)
        upsampled = term if shown else cv2.resize(term, size, dst=upsampled, interpolation=cv2.INTER_LINEAR)
        channels.append(cv2.addWeighted(y, luma, upsampled, 1.0, 0.0, dtype=cv2.CV_8U))
    return cv2.merge(channels)


def _yuv_samples(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """A YUV frame's Y, Cb and Cr samples, each a 2-D array (bytes, or 16-bit words for more than 8 bits: a view of
    FFmpeg's planes, its padding cut, or a copy where they are interleaved), and the bits they are read at; None for
    a layout not planar (:data:`_PLANAR_YUV`), semi-planar or packed as :data:`_INTERLEAVED_YUV` knows them."""
    fmt = frame.format
    places, bits = (_PLANAR, fmt.components[0].bits) if _PLANAR_YUV.fullmatch(fmt.name) else \
        _INTERLEAVED_YUV.get(fmt.name, (None, 0))
    if places is None:
        return None
    dtype = np.uint8 if bits <= 8 else np.uint16
    sizes = ((frame.height, frame.width),) + ((fmt.chroma_height(frame.height), fmt.chroma_width(frame.width)),) * 2
    y, u, v = (_samples(frame.planes[index], dtype, first, step, size)
               for (index, first, step), size in zip(places, sizes, strict=True))
    return y, u, v, bits


def _samples(plane: VideoPlane, dtype: type[np.unsignedinteger[Any]], first: int, step: int,
             size: tuple[int, int]) -> np.ndarray:
    """``size`` (rows, columns) samples of a plane as FFmpeg holds it, from its ``first``, one each ``step``: a view,
    its padding cut, where they are side by side, else a copy (OpenCV copies a view of every other sample each time
    it reads it)."""
    rows = np.frombuffer(memoryview(plane), dtype).reshape(plane.height, plane.line_size // np.dtype(dtype).itemsize)
    samples = rows[:size[0], first::step][:, :size[1]]
    return samples if step == 1 else np.ascontiguousarray(samples)


def as_rgb_array(image: Any) -> np.ndarray:
    """An in-memory picture (numpy array assumed RGB, a PIL image, or an encoded picture: see
    :func:`read_encoded`) -> HxWx3 uint8 RGB.

    Arrays are *not* channel-swapped: pvt-deploy is RGB end to end, so an array from
    ``cv2.imread`` must be converted by the caller (``img[..., ::-1]``). A float array is read as
    0..1 when no value exceeds 1, else as 0..255 (``img.astype(np.float32)`` of a uint8 picture),
    uint16 as 16-bit; values that are no pixels (NaN, a normalised tensor, 16-bit values in an int32
    array: :func:`_check_pixel_values`) raise :class:`InputError`.
    The result never shares memory with the caller's array: a capture loop that reuses its frame
    buffer cannot change a picture (``Result.orig_img``) after the fact.
    """
    if _is_encoded(image):
        return read_encoded(image)
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL.Image without importing PIL
        try:
            image = _pil_pixels(image)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - closed, its file closed or cut short: Pillow's own errors
            raise InputError(f"cannot read the PIL image's pixels ({joined_lines(e) or type(e).__name__})",
                             hint="read them before the image or its file is closed: image.load() or "
                             "image.copy() inside 'with Image.open(...)'") from e
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected a numpy array or PIL image, got {type(image).__name__}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_) or np.iscomplexobj(image):
        raise InputError(f"expected an image array of numbers, got dtype {image.dtype}")
    given = image
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or image.size == 0:
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {image.shape}")
    _check_pixel_values(image)
    if np.issubdtype(image.dtype, np.floating) and float(np.max(image)) > 1.0:
        image = np.clip(image, 0.0, 255.0) / 255.0  # 0..255 floats, not 0..1
    img = _to_uint8(image)
    if img.ndim == 2 or img.shape[2] == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    out = np.ascontiguousarray(img[:, :, :3])
    return out.copy() if np.may_share_memory(out, given) else out


def _pil_pixels(image: Any) -> np.ndarray:
    """A PIL image's pixels: 16-bit (``I;16``), 32-bit integer (``I``) and float (``F``) pictures as
    arrays that :func:`as_rgb_array` scales as it scales a file's (Pillow's ``convert("RGB")`` clips
    them to 255: a 16-bit grey PNG came in white, a 0..1 float TIFF black); other modes through
    ``convert("RGB")``. Mode ``I`` holds a 16-bit PNG's values in older Pillows: read as 16-bit where
    they pass 255 and fit in 16 bits."""
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if image.mode in ("I", "F"):
        pixels = np.asarray(image)
        if image.mode == "I" and pixels.size and 255 < pixels.max() <= 65535 and pixels.min() >= 0:
            return pixels.astype(np.uint16)
        return pixels
    return np.asarray(image.convert("RGB"))


def _check_pixel_values(image: np.ndarray) -> None:
    """Refuse an array whose values are not pixels, which clipping would turn into a black or white
    picture without a word: floats outside 0..1 and 0..255 (a normalised tensor, ``(x/255 - mean) / std``,
    or one centred on 0), NaN or infinity, integers outside 0..255 (16-bit values in an int32 array);
    uint8, uint16 (16-bit) and bool hold pixels whatever their values. Rounding noise (half an 8-bit
    level) past either end is still a pixel, and so is a 0..1 picture's dip to -0.05 (the ringing of a
    bicubic resize); a normalised tensor reaches about -2."""
    if image.dtype in (np.uint8, np.uint16, np.bool_):
        return
    lo, hi = image.min(), image.max()
    if np.issubdtype(image.dtype, np.floating):
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"the {image.dtype} picture ({image.shape}) has NaN or infinite values",
                             hint="give pixels: 0..1 or 0..255 floats, or uint8")
        if lo < (-0.05 if hi <= 1.0 else -0.5) or hi > 255.5:
            raise InputError(f"the {image.dtype} picture's values lie in {float(lo):g}..{float(hi):g}, not 0..1 or 0..255 "
                             "(a normalised tensor? pvt-deploy normalises the pixels itself)",
                             hint="give the picture's pixels (uint8, or 0..1 / 0..255 floats)")
    elif lo < 0 or hi > 255:
        raise InputError(f"the {image.dtype} picture's values lie in {int(lo)}..{int(hi)}, not 0..255",
                         hint="give 8-bit pixels, or uint16 for 16-bit ones")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB, EXIF orientation applied.

    Raises :class:`InputError` for a missing, unreadable or undecodable file.
    """
    try:
        data = np.fromfile(os.fspath(path), dtype=np.uint8)  # bytes first: unicode-safe on Windows
    except OSError as e:
        raise InputError(f"cannot read image {path}: {joined_lines(e.strerror or e)}") from e
    return _decode_file(data, path)


def _decode_file(data: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """An image file's bytes, named ``path`` in messages, decoded as :func:`read_image` decodes them."""
    frames = _check_memory_to_decode(data, path)
    if data.size == 0:
        raise _said_empty(path)
    try:
        img = _decode_picture(data, path)
    except cv2.error as e:  # which OpenCV raises, rather than fails to decode, for a picture past its size limits
        raise InputError(f"cannot decode image {path} ({joined_lines(e)})",
                         hint=_OPENCV_LIMITS if "CV_IO_MAX_IMAGE" in str(e) else None) from None
    if img is None and _past_libpng_limits(data):  # a PNG that may well be whole: FFmpeg has size limits too
        width, height = _png_size(data) or (0, 0)
        raise InputError(f"cannot decode image {path} (a {width}x{height} PNG, past the {_LIBPNG_MAX_SIDE} pixels a "
                         "side libpng reads, which FFmpeg could not decode either)")
    if img is None:
        raise InputError(f"cannot decode image {path} (corrupt or not an image)")
    if frames > 1:
        _say_first_frame_only(path, frames)
    return img


def _decode_picture(data: np.ndarray, name: str | os.PathLike[str]) -> np.ndarray | None:
    """A picture file's bytes decoded, on disk or at a URL: by OpenCV (:func:`_imdecode`), and by FFmpeg
    (:func:`_ffmpeg_picture`) wherever OpenCV cannot: a picture its decoders do not read (a JPEG 2000 of
    subsampled chroma, 4:2:0 or 4:2:2, which its OpenJPEG reader refuses as 'tiles'), past its size limits
    (:data:`_OPENCV_LIMITS`), or past libpng's (:data:`_LIBPNG_MAX_SIDE`: not given to OpenCV); and a TGA by Pillow,
    which FFmpeg tells by its file name alone (on disk it was read as a video of one frame, written as NAME.mp4).
    None where none decodes it; OpenCV's :class:`cv2.error` where OpenCV raised and the others cannot decode it
    either.

    A damaged picture read all the same is said in one warning naming it (``name``), whichever decoder read it:
    one cut short before the end marker its format closes it with (:func:`_lacks_its_end`), one FFmpeg decodes only with
    parts concealed (:func:`_ffmpeg_picture`), and a PNG libpng refused that FFmpeg decodes (libpng reads every whole
    PNG within its limits: one it refuses is corrupt, a filter byte or its compressed data)."""
    damaged = _lacks_its_end(data)
    image, error = None, None
    if not _past_libpng_limits(data):  # past them, not given to OpenCV, whose libpng would refuse it and say so
        try:
            image = _imdecode(data)
        except cv2.error as e:
            error = e
    if image is None:
        refused = error is None and bytes(data[:8]) == _PNG_SIGNATURE and not _past_libpng_limits(data)
        image, concealed = _ffmpeg_picture(data, damaged=damaged or refused)
        if image is None and _tga(data):  # no mark in its bytes tells FFmpeg's demuxers a TGA (its name alone)
            image = _pillow_upright(data)
        if image is None and error is not None:
            raise error
        damaged = damaged or refused or concealed
    if image is not None and damaged:
        _say_damaged(name)
    return image


def _tga(data: np.ndarray) -> bool:
    """Whether a picture file's bytes begin with a header Pillow's TGA reader takes (the picture types TGA has, a
    colour map where one is said): asked only of bytes that neither OpenCV nor FFmpeg decodes."""
    from PIL import TgaImagePlugin

    _quiet_pillow()
    try:
        TgaImagePlugin.TgaImageFile(io.BufferedReader(_InPlace(data)))
    except Exception:  # noqa: BLE001 - whatever Pillow raises for bytes that are no TGA
        return False
    return True


def _say_damaged(name: str | os.PathLike[str]) -> None:
    log.warning("%s is damaged (cut short or corrupt): read with its unreadable parts concealed, and its results may "
                "be off there", name)


def _concealed(data: bytes, codec: str) -> bool:
    """Whether FFmpeg's decoder ``codec`` reads a picture's bytes (a packet) only with parts concealed: it refuses
    them as err_detect=explode has it (see :func:`_ffmpeg_picture`)."""
    context = cast("av.video.codeccontext.VideoCodecContext", av.CodecContext.create(codec, "r"))
    context.options = {"err_detect": "explode"}
    try:
        context.decode(av.Packet(data))
        context.decode(None)
    except av.error.FFmpegError:
        return True
    return False


_JPEG_END = b"\xff\xd9"  # a JPEG's end marker (EOI), after its last scan
_QOI_END = bytes(7) + b"\x01"  # a QOI file's end marker, after its pixels
_JPEG_ALONE = frozenset({0x01, *range(0xD0, 0xDA)})  # JPEG markers without a length (TEM, RSTn, SOI, EOI)


def _lacks_its_end(data: np.ndarray) -> bool:
    """Whether ``data`` is a JPEG or a QOI picture cut short: its data stops before the end marker its format
    closes it with. A JPEG's (FF D9) ends its last scan, which no bytes of the scans hold: it is found after the
    first scan's header, past the EXIF block (whose thumbnail has its own), and what follows it (padding, the video
    of a phone's motion photo) is not looked at. A QOI's (seven 00 bytes and 01) ends its pixels, which a QOI
    encoder never writes (seven index-0 pixels are a run). FFmpeg reads such a picture without an error (its QOI
    decoder checks nothing; a JPEG cut by a few hundred bytes passes err_detect=explode), the rows it lost grey or
    repeated, and OpenCV 4's libjpeg reads a cut JPEG so too. A picture whose bytes are not laid out as its format's
    are not judged here: its decoders say whether it reads."""
    head = bytes(data[:4])
    if head == b"qoif":
        return bytes(data[-8:]) != _QOI_END and not _found(_QOI_END, data, 14)
    if head[:3] != b"\xff\xd8\xff":
        return False
    if bytes(data[-2:]) == _JPEG_END or bytes(data[-64:]).rstrip(b"\0\xff").endswith(_JPEG_END):
        return False  # whole, or padded after its end: no need to walk its segments
    at, size = 2, data.size
    while True:  # to the first scan, over the segments before it: their lengths
        if at + 4 > size:
            return True  # cut in its header: no scan
        if data[at] != 0xFF:
            return False  # not laid out as a JPEG's segments are: not judged
        marker = int(data[at + 1])
        if marker == 0xFF or marker in _JPEG_ALONE:  # a fill byte, or a marker without a length
            at += 1 if marker == 0xFF else 2
            continue
        at += 2 + (int(data[at + 2]) << 8 | int(data[at + 3]))
        if marker == 0xDA:  # a scan's header (SOS): its coded data follows
            return not _found(_JPEG_END, data, at)


def _found(marker: bytes, data: np.ndarray, start: int) -> bool:
    """Whether ``marker`` is in ``data`` (one-dimensional, contiguous) from ``start`` on, searched in place: a copy
    of the rest (a motion photo's 10 MB of video after its JPEG) and ``in`` took 3.8 ms a motion photo of 13 MB,
    1.0 ms so, and 11 ms an 11 MB JPEG cut short, 3.8 ms so."""
    return re.compile(re.escape(marker)).search(data.data, start) is not None


# OpenCV decodes no picture wider or taller than 2^20 pixels (a line-scan camera's strip, a long panorama), nor of
# more than 2^30 in all, unless the environment says otherwise when it loads: FFmpeg decodes it (_ffmpeg_picture),
# and this is said where FFmpeg cannot either
_OPENCV_LIMITS = ("past OpenCV's size limits, 1048576 pixels a side and 1073741824 in all: the environment variables "
                  "OPENCV_IO_MAX_IMAGE_WIDTH, OPENCV_IO_MAX_IMAGE_HEIGHT and OPENCV_IO_MAX_IMAGE_PIXELS raise them")


# libpng reads no PNG wider or taller than this (PNG_USER_WIDTH_MAX, PNG_USER_HEIGHT_MAX), under OpenCV's own limit:
# OpenCV fails to decode one, rather than raising, and FFmpeg decodes it
_LIBPNG_MAX_SIDE = 1_000_000


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # the bytes a PNG file starts with
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # a TIFF's first bytes, and a BigTIFF's: little, big-endian


def _png_size(data: np.ndarray) -> tuple[int, int] | None:
    """The width and height a PNG's header declares, or None where ``data`` is no PNG."""
    if bytes(data[:8]) != _PNG_SIGNATURE or data.size < 24:
        return None
    return int.from_bytes(bytes(data[16:20]), "big"), int.from_bytes(bytes(data[20:24]), "big")


def _past_libpng_limits(data: np.ndarray) -> bool:
    """Whether ``data`` is a PNG whose header declares a side past libpng's limit (:data:`_LIBPNG_MAX_SIDE`)."""
    size = _png_size(data)
    return size is not None and max(size) > _LIBPNG_MAX_SIDE


def _is_encoded(item: Any) -> bool:
    """Bytes, a bytearray or memoryview, or a file object (``read`` and ``seek``: BytesIO, an open file, an
    upload's stream), which :func:`read_encoded` decodes as a picture file."""
    return isinstance(item, (bytes, bytearray, memoryview)) or (
        callable(getattr(item, "read", None)) and callable(getattr(item, "seek", None)))


def read_encoded(item: Any) -> np.ndarray:
    """An encoded picture in memory (what a web service gets from an upload: ``bytes``, ``bytearray``,
    ``memoryview``, or a binary file object read from where it stands) decoded as :func:`read_image`
    decodes that picture's file: HxWx3 uint8 RGB, EXIF orientation applied. Raises :class:`InputError`
    where it cannot be read or decoded (a video must be given as a file)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        name, raw = f"<{type(item).__name__}>", item
    else:
        given = getattr(item, "name", None)
        name = given if isinstance(given, str) else f"<{type(item).__name__}>"
        try:
            raw = item.read()
        except (OSError, ValueError) as e:  # a closed file, one opened for writing
            raise InputError(f"cannot read the file object {name}: {joined_lines(e)}") from e
        if isinstance(raw, str):
            raise InputError(f"the file object {name} is open as text, not bytes", hint="open the picture with "
                             "open(path, 'rb')")
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise InputError(f"the {type(item).__name__}'s read() gave a {type(raw).__name__}, not a picture's bytes")
        if not len(raw):
            raise InputError(f"the file object {name} gave no bytes", hint="read to its end already? seek(0) first")
    data = np.frombuffer(raw.tobytes() if isinstance(raw, memoryview) else raw, np.uint8)
    try:
        return _decode_file(data, name)
    except InputError as e:
        if e.hint is not None:
            raise
        raise InputError(e.args[0], hint="bytes and file objects are decoded as an image file's contents; give a "
                         "video, or a path, by its name (a str)") from None


_said_first_frame_only: set[str] = set()


def _say_first_frame_only(path: str | os.PathLike[str], frames: int) -> None:
    """Warn, once a file, that an image file of several frames runs its first only: an animated WebP or PNG,
    a TIFF of several pages (a scan's, a microscope's stack). These passed unsaid, where an animated GIF runs
    as a video; they are not run so: FFmpeg does not decode an animated WebP, and a TIFF's pages are no clip.
    A picture's bytes in memory (:func:`read_encoded`, named ``<bytes>``, or a file object's name) are each
    another picture: said each time, where a name kept once silenced every later upload."""
    key = os.path.abspath(path) if os.path.isfile(path) else None
    if key is None or key not in _said_first_frame_only:
        if key is not None:
            _said_first_frame_only.add(key)
        log.warning("%s holds %d frames (an animated picture, or pages): running its first only; save its frames "
                    "as images to run each", path, frames)


# Peak memory of infer per pixel of a picture, over what the loaded model holds: the decoded BGR and RGB
# copies, the drawn result and its encoding, a segmentation's class map and overlay. Measured as peak RSS
# of `infer IMAGE --model EXPORT` at 4000x4000 and 8000x8000 less that at 256x256 (ONNX Runtime, outputs
# saved): detect 13.6, classify 14, segment 18.6 bytes; without saving 4, 6 and 15.
DECODE_BYTES_PER_PIXEL = 20
# The same for a frame of a video or a stream: many are alive at once (the decoder's threads, the pipeline's
# queue of max(4, 2 x batch) frames, the batch, the drawn results waiting to be written) and the H.264
# encoder of the annotated mp4 holds its own (lookahead, references, threads). Peak RSS of `infer CLIP
# --model EXPORT --imgsz 128` on 40-frame H.264 clips at 1280x720 and 3840x2160 less that at 64x64
# (ONNX Runtime, 2 cores, annotated mp4 saved; a 150-frame clip peaks no higher): detect 219 and 210 B/px
# (batch 1: 170, 173; batch 4: 255, 205), classify 196 and 205, segment 247 and 254; without saving, detect 93 and 78.
VIDEO_BYTES_PER_PIXEL = 260
# The same for a run that saves no annotated video (infer --no-save, predict(save=False)): no drawn frames
# waiting for the encoder, nor the encoder's own. Measured the same way at 3840x2160 (30 frames, --imgsz 128):
# segment 110, detect 59 (78 and 93 in 40-frame runs at 4K and 720p), classify 54 B/px.
VIDEO_BYTES_PER_PIXEL_UNSAVED = 120


def _check_memory_to_decode(data: np.ndarray, path: str | os.PathLike[str]) -> int:
    """Refuse, before decoding, a picture whose header declares more pixels than the memory free can
    decode and run (a decompression bomb: a 1 MB PNG of 20000x20000 takes GBs, and the OOM killer ends the
    process with no word, the rest of a folder lost). Only the memory free limits it: a real 400 MP photo
    runs where there is room. Nothing is refused where the header or the free memory cannot be read.
    Returns the frames (pages) the header declares: 1 where it says none, or cannot be read."""
    header = _header_in(data)
    if header is None:
        return 1
    _check_memory_to_run(path, "image", *header[0], DECODE_BYTES_PER_PIXEL)
    return header[2]


def _check_memory_to_run(name: str | os.PathLike[str], what: str, width: int, height: int, per_pixel: int) -> None:
    """Raise :class:`_TooBigToDecode` where ``width`` x ``height`` pixels at ``per_pixel`` bytes each need more
    than the memory free: one line naming ``name`` (a URL without its password), the ``what`` ("image",
    "video"), its size, need and free. Nothing is refused where the size (0) or the free memory is unknown."""
    from pvt_deploy.utils import cpu

    need = max(0, width) * max(0, height) * per_pixel
    free = cpu.available_memory() if need > 0 else None
    if free is not None and need > free:
        raise _TooBigToDecode(f"{name}: a {width}x{height} {what} needs about {_in_bytes(need)} of memory to "
                              f"decode and run, more than the {_in_bytes(free)} free",
                              hint="free some memory, or scale it down")


class _InPlace(io.RawIOBase):
    """A file reading bytes already in memory (a picture's: a numpy array of uint8) where they are: io.BytesIO of
    them copied them all first, hundreds of megabytes for a large picture whose header alone is read."""

    def __init__(self, data: np.ndarray) -> None:
        self._view = data.data.cast("B")
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        part = self._view[self._at:self._at + len(buffer)]
        memoryview(buffer).cast("B")[:len(part)] = part
        self._at += len(part)
        return len(part)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        at = offset + {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        if at < 0:
            raise ValueError(f"negative seek position {at}")
        self._at = at
        return at

    def tell(self) -> int:
        return self._at


def _header_in(data: np.ndarray) -> tuple[tuple[int, int], Any, int] | None:
    """:func:`_header` of a picture file's bytes, read where they are: a picture may be hundreds of MB. The last
    bytes' header read on a thread is kept for them (a weak reference: not the bytes), as a picture's decode
    (:func:`_decode_file`) asks it twice, to weigh the picture (:func:`_check_memory_to_decode`) and to turn a
    PNG (:func:`_header_orientation`): Pillow parsed a PNG's header twice (16 us of a 64x48 PNG's 182 here)."""
    kept = getattr(_last_header, "of", None)
    if kept is not None and kept[0]() is data:
        return cast("tuple[tuple[int, int], Any, int] | None", kept[1])
    header = _header(io.BufferedReader(_InPlace(data)))
    _last_header.of = (weakref.ref(data), header)
    return header


_last_header = threading.local()  # _header_in's last bytes on each thread, and their header


def _header(stream: BinaryIO) -> tuple[tuple[int, int], Any, int] | None:
    """The (width, height), the EXIF block (bytes, or None) and the frames (pages; 1 where it says none) of
    the picture in ``stream``, read by
    Pillow's openers without decoding the pixels; None where none of them reads it (a format only OpenCV
    knows). Not through Image.open, whose own decompression-bomb limit (an error above 179 MP) would
    refuse a real 400 MP photo on a server with the memory for it."""
    from PIL import Image

    _quiet_pillow()

    head = stream.read(16)
    tried: set[str] = set()
    for load in (Image.preinit, Image.init):  # the common formats' openers first, then all of them
        load()
        for name in [n for n in Image.ID if n not in tried]:
            tried.add(name)
            factory, accept = Image.OPEN[name]
            try:  # a check may itself fail on a short file (BMP's reads 4 bytes of a zero-byte one)
                if accept is not None and accept(head) is not True:
                    continue
                stream.seek(0)
                image = factory(stream, "")
                width, height = image.size
            except Exception:  # noqa: BLE001 - not this format, or a damaged header: OpenCV says which
                continue
            try:
                # an MPO (a JPEG with a second picture after it: an Android Ultra HDR photo's gain map, a 3D
                # camera's other eye) is one photo to look at, which is the first picture
                frames = 1 if image.format == "MPO" else int(getattr(image, "n_frames", 1))
            except Exception:  # noqa: BLE001 - a damaged list of pages: the first one is what decodes
                frames = 1
            return (int(width), int(height)), image.info.get("exif"), max(1, frames)
    return None


def picture_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The (height, width) :func:`read_image` gives the picture file ``path``, from its header alone:
    an EXIF orientation of 5 to 8, which OpenCV's decode applies (pvt-deploy's for a PNG: :func:`_header_orientation`),
    swaps them (Pillow's TIFF opener has already).
    None where the file or its header cannot be read; a PNG whose EXIF follows its pixels is read as
    unturned."""
    try:
        with open(os.fspath(path), "rb") as f:
            header = _header(f)
    except OSError:
        return None
    if header is None:
        return None
    (width, height), exif, _ = header
    if _exif_orientation(exif) in (5, 6, 7, 8):  # transposed, or turned a quarter
        return width, height
    return height, width


# Pillow warns of a damaged EXIF block as it reads it (a UserWarning of two lines on stderr, its site-packages path
# and source line: 'Corrupt EXIF data.  Expecting to read 12 bytes but only got 2.'; a tag's data past the block's
# end), for every picture whose orientation is read (_exif_orientation): the picture reads as its orientation says
# where that is whole (as OpenCV reads a JPEG), unturned where it is not, as viewers show it, so nothing is to be
# said.
# And Pillow warns of a picture past its own limit (Image.MAX_IMAGE_PIXELS, 89 MP: its DecompressionBombWarning, 'could
# be decompression bomb DOS attack') as it opens one, where pvt-deploy has checked the memory to decode it already
# (_check_memory_to_decode): a real 100 MP photo is no attack. Pillow's error past twice that still stands, which its
# readers here (_tiff_stored_colour, _pillow_upright, _gif_of_one_picture) take for a picture Pillow cannot read.
# Matched by their words, so that PIL is not imported with this module. Not a warnings.catch_warnings around each
# read, which is not thread-safe: where two threads read pictures at once (infer's readers), one read's filter
# stayed for good, and the other read could warn. See _quiet_pillow.
_PILLOW_FILTERS = (
    (r"(possibly )?corrupt exif data|tag data larger than file|tag offset too large", UserWarning,
     r"PIL\.TiffImagePlugin\Z"),
    (r"image size \(\d+ pixels\) exceeds limit of \d+ pixels", RuntimeWarning, r"PIL\.Image\Z"),
)
# each as warnings.filters holds it (warnings.filterwarnings' entry: action, message, category, module, line)
_PILLOW_FILTER_ENTRIES = tuple(("ignore", re.compile(message, re.I), category, re.compile(module), 0)
                               for message, category, module in _PILLOW_FILTERS)


def _quiet_pillow() -> None:
    """Puts :data:`_PILLOW_FILTERS` into ``warnings.filters`` where they are missing, before each read through
    Pillow. Set once as this module was imported, they were gone where that import ran inside a caller's
    ``warnings.catch_warnings()`` (a common way to quiet torch's import warnings), whose end puts back the filters
    from before it: the Python API then printed Pillow's warnings ('PIL/TiffImagePlugin.py:946: UserWarning: Tag data
    larger than file. Skipping tag 271', two lines of a JPEG whose EXIF points past its end). A look through the
    list where they are there (a microsecond), no catch_warnings per read."""
    filters = warnings.filters
    for (message, category, module), entry in zip(_PILLOW_FILTERS, _PILLOW_FILTER_ENTRIES, strict=True):
        if entry not in filters:
            warnings.filterwarnings("ignore", message, category, module)


_quiet_pillow()


def _exif_orientation(exif: Any) -> Any:
    """The Orientation tag (1-8) of an EXIF block as :func:`_header` gives it (bytes, or None), or None where it
    has none, or is damaged (read as unturned): what :func:`picture_size` and :func:`_header_orientation` (the FFmpeg path's and a
    PNG's) turn by."""
    if not isinstance(exif, bytes):
        return None
    from PIL import Image

    _quiet_pillow()

    try:
        tags = Image.Exif()
        tags.load(exif)
        return tags.get(0x0112)
    except Exception:  # noqa: BLE001 - a damaged EXIF block, whatever Pillow raises for it
        return None


def _in_bytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _imdecode(data: np.ndarray) -> np.ndarray | None:
    """An image file's bytes decoded as :func:`read_image` decodes them (RGB, EXIF orientation applied), or
    None where OpenCV cannot."""
    if bytes(data[:4]) in _TIFF_MAGIC:
        stored = _tiff_stored_colour(data)
        if stored is not None:
            return stored
    if bytes(data[4:8]) == b"ftyp" and b"avif" in bytes(data[8:int.from_bytes(bytes(data[:4]), "big")]):
        upright = _pillow_upright(data)
        if upright is not None:
            return upright
    # ANYCOLOR|ANYDEPTH keeps 16-bit and gray as decoded; unlike IMREAD_UNCHANGED it still applies
    # the EXIF orientation, but for a PNG's, which is applied here (_header_orientation)
    png = bytes(data[:8]) == _PNG_SIGNATURE
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH | (cv2.IMREAD_IGNORE_ORIENTATION if png else 0)
    # a picture it cannot decode is said in one line, or FFmpeg's: neither OpenCV's log nor libpng's line on stderr
    with _opencv_log_held(_OPENCV_LOG_SILENT), _libpng_lines_held() if png else contextlib.nullcontext():
        img = cv2.imdecode(data, flags) if data.size else None
    if img is not None and png:
        img = _exif_oriented(img, _header_orientation(data))
    if img is None and bytes(data[:4]) == b"GIF8":  # an OpenCV before 4.11 has no GIF decoder
        return _pillow_upright(data)
    return None if img is None else _decoded_to_rgb(img)


def _header_orientation(data: np.ndarray) -> Any:
    """The EXIF orientation of a picture file's bytes as Pillow's header reads it (:func:`_header`), None where it
    has none: what the FFmpeg path turns by, and a PNG's decode (:func:`_imdecode`). A PNG's is that of its eXIf
    chunk before its pixels (IDAT), as picture_size reads it too; not OpenCV's, which
    reads an eXIf after the pixels too, and none in an animated PNG (its APNG decoder, from 4.11; 4.10's libpng
    read it). An eXIf after the pixels turns nothing: the PNG specification (3rd edition, 2025) puts eXIf before
    IDAT, and CSS Images 3 has browsers ignore an orientation that follows the image data, as Chrome, Firefox and
    Safari do (the web platform tests image-orientation-exif-png-2 and -3, 'late EXIF data is ignored'); libvips
    reads it with the header, before the pixels. A user sees such a picture as stored (Pillow's exif_transpose,
    which loads the image first, turns it), and its boxes are drawn on it so."""
    header = _header_in(data)
    return _exif_orientation(header[1]) if header is not None else None


def _tiff_stored_colour(data: np.ndarray) -> np.ndarray | None:
    """An 8-bit RGBA TIFF with an unassociated alpha (ExtraSamples 2, what Pillow and most editors write)
    decoded to its stored colour, alpha dropped, EXIF orientation applied; None for any other TIFF or
    one Pillow cannot decode. OpenCV reads such a TIFF through libtiff's RGBA reader, which multiplies
    the colour by the alpha (a pixel 200 at alpha 128 read 100), where PNG and WebP give the colour
    as stored: a picture must read the same whatever its format."""
    from PIL import Image, ImageOps

    _quiet_pillow()

    try:  # the pixels were checked against the memory free already: Pillow's warning of a large one is not said
        with Image.open(io.BytesIO(data.tobytes())) as image:
            extra, bits = image.tag_v2.get(338), image.tag_v2.get(258)  # ExtraSamples, BitsPerSample
            if (2 not in (extra if isinstance(extra, tuple) else (extra,)) or image.mode != "RGBA"
                    or set(bits if isinstance(bits, tuple) else (bits,)) != {8}):  # Pillow cuts 16 bits to their top 8
                return None
            return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))
    except Exception:  # noqa: BLE001 - a TIFF Pillow cannot read (a bomb past its limit): OpenCV's decode
        return None


def _pillow_upright(data: np.ndarray) -> np.ndarray | None:
    """A picture file's bytes decoded by Pillow (its first frame) and turned upright, or None where Pillow
    cannot decode them. For an AVIF (a brand of its ftyp box avif): it says its turn in its irot/imir
    properties, not in EXIF, and OpenCV's decode leaves the picture as stored, so a phone's portrait photo
    ran on its side, and its boxes were drawn on it so, where picture_size (Pillow's header, which gives
    that turn as the EXIF orientation) and every viewer have it upright."""
    from PIL import Image, ImageOps

    _quiet_pillow()

    try:  # the pixels were checked against the memory free already: Pillow's warning of a large one is not said
        with Image.open(io.BytesIO(data.tobytes())) as image:
            return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))
    except Exception:  # noqa: BLE001 - a Pillow without AVIF, or a file it cannot read: OpenCV's decode
        return None


def _ffmpeg_picture(data: np.ndarray, *, damaged: bool = False) -> tuple[np.ndarray | None, bool]:
    """A picture file's bytes decoded by FFmpeg (its first frame) as :func:`_imdecode` decodes them with OpenCV,
    where OpenCV cannot (:func:`_decode_picture`): HxWx3 uint8 RGB, alpha dropped, the EXIF orientation its header
    gives applied as OpenCV applies it, and more than 8 bits a channel rounded to 8 as a video's frame is
    (:func:`_frame_to_rgb`: a 16-bit PNG's as :func:`_to_uint8` rounds it). None where FFmpeg cannot decode them
    as a picture (read by one of its picture demuxers, :data:`_IMAGE_DEMUXERS`, as a picture's URL is told from a
    video's: a video's bytes, an mp4 named .jpg, are no picture, its first frame is not read as one), or its picture
    cannot be converted. With it, whether the picture is damaged: ``damaged`` (known from its bytes), or read only
    with its lost parts concealed.

    A damaged picture FFmpeg decodes all the same, its lost parts concealed (a JPEG cut short: OpenCV 5 refuses it,
    FFmpeg fills the rows it lost with grey), is told by decoding it as FFmpeg's err_detect=explode does, which
    refuses what its decoder would conceal (no flag on the frame tells it: its corrupt flag stays unset for such a
    JPEG, and FFmpeg's log is off); a picture it refuses so, or one known to be damaged, is decoded as FFmpeg
    conceals it, so a whole one costs one decode, as before."""
    try:
        try:
            image = None if damaged else _ffmpeg_frame(data, strict=True)
        except (av.error.FFmpegError, StopIteration):  # damaged, or no picture at all, which neither decodes
            damaged = True
        if damaged:
            image = _ffmpeg_frame(data, strict=False)
        if image is None:
            return None, False
    # not a picture FFmpeg decodes; or cv2.error: one decoded, but too large for OpenCV's conversion of its samples
    # (_yuv_to_rgb of a huge picture of more than 8 bits), undecodable as any other (_decode_file says so)
    except (av.error.FFmpegError, StopIteration, IndexError, ValueError, cv2.error):
        return None, False
    orientation = _header_orientation(data)
    if orientation is None and bytes(data[:4]) in _TIFF_MAGIC:  # a TIFF's is its tag
        from PIL import TiffImagePlugin

        _quiet_pillow()
        with contextlib.suppress(Exception):  # its opener reads the tags alone, without Image.open's size limit
            orientation = TiffImagePlugin.TiffImageFile(io.BufferedReader(_InPlace(data))).tag_v2.get(0x0112)
    return _exif_oriented(np.ascontiguousarray(image), orientation), damaged


def _ffmpeg_frame(data: np.ndarray, *, strict: bool) -> np.ndarray | None:
    """:func:`_ffmpeg_picture`'s decode of a picture file's bytes to RGB: None where FFmpeg's demuxer reads no
    picture; ``strict``, an :class:`av.error.FFmpegError` where the picture is damaged (err_detect=explode)."""
    with av.open(io.BufferedReader(_InPlace(data)), "r") as container:  # read in place: it may be hundreds of MB
        if not any(tag in container.format.name for tag in _IMAGE_DEMUXERS):
            return None
        stream = container.streams.video[0]
        if strict:
            stream.codec_context.options = {"err_detect": "explode"}
        return _frame_to_rgb(next(container.decode(stream)))


def _exif_oriented(image: np.ndarray, orientation: Any) -> np.ndarray:
    """``image`` turned and flipped as an EXIF ``orientation`` (1-8) says, as OpenCV's decode does it."""
    if orientation in (5, 6, 7, 8):  # transposed first, then flipped as 1-4 are
        image = cv2.transpose(image)
    flip = {2: 1, 3: -1, 4: 0, 6: 1, 7: -1, 8: 0}.get(orientation) if isinstance(orientation, int) else None
    return image if flip is None else cv2.flip(image, flip)


# ---------------------------------------------------------------------------------------------
# Still images
# ---------------------------------------------------------------------------------------------


def is_picture(item: Any) -> bool:
    """A numpy array, a PIL image (which has ``convert`` and ``mode``) or an encoded picture (bytes, a
    file object: :func:`read_encoded`), not a path."""
    return isinstance(item, np.ndarray) or (hasattr(item, "convert") and hasattr(item, "mode")) or _is_encoded(item)


class ArraySource(Source):
    """A single in-memory picture (numpy RGB array, PIL image, or an encoded picture's bytes or file
    object), for the Python API."""

    kind: SourceKind = "image"

    def __init__(self, image: Any, *, name: str = "image0.jpg") -> None:
        self._image = as_rgb_array(image)
        self.spec = name
        self.size = (self._image.shape[1], self._image.shape[0])
        self.frames = 1

    def _iter_frames(self) -> Iterator[Frame]:
        yield Frame(self._image, 0, self.spec, None)


class ImageSource(Source):
    """One image file (``kind="image"``) or an ordered list (``kind="images"``) of image files and, from
    the Python API, in-memory RGB pictures (named ``image<N>.jpg`` by their place in the list).

    A single unreadable image raises :class:`InputError` up front. In a list, each file is read when
    its turn comes, and an unreadable one is skipped with a warning and counted in ``skipped``: one
    bad JPEG must not stop a 10 000-image run.

    ``origin``: what the opener was given, for messages about ``spec`` ("calibration glob shots/*.jpg:
    ..."): ``"folder"``, ``"glob"``, ``"dataset YAML"``, ``"list"`` (a ``.txt`` list or a list of files;
    the default of ``kind="images"``) or ``"image"`` (the default of ``kind="image"``). ``left_out``: pictures
    the opener left out up front as unreadable (empty files, said in its one line): not among ``frames`` nor
    ``skipped`` (those skipped as they were read), but a run's summary counts them skipped.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str] | np.ndarray], *, kind: SourceKind, spec: str,
                 origin: str | None = None, numbers: Sequence[int] | None = None, left_out: int = 0) -> None:
        self.items: list[Path | np.ndarray] = [p if isinstance(p, np.ndarray) else Path(p) for p in paths]
        # each item's place in the list as given, where empty files were left out of it: a frame's index, and an
        # array's name (image<N>.jpg)
        self._numbers = list(numbers) if numbers is not None else list(range(len(self.items)))
        self.kind = kind
        self.spec = spec
        self.origin = origin or ("image" if kind == "image" else "list")
        self.frames = len(self.items)
        self.left_out = left_out
        self._first: np.ndarray | None = None
        if kind == "image":
            first = self.items[0]
            self._first = first if isinstance(first, np.ndarray) else read_image(first)
            self.size = (self._first.shape[1], self._first.shape[0])

    def _iter_frames(self) -> Iterator[Frame]:
        self.skipped = 0
        for index, item in zip(self._numbers, self.items, strict=True):
            if isinstance(item, np.ndarray):
                yield Frame(item, index, f"image{index}.jpg", None)
                continue
            if self._first is not None:
                yield Frame(self._first, index, str(item), None)
                continue
            try:
                image = read_image(item)
            except InputError as e:
                self.skipped += 1
                log.warning("skipping %s", e)
                continue
            yield Frame(image, index, str(item), None)


# ---------------------------------------------------------------------------------------------
# Readers: one open connection to a video file, stream or camera
# ---------------------------------------------------------------------------------------------


def clock_restarted(t: float, last: float, *, jumpy: bool) -> bool:
    """Whether a time ``t`` (seconds) after ``last`` says the clock restarted rather than ran on: it went
    back by more than 0.1 s (FFmpeg's own test of a discontinuity: recordings joined into one MPEG-TS, a
    camera's clock reset), or, where the clock may jump (``jumpy``: a file of MPEG-TS or FLV), ahead by
    more than 10 s (two clips joined, the second recorded later). The one rule of the frames' times
    (:meth:`PyAVReader._frame_time`) and an audio track's (``_AudioCopy._one_clock`` in
    :mod:`pvt_deploy.io.sinks`)."""
    return t < last - 0.1 or jumpy and t > last + _JUMP_AHEAD_S


@dataclass(frozen=True)
class Join:
    """Where a video's clock restarted (:class:`OneClock`): recordings joined into one file."""

    time: float  # the first frame's time on the restarted clock, in seconds of the source
    shift: float  # seconds added to the source's times from that frame on
    pos: int | None = None  # the byte position of its packet in the file, where known

    @property
    def start(self) -> float:
        """The frame's time on the one clock: one frame after the frame before the restart."""
        return self.time + self.shift


class OneClock:
    """A stream's times on one clock where its own restarts (:func:`clock_restarted`): from a restart on, a
    time comes ``step`` after the time before (one frame, as players show the frames) and the shift that
    puts it there is kept for the times that follow, each restart in :attr:`joins`. The frames' clock
    (:meth:`PyAVReader._frame_time`), and the one an audio track copied beside them takes its restarts'
    shifts from (:func:`video_joins`, read by ``_AudioCopy._one_clock`` in :mod:`pvt_deploy.io.sinks`)."""

    def __init__(self, step: float, *, jumpy: bool) -> None:
        self.step, self.jumpy = step, jumpy
        self.shift = 0.0  # seconds added to the source's times, for the restarts so far
        self.last: float | None = None  # the last time given, on the one clock
        self.furthest: float | None = None  # the latest source time given, on the source's own clock
        self.joins: list[Join] = []

    def __call__(self, t: float, pos: int | None = None) -> float:
        """The source time ``t`` (seconds) on the one clock; ``pos``: its packet's byte position."""
        self.furthest = t if self.furthest is None else max(self.furthest, t)
        t += self.shift
        if self.last is not None and clock_restarted(t, self.last, jumpy=self.jumpy):
            source = t - self.shift
            self.shift += self.last + self.step - t
            t = self.last + self.step
            self.joins.append(Join(source, self.shift, pos))
        self.last = t
        return t


def _frame_rate(container: Any, stream: Any) -> float | None:
    """The frame rate a video stream plays at: its mean rate, else the one FFmpeg guesses; in a raw stream
    (.h264, .hevc) whose demuxer's rate is a fixed default (25), the one the bitstream signals (the guessed)."""
    rate = stream.average_rate or stream.guessed_rate
    if container.format.flags & _AVFMT_NOTIMESTAMPS:
        rate = stream.guessed_rate or rate
    return float(rate) if rate else None


def video_joins(container: Any) -> list[Join]:
    """Where the clock of ``container``'s first video stream restarts, and the shift after each, as
    :class:`PyAVReader` times its frames (the same :class:`OneClock`), read from its packets, not decoded:
    each run of packets whose decode times do not restart is one recording, its frames shown in order of
    their presentation times. A read that fails ends the list there; none for a file without video."""
    if not container.streams.video:
        return []
    stream = container.streams.video[0]
    fps = _frame_rate(container, stream)
    clock = OneClock(1.0 / fps if fps else 0.0, jumpy=bool(container.format.flags & _AVFMT_TS_DISCONT))
    run: list[tuple[float, int | None]] = []  # the recording's frames: presentation time, byte position
    last: float | None = None  # the last packet's decode time
    with contextlib.suppress(av.error.FFmpegError):
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None or not packet.time_base:
                continue
            when = float((packet.dts if packet.dts is not None else packet.pts) * packet.time_base)
            if last is not None and clock_restarted(when, last, jumpy=clock.jumpy):
                for t, pos in sorted(run, key=lambda frame: frame[0]):
                    clock(t, pos)
                run = []
            last = when
            run.append((float(packet.pts * packet.time_base), packet.pos))
    for t, pos in sorted(run, key=lambda frame: frame[0]):
        clock(t, pos)
    return clock.joins


class FrameReader(Protocol):
    """One open connection that produces frames until it ends or fails (a cv2-style grab/retrieve).

    ``grab`` advances and returns False at the end (``error`` then says why, or is None for a clean
    end); ``retrieve`` converts the grabbed frame to RGB, so skipped frames (``vid_stride``) cost
    only their decode. ``live`` says that an end of data is a drop to reconnect from, not the end
    of a file. ``timestamp`` is the grabbed frame's time on the source's own clock in seconds, or
    None where it has none (a live feed is then timed by arrival). Inject your own opener returning
    one of these to test reconnects or read a custom device.
    """

    fps: float | None
    size: tuple[int, int] | None
    frames: int | None
    live: bool
    error: str | None

    def grab(self) -> bool: ...

    def retrieve(self) -> np.ndarray: ...

    def timestamp(self) -> float | None: ...

    def close(self) -> None: ...


class PyAVReader:
    """Decode the first video stream of a file or URL with PyAV, tolerating damaged packets.

    Opening decodes the first frame, so a file that has a video stream but no decodable picture is
    rejected at once, and ``size`` accounts for display rotation.
    """

    def __init__(
        self,
        target: str,
        *,
        options: dict[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        live: bool | None = None,
        bytes_per_pixel: int = VIDEO_BYTES_PER_PIXEL,
        kept_frames: int = 0,
    ) -> None:
        self.error: str | None = None
        self.frames_exact = False
        self._per_pixel = bytes_per_pixel  # the memory a frame's pixel needs in this run (_check_memory_to_run)
        self._frame: av.VideoFrame | None = None
        self._peeked = False
        self._time: float | None = None  # the grabbed frame's time (see timestamp())
        self._clock: OneClock | None = None  # the frames' times on one clock (see _frame_time)
        self.packets = 0  # packets with data sent to the decoder, and the frames it gave back (see _decode)
        self.picture_data: bytes | None = None  # a still image's first packet: the picture file's bytes
        self.decoded = 0
        self.skipped = 0  # undecodable packets skipped (see _decode)
        self._pending: list[float] | None = None  # decode times not yet given to a frame (see _decode)
        self._first_dts: float | None = None
        self._name = redact_url(target)  # for an error message: a URL without its password
        # the colorspaces converted by BT.601's, warned of (_frame_to_rgb): a source that opens its video again
        # (a stream's reconnect) hands each reader its one set, so that the warning is said once for the source
        self.colorspaces_said: set[int] = set()
        opening = time.monotonic()
        try:
            self._container = av.open(target, options=options or {}, timeout=timeout)
        except av.error.FFmpegError as e:
            # a server that takes the connection and then says nothing: PyAV's timeout interrupts FFmpeg, which
            # then says 'Immediate exit requested' (http, rtmp) or 'Invalid data found' (rtsp). Any failure once
            # the time to open is up is that interrupt
            wait = timeout[0] if isinstance(timeout, tuple) else timeout
            if wait is not None and time.monotonic() - opening >= wait:
                raise TimeoutError(f"no answer within {wait:g} s") from e
            raise
        try:
            if not self._container.streams.video:
                raise _NoVideoStream(f"{target} has no video stream")
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads: decode is the bottleneck on 720p+
            self._stream = stream
            self._clocked = not self._container.format.flags & _AVFMT_NOTIMESTAMPS
            self._jumpy = bool(self._container.format.flags & _AVFMT_TS_DISCONT)
            if self._container.format.name in _DECODE_TIMED_DEMUXERS:
                self._pending = []
            # non-square pixels (DVD, HDV 1440x1080, some broadcast captures): frames are widened to
            # the shape a player shows, as they are turned upright, so the model sees true geometry
            # and boxes are in the pixels a viewer sees. The shape is the container's where it declares its
            # own (an mp4's pasp, an mkv's display size: stream.sample_aspect_ratio, FFmpeg's guess, is that one
            # where it differs from the codec's), else each frame's as its decoder read it (see grab), as
            # ffplay takes it: an MPEG-TS channel's changes between a 4:3 and a 16:9 programme, SD and HD
            declared = stream.sample_aspect_ratio
            self._declared_sar = declared if declared and declared != stream.codec_context.sample_aspect_ratio else None
            self._sar: float | None = self._pixel_shape()  # again at each keyframe (see grab)
            self._shaped: tuple[int, int] | None = None  # the frame size where _sar was read (see grab)
            rate = stream.average_rate or stream.guessed_rate
            self.fps: float | None = _frame_rate(self._container, stream)
            # a constant rate (the mean rate is the one every time is on) in a container that times
            # every frame: a frame's time tells its number, also after frames lost to damaged packets
            # (until a time off that rate's grid shows a variable rate: mkv declares one for those too)
            self.numbered_by_time = bool(rate and stream.average_rate == stream.base_rate
                                         and self._container.format.name in _TIMED_DEMUXERS)
            known_start = stream.start_time is not None and stream.time_base is not None
            self._start = float(stream.start_time * stream.time_base) if known_start else 0.0  # type: ignore[operator]
            fmt = self._container.format.name
            self.demuxer: str = fmt
            self.codec: str = stream.codec_context.name  # the decoder's name
            picture_format = any(tag in fmt for tag in _IMAGE_DEMUXERS)
            self.picture = picture_format  # a still image's file (a JPEG's URL), not a video
            # Undeclared, a feed is live where it has no duration, unless its size is known: an MPEG-TS
            # file from a server without Range requests has none (FFmpeg cannot seek to its end to find
            # it), but its Content-Length says it ends; read as live, it was replayed at every "reconnect"
            sized = (self._container.size or 0) > 0
            self.live: bool = (
                live if live is not None else (self._container.duration is None and not picture_format and not sized)
            )
            # seconds of video the file declares, from its first frame; whether that is the video's own
            # length or the container's, which an audio track may outlast the picture in
            self.duration: float | None = None
            self.duration_is_video = False
            if not self.live:
                self.duration, self.duration_is_video = self._declared_length(stream)
            self.frames: int | None = None if self.live else self._count_frames(stream)
            # frames the caller keeps (export's calibration frames, RGB): no more than the clip holds, so that
            # --calib-size 100000 on a 75-frame clip is weighed at the 75 it reads, not refused for 100000
            kept = min(kept_frames, self.frames) if self.frames else kept_frames
            self._per_pixel = bytes_per_pixel + 3 * max(0, kept)
            # the frame size weighed against the memory free, as its RGB frames are made: widened to a player's
            # shape (a 2:1 clip stored 640x480 gives 1280x480 frames; the decoder's own, stored narrower, counted
            # at that size too: a little over, never under). Before the first frame is decoded, the one the
            # stream declares (its codec parameters); again in grab() where a frame comes at another (a
            # resolution switch, a new pixel shape, or a size not declared). A picture's packet is weighed as
            # its file is (_decode)
            codec = stream.codec_context
            self._weighed = (self._widened(codec.width), codec.height)
            if not picture_format:
                _check_memory_to_run(self._name, "video", *self._weighed, self._per_pixel)
            self._decoded = self._decode()
            if not self.grab():
                raise InputError(f"{target} has no decodable video frames ({self.error or 'empty'})")
            self._peeked = True
            height, width = self.retrieve_shape()
            self.size: tuple[int, int] | None = (width, height)
        except BaseException:
            self._container.close()
            raise

    def _declared_length(self, stream: Any) -> tuple[float | None, bool]:
        """How long the file says its video runs, in seconds from its first frame (as ``timestamp()``
        counts), and whether that is the video's own length rather than the whole container's.

        The video stream's own duration where the container keeps one (mp4, mov, avi, MPEG-TS), else
        the track's ``DURATION`` tag that FFmpeg and mkvmerge write into mkv/webm (where its picture
        ends, counted from zero like every mkv time), else the container's duration. A header's
        duration counts from zero as well in mkv and FLV (a clip whose times start at 10 s declares
        12 s for 2 s of video), but from the first packet where FFmpeg works it out; both are taken
        as an end and the video's start is subtracted, which can only make the length shorter than it
        is (a truncation missed, never a complete clip called truncated).
        """
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base), True
        end = _clock_seconds(stream.metadata.get("DURATION"))
        if end is not None and end > self._start:
            return end - self._start, True
        duration = self._container.duration  # microseconds, the longest stream's; None when unknown
        if duration and duration / 1e6 > self._start:
            return duration / 1e6 - self._start, len(self._container.streams) == 1
        return None, False

    def ends_short(self, last: float | None) -> bool:
        """Whether decoding whose last frame came at ``last`` seconds stopped short of the declared
        length: by more than two frames, which absorbs a length rounded in the header or a last frame
        held longer; by half a second more where the length is a container's that also holds audio,
        which often outlasts the picture. The length is the span of the file's own clock: where that
        restarted (recordings joined into one file), the furthest frame on it counts, not ``last``, whose
        time is on the frames' one clock (a recording made later, its clock ahead, is no truncation)."""
        if self.duration is None or last is None:
            return False
        if self._clock is not None and self._clock.joins and self._clock.furthest is not None:
            last = self._clock.furthest
        frame = 1.0 / self.fps if self.fps else 0.1
        slack = 2.0 * frame + 1e-3 + (0.0 if self.duration_is_video else 0.5)
        return self.duration - (last + frame) > slack

    def _count_frames(self, stream: Any) -> int | None:
        self.frames_exact = bool(stream.frames)  # mp4/mov store a count; others only a duration
        if stream.frames:
            # the count includes frames an mp4's edit list cuts (``ffmpeg -ss 10 -c copy``, a phone's
            # trim): the index marks them discarded, and decoding never shows them
            entries = getattr(stream, "index_entries", None)  # absent from older PyAV: count as before
            if entries and len(entries) == stream.frames:
                return int(stream.frames) - sum(1 for e in entries if e.is_discard)
            # an AVI's count includes its empty chunks, "null frames" that hold the picture before
            # (FFmpeg writes them for a variable-rate source, capture tools for dropped frames): its
            # index leaves them out but counts their ticks, so an index that runs to the declared
            # length lists the frames that decode (one that does not, a recording cut off before
            # its index, keeps the declared count)
            if entries and self._pending is not None and entries[-1].timestamp + 1 == stream.frames:
                return len(entries)
            return int(stream.frames)
        if self.duration and self.fps:  # mkv/webm store no count: estimate for the progress bar
            return max(1, round(self.duration * self.fps))
        return None

    def _decode(self) -> Generator[av.VideoFrame, None, None]:
        """The decoded frames, in presentation order. Where packets carry decode times only (AVI), each
        frame is timed with the earliest decode time not yet used (``_pending``): on a clip of one
        packet a frame, the frames' presentation times are those decode times in order, as players
        show them. Every packet sent has been decoded before the frames it completes come out."""
        bad = 0
        pending = self._pending
        try:
            for packet in self._container.demux(self._stream):
                self.packets += 1 if packet.size else 0
                if self.picture and packet.size:  # a picture's file (a PNG's URL): weighed before FFmpeg decodes it
                    data = bytes(packet)
                    _check_memory_to_decode(np.frombuffer(data, np.uint8), self._name)
                    if self.picture_data is None:
                        self.picture_data = data
                when = None  # this packet's decode time, where frames are timed by those (AVI)
                if pending is not None and packet.size and packet.dts is not None and packet.time_base is not None:
                    when = float(packet.dts * packet.time_base)
                    heapq.heappush(pending, when)
                try:
                    frames = self._stream.decode(packet)
                except av.error.InvalidDataError as e:  # damaged packet: skip it like a player
                    bad += 1
                    self.skipped += 1
                    if bad > _MAX_BAD_PACKETS:
                        raise
                    log.debug("skipping undecodable packet: %s", e)
                    if when is not None and pending:  # its time goes to no frame
                        pending.remove(when)
                        heapq.heapify(pending)
                    continue
                bad = 0
                for frame in frames:
                    self.decoded += 1
                    yield frame
        except av.error.FFmpegError as e:  # truncated file, dropped connection, read timeout
            self.error = _short(e)

    def seek(self, seconds: float) -> bool:
        """Go to the keyframe at or before ``seconds`` from the first frame (as :meth:`timestamp` counts): the
        next :meth:`grab` decodes from there, and times its frames afresh (a clock restart before that point
        is not known: seek only files whose clock does not jump). False where the file cannot seek there (a
        demuxer without an index or a seek, a file whose frames are timed by their decode order, a live
        feed), the reader then of no further use. Whether the frame it lands on is the keyframe asked for
        is the caller's to check (:attr:`at_keyframe`, the frames' times): some files' indexes are wrong."""
        stream = self._stream
        if self.live or self._pending is not None or self._jumpy or not self._clocked or not stream.time_base:
            return False
        self._decoded.close()
        self._frame, self._peeked, self._time, self._clock = None, False, None, None
        try:
            self._container.seek(math.floor((seconds + self._start) / stream.time_base), stream=stream,
                                 backward=True)
        except (av.error.FFmpegError, OverflowError) as e:
            log.debug("seek to %.3f s failed: %s", seconds, _short(e))
            return False
        self._decoded = self._decode()
        return True

    def keyframe_times(self) -> list[float]:
        """The times (seconds from the first frame, as :meth:`timestamp` counts) of the keyframes the file's
        index lists, sorted; empty where it lists none. An mp4's sample table lists them from the start (by
        decode time: a frame or two early where frames are reordered), an mkv's cues once a seek read them."""
        stream = self._stream
        entries = getattr(stream, "index_entries", None) or []  # absent from older PyAV
        tb = stream.time_base
        if not tb:
            return []
        return sorted({float(e.timestamp * tb) - self._start for e in entries if e.is_keyframe})

    @property
    def at_keyframe(self) -> bool:
        """Whether the grabbed frame is a keyframe (decodes without the frames before it)."""
        return self._frame is not None and bool(self._frame.key_frame)

    def grab(self) -> bool:
        if self._peeked:
            self._peeked = False
            return True
        self._frame = next(self._decoded, None)
        if self._frame is None:
            return False
        size = (self._frame.width, self._frame.height)
        # the frame's pixel shape, which PyAV does not give: the decoder's, read at a keyframe and where the
        # frame size changes. A new shape comes with a new sequence header, at a keyframe, and holds for it and
        # the frames after it. The decoder may be a few frames ahead of the frame it gives (B-frames, frame
        # threads): read at every frame, the frames before a switch that came out after it took the next shape;
        # read so, only a keyframe that close before a switch does
        if self._frame.key_frame or size != self._shaped:
            self._sar = self._pixel_shape()
            self._shaped = size
        shown = (self._display_width(), size[1])
        if shown != self._weighed and not self.picture:
            self._weighed = shown
            _check_memory_to_run(self._name, "video", *shown, self._per_pixel)
        self._time = self._frame_time(self._frame)
        return True

    def _pixel_shape(self) -> float | None:
        """The width of a pixel as a player shows it, where not square (see ``_declared_sar``): None for square."""
        sar = self._declared_sar or self._stream.codec_context.sample_aspect_ratio
        return float(sar) if sar and sar > 0 and sar != 1 else None

    def _frame_time(self, frame: av.VideoFrame) -> float | None:
        """``frame``'s time from the first frame (in AVI, the earliest decode time no frame has taken yet:
        see ``_decode``). A clock that goes back by more than 0.1 s (FFmpeg's
        own test of a discontinuity) restarted: recordings joined into one MPEG-TS (``cat a.ts b.ts``)
        or a camera's clock reset. So did one that jumps ahead by more than 10 s in a file of a format
        whose clock may jump (MPEG-TS, FLV: two camera clips joined, the second recorded later), which
        would otherwise hold one frame on screen for the whole gap. Frames from there on follow the
        frame before, one nominal frame after it, as players show them; a smaller step is a jittery
        or variable-rate clock and left as it is, and so is a live feed's (its gaps are real)."""
        if self._clock is None:
            self._clock = OneClock(1.0 / self.fps if self.fps else 0.0, jumpy=self._jumpy and not self.live)
        clock = self._clock
        # PyAV's stub types VideoFrame.time as float, but a frame without a pts has None
        frame_time = cast("float | None", frame.time)
        if self._pending:
            dts = heapq.heappop(self._pending)
            if self._first_dts is None:
                self._first_dts = dts
            t = dts - self._first_dts
        elif frame_time is None:
            # a file without times (a raw .h264 or .hevc from a camera or a Raspberry Pi) plays at its
            # rate: a frame comes one frame after the one before, as players show it; a live feed
            # without times is timed by arrival instead (see timestamp())
            if self.live or not self.fps:
                return None
            t = (clock.last + 1.0 / self.fps if clock.last is not None else 0.0) - clock.shift
        else:
            t = float(frame_time) - self._start
        return clock(t)

    def _orientation(self) -> tuple[int, bool]:
        """How the frame is shown: (quarter turns counter-clockwise, then mirrored left to right), from its
        display matrix (:func:`_display_orientation`)."""
        return _display_orientation(self._frame) if self._frame is not None else (0, False)

    def _display_width(self) -> int:
        assert self._frame is not None
        return self._widened(self._frame.width)

    def _widened(self, width: int) -> int:
        """``width`` stored pixels as wide as a player shows them (the pixel shape read last: ``_sar``)."""
        return max(1, round(width * self._sar)) if self._sar and width > 0 else width

    def retrieve_shape(self) -> tuple[int, int]:
        assert self._frame is not None
        h, w = self._frame.height, self._display_width()
        return (w, h) if self._orientation()[0] % 2 else (h, w)

    def retrieve(self) -> np.ndarray:
        assert self._frame is not None, "retrieve() before a successful grab()"
        image = _frame_to_rgb(self._frame, self._display_width(), source=self._name, said=self.colorspaces_said)
        turns, mirrored = self._orientation()
        # turns are counter-clockwise, as np.rot90's positive k; cv2.rotate gives the same picture 7x faster
        # than a contiguous copy of np.rot90's view (0.46 against 3.3 ms a 720p frame)
        turned = cv2.rotate(image, _CV2_TURNS[turns]) if turns else image
        return cv2.flip(turned, 1) if mirrored else turned

    def timestamp(self) -> float | None:
        """The frame's time in the source, from its first frame; ``None`` on a live feed whose
        container carries no timestamps (MJPEG over HTTP, raw H.264 over TCP: FFmpeg invents them
        at a guessed rate, so the frame's arrival is the better clock)."""
        if self._frame is None or (self.live and not self._clocked):
            return None
        return self._time

    def close(self) -> None:
        try:
            self._decoded.close()  # stop the generator before its container goes away
        except ValueError:
            # "generator already executing": another thread is inside grab() (a stopped pipeline's decode
            # thread, left after its join timed out). Closing the container under that decode could crash
            # FFmpeg; it is left to the decode, and closed with the reader or by a later close().
            log.debug("video reader closed while a frame is being decoded; its container is left open")
            return
        self._container.close()


_CV2_TURNS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}  # np.rot90's k


def _display_orientation(frame: av.VideoFrame) -> tuple[int, bool]:
    """How a decoded frame is to be shown, as its display matrix (a phone video's) says: quarter turns
    counter-clockwise, then whether the turned picture is mirrored left to right. A right-angled matrix is
    one of these eight, the picture FFmpeg's autorotate (transpose, hflip, vflip) makes; a matrix at another
    angle is turned to the nearest quarter. PyAV's ``frame.rotation`` is the matrix's angle alone, which
    ignores a mirror: a front camera's left-right mirror reads as -180 and was turned upside down. A matrix
    whose determinant is negative mirrors, and its first column negated (FFmpeg's av_display_matrix_flip)
    is the rotation the mirror follows. A degenerate matrix (a column of zeros, an all-zero one) has no
    angle, FFmpeg's is NaN and its autorotate turns nothing: shown as stored. Where PyAV
    cannot list the frame's side data (an entry of a type it does not know raises), the angle is all there is."""
    rotation = frame.rotation
    try:
        entry: Any = frame.side_data.get("DISPLAYMATRIX")
        matrix = bytes(entry) if entry is not None else b""
    except (ValueError, KeyError):  # a side data type this PyAV does not know
        matrix = b""
    m = np.frombuffer(matrix, np.int32, count=9).astype(np.float64) if len(matrix) >= 36 else None
    if m is None:  # none (an angle of 0), or not listed: PyAV's int of a NaN angle is -2**31, no angle
        return (round(rotation / 90) % 4 if -180 <= rotation <= 180 else 0), False
    a, b, c, d = m[0], m[1], m[3], m[4]
    if not (math.hypot(a, c) and math.hypot(b, d)):  # degenerate: it was read as PyAV's -2**31, a quarter turn
        return 0, False
    mirrored = bool(a * d - b * c < 0)
    # av_display_rotation_get's angle, counter-clockwise degrees, of the matrix unmirrored
    angle = -math.degrees(math.atan2(b, -a if mirrored else a))
    return round(angle / 90) % 4, mirrored


_OPENCV_LOG_SILENT, _OPENCV_LOG_ERROR = 0, 2  # cv::utils::logging's LOG_LEVEL_SILENT and _ERROR, in OpenCV 4 and 5


def _opencv_log_level() -> tuple[Callable[[], int], Callable[[int], Any]]:
    """OpenCV's (getLogLevel, setLogLevel): in ``cv2.utils.logging`` from OpenCV 4.13, at the top of
    ``cv2`` before (4.10-4.12, which the project's requirements admit, have no ``cv2.utils.logging``)."""
    try:
        from cv2.utils import logging as cv_log
    except ImportError:
        # OpenCV 4.10-4.12 have them here; the stubs of the OpenCV installed to check types (5.x) do not.
        return cv2.getLogLevel, cv2.setLogLevel  # type: ignore[attr-defined]
    return cv_log.getLogLevel, cv_log.setLogLevel


_opencv_log_lock = threading.Lock()
_opencv_log_asked: list[int] = []  # the levels asked for by the blocks inside _opencv_log_held now, on any thread
_opencv_log_before: list[int] = []  # OpenCV's level before the first of them: put back when the last ends


@contextlib.contextmanager
def _opencv_log_held(level: int) -> Iterator[None]:
    """OpenCV's log level (one for the process) at most ``level`` inside: what OpenCV would say on stderr there
    (a decoder's error that :func:`_decode_file` says in one line, a camera backend's warning) is not said. Blocks
    on several threads at once (a picture decoded while a camera opens) hold the lowest level any asks for, and
    the last to end puts back the level there was before the first: each setting it and putting it back on its
    own, one that began inside another's block put back that block's level when it ended, for good."""
    get_level, set_level = _opencv_log_level()
    with _opencv_log_lock:
        if not _opencv_log_asked:
            _opencv_log_before[:] = [get_level()]
        _opencv_log_asked.append(level)
        set_level(min(_opencv_log_before + _opencv_log_asked))
    try:
        yield
    finally:
        with _opencv_log_lock:
            _opencv_log_asked.remove(level)
            set_level(min(_opencv_log_before + _opencv_log_asked))


def _libpng_lines_held() -> contextlib.AbstractContextManager[HeldStderr]:
    """libpng's lines kept off the process's stderr (file descriptor 2) inside, through the one hold on it
    (:func:`~pvt_deploy.utils.stderr.stderr_held`). libpng, inside OpenCV's PNG decoder, prints its error on stderr
    itself ('libpng error: bad adaptive filter value', 'libpng error: IDAT: incorrect data check'), which OpenCV's
    log level does not quiet: beside the one line said of the picture (damaged, or not decoded), another of a
    library's. The rest (another thread's message, Python's own writes) is written in the order it came, a
    decode's milliseconds late."""
    return stderr_held(lambda line: line.startswith("libpng "))


class CaptureReader:
    """A local camera through ``cv2.VideoCapture``: OpenCV knows each OS's camera API (V4L2,
    AVFoundation, Media Foundation), which FFmpeg would need per-platform device names for."""

    def __init__(self, device: int | str) -> None:
        self.live = True
        self.frames: int | None = None
        self.error: str | None = None
        with _opencv_log_held(_OPENCV_LOG_ERROR):  # each backend tried would warn on stderr; the error says it
            self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            self._cap.release()
            raise ConnectionError(f"cannot open camera {device}")
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latency over smoothness; ignored by some APIs
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = float(fps) if fps and fps > 0 else None
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size: tuple[int, int] | None = (w, h) if w > 0 and h > 0 else None

    def grab(self) -> bool:
        ok = bool(self._cap.grab())
        if not ok:
            self.error = "camera returned no frame"
        return ok

    def retrieve(self) -> np.ndarray:
        ok, bgr = self._cap.retrieve()
        if not ok or bgr is None:
            raise ConnectionError("camera frame could not be retrieved")
        return _decoded_to_rgb(bgr)

    def timestamp(self) -> float | None:
        return None

    def close(self) -> None:
        self._cap.release()


# ---------------------------------------------------------------------------------------------
# Video files
# ---------------------------------------------------------------------------------------------


# Top-level mp4 boxes written after every frame, which hold none: a fragmented mp4's random-access index (mfra,
# the last box, the fragments' keyframes for seeking; optional, FFmpeg writes none where its output cannot seek).
# A file cut in one holds every frame, and decodes whole. (Not free or skip: a faststart mp4's comes before its
# frames, and a cut in it loses them all.)
_BOXES_WITHOUT_FRAMES = frozenset({b"mfra"})


def _holds_no_frame(kind: bytes) -> bool:
    """Whether a top-level box whose kind begins ``kind`` (a header cut after its first 2 or 3 letters) holds no
    frame (:data:`_BOXES_WITHOUT_FRAMES`): of the boxes an mp4 has at its top level, only mfra's kind begins "mf".
    One letter ("m") is as much the next fragment's moof, whose frames the cut lost, and a header cut before it
    (its 4 size bytes) tells nothing: those still say the file was cut."""
    return len(kind) >= 2 and any(whole.startswith(kind) for whole in _BOXES_WITHOUT_FRAMES)


def _top_level_boxes(path: Path) -> tuple[list[bytes], str | None] | None:
    """The kinds of the whole top-level boxes of an mp4/mov file (ISO boxes: a size, then a kind), each once in
    the order first seen (a fragmented mp4 has a moof and an mdat box for every fragment), and where the file
    ends inside its last box, how far (None where it ends where its last box does, or inside a box that holds
    no frame: :data:`_BOXES_WITHOUT_FRAMES`); None where ``path`` does not read as boxes. A box that runs past
    the end of the file was cut off: a recording stopped by a crash, a copy or download stopped part way."""
    try:
        if not path.is_file():  # a named pipe (read by FFmpeg already, and opening it could wait for a writer)
            return None
        size = path.stat().st_size
        kinds: list[bytes] = []
        with path.open("rb") as f:
            start = 0
            while start < size:
                head = f.read(8)
                if len(head) < 8:
                    if _holds_no_frame(head[4:]):
                        log.debug("%s: the file ends inside its last box's header (%s...), which holds no frame",
                                  path, head[4:].decode())
                        return kinds, None
                    return kinds, f"the file ends inside its last box's header, {len(head)} of 8 bytes"
                length, kind = int.from_bytes(head[:4], "big"), head[4:]
                if not kind.isalnum() or 1 < length < 8:
                    return None  # not a box: not an mp4 as this reads it
                if length == 1:  # a 64-bit size follows the type
                    wide = f.read(8)
                    if len(wide) < 8:
                        if _holds_no_frame(kind):
                            log.debug("%s: the file ends inside its last box's header (%s), which holds no frame",
                                      path, kind.decode())
                            return kinds, None
                        return kinds, f"the file ends inside its last box's header, {8 + len(wide)} of 16 bytes"
                    length = int.from_bytes(wide, "big")
                    if length < 16:
                        return None
                if length == 0:  # the last box, up to the end of the file
                    length = size - start
                if start + length > size:
                    if kind in _BOXES_WITHOUT_FRAMES:  # every frame is in the whole boxes before it
                        log.debug("%s: the file ends inside its last box (%s), which holds no frame", path,
                                  kind.decode())
                        return kinds, None
                    return kinds, (f"the file ends inside its last box ({kind.decode()}), {size - start} of "
                                   f"{length} bytes")
                if kind not in kinds:
                    kinds.append(kind)
                start = f.seek(start + length)
    except OSError:
        return None
    return kinds, None


def _lacks_its_index(path: Path) -> bool:
    """Whether ``path`` is an mp4/mov file (its first box ftyp) with no whole moov box among its top-level boxes.
    The moov box is the index (where each frame is, and how to decode it), and a recording writes it when
    it stops, after its frames: a recording cut off, or a copy or download stopped half way, has frames
    but no index, and FFmpeg only says 'Invalid data found when processing input'."""
    boxes = _top_level_boxes(path)
    return boxes is not None and bool(boxes[0]) and boxes[0][0] == b"ftyp" and b"moov" not in boxes[0]


class VideoSource(Source):
    """A local video file decoded with PyAV; ``vid_stride`` keeps every n-th frame.

    A file that is not a video raises :class:`InputError`; a truncated or damaged one yields what
    decodes and then ends with a warning (``error`` holds FFmpeg's reason).
    """

    kind: SourceKind = "video"

    def __init__(self, path: str | os.PathLike[str], *, vid_stride: int = 1,
                 bytes_per_pixel: int = VIDEO_BYTES_PER_PIXEL, kept_frames: int = 0) -> None:
        self.path = Path(path)
        self.spec = str(path)
        self.vid_stride = vid_stride
        self._per_pixel = bytes_per_pixel
        self._kept_frames = kept_frames
        self.error: str | None = None
        self._colorspaces_said: set[int] = set()  # for every reader of it (see _open)
        self._reader: PyAVReader | None = self._open()
        self._active: PyAVReader | None = None
        self.fps = self._reader.fps
        self.size = self._reader.size
        self._lead = _lead_frames(self.spec, self._reader.timestamp(), self.fps)  # opening decoded the first frame
        self.frames = _kept(self._reader.frames, self._lead, vid_stride)
        self.frames_exact = self._reader.frames_exact
        # an mp4/mov whose last box runs past the end of the file was cut off, whether or not what FFmpeg
        # reads of it shows a shortfall: a fragmented mp4 (a camera's, OBS's, a browser's recording) declares
        # only the fragments it holds, and a cut in a faststart mp4's frames reads as a damaged last frame
        boxes = _top_level_boxes(self.path) if self._reader.demuxer == _MP4_DEMUXER else None
        self._cut_off = f"{boxes[1]} (truncated file?)" if boxes and boxes[1] else None

    def _open(self) -> PyAVReader:
        try:
            reader = PyAVReader(str(self.path), live=False, bytes_per_pixel=self._per_pixel,
                                kept_frames=self._kept_frames)
        except av.error.FFmpegError as e:
            with contextlib.suppress(OSError):
                if self.path.stat().st_size == 0:
                    raise _said_empty(self.path) from e
            if _lacks_its_index(self.path):
                raise InputError(f"{self.path} is cut short: it holds frames but not the index (moov box) that "
                                 "an mp4 gets when its recording stops", hint="copy or download it again; a "
                                 "recording stopped by a crash or a flat battery has no index") from e
            reason = joined_lines(getattr(e, "strerror", None) or e)
            raise InputError(f"cannot decode {self.path} as a video ({reason})") from e
        reader.colorspaces_said = self._colorspaces_said  # said once for the video, whichever reader reads it
        return reader

    def _iter_frames(self) -> Iterator[Frame]:
        reader, self._reader = (self._reader or self._open()), None
        self._active = reader
        lead = self._lead  # frames before the first that decoded, said when the file was opened
        numbers = _FileNumbering(reader, lead)
        decoded = 0
        last: float | None = None
        try:
            while reader.grab():
                decoded += 1
                last = reader.timestamp()
                index = numbers.next(last)
                if index % self.vid_stride:
                    continue
                yield Frame(reader.retrieve(), index, self.spec, last)
            self.error = reader.error
            lost = _lost_frames(reader, decoded, numbers, lead)
            if reader.error:
                log.warning("%s: decoding stopped after %d frames: %s", self.spec, decoded, reader.error)
            elif cut := _cut_short(reader, decoded, last) or self._cut_off:
                self.error = cut
                log.warning("%s: %s", self.spec, self.error)
            elif lost > 0:  # decoding reached the end, past damaged packets: not an early end (``error``)
                log.warning("%s: %d of %d frames could not be decoded (damaged file?)", self.spec, lost,
                            decoded + lost)
        finally:
            reader.close()
            self._active = None

    def seek_frames(self, pick: Callable[[range], Sequence[int]], *, always: bool = False) -> list[Frame] | None:
        """The frames numbered ``pick(numbers)``, ``numbers`` those of the clip's decodable frames (from its
        first keyframe to its last frame, found by seeking near the end), without decoding the whole clip:
        each is found by seeking to the keyframe at or before it and decoding forward to it (or decoding on
        from the frame found before, where no keyframe lies between them), so that it is the picture, and
        has the number, that reading the clip (:meth:`__iter__`) gives it. None where seeking
        cannot promise that, the reason in a debug log: frames not numbered by their times (a raw .h264, AVI,
        a variable rate), a file that cannot seek, a seek that lands past its frame or off a keyframe, a
        frame missing, damaged packets, an end short of the length declared (those the whole read warns
        of); also where the keyframes its index lists say that seeking would decode as many frames as
        reading it whole (keyframes far apart, frames close together), unless ``always``. Reads with a
        reader of its own: the source is left as it was, to be read whole instead."""
        reader = self._open()
        try:
            chosen = self._seek_frames(reader, pick, always=always)
        finally:
            reader.close()
        if isinstance(chosen, str):
            log.debug("%s: not seeking to its frames: %s", self.spec, chosen)
            return None
        log.debug("%s: %d frame(s) found by seeking: %s", self.spec, len(chosen),
                  ", ".join(str(f.index) for f in chosen))
        return chosen

    def _seek_frames(self, reader: PyAVReader, pick: Callable[[range], Sequence[int]], *,
                     always: bool) -> list[Frame] | str:
        """:meth:`seek_frames`' frames, or why seeking is not reliable (or would not pay) on this file."""
        if not reader.numbered_by_time or not reader.fps:
            return "its frames are numbered in decode order, not by their times"
        duration = reader.duration
        if duration is None:
            return "it declares no length"
        step = 1.0 / reader.fps
        if not reader.seek(duration):  # also reads an mkv's cues, which list its keyframes
            return f"it cannot seek to {duration:.2f} s"
        keys = sorted({max(0, round(t / step)) for t in reader.keyframe_times()})  # their frame numbers
        total = reader.frames
        if keys and total and not always:
            cost = _seek_cost(keys, pick(range(self._lead, total)), total - 1)
            if cost >= total:  # a frame decoded twice (the last GOP, then a frame in it) counts twice
                than = "more than" if cost > total else "as many as"
                return (f"seeking would decode about {cost} frames, {than} reading its {total} whole "
                        f"({len(keys)} keyframe(s) listed)")
        numbers = _FileNumbering(reader, 0)
        position: int | None = None  # the number of the frame decoded last (None: none, or the end was reached)
        # Where the index lists no keyframes, the most frames a seek has decoded before its frame (about a
        # GOP): a frame less than half that far ahead of the frame decoded last is decoded to from there
        reach = 2

        def decode_to(target: int | None) -> tuple[int, float] | str:
            """The number and time of frame ``target`` (grabbed, to retrieve), or (None) of the last frame,
            from the keyframe before it (or from the frame decoded last, where that is nearer); or why they
            cannot be trusted."""
            nonlocal numbers, position, reach
            if target is None or position is None or not position < target:
                sought = True
            elif keys:  # a seek would land on the keyframe before the target: not past the frame decoded last
                sought = _key_before(keys, target) > position
            else:
                sought = target > position + reach // 2
            seconds = 0.0
            if sought:
                seconds = duration if target is None else (target + 0.25) * step
                if not reader.seek(seconds):
                    return f"it cannot seek to {seconds:.2f} s"
                numbers, position = _FileNumbering(reader, 0), None
            skipped, landed, got = reader.skipped, None, None
            while reader.grab():
                t = reader.timestamp()
                index = numbers.next(t)
                if landed is None and sought and not reader.at_keyframe:
                    return f"a seek to {seconds:.2f} s landed off a keyframe"
                if t is None or numbers.step is None or index != round(t / step):
                    return f"a frame's time ({t}) is off its rate's grid"
                if landed is None and sought and target is not None and index > target:
                    return f"a seek to frame {target} landed after it (on frame {index})"
                if reader.skipped != skipped:
                    return "it has undecodable packets"
                landed = index if landed is None else landed
                got, position = (index, t), index
                if target is not None and index == target:
                    if sought:
                        reach = max(reach, target - landed)
                    return got
                if target is not None and index > target:
                    return f"frame {target} is missing"
            if reader.error or reader.skipped != skipped:
                return f"decoding failed ({reader.error or 'undecodable packets'})"
            position = None
            if target is not None:
                return f"frame {target} is past its end"
            return got if got is not None else "no frame decodes at its end"

        end = decode_to(None)
        if isinstance(end, str):
            return end
        last, last_time = end
        if reader.ends_short(last_time):
            return f"it ends at {last_time:.2f} s, short of the {duration:.2f} s it declares"
        if reader.frames_exact and reader.frames is not None and last != reader.frames - 1:
            return f"its last frame is number {last}, not {reader.frames - 1} as its frame count says"
        if self._cut_off:  # cut where its frames and length do not show it: the whole read warns of the cut
            return self._cut_off
        chosen: list[Frame] = []
        for target in sorted(set(pick(range(self._lead, last + 1)))):
            found = decode_to(target)
            if isinstance(found, str):
                return found
            chosen.append(Frame(reader.retrieve(), target, self.spec, found[1]))
        return chosen

    def close(self) -> None:
        for reader in (self._reader, getattr(self, "_active", None)):
            if reader is not None:
                reader.close()
        self._reader = None
        super().close()


def _key_before(keys: Sequence[int], number: int) -> int:
    """The last of the keyframe numbers ``keys`` (sorted) at or before frame ``number``; 0 before them all."""
    i = bisect.bisect_right(keys, number)
    return keys[i - 1] if i else 0


def _seek_cost(keys: Sequence[int], targets: Sequence[int], last: int) -> int:
    """About how many frames :meth:`VideoSource.seek_frames` decodes for frames ``targets`` of a clip whose
    keyframes are ``keys`` and whose last frame is ``last``: from the last keyframe to the end, then to each
    frame from the keyframe before it, or from the frame before where no keyframe lies between them."""
    cost, position = last - _key_before(keys, last) + 1, None
    for target in sorted(set(targets)):
        key = _key_before(keys, target)
        start = position + 1 if position is not None and key <= position < target else key
        cost, position = cost + target - start + 1, target
    return cost


def _lead_frames(spec: str, first: float | None, fps: float | None) -> int:
    """Frames of a video file before the first that decoded, whose time (from the video's start) is
    ``first``, and one warning if there are any: a video cut mid-GOP (bytes cut off the front of an
    MPEG-TS, a capture joined mid-broadcast, an mp4 remuxed from one) starts with frames that refer to
    a keyframe it does not hold, and decoders, players' too, drop them. The frames after keep the
    times, and where the rate is constant the numbers, of their place in the whole video."""
    if first is None or not fps or first * fps < 0.5:
        return 0
    lead = round(first * fps)
    log.warning("%s: the %d frame%s before its first keyframe (%.2f s) cannot be decoded: the video starts "
                "mid-GOP (cut or captured mid-stream); frame numbers and times count from its start",
                spec, lead, "" if lead == 1 else "s", first)
    return lead


def _kept(total: int | None, lead: int, stride: int) -> int | None:
    """How many frames a ``vid_stride`` of ``stride`` keeps of a video counted ``total`` frames from its
    start, the first ``lead`` of which do not decode (:func:`_lead_frames`): those numbered ``lead`` on
    that ``stride`` divides; at least one. None where the count is not known."""
    if not total:
        return None
    last = max(total, lead + 1) - 1  # the last frame's number
    return max(1, last // stride - (lead - 1) // stride)


def _cut_short(reader: Any, decoded: int, last: float | None) -> str | None:
    """Why a file that ``reader`` decoded to the end without an error (``decoded`` frames, the last at
    ``last`` seconds) is shorter than it declares, or None: fewer frames than its count (mp4, mov)
    where its length agrees, or (mkv/webm, which store no count) an end before its declared length.
    For a local file and one served over HTTP alike; a reader without these facts (a camera) never is."""
    expected = reader.frames if getattr(reader, "frames_exact", False) else None
    ends_short = getattr(reader, "ends_short", None)
    short = ends_short is not None and ends_short(last)
    if expected and expected > decoded and (reader.duration is None or short):
        return f"only {decoded} of {expected} frames decoded (truncated file?)"
    if not expected and short:
        assert reader.duration is not None and last is not None
        return f"decoding ended at {last:.1f} s of the {reader.duration:.1f} s the file declares (truncated file?)"
    return None


# ---------------------------------------------------------------------------------------------
# Live streams and cameras
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconnect:
    """Backoff policy after a live stream drops: waits ``initial_wait * 2**k`` capped at ``max_wait``.

    ``max_retries`` consecutive failed attempts end the stream (``None``: retry forever, for
    unattended cameras). The count resets once a frame arrives, so a camera that reboots every
    night does not use up the budget.
    """

    max_retries: int | None = 5
    initial_wait: float = 0.5
    max_wait: float = 10.0

    def wait(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return min(self.max_wait, self.initial_wait * (2.0 ** max(0, attempt - 1)))

    def allows(self, attempt: int) -> bool:
        return self.max_retries is None or attempt <= self.max_retries


Opener = Callable[[], FrameReader]
# Errors a reader may raise while (re)connecting or reading; anything else is a bug and propagates.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, av.error.FFmpegError, InputError)


class StreamSource(Source):
    """A live or network source read through ``opener`` with reconnects (see :class:`Reconnect`).

    ``realtime=True`` reads in a background thread and hands the consumer only the newest frame,
    so latency stays bounded when inference is slower than the camera (``dropped`` counts what was
    skipped). ``realtime=None`` picks it for live feeds and not for finite files served over HTTP.
    """

    kind: SourceKind = "stream"

    def __init__(
        self,
        opener: Opener,
        *,
        spec: str,
        vid_stride: int = 1,
        reconnect: Reconnect | None = None,
        realtime: bool | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        url: str | None = None,
        colorspaces_said: set[int] | None = None,
    ) -> None:
        self.spec = spec
        self._url = url  # what ``spec`` names, credentials and all: never logged (see audio_url)
        self.vid_stride = vid_stride
        self.reconnect = reconnect or Reconnect()
        self.reconnects = 0
        self.error: str | None = None  # why a finite file over the network ended early (see VideoSource)
        self._opener = opener
        self._clock = clock
        self._stop = threading.Event()
        # the backoff between reconnects (up to Reconnect.max_wait) ends early on stop()
        self._sleep = sleep if sleep is not None else self._stop.wait
        # for every connection's reader (see _open); given, a set another source of the same feed warned of too
        self._colorspaces_said: set[int] = set() if colorspaces_said is None else colorspaces_said
        try:  # first connection: fail fast, a wrong URL should not sit through backoff
            self._reader: FrameReader | None = self._open()
        except _TooBigToDecode:
            raise  # a picture's URL too big for the memory free: one line naming it, as its file would say
        except _CONNECTION_ERRORS as e:
            raise InputError(f"cannot open stream {spec}: {_short(e)}") from e
        self.fps = self._reader.fps
        self.size = self._reader.size
        self.live = self._reader.live
        # a finite file's frames before its first keyframe (see VideoSource); a live feed joined
        # mid-GOP, as most are, is timed from its first frame
        self._lead = 0 if self.live else _lead_frames(spec, self._reader.timestamp(), self.fps)
        self.frames = None if self.live else _kept(self._reader.frames, self._lead, vid_stride)
        self.frames_exact = bool(getattr(self._reader, "frames_exact", False))
        self.realtime = self.live if realtime is None else realtime
        self._thread: threading.Thread | None = None

    @property
    def audio_url(self) -> str | None:
        """Where the audio of a file served over the network is read again once its video is done
        (:class:`~pvt_deploy.io.sinks.VideoWriter`'s ``audio_from``): the URL as given, with the user name
        and password that ``spec`` and every frame's ``path`` leave out. None for a live feed, which cannot
        be read again from its start, and for a camera or an opener given without its URL."""
        return None if self.live else self._url

    def _iter_frames(self) -> Iterator[Frame]:
        if self._reader is None:  # said now, before a reader thread starts (see _iter_frames_inline)
            raise InputError(f"stream {self.spec} can be iterated only once")
        return self._iter_threaded() if self.realtime else self._iter_frames_inline()

    def _open(self) -> FrameReader:
        """A new connection's reader, given the source's set of the colorspaces warned of: a feed tagged with one
        FFmpeg has no matrix for is said once, not again at each reconnect."""
        reader = self._opener()
        if isinstance(reader, PyAVReader):
            reader.colorspaces_said = self._colorspaces_said
        return reader

    def _connect_again(self) -> FrameReader | None:
        """Reopen after a drop with backoff; None when the retry budget is spent or we are closing."""
        attempt = 1
        while self.reconnect.allows(attempt) and not self._stop.is_set():
            self._sleep(self.reconnect.wait(attempt))
            if self._stop.is_set():
                break
            try:
                reader = self._open()
            except _TooBigToDecode:
                raise  # not a drop: the stream came back at a size the memory free cannot run; said at once
            except _CONNECTION_ERRORS as e:
                limit = self.reconnect.max_retries if self.reconnect.max_retries is not None else "inf"
                log.warning("%s: reconnect attempt %d/%s failed: %s", self.spec, attempt, limit, _short(e))
                attempt += 1
                continue
            self.reconnects += 1
            log.info("%s: reconnected", self.spec)
            return reader
        if not self._stop.is_set():
            log.error("%s: stream lost, giving up after %d reconnect attempts", self.spec, attempt - 1)
        return None

    def _iter_frames_inline(self) -> Iterator[Frame]:
        reader, self._reader = self._reader, None
        if reader is None:
            raise InputError(f"stream {self.spec} can be iterated only once")
        live_time = _LiveTime(self._clock())
        read = 0
        last: float | None = None  # a finite file's last frame time, for its truncation check
        # a file served over the network is numbered as the same file on disk (VideoSource): by its frames'
        # times, so that frames lost to damaged packets leave their numbers unused (they were numbered by
        # how many had been read: every later frame's JSON ``frame``, COCO id and vid_stride shifted)
        numbers = None if self.live else _FileNumbering(reader, self._lead)
        try:
            while not self._stop.is_set():
                index = self._lead + read
                image = None
                try:
                    ok = reader.grab()
                    if ok and numbers is not None:
                        last = reader.timestamp()
                        index = numbers.next(last)
                    if ok and index % self.vid_stride == 0:
                        image = reader.retrieve()
                except _TooBigToDecode:
                    raise  # a frame too big for the memory free (a resolution switch, a pipe's picture): no drop
                except _CONNECTION_ERRORS as e:
                    ok, reader.error = False, _short(e)
                if ok:
                    read += 1
                    if image is not None:
                        ts = live_time(reader.timestamp(), self._clock()) if self.live else reader.timestamp()
                        yield Frame(image, index, self.spec, ts, self.audio_url)
                    continue
                if numbers is not None:  # a finite file (not live): its end is the end (reconnecting would replay it)
                    self.error = reader.error or _cut_short(reader, read, last)
                    if self.error:
                        log.warning("%s: stream ended early after %d frames: %s", self.spec, read, self.error)
                    elif (lost := _lost_frames(reader, read, numbers, self._lead)) > 0:  # as VideoSource says it
                        log.warning("%s: %d of %d frames could not be decoded (damaged file?)", self.spec, lost,
                                    read + lost)
                    return
                reason = reader.error or "end of data"
                log.warning("%s: stream dropped after %d frames (%s); reconnecting", self.spec, read, reason)
                reader.close()
                next_reader = self._connect_again()
                if next_reader is None:
                    return
                reader = next_reader
                live_time.reconnected()
        finally:
            reader.close()

    def _iter_threaded(self) -> Iterator[Frame]:
        slot = _LatestSlot()

        def pump() -> None:
            try:
                for frame in self._iter_frames_inline():
                    slot.put(frame)
            except BaseException as e:  # surfaces in the consumer's thread, not lost in this one
                slot.fail(e)
            finally:
                slot.finish()

        self._thread = threading.Thread(target=pump, name=f"pvt-deploy-reader {self.spec}", daemon=True)
        self._thread.start()
        try:
            while (frame := slot.get(self._stop)) is not None:
                yield frame
        finally:
            self._stop.set()
            self._join_reader()
            self.dropped = slot.dropped

    def _join_reader(self) -> None:
        """Give the reader thread :data:`_READER_JOIN_S` to notice the stop, then leave it: one stuck in
        a read ends when the read times out, closing its own connection, and hands its last frame to
        a slot nobody reads any more."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout=_READER_JOIN_S)
        if thread.is_alive():
            log.debug("%s: not waiting for the reader thread, which is still in a read", self.spec)
        self._thread = None  # waited for once: close() after the iteration does not wait again

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._join_reader()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        super().close()


@dataclass
class _LiveTime:
    """Timestamps of a live feed: seconds since opening, spaced as the source spaced its frames.

    Arrival time alone bunches frames that a network delivers in a burst (and an annotated recording
    then plays them in a rush), so each connection is anchored once, at its first frame's arrival,
    and its frames follow their own timestamps from there. A frame without one (cameras, containers
    without timestamps), a timestamp that does not move forward, or one more than ``max_drift``
    seconds from the wall clock (a jump, or a source clock that drifted) re-anchors at arrival.
    Always strictly increasing, across reconnects too.
    """

    start: float
    max_drift: float = 2.0
    _anchor: tuple[float, float] | None = None  # (source time, our time) of the anchoring frame
    _last: float = -math.inf

    def __call__(self, source_time: float | None, now: float) -> float:
        arrival = now - self.start
        t: float | None = None
        if source_time is not None and self._anchor is not None:
            t = self._anchor[1] + (source_time - self._anchor[0])
            if t <= self._last or abs(t - arrival) > self.max_drift:
                t = None
        if t is None:
            t = arrival if arrival > self._last else self._last + 1e-3
            self._anchor = None if source_time is None else (source_time, t)
        self._last = t
        return t

    def reconnected(self) -> None:
        """A new connection restarts the source's clock: anchor again at its first frame."""
        self._anchor = None


@dataclass
class _LatestSlot:
    """A one-frame mailbox: the producer overwrites, the consumer always gets the newest frame."""

    dropped: int = 0
    _frame: Frame | None = None
    _done: bool = False
    _error: BaseException | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def get(self, stop: threading.Event) -> Frame | None:
        """The newest frame, waiting for one; None once the producer has finished, or soon after
        ``stop`` is set (a stalled camera may not send the frame that would end the wait)."""
        with self._cond:
            while not self._cond.wait_for(lambda: self._frame is not None or self._done, timeout=_STOP_POLL_S):
                if stop.is_set():
                    return None
            frame, self._frame = self._frame, None
            if frame is None and self._error is not None:
                raise self._error
            return frame


def _lost_frames(reader: FrameReader, decoded: int, numbers: _FileNumbering, lead: int) -> int:
    """Frames of a video file, read to its end, that gave no picture (damaged packets), after its first
    keyframe (those before it were said when it opened): short of the count the container holds exactly,
    else the gaps in the frame numbers. In a clip whose every packet decoded, gaps are its own timing (a
    variable rate on the declared grid, frames the recorder dropped), and a variable-rate clip off the
    grid is numbered as it comes, so neither counts."""
    expected = reader.frames if getattr(reader, "frames_exact", False) else None
    damaged = getattr(reader, "decoded", 0) < getattr(reader, "packets", 0)
    gaps = numbers.index + 1 - decoded if numbers.step is not None and damaged else 0
    return (expected - decoded if expected else gaps) - lead


class _FileNumbering:
    """The source frame numbers of a video file's decoded frames, one :meth:`next` per frame, from its
    ``lead`` (:func:`_lead_frames`) on: on a constant-rate clip the number each frame's time says
    (:func:`_frame_number`), until a time falls off the declared rate's grid (a variable-rate clip,
    counted as it comes). A file on disk and one served over the network are numbered alike."""

    def __init__(self, reader: FrameReader, lead: int) -> None:
        self.index = lead - 1  # the number of the frame read last
        fps = reader.fps
        self.step = 1.0 / fps if getattr(reader, "numbered_by_time", False) and fps else None

    def next(self, timestamp: float | None) -> int:
        if self.step is not None and timestamp is not None and not _on_grid(timestamp, self.step):
            self.step = None
        self.index = _frame_number(self.index, timestamp, self.step)
        return self.index


def _on_grid(timestamp: float, step: float) -> bool:
    """Whether ``timestamp`` falls on a frame of a constant rate of ``step`` seconds per frame."""
    frames = timestamp / step
    return abs(frames - round(frames)) < 0.25


def _frame_number(previous: int, timestamp: float | None, step: float | None) -> int:
    """The source frame number of a decoded frame that follows number ``previous``: on a constant-rate
    clip (``step``, seconds per frame; the caller drops it once a time falls off its grid) the one its
    time says, so that frames lost to damaged packets leave their numbers unused (``Frame.index`` is
    the source's frame number); else, or where the time is missing or not past ``previous`` (a
    repeated timestamp), the next one."""
    if step is None or timestamp is None:
        return previous + 1
    n = round(timestamp / step)
    return n if n > previous else previous + 1


_CREDENTIALS = re.compile(r"://[^/\s]*@")  # to the last "@" before the path: a password may hold one
_CLOCK = re.compile(r"^(\d+):([0-5]\d):(\d+(?:\.\d*)?)$")


def _clock_seconds(text: Any) -> float | None:
    """``"00:01:02.500000000"`` (a Matroska ``DURATION`` tag) -> 62.5; None for anything else."""
    match = _CLOCK.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _short(error: BaseException) -> str:
    """FFmpeg's reason without the file name it appends (which may be a URL with a password)."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return _CREDENTIALS.sub("://***@", text if isinstance(error, InputError) else joined_lines(text)).strip()


def redact_url(url: str) -> str:
    """Drop ``user:password@`` from a URL so credentials never reach logs or output file names (also
    from one too malformed to parse, a bad port or IPv6 literal, whose error message names it)."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return _CREDENTIALS.sub("://***@", url)
    return urlunsplit(parts._replace(netloc=netloc))


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------

_GLOB_CHARS = re.compile(r"[*?\[]")
_NATURAL_SPLIT = re.compile(r"(\d+)")


def _natural_key(path: str | os.PathLike[str]) -> list[int | str]:
    """Sort key so ``frame_2.jpg`` precedes ``frame_10.jpg``: text and numbers alternate, text first, so
    two keys only ever compare text with text and numbers with numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in _NATURAL_SPLIT.split(os.fspath(path))]


def _named_image(path: Path) -> bool:
    """The rule a file is read as an image by, wherever a file is told to be one or not (a lone file, a
    folder, a glob, a list, a dataset YAML's split): its suffix, or a GIF of one picture (:func:`_still_gif`)."""
    return path.suffix.lower() in IMAGE_SUFFIXES or _still_gif(path)


def image_types() -> str:
    """The file types :func:`_named_image` reads as images, for a hint where none was found: its suffixes, and
    .gif where it is one picture (an animated GIF is a video)."""
    return ", ".join(sorted([*IMAGE_SUFFIXES, ".gif (one picture)"]))


def _is_image(path: Path) -> bool:
    """An image file by its name (:func:`_named_image`); a dangling link named like one counts too, so that
    reading it fails with the "skipping" warning every unreadable picture gets, instead of passing unmentioned."""
    return _named_image(path) and (path.is_file() or (path.is_symlink() and not path.exists()))


def _folder_entries(folder: Path, *, recursive: bool = False) -> list[Path]:
    """A folder's entries as ls and a glob's * list them: hidden ones left out, such as the ._IMG_0001.jpg a Mac
    writes beside each photo it copies to a USB stick or a network share (its metadata, no picture), each of
    which was a warning that it could not be decoded, and a count of images twice the folder's. ``recursive``:
    those of the folders in it too, as the glob FOLDER/**/* gives them (hidden folders left out as well)."""
    if not recursive:
        return [p for p in folder.iterdir() if not p.name.startswith(".")]
    return [Path(p) for p in globlib.glob(_glob_below(folder), recursive=True)]


def _glob_below(folder: str | os.PathLike[str]) -> str:
    """The recursive glob of everything under ``folder`` (FOLDER/**/*), its name escaped: 'trip [2024]' is
    those characters, not a set of them."""
    return str(Path(globlib.escape(os.fspath(folder))) / "**" / "*")


def image_files(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """The image files ``infer`` runs of ``folder`` (:func:`_folder_entries`, :func:`_is_image`), naturally
    sorted; ``recursive``: those of the folders in it too (a dataset YAML's split folder, as Ultralytics reads
    it). One listing, so that a folder is the same set of pictures to infer, export --calib and check --images."""
    return sorted((p for p in _folder_entries(Path(folder), recursive=recursive) if _is_image(p)), key=_natural_key)


def _is_video(path: Path) -> bool:
    """A video file by its suffix, save a GIF of one picture, which is an image (:func:`_still_gif`)."""
    return path.suffix.lower() in VIDEO_SUFFIXES and not _still_gif(path)


def _still_gif(path: Path) -> bool:
    """A .gif file of one picture (a logo, a chart, a photo saved as GIF): an image, as the same picture as
    PNG is, where read as a video it was written as a one-frame NAME.mp4 (and left out of a folder as a
    video). An animated GIF is a video. Pillow's header tells them apart: a second frame, or none."""
    if path.suffix.lower() != ".gif":
        return False
    try:
        found = path.stat()
    except OSError:
        return False
    return _gif_of_one_picture(os.fspath(path), found.st_mtime_ns, found.st_size)


@functools.lru_cache(maxsize=4096)
def _gif_of_one_picture(path: str, mtime_ns: int, size: int) -> bool:
    """:func:`_still_gif`'s answer for the file ``path`` as it is (its time and size part of the key): a folder's
    listing asks it of each GIF twice (an image? a video?), and Pillow finds a second frame only by reading
    through the first one's data (a folder of 102 still 1080p GIFs: 1.7 s listing, half of it asked twice)."""
    from PIL import Image

    _quiet_pillow()

    try:  # Pillow's warning of a large one is not said
        with Image.open(path) as image:
            return not getattr(image, "is_animated", False)
    except Exception:  # noqa: BLE001 - no GIF Pillow reads (too big, damaged): a video, as FFmpeg then says
        return False


def _empty_file(path: Path) -> bool:
    """Whether ``path`` is a file of 0 bytes (a copy or download that never started): no picture, no video,
    no list, whatever its name says, and said to be empty (:func:`_said_empty`) where one would be named."""
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def _said_empty(path: str | os.PathLike[str]) -> InputError:
    """What a file of 0 bytes is told, on its own or skipped in a list, whatever its name: an empty .gif was
    'cannot decode X as a video', an empty .mp4 in a list 'cannot decode image X', an empty .heic a HEIC photo."""
    return InputError(f"empty file {path}: 0 bytes", hint=_EMPTY_HINT)  # as a folder's summary names them


def _heic_not_read(path: Path) -> InputError:
    """What a lone HEIC photo, or one in a list, is told: a folder of them said 'no images found', a lone one
    that it could not be decoded, neither of which says why, nor what to do."""
    return InputError(f"{path} is a HEIC photo (an iPhone's format), which pvt-deploy does not read", hint=_HEIC_HINT)


def _images_source(candidates: list[Path], spec: str, what: str) -> ImageSource:
    """The images among ``candidates`` (a folder's entries, a glob's matches). Videos among them are
    not run (a folder or glob is a set of pictures): said with a warning, or in the error when there
    is nothing else, instead of passing unmentioned."""
    named = functools.partial(_files_named, by_name=what == "folder")  # a folder's files by their names

    # a file named as a picture, a video or a HEIC photo holding 0 bytes (a copy or download that never started) is
    # none, and is said to be empty, in one line: an empty .gif, no picture and so no still GIF, was one of the
    # videos; an empty .jpg was counted among the pictures ('source DIR (2 images)', then '1/1')
    left = [p for p in candidates if (_is_image(p) or _is_video(p) or p.suffix.lower() in HEIC_SUFFIXES)
            and p.is_file()]
    empties = sorted((p for p in left if _empty_file(p)), key=_natural_key)
    empty = set(empties)
    paths = [p for p in candidates if _is_image(p) and p not in empty]
    videos = sorted((p for p in left if _is_video(p) and p not in empty), key=_natural_key)
    left_out = named(videos, "video")
    heics = sorted((p for p in left if p.suffix.lower() in HEIC_SUFFIXES and p not in empty), key=_natural_key)
    heic_left_out = named(heics, "HEIC photo")
    if not paths:
        if heics:
            raise InputError(f"no images found in {what} {spec}, only {heic_left_out}, a format pvt-deploy does not "
                             "read", hint=_HEIC_HINT)
        if videos:
            raise InputError(f"no images found in {what} {spec}, only {left_out}",
                             hint="a folder or glob runs its images: give each video on its own")
        if empties:
            raise InputError(f"no images found in {what} {spec}, only {named(empties, 'empty file')}: 0 bytes",
                             hint=_EMPTY_HINT)
        described = sorted((p for p in candidates if p.suffix.lower() in DATASET_SUFFIXES and p.is_file()),
                           key=_natural_key)
        if described:  # a data set's root (Ultralytics), its images in images/val ..., or a glob of its YAMLs
            held = (f"it holds {described[0].name}" if what == "folder" else
                    f"it matches {', '.join(str(p) for p in described[:3])}{', ...' if len(described) > 3 else ''}")
            raise InputError(f"no images found in {what} {spec}", hint=f"{held}: export --calib and check "
                             f"--images take a dataset YAML, as in --calib {described[0]}; infer takes a "
                             "folder of its images")
        # photos sorted into folders (by day, by camera): a folder runs its own pictures, not its folders'
        below = _glob_below(spec)
        found = what == "folder" and next((p for p in globlib.iglob(below, recursive=True) if _is_image(Path(p))),
                                          None)
        if found:
            raise InputError(f"no images found in folder {spec}, only in folders in it (such as {found})",
                             hint="a folder runs its own images; for those of its folders too, give a glob: "
                             f"{shell_quote(below)}")
        # pictures that are all hidden files (a Mac's ._ files, a .NAME.jpg): the image types were no answer
        hidden = sorted(_hidden_images(spec, what), key=_natural_key)
        if hidden:
            lister, dotted = ("ls", "") if what == "folder" else ("the shell's", f" or a glob whose name starts "
                                                                 f"with a dot ({_dotted_glob(spec)})")
            raise InputError(f"no images found in {what} {spec}, only {named(hidden, 'hidden file')}, which a "
                             f"{what} leaves out as {lister} does", hint="a Mac writes a ._NAME beside each "
                             "photo it copies (its metadata, no picture); to run a hidden picture, give it by "
                             f"name{dotted}")
        raise InputError(
            f"no images found in {what} {spec}", hint=f"image types: {image_types()}"
        )
    if videos:
        log.warning("%s: running its %s; %s left out (give each video on its own)", spec,
                    count_of(len(paths), "image"), left_out)
    if heics:
        log.warning("%s: running its %s; %s left out, a format pvt-deploy does not read (%s)", spec,
                    count_of(len(paths), "image"), heic_left_out, _HEIC_HINT)
    if empties:
        log.warning("%s: running its %s; %s left out: 0 bytes (%s)", spec, count_of(len(paths), "image"),
                    named(empties, "empty file"), _EMPTY_HINT)
    ordered: list[Path] = sorted(paths, key=_natural_key)
    # an empty file of a picture's name is a picture that could not be read, as it was before it was left out
    # up front (a run's summary: 'skipped'); an empty video or HEIC photo was never one to run
    return ImageSource(ordered, kind="images", spec=spec, origin=what,
                       left_out=sum(1 for p in empties if _is_image(p)))


def _hidden_images(spec: str, what: str) -> list[Path]:
    """The hidden image files (named .NAME) that the folder ``spec``, or the glob ``spec`` (``what``), leaves out
    as ls and the shell do: a folder's; a glob's, those its last part matches in the folders the rest matches.
    Python's glob has no way to list them before 3.11 (include_hidden), and that one also enters hidden folders,
    which a folder's listing and a glob leave out (:func:`_folder_entries`). None of a glob whose last part
    starts with a dot, which asks for hidden files and has them among its matches already. A folder that cannot
    be listed (a disk's lost+found, which only root reads) is passed over, as the glob passed over it."""
    if what == "folder":
        return [p for p in Path(spec).iterdir() if p.name.startswith(".") and _is_image(p)]
    head, tail = os.path.split(os.path.expanduser(spec))
    if what != "glob" or not tail or tail.startswith("."):
        return []
    folders = dict.fromkeys(os.path.normpath(f) for f in globlib.glob(head, recursive=True)) if head else [os.curdir]
    hidden: list[Path] = []
    for folder in folders:
        with contextlib.suppress(OSError):  # its PermissionError was the error of a glob that matched nothing
            hidden += [entry for entry in Path(folder).iterdir() if entry.name.startswith(".")
                       and fnmatch.fnmatch(entry.name, tail) and _is_image(entry)]
    return hidden


def _dotted_glob(spec: str) -> str:
    """A glob that matches the hidden files ``spec``'s last part leaves out, to paste into a shell: dir/*.jpg ->
    dir/.*.jpg (the name after the dot as the glob wrote it), else dir/.* (every hidden file in its folders)."""
    head, tail = os.path.split(spec)
    return shell_quote(os.path.join(head, "." + tail if tail.startswith("*") else ".*"))


def _stream_source(
    spec: str,
    *,
    vid_stride: int,
    reconnect: Reconnect | None,
    realtime: bool | None,
    timeout: float,
    options: dict[str, str] | None,
    bytes_per_pixel: int = VIDEO_BYTES_PER_PIXEL,
    kept_frames: int = 0,
) -> StreamSource | ArraySource:
    if is_webcam(spec):
        device: int | str = int(spec) if spec.isdigit() else spec
        name = f"webcam{device}" if isinstance(device, int) else device
        return StreamSource(
            lambda: CaptureReader(device),
            spec=name,
            vid_stride=vid_stride,
            reconnect=reconnect,
            realtime=realtime,
        )
    scheme = check_stream_url(spec)
    # TCP for RTSP: UDP packet loss smears frames, and most cameras serve both.
    opts = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
    opts.update(options or {})
    live = True if scheme in _LIVE_SCHEMES else None

    def opener() -> PyAVReader:
        return PyAVReader(spec, options=opts, timeout=(timeout, timeout), live=live, bytes_per_pixel=bytes_per_pixel,
                          kept_frames=kept_frames)

    said: set[int] = set()  # the colorspaces warned of: once for the URL, though a pipe of pictures opens it twice

    def stream() -> StreamSource:
        return StreamSource(opener, spec=redact_url(spec), vid_stride=vid_stride, reconnect=reconnect,
                            realtime=realtime, url=spec, colorspaces_said=said)

    source = stream()
    reader = source._reader
    if getattr(reader, "picture", False) and source.frames in (1, None):
        # a picture's URL (https://host/bus.jpg) is an image, as the file on disk is: read as a stream, its
        # result was frame 0 at 0.0 s and save=True wrote bus.mp4, a one-frame video. A pipe of pictures
        # (jpeg_pipe, whose count is unknown) that holds more than one stays a stream, from its start
        with source:
            first = list(itertools.islice(source, 2))
        if len(first) == 1:
            # and decoded as that file is: its bytes (the picture demuxer's one packet) by OpenCV, whose chroma
            # upsampling FFmpeg's decode did not share (pixels off at colour edges; both apply the EXIF
            # orientation); FFmpeg's picture where OpenCV cannot decode the format
            data = getattr(reader, "picture_data", None)
            try:  # past OpenCV's or libpng's size limits, FFmpeg's picture as the file's on disk is
                image = _decode_picture(np.frombuffer(data, np.uint8), source.spec) if data else None
            except cv2.error:  # which FFmpeg could not decode from the bytes alone: the frame it decoded
                image = None
            # that frame, decoded as the URL's demuxer has it (a JPEG whose first marker is damaged, no picture's by
            # its bytes), is as damaged as the stream's decoder says
            if image is None and data and _concealed(data, cast(PyAVReader, reader).codec):
                _say_damaged(source.spec)
            return ArraySource(first[0].image if image is None else image, name=source.spec)
        source = stream()
    return source


def is_webcam(text: str) -> bool:
    """A webcam index (``0``) or a V4L2 device (``/dev/video0``)."""
    return text.isdigit() or text.startswith("/dev/video")


def check_stream_url(url: str) -> str:
    """The scheme of a stream URL; one that cannot name a stream (a bad IPv6 literal or port, no
    host) is an :class:`InputError`, said before anything tries to connect to it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
    except ValueError as e:
        raise InputError(f"bad stream URL {redact_url(url)}: {e}") from None
    if not parts.netloc:
        raise InputError(f"bad stream URL {redact_url(url)}: no host",
                         hint="e.g. rtsp://camera:554/stream or http://host:8080/video.mjpg")
    return parts.scheme.lower()


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` is a URL of a scheme :func:`open_source` reads (:data:`STREAM_SCHEMES`, in any
    case: ``HTTPS://``), not a path: the one test of it wherever a URL and a file are told apart (the
    name of an output, where audio is read from). A Windows path (``C:\\clips\\a.mp4``) is not one."""
    text = os.fspath(text).strip()
    try:
        return urlsplit(text).scheme.lower() in STREAM_SCHEMES
    except ValueError:  # e.g. a bad IPv6 literal: not a path either, so the stream opener reports it
        return text.split("://", 1)[0].lower() in STREAM_SCHEMES


def is_live(text: str) -> bool:
    """Whether ``text`` names a live feed :func:`open_source` opens as a stream: a webcam index,
    ``/dev/videoN``, or a URL (:func:`is_url`)."""
    return is_webcam(text.strip()) or is_url(text)


def open_source(
    spec: str | int | os.PathLike[str] | Sequence[str | os.PathLike[str]] | np.ndarray | Any,
    *,
    vid_stride: int = 1,
    reconnect: Reconnect | None = None,
    realtime: bool | None = None,
    timeout: float = 10.0,
    options: dict[str, str] | None = None,
    bytes_per_pixel: int = VIDEO_BYTES_PER_PIXEL,
    kept_frames: int = 0,
) -> Source:
    """Open anything a user can point ``infer`` at and return a :class:`Source`.

    ``spec`` may be an image file, a folder (its images, naturally sorted, not recursive), a glob
    (``"data/**/*.jpg"``), a list of image paths (or a ``.txt`` file of them, one a line), a video
    file, a webcam index (``0`` or ``"0"``) or ``/dev/videoN``, an ``rtsp://``/``rtmp://``/``http(s)://``
    URL, an in-memory RGB numpy array / PIL image, or an encoded picture's bytes or binary file object
    (:func:`read_encoded`). ``vid_stride`` keeps every n-th frame of videos
    and streams. ``reconnect``, ``realtime``, ``timeout`` (seconds, per connect and per read) and
    ``options`` (FFmpeg options, e.g. ``{"rtsp_transport": "udp"}``) apply to streams.
    ``bytes_per_pixel``: the memory a video frame's pixel needs in this run, weighed against the memory
    free before a video or stream is decoded (:data:`VIDEO_BYTES_PER_PIXEL` where the annotated video is
    saved, :data:`VIDEO_BYTES_PER_PIXEL_UNSAVED` where it is not); ``kept_frames``: how many of a video's frames
    the caller keeps besides (RGB, 3 bytes a pixel each), weighed as no more than the video holds.

    Raises :class:`InputError` for anything that does not exist or cannot be decoded.
    """
    if isinstance(vid_stride, bool) or not isinstance(vid_stride, int) or vid_stride < 1:
        raise InputError(f"vid_stride must be a positive integer, got {vid_stride!r}")
    if is_picture(spec):
        return ArraySource(spec)
    if isinstance(spec, (list, tuple)):  # image files, and pictures from the Python API
        return _list_source(spec)
    if isinstance(spec, bool) or not isinstance(spec, (str, int, os.PathLike)):
        wanted = ("give a path, folder, glob, video, URL, camera index, numpy array, PIL image or encoded "
                  "picture (bytes, a binary file object), or a list of image paths and pictures")
        if hasattr(spec, "__iter__") and not isinstance(spec, (bytes, dict)):  # a generator, iterator, set
            raise InputError(f"unsupported source type {type(spec).__name__}: {wanted}; give list(...) of a "
                             f"{type(spec).__name__}, or call predict on each picture")
        raise InputError(f"unsupported source type {type(spec).__name__}: {wanted}")
    text = str(spec) if isinstance(spec, int) else os.fspath(spec).strip()
    if not text:  # Path("") is ".": an unset variable ran every image in the current folder
        raise InputError(f"the source is an empty name ({spec!r})", hint="give a file, folder, glob, video or "
                         "URL; the current folder is '.'")
    stream_kw: dict[str, Any] = dict(
        vid_stride=vid_stride, reconnect=reconnect, realtime=realtime, timeout=timeout, options=options,
        bytes_per_pixel=bytes_per_pixel, kept_frames=kept_frames,
    )
    if is_live(text):
        return _stream_source(text, **stream_kw)

    path = Path(text).expanduser()
    if path.is_dir():  # its entries as ls and a glob's * list them (hidden ones left out)
        return _images_source(_folder_entries(path), str(path), "folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if _empty_file(path):  # no picture, video or list, whatever its name says
            raise _said_empty(path)
        if _named_image(path):
            return ImageSource([path], kind="image", spec=str(path))
        if suffix in HEIC_SUFFIXES:
            raise _heic_not_read(path)
        if suffix in VIDEO_SUFFIXES:
            return VideoSource(path, vid_stride=vid_stride, bytes_per_pixel=bytes_per_pixel, kept_frames=kept_frames)
        if (listed := _read_list(path)) is not None:  # Ultralytics' list source
            try:
                return _list_source(listed, path)
            except InputError as e:  # "no such file: hello" said nothing of where the name came from
                raise InputError(f"{path}: {e.args[0]}", hint=e.hint) from None
        if suffix in DATASET_SUFFIXES:  # Ultralytics' data=coco8.yaml: a data set's description, not pictures
            raise InputError(f"{path} is a YAML file, not images or a video: a dataset YAML gives the images of "
                             "export --calib and check --images", hint="to run a split, give its folder: "
                             "pvt-deploy infer DATASET/images/val")
        if (json_file := _json_file(path)) is not None:  # no picture or video begins as JSON text does
            raise json_file
        return _guess_file(path, vid_stride, bytes_per_pixel, kept_frames)
    if _GLOB_CHARS.search(text):
        matches = [Path(p) for p in globlib.glob(str(path), recursive=True)]
        return _images_source(matches, text, "glob")
    if (special := _special_file(path)) is not None:  # it is there: "no such file" said otherwise
        raise InputError(f"{text} is {special}, not a regular file or folder",
                         hint="give an image or video file, a folder, a glob, a URL or a camera")
    if text == "-":  # the shell's name for standard input, which is not read (nor is a named pipe: see above)
        raise InputError("'-' (standard input) is not a source: pictures and videos are read from files",
                         hint="save the data to a file and give its name, or give a folder, glob, URL or camera")
    raise InputError(f"no such file or folder: {text}")


def _list_source(spec: Sequence[Any], listing: Path | None = None) -> ImageSource:
    """:func:`open_source` of a list of image files and pictures (the Python API's, infer's several files), or of
    the files a ``.txt`` list names (``listing``: named as the source, 'source list.txt (2 images)', where it
    was '2 images')."""
    for p in spec:  # before Path() turns https://host/a.jpg into "no such file: https:/host/a.jpg"
        if isinstance(p, (str, int)) and not isinstance(p, bool) and is_live(str(p)) and not os.path.isfile(p):
            raise InputError(f"{p} is a URL or a camera: a list takes image files (and pictures); give it "
                             "on its own")
    for i, p in enumerate(spec):  # Path() would raise a TypeError: a nested list, None, bytes, a tensor
        if not is_picture(p) and (isinstance(p, bool) or not isinstance(p, (str, os.PathLike))):
            raise InputError(f"item {i} of the list is a {type(p).__name__}: a list takes image paths, numpy "
                             "arrays, PIL images and encoded pictures (bytes, binary file objects)")
    items = [as_rgb_array(p) if is_picture(p) else Path(p) for p in spec]
    empty = [isinstance(item, Path) and _empty_file(item) for item in items]  # whatever its name: said empty below
    for item, nothing in zip(items, empty, strict=True):  # say what is wrong with the list, not "no such file"
        if nothing:
            continue
        if isinstance(item, Path) and (special := _special_file(item)) is not None:
            raise InputError(f"{item} is {special}, not a regular file: a list takes image files (and pictures)")
        if isinstance(item, Path) and item.is_dir():
            raise InputError(f"{item} is a folder: a list takes image files (and pictures); give the folder "
                             "itself, or run each folder on its own")
        if isinstance(item, Path) and item.suffix.lower() in HEIC_SUFFIXES and item.is_file():
            raise _heic_not_read(item)
        if isinstance(item, Path) and _is_video(item):
            raise InputError(f"{item} is a video: a list takes image files (and pictures); run each video "
                             "on its own (Python: predict(video, stream=True))")
        if isinstance(item, Path) and _file_list(item):  # read as a picture, it was skipped as
            # undecodable and the files it names never ran
            raise InputError(f"{item} is a list of files: a list takes image files (and pictures); give the "
                             "list on its own")
    missing = [str(p) for p in items if isinstance(p, Path) and not p.is_file()]
    if missing:
        raise InputError(
            f"no such file: {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    # a file of 0 bytes (a copy or download that never started) is left out up front and said in one line, as a
    # folder's are: counted among the pictures, the source line said '2 images', then '1/1'
    empties = [item for item, nothing in zip(items, empty, strict=True) if nothing and isinstance(item, Path)]
    if empties and len(empties) == len(items):
        if len(empties) == 1:
            raise _said_empty(empties[0])
        raise InputError(f"no images to read in {listing or 'the list'}, only {_files_named(empties, 'empty file')}: "
                         "0 bytes", hint=_EMPTY_HINT)
    kept = [(number, item) for number, (item, nothing) in enumerate(zip(items, empty, strict=True)) if not nothing]
    spec_text = str(listing) if listing is not None else count_of(len(kept), "image")
    if empties:
        log.warning("%s: running its %s; %s left out: 0 bytes (%s)", listing or "the list",
                    count_of(len(kept), "image"), _files_named(empties, "empty file"), _EMPTY_HINT)
    return ImageSource([item for _, item in kept], kind="images", spec=spec_text,
                       numbers=[number for number, _ in kept], left_out=len(empties))


def _files_named(files: Sequence[Path], kind: str, *, by_name: bool = False) -> str:
    """'2 videos (a.mp4, b.mp4)': how many ``files`` of a ``kind``, and the first three, as given or (``by_name``)
    by their names."""
    shown = [p.name if by_name else str(p) for p in files[:3]] + (["..."] if len(files) > 3 else [])
    return f"{count_of(len(files), kind)} ({', '.join(shown)})"


def _special_file(path: Path) -> str | None:
    """What ``path`` is where it is there but neither a regular file nor a folder (a named pipe, a socket,
    a device), else None."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device")]
    return next((name for test, name in kinds if test(mode)), "a special file")




def _list_bytes(path: Path, *, whole: bool = True) -> bytes | None:
    """The bytes of ``path`` where it is a list of files, one a line (Ultralytics' list source): a ``.txt`` file of
    text; None where it is not. All of them, or (not ``whole``) the first 4096, which tell it. A picture saved
    under .txt (a browser's 'save as', a renamed attachment) was read as one, and refused with its bytes for names;
    text holds no NUL byte, and a file with one is read by its content, as a file whose name says nothing is
    (:func:`_guess_file`). A .txt file that cannot be read is an InputError saying why."""
    if path.suffix.lower() != ".txt" or not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            head = f.read(4096)
            if not _text(head):
                return None
            return head + f.read() if whole else head
    except OSError as e:
        raise InputError(f"cannot read the list {path}: {joined_lines(e)}") from None


def _file_list(path: Path) -> bool:
    """Whether ``path`` is a list of files (:func:`_list_bytes`), told by its first bytes; one that cannot be read
    is taken for one, whose reader says why."""
    try:
        return _list_bytes(path, whole=False) is not None
    except InputError:
        return True


def _text(head: bytes) -> bool:
    """Whether a file that begins ``head`` is text (:func:`_list_bytes`): no NUL byte, or the mark of UTF-16 or
    UTF-32 (:func:`~pvt_deploy.utils.files.wide_codec`), whose ASCII letters hold NULs. UTF-32's big-endian mark
    (00 00 FE FF) begins with none of UTF-16's: by theirs alone such a list was no list, its bytes read as a picture."""
    return wide_codec(head) is not None or b"\x00" not in head


def _read_list(path: Path) -> list[str] | None:
    """The files a list (:func:`_list_bytes`) names (:func:`_listed_files`), or None where ``path`` is not one: told
    and read from one reading of the file. Told by one read and listed by another, a list replaced between them
    (a script writing it anew, renamed into place) was told a list as it was and listed as it is now: a picture's
    bytes read for names ('no such file: ...'), or the names of another list."""
    data = _list_bytes(path)
    return None if data is None else _listed_files(path, data)


def _listed_files(listing: Path, data: bytes | None = None) -> list[str]:
    """The image files a ``.txt`` list names, one a line: a path as given, or else beside the list; blank
    lines and ``#`` comments skipped. ``data``: the list's bytes, where they were read already."""
    try:
        if data is None:
            data = listing.read_bytes()
            if not _text(data[:4096]):  # as _list_bytes tells a list: a picture saved as a split's train.txt was
                # read for names, and its bytes quoted as escaped surrogates in a warning of lines left out
                raise InputError(f"{listing} is not a list of files: it holds binary data, not text",
                                 hint="a list names one image file a line")
        # UTF-8 with Windows Notepad's byte-order mark (which was read as part of its first path: "no such file:
        # \ufeffa.jpg"), or UTF-16, its mark first (Windows PowerShell 5's 'dir -Name > list.txt'). surrogateescape:
        # a name that is not UTF-8 (caf\xe9.jpg, `ls > list.txt` among Latin-1 names) is read as the file system
        # gives it (os.fsdecode), so it opens; the whole list was refused for its one byte
        lines = [line.strip() for line in decode_text(data, errors="surrogateescape").splitlines()]
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the list {listing}: {joined_lines(e)}") from None
    paths = [p if Path(p).exists() or not (listing.parent / p).exists() else str(listing.parent / p)
             for p in lines if p and not p.startswith("#")]
    if not paths:
        raise InputError(f"the list {listing} names no files (one image path a line)")
    return paths


# The start of a JSON file: its text (after a byte-order mark, as Windows tools write, and white space) opens an
# object or a list; and of a COCO annotation file (instances_val2017.json, a Roboflow or CVAT export), an object
# whose keys near its start include images, annotations or categories (COCO's own begins with info and licenses).
# Of UTF-8 text: UTF-16 (its mark first, as Windows PowerShell 5 writes) and UTF-32 are read as UTF-8 first.
_JSON_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*([{\[])")
_COCO_KEYS = re.compile(rb'"(?:images|annotations|categories)"\s*:')


def _json_file(path: Path) -> InputError | None:
    """What a JSON file given where pictures are wanted is told, or None where ``path`` does not begin as JSON
    text: a COCO annotation file (``check --images instances.json``), which ``val`` takes, was 'neither a
    readable image nor a video', as was any other JSON, after being read whole as a picture and probed as a
    video (an instances_train2017.json is 448 MB). Read from its first 64 KB."""
    try:
        with path.open("rb") as f:
            head = f.read(65536)
    except OSError:
        return None  # the picture's or the video's reader says why it cannot be read
    wide = wide_codec(head)  # json.loads (val) reads UTF-16 and UTF-32 too
    if wide is not None:  # a character cut at 64 KB is left out
        head = head.decode(wide, errors="ignore").encode()
    start = _JSON_START.match(head)
    if start is None:
        return None
    if start.group(1) == b"{" and _COCO_KEYS.search(head):
        split = path.stem.rsplit("_", 1)[-1]  # COCO's layout: annotations/instances_val2017.json beside val2017/
        folder = next((f for f in (path.parent.parent / split, path.parent / split, path.parent / "images")
                       if f.is_dir()), None)
        pictures = f"give their folder ({folder})" if folder else "give the folder they are in"
        return InputError(f"{path} looks like a COCO annotation file (JSON), not pictures or a video",
                          hint=f"pvt-deploy val takes it: pvt-deploy val {shell_quote(str(path))} --model EXPORT; "
                          f"to run or compare on its pictures, {pictures}")
    return InputError(f"{path} is a JSON file, not pictures or a video",
                      hint="give an image or video file, a folder or glob of images, a .txt list, a URL or a camera")


def _guess_file(path: Path, vid_stride: int, bytes_per_pixel: int = VIDEO_BYTES_PER_PIXEL,
                kept_frames: int = 0) -> Source:
    """A file with an unknown suffix: try it as an image, then as a video."""
    try:
        return ImageSource([path], kind="image", spec=str(path))
    except _TooBigToDecode:
        raise  # an image, too big for the memory free: say that, and FFmpeg must not decode it either
    except InputError:
        pass
    try:
        return VideoSource(path, vid_stride=vid_stride, bytes_per_pixel=bytes_per_pixel, kept_frames=kept_frames)
    except (_NoVideoStream, _TooBigToDecode):
        raise  # a media file, but audio only, or a video too big for the memory free: say that, not "unreadable"
    except InputError:
        raise InputError(f"{path} is neither a readable image nor a video") from None
