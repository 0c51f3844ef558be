"""Review of session 48's input-reading changes: a video whose display matrix is degenerate (all zeros)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from test_followups_48b import autorotated, oriented_clip

from pvt_deploy.io.sources import open_source


def zeroed_matrix(path: Path) -> Path:
    """``path`` (an mp4 that a display matrix turns a quarter) with its track's matrix (tkhd's) all zeros: a
    matrix without an angle, whose av_display_rotation_get is NaN."""
    data = bytearray(path.read_bytes())
    tkhd = data.index(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0: 32-bit times and duration
    # version and flags, created, modified, track id, reserved, duration, reserved 8, layer, group, volume, reserved
    start = tkhd + 4 + 4 + 4 * 5 + 8 + 8
    assert np.frombuffer(bytes(data[start:start + 36]), ">i4")[[0, 1, 3, 4]].tolist() != [65536, 0, 0, 65536]
    data[start:start + 36] = bytes(36)
    path.write_bytes(bytes(data))
    return path


def test_a_degenerate_display_matrix_is_shown_as_stored(tmp_path: Path) -> None:
    """An all-zero display matrix has no angle: PyAV's frame.rotation gives its NaN as -2**31, which the reader
    read as a quarter turn clockwise (a 64x32 clip came out 32x64), where FFmpeg's autorotate turns nothing."""
    path = zeroed_matrix(oriented_clip(tmp_path / "clip.mp4", 90, hflip=False, vflip=False))
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0))
        matrix = decoded.side_data.get("DISPLAYMATRIX")
        assert matrix is not None and not any(bytes(matrix))  # the zeros reach the frame
        raw, expected = decoded.to_ndarray(format="rgb24"), autorotated(decoded)
    assert np.array_equal(expected, raw)  # FFmpeg's autorotate leaves it as stored
    with open_source(path) as source:
        size = source.size
        frames = [frame.image for frame in source]
    assert size == (64, 32)  # width, height
    assert len(frames) == 2 and np.array_equal(frames[0], raw)
