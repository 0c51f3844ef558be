"""``pvt-deploy val``: a model's accuracy on a labelled dataset, on whichever backend runs it.

COCO box AP for detectors (pycocotools), top-1/top-5 for classifiers, mIoU for segmenters: see
:mod:`pvt_deploy.evaluate` for the dataset layouts. What to run after an FP16 or INT8 export, on the
pictures the model will see: ``--precision int8`` against ``--precision fp32`` says what the smaller
graph costs in the metric users quote.

Exit codes: 0 measured; 2 bad input (missing dataset, a layout or classes that do not fit the model,
an option out of range); 3 runtime (or pycocotools) unavailable; 4 engine mismatch; 130 interrupted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from pvt_deploy.cli.infer import DETECTION_PANEL, IMGSZ_HELP, NAMES_HELP, TRUST_HELP
from pvt_deploy.cli.tables import print_table
from pvt_deploy.errors import InputError
from pvt_deploy.utils import count_of
from pvt_deploy.utils.files import json_dumps


def register(app: typer.Typer) -> None:
    app.command("val")(val)


# --batch beside --limit, whose type column (<int range> [x>=1]) in the first table left its help about 29 of
# 80 columns (--names took 16 lines)
DATASET_PANEL = "Dataset and batches"
LABELS_PANEL = "Segmenter labels"  # its --no- twin in a table of its own (see check's TOLERANCE_PANEL)


def val(
    data: Annotated[str, typer.Argument(
        help="Detector: a COCO instances JSON (annotations/instances_val2017.json; its pictures in val2017/ beside "
        "annotations/, or --images), or an Ultralytics dataset YAML (its val split, YOLO labels). Classifier: a folder of class folders (val/n01440764/*.JPEG). Segmenter: "
        "the dataset root holding images/ and annotations/ (ADE20K), or the pictures' folder with --masks.",
        show_default=False)],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Export folder, .onnx, .engine, checkpoint, zoo name or triton:// URL "
        "(default pvt_small: exports/pvt_small when it exists, else PyTorch).", show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(help="torch, onnx, trt or triton (default: by artifact).")] = None,
    precision: Annotated[str | None, typer.Option(
        help="fp32, fp16 or int8 (picks model.fp16/int8.onnx; default: the engine where TensorRT runs, else fp32); "
        "several, comma-separated (fp32,int8), are measured in turn and tabled side by side.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N (default: GPU when usable).")] = None,
    imgsz: Annotated[str | None, typer.Option(help=IMGSZ_HELP)] = None,
    batch: Annotated[int | None, typer.Option(min=1, help="Pictures per inference call (default 1), of one input "
        "size each (taken in order of size): none is padded to another's, which attention would see, so the "
        "metric is batch 1's.", rich_help_panel=DATASET_PANEL)] = None,
    images: Annotated[Path | None, typer.Option(
        help="Folder of the pictures (default: COCO's val2017 beside annotations, ADE20K's images/validation).",
        show_default=False, rich_help_panel=DATASET_PANEL)] = None,
    masks: Annotated[Path | None, typer.Option(
        help="Segmenter: label PNGs (or lossless TIFFs) named as the pictures (default: ADE20K's "
        "annotations/validation).",
        show_default=False,
        rich_help_panel=DATASET_PANEL)] = None,
    reduce_zero_label: Annotated[bool, typer.Option(
        "--reduce-zero-label/--no-reduce-zero-label", help="Segmenter: label 0 is 'other' and ignored, the others "
        "shift down by one (ADE20K's PNGs, as MMSegmentation reads them).", rich_help_panel=LABELS_PANEL)] = True,
    limit: Annotated[int | None, typer.Option(
        min=1, help="Evaluate the first N pictures only (a classifier's: from each class in turn; default: every "
        "picture).", show_default=False,
        rich_help_panel=DATASET_PANEL)] = None,
    conf: Annotated[float | None, typer.Option(
        help="Detection score threshold (default: manifest, 0.05, as COCO figures are measured).",
        rich_help_panel=DETECTION_PANEL)] = None,
    iou: Annotated[float | None, typer.Option(
        help="NMS IoU threshold (default: manifest, 0.5).", rich_help_panel=DETECTION_PANEL)] = None,
    max_det: Annotated[int | None, typer.Option(
        help="Maximum detections per image (default: manifest, 100).", rich_help_panel=DETECTION_PANEL)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    weights: Annotated[str | None, typer.Option(
        "--weights", "-w", help="Checkpoint for a zoo model, or for an export folder with --backend torch "
        "(PyTorch): a file, an http(s):// URL (downloaded once, cached), or 'official': the zoo model's official "
        "file (pvt-deploy models).")] = None,
    trust_checkpoint: Annotated[bool, typer.Option(
        "--trust-checkpoint", help=TRUST_HELP)
    ] = False,
    names: Annotated[str | None, typer.Option(help=NAMES_HELP, show_default=False)] = None,
) -> None:
    """Measure a model's accuracy on a labelled dataset: COCO box AP, top-1/top-5 or mIoU.

    Examples:

      pvt-deploy val coco/annotations/instances_val2017.json --model exports/pvt_small --precision int8

      pvt-deploy val coco8.yaml --model exports/pvt_v2_b0

      pvt-deploy val imagenet/val --model exports/pvt_v2_b2-cls --limit 5000

      pvt-deploy val ADEChallengeData2016 --model exports/pvt_small-seg --json > miou.json
    """
    import contextlib

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pvt_deploy.api import Model, check_weights
    from pvt_deploy.cli.infer import _ignored, _warn_random, parse_imgsz
    from pvt_deploy.evaluate import evaluate
    from pvt_deploy.export.calibration import is_dataset_yaml
    from pvt_deploy.tasks.pipeline import check_settings

    err = Console(stderr=True, highlight=False)
    size = parse_imgsz(imgsz)
    check_settings(conf=conf, iou=iou, max_det=max_det)
    check_weights(weights, model, backend, cli=True)
    if not Path(data).expanduser().exists():  # before the model loads
        raise InputError(f"dataset {data}: no such file or folder")
    results = []
    with contextlib.ExitStack() as stack:
        # every precision loads before the first is measured: one the export lacks fails now, not after an hour
        models = []
        for one in _precisions(precision):
            models.append(Model(model, backend=backend, precision=one, device=device, imgsz=size, weights=weights,
                                trust=trust_checkpoint, names=names))
            stack.callback(models[-1].close)
        for k, m in enumerate(models):
            if k == 0:  # said once, not for each precision
                if m.random_weights:
                    _warn_random(err, m.name, zoo=m.backend.info.name == "torch")
                # detection settings a classifier or segmenter has no use for, in infer's words
                for warning in _ignored(m.task, "images", save=True, save_mask=False, classes=None, conf=conf,
                                        iou=iou, max_det=max_det):
                    err.print(f"[yellow]warning: {escape(warning)}[/]", soft_wrap=True)
                # dataset options this dataset does not read (a YAML names its own pictures): said, not dropped
                unread = [flag for flag, read in (
                    ("--images", images is None or (m.task != "classify" and not is_dataset_yaml(data))),
                    ("--masks", masks is None or m.task == "segment"),
                    ("--no-reduce-zero-label", reduce_zero_label or m.task == "segment")) if not read]
                if unread:
                    err.print(f"[yellow]warning: {', '.join(unread)}: not read for this {m.task} model's dataset "
                              f"{escape(data)}: ignored[/]", soft_wrap=True)
            if m.task != "detect":
                conf = iou = max_det = None
            info = m.backend.info
            err.print(f"[bold]{escape(m.name)}[/] ({m.task}) on [bold]{info.name}[/] {info.device} "
                      f"{info.precision}", soft_wrap=True)
            columns = [TextColumn("val"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            with Progress(*columns, console=err, transient=True) as bar:
                report = evaluate(m, data, images=images, masks=masks, limit=limit, imgsz=size, batch=batch,
                                  conf=conf, iou=iou, max_det=max_det, reduce_zero_label=reduce_zero_label,
                                  progress=functools.partial(_advance, bar, bar.add_task("val", total=None)))
            result = report.to_dict()
            pre = m.predictor(imgsz=size).preprocessor
            result.update(model=m.name, backend=info.name, device=info.device, precision=info.precision,
                          imgsz=list(pre.imgsz), published=_published(m.name, m.task, m.names))
            results.append(result)
    if len(results) > 1:
        if as_json:
            typer.echo(json_dumps(_finite({"runs": results}), indent=2))
        else:
            render_side_by_side(results, Console(highlight=False))
        return
    result = results[0]
    if as_json:
        typer.echo(json_dumps(_finite(result), indent=2))
        return
    render(result, Console(highlight=False))


def _advance(bar: Any, task: Any, done: int, total: int) -> None:
    bar.update(task, completed=done, total=total)


def _precisions(text: str | None) -> list[str | None]:
    """``--precision``: one precision, several comma-separated (each once, in the order given), or None."""
    if text is None:
        return [None]
    parts = [p.strip().lower() for p in text.split(",")]
    if not all(parts):
        raise InputError(f"--precision {text!r}: give fp32, fp16 or int8, or several comma-separated (fp32,int8)")
    return list(dict.fromkeys(parts))


#: the --imgsz of each task's official test size (pvt-deploy models): a keep-ratio fit, as mmdet and mmseg test
OFFICIAL_IMGSZ = {"detect": "800,1333", "segment": "512,2048", "classify": "224"}


def _published(name: str, task: str, names: Sequence[str]) -> dict[str, Any] | None:
    """The zoo model's published figure (official weights, the official test size) for the report to stand
    beside: which metric, its value as a fraction, and the --imgsz that tests at that size. None for a model
    of other classes than the zoo model's (fine-tuned, or named by --names): the figure is not of its task."""
    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.models.zoo import OFFICIAL_SIZE, resolve_name

    try:
        entry = resolve_name(name)
    except PvtDeployError:  # an export of a model outside the zoo
        return None
    metric = entry.metric
    if entry.task != task or metric is None or metric[1] is None or tuple(names) != entry.classes:
        return None
    return {"metric": metric[0], "value": metric[1] / 100, "size": OFFICIAL_SIZE[task], "imgsz": OFFICIAL_IMGSZ[task]}


def _finite(value: Any) -> Any:
    """NaN (a metric with nothing to measure: no small objects, say) as JSON's null."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


_LABELS = {"AP": "AP @ IoU 0.50:0.95", "AP50": "AP @ IoU 0.50", "AP75": "AP @ IoU 0.75", "APs": "AP small",
           "APm": "AP medium", "APl": "AP large", "AR1": "AR, 1 detection", "AR10": "AR, 10 detections",
           "AR100": "AR, 100 detections", "ARs": "AR small", "ARm": "AR medium", "ARl": "AR large",
           "top1": "top-1 accuracy", "top5": "top-5 accuracy", "mIoU": "mean IoU", "mAcc": "mean class accuracy",
           "aAcc": "pixel accuracy"}


def render_side_by_side(reports: list[dict[str, Any]], console: Any) -> None:
    """Several precisions' metrics in one table (percent), each against the first in points."""
    from rich.markup import escape
    from rich.table import Table

    first = reports[0]
    console.print(f"{escape(first['model'])} ({first['task']}) · {first['backend']} {first['device']}", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    for r in reports:
        table.add_column(r["precision"], justify="right")
    for r in reports[1:]:
        table.add_column(f"{r['precision']} − {first['precision']}", justify="right")
    for key in first["metrics"]:
        values = [r["metrics"].get(key, float("nan")) for r in reports]
        cells = ["—" if math.isnan(v) else f"{100 * v:.2f}" for v in values]
        deltas = ["—" if math.isnan(v) or math.isnan(values[0]) else f"{100 * (v - values[0]):+.2f}"
                  for v in values[1:]]
        table.add_row(_LABELS.get(key, key), *cells, *deltas)
    print_table(console, table)
    speeds = ", ".join(f"{r['precision']} {r['fps']:.1f}" for r in reports if r.get("fps"))
    console.print(_dataset_line(first, f"; pictures/s: {speeds}" if speeds else ""), soft_wrap=True)
    _print_published(first, console)


def render(report: dict[str, Any], console: Any) -> None:
    """The metrics as a table (percent), then the dataset line."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"{escape(report['model'])} ({report['task']}) · {report['backend']} {report['device']} "
                  f"{report['precision']}", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report["metrics"].items():
        table.add_row(_LABELS.get(key, key), "—" if math.isnan(value) else f"{100 * value:.2f}")
    print_table(console, table)
    speed = f" at {report['fps']:.1f} pictures/s" if report.get("fps") else ""
    console.print(_dataset_line(report, speed), soft_wrap=True)
    _print_published(report, console)
    if report["per_class"] and report["task"] == "segment":
        worst = sorted((v, k) for k, v in report["per_class"].items() if not math.isnan(v))[:5]
        console.print("lowest IoU: " + ", ".join(f"{escape(k)} {100 * v:.1f}" for v, k in worst), soft_wrap=True)


def _dataset_line(report: dict[str, Any], speed: str) -> str:
    """The line under the table: pictures measured, of which dataset, ``speed``, and the unreadable ones left
    out (the same for every precision of a run: they are the dataset's)."""
    from rich.markup import escape

    skipped = f"; {count_of(report['skipped'], 'unreadable picture')} skipped" if report["skipped"] else ""
    return f"{count_of(report['images'], 'picture')} of {escape(report['dataset'])}{speed}{skipped}"


def _print_published(report: dict[str, Any], console: Any) -> None:
    """The zoo model's published figure, the --imgsz of its official test size and the size measured at."""
    from rich.markup import escape

    published = report.get("published")
    if published:
        size = "x".join(str(v) for v in report["imgsz"])
        console.print(f"published for {escape(report['model'])} (official weights): {published['metric']} "
                      f"{100 * published['value']:.1f} at {published['size']}, --imgsz {published['imgsz']}; "
                      f"measured here at {size}", soft_wrap=True)
