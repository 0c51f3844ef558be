"""The CLI's one-line messages and bench's refusals, as a user meets them: files named as they are on disk."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image
from test_tensorrt_build_fake import make_artifact


def test_a_file_name_holding_a_newline_stays_on_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A name may hold a newline (``touch $'new\\nline.mp4'``): the error and infer's line for a picture were split
    across two lines, the second of them a line of its own that no reader of the output could tell from one."""
    art = make_artifact(tmp_path / "art")
    folder = tmp_path / "nl2"
    folder.mkdir()
    photo = folder / "new\nphoto.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photo, format="JPEG")
    code, out, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(art), "--no-save")
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if "48x32" in line]
    assert line.startswith(f"1/1 {folder}/new\\nphoto.jpg 48x32: ")
    code, out, err = run(monkeypatch, capsys, "infer", str(folder / "new\nline.mp4"), "--model", str(art))
    assert (code, err) == (2, f"error: no such file or folder: {folder}/new\\nline.mp4\n")


def test_bench_says_a_model_file_the_disk_fails_to_read_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An export's model.onnx whose read fails with EIO (a failing disk: Linux's /proc/self/mem read from offset 0)
    was tabled as a backend that crashed, 'onnx: OSError: [Errno 5] Input/output error: ...', exit 1; info and
    infer say the file cannot be read, exit 2, and so does bench of a lone .onnx."""
    art = make_artifact(tmp_path / "art")
    onnx = art / "model.onnx"
    onnx.unlink()
    onnx.symlink_to("/proc/self/mem")
    with pytest.raises(OSError) as caught, onnx.open("rb") as f:
        f.read()
    assert caught.value.errno == errno.EIO
    for given in (art, onnx):
        code, out, err = run(monkeypatch, capsys, "bench", "--model", str(given), "--iters", "1", "--warmup", "0")
        assert code == 2
        assert err.splitlines()[-1] == f"error: no backend could be benchmarked here: onnx: cannot read {onnx}: " \
                                       "Input/output error"
