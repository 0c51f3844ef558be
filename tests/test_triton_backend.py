"""The ``triton://`` backend against a real Triton server on loopback.

The server is PyTriton's bundled ``tritonserver`` serving small numpy functions that follow the graph
contract (``images`` in; ``logits`` or ``num_dets``/``det_scores`` out). PyTriton 0.7 needs numpy<2 and
so lives in its own interpreter, not in the project venv: point ``PVT_TRITON_PYTHON`` at it, or create
``.venv-pytriton`` in the repository root::

    python -m venv .venv-pytriton && .venv-pytriton/bin/pip install nvidia-pytriton

Without it the server tests skip with the reason; ``PVT_TRITON_REQUIRED=1`` turns that skip into a
failure (for CI, where the server is expected to start). The manifest served to the client is the one
``export_triton`` embedded in its config.pbtxt, so the whole export -> serve -> load chain is exercised.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pvt_deploy.errors import BackendUnavailableError, InputError, ShapeError
from pvt_deploy.runtimes.triton import TritonBackend, is_triton_url, load_triton, parse_triton_url
from pvt_deploy.utils import onnx_model

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0
NUM_CLASSES = 4
WEIGHTS = (np.arange(3 * NUM_CLASSES, dtype=np.float32).reshape(3, NUM_CLASSES) / 10).tolist()

# Runs in the PyTriton interpreter. The stub process of Triton's Python backend links libpython by
# soname; pointing LD_LIBRARY_PATH at this interpreter's own libdir keeps it from picking up a system
# libpython of another patch release (which fails with "'_thread.RLock' object has no attribute ...").
SERVER_SCRIPT = r'''
import json, os, sys, sysconfig
libdir = sysconfig.get_config_var("LIBDIR")
if libdir:
    os.environ["LD_LIBRARY_PATH"] = libdir + os.pathsep + os.environ.get("LD_LIBRARY_PATH", "")
import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.models import model as pytriton_model
from pytriton.triton import Triton, TritonConfig

spec = json.loads(sys.argv[1])
manifests = {m["name"]: m["manifest"] for m in spec["models"] if m.get("manifest")}

# PyTriton writes the model config itself; add the pvt-deploy manifest parameter the way
# `pvt-deploy export --format triton` does in config.pbtxt.
original = pytriton_model.Model._get_triton_model_config
def with_manifest(self):
    config = original(self)
    if self.model_name in manifests:
        config.backend_parameters["pvt_deploy_manifest"] = manifests[self.model_name]
    return config
pytriton_model.Model._get_triton_model_config = with_manifest

W = np.asarray(spec["weights"], dtype=np.float32)

@batch
def classify(images):
    return {"logits": (images.mean(axis=(2, 3)) @ W).astype(np.float32)}

@batch
def detect(images):
    scores = images.max(axis=(2, 3)).astype(np.float32)
    return {"num_dets": (scores > 128).sum(axis=1, keepdims=True).astype(np.int32), "det_scores": scores}

images = [Tensor(name="images", dtype=np.float32, shape=(3, -1, -1))]
config = TritonConfig(http_address="127.0.0.1", http_port=spec["http"], grpc_address="127.0.0.1",
                      grpc_port=spec["grpc"], metrics_port=spec["metrics"])
with Triton(config=config) as triton:
    for m in spec["models"]:
        if m["kind"] == "classify":
            outputs = [Tensor(name="logits", dtype=np.float32, shape=(W.shape[1],))]
            fn = classify
        else:
            outputs = [Tensor(name="num_dets", dtype=np.int32, shape=(1,)),
                       Tensor(name="det_scores", dtype=np.float32, shape=(3,))]
            fn = detect
        triton.bind(model_name=m["name"], infer_func=fn, inputs=images, outputs=outputs,
                    config=ModelConfig(max_batch_size=spec["max_batch"]))
    triton.run()
    print("PVT_READY", flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
'''


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("PVT_TRITON_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def pytriton_python() -> tuple[str | None, str]:
    """An interpreter that has PyTriton with a numpy it works with, or (None, why not)."""
    candidates = [os.environ.get("PVT_TRITON_PYTHON"), str(REPO / ".venv-pytriton" / "bin" / "python"),
                  sys.executable]
    tried = []
    for python in candidates:
        if not python or not Path(python).exists():
            continue
        probe = subprocess.run(
            [python, "-c", "import pytriton, numpy; print(numpy.__version__)"],
            capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            tried.append(f"{python}: no pytriton")
            continue
        if int(probe.stdout.strip().split(".")[0]) >= 2:
            tried.append(f"{python}: numpy {probe.stdout.strip()} (PyTriton 0.7 returns empty outputs with numpy 2)")
            continue
        return python, ""
    return None, ("PyTriton not available (" + "; ".join(tried or ["nothing found"]) + "); set PVT_TRITON_PYTHON "
                  "or: python -m venv .venv-pytriton && .venv-pytriton/bin/pip install nvidia-pytriton")


def free_ports(n: int) -> list[int]:
    """``n`` ports free on loopback now, for a server that must be told its ports (tritonserver cannot bind
    port 0 and say which it got, and PyTriton checks the server's readiness on the ports it was given).
    Another process may take one before the server binds it: :func:`serving` then starts it again."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _taken(port: int) -> bool:
    """Whether something holds ``port`` on loopback (it cannot be bound)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that nothing listens on, for as long as the block runs: bound here and never
    listened on, so a connection to it is refused and no other process can take it meanwhile (a port
    merely found free could be a server's by the time it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def embedded_manifest(tmp: Path, **triton_options: Any) -> str:
    """The manifest JSON that export_triton (with ``triton_options``) puts in config.pbtxt, from a tiny
    classify artifact."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from pvt_deploy.export.triton import MANIFEST_PARAMETER, export_triton
    from pvt_deploy.manifest import file_entry, write_manifest

    art = tmp / "art"
    art.mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["m"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["m", "W"], ["logits"])], "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializer=[onnx.numpy_helper.from_array(np.asarray(WEIGHTS, dtype=np.float32), "W")])
    onnx.save(onnx_model(graph), art / "model.onnx")
    write_manifest(art, {
        "model": "pvt_tiny", "task": "classify", "classes": [f"c{i}" for i in range(NUM_CLASSES)],
        "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", NUM_CLASSES]}],
        "preprocess": {"resize": "resize_crop", "imgsz": [64, 64], "normalize_in_graph": True},
        "postprocess": {}, "dynamic": {"batch": [1, 8], "height": [32, 256], "width": [32, 256]}, "files": {"model.onnx": file_entry(art / "model.onnx", "fp32")},
    })
    pytest.importorskip("tritonclient.grpc")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    model_dir = export_triton(art, tmp / "repo", **{"max_batch": 4, **triton_options})
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    return str(config.parameters[MANIFEST_PARAMETER].string_value)


class Server:
    def __init__(self, http: int, grpc: int, manifest: str, log: Path) -> None:
        self.http, self.grpc, self.manifest, self.log = http, grpc, manifest, log
        self.start_s = 0.0


@contextlib.contextmanager
def serving(tmp: Path, models: list[dict[str, Any]]) -> Iterator[tuple[Server, subprocess.Popen[str]]]:
    """A PyTriton server on loopback serving ``models`` (see SERVER_SCRIPT), and its process."""
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] not installed")
    python, why = pytriton_python()
    if python is None:
        _skip_or_fail(why)
    manifest = embedded_manifest(tmp)
    manifests = {True: manifest}
    if any(m.get("manifest") == "trt_fp16_accelerator" for m in models):
        manifests["trt_fp16_accelerator"] = embedded_manifest(tmp / "accelerated", trt_fp16_accelerator=True)
    script = tmp / "serve.py"
    script.write_text(SERVER_SCRIPT)
    log = tmp / "server.log"
    t0 = time.monotonic()
    for _ in range(3):
        http, grpc, metrics = free_ports(3)
        spec = {"http": http, "grpc": grpc, "metrics": metrics, "max_batch": 4, "weights": WEIGHTS,
                "models": [dict(m, manifest=manifests[m["manifest"]]) if m.get("manifest") in manifests else m
                           for m in models]}
        proc = _start_server(str(python), script, spec, log)
        if proc is not None or not any(_taken(port) for port in (http, grpc, metrics)):
            break  # started, or failed for another reason than a port taken since it was found free
    if proc is None:
        tail = " | ".join(log.read_text().strip().splitlines()[-3:])
        _skip_or_fail(f"the PyTriton server did not start within {START_TIMEOUT_S:.0f} s: {tail}")
    assert proc is not None
    made = _outside_files(proc.pid)
    try:
        srv = Server(http, grpc, manifest, log)
        srv.start_s = time.monotonic() - t0
        print(f"\nTriton (PyTriton) server ready in {srv.start_s:.1f} s", file=sys.stderr)
        yield srv, proc
    finally:
        made |= _outside_files(proc.pid)
        killed = _stop_server(proc)
        left = sorted(path for path in made if path.exists())
        for path in left:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    if left and not killed:
        pytest.fail(f"the Triton server left {', '.join(map(str, left))} (removed now) and a /tmp/python_env_* that "
                    "nothing names: a server killed does not clean up; stop it by leaving serving(), or cut its "
                    "connections (Relay)")


def _start_server(python: str, script: Path, spec: dict[str, Any], log: Path) -> subprocess.Popen[str] | None:
    """Start SERVER_SCRIPT with ``spec``, its output in ``log``: its process once the server is ready, or
    None when it ended or did not get ready in time (it is stopped then)."""
    with open(log, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen([python, str(script), json.dumps(spec)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log_file, text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if "PVT_READY" in line:
            return proc
    _stop_server(proc)
    return None


def _stop_server(proc: subprocess.Popen[str]) -> bool:
    """End the server: it stops when its stdin closes; killed (its whole session) if it does not, which
    this says (True)."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session: the server and its stub processes
        proc.wait(timeout=10)
        return True
    return False


def _outside_files(session: int) -> set[Path]:
    """What the server's processes (the session ``session``) made outside its folder, at fixed places, and
    remove as they stop: PyTriton's workspace (~/.cache/pytriton/workspace_*, 22 MB with its copy of
    tritonserver, whose binary the server runs), the model folders Triton makes under /tmp for PyTriton's
    models (/tmp/folderXXXXXX, whose model.py is a stub process's first argument) and the shared memory they
    map from /dev/shm (the Python backend's regions, 4 MB each, and PyTriton's tensors). A server killed
    leaves them for good, and beside them its Python backend's empty /tmp/python_env_XXXXXX, which no
    process names. (Triton makes both /tmp folders there whatever TMPDIR says.)"""
    found: set[Path] = set()
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getsid(pid) != session:
                continue
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:  # ended meanwhile
            continue
        found |= {Path(a).parents[1] for a in args[1:2] if a.startswith("/tmp/folder") and a.endswith("/model.py")}
        found |= {Path(a).parents[2] for a in args[:1] if a.endswith("/tritonserver/bin/tritonserver")
                  and Path(a).parents[2].name.startswith("workspace_")}
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
                found.add(Path(fields[5]))
    return found


class Relay:
    """A loopback TCP relay to a server's ``port``, to be cut (:meth:`cut`) as a server dies: each connection
    through it closes, and the relay's port refuses new ones. The client sees what a killed server shows it,
    while the real server keeps running and is stopped as usual (a killed tritonserver leaves its folders
    under /tmp and its shared memory)."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                return  # cut (or the server is gone)
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in [self._listener, *self._open]:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the threads in accept() and recv() (Linux)
                sock.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    models = [{"name": "pvt_tiny", "kind": "classify", "manifest": True},
              {"name": "pvt_det", "kind": "detect", "manifest": json.dumps({"task": "detect"})},
              {"name": "plain", "kind": "classify"},
              {"name": "pvt_accelerated", "kind": "classify", "manifest": "trt_fp16_accelerator"}]
    with serving(tmp_path_factory.mktemp("triton"), models) as (srv, _):
        yield srv


def url(server: Server, protocol: str, model: str) -> str:
    return (f"triton://127.0.0.1:{server.http}/{model}" if protocol == "http"
            else f"triton+grpc://127.0.0.1:{server.grpc}/{model}")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_end_to_end(server: Server, protocol: str) -> None:
    backend, manifest = load_triton(url(server, protocol, "pvt_tiny"))
    with backend:
        # The manifest is exactly what export_triton embedded in config.pbtxt.
        assert manifest == json.loads(server.manifest)
        assert manifest["task"] == "classify" and manifest["triton"]["max_batch_size"] == 4
        assert [(s.name, s.dtype, s.shape) for s in backend.inputs] == [
            ("images", "float32", ("batch", 3, "height", "width"))]
        assert [(s.name, s.dtype, s.shape) for s in backend.outputs] == [("logits", "float32", ("batch", NUM_CLASSES))]
        assert backend.info.name == "triton" and backend.info.details["max_batch_size"] == 4
        assert backend.info.details["protocol"] == protocol

        rng = np.random.default_rng(0)
        w = np.asarray(WEIGHTS, dtype=np.float32)
        for n in (1, 4, 6, 9):  # 6 and 9 exceed max_batch_size 4: sent in chunks, stitched in order
            images = rng.uniform(0, 255, size=(n, 3, 32, 64)).astype(np.float32)
            out = backend.infer({"images": images})
            assert set(out) == {"logits"} and out["logits"].shape == (n, NUM_CLASSES)
            np.testing.assert_allclose(out["logits"], images.mean(axis=(2, 3)) @ w, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_accelerators_tensorrt_profile_bounds_the_input_sizes(server: Server, protocol: str) -> None:
    """A model exported with the onnxruntime backend's TensorRT accelerator runs in the profile written to
    its config (up to imgsz 64 here): the client reads it from the embedded manifest and refuses a larger
    input in one line before sending it, as the local TensorRT backends do, rather than the server's
    TensorRT EP failing on it. A model without one has no profile."""
    from pvt_deploy.tasks.pipeline import Predictor

    backend, manifest = load_triton(url(server, protocol, "pvt_accelerated"))
    with backend:
        assert backend.profiles == [{"input": "images", "min": [1, 3, 32, 32], "opt": [1, 3, 64, 64],
                                     "max": [4, 3, 64, 64]}]
        letterbox = {**manifest, "preprocess": {**manifest["preprocess"], "resize": "letterbox"}}
        feed, _ = Predictor(backend, letterbox).preprocess([np.zeros((48, 64, 3), np.uint8)])
        assert backend.infer(feed)["logits"].shape == (1, NUM_CLASSES)
        with pytest.raises(InputError, match=r"input height 128 is outside the graph's range \[32, 64\]"):
            Predictor(backend, letterbox, imgsz=128).preprocess([np.zeros((128, 128, 3), np.uint8)])
    backend, _ = load_triton(url(server, protocol, "pvt_tiny"))
    with backend:
        assert backend.profiles == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here (Windows)")
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_model_loaded_before_a_fork_runs_in_the_child(server: Server, protocol: str) -> None:
    """A server's master loads the model and forks its workers (gunicorn --preload): over HTTP the
    worker's first call waited for ever on the master's call thread, which the worker does not have."""
    backend, _ = load_triton(url(server, protocol, "pvt_tiny"))
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 32, 64)).astype(np.float32)
    reference = backend.infer({"images": images})["logits"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave at once (no test teardown in a forked copy of pytest)
        try:
            same = np.allclose(backend.infer({"images": images})["logits"], reference, atol=1e-5)
            backend.close()
            os.write(write, f"predicted {same}, closed".encode())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 30
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:  # hung: fail the test instead of holding it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.05)
    with os.fdopen(read) as pipe:
        assert pipe.read() == "predicted True, closed"
    with backend:  # the parent's backend is untouched
        np.testing.assert_allclose(backend.infer({"images": images})["logits"], reference, atol=1e-5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_int32_outputs(server: Server, protocol: str) -> None:
    backend, manifest = load_triton(url(server, protocol, "pvt_det"))
    with backend:
        assert manifest == {"task": "detect"}
        assert {s.name: s.dtype for s in backend.outputs} == {"num_dets": "int32", "det_scores": "float32"}
        images = np.zeros((2, 3, 8, 8), dtype=np.float32)
        images[0, :2] = 200.0
        out = backend.infer({"images": images})
        assert out["num_dets"].dtype == np.int32 and out["num_dets"].tolist() == [[2], [0]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unknown_model_is_an_input_error(server: Server, protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown model fails at the first answer that says so, not after waiting for it to load: the
    backend waits (between readiness checks, between tries) in none of its calls."""
    from pvt_deploy.runtimes import triton

    waits: list[float] = []

    class Clock:  # the backend's ``time``, its waits recorded
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(triton, "time", Clock())
    with pytest.raises(InputError, match="no model 'pvt_nope'"):
        load_triton(url(server, protocol, "pvt_nope"))
    assert waits == [], "an unknown model must fail at once, not wait for it to load"


def test_manifest_missing_or_given(server: Server, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no pvt-deploy manifest"):
        load_triton(url(server, "http", "plain"))
    (tmp_path / "manifest.json").write_text(json.dumps({"task": "classify", "model": "plain"}))
    backend, manifest = load_triton(url(server, "http", "plain"), manifest=tmp_path / "manifest.json")
    with backend:
        assert manifest["model"] == "plain"
        assert backend.infer({"images": np.ones((1, 3, 4, 4), np.float32)})["logits"].shape == (1, NUM_CLASSES)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_feeds(server: Server, protocol: str) -> None:
    backend, _ = load_triton(url(server, protocol, "pvt_tiny"))
    with backend:
        with pytest.raises(ShapeError, match="rank 4"):
            backend.infer({"images": np.zeros((3, 8, 8), np.float32)})
        with pytest.raises(InputError, match="images"):
            backend.infer({"pixels": np.zeros((1, 3, 8, 8), np.float32)})
        with pytest.raises(ShapeError, match="needs shape"):  # fixed dims are checked before sending
            backend.infer({"images": np.zeros((1, 4, 8, 8), np.float32)})
        # float64 is cast (same kind); the server still gets float32.
        assert backend.infer({"images": np.zeros((1, 3, 8, 8))})["logits"].dtype == np.float32


def grey_clip(path: Path, frames: int) -> Path:
    """An H.264 clip whose frame i is a flat grey of level i."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="rgb24")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_video_runs_on_triton_through_the_threaded_pipeline(server: Server, protocol: str, tmp_path: Path) -> None:
    """The pipeline runs inference in a thread of its own. tritonclient's HTTP client (gevent) failed
    there on its first call with a raw ``greenlet.error: Cannot switch to a different thread``, so
    ``pvt-deploy infer video.mp4 --model triton://...`` never ran a frame; each thread now has its
    own client."""
    from pvt_deploy import Model

    clip = grey_clip(tmp_path / "grey.mp4", 12)
    w = np.asarray(WEIGHTS, dtype=np.float32)
    with Model(url(server, protocol, "pvt_tiny")) as model:
        results = list(model.predict(str(clip), stream=True, threaded=True))
    assert len(results) == 12
    for r in results:
        logits = r.orig_img.reshape(-1, 3).mean(0) @ w  # a flat frame: the graph's mean is the pixel's
        probs = np.exp(logits - logits.max())
        np.testing.assert_allclose(r.probs.data, probs / probs.sum(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_server_that_dies_mid_run_ends_it_with_one_line(tmp_path: Path, protocol: str) -> None:
    """The server dies while a video runs (its connections close, new ones are refused: a Relay cut): the
    run ends with the one-line "not reachable" error after its retries (HTTP raised geventhttpclient's
    HTTPConnectionClosed, a traceback), and the annotated video keeps the frames written before."""
    from pvt_deploy import Model

    clip = grey_clip(tmp_path / "grey.mp4", 200)
    models = [{"name": "pvt_tiny", "kind": "classify", "manifest": True}]
    with serving(tmp_path / "srv", models) as (srv, _), Relay(srv.http if protocol == "http" else srv.grpc) as relay:
        srv_through = Server(relay.port, relay.port, srv.manifest, srv.log)
        with Model(url(srv_through, protocol, "pvt_tiny")) as model:
            results = model.predict(str(clip), stream=True, threaded=True, save=True, save_dir=tmp_path / "out")
            assert isinstance(results, Iterator)
            done = 0
            with pytest.raises(BackendUnavailableError) as caught:
                for _ in results:
                    done += 1
                    if done == 5:
                        relay.cut()
    message = str(caught.value)
    assert "not reachable" in message and "\n" not in message and done < 200
    import av

    with av.open(str(tmp_path / "out" / "grey.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 1


def test_unreachable_server_is_backend_unavailable() -> None:
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] not installed")
    with closed_port() as port:
        for u in (f"triton://127.0.0.1:{port}/m", f"triton+grpc://127.0.0.1:{port}/m"):
            with pytest.raises(BackendUnavailableError, match="not reachable"):
                load_triton(u, retries=1, timeout_s=2)


def test_bench_of_a_triton_url_times_the_triton_backend(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``pvt-deploy bench --model triton://...`` (what ``check`` on a Triton model folder advises) ran the
    default backends (torch, onnx, onnx-fp16, onnx-int8, trt), each of which 'cannot run' a Triton URL,
    and ended 'no backend could be benchmarked' (exit 2) without ever asking the server. A Triton URL's
    default backend is triton: here, with no server on the port, the one-line 'not reachable' (exit 3)."""
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] not installed")
    from cli_run import run

    with closed_port() as port:
        code, out, err = run(monkeypatch, capsys, "bench", "--model", f"triton://127.0.0.1:{port}/m", "--iters",
                             "1", "--warmup", "0")
    assert code == 3, out + err
    assert "not reachable" in err and "cannot run it" not in out + err


def test_bench_times_the_served_model(server: Server) -> None:
    from pvt_deploy.bench import benchmark

    report = benchmark(url(server, "grpc", "pvt_tiny"), warmup=0, iters=2)
    assert [(r["backend"], r["status"]) for r in report["results"]] == [("triton", "ok")], report["results"]
    assert report["task"] == "classify" and report["input_shape"] == [1, 3, 64, 64]


def test_url_parsing() -> None:
    u = parse_triton_url("triton://10.0.0.5/pvt_small")
    assert (u.protocol, u.host, u.port, u.model, u.version, u.ssl) == ("http", "10.0.0.5", 8000, "pvt_small", "", False)
    u = parse_triton_url("triton+grpc://[::1]:9001/det/3")
    assert (u.protocol, u.host, u.port, u.model, u.version) == ("grpc", "::1", 9001, "det", "3")
    assert str(u) == "triton+grpc://[::1]:9001/det/3"
    assert parse_triton_url("triton+https://h/m").ssl and parse_triton_url("triton+grpcs://h/m").port == 8001
    for bad in ("http://h/m", "triton://h", "triton://h/m/x", "triton://h:99999/m", "triton:///m"):
        with pytest.raises(InputError):
            parse_triton_url(bad)
    assert is_triton_url("triton://h/m") and is_triton_url("TRITON+GRPC://h/m")
    assert not is_triton_url("exports/pvt_small") and not is_triton_url("triton")


def test_tritonserver_parses_exported_configs(tmp_path: Path) -> None:
    """Triton's own C++ config parser reads what export_triton writes (onnx, trt, unbatched, FP16
    accelerator). PyTriton's server has only the Python backend, so each model then fails at the
    backend lookup, which is after parsing and validation."""
    python, why = pytriton_python()
    if python is None:
        _skip_or_fail(why)
    helpers = _export_helpers()
    CLASSIFY, DETECT_GRAPH = helpers.CLASSIFY, helpers.DETECT_GRAPH
    make_artifact, make_graph = helpers.make_artifact, helpers.make_graph
    from pvt_deploy.export.triton import export_triton
    from pvt_deploy.manifest import file_entry, write_manifest

    art = make_artifact(tmp_path / "art", DETECT_GRAPH, task="detect")
    (art / "model.engine").write_bytes(b"plan")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["model.engine"] = file_entry(art / "model.engine", "fp16", source="model.onnx")
    write_manifest(art, manifest)
    repo = tmp_path / "repo"
    export_triton(art, repo, name="det_onnx", trt_fp16_accelerator=True, instances=2)
    export_triton(art, repo, name="det_plan", backend="trt")
    export_triton(make_artifact(tmp_path / "cls", CLASSIFY), repo, name="cls_cpu", kind="CPU", max_batch=0)
    make_graph(tmp_path / "static" / "model.onnx", CLASSIFY, input_shape=[1, 3, 64, 64], metadata=True)
    export_triton(tmp_path / "static" / "model.onnx", repo, name="static")

    server_dir = subprocess.run(
        [str(python), "-c", "import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / 'tritonserver')"],
        capture_output=True, text=True, check=True).stdout.strip()
    proc = subprocess.run(
        [f"{server_dir}/bin/tritonserver", f"--model-repository={repo}", f"--backend-directory={server_dir}/backends",
         "--allow-http=false", "--allow-grpc=false", "--allow-metrics=false", "--exit-on-error=true"],
        capture_output=True, text=True, timeout=60)
    log = proc.stdout + proc.stderr
    assert "failed to read text proto" not in log, log
    for name, backend in (("det_onnx", "onnxruntime"), ("det_plan", "tensorrt"), ("cls_cpu", "onnxruntime"),
                          ("static", "onnxruntime")):
        failures = [line for line in log.splitlines() if f"failed to load '{name}' version 1:" in line]
        assert failures, log
        assert f"unable to find backend library for backend '{backend}'" in failures[0], failures[0]


def _export_helpers() -> Any:
    """The artifact builders of test_triton_export.py, loaded by path (independent of pytest's import mode)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_triton_export_helpers", Path(__file__).with_name("test_triton_export.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- a stub server: answers a real server cannot be made to give on demand (503 / UNAVAILABLE, BF16) ------

class _Unavailable(Exception):
    """Raised by a stub's infer function: the server answers 'unavailable' (Triton's full queue)."""


@contextlib.contextmanager
def stub_triton(protocol: str, manifest: str, infer: Any, datatype: str = "FP32") -> Iterator[tuple[str, list[int]]]:
    """A loopback server speaking Triton's HTTP or gRPC protocol for one model ``m`` (``images`` in,
    ``logits`` out, both ``datatype``, the manifest embedded as export_triton does). ``infer(images)``
    gets the request's raw bytes and shape and returns the output's raw bytes, or raises
    :class:`_Unavailable`. Yields the URL and the list of infer requests seen (their input shapes)."""
    from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

    seen: list[Any] = []
    inputs = [{"name": "images", "datatype": datatype, "shape": [-1, 3, -1, -1]}]
    outputs = [{"name": "logits", "datatype": datatype, "shape": [-1, NUM_CLASSES]}]
    if protocol == "http":
        import http.server

        config = {"name": "m", "max_batch_size": 4, "parameters": {"pvt_deploy_manifest": {"string_value": manifest}}}
        answers = {"/v2/health/live": {}, "/v2": {"name": "stub", "version": "0"}, "/v2/models/m/ready": {},
                   "/v2/models/m": {"name": "m", "versions": ["1"], "platform": "stub", "inputs": inputs,
                                    "outputs": outputs},
                   "/v2/models/m/config": config}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path in answers:
                    self._send(200, json.dumps(answers[path]).encode())
                else:
                    self._send(400, json.dumps({"error": f"unknown {path}"}).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                n = int(self.headers.get("Inference-Header-Content-Length", len(body)))
                request = json.loads(body[:n])
                shape = request["inputs"][0]["shape"]
                seen.append((request["inputs"][0]["datatype"], shape))
                try:
                    raw = infer(body[n:], shape)
                except _Unavailable as e:
                    self._send(503, json.dumps({"error": str(e)}).encode())
                    return
                header = json.dumps({"model_name": "m", "outputs": [
                    {"name": "logits", "datatype": datatype, "shape": [shape[0], NUM_CLASSES],
                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
                self._send(200, header + raw, {"Inference-Header-Content-Length": str(len(header)),
                                               "Content-Type": "application/octet-stream"})

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client closing its keep-alive connection resets the socket the handler's thread
                # waits on; socketserver prints that as a traceback on stderr, which the CLI's captured
                # stderr then holds (a flaky "Traceback" in a test that asserts the CLI prints none).
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        httpd = Quiet(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"triton://127.0.0.1:{httpd.server_address[1]}/m", seen
        finally:
            httpd.shutdown()
            httpd.server_close()
        return

    from concurrent import futures

    import grpc

    tensor = service_pb2.ModelMetadataResponse.TensorMetadata

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        def ServerLive(self, request: Any, context: Any) -> Any:
            return service_pb2.ServerLiveResponse(live=True)

        def ServerMetadata(self, request: Any, context: Any) -> Any:
            return service_pb2.ServerMetadataResponse(name="stub", version="0")

        def ModelReady(self, request: Any, context: Any) -> Any:
            return service_pb2.ModelReadyResponse(ready=True)

        def ModelMetadata(self, request: Any, context: Any) -> Any:
            return service_pb2.ModelMetadataResponse(name="m", versions=["1"], platform="stub",
                                                     inputs=[tensor(**t) for t in inputs],
                                                     outputs=[tensor(**t) for t in outputs])

        def ModelConfig(self, request: Any, context: Any) -> Any:
            config = model_config_pb2.ModelConfig(name="m", max_batch_size=4)
            config.parameters["pvt_deploy_manifest"].string_value = manifest
            return service_pb2.ModelConfigResponse(config=config)

        def ModelInfer(self, request: Any, context: Any) -> Any:
            shape = list(request.inputs[0].shape)
            seen.append((request.inputs[0].datatype, shape))
            try:
                raw = infer(request.raw_input_contents[0], shape)
            except _Unavailable as e:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
            out = service_pb2.ModelInferResponse.InferOutputTensor(name="logits", datatype=datatype,
                                                                   shape=[shape[0], NUM_CLASSES])
            return service_pb2.ModelInferResponse(model_name="m", outputs=[out], raw_output_contents=[raw])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"triton+grpc://127.0.0.1:{port}/m", seen
    finally:
        server.stop(0)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_server_that_answers_unavailable_is_told_from_one_that_is_down(
        protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Triton answers 'unavailable' (HTTP 503, gRPC UNAVAILABLE) when a model's queue is full or it is
    rate limited. gRPC retried it and then said 'not reachable' as for a server that is down; HTTP did
    not retry and ended 'inference failed' (exit 1). Both now retry it (it asks for a retry) and then
    say the server answered 'unavailable' (exit 3); a server that is down is still 'not reachable'."""
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] not installed")
    from cli_run import run
    from PIL import Image

    assert TritonBackend.__init__.__kwdefaults__ is not None
    monkeypatch.setitem(TritonBackend.__init__.__kwdefaults__, "backoff_s", 0.05)  # the retries' waits

    def full_queue(raw: bytes, shape: list[int]) -> bytes:
        raise _Unavailable("Exceeds maximum queue size")

    image = tmp_path / "grey.png"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(image)
    with stub_triton(protocol, embedded_manifest(tmp_path), full_queue) as (stub_url, seen):
        code, out, err = run(monkeypatch, capsys, "infer", str(image), "--model", stub_url,
                             "--output", str(tmp_path / "runs"))
        assert code == 3, out + err
        message = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(message) == 1, err
        assert "answered 'unavailable'" in message[0] and "Exceeds maximum queue size" in message[0], err
        assert "not reachable" not in err and "Traceback" not in err
        assert len(seen) == 3  # the request and its two retries, over either protocol
    code, out, err = run(monkeypatch, capsys, "infer", str(image), "--model", stub_url,
                         "--output", str(tmp_path / "runs"))
    assert code == 3 and "not reachable" in err and "answered" not in err, out + err


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_bf16_model_takes_and_gives_float32(protocol: str, tmp_path: Path) -> None:
    """export --format triton maps an ONNX bfloat16 tensor to TYPE_BF16, but the client's dtype table
    had no BF16: loading such a model made the spec dtype 'bf16' and the first infer raised a raw
    TypeError (np.dtype('bf16')). As TensorRT does for a BF16 engine, the caller feeds and gets float32;
    the wire carries BF16 (numpy has no bfloat16: ml_dtypes', which tritonclient uses)."""
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] not installed")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    w = np.asarray(WEIGHTS, dtype=np.float32)

    def classify(raw: bytes, shape: list[int]) -> bytes:
        images = np.frombuffer(raw, dtype=ml_dtypes.bfloat16).reshape(shape).astype(np.float32)
        return (images.mean(axis=(2, 3)) @ w).astype(ml_dtypes.bfloat16).tobytes()

    images = np.random.default_rng(0).uniform(0, 255, (2, 3, 8, 8)).astype(np.float32)
    with stub_triton(protocol, embedded_manifest(tmp_path), classify, datatype="BF16") as (stub_url, seen):
        backend, _ = load_triton(stub_url)
        with backend:
            assert [s.dtype for s in (*backend.inputs, *backend.outputs)] == ["float32", "float32"]
            out = backend.infer({"images": images})["logits"]
    assert seen == [("BF16", [2, 3, 8, 8])]
    assert out.dtype == np.float32 and out.shape == (2, NUM_CLASSES)
    reference = images.astype(ml_dtypes.bfloat16).astype(np.float32).mean(axis=(2, 3)) @ w
    np.testing.assert_allclose(out, reference, rtol=1e-2)  # bfloat16 keeps 8 significant bits


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_closed_backend_raises_input_error(protocol: str, tmp_path: Path) -> None:
    """README: after ``close()`` a call raises ``InputError`` ("… is closed"), as the ONNX Runtime,
    PyTorch and TensorRT backends do. A closed TritonBackend raised a plain PvtDeployError (exit 1, not
    the input error's 2), whether the call found it closed itself or on its HTTP thread."""
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] not installed")

    def classify(raw: bytes, shape: list[int]) -> bytes:
        return np.zeros((shape[0], NUM_CLASSES), np.float32).tobytes()

    images = np.zeros((1, 3, 8, 8), np.float32)
    with stub_triton(protocol, embedded_manifest(tmp_path), classify) as (stub_url, seen):
        backend, _ = load_triton(stub_url)
        assert backend.infer({"images": images})["logits"].shape == (1, NUM_CLASSES)
        backend.close()
        with pytest.raises(InputError, match=r"this TritonBackend is closed$"):
            backend.infer({"images": images})
        with pytest.raises(InputError, match=r"this TritonBackend is closed$"):  # a call that asks the server
            backend._call(backend._get_metadata)
    assert len(seen) == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_damaged_manifest_in_the_triton_config_is_one_line(protocol: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The manifest a Triton model's config carries went around check_fields, which manifest.json and a
    lone .onnx's metadata go through: a field of the wrong shape failed later its own way (a traceback,
    or a run on a default). It is now refused in one line naming the field, exit 2, nothing written."""
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] not installed")
    from cli_run import run
    from PIL import Image

    def classify(raw: bytes, shape: list[int]) -> bytes:
        return np.zeros((shape[0], NUM_CLASSES), np.float32).tobytes()

    image = tmp_path / "grey.png"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(image)
    good = json.loads(embedded_manifest(tmp_path))
    for text, field in [(json.dumps({**good, "preprocess": {**good["preprocess"], "imgsz": None}}),
                         ": preprocess.imgsz is null"),
                        (json.dumps({**good, "inputs": "images"}), ': inputs is "images"'),
                        (json.dumps({**good, "classes": good["classes"][:2]}), ": classes lists 2 names"),
                        (json.dumps(good)[:-9], " (parameter 'pvt_deploy_manifest': ")]:  # cut short: was 'no manifest'
        with stub_triton(protocol, text, classify) as (stub_url, seen):
            code, out, err = run(monkeypatch, capsys, "infer", str(image), "--model", stub_url,
                                 "--output", str(tmp_path / "runs"))
        message = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(message) == 1, out + err
        assert f"{stub_url}: damaged manifest in its Triton config{field}" in message[0], err
        assert "Traceback" not in err and not seen and not (tmp_path / "runs").exists()


def test_a_manifest_spec_without_a_shape_leaves_the_servers_dims() -> None:
    """A manifest whose tensor says ``"shape": null`` (TensorSpec.to_json of a shape the graph does not declare)
    gives the server's dims as they are: its symbolic names are read only from a reference of the same rank."""
    from types import SimpleNamespace

    spec = TritonBackend._spec(SimpleNamespace(max_batch_size=0),  # type: ignore[arg-type]
                               {"name": "scores", "datatype": "FP32", "shape": ["-1", "100"]},
                               [{"name": "scores", "dtype": "float32", "shape": None}])
    assert spec.shape == ("dim0", 100) and spec.dtype == "float32"
    named = TritonBackend._spec(SimpleNamespace(max_batch_size=0),  # type: ignore[arg-type]
                                {"name": "scores", "datatype": "FP32", "shape": [-1, 100]},
                                [{"name": "scores", "dtype": "float32", "shape": ["num", 100]}])
    assert named.shape == ("num", 100)
