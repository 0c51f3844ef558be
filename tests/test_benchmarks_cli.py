"""The benchmark scripts' command lines: bad arguments and an unwritable ``--json`` are one error line
and exit 2 *before* any model work; Ctrl-C / SIGTERM end a run with one line and 130 / 143.

Every case here fails in argument checking (or is interrupted at once), so no benchmark runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import bench_scripts
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

pytest_plugins = ["export_fixtures"]


def _run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _assert_usage_error(done: subprocess.CompletedProcess[str], script: str, *snippets: str) -> None:
    """Exit 2, nothing on stdout (no work started: the machine header is the first thing printed),
    and on stderr one line, the error with ``snippets`` (argparse printed its usage lines above it)."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (last,) = done.stderr.strip().splitlines()
    assert last.startswith(f"{script}: error: "), done.stderr
    for s in snippets:
        assert s in last, (s, last)


@pytest.mark.parametrize(("script", "args", "snippets"), [
    ("speed.py", ["--rounds", "0"], ["--rounds", "at least 1"]),
    ("speed.py", ["--rounds", "-1"], ["--rounds", "at least 1"]),
    ("speed.py", ["--images", "0"], ["--images", "at least 1"]),
    ("speed.py", ["--images", "13"], ["--images", "at most 12"]),
    ("speed.py", ["--models", ""], ["--models", "empty"]),
    ("speed.py", ["--models", "pvt_v2_b0-cls:abc"], ["size", "'abc'"]),
    ("speed.py", ["--models", "pvt_v2_b0-cls:64:x"], ["batch", "'x'"]),
    ("speed.py", ["--models", "pvt_v2_b0-cls:64:0"], ["batch", "at least 1"]),
    ("speed.py", ["--variants", "onnx,bogus"], ["'bogus'", "onnx-int8"]),
    ("speed.py", ["--variants", "onnx-int9"], ["did you mean 'onnx-int8'"]),
    ("export_cost.py", ["--imgsz", "0"], ["--imgsz", "at least 32"]),
    ("ort_options.py", ["--settings", "bogus"], ["'bogus'", "no-shards", "transformers-opt"]),
    ("ort_options.py", ["--rounds", "0"], ["--rounds", "at least 1"]),
    ("ort_options.py", ["--file", "model.int4.onnx"], ["--file", "model.fp16.onnx"]),
    ("ort_profile.py", ["--runs", "0"], ["--runs", "at least 1"]),
    ("ort_profile.py", ["--file", "model.int8.trt.onnx"], ["--file", "model.int8.onnx"]),
    ("int8_variants.py", ["--flavours", "export,bogus"], ["'bogus'", "dynamic-plain"]),
    ("winograd.py", ["--channels", "256"], ["--channels", "in:out"]),
    ("seg_post.py", ["--sizes", "720"], ["--sizes", "HxW"]),
    ("seg_post.py", ["--classes", "0"], ["--classes", "at least 1"]),
    ("video_overhead.py", ["--frames", "0"], ["--frames", "at least 1"]),
    ("video_overhead.py", ["--clip", "benchmarks"], ["--clip benchmarks", "is a folder; give a video file"]),
    ("video_overhead.py", ["--clip", "no-such.mp4"], ["--clip no-such.mp4", "no such file"]),
    ("video_overhead.py", ["--clip", "README.md", "--frames", "60"], ["--frames", "with --clip the whole clip runs"]),
    ("video_overhead.py", ["--infer-args", "--batch 0"], ["--infer-args", "--batch"]),
    ("video_overhead.py", ["--backend", "torch", "--precision", "int8"], ["--precision int8", "--backend onnx"]),
])
def test_bad_argument_is_one_line_exit_2(script: str, args: list[str], snippets: list[str]) -> None:
    _assert_usage_error(_run(script, *args), script, *snippets)


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if p.name != "common.py"))
def test_every_script_answers_an_unknown_option_in_one_line(script: str) -> None:
    """README: a bad argument of a benchmark script is one line and exit 2 (every script, new ones too).
    ``--help`` still shows the usage, and the whole docstring, which says what is measured and how (it
    showed the first line only: ``export_cost.py --help`` did not say that its target is 2 minutes)."""
    import ast

    _assert_usage_error(_run(script, "--bogus", "1"), script, "unrecognized arguments: --bogus 1")
    shown = _run(script, "--help")
    assert shown.returncode == 0 and "usage:" in shown.stdout
    doc = ast.get_docstring(ast.parse((BENCH / script).read_text(encoding="utf-8")))
    assert doc is not None and doc.splitlines()[-1].strip() in shown.stdout  # the last line, as written


def test_unknown_model_suggests_the_zoo_name() -> None:
    # loads PyTorch (the zoo module does), so one case only
    done = _run("speed.py", "--models", "pvt_v2_bO-cls:64:1")
    _assert_usage_error(done, "speed.py", "unknown model 'pvt_v2_bO-cls'", "did you mean 'pvt_v2_b0-cls'")


@pytest.mark.parametrize("script", ["speed.py", "export_cost.py", "ort_options.py", "int8_variants.py",
                                    "video_overhead.py"])
def test_json_under_a_file_is_refused_before_any_work(script: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = _run(script, "--json", str(blocker / "out.json"), "--work", str(tmp_path / "work"))
    # no work started: no machine header on stdout (checked by _assert_usage_error), no --work folder,
    # nothing written at all (a time bound said less, and a loaded machine could break it)
    _assert_usage_error(done, script, "--json", "not a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"] and blocker.read_text() == ""


def test_json_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    done = _run("speed.py", "--json", str(tmp_path), "--models", "pvt_v2_b0-cls:64:1")
    _assert_usage_error(done, "speed.py", "--json", "is a folder")


def test_json_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    """A folder without write permission; as root (containers, CI) permissions do not stop a write, so
    the folder is sysfs's top, where no one can create files."""
    as_root = not hasattr(os, "geteuid") or os.geteuid() == 0
    if as_root:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("running as root without a sysfs: no folder here refuses root's writes")
        ro = Path("/sys")
        done = _run("export_cost.py", "--json", str(ro / "out.json"), "--model", "pvt_v2_b0-cls")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            done = _run("export_cost.py", "--json", str(ro / "out.json"), "--model", "pvt_v2_b0-cls")
        finally:
            ro.chmod(0o755)
    _assert_usage_error(done, "export_cost.py", "--json", f"cannot create files in {ro}")
    assert not (ro / "out.json").exists()


def test_json_that_is_a_device_or_a_link_is_not_replaced(common: ModuleType, tmp_path: Path) -> None:
    """As root, ``--json /dev/full`` replaced the device with a regular file (the atomic write renames
    over its target); a link to a JSON file became a file of its own."""
    _assert_usage_error(_run("export_cost.py", "--json", "/dev/null", "--model", "pvt_v2_b0-cls"),
                        "export_cost.py", "--json", "exists and is not a regular file")
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    common.write_json(link, {"ok": True})
    assert link.is_symlink() and json.loads(real.read_text()) == {"ok": True}


def test_work_that_is_a_file_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.write_text("")
    _assert_usage_error(_run("ort_options.py", "--work", str(work)), "ort_options.py", "--work", "not a folder")


# --------------------------------------------------------------------------------------------------
# The shared pieces, in process
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def common() -> ModuleType:
    """``benchmarks/common.py``, loaded under a name of its own (no clash with any other ``common``)."""
    return bench_scripts.load("common", keep=True)


def test_write_json_is_atomic_and_keeps_results_when_it_fails(common: ModuleType, tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    common.write_json(target, {"a": 1})
    common.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]  # no temporary file left
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        common.write_json(blocker / "out.json", {"a": 3})
    message = str(e.value.code)
    assert message.startswith("error: cannot write") and "saved to" in message
    rescue = Path(message.rsplit("saved to ", 1)[1])
    try:
        assert json.loads(rescue.read_text(encoding="utf-8")) == {"a": 3}
    finally:
        rescue.unlink()


@pytest.mark.skipif(signal.getsignal(signal.SIGTERM) != signal.SIG_DFL,
                    reason="SIGTERM is handled by the test runner here; run() leaves it alone")
def test_run_turns_signals_into_exit_codes_after_clean_up(common: ModuleType,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cleaned: list[str] = []

    def interrupted(argv: list[str] | None) -> int:
        try:
            raise KeyboardInterrupt
        finally:
            cleaned.append("int")

    def terminated(argv: list[str] | None) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
            return 0
        finally:
            cleaned.append("term")

    assert common.run(interrupted) == 130
    assert common.run(terminated) == 143
    assert cleaned == ["int", "term"]
    assert capsys.readouterr().err.splitlines() == ["interrupted", "terminated"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_run_prints_user_errors_in_one_line(common: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    from pvt_deploy.errors import InputError

    def bad(argv: list[str] | None) -> int:
        raise InputError("no such thing", hint="try another")

    assert common.run(bad) == 2
    assert capsys.readouterr().err.splitlines() == ["error: no such thing (try another)"]

    def bug(argv: list[str] | None) -> int:
        raise RuntimeError("a bug keeps its traceback")

    with pytest.raises(RuntimeError):
        common.run(bug)


# --------------------------------------------------------------------------------------------------
# A real Ctrl-C
# --------------------------------------------------------------------------------------------------


def _ctrl_c_speed(args: list[str], until: Callable[[str], bool],
                  env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``speed.py args``, press Ctrl-C once a line of its output satisfies ``until``; (code, out, err).
    SIGINT is reset to the default in the child in case this test runs under a shell that ignores it
    for background jobs."""
    proc = subprocess.Popen([sys.executable, str(BENCH / "speed.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if until(line):
                break
        else:
            raise AssertionError(f"speed.py ended before it could be interrupted: {''.join(seen)}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen) + out, err


def test_ctrl_c_during_a_run_is_one_line_and_130(tmp_path: Path) -> None:
    # A fresh --work: the run is busy making weights / exporting when the signal arrives (right after
    # the machine header: argument checks passed, work starts); it never gets as far as timing.
    code, out, err = _ctrl_c_speed(["--models", "pvt_v2_b0-cls:64:1", "--rounds", "3", "--work", str(tmp_path / "work")],
                                   until=lambda line: bool(line.strip()))
    assert code == 130, (out, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted"


def test_an_interrupted_suite_keeps_the_cases_it_finished(tmp_path: Path) -> None:
    # The first case finishes (its table is printed); Ctrl-C then lands while the second one (another
    # input size: a new export, seconds of work) is being prepared. The JSON holds the first case's
    # figures, marked interrupted, and the exit code is 130. No PYTHONUNBUFFERED: the scripts flush
    # each line themselves, so a pipe (`| tee`) shows progress as it happens.
    out_json = tmp_path / "speed.json"
    code, out, err = _ctrl_c_speed(
        ["--models", "pvt_v2_b0-cls:64:1,pvt_v2_b0-cls:96:1", "--variants", "onnx", "--rounds", "3", "--images", "2",
         "--work", str(tmp_path / "work"), "--json", str(out_json)],
        until=lambda line: line.startswith("onnx "),  # the first case's last row
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
    assert code == 130, (out, err)
    assert err.strip().splitlines()[-1] == "interrupted"
    saved = json.loads(out_json.read_text())
    assert saved["interrupted"] is True
    assert [(c["model"], c["input"]) for c in saved["cases"]] == [("pvt_v2_b0-cls", [1, 3, 64, 64])]
    onnx = saved["cases"][0]["variants"]["onnx"]
    assert onnx["status"] == "ok" and onnx["vs_torch"] > 0 and onnx["agreement"]["top1"] == 1.0
    assert "(1 finished cases)" in out


def _video_overhead() -> ModuleType:
    return bench_scripts.load("video_overhead")


def test_a_short_clip_is_repeated_for_the_memory_run(tmp_path: Path) -> None:
    """``video_overhead.py --clip short.mp4 --memory-frames N`` lays the clip end to end (stream copy) so
    the memory run really covers N frames: every frame decodes, times keep increasing, audio comes along."""
    import av
    from test_io_sinks import clip_with_audio

    video_overhead = _video_overhead()
    src = clip_with_audio(tmp_path / "short.mp4", "aac", frames=10)
    clip, frames, passes = video_overhead.looped_clip(src, 25, tmp_path)
    assert (frames, passes) == (30, 3) and clip.suffix == ".mkv"
    with av.open(str(clip)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(clip)) as c:
        audio = sum(f.samples for f in c.decode(audio=0))
    assert len(times) == 30 and all(b > a for a, b in zip(times, times[1:], strict=False))
    # each pass starts where the previous one's last packet (audio priming included) ended
    assert 29 / 25 <= times[-1] < 29 / 25 + 3 * 0.05 and audio >= 3 * 48000 * 10 // 25 * 0.9
    assert video_overhead.looped_clip(src, 10, tmp_path) == (src, 10, 1)  # long enough: used as is
    # a --clip that is not a video is one line for both parts, before any work
    from pvt_deploy.errors import InputError

    still = tmp_path / "still.jpg"
    still.write_bytes((Path(__file__).parent.parent / "pvt_deploy" / "assets" / "coffee.jpg").read_bytes())
    for bad, why in ((still, "not a video"), (tmp_path, "is a folder")):
        with pytest.raises(InputError, match=why):
            video_overhead.first_frame(bad)
    # the RSS the child frees as it exits is not growth (it pulled the slope towards "no leak")
    samples = [(0.25 * i, 400.0 + 0.01 * i) for i in range(400)] + [(100.0, 380.0), (100.25, 300.0)]
    summary = video_overhead.rss_summary(samples, 1000, fps=10.0)
    assert summary["samples_at_exit_left_out"] == 2 and summary["slope_mb_per_1000_frames"] == pytest.approx(4.0)
    short = video_overhead.rss_summary(samples[:20], 100)
    assert short["note"].startswith("run too short") and short["peak_mb"] == 400.2


def _clip_on_a_90khz_clock(path: Path, frames: int) -> Path:
    """A 25 fps H.264 mp4 whose times are on a 1/90000 clock (as MPEG-TS and many cameras keep them)."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 90000)
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 6 * i, np.uint8), format="rgb24")
            picture.pts, picture.time_base = 3600 * i, Fraction(1, 90000)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


def _read_as_infer_does(clip: Path, caplog: pytest.LogCaptureFixture) -> tuple[Any, list[Any]]:
    import logging

    from pvt_deploy.io.sources import open_source

    caplog.clear()
    with caplog.at_level(logging.WARNING), open_source(str(clip)) as source:
        frames = list(source)
    return source, frames


def test_the_memory_runs_repeated_clip_keeps_the_rate_the_order_and_any_codec(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The stream copy that lays a short ``--clip`` end to end must read as the clip does, repeated.
    It declared 30000 fps for a 25 fps clip on a 1/90000 clock (Matroska's muxer guessed a rate from
    the codec's clock), so ``infer`` counted 3600 frames for 30 and called the copy truncated; an
    H.264 AVI's B-frames came out of order (its decode times were copied as presentation times); and
    an AV1 clip stopped the benchmark with a traceback (UnknownCodecError: libdav1d, a decoder)."""
    import av
    import numpy as np
    from test_io_sources import FPS, STEP, grey_level, make_avi

    video_overhead = _video_overhead()
    clip, frames, passes = video_overhead.looped_clip(_clip_on_a_90khz_clock(tmp_path / "90k.mp4", 10), 30, tmp_path)
    assert (frames, passes) == (30, 3)
    source, got = _read_as_infer_does(clip, caplog)
    assert source.fps == 25 and source.frames == 30 and len(got) == 30
    assert [f.timestamp for f in got] == pytest.approx([i / 25 for i in range(30)], abs=1e-3)
    assert source.error is None and caplog.text == ""

    clip, frames, passes = video_overhead.looped_clip(make_avi(tmp_path / "bframes.avi", "libx264"), 50, tmp_path)
    assert (frames, passes) == (60, 3) and clip.suffix == ".avi"
    source, got = _read_as_infer_does(clip, caplog)
    assert [round(grey_level(f) / STEP) for f in got] == [i % 20 for i in range(60)]
    assert [f.timestamp for f in got] == pytest.approx([i / FPS for i in range(60)])
    assert source.error is None and caplog.text == ""

    av1 = tmp_path / "av1.webm"

    def write_av1() -> None:
        with av.open(str(av1), "w") as out:
            stream = out.add_stream("libsvtav1", rate=24, options={"preset": "12"})
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            for i in range(6):
                picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 20 * i, np.uint8), format="rgb24")
                picture.pts = i
                out.mux(stream.encode(picture))
            out.mux(stream.encode(None))

    # On a thread of its own: SVT-AV1, run as root, makes the thread that encodes real-time (SCHED_FIFO) for good,
    # and the test process's main thread then ran every later test so, its children too (test_api_46's could not
    # join a cgroup without real-time time: EINVAL).
    policy = os.sched_getscheduler(0)
    with ThreadPoolExecutor(1) as encoder:
        encoder.submit(write_av1).result()
    assert os.sched_getscheduler(0) == policy
    clip, frames, passes = video_overhead.looped_clip(av1, 12, tmp_path)
    assert (frames, passes) == (12, 2)
    source, got = _read_as_infer_does(clip, caplog)
    assert len(got) == 12 and source.fps == 24 and source.error is None


def test_a_raw_stream_is_repeated_for_the_memory_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A raw .h264 has no times to shift a pass by: the memory run ran its own frames only ("too short
    to judge" for any raw --clip). Its passes are now joined byte for byte and play end to end."""
    import av
    import numpy as np

    raw = tmp_path / "cam.h264"
    with av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(12):
            picture = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 20 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(picture.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    clip, frames, passes = _video_overhead().looped_clip(raw, 30, tmp_path)
    assert (frames, passes) == (36, 3) and clip.suffix == ".h264"
    source, got = _read_as_infer_does(clip, caplog)
    assert len(got) == 36 and source.fps == 30 and source.error is None and caplog.text == ""
    assert [round(float(f.image.mean()) / 20) for f in got] == [i % 12 for i in range(36)]


def test_the_summary_of_a_one_frame_clip_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    """``infer`` says "1 frame in ...", which the benchmark could not read: a one-frame --clip ended in
    "could not read the infer summary" (exit 1) after the model-only runs."""
    from rich.console import Console

    from pvt_deploy.cli.infer import _print_summary
    from pvt_deploy.tasks.pipeline import RunSummary

    video_overhead = _video_overhead()
    for frames in (1, 2):
        _print_summary(Console(width=200, no_color=True), RunSummary(frames=frames, seconds=0.25), None)
        printed = capsys.readouterr().out
        m = video_overhead._SUMMARY.search(printed)
        assert m is not None, printed
        assert (int(m.group(1)), float(m.group(2)), float(m.group(3))) == (frames, 0.25, 4.0 * frames)


def test_an_fps_run_on_a_short_clip_is_not_judged() -> None:
    """A one-frame --clip printed "ratio 0.689 to batch-1 model-only (target >= 0.9)" as a verdict on the
    pipeline: on so few frames the ratio is filling and draining it. Such a run now says it is too short."""
    video_overhead = _video_overhead()
    assert video_overhead.short_run_note(1) == ("too short to judge: 1 frame (fewer than 100: filling and "
                                               "draining the pipeline weigh on the ratio)")
    assert "99 frames" in video_overhead.short_run_note(99)
    assert video_overhead.short_run_note(100) is None and video_overhead.short_run_note(150) is None


def test_speed_table_adds_the_ratio_to_torch_cuda_when_gpu_variants_ran(capsys: pytest.CaptureFixture[str]) -> None:
    """With GPU variants the table also compares each with PyTorch FP32 on the same GPU; a skipped
    variant keeps its reason in the last column (figures from the H200 run, 2026-12-04)."""
    speed = bench_scripts.load("speed")

    def ok(median: float, vs: float, vs_cuda: float | None = None) -> dict[str, Any]:
        return {"status": "ok", "latency": {"median_ms": median, "p90_ms": median, "images_per_s": 1000 / median},
                "vs_torch": vs, **({"vs_torch_cuda": vs_cuda} if vs_cuda is not None else {}),
                "agreement": {"f1": 1.0, "cosine": 1.0}}

    case: dict[str, Any] = {"model": "pvt_v2_b0", "task": "detect", "input": [1, 3, 640, 640], "rounds": 16,
            "load_average": [0.5, 0.5], "preprocess_ms": 1.1, "postprocess_ms": 1.1,
            "variants": {"torch": ok(250.0, 1.0), "torch-cuda": ok(13.9, 18.03, 1.0),
                         "onnx-cuda": ok(9.0, 27.65, 1.53),
                         "trt-fp16": {"status": "skipped", "reason": "TensorRT is not installed"}}}
    speed._print_case(case)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    assert header.split()[:10] == ["variant", "median", "ms", "p90", "ms", "img/s", "vs", "torch", "vs", "torch-cuda"]
    row = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in case["variants"]}
    assert row["onnx-cuda"][4:6] == ["27.65x", "1.53x"] and row["torch"][4] == "1.00x"
    assert row["trt-fp16"][1] == "skipped" and "TensorRT is not installed" in " ".join(row["trt-fp16"])
    del case["variants"]["torch-cuda"], case["variants"]["onnx-cuda"]["vs_torch_cuda"]  # CPU only: no column
    case["others_cpu_share"] = 0.23  # the CPU other processes took while the variants ran
    speed._print_case(case)
    printed = capsys.readouterr().out
    assert "torch-cuda" not in printed and "load 0.5 -> 0.5, other processes 23% of the CPU; host" in printed


def test_the_header_names_the_commit_measured(common: ModuleType) -> None:
    """The version string is the same from commit to commit; the header ties a table to its code."""
    import re
    import subprocess

    head = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    info = common.machine()
    if not head:
        assert info["commit"] is None
        return
    assert re.fullmatch(re.escape(head) + r"(\+changes)?", info["commit"])
    assert common.header_lines(info).endswith(f"| commit {info['commit']}")


def test_an_fps_run_says_when_the_machine_was_unsteady_or_the_clip_ended_early(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two things the fps part printed as plain figures, seen on clips of users' kinds on the shared Xeon:
    the model-only FPS fell from 6.68 before the CLI run to 2.25 after it (another process took the
    cores) and the ratio was printed as 1.481 "(target >= 0.9)" with no word of it; and a truncated
    clip's run, which infer reported as "source ended early", read as a clip of that many frames.
    The measurements are stood in for here (their figures from those runs); the printing and the
    reading of infer's own summary are the script's."""
    import numpy as np
    from rich.console import Console

    from pvt_deploy.cli.infer import _print_summary
    from pvt_deploy.tasks.pipeline import RunSummary

    video_overhead = _video_overhead()
    error = "decoding ended at 2.9 s of the 5.0 s the file declares (truncated file?)"
    _print_summary(Console(width=60, no_color=True),  # narrow: rich wraps the line, as it may a long path
                   RunSummary(frames=120, seconds=18.15, source_error=error,
                              stages={"inference": {"ms_per_frame": 151.1, "fps": 6.6}}), None)
    infer_output = capsys.readouterr().out
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"stands in: first_frame is replaced")
    fps = {1: [6.7, 6.68, 2.25], 2: [7.58, 7.44]}  # warm-up, before, after; before, after in batches of 2
    monkeypatch.setattr(video_overhead, "first_frame", lambda _clip: np.zeros((481, 853, 3), np.uint8))
    monkeypatch.setattr(video_overhead.common, "artifact", lambda *a, **k: tmp_path)
    monkeypatch.setattr(video_overhead, "cli_batch", lambda *a: 2)
    monkeypatch.setattr(video_overhead, "model_only_fps", lambda *a, **k: {
        "fps": fps[a[4] if len(a) > 4 else 1].pop(0), "median_ms": 1.0, "calls": 10, "cpu_ms_per_frame": 270.0,
        "input": [1, 3, 384, 640]})
    monkeypatch.setattr(video_overhead, "run_cli", lambda *a, instant=False: {  # the instant model: 50 FPS
        "command": "infer", **video_overhead.read_summary(infer_output), **({"fps": 50.0} if instant else {}),
        "wall_s": 19.0, "cpu_s": 3.0 if instant else 40.0, "rss": []})
    out_json = tmp_path / "report.json"
    assert video_overhead.main(["--part", "fps", "--clip", str(clip), "--work", str(tmp_path / "work"),
                                "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "ratio             1.480 to batch-1 model-only" in printed  # 6.61 / ((6.68 + 2.25) / 2)
    assert ("unsteady: the model-only FPS moved by more than 10% from before to after the CLI run "
            "(batch 1 6.68 -> 2.25)") in printed
    assert f"the clip ended early ({error}): the figures are of the 120 frames decoded before that" in printed
    assert "pipeline alone    50.00 FPS end to end with an instant model" in printed
    assert ("CPU ms/frame:     pvt-deploy infer 333.3 = model only 270.0 (batch 2) + pipeline alone 25.0 + 38.3 "
            "(beyond the two apart") in printed  # 40 s and 3 s over 120 frames
    report = json.loads(out_json.read_text())["fps"]
    assert report["cli"]["source_error"] == error and report["unsteady"].startswith("unsteady: ")
    # steady figures (3.6 % apart, the same run's batch 2: 1.9 %) say nothing of the kind
    assert video_overhead.unsteady_note({"batch 1": (7.0, 6.75), "batch 2": (7.58, 7.44)}) is None
    assert "batch 2 6.40 -> 7.29" in video_overhead.unsteady_note({"batch 1": (6.63, 6.49), "batch 2": (6.40, 7.29)})
    # steady model-only figures, but other processes took the cores while the CLI ran (0.868 where 1.021 was next)
    assert video_overhead.unsteady_note({"batch 1": (4.0, 4.14)}, 0.04) is None
    assert ("unsteady: other processes used 18% of the machine's CPU while the CLI ran"
            in video_overhead.unsteady_note({"batch 1": (4.0, 4.14)}, 0.18))


def test_an_fps_run_says_how_many_frames_of_a_damaged_clip_could_not_be_decoded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """A clip with damaged packets in the middle (not truncated: decoding goes on to its end) ran 197 of its
    200 frames; infer warned of the 3, but the benchmark printed "197 frames" with no word of why, and its
    memory run "591 frames" for --memory-frames 600 (the damage repeated by each pass). The warning is the
    source's own, from a real damaged clip; the summary is infer's printing."""
    import textwrap
    from fractions import Fraction

    import av
    import numpy as np
    from rich.console import Console

    from pvt_deploy.cli.infer import _print_summary
    from pvt_deploy.tasks.pipeline import RunSummary

    clip = tmp_path / "damaged.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25), options={"preset": "ultrafast", "g": "10"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(40):
            picture = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), format="rgb24")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    data = bytearray(clip.read_bytes())
    data[len(data) // 2: len(data) // 2 + 3000] = bytes(3000)
    clip.write_bytes(bytes(data))
    source, got = _read_as_infer_does(clip, caplog)
    assert source.error is None and 0 < len(got) < 40  # damaged, read to its end
    warning = "WARNING  " + caplog.records[-1].getMessage()
    _print_summary(Console(width=60, no_color=True),
                   RunSummary(frames=len(got), seconds=2.0, stages={"inference": {"ms_per_frame": 50.0, "fps": 20}}),
                   None)
    summary = capsys.readouterr().out
    infer_output = "\n".join(textwrap.wrap(warning, 40)) + "\n" + summary  # wrapped, as rich may
    video_overhead = _video_overhead()
    run = video_overhead.read_summary(infer_output)
    assert run["frames"] == len(got) and run["source_error"] is None
    assert run["frames_lost"] == [40 - len(got), 40]
    video_overhead.ended_early(run)
    assert capsys.readouterr().out == (f"  {40 - len(got)} of the clip's 40 frames could not be decoded (damaged "
                                       f"file?): the figures are of the {len(got)} frames decoded\n")
    video_overhead.ended_early(video_overhead.read_summary(summary))  # an undamaged clip: nothing said
    assert capsys.readouterr().out == ""


def test_others_cpu_counts_what_other_processes_used_not_the_children_waited_for(common: ModuleType) -> None:
    """``common.others_cpu``: a child that spins for ~0.6 s of CPU and is waited for inside the block is the
    caller's own (a CLI run); the same child left unwaited until after the block is another process. Lower bounds
    only, in CPU seconds: what the rest of a busy machine does (a parallel test run) adds to "others" in both."""
    import subprocess

    if common._busy_and_own() is None:
        pytest.skip("no /proc/stat here")
    spin = [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"]
    with common.others_cpu() as own:
        subprocess.run(spin, check=True)
    with common.others_cpu() as other:
        child = subprocess.Popen(spin)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: reaping makes it ours
    child.wait()
    assert own["own_seconds"] is not None and own["own_seconds"] >= 0.55, own  # the child waited for is ours
    assert other["seconds"] is not None and other["seconds"] >= 0.5, other  # the one not waited for is not
    assert other["own_seconds"] is not None and other["own_seconds"] < 0.3, other
    assert other["share"] is not None and other["share"] > 0


def test_the_cli_child_runs_infer_with_an_instant_model_or_the_real_one(det_artifact: Any, tmp_path: Path) -> None:
    """``video_overhead.py`` runs ``pvt-deploy infer`` through its own child role: with ``instant`` every
    inference call is answered with the outputs of the first frame (the "pipeline alone" figure: what the
    stages allow around any model), with ``model`` the model runs; both print the CPU time of the run.
    On a clip of different photos the real model finds different boxes in different frames, the
    instant one the first frame's in every frame; both write a video of every frame."""
    import av
    import cv2

    from pvt_deploy.assets import sample_images
    from pvt_deploy.io.sinks import VideoWriter
    from pvt_deploy.io.sources import read_image

    photos = [cv2.resize(read_image(p), (320, 240)) for p in sample_images()]
    clip = tmp_path / "photos.mp4"
    with VideoWriter(clip, 10, (320, 240)) as writer:
        for i in range(9):
            writer.write(photos[i % len(photos)])
    boxes: dict[str, list[str]] = {}
    for role in ("instant", "model"):
        out = tmp_path / role
        done = _run("video_overhead.py", "--cli-child", role, "infer", str(clip), "--model", str(det_artifact.folder),
                    "--imgsz", "160", "-o", str(out), timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        cpu = [line for line in done.stdout.splitlines() if line.startswith("[video_overhead] run cpu ")]
        assert len(cpu) == 1 and float(cpu[0].split()[3]) > 0, done.stdout[-2000:]
        with av.open(str(out / "photos.mp4")) as video:
            assert sum(1 for _ in video.decode(video=0)) == 9
        lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(lines) == 9 and all(line["detections"] for line in lines)
        boxes[role] = [json.dumps(line["detections"]) for line in lines]
    assert set(boxes["instant"]) == {boxes["model"][0]}  # every frame: what the model found in the first
    assert len(set(boxes["model"][:3])) == 3  # three different photos, three different answers
