"""``pvt-deploy info``: what an artifact is, whether its files are intact, and what can run it here.

The facts come from :func:`pvt_deploy.runtimes.loader.describe_artifact`; this module prints them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pvt_deploy.cli.tables import print_table
from pvt_deploy.utils.files import json_dumps


def register(app: typer.Typer) -> None:
    app.command("info")(info)


def info(
    artifact: Annotated[str, typer.Argument(
        help="Export folder, .onnx, .engine, checkpoint file (.pth, .safetensors) or its http(s):// URL, zoo "
        "name or triton:// URL.")] = "pvt_small",
    device: Annotated[str | None, typer.Option(help="Say what runs on this device: cpu, cuda, cuda:N (default: "
                                               "GPU when usable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """Show an artifact's manifest, inputs/outputs, files (sha256), precision, ranges, parity and backends.

    Examples:

      pvt-deploy info exports/pvt_small --json
    """
    from rich.console import Console

    from pvt_deploy.runtimes.loader import describe_artifact

    facts = describe_artifact(artifact, device=device)
    if as_json:
        typer.echo(json_dumps(facts, indent=2, default=str))
        return
    render(facts, Console(highlight=False))


def _shape(spec: dict[str, Any]) -> str:
    return f"{spec['name']} {spec.get('dtype', '?')} [{', '.join(str(d) for d in spec.get('shape', []))}]"


def _size(n: int | None) -> str:
    """Decimal units, as ``export`` prints them and file managers show them."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f} GB"


def _precision(precision: Any, flavour: Any) -> str:
    """``int8 (cpu)`` / ``int8 (trt)``: the two INT8 graphs differ (uint8 asymmetric for ONNX Runtime's CPU
    kernels, symmetric int8 for TensorRT), so the precision alone does not say which a file is."""
    text = str(precision or "-")
    return f"{text} ({flavour})" if precision and flavour else text


def render(facts: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    def say(text: str) -> None:  # shapes like [batch, 3, ...] must not be read as Rich markup
        console.print(escape(text))

    weights = facts["weights"]
    wtext = str(weights.get("source") or "unknown")
    if weights.get("url"):  # the source is then the download cache's file, which does not say where it came from
        wtext += f" (downloaded from {weights['url']})"
    if weights.get("random_init"):
        seed = weights.get("seed")
        wtext = "RANDOM (outputs meaningless" + (f"; seed {seed}, so PyTorch rebuilds them)" if seed is not None
                                                 else ")")
    say(f"{facts['path']} — {facts['kind']}")
    classes = list(facts["classes"] or [])
    if any("," in c for c in classes):  # quoted, as --names takes them: "car, red", bus
        classes = [json.dumps(c, ensure_ascii=False) for c in classes]
    say(f"model {facts['model']} (backbone {facts['backbone']}), task {facts['task']}, "
        f"{facts['num_classes']} classes" + (f": {', '.join(classes[:5])}" if classes else "")
        + (", ..." if len(classes) > 5 else ""))
    if facts.get("palette"):  # a segmenter's checkpoint's colours, which its overlays are drawn with
        say(f"palette: from the checkpoint ({len(facts['palette'])} colours)")
    say(f"weights: {wtext}")
    for spec in facts.get("inputs") or []:
        say(f"input   {_shape(spec)}")
    for spec in facts.get("outputs") or []:
        say(f"output  {_shape(spec)}")
    pre = facts.get("preprocess") or {}
    if pre:
        say(f"preprocess: {pre.get('resize')} to {'x'.join(map(str, pre.get('imgsz', [])))} "
                      f"({pre.get('interpolation')}), {pre.get('color', 'RGB')} 0..255, normalised in graph: "
                      f"{pre.get('normalize_in_graph')}")
    dyn = facts.get("dynamic")
    say("dynamic: " + (", ".join(f"{k} {v[0]}..{v[1]}" for k, v in dyn.items()) if dyn else "no (static shapes)"))
    if facts.get("postprocess"):
        say("postprocess: " + ", ".join(f"{k}={v}" for k, v in facts["postprocess"].items()))
    if facts["files"]:
        table = Table(title="files", title_justify="left")
        for col in ("file", "precision", "size", "sha256", "vs manifest"):
            table.add_column(col)
        for f in facts["files"]:
            status = {"ok": "[green]ok[/]", "MISMATCH": "[red]MISMATCH[/]"}.get(f["check"], f["check"])
            table.add_row(f["name"], _precision(f.get("precision"), f.get("flavour")), _size(f.get("bytes")),
                          f["sha256"][:16] if f["sha256"] else "-", status)
        print_table(console, table)
    trt = facts.get("tensorrt")
    if trt:
        from pvt_deploy.runtimes.tensorrt import engine_precision

        say(f"tensorrt: {trt.get('version')} on {trt.get('gpu')} (cc {trt.get('compute_capability')}), "
                      f"{engine_precision(trt)}, profiles {trt.get('profiles')}")  # tf32 where TensorRT may use it
    parity = facts.get("parity") or {}
    from pvt_deploy.export.parity import agreement_text, parity_status

    for name, p in parity.items():
        outs = ", ".join(f"{k} max_abs {v.get('max_abs', 0):.1e}" for k, v in (p.get("outputs") or {}).items())
        # the gate passed a file with nothing to compare (graph NMS, argmax maps; random weights) unjudged
        verdict = {"ok": "passed", "FAILED": "FAILED"}.get(parity_status(p), "unchecked (nothing compared)")
        if verdict == "FAILED" and p.get("failures"):  # the limits the file missed, as the export's error said them
            verdict += f" ({'; '.join(map(str, p['failures']))})"
        say(f"parity at export, {name}: {verdict}, agreement {agreement_text(p)}" + (f"; {outs}" if outs else ""))
    table = Table(title="backends here", title_justify="left")
    for col in ("backend", "precision", "file", "runs here"):
        table.add_column(col)
    flavours = {f["name"]: f.get("flavour") for f in facts["files"]}
    for c in facts["backends"]:
        ok = "[green]yes[/]" + escape(f" ({c['reason']})" if c["reason"] else "") if c["available"] else escape(
            f"no: {c['reason']}")
        name = Path(str(c.get("file") or "-")).name
        table.add_row(c["label"], _precision(c.get("precision"), flavours.get(name)), escape(name), ok)
    print_table(console, table)
