"""Images for INT8 calibration and the parity gate, preprocessed exactly as at inference.

Calibration ranges are only right for the inputs the graph will see, so calibration images go through
the same :class:`~pvt_deploy.tasks.preprocess.Preprocessor` (same resize policy, size, padding) that
every backend uses at inference. Without a folder the bundled sample photos are used, which is enough
to produce a working graph but not a tuned one — the exporter says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pvt_deploy.errors import InputError
from pvt_deploy.tasks.preprocess import Letterbox, Preprocessor

log = logging.getLogger("pvt_deploy.export")

DEFAULT_CALIB_IMAGES = 8  # a handful: MinMax calibration of a few images already gives usable ranges
DEFAULT_PARITY_IMAGES = 4


@dataclass
class Batch:
    """One graph input (N, 3, H, W) float32 and the letterbox record of each image in it."""

    images: np.ndarray
    metas: list[Letterbox]
    names: list[str]


def list_images(folder: str | os.PathLike[str], limit: int | None = None, *, what: str = "image") -> list[Path]:
    """The image files of ``folder`` as ``infer`` and ``check --images`` take them (:func:`open_source`):
    a folder (not recursive), one image, a glob (``shots/**/*.jpg``) or a ``.txt`` list; in the order
    they run, at most ``limit``."""
    from pvt_deploy.io.sources import VIDEO_SUFFIXES, ImageSource, is_live, open_source

    text = os.fspath(folder)
    if is_live(text) or Path(text).suffix.lower() in VIDEO_SUFFIXES:
        raise InputError(f"{what} images {folder}: a folder, an image file or a glob is wanted, not a video")
    try:
        with open_source(text) as source:
            if not isinstance(source, ImageSource):  # a video without a video's suffix
                raise InputError(f"{what} images {folder}: a folder, an image file or a glob is wanted, not a video")
            files = [p for p in source.items if isinstance(p, Path)]
    except InputError as e:
        raise InputError(f"{what} images: {e.args[0]}", hint=e.hint) from None
    return files[:limit] if limit else files


def usable_images(folder: str | os.PathLike[str], limit: int | None = None, *, what: str = "image") -> list[Path]:
    """The first ``limit`` image files of ``folder`` (:func:`list_images`, in that order) that decode.

    Unreadable files are skipped with one warning naming them, as ``infer`` skips them; an
    :class:`InputError` only when none decodes. Run before any slow export work, so a bad folder
    fails in a second rather than after tracing.
    """
    good: list[Path] = []
    bad: list[str] = []
    for path in list_images(folder, what=what):
        if limit and len(good) >= limit:
            break
        try:
            read_rgb(path)
        except InputError:
            bad.append(path.name)
            continue
        good.append(path)
    if bad:
        names = ", ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        if not good:
            raise InputError(f"{what} folder {folder}: none of its {len(bad)} image(s) can be read ({names})")
        log.warning("%s folder %s: skipped %d unreadable image(s): %s", what, folder, len(bad), names)
    return good


def bundled_images() -> list[Path]:
    from pvt_deploy.assets import sample_images

    return sample_images()


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    import cv2

    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise InputError(f"{path}: cannot read this image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def make_batches(paths: Sequence[Path], pre: Preprocessor, *, batch: int | None = None) -> list[Batch]:
    """Preprocess ``paths`` into graph inputs.

    ``batch=None`` (dynamic graphs): one image per input, each at its own planned size — what single-
    image inference feeds. ``batch=B`` (static graphs): groups of exactly ``B``, the last one filled by
    repeating images, because a static graph accepts nothing else.
    """
    images = [(p.name, read_rgb(p)) for p in paths]
    if not images:
        raise InputError("no images to preprocess")
    groups: list[list[tuple[str, np.ndarray]]]
    if batch is None:
        groups = [[im] for im in images]
    else:
        groups = [images[i:i + batch] for i in range(0, len(images), batch)]
        last = groups[-1]
        while len(last) < batch:
            last.append(images[len(last) % len(images)])
    out = []
    for group in groups:
        arr, metas = pre.batch([im for _, im in group])
        out.append(Batch(arr, metas, [name for name, _ in group]))
    return out


def calibration_reader(batches: Sequence[Batch], input_name: str = "images") -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over preprocessed batches (rewindable)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it: Iterator[Batch] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._it, None)
            return None if b is None else {input_name: b.images}

        def rewind(self) -> None:
            self._it = iter(batches)

    return _Reader()
