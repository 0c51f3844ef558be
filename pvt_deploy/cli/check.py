"""``pvt-deploy check``: do all the backends that can run an artifact here agree?

Every available backend (PyTorch with the export's weights, ONNX Runtime on each ``.onnx`` precision
present, TensorRT where it runs) sees the same inputs and is compared with the reference exactly as the
export parity gate does (:mod:`pvt_deploy.export.parity`). Exits with code 5 when a backend is outside
tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pvt_deploy.cli.infer import CHECKPOINT_PANEL, IMGSZ_HELP
from pvt_deploy.cli.tables import print_table
from pvt_deploy.utils import count_of
from pvt_deploy.utils.files import json_dumps


def register(app: typer.Typer) -> None:
    app.command("check")(check)


# --help: the pass/fail options in a table of their own, whose --no-gate-agreement twin would otherwise
# set the columns of every option (at 80 columns "exports/pvt_smal" / "l", "--no-gate-agreem" / "ent")
TOLERANCE_PANEL = "Pass or fail"


def check(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Export folder, or a file in one (default exports/pvt_small).", show_default=False)
    ] = None,
    images: Annotated[str | None, typer.Option(
        help="Image, folder, glob, .txt list, dataset YAML (its val split), or a video, stream URL or webcam index "
        "(its first frames) to compare on (default: the bundled sample photos).", show_default=False)] = None,
    tolerance: Annotated[float | None, typer.Option(
        help="Factor on the export parity gate's per-precision tolerances (0.5 = twice as strict, 2 = twice as "
        "loose). Defaults: fp32 cosine>=0.9999 max_rel<=1e-3 agreement>=0.99; fp16 0.999/0.02/0.95; "
        "int8 0.98/0.25/0.80; tf32 (a TensorRT engine built with --tf32, ONNX Runtime's TensorRT EP) as fp16.",
        show_default=False, rich_help_panel=TOLERANCE_PANEL)] = None,
    backends: Annotated[str | None, typer.Option(help="Only these, comma-separated (at least two): torch, onnx, "
                                                "onnx-fp16, onnx-int8, trt.")] = None,
    imgsz: Annotated[str | None, typer.Option(help=IMGSZ_HELP)] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N (default: GPU when usable).")] = None,
    max_images: Annotated[int, typer.Option(min=1, help="Compare on at most this many images.")] = 8,
    gate_agreement: Annotated[bool | None, typer.Option(
        "--gate-agreement/--no-gate-agreement", help="Fail on task agreement too (default: only for trained "
        "weights; on random weights every prediction is a near-tie).", show_default=False,
        rich_help_panel=TOLERANCE_PANEL)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    trust_checkpoint: Annotated[bool, typer.Option(
        "--trust-checkpoint", help="Allow the checkpoint PyTorch rebuilds the export from to be fully unpickled, "
        "as export --trust-checkpoint did (runs code from the file).", rich_help_panel=CHECKPOINT_PANEL)] = False,
) -> None:
    """Run every available backend on the same inputs and report their agreement (exit 5 if outside tolerance).

    Examples:

      pvt-deploy check --model exports/pvt_small --images my_images/
    """
    from rich.console import Console

    from pvt_deploy.bench import cross_check
    from pvt_deploy.cli.bench import progress_display
    from pvt_deploy.cli.infer import parse_imgsz
    from pvt_deploy.errors import ParityError

    err = Console(stderr=True, highlight=False)
    artifact = _export_folder_of(model if model is not None else "pvt_small", err, backends)
    with progress_display(err, "running") as (started, ran):
        report = cross_check(artifact, images=images, backends=backends,
                             tolerance=tolerance, imgsz=parse_imgsz(imgsz), device=device, max_images=max_images,
                             gate_agreement=gate_agreement, trust=trust_checkpoint, progress=started, steps=ran)
    if as_json:
        typer.echo(json_dumps(report, indent=2))
    else:
        render(report, Console(highlight=False))
    if not report["passed"]:
        failed = [r for r in report["results"] if r.get("passed") is False]
        if not failed:  # no comparison failed: a backend failed to run (bench's rule for its exit code)
            from pvt_deploy.bench import nothing_ran

            raise nothing_ran([r for r in report["results"] if r["status"] == "failed"], "check could not run")
        first = failed[0]
        verb = "disagrees" if len(failed) == 1 else "disagree"
        raise ParityError(f"{', '.join(r['backend'] for r in failed)} {verb} with {report['reference']} beyond "
                          f"tolerance ({first['backend']}: {'; '.join(first['failures'][:2])})")
    if not as_json:  # the verdict last, as polygraphy run ends with PASSED
        Console(highlight=False).print(verdict(report), soft_wrap=True)


def verdict(report: dict[str, Any]) -> str:
    """The last line of a check that passed: the backends that agreed, and those with nothing compared
    (the export gate's "unchecked": only post-NMS or argmax outputs, agreement not gated on random weights),
    which must not read as agreeing."""
    compared = [r for r in report["results"] if r.get("passed") and not r.get("reference")]
    agreed = [r["backend"] for r in compared if r.get("checked", True)]
    unchecked = [r["backend"] for r in compared if not r.get("checked", True)]
    parts = []
    if agreed:
        parts.append(f"passed: {', '.join(agreed)} {'agrees' if len(agreed) == 1 else 'agree'} "
                     f"with {report['reference']} within tolerance")
    if unchecked:
        what = "post-NMS detections" if report.get("task") == "detect" else "class maps"
        parts.append(f"unchecked: {', '.join(unchecked)} (only {what} to compare, random weights: "
                     "--gate-agreement compares them)")
    return "; ".join(parts)


def _export_folder_of(model: str, console: Any, backends: str | None = None) -> str:
    """A file of an export (``exports/x/model.onnx``, as ``polygraphy run model.onnx`` takes it) is checked
    as the export folder that holds it, whose manifest says how to run and compare it; said first."""
    from rich.markup import escape

    from pvt_deploy.manifest import MANIFEST_NAME

    path = Path(model)
    if path.is_file() and path.parent.name.isdigit() and (path.parent.parent / "config.pbtxt").is_file():
        return str(path.parent.parent)  # a file of a Triton model (tri/NAME/1/model.onnx): said as its folder
    if not path.is_file() or not (path.parent / MANIFEST_NAME).is_file():
        return model
    what = f"checking its {backends}" if backends else "checking every backend of the export that runs here"
    console.print(escape(f"{model} is a file of the export {path.parent}: {what}"), soft_wrap=True)
    return str(path.parent)


_RESULT_MARKUP = {"ok": "[green]ok[/]", "unchecked": "[yellow]unchecked[/]", "FAILED": "[red]FAIL[/]"}


def render(report: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from pvt_deploy.cli.bench import short_device
    from pvt_deploy.export.parity import agreement_text, gated_rel, parity_status
    from pvt_deploy.io.sources import counted_as

    metric = {"detect": "detection F1", "segment": "pixels equal", "classify": "top-1 equal"}.get(
        str(report.get("task")), "agreement")
    gated = "" if report.get("agreement_gated") else " (agreement not gated: random weights)"
    noun = counted_as(report.get("source_kind"))
    shape = f", input {'x'.join(map(str, report['input_shape']))}" if report.get("input_shape") else ""
    table = Table(title=f"{report['artifact']}: {count_of(report['images'], noun)} vs {report['reference']}{shape}"
                        f"{gated}", title_justify="left")
    for col in ("backend", "prec", "device", metric, "max_rel", "cosine", "result"):
        table.add_column(col, justify="left" if col in ("backend", "prec", "device", "result") else "right",
                         overflow="fold")
    notes = []
    for row in report["results"]:
        if row["status"] != "ok":
            notes.append(f"{row['backend']}: {row['status']}: {row.get('reason', '')}")
            continue
        if row.get("reference"):
            table.add_row(row["backend"], row["precision"], short_device(str(row["device"])), "-", "-", "-",
                          "reference")
            continue
        outs = row.get("outputs") or {}
        max_rel = max((float(gated_rel(o)) for o in outs.values()), default=None)
        cosine = min((float(o["cosine"]) for o in outs.values() if "cosine" in o), default=None)
        result = _RESULT_MARKUP[parity_status(row)]  # the export gate's words for a file: ok, unchecked, failed
        table.add_row(row["backend"], row["precision"], short_device(str(row["device"])),
                      escape(agreement_text(row, ".2%")),
                      f"{max_rel:.1e}" if max_rel is not None else "-",
                      f"{cosine:.6f}" if cosine is not None else "-", result)
        notes += [f"{row['backend']}: {f}" for f in row.get("failures", [])]
    print_table(console, table)
    for note in notes:
        console.print(escape(note), style="dim")
