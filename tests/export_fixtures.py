"""Exported artifacts shared by the export tests (session scope: each model is exported once).

Registered with ``pytest_plugins = ["export_fixtures"]`` by the test modules that use the fixtures
(so one session-scoped export serves them all); the helpers are imported directly, hence
PYTEST_DONT_REWRITE (pytest would otherwise warn that the module was imported before it could
rewrite its asserts).

Import the fixtures into a test module with ``from export_fixtures import *``-style explicit imports.
Tiny variants at small sizes keep the whole export suite within a few minutes on 2 CPU cores:

* ``det_artifact``: pvt_v2_b0 RetinaNet, 160 px, dynamic, FP16 + both INT8 flavours, loaded from a
  seeded checkpoint whose classification head is perturbed so that real detections exist (a random
  RetinaNet head scores everything at the 0.01 focal prior, below the 0.05 threshold);
* ``seg_artifact``: pvt_tiny (v1, positional embeddings) Semantic FPN, 128 px;
* ``cls_artifact``: pvt_tiny (v1, cls token) classifier, 64 px;
* ``feat_artifact``: pvt_v2_b2_li (linear SRA, adaptive pooling) backbone, 224 px, with the seeded weights
  tests/data/official_reference.npz was recorded from: one of ``official_export``'s, which
  test_official_reference checks against the official model's outputs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pvt_deploy.models import build_deploy_module, create_model
from pvt_deploy.models.synthetic import seeded_state_dict

OFFICIAL_REFERENCE = Path(__file__).parent / "data" / "official_reference.npz"


@dataclass
class Artifact:
    folder: Path
    module: torch.nn.Module  # the exported deploy graph in PyTorch (reference)
    weights: Path | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.folder / "manifest.json").read_text())


def run_folder(factory: pytest.TempPathFactory) -> Path:
    """Where a test run keeps what is made once for all of it: the session's base temp, or under
    pytest-xdist (``make test`` runs two workers, each with a base temp of its own) their common parent,
    the run's own folder, so that the workers share one export instead of each making it."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def made_once(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` (``<path>.lock``, fcntl.flock) held while one worker makes
    ``path``: another worker that wants it waits, then finds it made. The caller checks for it inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def perturbed_detector(seed: int = 0) -> torch.nn.Module:
    """pvt_v2_b0 RetinaNet whose class logits vary by location and class, so detections exist.

    The head convs get He-like weights (the 0.01 init all but erases the features), and the class
    biases spread around a low prior: a handful of confident boxes and a tail near the threshold.
    Biases and LayerNorm affines get small random values, as trained ones have: with the init's exact
    zeros, letterbox padding makes tokens whose LayerNorm variance is exactly 0, where any rounding
    is amplified by 1/sqrt(eps) — a property of the init, not of the export.
    """
    torch.manual_seed(seed)
    model = create_model("pvt_v2_b0")
    g = torch.Generator().manual_seed(seed)
    head = model.bbox_head
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=g) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
        for conv in [m.conv for m in head.cls_convs] + [head.retina_cls]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * WEIGHT_STD)
        head.retina_cls.bias.copy_(torch.randn(head.retina_cls.bias.shape, generator=g) * 0.5 + BIAS_MEAN)
    return model


WEIGHT_STD, BIAS_MEAN = 0.026, -7.0


def images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB images in 0..255 (raw pixels, as the graph takes them)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(n, 3, max(2, h // 16), max(2, w // 16))).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(small), size=(h, w), mode="bilinear", align_corners=False)
    return (x.numpy() + rng.normal(0, 8, size=(n, 3, h, w))).clip(0, 255).astype(np.float32)


def _export(folder: Path, model: Any, **kw: Any) -> Path:
    from pvt_deploy.export import export_onnx

    return export_onnx(model, folder, **kw)


def _export_once(folder: Path, model: Any, **kw: Any) -> Path:
    """:func:`_export` into ``folder`` of the run (:func:`run_folder`) where no worker has made it yet."""
    with made_once(folder):
        if not (folder / "manifest.json").is_file():
            _export(folder, model, **kw)
    return folder


@pytest.fixture(scope="session")
def det_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    root = run_folder(tmp_path_factory) / "det"
    ckpt, folder = root / "retinanet_b0_seeded.pth", root / "pvt_v2_b0"
    with made_once(root):
        if not (folder / "manifest.json").is_file():
            root.mkdir(exist_ok=True)
            torch.save(perturbed_detector().state_dict(), ckpt)
            _export(folder, "pvt_v2_b0", weights=ckpt, imgsz=160, half=True, int8=True)
    module = build_deploy_module(create_model("pvt_v2_b0", weights=ckpt))
    return Artifact(folder, module, ckpt)


@pytest.fixture(scope="session")
def seg_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    torch.manual_seed(1)
    model = create_model("pvt_tiny-seg")
    folder = _export_once(run_folder(tmp_path_factory) / "seg" / "pvt_tiny-seg", model, imgsz=128)
    return Artifact(folder, build_deploy_module(model))


@pytest.fixture(scope="session")
def cls_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    torch.manual_seed(2)
    model = create_model("pvt_tiny-cls")
    folder = _export_once(run_folder(tmp_path_factory) / "cls" / "pvt_tiny-cls", model, imgsz=64)
    return Artifact(folder, build_deploy_module(model))


@pytest.fixture(scope="session")
def official_weights(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``get(backbone)``: the checkpoint file of its classifier with the seeded weights (in the official flat
    layout) that scripts/record_official_reference.py ran the official model definitions on; written once."""
    folder = run_folder(tmp_path_factory) / "official_ckpt"

    def get(name: str) -> Path:
        path = folder / f"{name}.pth"
        with made_once(path):
            if not path.is_file():
                with np.load(OFFICIAL_REFERENCE) as data:
                    seed = int(data["meta/seed"])
                staged = path.with_name(path.name + ".part")
                torch.save(seeded_state_dict(create_model(name, task="classify"), seed), staged)
                staged.rename(path)
        return path

    return get


@pytest.fixture(scope="session")
def official_export(official_weights: Callable[[str], Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Artifact]:
    """``get(backbone, task)``: its dynamic export at 224 px with ``official_weights``; made once, read only.

    Without the export's parity gate: its users compare these graphs in ONNX Runtime with more than the
    gate would (the official model's recorded outputs at every other recorded size, to 1e-4; PyTorch at
    four unseen batches and sizes), and the gate's PyTorch and ONNX Runtime runs at 224 were ~a third of
    each export's time."""
    root = run_folder(tmp_path_factory) / "official"
    made: dict[tuple[str, str], Artifact] = {}

    def get(name: str, task: str) -> Artifact:
        if (name, task) not in made:
            model = create_model(name, task=task, weights=official_weights(name))
            folder = _export_once(root / f"{name}-{task}", model, imgsz=224, dynamic=True, parity=False)
            made[name, task] = Artifact(folder, build_deploy_module(model), official_weights(name))
        return made[name, task]

    return get


@pytest.fixture(scope="session")
def feat_artifact(official_export: Callable[[str, str], Artifact]) -> Artifact:
    return official_export("pvt_v2_b2_li", "features")


def cached_big_cls_int8(factory: pytest.TempPathFactory) -> Path:
    """A pvt_v2_b0 classifier up to 4096 px whose CPU INT8 graph holds its attention scores whole
    ((H*W/16) x (H*W/1024) floats, 10.5 GB at 2560x2560), exported once a run into its folder (:func:`run_folder`), as
    runtime_artifacts.cached_export's are (a session fixture imported into two modules is made in each).
    Read only: test_cli_options_46 and test_export_47 run sizes it cannot take."""
    return _export_once(run_folder(factory) / "exports" / "big-cls-int8", "pvt_v2_b0-cls", imgsz=64, max_size=4096,
                        int8=True, int8_flavour="cpu", parity=False, simplify=False)


def cached_cls_static_batch2(factory: pytest.TempPathFactory) -> Path:
    """A pvt_v2_b0 classifier exported --static --batch 2 at a non-square 64x96, not simplified (check compares
    the graph as traced with PyTorch as closely), without the parity gate; once a session, read only
    (test_export_combinations checks it, test_untested_runtime_paths refuses a batch of 3 on it)."""
    return _export_once(run_folder(factory) / "exports" / "cls-static-b2", "pvt_v2_b0-cls", dynamic=False, batch=2,
                        imgsz=(64, 96), parity=False, simplify=False)


def ort_run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    session = _ort_session(str(path), *_file_key(path))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"images": x}), strict=True))


def _file_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=1)
def _ort_session(path: str, *file_key: int) -> Any:
    """One session for consecutive runs of the same file (a loop over sizes or batches), as a backend
    holds one; a file written again (another inode, size or mtime) gets a new session."""
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def torch_run(module: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return {n: t.numpy() for n, t in zip(module.output_names, out, strict=True)}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64) + 1e-30))
