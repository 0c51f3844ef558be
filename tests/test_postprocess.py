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
    assert plan.blended.all()
    unblended = dataclasses.replace(plan, blended=np.zeros_like(plan.blended))
    monkeypatch.setattr(postprocess, "_seg_plan", lambda *a: unblended)
    one_by_one = seg_logits_to_map(logits, meta)
    assert np.mean(one_by_one == blended) > 0.999  # only near-ties may round differently


@pytest.mark.parametrize("orig_hw", [(150, 230), (400, 700), (84, 128)])
def test_segmentation_class_winning_only_between_anchors(orig_hw: tuple[int, int]) -> None:
    """Between anchors that disagree only the classes that can win there are evaluated: one that wins
    at no anchor, only between them (along y, along x, in a cell whose four corners all differ), is
    one of those; of two that tie, the lower wins."""
    y, x = np.mgrid[:24, :32] % 2
    logits = np.full((8, 24, 32), -4.0, np.float32)
    top, bottom, right = np.s_[:, :12, :16], np.s_[:, 12:, :16], np.s_[:, :, 16:]
    logits[top][:2] = np.where([y == 0, y == 1], 2.0, -4.0)[top]  # rows of classes 0 and 1 ...
    logits[top][2] = 1.2  # ... and class 2 above both halfway between them
    logits[bottom][3:5] = np.where([x == 0, x == 1], 2.0, -4.0)[bottom]  # the same along x: 3, 4 and 5
    logits[bottom][5] = 1.2
    logits[right][:4] = np.where([2 * y + x == c for c in range(4)], 2.0, 0.0)[right]  # a checkerboard ...
    logits[right][7] = 0.9  # ... and class 7 above all four in each cell's middle
    logits[6] = logits[2]  # ties keep the lower class
    meta = Letterbox(orig_hw=orig_hw, resized_hw=(84, 128), input_hw=(96, 128))
    full = F.interpolate(torch.from_numpy(logits)[None], size=(96, 128), mode="bilinear",
                         align_corners=False)[:, :, :84, :128]
    if orig_hw != (84, 128):
        full = F.interpolate(full, size=orig_hw, mode="bilinear", align_corners=False)
    ref = full[0].argmax(0).numpy()
    top2 = full[0].topk(2, dim=0).values.numpy()
    assert all((ref == c).mean() > 0.02 for c in (2, 5, 7)), [(ref == c).mean() for c in range(8)]
    got = seg_logits_to_map(logits, meta)
    differ = got != ref
    assert differ.mean() < 1e-3 and np.all(top2[0][differ] - top2[1][differ] < 1e-5)
    assert not (got == 6).any()


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


# --- Preprocessing geometry and pixels against the official pipelines (mmcv / timm), by hand ---
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def _pre(task: str, imgsz: tuple[int, int], *, dynamic: bool):  # noqa: ANN202 - a Preprocessor
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    return Preprocessor(preprocess_spec(task, imgsz, dynamic=dynamic, mean=MEAN, std=STD), dynamic=dynamic,
                        imgsz=imgsz)


def test_keep_ratio_size_is_mmcvs_rescale() -> None:
    """mmcv.rescale_size: scale = min(long / long side, short / short side), sides int(x * scale + 0.5)."""
    from pvt_deploy.tasks.preprocess import fit_box_size, keep_ratio_size

    assert keep_ratio_size(480, 640, 1333, 800) == (800, 1067)  # 640 * 5/3 = 1066.67: rounded, not cut to 1066
    assert keep_ratio_size(640, 480, 1333, 800) == (1067, 800)
    assert keep_ratio_size(100, 1000, 1333, 800) == (133, 1333)  # the long side binds
    # a static graph's box has an orientation: 480x640 into 256x512 is bound by its height, 256/480
    assert fit_box_size(480, 640, 256, 512) == (256, 341)
    assert fit_box_size(640, 480, 512, 256) == (341, 256)


def test_letterbox_pixels_sit_top_left_and_the_padding_is_the_mean() -> None:
    """mmdet: bilinear resize, content at the top-left, the rest padded with 0 after normalising -- the
    mean in raw pixels (the graph normalises). Channels stay RGB, planes in NCHW order."""
    import cv2

    rng = np.random.default_rng(3)
    for hw, resized in (((40, 80), (32, 64)), ((80, 40), (64, 32))):  # padding below, then on the right
        rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        rgb[..., 0] //= 4  # R, G and B from different ranges: a swapped plane shows
        out, box = _pre("detect", (64, 64), dynamic=False)(rgb)
        assert box.resized_hw == resized and box.input_hw == (64, 64) and out.shape == (3, 64, 64)
        want = cv2.resize(rgb, resized[::-1], interpolation=cv2.INTER_LINEAR).astype(np.float32)
        for c in range(3):
            np.testing.assert_array_equal(out[c, :resized[0], :resized[1]], want[..., c])
            assert (out[c, resized[0]:, :] == np.float32(MEAN[c])).all()
            assert (out[c, :, resized[1]:] == np.float32(MEAN[c])).all()


def test_resize_crop_is_timms_eval_transform() -> None:
    """timm/DeiT eval: resize the short side to int(size / 0.875) (PIL bicubic), then a centre crop with
    torchvision's int(round((side - crop) / 2)) offsets. A non-square input size crops each side to its own."""
    from PIL import Image

    rgb = np.random.default_rng(4).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    pre = _pre("classify", (64, 96), dynamic=False)
    box = pre.plan(90, 120)
    # short = int(64 / 0.875) = 73; 120 * 73 / 90 = 97.3 -> 97; top round(4.5) = 4, left round(0.5) = 0
    assert (box.resized_hw, box.input_hw, box.offset) == ((73, 97), (64, 96), (-4, 0))
    assert _pre("classify", (224, 224), dynamic=False).plan(300, 400).offset == (-16, -58)  # 256x341
    out, _ = pre(rgb)
    want = np.asarray(Image.fromarray(rgb).resize((97, 73), Image.Resampling.BICUBIC))[4:68, 0:96]
    np.testing.assert_array_equal(out, want.transpose(2, 0, 1).astype(np.float32))


def test_a_batchs_records_name_the_batchs_input_size() -> None:
    """Pictures of different sizes share one padded (N, 3, H, W) batch: each record's input_hw is (H, W),
    which segmentation post-processing crops and resizes by."""
    pre = _pre("detect", (64, 128), dynamic=True)
    batch, records = pre.batch([np.zeros((40, 100, 3), np.uint8), np.zeros((60, 100, 3), np.uint8)])
    assert batch.shape == (2, 3, 64, 128)
    assert [r.input_hw for r in records] == [(64, 128), (64, 128)]
    assert [r.resized_hw for r in records] == [(51, 128), (64, 107)]


def test_host_and_graph_nms_agree_on_the_score_cut_class_filter_and_padding() -> None:
    """Hand-computed: a 100x300 picture letterboxed to 21x64 in a 64x64 input (sy = 0.21, sx = 64/300, not
    equal), padding below and on the right. mmdet keeps scores > the threshold (one exactly at it is
    dropped), clips boxes to the picture before NMS and drops those clipped to a line; ``classes=[0]``
    keeps class 0. Both NMS paths give the same detections."""
    from pvt_deploy.tasks.postprocess import postprocess_detect

    meta = Letterbox(orig_hw=(100, 300), resized_hw=(21, 64), input_hw=(64, 64))
    boxes = np.array([[[32.0, 0.0, 60.0, 21.0],  # class 0, on the picture
                       [10.0, 2.0, 40.0, 12.0],  # class 1 only
                       [40.0, 30.0, 60.0, 60.0],  # below the picture: clipped to y = 21, a line
                       [64.0, 2.0, 64.0, 12.0],  # x1 = x2 on the right edge: no width
                       [2.0, 2.0, 20.0, 12.0]]], np.float32)  # class 0 exactly at the threshold
    scores = np.zeros((1, 5, 2), np.float32)
    scores[0, :, 0] = [0.75, 0.0, 0.9, 0.9, 0.5]
    scores[0, 1, 1] = 0.625
    post = {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}
    order = np.argsort(-scores[0].max(1), kind="stable")
    graph_out = {"num_dets": np.array([[5]], np.int32), "det_boxes": boxes[:, order],
                 "det_scores": scores[0].max(1)[order][None], "det_classes": scores[0].argmax(1)[order][None]}
    for out, extra in (({"boxes": boxes, "scores": scores}, {}), (graph_out, {"nms": "graph"})):
        (det,) = postprocess_detect(out, [meta], {**post, **extra}, conf=0.5)
        assert det.scores.tolist() == [0.75, 0.625] and det.class_ids.tolist() == [0, 1]
        np.testing.assert_allclose(det.boxes, [[150, 0, 281.25, 100], [46.875, 2 / 0.21, 187.5, 12 / 0.21]],
                                   rtol=1e-6)
        (only0,) = postprocess_detect(out, [meta], {**post, **extra}, conf=0.5, classes=[0])
        assert only0.class_ids.tolist() == [0] and only0.scores.tolist() == [0.75]


def test_a_graph_argmax_mask_is_cropped_to_the_picture_then_resized() -> None:
    """``seg_mask`` (argmax in the graph): the resized picture's rows and columns (21 x 32 of a 32x32
    input, not 32 x 21), then nearest-neighbour to the original size (exactly 2x here)."""
    from pvt_deploy.tasks.postprocess import postprocess_segment

    mask = np.arange(32 * 32, dtype=np.int64).reshape(1, 32, 32) % 7
    meta = Letterbox(orig_hw=(42, 64), resized_hw=(21, 32), input_hw=(32, 32))
    (got,) = postprocess_segment({"seg_mask": mask}, [meta], {})
    assert got.shape == (42, 64)
    np.testing.assert_array_equal(got, mask[0][:21, :32].repeat(2, 0).repeat(2, 1))
