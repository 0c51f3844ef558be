"""Class names shipped with the package: ImageNet-1k, COCO (80, mmdet order), ADE20K (150)."""

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
