"""One dynamic ONNX runs batches and sizes its export never saw, and agrees with PyTorch there —
for every task, including PVT v1 (interpolated positional embeddings) and b2_li (adaptive pooling)."""

from __future__ import annotations

import numpy as np
import pytest
from export_fixtures import images, ort_run, torch_run

from pvt_deploy.export.parity import compare_outputs
from pvt_deploy.tasks.preprocess import Letterbox

pytest_plugins = ["export_fixtures"]

# (batch, height, width): none is the trace size, squares and both orientations, the 32 px minimum.
SIZES = [(1, 32, 32), (2, 96, 224), (3, 160, 64), (1, 256, 192)]


def _metas(n: int, h: int, w: int) -> list[Letterbox]:
    return [Letterbox((h, w), (h, w), (h, w))] * n


@pytest.mark.parametrize("name", ["seg_artifact", "cls_artifact", "feat_artifact"])
def test_unseen_sizes_match_pytorch(name: str, request: pytest.FixtureRequest) -> None:
    art = request.getfixturevalue(name)
    trace = tuple(art.manifest["export"]["trace_size"])
    for n, h, w in SIZES:
        assert (n, 3, h, w) != trace
        x = images(n, h, w, seed=h + w)
        ref, got = torch_run(art.module, x), ort_run(art.folder / "model.onnx", x)
        for key, r in ref.items():
            assert got[key].shape == r.shape, (key, got[key].shape, r.shape)
            scale = float(np.abs(r).max()) or 1.0
            assert np.abs(got[key] - r).max() <= 2e-4 * scale + 1e-5, (name, key, (n, h, w))


def test_detector_unseen_sizes_match_pytorch(det_artifact) -> None:
    """Raw boxes may be ordered differently on near-ties, so compare final detections and the
    order-free score profile."""
    post = det_artifact.manifest["postprocess"]
    total = 0
    for n, h, w in SIZES:
        x = images(n, h, w, seed=n * h)
        ref, got = torch_run(det_artifact.module, x), ort_run(det_artifact.folder / "model.onnx", x)
        assert got["boxes"].shape == ref["boxes"].shape and got["scores"].shape == ref["scores"].shape
        report = compare_outputs("detect", ref, got, _metas(n, h, w), post)
        assert report["agreement"] >= 0.99, ((n, h, w), report["task"])
        assert report["outputs"]["scores"]["max_abs"] < 1e-4
        total += report["task"]["ref_detections"]
    assert total > 50, "the perturbed head should produce detections"


def test_features_graph_declares_its_channels(feat_artifact) -> None:
    """Buffers are sized from the declared shapes (TensorRT, Triton): the four maps' channels are
    fixed numbers, only batch and the spatial sizes are dynamic."""
    import onnx

    from pvt_deploy.manifest import read_manifest

    model = onnx.load(str(feat_artifact.folder / "model.onnx"), load_external_data=False)
    channels = feat_artifact.module.model.out_channels
    declared = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert declared == {f"feat_s{s}": ["batch", c, f"height_s{s}", f"width_s{s}"]
                        for s, c in zip((4, 8, 16, 32), channels, strict=True)}
    outputs = {o["name"]: o["shape"] for o in read_manifest(feat_artifact.folder)["outputs"]}
    assert outputs == declared
