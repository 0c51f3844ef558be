"""``pvt-deploy info``: what an artifact is, whether its files are intact, and what can run it here.

The facts come from :func:`pvt_deploy.runtimes.loader.describe_artifact`; this module prints them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pvt_deploy.cli.infer import CHECKPOINT_PANEL, TRUST_HELP
from pvt_deploy.cli.tables import print_table
from pvt_deploy.utils import count_of
from pvt_deploy.utils.files import json_dumps


def register(app: typer.Typer) -> None:
    app.command("info")(info)


def info(
    artifact: Annotated[str, typer.Argument(
        help="Export folder, .onnx, .engine, checkpoint file (.pth, .safetensors) or its http(s):// URL, zoo "
        "name or triton:// URL.")] = "pvt_small",
    device: Annotated[str | None, typer.Option(help="Say what runs on this device: cpu, cuda, cuda:N (default: "
                                               "GPU when usable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON; \"verdict\": {\"ok\", "
                                          "\"problems\"} holds the reasons it exits 1.")] = False,
    graph: Annotated[bool, typer.Option("--graph", help="Also show what is inside each graph: opsets, "
                                        "initializers, operators and the type each computes in, what INT8 "
                                        "quantized; an engine's layers.")] = False,
    trust_checkpoint: Annotated[bool, typer.Option(
        "--trust-checkpoint", help=TRUST_HELP,
        rich_help_panel=CHECKPOINT_PANEL)] = False,
) -> None:
    """Show an artifact's manifest, inputs/outputs, files (sha256), precision, ranges, CPU graphs, parity and backends.

    Exit 1, after the tables, when a listed file changed (MISMATCH) or is missing, or a --graph cannot be read.

    Examples:

      pvt-deploy info exports/pvt_small --json

      pvt-deploy info exports/pvt_small --graph
    """
    from rich.console import Console

    from pvt_deploy.runtimes.loader import describe_artifact

    facts = describe_artifact(artifact, device=device, graph=graph, trust=trust_checkpoint)
    if as_json:
        typer.echo(json_dumps(facts, indent=2, default=str))
    else:
        render(facts, Console(highlight=False))
    problems = facts["verdict"]["problems"]
    if problems:  # an integrity check: the table above, then why it fails, exit 1
        from pvt_deploy.errors import PvtDeployError

        raise PvtDeployError(f"{facts['path']}: {'; '.join(problems)}")


def _shape(spec: dict[str, Any]) -> str:
    shape = spec.get("shape")  # None: the graph declares none (unknown rank, a sequence); [] is a scalar's
    dims = "(shape not declared)" if shape is None else f"[{', '.join(str(d) for d in shape)}]"
    return f"{spec['name']} {spec.get('dtype', '?')} {dims}"


def _size(n: int | None) -> str:
    """Decimal units, as ``export`` prints them and file managers show them (:func:`~pvt_deploy.utils.file_size`)."""
    from pvt_deploy.utils import file_size

    return "-" if n is None else file_size(n)


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
    foreign = facts.get("foreign")  # an ONNX file another tool made: no model, task, classes or weights to show
    classes = list(facts["classes"] or [])
    if any("," in c for c in classes):  # quoted, as --names takes them: "car, red", bus
        classes = [json.dumps(c, ensure_ascii=False) for c in classes]
    if foreign:
        say(foreign["note"])
        say(model_header_line(foreign))
    else:
        say(f"model {facts['model']} (backbone {facts['backbone']}), task {facts['task']}, "
            f"{facts['num_classes']} classes" + (f": {', '.join(classes[:5])}" if classes else "")
            + (", ..." if len(classes) > 5 else ""))
    if facts.get("palette"):  # a segmenter's checkpoint's colours, which its overlays are drawn with
        say(f"palette: from the checkpoint ({len(facts['palette'])} colours)")
    if not foreign:
        say(f"weights: {wtext}")
    for spec in facts.get("inputs") or []:
        say(f"input   {_shape(spec)}")
    for spec in facts.get("outputs") or []:
        say(f"output  {_shape(spec)}")
    pre = facts.get("preprocess") or {}
    if pre:
        # mean and std: applied in the graph (every export pvt-deploy writes: it is fed the pixels) or before it
        in_graph = pre.get("normalize_in_graph")
        where = "" if in_graph is None else ", normalised in the graph" if in_graph else ", normalised on the host"
        say(f"preprocess: {pre.get('resize')} to {'x'.join(map(str, pre.get('imgsz', [])))} "
            f"({pre.get('interpolation')}), {pre.get('color', 'RGB')} 0..255{where}")
    dyn = facts.get("dynamic")
    if not foreign:  # its dynamic dims are the named ones in its shapes above; no ranges are recorded
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
    _say_cpu_graphs(facts, say)
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
    if "graph" in facts:
        render_graphs(facts, console)


def _say_cpu_graphs(facts: dict[str, Any], say: Any) -> None:
    """Where each ONNX file's CPU graph is: what ONNX Runtime's CPU sessions here load, and your own can."""
    rows = [f for f in facts["files"] if "cpu_graph" in f]
    if not rows:
        return
    from pvt_deploy.runtimes.loader import ONNX_FILES, int8_onnx_file
    from pvt_deploy.utils import shell_quote

    say("ONNX Runtime CPU graphs (exact rewrites for this CPU; your own sessions can load them):")
    given = str(facts["path"])
    folder = Path(given).is_dir()
    # a CPU run of a file builds its graph (bench's default device on a GPU machine is the GPU): bench --model
    # FOLDER --device cpu runs the folder's ONNX files but one INT8 flavour, the other is named itself
    loaded = {ONNX_FILES["fp32"], ONNX_FILES["fp16"], int8_onnx_file(given, "cpu")} if folder else set()
    for f in rows:
        graph = f["cpu_graph"]
        if graph is None:
            model = given if f["name"] in loaded or not folder else str(Path(given) / f["name"])
            say(f"  {f['name']}: not built here yet (the first CPU run builds it: pvt-deploy bench --model "
                f"{shell_quote(model)} --device cpu)")
        elif graph["path"] == f["name"]:
            say(f"  {f['name']}: as exported (no rewrite pays on this CPU)")
        else:
            done = ", ".join(f"{k} {v}" for k, v in graph["rewrites"].items())
            say(f"  {f['name']} -> {graph['path']}" + (f" ({done})" if done else ""))


MAX_OP_ROWS = 40  # an operator table's rows before the rest fold into one (--json lists every type)


def _most(counts: dict[str, int], limit: int = 6) -> str:
    text = ", ".join(f"{k} {v}" for k, v in list(counts.items())[:limit])
    return text + (", ..." if len(counts) > limit else "")


def model_header_line(header: dict[str, Any]) -> str:
    """``opset ai.onnx 17; IR 8; producer pytorch 2.13.0``: what a model file says of itself
    (:func:`pvt_deploy.export.graph.model_header`)."""
    producer = " ".join(v for v in (header["producer"].get("name"), header["producer"].get("version")) if v)
    return "; ".join(["opset " + ", ".join(f"{d} {v}" for d, v in header["opsets"].items()),
                      f"IR {header['ir_version']}", *([f"producer {producer}"] if producer else [])])


def graph_line(row: dict[str, Any], flavour: Any = None) -> str:
    """One line for one graph of ``info --graph``: an ONNX file's nodes and the types they compute in (an
    INT8 file's quantized Conv/MatMul/Gemm nodes and Q/DQ pairs instead), an engine's layers."""
    if row["format"] == "engine":
        head = f"{row['file']} (TensorRT engine): "
        if row.get("error"):
            return head + str(row["error"])
        types = row.get("types")
        return head + count_of(row["layers"], "layer") + (f": {_most(types, 12)}" if types else
                                                        f" ({row['note']})" if row.get("note") else "")
    head = f"{row['file']} ({row.get('precision') or '?'}{f', {flavour}' if flavour else ''}): "
    if row.get("error"):
        return head + str(row["error"])
    from pvt_deploy.export.graph import CAST_OPS, QDQ_OPS

    parts = [count_of(row["nodes"], "node")]
    if row.get("precision") == "int8":
        quantized = [f"{q['quantized']} of {count_of(q['nodes'], op)}" for op, q in row["quantized"].items()]
        parts.append((" and ".join(quantized) + " quantized" if quantized else "no Conv/MatMul/Gemm")
                     + f"; {row['qdq']} Q/DQ")
    else:
        for i, (dtype, n) in enumerate(row["compute"].items()):
            ops = {op: by.get(dtype, 0) for op, by in row["types_by_op"].items()
                   if op not in CAST_OPS and op not in QDQ_OPS and by.get(dtype)}
            ops = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
            parts.append(f"{n} compute in {dtype}" if i == 0 else f"{n} in {dtype} ({_most(ops)})")
        if row["casts"]:
            parts.append(f"{row['casts']} Cast/Identity")
    if row["unknown"]:
        parts.append(f"{row['unknown']} of unknown type")
    return head + ", ".join(parts)


def render_graphs(facts: dict[str, Any], console: Any) -> None:
    """``info --graph``: for each graph its line (:func:`graph_line`), then for an ONNX file its opsets,
    IR version, producer and initializers, and its operators, most first, with the types they compute in."""
    from rich.markup import escape
    from rich.table import Table

    rows = facts["graph"]
    if not rows:
        target = facts.get("model") if str(facts.get("kind", "")).startswith("Triton") else (
            (facts.get("weights") or {}).get("url") or facts["path"])
        from pvt_deploy.utils import shell_quote

        console.print(escape(f"graph: no ONNX graph here (export it: pvt-deploy export --model "
                             f"{shell_quote(str(target))})"))
        return
    flavours = {f["name"]: f.get("flavour") for f in facts["files"]}
    for row in rows:
        console.print(escape("graph " + graph_line(row, flavours.get(row["file"]))))
        if row.get("error"):
            continue
        if row["format"] == "engine":
            counts = row.get("types") or {}
            kind = "layer type"
        else:
            init = row["initializers"]
            by_dtype = ", ".join(f"{d} {_size(e['bytes'])}" for d, e in init["by_dtype"].items())
            stored = (f"{count_of(init['count'], 'initializer')}, {_size(init['bytes'])}"
                      + (f" ({by_dtype})" if by_dtype else "") + f", {row['parameters']:,} parameters")
            console.print(escape(f"  {model_header_line(row)}; {stored}"))
            if row.get("note"):
                console.print(escape(f"  {row['note']}"))
            counts = row["ops"]
            kind = "op"
        if not counts:
            continue
        table = Table(title=row["file"], title_justify="left")
        for col in (kind, "nodes" if kind == "op" else "layers", *(("computes in",) if kind == "op" else ())):
            table.add_column(col)
        shown = list(counts.items())
        if len(shown) > MAX_OP_ROWS:
            shown = shown[:MAX_OP_ROWS - 1]
        for op, n in shown:
            types = row["types_by_op"].get(op, {}) if kind == "op" else {}
            table.add_row(escape(op), str(n), *((escape(", ".join(f"{t} {c}" for t, c in types.items())),)
                                                if kind == "op" else ()))
        rest = list(counts.items())[len(shown):]
        if rest:
            table.add_row(f"{len(rest)} more types", str(sum(n for _, n in rest)),
                          *(("--json lists them",) if kind == "op" else ()))
        print_table(console, table)
