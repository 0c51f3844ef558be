"""``pvt-deploy val`` as README's reader runs it (session 51): the line under the table says which pictures were
left out unreadable with several precisions as with one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import run

from pvt_deploy.assets import sample_images


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

