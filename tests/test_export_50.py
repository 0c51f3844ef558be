"""Export leftovers of session 50 (helper CX): what an extension makes is decided once, an export made before
the manifest recorded --trust-checkpoint (25105b2), and the memory an anamorphic --calib clip's frames need."""

from __future__ import annotations

import json
import shlex
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_run import reexport_command, run

import pvt_deploy.export.onnx as export_onnx
from pvt_deploy.manifest import read_manifest


def test_an_extension_with_calib_decides_once_what_it_makes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``--calib``, export_onnx asked _wanted_variants what the extension makes (to say before the pictures
    are listed whether --calib serves anything, a662fe8), then _extend asked it again: each INT8 file opened and
    checked against the manifest twice. It is asked once, and the answer holds: the FP16 file made, the INT8
    files there kept byte for byte."""
    from PIL import Image
    from test_tensorrt_build_fake import make_artifact

    asked: list[Any] = []
    real = export_onnx._wanted_variants
    monkeypatch.setattr(export_onnx, "_wanted_variants", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    folder = make_artifact(tmp_path / "art", "model.int8.onnx", "model.int8.trt.onnx")
    kept = {n: (folder / n).read_bytes() for n in ("model.int8.onnx", "model.int8.trt.onnx")}
    mine = tmp_path / "mine"
    mine.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(mine / "a.png")
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", "--half", "--calib", str(mine))
    assert code == 0, err
    assert len(asked) == 1, asked
    assert read_manifest(folder)["files"]["model.fp16.onnx"]["precision"] == "fp16"
    assert {n: (folder / n).read_bytes() for n in kept} == kept


def test_an_export_made_before_the_trust_record_asks_for_the_flag_where_its_checkpoint_is_loaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """An export made with --trust-checkpoint before 25105b2 has no weights.trust_checkpoint in its manifest. Its
    ONNX graph loads and is extended as any other's (no checkpoint is read); what rebuilds it from its checkpoint
    (check, the PyTorch backend, the command that exports it again) is given no flag by the next: line or the
    re-export command, trusts nothing silently, and refuses the file in one line that names the flag (exit 2).
    Given the flag, each works, and the export made again records it."""
    import torch

    from pvt_deploy.models import create_model

    ckpt = tmp_path / "trained.pth"
    torch.save({"model": create_model("pvt_v2_b0-cls", seed=7).state_dict(), "args": Path("/train/run1")}, ckpt)
    folder = tmp_path / "cls"
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(ckpt), "--trust-checkpoint", "--imgsz", "64",
                       "--max-size", "128", "--no-parity", "-o", str(folder))
    assert code == 0, err
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    assert manifest["weights"].pop("trust_checkpoint") is True
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), "utf-8")  # the layout before 25105b2

    code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--half", "--no-parity")
    assert code == 0 and "model.fp16.onnx" in read_manifest(folder)["files"], err
    steps = next(line for line in err.splitlines() if line.startswith("next: "))[len("next: "):].split(" · ")
    assert steps[1:] == [f"pvt-deploy check --model {folder}", f"pvt-deploy bench --model {folder}"], steps
    refused = (f"error: {ckpt}: refusing to unpickle arbitrary objects from this checkpoint (it holds "
               "pathlib.PosixPath, not only tensors) (pass --trust-checkpoint (trust=True in Python) only if you "
               "trust its source)\n")
    picture = str(Path(export_onnx.__file__).parents[1] / "assets" / "chelsea.jpg")
    code, out, err = run(monkeypatch, capsys, "infer", picture, "--model", str(folder), "--backend", "torch",
                         "--no-save")
    assert (code, err.splitlines()[-1] + "\n") == (2, refused), err
    code, out, err = run(monkeypatch, capsys, *shlex.split(steps[1])[1:], "--max-images", "2", "--json")
    assert code == 2 and "pass --trust-checkpoint" in err.splitlines()[-1], err
    code, out, err = run(monkeypatch, capsys, *shlex.split(steps[1])[1:], "--trust-checkpoint", "--max-images", "2",
                         "--json")
    assert code == 0 and json.loads(out)["reference"] == "torch", err

    again = reexport_command(monkeypatch, capsys, caplog, folder)
    assert again[:6] == ["pvt-deploy", "export", "--model", "pvt_v2_b0-cls", "--weights", str(ckpt)], again
    assert "--trust-checkpoint" not in again
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    code, _, err = run(monkeypatch, capsys, *again[1:], "--no-parity")
    assert (code, err.splitlines()[-1] + "\n") == (2, refused), err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # refused before anything was written
    code, _, err = run(monkeypatch, capsys, *again[1:], "--no-parity", "--trust-checkpoint")
    assert code == 0 and read_manifest(folder)["weights"]["trust_checkpoint"] is True, err


def _clip(path: Path, width: int, height: int, sar: Fraction | None) -> Path:
    """12 frames of H.264 in mp4, stored ``width`` x ``height``, of pixels ``sar`` wide (None: square)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        for i in range(12):
            image = np.full((height, width, 3), 20 * i, np.uint8)
            image[:, : width // 2, 0] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_an_anamorphic_calib_clip_is_weighed_at_the_width_its_frames_are_kept_at(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A --calib clip of non-square pixels (640x480 stored, 2:1: a player shows 1280x480) gives frames widened to
    1280x480, as infer reads them, but was weighed against the memory free at 640x480: the RGB frames it keeps need
    twice what was counted. It is weighed at 1280x480, with its decoding and the 4 frames kept (120 + 3 x 4 bytes
    a pixel): with memory free between the two figures, the export says so in one line (exit 2) before the model
    is built, nothing made; a clip of square pixels stored 640x480 is read, and so is the anamorphic one with
    memory enough, its frames 1280 wide."""
    from pvt_deploy.export.calibration import usable_images
    from pvt_deploy.io.sources import VIDEO_BYTES_PER_PIXEL_UNSAVED
    from pvt_deploy.utils import cpu

    wide = _clip(tmp_path / "wide.mp4", 640, 480, Fraction(2, 1))
    square = _clip(tmp_path / "square.mp4", 640, 480, None)
    per_pixel = VIDEO_BYTES_PER_PIXEL_UNSAVED + 3 * 4
    stored, shown = 640 * 480 * per_pixel, 1280 * 480 * per_pixel
    free = stored * 3 // 2  # above the stored size's need, below the shown size's
    monkeypatch.setattr(cpu, "available_memory", lambda: free)
    assert [f.image.shape for f in usable_images(square, 4)] == [(480, 640, 3)] * 4  # type: ignore[union-attr]
    loaded: list[Any] = []
    monkeypatch.setattr(export_onnx, "_load", lambda *a, **kw: loaded.append(a))
    out = tmp_path / "out"
    code, stdout, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--int8",
                            "--calib", str(wide), "--calib-size", "4", "-o", str(out))
    assert (code, stdout, loaded) == (2, "", []), err
    assert err.strip().splitlines() == [f"error: calibration images: {wide}: a 1280x480 video needs about "
                                        f"{shown / 1e6:.0f} MB of memory to decode and run, more than the "
                                        f"{free / 1e6:.0f} MB free (free some memory, or scale it down)"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["square.mp4", "wide.mp4"]
    monkeypatch.setattr(cpu, "available_memory", lambda: shown)
    assert [f.image.shape for f in usable_images(wide, 4)] == [(480, 1280, 3)] * 4  # type: ignore[union-attr]
