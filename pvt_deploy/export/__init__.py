"""Export PVT models: ONNX (+ FP16/INT8 variants, graph checks, parity gate), TensorRT, Triton.

* :func:`export_onnx` — PyTorch -> artifact folder (``model.onnx``, variants, ``manifest.json``);
* :func:`export` — the same, then a TensorRT engine (``format="trt"``) or a Triton model
  (``format="triton"``), as ``pvt-deploy export --format`` does;
* :mod:`pvt_deploy.export.parity` — generic output comparison (``compare_outputs``,
  ``agreement_detections``...), used by the gate and by ``pvt-deploy check``;
* :mod:`pvt_deploy.export.tensorrt`, :mod:`pvt_deploy.export.triton` — engines and model repositories.

Attributes are imported lazily: ``import pvt_deploy.export.tensorrt`` must not pay for torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pvt_deploy.utils.files import hashing_once

if TYPE_CHECKING:
    from pvt_deploy.export.onnx import export_onnx
    from pvt_deploy.export.parity import (
        DEFAULT_TOLERANCES,
        Tolerance,
        agreement_classification,
        agreement_detections,
        agreement_segmentation,
        compare_outputs,
    )

__all__ = [
    "DEFAULT_TOLERANCES", "FORMATS", "Tolerance", "agreement_classification", "agreement_detections",
    "agreement_segmentation", "compare_outputs", "export", "export_onnx",
]

FORMATS = ("onnx", "trt", "triton")

_LAZY = {
    "export_onnx": "pvt_deploy.export.onnx",
    "compare_outputs": "pvt_deploy.export.parity",
    "agreement_detections": "pvt_deploy.export.parity",
    "agreement_segmentation": "pvt_deploy.export.parity",
    "agreement_classification": "pvt_deploy.export.parity",
    "Tolerance": "pvt_deploy.export.parity",
    "DEFAULT_TOLERANCES": "pvt_deploy.export.parity",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_T = TypeVar("_T")


@overload
def format_name(format: str) -> str: ...
@overload
def format_name(format: _T) -> _T: ...
def format_name(format: object) -> object:
    """``format``: ``engine`` and ``tensorrt`` (Ultralytics' and trtexec's words) are ``trt``, in any
    case, as a backend's names are; anything else goes on as given, for :func:`export` to refuse."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.runtimes.loader import canonical_backend

    if not isinstance(format, str):
        return format
    with contextlib.suppress(InputError):
        return canonical_backend(format.strip()) or format
    return format


@contextlib.contextmanager
def reading(path: str | os.PathLike[str]) -> Iterator[None]:
    """Where the export reads a file it was given (the graph it extends, an engine or a Triton model is made
    from: hashed against the manifest, loaded), an :class:`OSError` inside the block (the disk failing the read:
    EIO) says the file cannot be read, as info, infer and bench say it; as an OSError it was taken, by
    :func:`pvt_deploy.export.onnx.write_errors`, for the export failing to write."""
    from pvt_deploy.errors import cannot_read

    try:
        yield
    except OSError as e:
        raise cannot_read(path, e) from e


def build_precision(*, half: bool = False, int8: bool = False) -> str:
    """The TensorRT build precision that matches the ONNX variants asked for (INT8 wins); what the engine
    then computes in is :func:`pvt_deploy.runtimes.tensorrt.engine_precision`'s to say (tf32)."""
    return "int8" if int8 else "fp16" if half else "fp32"


def triton_model_dir(folder: str | os.PathLike[str], triton_repo: str | os.PathLike[str] | None = None,
                     name: str | None = None) -> Path:
    """Where :func:`export` with ``format="triton"`` writes the Triton model of the export ``folder``:
    ``<triton_repo>/<name>``, the repository being ``triton/`` beside the folder and the name the exported
    model's by default."""
    from pvt_deploy.export.triton import triton_model_name
    from pvt_deploy.manifest import read_manifest

    folder = Path(folder)
    repo = Path(triton_repo) if triton_repo is not None else folder.parent / "triton"
    return repo / triton_model_name(read_manifest(folder), folder, name)


@hashing_once()  # a graph is hashed for its manifest entry, its check and the parity session's cache key: read once
def export(model: Any, out_dir: str | os.PathLike[str] | None = None, *, format: str = "onnx",
           tensorrt: Mapping[str, Any] | None = None, triton: Mapping[str, Any] | None = None,
           triton_repo: str | os.PathLike[str] | None = None, **onnx_options: Any) -> Path:
    """Export to ONNX (:func:`export_onnx` with ``onnx_options``), then build what ``format`` asks.

    ``format="trt"``: ``model.engine`` via :func:`pvt_deploy.export.tensorrt.build_engine` with
    ``tensorrt`` options (``shapes``, ``workspace_gib``, ``timing_cache``, ``version_compatible``,
    ``hardware_compatible``...); precision follows ``half``/``int8``. ``format="triton"``: a model of
    the Triton repository ``triton_repo`` (default ``exports/triton``) via
    :func:`pvt_deploy.export.triton.export_triton` with ``triton`` options (``backend``,
    ``max_batch``, ``instances``, ``name``...); ``backend="trt"`` builds the engine first.

    TensorRT is checked before any export work, so a machine without it fails in a second with a
    one-line :class:`~pvt_deploy.errors.BackendUnavailableError`. The engine is built inside the new
    export before it replaces ``out_dir``: a failed build leaves the previous export as it was.
    Returns the artifact folder; the engine is ``<folder>/model.engine``, the Triton model
    ``<triton_repo>/<model name>``.
    """
    import logging

    from pvt_deploy.errors import InputError

    format = format_name(format)
    if format not in FORMATS:
        raise InputError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    model = export_source(model)
    from pvt_deploy.export.onnx import check_model_named

    check_model_named(model, onnx_options.get("task"))  # a model that is not there, before TensorRT is looked for
    triton_opts = dict(triton or {})
    backend: Any = triton_opts.pop("backend", "onnx")
    backend = backend.lower() if isinstance(backend, str) else backend  # in any case, as --format's words
    if format == "triton" and backend not in ("onnx", "trt"):
        raise InputError(f"--triton-backend {backend!r}: choose onnx or trt")
    if format == "triton":  # before the slow export
        from pvt_deploy.export.triton import check_model_name, check_settings, instance_kind

        instance_kind(triton_opts.get("kind"), backend, option="--instance-kind")
        if triton_opts.get("name") is not None:
            check_model_name(triton_opts["name"])
        check_settings(**{k: v for k, v in triton_opts.items() if k in ("max_batch", "instances")})
        _check_triton_repo(model, out_dir, triton_repo, triton_opts.get("name"))
    needs_engine = format == "trt" or (format == "triton" and backend == "trt")
    if needs_engine:
        from pvt_deploy.export.tensorrt import check_shape_order, check_workspace, require_tensorrt

        check_workspace((tensorrt or {}).get("workspace_gib"))  # a value the build would refuse, before the export
        check_shape_order((tensorrt or {}).get("shapes"))  # and a profile no graph's range puts in order

        if onnx_options.get("int8") and onnx_options.get("int8_flavour") == "cpu":  # before the slow export
            raise InputError("--int8-flavour cpu writes only model.int8.onnx (uint8 asymmetric Q/DQ and ONNX "
                             "Runtime operators), which TensorRT's ONNX parser does not take; a TensorRT INT8 "
                             "engine is built from the TensorRT flavour",
                             hint="use --int8-flavour trt (or both, the default)")
        require_tensorrt()
    from pvt_deploy.export.onnx import export_onnx

    log = logging.getLogger("pvt_deploy.export")
    precision = build_precision(half=bool(onnx_options.get("half")), int8=bool(onnx_options.get("int8")))

    def engine(artifact: Path) -> None:  # in the new export before it replaces the old one
        from pvt_deploy.export.tensorrt import build_engine

        build_engine(artifact, precision=precision, **dict(tensorrt or {}))

    folder = export_onnx(model, out_dir, finish=engine if needs_engine else None, builds=format == "triton",
                         **onnx_options)
    if needs_engine:
        from pvt_deploy.export.tensorrt import ENGINE_NAME

        log.info("TensorRT %s engine: %s", precision, folder / ENGINE_NAME)
    if format == "triton":
        from pvt_deploy.errors import renamed
        from pvt_deploy.export.triton import export_triton

        if backend == "onnx" and "source" not in triton_opts:
            # the INT8 flavour asked for: an export folder that already held both (an extension) served the
            # CPU flavour for --int8-flavour trt
            flavours = {"cpu": ["model.int8.onnx"], "trt": ["model.int8.trt.onnx"]}.get(
                str(onnx_options.get("int8_flavour", "both")), ["model.int8.onnx", "model.int8.trt.onnx"])
            int8_file = next((f for f in flavours if (folder / f).is_file()), None)
            if onnx_options.get("int8") and int8_file is not None:
                triton_opts["source"] = int8_file
            elif onnx_options.get("half"):
                triton_opts["source"] = "model.fp16.onnx"
        with renamed(out_dir="triton_repo"):  # export_triton's out_dir is this function's triton_repo
            model_dir = export_triton(folder, triton_model_dir(folder, triton_repo).parent, backend=backend,
                                      **triton_opts)
        log.info("Triton model: %s", model_dir)
    return folder


def export_source(model: Any) -> Any:
    """What ``model`` names for an export. A file of an export folder (``exports/x/model.onnx``: trtexec's
    ``--onnx``, ``polygraphy convert model.onnx``) is that folder, whose variants it adds; a lone graph or
    engine, and a Triton model folder, are refused in words (they were read as a checkpoint: "corrupt or
    truncated checkpoint", or as an export folder whose re-export command wrote over the Triton model)."""
    import logging

    from pvt_deploy.errors import InputError
    from pvt_deploy.manifest import MANIFEST_NAME, is_triton_model_folder, read_manifest

    if not isinstance(model, (str, os.PathLike)):
        return model
    path = Path(model)
    triton_dir = path if path.is_dir() else path.parent.parent if path.parent.name.isdigit() else None
    if triton_dir is not None and is_triton_model_folder(triton_dir):
        raise InputError(f"{triton_dir} is a Triton model folder (export --format triton writes it): give the "
                         "export folder it was made from (--model exports/NAME)")
    if not path.is_file() or path.suffix.lower() not in (".onnx", ".engine", ".plan"):
        return model
    if (path.parent / MANIFEST_NAME).is_file() and path.name in (read_manifest(path.parent).get("files") or {}):
        logging.getLogger("pvt_deploy.export").info("%s is a file of the export %s: adding to that export",
                                                    path, path.parent)
        return path.parent
    runs = "infer and bench run it as it is (check compares the backends of an export folder)"
    if path.suffix.lower() == ".onnx":
        from pvt_deploy.errors import ForeignOnnxError
        from pvt_deploy.runtimes.loader import read_onnx_manifest

        try:
            read_onnx_manifest(path)
        except ForeignOnnxError:  # another tool's graph: nothing here runs it (info describes it)
            runs = "it was not made by pvt-deploy (no pvt-deploy metadata), so nothing here runs it; info shows what is in it"
        except InputError:  # not a readable model: that error is the commands' own to give
            pass
    raise InputError(f"{path} is {'a TensorRT engine' if path.suffix.lower() != '.onnx' else 'an ONNX graph'}, not a "
                     "model to export: export builds from a zoo name or a checkpoint (.pth, .safetensors), or adds variants to an "
                     f"export folder (--model exports/NAME); {runs}")


def _check_triton_repo(model: Any, out_dir: str | os.PathLike[str] | None,
                       triton_repo: str | os.PathLike[str] | None, name: str | None) -> None:
    """Refuse a Triton repository that cannot be written before the export: the Triton model is written
    after the new export has replaced the old one, which a failure there would not give back. ``name``: the
    model name given, whose folder's names must fit the file system (the exported model's, a zoo name, do)."""
    from pvt_deploy.errors import InputError, option, renamed
    from pvt_deploy.export.onnx import reuses_folder
    from pvt_deploy.export.triton import check_model_folder, check_repository
    from pvt_deploy.utils.files import unwritable_reason

    if triton_repo is not None:
        repo = Path(triton_repo)
    else:  # beside export_onnx's folder: the export folder extended in place, -o, or exports/<name>
        folder = Path(str(model)) if reuses_folder(model) else Path(out_dir) if out_dir is not None else None
        repo = (folder.parent if folder is not None else Path("exports")) / "triton"
    with renamed(out_dir="triton_repo"):
        check_repository(repo)  # a file in its path
    reason = unwritable_reason(repo)  # a read-only or foreign folder: said here, not as "cannot write the export"
    if reason is not None:
        raise InputError(f"cannot write a Triton model repository at {repo} ({reason})", hint=f"choose another {option('triton_repo')}")
    if name is not None:
        check_model_folder(repo, name)
