"""The manifest (contents, hashes, weights record), reusing an export folder, and atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from pvt_deploy.manifest import read_manifest, verify_file
from pvt_deploy.tasks.preprocess import preprocess_spec
from pvt_deploy.utils.files import sha256_file

pytest_plugins = ["export_fixtures"]


def test_manifest_contents(det_artifact) -> None:
    m = read_manifest(det_artifact.folder)
    assert m["format_version"] == 1
    assert (m["model"], m["backbone"], m["task"]) == ("pvt_v2_b0", "pvt_v2_b0", "detect")
    assert len(m["classes"]) == 80 and m["classes"][0] == "person"
    assert m["weights"] == {"source": str(det_artifact.weights), "sha256": sha256_file(det_artifact.weights),
                            "random_init": False, "load_report": m["weights"]["load_report"]}
    assert m["inputs"] == [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}]
    assert m["outputs"] == [{"name": "boxes", "dtype": "float32", "shape": ["batch", "num_boxes", 4]},
                            {"name": "scores", "dtype": "float32", "shape": ["batch", "num_boxes", 80]}]
    module = det_artifact.module
    assert m["preprocess"] == preprocess_spec("detect", (160, 160), dynamic=True, mean=module.mean_values,
                                              std=module.std_values)
    assert m["postprocess"] == {"nms": "host", "score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100,
                                "pre_nms_topk": 1000}
    assert m["dynamic"] == {"batch": [1, 8], "height": [32, 1344], "width": [32, 1344]}
    assert m["export"]["exporter"] == "torchscript" and m["export"]["opset"] == 17
    assert m["export"]["nodes_after"] < m["export"]["nodes_before"]
    assert {"torch", "onnx", "onnxruntime", "onnxslim"} <= set(m["versions"])
    precisions = {"model.onnx": "fp32", "model.fp16.onnx": "fp16", "model.int8.onnx": "int8",
                  "model.int8.trt.onnx": "int8"}
    assert {k: v["precision"] for k, v in m["files"].items()} == precisions
    for name, entry in m["files"].items():
        path = det_artifact.folder / name
        assert entry["sha256"] == sha256_file(path) and entry["bytes"] == path.stat().st_size
        verify_file(det_artifact.folder, m, name)
    assert set(m["parity"]) == set(m["files"])


def test_random_weights_are_recorded_loudly(cls_artifact) -> None:
    m = read_manifest(cls_artifact.folder)
    assert m["weights"] == {"source": None, "sha256": None, "random_init": True}
    assert m["task"] == "classify" and len(m["classes"]) == 1000
    assert m["parity"]["model.onnx"]["passed"] and not m["parity"]["model.onnx"]["agreement_gated"]


def test_reusing_an_export_folder_adds_variants(cls_artifact, tmp_path: Path) -> None:
    from pvt_deploy.export import export_onnx

    folder = tmp_path / "reuse"
    shutil.copytree(cls_artifact.folder, folder)
    before = read_manifest(folder)
    assert export_onnx(folder, half=True) == folder
    after = read_manifest(folder)
    assert after["files"]["model.onnx"] == before["files"]["model.onnx"]  # reused, not re-exported
    assert after["files"]["model.fp16.onnx"]["sha256"] == sha256_file(folder / "model.fp16.onnx")
    report = after["parity"]["model.fp16.onnx"]
    assert report["reference"] == "model.onnx (onnxruntime)" and report["passed"]
    assert report["outputs"]["logits"]["cosine"] > 0.9999
    assert after["parity"]["model.onnx"] == before["parity"]["model.onnx"]
    meta = {p.key: p.value for p in onnx.load(str(folder / "model.fp16.onnx")).metadata_props}
    assert json.loads(meta["pvt_deploy"])["task"] == "classify"


def test_crash_while_writing_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in the middle of writing model.onnx leaves neither it, a temp file, nor a manifest."""
    from pvt_deploy.export import export_onnx

    def half_written(model: onnx.ModelProto, path: str, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(model.SerializeToString()[:1000])
        raise OSError(28, "No space left on device")

    out = tmp_path / "crash"
    out.mkdir()
    (out / "manifest.json").write_text('{"task": "classify", "format_version": 1}')  # an older export
    monkeypatch.setattr(onnx, "save_model", half_written)
    with pytest.raises(OSError, match="No space left"):
        export_onnx("pvt_v2_b0-cls", out, imgsz=64, simplify=False, parity=False)
    assert sorted(p.name for p in out.iterdir()) == []
