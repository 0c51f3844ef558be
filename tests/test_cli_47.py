"""The CLI's one-line messages and bench's refusals, as a user meets them: files named as they are on disk."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from disk_faults import failing_disk
from PIL import Image
from test_tensorrt_build_fake import make_artifact

from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import open_source


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
    (folder / "new\nline.mp4").touch()  # and a warning: the folder's summary of the files it leaves out
    done = subprocess.run([sys.executable, "-m", "pvt_deploy", "infer", str(folder), "--model", str(art), "--no-save"],
                          capture_output=True, text=True, timeout=300)  # the CLI's own logging, not pytest's
    assert done.returncode == 0 and "1 empty file (new\\nline.mp4) left out" in " ".join(done.stderr.split())
    assert not any(line.startswith(("line.mp4", "photo.jpg")) for line in done.stderr.splitlines()), done.stderr


def test_bench_says_a_model_file_the_disk_fails_to_read_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An export's model.onnx whose read fails with EIO (a failing disk: Linux's /proc/self/mem read from offset 0)
    was tabled as a backend that crashed, 'onnx: OSError: [Errno 5] Input/output error: ...', exit 1; info and
    infer say the file cannot be read, exit 2, and so does bench of a lone .onnx."""
    art = make_artifact(tmp_path / "art")
    onnx = failing_disk(art / "model.onnx")
    for given in (art, onnx):
        code, out, err = run(monkeypatch, capsys, "bench", "--model", str(given), "--iters", "1", "--warmup", "0")
        assert code == 2
        assert err.splitlines()[-1] == f"error: no backend could be benchmarked here: onnx: cannot read {onnx}: " \
                                       "Input/output error"


@pytest.mark.parametrize("name", ["logo.gif", "VID_0001.mp4", "IMG_0001.heic", "IMG_0002.jpg", "list.txt", "notes"])
def test_a_file_of_0_bytes_is_said_empty_whatever_its_name(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A copy or download that never started: a lone .gif said 'cannot decode X as a video', an .mp4 in a list
    'cannot decode image X', a .heic that it is an iPhone's photo, a .txt that the list names no files, a name of
    no suffix 'neither a readable image nor a video'. No picture, video or list: one line, one way."""
    empty = tmp_path / name
    empty.touch()
    with pytest.raises(InputError) as caught:
        open_source(empty)
    assert caught.value.args[0] == f"empty file {empty}: 0 bytes"
    assert caught.value.hint == "a copy or download that never started: copy or download it again"
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photo)
    with caplog.at_level(logging.WARNING), open_source([photo, empty]) as source:
        assert [f.name for f in source] == ["IMG_0001.jpg"]  # the photo runs, the empty file is left out
    assert f"the list: running its 1 image; 1 empty file ({empty}) left out: 0 bytes (a copy or download" in caplog.text
    code, out, err = run(monkeypatch, capsys, "infer", str(empty), "--model", str(make_artifact(tmp_path / "art")))
    assert (code, err) == (2, f"error: empty file {empty}: 0 bytes (a copy or download that never started: copy or "
                              "download it again)\n")
