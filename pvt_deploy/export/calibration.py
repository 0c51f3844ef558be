"""Images for INT8 calibration and the parity gate, preprocessed exactly as at inference.

Calibration ranges are only right for the inputs the graph will see, so calibration images go through
the same :class:`~pvt_deploy.tasks.preprocess.Preprocessor` (same resize policy, size, padding) that
every backend uses at inference. Without a folder the bundled sample photos are used, which is enough
to produce a working graph but not a tuned one — the exporter says so. An Ultralytics dataset YAML
(``data=coco8.yaml``) stands for the images of its ``val`` split (:func:`dataset_images`); a video file
for frames spread over the whole clip (:func:`video_frames`), named ``clip.mp4#frame=120``; an http(s)
URL for the picture or the video file it serves (``https://host/clip.mp4#frame=120``), not a live feed.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pvt_deploy.errors import InputError
from pvt_deploy.manifest import DEFAULT_CALIB_IMAGES as DEFAULT_CALIB_IMAGES  # re-exported; see manifest
from pvt_deploy.tasks.preprocess import Letterbox, Preprocessor

if TYPE_CHECKING:
    from pvt_deploy.io.sources import Source, StreamSource, VideoSource

log = logging.getLogger("pvt_deploy.export")

DEFAULT_PARITY_IMAGES = 4
# the split whose images calibrate and compare: val, else train (Ultralytics reads "validation" as val)
DATASET_SPLITS = ("val", "validation", "train")


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """A frame of a video given to ``export --calib`` / ``--images``, decoded when the frames were chosen
    (:func:`video_frames`): the clip's name (a file's name, or its URL without a login), the frame's
    number in it (as ``infer`` numbers them) and its pixels, RGB."""

    clip: str
    index: int
    image: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        """Its stable name, ``clip.mp4#frame=120``: what the manifest records."""
        return f"{self.clip}#frame={self.index}"


@dataclass(frozen=True, eq=False)
class UrlPicture:
    """The picture an http(s) URL given to ``export --calib`` / ``--images`` serves, read as ``infer`` reads
    it (:func:`~pvt_deploy.io.sources.open_source`) when the pictures were chosen; named by its URL without
    a login (:func:`~pvt_deploy.io.sources.redact_url`)."""

    name: str
    image: np.ndarray = field(repr=False)


# an image file, read when batched, or a picture decoded already (a video's frame, a URL's picture)
Picture = Path | VideoFrame | UrlPicture
_T = TypeVar("_T")


@dataclass
class Batch:
    """One graph input (N, 3, H, W) float32 and the letterbox record and name of each picture in it: of a
    static graph's last batch, the rows past them are copies that fill it (:func:`make_batches`), counted
    and compared as no picture (the manifest's ``calibration.images`` and parity ``images``)."""

    images: np.ndarray
    metas: list[Letterbox]
    names: list[str]


def open_images(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, videos: bool,
                what: str = "image", keep: int = DEFAULT_CALIB_IMAGES) -> Source:
    """The pictures of ``export --calib`` / ``--images`` and ``check --images``, read one way: what
    :func:`~pvt_deploy.io.sources.open_source` opens for ``infer`` (an image, a folder, not recursive, a glob
    such as ``shots/**/*.jpg``, a ``.txt`` list, or a list of files), or an Ultralytics dataset YAML, which
    stands for the images of its split (:func:`dataset_images`). ``videos``: whether a video file or a
    stream may be given too (``check`` compares on its first frames; export takes a video file's frames
    spread over it and refuses a stream: :func:`usable_images`); otherwise one is an :class:`InputError`, as is a glob of YAML files (a glob is a set of images: the YAML is named on its
    own, so that what runs does not depend on how many files the glob matches today). ``keep``: how many of
    a video's frames are kept, which with the decoding sets the memory a frame's pixel needs before the
    video is decoded: what a run that saves no video needs (the decoder's frames and threads,
    :data:`~pvt_deploy.io.sources.VIDEO_BYTES_PER_PIXEL_UNSAVED`) and 3 bytes (RGB) for each frame kept, of
    no more frames than the clip holds (``kept_frames``: --calib-size 100000 on a 75-frame clip reads 75).
    A 4K clip of which 8 frames are kept is so weighed at ~1.2 GB; it was weighed as ``infer`` weighs a
    video it draws and saves (260 bytes a pixel, ~2.2 GB). A clip of non-square pixels is weighed at the size
    its frames are kept at, a player's (1440x1080 HDV at 1920x1080), as the video source weighs every video."""
    from pvt_deploy.io.sources import (
        _GLOB_CHARS,
        DATASET_SUFFIXES,
        VIDEO_BYTES_PER_PIXEL_UNSAVED,
        VIDEO_SUFFIXES,
        ImageSource,
        is_live,
        open_source,
    )

    if not isinstance(spec, (str, os.PathLike)):
        return open_source(spec)
    text = os.fspath(spec)
    not_video = f"{text}: a folder, an image file, a glob, a .txt list or a dataset YAML is wanted, not a video"
    if not videos and (is_live(text) or Path(text).suffix.lower() in VIDEO_SUFFIXES):
        raise InputError(not_video)
    if is_dataset_yaml(text):
        return ImageSource(dataset_images(text, what=what), kind="images", spec=text, origin="dataset YAML")
    path = Path(text).expanduser()
    if path.suffix.lower() in DATASET_SUFFIXES and _GLOB_CHARS.search(text) and not path.exists():
        yamls = sorted(p for p in glob.glob(str(path), recursive=True) if os.path.isfile(p))
        if yamls:
            named = ", ".join(yamls[:3]) + (" ..." if len(yamls) > 3 else "")
            which = "a YAML file" if len(yamls) == 1 else f"{len(yamls)} YAML files"
            raise InputError(f"{text} matches {which} ({named}): a glob is read as images; name one dataset "
                             "YAML on its own")
    source = open_source(text, bytes_per_pixel=VIDEO_BYTES_PER_PIXEL_UNSAVED, kept_frames=max(1, keep))
    if not videos and not isinstance(source, ImageSource):  # a video without a video's suffix
        source.close()
        raise InputError(not_video)
    return source


def is_dataset_yaml(spec: object) -> bool:
    """Whether ``spec`` names a YAML file (not a folder, not a glob, not a URL: pvt-deploy downloads no
    dataset), which is read as a dataset YAML."""
    from pvt_deploy.io.sources import _GLOB_CHARS, DATASET_SUFFIXES, is_url

    if not isinstance(spec, (str, os.PathLike)) or is_url(spec):
        return False
    path = Path(os.fspath(spec)).expanduser()
    return (path.suffix.lower() in DATASET_SUFFIXES and not path.is_dir()
            and (path.exists() or not _GLOB_CHARS.search(os.fspath(spec))))


def dataset_images(yaml_file: str | os.PathLike[str], *, what: str = "image") -> list[Path]:
    """The image files of an Ultralytics dataset YAML's ``val`` split, or of its ``train`` split where it
    has no ``val`` (``validation`` is read as ``val``, as Ultralytics reads it).

    As in Ultralytics, a split is a folder (its images, recursively: ``images/val`` beside
    ``labels/val``, or a folder holding both), a ``.txt`` list of image paths (one a line, as given or
    beside the list) or a list of those, relative to the YAML's ``path``; without ``path``, relative to
    the YAML's folder. A relative ``path`` is looked for from the current folder (where Ultralytics
    looks first; its datasets folder is not searched), then from the YAML's folder; a split written
    ``../x`` that is not there is also looked for as ``x`` (Roboflow's exports). Labels and class names
    are not read. Anything that does not make a set of images is an :class:`InputError` naming the key
    and the path at fault: no split key, a folder or list that is not there, a split without images.
    """
    import yaml

    from pvt_deploy.io.sources import _is_video, _named_image, image_files, image_types
    from pvt_deploy.utils.files import read_text

    text = os.fspath(yaml_file)
    path = Path(text).expanduser()
    if not path.is_file():
        raise InputError(f"no such file: {text}")
    source = read_text(path, what="dataset")  # UTF-8 or UTF-16, as a Windows tool may save it; named as yaml_names does
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"{text} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except ValueError as e:  # a value PyYAML's loader cannot make: a date of month 13 ('when: 2020-13-45')
        raise InputError(f"{text} is not a dataset YAML: a value in it cannot be read ({e})") from None
    key = next((k for k in DATASET_SPLITS if data.get(k) not in (None, "", [])), None) if isinstance(data, dict) else None
    if key is None or not isinstance(data, dict):
        kind = {dict: "no keys", list: "a list", str: "a line of text", type(None): "nothing"}
        held = (f"its keys: {', '.join(str(k) for k in list(data)[:8])}" if isinstance(data, dict) and data
                else f"it holds {kind.get(type(data), 'a ' + type(data).__name__)}")
        raise InputError(f"{text} is not a dataset YAML: no val or train image split ({held})",
                         hint="an Ultralytics data YAML names them, e.g. path: datasets/mine, val: images/val, "
                              "train: images/train")
    hint = "pvt-deploy downloads no dataset: run its download first" if data.get("download") else None
    root_text = data.get("path")
    if root_text in (None, ""):
        roots = [path.parent.resolve()]
    elif not isinstance(root_text, str):
        raise InputError(f"{text}: path: {root_text!r} is not a folder name")
    else:
        root = Path(root_text).expanduser()
        looked = list(dict.fromkeys(r.resolve() for r in ([root] if root.is_absolute()
                                                          else [Path.cwd() / root, path.parent / root])))
        roots = [r for r in looked if r.is_dir()]
        if not roots:
            raise InputError(f"{text}: path: {root_text} is not a folder (looked for "
                             f"{' and '.join(str(r) for r in looked)})", hint=hint)
    value = data[key]
    entries = value if isinstance(value, list) else [value]
    if not all(isinstance(e, str) and e.strip() for e in entries):
        raise InputError(f"{text}: {key}: {value!r} is not a path or a list of paths")
    files: list[Path] = []
    for entry in entries:
        tried = list(dict.fromkeys(Path(os.path.normpath(r / e)) for r in roots
                                   for e in (entry, *([entry[3:]] if entry.startswith("../") else []))))
        found = next((p for p in tried if p.exists()), None)
        if found is None:
            raise InputError(f"{text}: {key}: {entry} not found (looked for "
                             f"{' and '.join(str(p) for p in tried)})", hint=hint)
        if found.is_dir():  # its images and those of its folders, as infer lists a folder's (hidden ones left out)
            files += image_files(found, recursive=True)
        elif _named_image(found):
            files.append(found)
        elif _is_video(found):  # not read whole as a list, to fail on its bytes
            raise InputError(f"{text}: {key}: {entry} is a video: a split is a folder of images or a .txt "
                             "list of them")
        else:
            files += _listed_images(found, f"{text}: {key}: {entry}")
    if not files:
        raise InputError(f"{text}: {key}: {', '.join(entries)} holds no images",
                         hint=f"image types: {image_types()}")
    log.info("%s images: %s, its %s split: %d image(s) (%s)", what, text, key, len(files),
             ", ".join(entries) if len(entries) <= 3 else f"{entries[0]} and {len(entries) - 1} more")
    return files


def _listed_images(listing: Path, label: str) -> list[Path]:
    """The image files a split's ``.txt`` list names (Ultralytics' ``train2017.txt``), read as ``infer``
    reads a list (:func:`~pvt_deploy.io.sources.open_source`: one that is not there, or a URL, is an
    error). As in Ultralytics, a line that is not an image file is left out: said in a warning."""
    from pvt_deploy.io.sources import _listed_files, _named_image, open_source

    try:
        listed = _listed_files(listing)
        with open_source([p for p in listed if _named_image(Path(p))]) as source:
            images = [p for p in source.items if isinstance(p, Path)]  # type: ignore[attr-defined]
    except InputError as e:
        raise InputError(f"{label}: {e.args[0]}", hint=e.hint) from None
    if others := [p for p in listed if not _named_image(Path(p))]:
        log.warning("%s: left out %d line(s) that are not image files (%s)", label, len(others),
                    ", ".join(others[:3]) + (" ..." if len(others) > 3 else ""))
    return images


def usable_images(spec: str | os.PathLike[str], limit: int | None = None, *,
                  what: str = "image") -> list[Picture]:
    """The pictures export calibrates or compares on: the first ``limit`` image files of ``spec``
    (:func:`open_images`: a folder, an image, a glob, a .txt list, a dataset YAML; in that order) that
    decode, or, where ``spec`` is a video file, ``limit`` of its frames spread over the whole clip
    (:func:`video_frames`, default :data:`DEFAULT_CALIB_IMAGES`). An http(s) URL is opened as ``infer``
    opens it: a picture is that picture (:class:`UrlPicture`), a video file (not live) gives its frames
    as a clip on disk does, decoded in one pass.

    Unreadable files are skipped with one warning naming them, as ``infer`` skips them; an
    :class:`InputError` only when none decodes. A live feed is an :class:`InputError` (an export's
    calibration must be the same frames each time it is run): a camera, a URL of a scheme that only
    carries live feeds (rtsp, rtmp, ...) before connecting, an http(s) URL once opening it says it is
    live; so is a URL that does not answer, in ``infer``'s words. Run before any slow export work, so a
    bad folder or clip fails in a second rather than after tracing.
    """
    from pvt_deploy.io.sources import (  # as infer reads pictures
        _LIVE_SCHEMES,
        ArraySource,
        StreamSource,
        VideoSource,
        check_stream_url,
        is_url,
        is_webcam,
        read_image,
        redact_url,
    )

    text = os.fspath(spec)
    frames_wanted = limit or DEFAULT_CALIB_IMAGES  # of a video: what it is weighed at, and what is taken
    live = InputError(f"{what} images: {redact_url(text.strip())} is a stream or a camera, whose frames differ "
                      "from run to run: an export calibrates and compares on the same pictures every time",
                      hint="record a clip and give the file, or a folder of frames")
    try:
        if is_webcam(text.strip()) or (is_url(text) and check_stream_url(text.strip()) in _LIVE_SCHEMES):
            raise live  # said before connecting: these only ever carry live feeds
        with open_images(spec, videos=True, what=what, keep=frames_wanted) as source:
            if isinstance(source, StreamSource) and source.live:  # an http(s) feed: what opening it said
                raise live
            if isinstance(source, ArraySource):  # a picture's URL: its picture, read as infer reads it
                return [UrlPicture(f.path, f.image) for f in source]
            if isinstance(source, (VideoSource, StreamSource)):  # a video file, on disk or served
                frames: list[Picture] = list(video_frames(source, frames_wanted, what=what))
                return frames
            files = [p for p in source.items if isinstance(p, Path)]  # type: ignore[attr-defined]
            given_as = source.origin  # type: ignore[attr-defined]  # folder, glob, list, dataset YAML, image
    except InputError as e:
        if e is live:
            raise
        raise InputError(f"{what} images: {e.args[0]}", hint=e.hint) from None
    good: list[Picture] = []
    bad: list[str] = []
    for path in files:
        if limit and len(good) >= limit:
            break
        try:
            read_image(path)
        except InputError:
            bad.append(path.name)
            continue
        good.append(path)
    if bad:
        names = ", ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        if not good:
            raise InputError(f"{what} {given_as} {spec}: none of its {len(bad)} image(s) can be read ({names})")
        log.warning("%s %s %s: skipped %d unreadable image(s): %s", what, given_as, spec, len(bad), names)
    return good


def spread(items: Sequence[_T], count: int) -> list[_T]:
    """``count`` of ``items`` spread evenly over them, in order: the middle one of each of ``count`` equal
    runs (all of them where there are no more than ``count``)."""
    n = len(items)
    if n <= count:
        return list(items)
    return [items[(2 * i + 1) * n // (2 * count)] for i in range(count)]


def video_frames(source: VideoSource | StreamSource, count: int, *, what: str = "image") -> list[VideoFrame]:
    """``count`` frames of the video file ``source`` (opened, not yet read; on disk, or served over http(s)
    and not live), spread over the whole clip: the
    first frames of a clip are often alike (one scene, a fade-in), and an INT8 graph calibrated on them
    sees ranges narrower than the clip's.

    The frames on a stride that the clip's frame count (mp4, mov, avi) or its duration times its rate (mkv,
    webm: an estimate) gives, about ``frames / count``, thinned (:func:`_thinned`) and then :func:`spread`
    to ``count`` — on a 40-frame clip and ``count`` 4, frames 0, 10, 20 and 30. Where the file allows it
    (:meth:`~pvt_deploy.io.sources.VideoSource.seek_frames`: frames numbered by their times, an index to
    seek by, every seek landing on a keyframe before its frame, and fewer frames to decode than the whole
    clip's) each is found by seeking to the keyframe before it and decoding forward to it, which costs at
    most a GOP a frame rather than the whole clip; else (and always over the network, where each seek would
    be a request) one pass decodes the clip, converting only the frames on the stride to RGB. Both give the
    same frames,
    numbered as ``infer`` numbers them; a debug log says which way was taken. Where the clip declares
    neither a count nor a length (a raw ``.h264``), every frame is decoded and the kept ones thinned as
    they come. A clip that ends early (truncated, damaged) gives the frames that decode, with ``infer``'s
    warning; one with none is an :class:`InputError`.
    """
    total = source.frames
    if total is None:
        log.info("%s declares no frame count or duration: decoding it whole to spread %d %s frames over it",
                 source.spec, count, what)
    # The stride the source keeps while it decodes (frames off it are not converted to RGB): the widest that
    # still gives ``count`` frames, so that they are evenly spaced (150 frames, 8 wanted: every 19th; every
    # 18th gave 9, and one of them had to go, leaving a gap twice as wide); set before the source is read,
    # its count (which the stride would change) already taken.
    step = 1
    if total:
        step = -(-total // count)
        if -(-total // step) < count:  # a short clip (5 frames, 4 wanted): every 2nd gives 3
            step = max(1, total // count)

    def pick(numbers: range) -> list[int]:  # the numbers a whole read keeps (a number on the stride kept)
        return spread(_thinned(range(numbers.start + -numbers.start % step, numbers.stop, step), count), count)

    from pvt_deploy.io.sources import VideoSource

    on_disk = isinstance(source, VideoSource)
    found = source.seek_frames(pick) if total and isinstance(source, VideoSource) else None
    if found is None:
        log.debug("%s: decoding the whole clip to pick its %s frames%s", source.spec, what,
                  "" if on_disk else " (served over the network: a seek would be a request)")
        source.vid_stride = step
        found = spread(_thinned(source, count), count)
    if not found:
        raise InputError(f"{source.spec}: no decodable video frames")
    clip = Path(source.spec).name if on_disk else source.spec  # a URL's spec has no login (redact_url)
    chosen = [VideoFrame(clip, f.index, f.image) for f in found]
    numbers = [str(f.index) for f in chosen]
    log.info("%s images: %s, %d frame(s) spread over %s: %s", what, source.spec, len(chosen),
             f"its {total} frames" if total else "the clip",
             ", ".join(numbers) if len(numbers) <= 12 else f"{', '.join(numbers[:12])} ...")
    return chosen


def _thinned(items: Iterable[_T], count: int) -> list[_T]:
    """``items``, read once, thinned to between ``count`` and twice ``count`` of them spread over them: every
    second one dropped each time they pass twice ``count`` (then every 4th kept, and so on)."""
    kept: list[_T] = []
    every = 1
    for n, item in enumerate(items):
        if n % every:
            continue
        kept.append(item)
        if len(kept) > 2 * count:
            kept, every = kept[::2], every * 2
    return kept


def frame_names(pictures: Sequence[Picture]) -> list[str]:
    """The names of the video frames among ``pictures`` (``clip.mp4#frame=120``), for the manifest."""
    return [p.name for p in pictures if isinstance(p, VideoFrame)]


def bundled_images() -> list[Path]:
    from pvt_deploy.assets import sample_images

    return sample_images()


def make_batches(paths: Sequence[Picture], pre: Preprocessor, *, batch: int | None = None) -> list[Batch]:
    """Preprocess ``paths`` (image files, or frames :func:`video_frames` decoded) into graph inputs.

    ``batch=None`` (dynamic graphs): one image per input, each at its own planned size — what single-
    image inference feeds. ``batch=B`` (static graphs): groups of exactly ``B``, the last one filled by
    repeating images, because a static graph accepts nothing else; those copies have no ``metas`` or
    ``names`` (5 pictures at ``B`` 3 are 5, not 6: parity leaves their rows out, as ``check`` does).

    Each image file is preprocessed as it is decoded, so that no more than one is held at its own size (64
    photos of 12 MP were 2.3 GB at once), and a static graph's picture is written into its group's array as it
    is preprocessed (its pictures are all planned at the graph's one size): what is held is the batches, the
    preprocessed pictures that the export's memory check weighs (export/onnx.py ``_check_memory``), and one
    picture more. The rows that fill the last group are copies of the first pictures, of the first group.
    """
    from pvt_deploy.io.sources import read_image  # as infer reads pictures (EXIF orientation, any file name)

    if not paths:
        raise InputError("no images to preprocess")
    size = batch or 1
    out: list[Batch] = []
    for i in range(0, len(paths), size):
        group = paths[i:i + size]
        arr: np.ndarray | None = None
        metas = []
        for row, p in enumerate(group):
            one, (meta,) = pre.batch([read_image(p) if isinstance(p, Path) else p.image])
            if size == 1:
                arr = one
            else:
                if arr is None:
                    arr = np.empty((size, *one.shape[1:]), one.dtype)
                arr[row] = one[0]
            metas.append(meta)
        assert arr is not None
        for k in range(len(group), size):  # the last group filled: rows k % len(paths), of the first group
            arr[k] = arr[k % len(paths)] if i == 0 else out[0].images[k % len(paths)]
        out.append(Batch(arr, metas, [p.name for p in group]))
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
