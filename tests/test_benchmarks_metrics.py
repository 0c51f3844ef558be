"""The figures ``benchmarks/speed.py`` prints, checked on hand-made inputs (no model runs): the order the
variants are timed in, and the agreement cell."""

from __future__ import annotations

from collections import Counter
from types import ModuleType

import bench_scripts
import numpy as np
import pytest


@pytest.fixture(scope="module")
def common() -> ModuleType:
    """``benchmarks/common.py``, loaded under a name of its own (as in test_benchmarks_cli)."""
    return bench_scripts.load("common", keep=True)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 9])
def test_interleaved_runs_each_variant_right_after_each_other_equally_often(common: ModuleType, n: int,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The order rotated (ABCD, BCDA, ...), which kept each variant's predecessor: in speed.py's CPU
    suite ``onnx`` ran right after ``torch`` in 3 rounds of 4 and never after ``onnx-plain`` or
    ``onnx-int8``, so whatever PyTorch leaves behind (cold caches, OpenMP workers spinning down) fell on
    ``onnx`` alone, the variant the FP32 target is judged by."""
    # interleaved() collects garbage after every round, so that no timed call pays for it: nothing to do
    # with the order checked here, and 0.1-0.25 s each in a test process holding the suite's objects
    monkeypatch.setattr(common.gc, "collect", lambda generation=2: 0)
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


def _detector_outputs(scores: list[float], boxes: list[list[float]]) -> dict[str, np.ndarray]:
    """Raw outputs of a one-image, two-class detector: one candidate per box, class 0 scoring ``scores``."""
    s = np.zeros((1, len(scores), 2), np.float32)
    s[0, :, 0] = scores
    return {"boxes": np.asarray([boxes], np.float32).reshape(1, -1, 4), "scores": s}


def test_speed_prints_no_f1_where_no_detection_was_compared(common: ModuleType) -> None:
    """speed.py printed ``F1 1.000`` where neither run had a detection it must reproduce (every score
    under 0.05 + margin): an F1 of 1.0 that compared nothing. The export's and check's tables say
    ``no dets`` there; speed.py now says it too, and the figures that did compare something are kept."""
    from pvt_deploy.tasks.preprocess import Letterbox

    metas = [[Letterbox((64, 64), (64, 64), (64, 64))]]
    post = {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}
    box, moved = [8.0, 8.0, 28.0, 28.0], [16.6, 8.0, 36.6, 28.0]  # moved: IoU 0.40 with box
    quiet = _detector_outputs([0.01, 0.06], [box, [40.0, 40.0, 60.0, 60.0]])
    nothing = common.agreement("detect", post, [quiet], [quiet], metas)
    assert common.agreement_text(nothing) == "F1 none clear cos 1.0000"  # the 0.06 one is within the margin
    assert nothing["detection_f1"] == 1.0 and nothing["required"] == 0 == nothing["required_test"]
    silent = _detector_outputs([0.01], [box])
    assert common.agreement_text(common.agreement("detect", post, [silent], [silent], metas)).startswith("F1 no dets")
    found = _detector_outputs([0.9], [box])
    assert common.agreement_text(common.agreement("detect", post, [found], [found], metas)).startswith("F1 1.000 ")
    off = common.agreement("detect", post, [found], [_detector_outputs([0.9], [moved])], metas)
    assert off["detection_f1"] == 0.0 and common.agreement_text(off).startswith("F1 0.000 ")
    lost = common.agreement("detect", post, [found], [silent], metas)  # the candidate found nothing
    assert lost["recall"] == 0.0 and common.agreement_text(lost).startswith("F1 0.000 ")


def test_classifier_top1_is_the_same_best_class(common: ModuleType) -> None:
    """speed.py's ``top1`` was the parity gate's, which passes a candidate whose best class is within 0.02
    probability of the reference's best. The benchmarks' seeded classifiers spread 1000 classes thin
    (on the twelve pictures, 2026-12-06, the best class at 0.010-0.035; for pvt_small-cls all of the top 5
    within 0.02 of it): a candidate picking the reference's second class, 0.006 below its best, printed
    ``top1 1.00``. Now it is 0.50 over these two pictures, the near-tie counted beside it."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 0.3, (2, 1000)).astype(np.float32)
    base[:, 7], base[:, 3] = 3.0, 2.6  # best class 7, class 3 next (probabilities 0.019 and 0.013)
    ref = {"logits": base}
    swapped = base.copy()
    swapped[1, 3] = 3.05  # the second picture: class 3 now just over class 7
    agreement = common.agreement("classify", {}, [ref], [{"logits": swapped}], [[None, None]])
    assert agreement["top1"] == 0.5 and agreement["top1_near_ties"] == 1 and agreement["top5"] == 1.0
    assert common.agreement_text(agreement).startswith("top1 0.50 (1 near-tie) top5 1.00 cos 0.99")
    same = common.agreement("classify", {}, [ref], [ref], [[None, None]])
    assert common.agreement_text(same) == "top1 1.00 top5 1.00 cos 1.0000"
