"""One loader for every artifact: ``load_backend(path_or_name) -> (Backend, manifest)``.

What a user points at decides the runtime (Ultralytics' AutoBackend idea, as a table rather than a
chain of ``if format == ...``):

==============================  =============================================================
``exports/pvt_small/`` (folder)  ``model.engine`` if TensorRT and a GPU are usable here, else
                                 ONNX Runtime (CUDA/TensorRT EP when onnxruntime-gpu has them,
                                 else CPU) on ``model.onnx``; ``precision``/``backend`` override
``model.onnx`` (a file)          ONNX Runtime; manifest from the folder if it lists the file, else
                                 from the graph's ``metadata_props["pvt_deploy"]``
``model.engine``                 TensorRT; manifest from its folder (required)
``weights.pth``                  PyTorch; architecture read from the checkpoint (any of
                                 ``CHECKPOINT_SUFFIXES``: ``.safetensors``, ``.pt``, ...)
``https://.../weights.pth``      the same, on the file downloaded into the cache (:func:`local_model`)
``pvt_small``, ``pvt_v2_b0-seg``  ``exports/<name>/`` when it exists, else PyTorch (random weights
                                 unless ``weights=`` — said loudly)
``triton://host:8000/model``     Triton (:func:`pvt_deploy.runtimes.triton.load_triton`)
==============================  =============================================================

Every route returns a manifest with the same keys (docs/ARCHITECTURE.md), so the shared pre/post-
processing never asks which runtime it is talking to. For PyTorch the manifest is synthesised from the
``DeployModule``. The file chosen from an export folder is checked against the manifest's sha256, so a
truncated copy fails with one line instead of a protobuf parse error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pvt_deploy.errors import (
    BackendUnavailableError,
    ForeignOnnxError,
    InputError,
    ModelNotFoundError,
    PvtDeployError,
    ShapeError,
    cannot_read,
    option,
    switched_on,
)
from pvt_deploy.export import reading
from pvt_deploy.manifest import (
    CHECKPOINT_SUFFIXES,
    EXPORT_FLAGS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ONNX_METADATA_KEY,
    check_fields,
    is_export_folder,
    is_triton_model_folder,
    read_manifest,
    verify_file,
)
from pvt_deploy.utils import joined_lines, shell_quote, size_pair
from pvt_deploy.utils.files import hashing_once

if TYPE_CHECKING:
    from pvt_deploy.runtimes.base import Backend

__all__ = [
    "BACKENDS", "DEFAULT_MODEL", "ONNX_FILES", "Candidate", "backend_candidates", "canonical_backend",
    "int8_onnx_file", "is_checkpoint_url", "load_backend", "local_model", "read_onnx_manifest", "recorded_seed", "resolve_model",
    "torch_manifest",
]

_T = TypeVar("_T")
log = logging.getLogger(__name__)

DEFAULT_MODEL = "pvt_small"
EXPORTS_DIR = "exports"
BACKENDS = ("torch", "onnx", "trt", "triton")
BACKEND_ALIASES = {"torch": "torch", "pytorch": "torch", "pt": "torch", "onnx": "onnx", "onnxruntime": "onnx",
                   "ort": "onnx", "onnxrt": "onnx", "trt": "trt", "tensorrt": "trt", "engine": "trt",
                   "triton": "triton"}
"""Every name a backend is known by (Polygraphy's ``onnxrt``, Ultralytics' ``engine``...) -> ours."""
PRECISIONS = ("fp32", "fp16", "int8")
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
INT8_TRT_ONNX = "model.int8.trt.onnx"
ENGINE_FILE = "model.engine"
# The PyTorch graph has no fixed range; these bounds only refuse an absurd size early. What fits in memory
# is checked per input by TorchBackend.check_size (the attention grows with the square of the pixels).
TORCH_DYNAMIC = {"batch": [1, 256], "height": [32, 8192], "width": [32, 8192]}


def check_weights_path(weights: Any, option: str = "weights=") -> None:
    """``weights`` is None or a checkpoint file's path or URL: not a TypeError from pathlib (``weights=3``),
    nor "is a folder" for ``""`` (read as the current folder)."""
    if weights is not None and (not isinstance(weights, (str, os.PathLike)) or not os.fspath(weights).strip()):
        raise InputError(f"{option} must be a checkpoint file's path or an http(s) URL, got {weights!r}")


def canonical_backend(name: str | None) -> str | None:
    """``onnxruntime``/``ort`` -> ``onnx``, ``tensorrt`` -> ``trt``; ``None``/``auto`` -> ``None``."""
    if name is not None and not isinstance(name, str):
        raise InputError(f"backend must be one of {', '.join(BACKENDS)} (a string), got {name!r}")
    if name is None or name.lower() in ("", "auto"):
        return None
    key = name.lower()
    if key not in BACKEND_ALIASES:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKEND_ALIASES[key]


def _canonical_precision(precision: str | None) -> str | None:
    if precision is not None and not isinstance(precision, str):
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)} (a string), got {precision!r}")
    if precision is None or precision.lower() in ("", "auto"):
        return None
    p = precision.lower().replace("float", "fp").replace("half", "fp16")
    if p not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return p


def _is_triton(text: str) -> bool:
    from pvt_deploy.runtimes.triton import is_triton_url

    return is_triton_url(text)


def _is_http_url(value: Any) -> bool:
    """Whether ``value`` is an ``http(s)://`` URL (:func:`pvt_deploy.utils.download.is_url`)."""
    from pvt_deploy.utils.download import is_url

    return is_url(value)


def is_checkpoint_url(text: Any) -> bool:
    """Whether ``text`` (a ``--model``) is an ``http(s)://`` URL of a checkpoint file: its path (query and
    fragment aside) ends in one of :data:`CHECKPOINT_SUFFIXES` (``https://.../pvt_v2_b0.pth``)."""
    from urllib.parse import unquote, urlsplit

    if not _is_http_url(text):
        return False
    try:
        path = urlsplit(text).path
    except ValueError:  # an unbalanced IPv6 bracket: the download says what is wrong with it
        path = text.split("?")[0].split("#")[0]
    return unquote(path).lower().endswith(CHECKPOINT_SUFFIXES)


def local_model(text: str) -> str:
    """The one place an ``http(s)://`` ``--model`` is resolved: a checkpoint URL (:func:`is_checkpoint_url`)
    becomes its file in the download cache (fetched once, as ``--weights URL`` is), so it runs and exports
    exactly as that file given as the model; another http(s) URL names no model pvt-deploy runs (a Triton
    server's model is ``triton://``) and is refused in one line. Anything else is returned as given."""
    if not _is_http_url(text):
        return text
    if not is_checkpoint_url(text):
        raise ModelNotFoundError(
            f"{text}: an http(s) URL as a model must name a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})",
            hint="a model served by Triton is triton://HOST:8000/NAME; an export folder or .onnx must be on this "
                 "machine")
    from pvt_deploy.models.checkpoints import require_checkpoint_file

    return os.fspath(require_checkpoint_file(text))


def resolve_model(name: str | os.PathLike[str] | None = None) -> str:
    """Map the ``--model`` argument to what is loaded: a zoo name with an export folder under
    ``exports/<name>`` (what ``pvt-deploy export`` writes) becomes that folder, a checkpoint URL its
    downloaded file (:func:`local_model`); anything else is returned as given. ``None`` means
    :data:`DEFAULT_MODEL`. A folder in the current directory that is named like a zoo model but holds
    no export (:func:`~pvt_deploy.manifest.is_export_folder`) does not take the name over."""
    text = local_model(os.fspath(name)) if name is not None else DEFAULT_MODEL
    if _is_triton(text) or (Path(text).exists() and not shadows_zoo_name(text)):
        return text
    folder = Path(EXPORTS_DIR) / text
    if "/" not in text and os.sep not in text and (folder / MANIFEST_NAME).is_file():
        log.info("using the export %s for %s", folder, text)
        return str(folder)
    return text


def shadows_zoo_name(text: str) -> bool:
    """Whether ``text`` is a bare zoo name (``pvt_v2_b0-cls``, not ``./pvt_v2_b0-cls``) that a folder
    of the same name in the current directory would take over although it holds no export: the user
    means the model, and "no manifest.json" would be a baffling answer."""
    if _looks_like_path(text) or not Path(text).is_dir() or is_export_folder(text):
        return False
    try:
        from pvt_deploy.models.zoo import resolve_name

        resolve_name(text)
    except (ImportError, InputError, ModelNotFoundError):  # not a zoo name: the folder is what was meant
        return False
    log.debug("./%s holds no export (no %s, .onnx or .engine); using the zoo model %s", text, MANIFEST_NAME, text)
    return True


# --------------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------------


def load_onnx_graph(path: Path) -> Any:
    """The ``onnx.ModelProto`` in ``path``, without its external data. A file that parses as a model with no
    graph (protobuf reads an empty file, or a few stray bytes, as an empty message) raises ``ValueError``: it
    is no more a model than one that does not parse."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if not model.ir_version or not model.graph.node:
        raise ValueError("empty file" if path.stat().st_size == 0 else "no graph in it")
    return model


def read_onnx_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest essentials stored in an ONNX file's ``metadata_props["pvt_deploy"]``, listing the file
    with the precision its graph holds (read from the graph, parsed here anyway: a renamed
    ``model.fp16.onnx`` is still FP16; without the onnx package, guessed from the name)."""
    path = Path(path)
    precision = None
    try:
        model = load_onnx_graph(path)
        props = {p.key: p.value for p in model.metadata_props}
        from pvt_deploy.export.optimize import graph_precision

        precision = graph_precision(model)
    except ImportError:  # onnx is a dependency, but a slim runtime image may only have onnxruntime
        from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(path, device="cpu")
        props = backend.metadata()
        backend.close()
    except OSError as e:  # the disk failed (EIO), not the model: said as other files' OSErrors are
        raise cannot_read(path, e) from e
    except Exception as e:  # onnx raises DecodeError & co for a file that is not a model
        raise InputError(f"{path}: not a readable ONNX model ({joined_lines(e)[:200]})") from e
    text = props.get(ONNX_METADATA_KEY)
    if not text:
        raise ForeignOnnxError(f"{path}: this ONNX file has no pvt-deploy metadata (metadata_props"
                               f"[{ONNX_METADATA_KEY!r}]), so its preprocessing and classes are unknown",
                               hint="export it with pvt-deploy export, or keep manifest.json beside it")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: corrupt pvt-deploy metadata ({e})") from e
    if not isinstance(manifest, dict) or "task" not in manifest:
        raise InputError(f"{path}: the pvt-deploy metadata has no task")
    check_fields(manifest, path, "pvt-deploy metadata")
    manifest.setdefault("format_version", FORMAT_VERSION)
    manifest.setdefault("files", {})
    if precision is not None:  # no sha256: nothing recorded to check the file against
        manifest["files"][path.name] = {"precision": precision}
    return manifest


def _output_shapes(task: str, output_names: Sequence[str], num_classes: int) -> list[dict[str, Any]]:
    shapes: dict[str, tuple[str, list[Any]]] = {
        "logits": ("float32", ["batch", num_classes]),
        "boxes": ("float32", ["batch", "num_boxes", 4]),
        "scores": ("float32", ["batch", "num_boxes", num_classes]),
        "seg_logits": ("float32", ["batch", num_classes, "height/4", "width/4"]),
        "seg_mask": ("int32", ["batch", "height", "width"]),
    }
    out = []
    for name in output_names:
        dtype, shape = shapes.get(name, ("float32", ["batch", "?", "?", "?"]))
        out.append({"name": name, "dtype": dtype, "shape": shape})
    return out


def torch_manifest(module: Any, *, model: str, backbone: str, imgsz: int | str | Sequence[int] | None,
                   weights: str | None, random_init: bool) -> dict[str, Any]:
    """The manifest of a PyTorch ``DeployModule``, with the same keys as an export's."""
    from pvt_deploy.manifest import tool_versions
    from pvt_deploy.models.zoo import DEFAULT_IMGSZ, model_palette
    from pvt_deploy.tasks.preprocess import preprocess_spec

    task = module.task
    size = size_pair(imgsz) or DEFAULT_IMGSZ[task]
    classes = _zoo_classes(model, task, module)
    pre = preprocess_spec(task, size, dynamic=True, mean=module.mean_values, std=module.std_values)
    return {
        "format_version": FORMAT_VERSION, "model": model, "backbone": backbone, "task": task, "classes": classes,
        **model_palette(module.model), "weights": {"source": weights, "sha256": None, "random_init": random_init},
        "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}],
        "outputs": _output_shapes(task, module.output_names, len(classes)),
        "preprocess": pre, "postprocess": module.postprocess, "dynamic": dict(TORCH_DYNAMIC),
        "files": {}, "versions": tool_versions("torch"),
    }


def _zoo_classes(model: str, task: str, module: Any) -> list[str]:
    """The class names of a DeployModule's model (:func:`~pvt_deploy.models.zoo.model_classes`)."""
    from pvt_deploy.models import resolve_name
    from pvt_deploy.models.zoo import model_classes

    try:
        classes: tuple[str, ...] = resolve_name(model, task).classes
    except InputError:
        classes = ()
    return model_classes(module.model, classes)


# --------------------------------------------------------------------------------------------------
# What can run here
# --------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One way to run an artifact: ``label`` as ``bench --backends`` spells it (``torch``, ``onnx``,
    ``onnx-fp16``, ``onnx-int8``, ``trt``), whether it can run here, and why not."""

    label: str
    backend: str
    precision: str | None
    file: str | None
    available: bool
    reason: str = ""
    # the exit code of why not, as loading it would give: 2 the input (a file the export lacks, weights
    # not on this machine, a device that cannot run it), 3 a runtime missing here, 4 a foreign engine
    exit_code: int | None = None

    def failure_code(self, named: bool) -> int | None:
        """The exit code this candidate's not running stands for in a run that nothing could do: a
        variant the export lacks (no file) only where it was ``named`` (``--backends``); in the
        default list it would hide the real cause (``--device cuda`` where there is none: 3)."""
        return self.exit_code if named or self.file is not None else None

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "backend": self.backend, "precision": self.precision, "file": self.file,
                "available": self.available, "reason": self.reason}


def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT cannot run here, or None when it can (library and a CUDA device)."""
    from pvt_deploy.runtimes.tensorrt import cuda_device_info, require_tensorrt

    try:
        require_tensorrt()
    except BackendUnavailableError as e:
        return str(e).split(" (")[0]
    if cuda_device_info(0)[0] is None:
        return "no CUDA GPU on this machine"
    try:
        import torch

        if not torch.cuda.is_available():
            return "PyTorch has no CUDA here (the TensorRT backend uses torch CUDA buffers)"
    except ImportError:
        return "PyTorch is not installed (the TensorRT backend uses torch CUDA buffers)"
    return None


def recorded_seed(manifest: Mapping[str, Any]) -> int | None:
    """The seed the export's random initialisation was drawn with (``weights.seed`` in the manifest),
    or None when it records none: exports from before pvt-deploy seeded it, or made from a module
    built outside pvt-deploy, whose random weights nothing can reproduce."""
    seed = (manifest.get("weights") or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _torch_weights(folder: Path, manifest: Mapping[str, Any]) -> tuple[str | None, int | None, str]:
    """How PyTorch rebuilds the export's weights: (checkpoint path, or the URL it was downloaded from when
    the file has left the download cache, or None; seed of the random initialisation, or None; why it
    cannot, or "" when it can). An export made from a zoo name without weights is rebuilt from its
    recorded seed: ``create_model`` with that seed draws the same model."""
    weights = manifest.get("weights") or {}
    seed = recorded_seed(manifest)
    source = weights.get("source")
    if source:
        candidates = [Path(source), folder / Path(source).name]
        for path in candidates:
            if path.is_file():
                return str(path), seed, ""
        url = weights.get("url")
        if _is_http_url(url):  # the download cache was cleaned: downloaded again when PyTorch runs it
            return url, seed, ""
        return None, seed, f"the export's weights {source} are not on this machine"
    if weights.get("random_init", True):
        if seed is not None:
            return None, seed, ""
        return None, None, "the export was made from random weights, which PyTorch cannot reproduce"
    return None, None, "the manifest does not say where the export's weights came from"


def backend_candidates(path: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None,
                       *, device: str | int | None = None) -> list[Candidate]:
    """Every way to run the export folder ``path`` and whether each can run here (for info/bench/check)."""
    from pvt_deploy.runtimes.base import device_text
    from pvt_deploy.runtimes.onnxruntime import _parse_device
    from pvt_deploy.runtimes.ort_providers import available_providers, select_providers

    folder = Path(path)
    _refuse_triton_model_folder(folder)
    device = device_text(device)
    kind, index = _parse_device(device)
    providers = available_providers()
    ort_missing = None
    # auto is never refused: its probe of the CUDA provider (a CUDA context, seconds) is made only by a row that says
    # what depends on it (the FP16 note, the INT8 flavour), not for info of a folder of model.onnx on a GPU machine
    if kind != "auto":
        try:  # an unknown device is an InputError, as in every command; a CUDA provider that cannot run, up front
            select_providers(kind, device_id=index)  # (its probe is made once per process and GPU)
        except BackendUnavailableError as e:
            ort_missing = str(e)
    manifest = manifest if manifest is not None else read_manifest(folder)
    files = manifest.get("files") or {}
    out: list[Candidate] = []
    weights, seed, why = _torch_weights(folder, manifest)
    torch_code = None
    if not why and kind in ("tensorrt", "trt"):
        why = "PyTorch does not run TensorRT (use the trt row)"
    elif not why and kind == "cuda":
        from pvt_deploy.runtimes.torch import _resolve_device

        try:
            _resolve_device(device)  # the check TorchBackend makes
        except BackendUnavailableError as e:
            why, torch_code = str(e), e.exit_code
    note = f"random weights, rebuilt from their seed {seed}" if weights is None and not why else ""
    if _is_http_url(weights):
        note = ("its checkpoint left the download cache: downloaded again from this URL by check and --backend torch; "
                "bench times random weights instead")
    out.append(Candidate("torch", "torch", "fp32", weights, not why, why or note,
                         (torch_code or InputError.exit_code) if why else None))
    for precision, name in ONNX_FILES.items():
        label = "onnx" if precision == "fp32" else f"onnx-{precision}"
        name = int8_onnx_file(folder, device) if precision == "int8" else name
        if not (folder / name).is_file():
            hint = f" (pvt-deploy export --model {shell_quote(str(folder))}{EXPORT_FLAGS[precision]})" if precision != "fp32" else ""
            out.append(Candidate(label, "onnx", precision, None, False, f"no {name} in the folder{hint}",
                                 InputError.exit_code))
            continue
        if not providers or ort_missing:
            out.append(Candidate(label, "onnx", precision, name, False,
                                 ort_missing or "onnxruntime is not installed", BackendUnavailableError.exit_code))
            continue
        note = ""
        if precision == "fp16" and _on_cpu_provider(device):
            note = "CPU only: FP16 runs through casts and is slower than FP32 here"
        if name == INT8_TRT_ONNX and kind != "cuda" and not _tensorrt_ep(device):
            note = f"on ONNX Runtime's CPU provider (the export has no {ONNX_FILES['int8']})"
        out.append(Candidate(label, "onnx", precision, name, True, note))
    engine_precision = (files.get(ENGINE_FILE) or {}).get("precision") or (manifest.get("tensorrt") or {}).get(
        "precision")
    if not (folder / ENGINE_FILE).is_file():
        out.append(Candidate("trt", "trt", engine_precision, None, False,
                             f"no {ENGINE_FILE} in the folder (pvt-deploy export --model {shell_quote(str(folder))} "
                             "--format trt, on the GPU it is for)",
                             InputError.exit_code))
    else:
        from pvt_deploy.errors import EngineMismatchError

        reason, code = (tensorrt_unavailable_reason(), BackendUnavailableError.exit_code) if kind != "cpu" else (
            f"{option('device')} cpu", InputError.exit_code)
        if reason is None:
            reason, code = _engine_mismatch(folder, manifest), EngineMismatchError.exit_code
        out.append(Candidate("trt", "trt", engine_precision, ENGINE_FILE, reason is None, reason or "",
                             code if reason else None))
    return out


def _engine_mismatch(folder: Path, manifest: Mapping[str, Any]) -> str | None:
    from pvt_deploy.errors import EngineMismatchError
    from pvt_deploy.runtimes.tensorrt import check_engine_compatibility, cuda_device_info, tensorrt_version

    gpu, cc = cuda_device_info(0)
    try:
        check_engine_compatibility(manifest, trt_version=tensorrt_version() or "0", gpu_name=gpu,
                                   compute_capability=cc, artifact_dir=folder)
    except EngineMismatchError as e:
        return str(e)
    return None


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _create(factory: Callable[..., _T], what: str, options: Mapping[str, Any], /, *args: Any, **fixed: Any) -> _T:
    """``factory(*args, **fixed, **options)``, where an option ``factory`` does not take (a typo,
    another backend's option) is bad input naming the ones it does, not a TypeError from deep inside."""
    import inspect

    params = list(inspect.signature(factory).parameters.values())[len(args):]
    takes = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in fixed]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        for key in options:
            if key not in takes:
                raise InputError(f"{what} takes no option {key!r}" + (f" (its options: {', '.join(takes)})"
                                                                       if takes else ""))
    return factory(*args, **fixed, **options)


@hashing_once()  # the manifest check and the caches' keys read a 100-250 MB graph once
def load_backend(path_or_name: str | os.PathLike[str] | None = None, *, backend: str | None = None,
                 precision: str | None = None, device: str | int | None = None,
                 imgsz: int | str | Sequence[int] | None = None, weights: str | os.PathLike[str] | None = None,
                 task: str | None = None, verify: bool = True, random_weights_ok: bool = False,
                 trust: bool = False, names: str | os.PathLike[str] | Sequence[str] | None = None,
                 **options: Any) -> tuple[Backend, dict[str, Any]]:
    """Load whatever ``path_or_name`` is (see the module docstring) and return ``(backend, manifest)``.

    ``backend``: ``torch``, ``onnx``, ``trt``, ``triton`` or None (pick by artifact). ``precision``:
    ``fp32``/``fp16``/``int8`` or None (the artifact's default). ``device``: ``cpu``, ``cuda[:N]``, a GPU
    index (``0``) or None (GPU when usable). ``imgsz`` is checked against a static graph's size here, so a wrong size
    fails before any video is opened. ``weights`` loads a checkpoint into a zoo model (PyTorch).
    ``task`` picks a zoo model's head; an export, file or Triton model of another task is refused.
    ``random_weights_ok`` lets ``backend="torch"`` on an export made from random weights build an
    equally random model of the same architecture (benchmarks: timing does not depend on weights).
    ``trust`` lets a checkpoint PyTorch loads be fully unpickled (``--trust-checkpoint``: only for
    files from a source you trust; see :func:`~pvt_deploy.models.read_checkpoint`).
    ``names`` (``--names``) renames the model's classes in the manifest returned, whatever runs it: names
    separated by commas, a list, a ``.txt`` or ``.names`` file or a dataset YAML (:func:`~pvt_deploy.data.given_names`),
    as many as the model has classes.
    Extra ``options`` go to the backend's constructor (e.g. ``threads``, ``spin``, ``cuda_graph``).
    """
    from pvt_deploy.runtimes.base import device_text
    from pvt_deploy.utils import size_pair

    kind = canonical_backend(backend)
    prec = _canonical_precision(precision)
    check_weights_path(weights)
    device = device_text(device)  # device=0 is CUDA device 0, as "0" is
    imgsz = size_pair(imgsz)  # "128" is a size, also where a zoo model's manifest is made from it
    if weights is not None or (kind == "torch" and path_or_name is not None):
        # a zoo name given weights is that model with those weights, not its export under exports/
        text = local_model(os.fspath(path_or_name)) if path_or_name is not None else DEFAULT_MODEL
    else:
        text = resolve_model(path_or_name)
    if _is_triton(text):
        if kind not in (None, "triton"):
            raise InputError(f"{text} is a Triton URL; {option('backend')} {backend} cannot run it")
        from pvt_deploy.runtimes.triton import load_triton

        triton_backend, manifest = _create(load_triton, "the Triton backend", options, text)
        # the server runs the model it holds, at its precision and on its devices: a precision that is
        # not the one served is refused (it ran the served one without a word), a device is not ours
        served = triton_backend.info.precision
        if prec is not None and prec != served:
            triton_backend.close()
            raise InputError(f"{text} serves a {served} model, not {prec}",
                             hint=f"drop {option('precision')}, or serve the export's {prec} graph under another model name")
        if device not in (None, "auto"):
            log.warning("%s: %s %s does not apply to a Triton model (the server places it)", text, option("device"),
                        device)
        return _checked(triton_backend, dict(manifest), text, task=task, imgsz=None, names=names)
    if kind == "triton":
        raise InputError(f"{option('backend')} triton needs a triton://host:port/model URL, not {text!r}")
    path = Path(text).expanduser()
    if path.is_dir() and not shadows_zoo_name(text):
        result = _load_folder(path, kind, prec, device, weights=weights, verify=verify, imgsz=imgsz,
                              random_weights_ok=random_weights_ok, trust=trust, options=options)
    elif path.is_file():
        result = _load_file(path, kind, prec, device, task=task, verify=verify, trust=trust, options=options,
                            imgsz=imgsz, given=os.fspath(path_or_name) if path_or_name is not None else None)
    else:
        require_model(text)  # a missing path, or a name not in the zoo, says so whatever the backend
        if kind not in (None, "torch"):
            raise ModelNotFoundError(f"{text!r} is a zoo name, which runs with PyTorch; export it first to use "
                                     f"{option('backend')} {backend}", hint=f"pvt-deploy export --model {shell_quote(str(text))}")
        result = _load_zoo(text, task=task, weights=weights, precision=prec, device=device, imgsz=imgsz,
                           trust=trust, options=options)
    return _checked(*result, text, task=task, imgsz=imgsz, names=names)


def _checked(backend: Backend, manifest: dict[str, Any], text: str, *, task: str | None,
             imgsz: int | str | Sequence[int] | None,
             names: str | os.PathLike[str] | Sequence[str] | None = None) -> tuple[Backend, dict[str, Any]]:
    """``(backend, manifest)`` once the loaded model is of the asked ``task`` (an export, ONNX file or
    Triton model is the task it was made for) and takes ``imgsz``, its classes renamed by ``names``; else
    the backend is closed and the error raised."""
    from pvt_deploy.data import given_names

    try:
        if task is not None and manifest.get("task") != task:
            raise InputError(f"{text} is a {manifest.get('task')} model, not {task!r}")
        check_imgsz(manifest, imgsz)
        if names is not None:
            count = len(manifest.get("classes") or []) if manifest.get("task") != "features" else 0
            manifest = {**manifest, "classes": given_names(names, count, text)}
    except BaseException:
        backend.close()
        raise
    return backend, manifest


def require_model(text: str) -> None:
    """Fail fast, before any work, on a ``--model`` that names nothing: a missing path, or a name that
    is neither an export under ``exports/`` (see :func:`resolve_model`) nor a zoo model."""
    path = Path(text).expanduser()
    if _is_triton(text) or (path.exists() and not shadows_zoo_name(text)):
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise InputError(f"{text} is not a file or folder (a device, pipe or socket)")
        return
    if _looks_like_path(text):
        raise ModelNotFoundError(f"no such file or folder: {text}")
    from pvt_deploy.models.zoo import resolve_name

    resolve_name(text)


def _looks_like_path(text: str) -> bool:
    return ("/" in text or os.sep in text or text.endswith((".onnx", ".engine", ".plan", *CHECKPOINT_SUFFIXES))
            or text.startswith("."))


def check_imgsz(manifest: Mapping[str, Any], imgsz: int | Sequence[int] | str | None) -> tuple[int, int] | None:
    """Refuse an ``imgsz`` a static graph cannot take, or one outside a dynamic graph's range; return
    the size the graph is then fed (None when ``imgsz`` is None).

    The one rule for ``--imgsz`` and ``predict(imgsz=)``: on a dynamic graph a letterboxed size is
    first rounded up to the stride, as the preprocessing does (a letterbox to 33 is padded to 64
    anyway), and the rounded size is what must lie in the range; so ``16`` runs at 32 and ``1345``
    (1376) is refused, whichever way it is asked. A center crop (classifiers) is fed as asked."""
    from pvt_deploy.tasks.preprocess import ceil_to
    from pvt_deploy.utils import size_pair

    size = size_pair(imgsz)
    if size is None:
        return None
    h, w = size
    dynamic = manifest.get("dynamic")
    pre = manifest.get("preprocess") or {}
    exported = pre.get("imgsz")
    if not dynamic:
        if exported and [h, w] != [int(v) for v in exported]:
            raise ShapeError(f"this graph was exported for a fixed {exported[0]}x{exported[1]} input; "
                             f"{option('imgsz')} {h}x{w} cannot run on it",
                             hint=f"drop {option('imgsz')}, or re-export with {switched_on('dynamic')} or {option('imgsz')}")
        return h, w
    stride = int(pre.get("stride", 32))
    # tasks.preprocess.Preprocessor's rounding, for every resize but the center crop
    fed = (h, w) if pre.get("resize", "letterbox") == "resize_crop" else (ceil_to(h, stride), ceil_to(w, stride))
    rounded = f" (rounded up to the stride {stride}: {fed[0]}x{fed[1]})" if fed != (h, w) else ""
    for name, v in (("height", fed[0]), ("width", fed[1])):
        lo, hi = (dynamic.get(name) or [1, 1 << 30])[:2]
        if v > hi or v < lo:
            raise ShapeError(f"{option('imgsz')} {h}x{w}{rounded}: {name} {v} is outside the graph's dynamic range "
                             f"[{lo}, {hi}]", hint="pick a size inside the range, or re-export with a larger one")
    return fed


def _load_zoo(name: str, *, task: str | None, weights: str | os.PathLike[str] | None, precision: str | None,
              device: str | None, imgsz: int | str | Sequence[int] | None, trust: bool,
              options: Mapping[str, Any]) -> tuple[Backend, dict[str, Any]]:
    from pvt_deploy.models import RANDOM_INIT_SEED, create_model, resolve_name
    from pvt_deploy.models.checkpoints import require_checkpoint_file

    entry = resolve_name(name, task)
    _refuse_torch_int8(precision, entry.name, f"export it with INT8 and run that: pvt-deploy export --model {shell_quote(str(name))} --int8")
    if weights is not None:
        weights = require_checkpoint_file(weights, model=name, task=task)  # a URL, "official": its downloaded file
    model = create_model(name, task=task, weights=weights, trust=trust, seed=RANDOM_INIT_SEED)
    return _torch_backend(model, model_name=entry.name, backbone=entry.backbone,
                          weights=os.fspath(weights) if weights is not None else None, precision=precision,
                          device=device, imgsz=imgsz, options=options)


def _refuse_torch_int8(precision: str | None, what: str, hint: str) -> None:
    """PyTorch runs a model as it is; INT8 is a file of an export (ONNX Runtime, TensorRT). Refused
    before the model is built, with the way to an INT8 model as the hint."""
    if precision == "int8":
        raise InputError(f"{what}: PyTorch runs fp32 or fp16, not int8", hint=hint)


def _torch_backend(model: Any, *, model_name: str, backbone: str, weights: str | None, precision: str | None,
                   device: str | None, imgsz: int | str | Sequence[int] | None, options: Mapping[str, Any],
                   deploy_kwargs: Mapping[str, Any] | None = None,
                   manifest: Mapping[str, Any] | None = None) -> tuple[Backend, dict[str, Any]]:
    from pvt_deploy.models import build_deploy_module
    from pvt_deploy.runtimes.base import TensorSpec
    from pvt_deploy.runtimes.torch import TorchBackend

    kwargs = dict(deploy_kwargs or {})
    graph_nms = kwargs.pop("graph_nms", None)
    module: Any = build_deploy_module(model, **kwargs)  # or the graph-NMS module around it
    if graph_nms is not None:  # an --nms graph export: the same NMS, with its thresholds, after the forward pass
        from pvt_deploy.export.nms import build_graph_nms

        module = build_graph_nms(module, **graph_nms)
    if manifest is None:
        manifest = torch_manifest(module, model=model_name, backbone=backbone, imgsz=imgsz, weights=weights,
                                  random_init=bool(getattr(model, "random_init", weights is None)))
    specs = [TensorSpec.from_json(o) for o in manifest.get("outputs", [])]
    backend = _create(TorchBackend, "the PyTorch backend", options, module, device=device,
                      precision=precision or "fp32", outputs=specs or None, name=model_name)
    return backend, dict(manifest)


def file_backend(path: str | os.PathLike[str]) -> str | None:
    """The backend that runs a model file of its own, by its suffix: ``onnx`` for an ``.onnx``, ``trt`` for an
    engine (``.engine``, ``.plan``), ``torch`` for a checkpoint (:data:`CHECKPOINT_SUFFIXES`); None for
    another name. What :func:`load_backend` runs a lone file with, and so what ``bench`` times it on."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".engine", ".plan"):
        return "trt"
    return "torch" if suffix in CHECKPOINT_SUFFIXES else None


def _load_file(path: Path, kind: str | None, precision: str | None, device: str | None, *, task: str | None,
               verify: bool, trust: bool, options: Mapping[str, Any], imgsz: tuple[int, int] | None = None,
               given: str | None = None) -> tuple[Backend, dict[str, Any]]:
    """``given``: the ``--model`` as the user gave it (a checkpoint URL ``path`` was downloaded from is
    what the export commands in the hints name, so that the export records the URL)."""
    owner = file_backend(path)
    if owner == "onnx":
        if kind not in (None, "onnx"):
            raise InputError(f"{path.name} is an ONNX file; {option('backend')} {kind} cannot run it directly",
                             hint=f"point at its export folder, or use {option('backend')} onnx")
        manifest = _folder_manifest_listing(path)
        if manifest is not None and verify:
            with reading(path):  # the disk failing the hash's read (EIO) says so, as for a lone file
                verify_file(path.parent, manifest, path.name)
        if manifest is None:
            manifest = read_onnx_manifest(path)
        return _onnx_backend(path, manifest, precision, device, options, imgsz)
    if owner == "trt":
        if kind not in (None, "trt"):
            raise InputError(f"{path.name} is a TensorRT engine; {option('backend')} {kind} cannot run it")
        manifest = _folder_manifest_listing(path) or _folder_manifest(path.parent)
        if manifest is None:
            raise InputError(f"{path}: a lone engine does not say how to preprocess or read its outputs; keep "
                             f"the export's {MANIFEST_NAME} beside it")
        return _trt_backend(path, manifest, device, options)
    if owner == "torch":
        shown = given if given is not None and is_checkpoint_url(given) else str(path)
        if kind not in (None, "torch"):
            raise InputError(f"{path.name} is a PyTorch checkpoint; export it to run it with {option('backend')} {kind}",
                             hint=f"pvt-deploy export --model {shell_quote(shown)}")
        from pvt_deploy.models import RANDOM_INIT_SEED, create_model

        _refuse_torch_int8(precision, path.name, f"export it with INT8 and run that: pvt-deploy export --model {shell_quote(shown)} --int8")
        model = create_model(str(path), task=task, trust=trust, seed=RANDOM_INIT_SEED)
        name = str(getattr(model, "zoo_name", path.stem))
        backbone = name.split("-")[0]
        return _torch_backend(model, model_name=name, backbone=backbone, weights=str(path), precision=precision,
                              device=device, imgsz=None, options=options)
    raise InputError(f"{path}: not a model pvt-deploy can run (expected an export folder, .onnx, .engine or "
                     f"a checkpoint file: {', '.join(CHECKPOINT_SUFFIXES)})")


def _refuse_triton_model_folder(folder: Path) -> None:
    """Where an export folder is expected (infer, check, bench): a Triton model folder says how it runs."""
    if is_triton_model_folder(folder):
        raise InputError(f"{folder} is a Triton model folder: {served_by_triton(folder)}")


def served_by_triton(folder: Path) -> str:
    """How the Triton model folder ``folder`` runs: served (its repository and URL), or its graph here."""
    versions = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / "model.onnx").is_file())
    model = option("model")  # --model under the CLI, model from Python (Model, export, inspect)
    local = f"; its graph runs here as {model} {shell_quote(str(versions[-1] / 'model.onnx'))}" if versions else ""
    return (f"serve it (tritonserver --model-repository {shell_quote(str(folder.parent))}) and run {model} "
            f"triton://HOST:8000/{folder.name}{local}")


def _folder_manifest(folder: Path) -> dict[str, Any] | None:
    return read_manifest(folder) if (folder / MANIFEST_NAME).is_file() else None


def _folder_manifest_listing(path: Path) -> dict[str, Any] | None:
    """The folder's manifest when it describes ``path`` (a renamed or foreign file does not count)."""
    manifest = _folder_manifest(path.parent)
    if manifest is not None and path.name in (manifest.get("files") or {}):
        return manifest
    return None


def _warn_failed_parity(name: str, manifest: Mapping[str, Any]) -> None:
    """Say so when the file about to run failed its parity gate at export (kept with
    ``--allow-parity-failure``): its results may differ from PyTorch's beyond its tolerance."""
    entry = (manifest.get("parity") or {}).get(name) or {}
    if entry.get("passed") is False:
        first = "; ".join(str(f) for f in (entry.get("failures") or [])[:1])
        log.warning("%s failed its parity gate at export%s: its results may differ from PyTorch's beyond its "
                    "precision's tolerance", name, f" ({first})" if first else "")


def _onnx_backend(path: Path, manifest: dict[str, Any], precision: str | None, device: str | None,
                  options: Mapping[str, Any], imgsz: tuple[int, int] | None = None) -> tuple[Backend, dict[str, Any]]:
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend, graph_file_precision

    _warn_failed_parity(path.name, manifest)

    entry = (manifest.get("files") or {}).get(path.name) or {}
    file_precision = entry.get("precision") or graph_file_precision(path)
    if precision is not None and precision != file_precision:
        raise InputError(f"{path.name} holds a {file_precision} graph, not {precision}",
                         hint=f"pick {ONNX_FILES.get(precision, 'the matching file')} from the export folder")
    if file_precision == "fp16" and _on_cpu_provider(device):
        log.warning("%s: an FP16 graph on the CPU runs through casts and is slower than FP32", path.name)
    # the manifest at the size this run feeds: a TensorRT EP's optimisation profile is made from it
    fed = check_imgsz(manifest, imgsz)
    sized = {**manifest, "preprocess": {**(manifest.get("preprocess") or {}), "imgsz": list(fed)}} if fed else manifest
    backend = _create(OnnxRuntimeBackend, "the ONNX Runtime backend", options, path, device=device,
                      precision=file_precision, manifest=sized)
    return backend, manifest


def _on_cpu_provider(device: str | None) -> bool:
    """Whether ONNX Runtime runs on its CPU provider for ``device``: asked for, or ``auto`` where its session
    gets no GPU provider (:func:`_session_providers`: none listed, or a CUDA provider that cannot run)."""
    from pvt_deploy.runtimes.ort_providers import CPU

    return (device or "auto").lower() == "cpu" or _session_providers(device)[:1] == [CPU]


def _trt_backend(path: Path, manifest: dict[str, Any], device: str | None,
                 options: Mapping[str, Any]) -> tuple[Backend, dict[str, Any]]:
    from pvt_deploy.runtimes.tensorrt import TensorRTBackend

    _warn_failed_parity(path.name, manifest)
    if device is not None and device.lower() == "cpu":
        raise InputError(f"TensorRT engines run on a GPU; {option('device')} cpu cannot run model.engine",
                         hint=f"use {option('backend')} onnx for the CPU")
    kind, _, index = (device or "auto").lower().partition(":")  # tensorrt:1 is CUDA device 1, as for ONNX Runtime
    dev = (index or 0) if kind in ("auto", "trt", "tensorrt") else device  # the backend checks the rest
    backend = _create(TensorRTBackend, "the TensorRT backend", options, path, manifest=manifest, device=dev)
    return backend, manifest


def _session_providers(device: str | None) -> list[str]:
    """The providers an ONNX Runtime session for ``device`` gets, best first, as :func:`select_providers` chooses
    them for the backend: not only listed but usable (TensorRT's libraries load, the CUDA provider runs; its probe
    is made once per process and GPU). Empty where the device is refused or unknown (the load says why)."""
    from pvt_deploy.runtimes.onnxruntime import _parse_device
    from pvt_deploy.runtimes.ort_providers import provider_name, select_providers

    try:
        kind, index = _parse_device(device)
        return [provider_name(p) for p in select_providers(kind, device_id=index)]
    except (BackendUnavailableError, InputError):
        return []


def _tensorrt_ep(device: str | None) -> bool:
    """Whether ONNX Runtime's session for ``device`` gets the TensorRT EP (not only that it is listed)."""
    from pvt_deploy.runtimes.ort_providers import TENSORRT

    return (device or "auto").lower() != "cpu" and TENSORRT in _session_providers(device)


def _int8_on_gpu(device: str | None) -> bool:
    """Whether ONNX Runtime's session for ``device`` runs an INT8 graph on a GPU provider: the TensorRT EP
    (:func:`_tensorrt_ep`), or the CUDA EP where ``cuda`` asks for it (``auto`` runs INT8 on the CPU where it gets
    no TensorRT EP, :func:`_load_folder`)."""
    from pvt_deploy.runtimes.onnxruntime import _parse_device
    from pvt_deploy.runtimes.ort_providers import CUDA, TENSORRT

    providers = _session_providers(device)  # asked once (a CPU device's are the CPU's alone; a bad one's, none)
    return TENSORRT in providers or (providers[:1] == [CUDA] and _parse_device(device)[0] == "cuda")


def int8_onnx_file(folder: str | os.PathLike[str], device: str | None = None) -> str:
    """The INT8 graph of an export folder that ONNX Runtime runs for ``device``: TensorRT's flavour
    (``model.int8.trt.onnx``, symmetric S8S8 Q/DQ) where the session runs it on a GPU provider
    (:func:`_int8_on_gpu`): the TensorRT EP, which builds it (not where that EP is only listed, or its libraries
    or the CUDA provider under it cannot run), or the CUDA EP ``cuda`` asks for, which has a kernel for each of
    its nodes (int8 Q/DQ around float ops) where it has none for the CPU flavour's dynamic INT8
    (``DynamicQuantizeLinear``, a uint8 ``MatMulInteger``: those would run on the CPU between copies); else the
    CPU flavour (``model.int8.onnx``); where the folder has only one flavour, that one (ONNX Runtime's CPU provider
    runs TensorRT's Q/DQ too, as the export's parity gate did)."""
    folder = Path(folder)
    cpu, trt = ONNX_FILES["int8"], INT8_TRT_ONNX
    if not (folder / trt).is_file():
        return cpu
    if not (folder / cpu).is_file():
        return trt
    return trt if _int8_on_gpu(device) else cpu


def _load_folder(folder: Path, kind: str | None, precision: str | None, device: str | None, *,
                 weights: str | os.PathLike[str] | None, verify: bool, random_weights_ok: bool, trust: bool,
                 options: Mapping[str, Any], imgsz: tuple[int, int] | None = None) -> tuple[Backend, dict[str, Any]]:
    _refuse_triton_model_folder(folder)
    manifest = read_manifest(folder)
    if kind == "torch":
        return _torch_from_folder(folder, manifest, weights, precision, device, random_weights_ok, options,
                                  trust=trust)
    on_cpu = (device or "auto").lower() == "cpu"
    engine = folder / ENGINE_FILE
    engine_precision = (manifest.get("files", {}).get(ENGINE_FILE) or {}).get("precision") or (
        manifest.get("tensorrt") or {}).get("precision")
    if kind == "trt":
        if not engine.is_file():
            raise InputError(f"{folder}: no {ENGINE_FILE}", hint=f"pvt-deploy export --model {shell_quote(str(folder))} --format trt")
        if precision is not None and engine_precision and precision != engine_precision:
            raise InputError(f"{engine} was built for {engine_precision}, not {precision}",
                             hint=f"rebuild it: pvt-deploy export --model {shell_quote(str(folder))} --format trt"
                                  f"{EXPORT_FLAGS.get(precision, '')}")
        return _trt_backend(engine, manifest, device, options)
    if kind is None and engine.is_file() and not on_cpu and precision in (None, engine_precision):
        reason = tensorrt_unavailable_reason()
        if reason is None:
            return _trt_backend(engine, manifest, device, options)
        log.info("%s: not using %s (%s); using ONNX Runtime", folder, ENGINE_FILE, reason)
    name = int8_onnx_file(folder, device) if precision == "int8" else ONNX_FILES[precision or "fp32"]
    path = folder / name
    if not path.is_file():
        flag = EXPORT_FLAGS.get(precision or "fp32", "")
        raise InputError(f"{folder}: no {name}", hint=f"add it to this export: pvt-deploy export --model {shell_quote(str(folder))}{flag}")
    if verify:
        with reading(path):  # the disk failing the hash's read (EIO) says so, as for a lone file
            verify_file(folder, manifest, name)
    if precision == "int8" and device is None and not (name == INT8_TRT_ONNX and _tensorrt_ep(device)):
        device = "cpu"  # the QDQ U8S8 file is the CPU (VNNI) flavour; the S8S8 one is TensorRT's, else run on the CPU
    return _onnx_backend(path, manifest, precision, device, options, imgsz)


def _torch_from_folder(folder: Path, manifest: dict[str, Any], weights: str | os.PathLike[str] | None,
                       precision: str | None, device: str | None, random_weights_ok: bool,
                       options: Mapping[str, Any], *, trust: bool = False) -> tuple[Backend, dict[str, Any]]:
    """PyTorch for an export folder: the same architecture and graph options, with the export's weights."""
    from pvt_deploy.models import RANDOM_INIT_SEED, create_model

    _refuse_torch_int8(precision, str(folder), f"INT8 runs on ONNX Runtime or TensorRT: leave out {option('backend')} torch")

    source = os.fspath(weights) if weights is not None else None
    random_why = None
    if source is None:
        source, _, why = _torch_weights(folder, manifest)
        if why and not random_weights_ok:
            raise InputError(f"{folder}: cannot rebuild the PyTorch model: {why}",
                             hint=f"pass {option('weights')} CHECKPOINT (the file the export was made from)")
        if random_weights_ok and (why or _is_http_url(source)):
            # a benchmark: timing does not depend on the weights, not worth a download
            random_why = _timed_without_weights(folder, manifest, source, why)
            source = None
        elif source is not None and not random_weights_ok:
            source = _export_checkpoint(folder, manifest, source)
    model_name = str(manifest.get("model") or manifest.get("backbone"))
    task = manifest.get("task")
    classes = manifest.get("classes") or []
    num_classes = len(classes) if classes and task != "features" else None
    # The export's seed draws its random weights (all of them, or the tensors a checkpoint left out)
    # again; without one (bench, random_weights_ok) any seed times the same architecture.
    seed = recorded_seed(manifest)
    model = create_model(model_name, task=task, weights=source, num_classes=num_classes, trust=trust,
                         seed=RANDOM_INIT_SEED if seed is None else seed, random_why=random_why)
    post = manifest.get("postprocess") or {}
    deploy_kwargs: dict[str, Any] = {}
    if task == "segment" and post.get("seg_output"):
        deploy_kwargs["seg_output"] = post["seg_output"]
    if task == "detect" and post.get("pre_nms_topk"):
        deploy_kwargs["pre_nms_topk"] = int(post["pre_nms_topk"])
    if task == "detect" and post.get("nms") == "graph":
        deploy_kwargs["graph_nms"] = {k: post[k] for k in ("score_threshold", "iou_threshold", "max_detections")
                                      if post.get(k) is not None}
    pre = manifest.get("preprocess") or {}
    if pre.get("mean") and pre.get("std"):
        deploy_kwargs.update(mean=tuple(pre["mean"]), std=tuple(pre["std"]))
    torch_manifest_ = {**manifest, "weights": {**(manifest.get("weights") or {}), "source": source,
                                                "random_init": source is None}}
    return _torch_backend(model, model_name=model_name, backbone=str(manifest.get("backbone", model_name)),
                          weights=source, precision=precision, device=device, imgsz=None, options=options,
                          deploy_kwargs=deploy_kwargs, manifest=torch_manifest_)


def _timed_without_weights(folder: Path, manifest: Mapping[str, Any], source: str | None, why: str) -> str:
    """Why ``bench`` times an export's architecture with random weights: its checkpoint left the download
    cache (``source`` is then the URL: timing is not worth a download, which check and infer make) or is not
    on this machine (``why``), or the export's own random weights cannot be drawn again."""
    weights = manifest.get("weights") or {}
    if why and weights.get("random_init", True) and not weights.get("source"):
        return f"{folder}: {why} (bench times other random weights of the same architecture)"
    if _is_http_url(source):
        return (f"{folder}: its weights, downloaded from {source}, are no longer in the download cache "
                f"({weights.get('source')}); bench times the architecture rather than download them again "
                f"(check and --backend torch download them)")
    return f"{folder}: {why}; bench times the architecture without them"


def _export_checkpoint(folder: Path, manifest: Mapping[str, Any], source: str) -> str:
    """The local file of the checkpoint an export was made from (``source``, from :func:`_torch_weights`),
    once its sha256 is the manifest's ``weights.sha256``. A URL (its ``weights.url``: the cached file it
    was made from left the download cache) is downloaded again; what it serves now, or a file changed
    since the export, is refused rather than run as the export's model."""
    from pvt_deploy.errors import CheckpointError
    from pvt_deploy.models.checkpoints import require_checkpoint_file
    from pvt_deploy.utils.files import sha256_file

    weights = manifest.get("weights") or {}
    url = source if _is_http_url(source) else None
    if url is not None:
        log.info("%s: its weights %s are no longer in the download cache; downloading them again from %s",
                 folder, weights.get("source"), url)
        source = os.fspath(require_checkpoint_file(url))
    recorded = weights.get("sha256")
    digest = sha256_file(source) if isinstance(recorded, str) and recorded else None
    if digest is not None and digest != recorded and url is None and _is_http_url(weights.get("url")):
        own = os.fspath(require_checkpoint_file(str(weights["url"])))
        if own != source:  # the cache was cleaned and its name taken by another URL's download: this URL's file
            url, source, digest = str(weights["url"]), own, sha256_file(own)
        # else the URL's own cached file changed (by hand, or a download since): that file is named, not the URL
    if digest is not None and digest != recorded:
        what = f"{url} now serves a file" if url is not None else f"{source} now holds weights"
        raise CheckpointError(f"{folder}: cannot rebuild the PyTorch model: {what} with sha256 {digest[:12]}..., "
                              f"not the {str(recorded)[:12]}... the export was made from",
                              hint=f"pass {option('weights')} CHECKPOINT (the file the export was made from)")
    return source


# --------------------------------------------------------------------------------------------------
# Describing an artifact (``pvt-deploy info``)
# --------------------------------------------------------------------------------------------------


def _file_status(folder: Path, name: str, entry: Mapping[str, Any] | None) -> dict[str, Any]:
    from pvt_deploy.utils.files import sha256_file

    path = folder / name
    row: dict[str, Any] = {"name": name, "precision": (entry or {}).get("precision"),
                           "bytes": path.stat().st_size if path.is_file() else None}
    with reading(path):  # the disk failing the read (EIO): 'cannot read X: ...', as a lone file's is said
        row["sha256"] = sha256_file(path) if path.is_file() else None
    if row["sha256"] is None:
        row["check"] = "missing"
    elif not entry or not entry.get("sha256"):
        row["check"] = "unlisted"
    else:
        row["check"] = "ok" if row["sha256"] == entry["sha256"] else "MISMATCH"
    if entry and entry.get("flavour"):  # which INT8 graph: the CPU's (uint8, asymmetric) or TensorRT's (int8)
        row["flavour"] = entry["flavour"]
    if entry and entry.get("source"):
        row["source"] = entry["source"]
    return row


def describe_artifact(path_or_name: str | os.PathLike[str], *, device: str | None = None,
                      graph: bool = False, trust: bool = False) -> dict[str, Any]:
    """Everything ``pvt-deploy info`` shows: manifest summary, I/O, files with sha256 status,
    precision, dynamic ranges, export parity, and which backends can run it here (and why not);
    with ``graph``, what is inside each of its graphs (``"graph"``, :func:`describe_graphs`; only then
    are the graphs of a folder read). ``trust``: a checkpoint described may be fully unpickled, as
    :func:`load_backend`'s. A checkpoint's URL is described as given, its file in the download cache
    as its weights (``weights.url``, as an export made from it records), as ``bench`` names it. ``verdict``:
    ``{"ok", "problems"}``, whether its files are intact (:func:`integrity_problems`)."""
    given = os.fspath(path_or_name) if path_or_name is not None else None
    url = given if given is not None and is_checkpoint_url(given) else None
    text = resolve_model(path_or_name)
    path = Path(text)
    folder = path if path.is_dir() else path.parent  # where the files listed below are
    manifest: dict[str, Any]
    files: list[dict[str, Any]] = []
    candidates: list[Candidate] = []
    foreign: dict[str, Any] | None = None  # what an ONNX file pvt-deploy did not make says of itself
    shadowed = shadows_zoo_name(text)  # a zoo name, although a folder of that name is here
    if path.is_dir() and not shadowed and is_triton_model_folder(path):
        manifest = read_manifest(path)
        files = [_file_status(path, name, entry) for name, entry in (manifest.get("files") or {}).items()]
        candidates = [Candidate("triton", "triton", (manifest.get("triton") or {}).get("precision"), None, False,
                                served_by_triton(path))]
        kind = "Triton model folder"
    elif path.is_dir() and not shadowed:
        manifest = read_manifest(path)
        listed = dict(manifest.get("files") or {})
        present = sorted(p.name for p in path.iterdir() if p.suffix in (".onnx", ".engine", ".plan"))
        files = [_file_status(path, name, listed.get(name)) for name in dict.fromkeys([*listed, *present])]
        changed = {f["name"] for f in files if f["check"] == "MISMATCH"}
        candidates = [replace(c, available=False, reason=f"{c.file} changed since the export (sha256 "
                                          "mismatch); restore it or re-export")
                      if c.file in changed else c for c in backend_candidates(path, manifest, device=device)]
        kind = "export folder"
    elif path.is_file() and file_backend(path) == "onnx":
        listing = _folder_manifest_listing(path)
        try:
            manifest = listing if listing is not None else read_onnx_manifest(path)
        except ForeignOnnxError as e:
            manifest, foreign = _foreign_onnx(path, e)
        files = [_file_status(path.parent, path.name, (manifest.get("files") or {}).get(path.name))]
        from pvt_deploy.runtimes.onnxruntime import graph_file_precision
        from pvt_deploy.runtimes.ort_providers import available_providers

        files[0]["precision"] = files[0]["precision"] or graph_file_precision(path)
        ok = bool(available_providers()) and foreign is None
        why = ("onnxruntime is not installed" if foreign is None
               else "not made by pvt-deploy: its preprocessing and classes are unknown")
        candidates = [Candidate("onnx", "onnx", files[0]["precision"], path.name, ok, "" if ok else why)]
        origin = ("not made by pvt-deploy" if foreign is not None
                  else "manifest from its folder" if listing is not None else "manifest from its metadata")
        kind = f"ONNX file ({origin})"
    elif path.is_file() and file_backend(path) == "trt":
        found = _folder_manifest(path.parent)
        if found is None:
            raise InputError(f"{path}: a lone engine has no manifest to describe")
        manifest = found
        files = [_file_status(path.parent, path.name, (manifest.get("files") or {}).get(path.name))]
        reason = tensorrt_unavailable_reason()
        candidates = [Candidate("trt", "trt", files[0]["precision"], path.name, reason is None, reason or "")]
        kind = "TensorRT engine"
    elif (_is_triton(text) or (path.is_file() and file_backend(path) == "torch") or not path.exists()
          or shadowed):
        if _looks_like_path(text) and not path.exists() and not _is_triton(text):
            raise ModelNotFoundError(f"no such file or folder: {text}")
        backend, manifest = load_backend(text, device=device, trust=trust)
        backend.close()
        candidates = [Candidate(canonical_backend(backend.info.name) or backend.info.name, backend.info.name,
                                backend.info.precision, None, True, "")]
        kind = "Triton model" if _is_triton(text) else ("PyTorch checkpoint" if path.is_file() else "zoo model (PyTorch)")
    else:
        raise InputError(f"{path}: not an artifact pvt-deploy knows (export folder, .onnx, .engine, a checkpoint file: "
                         f"{', '.join(CHECKPOINT_SUFFIXES)})")
    weights = manifest.get("weights") or {}
    if url is not None:
        weights = {**weights, "url": url}
    facts = {
        "path": url or text, "artifact": url or text, "kind": kind, "model": manifest.get("model"),
        "backbone": manifest.get("backbone"),
        "task": manifest.get("task"), "num_classes": len(manifest.get("classes") or []),
        "classes": list(manifest.get("classes") or []), "palette": manifest.get("palette"),
        "weights": {"source": weights.get("source"), "random_init": weights.get("random_init"),
                    "seed": recorded_seed(manifest), **({"url": weights["url"]} if weights.get("url") else {})},
        "inputs": manifest.get("inputs"), "outputs": manifest.get("outputs"),
        "preprocess": manifest.get("preprocess"), "postprocess": manifest.get("postprocess"),
        "dynamic": manifest.get("dynamic"), "files": files, "tensorrt": manifest.get("tensorrt"),
        "parity": manifest.get("parity"), "export": manifest.get("export"), "versions": manifest.get("versions"),
        "backends": [c.to_json() for c in candidates],
    }
    if foreign is not None:
        facts["foreign"] = foreign
    else:
        _add_cpu_graphs(folder, files)
    if graph:
        facts["graph"] = describe_graphs(folder, [f["name"] for f in files],
                                         precisions={f["name"]: f.get("precision") for f in files})
    problems = integrity_problems(facts)
    facts["verdict"] = {"ok": not problems, "problems": problems}
    return facts


def integrity_problems(facts: Mapping[str, Any]) -> list[str]:
    """What is wrong with the files :func:`describe_artifact` described, one line each, a file once: a
    listed file changed since the export (its sha256 not the manifest's) or gone, and with ``graph`` an
    ONNX file that cannot be read as a model (``unreadable`` rows of :func:`describe_graphs`). A file the
    manifest does not list, or a graph that needs a package or TensorRT that is not here, is no problem
    of the artifact's. ``info`` exits 1 where there is one, ``verdict`` in its ``--json``."""
    said: dict[str, str] = {}
    for row in facts.get("files") or []:
        if row["check"] == "MISMATCH":
            said[row["name"]] = f"{row['name']} changed since the export (its sha256 is not the manifest's)"
        elif row["check"] == "missing":
            said[row["name"]] = f"{row['name']} is missing (the manifest lists it)"
    for row in facts.get("graph") or []:
        if row.get("unreadable") and row["file"] not in said:
            said[row["file"]] = f"{row['file']}: {row['error']}"
    return list(said.values())


def _add_cpu_graphs(folder: Path, files: list[dict[str, Any]]) -> None:
    """Each intact ONNX file's ``cpu_graph``: the copy with this CPU's rewrites that ONNX Runtime's CPU sessions
    load (:mod:`pvt_deploy.runtimes.ort_session`), where an earlier session here built it: its ``path``
    (relative to ``folder`` when inside it; the file itself where no rewrite applied) and ``rewrites`` (those
    that changed something); None where none is built yet. Another program's own session can load it too."""
    from pvt_deploy.runtimes.ort_session import built_graph

    for row in files:
        if not row["name"].endswith(".onnx") or row["check"] in ("missing", "MISMATCH"):
            continue
        found = built_graph(folder / row["name"], sha256=row["sha256"])
        if found is None:
            row["cpu_graph"] = None
            continue
        shown = found.path.relative_to(folder) if found.path.is_relative_to(folder) else found.path
        row["cpu_graph"] = {"path": str(shown), "rewrites": {k: v for k, v in found.rewrites.items() if v}}


def _foreign_onnx(path: Path, error: ForeignOnnxError) -> tuple[dict[str, Any], dict[str, Any]]:
    """What an ONNX file that pvt-deploy did not make says of itself, for ``info``: a manifest of its inputs
    and outputs (symbolic dims by name) and the precision its graph holds, and the ``foreign`` facts: its
    opsets, IR version, producer and what pvt-deploy can do with it. Without the onnx package, ``error``."""
    try:
        model = load_onnx_graph(path)
    except ImportError:
        raise error from None
    from pvt_deploy.export.graph import io_spec, model_header
    from pvt_deploy.export.optimize import graph_precision

    inputs, outputs = io_spec(model)
    manifest = {"inputs": inputs, "outputs": outputs, "files": {path.name: {"precision": graph_precision(model)}}}
    return manifest, {
        **model_header(model),
        "note": f"no {ONNX_METADATA_KEY!r} metadata in it and no {MANIFEST_NAME} beside it that lists it: "
                "its preprocessing and classes are unknown, so infer, val, bench and check cannot "
                "run it and export cannot convert it; info --graph shows what is inside it",
    }


def describe_graphs(folder: Path, names: Sequence[str], *,
                    precisions: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
    """What is inside each graph among the files ``names`` of ``folder`` (``pvt-deploy info --graph``): an
    ONNX file's :func:`pvt_deploy.export.graph.graph_summary` (read without its external data), an
    engine's layers (:func:`pvt_deploy.runtimes.tensorrt.engine_layers`). A file that cannot be read says
    why in ``error`` (``unreadable`` true where the fault is the file's: a read that fails, not a model;
    not where the onnx package or TensorRT is missing here, or an engine is another GPU's), and keeps the
    precision ``precisions`` gives it (the manifest's; a graph read has its own); other files (checkpoints)
    are not listed."""
    rows: list[dict[str, Any]] = []
    for name in names:
        path = folder / name
        kind = file_backend(path)
        if kind not in ("onnx", "trt"):
            continue
        row: dict[str, Any] = {"file": name, "format": "onnx" if kind == "onnx" else "engine"}
        if given := (precisions or {}).get(name):
            row["precision"] = given
        rows.append(row)
        if not path.is_file():
            row["error"] = "no such file"  # the file's row says it is missing
        elif kind == "onnx":
            try:
                from pvt_deploy.export.graph import graph_summary

                row.update(graph_summary(load_onnx_graph(path)))
            except ImportError:
                row["error"] = "needs the onnx package (pip install onnx)"
            except OSError as e:  # the disk failed (EIO), not the model
                row.update(error=f"cannot read it: {e.strerror or e}", unreadable=True)
            except Exception as e:  # noqa: BLE001 - onnx raises DecodeError & co for a file that is not a model
                row.update(error=f"not a readable ONNX model ({joined_lines(e)[:200]})", unreadable=True)
        else:
            from pvt_deploy.runtimes.tensorrt import engine_layers, require_tensorrt

            try:
                require_tensorrt()
            except BackendUnavailableError as e:
                row["error"] = f"needs TensorRT ({str(e).split(' (')[0]})"
                continue
            try:
                row.update(engine_layers(path))
            except PvtDeployError as e:
                row["error"] = str(e)
    return rows
