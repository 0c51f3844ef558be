"""Input and output paths no other test drove: each the way a user meets it, on real files, real
decoding (PyAV, OpenCV) and real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from test_io_sources import (
    FPS,
    STEP,
    _MjpegHandler,
    _QuietHandler,
    grey_level,
    make_clip,
    make_video,
    zero_frames,
)
from test_pipeline import FakeBackend, ListSource, _model
from test_runtime_artifacts import decode_video

from pvt_deploy.assets import sample_image
from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import Reconnect, open_source, read_image

pytest_plugins = ["export_fixtures"]


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP file server on 127.0.0.1 over a folder of its own."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join(5)


def damage_clip(root: Path) -> Path:
    """``root/damaged.mp4``: 50 MJPEG frames (every frame its own packet) whose pictures 20, 21 and 35 are
    zeroed, the container around them intact."""
    return zero_frames(make_clip(root / "clip.mp4", "mjpeg"), root / "damaged.mp4")


def test_a_damaged_video_over_http_is_numbered_as_the_file_on_disk(http_root: tuple[str, Path]) -> None:
    """Frames after packets that do not decode kept their source numbers on disk (numbered by their
    times) but not over HTTP, where they were numbered by how many frames had been read: the picture of
    frame 22 was frame 20, and so were its JSON ``frame`` and COCO id, and ``vid_stride`` kept other
    frames than from the same file on disk. Both now number, and keep, the same frames."""
    base, root = http_root
    damage_clip(root)
    for stride in (1, 5):
        numbered = []
        for spec in (root / "damaged.mp4", f"{base}/damaged.mp4"):
            with open_source(spec, vid_stride=stride) as source:
                frames = list(source)
            numbered.append([(f.index, round(f.timestamp * FPS)) for f in frames])
        on_disk, over_http = numbered
        assert over_http == on_disk and all(index == by_time for index, by_time in on_disk)
        assert {20, 21, 35}.isdisjoint(index for index, _ in on_disk) and on_disk[-1][0] == 45 + 4 * (stride == 1)


def test_a_damaged_video_over_http_says_what_it_lost_as_on_disk(
        http_root: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """The same damaged file warned "3 of 50 frames could not be decoded (damaged file?)" on disk and said
    nothing over HTTP: the frames were gone without a word."""
    base, root = http_root
    damage_clip(root)
    said = []
    for spec in (root / "damaged.mp4", f"{base}/damaged.mp4"):
        caplog.clear()
        with caplog.at_level(logging.WARNING), open_source(spec) as source:
            assert len(list(source)) == 47
        said.append([r.getMessage().replace(str(spec), "SPEC") for r in caplog.records if r.levelno >= logging.WARNING])
    assert said[0] == said[1] == ["SPEC: 3 of 50 frames could not be decoded (damaged file?)"], said


# --- video files and streams that end early ------------------------------------------------------


def test_a_truncated_video_over_http_says_it_is_cut_short(
        http_root: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """The same truncated mp4 that warns as a local file ended in silence when served over HTTP: 27 of
    50 frames, the progress bar's count never reached, and no word of it (nor ``source ended early``
    from the CLI, which reads the source's ``error``)."""
    base, root = http_root
    full = make_clip(root / "full.mp4", "libx264")
    data = full.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    with open_source(f"{base}/full.mp4") as source:
        assert len(list(source)) == 50 and source.error is None  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING), open_source(f"{base}/cut.mp4") as source:
        assert source.kind == "stream" and source.frames == 50
        frames = list(source)
    assert 0 < len(frames) < 50 and [f.index for f in frames] == list(range(len(frames)))
    error = source.error  # type: ignore[attr-defined]
    assert error == f"only {len(frames)} of 50 frames decoded (truncated file?)"
    assert "cut.mp4" in caplog.text and "truncated file?" in caplog.text


def test_a_truncated_mkv_over_http_says_it_is_cut_short(
        http_root: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """mkv stores no frame count: its declared length tells, over HTTP as in a local file."""
    base, root = http_root
    full = make_clip(root / "full.mkv", "libx264", frames=100)
    (root / "cut.mkv").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with caplog.at_level(logging.WARNING), open_source(f"{base}/cut.mkv") as source:
        frames = list(source)
    assert 0 < len(frames) < 90
    assert source.error and "of the 4.0 s the file declares" in source.error  # type: ignore[attr-defined]
    assert "cut.mkv" in caplog.text


def test_a_video_whose_decoding_fails_midway_keeps_the_frames_before_it(tmp_path: Path) -> None:
    """Past 50 undecodable packets in a row the file is given up on: the frames before are processed
    and written (a playable mp4, one JSON line each), and the run says why it stopped."""
    path = make_clip(tmp_path / "clip.mkv", "mjpeg", frames=100)  # every frame its own packet
    with av.open(str(path)) as container:
        payloads = [bytes(p) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for k in range(20, 80):  # 60 damaged pictures in a row
        pos = data.find(payloads[k])
        data[pos : pos + len(payloads[k])] = bytes(len(payloads[k]))
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    model = _model(FakeBackend())
    results = list(model.predict(str(damaged), stream=True, save=True, save_json=True, save_dir=out, batch=1))
    assert [r.frame for r in results] == list(range(20))
    summary = model.last_summary
    assert summary is not None and summary.frames == 20
    assert summary.source_error and summary.source_error.startswith("Invalid data")
    assert decode_video(out / "damaged.mp4")[1] == 20
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(20))


def test_a_video_whose_every_picture_is_damaged_is_refused(tmp_path: Path) -> None:
    """A container whose packets are all there but none decodes: one line, before any model runs."""
    path = make_clip(tmp_path / "clip.mkv", "mjpeg", frames=10)
    with av.open(str(path)) as container:
        payloads = [bytes(p) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for payload in payloads:
        pos = data.find(payload)
        data[pos : pos + len(payload)] = bytes(len(payload))
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"damaged.mkv has no decodable video frames"):
        open_source(damaged)


# --- sources used the wrong way ------------------------------------------------------------------


def test_a_closed_source_cannot_be_iterated(tmp_path: Path) -> None:
    source = open_source(make_video(tmp_path / "clip.mp4", frames=3))
    source.close()
    with pytest.raises(InputError, match="is closed"):
        iter(source)


def test_a_video_closed_mid_iteration_frees_its_decoder(tmp_path: Path) -> None:
    """``close()`` while a loop over the frames is suspended (a user's ``break`` kept the iterator)."""
    source = open_source(make_video(tmp_path / "clip.mp4", frames=10))
    frames = iter(source)
    assert round(grey_level(next(frames)) / STEP) == 0
    source.close()
    frames.close()  # the suspended loop's own clean-up after close() closed its decoder
    with pytest.raises(InputError, match="is closed"):
        list(source)


@pytest.mark.parametrize("realtime", [False, True])
def test_a_stream_iterated_a_second_time_says_so_at_once(http_root: tuple[str, Path], realtime: bool) -> None:
    """A stream is read once. A second loop (a second ``predict`` of one opened source) is refused when
    it starts, starting no reader thread: in realtime mode the error used to come from that thread, and
    only if it got to run within the consumer's 0.1 s poll, which the first loop's stop flag (still set)
    cut short; on a busy machine the second loop then ended quietly with no frame."""
    base, root = http_root
    make_video(root / "clip.mp4", frames=6)
    with open_source(f"{base}/clip.mp4", realtime=realtime) as source:
        indices = [f.index for f in source]
        # realtime hands over the newest frame only: one the consumer was not scheduled in time for is dropped
        # (a CI run on two busy cores got 5), the last one never
        assert indices == list(range(6)) if not realtime else (indices == sorted(set(indices)) and indices[-1] == 5)
        threads = set(threading.enumerate())
        with pytest.raises(InputError, match="can be iterated only once"):
            iter(source)
        assert set(threading.enumerate()) <= threads  # none started (one of the server's may end meanwhile)


def test_a_stream_closed_unread_closes_its_connection(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    make_video(root / "clip.mp4", frames=6)
    source = open_source(f"{base}/clip.mp4")
    source.close()
    source.close()  # twice is fine
    with pytest.raises(InputError, match="is closed"):
        list(source)


def test_stopping_during_a_reconnect_backoff_ends_at_once() -> None:
    """A camera gone after 3 frames, and a backoff of a minute before the next try: a stop (Ctrl-C in
    ``infer``, a server's shutdown) ends the iteration at once, without sitting out the backoff and
    without the 'giving up' error of a stream whose retries ran out."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegHandler)
    server.lock, server.served, server.connections, server.per_connection = threading.Lock(), 0, 1, 3  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        source = open_source(f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg", realtime=False,
                             reconnect=Reconnect(max_retries=None, initial_wait=60.0, max_wait=60.0))
        got: list[int] = []
        done = threading.Event()

        def consume() -> None:
            for frame in source:
                got.append(frame.index)
                if len(got) == 3:
                    threading.Timer(0.3, source.stop).start()  # stop while it waits to reconnect
            done.set()

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        assert done.wait(20), "the stop waited for the backoff"
        source.close()
        assert got == [0, 1, 2] and server.served == 1  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_a_picture_url_keeps_its_exif_orientation(http_root: tuple[str, Path]) -> None:
    """A phone's portrait photo served over http(s) (EXIF orientation 6) is the file's picture to the pixel,
    upright as read_image reads the file (FFmpeg's decode, before 52c1a5a, was upright too but off at every
    colour edge: a mean 14 levels on a noisy picture)."""
    from PIL import Image

    base, root = http_root
    image = Image.fromarray(read_image(sample_image("coffee"))[:96, :128])
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(root / "phone.jpg", exif=exif.tobytes(), quality=95)
    with open_source(f"{base}/phone.jpg") as source:
        [frame] = list(source)
    assert frame.image.shape == (128, 96, 3)
    np.testing.assert_array_equal(frame.image, read_image(root / "phone.jpg"))


def test_a_picture_url_is_an_image_not_a_one_frame_video(http_root: tuple[str, Path], tmp_path: Path) -> None:
    """``predict("https://host/bus.jpg", save=True)``, the first thing an Ultralytics user runs, gave a
    result numbered frame 0 at 0.0 s and wrote ``bus.mp4``, a one-frame video, and a COCO image id 0:
    the URL was read as a stream. It is now a picture, as the same file on disk is."""
    base, root = http_root
    (root / "coffee.jpg").write_bytes(sample_image("coffee").read_bytes())
    with open_source(f"{base}/coffee.jpg") as source:
        assert source.kind == "image" and source.frames == 1
        [frame] = list(source)
    # decoded as the file on disk is, to the pixel (by FFmpeg, as a stream, it differed at colour edges)
    np.testing.assert_array_equal(frame.image, read_image(sample_image("coffee")))
    [r] = _model(FakeBackend()).predict(f"{base}/coffee.jpg", save=True, save_json=True, save_dir=tmp_path / "out")
    assert r.frame is None and r.timestamp is None and r.path == f"{base}/coffee.jpg"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["coffee.jpg", "predictions.jsonl",
                                                                     "predictions_coco.json"]
    assert [d["image_id"] for d in json.loads((tmp_path / "out" / "predictions_coco.json").read_text())] == ["coffee"] * 2
    with open_source(f"{base}/coffee.jpg?raw=true") as source:  # FFmpeg's jpeg_pipe, which counts no frames
        assert source.kind == "image" and source.spec == f"{base}/coffee.jpg?raw=true"
        np.testing.assert_array_equal(next(iter(source)).image, read_image(sample_image("coffee")))
    (root / "two.jpg").write_bytes(sample_image("coffee").read_bytes() + sample_image("chelsea").read_bytes())
    with open_source(f"{base}/two.jpg?raw=true") as source:  # a pipe of pictures stays a stream, whole
        assert source.kind == "stream" and [f.image.shape for f in source] == [(400, 600, 3), (300, 451, 3)]
    make_clip(root / "clip.mp4", "libx264")
    with open_source(f"{base}/clip.mp4") as source:  # a video's URL stays a stream
        assert source.kind == "stream"


def test_a_picture_url_bigger_than_the_memory_free_is_refused_before_it_is_decoded(
        http_root: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A picture's URL went past read_image's decompression-bomb check: FFmpeg decoded its first frame on
    opening (a 1 MB PNG declaring 20000x20000 served over HTTP took GBs). Its downloaded bytes are now
    weighed against the memory free (faked small here) before FFmpeg or OpenCV decode them, as a file's are."""
    from cli_run import run as cli

    from pvt_deploy.io import sources
    from pvt_deploy.utils import cpu

    base, root = http_root
    cv2.imwrite(str(root / "big.png"), np.full((480, 640, 3), 90, np.uint8))  # 6.1 MB to run
    decoded: list[int] = []
    imdecode = sources._imdecode
    monkeypatch.setattr(sources, "_imdecode", lambda data: decoded.append(data.size) or imdecode(data))
    monkeypatch.setattr(cpu, "available_memory", lambda: 1_000_000)
    with pytest.raises(InputError) as e:
        open_source(f"{base}/big.png")
    assert str(e.value) == (f"{base}/big.png: a 640x480 image needs about 6 MB of memory to decode and run, "
                            "more than the 1 MB free (free some memory, or scale it down)")
    assert decoded == []
    code, _, err = cli(monkeypatch, capsys, "infer", f"{base}/big.png", "--model", "pvt_v2_b0", "--no-save")
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"error: {base}/big.png: a 640x480 image needs about 6 MB of memory to decode and run, "
                     "more than the 1 MB free (free some memory, or scale it down)"], err
    monkeypatch.setattr(cpu, "available_memory", lambda: 7_000_000)  # enough free: read as before
    with open_source(f"{base}/big.png") as source:
        assert source.kind == "image" and next(iter(source)).image.shape == (480, 640, 3)


def test_cli_infer_on_a_picture_url_writes_what_the_file_on_disk_writes(
        http_root: tuple[str, Path], seg_artifact: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``pvt-deploy infer https://host/x.jpg`` took the URL for a stream until it was opened: it wrote
    ``predictions.jsonl`` unasked (a picture on disk writes it only with ``--save-json``) and left out
    ``--save-mask`` (images only). It now writes what the same file on disk writes."""
    from cli_run import run as cli

    base, root = http_root
    (root / "coffee.jpg").write_bytes(sample_image("coffee").read_bytes())
    for spec, out in ((f"{base}/coffee.jpg", tmp_path / "url"), (str(root / "coffee.jpg"), tmp_path / "disk")):
        code, _, err = cli(monkeypatch, capsys, "infer", spec, "--model", str(seg_artifact.folder), "--imgsz", "64",
                           "--save-mask", "-o", str(out))
        assert code == 0, err
        assert sorted(p.name for p in out.iterdir()) == ["coffee.jpg", "coffee_mask.png"], err


def test_a_finite_stream_in_batches_keeps_every_frame_in_order(http_root: tuple[str, Path]) -> None:
    """A video served over HTTP runs as a stream: batches take what has arrived, and the end of the
    frames arriving while a batch is gathered still ends it with every frame."""
    base, root = http_root
    make_video(root / "clip.mp4", frames=11)
    model = _model(FakeBackend(delay=0.02))
    results = list(model.predict(f"{base}/clip.mp4", stream=True, batch=4))
    assert [r.frame for r in results] == list(range(11))


@pytest.mark.parametrize("spec", ["rtsp:///stream", "http://"])
def test_a_stream_url_without_a_host_is_one_line(spec: str) -> None:
    with pytest.raises(InputError, match="bad stream URL .*: no host"):
        open_source(spec)


@pytest.mark.parametrize("spec", [3.5, {"path": "clip.mp4"}])  # bytes are an encoded picture: test_api_46
def test_a_source_of_another_type_is_refused(spec: object) -> None:
    with pytest.raises(InputError, match="unsupported source type"):
        _model(FakeBackend()).predict(spec)


def test_a_generator_of_pictures_is_refused_saying_what_to_give() -> None:
    """``predict(frame for frame in frames)`` said only "unsupported source type generator", not that a
    list of the same pictures runs."""
    picture = np.zeros((8, 8, 3), np.uint8)
    for spec in ((p for p in [picture]), iter([picture]), map(np.asarray, [picture]), {"a.jpg"}):
        with pytest.raises(InputError, match=r"unsupported source type (\w+): .*a list of image paths and pictures; "
                                             r"give list\(\.\.\.\) of a \1, or call predict on each picture"):
            _model(FakeBackend()).predict(spec)


def test_a_file_neither_image_nor_video_says_so(tmp_path: Path) -> None:
    notes = tmp_path / "notes.xyz"
    notes.write_text("shopping list\n" * 50)
    with pytest.raises(InputError, match=r"notes.xyz is neither a readable image nor a video"):
        open_source(notes)


# --- pictures in other formats and depths ------------------------------------------------------


def test_a_float_tiff_and_a_float_array_are_read_as_0_to_1(tmp_path: Path) -> None:
    rgb = np.zeros((6, 8, 3), np.float32)
    rgb[..., 0], rgb[..., 2] = 1.0, 0.5  # red full, blue half
    ok, data = cv2.imencode(".tiff", rgb[..., ::-1].copy())  # OpenCV writes BGR
    assert ok
    data.tofile(str(tmp_path / "float.tiff"))
    image = read_image(tmp_path / "float.tiff")
    assert image.dtype == np.uint8 and image.shape == (6, 8, 3)
    assert image[0, 0].tolist() == [255, 0, 128]
    # an in-memory float picture of 0..255 values, and one of 0..1, are the same picture
    [a] = list(open_source(rgb * 255.0))
    [b] = list(open_source(rgb))
    assert a.image.tolist() == b.image.tolist() == image.tolist()


def test_a_16_bit_or_float_pil_image_is_the_picture_its_file_is(tmp_path: Path) -> None:
    """``Image.open`` of a 16-bit grey PNG (mode I;16) or a float TIFF (mode F) went through Pillow's
    ``convert("RGB")``, which clips: the 16-bit picture came in almost all white, the 0..1 float one
    black, where ``predict`` of the file's path reads both right."""
    from PIL import Image

    ramp = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "grey16.png"), ramp * 257)
    ok, data = cv2.imencode(".tiff", (ramp / 255.0).astype(np.float32))
    assert ok
    data.tofile(str(tmp_path / "float.tiff"))
    for name, mode in (("grey16.png", "I;16"), ("float.tiff", "F")):
        with Image.open(tmp_path / name) as pil:
            assert pil.mode == mode
            [frame] = list(open_source(pil))
        assert frame.image.tolist() == read_image(tmp_path / name).tolist()
        assert np.abs(frame.image[..., 1].astype(int) - ramp).max() <= 1
    as_int = Image.fromarray(ramp.astype(np.int32) * 257)  # mode I holding 16-bit values
    eight = Image.fromarray(ramp.astype(np.int32))  # mode I holding 8-bit values
    for pil in (as_int, eight):
        assert pil.mode == "I"
        [frame] = list(open_source(pil))
        assert np.abs(frame.image[..., 0].astype(int) - ramp).max() <= 1
    with pytest.raises(InputError, match=r"int32 picture's values lie in -5\.\."):
        open_source(Image.fromarray(ramp.astype(np.int32) - 5))


def test_gray_and_pil_pictures_become_rgb() -> None:
    from PIL import Image

    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    [frame] = list(open_source(gray))
    assert frame.image.shape == (3, 4, 3) and (frame.image[..., 1] == gray).all()
    [frame] = list(open_source(Image.fromarray(gray, "L")))
    assert frame.image.shape == (3, 4, 3) and (frame.image[..., 2] == gray).all()
    with pytest.raises(InputError, match="got shape"):
        open_source(np.zeros((3, 4, 2), np.uint8))


def test_a_webp_photo_is_annotated_as_webp(tmp_path: Path) -> None:
    photo = tmp_path / "in" / "cat.webp"
    photo.parent.mkdir()
    ok, data = cv2.imencode(".webp", np.full((48, 64, 3), 90, np.uint8))
    assert ok
    data.tofile(str(photo))
    out = tmp_path / "out"
    [result] = _model(FakeBackend()).predict(str(photo), save=True, save_dir=out)
    written = out / "cat.webp"
    assert written.is_file() and read_image(written).shape == (48, 64, 3)
    assert result.path == str(photo)


# --- a disk that fills up -----------------------------------------------------------------------

_FULL_DISK_CHILD = """
import resource, sys
sys.path.insert(0, {tests!r})
from test_pipeline import FakeBackend, ListSource, _model
from pvt_deploy.errors import InputError
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail with EFBIG
try:
    for _ in _model(FakeBackend()).predict(ListSource(30), stream=True, save=True, save_dir=sys.argv[1]):
        pass
except InputError as e:
    print("error:", e)
"""


@pytest.mark.parametrize("room", [0.2, 0.999])
def test_a_disk_that_fills_while_the_video_is_written_leaves_no_video(tmp_path: Path, room: float) -> None:
    """No mock: the process may write files of at most ``room`` of the mp4's size, so the write fails
    during the encoding (0.2) or as the file is finalised (0.999). One line says so, and no mp4 is left,
    under its name or as a temporary file."""
    whole = tmp_path / "whole"
    list(_model(FakeBackend()).predict(ListSource(30), stream=True, save=True, save_dir=whole))
    size = (whole / "memory.mp4").stat().st_size
    out = tmp_path / "out"
    child = _FULL_DISK_CHILD.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", child, str(out), str(int(size * room))], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent.parent,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"error: cannot write outputs to {out}: File too large", proc.stdout + proc.stderr
    assert not out.exists() or list(out.iterdir()) == []


# --- the result API's Ultralytics-style accessors -----------------------------------------------


def test_the_result_accessors_agree_with_each_other(tmp_path: Path) -> None:
    """``xywh``, ``xyxyn``, ``xywhn``, ``data``, ``labels``, indexing and iteration of a real result,
    and its picture saved under an upper-case suffix."""
    picture = np.full((48, 64, 3), 200, np.uint8)
    [result] = _model(FakeBackend()).predict(picture)
    boxes = result.boxes.cpu().numpy()  # type: ignore[union-attr]
    h, w = result.orig_shape
    assert (h, w) == (48, 64) and len(boxes) == len(result) == 2
    x1, y1, x2, y2 = boxes.xyxy.T
    assert np.allclose(boxes.xywh, np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1))
    assert np.allclose(boxes.xyxyn, boxes.xyxy / [w, h, w, h]) and np.allclose(boxes.xywhn, boxes.xywh / [w, h, w, h])
    assert boxes.data.shape == (2, 6) and np.allclose(boxes.data[:, 4], boxes.conf)
    assert boxes.labels == [["thing", "other"][c] for c in boxes.cls]
    assert [len(b) for b in boxes] == [1, 1] and len(boxes[boxes.conf > 2]) == 0
    assert result.verbose() in ("1 thing, 1 other", "1 other, 1 thing")
    saved = result.save(tmp_path / "shot.JPG")
    assert read_image(saved).shape == (48, 64, 3)
    with pytest.raises(InputError, match="has no mask"):
        result.save_mask(tmp_path / "mask.png")
