"""Export and models: faults found in the review of session 47."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run
from disk_faults import failing_disk
from test_tensorrt_build_fake import make_artifact

from pvt_deploy.errors import InputError
from pvt_deploy.export.triton import export_triton
from pvt_deploy.manifest import read_manifest, write_manifest


@pytest.mark.parametrize("hashed", [True, False], ids=["manifest-sha256", "no-sha256"])
def test_an_export_whose_model_onnx_the_disk_fails_to_read_says_it_cannot_be_read(
        hashed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export --model FOLDER --format triton`` (or ``--half``) where the disk fails to read model.onnx said
    'cannot write the export to FOLDER: Input/output error (FOLDER/model.onnx)' (the read of its hash was taken
    for the export's write failing), or, where the manifest lists no sha256, 'not a readable ONNX model
    (OSError: [Errno 5] ...)': the disk failed, not the model nor the write. It says 'cannot read X: Input/output
    error', exit 2, as info, infer and bench of the file do, and writes nothing."""
    folder = make_artifact(tmp_path / "art")
    if not hashed:  # an older export's manifest: nothing is hashed before the graph is read
        manifest = read_manifest(folder)
        del manifest["files"]["model.onnx"]["sha256"]
        write_manifest(folder, manifest)
    onnx = failing_disk(folder / "model.onnx")
    before = sorted(p.name for p in folder.iterdir())
    said = f"error: cannot read {onnx}: Input/output error\n"
    for args in (["--format", "triton"], ["--half", "--no-parity"]):
        code, out, err = run(monkeypatch, capsys, "export", "--model", str(folder), *args)
        assert (code, out, err.splitlines()[-1] + "\n") == (2, "", said), err
        assert "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no Triton repository begun
    with pytest.raises(InputError) as caught:  # the library's own call, as the CLI's
        export_triton(folder, tmp_path / "repo")
    assert str(caught.value) == f"cannot read {onnx}: Input/output error"
    assert not (tmp_path / "repo").exists()



def _one_pass(name: str) -> int:
    """The bytes of a PyTorch pass of ``name`` at 1024x1024, batch 1: what the export's memory check counts."""
    from pvt_deploy.models import build_deploy_module, build_model, resolve_name
    from pvt_deploy.runtimes.torch import TorchBackend

    entry = resolve_name(name)
    with TorchBackend(build_deploy_module(build_model(entry), entry.task), device="cpu") as backend:
        needed = backend.memory_needed(1, 1024, 1024)
    assert needed is not None
    return needed


@pytest.fixture
def preprocessed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pictures each preprocessing of the export's calibration or parity pictures was given."""
    from pvt_deploy.export import calibration

    given: list[int] = []
    make_batches = calibration.make_batches
    monkeypatch.setattr(calibration, "make_batches",
                        lambda pictures, *a, **k: given.append(len(pictures)) or make_batches(pictures, *a, **k))
    return given


def test_a_dynamic_int8_export_of_a_pvt_v1_classifier_preprocesses_no_calibration_picture(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preprocessed: list[int]) -> None:
    """A dynamic CPU INT8 file of a PVT v1 classifier (MatMul weights only; none of v2's depthwise and patch convs
    that the dynamic method calibrates) reads no calibration picture since 909e4ac, yet a fresh export and an
    extension still preprocessed them all and counted them, with 'INT8 calibration' among its runs, in the memory
    check: at a size whose pictures could not be held, its INT8 export was refused for a calibration it does not
    run. Neither is done now, and the manifest records no calibration. A v2 classifier's dynamic file, which
    calibrates its depthwise convs, is still counted and refused before the trace."""
    import json

    from pvt_deploy.errors import ShapeError
    from pvt_deploy.export import export_onnx

    v1 = _one_pass("pvt_tiny-cls")
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: v1 // 2)  # a pass fits no more
    folder = export_onnx("pvt_tiny-cls", tmp_path / "cls", imgsz=1024, int8=True, int8_flavour="cpu",
                         int8_cpu="dynamic", parity=False, simplify=False)
    fresh = json.loads((folder / "manifest.json").read_text())["precision"]["int8"]
    (folder / "model.int8.onnx").unlink()  # made again by an extension
    export_onnx(folder, int8=True, int8_flavour="cpu", parity=False)  # auto: dynamic for a classifier
    extended = json.loads((folder / "manifest.json").read_text())["precision"]["int8"]
    assert preprocessed == []
    for int8 in (fresh, extended):
        assert list(int8) == ["cpu"] and int8["cpu"]["method"] == "dynamic", int8  # no calibration record
    assert (folder / "model.int8.onnx").is_file()

    v2 = _one_pass("pvt_v2_b0-cls")
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: v2 // 2)
    with pytest.raises(ShapeError, match="INT8 calibration runs the model at that size"):
        export_onnx("pvt_v2_b0-cls", tmp_path / "v2", imgsz=1024, int8=True, int8_flavour="cpu",
                    int8_cpu="dynamic", parity=False, simplify=False)
    assert not (tmp_path / "v2").exists() and preprocessed == []


def test_a_dynamic_int8_export_of_a_pvt_v1_detector_is_memory_checked_before_it_calibrates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preprocessed: list[int]) -> None:
    """A v1 detector's dynamic INT8 file does calibrate (the patch convs of stages 3-4 stay convs in its layout,
    which the dynamic method quantizes static), which its plan, made after the trace, says: its pictures are
    counted then, before they are preprocessed, as the check before the trace counts a calibration known there."""
    from pvt_deploy.errors import ShapeError
    from pvt_deploy.export import export_onnx

    detector = _one_pass("pvt_tiny")
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: detector // 2)
    with pytest.raises(ShapeError, match="INT8 calibration runs the model at that size"):
        export_onnx("pvt_tiny", tmp_path / "det", imgsz=1024, int8=True, int8_flavour="cpu", int8_cpu="dynamic",
                    parity=False, simplify=False)
    assert not (tmp_path / "det").exists() and preprocessed == []


def test_the_zoos_parameter_table_is_the_models_own_count_and_models_imports_no_torch() -> None:
    """``pvt-deploy models`` built the 33 models on the meta device to count their parameters (and imported torch
    for it): 3.7 s. It reads the zoo's table, which is each model's count exactly, every task's; and it imports
    no torch."""
    import json
    import subprocess
    import sys

    from pvt_deploy.models.zoo import BACKBONE_NAMES, BACKBONES, PARAMETERS, ZooEntry, parameter_count

    assert tuple(BACKBONES) == BACKBONE_NAMES  # the configs' names and order, as the listing had them
    import pvt_deploy.models.zoo as zoo

    assert zoo.BACKBONES is BACKBONES  # one dict, read lazily once, as the module's constant was
    counted = {b: {t: parameter_count(ZooEntry(b, t)) for t in ("detect", "segment", "classify", "features")}
               for b in BACKBONES}
    assert counted == PARAMETERS
    listing = ("import json, sys\nfrom pvt_deploy.cli import main\nsys.argv = ['pvt-deploy', 'models', '--json']\n"
               "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
               "print('torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, timeout=120, check=True)
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
    rows = {r["name"]: r["params_m"] for r in json.loads(done.stdout)}
    assert len(rows) == 33 and rows["pvt_v2_b2_li-cls"] == 22.55 and rows["pvt_small"] == 34.22, rows
