"""Videos, pictures and dataset files as users meet them, made for real in tmp_path: a clip tagged with a colorspace
FFmpeg's converter has no matrix for, a COCO file saved as UTF-32, photos whose EXIF block is damaged."""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from cli_run import run
from PIL import Image
from test_review_49a import tiff_exif, with_exif

import pvt_deploy
from pvt_deploy.data import class_names
from pvt_deploy.errors import InputError
from pvt_deploy.evaluate import _coco_dataset
from pvt_deploy.io.sources import _frame_to_rgb, open_source


def _clip(path: Path, pix_fmt: str, colorspace: int) -> Path:
    """Three frames of smooth colour, lossless H.264 (x264 at qp 0) as ``pix_fmt``, tagged with ``colorspace``
    (its VUI's matrix coefficients, which the decoder gives each frame)."""
    rng = np.random.default_rng(49)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=25, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        stream.codec_context.colorspace = colorspace
        for i in range(3):
            rgb = np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), 8, 0), 8, 1)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.colorspace, frame.pts, frame.time_base = colorspace, i, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(path)) as container:  # the tag is in the file, on every decoded frame
        assert {int(f.colorspace) for f in container.decode(video=0)} == {colorspace}
    return path


def _frames(path: Path) -> list[np.ndarray]:
    with open_source(str(path)) as source:
        return [frame.image for frame in source]


@pytest.mark.parametrize(("pix_fmt", "colorspace", "tag"), [
    ("yuv420p", 8, "YCgCo (8)"), ("yuv420p", 10, "BT.2020 constant luminance (10)"), ("yuv420p", 14, "ICtCp (14)"),
    ("yuv420p10le", 8, "YCgCo (8)"), ("yuv444p", 14, "ICtCp (14)")])
def test_a_video_tagged_with_a_colorspace_ffmpeg_has_no_matrix_for_plays_as_bt601_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, pix_fmt: str, colorspace: int, tag: str) -> None:
    """FFmpeg's converter (swscale, 8.0) refuses YUV tagged YCgCo, BT.2020 constant luminance, ICtCp or a reserved
    value: reading such a clip ended in 'error: Operation not supported', at 8 bits as at 10. ffplay shows it (by
    SDL's default matrix, BT.601, as swscale before 8.0 did): its frames are read so, the same pixels as the same
    samples untagged, with one warning for the video naming the tag."""
    if "libx264" not in av.codecs_available:
        pytest.skip("this FFmpeg has no libx264 encoder")
    tagged = _clip(tmp_path / "tagged.mkv", pix_fmt, colorspace)
    untagged = _clip(tmp_path / "untagged.mkv", pix_fmt, 2)  # AVCOL_SPC_UNSPECIFIED: BT.601, FFmpeg's default
    with caplog.at_level(logging.WARNING):
        frames = _frames(tagged)
    expected = _frames(untagged)
    assert len(frames) == 3 and all(np.array_equal(f, e) for f, e in zip(frames, expected, strict=True))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [f"{tagged}: its frames are tagged with the colorspace {tag}, which FFmpeg's converter has no "
                    "matrix for: read with BT.601's, as ffplay shows them (its colours may be off)"]


def test_a_frame_of_a_reserved_colorspace_is_read_as_bt601(caplog: pytest.LogCaptureFixture) -> None:
    """A reserved value (3, as a damaged or hand-written VUI says) is refused by swscale as YCgCo is; converted by
    BT.601 too, named 'reserved (3)'. A picture FFmpeg decodes warns each time (no video to say it once for)."""
    rgb = np.random.default_rng(3).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    expected = _frame_to_rgb(frame)
    frame.colorspace = 3
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(_frame_to_rgb(frame), expected)
        assert np.array_equal(_frame_to_rgb(frame), expected)
    assert [r.getMessage() for r in caplog.records] == [
        "a picture FFmpeg decodes: its frames are tagged with the colorspace reserved (3), which FFmpeg's converter "
        "has no matrix for: read with BT.601's, as ffplay shows them (its colours may be off)"] * 2
    assert int(frame.colorspace) == 3  # the frame keeps its tag


def test_infer_runs_a_ycgco_video_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """infer on a YCgCo clip said 'error: Operation not supported', exit 1; it runs its three frames, exit 0, and
    says the tag once."""
    if "libx264" not in av.codecs_available:
        pytest.skip("this FFmpeg has no libx264 encoder")
    clip = _clip(tmp_path / "ycgco.mkv", "yuv420p", 8)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(monkeypatch, capsys, "infer", str(clip), "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                         "--no-save")
    assert code == 0, err
    assert "Operation not supported" not in out + err and "3 frames in" in out + err
    said = [r.getMessage() for r in caplog.records if r.name == "pvt_deploy.io.sources"]
    assert said == [f"{clip}: its frames are tagged with the colorspace YCgCo (8), which FFmpeg's converter has no "
                    "matrix for: read with BT.601's, as ffplay shows them (its colours may be off)"]


def test_a_coco_file_saved_as_utf32_is_known_as_coco(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A COCO file saved as UTF-32 with its mark (LE: FF FE 00 00, which begins with UTF-16 LE's FF FE) was read as
    UTF-16 when given as pictures, and BE's not at all: 'neither a readable image nor a video', where val reads it
    (json.loads knows UTF-32). It is said to be a COCO file, as in UTF-8 and UTF-16."""
    (tmp_path / "val2017").mkdir()
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(tmp_path / "val2017" / "a.jpg")
    text = json.dumps({"info": {"description": "café"}, "images": [{"id": 1, "file_name": "a.jpg", "width": 48,
                       "height": 32}], "annotations": [], "categories": [{"id": 1, "name": "person"}]},
                      ensure_ascii=False)
    for name, data in (("le", codecs.BOM_UTF32_LE + text.encode("utf-32-le")),
                       ("be", codecs.BOM_UTF32_BE + text.encode("utf-32-be"))):
        coco = tmp_path / f"utf32-{name}_val2017.json"
        coco.write_bytes(data)
        dataset = _coco_dataset(coco, class_names("coco"), None, None)  # val reads it
        assert dataset.images == [tmp_path / "val2017" / "a.jpg"] and dataset.coco is not None, name
        with pytest.raises(InputError) as caught:
            open_source(coco)
        assert str(caught.value) == (f"{coco} looks like a COCO annotation file (JSON), not pictures or a video "
                                     f"(pvt-deploy val takes it: pvt-deploy val {coco} --model EXPORT; to run or "
                                     f"compare on its pictures, give their folder ({tmp_path / 'val2017'}))"), name
    code, out, err = run(monkeypatch, capsys, "infer", str(coco), "--model", "pvt_v2_b0-cls", "--imgsz", "32")
    assert code == 2 and out == "" and err.startswith(f"error: {coco} looks like a COCO annotation file (JSON)")
    assert err.count("\n") == 1, err


def test_infer_on_photos_whose_exif_is_damaged_prints_no_python_warning(tmp_path: Path) -> None:
    """A PNG or JPEG whose EXIF block is cut inside its list of tags, or names a tag's data past its end, is read as
    it should be (unturned where its orientation is lost, turned where that is whole), but Pillow, reading the
    orientation, printed its UserWarning on stderr: 'site-packages/PIL/TiffImagePlugin.py:982: UserWarning: Corrupt
    EXIF data.  Expecting to read 12 bytes but only got 2.' and its source line. The real CLI, in a process of its
    own with Python's default warning filters, prints none."""
    stored = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    pictures = tmp_path / "photos"
    pictures.mkdir()
    png = io.BytesIO()
    Image.fromarray(stored).save(png, "PNG")
    (pictures / "cut.png").write_bytes(with_exif(png.getvalue(), tiff_exif(6)[:12]))  # cut inside its one tag
    Image.fromarray(stored).save(pictures / "cut.jpg", quality=95, exif=b"Exif\0\0" + tiff_exif(6)[:12])
    past = struct.pack("<HHII", 0x010F, 2, 40, 500)  # Make: 40 bytes at 500, past the block's end
    exif = b"II*\0" + struct.pack("<IH", 8, 2) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + past + b"\0\0\0\0"
    Image.fromarray(stored).save(pictures / "past.jpg", quality=95, exif=b"Exif\0\0" + exif)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(Path(pvt_deploy.__file__).parents[1])  # the code under test, where the tests import it
    done = subprocess.run([sys.executable, "-m", "pvt_deploy", "infer", str(pictures), "--model", "pvt_v2_b0-cls",
                           "--imgsz", "32", "--no-save"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Warning:" not in said and "warnings.warn" not in said and "EXIF" not in said, said
    # the cut ones unturned (60 wide), the one whose orientation is whole turned by it (6: 40 wide)
    assert "cut.png 60x40" in said and "cut.jpg 60x40" in said and "past.jpg 40x60" in said, said
