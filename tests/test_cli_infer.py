"""``pvt-deploy infer`` end to end: outputs decoded back, exit codes, one-line errors, Ctrl-C.

Runs the real console entry point (``pvt_deploy.cli.main``), so error printing and exit codes are
what a shell sees.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_run import run
from test_io_sinks import audio_of, clip_with_audio, frame_times, served, serving
from test_runtime_artifacts import cached_export, decode_video, make_clip

from pvt_deploy.assets import sample_images
from pvt_deploy.cli import main


@pytest.fixture(scope="module")
def det_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "det")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("cli") / "walk.mp4", frames=12, size=(320, 180), fps=12.0)


@contextlib.contextmanager
def paced_camera(on_connect: Callable[[str], object]) -> Iterator[str]:
    """An MJPEG camera on 127.0.0.1 that sends 25 frames a second for 10 s to each connection (a run
    stops long before), calling ``on_connect`` with the path asked for; yields its URL."""
    import http.server
    import time

    class Camera(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            on_connect(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for i in range(250):
                    body = cv2.imencode(".jpg", np.full((48, 64, 3), (9 * i) % 255, np.uint8))[1].tobytes()
                    self.wfile.write(f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
                                     .encode() + body + b"\r\n")
                    self.wfile.flush()
                    time.sleep(0.04)
            except ConnectionError:
                pass

    with serving(Camera) as base:
        yield f"{base}/cam.mjpg"


def _ctrl_c_from_call(monkeypatch: pytest.MonkeyPatch, n: int) -> Callable[..., dict[str, np.ndarray]]:
    """ONNX Runtime's ``infer`` raises KeyboardInterrupt (a Ctrl-C there: how a live stream ends) from its
    ``n``-th call on; returns the real ``infer``."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    real = OnnxRuntimeBackend.infer
    calls = {"n": 0}

    def interrupted(self: OnnxRuntimeBackend, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] >= n:
            raise KeyboardInterrupt
        return real(self, feed)

    monkeypatch.setattr(OnnxRuntimeBackend, "infer", interrupted)
    return real


def assert_one_line_error(err: str, needle: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and needle in lines[-1], err
    assert "Traceback" not in err


def test_no_arguments_runs_the_default_model_on_the_bundled_sample(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pvt_deploy.runtimes import loader

    monkeypatch.setattr(loader, "DEFAULT_MODEL", "pvt_v2_b0-cls")  # pvt_small is too slow for a unit test
    monkeypatch.chdir(tmp_path)
    code, _, err = run(monkeypatch, capsys, "infer")
    assert code == 0, err
    assert "RANDOM WEIGHTS" in err and "source 3 images\n" in err and "\n3 images in " in err
    out = tmp_path / "runs" / "infer" / "pvt_v2_b0-cls"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in sample_images())
    code, _, err = run(monkeypatch, capsys, "infer", "--no-save", "--save-json")  # a second run never overwrites
    assert code == 0, err
    second = tmp_path / "runs" / "infer" / "pvt_v2_b0-cls2"
    assert sorted(p.name for p in second.iterdir()) == ["predictions.jsonl"]
    records = [json.loads(line) for line in (second / "predictions.jsonl").read_text().splitlines()]
    assert [r["task"] for r in records] == ["classify"] * 3
    # one line per picture saying what the model made of it: the top 3 classes of its JSON record
    for i, r in enumerate(records):
        said = ", ".join(rf"{re.escape(t['class'])} \d+\.\d%" for t in r["top"][:3])
        line = rf"^{i + 1}/3 {re.escape(r['source'])} {r['width']}x{r['height']}: {said} \(\d+\.\d ms\)$"
        assert re.search(line, err, re.M), err


def test_video_gives_h264_at_the_source_size_and_one_json_line_per_frame(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path,
        long_clip: Path, tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export), "--batch", "2",
                       "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert "(video, 12 frames)" in err and "\n12 frames in " in err and "ms/frame" in err and "encode" in err
    codec, frames, size, fps = decode_video(tmp_path / "out" / "walk.mp4")
    assert (codec, frames, size) == ("h264", 12, (320, 180)) and fps == pytest.approx(12.0)
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(12))
    coco = json.loads((tmp_path / "out" / "predictions_coco.json").read_text())
    assert {d["image_id"] for d in coco} <= set(range(12))


def test_variable_rate_video_keeps_its_timing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              det_export: Path, tmp_path: Path) -> None:
    """A variable-rate clip (phone recordings, screen captures) is annotated at its own frame times,
    the ones the JSON lines report, not laid at its nominal rate (which would drift from its audio)."""
    times = [0.0, 0.1, 0.13, 0.16, 0.4, 0.43, 0.46, 0.8]
    clip = make_clip(tmp_path / "vfr.mkv", frames=len(times), size=(160, 96), fps=25.0, times=times)
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert frame_times(tmp_path / "out" / "vfr.mp4") == pytest.approx(times, abs=1e-3)
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["timestamp"] for line in lines] == pytest.approx(times, abs=1e-3)


def test_a_video_keeps_its_audio_unless_told_not_to(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], det_export: Path,
                                                    tmp_path: Path) -> None:
    clip = clip_with_audio(tmp_path / "talk.mp4", "aac", frames=10)
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "-o", str(tmp_path / "a"))
    assert code == 0, err
    codec, start, seconds, _ = audio_of(tmp_path / "a" / "talk.mp4")  # type: ignore[misc]
    assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(0.4, abs=0.05)
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "--no-audio",
                       "-o", str(tmp_path / "b"))
    assert code == 0, err
    assert audio_of(tmp_path / "b" / "talk.mp4") is None
    assert decode_video(tmp_path / "b" / "talk.mp4")[1] == 10


def test_a_video_read_over_http_keeps_its_audio(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                det_export: Path, tmp_path: Path) -> None:
    """A clip given as an http(s) URL was annotated silent: the audio was taken only from local files.
    The URL of a file is read again from its start once the video is done, as a local file is."""
    site = tmp_path / "site"
    site.mkdir()
    clip_with_audio(site / "talk.mp4", "aac", frames=10)
    with served(site) as base:
        code, _, err = run(monkeypatch, capsys, "infer", f"{base}/talk.mp4", "--model", str(det_export),
                           "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert "audio" not in err  # no warning about it
    codec, start, seconds, _ = audio_of(tmp_path / "out" / "talk.mp4")  # type: ignore[misc]
    assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(0.4, abs=0.05)
    assert decode_video(tmp_path / "out" / "talk.mp4")[1] == 10


def test_a_video_read_over_http_with_a_password_keeps_its_audio_and_shows_the_password_nowhere(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_export: Path, tmp_path: Path) -> None:
    """infer http://user:pw@host/clip.mp4 wrote a silent mp4 without a word: the audio was looked for at the
    URL the frames carry, whose password is taken out. It is now read with the password, which appears in
    no line printed or logged, no output's name and no JSON."""
    site = tmp_path / "site"
    site.mkdir()
    clip_with_audio(site / "talk.mp4", "aac", frames=10)
    caplog.set_level(logging.DEBUG)
    with served(site, login=("ann", "s3cr3t")) as base:
        url = base.replace("http://", "http://ann:s3cr3t@") + "/talk.mp4"
        code, out, err = run(monkeypatch, capsys, "infer", url, "--model", str(det_export), "-o", str(tmp_path / "out"))
    assert code == 0, err
    codec, start, seconds, _ = audio_of(tmp_path / "out" / "talk.mp4")  # type: ignore[misc]
    assert codec == "aac" and abs(start) < 0.03 and seconds == pytest.approx(0.4, abs=0.05)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predictions.jsonl", "predictions_coco.json",
                                                                    "talk.mp4"]
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[0])["source"] == base.replace("http://", "http://***@") + "/talk.mp4"
    written = "".join(p.read_text() for p in (tmp_path / "out").glob("*.json*"))
    assert all("s3cr3t" not in text for text in (out, err, caplog.text, written))


def test_a_live_stream_over_http_is_written_silent_without_a_second_connection(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """An http(s) URL of a live feed (an MJPEG camera) cannot be read again from its start: its video is
    silent, and the camera sees the one connection the source makes (one more, to look for audio to
    carry over, could take a camera that serves one client at a time)."""
    connections: list[str] = []
    _ctrl_c_from_call(monkeypatch, 7)
    with paced_camera(lambda path: connections.append(path)) as url:
        code, _, err = run(monkeypatch, capsys, "infer", url, "--model", str(det_export), "--batch", "1",
                           "-o", str(tmp_path / "out"))
    assert code == 130, err
    assert connections == ["/cam.mjpg"] and "audio" not in err
    assert audio_of(tmp_path / "out" / "cam.mp4") is None and decode_video(tmp_path / "out" / "cam.mp4")[1] >= 5


def test_vid_stride_keeps_every_nth_frame(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          det_export: Path, long_clip: Path, tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export), "--vid-stride", "4",
                       "--no-save-json", "-o", str(tmp_path))
    assert code == 0, err
    codec, frames, size, fps = decode_video(tmp_path / "walk.mp4")
    assert (codec, frames, size) == ("h264", 3, (320, 180)) and fps == pytest.approx(3.0)
    assert not (tmp_path / "predictions.jsonl").exists()


def test_corrupt_image_in_a_folder_is_skipped_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    shutil.copyfile(sample_images()[2], folder / "b.jpg")
    shutil.copyfile(sample_images()[1], folder / "c.jpg")
    with caplog.at_level(logging.WARNING):
        code, out, err = run(monkeypatch, capsys, "infer", str(folder), "--model", str(det_export), "--save-json",
                             "--classes", "person,cat", "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert "a.jpg" in caplog.text and "1 unreadable image skipped" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.jpg", "c.jpg", "predictions.jsonl",
                                                                  "predictions_coco.json"]
    # the count runs over the pictures that could be read: 1/2, 2/2 (it was 1/3, 2/3, never reaching the end)
    lines = [line.split()[:2] for line in (out + err).splitlines() if "b.jpg " in line or "c.jpg " in line]
    assert [count for count, _ in lines] == ["1/2", "2/2"], out + err
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 and {d["class"] for r in records for d in r["detections"]} <= {"person", "cat"}


def test_coco_image_ids_stay_unique_when_file_names_collide(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_export: Path, tmp_path: Path) -> None:
    """001.jpg and 1.jpg both read as COCO id 1, a.jpg and a.png both as "a": COCOeval would merge
    their detections. With a name that is not a number every id is a string, the name without its
    extension ("001" and "1" apart); a later one that would share its id gets its file name, with a warning."""
    folder = tmp_path / "dup"
    folder.mkdir()
    for name in ("001.jpg", "1.jpg", "a.jpg"):
        shutil.copyfile(sample_images()[2], folder / name)
    cv2.imwrite(str(folder / "a.png"), cv2.imread(str(sample_images()[0])))
    with caplog.at_level(logging.WARNING):
        code, _, err = run(monkeypatch, capsys, "infer", str(folder), "--model", str(det_export), "--save-json",
                           "--conf", "0.01", "--no-save", "-o", str(tmp_path / "out"))
    assert code == 0, err
    lines = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    coco = json.loads((tmp_path / "out" / "predictions_coco.json").read_text())
    per_id: dict[object, int] = {}
    for d in coco:
        per_id[d["image_id"]] = per_id.get(d["image_id"], 0) + 1
    expected: dict[object, int] = {}
    for r in lines:  # in processing order, the first of two names keeps the id its file name gives
        name = Path(r["source"]).name
        stem = Path(name).stem
        expected[name if stem in expected else stem] = len(r["detections"])
    assert per_id == expected and len(expected) == 4 and {"001", "1"} <= set(expected)
    assert caplog.text.count("COCO image ids of") == 1


def test_truncated_video_processes_the_prefix_and_stays_playable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.mp4", frames=24, size=(160, 96), fps=24.0)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    code, _, err = run(monkeypatch, capsys, "infer", str(cut), "--model", str(det_export), "-o", str(tmp_path / "o"))
    assert code == 0, err  # documented: a truncated file is processed as far as it decodes, with a warning
    assert "source ended early" in err
    codec, frames, size, _ = decode_video(tmp_path / "o" / "cut.mp4")
    assert codec == "h264" and 0 < frames < 24 and size == (160, 96)
    assert len((tmp_path / "o" / "predictions.jsonl").read_text().splitlines()) == frames


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["infer", "no/such/video.mp4", "--model", "pvt_v2_b0"], 2, "no such file or folder"),
    (["infer", "--model", "pvt_v9_huge"], 2, "unknown model 'pvt_v9_huge'"),
    (["infer", "--model", "exports/missing_model"], 2, "no such file or folder"),
    (["infer", "--model", "pvt_v2_b0", "--imgsz", "12x"], 2, "--imgsz"),
    (["infer", "--model", "pvt_v2_b0", "--backend", "trt"], 2, "export it first"),
    # the CLI's option names, not the Python API's (conf, max_det), which messages of code both share named
    (["infer", "--model", "pvt_v2_b0", "--max-det=-1"], 2, "error: --max-det must be an integer >= 1, got -1"),
    (["infer", "--model", "pvt_v2_b0", "--max-det", "0"], 2, "error: --max-det must be an integer >= 1, got 0"),
    (["infer", "--model", "pvt_v2_b0", "--conf", "1.5"], 2, "error: --conf must be in [0, 1]"),
    (["infer", "--model", "pvt_v2_b0", "--iou=-0.1"], 2, "error: --iou must be in [0, 1]"),
    (["infer", "--model", "pvt_v2_b0", "--draw-conf", "1.5"], 2, "error: --draw-conf must be in [0, 1]"),
])
def test_bad_input_is_one_line_and_an_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    got, _, err = run(monkeypatch, capsys, *args)
    assert got == code, err
    assert_one_line_error(err, needle)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_as_the_source_is_said_to_be_one(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``infer pipe.jpg`` on a named pipe said 'no such file or folder: pipe.jpg', of a path that is there
    (in a list too: 'no such file'). It now says what the path is, one line, exit 2, before any model loads."""
    monkeypatch.chdir(tmp_path)
    os.mkfifo("pipe.jpg")
    (tmp_path / "list.txt").write_text("pipe.jpg\n")
    for source, needle in [("pipe.jpg", "pipe.jpg is a named pipe, not a regular file or folder"),
                           ("list.txt", "list.txt: pipe.jpg is a named pipe, not a regular file")]:
        got, _, err = run(monkeypatch, capsys, "infer", source, "--model", "pvt_v2_b0", "--no-save")
        assert got == 2, err
        assert_one_line_error(err, needle)
        assert "no such file" not in err


def test_a_lone_picture_bigger_than_the_memory_free_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A decompression bomb (a small file declaring 20000x20000) was decoded whole and the OOM killer ended
    infer without a word; weighed against the memory free (faked small here) it is one line, exit 2."""
    from pvt_deploy.utils import cpu

    monkeypatch.setattr(cpu, "available_memory", lambda: 2_000_000)
    cv2.imwrite(str(tmp_path / "big.png"), np.full((480, 640, 3), 90, np.uint8))
    got, _, err = run(monkeypatch, capsys, "infer", str(tmp_path / "big.png"), "--model", "pvt_v2_b0", "--no-save")
    assert got == 2, err
    assert_one_line_error(err, f"{tmp_path / 'big.png'}: a 640x480 image needs about 6 MB of memory to decode "
                               "and run, more than the 2 MB free")


def test_a_video_bigger_than_the_memory_free_is_one_line_and_writes_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """A clip, or a URL of one, whose frames need more than the memory free (faked small here) was decoded
    frame after frame until the OOM killer ended infer without a word, leaving a hidden .part.mp4 and
    predictions.jsonl.part. It is one line, exit 2, before a frame is decoded, and nothing is written; with
    enough memory free it runs (and with none known: test_io_sources)."""
    from pvt_deploy.utils import cpu

    site = tmp_path / "site"
    site.mkdir()
    clip = make_clip(site / "walk.mp4", frames=3, size=(160, 96))  # 160 x 96 x 260 B: 4 MB to run
    monkeypatch.chdir(tmp_path)  # the default output folder, runs/infer/<model>, would be made here
    monkeypatch.setattr(cpu, "available_memory", lambda: 1_000_000)
    with served(site) as base:
        for given in (str(clip), f"{base}/walk.mp4"):
            code, _, err = run(monkeypatch, capsys, "infer", given, "--model", str(det_export))
            assert code == 2, err
            assert [line for line in err.splitlines() if line.strip()][-1] == (
                f"error: {given}: a 160x96 video needs about 4 MB of memory to decode and run, more than the "
                "1 MB free (free some memory, or scale it down)"), err
            assert "Traceback" not in err and not (tmp_path / "runs").exists()
    monkeypatch.setattr(cpu, "available_memory", lambda: 5_000_000)  # enough free: run as before
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "--imgsz", "128", "-o", "out")
    assert code == 0, err
    assert decode_video(tmp_path / "out" / "walk.mp4")[1:3] == (3, (160, 96))


def test_a_video_is_weighed_at_what_the_run_keeps_in_memory(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """A run that saves no annotated video holds no drawn frames and no encoder: it needs less than half the
    memory a frame's pixel needs otherwise (120 against 260 bytes, measured), and was refused at the saving
    run's figure: a 4K camera watched with --no-save on an edge box with 1.5 GB free."""
    from pvt_deploy.api import Model
    from pvt_deploy.errors import InputError
    from pvt_deploy.utils import cpu

    clip = make_clip(tmp_path / "walk.mp4", frames=3, size=(160, 96))  # 160 x 96: 4.0 MB saved, 1.8 MB not
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cpu, "available_memory", lambda: 3_000_000)
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "--imgsz", "64")
    assert code == 2 and "a 160x96 video needs about 4 MB" in err, err
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "--imgsz", "64",
                       "--no-save", "-o", "json")
    assert code == 0, err
    assert len((tmp_path / "json" / "predictions.jsonl").read_text().splitlines()) == 3
    model = Model(str(det_export), imgsz=64)
    try:
        assert len(model.predict(str(clip))) == 3  # the API's default: nothing saved
        with pytest.raises(InputError, match="needs about 4 MB"):
            model.predict(str(clip), save=True, save_dir=tmp_path / "api")
    finally:
        model.close()


def test_a_video_stopped_midway_by_frames_too_big_says_why(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_export: Path, tmp_path: Path) -> None:
    """A clip that switches midway to frames the memory free cannot run keeps the frames before them, and
    the warning says why in words: it said 'stopped by _TooBigToDecode' (a private class's name) of the
    annotated video and of the COCO file."""
    from test_io_sources import switching_clip

    from pvt_deploy.utils import cpu

    clip = switching_clip(tmp_path / "switch.mkv", [(64, 48)] * 2 + [(640, 480)] + [(64, 48)])
    monkeypatch.setattr(cpu, "available_memory", lambda: 1_000_000)  # 64x48 runs, 640x480 does not
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "--imgsz", "64",
                       "-o", str(tmp_path / "out"))
    assert code == 2, err
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert "_TooBigToDecode" not in warned and "stopped by" not in warned, warned
    assert re.search(r"switch\.mp4: .*a 640x480 video needs about 80 MB .*; keeping the 2 frames written", warned), warned
    assert decode_video(tmp_path / "out" / "switch.mp4")[1] == 2


def test_corrupt_or_mismatched_checkpoint_is_bad_input(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(256)) * 4)
    got, _, err = run(monkeypatch, capsys, "infer", "--model", str(junk), "--no-save")
    assert got == 2, err
    assert_one_line_error(err, "corrupt or truncated checkpoint")
    wrong = tmp_path / "wrong.pth"
    torch.save({"patch_embed1.proj.weight": torch.zeros(8, 3, 7, 7), "something.else": torch.zeros(3)}, wrong)
    got, _, err = run(monkeypatch, capsys, "infer", "--model", "pvt_v2_b0-cls", "--weights", str(wrong), "--no-save")
    assert got == 2, err
    assert_one_line_error(err, "missing")


def test_size_outside_the_graph_range_and_unreadable_input(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "infer", "--model", str(det_export), "--imgsz", "1024")
    assert code == 2
    assert_one_line_error(err, "outside the graph's dynamic range [64, 320]")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    code, _, err = run(monkeypatch, capsys, "infer", str(bad), "--model", str(det_export))
    assert code == 2
    assert_one_line_error(err, "broken.mp4")


def test_show_without_a_display_says_so_and_continues(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    image = tmp_path / "one.jpg"
    shutil.copyfile(sample_images()[2], image)
    code, _, err = run(monkeypatch, capsys, "infer", str(image), "--model", str(det_export), "--show",
                       "-o", str(tmp_path / "o"))
    assert code == 0, err
    assert "--show: no display" in err and (tmp_path / "o" / "one.jpg").is_file()


def test_ctrl_c_mid_video_exits_130_and_leaves_a_playable_mp4(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, long_clip: Path,
        tmp_path: Path) -> None:
    _ctrl_c_from_call(monkeypatch, 6)
    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export), "-o", str(tmp_path),
                       "--batch", "1")  # one frame per call: the 6th call is the 6th frame
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert "the outputs above hold every frame processed so far" in err
    codec, frames, size, _ = decode_video(tmp_path / "walk.mp4")
    assert (codec, frames, size) == ("h264", 5, (320, 180))
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 5


def test_a_stop_inside_a_frames_writes_records_the_frame_in_every_output_or_none(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, long_clip: Path,
        tmp_path: Path) -> None:
    """A Ctrl-C or SIGTERM that came between a frame's outputs (its video frame, label file and crops
    written, its JSON line not yet) left the video and labels/ one frame ahead of predictions.jsonl. The
    frame's outputs are now written as one step, which a stop request waits for."""
    import signal

    from pvt_deploy.io.sinks import JsonlWriter

    real = JsonlWriter.write

    def stopped_at_the_fifth_line(self: JsonlWriter, record: dict[str, object]) -> None:
        if self.lines == 4:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, to this thread, synchronously
        real(self, record)

    monkeypatch.setattr(JsonlWriter, "write", stopped_at_the_fifth_line)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as under a terminal
    try:
        code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export), "--conf", "0.07",
                           "--save-txt", "--save-crop", "-o", str(tmp_path))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    frames = [json.loads(line)["frame"] for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert frames == [0, 1, 2, 3, 4] and decode_video(tmp_path / "walk.mp4")[1] == 5
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [f"walk_{f}.txt" for f in frames]
    crops = {p.stem.split("_")[1] for p in (tmp_path / "crops").rglob("*.jpg")}
    assert crops and crops <= {str(f) for f in frames}
    assert "5 frames in" in err


def test_a_stop_while_a_picture_is_written_still_prints_its_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """A Ctrl-C held while the second picture's outputs were written raised once they were all there: the
    picture was saved and counted ('2 images'), but predict did not hand it back, so its line was missing."""
    import signal

    from pvt_deploy.tasks.pipeline import ResultWriter

    real = ResultWriter._write_all

    def stopped_in_the_second(self: ResultWriter, result: object, written: list[Path]) -> None:
        if self.results_written == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, to this thread, synchronously: held until written
        real(self, result, written)  # type: ignore[arg-type]

    monkeypatch.setattr(ResultWriter, "_write_all", stopped_in_the_second)
    pictures = [str(p) for p in sample_images()[:3]]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as under a terminal
    try:
        code, out, err = run(monkeypatch, capsys, "infer", *pictures, "--model", str(det_export), "-o", str(tmp_path))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted", err
    saved = sorted(p.name for p in tmp_path.glob("*.jpg"))
    lines = [line for line in (out + err).splitlines() if re.match(r"\d+/3 ", line)]
    assert len(saved) == 2 and "2 images in" in err, (saved, err)
    assert [line.split()[0] for line in lines] == ["1/3", "2/3"], out + err


def test_save_mask_writes_class_maps_that_match_the_api(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory,
        tmp_path: Path) -> None:
    import cv2

    from pvt_deploy import Model

    seg = cached_export(tmp_path_factory, "seg")
    photo = sample_images()[0]
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(seg), "-o", str(tmp_path / "out"),
                       "--save-mask")
    assert code == 0, err
    mask = cv2.imread(str(tmp_path / "out" / f"{photo.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    expected = Model(seg).predict(str(photo))[0].mask
    assert mask is not None and mask.dtype == np.uint8 and expected is not None
    assert mask.shape == expected.shape and np.array_equal(mask, expected)
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(seg), "-o", str(tmp_path / "o2"))
    assert code == 0 and not list((tmp_path / "o2").glob("*_mask.png"))  # only when asked


def test_batch_changes_no_result_on_pictures_of_mixed_sizes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory,
        tmp_path: Path) -> None:
    """The sample photos plan to three input sizes. In one call of --batch 3 they were padded to the
    largest, which attention sees: the class maps differed from one picture a call. A batch now ends
    where the size changes, so --batch is a speed setting only."""
    import cv2

    seg = cached_export(tmp_path_factory, "seg")
    masks = {}
    for batch in ("1", "3"):
        code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0].parent), "--model", str(seg),
                           "--batch", batch, "--save-mask", "-o", str(tmp_path / batch))
        assert code == 0, err
        masks[batch] = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / batch).glob("*_mask.png")}
    assert len(masks["1"]) == 3 and masks["1"].keys() == masks["3"].keys()
    assert all(np.array_equal(masks["1"][k], masks["3"][k]) for k in masks["1"])


def md5s(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_writing_into_the_input_folder_never_replaces_an_input(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, long_clip: Path,
        tmp_path: Path) -> None:
    """``infer photos -o photos``: every photo (including one already named like an output, ``coffee_1.jpg``)
    keeps its bytes; the annotated copies take the next free ``_N`` and decode at the input's size.
    Videos follow the same rule."""
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sample_images():
        shutil.copyfile(path, photos / path.name)
    shutil.copyfile(photos / "coffee.jpg", photos / "coffee_1.jpg")
    before = md5s(photos)
    code, _, err = run(monkeypatch, capsys, "infer", str(photos), "--model", str(det_export), "-o", str(photos),
                       "--save-json")
    assert code == 0, err
    assert "predictions_coco.json" in err  # the summary names the JSON files after any number of images
    first_run = md5s(photos)
    code, _, err = run(monkeypatch, capsys, "infer", str(photos / "astronaut.jpg"), "--model", str(det_export),
                       "-o", str(photos), "--save-json")  # a single file into its own folder, where astronaut_1.jpg
    assert code == 0, err                                # and the first run's JSON now exist too
    after = md5s(photos)
    assert {name: after[name] for name in first_run} == first_run
    outputs = {"astronaut_1.jpg": "astronaut.jpg", "chelsea_1.jpg": "chelsea.jpg", "coffee_2.jpg": "coffee.jpg",
               "coffee_1_1.jpg": "coffee_1.jpg", "astronaut_2.jpg": "astronaut.jpg"}
    runs_json = ["predictions.jsonl", "predictions_coco.json", "predictions_1.jsonl", "predictions_coco_1.json"]
    assert sorted(after) == sorted([*before, *outputs, *runs_json])
    assert len((photos / "predictions.jsonl").read_text().splitlines()) == 4
    assert [json.loads(line)["source"] for line in (photos / "predictions_1.jsonl").read_text().splitlines()] == [
        str(photos / "astronaut.jpg")]
    for out, src in outputs.items():
        image, original = cv2.imread(str(photos / out)), cv2.imread(str(photos / src))
        assert image is not None and original is not None and image.shape == original.shape
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(long_clip, videos / "walk.mp4")
    before = md5s(videos)
    code, _, err = run(monkeypatch, capsys, "infer", str(videos / "walk.mp4"), "--model", str(det_export),
                       "--no-save-json", "-o", str(videos))
    assert code == 0, err
    assert md5s(videos)["walk.mp4"] == before["walk.mp4"] and decode_video(videos / "walk_1.mp4")[1] == 12


@pytest.mark.parametrize("where", ["afile", "afile/sub"])
def test_an_output_that_cannot_be_written_fails_before_the_model_loads(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str) -> None:
    import signal

    from pvt_deploy import api

    (tmp_path / "afile").write_text("not a folder")

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(api.Model, "__init__", no_loading)
    handler = signal.getsignal(signal.SIGTERM)
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "-o", str(tmp_path / where))
    assert code == 2, err
    assert_one_line_error(err, f"cannot write outputs to {tmp_path / where}: {tmp_path / 'afile'} is a file")
    assert (tmp_path / "afile").read_text() == "not a folder"
    assert signal.getsignal(signal.SIGTERM) == handler  # main() puts back the SIGTERM handler it replaced


def test_a_full_disk_mid_video_is_one_line_and_leaves_no_partial_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, long_clip: Path,
        tmp_path: Path) -> None:
    import errno

    import av

    from pvt_deploy.io import sinks

    real = sinks.VideoWriter.write
    calls = {"n": 0}

    def full_disk(self: sinks.VideoWriter, image: np.ndarray, timestamp: float | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise av.error.OSError(errno.ENOSPC, "No space left on device", str(self._tmp))
        real(self, image, timestamp)

    monkeypatch.setattr(sinks.VideoWriter, "write", full_disk)
    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export),
                       "-o", str(tmp_path / "out"))
    assert code == 2, err
    assert_one_line_error(err, f"cannot write outputs to {tmp_path / 'out'}: No space left on device")
    assert not (tmp_path / "out").exists()  # no .part, no final-named partial file, no empty folder


def test_a_folder_of_only_unreadable_images_leaves_no_predictions_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "allbad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "b.png").write_bytes(b"nor a png")
    code, _, err = run(monkeypatch, capsys, "infer", str(folder), "--model", str(det_export), "--save-json",
                       "-o", str(tmp_path / "out"))
    assert code == 2, err
    assert_one_line_error(err, "no images could be read")
    # the folder the run made is gone too (the next default run is not moved on to <model>2 past it);
    # one that was there before the run stays
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    code, _, err = run(monkeypatch, capsys, "infer", str(folder), "--model", str(det_export), "--save-json",
                       "-o", str(tmp_path / "out"))
    assert code == 2 and list((tmp_path / "out").iterdir()) == []


def test_options_that_cannot_apply_are_warned_about_or_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory,
        det_export: Path, long_clip: Path, tmp_path: Path) -> None:
    seg = cached_export(tmp_path_factory, "seg")
    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(seg), "--save-mask",
                       "--classes", "1", "--conf", "0.4", "--max-det", "5", "--draw-conf", "0.5", "--no-save-json",
                       "-o", str(tmp_path / "video"))
    assert code == 0, err
    assert "warning: --save-mask writes class maps of images, not of a video: ignored" in err
    assert "warning: --classes filters detections; a segment model has none: ignored" in err
    # said once, in the CLI's words (the API's own "conf= applies to detect models" is not repeated)
    assert "warning: --conf, --max-det, --draw-conf filter detections; a segment model has none: ignored" in err
    assert "conf=" not in err and "max_det=" not in err
    assert sorted(p.name for p in (tmp_path / "video").iterdir()) == ["walk.mp4"]
    photo = sample_images()[2]
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--save-mask",
                       "-o", str(tmp_path / "det"))
    assert code == 0, err
    assert "warning: --save-mask writes segmentation class maps; a detect model has none: ignored" in err
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == [photo.name]
    # --draw-conf where it cannot act: nothing drawn, or a box threshold under what --conf keeps
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--draw-conf", "0.5",
                       "--no-save", "--save-json", "-o", str(tmp_path / "nosave"))
    assert code == 0 and "warning: --draw-conf sets the boxes drawn on the annotated output, which --no-save " \
                         "turns off: ignored" in err, err
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--conf", "0.3",
                       "--draw-conf", "0.1", "-o", str(tmp_path / "below"))
    assert code == 0 and "warning: --draw-conf 0.1 is below --conf 0.3, which keeps no box under it: boxes are " \
                         "drawn from 0.3" in err, err
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--classes", "999")
    assert code == 2
    assert_one_line_error(err, "--classes: this model has no class 999 (ids 0-79)")
    checkpoint = tmp_path / "real.pth"
    checkpoint.write_bytes(b"weights")
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--weights",
                       str(checkpoint))
    assert code == 2
    assert_one_line_error(err, f"--weights does not apply to the export {det_export}")


def test_max_det_limits_the_detections_of_each_image(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[2]), "--model", str(det_export), "--conf", "0",
                       "--max-det", "3", "--no-save", "--save-json", "-o", str(tmp_path))
    assert code == 0, err
    record = json.loads((tmp_path / "predictions.jsonl").read_text())
    assert len(record["detections"]) == 3  # random weights at conf 0: far more candidates than 3


def _sigterm_after(python_args: list[str], clip: Path, model: Path, out: Path, *, lines: int) -> tuple[int, str]:
    """Run ``infer clip`` in a child Python (``python_args``: how it starts the CLI), send it SIGTERM once
    ``lines`` JSON lines are written, and return its exit code and stderr."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, *python_args, "infer", str(clip), "--model", str(model), "--batch", "1",
                             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # faulthandler: a child that crashes (one SIGSEGV in CI, not reproduced in 15 runs
                            # since) prints every thread's stack into the stderr the assertions show
                            env={**os.environ, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"})
    try:
        part = out / "predictions.jsonl.part"
        deadline = time.monotonic() + 120
        while not (part.is_file() and part.read_text().count("\n") >= lines):
            assert proc.poll() is None and time.monotonic() < deadline, "infer ended before it could be stopped"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_sigterm_mid_video_finishes_the_outputs_like_ctrl_c(det_export: Path, tmp_path: Path) -> None:
    """``kill``/``timeout``/``docker stop`` send SIGTERM: a real process gets it mid-video and, as after
    Ctrl-C, leaves a playable mp4 and the JSON lines of the frames it processed (exit 143 = 128 + 15)."""

    clip = make_clip(tmp_path / "long.mp4", frames=600, size=(96, 64), fps=25.0)
    out = tmp_path / "out"
    code, err = _sigterm_after(["-m", "pvt_deploy"], clip, det_export, out, lines=3)  # some frames are done
    assert code == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "terminated"  # said "interrupted"
    assert sorted(p.name for p in out.iterdir()) == ["long.mp4", "predictions.jsonl"]  # no .part litter
    codec, frames, size, _ = decode_video(out / "long.mp4")
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert codec == "h264" and size == (96, 64) and 3 <= frames < 600
    assert len(lines) == frames  # a stop waits for the frame being written to reach every output


STOPPED_MID_CALL = """
import sys, torch
from pvt_deploy.cli import main
from pvt_deploy.tasks import pipeline
pipeline._JOIN_S = 0.0  # leave the call in flight at once, as a forward longer than the 5 s join is left
real = pipeline.Pipeline._infer
def _infer(self, batch, calls=[]):
    calls.append(1)
    if len(calls) > 1:  # a long call inside torch, as a PyTorch forward at 1344 px is on a small CPU
        x = torch.randn(1024, 1024)
        for _ in range(2000):
            x = (x @ x).clamp(-1, 1)
    return real(self, batch)
pipeline.Pipeline._infer = _infer
sys.argv = ["pvt-deploy", *sys.argv[1:]]
main()
"""


def test_a_stop_while_a_call_is_in_flight_still_exits_143(det_export: Path, tmp_path: Path) -> None:
    """A run stopped while its inference thread was inside a long native call (a PyTorch forward at a
    large size, past the 5 s the pipeline waits for it) finished its outputs, said "terminated", and
    then aborted at the interpreter's exit: "terminate called without an active exception", exit 134
    (SIGABRT) instead of 143. The call left running is abandoned, as the pipeline meant to."""

    clip = make_clip(tmp_path / "clip.mp4", frames=8, size=(96, 64), fps=25.0)
    out = tmp_path / "out"
    code, err = _sigterm_after(["-c", STOPPED_MID_CALL], clip, det_export, out, lines=1)  # the 2nd call is under way
    assert code == 143, err
    assert "terminate called" not in err and err.strip().splitlines()[-1] == "terminated"
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "predictions.jsonl"]
    assert decode_video(out / "clip.mp4")[1] >= 1


SIGTERM_CHILD = """
import os, signal, sys, time
from pvt_deploy.utils import signals
# the window is read at each signal: an hour for the repeat, so that no stall of a loaded machine between
# the two makes it late; 0.3 s for the later request, sent after a sleep of 0.6 s, which never ends early
signals.REPEAT_S = 3600.0
with signals.sigterm_raises(KeyboardInterrupt) as got:
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("not interrupted")
    except KeyboardInterrupt:
        os.kill(os.getpid(), signal.SIGTERM)  # the process group's copy: the same request, ignored
        print("clean-up survived the repeat", flush=True)
        if sys.argv[1] == "late":  # asked again later: the clean-up is cut short
            signals.REPEAT_S = 0.3
            time.sleep(0.6)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            print("clean-up finished")
print("restored", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, got.is_set())
"""


@pytest.mark.parametrize("when", ["repeat", "late"])
def test_sigterm_policy_of_the_cli_and_the_benchmarks(when: str) -> None:
    # pvt_deploy.utils.signals, shared by `pvt-deploy` and benchmarks/common.run: the first SIGTERM
    # unwinds as an exception, a repeat within REPEAT_S (timeout / kill -PGID) does not cut the
    # clean-up short, a later one ends the process with SIGTERM's default action
    import signal
    import subprocess

    done = subprocess.run([sys.executable, "-c", SIGTERM_CHILD, when], capture_output=True, text=True, timeout=60)
    if when == "repeat":
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["clean-up survived the repeat", "restored True True"]
    else:
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert done.stdout.splitlines() == ["clean-up survived the repeat"]


def test_a_class_list_of_none_is_refused_not_a_filter_that_drops_everything(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    photo = str(sample_images()[2])
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", str(det_export), "--classes", ",",
                       "-o", str(tmp_path / "out"))
    assert code == 2
    assert_one_line_error(err, "--classes names no class")
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", str(det_export), "--classes", "",
                       "--conf", "0", "--no-save", "--save-json", "-o", str(tmp_path / "all"))
    assert code == 0, err  # an empty option is no filter, as leaving it out
    assert json.loads((tmp_path / "all" / "predictions.jsonl").read_text())["detections"]


def test_imgsz_follows_the_same_rule_as_the_api(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """Rounded up to the stride first, then checked against the graph's range [64, 320]: 40 runs at 64
    (as Model.predict(imgsz=40) does) and 330 (352) is refused by both, each naming the setting as it
    was given (the API said --imgsz too)."""
    from pvt_deploy import Model
    from pvt_deploy.errors import ShapeError

    photo = sample_images()[2]
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--imgsz", "40",
                       "--conf", "0", "--no-save", "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "predictions.jsonl").read_text())
    with Model(det_export) as model:
        api = json.loads(model.predict(str(photo), imgsz=40, conf=0)[0].to_json())
        assert model.predictor(imgsz=40).preprocessor.imgsz == (64, 64)
        with pytest.raises(ShapeError, match=r"^imgsz 330x330 \(rounded up to the stride 32: 352x352\)"):
            model.predictor(imgsz=330)
    assert record["detections"] == api["detections"]
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--imgsz", "330")
    assert code == 2
    assert_one_line_error(err, "error: --imgsz 330x330 (rounded up to the stride 32: 352x352): height 352 is outside")


def test_a_camera_that_cannot_open_is_one_error_line(tmp_path: Path) -> None:
    """OpenCV tries each camera API and warns on stderr for each ("[ WARN:0@1.8] global cap_v4l.cpp:915
    open VIDEOIO(V4L2:/dev/video0): can't open camera by index", then FFmpeg's) before pvt-deploy's one
    line said the same. Run as a process: the warnings come from C++ on file descriptor 2."""
    import subprocess

    index = next(i for i in range(63, 0, -1) if not Path(f"/dev/video{i}").exists())
    proc = subprocess.run([sys.executable, "-m", "pvt_deploy", "infer", str(index), "--model", "pvt_v2_b0-cls",
                           "--imgsz", "64", "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc.stderr, f"cannot open camera {index}")
    assert "[ WARN" not in proc.stderr and "VIDEOIO" not in proc.stderr, proc.stderr


def test_infer_with_its_output_piped_to_a_reader_that_stopped_writes_every_output(det_export: Path,
                                                                                  tmp_path: Path) -> None:
    """``pvt-deploy infer photos/ … 2>&1 | head -1`` exited 1 at its first line, with no output written (a
    closed pipe raised wherever it was printed to). The files are the job: all of them are written,
    whole, under their own names, and the run exits 0 as it would have."""
    from test_cli_bench_check_info import closed_pipe_run

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, picture in enumerate(sample_images()):
        cv2.imwrite(str(photos / f"{i}.jpg"), cv2.resize(cv2.imread(str(picture)), (96, 64)))
    code, _ = closed_pipe_run("infer", str(photos), "--model", str(det_export), "--save-json", "-o",
                              str(tmp_path / "out"), stderr_too=True, timeout=300)
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["0.jpg", "1.jpg", "2.jpg", "predictions.jsonl", "predictions_coco.json"]
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["source"] for line in lines) == [str(photos / f"{i}.jpg") for i in range(3)]
    assert all(cv2.imread(str(tmp_path / "out" / f"{i}.jpg")).shape == (64, 96, 3) for i in range(3))


def test_a_live_stream_is_connected_once_the_model_is_loaded(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """A camera opened before the (slow) model load queues frames meanwhile; they would come out as one
    stale burst stamped a few ms apart. Connected after it, frames are timed as the camera sends them."""
    import time

    from pvt_deploy import api

    connected: list[float] = []
    loaded: list[float] = []
    real_init = api.Model.__init__

    def slow_load(self: api.Model, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        time.sleep(0.6)  # a real model takes seconds to load; the camera keeps sending meanwhile
        loaded.append(time.monotonic())

    monkeypatch.setattr(api.Model, "__init__", slow_load)
    _ctrl_c_from_call(monkeypatch, 13)
    with paced_camera(lambda path: connected.append(time.monotonic())) as url:
        code, _, err = run(monkeypatch, capsys, "infer", url, "--model", str(det_export), "--no-save", "--save-json",
                           "--batch", "1", "-o", str(tmp_path / "out"))
    assert code == 130, err
    assert connected and loaded and connected[0] >= loaded[0], (connected, loaded)
    times = [json.loads(line)["timestamp"] for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    # 12 frames at the camera's 25 fps, not the ~15 it sent during the load, stamped within a few ms.
    # (The first 3-4 still come together: FFmpeg reads them while probing the stream as it opens.)
    assert len(times) >= 10 and times[-1] - times[0] > 0.2, times
    with pytest.raises(SystemExit):  # a URL that cannot be one fails before the model loads
        monkeypatch.setattr(sys, "argv", ["pvt-deploy", "infer", "rtsp://", "--model", str(det_export)])
        main()
    assert "bad stream URL rtsp://: no host" in capsys.readouterr().err and len(loaded) == 1


def test_a_zoo_name_with_weights_is_that_model_even_beside_its_export(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """README: ``infer shots/ --model pvt_v2_b0-cls --weights pvt_v2_b0.pth``. With exports/pvt_v2_b0-cls
    in the folder the name went to that export, which then refused --weights; and a checkpoint that
    needs full unpickling had no --trust-checkpoint here, though the error asked for it."""
    import torch

    from pvt_deploy import Model
    from pvt_deploy.io.sources import read_image
    from pvt_deploy.models import build_deploy_module, create_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports" / "pvt_v2_b0-cls").mkdir(parents=True)
    (tmp_path / "exports" / "pvt_v2_b0-cls" / "manifest.json").write_text("{}")  # an export's folder
    trained = create_model("pvt_v2_b0-cls", seed=7)
    torch.save({"model": trained.state_dict(), "args": Path("/train/run1")}, tmp_path / "ckpt.pth")
    photo = str(sample_images()[0])
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--weights", "ckpt.pth")
    assert code == 2 and "refusing to unpickle" in err and "--trust-checkpoint" in err and "\x1b" not in err
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--weights", "ckpt.pth",
                       "--trust-checkpoint", "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    with Model("pvt_v2_b0-cls", weights="ckpt.pth", trust=True) as m:
        assert m.backend.info.name == "torch" and not m.random_weights
        probs = m.predict(photo)[0].probs
        preprocessor = m.predictor().preprocessor  # a closed Model refuses predictor() (5a3211b)
    assert probs is not None
    with torch.inference_mode():
        x = torch.from_numpy(preprocessor(read_image(photo))[0][None])
        out = build_deploy_module(trained)(x)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    assert probs.top1 == int(logits.argmax())  # the checkpoint's model, not a random one
    line = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    assert line["top"][0]["class_id"] == probs.top1


def test_pytorch_on_the_cpu_says_how_to_get_onnx_runtime(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without an export, infer runs the zoo model in PyTorch; on a CPU it names the export that ONNX
    Runtime would run instead, and where infer then finds it. Not when PyTorch was asked for."""
    monkeypatch.chdir(tmp_path)
    photo = str(sample_images()[0])
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-save")
    assert code == 0, err
    assert "pvt-deploy export --model pvt_v2_b0-cls, then infer picks up exports/pvt_v2_b0-cls" in err
    assert f"{photo} (1 image)" in err and "\n1 image in " in err and "ms/image" in err
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-save",
                       "--backend", "torch")
    assert code == 0 and "tip:" not in err
    from pvt_deploy.cli.infer import _export_tip

    tip = _export_tip("pvt_v2_b0-cls", "pvt_v2_b0-cls", Path("my ckpt.pth"))
    assert "--weights 'my ckpt.pth', then infer with --model exports/pvt_v2_b0-cls" in tip


def test_the_default_folder_is_reserved_and_an_empty_one_removed(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    """The run's default folder (runs/infer/<model>, incremented) is made when it is chosen, so a run
    started at the same time takes the next one; a run that reads nothing leaves no empty folder that
    would push the next run on to <model>2, nor the empty runs/ and runs/infer/ it made for it (they
    were left in a folder that never had them), nor those of ``-o a/b/c``; a folder the user had stays."""
    from pvt_deploy.runtimes.torch import TorchBackend

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "bad.jpg").write_bytes(b"not a picture")
    code, _, err = run(monkeypatch, capsys, "infer", "pics", "--model", "pvt_v2_b0-cls", "--imgsz", "64")
    assert code == 2 and "no images could be read" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics"]
    code, _, err = run(monkeypatch, capsys, "infer", "pics", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                       "-o", "out/a/b", "--save-json")
    assert code == 2 and "no images could be read" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics"]
    (tmp_path / "runs").mkdir()  # the user's own

    def interrupted(self: TorchBackend, feed: object) -> dict[str, np.ndarray]:
        raise KeyboardInterrupt  # Ctrl-C before the first picture is done

    photo = str(sample_images()[0])
    with monkeypatch.context() as patch:
        patch.setattr(TorchBackend, "infer", interrupted)
        code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--imgsz", "64")
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    # it said "results saved to runs/infer/pvt_v2_b0-cls" and "the outputs above hold every image processed
    # so far", of a folder it then removed as empty
    assert "stopped before the first image was done: nothing written" in err
    assert "results saved to" not in err and "the outputs above" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics", "runs"] and not any((tmp_path / "runs").iterdir())
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--imgsz", "64")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "runs" / "infer").iterdir()] == ["pvt_v2_b0-cls"]


def test_key_value_arguments_get_the_command_with_options_and_a_file_so_named_still_runs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``yolo predict`` habits: ``source=shots model=... imgsz=64 save=False`` was "no such file or folder:
    source=shots"; it is a usage error (exit 2) showing the command with options, which then runs. A
    picture that is really named ``conf=0.3.jpg`` is still a picture."""
    import shlex

    monkeypatch.chdir(tmp_path)
    (tmp_path / "shots").mkdir()
    shutil.copy(sample_images()[0], tmp_path / "shots" / "a.jpg")
    shutil.copy(sample_images()[0], tmp_path / "conf=0.3.jpg")
    code, _, err = run(monkeypatch, capsys, "infer", "source=shots", "model=pvt_v2_b0-cls", "imgsz=64", "save=False")
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", err).split())
    assert code == 2 and "Traceback" not in err, err
    suggestion = said.split("Did you mean: ", 1)[1]
    assert suggestion == "pvt-deploy infer shots --model pvt_v2_b0-cls --imgsz 64 --no-save", said
    code, _, err = run(monkeypatch, capsys, *shlex.split(suggestion)[1:])
    assert code == 0 and "1 image" in err and "shots/a.jpg" in err, err
    code, _, err = run(monkeypatch, capsys, "infer", "conf=0.3.jpg", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                       "--no-save")
    assert code == 0 and "1/1 conf=0.3.jpg" in err, err


def test_classes_in_ultralytics_list_spelling(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """``--classes [0,15]`` (``yolo predict classes=[0,15]``) was "unknown class '[0'"; it is the list 0,15."""
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[2]), "--model", str(det_export),
                       "--classes", "[0, 15]", "--conf", "0", "--no-save", "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    detections = json.loads((tmp_path / "out" / "predictions.jsonl").read_text())["detections"]
    assert detections and {d["class_id"] for d in detections} <= {0, 15}


def test_weights_has_the_short_name_export_gives_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``export -w ckpt.pth`` worked and ``infer -w ckpt.pth`` was "No such option: -w"; both take it."""
    import torch

    from pvt_deploy.models import create_model
    from pvt_deploy.models.synthetic import seeded_state_dict

    ckpt = tmp_path / "pvt_v2_b0.pth"
    torch.save(seeded_state_dict(create_model("pvt_v2_b0-cls", seed=0), seed=3), ckpt)
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "-m", "pvt_v2_b0-cls", "-w", str(ckpt),
                       "--imgsz", "64", "--no-save")
    assert code == 0, err
    assert "1 image" in err and "RANDOM" not in err


def test_an_unquoted_glob_runs_the_files_the_shell_lists(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``pvt-deploy infer shots/*.jpg`` unquoted reaches infer as several paths; it was "Got unexpected extra
    argument(s)". They run as one list of image files, as ``Model.predict`` takes; a video among them is
    refused by name, before the model loads."""
    shots = tmp_path / "shots"
    shots.mkdir()
    for photo in sample_images()[:2]:
        shutil.copy(photo, shots / photo.name)
    paths = [str(p) for p in sorted(shots.iterdir())]
    code, _, err = run(monkeypatch, capsys, "infer", *paths, "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-save",
                       "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == paths
    clip = make_clip(tmp_path / "clip.mp4", frames=2, size=(64, 48))
    code, _, err = run(monkeypatch, capsys, "infer", paths[0], str(clip), "--model", "no_such_model")
    assert code == 2
    assert_one_line_error(err, f"{clip} is a video")


def test_a_txt_list_of_image_files_runs_them(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``yolo predict source=list.txt`` runs the files it lists; ``infer list.txt`` was "list.txt is neither a
    readable image nor a video". Its lines run as one list of image files: a path as given, or else beside
    the list; blank lines and # comments are skipped; a list of nothing is one line, exit 2."""
    shots = tmp_path / "shots"
    shots.mkdir()
    first, second = sample_images()[:2]
    shutil.copy(second, shots / "b.jpg")
    listing = shots / "list.txt"
    listing.write_text(f"{first}\n\n# picked by hand\nb.jpg\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(monkeypatch, capsys, "infer", "shots/list.txt", "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                       "--no-save", "--save-json", "-o", "out")
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == [str(first), str(Path("shots") / "b.jpg")]
    listing.write_text("# nothing yet\n")
    code, _, err = run(monkeypatch, capsys, "infer", "shots/list.txt", "--model", "pvt_v2_b0-cls")
    assert code == 2
    assert_one_line_error(err, "the list shots/list.txt names no files")


@pytest.mark.parametrize("other", ["https://example.com/a.jpg", "rtsp://cam.local/stream", "0"])
def test_a_url_or_camera_in_a_list_is_refused_by_name(
        other: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A URL or a webcam among several sources (or in a .txt list) was 'no such file: https:/example.com/a.jpg',
    the URL mangled by the path it was taken for. It is refused by name, as a video or a folder is."""
    monkeypatch.chdir(tmp_path)
    first = sample_images()[0]
    (tmp_path / "list.txt").write_text(f"{first}\n{other}\n")
    for sources in ([str(first), other], ["list.txt"]):
        code, _, err = run(monkeypatch, capsys, "infer", *sources, "--model", "no_such_model")
        assert code == 2
        assert_one_line_error(err, f"{other} is a URL or a camera: a list takes image files")


def test_a_txt_list_saved_with_a_byte_order_mark_or_crlf_runs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A list saved by Windows Notepad (UTF-8 with a byte-order mark, CRLF line ends) was 'no such file:
    a.jpg' for its first line: the invisible mark was read as part of the path."""
    first, second = sample_images()[:2]
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{first}\r\n{second}\r\n".encode())
    code, _, err = run(monkeypatch, capsys, "infer", str(listing), "--model", "pvt_v2_b0-cls", "--imgsz", "64",
                       "--no-save", "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == [str(first), str(second)]


def test_a_txt_list_among_other_sources_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``infer list.txt b.jpg`` (and ``predict([picture, "list.txt"])``) read the list as a picture: it was
    skipped as 'cannot decode image list.txt', the files it names never ran, and the run ended with exit 0.
    It is refused by name, as a video or a folder in a list is, before the model loads."""
    import numpy as np

    from pvt_deploy import Model
    from pvt_deploy.errors import InputError

    first, second = sample_images()[:2]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{first}\n")
    code, _, err = run(monkeypatch, capsys, "infer", str(listing), str(second), "--model", "no_such_model")
    assert code == 2
    assert_one_line_error(err, f"{listing} is a list of files")
    with Model("pvt_v2_b0-cls") as model, pytest.raises(InputError, match="list.txt is a list of files"):
        model.predict([np.zeros((32, 32, 3), np.uint8), str(listing)], imgsz=64)


def test_a_size_pytorch_has_no_memory_for_is_bad_input(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """infer --model pvt_v2_b0-cls --imgsz 5000 ended 'error: PyTorch failed: ... you tried to allocate
    152100000000 bytes', exit 1 (a tool failure); PyTorch's range admits 8192. A size whose attention needs
    more memory than there is free is bad input (exit 2), refused before any frame is read, in one line
    naming the options as typed and the size that fits."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", "pvt_v2_b0-cls",
                       "--imgsz", "8192", "--no-save")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err
    assert re.fullmatch(r"error: --imgsz 8192x8192 at --batch 1 needs about 2,208 GB for PyTorch's largest attention "
                        r"and the rest of its forward pass, more than the .* GB free in this machine's memory \(pass --imgsz \d+ or less\)", line), line


def test_infers_imgsz_help_says_a_classifier_runs_at_the_size_given() -> None:
    """infer --help said --imgsz is "(dynamic graphs; multiples of 32, rounded up ...)", but a classifier's
    centre crop runs at the size asked (100x150 stays 100x150); only a letterbox is rounded up. check says
    so too: the two commands take the option the same way."""
    from typer.main import get_command

    from pvt_deploy.cli import app

    commands = get_command(app).commands  # type: ignore[attr-defined]
    infer_help, check_help = (next(p.help for p in commands[c].params if p.name == "imgsz") for c in ("infer", "check"))
    assert "multiples of 32, rounded up" not in infer_help and "classifier" in infer_help, infer_help
    assert infer_help == check_help


def test_a_frame_count_estimated_from_a_clips_length_says_about(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    """An mkv stores no frame count: the source estimates it as length times rate, which a variable-rate
    clip misses (here 12 frames read as 18: its header's 30 fps against 20 on average), and infer's first
    line gave the estimate as the count. It says "about" there; an mp4's stored count is given as it is."""
    from fractions import Fraction

    import av
    import numpy as np

    from pvt_deploy.io.sources import VideoSource

    clip = tmp_path / "vfr.mkv"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        t = 0
        for i in range(12):  # 33 and 67 ms apart in turn: 20 frames a second on average
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, stream.time_base
            t += 33 if i % 2 else 67
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with VideoSource(clip) as source:
        assert not source.frames_exact and source.frames is not None and source.frames != 12
        estimate = source.frames
    code, _, err = run(monkeypatch, capsys, "infer", str(clip), "--model", str(det_export), "--no-save", "-o",
                       str(tmp_path / "out"))
    assert code == 0, err
    assert f"(video, about {estimate} frames)" in err and "\n12 frames in " in err, err
    with VideoSource(make_clip(tmp_path / "cfr.mp4", frames=5, size=(96, 64), fps=10.0)) as source:
        assert source.frames_exact and source.frames == 5


def test_a_frame_count_estimate_that_falls_short_turns_the_bar_into_a_count_without_total(tmp_path: Path) -> None:
    """Two MPEG-TS recordings joined end to end (``cat a.ts b.ts``): the container's length, read from its first
    and last times, is the second's alone, so the bar said 25/15 with an ETA of 0 for the rest of the run. Past
    an estimate, it now counts without a total ("25/?"); an exact count (mp4) is shown as it was."""
    import io

    import av
    from rich.console import Console

    from pvt_deploy.cli.infer import _consume
    from pvt_deploy.io.sources import open_source

    parts = []
    for n, level in ((10, 60), (15, 180)):
        part = tmp_path / f"{n}.ts"
        with av.open(str(part), "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for _ in range(n):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), level, np.uint8), "rgb24")))
            out.mux(stream.encode(None))
        parts.append(part.read_bytes())
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(parts))
    shown = io.StringIO()
    with open_source(str(joined)) as src:
        assert not src.frames_exact and src.frames is not None and src.frames < 25  # the estimate falls short
        _consume((frame for frame in src), src, Console(file=shown, force_terminal=True, width=100), None, "video")
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", shown.getvalue())
    assert "25/?" in text and f"25/{src.frames}" not in text, text


# --------------------------------------------------------------------------------------------------
# --save-txt / --save-conf / --save-crop / --line-width / --hide-labels / --hide-conf (yolo predict's)
# --------------------------------------------------------------------------------------------------


def test_save_txt_and_crop_write_the_drawn_boxes_and_a_second_run_replaces_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    from pvt_deploy import Model

    out = tmp_path / "out"
    photos = [str(p) for p in sample_images()]
    code, _, err = run(monkeypatch, capsys, "infer", *photos, "--model", str(det_export), "--conf", "0.07",
                       "--save-conf", "--save-crop", "--no-save", "-o", str(out))
    assert code == 0, err
    assert f"{out / 'labels'}{os.sep} (3 files)" in err and "crops" in err  # counted, not listed one by one
    with Model(det_export) as m:
        results = m.predict(photos, conf=0.07)
    crops = 0
    for r in results:
        h, w = r.orig_shape
        rows = [[float(v) for v in line.split()] for line in
                (out / "labels" / f"{Path(r.path).stem}.txt").read_text().splitlines()]
        b = r.shown_boxes()
        assert len(rows) == len(b) > 0
        for row, (x1, y1, x2, y2), c, s in zip(rows, b.xyxy.tolist(), b.cls.tolist(), b.conf.tolist(), strict=True):
            assert row == pytest.approx([c, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h, s],
                                        abs=1.5e-6)
        original = cv2.cvtColor(r.orig_img, cv2.COLOR_RGB2BGR)
        stem = Path(r.path).stem
        for n, ((x1, y1, x2, y2), c) in enumerate(zip(b.xyxy.tolist(), b.cls.tolist(), strict=True)):
            folder = out / "crops" / r.names[c].replace(" ", "_")
            earlier = sum(1 for k in range(n) if b.cls[k] == c)  # the boxes of its class before it
            crop = cv2.imread(str(folder / (f"{stem}_{earlier}.jpg" if earlier else f"{stem}.jpg")))
            top, left = max(0, int(np.floor(y1))), max(0, int(np.floor(x1)))
            bottom, right = min(h, int(np.ceil(y2))), min(w, int(np.ceil(x2)))
            assert crop is not None and crop.shape == (bottom - top, right - left, 3)
            assert np.abs(crop.astype(int) - original[top:bottom, left:right]).mean() < 4  # JPEG's loss only
            crops += 1
    assert crops == len(list((out / "crops").rglob("*.jpg")))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run(monkeypatch, capsys, "infer", *photos, "--model", str(det_export), "--conf", "0.5",
                       "--save-txt", "--no-save", "-o", str(out))  # nothing scores 0.5: empty files
    assert code == 0, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{Path(p).stem}.txt" for p in photos)
    assert sorted(p.name for p in (out / "labels_1").iterdir()) == sorted(f"{Path(p).stem}.txt" for p in photos)
    assert all((out / "labels_1" / f"{Path(p).stem}.txt").read_bytes() == b"" for p in photos)


def test_a_run_again_into_the_folder_of_a_stopped_one_keeps_its_labels_and_crops_apart(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, long_clip: Path,
        tmp_path: Path) -> None:
    """A run stopped at frame 3 and run again into its folder: the second run's label files of frames 0-2
    were labels/walk_0_1.txt ... (names taken), those of frames 3 on labels/walk_3.txt ..., one folder
    with two runs' frames under the first run's names and no way to tell them apart. Now the second run's
    labels/ and crops/ take the _N of its predictions_N.jsonl."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    args = ["infer", str(long_clip), "--model", str(det_export), "--conf", "0.07", "--save-txt", "--save-crop",
            "--vid-stride", "2", "--batch", "1", "-o", str(tmp_path)]  # one frame per call: stopped at frame 6
    real = _ctrl_c_from_call(monkeypatch, 4)
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 130, err
    monkeypatch.setattr(OnnxRuntimeBackend, "infer", real)
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 0, err
    for run_n, (jsonl, labels, crops) in enumerate([("predictions.jsonl", "labels", "crops"),
                                                    ("predictions_1.jsonl", "labels_1", "crops_1")]):
        frames = [json.loads(line)["frame"] for line in (tmp_path / jsonl).read_text().splitlines()]
        assert frames == ([0, 2, 4] if run_n == 0 else [0, 2, 4, 6, 8, 10])
        assert sorted(p.name for p in (tmp_path / labels).iterdir()) == sorted(f"walk_{f}.txt" for f in frames)
        cropped = {p.stem.split("_")[1] for p in (tmp_path / crops).rglob("*.jpg")}
        assert cropped and cropped <= {str(f) for f in frames}
    assert f"{tmp_path / 'labels_1'}{os.sep} (6 files)" in err


def test_save_txt_of_a_video_names_each_frame_as_its_json_line_and_drawing_options_reach_the_video(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, long_clip: Path,
        tmp_path: Path) -> None:
    import av

    from pvt_deploy import Model

    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export), "--vid-stride", "4",
                       "--conf", "0.07", "--save-txt", "--line-width", "7", "--hide-labels", "-o", str(tmp_path))
    assert code == 0, err
    frames = [json.loads(line)["frame"] for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert frames == [0, 4, 8]
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == sorted(f"walk_{f}.txt" for f in frames)
    with Model(det_export) as m:
        results = list(m.predict(str(long_clip), stream=True, vid_stride=4, conf=0.07))
    for r in results:
        assert (tmp_path / "labels" / f"walk_{r.frame}.txt").read_text() == r.save_txt(tmp_path / "x.txt").read_text()
    with av.open(str(tmp_path / "walk.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert len(decoded) == 3 and any(len(r.shown_boxes()) for r in results)
    for frame, r in zip(decoded, results, strict=True):
        asked, default = r.plot(line_width=7, labels=False).astype(int), r.plot().astype(int)
        if len(r.shown_boxes()):  # the pipeline thread's drawing is the one asked for, not the default
            assert np.abs(frame - asked).mean() < np.abs(frame - default).mean() / 2


def test_line_width_and_hide_labels_change_the_saved_picture_as_plot_draws_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path, tmp_path: Path) -> None:
    from pvt_deploy import Model

    photo = tmp_path / "coffee.png"  # PNG: the saved picture is compared pixel for pixel
    cv2.imwrite(str(photo), cv2.imread(str(sample_images()[1])))
    drawn = {}
    for name, flags in {"thin": ["--line-width", "1"], "thick": ["--line-width", "6"],
                        "bare": ["--line-width", "6", "--hide-labels"], "noconf": ["--line-width", "6", "--hide-conf"]
                        }.items():
        code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(det_export), "--conf", "0.07",
                           *flags, "-o", str(tmp_path / name))
        assert code == 0, err
        drawn[name] = cv2.cvtColor(cv2.imread(str(tmp_path / name / "coffee.png")), cv2.COLOR_BGR2RGB)
    with Model(det_export) as m:
        (r,) = m.predict(str(photo), conf=0.07)
    assert len(r.shown_boxes()) > 0
    assert np.array_equal(drawn["thin"], r.plot(line_width=1)) and np.array_equal(drawn["thick"], r.plot(line_width=6))
    assert np.array_equal(drawn["bare"], r.plot(line_width=6, labels=False))
    assert np.array_equal(drawn["noconf"], r.plot(line_width=6, conf=False))
    assert len({drawn[k].tobytes() for k in drawn}) == 4


def test_save_txt_and_crop_where_the_task_has_none_and_line_width_0_are_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory,
        tmp_path: Path) -> None:
    seg, cls = cached_export(tmp_path_factory, "seg"), cached_export(tmp_path_factory, "cls")
    photo = str(sample_images()[0])
    for model, flag, said in ((seg, "--save-txt", "--save-txt writes YOLO labels of detections or classes; a segment "
                               "model has none; its class maps are --save-mask's"),
                              (seg, "--save-crop", "--save-crop cuts out detected boxes; a segment model has none"),
                              (cls, "--save-crop", "--save-crop cuts out detected boxes; a classify model has none"),
                              (cls, "--line-width=0", "--line-width must be an integer >= 1, got 0")):
        code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", str(model), flag, "-o", str(tmp_path / "o"))
        assert code == 2, err
        assert_one_line_error(err, said)
        assert not (tmp_path / "o").exists()
    code, _, err = run(monkeypatch, capsys, "infer", photo, "--model", str(cls), "--save-txt", "-o", str(tmp_path / "c"))
    assert code == 0, err
    lines = (tmp_path / "c" / "labels" / f"{Path(photo).stem}.txt").read_text().splitlines()
    probs = [float(line.split(" ", 1)[0]) for line in lines]
    assert len(lines) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5


def test_draw_conf_with_no_save_is_not_called_ignored_when_a_window_shows_the_boxes() -> None:
    """--no-save --show --draw-conf 0.5: the window draws from 0.5, but the warning said it was ignored."""
    from pvt_deploy.cli.infer import _ignored

    said = _ignored("detect", "video", save=False, save_mask=False, classes=None, draw_conf=0.5, show=True)
    assert not any("--draw-conf" in line for line in said), said
    said = _ignored("detect", "video", save=False, save_mask=False, classes=None, draw_conf=0.5)
    assert any("which --no-save turns off: ignored" in line for line in said), said
