"""Export leftovers of session 50 (helper CX): what an extension makes is decided once, an export made before
the manifest recorded --trust-checkpoint (25105b2), and the memory an anamorphic --calib clip's frames need."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_run import run

import pvt_deploy.export.onnx as export_onnx
from pvt_deploy.manifest import read_manifest


def test_an_extension_with_calib_decides_once_what_it_makes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``--calib``, export_onnx asked _wanted_variants what the extension makes (to say before the pictures
    are listed whether --calib serves anything, a662fe8), then _extend asked it again: each INT8 file opened and
    checked against the manifest twice. It is asked once, and the answer holds: the FP16 file made, the INT8
    files there kept byte for byte."""
    from PIL import Image
    from test_tensorrt_build_fake import make_artifact

    asked: list[Any] = []
    real = export_onnx._wanted_variants
    monkeypatch.setattr(export_onnx, "_wanted_variants", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    folder = make_artifact(tmp_path / "art", "model.int8.onnx", "model.int8.trt.onnx")
    kept = {n: (folder / n).read_bytes() for n in ("model.int8.onnx", "model.int8.trt.onnx")}
    mine = tmp_path / "mine"
    mine.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(mine / "a.png")
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", "--half", "--calib", str(mine))
    assert code == 0, err
    assert len(asked) == 1, asked
    assert read_manifest(folder)["files"]["model.fp16.onnx"]["precision"] == "fp16"
    assert {n: (folder / n).read_bytes() for n in kept} == kept


def _clip(path: Path, width: int, height: int, sar: Fraction | None) -> Path:
    """12 frames of H.264 in mp4, stored ``width`` x ``height``, of pixels ``sar`` wide (None: square)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        for i in range(12):
            image = np.full((height, width, 3), 20 * i, np.uint8)
            image[:, : width // 2, 0] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_an_anamorphic_calib_clip_is_weighed_at_the_width_its_frames_are_kept_at(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A --calib clip of non-square pixels (640x480 stored, 2:1: a player shows 1280x480) gives frames widened to
    1280x480, as infer reads them, but was weighed against the memory free at 640x480: the RGB frames it keeps need
    twice what was counted. It is weighed at 1280x480, with its decoding and the 4 frames kept (120 + 3 x 4 bytes
    a pixel): with memory free between the two figures, the export says so in one line (exit 2) before the model
    is built, nothing made; a clip of square pixels stored 640x480 is read, and so is the anamorphic one with
    memory enough, its frames 1280 wide."""
    from pvt_deploy.export.calibration import usable_images
    from pvt_deploy.io.sources import VIDEO_BYTES_PER_PIXEL_UNSAVED
    from pvt_deploy.utils import cpu

    wide = _clip(tmp_path / "wide.mp4", 640, 480, Fraction(2, 1))
    square = _clip(tmp_path / "square.mp4", 640, 480, None)
    per_pixel = VIDEO_BYTES_PER_PIXEL_UNSAVED + 3 * 4
    stored, shown = 640 * 480 * per_pixel, 1280 * 480 * per_pixel
    free = stored * 3 // 2  # above the stored size's need, below the shown size's
    monkeypatch.setattr(cpu, "available_memory", lambda: free)
    assert [f.image.shape for f in usable_images(square, 4)] == [(480, 640, 3)] * 4  # type: ignore[union-attr]
    loaded: list[Any] = []
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **kw: loaded.append(a))
    out = tmp_path / "out"
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--int8",
                            "--calib", str(wide), "--calib-size", "4", "-o", str(out))
    assert (code, stdout, loaded) == (2, "", []), err
    assert err.strip().splitlines() == [f"error: calibration images: {wide}: a 1280x480 video needs about "
                                        f"{shown / 1e6:.0f} MB of memory to decode and run, more than the "
                                        f"{free / 1e6:.0f} MB free (free some memory, or scale it down)"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["square.mp4", "wide.mp4"]
    monkeypatch.setattr(cpu, "available_memory", lambda: shown)
    assert [f.image.shape for f in usable_images(wide, 4)] == [(480, 1280, 3)] * 4  # type: ignore[union-attr]
