"""Drawing: pixels change where boxes/labels/masks are and nowhere else; colours are stable."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pvt_deploy.tasks import visualize
from pvt_deploy.tasks.results import Probs, Result
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


# -- class names in any script ---------------------------------------------------------------------
# A test-only font situation: DejaVu Sans has Greek, which OpenCV's built-in font draws as "?".
DEJAVU = next((p for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf",
                           "/usr/share/fonts/dejavu/DejaVuSans.ttf") if os.path.isfile(p)), None)
needs_dejavu = pytest.mark.skipif(DEJAVU is None, reason="DejaVu Sans is not installed")
BOX = [[100, 120, 200, 200]]


@pytest.fixture(autouse=True)
def _fonts_searched_afresh() -> Iterator[None]:
    visualize._forget_fonts()
    yield
    visualize._forget_fonts()


@pytest.fixture(params=["opencv", "pillow"])
def renderer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Font files drawn by OpenCV 5's FontFace, and by Pillow (an OpenCV without FontFace)."""
    if request.param == "opencv" and not hasattr(cv2, "FontFace"):
        pytest.skip("this OpenCV has no FontFace")
    if request.param == "pillow":
        monkeypatch.delattr(cv2, "FontFace", raising=False)
    return str(request.param)


class _OpenCV4(visualize._BuiltIn):
    """OpenCV 4's built-in font, simulated on OpenCV 5: a "?" for each UTF-8 byte of a character not in ASCII."""

    def put(self, canvas: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int],
            scale: float, thickness: int) -> None:
        super().put(canvas, "".join(c if c.isascii() else "?" * len(c.encode()) for c in text), org, color, scale,
                    thickness)


def test_labels_the_built_in_font_has_are_drawn_exactly_as_before() -> None:
    """ASCII (and in OpenCV 5 Cyrillic, which its built-in font has) keep the drawing they had: the
    same cv2 calls, so the same bytes, and the same speed."""
    lw, scale, thickness, pad = 2, 2 / 3, 1, 1
    colour = tuple(int(c) for c in palette(2)[1])
    names = ["person"] + (["Жук"] if visualize._BUILT_IN.draws("Ж") else [])
    for name in names:
        out = draw_boxes(grey(), BOX, [0.87], [1], ["x", name], line_width=lw)
        expected = grey()
        cv2.rectangle(expected, (100, 120), (200, 200), colour, lw)
        text = f"{name} 0.87"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x0, y0 = 100 - lw // 2, 120 - lw // 2 - (th + base + 2 * pad)
        cv2.rectangle(expected, (x0, y0), (x0 + tw + 2 * pad - 1, y0 + th + base + 2 * pad - 1), colour, -1)
        cv2.putText(expected, text, (x0 + pad, y0 + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)
        assert np.array_equal(out, expected), name


def test_the_built_in_fonts_question_marks_are_told_from_characters_in_opencv_4_too() -> None:
    """OpenCV 4 (4.11, as the Jetson image's NumPy 1 gets) draws a "?" for each UTF-8 byte of a
    character its built-in font lacks ("é" as "??", "汽" as "???"), OpenCV 5 one "?" a character."""
    opencv4 = _OpenCV4()
    assert opencv4.draws("A") and opencv4.draws("?")
    assert not any(opencv4.draws(c) for c in "éЖ汽🚗")


@needs_dejavu
def test_names_the_built_in_font_lacks_are_drawn_with_a_font_that_has_them(
        renderer: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(visualize.FONT_ENV, str(DEJAVU))

    def boxes(name: str) -> np.ndarray:
        return draw_boxes(grey(), BOX, [0.87], [0], [name], line_width=2)

    greek, other, questions = boxes("αβγ"), boxes("αβδ"), boxes("???")  # "???": what "αβγ" came out as
    assert not np.array_equal(greek, other)  # each letter has its own glyph: none is a "?"
    assert not np.array_equal(greek, questions)
    label = changed(grey(), greek)[:118]  # above the box: the label and nothing else
    rows, cols = np.nonzero(label)
    assert rows.min() >= 95 and cols.min() >= 98 and cols.max() < 200  # sits on the box's top edge
    text = greek[:118][label & (greek[:118].min(axis=2) > 200)]  # white text on class 0's red
    assert len(text) > 20
    panel = draw_topk(grey(), [("αβγ", 0.5)], class_ids=[0])
    assert not np.array_equal(panel, draw_topk(grey(), [("αβδ", 0.5)]))
    assert not caplog.records


@needs_dejavu
def test_fonts_are_found_by_fontconfig_or_else_in_the_font_folders(
        renderer: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(visualize.FONT_ENV, raising=False)
    expected = draw_boxes(grey(), BOX, [0.87], [0], ["αβγ"], line_width=2) if shutil.which("fc-list") else None
    visualize._forget_fonts()
    (tmp_path / "sub").mkdir()
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    (tmp_path / "sub" / "DejaVuSans.ttf").symlink_to(str(DEJAVU))
    monkeypatch.setattr(visualize.shutil, "which", lambda name: None)  # no fontconfig
    monkeypatch.setattr(visualize, "_FONT_DIRS", (str(tmp_path),))
    found = draw_boxes(grey(), BOX, [0.87], [0], ["αβγ"], line_width=2)
    assert not np.array_equal(found, draw_boxes(grey(), BOX, [0.87], [0], ["???"], line_width=2))
    if expected is not None:  # fontconfig found a font with Greek too (not necessarily DejaVu Sans)
        assert not np.array_equal(expected, draw_boxes(grey(), BOX, [0.87], [0], ["???"], line_width=2))


def test_line_breaks_and_control_characters_in_names_are_drawn_as_spaces(
        renderer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name from a YAML file may hold a "\\n": the built-in font drew the rest of it under the label, on the
    picture; Pillow (OpenCV 4) failed with "raqm_layout() failed" and ended the run."""
    if DEJAVU is not None:
        monkeypatch.setenv(visualize.FONT_ENV, str(DEJAVU))
    for name, spaced in [("a\nb", "a b"), ("a\tb\r", "a b "), ("αβ\nγ\u2028δ", "αβ γ δ")]:
        assert np.array_equal(draw_boxes(grey(), BOX, [0.87], [0], [name], line_width=2),
                              draw_boxes(grey(), BOX, [0.87], [0], [spaced], line_width=2)), name
        assert np.array_equal(draw_topk(grey(), [(name, 0.5)]), draw_topk(grey(), [(spaced, 0.5)])), name


@needs_dejavu
def test_names_in_a_font_file_are_drawn_on_grey_and_rgba_pictures_too(
        renderer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """cv2 draws on any channel count; Pillow's labels ended the run on a grey picture (could not broadcast)."""
    monkeypatch.setenv(visualize.FONT_ENV, str(DEJAVU))
    rgb = draw_boxes(grey(), BOX, [0.87], [0], ["αβγ"], line_width=2)
    for image in (grey()[:, :, 0], grey()[:, :, :1]):
        out = draw_boxes(image, BOX, [0.87], [0], ["αβγ"], line_width=2)
        assert out.shape == image.shape and np.array_equal(out.reshape(rgb.shape[:2]), rgb[:, :, 0])
    rgba = draw_boxes(np.dstack([grey(), np.full((240, 320), 255, np.uint8)]), BOX, [0.87], [0], ["αβγ"], line_width=2)
    assert np.array_equal(rgba[:, :, :3], rgb)


def test_fontconfig_that_fails_is_asked_once_a_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """fc-list that ran past its 30 s (a fontconfig cache being built) was asked again for each name: minutes
    of a run stopped, every drawing thread waiting on the font search."""
    monkeypatch.delenv(visualize.FONT_ENV, raising=False)
    monkeypatch.setattr(visualize.shutil, "which", lambda name: "/usr/bin/fc-list")
    monkeypatch.setattr(visualize, "_FONT_DIRS", (str(tmp_path),))  # no font there
    calls = []

    def slow_fc_list(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise subprocess.TimeoutExpired("fc-list", 30)

    monkeypatch.setattr(visualize.subprocess, "run", slow_fc_list)
    out = draw_boxes(grey(), BOX * 3, [0.5, 0.6, 0.7], [0, 1, 2], ["汽车", "가나", "ሰላም"], line_width=2)
    assert np.array_equal(out, draw_boxes(grey(), BOX * 3, [0.5, 0.6, 0.7], [0, 1, 2], ["#0", "#1", "#2"], line_width=2))
    assert len(calls) == 1


@needs_dejavu
def test_labels_pillow_draws_are_cached_in_bounded_memory_at_4k(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each label ("name 0.87") of a video is rendered once and kept: at 4K that must not add up to gigabytes."""
    monkeypatch.delattr(cv2, "FontFace", raising=False)
    monkeypatch.setenv(visualize.FONT_ENV, str(DEJAVU))
    uhd = np.zeros((2160, 3840, 3), np.uint8)
    draw_boxes(uhd, [[100, 300, 900, 900]], [0.87], [0], ["αβγδε"])
    (font,) = visualize._found
    lw = visualize._auto_line_width(uhd)
    coverage, _ = visualize._pillow_text(str(DEJAVU), font._px(lw / 3, lw - 1), "αβγδε 0.87")
    assert coverage.nbytes * visualize._pillow_text.cache_info().maxsize < 256 * 2**20



@needs_dejavu
def test_right_to_left_names_are_drawn_in_reading_order_or_as_class_ids(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """OpenCV 5's built-in font lays Hebrew and Arabic out right to left, its FontFace with a font file does not,
    nor does Pillow without libraqm (libfribidi): they drew "שלום" backwards and Arabic's letters unjoined."""
    monkeypatch.setenv(visualize.FONT_ENV, str(DEJAVU))

    def boxes(name: str) -> np.ndarray:
        return draw_boxes(grey(), BOX, [0.87], [0], [name], line_width=2)

    if hasattr(cv2, "FontFace") and visualize._pillow_lays_out_rtl():  # a name FontFace would draw backwards
        drawn = boxes("αβ שלום")
        visualize._forget_fonts()
        monkeypatch.delattr(cv2, "FontFace")
        assert np.array_equal(drawn, boxes("αβ שלום"))  # as Pillow lays it out
    visualize._forget_fonts()
    monkeypatch.delattr(cv2, "FontFace", raising=False)
    monkeypatch.setattr(visualize, "_BUILT_IN", _OpenCV4())  # Hebrew and Arabic come to the font file
    monkeypatch.setattr(visualize, "_pillow_lays_out_rtl", lambda: False)
    assert not np.array_equal(boxes("αβγ"), boxes("#0"))  # Greek is drawn (by Pillow)
    for name in ("שלום", "كلب"):
        assert np.array_equal(boxes(name), boxes("#0")), name
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Hebrew" in warnings[0] and "libfribidi0" in warnings[0]


def test_names_no_font_has_are_drawn_as_class_ids_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(visualize.FONT_ENV, raising=False)
    monkeypatch.setattr(visualize, "_font_files", lambda chars: [])  # no font file anywhere
    names = ["person", "bus", "truck", "汽车", "가나"]
    two = [[100, 120, 200, 200], [20, 60, 80, 230]]
    out = draw_boxes(grey(), two, [0.87, 0.5], [3, 4], names, line_width=2)
    assert np.array_equal(out, draw_boxes(grey(), two, [0.87, 0.5], [3, 4], ["", "", "", "#3", "#4"], line_width=2))
    panel = draw_topk(grey(), [("汽车", 0.5), ("person", 0.25)], class_ids=[3, 0])
    assert np.array_equal(panel, draw_topk(grey(), [("#3", 0.5), ("person", 0.25)]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one a run, however many names and pictures (the first drawn: 가나)
    assert "Hangul" in warnings[0] and "fonts-noto-cjk" in warnings[0] and visualize.FONT_ENV in warnings[0]


@pytest.mark.parametrize(("name", "script", "package"), [
    ("รถยนต์", "Thai", "fonts-noto-core"), ("car 🚗", "emoji/symbol", "fonts-symbola"), ("汽车", "CJK", "fonts-noto-cjk")])
def test_the_warning_names_a_font_package_for_the_script(
        name: str, script: str, package: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A Thai name (or an emoji) was told to `apt install fonts-noto-cjk`, which has none."""
    monkeypatch.delenv(visualize.FONT_ENV, raising=False)
    monkeypatch.setattr(visualize, "_font_files", lambda chars: [])
    draw_boxes(grey(), BOX, [0.87], [0], [name], line_width=2)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"its {script} characters" in warning and f"apt install {package}`" in warning


def test_a_font_setting_that_is_no_font_falls_back_to_class_ids(
        renderer: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    fake = tmp_path / "font.ttf"
    fake.write_bytes(b"not a font")
    monkeypatch.setenv(visualize.FONT_ENV, str(fake))
    out = draw_boxes(grey(), BOX, [0.87], [2], ["a", "b", "αβγ"], line_width=2)
    assert np.array_equal(out, draw_boxes(grey(), BOX, [0.87], [2], ["a", "b", "#2"], line_width=2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Greek" in warnings[0] and f"{visualize.FONT_ENV}={fake}" in warnings[0]


_FIFO_CHILD = """
import json, os, sys
import cv2
import numpy as np
if hasattr(cv2, "FontFace"):
    del cv2.FontFace  # an OpenCV without it: Pillow draws font files
os.environ["PVT_DEPLOY_FONT"] = sys.argv[1]
from pvt_deploy.tasks.visualize import draw_boxes
picture, box = np.full((240, 320, 3), int(sys.argv[2]), np.uint8), json.loads(sys.argv[3])
out = draw_boxes(picture, box, [0.87], [2], ["a", "b", "αβγ"], line_width=2)
print("same" if np.array_equal(out, draw_boxes(picture, box, [0.87], [2], ["a", "b", "#2"], line_width=2)) else "differs")
"""


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_font_setting_that_is_no_file_falls_back_to_class_ids_at_once(
        kind: str, renderer: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    """PVT_DEPLOY_FONT=/usr/share/fonts (a folder) crashed the run in FontFace; a FIFO blocked it for ever."""
    path = tmp_path / "font.ttf"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    if kind == "fifo" and renderer == "pillow":  # Pillow would wait for a writer holding the GIL: in a child
        done = subprocess.run([sys.executable, "-c", _FIFO_CHILD, str(path), str(GREY), json.dumps(BOX)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.split() == ["same"], (done.stdout, done.stderr[-2000:])
        return
    monkeypatch.setenv(visualize.FONT_ENV, str(path))
    drawn: list[np.ndarray | BaseException] = []

    def draw() -> None:
        try:
            drawn.append(draw_boxes(grey(), BOX, [0.87], [2], ["a", "b", "αβγ"], line_width=2))
        except BaseException as e:  # noqa: BLE001 - the test reports it
            drawn.append(e)

    worker = threading.Thread(target=draw, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # blocked opening the FIFO: writers that close at once let it go on
        drawn.insert(0, TimeoutError("drawing blocked on the font setting"))
        while worker.is_alive():
            with contextlib.suppress(OSError):  # ENXIO: nobody has it open for reading at the moment
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(0.1)
    assert len(drawn) == 1 and isinstance(drawn[0], np.ndarray), drawn
    assert np.array_equal(drawn[0], draw_boxes(grey(), BOX, [0.87], [2], ["a", "b", "#2"], line_width=2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{visualize.FONT_ENV}={path}" in warnings[0]


def test_classification_and_legend_panels_show_class_ids_for_names_no_font_has(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(visualize, "_font_files", lambda chars: [])
    names = ["猫", "狗"]
    probs = Probs(top=np.array([1, 0]), conf=np.array([0.75, 0.25]), names=names)
    shown = Result(task="classify", orig_img=grey(), names=names, probs=probs).plot()
    assert np.array_equal(shown, draw_topk(grey(), [("#1", 0.75), ("#0", 0.25)]))
    mask = np.zeros((240, 320), np.int64)
    mask[:, 200:] = 1
    legend = Result(task="segment", orig_img=grey(), names=names, mask=mask).plot()
    expected = draw_topk(overlay_mask(grey(), mask), [("#0", 0.625), ("#1", 0.375)])
    assert np.array_equal(legend, expected)


@needs_dejavu
def test_a_font_face_shared_by_threads_measures_and_draws_each_label_at_its_own_size() -> None:
    """Result.plot() may run in several threads at once (a web service): OpenCV 5's FontFace keeps the size
    it last drew or measured at, so measuring a label while another thread draws one must not mix the two."""
    if not hasattr(cv2, "FontFace"):
        pytest.skip("this OpenCV has no FontFace")
    face = next(f for f in visualize._load_faces(str(DEJAVU)) if isinstance(f, visualize._OpenCVFont))
    expected = face.size("αβγ 0.87", 0.5, 1)
    started, stop = threading.Event(), threading.Event()

    def draw_big() -> None:
        canvas = np.zeros((200, 600, 3), np.uint8)
        while not stop.is_set():
            started.set()
            face.size("αβγ 0.87", 4.0, 3)
            face.put(canvas, "α", (0, 150), (255, 255, 255), 4.0, 3)

    other = threading.Thread(target=draw_big)
    other.start()
    try:
        started.wait()
        sizes = {face.size("αβγ 0.87", 0.5, 1) for _ in range(20000)}
    finally:
        stop.set()
        other.join()
    assert sizes == {expected}


@needs_dejavu
def test_fonts_a_search_rejects_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FontFace holds its whole font file in memory: the fonts a search loaded and rejected (64 were kept, which
    with CJK collections of tens of MB each is hundreds of MB) are let go; the chosen one is kept."""
    import gc

    monkeypatch.delenv(visualize.FONT_ENV, raising=False)
    monkeypatch.setattr(visualize, "_font_files", lambda chars: [str(DEJAVU)])
    draw_boxes(grey(), BOX, [0.87], [0], ["汽车"], line_width=2)  # DejaVu has no CJK: loaded, rejected
    gc.collect()
    assert not [o for o in gc.get_objects() if issubclass(type(o), visualize._FontFile)]
    draw_boxes(grey(), BOX, [0.87], [0], ["αβγ"], line_width=2)  # DejaVu has Greek: chosen, kept
    gc.collect()
    kept = [o for o in gc.get_objects() if issubclass(type(o), visualize._FontFile)]
    assert kept and all(any(k is f for f in visualize._found) for k in kept)
