"""README's Export, TensorRT, Inference, Output files and Exit codes sections held against what the CLI does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_run import run
from test_tensorrt_build_fake import make_artifact


def test_an_output_folder_name_too_long_is_refused_before_the_model_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """README, exit code 2: 'an output folder that cannot be written (checked before the model loads ...)'. A
    folder name longer than the file system takes, under a folder that is not there yet (``-o new/<256 a>``), passed
    the check (the system says 'File name too long' only where the folders before it exist): the model loaded, the
    pictures were decoded, and the run failed at its first write, leaving the ``new/`` it had made."""
    art = make_artifact(tmp_path / "art")
    photo = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (64, 48), (90, 120, 30)).save(photo)
    long = "a" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1)
    for out in (tmp_path / "new" / long, tmp_path / "new" / long / "sub", tmp_path / long):
        code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(art), "-o", str(out))
        assert (code, err) == (2, f"error: cannot write outputs to {out}: File name too long\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "in.png"]  # nothing made
    # before the model: a model that is not there is not what it says
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(tmp_path / "gone"),
                       "-o", str(tmp_path / "new" / long))
    assert (code, err) == (2, f"error: cannot write outputs to {tmp_path / 'new' / long}: File name too long\n")
    # a name of the longest length the system takes is written
    out = tmp_path / "new" / long[1:]
    code, _, err = run(monkeypatch, capsys, "infer", str(photo), "--model", str(art), "-o", str(out), "--save-json")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["in.png", "predictions.jsonl"]
