"""Comparing two runs of the same graph, and the export's parity gate.

The comparison is generic (it knows tasks, not backends): give it the outputs of a reference and of a
candidate for the same preprocessed batch, and it measures

* numbers, per float output: max absolute error, max error relative to the reference's largest
  magnitude (``max_rel``; at least 1.0 for probabilities, whose scale is [0, 1]), cosine similarity;
* the task, through the shared post-processing: detections matched one-to-one at IoU >= 0.5 with the
  same class (precision/recall/F1, see :class:`DetectionAgreement` for the detections within a
  margin of the score threshold or of the ``max_detections`` cut, which are not required to agree),
  segmentation pixel agreement of the final class maps, classification top-1 agreement (a near-tie,
  the reference's two best within the same margin, may flip) and top-5 overlap.

Raw detection ``boxes``/``scores`` are never compared index by index: per-level top-k may order
near-ties differently between runtimes, and a candidate near a level's cut may be kept by one and not
the other. What is compared numerically is order-free: each box's best class score, sorted
(``scores``), and every candidate clear of its level's cut against its nearest counterpart, box and
class scores (``boxes``, see :class:`CandidateBoxes`), gated whatever the weights; errors of matched
final detections are reported, not gated (NMS may keep a near-tied neighbour).

The export's gate (:func:`run_parity`) runs every ONNX file it wrote in ONNX Runtime against PyTorch
on real images and fails past :data:`DEFAULT_TOLERANCES`, chosen per precision:

* fp32: cosine >= 0.9999, max_rel <= 1e-3, agreement >= 0.99 (only float summation order differs);
* fp16: cosine >= 0.999, max_rel <= 0.02, agreement >= 0.95 (10-bit mantissa; decoding kept in fp32);
* int8: cosine >= 0.98, max_rel <= 0.25, agreement >= 0.80 (8-bit, calibrated on a handful of images).

A fourth, ``tf32``, is fp16's limits: it judges what computes FP32 graphs with TensorFloat-32 (float32
range, inputs of matmuls and convolutions rounded to fp16's 10-bit mantissa) on an Ampere or newer GPU,
a TensorRT engine built with ``--tf32`` and ONNX Runtime's TensorRT EP, which has no switch for it. FP32
elsewhere is IEEE FP32 on a GPU too: engines are built without TF32, the CUDA EP runs with
``use_tf32=0`` and the PyTorch backend turns PyTorch's TF32 switches off while it runs.

Task agreement is gated only when the model carries trained weights: on a randomly initialised
network, top-1 classes and segmentation argmaxes are near-ties everywhere and detections sit below
the score threshold, so agreement says nothing about the export (it is still reported). A graph whose
outputs are only integers or post-NMS detections (``--seg-output argmax``, ``--nms graph``) then has
nothing left to compare: its report says ``checked: false`` and the export says so.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pvt_deploy.errors import ParityError
from pvt_deploy.tasks.postprocess import (
    Detections,
    postprocess_classify,
    postprocess_detect,
    postprocess_segment,
)
from pvt_deploy.tasks.preprocess import Letterbox

Outputs = Mapping[str, np.ndarray]
Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Tolerance:
    """Limits one compared file must meet. ``min_agreement`` applies to the task metric."""

    min_cosine: float
    max_rel: float
    min_agreement: float

    def scaled(self, factor: float) -> Tolerance:
        """Tighter (< 1) or looser (> 1): errors and disagreement allowed times ``factor``."""
        return Tolerance(min_cosine=1 - (1 - self.min_cosine) * factor, max_rel=self.max_rel * factor,
                         min_agreement=1 - (1 - self.min_agreement) * factor)


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(min_cosine=0.9999, max_rel=1e-3, min_agreement=0.99),
    "fp16": Tolerance(min_cosine=0.999, max_rel=0.02, min_agreement=0.95),
    "int8": Tolerance(min_cosine=0.98, max_rel=0.25, min_agreement=0.80),
    "tf32": Tolerance(min_cosine=0.999, max_rel=0.02, min_agreement=0.95),  # fp16's mantissa in matmuls and convs
}


def resolve_tolerances(spec: float | Mapping[str, Tolerance | Mapping[str, float]] | None
                       ) -> dict[str, Tolerance]:
    """``None``: defaults; a number: every default scaled by it; a mapping: per-precision overrides."""
    if spec is None:
        return dict(DEFAULT_TOLERANCES)
    if isinstance(spec, (int, float)):
        if not spec > 0:  # nan too: no figure compares as failing against a NaN limit
            raise ValueError(f"parity tolerance factor must be positive, not {spec}")
        if spec == float("inf"):  # every limit unbounded: each file passed, unchecked, and was recorded 'ok'
            raise ValueError(f"parity tolerance factor must be finite, not {spec} (it would pass any output)")
        return {k: t.scaled(float(spec)) for k, t in DEFAULT_TOLERANCES.items()}
    out = dict(DEFAULT_TOLERANCES)
    for precision, tol in spec.items():
        out[precision] = tol if isinstance(tol, Tolerance) else Tolerance(**{**asdict(out[precision]), **tol})
    return out


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------


# Outputs that are probabilities: max_rel is measured against at least 1.0 for them.
PROBABILITY_OUTPUTS = frozenset({"scores", "det_scores"})


@dataclass
class NumericStats:
    """Running error statistics of one output over several batches (order-independent sums)."""

    max_abs: float = 0.0
    ref_max: float = 0.0
    dot: float = 0.0
    ref_sq: float = 0.0
    test_sq: float = 0.0
    abs_sum: float = 0.0
    count: int = 0
    nonfinite: int = 0
    # Smallest magnitude max_rel is measured against. Probabilities live on a [0, 1] scale: an
    # untrained detector's scores all sit near 0.01, and relative to that FP16 rounding looks huge.
    scale_floor: float = 0.0
    # A tolerance's max_rel, to count the elements over it (as Polygraphy does): over the whole run's
    # scale, which only grows, so each batch keeps the errors over its scale so far and result() counts
    # those still over the final one.
    over_max_rel: float | None = None
    max_abs_at: dict[str, Any] | None = None  # where max_abs is: image, index within that image's tensor
    _over: list[np.ndarray] = field(default_factory=list, repr=False)

    def add(self, ref: np.ndarray, test: np.ndarray, *, first_image: int = 0, batched: bool = False) -> None:
        """``batched``: axis 0 of the arrays is the image (``first_image`` the first's number); else the
        arrays are image ``first_image``'s."""
        shape = np.shape(ref)
        r = np.asarray(ref, dtype=np.float64).reshape(-1)
        t = np.asarray(test, dtype=np.float64).reshape(-1)
        if r.shape != t.shape:
            raise ValueError(f"shape mismatch {np.shape(ref)} vs {np.shape(test)}")
        finite = np.isfinite(t) & np.isfinite(r)
        self.nonfinite += int((~finite).sum())
        kept = np.flatnonzero(finite)
        r, t = r[finite], t[finite]
        if r.size == 0:
            return
        d = np.abs(r - t)
        worst = int(np.argmax(d))
        if self.max_abs_at is None or float(d[worst]) > self.max_abs:
            at = [int(i) for i in np.unravel_index(int(kept[worst]), shape)] if shape else []
            image, index = (first_image + at[0], at[1:]) if batched and at else (first_image, at)
            self.max_abs_at = {"image": image, "index": index}
        self.max_abs = max(self.max_abs, float(d.max()))
        self.ref_max = max(self.ref_max, float(np.abs(r).max()))
        if self.over_max_rel is not None:
            self._over.append(d[d > self.over_max_rel * max(self.ref_max, self.scale_floor)].astype(np.float64))
        self.dot += float(r @ t)
        self.ref_sq += float(r @ r)
        self.test_sq += float(t @ t)
        self.abs_sum += float(d.sum())
        self.count += r.size

    def result(self) -> dict[str, Any]:
        denom = np.sqrt(self.ref_sq * self.test_sq)
        cosine = float(self.dot / denom) if denom > 0 else (1.0 if self.ref_sq == self.test_sq else 0.0)
        out: dict[str, Any] = {
            "max_abs": self.max_abs,
            "max_rel": self.max_abs / scale if (scale := max(self.ref_max, self.scale_floor)) > 0
            else (0.0 if self.max_abs == 0 else np.inf),
            "mean_abs": self.abs_sum / self.count if self.count else 0.0,
            "cosine": cosine,
        }
        if self.max_abs_at is not None:
            out["max_abs_at"] = self.max_abs_at
        out["elements"] = self.count
        if self.over_max_rel is not None:
            limit = self.over_max_rel * max(self.ref_max, self.scale_floor)
            out["over"] = sum(int((d > limit).sum()) for d in self._over)
            out["over_max_rel"] = self.over_max_rel
        if self.nonfinite:
            out["nonfinite"] = self.nonfinite
        return out


def numeric_errors(ref: np.ndarray, test: np.ndarray) -> dict[str, float | int]:
    """max_abs, max_rel (max_abs / max |ref|), mean_abs and cosine of two same-shaped arrays."""
    stats = NumericStats()
    stats.add(ref, test)
    return stats.result()


def candidate_levels(count: int, input_hw: Sequence[int], post: Mapping[str, Any]) -> list[tuple[int, int, bool]] | None:
    """Where each pyramid level's candidates sit in a RetinaNet graph's ``boxes``/``scores`` (K axis):
    ``(start, end, cut)`` per level, ``cut`` when the level had more anchors than ``pre_nms_topk`` (its
    weakest kept candidate marks where top-k cut it). None when ``count`` is not what the model's strides
    and anchors give for this input (a graph of another layout): then its candidates are not compared."""
    from pvt_deploy.models.retinanet import NUM_ANCHORS, PRE_NMS_TOPK, STRIDES

    topk = int(post.get("pre_nms_topk", PRE_NMS_TOPK))
    h, w = int(input_hw[0]), int(input_hw[1])
    levels, start = [], 0
    for stride in STRIDES:  # every level's map is the input's size / stride, rounded up (stride-2 convs, padding 1)
        anchors = NUM_ANCHORS * -(-h // stride) * -(-w // stride)
        kept = min(anchors, topk)
        levels.append((start, start + kept, anchors > kept))
        start += kept
    return levels if start == count else None


@dataclass
class CandidateBoxes:
    """Order-free comparison of a detector's raw candidates (``boxes`` (N, K, 4), ``scores`` (N, K, C)).

    Per-level top-k emits candidates in score order, so near-ties swap places and a candidate near a level's
    cut (its k-th score) may be in one run's list and not the other's. A reference candidate whose best
    class score is clear of its level's cut by twice ``score_tolerance`` is in any faithful run's list (each
    score, and so the k-th, moves by at most the tolerance): it is *required*, and its counterpart is the
    nearest candidate of the same level in the other run, by the larger of the box error relative to the
    input's longer side and the largest class-score error (so the same class, nearly the same score).
    ``result()`` gives the mean box error of the counterparts relative to the input's side as ``mean_rel``
    (gated against the tolerance's ``max_rel``: a wrong decode, scale, order or shift moves every box, while
    a faithful INT8 graph's or a TF32 GPU's error is largest on the few candidates of the widest anchors,
    whose boxes move by the anchor's size times the regression's error: a seeded ``pvt_v2_b0`` INT8 export
    had 5 of 2745 candidates 0.25-0.47 of the side off, all on P6/P7, with F1 1.0), the largest as
    ``max_rel`` and in input pixels as ``max_abs`` (where it is: ``max_abs_at``, its index the level and
    the candidate's place in it), and the largest class-score error as ``score_max_abs`` (reported: the
    scores are gated as the sorted ``scores``).
    """

    score_tolerance: float = 0.02
    candidates_seen: int = 0
    required: int = 0
    max_rel: float = 0.0  # the largest box error of a counterpart, relative to the input's side (reported)
    max_abs: float = 0.0  # the largest box error of a nearest counterpart, input pixels
    score_abs: float = 0.0  # the largest class-score error of a nearest counterpart
    max_abs_at: dict[str, Any] | None = None
    unlaid: int = 0  # images whose K axis is not the model's level layout
    _errors: list[np.ndarray] = field(default_factory=list, repr=False)

    def add(self, ref: Outputs, test: Outputs, metas: Sequence[Letterbox], post: Mapping[str, Any], *,
            first_image: int = 0) -> None:
        for i, meta in enumerate(metas):
            rb, tb = np.asarray(ref["boxes"][i], np.float64), np.asarray(test["boxes"][i], np.float64)
            rs, ts = np.asarray(ref["scores"][i], np.float64), np.asarray(test["scores"][i], np.float64)
            levels = candidate_levels(rb.shape[0], meta.input_hw, post)
            if levels is None or rb.shape != tb.shape or rs.shape != ts.shape:
                self.unlaid += 1
                continue
            size = float(max(meta.input_hw))
            for level, (start, end, cut) in enumerate(levels):
                self._level(rb[start:end], rs[start:end], tb[start:end], ts[start:end], size, cut,
                            image=first_image + i, level=level)

    def _level(self, rb: np.ndarray, rs: np.ndarray, tb: np.ndarray, ts: np.ndarray, size: float, cut: bool, *,
               image: int, level: int) -> None:
        self.candidates_seen += len(rb)
        best_r, best_t = rs.max(axis=-1), ts.max(axis=-1)
        finite = np.isfinite(rb).all(axis=1) & np.isfinite(rs).all(axis=1)
        floor = best_r[finite].min() + 2 * self.score_tolerance if cut and finite.any() else -np.inf
        rows = np.flatnonzero(finite & (best_r > floor))
        if rows.size == 0 or len(tb) == 0:
            return
        # box distance to every candidate of the level, and a lower bound of the score distance (the best
        # class score moves at most as much as any class's): exact distances only for the nearest few
        box = np.abs(rb[rows, None, :].astype(np.float32) - tb[None, :, :].astype(np.float32)).max(axis=-1)
        box = np.where(np.isnan(box), np.inf, box / np.float32(size))
        bound = np.maximum(box, np.abs(best_r[rows, None] - best_t[None, :]).astype(np.float32))
        bound = np.where(np.isnan(bound), np.inf, bound)
        few = min(8, len(tb))
        order = np.argpartition(bound, min(few, len(tb) - 1), axis=1)
        near = order[:, :few]

        def score_dist(r: np.ndarray, cols: np.ndarray) -> np.ndarray:
            d = np.abs(rs[r][:, None, :] - ts[cols]).max(axis=-1)
            return np.asarray(np.where(np.isnan(d), np.inf, d))

        score = score_dist(rows, near)
        dist = np.maximum(np.take_along_axis(box, near, axis=1), score)
        pick = np.argmin(dist, axis=1)
        nearest, err = near[np.arange(len(rows)), pick], dist[np.arange(len(rows)), pick]
        if few < len(tb):  # rows whose nearest few may miss a closer one: every candidate, exactly
            next_bound = np.take_along_axis(bound, order[:, few:few + 1], axis=1)[:, 0]
            for r in np.flatnonzero(err > next_bound):
                full = np.maximum(box[r], score_dist(rows[r:r + 1], np.arange(len(tb))[None, :])[0])
                nearest[r], err[r] = int(np.argmin(full)), float(full.min())
        self.required += len(rows)
        # gated: the box error of each one's counterpart (its scores are judged as the sorted ``scores``;
        # an INT8 graph's score logits, rounded over a window, move by up to the tolerance themselves)
        box_rel = box[np.arange(len(rows)), nearest]
        self._errors.append(box_rel)
        self.max_rel = max(self.max_rel, float(box_rel.max()))
        box_px = np.abs(rb[rows] - tb[nearest]).max(axis=-1)
        self.score_abs = max(self.score_abs, float(np.abs(rs[rows] - ts[nearest]).max()))
        worst = int(np.argmax(box_px))
        if self.max_abs_at is None or box_px[worst] > self.max_abs:
            self.max_abs = float(box_px[worst])
            self.max_abs_at = {"image": image, "index": [level, int(rows[worst])]}

    def result(self, max_rel: float | None = None) -> dict[str, Any]:
        mean = float(np.concatenate(self._errors).mean()) if self._errors else 0.0
        out: dict[str, Any] = {"max_abs": self.max_abs, "max_rel": self.max_rel, "mean_rel": mean, "gated": "mean_rel",
                               "score_max_abs": self.score_abs, "elements": self.required,
                               "candidates": self.candidates_seen, "score_tolerance": self.score_tolerance}
        if self.max_abs_at is not None:
            out["max_abs_at"] = self.max_abs_at
        if max_rel is not None:
            out["over"] = sum(int((e > max_rel).sum()) for e in self._errors)
            out["over_max_rel"] = max_rel
        if self.unlaid:
            out["images_not_compared"] = self.unlaid
        return out


# --------------------------------------------------------------------------------------------------
# Task agreement
# --------------------------------------------------------------------------------------------------


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(ref: Detections, test: Detections, iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, reference detections in score order, same class, IoU >= ``iou``."""
    if len(ref) == 0 or len(test) == 0:
        return []
    ious = _iou_matrix(ref.boxes.astype(np.float64), test.boxes.astype(np.float64))
    ious[ref.class_ids[:, None] != test.class_ids[None, :]] = -1.0
    used = np.zeros(len(test), dtype=bool)
    pairs = []
    for i in np.argsort(-ref.scores, kind="stable"):
        cand = np.where(used, -1.0, ious[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            used[j] = True
            pairs.append((int(i), j))
    return pairs


def _required(det: Detections, score_threshold: float, max_detections: int | None, margin: float) -> np.ndarray:
    """Detections that any faithful run must reproduce: clear of the score threshold, and clear of
    the ``max_detections`` cut (when it is reached, the weakest kept detection marks the cut). A box
    of no area is not one: a detection wholly in the letterbox padding (a static graph's, or graph
    NMS's, which clips to the padded input) is clipped to a line on the picture's edge, and no IoU
    matches a line, not even the same one."""
    floor = score_threshold
    if max_detections and len(det) >= max_detections:
        floor = max(floor, float(det.scores.min()))
    has_area = np.all(det.boxes[:, 2:] > det.boxes[:, :2], axis=1)
    return np.asarray((det.scores >= floor + margin) & has_area)


@dataclass
class DetectionAgreement:
    """Detection agreement over several images.

    Detections are matched one-to-one (same class, IoU >= ``iou``, greedy by reference score). A
    detection within ``margin`` of the score threshold, or of the score at which ``max_detections``
    cut the list, flips with any rounding, so it may match but is not required to: recall counts the
    *required* reference detections found in the candidate, precision the required candidate
    detections found in the reference. Score and box errors of matched pairs are reported, not
    gated: among near-duplicate boxes, NMS may keep a neighbour that still matches at IoU >= 0.5.
    """

    score_threshold: float = 0.05
    max_detections: int | None = 100
    margin: float = 0.02
    required_ref: int = 0
    required_ref_found: int = 0
    required_test: int = 0
    required_test_found: int = 0
    matched: int = 0
    n_ref: int = 0
    n_test: int = 0
    score_max_abs: float = 0.0
    box_max_abs: float = 0.0
    iou_sum: float = 0.0

    def add(self, ref: Sequence[Detections], test: Sequence[Detections], iou: float = 0.5) -> None:
        for r, t in zip(ref, test, strict=True):
            pairs = match_detections(r, t, iou)
            self.matched += len(pairs)
            self.n_ref += len(r)
            self.n_test += len(t)
            req_r = _required(r, self.score_threshold, self.max_detections, self.margin)
            req_t = _required(t, self.score_threshold, self.max_detections, self.margin)
            found_r = np.zeros(len(r), dtype=bool)
            found_t = np.zeros(len(t), dtype=bool)
            for i, j in pairs:
                found_r[i] = found_t[j] = True
            self.required_ref += int(req_r.sum())
            self.required_ref_found += int((req_r & found_r).sum())
            self.required_test += int(req_t.sum())
            self.required_test_found += int((req_t & found_t).sum())
            if pairs:
                ri = np.array([p[0] for p in pairs])
                ti = np.array([p[1] for p in pairs])
                self.score_max_abs = max(self.score_max_abs, float(np.abs(r.scores[ri] - t.scores[ti]).max()))
                self.box_max_abs = max(self.box_max_abs, float(np.abs(r.boxes[ri] - t.boxes[ti]).max()))
                ious = _iou_matrix(r.boxes[ri].astype(np.float64), t.boxes[ti].astype(np.float64))
                self.iou_sum += float(np.diag(ious).sum())

    def result(self) -> dict[str, Any]:
        precision = self.required_test_found / self.required_test if self.required_test else 1.0
        recall = self.required_ref_found / self.required_ref if self.required_ref else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return {"metric": "detection_f1", "f1": f1, "precision": precision, "recall": recall,
                "ref_detections": self.n_ref, "test_detections": self.n_test, "matched": self.matched,
                "required_ref": self.required_ref, "required_test": self.required_test,
                "margin": self.margin, "matched_score_max_abs": self.score_max_abs,
                "matched_box_max_abs": self.box_max_abs,
                "matched_mean_iou": self.iou_sum / self.matched if self.matched else 1.0}


def agreement_detections(ref: Sequence[Detections], test: Sequence[Detections], iou: float = 0.5, *,
                         score_threshold: float = 0.05, max_detections: int | None = 100,
                         margin: float = 0.02) -> dict[str, Any]:
    """Agreement of two sets of per-image detections (reference first); see :class:`DetectionAgreement`.

    ``f1`` combines recall (required reference detections found) and precision (required candidate
    detections found in the reference).
    """
    acc = DetectionAgreement(score_threshold, max_detections, margin)
    acc.add(ref, test, iou)
    return acc.result()


def agreement_segmentation(ref: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> dict[str, Any]:
    """Fraction of pixels with the same class in two sets of per-image class maps."""
    same = sum(int((np.asarray(a) == np.asarray(b)).sum()) for a, b in zip(ref, test, strict=True))
    total = sum(int(np.asarray(a).size) for a in ref)
    return {"metric": "pixel_agreement", "pixel_agreement": same / total if total else 1.0, "pixels": total}


def agreement_classification(ref: Sequence[tuple[np.ndarray, np.ndarray]],
                             test: Sequence[tuple[np.ndarray, np.ndarray]], *,
                             margin: float = DetectionAgreement.margin) -> dict[str, Any]:
    """Top-1 agreement and mean top-5 overlap of per-image (class ids, probabilities) pairs.

    As a detection within ``margin`` of a cut may flip with any rounding, a candidate whose top-1 class is
    within ``margin`` (probability) of the reference's top-1 in the reference's own top-k is a near-tie:
    it agrees (``top1_ties`` counts them). One image whose two best classes stood 0.01 apart had failed
    ``check`` at top-1 agreement 0.0 with a cosine of 0.9997."""
    n = len(ref)
    top1 = ties = 0
    for (ref_ids, ref_probs), (test_ids, _) in zip(ref, test, strict=True):
        if test_ids[0] == ref_ids[0]:
            top1 += 1
            continue
        hit = np.flatnonzero(ref_ids == test_ids[0])
        if hit.size and ref_probs[0] - ref_probs[hit[0]] <= margin:
            top1, ties = top1 + 1, ties + 1
    overlap = sum(len(set(a[0].tolist()) & set(b[0].tolist())) / max(len(a[0]), 1)
                  for a, b in zip(ref, test, strict=True))
    return {"metric": "top1_agreement", "top1_agreement": top1 / n if n else 1.0, "top1_ties": ties,
            "top5_overlap": overlap / n if n else 1.0, "images": n}


# --------------------------------------------------------------------------------------------------
# Whole-output comparison
# --------------------------------------------------------------------------------------------------


def _is_float(a: np.ndarray) -> bool:
    return np.asarray(a).dtype.kind == "f"


class Comparison:
    """Accumulates the comparison of reference and candidate outputs over several batches."""

    def __init__(self, task: str, post: Mapping[str, Any], *, iou: float = 0.5, margin: float = 0.02,
                 max_rel: float | None = None) -> None:
        """``max_rel``: the tolerance's, to count each output's elements over it (``over``)."""
        self.max_rel = max_rel
        self.task = task
        self.post = dict(post)
        self.iou = iou
        self.margin = margin  # of the detections' cuts and of a classifier's near-tie (agreement_classification)
        self.numeric: dict[str, NumericStats] = {}
        self.det = DetectionAgreement(float(self.post.get("score_threshold", 0.05)),
                                      self.post.get("max_detections", 100), margin)
        self.seg_same = 0
        self.seg_total = 0
        self.cls_ref: list[tuple[np.ndarray, np.ndarray]] = []
        self.cls_test: list[tuple[np.ndarray, np.ndarray]] = []
        self.images = 0
        self.boxes = CandidateBoxes(score_tolerance=max_rel if max_rel is not None else margin)

    def _num(self, name: str, ref: np.ndarray, test: np.ndarray, *, first_image: int, batched: bool) -> None:
        floor = 1.0 if name in PROBABILITY_OUTPUTS else 0.0
        stats = self.numeric.setdefault(name, NumericStats(scale_floor=floor, over_max_rel=self.max_rel))
        stats.add(ref, test, first_image=first_image, batched=batched)

    def add(self, ref: Outputs, test: Outputs, metas: Sequence[Letterbox]) -> None:
        """Compare the outputs of the ``len(metas)`` images of one batch; rows past them (the copies a
        static-batch graph is padded with, which a dynamic reference does not return) are left out."""
        n = len(metas)
        ref = {k: v[:n] for k, v in ref.items()}
        test = {k: v[:n] for k, v in test.items()}
        first = self.images
        self.images += n
        if self.task == "detect":
            if "scores" in ref and "scores" in test:
                # Order-free: each box's best class score, sorted, per image (its index is the rank).
                for i, (r, t) in enumerate(zip(ref["scores"], test["scores"], strict=True)):
                    rs, ts = np.sort(r.max(axis=-1))[::-1], np.sort(t.max(axis=-1))[::-1]
                    if rs.shape == ts.shape:
                        self._num("scores", rs, ts, first_image=first + i, batched=False)
            if {"boxes", "scores"} <= ref.keys() & test.keys():
                self.boxes.add(ref, test, metas, self.post, first_image=first)
            self.det.add(postprocess_detect(ref, list(metas), self.post),
                         postprocess_detect(test, list(metas), self.post), self.iou)
            return
        for name, r in ref.items():
            if name in test and _is_float(r) and _is_float(test[name]):
                self._num(name, r, test[name], first_image=first, batched=True)
        if self.task == "segment":
            for a, b in zip(postprocess_segment(ref, list(metas), self.post),
                            postprocess_segment(test, list(metas), self.post), strict=True):
                self.seg_same += int((a == b).sum())
                self.seg_total += int(a.size)
        elif self.task == "classify":
            self.cls_ref += postprocess_classify(ref)
            self.cls_test += postprocess_classify(test)

    def result(self) -> dict[str, Any]:
        outputs = {name: s.result() for name, s in self.numeric.items()}
        if self.boxes.candidates_seen:
            outputs["boxes"] = self.boxes.result(self.max_rel)
        task: dict[str, Any] | None
        agreement: float | None
        if self.task == "detect":
            task = self.det.result()
            agreement = task["f1"]
        elif self.task == "segment":
            agreement = self.seg_same / self.seg_total if self.seg_total else 1.0
            task = {"metric": "pixel_agreement", "pixel_agreement": agreement, "pixels": self.seg_total}
        elif self.task == "classify":
            task = agreement_classification(self.cls_ref, self.cls_test, margin=self.margin)
            agreement = task["top1_agreement"]
        else:
            task, agreement = None, None
        return {"outputs": outputs, "agreement": agreement, "task": task, "images": self.images}


def parity_status(report: Mapping[str, Any]) -> str:
    """``ok``, ``FAILED``, or ``unchecked`` for a file the gate passed with nothing to compare."""
    if not report.get("passed"):
        return "FAILED"
    return "ok" if report.get("checked", True) else "unchecked"


def agreement_text(report: Mapping[str, Any], fmt: str = ".3f") -> str:
    """A report's task agreement for a table: ``-`` when there is none; when neither side has a
    detection either must reproduce (an F1 of 1.0 there would say nothing), ``no dets`` if there were
    none at all, ``none clear`` if every one sat within the margin of the score threshold or of the
    ``max_detections`` cut (100 detections all scoring 1.0: which 100 is a tie)."""
    agreement, task = report.get("agreement"), report.get("task") or {}
    if not isinstance(agreement, float):
        return "-"
    if task.get("metric") == "detection_f1" and not task.get("required_ref") and not task.get("required_test"):
        return "none clear" if task.get("ref_detections") or task.get("test_detections") else "no dets"
    return format(agreement, fmt)


def compare_outputs(task: str, ref_outputs: Outputs, test_outputs: Outputs, metas: Sequence[Letterbox],
                    post: Mapping[str, Any], *, iou: float = 0.5, margin: float = 0.02) -> dict[str, Any]:
    """Compare one batch of outputs of two runs of a graph (reference first).

    Returns ``{"outputs": {name: {max_abs, max_rel, mean_abs, cosine}}, "agreement": float | None,
    "task": {...}, "images": n}``. For several batches, use :class:`Comparison` directly.
    """
    comp = Comparison(task, post, iou=iou, margin=margin)
    comp.add(ref_outputs, test_outputs, metas)
    return comp.result()


def _where(stats: Mapping[str, Any], max_rel: float) -> str:
    """`` (max_abs 0.5 at image 3 [7]; 2 of 40 elements over)``: the largest error, where it is and, when
    counted against this ``max_rel``, how many elements are over it; empty when the report has none."""
    parts = []
    at = stats.get("max_abs_at")
    if at is not None:
        parts.append(f"max_abs {stats['max_abs']:.3g} at image {at['image']} {at['index']}")
    if stats.get("over") is not None and stats.get("over_max_rel") == max_rel:
        parts.append(f"{stats['over']} of {stats['elements']} elements over")
    return f" ({'; '.join(parts)})" if parts else ""


def gated_rel(stats: Mapping[str, Any]) -> Any:
    """The relative error an output is judged by (and tabled with): its ``max_rel``, or what it names as
    ``gated`` (a detector's candidate boxes: their ``mean_rel``, see :class:`CandidateBoxes`)."""
    return stats.get(stats.get("gated", "max_rel"))


def check_tolerance(report: Mapping[str, Any], tol: Tolerance, *, gate_agreement: bool = True) -> list[str]:
    """What in ``report`` (from :func:`compare_outputs`) is outside ``tol``; empty when it passes."""
    failures = []
    for name, s in report["outputs"].items():
        if s.get("nonfinite"):
            failures.append(f"{name}: {s['nonfinite']} non-finite values")
        if "cosine" in s and s["cosine"] < tol.min_cosine:
            failures.append(f"{name}: cosine {s['cosine']:.8f} < {tol.min_cosine:.10g}")
        if (rel := gated_rel(s) or 0.0) > tol.max_rel:
            failures.append(f"{name}: {s.get('gated', 'max_rel')} {rel:.3g} > {tol.max_rel:.10g}{_where(s, tol.max_rel)}")
    agreement = report.get("agreement")
    if gate_agreement and agreement is not None and agreement < tol.min_agreement:
        metric = (report.get("task") or {}).get("metric", "agreement")
        failures.append(f"{metric} {agreement:.4f} < {tol.min_agreement:g}")
    return failures


# --------------------------------------------------------------------------------------------------
# The gate
# --------------------------------------------------------------------------------------------------


@dataclass
class ParityCandidate:
    file: str
    precision: str
    run: Runner


@dataclass
class ParityResult:
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [f for f, r in self.reports.items() if not r["passed"]]


def _timed(run: Runner, x: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    t0 = time.perf_counter()
    out = run(x)
    return out, time.perf_counter() - t0


def _latency(times: list[float]) -> float:
    """Median batch time, leaving out the first batch (session warm-up) when there are others."""
    return statistics.median(times[1:] if len(times) > 1 else times)


def run_parity(reference: Runner, candidates: Sequence[ParityCandidate], batches: Sequence[Any], *, task: str,
               post: Mapping[str, Any], tolerances: Mapping[str, Tolerance] | None = None,
               gate_agreement: bool = True, reference_name: str = "pytorch",
               progress: Callable[[str, int, int], Any] | None = None) -> ParityResult:
    """Run ``reference`` and every candidate on ``batches`` (``.images``, ``.metas``) and compare.

    Each report (manifest ``parity[file]``) holds the comparison, the tolerance used, whether
    agreement was gated, the median batch latency and ``passed``/``failures``.
    """
    tols = dict(tolerances or DEFAULT_TOLERANCES)
    total = len(batches) * (1 + len(candidates))
    step = 0
    refs, ref_times = [], []
    for b in batches:
        out, dt = _timed(reference, b.images)
        refs.append(out)
        ref_times.append(dt)
        step += 1
        if progress:
            progress("parity", step, total)
    result = ParityResult()
    for cand in candidates:
        tol = tols[cand.precision]
        comp = Comparison(task, post, max_rel=tol.max_rel)
        times = []
        for b, ref in zip(batches, refs, strict=True):
            out, dt = _timed(cand.run, b.images)
            times.append(dt)
            comp.add(ref, out, b.metas)
            step += 1
            if progress:
                progress("parity", step, total)
        report = comp.result()
        failures = check_tolerance(report, tol, gate_agreement=gate_agreement)
        # Nothing numeric to compare (graph NMS, argmax masks) and an agreement that is not gated
        # (random weights): the gate passed the file without checking it, which the report says.
        checked = bool(report["outputs"]) or gate_agreement
        report.update({"precision": cand.precision, "reference": reference_name, "tolerance": asdict(tol),
                       "agreement_gated": gate_agreement, "latency_s": round(_latency(times), 4),
                       "reference_latency_s": round(_latency(ref_times), 4),
                       "passed": not failures, "checked": checked, "failures": failures})
        result.reports[cand.file] = report
    return result


def raise_on_failure(result: ParityResult) -> None:
    """One-line :class:`ParityError` naming the first failing file and why."""
    if not result.failed:
        return
    first = result.failed[0]
    why = "; ".join(result.reports[first]["failures"][:3])
    more = f" (and {len(result.failed) - 1} more file(s))" if len(result.failed) > 1 else ""
    raise ParityError(f"{first} disagrees with {result.reports[first]['reference']}: {why}{more}",
                      hint="the parity lines above give every figure; --parity-tolerance to loosen, "
                           "--allow-parity-failure to accept them (exit 0; the manifest marks them failed)")

