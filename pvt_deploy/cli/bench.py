"""``pvt-deploy bench``: latency and throughput of each backend, side by side.

The measuring is :func:`pvt_deploy.bench.benchmark`; this module parses options and prints a table
(or the JSON dict with ``--json``). Backends that cannot run here are listed with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvt_deploy.cli.infer import CHECKPOINT_PANEL, IMGSZ_HELP, TRUST_HELP
from pvt_deploy.cli.tables import print_table, transient_bars
from pvt_deploy.utils.files import json_dumps

if TYPE_CHECKING:
    from rich.console import Console


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Export folder, .onnx, .engine, checkpoint file (.pth, .safetensors) or its http(s):// URL, "
        "zoo name or triton:// URL. "
        "Default pvt_small (exports/pvt_small when it exists, else PyTorch).",
        show_default=False)] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma-separated: torch, onnx, onnx-fp16, onnx-int8, trt, torch-fp16, triton. "
        "Default: torch,onnx,onnx-fp16,onnx-int8,trt; for a lone .onnx, engine or checkpoint the backend that "
        "runs it; triton for a triton:// URL.", show_default=False)] = None,
    imgsz: Annotated[str | None, typer.Option(help=IMGSZ_HELP)] = None,
    batch: Annotated[int, typer.Option(min=1, help="Images per inference call.")] = 1,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 3,
    iters: Annotated[int, typer.Option(min=1, help="Timed runs.")] = 20,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N (default: GPU when usable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    profile: Annotated[bool, typer.Option(
        "--profile", help="Then time each backend's operators, in a run of their own (min(iters, 10) calls; "
        "profiling slows a run, so the latency table is of the unprofiled runs): a table per backend.")] = False,
    top: Annotated[int | None, typer.Option(
        min=1, help="Operator types a --profile table lists, the rest summed as 'other' (--json has them all); "
        "implies --profile. Default 12.", show_default=False)] = None,
    trust_checkpoint: Annotated[bool, typer.Option(
        "--trust-checkpoint", help=TRUST_HELP,
        rich_help_panel=CHECKPOINT_PANEL)] = False,
) -> None:
    """Benchmark latency (p50/p90/p99), throughput, stage split and memory per backend.

    Examples:

      pvt-deploy bench --model exports/pvt_small --backends torch,onnx,onnx-int8 --iters 20

      pvt-deploy bench --model exports/pvt_small/model.engine --profile
    """
    from rich.console import Console
    from rich.markup import escape

    from pvt_deploy.bench import BenchInterrupted, benchmark
    from pvt_deploy.cli.infer import parse_imgsz

    err = Console(stderr=True, highlight=False)
    size = parse_imgsz(imgsz)
    profile = profile or top is not None  # --top alone asks for the tables it sizes
    report: dict[str, Any] | None = None
    try:
        with progress_display(err) as (started, ran):
            report = benchmark(model, backends=backends, imgsz=size, batch=batch, warmup=warmup, iters=iters,
                               device=device, progress=started, steps=ran, profile=profile, trust=trust_checkpoint)
    except KeyboardInterrupt as stop:
        # Ctrl-C at the fourth backend keeps the three timed (BenchInterrupted's rows); one as the spinner
        # closes, after the last, keeps them all: shown, marked interrupted as the exit (130) says, then exit
        untimed = stop.untimed if isinstance(stop, BenchInterrupted) else []
        report = stop.report if isinstance(stop, BenchInterrupted) else report
        if report is not None and report["results"]:
            report["interrupted"] = True
            show(report, as_json, top)
            if untimed:
                err.print(escape(f"not timed: {', '.join(untimed)}"), style="dim")
        raise
    show(report, as_json, top)
    if not any(row["status"] == "ok" for row in report["results"]):
        from pvt_deploy.bench import nothing_ran

        raise nothing_ran(report["results"], "no backend could be benchmarked here")


@contextlib.contextmanager
def progress_display(console: Console, doing: str = "benchmarking"
                     ) -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None]]]:
    """The ``progress`` and ``steps`` of :func:`~pvt_deploy.bench.benchmark` (and of ``cross_check``, ``doing``
    'running') on :func:`~pvt_deploy.cli.tables.transient_bars`: 'benchmarking onnx' and a spinner while it loads,
    then its runs as they end (warmup and timed; check's: its pictures), with the time it has taken; a spinner
    alone was all there was for minutes of a large model's runs on a CPU. Nothing where the console is no
    terminal, as export's display."""
    with transient_bars(console) as bar:
        if bar is None:
            yield (lambda label: None), (lambda done, total: None)
            return
        tasks = [bar.add_task(doing, total=None)]

        def started(label: str) -> None:  # a task of its own: its runs unknown until it has loaded, its own time
            bar.remove_task(tasks.pop())
            tasks.append(bar.add_task(f"{doing} {label}", total=None))

        def ran(done: int, total: int) -> None:
            bar.update(tasks[-1], completed=done, total=total)

        yield started, ran


def show(report: dict[str, Any], as_json: bool, top: int | None) -> None:
    """The report on stdout: the JSON dict, or the tables (:func:`render`)."""
    from rich.console import Console

    if as_json:
        typer.echo(json_dumps(report, indent=2))
    else:
        render(report, Console(highlight=False), top=top or 12)


_DEVICES = {"CPUExecutionProvider": "ort-cpu", "CUDAExecutionProvider": "ort-cuda",
            "TensorrtExecutionProvider": "ort-trt"}


def short_device(device: str) -> str:
    """ONNX Runtime's provider names, shortened for tables."""
    return _DEVICES.get(device, device)


def render(report: dict[str, Any], console: Any, *, top: int = 12) -> None:
    """The benchmark table (one row per backend; skipped ones with their reason), 80 columns wide for
    every backend name, so no figure is split or cut on a common terminal or in a log; then, where the
    rows have a ``profile``, a table of each one's operators (:func:`render_profile`)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    shape = "x".join(map(str, report["input_shape"])) if report["input_shape"] else "?"
    title = f"{report['model']} ({report['task'] or '?'}) input {shape}, {report['iters']} iters"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False,
                  show_edge=False)
    columns = ("backend", "prec", "device", "p50 ms", "p90 ms", "p99 ms", "FPS", "pre/post", "peak MB", "vs torch")
    for col in columns:
        # fold, never "…": a narrower terminal must not hide digits of a measurement
        table.add_column(col, justify="left" if col in ("backend", "prec", "device") else "right", overflow="fold")
    notes = [f"{row['backend']}: {row['status']}: {row.get('reason', '')}"
             for row in report["results"] if row["status"] != "ok"]
    if len(notes) == len(report["results"]):  # nothing ran: the reasons, then the error; no empty "(?) input ?"
        for note in notes:
            console.print(escape(note), style="dim")
        return
    for row in report["results"]:
        if row["status"] != "ok":
            continue
        lat, st, mem = row["latency_ms"], row["stages_ms"], row["memory_mb"]
        peak = mem["cuda_peak"] if mem.get("cuda_peak") is not None else mem["rss_peak_delta"]
        vs = f"{row['vs_torch']:.2f}x" if row.get("vs_torch") else "-"
        table.add_row(row["backend"], row["precision"], short_device(str(row["device"])),
                      f"{lat['p50']:.1f}", f"{lat['p90']:.1f}", f"{lat['p99']:.1f}", f"{row['throughput_fps']:.1f}",
                      f"{st['preprocess']:.1f}/{st['postprocess']:.1f}", f"{peak:.0f}", vs)
    print_table(console, table)
    host = report["host"]
    console.print(f"host: {host['cpu']}, {host['physical_cores']} physical cores"
                  + (f", {host['gpu']}" if host.get("gpu") else "")
                  + "; ms = the inference call, FPS = batch x 1000 / mean ms (throughput_fps in --json), "
                  "pre/post = host pre- and post-processing ms per call; peak MB = MB (10^6 bytes) the backend added: "
                  "resident memory on the CPU; on a GPU, PyTorch's max_memory_allocated, "
                  "another runtime's GPU memory in use above what it was before loading")
    if any(r.get("random_weights") for r in report["results"] if r["status"] == "ok"):
        console.print("[yellow]random weights: timings are valid, outputs are not[/]")
    for note in notes:
        console.print(escape(note), style="dim")
    profiled = [row for row in report["results"] if row["status"] == "ok" and "profile" in row]
    for row in profiled:
        render_profile(row["backend"], row["profile"], console, top=top)
    if any(row["profile"]["ops"] for row in profiled):
        console.print("ms = each operator type's time per call in a profiled run of its own, after the timed "
                      "ones (whose figures are above); share = of all the operators' time; nodes = of that "
                      "type (PyTorch: runs per call)")


_OP_WIDTH = 40  # an operator's name in a profile table, so that the table keeps within 80 columns


def _op_name(name: str) -> str:
    """A layer or operator name cut to :data:`_OP_WIDTH` in the middle (TensorRT's fused layers are named
    after all they hold; their ends tell them apart)."""
    if len(name) <= _OP_WIDTH:
        return name
    head = (_OP_WIDTH - 1) // 2
    return name[:head] + "…" + name[-(_OP_WIDTH - 1 - head):]


def render_profile(backend: str, profile: dict[str, Any], console: Any, *, top: int = 12) -> None:
    """One backend's operator table: its ``top`` slowest operator types (the rest as one 'other' row), their
    nodes, ms per call, share and provider; or the one line saying why there is none."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    if profile.get("error") or not profile.get("ops"):
        console.print(escape(f"{backend} profile: {profile.get('error') or 'no operator times'}"), style="dim")
        return
    ops = profile["ops"]
    providers = any(op.get("provider") for op in ops)
    calls = profile["calls"]
    title = f"{backend}: {profile['total_ms']:.2f} ms of operators per call, {calls} profiled call{'s' if calls != 1 else ''}"
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    for col in ("op", "nodes", "ms", "share") + (("provider",) if providers else ()):
        table.add_column(col, justify="left" if col in ("op", "provider") else "right", overflow="fold")
    shown, rest = ops[:top], ops[top:]
    for op in shown:
        table.add_row(escape(_op_name(str(op["op"]))), str(op["nodes"]), f"{op['ms']:.3f}", f"{op['share']:.1%}",
                      *((short_device(str(op.get("provider") or "")),) if providers else ()))
    if rest:
        table.add_row(f"other ({len(rest)} type{'s' if len(rest) != 1 else ''})", str(sum(op["nodes"] for op in rest)),
                      f"{sum(op['ms'] for op in rest):.3f}", f"{sum(op['share'] for op in rest):.1%}",
                      *(("",) if providers else ()))
    console.print()
    console.print(escape(title))
    print_table(console, table)
