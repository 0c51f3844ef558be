"""The figures ``benchmarks/speed.py`` prints, checked on hand-made inputs (no model runs): the order the
variants are timed in."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def common() -> ModuleType:
    """``benchmarks/common.py``, loaded under a name of its own (as in test_benchmarks_cli)."""
    name = "pvt_benchmarks_common"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH / "common.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 9])
def test_interleaved_runs_each_variant_right_after_each_other_equally_often(common: ModuleType, n: int) -> None:
    """The order rotated (ABCD, BCDA, ...), which kept each variant's predecessor: in speed.py's CPU
    suite ``onnx`` ran right after ``torch`` in 3 rounds of 4 and never after ``onnx-plain`` or
    ``onnx-int8``, so whatever PyTorch leaves behind (cold caches, OpenMP workers spinning down) fell on
    ``onnx`` alone, the variant the FP32 target is judged by."""
    names = [f"v{i}" for i in range(n)]
    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in names}
    cycle = 2 * n  # a whole number of cycles for an even n (n rounds) and an odd one (2n)
    timings = common.interleaved(runs, rounds=cycle, warmup=1, gap_s=0)
    assert calls[:n] == names  # the warm-up calls, not timed
    assert all(len(timings[name].seconds) == cycle for name in names)
    rounds = [calls[n + i * n: n + (i + 1) * n] for i in range(cycle)]
    assert all(sorted(r) == names for r in rounds)  # each variant once a round
    after = Counter((a, b) for r in rounds for a, b in zip(r, r[1:], strict=False))
    assert set(after) == {(a, b) for a in names for b in names if a != b}
    assert len(set(after.values())) == 1, after  # each right after each other one equally often
    places = Counter((name, r.index(name)) for r in rounds for name in r)
    assert len(places) == n * n and len(set(places.values())) == 1, places
