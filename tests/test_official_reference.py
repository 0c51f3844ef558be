"""Our models reproduce outputs recorded from the OFFICIAL whai362/PVT model files.

tests/data/official_reference.npz was written by scripts/record_official_reference.py, which runs the
official classification and detection model definitions on seeded synthetic weights in the official
key layout. Here the same weights are saved to disk in that layout, loaded through
``create_model`` + ``load_weights`` and run through ``.backbone`` (or the classifier), and a fixed
sample of every output must match within 1e-4 relative error — at 224 and at non-square sizes up to
800x1216. The same outputs are then reproduced by ONNX Runtime from dynamic exports made at 224,
at every other recorded size (v1 positional embeddings and b2_li's adaptive pooling included).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from export_fixtures import OFFICIAL_REFERENCE, Artifact

from pvt_deploy.models import create_model

pytest_plugins = ["export_fixtures"]

ROOT = Path(__file__).parents[1]
DATA = np.load(OFFICIAL_REFERENCE)
_spec = importlib.util.spec_from_file_location("record_ref", ROOT / "scripts/record_official_reference.py")
assert _spec and _spec.loader
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

CASES = [(name, task, hw) for name, (det, cls) in record.CASES.items()
         for task, sizes in (("features", det), ("classify", cls)) for hw in sizes]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module")
def official_model(official_weights: Callable[[str], Path]) -> Callable[[str, str], torch.nn.Module]:
    """``get(backbone, task)``: the model that runs the recorded inputs, loaded from ``official_weights``
    (export_fixtures: the seeded classification checkpoints, in the official flat layout) once for all of
    its sizes: a build (weight init, then the checkpoint) took as long as a run at 224, and the outputs
    are of the loaded weights, whatever size ran before."""
    made: dict[tuple[str, str], torch.nn.Module] = {}

    def get(name: str, task: str) -> torch.nn.Module:
        if (name, task) not in made:
            if task == "features":
                # The official way to initialise a detector: a classification checkpoint into its backbone.
                made[name, task] = create_model(name, task="detect", weights=official_weights(name)).backbone
            else:
                made[name, task] = create_model(name, task="classify", weights=official_weights(name))
        return made[name, task]

    return get


@pytest.mark.parametrize(("name", "task", "hw"), CASES, ids=[f"{n}-{t}-{h[0]}x{h[1]}" for n, t, h in CASES])
def test_matches_official(name: str, task: str, hw: tuple[int, int],
                          official_model: Callable[[str, str], torch.nn.Module]) -> None:
    run = official_model(name, task)
    with torch.no_grad():
        outs = run(record.input_for(name, hw))
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    for i, o in enumerate(outs):
        key = f"{name}/{task}/{hw[0]}x{hw[1]}/{i}"
        assert tuple(o.shape) == tuple(DATA[key + "/shape"]), key
        assert _rel(record.sample(o), DATA[key]) < 1e-4, key
        total, abs_total = DATA[key + "/sum"]
        assert abs(o.double().abs().sum().item() - abs_total) <= 1e-4 * abs_total, key


# ONNX Runtime on dynamic exports, at sizes the export never saw, against the same official outputs.
ONNX_CASES = [("pvt_tiny", "features"), ("pvt_v2_b2_li", "features"), ("pvt_v2_b0", "classify")]


@pytest.mark.parametrize(("name", "task"), ONNX_CASES, ids=[f"{n}-{t}" for n, t in ONNX_CASES])
def test_onnx_runtime_matches_official_at_unseen_sizes(name: str, task: str,
                                                       official_export: Callable[[str, str], Artifact]) -> None:
    import onnxruntime as ort

    from pvt_deploy.manifest import read_manifest

    # the session's export (export_fixtures; b2_li's is feat_artifact too), made at 224 with these weights
    folder = official_export(name, task).folder
    manifest = read_manifest(folder)
    pre = manifest["preprocess"]
    assert pre["normalize_in_graph"] and pre["color"] == "RGB"
    mean = np.asarray(pre["mean"], np.float64).reshape(1, 3, 1, 1)
    std = np.asarray(pre["std"], np.float64).reshape(1, 3, 1, 1)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    sizes = [hw for n, t, hw in CASES if n == name and t == task and hw != (224, 224)]
    assert sizes
    for hw in sizes:
        # The recorded input is already normalised; the graph normalises raw pixels itself.
        raw = (record.input_for(name, hw).double().numpy() * std + mean).astype(np.float32)
        outs = session.run(None, {"images": raw})
        assert len(outs) == (4 if task == "features" else 1)
        for i, o in enumerate(outs):
            key = f"{name}/{task}/{hw[0]}x{hw[1]}/{i}"
            assert tuple(o.shape) == tuple(DATA[key + "/shape"]), key
            assert _rel(record.sample(torch.from_numpy(o)), DATA[key]) < 1e-4, key
