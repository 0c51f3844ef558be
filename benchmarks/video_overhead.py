"""How much does ``pvt-deploy infer`` on a 1280x720 video cost beyond the model, and does memory stay flat?

    python benchmarks/video_overhead.py                    # both parts, ~6 min on 2 cores
    python benchmarks/video_overhead.py --part fps --frames 150
    python benchmarks/video_overhead.py --part memory --memory-frames 3000
    python benchmarks/video_overhead.py --clip my_clip.mp4     # your own clip for both parts
    python benchmarks/video_overhead.py --part fps --backend torch --device cuda --precision fp16

Part ``fps``: end-to-end FPS of the real CLI (``pvt-deploy infer clip.mp4``: decode, letterbox,
inference, NMS, drawing, H.264 encode, JSON Lines) against the *model-only* FPS of the same backend
on the same input size (inference calls alone, no pipeline), measured before and after the CLI run
and averaged (ONNX Runtime on the CPU unless ``--backend``/``--device``/``--precision`` say
otherwise; both sides always run the same one). The ratio says how well the pipeline hides decode/draw/encode behind inference; the
target is >= 0.9 against one frame per call. Where the CLI runs the clip in batches (its default on
ONNX Runtime's CPU: one frame per core, see ``pvt_deploy.tasks.pipeline``), the model-only FPS in
those batches is measured too and the second ratio is printed against it. A clip of fewer than 100
frames is reported as too short to judge: filling and draining the pipeline weigh on its ratio; a
run whose model-only FPS moved by more than 10% from before to after the CLI run, or during whose CLI run
other processes took more than 10% of the machine's CPU (``/proc/stat`` against the CLI's own), as unsteady
(something else took the cores: run it again); a clip that ends before the end its file declares
(truncated), with the number of frames decoded up to there, which the figures are of; one with frames
that could not be decoded (damaged packets skipped), with how many.

The fps part also runs the CLI once more with an *instant model*: every inference call answered at once
with the outputs the model gave for the clip's first frame (cached), so decode, letterbox, NMS,
drawing, encode and JSON Lines do all their work. Its FPS is the most this host's stages allow
around any model (what a fast GPU meets), and with the CPU time of each run per frame (the CLI's, the
instant run's, the model-only loop's) it says where a ratio under 1 goes: the stages' own work, or
the stages and the model slowing each other down on shared cores. The CLI runs through its own entry
point (``pvt_deploy.cli.main``, what the ``pvt-deploy`` command calls) in a child process of this
script, which also prints the CPU time of the run from its first frame to its last.

Part ``memory``: the CLI on a long clip with a small, fast graph (so thousands of frames finish in
minutes), its resident set size sampled every 0.25 s from /proc. After warm-up (the first 10% of
the run) RSS must not grow: the script prints the RSS at each tenth of the run and the growth from
the first post-warm-up tenth to the last, and the least-squares slope in MB per 1000 frames.

The 1280x720 clip is made once from the bundled photos (slow pans and zooms, H.264, 25 fps) and
cached under ``--work``; it is not shipped. ``--clip`` runs both parts on a clip of your own instead
(any container and codec PyAV decodes); the model-only figures then use its first frame, so the
letterboxed input is the one the CLI runs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from pvt_deploy.utils import count_of  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 25


# --------------------------------------------------------------------------------------------------
# The clip
# --------------------------------------------------------------------------------------------------


def make_clip(path: Path, frames: int) -> Path:
    """``frames`` 1280x720 H.264 frames panning and zooming over the bundled photos (cached)."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed when complete: VideoWriter finalises the frames
    # written so far when the block ends by an exception (Ctrl-C, SIGTERM), and a short clip at
    # ``path`` would be taken for the cached one by every later run.
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        _write_clip(partial, frames)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


# Raw elementary streams (demuxer names) that carry no times and play joined end to end: each pass
# starts with its parameter sets and a keyframe, as it did in the file
_ANNEX_B = ("h264", "hevc")


def looped_clip(src: Path, frames: int, folder: Path) -> tuple[Path, int, int]:
    """``src`` repeated (stream copy, no re-encode) until it holds at least ``frames`` video frames:
    (the clip to run, its frame count, how many times ``src`` was laid end to end). A clip that is
    long enough is returned as is. The copy is a Matroska file (it takes any codec) with the first
    video stream and the first audio stream, each pass shifted by the source's duration, so the
    timestamps keep increasing; it is made in ``folder`` and deleted with it. (FFmpeg's
    ``-stream_loop`` does the same; PyAV has no such option.) An AVI is repeated as an AVI: its
    packets carry decode times only (see ``pvt_deploy.io.sources``), which a Matroska copy would
    have taken for presentation times, putting an H.264 clip's B-frames out of order. A raw .h264 or
    .hevc stream, which has no times to shift, is repeated byte for byte (it ran its own frames only).
    The copy declares the source's frame rate: a Matroska muxer left to guess wrote 30000 fps for a clip of
    25 fps on a 1/90000 clock, and ``infer`` then counted 360 000 frames and called the copy truncated."""
    import av

    with av.open(str(src)) as probe:
        fmt = probe.format.name
        by_dts = fmt == "avi"
        video = probe.streams.video[0]
        rate = video.average_rate or video.guessed_rate
        start, end = math.inf, -math.inf  # over the packets of every stream copied, in seconds
        order: list[int] = []  # video pts (AVI: dts) in decode order
        count = 0  # video packets
        timed = True
        for packet in probe.demux(video, *probe.streams.audio[:1]):
            if not packet.size:
                continue
            when = packet.dts if by_dts else packet.pts
            timed = timed and when is not None
            if packet.stream.type == "video":
                count += 1
                if when is not None:
                    order.append(when)
            if when is not None and packet.time_base:
                start = min(start, float(when * packet.time_base))
                end = max(end, float((when + (packet.duration or 0)) * packet.time_base))
    if count >= frames or count == 0:
        return src, count, 1
    passes = -(-frames // count)
    if not timed and fmt in _ANNEX_B:  # a raw stream: passes joined byte for byte, as `cat` joins them
        dst = folder / f"{src.stem}_x{passes}{src.suffix}"
        with dst.open("wb") as out_file:
            for _ in range(passes):
                with src.open("rb") as in_file:
                    shutil.copyfileobj(in_file, out_file)
        return dst, count * passes, passes
    if not timed:
        print(f"warning: {src.name} has no timestamps to repeat it by; the memory run has its {count} frames only")
        return src, count, 1
    seconds = end - start  # one pass: from the earliest packet (an audio priming one may be < 0)
    dst = folder / f"{src.stem}_x{passes}.{'avi' if by_dts else 'mkv'}"
    # Every video dts is made anew (sources may leave reordered frames' dts unset, as Matroska does):
    # the i-th in decode order gets the i-th smallest pts, less the largest reorder lead, so each dts
    # is <= its pts and they rise strictly, within a pass and from one pass to the next.
    ranked = sorted(order)
    lead = max(r - p for r, p in zip(ranked, order, strict=True))
    with av.open(str(dst), "w", format="avi" if by_dts else "matroska") as out:
        outs: dict[int, Any] = {}
        for n in range(passes):
            with av.open(str(src)) as inp:  # opened again for each pass: not every demuxer can seek
                chosen = [inp.streams.video[0], *inp.streams.audio[:1]]
                outs = outs or {s.index: _copy_of(out, s, rate) for s in chosen}
                k = 0
                for packet in inp.demux(*chosen):
                    if not packet.size:
                        continue  # the demuxer's flush packets
                    shift = round(n * seconds / packet.time_base)
                    if by_dts and packet.dts is not None:  # decode times are the clock: pts follows them
                        packet.dts += shift
                        packet.pts = packet.dts
                    else:
                        packet.pts += shift
                        if packet.stream.type == "video":
                            packet.dts = ranked[k] - lead + shift
                            k += 1
                        elif packet.dts is not None:
                            packet.dts += shift
                    packet.stream = outs[packet.stream.index]
                    out.mux(packet)
    return dst, count * passes, passes


def _copy_of(out: Any, stream: Any, rate: Any) -> Any:
    """A stream of ``out`` that takes ``stream``'s packets as they are: its codec parameters copied
    whole (a video stream copied by codec name needs an encoder of that name, which an AV1 clip
    decoded by libdav1d has not), declaring ``rate`` for video."""
    copy = out.add_stream_from_template(stream, opaque=True)
    if stream.type == "video" and rate:
        copy.codec_context.framerate = rate
    return copy


def _write_clip(path: Path, frames: int) -> None:
    import cv2

    from pvt_deploy.io.sinks import VideoWriter

    cover = 1.6  # each photo is scaled to cover 1.6x the frame, then a window pans and zooms over it
    bases = []
    for _, im in common.bundled_photos():
        s = max(cover * WIDTH / im.shape[1], cover * HEIGHT / im.shape[0])
        bases.append(cv2.resize(im, (int(im.shape[1] * s + 0.5), int(im.shape[0] * s + 0.5)),
                                interpolation=cv2.INTER_CUBIC))
    per_photo = max(1, frames // len(bases))
    with VideoWriter(path, FPS, (WIDTH, HEIGHT)) as writer:
        for i in range(frames):
            base = bases[min(i // per_photo, len(bases) - 1)]
            t = (i % per_photo) / max(per_photo - 1, 1)
            zoom = 1.0 + 0.5 * t
            ww, wh = cover * WIDTH / zoom, cover * HEIGHT / zoom
            bh, bw = base.shape[:2]
            x0 = (bw - ww) * (0.2 + 0.6 * t)
            y0 = (bh - wh) * 0.5
            crop = base[int(y0): int(y0 + wh), int(x0): int(x0 + ww)]
            writer.write(cv2.resize(crop, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))


# --------------------------------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """The backend both sides of the comparison run: ``pvt-deploy infer`` and the model-only loop."""

    backend: str = "onnx"
    device: str = "cpu"
    precision: str | None = None

    def cli_args(self) -> list[str]:
        return ["--backend", self.backend, "--device", self.device,
                *(["--precision", self.precision] if self.precision else [])]

    def load(self, folder: Path) -> tuple[Any, dict[str, Any]]:
        from pvt_deploy.runtimes.loader import load_backend

        return load_backend(folder, backend=self.backend, device=self.device, precision=self.precision)

    def __str__(self) -> str:
        name = {"onnx": "ONNX Runtime", "torch": "PyTorch", "trt": "TensorRT"}.get(self.backend, self.backend)
        return f"{name} {self.device.upper() if self.device == 'cpu' else self.device}" + (
            f" {self.precision.upper()}" if self.precision else "")


def _cli(instant: bool = False) -> list[str]:
    """The command that runs ``pvt-deploy``: its own entry point (:func:`pvt_deploy.cli.main`), called by
    this script in its child role (:func:`cli_child`), which also says the CPU time of the run itself."""
    return [sys.executable, str(Path(__file__).resolve()), CLI_CHILD, "instant" if instant else "model"]


CLI_CHILD = "--cli-child"  # the script's first argument in its child role (not for users)
_CPU_LINE = re.compile(r"\[video_overhead\] run cpu ([\d.]+) s")


def cli_child(argv: list[str]) -> None:
    """``pvt-deploy argv[1:]``, as the console script runs it, printing at the end the CPU time (user +
    system, every thread of the process) from the first frame asked for to the last one written (start-up
    and model loading left out, which are most of a short fast run). ``argv[0]`` ``instant``: with an
    instant model, every inference call (``Predictor.infer`` and ``submit``, which the pipeline's inference
    stage makes) returning at once, for each image of the batch, the outputs the model gave for the first
    image of that input size (computed once, by the backend, and its CPU time left out of the run's);
    everything else runs as in a real run, on real outputs: decode, letterbox, NMS, drawing, encode, JSON.
    ``model``: the real run."""
    from pvt_deploy import cli
    from pvt_deploy.tasks import pipeline

    spent = 0.0  # CPU time of the instant model's real calls, left out of the run's
    if argv[0] == "instant":
        first: dict[tuple[int, ...], dict[str, np.ndarray]] = {}
        submit = pipeline.Predictor.submit

        def outputs(self: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            nonlocal spent
            batch = next(iter(feed.values()))
            key = tuple(batch.shape[1:])
            if key not in first:
                start = time.process_time()
                first[key] = {k: v[:1].copy() for k, v in submit(self, feed)().items()}
                spent += time.process_time() - start
            # views, not copies: a detector's raw outputs are ~15 MB a frame, which a copy would add to the stages
            return {k: np.broadcast_to(v, (batch.shape[0], *v.shape[1:])) for k, v in first[key].items()}

        def submit_instant(self: Any, feed: dict[str, np.ndarray], *, lane: bool = False) -> Any:
            ready = outputs(self, feed)
            return lambda: ready

        pipeline.Predictor.infer = outputs  # type: ignore[method-assign]
        pipeline.Predictor.submit = submit_instant  # type: ignore[method-assign]
    iterate = pipeline.Pipeline.__iter__

    def timed(self: Any) -> Any:
        start = time.process_time()
        try:
            yield from iterate(self)
        finally:
            print(f"[video_overhead] run cpu {time.process_time() - start - spent:.3f} s", flush=True)

    pipeline.Pipeline.__iter__ = timed  # type: ignore[method-assign]
    sys.argv = ["pvt-deploy", *argv[1:]]
    cli.main()


class RssSampler:
    """VmRSS of a child process every ``interval`` seconds (Linux /proc)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._stop.wait(self.interval):
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                return
            m = re.search(r"VmRSS:\s+(\d+) kB", text)
            if m:
                self.samples.append((time.perf_counter() - self._t0, int(m.group(1)) / 1024.0))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


_SUMMARY = re.compile(r"(\d+) frames? in ([\d.]+) s: ([\d.]+) FPS end to end(?:, model-only ([\d.]+) FPS)?")


def run_cli(clip: Path, folder: Path, imgsz: str, out: Path, extra: list[str], runtime: Runtime,
            instant: bool = False) -> dict[str, Any]:
    """``pvt-deploy infer`` as a user runs it (``instant``: with an instant model, :func:`cli_child`);
    returns its printed summary, wall time, the CPU time of the run (``cpu_s``: from its first frame to its
    last) and RSS samples."""
    cmd = [*_cli(instant), "infer", str(clip), "--model", str(folder), *runtime.cli_args(), "--imgsz", imgsz,
           "-o", str(out), *extra]
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    t0 = time.perf_counter()
    with common.others_cpu() as others:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            with RssSampler(proc.pid) as rss:
                output, _ = proc.communicate()
        except BaseException:  # Ctrl-C, SIGTERM: stop the child too, before its output folder is removed
            _stop(proc)
            raise
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pvt-deploy infer failed ({proc.returncode}):\n{output[-2000:]}")
    cpu = _CPU_LINE.search(output)
    return {"command": " ".join(cmd), **read_summary(output), "wall_s": round(wall, 2),
            "cpu_s": float(cpu.group(1)) if cpu else None, "others_cpu_share": others["share"], "rss": rss.samples}


# infer's line when decoding stopped before the end the file declares (a truncated or damaged clip),
# searched in the output with its whitespace made single spaces: rich may wrap the line
_ENDED_EARLY = re.compile(r"source ended early: (.*?); the frames read were processed")
# the source's warning when decoding reached the end past damaged packets (not an early end)
_LOST = re.compile(r"(\d+) of (\d+) frames could not be decoded")


def read_summary(output: str) -> dict[str, Any]:
    """What ``pvt-deploy infer`` printed at the end: frames, seconds, FPS, the stages' ms per frame, and
    ``source_error`` when the clip ended early (None: read to its end): a truncated --clip ran only its
    frames up to the damage, which the figures must say, as infer did; ``frames_lost`` (lost, of how
    many; None: none) when damaged packets in the middle were skipped, which infer's warning said."""
    m = _SUMMARY.search(output)
    if m is None:
        raise SystemExit(f"could not read the infer summary:\n{output[-2000:]}")
    stages = {}
    for line in output.splitlines():
        parts = line.replace("\u2502", " ").replace("|", " ").split()  # rich's table column separator
        if len(parts) == 3 and parts[0] in ("decode", "pre", "infer", "post", "draw", "encode/write"):
            stages[parts[0]] = {"ms_per_frame": float(parts[1])}
    flat = " ".join(output.split())
    early = _ENDED_EARLY.search(flat)
    lost = _LOST.search(flat)
    return {"frames": int(m.group(1)), "seconds": float(m.group(2)), "fps": float(m.group(3)),
            "pipeline_model_fps": float(m.group(4)) if m.group(4) else None, "stages": stages,
            "source_error": early.group(1) if early else None,
            "frames_lost": [int(lost.group(1)), int(lost.group(2))] if lost else None}


def _stop(proc: subprocess.Popen[str]) -> None:
    """End a child run: SIGTERM (its own clean-up runs), SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first_frame(clip: Path) -> np.ndarray:
    """The clip's first frame (RGB), as the CLI decodes it; a path that is not a video with a frame
    (a folder, a still image, an audio file, garbage) is the user's error, one line (exit 2)."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.io.sources import open_source

    if clip.is_dir():
        raise InputError(f"--clip {clip}: is a folder; give a video file")
    with open_source(str(clip)) as source:
        if source.kind != "video":
            raise InputError(f"--clip {clip}: not a video (read as {source.kind})")
        for frame in source:
            return frame.image
    raise InputError(f"--clip {clip}: no decodable frame")


def model_only_fps(folder: Path, imgsz: tuple[int, int], seconds: float, runtime: Runtime, batch: int = 1,
                   frame: np.ndarray | None = None) -> dict[str, Any]:
    """Inference calls alone, same backend settings as ``infer`` (``runtime``), same input (a
    1280x720 picture, or ``frame``), in batches of ``batch`` frames (FPS counts frames)."""
    import cv2

    from pvt_deploy.tasks.pipeline import Predictor

    backend, manifest = runtime.load(folder)
    try:
        predictor = Predictor(backend, manifest, imgsz=imgsz)
        if frame is None:
            frame = cv2.resize(common.bundled_photos()[0][1], (WIDTH, HEIGHT))
        feed, _ = predictor.preprocess([frame] * batch)
        for _ in range(3):
            backend.infer(feed)
        times: list[float] = []
        cpu0 = time.process_time()
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 10:
            t0 = time.perf_counter()
            backend.infer(feed)
            times.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0  # this process's threads: the runtime's included
    finally:
        backend.close()
    med = float(np.median(times)) / batch
    return {"fps": round(1.0 / med, 3), "median_ms": round(1000 * med, 2), "calls": len(times),
            "cpu_ms_per_frame": round(1000 * cpu / (len(times) * batch), 1), "input": list(feed["images"].shape)}


def cli_batch(folder: Path, infer_args: list[str], runtime: Runtime) -> int:
    """The batch ``pvt-deploy infer`` runs a video file in: ``--batch N`` when given, else the default."""
    given = batch_arg(infer_args)
    if given is not None:
        return given
    from pvt_deploy.tasks.pipeline import Predictor

    backend, manifest = runtime.load(folder)
    try:
        return Predictor(backend, manifest).auto_batch("video")
    finally:
        backend.close()


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def rss_summary(samples: list[tuple[float, float]], frames: int, fps: float | None = None,
                warmup: float = 0.1) -> dict[str, Any]:
    """RSS at each tenth of the run, growth after warm-up, and the slope in MB per 1000 frames
    (``fps``: the run's processing rate, which turns seconds into frames; default frames over the
    whole sampled time, start-up included).

    The samples the child's exit takes (RSS falling as it frees its buffers and the interpreter
    shuts down: 847 -> 770 -> 729 MiB at the end of a 1080p run) are left out: they pulled the slope
    down, towards "no leak", which is what this part is meant to find."""
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    end = len(mb)
    while end > 1 and mb[end - 1] < mb[end - 2] and t[end - 1] >= t[-1] * 0.95:  # the fall at exit
        end -= 1
    t, mb = t[:end], mb[:end]
    peak = round(float(mb.max()), 1) if len(mb) else None
    if len(mb) < 10 or frames < 500:
        return {"samples": len(samples), "frames": frames, "peak_mb": peak,
                "note": "run too short to judge (fewer than 500 frames: warm-up is most of it)"}
    deciles = [round(float(np.median(mb[(t >= t[-1] * k / 10) & (t <= t[-1] * (k + 1) / 10)])), 1)
               for k in range(10)]
    after = t >= t[-1] * warmup
    rate = fps if fps else frames / t[-1]
    slope = float(np.polyfit(t[after] * rate / 1000.0, mb[after], 1)[0]) if after.sum() > 2 else 0.0
    return {"samples": len(samples), "samples_at_exit_left_out": len(samples) - end, "peak_mb": peak,
            "deciles_mb": deciles, "growth_after_warmup_mb": round(deciles[-1] - deciles[1], 1),
            "slope_mb_per_1000_frames": round(slope, 2)}


FPS_MIN_FRAMES = 100  # the fps part's clip: fewer frames and filling the pipeline weighs on the ratio


def short_run_note(frames: int) -> str | None:
    """What to say of an fps run of ``frames`` frames, too few for its ratio to tell (None: enough).
    The first frame goes through decode, inference, drawing and encoding one stage after the other
    before the stages overlap, and the last ones drain the same way: a one-frame clip measured 0.69
    "against the target", a figure of start-up, not of the pipeline."""
    if frames >= FPS_MIN_FRAMES:
        return None
    return (f"too short to judge: {count_of(frames, 'frame')} (fewer than {FPS_MIN_FRAMES}: filling and "
            "draining the pipeline weigh on the ratio)")


def ended_early(run: dict[str, Any]) -> None:
    """Say so where ``run``'s clip ended before the end its file declares, or where frames of it could not
    be decoded (infer said so; the figures are of the frames decoded)."""
    if run["source_error"]:
        print(f"  the clip ended early ({run['source_error']}): the figures are of the "
              f"{count_of(run['frames'], 'frame')} decoded before that")
    if run.get("frames_lost"):
        lost, of = run["frames_lost"]
        print(f"  {lost} of the clip's {of} frames could not be decoded (damaged file?): the figures are of the "
              f"{count_of(run['frames'], 'frame')} decoded")


UNSTEADY = 0.10  # model-only FPS before and after the CLI run further apart than this, of the higher


def unsteady_note(pairs: dict[str, tuple[float, float]], others: float | None = None) -> str | None:
    """What to say of an fps run whose model-only FPS (label -> (before, after) the CLI run) moved by
    more than :data:`UNSTEADY`, or during whose CLI run other processes took more than :data:`UNSTEADY` of the
    machine's CPU (``others``: :func:`common.others_cpu`'s share); None: steady. The ratios divide by the mean of
    the two model-only runs, so a burst of load from another process during one of them moves the ratio as much
    as the pipeline does: on the shared 2-core Xeon one run measured 6.68 FPS before and 2.25 after and printed
    a ratio of 1.481. Load during the CLI run alone leaves the model-only FPS as they were and lowers the
    ratio: 0.868 there with a helper's tests beside it, 1.021 on the quiet machine next. The target is 0.9: a
    spread of more than 10 % can decide it either way."""
    moved = [f"{label} {a:.2f} -> {b:.2f}" for label, (a, b) in pairs.items() if abs(a - b) > UNSTEADY * max(a, b)]
    why = []
    if moved:
        why.append(f"the model-only FPS moved by more than {UNSTEADY:.0%} from before to after the CLI run "
                   f"({', '.join(moved)})")
    if others is not None and others > UNSTEADY:
        why.append(f"other processes used {others:.0%} of the machine's CPU while the CLI ran")
    if not why:
        return None
    return (f"unsteady: {' and '.join(why)}: something else took the cores, and the ratios above measure that, not "
            "the pipeline; run again on a quiet machine")


def batch_arg(infer_args: list[str]) -> int | None:
    """``--batch N`` / ``--batch=N`` in the extra infer arguments (None: not given); ``ValueError`` with a
    message for the user when N is not a positive integer."""
    value: str | None = None
    for i, arg in enumerate(infer_args):
        if arg == "--batch":
            if i + 1 >= len(infer_args):
                raise ValueError("--batch needs a value")
            value = infer_args[i + 1]
        elif arg.startswith("--batch="):
            value = arg.split("=", 1)[1]
    if value is None:
        return None
    try:
        batch = int(value)
    except ValueError:
        raise ValueError(f"--batch {value!r}: expected a positive integer") from None
    if batch < 1:
        raise ValueError(f"--batch {value!r}: expected a positive integer")
    return batch


def _join_infer_args(argv: list[str]) -> list[str]:
    """``--infer-args '--batch 4'`` -> ``--infer-args=--batch 4``: argparse would take a value that starts
    with ``--`` for an option of its own and refuse it ("expected one argument")."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--infer-args" and i + 1 < len(argv):
            out.append(f"--infer-args={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def cpu_line(run: dict[str, Any], alone: dict[str, Any], model_cpu: float, batch: int) -> str:
    """CPU time per frame of the CLI run, of the instant-model run and of the model-only loop (in the
    CLI's batch), and what the CLI run spent beyond the other two: the model and the stages slowing
    each other down where they share cores (caches, switches), or running on more of them."""
    per = {k: 1000 * r["cpu_s"] / r["frames"] for k, r in (("cli", run), ("alone", alone))
           if r["frames"] and r["cpu_s"] is not None}
    if len(per) < 2:
        return "  CPU ms/frame:     not measured (no frames)"
    rest = per["cli"] - per["alone"] - model_cpu
    said = "beyond the two apart: they slow each other down on shared cores" if rest >= 0 else "less than the two apart"
    return (f"  CPU ms/frame:     pvt-deploy infer {per['cli']:.1f} = model only {model_cpu:.1f} (batch {batch}) "
            f"+ pipeline alone {per['alone']:.1f} {'+' if rest >= 0 else '-'} {abs(rest):.1f} ({said})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CLI_CHILD]:
        cli_child(argv[1:])
        return 0
    ap = common.ArgumentParser(description=__doc__)
    ap.add_argument("--part", choices=("fps", "memory", "both"), default="both")
    ap.add_argument("--model", default="pvt_v2_b0", help="zoo model (synthetic weights) for the fps part")
    ap.add_argument("--imgsz", default="640", help="inference size for the fps part (H or H,W)")
    ap.add_argument("--clip", type=Path, default=None,
                    help="your own video for both parts (default: a 1280x720 clip made from the bundled photos)")
    ap.add_argument("--frames", type=common.int_at_least(1), default=None,
                    help="length of the clip made for the fps part (default 150; not with --clip: its whole clip runs)")
    ap.add_argument("--memory-model", default="pvt_v2_b0")
    ap.add_argument("--memory-imgsz", default="128")
    ap.add_argument("--memory-frames", type=common.int_at_least(1), default=3000,
                    help="frames of the memory run (a shorter --clip is repeated, stream-copied, to reach it)")
    ap.add_argument("--infer-args", default="",
                    help="extra arguments for pvt-deploy infer, one string split like a shell does, "
                         "e.g. --infer-args '--batch 4 --no-save-json'")
    ap.add_argument("--backend", choices=("onnx", "torch", "trt"), default="onnx",
                    help="backend of both the CLI run and the model-only loop (default onnx)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                    help="precision of both runs (default: the artifact's, fp32)")
    ap.add_argument("--work", type=Path, default=common.DEFAULT_WORK)
    ap.add_argument("--keep", action="store_true", help="keep the annotated outputs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(_join_infer_args(argv))
    if args.clip is not None and not args.clip.is_file():
        ap.error(f"--clip {args.clip}: " + ("is a folder; give a video file" if args.clip.is_dir() else "no such file"))
    if args.clip is not None and args.frames is not None:  # it was ignored: a long clip ran whole, unasked
        ap.error("--frames is the length of the clip the script makes; with --clip the whole clip runs "
                 "(cut it to length first)")
    args.frames = args.frames or 150
    fps_part, memory_part = args.part in ("fps", "both"), args.part in ("memory", "both")
    try:
        size = common.imgsz_pair(args.imgsz)
    except ValueError as e:
        ap.error(f"--imgsz: {e}")
    try:
        msize = common.imgsz_pair(args.memory_imgsz)
    except ValueError as e:
        ap.error(f"--memory-imgsz: {e}")
    try:
        infer_args = shlex.split(args.infer_args)
        batch_arg(infer_args)
    except ValueError as e:
        ap.error(f"--infer-args: {e}")
    common.check_output_file(ap, "--json", args.json)
    common.check_work(ap, args.work)
    if args.backend == "torch" and args.precision == "int8":
        ap.error("--precision int8 runs with --backend onnx or trt; PyTorch eager runs fp32 or fp16")
    runtime = Runtime(args.backend, args.device, args.precision)
    common.check_models(ap, "--model", [args.model] if fps_part else [])
    common.check_models(ap, "--memory-model", [args.memory_model] if memory_part else [])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    info = common.machine()
    print(common.header_lines(info))
    report: dict[str, Any] = {"machine": info, "command": " ".join(sys.argv), "runtime": str(runtime)}
    image = first_frame(args.clip) if args.clip else None  # for both parts: a bad clip fails before any work
    out_root = Path(tempfile.mkdtemp(prefix="pvt-video-"))
    try:
        if fps_part:
            clip = args.clip or make_clip(args.work / "clips" / f"clip_{WIDTH}x{HEIGHT}_{args.frames}.mp4", args.frames)
            folder = common.artifact(args.model, args.work, imgsz=size, half=args.precision == "fp16",
                                     int8=args.precision == "int8")
            warm = model_only_fps(folder, size, 3.0, runtime, frame=image)  # also builds the CPU graph cache before timing
            batch = cli_batch(folder, infer_args, runtime)
            before = model_only_fps(folder, size, 15.0 if batch == 1 else 8.0, runtime, frame=image)
            before_b = model_only_fps(folder, size, 8.0, runtime, batch, frame=image) if batch > 1 else before
            run = run_cli(clip, folder, args.imgsz, out_root / "fps", infer_args, runtime)
            after_b = model_only_fps(folder, size, 8.0, runtime, batch, frame=image) if batch > 1 else None
            after = model_only_fps(folder, size, 15.0 if batch == 1 else 8.0, runtime, frame=image)
            after_b = after_b or after
            alone = run_cli(clip, folder, args.imgsz, out_root / "alone", infer_args, runtime, instant=True)
            model_cpu = (before_b["cpu_ms_per_frame"] + after_b["cpu_ms_per_frame"]) / 2
            model_fps = (before["fps"] + after["fps"]) / 2
            model_fps_b = (before_b["fps"] + after_b["fps"]) / 2
            ratio = run["fps"] / model_fps
            report["fps"] = {"clip": str(clip), "model": args.model, "imgsz": args.imgsz, "warmup": warm,
                             "model_only_before": before, "model_only_after": after, "model_only_fps": model_fps,
                             "cli_batch": batch, "model_only_fps_cli_batch": model_fps_b,
                             "cli": {k: v for k, v in run.items() if k != "rss"}, "ratio": round(ratio, 3),
                             "ratio_same_batch": round(run["fps"] / model_fps_b, 3),
                             "pipeline_alone": {k: v for k, v in alone.items() if k != "rss"},
                             "model_only_cpu_ms_per_frame_cli_batch": round(model_cpu, 1),
                             "load_average": common.load_average()}
            shape = image.shape if image is not None else (HEIGHT, WIDTH)
            print(f"\n{clip.name}: {shape[1]}x{shape[0]}, {count_of(run['frames'], 'frame')}, {args.model} {runtime} at --imgsz {args.imgsz} "
                  f"(input {'x'.join(str(d) for d in before['input'])})")
            print(f"  model only        {before['fps']:.2f} FPS before, {after['fps']:.2f} FPS after "
                  f"({before['median_ms']:.1f} / {after['median_ms']:.1f} ms per frame), batch 1")
            if batch > 1:
                print(f"  model only        {before_b['fps']:.2f} FPS before, {after_b['fps']:.2f} FPS after "
                      f"in batches of {batch} (the CLI's batch)")
            print(f"  pvt-deploy infer  {run['fps']:.2f} FPS end to end "
                  f"(decode+pre+infer+post+draw+encode+jsonl), batch {batch}")
            print(f"  ratio             {ratio:.3f} to batch-1 model-only (target >= 0.9)"
                  + (f", {run['fps'] / model_fps_b:.3f} to model-only in the CLI's batch"
                     if batch > 1 else "")
                  + "\n  stages ms/frame:  "
                  + ", ".join(f"{k} {v['ms_per_frame']:.1f}" for k, v in run["stages"].items()))
            print(f"  pipeline alone    {alone['fps']:.2f} FPS end to end with an instant model (each inference "
                  "call answered with cached outputs): the most these stages allow on this host")
            print(cpu_line(run, alone, model_cpu, batch))
            ended_early(run)
            if note := short_run_note(run["frames"]):
                report["fps"]["note"] = note
                print(f"  {note}")
            steady = {"batch 1": (before["fps"], after["fps"])}
            if batch > 1:
                steady[f"batch {batch}"] = (before_b["fps"], after_b["fps"])
            if unsteady := unsteady_note(steady, run.get("others_cpu_share")):
                report["fps"]["unsteady"] = unsteady
                print(f"  {unsteady} (load average now {report['fps']['load_average']})")
        if memory_part:
            clip = args.clip or make_clip(args.work / "clips" / f"clip_{WIDTH}x{HEIGHT}_{args.memory_frames}.mp4",
                                          args.memory_frames)
            if args.clip:  # a short clip of one's own is laid end to end up to --memory-frames
                clip, _, passes = looped_clip(args.clip, args.memory_frames, out_root)
                if passes > 1:
                    print(f"\nmemory: {args.clip.name} repeated {passes} times (stream copy) to reach "
                          f"--memory-frames {args.memory_frames}")
            folder = common.artifact(args.memory_model, args.work, imgsz=msize, half=args.precision == "fp16",
                                     int8=args.precision == "int8")
            model_only_fps(folder, msize, 1.0, runtime)  # build the CPU graph cache outside the measured run
            run = run_cli(clip, folder, args.memory_imgsz, out_root / "memory", infer_args, runtime)
            summary = rss_summary(run["rss"], run["frames"], run.get("fps"))
            report["memory"] = {"clip": str(clip), "model": args.memory_model, "imgsz": args.memory_imgsz,
                                "cli": {k: v for k, v in run.items() if k != "rss"}, "rss": summary,
                                "rss_samples": run["rss"]}
            print(f"\nmemory: {run['frames']} frames of {clip.name} in {run['seconds']:.0f} s ({run['fps']:.1f} FPS), "
                  f"{args.memory_model} at --imgsz {args.memory_imgsz}")
            ended_early(run)
            if summary.get("note"):
                print(f"  {summary['note']}; peak {summary['peak_mb']} MiB")
            else:
                print(f"  RSS by tenth of the run (MiB): {summary['deciles_mb']}")
                print(f"  peak {summary['peak_mb']} MiB; growth after warm-up {summary['growth_after_warmup_mb']} MiB; "
                      f"slope {summary['slope_mb_per_1000_frames']} MiB per 1000 frames")
    finally:
        if args.keep:
            print(f"outputs kept in {out_root}")
        else:
            shutil.rmtree(out_root, ignore_errors=True)
    if args.json:
        common.write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))

