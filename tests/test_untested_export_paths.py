"""Export paths no other test ran (found by measuring coverage), driven as a user drives them: the CLI
(``pvt-deploy export``) or the public Python API, asserting the outcome a user sees (files, numbers
against PyTorch, the one-line message and exit code, an export left as it was)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pvt_deploy.cli import main
from pvt_deploy.utils.files import sha256_file


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``pvt-deploy export ARGV`` in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pvt-deploy", "export", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    return int(e.value.code or 0), capsys.readouterr().err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}


# --------------------------------------------------------------------------------------------------
# Extending an export folder (export --model exports/NAME --half/--int8)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failed_variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pvt_v2_b0-cls export whose FP16 and CPU INT8 files failed their gate (impossible tolerances)
    and were kept (--allow-parity-failure): extending the folder makes them again."""
    from pvt_deploy.export import export_onnx

    out = tmp_path_factory.mktemp("failed") / "pvt_v2_b0-cls"
    export_onnx("pvt_v2_b0-cls", out, imgsz=64, half=True, int8=True, int8_flavour="cpu",
                parity_tolerance={"fp16": {"max_rel": 1e-12}, "int8": {"max_rel": 1e-12}},
                allow_parity_failure=True)
    parity = json.loads((out / "manifest.json").read_text())["parity"]
    assert parity["model.onnx"]["passed"]
    assert not parity["model.fp16.onnx"]["passed"] and not parity["model.int8.onnx"]["passed"]
    return out


def test_reusing_an_export_folder_advises_the_options_given_not_the_old_ones(
        failed_variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """``export --model exports/NAME --imgsz 96`` reuses the folder's 64 px graph: it said "ignoring
    --imgsz (export from the model name to change them)" and then advised "to export it again, give the
    model name: pvt-deploy export --model pvt_v2_b0-cls --imgsz 64 ...", the size the user had just asked
    to leave. The command given now carries the options asked for."""
    folder = tmp_path / "pvt_v2_b0-cls"
    shutil.copytree(failed_variants, folder)
    before = _snapshot(folder)
    code, err = _cli(["--model", str(folder), "--imgsz", "96", "--static"], monkeypatch, capsys)
    said = " ".join(caplog.text.split())
    assert code == 0 and _snapshot(folder) == before, err
    again = f"pvt-deploy export --model pvt_v2_b0-cls --imgsz 96 --half --int8 --int8-flavour cpu --static -o {folder}"
    assert f"ignoring --imgsz, --static (export from the model name to change them: {again})" in said, said
    assert f"to export it again, give the model name: {again}" in said, said
    assert "--imgsz 64" not in said, said


def test_info_says_why_a_file_failed_its_gate(failed_variants: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``pvt-deploy info`` said "parity at export, model.fp16.onnx: FAILED, agreement 1.000; logits max_abs
    1.1e-05": a figure the gate never judged, and not the limit the file missed. It now gives the gate's
    failure lines, as the export's error and ``check`` do."""
    from cli_run import run

    from pvt_deploy.manifest import read_manifest

    code, out, err = run(monkeypatch, capsys, "info", str(failed_variants))
    said = " ".join(out.split())
    failures = read_manifest(failed_variants)["parity"]["model.fp16.onnx"]["failures"]
    assert code == 0 and failures and any("max_rel" in f for f in failures), (err, failures)
    assert f"parity at export, model.fp16.onnx: FAILED ({'; '.join(failures)})" in said, said
    assert "parity at export, model.onnx: passed, agreement" in said, said


def test_interrupted_extension_leaves_a_remade_variant_as_it_was(failed_variants: Path, tmp_path: Path) -> None:
    """Re-making a failed INT8 file with other calibration images and pressing Ctrl-C in its parity
    gate overwrote the file while the manifest kept the old sha256: the export's INT8 file then failed
    verification. Now the previous file is back, byte for byte."""
    from pvt_deploy.export import export_onnx
    from pvt_deploy.manifest import read_manifest, verify_file

    folder = tmp_path / "ext"
    shutil.copytree(failed_variants, folder)
    calib = tmp_path / "calib"
    calib.mkdir()
    from pvt_deploy.assets import sample_image

    shutil.copy(sample_image("coffee"), calib / "coffee.jpg")
    before = _snapshot(folder)

    def ctrl_c_in_parity(phase: str, step: int, total: int) -> None:
        if phase == "parity" and step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_onnx(folder, int8=True, int8_flavour="cpu", calib=calib, progress=ctrl_c_in_parity)
    assert _snapshot(folder) == before
    manifest = read_manifest(folder)
    for name in manifest["files"]:
        verify_file(folder, manifest, name)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".ort-cache") == []


def test_variant_made_again_without_parity_drops_its_old_report(failed_variants: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`export --model exports/NAME --half --no-parity` re-makes the FP16 file that failed its gate; the
    manifest kept the old file's parity report, so the summary printed FAILED (with the old figures) for a
    file the gate never saw, and every later extension made it again. Now it is unchecked, as in a
    fresh --no-parity export, and the next extension keeps it."""
    folder = tmp_path / "ext"
    shutil.copytree(failed_variants, folder)
    code, err = _cli(["--model", str(folder), "--half", "--no-parity"], monkeypatch, capsys)
    assert code == 0, err
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "model.fp16.onnx" not in manifest["parity"]
    assert manifest["files"]["model.fp16.onnx"]["sha256"] == sha256_file(folder / "model.fp16.onnx")
    assert not manifest["parity"]["model.int8.onnx"]["passed"]  # not made again: its report stays
    row = next(ln for ln in err.splitlines() if ln.startswith("model.fp16.onnx"))
    assert "FAILED" not in row and row.split()[3] == "-", row
    before = _snapshot(folder)
    code, err = _cli(["--model", str(folder), "--half", "--no-parity"], monkeypatch, capsys)
    assert code == 0, err
    assert _snapshot(folder) == before  # nothing to do: the file is present and not marked failed


# --------------------------------------------------------------------------------------------------
# Checkpoints given as --model or --weights
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cls_state() -> dict:
    from pvt_deploy.models import create_model

    return create_model("pvt_v2_b0-cls", seed=0).state_dict()


@pytest.mark.parametrize("drop, missing", [
    ("patch_embed3.", "patch_embed3.*"),  # was a KeyError traceback, exit 1
    ("block4.", "block4.*"),  # was "not a PVT model"
])
def test_checkpoint_missing_a_stage_as_model_is_one_line(cls_state: dict, drop: str, missing: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    ckpt = tmp_path / "cut.pth"
    torch.save({k: v for k, v in cls_state.items() if not k.startswith(drop)}, ckpt)
    code, err = _cli(["--model", str(ckpt), "-o", str(tmp_path / "out"), "--no-parity"], monkeypatch, capsys)
    line = _error_line(err)
    assert code == 2, err
    assert line.startswith(f"error: {ckpt}: checkpoint is an incomplete PVT model: no {missing} weights"), line
    assert "--weights" in line  # the way to see every missing key
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where, member", [("pickle", "data.pkl"), ("tensors", "data/")])
def test_checkpoint_with_damaged_bytes_is_refused(cls_state: dict, where: str, member: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint whose bytes were overwritten in place (a bad copy or disk) keeps its zip layout:
    damage in its tensor data loaded silently (the export ran on garbage weights, exit 0), damage in
    its pickle was blamed on unsafe objects and the message advised --trust-checkpoint. Both are now
    'corrupt checkpoint' naming the damaged part, from the archive's CRCs; the intact file still loads."""
    import torch

    good = tmp_path / "good.pth"
    torch.save(cls_state, good)
    data = bytearray(good.read_bytes())
    import zipfile

    with zipfile.ZipFile(good) as z:
        info = next(i for i in z.infolist() if member in i.filename and i.file_size > 64)
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len  # the member's stored bytes (local header)
    data[start + 8:start + 40] = bytes(32)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    code, err = _cli(["--model", "pvt_v2_b0-cls", "--weights", str(bad), "-o", str(out), "--no-parity",
                      "--imgsz", "64"], monkeypatch, capsys)
    line = _error_line(err)
    assert code == 2, err
    assert f"{bad}: corrupt checkpoint ({info.filename} fails its CRC check)" in line, line
    assert "--trust-checkpoint" not in line and not out.exists()
    from pvt_deploy.models import read_checkpoint

    assert all(torch.equal(v, cls_state[k]) for k, v in read_checkpoint(good).items())


# --------------------------------------------------------------------------------------------------
# Options refused before any slow work: one line, exit 2, nothing written
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, text", [
    (["--min-shape", "1x3x640"], "--min-shape '1x3x640': expected NxCxHxW, e.g. 1x3x640x640"),
    (["--opt-shape", "1x3xbigx640"], "--opt-shape '1x3xbigx640': expected NxCxHxW, e.g. 1x3x640x640"),
    (["--max-shape", "0x3x640x640"], "--max-shape '0x3x640x640': expected NxCxHxW"),
    (["--imgsz", "16"], "--imgsz 16x16: each side must be at least 32"),
    (["--batch", "0"], "--batch 0: must be >= 1"),
    (["--int8", "--calib-size", "0"], "--calib-size 0: must be >= 1"),
    (["--parity-tolerance", "0"], "--parity-tolerance: parity tolerance factor must be positive, not 0.0"),
    (["--seg-output", "argmax"], "--seg-output argmax is for segmentation models; pvt_v2_b0-cls is a classify model"),
    (["--format", "onnx2"], "--format 'onnx2': choose one of onnx, trt, triton"),
    (["--format", "triton", "--triton-backend", "tf"], "--triton-backend 'tf': choose onnx or trt"),
    (["--int8", "--int8-flavour", "gpu"], "--int8-flavour 'gpu': choose one of cpu, trt, both"),
])
def test_cli_refuses_bad_options_in_one_line(argv: list[str], text: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, err = _cli(["--model", "pvt_v2_b0-cls", "-o", str(out), *argv], monkeypatch, capsys)
    assert code == 2, err
    assert text in _error_line(err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_calibration_folder_without_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "notes.txt").write_text("not a picture")
    (calib / "sub.jpg").mkdir()  # a folder named like a picture is not one
    code, err = _cli(["--model", "pvt_v2_b0-cls", "-o", str(tmp_path / "out"), "--int8", "--calib", str(calib)],
                     monkeypatch, capsys)
    assert code == 2
    assert f"calibration images: no images found in folder {calib} (image types: .avif, .bmp" in _error_line(err)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# Static graphs, sizes off the stride, calibration and parity folders
# --------------------------------------------------------------------------------------------------


def test_static_export_at_a_size_off_the_stride(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    """--static --batch 2 --imgsz 50 (not a multiple of 32) with a dynamic-only --min-size: both said in a
    warning; the graph takes exactly 2x3x64x64 and gives PyTorch's logits; --calib-size 1 calibrates on
    one picture (repeated to fill the static batch), --images gates on the parity folder's pictures. The
    manifest counts pictures: the copy filling the batch was counted (calibration and parity "images: 2" of
    one picture each; 6 of 5 frames at --batch 3), and parity compared its row twice; it is neither now."""
    import onnxruntime as ort
    import torch

    from pvt_deploy.assets import sample_image
    from pvt_deploy.models import RANDOM_INIT_SEED, build_deploy_module, create_model

    calib, parity = tmp_path / "calib", tmp_path / "parity"
    calib.mkdir()
    parity.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        shutil.copy(sample_image(name), calib / f"{name}.jpg")
    shutil.copy(sample_image("chelsea"), parity / "cat.jpg")
    out = tmp_path / "static"
    code, err = _cli(["--model", "pvt_v2_b0-cls", "-o", str(out), "--static", "--batch", "2", "--imgsz", "50",
                      "--min-size", "64", "--int8", "--int8-flavour", "cpu", "--calib", str(calib), "--calib-size", "1",
                      "--images", str(parity)], monkeypatch, capsys)
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "imgsz 50x50 is not a multiple of 32; using 64x64" in warnings
    assert "--min-size/--max-size apply to dynamic graphs; ignored with --static" in warnings
    m = json.loads((out / "manifest.json").read_text())
    assert m["dynamic"] is None and m["inputs"][0]["shape"] == [2, 3, 64, 64]
    assert m["preprocess"]["imgsz"] == [64, 64] and m["export"]["imgsz"] == [64, 64]
    assert m["precision"]["int8"]["calibration"]["source"] == str(calib)
    assert m["precision"]["int8"]["cpu"]["static_depthwise"]["calibration"]["images"] == 1  # in a batch of 2
    assert m["export"]["parity_images"] == str(parity)
    assert all(r["passed"] and r["images"] == 1 for r in m["parity"].values())
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)).astype(np.float32)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"images": x})[0]
    module = build_deploy_module(create_model("pvt_v2_b0-cls", seed=RANDOM_INIT_SEED))
    with torch.no_grad():
        want = module(torch.from_numpy(x))[0].numpy()
    assert got.shape == (2, 1000)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match="images"):  # static: another batch or size is refused
        session.run(["logits"], {"images": x[:1]})


def assert_logits_match(folder: Path, module: Any, shape: tuple[int, ...], *, seed: int) -> None:
    """The export's model.onnx gives ``module``'s logits (ONNX Runtime against PyTorch, one random input)."""
    import onnxruntime as ort
    import torch

    from pvt_deploy.models import build_deploy_module

    x = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
    got = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"images": x})[0]
    with torch.no_grad():
        want = build_deploy_module(module)(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_module_with_other_class_count_and_weights(tmp_path: Path) -> None:
    """export_onnx(module, weights=FILE): a create_model module of 10 classes loads the checkpoint,
    the manifest names the classes 0..9 (as PyTorch runs name them) and records the file; ONNX Runtime gives
    PyTorch's logits."""
    import torch

    from pvt_deploy.export import export_onnx
    from pvt_deploy.models import create_model

    torch.manual_seed(5)
    trained = create_model("pvt_v2_b0-cls", num_classes=10)
    ckpt = tmp_path / "ten.pth"
    torch.save(trained.state_dict(), ckpt)
    module = create_model("pvt_v2_b0-cls", num_classes=10, seed=1)  # other weights until the file loads
    out = export_onnx(module, tmp_path / "ten", weights=ckpt, imgsz=64, parity=False, simplify=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["classes"] == [str(i) for i in range(10)]
    assert m["weights"]["source"] == str(ckpt.resolve()) and m["weights"]["sha256"] == sha256_file(ckpt)
    assert m["weights"]["random_init"] is False and "seed" not in m["weights"]
    assert_logits_match(out, trained, (1, 3, 96, 64), seed=1)


def test_module_not_made_by_create_model_is_refused(tmp_path: Path) -> None:
    import torch

    from pvt_deploy.errors import ModelNotFoundError
    from pvt_deploy.export import export_onnx

    with pytest.raises(ModelNotFoundError, match="pass a model name, a checkpoint, or a model made by create_model"):
        export_onnx(torch.nn.Conv2d(3, 8, 3), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_checkpoint_as_model_records_its_file(cls_state: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--model FILE.pth: variant, task and classes read from its tensors; the manifest records the file."""
    import torch

    ckpt = tmp_path / "b0_cls.pth"
    torch.save(cls_state, ckpt)
    out = tmp_path / "fromfile"
    code, err = _cli(["--model", str(ckpt), "-o", str(out), "--imgsz", "64", "--no-parity", "--no-simplify"],
                     monkeypatch, capsys)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert (m["model"], m["task"], len(m["classes"])) == ("pvt_v2_b0-cls", "classify", 1000)
    assert m["weights"]["source"] == str(ckpt.resolve()) and m["weights"]["sha256"] == sha256_file(ckpt)
    assert not m["weights"]["random_init"] and "RANDOM" not in err


def test_triton_serves_the_fp16_graph_with_half(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exports" / "b0"
    code, err = _cli(["--model", "pvt_v2_b0-cls", "--imgsz", "32", "--no-parity", "--no-simplify", "--half",
                      "--format", "triton", "--instance-kind", "cpu", "-o", str(out)], monkeypatch, capsys)
    assert code == 0, err
    served = tmp_path / "exports" / "triton" / "pvt_v2_b0-cls" / "1" / "model.onnx"
    assert served.read_bytes() == (out / "model.fp16.onnx").read_bytes()


def test_cli_parity_tolerance_nan_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--parity-tolerance nan made every limit NaN, against which no figure compares as failing: the
    gate passed every file whatever its error (tolerances recorded as "nan"). Now refused like 0."""
    out = tmp_path / "out"
    code, err = _cli(["--model", "pvt_v2_b0-cls", "-o", str(out), "--parity-tolerance", "nan"], monkeypatch, capsys)
    assert code == 2, err
    assert "--parity-tolerance: parity tolerance factor must be positive, not nan" in _error_line(err)
    assert not out.exists()


def test_extending_an_export_whose_model_onnx_is_gone_says_how_to_rebuild(
        failed_variants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`export --model exports/NAME --half` after model.onnx was deleted said only 'listed in the
    manifest but missing'; it now names the missing file and the command that rebuilds the export."""
    folder = tmp_path / "gone"
    shutil.copytree(failed_variants, folder)
    (folder / "model.onnx").unlink()
    before = _snapshot(folder)
    code, err = _cli(["--model", str(folder), "--half"], monkeypatch, capsys)
    line = _error_line(err)
    assert code == 2, err
    assert f"{folder}: no model.onnx to reuse" in line, line
    assert f"pvt-deploy export --model pvt_v2_b0-cls --imgsz 64 --half --int8 --int8-flavour cpu -o {folder}" in line
    assert _snapshot(folder) == before


def test_trusted_checkpoint_of_code_not_importable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint holding a whole pickled model (torch.save(model)) whose class lives in code not
    importable here: refused without --trust-checkpoint (as before); with it, a ModuleNotFoundError
    traceback and exit 1. Now one line naming the file, the missing module and the fix."""
    import subprocess

    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "their_models.py").write_text(
        "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = torch.nn.Linear(2, 2)\n")
    ckpt = tmp_path / "whole_model.pth"
    subprocess.run([sys.executable, "-c", f"import torch, their_models; torch.save(their_models.Net(), {str(ckpt)!r})"],
                   cwd=code_dir, check=True, timeout=120)
    out = tmp_path / "out"
    code, err = _cli(["--model", "pvt_v2_b0-cls", "--weights", str(ckpt), "-o", str(out)], monkeypatch, capsys)
    assert code == 2 and "--trust-checkpoint" in _error_line(err)
    code, err = _cli(["--model", "pvt_v2_b0-cls", "--weights", str(ckpt), "--trust-checkpoint", "-o", str(out)],
                     monkeypatch, capsys)
    line = _error_line(err)
    assert code == 2, err
    assert f"{ckpt}: cannot unpickle it here (No module named 'their_models')" in line, line
    assert "torch.save(model.state_dict(), FILE)" in line
    assert not out.exists()


def test_trusted_training_checkpoint_holding_the_model_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A training checkpoint {"model": <the nn.Module>, "epoch": ...} (the model object, not its state
    dict) was 'state dict holds no tensors' even with --trust-checkpoint; now its module's weights load
    and the export gives that model's logits."""
    import torch

    from pvt_deploy.models import create_model

    torch.manual_seed(7)
    trained = create_model("pvt_v2_b0-cls")
    ckpt = tmp_path / "train.pth"
    torch.save({"model": trained, "epoch": 3}, ckpt)
    out = tmp_path / "out"
    code, err = _cli(["--model", "pvt_v2_b0-cls", "--weights", str(ckpt), "--trust-checkpoint", "-o", str(out),
                      "--imgsz", "64", "--no-parity", "--no-simplify"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["weights"]["random_init"] is False
    assert_logits_match(out, trained, (1, 3, 64, 64), seed=2)
