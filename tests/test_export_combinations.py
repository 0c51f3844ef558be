"""Export options x what consumes the export: each test exports a tiny model with a combination of
export options (module-scoped, a few seconds each) and consumes it the way the README promises
(``check``, ``infer``, the Python API, a lone ``.onnx``, ``info``), asserting what the user would see."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvt_deploy.export.onnx import export_onnx


@pytest.fixture(scope="module")
def cls_static_batch2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pvt_v2_b0 classifier, --static --batch 2 at a non-square 64x96."""
    out = tmp_path_factory.mktemp("combo") / "cls_static_b2"
    return export_onnx("pvt_v2_b0-cls", out, dynamic=False, batch=2, imgsz=(64, 96), parity=False)


def test_check_runs_on_a_static_batch_export(cls_static_batch2: Path) -> None:
    """`pvt-deploy check` compares one picture per call: the static graph's padded second row is not an
    image (it crashed with 'zip() argument 2 is longer than argument 1', exit 1)."""
    from pvt_deploy.bench import cross_check

    report = cross_check(cls_static_batch2, backends="torch,onnx", max_images=2)
    rows = {r["backend"]: r for r in report["results"]}
    assert rows["onnx"]["status"] == "ok"
    assert rows["onnx"]["images"] == 2
    assert rows["onnx"]["outputs"]["logits"]["cosine"] > 0.9999
    assert report["passed"]
