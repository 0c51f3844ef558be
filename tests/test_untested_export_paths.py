"""Export paths no other test ran (found by measuring coverage), driven as a user drives them: the CLI
(``pvt-deploy export``) or the public Python API, asserting the outcome a user sees (files, numbers
against PyTorch, the one-line message and exit code, an export left as it was)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

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
    assert f"an incomplete PVT model: no {missing} weights" in line, line
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
