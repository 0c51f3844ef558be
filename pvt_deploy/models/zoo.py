"""The model zoo: names, tasks, default sizes, published metrics, and ``create_model``.

Zoo names: ``pvt_small`` is the RetinaNet detector (the default task), ``pvt_small-seg`` the
Semantic FPN segmenter, ``pvt_small-cls`` the ImageNet classifier, ``pvt_small-features`` the bare
backbone; likewise for every backbone. A bare backbone name plus ``task=`` works too, and so does the
path of a checkpoint file, whose architecture is read from its tensor shapes.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvt_deploy.data import class_names
from pvt_deploy.errors import CheckpointError, InputError, ModelNotFoundError, one_of, option
from pvt_deploy.manifest import CHECKPOINT_SUFFIXES, TASKS

if TYPE_CHECKING:  # the models themselves, and torch, are imported where a model is built
    import torch
    from torch import nn

    from pvt_deploy.models.layers import PyramidTransformer
    from pvt_deploy.models.pvt import PVTConfig

    #: Each backbone's architecture (:mod:`pvt_deploy.models.pvt`, :mod:`~pvt_deploy.models.pvt_v2`), by name
    #: (:data:`BACKBONE_NAMES`); read from those modules, which import torch, where first asked for.
    BACKBONES: dict[str, PVTConfig]

log = logging.getLogger(__name__)

SUFFIX_TO_TASK = {"": "detect", "-det": "detect", "-seg": "segment", "-cls": "classify", "-features": "features"}
TASK_TO_SUFFIX = {"detect": "", "segment": "-seg", "classify": "-cls", "features": "-features"}
DATASET = {"detect": "coco", "segment": "ade20k", "classify": "imagenet", "features": None}
METRIC_NAME = {"detect": "COCO box AP", "segment": "ADE20K mIoU", "classify": "ImageNet top-1"}
# Default deployment input size (H, W) per task and the official test-time size.
DEFAULT_IMGSZ = {"detect": (640, 640), "segment": (512, 512), "classify": (224, 224), "features": (640, 640)}
OFFICIAL_SIZE = {"detect": "1333x800 (keep ratio)", "segment": "2048x512 (keep ratio)",
                 "classify": "224 (resize 256, crop)", "features": "any multiple of 32"}

#: The parameters of each backbone's model for each task, exact: counted on the models themselves
#: (:func:`parameter_count`, which a test runs on every entry, so that the table cannot drift from them), written
#: here so that ``pvt-deploy models`` imports no torch: building the 33 models, if only on the meta device, and
#: importing torch took it 3.7 s. Its keys are the zoo's backbones, in the zoo's order.
PARAMETERS: dict[str, dict[str, int]] = {
    "pvt_tiny": {"detect": 22964724, "segment": 16981398, "classify": 13229288, "features": 12714752},
    "pvt_small": {"detect": 34221300, "segment": 28237974, "classify": 24485864, "features": 23971328},
    "pvt_medium": {"detect": 53943540, "segment": 47960214, "classify": 44208104, "features": 43693568},
    "pvt_large": {"detect": 71104756, "segment": 65121430, "classify": 61369320, "features": 60854784},
    "pvt_v2_b0": {"detect": 12947028, "segment": 7545334, "classify": 3666760, "features": 3409760},
    "pvt_v2_b1": {"detect": 23745972, "segment": 17762646, "classify": 14009000, "features": 13496000},
    "pvt_v2_b2": {"detect": 35099828, "segment": 29116502, "classify": 25362856, "features": 24849856},
    "pvt_v2_b2_li": {"detect": 32290484, "segment": 26307158, "classify": 22553512, "features": 22040512},
    "pvt_v2_b3": {"detect": 54975668, "segment": 48992342, "classify": 45238696, "features": 44725696},
    "pvt_v2_b4": {"detect": 72293044, "segment": 66309718, "classify": 62556072, "features": 62043072},
    "pvt_v2_b5": {"detect": 91692980, "segment": 85709654, "classify": 81956008, "features": 81443008},
}
#: The zoo's backbones, v1 then v2 (those of :data:`BACKBONES`, without importing their models).
BACKBONE_NAMES: tuple[str, ...] = tuple(PARAMETERS)


@functools.cache  # one dict: BACKBONES is BACKBONES, and what is added to it builds
def _backbones() -> dict[str, PVTConfig]:
    from pvt_deploy.models import pvt, pvt_v2

    return {**pvt.CONFIGS, **pvt_v2.CONFIGS}


def __getattr__(name: str) -> Any:
    if name == "BACKBONES":
        return _backbones()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Published results of the official models (PVT / PVTv2 papers and the official repository).
PUBLISHED: dict[str, dict[str, float]] = {
    "classify": {"pvt_tiny": 75.1, "pvt_small": 79.8, "pvt_medium": 81.2, "pvt_large": 81.7,
                 "pvt_v2_b0": 70.5, "pvt_v2_b1": 78.7, "pvt_v2_b2_li": 82.1, "pvt_v2_b2": 82.0,
                 "pvt_v2_b3": 83.1, "pvt_v2_b4": 83.6, "pvt_v2_b5": 83.8},
    "detect": {"pvt_tiny": 36.7, "pvt_small": 40.4, "pvt_medium": 41.9, "pvt_large": 42.6,
               "pvt_v2_b0": 37.2, "pvt_v2_b1": 41.2, "pvt_v2_b2_li": 43.6, "pvt_v2_b2": 44.6,
               "pvt_v2_b3": 45.9, "pvt_v2_b4": 46.1, "pvt_v2_b5": 46.2},
    "segment": {"pvt_tiny": 36.6, "pvt_small": 41.9, "pvt_medium": 43.5, "pvt_large": 43.5,
                "pvt_v2_b0": 37.2, "pvt_v2_b1": 42.5, "pvt_v2_b2": 45.2, "pvt_v2_b3": 47.3,
                "pvt_v2_b4": 47.9, "pvt_v2_b5": 48.7},
}

# The official checkpoints that are direct downloads: the ImageNet-1K classifiers, GitHub release assets of
# whai362/PVT, each URL as the "[GitHub]" link of the Model Zoo table in that repository's
# classification/README.md (read 2026-12-05; not downloaded here). ``--weights official`` loads a
# classifier's own file, and into a detector or segmenter its backbone (neck and head stay random, as the
# load report says): the official RetinaNet and Semantic FPN files are Google Drive links (detection/ and
# segmentation/README.md), which a tool cannot download.
OFFICIAL_WEIGHTS: dict[str, str] = {
    "pvt_tiny": "https://github.com/whai362/PVT/releases/download/v2/pvt_tiny.pth",
    "pvt_small": "https://github.com/whai362/PVT/releases/download/v2/pvt_small.pth",
    "pvt_medium": "https://github.com/whai362/PVT/releases/download/v2/pvt_medium.pth",
    "pvt_large": "https://github.com/whai362/PVT/releases/download/v2/pvt_large.pth",
    "pvt_v2_b0": "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b0.pth",
    "pvt_v2_b1": "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b1.pth",
    "pvt_v2_b2_li": "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2_li.pth",
    "pvt_v2_b2": "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth",
    "pvt_v2_b3": "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b3.pth",
    "pvt_v2_b4": "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b4.pth",
    "pvt_v2_b5": "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b5.pth",
}
#: Where a task's official weights are listed (for the one who downloads them by hand).
OFFICIAL_README = {"classify": "https://github.com/whai362/PVT (classification/README.md)",
                   "features": "https://github.com/whai362/PVT (classification/README.md)",
                   "detect": "https://github.com/whai362/PVT (detection/README.md)",
                   "segment": "https://github.com/whai362/PVT (segmentation/README.md)"}
#: ``--weights official`` / ``weights="official"``: the zoo entry's official checkpoint (:func:`official_weights`).
OFFICIAL = "official"


@dataclass(frozen=True)
class ZooEntry:
    backbone: str
    task: str

    @property
    def name(self) -> str:
        return self.backbone + TASK_TO_SUFFIX[self.task]

    @property
    def dataset(self) -> str | None:
        return DATASET[self.task]

    @property
    def classes(self) -> tuple[str, ...]:
        return class_names(self.dataset) if self.dataset else ()

    @property
    def imgsz(self) -> tuple[int, int]:
        return DEFAULT_IMGSZ[self.task]

    @property
    def official_url(self) -> str | None:
        """The URL ``--weights official`` downloads for this entry (:data:`OFFICIAL_WEIGHTS`), or None."""
        return OFFICIAL_WEIGHTS.get(self.backbone)

    @property
    def official_part(self) -> str | None:
        """What :attr:`official_url` holds of this entry: ``"model"`` (the whole of it), ``"backbone"``."""
        if self.official_url is None:
            return None
        return "model" if self.task in ("classify", "features") else "backbone"

    @property
    def parameters(self) -> int:
        """The parameters of this entry's model (:data:`PARAMETERS`), with its dataset's classes."""
        return PARAMETERS[self.backbone][self.task]

    @property
    def metric(self) -> tuple[str, float | None] | None:
        if self.task not in METRIC_NAME:
            return None
        return METRIC_NAME[self.task], PUBLISHED[self.task].get(self.backbone)


def zoo_entries() -> list[ZooEntry]:
    return [ZooEntry(b, t) for b in BACKBONE_NAMES for t in ("detect", "segment", "classify")]


def resolve_name(name: str, task: str | None = None) -> ZooEntry:
    """Map a zoo name (``pvt_small-seg``) or backbone name + task to a :class:`ZooEntry`. ``task`` is
    :func:`~pvt_deploy.errors.one_of` the tasks, as export's and models' ``--task`` are (``Detect`` is detect)."""
    if task is not None:
        task = one_of(option("task"), task, TASKS)
    base, suffix = name, ""
    for sfx in sorted(SUFFIX_TO_TASK, key=len, reverse=True):
        if sfx and name.endswith(sfx):
            base, suffix = name[: -len(sfx)], sfx
            break
    if base not in BACKBONE_NAMES:
        v2 = base.lower().startswith("pvt_v2")  # the family the name is of: every size of it
        close = [b for b in BACKBONE_NAMES if b.startswith("pvt_v2") == v2] if base.lower().startswith("pvt_") \
            else list(BACKBONE_NAMES)
        guess = _closest_name(name)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise ModelNotFoundError(f"unknown model {name!r}; {hint}known backbones: {', '.join(close)} "
                                 "(suffix -seg, -cls or -features for other tasks)")
    named_task = SUFFIX_TO_TASK[suffix]
    if task is not None and suffix and task != named_task:
        raise ModelNotFoundError(f"{option('task')} {task!r}: {name!r} is a {named_task} model",
                                 hint=f"drop {option('task')}, or give the backbone, {base}, with it")
    return ZooEntry(base, task or named_task)


def _closest_name(name: str) -> str | None:
    """The zoo name a mistyped ``name`` most likely meant, its task included: a typo in the task suffix
    (``pvt_v2_b0_cls``, ``pvt_small-classify``) is matched against the suffixed names, not read as the
    bare backbone, which is the detector."""
    names = [b + sfx for b in BACKBONE_NAMES for sfx in SUFFIX_TO_TASK]
    typed = name.strip().lower()
    fixed = typed.replace("o", "0")  # pvt_v2_bO -> pvt_v2_b0
    if fixed in names:
        return fixed
    guess = difflib.get_close_matches(typed, names, n=1, cutoff=0.6)
    return guess[0] if guess else None


def official_weights(weights: Any, model: Any, task: str | None = None) -> Any:
    """What ``weights`` names for ``model``: ``"official"`` is the URL of the zoo entry's official checkpoint
    (:attr:`ZooEntry.official_url`); anything else is returned as given. A model that is no zoo name, or an
    entry whose official weights are no direct download, is an :class:`InputError` saying what to pass."""
    if not (isinstance(weights, str) and weights == OFFICIAL):
        return weights
    try:
        entry = resolve_name(os.fspath(model), task) if isinstance(model, (str, os.PathLike)) else None
    except ModelNotFoundError:
        entry = None
    if entry is None:
        shown = f" {os.fspath(model)}" if isinstance(model, (str, os.PathLike)) else ""
        given = f"{option('weights')} official" if option("weights").startswith("--") else "weights='official'"
        raise InputError(f"{given}: the official weights are a zoo model's; the model{shown} is not a zoo name",
                         hint="pass the checkpoint file or its URL")
    if entry.official_url is None:
        raise InputError(f"{entry.name}: its official weights are no direct download; they are linked from "
                         f"{OFFICIAL_README[entry.task]}", hint="download the file and pass it as the weights")
    return entry.official_url


def build_backbone(backbone: str, num_classes: int = 0) -> PyramidTransformer:
    from pvt_deploy.models import pvt, pvt_v2

    cfg = _backbones()[backbone]
    cls = pvt_v2.PyramidVisionTransformerV2 if backbone.startswith("pvt_v2") else pvt.PyramidVisionTransformer
    return cls(cfg, num_classes=num_classes)


def build_model(entry: ZooEntry, num_classes: int | None = None) -> nn.Module:
    from pvt_deploy.models.retinanet import RetinaNet
    from pvt_deploy.models.semantic_fpn import SemanticFPN

    n = num_classes if num_classes is not None else len(entry.classes)
    if entry.task == "classify":
        model: nn.Module = build_backbone(entry.backbone, num_classes=n)
    elif entry.task == "features":
        model = build_backbone(entry.backbone, num_classes=0)
    elif entry.task == "detect":
        model = RetinaNet(build_backbone(entry.backbone), num_classes=n)
    else:
        model = SemanticFPN(build_backbone(entry.backbone), num_classes=n)
    model.zoo_name = entry.name  # type: ignore[assignment]
    model.zoo_task = entry.task  # type: ignore[assignment]
    return model.eval()


def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in name or Path(name).is_file()


#: The seed of the CLI's and ``Model``'s random initialisation (see :func:`create_model`).
RANDOM_INIT_SEED = 0

# Building a model draws its initial weights from torch's global generator: two builds at once (a
# server loading its models in threads) took each other's draws and reset each other's seed, so a
# seeded model was not the one its seed gives. One build at a time.
_BUILD_LOCK = threading.Lock()


def _new_build_lock_in_child() -> None:
    """A fork while another thread was building: that thread is not in the child, so nothing would
    release the lock it held."""
    global _BUILD_LOCK
    _BUILD_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_build_lock_in_child)


def create_model(name: str, *, task: str | None = None,
                 weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
                 num_classes: int | None = None, trust: bool = False, seed: int | None = None,
                 random_why: str | None = None) -> nn.Module:
    """Build a zoo model in eval mode, optionally loading ``weights`` (see :func:`load_weights`).

    ``name`` is a backbone name (``pvt_v2_b2_li``), a zoo name (``pvt_small-seg``) or the path of a
    checkpoint, whose variant, task and class count are read from its tensors. Without weights the
    model is randomly initialised and a warning says so. ``seed`` makes that initialisation (and that
    of any layer a checkpoint leaves out) the same in every run, leaving torch's global random state
    as it was; the CLI and ``Model`` pass :data:`RANDOM_INIT_SEED`, so a zoo name without weights
    gives the same outputs each time, and the same as an export made from it. ``None`` draws from
    torch's global generator. ``random_why`` says why there are no weights, in the warning, where that
    is not that none were given (an export whose checkpoint left the download cache, timed by ``bench``).
    """
    import torch

    from pvt_deploy.models.checkpoints import (
        UnknownVariantError,
        infer_architecture,
        load_weights,
        read_checkpoint,
    )

    state = None
    where = str(weights) if isinstance(weights, (str, os.PathLike)) else None
    ckpt_entry = None  # what the checkpoint's tensors say it is, to name in a mismatch
    unknown: UnknownVariantError | None = None  # or that they are no zoo variant's, to say instead of one
    if _looks_like_path(name) and name not in BACKBONE_NAMES:
        if weights is not None:  # they were dropped without a word: the file's own tensors were loaded
            official_weights(weights, name)  # 'official' names a zoo model's: export's words, and what to pass
            raise InputError(f"{option('weights')} does not apply to {name}: a model file runs with its own weights")
        state = read_checkpoint(name, trust=trust)
        try:
            backbone, ckpt_task, ckpt_classes = infer_architecture(state)
        except CheckpointError as e:  # name the file: the message speaks of "checkpoint" only
            raise CheckpointError(f"{name}: {e.args[0]}", hint=e.hint) from e
        entry = resolve_name(backbone, task or ckpt_task or "detect")
        if num_classes is None and entry.task == ckpt_task:
            num_classes = ckpt_classes
        weights, where = state, name
    else:
        entry = resolve_name(name, task)
        weights = official_weights(weights, name, task)  # "official": its URL, downloaded below
        where = str(weights) if isinstance(weights, (str, os.PathLike)) else None
        if weights is not None and num_classes is None:
            sd = read_checkpoint(weights, trust=trust) if isinstance(weights, (str, os.PathLike)) else weights
            try:
                ckpt_backbone, ckpt_task, ckpt_classes = infer_architecture(sd)
                ckpt_entry = resolve_name(ckpt_backbone, ckpt_task or entry.task)
            except UnknownVariantError as e:
                ckpt_task, ckpt_classes, unknown = None, None, e
            except Exception:  # noqa: BLE001 - load_weights reports the real mismatch
                ckpt_task, ckpt_classes = None, None
            if ckpt_task == entry.task:
                num_classes = ckpt_classes
            weights = sd
    with _BUILD_LOCK:
        if seed is None:
            model = build_model(entry, num_classes)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = build_model(entry, num_classes)
    if weights is None:
        log.warning("%s: %s — the model is RANDOMLY INITIALISED (outputs are meaningless)", entry.name,
                    random_why or "no weights given")
        model.random_init = True  # type: ignore[assignment]
    else:
        try:
            model.load_report = load_weights(model, weights, trust=trust, where=where)  # type: ignore[assignment]
        except CheckpointError as e:
            if unknown is not None:  # not the keys the model named (pvt_small by default) lacks: no zoo model fits
                raise CheckpointError(f"{where}: {unknown.args[0]}" if where else unknown.args[0]) from e
            if ckpt_entry is None or ckpt_entry.name == entry.name:  # another variant or another task
                raise
            raise CheckpointError(f"{e} (its tensors are those of {ckpt_entry.name})",
                                  hint=f"--model {ckpt_entry.name}") from e
        model.random_init = False  # type: ignore[assignment]
    return model


def model_classes(model: nn.Module, default: Sequence[str]) -> list[str]:
    """The class names of a model made by :func:`create_model`: those its checkpoint records (``class_names``,
    set by :func:`~pvt_deploy.models.checkpoints.load_weights`), else ``default`` (its zoo entry's dataset's)
    where its head has that many classes, else their numbers ``"0"``, ``"1"``, ... (a checkpoint fine-tuned
    on other classes that it does not name). A model without classes (a bare backbone): ``default``."""
    own = getattr(model, "class_names", None)
    if own:
        return list(own)
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0 and len(default) != n:
        return [str(i) for i in range(n)]
    return list(default)


def model_palette(model: nn.Module) -> dict[str, list[list[int]]]:
    """The manifest's ``palette`` of a model made by :func:`create_model`: the colours of a segmenter's classes
    that its checkpoint records (``class_palette``, set by :func:`~pvt_deploy.models.checkpoints.load_weights`),
    which its overlays are drawn with; empty (no such field) where it records none."""
    own = getattr(model, "class_palette", None)
    return {"palette": [list(c) for c in own]} if own else {}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_count(entry: ZooEntry) -> int:
    """The parameters of ``entry``'s model, counted without making its weights: built on the meta device, with
    the in-place writes of its initialisation skipped (meta tensors hold no data). Initialising meta tensors
    is not free: torch runs ``normal_`` there through its reference implementations, which import
    ``torch._dynamo`` (1.5 s) and take ~2 ms a call; ``pvt-deploy models`` took 5 s for the zoo, 3 s without
    (it now reads :data:`PARAMETERS`, which this counts)."""
    import torch
    from torch.overrides import TorchFunctionMode

    class SkipMetaWrites(TorchFunctionMode):
        """In-place operators on meta tensors (the weights' initialisation) skipped: they hold no data to write."""

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            target = args[0] if args else kwargs.get("tensor")  # torch.nn.init's functions pass tensor=
            if name.endswith("_") and not name.endswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
                return target
            return func(*args, **kwargs)

    with torch.device("meta"), SkipMetaWrites():
        return count_parameters(build_model(entry))
