"""Loading official, mmdet/mmseg and timm checkpoints into pvt-deploy models.

One mapping function (:func:`to_official_names`) turns any supported naming into the official one
(which is also this package's module layout), then :func:`load_weights` matches it against the model:

* official classification checkpoints (flat keys, or wrapped in ``{"model": ...}``);
* backbone-only checkpoints into a detector/segmenter — the official way to initialise them: keys
  get the ``backbone.`` prefix, the classifier-only ``cls_token``/``norm``/``head`` are reported as
  ignored, and the neck/head stay randomly initialised (reported loudly);
* mmdet RetinaNet / mmseg Semantic FPN files (``{"state_dict": ..., "meta": ...}``), whose class names
  (mmcv's ``meta["CLASSES"]``, mmengine's ``meta["dataset_meta"]["classes"]``) name the loaded model's
  classes (:func:`meta_classes`), and whose colours (``meta["PALETTE"]``, ``meta["dataset_meta"]["palette"]``)
  colour a segmenter's classes (:func:`meta_palette`);
* timm-named PVT v2 checkpoints (``patch_embed.``, ``stages.{s}.downsample/blocks/norm``, ``mlp.dwconv``).

Any of them as a ``torch.save`` file (a zip archive, or a bare pickle for very old ones) or a
``.safetensors`` file (timm's format on the Hugging Face hub), told apart by their first bytes.

Anything else fails with a :class:`CheckpointError` listing missing, unexpected and mis-shaped keys.
A checkpoint may be an ``http(s)://`` URL: :func:`resolve_weights` downloads it once into the per-user cache
(:mod:`pvt_deploy.utils.download`) and it is read as that file. Files are read with ``weights_only=True``; a file that needs arbitrary unpickling is refused unless
the caller passes ``trust=True``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pvt_deploy.errors import CheckpointError, InputError

log = logging.getLogger(__name__)

HEAD_PREFIXES = ("backbone.", "neck.", "bbox_head.", "decode_head.")
CLASSIFIER_ONLY = re.compile(r"^(cls_token|norm\.(weight|bias)|head\.(weight|bias))$")
IGNORABLE = re.compile(r"(^|\.)num_batches_tracked$|^auxiliary_head\.")
SHOW = 5  # how many keys of each kind an error message lists


@dataclass
class LoadReport:
    """What :func:`load_weights` did. ``random`` lists model keys left randomly initialised."""

    layout: str  # "classifier", "backbone", "mmdet", "mmseg", "timm", "pvt-deploy"
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)
    random: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors loaded ({self.layout} layout)"]
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)}: {_first(self.ignored)}")
        if self.random:
            parts.append(f"RANDOMLY INITIALISED {len(self.random)}: {_first(self.random)}")
        return "; ".join(parts)


def _first(keys: list[str], n: int = SHOW) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def resolve_weights(weights: str | os.PathLike[str], *, model: Any = None,
                    task: str | None = None) -> str | os.PathLike[str]:
    """The local file of a checkpoint: ``"official"`` is the URL of ``model``'s official checkpoint
    (:func:`pvt_deploy.models.zoo.official_weights`); an ``http(s)://`` URL is downloaded into the per-user
    cache (once: :func:`pvt_deploy.utils.download.fetch`) and its cached file returned; a path is returned as
    given."""
    from pvt_deploy.models.zoo import official_weights
    from pvt_deploy.utils.download import fetch, is_url

    weights = official_weights(weights, model, task)
    if is_url(weights):
        return fetch(weights)
    if isinstance(weights, str) and _OTHER_URL.match(weights):  # ftp://, s3://, hf://: no file of that name
        raise InputError(f"weights {weights}: only http(s):// URLs are downloaded",
                         hint="download it yourself and pass the file")
    return weights


_OTHER_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def require_checkpoint_file(weights: str | os.PathLike[str], *, model: Any = None,
                            task: str | None = None) -> str | os.PathLike[str]:
    """Before any work: the checkpoint's local file (a URL, ``"official"`` for ``model``, downloaded:
    :func:`resolve_weights`); a path that names no file says whether it is a folder or not there."""
    weights = resolve_weights(weights, model=model, task=task)
    if not Path(weights).is_file():
        what = ("is a folder, not a checkpoint file" if Path(weights).is_dir() else
                # a named pipe (--weights <(curl ...)), socket or device: torch.load reads a file twice
                "is not a regular file (a pipe, socket or device): give the checkpoint file"
                if os.path.exists(weights) else "does not exist")
        raise InputError(f"weights {os.fspath(weights)} {what}")
    return weights


def _refuse_other_kind(p: Path) -> None:
    """A file of a kind pvt-deploy knows by its suffix (a graph, an engine, a picture, a video), given where a
    checkpoint goes, is named as what it is rather than as a damaged checkpoint."""
    from pvt_deploy.io.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    from pvt_deploy.utils import shell_quote

    suffix = p.suffix.lower()
    kind = {".onnx": "an ONNX graph", ".engine": "a TensorRT engine", ".plan": "a TensorRT engine"}.get(suffix)
    if kind is not None:
        raise CheckpointError(f"{p} is {kind}, not a PyTorch checkpoint", hint=f"it runs on its own: --model {shell_quote(str(p))}")
    if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
        raise CheckpointError(f"{p} is {'an image' if suffix in IMAGE_SUFFIXES else 'a video'}, not a PyTorch "
                              "checkpoint")


def is_safetensors(head: bytes) -> bool:
    """Whether a file's first bytes (at least 9) open a safetensors file: the header's length as a little-endian
    64-bit number, then the header, a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= _SAFETENSORS_HEADER_MAX


_SAFETENSORS_HEADER_MAX = 100_000_000  # the format's own limit on the JSON header


def holds_tensors_only(path: str | os.PathLike[str]) -> bool:
    """Whether the checkpoint file at ``path`` is a safetensors file: tensors only, nothing to unpickle, so
    that it never needs ``trust`` (which is then not recorded, nor asked for again)."""
    try:
        with open(path, "rb") as f:
            return is_safetensors(f.read(9))
    except OSError:
        return False


def safetensors_length(path: str | os.PathLike[str]) -> int | None:
    """The length of the safetensors file at ``path`` as its header gives it: 8 bytes, the header, then the
    tensors' data, which ends at the largest ``data_offsets`` end (the format leaves no holes and no tail).
    None where the header is cut short or is not the format's."""
    import json

    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        raw = f.read(size) if 2 <= size <= _SAFETENSORS_HEADER_MAX else b""
    try:
        header = json.loads(raw) if len(raw) == size else None
    except ValueError:  # JSON, or its text's UTF-8
        return None
    if not isinstance(header, dict):
        return None
    end = 0
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if name == "__metadata__":
            continue
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            return None
        end = max(end, offsets[1])
    return 8 + size + end


_ZIP = b"PK\x03\x04"  # torch.save's zip archive: its first local file header
_PICKLE = b"\x80"  # a bare pickle (very old torch.save files), protocol 2 or later


def is_checkpoint_head(head: bytes) -> bool:
    """Whether a file's first bytes (at least 9) open a checkpoint :func:`read_checkpoint` reads: a
    ``torch.save`` zip archive or bare pickle, or a safetensors file. What a download is checked by before
    the rest of it is fetched (:mod:`pvt_deploy.utils.download`)."""
    return head.startswith((_ZIP, _PICKLE)) or is_safetensors(head)


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as e:  # a dependency: an environment that lost it
        raise CheckpointError(f"{p} is a safetensors file, and the safetensors package is not installed",
                              hint="pip install safetensors") from e
    try:
        return load_file(p, device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, ValueError
        _refuse_unreadable(p, e)
        raise CheckpointError(f"{p}: corrupt or truncated safetensors checkpoint ({_one_line(e)})") from e


def read_checkpoint(path: str | os.PathLike[str], *, trust: bool = False) -> StateDict:
    """Read a checkpoint file (or an ``http(s)://`` URL's, downloaded once: :func:`resolve_weights`) and
    return its (unwrapped) state dict, with the class names and colours it records (:func:`meta_classes`,
    :func:`meta_palette`)."""
    p = Path(resolve_weights(path))
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        with open(p, "rb") as f:
            head = f.read(9)
    except OSError as e:
        _refuse_unreadable(p, e)
        raise
    if is_safetensors(head):  # tensors only, no pickle: nothing for weights_only to guard
        return unwrap_state_dict(_read_safetensors(p), str(p))
    # torch.save writes a zip archive; very old files are a bare pickle (protocol 2+ starts with 0x80).
    if not zipfile.is_zipfile(p) and not head.startswith(_PICKLE):
        _refuse_other_kind(p)
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint (neither a PyTorch zip archive nor a pickle)")
    if not head.startswith(_PICKLE):
        _check_crcs(p)
    try:
        # the open file, not its path: torch.load reads a path ending in .safetensors as safetensors, whatever
        # its bytes (a torch.save file so named failed in a traceback); these are a torch.save file's
        with open(p, "rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if trust:
            raise CheckpointError(f"{p}: not a readable PyTorch checkpoint ({_one_line(e)})") from e
        # torch's first line says "you have two options" and not what the file holds; its unpickler names it
        held = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        why = f"it holds {held.group(1)}, not only tensors" if held else f"weights_only load failed: {_one_line(e)}"
        raise CheckpointError(
            f"{p}: refusing to unpickle arbitrary objects from this checkpoint ({why})",
            hint="pass --trust-checkpoint (trust=True in Python) only if you trust its source") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        _refuse_unreadable(p, e)
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({_one_line(e)})") from e
    except (ImportError, AttributeError) as e:  # trusted: objects of code that is not importable here
        raise CheckpointError(f"{p}: cannot unpickle it here ({_one_line(e)}): it holds objects of code that "
                              "is not importable, not just tensors",
                              hint="save the weights alone where that code runs: "
                                   "torch.save(model.state_dict(), FILE)") from e
    return unwrap_state_dict(obj, str(p))


def _check_crcs(p: Path) -> None:
    """Refuse a zip checkpoint whose bytes changed after ``torch.save`` (which records a CRC per
    member and never checks them when loading): damaged tensor data loads as wrong weights without a
    word, a damaged pickle fails as if it held unsafe objects. Reads the file once (~1 GB/s)."""
    try:
        with zipfile.ZipFile(p) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error) as e:
        _refuse_unreadable(p, e)
        raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({_one_line(e)})") from e
    if damaged is not None:
        raise CheckpointError(f"{p}: corrupt checkpoint ({damaged} fails its CRC check)",
                              hint="copy or download it again")


def _refuse_unreadable(p: Path, e: BaseException) -> None:
    """A read of the checkpoint that the system failed (a failing disk or network mount: EIO, ESTALE) is said as
    that read, not as a damaged file, nor (inside an export) as the export's write."""
    if isinstance(e, OSError) and e.errno is not None:
        raise CheckpointError(f"cannot read the checkpoint {p}: {e.strerror or e}") from e


def _one_line(e: BaseException) -> str:
    """The first line of an error, without the terminal colour codes torch.load puts in its own."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


class StateDict(dict[str, torch.Tensor]):
    """A checkpoint's tensors, with the class names and colours its training framework recorded beside them
    (``classes``: :func:`meta_classes`, ``palette``: :func:`meta_palette`; None where it records none)."""

    classes: tuple[str, ...] | None = None
    palette: Any = None


def _meta_field(obj: Any, mmcv: str, mmengine: str) -> Any:
    """``meta[mmcv]`` (mmcv: mmdet 2.x, mmseg 0.x) or ``meta["dataset_meta"][mmengine]`` (mmengine: mmdet 3.x,
    mmseg 1.x) of a checkpoint; None where it has none."""
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    dataset = meta.get("dataset_meta")
    return dataset.get(mmengine) if isinstance(dataset, Mapping) else meta.get(mmcv)


def meta_classes(obj: Any) -> tuple[str, ...] | None:
    """The class names an mmdet/mmseg checkpoint records in its ``meta``: ``meta["CLASSES"]`` (mmcv: mmdet
    2.x, mmseg 0.x) or ``meta["dataset_meta"]["classes"]`` (mmengine: mmdet 3.x, mmseg 1.x), without the
    spaces around them (mmseg's ADE20K writes ``'bed '``, the zoo's ``bed``), as ``--names`` takes them. None
    where there are none, or they are not a list of strings, or one is empty."""
    names = _meta_field(obj, "CLASSES", "classes")
    if isinstance(names, str):  # mmcv wrote a one-class dataset's name bare at times
        names = [names]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        return None
    return tuple(n.strip() for n in names)


def meta_palette(obj: Any) -> Any:
    """The class colours an mmseg (or mmdet) checkpoint records in its ``meta``, as recorded: ``meta["PALETTE"]``
    (mmcv) or ``meta["dataset_meta"]["palette"]`` (mmengine), ``[[r, g, b], ...]`` one a class; None where there
    are none. Checked against the model they colour by :func:`load_weights` (:func:`_own_palette`)."""
    return _meta_field(obj, "PALETTE", "palette")


def unwrap_state_dict(obj: Any, where: str = "checkpoint") -> StateDict:
    """Accept a bare state dict or one wrapped as ``state_dict`` (mmcv), ``model`` (DeiT/PVT
    training) or ``module``, or a module (a whole pickled model, also under those keys); strip a DDP
    ``module.`` prefix. The class names of the checkpoint's ``meta`` (:func:`meta_classes`), or of the
    :class:`StateDict` given, come along, with its colours (:func:`meta_palette`)."""
    classes = obj.classes if isinstance(obj, StateDict) else meta_classes(obj)
    palette = obj.palette if isinstance(obj, StateDict) else meta_palette(obj)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], (Mapping, nn.Module)):
            obj = obj[key].state_dict() if isinstance(obj[key], nn.Module) else obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{where}: does not contain a state dict")
    out = StateDict()
    out.classes, out.palette = classes, palette
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        k = str(k)
        out[k[len("module."):] if k.startswith("module.") else k] = v
    if not out:
        raise CheckpointError(f"{where}: state dict holds no tensors")
    return out


def is_timm_layout(sd: Mapping[str, Any]) -> bool:
    return any(k.startswith(("stages.", "patch_embed.")) for k in sd)


def _timm_key_to_official(k: str) -> str:
    k = re.sub(r"^patch_embed\.", "patch_embed1.", k)
    k = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"patch_embed{int(m[1]) + 1}.", k)
    k = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}.", k)
    k = re.sub(r"^stages\.(\d+)\.norm\.", lambda m: f"norm{int(m[1]) + 1}.", k)
    return re.sub(r"\.mlp\.dwconv\.(weight|bias)$", r".mlp.dwconv.dwconv.\1", k)


def to_official_names(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Rename any supported layout to the official one; returns (state dict, layout name)."""
    if is_timm_layout(sd):
        return {_timm_key_to_official(k): v for k, v in sd.items()}, "timm"
    if any(k.startswith("decode_head.") for k in sd):
        return dict(sd), "mmseg"
    if any(k.startswith("bbox_head.") for k in sd):
        return dict(sd), "mmdet"
    if any(k.startswith("backbone.") for k in sd):
        return dict(sd), "pvt-deploy"
    if any(k.startswith("head.") for k in sd):
        return dict(sd), "classifier"
    return dict(sd), "backbone"


def _fit_to_model(sd: dict[str, torch.Tensor], model: nn.Module, layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Place keys where ``model`` expects them; return (state dict, ignored keys)."""
    has_backbone = hasattr(model, "backbone")
    ignored: list[str] = [k for k in sd if IGNORABLE.search(k)]
    sd = {k: v for k, v in sd.items() if not IGNORABLE.search(k)}
    if not has_backbone and getattr(model, "num_classes", 1) == 0:
        # A bare backbone (task "features"): take the backbone part of any checkpoint.
        if any(k.startswith("backbone.") for k in sd):
            ignored += [k for k in sd if not k.startswith("backbone.")]
            sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
        ignored += [k for k in sd if CLASSIFIER_ONLY.match(k)]
        return {k: v for k, v in sd.items() if not CLASSIFIER_ONLY.match(k)}, ignored
    if has_backbone and not any(k.startswith(HEAD_PREFIXES) for k in sd):
        # A classification/backbone checkpoint initialising a detector or segmenter.
        ignored += [k for k in sd if CLASSIFIER_ONLY.match(k)]
        sd = {f"backbone.{k}": v for k, v in sd.items() if not CLASSIFIER_ONLY.match(k)}
    return sd, ignored


def load_weights(model: nn.Module, source: str | os.PathLike[str] | Mapping[str, torch.Tensor], *,
                 trust: bool = False, where: str | None = None) -> LoadReport:
    """Load ``source`` (a path or an in-memory state dict) into ``model``; see the module docstring.
    ``where`` names an in-memory state dict in messages (the file it was read from).

    Raises :class:`CheckpointError` listing missing, unexpected and mis-shaped keys when the
    checkpoint does not fit. Keys the checkpoint legitimately lacks (a detector's neck/head when
    initialising from a backbone checkpoint) are reported in ``LoadReport.random`` and logged.
    """
    if isinstance(source, (str, os.PathLike)):
        read = read_checkpoint(source, trust=trust)
        where = str(source)
    else:
        where = where or "state dict"
        read = unwrap_state_dict(source, where)
    classes, palette = read.classes, read.palette
    sd, layout = to_official_names(read)
    sd, ignored = _fit_to_model(sd, model, layout)

    target = model.state_dict()
    unexpected = [k for k in sd if k not in target]
    mis_shaped = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in sd if k in target and sd[k].shape != target[k].shape]
    # a float weight stored as integers, booleans or complex numbers (a quantized or foreign file) would be
    # cast by the copy below into other numbers, silently (complex: with a warning)
    mis_typed = [f"{k}: checkpoint {_dtype(sd[k])} vs model {_dtype(target[k])}" for k in sd
                 if k in target and target[k].is_floating_point() and not sd[k].is_floating_point()]
    missing = [k for k in target if k not in sd and not k.endswith("num_batches_tracked")]
    random_ok: list[str] = []
    if layout in BACKBONE_INIT and hasattr(model, "backbone"):
        # Backbone init: only the backbone must be complete; neck/head stay random.
        random_ok = [k for k in missing if not k.startswith("backbone.")]
        missing = [k for k in missing if k.startswith("backbone.")]
    if missing or unexpected or mis_shaped or mis_typed:
        raise CheckpointError(_mismatch_message(where, model, layout, missing, unexpected, mis_shaped, mis_typed))
    # a diverged training run's file, or one damaged inside a tensor: every output would be NaN, which infer
    # wrote as probabilities and scores and the export's parity gate blamed on the graph ("non-finite values")
    non_finite = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise CheckpointError(f"{where}: {len(non_finite)} tensor(s) hold NaN or infinite values "
                              f"[{_first(non_finite)}]: a diverged or damaged checkpoint")

    with torch.no_grad():
        for k, v in sd.items():
            target[k].copy_(v.to(target[k].dtype))
    report = LoadReport(layout=layout, loaded=len(sd), ignored=ignored, random=random_ok)
    log.info("%s: %s", where, report.summary())
    head = not random_ok and not (hasattr(model, "backbone") and layout in BACKBONE_INIT)  # filled by the file
    model.class_names = _own_classes(model, classes, where) if head else None  # type: ignore[assignment]
    model.class_palette = _own_palette(model, palette, where) if head else None  # type: ignore[assignment]
    if random_ok:
        log.warning("%s holds only backbone weights: %d neck/head tensors stay RANDOMLY INITIALISED",
                    where, len(random_ok))
    return report


BACKBONE_INIT = ("backbone", "classifier", "timm")  # layouts that only initialise a detector's/segmenter's backbone


def _own_classes(model: nn.Module, classes: tuple[str, ...] | None, where: str) -> tuple[str, ...] | None:
    """The class names a checkpoint records, for the ``model`` whose head it filled: ``model.class_names``,
    which its manifest lists. None where it records none, or ``model`` has no classes (a bare backbone);
    also where its head has another number of classes, which is said."""
    n = getattr(model, "num_classes", 0)
    if classes is None or not isinstance(n, int) or n <= 0:
        return None
    if len(classes) != n:
        log.warning("%s: its meta names %d classes, but its head has %d: they are numbered instead", where,
                    len(classes), n)
        return None
    return classes


def _own_palette(model: nn.Module, palette: Any, where: str) -> list[list[int]] | None:
    """The class colours a checkpoint records (:func:`meta_palette`), for the segmenter whose head it filled:
    ``model.class_palette``, which its manifest lists (``palette``) and its overlays are drawn with. None where
    it records none, or ``model`` is no segmenter (a detector's boxes keep pvt-deploy's colours); also where they
    are not ``[r, g, b]`` of 0..255 or not one a class of its head, which is said (pvt-deploy's colours then)."""
    n = getattr(model, "num_classes", 0)
    if palette is None or not hasattr(model, "decode_head") or not isinstance(n, int) or n <= 0:
        return None
    if not (isinstance(palette, (list, tuple)) and all(
            isinstance(c, (list, tuple)) and len(c) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c) for c in palette)):
        log.warning("%s: its meta palette is not a list of [r, g, b] colours of 0..255: pvt-deploy's colours are "
                    "used", where)
        return None
    if len(palette) != n:
        log.warning("%s: its meta palette has %d colours, but its head has %d classes: pvt-deploy's colours are "
                    "used", where, len(palette), n)
        return None
    return [[int(v) for v in c] for c in palette]


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _mismatch_message(where: str, model: nn.Module, layout: str, missing: list[str],
                      unexpected: list[str], mis_shaped: list[str], mis_typed: list[str]) -> str:
    name = getattr(model, "zoo_name", type(model).__name__)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing [{_first(missing)}]")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected [{_first(unexpected)}]")
    if mis_shaped:
        parts.append(f"{len(mis_shaped)} mis-shaped [{_first(mis_shaped, 3)}]")
    if mis_typed:
        parts.append(f"{len(mis_typed)} not floating point [{_first(mis_typed, 3)}]")
    return f"{where} ({layout} layout) does not fit {name}: " + "; ".join(parts)


# --- Architecture inference: which zoo backbone and task a state dict belongs to ---------------------

class UnknownVariantError(CheckpointError):
    """A whole PVT checkpoint whose depths and widths are those of no zoo variant: no zoo model loads it."""


def infer_architecture(sd: Mapping[str, torch.Tensor]) -> tuple[str, str | None, int | None]:
    """Return ``(backbone_name, task or None, num_classes or None)`` for a state dict in any
    supported layout, by matching depths, widths and layer shapes against the known configs."""
    from pvt_deploy.models import pvt, pvt_v2

    sd, layout = to_official_names(sd)
    bb = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")} or sd
    depths = []
    for i in range(1, 5):
        idx = {int(m[1]) for k in bb if (m := re.match(rf"block{i}\.(\d+)\.", k))}
        depths.append(max(idx) + 1 if idx else 0)
    if "patch_embed1.proj.weight" not in bb and not any(depths):
        raise CheckpointError("checkpoint is not a PVT model (no patch_embed1/block weights found)")
    absent = [f"patch_embed{i}.*" for i in range(1, 5) if f"patch_embed{i}.proj.weight" not in bb]
    absent += [f"block{i}.*" for i, d in enumerate(depths, 1) if d == 0]
    if absent:
        raise CheckpointError(f"checkpoint is an incomplete PVT model: no {', '.join(absent)} weights "
                              "(truncated or cut down)",
                              hint="--model NAME --weights FILE lists every missing key")
    dims = tuple(int(bb[f"patch_embed{i}.proj.weight"].shape[0]) for i in range(1, 5))
    v2 = any(".mlp.dwconv." in k for k in bb)
    linear = v2 and tuple(bb.get("block1.0.attn.sr.weight", torch.empty(0, 0, 0, 0)).shape[-2:]) == (1, 1)
    hidden4 = bb.get("block4.0.mlp.fc1.weight")
    mlp4 = hidden4.shape[0] / hidden4.shape[1] if hidden4 is not None else None
    candidates = pvt_v2.CONFIGS if v2 else pvt.CONFIGS
    name = None
    for n, cfg in candidates.items():
        if (tuple(cfg.depths) == tuple(depths) and tuple(cfg.embed_dims) == dims and cfg.linear == linear
                and (mlp4 is None or cfg.mlp_ratios[3] == mlp4)):
            name = n
            break
    if name is None:
        raise UnknownVariantError(f"checkpoint is a PVT {'v2' if v2 else 'v1'} with depths {depths} and widths "
                                  f"{list(dims)}, which matches no known variant")
    task, num_classes = None, None
    if "bbox_head.retina_cls.weight" in sd:
        task, num_classes = "detect", int(sd["bbox_head.retina_cls.weight"].shape[0]) // 9
    elif "decode_head.conv_seg.weight" in sd:
        task, num_classes = "segment", int(sd["decode_head.conv_seg.weight"].shape[0])
    elif "head.weight" in sd:
        task, num_classes = "classify", int(sd["head.weight"].shape[0])
    return name, task, num_classes
