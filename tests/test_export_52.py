"""Export: argument contradictions refused before the model loads, and the help's words (helper DT, session 52)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run


class Loaded(Exception):
    """Raised where the export would read pictures or load the model: the arguments were let through."""


@pytest.fixture
def nothing_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvt_deploy.export import onnx as export_onnx_module

    def loads(*args: object, **kwargs: object) -> None:
        raise Loaded

    monkeypatch.setattr(export_onnx_module, "_load", loads)
    monkeypatch.setattr(export_onnx_module, "_image_paths", loads)


@pytest.mark.parametrize(("model", "options", "said"), [
    # the zoo model's default size: said after its checkpoint was read and the model built
    ("pvt_v2_b0-cls", ["--min-size", "256"],
     "error: --min-size 256 is larger than --imgsz 224x224 (the default; pass --imgsz)"),
    ("pvt_v2_b0-cls", ["--max-size", "200"],
     "error: --max-size 200 (rounded down to 192) is smaller than --imgsz 224x224 (the default; pass --imgsz)"),
    # a checkpoint given its task: that task's default size
    ("CKPT", ["--task", "segment", "--min-size", "600"],
     "error: --min-size 600 (rounded up to 608) is larger than --imgsz 512x512 (the default; pass --imgsz)"),
    # an option of another task: said after the calibration clip was decoded and the official file downloaded
    ("pvt_v2_b0-cls", ["--nms", "graph", "--int8", "--calib", "CKPT"],
     "error: --nms graph is for detection models; pvt_v2_b0-cls is a classify model"),
])
def test_export_refuses_what_its_arguments_contradict_before_reading_anything(
        model: str, options: list[str], said: str, nothing_loads: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``export --model pvt_v2_b0-cls --min-size 256`` loaded the model (seconds; a real checkpoint read, and
    ``--weights official`` downloaded, first) before it said that the range leaves out the default size, which
    the zoo name alone tells; only a size given with ``--imgsz`` was checked first. Refused first, in the same
    words, with exit 2 and nothing written."""
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(b"never read")
    argv = [str(checkpoint) if a == "CKPT" else a for a in ["--model", model, *options]]
    if model != "CKPT":
        argv += ["--weights", str(checkpoint)]
    code, out, err = run(monkeypatch, capsys, "export", *argv, "-o", str(tmp_path / "out"))
    assert (code, out, err.strip()) == (2, "", said)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("model", "options"), [
    ("pvt_v2_b0-cls", ["--min-size", "224"]),  # the default size is in the range
    ("pvt_v2_b0", ["--min-size", "600"]),  # a detector's default is 640
    ("pvt_v2_b0-cls", ["--min-size", "256", "--static"]),  # no range: a warning says it is ignored
    ("CKPT", ["--min-size", "600"]),  # a checkpoint's task (and so its default size) is read from its tensors
    ("pvt_v2_b0-cls", ["--min-size", "256", "--task", "detect"]),  # refused as the name's task, not as a size
])
def test_what_the_arguments_do_not_contradict_goes_on_to_the_model(
        model: str, options: list[str], nothing_loads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(b"never read")
    argv = [str(checkpoint) if a == "CKPT" else a for a in ["--model", model, *options]]
    if "--task" in options:
        code, _, err = run(monkeypatch, capsys, "export", *argv, "-o", str(tmp_path / "out"))
        assert code == 2 and err.strip() == ("error: --task 'detect': 'pvt_v2_b0-cls' is a classify model (drop --task, "
                                             "or give the backbone, pvt_v2_b0, with it)"), err
        return
    with pytest.raises(Loaded):
        run(monkeypatch, capsys, "export", *argv, "-o", str(tmp_path / "out"))


@pytest.mark.parametrize(("options", "said"), [
    (["--min-shape", "1x3x640x640", "--max-shape", "1x3x320x320"],
     "error: TensorRT profile needs min <= opt <= max per dimension; got min [1, 3, 640, 640], max [1, 3, 320, 320]"),
    (["--opt-shape", "4x3x64x64", "--max-shape", "2x3x64x64"],
     "error: TensorRT profile needs min <= opt <= max per dimension; got opt [4, 3, 64, 64], max [2, 3, 64, 64]"),
    (["--min-shape", "1x3x96x96", "--opt-shape", "1x3x64x64", "--max-shape", "1x3x128x128"],
     "error: TensorRT profile needs min <= opt <= max per dimension; got min [1, 3, 96, 96], opt [1, 3, 64, 64], "
     "max [1, 3, 128, 128]"),
])
def test_export_refuses_a_tensorrt_profile_out_of_order_before_the_export(
        options: list[str], said: str, nothing_loads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``export --format trt --min-shape 1x3x640x640 --max-shape 1x3x320x320`` made the whole ONNX export (the
    trace, the variants, the parity gate: minutes for a large model) before the engine's profile said that min
    must not be above max, which the options alone tell. Refused first (here without TensorRT, which is looked
    for after the arguments: exit 3 before, and no word of the profile)."""
    import pvt_deploy.export.tensorrt as trt_export

    monkeypatch.setattr(trt_export, "require_tensorrt", lambda: None)  # as where TensorRT is installed
    code, out, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "64", "--format", "trt",
                         *options, "-o", str(tmp_path / "out"))
    assert (code, out, err.strip()) == (2, "", said)
    assert not (tmp_path / "out").exists()


def test_a_tensorrt_profile_in_order_goes_on_to_the_export(nothing_loads: None, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Shapes in order, equal ones, and shapes past the export's range (fitted to it later, with a warning) are let
    through; so are a profile named by its input and one of min alone."""
    from pvt_deploy.export import export
    from pvt_deploy.export import tensorrt as trt_export

    monkeypatch.setattr(trt_export, "require_tensorrt", lambda: None)
    for shapes in ({"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [8, 3, 2000, 2000]},
                   {"min": [2, 3, 64, 64], "max": [2, 3, 64, 64]}, {"images": {"min": [1, 3, 32, 32]}},
                   {"": {"opt": [1, 3, 64, 64], "max": [1, 3, 96, 96]}}):
        with pytest.raises(Loaded):
            export("pvt_v2_b0-cls", tmp_path / "out", format="trt", tensorrt={"shapes": shapes}, imgsz=64)


def _help_of(command: str, option: str) -> str:
    from typer.main import get_command

    from pvt_deploy.cli import app

    params = get_command(app).commands[command].params  # type: ignore[attr-defined]
    return " ".join(next(p.help for p in params if p.name == option).split())


def test_export_help_gives_every_tasks_default_size() -> None:
    """``export --help`` gave the default --imgsz of detect, segment and classify, and not that of features (the
    bare backbones, a task --task names), which is 640."""
    from pvt_deploy.models.zoo import DEFAULT_IMGSZ

    text = _help_of("export", "imgsz")
    stated = text.split("Default per task: ", 1)[1].rstrip(".")
    assert stated == ", ".join(f"{task} {h}" for task, (h, w) in DEFAULT_IMGSZ.items()), text
    assert all(h == w for h, w in DEFAULT_IMGSZ.values())  # one number says a square size


def test_export_help_says_what_int8_cpu_auto_picks_for_a_bare_backbone(tmp_path: Path) -> None:
    """``--int8-cpu auto`` was 'dynamic for classifiers'; a bare backbone (``-features``) is quantized dynamically
    too (no Conv chains of a head), which the help now says."""
    import json

    from pvt_deploy.export import export_onnx

    assert "dynamic for classifiers and bare backbones" in _help_of("export", "int8_cpu")
    out = export_onnx("pvt_v2_b0-features", tmp_path / "f", imgsz=32, int8=True, int8_flavour="cpu", parity=False,
                      simplify=False)
    assert json.loads((out / "manifest.json").read_text())["precision"]["int8"]["cpu"]["method"] == "dynamic"


def test_models_help_says_the_bare_backbones_are_listed_only_with_their_task(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``models --help``: '--task  Only this task: ... or features (the bare backbones)' read as if the full list
    held them; it lists one model per backbone and task, and the backbones alone only with --task features."""
    import json

    assert _help_of("models", "task").endswith("(the bare backbones, listed only with --task features).")
    code, out, err = run(monkeypatch, capsys, "models", "--json")
    assert code == 0 and {row["task"] for row in json.loads(out)} == {"detect", "segment", "classify"}, err
    code, out, err = run(monkeypatch, capsys, "models", "--task", "features", "--json")
    assert code == 0 and {row["task"] for row in json.loads(out)} == {"features"}, err


@pytest.mark.parametrize(("options", "said"), [
    (["--int8-cpu", "static"], "warning: --int8-cpu static: unused without --int8 (no INT8 file is written)"),
    (["--int8-flavour", "TRT", "--int8-cpu", "dynamic"],
     "warning: --int8-flavour trt, --int8-cpu dynamic: unused without --int8 (no INT8 file is written)"),
    (["--int8", "--int8-flavour", "trt", "--int8-cpu", "static"],
     "warning: --int8-cpu static: unused with --int8-flavour trt (it chooses how model.int8.onnx, the CPU flavour, "
     "is quantized)"),
    (["--int8", "--int8-cpu", "static"], None),
    (["--int8", "--int8-flavour", "cpu", "--int8-cpu", "dynamic"], None),
    (["--int8-flavour", "both", "--int8-cpu", "Auto"], None),  # the defaults: nothing given to say unused
])
def test_export_says_int8_choices_that_choose_nothing(
        options: list[str], said: str | None, nothing_loads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``export --int8-cpu static`` without ``--int8`` (and ``--int8-flavour trt`` without it, ``--int8-cpu`` with the
    TensorRT flavour alone) exported without a word of the choice, where TensorRT's and Triton's options without
    their format are warned of, and an unused ``--calib``: the user believed the file was quantized so."""
    monkeypatch.setenv("COLUMNS", "300")  # one warning, one line
    with pytest.raises(Loaded):
        run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--imgsz", "32", *options,
            "-o", str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "unused" in line] == ([said] if said else []), err


@pytest.mark.parametrize(("model", "weights", "said"), [
    ("pvt_v2_b0-cls", "MISSING", "error: weights MISSING does not exist"),
    ("pvt_v2_b0-cls", "FOLDER", "error: weights FOLDER is a folder, not a checkpoint file"),
    ("CKPT", "official", "error: --weights official: the official weights are a zoo model's; the model CKPT is not a "
                         "zoo name (pass the checkpoint file or its URL)"),
])
def test_export_refuses_weights_that_name_no_file_before_reading_the_pictures(
        model: str, weights: str, said: str, nothing_loads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``export --weights ckpts/typo.pth --int8 --calib clip.mp4`` decoded the clip's frames (and fetched a --calib
    URL) before the load said the checkpoint was not there: the pictures are read before the model is loaded."""
    names = {"MISSING": str(tmp_path / "typo.pth"), "FOLDER": str(tmp_path), "CKPT": str(tmp_path / "w.pth")}
    (tmp_path / "w.pth").write_bytes(b"never read")
    argv = [names.get(a, a) for a in ["--model", model, "--weights", weights, "--int8", "--calib", "CKPT"]]
    code, out, err = run(monkeypatch, capsys, "export", *argv, "-o", str(tmp_path / "out"))
    for key, name in names.items():
        said = said.replace(key, name)
    assert (code, out, err.strip()) == (2, "", said)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("names", "said"), [
    ("MISSING", "no such file"),  # a names file not there (mistyped)
    ("CSV", "classes.csv"),  # a file of another kind
    ("car,,bus", "an empty name for class 1"),
])
def test_a_names_file_that_cannot_be_read_is_said_before_the_checkpoint_is(
        names: str, said: str, nothing_loads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--names`` was read where the model's classes are known, after its checkpoint was read (minutes for a
    large file, a download for a URL): a names file named wrong was said only then. What the names are is read
    first; how many the model takes is checked, as before, once it is loaded."""
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(b"never read")
    csv = tmp_path / "classes.csv"
    csv.write_text("car\nbus\n")
    given = {"MISSING": str(tmp_path / "coco.names"), "CSV": str(csv)}.get(names, names)
    code, out, err = run(monkeypatch, capsys, "export", "--model", str(checkpoint), "--task", "detect",
                         "--names", given, "-o", str(tmp_path / "out"))
    assert code == 2 and out == "" and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    # names that read are let through to the load, where their number is checked against the model's
    with pytest.raises(Loaded):
        from pvt_deploy.export.onnx import export_onnx

        export_onnx(str(checkpoint), tmp_path / "out2", task="detect", names="car,bus")
