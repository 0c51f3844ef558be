"""Inputs users really have, made for real in tmp_path: recordings cut short, and what infer says of them."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from cli_run import run
from PIL import Image

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import as_rgb_array, open_source, picture_size, read_image


def recording(path: Path, frames: int = 30) -> Path:
    """An H.264 mp4 as a camera writes it: frames first, the index (moov box) last, written when it stops."""
    with av.open(str(path), "w") as container:  # no +faststart: the moov box after the frames
        stream = container.add_stream("libx264", rate=Fraction(25), options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 6 * i, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("kept", [0.5, 0.9])
def test_a_recording_cut_before_its_index_says_it_is_cut_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kept: float) -> None:
    whole = recording(tmp_path / "whole.mp4")
    with open_source(whole) as source:  # the file whole opens, and its moov box is after its frames
        assert len(list(source)) == 30
    data = whole.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(InputError, match=r"cut\.mp4 is cut short: it holds frames but not the index \(moov box\)"):
        open_source(cut)
    code, out, err = run(monkeypatch, capsys, "infer", str(cut), "--model", "pvt_v2_b0-cls", "--no-save")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {cut} is cut short") and err.count("\n") == 1, err


def test_a_file_that_is_no_mp4_is_still_said_undecodable(tmp_path: Path) -> None:
    for name, content in [("text.mp4", b"this is plain text, not a video at all" * 20),
                          ("zeros.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=f"cannot decode {tmp_path / name} as a video"):
            open_source(tmp_path / name)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that takes connections and never says a word (a wrong port, a hung camera)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http", "rtmp"])
def test_a_stream_that_never_answers_says_so_in_its_time(silent_server: int, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{silent_server}/cam"
    started = time.monotonic()
    with pytest.raises(InputError) as caught:
        open_source(url, timeout=1.0)
    assert str(caught.value) == f"cannot open stream {url}: no answer within 1 s"  # (said only once 1 s is up)
    # what is checked here is that it gives up rather than waits on a server that never answers: 60 s is far
    # beyond any load, not a measure of how promptly it gives up
    assert time.monotonic() - started < 60


def test_a_folder_runs_the_pictures_ls_shows_not_its_hidden_files(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Mac copying photos to a USB stick or a share writes ._NAME beside each (its metadata, no picture)."""
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[:, :32] = 200
    folder = tmp_path / "from a mac"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "IMG_0001.jpg")
    (folder / "._IMG_0001.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 4000)
    Image.fromarray(photo).save(folder / ".thumbnail.png")
    with caplog.at_level(logging.WARNING), open_source(folder) as source:
        assert source.frames == 1
        frames = list(source)
    assert [f.name for f in frames] == ["IMG_0001.jpg"]
    assert np.abs(frames[0].image.astype(int) - photo).max() < 10
    assert caplog.text == ""


@pytest.mark.parametrize("name", ["photos", "trip [2024]", "it's"])
def test_a_folder_of_folders_of_photos_says_so_and_the_glob_it_gives_runs_them(tmp_path: Path, name: str) -> None:
    """The glob given runs those photos when pasted into a shell, also for a folder whose name has a glob's
    brackets (before, 'trip [2024]/**/*' matched nothing) or a quote."""
    import shlex
    import subprocess

    photos = tmp_path / name
    for day in ("2026-12-01", "2026-12-02"):
        (photos / day).mkdir(parents=True)
        Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photos / day / "IMG_0001.jpg")
    with pytest.raises(InputError) as caught:
        open_source(photos)
    first = photos / "2026-12-01" / "IMG_0001.jpg"
    assert caught.value.args[0] == f"no images found in folder {photos}, only in folders in it (such as {first})"
    given = caught.value.hint.split("give a glob: ", 1)[1]
    assert caught.value.hint == f"a folder runs its own images; for those of its folders too, give a glob: {given}"
    glob = subprocess.run(["sh", "-c", f"printf %s {given}"], capture_output=True, text=True, check=True).stdout
    assert shlex.split(given) == [glob] and glob.endswith("/**/*")  # one word, as the shell reads it
    with open_source(glob) as source:
        assert [Path(f.path).parent.name for f in source] == ["2026-12-01", "2026-12-02"]


def test_an_empty_file_says_it_is_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A copy or download that never started leaves a file of 0 bytes: not 'corrupt', nor 'invalid data'."""
    photo, clip = tmp_path / "IMG_0002.jpg", tmp_path / "VID_0002.mp4"
    for path in (photo, clip):
        path.touch()
        with pytest.raises(InputError) as caught:
            open_source(path)
        assert caught.value.args[0] == f"empty file {path}: 0 bytes"
    folder = tmp_path / "camera"
    folder.mkdir()
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(folder / "IMG_0001.jpg")
    (folder / "IMG_0002.jpg").touch()
    with caplog.at_level(logging.WARNING), open_source(folder) as source:
        assert [f.name for f in source] == ["IMG_0001.jpg"]
    assert f"{folder}: running its 1 image; 1 empty file (IMG_0002.jpg) left out: 0 bytes" in caplog.text


def test_standard_input_is_said_not_read_and_a_file_named_dash_is(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as caught:
        open_source("-")
    assert caught.value.args[0] == "'-' (standard input) is not a source: pictures and videos are read from files"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(tmp_path / "-", format="PNG")
    with open_source("-") as source:
        assert [f.image.shape for f in source] == [(32, 48, 3)]


def test_an_avif_photo_is_read_upright_as_its_jpeg_is_and_a_folder_runs_it(tmp_path: Path) -> None:
    """An AVIF says its turn in its irot/imir properties (Pillow writes an EXIF orientation as those)."""
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow cannot write AVIF")
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[:24, :16] = (250, 30, 30)  # a red corner shows which way it turned
    turned = Image.Exif()
    turned[0x0112] = 6  # turn a quarter clockwise to show: a phone held upright
    folder = tmp_path / "phone"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "IMG_0001.avif", exif=turned.tobytes(), quality=95)
    Image.fromarray(photo).save(tmp_path / "IMG_0001.jpg", exif=turned.tobytes(), quality=95)
    avif, jpeg = read_image(folder / "IMG_0001.avif"), read_image(tmp_path / "IMG_0001.jpg")
    assert avif.shape == jpeg.shape == (64, 48, 3) and picture_size(folder / "IMG_0001.avif") == (64, 48)
    assert np.abs(avif.astype(int) - jpeg).max(axis=-1).mean() < 2  # the same picture, the same way up
    with open_source(folder) as source:
        assert [(f.name, f.image.shape) for f in source] == [("IMG_0001.avif", (64, 48, 3))]


def gif(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    """A GIF of one frame a colour each, a red band across its top."""
    frames = []
    for colour in colours:
        picture = np.full((48, 64, 3), colour, np.uint8)
        picture[:8] = (255, 0, 0)
        frames.append(Image.fromarray(picture))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def test_a_folder_of_gifs_reads_each_gifs_header_once_to_list_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing a folder asked of each GIF whether it is an image and whether it is a video, and Pillow answers
    by reading through its first frame: every GIF was opened twice (102 still 1080p GIFs: 1.7 s). Once now;
    a GIF changed since (animated now) is read again."""
    import PIL.Image

    frames = [Image.fromarray(np.full((48, 64, 3), c, np.uint8)) for c in (30, 120)]
    frames[0].save(tmp_path / "still.gif")
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / "a.png")
    opened: list[str] = []
    real_open = PIL.Image.open

    def counted(fp: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(str(fp)).name)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counted)
    with open_source(tmp_path) as source:
        assert sorted(Path(p).name for p in source.items) == ["a.png", "still.gif"]  # type: ignore[arg-type]
    assert sorted(n for n in opened if n.endswith(".gif")) == ["anim.gif", "still.gif"]
    frames[0].save(tmp_path / "still.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    os.utime(tmp_path / "still.gif", ns=(1, 1))  # another time, as a file written again has
    opened.clear()
    with pytest.raises(InputError, match="only 2 videos"):
        open_source(tmp_path / "*.gif")
    assert sorted(opened) == ["still.gif"]


def test_a_still_gif_is_an_image_and_an_animated_one_a_video(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A GIF of one picture (a logo, a chart) was read as a video: infer wrote logo.mp4, one frame, and a
    folder left it out as a video."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    still, animated = gif(folder / "logo.gif", [(0, 0, 255)]), gif(folder / "spinner.gif", [(0, 0, 255), (0, 255, 0)])
    with open_source(still) as source:
        assert source.kind == "image"
        [frame] = list(source)
    assert frame.image.shape == (48, 64, 3) and frame.timestamp is None
    assert frame.image[0, 0].tolist() == [255, 0, 0] and frame.image[40, 30].tolist() == [0, 0, 255]
    with open_source(animated) as source:
        assert source.kind == "video" and len(list(source)) == 2
    with open_source(folder) as source:  # the animated one left out as a video, as ever
        assert [f.name for f in source] == ["logo.gif"]
    with pytest.raises(InputError, match="spinner.gif is a video"):
        open_source([still, animated])
    code, _, err = run(monkeypatch, capsys, "infer", str(still), "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                       "-o", str(tmp_path / "out"), "--save-json")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["logo.jpg", "predictions.jsonl"]
    assert Image.open(tmp_path / "out" / "logo.jpg").size == (64, 48)


def test_a_still_gif_reads_where_opencv_has_no_gif_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    still = gif(tmp_path / "logo.gif", [(0, 0, 255)])
    with_opencv = read_image(still)
    monkeypatch.setattr(cv2, "imdecode", lambda *args: None)  # OpenCV before 4.11
    assert np.array_equal(read_image(still), with_opencv)


def test_a_dataset_split_folder_is_the_set_of_pictures_infer_runs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """export --calib data.yaml listed its split folder with its own rglob and suffix test: a Mac's ._NAME
    files were 'unreadable images' and a still GIF was left out, where infer runs the photo and the GIF."""
    from pvt_deploy.export.calibration import usable_images

    val = tmp_path / "images" / "val"
    (val / "day2").mkdir(parents=True)
    (val / ".cache").mkdir()
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[:, :32] = 200
    for name in ("IMG_0001.jpg", "day2/IMG_0002.jpg", ".cache/IMG_0001.jpg", ".thumbnail.png"):
        Image.fromarray(photo).save(val / name)
    (val / "._IMG_0001.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 4000)
    gif(val / "logo.gif", [(0, 0, 255)])
    gif(val / "spinner.gif", [(0, 0, 255), (0, 255, 0)])  # a video, left out
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\nval: images/val\n")
    (tmp_path / "val.txt").write_text("images/val/IMG_0001.jpg\nimages/val/logo.gif\n")
    (tmp_path / "listed.yaml").write_text(f"path: {tmp_path}\nval: val.txt\n")
    with caplog.at_level(logging.WARNING):
        split = usable_images(tmp_path / "data.yaml")
        listed = usable_images(tmp_path / "listed.yaml")
    assert [p.relative_to(val).as_posix() for p in split] == ["day2/IMG_0002.jpg", "IMG_0001.jpg", "logo.gif"]
    assert [p.name for p in listed] == ["IMG_0001.jpg", "logo.gif"]
    assert caplog.text == ""
    with open_source(val) as source:  # infer's listing of the folder's own pictures: the same ones
        assert [p.name for p in source.items] == ["IMG_0001.jpg", "logo.gif"]  # type: ignore[attr-defined]


def test_calibration_frames_asked_past_a_clips_length_are_weighed_as_the_frames_it_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export --calib clip.mp4 --calib-size 100000 on a 75-frame clip was refused as needing 69.1 GB: the
    memory check weighed the frames asked for, where the 75 the clip holds are all that are read."""
    from pvt_deploy.export.calibration import usable_images
    from pvt_deploy.utils import cpu

    clip = recording(tmp_path / "clip.mp4", frames=30)  # 96x64: 100000 frames kept would be 1.8 GB
    monkeypatch.setattr(cpu, "available_memory", lambda: 1 << 30)
    frames = usable_images(clip, 100000)
    assert [f.index for f in frames] == list(range(30))  # type: ignore[union-attr]
    monkeypatch.setattr(cpu, "available_memory", lambda: 500_000)  # less than the 1.3 MB of 30 frames kept: weighed
    with pytest.raises(InputError, match=r"clip.mp4: a 96x64 video needs about 1 MB of memory"):
        usable_images(clip, 100000)


def test_the_image_types_a_folder_is_searched_for_name_a_still_gif(tmp_path: Path) -> None:
    """A still GIF is an image (0c73a69), but 'no images found' listed the image types without .gif."""
    from pvt_deploy.export.calibration import dataset_images

    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "notes.txt").write_text("not a picture\n")
    (tmp_path / "data.yaml").write_text("val: val\n")
    with pytest.raises(InputError) as infer_says:
        open_source(tmp_path / "val")
    with pytest.raises(InputError) as calib_says:
        dataset_images(tmp_path / "data.yaml")
    for caught in (infer_says, calib_says):
        assert caught.value.hint is not None and caught.value.hint.startswith("image types: .avif, .bmp")
        assert ", .gif (one picture), " in caught.value.hint and ".png" in caught.value.hint


def test_an_animated_webp_or_a_tiff_of_pages_says_it_runs_its_first_frame_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An animated WebP and a multi-page TIFF ran their first frame only, unsaid, where an animated GIF runs
    as a video (FFmpeg decodes no animated WebP; a TIFF's pages are no clip): a warning, once a file."""
    from pvt_deploy.export.calibration import usable_images

    frames = [Image.fromarray(np.full((48, 64, 3), c, np.uint8)) for c in (30, 120, 240)]
    folder = tmp_path / "shots"
    folder.mkdir()
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(folder / "scan.tif", save_all=True, append_images=frames[1:2])
    frames[0].save(folder / "still.webp")
    frames[0].save(folder / "still.tif")
    with caplog.at_level(logging.WARNING), open_source(folder) as source:
        read = {f.name: f.image for f in source}
    assert sorted(read) == ["anim.webp", "scan.tif", "still.tif", "still.webp"]
    assert np.abs(read["anim.webp"].astype(int) - 30).max() < 8 and np.abs(read["scan.tif"].astype(int) - 30).max() == 0
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{folder / 'anim.webp'} holds 3 frames (an animated picture, or pages): running its first only; "
                    "save its frames as images to run each",
                    f"{folder / 'scan.tif'} holds 2 frames (an animated picture, or pages): running its first only; "
                    "save its frames as images to run each"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # export reads each twice (checked, then batched): said once a file
        for picture in usable_images(folder):
            read_image(picture)  # type: ignore[arg-type]
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):  # pictures' bytes (an upload each): each said
        for _ in range(2):
            as_rgb_array((folder / "anim.webp").read_bytes())
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["<bytes> holds 3 frames"] * 2


def test_a_jpeg_with_a_second_picture_in_it_is_one_photo_without_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A JPEG carrying a second picture after the first (MPO: an Android Ultra HDR photo's gain map, a 3D
    camera's other eye), which Pillow counts as 2 frames, was warned of as 'holds 2 frames (an animated
    picture, or pages)' on every such photo. It is one photo, the first picture, said nothing of."""
    first, second = (Image.fromarray(np.full((48, 64, 3), c, np.uint8)) for c in (40, 200))
    photo = tmp_path / "PXL_0001.jpg"
    first.save(photo, "MPO", save_all=True, append_images=[second])
    with Image.open(photo) as opened:
        assert opened.format == "MPO" and opened.n_frames == 2  # what the phone's file is, as Pillow reads it
    with caplog.at_level(logging.WARNING), open_source(tmp_path) as source:
        read = [f.image for f in source]
    assert len(read) == 1 and np.abs(read[0].astype(int) - 40).max() < 8
    assert caplog.text == ""


def heic(path: Path) -> Path:
    """A file as an iPhone's HEIC photo begins (its ftyp box, brand heic, then its meta box), which neither
    OpenCV nor the FFmpeg PyAV brings decodes."""
    ftyp = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    path.write_bytes(ftyp + b"\x00\x00\x00\x20meta" + b"\x00" * 24 + bytes(range(256)) * 8)
    return path


def test_heic_photos_are_said_not_read_with_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A folder of an iPhone's .heic photos said 'no images found', as if it were empty, and a lone one that
    it was 'neither a readable image nor a video'."""
    folder = tmp_path / "iphone"
    folder.mkdir()
    lone = heic(folder / "IMG_0001.HEIC")
    heic(folder / "IMG_0002.heic")
    with pytest.raises(InputError) as caught:
        open_source(folder)
    assert caught.value.args[0] == (f"no images found in folder {folder}, only 2 HEIC photos (IMG_0001.HEIC, "
                                    "IMG_0002.heic), a format pvt-deploy does not read")
    assert caught.value.hint is not None and caught.value.hint.startswith("convert to JPEG (macOS: sips")
    for given in (lone, [lone]):
        with pytest.raises(InputError) as caught:
            open_source(given)
        assert caught.value.args[0] == f"{lone} is a HEIC photo (an iPhone's format), which pvt-deploy does not read"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(folder / "IMG_0003.jpg")
    with caplog.at_level(logging.WARNING), open_source(folder) as source:
        assert [f.name for f in source] == ["IMG_0003.jpg"]
    assert "running its 1 image; 2 HEIC photos (IMG_0001.HEIC, IMG_0002.heic) left out" in caplog.text
    code, _, err = run(monkeypatch, capsys, "infer", str(lone), "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                       "-o", str(tmp_path / "out"))
    assert code == 2 and "is a HEIC photo (an iPhone's format), which pvt-deploy does not read" in err
    assert not (tmp_path / "out").exists()


def camera_clip(path: Path, movflags: str) -> Path:
    """60 frames of noise (of about the same size, as a camera's are), a keyframe every 10th, in an mp4 of
    ``movflags``: frag_keyframe+empty_moov is a fragmented mp4 as cameras, OBS and a browser's MediaRecorder
    write it, an empty index (moov) first, then a moof box (the fragment's index) and an mdat box (its
    frames) for every keyframe; +faststart an mp4 whose index is before its frames."""
    rng = np.random.default_rng(46)
    with av.open(str(path), "w", options={"movflags": movflags}) as container:
        stream = container.add_stream("libx264", rate=Fraction(25), options={"preset": "ultrafast", "g": "10"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(("movflags", "kept"), [("frag_keyframe+empty_moov", 0.5),
                                                ("frag_keyframe+empty_moov", 0.999), ("+faststart", 0.999)])
def test_a_fragmented_recording_cut_short_says_so_and_runs_the_frames_before_the_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, movflags: str, kept: float) -> None:
    """A fragmented mp4 declares the fragments it holds: one cut in a fragment's frames (mdat) lost a frame or
    two of what it declares, and ran 29 (at 50%) or 59 (at 99.9%) of its 60 frames with no word of the cut;
    a faststart mp4 cut in its last frame said that frame could not be decoded (damaged file?). Either file's
    last box runs past its end: it was cut, and says so as a truncated file does."""
    whole = camera_clip(tmp_path / "whole.mp4", movflags)
    with caplog.at_level(logging.WARNING), open_source(whole) as source:
        pictures = [f.image for f in source]
    assert len(pictures) == 60 and source.error is None and caplog.text == ""  # type: ignore[attr-defined]
    data = whole.read_bytes()
    end = int(len(data) * kept)
    with av.open(str(whole)) as container:  # the frames whose bytes all lie before the cut
        before = sum(1 for p in container.demux(video=0) if p.size and p.pos is not None and p.pos + p.size <= end)
    assert 0 < before < 60
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:end])
    with caplog.at_level(logging.WARNING), open_source(cut) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(before))
    assert all(np.array_equal(f.image, picture) for f, picture in zip(frames, pictures, strict=False))
    error = source.error  # type: ignore[attr-defined]
    assert re.fullmatch(r"the file ends inside its last box \(mdat\), \d+ of \d+ bytes \(truncated file\?\)", error), error
    assert f"cut.mp4: {error}" in caplog.text and "damaged" not in caplog.text
    code, out, err = run(monkeypatch, capsys, "infer", str(cut), "--model", "pvt_v2_b0-cls", "--imgsz", "32",
                         "-o", str(tmp_path / "out"), "--save-json")
    assert code == 0, err
    assert f"source ended early: {error}" in " ".join((out + err).split()), out + err
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == before
