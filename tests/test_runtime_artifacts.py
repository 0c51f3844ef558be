"""Small real export folders for the runtime, API and CLI tests, and checks that they are what the
architecture contract says (manifest keys, ONNX metadata, sha256).

Other test modules import ``make_export`` / ``make_clip`` and the session fixtures from here, so each
tiny model is traced once per test session. Models are ``pvt_v2_b0`` with seeded random weights
saved to disk in the official layout (the export records them as its weights, so PyTorch can be
rebuilt from the folder), traced with the TorchScript exporter at opset 17 with dynamic batch/H/W.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from export_fixtures import made_once, run_folder  # noqa: E402

from pvt_deploy.manifest import ONNX_METADATA_KEY, essentials, file_entry, read_manifest, write_manifest  # noqa: E402

pytest_plugins = ["export_fixtures"]

IMGSZ = (128, 128)
DYNAMIC = {"batch": [1, 4], "height": [64, 320], "width": [64, 320]}


def make_export(folder: Path, name: str = "pvt_v2_b0", *, imgsz: tuple[int, int] = IMGSZ, dynamic: bool = True,
                extra: Sequence[str] = ("fp16", "int8"), seed: int = 0, seg_output: str = "logits") -> Path:
    """An export folder following docs/ARCHITECTURE.md: model.onnx (+ stand-ins for the fp16/int8
    files: copies of the fp32 graph under their names and precisions, enough to test file choice),
    manifest.json with sha256s, the weights checkpoint, and the manifest essentials in the ONNX."""
    from pvt_deploy.models import build_deploy_module, create_model
    from pvt_deploy.tasks.preprocess import preprocess_spec

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = create_model(name)
    if model.zoo_task == "detect":
        # Random RetinaNet heads score ~0.0103 everywhere (the focal-loss prior), so nothing passes the
        # 0.05 threshold; spreading the class logits gives a few dozen candidates per image, as a
        # trained model has, so post-processing and drawing are exercised.
        model.bbox_head.retina_cls.weight.data.normal_(0.0, 0.6)
    weights = folder / "weights.pth"
    torch.save(model.state_dict(), weights)
    module = build_deploy_module(model, **({"seg_output": seg_output} if model.zoo_task == "segment" else {}))
    x = torch.rand(1, 3, *imgsz) * 255
    axes: dict[str, dict[int, str]] = {}
    if dynamic:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        axes.update({o: {0: "batch"} for o in module.output_names})
    onnx_path = folder / "model.onnx"
    with torch.inference_mode():
        torch.onnx.export(module, (x,), str(onnx_path), dynamo=False, opset_version=17, input_names=["images"],
                          output_names=list(module.output_names), dynamic_axes=axes or None)
    task = module.task
    classes = _classes(name)
    graph = onnx.load(str(onnx_path))
    outputs = [{"name": o.name, "dtype": "int32" if o.type.tensor_type.elem_type == onnx.TensorProto.INT32
                else "float32", "shape": [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]}
               for o in graph.graph.output]
    manifest: dict[str, Any] = {
        "model": model.zoo_name, "backbone": name.split("-")[0], "task": task, "classes": classes,
        "weights": {"source": str(weights), "sha256": None, "random_init": True},
        "inputs": [{"name": "images", "dtype": "float32",
                    "shape": ["batch", 3, "height", "width"] if dynamic else [1, 3, *imgsz]}],
        "outputs": outputs,
        "preprocess": preprocess_spec(task, imgsz, dynamic=dynamic, mean=module.mean_values, std=module.std_values),
        "postprocess": module.postprocess, "dynamic": dict(DYNAMIC) if dynamic else None,
        "export": {"exporter": "torchscript", "opset": 17}, "versions": {"torch": torch.__version__},
    }
    onnx.helper.set_model_props(graph, {ONNX_METADATA_KEY: json.dumps(essentials(manifest))})
    onnx.save(graph, str(onnx_path))
    files = {"model.onnx": file_entry(onnx_path, "fp32")}
    for precision in extra:
        target = folder / f"model.{precision}.onnx"
        shutil.copyfile(onnx_path, target)
        files[target.name] = file_entry(target, precision)
    manifest["files"] = files
    manifest["parity"] = {"model.onnx": {"outputs": {}, "agreement": 1.0, "passed": True}}
    write_manifest(folder, manifest)
    return folder


def _classes(name: str) -> list[str]:
    from pvt_deploy.models import resolve_name

    return list(resolve_name(name).classes)


def make_clip(path: Path, *, frames: int = 10, size: tuple[int, int] = (320, 180), fps: float = 10.0,
              times: list[float] | None = None) -> Path:
    """A small H.264 clip of moving bands (width, height) with the project's own writer; ``times``
    (seconds per frame) makes it variable-rate."""
    from pvt_deploy.io.sinks import VideoWriter

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with VideoWriter(path, fps, size) as writer:
        for i in range(frames):
            r = ((xx + 8 * i) % 64 * 4).astype(np.uint8)
            g = ((yy + 4 * i) % 64 * 4).astype(np.uint8)
            b = np.full_like(r, (20 * i) % 255)
            writer.write(np.stack([r, g, b], axis=2), times[i] if times else None)
    return path


def decode_video(path: Path) -> tuple[str, int, tuple[int, int], float]:
    """(codec, frames, (width, height), fps) of a video, decoded with PyAV to the last frame."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, n, (stream.width, stream.height), float(stream.average_rate or 0)


_EXPORTS: dict[str, dict[str, Any]] = {
    "det": {"name": "pvt_v2_b0"},
    "seg": {"name": "pvt_v2_b0-seg", "extra": ()},
    "cls": {"name": "pvt_v2_b0-cls", "extra": ("int8",)},
}


def cached_export(factory: pytest.TempPathFactory, kind: str) -> Path:
    """The session's ``det``/``seg``/``cls`` export, built on first use. Test modules wrap this in
    their own fixtures: pytest registers an imported fixture once per module, so a shared session
    fixture would still be rebuilt per module; a folder of the run (export_fixtures.run_folder: one for
    every xdist worker) is not."""
    folder = run_folder(factory) / "exports" / kind
    with made_once(folder):
        if not (folder / "manifest.json").is_file():
            make_export(folder, **_EXPORTS[kind])
    return folder


def cached_clip(factory: pytest.TempPathFactory) -> Path:
    path = run_folder(factory) / "clips" / "clip.mp4"
    with made_once(path):
        return path if path.is_file() else make_clip(path)


@pytest.fixture(scope="module")
def det_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "det")


# ---------------------------------------------------------------------------------------------------


def test_export_folder_follows_the_contract(det_export: Path) -> None:
    manifest = read_manifest(det_export)
    assert manifest["task"] == "detect" and len(manifest["classes"]) == 80
    assert [o["name"] for o in manifest["outputs"]] == ["boxes", "scores"]
    assert set(manifest["files"]) == {"model.onnx", "model.fp16.onnx", "model.int8.onnx"}
    props = {p.key: p.value for p in onnx.load(str(det_export / "model.onnx")).metadata_props}
    assert json.loads(props[ONNX_METADATA_KEY])["task"] == "detect"


def test_torch_manifest_has_the_export_keys(cls_artifact: Any) -> None:
    """PyTorch's synthesised manifest carries every key the exporter's own manifest carries for running
    (the export-time records aside), with the same values: the same model at the same size is read,
    pre- and post-processed alike by either. Compared with a real export, not this module's stand-in."""
    from pvt_deploy.runtimes.loader import load_backend

    exported = cls_artifact.manifest
    size = exported["preprocess"]["imgsz"]
    backend, manifest = load_backend(exported["model"], imgsz=size[0])
    backend.close()
    export_time = {"export", "parity", "precision"}  # how the files were made and gated
    assert set(exported) - export_time <= set(manifest)
    for key in ("format_version", "model", "backbone", "task", "classes", "inputs", "outputs", "preprocess",
                "postprocess"):
        assert manifest[key] == exported[key], key
    assert manifest["weights"]["random_init"] is exported["weights"]["random_init"] is True


def test_torch_manifest_reads_imgsz_as_load_backend_does() -> None:
    """torch_manifest (public in pvt_deploy.runtimes.loader) read imgsz="64" digit by digit: a manifest for
    6x4 pictures; "96x64" was a ValueError traceback. It now parses imgsz as load_backend, predict(imgsz=)
    and --imgsz do, and refuses what they refuse."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.models import build_deploy_module, create_model
    from pvt_deploy.runtimes.loader import torch_manifest

    module = build_deploy_module(create_model("pvt_v2_b0-cls", seed=0))

    def fed(imgsz: Any) -> list[int]:
        manifest = torch_manifest(module, model="pvt_v2_b0-cls", backbone="pvt_v2_b0", imgsz=imgsz, weights=None,
                                  random_init=True)
        return list(manifest["preprocess"]["imgsz"])

    assert fed("64") == fed(64) == [64, 64]
    assert fed("96x64") == fed((96, 64)) == [96, 64]
    with pytest.raises(InputError, match="imgsz"):
        fed("64x")


def test_a_real_export_runs_on_every_backend_and_agrees(tmp_path: Path) -> None:
    """The exporter's own folder (not this module's stand-in) through the loader, check and info."""
    pytest.importorskip("pvt_deploy.export.onnx", reason="the ONNX exporter is not in this checkout")
    from pvt_deploy.bench import cross_check
    from pvt_deploy.export import export_onnx
    from pvt_deploy.runtimes.loader import describe_artifact, load_backend

    torch.manual_seed(0)
    from pvt_deploy.models import create_model

    weights = tmp_path / "cls.pth"
    torch.save(create_model("pvt_v2_b0-cls").state_dict(), weights)
    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "export", weights=weights, imgsz=96, half=True,
                         max_size=192)
    for precision in ("fp32", "fp16"):
        backend, manifest = load_backend(folder, precision=precision)
        with backend:
            assert backend.info.precision == precision and manifest["task"] == "classify"
    report = cross_check(folder, max_images=2)
    assert report["passed"] and report["reference"] == "torch" and report["agreement_gated"] is True
    assert {r["backend"] for r in report["results"] if r["status"] == "ok"} == {"torch", "onnx", "onnx-fp16"}
    assert all(f["check"] == "ok" for f in describe_artifact(folder)["files"])
