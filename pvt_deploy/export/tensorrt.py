"""Build a TensorRT engine (``model.engine``) from an exported artifact folder.

Precision is carried by the ONNX graph, not by builder flags: TensorRT 11 removed the FP16/INT8 flags
and calibrators, and a strongly typed network builds the same on TensorRT 10 and 11. So FP16 builds
``model.fp16.onnx`` (float16 with LayerNorm/Softmax kept in float32) and INT8 builds the Q/DQ graph
``model.int8.trt.onnx``. Only on a TensorRT without strong typing, or for an FP16 build on TensorRT 10
when no FP16 graph was exported, do the old builder flags serve (and the manifest says so).

FP32 is IEEE FP32: TensorRT's ``TF32`` builder flag, on by default (TensorRT 10 and 11, typed or not), lets
it round the inputs of FP32 matmuls and convolutions to a 10-bit mantissa on Ampere and newer GPUs, and
an engine so built misses the FP32 parity tolerance (max_rel 1e-3). It is cleared, as Polygraphy does,
unless ``tf32=True`` (``--tf32``) asks for it; the manifest records which (``tensorrt.tf32``), and the
runtime then reports and is judged as ``tf32``.

The plan is written as TensorRT serialises it (trtexec and Triton load it as is); what is known about
the build goes into the manifest's ``tensorrt`` section, which the runtime checks before loading.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvt_deploy.errors import BackendUnavailableError, InputError, PvtDeployError
from pvt_deploy.export import reading
from pvt_deploy.manifest import EXPORT_FLAGS, file_entry, read_manifest, verify_file, write_manifest
from pvt_deploy.runtimes.base import flag
from pvt_deploy.runtimes.tensorrt import (
    AMPERE_PLUS,
    ENGINE_NAME,
    TRT_INSTALL_HINT,
    _cc_tuple,
    create_trt,
    cuda_device_info,
    dims_tuple,
    host_platform,
    last_trt_error,
    require_tensorrt,
    trt_logger,
    typing_support,
)
from pvt_deploy.utils import joined_lines
from pvt_deploy.utils.files import atomic_open, atomic_write_bytes, sha256_file

if TYPE_CHECKING:
    import tensorrt

__all__ = [
    "ENGINE_NAME",
    "PRECISION_SOURCES",
    "BuildPlan",
    "ProgressCallback",
    "build_engine",
    "compute_profile",
    "parse_shapes",
    "plan_build",
    "require_tensorrt",
    "rich_build_progress",
]

log = logging.getLogger("pvt_deploy.tensorrt")

# Which ONNX file each precision builds from, in order of preference.
PRECISION_SOURCES: dict[str, tuple[str, ...]] = {
    "fp32": ("model.onnx",),
    "fp16": ("model.fp16.onnx",),
    # The TensorRT flavour (symmetric S8 Q/DQ). Never the CPU flavour model.int8.onnx: its uint8
    # asymmetric Q/DQ, MatMulInteger/DynamicQuantizeLinear and ONNX Runtime contrib ops
    # (MultiHeadAttention or FusedMatMul, Gelu) are not in TensorRT's ONNX parser.
    "int8": ("model.int8.trt.onnx",),
}

ProgressCallback = Callable[[str, int, int], "bool | None"]
"""``progress(phase, step, total)``: called with step 0 when a build phase starts, after each step,
and with ``step == total`` when it ends. Returning ``False`` cancels the build
(:class:`~pvt_deploy.errors.PvtDeployError`, no engine written; the callback is not called again)."""

_DIM_NAMES = {0: "batch", 2: "height", 3: "width"}


# --------------------------------------------------------------------------------------------------
# Optimisation profile (pure)
# --------------------------------------------------------------------------------------------------


def _round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def _round_down(x: int, m: int) -> int:
    return int(x // m * m)


def _normalise_overrides(overrides: Mapping[str, Any] | None, names: list[str]) -> dict[str, dict[str, list[int]]]:
    """Accept ``{"min": .., "opt": .., "max": ..}`` for the single input or ``{name: {...}}``."""
    if not overrides:
        return {}
    if set(overrides) <= {"min", "opt", "max"}:
        if len(names) != 1:
            raise InputError(f"shape overrides must name the input, one of {names}")
        overrides = {names[0]: overrides}
    out: dict[str, dict[str, list[int]]] = {}
    for name, spec in overrides.items():
        if name not in names:
            raise InputError(f"shape override for unknown input {name!r}; the graph takes {names}")
        if not isinstance(spec, Mapping) or not set(spec) <= {"min", "opt", "max"}:
            raise InputError(f"shape override for {name!r} must be a dict with min/opt/max shapes")
        out[name] = {k: [int(d) for d in v] for k, v in spec.items() if v is not None}
    return out


def compute_profile(manifest: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
                    ) -> dict[str, dict[str, list[int]]]:
    """The TensorRT optimisation profile per input: ``{name: {"min": [...], "opt": [...], "max": [...]}}``.

    Defaults cover what the export accepts and the preprocessing produces: batch from its dynamic
    minimum to maximum (kernels tuned for the minimum, i.e. latency); height/width from the dynamic
    minimum up to ``max(imgsz)`` (a letterboxed or aligned image never exceeds it on either side, and
    a larger max costs activation memory for nothing), tuned for ``imgsz``. Static exports get
    min = opt = max. ``overrides`` (full shapes, any of min/opt/max) are clamped to the export's
    dynamic range with height/width on multiples of the stride, and a warning says what changed.
    """
    inputs = list(manifest.get("inputs") or [])
    if not inputs:
        raise InputError("the manifest lists no graph inputs; re-export the model")
    names = [str(s["name"]) for s in inputs]
    dynamic = manifest.get("dynamic") or {}
    pre = manifest.get("preprocess") or {}
    stride = int(pre.get("stride") or 32)
    imgsz = [int(v) for v in (pre.get("imgsz") or [])]
    if len(imgsz) == 1:
        imgsz = imgsz * 2
    wanted = _normalise_overrides(overrides, names)

    profiles: dict[str, dict[str, list[int]]] = {}
    for spec in inputs:
        name, shape = str(spec["name"]), list(spec["shape"])
        lo: list[int] = []
        hi: list[int] = []
        spatial: list[bool] = []
        for i, d in enumerate(shape):
            is_hw = len(shape) == 4 and i in (2, 3)
            if isinstance(d, int) and d >= 0:
                a = b = d
            else:
                key = d if isinstance(d, str) and d in dynamic else _DIM_NAMES.get(i) if len(shape) == 4 else None
                rng = dynamic.get(key) if key else None
                if not rng or len(rng) != 2:
                    raise InputError(f"input {name!r} dimension {i} ({d!r}) is dynamic but the manifest's "
                                     "'dynamic' section gives no range for it; re-export the model")
                a, b = int(rng[0]), int(rng[1])
                if is_hw:
                    a, b = max(stride, _round_up(a, stride)), _round_down(b, stride)
                if a > b:
                    raise InputError(f"input {name!r} dimension {i}: empty dynamic range {rng}")
            lo.append(a)
            hi.append(b)
            spatial.append(is_hw and a != b)

        d_min, d_opt, d_max = list(lo), list(lo), list(hi)
        for i in range(len(shape)):
            if spatial[i]:
                target = imgsz[i - 2] if imgsz else min(hi[i], 640)
                top = _round_up(max(imgsz), stride) if imgsz else hi[i]
                d_max[i] = min(hi[i], max(top, lo[i]))
                d_opt[i] = min(d_max[i], max(lo[i], _round_up(target, stride)))

        given = wanted.get(name, {})
        result = {"min": d_min, "opt": d_opt, "max": d_max}
        for key, mode in (("min", "up"), ("opt", "up"), ("max", "down")):
            if key not in given:
                continue
            value = given[key]
            if len(value) != len(shape):
                raise InputError(f"{key} shape {value} for input {name!r} has {len(value)} dims; the graph "
                                 f"input has {len(shape)} ({shape})")
            fixed = []
            for i, v in enumerate(value):
                c = min(max(v, lo[i]), hi[i])
                if spatial[i]:
                    c = _round_up(c, stride) if mode == "up" else _round_down(c, stride)
                    c = min(max(c, lo[i]), hi[i])
                fixed.append(c)
            if fixed != value:
                log.warning("%s shape %s for %r adjusted to %s (export range %s..%s, multiples of %d)",
                            key, value, name, fixed, lo, hi, stride)
            result[key] = fixed
        # An explicit opt outside the default range widens it rather than being refused.
        if "opt" in given:
            if "min" not in given:
                result["min"] = [min(a, b) for a, b in zip(result["min"], result["opt"], strict=True)]
            if "max" not in given:
                result["max"] = [max(a, b) for a, b in zip(result["max"], result["opt"], strict=True)]
        # An explicit min/max alone pulls opt inside it.
        result["opt"] = [min(max(o, a), b) for o, a, b in zip(result["opt"], result["min"], result["max"],
                                                               strict=True)]
        if any(a > b for a, b in zip(result["min"], result["max"], strict=True)) or result["opt"] != [
                min(max(o, a), b) for o, a, b in zip(result["opt"], result["min"], result["max"], strict=True)]:
            raise InputError(f"profile for {name!r} needs min <= opt <= max per dimension; got "
                             f"min {result['min']}, opt {result['opt']}, max {result['max']}")
        profiles[name] = result
    return profiles


def parse_shapes(text: str) -> dict[str, dict[str, list[int]]]:
    """Parse a command-line profile: ``"min=1x3x320x320,opt=1x3x640x640,max=8x3x1344x1344"``.

    Each entry may name its input (``images:min=1x3x320x320``); without a name it applies to the
    graph's single input (key ``""``, resolved by :func:`compute_profile`).
    """
    out: dict[str, dict[str, list[int]]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(?:([\w./-]+):)?(min|opt|max)=(\d+(?:x\d+)*)", part)
        if not m:
            raise InputError(f"cannot read shape {part!r}; write min=1x3x320x320,opt=...,max=... "
                             "(optionally prefixed by the input name, images:min=...)")
        name, key, dims = m.group(1) or "", m.group(2), [int(d) for d in m.group(3).split("x")]
        out.setdefault(name, {})[key] = dims
    if "" in out:
        if len(out) > 1:
            raise InputError("name every input in the shape spec, or none")
        return {"": out[""]}
    return out


def _resolve_unnamed(shapes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    # parse_shapes() keys an unnamed spec by "": that is the single-input shorthand.
    if shapes is not None and set(shapes) == {""}:
        return dict(shapes[""])
    return shapes


# --------------------------------------------------------------------------------------------------
# What to build from, and how (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    """The decision :func:`plan_build` makes: which ONNX, strongly typed or not, which flags."""

    source: str
    strongly_typed: bool
    flags: tuple[str, ...] = ()  # BuilderFlag names to set (weak typing only)
    note: str | None = None  # why the plan is not the usual one (logged as a warning)


#: why TensorRT builds no engine from model.int8.onnx (the engine build and Triton's TensorRT accelerator say so)
CPU_INT8_GRAPH = "uint8 asymmetric Q/DQ and ONNX Runtime operators that TensorRT's ONNX parser does not take"


def plan_build(precision: str, available: set[str] | frozenset[str], *, strongly_typed: bool,
               builder_flags: set[str] | frozenset[str]) -> BuildPlan:
    """Choose the ONNX file and the typing mode for ``precision`` given what TensorRT offers.

    ``available``: file names present in the artifact folder. ``strongly_typed``: the module has
    ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``. ``builder_flags``: the ``BuilderFlag`` names it
    has (TensorRT 11 has no FP16/INT8).
    """
    if precision not in PRECISION_SOURCES:
        raise InputError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    source = next((f for f in PRECISION_SOURCES[precision] if f in available), None)
    note = None
    if source is None and precision == "int8" and "model.int8.onnx" in available:
        raise InputError(f"this export has only the CPU flavour of INT8 (model.int8.onnx: {CPU_INT8_GRAPH}); "
                         "TensorRT builds the TensorRT flavour, model.int8.trt.onnx",
                         hint="pvt-deploy export --model NAME --int8 --int8-flavour trt")
    if source is None:
        if precision == "fp16" and "model.onnx" in available and "FP16" in builder_flags:
            return BuildPlan("model.onnx", strongly_typed=False, flags=("FP16",),
                             note="no model.fp16.onnx: building model.onnx with TensorRT's FP16 builder flag "
                                  "(TensorRT picks layer precisions itself; export with --half for a strongly "
                                  "typed FP16 graph that keeps LayerNorm/Softmax in FP32)")
        raise InputError(f"no {' or '.join(PRECISION_SOURCES[precision])} in the artifact folder to build a "
                         f"{precision} engine from", hint=f"pvt-deploy export --model NAME{EXPORT_FLAGS[precision]}")
    if strongly_typed:
        return BuildPlan(source, strongly_typed=True, note=note)
    # Without strong typing the graph's types are hints and precisions must be enabled by flags.
    need = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    flags = tuple(f for f in need if f in builder_flags)
    primary = {"fp16": "FP16", "int8": "INT8"}.get(precision)
    if primary is not None and primary not in builder_flags:
        raise BackendUnavailableError(f"this TensorRT supports neither strongly typed networks nor the "
                                      f"{precision.upper()} builder flag", hint=TRT_INSTALL_HINT)
    return BuildPlan(source, strongly_typed=False, flags=flags, note=note)


# --------------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------------


def _make_progress_monitor(callback: ProgressCallback) -> tensorrt.IProgressMonitor:
    import tensorrt as trt

    class ProgressMonitor(trt.IProgressMonitor):
        """Forwards TensorRT's build phases to ``callback``; a Ctrl-C inside it cancels the build."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.totals: dict[str, int] = {}
            self.reported: dict[str, int] = {}
            self.interrupted: BaseException | None = None
            self.cancelled = False  # the callback returned False

        def _call(self, phase: str, step: int, total: int) -> bool:
            if self.interrupted is not None or self.cancelled:  # TensorRT still ends its phases: not news
                return False
            self.reported[phase] = step
            try:
                self.cancelled = callback(phase, step, total) is False
            except BaseException as e:  # noqa: BLE001 - raising into TensorRT's C++ would abort
                self.interrupted = e
            return not (self.cancelled or self.interrupted)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.totals[phase_name] = num_steps
            self._call(phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return self._call(phase_name, step + 1, self.totals.get(phase_name, step + 1))

        def phase_finish(self, phase_name: str) -> None:
            total = self.totals.pop(phase_name, 0)
            if self.reported.pop(phase_name, -1) < total:  # the end was not reported by a last step
                self._call(phase_name, total, total)
                self.reported.pop(phase_name, None)

    return ProgressMonitor()


@contextlib.contextmanager
def rich_build_progress(console: Any = None) -> Iterator[ProgressCallback]:
    """A :data:`ProgressCallback` drawing TensorRT's build phases as transient Rich progress bars."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def callback(phase: str, step: int, total: int) -> None:
            task = tasks.get(phase)
            if task is None:
                task = tasks[phase] = bar.add_task(phase, total=max(total, 1))
            bar.update(task, completed=step, total=max(total, 1))
            if step >= total:
                bar.remove_task(tasks.pop(phase))

        yield callback


# --------------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------------


def _load_timing_cache(config: tensorrt.IBuilderConfig, path: Path | None) -> tensorrt.ITimingCache | None:
    """Give the builder a timing cache: the file's if it fits this GPU/TensorRT, else a fresh one."""
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    try:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, False):
            if data:
                log.info("timing cache: reusing %s", path)
            return cache
    except Exception as e:  # a corrupt cache file must not stop the build
        log.debug("timing cache %s unreadable: %s", path, e)
    if data:
        log.warning("timing cache %s is unreadable or from another GPU/TensorRT; starting a new one", path)
    cache = config.create_timing_cache(b"")
    if cache is not None:
        config.set_timing_cache(cache, True)
    return cache


def _save_timing_cache(config: tensorrt.IBuilderConfig, path: Path) -> None:
    """Write the builder's timing cache to ``path``, after the engine. One that cannot be written (a folder of
    that name, a full or failing disk) is a warning: the cache only speeds up the next build, and the engine
    built is the export."""
    try:
        atomic_write_bytes(path, bytes(memoryview(config.get_timing_cache().serialize())))
    except OSError as e:
        log.warning("timing cache %s not saved (%s): the next build times its layers again", path, e.strerror or e)


def _parser_errors(parser: tensorrt.OnnxParser) -> list[str]:
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = []
        for attr in ("node_operator", "node_name"):
            fn = getattr(err, attr, None)
            with contextlib.suppress(Exception):
                if fn is not None and fn():
                    where.append(str(fn()))
        desc = joined_lines(err.desc())
        lines.append(f"{' '.join(where)}: {desc}" if where else desc)
    return lines


def check_workspace(workspace_gib: float | None) -> None:
    """:class:`InputError` for a TensorRT workspace limit that is not a positive, finite number of GiB. NaN passed
    a check of ``<= 0`` and inf was taken too: both failed in ``int()`` with a traceback (ValueError,
    OverflowError) once the export they were given with was made. :func:`pvt_deploy.export.export` checks it
    before the export, :func:`build_engine` before reading anything."""
    if workspace_gib is not None and not 0 < workspace_gib < math.inf:
        raise InputError(f"TensorRT workspace_gib (--workspace) {workspace_gib}: must be a positive, finite number of GiB")


def check_shape_order(shapes: Mapping[str, Any] | None) -> None:
    """:class:`InputError` for profile shapes given out of order (a min above the opt or the max given with it, an
    opt above the max, in any dimension), which no export's range mends: :func:`compute_profile`, which also fits
    them to the export's range, refused them only once the graph was made (an export of minutes, and its parity
    gate, for nothing). :func:`pvt_deploy.export.export` checks them before the export; ``shapes`` as
    :func:`build_engine` takes them."""
    shapes = _resolve_unnamed(shapes)
    if not shapes:
        return
    for name, spec in ({"": shapes} if set(shapes) <= {"min", "opt", "max"} else shapes).items():
        if not isinstance(spec, Mapping):
            continue  # compute_profile says what is wrong with it
        given = [(key, list(dims)) for key in ("min", "opt", "max") if isinstance(dims := spec.get(key), Sequence)
                 and not isinstance(dims, str) and all(isinstance(d, int) for d in dims)]
        if any(len(a) == len(b) and any(x > y for x, y in zip(a, b, strict=True))
               for (_, a), (_, b) in zip(given, given[1:], strict=False)):
            raise InputError(f"TensorRT profile{f' for {name!r}' if name else ''} needs min <= opt <= max per dimension; got "
                             + ", ".join(f"{key} {value}" for key, value in given))


def build_engine(
    artifact_dir: str | Path,
    *,
    precision: str = "fp32",
    shapes: Mapping[str, Any] | None = None,
    workspace_gib: float | None = None,
    timing_cache: str | Path | None = None,
    version_compatible: bool = False,
    hardware_compatible: bool = False,
    builder_optimization_level: int | None = None,
    progress: ProgressCallback | None = None,
    tf32: bool = False,
) -> Path:
    """Build ``model.engine`` in ``artifact_dir`` and record it in the manifest. Returns the engine path.

    ``precision`` picks the ONNX variant (see :data:`PRECISION_SOURCES`); ``shapes`` overrides the
    optimisation profile (see :func:`compute_profile`); ``workspace_gib`` caps TensorRT's scratch
    memory; ``timing_cache`` is a file loaded if present and saved after the build (rebuilds then
    skip kernel timing). ``version_compatible`` makes a plan later TensorRT versions of the same
    major load; ``hardware_compatible`` one that any Ampere-or-newer GPU loads (both run a little
    slower). ``progress`` receives build phases (:data:`ProgressCallback`). ``tf32`` lets TensorRT
    compute FP32 layers in TF32 on Ampere and newer GPUs (faster, a 10-bit mantissa in matmul and
    convolution inputs); off by default, so FP32 is IEEE FP32.

    Without TensorRT this raises a one-line :class:`BackendUnavailableError` before reading anything.
    """
    if precision not in PRECISION_SOURCES:
        raise InputError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    if builder_optimization_level is not None and not 0 <= builder_optimization_level <= 5:
        raise InputError(f"builder optimisation level must be 0..5, not {builder_optimization_level}")
    check_workspace(workspace_gib)
    tf32 = flag("tf32", tf32)
    require_tensorrt()
    import tensorrt as trt

    folder = Path(artifact_dir)
    manifest = read_manifest(folder)
    available = {p.name for p in folder.iterdir() if p.is_file()}
    strongly, flag_names = typing_support(trt)
    typed_flag = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")  # TensorRT 11 may drop it
    plan = plan_build(precision, available, strongly_typed=strongly, builder_flags=flag_names)
    if plan.note:
        log.warning("%s", plan.note)
    source = folder / plan.source
    with reading(source):
        verify_file(folder, manifest, plan.source)
    profiles = compute_profile(manifest, _resolve_unnamed(shapes))

    gpu_name, cc = cuda_device_info()
    if gpu_name is None:
        log.warning("no CUDA GPU visible to describe (torch CUDA and libcuda both unavailable); the manifest "
                    "will not record the build GPU, so a mismatched GPU cannot be refused later")
    if hardware_compatible:
        if not hasattr(trt, "HardwareCompatibilityLevel"):
            raise BackendUnavailableError(f"TensorRT {trt.__version__} cannot build hardware-compatible engines",
                                          hint=TRT_INSTALL_HINT)
        cc_t = _cc_tuple(cc)
        if cc_t is not None and cc_t < AMPERE_PLUS:
            raise InputError(f"hardware-compatible engines are built on Ampere or newer GPUs (compute capability "
                             f">= 8.0); {gpu_name} has {cc}")
    if version_compatible and not hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE"):
        raise BackendUnavailableError(f"TensorRT {trt.__version__} cannot build version-compatible engines",
                                      hint=TRT_INSTALL_HINT)

    logger = trt_logger()
    builder = create_trt("Builder")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed and typed_flag else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    log.info("parsing %s", source)
    if not parser.parse_from_file(str(source)):
        errors = _parser_errors(parser) or [last_trt_error()]
        for line in errors:
            log.error("TensorRT ONNX parser: %s", line)
        raise PvtDeployError(f"{plan.source}: TensorRT's ONNX parser failed with {len(errors)} error(s); first: "
                             f"{errors[0]}")

    config = builder.create_builder_config()
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if hasattr(trt.BuilderFlag, "TF32"):  # on in a new config: FP32 layers would round to TF32 on Ampere+
        (config.set_flag if tf32 else config.clear_flag)(trt.BuilderFlag.TF32)
    if workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if builder_optimization_level is not None:
        config.builder_optimization_level = builder_optimization_level
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    # layer names and parameters (type, tensors, tactic) in the plan, as trtexec --profilingVerbosity=detailed
    # keeps them: the engine inspector gives them to info --graph and bench --profile (names only otherwise)
    if hasattr(trt, "ProfilingVerbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache = _load_timing_cache(config, cache_path)
    monitor = None
    if progress is not None and hasattr(trt, "IProgressMonitor"):
        monitor = _make_progress_monitor(progress)
        config.progress_monitor = monitor

    profile = builder.create_optimization_profile()
    net_inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    for name, p in profiles.items():
        tensor = net_inputs.get(name)
        if tensor is None:
            raise InputError(f"{plan.source} has no input {name!r} (it has {sorted(net_inputs)}); re-export the model")
        net_shape = dims_tuple(tensor.shape)
        for key in ("min", "opt", "max"):
            if len(p[key]) != len(net_shape) or any(n >= 0 and n != v for n, v in zip(net_shape, p[key], strict=True)):
                raise InputError(f"{key} shape {p[key]} does not fit {plan.source}'s input {name!r} {list(net_shape)}")
        profile.set_shape(name, trt.Dims(p["min"]), trt.Dims(p["opt"]), trt.Dims(p["max"]))
    uncovered = [n for n, t in net_inputs.items() if n not in profiles and any(d < 0 for d in dims_tuple(t.shape))]
    if uncovered:
        raise InputError(f"{plan.source} has dynamic inputs {uncovered} that the manifest does not describe")
    config.add_optimization_profile(profile)

    log.info("building a %s TensorRT %s engine from %s (profile %s)", precision, trt.__version__, plan.source,
             profiles)
    started = time.perf_counter()
    serialized: tensorrt.IHostMemory | None = builder.build_serialized_network(network, config)
    interrupted = getattr(monitor, "interrupted", None)
    if isinstance(interrupted, BaseException):  # e.g. Ctrl-C while TensorRT was building
        raise interrupted
    if getattr(monitor, "cancelled", False):
        raise PvtDeployError(f"the TensorRT build of {plan.source} was cancelled: the progress callback returned False")
    if serialized is None:
        raise PvtDeployError(f"TensorRT could not build {plan.source} ({last_trt_error()})")
    log.info("engine built in %.1f s", time.perf_counter() - started)

    engine_path = folder / ENGINE_NAME
    with atomic_open(engine_path, "wb") as f:
        f.write(memoryview(serialized))
    if cache_path is not None and cache is not None:
        _save_timing_cache(config, cache_path)

    manifest.setdefault("files", {})[ENGINE_NAME] = file_entry(engine_path, precision, source=plan.source)
    manifest["tensorrt"] = {
        "version": trt.__version__,
        "gpu": gpu_name,
        "compute_capability": cc,
        "platform": host_platform(),
        "profiles": [{"input": n, **p} for n, p in profiles.items()],
        "precision": precision,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.flags),
        "tf32": tf32,
        "version_compatible": version_compatible,
        "hardware_compatible": hardware_compatible,
        "source": plan.source,
        "source_sha256": (manifest.get("files") or {}).get(plan.source, {}).get("sha256") or sha256_file(source),
    }
    manifest.setdefault("versions", {})["tensorrt"] = trt.__version__
    write_manifest(folder, manifest)
    return engine_path
