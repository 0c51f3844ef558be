"""Output sinks: H.264 video, annotated images, JSON Lines and COCO results.

Every sink writes under a temporary name and renames at the end, so a crash never leaves a
half-written file under the final name. What happens on an *exception* (Ctrl-C, a stream that
raises, a bug downstream) differs by format, on purpose:

* :class:`VideoWriter` flushes the encoder and keeps the frames written so far: a recording cut
  short is still a playable, useful mp4 (H.264 needs its trailer written to play at all).
* :class:`JsonlWriter` keeps the lines written so far: every line is a complete record, flushed as
  it is written, so even after a hard kill the ``.part`` file holds complete lines up to the last.
* :class:`CocoJsonWriter` writes nothing: a COCO results list for part of a dataset would score as
  a bad model in ``COCOeval`` rather than as an interrupted run.
* :class:`ImageWriter` writes each image atomically; nothing is pending between images.

Video is encoded with PyAV because OpenCV's wheels cannot write H.264 (only MPEG-4 part 2, which
browsers do not play). Frames are converted with the BT.709 matrix and tagged as such, which is
what players assume for HD video; untagged BT.601 output looks washed out or tinted in browsers.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import itertools
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Container, Generator, Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import av
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from pvt_deploy.errors import BackendUnavailableError, InputError, stop_reason
from pvt_deploy.io.sources import (
    _AVFMT_TS_DISCONT,
    Join,
    _short,
    clock_restarted,
    is_url,
    redact_url,
    video_joins,
)
from pvt_deploy.tasks.preprocess import fit_box_size
from pvt_deploy.utils.files import (
    FULL_DISK_ERRNOS,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    json_dumps,
)
from pvt_deploy.utils.signals import interrupts_deferred

log = logging.getLogger(__name__)

# Preference order for codec="auto": the GPU encoder frees the CPU for pre/post-processing.
_AUTO_H264 = ("h264_nvenc", "libx264", "libopenh264")
H264_ENCODERS = (*_AUTO_H264, "h264_videotoolbox", "h264_qsv", "h264_amf", "h264_mf", "h264_vaapi")
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


# ---------------------------------------------------------------------------------------------
# Encoder discovery
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _scheduling_kept() -> Iterator[None]:
    """Give the calling thread back the scheduling policy it had before the block, where the block changed it:
    SVT-AV1 (``libsvtav1``), run as root, makes the thread that opens its encoder real-time (SCHED_FIFO,
    priority 99) for good, and a library user's thread (a test process's main thread, a server's worker) then
    ran so from there on, and every process it started too (one could no longer join a cgroup without
    real-time time: EINVAL). Its own threads, made while it opens, are its own. A look at the policy (one call)
    where nothing changed it; nothing to do where the platform has no such policies."""
    if not hasattr(os, "sched_getscheduler"):  # macOS, Windows
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if os.sched_getscheduler(0) != policy:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, policy, param)


@functools.cache
def _encoder_opens(name: str) -> bool:
    """Whether ``name`` can actually be opened here: NVENC is compiled into PyAV's wheels but
    needs an NVIDIA driver and an NVENC-capable GPU (datacenter Hopper/A100 have none)."""
    if name not in av.codecs_available:
        return False
    try:
        ctx = cast("av.video.codeccontext.VideoCodecContext", av.CodecContext.create(name, "w"))
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        with _scheduling_kept():
            ctx.open()
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    return True


def available_h264_encoders() -> list[str]:
    """H.264 encoders that open on this machine, best first (for ``pvt-deploy doctor``)."""
    return [name for name in H264_ENCODERS if _encoder_opens(name)]


def resolve_codec(codec: str = "auto") -> str:
    """Turn ``"auto"``/``"h264"`` or an encoder name into one that works here, or raise.

    Raises :class:`BackendUnavailableError` with the reason when nothing usable exists.
    """
    if codec in ("auto", "h264"):
        for name in _AUTO_H264:
            if _encoder_opens(name):
                return name
        raise BackendUnavailableError(
            "no H.264 encoder available in this PyAV build",
            hint="install the PyPI 'av' wheel, which bundles libx264",
        )
    if codec not in av.codecs_available:
        raise BackendUnavailableError(f"video encoder {codec!r} is not in this PyAV build")
    if not _encoder_opens(codec):
        hint = "it needs an NVIDIA driver and an NVENC-capable GPU" if "nvenc" in codec else None
        raise BackendUnavailableError(f"video encoder {codec!r} cannot be opened on this machine", hint=hint)
    return codec


def _encoder_options(codec: str, crf: int, preset: str | None) -> dict[str, str]:
    if codec == "libx264":
        if preset is None:  # veryfast, its sub-pixel motion search cut to one pass of SAD (superfast's)
            # On five clips (480p to 1080p, from H.264 and VP9), CRF 23, one thread: 21-40 % less CPU per frame
            # (11.1 -> 6.7 ms at 720p, 15.0 -> 10.6 ms at 1080p), file size -4 to +2 %, Y-PSNR -0.45 to +0.11 dB.
            # The encoder shares the cores with the model on a CPU, and is the host's slowest stage on a GPU
            # box without NVENC (docs/PERFORMANCE.md, fifth session on the Xeon).
            return {"crf": str(crf), "preset": "veryfast", "x264-params": "subme=1"}
        return {"crf": str(crf), "preset": preset}
    if codec.endswith("_nvenc"):  # constant-quality VBR, the NVENC analogue of x264's CRF
        return {"preset": preset or "p4", "rc": "vbr", "cq": str(crf), "b": "0"}
    return {}


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------


# Matroska, WebM and FLV keep times in whole milliseconds: a constant-rate clip of 24, 30 or 60 fps comes
# in up to half a millisecond off its frame grid, and its first frame, the output's zero, as much again.
# The writer puts a frame that close to the grid on it; kept as they came, such times made a 24 fps
# source's output variable-rate (frames of 42.1 and 40.8 ms; 24.005 fps on average).
_CLOCK_ROUNDING_S = 1e-3 + 1e-9


def _as_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction; 29.97 & co. become NTSC's 30000/1001 as cameras record."""
    if isinstance(fps, Fraction):
        return fps
    for base in (24, 30, 48, 60, 120, 240):
        if abs(fps - base * 1000 / 1001) < 5e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _muxer_options(fmt: str) -> dict[str, str]:
    """mp4/mov get ``+faststart`` (the index first), so they start playing before fully downloaded."""
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def _file_stamp(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """What identifies a file's content cheaply (device, inode, size, mtime), or None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


_URL_TIMEOUT_S = 10.0  # per connect and per read, as a stream gets by default: a server gone quiet ends the wait


def audio_source(path: str) -> str | None:
    """``path`` where a :class:`VideoWriter` can read its audio again once the video is finished (a
    local file, or an ``http(s)://`` URL of one, with the user name and password it needs: a stream
    source's :attr:`~pvt_deploy.io.sources.StreamSource.audio_url`, which its frames and results carry as
    ``location``, not their ``path``, which leaves them out), else None (a camera; a URL of another
    scheme). Whether an http(s) URL is a file or a live feed is the source's to say: a live one gives
    no audio."""
    if not is_url(path):
        return path if os.path.isfile(path) else None
    try:
        scheme = urlsplit(path).scheme.lower()
    except ValueError:
        return None
    return path if scheme in ("http", "https") else None


def _shown(source: str | os.PathLike[str]) -> str:
    """``source`` as a log line may name it: a URL without its user name and password."""
    return redact_url(os.fspath(source)) if is_url(source) else os.fspath(source)


def _open_input(source: str | os.PathLike[str]) -> Any:
    """``source`` opened for reading with PyAV; a URL with timeouts, so that a server that stops
    answering ends the wait instead of the run."""
    if is_url(source):
        return av.open(os.fspath(source), timeout=(_URL_TIMEOUT_S, _URL_TIMEOUT_S))
    return av.open(os.fspath(source))


def _source_stamp(source: str | os.PathLike[str]) -> tuple[Any, ...] | None:
    """What identifies the content of ``source`` cheaply, or None if it cannot be read. A local file:
    :func:`_file_stamp`. A URL, read once more: its size (an HTTP server's Content-Length), duration
    and audio tracks (codec, rate, channels, length), which a different file there does not all
    share; None also when it has no duration (a live feed, which cannot be read again from its start)."""
    if not is_url(source):
        return _file_stamp(source)
    try:
        with _open_input(source) as container:
            if container.duration is None:
                return None
            tracks = tuple((s.codec_context.name, s.codec_context.sample_rate, s.codec_context.channels,
                            s.duration, s.frames) for s in container.streams.audio)
            return container.size, container.duration, tracks
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit a ``size`` (width, height) picture with its aspect ratio kept, centred on black:
    a stream that switches from 4:3 to 16:9 midway is not stretched into the first one's frame."""
    (w, h), (iw, ih) = size, (image.shape[1], image.shape[0])
    sh, sw = fit_box_size(ih, iw, h, w)
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - sw) // 2, (h - sh) // 2
    interpolation = cv2.INTER_AREA if sw < iw else cv2.INTER_LINEAR
    out[y:y + sh, x:x + sw] = cv2.resize(image, (sw, sh), interpolation=interpolation)
    return out


class _Stopped(Exception):
    """A stop request came while the audio was being added: the silent video is kept."""


class _TrackFailed(Exception):
    """One audio track failed while the audio was being added: the others are added without it."""

    def __init__(self, track: _AudioCopy, error: BaseException) -> None:
        super().__init__(track.name)
        self.track, self.error = track, error


_STAGING_TAIL = 64  # bytes after a picture that swscale may read (its widest SIMD load)


class VideoWriter:
    """Encode RGB uint8 frames to an H.264 (yuv420p) file, atomically.

    ``size`` is ``(width, height)``. yuv420p needs even sizes, so an odd width or height is padded
    by one replicated row/column (the output is then e.g. 642x361 -> 642x362, 1x1 -> 2x2); frames of another
    size are resized to ``size`` with a one-time warning. mp4/mov outputs get ``+faststart`` so
    they start playing before they are fully downloaded.

    Timing: ``write(image, timestamp)`` places each frame at its source time (seconds; the first
    frame's time is the output's zero) on a clock of 1/100 frame at ``fps``. A constant-rate source
    stays exactly constant-rate (also from a millisecond clock: a time within 1 ms of the frame grid
    is on it), and a variable-rate one (phone recordings, screen captures, live
    streams) keeps its timing instead of drifting from its audio and from the JSON timestamps, as
    it would if frames were laid at a fixed rate. Frames without a timestamp come one nominal frame
    after the previous one; AVI, which has no variable rate, always counts frames.

    ``audio_from``: a video file (or an http(s) URL of one, :func:`audio_source`) whose audio tracks (every
    one: a second language, a commentary) are
    added when the video is finished, in step with the frames' timestamps (see :meth:`_add_audio`, :class:`_AudioCopy`); a file without
    audio gives a silent video, a track that cannot be carried over is left out with a warning (the
    others are added; none left: a silent video), never a failed one.

    ``next_name``: the video is a new file and replaces none. Where ``path`` is taken when it is done (another
    run into the folder published its own ``clip.mp4`` meanwhile), it is put in place under ``next_name()``
    instead (:func:`~pvt_deploy.utils.files.atomic_path`); :attr:`path` and :meth:`close` say where, and a warning
    names both (the log lines said before then named ``path``). Without,
    a file at ``path`` is replaced, as by any write to it.

    ``codec``: an encoder's name, or ``"auto"`` (``"h264"``): the first of :data:`_AUTO_H264` that opens here
    (:func:`resolve_codec`, which opens them at 256x256). Where the one it chose refuses this video's size (NVENC's
    limits are its GPU's), the next of them that opens at this size writes the video, and a warning names the one
    refused and the size; a named encoder that refuses the size, or none left that takes it, is an
    :class:`InputError`.

    Use it as a context manager: whether the block ends normally or by an exception (including
    KeyboardInterrupt), the encoder is flushed and the file is finalised with the frames written
    so far; a writer that received no frame leaves no file. A Ctrl-C or SIGTERM that comes while
    a frame is encoded waits until its packets are in the file, and one that comes while the file is
    being finalised until it is in place (see :meth:`close`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction,
        size: tuple[int, int],
        codec: str = "auto",
        *,
        crf: int = 23,
        preset: str | None = None,
        audio_from: str | os.PathLike[str] | None = None,
        next_name: Callable[[], Path] | None = None,
    ) -> None:
        self.path = Path(path)
        fmt = _CONTAINERS.get(self.path.suffix.lower())
        if fmt is None:
            raise InputError(
                f"unsupported video file type {self.path.suffix!r} for {self.path}", hint="use .mp4"
            )
        width, height = int(size[0]), int(size[1])
        if width < 1 or height < 1:
            raise InputError(f"video size must be at least 1x1, got {width}x{height}")
        if not fps or fps <= 0:
            raise InputError(f"video fps must be positive, got {fps}")
        self.size = (width, height)
        self.fps = _as_rate(fps)
        self.codec = resolve_codec(codec)
        self.frames_written = 0
        self._timed = fmt != "avi"
        self._tick = Fraction(1, 100) / self.fps if self._timed else 1 / self.fps  # frame.pts unit, seconds
        self._t0: float | None = None  # source time of pts 0
        self._last_pts = -1
        self._first_dts: int | None = None  # the encoder's first packet's decode time, in ticks (_lasts_to_the_end)
        self._pad = (width % 2, height % 2)
        # the frame handed to the encoder's colour conversion, in memory of its own: swscale's SIMD reads up to
        # 64 bytes past the last row of an RGB picture, which from_numpy_buffer does not copy into padded memory,
        # so a caller's array that ends at the end of its mapping would crash the process (_STAGING_TAIL)
        coded = (height + self._pad[1], width + self._pad[0], 3)
        self._staging = np.empty(int(np.prod(coded)) + _STAGING_TAIL, np.uint8)
        self._picture = self._staging[: int(np.prod(coded))].reshape(coded)
        self._warned_resize = False
        self._closed = False
        self._dropped = False  # the file was removed (an error, or discard()): close() returns None
        self._audio_from = audio_from
        # the audio is read when the video is finished: the file must still be the one decoded
        self._audio_stamp = _source_stamp(audio_from) if audio_from is not None else None

        self._named = self.path  # the name log lines say until the video is in place (see close)

        def renamed() -> Path:  # path was taken meanwhile: the video goes where next_name says
            self.path = cast("Callable[[], Path]", next_name)()
            return self.path

        self._atomic = atomic_path(self.path, next_name=renamed if next_name is not None else None)
        self._tmp = Path(self._atomic.__enter__())
        self._fmt = fmt
        frame_size = f"{width + self._pad[0]}x{height + self._pad[1]}"
        # codec="auto": the encoders after the one chosen, for a size it refuses (those that open here, asked only then)
        spare = _AUTO_H264[_AUTO_H264.index(self.codec) + 1:] if codec in ("auto", "h264") else ()
        refused: list[tuple[str, str]] = []  # (encoder, why), in the order tried
        try:
            for name in itertools.chain([self.codec], filter(_encoder_opens, spare)):
                try:
                    self._open_encoder(name, crf, preset)
                    break
                except av.error.FFmpegError as e:  # a size it does not take: x264 20000x64, NVENC past its GPU's limits
                    refused.append((name, _reason(e)))
            else:
                raise InputError(
                    f"cannot write {self.path}: {_refusal(refused, frame_size)}",
                    hint=f"a video this size can be read but not written by {' or '.join(n for n, _ in refused)}: "
                         "run without the annotated video (--no-save, save=False)",
                )
        except BaseException as e:
            self._abort(e)
            raise
        if refused:
            log.warning("%s: %s; written with %s instead", self.path, _refusal(refused, frame_size), self.codec)

    def _open_encoder(self, codec: str, crf: int, preset: str | None) -> None:
        """A new container at the temporary name, its video stream encoded by ``codec`` and opened (now, not at the
        first frame, where what it refuses was a traceback from write() and close()); FFmpeg's error where ``codec``
        does not open for this size. :attr:`codec` is ``codec`` from here on."""
        self.codec = codec
        container = av.open(str(self._tmp), "w", format=self._fmt, container_options=_muxer_options(self._fmt))
        try:
            stream = cast(
                "av.video.stream.VideoStream",
                container.add_stream(codec, rate=self.fps, options=_encoder_options(codec, crf, preset)),
            )
            stream.width, stream.height = self.size[0] + self._pad[0], self.size[1] + self._pad[1]
            stream.pix_fmt = "yuv420p"
            ctx = stream.codec_context
            ctx.time_base = self._tick
            ctx.colorspace, ctx.color_range = Colorspace.ITU709, ColorRange.MPEG
            ctx.color_primaries, ctx.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
            with _scheduling_kept():  # the caller's thread as it was (SVT-AV1 makes it real-time)
                ctx.open()
        except BaseException:
            with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
                container.close()  # nothing is written before the first packet: no file was opened
            raise
        self._container, self._stream = container, stream

    def write(self, image: np.ndarray, timestamp: float | None = None) -> None:
        """Encode one ``HxWx3`` uint8 RGB frame, shown at ``timestamp`` seconds of the source
        (see the class docstring)."""
        if self._closed:
            raise ValueError(f"VideoWriter for {self.path} is closed")
        if (
            not isinstance(image, np.ndarray)
            or image.ndim != 3
            or image.shape[2] != 3
            or image.dtype != np.uint8
        ):
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"VideoWriter takes HxWx3 uint8 RGB frames, got {got}")
        if (image.shape[1], image.shape[0]) != self.size:
            if not self._warned_resize:
                log.warning(
                    "%s: frames of %dx%d in a %dx%d video (the source's resolution changed): scaled to fit, "
                    "aspect ratio kept, black bars",
                    self.path,
                    image.shape[1],
                    image.shape[0],
                    *self.size,
                )
                self._warned_resize = True
            image = _fit(image, self.size)
        # into the writer's own padded picture (one memcpy, 0.35 ms at 720p; from_ndarray's fresh AVFrame per
        # frame cost 2-3 ms), which the conversion below has read before write() returns
        if any(self._pad):
            cv2.copyMakeBorder(image, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_REPLICATE, dst=self._picture)
        else:
            np.copyto(self._picture, image)
        frame = av.VideoFrame.from_numpy_buffer(self._picture, format="rgb24")
        frame = frame.reformat(
            format="yuv420p",
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
            dst_color_trc=ColorTrc.BT709,
            dst_color_primaries=ColorPrimaries.BT709,
        )
        # a stop request waits until the encoder's packets are in the file: one raised between encode() and
        # mux() lost them, and with the first (the key frame) the whole video, where no frame then decodes
        with interrupts_deferred():
            frame.pts = self._next_pts(timestamp)
            frame.time_base = self._tick
            packets = self._stream.encode(frame)
            if self._first_dts is None and packets:
                self._first_dts = packets[0].dts
            self._container.mux(packets)
            self.frames_written += 1

    def _next_pts(self, timestamp: float | None) -> int:
        """The frame's pts in ticks: its source time from the first timestamped frame, or one
        nominal frame after the previous frame; always after the previous frame."""
        step = round(1 / (self._tick * self.fps))  # ticks per nominal frame
        nominal = self._last_pts + step if self._last_pts >= 0 else 0
        if not self._timed or timestamp is None or not np.isfinite(timestamp):
            pts = nominal
        else:
            if self._t0 is None:
                self._t0 = float(timestamp) - float(nominal * self._tick)
            pts = round((float(timestamp) - self._t0) / float(self._tick))
            grid = round(pts / step) * step
            if abs(float(grid * self._tick) - (float(timestamp) - self._t0)) <= _CLOCK_ROUNDING_S:
                pts = grid  # a constant-rate frame on a millisecond clock: on its grid, as it was recorded
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def _lasts_to_the_end(self, last: Any) -> None:
        """Give the encoder's ``last`` packet (the last in decode order) the length that makes the frames' lengths
        add up to the video's: to one nominal frame past the last frame's time. mp4 and mov time each frame by the
        step to the next frame's decode time, and the last one by its packet's length; an H.264 encoder with
        B-frames spaces the decode times of a variable-rate video's last frames by one nominal frame, whatever
        their times, so the frames' lengths (FFmpeg's duration of the video, ffprobe's, mpv's) fell short of the
        video by as much as its last frames were late: a screen recording or a stream whose last frame came 2 s
        after the one before said 1.7 s, its last frame at 3.67 s. A constant-rate video's add up already."""
        if self._fmt not in ("mp4", "mov") or self._first_dts is None or last.dts is None or not last.time_base:
            return
        step = round(1 / (self._tick * self.fps))  # ticks per nominal frame
        end = (self._last_pts + step) * self._tick  # seconds: the first frame is at 0
        length = round((end - (last.dts - self._first_dts) * last.time_base) / last.time_base)
        last.duration = max(last.duration or 0, length)

    def close(self) -> Path | None:
        """Flush, finalise and move the file into place. Returns its path, or None if no frames."""
        if self._closed:
            return self.path if self.frames_written and not self._dropped else None
        self._closed = True
        # Ctrl-C and SIGTERM wait until the file is in place: one landing in the flush or the trailer
        # (a second Ctrl-C while a 4K clip's encoder drains, ~1 s) would otherwise remove the whole
        # video. The audio remux, the one step that can take long, gives up when one is waiting.
        with interrupts_deferred() as stop_waiting:
            try:
                drained = self._stream.encode(None)  # drain B-frames / lookahead
                if drained:
                    if self._first_dts is None:  # a short video: the encoder held every packet until now
                        self._first_dts = drained[0].dts
                    self._lasts_to_the_end(drained[-1])
                self._container.mux(drained)
                self._container.close()
            except BaseException as e:
                self._abort(e)
                raise
            if not self.frames_written:
                log.warning("%s: no frames were written; not creating the file", self.path)
                self._abort(RuntimeError("empty video"))
                return None
            full_disk: OSError | None = None
            try:
                if self._audio_from is not None:
                    self._add_audio(self._audio_from, stop=stop_waiting)
            except OSError as e:
                full_disk = e if e.errno in FULL_DISK_ERRNOS else None
                raise
            finally:  # whatever else became of the audio, the video is complete: keep it
                if full_disk is None:
                    self._atomic.__exit__(None, None, None)
                    if self.path != self._named:  # the lines said so far named the file it gave way to
                        log.warning("%s: another process wrote a file of that name while this video was written; "
                                    "the video is %s", self._named, self.path)
                else:  # as a full disk in the trailer: the run ends (exit 2) and no file is left
                    self._abort(full_disk)
        return self.path

    def _add_audio(self, source: str | os.PathLike[str], *, stop: Callable[[], bool] = lambda: False) -> None:
        """Remux the finished (silent) video with ``source``'s audio, replacing it only when that
        succeeds: audio trouble of any kind leaves the silent video and a warning, and so does a stop
        request (``stop()`` true, checked at every video packet: the run is ending). A full disk is not
        audio trouble: it is raised, as a full disk anywhere else in the run is (exit 2); a silent video
        and exit 0 hid it until the next write, or for good.

        The video is complete before audio is touched, so a codec the container refuses, an encoder
        that does not open or a damaged audio track cannot cost a frame. Nor can one track cost the
        others: a track that fails (one that cannot be read, refused by the container both as it is and
        as AAC, or undecodable) is left out and the remux is done again with the rest; one warning names
        the tracks left out and why. A copied track that fails is first tried again re-encoded to AAC, and
        so are all copied tracks where the output refuses a packet without naming its track (out of its
        interleaving queue, or in its trailer: a packet that the track's probe took); one warning names
        them. The remux copies the H.264 packets (no re-encoding) and is
        interleaved by time; it reads and writes the compressed video once more (well under a second for
        minutes of 720p). ``source`` may be an http(s) URL of a file (:func:`audio_source`): it is read
        again from its start, and only if it still serves what it served when the writer was made."""
        shown = _shown(source)  # a URL's password is in no log line
        if stop():  # not even a server that may take its time to answer
            log.warning("%s: stopped before the audio of %s was added; the video is silent", self.path, shown)
            return
        stamp = _source_stamp(source)
        if stamp is None and self._audio_stamp is None and is_url(source):
            log.warning("%s: %s could not be read again from its start, so its audio was not added; the video is "
                        "silent", self.path, shown)
            return
        if stamp != self._audio_stamp:  # moved, deleted, replaced or re-linked (a URL: serves another file)
            log.warning("%s: %s changed during the run, so its audio was not added; the video is silent",
                        self.path, shown)
            return
        left_out: dict[int, str] = {}  # track number -> why it is not in the video
        redone: dict[int, str] = {}  # track number -> why it is re-encoded, not copied as it is
        added: list[_AudioCopy] = []
        while True:
            tracks = _AudioCopy.open(source, self._fmt, left_out, redone)
            try:
                if tracks:  # none: no audio (most clips), nothing to remux
                    self._remux(tracks, stop)
                    added = tracks
                break
            except _TrackFailed as e:  # copied, it is tried again re-encoded, else it goes; all are remuxed again
                failed = f"{e.track.name}, {_reason(e.error)}"
                (redone if e.track.copied and e.track.index not in redone else left_out)[e.track.index] = failed
            except (av.error.FFmpegError, OSError, ValueError, TypeError) as e:
                if isinstance(e, OSError) and e.errno in FULL_DISK_ERRNOS:
                    raise
                # refused where no track is named (the output's interleaving queue, its trailer): a packet
                # copied as it is that the track's probe took (mp4 reads an AC-3 track's parameters from its
                # first packet, and refuses an E-AC-3 packet at the next): the copied tracks are re-encoded
                copied = [audio for audio in tracks if audio.copied and audio.index not in redone]
                if copied:
                    redone.update((audio.index, f"{audio.name}, {_reason(e)}") for audio in copied)
                    continue
                log.warning("%s: the audio of %s (%s) could not be added (%s); the video is silent", self.path,
                            shown, ", ".join(audio.codec for audio in tracks), _reason(e))
                return
            except _Stopped:
                log.warning("%s: stopped before the audio of %s was added; the video is silent", self.path, shown)
                return
            finally:
                for audio in tracks:
                    audio.close()
        kept = {audio.index for audio in added}
        if kept & redone.keys():  # once, for every track: "track 1 (eac3, eng), Invalid data found ..."
            log.warning("%s: audio of %s re-encoded to AAC, the output refused it as it is: %s", self.path, shown,
                        "; ".join(redone[k] for k in sorted(kept & redone.keys())))
        damaged = [f"{audio.name}: {audio.skipped} of {audio.kept + audio.skipped}"
                   f"{f', {audio.gaps} left as a gap' if audio.gaps else ''}" for audio in added if audio.skipped]
        if damaged:  # once, for every track: "track 1 (mp2, eng): 1 of 41"
            log.warning("%s: damaged audio packets of %s were dropped, silence in their place: %s", self.path, shown,
                        "; ".join(damaged))
        if left_out:  # once, for every track left out: "track 2 (mp2, fra), Invalid data found ..."
            log.warning("%s: audio of %s left out: %s; %s", self.path, shown,
                        "; ".join(left_out[k] for k in sorted(left_out)),
                        "the video has " + ", ".join(audio.name for audio in added) if added else
                        "the video is silent")

    def _remux(self, tracks: list[_AudioCopy], stop: Callable[[], bool]) -> None:
        """The video with ``tracks`` in place of the silent one (see :meth:`_add_audio`). What a track
        alone causes (its stream refused, its packets undecodable) raises :class:`_TrackFailed`. The video with
        its audio is written as the silent one is (:func:`~pvt_deploy.utils.files.atomic_path`, which replaces
        it once done): a run killed meanwhile leaves a temporary file that the next run into the folder removes
        (``.clip.mp4.x1y2.part.audio.mp4`` was no name of one, and stayed, hidden, as large as the video)."""
        with atomic_path(self._tmp) as mixed, av.open(str(self._tmp)) as silent, av.open(
            str(mixed), "w", format=self._fmt, container_options=_muxer_options(self._fmt)
        ) as out:
            video_in = silent.streams.video[0]
            video_out = out.add_stream_from_template(video_in)
            for audio in tracks:
                with audio.blamed():
                    audio.add_to(out)
            origin = self._t0 if self._t0 is not None else 0.0
            for packet in silent.demux(video_in):
                if stop():
                    raise _Stopped
                if packet.size == 0:
                    continue
                when = packet.dts if packet.dts is not None else packet.pts
                if when is not None and packet.time_base:
                    for audio in tracks:
                        with audio.blamed():
                            audio.copy_until(out, origin, float(when * packet.time_base))
                packet.stream = video_out
                out.mux(packet)
            end = float((self._last_pts + 1) * self._tick) + 1 / float(self.fps)
            for audio in tracks:
                with audio.blamed():
                    audio.copy_until(out, origin, end, last=True)

    def discard(self) -> None:
        """Drop the video being written, leaving no file (after a write failed: a full disk cannot
        take the trailer that would make it playable). No effect once closed."""
        if not self._closed:
            self._abort(RuntimeError("discarded"))

    def _abort(self, error: BaseException) -> None:
        """Drop the temporary file (``atomic_path`` removes it when it sees an exception)."""
        self._closed = self._dropped = True
        container = getattr(self, "_container", None)
        if container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
                container.close()
        self._atomic.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            log.warning("%s: %s; keeping the frames written", self.path, stop_reason(exc))
        self.close()


class _Nowhere(io.RawIOBase):
    """A seekable file that keeps nothing (a muxer's writes are counted, not stored): what a
    :class:`_MuxerProbe` writes costs no memory however long the track."""

    def __init__(self) -> None:
        super().__init__()
        self._at = self._end = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self._at += size
        self._end = max(self._end, self._at)
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._at = offset + (0 if whence == io.SEEK_SET else self._at if whence == io.SEEK_CUR else self._end)
        return self._at

    def tell(self) -> int:
        return self._at


class _MuxerProbe:
    """A ``fmt`` muxer that writes nowhere (:class:`_Nowhere`), holding a copy of one stream, to which each
    packet of that stream goes before it goes to the real output: what it refuses, the output would. Made for
    a track, it says whether the muxer takes the track as it is (it raises if not); fed each packet, it says
    whether the muxer takes that packet, at that packet. The real output, which holds every track, refuses a
    packet only when it writes it out of its interleaving queue, at a later packet of any track or at its end
    (mp4 and mov read every AC-3 and E-AC-3 packet's header there): met so, the error named no packet, and
    the whole audio was lost. Holding one stream, the probe writes each packet as it comes. It sees what the
    output sees (and the packets it refused), but for a frame of silence before the first (mp4 drops damaged
    AC-3 packets at the start of a track without an error, and refuses them after: see
    ``_AudioCopy._prime``). It costs about 5 µs a packet (0.1 s for 10 minutes of AC-3) and no memory for
    the packets (a BytesIO would hold the whole track)."""

    def __init__(self, fmt: str, stream: Any) -> None:
        self._out = av.open(_Nowhere(), "w", format=fmt)
        try:
            self._stream = self._out.add_stream_from_template(stream)
            self._out.start_encoding()
        except BaseException:
            self.close()
            raise

    def mux(self, packet: Any) -> None:
        """Mux ``packet`` here, in its times: raises what the output would raise for it. The caller sets its
        ``stream`` again before it goes to the output."""
        packet.stream = self._stream
        self._out.mux(packet)

    def close(self) -> None:
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):  # its trailer is nobody's
            self._out.close()


# ISO 639-2 languages with two codes, bibliographic (B) and terminological (T): Matroska and mp4 keep either,
# mov only the one its table of Macintosh languages lists, which is B for most (ger, not deu) but T for some
# (fra, not fre); it writes no language for the other.
_ISO639_B_T = dict(pair for b_t in (
    ("alb", "sqi"), ("arm", "hye"), ("baq", "eus"), ("bur", "mya"), ("chi", "zho"), ("cze", "ces"), ("dut", "nld"),
    ("fre", "fra"), ("geo", "kat"), ("ger", "deu"), ("gre", "ell"), ("ice", "isl"), ("mac", "mkd"), ("mao", "mri"),
    ("may", "msa"), ("per", "fas"), ("rum", "ron"), ("slo", "slk"), ("tib", "bod"), ("wel", "cym"),
) for pair in (b_t, b_t[::-1]))


@functools.cache
def _mov_keeps_language(code: str) -> bool:
    """Whether the mov muxer writes ``code`` as a track's language: asked of one that writes to memory."""
    try:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mov") as probe:
            stream = probe.add_stream("pcm_s16be", rate=8000)
            stream.codec_context.layout = "mono"
            stream.metadata["language"] = code
            packet = av.Packet(bytes(16))
            packet.stream, packet.time_base, packet.pts, packet.dts, packet.duration = stream, Fraction(1, 8000), 0, 0, 8
            probe.mux(packet)
        with av.open(io.BytesIO(buffer.getvalue())) as back:
            return bool(back.streams.audio[0].metadata.get("language") == code)
    except (av.error.FFmpegError, ValueError, TypeError, OSError, IndexError):
        return False


def _language_for(fmt: str, code: str) -> str:
    """``code`` as a ``fmt`` container keeps it: in mov, the other ISO 639-2 code of the language where mov
    keeps only that one (deu as ger, fre as fra); elsewhere, and for a code with no other, as it is."""
    other = _ISO639_B_T.get(code.lower())
    if fmt != "mov" or other is None or _mov_keeps_language(code):
        return code
    return other if _mov_keeps_language(other) else code


def _refusal(refused: Sequence[tuple[str, str]], size: str) -> str:
    """What the encoders ``refused`` ((name, why) each, in the order tried) said of frames of ``size``, in words."""
    if len(refused) == 1:
        return f"the {refused[0][0]} encoder cannot be opened for frames of {size} ({refused[0][1]})"
    names = ", ".join(name for name, _ in refused[:-1]) + f" and {refused[-1][0]}"
    reasons = "; ".join(f"{name}: {why}" for name, why in refused)
    return f"the {names} encoders cannot be opened for frames of {size} ({reasons})"


def _reason(error: BaseException) -> str:
    """What went wrong, without the name of the file it went wrong in (PyAV's errors end in
    ``: '/…/.clip.mp4.x1y2.part.audio.mp4' returned 22``, a file the user never sees, or in the URL the
    audio is read from, password and all)."""
    return _short(error)


class _AudioCopy:
    """An audio track of a video file, carried into a :class:`VideoWriter`'s container.

    Packets are copied as they are (no re-encoding) when the output container holds the codec (in mp4
    and mov, one of those players read there) and its muxer takes the track (a :class:`_MuxerProbe` made for
    it), and re-encoded to AAC otherwise (e.g. Vorbis or PCM into mp4, Opus into mov). A packet that does not
    decode (a bit flip in a long recording) costs only itself: it is silence of its length, so what follows
    stays in step, and counted (:attr:`skipped`). A copied packet is never decoded: damage passes through as
    it is, for players to handle as they do in the source, but one the output refuses (mp4 and mov read the
    header of each AC-3 and E-AC-3 packet, a bitstream filter that of ADTS AAC from MPEG-TS; every muxer
    refuses a packet timed before the one before), found at that packet by the track's probe
    (:meth:`_carry`), is dropped and counted, and silence stands in for it where the codec's frames stand
    alone (:meth:`_silence`: AC-3, E-AC-3, MP2, MP3), else it leaves a gap (:attr:`gaps`). The track keeps
    one clock where the source's restarts (:meth:`_one_clock`: files joined into one), the frames' one: each
    recording's sound takes the shift of its own frames, and silence fills what it lacks up to the next one,
    so a track whose codec has no frame of silence (AAC) is re-encoded where the video has joins (``joins``,
    :func:`~pvt_deploy.io.sources.video_joins`), copied where it has none. A track with more than
    :attr:`_MOST_SKIPPED` of its packets so is left out. Times follow the video: the source
    time of the output's first frame (relative to the source's video stream, as the sources report
    timestamps) is the output's zero; audio that ends before it is dropped, and audio is written up
    to each video packet in turn (``copy_until``), so the file is interleaved, memory stays flat,
    and a run cut short (Ctrl-C, a truncated clip) has audio up to its last frame.
    """

    _MP4_COPY = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})
    _SELF_DESCRIBED = frozenset({"ac3", "eac3", "mp2", "mp3"})  # a sync word, rate and channels in every frame
    _MOST_SKIPPED = 0.1  # share of a re-encoded track's packets that may fail to decode
    _AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})

    def __init__(self, source: str, container: Any, fmt: str, track: int = 0, *, copy: bool = True,
                 joins: Sequence[Join] = ()) -> None:
        self.source = source
        self.index = track
        self._fmt = fmt
        self._in = container
        self._stream = container.streams.audio[track]
        if self._stream.codec_context is None:  # PyAV's None, met as "'NoneType' object has no attribute 'codec'"
            raise ValueError("its codec is not one FFmpeg knows")
        video = container.streams.video[0] if container.streams.video else None
        self._video_start = 0.0  # the source's video start: its frames' timestamps count from it
        if video is not None and video.start_time is not None and video.time_base is not None:
            self._video_start = float(video.start_time * video.time_base)
        self.codec: str = self._stream.codec_context.codec.canonical_name  # "mp3", where the decoder is "mp3float"
        language = self._stream.metadata.get("language")
        self.name = f"track {track + 1} ({self.codec}{f', {language}' if language else ''})"
        self._jumpy = bool(container.format.flags & _AVFMT_TS_DISCONT)  # its clock may jump ahead (MPEG-TS, FLV)
        self._joins = joins  # where the video's clock restarts (video_joins): the track's restarts follow them
        self._taken = -1  # the last of them a restart of the track's was matched to (_join_at)
        self._starts: collections.deque[float] = collections.deque()  # where each recording's sound starts
        self._fillers: set[int] = set()  # ids of the frames of silence between recordings (not source packets)
        self._trim = 0  # samples to drop from the next re-encoded ones: a recording's sound that starts early
        self._items = self._read(self._one_clock(container.demux(self._stream)))
        self._pending: Any = None  # the next source packet (copy) or frame (re-encode) not yet written
        self.kept = self.skipped = 0  # source packets carried over (decoded, or copied), and damaged ones dropped
        self.gaps = 0  # of the ``skipped`` copied packets, those no silence stands in for
        self._quiet: tuple[bytes, int] | None = None  # a copied track's frame of silence and its length, in samples
        self._quiet_made = False
        self._primed = False  # whether the probe has been given its frame before the first packet (_prime)
        # copied where the container takes it as it is (mov refuses Opus and FLAC, Matroska A-law PCM),
        # else re-encoded
        self._probe: _MuxerProbe | None = None
        if copy and (fmt == "matroska" or self.codec in self._MP4_COPY):
            with contextlib.suppress(av.error.FFmpegError, ValueError, TypeError, OSError):
                self._probe = _MuxerProbe(fmt, self._stream)
        if self._probe is not None and joins and self._quiet_frame() is None:
            # recordings joined into one file: where one's sound ends before its frames, copied with no frame
            # of silence in its codec (AAC) it would leave a gap, which players that play a track's frames
            # back to back close, playing the later sound early; re-encoded, silence fills it to the sample
            self._probe.close()
            self._probe = None
        self._copy = self._probe is not None
        # copied, the codec's delay (Matroska's CodecDelay: AAC's 1024 samples of priming), which the output
        # declares as the source does and a decoder skips at the start: the packets it covers before the first
        # frame stay (copy_until)
        rate = self._stream.codec_context.sample_rate
        self._lead = self._stream.codec_context.delay / rate if self._copy and rate else 0.0
        self._filled = 0  # ``skipped`` when silence last stood in for them
        self._why: BaseException | None = None  # the last decoding error

    @classmethod
    def open(cls, source: str | os.PathLike[str], fmt: str, left_out: dict[int, str],
             redone: Container[int] = ()) -> list[_AudioCopy]:
        """The audio tracks of ``source``, each read through a demuxer of its own (so each is written up
        to the video's time without holding another's packets), but those in ``left_out``; none for no
        audio, a file PyAV does not read, or an AVI output (which takes no variable-rate audio here). A
        track that cannot be read is added to ``left_out``, with why: it does not cost the others. Those
        in ``redone`` are re-encoded, where they could be copied, and so are those whose codec has no frame of
        silence where the video's clock restarts (recordings joined: see the class)."""
        if fmt == "avi":
            return []
        tracks: list[_AudioCopy] = []
        joins: list[Join] | None = None  # where the video's clock restarts, read once for every track
        for track in itertools.count():
            try:
                container = _open_input(source)
            except (av.error.FFmpegError, OSError, ValueError):
                break
            if track >= len(container.streams.audio):
                container.close()
                break
            if track in left_out:
                container.close()
                continue
            if joins is None:  # only a format whose files can be joined byte by byte (MPEG-TS, MPEG-PS: its
                # clock may jump) holds recordings one after another; asked of another (mp4, mov, Matroska),
                # a second read of the whole video, a second download of an http(s) source, would be for nothing
                joins = cls._video_joins(source) if container.format.flags & _AVFMT_TS_DISCONT else []
            try:
                tracks.append(cls(str(source), container, fmt, track, copy=track not in redone, joins=joins))
            except (av.error.FFmpegError, ValueError, OSError, TypeError, AttributeError) as e:  # e.g. an unknown codec
                left_out[track] = f"track {track + 1}, cannot be read ({_reason(e)})"
                container.close()
        return tracks

    @staticmethod
    def _video_joins(source: str | os.PathLike[str]) -> list[Join]:
        """Where the clock of ``source``'s video restarts (:func:`~pvt_deploy.io.sources.video_joins`), read
        from its packets by a demuxer of its own; none where it cannot be read."""
        try:
            container = _open_input(source)
        except (av.error.FFmpegError, OSError, ValueError):
            return []
        try:
            return video_joins(container)
        finally:
            container.close()

    @property
    def copied(self) -> bool:
        """Whether the track's packets are copied as they are (else re-encoded to AAC)."""
        return self._copy

    @contextlib.contextmanager
    def blamed(self) -> Iterator[None]:
        """What fails in the block is this track's (:class:`_TrackFailed`), but a full disk."""
        try:
            yield
        except (av.error.FFmpegError, OSError, ValueError, TypeError) as e:
            if isinstance(e, OSError) and e.errno in FULL_DISK_ERRNOS:
                raise
            raise _TrackFailed(self, e) from e

    def add_to(self, out: Any) -> None:
        """The output stream in ``out``: a copy of the track, or an AAC encoder (and the resampler
        that feeds it) at the track's rate where AAC takes it, else 48 kHz; with the track's language
        and title, which tell two tracks apart (a language as the container keeps it: :func:`_language_for`)."""
        if self._copy:
            self._out = out.add_stream_from_template(self._stream)
        else:
            ctx = self._stream.codec_context
            rate = int(ctx.sample_rate or 48000)
            self._rate = rate if rate in self._AAC_RATES else 48000  # e.g. 192 kHz PCM is resampled
            self._out = out.add_stream("aac", rate=self._rate)
            layout = "mono" if ctx.channels == 1 else "stereo"
            self._out.codec_context.layout = layout
            self._layout, self._channels = layout, 1 if layout == "mono" else 2
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=self._rate)
            self._samples: int | None = None  # next output pts, in samples
        if self._stream.metadata.get("title"):
            self._out.metadata["title"] = self._stream.metadata["title"]
        if self._stream.metadata.get("language"):  # mov keeps one of a language's two codes (ger, not deu)
            self._out.metadata["language"] = _language_for(self._fmt, self._stream.metadata["language"])

    def copy_until(self, out: Any, origin: float, end: float, *, last: bool = False) -> None:
        """Write everything whose output time (source time - ``origin``) is before ``end`` seconds;
        with ``last``, also drain the re-encoder."""
        shift = self._video_start + origin  # source time of the output's zero
        while True:
            if self._pending is None:
                self._pending = next(self._items, None)
                if self._pending is None:
                    break
            item = self._pending
            t = float(item.pts * item.time_base) - shift if item.pts is not None and item.time_base else None
            if t is not None and t >= end:
                break
            self._pending = None
            lead = self._lead  # how long before the first frame a packet is still needed
            if self._copy:
                length = float(item.duration * item.time_base) if item.duration else 0.0
            else:  # a decoded frame's length is its samples: one that starts with the video is kept
                length = item.samples / item.sample_rate if item.sample_rate else 0.0
            if t is None or (t + length <= -lead if length else t < -lead):
                # untimed, or over before the first frame (a packet across it is kept whole; one of unknown
                # length, as ALAC and WavPack come from Matroska, is kept from the first frame on), and, copied,
                # before the codec's delay
                continue
            if self._copy:
                delta = round(shift / item.time_base)
                item.pts -= delta
                if item.dts is not None:
                    item.dts -= delta
                self._carry(out, item)
                continue
            joined = False  # the first frame of a recording joined after the first: it starts at its own time
            while self._starts and t + shift >= self._starts[0] - 1e-3:
                self._starts.popleft()
                joined = True
            if self._samples is None:
                self._samples, self._filled = round(t * self._rate), self.skipped
            elif self.skipped > self._filled or joined:  # silence where the undecodable packets were, or
                self._filled = self.skipped  # where the recording before ended before its frames: the rest keeps step
                gap = round(t * self._rate) - self._samples
                self._trim = max(0, -gap) if joined else 0  # it starts before the sound before ends: its start goes
                if gap > 0:
                    silence = av.AudioFrame.from_ndarray(np.zeros((self._channels, gap), np.float32), format="fltp",
                                                         layout=self._layout)
                    silence.sample_rate, silence.pts, silence.time_base = self._rate, self._samples, Fraction(1, self._rate)
                    self._samples += gap
                    out.mux(self._out.encode(silence))
            for frame in self._resampler.resample(item):
                if self._trim:
                    cut, self._trim = min(self._trim, frame.samples), self._trim - min(self._trim, frame.samples)
                    if cut == frame.samples:
                        continue
                    rest = np.ascontiguousarray(frame.to_ndarray()[:, cut:], dtype=np.float32)
                    frame = av.AudioFrame.from_ndarray(rest, format="fltp", layout=self._layout)
                    frame.sample_rate = self._rate
                frame.pts, frame.time_base = self._samples, Fraction(1, self._rate)
                self._samples += frame.samples
                out.mux(self._out.encode(frame))
        if last and self.skipped > self._MOST_SKIPPED * (self.kept + self.skipped):
            raise ValueError(f"{self.skipped} of {self.kept + self.skipped} packets are damaged "
                             f"({_reason(self._why or ValueError('?'))})")
        if last and not self._copy:
            out.mux(self._out.encode(None))

    def _carry(self, out: Any, packet: Any) -> None:
        """Copy ``packet`` (in output times) into ``out``, by way of the track's probe: what the probe refuses,
        the output would refuse only later, for every track. Refused (damaged, as the muxer or a bitstream
        filter reads it, or timed before the packet before), it alone is dropped and counted, and silence of
        its length takes its place where it has one and the codec has silence (:meth:`_silence`), else it
        leaves a gap. Before the first packet the probe is given a frame of silence (:meth:`_prime`): mp4
        drops a damaged AC-3 or E-AC-3 packet that starts a track without an error, and refuses one after."""
        assert self._probe is not None
        if not self._primed:
            self._primed = True
            self._prime(packet)
        try:
            self._probe.mux(packet)
        except (av.error.InvalidDataError, av.error.ArgumentError) as e:
            self._fillers.discard(id(packet))
            self.skipped, self._why = self.skipped + 1, e
            # refused for its data, it has a place that silence can take; refused for its time, it has none
            quiet = self._silence(packet) if isinstance(e, av.error.InvalidDataError) else None
            if quiet is None:
                self.gaps += 1
                return
            packet = quiet
        else:
            if id(packet) in self._fillers:  # silence between recordings, not a source packet
                self._fillers.discard(id(packet))
            else:
                self.kept += 1
        packet.stream = self._out
        out.mux(packet)

    def _prime(self, first: Any) -> None:
        """Give the probe a frame of silence that ends where ``first`` starts, where the codec has one
        (:meth:`_silence`): a muxer that lets a damaged packet pass unseen at a track's start (mp4, of AC-3)
        then refuses it there as it would anywhere else, so that the track starts with silence and the packet
        is counted. The output never sees this frame."""
        quiet = self._quiet_frame()
        if quiet is None or first.dts is None or not first.time_base:
            return
        assert self._probe is not None
        length = round(Fraction(quiet[1], self._stream.codec_context.sample_rate) / first.time_base)
        packet = av.Packet(quiet[0])
        packet.pts = packet.dts = first.dts - length
        packet.duration, packet.time_base = length, first.time_base
        with contextlib.suppress(av.error.FFmpegError):
            self._probe.mux(packet)

    def _one_clock(self, packets: Iterator[Any]) -> Iterator[Any]:
        """The track's ``packets`` on one clock, the frames' (:func:`~pvt_deploy.io.sources.video_joins`, the
        rule of :func:`~pvt_deploy.io.sources.clock_restarted`): where the clock restarts, going back more than
        0.1 s (recordings joined into one MPEG-TS) or, in a format whose clock may jump (MPEG-TS, FLV), ahead
        more than 10 s (the second recorded later), the sound after the restart takes the shift of the frames
        after the video's restart at that place in the file (the nearest in bytes whose time agrees), so each
        recording's sound plays with its own frames, as it did in the recording: a recording's sound that
        outlasts its frames is cut where the next recording starts (:meth:`_recording`), one that ends before
        them is followed by silence up to the next one's sound (copied, in frames of silence of the track's
        codec, :meth:`_quiet_frame`; one whose codec has none, AAC, is re-encoded where the video has joins,
        see ``__init__``; re-encoded, in :meth:`copy_until`). A
        restart the video does not share (no video, or none there) carries on from the packet before. Going
        back, a copied track was refused at that packet and left out whole; going ahead, all after the jump
        was past the video's end, and lost unsaid. A restart is a clock the next packet follows on; a packet
        off the clock alone (a damaged time) is dropped and counted, as a damaged packet is: the first packet
        too, which is given only once the next is on its clock. A smaller step back is left to the probe,
        which refuses it (:meth:`_carry`)."""
        shift = 0.0  # seconds added to the source's times, for the restarts so far
        end: float | None = None  # where the last packet given ends, on the one clock
        held: tuple[Any, float, float] | None = None  # a packet off the clock, with its time and length
        lead: tuple[Any, float, float] | None = None  # the first timed packet, until the next says whether its
        # clock is the track's
        recording = self._recording()
        next(recording)

        def lone() -> None:  # a packet whose time alone was off: it goes, counted
            self.skipped, self._why = self.skipped + 1, ValueError("a time off the track's clock")
            self.gaps += self._copy

        def off(t: float) -> bool:
            return end is not None and clock_restarted(t, end, jumpy=self._jumpy)

        for item in packets:
            t, length = self._timing(item)
            if t is None:
                if lead is not None:  # kept: nothing says its clock is off
                    yield from recording.send(lead)
                    lead = None
                yield item
                continue
            t += shift
            if end is None:  # the first timed packet
                lead, end = (item, t, length), t + length
                continue
            if lead is not None:  # the first packet's clock is the track's if this one follows it
                if off(t):
                    lone()
                    end = None
                else:
                    yield from recording.send(lead)
                lead = None
            if held is not None:
                first, start, span = held
                held = None
                if abs(t - (start + span)) <= 0.1 and off(t):  # the clock restarted at the held packet
                    assert end is not None
                    join = self._join_at(start - shift, first.pos)
                    moved = (join.shift if join is not None else shift + end - start) - shift
                    shift, t, start = shift + moved, t + moved, start + moved
                    self._move(first, shift)
                    end = start + span
                    yield from recording.send((first, start, span, join))
                else:  # the held packet's time alone was off
                    lone()
            if off(t):
                held = (item, t, length)
                continue
            self._move(item, shift)
            end = t + length
            yield from recording.send((item, t, length))
        if lead is not None:  # the track's one timed packet
            yield from recording.send(lead)
        if held is not None:  # the last packet: a restart or not, it is one packet
            lone()
        yield from recording.send(None)

    _TAIL_S = 10.0  # the most sound past the next recording's start that is held to be cut there

    def _join_at(self, t: float, pos: int | None) -> Join | None:
        """The video's restart (``self._joins``) where the track's clock restarted at a packet of source time
        ``t`` and byte position ``pos``: of those after the last one taken whose first frame's time is within
        1 s of ``t``, the nearest in the file (the first, where positions are unknown); None if there is none."""
        taken = self._taken
        near = [k for k in range(taken + 1, len(self._joins)) if abs(self._joins[k].time - t) <= 1.0]
        if not near:
            return None
        if pos is not None and pos >= 0 and all(self._joins[k].pos is not None for k in near):
            near.sort(key=lambda k: abs(cast(int, self._joins[k].pos) - pos))
        self._taken = near[0]
        return self._joins[near[0]]

    def _recording(self) -> Generator[list[Any], Any, None]:
        """Packets on the one clock, sent as ``(packet, time, length)`` (``(..., join)`` for the first after a
        restart of the video's, ``None`` at the end), placed as the recording they belong to plays: each send
        answers with the packets to give. Where the next recording starts (the video's next restart), the
        sound before it ends: packets that would play more than half past it (back to back, as players play
        a track) are held (:attr:`_TAIL_S` at most, past that the sound did not end there) and dropped when
        the track restarts there. A recording's sound starts where its packets say: those that would play
        more than half before the sound before ends go, a gap before them is silence (copied: whole frames of
        the track's codec where it has them; re-encoded: :meth:`copy_until`, told by :attr:`_starts`)."""
        played: float | None = None  # where what was given ends, played back to back
        last: float | None = None  # where the last packet given starts
        tail: list[Any] = []  # packets past the next recording's start, until the track restarts there or not
        fresh = False  # the start of a recording after a restart of the video's
        passed = -1  # the last of the video's restarts that the sound went on past (none was its end)
        give: list[Any] = []
        while True:
            sent = yield give
            give = []
            if sent is None:
                give.extend(tail)
                continue
            item, t, length, *joined = sent
            if joined:
                if joined[0] is None:  # a restart of the track's alone: what was held is not past an end
                    give.extend(tail)
                else:
                    fresh = True
                tail = []
            if fresh and played is not None and last is not None:
                if t + length / 2 <= played or t <= last:  # it would play more than half before the sound before
                    continue  # ends (or before the packet before starts: no muxer takes it)
                fresh = False
                if not self._copy:
                    self._starts.append(t)
                elif (fill := self._fill(item, played, t)) is None:  # no silence of its codec (re-encoded, if
                    # __init__ knew), or the packet has no time base: a gap
                    played = max(played, t)
                else:
                    give.extend(fill)
                    played += sum(float(quiet.duration * quiet.time_base) for quiet in fill)
            else:
                fresh = False
            cut = max(self._taken, passed) + 1  # the next recording's start: the video's restart
            nxt = self._joins[cut].start if cut < len(self._joins) else None
            if nxt is not None and (t if played is None else played) + length / 2 > nxt:
                if not tail or t - nxt <= self._TAIL_S:
                    tail.append(item)
                    continue
                passed = cut  # the sound went on past it: not a recording's end
            give.extend(tail)
            tail = []
            give.append(item)
            played = t + length if played is None or not length else played + length
            last = t

    def _fill(self, packet: Any, played: float, t: float) -> list[Any] | None:
        """Frames of silence of the copied track's codec (:meth:`_quiet_frame`) from ``played`` to about ``t``
        (to the nearest frame), where ``packet``, at ``t``, starts a recording after a gap; None where the
        codec has none."""
        quiet = self._quiet_frame()
        if quiet is None or not packet.time_base:
            return None
        rate = self._stream.codec_context.sample_rate
        frame = quiet[1] / rate
        fill = []
        for k in range(round((t - played) / frame)):
            silence = av.Packet(quiet[0])
            silence.time_base = packet.time_base
            silence.pts = silence.dts = round(Fraction(played + k * frame) / packet.time_base)
            silence.duration = round(Fraction(quiet[1], rate) / packet.time_base)
            self._fillers.add(id(silence))
            fill.append(silence)
        return fill

    @staticmethod
    def _timing(packet: Any) -> tuple[float | None, float]:
        """A packet's time in the source, in seconds (None if it has none), and its length (0 if unknown)."""
        if packet.pts is None or not packet.time_base:
            return None, 0.0
        return float(packet.pts * packet.time_base), float(packet.duration * packet.time_base)

    @staticmethod
    def _move(packet: Any, seconds: float) -> None:
        """Add ``seconds`` to ``packet``'s times."""
        if seconds:
            delta = round(Fraction(seconds) / packet.time_base)
            packet.pts += delta
            if packet.dts is not None:
                packet.dts += delta

    def _read(self, packets: Iterator[Any]) -> Iterator[Any]:
        """Source packets (copy) or decoded frames (re-encode), in order. A copied packet of unknown length
        (ALAC and WavPack from Matroska) is given the time to the next one, the last one its
        predecessor's: mp4 and mov take a track's length from its packets', and a length of 0 cut the
        last packet's sound off."""
        held, length = None, 0  # a copied packet waiting for the next one's time; the last length known
        for packet in packets:
            if packet.size == 0:  # the demuxer's end-of-stream packet
                continue
            if not self._copy:
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:  # this packet only: silence of its length (see copy_until)
                    self.skipped, self._why = self.skipped + 1, e
                    continue
                self.kept += 1
                yield from frames
                continue
            if held is not None:
                if not held.duration and held.pts is not None and packet.pts is not None and packet.pts > held.pts:
                    held.duration = packet.pts - held.pts
                length = held.duration or length
                yield held
            held = packet
        if held is not None:
            if not held.duration and length:
                held.duration = length
            yield held

    def _silence(self, damaged: Any) -> Any | None:
        """A packet of silence in the copied track's own codec, with the times of the ``damaged`` packet it
        stands for; None where there is none of its length (:meth:`_quiet_frame`)."""
        quiet = self._quiet_frame()
        if quiet is None or not damaged.duration or not damaged.time_base:
            return None
        if round(damaged.duration * damaged.time_base * self._stream.codec_context.sample_rate) != quiet[1]:
            return None
        packet = av.Packet(quiet[0])
        packet.pts, packet.dts, packet.duration, packet.time_base = (damaged.pts, damaged.dts, damaged.duration,
                                                                     damaged.time_base)
        return packet

    def _quiet_frame(self) -> tuple[bytes, int] | None:
        """A frame of silence in the copied track's own codec, and its length in samples; None where there
        is none. Silence, not a gap, as a track that is re-encoded has: players play a track's frames back
        to back, and the sound after a gap would come early by its length. Made only for a codec whose every
        frame says all a decoder needs (:attr:`_SELF_DESCRIBED`), so that this encoder's frame decodes in the
        source's stream; AAC, Opus, FLAC and ALAC describe theirs out of band (in mp4, ADTS AAC's headers
        too), which an encoder's frame need not match (HE-AAC, another profile). Encoded once per track, at
        the rate, channels and bit rate of the source, and kept only if the output's muxer takes it."""
        if not self._quiet_made:
            self._quiet_made = True
            ctx = self._stream.codec_context
            if self.codec in self._SELF_DESCRIBED and ctx.sample_rate:
                with contextlib.suppress(av.error.FFmpegError, ValueError, TypeError, OSError, AttributeError):
                    encoder = cast("av.audio.codeccontext.AudioCodecContext", av.CodecContext.create(self.codec, "w"))
                    encoder.sample_rate, encoder.layout = ctx.sample_rate, self._named_layout(ctx.layout)
                    formats = encoder.codec.audio_formats
                    if not formats:  # the encoder names no sample format: no frame of silence
                        return None
                    encoder.format = formats[0]
                    encoder.time_base = Fraction(1, ctx.sample_rate)
                    if ctx.bit_rate:
                        encoder.bit_rate = ctx.bit_rate
                    encoder.open()
                    if encoder.frame_size:
                        quiet = av.AudioFrame(format=encoder.format.name, layout=encoder.layout.name,
                                              samples=encoder.frame_size)
                        for plane in quiet.planes:
                            plane.update(bytes(plane.buffer_size))
                        quiet.sample_rate, quiet.pts, quiet.time_base = ctx.sample_rate, 0, encoder.time_base
                        packets = [*encoder.encode(quiet), *encoder.encode(None)]
                        self._quiet = bytes(packets[0]), encoder.frame_size
                        self._try_quiet()
        return self._quiet

    @staticmethod
    def _named_layout(layout: Any) -> Any:
        """``layout``, or where it is a channel count with no layout ('1 channels': the demuxer read the
        track's parameters from a damaged first packet), the layout FFmpeg gives that count (mono,
        stereo), which an encoder opens on; a frame says its own channels to a decoder."""
        if layout.nb_channels in (1, 2) and all(channel.name == "NONE" for channel in layout.channels):
            return "mono" if layout.nb_channels == 1 else "stereo"
        return layout

    def _try_quiet(self) -> None:
        """Keep the frame of silence only if the output's muxer takes it, asked of a probe of its own (the
        track's has taken the damaged packet's time): twice, since mp4 drops a damaged packet that starts a
        track but refuses one after."""
        assert self._quiet is not None
        probe, (data, samples) = _MuxerProbe(self._fmt, self._stream), self._quiet
        try:
            for k in range(2):
                packet = av.Packet(data)
                packet.pts = packet.dts = k * samples
                packet.duration, packet.time_base = samples, Fraction(1, self._stream.codec_context.sample_rate)
                probe.mux(packet)
        except av.error.FFmpegError:
            self._quiet = None
        finally:
            probe.close()

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            self._in.close()


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r"[^\w.\-]+", re.UNICODE)
_IMAGE_WRITE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def free_path(directory: str | os.PathLike[str], stem: str, suffix: str, taken: set[str]) -> Path:
    """``directory/<stem><suffix>``, or ``<stem>_1<suffix>``, ``<stem>_2<suffix>``...: the first name
    that is neither in ``taken`` (the names a run has already given out; the one returned is added)
    nor an existing file. Outputs so never replace a file that was there before the run: above all
    the inputs themselves when ``-o`` is their own folder (``photo.jpg`` -> ``photo_1.jpg``,
    ``clip.mp4`` -> ``clip_1.mp4``), or two ``photo.jpg`` of a glob from different folders. A file
    another process writes into the folder meanwhile (a second run into it) is not replaced either where
    the file is put in place by a rename that replaces nothing (:func:`write_new`, :class:`VideoWriter`'s
    ``next_name``), which takes the next free name then."""
    return free_paths(directory, [(stem, suffix)], taken)[0]


def free_paths(directory: str | os.PathLike[str], names: Sequence[tuple[str, str]], taken: set[str], *,
               partial: str = "") -> list[Path]:
    """:func:`free_path` for files that belong together (a run's ``predictions.jsonl`` and
    ``predictions_coco.json``): the first ``_N`` under which every ``<stem>_N<suffix>`` is free, so
    they share it. With ``partial``, a ``<name><partial>`` left by a killed writer also takes a name
    (its complete lines are worth keeping), and so does one that another run is writing; it is looked at
    before the name itself, which its writer renames it to. Each name costs a look at it, not a listing
    of the folder (22-60 ms a picture at 20,000 files, quadratic over an auto-labelling run). The first name
    asked for with an empty ``taken`` (a run's first in the folder) also removes the temporary files that
    killed runs left there (``kill -9`` of ``infer``, a crash in OpenCV or PyAV: up to gigabytes of video,
    hidden; :func:`~pvt_deploy.utils.files.remove_abandoned_temps`); they take no name."""
    from pvt_deploy.utils.files import remove_abandoned_temps

    folder = Path(directory)
    if not taken:
        remove_abandoned_temps(folder)
    n = 0
    while True:
        tail = f"_{n}" if n else ""
        candidates = [f"{stem}{tail}{suffix}" for stem, suffix in names]
        if not any(c in taken or (partial and os.path.lexists(folder / (c + partial))) or os.path.lexists(folder / c)
                   for c in candidates):
            taken.update(candidates)
            return [folder / c for c in candidates]
        n += 1


def write_new(directory: str | os.PathLike[str], stem: str, suffix: str, taken: set[str],
              data: bytes | memoryview) -> Path:
    """``data`` (an encoded picture) as a new file ``directory/<stem>[_N]<suffix>`` (:func:`free_path`), written
    atomically (without fsync: an fsync per frame would dominate on the SD cards of edge boxes) and put in place
    by a rename that replaces nothing: where another run into the folder took that name since it was chosen,
    the next free one. Returns the path written. Two runs that wrote ``photo.jpg`` into one folder at once each
    found the name free, and the later replaced the other's."""
    return write_named(data, lambda folder, s, x: free_path(folder, s, x, taken), directory, stem, suffix)


def write_named(data: bytes | memoryview, namer: Callable[[Path, str, str], Path], directory: str | os.PathLike[str],
                stem: str, suffix: str) -> Path:
    """``data`` as a new file named by ``namer(directory, stem, suffix)`` (:func:`free_path` for
    :func:`write_new`, a :class:`FreeNames`), written atomically without fsync and put in place by a rename that
    replaces nothing: where another process took the name since ``namer`` gave it, ``namer``'s next answer, asked
    again. Returns the path written."""
    folder = Path(directory)
    names = [namer(folder, stem, suffix)]

    def next_name() -> Path:
        names.append(namer(folder, stem, suffix))
        return names[-1]

    atomic_write_bytes(names[0], data, sync=False, next_name=next_name)
    return names[-1]


#: the longest name safe_name gives, in UTF-8 bytes: file systems take 255, and an output adds ``_<frame>``,
#: ``_<N>``, its suffix and, while written, a temporary file's prefix and suffix
MAX_NAME_BYTES = 200


#: The zero-width non-joiner and joiner: inside a word (Persian's ``می\u200cخواهم``, Indic conjuncts), part of it
_JOINERS = "\u200c\u200d"


def _unsafe_run(run: re.Match[str]) -> str:
    """A run of characters :func:`safe_name` does not keep, as ``_``; but the combining marks that start it
    after a letter or digit are that letter's own and stay (Devanagari's vowel signs and virama, an accent
    of a name in decomposed form, as macOS gives them): ``हिन्दी`` is no ``ह_न_द``, ``cafe\u0301`` no ``cafe``.
    So are the zero-width (non-)joiners among them where a letter or digit follows them too (:data:`_JOINERS`:
    Persian writes ``می\u200cخواهم`` with one, which was ``می_خواهم``); one that joins nothing goes."""
    text, start, end = run.group(), run.start(), run.end()
    kept = 0
    if start and run.string[start - 1] not in ".-":  # after a letter, a digit or _
        while kept < len(text) and (unicodedata.category(text[kept]).startswith("M") or text[kept] in _JOINERS):
            kept += 1
    joined = kept == len(text) and end < len(run.string) and run.string[end] not in ".-"
    head = text[:kept] if joined else text[:kept].rstrip(_JOINERS)
    return head + ("_" if kept < len(text) else "")


def safe_name(text: str, default: str, *, limit: int = MAX_NAME_BYTES) -> str:
    """``text`` as one file or folder name: runs of anything but letters, digits, ``.``, ``-`` and ``_``
    (slashes, spaces, control characters) become ``_`` (a letter's combining marks are part of it:
    :func:`_unsafe_run`), leading and trailing dots and ``_`` go (no
    ``..``, no hidden file), and a name longer than :data:`MAX_NAME_BYTES` is cut there (a whole
    character at a time: a 251-character video name stopped the run, "File name too long", once its
    outputs added ``_N.txt``); ``default`` where nothing is left. ``limit``: fewer bytes, for a name that gets
    more after it (a frame's ``_<frame>``) and is to stay within :data:`MAX_NAME_BYTES` as a whole."""
    name = _UNSAFE_NAME.sub(_unsafe_run, text).strip("._")
    if len(name.encode()) > limit:
        name = name.encode()[:limit].decode(errors="ignore").rstrip("._" + _JOINERS)
    return name or default


class FreeNames:
    """:func:`free_path` for a run that writes many files into folders that grow (a label file per
    video frame, a crop per box), each file written before the next name is asked for: the first name
    asked for in a folder is :func:`free_path`'s (a killed run's temporary files removed); later ones
    look from the ``_N`` that the folder's last name had where the stem is the same (the 30 crops of a
    crowded frame's class), and the names given out are not kept (the files on disk say them: a stream
    labelled for days would keep millions). ``infer``'s folders are a run's own (``labels_N/``,
    ``crops_N/<class>/``, locked while the run lasts), which no other run writes into; those of
    :meth:`~pvt_deploy.tasks.results.Result.save_crop` called alone may be another's too, whose files it puts in
    place by :func:`write_named`: a name another process took meanwhile is asked for again, and looked past."""

    def __init__(self) -> None:
        self._last: dict[Path, tuple[str, int]] = {}  # each folder listed once -> the stem last named there, its _N

    def __call__(self, directory: str | os.PathLike[str], stem: str, suffix: str) -> Path:
        folder = Path(directory)
        if folder not in self._last:
            self._last[folder] = (stem, 0)
            return free_path(folder, stem, suffix, set())
        last, n = self._last[folder]
        n = n if last == stem else 0  # the 5th crop of a class in a frame starts from the 4th's _N
        while os.path.lexists(folder / f"{stem}{f'_{n}' if n else ''}{suffix}"):
            n += 1
        self._last[folder] = (stem, n)
        return folder / f"{stem}{f'_{n}' if n else ''}{suffix}"


class ImageWriter:
    """Save annotated RGB images into ``directory``, each written atomically.

    Names are reduced to a safe base name (no folders, no ``:``), a suffix OpenCV cannot write is
    replaced by ``suffix`` or ``.jpg``, and a name already used in this run or already present in
    ``directory`` gets ``_1``, ``_2`` (:func:`free_path`): two ``photo.jpg`` from different folders
    of a glob do not overwrite each other, and no existing file (the input photo itself, when
    ``directory`` is its folder) is ever replaced. ``taken``: the names a run gives out in ``directory``
    besides the pictures (its masks, videos, JSON), shared, so that the folder's first name swept it once.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, suffix: str | None = None, quality: int = 95,
        taken: set[str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.suffix = suffix if suffix is None or suffix.startswith(".") else f".{suffix}"
        self.quality = quality
        self.written: list[Path] = []
        self._used: set[str] = set() if taken is None else taken
        self.directory.mkdir(parents=True, exist_ok=True)

    def _stem_suffix(self, name: str) -> tuple[str, str]:
        base = Path(name.replace("\\", "/")).name
        stem, suffix = os.path.splitext(base)
        suffix = (self.suffix or suffix).lower()
        return safe_name(stem, "image"), suffix if suffix in _IMAGE_WRITE_SUFFIXES else ".jpg"

    def write(self, image: np.ndarray, name: str) -> Path:
        """Encode ``image`` (HxWx3 uint8 RGB) as ``name`` in the folder; returns the path written."""
        stem, suffix = self._stem_suffix(name)
        params: list[int] = []
        if suffix in (".jpg", ".jpeg"):
            params = [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)]
        elif suffix == ".webp":
            params = [cv2.IMWRITE_WEBP_QUALITY, int(self.quality)]
        ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise InputError(f"cannot encode image as {suffix}")
        target = write_new(self.directory, stem, suffix, self._used, data.data)  # the array's buffer, as memoryview
        self.written.append(target)
        return target

    def close(self) -> None:
        """Nothing is pending between images; present for symmetry with the other sinks."""

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------


#: What a JSON line keeps escaped though it is no ASCII (only inside strings: JSON's own syntax is ASCII): the lone
#: surrogates, which UTF-8 cannot encode, and the characters other readers end a line at that JSON leaves raw,
#: U+2028 and U+2029 (JavaScript's line terminators, log tools') and U+0085 (NEL: Python's str.splitlines)
_ESCAPED_IN_LINES = re.compile("[\ud800-\udfff\u2028\u2029\x85]")


class JsonlWriter:
    """One JSON object per line, written to ``<path>.part`` and renamed to ``path`` on close.

    Each line is flushed to the OS as soon as it is written. Why: per-frame results of a long
    video or stream are valuable as they come, so a hard kill leaves ``<path>.part`` with complete
    lines (at most the last one torn), and any exception or Ctrl-C inside ``with`` still renames
    it to ``path`` because every line in it is a finished record. ``path`` itself is never
    half-written.
    """

    PART = ".part"  # the name of the file being written: <path>.part

    def __init__(self, path: str | os.PathLike[str], *, new: bool = False) -> None:
        """``new``: ``<path>.part`` is made here or not at all (:class:`FileExistsError`), never opened over one
        that is there (a killed run's lines, another run's file being written): a run holds its name so."""
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + self.PART)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lines = 0
        # closed in close()
        self._file = open(self.part, "x" if new else "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (numpy values allowed) as one line, flushed.

        Text stays UTF-8 as it is (``"café"``), except the lone surrogates by which Python holds the
        bytes of a file name that is not UTF-8 (``caf\\xe9.jpg`` from an old camera or a zip made on
        Windows): UTF-8 cannot encode them, and writing the line failed with a traceback. They are
        written as JSON escapes (``"caf\\udce9.jpg"``), as the COCO file writes them, which
        ``json.loads`` reads back as the very string Python opened the file by. So are the characters that
        JSON leaves raw and other readers split lines at (:data:`_ESCAPED_IN_LINES`: a file name's U+2028 cut
        the line in two for JavaScript's readers and log tools), so that a line is a record for every reader."""
        line = json_dumps(record, ensure_ascii=False, separators=(",", ":"))
        line = _ESCAPED_IN_LINES.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
        self._file.write(line + "\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> Path:
        if not self._file.closed:
            self._file.close()
            os.replace(self.part, self.path)
        return self.path

    def discard(self) -> None:
        """Close and delete ``<path>.part`` without creating ``path`` (nothing to keep, or a write
        failed and the last line may be torn)."""
        with contextlib.suppress(OSError):
            self._file.close()  # flushing the rest may fail again (a full disk): the file goes anyway
        with contextlib.suppress(FileNotFoundError):
            self.part.unlink()  # gone already when close() renamed it

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# COCO results
# ---------------------------------------------------------------------------------------------

# Category ids of the 80 COCO detection classes, in the contiguous 0..79 order models use.
# COCO's ids run 1..90 with gaps where classes were dropped before release.
COCO80_TO_91: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)  # fmt: skip


def coco_category_ids(class_ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Map contiguous class indices 0..79 to COCO category ids (1..90, with gaps)."""
    ids = np.asarray(class_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= len(COCO80_TO_91)):
        raise ValueError(f"COCO class index out of range 0..79: {ids.min()}..{ids.max()}")
    return np.asarray(COCO80_TO_91, dtype=np.int64)[ids]


def coco_image_id(path: str | os.PathLike[str]) -> int | str:
    """COCO's image id from a file name: ``000000397133.jpg`` -> ``397133``; other stems unchanged."""
    stem = Path(path).stem
    return int(stem) if stem.isascii() and stem.isdigit() else stem  # "²7" and "٣" are digits to isdigit


class CocoJsonWriter:
    """Collect detections and write them as a COCO results file (what ``COCOeval.loadRes`` reads).

    Each detection becomes ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.
    ``category_ids`` maps class index -> category id: COCO's 80->91 table by default, ``None`` for
    a custom dataset whose ids are the class indices. Boxes are rounded to 0.001 px and scores to
    1e-5 (no effect on AP, half the file size). The file is written atomically at ``close``; an
    exception inside ``with`` writes nothing (a partial results file would score as a bad model).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, category_ids: Sequence[int] | None = COCO80_TO_91
    ) -> None:
        self.path = Path(path)
        self.category_ids = None if category_ids is None else np.asarray(category_ids, dtype=np.int64)
        self.results: list[dict[str, Any]] = []
        self._closed = False

    def add(
        self,
        image_id: int | str,
        boxes_xyxy: np.ndarray | Sequence[Sequence[float]],
        scores: np.ndarray | Sequence[float],
        class_ids: np.ndarray | Sequence[int],
    ) -> None:
        """Add one image's detections; boxes are ``(K, 4)`` xyxy in original-image pixels."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores_ = np.asarray(scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        if not len(boxes) == len(scores_) == len(classes):
            raise ValueError(
                f"boxes/scores/class_ids lengths differ: {len(boxes)}/{len(scores_)}/{len(classes)}"
            )
        if self.category_ids is not None:
            if classes.size and (classes.min() < 0 or classes.max() >= len(self.category_ids)):
                raise ValueError(f"class index out of range for {len(self.category_ids)} categories")
            classes = self.category_ids[classes]
        xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), 3)
        image_id = image_id.item() if isinstance(image_id, np.generic) else image_id
        for box, score, cat in zip(
            xywh.tolist(), np.round(scores_, 5).tolist(), classes.tolist(), strict=True
        ):
            self.results.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score})

    def __len__(self) -> int:
        return len(self.results)

    def close(self) -> Path:
        """Write the results list to ``path`` (atomically) and return it."""
        if not self._closed:
            self._closed = True
            # One detection per line: compact (indent=2 would put every number on its own line)
            # yet still greppable and diffable.
            rows = ",\n".join(json_dumps(r, separators=(",", ":")) for r in self.results)
            atomic_write_text(self.path, f"[\n{rows}\n]\n" if rows else "[]\n")
        return self.path

    def __enter__(self) -> CocoJsonWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            log.warning("%s: not written (%s)", self.path, stop_reason(exc))
