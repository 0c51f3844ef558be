"""``pvt-deploy export``: PyTorch -> ONNX artifact (+ FP16/INT8, parity gate) -> TensorRT / Triton.

The command parses options and calls :func:`pvt_deploy.export.export` (the library does the work);
it adds a transient progress display, quiets the exporters' warnings, and prints a summary table.

Exit codes: 0 done; 1 export failed; 2 bad input (unknown model, bad --imgsz or size range, missing
folder, no readable calibration/parity image, a --calib/--images video that does not decode or a live stream,
unwritable output, -o/--weights with an export folder);
3 TensorRT/runtime unavailable; 5 parity outside tolerance (files are written and marked failed in
manifest.json, unless the output folder held an export, which is then kept; --allow-parity-failure
turns this into a warning). A new export replaces its folder only once complete: a failure or Ctrl-C
leaves the previous export as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvt_deploy.cli.spelling import Command
from pvt_deploy.cli.tables import print_table, transient_bars
from pvt_deploy.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger("pvt_deploy.export")

PHASES = {
    "load": "loading model",
    "trace": "tracing to ONNX",
    "simplify": "simplifying graph (onnxslim)",
    "check": "checking graph",
    "fp16": "converting to FP16",
    "int8-prepare": "preparing INT8 (shape inference, CPU layout)",
    "int8-calibrate": "calibrating INT8",
    "int8-cpu": "quantizing INT8 (CPU flavour)",
    "int8-trt": "quantizing INT8 (TensorRT flavour)",
    "parity": "parity: ONNX Runtime vs reference",
}

ONNX_PANEL = "ONNX"
PRECISION_PANEL = "FP16 / INT8"
PARITY_PANEL = "Parity gate"
TRT_PANEL = "TensorRT (--format trt)"
TRITON_PANEL = "Triton (--format triton)"


# The maxima are the installed torch's and onnx's (export.onnx.max_opset, the limit --opset is checked
# against), added when the help is shown: importing torch for every command would cost seconds.
OPSET_HELP = "ONNX opset: torchscript 17 (default) up to torch's maximum; dynamo 18 (default) or newer, converted."
OPSET_MAXIMA = " Here: up to {torchscript} with torchscript, {dynamo} with dynamo."


class ExportCommand(Command):
    """``export``, whose ``--opset`` help names the highest opset each exporter writes here."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        try:
            from typer.core import TyperOption

            from pvt_deploy.export.onnx import max_opset

            text = OPSET_HELP + OPSET_MAXIMA.format(torchscript=max_opset("torchscript")[0],
                                                    dynamo=max_opset("dynamo")[0])
        except ImportError:  # a runtime-only install (no torch / onnx): no export to run either
            text = None
        for param in self.params:
            if text is not None and param.name == "opset" and isinstance(param, TyperOption):
                param.help = text
        super().format_help(ctx, formatter)


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the app."""
    app.command("export", cls=ExportCommand)(export)


def parse_shape(text: str | None, option: str) -> list[int] | None:
    """``1x3x640x640`` -> [1, 3, 640, 640]; trtexec's ``images:1x3x640x640`` and Polygraphy's
    ``images:[1,3,640,640]`` too (the graph's one input is ``images``)."""
    if text is None:
        return None
    name, named, body = text.strip().rpartition(":")
    if named and name.strip() != "images":
        raise InputError(f"{option} {text!r}: the graph's input is named images (images:1x3x640x640, or 1x3x640x640)")
    body = body.strip().removeprefix("[").removesuffix("]")
    try:
        dims = [int(d) for d in body.lower().replace(",", "x").split("x")]
    except ValueError:
        raise InputError(f"{option} {text!r}: expected NxCxHxW, e.g. 1x3x640x640") from None
    if len(dims) != 4 or min(dims) <= 0:
        raise InputError(f"{option} {text!r}: expected NxCxHxW, e.g. 1x3x640x640")
    return dims


@contextlib.contextmanager
def progress_display(console: Console) -> Iterator[Any]:
    """The exporter's ``progress(phase, step, total)`` callback on :func:`~pvt_deploy.cli.tables.transient_bars`:
    a spinner for one-shot phases, a bar for phases with steps (calibration, parity); nothing where the console is
    no terminal."""
    with transient_bars(console) as bar:
        if bar is None:
            yield lambda phase, step, total: None
            return
        tasks: dict[str, Any] = {}

        def callback(phase: str, step: int, total: int) -> None:
            task = tasks.get(phase)
            if task is None:
                if step >= total and total > 0:
                    return
                task = tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=max(total, 1))
            bar.update(task, completed=step, total=max(total, 1))
            if step >= total:
                bar.remove_task(tasks.pop(phase))

        yield callback


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """The torch exporters warn a lot (TracerWarnings, deprecations) about things the graph checks
    and parity gate verify anyway; onnxruntime's quantizer logs advice. Keep the terminal for us."""
    import warnings

    # Not restored: torch also logs from atexit hooks (FakeTensor cache stats) after the command.
    for name in ("torch", "onnxruntime", "onnxscript", "onnxslim", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def summary_table(folder: Path) -> Any:
    """Files, sizes and parity figures of an artifact folder, from its manifest."""
    from rich import box
    from rich.table import Table

    from pvt_deploy.export.parity import agreement_text, gated_rel, parity_status
    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.runtimes.tensorrt import ENGINE_NAME, engine_precision
    from pvt_deploy.utils import megabytes

    m = read_manifest(folder)
    table = Table(title=f"{folder}  ({m.get('model')}, {m.get('task')})", title_justify="left",
                  box=box.SIMPLE_HEAD, padding=0, pad_edge=False, show_edge=False)
    table.add_column("file", no_wrap=True, min_width=19)
    # columns one space apart (the box's): at most 77 wide ('model.int8.trt.onnx', 'int8/cpu', 'unchecked'),
    # so an 80-column terminal or a log file shows every digit on one line; folded, never "…", where a
    # terminal is narrower still
    for col in ("prec", "MB", "parity", "cosine", "max rel", "agree", "s/batch"):
        table.add_column(col, justify="left" if col in ("prec", "parity") else "right", overflow="fold")
    parity = m.get("parity") or {}
    ungated = False
    for name, entry in (m.get("files") or {}).items():
        p = parity.get(name)
        cos = rel = agr = lat = status = "-"
        if p:
            outs = p.get("outputs", {}).values()
            cosines = [o["cosine"] for o in outs if isinstance(o.get("cosine"), float)]
            rels = [r for o in outs if isinstance(r := gated_rel(o), float)]
            cos = f"{min(cosines):.6f}" if cosines else "-"
            rel = f"{max(rels):.1e}" if rels else "-"
            agr = agreement_text(p)
            if agr[0].isdigit() and not p.get("agreement_gated", True):
                agr, ungated = agr + "*", True
            lat = f"{p.get('latency_s', 0):.3f}"
            status = {"ok": "[green]ok[/]", "FAILED": "[red]FAILED[/]"}.get(parity_status(p), "[yellow]unchecked[/]")
        flavour = f"/{entry['flavour']}" if entry.get("flavour") else ""
        precision = entry.get("precision", "?")
        if name == ENGINE_NAME and m.get("tensorrt"):  # tf32 where TensorRT was let use it (--tf32)
            precision = engine_precision(m["tensorrt"])
        table.add_row(name, f"{precision}{flavour}", f"{megabytes(entry.get('bytes', 0)):.1f}",
                      status, cos, rel, agr, lat)
    if ungated:
        table.caption = "* task agreement reported, not gated: random weights"
        table.caption_justify = "left"
    return table


def export(
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Zoo name (pvt_small, pvt_v2_b0-seg, pvt_tiny-cls, pvt_v2_b2_li-features), checkpoint "
        "file (.pth, .safetensors) or its http(s):// URL, or an export folder (reuses its model.onnx, adds --half/--int8 variants, builds --format trt).")
    ] = "pvt_small",
    task: Annotated[str | None, typer.Option(help="detect, segment, classify or features (default: from the name "
                                             "or checkpoint).", show_default=False)] = None,
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Checkpoint to load (official PVT, "
                                                "mmdet/mmseg or timm key names): a file, an http(s):// URL "
                                                "(downloaded once, cached), or 'official': the zoo model's official "
                                                "file (the ImageNet classifier, or a detector's/segmenter's "
                                                "backbone: pvt-deploy models). Without it the model is RANDOM.",
                                                show_default=False)] = None,
    trust_checkpoint: Annotated[bool, typer.Option("--trust-checkpoint", help="Allow checkpoints that need full unpickling (runs code "
                                                   "from the file).")] = False,
    names: Annotated[str | None, typer.Option(
        help="Class names written into the export: a,b,c, a list in brackets ([\"car, red\", \"bus\"]: a name "
             "with a comma), a .txt or .names file (one a line) or a dataset YAML (its "
             "names:), as many as the model has classes. Default: the checkpoint's own (an mmdet/mmseg file's, "
             "when as many as its head's classes), else its dataset's if as many, else numbers (0, 1, ...).",
        show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="onnx, trt (TensorRT engine; engine and tensorrt "
                                        "say the same) or triton (model repository).")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Artifact folder (default exports/<model>).",
                                                show_default=False)] = None,
    imgsz: Annotated[str | None, typer.Option(help="Input size N, HxW or H,W (multiples of 32, rounded up). Default per "
                                              "task: detect 640, segment 512, classify 224, features 640.",
                                              show_default=False, rich_help_panel=ONNX_PANEL)] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic/--static", help="Dynamic batch/height/width, or one fixed "
                                          "shape.", rich_help_panel=ONNX_PANEL)] = True,
    batch: Annotated[int | None, typer.Option(help="Maximum batch (dynamic, default 8) or the fixed batch "
                                              "(static, default 1).", show_default=False,
                                              rich_help_panel=ONNX_PANEL)] = None,
    min_size: Annotated[int | None, typer.Option(help="Smallest height/width a dynamic graph declares (default "
                                                 "32).", show_default=False, rich_help_panel=ONNX_PANEL)] = None,
    max_size: Annotated[int | None, typer.Option(help="Largest height/width a dynamic graph declares (default "
                                                 "1344).", show_default=False, rich_help_panel=ONNX_PANEL)] = None,
    opset: Annotated[int | None, typer.Option(help=OPSET_HELP, show_default=False,
                                              rich_help_panel=ONNX_PANEL)] = None,
    exporter: Annotated[str, typer.Option(help="torchscript (fast, default) or dynamo.",
                                          rich_help_panel=ONNX_PANEL)] = "torchscript",
    nms: Annotated[str, typer.Option(help="Detection NMS: host (after the graph), or graph (in it, EfficientNMS "
                                     "layout: num_dets, det_boxes, det_scores, det_classes).",
                                     rich_help_panel=ONNX_PANEL)] = "host",
    seg_output: Annotated[str, typer.Option(help="Segmentation output: logits (stride 4) or argmax (class map at "
                                            "input size).", rich_help_panel=ONNX_PANEL)] = "logits",
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Simplify with onnxslim.",
                                           rich_help_panel=ONNX_PANEL)] = True,
    half: Annotated[bool, typer.Option("--half", help="Also write model.fp16.onnx (LayerNorm/Softmax/decoding kept "
                                       "in FP32).", rich_help_panel=PRECISION_PANEL)] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write INT8 Q/DQ graphs, calibrated on --calib.",
                                       rich_help_panel=PRECISION_PANEL)] = False,
    # str, not Path: Path("rtsp://cam/x") is rtsp:/cam/x, which the refusal of a stream then named
    calib: Annotated[str | None, typer.Option(help="Calibration images: a folder, an image, a glob, a .txt list, a "
                                              "dataset YAML (its val split), a video file (--calib-size frames "
                                              "spread over it) or the http(s) URL of an image or a video file; not a "
                                              "live stream; used with --int8, and by parity without --images "
                                              "(default: the bundled samples).",
                                              show_default=False, rich_help_panel=PRECISION_PANEL)] = None,
    calib_size: Annotated[int | None, typer.Option(help="Calibration images used from --calib, or frames of a video "
                                                   "(default 8).", show_default=False,
                                                   rich_help_panel=PRECISION_PANEL)] = None,
    int8_flavour: Annotated[str, typer.Option(help="cpu (model.int8.onnx), trt (model.int8.trt.onnx, symmetric) "
                                              "or both.", rich_help_panel=PRECISION_PANEL)] = "both",
    int8_cpu: Annotated[str, typer.Option(
        help="CPU flavour: auto (static where the graph has Conv chains, i.e. detectors and segmenters; "
        "dynamic for classifiers and bare backbones), static (MatMuls + FPN/head Conv chains, 8-bit weights for "
        "VNNI CPUs) or dynamic (MatMul weights only; calibrates only PVT v2's depthwise and patch convs).",
        rich_help_panel=PRECISION_PANEL)] = "auto",
    parity: Annotated[bool, typer.Option("--parity/--no-parity", help="Run every ONNX against PyTorch on real "
                                         "images.", rich_help_panel=PARITY_PANEL)] = True,
    parity_tolerance: Annotated[float | None, typer.Option(help="Scale the default tolerances (0.1 = 10x "
                                                           "stricter, 2 = twice as loose).", show_default=False,
                                                           rich_help_panel=PARITY_PANEL)] = None,
    allow_parity_failure: Annotated[bool, typer.Option("--allow-parity-failure", help="Keep going (exit 0) when parity fails; the manifest "
                                                       "marks the file failed. Off by default.", show_default=False,
                                                       rich_help_panel=PARITY_PANEL)] = False,
    images: Annotated[str | None, typer.Option(help="Parity images: a folder, an image, a glob, a .txt list, a dataset "
                                               "YAML, a video file (4 frames spread over it) or the http(s) URL of an "
                                               "image or a video file; not a live stream (default: 4 of --calib's, or "
                                               "the bundled samples).", show_default=False,
                                               rich_help_panel=PARITY_PANEL)] = None,
    workspace: Annotated[float | None, typer.Option(help="TensorRT workspace limit in GiB (default: TensorRT's own, up to the GPU's memory).", show_default=False,
                                                    rich_help_panel=TRT_PANEL)] = None,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT timing cache file (read and updated).",
                                                      show_default=False, rich_help_panel=TRT_PANEL)] = None,
    version_compatible: Annotated[bool, typer.Option("--version-compatible", help="Engine loadable by later TensorRT versions. "
                                                     "Off by default.", show_default=False,
                                                     rich_help_panel=TRT_PANEL)] = False,
    hardware_compatible: Annotated[bool, typer.Option("--hardware-compatible", help="Engine loadable on any Ampere+ GPU. Off by "
                                                      "default.", show_default=False,
                                                      rich_help_panel=TRT_PANEL)] = False,
    tf32: Annotated[bool, typer.Option("--tf32", help="Let TensorRT run FP32 layers in TF32 on Ampere+ GPUs (faster; "
                                       "10-bit mantissa, judged with fp16's tolerance). Off by default: FP32 is "
                                       "IEEE FP32.", show_default=False, rich_help_panel=TRT_PANEL)] = False,
    min_shape: Annotated[str | None, typer.Option(help="Profile minimum, NxCxHxW (default: the export's smallest batch and size).", show_default=False,
                                                  rich_help_panel=TRT_PANEL)] = None,
    opt_shape: Annotated[str | None, typer.Option(help="Profile optimum (kernels tuned for it), NxCxHxW (default: the smallest batch at the export's size).",
                                                  show_default=False, rich_help_panel=TRT_PANEL)] = None,
    max_shape: Annotated[str | None, typer.Option(help="Profile maximum, NxCxHxW (default: the largest batch, both sides the larger side of the export's size).", show_default=False,
                                                  rich_help_panel=TRT_PANEL)] = None,
    triton_backend: Annotated[str, typer.Option(help="onnx (onnxruntime backend) or trt (TensorRT plan).",
                                                rich_help_panel=TRITON_PANEL)] = "onnx",
    triton_repo: Annotated[Path | None, typer.Option(help="Model repository (default: triton/ beside the artifact folder, i.e. exports/triton).",
                                                     show_default=False, rich_help_panel=TRITON_PANEL)] = None,
    triton_name: Annotated[str | None, typer.Option(
        help="Triton model name, in its triton:// URL (default: the exported model's, e.g. pvt_small; two exports "
             "of one model under one name are one Triton model, the later replacing the earlier).",
        show_default=False, rich_help_panel=TRITON_PANEL)] = None,
    max_batch: Annotated[int, typer.Option(help="Triton max_batch_size (0 = no batching).",
                                           rich_help_panel=TRITON_PANEL)] = 8,
    instances: Annotated[int, typer.Option(help="Triton model instances.", rich_help_panel=TRITON_PANEL)] = 1,
    instance_kind: Annotated[str | None, typer.Option(
        help="Where Triton runs the instances: auto (its GPUs, or its CPU where it has none), gpu or cpu "
             "(default: auto for onnx, gpu for trt).",
        show_default=False, rich_help_panel=TRITON_PANEL)] = None,
) -> None:
    """Export a PVT model to ONNX (dynamic shapes, checked graph, parity-gated), optionally with FP16 and
    INT8 variants, a TensorRT engine or a Triton model.

    Examples:

      pvt-deploy export --model pvt_small --weights retinanet_pvt_s_fpn_1x_coco.pth --half --int8 --calib imgs/

      pvt-deploy export --model pvt_small --weights ckpt.pth --int8 --calib clip.mp4 --calib-size 16

      pvt-deploy export --model exports/pvt_small --format trt --half
    """
    from rich.console import Console

    from pvt_deploy.export import export as run_export
    from pvt_deploy.export import export_source, format_name, triton_model_dir
    from pvt_deploy.export.onnx import write_errors

    console = Console(stderr=True)
    format = format_name(format)  # engine, tensorrt: trt, for the warnings below
    for warning in _unused_options(format, triton_backend, trt={
            "--workspace": workspace is not None, "--timing-cache": timing_cache is not None,
            "--version-compatible": version_compatible, "--hardware-compatible": hardware_compatible,
            "--tf32": tf32, "--min-shape": min_shape is not None, "--opt-shape": opt_shape is not None,
            "--max-shape": max_shape is not None}, triton={
            "--triton-backend": triton_backend != "onnx", "--triton-repo": triton_repo is not None,
            "--triton-name": triton_name is not None,
            "--max-batch": max_batch != 8, "--instances": instances != 1, "--instance-kind": instance_kind is not None}):
        console.print(f"[yellow]warning: {warning}[/]", soft_wrap=True)
    for warning in _unused_int8_choices(int8, int8_flavour, int8_cpu):
        console.print(f"[yellow]warning: {warning}[/]", soft_wrap=True)
    shapes = {k: v for k, v in (("min", parse_shape(min_shape, "--min-shape")),
                                ("opt", parse_shape(opt_shape, "--opt-shape")),
                                ("max", parse_shape(max_shape, "--max-shape"))) if v is not None}
    t0 = time.perf_counter()
    model = str(export_source(model))  # exports/x/model.onnx: exports/x, said first
    where = output if output is not None else Path(model) if Path(model).is_dir() else Path("exports")
    with write_errors(where), quiet_exporters(), progress_display(console) as progress:
        folder = run_export(
            model, output, format=format, triton_repo=triton_repo,
            tensorrt={"shapes": shapes or None, "workspace_gib": workspace, "timing_cache": timing_cache,
                      "version_compatible": version_compatible, "hardware_compatible": hardware_compatible,
                      "tf32": tf32, "progress": progress},
            triton={"backend": triton_backend, "max_batch": max_batch, "instances": instances,
                    "kind": instance_kind.upper() if instance_kind else None, "name": triton_name},
            task=task, weights=weights, trust_checkpoint=trust_checkpoint, names=names, imgsz=imgsz, dynamic=dynamic, batch=batch,
            min_size=min_size, max_size=max_size, opset=opset, half=half, int8=int8, int8_flavour=int8_flavour,
            int8_cpu=int8_cpu, calib=calib, calib_size=calib_size, images=images, nms=nms, seg_output=seg_output,
            exporter=exporter, simplify=simplify, parity=parity, parity_tolerance=parity_tolerance,
            allow_parity_failure=allow_parity_failure, progress=progress)
    print_table(console, summary_table(folder))
    _print_export_figures(console, folder, time.perf_counter() - t0)
    if format == "triton":
        console.print(_triton_steps(triton_model_dir(folder, triton_repo, triton_name)), soft_wrap=True, highlight=False,
                      markup=False)
    console.print(_next_steps(folder), soft_wrap=True, highlight=False, markup=False)
    # the folder's own bytes, for $(pvt-deploy export ...): a name that is not UTF-8 stays the name it is,
    # where a strict UTF-8 stdout (en_US.UTF-8, PYTHONIOENCODING=utf-8) failed to encode it (traceback, exit 1)
    typer.echo(os.fsencode(folder) + b"\n", nl=False)


def _next_steps(folder: Path) -> str:
    """What to run on the export, as Ultralytics' export ends with its predict command. Where its checkpoint
    was loaded with --trust-checkpoint (the manifest's ``weights.trust_checkpoint``: a later export into the
    folder reuses its graph, loads no checkpoint and is given no flag), check and bench get it too: they
    rebuild the export in PyTorch from that checkpoint (infer runs the export's ONNX)."""
    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.utils import shell_quote

    model = shell_quote(str(folder))
    trust = bool((read_manifest(folder).get("weights") or {}).get("trust_checkpoint"))
    trusted = " --trust-checkpoint" if trust else ""
    return (f"next: pvt-deploy infer SOURCE --model {model} · pvt-deploy check --model {model}{trusted} · "
            f"pvt-deploy bench --model {model}{trusted}")


def _triton_steps(model_dir: Path) -> str:
    """Where ``--format triton`` wrote the Triton model and how it runs, in the words infer, check and bench
    use for a Triton model folder (the ``next:`` line is about the export folder, which runs here)."""
    from pvt_deploy.runtimes.loader import served_by_triton
    from pvt_deploy.utils import shell_quote

    return f"triton: {shell_quote(str(model_dir))}: {served_by_triton(model_dir)}"


def _unused_options(fmt: str, triton_backend: str, *, trt: dict[str, bool], triton: dict[str, bool]) -> list[str]:
    """Warnings for the TensorRT and Triton options given (``True``) to an export that does not use them."""
    fmt = fmt.strip().lower()
    out = []
    if fmt != "triton" and (given := [name for name, on in triton.items() if on]):
        out.append(f"{', '.join(given)}: Triton option{'s' * (len(given) > 1)}, unused without --format triton")
    if not (fmt == "trt" or (fmt == "triton" and triton_backend.strip().lower() == "trt")) and (
            given := [name for name, on in trt.items() if on]):
        out.append(f"{', '.join(given)}: TensorRT option{'s' * (len(given) > 1)}, unused without --format trt "
                   "(or --format triton --triton-backend trt)")
    return out


def _unused_int8_choices(int8: bool, flavour: str, cpu_method: str) -> list[str]:
    """Warnings for the INT8 choices given that choose nothing, as for TensorRT's and Triton's options
    (:func:`_unused_options`): --int8-flavour and --int8-cpu without --int8, --int8-cpu where no CPU flavour is
    written. A word that is no choice is left to the export's refusal."""
    from pvt_deploy.export.onnx import INT8_FLAVOUR_CHOICES
    from pvt_deploy.export.precision import CPU_METHODS

    flavour, cpu_method = flavour.strip().lower(), cpu_method.strip().lower()
    if flavour not in INT8_FLAVOUR_CHOICES or cpu_method not in CPU_METHODS:
        return []
    if not int8:
        given = [f"{flag} {value}" for flag, value, default in (
            ("--int8-flavour", flavour, "both"), ("--int8-cpu", cpu_method, "auto")) if value != default]
        return [f"{', '.join(given)}: unused without --int8 (no INT8 file is written)"] if given else []
    if flavour == "trt" and cpu_method != "auto":
        return [f"--int8-cpu {cpu_method}: unused with --int8-flavour trt (it chooses how model.int8.onnx, the CPU "
                "flavour, is quantized)"]
    return []


def _print_export_figures(console: Console, folder: Path, seconds: float) -> None:
    from pvt_deploy.export.onnx import node_counts
    from pvt_deploy.manifest import cpu_int8_record, read_manifest

    m = read_manifest(folder)
    e = m.get("export") or {}
    if "nodes_before" in e:
        dyn = m.get("dynamic")
        shape = (f"batch {dyn['batch'][0]}-{dyn['batch'][1]}, H/W {dyn['height'][0]}-{dyn['height'][1]} (x32)"
                 if dyn else "static " + "x".join(str(d) for d in m["inputs"][0]["shape"]))
        counts = node_counts(e.get("nodes_before"), e.get("nodes_after"), e.get("simplified", True))
        console.print(f"graph: {e.get('exporter')}, opset {e.get('opset')}, {counts}; {shape}")
    weights = m.get("weights") or {}
    if weights.get("random_init"):
        console.print("[bold red]weights: RANDOM (no --weights given) — for pipeline tests only[/]")
    elif weights.get("randomly_initialised_tensors"):  # a backbone-only checkpoint: neck and head random
        console.print(f"[bold yellow]weights: {weights['randomly_initialised_tensors']} tensors RANDOMLY "
                      f"INITIALISED (the checkpoint lacks them; fine-tune before trusting the outputs)[/]")
    cpu8 = cpu_int8_record(m)
    speedup = cpu8.get("cpu_ort_speedup_vs_fp32")
    if isinstance(speedup, (int, float)) and speedup < 1.0:
        console.print(f"[yellow]note: model.int8.onnx ran at {speedup:.2f}x the speed of model.onnx on this CPU "
                      "(parity batches); keep FP32 here — infer uses it unless --precision int8[/]")
    console.print(f"done in {seconds:.1f} s")
