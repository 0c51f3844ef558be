"""Graph outputs -> results in original-image pixels, shared by every backend.

Detection (``nms=host`` graphs): clip boxes to the image content (mmdet clips to the unpadded image
before NMS), keep (box, class) pairs above the score threshold, per-class NMS with OpenCV's
C++ NMS (IoU without the +1 offset, suppression when IoU > threshold — mmcv's rule), keep the top
``max_detections``, then undo the letterbox. ``nms=graph`` outputs are only rescaled.

Segmentation: logits at stride 4 are resized to the input size, cropped to the content, resized to
the original image (bilinear, align_corners=False — mmseg's two resizes) and argmax'ed. Both resizes
are linear along each axis, so they compose into one sparse map per axis (2–3 source rows or
columns per output pixel), ``F.interpolate``'s weights computed in numpy (:func:`_resize_matrix`);
the class map is then computed only at the rows and columns where the blended source rows or columns
change, and between them only where those disagree, for the few classes that can win there (see
:func:`seg_logits_to_map`), so the full-resolution logits (553 MB for 150 classes at 720p) never exist.

Classification: softmax and top-k.

Features (a backbone export): each picture's row of every stage's map, cropped to the cells its content
covers (:func:`postprocess_features`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pvt_deploy.tasks.preprocess import Letterbox

# Candidates handed to NMS at most. Trained detectors leave a few hundred (box, class) pairs above the
# 0.05 threshold; a very low --conf on an untrained head can leave 100k+, which makes OpenCV's NMS take
# seconds per frame. Keeping the highest-scoring ones changes nothing in the first case.
MAX_NMS_CANDIDATES = 30000


@dataclass
class Detections:
    """Detections of one image: ``boxes`` (M, 4) xyxy float32 in original pixels, ``scores`` (M,),
    ``class_ids`` (M,) int64, sorted by descending score."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64))


def multiclass_nms(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
                   max_detections: int, classes: list[int] | None = None) -> Detections:
    """Per-class NMS over (K, 4) boxes and (K, C) scores; returns detections in box coordinates."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if classes is not None:
        mask = np.zeros(scores.shape[1], dtype=bool)
        mask[[c for c in classes if 0 <= c < scores.shape[1]]] = True
        scores = np.where(mask[None, :], scores, 0.0)
    box_idx, cls_idx = np.nonzero(scores > score_threshold)
    if box_idx.size == 0:
        return Detections.empty()
    if box_idx.size > MAX_NMS_CANDIDATES:
        top = np.argpartition(-scores[box_idx, cls_idx], MAX_NMS_CANDIDATES - 1)[:MAX_NMS_CANDIDATES]
        box_idx, cls_idx = box_idx[top], cls_idx[top]
    cand_boxes = boxes[box_idx]
    cand_scores = scores[box_idx, cls_idx]
    xywh = np.concatenate([cand_boxes[:, :2], cand_boxes[:, 2:] - cand_boxes[:, :2]], axis=1).astype(np.float64)
    # One NMS per class: same result as a class-offset batched NMS, but each call only sees its class.
    kept = []
    for c in np.unique(cls_idx):
        members = np.flatnonzero(cls_idx == c)
        # NMSBoxes takes numpy arrays; cv2's stub names only nested sequences of floats.
        k = cv2.dnn.NMSBoxes(xywh[members], cand_scores[members].astype(np.float64),  # type: ignore[arg-type]
                             float(score_threshold), float(iou_threshold))
        kept.append(members[np.asarray(k, dtype=np.int64).reshape(-1)])
    keep = np.concatenate(kept)
    if keep.size == 0:
        return Detections.empty()
    order = keep[np.argsort(-cand_scores[keep], kind="stable")][:max_detections]
    return Detections(cand_boxes[order], cand_scores[order], cls_idx[order].astype(np.int64))


def _has_area(boxes: np.ndarray) -> np.ndarray:
    """Which xyxy boxes have a positive width and height."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def to_original(boxes: np.ndarray, box: Letterbox) -> np.ndarray:
    """Input-pixel xyxy boxes -> original-image pixels (undo offset and scale, clip)."""
    sy, sx = box.scale
    oy, ox = box.offset
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] = (out[:, [0, 2]] - ox) / sx
    out[:, [1, 3]] = (out[:, [1, 3]] - oy) / sy
    h, w = box.orig_hw
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def graph_nms_limits(post: Mapping[str, Any], *, conf: float | None = None, iou: float | None = None,
                     max_det: int | None = None) -> list[str]:
    """Why settings cannot apply as asked to a graph whose NMS ran inside it (``--nms graph``): its IoU
    threshold, score floor and detection count were fixed at export, so a different IoU, a lower
    ``conf`` or a higher ``max_det`` changes nothing. One line each; empty for host NMS."""
    if post.get("nms") != "graph":
        return []
    fixed = "fixed in this graph's NMS at export (an export with host NMS takes it per call)"
    graph_iou = float(post.get("iou_threshold", 0.5))
    graph_conf = float(post.get("score_threshold", 0.05))
    graph_max = int(post.get("max_detections", 100))
    out = []
    if iou is not None and float(iou) != graph_iou:
        out.append(f"iou={iou:g} cannot apply: IoU {graph_iou:g} is {fixed}")
    if conf is not None and float(conf) < graph_conf:
        out.append(f"conf={conf:g} cannot go below the score threshold {graph_conf:g} {fixed}")
    if max_det is not None and int(max_det) > graph_max:
        out.append(f"max_det={max_det} cannot go above the {graph_max} detections {fixed}")
    return out


def postprocess_detect(outputs: Mapping[str, np.ndarray], boxes_meta: list[Letterbox], post: Mapping[str, Any],
                       *, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
                       classes: list[int] | None = None) -> list[Detections]:
    """Batch of graph outputs (``boxes``/``scores`` or the ``nms=graph`` layout) -> per-image detections."""
    score_thr = float(conf if conf is not None else post.get("score_threshold", 0.05))
    iou_thr = float(iou if iou is not None else post.get("iou_threshold", 0.5))
    max_dets = int(max_det if max_det is not None else post.get("max_detections", 100))
    results = []
    if "det_boxes" in outputs:  # NMS already done in the graph
        for i, meta in enumerate(boxes_meta):
            n = int(np.asarray(outputs["num_dets"][i]).reshape(-1)[0])
            b, s = outputs["det_boxes"][i, :n], outputs["det_scores"][i, :n]
            c = outputs["det_classes"][i, :n].astype(np.int64)
            keep = s > score_thr
            if classes is not None:
                keep &= np.isin(c, classes)
            order = np.argsort(-s[keep], kind="stable")[:max_dets]
            boxes = to_original(b[keep][order], meta)
            real = _has_area(boxes)  # a box wholly in the letterbox padding is clipped to a line
            results.append(Detections(boxes[real], s[keep][order][real].astype(np.float32), c[keep][order][real]))
        return results
    for i, meta in enumerate(boxes_meta):
        b = np.asarray(outputs["boxes"][i], dtype=np.float32).copy()
        # mmdet clips to the unpadded (resized) image before NMS; the graph clipped to the padded input.
        oy, ox = meta.offset
        rh, rw = meta.resized_hw
        b[:, [0, 2]] = b[:, [0, 2]].clip(max(ox, 0), ox + rw)
        b[:, [1, 3]] = b[:, [1, 3]].clip(max(oy, 0), oy + rh)
        real = _has_area(b)  # as mmdet's min_bbox_size=0: a box clipped to a line (in the padding) is dropped
        det = multiclass_nms(b[real], np.asarray(outputs["scores"][i])[real], score_threshold=score_thr,
                             iou_threshold=iou_thr, max_detections=max_dets, classes=classes)
        det.boxes = to_original(det.boxes, meta)
        results.append(det)
    return results


def postprocess_segment(outputs: Mapping[str, np.ndarray], boxes_meta: list[Letterbox],
                        post: Mapping[str, Any]) -> list[np.ndarray]:
    """Batch of graph outputs -> per-image class maps (H0, W0) int32 in original pixels."""
    maps = []
    if "seg_mask" in outputs:
        for i, meta in enumerate(boxes_meta):
            rh, rw = meta.resized_hw
            mask = np.asarray(outputs["seg_mask"][i])[:rh, :rw].astype(np.int32)
            h0, w0 = meta.orig_hw
            maps.append(cv2.resize(mask, (w0, h0), interpolation=cv2.INTER_NEAREST)
                        if mask.shape != (h0, w0) else mask)
        return maps
    for i, meta in enumerate(boxes_meta):
        maps.append(seg_logits_to_map(np.asarray(outputs["seg_logits"][i]), meta))
    return maps


def postprocess_features(outputs: Mapping[str, np.ndarray], boxes_meta: list[Letterbox]) -> list[dict[str, np.ndarray]]:
    """Batch of a backbone's outputs -> per-image feature maps, each cropped to the picture's share: the cells
    of the content (``resized_hw`` at ``offset``) at the map's stride (the input's size over the map's),
    rounded up, as a segmentation's logits are cropped to the content. The padding (a letterbox's, a batch's
    up to its largest picture, a wide strip's up to the graph's minimum) is no part of the picture: kept, a
    user pooling the maps or reading a cell's place took it for the picture, and a picture's maps were of
    another size in each batch it was in. An output that is no map (fewer than 3 dims) is the picture's row."""
    out = []
    for i, meta in enumerate(boxes_meta):
        ih, iw = meta.input_hw
        (oy, ox), (rh, rw) = meta.offset, meta.resized_hw
        top, left, bottom, right = max(0, oy), max(0, ox), min(ih, oy + rh), min(iw, ox + rw)
        maps = {}
        for name, value in outputs.items():
            row = np.asarray(value[i])
            if row.ndim >= 3 and row.shape[-2] and row.shape[-1]:
                sy, sx = ih / row.shape[-2], iw / row.shape[-1]
                row = row[..., math.floor(top / sy):math.ceil(bottom / sy), math.floor(left / sx):math.ceil(right / sx)]
            maps[name] = row
        out.append(maps)
    return out


# Classes evaluated at a pixel between anchors that disagree: the narrowest of these widths that holds
# every class that can win there (padded with one of them), or all classes where more can.
_SEG_WIDTHS = (2, 4, 8)
# The anchor rows are computed in blocks of at most this many logits at the anchor columns (4 MiB).
_SEG_BLOCK = 1 << 20


def seg_logits_to_map(logits: np.ndarray, meta: Letterbox) -> np.ndarray:
    """(C, h, w) stride-4 logits -> (H0, W0) argmax map of mmseg's two bilinear resizes.

    Equal to ``interpolate → crop → interpolate → argmax`` up to float rounding: a pixel whose two best
    classes tie to ~1e-6 of the logits' scale may take the other one. Ties keep the lower class index.

    Along each axis the first resize's rows blend two source rows with a weight that moves linearly,
    except at *anchors* where the blended pair changes; every output row (column) blends two adjacent
    input rows (columns), so its logits are a convex combination of those at the anchors around it,
    and a class that wins at both anchors wins there too. So only anchor rows are computed, and in
    them only anchor columns plus the columns between two anchors that disagree; another row takes
    the anchor rows' class where they agree and, where they disagree, blends their logits with its own
    share of each. There only the classes that can win somewhere in the cell of anchor rows and
    columns are evaluated (:func:`_candidates`, usually 2-4 of them). Single-threaded numpy, a block
    of anchor rows at a time: in a video the model has the other cores.
    """
    _, h, w = logits.shape
    plan = _seg_plan(h, w, meta.input_hw, meta.resized_hw, meta.orig_hw)
    src = np.ascontiguousarray(logits[:, plan.r0:plan.r1].transpose(1, 2, 0), dtype=np.float32)  # (r, w, C)
    # Each logit here is a convex combination of src's, a few float32 roundings (each 2**-24 of the
    # largest |src| at most) from the exact one: the candidates' bound allows ~170 of those.
    slack = 1e-5 * float(max(src.max(), -src.min()))
    out = np.empty(meta.orig_hw, np.int32)
    per = max(1, _SEG_BLOCK // (len(plan.x_anchors) * src.shape[2]) - 1)  # row groups per block
    for g0 in range(0, len(plan.group_anchors), per):
        block = slice(g0, g0 + per)
        a0 = int(plan.group_anchors[g0, 0])
        upper, lower = (plan.group_anchors[block] - a0).T
        n = int(lower[-1]) + 1
        rows = np.empty((n, *src.shape[1:]), np.float32)  # the block's anchor rows resized along y
        at = np.empty((n, len(plan.x_anchors), src.shape[2]), np.float32)  # and at the anchor columns
        best = np.empty(at.shape[:2], np.intp)
        for i in range(n):  # one row at a time, in cache
            _taps(src, 0, plan.y_taps[a0 + i], out=rows[i:i + 1])
            _taps(rows[i], 0, plan.x_first, out=at[i])
            best[i] = at[i].argmax(-1)  # numpy's SIMD argmax; first index on ties
        classes = best[:, plan.x_left].astype(np.int32)  # of the anchor rows (n, W0)
        r, x = np.nonzero(classes != best[:, plan.x_right])
        if r.size:
            classes[r, x] = _winners(plan, rows, at, best, slack, x, r)[0]
        ys = plan.group_rows[block]  # each group's output rows, -1 padded
        valid = ys >= 0
        out[ys[valid]] = classes[np.repeat(upper, valid.sum(1))]
        g, x = np.nonzero(classes[upper] != classes[lower])
        blend = plan.blended[block][g]
        if blend.any():  # each row is (1 - t) * upper + t * lower: blend the anchors' logits
            g_, x_ = g[blend], x[blend]
            got = _winners(plan, rows, at, best, slack, x_, upper[g_], lower[g_], plan.group_shares[block][g_])
            y_ = ys[g_]
            ok = y_ >= 0
            out[y_[ok], np.broadcast_to(x_[:, None], y_.shape)[ok]] = got.T[ok]
        for gi in np.unique(g[~blend]).tolist():  # rows that are not such a blend (never seen): each
            cols = x[g == gi]
            for yi in ys[gi][valid[gi]].tolist():
                nz = np.flatnonzero(plan.composite[yi])
                row = _taps(src, 0, (nz[None], plan.composite[yi, nz][None]))[0]
                out[yi, cols] = _taps(row, 0, (plan.x_out[0][cols], plan.x_out[1][cols])).argmax(-1)
    return out


def _taps(a: np.ndarray, axis: int, sparse: tuple[np.ndarray, np.ndarray],
          out: np.ndarray | None = None) -> np.ndarray:
    """``a`` resized along ``axis`` by a sparse map (:func:`_sparse_rows`), the taps added in order."""
    idx, wts = sparse
    shape = (-1,) + (1,) * (a.ndim - 1 - axis)
    # take: numpy's fast gather; "clip" (the indices are in range) writes to out without a buffer
    acc: np.ndarray = np.take(a, idx[:, 0], axis=axis, out=out, mode="clip")
    acc *= wts[:, 0].reshape(shape)
    tap = np.empty_like(acc)
    for k in range(1, idx.shape[1]):
        np.take(a, idx[:, k], axis=axis, out=tap, mode="clip")
        tap *= wts[:, k].reshape(shape)
        acc += tap
    return acc


def _winners(plan: _SegPlan, rows: np.ndarray, at: np.ndarray, best: np.ndarray, slack: float, x: np.ndarray,
             top: np.ndarray, bottom: np.ndarray | None = None, shares: np.ndarray | None = None) -> np.ndarray:
    """Classes (m, n) at output columns ``x`` (n,) of the anchor rows ``rows[top]``, or (m shares t in
    each row of ``shares`` (n, m)) of the rows ``top + (bottom - top) * t``, pairs sorted by (top, x).
    ``at`` (n, A, C): the anchor rows' logits at the anchor columns, the corners of the pairs' cells;
    ``best``: their classes (n, A)."""
    left = plan.x_left[x]
    new = np.ones(len(x), bool)  # each cell's first pair
    new[1:] = (left[1:] != left[:-1]) | (top[1:] != top[:-1])
    cell = np.flatnonzero(new)
    n_anchors, n_classes = at.shape[1:]
    corners = [r[cell] * n_anchors + side[x[cell]] for r in (top, top if bottom is None else bottom)
               for side in (plan.x_left, plan.x_right)]
    cand, count = (a[np.cumsum(new) - 1] for a in _candidates(at, best, corners, slack, _SEG_WIDTHS[-1]))
    flat = rows.reshape(-1, n_classes)
    out = np.empty((1 if shares is None else shares.shape[1], len(x)), np.int32)
    width_of = np.searchsorted(_SEG_WIDTHS, count)  # the narrowest that holds them; past the end: all
    for bucket, width in enumerate((*_SEG_WIDTHS, n_classes)):
        part = np.flatnonzero(width_of == bucket)
        if not part.size:
            continue
        only = cand[part, :width] if width < n_classes else None
        idx, wts = plan.x_out[0][x[part]], plan.x_out[1][x[part]]

        def logits_at(r: np.ndarray, idx: np.ndarray = idx, wts: np.ndarray = wts,
                      only: np.ndarray | None = only) -> np.ndarray:
            """The rows' logits at these columns (n, C), or at the classes ``only`` (n, K) of each:
            the taps as :func:`_taps` adds them."""
            def tap(k: int) -> np.ndarray:
                pos = r * rows.shape[1] + idx[:, k]  # take: numpy's fast gather
                got: np.ndarray = (np.take(flat, pos, axis=0) if only is None
                                   else np.take(flat, pos[:, None] * n_classes + only))
                got *= wts[:, k:k + 1]
                return got

            acc = tap(0)
            for k in range(1, idx.shape[1]):
                acc += tap(k)
            return acc

        value = logits_at(top[part])
        if bottom is None or shares is None:
            won = _first_max(value)[None]
        else:
            step = logits_at(bottom[part])
            step -= value
            won = np.stack([_first_max(value + step * t[:, None]) for t in shares[part].T])
        out[:, part] = won if only is None else np.take_along_axis(only, won.T, 1).T
    return out


def _first_max(values: np.ndarray) -> np.ndarray:
    """``values.argmax(-1)`` (the first on ties), for a few columns as one comparison per column:
    numpy's argmax spends ~20 ns on each short row."""
    if values.shape[1] > 4:
        won: np.ndarray = values.argmax(-1)
        return won
    top, won = values[:, 0].copy(), np.zeros(len(values), np.intp)
    for k in range(1, values.shape[1]):
        won[values[:, k] > top] = k
        np.maximum(top, values[:, k], out=top)
    return won


def _candidates(at: np.ndarray, best: np.ndarray, corners: list[np.ndarray], slack: float,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells with corners at ``corners`` (positions in ``at`` (n, A, C) with classes ``best`` (n, A))
    -> the classes that can win inside each, ascending: the first k (cells, k), padded with the
    first, and how many (cells,).

    A logit inside a cell is a convex combination of its corners', so each pixel has a class at least
    as high as that class's lowest corner logit, whichever class: a class j whose highest corner logit
    is below the best of those (for the corners' own classes, less ``slack`` for float rounding) never
    wins there. Ascending order keeps the lower class on ties."""
    points = np.stack(corners, 1)  # (cells, corners)
    logits = np.take(at.reshape(-1, at.shape[2]), points, axis=0)  # (cells, corners, C)
    high = logits.max(1)
    # the best guaranteed logit, of the corners' own classes
    floor = np.take_along_axis(logits, np.take(best, points)[:, None], 2).min(1).max(1)
    n, n_classes = high.shape
    # dropped only where provably below (a NaN or inf logit, in the floor or the slack, keeps them all)
    cell, cls = np.divmod(np.flatnonzero(~(high < (floor - slack)[:, None])), n_classes)  # by cell, ascending
    count = np.bincount(cell, minlength=n)
    start = np.cumsum(count) - count
    slot = np.arange(len(cell)) - start[cell]
    out = np.repeat(cls[start][:, None], k, 1)  # every cell has one: the class its floor comes from
    fits = slot < k
    out[cell[fits], slot[fits]] = cls[fits]
    return out, count


@dataclass(frozen=True)
class _SegPlan:
    """Index structures of :func:`seg_logits_to_map` for one geometry (the same for every video frame)."""

    r0: int  # source rows used: r0..r1
    r1: int
    composite: np.ndarray  # (H0, r1 - r0): output rows from source rows
    y_taps: list[tuple[np.ndarray, np.ndarray]]  # each anchor row of the first resize: its source rows, weights
    # Output rows grouped by the two anchor rows around them: their positions (G, 2) upper, lower;
    # the rows (G, m), -1 padded; each one's share t of the lower (float32); whether the rows are such
    # blends at all (never seen otherwise).
    group_anchors: np.ndarray
    group_rows: np.ndarray
    group_shares: np.ndarray
    blended: np.ndarray
    x_first: tuple[np.ndarray, np.ndarray]  # the anchor columns of the first resize from source columns (sparse)
    x_out: tuple[np.ndarray, np.ndarray]  # output columns from source columns (sparse)
    x_anchors: np.ndarray  # anchor columns of the first resize
    x_left: np.ndarray  # per output column: its two anchors' positions in x_anchors
    x_right: np.ndarray


@functools.lru_cache(maxsize=8)
def _seg_plan(h: int, w: int, input_hw: tuple[int, int], resized_hw: tuple[int, int],
              orig_hw: tuple[int, int]) -> _SegPlan:
    (ih, iw), (rh, rw), (h0, w0) = input_hw, resized_hw, orig_hw
    first = _resize_matrix(h, ih, rh, rh)
    composite = _resize_matrix(h, ih, rh, h0)
    used = np.flatnonzero(first.any(0))
    r0, r1 = int(used[0]), int(used[-1]) + 1
    first, composite = first[:, r0:r1], composite[:, r0:r1]
    anchors = _anchor_rows(first)
    groups = _rows_between_anchors(_resize_matrix(rh, rh, rh, h0), anchors)
    group_anchors = np.searchsorted(anchors, [(upper, lower) for upper, lower, _ in groups])
    group_rows = np.full((len(groups), max(len(rows) for *_, rows in groups)), -1, np.intp)
    group_shares = np.zeros(group_rows.shape, np.float32)
    blended = np.zeros(len(groups), bool)
    for i, (upper, lower, rows) in enumerate(groups):
        d = first[lower] - first[upper]  # composite[y] = (1 - t) first[upper] + t first[lower]
        dd = float(d @ d)
        t = (composite[rows] - first[upper]) @ d / dd if dd else np.zeros(len(rows))
        blend = first[upper] + t[:, None] * d
        group_rows[i, :len(rows)] = rows
        group_shares[i, :len(rows)] = t  # the float32 share a Python float multiplies by
        blended[i] = np.abs(composite[rows] - blend).max() < 1e-5
    x_matrix = _resize_matrix(w, iw, rw, rw)
    x_anchors = _anchor_rows(x_matrix)
    x_left = np.empty(w0, np.intp)
    x_right = np.empty(w0, np.intp)
    position = {int(a): i for i, a in enumerate(x_anchors.tolist())}
    for left, right, cols in _rows_between_anchors(_resize_matrix(rw, rw, rw, w0), x_anchors):
        x_left[cols], x_right[cols] = position[left], position[right]
    y_taps = [(np.flatnonzero(first[a])[None], first[a][first[a] != 0][None]) for a in anchors.tolist()]
    x_taps = _sparse_rows(x_matrix)
    return _SegPlan(r0, r1, composite, y_taps, group_anchors, group_rows, group_shares, blended,
                    (x_taps[0][x_anchors], x_taps[1][x_anchors]),
                    _sparse_rows(_resize_matrix(w, iw, rw, w0)), x_anchors, x_left, x_right)


def _anchor_rows(first: np.ndarray) -> np.ndarray:
    """Rows of a resize matrix that are not the midpoint of their neighbours (and both ends): each
    row between two consecutive anchors is a convex combination of them."""
    n = first.shape[0]
    if n < 3:
        return np.arange(n)
    bend = np.abs(first[:-2] + first[2:] - 2 * first[1:-1]).max(1) > 1e-6
    return np.concatenate([[0], np.flatnonzero(bend) + 1, [n - 1]])


def _rows_between_anchors(second: np.ndarray, anchors: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Output rows grouped by the consecutive anchors (upper, lower) that enclose the (one or two
    adjacent) input rows they blend."""
    lo = (second != 0).argmax(1)  # the first input row each output row blends; the other is lo + 1
    last = len(anchors) - 1
    # pair k spans anchors[k]..anchors[k+1]: the last one starting at or before lo (lo < anchors[k+1],
    # so lo + 1 <= anchors[k+1]); the last input row belongs to the last pair
    k = np.clip(np.searchsorted(anchors, lo, side="right") - 1, 0, max(last - 1, 0))
    return [(int(anchors[u]), int(anchors[min(u + 1, last)]), np.flatnonzero(k == u)) for u in np.unique(k).tolist()]


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A bilinear resize along one axis (``align_corners=False``) as PyTorch's CPU kernel computes it:
    output ``i`` is ``w_lo * x[lo] + w_hi * x[hi]``, the source position ``scale * (i + 0.5) - 0.5``
    (one fused multiply-add, as the kernel is compiled: the product exact in float64, one rounding to
    float32) clamped at 0, ``scale = n_in / n_out`` in float32, ``hi = lo + 1`` except at the last
    input row."""
    scale = np.float32(n_in) / np.float32(n_out)
    at = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
    src = np.maximum((np.float64(scale) * at.astype(np.float64) - 0.5).astype(np.float32), np.float32(0))
    lo = src.astype(np.int64)
    frac = np.clip(src - lo.astype(np.float32), np.float32(0), np.float32(1))
    return lo, np.minimum(lo + 1, n_in - 1), np.float32(1) - frac, frac


@functools.lru_cache(maxsize=32)
def _resize_matrix(n_src: int, n_mid: int, n_crop: int, n_out: int) -> np.ndarray:
    """(n_out, n_src) weights of resize to n_mid → keep the first n_crop → resize to n_out, along one
    axis: what ``F.interpolate`` (bilinear, align_corners=False) does to the identity, to within one
    float32 step (bit for bit in most geometries), in numpy so that post-processing never imports torch
    (1–2 s and ~200 MB on the first frame of an ONNX Runtime run)."""
    m = np.eye(n_src, dtype=np.float32)
    for n_in, n_next, keep in ((n_src, n_mid, n_crop), (n_crop, n_out, n_out)):
        if n_next != n_in:
            lo, hi, w_lo, w_hi = _linear_taps(n_in, n_next)
            # the kernel's w_lo * x[lo] + w_hi * x[hi], the first product fused into the sum
            m = (w_lo[:, None].astype(np.float64) * m[lo] + w_hi[:, None] * m[hi]).astype(np.float32)
        m = m[:keep]
    return np.ascontiguousarray(m, dtype=np.float32)


def _sparse_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A banded (n_out, n_src) matrix as (n_out, K) source indices and weights (zero-padded)."""
    nz = m != 0
    first = nz.argmax(1)
    last = m.shape[1] - 1 - nz[:, ::-1].argmax(1)
    k = int((last - first).max()) + 1
    idx = first[:, None] + np.arange(k)[None]
    inside = idx <= last[:, None]
    idx = np.where(inside, idx, first[:, None])
    return idx, np.where(inside, np.take_along_axis(m, idx, 1), np.float32(0)).astype(np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=axis, keepdims=True)
    return probs


def postprocess_classify(outputs: Mapping[str, np.ndarray], k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batch of logits -> per image (top-k class ids, their probabilities), best first."""
    return top_k(softmax(np.asarray(outputs["logits"], dtype=np.float32)), k)


def top_k(probs: np.ndarray, k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batch of class probabilities -> per image (top-k class ids, their probabilities), best first."""
    k = min(k, probs.shape[1])
    out = []
    for p in probs:
        idx = np.argsort(-p, kind="stable")[:k]
        out.append((idx.astype(np.int64), p[idx]))
    return out
