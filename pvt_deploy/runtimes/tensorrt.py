"""TensorRT runtime: load a ``model.engine`` (refusing one built for another GPU, TensorRT or platform) and run it.

The engine is a plain TensorRT plan; everything known about how it was built lives in the manifest's
``tensorrt`` section. Before deserialising, :func:`check_engine_compatibility` compares that section
with this machine, because TensorRT's own refusal of a foreign plan is a cryptic log line (or, across
GPUs of the same architecture, silent slowness). Device buffers are torch CUDA tensors, so no pycuda.

TensorRT 10 and 11 are both supported by asking the installed module what it offers (``hasattr``),
never by parsing its version string. ``tensorrt`` and ``torch`` are imported inside functions: this
module is imported by the loader and by ``doctor`` on machines that have neither.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import platform
import re
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from pvt_deploy.errors import (
    BackendUnavailableError,
    EngineMismatchError,
    InputError,
    PvtDeployError,
    ShapeError,
)
from pvt_deploy.manifest import EXPORT_FLAGS, MANIFEST_NAME, read_manifest
from pvt_deploy.runtimes.base import Backend, BackendInfo, TensorSpec, feed_array, flag, operator_profile
from pvt_deploy.utils import joined_lines, shell_quote
from pvt_deploy.utils.files import sha256_file

if TYPE_CHECKING:
    import tensorrt
    import torch

__all__ = [
    "TRT_INSTALL_HINT",
    "TRT_LOAD_HINT",
    "TensorRTBackend",
    "check_engine_compatibility",
    "check_profile_shape",
    "create_trt",
    "cuda_device_info",
    "engine_precision",
    "host_platform",
    "load_engine",
    "rebuild_command",
    "require_tensorrt",
    "tensorrt_version",
    "tf32_capable",
    "trt_logger",
]

log = logging.getLogger("pvt_deploy.tensorrt")

ENGINE_NAME = "model.engine"
TRT_INSTALL_HINT = (
    "to get it, build the Docker image: docker build -f docker/Dockerfile -t pvt-deploy . "
    "(on a Jetson: -f docker/Dockerfile.jetson) "
    "- or, on a machine with an NVIDIA GPU and CUDA: pip install 'pvt-deploy[trt]' or pip install tensorrt"
)
# The bindings are there but a library under them is not: in a container, the driver libraries that the
# NVIDIA runtime mounts (on a Jetson, libnvinfer links the Tegra ones, e.g. libnvdla_compiler.so).
TRT_LOAD_HINT = (
    "in a container, start it with the GPU: docker run --gpus all ... (on a Jetson: --runtime nvidia, which "
    "mounts the Tegra driver libraries TensorRT links); elsewhere reinstall TensorRT so that its libraries "
    "match its Python bindings"
)
# Hardware-compatible (AMPERE_PLUS) engines run on any GPU of compute capability 8.0 or newer.
AMPERE_PLUS = (8, 0)
# Version-compatible engines load in later releases of the same major, and across these majors
# (builder major -> runtime majors), as TensorRT's support matrix lists: 8 -> 9/10, 10 -> 11.
VERSION_COMPATIBLE_MAJORS = {8: (9, 10), 10: (11,)}


# --------------------------------------------------------------------------------------------------
# Finding TensorRT and the GPU
# --------------------------------------------------------------------------------------------------


def require_tensorrt() -> ModuleType:
    """Return the real ``tensorrt`` module or raise a one-line :class:`BackendUnavailableError`.

    Call this before any expensive work. ``import tensorrt`` can succeed without TensorRT: the
    ``tensorrt-stubs`` package (type stubs only) leaves an empty namespace package behind, and the
    PyPI ``tensorrt`` meta-package can be half installed. So the module must also carry the
    builder/runtime classes and a version.
    """
    try:
        import tensorrt as trt
    except ModuleNotFoundError as e:  # no tensorrt package, or one it imports (a half-installed meta-package)
        raise BackendUnavailableError(f"TensorRT is not installed ({e.msg})", hint=TRT_INSTALL_HINT) from e
    except ImportError as e:  # the package is there, its extension or a library that links is not
        raise BackendUnavailableError(f"TensorRT is installed but its libraries do not load ({e.msg})",
                                      hint=TRT_LOAD_HINT) from e
    except OSError as e:  # libnvinfer.so missing or for another CUDA
        raise BackendUnavailableError(f"TensorRT is installed but its libraries do not load ({e})",
                                      hint=TRT_LOAD_HINT) from e
    if not all(hasattr(trt, attr) for attr in ("__version__", "Builder", "Runtime", "Logger")):
        where = next(iter(getattr(trt, "__path__", None) or []), None) or getattr(trt, "__file__", None) or "?"
        raise BackendUnavailableError(
            f"TensorRT is not installed (the `tensorrt` package at {where} has no library in it, only type "
            f"stubs)", hint=TRT_INSTALL_HINT)
    return trt


def tensorrt_version() -> str | None:
    """Installed TensorRT version, or None when there is no usable TensorRT."""
    try:
        return str(require_tensorrt().__version__)
    except BackendUnavailableError:
        return None


def cuda_device_info(index: int = 0) -> tuple[str | None, str | None]:
    """``(GPU name, compute capability "major.minor")`` of CUDA device ``index``; ``(None, None)`` if none.

    torch is asked first. A TensorRT install does not imply a CUDA build of torch (the TensorRT
    wheels carry their own CUDA libraries), so the CUDA driver API is the fallback: ``libcuda`` is
    present wherever an NVIDIA driver is, and three calls give the name and capability.
    """
    try:
        import torch

        if torch.cuda.is_available() and index < torch.cuda.device_count():
            major, minor = torch.cuda.get_device_capability(index)
            return torch.cuda.get_device_name(index), f"{major}.{minor}"
    except Exception as e:  # a broken torch must not hide the GPU
        log.debug("torch.cuda could not describe device %d: %s", index, e)
    return _driver_device_info(index)


def _driver_device_info(index: int) -> tuple[str | None, str | None]:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None, None
    dev = ctypes.c_int()
    major, minor = ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    # 75/76: CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR
    if (cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(dev), index) != 0
            or cuda.cuDeviceGetName(name, len(name), dev) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev) != 0):
        return None, None
    return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"


# --------------------------------------------------------------------------------------------------
# TensorRT's log -> Python logging
# --------------------------------------------------------------------------------------------------

_logger_lock = threading.Lock()
_logger_instance: Any = None


def trt_logger() -> tensorrt.ILogger:
    """The process-wide TensorRT logger, routing TensorRT's messages into ``logging``.

    One instance for every Builder/Runtime: TensorRT keeps the first logger it is given, so a second
    one would receive nothing. TensorRT's INFO is chatty (memory-usage lines per layer) and goes to
    DEBUG; its warnings and errors keep their level under the ``pvt_deploy.tensorrt`` logger. The
    last errors are kept so a failed build or load can say why in its one-line message.
    """
    global _logger_instance
    with _logger_lock:
        if _logger_instance is None:
            _logger_instance = _make_logger()
        return _logger_instance  # type: ignore[no-any-return]


def _make_logger() -> tensorrt.ILogger:
    require_tensorrt()
    import tensorrt as trt

    levels = {
        int(trt.ILogger.Severity.INTERNAL_ERROR): logging.CRITICAL,
        int(trt.ILogger.Severity.ERROR): logging.ERROR,
        int(trt.ILogger.Severity.WARNING): logging.WARNING,
        int(trt.ILogger.Severity.INFO): logging.DEBUG,
        int(trt.ILogger.Severity.VERBOSE): 5,
    }

    class TensorRTLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.recent_errors: collections.deque[str] = collections.deque(maxlen=16)
            self.recent_warnings: collections.deque[str] = collections.deque(maxlen=4)

        def log(self, severity: tensorrt.ILogger.Severity, msg: str) -> None:
            level = levels.get(int(severity), logging.WARNING)
            if level >= logging.ERROR:
                self.recent_errors.append(joined_lines(msg))
            elif level == logging.WARNING:
                self.recent_warnings.append(joined_lines(msg))
            if log.isEnabledFor(level):
                log.log(level, "%s", msg)

    return TensorRTLogger()


def last_trt_error(default: str = "no error message from TensorRT") -> str:
    """The most recent error TensorRT logged, as one line (for error messages)."""
    recent = getattr(_logger_instance, "recent_errors", None)
    return recent[-1] if recent else default


def _clear_trt_errors() -> None:
    for name in ("recent_errors", "recent_warnings"):
        recent = getattr(_logger_instance, name, None)
        if recent is not None:
            recent.clear()


def typing_support(trt: Any) -> tuple[bool, frozenset[str]]:
    """(whether networks are built strongly typed, the precision ``BuilderFlag`` names there are).
    TensorRT 10 builds strongly typed networks on request (the creation flag); TensorRT 11 removed
    weak typing (no FP16/INT8 builder flags), so every network is strongly typed, flag or not."""
    flags = frozenset(n for n in ("FP16", "INT8") if hasattr(trt.BuilderFlag, n))
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") or "FP16" not in flags, flags


@overload
def create_trt(kind: Literal["Builder"]) -> tensorrt.Builder: ...
@overload
def create_trt(kind: Literal["Runtime"]) -> tensorrt.Runtime: ...
def create_trt(kind: str) -> Any:
    """``trt.Builder`` or ``trt.Runtime`` (``kind``) on the process-wide logger, or a one-line
    :class:`BackendUnavailableError`.

    Where TensorRT cannot initialise CUDA (no NVIDIA driver, or one too old for the CUDA that
    TensorRT's wheel was built for) it logs why and its factory returns null, which its Python
    binding raises as ``TypeError: pybind11::init(): factory function returned nullptr``.
    """
    import tensorrt as trt

    logger = trt_logger()
    _clear_trt_errors()
    try:
        return getattr(trt, kind)(logger)
    except TypeError as e:
        recent = getattr(_logger_instance, "recent_errors", None) or getattr(_logger_instance, "recent_warnings", None)
        why = recent[-1] if recent else str(e)
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} cannot start here ({why})",
            hint="TensorRT needs an NVIDIA GPU and a driver new enough for the CUDA it was built for "
                 "(nvidia-smi shows both)") from e


# --------------------------------------------------------------------------------------------------
# Compatibility rules (pure)
# --------------------------------------------------------------------------------------------------


def host_platform() -> str:
    """This machine's platform as a TensorRT plan is tied to it: OS and CPU architecture
    (``linux-x86_64``, ``linux-aarch64`` on a Jetson or Grace, ``win32-amd64``). TensorRT's support
    matrix: serialized engines are not portable across platforms."""
    return f"{sys.platform}-{platform.machine().lower()}"


def _version_tuple(version: str) -> tuple[int, int, int]:
    """``"10.13.0.35"`` -> ``(10, 13, 0)``: TensorRT's plan compatibility is by major.minor.patch."""
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:3]]
    return tuple((parts + [0, 0, 0])[:3])  # type: ignore[return-value]


def _cc_tuple(cc: str | None) -> tuple[int, int] | None:
    if cc is None:
        return None
    nums = [int(p) for p in re.findall(r"\d+", str(cc))[:2]]
    return (nums[0], nums[1] if len(nums) > 1 else 0) if nums else None


def tf32_capable(compute_capability: str | None) -> bool:
    """Whether a GPU of this compute capability (``"8.6"``) has TF32 tensor cores: Ampere (8.0) and newer;
    True where it is not known."""
    cc = _cc_tuple(compute_capability)
    return cc is None or cc >= AMPERE_PLUS


def engine_precision(section: Mapping[str, Any]) -> str:
    """What an engine computes in, by its manifest's ``tensorrt`` section: its graph's precision, except
    ``tf32`` for an fp32 engine that TensorRT was let use TF32 in (``--tf32``; and every engine built
    before pvt-deploy cleared TensorRT's TF32 flag, on by default, so one whose section does not say)
    on an Ampere or newer GPU."""
    precision = str(section.get("precision") or "unknown")
    if precision == "fp32" and section.get("tf32", True) and tf32_capable(section.get("compute_capability")):
        return "tf32"
    return precision


def rebuild_command(manifest: Mapping[str, Any], artifact_dir: str | Path | None = None) -> str:
    """The command that rebuilds this artifact's engine on the current machine."""
    section = manifest.get("tensorrt") or {}
    engine = (manifest.get("files") or {}).get(ENGINE_NAME) or {}
    precision = section.get("precision") or engine.get("precision") or "fp32"
    target = str(artifact_dir) if artifact_dir is not None else f"exports/{manifest.get('model', 'MODEL')}"
    tf32 = " --tf32" if section.get("tf32") else ""
    return (f"pvt-deploy export --model {shell_quote(str(target))} --format trt"
            f"{EXPORT_FLAGS.get(str(precision), '')}{tf32}")


def check_engine_compatibility(
    manifest: Mapping[str, Any],
    *,
    trt_version: str,
    gpu_name: str | None,
    compute_capability: str | None,
    engine_sha256: str | None = None,
    engine_name: str = ENGINE_NAME,
    artifact_dir: str | Path | None = None,
    host: str | None = None,
) -> None:
    """Raise :class:`EngineMismatchError` if the engine described by ``manifest`` cannot run here.

    Rules, checked in this order so the message names the first thing to fix:

    * the engine file's sha256 must match the manifest (a changed or truncated file is never loaded);
    * the platform (OS and CPU architecture, :func:`host_platform`; ``host`` overrides this machine's)
      must be the build's: TensorRT plans are not portable across platforms, whatever the version or
      hardware compatibility they were built with (an x86-64 engine copied to a Jetson);
    * TensorRT major.minor.patch must equal the build's, unless the engine was built
      version-compatible: then a runtime at least as new as the builder, of the same major or one
      that TensorRT lists as loading that major's version-compatible plans (10 -> 11);
    * the GPU's compute capability must equal the build GPU's, unless the engine was built
      hardware-compatible (Ampere+): then any GPU with compute capability >= 8.0.

    The same capability on a differently named GPU is allowed with a warning (TensorRT itself only
    warns; kernels were tuned for the build GPU). A manifest without a ``tensorrt`` section cannot be
    checked and passes with a warning; ``None`` for the GPU fields means "unknown here" and skips
    that rule. The message is one line; the hint is the command that rebuilds the engine here.
    """
    hint = rebuild_command(manifest, artifact_dir)
    section = manifest.get("tensorrt")
    entry = (manifest.get("files") or {}).get(engine_name) or {}
    if engine_sha256 is not None and entry.get("sha256") and entry["sha256"] != engine_sha256:
        raise EngineMismatchError(
            f"{engine_name} differs from the engine recorded in the manifest (sha256 mismatch: the file "
            "was changed, truncated or copied from another export)", hint=hint)
    if not section:
        log.warning("%s: the manifest has no 'tensorrt' section, so the engine cannot be checked against "
                    "this GPU and TensorRT before loading", engine_name)
        return

    built_on, here_on = section.get("platform"), host or host_platform()
    if built_on and built_on != here_on:
        raise EngineMismatchError(
            f"{engine_name} was built on {built_on} and this machine is {here_on}; TensorRT plans do not move "
            "between platforms (operating system and CPU architecture)", hint=hint)

    built_version = str(section.get("version") or "")
    if built_version:
        built, here = _version_tuple(built_version), _version_tuple(trt_version)
        if section.get("version_compatible"):
            majors = (built[0], *VERSION_COMPATIBLE_MAJORS.get(built[0], ()))
            if here[0] not in majors or here < built:
                runs_on = " or ".join(f"{m}.x" for m in majors)
                raise EngineMismatchError(
                    f"{engine_name} was built version-compatible with TensorRT {built_version}, which runs on "
                    f"TensorRT {runs_on} from {built_version} on; this machine has TensorRT {trt_version}",
                    hint=hint)
        elif built != here:
            raise EngineMismatchError(
                f"{engine_name} was built with TensorRT {built_version} and this machine has TensorRT "
                f"{trt_version}; plans only load in the TensorRT version that built them", hint=hint)

    built_cc, here_cc = _cc_tuple(section.get("compute_capability")), _cc_tuple(compute_capability)
    built_gpu = section.get("gpu") or "an unknown GPU"
    here_gpu = gpu_name or "this GPU"
    if built_cc is not None and here_cc is not None:
        if section.get("hardware_compatible"):
            if here_cc < AMPERE_PLUS:
                raise EngineMismatchError(
                    f"{engine_name} was built hardware-compatible (Ampere or newer, compute capability >= 8.0) "
                    f"and {here_gpu} has compute capability {compute_capability}", hint=hint)
        elif built_cc != here_cc:
            raise EngineMismatchError(
                f"{engine_name} was built for {built_gpu} (compute capability {section.get('compute_capability')}) "
                f"and {here_gpu} has compute capability {compute_capability}", hint=hint)
        elif gpu_name and section.get("gpu") and gpu_name != section.get("gpu"):
            log.warning("%s was built on %s and runs on %s (same compute capability): it will load, but "
                        "its kernels were tuned for the other GPU; rebuild for best speed: %s",
                        engine_name, built_gpu, gpu_name, hint)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _manifest_for(engine_path: Path) -> dict[str, Any] | None:
    """The manifest of the artifact folder holding ``engine_path``, or None for a lone engine."""
    if not (engine_path.parent / MANIFEST_NAME).is_file():
        return None
    try:
        return read_manifest(engine_path.parent)
    except InputError as e:
        log.warning("%s", e)
        return None


def load_engine(
    engine_path: str | Path,
    manifest: Mapping[str, Any] | None = None,
    *,
    device_index: int = 0,
) -> tuple[tensorrt.Runtime, tensorrt.ICudaEngine]:
    """Check, then deserialise ``engine_path``. Returns ``(runtime, engine)``; keep both alive.

    With a manifest (given, or found beside the engine) the compatibility rules run first. A lone
    engine loads with a warning, and if TensorRT refuses it the refusal becomes the same one-line
    :class:`EngineMismatchError` as a failed check.
    """
    require_tensorrt()
    import tensorrt as trt

    path = Path(engine_path)
    if not path.is_file():
        raise InputError(f"{path}: no such engine file")
    if manifest is None:
        manifest = _manifest_for(path)
    gpu_name, cc = cuda_device_info(device_index)
    described = manifest is not None and (manifest.get("tensorrt") or path.name in (manifest.get("files") or {}))
    if manifest is not None and described:
        check_engine_compatibility(manifest, trt_version=trt.__version__, gpu_name=gpu_name,
                                   compute_capability=cc, engine_sha256=sha256_file(path),
                                   engine_name=path.name, artifact_dir=path.parent)
    else:
        log.warning("%s has no manifest describing it: cannot check it was built for %s and TensorRT %s; "
                    "loading it anyway", path, gpu_name or "this GPU", trt.__version__)

    runtime = create_trt("Runtime")
    section = (manifest or {}).get("tensorrt") or {}
    if section.get("version_compatible") and hasattr(runtime, "engine_host_code_allowed"):
        # Version-compatible plans embed the lean runtime (host code). The manifest says this plan was
        # built by pvt-deploy with that option, which is the trust decision TensorRT asks for.
        runtime.engine_host_code_allowed = True
    _clear_trt_errors()
    # The stubs say ICudaEngine, but TensorRT returns None (and logs why) for a plan it cannot load.
    engine: tensorrt.ICudaEngine | None = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        hint = rebuild_command(manifest, path.parent) if manifest else "rebuild it on this machine with pvt-deploy export --format trt"
        raise EngineMismatchError(
            f"{path.name}: TensorRT {trt.__version__} cannot load this engine ({last_trt_error()}); an engine "
            f"only loads with the TensorRT version and GPU it was built for", hint=hint)
    return runtime, engine


def inspected_layers(engine: tensorrt.ICudaEngine, context: tensorrt.IExecutionContext | None = None) -> list[Any]:
    """The ``"Layers"`` of TensorRT's engine inspector's JSON for ``engine`` (with ``context``, dynamic
    shapes get their values): dicts (``"Name"``, ``"LayerType"``, ...) where the engine was built with
    detailed profiling verbosity, names (strings) at the default ``LAYER_NAMES_ONLY``, none at ``NONE``."""
    import json

    import tensorrt as trt

    inspector = engine.create_engine_inspector()
    if context is not None:
        inspector.execution_context = context
    return list(json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)).get("Layers") or [])


def engine_layers(engine_path: str | Path) -> dict[str, Any]:
    """What is inside the engine at ``engine_path`` (``pvt-deploy info --graph``): its layers in all and,
    where the engine inspector gives their types, how many of each, most first (``types``; None where it
    gives names only). Raises :class:`BackendUnavailableError` without TensorRT or a GPU to load it on,
    :class:`EngineMismatchError` for an engine this TensorRT and GPU cannot load (:func:`load_engine`)."""
    runtime, engine = load_engine(engine_path)
    try:
        layers = inspected_layers(engine)
    except Exception as e:  # noqa: BLE001 - the bindings raise their own types
        raise PvtDeployError(f"TensorRT's engine inspector failed ({joined_lines(e)[:200]})") from e
    finally:
        del engine, runtime
    types = collections.Counter(str(layer["LayerType"]) for layer in layers
                                if isinstance(layer, dict) and layer.get("LayerType"))
    if not layers:
        note = "the engine lists no layers (built with profiling verbosity NONE)"
    elif len(types) == 0:
        note = ("names only: the engine was built without detailed profiling verbosity, so its layers' types "
                "are not in it")
    else:
        note = None
    return {"layers": len(layers),
            "types": dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))) if types else None,
            **({"note": note} if note else {})}


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------

# TensorRT DataType name -> numpy dtype name (torch dtypes are looked up from these at run time).
# IExecutionContext.setTensorAddress (NvInferRuntime.h): "The pointer must have at least 256-byte alignment".
# cudaMalloc and torch's caching allocator hand out blocks aligned so; a view at an offset may not be.
TENSOR_ALIGNMENT = 256
_TRT_TO_NUMPY = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
                 "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


def dims_tuple(dims: tensorrt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` as a plain tuple (``Dims`` indexes but is not declared iterable)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _torch_dtype(torch_mod: Any, numpy_name: str) -> torch.dtype:
    dtype: torch.dtype = {"float32": torch_mod.float32, "float16": torch_mod.float16, "bfloat16": torch_mod.bfloat16,
            "int8": torch_mod.int8, "uint8": torch_mod.uint8, "int32": torch_mod.int32,
            "int64": torch_mod.int64, "bool": torch_mod.bool}[numpy_name]
    return dtype


def _host_dtype(engine_dtype: str, spec_dtype: str | None) -> str:
    """What the caller sees: the manifest's dtype, else the engine's with half floats widened.

    The graph contract is float32/int32 I/O; an engine built from an FP16 graph that kept FP16 I/O
    still answers in float32 so backends stay interchangeable.
    """
    if spec_dtype:
        return spec_dtype
    return "float32" if engine_dtype in ("float16", "bfloat16") else engine_dtype


def check_profile_shape(name: str, shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...],
                        dim_names: tuple[int | str, ...] = ()) -> None:
    """Raise :class:`ShapeError` unless ``lo <= shape <= hi`` per dimension, saying the allowed range.

    Checked before TensorRT sees the shape: TensorRT's own refusal is a log line and a False.
    """
    if len(shape) == len(lo) and all(a <= s <= b for s, a, b in zip(shape, lo, hi, strict=True)):
        return
    names = [d if isinstance(d, str) else f"dim{k}" for k, d in enumerate(dim_names)]
    if len(names) != len(lo):
        names = [f"dim{k}" for k in range(len(lo))]
    allowed = ", ".join(f"{n} {a}" if a == b else f"{n} {a}..{b}" for n, a, b in zip(names, lo, hi, strict=True))
    raise ShapeError(f"input {name!r} has shape {list(shape)}, outside the engine's profile ({allowed})",
                     hint="rebuild the engine with a profile covering it: build_engine(..., shapes=...)")


def _cuda_device(device: object) -> torch.device:
    """The CUDA device a TensorRT backend runs on: ``cuda[:N]``, ``gpu[:N]`` or a GPU index, checked as
    the PyTorch backend checks its device (torch.device("gpu") and a bogus name raised RuntimeError,
    and ``cuda:N`` past the GPUs there are failed deep inside CUDA)."""
    import torch

    from pvt_deploy.runtimes.base import device_text
    from pvt_deploy.runtimes.torch import _resolve_device

    text = (device_text(device) or "cuda").strip().lower()
    if not (text.isdigit() or text.partition(":")[0] in ("cuda", "gpu")):
        raise InputError(f"TensorRT runs on a CUDA device (cuda, cuda:N or a GPU index N), not {device!r}")
    dev = _resolve_device(text)
    return dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())


class TensorRTBackend(Backend):
    """Run a TensorRT engine on one CUDA device, with torch CUDA tensors as buffers.

    ``infer`` takes and returns numpy like every backend. ``infer_torch`` takes CUDA tensors and
    returns CUDA tensors for GPU pipelines (no host round trip). Output buffers are reused and only
    re-allocated when the input shapes change. ``cuda_graph=True`` captures the execution once per
    input shape and replays it, which removes per-layer launch overhead for static-shape serving.
    """

    def __init__(
        self,
        engine_path: str | Path,
        *,
        manifest: Mapping[str, Any] | None = None,
        device: int | str = 0,
        cuda_graph: bool = False,
    ) -> None:
        cuda_graph = flag("cuda_graph", cuda_graph)  # "no" would capture graphs: a non-empty string is true
        trt = require_tensorrt()
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailableError("the TensorRT backend needs PyTorch with CUDA (for device buffers)",
                                          hint="pip install torch") from e
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "the TensorRT backend needs a CUDA GPU and a CUDA build of PyTorch; torch.cuda.is_available() "
                "is False here", hint=TRT_INSTALL_HINT)
        self._torch = torch
        self._device = _cuda_device(device)
        path = Path(engine_path)
        if manifest is None and path.is_file():
            manifest = _manifest_for(path)
        self._manifest = dict(manifest) if manifest is not None else None
        self._closed = True  # until fully constructed: close() has nothing to release before that
        # One call at a time: the execution context, its input shapes and the bound buffers are shared
        # state (TensorRT: an execution context is not for concurrent use), and a Model may be shared
        # by a server's threads; close() waits for a running call.
        self._lock = threading.RLock()
        with torch.cuda.device(self._device):
            self._runtime, self._engine = load_engine(path, self._manifest, device_index=self._device.index or 0)
            context: tensorrt.IExecutionContext | None = self._engine.create_execution_context()
            if context is None:
                raise PvtDeployError(f"{path.name}: TensorRT could not create an execution context "
                                     f"({last_trt_error()}); is the GPU out of memory?")
            self._context = context
            self._stream = torch.cuda.Stream(device=self._device)
        self._describe_io()
        self._owned: dict[str, torch.Tensor] = {}  # the backend's own device buffers
        self._bound: dict[str, torch.Tensor] = {}  # what the context points at (owned or the caller's)
        self._shapes: dict[str, tuple[int, ...]] = {}  # input shapes last given to the context
        self._cuda_graph = cuda_graph
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_key: tuple[tuple[int, ...], ...] | None = None
        gpu_name, cc = cuda_device_info(self._device.index or 0)
        section = (self._manifest or {}).get("tensorrt") or {}
        self.info = BackendInfo(
            name="tensorrt", device=str(self._device), precision=engine_precision(section),
            details={"tensorrt": trt.__version__, "gpu": gpu_name, "compute_capability": cc,
                     "engine": str(path), "profiles": self._profiles_json(), "cuda_graph": cuda_graph,
                     "strongly_typed": section.get("strongly_typed")})
        self._closed = False

    # -- description -------------------------------------------------------------------------------

    def _describe_io(self) -> None:
        import tensorrt as trt

        engine = self._engine
        specs = {s["name"]: s for s in ((self._manifest or {}).get("inputs") or [])
                 + ((self._manifest or {}).get("outputs") or [])}
        self._input_names: list[str] = []
        self._output_names: list[str] = []
        self._engine_dtype: dict[str, str] = {}
        self._profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        engine_shape: dict[str, tuple[int, ...]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype_name = engine.get_tensor_dtype(name).name
            if dtype_name not in _TRT_TO_NUMPY:
                raise PvtDeployError(f"engine tensor {name!r} has type {dtype_name}, which pvt-deploy cannot "
                                     "exchange; export the graph with float32/int32 inputs and outputs")
            self._engine_dtype[name] = _TRT_TO_NUMPY[dtype_name]
            engine_shape[name] = dims_tuple(engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._input_names.append(name)
                lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
                self._profile[name] = (dims_tuple(lo), dims_tuple(opt), dims_tuple(hi))
            else:
                self._output_names.append(name)
        if self._manifest is not None:
            want = [s["name"] for s in self._manifest.get("inputs") or []] + \
                   [s["name"] for s in self._manifest.get("outputs") or []]
            if want and sorted(want) != sorted(self._input_names + self._output_names):
                raise EngineMismatchError(
                    f"the engine's tensors {sorted(self._input_names + self._output_names)} differ from the "
                    f"manifest's {sorted(want)}", hint=rebuild_command(self._manifest))
            # Keep the manifest's order (the graph contract's output order).
            self._input_names = [s["name"] for s in self._manifest.get("inputs") or []] or self._input_names
            self._output_names = [s["name"] for s in self._manifest.get("outputs") or []] or self._output_names

        def spec(name: str) -> TensorSpec:
            given = specs.get(name)
            if given is not None:
                return TensorSpec.from_json(given)
            shape = tuple(d if d >= 0 else ("batch" if k == 0 else f"dim{k}")
                          for k, d in enumerate(engine_shape[name]))
            return TensorSpec(name, _host_dtype(self._engine_dtype[name], None), shape)

        self._inputs = [spec(n) for n in self._input_names]
        self._outputs = [spec(n) for n in self._output_names]
        # what each output is handed back as, cast on the device (see _infer): fixed by the engine and manifest
        self._host_dtypes = {s.name: _torch_dtype(self._torch, _host_dtype(self._engine_dtype[s.name], s.dtype))
                             for s in self._outputs}

    def _profiles_json(self) -> list[dict[str, Any]]:
        return [{"input": n, "min": list(lo), "opt": list(opt), "max": list(hi)}
                for n, (lo, opt, hi) in self._profile.items()]

    @property
    def profiles(self) -> list[dict[str, Any]]:
        """The optimisation profile per input: ``{"input", "min", "opt", "max"}``."""
        return self._profiles_json()

    # -- execution ---------------------------------------------------------------------------------

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = self._profile[name]
        spec = next(s for s in self._inputs if s.name == name)
        check_profile_shape(name, shape, lo, hi, spec.shape or ())

    def _bind(self, name: str, tensor: torch.Tensor) -> None:
        """Point the context at ``tensor`` (kept referenced until another tensor is bound)."""
        bound = self._bound.get(name)
        changed = bound is None or bound.data_ptr() != tensor.data_ptr()
        if changed and not self._context.set_tensor_address(name, tensor.data_ptr()):
            raise PvtDeployError(f"TensorRT refused the buffer for {name!r} ({last_trt_error()})")
        self._bound[name] = tensor

    def _owned_buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The backend's own device buffer for ``name``, re-allocated only when its shape changes."""
        torch = self._torch
        buf = self._owned.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = torch.empty(shape, dtype=_torch_dtype(torch, self._engine_dtype[name]), device=self._device)
            self._owned[name] = buf
        self._bind(name, buf)
        return buf

    def _prepare(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Give the context new input shapes and (re)allocate what changed. True if anything did."""
        changed = False
        for name in self._input_names:
            shape = shapes[name]
            self._check_shape(name, shape)
            if self._shapes.get(name) != shape:
                if not self._context.set_input_shape(name, shape):
                    raise ShapeError(f"TensorRT rejected shape {list(shape)} for input {name!r} "
                                     f"({last_trt_error()})")
                self._shapes[name] = shape
                changed = True
        for name in self._output_names:
            shape = dims_tuple(self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise PvtDeployError(f"output {name!r} has a data-dependent shape {list(shape)}, which the "
                                     "TensorRT backend does not support")
            old = self._owned.get(name)
            changed |= old is None or tuple(old.shape) != shape
            self._owned_buffer(name, shape)
        return changed

    def _execute(self) -> None:
        """Run the bound context on the backend's stream, by graph replay when enabled."""
        stream = self._stream
        if self._cuda_graph:
            key = tuple(self._shapes[n] for n in self._input_names)
            if self._graph is None or self._graph_key != key:
                self._capture(key)
            if self._graph is not None:
                with self._torch.cuda.stream(stream):
                    self._graph.replay()
                return
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise PvtDeployError(f"TensorRT execution failed ({last_trt_error()})")

    def _capture(self, key: tuple[tuple[int, ...], ...]) -> None:
        torch = self._torch
        self._graph, self._graph_key = None, None
        stream = self._stream
        # One plain run first: TensorRT defers some setup to the first enqueue after a shape change,
        # and that setup must not end up inside the captured graph.
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise PvtDeployError(f"TensorRT execution failed ({last_trt_error()})")
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                ok = self._context.execute_async_v3(stream.cuda_stream)
            if not ok:
                raise RuntimeError(last_trt_error())
        except Exception as e:  # some engines cannot be captured; run them normally
            log.warning("CUDA graph capture failed (%s); running without CUDA graphs", e)
            self._cuda_graph = False
            return
        self._graph, self._graph_key = graph, key
        log.debug("captured a CUDA graph for input shapes %s", key)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            return self._infer(feed)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_open()
        torch = self._torch
        # the feed checked as every backend checks it (a bare array, no values, object or complex values)
        hosts = {n: torch.from_numpy(np.ascontiguousarray(feed_array(feed, n))) for n in self._input_names}
        with torch.cuda.device(self._device):
            # the buffers written below may be those an infer_torch(copy=False) returned, still being read
            # by work the caller queued on its own stream: that work comes first (as in infer_torch)
            self._stream.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            self._prepare({n: tuple(t.shape) for n, t in hosts.items()})
            for n, t in hosts.items():
                self._owned_buffer(n, tuple(t.shape)).copy_(t)  # casts to the engine's dtype on the way
            self._execute()
            # cast on the device: numpy has no bfloat16 (Tensor.numpy() raised TypeError on a BF16 output)
            out = {n: self._owned[n].to(self._host_dtypes[n]).cpu() for n in self._output_names}
            self._stream.synchronize()
        return {n: t.numpy() for n, t in out.items()}

    def infer_torch(self, feed: Mapping[str, torch.Tensor], *, copy: bool = True) -> dict[str, torch.Tensor]:
        """Run on CUDA tensors, return CUDA tensors (the GPU-pipeline fast path).

        Inputs already on this device, contiguous, of the engine's dtype and at an address TensorRT
        takes (256-byte aligned) are used in place (no copy) unless CUDA graphs are on (a graph needs
        fixed addresses); others are copied into the backend's own buffers. Work is ordered after the
        caller's current stream and the caller's stream waits for the result. With ``copy=False``
        the returned tensors are the backend's own buffers: valid until the next call.
        """
        with self._lock:
            return self._infer_torch(feed, copy=copy)

    def _infer_torch(self, feed: Mapping[str, torch.Tensor], *, copy: bool) -> dict[str, torch.Tensor]:
        self._check_open()
        torch = self._torch
        missing = [n for n in self._input_names if n not in feed]
        if missing:
            raise InputError(f"missing input(s) {missing}; the engine takes {self._input_names}")
        caller = torch.cuda.current_stream(self._device)
        with torch.cuda.device(self._device):
            self._stream.wait_stream(caller)
            with torch.cuda.stream(self._stream):
                self._prepare({n: tuple(feed[n].shape) for n in self._input_names})
                for n in self._input_names:
                    t = feed[n]
                    want = _torch_dtype(torch, self._engine_dtype[n])
                    if (not self._cuda_graph and t.device == self._device and t.dtype == want
                            and t.is_contiguous() and t.data_ptr() % TENSOR_ALIGNMENT == 0):
                        t.record_stream(self._stream)  # the caller may free it before we are done
                        self._bind(n, t)
                    else:
                        self._owned_buffer(n, tuple(t.shape)).copy_(t, non_blocking=True)
                self._execute()
                outs = {n: self._owned[n] for n in self._output_names}
                if copy:
                    outs = {n: t.clone() for n, t in outs.items()}
            caller.wait_stream(self._stream)
            if copy:
                for t in outs.values():
                    t.record_stream(caller)
        return outs

    def profile(self, feed: Mapping[str, np.ndarray], calls: int = 10) -> dict[str, Any]:
        """Time per layer (see :meth:`Backend.profile`), as TensorRT reports it to an ``IProfiler`` set on the
        execution context for ``calls`` calls after one untimed call (then taken off again; CUDA graphs are
        not replayed meanwhile, as a replay reports nothing). Layers are TensorRT's, fused as the engine
        runs them, grouped by their type where the engine inspector gives it (an engine built with
        detailed profiling verbosity), else each by its name."""
        import tensorrt as trt

        class LayerTimes(trt.IProfiler):
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.times: list[tuple[str, float]] = []

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.times.append((str(layer_name), float(ms)))

        with self._lock:
            self._infer(feed)
            recorder = LayerTimes()
            context = self._context
            previous, graphs = context.profiler, self._cuda_graph
            context.profiler = recorder
            self._cuda_graph = False
            try:
                for _ in range(calls):
                    self._infer(feed)
            finally:
                context.profiler = previous
                self._cuda_graph = graphs
            kinds = self._layer_types()
        if not recorder.times:
            raise PvtDeployError("TensorRT reported no layer times")
        return operator_profile(((kinds.get(name, name), name, ms, None) for name, ms in recorder.times), calls)

    def _layer_types(self) -> dict[str, str]:
        """Layer name -> type, from the engine inspector's JSON where the engine was built with detailed
        profiling verbosity (``{"Layers": [{"Name", "LayerType", ...}]}``); empty where it gives names
        only (the default verbosity) or cannot say."""
        try:
            layers = inspected_layers(self._engine, self._context)
        except Exception as e:  # noqa: BLE001 - no types: the layers go by their names
            log.debug("engine inspector: %s", e)
            return {}
        return {str(layer["Name"]): str(layer["LayerType"]) for layer in layers
                if isinstance(layer, dict) and layer.get("Name") and layer.get("LayerType")}

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this TensorRTBackend is closed")  # as every backend says (README, Python API)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        with self._lock:
            if not self._closed:
                self._release()

    def _release(self) -> None:
        self._closed = True
        try:
            self._stream.synchronize()
        except Exception as e:  # a failed device must not stop the release
            warnings.warn(f"TensorRT backend: synchronize on close failed: {e}", stacklevel=3)
        # Release in dependency order: graph and buffers, then context, engine, runtime.
        self._graph = None
        self._bound.clear()
        self._owned.clear()
        del self._context
        del self._engine
        del self._runtime

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

