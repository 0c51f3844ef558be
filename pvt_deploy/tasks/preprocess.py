"""Image -> graph input, shared by every backend (and by calibration and the parity gate).

The graph takes float32 RGB pixels in 0..255 (NCHW) and normalises inside, so preprocessing is only
geometry: resize (and pad or crop). Each image gets a :class:`Letterbox` record that post-processing
uses to map results back to original pixels. The three policies and their official counterparts are
described in docs/ARCHITECTURE.md ("Preprocessing").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pvt_deploy.errors import InputError, option
from pvt_deploy.manifest import RESIZE_POLICIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Letterbox:
    """Where an original image sits inside the graph input.

    ``orig_hw``: original (H, W). ``resized_hw``: size of the resized image content inside the input
    (its top-left corner is ``offset``; negative offsets mean a centre crop). ``input_hw``: the tensor
    size fed to the graph. ``scale``: (sy, sx) = resized / original.
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_hw: tuple[int, int]
    offset: tuple[int, int] = (0, 0)

    @property
    def scale(self) -> tuple[float, float]:
        return self.resized_hw[0] / self.orig_hw[0], self.resized_hw[1] / self.orig_hw[1]

    def to_json(self) -> dict[str, Any]:
        return {"orig_hw": list(self.orig_hw), "resized_hw": list(self.resized_hw),
                "input_hw": list(self.input_hw), "offset": list(self.offset)}


def _round_half_up(x: float) -> int:
    return int(x + 0.5)  # mmcv.rescale_size rounding


def keep_ratio_size(h: int, w: int, long_max: int, short_max: int) -> tuple[int, int]:
    """mmcv ``imrescale``: the largest keep-ratio size with long side <= long_max, short <= short_max."""
    scale = min(long_max / max(h, w), short_max / min(h, w))
    return max(1, _round_half_up(h * scale)), max(1, _round_half_up(w * scale))


def fit_box_size(h: int, w: int, box_h: int, box_w: int) -> tuple[int, int]:
    """Keep-ratio size that fits inside a (box_h, box_w) box (orientation matters)."""
    scale = min(box_h / h, box_w / w)
    return max(1, min(box_h, _round_half_up(h * scale))), max(1, min(box_w, _round_half_up(w * scale)))


def ceil_to(x: int, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


class Preprocessor:
    """Turns RGB uint8 images into the ``images`` input described by a manifest's ``preprocess``.

    ``dynamic`` says whether the graph accepts other sizes than ``imgsz`` (read from the manifest's
    ``dynamic`` entry). ``imgsz`` may be overridden for dynamic graphs (``--imgsz`` at inference).
    """

    def __init__(self, spec: Mapping[str, Any], *, dynamic: bool, imgsz: Sequence[int] | None = None,
                 dynamic_range: Mapping[str, Sequence[int]] | None = None) -> None:
        self.spec = dict(spec)
        self.policy = spec.get("resize", "letterbox")
        if self.policy not in RESIZE_POLICIES:  # read_manifest refuses it first; a spec given here is not read
            raise InputError(f"unknown resize policy {self.policy!r} in the manifest")
        size = imgsz if imgsz is not None else spec.get("imgsz", (640, 640))
        if isinstance(size, int):
            size = (size, size)
        self.imgsz = (int(size[0]), int(size[1]))
        self.stride = int(spec.get("stride", 32))
        self.dynamic = dynamic
        if dynamic and self.policy != "resize_crop" and any(v % self.stride for v in self.imgsz):
            # A letterbox to 33 would be padded to 64 anyway: use the whole input instead.
            rounded = (ceil_to(self.imgsz[0], self.stride), ceil_to(self.imgsz[1], self.stride))
            log.warning("imgsz %dx%d is not a multiple of the stride %d; using %dx%d", *self.imgsz, self.stride,
                        *rounded)
            self.imgsz = rounded
        self.dynamic_range = dynamic_range
        self.pad_value = tuple(float(v) for v in spec.get("pad_value", spec.get("mean", (0.0, 0.0, 0.0))))
        self.crop_ratio = float(spec.get("crop_ratio", 0.875))

    # -- geometry -------------------------------------------------------------------------------
    @property
    def one_size(self) -> bool:
        """Whether every picture's input is ``imgsz`` (a fixed-size graph, a centre crop)."""
        return not self.dynamic or self.policy == "resize_crop"

    def plan(self, h: int, w: int) -> Letterbox:
        """Compute the resize/pad geometry for an (h, w) image without touching pixels."""
        if h <= 0 or w <= 0:
            raise InputError(f"empty image ({h}x{w})")
        th, tw = self.imgsz
        if self.policy == "resize_crop":
            short = int(min(th, tw) / self.crop_ratio)
            if h <= w:
                rh, rw = short, int(short * w / h)
            else:
                rh, rw = int(short * h / w), short
            top = int(round((rh - th) / 2.0))
            left = int(round((rw - tw) / 2.0))
            return Letterbox((h, w), (rh, rw), (th, tw), (-top, -left))
        if not self.dynamic:
            rh, rw = fit_box_size(h, w, th, tw)
            return Letterbox((h, w), (rh, rw), (th, tw))
        rh, rw = keep_ratio_size(h, w, max(th, tw), min(th, tw))
        if self.policy == "align":
            rh, rw = ceil_to(rh, self.stride), ceil_to(rw, self.stride)
        return Letterbox((h, w), (rh, rw), self._in_range(ceil_to(rh, self.stride), ceil_to(rw, self.stride)))

    def _in_range(self, ih: int, iw: int) -> tuple[int, int]:
        """The input size of content that fills (ih, iw): padded up to the graph's minimum where a side is
        under it (a wide strip: 2x2000 letterboxes to a height of 32), as a batch pads a picture to the
        largest in it; post-processing maps results back through the record's ``resized_hw`` whatever the
        padding. A side over the graph's maximum is refused."""
        rng = self.dynamic_range
        if not rng:
            return ih, iw
        fed = []
        for name, v in (("height", ih), ("width", iw)):
            lo, hi = rng.get(name, (0, 1 << 30))
            v = max(v, ceil_to(int(lo), self.stride))
            if v > hi:
                raise InputError(f"input {name} {v} is outside the graph's range [{lo}, {hi}]; pass a smaller "
                                 f"{option('imgsz')}, or re-export with a larger {option('max_size')}")
            fed.append(v)
        return fed[0], fed[1]

    # -- pixels ---------------------------------------------------------------------------------
    def resize(self, image: np.ndarray, box: Letterbox) -> np.ndarray:
        rh, rw = box.resized_hw
        if self.policy == "resize_crop":
            from PIL import Image  # PIL bicubic with antialiasing, as the official (timm/DeiT) eval

            resized = np.asarray(Image.fromarray(image).resize((rw, rh), Image.Resampling.BICUBIC))
            top, left = -box.offset[0], -box.offset[1]
            th, tw = box.input_hw
            return resized[top:top + th, left:left + tw]
        if (rh, rw) == image.shape[:2]:
            return image
        return cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """One RGB uint8 (H, W, 3) image -> (float32 (3, H', W') input, record)."""
        image = _as_rgb(image)
        box = self.plan(image.shape[0], image.shape[1])
        out = np.empty((3, *box.input_hw), dtype=np.float32)
        self._fill(out, self.resize(image, box), box)
        return out, box

    def _fill(self, out: np.ndarray, content: np.ndarray, box: Letterbox) -> None:
        ch, cw = content.shape[:2]
        out[:, :ch, :cw] = content.transpose(2, 0, 1)
        if ch < out.shape[1] or cw < out.shape[2]:
            for c in range(3):
                out[c, ch:, :] = self.pad_value[c]
                out[c, :ch, cw:] = self.pad_value[c]

    def batch(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """Several images -> one (N, 3, H, W) batch, padded to the largest planned size."""
        if not images:
            raise InputError("empty batch")
        images = [_as_rgb(im) for im in images]
        boxes = [self.plan(im.shape[0], im.shape[1]) for im in images]
        ih = max(b.input_hw[0] for b in boxes)
        iw = max(b.input_hw[1] for b in boxes)
        out = np.empty((len(images), 3, ih, iw), dtype=np.float32)
        records = []
        for i, (im, box) in enumerate(zip(images, boxes, strict=True)):
            self._fill(out[i], self.resize(im, box), box)
            records.append(Letterbox(box.orig_hw, box.resized_hw, (ih, iw), box.offset))
        return out, records


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image as it is (what every source yields); anything else converted as
    :func:`pvt_deploy.io.sources.as_rgb_array` converts an in-memory picture (16-bit rounded, floats
    read as 0..1 or 0..255, grey repeated, alpha dropped), so a direct caller gets the same pixels."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)  # a view such as img[..., ::-1] is copied once, for cv2
    from pvt_deploy.io.sources import as_rgb_array

    return as_rgb_array(image)


def preprocess_spec(task: str, imgsz: Sequence[int], *, dynamic: bool, mean: Sequence[float],
                    std: Sequence[float]) -> dict[str, Any]:
    """The manifest ``preprocess`` record for a task (used by the exporter)."""
    if task == "classify":
        policy, interp = "resize_crop", "bicubic"
    elif task == "segment" and dynamic:
        policy, interp = "align", "bilinear"
    else:
        policy, interp = "letterbox", "bilinear"
    return {"color": "RGB", "layout": "NCHW", "dtype": "float32", "mean": list(mean), "std": list(std),
            "normalize_in_graph": True, "resize": policy, "imgsz": [int(imgsz[0]), int(imgsz[1])],
            "stride": 32, "interpolation": interp, "pad_value": list(mean), "crop_ratio": 0.875}
