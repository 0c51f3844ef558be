"""What this CPU can do, read once from the operating system."""

from __future__ import annotations

import functools

__all__ = ["cpu_amx_int8", "cpu_flags", "cpu_int8_dot_product"]


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags as Linux names them in ``/proc/cpuinfo`` (``avx512_vnni``,
    ``amx_int8``, ...); ``None`` where they cannot be read (another OS, a sandbox)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_amx_int8() -> bool:
    """Does this CPU report AMX-INT8 (Intel Sapphire Rapids and later)? ``False`` when unknown."""
    return "amx_int8" in (cpu_flags() or ())


def cpu_int8_dot_product() -> bool | None:
    """Does this CPU have 8-bit dot-product instructions (x86 VNNI)? ``None``: cannot tell.

    Without them ONNX Runtime's x86 U8S8 kernels multiply pairs with ``vpmaddubsw``, whose 16-bit
    sums can saturate, and its 8-bit multiplies run no faster than FP32 FMAs; the CPU INT8 graphs
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
