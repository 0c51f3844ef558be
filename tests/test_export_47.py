"""Export and check: faults found in review (session 47)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run

from pvt_deploy.errors import InputError


def test_a_task_given_to_the_python_api_is_taken_in_any_case_as_the_cli_takes_it() -> None:
    """export --task Detect and models --task Segment fold the word (ea93147), but the zoo's own check of the
    task, which create_model and Model reach, compared it as typed: create_model("pvt_v2_b0", task="Classify")
    was refused, a second rule for one word. One rule (errors.one_of) now, and its refusal as before."""
    from pvt_deploy.models import create_model, resolve_name

    model = create_model("pvt_v2_b0", task="Classify", seed=0)
    assert model.zoo_task == "classify" and model.zoo_name == "pvt_v2_b0-cls"
    assert resolve_name("pvt_v2_b2_li", "SEGMENT").name == "pvt_v2_b2_li-seg"
    with pytest.raises(InputError) as refused:
        resolve_name("pvt_small", "segmentation")
    assert str(refused.value) == "task 'segmentation': choose one of detect, segment, classify, features"


@pytest.fixture(scope="module")
def big_cls_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pvt_v2_b0 classifier up to 4096 px whose CPU INT8 graph holds its attention scores whole (10.5 GB at
    2560x2560); the session's, as test_cli_options_46's."""
    from export_fixtures import cached_big_cls_int8

    return cached_big_cls_int8(tmp_path_factory)


def test_check_names_onnx_runtimes_refusal_of_a_size_beside_pytorchs(
        big_cls_int8: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """check --backends torch,onnx-int8 --imgsz 2560, where PyTorch's estimate and ONNX Runtime's run both
    refuse the size, ended on PyTorch's refusal alone (the first row's): what the export's INT8 graph, the
    backend asked about, needed was left out. Both are named, in the rows' order, one line, exit 2. The address
    space is capped a few GB above what the process holds, so the scores cannot be had on any machine."""
    import resource

    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: 8 << 30)  # PyTorch's estimate refuses
    with open("/proc/self/statm", encoding="utf-8") as f:
        held = int(f.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (held + (4 << 30), hard))
    try:
        code, stdout, err = run(monkeypatch, capfd, "check", "--model", str(big_cls_int8), "--backends",
                                "torch,onnx-int8", "--max-images", "1", "--imgsz", "2560")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert code == 2 and "Traceback" not in err, err[-2000:]
    line = err.strip().splitlines()[-1]
    torch_said = line.index("torch: --imgsz 2560x2560 at --batch 1 needs about ")
    ort_said = line.index("; onnx-int8: model.int8.onnx: --imgsz 2560x2560 at --batch 1 needs more memory than "
                          "ONNX Runtime could get: it asked for 10 GB at once, more than the 8.6 GB free")
    assert line.startswith(f"error: {big_cls_int8}: no backend can run this artifact here: ") and torch_said < ort_said, line


def test_a_dynamic_int8_export_that_calibrates_nothing_does_not_say_it_calibrates(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """--int8-cpu dynamic of a PVT v1 graph quantizes MatMul weights only and reads no picture (v2's depthwise
    and patch convs are calibrated; v1 has none), yet the export warned 'calibrating INT8 on the 3 bundled
    sample images', showed 'calibrating INT8' and recorded a calibration on N images in the manifest, and a
    --calib given was read for nothing, unsaid. Said as it is: no calibration phase, record or warning of one,
    and a --calib given is said to calibrate nothing."""
    import json
    import logging

    from pvt_deploy.assets import sample_image
    from pvt_deploy.export import export_onnx

    calib = str(sample_image("coffee"))
    for given in (None, calib):
        phases: list[str] = []
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pvt_deploy"):
            folder = export_onnx("pvt_tiny-cls", tmp_path / f"cls{given is None}", imgsz=64, int8=True,
                                 int8_flavour="cpu", int8_cpu="dynamic", calib=given, parity=False, simplify=False,
                                 progress=lambda phase, step, total, seen=phases: seen.append(phase))
        int8 = json.loads((folder / "manifest.json").read_text())["precision"]["int8"]
        assert list(int8) == ["cpu"] and int8["cpu"]["method"] == "dynamic", int8  # no "calibration" record
        assert "int8-calibrate" not in phases and "int8-cpu" in phases, phases
        said = [r.getMessage() for r in caplog.records if "calib" in r.getMessage()]
        assert said == ([] if given is None else [
            f"calib {calib} calibrates nothing: model.int8.onnx is dynamic INT8 (weights only), and pvt_tiny-cls "
            "has no convolution that it quantizes static"]), said


def test_a_backbones_maps_of_a_padded_picture_are_cropped_to_the_pictures_share(tmp_path: Path) -> None:
    """A features export of a wide strip, padded up to the graph's minimum height (9c99f6e), returned maps
    whose rows were mostly the pad: a 20x200 picture letterboxed to 6x64 and padded to 64x64 gave stride-4
    maps of 16 rows, 14 of them padding, and a picture's maps were of another size in each batch it was in.
    Each stage's map is cropped to the cells of the picture's content at that stage's stride, rounded up; a
    picture that fills its input keeps its whole maps."""
    import numpy as np

    from pvt_deploy.api import Model
    from pvt_deploy.export import export_onnx

    folder = export_onnx("pvt_v2_b0-features", tmp_path / "feat", imgsz=64, min_size=64, max_size=128, parity=False,
                         simplify=False)
    rng = np.random.default_rng(0)
    strip = rng.integers(0, 256, (20, 200, 3), dtype=np.uint8)
    square = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with Model(str(folder)) as model:
        (alone,) = model.predict(strip)
        feed, records = model.predictor().preprocess([strip])
        raw = model.backend.infer(feed)
        together = model.predict([square, strip], batch=2)
    assert (records[0].resized_hw, records[0].input_hw) == ((6, 64), (64, 64))
    assert len(raw) == 4
    for name, value in raw.items():
        stride = 64 // value.shape[-1]
        rows = -(-6 // stride)  # 2 at stride 4, 1 at 8, 16 and 32
        assert alone.features[name].shape == (value.shape[1], rows, 64 // stride), (name, stride)
        np.testing.assert_array_equal(alone.features[name], value[0][:, :rows])
        assert together[1].features[name].shape == alone.features[name].shape
        assert together[0].features[name].shape == value.shape[1:]  # the square fills its input: whole


def test_the_memory_check_of_an_export_counts_the_pictures_it_preprocesses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export's memory check before the trace (632b9af) counted one PyTorch pass at --imgsz, but calibration and
    parity preprocess all their pictures first and hold them while the model runs (float32 RGB, 12 bytes a
    pixel: 64 calibration pictures at 4096x4096 are 12.9 GB more). They are counted, and the refusal says so,
    before the trace; nothing is written."""
    from pvt_deploy.errors import ShapeError
    from pvt_deploy.export import export_onnx
    from pvt_deploy.models import build_deploy_module, build_model, resolve_name
    from pvt_deploy.runtimes.torch import TorchBackend

    entry = resolve_name("pvt_v2_b0-cls")
    with TorchBackend(build_deploy_module(build_model(entry), entry.task), device="cpu") as backend:
        one_pass = backend.memory_needed(1, 1024, 1024)  # what the check counted
    assert one_pass is not None
    pictures = 12 * 1024 * 1024 * 3  # the 3 bundled photos, for calibration, then for parity: 3 held at once
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: one_pass + pictures // 2)
    with pytest.raises(ShapeError) as refused:
        export_onnx("pvt_v2_b0-cls", tmp_path / "fresh", imgsz=1024, int8=True, int8_flavour="trt", simplify=False)
    said = str(refused.value)
    assert "imgsz 1024x1024 at batch 1 needs about " in said, said
    assert ("for PyTorch's largest attention, the rest of its forward pass and the 3 pictures it holds at once, "
            "preprocessed at that size, more than the ") in said, said
    assert "the parity gate and INT8 calibration run" in said, said
    assert not (tmp_path / "fresh").exists()


def test_an_extension_is_refused_where_its_runs_at_the_exports_size_cannot_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export extended with --int8 (its folder's model.onnx reused) calibrates at the export's size, which
    an export made with --no-parity never had checked, and the extension did not check it at all: at a size
    that cannot fit, ONNX Runtime failed to allocate (exit 1) or the kernel killed it. The export records a
    pass's bytes; the extension weighs them with its pictures, as a fresh export does, and refuses before any
    picture is preprocessed; the folder is left as it was."""
    import json

    from pvt_deploy.errors import ShapeError
    from pvt_deploy.export import export_onnx
    from pvt_deploy.models import build_deploy_module, build_model, resolve_name
    from pvt_deploy.runtimes.torch import TorchBackend

    entry = resolve_name("pvt_v2_b0-cls")
    with TorchBackend(build_deploy_module(build_model(entry), entry.task), device="cpu") as backend:
        one_pass = backend.memory_needed(1, 1024, 1024)  # what a fresh export's check counts
    assert one_pass is not None
    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "cls", imgsz=1024, parity=False, simplify=False)
    before = json.loads((folder / "manifest.json").read_text())
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: one_pass // 2)
    with pytest.raises(ShapeError) as refused:
        export_onnx(folder, int8=True, int8_flavour="trt", parity=False)
    need = one_pass + 12 * 1024 * 1024 * 3
    assert str(refused.value) == (
        f"{folder}: its size 1024x1024 needs about {need / 1e9:.1f} GB for a pass of the model and the 3 pictures it "
        f"holds at once, preprocessed at that size, more than the {one_pass / 2e9:.1f} GB free in this machine's "
        "memory; INT8 calibration runs the model at that size (free some memory, or export the model again with a smaller imgsz)")
    assert json.loads((folder / "manifest.json").read_text()) == before and before["export"]["pass_bytes"] == one_pass
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["manifest.json", "model.onnx"]
    monkeypatch.setattr("pvt_deploy.utils.cpu.available_memory", lambda: need + 1)  # as much as it needs: made
    export_onnx(folder, int8=True, int8_flavour="trt", parity=False)
    assert (folder / "model.int8.trt.onnx").is_file()
