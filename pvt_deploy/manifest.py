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
from collections.abc import Callable, Mapping, Sequence
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
ESSENTIAL_KEYS = ("format_version", "model", "backbone", "task", "classes", "palette", "inputs", "outputs",
                  "preprocess", "postprocess", "dynamic", "weights")
# The part of the weights record copied: provenance, not the checkpoint's load report. ``seed`` is
# the seed of the random initialisation, with which PyTorch rebuilds a random-weights export.
ESSENTIAL_WEIGHTS_KEYS = ("source", "sha256", "random_init", "randomly_initialised_tensors", "seed")
# Files that make a folder an export (see is_export_folder).
_GRAPH_SUFFIXES = (".onnx", ".engine", ".plan")
#: What a checkpoint file (or URL) is named: a model given so runs with PyTorch, its architecture read from it.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors")
# ``pvt-deploy export``'s defaults for the options that shape the graph (pvt_deploy/export/onnx.py,
# pvt_deploy/cli/export.py), repeated here so a runtime-only install (no torch) can name the command
# that rebuilds an export. reexport_command leaves an option out when the export used its default.
_EXPORT_DEFAULTS = {"exporter": "torchscript", "opset": 17, "dynamo_opset": 18, "max_batch": 8, "min_size": 32,
                    "max_size": 1344, "nms": "host", "seg_output": "logits"}
#: What the manifest names as the pictures calibrated or compared on when the export was given none.
BUNDLED_IMAGES = "bundled sample images"
#: The pictures ``--calib`` gives when ``--calib-size`` is not given (frames spread over a video): a
#: handful, as MinMax calibration of a few images already gives usable ranges.
DEFAULT_CALIB_IMAGES = 8
#: The tasks a model (and an export) is made for.
TASKS = ("detect", "segment", "classify", "features")
#: How the preprocessing fits a picture to the graph's input (tasks.preprocess.Preprocessor).
RESIZE_POLICIES = ("letterbox", "align", "resize_crop")
_SUFFIX_TASKS = {"-seg": "segment", "-cls": "classify", "-features": "features", "-det": "detect"}
# The graph options that one task's export takes, other than at their default: graph NMS the detector's, an
# argmax class map the segmenter's (export refuses them for a model of another task): flag, postprocess key,
# task, its models' name in a message (see foreign_option).
_TASK_OPTIONS = (("--nms", "nms", "detect", "detection"), ("--seg-output", "seg_output", "segment", "segmentation"))


def tool_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (plus pvt-deploy itself); missing ones skipped."""
    out: dict[str, str] = {}
    for dist in ("pvt-deploy", *names):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


# The `pvt-deploy export` flag that writes each precision's file (FP32 is the default, no flag); the
# hints that name a command to make a missing file or engine read it.
EXPORT_FLAGS = {"fp32": "", "fp16": " --half", "int8": " --int8"}


def cpu_int8_record(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's record of the CPU INT8 file (``precision.int8.cpu``: its method, its measured
    speed), or an empty one."""
    return dict(((manifest.get("precision") or {}).get("int8") or {}).get("cpu") or {})


def is_triton_model_folder(folder: Path) -> bool:
    """A model folder of a Triton repository that ``export --format triton`` wrote (config.pbtxt and the
    manifest beside it, the graph under a version folder)."""
    return (folder / "config.pbtxt").is_file() and (folder / MANIFEST_NAME).is_file()


def _triton_models_in(folder: Path) -> list[str]:
    """The model folders ``export --format triton`` wrote in ``folder`` (a Triton repository), by name."""
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and is_triton_model_folder(p))
    except OSError:  # not a folder, or unreadable
        return []


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an export folder (or a manifest file given directly), checked."""
    path = Path(folder)
    if not path.is_file():
        path = path / MANIFEST_NAME
        if not path.is_file():
            models = _triton_models_in(Path(folder))
            if models:  # the repository, where one of its models was meant
                names = ", ".join(models[:5]) + (f" (+{len(models) - 5} more)" if len(models) > 5 else "")
                raise InputError(f"{folder} is a Triton model repository (models: {names}), not one model",
                                 hint=f"serve it (tritonserver --model-repository {folder}) and run --model "
                                      f"triton://HOST:8000/{models[0]}, or give one model's folder: {Path(folder) / models[0]}")
            graphs = sorted(Path(folder).glob("*.onnx")) if Path(folder).is_dir() else []
            hint = f"an .onnx that pvt-deploy exported runs on its own: --model {graphs[0]}" if graphs else None
            raise InputError(f"{folder}: no {MANIFEST_NAME} (not a pvt-deploy export folder)", hint=hint)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(data, dict) or "task" not in data:
        raise InputError(f"{path}: not a pvt-deploy manifest")
    version = data.get("format_version", 0)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise InputError(f"{path}: manifest format {version} is newer than this pvt-deploy understands "
                         f"({FORMAT_VERSION})", hint="pip install -U pvt-deploy")
    check_fields(data, path)
    return data


# What the fields of a manifest hold, as its readers take them (a field left out takes its default).
# A check gives None for a value that fits, else where in it the misfit is, that part and what it should be.
_Misfit = tuple[str, Any, str]
_Check = Callable[[Any], _Misfit | None]


def _of(*types: type, what: str, test: Callable[[Any], bool] = lambda v: True) -> _Check:
    """A value of one of ``types`` (a bool is no number) for which ``test`` holds."""
    def check(value: Any) -> _Misfit | None:
        fits = isinstance(value, types) and (bool in types or not isinstance(value, bool)) and test(value)
        return None if fits else ("", value, what)
    return check


def _list(item: _Check, what: str, length: int | None = None) -> _Check:
    """A list (of ``length``) of items that fit ``item``."""
    def check(value: Any) -> _Misfit | None:
        fits = isinstance(value, list) and length in (None, len(value)) and all(item(v) is None for v in value)
        return None if fits else ("", value, what)
    return check


def _either(first: _Check, second: _Check) -> _Check:
    return lambda value: None if first(value) is None else second(value)


def _or_null(check: _Check) -> _Check:
    return lambda value: None if value is None else check(value)


def _fields(**fields: _Check) -> _Check:
    """A JSON object; each of ``fields`` that it holds checked."""
    def check(value: Any) -> _Misfit | None:
        if not isinstance(value, dict):
            return "", value, "an object"
        for key, field in fields.items():
            if key in value and (misfit := field(value[key])) is not None:
                return f".{key}{misfit[0]}", misfit[1], misfit[2]
        return None
    return check


def _entries(entry: _Check) -> _Check:
    """A JSON object of named entries (``files``: file name -> record), each checked."""
    def check(value: Any) -> _Misfit | None:
        if not isinstance(value, dict):
            return "", value, "an object"
        for key, item in value.items():
            if (misfit := entry(item)) is not None:
                return f"[{json.dumps(key)}]{misfit[0]}", misfit[1], misfit[2]
        return None
    return check


_OBJECT = _of(dict, what="an object")
_TEXT = _of(str, what="a string")
_INTEGER = _of(int, what="an integer")
_COUNT = _of(int, what="a positive integer", test=lambda v: v > 0)
_NUMBER = _of(int, float, what="a number")
_RGB = _list(_NUMBER, "3 numbers", 3)
_RANGE = _list(_COUNT, "[lowest, highest] positive integers", 2)
_TENSORS = _list(_fields(name=_TEXT, dtype=_TEXT, shape=_list(_of(int, str, what=""), "a list of sizes and names")),
                 "a list of tensors ({name, dtype, shape})")
_MANIFEST = _fields(
    format_version=_INTEGER, model=_TEXT, backbone=_TEXT,
    task=_of(str, what=f"one of {', '.join(TASKS)}", test=lambda v: v in TASKS),
    classes=_list(_TEXT, "a list of class names"),
    palette=_list(_list(_of(int, what="", test=lambda v: 0 <= v <= 255), "", 3), "a list of [r, g, b] of 0..255"),
    weights=_or_null(_fields(source=_or_null(_TEXT), sha256=_or_null(_TEXT), url=_or_null(_TEXT))),
    inputs=_TENSORS, outputs=_TENSORS,
    preprocess=_fields(
        imgsz=_either(_COUNT, _list(_COUNT, "[height, width] positive integers", 2)),
        mean=_RGB, std=_list(_of(int, float, what="", test=lambda v: v != 0), "3 non-zero numbers", 3),
        pad_value=_RGB, stride=_COUNT, interpolation=_TEXT,
        resize=_of(str, what=f"one of {', '.join(RESIZE_POLICIES)}", test=lambda v: v in RESIZE_POLICIES),
        crop_ratio=_of(int, float, what="a number in (0, 1]", test=lambda v: 0 < v <= 1)),
    postprocess=_fields(topk=_COUNT, score_threshold=_NUMBER, iou_threshold=_NUMBER, max_detections=_COUNT,
                        pre_nms_topk=_COUNT, nms=_TEXT, seg_output=_TEXT, output_stride=_COUNT),
    dynamic=_or_null(_fields(batch=_RANGE, height=_RANGE, width=_RANGE)),
    files=_entries(_fields(sha256=_TEXT, bytes=_INTEGER, precision=_TEXT, flavour=_TEXT, source=_TEXT)),
    parity=_entries(_OBJECT), precision=_OBJECT, export=_OBJECT, versions=_OBJECT,
    tensorrt=_fields(profiles=_list(_OBJECT, "a list of objects")),
)


_CLASS_AXIS = {"logits": 1, "scores": 2, "seg_logits": 1}  # the axis of an output's shape that counts classes


def check_fields(manifest: Mapping[str, Any], where: str | os.PathLike[str], record: str = "manifest") -> None:
    """Refuse, in one line naming the field, a manifest (or a graph's pvt-deploy metadata) whose fields do
    not hold what its readers take: a hand edit, a damaged or foreign file. Each reader would otherwise
    fail its own way, with a traceback, or run on a default in the value's place."""
    hint = "re-export it, or restore the file"
    misfit = _MANIFEST(manifest)
    if misfit is not None:
        field, value, what = misfit
        shown = json.dumps(value, default=str)
        raise InputError(f"{where}: damaged {record}: {field.lstrip('.')} is "
                         f"{shown if len(shown) <= 40 else shown[:37] + '...'}, not {what}", hint=hint)
    classes = manifest.get("classes") or []
    palette = manifest.get("palette")
    if palette is not None and len(palette) != len(classes):  # the overlay colours class i with palette[i]
        raise InputError(f"{where}: damaged {record}: palette has {len(palette)} colours, but classes lists "
                         f"{len(classes)} names", hint=hint)
    outputs = (manifest.get("outputs") or []) if classes else []
    for output in outputs:  # PyTorch rebuilds the model with a head of len(classes)
        axis, shape = _CLASS_AXIS.get(output.get("name")), output.get("shape") or []
        if axis is not None and len(shape) > axis and isinstance(shape[axis], int) and shape[axis] != len(classes):
            raise InputError(f"{where}: damaged {record}: classes lists {len(classes)} names, but the output "
                             f"{output['name']} has {shape[axis]} classes", hint=hint)


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


def is_export_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding an export: its ``manifest.json``, or an ``.onnx`` /
    ``.engine`` / ``.plan`` file. Any other folder (one in the current directory that happens to be
    named like a zoo model, say) is not one, so ``--model pvt_v2_b0-cls`` still means the zoo model."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    if (folder / MANIFEST_NAME).is_file():
        return True
    try:
        return any(p.suffix.lower() in _GRAPH_SUFFIXES and p.is_file() for p in folder.iterdir())
    except OSError:  # unreadable: not an export we could load anyway
        return False


def batch_limit(manifest: Mapping[str, Any], profiles: Sequence[Mapping[str, Any]] | None = None) -> int | None:
    """The largest batch the export's graph takes, as every reader judges it (``bench`` before it loads
    anything, the :class:`~pvt_deploy.tasks.pipeline.Predictor`, :func:`reexport_command`):

    - a graph whose input's first dimension is a number (every static export) takes that batch;
    - a dynamic one, the top of its ``dynamic.batch`` range;
    - a static manifest that records no input shape, 1: the batch a static export is made at;
    - a dynamic manifest with no batch range, None: its batch dimension is named, and nothing bounds it
      (the export always writes the range; a hand-made manifest may not).

    ``profiles`` (a TensorRT engine's, ``[{"input", "min", "opt", "max"}]``) bound it further by their
    largest batch (:func:`profile_batch`): the engine refuses a larger one."""
    shape = ((manifest.get("inputs") or [{}])[0] or {}).get("shape") or [None]
    dynamic = manifest.get("dynamic")
    if isinstance(shape[0], int) and shape[0] > 0:
        limit: int | None = shape[0]
    elif not dynamic:
        limit = 1
    else:
        batch = dynamic.get("batch") if isinstance(dynamic, Mapping) else None
        limit = int(batch[1]) if batch else None
    top = profile_batch(profiles or [])
    if top is not None:
        limit = top if limit is None else min(limit, top)
    return limit


def profile_batch(profiles: Sequence[Mapping[str, Any]]) -> int | None:
    """The largest batch a TensorRT engine's optimisation profile takes (``[{"input", "min", "opt",
    "max"}]``, one entry per input): the smallest of its inputs' largest batches; None where no entry
    says one."""
    tops = []
    for entry in profiles:
        try:
            top = int(entry["max"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if top > 0:
            tops.append(top)
    return min(tops) if tops else None


def reexport_command(folder: str | os.PathLike[str], manifest: Mapping[str, Any],
                     given: Mapping[str, Any] | None = None) -> str:
    """The ``pvt-deploy export`` line that rebuilds this export in place: same model, weights (a download
    by its URL), size, shapes, graph options and precisions, into the same folder. An option the export left at its
    default is left out, so the usual command stays short; one that shapes the graph (graph NMS, the
    segmentation output, batch, size range, opset, exporter) is kept, or the rebuilt graph would take
    other inputs or give other outputs than the one it replaces. ``given``: graph options the user asked
    for (``{"--imgsz": "96", "--static": False}``), which replace the export's own: the line that exports
    it again as asked (``export --model exports/NAME --imgsz 96`` cannot: it reuses the folder's graph)."""
    from pvt_deploy.utils import shell_quote

    export = manifest.get("export") or {}
    files = manifest.get("files") or {}
    post = manifest.get("postprocess") or {}
    given = dict(given or {})
    model, target = _reexported_model(manifest, given.pop("--task", None))
    parts = ["pvt-deploy", "export", "--model", model]
    if target != _named_task(model):
        parts += ["--task", target]
    weights = manifest.get("weights") or {}
    source = weights.get("url") or weights.get("source")  # a download by its URL: the cached file may have gone
    if source:
        parts += ["--weights", str(source)]
        if weights.get("trust_checkpoint"):  # the file needs full unpickling (export_onnx records it)
            parts.append("--trust-checkpoint")
    names = _names_option(manifest)
    if names:
        parts += ["--names", names]
    size = export.get("imgsz")
    if isinstance(size, list) and len(size) == 2:
        parts += ["--imgsz", str(size[0]) if size[0] == size[1] else f"{size[0]},{size[1]}"]
    dynamic = manifest.get("dynamic")
    d = _EXPORT_DEFAULTS
    most = batch_limit(manifest)  # None: no bound recorded, which no --batch can ask for; the default's
    if dynamic is None:
        parts.append("--static")
        if most is not None and most != 1:
            parts += ["--batch", str(most)]
    elif isinstance(dynamic, Mapping):
        if most is not None and most != d["max_batch"]:
            parts += ["--batch", str(most)]
        lo, hi = (dynamic.get("height") or [d["min_size"], d["max_size"]])[:2]
        hw = [int(v) for v in size] if isinstance(size, list) and len(size) == 2 else []
        if lo != d["min_size"]:
            parts += ["--min-size", str(lo)]
        if hi != max(d["max_size"], lo, *hw):  # the default maximum grows to hold --imgsz
            parts += ["--max-size", str(hi)]
    exporter = export.get("exporter") or d["exporter"]
    if exporter != d["exporter"]:
        parts += ["--exporter", str(exporter)]
    opset = export.get("opset")
    if opset is not None and opset != (d["dynamo_opset"] if exporter == "dynamo" else d["opset"]):
        parts += ["--opset", str(opset)]
    if export.get("simplified") is False:
        parts.append("--no-simplify")
    for flag, key, owner, _ in _TASK_OPTIONS:  # kept where the graph rebuilt is of the task that takes them
        if post.get(key, d[key]) != d[key] and owner == target:
            parts += [flag, str(post[key])]
    if "model.fp16.onnx" in files:
        parts.append("--half")
    int8 = [name for name in files if ".int8." in name]
    if int8:
        parts.append("--int8")
        flavours = {"model.int8.onnx": "cpu", "model.int8.trt.onnx": "trt"}
        present = sorted(flavours[name] for name in int8 if name in flavours)
        if len(present) == 1:
            parts += ["--int8-flavour", present[0]]
        # --int8-cpu auto is static for the graphs with FPN/head Conv chains, dynamic for the others: the
        # rule of the task rebuilt, which a changed --task makes another than the recorded one
        method = cpu_int8_record(manifest).get("method")
        auto = "static" if target in ("detect", "segment") else "dynamic"
        if "model.int8.onnx" in files and method in ("static", "dynamic") and method != auto:
            parts += ["--int8-cpu", str(method)]
    parts += _picture_options(manifest, calibrated=bool(int8))
    for flag, value in given.items():
        if flag in ("--static", "--no-simplify"):  # switches, given as the value they turned off
            parts += [flag] if flag not in parts else []
            continue
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        if flag in parts:  # in its place
            parts[parts.index(flag) + 1] = shown
        else:
            parts += [flag, shown]
    parts += ["-o", str(folder)]
    return " ".join(shell_quote(p) for p in parts)


def _names_option(manifest: Mapping[str, Any]) -> str | None:
    """The ``--names`` that gives an export its classes again (an export made with ``--names``): none where
    they are numbers or a bundled dataset's (ImageNet, COCO, ADE20K), which the weights give alone. Classes an
    mmdet/mmseg file names are given too, as they are. ``a,b,c``, or a JSON list where a name holds a comma or
    ``a,b,c`` would be read as a list or a file (``["car, red", "bus"]``, ``["cat", "dog.txt"]``; ``--names``
    reads a list in brackets as YAML)."""
    from pvt_deploy.data import DATASETS, NAME_FILES, class_names

    classes = manifest.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return None
    if classes == [str(i) for i in range(len(classes))]:
        return None
    if any(len(classes) == n and tuple(classes) == class_names(d) for d, n in DATASETS.items()):
        return None
    joined = ",".join(classes)
    if (any("," in c for c in classes) or (joined.startswith("[") and joined.endswith("]"))
            or joined.lower().endswith(NAME_FILES)):
        return json.dumps(classes, ensure_ascii=False)
    return joined


def _named_task(model: str) -> str:
    """The task a zoo name's suffix names (none: the detector)."""
    return next((t for sfx, t in _SUFFIX_TASKS.items() if model.endswith(sfx)), "detect")


def _reexported_model(manifest: Mapping[str, Any], task: Any = None) -> tuple[str, str]:
    """The ``--model`` that exports ``manifest``'s model again as a ``task`` model (default: its own task), and
    that task. A zoo name takes no other task than its suffix names (``pvt_v2_b0-cls --task features`` is
    refused): its backbone is given, with ``--task``."""
    model = str(manifest.get("model") or "NAME")
    named = _named_task(model)
    target = str(task or manifest.get("task") or named)
    if target != named:
        sfx = next((s for s in _SUFFIX_TASKS if model.endswith(s)), "")
        model = str(manifest.get("backbone") or model[: len(model) - len(sfx)])
    return model, target


def foreign_option(task: str, values: Mapping[str, Any]) -> tuple[str, Any, str] | None:
    """The first graph option of another task than ``task`` that ``values`` (by postprocess key: ``nms``,
    ``seg_output``) sets away from its default, as its key, value and the models it is for; else None. The
    export refuses one (``export.onnx._check_task_options``), and a re-export hint is none where one is asked
    (:func:`out_of_reach`)."""
    for _, key, owner, models in _TASK_OPTIONS:
        if key in values and values[key] != _EXPORT_DEFAULTS[key] and owner != task:
            return key, values[key], models
    return None


def out_of_reach(manifest: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    """Why no export of ``manifest``'s model gives the graph options ``given`` (by flag, as
    :func:`reexport_command` takes them), or None where the command that function gives does: an unknown
    ``--task``, or an option of another task's graphs (``--seg-output argmax`` of a classifier)."""
    _, target = _reexported_model(manifest, given.get("--task"))
    if target not in TASKS:
        return f"--task {target} is none of {', '.join(TASKS)}"
    flags = {key: flag for flag, key, _, _ in _TASK_OPTIONS}
    foreign = foreign_option(target, {key: given[flag] for key, flag in flags.items() if flag in given})
    if foreign is not None:
        key, value, models = foreign
        return f"{flags[key]} {value} is for {models} models, not a {target} model"
    return None


def _picture_options(manifest: Mapping[str, Any], *, calibrated: bool) -> list[str]:
    """``--calib``/``--calib-size``/``--images`` as the export recorded them (the sources as the user
    gave them): the INT8 graphs rebuilt on other pictures (the bundled photos) are other graphs, and
    their gate runs on other pictures. ``--calib``'s pictures are what parity runs on without
    ``--images``, so a parity source that is the calibration's own is left out."""
    calibration = ((manifest.get("precision") or {}).get("int8") or {}).get("calibration") or {}
    calib = calibration.get("source") if calibrated else None
    parts: list[str] = []
    if calib and calib != BUNDLED_IMAGES:
        parts += ["--calib", str(calib)]
        count = calibration.get("images")  # what --calib gave: fewer than asked where it held fewer
        if isinstance(count, int) and count != DEFAULT_CALIB_IMAGES:
            parts += ["--calib-size", str(count)]
    else:
        calib = None
    images = (manifest.get("export") or {}).get("parity_images")
    if images and images != BUNDLED_IMAGES and images != calib:
        parts += ["--images", str(images)]
    return parts
