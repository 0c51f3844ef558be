"""Drawing: pixels change where boxes/labels/masks are and nowhere else; colours are stable."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pvt_deploy.tasks.visualize import ade20k_palette, draw_boxes, draw_topk, overlay_mask, palette

GREY = 128


def grey(h: int = 240, w: int = 320) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before != after).any(axis=2)


def test_palette_is_stable_distinct_and_prefix_consistent() -> None:
    p150 = palette(150)
    assert p150.shape == (150, 3) and p150.dtype == np.uint8
    assert np.array_equal(palette(80), p150[:80])  # a class keeps its colour whatever n is
    assert len({tuple(c) for c in p150}) == 150
    assert np.array_equal(ade20k_palette(), p150)
    assert palette(0).shape == (0, 3) and palette(300).shape == (300, 3)
    # regression guard: colours of the first classes are part of the look of every output
    assert palette(3).tolist() == [[255, 73, 73], [0, 255, 0], [0, 0, 255]]
    # as spread out as documented (COCO's 80 >= 19 Lab units apart, ADE20K's 150 >= 14), measured with
    # OpenCV's Lab conversion rather than the module's own (whose constants differ in the 4th digit)
    for n, apart in ((80, 19.0), (150, 13.9)):
        lab = cv2.cvtColor(palette(n)[None].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[0].astype(np.float64)
        distances = np.linalg.norm(lab[:, None] - lab[None], axis=2) + np.eye(n) * 1e9
        assert distances.min() >= apart, (n, distances.min())
        assert lab[:, 0].min() > 29.5  # no near-blacks (L < 30): they hide the label text
    assert (p150.max(axis=1).astype(int) - p150.min(axis=1)).min() >= 64  # no greys


def test_boxes_change_pixels_on_the_box_and_label_only() -> None:
    image = grey()
    out = draw_boxes(image, [[100, 120, 200, 200]], [0.87], [1], ["person", "car"], line_width=2)
    assert np.array_equal(image, grey())  # input untouched
    diff = changed(image, out)
    assert diff[120, 150] and diff[160, 100] and diff[200, 150] and diff[160, 200]  # the four edges
    assert not diff[160, 150]  # inside the box
    assert not diff[:90].any() and not diff[205:].any()  # far above (label is ~15 px tall) / below
    assert not diff[:, :98].any() and not diff[:, 260:].any()  # left of box / right of label
    assert diff[105:118, 100:150].any()  # label sits on the top edge
    edge_colour = tuple(out[160, 100])
    assert edge_colour == tuple(palette(2)[1])  # class 1's colour


def test_labels_stay_inside_the_image() -> None:
    image = grey(100, 100)
    out = draw_boxes(image, [[60, 0, 99, 40]], [0.5], [0], ["a-rather-long-class-name"], line_width=2)
    diff = changed(image, out)
    assert diff[:, :60].any()  # the label was shifted left to fit rather than cut at the edge
    assert diff[2:12, 60:99].any()  # no room above: label drawn inside the box top


def test_boxes_outside_or_invalid_are_clipped_or_skipped() -> None:
    image = grey(50, 50)
    out = draw_boxes(image, [[-20, -20, 200, 200], [np.nan, 0, 10, 10]], [0.9, 0.9], [0, 0], None)
    assert changed(image, out).any()
    assert np.array_equal(draw_boxes(image, np.zeros((0, 4)), [], [], None), image)
    with pytest.raises(ValueError, match="same length"):
        draw_boxes(image, [[0, 0, 5, 5]], [0.1, 0.2], [0], None)


def test_overlay_alpha_math_and_ignore_index() -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    class_map = np.zeros((40, 60), np.int64)
    class_map[:, 30:] = 7
    class_map[:5] = 255  # "unlabelled"
    for alpha in (0.0, 0.3, 0.5, 1.0):
        out = overlay_mask(image, class_map, alpha=alpha, ignore_index=255)
        colours = palette(150)[np.where(class_map == 255, 0, class_map)]
        expected = np.round((1 - alpha) * image + alpha * colours)
        assert np.abs(out[5:].astype(int) - expected[5:]).max() <= 1
        assert np.array_equal(out[:5], image[:5])
    custom = np.array([[0, 0, 0]] * 7 + [[255, 255, 255]], np.uint8)
    out = overlay_mask(np.zeros((2, 2, 3), np.uint8), np.full((2, 2), 7), alpha=0.5, palette=custom)
    assert (out == 128).all()


def test_overlay_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="does not match"):
        overlay_mask(grey(10, 10), np.zeros((5, 5), np.int64))
    with pytest.raises(ValueError, match="no colour"):
        overlay_mask(grey(4, 4), np.full((4, 4), 9), palette=palette(3))
    with pytest.raises(ValueError, match="alpha"):
        overlay_mask(grey(4, 4), np.zeros((4, 4), np.int64), alpha=2.0)


def test_topk_draws_in_the_top_left_corner_only() -> None:
    image = grey(240, 320)
    out = draw_topk(image, [("tabby cat", 0.81), ("tiger cat", 0.12), ("lynx", 0.02)])
    diff = changed(image, out)
    assert diff[:20, :40].any()
    rows, cols = np.nonzero(diff)
    assert rows.max() < 120 and cols.max() < 240
    assert np.array_equal(draw_topk(image, []), image)


def test_100_boxes_on_720p_are_all_drawn_and_nothing_else() -> None:
    """A busy 720p frame: every one of 100 overlapping boxes gets its outline, the most confident is
    drawn last (on top), and no pixel away from an outline changes. (How fast this is, is measured by
    benchmarks/video_overhead.py, not asserted here.)"""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    xy = rng.uniform(0, [1180, 620], (100, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 300, (100, 2))], axis=1)
    scores, ids = rng.uniform(0.05, 1, 100), rng.integers(0, 80, 100)
    lw = 3
    out = draw_boxes(image, boxes, scores, ids, None, line_width=lw, labels=False)
    diff = changed(image, out)
    x1, y1, x2, y2 = np.round(np.clip(boxes, 0, [1279, 719, 1279, 719])).astype(int).T
    band = np.zeros((720, 1280), bool)  # pixels within lw of some box's outline: the only ones that may change
    for a, b, c, d in zip(x1, y1, x2, y2, strict=True):
        ring = np.zeros_like(band)
        ring[max(b - lw, 0):d + lw + 1, max(a - lw, 0):c + lw + 1] = True
        ring[b + lw:d - lw + 1, a + lw:c - lw + 1] = False
        band |= ring
    assert not (diff & ~band).any()
    for a, b, c, d in zip(x1, y1, x2, y2, strict=True):
        cy, cx = (b + d) // 2, (a + c) // 2
        assert diff[cy, a] and diff[cy, c] and diff[b, cx] and diff[d, cx], (a, b, c, d)
    top = int(np.argmax(scores))
    colour = palette(80)[ids[top]]
    left_edge = out[y1[top]:y2[top] + 1, x1[top]]
    assert (left_edge == colour).all()  # drawn last: no other outline crosses it
