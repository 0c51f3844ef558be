"""The dynamo exporter gives a graph with the same contract: names, checks, dynamic sizes, parity."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_fixtures import images, ort_run, torch_run

from pvt_deploy.export.graph import count_layernorm_modules, op_counts, opset_of
from pvt_deploy.manifest import read_manifest
from pvt_deploy.models import build_deploy_module, create_model


def test_dynamo_export(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pvt_deploy.export import export_onnx

    torch.manual_seed(4)
    model = create_model("pvt_v2_b0-cls")
    for i in range(1, 5):  # one block per stage, not b0's two: the same layers, at 2/3 of dynamo's tracing time
        setattr(model, f"block{i}", getattr(model, f"block{i}")[:1])
    with caplog.at_level(logging.INFO, logger="pvt_deploy"):
        folder = export_onnx(model, tmp_path / "dynamo", imgsz=64, exporter="dynamo")
    # no opset asked for: dynamo's own lowest, not warned of (an opset asked for below it is: test_cli_export)
    assert not [r for r in caplog.records if "opset" in r.getMessage() and r.levelno >= logging.WARNING]
    m = read_manifest(folder)
    assert m["export"]["exporter"] == "dynamo" and m["export"]["opset"] == 18
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


def test_export_help_names_torchs_opset_limit_without_importing_torch() -> None:
    """``export --help`` names the highest opset the TorchScript exporter writes, torch's own
    ``ONNX_MAX_OPSET``. Importing torch for it made the help take ~2.7 s instead of ~0.5 s; the number
    is read from torch's source instead, and it is the one torch itself holds."""
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from pvt_deploy.cli import app\n"
            "from pvt_deploy.export.onnx import max_opset\n"
            "result = CliRunner().invoke(app, ['export', '--help'], env={'COLUMNS': '200'})\n"
            "assert result.exit_code == 0, result.output\n"
            "print(max_opset('torchscript')[0], 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    number, imported = out.stdout.split()
    from torch.onnx import _constants

    assert (int(number), imported) == (_constants.ONNX_MAX_OPSET, "False")
