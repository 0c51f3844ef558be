"""Per-image results: what ``Model.predict`` yields and what the sinks write.

In the spirit of Ultralytics' ``Results``: one :class:`Result` per image or video frame, holding the
original picture (RGB), where it came from, the timings, and the task's output in *original-image*
pixels, already post-processed by the shared code in :mod:`pvt_deploy.tasks.postprocess`:

* detect: ``result.boxes`` (:class:`Boxes`: ``xyxy``, ``conf``, ``cls``, ``xywh``, ``xyxyn``, names)
* segment: ``result.mask`` (class id per pixel, ``(H, W)`` int32) and ``result.areas()``
* classify: ``result.probs`` (:class:`Probs`: ``top5``, ``top5conf``, ``top1``, ``top1conf``)

``plot()`` draws with :mod:`pvt_deploy.tasks.visualize`; ``to_dict()``/``to_json()`` give the
record written as one JSON Lines row per frame; ``save()`` writes the annotated picture.
Results are plain numpy: nothing here knows which backend produced them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from pvt_deploy.tasks.postprocess import (
    Detections,
    postprocess_detect,
    postprocess_features,
    postprocess_segment,
    softmax,
    top_k,
)
from pvt_deploy.tasks.preprocess import Letterbox
from pvt_deploy.utils import is_integer, is_number, whole_number
from pvt_deploy.utils.files import json_dumps

__all__ = ["Boxes", "FrameLike", "Probs", "Result", "make_results"]

SPEED_KEYS = ("preprocess", "inference", "postprocess")
DRAW_CONF = 0.25
"""The score from which boxes are drawn when no ``conf`` was asked for. The default ``conf`` (the
manifest's 0.05) keeps what a COCO mAP needs, up to 100 boxes an image, which on a picture is clutter;
Ultralytics draws from 0.25 and MMDetection's demos from 0.3. Every detection stays in the JSON."""


def draw_threshold(conf: float | None, draw_conf: float | None) -> float:
    """The score from which boxes are drawn: ``draw_conf`` when given, else ``conf`` when given (what
    was asked for is what is drawn), else :data:`DRAW_CONF`."""
    return float(draw_conf if draw_conf is not None else conf if conf is not None else DRAW_CONF)


def _name(names: Sequence[str], cid: int) -> str:
    return names[cid] if 0 <= cid < len(names) else str(cid)


_HostT = TypeVar("_HostT", bound="_OnHost")


class _OnHost:
    """``cpu()`` and ``numpy()`` for code written against Ultralytics, whose results hold torch
    tensors (``r.boxes.cpu().numpy().xyxy``): these results are numpy arrays in host memory already,
    whatever the backend, so both return the object itself."""

    def cpu(self: _HostT) -> _HostT:
        return self

    def numpy(self: _HostT) -> _HostT:
        return self


@dataclass(eq=False)
class Boxes(_OnHost):
    """Detections of one image in original pixels, best score first.

    ``xyxy`` ``(N, 4)`` float32, ``conf`` ``(N,)`` float32, ``cls`` ``(N,)`` int64 class ids,
    ``orig_shape`` ``(H, W)`` for the normalised forms. Indexing returns a filtered :class:`Boxes`
    (``r.boxes[r.boxes.conf > 0.5]``); ``data`` is the ``(N, 6)`` table Ultralytics code reads.
    """

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    names: Sequence[str] = field(default=(), repr=False)  # the model's every class: 80 names in a log line
    orig_shape: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.conf.shape[0])

    def __getitem__(self, index: Any) -> Boxes:
        return Boxes(self.xyxy[index].reshape(-1, 4), np.atleast_1d(self.conf[index]),
                     np.atleast_1d(self.cls[index]), self.names, self.orig_shape)

    def __iter__(self) -> Iterator[Boxes]:
        for i in range(len(self)):
            yield self[i : i + 1]

    @property
    def data(self) -> np.ndarray:
        """``(N, 6)`` float32 rows of x1, y1, x2, y2, conf, class id (Ultralytics' ``Boxes.data``)."""
        return np.concatenate([self.xyxy, self.conf[:, None], self.cls[:, None].astype(np.float32)],
                              axis=1).astype(np.float32, copy=False)

    @property
    def xywh(self) -> np.ndarray:
        """Centre x, centre y, width, height."""
        b = self.xyxy
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
                        axis=1).astype(np.float32)

    @property
    def xyxyn(self) -> np.ndarray:
        """``xyxy`` divided by the image width/height (0..1)."""
        h, w = self.orig_shape
        return (self.xyxy / np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)

    @property
    def xywhn(self) -> np.ndarray:
        h, w = self.orig_shape
        return (self.xywh / np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)

    @property
    def labels(self) -> list[str]:
        return [_name(self.names, int(c)) for c in self.cls]

    def to_list(self, decimals: int = 2) -> list[dict[str, Any]]:
        decimals = whole_number("decimals", decimals, minimum=0)
        return [{"box": [round(float(v), decimals) for v in box], "score": round(float(s), 4),
                 "class_id": int(c), "class": _name(self.names, int(c))}
                for box, s, c in zip(self.xyxy, self.conf, self.cls, strict=True)]

    @classmethod
    def from_detections(cls, det: Detections, names: Sequence[str], orig_shape: tuple[int, int]) -> Boxes:
        return cls(det.boxes.astype(np.float32), det.scores.astype(np.float32), det.class_ids.astype(np.int64),
                   names, orig_shape)


@dataclass(eq=False)
class Probs(_OnHost):
    """Top-k classification of one image: class ids ``top`` and probabilities ``conf``, best first;
    ``data``: the probability of every class (as Ultralytics' ``probs.data``)."""

    top: np.ndarray
    conf: np.ndarray
    # every class's name and probability: kept out of repr, which printed 1000 of each (27 kB)
    names: Sequence[str] = field(default=(), repr=False)
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    @property
    def top1(self) -> int:
        return int(self.top[0])

    @property
    def top1conf(self) -> float:
        return float(self.conf[0])

    @property
    def top5(self) -> list[int]:
        return [int(i) for i in self.top[:5]]

    @property
    def top5conf(self) -> np.ndarray:
        return self.conf[:5]

    @property
    def labels(self) -> list[str]:
        return [_name(self.names, int(i)) for i in self.top]

    def to_list(self) -> list[dict[str, Any]]:
        return [{"class_id": int(i), "class": _name(self.names, int(i)), "prob": round(float(p), 5)}
                for i, p in zip(self.top, self.conf, strict=True)]


@dataclass(eq=False)
class Result(_OnHost):
    """The result of one image or video frame (see the module docstring).

    ``path``: the image file, video file or stream; ``frame``: the frame number in a video/stream
    (``None`` for still images); ``timestamp``: seconds into the video; ``speed``: milliseconds per
    image for ``preprocess``, ``inference`` and ``postprocess`` (batch time divided by batch size).
    ``location``: the frame's :attr:`~pvt_deploy.io.sources.Frame.location`, the URL ``path`` shows
    without its user name and password, as given (what a writer reads the audio from); never shown.
    """

    task: str
    orig_img: np.ndarray
    path: str = "image0.jpg"
    names: Sequence[str] = ()
    frame: int | None = None
    timestamp: float | None = None
    speed: dict[str, float] = field(default_factory=dict)
    boxes: Boxes | None = None
    mask: np.ndarray | None = None
    probs: Probs | None = None
    features: dict[str, np.ndarray] | None = None
    draw_conf: float | None = None  # boxes scoring below it are not drawn (None: every box)
    palette: Sequence[Sequence[int]] | None = field(default=None, repr=False)  # mask colours (None: pvt-deploy's)
    location: str | None = field(default=None, repr=False)
    # the last drawing: the picture and outputs (the objects) it was drawn from, its settings, the drawing
    _plotted: tuple[tuple[Any, ...], tuple[Any, ...], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def orig_shape(self) -> tuple[int, int]:
        return int(self.orig_img.shape[0]), int(self.orig_img.shape[1])

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (sent to another process, deep-copied) without the drawing :meth:`plot` caches, as
        large again as the picture; the copy draws afresh."""
        return {**self.__dict__, "_plotted": None}

    def __len__(self) -> int:
        if self.boxes is not None:
            return len(self.boxes)
        if self.probs is not None:
            return len(self.probs.top)
        return len(self.areas()) if self.mask is not None else 0

    # -- summaries ----------------------------------------------------------------------------------
    def areas(self) -> list[dict[str, Any]]:
        """Classes present in ``mask``, largest first: ``class_id``, ``class``, ``pixels``, ``fraction``."""
        if self.mask is None:
            return []
        counts = np.bincount(self.mask.reshape(-1).astype(np.int64, copy=False), minlength=len(self.names))
        total = max(int(self.mask.size), 1)
        order = np.argsort(-counts, kind="stable")
        return [{"class_id": int(c), "class": _name(self.names, int(c)), "pixels": int(counts[c]),
                 "fraction": round(float(counts[c]) / total, 5)} for c in order if counts[c] > 0]

    def verbose(self) -> str:
        """One short line: ``"2 person, 1 cup"``, ``"wall 41%, floor 20%"``, ``"tabby 71.2%"``."""
        return self._summary()

    def _summary(self, classes: int | None = None) -> str:
        """:meth:`verbose`; ``classes``: a detector's most frequent classes only, and how many more."""
        if self.boxes is not None:
            if not len(self.boxes):
                return "no detections"
            labels, counts = np.unique(self.boxes.cls, return_counts=True)
            order = np.argsort(-counts, kind="stable")
            shown = ", ".join(f"{counts[i]} {_name(self.names, int(labels[i]))}" for i in order[:classes])
            more = len(order) - len(order[:classes])
            return shown + (f" and {more} more classes" if more else "")
        if self.mask is not None:
            return ", ".join(f"{a['class']} {a['fraction']:.0%}" for a in self.areas()[:3])
        if self.probs is not None:
            return ", ".join(f"{n} {p:.1%}" for n, p in zip(self.probs.labels[:3], self.probs.conf[:3], strict=False))
        if self.features is not None:
            return ", ".join(f"{k} {list(v.shape)}" for k, v in self.features.items())
        return ""

    # -- drawing ------------------------------------------------------------------------------------
    def plot(self, *, conf: bool = True, labels: bool = True, line_width: int | None = None,
             alpha: float = 0.5, legend: int = 5) -> np.ndarray:
        """The original picture with this result drawn on it (a new RGB uint8 array: ``cv2.imwrite`` and
        ``cv2.imshow`` want ``[..., ::-1]`` of it, where Ultralytics' ``plot()`` gives BGR).

        Boxes with ``"name 0.87"`` labels (``conf=False`` drops the score, ``labels=False`` the text),
        those scoring at least ``draw_conf`` (see :data:`DRAW_CONF`; ``None`` draws every box);
        segmentation as a colour overlay (``alpha``; ``palette``'s colours: a checkpoint's own, else
        pvt-deploy's) with the ``legend`` largest classes listed;
        classification as a top-k panel. The last drawing is cached with its settings, so a pipeline
        can draw in its post-processing thread and the writer reuses the picture; other settings, or
        outputs replaced since (a filtered ``r.boxes = r.boxes[r.boxes.conf > 0.5]``), are drawn afresh.
        """
        _check_plot_settings(line_width, alpha, legend)
        width = None if line_width is None else int(line_width)
        settings = (bool(conf), bool(labels), width, float(alpha), int(legend))
        drawn_from = (self.orig_img, self.boxes, self.mask, self.probs, self.draw_conf, self.palette)
        if self._plotted is not None and self._plotted[1] == settings and all(
                a is b for a, b in zip(self._plotted[0], drawn_from, strict=True)):
            cached: np.ndarray = self._plotted[2].copy()  # a new array, as promised: the caller may draw on it
            return cached
        from pvt_deploy.tasks import visualize

        image = self.orig_img
        if self.mask is not None:
            image = visualize.overlay_mask(image, self.mask, alpha=alpha, palette=self.palette)
            if legend:
                shown = self.areas()[:int(legend)]
                image = visualize.draw_topk(image, [(a["class"], a["fraction"]) for a in shown],
                                            class_ids=[a["class_id"] for a in shown])
        if self.boxes is not None:
            b = self.shown_boxes()
            image = visualize.draw_boxes(image, b.xyxy, b.conf if conf else None, b.cls, self.names,
                                         line_width=width, labels=labels)
        if self.probs is not None:
            image = visualize.draw_topk(image, list(zip(self.probs.labels, self.probs.conf.tolist(), strict=True)),
                                        class_ids=self.probs.top.tolist())
        if image is self.orig_img:
            image = image.copy()
        self._plotted = (drawn_from, settings, image)
        fresh: np.ndarray = image.copy()
        return fresh

    def shown_boxes(self) -> Boxes:
        """The boxes ``plot()`` draws, :meth:`save_txt` lists and :meth:`save_crop` cuts out: those
        scoring at least ``draw_conf`` (every box where it is None)."""
        if self.boxes is None:
            from pvt_deploy.errors import InputError

            raise InputError(f"a {self.task} result has no boxes")
        b = self.boxes
        return b if self.draw_conf is None else b[b.conf >= self.draw_conf]

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self, decimals: int = 2) -> dict[str, Any]:
        """The JSON Lines record: source, frame, size, timings and the task's output (box corners
        rounded to ``decimals`` places, a whole number >= 0)."""
        decimals = whole_number("decimals", decimals, minimum=0)
        h, w = self.orig_shape
        out: dict[str, Any] = {"source": self.path}
        if self.frame is not None:
            out["frame"] = self.frame
        if self.timestamp is not None:
            out["timestamp"] = round(float(self.timestamp), 4)
        out.update({"task": self.task, "width": w, "height": h,
                    "speed_ms": {k: round(float(v), 3) for k, v in self.speed.items()}})
        if self.boxes is not None:
            out["detections"] = self.boxes.to_list(decimals)
        if self.mask is not None:
            out["classes"] = self.areas()
        if self.probs is not None:
            out["top"] = self.probs.to_list()
        if self.features is not None:
            out["features"] = {k: list(v.shape) for k, v in self.features.items()}
        return out

    def to_json(self, decimals: int = 2) -> str:
        return json_dumps(self.to_dict(decimals), separators=(",", ":"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``plot()`` as an image file (type from the suffix), atomically; returns the path."""
        import cv2

        from pvt_deploy.errors import InputError

        target = Path(path)
        try:
            ok, data = cv2.imencode(target.suffix or ".jpg", cv2.cvtColor(self.plot(), cv2.COLOR_RGB2BGR))
        except cv2.error:  # OpenCV raises, rather than returning False, for a suffix it has no encoder for
            ok = False
        if not ok:
            raise InputError(f"cannot encode an image as {target.suffix!r} (use .jpg, .png, .bmp, .webp or .tif)")
        _write_file(target, data)
        return target

    def save_mask(self, path: str | os.PathLike[str]) -> Path:
        """Write the class map as a PNG (uint8 class ids; uint16 past 255 classes), atomically."""
        from pvt_deploy.errors import InputError

        data = self._mask_png()
        target = Path(path)
        if target.suffix.lower() != ".png":  # PNG bytes under another name would not be what it says
            raise InputError(f"a mask is written as PNG (lossless class ids): name it .png, not {str(target)!r}")
        _write_file(target, data)
        return target

    def _mask_png(self) -> np.ndarray:
        """The class map encoded as a PNG file's bytes (uint8 class ids; uint16 past 255 classes), as
        :meth:`save_mask` writes it."""
        import cv2

        from pvt_deploy.errors import InputError

        if self.mask is None:
            raise InputError(f"a {self.task} result has no mask")
        dtype = np.uint8 if len(self.names) <= 256 else np.uint16
        ok, data = cv2.imencode(".png", self.mask.astype(dtype))
        if not ok:
            raise InputError("cannot encode the mask as PNG")
        return data

    def save_txt(self, path: str | os.PathLike[str], save_conf: bool = False) -> Path:
        """Write the result as a YOLO label file, atomically (Ultralytics' ``save_txt``, one file per
        picture): for a detector a line ``class cx cy w h`` per box :meth:`shown_boxes` gives, the centre
        and size divided by the original picture's width and height, 6 decimals, class ids from 0
        (``save_conf``: the score as a sixth column); for a classifier the top-5 as ``prob name``,
        best first. No box: an empty file (a YOLO dataset's background picture). A segmenter's result
        has no such file: its class map is :meth:`save_mask`'s."""
        from pvt_deploy.errors import InputError

        lines: list[str] = []
        if self.boxes is not None:
            b = self.shown_boxes()
            h, w = self.orig_shape
            xywhn = b.xywh.astype(np.float64) / np.array([w, h, w, h], dtype=np.float64)
            for c, row, score in zip(b.cls.tolist(), xywhn, b.conf.tolist(), strict=True):
                scored = f" {score:.6f}" if save_conf else ""
                lines.append(" ".join([str(int(c)), *(f"{v:.6f}" for v in row)]) + scored)
        elif self.probs is not None:
            lines = [f"{float(p):.6f} {_name(self.names, int(i))}"
                     for i, p in zip(self.probs.top5, self.probs.top5conf.tolist(), strict=False)]
        else:
            what = "a class map: save_mask" if self.mask is not None else "nothing to label"
            raise InputError(f"a {self.task} result has no YOLO label file ({what})")
        _write_file(Path(path), "".join(line + "\n" for line in lines).encode())
        return Path(path)

    def save_crop(self, save_dir: str | os.PathLike[str], file_name: str | os.PathLike[str] = "im.jpg", *,
                  namer: Callable[[Path, str, str], Path] | None = None) -> list[Path]:
        """Cut each box of :meth:`shown_boxes` out of the original picture (not the drawing), its edges
        rounded outward to whole pixels and clipped to the picture, and write it as
        ``save_dir/<class name>/<file_name>`` (Ultralytics' ``save_crop``), atomically; a further box
        of that class gets ``_1``, ``_2``... and so does a name already there. The class name is made one
        safe folder name; the picture type is ``file_name``'s suffix (``.jpg`` where OpenCV writes no
        such type). A box with no pixel left inside the picture is skipped. ``namer(folder, stem,
        suffix)`` gives each file's path (default: a :class:`~pvt_deploy.io.sinks.FreeNames` of this call, which
        lists a class folder once, for the sweep of killed writers' temporary files, and names a class's next crop
        from the last one's ``_N``; give one ``FreeNames()`` to the calls of a loop over pictures to list each
        folder once in all). A crop replaces no file: one that another process wrote under its name meanwhile
        stays, and the crop takes ``namer``'s next name (:func:`~pvt_deploy.io.sinks.write_named`). Returns the
        files written, in box order."""
        import cv2

        from pvt_deploy.errors import InputError
        from pvt_deploy.io.sinks import _IMAGE_WRITE_SUFFIXES, FreeNames, safe_name, write_named

        if self.boxes is None:
            raise InputError(f"a {self.task} result has no boxes to crop")
        base = Path(os.fspath(file_name).replace("\\", "/")).name
        stem, suffix = os.path.splitext(base)
        stem, suffix = safe_name(stem, "im"), suffix.lower() if suffix.lower() in _IMAGE_WRITE_SUFFIXES else ".jpg"
        names = FreeNames() if namer is None else namer
        b = self.shown_boxes()
        h, w = self.orig_shape
        written = []
        for box, c in zip(b.xyxy.tolist(), b.cls.tolist(), strict=True):
            x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
            x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
            if x2 <= x1 or y2 <= y1:
                continue
            crop = self.orig_img[y1:y2, x1:x2]
            if crop.ndim == 3:  # RGB (RGBA: its colour); a grey picture is written as it is
                crop = cv2.cvtColor(np.ascontiguousarray(crop[..., :3]), cv2.COLOR_RGB2BGR)
            ok, data = cv2.imencode(suffix, np.ascontiguousarray(crop))
            if not ok:
                raise InputError(f"cannot encode a crop as {suffix}")
            folder = Path(save_dir) / safe_name(_name(self.names, int(c)), str(int(c)))
            written.append(write_named(data.data, names, folder, stem, suffix))  # the array's buffer, as memoryview
        return written

    def __repr__(self) -> str:
        h, w = self.orig_shape
        where = f"{self.path}" + (f"#{self.frame}" if self.frame is not None else "")
        # a crowded detector's every class made a repr of a thousand characters in a log line
        return f"Result(task={self.task!r}, source={where!r}, size={w}x{h}, {self._summary(5) or 'empty'})"


def _check_plot_settings(line_width: Any, alpha: Any, legend: Any) -> None:
    """Refuse ``plot()`` settings of the wrong type or range (a negative width would fill the boxes)."""
    from pvt_deploy.errors import InputError

    if line_width is not None and (not is_integer(line_width) or int(line_width) < 1):
        raise InputError(f"line_width must be an integer >= 1 (or None: by image size), got {line_width!r}")
    if not is_number(alpha) or not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not is_integer(legend) or int(legend) < 0:
        raise InputError(f"legend must be an integer >= 0, got {legend!r}")


def _write_file(target: Path, data: np.ndarray | bytes) -> None:
    """Write encoded bytes to ``target`` atomically. A folder is refused as bad input; any other
    failed write stays the ``OSError`` it is, which ``ResultWriter`` turns into its one-line error
    (and which a full disk mid-run must remain)."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.utils.files import atomic_write_bytes

    if target.is_dir():
        raise InputError(f"cannot write {target}: it is a folder (give a file name, e.g. {target / 'result.jpg'})")
    # an array's buffer, as memoryview(data)
    atomic_write_bytes(target, data.data if isinstance(data, np.ndarray) else data, sync=False)


class FrameLike(Protocol):
    """What :func:`make_results` needs of a frame (``pvt_deploy.io.Frame`` fits)."""

    @property
    def image(self) -> np.ndarray: ...

    @property
    def index(self) -> int: ...

    @property
    def path(self) -> str: ...

    @property
    def timestamp(self) -> float | None: ...


def make_results(outputs: Mapping[str, np.ndarray], records: Sequence[Letterbox], frames: Sequence[FrameLike], *,
                 task: str, names: Sequence[str], post: Mapping[str, Any], video: bool = False,
                 palette: Sequence[Sequence[int]] | None = None,
                 conf: float | None = None, iou: float | None = None, classes: Sequence[int] | None = None,
                 max_det: int | None = None, topk: int | None = None, draw_conf: float | None = None,
                 speed: Mapping[str, float] | None = None) -> list[Result]:
    """One batch of graph outputs -> one :class:`Result` per frame, via the shared post-processing.

    ``classes`` keeps only those class ids (detection); ``video`` says frames carry frame numbers;
    ``draw_conf`` is each detection result's drawing threshold; ``palette`` the colours of a segmentation's
    classes (the manifest's, from the checkpoint; None: pvt-deploy's).
    """
    speed_ = dict(speed or {})
    common: list[dict[str, Any]] = [
        {"task": task, "orig_img": f.image, "path": f.path, "names": names,
         "frame": f.index if video else None, "timestamp": f.timestamp, "speed": dict(speed_),
         "location": getattr(f, "location", None)}
        for f in frames]
    if task == "detect":
        dets = postprocess_detect(outputs, list(records), post, conf=conf, iou=iou, max_det=max_det,
                                  classes=list(classes) if classes is not None else None)
        return [Result(**c, boxes=Boxes.from_detections(d, names, r.orig_hw), draw_conf=draw_conf)
                for c, d, r in zip(common, dets, records, strict=True)]
    if task == "segment":
        maps = postprocess_segment(outputs, list(records), post)
        return [Result(**c, mask=m, palette=palette) for c, m in zip(common, maps, strict=True)]
    if task == "classify":
        k = int(topk or post.get("topk", 5))
        every = softmax(np.asarray(outputs["logits"], dtype=np.float32))  # probs.data, and the top-k from it
        tops = top_k(every, k)
        return [Result(**c, probs=Probs(ids, p.astype(np.float32), names, every[i]))
                for i, (c, (ids, p)) in enumerate(zip(common, tops, strict=True))]
    shares = postprocess_features(outputs, list(records))
    return [Result(**c, features=f) for c, f in zip(common, shares, strict=True)]
