"""PyTorch -> ONNX: trace the deploy graph, simplify, check, add precision variants, gate on parity.

:func:`export_onnx` writes an artifact folder (docs/ARCHITECTURE.md): ``model.onnx`` always,
``model.fp16.onnx`` / ``model.int8.onnx`` / ``model.int8.trt.onnx`` on request, and ``manifest.json``
last. A new export is built in a hidden folder beside the output folder and renamed into its place
only once complete (export/swap.py), so a failed or interrupted export never leaves a half-written
graph that later loads, nor touches the export that was there; variants added to an export folder are
made in a hidden folder inside it and moved in, with the manifest that lists them, only once all of
them exist.

Exporters. The TorchScript exporter (``dynamo=False``) is the default: it is ~6x faster on PVT
(7 s against 46 s for a pvt_tiny detector here) and one trace is generic over batch, height and width.
The dynamo exporter (``exporter="dynamo"``, opset >= 18) works too; it needs H/W declared as multiples
of 32 and a batch-2 example (a batch of 1 specialises), and its graph gets the same names, checks and
gate. torch deprecates the TorchScript exporter, so both are tested.

Dynamic graphs are traced at a non-square size chosen so that as few export-size values as possible
coincide with the model's own constants (channels, heads, classes): the baked-shape checker can then
tell every size the trace could have frozen from a legitimate constant, and the parity images (planned
at ``imgsz``) run at sizes the trace never saw.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import io
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvt_deploy.errors import (
    InputError,
    ModelNotFoundError,
    ParityError,
    PvtDeployError,
    one_of,
    option,
    switched_on,
)
from pvt_deploy.export import reading
from pvt_deploy.export.swap import SwappedFolder, folder_lock, scratch
from pvt_deploy.manifest import (
    BUNDLED_IMAGES,
    MANIFEST_NAME,
    ONNX_METADATA_KEY,
    cpu_int8_record,
    essentials,
    file_entry,
    out_of_reach,
    read_manifest,
    reexport_command,
    tool_versions,
    verify_file,
    write_manifest,
)
from pvt_deploy.utils import joined_lines, size_pair
from pvt_deploy.utils.files import (
    WRITE_ERRNOS,
    hashing_once,
    json_safe,
    link_to_nowhere,
    probe_writable,
    sha256_file,
)

if TYPE_CHECKING:
    import numpy as np
    import onnx
    from torch import nn

    from pvt_deploy.export.calibration import Batch, Picture
    from pvt_deploy.export.parity import Tolerance
    from pvt_deploy.models.zoo import ZooEntry

log = logging.getLogger("pvt_deploy.export")

ProgressCallback = Callable[[str, int, int], Any]
"""``progress(phase, step, total)``: step 0 when a phase starts, ``total`` when it ends."""

EXPORTERS = ("torchscript", "dynamo")
NMS_MODES = ("host", "graph")
SEG_OUTPUTS = ("logits", "argmax")
INT8_FLAVOUR_CHOICES = ("cpu", "trt", "both")
STRIDE = 32
MIN_OPSET = 17
DYNAMO_MIN_OPSET = 18
DEFAULT_MAX_BATCH = 8
DEFAULT_MIN_SIZE = 32
DEFAULT_MAX_SIZE = 1344
FP32_FILE = "model.onnx"
FP16_FILE = "model.fp16.onnx"
# Files derived from model.onnx: stale once model.onnx is re-exported.
DERIVED_FILES = ("model.fp16.onnx", "model.int8.onnx", "model.int8.trt.onnx", "model.engine")
# Trace-size search window for dynamic graphs (multiples of 32).
TRACE_SIZES = tuple(range(160, 481, STRIDE))


# --------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------


def parse_imgsz(value: int | str | Sequence[int] | None, default: Sequence[int], *, warn: bool = True
                ) -> tuple[int, int]:
    """``640``, ``"640"``, ``"800x1344"`` (H x W) or ``(800, 1344)`` -> (H, W), multiples of 32.

    Sizes that are not multiples of 32 are rounded up (the graph's stride) with a warning; sizes
    below 32 are refused.
    """
    h, w = size_pair(value, what=option("imgsz")) or (int(default[0]), int(default[1]))
    if min(h, w) < STRIDE:
        raise InputError(f"{option('imgsz')} {h}x{w}: each side must be at least {STRIDE}")
    rh, rw = _round_up(h, STRIDE), _round_up(w, STRIDE)
    if (rh, rw) != (h, w) and warn:
        log.warning("imgsz %dx%d is not a multiple of %d; using %dx%d", h, w, STRIDE, rh, rw)
    return rh, rw


def max_opset(exporter: str = "torchscript") -> tuple[int, str]:
    """The highest opset ``exporter`` can write, and whose limit it is. The TorchScript exporter stops at
    torch's ``ONNX_MAX_OPSET`` (above it: ``RuntimeError: Unsupported onnx_opset_version`` deep in the
    trace); the dynamo one writes opset 18 and converts it to newer opsets (24 and 25 pass the parity gate
    with torch 2.13) with onnxscript's version converter, up to its ``SUPPORTED_MAX_ONNX_OPSET`` and what the
    installed onnx package defines. Past the converter's limit torch kept opset 18 with newer operators in it
    (Gelu): the graph check failed after the trace (exit 1, "No Op registered for Gelu with domain_version of
    18")."""
    from importlib.metadata import version

    if exporter == "dynamo":
        import onnx

        defined = int(onnx.defs.onnx_opset_version())
        converts = _constant_in_source("onnxscript.version_converter._version_converter", "SUPPORTED_MAX_ONNX_OPSET")
        if converts is not None and converts < defined:
            return converts, (f"onnxscript {version('onnxscript')}'s version converter (the dynamo exporter's) "
                              "converts to")
        return defined, f"onnx {onnx.__version__} defines"
    return _torch_max_opset(), f"torch {version('torch').split('+')[0]}'s TorchScript exporter writes"


def _torch_max_opset() -> int:
    """torch's ``ONNX_MAX_OPSET``."""
    found = _constant_in_source("torch.onnx._constants", "ONNX_MAX_OPSET")
    if found is None:
        from torch.onnx import _constants

        return int(getattr(_constants, "ONNX_MAX_OPSET", 23))
    return found


def _constant_in_source(module: str, name: str) -> int | None:
    """The whole number ``module`` (dotted) binds ``name`` to at its top level: the loaded module's, else read
    from its source without running it, as importing torch (or onnxscript) costs seconds, which ``export
    --help`` (it names these limits) would pay for one number. None where neither says (not installed)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        value = getattr(loaded, name, None)
        return value if isinstance(value, int) else None
    top, *inner = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level spec: the package itself is not run
    if spec is None or spec.origin is None:
        return None
    with contextlib.suppress(OSError, SyntaxError, ValueError):
        tree = ast.parse(Path(spec.origin).parent.joinpath(*inner).with_suffix(".py").read_text("utf-8"))
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == name and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, int)):
                return node.value.value
    return None


def node_counts(before: Any, after: Any, simplified: bool) -> str:
    """``2157 nodes, 1066 after simplification``; with ``--no-simplify``, no count "after" a step that never ran.
    The export's log and the CLI's figures (the manifest's ``export`` record) both say it so."""
    return f"{before} nodes, {after} after simplification" if simplified else f"{before} nodes (not simplified)"


def _round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def _preprocessed(lists: Sequence[Sequence[Any]], static_batch: int | None) -> int:
    """The most pictures of the lists that are held preprocessed at once (``make_batches``): each list is
    preprocessed where it is used and let go after (calibration's inside :func:`_make_variants`, parity's
    once the variants are made), so the largest, padded up to whole batches where the graph's batch is static."""
    return max((len(p) if static_batch is None else _round_up(len(p), static_batch) for p in lists), default=0)


def _size_range(min_size: int | None, max_size: int | None, hw: tuple[int, int] | None = None,
                *, default_imgsz: bool = False) -> tuple[int, int]:
    """The H/W range (multiples of 32) a dynamic graph declares: ``min_size`` rounded up, ``max_size``
    rounded down, the default maximum grown to fit ``hw``. Refuses an empty range, or one that does
    not hold ``hw`` (the size preprocessing plans for, which inference would then be refused)."""
    for flag, value in ((option("min_size"), min_size), (option("max_size"), max_size)):
        if value is not None and value < STRIDE:
            raise InputError(f"{flag} {value}: must be at least {STRIDE}")
    lo = _round_up(min_size or DEFAULT_MIN_SIZE, STRIDE)
    hi = max_size // STRIDE * STRIDE if max_size is not None else max(DEFAULT_MAX_SIZE, lo, *(hw or ()))
    if lo > hi:  # both given (the default maximum grows to fit)
        raise InputError(f"{option('min_size')} {min_size} is larger than {option('max_size')} {max_size}"
                         if min_size is not None and max_size is not None and min_size > max_size else
                         f"--min-size {min_size} .. --max-size {max_size} holds no multiple of {STRIDE}")
    if hw is not None:
        size = f"{option('imgsz')} {hw[0]}x{hw[1]}" + (f" (the default; pass {option('imgsz')})" if default_imgsz else "")
        if min(hw) < lo:  # the bound as the user gave it, and the multiple of 32 it was rounded to
            given = f"{min_size} (rounded up to {lo})" if min_size not in (None, lo) else str(lo)
            raise InputError(f"{option('min_size')} {given} is larger than {size}")
        if max(hw) > hi:
            given = f"{max_size} (rounded down to {hi})" if max_size not in (None, hi) else str(hi)
            raise InputError(f"{option('max_size')} {given} is smaller than {size}")
    return lo, hi


# --------------------------------------------------------------------------------------------------
# The output folder: a new export is built beside it and swapped in only when complete
# --------------------------------------------------------------------------------------------------


def _ours(name: str, listed: Sequence[str] = ()) -> bool:
    """Whether a folder entry is pvt-deploy's: the export's files, its caches and scratch files."""
    from pvt_deploy.runtimes.ort_session import CACHE_DIRNAME

    owned = (MANIFEST_NAME, FP32_FILE, *DERIVED_FILES, CACHE_DIRNAME, *listed)
    return (name in owned or name.startswith(".pvt-")
            or (".part" in name and name.startswith(tuple(f".{n}." for n in owned))))  # atomic_path temps


def _holds_export(folder: Path) -> bool:
    return folder.is_dir() and any((folder / n).exists() for n in (MANIFEST_NAME, FP32_FILE, *DERIVED_FILES))


def _listed_files(folder: Path) -> list[str]:
    """File names the folder's manifest lists (none if it is missing or unreadable)."""
    try:
        return [str(n) for n in (read_manifest(folder).get("files") or {})]
    except InputError:
        return []


def _export_folder(out: Path) -> SwappedFolder:
    """The output folder ``out`` as :mod:`pvt_deploy.export.swap` replaces it: built in a hidden folder beside
    it; its files that pvt-deploy did not make (notes, checkpoints, image folders) move into the new one.
    ``out`` is checked as it is made, before any slow work (:func:`_check_output`)."""
    folder = SwappedFolder(Path(os.path.realpath(out)), f"output folder {out}",
                           lambda old: functools.partial(_ours, listed=_listed_files(old)))
    _check_output(out, folder)
    return folder


def _check_output(out: Path, folder: SwappedFolder) -> None:
    """Refuse an output ``out`` that ``folder`` (its real path, as swapped) cannot replace."""
    if os.path.exists(out) and not out.is_dir():  # (not Path.exists: a name too long raises, said below)
        raise InputError(f"output {out} exists and is not a folder")
    # the export is built beside the folder it replaces, in a hidden folder named after it (``.NAME.pvt-new-…``, the
    # name cut to fit where it is long: SwappedFolder.unwritable), and renamed into place: the parent must take new
    # files, and the folder's name and that one fit the file system. All of the real folder, which a link given as
    # ``out`` (or a '..' after one) names otherwise.
    # A link as given that leads nowhere (a loop, a link to what is gone), ``out`` itself or one on its way, is
    # refused first, as ``mkdir -p`` and infer refuse it: its real path reads it as a folder still to be made, where
    # the export would make the link's missing target (a drive's folder not mounted: made on the disk beneath it),
    # and a loop's real path is itself, a link, which the swap set aside as an old export and left there. Nothing
    # is written there: a link given as ``out`` may be in a folder the export need not write to
    target = folder.target
    nowhere = link_to_nowhere(os.path.abspath(out))
    reason = nowhere.strerror if nowhere is not None else folder.unwritable()
    if reason is not None:
        raise InputError(f"cannot write to output folder {out}: {reason}")
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise InputError(f"output folder {out} is (or holds) the current folder; an export replaces its whole "
                         "folder when it succeeds, so give it a folder of its own (e.g. -o exports/NAME)")
    if target.is_dir() and os.path.ismount(target):
        raise InputError(f"output folder {out} is a mount point, which an export cannot replace as a whole; "
                         "export into a folder inside it")


@contextlib.contextmanager
def _replacing(out: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``out`` to build the new export in; swap it in for ``out``
    when the block succeeds, delete it when the block fails (``out`` untouched, byte for byte).

    A parity failure (:class:`ParityError`) swaps the new files in, marked failed, only where ``out``
    held no export: a working export is never replaced by one that failed its gate.
    """
    folder = _export_folder(out)

    def swap_failed(e: BaseException) -> bool:
        if isinstance(e, ParityError) and _holds_export(folder.target):
            log.warning("%s: kept the previous export unchanged, as the new one failed parity "
                        "(--allow-parity-failure writes it anyway)", out)
            return False
        return isinstance(e, ParityError)

    with folder.replacing(swap_failed=swap_failed) as staging:
        yield staging


# --------------------------------------------------------------------------------------------------
# Model loading
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    module: Any  # the deploy graph: a DeployModule, or a GraphNMSModule around one
    name: str
    backbone: str
    task: str
    classes: list[str]
    weights: dict[str, Any]
    palette: dict[str, Any] = field(default_factory=dict)  # the manifest's "palette" (zoo.model_palette), or none


def _check_task_options(name: str, mtask: str, nms: str, seg_output: str) -> None:
    """Refuse an output option of another task (graph NMS is the detector's, an argmax map the segmenter's):
    the manifest's table of them, which its re-export hints follow too."""
    from pvt_deploy.manifest import foreign_option

    foreign = foreign_option(mtask, {"nms": nms, "seg_output": seg_output})
    if foreign is not None:
        key, value, models = foreign
        raise InputError(f"{option(key)} {value} is for {models} models; {name} is a {mtask} model")


def _named_entry(model: Any, task: str | None) -> ZooEntry | None:
    """The zoo entry ``model`` is where it is given by a zoo name, known before anything is read or built (its
    task, its default size); None for anything else: a path, a URL, a module, a name that is no zoo name (refused
    later, in those words)."""
    if not isinstance(model, str) or "://" in model or os.path.lexists(model):
        return None
    from pvt_deploy.models.zoo import resolve_name

    with contextlib.suppress(ModelNotFoundError):
        return resolve_name(model, task)
    return None


def _load(model: str | os.PathLike[str] | nn.Module, *, task: str | None, weights: Any, trust: bool,
          nms: str, seg_output: str, url: str | None = None, names: Any = None) -> LoadedModel:
    """``url``: the checkpoint URL ``model`` (the file) was downloaded from (``--model https://...``).
    ``names``: the class names given (:func:`~pvt_deploy.data.given_names`), in place of the model's own."""
    from torch import nn

    from pvt_deploy.models import RANDOM_INIT_SEED, build_deploy_module, create_model, resolve_name
    from pvt_deploy.models.zoo import model_classes, model_palette
    from pvt_deploy.utils.download import is_url

    if isinstance(weights, (str, os.PathLike)) or isinstance(model, nn.Module):
        url = None  # the weights are --weights', not the model file's
    if not isinstance(model, nn.Module):
        from pvt_deploy.models.zoo import official_weights

        weights = official_weights(weights, str(model), task)  # "official": the zoo entry's URL, recorded below
    if is_url(weights):
        url = weights  # recorded beside the file it was downloaded to
    if isinstance(weights, (str, os.PathLike)):
        from pvt_deploy.models.checkpoints import require_checkpoint_file

        weights = require_checkpoint_file(weights)  # a URL: its downloaded file
    if isinstance(model, nn.Module):
        core = model
        if weights is not None:
            from pvt_deploy.models import load_weights

            core.load_report = load_weights(core, weights, trust=trust)  # type: ignore[assignment]
            core.random_init = False  # type: ignore[assignment]
    else:  # a zoo name's task options were checked by export_onnx; a checkpoint's task is read from its tensors
        core = create_model(str(model), task=task, weights=weights, trust=trust, seed=RANDOM_INIT_SEED)
    name = getattr(core, "zoo_name", None)
    mtask = task or getattr(core, "zoo_task", None)
    if name is None or mtask is None:
        raise ModelNotFoundError("pass a model name, a checkpoint, or a model made by create_model")
    entry = resolve_name(name)
    _check_task_options(name, mtask, nms, seg_output)
    deploy: Any = build_deploy_module(core, mtask, seg_output=seg_output)
    if nms == "graph":
        from pvt_deploy.export.nms import build_graph_nms

        deploy = build_graph_nms(deploy)
    classes = model_classes(core, entry.classes)
    if names is not None:
        from pvt_deploy.data import given_names

        classes = given_names(names, len(classes) if mtask != "features" else 0, f"{name} ({mtask})")
    source = None  # absolute, so that the PyTorch backend finds the file from any folder
    if isinstance(weights, (str, os.PathLike)):
        source = str(Path(weights).resolve())
    elif not isinstance(model, nn.Module) and Path(str(model)).is_file():
        source = str(Path(str(model)).resolve())
    random_init = bool(getattr(core, "random_init", weights is None and source is None))
    report = getattr(core, "load_report", None)
    record: dict[str, Any] = {"source": source, "sha256": sha256_file(source) if source else None,
                              "random_init": random_init}
    if url is not None:
        record["url"] = url
    if trust and source is not None:  # what rebuilds it from the file (check, bench) needs, however it is exported
        from pvt_deploy.models.checkpoints import holds_tensors_only

        if not holds_tensors_only(source):  # a safetensors file loads without it: no flag to pass on
            record["trust_checkpoint"] = True
    if random_init and not isinstance(model, nn.Module):
        record["seed"] = RANDOM_INIT_SEED  # create_model(name, seed=...) rebuilds these weights
    if report is not None:
        record["load_report"] = report.summary()
        if report.random:
            record["randomly_initialised_tensors"] = len(report.random)
    return LoadedModel(deploy.eval(), entry.name, entry.backbone, mtask, classes, record, model_palette(core))


# --------------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------------


def output_dim_names(output_names: Sequence[str], max_detections: int | None = None,
                     feature_channels: Sequence[int] | None = None) -> dict[str, dict[int, str | int]]:
    """Readable names of every dynamic dim of the graph's inputs and outputs (an int: a dim that is
    fixed although the exporter could not tell, like graph NMS's ``max_detections`` or the channels
    of the ``features`` maps, which come out of a token reshape)."""
    names: dict[str, dict[int, str | int]] = {"images": {0: "batch", 2: "height", 3: "width"}}
    features = [out for out in output_names if out.startswith("feat_s")]
    for out in output_names:
        if out.startswith("feat_s"):
            s = out[len("feat_s"):]
            names[out] = {0: "batch", 2: f"height_s{s}", 3: f"width_s{s}"}
            if feature_channels is not None and len(feature_channels) == len(features):
                names[out][1] = int(feature_channels[features.index(out)])
        elif out == "seg_logits":
            names[out] = {0: "batch", 2: "height_s4", 3: "width_s4"}
        elif out == "seg_mask":
            names[out] = {0: "batch", 1: "height", 2: "width"}
        elif out in ("boxes", "scores"):
            names[out] = {0: "batch", 1: "num_boxes"}
        elif out.startswith("det_") and max_detections:
            names[out] = {0: "batch", 1: max_detections}
        else:
            names[out] = {0: "batch"}
    return names


def module_dim_names(module: Any) -> dict[str, dict[int, str | int]]:
    """:func:`output_dim_names` of a deploy module: its outputs, graph NMS's ``max_detections`` and
    the channels of its feature maps."""
    return output_dim_names(list(module.output_names), getattr(module, "max_detections", None),
                            _feature_channels(module))


def _feature_channels(module: Any) -> list[int] | None:
    """The channels of a ``features`` graph's four maps (the backbone's ``out_channels``)."""
    model = getattr(module, "model", None)
    channels = getattr(getattr(model, "backbone", model), "out_channels", None)
    return [int(c) for c in channels] if channels else None


def choose_trace_size(allowed: set[int], size_range: tuple[int, int], pre_nms_topk: int | None) -> tuple[int, int]:
    """A non-square (H, W) inside ``size_range`` whose derived sizes collide least with ``allowed``."""
    from pvt_deploy.export.graph import export_size_values

    lo, hi = size_range
    sizes = [s for s in TRACE_SIZES if lo <= s <= hi] or [max(lo, min(hi, 256))]
    best: tuple[int, int, int] | None = None
    for h in sizes:
        for w in sizes:
            if h == w and len(sizes) > 1:
                continue
            clash = len(export_size_values(h, w, pre_nms_topk=pre_nms_topk) & allowed)
            key = (clash, h * w, h)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[1] // best[2]


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """TracerWarnings and exporter chatter are expected; the graph checks are what count."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx",
                                              "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def trace_to_onnx(module: Any, example: Any, *, exporter: str, dynamic: bool, opset: int,
                  max_batch: int, size_range: tuple[int, int]) -> onnx.ModelProto:
    """Export ``module`` (inputs ``images``) to an in-memory ONNX model with named I/O and dims."""
    import onnx
    import torch

    from pvt_deploy.export.graph import name_dims

    in_names, out_names = list(module.input_names), list(module.output_names)
    dims = module_dim_names(module)
    axes = {k: {a: n for a, n in v.items() if isinstance(n, str)} for k, v in dims.items()}
    uses_nms = any(n == "num_dets" for n in out_names)
    with _quiet_torch_export(), torch.no_grad():
        if exporter == "torchscript":
            if uses_nms:
                from pvt_deploy.export.nms import register_torchscript_symbolic

                register_torchscript_symbolic()
            buf = io.BytesIO()
            torch.onnx.export(module, (example,), buf,  # type: ignore[arg-type]  # a file object works
                              dynamo=False, opset_version=opset, input_names=in_names, output_names=out_names,
                              dynamic_axes=axes if dynamic else None, do_constant_folding=True)
            proto = onnx.load_from_string(buf.getvalue())
        else:
            from torch.export import Dim

            shapes = None
            if dynamic:
                lo, hi = size_range
                h32 = Dim("h32", min=max(1, lo // STRIDE), max=max(1, hi // STRIDE))
                w32 = Dim("w32", min=max(1, lo // STRIDE), max=max(1, hi // STRIDE))
                batch = Dim("batch", min=1, max=max(2, max_batch))
                shapes = {"images": {0: batch, 2: STRIDE * h32, 3: STRIDE * w32}}
            table = None
            if uses_nms:
                from pvt_deploy.export.nms import dynamo_translation_table

                table = dynamo_translation_table(opset)
            try:
                program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                            input_names=in_names, output_names=out_names,
                                            dynamic_shapes=shapes, custom_translation_table=table,
                                            verbose=False, report=False)
            except Exception as e:
                raise PvtDeployError(f"the dynamo exporter failed: {joined_lines(e)[:300]}",
                                     hint="try --exporter torchscript") from e
            assert program is not None
            proto = program.model_proto
    name_dims(proto, dims)
    return proto


# --------------------------------------------------------------------------------------------------
# Runners for the parity gate
# --------------------------------------------------------------------------------------------------


def torch_runner(module: Any) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    import torch

    names = list(module.output_names)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        return {n: t.detach().cpu().numpy() for n, t in zip(names, out, strict=True)}

    return run


def ort_runner(path: str | os.PathLike[str]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """An ONNX Runtime CPU session on the graph this CPU's backend sessions load for ``path``
    (:func:`pvt_deploy.runtimes.ort_session.optimized_graph`: the CPU rewrites that pay here, cached
    beside the file, where the backend then finds them), as a parity candidate. So the gate measures
    what will run: on x86 without VNNI an INT8 file as written saturates in ONNX Runtime's U8S8
    kernels and would fail a gate that the backend's re-based graph passes, and the latencies the
    manifest records compare the graphs that run."""
    import onnxruntime as ort

    from pvt_deploy.runtimes.ort_session import optimized_graph

    graph = optimized_graph(path)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(graph.path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise PvtDeployError(f"{Path(path).name}: ONNX Runtime cannot load it ({joined_lines(e)[:240]})"
                             ) from e
    names = [o.name for o in session.get_outputs()]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {"images": x}), strict=True))

    return run


# --------------------------------------------------------------------------------------------------
# Shared by fresh exports and by extending an existing artifact
# --------------------------------------------------------------------------------------------------


class _Steps:
    """Progress reporting + timing of named phases."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str, step: int, total: int) -> None:
        if self.callback is not None:
            self.callback(phase, step, total)

    @contextlib.contextmanager
    def phase(self, name: str, total: int = 1) -> Iterator[None]:
        self(name, 0, total)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 2)
        self(name, total, total)


@dataclass
class _Variants:
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> manifest files entry
    precision: dict[str, Any] = field(default_factory=dict)


@dataclass
class _CheckSpec:
    input_names: list[str]
    output_names: list[str]
    dynamic: bool
    trace_hw: tuple[int, int] | None
    layernorms: int | None
    allowed: set[int]
    pre_nms_topk: int | None

    def run(self, model: onnx.ModelProto, what: str) -> dict[str, Any]:
        from pvt_deploy.export.graph import check_graph

        report = check_graph(model, input_names=self.input_names, output_names=self.output_names,
                             dynamic=self.dynamic, export_hw=self.trace_hw, expected_layernorms=self.layernorms,
                             allowed=self.allowed, pre_nms_topk=self.pre_nms_topk)
        if not report.ok:
            raise PvtDeployError(f"{what}: graph check failed: {report.problems[0]}"
                                 + (f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""))
        return {"opset": report.opset, "nodes": report.nodes, "layernorm_nodes": report.layernorm_nodes,
                "baked_shapes": 0, "unverifiable_sizes": report.unverifiable}


def _variant_sizes(fp32_graph: Mapping[str, Any]) -> set[int]:
    """The export-size values that a graph made from the FP32 one (FP16, INT8) may hold as constants: those
    the FP32 graph's check allowed as the model's own (a channel or head count that the trace size also
    gives: its record's ``unverifiable_sizes``). One rule for an export that makes the variants and one
    that adds them to its folder later, where the PyTorch model is not at hand: the FP32 graph's own shape
    constants are not enough, as the CPU INT8 layout writes channel counts that it computes at run time
    (the K/V Split's [C, C], the MLP's [0, -1, 4C])."""
    return {int(v) for v in fp32_graph.get("unverifiable_sizes") or ()}


def _with_metadata(model: onnx.ModelProto, meta: Mapping[str, Any]) -> onnx.ModelProto:
    from pvt_deploy import __version__
    from pvt_deploy.export.graph import set_metadata

    set_metadata(model, ONNX_METADATA_KEY, dict(meta))
    # both: the exporter leaves torch's version ("pytorch 2.13.0"), quantize_dynamic "onnx.quantize 0.1.0",
    # and Netron and polygraphy show the pair as the file's producer
    model.producer_name, model.producer_version = "pvt-deploy", __version__
    return model


def _make_variants(folder: Path, fp32: onnx.ModelProto, meta: Mapping[str, Any], *, half: bool,
                   int8_flavours: Sequence[str], int8_cpu: str, calib: Callable[[], list[Batch]],
                   calib_source: str, checks: _CheckSpec, steps: _Steps, calib_frames: Sequence[str] = ()) -> _Variants:
    """Write the FP16 / INT8 files asked for, each checked and carrying the metadata. ``calib``: the calibration
    pictures preprocessed, called where a file calibrates (a dynamic file of a PVT v1 classifier reads none); ``calib_frames``:
    the names of the video frames calibrated on (``clip.mp4#frame=120``), recorded beside the source."""
    import onnx

    from pvt_deploy.export import precision as prec
    from pvt_deploy.export.graph import save_model

    out = _Variants()
    if half:
        with steps.phase("fp16"):
            model16, record = prec.convert_fp16(fp32)
            record["graph"] = checks.run(model16, FP16_FILE)
            save_model(_with_metadata(model16, meta), folder / FP16_FILE)
        out.files[FP16_FILE] = file_entry(folder / FP16_FILE, "fp16")
        out.precision["fp16"] = record
    if not int8_flavours:
        return out
    int8: dict[str, Any] = {}
    with prec.temporary_dir(folder) as tmp_dir:
        tmp = Path(tmp_dir)
        src = tmp / "fp32.onnx"
        onnx.save_model(fp32, str(src))
        prepared = tmp / "prepared.onnx"
        with steps.phase("int8-prepare"):
            prec.prepare_for_quantization(src, prepared)
            jobs = [prec.plan_int8(prepared, tmp / f"{flavour}.onnx", flavour=flavour, source=src,
                                   method=int8_cpu if flavour == "cpu" else "static") for flavour in int8_flavours]
        ranges: dict[str, Any] = {}
        batches: list[Batch] = []
        if any(job.calibrates() for job in jobs):  # a dynamic file of a PVT v1 classifier (weights only) reads none
            batches = calib()
            int8["calibration"] = {"source": calib_source, "images": sum(len(b.names) for b in batches),
                                   "method": "minmax"}
            if calib_frames:
                int8["calibration"]["frames"] = list(calib_frames)
            if calib_source == BUNDLED_IMAGES:
                log.warning("no %s given: calibrating INT8 on the %d bundled sample images (fine for a test, "
                            "not tuned for your data)", option("calib"), int8["calibration"]["images"])
        elif calib_source != BUNDLED_IMAGES:  # given, and read (parity runs on it without --images)
            log.warning("%s %s calibrates nothing: %s is dynamic INT8 (weights only), and %s has no convolution "
                        "that it quantizes static", option("calib"), calib_source, prec.INT8_FILES["cpu"],
                        meta.get("model", "the model"))
        if any(job.record["method"] == "static" for job in jobs):
            with steps.phase("int8-calibrate"):  # one pass of the images for every static flavour
                ranges = prec.calibrate_jobs(src, jobs, batches)
        for job in jobs:
            name = prec.INT8_FILES[job.flavour]
            with steps.phase(f"int8-{job.flavour}"):
                model8, record = prec.write_int8(job, tmp / f"{job.flavour}.onnx", batches, ranges)
                record["graph"] = checks.run(model8, name)
                save_model(_with_metadata(model8, meta), folder / name)
            out.files[name] = file_entry(folder / name, "int8", flavour=job.flavour)
            int8[job.flavour] = record
    out.precision["int8"] = int8
    return out


def _parity(reference: Callable[[np.ndarray], dict[str, np.ndarray]], reference_name: str, folder: Path,
            files: Mapping[str, Mapping[str, Any]], batches: list[Batch], *, task: str, post: Mapping[str, Any],
            tolerances: Mapping[str, Tolerance], gate_agreement: bool, steps: _Steps,
            pictures: Sequence[Picture], source: str) -> dict[str, Any]:
    """Gate ``files`` against ``reference`` on ``batches`` (made from ``pictures``, of ``source``); each
    report names its pictures (``image_source``, a video's ``frames``): an extension's gate runs on its own."""
    from pvt_deploy.export.calibration import frame_names
    from pvt_deploy.export.parity import ParityCandidate, agreement_text, parity_status, run_parity
    from pvt_deploy.export.precision import INT8_FILES

    with steps.phase("parity", len(batches) * (1 + len(files))):
        # the sessions load the backend's graphs, built here on a first export (counted as parity)
        candidates = [ParityCandidate(name, str(entry["precision"]), ort_runner(folder / name))
                      for name, entry in files.items()]
        result = run_parity(reference, candidates, batches, task=task, post=post, tolerances=tolerances,
                            gate_agreement=gate_agreement, reference_name=reference_name, progress=steps)
        cpu8 = INT8_FILES["cpu"]
        if batches and cpu8 in result.reports and FP32_FILE in result.reports:
            runs = {c.file: c.run for c in candidates if c.file in (FP32_FILE, cpu8)}
            for name, seconds in _best_latencies(runs, batches[0].images).items():
                result.reports[name]["best_latency_s"] = round(seconds, 4)
    for name, report in result.reports.items():
        worst = min((s["cosine"] for s in report["outputs"].values() if "cosine" in s), default=None)
        # as the summary table says it: no detections on either side is "no dets", not an F1 of 1.0
        agreement = agreement_text(report, ".4f")
        log.info("parity %-20s %s  cosine>=%s  agreement %s  %.3fs/batch", name,
                 parity_status(report), f"{worst:.6f}" if worst is not None else "n/a",
                 "n/a" if agreement == "-" else agreement, report["latency_s"])
    unchecked = [name for name, report in result.reports.items() if not report["checked"]]
    if unchecked:
        log.warning("parity could not check %s: with random weights, %s hold nothing to compare; "
                    "export with --weights, or with %s, to gate them", ", ".join(unchecked),
                    "post-NMS detections" if task == "detect" else "argmax class maps",
                    "host NMS" if task == "detect" else "--seg-output logits")
    frames = frame_names(pictures)
    for report in result.reports.values():
        report.update({"image_source": source, **({"frames": frames} if frames else {})})
    reports: dict[str, Any] = json_safe(result.reports)
    return reports


def _best_latencies(runs: Mapping[str, Callable[[np.ndarray], Any]], x: np.ndarray, *,
                    rounds: tuple[int, int] = (2, 9), budget_s: float = 1.5) -> dict[str, float]:
    """The best time of each runner on ``x``, called in turn for ``rounds[0]`` rounds and then more while
    ``budget_s`` lasts (at most ``rounds[1]``). The parity gate's calls before warmed the sessions, but
    its few batches (three with the bundled photos) gave a median too noisy to advise on:
    ``pvt_v2_b0-cls``'s INT8 graph measured 0.82x FP32 in them and 1.5x in ``pvt-deploy bench``.
    Called in turn, the two graphs see the same machine; the best of several calls leaves out the
    warm-up and the moments another process ran."""
    best = dict.fromkeys(runs, math.inf)
    end = time.perf_counter() + budget_s
    for done in range(1, rounds[1] + 1):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(x)
            best[name] = min(best[name], time.perf_counter() - t0)
        if done >= rounds[0] and time.perf_counter() > end:
            break
    return best


def _speedups(precision: dict[str, Any], parity: Mapping[str, Any]) -> None:
    """Record the CPU INT8 graph's measured latency and speed ratio to FP32 (ONNX Runtime, CPU, best of
    several calls in turn: :func:`_best_latencies`) beside it. The FP16 and TensorRT-flavour files are
    for GPUs; their CPU speed says nothing and is not recorded."""
    from pvt_deploy.export.precision import INT8_FILES

    base = (parity.get(FP32_FILE) or {}).get("best_latency_s")
    lat = (parity.get(INT8_FILES["cpu"]) or {}).get("best_latency_s")
    record = (precision.get("int8") or {}).get("cpu")
    if record is not None and base and lat:
        record["cpu_ort_latency_s"] = lat
        record["cpu_ort_speedup_vs_fp32"] = round(base / lat, 3)


def _int8_flavours(int8: bool, flavour: str) -> list[str]:
    flavour = one_of(option("int8_flavour"), flavour, INT8_FLAVOUR_CHOICES)  # a mistyped word is refused, used or not
    if not int8:
        return []
    return ["cpu", "trt"] if flavour == "both" else [flavour]


def _image_paths(folder: str | os.PathLike[str] | None, limit: int | None, what: str) -> tuple[list[Picture], str]:
    from pvt_deploy.export.calibration import bundled_images, usable_images
    from pvt_deploy.io.sources import redact_url

    if folder is not None:  # named in the manifest: a URL without its user:password@
        return usable_images(folder, limit, what=what), redact_url(os.fspath(folder))
    return list(bundled_images()), BUNDLED_IMAGES


def _finish(folder: Path, manifest: dict[str, Any], failures: list[str], allow_parity_failure: bool,
            parity_reports: Mapping[str, Any]) -> Path:
    write_manifest(folder, manifest)
    _gate(failures, allow_parity_failure, parity_reports)
    return folder


def _gate(failures: list[str], allow_parity_failure: bool, parity_reports: Mapping[str, Any]) -> None:
    """Raise :class:`ParityError` for the files that failed their gate (or warn, where that is allowed)."""
    if failures:
        from pvt_deploy.export.parity import ParityResult, raise_on_failure

        if allow_parity_failure:
            log.warning("parity FAILED for %s (kept because parity failures are allowed)", ", ".join(failures))
        else:
            raise_on_failure(ParityResult({k: dict(v) for k, v in parity_reports.items()}))


# --------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------


def reuses_folder(model: Any) -> bool:
    """Whether :func:`export_onnx` given ``model`` extends that export folder in place (a folder in the
    current directory named like a zoo model but holding no export is not reused: it is the zoo name)."""
    from pvt_deploy.runtimes.loader import shadows_zoo_name

    return isinstance(model, (str, os.PathLike)) and Path(model).is_dir() and not shadows_zoo_name(os.fspath(model))


def check_model_named(model: Any, task: str | None = None) -> None:
    """Refuse in a moment a ``model`` that names nothing, before any slow work and before what the machine lacks
    (TensorRT for ``--format trt``, exit 3): a path that is not there (``ckpts/x.pth``, ``exports/gone``), a name
    that is no zoo name (or not of ``task``). What is there and a URL (downloaded first) are read by the export."""
    if not isinstance(model, (str, os.PathLike)) or "://" in str(model) or os.path.lexists(model):
        return
    from pvt_deploy.manifest import CHECKPOINT_SUFFIXES
    from pvt_deploy.models.zoo import resolve_name

    text = str(model)
    if text.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in text:  # a path, as create_model reads one
        raise ModelNotFoundError(f"{model}: no such checkpoint file or export folder")
    resolve_name(text, task)


def _check_weights_named(weights: Any, model: Any, task: str | None) -> None:
    """Refuse a ``weights`` file that is not there (a folder, nothing), or ``"official"`` where ``model`` has no
    official file to download, before the calibration and parity pictures are read (a clip decoded, a URL fetched):
    the load said so only after them. A URL is downloaded by the load, after the pictures, as before."""
    if not isinstance(weights, (str, os.PathLike)) or not isinstance(model, (str, os.PathLike)):
        return
    from pvt_deploy.models.checkpoints import require_checkpoint_file
    from pvt_deploy.models.zoo import official_weights
    from pvt_deploy.utils.download import is_url

    named = official_weights(weights, os.fspath(model), task)  # "official": the zoo entry's URL, or why none
    if not is_url(named):
        require_checkpoint_file(named)


@hashing_once()  # a graph is hashed for its manifest entry, its check and the parity session's cache key: read once
def export_onnx(
    model: str | os.PathLike[str] | nn.Module,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    task: str | None = None,
    weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    trust_checkpoint: bool = False,
    imgsz: int | str | Sequence[int] | None = None,
    dynamic: bool = True,
    batch: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    opset: int | None = None,
    half: bool = False,
    int8: bool = False,
    int8_flavour: str = "both",
    int8_cpu: str = "auto",
    calib: str | os.PathLike[str] | None = None,
    calib_size: int | None = None,
    images: str | os.PathLike[str] | None = None,
    nms: str = "host",
    seg_output: str = "logits",
    exporter: str = "torchscript",
    simplify: bool = True,
    parity: bool = True,
    parity_tolerance: float | Mapping[str, Any] | None = None,
    allow_parity_failure: bool = False,
    progress: ProgressCallback | None = None,
    finish: Callable[[Path], Any] | None = None,
    builds: bool = False,
    names: str | os.PathLike[str] | Sequence[str] | None = None,
) -> Path:
    """Export a PVT model to an ONNX artifact folder and return the folder.

    ``model``: a zoo name (``pvt_small``, ``pvt_v2_b0-seg``), a checkpoint file, a module made by
    :func:`pvt_deploy.models.create_model`, or an existing export folder — then its ``model.onnx`` is
    reused and only the variants asked for (``half``/``int8``) are added. ``out_dir`` defaults to
    ``exports/<zoo name>``.

    ``imgsz`` (H, W; default per task) is the size preprocessing plans for. ``opset``: default the lowest
    the exporter writes, 17 (18 with dynamo, which writes 18 where 17 is asked for, with a warning).
    ``dynamic`` graphs accept batch 1..``batch`` (default 8) and any H, W that are multiples of 32 in
    ``min_size``..``max_size``; static graphs take exactly (``batch`` or 1, 3, H, W). ``half``:
    ``model.fp16.onnx``. ``int8``:
    Q/DQ graphs calibrated on ``calib`` (a folder, an image, a glob, a .txt list, a dataset YAML, a video
    file: ``calib_size`` frames spread over it, or the http(s) URL of an image or a video file; default the
    bundled sample images; unused without ``int8`` unless parity runs on it, which a warning says) —
    ``int8_flavour`` ``cpu`` (``model.int8.onnx``, ``int8_cpu`` auto, static or dynamic), ``trt``
    (``model.int8.trt.onnx``) or ``both``. ``nms="graph"`` appends NMS (detection);
    ``seg_output="argmax"`` ends segmentation graphs in a class map. ``names`` are the class names the
    manifest lists (and the graph's metadata), for a checkpoint that does not name its classes (mmdet/mmseg
    files name theirs) or names them wrongly: ``"a,b,c"``, a list, a ``.txt`` or ``.names`` file (one a line) or a dataset
    YAML (its ``names:``), as many as the model has classes.

    Parity: every file is run in ONNX Runtime against PyTorch on ``images`` (default: ``calib`` or the
    bundled samples); outside tolerance (``parity_tolerance``: a factor on the defaults, or
    per-precision overrides, see :mod:`pvt_deploy.export.parity`) the files and manifest are still
    written (marked failed) and :class:`~pvt_deploy.errors.ParityError` is raised unless
    ``allow_parity_failure``. ``progress(phase, step, total)`` reports slow steps.

    Safety: a new export is built in a hidden folder beside ``out_dir`` and replaces it only once
    complete (``finish(folder)``, e.g. the TensorRT build of :func:`export`, included), so a failed or
    interrupted export leaves an existing ``out_dir`` byte for byte as it was; so does a parity failure
    when ``out_dir`` held an export. Files in ``out_dir`` that pvt-deploy did not make are kept (moved
    into the new folder); earlier pvt-deploy files (variants, engine) go. Extending an export folder
    makes the variants in a hidden folder inside it and moves them in with the new manifest once they
    are complete, so that a failure or a kill before that leaves every file as it was. An export folder
    given with no variant to add is warned about (a bare ``export --model exports/NAME``, meant as a
    re-export, did nothing), unless ``finish`` or the caller builds from it (``builds``: :func:`export`'s
    Triton model).
    """
    steps = _Steps(progress)
    exporter = one_of(option("exporter"), exporter, EXPORTERS)
    nms = one_of(option("nms"), nms, NMS_MODES)
    seg_output = one_of(option("seg_output"), seg_output, SEG_OUTPUTS)
    from pvt_deploy.export.precision import CPU_METHODS

    int8_cpu = one_of(option("int8_cpu"), int8_cpu, CPU_METHODS)
    if task is not None:
        from pvt_deploy.manifest import TASKS

        task = one_of(option("task"), task, TASKS)
    flavours = _int8_flavours(int8, int8_flavour)
    if opset is not None and opset < MIN_OPSET:
        raise InputError(f"{option('opset')} {opset}: PVT graphs need opset >= {MIN_OPSET} (one LayerNormalization node "
                         "per LayerNorm)")
    if opset is not None and opset > MIN_OPSET:  # torch needs not be imported for the default
        highest, whose = max_opset(exporter)
        if opset > highest:
            raise InputError(f"{option('opset')} {opset}: {whose} opsets up to {highest}",
                             hint=f"choose {option('opset')} {MIN_OPSET}..{highest}"
                                  + (f", or {option('exporter')} dynamo for newer ones" if exporter != "dynamo" else ""))
    if batch is not None and batch < 1:
        raise InputError(f"{option('batch')} {batch}: must be >= 1")
    # a malformed size refused before any slow work, and a new graph's size range checked against it below
    size = parse_imgsz(imgsz, (640, 640), warn=False) if imgsz is not None else None
    if calib_size is not None and calib_size < 1:
        raise InputError(f"{option('calib_size')} {calib_size}: must be >= 1")
    from pvt_deploy.export.parity import resolve_tolerances

    try:
        tolerances = resolve_tolerances(parity_tolerance)
    except (TypeError, ValueError) as e:
        raise InputError(f"{option('parity_tolerance')}: {e}") from e
    # what the arguments alone contradict, before any slow work (a download, the pictures read, the model's load):
    # an option of another task than a zoo name's, a size range without the size planned (--imgsz, else the
    # default of the task: a zoo name's, or --task's for a checkpoint, whose own task is read from its tensors)
    reused = reuses_folder(model)
    named = None if reused else _named_entry(model, task)
    if named is not None:
        _check_task_options(named.name, named.task, nms, seg_output)
    if dynamic:
        from pvt_deploy.models.zoo import DEFAULT_IMGSZ

        planned = named.task if named is not None else task if isinstance(model, (str, os.PathLike)) else None
        hw = size or (DEFAULT_IMGSZ[planned] if planned is not None else None)
        _size_range(min_size, max_size, None if reused else hw, default_imgsz=size is None)
    elif min_size is not None or max_size is not None:
        log.warning("--min-size/--max-size apply to dynamic graphs; ignored with --static")
    model_url = None
    if isinstance(model, str):
        from pvt_deploy.runtimes.loader import is_checkpoint_url, local_model

        model_url = model if is_checkpoint_url(model) else None
        model = local_model(model)  # a checkpoint URL: its downloaded file, exported as that file given
    reuse = reuses_folder(model)
    ignored: dict[str, Any] = {}
    if reuse:
        ignored = {  # the graph options given, which the folder's graph was not made with
            flag: value for flag, value, default in (
                ("--task", task, None), ("--imgsz", imgsz, None), ("--batch", batch, None),
                ("--min-size", min_size, None), ("--max-size", max_size, None), ("--static", dynamic, True),
                ("--opset", opset, None), ("--exporter", exporter, "torchscript"), ("--nms", nms, "host"),
                ("--seg-output", seg_output, "logits"), ("--no-simplify", simplify, True))
            if value != default}
        _check_reuse(Path(str(model)), out_dir=out_dir, weights=weights, ignored=ignored, names=names)
        # what the extension makes, known before the pictures are listed (--calib may calibrate nothing)
        manifest = read_manifest(Path(str(model)))
        want_half, want_int8 = _wanted_variants(Path(str(model)), manifest, half=half, flavours=flavours,
                                                int8_cpu=int8_cpu)
    else:
        check_model_named(model, task)
        _check_weights_named(weights, model, task)
        if names is not None:  # a names file not there, or of another kind: before the checkpoint is read
            from pvt_deploy.data import parse_names

            parse_names(names)
        if out_dir is not None:
            _export_folder(Path(out_dir))  # checked before any slow work

    from pvt_deploy.export.calibration import DEFAULT_CALIB_IMAGES, DEFAULT_PARITY_IMAGES, spread

    if calib is not None and not flavours and (images is not None or not parity):
        # read for nothing (a clip decoded, a URL fetched) and not said: the user believed it calibrated something
        log.warning("%s is not used: it calibrates INT8 (%s)%s", option("calib"), switched_on("int8"),
                    f" and is what parity runs on without {option('images')}" if parity else "")
        calib = None
    if images is not None and not parity:  # as --calib above: decoded (a clip, a URL fetched) for nothing, unsaid
        log.warning("%s is not used: it names the pictures parity runs on, and parity is off", option("images"))
        images = None
    if reuse and calib is not None:  # said before the pictures are listed (a folder's, a clip decoded, a URL fetched)
        from pvt_deploy.io.sources import redact_url

        fp16_parity = want_half and parity and images is None  # the new FP16 file's parity runs on them
        _say_calib_unused(Path(str(model)), manifest, [f for f in flavours if f not in want_int8],
                          redact_url(os.fspath(calib)), want_int8=want_int8, fp16_parity=fp16_parity)
        if flavours and not want_int8 and not fp16_parity:
            calib = None  # the INT8 files are there, and no new file's parity runs on them
    calib_paths, calib_source = _image_paths(calib, calib_size or DEFAULT_CALIB_IMAGES, "calibration")
    if images is not None:
        parity_paths, parity_source = _image_paths(images, DEFAULT_PARITY_IMAGES, "parity")
    elif calib is not None:  # spread over them, as a video's frames are over the clip
        parity_paths, parity_source = spread(calib_paths, DEFAULT_PARITY_IMAGES), calib_source
    else:
        parity_paths, parity_source = _image_paths(None, None, "parity")

    if reuse:
        folder = Path(str(model))
        probe_writable(folder)  # a read-only export: say so before the variants are made
        folder = _extend(folder, manifest, half=half, flavours=flavours, want_half=want_half, want_int8=want_int8,
                         int8_cpu=int8_cpu, calib_paths=calib_paths, calib_source=calib_source, parity_paths=parity_paths,
                         parity_source=parity_source, parity=parity, tolerances=tolerances,
                         allow_parity_failure=allow_parity_failure, steps=steps, given=ignored,
                         builds=builds or finish is not None)
        if finish is not None:
            finish(folder)
        return folder

    with steps.phase("load"):
        loaded = _load(model, task=task, weights=weights, trust=trust_checkpoint, nms=nms, seg_output=seg_output,
                       url=model_url, names=names)
    if loaded.weights["random_init"]:
        log.warning("EXPORTING A RANDOMLY INITIALISED %s: outputs are meaningless; pass --weights FILE for a "
                    "usable model (manifest weights.random_init = true)", loaded.name)
    out = Path(out_dir) if out_dir is not None else Path("exports") / loaded.name
    with _replacing(out) as staging:
        _fresh(loaded, staging, imgsz=imgsz, dynamic=dynamic, batch=batch, min_size=min_size, max_size=max_size,
               opset=opset, half=half, flavours=flavours, int8_cpu=int8_cpu, calib_paths=calib_paths,
               calib_source=calib_source, parity_paths=parity_paths, parity_source=parity_source,
               exporter=exporter, simplify=simplify, parity=parity, tolerances=tolerances,
               allow_parity_failure=allow_parity_failure, steps=steps)
        if finish is not None:
            finish(staging)
    return out


@contextlib.contextmanager
def write_errors(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an :class:`OSError` of a refused write inside the block (a file system full, read-only, without
    permission: the user's environment) into a one-line :class:`InputError` naming ``folder``, which the
    CLI says with exit 2 (the library itself raises the ``OSError``, as Python code expects)."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        raise InputError(f"cannot write the export to {folder}: {e.strerror or e}{where}") from e


def _check_reuse(folder: Path, *, out_dir: Any, weights: Any, ignored: Mapping[str, Any], names: Any = None) -> None:
    """Extending an export folder reuses its model.onnx in place (whose metadata lists its class names, as
    its manifest does): refuse what that cannot honour (other weights, other ``names``), and
    say which graph options it ignores (``ignored``: by flag, as given), with the command that exports the
    folder again with them, or why no export of its model gives them (``--seg-output argmax`` of a classifier)."""
    if out_dir is not None and os.path.realpath(out_dir) != os.path.realpath(folder):
        raise InputError(f"-o {out_dir}: --model {folder} is an export folder, extended in place; drop -o, or "
                         "export from the model name to write a new folder")
    manifest = read_manifest(folder) if weights is not None or names is not None or ignored else {}
    if weights is not None:
        recorded = (manifest.get("weights") or {}).get("sha256")
        if isinstance(weights, (str, os.PathLike)):
            from pvt_deploy.models.checkpoints import resolve_weights

            weights = resolve_weights(weights, model=folder)  # a URL: its downloaded file, compared as a file given
        same = (isinstance(weights, (str, os.PathLike)) and Path(weights).is_file() and recorded is not None
                and sha256_file(weights) == recorded)
        if not same:
            raise InputError(f"--weights: --model {folder} is an export folder whose model.onnx is reused (made "
                             "from other weights); export from the model name to use these")
    if names is not None:
        from pvt_deploy.data import given_names

        recorded_names = manifest.get("classes") or []
        if given_names(names, len(recorded_names), str(folder)) != recorded_names:
            raise InputError(f"{option('names')}: --model {folder} is an export folder whose model.onnx is reused "
                             "(its metadata names other classes); export from the checkpoint to name them",
                             hint=f"infer and val take {option('names')} too, to rename them for one run")
    if ignored:
        why = out_of_reach(manifest, ignored)  # a command that would fail is no hint
        log.warning("%s: reusing its model.onnx; ignoring %s (%s)", folder, ", ".join(ignored),
                    f"{why}: no export of {manifest.get('model')} gives that" if why else
                    f"export from the model name to change them: {reexport_command(folder, manifest, ignored)}")


def _fresh(loaded: LoadedModel, out: Path, *, imgsz: Any, dynamic: bool, batch: int | None, min_size: int | None,
           max_size: int | None, opset: int | None, half: bool, flavours: list[str], int8_cpu: str,
           calib_paths: list[Picture], calib_source: str, parity_paths: list[Picture], parity_source: str,
           exporter: str, simplify: bool, parity: bool, tolerances: Mapping[str, Tolerance],
           allow_parity_failure: bool, steps: _Steps) -> Path:
    import torch

    from pvt_deploy.export import graph as g
    from pvt_deploy.export.calibration import frame_names, make_batches
    from pvt_deploy.export.precision import surely_calibrates
    from pvt_deploy.models import resolve_name
    from pvt_deploy.runtimes.torch import forward_bytes
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    module = loaded.module
    hw = parse_imgsz(imgsz, resolve_name(loaded.name).imgsz)
    lowest = DYNAMO_MIN_OPSET if exporter == "dynamo" else MIN_OPSET
    if opset is None:
        opset = lowest
    elif opset < lowest:  # asked for (the default is not): a file of another opset than asked is no detail
        log.warning("%s %d: the dynamo exporter writes opset %d and newer; writing opset %d (%s torchscript "
                    "writes %d)", option("opset"), opset, lowest, lowest, option("exporter"), opset)
        opset = lowest
    post = dict(module.postprocess)
    pre_nms_topk = post.get("pre_nms_topk")
    allowed = g.module_constants(module) | {int(v) for v in post.values() if isinstance(v, int)}
    if dynamic:
        max_batch = batch or DEFAULT_MAX_BATCH
        lo, hi = size_range = _size_range(min_size, max_size, hw, default_imgsz=imgsz is None)
        trace_hw = choose_trace_size(allowed, size_range, pre_nms_topk)
        trace_batch = 2 if exporter == "dynamo" else 1
        dynamic_rec: dict[str, list[int]] | None = {"batch": [1, max_batch], "height": [lo, hi], "width": [lo, hi]}
    else:
        max_batch = batch or 1
        size_range = (min(hw), max(hw))
        trace_hw, trace_batch, dynamic_rec = hw, max_batch, None
    calibrates = surely_calibrates(flavours, int8_cpu, task=loaded.task, depthwise=any(
        isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in module.modules()))
    static_batch = None if dynamic else max_batch
    runs = ["tracing a static graph"] if not dynamic else []
    runs += ["the parity gate"] * parity + ["INT8 calibration"] * calibrates
    if runs:  # the export runs the model at --imgsz itself: refused before the trace where that cannot fit
        _check_memory(module, 1 if dynamic else max_batch, hw, runs,
                      pictures=_preprocessed([calib_paths] * calibrates + [parity_paths] * parity, static_batch))
    gen = torch.Generator().manual_seed(0)
    example = torch.rand((trace_batch, 3, *trace_hw), generator=gen) * 255.0
    small = torch.rand((1, 3, 64, 64), generator=gen) * 255.0

    with steps.phase("trace"):
        proto = trace_to_onnx(module, example, exporter=exporter, dynamic=dynamic, opset=opset,
                              max_batch=max_batch, size_range=size_range)
    nodes_before = g.node_count(proto)
    if simplify:
        with steps.phase("simplify"):
            proto = g.simplify(proto)
            g.name_dims(proto, module_dim_names(module))  # onnxslim renames some of them
    nodes_after = g.node_count(proto)
    log.info("%s: traced with %s (opset %d) in %.1f s; %s", loaded.name, exporter, g.opset_of(proto),
             steps.seconds["trace"], node_counts(nodes_before, nodes_after, simplify))
    checks = _CheckSpec(list(module.input_names), list(module.output_names), dynamic,
                        trace_hw if dynamic else None, g.count_layernorm_modules(module, small), allowed,
                        pre_nms_topk)
    with steps.phase("check"):
        graph_record = checks.run(proto, FP32_FILE)
    inputs, outputs = g.io_spec(proto)
    manifest: dict[str, Any] = {
        "model": loaded.name, "backbone": loaded.backbone, "task": loaded.task, "classes": loaded.classes,
        **loaded.palette, "weights": loaded.weights, "inputs": inputs, "outputs": outputs,
        "preprocess": preprocess_spec(loaded.task, hw, dynamic=dynamic, mean=module.mean_values,
                                      std=module.std_values),
        "postprocess": post, "dynamic": dynamic_rec,
    }
    meta = essentials({"format_version": 1, **manifest})
    g.save_model(_with_metadata(proto, meta), out / FP32_FILE)

    pre = Preprocessor(manifest["preprocess"], dynamic=dynamic, dynamic_range=dynamic_rec)

    def calibration() -> list[Batch]:
        if not calibrates:  # a dynamic file whose plan calibrates a v1 detector's patch convs: checked as above
            _check_memory(module, 1 if dynamic else max_batch, hw, ["INT8 calibration"],
                          pictures=_preprocessed([calib_paths], static_batch))
        return make_batches(calib_paths, pre, batch=static_batch)

    variants = _make_variants(out, proto, meta, half=half, int8_flavours=flavours, int8_cpu=int8_cpu,
                              calib=calibration, calib_source=calib_source, calib_frames=frame_names(calib_paths),
                              checks=replace(checks, allowed=_variant_sizes(graph_record)), steps=steps)
    files = {FP32_FILE: file_entry(out / FP32_FILE, "fp32"), **variants.files}
    parity_reports: dict[str, Any] = {}
    failures: list[str] = []
    if parity:
        batches = make_batches(parity_paths, pre, batch=static_batch)
        parity_reports = _parity(torch_runner(module), "pytorch", out, files, batches, task=loaded.task, post=post,
                                 tolerances=tolerances, gate_agreement=not loaded.weights["random_init"],
                                 steps=steps, pictures=parity_paths, source=parity_source)
        failures = [f for f, r in parity_reports.items() if not r["passed"]]
        _speedups(variants.precision, parity_reports)
    parity_frames = frame_names(parity_paths) if parity else []  # a video's, by name (clip.mp4#frame=120)
    manifest.update({
        "files": files,
        "precision": variants.precision,
        "parity": parity_reports,
        "export": {"exporter": exporter, "opset": g.opset_of(proto), "nodes_before": nodes_before,
                   "nodes_after": nodes_after, "simplified": simplify, "imgsz": list(hw),
                   "trace_size": [trace_batch, 3, *trace_hw], "graph": graph_record,
                   "parity_images": parity_source if parity else None,
                   **({"parity_frames": parity_frames} if parity_frames else {}), "seconds": steps.seconds,
                   **({"pass_bytes": one_pass} if (one_pass := forward_bytes(module, static_batch or 1, *hw)) else {})},
        "versions": tool_versions("torch", "onnx", "onnxruntime", "onnxslim", "onnxscript", "numpy"),
    })
    return _finish(out, manifest, failures, allow_parity_failure, parity_reports)


def _check_memory(module: Any, batch: int, hw: tuple[int, int], runs: Sequence[str], *, pictures: int = 0) -> None:
    """Refuse a size at which the export's own runs of the model (``runs``: the static trace, parity, INT8
    calibration; on ``batch`` pictures of ``hw``) need more memory than this machine has free, as infer refuses it
    (:func:`~pvt_deploy.runtimes.torch.refuse_size`: the module's largest attention and the rest of its pass),
    with the ``pictures`` preprocessed at ``hw`` held beside it (calibration's or parity's, never both at once:
    :func:`_preprocessed`; float32 RGB: 12 bytes a pixel each; 64 calibration pictures at 4096x4096 are 12.9 GB).
    ``--imgsz 100000`` failed deep in NumPy (a traceback: "Unable to allocate 112. GiB"), 5000 in PyTorch ("you
    tried to allocate 155538739456 bytes"), or the kernel killed the export. Where parity alone runs at it,
    ``--no-parity`` is the way to keep the size."""
    from pvt_deploy.errors import ShapeError
    from pvt_deploy.runtimes.torch import refuse_size
    from pvt_deploy.utils import count_of
    from pvt_deploy.utils.cpu import available_memory

    way_out = ("--no-parity" if option("parity").startswith("--") else "parity=False") \
        if runs == ["the parity gate"] else None
    try:
        refuse_size(module, batch, *hw, available_memory,
                    held=(12 * pictures, f"the {count_of(pictures, 'picture')} it holds at once, preprocessed at "
                          "that size") if pictures else None)
    except ShapeError as e:
        raise ShapeError(f"{e.args[0]}; {' and '.join(runs)} run{'s' * (len(runs) == 1)} the model at that size",
                         hint=", or ".join(h for h in (e.hint, way_out) if h)) from None


def _check_extension_memory(folder: Path, manifest: Mapping[str, Any], runs: Sequence[str], pictures: int) -> None:
    """Refuse an extension whose runs (``runs``: calibration, parity, in ONNX Runtime at the export's size) need
    more memory than this machine has free, as :func:`_check_memory` refuses a fresh export's: the bytes of a
    pass that the export recorded (``export.pass_bytes``: PyTorch's estimate, near which ONNX Runtime's
    calibration session peaks) and the ``pictures`` preprocessed at that size. The PyTorch model is not built
    for it (2-27 s; torch is not otherwise imported here), so an export made before the figure was recorded is
    not checked."""
    from pvt_deploy.errors import ShapeError
    from pvt_deploy.utils import count_of, gigabytes
    from pvt_deploy.utils.cpu import available_memory

    one_pass = (manifest.get("export") or {}).get("pass_bytes")
    if not runs or not isinstance(one_pass, int):
        return
    h, w = manifest["preprocess"]["imgsz"]
    need = one_pass + 12 * pictures * h * w
    free = available_memory()
    if free is None or need <= free:
        return
    raise ShapeError(f"{folder}: its size {h}x{w} needs about {gigabytes(need)} for a pass of the model and the "
                     f"{count_of(pictures, 'picture')} it holds at once, preprocessed at that size, more than the "
                     f"{gigabytes(free)} free in this machine's memory; {' and '.join(runs)} "
                     f"run{'s' * (len(runs) == 1)} the model at that size",
                     hint=f"free some memory, or export the model again with a smaller {option('imgsz')}")


def _say_calib_unused(folder: Path, manifest: Mapping[str, Any], flavours: list[str], calib_source: str, *,
                      want_int8: Sequence[str], fp16_parity: bool) -> None:
    """Warn that ``--calib`` (``calib_source``, where one was given) calibrates none of the INT8 files of
    ``flavours`` (already there): those calibrated (static, or dynamic with convs quantized static: PVT v2's;
    a dynamic file of v1 reads no pictures, and made again would not either) were calibrated on the pictures
    the manifest names, and stay so. The pictures may still serve the files made now (the INT8 files of
    ``want_int8``, the FP16 file's parity where ``fp16_parity``): then the warning names those, rather than
    saying that they are not used."""
    from pvt_deploy.export.precision import INT8_FILES

    int8 = (manifest.get("precision") or {}).get("int8") or {}
    kept = [INT8_FILES[f] for f in flavours if (rec := int8.get(f) or {}).get("method") != "dynamic"
            or "static_depthwise" in rec or "static_patch_convs" in rec]
    if not kept or calib_source == BUNDLED_IMAGES:
        return
    before = str(int8.get("calibration", {}).get("source") or "?")
    with contextlib.suppress(OSError, ValueError):  # the same pictures, named another way: nothing to say
        if before == calib_source or Path(before).resolve() == Path(calib_source).resolve():
            return
    if want_int8:
        use = f"is used only for {', '.join([INT8_FILES[f] for f in want_int8] + [FP16_FILE] * fp16_parity)}"
    elif fp16_parity:
        use = f"serves only the parity of {FP16_FILE}"
    else:
        use = "is not used"
    log.warning("%s: --calib %s %s: %s %s already there, calibrated on %s (delete %s to calibrate on the pictures "
                "given)", folder, calib_source, use, ", ".join(kept), "is" if len(kept) == 1 else "are", before,
                "it" if len(kept) == 1 else "them")


def _wanted_variants(folder: Path, manifest: dict[str, Any], *, half: bool, flavours: list[str],
                     int8_cpu: str) -> tuple[bool, list[str]]:
    """What an extension of ``folder`` makes: the FP16 file (where ``half``) and the INT8 ``flavours`` that are
    not there as the manifest lists them with their parity passed or not run (see :func:`_extend`)."""
    from pvt_deploy.export.precision import INT8_FILES

    def present(name: str) -> bool:
        if name not in manifest.get("files", {}) or not (folder / name).is_file():
            return False
        if manifest.get("parity", {}).get(name, {}).get("passed") is False:
            return False
        try:
            with reading(folder / name):  # a variant the disk fails to read is made again, as a changed one is
                verify_file(folder, manifest, name)
        except InputError:
            return False
        return True

    # a CPU flavour made by another method than the one asked for by name is made again
    cpu_method = cpu_int8_record(manifest).get("method")
    other_method = int8_cpu != "auto" and cpu_method is not None and cpu_method != int8_cpu
    want_half = half and not present(FP16_FILE)
    return want_half, [f for f in flavours if not present(INT8_FILES[f]) or (f == "cpu" and other_method)]


def _extend(folder: Path, manifest: dict[str, Any], *, half: bool, flavours: list[str], want_half: bool,
            want_int8: list[str], int8_cpu: str, calib_paths: list[Picture],
            calib_source: str, parity_paths: list[Picture], parity_source: str, parity: bool,
            tolerances: Mapping[str, Tolerance], allow_parity_failure: bool, steps: _Steps,
            given: Mapping[str, Any] | None = None, builds: bool = False) -> Path:
    """Add FP16/INT8 variants to an existing artifact, reusing its ``model.onnx`` (``manifest``: the folder's;
    ``want_half``, ``want_int8``: what :func:`_wanted_variants` says it makes of the ``half`` and ``flavours``
    asked for; ``given``: the graph options asked for, which it ignores; the command that exports the folder
    again carries them; ``builds``: an engine or a Triton model is made from the folder next, so no variant is
    no mistake).

    The parity reference is then the FP32 graph in ONNX Runtime (the PyTorch model is not rebuilt).
    Variants already listed in the manifest with a matching sha256 are kept, unless their parity gate
    failed (a file kept with ``--allow-parity-failure`` or marked failed): those are made and gated
    again, as is a CPU INT8 file made by another method than ``int8_cpu`` names (not ``auto``).
    """
    import onnx

    from pvt_deploy.export.calibration import frame_names, make_batches
    from pvt_deploy.export.graph import get_metadata
    from pvt_deploy.export.precision import INT8_FILES, depthwise_convs, surely_calibrates
    from pvt_deploy.tasks.preprocess import Preprocessor

    if not (folder / FP32_FILE).is_file():
        raise InputError(f"{folder}: no {FP32_FILE} to reuse", hint=reexport_command(folder, manifest))
    with reading(folder / FP32_FILE):
        verify_file(folder, manifest, FP32_FILE)

    if not want_half and not want_int8:  # said: a bare `export --model exports/NAME` did nothing, in silence
        asked = [FP16_FILE] * half + [INT8_FILES[f] for f in flavours]
        if asked:
            log.info("%s: %s already there (parity passed or not run): nothing to add", folder, ", ".join(asked))
        elif not builds:  # graph options that no export gives are left out (_check_reuse said why)
            log.warning("%s is an export folder, extended in place: nothing to add without %s or %s; to export it "
                        "again, give the model name: %s", folder, switched_on("half"), switched_on("int8"),
                        reexport_command(folder, manifest, None if out_of_reach(manifest, given or {}) else given))
        return folder
    with reading(folder / FP32_FILE):
        fp32 = onnx.load(str(folder / FP32_FILE))
    text = get_metadata(fp32, ONNX_METADATA_KEY)
    meta = {**essentials(manifest), **json.loads(text)} if text else essentials(manifest)
    dynamic_rec = manifest.get("dynamic")
    dynamic = dynamic_rec is not None
    shape = manifest["inputs"][0]["shape"]
    static_batch = None if dynamic else (shape[0] if isinstance(shape[0], int) else 1)
    pre = Preprocessor(manifest["preprocess"], dynamic=dynamic, dynamic_range=dynamic_rec)
    graph = manifest.get("export", {}).get("graph", {})
    trace = manifest.get("export", {}).get("trace_size")
    checks = _CheckSpec([i["name"] for i in manifest["inputs"]], [o["name"] for o in manifest["outputs"]],
                        dynamic, tuple(trace[2:]) if dynamic and trace else None,
                        graph.get("layernorm_nodes"), _variant_sizes(graph),
                        manifest.get("postprocess", {}).get("pre_nms_topk"))
    calibrates = surely_calibrates(want_int8, int8_cpu, task=manifest["task"], depthwise=bool(depthwise_convs(fp32)))
    _check_extension_memory(folder, manifest, ["INT8 calibration"] * calibrates + ["the parity gate"] * parity,
                            _preprocessed([calib_paths] * calibrates + [parity_paths] * parity, static_batch))

    def calibration() -> list[Batch]:
        if not calibrates:  # a dynamic file whose plan calibrates a v1 detector's patch convs: checked as above
            _check_extension_memory(folder, manifest, ["INT8 calibration"], _preprocessed([calib_paths], static_batch))
        return make_batches(calib_paths, pre, batch=static_batch)

    # The variants are made and gated in a hidden folder inside the export and moved in with the new
    # manifest when complete, so that until then every file is as it was, even after a SIGKILL: a
    # variant made again used to be moved aside first, and a kill then left the manifest listing a file
    # that was gone (with the 240 MB of INT8 scratch files left in the folder).
    with scratch(folder, _EXTENSION_PREFIX) as staging:
        variants = _make_variants(staging, fp32, meta, half=want_half, int8_flavours=want_int8, int8_cpu=int8_cpu,
                                  calib=calibration, calib_source=calib_source,
                                  calib_frames=frame_names(calib_paths), checks=checks, steps=steps)
        reports = _extend_parity(staging, manifest, variants, parity_paths, parity_source, pre, static_batch,
                                 parity=parity, tolerances=tolerances, steps=steps, reference=folder / FP32_FILE)
        _commit_extension(folder, staging, manifest, variants, reports if parity else None, steps.seconds)
    _gate([f for f, r in reports.items() if not r["passed"]], allow_parity_failure, reports)
    return folder


_EXTENSION_PREFIX = ".pvt-ext-"  # a hidden scratch folder in the export folder (swap.scratch)


def _commit_extension(folder: Path, staging: Path, started: Mapping[str, Any], variants: _Variants,
                      reports: Mapping[str, Any] | None, seconds: Mapping[str, float]) -> None:
    """Move the variants made in ``staging`` into ``folder`` and list them in its manifest, as one step:
    Ctrl-C waits for it, and a failure in it (a full disk writing the manifest) puts every file back.
    The manifest is read again here, under the folder's lock, so that another extension's files that
    came meanwhile stay listed; a ``model.onnx`` changed since ``started`` was read (the folder
    re-exported meanwhile) adds nothing. ``reports``: the parity reports, None when parity did not run
    (then the replaced files' reports go)."""
    from pvt_deploy.runtimes.ort_session import CACHE_DIRNAME, adopt_cached_graphs
    from pvt_deploy.utils.signals import interrupts_deferred

    with interrupts_deferred(), contextlib.ExitStack() as turn:
        try:
            turn.enter_context(folder_lock(folder))
        except OSError as e:
            raise PvtDeployError(f"{folder}: cannot lock it to add the variants ({e.strerror or e}); nothing was "
                                 "added") from e
        manifest = read_manifest(folder)
        if not staging.is_dir() or ((manifest.get("files") or {}).get(FP32_FILE) or {}).get("sha256") != \
                ((started.get("files") or {}).get(FP32_FILE) or {}).get("sha256"):  # the folder was replaced
            raise PvtDeployError(f"{folder}: {FP32_FILE} changed while the variants were made from it (exported "
                                 "again meanwhile?); nothing was added", hint="run the command again")
        old = staging / ".replaced"
        old.mkdir()
        moved: list[str] = []
        try:
            for name in variants.files:
                if os.path.lexists(folder / name):
                    os.replace(folder / name, old / name)
                moved.append(name)
                os.replace(staging / name, folder / name)
            manifest.setdefault("files", {}).update(variants.files)
            precision = manifest.setdefault("precision", {})
            for key, rec in variants.precision.items():
                if key == "int8":
                    precision.setdefault("int8", {}).update(rec)
                else:
                    precision[key] = rec
            parity = manifest.setdefault("parity", {})
            if reports is None:  # a report of the file a variant replaces says nothing about the new one
                for name in variants.files:
                    parity.pop(name, None)
            else:
                parity.update(reports)
            manifest.setdefault("export", {}).setdefault("seconds", {}).update(seconds)
            write_manifest(folder, manifest)
        except BaseException:
            for name in reversed(moved):
                with contextlib.suppress(OSError):
                    if (folder / name).is_file() and not (staging / name).exists():
                        os.replace(folder / name, staging / name)
                    if (old / name).exists():
                        os.replace(old / name, folder / name)
            raise
    adopt_cached_graphs(staging / CACHE_DIRNAME, folder / CACHE_DIRNAME)  # what the parity gate built


def _extend_parity(folder: Path, manifest: dict[str, Any], variants: _Variants, parity_paths: list[Picture],
                   parity_source: str, pre: Any, static_batch: int | None, *, parity: bool,
                   tolerances: Mapping[str, Tolerance],
                   steps: _Steps, reference: Path) -> dict[str, Any]:
    """Gate the added variants (in ``folder``) against the export's FP32 graph ``reference`` in ONNX Runtime."""
    from pvt_deploy.export.calibration import make_batches

    if not parity:
        return {}
    batches = make_batches(parity_paths, pre, batch=static_batch)
    random_init = bool(manifest.get("weights", {}).get("random_init", True))
    return _parity(ort_runner(reference), f"{FP32_FILE} (onnxruntime)", folder, variants.files,
                   batches, task=manifest["task"], post=manifest.get("postprocess", {}),
                   tolerances=tolerances, gate_agreement=not random_init, steps=steps, pictures=parity_paths,
                   source=parity_source)
