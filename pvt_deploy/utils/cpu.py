"""What this CPU can do, read once from the operating system."""

from __future__ import annotations

import functools

__all__ = ["cpu_amx_int8", "cpu_flags"]


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
