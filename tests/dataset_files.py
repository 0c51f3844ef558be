"""Image files and Ultralytics-layout data sets written for tests of what reads a set of images
(``export --calib`` / ``--images``, ``check --images``)."""

from __future__ import annotations

from pathlib import Path


def jpgs(folder: Path, good: int, bad: int) -> Path:
    """``folder`` (made here) holding ``good`` decodable 64x48 JPEGs ``good<i>.jpg`` and ``bad`` files
    ``bad<i>.jpg`` that are not pictures."""
    import cv2
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(good):
        cv2.imwrite(str(folder / f"good{i}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    for i in range(bad):
        (folder / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    return folder


def dataset(root: Path, *, val: int = 2, train: int = 3, yaml: str | None = None) -> Path:
    """An Ultralytics-layout data set: images/{val,train} beside labels/{val,train}, and its data.yaml."""
    (root / "images").mkdir(parents=True)
    for split, n in (("val", val), ("train", train)):
        jpgs(root / "images" / split, good=n, bad=0)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            (root / "labels" / split / f"good{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    data = root / "data.yaml"
    data.write_text(yaml if yaml is not None else
                    "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: person\n")
    return data
