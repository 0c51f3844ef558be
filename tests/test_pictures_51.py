"""Session 51's pictures OpenCV cannot decode (helper DM): FFmpeg decodes them before they are said to be corrupt, on
disk as at a URL, in a folder, under infer and val, with nothing of OpenCV's log on stderr; a damaged picture is
still one line."""

from __future__ import annotations

import io
import logging
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image
from test_io_sources import http_server  # noqa: F401 - the fixture

import pvt_deploy
from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import _ffmpeg_picture, open_source, read_encoded, read_image


def _smooth_rgb(width: int, height: int) -> np.ndarray:
    """A picture of smooth colour, which a lossy encoder keeps within a few levels."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([40 + 160 * x // width, 40 + 160 * y // height, 180 - 100 * x // width], -1).astype(np.uint8)


def _jpeg2000_420(path: Path, rgb: np.ndarray) -> Path:
    """``rgb`` as a JPEG 2000 file (jp2) of YUV 4:2:0, written by FFmpeg's encoder. OpenCV's OpenJPEG reader refuses
    subsampled chroma: cv2.imdecode gives None and logs five lines on stderr ('OpenJPEG2000: tiles are not
    supported (expected: '(int)comp.dx == 1'), ...')."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    codec = av.CodecContext.create("jpeg2000", "w")
    codec.width, codec.height, codec.pix_fmt, codec.time_base = rgb.shape[1], rgb.shape[0], "yuv420p", Fraction(1, 1)
    path.write_bytes(b"".join(bytes(packet) for packet in codec.encode(frame) + codec.encode(None)))
    return path


def test_a_jpeg_2000_of_4_2_0_chroma_reads_on_disk_as_at_its_url_and_opencv_says_nothing(
        http_server: tuple[str, Path], capfd: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A 4:2:0 JPEG 2000 file was 'cannot decode image X (corrupt or not an image)', OpenCV's five lines of 'tiles
    are not supported' on stderr above it, where its URL read (FFmpeg's decode): FFmpeg was asked only for a
    picture past OpenCV's size limits. It is tried wherever OpenCV cannot decode a picture: the file reads, as its
    bytes, in a folder and at its URL, the same pixels, and stderr (the process's, OpenCV's own log) holds
    nothing. Fails before (InputError)."""
    base, root = http_server
    folder = root / "scans"
    folder.mkdir()
    rgb = _smooth_rgb(64, 48)
    path = _jpeg2000_420(folder / "scan.jp2", rgb)
    assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_ANYCOLOR) is None  # what this is about
    Image.fromarray(rgb).save(folder / "plain.png")
    capfd.readouterr()
    on_disk = read_image(path)
    assert on_disk.shape == (48, 64, 3) and np.abs(on_disk.astype(int) - rgb).mean() < 3
    assert np.array_equal(read_encoded(path.read_bytes()), on_disk)
    with open_source(folder) as source:
        assert [(Path(f.path).name, np.array_equal(f.image, on_disk)) for f in source] == [("plain.png", False),
                                                                                          ("scan.jp2", True)]
    with open_source(f"{base}/scans/scan.jp2") as source:
        (at_url,) = [f.image for f in source]
    assert np.array_equal(at_url, on_disk)
    assert capfd.readouterr().err == ""


def test_a_damaged_picture_is_one_line_with_nothing_of_opencvs_or_ffmpegs(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """What neither OpenCV nor FFmpeg decodes as a picture is still 'corrupt or not an image', with nothing more on
    stderr: a cut JPEG 2000 (OpenCV logged three lines of OpenJPEG's for it: fails before), a cut TIFF (four lines
    of libtiff's: fails before), and a video's bytes in a file named .jpg (FFmpeg decodes its first frame, but no
    picture demuxer reads it: a video is given by its name)."""
    rgb = np.random.default_rng(51).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # noise: no small file
    whole = _jpeg2000_420(tmp_path / "whole.jp2", rgb).read_bytes()
    tiff = io.BytesIO()
    Image.fromarray(rgb).save(tiff, "TIFF")
    clip = tmp_path / "clip.mkv"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(2):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    damaged = {"cut.jp2": whole[:len(whole) // 2], "cut.tif": tiff.getvalue()[:len(tiff.getvalue()) // 2],
               "clip.jpg": clip.read_bytes()}
    capfd.readouterr()
    for name, data in damaged.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError) as caught:
            read_image(path)
        assert str(caught.value) == f"cannot decode image {path} (corrupt or not an image)", name
        assert caught.value.hint is None, name
        assert capfd.readouterr().err == "", name


def test_infer_and_val_read_a_4_2_0_jpeg_2000_and_say_a_damaged_one_in_one_line(tmp_path: Path) -> None:
    """The real CLI, in a process of its own (OpenCV writes to the process's stderr): infer on a folder reads the
    4:2:0 JPEG 2000 and skips the damaged one with one warning, exit 0; infer on the damaged one alone is one
    line, exit 2 (README's exit codes: nothing decodable); val of a class folder holding the picture measures it.
    Before: infer skipped both, OpenCV's lines between its own (exit 0: the folder; 2 alone), val measured none."""
    photos = tmp_path / "photos"
    photos.mkdir()
    _jpeg2000_420(photos / "scan.jp2", _smooth_rgb(64, 48))
    noise = np.random.default_rng(51).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    whole = _jpeg2000_420(tmp_path / "noise.jp2", noise).read_bytes()
    (photos / "torn.jp2").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "val" / "tench").mkdir(parents=True)
    (tmp_path / "val" / "tench" / "scan.jp2").write_bytes((photos / "scan.jp2").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(Path(pvt_deploy.__file__).parents[1])}  # the code under test

    def cli(*args: str) -> tuple[int, str, str]:
        done = subprocess.run([sys.executable, "-m", "pvt_deploy", *args, "--model", "pvt_v2_b0-cls", "--imgsz", "32"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
        return done.returncode, done.stdout, done.stderr

    code, out, err = cli("infer", "photos", "--no-save")
    assert code == 0, out + err
    assert "photos/scan.jp2 64x48:" in out + err and "1 image in" in out + err, out + err
    torn = [line for line in (out + err).splitlines() if "torn.jp2" in line]
    assert len(torn) == 1 and "skipping cannot decode image photos/torn.jp2 (corrupt or not an image)" in torn[0], torn
    for noise_said in ("OpenJPEG", "tiles", "[ERROR", "[ WARN", "imdecode"):
        assert noise_said not in out + err, out + err
    code, out, err = cli("infer", "photos/torn.jp2", "--no-save")
    assert code == 2, out + err
    said = [line for line in err.splitlines() if "torn.jp2" in line]
    assert said == ["error: cannot decode image photos/torn.jp2 (corrupt or not an image)"], err
    assert "OpenJPEG" not in out + err and "Traceback" not in out + err, out + err
    code, out, err = cli("val", "val")
    assert code == 0, out + err
    assert "1 picture of val (1 class)" in out, out + err
    assert "OpenJPEG" not in out + err and "skipping" not in out + err, out + err


def test_opencvs_log_level_is_put_back_when_blocks_that_quiet_it_overlap() -> None:
    """Each picture's decode now quiets OpenCV's log (one level for the process) as a camera's opening did, and
    both may run at once (a picture decoded on one thread while a camera opens on another). Each set the level and
    put back the one it found: a decode begun inside the camera's opening found the camera's level (ERROR), and
    ending last put that back for good. The blocks hold the lowest level asked for while any is inside, and the
    last out puts back the level from before the first: checked on OpenCV's own level, the blocks ending out of
    order as two threads' may."""
    from pvt_deploy.io import sources

    get_level, _ = sources._opencv_log_level()
    before = get_level()
    camera, decode = (sources._opencv_log_held(sources._OPENCV_LOG_ERROR),
                      sources._opencv_log_held(sources._OPENCV_LOG_SILENT))
    camera.__enter__()
    assert get_level() == min(before, sources._OPENCV_LOG_ERROR)
    decode.__enter__()
    assert get_level() == sources._OPENCV_LOG_SILENT
    camera.__exit__(None, None, None)  # the camera opened while the picture still decodes
    assert get_level() == sources._OPENCV_LOG_SILENT
    decode.__exit__(None, None, None)
    assert get_level() == before


def test_a_cut_jpeg_reads_with_one_warning_that_it_is_damaged_and_a_whole_picture_with_none(
        http_server: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """Since OpenCV refuses a JPEG cut short and FFmpeg decodes it (its lost rows grey), such a JPEG read silently, on
    disk as at its URL: its results were a part-grey picture's, and nothing said so. It reads, with one warning for
    the picture naming it; a whole picture FFmpeg decodes (a 4:2:0 JPEG 2000) says nothing. Fails before (no
    warning)."""
    base, root = http_server
    rgb = np.random.default_rng(7).integers(0, 256, (96, 64, 3), dtype=np.uint8)  # noise: the cut is mid-scan
    whole = io.BytesIO()
    Image.fromarray(rgb).save(whole, "JPEG", quality=90)
    folder = root / "shots"
    folder.mkdir()
    cut = folder / "cut.jpg"
    cut.write_bytes(whole.getvalue()[:len(whole.getvalue()) // 2])
    _jpeg2000_420(folder / "scan.jp2", _smooth_rgb(64, 48))
    assert cv2.imdecode(np.fromfile(cut, np.uint8), cv2.IMREAD_ANYCOLOR) is None  # FFmpeg's to decode
    said = "is damaged (cut short or corrupt): read with its unreadable parts concealed, and its results may be off"
    decoded, damaged = _ffmpeg_picture(np.frombuffer(whole.getvalue(), np.uint8))  # the whole file as FFmpeg reads it
    assert decoded is not None and not damaged
    with caplog.at_level(logging.WARNING, "pvt_deploy"):
        image = read_image(cut)
        assert image.shape == (96, 64, 3)
        assert np.array_equal(image[:16], decoded[:16])  # the rows before the cut read as the whole file's
        assert not np.array_equal(image[-16:], decoded[-16:])  # and those after it do not: concealed
        assert [r.getMessage() for r in caplog.records] == [f"{cut} {said} there"]
        caplog.clear()
        with open_source(folder) as source:
            assert [Path(f.path).name for f in source] == ["cut.jpg", "scan.jp2"]
        assert [r.getMessage() for r in caplog.records] == [f"{cut} {said} there"]
        caplog.clear()
        with open_source(f"{base}/shots/cut.jpg") as source:
            (at_url,) = [f.image for f in source]
        assert np.array_equal(at_url, image)
        assert [r.getMessage() for r in caplog.records] == [f"{base}/shots/cut.jpg {said} there"]
        caplog.clear()
        read_image(folder / "scan.jp2")
        with open_source(f"{base}/shots/scan.jp2") as source:
            assert len(list(source)) == 1
        assert caplog.records == []


def run_imported_inside_catch_warnings(imports: str, body: str, path: Path) -> subprocess.CompletedProcess[str]:
    """``body`` (Python, its file ``sys.argv[1]``: ``path``) run in a process of its own, with Python's default
    warning filters, after pvt_deploy and ``imports`` were imported inside a caller's ``warnings.catch_warnings()``,
    whose end drops the filters set at import."""
    script = ("import sys, warnings\n"
              "from pathlib import Path\n"
              "with warnings.catch_warnings():\n"
              "    warnings.simplefilter('ignore')\n"
              "    import pvt_deploy\n"
              f"    {imports}\n{body}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(Path(pvt_deploy.__file__).parents[1])  # the code under test, where the tests import it
    return subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=path.parent, env=env)


def test_pillows_warnings_stay_quiet_where_pvt_deploy_was_imported_inside_catch_warnings(tmp_path: Path) -> None:
    """io/sources quiets Pillow's warnings of a damaged EXIF block with filters set as it is imported; an import
    inside a caller's ``warnings.catch_warnings()`` (a common way to quiet torch's import warnings) lost them as the
    block ended, and reading a JPEG whose EXIF tag points past its end printed 'PIL/TiffImagePlugin.py:946:
    UserWarning: Tag data larger than file. Skipping tag 271' and its source line. They are put back before each
    read through Pillow: nothing on stderr, the picture turned as its orientation says, from the header as from the
    decode. In a process of its own, with Python's default warning filters. Fails before."""
    stored = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    past = struct.pack("<HHII", 0x010F, 2, 40, 500)  # Make: 40 bytes at 500, past the block's end
    exif = b"II*\0" + struct.pack("<IH", 8, 2) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + past + b"\0\0\0\0"
    Image.fromarray(stored).save(tmp_path / "past.jpg", quality=95, exif=b"Exif\0\0" + exif)
    done = run_imported_inside_catch_warnings(
        "from pvt_deploy.io.sources import open_source, picture_size, read_image",
        "print(read_image(sys.argv[1]).shape, picture_size(sys.argv[1]))\n"
        "with open_source(sys.argv[1]) as source:\n"
        "    print([f.image.shape for f in source])\n", tmp_path / "past.jpg")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout == "(60, 40, 3) (60, 40)\n[(60, 40, 3)]\n"
