"""The Python API: ``Model`` loads any artifact and predicts on anything.

    from pvt_deploy import Model

    model = Model("exports/pvt_small")            # export folder, .onnx, .engine, .pth/.safetensors, zoo name, triton://
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

import atexit
import difflib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn, SupportsIndex, TypeAlias, cast, overload

import numpy as np

from pvt_deploy.errors import InputError, option
from pvt_deploy.io.sources import Source, open_source
from pvt_deploy.runtimes.base import Backend, flag
from pvt_deploy.runtimes.torch import clear_of_fork
from pvt_deploy.tasks.pipeline import Pipeline, Predictor, ResultWriter, RunSummary, check_outputs
from pvt_deploy.tasks.results import Result
from pvt_deploy.utils import count_of, is_integer, is_number, whole_number

if TYPE_CHECKING:
    from pvt_deploy.evaluate import ValReport

__all__ = ["MAX_LIST_FRAMES", "Model"]

log = logging.getLogger(__name__)

#: What ``imgsz=`` takes: ``640``, ``"480,640"`` (or ``"480x640"``) or ``(480, 640)``.
ImageSize: TypeAlias = "int | str | Sequence[int]"
#: What ``classes=`` takes: one class id or name, or a sequence (or numpy array) of them.
ClassFilter: TypeAlias = "int | str | Sequence[int | str] | np.ndarray"

# predict(stream=False) on a video keeps every frame (and its picture) in memory; past this many
# frames it refuses and asks for stream=True. 300 frames of 1080p are ~1.9 GB of pictures already.
MAX_LIST_FRAMES = 300


class Model:
    """A model ready to predict, on whichever runtime its artifact calls for.

    ``model``: an export folder, ``.onnx``, ``.engine``, checkpoint file (``.pth``, ``.safetensors``, ...) or its ``https://`` URL
    (downloaded once into the cache), zoo name (PyTorch, ``exports/<name>`` when that export exists) or
    ``triton://host:8000/name``. ``backend``,
    ``precision``, ``device``, ``imgsz``, ``weights`` and ``trust`` (a checkpoint that needs full
    unpickling) are as in :func:`load_backend`; a zoo name given ``weights`` is that model with them,
    even where ``exports/<name>`` exists; ``device`` also takes a GPU index (``0`` is ``cuda:0``).
    ``names`` names the model's classes, where it has none of its own (a checkpoint fine-tuned on other
    classes: ``"0"``, ``"1"``, ...) or wrong ones: ``"car,truck,bus"``, a list or array, a ``.txt`` or ``.names`` file (one a line)
    or a dataset YAML (its ``names:``), as many as the model has classes.
    Extra keywords go to the backend (``threads=``: ``None`` or ``0`` for one per physical core, no more
    than a container's CPU quota allows, else a whole number >= 1; ``spin=``, ``cuda_graph=``).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, backend: str | None = None,
                 precision: str | None = None, device: str | int | None = None,
                 imgsz: ImageSize | None = None, weights: str | os.PathLike[str] | None = None,
                 task: str | None = None, names: str | os.PathLike[str] | Sequence[str] | None = None,
                 **options: Any) -> None:
        from pvt_deploy.runtimes.loader import DEFAULT_MODEL, load_backend

        if model is not None and (not isinstance(model, (str, os.PathLike)) or not os.fspath(model).strip()):
            raise InputError(f"model must be an export folder, model file, zoo name, checkpoint URL or triton:// URL, "
                             f"got {model!r}")
        self.source = os.fspath(model) if model is not None else DEFAULT_MODEL
        self.imgsz = imgsz
        check_weights(weights, self.source, backend)
        self.backend: Backend
        # building a PyTorch model runs parallel regions, which hang on the thread that forked a
        # process whose parent had run PyTorch, as inference does (see runtimes/torch.py)
        self.backend, self.manifest = clear_of_fork(load_backend, self.source, backend=backend, precision=precision,
                                                    device=device, imgsz=imgsz, weights=weights, task=task,
                                                    names=names, **options)
        self.last_summary = None

    @property
    def last_summary(self) -> RunSummary | None:
        """The summary (frames, FPS, stage times, outputs) of the last run this thread made: threads of
        a server sharing the Model each see their own run, not whichever finished last."""
        return getattr(self._thread_state(), "summary", None)

    @last_summary.setter
    def last_summary(self, summary: RunSummary | None) -> None:
        self._thread_state().summary = summary

    def _thread_state(self) -> threading.local:
        state: threading.local | None = self.__dict__.get("_per_thread")
        if state is None:  # setdefault: two threads asking at once get the same one
            state = self.__dict__.setdefault("_per_thread", threading.local())
        return state

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
    def predictor(self, *, imgsz: ImageSize | None = None, conf: float | None = None,
                  iou: float | None = None, classes: ClassFilter | None = None, max_det: int | None = None,
                  topk: int | None = None, draw_conf: float | None = None) -> Predictor:
        """The batch-level predictor (pre -> infer -> post) with these settings: ``predictor([a, b])``
        runs pictures (numpy RGB arrays, PIL images) or frames as one batch, in the calling thread.

        ``classes`` takes class ids or names (one or a list, as ``--classes`` does); a setting of the
        wrong type or out of range raises :class:`~pvt_deploy.errors.InputError`.
        """
        from pvt_deploy.runtimes.loader import check_imgsz

        self._check_open()
        size = imgsz if imgsz is not None else self.imgsz
        check_imgsz(self.manifest, size)  # the rule --imgsz follows (stride first, then the range), before any frame
        return Predictor(self.backend, self.manifest, imgsz=size,
                         conf=_real("conf", conf), iou=_real("iou", iou), classes=class_ids(classes, self.names),
                         max_det=_whole("max_det", max_det), topk=_whole("topk", topk),
                         draw_conf=_real("draw_conf", draw_conf))

    @overload
    def predict(self, source: Any = None, *, stream: Literal[False] = False, conf: float | None = None,
                iou: float | None = None, classes: ClassFilter | None = None,
                imgsz: ImageSize | None = None, batch: int | None = None, vid_stride: int = 1,
                max_det: int | None = None, topk: int | None = None, draw_conf: float | None = None,
                save: bool = False,
                save_json: bool = False, save_mask: bool = False, save_dir: str | os.PathLike[str] | None = None,
                save_audio: bool = True, save_txt: bool = False, save_conf: bool = False, save_crop: bool = False,
                line_width: int | None = None, show_labels: bool = True, show_conf: bool = True,
                threaded: bool | None = None, same_size: bool = True) -> list[Result]: ...

    @overload
    def predict(self, source: Any = None, *, stream: Literal[True], conf: float | None = None,
                iou: float | None = None, classes: ClassFilter | None = None,
                imgsz: ImageSize | None = None, batch: int | None = None, vid_stride: int = 1,
                max_det: int | None = None, topk: int | None = None, draw_conf: float | None = None,
                save: bool = False,
                save_json: bool = False, save_mask: bool = False, save_dir: str | os.PathLike[str] | None = None,
                save_audio: bool = True, save_txt: bool = False, save_conf: bool = False, save_crop: bool = False,
                line_width: int | None = None, show_labels: bool = True, show_conf: bool = True,
                threaded: bool | None = None, same_size: bool = True) -> Generator[Result, None, None]: ...

    @overload
    def predict(self, source: Any = None, *, stream: bool, conf: float | None = None,
                iou: float | None = None, classes: ClassFilter | None = None,
                imgsz: ImageSize | None = None, batch: int | None = None, vid_stride: int = 1,
                max_det: int | None = None, topk: int | None = None, draw_conf: float | None = None,
                save: bool = False,
                save_json: bool = False, save_mask: bool = False, save_dir: str | os.PathLike[str] | None = None,
                save_audio: bool = True, save_txt: bool = False, save_conf: bool = False, save_crop: bool = False,
                line_width: int | None = None, show_labels: bool = True, show_conf: bool = True,
                threaded: bool | None = None, same_size: bool = True) -> list[Result] | Generator[Result, None, None]: ...

    def predict(self, source: Any = None, *, stream: bool = False, conf: float | None = None,
                iou: float | None = None, classes: ClassFilter | None = None,
                imgsz: ImageSize | None = None, batch: int | None = None, vid_stride: int = 1,
                max_det: int | None = None, topk: int | None = None, draw_conf: float | None = None,
                save: bool = False,
                save_json: bool = False, save_mask: bool = False, save_dir: str | os.PathLike[str] | None = None,
                save_audio: bool = True, save_txt: bool = False, save_conf: bool = False, save_crop: bool = False,
                line_width: int | None = None, show_labels: bool = True, show_conf: bool = True,
                threaded: bool | None = None, same_size: bool = True) -> list[Result] | Generator[Result, None, None]:
        """Predict on ``source`` and return a list of :class:`Result` (``stream=False``) or a generator.

        ``source``: an image, folder, glob, video, webcam index, stream URL, numpy RGB image (OpenCV's
        ``imread`` and ``VideoCapture`` give BGR, which Ultralytics takes: pass ``frame[..., ::-1]``), PIL
        image, an encoded picture in memory (an upload's ``bytes``, ``bytearray``, ``memoryview`` or binary
        file object such as ``io.BytesIO``, read from where it stands and decoded as its file is: EXIF
        orientation applied, RGB), a list of image paths / pictures, or an opened
        :class:`pvt_deploy.io.Source`; ``None``
        is the bundled sample photos. An unreadable image in a list, folder or glob is skipped with a
        warning (each result's ``path`` says which picture it is); when none can be read,
        :class:`InputError`. Videos and
        streams should use ``stream=True`` (one result at a time, constant memory); a live stream
        with ``stream=False`` is refused, and so is a video longer than :data:`MAX_LIST_FRAMES`.
        ``conf``/``iou``/``classes``/``max_det``: detection filters (``classes``: ids or names, one or
        a list; a setting of the wrong type or out of range raises :class:`InputError`, one that the
        model's task does not use is logged as ignored); ``draw_conf``: the score from which boxes are
        drawn (default ``conf`` when given, else 0.25: every detection is in the results and the JSON,
        the picture shows the confident ones; each result's ``draw_conf``); ``imgsz``: input size of a
        dynamic graph; ``batch``: frames per inference call (default for a video file: 4 on a GPU, one
        per core on ONNX Runtime's CPU provider; else 1); ``same_size`` (default): a batch ends early where the
        next picture's input size differs, so none is padded to another's and ``batch`` never changes a
        result (``batch=1``'s; pictures given in order of size keep the batches full); ``False`` pads them
        to the largest, as :meth:`predictor` does, and attention sees the padding; ``vid_stride``: every n-th video frame.
        ``save``/``save_json`` write annotated media / JSON Lines (+ COCO JSON) to ``save_dir``;
        ``save_mask`` (segmentation, with ``save``) also writes each image's class map as
        ``<name>_mask.png`` (uint8 class ids); ``save_audio`` carries a video file's audio into its
        annotated mp4 (a local file's, or one read from an http(s) URL; a live feed has none to carry).
        ``save_txt`` writes a YOLO label file per picture or frame to ``save_dir/labels/``
        (:meth:`Result.save_txt`: a detector's drawn boxes, a classifier's top-5; ``save_conf``: with
        the scores, and implies ``save_txt``); ``save_crop`` (detector) each drawn box cut from the
        original picture to ``save_dir/crops/<class>/`` (:meth:`Result.save_crop`); where an earlier run's
        JSON, ``labels/`` or ``crops/`` are, to ``labels_1/`` and ``crops_1/`` beside ``predictions_1.jsonl``. ``line_width``,
        ``show_labels`` and ``show_conf``: how the saved pictures' boxes are drawn (:meth:`Result.plot`'s
        ``line_width``, ``labels``, ``conf``).
        """
        for name, value in {"stream": stream, "save": save, "save_json": save_json, "save_mask": save_mask,
                            "save_audio": save_audio, "same_size": same_size, "save_txt": save_txt,
                            "save_conf": save_conf, "save_crop": save_crop, "show_labels": show_labels,
                            "show_conf": show_conf}.items():
            flag(name, value)
        save_txt = save_txt or save_conf
        plot = {"line_width": _whole(option("line_width"), line_width), "labels": show_labels, "conf": show_conf}
        if threaded is not None:  # None: the pipeline's default
            flag("threaded", threaded)
        writes = save or save_json or save_txt or save_crop
        if writes and save_dir is None:
            raise InputError("save=True / save_json=True / save_txt=True / save_crop=True need save_dir=")
        if save_dir is not None and not isinstance(save_dir, (str, os.PathLike)):  # Path() raised a TypeError
            raise InputError(f"save_dir must be a folder path, got {save_dir!r}")
        if save_mask and not save:
            raise InputError("save_mask=True needs save=True")
        # settings first: a wrong one fails before a file is opened
        predictor = self.predictor(imgsz=imgsz, conf=conf, iou=iou, classes=classes, max_det=max_det, topk=topk,
                                   draw_conf=draw_conf)
        check_outputs(self.task, save_txt=save_txt, save_crop=save_crop)
        batch = _whole("batch", batch)
        vid_stride = whole_number("vid_stride", vid_stride)  # no default in None: it has its own, 1
        self._warn_ignored(conf=conf, iou=iou, classes=classes, max_det=max_det, topk=topk, save_mask=save_mask,
                           draw_conf=draw_conf)
        src = _as_source(source, vid_stride, save=save)
        if not stream:
            _refuse_long(src)
        writer = None
        try:
            pipeline = Pipeline(predictor, src, batch=batch, threaded=threaded, draw=save, same_size=same_size,
                                plot=plot)
            if writes:
                assert save_dir is not None
                writer = ResultWriter(save_dir, task=self.task, names=self.names, save=save, save_json=save_json,
                                      fps=getattr(src, "fps", None), vid_stride=vid_stride, mask_pngs=save_mask,
                                      audio=save_audio and not getattr(src, "live", False),  # no file to read again
                                      save_txt=save_txt, save_conf=save_conf, save_crop=save_crop, plot=plot)
        except BaseException:
            src.close()
            raise

        def never_started() -> None:  # the generator was closed before its first frame: nothing ran
            if writer is not None:
                writer.close()  # no result: removes the JSON files it had begun
            src.close()
            self.last_summary = pipeline.summary([])

        gen = _Results(self._run(pipeline, writer), never_started)
        return gen if stream else _bounded_list(gen, str(getattr(src, "spec", source)))

    __call__ = predict

    def val(self, data: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None,
            masks: str | os.PathLike[str] | None = None, limit: int | None = None, imgsz: ImageSize | None = None,
            batch: int | None = None, conf: float | None = None, iou: float | None = None,
            max_det: int | None = None, reduce_zero_label: bool = True) -> ValReport:
        """Accuracy on the labelled dataset ``data`` (``pvt-deploy val``): COCO box AP for a detector (a
        COCO instances JSON, ``images`` its picture folder when it is not COCO's ``val2017/`` beside
        ``annotations/``; or an Ultralytics dataset YAML), top-1/top-5 for a classifier (a folder of
        class folders), mIoU for a segmenter (ADE20K's root, or the pictures' folder and ``masks``).
        ``limit``: the first N pictures only (a classifier's from each class in turn).
        See :mod:`pvt_deploy.evaluate`."""
        from pvt_deploy.evaluate import evaluate

        self._check_open()
        flag("reduce_zero_label", reduce_zero_label)
        return evaluate(self, data, images=images, masks=masks, limit=_whole("limit", limit), imgsz=imgsz,
                        batch=batch, conf=conf, iou=iou, max_det=max_det, reduce_zero_label=reduce_zero_label)

    def _warn_ignored(self, **settings: Any) -> None:
        """Say which settings cannot apply to this model's task (as ``pvt-deploy infer`` does), or to
        a graph whose NMS was fixed at export."""
        from pvt_deploy.tasks.postprocess import graph_nms_limits

        for key, value in settings.items():
            if value is not None and value is not False and SETTING_TASKS[key] != self.task:
                log.warning("%s= applies to %s models; a %s model has no use for it: ignored", key,
                            SETTING_TASKS[key], self.task)
        if self.task == "detect":
            for line in graph_nms_limits(self.manifest.get("postprocess") or {}, conf=settings.get("conf"),
                                         iou=settings.get("iou"), max_det=settings.get("max_det")):
                log.warning("%s", line)

    def _run(self, pipeline: Pipeline, writer: ResultWriter | None) -> Generator[Result | _Held, None, None]:
        """Drive the pipeline, writing each result; finalise outputs however the run ends."""
        import time

        error: BaseException | None = None
        try:
            for result in pipeline:
                stop: BaseException | None = None
                if writer is not None:
                    t0 = time.perf_counter()
                    written = writer.results_written
                    try:
                        writer.write(result)
                    except BaseException as e:
                        # a stop (Ctrl-C, SIGTERM) held while the result's outputs were written raises once
                        # they are all there: the result is counted in the summary, so it is handed back
                        # too (the CLI's line for it), and _Results raises the stop at the caller's next
                        # step or close(), by throwing it in here
                        if writer.results_written == written:
                            raise
                        stop = e
                    pipeline.times.add("write", time.perf_counter() - t0)
                try:
                    yield result if stop is None else _Held(result, stop)
                finally:
                    stop = None  # no cycle through this frame once the stop is thrown in (see below)
            skipped = pipeline.skipped
            if skipped and not pipeline.frames_done:  # as one unreadable file is: [] would read as "no detections"
                raise InputError(f"no images could be read from {pipeline.source.spec} "
                                 f"({count_of(skipped, 'unreadable image')} skipped)")
        except BaseException as e:
            error = e
            raise
        finally:
            try:
                outputs = writer.close(error) if writer is not None else []
                self.last_summary = pipeline.summary(outputs,
                                                     frames=writer.results_written if writer is not None else None,
                                                     files_in=writer.files_in if writer is not None else None)
            finally:
                # the error's traceback holds this frame: keeping the error here would make a cycle that
                # holds the run (its source's pictures, the last result) until the cyclic GC runs
                error = None

    # -- lifetime -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self.backend.close()

    def _check_open(self) -> None:
        """Refuse a closed model before a source is opened or an output folder made (the runtime's own
        'is closed' came from the first batch, after the video's decoder and the writer had started)."""
        if self.__dict__.get("_closed"):
            raise InputError(f"Model({self.name!r}) is closed: load it again to predict")

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # pickle's own error names an inner object ("cannot pickle 'InferenceSession' object"), deep in
        # a multiprocessing traceback; reloading on unpickling would reload the model for every task
        raise InputError(f"a Model ({self.source}) cannot be pickled or copied: it holds a loaded runtime",
                         hint="load the model in each process, e.g. in the pool's initializer, and send it "
                              "pictures or paths")


#: The task each task-specific setting of :meth:`Model.predict` (and ``pvt-deploy infer``) is for.
SETTING_TASKS = {"conf": "detect", "iou": "detect", "classes": "detect", "max_det": "detect", "draw_conf": "detect",
                 "topk": "classify", "save_mask": "segment"}


def check_weights(weights: str | os.PathLike[str] | None, model: str | None, backend: str | None, *,
                  cli: bool = False) -> None:
    """Refuse ``weights`` where it would be silently ignored: it loads a checkpoint into a PyTorch model
    built from a zoo name, or from an export folder's architecture with the torch backend
    (:func:`~pvt_deploy.runtimes.loader.load_backend`; a zoo name with weights is the zoo model even
    where ``exports/<name>`` exists); a model file, an export folder run by another runtime and a
    Triton model run with their own weights (``"official"`` with a model file is refused in export's words,
    :func:`~pvt_deploy.models.zoo.official_weights`). ``cli``: name the options as ``pvt-deploy infer`` spells
    them."""
    if weights is None:
        return
    from pvt_deploy.manifest import is_export_folder
    from pvt_deploy.models.zoo import official_weights
    from pvt_deploy.runtimes.loader import (
        DEFAULT_MODEL,
        canonical_backend,
        check_weights_path,
        is_checkpoint_url,
    )
    from pvt_deploy.runtimes.triton import is_triton_url

    option, torch_backend = ("--weights", "--backend torch") if cli else ("weights=", "backend='torch'")
    check_weights_path(weights, option)
    kind = canonical_backend(backend)
    text = model if model is not None else DEFAULT_MODEL  # given weights, load_backend does not look in exports/
    path = Path(text).expanduser()
    if is_triton_url(text):
        raise InputError(f"{option} does not apply to a Triton model ({text}): the server holds its weights")
    if path.is_file() or is_checkpoint_url(text):
        official_weights(weights, text)  # 'official' names a zoo model's: export's words, and what to pass instead
        raise InputError(f"{option} does not apply to {text}: a model file runs with its own weights")
    if is_export_folder(path) and kind != "torch":
        raise InputError(f"{option} does not apply to the export {text}: it runs with the weights it was "
                         "exported from", hint=f"add {torch_backend} to load the checkpoint into its architecture "
                                               "with PyTorch, or re-export with --weights")


def _real(name: str, value: Any) -> float | None:
    """A number setting (``conf``, ``iou``): Python or numpy numbers, not strings or booleans."""
    if value is None:
        return None
    if not is_number(value):
        raise InputError(f"{name} must be a number, got {value!r}")
    return float(value)


def _whole(name: str, value: Any, *, minimum: int = 1) -> int | None:
    """A whole-number setting (``max_det``, ``topk``, ``batch``, ``vid_stride``): Python or numpy integers."""
    return None if value is None else whole_number(name, value, minimum=minimum)


def class_ids(classes: Any, names: Sequence[str], *, what: str = "classes") -> list[int] | None:
    """``classes=`` (and ``--classes``, split at commas): one class id or name, or a sequence/array of
    them -> ids this model has (a name that several classes share, as ``--names car,car,bus`` gives, is
    all of them); an unknown name or id is an :class:`InputError` naming ``what``, and
    so is an empty list: as a filter it would drop every detection without a word, and nobody asks
    for that on purpose (``None``, or leaving ``--classes`` out, keeps every class)."""
    if classes is None:
        return None
    items = [classes] if isinstance(classes, str) or is_integer(classes) else classes
    try:
        items = list(items.tolist() if hasattr(items, "tolist") else items)
    except TypeError:
        raise InputError(f"{what} must be class ids or names, got {classes!r}") from None
    lookup: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        lookup.setdefault(n.lower(), []).append(i)
    ids = []
    for item in items:
        if isinstance(item, str):
            if item.strip().lower() not in lookup:
                near = difflib.get_close_matches(item.strip().lower(), list(lookup), n=1, cutoff=0.75)
                guess = f"; did you mean {names[lookup[near[0]][0]]!r}?" if near else ""
                raise InputError(f"{what}: unknown class {item!r}{guess} (use ids or names of this model's classes)")
            ids += lookup[item.strip().lower()]
        elif not is_integer(item):
            raise InputError(f"{what} must be class ids or names, got {item!r}")
        elif int(item) < 0 or (names and int(item) >= len(names)):
            raise InputError(f"{what}: this model has no class {item}"
                             + (f" (ids 0-{len(names) - 1})" if names else ""))
        else:
            ids.append(int(item))
    if not ids:
        raise InputError(f"{what} names no class (it would drop every detection); give class ids or names, "
                         "or leave it out to keep every class")
    return ids


_FORKED_AWAY: list[Generator[Result | _Held, None, None]] = []  # runs of another process a forked child holds (_Results)
_OPEN_RUNS: weakref.WeakSet[_Results] = weakref.WeakSet()  # stream generators not yet used up, closed or collected


@atexit.register
def _close_open_runs() -> None:
    """At exit, finish the stream runs still open, as a dropped generator is finished: a generator that
    a (daemon) server thread or a module global still held was never closed, so its annotated video
    stayed a hidden, unplayable temporary file and its JSON ``.part`` files, or Python's own teardown
    later aborted the process ('terminate called without an active exception'). atexit runs after
    the non-daemon threads have ended and before daemon threads are stopped, so the run's own threads
    can still finish their work and be joined."""
    for run in list(_OPEN_RUNS):
        held = id(run._stop)  # a stop held for the run's next step (close raises it): the process is ending anyway
        try:
            run.close()
        except ValueError:  # running in another thread this moment: it cannot be closed from here
            log.debug("a predict(stream=True) run is being iterated at exit: left as it is")
        except Exception as e:  # noqa: BLE001 - one run's failure must not leave the others unfinished
            log.warning("closing a predict(stream=True) run at exit: %s", e)
        except BaseException as e:
            if id(e) != held:
                raise


class _Held(NamedTuple):
    """A result whose outputs were all written when a stop (Ctrl-C, SIGTERM) came: :class:`_Results` hands
    the result back and raises the stop at the caller's next step."""

    result: Result
    stop: BaseException


class _Results(Generator[Result, None, None]):
    """``predict(stream=True)``'s generator, which also cleans up when it is closed (or collected)
    before its first result: a plain generator runs none of its code then, so the source would stay
    open and the output folder would keep unfinished ``.part`` files.

    A stop (Ctrl-C, SIGTERM) that came while a result's outputs were written is held until they are
    whole; the result is handed back, and the stop raised at the next step, ``close()`` included: a
    loop that breaks on that result and closes the generator (``contextlib.closing``) gets the
    KeyboardInterrupt. One collected without a next step or close cannot raise it (Python prints and
    drops what a collected object raises): its run ends as a stopped one and a warning says so."""

    def __init__(self, gen: Generator[Result | _Held, None, None], never_started: Callable[[], None]) -> None:
        self._gen = gen
        self._never_started: Callable[[], None] | None = never_started
        self._stop: BaseException | None = None
        self._pid = os.getpid()
        _OPEN_RUNS.add(self)

    def _refuse_in_another_process(self) -> None:
        """A forked process has a copy of the generator but none of the threads that run it (they
        stayed in the process that started it); going on there failed with 'pipeline threads ended
        without a result' after finishing that process's output files from the copy."""
        if os.getpid() != self._pid:
            raise InputError(f"this predict(stream=True) generator was started in process {self._pid} and "
                             "cannot go on in another one (a forked child): call predict in this process")

    def _step(self, step: Callable[[], Result | _Held]) -> Result:
        """``step`` of the run, or, where a stop is held, :meth:`_throw_held`."""
        item = self._throw_held() if self._stop is not None else step()
        if isinstance(item, _Held):
            self._stop = item.stop
            return item.result
        return item

    def _throw_held(self) -> Result | _Held:
        """The stop held thrown into the run: it finishes its outputs as a stopped run, and the stop comes out."""
        try:
            return self._gen.throw(cast(BaseException, self._stop))
        finally:
            self._stop = None  # not kept where the stop's traceback leads (no cycle)

    def send(self, value: None) -> Result:
        self._refuse_in_another_process()
        self._never_started = None
        return self._step(lambda: self._gen.send(value))

    def throw(self, *args: Any) -> Result:
        self._refuse_in_another_process()
        cleanup, self._never_started = self._never_started, None
        if cleanup is not None:  # not started: the error ends it before any of its code runs
            cleanup()
        try:
            return self._step(lambda: self._gen.throw(*args))
        finally:
            # the error raised holds this frame (its traceback), and this frame the error (args): a cycle that
            # held the run (its source's pictures, the last result) until the cyclic GC ran
            args = ()

    def close(self) -> None:
        if os.getpid() != self._pid:
            # a forked child's copy: the run's source, threads and output files are the parent's. Closing
            # or collecting the copy finished them (renamed the parent's unfinished mp4 and JSON, which
            # then ended with 'cannot write outputs') or hung (a decoder copied from inside the decode
            # thread), so the copy is kept, unfinished, for the rest of the child's life
            _FORKED_AWAY.append(self._gen)
            return
        cleanup, self._never_started = self._never_started, None
        if self._stop is not None:  # raised to the caller
            self._throw_held()
        self._gen.close()
        if cleanup is not None:
            cleanup()

    def __del__(self) -> None:
        if self._stop is not None and os.getpid() == self._pid:
            held = id(self._stop)
            what = "a Ctrl-C" if isinstance(self._stop, KeyboardInterrupt) else f"a stop ({type(self._stop).__name__})"
            try:
                self.close()
            except BaseException as e:
                if id(e) != held:
                    raise
            log.warning("predict(stream=True): %s came while its last result was written, and the generator was "
                        "dropped without a next step or close(), which would have raised it: close it "
                        "(contextlib.closing) to get the stop", what)
        elif self._never_started is not None or os.getpid() != self._pid:
            self.close()


def _as_source(source: Any, vid_stride: int, *, save: bool) -> Source:
    """An opened :class:`~pvt_deploy.io.Source` for whatever ``predict`` was given."""
    if isinstance(source, Source):
        return source
    return open_source_for(source, vid_stride=vid_stride, save=save)


def open_source_for(source: Any, *, vid_stride: int = 1, save: bool = True) -> Source:
    """``open_source`` with the bundled sample photos for ``None``; ``save``: whether the run saves an
    annotated video, which sets the memory a video's frames are weighed at before they are decoded."""
    from pvt_deploy.io.sources import VIDEO_BYTES_PER_PIXEL, VIDEO_BYTES_PER_PIXEL_UNSAVED

    if source is None:
        from pvt_deploy.assets import sample_images

        return open_source([str(p) for p in sample_images()], vid_stride=vid_stride)
    return open_source(source, vid_stride=vid_stride,
                       bytes_per_pixel=VIDEO_BYTES_PER_PIXEL if save else VIDEO_BYTES_PER_PIXEL_UNSAVED)


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
