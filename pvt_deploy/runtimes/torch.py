"""PyTorch eager as a :class:`Backend`: the reference every exported graph is measured against.

It runs any ``nn.Module`` that follows the graph contract (raw 0..255 RGB ``images`` in, a tuple of
named outputs back), in practice the ``DeployModule`` the exporter traces, so PyTorch and the ONNX
graphs share every line of model code and differ only in the runtime. This module knows nothing
about PVT.

Why the choices below:

* ``torch.inference_mode`` rather than ``no_grad``: no version counters or autograd metadata, a few
  percent faster and less memory.
* FP16 is autocast on CUDA only (LayerNorm and Softmax stay FP32 under autocast, as the exported FP16
  graph keeps them). Half precision on a CPU is slower than FP32 in PyTorch, so it is refused rather
  than silently slow. On a GPU it pays only where the arithmetic dominates: on an H200 (2026-12-04,
  ``benchmarks/speed.py --device cuda``) autocast FP16 ran at 1.16-1.37x FP32 for the detectors at
  batch 8 but 0.75-0.86x at batch 1, where these graphs wait on kernel launches.
* FP32 on a GPU is IEEE FP32, as the reference must be: PyTorch lets cuDNN convolutions round their
  inputs to TF32 (a 10-bit mantissa) on Ampere and newer GPUs by default, and cuBLAS matmuls where the
  caller asked (``torch.set_float32_matmul_precision("high")``). A run turns those switches off
  (:func:`_ieee_fp32`) and puts back what the process had when the last concurrent run ends: they are
  the process's, not a thread's, so while a run is in flight another thread's CUDA work reads them off.
* Intra-op threads default to the physical cores: hyper-threads share one FPU and only add
  contention to GEMM-bound transformer blocks.
* Outputs are always returned as float32/int32 numpy arrays so post-processing is identical for
  every backend and precision.
* After ``fork()`` (gunicorn ``--preload``, a ``multiprocessing`` fork pool), PyTorch work asked for
  on the thread that forked runs on a helper thread (:func:`clear_of_fork`): PyTorch's Linux wheels
  use GNU OpenMP, which keeps, per thread, the team of worker threads it started; in the child that
  thread still counts on its parent's workers, which the child does not have, and its next parallel
  region waits for them for ever. A thread started in the child has no team yet and starts its own,
  with the same thread count. (``torch.set_num_threads(1)`` in the child, as PyTorch's DataLoader
  workers do, also avoids the wait, but at one thread, and raising the count again hangs.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pvt_deploy.errors import BackendUnavailableError, InputError, PvtDeployError, ShapeError, option
from pvt_deploy.runtimes.base import (
    Backend,
    BackendInfo,
    TensorSpec,
    device_text,
    feed_array,
    no_such_gpu,
    one_line,
    operator_profile,
    thread_count,
)
from pvt_deploy.utils import gigabytes
from pvt_deploy.utils.stderr import HeldStderr, stderr_held

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["TorchBackend", "clear_of_fork", "cpu_per_core", "cpu_quota", "physical_cores"]

log = logging.getLogger(__name__)

_DEFAULT_INPUT = TensorSpec("images", "float32", ("batch", 3, "height", "width"))

_T = TypeVar("_T")
_forked_thread: int | None = None  # in a forked child: the thread that called fork() (see the module docstring)
_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _forked_thread, _helper, _helper_lock
    _forked_thread = threading.get_ident()
    _helper = None  # the parent's helper thread, if it had one, is not in this process
    _helper_lock = threading.Lock()  # another thread of the parent may have held it at the fork


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)

# torch.set_num_threads sets the count of the calling thread and of threads that have not run PyTorch
# yet; a thread that has keeps its own (GNU OpenMP's count is per thread). A TorchBackend's thread
# count is the process's (README), so a thread that ran a model before the last count was set takes
# it on its next run: a server's worker thread ran a model loaded with threads=1 at the count of the
# one it had served before. A count the caller set in that thread itself (torch.set_num_threads since the
# thread's last run) is the caller's, and kept.
_threads_setting: tuple[int, int] = (0, 0)  # (generation, count) of the last count a TorchBackend set
_threads_lock = threading.Lock()
_thread_generation = threading.local()  # .value: (generation, count) this thread's count was left at


def _set_threads(torch_mod: Any, count: int) -> None:
    """Make ``count`` the process's PyTorch thread count (see :data:`_threads_setting`)."""
    global _threads_setting
    with _threads_lock:
        generation = _threads_setting[0] + 1
        _threads_setting = (generation, count)
    if torch_mod.get_num_threads() != count:
        torch_mod.set_num_threads(count)
    _thread_generation.value = (generation, count)


def _follow_threads(torch_mod: Any) -> None:
    """Before a run: a thread that ran PyTorch before the last :func:`_set_threads` takes its count, unless
    the caller set the thread's count itself since its last run (it no longer reads what it was left at).
    A thread new to it starts at the process's count anyway, or at one set by the caller since."""
    generation, count = _threads_setting
    seen = getattr(_thread_generation, "value", None)
    if seen is not None and seen[0] == generation:
        return
    current = torch_mod.get_num_threads()
    if seen is not None and current == seen[1] and current != count:
        torch_mod.set_num_threads(count)
        current = count
    _thread_generation.value = (generation, current)


# TF32 (see the module docstring). Runs in flight count, so that concurrent runs of FP32 models leave the
# switches as the first found them, whichever ends last.
_ieee_lock = threading.Lock()
_ieee_runs = 0
_ieee_saved: list[Any] = []  # the switches' values before the first run in flight


def _tf32_switches(torch_mod: Any) -> list[tuple[Any, str, Any]]:
    """``(object, attribute, IEEE value)`` for PyTorch's TF32 switches of CUDA matmuls and cuDNN: the
    per-operator ``fp32_precision`` of PyTorch 2.9+ (whose older ``allow_tf32`` flags it deprecates, and
    mixed with which its ``cudnn.allow_tf32`` getter raises), else the ``allow_tf32`` flags."""
    cuda, cudnn = torch_mod.backends.cuda.matmul, torch_mod.backends.cudnn
    conv, rnn = getattr(cudnn, "conv", None), getattr(cudnn, "rnn", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(cuda, "fp32_precision", "ieee"), (conv, "fp32_precision", "ieee")] + (
            [(rnn, "fp32_precision", "ieee")] if rnn is not None else [])  # conv and rnn alike: no mixed state
    return [(cuda, "allow_tf32", False), (cudnn, "allow_tf32", False)]


@contextlib.contextmanager
def _ieee_fp32(torch_mod: Any) -> Iterator[None]:
    """PyTorch's TF32 switches off for the block. When the last block in flight ends, each is put back
    to what the process had before the first began, unless something changed it meanwhile (the caller's
    own setting then stands)."""
    global _ieee_runs, _ieee_saved
    switches = _tf32_switches(torch_mod)
    with _ieee_lock:
        if _ieee_runs == 0:
            _ieee_saved = [getattr(obj, name) for obj, name, _ in switches]
            for obj, name, value in switches:
                setattr(obj, name, value)
        _ieee_runs += 1
    try:
        yield
    finally:
        with _ieee_lock:
            _ieee_runs -= 1
            if _ieee_runs == 0:
                for (obj, name, value), before in zip(switches, _ieee_saved, strict=True):
                    if getattr(obj, name) == value:
                        setattr(obj, name, before)
                _ieee_saved = []


def clear_of_fork(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)``, run on a helper thread when called on the thread that forked this
    process, whose OpenMP team is its parent's (see the module docstring); else right here."""
    global _helper
    if _forked_thread is None or threading.get_ident() != _forked_thread:
        return fn(*args, **kwargs)
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(1, thread_name_prefix="pvt-deploy-after-fork")
        helper = _helper
    return helper.submit(fn, *args, **kwargs).result()


# what PyTorch's profiler (Kineto) prints on stderr as it starts and stops, whatever the log level:
# "USDT:2026-12-06 17:00:35 4839:4839 SyncActivityProfilerHandler.cpp:52] profiler_start"
_KINETO_NOTE = re.compile(r"^(USDT|STAGE):\S+ \S+ \d+:\d+ \w+\.cpp:\d+\] ")


def _kineto_notes_hidden() -> contextlib.AbstractContextManager[HeldStderr]:
    """Inside, :data:`_KINETO_NOTE`'s lines are kept off the process's stderr (file descriptor 2), through the one
    hold on it (:func:`~pvt_deploy.utils.stderr.stderr_held`): ``bench --profile`` printed them through its
    progress line. The rest is written after, in its order."""
    return stderr_held(lambda line: _KINETO_NOTE.match(line) is not None)


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once).

    Linux: the distinct (package, core) pairs of the CPUs in our affinity mask, so a container
    limited to 4 CPUs of a 64-core host answers 4 (``--cpuset-cpus``), and no more than its CPU
    quota allows (``docker run --cpus 4``, a Kubernetes CPU limit: :func:`cpu_quota`). Elsewhere
    ``os.cpu_count()``.
    """
    cpus = cpu_per_core()
    if cpus is None:
        try:
            count = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            count = os.cpu_count() or 1
    else:
        count = len(cpus)
    return max(1, min(count, cpu_quota() or count))


#: Where Linux mounts the cgroup file systems (a test points it at a tree of its own).
CGROUP_ROOT = "/sys/fs/cgroup"


def cpu_quota() -> int | None:
    """The CPUs this process's cgroup CPU quota gives it, rounded up (``docker run --cpus 1.5``: 2), the
    smallest along its cgroup's path; ``None`` where none is set or it cannot be read (another OS). A
    quota leaves every CPU of the host in the affinity mask, so a 2-CPU container on a 64-core host ran
    a thread per host core (ONNX Runtime's spinning between operators) on the CPU time of two."""
    import math

    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    files: tuple[str, ...]
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: cpu.max holds "max 100000" (no quota) or "200000 100000"
            mount, files = CGROUP_ROOT, ("cpu.max",)
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu.cfs_quota_us (-1: none), cpu.cfs_period_us
            mount, files = os.path.join(CGROUP_ROOT, controllers), ("cpu.cfs_quota_us", "cpu.cfs_period_us")
            if not os.path.isdir(mount):  # "cpu,cpuacct" mounted as cpu
                mount = os.path.join(CGROUP_ROOT, "cpu")
        else:
            continue
        parts = [p for p in path.split("/") if p]
        # the process's cgroup and each one above it (in a container, the mount's root is its own)
        for depth in range(len(parts), -1, -1):
            values: list[str] = []
            try:
                for name in files:
                    with open(os.path.join(mount, *parts[:depth], name), encoding="utf-8") as f:
                        values += f.read().split()
                quota, period = float(values[0]), float(values[1])
            except (OSError, ValueError, IndexError):  # not there, or "max": no quota
                continue
            if quota > 0 and period > 0:
                quotas.append(quota / period)
    return max(1, math.ceil(min(quotas) - 1e-9)) if quotas else None


def cpu_per_core() -> list[int] | None:
    """One logical CPU of each physical core this process may run on (the lowest-numbered), in core
    order; ``None`` where the topology cannot be read (another OS, a sandbox without ``/sys``)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return None
    first: dict[tuple[str, str], int] = {}
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with open(f"{base}/physical_package_id", encoding="utf-8") as f:
                package = f.read().strip()
            with open(f"{base}/core_id", encoding="utf-8") as f:
                core = f.read().strip()
        except OSError:
            return None
        first.setdefault((package, core), cpu)
    return sorted(first.values()) or None


def _resolve_device(device: str | int | None) -> torch.device:
    """``None``/``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error, and so is
    ``cuda:N`` past the GPUs there are (CUDA's 'invalid device ordinal' came up, as a traceback, from
    deep inside the first copy to it). The TensorRT backend resolves its device here too."""
    import torch as torch_mod

    text = (device_text(device) or "auto").lower()
    if text in ("auto", ""):
        return torch_mod.device("cuda" if torch_mod.cuda.is_available() else "cpu")
    if text.isdigit():
        text = f"cuda:{text}"
    if text == "gpu" or text.startswith("gpu:"):  # the same alias the ONNX Runtime backend takes
        text = "cuda" + text[3:]
    try:
        dev = torch_mod.device(text)
    except RuntimeError as e:
        raise InputError(f"unknown torch device {device!r} (use cpu, cuda or cuda:N)") from e
    if dev.type == "cuda" and not torch_mod.cuda.is_available():
        raise BackendUnavailableError(f"device {device!r} asked for, but this PyTorch has no usable CUDA "
                                      f"(torch {torch_mod.__version__})",
                                      hint="use --device cpu, or install a CUDA build of PyTorch")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported torch device {device!r} (use cpu, cuda or cuda:N)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= (count := torch_mod.cuda.device_count()):
        raise no_such_gpu(device, dev.index, count)
    return dev


#: What a forward pass needs beside its largest attention (``peak_bytes``): its other activations, which grow
#: with the pixels (stage 1's MLP, 8x its channels at 1/4 scale; a detector's or segmenter's maps), and the
#: allocator's room. Measured on the CPU (2 threads) as the peak resident memory a forward pass adds over a
#: 64 px one, less ``peak_bytes``: pvt_tiny (RetinaNet) 77 MB at 512 and 162 MB at 1024, pvt_v2_b2-cls 130 MB
#: at 1024, pvt_v2_b0-cls 62 / 63 / 145 MB at 512 / 1024 / 1536 and 72 MB at 2x768, pvt_v2_b0-seg 70 MB at
#: 1024 (all within 48 MB + 108 bytes per input pixel): a pass peaks at 1.05-1.3x ``peak_bytes`` at 1024-1536 px,
#: so an input whose attention alone took all the free memory did not fit.
REST_PER_PIXEL = 128
REST_FIXED = 64 << 20


def forward_bytes(module: Any, batch: int, height: int, width: int) -> int | None:
    """Bytes a forward pass of ``module`` on ``batch`` images of ``height`` x ``width`` needs at its peak: its
    ``peak_bytes`` (its largest attention) and the rest of the pass (:data:`REST_PER_PIXEL`,
    :data:`REST_FIXED`). None for a module that cannot say (no ``peak_bytes``, or not a PVT). Counted from
    its layers' settings, so a module built on PyTorch's ``meta`` device (no weights) answers too."""
    attention = getattr(module, "peak_bytes", None)
    largest = attention(batch, height, width) if callable(attention) else None
    return None if largest is None else int(largest) + REST_FIXED + REST_PER_PIXEL * batch * height * width


def refuse_size(module: Any, batch: int, height: int, width: int, free_memory: Callable[[], int | None], *,
                where: str = "in this machine's memory", held: tuple[int, str] | None = None) -> None:
    """Refuse (a :class:`ShapeError`) ``batch`` pictures of ``height`` x ``width`` where a forward pass of
    ``module`` (:func:`forward_bytes`) needs more than ``free_memory()``, naming the largest square size that
    fits. ``held``: bytes per input pixel held beside the pass, and what holds them (the export's pictures
    preprocessed at that size)."""
    per_pixel, what = held or (0, "")

    def estimate(h: int, w: int) -> int | None:
        need = forward_bytes(module, batch, h, w)
        return None if need is None else need + per_pixel * h * w

    need = estimate(height, width)
    free = free_memory() if need else None
    if need is None or free is None or need <= free:
        return
    fits, lo, hi = None, 1, max(height, width) // 32  # the largest square multiple of 32 that fits
    while lo <= hi:
        mid = (lo + hi) // 2
        if (estimate(32 * mid, 32 * mid) or 0) <= free:
            fits, lo = 32 * mid, mid + 1
        else:
            hi = mid - 1
    more = f" or a smaller {option('batch')}" if batch > 1 else ""
    holds = (f"PyTorch's largest attention, the rest of its forward pass and {what}" if what
             else "PyTorch's largest attention and the rest of its forward pass")
    raise ShapeError(f"{option('imgsz')} {height}x{width} at {option('batch')} {batch} needs about "
                     f"{gigabytes(need)} for {holds}, more than the {gigabytes(free)} free {where}",
                     hint=f"pass {option('imgsz')} {fits} or less{more}" if fits else f"free some memory{more}")


class TorchBackend(Backend):
    """Run a contract-following ``nn.Module`` (``DeployModule``) with PyTorch eager.

    ``module`` must expose ``output_names`` (and optionally ``input_names``) and return a tuple in
    that order. ``precision`` is ``fp32`` or ``fp16`` (autocast, CUDA only). ``threads`` sets
    ``torch.set_num_threads`` (default: physical cores; the setting is the process's: each thread that runs
    a model takes the last one set, see :func:`_follow_threads`).
    ``outputs`` may describe the output specs (names, dtypes, symbolic shapes) for ``info``.
    """

    gil_per_operator = True

    def __init__(self, module: nn.Module, *, device: str | None = None, precision: str = "fp32",
                 threads: int | None = None, outputs: Sequence[TensorSpec] | None = None,
                 name: str | None = None) -> None:
        import torch

        self._torch = torch
        threads = thread_count(threads)
        self._device = _resolve_device(device)
        precision = (precision or "fp32").lower()
        if precision not in ("fp32", "fp16"):
            raise InputError(f"PyTorch eager runs fp32 or fp16, not {precision}",
                             hint="int8 runs with ONNX Runtime (model.int8.onnx) or TensorRT")
        if precision == "fp16" and self._device.type != "cuda":
            # bench and check have no --precision: a backend's label (--backends torch) picks it
            fp32 = (f"{option('backend')} torch" if option("backend").lstrip("-") == "backends"
                    else f"{option('precision')} fp32")
            raise BackendUnavailableError("PyTorch fp16 needs a CUDA device (half precision on a CPU is "
                                          "slower than fp32)", hint=f"use {fp32} on a CPU")
        self.precision = precision
        if self._device.type == "cpu":
            _set_threads(torch, threads or physical_cores())
        elif threads:
            _set_threads(torch, threads)
        names = getattr(module, "output_names", None)
        if not names:
            raise InputError("the module passed to TorchBackend has no output_names")
        self._output_names = tuple(str(n) for n in names)
        input_names = tuple(getattr(module, "input_names", ("images",)))
        self._input_name = input_names[0]
        try:
            self._module: nn.Module | None = module.to(self._device).eval()
        except RuntimeError as e:  # CUDA out of memory, CUDA in a forked child, a driver that fails: one line
            text = one_line(e)
            raise PvtDeployError(f"PyTorch cannot put the model on {self._device}: {text}",
                                 hint="free GPU memory (nvidia-smi lists who holds it), or use --device cpu"
                                 if "out of memory" in text.lower() else "use --device cpu") from e
        if outputs is not None:
            self._outputs = [s for s in outputs if s.name in self._output_names]
        else:
            self._outputs = [TensorSpec(n, "int32" if n in ("seg_mask", "num_dets", "det_classes") else "float32",
                                        None) for n in self._output_names]  # shapes not known here
        self._inputs = [TensorSpec(self._input_name, "float32", _DEFAULT_INPUT.shape)]
        details: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        if name:
            details["model"] = name
        if self._device.type == "cuda":
            details["gpu"] = torch.cuda.get_device_name(self._device)
        self.info = BackendInfo(name="torch", device=str(self._device), precision=precision, details=details)
        self._fits: tuple[int, ...] | None = None  # the last input shape check_size let through

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def module(self) -> nn.Module:
        if self._module is None:
            raise InputError("this TorchBackend is closed")
        return self._module

    def _to_tensor(self, feed: Mapping[str, np.ndarray]) -> torch.Tensor:
        array = feed_array(feed, self._input_name)
        if array.ndim != 4 or array.shape[1] != 3:
            raise ShapeError(f"input {self._input_name!r} must be (N, 3, H, W), got {list(array.shape)}")
        if array.dtype != np.float32 or not array.flags.writeable:
            # a copy: PyTorch warns of 'undefined behavior' on read-only memory (np.frombuffer of a request's bytes)
            array = array.astype(np.float32)
        return self._torch.from_numpy(np.ascontiguousarray(array))  # moved to the GPU in _forward

    def memory_needed(self, batch: int, height: int, width: int) -> int | None:
        """Bytes a forward pass on ``batch`` images of ``height`` x ``width`` needs at its peak: the module's
        ``peak_bytes`` (its largest attention) and the rest of the pass (:data:`REST_PER_PIXEL`,
        :data:`REST_FIXED`). None for a module that cannot say (no ``peak_bytes``, or not a PVT)."""
        return forward_bytes(self.module, batch, height, width)

    def check_size(self, batch: int, height: int, width: int) -> None:
        """Refuse an input whose forward pass needs more memory than the device has free: the module's
        ``peak_bytes`` (:meth:`~pvt_deploy.models.DeployModule.peak_bytes`: an attention's scores, which
        grow with the square of the pixels) and the rest of the pass (:meth:`memory_needed`) against :func:`~pvt_deploy.utils.cpu.available_memory` on the
        CPU and on an integrated GPU (a Jetson's is the machine's memory), the free CUDA memory on a
        discrete GPU. Such a size was bad input answered as a failure of the tool (5000x5000: "PyTorch
        failed: ... you tried to allocate 152100000000 bytes", exit 1), or, where the allocation was
        granted, a process the kernel killed."""
        refuse_size(self.module, batch, height, width, self._free_memory,
                    where=f"on {self._device}" if self._device.type == "cuda" else "in this machine's memory")

    def _free_memory(self) -> int | None:
        """Bytes the device can still give this process (None: cannot tell)."""
        if self._device.type != "cuda":
            from pvt_deploy.utils.cpu import available_memory

            return available_memory()
        from pvt_deploy.utils.cpu import available_memory

        cuda = self._torch.cuda
        cached = cuda.memory_reserved(self._device) - cuda.memory_allocated(self._device)  # PyTorch's, unused: free
        if cuda.get_device_properties(self._device).is_integrated:
            # A Jetson's GPU takes the machine's memory, and CUDA's free figure there leaves out what the OS
            # frees on demand (page cache, swap; cuMemGetInfo's note on Tegra): hundreds of MB with GBs to
            # spare refused sizes that fit. Judged as on the CPU (MemAvailable, a container's limit).
            available = available_memory()
            if available is not None:
                return int(available + cached)
        free, _ = cuda.mem_get_info(self._device)
        return int(free + cached)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self._to_tensor(feed)
        if tuple(x.shape) != self._fits:  # before the first step allocates
            self.check_size(x.shape[0], x.shape[2], x.shape[3])
            self._fits = tuple(x.shape)
        try:
            return clear_of_fork(self._forward, x)
        except RuntimeError as e:  # as the ONNX Runtime backend reports its run's errors: one line
            text = one_line(e)
            if "out of memory" in text.lower():  # CUDA's message mentions max_split_size_mb: not a shape error
                raise PvtDeployError(f"PyTorch ran out of memory on the input shape {list(x.shape)}: {text}",
                                     hint="a smaller batch or input size") from e
            if "size" in text.lower() or "shape" in text.lower():
                raise ShapeError(f"PyTorch cannot run the input shape {list(x.shape)}: {text}") from e
            raise PvtDeployError(f"PyTorch failed: {text}") from e

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        torch = self._torch
        module = self.module
        _follow_threads(torch)
        on_gpu = self._device.type != "cpu"
        if on_gpu:  # inside infer's error mapping: a CUDA failure is one line too
            x = x.to(self._device)
        exact = _ieee_fp32(torch) if on_gpu and self.precision == "fp32" else contextlib.nullcontext()
        with torch.inference_mode(), exact:
            if self.precision == "fp16":
                with torch.autocast("cuda", dtype=torch.float16):
                    outs = module(x)
            else:
                outs = module(x)
        if isinstance(outs, torch.Tensor):
            outs = (outs,)
        result: dict[str, np.ndarray] = {}
        for name, t in zip(self._output_names, outs, strict=True):
            if t.dtype in (torch.float16, torch.bfloat16, torch.float64):
                t = t.float()
            result[name] = t.detach().cpu().numpy()
        return result

    def profile(self, feed: Mapping[str, np.ndarray], calls: int = 10) -> dict[str, Any]:
        """Time per ATen operator (see :meth:`Backend.profile`), from ``torch.profiler``: one untimed call, then
        ``calls`` profiled ones; each operator's *self* time (its children's left out, so that ``aten::linear``
        and the ``aten::addmm`` under it are not counted twice): CPU time on the CPU, the time of the CUDA
        kernels it launched on a GPU."""
        from torch.profiler import DeviceType, ProfilerActivity
        from torch.profiler import profile as profiler

        self.infer(feed)
        on_gpu = self._device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
        with _kineto_notes_hidden(), profiler(activities=activities) as prof:
            for _ in range(calls):
                self.infer(feed)
        records = []
        for event in prof.events():
            if event.device_type != DeviceType.CPU:  # a kernel: counted in the self time of the operator that launched it
                continue
            # self_device_time_total since PyTorch 2.4, self_cuda_time_total before
            us = float((getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
                        if on_gpu else event.self_cpu_time_total) or 0)
            if us > 0:
                records.append((str(event.name), None, us / 1000, None))
        if not records:
            raise PvtDeployError("torch.profiler recorded no operator times")
        return operator_profile(records, calls)

    def close(self) -> None:
        if self._module is None:
            return
        self._module = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
