"""``info`` as an integrity check: a changed, missing or unreadable file exits 1 (helper CV, session 50)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import run
from test_runtime_artifacts import cached_export


@pytest.fixture(scope="module")
def cls_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_export(tmp_path_factory, "cls")


def _copy(cls_export: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(cls_export, folder)
    return folder


def test_info_exits_1_where_a_file_changed_or_is_missing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path,
        tmp_path: Path) -> None:
    """``info`` showed MISMATCH (a file's sha256 not the manifest's) and exited 0, so a script taking it as an
    integrity check passed a damaged export. The table is still printed, then one line says why, exit 1; the
    JSON carries the same verdict."""
    folder = _copy(cls_export, tmp_path)
    code, out, err = run(monkeypatch, capsys, "info", str(folder))
    assert code == 0 and "MISMATCH" not in out and err == "", err
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--json")
    assert code == 0 and json.loads(out)["verdict"] == {"ok": True, "problems": []}, err

    with open(folder / "model.int8.onnx", "r+b") as f:  # one byte changed, the size the same
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    why = "model.int8.onnx changed since the export (its sha256 is not the manifest's)"
    code, out, err = run(monkeypatch, capsys, "info", str(folder))
    assert code == 1 and "MISMATCH" in out and "backends here" in out, (out, err)  # the tables, all of them
    assert err.splitlines() == [f"error: {folder}: {why}"], err
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--json")
    facts = json.loads(out)
    assert code == 1 and facts["verdict"] == {"ok": False, "problems": [why]}, err
    assert err.splitlines() == [f"error: {folder}: {why}"], err

    (folder / "model.onnx").unlink()
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--json")
    assert code == 1 and json.loads(out)["verdict"]["problems"] == [
        "model.onnx is missing (the manifest lists it)", why], err
    assert err.splitlines() == [f"error: {folder}: model.onnx is missing (the manifest lists it); {why}"], err


def test_info_graph_exits_1_where_a_graph_cannot_be_read(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path,
        tmp_path: Path) -> None:
    """A graph that cannot be read (here an .onnx the manifest does not list, so no sha256 says it changed) is
    a failed check with --graph, which reads the graphs; without --graph nothing reads it, and the file is
    only 'unlisted'."""
    folder = _copy(cls_export, tmp_path)
    (folder / "extra.onnx").write_bytes(b"\x08\x07\xff\xff")  # a field, then a cut varint: no model
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--json")
    facts = json.loads(out)
    assert code == 0 and facts["verdict"]["ok"] is True, err
    assert {f["name"]: f["check"] for f in facts["files"]}["extra.onnx"] == "unlisted"
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--graph", "--json")
    facts = json.loads(out)
    (problem,) = facts["verdict"]["problems"]
    assert code == 1 and problem.startswith("extra.onnx: not a readable ONNX model ("), problem
    assert err.splitlines() == [f"error: {folder}: {problem}"], err
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--graph")
    assert code == 1 and "graph model.onnx (fp32)" in " ".join(out.split()), out
