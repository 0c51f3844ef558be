"""Export options x what consumes the export: each test exports a tiny model with a combination of
export options (module-scoped, a few seconds each) and consumes it the way the README promises
(``check``, ``infer``, the Python API, a lone ``.onnx``, ``info``), asserting what the user would see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pvt_deploy.export.onnx import export_onnx


@pytest.fixture(scope="module")
def cls_static_batch2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pvt_v2_b0 classifier, --static --batch 2 at a non-square 64x96 (not simplified: check compares the
    graph as traced with PyTorch as closely); the session's (export_fixtures)."""
    from export_fixtures import cached_cls_static_batch2

    return cached_cls_static_batch2(tmp_path_factory)


def test_check_runs_on_a_static_batch_export(cls_static_batch2: Path) -> None:
    """`pvt-deploy check` compares one picture per call: the static graph's padded second row is not an
    image (it crashed with 'zip() argument 2 is longer than argument 1', exit 1)."""
    from pvt_deploy.bench import cross_check

    report = cross_check(cls_static_batch2, backends="torch,onnx", max_images=2)
    rows = {r["backend"]: r for r in report["results"]}
    assert rows["onnx"]["status"] == "ok"
    assert rows["onnx"]["images"] == 2
    assert rows["onnx"]["outputs"]["logits"]["cosine"] > 0.9999
    assert report["passed"]


@pytest.fixture(scope="module")
def det_static_graph_nms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pvt_v2_b0 RetinaNet checkpoint that detects (export_fixtures.perturbed_detector) given as
    --model, exported --static --batch 2 --imgsz 96x160 --nms graph: the bundled photos are letterboxed
    into 96x144 of the 96x160 input, and some detections lie wholly in the padding."""
    import torch
    from export_fixtures import perturbed_detector

    work = tmp_path_factory.mktemp("combo")
    ckpt = work / "retinanet_pvt_v2_b0.pth"
    torch.save(perturbed_detector().state_dict(), ckpt)
    return export_onnx(str(ckpt), work / "det_static_nms", dynamic=False, batch=2, imgsz="96x160", nms="graph",
                       allow_parity_failure=True)


def test_graph_nms_static_export_passes_its_own_gate(det_static_graph_nms: Path) -> None:
    """The FP32 graph equals PyTorch to 1e-5, so its gate passes; a detection wholly in the letterbox
    padding is clipped to a line on the picture's edge, which no IoU can match, not even with itself:
    it failed the FP32 gate (exit 5, 'detection_f1 0.9697 < 0.99') though both runs gave the same box."""
    import json

    manifest = json.loads((det_static_graph_nms / "manifest.json").read_text())
    report = manifest["parity"]["model.onnx"]
    assert report["task"]["required_ref"] > 0  # it detects: the agreement is gated on something
    assert report["passed"], report["failures"]
    assert report["agreement"] == 1.0


def test_identical_zero_area_detections_agree() -> None:
    import numpy as np

    from pvt_deploy.export.parity import agreement_detections
    from pvt_deploy.tasks.postprocess import Detections

    det = Detections(np.array([[10, 10, 50, 60], [512, 87, 512, 276]], dtype=np.float32),
                     np.array([0.9, 0.3], dtype=np.float32), np.array([1, 2], dtype=np.int64))
    assert agreement_detections([det], [det])["f1"] == 1.0


def test_triton_repo_blocked_by_a_file_leaves_the_previous_export(tmp_path: Path) -> None:
    """`--format triton --triton-repo FILE` is refused before the export: the Triton model is written
    after the new export replaced the old one, so the failure (exit 2) used to leave the folder
    re-exported (here: without its model.fp16.onnx) instead of as it was."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.export import export

    out = tmp_path / "cls"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"an earlier export")
    (out / "model.fp16.onnx").write_bytes(b"its fp16 variant")
    (out / "manifest.json").write_text('{"format_version": 1, "task": "classify", "files": {}}')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    blocker = tmp_path / "repo"
    blocker.write_text("a file")
    with pytest.raises(InputError, match="is a file, not a folder"):
        export("pvt_v2_b0-cls", out, format="triton", triton_repo=blocker, imgsz=64, parity=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.fixture(scope="module")
def cls_int8_cpu_auto(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pvt_v2_b0 classifier at 64 px with the CPU INT8 flavour by --int8-cpu auto: dynamic for a classifier.
    Read-only: a test that extends it works on a copy. Not simplified: the method is chosen by the task
    and recorded in the manifest, apart from the graph."""
    from pvt_deploy.manifest import read_manifest

    out = tmp_path_factory.mktemp("combo") / "cls_int8_auto"
    folder = export_onnx("pvt_v2_b0-cls", out, imgsz=64, int8=True, int8_flavour="cpu", parity=False, simplify=False)
    assert read_manifest(folder)["precision"]["int8"]["cpu"]["method"] == "dynamic"
    return folder


def test_extending_with_another_int8_cpu_method_makes_that_method(cls_int8_cpu_auto: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """`export --model FOLDER --int8 --int8-cpu static` on a folder whose model.int8.onnx is dynamic
    makes the static one: it kept the dynamic file and said nothing (exit 0, the option lost). Called
    from Python without calibration pictures, the warning names the argument (it named `--calib`, an
    option the caller, e.g. benchmarks/speed.py, does not have)."""
    import json
    import logging
    import shutil

    folder = tmp_path / "cls"
    shutil.copytree(cls_int8_cpu_auto, folder)
    first = (folder / "model.int8.onnx").read_bytes()
    with caplog.at_level(logging.WARNING, logger="pvt_deploy"):
        export_onnx(folder, int8=True, int8_flavour="cpu", int8_cpu="static", parity=False)
    assert "no calib given: calibrating INT8 on the 3 bundled sample images" in caplog.text, caplog.text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["precision"]["int8"]["cpu"]["method"] == "static"
    assert (folder / "model.int8.onnx").read_bytes() != first
    from pvt_deploy.manifest import verify_file

    verify_file(folder, manifest, "model.int8.onnx")
    export_onnx(folder, int8=True, int8_flavour="cpu", parity=False)  # auto: the file there is kept
    assert json.loads((folder / "manifest.json").read_text())["precision"]["int8"]["cpu"]["method"] == "static"


def test_reexport_hint_keeps_the_int8_cpu_method(cls_int8_cpu_auto: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The command a changed file's error gives (`re-export it (pvt-deploy export ...)`) rebuilds the
    CPU INT8 graph by the method it was made with: for a classifier exported --int8-cpu static it
    left the option out, so following it made a dynamic graph instead. The command runs through the
    CLI's entry point in this process (tests/cli_run.py): its arguments are the point, not a new process;
    nor the graph, so neither export is simplified (the INT8 method is chosen and recorded apart from it)."""
    import json
    import shlex

    from cli_run import run

    from pvt_deploy.manifest import read_manifest, reexport_command

    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "cls", imgsz=64, int8=True, int8_flavour="cpu",
                         int8_cpu="static", parity=False, simplify=False)
    command = reexport_command(folder, read_manifest(folder))
    assert "--int8-cpu static" in command
    words = shlex.split(command)
    assert words[0] == "pvt-deploy"
    code, _, err = run(monkeypatch, capsys, *words[1:], "--no-parity", "--no-simplify")
    assert code == 0, err[-2000:]
    assert json.loads((folder / "manifest.json").read_text())["precision"]["int8"]["cpu"]["method"] == "static"
    assert "--int8-cpu" not in reexport_command(cls_int8_cpu_auto, read_manifest(cls_int8_cpu_auto))


def test_triton_serves_the_int8_graph_of_an_int8_flavour_trt_export(tmp_path: Path) -> None:
    """`export --int8 --int8-flavour trt --format triton` serves the INT8 graph it made (the TensorRT
    flavour, which ONNX Runtime runs too): it served model.onnx, FP32, without a word. (Which file is
    served is the point, not its graph: not simplified.)"""
    import json

    from pvt_deploy.export import export

    export("pvt_v2_b0-cls", tmp_path / "cls", format="triton", triton_repo=tmp_path / "repo", imgsz=64,
           int8=True, int8_flavour="trt", parity=False, simplify=False)
    served = json.loads((tmp_path / "repo" / "pvt_v2_b0-cls" / "manifest.json").read_text())["triton"]
    assert served["source"] == "model.int8.trt.onnx"
    assert served["precision"] == "int8"


def test_pytorch_runs_an_nms_graph_export_with_the_same_nms(det_static_graph_nms: Path) -> None:
    """PyTorch on an ``--nms graph`` export (``--backend torch``, the reference of ``check``) ran the
    forward pass without the graph's NMS and left NMS to the host: another set of detections (34
    against the export's 36), so ``check`` failed an exact graph. It now appends the same NMS."""
    from pvt_deploy import assets
    from pvt_deploy.io.sources import read_image
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.tasks.pipeline import Predictor

    torch_backend, manifest = load_backend(det_static_graph_nms, backend="torch")
    onnx_backend, _ = load_backend(det_static_graph_nms, backend="onnx")
    with torch_backend, onnx_backend:
        assert [s.name for s in torch_backend.outputs] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
        images = [read_image(p) for p in assets.sample_images()[:2]]
        found = 0
        for backend in (torch_backend, onnx_backend):
            predictor = Predictor(backend, manifest)
            feed, _ = predictor.preprocess(images)
            out = backend.infer(feed)
            if backend is torch_backend:
                ref = out
                found = int(out["num_dets"].sum())
            else:
                np.testing.assert_array_equal(out["num_dets"], ref["num_dets"])
                np.testing.assert_allclose(out["det_boxes"], ref["det_boxes"], atol=1e-3)
                np.testing.assert_array_equal(out["det_classes"], ref["det_classes"])
    assert found > 0  # the checkpoint detects: the comparison is of something
    from pvt_deploy.bench import cross_check

    report = cross_check(det_static_graph_nms, backends="torch,onnx", gate_agreement=True, max_images=3)
    assert report["reference"] == "torch" and report["passed"], report["results"]
