"""Other tools' spellings, answered with pvt-deploy's.

Users come with Ultralytics (``yolo predict source=clip.mp4 conf=0.25 half=True``), MMDeploy
(``--work-dir``, ``--score-thr``), Polygraphy (``polygraphy run model.onnx --onnxrt --atol``) and
trtexec (``--fp16 --saveEngine --minShapes``) in their fingers. Click answers an option it does not
know with its own names that look alike, which for these is wrong (``infer --half``: "--help") or
nothing at all. Here such an option is answered with the one pvt-deploy spells, a foreign command
name with ours, and ``key=value`` arguments with the command written with options. Nothing foreign
is accepted silently: the error teaches the spelling that ``--help`` and the README use.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import os
import re
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from pvt_deploy.utils import shell_quote

# click's exceptions, wherever this Typer takes click from (its own copy since 0.2x, else click)
_exceptions = importlib.import_module(typer.BadParameter.__module__)

COMMANDS = {"predict": "infer", "detect": "infer", "demo": "infer", "convert": "export", "deploy": "export",
            "inspect": "info", "run": "check", "compare": "check", "version": "--version", "help": "--help",
            "profile": "bench", "profiler": "bench", "benchmark": "bench", "list": "models", "test": "val",
            "eval": "val", "evaluate": "val", "validate": "val"}

_OUTPUT = "--output"
_BY_BACKENDS = "A precision is picked with --backends: onnx, onnx-fp16, onnx-int8, trt{}."
_TO_JSON = "The report goes to the terminal; --json prints it as JSON, for > report.json."
_NO_TF32 = "TF32 is off unless asked for: an FP32 engine is built without it (--tf32 lets TensorRT use it)."
# Polygraphy's --atol 1e-3 is an absolute tolerance; --tolerance is a factor (as --tolerance 1e-3, it
# made every tolerance a thousand times stricter: a sound export failed its check)
_FACTOR = ("pvt-deploy check --tolerance scales the per-precision tolerances (0.5 = twice as strict, 2 = twice as loose); "
           "it takes no absolute or relative tolerance.")
_OPTIONS: dict[str, dict[str, str]] = {
    # a value is our spelling (an option, an option with its value, or the name of an argument),
    # or, where there is none, a sentence (capitalised) saying what to do instead
    "infer": {
        "--half": "--precision fp16", "--fp16": "--precision fp16", "--int8": "--precision int8",
        "--conf-thres": "--conf", "--conf-threshold": "--conf", "--score-thr": "--conf", "--pred-score-thr": "--draw-conf",
        "--score-threshold": "--conf", "--iou-thres": "--iou", "--iou-threshold": "--iou", "--nms-thr": "--iou",
        "--img": "--imgsz", "--img-size": "--imgsz", "--batch-size": "--batch", "--max-dets": "--max-det",
        "--project": _OUTPUT, "--name": _OUTPUT, "--save-dir": _OUTPUT, "--out-dir": _OUTPUT,
        "--show-dir": _OUTPUT, "--work-dir": _OUTPUT, "--output-file": _OUTPUT, "--exist-ok": _OUTPUT,
        "--view-img": "--show",
        "--nosave": "--no-save", "--checkpoint": "--weights", "--engine": "--model", "--onnx": "--model",
        "--json": "--save-json", "--images": "source", "--input": "source", "--img-dir": "source",
        "--data": "The class names come with the model; a dataset YAML gives export --calib and check --images "
                  "their images; infer runs a split given as its folder: pvt-deploy infer DATASET/images/val.",
    },
    "export": {
        "--fp16": "--half", "--onnx": "--model", "--checkpoint": "--weights", "--ckpt": "--weights",
        "--img": "--imgsz", "--img-size": "--imgsz", "--batch-size": "--batch",
        "--data": "--calib", "--calib-data": "--calib", "--calib-dataset": "--calib", "--fraction": "--calib-size",
        "--saveEngine": "--format trt", "--save-engine": "--format trt", "--engine": "--format trt",
        "--minShapes": "--min-shape", "--optShapes": "--opt-shape", "--maxShapes": "--max-shape",
        "--min-shapes": "--min-shape", "--opt-shapes": "--opt-shape", "--max-shapes": "--max-shape",
        "--shapes": "--opt-shape", "--memPoolSize": "--workspace", "--timingCacheFile": "--timing-cache",
        "--trt-min-shapes": "--min-shape", "--trt-opt-shapes": "--opt-shape", "--trt-max-shapes": "--max-shape",
        "--pool-limit": "--workspace", "--load-timing-cache": "--timing-cache", "--save-timing-cache": "--timing-cache",
        "--versionCompatible": "--version-compatible", "--hardwareCompatibilityLevel": "--hardware-compatible",
        "--noTF32": _NO_TF32, "--no-tf32": _NO_TF32,
        "--work-dir": _OUTPUT, "--out-dir": _OUTPUT, "--save-dir": _OUTPUT, "--project": _OUTPUT,
        "--device": "The export traces on the CPU, and --format trt builds on the first GPU it sees "
                    "(CUDA_VISIBLE_DEVICES=N pvt-deploy export ... picks one).",
    },
    "check": {
        "--atol": _FACTOR, "--rtol": _FACTOR, "--onnxrt": "--backends onnx", "--trt": "--backends trt",
        "--torch": "--backends torch", "--pytorch": "--backends torch", "--onnx": "--model",
        "--input-shapes": "--imgsz", "--img-size": "--imgsz", "--shape": "--imgsz", "--data": "--images",
        "--img": "--images", "--save-results": "--json", "--save-outputs": "--json", "--backend": "--backends",
        "--precision": _BY_BACKENDS.format(""), "--output": _TO_JSON, "-o": _TO_JSON,
    },
    "bench": {
        "--iterations": "--iters", "--num-iter": "--iters", "--duration": "--iters", "--warmUp": "--warmup",
        "--num-warmup": "--warmup", "--fp16": "--backends onnx-fp16", "--int8": "--backends onnx-int8",
        "--onnxrt": "--backends onnx", "--trt": "--backends trt", "--torch": "--backends torch",
        "--onnx": "--model", "--loadEngine": "--model", "--engine": "--model", "--img-size": "--imgsz",
        "--shape": "--imgsz", "--backend": "--backends", "--precision": _BY_BACKENDS.format(", torch-fp16"), "--output": _TO_JSON,
        "-o": _TO_JSON,
        "--shapes": "Give the input shape as --imgsz H,W and --batch N.", "--batch-size": "--batch",
        "--dumpProfile": "--profile", "--exportProfile": "--profile --json",
        "--separateProfileRun": "Profiling (--profile) is always a run of its own, after the timed runs.",
    },
    "val": {
        "--data": "data", "--ann-file": "data", "--annotations": "data", "--img-dir": "--images",
        "--half": "--precision fp16", "--fp16": "--precision fp16", "--int8": "--precision int8",
        "--conf-thres": "--conf", "--score-thr": "--conf", "--iou-thres": "--iou", "--nms-thr": "--iou",
        "--img": "--imgsz", "--img-size": "--imgsz", "--batch-size": "--batch", "--max-dets": "--max-det",
        "--checkpoint": "--weights", "--engine": "--model", "--onnx": "--model", "--fraction": "--limit",
        "--save-json": "--json", "--out": "--json", "--eval": "The metric follows the model's task: COCO box AP, "
        "top-1/top-5 or mIoU.",
    },
    "info": {"--model": "artifact", "-m": "artifact", "--onnx": "artifact", "--engine": "artifact",
             "--format": "--json", "--show": "--graph", "--dumpLayerInfo": "--graph"},
}


class Group(TyperGroup):
    """The app: a foreign command name is answered with ours (``predict`` -> ``infer``)."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except _exceptions.UsageError as e:
            ours = COMMANDS.get(args[0].lower()) if args else None
            if ours is not None and (ours in self.commands or ours.startswith("-")):
                e.message = f"No such command {args[0]!r}. Did you mean {ours!r}?"
            raise


class Command(TyperCommand):
    """A command whose unknown options and ``key=value`` arguments are answered in its own spelling."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes ``args``
        _refuse_key_values(self, given)
        try:
            return super().parse_args(ctx, args)
        except _exceptions.NoSuchOption as e:
            hint = _hint(self, e.option_name, given) or _root_option(ctx, self, e.option_name, given)
            if hint is not None:
                e.message = f"No such option: {e.option_name}. {hint}"
                e.possibilities = None
            raise
        except _exceptions.UsageError as e:
            if "unexpected extra argument" in e.message:
                e.message = _expanded_glob(self, given) or _positional_model(self, given) or e.message
            raise


def answer_foreign_options(app: typer.Typer) -> None:
    """Make every command registered on ``app`` a :class:`Command` (the app itself is made with
    ``cls=Group``)."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = Command


def _options(command: Any) -> dict[str, Any]:
    """Every name of every option of ``command`` (``--save`` and ``--no-save`` alike) -> the option."""
    return {name: p for p in command.params if p.param_type_name == "option"
            for name in (*p.opts, *p.secondary_opts)}


def _arguments(command: Any) -> dict[str, Any]:
    return {p.name: p for p in command.params if p.param_type_name == "argument"}


def _ours(command: Any, name: str) -> str | None:
    """pvt-deploy's spelling of the foreign option ``name`` for ``command``, or None."""
    table = _OPTIONS.get(command.name or "", {})
    return table.get(name) or table.get(name.lower())


def _hint(command: Any, name: str, args: list[str]) -> str | None:
    ours = _ours(command, name)
    argument = _arguments(command).get(ours or name.lstrip("-").replace("-", "_"))
    if argument is not None:  # --source for infer's SOURCE, --model for info's ARTIFACT
        at = args.index(name) if name in args else -1
        value = args[at + 1] if 0 <= at < len(args) - 1 and not args[at + 1].startswith("-") else None
        return (f"Did you mean pvt-deploy {command.name} {shell_quote(value) if value else argument.name.upper()} "
                f"({argument.name} is an argument, not an option)?")
    if ours is None:
        return None
    return f"Did you mean {ours}?" if ours.startswith("-") else ours


def _root_option(ctx: Any, command: Any, name: str, args: list[str]) -> str | None:
    """What to say of pvt-deploy's own option given after the command's name (``infer photos/ --verbose``,
    ``-v``), which Click answered with "No such option: --verbose" alone, where the error line of a failing
    file says to add ``--verbose`` for the traceback: the command with it before the command's name. None
    where ``name`` is not one of the app's own options."""
    app = getattr(getattr(ctx, "parent", None), "command", None)
    if app is None or name not in _options(app):
        return None
    if name == "--version":
        return "Did you mean pvt-deploy --version?"
    rest = " ".join(shell_quote(a) for a in args if a != name)
    return (f"Did you mean pvt-deploy {name} {command.name}{' ' + rest if rest else ''} ({name} is pvt-deploy's own "
            "option, given before the command)?")


def _positional_model(command: Any, args: list[str]) -> str | None:
    """What to say where a command that takes ``--model`` was given the model as an argument
    (``check model.onnx``, as ``polygraphy run model.onnx``, which ``run`` is answered with;
    ``export pvt_small``): Click said "Got unexpected extra argument(s) (model.onnx)". None where
    ``--model`` was given or the command has no such option."""
    options = _options(command)
    model = options.get("--model")
    if model is None or _arguments(command) or any(a.split("=")[0] in model.opts for a in args):
        return None
    i = 0
    while i < len(args):
        token = args[i]
        option = options.get(token.split("=")[0]) if token.startswith("-") and token != "--" else None
        if token.startswith("-") and token != "--":
            i += 2 if option is not None and "=" not in token and not option.is_flag and not option.count else 1
            continue
        if token == "--":
            i += 1
            continue
        words = [shell_quote(a) for a in args]
        words[i] = f"--model {words[i]}"
        # without the '--' that ended the options: after it, --model would be one more argument
        words = [w for w, a in zip(words, args, strict=True) if a != "--"]
        return f"Did you mean pvt-deploy {command.name} {' '.join(words)} (the model is an option, not an argument)?"
    return None


_GLOB_OPTIONS = {"--calib", "--images"}  # the options that take a folder, an image or a glob


def _expanded_glob(command: Any, args: list[str]) -> str | None:
    """What to say where an option that takes one path was followed by several files: an unquoted glob
    (``export --calib imgs/*.jpg``), which the shell expands, so Click said "Got unexpected extra
    arguments (imgs/b.jpg imgs/c.jpg)". None where that is not what happened."""
    options = _options(command)
    for i, token in enumerate(args):
        option = options.get(token)
        if option is None or not set(option.opts) & _GLOB_OPTIONS:
            continue
        files = list(itertools.takewhile(lambda t: not t.startswith("-") and os.path.isfile(t), args[i + 1:]))
        if len(files) < 2:
            continue
        folders = {os.path.dirname(f) for f in files}
        suffixes = {os.path.splitext(f)[1] for f in files}
        glob = (os.path.join(folders.pop(), "*" + suffixes.pop()) if len(folders) == 1 and len(suffixes) == 1
                else None)
        return (f"{token} takes one folder, image or glob, and the shell gave it {len(files)} files ({files[0]} ...): "
                "quote the glob, which the shell expands"
                + (f" (as in {token} {shell_quote(glob)}), or give the folder" if glob else ", or give the folder"))
    return None


def _refuse_key_values(command: Any, args: list[str]) -> None:
    """Ultralytics' ``key=value`` arguments (``model=pvt_small half=True``) are a usage error that shows
    the command written with options, instead of "unexpected extra argument" or "no such file"."""
    options = _options(command)
    pairs = []  # positions of the key=value tokens that are not files
    i = 0
    while i < len(args) and args[i] != "--":
        token = args[i]
        if token.startswith("-"):
            option = options.get(token)
            i += 1 if option is not None and not option.is_flag and not option.count else 0  # its value
        elif re.fullmatch(r"[A-Za-z][\w-]*=.*", token, flags=re.S) and not os.path.lexists(token):
            pairs.append(i)
        i += 1
    if not any(_known(command, args[i].partition("=")[0]) for i in pairs):
        return
    words: list[str] = []
    left_out = []
    for i, token in enumerate(args):
        if i not in pairs:
            words.append(shell_quote(token))
            continue
        key, _, value = token.partition("=")
        written = _with_options(command, key, value) if _known(command, key) else None
        if written is None:
            left_out.append(f"{token}: {(_hint(command, _option_name(key), args) or 'no such option').rstrip('.')}")
        elif written and written not in words:
            words.append(written)
    suggestion = " ".join(["pvt-deploy", command.name or "", *words])
    raise _exceptions.UsageError(
        f"{' '.join(args[i] for i in pairs)}: pvt-deploy takes options, not key=value arguments. "
        f"Did you mean: {suggestion}" + (f" (left out: {'; '.join(left_out)})" if left_out else ""))


def _option_name(key: str) -> str:
    return "--" + key.lower().replace("_", "-")


def _known(command: Any, key: str) -> bool:
    name = _option_name(key)
    return (key.lower() in _arguments(command) or name in _options(command)
            or _ours(command, name) is not None or _ours(command, "--" + key) is not None)


def _with_options(command: Any, key: str, value: str) -> str | None:
    """``key=value`` written with this command's options: ``conf=0.3`` -> ``--conf 0.3``, ``half=True``
    -> ``--half``, ``simplify=False`` -> ``--no-simplify``, ``source=a.mp4`` -> ``a.mp4`` (an argument),
    ``classes=[0,2]`` -> ``--classes 0,2``; ``""`` for a flag turned off that is off anyway, or whose
    foreign name only stands near ours (``save_txt=False`` says nothing of ``--save-json``); None where
    pvt-deploy has no such option."""
    on = value.strip().lower() not in ("false", "0", "no", "off", "none", "")
    listed = re.fullmatch(r"\s*[\[(](.*)[\])]\s*", value, flags=re.S)
    if listed:  # a Python list: [0, 2] -> 0,2 (a path keeps its spaces: source="my clip.mp4")
        try:  # names keep theirs, without their quotes: ["traffic light", 0] -> traffic light,0
            value = ",".join(str(item) for item in ast.literal_eval(f"[{listed.group(1)}]"))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = listed.group(1).replace(" ", "")
    name = _option_name(key)
    foreign = _ours(command, name) or _ours(command, "--" + key)
    ours = foreign or name
    arguments = _arguments(command)
    if key.lower() in arguments or ours in arguments:
        return shell_quote(value)
    option = _options(command).get(ours)
    if option is None:  # a spelling with its value ("--precision fp16"): on, or left out; or a sentence
        return (ours if on else "") if ours.startswith("-") else None
    if not option.is_flag and value.strip() in ("None", "null", ""):  # Python's None: the default, left out
        return ""
    if option.is_flag:
        if foreign and not on:
            return ""
        if ours in option.secondary_opts:  # no_save=True -> --no-save
            return ours if on else option.opts[0]
        return ours if on else (option.secondary_opts[0] if option.secondary_opts else "")
    return f"{ours} {shell_quote(value)}"
