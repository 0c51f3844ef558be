"""Class names shipped with the package: ImageNet-1k, COCO (80, mmdet order), ADE20K (150); and ImageNet-1k's
WordNet ids (``n01440764``, ...) in class order, the names of its class folders. Also the class names a user
gives (``--names``: :func:`given_names`) and those of an Ultralytics dataset YAML (:func:`yaml_names`)."""

from __future__ import annotations

import os
import reprlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from pvt_deploy.errors import InputError, option
from pvt_deploy.utils import count_of, joined_lines
from pvt_deploy.utils.files import read_text

DATASETS = {"imagenet": 1000, "coco": 80, "ade20k": 150}


@cache
def class_names(dataset: str) -> tuple[str, ...]:
    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    text = resources.files(__package__).joinpath(f"{dataset}.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != DATASETS[dataset]:
        raise RuntimeError(f"{dataset}.txt has {len(names)} names, expected {DATASETS[dataset]}")
    return names


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-1k's 1000 WordNet ids in class-index order (their sorted order, as torchvision's
    ``ImageFolder`` numbers the ``train``/``val`` class folders)."""
    text = resources.files(__package__).joinpath("imagenet_wnids.txt").read_text(encoding="utf-8")
    wnids = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(wnids) != DATASETS["imagenet"] or list(wnids) != sorted(wnids):
        raise RuntimeError(f"imagenet_wnids.txt has {len(wnids)} ids, expected 1000 in sorted order")
    return wnids


def yaml_names(path: str | os.PathLike[str], *, given_as: str = "dataset") -> dict[int, str]:
    """Class id -> name of an Ultralytics dataset YAML's ``names:``, a list or a mapping of ids (``0: person``,
    or ``"0": person`` as Ultralytics reads it too). A name left blank (YAML's null) is ``""``, not ``"None"``.
    ``given_as``: what the user gave the file as, which its errors name it by (``dataset``; ``--names``)."""
    import yaml

    path = Path(path)
    text = read_text(path, what=given_as)  # UTF-8 or UTF-16, as a Windows tool may save it
    try:
        data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise InputError(f"{given_as} {path}: cannot read it ({joined_lines(e)[:200]})") from e
    given = data.get("names") if isinstance(data, dict) else None
    if isinstance(given, dict) and all(isinstance(k, int) and k >= 0 or isinstance(k, str) and k.strip().isdigit()
                                       for k in given):
        return {int(k): _text(v) for k, v in given.items()}
    if isinstance(given, list):
        return dict(enumerate(_text(v) for v in given))
    raise InputError(f"{given_as} {path}: names: the class names are missing (a list, or ids to names)")


def _text(value: object) -> str:
    return "" if value is None else str(value)


NAME_FILES = (".txt", ".names", ".yaml", ".yml")  # .names: Darknet's, one a line as a .txt


def given_names(names: str | os.PathLike[str] | Sequence[str], count: int, what: str) -> list[str]:
    """The class names ``names`` gives ``what`` (a model of ``count`` classes), in class order
    (:func:`parse_names`). A number of names other than ``count`` is bad input, as is any name for a model with no
    classes."""
    out = parse_names(names)
    if count == 0:
        raise InputError(f"{option('names')}: {what} has no classes to name")
    if len(out) != count:
        raise InputError(f"{option('names')} gives {len(out)} name{'s' * (len(out) != 1)}, but {what} has {count} "
                         "classes")
    return out


def parse_names(names: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    """The class names ``names`` gives, in class order, whatever model they are for: comma-separated
    (``car,truck,bus``), a list in brackets (``["car, red", "bus"]``, YAML's or JSON's: the one way to give a name
    holding a comma on a command line), a list or array of them (Python), a ``.txt`` or Darknet ``.names`` file
    (one a line) or a dataset YAML (its ``names:``, ids 0..N-1); an existing file of another kind (``classes.csv``)
    is refused as such, as is an empty name. What export reads before the model is loaded, so that a file named
    wrong is said before a checkpoint is read."""
    if hasattr(names, "tolist") and not isinstance(names, (str, os.PathLike)):  # a numpy array of names
        names = names.tolist()
    if isinstance(names, os.PathLike) or (isinstance(names, str) and (names.strip().lower().endswith(NAME_FILES) or
                                                                      _a_file(names))):
        out = _names_file(Path(names))
    elif isinstance(names, str) and names.strip().startswith("[") and names.strip().endswith("]"):
        out = [n.strip() for n in _bracketed(names)]
    elif isinstance(names, str):
        out = [n.strip() for n in names.split(",")]
    elif isinstance(names, Sequence) and all(isinstance(n, str) for n in names):
        out = [n.strip() for n in names]
    else:
        raise InputError(f"{option('names')} must be names separated by commas, a list of them, or a .txt, .names or "
                         f"dataset YAML file, got {' '.join(reprlib.repr(names).split())}")
    empty = [i for i, name in enumerate(out) if not name]
    if empty:  # by class id: the names given around it may be a thousand
        shown = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise InputError(f"{option('names')}: an empty name for {'class' if len(empty) == 1 else 'classes'} {shown} "
                         f"(of {count_of(len(out), 'name')} given)")
    return out


def _a_file(text: str) -> bool:
    """Whether ``text`` is the path of an existing file with a suffix (``classes.csv``): a file of names of
    another kind, which is refused by name, not taken for one class called so."""
    return "," not in text and bool(Path(text).suffix) and os.path.isfile(text)


def _bracketed(text: str) -> list[str]:
    """The names of a list in brackets, read as YAML (JSON is YAML): ``[car, "car, red"]``. Every name is the
    text as typed (YAML's base loader): ``[cat, dog, on]`` names a class ``on``, not ``True``, and ``[007, 1.50]``
    names ``007`` and ``1.50``, not ``7`` and ``1.5``."""
    import yaml

    try:
        value = yaml.load(text, Loader=yaml.BaseLoader)  # makes only str, list and dict: no code
    except yaml.YAMLError as e:
        raise InputError(f"{option('names')} {reprlib.repr(text)}: not a list of names ({joined_lines(e)[:160]}); "
                         'quote a name that holds a comma: ["car, red", "bus"]') from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{option('names')} {reprlib.repr(text)}: not a list of names; "
                         'quote a name that holds a comma: ["car, red", "bus"]')
    return value


def _names_file(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{option('names')} {path}: no such file")
    if path.suffix.lower() not in NAME_FILES:
        raise InputError(f"{option('names')} {path}: a file of names is a .txt or .names (one a line) or a dataset YAML")
    if path.suffix.lower() in (".txt", ".names"):
        text = read_text(path, what=option("names"))
        return [line.strip() for line in text.splitlines() if line.strip()]
    ids = yaml_names(path, given_as=option("names"))
    if sorted(ids) != list(range(len(ids))):
        raise InputError(f"{option('names')} {path}: its names: have ids {sorted(ids)[:5]}..., not 0..{len(ids) - 1}")
    return [ids[i] for i in range(len(ids))]
