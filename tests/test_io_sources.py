"""Sources: every input kind, made for real in tmp_path and decoded for real (OpenCV, PyAV, HTTP)."""

from __future__ import annotations

import functools
import http.server
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import (
    Frame,
    PyAVReader,
    Reconnect,
    StreamSource,
    is_live,
    is_url,
    open_source,
    picture_size,
    read_image,
    redact_url,
    video_joins,
)

FPS = 25
STEP = 6  # grey-level step between frames in make_video (40 frames fit in uint8)


def make_video(path: Path, frames: int = 30, size: tuple[int, int] = (96, 64), rotation: int = 0,
               trim: int = 0) -> Path:
    """An H.264 mp4 (faststart, like our writer's) whose frame i is a flat grey of level STEP*i, so a
    decoded frame tells which frame it is. Written with PyAV directly, not with our VideoWriter,
    so source tests do not depend on sink code. ``trim``: the first frames are stored but cut by
    the edit list (their times are negative), as ``ffmpeg -ss 10 -i in.mp4 -c copy`` writes."""
    with av.open(str(path), "w", container_options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(
            "libx264", rate=Fraction(FPS), options={"crf": "18", "preset": "ultrafast"}
        )
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)

        def mux(packets: list[av.Packet]) -> None:
            for packet in packets:
                if trim and packet.pts is not None and packet.dts is not None and packet.time_base:
                    shift = round(trim / (packet.time_base * FPS))
                    packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                container.mux(packet)

        for i in range(frames):
            image = np.full((size[1], size[0], 3), STEP * i, np.uint8)
            if rotation:
                image[:, : size[0] // 4] = 255  # a white left band shows which way frames turned
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            mux(stream.encode(frame))
        mux(stream.encode(None))
    return path


def grey_level(frame: Frame) -> float:
    return float(np.median(frame.image))


def write_png(path: Path, array: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", array)
    assert ok
    data.tofile(str(path))
    return path


# --- images ---------------------------------------------------------------------------------


def test_single_image_is_rgb_and_unicode_path_works(tmp_path: Path) -> None:
    bgr = np.zeros((10, 12, 3), np.uint8)
    bgr[:] = (255, 0, 0)  # blue in OpenCV's BGR
    path = write_png(tmp_path / "фото ü.png", bgr)
    with open_source(path) as source:
        assert source.kind == "image" and source.size == (12, 10) and source.frames == 1
        (frame,) = list(source)
    assert frame.image.shape == (10, 12, 3) and frame.image.dtype == np.uint8
    assert tuple(frame.image[0, 0]) == (0, 0, 255)  # RGB: blue last
    assert frame.index == 0 and frame.path == str(path) and frame.name == "фото ü.png"
    assert frame.timestamp is None


def test_grey_alpha_and_16bit_images_become_rgb8(tmp_path: Path) -> None:
    grey = read_image(write_png(tmp_path / "g.png", np.full((4, 5), 77, np.uint8)))
    assert grey.shape == (4, 5, 3) and (grey == 77).all()
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 2], bgra[..., 3] = 200, 0  # red, fully transparent
    rgba = read_image(write_png(tmp_path / "a.png", bgra))
    assert rgba.shape == (4, 5, 3) and tuple(rgba[0, 0]) == (200, 0, 0)
    deep = read_image(write_png(tmp_path / "d.png", np.full((4, 5, 3), 65535 // 2, np.uint16)))
    assert deep.dtype == np.uint8 and (deep == 127).all()  # 32767/257 = 127.5 -> scaled, not truncated


def test_a_half_transparent_tiff_reads_as_the_same_png_and_webp_do(tmp_path: Path) -> None:
    """An RGBA TIFF with an unassociated alpha (as Pillow and editors write it) read darkened by its alpha
    through OpenCV (200 at alpha 128 read 100); PNG and WebP give the stored colour, and so must TIFF,
    turned by its orientation tag as OpenCV turns it."""
    rgba = np.zeros((2, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 100, 50
    rgba[0, :, 3] = (0, 1, 128, 255)  # transparent to opaque
    rgba[1, :, 3] = 128
    rgba[1, 0, :3] = 255  # a mark at the bottom left, to see the turn
    picture = Image.fromarray(rgba, "RGBA")
    picture.save(tmp_path / "a.png")
    picture.save(tmp_path / "a.webp", lossless=True, exact=True)  # keeps a transparent pixel's colour
    picture.save(tmp_path / "a.tiff")
    expected = rgba[..., :3]
    for name in ("a.png", "a.webp", "a.tiff"):
        assert (read_image(tmp_path / name) == expected).all(), name
    picture.save(tmp_path / "turned.tiff", tiffinfo={0x0112: 6})  # "rotate 90 CW to display"
    assert (read_image(tmp_path / "turned.tiff") == np.rot90(expected, -1)).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    landscape = np.zeros((20, 40, 3), np.uint8)
    landscape[:, :10] = 255  # white band on the left
    image = Image.fromarray(landscape)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    upright = read_image(path)
    assert upright.shape == (40, 20, 3)
    assert upright[:10].mean() > 200 and upright[-10:].mean() < 50  # band is now on top


def test_folder_skips_corrupt_image_sorts_naturally_and_ignores_other_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in (1, 2, 10):
        write_png(tmp_path / f"frame_{i}.png", np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "frame_3.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "nested.png", np.zeros((8, 8, 3), np.uint8))  # not recursive
    (tmp_path / "frame_4.jpg").symlink_to(tmp_path / "gone.jpg")  # a dangling link: unreadable too, not unmentioned
    with caplog.at_level(logging.WARNING), open_source(tmp_path) as source:
        assert source.kind == "images" and source.frames == 5
        frames = list(source)
    assert [Path(f.path).name for f in frames] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert [f.index for f in frames] == [0, 1, 4]  # index into the sorted file list
    assert source.skipped == 2
    assert "frame_3.jpg" in caplog.text and "frame_4.jpg" in caplog.text


def test_a_picture_bigger_than_the_memory_free_is_refused_before_it_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A 1 MB PNG declaring 20000x20000 was decoded whole (GBs): on a small box the OOM killer ended the
    run with no word. Its header's size is now weighed against the memory free first (faked small here)."""
    from pvt_deploy.io import sources
    from pvt_deploy.utils import cpu

    write_png(tmp_path / "a.png", np.full((48, 64, 3), 90, np.uint8))  # 61 kB to run: fits
    write_png(tmp_path / "b.png", np.full((480, 640, 3), 90, np.uint8))  # 6.1 MB to run: does not
    decoded: list[int] = []
    imdecode = sources._imdecode
    monkeypatch.setattr(sources, "_imdecode", lambda data: decoded.append(data.size) or imdecode(data))
    monkeypatch.setattr(cpu, "available_memory", lambda: 1_000_000)
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "b.png")
    assert str(e.value) == (f"{tmp_path / 'b.png'}: a 640x480 image needs about 6 MB of memory to decode and run, "
                            "more than the 1 MB free (free some memory, or scale it down)")
    assert decoded == []
    with caplog.at_level(logging.WARNING), open_source(tmp_path) as source:  # a folder skips it, as a bad image
        frames = list(source)
    assert [Path(f.path).name for f in frames] == ["a.png"] and source.skipped == 1
    assert f"skipping {tmp_path / 'b.png'}: a 640x480 image needs about 6 MB" in caplog.text
    for free in (7_000_000, None):  # enough free, or not known: decoded
        monkeypatch.setattr(cpu, "available_memory", lambda free=free: free)
        assert read_image(tmp_path / "b.png").shape == (480, 640, 3)


def test_picture_size_from_the_header_is_the_decoded_size_exif_orientation_applied(tmp_path: Path) -> None:
    """``val --batch`` orders pictures by the input size each will get before decoding any: the header's
    size, turned as OpenCV turns the decoded picture for an EXIF orientation of 5-8 (a phone's portrait)."""
    pixels = np.random.default_rng(0).integers(0, 256, (20, 40, 3), np.uint8)
    for orientation, ext, options in ((6, "jpg", {}), (3, "jpg", {}), (8, "png", {}), (5, "webp", {"lossless": True}),
                                      (6, "tif", {}), (6, "bmp", None)):
        path = tmp_path / f"o{orientation}.{ext}"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(path, **({"exif": exif, **options} if options is not None else {}))
        expected = (40, 20) if orientation >= 5 and options is not None else (20, 40)  # BMP keeps no EXIF
        assert picture_size(path) == read_image(path).shape[:2] == expected, path.name
    (tmp_path / "notes.jpg").write_text("not a picture")
    assert picture_size(tmp_path / "notes.jpg") is None and picture_size(tmp_path / "missing.jpg") is None


def test_a_picture_of_an_unknown_suffix_bigger_than_the_memory_free_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of no known suffix is tried as an image, then as a video: a PNG too big for the memory free,
    refused as an image, went on to FFmpeg (which decoded it) and is refused there too, but was then called
    "neither a readable image nor a video". It says why, as the same file named .png does."""
    from pvt_deploy.utils import cpu

    monkeypatch.setattr(cpu, "available_memory", lambda: 1_000_000)
    for name in ("big.dat", "big"):
        write_png(tmp_path / name, np.full((480, 640, 3), 90, np.uint8))
        with pytest.raises(InputError) as e:
            open_source(tmp_path / name)
        assert str(e.value) == (f"{tmp_path / name}: a 640x480 image needs about 6 MB of memory to decode and run, "
                                "more than the 1 MB free (free some memory, or scale it down)")


def test_single_corrupt_image_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(InputError, match="bad.png"):
        open_source(bad)


def test_glob_and_list_sources(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((6, 6, 3), np.uint8))
    (tmp_path / "deep").mkdir()
    write_png(tmp_path / "deep" / "d.png", np.zeros((6, 6, 3), np.uint8))
    with open_source(str(tmp_path / "*.png")) as source:
        assert [f.name for f in source] == ["a.png", "b.png"]
    with open_source(str(tmp_path / "**" / "*.png")) as source:
        assert sorted(f.name for f in source) == ["a.png", "b.png", "d.png"]
    with open_source([tmp_path / "c.jpg", tmp_path / "a.png"]) as source:
        assert [f.name for f in source] == ["c.jpg", "a.png"]  # a list keeps the caller's order
    with pytest.raises(InputError, match="no images"):
        open_source(str(tmp_path / "*.bmp"))


def test_a_list_naming_a_file_whose_name_is_not_utf8_opens_it(tmp_path: Path) -> None:
    """``ls > list.txt`` among Latin-1 names (old cameras, zips made on Windows) writes caf\\xe9.jpg as its
    byte: infer list.txt, and a dataset YAML whose split is that list, said "cannot read the list ...:
    'utf-8' codec can't decode byte 0xe9" for the whole list. The name is read as the file system gives it."""
    from pvt_deploy.export.calibration import open_images

    name = os.fsdecode(b"caf\xe9.png")
    write_png(tmp_path / name, np.full((6, 6, 3), 7, np.uint8))
    write_png(tmp_path / "b.png", np.zeros((6, 6, 3), np.uint8))
    (tmp_path / "list.txt").write_bytes(b"caf\xe9.png\nb.png\n")
    with open_source(str(tmp_path / "list.txt")) as source:
        frames = list(source)
    assert [f.name for f in frames] == [name, "b.png"] and frames[0].image.max() == 7
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\nval: list.txt\nnames: {{0: person}}\n")
    with open_images(tmp_path / "data.yaml", videos=False) as source:
        assert sorted(f.name for f in source) == sorted([name, "b.png"])


CALIBRATION_READ = """
import sys
import numpy as np
from pvt_deploy.export.calibration import make_batches, usable_images
from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec
found = usable_images(sys.argv[1])
spec = preprocess_spec("detect", (32, 32), dynamic=False, mean=(0, 0, 0), std=(1, 1, 1))
batches = make_batches(found, Preprocessor(spec, dynamic=False))
print(len(found), len(batches), *sorted(int(b.images.max() == 9) for b in batches))
"""


def test_calibration_reads_the_pictures_infer_reads(tmp_path: Path) -> None:
    """export --int8 --calib on a folder (or dataset YAML) holding caf\\xe9.jpg ended in a segmentation
    fault (cv2.imread on a name that is not UTF-8), and its pictures were read without their EXIF
    orientation, so calibration saw phone pictures on their side; it now reads them as infer does."""
    import subprocess
    import sys

    from pvt_deploy.export.calibration import make_batches
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    write_png(tmp_path / os.fsdecode(b"caf\xe9.png"), np.full((6, 8, 3), 9, np.uint8))
    write_png(tmp_path / "b.png", np.full((6, 8, 3), 9, np.uint8))
    script = tmp_path / "calibrate.py"
    script.write_text(CALIBRATION_READ)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["2", "2", "1", "1"], done.stderr[-1500:]
    landscape = np.zeros((20, 40, 3), np.uint8)
    landscape[:, :10] = 255
    image = Image.fromarray(landscape)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    assert read_image(tmp_path / "phone.jpg").shape == (40, 20, 3)
    spec = preprocess_spec("detect", (32, 32), dynamic=False, mean=(0, 0, 0), std=(1, 1, 1))
    (batch,) = make_batches([tmp_path / "phone.jpg"], Preprocessor(spec, dynamic=False))
    assert batch.metas[0].orig_hw == (40, 20)  # calibration sees the picture upright, as infer does


def test_a_txt_list_is_a_list_source_in_the_python_api_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Model.predict("list.txt")`` (Ultralytics' list source) was "list.txt is neither a readable image nor a
    video": only ``pvt-deploy infer`` read the list. Its lines are image files, as given or else beside the
    list; a folder among them is refused by name, as in any list."""
    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(shots / name), np.zeros((6, 6, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    listing = shots / "list.txt"
    listing.write_text("# picked by hand\nb.png\n\nshots/a.png\n")
    with open_source(str(listing)) as source:
        assert source.kind == "images" and source.frames == 2
        assert [f.name for f in source] == ["b.png", "a.png"]  # b.png beside the list, in its order
    listing.write_text("shots\n")
    with pytest.raises(InputError, match="shots is a folder: a list takes image files"):
        open_source(listing)


def test_a_missing_file_in_a_txt_list_names_the_list(tmp_path: Path) -> None:
    """``infer notes.txt`` (a text file that is not a list, or a list with a stale line) said only "no such
    file: hello": which file the name came from was left to guess. The message names the list; export's
    --calib and check --images read lists the same way."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((6, 6, 3), np.uint8))
    listing = tmp_path / "notes.txt"
    listing.write_text("a.png\nhello\ngone.jpg\n")
    with pytest.raises(InputError) as e:
        open_source(listing)
    assert str(e.value) == f"{listing}: no such file: hello (and 1 more)"


def test_a_dataset_yaml_is_not_an_infer_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``infer data.yaml`` (Ultralytics' dataset YAML) was tried as an image, then opened as a video, and said
    "neither a readable image nor a video". infer runs pictures and videos, and a dataset YAML names splits
    of a data set: it is said to be export --calib's and check --images', before the model loads."""
    from cli_run import run

    data = tmp_path / "coco8.yml"
    data.write_text("path: .\nval: images/val\nnames: [person]\n")
    with pytest.raises(InputError, match=r"coco8.yml is a YAML file, not images or a video: a dataset YAML gives "
                                         r"the images of export --calib and check --images \(to run a split"):
        open_source(data)
    code, _, err = run(monkeypatch, capsys, "infer", str(data), "--model", "no_such_model")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {data} is a YAML file"), err
    # the data set's root, given as a folder of images, says which of its files is the YAML
    (tmp_path / "images" / "val").mkdir(parents=True)
    with pytest.raises(InputError) as e:
        open_source(tmp_path)
    assert str(e.value) == (f"no images found in folder {tmp_path} (it holds coco8.yml: export --calib and check "
                            f"--images take a dataset YAML, as in --calib {data}; infer takes a folder of its images)")
    # and a glob of YAML files names them (it said only "no images found in glob ... (image types: ...)")
    (tmp_path / "other.yaml").write_text("val: images/val\n")
    with pytest.raises(InputError) as e:
        open_source(str(tmp_path / "*.y*ml"))
    assert str(e.value) == (f"no images found in glob {tmp_path}/*.y*ml (it matches {data}, {tmp_path / 'other.yaml'}: "
                            f"export --calib and check --images take a dataset YAML, as in --calib {data}; infer "
                            "takes a folder of its images)")


def test_array_source_takes_rgb_arrays() -> None:
    array = np.zeros((5, 7, 4), np.uint8)
    array[..., 0] = 9
    (frame,) = list(open_source(array))
    assert frame.image.shape == (5, 7, 3) and frame.image[0, 0, 0] == 9


def test_in_memory_pictures_are_copied_and_must_be_numbers() -> None:
    # a capture loop that reuses its frame buffer must not change a picture already handed over
    from pvt_deploy.io.sources import as_rgb_array

    frame = np.full((6, 8, 3), 7, np.uint8)
    picture = as_rgb_array(frame)
    frame[:] = 200
    assert picture.max() == 7 and not np.may_share_memory(picture, frame)
    rgba = np.full((6, 8, 4), 9, np.uint8)
    assert not np.may_share_memory(as_rgb_array(rgba), rgba)
    for bad in (np.zeros((6, 8, 3), object), np.zeros((6, 8, 3), complex)):
        with pytest.raises(InputError, match="image array of numbers"):
            as_rgb_array(bad)


def test_missing_paths_and_bad_arguments_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "nope.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        open_source(empty)
    with pytest.raises(InputError, match="vid_stride"):
        open_source(tmp_path, vid_stride=0)
    with pytest.raises(InputError, match="no such file"):
        open_source([tmp_path / "a.png"])


# --- video files ----------------------------------------------------------------------------


def test_video_metadata_stride_indices_and_timestamps(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mp4", frames=30)
    with open_source(path, vid_stride=4) as source:
        assert source.kind == "video"
        assert source.fps == FPS and source.size == (96, 64)
        assert source.frames == 8  # ceil(30 / 4)
        frames = list(source)
    assert [f.index for f in frames] == list(range(0, 30, 4))
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(0, 30, 4))  # the right pictures
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in range(0, 30, 4)])
    assert all(f.path == str(path) and f.name == "clip.mp4" for f in frames)
    assert frames[0].image.flags.c_contiguous


def test_raw_h264_runs_at_the_rate_its_bitstream_signals(tmp_path: Path) -> None:
    """A raw .h264 (no container, no timestamps): FFmpeg's demuxer reports a default 25 fps; the SPS
    says 30, which is what the clip plays at (an annotated copy at 25 would run 20 % long)."""
    path = tmp_path / "cam.h264"
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 20, np.uint8), format="rgb24")
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    with av.open(str(path)) as probe:
        assert probe.streams.video[0].average_rate == 25  # the demuxer's default, not the clip's
    with open_source(path) as source:
        assert source.fps == 30 and len(list(source)) == 12


def test_a_raw_stream_is_timed_at_its_rate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A raw .h264 / .hevc file carries no times: its frames had none, so its JSON lines had no
    ``timestamp`` at all. They are timed as players show it, one frame after another at its rate."""
    path = tmp_path / "cam.hevc"
    with av.open(str(path), "w", format="hevc") as out:
        stream = out.add_stream("libx265", rate=30, options={"x265-params": "log-level=0"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), i * 20, np.uint8), format="rgb24")
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    with caplog.at_level(logging.WARNING), open_source(path) as source:
        frames = list(source)
    assert source.fps == 30 and [f.index for f in frames] == list(range(12))
    assert [f.timestamp for f in frames] == pytest.approx([i / 30 for i in range(12)])
    assert source.error is None and caplog.text == ""


def test_video_can_be_iterated_twice(tmp_path: Path) -> None:
    source = open_source(make_video(tmp_path / "clip.mp4", frames=5))
    assert len(list(source)) == 5
    assert len(list(source)) == 5
    source.close()


def test_truncated_video_yields_a_prefix_then_stops_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = make_video(tmp_path / "full.mp4", frames=40, size=(160, 96))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING), open_source(cut) as source:
        frames = list(source)  # must not raise
    assert 0 < len(frames) < 40
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(len(frames)))
    assert source.error and "cut.mp4" in caplog.text


def test_truncated_mkv_says_so_from_its_declared_duration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """mkv stores no frame count, only a duration in its header, which a cut-short file still carries."""
    full = tmp_path / "full.mkv"
    with av.open(str(full), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(150):  # 6 s; noisy frames so that the file's size follows its length
            image = np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    with open_source(full) as source:
        assert len(list(source)) == 150 and source.error is None
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with caplog.at_level(logging.WARNING), open_source(cut) as source:
        frames = list(source)
    assert 0 < len(frames) < 100
    assert source.error and "of the 6.0 s the file declares" in source.error and "cut.mkv" in caplog.text


def make_clip(path: Path, codec: str, *, frames: int = 50, start: int = 0, audio: bool = False,
              times: list[float] | None = None) -> Path:
    """A 2 s clip at 25 fps in ``codec``, its container from the suffix, muxed by PyAV; noisy frames so
    that the file's size follows its length. ``start``: the first frame's time, in frames; ``times``:
    each frame's time in seconds instead (a variable-rate clip, still declared as 25 fps)."""
    fmt = {".mp4": "mp4", ".mkv": "matroska", ".webm": "webm"}[path.suffix]
    with av.open(str(path), "w", format=fmt, container_options={"movflags": "+faststart"} if fmt == "mp4" else {}) as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height = 96, 64
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            image = np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            picture = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=stream.pix_fmt)
            if times is None:
                picture.pts, picture.time_base = start + i, Fraction(1, FPS)
            else:
                picture.pts, picture.time_base = round(times[i] * 1000), Fraction(1, 1000)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
        if sound is not None:
            tone = av.AudioFrame.from_ndarray(np.zeros((1, 16000 * frames // FPS), np.float32), format="fltp",
                                              layout="mono")
            tone.sample_rate, tone.pts, tone.time_base = 16000, 16000 * start // FPS, Fraction(1, 16000)
            out.mux(sound.encode(tone))
            out.mux(sound.encode(None))
    return path


@pytest.mark.parametrize(("name", "codec"), [("h264.mkv", "libx264"), ("vp9.webm", "libvpx-vp9"),
                                             ("mjpeg.mkv", "mjpeg"), ("h264.mp4", "libx264"), ("mjpeg.mp4", "mjpeg")])
def test_a_short_clip_cut_short_says_so_and_a_whole_one_does_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, codec: str) -> None:
    """A warning for a few missing seconds of a short clip too, not only past 2 s or 10 %; none for a
    whole clip, whose declared length is a frame or two off its last frame's time."""
    full = make_clip(tmp_path / name, codec)
    with caplog.at_level(logging.WARNING), open_source(full) as source:
        assert source.frames == 50 and len(list(source)) == 50
    assert source.error is None and caplog.text == ""
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 3 // 5])
    with caplog.at_level(logging.WARNING), open_source(cut) as source:
        frames = list(source)
    assert 0 < len(frames) < 40
    assert source.error and "truncated file?" in source.error and f"cut_{name}" in caplog.text


def test_the_bundled_sample_video_decodes_whole_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from pvt_deploy import assets

    with caplog.at_level(logging.WARNING), open_source(assets.sample_video()) as source:
        assert len(list(source)) == source.frames
    assert source.error is None and caplog.text == ""


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_clip_whose_times_start_late_is_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str) -> None:
    """mkv declares where its segment ends (12 s for 2 s of video from 10 s on), not how long it runs:
    that is no truncated file, nor 301 frames."""
    path = make_clip(tmp_path / f"late{suffix}", "libx264", start=10 * FPS, audio=True)
    with caplog.at_level(logging.WARNING), open_source(path) as source:
        assert source.frames == 50
        frames = list(source)
    assert len(frames) == 50 and frames[0].timestamp == 0.0 and frames[-1].timestamp == pytest.approx(49 / FPS)
    assert source.error is None and caplog.text == ""


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_frames_after_damaged_packets_keep_their_source_numbers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str) -> None:
    """Packets that do not decode mid-file: the frames after them keep the numbers their times give
    (JSON ``frame``, COCO ids and ``vid_stride`` follow the source), and the warning says frames were
    damaged, not that the file ended early."""
    path = make_clip(tmp_path / f"clip{suffix}", "mjpeg")  # every frame its own packet
    with av.open(str(path)) as container:
        payloads = [bytes(p) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for k in (20, 21, 35):  # the pictures are damaged, the container around them is not
        pos = data.find(payloads[k])
        data[pos : pos + len(payloads[k])] = bytes(len(payloads[k]))
    damaged = tmp_path / f"damaged{suffix}"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING), open_source(damaged) as source:
        frames = list(source)
    numbers = [f.index for f in frames]
    assert numbers == [round(f.timestamp * FPS) for f in frames if f.timestamp is not None]
    assert numbers[-1] == 49 and {20, 21, 35} <= set(range(50)) - set(numbers)
    assert source.error is None and "frames could not be decoded (damaged file?)" in caplog.text
    assert "truncated" not in caplog.text


def test_a_variable_rate_mkv_is_numbered_frame_by_frame(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An mkv declares a frame rate even for a variable-rate clip (a phone video remuxed, a screen
    capture). Times off that rate's grid tell it is one: its frames are numbered as they come, not by
    their times, whose gaps are no lost frames (it warned '17 of 27 frames could not be decoded' of
    10 clean frames, numbered up to 26, and --vid-stride kept frames by those numbers)."""
    times = [0.0, 0.04, 0.05, 0.2, 0.21, 0.5, 0.52, 0.53, 1.0, 1.3]
    path = make_clip(tmp_path / "vfr.mkv", "libx264", frames=len(times), times=times)
    with caplog.at_level(logging.WARNING), open_source(path) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(10))
    assert [f.timestamp for f in frames] == pytest.approx(times, abs=1e-6)
    assert source.error is None and caplog.text == ""
    with open_source(path, vid_stride=2) as source:
        assert [f.index for f in source] == [0, 2, 4, 6, 8]


def test_a_variable_rate_mkv_on_the_rate_grid_loses_no_frames(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Frames on the declared rate's grid with gaps between them (a recorder that drops repeated
    frames, a capture at a varying rate) decode whole: the gaps are the clip's own timing and keep
    their frame numbers, and no warning calls frames that all decoded "damaged"."""
    numbers = [0, 1, 2, 5, 6, 10, 11, 12, 20, 21]
    path = make_clip(tmp_path / "gaps.mkv", "libx264", frames=len(numbers), times=[n / FPS for n in numbers])
    with caplog.at_level(logging.WARNING), open_source(path) as source:
        frames = list(source)
    assert [f.index for f in frames] == numbers
    assert source.error is None and caplog.text == ""


def make_avi(path: Path, codec: str, frames: int = 20) -> Path:
    """An AVI whose codec reorders frames (two B-frames between references), frame i a flat grey of
    level STEP*i."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        if codec == "libx264":
            stream.options = {"bf": "2", "crf": "10"}
        else:
            stream.codec_context.max_b_frames = 2
            stream.codec_context.bit_rate = 4_000_000
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((64, 96, 3), STEP * i, np.uint8), format="rgb24")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_an_avi_with_b_frames_keeps_its_frames_times(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, codec: str) -> None:
    """AVI stores decode times only. FFmpeg's presentation times for B-frames there were out of order
    (H.264: 0.04, 0.12, 0.16, 0.08 s...) or a frame late (MPEG-4 Part 2: from 0.04 s), and the JSON
    times, frame numbers and the annotated video's timing followed them. Frame i is at i / fps."""
    path = make_avi(tmp_path / f"{codec}.avi", codec)
    with caplog.at_level(logging.WARNING), open_source(path) as source:
        frames = list(source)
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(20))
    assert [f.index for f in frames] == list(range(20))
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in range(20)])
    assert source.error is None and caplog.text == ""


def test_a_damaged_avi_keeps_the_times_of_the_frames_after_the_damage(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A packet of an AVI that does not decode takes its time along: the frames after it keep theirs
    and their numbers, and the loss is reported."""
    path = tmp_path / "clip.avi"
    with av.open(str(path), "w", format="avi") as out:  # MJPEG: one picture a packet, no reordering
        stream = out.add_stream("mjpeg", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuvj420p"
        for i in range(30):
            picture = av.VideoFrame.from_ndarray(np.full((64, 96, 3), STEP * i, np.uint8), format="rgb24")
            picture = picture.reformat(format="yuvj420p")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    pos, size = packets[12]
    data[pos : pos + size] = bytes(size)
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING), open_source(damaged) as source:
        frames = list(source)
    levels = [round(grey_level(f) / STEP) for f in frames]
    assert levels == [i for i in range(30) if i != 12]
    assert [f.index for f in frames] == levels
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in levels])
    assert "1 of 30 frames could not be decoded (damaged file?)" in caplog.text


def test_the_null_frames_of_an_avi_are_its_timing_not_damage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An AVI keeps a constant rate by writing an empty chunk where no frame is due ("null frames": FFmpeg
    writes them for a variable-rate source, capture tools for dropped frames). Its count includes them,
    and a clean clip was reported "3 of 10 frames could not be decoded (damaged file?)"."""
    path = tmp_path / "null_frames.avi"
    times = [0, 1, 3, 4, 5, 8, 9]  # frame ticks: 2, 6 and 7 are empty chunks
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for k, tick in enumerate(times):
            picture = av.VideoFrame.from_ndarray(np.full((64, 96, 3), STEP * k, np.uint8), format="rgb24")
            picture.pts = tick
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 10  # the container's count: null frames included
    with caplog.at_level(logging.WARNING), open_source(path) as source:
        frames = list(source)
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(7))
    assert [f.index for f in frames] == times and source.frames == 7
    assert [f.timestamp for f in frames] == pytest.approx([t / FPS for t in times])
    assert source.error is None and caplog.text == ""


@pytest.mark.parametrize("content", [b"", b"this is plain text, not a video at all" * 20])
def test_not_a_video_raises_input_error(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(content)
    with pytest.raises(InputError, match="fake.mp4"):
        open_source(fake)


@pytest.mark.parametrize("name", ["voice.m4a", "voice.mp4"])
def test_an_audio_only_file_says_it_has_no_video(tmp_path: Path, name: str) -> None:
    import av

    path = tmp_path / name
    with av.open(str(path), "w", format="mp4") as out:
        audio = out.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    with pytest.raises(InputError, match=f"{name} has no video stream"):
        open_source(path)


def test_a_password_with_an_at_sign_is_hidden_whole(tmp_path: Path) -> None:
    """Camera passwords often hold an '@' (rtsp://admin:P@ssw0rd@cam/), which FFmpeg and urlsplit read up to the
    last '@'; the errors that name such a URL showed "***@ssw0rd@cam", half the password."""
    from test_io_sinks import served

    test_an_audio_only_file_says_it_has_no_video(tmp_path, "voice.mp4")
    with served(tmp_path, login=("admin", "P@ssw0rd")) as base:
        url = base.replace("http://", "http://admin:P@ssw0rd@") + "/voice.mp4"
        with pytest.raises(InputError) as caught:
            open_source(url)
    assert str(caught.value) == f"cannot open stream {redact_url(url)}: {redact_url(url)} has no video stream"
    assert redact_url(url) == base.replace("http://", "http://***@") + "/voice.mp4"


def test_frames_cut_by_the_edit_list_are_neither_counted_nor_called_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An mp4 whose edit list starts it past its first stored frames (``ffmpeg -ss 10 -c copy``, a trim
    made on a phone) never shows those frames: they are not in the count the progress bar shows, nor
    reported as frames that could not be decoded."""
    path = make_video(tmp_path / "trimmed.mp4", frames=40, trim=10)
    with caplog.at_level(logging.WARNING), open_source(path) as source:
        assert source.frames == 30
        frames = list(source)
    assert len(frames) == 30 and [f.index for f in frames] == list(range(30))
    assert frames[0].timestamp == 0.0 and grey_level(frames[0]) == pytest.approx(STEP * 10, abs=3)
    assert source.error is None and caplog.text == ""


def joined_ts(folder: Path, clips: list[list[int]]) -> Path:
    """MPEG-TS clips joined byte for byte (``cat a.ts b.ts``), frame pts (in frames) as given; the
    frames' grey levels count 0, 1, 2... across the clips."""
    parts, n = [], 0
    for k, pts in enumerate(clips):
        part = folder / f"part{k}.ts"
        with av.open(str(part), "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            for p in pts:
                picture = av.VideoFrame.from_ndarray(np.full((64, 96, 3), STEP * n, np.uint8), format="rgb24")
                picture.pts = p
                out.mux(stream.encode(picture))
                n += 1
            out.mux(stream.encode(None))
        parts.append(part.read_bytes())
    joined = folder / "joined.ts"
    joined.write_bytes(b"".join(parts))
    return joined


def test_a_clock_that_goes_back_carries_on_from_the_frame_before(tmp_path: Path) -> None:
    """Recordings joined into one MPEG-TS (``cat a.ts b.ts``, as camcorder and dashcam files are) restart
    their clock: the second one's frames follow the first's last frame, one frame apart, instead of
    going back to 0 (the annotated mp4 cannot go back, and laid its frames 1/100 frame apart: 25
    frames in 10 ms)."""
    with open_source(joined_ts(tmp_path, [list(range(10)), list(range(10))])) as source:
        frames = list(source)
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(20))
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in range(20)], abs=1e-6)



def mid_gop_ts(folder: Path, *, frames: int = 30, cut_at: int = 4, gop: int = 10, bframes: int = 0) -> Path:
    """An MPEG-TS (keyframe every ``gop`` frames, grey levels STEP*i) whose bytes before frame ``cut_at``
    are cut off at a 188-byte packet boundary, as a capture that began mid-broadcast or ``head -c`` /
    ``dd`` on a recording: its video starts at frame ``cut_at``, and decodes from the next keyframe on."""
    whole = folder / "whole.ts"
    with av.open(str(whole), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=FPS, options={
            "preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": str(bframes)})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((64, 96, 3), STEP * i, np.uint8), format="rgb24")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    with av.open(str(whole)) as container:
        video = container.streams.video[0]
        first = video.start_time
        start = next(p.pos for p in container.demux(video)
                     if p.pts is not None and round((p.pts - first) * video.time_base * FPS) == cut_at)
    assert start % 188 == 0
    cut = folder / "cut.ts"
    cut.write_bytes(whole.read_bytes()[start:])
    return cut


def mid_gop_mp4(folder: Path) -> Path:
    """``folder/cut.mp4``: :func:`mid_gop_ts`'s video remuxed into an mp4 (``ffmpeg -c copy``), which counts
    its frames: 26 from the video's start, the first 6 before its first keyframe."""
    (folder / "ts").mkdir()
    with av.open(str(mid_gop_ts(folder / "ts"))) as ts, av.open(str(folder / "cut.mp4"), "w") as mp4:
        video = mp4.add_stream_from_template(ts.streams.video[0])
        for packet in ts.demux(ts.streams.video[0]):
            if packet.dts is not None:  # not the demuxer's end-of-stream packet
                packet.stream = video
                mp4.mux(packet)
    return folder / "cut.mp4"


@pytest.mark.parametrize("stride", [1, 2, 4, 9, 13])
def test_the_count_of_a_video_that_starts_mid_gop_is_the_frames_its_stride_keeps(tmp_path: Path, stride: int) -> None:
    """Its frames are numbered from the video's start (6 to 25) and a stride keeps the numbers it
    divides: the count said ceil(20 / stride) (3 for a stride of 9, which keeps frames 9 and 18)."""
    with open_source(mid_gop_mp4(tmp_path), vid_stride=stride) as source:
        count = source.frames
        assert count == len(list(source)) == len(range(6, 26)[(-6) % stride::stride])


def test_a_video_that_starts_mid_gop_numbers_its_frames_from_its_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An MPEG-TS cut mid-GOP: the frames before its first keyframe cannot be decoded, and the first
    frame that can was numbered 0 while its timestamp said 0.24 s, without a word, so frame numbers in
    the JSON, the timestamps and the frames before the keyframe all disagreed. Its frames now keep the
    numbers their times give (as in an mp4 or mkv), and one warning says how many lead frames were lost."""
    with caplog.at_level(logging.WARNING), open_source(mid_gop_ts(tmp_path)) as source:
        frames = list(source)
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(10, 30))  # from the keyframe on
    assert [f.index for f in frames] == list(range(6, 26))
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in range(6, 26)], abs=1e-6)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "the 6 frames before its first keyframe" in warnings[0], warnings
    assert source.error is None


@pytest.mark.parametrize("bframes", [0, 3])
def test_a_video_cut_at_a_keyframe_loses_no_frame(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  bframes: int) -> None:
    with caplog.at_level(logging.WARNING), open_source(mid_gop_ts(tmp_path, cut_at=10, bframes=bframes)) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(20)) and caplog.text == ""


def zero_frames(clip: Path, path: Path, frames: tuple[int, ...] = (20, 21, 35)) -> Path:
    """``path``: the MJPEG ``clip`` (every frame its own packet) with the pictures of ``frames`` zeroed in
    place, the container around them intact: their packets do not decode."""
    with av.open(str(clip)) as container:
        payloads = [bytes(p) for p in container.demux(video=0) if p.size]
    data = bytearray(clip.read_bytes())
    for k in frames:
        pos = data.find(payloads[k])
        data[pos : pos + len(payloads[k])] = bytes(len(payloads[k]))
    path.write_bytes(bytes(data))
    return path


def _damaged_mkv(path: Path) -> Path:
    """:func:`make_clip`'s mjpeg mkv, frames 20, 21 and 35 zeroed in place (their packets do not decode)."""
    return zero_frames(make_clip(path.with_name("whole.mkv"), "mjpeg"), path)


def _cut_mp4(path: Path) -> Path:
    whole = make_clip(path.with_name("whole.mp4"), "libx264")
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 5])
    return path


_SEEK_CLIPS = {  # clip maker, why seeking is refused (None: frames found by seeking); every frame is asked for
    "late.mkv": (lambda p: make_clip(p, "libx264", start=10 * FPS, audio=True), None),
    "sound.mp4": (lambda p: make_clip(p, "libx264", start=3, audio=True), None),
    "portrait.mp4": (lambda p: make_video(p, frames=12, size=(64, 32), rotation=90), None),
    "midgop.mp4": (lambda p: mid_gop_mp4(p.parent), None),
    "trimmed.mp4": (lambda p: make_video(p, frames=40, trim=10), "landed off a keyframe"),
    "vfr.mkv": (lambda p: make_clip(p, "libx264", frames=4, times=[0.0, 0.04, 0.05, 0.2]), "off its rate's grid"),
    "gaps.mkv": (lambda p: make_clip(p, "libx264", frames=4, times=[n / FPS for n in (0, 1, 5, 6)]), "frame 2 is missing"),
    "b.avi": (lambda p: make_avi(p, "libx264"), "it cannot seek"),
    "cut.ts": (lambda p: mid_gop_ts(p.parent), "numbered in decode order"),
    "damaged.mkv": (_damaged_mkv, "a seek to frame 20 landed after it (on frame 22)"),
    "cut.mp4": (_cut_mp4, "short of the 2.00 s it declares"),
}


@pytest.mark.parametrize("name", list(_SEEK_CLIPS))
def test_frames_found_by_seeking_are_the_frames_a_whole_read_gives(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str) -> None:
    """``VideoSource.seek_frames`` (export's calibration frames of a long clip, without decoding it whole) gives
    each frame from the keyframe before it, with the number and the pixels the whole read gives it — or
    nothing, and says why in a debug log, where the file cannot promise that: an edit list, a variable rate
    (off the grid, or gaps on it), AVI (timed by decode order), MPEG-TS, damaged packets, a truncated file.
    (``always``: even where it would decode as many frames as the whole read, as on these one-GOP clips.)"""
    make, refused = _SEEK_CLIPS[name]
    path = make(tmp_path / name)
    with open_source(path) as source:
        whole = {f.index: f.image for f in source}
    if refused is not None:
        with open_source(path) as source, caplog.at_level(logging.DEBUG, logger="pvt_deploy.io.sources"):
            assert source.seek_frames(lambda numbers: list(numbers), always=True) is None  # type: ignore[attr-defined]
        assert f"{path}: not seeking to its frames: " in caplog.text and refused in caplog.text
        return
    for every in (1, 3):  # each frame (decoded on from the one before, sought at keyframes), every 3rd one
        asked: list[range] = []
        with open_source(path) as source:
            found = source.seek_frames(  # type: ignore[attr-defined]
                lambda numbers: asked.append(numbers) or list(numbers)[::every], always=True)  # noqa: B023
        assert found is not None, caplog.text
        assert asked == [range(min(whole), max(whole) + 1)] and [f.index for f in found] == sorted(whole)[::every]
        assert all(np.array_equal(f.image, whole[f.index]) for f in found)


def test_seeking_refused_as_too_costly_says_how_many_frames_each_way_decodes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A clip of one GOP: seeking to its frames decodes the GOP to find the end, then from the keyframe to
    each frame, more frames than the clip has, so the whole read is taken. The debug line read "about 11
    of its 6 frames"; it says the two counts for what they are."""
    path = make_video(tmp_path / "six.mp4", frames=6)
    with open_source(path) as source, caplog.at_level(logging.DEBUG, logger="pvt_deploy.io.sources"):
        assert source.seek_frames(lambda numbers: list(numbers)[::2]) is None  # type: ignore[attr-defined]
    # the end's GOP (frames 0-5), then frame 0 from the keyframe and 1-2, 3-4 on from the one before: 6 + 1 + 2 + 2
    assert (f"{path}: not seeking to its frames: seeking would decode about 11 frames, more than reading "
            "its 6 whole (1 keyframe(s) listed)") in caplog.text, caplog.text


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = make_video(tmp_path / "portrait.mp4", frames=3, size=(64, 32), rotation=90)
    with open_source(path) as source:
        assert source.size == (32, 64)
        frame = next(iter(source))
    assert frame.image.shape == (64, 32, 3)
    assert frame.image[-10:].mean() > 200  # 90 deg counter-clockwise: the left band is at the bottom


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_each_display_rotation_is_the_decoded_picture_turned(tmp_path: Path, rotation: int) -> None:
    """The turn (cv2.rotate since it was found 7x faster than a copy of np.rot90's view) is np.rot90's, exactly."""
    import av

    path = make_video(tmp_path / f"r{rotation}.mp4", frames=2, size=(64, 32), rotation=rotation)
    with av.open(str(path)) as container:
        raw = next(container.decode(video=0)).to_ndarray(format="rgb24")
    with open_source(path) as source:
        frame = next(iter(source))
    assert np.array_equal(frame.image, np.rot90(raw, rotation // 90)) and frame.image.flags.c_contiguous


# --- network streams ------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    """An IP camera in miniature: multipart JPEG, ``per_connection`` frames and then it hangs up;
    after ``connections`` connections it answers 503 (the camera is gone). With a ``stall`` event, it
    keeps the connection open and silent after its frames until the event is set (a frozen camera)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.served += 1  # type: ignore[attr-defined]
            n = server.served  # type: ignore[attr-defined]
        if n > server.connections:  # type: ignore[attr-defined]
            self.send_error(503, "camera offline")
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(server.per_connection):  # type: ignore[attr-defined]
                ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 20 * i, np.uint8))
                body = jpeg.tobytes()
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                self.wfile.write(head + body + b"\r\n")
            self.wfile.flush()
            stall = getattr(server, "stall", None)
            if stall is not None:
                stall.wait(30)
        except ConnectionError:  # the client hung up early, as viewers of a camera do
            pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


@pytest.fixture
def mjpeg_camera() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegHandler)
    server.lock, server.served, server.connections, server.per_connection = threading.Lock(), 0, 3, 6  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()



def test_a_video_file_over_http_that_starts_mid_gop_numbers_its_frames_from_its_start(
        http_server: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """A file that starts mid-GOP (above; an mp4 remuxed from a cut MPEG-TS, as ``ffmpeg -c copy``
    does) served over HTTP: its frames were numbered from 0, and its count took in the lost ones.
    (An MPEG-TS over HTTP is tested below.)"""
    base, root = http_server
    mid_gop_mp4(root)
    with caplog.at_level(logging.WARNING), open_source(f"{base}/cut.mp4", vid_stride=2) as source:
        assert not source.live and source.frames == 10
        frames = list(source)
    assert [f.index for f in frames] == list(range(6, 26, 2))
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(10, 30, 2))
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in range(6, 26, 2)], abs=1e-6)
    assert caplog.text.count("the 6 frames before its first keyframe") == 1 and "could not" not in caplog.text


def test_http_video_file_is_read_to_the_end_without_reconnecting(http_server: tuple[str, Path]) -> None:
    base, root = http_server
    make_video(root / "clip.mp4", frames=20)
    with open_source(f"{base}/clip.mp4", vid_stride=2) as source:
        assert source.kind == "stream" and not source.live and not source.realtime
        assert source.fps == FPS and source.size == (96, 64) and source.frames == 10
        frames = list(source)
    assert [f.index for f in frames] == list(range(0, 20, 2))
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(0, 20, 2))
    assert frames[0].name == "clip.mp4"
    assert source.reconnects == 0


def test_an_mpeg_ts_file_over_http_without_range_requests_is_read_once(http_server: tuple[str, Path]) -> None:
    """An MPEG-TS file from a server that does not take Range requests (Python's http.server, many simple
    file servers) declares no duration (FFmpeg cannot seek to its end), so it was read as a live feed:
    at its end the source reconnected and replayed it, for ever. Its known size says it is a file."""
    base, root = http_server
    make_video(root / "clip.ts", frames=20)
    with open_source(f"{base}/clip.ts") as source:
        assert not source.live
        frames = list(itertools.islice(source, 60))  # bounded: the old code never ended
    assert [f.index for f in frames] == list(range(20)) and source.reconnects == 0


def test_http_404_fails_fast_with_input_error(http_server: tuple[str, Path]) -> None:
    base, _ = http_server
    with pytest.raises(InputError, match="cannot open stream"):
        open_source(f"{base}/missing.mp4", timeout=5)


def too_big(name: object, size: str, need: str, free: str = "1 MB") -> str:
    return (f"{name}: a {size} video needs about {need} of memory to decode and run, more than the {free} free "
            "(free some memory, or scale it down)")


def test_a_video_bigger_than_the_memory_free_is_refused_before_a_frame_is_decoded(
        http_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A clip or stream declaring huge frames (HEVC at 16384x16384: 1.2 GB a frame, many in flight) was
    decoded frame after frame until the OOM killer ended infer without a word. The size its stream declares
    is now weighed against the memory free (faked small here) before its first frame is decoded, for a file,
    a file of no known suffix and a URL (named without its password), as a picture's header is."""
    from pvt_deploy.utils import cpu

    base, root = http_server
    make_video(root / "big.mp4", frames=3, size=(160, 96))  # 160 x 96 x 260 B: 4 MB to run
    (root / "big").write_bytes((root / "big.mp4").read_bytes())
    decoded: list[str] = []
    decode = PyAVReader._decode
    monkeypatch.setattr(PyAVReader, "_decode", lambda self: decoded.append(self._name) or decode(self))
    monkeypatch.setattr(cpu, "available_memory", lambda: 1_000_000)
    url = base.replace("http://", "http://ann:s3cr3t@") + "/big.mp4"
    for given, name in [(root / "big.mp4", root / "big.mp4"), (root / "big", root / "big"),
                        (url, base.replace("http://", "http://***@") + "/big.mp4")]:
        with pytest.raises(InputError) as e:
            open_source(given)
        assert str(e.value) == too_big(name, "160x96", "4 MB")
    assert decoded == []
    for free in (5_000_000, None):  # enough free, or not known: read as before
        monkeypatch.setattr(cpu, "available_memory", lambda free=free: free)
        for given in (root / "big.mp4", url):
            with open_source(given) as source:
                assert [f.image.shape for f in source] == [(96, 160, 3)] * 3


def test_a_clip_read_to_calibrate_or_compare_on_is_weighed_at_the_frames_it_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`export --calib clip.mp4` and `check --images clip.mp4` decode a clip and keep a few of its frames;
    they draw and encode nothing, yet the clip was weighed at what `infer` needs to draw and save a video
    (260 bytes a pixel): refused at 4.0 MB for a 160x96 clip where 2 MB runs it. Now: the decoding of a run
    that saves nothing (120) and 3 bytes for each frame kept."""
    from pvt_deploy.bench import _check_images
    from pvt_deploy.export.calibration import usable_images
    from pvt_deploy.utils import cpu

    clip = make_video(tmp_path / "calib.mp4", frames=6, size=(160, 96))  # 15 360 pixels
    monkeypatch.setattr(cpu, "available_memory", lambda: 2_500_000)  # (120 + 3 x 8) x 15 360 = 2.2 MB
    assert len(usable_images(clip, 4)) == 4
    assert len(_check_images(clip, 8)[0]) == 6
    assert len(usable_images(clip, 64)) == 6  # no more than its 6 frames are kept: weighed so
    longer = make_video(tmp_path / "longer.mp4", frames=40, size=(160, 96))
    with pytest.raises(InputError, match="needs about 4 MB"):  # its 40 frames kept: (120 + 120) x 15 360 = 3.7 MB
        usable_images(longer, 64)


def switching_clip(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """An MJPEG mkv whose frames come at ``sizes`` (width, height), its stream declaring the first: a
    resolution switch, as a camera or an adaptive stream makes one."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = sizes[0][0], sizes[0][1], "yuvj420p"
        for i, (w, h) in enumerate(sizes):
            packet = av.Packet(cv2.imencode(".jpg", np.full((h, w, 3), 9 * i, np.uint8))[1].tobytes())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, FPS)
            packet.is_keyframe = True
            container.mux(packet)
    return path


def test_a_video_that_switches_to_frames_bigger_than_the_memory_free_stops_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size a stream declares at its start is not the only one: a clip or feed that switches to bigger
    frames midway was decoded at the new size. A frame that comes at another size is weighed again: the
    frames before it are read, and the read ends with the one line where the memory free cannot run it (a
    live feed too: not reconnected to, which read it again from its start, for ever)."""
    from pvt_deploy.utils import cpu

    clip = switching_clip(tmp_path / "switch.mkv", [(64, 48)] * 2 + [(640, 480)] + [(64, 48)])
    monkeypatch.setattr(cpu, "available_memory", lambda: 1_000_000)  # 64x48: 0.8 MB to run; 640x480: 80 MB
    live = StreamSource(lambda: PyAVReader(str(clip), live=True), spec="rtsp://cam/live",
                        reconnect=Reconnect(3, 0.0, 0.0), sleep=lambda _: None, realtime=False)
    for source in (open_source(clip), live):
        frames: list[Frame] = []
        with source, pytest.raises(InputError) as e:  # noqa: PT012 - the frames before it
            frames.extend(itertools.islice(source, 20))
        assert str(e.value) == too_big(clip, "640x480", "80 MB")
        assert [f.image.shape for f in frames] == [(48, 64, 3)] * 2
    assert live.reconnects == 0
    monkeypatch.setattr(cpu, "available_memory", lambda: 100_000_000)
    with open_source(clip) as source:
        assert [f.image.shape[:2] for f in source] == [(48, 64)] * 2 + [(480, 640), (48, 64)]


def test_a_stream_back_at_a_size_the_memory_free_cannot_run_is_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal for memory is no dropped connection: a feed that came back, after a drop, at a size too big
    for the memory free was retried with backoff until the retries ran out, and then ended as a lost stream
    does, the refusal only in the retries' warnings. It now ends at once with the one line."""
    from pvt_deploy.utils import cpu

    clip = make_video(tmp_path / "cam.mp4", frames=3, size=(160, 96))  # 4 MB to run
    free: list[int | None] = [None]
    monkeypatch.setattr(cpu, "available_memory", lambda: free[0])
    opened: list[int] = []

    def opener() -> PyAVReader:
        opened.append(1)
        return PyAVReader(str(clip), live=True)  # its end is a drop: reconnected to

    waits: list[float] = []
    source = StreamSource(opener, spec="rtsp://cam/live", reconnect=Reconnect(3, 1.0, 5.0), sleep=waits.append,
                          realtime=False)
    free[0] = 1_000_000  # after the first connection
    frames: list[Frame] = []
    with source, pytest.raises(InputError) as e:  # noqa: PT012 - the frames before the drop
        frames.extend(itertools.islice(source, 20))
    assert str(e.value) == too_big(clip, "160x96", "4 MB")
    assert len(frames) == 3 and len(opened) == 2 and waits == [1.0]


def test_dropping_camera_reconnects_with_backoff_then_ends_cleanly(
    mjpeg_camera: http.server.ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://user:secret@127.0.0.1:{mjpeg_camera.server_address[1]}/video.mjpg"
    waits: list[float] = []
    policy = Reconnect(max_retries=3, initial_wait=0.01, max_wait=0.02)
    with caplog.at_level(logging.INFO):
        source = open_source(url, reconnect=policy, realtime=False, timeout=5)
        assert isinstance(source, StreamSource) and source.live
        source._sleep = waits.append  # record the backoff instead of sleeping
        frames = list(source)  # ends by itself once the camera stays offline
        source.close()
    assert len(frames) == 3 * 6  # every frame of the three connections, none twice
    assert [f.index for f in frames] == list(range(18))
    assert [round(grey_level(f) / 20) for f in frames] == list(range(6)) * 3
    assert source.reconnects == 2
    # two drops reconnect at the first try; then three failures against the 503, capped at max_wait
    assert waits == [0.01, 0.01, 0.01, 0.02, 0.02]
    assert caplog.text.count("dropped") == 3 and "giving up after 3" in caplog.text
    assert "secret" not in caplog.text and all("secret" not in f.path for f in frames)
    timestamps = [f.timestamp for f in frames]
    assert timestamps == sorted(timestamps)  # live: seconds since opening, monotonic across reconnects


def test_realtime_mode_reads_in_background_and_ends_cleanly(
    mjpeg_camera: http.server.ThreadingHTTPServer,
) -> None:
    url = f"http://127.0.0.1:{mjpeg_camera.server_address[1]}/video.mjpg"
    policy = Reconnect(max_retries=1, initial_wait=0.01, max_wait=0.01)
    with open_source(url, reconnect=policy, timeout=5) as source:
        assert source.realtime  # live feeds default to newest-frame-only
        received = []
        for frame in source:
            received.append(frame.index)
            threading.Event().wait(0.005)  # a slow consumer
    assert received and received == sorted(set(received))
    assert len(received) + source.dropped == 18


def test_a_stalled_stream_stops_without_waiting_for_its_read_timeout(
    mjpeg_camera: http.server.ThreadingHTTPServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """A camera that keeps the connection open and sends nothing: stop() (the pipeline's, on Ctrl-C or
    SIGTERM) ends the wait for the next frame at once, and close() does not sit through the reader
    thread's read timeout (``docker stop`` kills after 10 s). Checked by order, not by the clock: the
    read timeout is far beyond any load (60 s), and the stop and the close are over before any read
    timed out (a read that times out says the stream dropped)."""
    mjpeg_camera.stall = threading.Event()  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{mjpeg_camera.server_address[1]}/video.mjpg"
    source = open_source(url, timeout=60)
    received: list[int] = []
    last_in = threading.Event()

    def consume() -> None:  # the pipeline's decode thread
        for frame in source:
            received.append(frame.index)
            if frame.index == mjpeg_camera.per_connection - 1:  # type: ignore[attr-defined]
                last_in.set()  # the camera's last frame: the reader thread goes on to a read that stalls

    consumer = threading.Thread(target=consume, daemon=True)
    try:
        with caplog.at_level(logging.WARNING, logger="pvt_deploy.io.sources"):
            consumer.start()
            assert last_in.wait(60), received  # (the waits' limits only keep a failure from hanging the run)
            source.stop()
            consumer.join(timeout=120)
            stopped = not consumer.is_alive()
            source.close()
            said = caplog.text
    finally:
        mjpeg_camera.stall.set()  # type: ignore[attr-defined]
    assert stopped and "dropped" not in said, said
    assert received == sorted(set(received)) and received[-1] == 5


def test_injected_reader_drops_and_backoff_doubles_up_to_cap(caplog: pytest.LogCaptureFixture) -> None:
    """The reconnect loop with a custom opener (how a user would plug in a special device)."""

    class FlakyReader:
        fps, size, frames, live, error = 30.0, (4, 4), None, True, None

        def __init__(self, n: int) -> None:
            self.left = n

        def grab(self) -> bool:
            if self.left == 0:
                raise ConnectionResetError("peer reset")
            self.left -= 1
            return True

        def retrieve(self) -> np.ndarray:
            return np.zeros((4, 4, 3), np.uint8)

        def timestamp(self) -> float | None:
            return None

        def close(self) -> None:
            pass

    opens = iter([FlakyReader(2), ConnectionRefusedError("down"), FlakyReader(1)])

    def opener() -> FlakyReader:
        item = next(opens, ConnectionRefusedError("gone"))
        if isinstance(item, Exception):
            raise item
        return item

    waits: list[float] = []
    source = StreamSource(opener, spec="fake://cam", reconnect=Reconnect(4, 1.0, 5.0), sleep=waits.append)
    source.realtime = False
    assert len(list(source)) == 3
    assert waits == [1.0, 2.0] + [1.0, 2.0, 4.0, 5.0]
    assert "peer reset" in caplog.text


def test_live_frames_keep_the_spacing_of_their_own_timestamps() -> None:
    """A network that delivers a stream in bursts must not bunch its frames: each connection is
    anchored at its first frame's arrival and then follows the source's timestamps; a frame without
    one, or a timestamp that jumps, falls back to arrival; times only ever increase."""
    now = [0.0]

    class TimedReader:
        fps, size, frames, live, error = 25.0, (4, 4), None, True, None

        def __init__(self, frames: list[tuple[float, float | None]]) -> None:
            self.left = list(frames)  # (arrival, source time)
            self.time: float | None = None

        def grab(self) -> bool:
            if not self.left:
                self.error = "end of data"
                return False
            now[0], self.time = self.left.pop(0)
            return True

        def retrieve(self) -> np.ndarray:
            return np.zeros((4, 4, 3), np.uint8)

        def timestamp(self) -> float | None:
            return self.time

        def close(self) -> None:
            pass

    burst = [(0.5, 10.0), (0.5, 10.04), (0.51, 10.08), (0.9, 10.12), (0.9, 10.16)]
    again = [(3.0, 0.0), (3.0, 0.04), (3.1, 500.0), (3.1, 500.04), (3.2, None), (3.3, 500.12)]
    readers = iter([TimedReader(burst), TimedReader(again)])

    def opener() -> TimedReader:
        reader = next(readers, None)
        if reader is None:
            raise ConnectionRefusedError("gone")
        return reader

    source = StreamSource(opener, spec="fake://cam", reconnect=Reconnect(1, 0.0, 0.0), sleep=lambda _: None,
                          clock=lambda: now[0], realtime=False)
    times = [f.timestamp for f in source]
    assert times == pytest.approx([0.5, 0.54, 0.58, 0.62, 0.66,  # the burst, spaced as sent
                                   3.0, 3.04,  # a new connection: anchored at its arrival
                                   3.1, 3.14,  # a jump of ~500 s: anchored again
                                   3.2, 3.3])  # no timestamp: arrival, which then anchors
    assert all(a < b for a, b in zip(times, times[1:], strict=False))


def test_mjpeg_over_http_is_timed_by_arrival(mjpeg_camera: http.server.ThreadingHTTPServer) -> None:
    """FFmpeg invents MJPEG-over-HTTP timestamps at a guessed rate: a live reader reports none."""
    from pvt_deploy.io.sources import PyAVReader

    reader = PyAVReader(f"http://127.0.0.1:{mjpeg_camera.server_address[1]}/video.mjpg", timeout=5)
    try:
        assert reader.live and reader.grab()
        assert reader.timestamp() is None
    finally:
        reader.close()


def test_connection_refused_fails_fast() -> None:
    with pytest.raises(InputError, match="cannot open stream rtsp://\\*\\*\\*@127.0.0.1:9/"):
        open_source("rtsp://admin:pw@127.0.0.1:9/stream", timeout=2)


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="a camera is attached here")
def test_missing_webcam_raises_input_error() -> None:
    with pytest.raises(InputError, match="webcam0"):
        open_source(0)


def test_a_camera_opens_on_an_opencv_without_cv2_utils_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenCV 4.10-4.12 (admitted by the requirements, the lowest that runs on NumPy 2) has its log
    level at the top of ``cv2``, not in ``cv2.utils.logging`` (4.13+): opening a camera there was an
    ImportError traceback instead of the one-line error, and no camera could ever be opened."""
    import sys

    import cv2.utils

    levels: list[int] = [3]  # OpenCV's default, WARNING
    monkeypatch.delattr(cv2.utils, "logging", raising=False)
    monkeypatch.setitem(sys.modules, "cv2.utils.logging", None)  # `from cv2.utils import logging` fails
    monkeypatch.setattr(cv2, "getLogLevel", lambda: levels[-1], raising=False)
    monkeypatch.setattr(cv2, "setLogLevel", levels.append, raising=False)
    with pytest.raises(InputError, match="webcam0"):
        open_source(0)
    assert levels == [3, 2, 3]  # quiet (ERROR) while the backends are tried, then as it was


def test_redact_url() -> None:
    assert redact_url("rtsp://admin:pw@10.0.0.2:554/s1") == "rtsp://***@10.0.0.2:554/s1"
    assert redact_url("http://cam.local/video") == "http://cam.local/video"
    # too malformed to parse (a bad port, a bad IPv6 literal): the password still never shows
    assert redact_url("rtsp://admin:pw@cam:99999/s1") == "rtsp://***@cam:99999/s1"
    assert redact_url("rtsp://admin:pw@[::1:554/s1") == "rtsp://***@[::1:554/s1"
    with pytest.raises(InputError, match=r"bad stream URL rtsp://\*\*\*@\[::1:554/s1"):
        open_source("rtsp://admin:pw@[::1:554/s1")
    assert is_live("0") and is_live("rtsp://cam/s") and is_live("http://h/v.mjpg") and not is_live("clip.mp4")


def test_one_test_tells_a_url_from_a_path() -> None:
    """is_url is the one test of "a URL, not a file" (output names, where audio is read from, what open_source
    opens as a stream): a scheme open_source reads, in any case; "://" somewhere in a path is not one."""
    assert is_url("HTTPS://host/clip.mp4") and is_url(" rtsp://cam/s ")
    assert is_url("rtsp://admin:pw@[::1:554/s1")  # too malformed to parse: the stream opener says why
    assert not is_url("clips/take://2.mp4") and not is_url("C:\\clips\\a.mp4") and not is_url("mailto://a")
    assert not is_url("0") and is_live("0")
    assert Frame(np.zeros((2, 2, 3), np.uint8), 0, "clips/take://2.mp4").name == "2.mp4"


class _OneFrame:
    """A reader of one 2x2 frame, live or not (a finite file served over HTTP)."""

    fps, size, frames, error = 25.0, (2, 2), 1, None

    def __init__(self, live: bool) -> None:
        self.live = live

    def grab(self) -> bool:
        return False

    def retrieve(self) -> np.ndarray:
        return np.zeros((2, 2, 3), np.uint8)

    def timestamp(self) -> float | None:
        return 0.0

    def close(self) -> None:
        pass


@pytest.mark.parametrize("live", [False, True])
def test_a_stream_offers_its_url_with_the_password_only_to_read_a_files_audio_again(live: bool) -> None:
    url = "http://ann:s3cr3t@host/clip.mp4"
    with StreamSource(lambda: _OneFrame(live), spec=redact_url(url), url=url) as source:
        assert source.audio_url == (None if live else url)  # a live feed cannot be read again
        assert "s3cr3t" not in repr(source) and source.spec == "http://***@host/clip.mp4"


def test_a_clock_that_jumps_ahead_in_a_ts_file_carries_on_from_the_frame_before(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two camera clips joined into one MPEG-TS, the second recorded ten minutes later: its frames
    follow the first clip's last frame (as ffmpeg treats a jump over 10 s in such formats), instead
    of the annotated mp4 holding one frame for ten minutes. A short gap is the clip's own timing. The
    file is whole: its declared length is on its own clock, which the last frame reached (it said
    'decoding ended at 5.4 s of the 600.4 s the file declares (truncated file?)')."""
    first_pts = [i + (5 * FPS if i >= 5 else 0) for i in range(10)]  # a 5 s gap within the first clip
    with caplog.at_level(logging.WARNING), \
            open_source(joined_ts(tmp_path, [first_pts, [600 * FPS + i for i in range(10)]])) as source:
        frames = list(source)
    assert source.error is None and caplog.text == ""
    assert [round(grey_level(f) / STEP) for f in frames] == list(range(20))
    first = [i / FPS + (5.0 if i >= 5 else 0.0) for i in range(10)]
    assert [f.timestamp for f in frames] == pytest.approx(first + [first[-1] + (i + 1) / FPS for i in range(10)],
                                                          abs=1e-6)


def test_the_packets_tell_the_restarts_of_the_clock_the_frames_are_on(tmp_path: Path) -> None:
    """video_joins reads where a file's video clock restarts, and the shift after, from its packets alone
    (an audio track copied beside the frames takes its own restarts' shifts from them): the same places
    and times as the frames decoded, for a clock that goes back and one that jumps ahead."""
    joined = joined_ts(tmp_path, [list(range(10)), list(range(5)), [600 * FPS + i for i in range(10)]])
    with open_source(joined) as source:
        times = [f.timestamp for f in source]
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        joins = video_joins(container)
        start = float(stream.start_time * stream.time_base)
    assert [join.start - start for join in joins] == pytest.approx([times[10], times[15]], abs=1e-6)
    assert [join.time - start for join in joins] == pytest.approx([0.0, 600.0], abs=1e-6)
    assert all(join.pos for join in joins)


def test_non_square_pixels_are_widened_to_the_shape_a_player_shows(tmp_path: Path) -> None:
    """A 720x480 DVD-style clip with 32:27 pixels plays as 853x480: frames come that wide (as rotated
    ones come upright), so a square on screen is square for the model and in the annotated video."""
    from fractions import Fraction

    path = tmp_path / "anamorphic.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 720, 480, "yuv420p"
        stream.codec_context.sample_aspect_ratio = Fraction(32, 27)
        for i in range(3):
            picture = np.zeros((480, 720, 3), np.uint8)
            picture[200:281, 300:369] = 255  # 69 stored pixels wide x 81 high: 81.8 x 81 on screen
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with open_source(path) as source:
        frames = list(source)
    assert len(frames) == 3 and all(f.image.shape == (480, 853, 3) for f in frames)
    rows, cols = np.nonzero(frames[0].image[..., 1] > 127)
    width, height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    assert abs(width - height) <= 2, (width, height)


def test_closing_a_reader_while_another_thread_decodes_leaves_that_decode_whole(tmp_path: Path) -> None:
    """A stopped ``infer`` closes its source while the pipeline's decode thread, left after the join's
    timeout on a loaded machine, may still be inside ``grab()``: ``close()`` raised "ValueError: generator
    already executing", a traceback where exit 143 was due. Closing now leaves the container to the
    decode in flight (closing it under FFmpeg could crash), and a later close finishes the job."""
    reader = PyAVReader(str(make_clip(tmp_path / "a.mp4", "libx264", frames=5)))
    inside, release = threading.Event(), threading.Event()
    decoded = reader._decoded

    def slow() -> Iterator[av.VideoFrame]:
        inside.set()
        release.wait(10)
        yield from decoded

    reader._decoded = slow()
    reader._peeked = False
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(reader.grab()))
    t.start()
    assert inside.wait(10)
    reader.close()  # raised ValueError before
    release.set()
    t.join(10)
    assert got == [True] and reader.retrieve().shape == (64, 96, 3)  # the decode in flight was not cut off
    reader.close()
    assert not reader.grab()
