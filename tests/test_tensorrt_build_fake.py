"""Engine build and load logic, exercised against a FAKE ``tensorrt`` module (no TensorRT here).

The fake implements only what ``build_engine``/``load_engine`` call, shaped after the TensorRT 10/11
Python API: it parses the real ONNX file (with the ``onnx`` package) to give the network its inputs,
records flags and profiles, and "serialises" a plan that is just bytes. What these tests prove is our
logic: TRT10-vs-TRT11 branching, which ONNX is built, the profile given to TensorRT, the timing
cache, the plain plan on disk, the manifest update, and the one-line errors. They prove nothing about
TensorRT itself; ``test_tensorrt_gpu.py`` does that where TensorRT and a GPU exist.
"""

from __future__ import annotations

import contextlib
import enum
import json
import platform
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import pvt_deploy.export.tensorrt as build_mod
import pvt_deploy.runtimes.tensorrt as rt_mod
from pvt_deploy.errors import (
    BackendUnavailableError,
    EngineMismatchError,
    InputError,
    PvtDeployError,
    ShapeError,
)
from pvt_deploy.export.tensorrt import build_engine, plan_build, require_tensorrt
from pvt_deploy.manifest import file_entry, read_manifest, write_manifest
from pvt_deploy.utils import onnx_model
from pvt_deploy.utils.files import sha256_file

# --------------------------------------------------------------------------------------------------
# A tiny real ONNX artifact
# --------------------------------------------------------------------------------------------------


def tiny_onnx(path: Path, *, dtype: int = TensorProto.FLOAT) -> None:
    """images (N,3,H,W) -> Conv 3x3 s2 -> GlobalAveragePool -> Flatten -> logits (N,8)."""
    rng = np.random.default_rng(0)
    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    w = helper.make_tensor("w", dtype, [8, 3, 3, 3], rng.standard_normal((8, 3, 3, 3)).astype(np_dtype).ravel())
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", dtype, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", dtype, ["batch", 8])], [w])
    onnx.save(onnx_model(graph), str(path))


def make_artifact(folder: Path, *variants: str, dynamic: Any = "default") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("model.onnx", *variants):
        tiny_onnx(folder / name, dtype=TensorProto.FLOAT16 if "fp16" in name else TensorProto.FLOAT)
        files[name] = file_entry(folder / name, "fp16" if "fp16" in name else "int8" if "int8" in name else "fp32")
    write_manifest(folder, {
        "model": "tiny", "backbone": "tiny", "task": "classify", "classes": [str(i) for i in range(8)],
        "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 8]}],
        "preprocess": {"imgsz": [64, 96], "stride": 32},
        "dynamic": {"batch": [1, 4], "height": [32, 256], "width": [32, 256]} if dynamic == "default" else dynamic,
        "files": files,
    })
    return folder


# --------------------------------------------------------------------------------------------------
# The FAKE tensorrt module
# --------------------------------------------------------------------------------------------------


def fake_tensorrt(*, version: str = "10.13.0.35", strongly_typed: bool = True, weak_flags: bool = True,
                  progress: bool = True, cuda: bool = True) -> types.ModuleType:
    """A fake ``tensorrt``: TRT 10 (``weak_flags``) or TRT 11 (no FP16/INT8 flags), or neither typing.

    ``cuda=False``: TensorRT cannot initialise CUDA, so ``Builder``/``Runtime`` log a warning and
    raise what the real bindings raise when their factory returns null."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    trt.calls = []  # type: ignore[attr-defined]

    Severity = enum.IntEnum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"], start=0)  # noqa: N806

    class ILogger:
        def __init__(self) -> None:
            pass

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class IProfiler:  # IExecutionContext.profiler: report_layer_time(layer_name, ms) per layer per enqueue
        def __init__(self) -> None:
            pass

    flag_names = ["VERSION_COMPATIBLE", "TF32"] + (["FP16", "INT8"] if weak_flags else [])  # TF32: 10 and 11
    BuilderFlag = enum.IntEnum("BuilderFlag", flag_names)  # noqa: N806
    # NetworkDefinitionCreationFlag as NvInfer.h numbers it: TensorRT 10 kEXPLICIT_BATCH = 0 (ignored),
    # kSTRONGLY_TYPED = 1, kPREFER_JIT/AOT_PYTHON_PLUGINS = 2/3; TensorRT 11 dropped kEXPLICIT_BATCH, so
    # kSTRONGLY_TYPED = 0 (deprecated, ignored) and bit 1 is kPREFER_JIT_PYTHON_PLUGINS.
    ndcf = ["STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS", "PREFER_AOT_PYTHON_PLUGINS"]
    if int(version.split(".")[0]) < 11:
        ndcf.insert(0, "EXPLICIT_BATCH")
    NDCF = enum.IntEnum("NetworkDefinitionCreationFlag",  # noqa: N806
                        {n: i for i, n in enumerate(ndcf) if strongly_typed or n != "STRONGLY_TYPED"})

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.inputs = flags, []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

    class ParserError:
        def __init__(self, desc: str) -> None:
            self._desc = desc

        def desc(self) -> str:
            return self._desc

        def node_name(self) -> str:
            return "Conv_0"

        def node_operator(self) -> str:
            return "Conv"

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            trt.calls.append(("parse", Path(path).name))
            model = onnx.load(path)
            if any(n.op_type == "Unsupported" for n in model.graph.node):
                self.errors = [ParserError("No importer registered for op: Unsupported\nmore"),
                               ParserError("second problem")]
                return False
            for inp in model.graph.input:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim)
                self.network.inputs.append(Tensor(inp.name, dims))
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = bytes(data)

        def serialize(self) -> bytes:
            return b"CACHE:" + trt.__version__.encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            # IOptimizationProfile::setDimensions wants the same rank and 0 <= min <= opt <= max per dimension;
            # TensorRT may find a violation here (the binding raises RuntimeError) or only at build time, so the
            # fake refuses it at the first point either way
            lo, opt, hi = list(lo), list(opt), list(hi)
            if len({len(lo), len(opt), len(hi)}) > 1 or any(
                    not 0 <= a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self.shapes[name] = (lo, opt, hi)

    class Config:
        def __init__(self) -> None:
            # TensorRT's BuilderFlag::kTF32, "Enabled by default" (NvInfer.h, TensorRT 10 and 11)
            self.flags, self.pools, self.profiles = {"TF32"}, {}, []
            self.progress_monitor = None
            self.builder_optimization_level = 3
            self.hardware_compatibility_level = 0
            self.profiling_verbosity = None  # TensorRT's default: layer names only
            self.cache: TimingCache | None = None

        def set_flag(self, flag: Any) -> None:
            self.flags.add(flag.name)

        def clear_flag(self, flag: Any) -> None:
            self.flags.discard(flag.name)

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pools[pool] = size

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache.data and not cache.data.startswith(b"CACHE:" + trt.__version__.encode()) and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            assert self.cache is not None
            return self.cache

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    def no_cuda(logger: Any) -> None:
        if not cuda:
            logger.log(Severity.WARNING, "CUDA initialization failure with error: 35. Please check your CUDA "
                       "installation: http://docs.nvidia.com/cuda/cuda-installation-guide-linux/index.html")
            raise TypeError("pybind11::init(): factory function returned nullptr")

    class Builder:
        def __init__(self, logger: Any) -> None:
            no_cuda(logger)
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                for step in range(2):
                    if not monitor.step_complete("Building engine", step):
                        # TensorRT still finishes the phase it was in (IProgressMonitor's documentation)
                        monitor.phase_finish("Building engine")
                        self.logger.log(Severity.ERROR, "build cancelled by the progress monitor")
                        return None
                monitor.phase_finish("Building engine")
            record = {"flags": network.flags, "network_flags": [f.name for f in NDCF if network.flags >> f.value & 1],
                      "builder_flags": sorted(config.flags), "pools": len(config.pools),
                      "profiles": [p.shapes for p in config.profiles], "level": config.builder_optimization_level,
                      "hw": str(config.hardware_compatibility_level),
                      "verbosity": getattr(config.profiling_verbosity, "name", None)}
            trt.calls.append(("build", record))
            return b"PLAN" + json.dumps(record).encode()

    class Engine:
        pass

    class Runtime:
        def __init__(self, logger: Any) -> None:
            no_cuda(logger)
            self.logger = logger
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            trt.calls.append(("deserialize", self.engine_host_code_allowed))
            if not data.startswith(b"PLAN"):
                self.logger.log(Severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                "(Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.)")
                return None
            # a version-compatible plan embeds the lean runtime (host code), which a runtime deserialises only
            # where engine_host_code_allowed was set (IRuntime::setEngineHostCodeAllowed, default false)
            with contextlib.suppress(ValueError):
                if "VERSION_COMPATIBLE" in json.loads(data[4:]).get("builder_flags", []) \
                        and not self.engine_host_code_allowed:
                    self.logger.log(Severity.ERROR, "IRuntime::deserializeCudaEngine: the plan holds host code "
                                    "and engine_host_code_allowed is False")
                    return None
            return Engine()

    ILogger.Severity = Severity  # type: ignore[attr-defined]
    trt.ILogger, trt.Logger, trt.IProgressMonitor = ILogger, ILogger, IProgressMonitor  # type: ignore[attr-defined]
    trt.IProfiler = IProfiler  # type: ignore[attr-defined]
    trt.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"], start=0)  # type: ignore[attr-defined]
    if not progress:
        del trt.IProgressMonitor
    trt.BuilderFlag, trt.NetworkDefinitionCreationFlag = BuilderFlag, NDCF  # type: ignore[attr-defined]
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"])  # type: ignore[attr-defined]
    trt.HardwareCompatibilityLevel = enum.Enum("HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS"])  # type: ignore[attr-defined]
    trt.ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"], start=0)  # type: ignore[attr-defined]
    trt.Dims = tuple  # type: ignore[attr-defined]
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime  # type: ignore[attr-defined]
    return trt


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install a fake tensorrt (factory) and a fake GPU (A10, 8.6) for the duration of a test."""

    def install(**kwargs: Any) -> types.ModuleType:
        trt = fake_tensorrt(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(rt_mod, "_logger_instance", None)  # the logger subclasses this fake's ILogger
        return trt

    gpu = lambda index=0: ("NVIDIA A10 (fake)", "8.6")  # noqa: E731
    monkeypatch.setattr(build_mod, "cuda_device_info", gpu)
    monkeypatch.setattr(rt_mod, "cuda_device_info", gpu)
    return install


def built(trt: types.ModuleType) -> dict[str, Any]:
    return next(rec for kind, rec in trt.calls if kind == "build")


# --------------------------------------------------------------------------------------------------
# Without TensorRT
# --------------------------------------------------------------------------------------------------


def test_build_without_tensorrt_fails_first_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BackendUnavailableError) as e:
        build_engine(tmp_path / "does-not-exist", precision="fp16")  # no InputError: nothing read before
    msg = str(e.value)
    assert "\n" not in msg and "TensorRT is not installed" in msg
    assert "docker build -f docker/Dockerfile -t pvt-deploy ." in msg and "pip install" in msg
    assert e.value.exit_code == 3


def test_tensorrt_whose_libraries_do_not_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The Jetson image run without ``--runtime nvidia``: TensorRT's bindings are installed, but libnvinfer
    links Tegra driver libraries (libnvdla_compiler.so) that only the NVIDIA runtime mounts, so ``import
    tensorrt`` raises ImportError for that library. It said "TensorRT is not installed" and, in the
    image, to build the Docker image; it must say the libraries do not load and how to start the
    container, in the error and in doctor's row."""
    from pvt_deploy.doctor import _tensorrt

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "raise ImportError('libnvdla_compiler.so: cannot open shared object file: No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    with pytest.raises(BackendUnavailableError) as e:
        require_tensorrt()
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 3
    assert msg.startswith("TensorRT is installed but its libraries do not load (libnvdla_compiler.so: cannot open")
    assert "--runtime nvidia" in msg and "docker build" not in msg
    (row,) = _tensorrt()
    assert row.status == "missing" and row.summary == e.value.args[0] and row.hint == e.value.hint


def test_type_stubs_alone_do_not_count_as_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    shell = types.ModuleType("tensorrt")
    shell.__path__ = ["/site-packages/tensorrt"]  # what tensorrt-stubs leaves behind
    monkeypatch.setitem(sys.modules, "tensorrt", shell)
    with pytest.raises(BackendUnavailableError, match="type stubs"):
        require_tensorrt()


def test_backend_without_tensorrt_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError) as e:
        rt_mod.TensorRTBackend(tmp_path / "model.engine")
    assert "\n" not in str(e.value) and "TensorRT is not installed" in str(e.value)
    assert "pip install" in str(e.value) and e.value.exit_code == 3
    # a yes/no option is checked first, wherever TensorRT is: "no" would have captured CUDA graphs
    with pytest.raises(InputError, match="cuda_graph must be True or False, got 'no'"):
        rt_mod.TensorRTBackend(tmp_path / "model.engine", cuda_graph="no")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Which ONNX, which typing (pure)
# --------------------------------------------------------------------------------------------------

ALL = {"model.onnx", "model.fp16.onnx", "model.int8.trt.onnx", "model.int8.onnx"}


def test_plan_strongly_typed_builds_the_precision_graph_without_flags() -> None:
    for precision, source in (("fp32", "model.onnx"), ("fp16", "model.fp16.onnx"), ("int8", "model.int8.trt.onnx")):
        plan = plan_build(precision, ALL, strongly_typed=True, builder_flags={"FP16", "INT8"})
        assert (plan.source, plan.strongly_typed, plan.flags) == (source, True, ())


def test_plan_int8_never_builds_the_cpu_flavour() -> None:
    """model.int8.onnx (uint8 asymmetric Q/DQ, MatMulInteger, com.microsoft MultiHeadAttention) is not
    TensorRT's to parse: an export with only that flavour is refused up front, saying what to export."""
    with pytest.raises(InputError) as e:
        plan_build("int8", {"model.onnx", "model.int8.onnx"}, strongly_typed=True, builder_flags=set())
    assert "CPU flavour" in str(e.value) and "--int8-flavour trt" in str(e.value) and e.value.exit_code == 2


def test_plan_fp16_without_fp16_graph_uses_trt10_flag_else_refuses() -> None:
    plan = plan_build("fp16", {"model.onnx"}, strongly_typed=True, builder_flags={"FP16", "INT8"})  # TRT 10
    assert (plan.source, plan.strongly_typed, plan.flags) == ("model.onnx", False, ("FP16",))
    with pytest.raises(InputError, match="--half"):  # TRT 11: no flag to fall back on
        plan_build("fp16", {"model.onnx"}, strongly_typed=True, builder_flags=set())
    with pytest.raises(InputError, match="--int8"):
        plan_build("int8", {"model.onnx"}, strongly_typed=True, builder_flags={"FP16", "INT8"})


def test_plan_without_strong_typing_uses_builder_flags() -> None:
    assert plan_build("int8", ALL, strongly_typed=False, builder_flags={"FP16", "INT8"}).flags == ("INT8", "FP16")
    assert plan_build("fp16", ALL, strongly_typed=False, builder_flags={"FP16", "INT8"}).flags == ("FP16",)
    with pytest.raises(BackendUnavailableError):
        plan_build("fp16", ALL, strongly_typed=False, builder_flags=set())


# --------------------------------------------------------------------------------------------------
# build_engine against the fake
# --------------------------------------------------------------------------------------------------


def test_fake_trt10_fp16_build_writes_plain_plan_and_manifest(use_fake: Any, tmp_path: Path) -> None:
    trt = use_fake(version="10.13.0.35")
    art = make_artifact(tmp_path / "art", "model.fp16.onnx")
    engine = build_engine(art, precision="fp16", workspace_gib=2, builder_optimization_level=4)

    assert engine == art / "model.engine" and engine.read_bytes().startswith(b"PLAN")  # no header glued on
    assert ("parse", "model.fp16.onnx") in trt.calls
    rec = built(trt)
    assert rec["flags"] == 1 << 1 and rec["builder_flags"] == []  # strongly typed, no precision flags
    assert rec["network_flags"] == ["STRONGLY_TYPED"]
    assert rec["pools"] == 1 and rec["level"] == 4
    assert rec["profiles"] == [{"images": ([1, 3, 32, 32], [1, 3, 64, 96], [4, 3, 96, 96])}]
    # layer types and tensors in the plan's inspector: info --graph and bench --profile group layers by type
    assert rec["verbosity"] == "DETAILED"

    m = read_manifest(art)
    assert m["files"]["model.engine"] == {"sha256": sha256_file(engine), "bytes": engine.stat().st_size,
                                          "precision": "fp16", "source": "model.fp16.onnx"}
    t = m["tensorrt"]
    assert t["version"] == "10.13.0.35" and t["gpu"] == "NVIDIA A10 (fake)" and t["compute_capability"] == "8.6"
    assert t["platform"] == f"{sys.platform}-{platform.machine().lower()}"  # plans do not cross platforms
    assert t["profiles"] == [{"input": "images", "min": [1, 3, 32, 32], "opt": [1, 3, 64, 96], "max": [4, 3, 96, 96]}]
    assert t["precision"] == "fp16" and t["strongly_typed"] is True
    assert t["version_compatible"] is False and t["hardware_compatible"] is False
    assert t["source"] == "model.fp16.onnx" and t["source_sha256"] == sha256_file(art / "model.fp16.onnx")
    assert m["versions"]["tensorrt"] == "10.13.0.35"
    assert m["files"]["model.onnx"]["precision"] == "fp32"  # the rest of the manifest is kept


def test_fake_trt11_without_fp16_graph_refuses_and_with_it_builds(use_fake: Any, tmp_path: Path) -> None:
    trt = use_fake(version="11.0.0.1", weak_flags=False)
    art = make_artifact(tmp_path / "art")
    with pytest.raises(InputError, match="model.fp16.onnx"):
        build_engine(art, precision="fp16")
    make_artifact(art, "model.fp16.onnx")
    build_engine(art, precision="fp16")
    assert built(trt)["builder_flags"] == []
    # TensorRT 11 numbers kSTRONGLY_TYPED 0 (kEXPLICIT_BATCH is gone): the flag is read from the enum, not
    # assumed to be TensorRT 10's bit 1, which TensorRT 11 gives to kPREFER_JIT_PYTHON_PLUGINS
    assert built(trt)["flags"] == 1 and built(trt)["network_flags"] == ["STRONGLY_TYPED"]


def test_fake_trt11_without_strongly_typed_flag_is_still_strongly_typed(use_fake: Any, tmp_path: Path) -> None:
    """TensorRT 11 deprecates the STRONGLY_TYPED creation flag (always on); if it is gone, still build."""
    trt = use_fake(version="11.2.0.1", weak_flags=False, strongly_typed=False)
    build_engine(make_artifact(tmp_path / "art", "model.int8.trt.onnx"), precision="int8")
    assert built(trt)["flags"] == 0 and built(trt)["builder_flags"] == []
    assert read_manifest(tmp_path / "art")["tensorrt"]["strongly_typed"] is True


def test_fake_trt10_fp16_flag_fallback_is_recorded(use_fake: Any, tmp_path: Path) -> None:
    trt = use_fake(version="10.13.0.35")
    art = make_artifact(tmp_path / "art")
    build_engine(art, precision="fp16")
    assert built(trt)["builder_flags"] == ["FP16"] and built(trt)["flags"] == 0
    t = read_manifest(art)["tensorrt"]
    assert t["strongly_typed"] is False and t["builder_flags"] == ["FP16"] and t["source"] == "model.onnx"


def test_fake_fp32_engine_is_built_without_tf32_unless_asked(use_fake: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """TensorRT's TF32 flag is on in a new builder config: an "fp32" engine rounded matmul and conv inputs
    to a 10-bit mantissa on Ampere+ GPUs and missed the FP32 tolerance it is checked with (max_rel 1e-3).
    It is cleared (as Polygraphy does) unless --tf32 asks for it; the manifest says which, and an engine
    TensorRT could run in TF32 is reported and judged as tf32."""
    from cli_run import run
    from rich.console import Console

    from pvt_deploy.cli.export import summary_table
    from pvt_deploy.runtimes.tensorrt import engine_precision, rebuild_command

    trt = use_fake()
    art = make_artifact(tmp_path / "art")
    build_engine(art)
    assert built(trt)["builder_flags"] == []
    section = read_manifest(art)["tensorrt"]
    assert section["tf32"] is False and engine_precision(section) == "fp32"
    assert rebuild_command(read_manifest(art), art).endswith("--format trt")

    trt.calls.clear()
    build_engine(art, tf32=True)
    assert built(trt)["builder_flags"] == ["TF32"]
    manifest = read_manifest(art)
    section = manifest["tensorrt"]
    assert section["tf32"] is True and engine_precision(section) == "tf32"  # the fake GPU: an A10, 8.6
    assert manifest["files"]["model.engine"]["precision"] == "fp32"  # the graph's: the loader picks it by that
    assert rebuild_command(manifest, art).endswith("--format trt --tf32")
    console = Console(record=True, width=100)
    console.print(summary_table(art))
    assert [line.split()[1] for line in console.export_text().splitlines() if "model.engine" in line] == ["tf32"]
    code, out, err = run(monkeypatch, capsys, "info", str(art))
    assert code == 0 and "on NVIDIA A10 (fake) (cc 8.6), tf32, profiles" in out + err, out + err
    assert engine_precision({**section, "compute_capability": "7.5"}) == "fp32"  # no TF32 before Ampere
    old = {k: v for k, v in section.items() if k != "tf32"}  # built before the flag was cleared: TensorRT's default
    assert engine_precision(old) == "tf32" and engine_precision({**section, "precision": "fp16"}) == "fp16"
    with pytest.raises(InputError, match="tf32 must be True or False, got 'no'"):
        build_engine(art, tf32="no")  # type: ignore[arg-type]


def test_fake_engine_from_an_export_folder_is_not_warned_about(use_fake: Any, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """``export --model exports/NAME --format trt`` (the --model help: an export folder "builds --format trt")
    builds the FP32 engine from the folder's model.onnx; it warned "nothing to add without --half or --int8; to
    export it again, give the model name" first, as if the command had done nothing."""
    import logging

    from pvt_deploy.export import export

    trt = use_fake()
    art = make_artifact(tmp_path / "art")
    with caplog.at_level(logging.INFO, logger="pvt_deploy"):
        export(art, format="trt", parity=False)
    assert built(trt) and (art / "model.engine").is_file()
    assert "nothing to add" not in caplog.text, caplog.text


def test_fake_int8_export_with_cpu_flavour_only_is_refused_before_parsing(use_fake: Any, tmp_path: Path) -> None:
    """The CPU flavour of a real export, as ``pvt-deploy export --int8 --int8-flavour cpu`` writes it,
    holds operators TensorRT's ONNX parser has no importer for; the build refuses it without parsing.
    (Made without the parity gate: what the build reads is the graph's operators.)"""
    import torch

    from pvt_deploy.export import export_onnx
    from pvt_deploy.models import create_model

    torch.manual_seed(0)
    art = export_onnx(create_model("pvt_tiny-cls"), tmp_path / "cls", imgsz=64, int8=True, int8_flavour="cpu",
                      calib_size=1, parity=False)
    cpu_ops = {(n.domain, n.op_type) for n in onnx.load(str(art / "model.int8.onnx")).graph.node}
    assert {("com.microsoft", "FusedMatMul"), ("com.microsoft", "Gelu"), ("", "MatMulInteger")} <= cpu_ops
    assert not (art / "model.int8.trt.onnx").exists()
    trt = use_fake()
    with pytest.raises(InputError, match="--int8-flavour trt"):
        build_engine(art, precision="int8")
    assert not [c for c in trt.calls if c[0] == "parse"] and not (art / "model.engine").exists()


def test_fake_int8_prefers_tensorrt_flavour(use_fake: Any, tmp_path: Path) -> None:
    trt = use_fake()
    art = make_artifact(tmp_path / "art", "model.int8.onnx", "model.int8.trt.onnx")
    build_engine(art, precision="int8")
    assert ("parse", "model.int8.trt.onnx") in trt.calls


def test_fake_compat_options_and_timing_cache_roundtrip(use_fake: Any, tmp_path: Path) -> None:
    trt = use_fake()
    art = make_artifact(tmp_path / "art")
    cache = tmp_path / "cache" / "trt.cache"
    cache.parent.mkdir()
    cache.write_bytes(b"ALIEN-CACHE")  # from another GPU/TensorRT: replaced, not fatal
    build_engine(art, version_compatible=True, hardware_compatible=True, timing_cache=cache,
                 shapes={"images": {"opt": [2, 3, 128, 128]}})
    rec = built(trt)
    assert rec["builder_flags"] == ["VERSION_COMPATIBLE"] and rec["hw"].endswith("AMPERE_PLUS")
    assert rec["profiles"][0]["images"][1] == [2, 3, 128, 128]
    assert cache.read_bytes() == b"CACHE:10.13.0.35"
    t = read_manifest(art)["tensorrt"]
    assert t["version_compatible"] is True and t["hardware_compatible"] is True


def test_fake_timing_cache_that_cannot_be_saved_keeps_the_engine(use_fake: Any, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The timing cache was saved after the engine, and a cache that could not be written (--timing-cache
    naming a folder: EISDIR; a full or failing disk) failed the export after the whole build, a traceback for
    any error but a few, the engine thrown away with it. The cache only speeds up the next build: a warning
    says it was not saved, and the engine and its manifest entry are the export's."""
    import logging

    use_fake()
    art = make_artifact(tmp_path / "art")
    folder = tmp_path / "caches"
    folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="pvt_deploy"):
        engine = build_engine(art, timing_cache=folder)
    assert engine == art / "model.engine" and engine.read_bytes()
    assert read_manifest(art)["files"]["model.engine"]["sha256"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"timing cache {folder} not saved (exists and is not a regular file): the next build "
                        "times its layers again"], warnings
    assert list(folder.iterdir()) == [] and sorted(p.name for p in art.iterdir() if p.name.startswith(".")) == []


def test_fake_hardware_compatible_needs_ampere_to_build(use_fake: Any, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    use_fake()
    monkeypatch.setattr(build_mod, "cuda_device_info", lambda index=0: ("Tesla T4", "7.5"))
    with pytest.raises(InputError, match="Ampere"):
        build_engine(make_artifact(tmp_path / "art"), hardware_compatible=True)


def test_fake_parser_errors_one_line_each(use_fake: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    use_fake()
    art = make_artifact(tmp_path / "art")
    model = onnx.load(str(art / "model.onnx"))
    model.graph.node.append(helper.make_node("Unsupported", ["logits"], ["x"]))
    onnx.save(model, str(art / "model.onnx"))
    m = read_manifest(art)
    m["files"]["model.onnx"] = file_entry(art / "model.onnx", "fp32")
    write_manifest(art, m)
    with pytest.raises(PvtDeployError) as e:
        build_engine(art)
    assert "\n" not in str(e.value) and "2 error(s)" in str(e.value) and "Conv Conv_0" in str(e.value)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len([x for x in errors if x.startswith("TensorRT ONNX parser")]) == 2
    assert not (art / "model.engine").exists() and "tensorrt" not in read_manifest(art)


def test_fake_changed_source_onnx_is_refused(use_fake: Any, tmp_path: Path) -> None:
    use_fake()
    art = make_artifact(tmp_path / "art")
    (art / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(InputError, match="sha256"):
        build_engine(art)


def test_fake_progress_callback_sees_phases_and_can_cancel(use_fake: Any, tmp_path: Path) -> None:
    use_fake()
    art = make_artifact(tmp_path / "art")
    seen: list[tuple[str, int, int]] = []
    build_engine(art, progress=lambda phase, step, total: seen.append((phase, step, total)))
    assert seen == [("Building engine", 0, 2), ("Building engine", 1, 2), ("Building engine", 2, 2)]

    def interrupt(phase: str, step: int, total: int) -> None:
        if step == 1:
            raise KeyboardInterrupt

    (art / "model.engine").unlink()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C inside TensorRT's callback cancels and re-raises
        build_engine(art, progress=interrupt)
    assert not (art / "model.engine").exists()

    # returning False cancels: an error that says so (it said TensorRT "could not build"), and no more calls
    # (TensorRT's closing phase_finish drew the bar to its end, as if the build had completed)
    seen.clear()
    with pytest.raises(PvtDeployError, match="was cancelled: the progress callback returned False"):
        build_engine(art, progress=lambda phase, step, total: seen.append((phase, step, total)) or step < 1)
    assert seen == [("Building engine", 0, 2), ("Building engine", 1, 2)]
    assert not (art / "model.engine").exists()


def test_fake_without_progress_monitor_still_builds(use_fake: Any, tmp_path: Path) -> None:
    """A TensorRT without IProgressMonitor: the callback is never called, and the engine and its
    manifest entry are written as with one."""
    trt = use_fake(progress=False)
    art = make_artifact(tmp_path / "art")
    seen: list[tuple[str, int, int]] = []
    engine = build_engine(art, progress=lambda *a: seen.append(a))
    assert seen == []
    assert engine == art / "model.engine" and engine.read_bytes().startswith(b"PLAN")
    assert built(trt)["profiles"] == [{"images": ([1, 3, 32, 32], [1, 3, 64, 96], [4, 3, 96, 96])}]
    assert read_manifest(art)["files"]["model.engine"]["sha256"] == sha256_file(engine)


# --------------------------------------------------------------------------------------------------
# load_engine against the fake
# --------------------------------------------------------------------------------------------------


def test_fake_load_refuses_mismatch_before_deserialising(use_fake: Any, tmp_path: Path) -> None:
    trt = use_fake(version="10.13.0.35")
    art = make_artifact(tmp_path / "art", "model.fp16.onnx")
    build_engine(art, precision="fp16")
    rt_mod.load_engine(art / "model.engine")  # same fake GPU and version: loads
    sys.modules["tensorrt"].__version__ = "10.14.0.1"  # type: ignore[attr-defined]
    trt.calls.clear()
    with pytest.raises(EngineMismatchError) as e:
        rt_mod.load_engine(art / "model.engine")
    assert "10.13.0.35" in str(e.value) and f"pvt-deploy export --model {art} --format trt --half" in str(e.value)
    assert not [c for c in trt.calls if c[0] == "deserialize"]


def test_fake_version_compatible_engine_allows_host_code(use_fake: Any, tmp_path: Path) -> None:
    trt = use_fake()
    art = make_artifact(tmp_path / "art")
    build_engine(art, version_compatible=True)
    rt_mod.load_engine(art / "model.engine")
    assert ("deserialize", True) in trt.calls


def test_fake_lone_engine_loads_with_warning_and_trt_refusal_is_one_line(
        use_fake: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    use_fake()
    lone = tmp_path / "lone.engine"
    lone.write_bytes(b"PLAN{}")
    rt_mod.load_engine(lone)
    assert "no manifest" in caplog.text
    lone.write_bytes(b"\x00garbage")
    with pytest.raises(EngineMismatchError) as e:
        rt_mod.load_engine(lone)
    msg = str(e.value)
    assert "\n" not in msg and "magicTag" in msg and "cannot load" in msg and "pvt-deploy export" in msg


def test_fake_tensorrt_without_cuda_is_one_line_exit_3(use_fake: Any, tmp_path: Path) -> None:
    """TensorRT installed where CUDA cannot start (no driver, or one older than TensorRT's CUDA): its
    Builder/Runtime constructors raise TypeError (a null factory result); that is a missing runtime."""
    use_fake()
    art = make_artifact(tmp_path / "art")
    build_engine(art)
    use_fake(cuda=False)
    for attempt in (lambda: build_engine(art), lambda: rt_mod.load_engine(art / "model.engine")):
        with pytest.raises(BackendUnavailableError) as e:
            attempt()
        msg = str(e.value)
        assert "\n" not in msg and "CUDA initialization failure with error: 35" in msg and "nvidia-smi" in msg
        assert e.value.exit_code == 3


def test_fake_backend_device_is_one_line_before_cuda_is_touched(use_fake: Any, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """The TensorRT backend's device: torch.device("gpu") (the alias the other backends take), a bogus
    name or ``cuda:x`` raised torch's RuntimeError, a traceback, and ``cuda:N`` past the GPUs there are
    failed inside CUDA; each is one line now, before the engine is read (a one-GPU box is faked)."""
    import torch

    use_fake()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    engine = make_artifact(tmp_path / "art") / "model.engine"
    for device, message in (
            ("bogus", "TensorRT runs on a CUDA device (cuda, cuda:N or a GPU index N), not 'bogus'"),
            ("cpu", "TensorRT runs on a CUDA device (cuda, cuda:N or a GPU index N), not 'cpu'"),
            ("cuda:x", "unknown torch device 'cuda:x' (use cpu, cuda or cuda:N)"),
            ("cuda:3", "device 'cuda:3': there is no CUDA device 3 here (1 visible, cuda:0)"),
            (2, "device '2': there is no CUDA device 2 here (1 visible, cuda:0)")):
        with pytest.raises(InputError) as e:
            rt_mod.TensorRTBackend(engine, device=device)
        assert e.value.args[0] == message
    # the aliases the ONNX Runtime backend takes name the same devices here
    for device in ("gpu", "GPU:0", "cuda", 0, "0"):
        assert rt_mod._cuda_device(device) == torch.device("cuda", 0)


def fake_engine(out_dtype: str, on_call: Any = None, layers: Any = (), inspected: Any = None) -> Any:
    """A fake ICudaEngine, images (N,3,H,W) float32 -> logits (N,8) of ``out_dtype`` (a DataType name),
    whose context computes logits[i, k] = images[i].mean() + k from the memory at the addresses bound
    to it, as TensorRT reads and writes the buffers it is given (by address, nothing else).
    ``on_call("shape" | "execute")`` is told of each context call as it starts. Each execute reports
    ``layers`` (``(name, ms)``) to the context's ``profiler`` where one is set; the engine inspector's
    JSON has ``inspected`` as its ``"Layers"`` (an exception: raised by the inspector)."""
    import ctypes

    names = ("images", "logits")
    dtypes = {"images": "FLOAT", "logits": out_dtype}

    class Context:
        def __init__(self) -> None:
            self.shape: tuple[int, ...] = ()
            self.address: dict[str, int] = {}
            self.profiler: Any = None

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            if on_call is not None:
                on_call("shape")
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (self.shape[0], 8)

        def set_tensor_address(self, name: str, address: int) -> bool:
            # IExecutionContext::setTensorAddress (TensorRT's NvInferRuntime.h): "The pointer must have
            # at least 256-byte alignment"; TensorRT logs an API usage error and returns false.
            if address % 256:
                return False
            self.address[name] = address
            return True

        def execute_async_v3(self, stream: int) -> bool:
            if on_call is not None:
                on_call("execute")
            count = int(np.prod(self.shape))
            images = np.frombuffer((ctypes.c_float * count).from_address(self.address["images"]), np.float32)
            logits = images.reshape(self.shape).mean(axis=(1, 2, 3))[:, None] + np.arange(8, dtype=np.float32)
            size = 2 if out_dtype in ("HALF", "BF16") else 4
            out = np.frombuffer((ctypes.c_byte * (logits.size * size)).from_address(self.address["logits"]),
                                {"HALF": np.float16, "BF16": np.uint16, "FLOAT": np.float32}[out_dtype])
            out[:] = ((logits.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) if out_dtype == "BF16"
                      else logits.astype(out.dtype)).ravel()
            for name, ms in layers if self.profiler is not None else ():
                self.profiler.report_layer_time(name, ms)
            return True

    class Inspector:
        execution_context: Any = None

        def get_engine_information(self, fmt: Any) -> str:
            assert fmt.name == "JSON"
            if isinstance(inspected, Exception):
                raise inspected
            return json.dumps({"Layers": inspected if inspected is not None else [n for n, _ in layers],
                               "Bindings": list(names)})

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return names[i]

        def get_tensor_dtype(self, name: str) -> Any:
            return types.SimpleNamespace(name=dtypes[name])

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (-1, 3, -1, -1) if name == "images" else (-1, 8)

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name == "images" else "OUTPUT"

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            return [(1, 3, 32, 32), (1, 3, 64, 96), (4, 3, 96, 96)]

        def create_execution_context(self) -> Context:
            return Context()

        def create_engine_inspector(self) -> Inspector:
            return Inspector()

    return Engine()


def fake_backend(use_fake: Any, monkeypatch: pytest.MonkeyPatch, folder: Path, engine: Any) -> Any:
    """A TensorRTBackend on ``engine`` (a :func:`fake_engine`), torch's CUDA calls faked and its
    buffers in host memory, allocated 256-byte aligned as cudaMalloc's are (CUDA C++ Programming
    Guide: an address returned by the memory allocation routines is aligned to at least 256 bytes)."""
    import contextlib

    import torch

    trt = use_fake()
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    art = make_artifact(folder)
    build_engine(art)
    real_empty = torch.empty

    def device_empty(*shape: Any, dtype: Any = None, device: Any = None, **kwargs: Any) -> torch.Tensor:
        size = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape
        dtype = dtype or torch.float32
        nbytes = int(np.prod(size)) * torch.tensor([], dtype=dtype).element_size()
        raw = real_empty(nbytes + 256, dtype=torch.uint8)
        start = -raw.data_ptr() % 256
        return raw[start:start + nbytes].view(dtype).view(size)

    stream = types.SimpleNamespace(cuda_stream=0, synchronize=lambda: None, wait_stream=lambda other: None)
    monkeypatch.setattr(torch, "empty", device_empty)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, s: None)
    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", lambda self, data: engine)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", contextlib.nullcontext)
    monkeypatch.setattr(torch.cuda, "stream", contextlib.nullcontext)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: stream)
    monkeypatch.setattr(rt_mod, "_cuda_device", lambda device: torch.device("cpu"))
    return rt_mod.TensorRTBackend(art / "model.engine")


def constant_images(batch: int, side: int, first: float = 3.0) -> np.ndarray:
    return np.stack([np.full((3, side, side), first + i, np.float32) for i in range(batch)])


@pytest.mark.parametrize("out_dtype", ["FLOAT", "HALF", "BF16"])
def test_fake_backend_runs_on_the_buffers_it_binds(use_fake: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   out_dtype: str) -> None:
    """TensorRTBackend.infer against a fake engine that computes from the memory at the bound addresses
    (torch's CUDA calls faked, buffers in host memory): the answer is the feed's, in float32 whatever
    the engine's output type. A BF16 output raised TypeError (numpy has no bfloat16), and a bad feed
    was torch's TypeError or a silent cast, not the one line every other backend gives."""
    backend = fake_backend(use_fake, monkeypatch, tmp_path / "art", fake_engine(out_dtype))
    for batch, side in ((2, 64), (1, 96), (2, 64)):  # a new shape re-binds, the old one again too
        images = constant_images(batch, side)
        logits = backend.infer({"images": images})["logits"]
        assert logits.dtype == np.float32
        np.testing.assert_array_equal(logits, 3.0 + np.arange(batch)[:, None] + np.arange(8))
    for feed, error, message in (
            (images, InputError, "a feed maps input names to arrays ({'images': array}), got ndarray"),
            ({"images": images.astype(np.complex64)}, InputError, "input 'images' holds complex64 values, not real numbers"),
            ({"images": np.array([None])}, InputError, "input 'images' holds object values, not real numbers"),
            ({"images": images[:0]}, ShapeError, "input 'images' has shape [0, 3, 64, 64]: no values to run")):
        with pytest.raises(error) as e:
            backend.infer(feed)  # type: ignore[arg-type]
        assert e.value.args[0] == message
    backend.close()


def test_fake_infer_torch_copies_an_input_tensorrt_cannot_take_in_place(
        use_fake: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """infer_torch binds a caller's tensor in place when it is on the device, contiguous and of the
    engine's dtype; TensorRT also needs its address 256-byte aligned (setTensorAddress). A contiguous
    view at an offset into a larger buffer is not, and the call failed with "TensorRT refused the
    buffer for 'images'"; it is copied into the backend's own buffer now, and an aligned tensor is
    still used in place."""
    import torch

    backend = fake_backend(use_fake, monkeypatch, tmp_path / "art", fake_engine("FLOAT"))
    images = torch.from_numpy(constant_images(2, 64))
    want = 3.0 + np.arange(2)[:, None] + np.arange(8)
    pool = torch.empty(images.numel() + 1, dtype=torch.float32)  # aligned, as a CUDA allocation is
    view = pool[1:].view(images.shape)  # 4 bytes in: contiguous, right dtype, not 256-byte aligned
    view.copy_(images)
    assert view.is_contiguous() and view.data_ptr() % 256 == 4
    np.testing.assert_array_equal(backend.infer_torch({"images": view})["logits"].numpy(), want)
    assert backend._context.address["images"] != view.data_ptr()
    aligned = torch.empty(tuple(images.shape), dtype=torch.float32)
    aligned.copy_(images)
    np.testing.assert_array_equal(backend.infer_torch({"images": aligned}, copy=False)["logits"].numpy(), want)
    assert backend._context.address["images"] == aligned.data_ptr()  # no copy where none is needed
    backend.close()


def test_fake_backend_runs_one_call_at_a_time(use_fake: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One Model shared by a server's threads (README: predict may be called from several at once):
    two calls on one execution context set each other's input shapes and buffers while the other's
    execute ran (TensorRT's context is not for concurrent use), so a call could answer with another's
    results. Calls now take turns; here thread B's call starts while A's execute is running and must
    not reach the context before A's is done."""
    import threading

    a_running, b_arrived, running, overlaps = threading.Event(), threading.Event(), [], []

    def on_call(kind: str) -> None:
        if running:
            overlaps.append(kind)
        if threading.current_thread().name == "B":
            b_arrived.set()
        elif kind == "execute" and threading.current_thread().name == "A":
            running.append(kind)
            a_running.set()
            b_arrived.wait(0.5)  # B's call gets this long to come in during A's execute
            running.clear()

    backend = fake_backend(use_fake, monkeypatch, tmp_path / "art", fake_engine("FLOAT", on_call))
    results: dict[str, np.ndarray] = {}

    def call(name: str, images: np.ndarray) -> None:
        results[name] = backend.infer({"images": images})["logits"]

    a = threading.Thread(target=call, name="A", args=("A", constant_images(2, 64, first=3.0)))
    b = threading.Thread(target=call, name="B", args=("B", constant_images(1, 96, first=7.0)))
    a.start()
    assert a_running.wait(10)
    b.start()
    a.join(10)
    b.join(10)
    assert overlaps == []
    np.testing.assert_array_equal(results["A"], 3.0 + np.arange(2)[:, None] + np.arange(8))
    np.testing.assert_array_equal(results["B"], 7.0 + np.arange(8)[None, :])
    backend.close()


def test_fake_backend_closed_is_an_input_error_as_every_backend_says(use_fake: Any, monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """README: after ``close()`` a call raises ``InputError`` ("… is closed"), as the ONNX Runtime and
    PyTorch backends do. The TensorRT backend raised a bare PvtDeployError ("was closed"), a failure
    of the tool (exit 1) that a server catching InputError for a closed model did not catch."""
    import torch

    backend = fake_backend(use_fake, monkeypatch, tmp_path / "art", fake_engine("FLOAT"))
    images = constant_images(1, 64)
    backend.close()
    backend.close()  # twice is once
    with pytest.raises(InputError, match="^this TensorRTBackend is closed$"):
        backend.infer({"images": images})
    with pytest.raises(InputError, match="^this TensorRTBackend is closed$"):
        backend.infer_torch({"images": torch.from_numpy(images)})


_LAYERS = [("conv1 + relu1", 0.5), ("{ForeignNode[/blocks.0/attn/MatMul.../blocks.3/Add]}", 2.0), ("conv2", 0.25),
           ("Reformatting CopyNode for Input Tensor 0 to conv1 + relu1", 0.05)]


@pytest.mark.parametrize("inspected", [
    [{"Name": "conv1 + relu1", "LayerType": "CaskConvolution"}, {"Name": "conv2", "LayerType": "CaskConvolution"},
     {"Name": _LAYERS[1][0], "LayerType": "Myelin"}],  # built with detailed profiling verbosity: layer types
    None,  # the default verbosity: names only
    RuntimeError("no inspector"),
])
def test_fake_profile_is_the_layer_times_tensorrt_reports(use_fake: Any, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, inspected: Any) -> None:
    """``bench --profile`` on an engine: an IProfiler on the execution context for the profiled calls (not the
    untimed one before them), taken off after; each layer's reported ms summed and given per call, grouped by
    the layer type where the engine inspector gives it, else each layer by its name."""
    engine = fake_engine("FLOAT", layers=_LAYERS, inspected=inspected)
    backend = fake_backend(use_fake, monkeypatch, tmp_path / "art", engine)
    profile = backend.profile({"images": constant_images(1, 64)}, 3)
    assert backend._context.profiler is None
    total = sum(ms for _, ms in _LAYERS)
    if isinstance(inspected, list):
        want = [("Myelin", 1, 2.0), ("CaskConvolution", 2, 0.75), (_LAYERS[3][0], 1, 0.05)]
    else:
        want = [(name, 1, ms) for name, ms in sorted(_LAYERS, key=lambda x: -x[1])]
    assert profile["calls"] == 3 and profile["total_ms"] == pytest.approx(total)
    assert [(op["op"], op["nodes"], op["ms"]) for op in profile["ops"]] == want
    assert [op["share"] for op in profile["ops"]] == pytest.approx([ms / total for _, _, ms in want])
    assert backend.infer({"images": constant_images(1, 64)})["logits"].shape == (1, 8)  # still runs, unprofiled
    backend.close()


def test_doctor_tensorrt_row_says_whether_tensorrt_can_start(use_fake: Any) -> None:
    """doctor's TensorRT row is 'ok' only where a Builder can be made (it said ok wherever the
    library imported), and calls a TensorRT 11 without the deprecated creation flag strongly typed,
    as build_engine does."""
    from pvt_deploy.doctor import _tensorrt

    use_fake(cuda=False)
    (row,) = _tensorrt()
    assert row.status == "missing" and row.version == "10.13.0.35" and row.info["usable"] is False
    assert "CUDA initialization failure with error: 35" in row.summary and "nvidia-smi" in (row.hint or "")
    use_fake(version="11.4.0.106", weak_flags=False, strongly_typed=False)
    (row,) = _tensorrt()
    assert row.status == "ok" and row.info["usable"] is True and row.info["strongly_typed"] is True
    assert row.summary.startswith("strongly typed networks")


def test_fake_build_with_rich_progress_bar(use_fake: Any, tmp_path: Path) -> None:
    import io

    from rich.console import Console

    use_fake()
    out = io.StringIO()
    with build_mod.rich_build_progress(Console(file=out, force_terminal=True, width=80)) as callback:
        build_engine(make_artifact(tmp_path / "art"), progress=callback)
    assert "Building engine" in out.getvalue()


@pytest.mark.parametrize("fmt", [["--format", "trt"], ["--format", "triton", "--triton-backend", "trt"]])
def test_engine_from_the_cpu_int8_flavour_is_refused_before_the_export(
        fmt: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--int8 --int8-flavour cpu`` with an engine to build: refused at once (exit 2, nothing written),
    not after tracing, calibration and the parity gate, whose export would then go unused."""
    from cli_run import run

    def no_export(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("exported before refusing")

    monkeypatch.setattr("pvt_deploy.export.onnx.export_onnx", no_export)
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--int8", "--int8-flavour", "cpu",
                       "-o", str(tmp_path / "x"), "--triton-repo", str(tmp_path / "repo"), *fmt)
    assert code == 2 and "--int8-flavour trt" in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "repo").exists()


def test_fake_infer_waits_for_the_callers_stream_before_it_rewrites_its_buffers(
        use_fake: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """infer() writes the backend's own buffers, which an earlier infer_torch(copy=False) handed to the caller
    ("valid until the next call"): work the caller queued on its stream to read them must come before they are
    written again. infer_torch ordered itself after the caller's stream; infer did not wait at all."""
    import torch

    backend = fake_backend(use_fake, monkeypatch, tmp_path / "art", fake_engine("FLOAT"))
    caller = types.SimpleNamespace(name="the caller's stream")
    order: list[str] = []
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: caller)
    monkeypatch.setattr(backend._stream, "wait_stream",
                        lambda other: order.append("wait for caller" if other is caller else "wait"))
    prepare = backend._prepare
    monkeypatch.setattr(backend, "_prepare", lambda shapes: (order.append("write buffers"), prepare(shapes))[1])
    logits = backend.infer({"images": constant_images(1, 64)})["logits"]
    np.testing.assert_array_equal(logits, 3.0 + np.arange(8)[None])
    assert order == ["wait for caller", "write buffers"]
    backend.close()
