"""Choose ONNX Runtime execution providers: TensorRT EP > CUDA EP > CPU.

Kept apart from the ONNX Runtime backend and pure (``available`` can be passed in) so the choice is
unit-testable on a CPU-only machine. ``onnxruntime-gpu`` lists the TensorRT and CUDA providers even
where their libraries are missing at run time; ONNX Runtime then falls back down the list given to
the session, which is why the CPU provider always closes the list.

The TensorRT EP builds a TensorRT engine per TensorRT subgraph when a session is made (minutes for a
detector) and keeps it only where its engine cache is on. Without a ``cache_dir``, a session given
the ``model`` it loads caches them in :func:`tensorrt_cache_dir`: a folder of the ``.ort-cache``
beside the model (else the per-user cache, as :func:`pvt_deploy.runtimes.ort_session.cache_dir_for`)
named by what makes an engine unusable elsewhere. ONNX Runtime names its engine files by a hash of
the model's *file name*, its tensor names, its own, CUDA's and TensorRT's major.minor versions and
the GPU's compute capability, not by the weights: a re-exported ``model.onnx`` (same architecture,
new weights) would load the old engines. The folder's key therefore adds the file's sha256, the
TensorRT library's full version, the GPU's name (engines built on a GPU with more memory may not load
on a smaller one of the same compute capability), FP16 and the optimisation profile.

FP32 stays IEEE FP32 where ONNX Runtime lets it: the CUDA EP's ``use_tf32`` (on by default: cuBLAS
GEMMs and cuDNN convolutions of float32 round their inputs to TF32's 10-bit mantissa on Ampere and newer
GPUs) is turned off. The TensorRT EP has no such option (onnxruntime#26029) and builds with TensorRT's
TF32 flag on, so an FP32 graph there is reported as computing in ``tf32`` (:func:`computed_precision`)
and judged as such.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pvt_deploy.errors import BackendUnavailableError, InputError, option

__all__ = ["CPU", "CUDA", "GPU_PROVIDERS", "TENSORRT", "CudaProvider", "Profile", "ProviderSpec", "available_providers",
           "computed_precision", "cuda_device_count", "cuda_provider", "preload_gpu_libraries", "probe_cuda_provider",
           "profile_options", "provider_name", "select_providers", "tensorrt_cache_dir", "tensorrt_cache_key",
           "tensorrt_libraries_load", "tensorrt_library_version"]

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

Device = Literal["auto", "cpu", "cuda", "tensorrt"]
DEVICES = ("auto", "cpu", "cuda", "tensorrt", "trt")  # the kinds of device select_providers takes (bench's check)
ProviderSpec = str | tuple[str, dict[str, Any]]
"""What ``onnxruntime.InferenceSession(providers=...)`` takes: a name, or (name, options)."""
Profile = Mapping[str, Mapping[str, Sequence[int]]]
"""An optimisation profile, as :func:`pvt_deploy.export.tensorrt.compute_profile` gives it:
``{input: {"min": [...], "opt": [...], "max": [...]}}``."""
TENSORRT_CACHE = "tensorrt"  # the sub-folder of the ONNX Runtime cache folder that holds TensorRT EP engines

_GPU_HINT = ("pip uninstall -y onnxruntime && pip install onnxruntime-gpu (on a machine with an NVIDIA GPU), "
             "or use the Docker image: docker build -f docker/Dockerfile -t pvt-deploy .")


def provider_name(spec: ProviderSpec) -> str:
    """A provider's name, given as a name or as (name, options) (:data:`ProviderSpec`)."""
    return spec if isinstance(spec, str) else spec[0]


def available_providers() -> list[str]:
    """The providers this onnxruntime build offers (empty if onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


_nvinfer: dict[str, Any] = {}  # _libnvinfer's answer, looked up once per process ({} again: looked up anew)
_nvinfer_lock = threading.Lock()


def _libnvinfer() -> Any:
    """TensorRT's runtime library as ONNX Runtime's TensorRT EP loads it, or None where it does not load: looked up
    once per process, by one thread at a time (each look-up tries five names and ``import tensorrt``, 0.3 ms, and
    a folder's rows asked it once each; a library that loads stays loaded)."""
    with _nvinfer_lock:
        if "lib" not in _nvinfer:
            _nvinfer["lib"] = _find_libnvinfer()
        return _nvinfer["lib"]


def _find_libnvinfer() -> Any:
    def load() -> Any:
        for name in ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so", "nvinfer_10.dll", "nvinfer.dll"):
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
        return None

    if (lib := load()) is not None:
        return lib
    try:  # TensorRT's pip wheels keep libnvinfer outside the loader's path; importing tensorrt loads it
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or installed for another CUDA
        return None
    return load()


def tensorrt_libraries_load() -> bool:
    """Whether TensorRT's runtime library loads in this process (looked up once, :func:`_libnvinfer`).
    ``onnxruntime-gpu`` lists its TensorRT provider whether or not TensorRT is installed; a session asked for
    it without ``libnvinfer`` prints an error and falls back, so ``auto`` leaves it out where this is False."""
    return _libnvinfer() is not None


def tensorrt_library_version() -> str | None:
    """The version of the ``libnvinfer`` the TensorRT EP runs on (``"10.9.0"``, from its
    ``getInferLibVersion``), None where it does not load. Read from the library, not the
    ``tensorrt`` Python module: the EP loads the library, and a system TensorRT has no module."""
    lib = _libnvinfer()
    try:
        value = int(lib.getInferLibVersion()) if lib is not None else None
    except (AttributeError, OSError):
        return None
    if value is None:
        return None
    major, rest = (value // 10000, value % 10000) if value >= 100000 else (value // 1000, value % 1000)  # 10+: MMmmpp
    return f"{major}.{rest // 100}.{rest % 100}"


def cuda_device_count() -> int | None:
    """How many CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applied), from the CUDA
    driver (``libcuda``, which ONNX Runtime's CUDA and TensorRT providers run on); None where there
    is no driver or it does not answer. The driver rather than ``torch.cuda``: a CPU build of torch
    (or none) beside onnxruntime-gpu is common, and importing torch costs seconds. ``cuInit`` and
    ``cuDeviceGetCount`` make no CUDA context (no GPU memory)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int()
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return None
        return int(count.value)
    return None


_preloaded = False


def preload_gpu_libraries(ort: Any) -> None:
    """Once per process, before the first GPU session: load CUDA/cuDNN from the ``nvidia-*`` pip
    packages (``pip install onnxruntime-gpu[cuda,cudnn]``) with ``onnxruntime.preload_dlls`` (ORT >=
    1.21). Without it ORT's CUDA provider finds those libraries only where PyTorch loaded them first
    or ``LD_LIBRARY_PATH`` names them. Its printed notes go to the debug log; a failure is left for the
    session to report (system CUDA libraries may still be found)."""
    global _preloaded
    if _preloaded or not hasattr(ort, "preload_dlls"):
        return
    _preloaded = True
    import contextlib
    import io

    text = io.StringIO()
    try:
        with contextlib.redirect_stdout(text):
            ort.preload_dlls()
    except Exception as e:  # noqa: BLE001 - e.g. no nvidia packages: the session's own error says more
        log.debug("onnxruntime.preload_dlls: %s", " ".join(str(e).split()))
    if text.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", " ".join(text.getvalue().split()))


@dataclass(frozen=True)
class CudaProvider:
    """Whether ONNX Runtime's CUDA execution provider runs here (:func:`probe_cuda_provider`). ``problem``: why
    not, one line (None where it runs); ``unused``: the same in a word or two (``no GPU``, ``does not start``);
    ``hint``: how to mend it; ``devices``: the CUDA driver's count (None: no driver answers); ``session_providers``
    and ``log``: the providers the probe's session had and what ONNX Runtime said while it started."""

    problem: str | None
    unused: str | None = None
    hint: str | None = None
    devices: int | None = None
    session_providers: list[str] = field(default_factory=list)
    log: str = ""


#: A line of ONNX Runtime's log (``2025-01-01 10:00:00.1 [E:onnxruntime:Default, file.cc:12 Function] message``), and
#: the status its error messages start with (``... [ONNXRuntimeError] : 1 : FAIL : Failed to load library ...``).
_ORT_LOG_LINE = re.compile(r"\[([EWF]):onnxruntime:[^\]]*\]\s*(.*)")
_ORT_STATUS = re.compile(r".*\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")


def probe_cuda_provider(device_id: int = 0) -> CudaProvider:
    """Whether ONNX Runtime's CUDA provider runs on GPU ``device_id`` here: only where a session of a one-node
    graph starts on it and runs. ``onnxruntime-gpu`` lists the provider with or without a GPU, cuDNN or the CUDA it
    was built for; a session asked for it then logs why it cannot start and runs on the CPU. Where the CUDA driver
    sees no device (:func:`cuda_device_count`) no session is made; before one is, the CUDA and cuDNN of the pip
    packages are loaded (:func:`preload_gpu_libraries`), as for every GPU session. ``doctor``'s row and
    :func:`select_providers` (through :func:`cuda_provider`) both ask this. The caller has checked that the
    provider is listed."""
    devices = cuda_device_count()
    if not devices:
        return CudaProvider("no CUDA device" + (" (no NVIDIA driver answers)" if devices is None else ""), "no GPU",
                            "the CUDA provider needs an NVIDIA GPU and its driver (in Docker: docker run --gpus all)",
                            devices)
    import onnxruntime

    preload_gpu_libraries(onnxruntime)
    used, reason, said = _cuda_session(onnxruntime, device_id)
    if reason is None:
        return CudaProvider(None, devices=devices, session_providers=used, log=said)
    return CudaProvider(f"{CUDA} does not start: {reason}", "does not start",
                        "pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA and cuDNN from pip), or install the CUDA "
                        "and cuDNN this onnxruntime-gpu was built for", devices, used, said)


_probed: dict[int, CudaProvider] = {}  # cuda_provider's answers, by GPU
#: One probe at a time: each points ``sys.stdout`` at a buffer while its session starts and puts back what it found
#: there, so two at once (models loaded on threads, one per GPU) left one's buffer as ``sys.stdout``; and no probe's
#: window on stderr holds another probe's log (another thread's lines it may: they are written back after it).
_probing = threading.RLock()


def cuda_provider(device_id: int = 0) -> CudaProvider:
    """:func:`probe_cuda_provider`'s answer for ``device_id``, probed once per process (the libraries a session
    loads and the driver stay what they are), by one thread at a time."""
    return _cuda_provider(device_id)[0]


def _cuda_provider(device_id: int) -> tuple[CudaProvider, bool]:
    """:func:`cuda_provider`'s answer, and whether this call probed (the first for the GPU in this process: asked
    under the lock, so that of two threads probing one GPU at once only one is told it was the first)."""
    with _probing:
        if device_id in _probed:
            return _probed[device_id], False
        _probed[device_id] = probe_cuda_provider(device_id)
        return _probed[device_id], True


def _one_add_graph() -> bytes:
    """A serialized ONNX graph of one node (``y = x + x``, float32 [1]) for a session to start on."""
    from onnx import TensorProto, helper

    from pvt_deploy.utils import onnx_model

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "doctor",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return bytes(onnx_model(graph, 13).SerializeToString())


def _cuda_session(onnxruntime: Any, device_id: int = 0) -> tuple[list[str], str | None, str]:
    """Start a session of :func:`_one_add_graph` on the CUDA provider (the CPU's after it, as pvt-deploy asks) and
    run it: (the providers the session has, why the CUDA provider is not usable or None, what ONNX Runtime said).
    The session is made as every session of pvt-deploy's is, without ONNX Runtime's Python fallback
    (``enable_fallback=0``, and ``disable_fallback`` for its run), so one mechanism says what happened: a provider
    that raises while the session starts, or fails its run, raises (its words are the reason); one that does not
    load is left out by ONNX Runtime, which ``get_providers()`` says, and why is in its log (descriptor 2: 'Failed
    to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file'),
    read, and kept off stderr (:func:`~pvt_deploy.utils.stderr.stderr_held`: what else is written there meanwhile,
    another thread's line, is written after). Its stdout is held back too: ONNX Runtime 1.22 and older ignore
    ``enable_fallback``, retry on the CPU and print 'EP Error ...' there, which would have gone into ``doctor
    --json``'s output (or between ``infer``'s lines); the reason then quotes what it said. One session at a time
    (:data:`_probing`)."""
    import contextlib
    import io

    import numpy as np

    from pvt_deploy.utils import joined_lines
    from pvt_deploy.utils.stderr import stderr_held

    printed = io.StringIO()
    used: list[str] = []
    failure: str | None = None
    with (_probing, contextlib.redirect_stdout(printed),
          stderr_held(lambda line: _ORT_LOG_LINE.search(line) is not None) as logged):
        try:
            session = onnxruntime.InferenceSession(_one_add_graph(), providers=[(CUDA, {"device_id": device_id}),
                                                                                CPU], enable_fallback=0)
            used = list(session.get_providers())
            if used[:1] == [CUDA]:  # a run the provider fails raises, not retried on the CPU
                session.disable_fallback()  # (what enable_fallback=0 does where ONNX Runtime reads it)
                session.run(None, {"x": np.ones(1, np.float32)})
        except Exception as e:  # a provider that raises while the session starts, or a run that fails on the GPU
            failure = f"{type(e).__name__}: {_ORT_STATUS.sub('', joined_lines(e))}"
    said = (printed.getvalue() + logged.said).strip()
    if failure is None and used[:1] == [CUDA]:
        return used, None, said
    logged_as = {level: [_ORT_STATUS.sub("", m.group(2)).strip() for line in said.splitlines()
                         if (m := _ORT_LOG_LINE.search(line)) and m.group(1) in level] for level in ("EF", "W")}
    notes = [failure] if failure else []
    notes += logged_as["EF"] or logged_as["W"]  # its errors; where it logged none, its warnings
    reason = "; ".join(dict.fromkeys(n for n in notes if n)) or (
        f"ONNX Runtime runs the session on {used[0] if used else 'nothing'}" + (
            f" and said: {joined_lines(said)}" if said else " and gave no reason"))
    return used, reason, said


def select_providers(
    device: Device | str = "auto",
    *,
    fp16: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    device_id: int = 0,
    available: Sequence[str] | None = None,
    profile: Profile | None = None,
    model: str | os.PathLike[str] | None = None,
    int8: bool = False,
) -> list[ProviderSpec]:
    """Provider list for ``device``, best first, always ending with the CPU provider.

    ``auto`` takes TensorRT EP > CUDA EP > CPU from what is available. The CUDA EP runs with
    ``use_tf32=0`` (FP32 as IEEE FP32, see the module docstring). Asking for ``cuda`` or
    ``tensorrt`` where that provider is absent raises :class:`BackendUnavailableError` (a silent CPU
    run would be mistaken for a GPU measurement). ``fp16`` lets the TensorRT EP use FP16 kernels on an
    FP32 graph. ``int8``: the graph is a Q/DQ INT8 graph, which TensorRT builds only with INT8 enabled
    (``trt_int8_enable``; without it the build fails, "int8 is not configured in the builder"); the EP
    then takes the Q/DQ scales, no calibration table. ``cache_dir`` turns on the TensorRT EP's engine and timing caches there (the caller
    creates the folder), without which every new session rebuilds its engines (minutes); without it,
    ``model`` (the file the session loads) gives the default, :func:`tensorrt_cache_dir`. ``profile``
    (the graph's dynamic inputs) is the TensorRT EP's optimisation profile: without one it builds for
    the first shape it is given and rebuilds whenever a later one falls outside. ``available`` defaults to
    ``onnxruntime.get_available_providers()``, and then ``auto`` also leaves out a TensorRT provider
    whose libraries do not load (:func:`tensorrt_libraries_load`), and both GPU providers where the CUDA
    provider, which the TensorRT EP runs on too, cannot run (:func:`cuda_provider`: no GPU, no cuDNN), with a
    warning, once; ``cuda`` and ``tensorrt`` are then refused, saying why. An ``available`` passed in is taken
    as it is.
    """
    device = str(device).lower()
    if device not in DEVICES:
        raise InputError(f"unknown ONNX Runtime device {device!r}; choose auto, cpu, cuda or tensorrt")
    have = list(available) if available is not None else available_providers()
    if available is None and device == "auto" and TENSORRT in have and not tensorrt_libraries_load():
        have.remove(TENSORRT)

    if device == "cpu":
        return [CPU]
    if device in ("tensorrt", "trt") and TENSORRT not in have:
        raise BackendUnavailableError(
            f"ONNX Runtime has no TensorRT execution provider here (available: {', '.join(have) or 'none'})",
            hint=_GPU_HINT + " with TensorRT installed")
    if device == "cuda" and CUDA not in have:
        raise BackendUnavailableError(
            f"ONNX Runtime has no CUDA execution provider here (available: {', '.join(have) or 'none'})",
            hint=_GPU_HINT)
    if available is None and CUDA in have:  # listed is not runnable: onnxruntime-gpu lists it without GPU or cuDNN
        cuda, first = _cuda_provider(device_id)
        if cuda.problem is not None and device != "auto":  # the TensorRT EP runs on the CUDA provider's libraries
            raise BackendUnavailableError(
                ("ONNX Runtime's CUDA provider" if device == "cuda" else
                 "ONNX Runtime's TensorRT provider runs on its CUDA provider, which") + f" cannot run here: {cuda.problem}",
                hint=f"{cuda.hint}; or use {option('device')} cpu")
        if cuda.problem is not None:  # auto: the CPU, with its own settings (a CPU-only session), not a fallback
            have = [p for p in have if p not in GPU_PROVIDERS]
            if first:  # once per process and GPU, by the call that probed it
                log.warning("ONNX Runtime's CUDA provider cannot run here (%s): running on the CPU (%s)",
                            cuda.problem, cuda.hint)

    chosen: list[ProviderSpec] = []
    if device in ("auto", "tensorrt", "trt") and TENSORRT in have:
        if cache_dir is None and model is not None:
            cache_dir = tensorrt_cache_dir(model, fp16=fp16, profile=profile, device_id=device_id)
        chosen.append((TENSORRT, _tensorrt_options(device_id, fp16, cache_dir, profile, int8)))
    if CUDA in have:  # FP32 as IEEE FP32 (the EP's default lets cuBLAS and cuDNN round to TF32 on Ampere+)
        chosen.append((CUDA, {"device_id": device_id, "use_tf32": 0}))
    chosen.append(CPU)
    return chosen


def computed_precision(precision: str, provider: str, device_id: int = 0) -> str:
    """What a session of a ``precision`` graph computes in on ``provider``: ``tf32`` for an fp32 graph on
    the TensorRT EP of an Ampere or newer GPU (or one whose capability the CUDA driver does not tell),
    whose engines TensorRT builds with its TF32 flag on; else ``precision``."""
    if precision != "fp32" or provider != TENSORRT:
        return precision
    from pvt_deploy.runtimes.tensorrt import _driver_device_info, tf32_capable

    return "tf32" if tf32_capable(_driver_device_info(device_id)[1]) else precision


def _tensorrt_options(device_id: int, fp16: bool, cache_dir: str | os.PathLike[str] | None,
                      profile: Profile | None = None, int8: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": device_id}
    if fp16:  # only when asked: TensorRT 11 has no weak-typing FP16 switch for the EP to flip
        options["trt_fp16_enable"] = True
    if int8:
        options["trt_int8_enable"] = True
    if cache_dir is not None:
        path = str(Path(cache_dir))
        options.update({
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": path,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": path,
        })
    options.update(profile_options(profile))
    return options


def profile_options(profile: Profile | None) -> dict[str, str]:
    """The TensorRT EP's ``trt_profile_min_shapes`` / ``_opt_`` / ``_max_shapes`` for ``profile``:
    ``"images:1x3x32x32"``, inputs joined by commas (trtexec's ``--minShapes`` syntax). The EP
    takes an explicit profile only when every dynamic input of a TensorRT subgraph has one, so
    ``profile`` should hold all of the graph's dynamic inputs; empty for no profile (ONNX Runtime's
    default: build for the first shape seen)."""
    if not profile:
        return {}
    return {f"trt_profile_{key}_shapes": ",".join(f"{name}:{'x'.join(str(int(d)) for d in shapes[key])}"
                                                 for name, shapes in profile.items())
            for key in ("min", "opt", "max")}


def tensorrt_cache_key(*, model_sha256: str, onnxruntime: str, tensorrt: str | None, gpu: str | None,
                       fp16: bool, profile: Profile | None) -> str:
    """20 hex digits naming a TensorRT EP engine cache: one per graph content, onnxruntime and
    TensorRT version, GPU, FP16 setting and optimisation profile (see the module docstring). An
    unknown ``tensorrt`` or ``gpu`` (None) is a value of its own: engines cached under it are still
    not shared with a known one, and ONNX Runtime's own file names carry the compute capability."""
    text = json.dumps({"model": model_sha256, "onnxruntime": onnxruntime, "tensorrt": tensorrt, "gpu": gpu,
                       "fp16": bool(fp16), "profile": _plain(profile)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _prune_replaced(keep: Path, source: Path, sha256: str) -> None:
    """Delete the engine folders beside ``keep`` that were built for an earlier content of ``source``
    (a re-export: a detector's engines are hundreds of MB, and nothing can load them again). Folders of
    the same content for another GPU, TensorRT or FP16 setting, and those of other files sharing the
    folder, are kept."""
    import shutil

    me = str(source.resolve())
    for other in keep.parent.glob(f"{source.stem}.*"):
        if other == keep or not other.is_dir():
            continue
        try:
            facts = json.loads((other / "key.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours, or being written by another process: leave it
        if isinstance(facts, dict) and facts.get("source") == me and facts.get("model_sha256") != sha256:
            shutil.rmtree(other, ignore_errors=True)
            log.info("%s: removed the TensorRT EP engines of its earlier content (%s)", source.name, other.name)


def _plain(profile: Profile | None) -> dict[str, dict[str, list[int]]]:
    return {str(name): {k: [int(d) for d in v[k]] for k in ("min", "opt", "max")} for name, v in (profile or {}).items()}


def tensorrt_cache_dir(model: str | os.PathLike[str], *, fp16: bool = False, profile: Profile | None = None,
                       device_id: int = 0, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder the TensorRT EP caches ``model``'s engines in, made if missing:
    ``<root>/tensorrt/<model stem>.<key>`` (:func:`tensorrt_cache_key`), ``root`` defaulting to the
    ``.ort-cache`` beside the model (the per-user cache where that is read-only). A ``key.json`` in it
    says what the key was made of; making a folder deletes those built for an earlier content of the
    same file. Needs no CUDA at import: the GPU's name comes from the CUDA
    driver, and is ``None`` in the key where the driver does not answer. None (engines not cached,
    with a warning) where no folder can be made."""
    import onnxruntime

    from pvt_deploy.runtimes.ort_session import cache_dir_for
    from pvt_deploy.runtimes.tensorrt import _driver_device_info
    from pvt_deploy.utils.files import atomic_write_text, sha256_file

    source = Path(model)
    try:
        name, capability = _driver_device_info(device_id)
        facts: dict[str, Any] = {
            "model_sha256": sha256_file(source), "onnxruntime": str(onnxruntime.__version__),
            "tensorrt": tensorrt_library_version(), "gpu": f"{name} (compute capability {capability})" if name else None,
            "fp16": bool(fp16), "profile": _plain(profile)}
        folder = (Path(root) if root is not None else cache_dir_for(source)) / TENSORRT_CACHE / (
            f"{source.stem}.{tensorrt_cache_key(**facts)}")
        folder.mkdir(parents=True, exist_ok=True)
        record = folder / "key.json"
        if not record.is_file():
            atomic_write_text(record, json.dumps({"source": str(source.resolve()), **facts}, indent=1) + "\n")
            _prune_replaced(folder, source, facts["model_sha256"])
    except OSError as e:
        log.warning("%s: TensorRT EP engines are not cached (%s): each session builds them again", source.name,
                    e.strerror or e)
        return None
    return folder
