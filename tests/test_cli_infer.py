"""``pvt-deploy infer`` end to end: outputs decoded back, exit codes, one-line errors, Ctrl-C.

Runs the real console entry point (``pvt_deploy.cli.main``), so error printing and exit codes are
what a shell sees.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from test_io_sinks import audio_of, clip_with_audio, frame_times
from test_runtime_artifacts import cached_export, decode_video, make_clip

from pvt_deploy.assets import sample_images
from pvt_deploy.cli import main


@pytest.fixture(scope="module")
def det_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "det")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("cli") / "walk.mp4", frames=12, size=(320, 180), fps=12.0)


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), out, err


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
    assert "RANDOM WEIGHTS" in err and "3 frames" in err
    out = tmp_path / "runs" / "infer" / "pvt_v2_b0-cls"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in sample_images())
    code, _, err = run(monkeypatch, capsys, "infer", "--no-save", "--save-json")  # a second run never overwrites
    assert code == 0, err
    second = tmp_path / "runs" / "infer" / "pvt_v2_b0-cls2"
    assert sorted(p.name for p in second.iterdir()) == ["predictions.jsonl"]
    assert [json.loads(line)["task"] for line in (second / "predictions.jsonl").read_text().splitlines()] == [
        "classify"] * 3


def test_video_gives_h264_at_the_source_size_and_one_json_line_per_frame(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_export: Path,
        long_clip: Path, tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export), "--batch", "2",
                       "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert "12 frames" in err and "FPS" in err and "encode" in err
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
    shutil.copyfile(sample_images()[2], folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with caplog.at_level(logging.WARNING):
        code, _, err = run(monkeypatch, capsys, "infer", str(folder), "--model", str(det_export), "--save-json",
                           "--classes", "person,cat", "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert "b.jpg" in caplog.text and "1 unreadable image(s) skipped" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "predictions.jsonl",
                                                                  "predictions_coco.json"]
    record = json.loads((tmp_path / "out" / "predictions.jsonl").read_text())
    assert {d["class"] for d in record["detections"]} <= {"person", "cat"}


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
])
def test_bad_input_is_one_line_and_an_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    got, _, err = run(monkeypatch, capsys, *args)
    assert got == code, err
    assert_one_line_error(err, needle)


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
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    real = OnnxRuntimeBackend.infer
    calls = {"n": 0}

    def interrupted(self: OnnxRuntimeBackend, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(self, feed)

    monkeypatch.setattr(OnnxRuntimeBackend, "infer", interrupted)
    code, _, err = run(monkeypatch, capsys, "infer", str(long_clip), "--model", str(det_export), "-o", str(tmp_path),
                       "--batch", "1")  # one frame per call: the 6th call is the 6th frame
    assert code == 130 and "interrupted" in err
    codec, frames, size, _ = decode_video(tmp_path / "walk.mp4")
    assert (codec, frames, size) == ("h264", 5, (320, 180))
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 5


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
