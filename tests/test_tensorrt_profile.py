"""Optimisation-profile computation for TensorRT builds (pure; no TensorRT needed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pvt_deploy.errors import InputError
from pvt_deploy.export.tensorrt import compute_profile, parse_shapes


def manifest(dynamic: Any = None, imgsz: Any = (800, 1333), shape: Any = ("batch", 3, "height", "width")
             ) -> dict[str, Any]:
    return {
        "task": "detect",
        "inputs": [{"name": "images", "dtype": "float32", "shape": list(shape)}],
        "outputs": [{"name": "boxes", "dtype": "float32", "shape": ["batch", "num_boxes", 4]}],
        "preprocess": {"imgsz": list(imgsz), "stride": 32},
        "dynamic": dynamic,
    }


DYN = {"batch": [1, 8], "height": [32, 1344], "width": [32, 1344]}


def test_dynamic_defaults_cover_preprocessing_and_tune_for_imgsz() -> None:
    p = compute_profile(manifest(DYN))["images"]
    # max: a letterboxed image never exceeds max(imgsz)=1333 -> 1344 on either side.
    assert p == {"min": [1, 3, 32, 32], "opt": [1, 3, 800, 1344], "max": [8, 3, 1344, 1344]}


def test_spatial_dims_are_multiples_of_stride_and_inside_the_export_range() -> None:
    p = compute_profile(manifest({"batch": [1, 4], "height": [40, 1000], "width": [40, 1000]},
                                 imgsz=(500, 500)))["images"]
    for key in ("min", "opt", "max"):
        assert p[key][2] % 32 == 0 and p[key][3] % 32 == 0
        assert 64 <= p[key][2] <= 992
    assert p["opt"][2:] == [512, 512] and p["max"][2:] == [512, 512] and p["min"][2:] == [64, 64]


def test_static_export_gets_min_equal_opt_equal_max() -> None:
    p = compute_profile(manifest(None, imgsz=(224, 224), shape=(1, 3, 224, 224)))["images"]
    assert p["min"] == p["opt"] == p["max"] == [1, 3, 224, 224]


def test_dynamic_batch_only_export() -> None:
    p = compute_profile(manifest({"batch": [1, 16]}, imgsz=(224, 224), shape=("batch", 3, 224, 224)))["images"]
    assert p == {"min": [1, 3, 224, 224], "opt": [1, 3, 224, 224], "max": [16, 3, 224, 224]}


def test_overrides_are_clamped_to_the_export_range_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pvt_deploy.tensorrt"):
        p = compute_profile(manifest(DYN), {"min": [1, 3, 100, 100], "opt": [2, 3, 640, 640],
                                            "max": [64, 3, 4000, 1350]})["images"]
    assert p == {"min": [1, 3, 128, 128], "opt": [2, 3, 640, 640], "max": [8, 3, 1344, 1344]}
    assert "adjusted" in caplog.text


def test_named_override_and_opt_outside_default_range_widens_it() -> None:
    p = compute_profile(manifest(DYN, imgsz=(320, 320)), {"images": {"opt": [4, 3, 960, 960]}})["images"]
    assert p["opt"] == [4, 3, 960, 960]
    assert p["max"] == [8, 3, 960, 960] and p["min"] == [1, 3, 32, 32]


def test_max_override_pulls_default_opt_inside() -> None:
    p = compute_profile(manifest(DYN), {"max": [2, 3, 512, 512]})["images"]
    assert p["max"] == [2, 3, 512, 512] and p["opt"] == [1, 3, 512, 512]


def test_inconsistent_overrides_are_refused() -> None:
    with pytest.raises(InputError, match="min <= opt <= max"):
        compute_profile(manifest(DYN), {"min": [4, 3, 640, 640], "max": [2, 3, 320, 320]})


@pytest.mark.parametrize("bad, match", [
    ({"other": {"min": [1, 3, 32, 32]}}, "unknown input"),
    ({"min": [1, 3, 32]}, "has 3 dims"),
    ({"images": [1, 3, 32, 32]}, "min/opt/max"),
])
def test_bad_overrides_say_what_is_wrong(bad: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        compute_profile(manifest(DYN), bad)


def test_dynamic_dim_without_range_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no range"):
        compute_profile(manifest({"batch": [1, 2]}))


def test_parse_shapes_reads_trtexec_like_specs() -> None:
    assert parse_shapes("min=1x3x320x320,opt=1x3x640x640,max=8x3x1344x1344") == {
        "": {"min": [1, 3, 320, 320], "opt": [1, 3, 640, 640], "max": [8, 3, 1344, 1344]}}
    assert parse_shapes("images:opt=2x3x64x64") == {"images": {"opt": [2, 3, 64, 64]}}
    with pytest.raises(InputError, match="cannot read shape"):
        parse_shapes("min=1,3,320")


def test_shape_outside_engine_profile_names_the_allowed_range() -> None:
    from pvt_deploy.errors import ShapeError
    from pvt_deploy.runtimes.tensorrt import check_profile_shape

    lo, hi = (1, 3, 32, 32), (8, 3, 1344, 1344)
    check_profile_shape("images", (2, 3, 640, 480), lo, hi, ("batch", 3, "height", "width"))
    with pytest.raises(ShapeError) as e:
        check_profile_shape("images", (1, 3, 2048, 640), lo, hi, ("batch", 3, "height", "width"))
    msg = str(e.value)
    assert "[1, 3, 2048, 640]" in msg and "batch 1..8, dim1 3, height 32..1344, width 32..1344" in msg
    assert "\n" not in msg and e.value.exit_code == 2
    with pytest.raises(ShapeError, match="dim0 1..8"):  # wrong rank, no names
        check_profile_shape("images", (3, 64, 64), lo, hi)
