"""What this CPU can do, read once from the operating system."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["INT8_PAYS", "available_memory", "cpu_amx_int8", "cpu_flags", "cpu_int8_dot_product", "int8_gemm_gain"]


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags as Linux names them in ``/proc/cpuinfo`` (``avx512_vnni``,
    ``amx_int8``, ...); ``None`` where they cannot be read (another OS, a sandbox)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def available_memory() -> int | None:
    """Bytes of memory this process can still take without swapping or being killed: Linux's
    ``MemAvailable``, or less where a cgroup (a container's ``--memory``) leaves less; ``None`` where
    it cannot be read (another OS). Read anew on each call: it changes as processes come and go."""
    free: list[int] = []
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            free += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:  # cgroup v2, then v1 ("max" or a huge number: no limit)
            with open(f"/sys/fs/cgroup/{limit}", encoding="utf-8") as f, open(f"/sys/fs/cgroup/{usage}", encoding="utf-8") as g:
                text = f.read().strip()
                if text != "max" and int(text) < 1 << 60:
                    free.append(max(0, int(text) - int(g.read().strip())))
                break
        except (OSError, ValueError):
            continue
    return min(free) if free else None


def cpu_amx_int8() -> bool:
    """Does this CPU report AMX-INT8 (Intel Sapphire Rapids and later)? ``False`` when unknown."""
    return "amx_int8" in (cpu_flags() or ())


def cpu_int8_dot_product() -> bool | None:
    """Does this CPU have 8-bit dot-product instructions (x86 VNNI)? ``None``: cannot tell.

    Without them ONNX Runtime's x86 U8S8 kernels multiply pairs with ``vpmaddubsw``, whose 16-bit
    sums can saturate, and its 8-bit multiplies run at 1-2x the FP32 rate (:func:`int8_gemm_gain`); the CPU INT8 graphs
    are exact there only with their weights re-based to uint8
    (:func:`pvt_deploy.export.optimize.unsigned_int8`). ARM CPUs use their dot-product path
    and are not affected.
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    flags = cpu_flags()
    if flags is None:
        return None
    return "avx512_vnni" in flags or "avx_vnni" in flags


#: 8-bit GEMMs at least this many times as fast as float32 ones make INT8 worth trying on a CPU
#: without VNNI (see :func:`int8_gemm_gain`): below it, INT8 runs at about FP32's speed.
INT8_PAYS = 1.25


@functools.cache
def int8_gemm_gain() -> float | None:
    """How many times as fast ONNX Runtime multiplies uint8 matrices as float32 ones on this CPU.

    Flags cannot tell: without VNNI, x86 runs 8-bit products with ``vpmaddwd`` on 16-bit values, at
    the FP32 FMA rate on a Zen 1 EPYC (``python benchmarks/ort_profile.py --roof``, two threads: 75
    against 70 GOP/s) but at twice it on a Zen 3 (252 against 123). So it is measured, once per
    process, on one thread: the exact U8U8 ``MatMulInteger`` (the kernel the CPU INT8 graphs use
    there, weights re-based to uint8) against ``MatMul`` on a 512x1024 by 1024x256 product, best of
    three each (50-130 ms in all; 1.4-1.6 on the Zen 3). ``None`` where it cannot be measured.
    """
    import time

    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        from pvt_deploy.utils import onnx_model

        rng = np.random.default_rng(0)
        m, k, n = 512, 1024, 256

        def session(int8: bool) -> tuple[Any, Any]:
            kind = TensorProto.UINT8 if int8 else TensorProto.FLOAT
            weight = rng.integers(0, 256, (k, n)).astype(np.uint8) if int8 else rng.standard_normal((k, n)).astype(np.float32)
            node = (helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"]) if int8
                    else helper.make_node("MatMul", ["a", "b"], ["y"]))
            inits = [numpy_helper.from_array(weight, "b")]
            if int8:
                inits += [numpy_helper.from_array(np.array(128, np.uint8), "za"),
                          numpy_helper.from_array(np.array(128, np.uint8), "zb")]
            graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", kind, [m, k])],
                                      [helper.make_tensor_value_info("y", TensorProto.INT32 if int8 else TensorProto.FLOAT,
                                                                     [m, n])], inits)
            model = onnx_model(graph, 13)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            s = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            a = rng.integers(0, 256, (m, k)).astype(np.uint8) if int8 else rng.standard_normal((m, k)).astype(np.float32)
            return s, a

        def best(s: Any, a: Any) -> float:
            s.run(None, {"a": a})
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                s.run(None, {"a": a})
                times.append(time.perf_counter() - t0)
            return min(times)

        return round(best(*session(False)) / best(*session(True)), 2)
    except Exception:  # noqa: BLE001 - a missing package or an odd build: the caller says "unknown"
        return None
