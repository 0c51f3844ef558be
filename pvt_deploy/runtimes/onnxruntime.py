"""ONNX Runtime as a :class:`Backend`, on CPU, CUDA or the TensorRT execution provider.

Session choices and why:

* Graph optimisation level ALL: layout and fusion passes (LayerNorm, GELU, MatMul+Add) are where ORT
  beats PyTorch eager on CPU. The optimised graph can be saved (``optimized_model_path``) to read
  the fusions or to skip the optimisation on later loads.
* Intra-op threads = physical cores (hyper-threads share the FPU). The workers spin between the
  operators of a run and stop when it returns (``spin="run"``: ``session.force_spinning_stop``).
  ORT's own default (``spin=True``) lets them spin on for ~40 ms of a core after every run, which
  steals the cores the pipeline's decode, draw and encode threads need (the 720p video pipeline ran
  at 0.89x model-only throughput with it, 0.93x without); never spinning (``spin=False``) makes
  every operator boundary a sleep and a wake-up. Through this backend, separate processes, 50 ms
  between calls, three pairs each on the 2-core EPYC VM (workers pinned as below): ``pvt_v2_b0``
  classifier 10.5-11.9 ms spinning inside runs against 11.9-14.6 never spinning, its CPU INT8 graph
  8.4-8.6 against 9.9-10.0, ``pvt_small-cls`` 48.0-48.8 against 51.1-52.2 and INT8 23.4-23.6 against
  26.7-29.8; the detector at 640 the same either way.
* On the CPU provider each intra-op worker thread is pinned to a physical core of its own, the first
  core left to the thread that calls ``run`` (:func:`worker_affinities`; ``pin=False`` lets them
  float). A worker that sleeps between operators tends to be woken by Linux on the CPU of the thread
  that woke it: the two then share one core while the other idles, for seconds at a time. On the
  2-core EPYC VM, with 30-50 ms between calls as in an application or the benchmark suite and no
  spinning, the ``pvt_v2_b0`` classifier at batch 1 took 19 ms per call in most stretches (12.7-13
  ms at best) with floating workers and 12.4-14.8 ms pinned; its CPU INT8 graph 12.9-13.2 ms against
  9.8-10.3 (scratch loops, three processes each). Large graphs (a detector at 640,
  ``pvt_small-cls``) were the same either way: their long operators let the scheduler rebalance.
  Two models in one process (a detector and a classifier in one server) both pin: called in turn,
  each keeps that gain; called at once from two threads, every core runs two threads (the callers
  on the first), as balanced as floating. Letting the second float instead exposes it to the
  turn-taking above, and measured the same here (``pvt_v2_b0`` classifier FP32 beside its INT8 graph,
  Xeon, 60 alternating calls 30 ms apart: 6.9-7.3 ms and 7.8-8.3 ms either way; 53-57 calls/s each
  run at once either way; scratch script).
* Providers come from :func:`pvt_deploy.runtimes.ort_providers.select_providers`: with
  ``onnxruntime-gpu`` the TensorRT and CUDA providers are used automatically where the CUDA provider
  runs (:func:`~pvt_deploy.runtimes.ort_providers.cuda_provider`: else ``auto`` is a CPU session from the
  start, with its CPU settings, and ``cuda`` / ``tensorrt`` are refused saying why), always ending with the
  CPU provider. The providers the session *actually* got are reported in ``info``. The TensorRT EP
  caches its engines (:func:`~pvt_deploy.runtimes.ort_providers.tensorrt_cache_dir`, or
  ``cache_dir``) and, given the export's ``manifest``, builds them for the profile a TensorRT engine
  of the export would have (:func:`pvt_deploy.export.tensorrt.compute_profile`), not for the first
  shape it sees. ``cuda:N`` past the GPUs the CUDA driver sees is refused before a session is made.
* On a GPU provider outputs are bound to device memory with IO binding and copied to the host once,
  instead of ORT allocating host outputs per run (``io_binding="auto"``). A run the provider fails
  (``EPFail``) is an error in one line: ORT's Python side would retry it on the CPU, printing to stdout,
  and leave the session there for every later run (its ``disable_fallback``). So is a GPU provider that
  raises while the session is made (out of GPU memory, a TensorRT engine that does not build), which ORT's
  Python side retried on the CPU (or CUDA) without the providers' options, printing to stdout: sessions are
  made with ``enable_fallback=0`` (read by ONNX Runtime 1.32; 1.22 and older ignore it and retry, which
  ``_check_fallback`` then refuses for ``cuda`` and ``tensorrt``). ``auto`` tries its next provider, with its
  options, saying why, and where only the CPU's is left makes the session ``cpu`` makes (its CPU graph,
  pinned workers and shards); ``cuda`` and ``tensorrt`` are refused in one line with ONNX Runtime's reason
  (for ``tensorrt``, naming ``cuda`` and ``auto`` too where the CUDA provider runs).
* The graph contract is float32 in and float32/int32 out; a graph with half-precision I/O is fed
  and read through casts so every precision looks the same to post-processing.
* On the CPU a batch of at least one image per intra-op thread is split into one shard per thread,
  and the shards run at once on a second, single-threaded session of the same graph (``shard``).
  PVT's small operators (LayerNorm on 32-64 channels, GELU, depthwise convs, reorders) leave
  ORT's threads waiting at every operator boundary; shards keep each core busy on its own images.
  Measured on the 2-core EPYC dev VM (``python benchmarks/ort_options.py --settings
  default,no-shards --rounds 20``, batch 8): ``pvt_small-cls`` FP32 426 -> 392 ms, INT8 218 ->
  200 ms; ``pvt_v2_b0-cls`` FP32 86 -> 81 ms, INT8 77 -> 68 ms. The second session loads on the
  first such batch and costs memory once more (resident size after a batch of 2:
  ``pvt_small`` detector FP32 1133 -> 1565 MiB, INT8 864 -> 1114 MiB; ``pvt_small-cls`` 462 -> 584
  MiB); without ORT's memory arena it would cost ~260 MiB less and run 8-10 % slower. Smaller
  batches and batch 1 use the multi-threaded session alone; ``shard=False`` turns it off.
  A shard runs its images one call each, and so do the images left over after the shards (on the
  main session): for INT8 graphs that takes 13-15 % less time than a call per shard on the 2-core
  Xeon (``--settings default,whole-shards``, batch 8: ``pvt_small-cls`` 128.8 -> 112.4 ms,
  ``pvt_v2_b0-cls`` 50.8 -> 43.3 ms; FP32 within 3 % either way), and dynamic INT8, which
  quantizes each call's activations on their own range, gives an image the same outputs whatever
  batch it comes in. :meth:`OnnxRuntimeBackend.submit` queues a sharded batch's images on the shard
  threads and returns, and the threaded pipeline queues the next batch before it waits (a thread that
  ends its image takes the next one queued, instead of waiting at its batch's end for the other): on the
  2-core Xeon the 720p video benchmark ran 2-3 % faster end to end (docs/PERFORMANCE.md). ``submit(...,
  lane=True)`` queues a batch smaller than that there too, which the pipeline does for pictures (a folder):
  a picture alone takes longer on one thread, but the threads together run more of them.
* After ``fork()`` (gunicorn ``--preload``, a ``multiprocessing`` fork pool) a child has none of its
  parent's threads, but each session's thread pool and the shard pool still count on them: the
  shard pool's tasks never ran, and destroying a session (``close()``, dropping the model) waited in
  ORT's pool teardown for ever. So in a child every session it inherited is kept until the process
  ends (its memory is the parent's, shared until written), the shard pool starts afresh, and each
  run has the calling thread (and the shards) only: ORT's workers stayed in the parent. A model
  loaded in the child has its own. Beyond our reach: a forked child of a process that imported
  onnxruntime (1.32) waits for ever in ORT's own exit handlers when it exits normally, with or without
  a session (``multiprocessing`` ends its workers with ``os._exit``, which skips them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pvt_deploy.errors import BackendUnavailableError, InputError, PvtDeployError, ShapeError, option
from pvt_deploy.runtimes.base import (
    Backend,
    BackendInfo,
    TensorSpec,
    device_text,
    feed_array,
    flag,
    no_such_gpu,
    one_line,
    operator_profile,
    thread_count,
)
from pvt_deploy.runtimes.ort_providers import CPU, CUDA, GPU_PROVIDERS, ProviderSpec, provider_name
from pvt_deploy.runtimes.ort_providers import preload_gpu_libraries as _preload_gpu_libraries
from pvt_deploy.runtimes.torch import physical_cores
from pvt_deploy.utils import joined_lines
from pvt_deploy.utils.cpu import cpu_int8_dot_product

__all__ = ["SPIN_MODES", "OnnxRuntimeBackend", "graph_file_precision", "guess_precision", "ort_dtype", "session_options", "spin_mode",
           "worker_affinities"]

log = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
              "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(bfloat16)": "bfloat16"}


def ort_dtype(type_string: str) -> str:
    """ONNX Runtime's ``tensor(float)`` -> numpy's ``float32``."""
    return _ORT_TYPES.get(type_string, type_string.removeprefix("tensor(").removesuffix(")"))


def guess_precision(path: str | os.PathLike[str]) -> str:
    """Precision from the artifact naming convention: ``model.fp16.onnx``, ``model.int8*.onnx``."""
    name = Path(path).name.lower()
    if ".fp16." in name or name.endswith("_fp16.onnx"):
        return "fp16"
    if ".int8" in name or name.endswith("_int8.onnx"):
        return "int8"
    return "fp32"


def _undeclared_shapes(path: str | os.PathLike[str]) -> set[str]:
    """The inputs and outputs of the graph in ``path`` that it declares no shape for (a tensor of unknown rank,
    a sequence: :func:`pvt_deploy.export.graph.io_spec`'s None); none where the onnx package is missing or
    cannot read the file (ONNX Runtime could: their [] then stays a scalar's)."""
    try:
        import onnx

        from pvt_deploy.export.graph import io_spec

        inputs, outputs = io_spec(onnx.load(os.fspath(path), load_external_data=False))
    except Exception:  # noqa: BLE001 - ImportError, or a file onnx cannot parse
        return set()
    return {str(s["name"]) for s in (*inputs, *outputs) if s["shape"] is None}


def graph_file_precision(path: str | os.PathLike[str]) -> str:
    """What the graph in ``path`` holds, read from the graph (:func:`pvt_deploy.export.optimize.graph_precision`,
    as :func:`~pvt_deploy.runtimes.loader.read_onnx_manifest` lists a lone file): a renamed ``model.fp16.onnx``
    is still FP16, an FP32 graph named ``half.fp16.onnx`` still FP32. Guessed from the name only where the
    onnx package is missing (a slim runtime image) or cannot parse the file (ONNX Runtime then says why)."""
    try:
        import onnx

        from pvt_deploy.export.optimize import graph_precision
    except ImportError:
        return guess_precision(path)
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not a model: the session's own load reports it
        return guess_precision(path)
    return graph_precision(model)


_warned_vnni = False


def _warn_int8_without_vnni(path: Path, unsigned: bool) -> None:
    """Once per process, on x86 without VNNI: INT8 is exact there only with its weights re-based to
    uint8 (``unsigned``, see :func:`pvt_deploy.export.optimize.unsigned_int8`), and faster than FP32
    only where the CPU's 8-bit GEMMs outrun its float ones (:func:`pvt_deploy.utils.cpu.int8_gemm_gain`:
    ~1.5x on a Zen 3, ~1.1x on a Zen 1, where INT8 is no faster; its wide convs run as float Winograd,
    :func:`pvt_deploy.export.optimize.winograd_int8_convs`, to keep up with the FP32 graph's)."""
    global _warned_vnni
    if _warned_vnni or cpu_int8_dot_product() is not False:
        return
    _warned_vnni = True
    if not unsigned:
        log.warning("%s: this CPU has no VNNI, so ONNX Runtime's INT8 kernels may saturate and lose accuracy; "
                    "model.onnx (FP32) is the safe choice here", path.name)
        return
    from pvt_deploy.utils.cpu import INT8_PAYS, int8_gemm_gain

    gain = int8_gemm_gain()
    rate = f"its 8-bit GEMMs run at {gain:.1f}x the FP32 rate here" if gain is not None else ""
    if gain is not None and gain >= INT8_PAYS:
        log.info("%s: this CPU has no VNNI: INT8 runs exact (weights re-based to uint8); %s, so INT8 is faster "
                 "where GEMMs dominate and about as fast as model.onnx elsewhere (compare: pvt-deploy bench)",
                 path.name, rate)
    else:
        log.warning("%s: this CPU has no VNNI: INT8 runs exact (weights re-based to uint8) at about the speed of "
                    "model.onnx (FP32) here, not faster%s", path.name, f" ({rate})" if rate else "")


def _one_line(e: BaseException) -> str:
    return one_line(re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", joined_lines(e)))


# ONNX Runtime's words for memory it could not get: its arena's (CPU and CUDA alike, with the size asked
# for), a C++ bad_alloc, CUDA's own
_NO_MEMORY = re.compile(r"Failed to allocate memory for requested buffer of size (\d+)|bad_alloc|out of memory",
                        re.IGNORECASE)


def _failed_allocation(text: str) -> int | None:
    """The bytes ONNX Runtime could not allocate, said in a run's error ``text`` (0 where it names no size);
    None where ``text`` is no failure to allocate."""
    found = _NO_MEMORY.search(text)
    if found is None:
        return None
    return int(found.group(1)) if found.group(1) else 0


def _quiet_run_options(ort: Any) -> Any:
    """``RunOptions`` for every run: ONNX Runtime logs a failed run's error itself, in colour and on lines of
    its own, before raising it with the same words (which :meth:`OnnxRuntimeBackend._failure` makes one
    line of); below FATAL that log spilled onto the terminal around the tool's own message."""
    options = ort.RunOptions()
    options.log_severity_level = 4
    return options


def worker_affinities(threads: int) -> str | None:
    """ONNX Runtime's ``session.intra_op_thread_affinities`` value that gives each of a session's
    ``threads - 1`` intra-op workers a physical core of its own, leaving the first core to the thread
    that calls ``run`` (which ONNX Runtime never pins): ``"2"`` for two threads on two cores (its CPU
    numbers count from 1). Only a session that has every core this process may use is pinned: one
    given fewer threads shares the machine (several models in a process, several server workers
    each with ``threads=4`` on a 16-core box), and pinning each to the same first cores would crowd
    them there while the others idle. ``None`` then, and for one thread, more threads than cores or
    an unreadable topology (the workers float, as by default; ``taskset`` a process to give it its
    own cores, and its sessions pin within them)."""
    from pvt_deploy.runtimes.torch import cpu_per_core

    cpus = cpu_per_core()
    if threads < 2 or cpus is None or len(cpus) != threads:
        return None
    return ";".join(str(cpu + 1) for cpu in cpus[1:threads])


#: ``spin`` settings: workers busy-wait between operators and after runs (ONNX Runtime's default),
#: only inside a run, or never (see the module docstring).
SPIN_MODES = {True: "always", "always": "always", "run": "run", False: "never", "never": "never"}


def spin_mode(spin: bool | str) -> str:
    """``"always"``, ``"run"`` or ``"never"`` for a ``spin`` setting; anything else is an InputError."""
    mode = SPIN_MODES.get(spin.lower() if isinstance(spin, str) else spin)
    if mode is None:
        raise InputError(f"spin must be True, False, 'always', 'run' or 'never', not {spin!r}")
    return mode


def session_options(ort: Any, intra: int, inter: int, spin: str, affinities: str | None = None) -> Any:
    """The settings every session of this backend shares (see the module docstring); ``spin`` is one
    of the :data:`SPIN_MODES` values."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = inter
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spin == "never" else "1")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin == "always" else "0")
    if spin == "run":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if affinities:
        options.add_session_config_entry("session.intra_op_thread_affinities", affinities)
    options.log_severity_level = 3  # warnings about unused initializers etc. are noise to users
    return options


def _parse_device(device: str | None) -> tuple[str, int]:
    """``cuda:1`` -> ("cuda", 1); ``None`` -> ("auto", 0)."""
    text = (device_text(device) or "auto").lower()
    if text.isdigit():
        return "cuda", int(text)
    kind, _, index = text.partition(":")
    if kind in ("gpu",):
        kind = "cuda"
    if index and not index.isdigit():
        raise InputError(f"bad device {device!r} (use cpu, cuda, cuda:N or tensorrt)")
    return kind, int(index or 0)


def _tensorrt_details(providers: Sequence[Any], used: Sequence[str]) -> dict[str, Any]:
    """Where the session runs on the TensorRT EP: the engine cache folder and profile it was given."""
    from pvt_deploy.runtimes.ort_providers import TENSORRT

    options = next((p[1] for p in providers if not isinstance(p, str) and p[0] == TENSORRT), None)
    if not used or used[0] != TENSORRT or not isinstance(options, Mapping):
        return {}
    return {"trt_engine_cache": options.get("trt_engine_cache_path"),
            "trt_profile": {k: options[f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")
                            if f"trt_profile_{k}_shapes" in options} or None}


def _check_device_index(device: str | None, index: int) -> None:
    """``cuda:N`` / ``tensorrt:N`` past the GPUs there, refused as the PyTorch and TensorRT backends
    refuse it (ONNX Runtime's CUDA provider failed with a CUDA error blamed on the model). The count
    comes from the CUDA driver; where it cannot be read (no driver) it is left to ONNX Runtime, whose
    fallback to the CPU is then refused by ``_check_fallback``."""
    from pvt_deploy.runtimes.ort_providers import cuda_device_count

    count = cuda_device_count()
    if count and index >= count:
        raise no_such_gpu(device_text(device), index, count)  # device=2 is '2', as the other backends say


def _trt_profile(manifest: Mapping[str, Any] | None, name: str) -> dict[str, dict[str, list[int]]] | None:
    """The TensorRT EP's optimisation profile for the graph ``manifest`` describes: the profile an
    engine of the export would be built with (:func:`pvt_deploy.export.tensorrt.compute_profile`),
    for its dynamic inputs; None without a manifest, for a static graph, or where the manifest gives
    no ranges (ONNX Runtime's default then: build for the first shape seen)."""
    if not manifest or not manifest.get("dynamic"):
        return None
    from pvt_deploy.export.tensorrt import compute_profile

    try:
        profile = compute_profile(manifest)
    except (InputError, KeyError, TypeError, ValueError) as e:
        log.warning("%s: no TensorRT EP profile from the manifest (%s); ONNX Runtime builds for the first shape "
                    "it is given", name, _one_line(e))
        return None
    dynamic = {str(s.get("name")) for s in manifest.get("inputs") or []
               if any(not (isinstance(d, int) and d >= 0) for d in s.get("shape") or [])}
    return {k: v for k, v in profile.items() if k in dynamic} or None


def _provider_device_id(session: Any, provider: str, default: int) -> int:
    """The GPU ``provider`` runs on in ``session``, as the session registered it: with ``providers=``
    given, that list's ``device_id`` and not the ``device`` argument says where (IO binding bound the
    outputs to ``device``'s GPU, another than the session's)."""
    try:
        value = (session.get_provider_options().get(provider) or {}).get("device_id")
        return int(value) if value is not None else default
    except (AttributeError, TypeError, ValueError):
        return default


def _folder_option(name: str, value: object, *, parent: bool = False) -> Path | None:
    """A path option (``cache_dir``, ``optimized_model_path``) with its folder made (``parent``: the
    folder the file goes in). Not a path, or a folder that cannot be made, is one InputError line,
    not a TypeError, a file named ``3`` in the working folder, or ONNX Runtime failing to load a
    sound model over an unwritable output path."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
        raise InputError(f"{name} must be a path, got {value!r}")
    path = Path(value).expanduser()
    folder = path.parent if parent else path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{name} {path}: cannot make the folder {folder} ({e.strerror or e})") from None
    return path


_backends: weakref.WeakSet[OnnxRuntimeBackend] = weakref.WeakSet()  # those this process made or inherited
_inherited_sessions: list[Any] = []  # in a forked child: never destroyed (see the module docstring)


def _after_fork_in_child() -> None:
    for backend in list(_backends):
        _inherited_sessions.extend(s for s in (backend._session, backend._shard_session) if s is not None)
        backend._pool = None  # its threads are the parent's
        backend._shard_lock = threading.Lock()  # a thread of the parent may have held it at the fork


class _StartFailed(Exception):
    """A GPU provider, first of a session's providers, raised while the session was made (``error``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _start_hint(kind: str, device_id: int, providers: Sequence[ProviderSpec]) -> str:
    """What runs the graph instead where ``kind``'s first provider failed to start a session of it: the CPU, and
    for ``tensorrt`` the CUDA provider under it and ``auto`` (which tries TensorRT, then CUDA) where the CUDA
    provider is among ``providers`` (listed, and its probe started a session on it)."""
    doctor = "pvt-deploy doctor lists what is found"
    if kind in ("tensorrt", "trt") and CUDA in [provider_name(p) for p in providers]:
        index = f":{device_id}" if device_id else ""
        return (f"{option('device')} cuda{index} runs it on ONNX Runtime's CUDA provider, {option('device')} "
                f"auto{index} on the first provider that starts, {option('device')} cpu on the CPU; {doctor}")
    return f"{option('device')} cpu runs it on the CPU; {doctor}"


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class OnnxRuntimeBackend(Backend):
    """Run an ``.onnx`` file with ONNX Runtime.

    ``device``: ``auto`` (TensorRT EP > CUDA EP > CPU from what is installed), ``cpu``, ``cuda[:N]`` or
    ``tensorrt[:N]``. ``threads``: intra-op threads (default physical cores); ``spin``: let idle
    workers busy-wait inside a run (``"run"``, the default), also after it (``True``) or never
    (``False``, and whatever it says where ``threads`` is more than the cores; see the module docstring). ``fp16`` lets the
    TensorRT EP pick FP16 kernels for an FP32 graph. ``cache_dir`` keeps TensorRT EP engines between
    sessions (default: a folder of ``.ort-cache`` beside the file keyed by graph, versions, GPU, FP16
    and profile, :func:`~pvt_deploy.runtimes.ort_providers.tensorrt_cache_dir`). ``manifest``: the
    export's manifest, whose dynamic ranges give the TensorRT EP its optimisation profile (the loader
    passes it). ``precision`` is what the file holds (read from the manifest by the loader; read from
    the graph otherwise, :func:`graph_file_precision`). ``rewrite``: load the CPU-optimised copy of the graph
    (:mod:`pvt_deploy.runtimes.ort_session`; exact rewrites, cached beside the file); default on when
    the session runs on the CPU provider alone. ``shard``: on the CPU provider alone, split a batch
    of at least ``threads`` images across the threads (see the module docstring) when the graph's
    outputs are batch-major. ``pin``: on the CPU provider alone, give each intra-op worker a core of
    its own (see the module docstring).
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None, threads: int | None = None,
                 inter_op_threads: int | None = None, spin: bool | str = "run", fp16: bool = False,
                 cache_dir: str | os.PathLike[str] | None = None,
                 optimized_model_path: str | os.PathLike[str] | None = None,
                 io_binding: bool | str = "auto", precision: str | None = None,
                 providers: Sequence[Any] | None = None, rewrite: bool | None = None,
                 shard: bool = True, pin: bool = True, manifest: Mapping[str, Any] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailableError("onnxruntime is not installed", hint="pip install onnxruntime") from e
        from pvt_deploy.runtimes.ort_providers import TENSORRT, computed_precision, select_providers

        threads = thread_count(threads)
        inter_op_threads = thread_count(inter_op_threads, "inter_op_threads")
        fp16, shard, pin = flag("fp16", fp16), flag("shard", shard), flag("pin", pin)
        rewrite = None if rewrite is None else flag("rewrite", rewrite)
        if io_binding != "auto" and not isinstance(io_binding, (bool, np.bool_)):
            raise InputError(f"io_binding must be 'auto', True or False, got {io_binding!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        kind, device_id = _parse_device(device)
        cache_dir = _folder_option("cache_dir", cache_dir)
        if optimized_model_path is not None:  # its folder made, as cache_dir's: ORT's own error blamed the model
            optimized_model_path = _folder_option("optimized_model_path", optimized_model_path, parent=True)
        if isinstance(providers, str):  # one provider's name, not a list of one-letter names
            providers = [providers]
        profile = None  # the TensorRT EP's, where select_providers gives it one
        self.precision = precision or graph_file_precision(self.path)
        if providers is None:
            if kind in ("cuda", "tensorrt", "trt"):
                _check_device_index(device, device_id)
            int8 = self.precision == "int8"
            providers = select_providers(kind, fp16=fp16, cache_dir=cache_dir, device_id=device_id, int8=int8)
            chosen = [provider_name(p) for p in providers]
            if chosen[0] == TENSORRT:  # only then: onnxruntime-gpu lists it where TensorRT does not load
                profile = _trt_profile(manifest, self.path.name)
                providers = select_providers(kind, fp16=fp16, cache_dir=cache_dir, device_id=device_id,
                                             available=chosen, profile=profile, model=self.path, int8=int8)
        names = [provider_name(p) for p in providers]
        if any(n in GPU_PROVIDERS for n in names):
            _preload_gpu_libraries(ort)
        cores = physical_cores()
        intra = int(threads or cores)
        spin = spin_mode(spin)
        if intra > cores and spin != "never":
            # a spinning worker holds a core while it waits: with more of them than cores they took the cores
            # the working ones needed (threads=128 on 2 cores: 13 s to load, 0.17 s never spinning)
            log.warning("%s: threads=%d is more than the %d core(s) this process may use: its workers wait "
                        "without spinning", self.path.name, intra, cores)
            spin = "never"
        tried = list(providers)  # auto's, less a GPU provider that fails to start a session
        while True:  # the settings follow the providers: auto left with the CPU's alone is a CPU session
            cpu_only = [provider_name(p) for p in tried] == [CPU]
            affinities = worker_affinities(intra) if pin and cpu_only else None
            options = session_options(ort, intra, int(inter_op_threads or cores), spin, affinities)
            if optimized_model_path is not None:
                options.optimized_model_filepath = str(optimized_model_path)
            try:
                self._session, load_path, rewrites = self._open(
                    ort, options, tried, rewrite if rewrite is not None else cpu_only)
                break
            except _StartFailed as e:
                why = f"{self.path.name}: ONNX Runtime's {provider_name(tried[0])} failed to start a session of it " \
                      f"({_one_line(e.error)})"
                if kind != "auto" or len(tried) < 2:
                    raise BackendUnavailableError(why, hint=_start_hint(kind, device_id, tried)) from e.error
                del tried[0]  # auto: the next of its providers, with their options
                log.warning("%s; trying %s", why, provider_name(tried[0]))
        self._ort = ort
        self._run_options = _quiet_run_options(ort)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        # ONNX Runtime lists [] for a scalar and for a value whose graph declares no shape alike (another tool's
        # of unknown rank): only then is the graph read, so that such an input takes any feed, not only a scalar
        undeclared = _undeclared_shapes(self.path) if any(not a.shape for a in (*inputs, *outputs)) else set()
        self._inputs = [self._spec(i, i.name in undeclared) for i in inputs]
        self._outputs = [self._spec(o, o.name in undeclared) for o in outputs]
        self._load = (str(load_path), list(tried), spin)  # what the shard session loads
        # the main session's settings, for a session of the same graph that profiles (profile())
        self._settings = (intra, int(inter_op_threads or cores), spin, affinities)
        self._shards = options.intra_op_num_threads if shard and cpu_only else 1
        if self._shards > 1 and not self._batch_major():
            self._shards = 1
        self._shard_session: Any = None
        self._shard_per_image = True  # False: one call per shard (benchmarks/ort_options.py's whole-shards)
        self._shard_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._output_names = [o.name for o in self._outputs]
        _backends.add(self)
        used = list(self._session.get_providers())
        self._check_fallback(kind, [provider_name(p) for p in tried], used)
        self._on_gpu = bool(used) and used[0] in GPU_PROVIDERS
        if self._on_gpu:  # a run the provider fails (EPFail) raises, not moved to the CPU by ORT's Python side for good
            self._session.disable_fallback()  # (what enable_fallback=0 does where ONNX Runtime reads it)
        self._device_id = _provider_device_id(self._session, used[0], device_id) if self._on_gpu else 0
        self._io_binding = self._on_gpu if io_binding == "auto" else bool(io_binding)
        self._profile: dict[str, dict[str, list[int]]] | None = profile if used and used[0] == TENSORRT else None
        if self.precision == "int8" and not self._on_gpu:
            _warn_int8_without_vnni(self.path, bool(rewrites and rewrites.rewrites.get("unsigned_int8")))
        computes = self.precision if fp16 or not used else computed_precision(self.precision, used[0], self._device_id)
        self.info = BackendInfo(
            name="onnxruntime", device=used[0] if used else "CPUExecutionProvider", precision=computes,
            details={"onnxruntime": ort.__version__, "providers": used, "file": str(self.path),
                     "intra_op_threads": options.intra_op_num_threads, "spin": spin,
                     "worker_cpus": [int(c) - 1 for c in affinities.split(";")] if affinities else None,
                     "io_binding": self._io_binding,
                     "graph_optimization": "all", "batch_shards": self._shards,
                     "graph_rewrites": rewrites.rewrites if rewrites is not None and rewrites.changed else None,
                     **_tensorrt_details(tried, used)})

    def _open(self, ort: Any, options: Any, providers: Sequence[ProviderSpec],
              rewrite: bool) -> tuple[Any, Path, Any]:
        """A session of the graph on ``providers`` with ``options``, of its CPU-optimised copy where ``rewrite``
        (:mod:`pvt_deploy.runtimes.ort_session`): (the session, the file it loaded, the copy's
        :class:`~pvt_deploy.runtimes.ort_session.OptimizedGraph` or None). A damaged copy (a full disk, a hand edit) is
        built again once from the source, and where even that does not load the graph runs as exported.
        :class:`_StartFailed` where the first provider, a GPU's, raises while the session is made."""
        if not rewrite:
            return self._session_of(ort, self.path, options, providers), self.path, None
        from pvt_deploy.runtimes.ort_session import discard, optimized_graph

        rewrites = optimized_graph(self.path)
        try:
            return self._session_of(ort, rewrites.path, options, providers), rewrites.path, rewrites
        except InputError as e:
            if not rewrites.changed:
                raise
            log.warning("%s: the cached CPU graph %s does not load (%s); rebuilding it", self.path.name,
                        rewrites.path.name, _one_line(e.__cause__ or e))
        discard(rewrites)
        rewrites = optimized_graph(self.path)
        try:
            return self._session_of(ort, rewrites.path, options, providers), rewrites.path, rewrites
        except InputError:  # the source's own error is the one to report
            return self._session_of(ort, self.path, options, providers), self.path, None

    def _session_of(self, ort: Any, graph: Path, options: Any, providers: Sequence[ProviderSpec]) -> Any:
        try:
            return ort.InferenceSession(str(graph), sess_options=options, providers=list(providers),
                                        enable_fallback=0)
        except Exception as e:  # ORT raises its own pybind exception types (InvalidGraph, Fail, NoSuchFile)
            # what ORT's Python side retried on the CPU, not a model it cannot load
            if provider_name(providers[0]) in GPU_PROVIDERS and isinstance(e, (RuntimeError, ValueError)):
                raise _StartFailed(e) from e
            raise InputError(f"{self.path.name}: ONNX Runtime cannot load it ({_one_line(e)})") from e

    def _check_fallback(self, kind: str, asked: list[str], used: list[str]) -> None:
        """ONNX Runtime drops a provider that fails to start (missing CUDA, cuDNN or TensorRT libraries)
        and runs on the next one, printing the reason to stderr. Where ``cuda`` or ``tensorrt`` was
        asked for, a silent CPU (or CUDA) run would be mistaken for the one asked: refuse it."""
        from pvt_deploy.runtimes.ort_providers import CUDA, TENSORRT

        wanted = {"cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}.get(kind)
        if wanted is not None and wanted in asked and (not used or used[0] != wanted):
            self._session = None
            raise BackendUnavailableError(
                f"{self.path.name}: ONNX Runtime could not start its {wanted} and fell back to "
                f"{used[0] if used else 'nothing'} (its libraries are missing or do not match: ONNX Runtime "
                "printed the reason above)",
                hint=("pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA and cuDNN from pip), or use --device cpu"
                      if wanted == CUDA else
                      "install TensorRT for this CUDA (pip install tensorrt), or use --device cuda")
                + "; pvt-deploy doctor lists what is found")
        if asked and used and used[0] != asked[0]:
            log.warning("%s: ONNX Runtime could not start %s; running on %s", self.path.name, asked[0], used[0])

    @staticmethod
    def _spec(arg: Any, undeclared: bool = False) -> TensorSpec:
        """``arg``'s spec; ``undeclared``: its graph declares no shape, which is None (a scalar's is ())."""
        if undeclared:
            return TensorSpec(arg.name, ort_dtype(arg.type), None)
        shape = tuple(d if isinstance(d, int) else (str(d) if d else "?") for d in (arg.shape or ()))
        return TensorSpec(arg.name, ort_dtype(arg.type), shape)

    @property
    def providers(self) -> list[str]:
        """The providers the session got, first the one it runs on (as loaded: also after ``close``)."""
        return list(self.info.details["providers"])

    @property
    def profiles(self) -> list[dict[str, Any]]:
        """On the TensorRT EP given a profile, the optimisation profile per input (``{"input", "min",
        "opt", "max"}``, as :attr:`TensorRTBackend.profiles`): the pipeline keeps its sizes inside it, a
        size outside being refused with one line rather than failing in the EP. Empty elsewhere."""
        return [{"input": name, "min": list(p["min"]), "opt": list(p["opt"]), "max": list(p["max"])}
                for name, p in (self._profile or {}).items()]

    def _prepare_feed(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names and fixed dims (ORT's own message is a paragraph) and cast dtypes to the graph's."""
        out: dict[str, np.ndarray] = {}
        for spec in self._inputs:
            array = feed_array(feed, spec.name)
            if spec.shape is not None and (len(spec.shape) != array.ndim or any(  # None: no rank declared
                    isinstance(d, int) and d != s for d, s in zip(spec.shape, array.shape, strict=False))):
                raise ShapeError(f"input {spec.name!r} has shape {list(array.shape)} but {self.path.name} "
                                 f"takes {list(spec.shape)}",
                                 hint="use the exported --imgsz, or re-export with --dynamic")
            if self._profile and spec.name in self._profile:
                self._check_profile(spec, array.shape)
            if array.dtype != np.dtype(spec.dtype):
                array = array.astype(spec.dtype)
            out[spec.name] = np.ascontiguousarray(array)
        return out

    def _check_profile(self, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        """On the TensorRT EP, a shape outside the profile its engines were built for is refused here,
        as the TensorRT backend refuses it, rather than failing inside the EP."""
        from pvt_deploy.runtimes.tensorrt import check_profile_shape

        profile = (self._profile or {})[spec.name]
        try:
            check_profile_shape(spec.name, tuple(shape), tuple(profile["min"]), tuple(profile["max"]),
                                spec.shape or ())
        except ShapeError as e:
            raise ShapeError(str(e.args[0]), hint=f"the TensorRT EP builds its engines for the size the model is loaded "
                                                  f"at: load it with {option('imgsz')} set to the size it runs at") from None

    def _batch_major(self) -> bool:
        """One input, and every output's first dim is that input's symbolic batch dim: only then do
        shards of the batch give the slices of the whole batch's outputs."""
        if len(self._inputs) != 1 or not self._inputs[0].shape:
            return False
        batch = self._inputs[0].shape[0]
        return isinstance(batch, str) and batch != "?" and all(
            o.shape and o.shape[0] == batch for o in self._outputs)

    def _shard_runner(self) -> Any:
        """The single-threaded session the shards share (ORT sessions take concurrent calls), created
        on the first batch that is sharded; ``None`` (and no more sharding) when it cannot load."""
        with self._shard_lock:
            if self._session is None:  # closed meanwhile (by another thread): nothing to bring back
                return None
            if self._shard_session is None and self._shards > 1:
                path, providers, spin = self._load
                try:
                    self._shard_session = self._ort.InferenceSession(
                        path, sess_options=session_options(self._ort, 1, 1, spin), providers=providers,
                        enable_fallback=0)
                except Exception as e:  # noqa: BLE001 - e.g. out of memory: run batches whole instead
                    log.warning("%s: batches run unsharded (%s)", self.path.name, _one_line(e))
                    self._shards = 1
                    self.info.details["batch_shards"] = 1
                    return None
            if self._shard_session is not None and self._pool is None:  # the first shards, or the first after a fork
                self._pool = ThreadPoolExecutor(self._shards, thread_name_prefix="pvt-ort-shard")
            return self._shard_session

    def _start(self, arrays: dict[str, np.ndarray], lane: bool = False) -> Callable[[], list[np.ndarray]]:
        """Begin one call and return the function that waits for its outputs. Bound on a GPU; on the CPU
        a batch of ``shards * k + r`` images (``k`` >= 1, ``r`` < ``shards``) queues its first ``shards * k``
        on the ``shards`` threads of the single-threaded session, one task an image (a shard's ``k`` a task
        without ``_shard_per_image``, see the module docstring), and returns at once: a thread that ends
        its task takes the next one queued, this batch's or, where the caller has queued it meanwhile, the
        next batch's, so no core waits at a batch's end for the others. The last ``r`` run one a call on
        the main session once the rest are done, when the outputs are waited for; with ``lane`` every image
        is a task, a batch smaller than ``shards`` too. Anything else runs before this returns."""
        if self._io_binding:
            bound = self._run_bound(arrays)
            return lambda: bound
        name, array = next(iter(arrays.items()))
        whole = len(arrays) != 1 or (array.shape[0] < self._shards and not lane)
        session = None if self._shards < 2 or whole else self._shard_runner()
        pool = self._pool
        if session is None or pool is None:
            outputs: list[np.ndarray] = self._session.run(self._output_names, arrays, self._run_options)
            return lambda: outputs
        n = array.shape[0]
        sharded = n if lane else n // self._shards * self._shards
        step = 1 if self._shard_per_image else max(1, sharded // self._shards)
        names = self._output_names
        quiet = self._run_options
        tasks = [pool.submit(session.run, names, {name: array[j:j + step]}, quiet) for j in range(0, sharded, step)]

        def wait() -> list[np.ndarray]:
            results = [task.result() for task in tasks]
            rest = 1 if self._shard_per_image else max(1, n - sharded)
            results += [self._session.run(names, {name: array[j:j + rest]}, quiet) for j in range(sharded, n, rest)]
            return [np.concatenate([r[i] for r in results]) for i in range(len(names))]

        return wait

    @property
    def background_batch(self) -> int:  # type: ignore[override]
        """The smallest batch that runs in shards, which :meth:`submit` queues and returns (0: none)."""
        return self._shards if self._shards > 1 else 0

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.submit(feed)()

    def submit(self, feed: Mapping[str, np.ndarray], *, lane: bool = False) -> Callable[[], dict[str, np.ndarray]]:
        """``infer`` begun: on the CPU a batch that runs in shards, or any batch with ``lane``, is queued on
        the shard threads and this returns at once (see :meth:`_start`); the function returned waits for
        the outputs."""
        if self._session is None:
            raise InputError("this OnnxRuntimeBackend is closed")
        arrays = self._prepare_feed(feed)
        try:
            wait = self._start(arrays, lane)
        except Exception as e:
            raise self._failure(e, arrays) from e

        def outputs() -> dict[str, np.ndarray]:
            try:
                values = wait()
            except Exception as e:
                raise self._failure(e, arrays) from e
            result: dict[str, np.ndarray] = {}
            for name, value in zip(self._output_names, values, strict=True):
                array = np.asarray(value)
                if array.dtype in (np.float16, np.float64):
                    array = array.astype(np.float32)
                result[name] = array
            return result

        return outputs

    def _failure(self, error: Exception, arrays: Mapping[str, np.ndarray]) -> PvtDeployError:
        """What a failed call raises: closed meanwhile (by another thread), an input too large for the memory
        ONNX Runtime could get (:meth:`_too_large`), a shape it refused, or anything else it said."""
        if self._session is None:
            return InputError("this OnnxRuntimeBackend is closed")
        text = _one_line(error)
        wanted = _failed_allocation(" ".join(str(error).split()))  # the whole text: one_line may cut the size off
        if wanted is not None:
            return self._too_large(arrays, wanted)
        if "dimension" in text.lower() or "shape" in text.lower():
            return ShapeError(f"{self.path.name}: ONNX Runtime rejected the input shape "
                              f"{[list(a.shape) for a in arrays.values()]}: {text}")
        return PvtDeployError(f"{self.path.name}: ONNX Runtime failed: {text}")

    def _too_large(self, arrays: Mapping[str, np.ndarray], wanted: int) -> ShapeError:
        """A run that failed to allocate: the input's size is more than this machine (or GPU) holds for this
        graph, which is the user's to change (exit 2, as PyTorch's refusal, :meth:`TorchBackend.check_size
        <pvt_deploy.runtimes.torch.TorchBackend.check_size>`), not ONNX Runtime failing. Said of the size
        (``--imgsz HxW at --batch N`` for an image batch), with what ONNX Runtime asked for at once and, on the
        CPU, the memory free. Caught, not foretold: how much a run needs depends on the graph ONNX Runtime runs
        (the CPU copy's fused attention takes a fraction of the scores PyTorch holds: ``pvt_v2_b0-cls`` ran
        5000x5000 in 5 GB, where its INT8 graph's plain MatMuls asked for 69 GB at 4096x4096), so a size that
        runs is never refused and no size that fits is named."""
        from pvt_deploy.utils import gigabytes
        from pvt_deploy.utils.cpu import available_memory

        shapes = [list(a.shape) for a in arrays.values()]
        images = len(shapes) == 1 and len(shapes[0]) == 4
        what = (f"{option('imgsz')} {shapes[0][2]}x{shapes[0][3]} at {option('batch')} {shapes[0][0]}" if images
                else f"the input shape {shapes[0] if len(shapes) == 1 else shapes}")
        asked = f": it asked for {gigabytes(wanted)} at once" if wanted else ""
        free = None if self._on_gpu else available_memory()
        where = (" on the GPU" if self._on_gpu else "" if free is None
                 else f", more than the {gigabytes(free)} free in this machine's memory" if wanted > free
                 else f", with {gigabytes(free)} free in this machine's memory")
        smaller = (f"a smaller {option('imgsz')}" if images else "a smaller input") + (
            f" or {option('batch')}" if images and shapes[0][0] > 1 else "")
        return ShapeError(f"{self.path.name}: {what} needs more memory than ONNX Runtime could get{asked}{where}",
                          hint=f"pass {smaller}")

    def _run_bound(self, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One host->device copy per input, outputs left on the device until one copy back."""
        binding = self._session.io_binding()
        for name, array in arrays.items():
            binding.bind_cpu_input(name, array)
        device = "cuda" if self._on_gpu else "cpu"
        for name in self._output_names:
            binding.bind_output(name, device, self._device_id if self._on_gpu else 0)
        self._session.run_with_iobinding(binding, self._run_options)
        outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return outputs

    def profile(self, feed: Mapping[str, np.ndarray], calls: int = 10) -> dict[str, Any]:
        """Time per operator type and execution provider (see :meth:`Backend.profile`), from ONNX Runtime's
        own profiler: a second session of the graph this backend runs (the cached CPU copy where it runs
        that), with its providers and settings and profiling on, runs ``feed`` once untimed and ``calls``
        times; its trace (``cat == "Node"`` events named ``*_kernel_time``: ``args.op_name``,
        ``args.provider``, ``dur`` in µs) is read from a temporary folder, which is then removed. A batch
        runs as one call, not in shards. On a GPU provider a node's time is what ONNX Runtime records
        for it."""
        import json
        import shutil
        import tempfile

        if self._session is None:
            raise InputError("this OnnxRuntimeBackend is closed")
        arrays = self._prepare_feed(feed)
        path, providers, _ = self._load
        options = session_options(self._ort, *self._settings)
        folder = tempfile.mkdtemp(prefix="pvt-deploy-profile-")
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "ort")
        session: Any = None
        ended = False
        try:
            session = self._ort.InferenceSession(path, sess_options=options, providers=providers, enable_fallback=0)
            if self._on_gpu:  # as the backend's own session: a run the provider fails is not moved to the CPU
                session.disable_fallback()  # (what enable_fallback=0 does where ONNX Runtime reads it)
            for _ in range(calls + 1):
                session.run(self._output_names, arrays, self._run_options)
            trace = session.end_profiling()
            ended = True
            with open(trace, encoding="utf-8") as f:
                events = json.load(f)
        except Exception as e:
            raise PvtDeployError(f"{self.path.name}: ONNX Runtime's profiler failed: {_one_line(e)}") from e
        finally:
            if session is not None and not ended:  # else its trace would be written as the session goes
                with contextlib.suppress(Exception):
                    session.end_profiling()
            session = None
            shutil.rmtree(folder, ignore_errors=True)
        runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                      key=lambda e: e["ts"])
        if len(runs) != calls + 1:
            raise PvtDeployError(f"{self.path.name}: ONNX Runtime's profile holds {len(runs)} runs, not the "
                                 f"{calls + 1} made")
        start = runs[0]["ts"] + runs[0]["dur"]  # the untimed call's nodes are left out
        nodes = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
                 and e.get("ts", 0) >= start]
        if not nodes:
            raise PvtDeployError(f"{self.path.name}: ONNX Runtime's profile holds no operator times")
        return operator_profile(((str(e["args"].get("op_name", "?")), str(e["name"]).removesuffix("_kernel_time"),
                                  float(e["dur"]) / 1000, e["args"].get("provider")) for e in nodes), calls)

    def metadata(self) -> dict[str, str]:
        """The graph's ``metadata_props`` (where a lone ``.onnx`` keeps its pvt-deploy manifest)."""
        if self._session is None:
            return {}
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def close(self) -> None:
        self._session = None  # first: a batch that has not made the shard session yet will not make it
        with self._shard_lock:
            self._shard_session = None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
