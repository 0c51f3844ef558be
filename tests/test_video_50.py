"""Videos and streams read again: the colorspace warning said once for a stream that reconnects (and a video read by
more than one reader), and an anamorphic clip weighed against the memory free at the size its frames are made at."""

from __future__ import annotations

import itertools
import logging
from fractions import Fraction
from pathlib import Path

import av
import pytest
from cli_run import run
from test_export_50 import _clip as sar_clip
from test_inputs_49b import _clip as tagged_clip
from test_io_sources import too_big

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import (
    VIDEO_BYTES_PER_PIXEL,
    VIDEO_BYTES_PER_PIXEL_UNSAVED,
    PyAVReader,
    Reconnect,
    StreamSource,
    VideoSource,
    open_source,
)

YCGCO = ("{}: its frames are tagged with the colorspace YCgCo (8), which FFmpeg's converter has no matrix for: read "
         "with BT.601's, as ffplay shows them (its colours may be off)")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pvt_deploy.io.sources" and "colorspace" in
            r.getMessage()]


@pytest.fixture
def ycgco(tmp_path: Path) -> Path:
    if "libx264" not in av.codecs_available:
        pytest.skip("this FFmpeg has no libx264 encoder")
    return tagged_clip(tmp_path / "ycgco.mkv", "yuv420p", 8)


def test_a_stream_tagged_ycgco_that_reconnects_warns_once(ycgco: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The warning of a colorspace read as BT.601's was remembered by each reader, and a stream makes a new one at
    each reconnect: a live feed that dropped twice said it three times. The stream keeps the colorspaces said and
    hands them to each connection's reader: said once for its 9 frames of 3 connections."""
    opened: list[PyAVReader] = []

    def opener() -> PyAVReader:
        opened.append(PyAVReader(str(ycgco), live=True))  # its end is a drop: reconnected to
        return opened[-1]

    source = StreamSource(opener, spec="rtsp://cam/live", reconnect=Reconnect(3, 0.0, 0.0), sleep=lambda _: None,
                          realtime=False)
    with caplog.at_level(logging.WARNING), source:
        frames = list(itertools.islice(source, 9))
    assert (len(frames), source.reconnects, len(opened)) == (9, 2, 3)
    assert _warnings(caplog) == [YCGCO.format(ycgco)]


def test_a_video_tagged_ycgco_read_by_a_second_reader_warns_once(ycgco: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A video file's frames sought (seek_frames, calibration's) are read by a reader of its own, and the whole
    video by another: each said the warning. The video keeps the colorspaces said for all its readers."""
    with caplog.at_level(logging.WARNING), VideoSource(ycgco) as source:
        sought = source.seek_frames(lambda numbers: [numbers[-1]], always=True)
        frames = list(source)
    assert sought is not None and [f.index for f in sought] == [2] and len(frames) == 3
    assert _warnings(caplog) == [YCGCO.format(ycgco)]


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    if "libx264" not in av.codecs_available:
        pytest.skip("this FFmpeg has no libx264 encoder")
    return sar_clip(tmp_path / "wide.mp4", 640, 480, Fraction(2, 1))  # a player shows it 1280x480


@pytest.mark.parametrize("per_pixel", [VIDEO_BYTES_PER_PIXEL, VIDEO_BYTES_PER_PIXEL_UNSAVED])
def test_an_anamorphic_video_is_weighed_at_the_size_its_frames_are_made_at(
        wide: Path, monkeypatch: pytest.MonkeyPatch, per_pixel: int) -> None:
    """infer's and check's video (and stream) was weighed against the memory free at the size its frames are stored
    at (640x480), where the RGB frames it gives, and all the pipeline holds of them, are widened to a player's
    (1280x480): half its need. With memory free between the two figures, a file and a stream are refused at
    1280x480 before a frame is read; with memory enough, the frames are 1280 wide."""
    from pvt_deploy.utils import cpu

    shown = 1280 * 480 * per_pixel
    free = 640 * 480 * per_pixel * 3 // 2  # above the stored size's need, below the shown size's
    monkeypatch.setattr(cpu, "available_memory", lambda: free)
    refused = too_big(wide, "1280x480", f"{shown / 1e6:.0f} MB", f"{free / 1e6:.0f} MB")
    with pytest.raises(InputError) as e:
        open_source(wide, bytes_per_pixel=per_pixel)
    assert str(e.value) == refused
    with pytest.raises(InputError) as e:
        StreamSource(lambda: PyAVReader(str(wide), live=True, bytes_per_pixel=per_pixel), spec="rtsp://cam/live")
    assert str(e.value) == refused
    monkeypatch.setattr(cpu, "available_memory", lambda: shown)
    with open_source(wide, bytes_per_pixel=per_pixel) as source:
        assert source.size == (1280, 480)
        assert [f.image.shape for f in source] == [(480, 1280, 3)] * 12


def test_infer_refuses_an_anamorphic_video_the_memory_free_cannot_run_at_its_shown_size(
        wide: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """infer --no-save of the 2:1 clip with memory free for its stored size but not its shown one: one line, exit
    2, nothing written (it ran, weighed at 640x480)."""
    from pvt_deploy.utils import cpu

    shown = 1280 * 480 * VIDEO_BYTES_PER_PIXEL_UNSAVED
    free = 640 * 480 * VIDEO_BYTES_PER_PIXEL_UNSAVED * 3 // 2
    monkeypatch.setattr(cpu, "available_memory", lambda: free)
    monkeypatch.chdir(wide.parent)
    code, out, err = run(monkeypatch, capsys, "infer", str(wide), "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                         "--no-save")
    assert (code, out) == (2, ""), err
    assert err.strip().splitlines() == [
        "error: " + too_big(wide, "1280x480", f"{shown / 1e6:.0f} MB", f"{free / 1e6:.0f} MB")], err
    assert sorted(p.name for p in wide.parent.iterdir()) == ["wide.mp4"]
