"""Graph quality of exported files: opset, one LayerNormalization per nn.LayerNorm, no size baked from
the export size, named I/O, onnx.checker, simplification, metadata for a lone .onnx."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from export_fixtures import images, ort_run

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


@pytest.fixture(scope="module")
def b0_traced_at_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pvt_v2_b0 classifier exported for 32..128 px: below the trace sizes, so it is traced at 128x128,
    where stage 1's 32 channels are also its stride-4 height (a size the checker cannot tell from a channel
    count) and its stride-8 height, 16, is no constant of the model."""
    from pvt_deploy.export import export_onnx

    torch.manual_seed(0)
    folder = export_onnx("pvt_v2_b0-cls", tmp_path_factory.mktemp("b0") / "b0", imgsz=64, max_size=128)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["export"]["trace_size"] == [1, 3, 128, 128]
    unverifiable = manifest["export"]["graph"]["unverifiable_sizes"]
    assert 32 in unverifiable and 16 not in unverifiable, unverifiable
    return folder


def test_int8_added_to_an_export_folder_is_checked_as_when_exported_with_it(b0_traced_at_128: Path,
                                                                            tmp_path: Path) -> None:
    """The CPU INT8 layout writes the model's channel counts as shape constants (the K/V Split's [32, 32],
    the MLP's [0, -1, 256]) that the FP32 graph computes at run time. Added to the folder later, the INT8
    graph was checked against the FP32 graph's own constants ([0, 2]) and refused ('Split ... kv_Split
    input 1 = [32, 32]'), where one export with --int8 passed: both now allow the export-size values the
    FP32 check found to be the model's (the manifest's unverifiable_sizes)."""
    from pvt_deploy.export import export_onnx

    folder = tmp_path / "b0"
    shutil.copytree(b0_traced_at_128, folder)
    assert export_onnx(folder, int8=True, int8_flavour="cpu") == folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parity"]["model.int8.onnx"]["passed"]
    fp32_graph = manifest["export"]["graph"]
    assert manifest["precision"]["int8"]["cpu"]["graph"]["unverifiable_sizes"] == fp32_graph["unverifiable_sizes"]
    x = images(2, 96, 64, seed=1)  # a size neither the trace (128x128) nor the parity gate (64x64) ran
    fp32, int8 = ort_run(folder / "model.onnx", x)["logits"], ort_run(folder / "model.int8.onnx", x)["logits"]
    assert int8.shape == fp32.shape == (2, 1000)
    cosine = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    assert cosine.min() > 0.99, cosine
    assert (fp32.argmax(1) == int8.argmax(1)).all()


def test_a_variant_added_to_an_export_folder_that_bakes_a_size_is_refused(
        b0_traced_at_128: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the check of an added variant still refuses: a Reshape to the trace's stride-8 height (16 at
    128x128), which is no constant of the model; nothing is added to the folder."""
    from onnx import helper, numpy_helper

    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.export import export_onnx, precision

    real = precision.convert_fp16

    def baking(model: onnx.ModelProto, **kwargs: Any) -> tuple[onnx.ModelProto, dict[str, Any]]:
        model16, record = real(model, **kwargs)
        model16.graph.initializer.append(numpy_helper.from_array(np.array([0, 3, 16, -1], np.int64), "rows"))
        model16.graph.node.append(helper.make_node("Reshape", ["images", "rows"], ["by_rows"], name="baked"))
        return model16, record

    monkeypatch.setattr(precision, "convert_fp16", baking)
    folder = tmp_path / "b0"
    shutil.copytree(b0_traced_at_128, folder)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(PvtDeployError, match=r"model\.fp16\.onnx: graph check failed: 1 shape constant\(s\) "
                                             r"baked from the export size, e\.g\. Reshape 'baked' .*\[16\]"):
        export_onnx(folder, half=True)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert "model.fp16.onnx" not in json.loads((folder / "manifest.json").read_text())["files"]


def test_a_v1_int8_export_traced_at_128_is_not_refused_for_its_patch_rows(tmp_path: Path) -> None:
    """The CPU INT8 layout runs PVT v1's patch and SR convs as MatMuls on patch rows, reshaped to the constant
    (0, -1, k*k*C): 4096 for stage 1's SR conv (64 channels, 8x8), which a trace at 128x128 (an export up to
    --max-size 128) also gives as the stride-2 token count, so ``export pvt_tiny-cls --max-size 128 --int8``
    was refused ('Reshape .../sr/Conv/patch_matmul_11_Reshape input 1 = [0, -1, 4096]'). The rows now take
    their shape from the patch grid; the graph still runs at sizes the trace did not see."""
    from pvt_deploy.export import export_onnx

    torch.manual_seed(0)
    folder = export_onnx("pvt_tiny-cls", tmp_path / "v1", imgsz=64, max_size=128, int8=True, int8_flavour="cpu")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["export"]["trace_size"] == [1, 3, 128, 128]
    assert manifest["parity"]["model.int8.onnx"]["passed"]
    assert manifest["precision"]["int8"]["cpu"]["layout"]["patch_matmuls"] > 0
    x = images(2, 96, 64, seed=1)  # neither the trace's size (128x128) nor the parity gate's (64x64)
    fp32, int8 = ort_run(folder / "model.onnx", x)["logits"], ort_run(folder / "model.int8.onnx", x)["logits"]
    assert int8.shape == fp32.shape == (2, 1000)
    cosine = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    assert cosine.min() > 0.99, cosine
