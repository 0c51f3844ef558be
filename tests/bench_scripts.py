"""A script of ``benchmarks/`` loaded as a module in the test's process, for the benchmark tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(script: str, *, keep: bool = False) -> ModuleType:
    """``benchmarks/<script>.py`` as the module ``pvt_benchmarks_<script>`` (a name of its own: no clash with
    the ``common`` the scripts import). It is in ``sys.modules`` while it runs, as an import does (its
    dataclasses look their module up there); ``keep``: it stays there, and a later call gives that module."""
    name = f"pvt_benchmarks_{script}"
    if keep and name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    if not keep:
        del sys.modules[name]
    return module
