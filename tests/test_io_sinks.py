"""Sinks: real H.264 encodes decoded back with PyAV, and files that survive exceptions."""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import gc
import http.server
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from pvt_deploy.errors import BackendUnavailableError, InputError
from pvt_deploy.io.sinks import (
    COCO80_TO_91,
    CocoJsonWriter,
    ImageWriter,
    JsonlWriter,
    VideoWriter,
    audio_source,
    available_h264_encoders,
    coco_category_ids,
    coco_image_id,
    free_path,
    free_paths,
    resolve_codec,
)
from pvt_deploy.io.sources import VideoSource


def frame(i: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A frame whose grey level (6*i) identifies it after lossy encoding."""
    return np.full((size[1], size[0], 3), 6 * i, np.uint8)


def decode(path: Path) -> tuple[dict[str, object], list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        info = {
            "codec": ctx.name,
            "pix_fmt": ctx.pix_fmt,
            "size": (ctx.width, ctx.height),
            "fps": stream.average_rate,
            "frames": stream.frames,
        }
        images = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return info, images


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# --- video ----------------------------------------------------------------------------------


def test_video_writer_round_trip_codec_size_fps_and_frames(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 25, (64, 48)) as writer:
        assert writer.codec in available_h264_encoders()
        for i in range(20):
            writer.write(frame(i))
    info, images = decode(out)
    assert info == {"codec": "h264", "pix_fmt": "yuv420p", "size": (64, 48), "fps": 25, "frames": 20}
    assert len(images) == 20
    assert [round(float(np.median(im)) / 6) for im in images] == list(range(20))  # in order, none lost
    assert leftovers(tmp_path) == []


def test_video_writer_keeps_colours(tmp_path: Path) -> None:
    """BT.709 conversion + tags: a saturated colour survives the round trip (a 601/709 mix-up
    shifts it by ~10-20 levels)."""
    out = tmp_path / "colour.mp4"
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[:] = (200, 40, 90)
    with VideoWriter(out, 25, (64, 64)) as writer:
        for _ in range(3):
            writer.write(colour)
    _, images = decode(out)
    assert np.abs(images[0][32, 32].astype(int) - (200, 40, 90)).max() <= 4


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 30, (63, 35)) as writer:
        for i in range(5):
            writer.write(frame(i, (63, 35)))
    info, images = decode(out)
    assert info["size"] == (64, 36) and len(images) == 5


def test_frames_of_another_shape_are_fitted_not_stretched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A stream that switches from 4:3 to 16:9 (or back) midway: the new frames are scaled into the first one's
    picture with their aspect ratio kept, on black bars, and a warning says so once."""
    out = tmp_path / "switch.mp4"
    wide, tall = np.full((72, 128, 3), 200, np.uint8), np.full((96, 48, 3), 200, np.uint8)  # 16:9, 1:2
    with caplog.at_level(logging.WARNING), VideoWriter(out, 25, (64, 48)) as writer:
        writer.write(frame(30))
        for _ in range(2):
            writer.write(wide)  # 64x36 at rows 6..41
        writer.write(tall)  # 24x48 at columns 20..43
    _, images = decode(out)
    assert len(images) == 4
    grey = images[1].mean(axis=(1, 2))  # each row's level
    assert grey[:4].max() < 30 and grey[-4:].max() < 30 and grey[8:40].min() > 180
    grey = images[3].mean(axis=(0, 2))  # each column's level
    assert grey[:17].max() < 30 and grey[-17:].max() < 30 and grey[22:42].min() > 180
    assert sum("aspect ratio kept" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(("size", "padded"), [((1, 1), (2, 2)), ((3, 1), (4, 2)), ((1, 5), (2, 6))])
def test_a_one_pixel_side_is_padded_like_any_odd_size(tmp_path: Path, size: tuple[int, int],
                                                      padded: tuple[int, int]) -> None:
    """A 1-pixel width or height is odd like any other: padded by one (ffv1/png clips that small decode fine)."""
    out = tmp_path / "tiny.mp4"
    with VideoWriter(out, 25, size) as writer:
        for i in range(3):
            writer.write(frame(i, size))
    info, images = decode(out)
    assert info["size"] == padded and len(images) == 3


GUARDED_FRAME = """
import ctypes, mmap, sys
import numpy as np
from pvt_deploy.io.sinks import VideoWriter
libc = ctypes.CDLL(None)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
for width, height in ((34, 18), (642, 360)):
    n = width * height * 3
    pages = -(-n // mmap.PAGESIZE) + 1
    memory = mmap.mmap(-1, pages * mmap.PAGESIZE)
    buffer = np.frombuffer(memory, np.uint8)
    assert libc.mprotect(buffer.ctypes.data + (pages - 1) * mmap.PAGESIZE, mmap.PAGESIZE, 0) == 0
    image = buffer[(pages - 1) * mmap.PAGESIZE - n:(pages - 1) * mmap.PAGESIZE].reshape(height, width, 3)
    image[:] = (200, 40, 90)
    with VideoWriter(f"{sys.argv[1]}/{width}.mp4", 25, (width, height)) as writer:
        writer.write(image)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through libc")
def test_a_frame_that_ends_at_the_end_of_its_memory_is_encoded(tmp_path: Path) -> None:
    """swscale's SIMD reads up to 64 bytes past the last row of an RGB picture: a frame whose memory ends
    at an unreadable page (here one made so; a large malloc can end one byte short of the next mapping)
    crashed the process (SIGSEGV) when the writer gave the encoder the caller's own array."""
    done = subprocess.run([sys.executable, "-c", GUARDED_FRAME, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    for width in (34, 642):
        _, images = decode(tmp_path / f"{width}.mp4")
        assert len(images) == 1 and np.abs(images[0][9, 17].astype(int) - (200, 40, 90)).max() <= 4


def test_ntsc_rates_are_exact(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mp4"
    with VideoWriter(out, 29.97, (32, 32)) as writer:
        writer.write(frame(0, (32, 32)))
    info, _ = decode(out)
    assert info["fps"] == Fraction(30000, 1001)


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_rate_timestamps_are_kept(tmp_path: Path, suffix: str) -> None:
    """A phone-style variable-rate source (frames 30 or 70 ms apart, starting at 5.0 s) keeps its
    timing, relative to its first frame, instead of being laid at the nominal 25 fps."""
    out = tmp_path / f"vfr{suffix}"
    times, t = [], 5.0
    for i in range(12):
        times.append(t)
        t += 0.07 if i % 3 == 0 else 0.03
    with VideoWriter(out, 25, (64, 48)) as writer:
        for i, ts in enumerate(times):
            writer.write(frame(i), ts)
    got = frame_times(out)
    assert len(got) == 12
    assert np.allclose(got, np.array(times) - 5.0, atol=1e-3)
    assert got[-1] == pytest.approx(times[-1] - 5.0, abs=1e-3)  # 0.56 s, not 11 frames at 25 fps = 0.44 s


def test_constant_rate_timestamps_stay_exactly_constant_rate(tmp_path: Path) -> None:
    out = tmp_path / "cfr.mp4"
    rate = Fraction(30000, 1001)
    with VideoWriter(out, 29.97, (32, 32)) as writer:
        for i in range(30):
            writer.write(frame(i, (32, 32)), 100.0 + float(i / rate))
    info, _ = decode(out)
    assert info["fps"] == rate and info["frames"] == 30
    assert np.allclose(frame_times(out), [float(i / rate) for i in range(30)], atol=1e-6)


@pytest.mark.parametrize("fps", [24, 60, Fraction(30000, 1001)])
def test_a_constant_rate_on_a_millisecond_clock_stays_constant_rate(tmp_path: Path, fps: Fraction | int) -> None:
    """Matroska and WebM keep whole milliseconds, so a 24 fps clip's frames come at 0, 0.042, 0.083 s…
    The annotated mp4 kept those times: frames of 42.1 and 40.8 ms, 24.005 fps on average, 1.9996 s."""
    out = tmp_path / "cfr.mp4"
    rate = Fraction(fps)
    times = [round(float(i / rate), 3) for i in range(48)]
    with VideoWriter(out, float(rate), (32, 32)) as writer:
        for i, ts in enumerate(times):
            writer.write(frame(i % 40, (32, 32)), ts)
    info, _ = decode(out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.size)
        average = stream.average_rate
    assert len(set(np.diff(pts).tolist())) == 1 and average == rate and info["fps"] == rate
    assert np.allclose(frame_times(out), [float(i / rate) for i in range(48)], atol=1e-6)


def test_frames_without_time_or_going_back_still_advance(tmp_path: Path) -> None:
    """No timestamp: one nominal frame after the previous. A timestamp at or before the previous
    frame's (a stream that restarted its clock) still comes after it. AVI, which has no variable
    rate, counts frames."""
    out = tmp_path / "mixed.mp4"
    with VideoWriter(out, 10, (32, 32)) as writer:
        for i, ts in enumerate([None, None, 0.5, 0.5, 0.2, None]):
            writer.write(frame(i, (32, 32)), ts)
    got = frame_times(out)
    assert got[:3] == pytest.approx([0.0, 0.1, 0.2], abs=1e-6)  # the first timestamp continues the count
    assert all(b > a for a, b in zip(got, got[1:], strict=False)) and len(got) == 6
    assert got[-1] == pytest.approx(got[-2] + 0.1, abs=1e-6)
    avi = tmp_path / "cfr.avi"
    with VideoWriter(avi, 10, (32, 32)) as writer:
        for i, ts in enumerate([0.0, 0.35, 0.4]):
            writer.write(frame(i, (32, 32)), ts)
    assert np.diff(frame_times(avi)) == pytest.approx([0.1, 0.1], abs=1e-6)  # AVI starts at its B-frame delay


def clip_with_audio(path: Path, acodec: str, *, frames: int = 25, fps: int = 25, rate: int = 48000) -> Path:
    """A 320x240 H.264 clip with a 440 Hz stereo tone in ``acodec``, muxed by PyAV."""
    sample_fmt = {"pcm_s16le": "s16"}.get(acodec, "fltp")
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = out.add_stream(acodec, rate=rate)
        audio.codec_context.layout = "stereo"
        per, done = rate // fps, 0
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(frame(i, (320, 240)), format="rgb24").reformat(format="yuv420p")
            vf.pts = i
            out.mux(video.encode(vf))
            tone = 0.3 * np.sin(2 * np.pi * 440 * (done + np.arange(per)) / rate)
            data = np.tile(tone, (2, 1)).astype(np.float32)
            if sample_fmt == "s16":
                data = (data.T.reshape(1, -1) * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(data, format=sample_fmt, layout="stereo")
            af.sample_rate, af.pts = rate, done
            done += per
            out.mux(audio.encode(af))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def audio_of(path: Path) -> tuple[str, float, float, float] | None:
    """(codec, first sample's time, seconds of audio, RMS of the first channel), or None when silent."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        name = container.streams.audio[0].codec_context.codec.canonical_name
        frames = list(container.decode(audio=0))
    samples = np.concatenate([f.to_ndarray()[0].astype(np.float64) for f in frames])  # planar fltp (AAC, Opus...)
    seconds = sum(f.samples for f in frames) / frames[0].sample_rate
    return name, float(frames[0].time), seconds, float(np.sqrt(np.mean(samples**2)))


@pytest.mark.parametrize(("suffix", "acodec", "expect"), [(".mp4", "aac", "aac"), (".mkv", "pcm_s16le", "aac")])
def test_audio_is_carried_over_in_step_with_the_frames(tmp_path: Path, suffix: str, acodec: str, expect: str) -> None:
    """AAC is copied as it is; PCM, which mp4 does not take here, is re-encoded to AAC. A run that
    stops half way (Ctrl-C, a truncated clip) has audio up to its last frame, from its first."""
    src = clip_with_audio(tmp_path / f"src{suffix}", acodec)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 25, (320, 240), audio_from=src) as writer:
        for i in range(25):
            writer.write(frame(i, (320, 240)), i / 25)
    codec, start, seconds, rms = audio_of(out)  # type: ignore[misc]
    assert codec == expect and abs(start) < 0.03
    assert seconds == pytest.approx(1.0, abs=0.05) and rms == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert frame_times(out) == pytest.approx([i / 25 for i in range(25)], abs=1e-3)  # the remux keeps the frames
    half = tmp_path / "half.mp4"
    with VideoWriter(half, 25, (320, 240), audio_from=src) as writer:
        for i in range(5, 15):  # the run started at frame 5 (0.2 s) and stopped after frame 14
            writer.write(frame(i, (320, 240)), i / 25)
    codec, start, seconds, _ = audio_of(half)  # type: ignore[misc]
    assert abs(start) < 0.03 and seconds == pytest.approx(0.4, abs=0.06)
    assert len(decode(half)[1]) == 10


def clip_with_tracks(path: Path, tracks: list[tuple[str, int, str]]) -> Path:
    """A 1 s 64x48 H.264 clip with one mono audio track per ``(codec, sample rate, language)``, each
    a tone written as a single frame of 1 s (as PCM in mov and mkv often comes: long chunks)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        streams = []
        for codec, rate, language in tracks:
            stream = out.add_stream(codec, rate=rate)
            stream.codec_context.layout = "mono"
            stream.metadata["language"] = language
            streams.append(stream)
        for i in range(25):
            picture = av.VideoFrame.from_ndarray(frame(i), format="rgb24").reformat(format="yuv420p")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        for k, stream in enumerate(streams):
            rate = stream.codec_context.sample_rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * (k + 1) * np.arange(rate) / rate)).astype(np.float32)[None]
            pcm = stream.codec_context.name.startswith("pcm")
            sound = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16) if pcm else wave,
                                               format="s16" if pcm else "fltp", layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = rate, 0, Fraction(1, rate)
            out.mux(stream.encode(sound))
            out.mux(stream.encode(None))
    return path


def tracks_of(path: Path) -> list[tuple[str, str | None, float, float]]:
    """(codec, language, first sample's time, seconds) of each audio track."""
    with av.open(str(path)) as container:
        count = len(container.streams.audio)
    got = []
    for k in range(count):
        with av.open(str(path)) as container:
            stream = container.streams.audio[k]
            frames = list(container.decode(stream))
            got.append((stream.codec_context.name, stream.metadata.get("language"), float(frames[0].time),
                        sum(f.samples for f in frames) / frames[0].sample_rate))
    return got


def annotate(src: Path, out: Path, frames: int = 25) -> Path:
    with VideoWriter(out, 25, (64, 48), audio_from=src) as writer:
        for i in range(frames):
            writer.write(frame(i), i / 25)
    return out


def test_every_audio_track_is_carried_over(tmp_path: Path) -> None:
    """A clip with two audio tracks (two languages, a commentary) kept only its first: the second was
    dropped without a word. Each track now comes along, in step, with its language; one that mp4 does
    not take (PCM) is re-encoded to AAC beside one that is copied."""
    src = clip_with_tracks(tmp_path / "two.mkv", [("aac", 48000, "eng"), ("pcm_s16le", 16000, "fra")])
    out = annotate(src, tmp_path / "out.mp4")
    got = tracks_of(out)
    assert [(codec, language) for codec, language, _, _ in got] == [("aac", "eng"), ("aac", "fra")]
    for _, _, start, seconds in got:
        assert abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.05)
    assert decode(out)[0]["frames"] == 25


def test_a_re_encoded_track_keeps_the_audio_that_starts_with_the_video(tmp_path: Path) -> None:
    """Audio re-encoded to AAC (PCM into mp4) lost its first decoded frame when that frame began with the
    first video frame: it was taken for audio over before the video began. A PCM track stored as one
    1 s chunk came out as no audio at all."""
    src = clip_with_tracks(tmp_path / "pcm.mkv", [("pcm_s16le", 16000, "eng")])
    (codec, _, start, seconds), = tracks_of(annotate(src, tmp_path / "out.mp4"))
    assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("source", "out", "tracks"), [
    ("two.mkv", "out.mov", [("aac", 48000, "eng"), ("opus", 48000, "fra")]),  # mov takes Opus (and FLAC) only as AAC
    ("two.mov", "out.mkv", [("aac", 48000, "eng"), ("pcm_mulaw", 8000, "fra")]),  # Matroska takes no A-law/mu-law
])
def test_a_track_the_container_refuses_as_it_is_is_re_encoded(tmp_path: Path, source: str, out: str,
                                                               tracks: list[tuple[str, int, str]]) -> None:
    """Which codecs were copied was a table written for mp4: mov refuses Opus and FLAC, Matroska mu-law
    PCM, and one such track made the whole remux fail, so every track was lost (a silent video). The
    muxer is asked: what it refuses as it is goes in as AAC, beside the track that is copied."""
    got = tracks_of(annotate(clip_with_tracks(tmp_path / source, tracks), tmp_path / out))
    assert [(codec, language) for codec, language, _, _ in got] == [("aac", "eng"), ("aac", "fra")]
    for _, _, start, seconds in got:
        assert abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("codec", "out"), [("alac", "out.mp4"), ("wavpack", "out.mkv")])
def test_a_track_whose_packets_have_no_length_keeps_its_start_and_end(tmp_path: Path, codec: str, out: str) -> None:
    """Matroska stores no length for ALAC and WavPack packets: the first one, starting with the video and
    taken for sound over before it began, was dropped (85 ms of ALAC; the whole of a WavPack track in one
    packet: a track with no sound), and in mp4 the last one was cut (its length 0 ended the track)."""
    src = clip_with_tracks(tmp_path / "lossless.mkv", [(codec, 48000, "eng")])
    (got_codec, _, start, seconds), = tracks_of(annotate(src, tmp_path / out))
    assert got_codec == codec and abs(start) < 1e-3 and seconds == pytest.approx(1.0, abs=1e-3)


def test_a_language_mov_writes_under_its_other_code_is_kept(tmp_path: Path) -> None:
    """ISO 639-2 gives some languages two codes; mov keeps only one of them (ger, not deu; fra, not fre) and
    wrote no language for the other: a German track from Matroska came out of .mov unlabelled."""
    src = clip_with_tracks(tmp_path / "three.mkv", [("aac", 48000, "deu"), ("aac", 48000, "fre"), ("aac", 48000, "eng")])
    got = tracks_of(annotate(src, tmp_path / "out.mov"))
    assert [language for _, language, _, _ in got] == ["ger", "fra", "eng"]
    got = tracks_of(annotate(src, tmp_path / "out.mp4"))  # mp4 keeps either: as it was
    assert [language for _, language, _, _ in got] == ["deu", "fre", "eng"]


def clip_with_a_damaged_track(path: Path) -> Path:
    """:func:`clip_with_tracks` with an AAC track (eng) and an MP2 track (fra) whose packets are noise."""
    clip_with_tracks(path.with_name("good.mkv"), [("aac", 48000, "eng")])
    with av.open(str(path.with_name("good.mkv"))) as good, av.open(str(path), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in (good.streams.video[0], good.streams.audio[0])}
        streams[good.streams.audio[0].index].metadata["language"] = "eng"
        damaged = out.add_stream("mp2", rate=48000)
        damaged.codec_context.layout = "mono"
        damaged.metadata["language"] = "fra"
        for packet in good.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        noise = np.random.default_rng(0)
        for k in range(40):
            packet = av.Packet(noise.integers(0, 256, 576, dtype=np.uint8).tobytes())
            packet.stream, packet.time_base = damaged, Fraction(1, 48000)
            packet.pts = packet.dts = k * 1152
            out.mux(packet)
    return path


def test_a_damaged_track_is_left_out_and_the_others_are_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One undecodable track (the second language of a damaged recording) failed the whole remux: the
    video came out silent. That track is left out, the others are added, and one warning names it."""
    src = clip_with_a_damaged_track(tmp_path / "damaged.mkv")
    out = annotate(src, tmp_path / "out.mp4")
    got = tracks_of(out)
    assert [(codec, language) for codec, language, _, _ in got] == [("aac", "eng")]
    assert got[0][3] == pytest.approx(1.0, abs=0.05) and decode(out)[0]["frames"] == 25
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{out}: audio of {src} left out: track 2 (mp2, fra), 5 of 5 packets are damaged "
                        "(Invalid data found when processing input); the video has track 1 (aac, eng)"]
    assert leftovers(tmp_path) == []


def with_damaged_packets(src: Path, path: Path, damaged: set[int],
                         damage: Callable[[bytes], bytes] | None = None) -> Path:
    """``src`` with the payload of its audio packets number ``damaged`` (counted from 0) overwritten with
    noise, in place, as a transmission error leaves it, or changed by ``damage`` (a bit flip): timestamps
    and sizes as they were."""
    with av.open(str(src)) as good, av.open(str(path), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in good.streams}
        for s in good.streams.audio:
            streams[s.index].metadata["language"] = s.metadata["language"]
        noise, k = np.random.default_rng(0), 0
        for packet in good.demux():
            if not packet.size:
                continue
            stream = streams[packet.stream.index]
            if packet.stream.type == "audio":
                if k in damaged:
                    bad = av.Packet(damage(bytes(packet)) if damage else
                                    noise.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                    bad.pts, bad.dts, bad.duration, bad.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
                    packet = bad
                k += 1
            packet.stream = stream
            out.mux(packet)
    return path


def samples_of(path: Path) -> np.ndarray:
    """The first audio track's first channel, decoded."""
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])


def test_a_packet_that_does_not_decode_is_silence_and_the_track_is_kept(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """One corrupt packet (24 ms of MP2, re-encoded to AAC) cost the whole track: an hour of sound lost for
    one bit flip. The packet is now silence of its length, so the sound after it stays in step with the
    frames, and one warning counts what was lost."""
    good = clip_with_tracks(tmp_path / "good.mkv", [("mp2", 48000, "eng")])
    src = with_damaged_packets(good, tmp_path / "flipped.mkv", {20})  # 0.480 to 0.504 s
    out = annotate(src, tmp_path / "out.mp4")
    (codec, language, start, seconds), = tracks_of(out)
    assert (codec, language) == ("aac", "eng") and abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.01)
    sound, reference = samples_of(out), samples_of(annotate(good, tmp_path / "reference.mp4"))
    assert np.sqrt(np.mean(sound[23200:24000] ** 2)) < 0.02 < 0.2 < np.sqrt(np.mean(reference[23200:24000] ** 2))
    after = slice(28800, 43200)  # 0.6 to 0.9 s: in phase with the undamaged clip's, not 24 ms early
    assert np.corrcoef(sound[after], reference[after])[0, 1] > 0.95
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{out}: damaged audio packets of {src} were dropped, silence in their place: "
                        "track 1 (mp2, eng): 1 of 41"]


def test_a_copied_track_carries_a_damaged_packet_as_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A track copied as it is (AAC into mp4) is never decoded: a corrupt packet is carried as it is, for the
    player to pass over as it does in the source, and costs neither the track nor a warning."""
    src = with_damaged_packets(clip_with_tracks(tmp_path / "good.mkv", [("aac", 48000, "eng")]),
                               tmp_path / "flipped.mkv", {20})
    out = annotate(src, tmp_path / "out.mp4")
    source, copied = ([bytes(p) for p in av.open(str(path)).demux(audio=0) if p.size] for path in (src, out))
    start = source.index(copied[0])  # the encoder's priming packet, before the first frame, is not carried
    assert copied == source[start:start + len(copied)] and source[20] in copied and len(copied) >= 46
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


def test_a_damaged_packet_a_copied_track_cannot_carry_costs_only_itself(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """AAC from MPEG-TS (a capture, where transmission errors happen) goes into mp4 through a filter that
    reads each packet's ADTS header: one damaged packet was refused there and the whole track left out. That
    packet alone is dropped now, and counted."""
    src = with_damaged_packets(clip_with_tracks(tmp_path / "good.ts", [("aac", 48000, "eng")]),
                               tmp_path / "flipped.ts", {20})
    out = annotate(src, tmp_path / "out.mp4")
    with av.open(str(out)) as container:
        assert [s.codec_context.name for s in container.streams.audio] == ["aac"]
        assert len([p for p in container.demux(audio=0) if p.size]) >= 44
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{out}: damaged audio packets of {src} were dropped, silence in their place: "
                        "track 1 (aac, eng): 1 of 47, 1 left as a gap"]


@pytest.mark.parametrize(("codec", "out"), [("ac3", "out.mp4"), ("eac3", "out.mov")])
def test_a_damaged_packet_the_muxer_refuses_late_is_silence_and_the_track_is_kept(
        tmp_path: Path, codec: str, out: str, caplog: pytest.LogCaptureFixture) -> None:
    """mp4 and mov read the header of every AC-3 and E-AC-3 packet, and refuse a damaged one only when they
    write it out of their interleaving queue, at a later packet or at the end: one bit flip in an AC-3 track
    copied from Matroska made the whole remux fail, and the video came out silent. Each copied packet is now
    tried first in a muxer of the same format that writes nowhere, so the one refused is found as it comes:
    it alone is dropped, counted, and silence of its length (an AC-3 frame of silence, which stands alone)
    takes its place, so the sound after it stays in step; the other packets are copied as they are."""
    good = clip_with_tracks(tmp_path / "good.mkv", [(codec, 48000, "eng")])
    src = with_damaged_packets(good, tmp_path / "flipped.mkv", {16})  # 0.507 to 0.539 s
    target = annotate(src, tmp_path / out)
    (got, language, start, seconds), = tracks_of(target)
    assert (got, language) == (codec, "eng") and abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.05)
    source, copied = ([bytes(p) for p in av.open(str(path)).demux(audio=0) if p.size] for path in (src, target))
    assert len(copied) == len(source) and [p for p in copied if p not in source] == [copied[16]]
    sound, reference = samples_of(target), samples_of(annotate(good, tmp_path / f"reference{Path(out).suffix}"))
    hole = slice(24800, 25400)
    assert np.sqrt(np.mean(sound[hole] ** 2)) < 0.02 < 0.2 < np.sqrt(np.mean(reference[hole] ** 2))
    after = slice(28800, 43200)  # 0.6 to 0.9 s: in phase with the undamaged clip's
    assert np.corrcoef(sound[after], reference[after])[0, 1] > 0.95
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{target}: damaged audio packets of {src} were dropped, silence in their place: "
                        f"track 1 ({codec}, eng): 1 of 32"]


def test_a_damaged_packet_that_starts_a_copied_track_is_silence_too(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """mp4 drops a damaged AC-3 packet that starts a track without an error (it refuses one after): the
    track started 27 ms late, and nothing said so. The track's probe holds a frame before the first packet,
    so that it refuses such a packet there as anywhere else: silence of its length takes its place, the
    track starts with the video, and the one warning counts it."""
    good = clip_with_tracks(tmp_path / "good.mkv", [("ac3", 48000, "eng")])
    src = with_damaged_packets(good, tmp_path / "flipped.mkv", {0})
    target = annotate(src, tmp_path / "out.mp4")
    (_, _, start, seconds), = tracks_of(target)
    assert abs(start) < 0.01 and seconds == pytest.approx(1.0, abs=0.05)
    source, copied = ([bytes(p) for p in av.open(str(path)).demux(audio=0) if p.size] for path in (src, target))
    assert len(copied) == len(source) and copied[1:] == source[1:] and copied[0] != source[0]
    assert np.sqrt(np.mean(samples_of(target)[:1000] ** 2)) < 0.02
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{target}: damaged audio packets of {src} were dropped, silence in their place: "
                        "track 1 (ac3, eng): 1 of 32"]


def test_a_first_packet_whose_header_is_damaged_is_silence_too(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """One bit flipped in the header of an E-AC-3 track's first packet (its substream number): the demuxer
    reads the track's channels from that packet, as a count with no layout ('1 channels'), no encoder of
    silence opened on it, so the probe had no frame before the first packet, and mp4 dropped the packet
    unsaid: the track started 32 ms late, without a warning. Silence is made for the channel count."""
    def flip(data: bytes) -> bytes:
        return data[:2] + bytes([data[2] | 0x08]) + data[3:]  # substreamid 0 -> 1

    good = clip_with_tracks(tmp_path / "good.mkv", [("eac3", 48000, "eng")])
    src = with_damaged_packets(good, tmp_path / "flipped.mkv", {0}, flip)
    with av.open(str(src)) as container:
        assert container.streams.audio[0].codec_context.layout.name == "1 channels"  # the premise
    target = annotate(src, tmp_path / "out.mp4")
    (_, _, start, seconds), = tracks_of(target)
    assert abs(start) < 0.01 and seconds == pytest.approx(1.0, abs=0.05)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{target}: damaged audio packets of {src} were dropped, silence in their place: "
                        "track 1 (eac3, eng): 1 of 32"]


@pytest.mark.parametrize(("codec", "packet", "byte", "bit"), [("eac3", 5, 4, 0x10), ("eac3", 0, 3, 0x01),
                                                           ("ac3", 0, 5, 0x08)],
                         ids=["eac3-blocks", "eac3-first-size", "ac3-first-mode"])
def test_a_copied_track_the_output_refuses_unseen_by_its_probe_is_re_encoded(
        tmp_path: Path, codec: str, packet: int, byte: int, bit: int, caplog: pytest.LogCaptureFixture) -> None:
    """One bit flipped in an AC-3 or E-AC-3 header that the track's probe takes but the output refuses later,
    out of its interleaving queue, where no track is named (E-AC-3's block count, which mp4 refuses at the
    packet after; a first packet's frame size or mode, which mp4 reads its track's parameters from, while the
    probe had a frame of silence before it): the remux failed and the video came out silent. A copied track
    is then tried again re-encoded to AAC, which decodes each packet (what does not decode is silence), and a
    warning says so."""
    def flip(data: bytes) -> bytes:
        return data[:byte] + bytes([data[byte] ^ bit]) + data[byte + 1:]

    good = clip_with_tracks(tmp_path / "good.mkv", [(codec, 48000, "eng")])
    src = with_damaged_packets(good, tmp_path / "flipped.mkv", {packet}, flip)
    target = annotate(src, tmp_path / "out.mp4")
    (got, language, start, seconds), = tracks_of(target)
    assert (got, language) == ("aac", "eng") and abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.05)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    said = f"{target}: audio of {src} re-encoded to AAC, the output refused it as it is: track 1 ({codec}, eng), "
    assert [w for w in warnings if w.startswith(said)], warnings


def joined_ts(src: Path, path: Path, parts: list[tuple[int, int, int]]) -> Path:
    """MPEG-TS files of ``src``'s audio packets ``first:stop``, each moved by ``ms`` milliseconds, joined byte
    by byte (``cat a.ts b.ts``) as ``path``, for ``(first, stop, ms)`` in ``parts``: where one starts before
    the last has ended, the packets' times go back, as in recordings joined into one file."""
    with av.open(str(src)) as good:
        stream = good.streams.audio[0]
        packets = [p for p in good.demux(stream) if p.size]
        joined = b""
        for k, (first, stop, ms) in enumerate(parts):
            with av.open(str(path.with_suffix(f".{k}.ts")), "w", format="mpegts") as out:
                copy = out.add_stream_from_template(stream)
                copy.metadata["language"] = "eng"
                for packet in packets[first:stop]:
                    moved = av.Packet(bytes(packet))
                    moved.time_base, moved.duration = packet.time_base, packet.duration
                    moved.pts = moved.dts = packet.pts + round(Fraction(ms, 1000) / packet.time_base)
                    moved.stream = copy
                    out.mux(moved)
            joined += path.with_suffix(f".{k}.ts").read_bytes()
    path.write_bytes(joined)
    return path


@pytest.mark.parametrize(("parts", "kept", "warned"), [
    ([(0, 16, 5), (3, 4, 5), (16, 32, 5)], 32, "damaged audio packets of {src} were dropped, silence in their "
                                               "place: track 1 (ac3, eng): 1 of 33, 1 left as a gap"),
    ([(0, 16, 5), (15, 16, 5), (16, 32, 5)], 32, "damaged audio packets of {src} were dropped, silence in their "
                                                 "place: track 1 (ac3, eng): 1 of 33, 1 left as a gap"),
    ([(0, 16, 5), (0, 16, 5)], 32, None),
    ([(0, 16, 5), (16, 32, 20005)], 32, None),
], ids=["one-packet-back", "one-packet-again", "joined", "joined-later"])
def test_a_copied_track_whose_clock_jumps_keeps_the_rest(tmp_path: Path, parts: list[tuple[int, int, int]], kept: int,
                                                         warned: str | None, caplog: pytest.LogCaptureFixture) -> None:
    """A copied track whose times went back (one packet out of place or repeated, or two recordings joined
    into one MPEG-TS) was refused at that packet and left out whole; one whose clock jumped ahead 20 s (the
    second recording made later) lost all after the jump, unsaid. The track now keeps one clock, as the
    video's frames do: where it restarts (it goes back more than 0.1 s, or ahead more than 10 s in MPEG-TS,
    and the next packet follows on), what follows comes after what came before; a lone packet off the clock
    is dropped and counted, as a damaged one is, and so is one the muxer refuses for a smaller step back."""
    good = clip_with_tracks(tmp_path / "good.mkv", [("ac3", 48000, "eng")])
    src = joined_ts(good, tmp_path / "joined.ts", parts)
    target = annotate(src, tmp_path / "out.mp4")
    (codec, _, start, seconds), = tracks_of(target)
    assert codec == "ac3" and abs(start) < 0.01 and seconds == pytest.approx(kept * 0.032, abs=0.01)
    with av.open(str(target)) as container:
        times = [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.size]
    assert np.diff(times) == pytest.approx([0.032] * (kept - 1), abs=1e-3)  # one after the other, in step
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ([f"{target}: " + warned.format(src=src)] if warned else [])


@pytest.mark.parametrize("ms", [505, 20005], ids=["half-a-second", "twenty-seconds"])
def test_a_first_packet_off_the_clock_goes_alone(tmp_path: Path, ms: int, caplog: pytest.LogCaptureFixture) -> None:
    """A track whose first packet alone has a time off the clock (a damaged time, 0.5 s or 20 s ahead of the
    rest): the packets after it were taken for a restart that follows it, so the whole track came 0.5 s
    late, its second half past the video's end, or, 20 s ahead, was lost whole; neither said a word. A
    clock is now one that the next packet follows: the first packet goes alone, counted, as a lone packet
    off the clock anywhere else does, and the rest is in its place."""
    good = clip_with_tracks(tmp_path / "good.mkv", [("ac3", 48000, "eng")])
    src = joined_ts(good, tmp_path / "joined.ts", [(0, 1, ms), (1, 32, 5)])
    target = annotate(src, tmp_path / "out.mp4")
    (codec, _, start, seconds), = tracks_of(target)
    assert codec == "ac3" and start == pytest.approx(0.032, abs=0.005)  # where the second packet starts
    assert seconds == pytest.approx(31 * 0.032, abs=0.01)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{target}: damaged audio packets of {src} were dropped, silence in their place: "
                        "track 1 (ac3, eng): 1 of 32, 1 left as a gap"]


def test_a_re_encoded_track_whose_clock_jumps_ahead_keeps_the_rest(tmp_path: Path) -> None:
    """The same for a track re-encoded to AAC (Opus into mov): the half after a jump of 20 s, past the
    video's end, was lost unsaid; it now follows the first half, as the frames do."""
    good = clip_with_tracks(tmp_path / "good.mkv", [("opus", 48000, "eng")])
    src = joined_ts(good, tmp_path / "joined.ts", [(0, 25, 5), (25, 51, 20005)])
    target = annotate(src, tmp_path / "out.mov")
    (codec, _, start, seconds), = tracks_of(target)
    assert codec == "aac" and abs(start) < 0.01 and seconds == pytest.approx(1.0, abs=0.01)
    assert np.sqrt(np.mean(samples_of(target)[26400:45600] ** 2)) > 0.2  # 0.55 to 0.95 s: the second half


def recordings_joined(path: Path, acodec: str, audio: float, count: int = 3) -> Path:
    """``count`` recordings joined byte by byte into one MPEG-TS (``cat 1.ts 2.ts 3.ts``, as dashcams and
    security recorders write them), each 1 s of 25 fps video (B-frames) and ``audio`` s of sound: a white
    frame at 0.48 s and a 10 ms click at 0.5 s of each, so that the sound is 20 ms after the picture."""
    joined = b""
    for k in range(count):
        part = path.with_suffix(f".{k}.ts")
        with av.open(str(part), "w", format="mpegts") as out:
            video = out.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
            sound = out.add_stream(acodec, rate=48000)
            sound.codec_context.layout = "mono"
            for i in range(25):
                picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 255 if i == 12 else 0, np.uint8),
                                                     format="rgb24")
                picture.pts = i
                out.mux(video.encode(picture))
            out.mux(video.encode(None))
            wave = np.zeros((1, round(48000 * audio)), np.float32)
            wave[0, 24000:24480] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(480) / 48000)
            tone = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            tone.sample_rate, tone.pts, tone.time_base = 48000, 0, Fraction(1, 48000)
            out.mux(sound.encode(tone))
            out.mux(sound.encode(None))
        joined += part.read_bytes()
    path.write_bytes(joined)
    return path


@pytest.mark.parametrize(("acodec", "audio", "codec", "frame_s"), [
    ("ac3", 0.96, "ac3", 1536 / 48000), ("ac3", 1.04, "ac3", 1536 / 48000),
    ("mp2", 0.96, "aac", 0.001), ("mp2", 1.04, "aac", 0.001), ("aac", 0.96, "aac", 0.001),
], ids=["copied-sound-ends-first", "copied-sound-ends-last", "re-encoded-sound-ends-first",
        "re-encoded-sound-ends-last", "aac-sound-ends-first"])
def test_each_joined_recordings_sound_plays_with_its_own_frames(tmp_path: Path, acodec: str, audio: float, codec: str,
                                                               frame_s: float) -> None:
    """Recordings joined into one file whose sound does not end with their frames (almost every recording):
    after each join the frames carried on from their last one, the sound from its own last packet, so the
    sound came early or late by the difference, and more at every join (3 joined recordings whose AC-3 ran
    0.96 s: 20 ms late in the first, 60 ms early in the third; 1.04 s: 132 ms late in the third). Each
    recording's sound now takes the shift of its frames: it plays 20 ms after the white frame in each, as
    recorded (within half an audio frame, copied; re-encoded, to the sample); a sound that ends early is
    followed by silence (copied, in frames of its codec), one that ends late is cut where the next starts."""
    src = recordings_joined(tmp_path / "joined.ts", acodec, audio)
    out = tmp_path / "out.mp4"
    with VideoSource(str(src)) as source, VideoWriter(out, 25, (64, 48), audio_from=src) as writer:
        for picture in source:
            writer.write(picture.image, picture.timestamp)
    with av.open(str(out)) as container:
        white = [float(f.time) for f in container.decode(video=0) if f.to_ndarray(format="rgb24").mean() > 128]
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == codec
        frames = list(container.decode(audio=0))
    sound = np.abs(np.concatenate([f.to_ndarray()[0] for f in frames]))  # played back to back, as players do
    loud = np.flatnonzero(sound > 0.3)
    clicks = [float(frames[0].time) + i / 48000 for i in [loud[0], *loud[1:][np.diff(loud) > 4800]]]
    assert white == pytest.approx([0.48, 1.48, 2.48], abs=1e-3)
    # in step after every join: played back to back, a gap left at a join or sound kept past it would show
    assert np.subtract(clicks, white) == pytest.approx([0.02] * 3, abs=frame_s / 2 + 1e-3)


def test_aac_of_a_recording_not_joined_is_copied_as_it_is(tmp_path: Path) -> None:
    """Copied AAC has no frame of silence to fill a gap with, so recordings joined into one file have theirs
    re-encoded (above); one recording alone in an MPEG-TS, which has no gap to fill, keeps its AAC packets
    as they are (no loss), but the ADTS header that mp4 does without."""
    src = recordings_joined(tmp_path / "one.ts", "aac", 0.96, count=1)
    out = tmp_path / "out.mp4"
    with VideoSource(str(src)) as source, VideoWriter(out, 25, (64, 48), audio_from=src) as writer:
        for picture in source:
            writer.write(picture.image, picture.timestamp)
    with av.open(str(src)) as container:
        recorded = [bytes(packet)[7:] for packet in container.demux(audio=0) if packet.size]
    with av.open(str(out)) as container:
        written = [bytes(packet) for packet in container.demux(audio=0) if packet.size]
    assert len(written) > 40 and written == recorded[recorded.index(written[0]):][:len(written)]


def test_the_video_is_read_again_for_its_joins_only_where_a_file_can_be_joined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding where the frames' clock restarts reads the whole video a second time (a second download of
    an http(s) source): only a format whose recordings can be joined byte by byte (MPEG-TS) pays it; an mp4,
    which cannot be, does not."""
    import pvt_deploy.io.sinks as sinks

    read: list[str] = []
    real = sinks.video_joins
    monkeypatch.setattr(sinks, "video_joins", lambda container: read.append(container.format.name) or real(container))
    for src in (clip_with_audio(tmp_path / "take.mp4", "aac", frames=5), recordings_joined(tmp_path / "joined.ts", "ac3", 1.0)):
        with VideoWriter(tmp_path / f"{src.stem}.out.mp4", 25, (64, 48), audio_from=src) as writer:
            writer.write(frame(0), 0.0)
        assert audio_of(tmp_path / f"{src.stem}.out.mp4") is not None
    assert read == ["mpegts"]


def test_audio_the_container_refuses_as_it_is_is_re_encoded_else_the_video_is_silent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Copying PCM into mp4 fails when the file is finalised, where no track is named: the track is tried
    again re-encoded to AAC, with a warning. Where that cannot be (no track was copied), the video,
    finished before the audio is touched, survives whole and silent, with a warning; no temporary file
    is left either way."""
    from pvt_deploy.io import sinks

    src = clip_with_audio(tmp_path / "src.mkv", "pcm_s16le")
    monkeypatch.setattr(sinks._AudioCopy, "_MP4_COPY", frozenset({"pcm_s16le"}))
    out = tmp_path / "out" / "video.mp4"
    out.parent.mkdir()
    for copied in (True, False):
        monkeypatch.setattr(sinks._AudioCopy, "copied", property(lambda audio, copied=copied: copied))
        caplog.clear()
        with VideoWriter(out, 25, (320, 240), audio_from=src) as writer:
            for i in range(10):
                writer.write(frame(i, (320, 240)), i / 25)
        assert len(decode(out)[1]) == 10
        if copied:
            codec, start, seconds, _ = audio_of(out)  # type: ignore[misc]
            assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(0.4, abs=0.05)
            assert f"{out}: audio of {src} re-encoded to AAC, the output refused it as it is: track 1 " in caplog.text
        else:
            assert audio_of(out) is None
            assert "could not be added" in caplog.text and "the video is silent" in caplog.text
        assert ".part" not in caplog.text  # the reason, not the temporary file it was met in
        out.unlink()
        assert leftovers(out.parent) == []


def clip_in(path: Path, vcodec: str, acodec: str, *, audio: tuple[float, float] = (0.0, 1.0),
            title: str | None = None) -> Path:
    """A 1 s 320x240 clip (25 frames) in ``vcodec`` with a 440 Hz stereo tone in ``acodec`` from ``audio[0]`` to
    ``audio[1]`` seconds (the track titled ``title``), in the sample format its encoder takes; the container
    by the suffix of ``path`` (WebM: VP8/VP9 and Opus only)."""
    rate = 48000
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=25)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        sound = out.add_stream(acodec, rate=rate)
        sound.codec_context.layout = "stereo"
        if title is not None:
            sound.metadata["title"] = title
        for i in range(25):
            picture = av.VideoFrame.from_ndarray(frame(i, (320, 240)), format="rgb24").reformat(format="yuv420p")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        first, last = round(audio[0] * rate), round(audio[1] * rate)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(first, last) / rate)).astype(np.float32)
        wave = av.AudioFrame.from_ndarray(np.tile(tone, (2, 1)), format="fltp", layout="stereo")
        wave.sample_rate, wave.pts, wave.time_base = rate, first, Fraction(1, rate)
        resampler = av.AudioResampler(format=sound.codec_context.codec.audio_formats[0].name, layout="stereo", rate=rate)
        for part in resampler.resample(wave):
            out.mux(sound.encode(part))
        out.mux(sound.encode(None))
    return path


def annotate_320(src: Path, out: Path, frames: int = 25) -> Path:
    with VideoWriter(out, 25, (320, 240), audio_from=src) as writer:
        for i in range(frames):
            writer.write(frame(i, (320, 240)), i / 25)
    return out


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


@pytest.mark.parametrize(("source", "vcodec", "acodec", "codec"), [
    ("src.webm", "libvpx-vp9", "libopus", "opus"),  # a WebM's Opus, which mp4 holds as it is
    ("src.mkv", "libx264", "libmp3lame", "mp3"),
    ("src.mp4", "libx264", "ac3", "ac3"),
])
def test_opus_mp3_and_ac3_are_copied_into_the_mp4_as_they_are_and_in_step(tmp_path: Path, source: str, vcodec: str,
                                                                         acodec: str, codec: str) -> None:
    """Opus from WebM, MP3 from Matroska and AC-3 from mp4 (the tests had AAC, PCM, MP2 and Opus into mov):
    the mp4 gets the source's own packets, byte for byte, from the first frame to the last, sounding as the
    source does. Passes unchanged."""
    src = clip_in(tmp_path / source, vcodec, acodec)
    out = annotate_320(src, tmp_path / "out.mp4")
    got, want = audio_of(out), audio_of(src)
    assert got is not None and want is not None
    assert got[0] == want[0] == codec and abs(got[1]) < 0.03 and got[2] == pytest.approx(1.0, abs=0.03)
    assert got[3] == pytest.approx(want[3], rel=0.02)
    packets, source_packets = audio_packets(out), audio_packets(src)
    assert len(packets) >= len(source_packets) - 1 and set(packets) <= set(source_packets)
    assert len(decode(out)[1]) == 25


@pytest.mark.parametrize("audio", [(0.0, 0.5), (0.3, 1.0)])
def test_audio_shorter_than_the_video_keeps_its_place(tmp_path: Path, audio: tuple[float, float]) -> None:
    """A track that ends half way, or starts 0.3 s in: the video keeps every frame, and the sound starts and
    ends where it does in the source (its first sample's time and its length, to the millisecond). Passes
    unchanged."""
    src = clip_in(tmp_path / "src.mp4", "libx264", "aac", audio=audio)
    got, want = audio_of(annotate_320(src, tmp_path / "out.mp4")), audio_of(src)
    assert got is not None and want is not None and got[0] == want[0] == "aac"
    assert got[1] == pytest.approx(want[1], abs=1e-3) and got[2] == pytest.approx(want[2], abs=1e-3)
    assert want[1] == pytest.approx(audio[0], abs=0.025) and want[2] == pytest.approx(audio[1] - audio[0], abs=0.03)
    assert len(decode(tmp_path / "out.mp4")[1]) == 25


@pytest.mark.parametrize(("out", "key"), [("out.mkv", "title"), ("out.mp4", "name"), ("out.mov", "name")])
def test_a_tracks_title_comes_along(tmp_path: Path, out: str, key: str) -> None:
    """A track's title (a commentary, a second language's name) is what tells two tracks apart in a player;
    no test had one. mp4 and mov keep it in the track's name atom, which FFmpeg reads back as 'name'.
    Passes unchanged."""
    src = clip_in(tmp_path / "src.mkv", "libx264", "aac", title="commentary")
    with av.open(str(annotate_320(src, tmp_path / out))) as container:
        assert [s.metadata.get(key) for s in container.streams.audio] == ["commentary"]


@pytest.mark.parametrize("start", [0, 10])
def test_a_copied_track_keeps_the_packets_its_codec_delay_needs(tmp_path: Path, start: int) -> None:
    """A Matroska AAC track declares its encoder's delay (CodecDelay: 1024 samples, its first packet the
    priming, timed -21 ms to 0), which a decoder skips at the track's start, and a copy into Matroska keeps
    that declaration. The copy dropped each packet that ended by the first frame, the priming one too, so
    the decoder skipped 1024 samples of real sound: it started 21 ms late, out of step with the 440 Hz tone
    by a third of a millisecond (and so from a run started at frame 10, 5 ms late). The packets that delay
    covers before the first frame are kept now, and the sound starts with the first frame, in step."""
    src = clip_in(tmp_path / "src.mkv", "libx264", "aac")
    out = tmp_path / "out.mkv"
    with VideoWriter(out, 25, (320, 240), audio_from=src) as writer:
        for i in range(start, 25):
            writer.write(frame(i, (320, 240)), i / 25)
    with av.open(str(out)) as container:
        frames = list(container.decode(audio=0))
    rate, first = frames[0].sample_rate, float(frames[0].time)
    sound = np.concatenate([f.to_ndarray()[0].astype(np.float64) for f in frames])
    times = first + start / 25 + np.arange(len(sound)) / rate  # the source's times: its tone is 0.3 sin(2 pi 440 t)
    middle = slice(len(sound) // 4, 3 * len(sound) // 4)
    off = float(np.sqrt(np.mean((sound[middle] - 0.3 * np.sin(2 * np.pi * 440 * times[middle])) ** 2)))
    assert abs(first) < 1e-3 and len(sound) / rate >= (25 - start) / 25 - 1e-3 and off < 0.1, (first, off)


def test_an_avi_output_is_silent_and_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """AVI takes no variable-rate audio here: the video is written without it, every frame there, and no
    warning. Passes unchanged."""
    src = clip_with_audio(tmp_path / "src.mp4", "aac")
    with VideoWriter(tmp_path / "out.avi", 25, (320, 240), audio_from=src) as writer:
        for i in range(10):
            writer.write(frame(i, (320, 240)), i / 25)
    assert audio_of(tmp_path / "out.avi") is None and len(decode(tmp_path / "out.avi")[1]) == 10
    assert "audio" not in caplog.text


def test_a_track_whose_codec_ffmpeg_does_not_know_is_left_out_in_words(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A track in a codec FFmpeg does not know (a Matroska codec id of another tool) is left out and the
    other kept, as a track that cannot be read is; the warning gave the reason as PyAV's None met in Python,
    "'NoneType' object has no attribute 'codec'"."""
    src = clip_with_tracks(tmp_path / "two.mkv", [("aac", 48000, "eng"), ("mp2", 48000, "fra")])
    data = src.read_bytes()
    assert data.count(b"A_MPEG/L2") == 1
    unknown = tmp_path / "unknown.mkv"
    unknown.write_bytes(data.replace(b"A_MPEG/L2", b"A_QQQQ/L2"))
    out = annotate(unknown, tmp_path / "out.mp4")
    assert [(codec, language) for codec, language, _, _ in tracks_of(out)] == [("aac", "eng")]
    assert (f"{out}: audio of {unknown} left out: track 2, cannot be read (its codec is not one FFmpeg knows); "
            "the video has track 1 (aac, eng)") in caplog.text


def test_ctrl_c_while_the_audio_is_added_keeps_the_video_silent_and_then_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The audio remux, the one step of finishing a video that can take long, gives up at its next video
    packet when a Ctrl-C waits (which no test ran: the Ctrl-C tests came before it began): the video is
    kept whole and silent, with a warning, no temporary file stays, and the Ctrl-C is raised once the file
    is in place. Passes unchanged."""
    from pvt_deploy.io import sinks

    src = clip_with_audio(tmp_path / "src.mp4", "aac")
    real = sinks._AudioCopy.add_to

    def ctrl_c_as_added(self: Any, out: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # to this thread, synchronously: held until the file is in place
        real(self, out)

    monkeypatch.setattr(sinks._AudioCopy, "add_to", ctrl_c_as_added)
    out = tmp_path / "out" / "cut.mp4"
    out.parent.mkdir()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as under a terminal
    try:
        writer = VideoWriter(out, 25, (320, 240), audio_from=src)
        for i in range(10):
            writer.write(frame(i, (320, 240)), i / 25)
        with pytest.raises(KeyboardInterrupt):
            writer.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert audio_of(out) is None and len(decode(out)[1]) == 10 and leftovers(out.parent) == []
    assert f"{out}: stopped before the audio of {src} was added; the video is silent" in caplog.text


FULL_DISK_AUDIO = """
import resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_io_sinks import clip_with_audio, frame
from pvt_deploy.io.sinks import VideoWriter
tmp = Path(sys.argv[1])
src = clip_with_audio(tmp / "src.mkv", "pcm_s16le")  # ~190 kB of PCM: ~16 kB once re-encoded to AAC
def annotate(out, audio):
    with VideoWriter(out, 25, (320, 240), audio_from=src if audio else None) as writer:
        for i in range(25):
            writer.write(frame(i, (320, 240)), i / 25)
annotate(tmp / "silent.mp4", False)
# room for the silent video, not for it with its audio: the remux is the write that meets the limit
resource.setrlimit(resource.RLIMIT_FSIZE, ((tmp / "silent.mp4").stat().st_size + 2000, resource.RLIM_INFINITY))
(tmp / "out").mkdir()
try:
    annotate(tmp / "out" / "video.mp4", True)
    print("returned", flush=True)
except OSError as e:
    print("raised", e.errno, flush=True)
"""


def test_a_full_disk_while_the_audio_is_added_raises_and_leaves_no_file(tmp_path: Path) -> None:
    """A full disk (here a file size limit) met while the audio was remuxed in was taken for audio
    trouble: a silent video, a warning and exit 0, the disk still full. It is raised as a full disk in
    the trailer is (infer: exit 2), and neither the video nor a temporary file is left."""
    done = subprocess.run([sys.executable, "-c", FULL_DISK_AUDIO, str(tmp_path), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"raised {errno.EFBIG}", done.stderr
    assert "the video is silent" not in done.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_no_audio_when_the_source_has_none_or_is_not_a_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    silent = tmp_path / "silent.mp4"
    with VideoWriter(silent, 25, (64, 48)) as writer:
        writer.write(frame(0))
    for source in (silent, tmp_path / "missing.mp4"):
        out = tmp_path / "out.mp4"
        with VideoWriter(out, 25, (64, 48), audio_from=source) as writer:
            writer.write(frame(1))
        assert audio_of(out) is None and len(decode(out)[1]) == 1
        out.unlink()
    assert "audio" not in caplog.text


def test_a_source_that_changes_during_the_run_gives_no_audio_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The audio is read again when the video is finished: a source deleted, or a link moved to
    another clip, meanwhile gave a silent video without a word, or another clip's sound."""
    src = clip_with_audio(tmp_path / "src.mp4", "aac")
    link = tmp_path / "clip.mp4"
    link.symlink_to(src)
    other = clip_with_audio(tmp_path / "other.mp4", "aac", frames=20)
    for change in ("retarget", "delete"):
        out = tmp_path / f"{change}.mp4"
        with VideoWriter(out, 25, (320, 240), audio_from=link) as writer:
            for i in range(10):
                writer.write(frame(i, (320, 240)), i / 25)
            if change == "retarget":
                link.unlink()
                link.symlink_to(other)
            else:
                link.unlink()
        assert audio_of(out) is None and len(decode(out)[1]) == 10
        assert f"{link} changed during the run, so its audio was not added" in caplog.text
        caplog.clear()
        if not link.exists():
            link.symlink_to(src)


@contextlib.contextmanager
def serving(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers with ``handler``, for the block; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def served(folder: Path, *, login: tuple[str, str] | None = None) -> Iterator[str]:
    """``folder`` served over HTTP on 127.0.0.1 (a clip behind a URL); yields the base URL. With ``login``
    (user, password), a request without them in HTTP Basic auth gets 401 and nothing else."""
    expected = "Basic " + base64.b64encode(":".join(login).encode()).decode() if login else None

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def send_head(self) -> object:
            if expected is not None and self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="clips"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return super().send_head()

    with serving(functools.partial(Quiet, directory=str(folder))) as base:
        yield base


def test_the_audio_of_a_clip_served_over_http_is_read_again_only_if_it_is_the_same(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A clip read from an http(s) URL can be read again from its start, as a local file is: its audio is
    carried over, unless the URL serves another file by the time the video is finished (its size,
    duration or audio differ), which would have put another clip's sound under the frames."""
    site = tmp_path / "site"
    site.mkdir()
    clip_with_audio(site / "talk.mp4", "aac")
    with served(site) as base:
        url = f"{base}/talk.mp4"
        out = tmp_path / "out.mp4"
        with VideoWriter(out, 25, (320, 240), audio_from=url) as writer:
            for i in range(25):
                writer.write(frame(i, (320, 240)), i / 25)
        codec, start, seconds, _ = audio_of(out)  # type: ignore[misc]
        assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.05)
        assert "talk.mp4" not in caplog.text
        changed = tmp_path / "changed.mp4"
        with VideoWriter(changed, 25, (320, 240), audio_from=url) as writer:
            for i in range(10):
                writer.write(frame(i, (320, 240)), i / 25)
            clip_with_audio(site / "talk.mp4", "aac", frames=20)  # another take put in its place meanwhile
        assert audio_of(changed) is None and len(decode(changed)[1]) == 10
        assert f"{url} changed during the run, so its audio was not added" in caplog.text
        with VideoWriter(tmp_path / "gone.mp4", 25, (64, 48), audio_from=f"{base}/gone.mp4") as writer:
            writer.write(frame(0))
        assert audio_of(tmp_path / "gone.mp4") is None
        assert f"{base}/gone.mp4 could not be read again from its start, so its audio was not added" in caplog.text


def test_the_audio_of_a_clip_behind_a_password_is_read_with_it_and_the_password_is_never_shown(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A URL whose server asks for a login is read again with the user name and password it was given
    (which audio_source refused: the video came out silent); every warning about it names the URL
    without them."""
    site = tmp_path / "site"
    site.mkdir()
    clip_with_audio(site / "talk.mp4", "aac")
    with served(site, login=("ann", "s3cr3t")) as base:
        url = base.replace("http://", "http://ann:s3cr3t@") + "/talk.mp4"
        assert audio_source(url) == url
        out = tmp_path / "out.mp4"
        with VideoWriter(out, 25, (320, 240), audio_from=audio_source(url)) as writer:
            for i in range(25):
                writer.write(frame(i, (320, 240)), i / 25)
        codec, start, seconds, _ = audio_of(out)  # type: ignore[misc]
        assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(1.0, abs=0.05)
        with VideoWriter(tmp_path / "changed.mp4", 25, (320, 240), audio_from=url) as writer:
            writer.write(frame(0, (320, 240)), 0.0)
            clip_with_audio(site / "talk.mp4", "aac", frames=20)  # another take put in its place meanwhile
        assert audio_of(tmp_path / "changed.mp4") is None
        shown = base.replace("http://", "http://***@")
        assert f"{shown}/talk.mp4 changed during the run, so its audio was not added" in caplog.text
        wrong = url.replace("s3cr3t", "n0t1t")  # refused by the server: no audio, and said so
        with VideoWriter(tmp_path / "refused.mp4", 25, (64, 48), audio_from=wrong) as writer:
            writer.write(frame(0))
        assert audio_of(tmp_path / "refused.mp4") is None
        assert f"{shown}/talk.mp4 could not be read again from its start" in caplog.text
    assert "s3cr3t" not in caplog.text and "n0t1t" not in caplog.text


def test_a_result_writer_of_ones_own_reads_the_audio_with_the_password_the_results_do_not_show(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Results of ``Model.predict("http://user:pw@host/clip.mp4")`` name the clip ``http://***@host/clip.mp4``,
    for display; a ``ResultWriter`` of one's own opened that masked URL to read the audio again, the server
    refused it (401) and the video came out silent. Results carry the URL as given (``location``, shown
    nowhere), which the writer reads."""
    from pvt_deploy import Model
    from pvt_deploy.tasks.pipeline import ResultWriter

    site = tmp_path / "site"
    site.mkdir()
    clip_with_audio(site / "talk.mp4", "aac", frames=10)
    caplog.set_level(logging.DEBUG)
    with Model("pvt_v2_b0-cls", imgsz=64) as model, served(site, login=("ann", "s3cr3t")) as base:
        url = base.replace("http://", "http://ann:s3cr3t@") + "/talk.mp4"
        writer = ResultWriter(tmp_path / "out", task=model.task, names=model.names, save_json=True)
        results = list(model.predict(url, stream=True))
        for r in results:
            writer.write(r)
        writer.close()
    assert len(results) == 10 and results[0].path == base.replace("http://", "http://***@") + "/talk.mp4"
    codec, start, seconds, _ = audio_of(tmp_path / "out" / "talk.mp4")  # type: ignore[misc]
    assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(0.4, abs=0.05)
    shown = [caplog.text, repr(results[0]), results[0].to_json(), (tmp_path / "out" / "predictions.jsonl").read_text()]
    assert not any("s3cr3t" in text for text in shown)


def test_frames_of_another_size_are_resized(tmp_path: Path) -> None:
    out = tmp_path / "mixed.mp4"
    with VideoWriter(out, 25, (64, 48)) as writer:
        writer.write(frame(1, (64, 48)))
        writer.write(frame(2, (128, 96)))
    info, images = decode(out)
    assert info["size"] == (64, 48) and len(images) == 2


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_write_leaves_a_playable_file_with_frames_so_far(
    tmp_path: Path, error: type[BaseException]
) -> None:
    out = tmp_path / "cut.mp4"
    with pytest.raises(error), VideoWriter(out, 25, (64, 48)) as writer:
        for i in range(30):
            if i == 12:
                raise error("stream dropped")
            writer.write(frame(i))
    info, images = decode(out)
    assert info["codec"] == "h264" and info["frames"] == 12 and len(images) == 12
    assert [round(float(np.median(im)) / 6) for im in images] == list(range(12))
    assert leftovers(tmp_path) == []


class _CtrlCWhileDraining:
    """A writer's video stream that sends this process SIGINT as the encoder is drained: the flush
    that takes ~1 s for a 4K clip, where an impatient second Ctrl-C lands."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def encode(self, frame: object = None) -> object:
        if frame is None:
            signal.raise_signal(signal.SIGINT)  # to this thread, synchronously
        return self._stream.encode(frame)  # type: ignore[attr-defined]


@pytest.mark.parametrize("audio", [False, True])
def test_ctrl_c_while_the_video_is_finalised_waits_for_the_file(tmp_path: Path, audio: bool) -> None:
    """Ctrl-C in the flush or the trailer used to remove the whole video; now it waits until the file
    is in place and then stops the caller. The audio remux is not waited for: the video stays silent."""
    src = clip_with_audio(tmp_path / "src.mp4", "aac") if audio else None
    out = tmp_path / "out" / "cut.mp4"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as under a terminal
    try:
        writer = VideoWriter(out, 25, (320, 240), audio_from=src)
        for i in range(10):
            writer.write(frame(i, (320, 240)), i / 25)
        writer._stream = _CtrlCWhileDraining(writer._stream)  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            writer.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    info, images = decode(out)
    assert info["codec"] == "h264" and len(images) == 10 and leftovers(out.parent) == []
    assert audio_of(out) is None


class _CtrlCAfterEncoding:
    """A writer's video stream that sends this process SIGINT once the encoder has handed out its first
    packets (the key frame among them), before the writer has muxed them."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self.sent = False

    def encode(self, frame: object = None) -> object:
        packets = self._stream.encode(frame)  # type: ignore[attr-defined]
        if packets and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)  # to this thread, synchronously
        return packets


def test_ctrl_c_between_the_encoder_and_the_muxer_loses_no_packet(tmp_path: Path) -> None:
    """Ctrl-C that came after encode() and before mux() lost the packets encode() had made: with the
    first, the key frame, no frame of the video decoded (seen in a real run stopped with SIGINT). Now
    it waits until the frame is muxed, and the video holds every frame written."""
    out = tmp_path / "cut.mp4"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as under a terminal
    try:
        with pytest.raises(KeyboardInterrupt), VideoWriter(out, 25, (64, 48)) as writer:
            writer._stream = _CtrlCAfterEncoding(writer._stream)  # type: ignore[assignment]
            for i in range(60):
                writer.write(frame(i), i / 25)
    finally:
        signal.signal(signal.SIGINT, previous)
    _, images = decode(out)
    assert writer.frames_written == len(images) > 1 and leftovers(tmp_path) == []
    assert [round(float(np.median(im)) / 6) for im in images] == list(range(len(images)))


SECOND_CTRL_C = """
import signal, sys, time
import numpy as np
from pvt_deploy.io.sinks import VideoWriter
from pvt_deploy.utils import signals

signal.signal(signal.SIGINT, signal.default_int_handler)  # as under a terminal, also when started in the background
late = sys.argv[2] == "late"
signals.REPEAT_S = 0.001 if late else 30.0
with signals.sigterm_raises(KeyboardInterrupt):
    writer = VideoWriter(sys.argv[1], 25, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 6 * i, np.uint8))
    try:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C: the run unwinds to finalise its outputs
    except KeyboardInterrupt:
        print("stopping", flush=True)
    if not late:
        signal.raise_signal(signal.SIGINT)  # pressed again while the pipeline winds down: the same request
        print("clean-up survived the repeat", flush=True)
    time.sleep(0.01)
    stream = writer._stream

    class Drain:
        def encode(self, frame=None):
            if frame is None:
                signal.raise_signal(signal.SIGINT)  # and again while the encoder drains: held, then ignored
            return stream.encode(frame)

    writer._stream = Drain()
    print("closed", writer.close() is not None, flush=True)
    signal.raise_signal(signal.SIGINT)  # and again: the same request, or with REPEAT_S past, the end
    print("done", flush=True)
"""


@pytest.mark.parametrize("when", ["repeat", "late"])
def test_a_repeated_ctrl_c_never_costs_the_video(tmp_path: Path, when: str) -> None:
    # under the CLI's policy (pvt_deploy.utils.signals.sigterm_raises) Ctrl-C is counted as SIGTERM
    # is: a repeat within REPEAT_S is ignored and a later one ends the process at once; one that comes
    # while the video is finalised waits until the file is in place and is never taken as late
    out = tmp_path / "cut.mp4"
    done = subprocess.run([sys.executable, "-c", SECOND_CTRL_C, str(out), when], capture_output=True, text=True,
                          timeout=60)
    if when == "repeat":
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["stopping", "clean-up survived the repeat", "closed True", "done"]
    else:
        assert done.returncode == -signal.SIGINT, done.stderr
        assert done.stdout.splitlines() == ["stopping", "closed True"]
    assert len(decode(out)[1]) == 10 and leftovers(tmp_path) == []


def test_no_final_file_while_writing_and_none_without_frames(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    writer = VideoWriter(out, 25, (32, 32))
    writer.write(frame(0, (32, 32)))
    assert not out.exists() and len(leftovers(tmp_path)) == 1  # only the hidden temporary exists
    assert writer.close() == out and out.exists()
    empty = VideoWriter(tmp_path / "empty.mp4", 25, (32, 32))
    assert empty.close() is None
    assert not (tmp_path / "empty.mp4").exists() and leftovers(tmp_path) == []


def test_writer_rejects_bad_frames_and_arguments(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "v.mp4", 25, (32, 32)) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((32, 32, 3), np.float32))
        with pytest.raises(ValueError, match="HxWx3"):
            writer.write(np.zeros((32, 32), np.uint8))
        writer.write(frame(0, (32, 32)))
    with pytest.raises(InputError, match="unsupported video file type"):
        VideoWriter(tmp_path / "v.webm", 25, (32, 32))
    with pytest.raises(InputError, match="fps"):
        VideoWriter(tmp_path / "v.mp4", 0, (32, 32))


def test_encoder_resolution() -> None:
    assert "libx264" in available_h264_encoders()
    assert resolve_codec("auto") in ("h264_nvenc", "libx264")
    assert resolve_codec("libx264") == "libx264"
    with pytest.raises(BackendUnavailableError):
        resolve_codec("no_such_encoder")
    if "h264_nvenc" not in available_h264_encoders():
        with pytest.raises(BackendUnavailableError, match="h264_nvenc"):
            resolve_codec("h264_nvenc")


# --- images ---------------------------------------------------------------------------------


def test_image_writer_writes_rgb_atomically_with_safe_unique_names(tmp_path: Path) -> None:
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    with ImageWriter(tmp_path / "out") as writer:
        first = writer.write(red, "some/dir/photo.png")
        second = writer.write(red, "other/photo.png")  # same base name from another folder
        third = writer.write(red, "rtsp:cam 1")
    assert [first.name, second.name, third.name] == ["photo.png", "photo_1.png", "rtsp_cam_1.jpg"]
    back = cv2.imread(str(first))
    assert tuple(back[0, 0]) == (0, 0, 255)  # stored as a normal (BGR-on-disk) file: red stays red
    assert leftovers(tmp_path / "out") == []


def test_image_writer_never_replaces_an_existing_file(tmp_path: Path) -> None:
    """Writing into the folder the photos came from (``infer photos -o photos``) keeps every input:
    a taken name, on disk or in this run, gets the next free ``_N``."""
    (tmp_path / "photo.png").write_bytes(b"the user's photo")
    (tmp_path / "photo_1.png").write_bytes(b"another of the user's photos")
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    writer = ImageWriter(tmp_path)
    first, second = writer.write(red, "photo.png"), writer.write(red, "in/another/folder/photo.png")
    assert [first.name, second.name] == ["photo_2.png", "photo_3.png"]
    assert (tmp_path / "photo.png").read_bytes() == b"the user's photo"
    assert (tmp_path / "photo_1.png").read_bytes() == b"another of the user's photos"
    back = cv2.imread(str(first))
    assert back is not None and tuple(back[0, 0]) == (0, 0, 255) and leftovers(tmp_path) == []


FULL_DISK_IMAGE = """
import resource, sys
from pathlib import Path
import cv2, numpy as np
from pvt_deploy.io.sinks import ImageWriter
from pvt_deploy.tasks.results import _write_file
out, how = Path(sys.argv[1]), sys.argv[2]
noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)  # ~120 kB, incompressible
size = len(cv2.imencode(".png", cv2.cvtColor(noise, cv2.COLOR_RGB2BGR))[1])
print(size, flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (size - 1, resource.RLIM_INFINITY))  # one byte short: the last flush fails
try:
    if how == "sink":
        ImageWriter(out).write(noise, "noise.png")
    else:
        _write_file(out / "noise.png", cv2.imencode(".png", noise)[1])
except OSError as e:
    print("raised", e.errno, flush=True)
"""


@pytest.mark.parametrize("how", ["sink", "result"])
def test_an_image_cut_short_by_a_full_disk_raises_and_leaves_no_file(tmp_path: Path, how: str) -> None:
    """A file system that refuses the last bytes of an image (a full disk, a file size limit): the write
    raises and nothing is left under the final name. ``ndarray.tofile`` ignored the error of its final
    flush, so ``infer`` published an annotated JPEG cut at the limit and exited 0."""
    done = subprocess.run([sys.executable, "-c", FULL_DISK_IMAGE, str(tmp_path), how], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    size, outcome = done.stdout.split("\n")[:2]
    assert int(size) % 4096 != 0  # a tail that stdio buffers (what tofile lost), so the test can fail
    assert outcome == f"raised {errno.EFBIG}"
    assert list(tmp_path.iterdir()) == []  # neither noise.png nor its temporary file


def test_video_writer_discard_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "cut.mp4"
    writer = VideoWriter(out, 25, (32, 32))
    for i in range(3):
        writer.write(frame(i, (32, 32)))
    writer.discard()
    assert list(tmp_path.iterdir()) == []
    assert writer.close() is None  # discarded: closing later writes nothing either
    assert list(tmp_path.iterdir()) == []


# --- JSON Lines -----------------------------------------------------------------------------


def test_jsonl_lines_are_flushed_as_written_and_renamed_on_close(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    writer = JsonlWriter(out)
    for i in range(3):
        writer.write({"frame": i, "score": np.float32(0.5), "boxes": np.zeros((1, 4))})
    # mid-run: the final name does not exist yet, the .part already holds every complete line
    assert not out.exists()
    assert len(writer.part.read_text().splitlines()) == 3
    writer.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and not writer.part.exists()
    assert json.loads(lines[2]) == {"frame": 2, "score": 0.5, "boxes": [[0.0, 0.0, 0.0, 0.0]]}


def test_jsonl_keeps_complete_lines_after_an_exception(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    with pytest.raises(KeyboardInterrupt), JsonlWriter(out) as writer:
        writer.write({"frame": 0, "name": "café"})
        writer.write({"frame": 1})
        raise KeyboardInterrupt
    assert [json.loads(line)["frame"] for line in out.read_text(encoding="utf-8").splitlines()] == [0, 1]
    assert "café" in out.read_text(encoding="utf-8")


def test_jsonl_writes_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    """infer on caf\\xe9.jpg or v\\xe9.mp4 (Latin-1 names: old cameras, zips made on Windows) ended in a
    UnicodeEncodeError traceback, exit 1, at the first line of predictions.jsonl: Python holds such a name
    with lone surrogates, which UTF-8 cannot encode."""
    source = os.fsdecode(b"/data/caf\xe9.jpg")
    out = tmp_path / "preds.jsonl"
    with JsonlWriter(out) as writer:
        writer.write({"source": source, "class": "café", "frame": 0})
    text = out.read_bytes().decode("utf-8")  # strict: the file is UTF-8 throughout
    assert "café" in text and "\\udce9" in text  # readable text stays as it is
    record = json.loads(text)
    assert record["source"] == source and os.fsencode(record["source"]) == b"/data/caf\xe9.jpg"


def test_json_outputs_are_strict_json_when_a_number_is_not_finite(tmp_path: Path) -> None:
    """A NaN or an infinity (a probability of a graph that overflowed in FP16, a box a caller built)
    was written as ``NaN`` / ``Infinity``, which is not JSON: jq, JavaScript's JSON.parse and strict
    readers refuse the whole file. Both result files write such a number as the string "nan", "inf"
    or "-inf"; finite numbers are untouched."""

    def strict(text: str) -> object:
        def refuse(constant: str) -> None:
            raise ValueError(f"{constant} is not JSON")
        return json.loads(text, parse_constant=refuse)

    with JsonlWriter(tmp_path / "preds.jsonl") as writer:
        writer.write({"frame": 0, "top": [{"class_id": 1, "score": np.float32("nan")}], "speed": float("inf"),
                      "boxes": np.array([[1.0, -np.inf, 3.0, 4.0]]), "ok": 0.5})
    record = strict((tmp_path / "preds.jsonl").read_text(encoding="utf-8"))
    assert record == {"frame": 0, "top": [{"class_id": 1, "score": "nan"}], "speed": "inf",
                      "boxes": [[1.0, "-inf", 3.0, 4.0]], "ok": 0.5}
    with CocoJsonWriter(tmp_path / "coco.json") as coco:
        coco.add(1, np.array([[0.0, 0.0, np.inf, 5.0]]), [np.nan], [0])
    assert strict((tmp_path / "coco.json").read_text()) == [
        {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, "inf", 5.0], "score": "nan"}]


def test_every_json_writer_makes_numpy_torch_and_path_values_json_the_same_way(tmp_path: Path) -> None:
    """One rule (utils.files) for values JSON has no type for: the JSON Lines writer had its own
    ``default`` (numpy and paths, no torch tensor: TypeError mid-run), ``json_dumps`` and ``json_safe``
    another (numpy and torch, no path: TypeError). Each now writes the same text for the same record."""
    import torch

    from pvt_deploy.utils.files import json_dumps, json_safe

    record = {"source": Path("a") / "b.jpg", "score": np.float32(0.5), "box": np.array([1, 2]),
              "t": torch.tensor([0.25, float("inf")]), "n": torch.tensor(3)}
    plain = {"source": os.path.join("a", "b.jpg"), "score": 0.5, "box": [1, 2], "t": [0.25, "inf"], "n": 3}
    with JsonlWriter(tmp_path / "p.jsonl") as writer:
        writer.write(record)
    assert json.loads((tmp_path / "p.jsonl").read_text(encoding="utf-8")) == plain
    assert json.loads(json_dumps(record)) == json_safe(record) == plain
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        json_dumps({"x": object()})


def test_jsonl_discard_removes_the_part_file(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    writer = JsonlWriter(out)
    writer.write({"frame": 0})
    assert writer.part.is_file()
    writer.discard()
    assert list(tmp_path.iterdir()) == []
    kept = JsonlWriter(out)
    kept.write({"frame": 1})
    kept.close()
    kept.discard()  # after close: the finished file stays
    assert json.loads(out.read_text()) == {"frame": 1} and leftovers(tmp_path) == []


# --- COCO results ---------------------------------------------------------------------------


def test_coco_mapping_is_the_standard_80_to_91() -> None:
    assert len(COCO80_TO_91) == 80 and len(set(COCO80_TO_91)) == 80
    assert COCO80_TO_91[0] == 1 and COCO80_TO_91[-1] == 90
    assert set(range(1, 91)) - set(COCO80_TO_91) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert coco_category_ids([0, 11, 79]).tolist() == [1, 13, 90]
    with pytest.raises(ValueError):
        coco_category_ids([80])
    assert coco_image_id("val2017/000000397133.jpg") == 397133
    assert coco_image_id("cat.jpg") == "cat"
    assert coco_image_id("²7.jpg") == "²7" and coco_image_id("٣.jpg") == "٣"  # digits to isdigit, not to int


def test_a_legal_long_file_name_still_gets_its_temporary_file(tmp_path: Path) -> None:
    """80 CJK characters + .jpg is 244 bytes, a legal name; ``.<name>.XXXXXXXX.part.jpg`` was not."""
    from pvt_deploy.utils.files import atomic_path

    target = tmp_path / ("中" * 80 + ".jpg")
    with atomic_path(target) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255 and tmp.name.startswith(".中") and tmp.suffix == ".jpg"
        tmp.write_bytes(b"picture")
    assert target.read_bytes() == b"picture" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def _open_fds() -> int:
    """The descriptors this process has open, counted after a collection: a file held by an object of an
    earlier test that awaits the garbage collector (in a reference cycle) would be counted on one side of a
    comparison and be gone on the other, whenever the collector happened to run in between."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors in /proc")
@pytest.mark.parametrize(("code", "unlocked"), [(errno.ENOLCK, True), (errno.EOPNOTSUPP, True), (errno.ENOSYS, True),
                                                (errno.EIO, False), (errno.EBADF, False)])
def test_an_atomic_write_goes_on_unlocked_only_where_there_are_no_locks(
        tmp_path: Path, code: int, unlocked: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any OSError of the temporary file's flock() was taken for 'no locks on this file system'. Where there
    are none the file is written unlocked; another error is raised before the block runs, the temporary
    file removed and its descriptor closed, the target as it was."""
    import fcntl

    from pvt_deploy.utils.files import atomic_path

    def flock(fd: int, operation: int) -> None:
        raise OSError(code, os.strerror(code))

    target = tmp_path / "results.json"
    target.write_text("before")
    monkeypatch.setattr(fcntl, "flock", flock)
    fds = _open_fds()
    if unlocked:
        with atomic_path(target) as tmp:
            tmp.write_text("after")
    else:
        with pytest.raises(OSError) as refused, atomic_path(target) as tmp:
            tmp.write_text("after")
        assert refused.value.errno == code
    assert target.read_text() == ("after" if unlocked else "before")
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    assert _open_fds() == fds


def test_coco_json_has_xywh_boxes_and_coco_ids(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    with CocoJsonWriter(out) as writer:
        writer.add(397133, np.array([[10.0, 20.0, 50.0, 80.0], [0, 0, 5, 5]]), [0.9, 0.3], np.array([0, 79]))
        writer.add(42, np.zeros((0, 4)), [], [])
        assert not out.exists()  # written atomically at close
    results = json.loads(out.read_text())
    assert results == [
        {"image_id": 397133, "category_id": 1, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.9},
        {"image_id": 397133, "category_id": 90, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.3},
    ]


def test_coco_json_custom_categories_and_nothing_written_on_exception(tmp_path: Path) -> None:
    out = tmp_path / "custom.json"
    with CocoJsonWriter(out, category_ids=None) as writer:
        writer.add("img", [[1, 1, 2, 2]], [0.5], [3])
    assert json.loads(out.read_text())[0]["category_id"] == 3
    failed = tmp_path / "failed.json"
    with pytest.raises(RuntimeError), CocoJsonWriter(failed) as writer:
        writer.add(1, [[1, 1, 2, 2]], [0.5], [3])
        raise RuntimeError("crash")
    assert not failed.exists() and leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="lengths"):
        CocoJsonWriter(out).add(1, [[1, 1, 2, 2]], [0.5, 0.4], [3])


def test_two_runs_writing_into_one_folder_do_not_take_the_same_name(tmp_path: Path) -> None:
    """A second run into the folder while the first is still writing ``clip.mp4`` (its temporary file
    is there, the final name not yet) finds the name free too; the one that finishes first gets it, and the
    other, whose rename replaces nothing, the next free name: both videos survive whole. Before, both wrote
    ``clip.mp4`` and the run that finished last replaced the other's video."""
    a_taken: set[str] = set()
    b_taken: set[str] = set()  # another process: its own names
    first = free_path(tmp_path, "clip", ".mp4", a_taken)
    with VideoWriter(first, 25, (64, 48), next_name=lambda: free_path(tmp_path, "clip", ".mp4", a_taken)) as a:
        for i in range(3):
            a.write(frame(i), i / 25)
        second = free_path(tmp_path, "clip", ".mp4", b_taken)
        assert (first.name, second.name) == ("clip.mp4", "clip.mp4")
        with VideoWriter(second, 25, (64, 48), next_name=lambda: free_path(tmp_path, "clip", ".mp4", b_taken)) as b:
            for i in range(5):
                b.write(frame(i), i / 25)
        assert b.close() == tmp_path / "clip.mp4"
    assert a.close() == a.path == tmp_path / "clip_1.mp4"
    assert len(decode(tmp_path / "clip_1.mp4")[1]) == 3 and len(decode(tmp_path / "clip.mp4")[1]) == 5
    assert free_path(tmp_path, "clip", ".mp4", set()).name == "clip_2.mp4"
    assert leftovers(tmp_path) == []


KILLED_VIDEO = """
import os, signal, sys
import numpy as np
from pvt_deploy.io.sinks import VideoWriter
writer = VideoWriter(sys.argv[1], 25, (64, 48))
for i in range(30):
    writer.write(np.full((48, 64, 3), 6 * i, np.uint8), i / 25)
os.kill(os.getpid(), signal.SIGKILL)  # kill -9, the OOM killer, a crash in native code: no handler runs
"""


def test_a_run_killed_while_writing_its_video_gives_the_name_back(tmp_path: Path) -> None:
    """``kill -9`` of ``infer clip.mp4 -o out/`` left the hidden ``.clip.mp4.XXXXXXXX.part.mp4`` in the
    folder for ever, and every later run into it counted it as another run writing ``clip.mp4``: it wrote
    ``clip_1.mp4``, for ever. Now no temporary file takes a name (the writes replace nothing where the name is
    taken when they finish), and the next run into the folder removes one whose writer is gone (its lock
    free); one changed in the last seconds is still left alone (its writer may not hold its lock yet). A killed run's ``predictions.jsonl.part`` stays and keeps its name."""
    from pvt_deploy.utils.files import TEMP_GRACE_S

    killed = subprocess.run([sys.executable, "-c", KILLED_VIDEO, str(tmp_path / "clip.mp4")], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".clip.mp4.") and left.name.endswith(".part.mp4") and left.stat().st_size > 0
    (tmp_path / "predictions.jsonl.part").write_text('{"frame": 0}\n')  # a killed run's complete lines
    assert free_path(tmp_path, "clip", ".mp4", set()).name == "clip.mp4"  # a temporary file takes no name
    assert left.exists()  # just killed: within the grace, not removed
    old = left.stat().st_mtime - TEMP_GRACE_S - 1
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    assert free_path(tmp_path, "clip", ".mp4", set()).name == "clip.mp4"
    assert not left.exists()
    names = free_paths(tmp_path, [("predictions", ".jsonl")], set(), partial=JsonlWriter.PART)
    assert [p.name for p in names] == ["predictions_1.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl.part"]


def test_only_temporary_files_whose_writer_is_gone_are_removed(tmp_path: Path) -> None:
    """The sweep removes a temporary file that is unlocked and unchanged for TEMP_GRACE_S, and leaves one
    just made (``atomic_path`` makes it a moment before it takes its lock), one whose lock is held (being
    written, however old), and a user's file that only looks like one (its suffix is not its name's)."""
    from pvt_deploy.utils.files import TEMP_GRACE_S, flock, remove_abandoned_temps

    fresh = tmp_path / ".fresh.mp4.abcd1234.part.mp4"
    old = tmp_path / ".old.mp4.abcd1234.part.mp4"
    locked = tmp_path / ".locked.json.ab_d1234.part.json"
    lookalike = tmp_path / ".backup.20240101.part.tar"  # not named after a .tar file: not atomic_path's
    for path in (fresh, old, locked, lookalike):
        path.write_bytes(b"x")
    then = old.stat().st_mtime - TEMP_GRACE_S - 1
    for path in (old, locked, lookalike):
        os.utime(path, (then, then))
    fd = os.open(locked, os.O_RDONLY)  # a writer's descriptor: another open file, as another process's
    try:
        assert flock(fd, wait=False)
        assert remove_abandoned_temps(tmp_path) == [old]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (fresh, locked, lookalike))
    finally:
        os.close(fd)
    assert remove_abandoned_temps(tmp_path) == [locked]  # its writer is gone now


def test_the_default_h264_encode_searches_sub_pixel_motion_in_one_pass(tmp_path: Path) -> None:
    """The annotated video's libx264 runs ``veryfast`` with ``subme=1`` (superfast's sub-pixel search),
    21-40 % less CPU per frame at the same size and PSNR to half a dB (measured in sinks._encoder_options):
    the encoder shares the cores with the model. A preset asked for is that preset as x264 defines it.
    x264 writes its settings into the stream (an SEI message), which is what is read here."""
    from pvt_deploy.io.sinks import VideoWriter

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    settings = {}
    for preset in (None, "veryfast"):
        path = tmp_path / f"{preset}.mp4"
        with VideoWriter(path, 10, (96, 64), codec="libx264", preset=preset) as writer:
            for frame in frames:
                writer.write(frame)
        data = path.read_bytes()
        start = data.index(b"options: ")
        settings[preset] = data[start:data.index(b"\0", start)].decode().split()
        with av.open(str(path)) as video:
            assert sum(1 for _ in video.decode(video=0)) == 3
    assert "subme=1" in settings[None] and "subme=2" in settings["veryfast"]
    assert {s for s in settings[None] if not s.startswith("subme=")} == {
        s for s in settings["veryfast"] if not s.startswith("subme=")}  # veryfast otherwise
