"""Follow-ups of session 48's fixes, each where one path said or did a thing another did otherwise: an export
folder's file the disk fails to read; the export's memory check, which counted pictures never held together."""

from __future__ import annotations

import errno
import os
import weakref
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from PIL import Image
from test_tensorrt_build_fake import make_artifact

from pvt_deploy.manifest import read_manifest


def failing_disk(path: Path) -> Path:
    """``path`` made a file whose read fails with EIO, as a failing disk's does: Linux's /proc/self/mem read from
    offset 0 (no memory mapped there) is a regular file whose read says 'Input/output error'."""
    path.unlink(missing_ok=True)
    path.symlink_to("/proc/self/mem")
    with pytest.raises(OSError) as caught, path.open("rb") as f:
        f.read()
    assert caught.value.errno == errno.EIO
    return path


def test_an_export_folder_whose_onnx_the_disk_fails_to_read_is_said_as_the_lone_file_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """info and infer of the folder said 'error: art/model.onnx: Input/output error' (the hash's OSError, given the
    file's name), where of the lone file they say 'cannot read art/model.onnx: Input/output error', as export
    and bench do: the folder's hash against its manifest says it in those words."""
    folder = make_artifact(tmp_path / "art")
    onnx = failing_disk(folder / "model.onnx")
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(photo)
    said = f"error: cannot read {onnx}: Input/output error\n"
    for args in (("info", str(folder)), ("info", str(folder), "--json"), ("info", str(onnx)),
                 ("infer", str(photo), "--model", str(folder), "--no-save"),
                 ("infer", str(photo), "--model", str(onnx), "--no-save")):
        assert run(monkeypatch, capsys, *args) == (2, "", said), args
    assert os.path.islink(onnx) and sorted(p.name for p in tmp_path.iterdir()) == ["IMG_0001.jpg", "art"]


def test_the_memory_check_counts_the_calibration_or_the_parity_pictures_whichever_are_more_not_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The calibration pictures are preprocessed inside the INT8 step and let go before parity preprocesses its
    own (3b176cf), so the two are never held together, but the check before the trace (and an extension's before
    its variants) added them: a machine that holds the larger set beside a pass was refused the export. Here 3
    bundled photos each, at 4.5 pictures' room beside the pass: the fresh export and an extension are made, and
    the calibration pictures are gone when parity's are preprocessed."""
    from pvt_deploy.export import calibration, export_onnx
    from pvt_deploy.models import build_deploy_module, build_model, resolve_name
    from pvt_deploy.runtimes.torch import forward_bytes

    entry = resolve_name("pvt_v2_b0-cls")
    one_pass = forward_bytes(build_deploy_module(build_model(entry), entry.task), 1, 64, 64)
    assert one_pass is not None
    picture = 12 * 64 * 64  # float32 RGB at 64x64
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: one_pass + picture * 9 // 2)
    held: list[list[weakref.ref[object]]] = []  # each preprocessing's arrays, weakly
    alive_then: list[int] = []  # at each preprocessing, how many arrays of the earlier ones were still alive
    make_batches = calibration.make_batches

    def watched(*args: object, **kwargs: object) -> list[calibration.Batch]:
        alive_then.append(sum(ref() is not None for refs in held for ref in refs))
        batches = make_batches(*args, **kwargs)  # type: ignore[arg-type]
        held.append([weakref.ref(b.images) for b in batches])
        return batches

    monkeypatch.setattr(calibration, "make_batches", watched)
    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "fresh", imgsz=64, int8=True, int8_flavour="trt",
                         simplify=False)
    assert [len(refs) for refs in held] == [3, 3] and alive_then == [0, 0]  # calibration's, then parity's
    assert sorted(read_manifest(folder)["parity"]) == ["model.int8.trt.onnx", "model.onnx"]
    held.clear()
    alive_then.clear()
    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "ext", imgsz=64, parity=False, simplify=False)
    export_onnx(folder, int8=True, int8_flavour="trt")  # calibrated and gated in ONNX Runtime
    assert [len(refs) for refs in held] == [3, 3] and alive_then == [0, 0]
    assert sorted(read_manifest(folder)["parity"]) == ["model.int8.trt.onnx"]
