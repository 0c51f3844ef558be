"""Shared post-processing against independent references: greedy NMS, letterbox undo, seg maps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pvt_deploy.tasks.postprocess import (
    MAX_NMS_CANDIDATES,
    multiclass_nms,
    postprocess_classify,
    seg_logits_to_map,
    to_original,
)
from pvt_deploy.tasks.preprocess import Letterbox


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, iou_thr: float, max_det: int):
    """Textbook greedy per-class NMS (mmcv's rule: IoU without +1, suppress when IoU > thr)."""
    out = []
    for c in range(scores.shape[1]):
        idx = [i for i in np.argsort(-scores[:, c], kind="stable") if scores[i, c] > thr]
        keep: list[int] = []
        for i in idx:
            ok = True
            for j in keep:
                x1, y1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
                x2, y2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
                inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
                area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
                if inter / (area(boxes[i]) + area(boxes[j]) - inter) > iou_thr:
                    ok = False
                    break
            if ok:
                keep.append(i)
        out += [(scores[i, c], i, c) for i in keep]
    out.sort(key=lambda t: -t[0])
    return out[:max_det]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_greedy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.random((300, 2)) * 200
    boxes = np.concatenate([xy, xy + 10 + rng.random((300, 2)) * 60], axis=1).astype(np.float32)
    scores = (rng.random((300, 5)) ** 4).astype(np.float32)
    det = multiclass_nms(boxes, scores, score_threshold=0.05, iou_threshold=0.5, max_detections=100)
    ref = reference_nms(boxes, scores, 0.05, 0.5, 100)
    assert len(det) == len(ref)
    np.testing.assert_allclose(det.scores, [r[0] for r in ref], rtol=0, atol=0)
    assert [(int(c)) for c in det.class_ids] == [r[2] for r in ref]
    np.testing.assert_array_equal(det.boxes, boxes[[r[1] for r in ref]])


def test_nms_caps_candidates_on_untrained_heads() -> None:
    rng = np.random.default_rng(0)
    xy = rng.random((2000, 2)) * 600
    boxes = np.concatenate([xy, xy + 20], axis=1).astype(np.float32)
    scores = rng.random((2000, 80)).astype(np.float32)  # 160k pairs above any low threshold
    det = multiclass_nms(boxes, scores, score_threshold=0.01, iou_threshold=0.5, max_detections=100)
    assert len(det) == 100 and MAX_NMS_CANDIDATES < 160_000
    assert det.scores.min() > np.sort(scores.ravel())[-MAX_NMS_CANDIDATES - 1]


def test_letterbox_undo_and_crop_offset() -> None:
    box = Letterbox(orig_hw=(480, 640), resized_hw=(240, 320), input_hw=(256, 320))
    out = to_original(np.array([[10, 20, 330, 250]], np.float32), box)
    np.testing.assert_allclose(out, [[20, 40, 640, 480]])  # scaled x2, clipped to the image
    crop = Letterbox(orig_hw=(200, 400), resized_hw=(256, 512), input_hw=(224, 224), offset=(-16, -144))
    np.testing.assert_allclose(to_original(np.array([[0, 0, 224, 224]], np.float32), crop),
                               [[144 / 1.28, 16 / 1.28, 368 / 1.28, 240 / 1.28]], rtol=1e-6)


@pytest.mark.parametrize("smooth", [False, True])  # noise: every row differs; regions: anchors decide most pixels
@pytest.mark.parametrize("orig_hw", [(150, 230), (84, 128), (50, 61), (400, 700)])  # up, same, down, far up
def test_segmentation_map_equals_full_resolution_argmax(orig_hw: tuple[int, int], smooth: bool) -> None:
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((40, 24, 32)).astype(np.float32)  # stride-4 logits of a 96x128 input
    if smooth:
        logits = F.interpolate(torch.from_numpy(logits[:, :4, :5] * 4)[None], size=(24, 32), mode="bicubic",
                               align_corners=False)[0].numpy()
    meta = Letterbox(orig_hw=orig_hw, resized_hw=(84, 128), input_hw=(96, 128))
    t = torch.from_numpy(logits)[None]
    full = F.interpolate(t, size=(96, 128), mode="bilinear", align_corners=False)[:, :, :84, :128]
    if orig_hw != (84, 128):
        full = F.interpolate(full, size=orig_hw, mode="bilinear", align_corners=False)
    ref = full[0].argmax(0).numpy()
    top2 = full[0].topk(2, dim=0).values.numpy()
    got = seg_logits_to_map(logits, meta)
    assert got.shape == orig_hw and got.dtype == np.int32
    differ = got != ref
    # One composed resize rounds differently from two: only a near-tie may flip.
    assert differ.mean() < 1e-3 and np.all(top2[0][differ] - top2[1][differ] < 1e-5)


def test_resize_weights_are_pytorchs_without_importing_torch() -> None:
    """The per-axis weights (resize, crop, resize) equal F.interpolate's on the identity to one float32
    step, over random geometries (up, down, to and from one row); and a class map needs no torch."""
    from pvt_deploy.tasks.postprocess import _resize_matrix

    def reference(n_src: int, n_mid: int, n_crop: int, n_out: int) -> np.ndarray:
        m = torch.eye(n_src, dtype=torch.float32).reshape(1, n_src, n_src, 1)
        if n_mid != n_src:
            m = F.interpolate(m, size=(n_mid, 1), mode="bilinear", align_corners=False)
        m = m[:, :, :n_crop]
        if n_out != n_crop:
            m = F.interpolate(m, size=(n_out, 1), mode="bilinear", align_corners=False)
        return m[0, :, :, 0].T.numpy()

    rng = np.random.default_rng(5)
    geometries = [(128, 512, 288, 720), (160, 640, 360, 2160), (2, 8, 8, 1), (1, 4, 4, 1), (5, 20, 17, 3)]
    for _ in range(60):
        n = int(rng.integers(1, 160))
        geometries.append((n, 4 * n, int(rng.integers(1, 4 * n + 1)), int(rng.integers(1, 1500))))
    exact = 0
    for geometry in geometries:
        ours, ref = _resize_matrix(*geometry), reference(*geometry)
        assert ours.shape == ref.shape and ours.dtype == np.float32, geometry
        np.testing.assert_allclose(ours, ref, rtol=0, atol=6e-8, err_msg=str(geometry))
        exact += np.array_equal(ours, ref)
    assert exact >= 0.9 * len(geometries)
    code = ("import sys, numpy as np\n"
            "from pvt_deploy.tasks.postprocess import seg_logits_to_map\n"
            "from pvt_deploy.tasks.preprocess import Letterbox\n"
            "logits = np.random.default_rng(0).standard_normal((9, 24, 32)).astype(np.float32)\n"
            "out = seg_logits_to_map(logits, Letterbox(orig_hw=(150, 230), resized_hw=(84, 128), input_hw=(96, 128)))\n"
            "assert out.shape == (150, 230), out.shape\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", (done.stdout, done.stderr)


def test_segmentation_rows_computed_one_by_one_agree_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path for output rows that are not a blend of two anchor rows (no known geometry has them)."""
    import dataclasses

    from pvt_deploy.tasks import postprocess

    logits = np.random.default_rng(4).standard_normal((40, 24, 32)).astype(np.float32)
    meta = Letterbox(orig_hw=(150, 230), resized_hw=(84, 128), input_hw=(96, 128))
    blended = seg_logits_to_map(logits, meta)
    plan = postprocess._seg_plan(24, 32, meta.input_hw, meta.resized_hw, meta.orig_hw)
    assert all(group[3] is not None for group in plan.row_groups)
    unblended = dataclasses.replace(plan, row_groups=[(*group[:3], None) for group in plan.row_groups])
    monkeypatch.setattr(postprocess, "_seg_plan", lambda *a: unblended)
    one_by_one = seg_logits_to_map(logits, meta)
    assert np.mean(one_by_one == blended) > 0.999  # only near-ties may round differently


def test_seg_post_benchmark_runs_and_agrees() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "seg_post.py"), "--sizes", "45x61,64x64",
                           "--classes", "7", "--imgsz", "64", "--rounds", "1"],
                          capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("45x61", "64x64"))]
    assert len(rows) == 2 and all(float(r[-1]) > 0.999 for r in rows)  # pixels agreeing with interpolate x2


def test_classification_topk_is_softmax_order() -> None:
    logits = np.array([[0.0, 3.0, 1.0, 2.0]], np.float32)
    ((idx, p),) = postprocess_classify({"logits": logits}, k=3)
    assert idx.tolist() == [1, 3, 2]
    np.testing.assert_allclose(p, np.exp([3.0, 2.0, 1.0]) / np.exp(logits).sum(), rtol=1e-6)


def test_dynamic_imgsz_rounds_up_to_the_stride(caplog: pytest.LogCaptureFixture) -> None:
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    spec = preprocess_spec("detect", (640, 640), dynamic=True, mean=(123.675, 116.28, 103.53),
                           std=(58.395, 57.12, 57.375))
    with caplog.at_level("WARNING"):
        pre = Preprocessor(spec, dynamic=True, imgsz=(33, 100))
    assert pre.imgsz == (64, 128) and "not a multiple" in caplog.text
    box = pre.plan(480, 640)  # bounded by the rounded sides (short 64, long 128): 64 px tall, not 33
    assert box.resized_hw == (64, 85) and box.input_hw == (64, 96)
    assert Preprocessor(spec, dynamic=False, imgsz=(33, 100)).imgsz == (33, 100)  # a static graph's size is exact


def test_the_preprocessor_converts_pixels_as_the_sources_do() -> None:
    """A 16-bit, float, grey or RGBA array given to a Preprocessor directly gives the input the same
    picture as 8-bit RGB gives (16-bit was truncated, not rounded; 0..1 floats were clipped as 0..255,
    so a float picture came in black)."""
    from pvt_deploy.io.sources import as_rgb_array
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    spec = preprocess_spec("detect", (64, 64), dynamic=True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pre = Preprocessor(spec, dynamic=True, imgsz=(64, 64))
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    want, _ = pre(rgb)
    wide = np.clip(rgb.astype(np.int32) * 257 - 100, 0, None).astype(np.uint16)  # rounds back to rgb; >> 8 is 1 short below 100
    for image in (wide, rgb / 255.0, rgb.astype(np.float32), np.dstack([rgb, np.full((48, 64), 9, np.uint8)])):
        got, _ = pre(image)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(pre.batch([image])[0][0], want)
    grey = rgb[:, :, 0]
    np.testing.assert_array_equal(pre(grey)[0], pre(as_rgb_array(grey))[0])
    assert pre(grey)[0][0].tolist() == pre(grey)[0][2].tolist()


def test_a_detection_wholly_in_the_letterbox_padding_is_dropped() -> None:
    """A box in the padding below a letterboxed picture is clipped to a line on its edge: it was kept,
    a zero-area box in the JSON and COCO files. mmdet's RetinaNet (min_bbox_size=0) drops it; so do both
    NMS paths now, and the boxes on the picture are kept as they were."""
    from pvt_deploy.tasks.postprocess import postprocess_detect

    meta = Letterbox(orig_hw=(96, 128), resized_hw=(48, 64), input_hw=(64, 64))  # rows 48..63 are padding
    on_picture = [4.0, 4.0, 30.0, 40.0]
    in_padding = [10.0, 50.0, 40.0, 62.0]
    boxes = np.array([[on_picture, in_padding]], np.float32)
    scores = np.array([[[0.9, 0.0], [0.0, 0.8]]], np.float32)  # (1, boxes, classes)
    post = {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}
    (host,) = postprocess_detect({"boxes": boxes, "scores": scores}, [meta], post)
    graph_out = {"num_dets": np.array([[2]], np.int32), "det_boxes": boxes, "det_scores": np.array([[0.9, 0.8]], np.float32),
                 "det_classes": np.array([[0, 1]], np.int32)}
    (graph,) = postprocess_detect(graph_out, [meta], {**post, "nms": "graph"})
    for det in (host, graph):
        assert det.class_ids.tolist() == [0] and det.scores.tolist() == pytest.approx([0.9])
        np.testing.assert_allclose(det.boxes, [[8.0, 8.0, 60.0, 80.0]])  # x2 to the 96x128 picture
