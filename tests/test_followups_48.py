"""Follow-ups of session 48's fixes, each where one path said or did a thing another did otherwise: an export
folder's file the disk fails to read; the export's memory check, which counted pictures never held together; a
picture too wide for OpenCV, skipped from disk and decoded at a URL."""

from __future__ import annotations

import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from cli_run import run
from disk_faults import failing_disk
from PIL import Image
from test_io_sources import http_server  # noqa: F401 - the fixture
from test_tensorrt_build_fake import make_artifact

from pvt_deploy.io.sources import open_source, read_image
from pvt_deploy.manifest import read_manifest


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


@pytest.mark.parametrize("width", [1000001, 1100000], ids=["past-libpng", "past-opencv"])
def test_a_16_bit_png_too_wide_for_opencv_is_the_same_picture_on_disk_and_at_a_url(
        width: int, tmp_path: Path, http_server: tuple[str, Path]) -> None:  # noqa: F811
    """A 16-bit line-scan strip as a PNG: past 2^20 pixels OpenCV raises (the file was skipped, c9091ce), and past
    libpng's 1000000 it fails as for a damaged file ('corrupt or not an image'), where at a URL both were FFmpeg's
    picture, cut to 8 bits by FFmpeg's conversion (1 level off the rounding of every other 16-bit picture here).
    Both are FFmpeg's decode now, rounded as OpenCV's 16-bit pictures are: (v + 128) // 257."""
    values = (np.arange(width, dtype=np.int64) * 59 % 65536).astype(np.uint16)
    served = http_server[1] / "strip.png"
    Image.fromarray(values[None]).save(served)
    assert Image.open(served).mode == "I;16"
    expected = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    with open_source(served) as source:
        (on_disk,) = [f.image for f in source]
    with open_source(f"{http_server[0]}/strip.png") as source:
        (at_url,) = [f.image for f in source]
    for image in (on_disk, at_url):
        assert image.shape == (1, width, 3) and (image == expected[None, :, None]).all()


def test_ffmpegs_decode_of_a_picture_past_opencvs_limits_gives_opencvs_pixels(tmp_path: Path) -> None:
    """Where OpenCV refuses a picture for its size, FFmpeg decodes it as OpenCV would: 8 and 16 bits, gray, a
    palette, alpha dropped, the EXIF orientation (8 of them, turns and mirrors; a TIFF's tag). OpenCV's limits are
    lowered to 4 pixels a side in a process of its own (they are read when OpenCV loads), whose pictures must
    equal this one's, all decoded by OpenCV."""
    import cv2

    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    cv2.imwrite(str(folder / "rgb16.png"), rng.integers(0, 65536, (5, 9, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "rgba16.png"), rng.integers(0, 65536, (5, 9, 4), dtype=np.uint16))
    cv2.imwrite(str(folder / "gray16.tiff"), rng.integers(0, 65536, (5, 9), dtype=np.uint16))
    cv2.imwrite(str(folder / "rgb16.ppm"), rng.integers(0, 65536, (5, 9, 3), dtype=np.uint16))
    for mode in ("RGB", "P", "L", "LA", "RGBA"):
        Image.fromarray(rng.integers(0, 256, (5, 9, 3), dtype=np.uint8)).convert(mode).save(folder / f"{mode}.png")
    Image.fromarray(rng.integers(0, 256, (5, 9, 3), dtype=np.uint8)).save(folder / "RGB.bmp")
    for orientation in range(1, 9):
        image = Image.fromarray(rng.integers(0, 256, (5, 9, 3), dtype=np.uint8))
        exif = image.getexif()
        exif[0x0112] = orientation
        image.save(folder / f"turned{orientation}.png", exif=exif.tobytes())
        image.save(folder / f"turned{orientation}.tiff", tiffinfo={0x0112: orientation})
    names = sorted(p.name for p in folder.iterdir())
    script = ("import sys, cv2, numpy as np\n"
              "from pvt_deploy.io.sources import read_image\n"
              "folder, out = sys.argv[1:]\n"
              "try:\n"
              "    cv2.imread(folder + '/RGB.png')\n"
              "    sys.exit('OpenCV read a picture past its limits')\n"
              "except cv2.error:\n"
              "    pass\n"
              f"np.savez(out, **{{n: read_image(folder + '/' + n) for n in {names!r}}})\n")
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_WIDTH": "4", "OPENCV_IO_MAX_IMAGE_HEIGHT": "4"}
    done = subprocess.run([sys.executable, "-c", script, str(folder), str(tmp_path / "ffmpeg.npz")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "ffmpeg.npz") as ffmpeg:
        for name in names:
            opencv = read_image(folder / name)
            assert ffmpeg[name].shape == opencv.shape and np.array_equal(ffmpeg[name], opencv), name
    assert read_image(folder / "turned6.png").shape == (9, 5, 3)  # turned, both ways
