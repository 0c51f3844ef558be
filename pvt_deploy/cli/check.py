"""``pvt-deploy check``: do all the backends that can run an artifact here agree?

Every available backend (PyTorch with the export's weights, ONNX Runtime on each ``.onnx`` precision
present, TensorRT where it runs) sees the same inputs; agreement is measured on final results, as in
the export parity gate. Exits with code 5 when a backend is outside tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def check(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Export folder (default exports/pvt_small).", show_default=False)] = None,
    images: Annotated[Path | None, typer.Option(
        help="Image, folder or glob to compare on (default: the bundled sample photos).", show_default=False)] = None,
    tolerance: Annotated[float | None, typer.Option(
        help="Minimum agreement (0..1) of final results; default per precision: fp32 0.99, fp16 0.95, int8 0.90.",
        show_default=False)] = None,
    atol: Annotated[float | None, typer.Option(
        help="Maximum abs difference of dense outputs (logits); default per precision: fp32 1e-3, fp16 5e-2, "
        "int8 0.5.", show_default=False)] = None,
    backends: Annotated[str | None, typer.Option(help="Only these (comma-separated labels).")] = None,
    imgsz: Annotated[str | None, typer.Option(help="Input size H or H,W (dynamic graphs).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N.")] = None,
    max_images: Annotated[int, typer.Option(min=1, help="Compare on at most this many images.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run every available backend on the same inputs and report their agreement."""
    from rich.console import Console

    from pvt_deploy.bench import cross_check
    from pvt_deploy.cli.infer import parse_imgsz
    from pvt_deploy.errors import ParityError

    err = Console(stderr=True, highlight=False)
    with err.status("checking") as status:
        report = cross_check(model if model is not None else "pvt_small", images=images, backends=backends,
                             tolerance=tolerance, atol=atol, imgsz=parse_imgsz(imgsz), device=device,
                             max_images=max_images, progress=lambda label: status.update(f"running {label}"))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        render(report, Console(highlight=False))
    if not report["passed"]:
        failed = [r["backend"] for r in report["results"] if r.get("passed") is False]
        raise ParityError(f"{', '.join(failed)} disagree with {report['reference']} beyond tolerance")


def render(report: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from pvt_deploy.cli.bench import short_device

    metric = {"detect": "detections matched (IoU 0.5)", "segment": "pixels equal", "classify": "top-1 equal"}.get(
        str(report.get("task")), "agreement")
    table = Table(title=f"{report['artifact']}: {report['images']} images, reference {report['reference']}",
                  title_justify="left")
    for col in ("backend", "prec", "device", metric, "max abs diff", "tolerance", "result"):
        table.add_column(col, justify="left" if col in ("backend", "prec", "device", "result") else "right")
    notes = []
    for row in report["results"]:
        if row["status"] != "ok":
            notes.append(f"{row['backend']}: skipped: {row.get('reason', '')}")
            continue
        diffs = row.get("outputs") or {}
        max_abs = max((d["max_abs"] for d in diffs.values()), default=None)
        tol = row["tolerance"]
        result = "reference" if row.get("reference") else ("[green]ok[/]" if row["passed"] else "[red]FAIL[/]")
        table.add_row(row["backend"], row["precision"], short_device(str(row["device"])), f"{row['agreement']:.2%}",
                      f"{max_abs:.2e}" if max_abs is not None else "-",
                      f">={tol['agreement']:.0%} <={tol['atol']:g}", result)
    console.print(table)
    for note in notes:
        console.print(escape(note), style="dim")
