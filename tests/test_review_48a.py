"""Review of session 48's input-reading changes: a video whose display matrix is degenerate (all zeros); a glob
that matches nothing beside a folder the user cannot list; a whole PNG past libpng's size limit and FFmpeg's."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from test_followups_48b import autorotated, oriented_clip
from test_inputs_48 import picture

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import open_source, read_image


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


def test_a_glob_beside_a_folder_it_cannot_list_says_what_it_found(tmp_path: Path) -> None:
    """A glob /mnt/disk/*/*.jpg that matches no picture (a typo, pictures named .JPG), where one of the folders its
    head matches cannot be listed (a disk's lost+found, root's alone): Python's glob passes over that folder, but
    the look for hidden pictures (f094596) listed it, and the error was its PermissionError, not the glob's 'no
    images found' (the CLI: 'error: [Errno 13] Permission denied: .../lost+found'). Run in a process of its own,
    as root without the capabilities that let root read any folder."""
    disk = tmp_path / "disk"
    picture(disk / "photos" / ".IMG_0001.jpg")  # hidden: the glob leaves it out, and the error says so
    (disk / "lost+found").mkdir()
    (disk / "lost+found").chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no folder here refuses root's listing")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
        if subprocess.run([*prefix, "true"], capture_output=True, check=False, timeout=60).returncode:
            pytest.skip("running as root where setpriv may not drop capabilities (no CAP_SETPCAP)")
    code = """if 1:
        import os, sys
        from pvt_deploy.errors import InputError
        from pvt_deploy.io.sources import open_source
        try:
            os.listdir(sys.argv[1])
            print("listed")
        except PermissionError:
            pass
        try:
            open_source(sys.argv[2])
        except InputError as e:
            print(e.args[0])
        """
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", code, str(disk / "lost+found"), f"{disk}/*/*.jpg"],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        (disk / "lost+found").chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    if done.stdout.startswith("listed"):  # root whose capabilities setpriv could not drop: the glob's own case
        pytest.skip("no folder here refuses this process's listing")
    assert done.stdout == (f"no images found in glob {disk}/*/*.jpg, only 1 hidden file ({disk}/photos/.IMG_0001.jpg), "
                           "which a glob leaves out as the shell's does\n")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_whole_png_past_libpngs_limit_and_ffmpegs_is_not_said_corrupt(tmp_path: Path) -> None:
    """A PNG wider than the 1000000 pixels libpng reads is decoded by FFmpeg (7c45c96), whose own limit is
    about 268 million pixels with its padding ((w + 128) * (h + 128) * 8 < 2^31): a strip 1000001 wide and
    141 tall is past it (140 decodes). Both failed, and the whole picture was 'corrupt or not an image'; it
    says what it is and what could not read it. Written row by row (a gray strip), not held whole."""
    path = tmp_path / "strip.png"
    width, height = 1_000_001, 141
    packer = zlib.compressobj(1)
    row = b"\0" + bytes(range(256)) * (width // 256) + bytes(width % 256)  # filter 0, then its pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b""))
    with warnings.catch_warnings():  # Pillow's warning of a picture past 89 million pixels: its header alone is read
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:  # a whole PNG: its chunks' checksums hold
            assert image.size == (width, height)
            image.verify()
    with pytest.raises(InputError) as caught:
        read_image(path)
    assert str(caught.value) == (f"cannot decode image {path} (a 1000001x141 PNG, past the 1000000 pixels a side "
                                 "libpng reads, which FFmpeg could not decode either)")
