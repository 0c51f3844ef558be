"""Export: faults found in session 48 and fixed by helper CG in session 49 (the model's check run once, the
output folder's name measured where it really is, video calibration frames held at the model's size)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run

import pvt_deploy.export.onnx as export_onnx


def test_the_cli_export_checks_the_model_named_before_anything_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """export() checks that the model names something before it looks for TensorRT, and export_onnx checked it
    again; 84aa096 spared the second check with a flag, which went in session 50 (the check is a path looked up
    and a zoo name: nothing to spare, and the flag had leaked into export_onnx's options, d310dc9). What counts
    stays: the model is checked, from the CLI and from export_onnx alone, before anything is made."""
    checked: list[object] = []
    real = export_onnx.check_model_named
    monkeypatch.setattr(export_onnx, "check_model_named", lambda *a: checked.append(a[0]) or real(*a))
    (tmp_path / "file").write_text("")
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "-o", str(tmp_path / "file"))
    assert (code, stdout, err) == (2, "", f"error: output {tmp_path / 'file'} exists and is not a folder\n")
    assert set(checked) == {"pvt_v2_b0-cls"}
    checked.clear()
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b9-cls", "-o", str(tmp_path / "x"))
    assert code == 2 and err.startswith("error: unknown model 'pvt_v2_b9-cls'")
    assert set(checked) == {"pvt_v2_b9-cls"}
    checked.clear()
    from pvt_deploy.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="unknown model 'pvt_v2_b9-cls'"):
        export_onnx.export_onnx("pvt_v2_b9-cls", tmp_path / "x")
    assert set(checked) == {"pvt_v2_b9-cls"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_the_output_folders_name_is_measured_where_a_link_given_as_output_leads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``-o link``, a link to a folder whose name was too long for the staging folder built beside it
    (``.NAME.pvt-new-HOST-PID-XXXX``): the name was measured on the link's, so the model was loaded, then refused in
    other words ('cannot write to output folder link (File name too long)'). The real folder is measured; since
    session 51 the staging folder's name is cut to fit (SwappedFolder._named), so a link to a folder of the longest
    name the file system takes exports into it, the link left a link, the staging folder beside the real folder and
    gone (a link to a folder that is not there is refused as such: test_followups_49)."""
    import os

    loaded: list[object] = []
    real_load = export_onnx._load
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **kw: loaded.append(a) or real_load(*a, **kw))
    real = tmp_path / "real"
    real.mkdir()
    longest = "c" * os.pathconf(real, "PC_NAME_MAX")
    link = tmp_path / "link"
    (real / longest).mkdir()
    link.symlink_to(real / longest, target_is_directory=True)
    code, _, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--no-parity",
                       "-o", str(link))
    assert code == 0, err
    assert len(loaded) == 1
    assert link.is_symlink() and [p.name for p in real.iterdir()] == [longest]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    assert {"manifest.json", "model.onnx"} <= {p.name for p in link.iterdir()}


def test_calibration_pictures_are_preprocessed_as_they_are_decoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_batches decoded every image file at its own size before preprocessing any (64 photos of 12 MP: 2.3 GB
    held at once, which the export's memory check, weighing the preprocessed pictures, did not count). Each is
    preprocessed as it is decoded: no decoded picture outlives its turn, and the batches are the ones preprocessing
    the groups whole gave, for a dynamic graph (one a batch) and a static one (5 pictures at batch 3: the last
    group filled with the first pictures)."""
    import gc
    import weakref

    import cv2
    import numpy as np

    import pvt_deploy.io.sources as sources
    from pvt_deploy.export.calibration import VideoFrame, make_batches
    from pvt_deploy.tasks.preprocess import Preprocessor, preprocess_spec

    rng = np.random.default_rng(0)
    paths: list[object] = []
    for i, (h, w) in enumerate([(480, 640), (300, 200), (96, 96), (720, 1280)]):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), rng.integers(0, 255, (h, w, 3), np.uint8))
        paths.append(tmp_path / f"p{i}.png")
    paths.insert(2, VideoFrame("clip.mp4", 40, rng.integers(0, 255, (360, 480, 3), np.uint8)))
    decoded = [sources.read_image(p) if isinstance(p, Path) else p.image for p in paths]
    alive: list[weakref.ref[np.ndarray]] = []
    held: list[int] = []
    real_read = sources.read_image

    def read_image(path: Path) -> np.ndarray:
        gc.collect()
        held.append(sum(r() is not None for r in alive))  # decoded files still alive when the next one is read
        image = real_read(path)
        alive.append(weakref.ref(image))
        return image

    monkeypatch.setattr(sources, "read_image", read_image)
    for dynamic, batch in ((True, None), (False, 3)):
        spec = preprocess_spec("detect", (128, 160), dynamic=dynamic, mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
        pre = Preprocessor(spec, dynamic=dynamic)
        held.clear()
        batches = make_batches(paths, pre, batch=batch)  # type: ignore[arg-type]
        assert held == [0, 0, 0, 0]
        size = batch or 1
        groups = [list(range(i, min(i + size, 5))) for i in range(0, 5, size)]
        assert len(batches) == len(groups)
        for got, group in zip(batches, groups, strict=True):
            filled = group + [k % 5 for k in range(len(group), size)]
            want, metas = pre.batch([decoded[k] for k in filled])
            np.testing.assert_array_equal(got.images, want)
            assert got.metas == metas[:len(group)]
            assert got.names == [paths[k].name for k in group]  # type: ignore[attr-defined]
