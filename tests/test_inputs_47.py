"""Folders and files as users have them, made for real in tmp_path: what a folder of hidden or empty files says,
a fragmented mp4 cut in its trailing index, an ONNX file the disk fails to read."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from cli_run import run
from disk_faults import failing_disk
from PIL import Image
from test_tensorrt_build_fake import make_artifact

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import open_source
from pvt_deploy.runtimes.loader import describe_graphs


def fragmented_clip(path: Path, frames: int = 20) -> Path:
    """An mp4 as cameras, OBS and a browser's MediaRecorder write it (frag_keyframe+empty_moov): an empty index
    (moov) first, a moof and an mdat box a fragment, and last the fragments' random-access index (mfra)."""
    rng = np.random.default_rng(47)
    with av.open(str(path), "w", options={"movflags": "frag_keyframe+empty_moov"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(25), options={"preset": "ultrafast", "g": "5"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_a_fragmented_mp4_cut_in_its_trailing_index_runs_every_frame_without_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The mfra box lists the fragments' keyframes, for seeking; it is optional (FFmpeg writes none where its
    output cannot seek) and holds no frame. A file cut in it holds every frame, and warned 'truncated file?'."""
    whole = fragmented_clip(tmp_path / "whole.mp4")
    data = whole.read_bytes()
    mfra = data.rindex(b"mfra") - 4
    assert int.from_bytes(data[mfra:mfra + 4], "big") == len(data) - mfra  # the last box, to the end
    with open_source(whole) as source:
        pictures = [f.image for f in source]
    assert len(pictures) == 20
    cut = tmp_path / "cut.mp4"
    for end in (len(data) - 1, mfra + 8 + (len(data) - mfra - 8) // 2, mfra + 8):
        cut.write_bytes(data[:end])
        caplog.clear()
        with caplog.at_level(logging.WARNING), open_source(cut) as source:
            frames = list(source)
        assert len(frames) == 20 and all(np.array_equal(f.image, p) for f, p in zip(frames, pictures, strict=True))
        assert source.error is None and caplog.text == "", (end, caplog.text)  # type: ignore[attr-defined]
        with open_source(cut) as source:  # and seeking to frames (export --calib of a clip) finds them too
            found = source.seek_frames(lambda numbers: [numbers[3], numbers[-1]], always=True)  # type: ignore[attr-defined]
        assert found is not None and [f.index for f in found] == [3, 19]
        assert all(np.array_equal(f.image, pictures[f.index]) for f in found)
    cut.write_bytes(data[:mfra - 4])  # in the last fragment's frames: still a cut that lost frames
    with caplog.at_level(logging.WARNING), open_source(cut) as source:
        assert len(list(source)) < 20
    assert "the file ends inside its last box (mdat)" in caplog.text


def test_an_empty_gif_or_clip_in_a_folder_is_said_empty_not_a_video(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A copy or download that never started leaves 0 bytes: an empty .gif (no picture, so not a still GIF) was
    listed among the videos left out, as an empty .mp4 was; neither is a video."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "logo.gif").touch()
    with pytest.raises(InputError) as caught:
        open_source(folder)
    assert caught.value.args[0] == f"no images found in folder {folder}, only 1 empty file (logo.gif): 0 bytes"
    assert caught.value.hint == "a copy or download that never started: copy or download it again"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(folder / "IMG_0001.jpg")
    (folder / "VID_0001.mp4").touch()
    with av.open(str(folder / "VID_0002.mp4"), "w") as container:  # a real clip beside them is still a video
        stream = container.add_stream("mpeg4", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with caplog.at_level(logging.WARNING), open_source(folder) as source:
        assert [f.name for f in source] == ["IMG_0001.jpg"]
    assert (f"{folder}: running its 1 image; 1 video (VID_0002.mp4) left out (give each video on its own)"
            in caplog.text)
    assert f"{folder}: running its 1 image; 2 empty files (logo.gif, VID_0001.mp4) left out: 0 bytes" in caplog.text
    assert caplog.text.count("left out") == 2


APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 4000  # a Mac's ._NAME: no picture


def test_a_folder_of_hidden_pictures_only_says_they_are_hidden_not_that_it_holds_no_jpg(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """It said 'no images found' with the image types it looked for, .jpg among them, beside two .jpg files."""
    folder = tmp_path / "from a mac"
    folder.mkdir()
    (folder / "._IMG_0001.jpg").write_bytes(APPLE_DOUBLE)
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(folder / ".hidden.jpg")
    (folder / "notes.txt").write_text("not a picture\n")
    with pytest.raises(InputError) as caught:
        open_source(folder)
    assert caught.value.args[0] == (f"no images found in folder {folder}, only 2 hidden files (._IMG_0001.jpg, "
                                    ".hidden.jpg), which a folder leaves out as ls does")
    assert caught.value.hint == ("a Mac writes a ._NAME beside each photo it copies (its metadata, no picture); "
                                 "to run a hidden picture, give it by name")
    with open_source(folder / ".hidden.jpg") as source:  # as the hint says
        assert [f.image.shape for f in source] == [(32, 48, 3)]
    code, out, err = run(monkeypatch, capsys, "infer", str(folder), "--model", "pvt_v2_b0-cls", "--no-save")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "2 hidden files" in err and ".jpg, .jpeg" not in err


def test_a_folder_without_hidden_pictures_still_lists_the_image_types(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a picture\n")
    (tmp_path / ".notes.txt").write_text("hidden, and not a picture\n")
    with pytest.raises(InputError) as caught:
        open_source(tmp_path)
    assert caught.value.args[0] == f"no images found in folder {tmp_path}"
    assert caught.value.hint.startswith("image types: .avif, .bmp")


@pytest.fixture
def failing_disk_onnx(tmp_path: Path) -> Path:
    """An .onnx whose read fails with EIO, as a failing disk's does: Linux's /proc/self/mem read from offset 0
    (no memory mapped there) is a regular file whose read says 'Input/output error'."""
    return failing_disk(tmp_path / "model.onnx")


def test_an_onnx_file_the_disk_fails_to_read_is_said_unreadable_not_malformed(
        failing_disk_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """It said 'not a readable ONNX model ([Errno 5] Input/output error)': the disk failed, not the model."""
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photo)
    for args in (("info", str(failing_disk_onnx)), ("infer", str(photo), "--model", str(failing_disk_onnx))):
        code, out, err = run(monkeypatch, capsys, *args)
        assert (code, out, err) == (2, "", f"error: cannot read {failing_disk_onnx}: Input/output error\n")
    malformed = tmp_path / "malformed.onnx"
    malformed.write_bytes(b"\x08\x07" + b"\xff" * 64)
    code, out, err = run(monkeypatch, capsys, "info", str(malformed))
    assert code == 2 and out == "" and err.startswith(f"error: {malformed}: not a readable ONNX model (")


def test_info_graph_says_a_file_the_disk_fails_to_read_cannot_be_read(failing_disk_onnx: Path,
                                                                        tmp_path: Path) -> None:
    folder = make_artifact(tmp_path / "art")
    os.replace(failing_disk_onnx, folder / "model.onnx")
    (row,) = describe_graphs(folder, ["model.onnx"])
    assert row == {"file": "model.onnx", "format": "onnx", "error": "cannot read it: Input/output error",
                   "unreadable": True}


def test_a_picture_saved_under_txt_is_read_as_the_picture_not_as_a_list_of_files(tmp_path: Path) -> None:
    """A .txt is a list of files, one a line (Ultralytics' list source); a JPEG saved as photo.txt (a browser's
    'save as', a renamed attachment) was read as one, and refused naming its bytes: 'no such file: \\xff\\xd8...
    JFIF (and 14 more)'. Text has no NUL byte; a file with one is no list, and is read as any other file whose
    name does not say what it is: by its content."""
    photo = np.zeros((32, 48, 3), np.uint8)
    photo[:, :24] = 200
    misnamed = tmp_path / "photo.txt"
    Image.fromarray(photo).save(misnamed, format="JPEG", quality=95)
    with open_source(misnamed) as source:
        (frame,) = list(source)
    assert np.abs(frame.image.astype(int) - photo).max() < 10
    with open_source([misnamed]) as source:  # in a list of files, a picture, not a list given in a list
        assert [f.image.shape for f in source] == [(32, 48, 3)]
    binary = tmp_path / "data.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError) as caught:
        open_source(binary)
    assert str(caught.value) == f"{binary} is neither a readable image nor a video"
    listed = tmp_path / "list.txt"  # a list still is one
    listed.write_text(f"{misnamed}\n")
    with pytest.raises(InputError, match="is a list of files: a list takes image files"):
        open_source([listed])


def test_a_list_of_files_windows_powershell_wrote_in_utf16_runs_the_files_it_names(tmp_path: Path) -> None:
    """Windows PowerShell 5's 'dir -Name > list.txt' writes UTF-16 (a byte-order mark, then two bytes a letter,
    CRLF): each name was read with a NUL between its letters, 'no such file: \\xff\\xfea\\x00.\\x00j...'."""
    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("IMG_0001.jpg", "café.jpg"):
        Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(shots / name)
    for encoding in ("utf-16", "utf-16-be"):
        listing = shots / "list.txt"
        mark = "\ufeff" if encoding == "utf-16-be" else ""  # utf-16 writes its own (little-endian here)
        listing.write_bytes(f"{mark}IMG_0001.jpg\r\ncafé.jpg\r\n".encode(encoding))
        assert listing.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
        with open_source(listing) as source:
            assert [f.name for f in source] == ["IMG_0001.jpg", "café.jpg"]


def test_info_of_an_export_whose_onnx_the_disk_fails_to_read_names_the_file(
        failing_disk_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An export folder's files are hashed (to check them against its manifest) before their graphs are read: a
    read that failed there said 'error: Input/output error (pvt-deploy --verbose COMMAND ... shows where)',
    naming no file, as a file object's read raises its OSError without the file's name."""
    folder = make_artifact(tmp_path / "art")
    os.replace(failing_disk_onnx, folder / "model.onnx")
    code, out, err = run(monkeypatch, capsys, "info", str(folder))
    assert (code, out, err) == (2, "", f"error: cannot read {folder / 'model.onnx'}: Input/output error\n")


def test_an_empty_gif_in_a_list_of_files_is_said_empty_not_a_video(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The whole list was refused: 'logo.gif is a video: a list takes image files'. Now as an empty .jpg in it."""
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photo)
    (tmp_path / "logo.gif").touch()
    (tmp_path / "logo.jpg").touch()
    for empty in ("logo.gif", "logo.jpg"):
        caplog.clear()
        with caplog.at_level(logging.WARNING), open_source([photo, tmp_path / empty]) as source:
            assert [f.name for f in source] == ["IMG_0001.jpg"]
        assert f"the list: running its 1 image; 1 empty file ({tmp_path / empty}) left out: 0 bytes" in caplog.text
