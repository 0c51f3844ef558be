"""What is installed and usable here: the library side of ``pvt-deploy doctor``.

Every probe answers "can pvt-deploy use this on this machine", not just "is a package present":
the CUDA row asks torch whether a device works, the TensorRT row asks for the real library (not the
type stubs), and the H.264 row opens each encoder, because FFmpeg lists ``h264_nvenc`` in builds that
cannot use it without an NVIDIA driver. A probe never raises; a broken package is reported as such.
"""

from __future__ import annotations

import fractions
import importlib.util
import platform
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Literal

__all__ = ["H264_ENCODERS", "OPTIONAL_PARTS", "Check", "collect", "render_table", "required_parts", "shortfall",
           "to_json", "verdict"]

Status = Literal["ok", "warn", "missing", "error"]

# Encoders pvt-deploy's video sink can use, in order of preference per machine kind.
H264_ENCODERS = ("h264_nvenc", "libx264", "libopenh264")


@dataclass
class Check:
    """One row: a component, whether it is usable, and what a user should do if not."""

    key: str  # stable id for --json consumers
    name: str  # shown in the table
    status: Status
    version: str | None = None
    summary: str = ""
    hint: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _guard(key: str, name: str, probe: Callable[[], list[Check]]) -> list[Check]:
    try:
        return probe()
    except Exception as e:  # a probe must never take doctor down with it
        return [Check(key, name, "error", summary=f"probe failed: {type(e).__name__}: {e}")]


# --------------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------------


def _python() -> list[Check]:
    from pvt_deploy import __version__

    return [
        Check("python", "Python", "ok", platform.python_version(),
              f"{sys.executable} ({platform.system()} {platform.machine()})",
              info={"executable": sys.executable, "platform": platform.platform()}),
        Check("pvt_deploy", "pvt-deploy", "ok", __version__),
    ]


def _numpy() -> list[Check]:
    import numpy

    return [Check("numpy", "NumPy", "ok", numpy.__version__)]


def _torch() -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("torch", "PyTorch", "missing", summary="not installed",
                      hint="pip install torch (CPU: pip install torch --index-url https://download.pytorch.org/whl/cpu)"),
                Check("cuda", "CUDA (torch)", "missing", summary="needs PyTorch")]
    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    rows = [torch_numpy(torch) or Check("torch", "PyTorch", "ok", torch.__version__, build,
                                         info={"cuda_build": torch.version.cuda})]
    if not torch.cuda.is_available():
        rows.append(Check("cuda", "CUDA (torch)", "missing",
                          summary="no usable CUDA device" + ("" if torch.version.cuda else " (CPU build of torch)"),
                          hint="the GPU needs its NVIDIA driver (in Docker: docker run --gpus all)" if torch.version.cuda
                          else "a CUDA build of torch, on a machine with an NVIDIA GPU: pip uninstall -y torch && "
                               "pip install torch (PyPI's Linux x86-64 wheel is one; pytorch.org lists the others)",
                          info={"available": False, "devices": []}))
        return rows
    devices = []
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        props = torch.cuda.get_device_properties(i)
        devices.append({"index": i, "name": torch.cuda.get_device_name(i),
                        "compute_capability": f"{major}.{minor}",
                        "memory_gib": round(props.total_memory / 2**30, 1)})
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    summary = "; ".join(f"cuda:{d['index']} {d['name']} (sm {d['compute_capability']}, {d['memory_gib']} GiB)"
                        for d in devices)
    rows.append(Check("cuda", "CUDA (torch)", "ok", torch.version.cuda, summary,
                      info={"available": True, "devices": devices, "cudnn": cudnn}))
    return rows


def torch_numpy(torch: Any) -> Check | None:
    """The PyTorch row when torch cannot exchange arrays with this NumPy, else None.

    A torch built against NumPy 1.x (the Jetson AI Lab wheels for CUDA <= 12.6) imports under NumPy 2 with
    a warning only, and then every ``torch.from_numpy`` / ``Tensor.numpy`` raises "Numpy is not
    available": the TensorRT and PyTorch backends and export's parity check all fail."""
    import numpy

    try:
        torch.from_numpy(numpy.zeros(1))
        return None
    except Exception as e:
        newer = int(numpy.__version__.split(".")[0]) >= 2
        return Check("torch", "PyTorch", "error", torch.__version__,
                     f"cannot exchange arrays with NumPy {numpy.__version__} ({type(e).__name__}: {e})",
                     hint="pip install 'numpy<2' (this torch was built against NumPy 1.x)" if newer
                     else "pip install -U numpy (this torch was built against a newer NumPy)",
                     info={"cuda_build": torch.version.cuda, "numpy": numpy.__version__})


def _onnxruntime() -> list[Check]:
    try:
        import onnxruntime
    except ImportError:
        return [Check("onnxruntime", "ONNX Runtime", "missing", summary="not installed",
                      hint="pip install onnxruntime (or onnxruntime-gpu on an NVIDIA machine)")]
    providers = list(onnxruntime.get_available_providers())
    dist = "onnxruntime-gpu" if _dist_version("onnxruntime-gpu") else "onnxruntime"
    info: dict[str, Any] = {"distribution": dist, "providers": providers, "device": onnxruntime.get_device()}
    unused: dict[str, str] = {}  # a provider listed that cannot run here: why, marked beside its name
    (cuda,) = _guard("onnxruntime_cuda", _ORT_CUDA, lambda: [_onnxruntime_cuda(providers)])
    if "CUDAExecutionProvider" in providers:
        # onnxruntime-gpu lists it whether or not it can start here (no GPU, no cuDNN, another CUDA): the row below says
        info["cuda_provider_usable"] = cuda.status == "ok"
        if cuda.status != "ok":
            unused["CUDAExecutionProvider"] = cuda.info.get("unused", "probe failed")
    if "TensorrtExecutionProvider" in providers:
        from pvt_deploy.runtimes.ort_providers import tensorrt_libraries_load

        # onnxruntime-gpu lists it whether or not TensorRT is installed (seen on an H200 without it), and whether or
        # not the CUDA provider starts, whose libraries (CUDA, cuDNN) and GPU it runs on: its reason is beside it
        lacks = [why for why, missing in (("no TensorRT libraries", not tensorrt_libraries_load()),
                                           ("needs the CUDA provider", cuda.status != "ok")) if missing]
        info["tensorrt_provider_usable"] = not lacks
        if lacks:
            unused["TensorrtExecutionProvider"] = ", ".join(lacks)
    short = ", ".join(p.removesuffix("ExecutionProvider") + (f" (unused: {unused[p]})" if p in unused else "")
                      for p in providers)
    rows = [Check("onnxruntime", "ONNX Runtime", "ok", onnxruntime.__version__, f"{dist}; providers: {short}",
                  info=info), cuda]
    from pvt_deploy.utils.cpu import INT8_PAYS, cpu_amx_int8, cpu_int8_dot_product, int8_gemm_gain

    dot = cpu_int8_dot_product()
    if dot is False:
        gain = int8_gemm_gain()  # measured (~0.1 s): CPUs without VNNI differ
        rate = f"; 8-bit GEMMs {gain:.1f}x FP32's rate here" if gain is not None else ""
        exact = "no VNNI: model.int8.onnx runs exact (weights re-based to uint8 at load)"
        if gain is not None and gain >= INT8_PAYS:
            rows.append(Check("cpu_int8", "CPU INT8", "ok", summary=f"{exact}{rate}: faster where GEMMs dominate",
                              hint="compare model.onnx and model.int8.onnx with pvt-deploy bench",
                              info={"vnni": False, "int8_gemm_gain": gain}))
        else:
            rows.append(Check("cpu_int8", "CPU INT8", "warn", summary=f"{exact} at about FP32's speed, not faster{rate}",
                              hint="use model.onnx (FP32) on this CPU, or INT8 on a GPU",
                              info={"vnni": False, "int8_gemm_gain": gain}))
    else:
        summary = ("VNNI + AMX (conv weights re-based at load)" if cpu_amx_int8()
                   else "VNNI / dot-product" if dot else "unknown CPU flags")
        rows.append(Check("cpu_int8", "CPU INT8", "ok", summary=summary))
    return rows


_ORT_CUDA = "ONNX Runtime CUDA"


def _onnxruntime_cuda(providers: list[str]) -> Check:
    """The row of ONNX Runtime's CUDA execution provider: ``ok`` only where a session of a one-node graph starts on
    it and runs (:func:`~pvt_deploy.runtimes.ort_providers.probe_cuda_provider`, which ``infer``'s choice of
    providers asks too). ``onnxruntime-gpu`` lists the provider with or without a GPU, cuDNN or the CUDA it was
    built for; a session asked for it then logs why it cannot start and runs on the CPU. Where there is no CUDA
    device (from the driver) no session is made."""
    from pvt_deploy.runtimes.ort_providers import CUDA, probe_cuda_provider

    if CUDA not in providers:
        return Check("onnxruntime_cuda", _ORT_CUDA, "missing", summary="this onnxruntime has no CUDA provider (a CPU build)",
                     hint="pip uninstall -y onnxruntime && pip install onnxruntime-gpu (on a machine with an NVIDIA GPU)",
                     info={"listed": False})
    probe = probe_cuda_provider(0)
    info: dict[str, Any] = {"listed": True, "devices": probe.devices}
    if probe.devices:  # a session was made
        info.update(session_providers=probe.session_providers, log=probe.log or None)
    if probe.problem is None:
        return Check("onnxruntime_cuda", _ORT_CUDA, "ok",
                     summary=f"a session runs on {CUDA} (device 0 of {probe.devices})", info=info)
    return Check("onnxruntime_cuda", _ORT_CUDA, "missing", summary=probe.problem, hint=probe.hint,
                 info={**info, "unused": probe.unused})


def _tensorrt() -> list[Check]:
    from pvt_deploy.errors import BackendUnavailableError
    from pvt_deploy.runtimes.tensorrt import create_trt, require_tensorrt, typing_support

    try:
        trt = require_tensorrt()
    except BackendUnavailableError as e:  # its hint: how to install it, or why an installed one does not load
        return [Check("tensorrt", "TensorRT", "missing", summary=str(e.args[0]), hint=e.hint)]
    strongly, flags = typing_support(trt)  # as build_engine decides
    fp16_flag = "FP16" in flags
    info = {"strongly_typed": strongly, "builder_fp16_flag": fp16_flag,
            "progress_monitor": hasattr(trt, "IProgressMonitor")}
    try:  # the library loads; whether it can start on this machine's GPU and driver is another matter
        create_trt("Builder")
    except BackendUnavailableError as e:
        return [Check("tensorrt", "TensorRT", "missing", str(trt.__version__), str(e.args[0]), hint=e.hint,
                      info={**info, "usable": False})]
    summary = ("strongly typed networks" if strongly else "no strongly typed networks") + \
              ("; FP16/INT8 builder flags" if fp16_flag else "; precision from the ONNX only")
    return [Check("tensorrt", "TensorRT", "ok", str(trt.__version__), summary, info={**info, "usable": True})]


#: The frame size each H.264 encoder is opened for: hardware encoders refuse tiny frames, which would read as
#: "unusable". It is one size: a hardware encoder's limits are its GPU's (NVENC's width and height range), so one that
#: opens here may still refuse a video's size, which ``infer`` (codec auto) then writes with the next encoder that opens
#: at it, with a warning (io.sinks.VideoWriter); the row says so.
_PROBE_SIZE = (256, 256)


def _encoder_usable(av: Any, name: str) -> tuple[bool, str]:
    """Open ``name`` and encode one frame of :data:`_PROBE_SIZE`: listing a codec does not mean its hardware/library
    is there. (True, "encodes 256x256") where it does, else (False, why)."""
    import numpy as np

    width, height = _PROBE_SIZE
    try:
        ctx = av.CodecContext.create(name, "w")
    except Exception as e:
        return False, f"not in this FFmpeg build ({type(e).__name__})"
    try:
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = fractions.Fraction(1, 25)
        ctx.open()
        black = np.zeros((height, width, 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(black, format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        ctx.encode(frame)
        ctx.encode(None)
        return True, f"encodes {width}x{height}"
    except Exception as e:
        return False, f"cannot open ({type(e).__name__}: {e})"


def _pyav(probe_encoders: bool) -> list[Check]:
    try:
        import av
    except ImportError:
        return [Check("av", "PyAV", "missing", summary="not installed (needed to write H.264 video)",
                      hint="pip install av")]
    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    rows = [Check("av", "PyAV", "ok", av.__version__, f"FFmpeg {ffmpeg}" if ffmpeg else "",
                  info={"ffmpeg": ffmpeg})]
    if not probe_encoders:
        return rows
    results = {name: _encoder_usable(av, name) for name in H264_ENCODERS}
    usable = [n for n, (ok, _) in results.items() if ok]
    size = "x".join(map(str, _PROBE_SIZE))
    hardware = [n for n in usable if n.endswith("_nvenc")]
    limits = ""
    if hardware:  # infer (codec auto) writes a video of a size it refuses with the next encoder that opens
        after = [n for n in usable if n not in hardware]
        limits = f" ({', '.join(hardware)}: a size past its GPU's limits " + (
            f"is written with {after[0]} instead, with a warning)" if after else
            "cannot be written: no other encoder opens)")
    rows.append(Check(
        "h264_encoders", "H.264 encoders", "ok" if usable else "missing",
        summary=f"opened at {size}: " + ", ".join(f"{n} {'yes' if ok else 'no'}" for n, (ok, _) in results.items())
        + limits,
        hint=None if usable else "install a PyAV wheel with libx264 (pip install -U av)",
        info={"usable": usable, "probe_size": list(_PROBE_SIZE), "probes": {n: why for n, (_, why) in results.items()}}))
    return rows


def _opencv() -> list[Check]:
    try:
        import cv2
    except ImportError:
        return [Check("opencv", "OpenCV", "missing", summary="not installed", hint="pip install opencv-python-headless")]
    cuda_devices = 0
    if hasattr(cv2, "cuda"):
        try:
            cuda_devices = int(cv2.cuda.getCudaEnabledDeviceCount())
        except Exception:
            cuda_devices = 0
    return [Check("opencv", "OpenCV", "ok", cv2.__version__,
                  f"CUDA devices: {cuda_devices}" if cuda_devices else "CPU build",
                  info={"cuda_devices": cuda_devices})]


#: Components whose absence is a "warn" labelled "optional" in the table.
_OPTIONAL = {"tritonclient"}


def _packages() -> list[Check]:
    rows = []
    for key, name, module, dist, why, pip in (
        ("onnx", "onnx", "onnx", "onnx", "export", "onnx"),
        ("onnxslim", "onnxslim", "onnxslim", "onnxslim", "graph simplification at export", "onnxslim"),
        ("onnxscript", "onnxscript", "onnxscript", "onnxscript", "the dynamo ONNX exporter", "onnxscript"),
        ("tritonclient", "tritonclient", "tritonclient", "tritonclient", "the Triton backend (optional)",
         "'tritonclient[http,grpc]'"),  # quoted: zsh reads the brackets as a glob
    ):
        version = _dist_version(dist)
        if version is None or importlib.util.find_spec(module) is None:
            rows.append(Check(key, name, "warn" if key in _OPTIONAL else "missing",
                              summary=f"not installed (for {why})", hint=f"pip install {pip}"))
        else:
            rows.append(Check(key, name, "ok", version, f"for {why}"))
    return rows


#: A requirement another distribution of the same module meets (a user's opencv-python for our
#: opencv-python-headless, onnxruntime-gpu for onnxruntime): the first one installed is compared, and
#: named in the pip install that mends it (installing ours beside it would put two over one module).
_ALTERNATIVES = {
    "opencv-python-headless": ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                               "opencv-contrib-python-headless"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
}
#: The table row a requirement belongs to; the others get a row of their own only when unmet.
_ROW_OF = {"numpy": "numpy", "torch": "torch", "onnxruntime": "onnxruntime", "onnxruntime-gpu": "onnxruntime",
           "tensorrt": "tensorrt", "av": "av", "onnx": "onnx", "onnxslim": "onnxslim", "onnxscript": "onnxscript",
           "tritonclient": "tritonclient", **dict.fromkeys(_ALTERNATIVES["opencv-python-headless"], "opencv")}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.*))?$")
_SPEC = re.compile(r"^(>=|<=|==|!=|~=|<|>)\s*([0-9][0-9A-Za-z.*+!-]*)$")


def _numbers(version: str) -> tuple[int, ...]:
    """The numeric release of a version string as written (``2.13.0+cpu`` -> (2, 13, 0))."""
    match = re.match(r"\d+(?:\.\d+)*", version.split("!")[-1].strip())
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def _release(version: str) -> tuple[int, ...]:
    """:func:`_numbers` with trailing zeros trimmed, so that 1.19 and 1.19.0 compare equal."""
    parts = list(_numbers(version))
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _starts_with(version: str, prefix: tuple[int, ...]) -> bool:
    """Whether the release of ``version`` begins with ``prefix`` (1.0 begins with (1, 0, 0) too)."""
    numbers = _numbers(version) + (0,) * len(prefix)
    return numbers[:len(prefix)] == prefix


def _meets(version: str, spec: str) -> bool:
    """Whether ``version`` meets ``spec`` (``>=1.19,<12``), by release numbers (a pre-release counts as
    its release: a doctor that flags what is close to right is worse than one that misses it)."""
    have = _release(version)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _SPEC.match(part)
        if match is None:
            continue  # a form we do not read: not held against the installation
        op, wanted = match.groups()
        if wanted.endswith(".*"):  # ==1.2.*: the release starts with 1.2
            if _starts_with(version, _numbers(wanted[:-2])) != (op == "=="):
                return False
            continue
        want = _release(wanted)
        if op == "~=" and not _starts_with(version, _numbers(wanted)[:-1]):  # ~=1.4.2: >=1.4.2, ==1.4.*
            return False
        if not {">=": have >= want, "<=": have <= want, "==": have == want, "!=": have != want,
                "~=": have >= want, "<": have < want, ">": have > want}[op]:
            return False
    return True


def _editable_requirements() -> list[str] | None:
    """An editable install's requirements as its source's ``pyproject.toml`` declares them now, in the
    metadata's form (``name>=1; extra == "gpu"``): the install's own metadata was written when it was
    installed, so a dependency that a ``git pull`` added since (safetensors) went unsaid. None for an
    install from a wheel, a source that cannot be read, or a Python without ``tomllib`` (3.10)."""
    import json
    import urllib.parse
    import urllib.request
    from pathlib import Path

    try:
        tomllib = importlib.import_module("tomllib")  # by name: mypy checks this module as Python 3.10's
    except ImportError:  # Python 3.10
        return None
    try:
        direct = json.loads(metadata.distribution("pvt-deploy").read_text("direct_url.json") or "{}")
        if not (isinstance(direct, dict) and direct.get("dir_info", {}).get("editable")
                and str(direct.get("url", "")).startswith("file://")):
            return None
        root = Path(urllib.request.url2pathname(urllib.parse.urlsplit(direct["url"]).path))
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        declared = [str(r) for r in project.get("dependencies", [])]
        for extra, requirements in project.get("optional-dependencies", {}).items():
            for line in requirements:  # its own marker bracketed: "a or b and extra" is "a or (b and extra)"
                requirement, _, marker = str(line).partition(";")
                declared.append(f'{requirement.strip()}; {f"({marker.strip()}) and " if marker.strip() else ""}'
                                f'extra == "{extra}"')
    except (metadata.PackageNotFoundError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return declared


def _marker_applies(marker: str, extra: str) -> bool | str:
    """Whether a requirement's environment marker holds here, judged as pip judges it, ``extra`` being the
    extra taken as installed ("" for a core requirement); where it cannot be judged, why not: ``packaging``
    (which onnxruntime requires, pvt-deploy does not, and :mod:`importlib.metadata` does not evaluate
    markers) is not importable and the marker says more than ``extra == "..."``, or it does not parse."""
    try:
        from packaging.markers import Marker
    except ImportError:
        only_extra = re.fullmatch(r"""\s*\(?\s*extra\s*==\s*["'][^"']+["']\s*\)?\s*""", marker)
        return True if only_extra else "the packaging module that reads markers is not importable"
    try:
        return bool(Marker(marker).evaluate({"extra": extra}))
    except Exception as e:  # InvalidMarker, UndefinedComparison...: a marker this packaging does not read
        return f"packaging cannot read it ({type(e).__name__})"


def _requirements() -> list[tuple[str, str, str | None, str | None]]:
    """pvt-deploy's requirements as (distribution, specifier, version installed or None, its marker and why
    it could not be judged here, or None), the distribution being the alternative installed where one stands in
    (:data:`_ALTERNATIVES`): the core ones, and those of an extra whose package is installed (tensorrt,
    onnxruntime-gpu, tritonclient), whose environment marker holds here (:func:`_marker_applies`; one that
    cannot be judged is kept, and says so), as the install's metadata and, for an editable install,
    its source's pyproject.toml declare them; none when pvt-deploy runs uninstalled (no metadata to read)."""
    try:
        declared = metadata.requires("pvt-deploy") or []
    except metadata.PackageNotFoundError:
        return []
    declared = declared + [r for r in _editable_requirements() or [] if r not in declared]  # what a git pull brought
    out = []
    seen = set()
    for line in declared:
        match = _REQUIREMENT.match(line)
        if match is None:
            continue
        dist, spec, marker = match.group(1).lower().replace("_", "-"), match.group(2), match.group(3)
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", marker or "")
        if extra is not None and extra.group(1) == "dev":
            continue  # a development tool
        found = next(((name, v) for name in _ALTERNATIVES.get(dist, (dist,)) if (v := _dist_version(name))), None)
        if extra is not None and found is None:
            continue  # an extra that is not installed is not asked for
        applies = _marker_applies(marker, extra.group(1) if extra else "") if marker else True
        if applies is False:
            continue  # a pin for another Python, platform or machine
        installed, version = found or (dist, None)
        # one requirement however it is spelled: onnxruntime-gpu, for onnxruntime and for the gpu extra; the
        # metadata's "<12,>=10.0" for pyproject.toml's ">=10.0,<12" (an editable install reads both)
        key = (installed, frozenset(c.replace(" ", "") for c in spec.split(",") if c.strip()), version)
        if key not in seen:
            seen.add(key)
            unjudged = f"{marker}: not judged here, {applies}" if isinstance(applies, str) else None
            out.append((installed, spec, version, unjudged))
    return out


def _check_requirements(checks: list[Check]) -> list[Check]:
    """Mark the rows whose package is older (or newer) than pvt-deploy declares, or missing: an
    install with ``--no-deps``, an editable install that a ``git pull`` moved past, a system package
    found first. A requirement without a row of its own gets one only when it is not met."""
    rows = {c.key: c for c in checks}
    added = []
    for dist, spec, version, unjudged in _requirements():
        if version is not None and _meets(version, spec):
            continue
        wanted = f"{dist}{spec}"
        summary = (f"{dist} {version} installed; pvt-deploy needs {spec}" if version is not None
                   else f"{dist} is not installed; pvt-deploy needs it ({spec or 'any version'})")
        if unjudged:
            summary += f" (where {unjudged})"
        hint = f"pip install '{wanted}'"
        row = rows.get(_ROW_OF.get(dist, ""))
        if row is None:
            added.append(Check(dist, dist, "missing" if version is None else "error", version, summary, hint=hint))
        elif row.status != "missing":  # a row that already says the package is missing says enough
            row.status, row.hint = "error", hint
            row.summary = summary + (f"; {row.summary}" if row.summary else "")
    return checks + added


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def collect(*, probe_encoders: bool = True) -> list[Check]:
    """Probe everything, in display order. ``probe_encoders=False`` skips opening video encoders."""
    checks: list[Check] = []
    checks += _guard("python", "Python", _python)
    checks += _guard("numpy", "NumPy", _numpy)
    checks += _guard("torch", "PyTorch", _torch)
    checks += _guard("onnxruntime", "ONNX Runtime", _onnxruntime)
    checks += _guard("tensorrt", "TensorRT", _tensorrt)
    checks += _guard("av", "PyAV", lambda: _pyav(probe_encoders))
    checks += _guard("opencv", "OpenCV", _opencv)
    checks += _guard("packages", "packages", _packages)
    try:
        return _check_requirements(checks)
    except Exception as e:  # as a probe: never takes doctor down
        return checks + [Check("requirements", "requirements", "error", summary=f"probe failed: {type(e).__name__}: {e}")]


#: Parts a machine may lack with pvt-deploy still whole (a GPU for PyTorch, ONNX Runtime's CUDA provider, TensorRT, a
#: working H.264 encoder, tritonclient, CPU INT8 that pays): one missing is no failure unless required (``doctor
#: --require``); every other row is a part pvt-deploy needs (its own requirements), which fails where it is missing
#: or broken.
OPTIONAL_PARTS = ("cuda", "onnxruntime_cuda", "tensorrt", "h264_encoders", "tritonclient", "cpu_int8")
#: Other words for parts of :data:`OPTIONAL_PARTS` in ``--require``. ``gpu`` answers "does pvt-deploy run on this
#: GPU": every runtime it runs on a GPU with, PyTorch's CUDA (``--backend torch``) and ONNX Runtime's CUDA provider (an
#: export's ``model.onnx``, which ``infer --model EXPORT`` runs where no engine is). PyTorch's CUDA beside a CPU
#: onnxruntime runs ``--backend torch`` on the GPU and an export on the CPU: not ``gpu``, which ``cuda`` (and
#: ``onnxruntime_cuda``) name alone. TensorRT is named on its own.
_PART_WORDS = {"gpu": ("cuda", "onnxruntime_cuda"), "ort_cuda": ("onnxruntime_cuda",), "trt": ("tensorrt",),
               "triton": ("tritonclient",), "h264": ("h264_encoders",)}


def _words(require: Sequence[str]) -> list[str]:
    """The names ``--require`` gives, in order: comma-separated, repeatable, any case, blanks left out."""
    return [name for text in require for n in text.split(",") if (name := n.strip().lower())]


def required_parts(require: Sequence[str], *, probe_encoders: bool = True) -> list[str]:
    """The row keys that ``require`` names (``--require gpu,tensorrt``: comma-separated, repeatable, any case;
    a key of :data:`OPTIONAL_PARTS` or one of its other words: gpu for cuda and onnxruntime_cuda both (pvt-deploy's
    PyTorch and ONNX Runtime both on the GPU), ort_cuda, trt, triton, h264). A name that is none of them, or the encoders required where they are not opened
    (``probe_encoders=False``), is an :class:`~pvt_deploy.errors.InputError`, which names the arguments as the
    caller gave them (:func:`~pvt_deploy.errors.option`: ``require``, or ``doctor``'s ``--require``)."""
    from pvt_deploy.errors import InputError, option, switched_on

    keys: list[str] = []
    for name in _words(require):
        parts = _PART_WORDS.get(name, (name,))
        if not set(parts) <= set(OPTIONAL_PARTS):
            raise InputError(f"{option('require')} {name}: choose from {', '.join(OPTIONAL_PARTS)} "
                             f"(or {', '.join(_PART_WORDS)}); the other parts are always required")
        if "h264_encoders" in parts and not probe_encoders:
            raise InputError(f"{option('require')} {name} needs the encoders opened ({switched_on('probe_encoders')})")
        keys += [key for key in parts if key not in keys]
    return keys


def shortfall(lacking: list[Check], require: Sequence[str]) -> tuple[str, str | None]:
    """What ``--require`` asked for and this machine cannot use, as (the parts, how to get them) for one line: each
    lacking row of :func:`verdict` with its status and why (its summary), the word of ``require`` that named it
    where that word is several parts (``gpu's CUDA (torch) missing: ...``), and the rows' hints (the
    ``pip install`` of onnxruntime-gpu for a CPU onnxruntime), each after its row's name where there are several."""
    words = _words(require)
    said = []
    for c in lacking:
        of = next((w for w in words if len(_PART_WORDS.get(w, ())) > 1 and c.key in _PART_WORDS[w]), None)
        whose = f"{of}'s " if of else ""
        said.append(f"{whose}{c.name} {c.status}" + (f": {c.summary}" if c.summary else ""))
    hints = [(c.name, c.hint) for c in lacking if c.hint]
    hint = "; ".join(h if len(hints) == 1 else f"{name}: {h}" for name, h in hints) or None
    return "; ".join(said), hint


def verdict(checks: list[Check], require: Sequence[str] = ()) -> tuple[list[Check], list[Check]]:
    """(broken, lacking): the rows of parts pvt-deploy needs that are missing or do not work (``error`` rows,
    a version it does not take among them; ``missing`` ones not in :data:`OPTIONAL_PARTS`), and the rows of
    the parts named in ``require`` (:func:`required_parts`) that are not ``ok`` here. Both empty: healthy."""
    broken = [c for c in checks if c.status == "error" or (c.status == "missing" and c.key not in OPTIONAL_PARTS)]
    lacking = [c for c in checks if c.key in require and c.status != "ok" and c not in broken]
    return broken, lacking


def to_json(checks: list[Check], require: Sequence[str] = ()) -> dict[str, Any]:
    """``{"components": {key: {...}}, "verdict": {...}}``: the machine-readable form of ``pvt-deploy doctor --json``.
    The verdict is :func:`verdict`'s, by row key: ``{"ok": no part broken or lacking, "broken": [...], "lacking":
    [...], "required": the keys of ``require``}``, so that a script need not read the exit code's line on stderr."""
    broken, lacking = verdict(checks, require)
    return {"components": {c.key: {k: v for k, v in asdict(c).items() if k != "key"} for c in checks},
            "verdict": {"ok": not broken and not lacking, "broken": [c.key for c in broken],
                        "lacking": [c.key for c in lacking], "required": list(require)}}


def render_table(checks: list[Check]) -> Any:
    """A Rich table of the checks (returned, not printed, so callers pick the console)."""
    from rich.table import Table
    from rich.text import Text

    marks = {"ok": ("ok", "green"), "warn": ("optional", "yellow"), "missing": ("missing", "red"),
             "error": ("error", "red")}
    table = Table(title="pvt-deploy doctor", title_justify="left", show_lines=False)
    table.add_column("component", style="bold")
    table.add_column("status")
    table.add_column("version")
    table.add_column("details", overflow="fold")
    for c in checks:
        label, colour = marks[c.status]
        if c.status == "warn" and c.key not in _OPTIONAL:  # e.g. CPU INT8 that does not pay: not "optional"
            label = "warn"
        details = Text(c.summary)
        if c.hint and c.status != "ok":
            details.append(("\n" if c.summary else "") + f"-> {c.hint}", style="dim")
        table.add_row(c.name, Text(label, style=colour), c.version or "-", details)
    return table
