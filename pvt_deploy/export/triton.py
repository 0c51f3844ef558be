"""Triton Inference Server model repository export.

``export_triton`` turns an artifact folder (``model.onnx`` / ``model.engine`` + ``manifest.json``) into
one model of a Triton model repository::

    <out_dir>/<name>/config.pbtxt       # generated from the graph itself (names, dtypes, dims)
    <out_dir>/<name>/manifest.json      # the artifact's manifest + a "triton" section (for people and tools)
    <out_dir>/<name>/1/model.onnx       # backend="onnx"  (onnxruntime backend)
    <out_dir>/<name>/1/model.plan       # backend="trt"   (tensorrt backend; a copy of model.engine)

Where the manifest lives, and why twice: a client of a remote Triton server cannot read files in the
model repository, but it can read the model configuration over HTTP/gRPC. So the manifest's essentials
(task, classes, preprocess, postprocess, I/O, plus the "triton" section) are embedded in
``config.pbtxt`` as the string parameter :data:`MANIFEST_PARAMETER`; the ``triton://`` runtime reads it
from there and runs the same pre/post-processing as every other backend. The full ``manifest.json``
beside the config is for humans and ``pvt-deploy info``; Triton ignores files in a model folder that are
not numeric version folders, and backends ignore config parameters they do not know.

The config text is written by this module (one code path): the generator below emits protobuf text
format, and the tests parse every generated file with ``tritonclient``'s ``ModelConfig`` message, so the
writer needs neither tritonclient nor Triton at export time.

Dims come from the ONNX graph, never from assumptions: symbolic dims become ``-1`` and, when the graph's
first dimension is a dynamic batch and ``max_batch > 0``, Triton's implicit batch dimension is dropped
from ``dims`` (Triton adds it back). A graph whose first dimension is static cannot be batched by Triton,
so it is exported with ``max_batch_size: 0`` and full dims, and the config says why in a comment.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pvt_deploy.errors import InputError, cannot_read, option
from pvt_deploy.export import reading
from pvt_deploy.export.swap import SwappedFolder
from pvt_deploy.manifest import (
    MANIFEST_NAME,
    ONNX_METADATA_KEY,
    essentials,
    profile_batch,
    read_manifest,
    verify_file,
)
from pvt_deploy.utils.files import (
    WRITE_ERRNOS,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    hashing_once,
    json_dumps,
    sha256_file,
)

log = logging.getLogger(__name__)

#: Config parameter that carries the pvt-deploy manifest (JSON) to remote clients.
MANIFEST_PARAMETER = "pvt_deploy_manifest"
CONFIG_NAME = "config.pbtxt"
_MODEL_FILES = {"onnx": "model.onnx", "trt": "model.plan"}
_TRITON_BACKENDS = {"onnx": "onnxruntime", "trt": "tensorrt"}
_KINDS = {"GPU": "KIND_GPU", "CPU": "KIND_CPU", "AUTO": "KIND_AUTO"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# ONNX TensorProto element type -> Triton DataType (model_config.proto). Numbers, so that this module
# does not import onnx at module import time.
_ONNX_TO_TRITON = {
    1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
    7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 12: "TYPE_UINT32",
    13: "TYPE_UINT64", 16: "TYPE_BF16",
}


@dataclass(frozen=True)
class GraphTensor:
    """One graph input or output as Triton needs it: element type and full shape (None = symbolic)."""

    name: str
    data_type: str  # Triton DataType enum name, e.g. "TYPE_FP32"
    shape: tuple[int | None, ...]


def read_onnx_io(path: str | os.PathLike[str]) -> tuple[list[GraphTensor], list[GraphTensor]]:
    """Inputs and outputs of an ONNX graph, without loading its weights.

    Initializers that are also listed as graph inputs (old exporters did that) are not real inputs and
    are skipped, as ONNX Runtime does.
    """
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except OSError as e:  # the disk failed (EIO), not the model: said as info, infer and bench say it
        raise cannot_read(path, e) from e
    except Exception as e:  # onnx raises DecodeError & co for a file that is not a model
        raise InputError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from e
    graph = model.graph
    initializers = {init.name for init in graph.initializer}

    def convert(values: Iterable[Any]) -> list[GraphTensor]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            tensor_type = v.type.tensor_type
            elem = tensor_type.elem_type
            if elem not in _ONNX_TO_TRITON:
                raise InputError(f"{path}: tensor {v.name!r} has ONNX type {elem}, which Triton cannot serve")
            if not tensor_type.HasField("shape"):
                raise InputError(f"{path}: tensor {v.name!r} has no shape; re-export with shape inference")
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                         for d in tensor_type.shape.dim)
            out.append(GraphTensor(v.name, _ONNX_TO_TRITON[elem], dims))
        return out

    return convert(graph.input), convert(graph.output)


# --------------------------------------------------------------------------------------------------
# protobuf text format writer (just what model_config.proto needs)


class _Enum(str):
    """A protobuf enum value: written without quotes."""


def _scalar(value: Any) -> str:
    from google.protobuf import text_encoding  # type: ignore[import-untyped, unused-ignore]

    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + str(text_encoding.CEscape(value, as_utf8=True)) + '"'
    raise TypeError(f"cannot write {type(value).__name__} as a protobuf scalar")


Field = tuple[str, Any]  # value: scalar, list of scalars (repeated), or list[Field] wrapped in _Msg


class _Msg(list):  # type: ignore[type-arg]
    """A nested message: an ordered list of (field, value) pairs; a field may repeat."""


def _render(fields: Sequence[Field], indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for key, value in fields:
        if isinstance(value, _Msg):
            lines.append(f"{pad}{key} {{")
            lines.append(_render(value, indent + 1))
            lines.append(f"{pad}}}")
        elif isinstance(value, list | tuple):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


# --------------------------------------------------------------------------------------------------


def triton_model_name(manifest: dict[str, Any], folder: Path, name: str | None = None) -> str:
    """The name a Triton model of the export ``folder`` is served under: ``name``, else the exported
    model's, else the folder's (:func:`check_model_name`)."""
    return check_model_name(name or str(manifest.get("model") or folder.name))


def check_model_name(name: str) -> str:
    """``name``, where Triton can serve a model under it (a folder of the repository, its URL's path);
    else :class:`InputError`."""
    if not _NAME_RE.match(name):
        raise InputError(f"Triton model name {name!r} must be letters, digits, '_', '.', '-'")
    return name


def _load_source(artifact: Path, backend: str, source: str | None) -> tuple[Path, Path, dict[str, Any]]:
    """Resolve (artifact folder, file to serve, manifest). ``artifact`` may also be a lone ``.onnx``."""
    if artifact.is_file() and artifact.suffix == ".onnx":
        folder, source = artifact.parent, artifact.name
        if (folder / MANIFEST_NAME).is_file():
            manifest = read_manifest(folder)
        else:  # a lone ONNX carries the essentials in its metadata
            manifest = _manifest_from_onnx_metadata(artifact)
    elif artifact.is_dir():
        folder = artifact
        manifest = read_manifest(folder)
    else:
        raise InputError(f"{artifact}: not an export folder or .onnx file",
                         hint="pvt-deploy export --model NAME first")
    if backend == "onnx" and source is not None and not source.endswith(".onnx"):
        raise InputError(f"backend 'onnx' serves an .onnx file, not {source!r}")
    if backend == "trt" and source is not None and not source.endswith((".engine", ".plan")):
        raise InputError(f"backend 'trt' serves a TensorRT engine (.engine/.plan), not {source!r}")
    path = folder / (source or ("model.onnx" if backend == "onnx" else "model.engine"))
    if not path.is_file():
        hint = "pvt-deploy export --format trt" if backend == "trt" else "pvt-deploy export --format onnx"
        raise InputError(f"{path}: missing, cannot build a Triton {backend} model from {folder}", hint=hint)
    with reading(path):
        verify_file(folder, manifest, path.name)
    return folder, path, manifest


def _manifest_from_onnx_metadata(path: Path) -> dict[str, Any]:
    import onnx

    with reading(path):
        model = onnx.load(os.fspath(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            try:
                data = json.loads(prop.value)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: unreadable pvt-deploy metadata ({e})") from e
            if isinstance(data, dict) and "task" in data:
                return data
    raise InputError(f"{path}: no {MANIFEST_NAME} beside it and no pvt-deploy metadata inside it",
                     hint="export it with pvt-deploy export")


def _io_graph(folder: Path, served: Path, backend: str, manifest: dict[str, Any]) -> Path:
    """The ONNX file that describes the served model's I/O (for an engine: the ONNX it was built from)."""
    if backend == "onnx":
        return served
    trt = manifest.get("tensorrt") or {}
    entry = (manifest.get("files") or {}).get(served.name) or {}
    for candidate in (entry.get("source"), trt.get("source"), "model.onnx"):
        if candidate and (folder / candidate).is_file():
            return folder / candidate
    raise InputError(f"{folder}: no ONNX graph beside {served.name} to read its inputs/outputs from",
                     hint="keep the model.onnx the engine was built from in the export folder")


def _external_data_files(path: Path) -> list[str]:
    """Relative paths of external-data files an ONNX model references (copied along with it)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    files: set[str] = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for kv in tensor.external_data:
                if kv.key == "location":
                    files.add(kv.value)
    return sorted(files)


def _copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` where both share a file system (a repository beside the export
    costs no second ~100 MB; pvt-deploy replaces files by rename, never in place, so the link keeps
    the served bytes), else a copy."""
    with atomic_path(dst) as tmp:
        try:
            tmp.unlink()  # atomic_path made it; a link needs the name free
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _precision(manifest: dict[str, Any], served: Path, fp16_accelerator: bool) -> str:
    """The served model's precision: the file's, and fp16 for a float graph under the TensorRT FP16
    accelerator (an INT8 graph stays int8: the accelerator builds it in INT8, see :func:`export_triton`).
    An engine's is what it computes in, as the local TensorRT backend reports it
    (:func:`~pvt_deploy.runtimes.tensorrt.engine_precision`: tf32 for an fp32 engine let use TF32)."""
    entry = (manifest.get("files") or {}).get(served.name) or {}
    if served.suffix in (".engine", ".plan") and manifest.get("tensorrt"):
        from pvt_deploy.runtimes.tensorrt import engine_precision

        section = manifest["tensorrt"]
        precision = engine_precision({**section, "precision": entry.get("precision") or section.get("precision") or "fp32"})
    elif "precision" in entry:
        precision = str(entry["precision"])
    elif served.suffix in (".engine", ".plan"):
        precision = "fp32"
    else:
        precision = "fp16" if ".fp16." in served.name else "int8" if ".int8." in served.name else "fp32"
    return "fp16" if fp16_accelerator and precision != "int8" else precision


def _accelerator_profile(manifest: dict[str, Any], batch: int, name: str) -> dict[str, dict[str, list[int]]] | None:
    """The optimisation profile of the onnxruntime backend's TensorRT accelerator: the one the local
    TensorRT EP gets (:func:`pvt_deploy.runtimes.onnxruntime._trt_profile`, from the manifest), its batch
    up to Triton's ``max_batch_size`` where Triton batches (the dynamic batcher forms any batch up to it).
    Without a profile the EP builds an engine for the first request's shape, on that request, and
    again for each larger batch; None where the manifest gives no ranges (a static graph)."""
    from pvt_deploy.runtimes.onnxruntime import _trt_profile

    profile = _trt_profile(manifest, name)
    if profile and batch > 0:  # every input's first dim is the dynamic batch (else batch would be 0)
        for shapes in profile.values():
            shapes["min"][0] = 1
            shapes["opt"][0] = min(shapes["opt"][0], batch)
            shapes["max"][0] = batch
    return profile


def instance_kind(kind: str | None, backend: str, *, option: str = "instance kind") -> str:
    """``AUTO``, ``GPU`` or ``CPU`` for ``kind`` (None: ``AUTO`` for ``onnx``, ``GPU`` for ``trt``);
    :class:`InputError` naming ``option`` for any other value, or a CPU kind for an engine."""
    kind_u = (kind or ("GPU" if backend == "trt" else "AUTO")).upper()
    if kind_u not in _KINDS:
        raise InputError(f"{option} {str(kind).lower()!r}: choose auto, gpu or cpu")
    if backend == "trt" and kind_u == "CPU":
        raise InputError(f"{option} {str(kind).lower()!r}: a TensorRT engine runs on GPUs only "
                         "(use gpu, or the onnx backend for a CPU)")
    return kind_u


def check_settings(*, max_batch: int = 8, instances: int = 1, max_queue_delay_us: int = 100, version: int = 1) -> None:
    """:class:`InputError` naming the first setting out of range (with its ``pvt-deploy export`` flag)."""
    for name, value, least in (("max_batch (--max-batch)", max_batch, 0), ("instances (--instances)", instances, 1),
                               ("max_queue_delay_us", max_queue_delay_us, 0), ("version", version, 1)):
        if value < least:
            raise InputError(f"Triton {name} {value}: must be >= {least}"
                             + ("; 0 turns Triton's batching off" if name.startswith("max_batch") else ""))


def check_repository(repo: str | os.PathLike[str], model_name: str | None = None, version: int = 1) -> Path:
    """The folder a Triton model's files go to (``repo/model_name/version``, or ``repo`` itself when the
    name is not known yet), refused with :class:`InputError` where a file stands in its path (mkdir
    would end in NotADirectoryError or FileExistsError)."""
    target = Path(repo) / model_name / str(version) if model_name else Path(repo)
    blocker = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        what = f"the Triton model {model_name} to {target}" if model_name else f"a Triton model repository at {target}"
        raise InputError(f"{blocker} is a file, not a folder: cannot write {what}",
                         hint=f"move the file, or choose another {option('out_dir')}")
    if model_name:
        check_model_folder(repo, model_name, version)
    return target


def check_model_folder(repo: str | os.PathLike[str], model_name: str, version: int = 1) -> None:
    """Refuse with :class:`InputError`, before any work and making nothing, a model folder ``repo/model_name``
    that cannot be written: its name, and the longest its replacement makes, the old folder set aside beside it
    (``.NAME.pvt-triton-old-HOST-PID-XXXX``, the name cut to fit where it is long), must fit the file system's
    limit (:meth:`~pvt_deploy.export.swap.SwappedFolder.unwritable`), as an export folder's must. A name too long was
    made, filled and then refused at the swap ('cannot replace ... (File name too long)', after the export), or once
    the export was done."""
    folder = _model_folder(Path(repo) / model_name, version)
    reason = folder.unwritable()
    if reason is not None:
        raise InputError(f"cannot write to {folder.what} ({reason})",
                         hint="choose a shorter Triton model name" if reason == os.strerror(errno.ENAMETOOLONG)
                         else None)


@hashing_once()  # the manifest check, source_sha256 and the copy's entry read the graph once
def export_triton(
    artifact_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    backend: Literal["onnx", "trt"] = "onnx",
    max_batch: int = 8,
    instances: int = 1,
    name: str | None = None,
    kind: Literal["GPU", "CPU", "AUTO"] | None = None,
    trt_fp16_accelerator: bool = False,
    dynamic_batching: bool = True,
    max_queue_delay_us: int = 100,
    preferred_batch_sizes: Sequence[int] | None = None,
    source: str | None = None,
    version: int = 1,
) -> Path:
    """Write one model of a Triton model repository; return its folder ``<out_dir>/<name>``.

    ``backend="onnx"`` serves ``source`` (default ``model.onnx``; ``model.fp16.onnx``/``model.int8.onnx``
    work too) with Triton's onnxruntime backend, optionally with ONNX Runtime's TensorRT execution
    accelerator in FP16 (``trt_fp16_accelerator``; in INT8 for an INT8 Q/DQ graph, which TensorRT builds
    only in INT8 mode), with the optimisation profile the local TensorRT EP gets. ``backend="trt"`` serves ``model.engine`` as
    ``model.plan``; the engine only loads in a Triton whose TensorRT version and GPU match the build, so
    export engines on the serving box with the same container release.

    ``max_batch`` is Triton's ``max_batch_size`` (0 disables Triton batching). For engines it is clamped
    to the optimization profile's maximum batch, which Triton would otherwise reject at load time.
    ``dynamic_batching`` lets Triton merge concurrent requests (many video streams) into one batch,
    waiting at most ``max_queue_delay_us``; ``preferred_batch_sizes`` (unset by default: Triton's batcher
    guide advises one only for a size measured to run much faster, since the batcher already forms the
    largest batch it can) are written where given, those above ``max_batch`` dropped. ``instances`` model instances of ``kind`` run in parallel;
    the default is ``AUTO`` for ``onnx`` (on the server's GPUs, or on its CPU where it has none, so one
    repository loads on either) and ``GPU`` for ``trt``.
    """
    if backend not in _MODEL_FILES:
        raise InputError(f"unknown Triton backend {backend!r}; use 'onnx' or 'trt'")
    kind_u = instance_kind(kind, backend)
    if trt_fp16_accelerator and backend != "onnx":
        raise InputError("the TensorRT FP16 accelerator is an option of backend 'onnx'; "
                         "a 'trt' engine already has its precision")
    if trt_fp16_accelerator and kind_u == "CPU":
        raise InputError("the TensorRT accelerator needs a GPU instance (kind GPU or AUTO)")
    check_settings(max_batch=max_batch, instances=instances, max_queue_delay_us=max_queue_delay_us, version=version)

    folder, served, manifest = _load_source(Path(artifact_dir), backend, source)
    model_name = triton_model_name(manifest, folder, name)
    flavour = ((manifest.get("files") or {}).get(served.name) or {}).get(
        "flavour", "cpu" if served.name == "model.int8.onnx" else None)
    if trt_fp16_accelerator and flavour == "cpu":  # as a TensorRT engine build refuses it
        from pvt_deploy.export.tensorrt import CPU_INT8_GRAPH

        raise InputError(f"the TensorRT accelerator cannot build {served.name}, the CPU flavour of INT8 "
                         f"({CPU_INT8_GRAPH})",
                         hint="serve model.int8.trt.onnx with it (pvt-deploy export --int8 --int8-flavour trt), "
                              "or this file without the accelerator")

    graph = _io_graph(folder, served, backend, manifest)
    inputs, outputs = read_onnx_io(graph)
    notes: list[str] = []

    batch = max_batch
    if batch > 0:
        static = [t.name for t in (*inputs, *outputs) if not t.shape or t.shape[0] is not None]
        if static:
            notes.append(f"max_batch_size 0: the graph's first dim is not a dynamic batch for {', '.join(static)}")
            batch = 0
    if batch > 0 and backend == "trt":
        engine_max = profile_batch((manifest.get("tensorrt") or {}).get("profiles") or [])
        if engine_max is not None and batch > engine_max:
            notes.append(f"max_batch_size clamped from {batch} to the engine profile's max batch {engine_max}")
            batch = engine_max
    for note in notes:
        log.warning("%s: %s", model_name, note)

    precision = _precision(manifest, served, trt_fp16_accelerator)
    profile = _accelerator_profile(manifest, batch, model_name) if trt_fp16_accelerator else None
    triton_section: dict[str, Any] = {
        "backend": _TRITON_BACKENDS[backend],
        "model_file": _MODEL_FILES[backend],
        "source": served.name,
        "source_sha256": sha256_file(served),
        "precision": precision,
        "max_batch_size": batch,
        "instances": instances,
        "kind": _KINDS[kind_u],
        "version": version,
    }
    if profile:  # what the triton:// client keeps its input sizes inside (its `profiles`)
        triton_section["tensorrt_profiles"] = [{"input": inp, **p} for inp, p in profile.items()]
    embedded = {**essentials(manifest), "files": {served.name: (manifest.get("files") or {}).get(served.name, {})},
                "triton": triton_section}
    if backend == "trt" and manifest.get("tensorrt"):
        embedded["tensorrt"] = manifest["tensorrt"]

    fields: list[Field] = [
        ("name", model_name),
        ("backend", _TRITON_BACKENDS[backend]),
        ("max_batch_size", batch),
    ]

    def tensor_fields(t: GraphTensor) -> _Msg:
        dims = [-1 if d is None else d for d in (t.shape[1:] if batch > 0 else t.shape)]
        return _Msg([("name", t.name), ("data_type", _Enum(t.data_type)), ("dims", dims)])

    fields += [("input", tensor_fields(t)) for t in inputs]
    fields += [("output", tensor_fields(t)) for t in outputs]
    fields.append(("instance_group", _Msg([("count", instances), ("kind", _Enum(_KINDS[kind_u]))])))
    if batch > 0 and dynamic_batching:
        sizes = sorted({int(s) for s in (preferred_batch_sizes or []) if 0 < int(s) <= batch})
        db: list[Field] = [("preferred_batch_size", sizes)] if sizes else []
        db.append(("max_queue_delay_microseconds", max_queue_delay_us))
        fields.append(("dynamic_batching", _Msg(db)))
    if trt_fp16_accelerator:
        from pvt_deploy.runtimes.ort_providers import profile_options

        # TensorRT builds a network with Q/DQ layers only in INT8 mode ("Int8 precision has been set for a
        # layer ... but int8 is not configured in the builder"): an INT8 graph is built in INT8
        params = {"precision_mode": "INT8" if precision == "int8" else "FP16", **profile_options(profile)}
        accel = _Msg([("name", "tensorrt"),
                      *(("parameters", _Msg([("key", k), ("value", v)])) for k, v in params.items())])
        fields.append(("optimization", _Msg([("execution_accelerators",
                                               _Msg([("gpu_execution_accelerator", accel)]))])))
    fields.append(("parameters", _Msg([
        ("key", MANIFEST_PARAMETER),
        ("value", _Msg([("string_value", json_dumps(embedded, separators=(",", ":")))])),
    ])))

    header = [f"# Triton model configuration written by pvt-deploy from {served.name} ({graph.name} I/O).",
              f"# The '{MANIFEST_PARAMETER}' parameter carries the pvt-deploy manifest for remote clients."]
    if backend == "trt":
        trt = manifest.get("tensorrt") or {}
        header.append(f"# Engine built with TensorRT {trt.get('version', '?')} on {trt.get('gpu', '?')}: serve it "
                      "with a tritonserver release that has the same TensorRT version, on the same GPU model.")
    header += [f"# note: {n}" for n in notes]
    text = "\n".join(header) + "\n" + _render(fields) + "\n"

    model_dir = Path(out_dir) / model_name
    check_repository(out_dir, model_name, version)
    served_from = Path(os.path.realpath(folder))
    if Path(os.path.realpath(model_dir)) in (served_from, *served_from.parents):  # -o exports/x --triton-repo exports
        raise InputError(f"the Triton model {model_dir} would replace the export folder {folder} that it is made "
                         "from (its manifest, its graphs)", hint=f"choose another {option('out_dir')} (default: "
                         "triton/ beside the export folder)")

    def fill(staging: Path) -> None:
        version_dir = staging / str(version)
        version_dir.mkdir()
        target = version_dir / _MODEL_FILES[backend]
        _copy(served, target)
        if backend == "onnx":
            for rel in _external_data_files(served):
                _copy(folder / rel, version_dir / rel)
        # "files" lists what this folder holds (the served file, under its version folder), not the export
        # folder's graphs: `pvt-deploy info` checks each listed file against its sha256
        served_entry = dict((manifest.get("files") or {}).get(served.name) or {
            "sha256": triton_section["source_sha256"], "bytes": served.stat().st_size, "precision": precision})
        atomic_write_json(staging / MANIFEST_NAME, {**manifest, "files": {f"{version}/{target.name}": served_entry},
                                                    "triton": triton_section})
        atomic_write_text(staging / CONFIG_NAME, text)

    _replace_model_folder(model_dir, version, fill)
    return model_dir


def _replace_model_folder(model_dir: Path, version: int, fill: Callable[[Path], None]) -> None:
    """Make ``model_dir`` hold what ``fill`` writes into the folder it is given, all at once (an export
    killed while it wrote left the new model file beside the old config and manifest, 'info': MISMATCH);
    the entries of the previous model folder that are not pvt-deploy's (other version folders, the
    user's notes) stay. The new folder is built hidden inside the model folder, under the repository's
    lock (:mod:`pvt_deploy.export.swap`): tritonserver polls the repository and tries to load, and fails
    on, every folder in it, while it ignores a model folder's entries that are not version folders."""
    folder = _model_folder(model_dir, version)
    existed = model_dir.is_dir()
    try:
        with folder.replacing() as staging:
            fill(staging)
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:  # a full disk: the CLI would name the export folder
            raise
        kept = "; the previous one is unchanged" if existed else ""
        raise InputError(f"cannot write the Triton model {model_dir}: {e.strerror or e}{kept}") from e


def _model_folder(model_dir: Path, version: int) -> SwappedFolder:
    """``model_dir`` as a new model replaces it (:func:`_replace_model_folder`)."""

    def ours(old: Path) -> Callable[[str], bool]:  # what a new model replaces: config, manifest, its version
        replaced = (CONFIG_NAME, MANIFEST_NAME, str(version))
        return lambda name: (name in replaced or name.startswith(".pvt-")
                             or (".part" in name and name.startswith((f".{CONFIG_NAME}.", f".{MANIFEST_NAME}."))))

    return SwappedFolder(model_dir, f"the Triton model {model_dir}", ours, tag="pvt-triton", inside=True)
