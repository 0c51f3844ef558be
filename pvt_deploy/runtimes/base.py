"""The one narrow runtime protocol every backend implements.

A backend runs a graph on a *preprocessed* batch and returns named outputs. It knows nothing about
PVT, tasks, images or post-processing: the shared pre/post-processing in ``pvt_deploy.tasks`` turns
images into the feed and outputs into results, for every backend alike.

Contract (all backends):
  * ``inputs`` / ``outputs``: the tensor specs, symbolic dims as strings (``"batch"``, ``"height"``).
  * ``infer(feed)``: ``feed`` maps input names to numpy arrays (C-contiguous, dtype as in the spec);
    returns a dict mapping every output name to a numpy array on the host.
  * ``close()`` frees sessions, engines and device memory; backends are context managers.
  * ``profile(feed, calls)``: where a call's time goes, per operator type (``bench --profile``), from
    a run of its own; a backend that cannot say raises, saying why.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pvt_deploy.utils import joined_lines

if TYPE_CHECKING:
    from pvt_deploy.errors import InputError


def device_text(device: object) -> str | None:
    """A ``device`` setting as the backends read it: ``None``, a string (``"cpu"``, ``"cuda:1"``), or a
    GPU index (``device=0``, as Ultralytics takes it, is ``"0"``: CUDA device 0). Anything else (a
    bool, a float, a ``torch.device``) is an :class:`~pvt_deploy.errors.InputError`, not an
    AttributeError from deep inside a backend."""
    from pvt_deploy.utils import is_integer

    if device is None or isinstance(device, str):
        return device
    if is_integer(device) and int(device) >= 0:
        return str(int(device))
    from pvt_deploy.errors import InputError

    raise InputError(f"device must be 'cpu', 'cuda', 'cuda:N' or a GPU index N, got {device!r}")


def no_such_gpu(device: object, index: int, count: int) -> InputError:
    """The one-line :class:`~pvt_deploy.errors.InputError` for ``device`` asking for CUDA device ``index``
    where ``count`` are visible: the PyTorch, TensorRT and ONNX Runtime backends refuse it alike (CUDA's own
    failure, 'invalid device ordinal', is a traceback blamed on the model)."""
    from pvt_deploy.errors import InputError

    return InputError(f"device {device!r}: there is no CUDA device {index} here ({count} visible, "
                      f"{'cuda:0' if count == 1 else f'cuda:0 to cuda:{count - 1}'})",
                      hint="nvidia-smi lists the GPUs; CUDA_VISIBLE_DEVICES renumbers them from 0")


def thread_count(threads: object, what: str = "threads") -> int | None:
    """A ``threads`` setting: ``None`` or ``0`` (one per physical core, the default) or a whole number
    >= 1; a negative number, a float, a string or a bool is an :class:`~pvt_deploy.errors.InputError`
    (ONNX Runtime took ``-1`` silently and ``2.5`` as 2; PyTorch raised a RuntimeError)."""
    from pvt_deploy.utils import is_integer

    if threads is None:
        return None
    if not is_integer(threads) or int(threads) < 0:
        from pvt_deploy.errors import InputError

        raise InputError(f"{what} must be a whole number >= 1 (or 0 / None: one per physical core), got {threads!r}")
    return int(threads) or None


def one_line(text: object, limit: int = 300) -> str:
    """A runtime's error message for one line of ours: whitespace and newlines collapsed, cut to ``limit``
    characters (ONNX Runtime's, PyTorch's and Triton's run to paragraphs)."""
    line = joined_lines(text)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def flag(name: str, value: object) -> bool:
    """A yes/no setting (``shard=``, ``pin=``, ``predict(stream=)``...): ``True``/``False``, numpy's
    too. Anything else, such as ``"no"`` (which Python reads as true) or ``None``, is an
    :class:`~pvt_deploy.errors.InputError` rather than a guess."""
    if not isinstance(value, (bool, np.bool_)):
        from pvt_deploy.errors import InputError

        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def feed_array(feed: object, name: str) -> np.ndarray:
    """Input ``name`` of a backend's ``feed`` as a numpy array, checked the same way for every
    backend: a feed that is not a mapping of input names, or lacks ``name``, is an
    :class:`~pvt_deploy.errors.InputError`; one with no values in it (a batch of no images, an image
    of no pixels) a :class:`~pvt_deploy.errors.ShapeError`, where ONNX Runtime had printed its
    kernel's error and PyTorch raised its own; complex, object or text values an InputError (they
    were cast, or failed in the cast). Shape and exact dtype are the backend's to check."""
    from pvt_deploy.errors import InputError, ShapeError

    if not isinstance(feed, Mapping):
        raise InputError(f"a feed maps input names to arrays ({{{name!r}: array}}), got {type(feed).__name__}")
    if name not in feed:
        raise InputError(f"missing input {name!r} (got {', '.join(map(str, feed)) or 'nothing'})")
    try:
        array = np.asarray(feed[name])
    except ValueError as e:  # a ragged nested list
        raise ShapeError(f"input {name!r} is not an array of one shape ({e})") from None
    if array.size == 0 and array.ndim:
        raise ShapeError(f"input {name!r} has shape {list(array.shape)}: no values to run")
    if array.dtype.kind not in "biuf":
        raise InputError(f"input {name!r} holds {array.dtype} values, not real numbers")
    return array


def operator_profile(records: Iterable[tuple[str, str | None, float, str | None]], calls: int) -> dict[str, Any]:
    """What :meth:`Backend.profile` returns, from ``(op, node, ms, provider)`` records of ``calls`` profiled
    calls, one per run of a node (``node`` its name, or None where nodes have none, as PyTorch's operators):
    ``{"calls", "total_ms", "ops"}``, ``total_ms`` the operators' time per call and ``ops`` one entry per
    operator type and provider, slowest first: ``op``, ``nodes`` (distinct nodes of the type, or runs per
    call of unnamed ones), ``ms`` per call, ``share`` of ``total_ms`` (the shares add up to 1), and
    ``provider`` where the records name one."""
    times: dict[tuple[str, str | None], float] = {}
    names: dict[tuple[str, str | None], set[str]] = {}
    unnamed: dict[tuple[str, str | None], int] = {}
    for op, node, ms, provider in records:
        key = (op, provider)
        times[key] = times.get(key, 0.0) + float(ms)
        if node is None:
            unnamed[key] = unnamed.get(key, 0) + 1
        else:
            names.setdefault(key, set()).add(node)
    total = sum(times.values())
    ops = []
    for key, ms in sorted(times.items(), key=lambda kv: (-kv[1], kv[0][0])):
        nodes = len(names.get(key, ())) + round(unnamed.get(key, 0) / calls)
        entry: dict[str, Any] = {"op": key[0], "nodes": nodes, "ms": round(ms / calls, 4),
                                 "share": ms / total if total > 0 else 0.0}
        if key[1] is not None:
            entry["provider"] = key[1]
        ops.append(entry)
    return {"calls": calls, "total_ms": round(total / calls, 4), "ops": ops}


@dataclass(frozen=True)
class TensorSpec:
    """A graph input's or output's name, dtype and shape (symbolic dims by name), as the manifest and
    ``info --json`` write it. ``shape`` None: the graph declares none (another tool's output of unknown
    rank, or one that is no tensor: a sequence), ``null`` in the JSON; ``()`` is a scalar's."""

    name: str
    dtype: str  # numpy dtype name: "float32", "float16", "int64", ...
    shape: tuple[int | str, ...] | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": None if self.shape is None else list(self.shape)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorSpec:
        shape = d["shape"]
        return cls(name=str(d["name"]), dtype=str(d["dtype"]), shape=None if shape is None else tuple(shape))


@dataclass
class BackendInfo:
    """What a backend reports about itself (shown by ``info``, ``bench`` and ``check``)."""

    name: str  # "torch", "onnxruntime", "tensorrt", "triton"
    device: str  # "cpu", "cuda:0", "CUDAExecutionProvider", "triton://host:8000"
    precision: str  # "fp32", "fp16", "int8"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def on_gpu(self) -> bool:
        """Whether the backend runs on this machine's GPU: TensorRT, PyTorch on ``cuda:N``, ONNX
        Runtime on its CUDA or TensorRT provider (a Triton server's hardware is the server's)."""
        from pvt_deploy.runtimes.ort_providers import GPU_PROVIDERS

        return self.name == "tensorrt" or self.device.startswith("cuda") or self.device in GPU_PROVIDERS


class Backend(abc.ABC):
    """Base class of all runtimes. Subclasses set ``info``, ``_inputs`` and ``_outputs`` when they
    load, and implement ``infer`` (and ``close`` when they hold resources)."""

    info: BackendInfo
    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]
    # True where one ``infer`` takes the GIL back many times (PyTorch eager: once per operator), so a
    # threaded pipeline shortens Python's switch interval for it (see pvt_deploy.tasks.pipeline).
    gil_per_operator: bool = False
    # The smallest batch that :meth:`submit` runs in the background, returning before the call ends (the
    # ONNX Runtime CPU backend's batch shards; 0: none), so a pipeline begins the next batch before it
    # waits for this one.
    background_batch: int = 0

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self._outputs)

    @abc.abstractmethod
    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def submit(self, feed: Mapping[str, np.ndarray], *, lane: bool = False) -> Callable[[], dict[str, np.ndarray]]:
        """``infer(feed)`` begun; the function returned waits for its outputs (and raises its error). A
        backend that can run a call while its caller prepares the next returns at once (the ONNX Runtime
        CPU backend's batch shards), so a pipeline can queue the next batch behind it; this default runs
        the call before it returns. ``lane``: run a batch smaller than :attr:`background_batch` in the
        background too, on one thread of its own (the ONNX Runtime CPU backend's shard threads): several
        calls in flight then give more pictures a second, each slower alone (for many pictures, not for a
        live feed's latency). The outputs are ``infer``'s, to float rounding."""
        outputs = self.infer(feed)
        return lambda: outputs

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions and device memory. Idempotent."""

    def check_size(self, batch: int, height: int, width: int) -> None:  # noqa: B027 - optional hook
        """Refuse, before anything runs, ``batch`` images of ``height`` x ``width`` that this backend
        cannot run here (an :class:`~pvt_deploy.errors.InputError`). The graph's declared range is
        checked by the caller; this is what the runtime knows beyond it (the PyTorch backend: the
        memory the input needs)."""

    def warmup(self, feed: Mapping[str, np.ndarray], iters: int = 1) -> None:
        for _ in range(iters):
            self.infer(feed)

    def profile(self, feed: Mapping[str, np.ndarray], calls: int = 10) -> dict[str, Any]:
        """Where the time of ``infer(feed)`` goes, per operator type: one untimed call, then ``calls``
        profiled ones (:func:`operator_profile`'s dict). Profiling slows a run, so this is a run of its
        own, apart from any that is timed (``bench --profile``, as trtexec's ``--separateProfileRun``).
        This default: the backend cannot say (a :class:`~pvt_deploy.errors.BackendUnavailableError`)."""
        from pvt_deploy.errors import BackendUnavailableError

        raise BackendUnavailableError(f"the {self.info.name} backend cannot time its operators")

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"{type(self).__name__}(name={i.name!r}, device={i.device!r}, precision={i.precision!r})"
