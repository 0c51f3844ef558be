"""``pvt-deploy val`` as README's reader runs it (session 51): the line under the table says which pictures were
left out unreadable with several precisions as with one, and ``--help`` says where ``--weights`` applies."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from cli_run import run

from pvt_deploy.assets import sample_images
from pvt_deploy.models import create_model
from pvt_deploy.models.synthetic import seeded_state_dict


@pytest.fixture(scope="module")
def cls_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export_fixtures import cached_big_cls_int8

    return cached_big_cls_int8(tmp_path_factory)


def _flat(text: str) -> str:
    """Text with the console's line wrapping and table borders undone."""
    return " ".join(text.replace("│", " ").split())


def _class_folders(root: Path, export: Path) -> Path:
    """The sample pictures under folders named after two of the export's classes, and a picture that does not
    decode (a download cut short) beside them."""
    classes = json.loads((export / "manifest.json").read_text())["classes"]
    for k, picture in enumerate(sample_images()):
        folder = root / classes[k % 2]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture, folder / picture.name)
    (root / classes[0] / "cut.jpg").write_bytes(sample_images()[0].read_bytes()[:300])
    return root


def test_val_says_the_unreadable_pictures_it_left_out_with_several_precisions_as_with_one(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_int8: Path, tmp_path: Path) -> None:
    data = _class_folders(tmp_path / "data", cls_int8)
    code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(cls_int8))
    assert code == 0, err
    text = _flat(out)
    assert f"3 pictures of {data} (2 classes) at " in text and "pictures/s; 1 unreadable picture skipped" in text, out
    # the side-by-side table of two precisions said 3 pictures and nothing of the one left out
    code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(cls_int8), "--precision", "fp32,int8")
    assert code == 0, err
    text = _flat(out)
    assert "int8 − fp32" in text and f"3 pictures of {data} (2 classes); pictures/s: fp32 " in text, out
    assert text.count("1 unreadable picture skipped") == 1, out
    # --json said it all along, per precision
    code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(cls_int8), "--precision", "fp32,int8",
                         "--json")
    assert code == 0 and [(r["images"], r["skipped"]) for r in json.loads(out)["runs"]] == [(3, 1), (3, 1)], err


def test_val_help_says_weights_apply_to_an_export_run_by_pytorch_as_they_do(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        cls_int8: Path, tmp_path: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "val", "--help")
    assert code == 0, err
    assert ("Checkpoint for a zoo model, or for an export folder with --backend torch (PyTorch): a file, an "
            "http(s):// URL (downloaded once, cached), or 'official'") in _flat(out), out
    # as it says: the export's architecture with these weights, in PyTorch; without --backend torch, refused
    data = _class_folders(tmp_path / "data", cls_int8)
    ckpt = tmp_path / "b0.pth"
    torch.save(seeded_state_dict(create_model("pvt_v2_b0-cls"), 3), ckpt)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pvt_deploy"):
        code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(cls_int8), "--backend", "torch",
                             "--weights", str(ckpt), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["backend"] == "torch" and report["images"] == 3, out
    assert "b0.pth: 178 tensors loaded" in caplog.text and "RANDOMLY" not in caplog.text, caplog.text
    code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(cls_int8), "--weights", str(ckpt))
    assert code == 2 and "add --backend torch" in err and out == "", err
