"""Graph quality of exported files: opset, one LayerNormalization per nn.LayerNorm, no size baked from
the export size, named I/O, onnx.checker, simplification, metadata for a lone .onnx."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from pvt_deploy.export.graph import (
    count_layernorm_modules,
    find_baked_shapes,
    module_constants,
    op_counts,
    opset_of,
)
from pvt_deploy.manifest import ONNX_METADATA_KEY, essentials

pytest_plugins = ["export_fixtures"]

ARTIFACTS = ("det_artifact", "seg_artifact", "cls_artifact", "feat_artifact")


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.onnx"))


@pytest.mark.parametrize("name", ARTIFACTS)
def test_graph_invariants(name: str, request: pytest.FixtureRequest) -> None:
    art = request.getfixturevalue(name)
    manifest = art.manifest
    expected_ln = count_layernorm_modules(art.module, torch.rand(1, 3, 64, 64) * 255)
    trace_h, trace_w = manifest["export"]["trace_size"][2:]
    allowed = module_constants(art.module) | {1000, 100, 5, 4}
    for path in _files(art.folder):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        counts = op_counts(model)
        assert opset_of(model) >= 17, path.name
        assert counts["LayerNormalization"] == expected_ln, (path.name, counts["LayerNormalization"], expected_ln)
        assert not counts.get("Pow") and not counts.get("Sqrt"), f"{path.name}: decomposed LayerNorm"
        baked, unverifiable = find_baked_shapes(model, trace_h, trace_w, allowed=allowed, pre_nms_topk=1000)
        assert not baked, [str(b) for b in baked[:3]]
        assert unverifiable <= {2, 3}, unverifiable  # the trace size was chosen to avoid clashes
        assert [i.name for i in model.graph.input] == ["images"]
        assert [o.name for o in model.graph.output] == list(art.module.output_names)
        dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 3, "height", "width"], path.name


@pytest.mark.parametrize("name", ARTIFACTS)
def test_simplified_and_metadata(name: str, request: pytest.FixtureRequest) -> None:
    art = request.getfixturevalue(name)
    manifest = art.manifest
    assert manifest["export"]["nodes_after"] < manifest["export"]["nodes_before"]
    for path in _files(art.folder):
        model = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
        meta = json.loads(props[ONNX_METADATA_KEY])
        assert meta == essentials(manifest), path.name  # a lone .onnx carries what it needs to run
    model = onnx.load(str(art.folder / "model.onnx"), load_external_data=False)
    assert len(model.graph.node) == manifest["export"]["nodes_after"]


def test_static_export_bakes_sizes_and_checker_sees_it(tmp_path: Path) -> None:
    """The checker's reason to exist: a static graph does hold export-size shapes, and it finds them."""
    from pvt_deploy.export import export_onnx

    torch.manual_seed(0)
    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "static", imgsz="96x160", dynamic=False, batch=2,
                         parity=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dynamic"] is None
    assert manifest["inputs"][0]["shape"] == [2, 3, 96, 160]
    assert manifest["parity"]["model.onnx"]["passed"]
    model = onnx.load(str(folder / "model.onnx"))
    baked, _ = find_baked_shapes(model, 96, 160, allowed={32, 64, 160, 256, 1, 2, 5, 8, 1000, 7, 9})
    assert baked, "a static export should contain sizes derived from 96x160"
