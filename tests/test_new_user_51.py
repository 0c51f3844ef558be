"""Small CLI faults a new user met following the README (helper DN, session 51)."""

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


def test_info_says_where_the_pictures_are_normalised_in_words(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    """info's preprocess line ended 'normalised in graph: True', a Python value where every other line is words
    ('dynamic: no (static shapes)'), and 'normalised in graph: None' for a manifest that does not say."""
    code, out, err = run(monkeypatch, capsys, "info", str(cls_export))
    line = " ".join(out.split()).split("preprocess: ", 1)[1].split(" dynamic: ", 1)[0]
    assert code == 0, err
    assert line == "resize_crop to 128x128 (bicubic), RGB 0..255, normalised in the graph", line
    folder = tmp_path / "cls"
    shutil.copytree(cls_export, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["preprocess"]["normalize_in_graph"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run(monkeypatch, capsys, "info", str(folder))
    line = " ".join(out.split()).split("preprocess: ", 1)[1].split(" dynamic: ", 1)[0]
    assert code == 0, err
    assert line == "resize_crop to 128x128 (bicubic), RGB 0..255", line


def test_check_answers_an_unknown_backend_with_the_backends_check_takes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path) -> None:
    """``check --backends torch,bogus`` answered 'choose from torch, torch-fp16, onnx, onnx-fp16, onnx-int8, trt,
    triton', bench's list, two of which check then refuses ('check compares an export folder's backends'). It
    names check's five; bench still names its seven."""
    check_takes = "choose from torch, onnx, onnx-fp16, onnx-int8, trt"
    for backends, what in (("torch,bogus", "unknown backend 'bogus'; "), (",", "--backends names no backend; ")):
        code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--backends", backends)
        assert (code, out) == (2, "") and err.strip() == f"error: {what}{check_takes}", err
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(cls_export), "--backends", "onnx,torch-fp16")
    assert code == 2 and "--backends torch-fp16: check compares an export folder's backends" in err, err
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(cls_export), "--backends", "torch,bogus")
    assert (code, out) == (2, ""), err
    assert err.strip() == ("error: unknown backend 'bogus'; choose from torch, torch-fp16, onnx, onnx-fp16, onnx-int8, "
                           "trt, triton"), err


def test_check_of_a_model_with_no_export_says_the_export_command_of_that_model(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``check --model pvt_v2_b0-cls`` with no export of it said '(pvt-deploy export --model NAME writes one under
    exports/)', a line to edit before it runs. It names the model asked for (a zoo name, a checkpoint file), so
    that the line pasted makes the export check then finds; a lone graph, which export does not take, still NAME."""
    import shlex

    monkeypatch.chdir(tmp_path)
    code, out, err = run(monkeypatch, capsys, "check", "--model", "pvt_v2_b0-cls")
    assert (code, out) == (2, "") and err.strip().endswith(
        "got pvt_v2_b0-cls (pvt-deploy export --model pvt_v2_b0-cls writes one under exports/)"), err
    command = shlex.split(err.strip().rsplit(" (", 1)[1].split(" writes one")[0])
    assert command[0] == "pvt-deploy"
    code, _, err = run(monkeypatch, capsys, *command[1:], "--imgsz", "64", "--no-parity", "--no-simplify")
    assert code == 0 and (tmp_path / "exports" / "pvt_v2_b0-cls" / "manifest.json").is_file(), err
    code, out, err = run(monkeypatch, capsys, "check", "--model", "pvt_v2_b0-cls", "--backends", "torch,onnx",
                         "--max-images", "1", "--json")
    assert code == 0 and json.loads(out)["artifact"] == str(Path("exports", "pvt_v2_b0-cls")), err
    (tmp_path / "my ckpt.pth").write_bytes(b"not read: check refuses a file before it loads one")
    (tmp_path / "lone.onnx").write_bytes(b"not read either")
    for given, named in (("my ckpt.pth", "'my ckpt.pth'"), ("lone.onnx", "NAME")):
        code, out, err = run(monkeypatch, capsys, "check", "--model", given)
        assert (code, out) == (2, "") and err.strip().endswith(
            f"got {given} (pvt-deploy export --model {named} writes one under exports/)"), err


@pytest.mark.parametrize(("options", "said"), [
    (["--min-size", "256", "--imgsz", "224"], "error: --min-size 256 is larger than --imgsz 224x224"),
    (["--imgsz", "300", "--max-size", "300"], "error: --max-size 300 (rounded down to 288) is smaller than --imgsz 320x320"),
])
def test_export_refuses_a_size_range_without_its_imgsz_before_the_model_loads(
        options: list[str], said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """``export --min-size 256 --imgsz 224`` built the model (seconds; a checkpoint read, the random weights'
    warning said) before it said the range leaves the size out, which the options alone tell. Refused first,
    in the same words; the checkpoint is not read."""
    from pvt_deploy.export import onnx as export_onnx_module

    def not_reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the size range was checked")

    monkeypatch.setattr(export_onnx_module, "_load", not_reached)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"never read")
    code, out, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--weights", str(weights),
                         *options, "-o", str(tmp_path / "out"))
    assert (code, out, err.strip()) == (2, "", said)
    assert not (tmp_path / "out").exists()


def test_a_dataset_warning_of_one_thing_says_it_in_the_singular(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    """val said '1 of the 4 pictures it lists are not in ...', '1 annotations name no image it lists' and '1 of
    its 3 annotations are left out': one is, and names; several as before."""
    import logging

    from pvt_deploy.evaluate import open_dataset

    def coco(folder: Path, missing: int, orphans: int) -> Path:
        (folder / "images").mkdir(parents=True)
        images = [{"id": k, "file_name": f"{k}.jpg", "width": 64, "height": 48} for k in range(1, 5)]
        for im in images[missing:]:
            (folder / "images" / im["file_name"]).write_bytes(b"not decoded: the dataset is only listed")
        box = {"category_id": 1, "bbox": [1, 2, 30, 20], "area": 600, "iscrowd": 0}
        annotations = [{**box, "id": 1, "image_id": 4}, {**box, "id": 2, "image_id": 4, "bbox": [1, 2, 0, 20]},
                       *({**box, "id": 10 + k, "image_id": 99} for k in range(orphans))]
        path = folder / "instances.json"
        path.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "cat"}]}))
        return path

    one, two = coco(tmp_path / "one", 1, 1), coco(tmp_path / "two", 2, 2)
    with caplog.at_level(logging.WARNING, logger="pvt_deploy"):
        assert len(open_dataset(one, "detect", ["cat"]).images) == 3
        assert len(open_dataset(two, "detect", ["cat"]).images) == 2
    said = " ".join(caplog.text.split())
    for text in (f"dataset {one}: 1 of the 4 pictures it lists is not in {one.parent / 'images'} (1.jpg): left out",
                 f"dataset {one}: 1 annotation names no image it lists: left out",
                 f"dataset {one}: 1 of its 2 annotations is left out: 1 of no width or height",
                 f"dataset {two}: 2 of the 4 pictures it lists are not in {two.parent / 'images'} (1.jpg, 2.jpg): left out",
                 f"dataset {two}: 2 annotations name no image it lists: left out"):
        assert text in said, (text, said)


def test_export_of_a_lone_graph_names_only_the_commands_that_run_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_export: Path, tmp_path: Path) -> None:
    """export --model lone.onnx (a graph pvt-deploy made, copied out of its folder) said 'infer, check and bench
    run it as it is', and check then refused it ('check needs an export folder')."""
    lone = tmp_path / "lone.onnx"
    shutil.copyfile(cls_export / "model.onnx", lone)
    code, out, err = run(monkeypatch, capsys, "export", "--model", str(lone))
    said = " ".join(err.split())
    assert (code, out) == (2, "") and said.endswith(
        "; infer and bench run it as it is (check compares the backends of an export folder)"), err
    code, out, err = run(monkeypatch, capsys, "check", "--model", str(lone))
    assert (code, out) == (2, "") and "check needs an export folder" in err, err
    code, out, err = run(monkeypatch, capsys, "bench", "--model", str(lone), "--warmup", "0", "--iters", "1", "--json")
    assert code == 0 and [r["status"] for r in json.loads(out)["results"]] == ["ok"], err
