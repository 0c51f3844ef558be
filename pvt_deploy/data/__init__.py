"""Class names shipped with the package: ImageNet-1k, COCO (80, mmdet order), ADE20K (150); and ImageNet-1k's
WordNet ids (``n01440764``, ...) in class order, the names of its class folders."""

from __future__ import annotations

from functools import cache
from importlib import resources

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
