"""``pvt-deploy infer``: run a model on images, folders, videos, webcams and streams.

Outputs go to ``-o DIR`` (default ``runs/infer/<model>``, then ``<model>2``, ``<model>3``... so a
run never overwrites another): annotated images under their own names, annotated H.264 ``.mp4`` per
video or stream (source frame rate / ``--vid-stride``, source size), ``predictions.jsonl`` (one line
per processed frame or image) and, for detection, ``predictions_coco.json``. JSON is on by default
for videos and streams, off for images (``--save-json/--no-save-json`` decide); ``--save-txt`` YOLO label
files under ``labels/`` and ``--save-crop`` box crops under ``crops/<class>/``. An annotated image,
mask or video whose name is already taken in ``DIR`` (the input itself when ``-o`` is its folder)
gets ``_1``, ``_2``...: no existing file is replaced; an earlier run's JSON, ``labels/`` or ``crops/`` in
``DIR`` make this run's ``predictions_1.jsonl``, ``labels_1/`` and ``crops_1/``.

Exit codes: 0 done (also when a video was truncated or a stream was lost for good: the frames read
are processed, the outputs are valid, and a warning says so; likewise unreadable images in a folder
are skipped with a warning); 2 bad input (missing file, unknown model, nothing decodable, size
outside the graph's range, an option out of range, an output folder that cannot be written, checked
before the model loads, or a write that fails mid-run, whose unfinished files are removed); 3
runtime unavailable; 4 engine mismatch; 130 interrupted by Ctrl-C, 143 by SIGTERM (outputs written
so far are finalised and playable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvt_deploy.cli.tables import print_table
from pvt_deploy.errors import InputError
from pvt_deploy.utils import count_of, one_line, whole_number

if TYPE_CHECKING:
    from rich.console import Console

    from pvt_deploy.tasks.pipeline import RunSummary

log = logging.getLogger("pvt_deploy.infer")


def register(app: typer.Typer) -> None:
    app.command("infer")(infer)


#: --imgsz as infer and check take it (parse_imgsz, then the pipeline: a letterbox rounds up, a centre crop does not)
IMGSZ_HELP = ("Input size N, HxW or H,W (default: the model's): a detector's or segmenter's rounded up to a multiple "
              "of 32, a classifier's as given; a static graph's only its own.")

#: --names as infer and val take it (load_backend's names: any model, for this run)
NAMES_HELP = ("Class names: a,b,c, a list in brackets ([\"car, red\", \"bus\"]: a name with a comma), a .txt or "
              ".names file (one a line) or a dataset YAML (its names:), as many as the model has classes; on an "
              "export, for this run (export --names writes them into it). Default: the model's own "
              "(an mmdet/mmseg checkpoint's, else its dataset's if as many, else numbers 0, 1, ...).")


def parse_imgsz(text: str | None) -> tuple[int, int] | None:
    """``640`` -> (640, 640); ``480,640`` or ``480x640`` -> (480, 640) as (height, width)."""
    from pvt_deploy.utils import size_pair

    return size_pair(text, what="--imgsz")


def parse_classes(text: str | None, names: list[str]) -> list[int] | None:
    """``0,2`` or ``person,car`` -> class ids (an id the model does not have is refused, as an
    unknown name is, and so is a list of none such as ``,``), as the Python API's ``classes=``;
    ``[0,2]``, Ultralytics' spelling, is the same list."""
    from pvt_deploy.api import class_ids

    if text is None or not text.strip():
        return None
    text = text.strip()
    if len(text) >= 2 and text[0] + text[-1] in ("[]", "()"):
        text = text[1:-1]
    items = [s.strip() for s in text.split(",") if s.strip()]
    return class_ids([int(s) if s.isdigit() else s for s in items], names, what="--classes")


# --help groups the options, as export's does: in one table the widest flag (--trust-checkpoint), type
# (<int range> [x>=1]) and --no- twin (--no-save-json) set the columns, which left the help text about
# 20 columns of an 80-column terminal and folded --trust-checkpoint in two
DETECTION_PANEL, FRAMES_PANEL, OUTPUT_PANEL = "Detection", "Videos, streams and batches", "Output"
TRUST_HELP = "Allow a checkpoint that needs full unpickling (runs code from the file)."
# bench, check and info: --trust-checkpoint in a table of its own, so that its width does not narrow the other
# options' help at 80 columns (bench's --backends list was folded mid-word)
CHECKPOINT_PANEL = "Checkpoint"


def infer(
    source: Annotated[list[str] | None, typer.Argument(
        help="Image, folder, glob, video, webcam index (0), rtsp/rtmp/http URL; or several image files (an "
        "unquoted glob, as the shell expands it, or a .txt list, one a line). Default: the bundled sample photos.",
        show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Export folder, .onnx, .engine, checkpoint file (.pth, .safetensors) or its http(s):// URL, "
        "zoo name or triton:// URL. "
        "Default pvt_small (exports/pvt_small when it exists, else PyTorch).", show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(help="torch, onnx, trt or triton (default: by artifact).")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or int8 (picks model.fp16/int8.onnx; default: the engine where TensorRT runs, else fp32).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N (default: GPU when usable).")] = None,
    imgsz: Annotated[str | None, typer.Option(help=IMGSZ_HELP)] = None,
    conf: Annotated[float | None, typer.Option(
        help="Detection score threshold of the results and JSON (default: manifest, 0.05).",
        rich_help_panel=DETECTION_PANEL)] = None,
    draw_conf: Annotated[float | None, typer.Option(
        help="Score from which boxes are drawn on the annotated output (default: --conf when given, else 0.25).",
        rich_help_panel=DETECTION_PANEL)] = None,
    iou: Annotated[float | None, typer.Option(
        help="NMS IoU threshold (default: manifest, 0.5).", rich_help_panel=DETECTION_PANEL)] = None,
    classes: Annotated[str | None, typer.Option(
        help="Keep only these classes: ids or names, comma-separated.", rich_help_panel=DETECTION_PANEL)] = None,
    max_det: Annotated[int | None, typer.Option(
        help="Maximum detections per image (default: manifest, 100).", rich_help_panel=DETECTION_PANEL)] = None,
    vid_stride: Annotated[int, typer.Option(
        min=1, help="Process every n-th video frame.", rich_help_panel=FRAMES_PANEL)] = 1,
    batch: Annotated[int | None, typer.Option(
        min=1, help="Frames per inference call (default for a video file: 4 on a GPU, one per core on "
                    "ONNX Runtime's CPU; else 1).", rich_help_panel=FRAMES_PANEL)] = None,
    audio: Annotated[bool, typer.Option(
        "--audio/--no-audio", help="Carry a video file's audio into the annotated mp4.",
        rich_help_panel=FRAMES_PANEL)] = True,
    show: Annotated[bool, typer.Option(
        "--show", help="Show results in a window (needs a display).", rich_help_panel=FRAMES_PANEL)] = False,
    save: Annotated[bool, typer.Option(
        "--save/--no-save", help="Write annotated images / videos.", rich_help_panel=OUTPUT_PANEL)] = True,
    save_json: Annotated[bool | None, typer.Option(
        "--save-json/--no-save-json", help="Write predictions.jsonl (+ COCO JSON for detection). "
        "Default: on for videos and streams, off for images.", show_default=False, rich_help_panel=OUTPUT_PANEL)] = None,
    save_mask: Annotated[bool, typer.Option(
        "--save-mask", help="Segmentation: also write each image's class map as <name>_mask.png (uint8 class ids).",
        rich_help_panel=OUTPUT_PANEL)] = False,
    save_txt: Annotated[bool, typer.Option(
        "--save-txt", help="Write a YOLO label file per image or frame to labels/: a detector's drawn boxes (class cx cy w h, "
        "normalised; empty: none), a classifier's top 5 (prob name).", rich_help_panel=OUTPUT_PANEL)] = False,
    save_conf: Annotated[bool, typer.Option(
        "--save-conf", help="Add each box's score to the label files (implies --save-txt).",
        rich_help_panel=OUTPUT_PANEL)] = False,
    save_crop: Annotated[bool, typer.Option(
        "--save-crop", help="Detection: cut each drawn box from the original picture into crops/<class>/<name>.jpg.",
        rich_help_panel=OUTPUT_PANEL)] = False,
    line_width: Annotated[int | None, typer.Option(
        help="Box line width in pixels (>= 1) of the annotated output (default: by picture size).",
        show_default=False, rich_help_panel=OUTPUT_PANEL)] = None,
    show_labels: Annotated[bool, typer.Option(
        "--show-labels/--hide-labels", help="Draw each box's class name and score.",
        rich_help_panel=OUTPUT_PANEL)] = True,
    show_conf: Annotated[bool, typer.Option(
        "--show-conf/--hide-conf", help="Draw each box's score after its class name.",
        rich_help_panel=OUTPUT_PANEL)] = True,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Output folder (default runs/infer/<model>, incremented).", show_default=False,
        rich_help_panel=OUTPUT_PANEL)] = None,
    weights: Annotated[str | None, typer.Option(  # str: a Path folds https:// into https:/
        "--weights", "-w", help="Checkpoint for a zoo model, or for an export folder with --backend torch (PyTorch): "
        "a file, an http(s):// URL (downloaded once, cached), or 'official': the zoo model's official file (the "
        "ImageNet classifier, or a detector's/segmenter's backbone: pvt-deploy models).")
    ] = None,
    trust_checkpoint: Annotated[bool, typer.Option(
        "--trust-checkpoint", help=TRUST_HELP)
    ] = False,
    names: Annotated[str | None, typer.Option(help=NAMES_HELP, show_default=False)] = None,
) -> None:
    """Run a model on images, folders, videos, webcams or streams; write annotated media and JSON.

    Examples:

      pvt-deploy infer street.mp4 --model exports/pvt_small --conf 0.3

      pvt-deploy infer photos/ --model exports/pvt_small-seg --precision fp16 --save-mask

      pvt-deploy infer rtsp://cam.local/stream --model exports/pvt_small --vid-stride 2
    """
    from rich.markup import escape

    from pvt_deploy.api import Model, check_weights
    from pvt_deploy.io.sources import counted_as
    from pvt_deploy.tasks.pipeline import check_outputs, check_settings, check_writable, increment_dir
    from pvt_deploy.utils.files import make_folders, remove_made_folders

    console = _console()
    # Bad options, and outputs that cannot be written, fail first: before a model loads or a frame decodes.
    size = parse_imgsz(imgsz)
    check_settings(conf=conf, iou=iou, max_det=max_det, draw_conf=draw_conf)
    if line_width is not None:
        whole_number("--line-width", line_width)  # N >= 1, in one line (not Click's usage box)
    check_weights(weights, model, backend, cli=True)
    out_root = output if output is not None else Path("runs") / "infer"
    save_txt = save_txt or save_conf
    files = save_txt or save_crop  # written whatever --save says
    if save or save_json or files:
        check_writable(out_root)
    # Files before the model: a missing one should not wait for it to load. A live feed (stream URL,
    # webcam) is connected once the model is loaded: what it sends meanwhile would queue up and
    # arrive as one stale burst, stamped a few ms apart, and play in a rush in the annotated video.
    spec = _one_source(source)
    live = _live_spec(spec)
    src = None if live else _open(spec, vid_stride, save)
    kind = "stream" if src is None else src.kind
    json_on = save_json if save_json is not None else kind in ("video", "stream")
    try:
        if json_on and not save:  # --no-save on a video or stream: JSON only, by default
            check_writable(out_root)
        m = Model(model, backend=backend, precision=precision, device=device, imgsz=size, weights=weights,
                  trust=trust_checkpoint, names=names)
    except BaseException:
        if src is not None:
            src.close()
        raise
    made: list[Path] = []  # the folders this run made for its default output folder (see below)
    try:
        check_outputs(m.task, save_txt=save_txt, save_crop=save_crop)
        if batch is not None:  # a batch the graph cannot take fails before a stream is connected to
            m.predictor(imgsz=size).check_batch(batch)
        if src is None:
            src = _open(spec, vid_stride, save)
            kind = src.kind  # an http(s) URL of one picture is an image once opened, as the file on disk is
            json_on = save_json if save_json is not None else kind in ("video", "stream")
        if m.random_weights:
            _warn_random(console, m.name, zoo=m.backend.info.name == "torch")
        for warning in _ignored(m.task, kind, save=save, save_mask=save_mask, classes=classes, conf=conf,
                                iou=iou, max_det=max_det, draw_conf=draw_conf, files=files, show=show):
            console.print(f"[yellow]warning: {escape(warning)}[/]", soft_wrap=True)
        if backend is None and m.backend.info.name == "torch" and m.backend.info.device == "cpu":
            console.print(f"[dim]{escape(_export_tip(model, m.name, weights))}[/]", soft_wrap=True)
        detect = m.task == "detect"  # the task of every detection filter (api.SETTING_TASKS)
        ids = parse_classes(classes, m.names) if detect else None
        writes = save or json_on or files
        # the default folder is made now, so that a run started at the same time takes the next one;
        # left empty (nothing read, an early error, Ctrl-C) it is removed below, and so are the runs/
        # and runs/infer/ this run made for it
        if output is None and writes:
            made = make_folders(out_root)
            save_dir = increment_dir(out_root / _safe(m.name), create=True)
            made.append(save_dir)
        else:
            save_dir = output if output is not None else increment_dir(out_root / _safe(m.name))
        plot = {"line_width": line_width, "labels": show_labels, "conf": show_conf}
        viewer = _Viewer(console, plot) if show else None
        noun = counted_as(kind)
        # "about": a length times a rate (mkv, webm), which a variable-rate clip can miss by half
        count = ("" if src.frames_exact else "about ") + count_of(src.frames, noun) if src.frames else ""
        detail = (count or kind) if noun == "image" else ", ".join(filter(None, (kind, count)))
        console.print(f"[bold]{escape(m.name)}[/] ({m.task}) on [bold]{m.backend.info.name}[/] "
                      f"{m.backend.info.device} {m.backend.info.precision} · source {escape(src.spec)}"
                      + (f" ({detail})" if detail != src.spec else ""), soft_wrap=True)  # not "3 images (3 images)"
        results = m.predict(src, stream=True, conf=conf if detect else None, iou=iou if detect else None,
                            draw_conf=draw_conf if detect else None,
                            classes=ids, imgsz=size, batch=batch, vid_stride=vid_stride,
                            max_det=max_det if detect else None, save=save, save_json=json_on,
                            save_mask=save_mask and save and m.task == "segment" and kind in ("image", "images"),
                            save_dir=save_dir if writes else None,
                            save_audio=audio, save_txt=save_txt, save_conf=save_conf, save_crop=save_crop,
                            line_width=line_width, show_labels=show_labels, show_conf=show_conf)
        try:
            _consume(results, src, console, viewer, kind)
        except KeyboardInterrupt:
            # say what was kept; main() then says "interrupted" or "terminated" as the last line
            if m.last_summary is not None:
                _print_summary(console, m.last_summary, save_dir if writes else None, noun)
            if m.last_summary is not None and m.last_summary.outputs:
                console.print(f"[yellow]the outputs above hold every {noun} processed so far[/]")
            elif writes:  # not "results saved to" a folder that is removed as empty, nor "the outputs above"
                console.print(f"[yellow]stopped before the first {noun} was done: nothing written[/]")
            raise
        summary = m.last_summary
        assert summary is not None
        if summary.frames == 0:
            raise InputError(f"no {noun}s could be read from {src.spec}"
                             + (f" ({count_of(summary.skipped, 'unreadable image')} skipped)" if summary.skipped else ""))
        _print_summary(console, summary, save_dir if writes else None, noun)
    finally:
        if src is not None:
            src.close()
        m.close()
        remove_made_folders(made)  # those still empty: a folder with the run's outputs stays


def _one_source(given: list[str] | None) -> str | list[str] | None:
    """The source as given; several (``photos/*.jpg`` unquoted, which the shell expands) are one list of
    image files, as ``Model.predict`` takes a list (a ``.txt`` list is ``open_source``'s to read)."""
    if not given:
        return None
    return given[0] if len(given) == 1 else list(given)


def _open(source: str | list[str] | None, vid_stride: int, save: bool) -> Any:
    from pvt_deploy.api import open_source_for

    # a list: image files; a folder or video is refused
    return open_source_for(source, vid_stride=vid_stride, save=save)


def _live_spec(source: str | list[str] | None) -> bool:
    """Whether ``source`` names a stream or webcam (as :func:`~pvt_deploy.io.sources.open_source`
    tells them apart), which ``infer`` connects to only once the model is loaded. A URL without a
    host is refused here, before the model loads, as a missing file is."""
    from pvt_deploy.io.sources import check_stream_url, is_live, is_webcam

    if not isinstance(source, str) or not is_live(source):
        return False
    text = source.strip()
    if not is_webcam(text):  # a webcam has no URL to check
        check_stream_url(text)
    return True


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _ignored(task: str, kind: str, *, save: bool, save_mask: bool, classes: str | None, conf: float | None = None,
             iou: float | None = None, max_det: int | None = None, draw_conf: float | None = None,
             files: bool = False, show: bool = False) -> list[str]:
    """One-line warnings for options that cannot apply to this model or source (in the CLI's words;
    those options are then not passed on, so the API does not warn again in its own). ``files``: label
    files or crops are written, which hold the drawn boxes; ``show``: a window shows them."""
    out = []
    if classes and classes.strip() and task != "detect":
        out.append(f"--classes filters detections; a {task} model has none: ignored")
    from pvt_deploy.api import SETTING_TASKS

    given = [f"--{key.replace('_', '-')}" for key, value in (("conf", conf), ("iou", iou), ("max_det", max_det),
                                                             ("draw_conf", draw_conf))
             if value is not None and SETTING_TASKS[key] != task]
    if given:
        out.append(f"{', '.join(given)} filter{'s' if len(given) == 1 else ''} detections; a {task} model has none: "
                   "ignored")
    if draw_conf is not None and task == "detect":
        if not save and not files and not show:
            out.append("--draw-conf sets the boxes drawn on the annotated output, which --no-save turns off: ignored")
        elif conf is not None and draw_conf < conf:
            out.append(f"--draw-conf {draw_conf:g} is below --conf {conf:g}, which keeps no box under it: boxes are "
                       f"drawn from {conf:g}")
    if save_mask:
        if task != "segment":
            out.append(f"--save-mask writes segmentation class maps; a {task} model has none: ignored")
        elif not save:
            out.append("--save-mask writes beside the annotated images, which --no-save turns off: ignored")
        elif kind not in ("image", "images"):
            out.append(f"--save-mask writes class maps of images, not of a {kind}: ignored")
    return out


def _export_tip(model: str | None, name: str, weights: str | None) -> str:
    """What to run for ONNX Runtime instead of PyTorch on a CPU (faster for every zoo model in
    ``benchmarks/speed.py``), where infer fell back to PyTorch because no export was there."""
    from pvt_deploy.utils import shell_quote

    export = f"pvt-deploy export --model {shell_quote(model or name)}"
    if weights is not None:
        export += f" --weights {shell_quote(str(weights))}"
    picked_up = weights is None and model in (None, name)  # a zoo name runs exports/<name> when it exists
    then = f"then infer picks up exports/{name}" if picked_up else f"then infer with --model exports/{name}"
    return f"tip: PyTorch on the CPU here; ONNX Runtime runs this model faster: {export}, {then}"


def _warn_random(console: Console, name: str, *, zoo: bool) -> None:
    from rich.markup import escape
    from rich.panel import Panel

    fix = ("Pass --weights official (its official ImageNet file, by URL), --weights CHECKPOINT, or an export "
           "made from real weights." if zoo else
           "This export was made without --weights: re-export it with --weights CHECKPOINT (official .pth).")
    console.print(Panel(f"[bold]{escape(name)} has RANDOM WEIGHTS[/]: its outputs are meaningless.\n{fix}",
                        title="warning", border_style="yellow", expand=False))


def _consume(results: Any, src: Any, console: Console, viewer: _Viewer | None, kind: str) -> None:
    """Iterate the results with a progress bar (frames, FPS, ETA); close the generator however we leave."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = src.frames if kind != "stream" else None
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[fps]}"), TimeRemainingColumn()]
    with contextlib.closing(results), Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("infer", total=total, fps="")
        t0 = time.perf_counter()
        for done, result in enumerate(results, 1):
            elapsed = time.perf_counter() - t0
            if kind == "images" and total is not None:  # an unreadable file leaves the count, not a gap
                total = src.frames - src.skipped
            elif total is not None and done > total and not src.frames_exact:
                # an estimate that fell short (MPEG-TS files joined end to end): no count, no ETA from here (a task's
                # total cannot be unset, so it is replaced)
                total = None
                progress.remove_task(task)
                task = progress.add_task("infer", total=None, completed=done - 1, fps="")
            progress.update(task, advance=1, total=total, fps=f"{done / elapsed:.1f} FPS" if elapsed > 0 else "")
            if viewer is not None:
                viewer.show(result)
            if kind in ("image", "images"):  # one line per picture, above the bar (as Ultralytics does)
                progress.console.print(_image_line(result, done, total), soft_wrap=True)
    if viewer is not None:
        viewer.close()


def _image_line(result: Any, done: int, total: int | None) -> str:
    """``2/3 photos/chelsea.jpg 451x300: 1 cat, 2 person (61.5 ms)``: what one picture gave, on one line (a
    name that holds a newline written ``new\\nline.jpg``)."""
    from rich.markup import escape

    h, w = result.orig_shape
    count = f"{done}/{total}" if total else f"{done}"
    ms = result.speed.get("inference")
    took = f" ({ms:.1f} ms)" if ms is not None else ""
    return one_line(f"{count} {escape(str(result.path))} {w}x{h}: {escape(result.verbose() or 'nothing')}{took}")


class _Viewer:
    """``--show``: an OpenCV window when there is a display and a GUI build of OpenCV; otherwise
    one clear message and the run continues (headless servers, opencv-python-headless)."""

    def __init__(self, console: Console, plot: dict[str, Any] | None = None) -> None:
        self.enabled = False
        self.plot = dict(plot or {})  # Result.plot's settings: those of the saved pictures
        reason = self._unavailable()
        if reason:
            console.print(f"[yellow]--show: {reason}; continuing without a window[/]")
            return
        self.enabled = True

    @staticmethod
    def _unavailable() -> str | None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "no display (DISPLAY is not set)"
        import cv2

        try:
            cv2.namedWindow("pvt-deploy", cv2.WINDOW_NORMAL)
        except cv2.error:
            return "this OpenCV has no GUI support (opencv-python-headless); pip install opencv-python to use it"
        return None

    def show(self, result: Any) -> None:
        if not self.enabled:
            return
        import cv2

        cv2.imshow("pvt-deploy", cv2.cvtColor(result.plot(**self.plot), cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF == ord("q"):
            raise KeyboardInterrupt

    def close(self) -> None:
        if self.enabled:
            import cv2

            cv2.destroyAllWindows()


def _print_summary(console: Console, summary: RunSummary, save_dir: Path | None, noun: str = "frame") -> None:
    from rich.markup import escape
    from rich.table import Table

    info = summary.to_json()
    model_fps = f", model-only {info['model_fps']:.2f} FPS" if info["model_fps"] else ""
    console.print(f"{count_of(summary.frames, noun)} in {summary.seconds:.2f} s: [bold]{summary.fps:.2f} FPS[/] end to end"
                  f"{model_fps}")
    table = Table(title=None, show_edge=False, pad_edge=False)
    for col in ("stage", f"ms/{noun}", "FPS"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    labels = {"decode": "decode", "preprocess": "pre", "inference": "infer", "postprocess": "post",
              "draw": "draw", "write": "encode/write"}
    for stage, label in labels.items():
        row = summary.stages.get(stage)
        if row:
            table.add_row(label, f"{row['ms_per_frame']:.1f}", f"{row['fps']:.1f}" if row["fps"] else "-")
    print_table(console, table)
    if summary.skipped:
        console.print(f"[yellow]{count_of(summary.skipped, 'unreadable image')} skipped[/]")
    if summary.dropped:
        console.print(f"[yellow]{summary.dropped} live frame(s) dropped to keep up with the stream[/]")
    if summary.source_error:
        console.print(f"[yellow]source ended early: {escape(summary.source_error)}; the frames read were processed[/]")
    if save_dir is not None and summary.outputs:
        console.print(f"results saved to [bold]{escape(str(save_dir))}[/]", soft_wrap=True)
        # label files and crops (one a frame, or more): their folders, with a count
        media = [p for p in summary.outputs if not p.endswith((".json", ".jsonl")) and p not in summary.files_in]
        for path in media[:5]:
            console.print(f"  {escape(path)}", soft_wrap=True)
        if len(media) > 5:
            console.print(f"  ... and {len(media) - 5} more")
        for folder, n in summary.files_in.items():
            console.print(f"  {escape(folder + os.sep)} ({count_of(n, 'file')})", soft_wrap=True)
        for path in summary.outputs:
            if path.endswith((".json", ".jsonl")):
                console.print(f"  {escape(path)}", soft_wrap=True)
