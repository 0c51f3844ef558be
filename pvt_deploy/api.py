"""The Python API: ``Model`` loads any artifact and predicts on anything.

    from pvt_deploy import Model

    model = Model("exports/pvt_small")            # export folder, .onnx, .engine, .pth, zoo name, triton://
    results = model.predict("photo.jpg")          # a list with one Result
    for r in model.predict("video.mp4", stream=True):
        r.boxes.xyxy, r.boxes.conf, r.boxes.cls   # original-image pixels
        frame = r.plot()                          # RGB numpy image with the boxes drawn
        line = r.to_json()

``Model`` is a thin layer over :func:`pvt_deploy.runtimes.loader.load_backend` (which runtime) and
:class:`pvt_deploy.tasks.pipeline.Pipeline` (frames -> results, overlapped in threads). The
``pvt-deploy infer`` command is this class plus a progress bar.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import Frame, Source, as_rgb_array, open_source, read_image
from pvt_deploy.runtimes.base import Backend
from pvt_deploy.tasks.pipeline import Pipeline, Predictor, ResultWriter, RunSummary
from pvt_deploy.tasks.results import Result

__all__ = ["MAX_LIST_FRAMES", "Model"]

log = logging.getLogger(__name__)

# predict(stream=False) on a video keeps every frame (and its picture) in memory; past this many
# frames it refuses and asks for stream=True. 300 frames of 1080p are ~1.9 GB of pictures already.
MAX_LIST_FRAMES = 300


class Model:
    """A model ready to predict, on whichever runtime its artifact calls for.

    ``model``: an export folder, ``.onnx``, ``.engine``, ``.pth`` checkpoint, zoo name (PyTorch,
    ``exports/<name>`` when that export exists) or ``triton://host:8000/name``. ``backend``,
    ``precision``, ``device``, ``imgsz`` and ``weights`` are as in :func:`load_backend`; extra
    keywords go to the backend (``threads=``, ``spin=``, ``cuda_graph=``).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, backend: str | None = None,
                 precision: str | None = None, device: str | None = None,
                 imgsz: int | Sequence[int] | None = None, weights: str | os.PathLike[str] | None = None,
                 task: str | None = None, **options: Any) -> None:
        from pvt_deploy.runtimes.loader import DEFAULT_MODEL, load_backend

        self.source = os.fspath(model) if model is not None else DEFAULT_MODEL
        self.imgsz = imgsz
        self.backend: Backend
        self.backend, self.manifest = load_backend(self.source, backend=backend, precision=precision,
                                                   device=device, imgsz=imgsz, weights=weights, task=task,
                                                   **options)
        self.last_summary: RunSummary | None = None

    # -- description --------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def names(self) -> list[str]:
        return [str(n) for n in self.manifest.get("classes") or []]

    @property
    def name(self) -> str:
        return str(self.manifest.get("model") or Path(str(self.source)).stem)

    @property
    def random_weights(self) -> bool:
        """True when the weights are random (a zoo model without ``weights=``): outputs are meaningless."""
        return bool((self.manifest.get("weights") or {}).get("random_init"))

    def __repr__(self) -> str:
        return f"Model({self.name!r}, task={self.task!r}, backend={self.backend!r})"

    # -- prediction ---------------------------------------------------------------------------------
    def predictor(self, *, imgsz: int | Sequence[int] | None = None, conf: float | None = None,
                  iou: float | None = None, classes: Sequence[int] | None = None, max_det: int | None = None,
                  topk: int | None = None) -> Predictor:
        """The batch-level predictor (pre -> infer -> post) with these settings."""
        return Predictor(self.backend, self.manifest, imgsz=imgsz if imgsz is not None else self.imgsz, conf=conf,
                         iou=iou, classes=classes, max_det=max_det, topk=topk)

    def predict(self, source: Any = None, *, stream: bool = False, conf: float | None = None,
                iou: float | None = None, classes: Sequence[int] | None = None,
                imgsz: int | Sequence[int] | None = None, batch: int | None = None, vid_stride: int = 1,
                max_det: int | None = None, topk: int | None = None, save: bool = False,
                save_json: bool = False, save_mask: bool = False, save_dir: str | os.PathLike[str] | None = None,
                save_audio: bool = True, threaded: bool | None = None) -> list[Result] | Iterator[Result]:
        """Predict on ``source`` and return a list of :class:`Result` (``stream=False``) or a generator.

        ``source``: an image, folder, glob, video, webcam index, stream URL, numpy RGB image, PIL
        image, a list of image paths / arrays, or an opened :class:`pvt_deploy.io.Source`; ``None``
        is the bundled sample photos. Videos and
        streams should use ``stream=True`` (one result at a time, constant memory); a live stream
        with ``stream=False`` is refused, and so is a video longer than :data:`MAX_LIST_FRAMES`.
        ``conf``/``iou``/``classes``/``max_det``: detection filters; ``imgsz``: input size of a
        dynamic graph; ``batch``: frames per inference call (default: one per core for a video file on
        ONNX Runtime's CPU provider, else 1); ``vid_stride``: every n-th video frame.
        ``save``/``save_json`` write annotated media / JSON Lines (+ COCO JSON) to ``save_dir``;
        ``save_mask`` (segmentation, with ``save``) also writes each image's class map as
        ``<name>_mask.png`` (uint8 class ids); ``save_audio`` carries a video file's audio into its
        annotated mp4.
        """
        if (save or save_json) and save_dir is None:
            raise InputError("save=True / save_json=True need save_dir=")
        if save_mask and not save:
            raise InputError("save_mask=True needs save=True")
        src = _as_source(source, vid_stride)
        if not stream:
            _refuse_long(src)
        try:
            predictor = self.predictor(imgsz=imgsz, conf=conf, iou=iou, classes=classes, max_det=max_det, topk=topk)
            pipeline = Pipeline(predictor, src, batch=batch, threaded=threaded, draw=save)
        except BaseException:
            src.close()
            raise
        writer = None
        if save or save_json:
            assert save_dir is not None
            writer = ResultWriter(save_dir, task=self.task, names=self.names, save=save, save_json=save_json,
                                  fps=getattr(src, "fps", None), vid_stride=vid_stride, mask_pngs=save_mask,
                                  audio=save_audio)
        gen = self._run(pipeline, writer)
        return gen if stream else _bounded_list(gen, str(getattr(src, "spec", source)))

    __call__ = predict

    def _run(self, pipeline: Pipeline, writer: ResultWriter | None) -> Iterator[Result]:
        """Drive the pipeline, writing each result; finalise outputs however the run ends."""
        import time

        error: BaseException | None = None
        try:
            for result in pipeline:
                if writer is not None:
                    t0 = time.perf_counter()
                    writer.write(result)
                    pipeline.times.add("write", time.perf_counter() - t0)
                yield result
        except BaseException as e:
            error = e
            raise
        finally:
            outputs = writer.close(error) if writer is not None else []
            self.last_summary = pipeline.summary(outputs)

    # -- lifetime -----------------------------------------------------------------------------------
    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_source(source: Any, vid_stride: int) -> Source:
    """An opened :class:`~pvt_deploy.io.Source` for whatever ``predict`` was given."""
    if isinstance(source, Source):
        return source
    if isinstance(source, (list, tuple)) and any(not isinstance(item, (str, os.PathLike)) for item in source):
        return _PictureList(source)
    return open_source_for(source, vid_stride=vid_stride)


class _PictureList(Source):
    """In-memory pictures (numpy RGB arrays or PIL images, named ``image0.jpg``, ``image1.jpg``...),
    possibly mixed with image paths (read now, named by their path)."""

    kind = "images"

    def __init__(self, images: Sequence[Any]) -> None:
        self._images = [(read_image(im), os.fspath(im)) if isinstance(im, (str, os.PathLike))
                        else (as_rgb_array(im), f"image{i}.jpg") for i, im in enumerate(images)]
        self.spec = f"{len(self._images)} images"
        self.frames = len(self._images)

    def _iter_frames(self) -> Iterator[Frame]:
        for i, (image, name) in enumerate(self._images):
            yield Frame(image, i, name)


def open_source_for(source: Any, *, vid_stride: int = 1) -> Source:
    """``open_source`` with the bundled sample photos for ``None``."""
    if source is None:
        from pvt_deploy.assets import sample_images

        return open_source([str(p) for p in sample_images()], vid_stride=vid_stride)
    return open_source(source, vid_stride=vid_stride)


def _refuse_long(source: Any) -> None:
    """Refuse, before decoding anything, what cannot become a list: live feeds and long videos."""
    kind = getattr(source, "kind", "")
    frames = getattr(source, "frames", None)
    if kind == "stream" and getattr(source, "live", True):
        source.close()
        raise InputError(f"{source.spec} is a live stream: use predict(..., stream=True) to get results as "
                         "they come (a list would grow without end)")
    if kind in ("video", "stream") and frames is not None and frames > MAX_LIST_FRAMES:
        source.close()
        raise InputError(f"{source.spec} has {frames} frames: use predict(..., stream=True) (a list keeps every "
                         f"frame in memory; the limit is {MAX_LIST_FRAMES})")


def _bounded_list(results: Iterator[Result], spec: str) -> list[Result]:
    """Collect a video of unknown length into a list, refusing once it passes the limit."""
    out: list[Result] = []
    for r in results:
        out.append(r)
        if len(out) > MAX_LIST_FRAMES and r.frame is not None:
            close = getattr(results, "close", None)
            if close is not None:
                close()
            raise InputError(f"{spec} has more than {MAX_LIST_FRAMES} frames: use predict(..., stream=True)")
    return out
