"""Accuracy on a labelled dataset: ``pvt-deploy val`` and :meth:`pvt_deploy.api.Model.val`.

What a deployment is checked with after an FP16 or INT8 build, on the user's own labelled pictures:

* **detect**: COCO box AP (``AP`` over IoU 0.50:0.95, ``AP50``, ``AP75``, by object size, and AR), computed
  by pycocotools' ``COCOeval``, the reference every published COCO figure comes from. The dataset is a COCO
  instances JSON (``annotations/instances_val2017.json``) and its image folder (found beside it as COCO lays
  it out, ``val2017/``, or given), or an Ultralytics dataset YAML (``coco8.yaml``: its ``val`` split, each
  picture's YOLO label file in ``labels/`` beside ``images/``; polygon labels count as their bounding
  boxes, as Ultralytics reads them for detection). Categories are matched to the model's classes by
  name, else, where the counts agree, in the order of their ids (as MMDetection does).
* **classify**: top-1 and top-5 accuracy on a folder of class folders (ImageNet's validation layout,
  ``val/n01440764/*.JPEG``): for an ImageNet-1k model, folders named by WordNet id are those classes (all
  1000 or a subset, as Imagenette's 10); folders named after the model's classes are those classes;
  otherwise there must be one folder per class, taken in sorted order (the class index of torchvision's
  ``ImageFolder``).
  Pictures are taken from the classes in turn, so that ``limit`` samples every class alike.
* **segment**: mIoU, mAcc and aAcc (pixel accuracy) over a folder of pictures and a folder of label
  PNGs (or lossless TIFFs; JPEGs are refused) of the same names (ADE20K's ``images/validation`` and
  ``annotations/validation``; the dataset root finds both); a 1-bit label's ids are 0 and 1. Label 0 is
  "other" in ADE20K and is ignored, the others shift down by one (``reduce_zero_label``, MMSegmentation's
  setting for ADE20K); 255 is ignored always.

Predictions go through the model's own pre- and post-processing, on whichever backend it runs, with
the model's settings (a detector's score threshold 0.05 and 100 detections an image, the COCO protocol
of the published RetinaNet figures) unless given.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pvt_deploy.errors import InputError
from pvt_deploy.utils import count_of
from pvt_deploy.utils.files import read_text

if TYPE_CHECKING:
    from pvt_deploy.api import Model
    from pvt_deploy.tasks.pipeline import Predictor
    from pvt_deploy.tasks.results import Result

log = logging.getLogger("pvt_deploy.evaluate")
_T = TypeVar("_T")

#: COCOeval's ``stats``, in its order
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IGNORE_LABEL = 255
#: label maps read as class ids: lossless files (PNG as ADE20K's, TIFF as GIS tools write them), one a picture
LABEL_SUFFIXES = (".png", ".tif", ".tiff")
#: label maps saved lossy: refused, their compression having changed the ids along every edge
LOSSY_SUFFIXES = (".jpg", ".jpeg")


@dataclass
class Dataset:
    """Labelled pictures of one task: ``images`` in evaluation order and, per picture path (as a string),
    its label: a COCO image id (``detect``), a class index (``classify``) or a label map (``segment``)."""

    task: str
    images: list[Path]
    description: str
    labels: dict[str, Any] = field(default_factory=dict)
    coco: dict[str, Any] | None = None  # detect: the instances JSON (a YOLO dataset's: images, annotations filled in)
    category_ids: list[int] = field(default_factory=list)  # detect: class index -> category id (-1: none)
    reduce_zero_label: bool = True  # segment
    yolo: bool = False  # detect: labels are YOLO label files (None: a picture without objects), read as it runs


@dataclass
class ValReport:
    """What :func:`evaluate` measured: ``metrics`` (name -> value, fractions in [0, 1]), ``images`` the
    pictures evaluated, ``skipped`` the unreadable ones left out, ``per_class`` (segment: IoU of each
    class present; detect: AP of each category), ``settings`` the detection settings given, ``fps``
    pictures a second end to end (decode, pre-processing, inference, post-processing)."""

    task: str
    dataset: str
    metrics: dict[str, float]
    images: int
    skipped: int = 0
    per_class: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    fps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "dataset": self.dataset, "images": self.images, "skipped": self.skipped,
                "metrics": self.metrics, "per_class": self.per_class, "settings": self.settings, "fps": self.fps}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def _name_index(names: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Class name (case, spaces, ``_`` and ``-`` folded) -> class index, for the names that name one class
    only; and how many classes each name that names several does (ImageNet has two "crane", two "maillot")."""
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        seen.setdefault(_norm(n), []).append(i)
    return ({k: v[0] for k, v in seen.items() if len(v) == 1},
            {k: len(v) for k, v in seen.items() if len(v) > 1})


def _are(n: int) -> str:
    """The verb of a count of things: '1 of the 4 pictures is', '2 of them are'."""
    return "is" if n == 1 else "are"


def _first(items: Sequence[object]) -> str:
    """``x.jpg, ...``: the first of ``items`` (a path by its name), and an ellipsis where there are more."""
    first = items[0].name if isinstance(items[0], Path) else str(items[0])
    return first + (", ..." if len(items) > 1 else "")


def _unmatched(given: Sequence[str], index: dict[str, int], ambiguous: dict[str, int]) -> str:
    """``(zebra, crane (names 2 classes), ...)``: the first given names that match no single class."""
    out = [f"{g} (names {ambiguous[_norm(g)]} classes)" if _norm(g) in ambiguous else g
           for g in given if _norm(g) not in index]
    return f"({', '.join(out[:3])}{', ...' if len(out) > 3 else ''})"


def _in_order(given: Sequence[str], names: Sequence[str], index: dict[str, int], ambiguous: dict[str, int],
              what: str) -> None:
    """Refuse to take ``given`` in order as the model's classes where one of them is the name of another
    class than its place's (a misspelt folder, an ambiguous "crane" among names in sorted order): in
    order, every one would be scored against another class, silently. The error names those that
    name no single class, which are why the names were not used."""
    for i, g in enumerate(given):
        j = index.get(_norm(g), i)
        if j != i:
            raise InputError(f"{what} in order would make {g} class {i} ({names[i]}), but it names class {j}; "
                             f"{_unmatched(given, index, ambiguous)} name no single class: name each after its "
                             "class, or none")


def _limited(items: list[_T], limit: int | None) -> list[_T]:
    return items if limit is None else items[:limit]


# -- datasets ---------------------------------------------------------------------------------------------
def open_dataset(data: str | os.PathLike[str], task: str, names: Sequence[str], *,
                 images: str | os.PathLike[str] | None = None, masks: str | os.PathLike[str] | None = None,
                 limit: int | None = None, reduce_zero_label: bool = True) -> Dataset:
    """The labelled pictures ``data`` names for a ``task`` model with classes ``names`` (see the module
    docstring for the layouts); :class:`InputError` when it is missing, of another layout, or its
    classes cannot be matched to the model's."""
    path = Path(data).expanduser()
    if not path.exists():
        raise InputError(f"dataset {data}: no such file or folder")
    if task == "detect":
        from pvt_deploy.export.calibration import is_dataset_yaml

        if is_dataset_yaml(path):
            return _yolo_dataset(path, names, limit)
        return _coco_dataset(path, names, images, limit)
    if task == "classify":
        return _folder_dataset(path, names, limit)
    if task == "segment":
        return _mask_dataset(path, images, masks, limit, reduce_zero_label)
    raise InputError(f"val: no metric for a {task} model")


def _coco_dataset(path: Path, names: Sequence[str], images: str | os.PathLike[str] | None,
                  limit: int | None) -> Dataset:
    if path.is_dir() or path.suffix.lower() != ".json":
        raise InputError(f"dataset {path}: a detector is evaluated on a COCO instances JSON "
                         "(annotations/instances_val2017.json), with --images its picture folder, or an "
                         "Ultralytics dataset YAML")
    # UTF-8 (with a byte-order mark, as Windows tools write, or none), UTF-16 and UTF-32 with their marks (Windows
    # PowerShell 5's Out-File and '>' write UTF-16, its mark first), as other text files are read: bytes of none of
    # them said where in the file they are (json's own count starts after UTF-8's mark)
    text = read_text(path, what="dataset")
    try:
        coco = json.loads(text)
    except ValueError as e:  # json.JSONDecodeError
        raise InputError(f"dataset {path}: not a readable JSON file ({e})") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                      "categories")):
        raise InputError(f"dataset {path}: not a COCO instances file (it needs 'images', 'annotations' and "
                         "'categories' lists)")
    entries = [im for im in coco["images"] if isinstance(im, dict) and "id" in im and "file_name" in im]
    if not entries:
        raise InputError(f"dataset {path}: lists no images")
    odd = next((im for im in entries if not isinstance(im["file_name"], str) or not im["file_name"]), None)
    if odd is not None:
        raise InputError(f"dataset {path}: image id {odd['id']!r} has the file_name {odd['file_name']!r}, not a file's "
                         "name")
    entries = [_sized(im, path) for im in entries]
    if os.sep == "/":  # a tool on Windows writes sub\\x.jpg; a backslash in a file's name is all but unheard of
        entries = [{**im, "file_name": im["file_name"].replace("\\", "/")} for im in entries]
    first = [e["file_name"] for e in entries[:50]]  # a folder that holds none of them is not the pictures' folder
    folder = Path(images).expanduser() if images is not None else _coco_image_folder(path, first)
    if not folder.is_dir():
        raise InputError(f"--images {folder}: no such folder")
    if not any((folder / name).is_file() for name in first):
        raise InputError(f"--images {folder}: none of the JSON's first pictures ({first[0]}, ...) is in it")
    coco = _boxes(_merged(_numbered(coco, entries, path), names, path), path)
    there = {e["file_name"]: (folder / e["file_name"]).is_file() for e in coco["images"]}
    present = [e for e in coco["images"] if there[e["file_name"]]]
    if len(present) < len(entries):
        missing = [name for name, found in there.items() if not found]
        log.warning("dataset %s: %d of the %s it lists %s not in %s (%s%s): left out", path, len(missing),
                    count_of(len(entries), "picture"), _are(len(missing)), folder, ", ".join(missing[:3]),
                    ", ..." if len(missing) > 3 else "")
    present = _limited(present, limit)
    labels = {str(folder / e["file_name"]): e["id"] for e in present}
    return Dataset("detect", [folder / e["file_name"] for e in present], f"{path} ({folder})", labels, coco,
                   _category_ids(coco["categories"], names, path, {a.get("category_id") for a in coco["annotations"]
                                                                   if isinstance(a.get("category_id"), int)}))


def _sized(entry: dict[str, Any], path: Path) -> dict[str, Any]:
    """An image entry with its ``width`` and ``height`` as numbers: tools write them as strings too
    (``"640"``), which were taken for a size other than the picture's. One that is no number of pixels
    (``"abc"``, -1, 640.5) is refused: the file is not what it seems. None, 0 or ``""``: not given, as missing."""
    sized = dict(entry)
    for key in ("width", "height"):
        value = entry.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):  # "": unknown, as a converter writes it
            sized[key] = None
            continue
        try:
            number = -1.0 if isinstance(value, bool) else float(value)  # float() reads " 640 " and "640.0" too
        except (TypeError, ValueError):
            number = -1.0
        if not (math.isfinite(number) and number >= 0 and number.is_integer()):
            raise InputError(f"dataset {path}: image id {entry['id']!r} ({entry['file_name']}) has the {key} "
                             f"{value!r}, not a number of pixels")
        sized[key] = int(number) or None
    return sized


def _numbered(coco: dict[str, Any], entries: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """The instances file with its ``entries`` numbered 1, 2, ... (and each annotation's ``image_id`` so):
    ids as tools write them (strings, say) are as good as COCO's numbers, but pycocotools sorts and
    ``np.unique``-s them. An id or a file listed twice is refused (COCO's index would keep one of the
    pictures and give it both's boxes); annotations of an id no picture has are left out with a warning."""
    number: dict[Any, int] = {}
    files: dict[str, Any] = {}
    for k, e in enumerate(entries, 1):
        key, name = e["id"], e["file_name"]
        if not isinstance(key, (int, str)) or isinstance(key, bool):
            raise InputError(f"dataset {path}: image id {key!r} of {name} is neither a number nor a string")
        if key in number:
            raise InputError(f"dataset {path}: image id {key!r} is listed twice "
                             f"({entries[number[key] - 1]['file_name']} and {name})")
        if name in files:
            raise InputError(f"dataset {path}: {name} is listed twice (image ids {files[name]!r} and {key!r})")
        number[key], files[name] = k, key
    annotations, orphans = [], 0
    for a in coco["annotations"]:
        image = a.get("image_id") if isinstance(a, dict) else None
        if isinstance(image, (int, str)) and image in number:
            annotations.append({**a, "image_id": number[image]})
        else:
            orphans += 1
    if orphans:
        log.warning("dataset %s: %s no image it lists: left out", path,
                    count_of(orphans, "annotation") + (" names" if orphans == 1 else " name"))
    return {**coco, "images": [{**e, "id": k} for k, e in enumerate(entries, 1)], "annotations": annotations}


def _merged(coco: dict[str, Any], names: Sequence[str], path: Path) -> dict[str, Any]:
    """The instances file with the categories that name one of the model's classes alike (``fork`` twice,
    or ``Fork`` and ``fork``, as a labelling tool keeps a label made twice) made one, the first by id:
    the class's detections are of one category, so the boxes of the others were never matched. Said
    with a warning."""
    index, _ = _name_index(names)
    first: dict[int, dict[str, Any]] = {}  # class index -> its first category
    into: dict[int, int] = {}  # category id -> the id of the first of its class
    seen: dict[int, Any] = {}
    for c in sorted((c for c in coco["categories"] if isinstance(c, dict) and isinstance(c.get("id"), int)),
                    key=lambda c: int(c["id"])):
        if c["id"] in seen:  # which of the two its boxes are of, the file does not say
            raise InputError(f"dataset {path}: category id {c['id']} is listed twice ({seen[c['id']]} and "
                             f"{c.get('name')})")
        seen[c["id"]] = c.get("name")
        k = index.get(_norm(str(c.get("name", ""))))
        if k is None:
            continue
        if k in first:
            into[c["id"]] = first[k]["id"]
        else:
            first[k] = c
    if not into:
        return coco
    groups = [f"{names[k]}: {', '.join(str(i) for i in [c['id'], *(o for o, t in into.items() if t == c['id'])])}"
              for k, c in first.items() if c["id"] in into.values()]
    log.warning("dataset %s: categories of one name are scored as one, the model's class (%s)", path,
                "; ".join(groups))
    return {**coco, "categories": [c for c in coco["categories"] if not (isinstance(c, dict) and c.get("id") in into)],
            "annotations": [{**a, "category_id": into[a["category_id"]]} if a.get("category_id") in into else a
                            for a in coco["annotations"]]}


def _boxes(coco: dict[str, Any], path: Path) -> dict[str, Any]:
    """The instances file with each annotation's box as COCOeval scores it: its ``bbox`` (x, y, width,
    height), else its ``segmentation``'s extent (a polygon or RLE without one, as some converters write
    them). An annotation COCOeval cannot score is left out with one warning that counts each kind and
    names the first: a ``category_id`` the file does not list (COCOeval drops its box without a word:
    one nobody has to find) or none (a KeyError in pycocotools), no box of four finite numbers, a
    box of no width or height (no detection overlaps it: a box nobody can find)."""
    listed = {c["id"] for c in coco["categories"] if isinstance(c, dict) and isinstance(c.get("id"), int)}
    files = {e["id"]: e["file_name"] for e in coco["images"]}
    kept: list[dict[str, Any]] = []
    faults: dict[str, list[dict[str, Any]]] = {}
    for a in coco["annotations"]:
        category, box = a.get("category_id"), _box(a)
        if not isinstance(category, int) or isinstance(category, bool) or category not in listed:
            fault = "of no category it lists" if category is not None else "without a category_id"
        elif box is None:
            fault = "without a box (a bbox of 4 numbers, or a segmentation)"
        elif box[2] <= 0 or box[3] <= 0:
            fault = "of no width or height (no detection can overlap one)"
        else:
            kept.append({**a, "bbox": box})
            continue
        faults.setdefault(fault, []).append(a)
    if faults:
        said = "; ".join(f"{len(of)} {fault} (annotation {of[0].get('id', '?')!r} of {files[of[0]['image_id']]}"
                         f"{', category ' + repr(of[0].get('category_id')) if fault.startswith('of no category') else ''})"
                         for fault, of in faults.items())
        dropped = len(coco["annotations"]) - len(kept)
        log.warning("dataset %s: %d of its %s %s left out: %s", path, dropped,
                    count_of(len(coco["annotations"]), "annotation"), _are(dropped), said)
    return {**coco, "annotations": kept}


def _box(annotation: dict[str, Any]) -> list[float] | None:
    """An annotation's ``bbox`` where it is 4 finite numbers, else its ``segmentation``'s extent (polygons'
    points, or an RLE's pixels by pycocotools); None where neither gives one."""
    box = annotation.get("bbox")
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       and math.isfinite(v) for v in box):
        return [float(v) for v in box]
    shape = annotation.get("segmentation")
    try:
        if isinstance(shape, list) and shape and all(isinstance(p, list) and len(p) >= 6 for p in shape):
            xs = [float(v) for p in shape for v in p[0::2]]
            ys = [float(v) for p in shape for v in p[1::2]]
            return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        if isinstance(shape, dict) and isinstance(shape.get("size"), list) and "counts" in shape:
            from pycocotools import mask

            rle = mask.frPyObjects(shape, *shape["size"]) if isinstance(shape["counts"], list) else shape
            return [float(v) for v in mask.toBbox(rle)]
    except (ImportError, TypeError, ValueError):  # not numbers, or no pycocotools (said as the metric runs)
        return None
    return None


def _yolo_dataset(path: Path, names: Sequence[str], limit: int | None) -> Dataset:
    """An Ultralytics dataset YAML: its val split's pictures, each with the YOLO label file Ultralytics
    reads for it (``.../images/x.jpg`` -> ``.../labels/x.txt``; none: no objects), and its ``names``."""
    from pvt_deploy.data import yaml_names
    from pvt_deploy.export.calibration import dataset_images

    pictures = _limited(dataset_images(path, what="val"), limit)
    classes = yaml_names(path)  # read whole by dataset_images
    categories = [{"id": k + 1, "name": v} for k, v in sorted(classes.items())]
    labels = {}
    for p in pictures:
        label = _yolo_label_path(p)
        labels[str(p)] = label if label.is_file() else None
    if not any(labels.values()):
        raise InputError(f"dataset {path}: none of its pictures has a label file (looked for "
                         f"{_yolo_label_path(pictures[0])}, ...)")
    coco = {"images": [], "annotations": [], "categories": categories}
    return Dataset("detect", pictures, str(path), labels, coco, _category_ids(categories, names, path), yolo=True)


def _yolo_label_path(picture: Path) -> Path:
    """Ultralytics' label file of a picture: the last ``images`` folder of its path made ``labels``, the
    suffix ``.txt`` (beside the picture where its path has no ``images`` folder)."""
    parts = list(picture.parts)
    where = max((i for i, part in enumerate(parts[:-1]) if part == "images"), default=None)
    if where is not None:
        parts[where] = "labels"
    return Path(*parts).with_suffix(".txt")


def yolo_annotations(label: Path | None, image_id: int, size: tuple[int, int], classes: Container[int],
                     left_out: dict[str, list[str]]) -> list[dict[str, Any]]:
    """A YOLO label file's objects as COCO annotations in the picture's pixels (``size``: height, width):
    ``class cx cy w h`` normalised, or ``class x1 y1 x2 y2 ...`` (a polygon: its bounding box). A line
    of another form (a prediction file's, with a confidence after the box, among them), of a class not in
    ``classes`` (the YAML's names), of coordinates past 0..1 (pixels) or of a box of no width or height is
    left out: ``left_out`` gathers where, by why, for the run's one warning (a dataset of prediction files or
    of pixel coordinates has the fault on every line)."""
    if label is None:
        return []
    h, w = size
    out = []
    lines = read_text(label, what="label").splitlines()  # UTF-8 or UTF-16, as a Windows tool may save it
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        fault = None
        if len(values) == 5:
            _, cx, cy, bw, bh = values
            x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        elif len(values) >= 7 and len(values) % 2 == 1:
            xs, ys = values[1::2], values[2::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        elif len(values) == 6:  # Ultralytics' save_conf: class cx cy w h conf (it refuses such files as labels)
            fault = "with a 6th column (class cx cy w h and a confidence, as a prediction file's lines: predictions, " \
                    "not labels?)"
        else:
            fault = "neither 'class cx cy w h' nor a polygon"
        if fault is None:
            cls = values[0]
            if not math.isfinite(cls) or cls != int(cls) or cls < 0:  # "nan" and "inf" are floats too
                fault = "of a class that is not a class id"
            elif int(cls) not in classes:  # COCOeval would drop it silently: a box nobody has to find
                fault = "of a class not among the dataset's names"
            elif not all(-0.01 <= v <= 1.01 for v in values[1:]):  # as Ultralytics refuses them, with rounding's slack
                fault = "of coordinates past 0..1 (YOLO's are fractions of the picture's width and height, not pixels)"
            elif x2 <= x1 or y2 <= y1:  # as a COCO file's (_boxes): a box no detection can overlap
                fault = "of a box of no width or height (no detection can overlap one)"
        if fault is not None:
            left_out.setdefault(fault, []).append(f"{label} line {n}: {line.strip()!r}")
            continue
        box = [x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h]
        out.append({"image_id": image_id, "category_id": int(cls) + 1, "bbox": box, "area": box[2] * box[3],
                    "iscrowd": 0})
    return out


def _coco_image_folder(path: Path, first: Sequence[str]) -> Path:
    """COCO's layout: ``annotations/instances_val2017.json`` beside ``val2017/``; else a folder named
    after the JSON's split, ``images/``, or the JSON's own folder, whichever holds one of its ``first``
    pictures (the first may be one missing from a partial download)."""
    split = path.stem.rsplit("_", 1)[-1]
    candidates = [path.parent.parent / split, path.parent / split, path.parent / "images",
                  path.parent.parent / "images", path.parent]
    for folder in candidates:
        if any((folder / name).is_file() for name in first):
            return folder
    raise InputError(f"dataset {path}: its pictures ({first[0]}, ...) are not in {split}/ beside it or in images/: "
                     "give their folder with --images")


def _category_ids(categories: list[Any], names: Sequence[str], path: Path, used: Container[Any] | None = None
                  ) -> list[int]:
    """Class index -> category id: by name where every category's name is one of the model's classes
    (of those ``used`` by an annotation, where given: Roboflow's exports list their dataset's name as a
    category no box has), else by the categories' id order where there is one per class; -1 for a class
    with no category."""
    cats = [c for c in categories if isinstance(c, dict) and "id" in c]
    if not cats:
        raise InputError(f"dataset {path}: lists no categories")
    odd = next((c for c in cats if not isinstance(c["id"], int) or isinstance(c["id"], bool)), None)
    if odd is not None:  # its boxes would never meet a detection's category (a number)
        raise InputError(f"dataset {path}: category {odd.get('name')!r} has the id {odd['id']!r}, not a number")
    cats.sort(key=lambda c: int(c["id"]))
    index, ambiguous = _name_index(names)
    named = [c for c in cats if used is None or c["id"] in used or _norm(str(c.get("name", ""))) in index]
    if all(_norm(str(c.get("name", ""))) in index for c in named):
        ids = [-1] * len(names)
        for c in named:
            ids[index[_norm(str(c["name"]))]] = int(c["id"])
        return ids
    if len(cats) == len(names):
        _in_order([str(c.get("name", "")) for c in cats], names, index, ambiguous, f"dataset {path}: its categories")
        log.warning("dataset %s: category names differ from the model's classes; matched in id order "
                    "(%s -> %s, ...)", path, cats[0].get("name"), names[0])
        return [int(c["id"]) for c in cats]
    given = [str(c.get("name")) for c in cats]
    unknown = sum(1 for g in given if _norm(g) not in index)
    which = "1 category, not" if len(cats) == 1 else f"{len(cats)} categories, {unknown} of them not"
    raise InputError(f"dataset {path}: {which} among the model's {count_of(len(names), 'class', 'classes')} "
                     f"{_unmatched(given, index, ambiguous)}")


def _imagenet_wnids(names: Sequence[str]) -> dict[str, int]:
    """WordNet id -> class index for a model of ImageNet-1k's classes (its names are the bundled ones);
    empty for any other model."""
    from pvt_deploy.data import class_names, imagenet_wnids

    if tuple(names) != class_names("imagenet"):
        return {}
    return {w: i for i, w in enumerate(imagenet_wnids())}


#: a dataset's split folders, the one to measure on first: a root of them is not a folder of class folders
_SPLITS = ("val", "validation", "valid", "test", "testing", "train", "training")


def _folder_dataset(path: Path, names: Sequence[str], limit: int | None) -> Dataset:
    from pvt_deploy.io.sources import image_files

    if not path.is_dir():
        raise InputError(f"dataset {path}: a classifier is evaluated on a folder of class folders "
                         "(val/n01440764/*.JPEG, ...)")
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    # pictures beside the class folders are of no class (val/x.jpg next to val/cat/): said, not silently dropped
    loose = [p for p in image_files(path) if p.is_file()]
    stray = f"{count_of(len(loose), 'picture')} ({_first(loose)}) {'is' if len(loose) == 1 else 'are'}" if loose else ""
    if not classes:
        raise InputError(f"dataset {path}: no class folders in it (val/<class>/*.jpg)"
                         + (f"; its {stray} in no class folder: sort them into one folder per class" if loose else ""))
    index, ambiguous = _name_index(names)
    wnids = _imagenet_wnids(names)
    if wnids and all(c.name in wnids for c in classes):  # ImageNet's folders, all 1000 or a subset (Imagenette)
        ids = [wnids[c.name] for c in classes]
    elif all(_norm(c.name) in index for c in classes):
        ids = [index[_norm(c.name)] for c in classes]
    elif splits := [c for c in classes if c.name.lower() in _SPLITS]:  # a dataset's root: train/ was class 0
        pick = min(splits, key=lambda c: _SPLITS.index(c.name.lower()))
        raise InputError(f"dataset {path}: {', '.join(c.name for c in splits)} are a dataset's splits, not class "
                         f"folders: give the split to measure on ({pick}), whose class folders hold the pictures")
    elif len(classes) == len(names):
        _in_order([c.name for c in classes], names, index, ambiguous, f"dataset {path}: its class folders")
        log.warning("dataset %s: class folder names differ from the model's classes; taken in sorted order "
                    "(%s -> %s, ...)", path, classes[0].name, names[0])
        ids = list(range(len(classes)))
    else:
        raise InputError(f"dataset {path}: {count_of(len(classes), 'class folder')} for a model of "
                         f"{count_of(len(names), 'class', 'classes')}, "
                         f"some not named after one of its classes {_unmatched([c.name for c in classes], index, ambiguous)}: "
                         "name each after its class, or give one folder per class (sorted order is the class index, "
                         "as ImageNet's n01440764, ...)")
    # the classes in turn (each one's first picture, then each one's second, ...): --limit 5000 of ImageNet's
    # val is 5 pictures of every class, not the 50 of the first 100 classes (fish, birds and amphibians)
    # infer's listing (image_files): a Mac's ._NAME.jpg beside each photo is no picture, a still GIF is one
    files = [sorted(p for p in image_files(c, recursive=True) if p.is_file()) for c in classes]
    ranked = [((rank, k), p, i) for k, (pictures, i) in enumerate(zip(files, ids, strict=True))
              for rank, p in enumerate(pictures)]
    items = [(p, i) for _, p, i in sorted(ranked, key=lambda item: item[0])]
    if not items:
        raise InputError(f"dataset {path}: no pictures in its class folders")
    if loose:
        log.warning("dataset %s: %s beside its class folders, of no class: left out", path, stray)
    paths = _limited([p for p, _ in items], limit)
    labels = {str(p): i for p, i in items}
    return Dataset("classify", paths, f"{path} ({count_of(len(classes), 'class', 'classes')})", labels)


def _mask_dataset(path: Path, images: str | os.PathLike[str] | None, masks: str | os.PathLike[str] | None,
                  limit: int | None, reduce_zero_label: bool) -> Dataset:
    from pvt_deploy.io.sources import image_files

    if images is None and masks is None and (path / "images").is_dir() and (path / "annotations").is_dir():
        split = next((s for s in ("validation", "val") if (path / "images" / s).is_dir()), None)
        image_dir = path / "images" / split if split else path / "images"
        mask_dir = path / "annotations" / split if split else path / "annotations"
    else:
        image_dir = Path(images).expanduser() if images is not None else path
        if masks is None:
            raise InputError(f"dataset {path}: a segmenter is evaluated on pictures and their labels: give the "
                             "dataset root (images/ and annotations/ in it, as ADE20K) or --masks FOLDER")
        mask_dir = Path(masks).expanduser()
    for what, folder in (("pictures", image_dir), ("labels", mask_dir)):
        if not folder.is_dir():
            raise InputError(f"dataset {path}: {what} folder {folder} does not exist")
    # a picture's label: the lossless label map of its name; else a JPEG of its name, one saved lossy (where the
    # labels have a folder of their own: beside the pictures, a JPEG is one of them)
    beside = mask_dir.resolve() == image_dir.resolve()
    kinds = LABEL_SUFFIXES + (() if beside else LOSSY_SUFFIXES)
    maps: dict[str, list[Path]] = {}  # name -> its lossless label maps
    lossy_of: dict[str, Path] = {}
    for p in sorted(p for p in mask_dir.iterdir() if p.suffix.lower() in kinds and p.is_file()):
        if p.suffix.lower() in LOSSY_SUFFIXES:
            lossy_of.setdefault(p.stem, p)
        else:
            maps.setdefault(p.stem, []).append(p)
    pictures = sorted(p for p in image_files(image_dir) if p.is_file())
    if beside:  # a label map beside its picture is no picture to score (it was, against itself); by its name, the
        # folder may be given as two paths (relative, absolute)
        pictures = [p for p in pictures if p.name not in {m.name for m in maps.get(p.stem, ())}]
        named = {p.stem for p in pictures}
        # x.png and x.tif alone: a picture and its label, or the reverse
        either = [m for stem, m in maps.items() if len(m) > 1 and stem not in named]
        if either:
            more = f" (and {count_of(len(either) - 1, 'name')} more)" if len(either) > 1 else ""
            raise InputError(f"dataset {path}: {' and '.join(m.name for m in either[0])}{more}, in the one folder of "
                             "pictures and labels: which is the picture and which its label is not said: give the "
                             "labels a folder of their own (--masks)")
    # two label maps of one name (x.png and x.tif, x.png and x.PNG), which may hold other ids: no one of them wins
    twice = [p for p in pictures if len(maps.get(p.stem, ())) > 1]
    if twice:
        first = f"{twice[0].name}: {' and '.join(m.name for m in maps[twice[0].stem])}{'; ...' * (len(twice) > 1)}"
        raise InputError(f"dataset {path}: {count_of(len(twice), 'picture')} {'has' if len(twice) == 1 else 'have'} "
                         f"several labels of {'its' if len(twice) == 1 else 'their'} name in {mask_dir} ({first}): which "
                         "one is the truth is not said: keep one per picture")
    label_of = {stem: m[0] for stem, m in maps.items()}
    # two pictures of one name (x.jpg and x.png) beside one label x.png: both were scored against it, the one label
    # counted twice, though it can be the truth of one of them only (which, the names do not say)
    of_name: dict[str, list[Path]] = {}
    for p in pictures:
        if p.stem in label_of:
            of_name.setdefault(p.stem, []).append(p)
    shared = [of_name[stem] for stem in of_name if len(of_name[stem]) > 1]
    if shared:
        first = (f"{label_of[shared[0][0].stem].name}: {' and '.join(p.name for p in shared[0])}"
                 f"{'; ...' * (len(shared) > 1)}")
        raise InputError(f"dataset {path}: {count_of(len(shared), 'label')} in {mask_dir} "
                         f"{'is' if len(shared) == 1 else 'are'} of several pictures of "
                         f"{'its' if len(shared) == 1 else 'their'} name in {image_dir} ({first}): which one "
                         f"{'it labels' if len(shared) == 1 else 'each labels'} is not said: keep one picture per label")
    lossy = [lossy_of[p.stem] for p in pictures if p.stem not in label_of and p.stem in lossy_of]
    paired = [p for p in pictures if p.stem in label_of]
    jpeg = ("JPEG's compression changes the class ids along every edge, so no figure measured on them is right: "
            "save the label maps as PNG") if lossy else ""
    if not paired:  # --masks given a folder of pictures (Cityscapes' leftImg8bit/, whose pictures are PNGs) was said
        # to hold labels that no picture had, or labels saved as JPEG: said so, from their headers
        held = sorted({*(m for of in maps.values() for m in of), *lossy_of.values()})
        colour, judged = _colour_pictures(held)
        more = ", ..." * (len(held) > 1)
        if colour and len(colour) == judged:
            raise InputError(f"dataset {path}: the masks folder {mask_dir} holds pictures ({colour[0]}{more}), not "
                             "label maps (one channel of class ids each, of its picture's name, as ADE20K's "
                             "annotations/): give --masks the folder of the labels")
        if colour and beside:  # pictures and label maps: its PNG pictures were taken for labels
            raise InputError(f"dataset {path}: its PNG or TIFF pictures ({colour[0]}{more}) are taken for labels in the "
                             "one folder of pictures and labels, and no label has a picture of its name: give the "
                             "labels a folder of their own (--masks), each of its picture's name")
    if not paired and lossy:
        raise InputError(f"dataset {path}: its labels in {mask_dir} are JPEG files ({_first(lossy)}): {jpeg}")
    if not paired:
        raise InputError(f"dataset {path}: no picture in {image_dir} has a label PNG or TIFF of its name in {mask_dir}")
    if lossy:
        log.warning("dataset %s: %d of %s %s a JPEG label (%s), left out: %s", path, len(lossy),
                    count_of(len(pictures), "picture"), "has" if len(lossy) == 1 else "have", _first(lossy), jpeg)
    if len(paired) + len(lossy) < len(pictures):
        unlabelled = len(pictures) - len(paired) - len(lossy)
        log.warning("dataset %s: %d of %s %s no label and %s left out", path, unlabelled,
                    count_of(len(pictures), "picture"), "has" if unlabelled == 1 else "have", _are(unlabelled))
    paired = _limited(paired, limit)
    return Dataset("segment", paired, f"{image_dir} ({mask_dir})", {str(p): label_of[p.stem] for p in paired},
                   reduce_zero_label=reduce_zero_label)


def _colour_pictures(files: list[Path]) -> tuple[list[str], int]:
    """Of the first 8 of ``files``, by their headers: those of several channels ("a.png: RGB"), which no
    label map is (one channel of class ids: a 1-bit, 8 or 16-bit gray or palette picture), and how many were
    judged (a file Pillow cannot read is not)."""
    from PIL import Image, UnidentifiedImageError

    from pvt_deploy.io.sources import _quiet_pillow

    _quiet_pillow()  # a damaged TIFF tag, said by Pillow as it opens one, as for the pictures
    colour, judged = [], 0
    for p in files[:8]:
        try:
            with Image.open(p) as im:
                judged += 1
                if len(im.getbands()) > 1:
                    colour.append(f"{p.name}: {im.mode}")
        except (OSError, UnidentifiedImageError):
            continue
    return colour, judged


# -- metrics ----------------------------------------------------------------------------------------------
def coco_detections(result: Result, image_id: int, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """One picture's detections as COCO results (``bbox`` as x, y, width, height in its pixels)."""
    boxes = result.boxes
    if boxes is None or not len(boxes):
        return []
    out = []
    for (x1, y1, x2, y2), score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(),
                                            strict=True):
        category = category_ids[int(cls)] if 0 <= int(cls) < len(category_ids) else -1
        if category >= 0:
            out.append({"image_id": image_id, "category_id": category, "score": float(score),
                        "bbox": [x1, y1, x2 - x1, y2 - y1]})
    return out


def coco_metrics(coco: dict[str, Any], detections: list[dict[str, Any]], image_ids: Sequence[int]
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """COCOeval's box metrics over ``image_ids`` (``COCO_METRICS``) and each category's AP (NaN where the
    images hold none of it), from the ground truth ``coco`` and the ``detections``."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        from pvt_deploy.errors import BackendUnavailableError

        raise BackendUnavailableError("COCO metrics need pycocotools: pip install pycocotools") from None

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": coco["images"], "categories": coco["categories"],
                         "annotations": _annotations(coco["annotations"])}
        truth.dataset.setdefault("info", {})
        truth.createIndex()
        if detections:
            found = truth.loadRes(detections)
        else:  # loadRes reads its first entry: no detections is an empty result set, AP 0 where boxes exist
            found = COCO()
            found.dataset = {**truth.dataset, "annotations": []}
            found.createIndex()
        ev = COCOeval(truth, found, "bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # stats are -1 where no ground truth of that kind exists (no small objects, say): reported as NaN
    metrics = {k: (float(v) if v >= 0 else float("nan")) for k, v in zip(COCO_METRICS, ev.stats, strict=True)}
    precision = ev.eval["precision"][:, :, :, 0, -1]  # IoU x recall x category, all areas, 100 detections
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k]
        p = p[p > -1]
        per_class[str(truth.cats[cat].get("name", cat))] = float(p.mean()) if p.size else float("nan")
    return metrics, per_class


def _annotations(annotations: list[Any]) -> list[dict[str, Any]]:
    """The ground-truth boxes as COCOeval reads them: ``iscrowd`` 0 and ``area`` the box's where a tool's
    export left them out (COCOeval needs both); entries without a 4-number ``bbox`` (a caption, a
    keypoint-only record) are left out. Each is numbered 1, 2, ... whatever its ``id``: COCOeval keys
    its boxes by id (two of one id are one box) and takes a match with id 0 for none, and Label
    Studio's exports number them from 0."""
    out: list[dict[str, Any]] = []
    for a in annotations:
        box = a.get("bbox") if isinstance(a, dict) else None
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            out.append({"iscrowd": 0, "area": float(box[2]) * float(box[3]), **a, "id": len(out) + 1})
    return out


def confusion(pred: np.ndarray, truth: np.ndarray, classes: int, *, reduce_zero_label: bool,
              label: str = "a label") -> np.ndarray:
    """``classes x classes`` pixel counts (rows: truth, columns: prediction) of one picture. ``truth``
    is the label map's values: with ``reduce_zero_label`` 0 is ignored and the others shift down by one;
    255 and values past the last class are ignored. ``label`` names it where its size is not the picture's."""
    t = truth.astype(np.int64)
    if reduce_zero_label:
        t = np.where((t == 0) | (t == IGNORE_LABEL), IGNORE_LABEL, t - 1)  # 255 stays ignored, as in MMSegmentation
    if pred.shape != t.shape:
        raise InputError(f"{label}: {t.shape[1]}x{t.shape[0]} for a picture of {pred.shape[1]}x{pred.shape[0]} (a "
                         "label has its picture's size, as MMSegmentation reads them)")
    keep = (t >= 0) & (t < classes) & (t != IGNORE_LABEL)
    return np.bincount(classes * t[keep] + pred.astype(np.int64)[keep],
                       minlength=classes * classes).reshape(classes, classes)


def segmentation_metrics(matrix: np.ndarray, names: Sequence[str]) -> tuple[dict[str, float], dict[str, float]]:
    """mIoU, mAcc (means over the classes present in the labels or predicted) and aAcc from a
    confusion matrix, and each such class's IoU."""
    matrix = matrix.astype(np.float64)
    hit = np.diag(matrix)
    truth = matrix.sum(1)
    union = truth + matrix.sum(0) - hit
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, hit / union, np.nan)
        acc = np.where(truth > 0, hit / truth, np.nan)
    total = matrix.sum()
    metrics = {"mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
               "mAcc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
               "aAcc": float(hit.sum() / total) if total else float("nan")}
    keys = [str(names[i]) if i < len(names) else str(i) for i in range(len(iou))]
    shared = {k for k in keys if keys.count(k) > 1}  # a name several classes share (--names car,car,bus): each its own
    per_class = {f"{keys[i]} ({i})" if keys[i] in shared else keys[i]: float(iou[i])
                 for i in np.flatnonzero(union > 0).tolist()}
    return metrics, per_class


def _read_label(path: Path) -> tuple[np.ndarray, bool]:
    """A label map's class ids, and whether it is 1-bit (mode ``1``: ids 0 and 1, as MMSegmentation's Pillow
    reading gives them; a viewer shows 1 as white, OpenCV reads it as 255). A label compressed lossy (a
    JPEG named .png, a JPEG-compressed TIFF) is refused: its ids are changed along every edge."""
    from PIL import Image, UnidentifiedImageError

    from pvt_deploy.io.sources import _quiet_pillow

    _quiet_pillow()  # as in _colour_pictures
    try:
        with Image.open(path) as im:
            if im.format == "JPEG" or str(im.info.get("compression", "")).endswith("jpeg"):
                raise InputError(f"label {path}: JPEG-compressed, which changes the class ids along every edge: save "
                                 "it as PNG")
            if im.mode == "1":
                return np.asarray(im).astype(np.uint8), True
            if im.mode == "F":  # one channel, but of 32-bit floats (a GIS tool's TIFF): no class ids
                raise InputError(f"label {path}: 32-bit floating-point values (a picture of mode F), not class ids: "
                                 "save the ids as whole numbers (an 8 or 16-bit PNG or TIFF)")
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise InputError(f"label {path}: a picture of mode {im.mode}, not one channel of class ids")
            return np.asarray(im), False
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"label {path}: cannot read it ({e})") from None


# -- the run ----------------------------------------------------------------------------------------------
def _by_input_size(pictures: list[Path], predictor: Predictor) -> list[Path]:
    """``pictures`` in order of the input size the predictor's preprocessing gives each, read from its
    file's header (one read a picture; none where every picture gets one size), those of no known size
    last: batches of one size are then full. The pipeline's ``same_size`` keeps them so where a header
    is wrong."""
    from pvt_deploy.io.sources import picture_size

    pre = predictor.preprocessor
    if pre.one_size:
        return pictures
    unknown = (1 << 30, 1 << 30)

    def key(path: Path) -> tuple[int, int]:
        size = picture_size(path)
        try:
            return pre.plan(*size).input_hw if size is not None else unknown
        except InputError:  # outside the graph's range: refused as it runs
            return unknown

    return sorted(pictures, key=key)


def evaluate(model: Model, data: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None,
             masks: str | os.PathLike[str] | None = None, limit: int | None = None, imgsz: Any = None,
             batch: int | None = None, conf: float | None = None, iou: float | None = None,
             max_det: int | None = None, reduce_zero_label: bool = True,
             progress: Callable[[int, int], None] | None = None) -> ValReport:
    """Run ``model`` over the labelled dataset ``data`` and measure it (see the module docstring).
    ``progress(done, total)`` is called after each picture. A ``batch`` of several pictures holds pictures
    of one input size only (taken in order of size): none is padded to another's, which attention would
    see, so the metric is ``batch=1``'s."""
    dataset = open_dataset(data, model.task, model.names, images=images, masks=masks, limit=limit,
                           reduce_zero_label=reduce_zero_label)
    settings: dict[str, Any] = {k: v for k, v in (("conf", conf), ("iou", iou), ("max_det", max_det)) if v is not None}
    pictures = dataset.images
    if isinstance(batch, int) and batch > 1:
        pictures = _by_input_size(pictures, model.predictor(imgsz=imgsz, conf=conf, iou=iou, max_det=max_det))
    results = model.predict([str(p) for p in pictures], stream=True, imgsz=imgsz, batch=batch, conf=conf,
                            iou=iou, max_det=max_det, topk=5 if model.task == "classify" else None, same_size=True)
    total = len(dataset.images)
    detections: list[dict[str, Any]] = []
    matrix = np.zeros((len(model.names),) * 2, np.int64) if model.task == "segment" else None
    top1 = top5 = done = 0
    evaluated: list[int] = []
    classes = {c["id"] - 1 for c in dataset.coco["categories"]} if dataset.yolo and dataset.coco else set()
    # a COCO file's boxes are in the pixels of the pictures it was made on, whose size it gives
    sizes = {im["id"]: (im.get("height"), im.get("width")) for im in dataset.coco["images"]
             } if dataset.coco and not dataset.yolo else {}
    misfits: list[str] = []
    left_out: dict[str, list[str]] = {}  # detect, YOLO: label lines left out, by why
    lines = 0  # detect, YOLO: label lines read as boxes
    beyond: list[str] = []  # segment: labels holding values past the model's classes (not 255)
    negative: list[str] = []  # segment: labels holding values under 0 (an int32 TIFF's or PNG's), no class id
    bits: list[str] = []  # segment: 1-bit labels
    with contextlib.closing(results):
        for result in results:
            label = dataset.labels[str(result.path)]
            if dataset.yolo:  # the truth in this picture's pixels, as it was read (EXIF orientation applied)
                assert dataset.coco is not None
                image_id = len(dataset.coco["images"]) + 1
                h, w = result.orig_shape
                dataset.coco["images"].append({"id": image_id, "file_name": str(result.path), "height": h,
                                               "width": w})
                boxes = yolo_annotations(label, image_id, (h, w), classes, left_out)
                dataset.coco["annotations"] += boxes
                lines += len(boxes)
                label = image_id
            if model.task == "detect":
                evaluated.append(label)
                given = sizes.get(label)
                if given and all(given) and given != tuple(result.orig_shape):
                    misfits.append(f"{Path(result.path).name} {result.orig_shape[1]}x{result.orig_shape[0]}, "
                                   f"{given[1]}x{given[0]} in the file")
                detections += coco_detections(result, label, dataset.category_ids)
            elif model.task == "classify":
                assert result.probs is not None
                top = result.probs.top5
                top1 += int(top[0] == label)
                top5 += int(label in top)
            else:
                assert matrix is not None and result.mask is not None
                truth, one_bit = _read_label(label)
                if one_bit:
                    bits.append(Path(label).name)
                matrix += confusion(result.mask, truth, len(model.names),
                                    reduce_zero_label=dataset.reduce_zero_label, label=f"label {label}")
                # values past the classes are ignored as 255 is: labels of another class list are said, not
                # scored on what is left of them
                past = truth[(truth >= len(model.names) + dataset.reduce_zero_label) & (truth != IGNORE_LABEL)]
                if past.size:
                    beyond.append(f"{Path(label).name}: {int(past.max())}")
                # ignored as those past the classes are; only a signed label (an int32 TIFF's or PNG's) holds any
                if truth.dtype.kind == "i" and truth.size and (low := int(truth.min())) < 0:
                    negative.append(f"{Path(label).name}: {low}")
            done += 1
            if progress is not None:
                progress(done, total)
    skipped = total - done
    if left_out:
        faults = sum(len(v) for v in left_out.values())
        log.warning("dataset %s: %d of the %s of its label files %s left out: %s", data, faults,
                    count_of(lines + faults, "line"), _are(faults),
                    "; ".join(f"{len(v)} {fault} ({_first(v)})"
                              for fault, v in left_out.items()))
    if misfits:
        log.warning("dataset %s: %d of %s %s not of the size it lists (%s): its boxes will not fit (a resized copy "
                    "of the pictures? EXIF rotation?)", data, len(misfits), count_of(done, "picture"),
                    _are(len(misfits)), misfits[0])
    per_class: dict[str, float] = {}
    if model.task == "detect":
        assert dataset.coco is not None
        metrics, per_class = coco_metrics(dataset.coco, detections, evaluated)
        if all(np.isnan(v) for v in metrics.values()):  # a table of dashes, else
            log.warning("dataset %s: no box of its categories in the %s evaluated: AP and AR measure nothing", data,
                        count_of(done, "picture"))
    elif model.task == "classify":
        metrics = {"top1": top1 / done, "top5": top5 / done}
    else:
        assert matrix is not None
        metrics, per_class = segmentation_metrics(matrix, model.names)
        n = len(model.names)
        ids = f"1-{n}, 0 ignored: --reduce-zero-label" if dataset.reduce_zero_label else f"0-{n - 1}"
        if beyond:
            log.warning("dataset %s: %d of %s %s values past the model's %s (%s; its ids are %s): those pixels are "
                        "ignored, as 255 is (labels of another class list?)", data, len(beyond), count_of(done, "label"),
                        "holds" if len(beyond) == 1 else "hold", count_of(n, "class", "classes"), beyond[0], ids)
        if negative:
            log.warning("dataset %s: %d of %s %s negative values, no class id (%s; its ids are %s): those pixels are "
                        "ignored, as 255 is", data, len(negative), count_of(done, "label"),
                        "holds" if len(negative) == 1 else "hold", negative[0], ids)
        if bits and dataset.reduce_zero_label:  # a mask of 0 and 1 (background, object) is scored as class 0 only
            log.warning("dataset %s: %d of %s %s 1-bit (%s: ids 0 and 1 only), read with --reduce-zero-label: 0 is "
                        "ignored and 1 is class 0 (%s); --no-reduce-zero-label reads 0 and 1 as classes 0 and 1",
                        data, len(bits), count_of(done, "label"), _are(len(bits)), bits[0], model.names[0])
        if all(np.isnan(v) for v in metrics.values()):  # a table of dashes, else
            log.warning("dataset %s: no pixel of the model's classes in the %s evaluated: mIoU measures nothing",
                        data, count_of(done, "label"))
    summary = model.last_summary
    fps = round(float(summary.fps), 2) if summary is not None else None
    return ValReport(model.task, dataset.description, metrics, done, skipped, per_class, settings, fps)
