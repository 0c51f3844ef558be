"""The dynamo exporter gives a graph with the same contract: names, checks, dynamic sizes, parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from export_fixtures import images, ort_run, torch_run

from pvt_deploy.export.graph import count_layernorm_modules, op_counts, opset_of
from pvt_deploy.manifest import read_manifest
from pvt_deploy.models import build_deploy_module, create_model


def test_dynamo_export(tmp_path: Path) -> None:
    from pvt_deploy.export import export_onnx

    torch.manual_seed(4)
    model = create_model("pvt_v2_b0-cls")
    folder = export_onnx(model, tmp_path / "dynamo", imgsz=64, exporter="dynamo")
    m = read_manifest(folder)
    assert m["export"]["exporter"] == "dynamo" and m["export"]["opset"] >= 18
    assert m["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert m["outputs"][0]["shape"] == ["batch", 1000]
    assert m["parity"]["model.onnx"]["passed"]
    graph = onnx.load(str(folder / "model.onnx"))
    module = build_deploy_module(model)
    assert opset_of(graph) >= 18
    assert op_counts(graph)["LayerNormalization"] == count_layernorm_modules(module, torch.rand(1, 3, 64, 64))
    for n, h, w in ((1, 32, 96), (3, 128, 64)):  # batch 1 and 3 though traced with 2; unseen sizes
        x = images(n, h, w, seed=n)
        ref, got = torch_run(module, x)["logits"], ort_run(folder / "model.onnx", x)["logits"]
        assert np.abs(ref - got).max() < 1e-4
