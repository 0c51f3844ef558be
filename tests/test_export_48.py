"""Export and models: faults found in the review of session 47."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from cli_run import run
from test_tensorrt_build_fake import make_artifact

from pvt_deploy.errors import InputError
from pvt_deploy.export.triton import export_triton
from pvt_deploy.manifest import read_manifest, write_manifest


def _failing_disk(path: Path) -> Path:
    """``path`` made a file whose read fails with EIO, as a failing disk's does: Linux's /proc/self/mem read from
    offset 0 (no memory mapped there) is a regular file whose read says 'Input/output error'."""
    path.unlink()
    path.symlink_to("/proc/self/mem")
    with pytest.raises(OSError) as caught, path.open("rb") as f:
        f.read()
    assert caught.value.errno == errno.EIO
    return path


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
    onnx = _failing_disk(folder / "model.onnx")
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
