"""The artifact manifest: ``manifest.json`` beside ``model.onnx`` / ``model.engine``.

An artifact is a folder. The manifest says what the graph is (model, task, classes), how to feed it
(``preprocess``), how to read its outputs (``postprocess``), which files belong to it (with sha256
and precision) and how it was made (``versions``, ``parity``, ``tensorrt``). The schema is written
out in docs/ARCHITECTURE.md. The essential part (everything needed to run the graph) is also stored
in the ONNX ``metadata_props`` under :data:`ONNX_METADATA_KEY`, so a lone ``.onnx`` still runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pvt_deploy.errors import InputError
from pvt_deploy.utils.files import atomic_write_json, sha256_file

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ONNX_METADATA_KEY = "pvt_deploy"
# Keys copied into the ONNX metadata: enough to preprocess, run and postprocess without the folder,
# and where the weights came from (a lone .onnx of a random-weights export still says so).
ESSENTIAL_KEYS = ("format_version", "model", "backbone", "task", "classes", "inputs", "outputs",
                  "preprocess", "postprocess", "dynamic", "weights")
# The part of the weights record copied: provenance, not the checkpoint's load report.
ESSENTIAL_WEIGHTS_KEYS = ("source", "sha256", "random_init", "randomly_initialised_tensors")


def tool_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (plus pvt-deploy itself); missing ones skipped."""
    out: dict[str, str] = {}
    for dist in ("pvt-deploy", *names):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an export folder (or a manifest file given directly), checked."""
    path = Path(folder)
    if not path.is_file():
        path = path / MANIFEST_NAME
        if not path.is_file():
            raise InputError(f"{folder}: no {MANIFEST_NAME} (not a pvt-deploy export folder)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(data, dict) or "task" not in data:
        raise InputError(f"{path}: not a pvt-deploy manifest")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{path}: manifest format {version} is newer than this pvt-deploy understands "
                         f"({FORMAT_VERSION})", hint="pip install -U pvt-deploy")
    return data


def write_manifest(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    manifest = {"format_version": FORMAT_VERSION, **manifest}
    path = Path(folder) / MANIFEST_NAME
    atomic_write_json(path, manifest)
    return path


def essentials(manifest: dict[str, Any]) -> dict[str, Any]:
    out = {k: manifest[k] for k in ESSENTIAL_KEYS if k in manifest}
    if isinstance(out.get("weights"), dict):
        out["weights"] = {k: v for k, v in out["weights"].items() if k in ESSENTIAL_WEIGHTS_KEYS}
    return out


def file_entry(path: str | os.PathLike[str], precision: str, **extra: Any) -> dict[str, Any]:
    p = Path(path)
    return {"sha256": sha256_file(p), "bytes": p.stat().st_size, "precision": precision, **extra}


def verify_file(folder: str | os.PathLike[str], manifest: dict[str, Any], name: str) -> None:
    """Raise if ``name`` is listed in the manifest with a sha256 that no longer matches the file."""
    entry = manifest.get("files", {}).get(name)
    path = Path(folder) / name
    if entry is None or "sha256" not in entry:
        return
    if not path.is_file():
        raise InputError(f"{path}: listed in the manifest but missing")
    if sha256_file(path) != entry["sha256"]:
        raise InputError(f"{path}: sha256 differs from the manifest (file changed or truncated); "
                         "re-export it", hint=reexport_command(folder, manifest))


def reexport_command(folder: str | os.PathLike[str], manifest: Mapping[str, Any]) -> str:
    """The ``pvt-deploy export`` line that rebuilds this export in place: same model, weights, size,
    shapes and precisions, into the same folder."""
    import shlex

    export = manifest.get("export") or {}
    files = manifest.get("files") or {}
    parts = ["pvt-deploy", "export", "--model", str(manifest.get("model") or "NAME")]
    source = (manifest.get("weights") or {}).get("source")
    if source:
        parts += ["--weights", str(source)]
    size = export.get("imgsz")
    if isinstance(size, list) and len(size) == 2:
        parts += ["--imgsz", str(size[0]) if size[0] == size[1] else f"{size[0]},{size[1]}"]
    if manifest.get("dynamic") is None:
        parts.append("--static")
    if "model.fp16.onnx" in files:
        parts.append("--half")
    if any(".int8." in name for name in files):
        parts.append("--int8")
    parts += ["-o", str(folder)]
    return " ".join(shlex.quote(p) for p in parts)
