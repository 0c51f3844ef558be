"""``pvt-deploy models``: the zoo with parameter counts, default input sizes and published metrics."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pvt_deploy.cli.tables import print_table
from pvt_deploy.utils.files import json_dumps


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(
    task: Annotated[str | None, typer.Option(
        help="Only this task: detect, segment, classify or features (the bare backbones, listed only with "
             "--task features).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the model zoo: name, task, parameters, default input size, published metric and official weights."""
    from pvt_deploy.models.zoo import BACKBONE_NAMES, OFFICIAL_SIZE, ZooEntry, zoo_entries

    if task is not None:
        from pvt_deploy.errors import one_of, option
        from pvt_deploy.manifest import TASKS

        task = one_of(option("task"), task, TASKS)  # Detect is detect; a word that names no task, one line
    rows: list[dict[str, Any]] = []
    entries = [ZooEntry(b, "features") for b in BACKBONE_NAMES] if task == "features" else zoo_entries()
    for entry in entries:
        if task and entry.task != task:
            continue
        metric = entry.metric
        rows.append({
            "name": entry.name, "task": entry.task, "backbone": entry.backbone,
            "params_m": round(entry.parameters / 1e6, 2),
            "imgsz": list(entry.imgsz), "official_size": OFFICIAL_SIZE[entry.task],
            "metric": metric[0] if metric else None, "value": metric[1] if metric else None,
            "official_weights": entry.official_url, "official_part": entry.official_part,
        })
    if as_json:
        typer.echo(json_dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pvt-deploy model zoo (published metrics of the official weights)")
    for col in ("name", "task", "params", "imgsz", "published", "official"):
        table.add_column(col, justify="right" if col in ("params", "published") else "left", no_wrap=True)
    for r in rows:
        short = {"COCO box AP": "AP", "ADE20K mIoU": "mIoU", "ImageNet top-1": "top-1", None: ""}[r["metric"]]
        value = "—" if not short else f"{short} {r['value']}" if r["value"] is not None else f"{short} —"
        table.add_row(r["name"], r["task"], f"{r['params_m']:.2f}M", "x".join(map(str, r["imgsz"])), value,
                      r["official_part"] or "—")
    print_table(Console(), table)
    typer.echo("AP: COCO box AP (RetinaNet 1x); mIoU: ADE20K (Semantic FPN); top-1: ImageNet. "
               "Official test sizes: detect 1333x800, segment 2048x512 (keep ratio), classify 224.\n"
               "Every backbone also exports alone as <backbone>-features (its 4 feature maps, strides 4-32).\n"
               "official: what --weights official downloads (the URL: --json) — the model, or its ImageNet "
               "backbone (neck and head random: the official detectors and segmenters are Google Drive links, "
               "pass the file).")
