"""A checkpoint fine-tuned on other classes: the names its mmdet/mmseg meta records (mmcv's ``meta.CLASSES``,
mmengine's ``meta.dataset_meta.classes``), or those ``--names`` gives, name its classes wherever they are
shown: the export's manifest and graph metadata, a checkpoint run under PyTorch, ``infer``'s JSON."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_run import run

from pvt_deploy import Model
from pvt_deploy.assets import sample_images
from pvt_deploy.errors import CheckpointError, InputError

NAMES = ["car", "truck", "bus"]
PALETTE = [[220, 20, 60], [0, 0, 142], [0, 60, 100]]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One seeded 3-class pvt_v2_b0 RetinaNet (class biases at 0: every anchor scores ~0.5, so boxes exist),
    saved as mmdet 2.x writes it, as mmengine (mmdet 3.x) does, bare, and with meta names of a wrong count."""
    from pvt_deploy.models import create_model

    model = create_model("pvt_v2_b0", num_classes=3, seed=0)
    with torch.no_grad():
        model.bbox_head.retina_cls.bias.zero_()
    sd = model.state_dict()
    root = tmp_path_factory.mktemp("named")
    files = {
        "mmdet2": {"state_dict": sd, "meta": {"CLASSES": tuple(NAMES), "PALETTE": PALETTE, "mmdet_version": "2.28.2",
                                              "config": "model = dict(type='RetinaNet')", "epoch": 12}},
        "mmengine": {"meta": {"dataset_meta": {"classes": tuple(NAMES), "palette": PALETTE},
                              "mmengine_version": "0.10.4", "epoch": 12, "iter": 3000},
                     "state_dict": sd, "message_hub": {"log_scalars": {}, "runtime_info": {"epoch": 12}},
                     "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}},
        "bare": sd,
        "four": {"state_dict": sd, "meta": {"CLASSES": (*NAMES, "bike")}},
    }
    out = {}
    for name, obj in files.items():
        torch.save(obj, root / f"{name}.pth")
        out[name] = root / f"{name}.pth"
    return out


def _labels(folder: Path) -> set[str]:
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    return {d["class"] for r in records for d in r["detections"]}


@pytest.fixture(scope="module")
def named_export(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pvt_deploy.export import export_onnx

    return export_onnx(ckpts["mmdet2"], tmp_path_factory.mktemp("named_export") / "det", imgsz=64, parity=False,
                       simplify=False)


def test_mmdet2_meta_names_the_export_and_its_graph(named_export: Path) -> None:
    from pvt_deploy.runtimes.loader import read_onnx_manifest

    assert json.loads((named_export / "manifest.json").read_text())["classes"] == NAMES
    assert read_onnx_manifest(named_export / "model.onnx")["classes"] == NAMES


def test_a_one_class_checkpoint_whose_mmcv_meta_names_it_bare_is_named(tmp_path: Path) -> None:
    """mmcv wrote a one-class dataset's CLASSES as a bare string ('person', not ('person',)) at times: the
    checkpoint's one class is that name (trimmed, as mmseg's names are), not the letters of it."""
    from pvt_deploy.models.checkpoints import read_checkpoint

    path = tmp_path / "one.pth"
    torch.save({"state_dict": {"bbox_head.retina_cls.bias": torch.zeros(9)},
                "meta": {"CLASSES": "person ", "mmdet_version": "2.28.2"}}, path)
    assert read_checkpoint(path).classes == ("person",)


@pytest.mark.parametrize("layout", ["mmdet2", "mmengine"])
def test_meta_names_name_a_checkpoint_run_directly(ckpts: dict[str, Path], layout: str) -> None:
    """Both as the model (its architecture read from it) and as --weights of the zoo name."""
    with Model(ckpts[layout]) as m:
        assert m.names == NAMES
    with Model("pvt_v2_b0", weights=ckpts[layout]) as m:
        assert m.names == NAMES


def test_infer_json_labels_are_the_checkpoint_names(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], ckpts: dict[str, Path],
                                                    tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", str(ckpts["mmdet2"]),
                       "--imgsz", "64", "--no-save", "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    labels = _labels(tmp_path / "out")
    assert labels and labels <= set(NAMES), labels


def test_a_trusted_mmengine_file_with_objects_still_gives_its_names(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """mmengine's message_hub holds its own objects (HistoryBuffer), which weights_only refuses: such a file
    needs trust, and then names its classes as well (an importable non-tensor object stands in for them)."""
    obj: dict[str, Any] = torch.load(ckpts["mmengine"], weights_only=True)
    obj["message_hub"] = argparse.Namespace(log_scalars={}, runtime_info={"epoch": 12})
    path = tmp_path / "mmengine_objects.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        Model(path)
    with Model(path, trust=True) as m:
        assert m.names == NAMES


def test_meta_names_of_another_count_are_warned_about_and_numbered(ckpts: dict[str, Path],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), Model(ckpts["four"]) as m:
        assert m.names == ["0", "1", "2"]
    assert "its meta names 4 classes, but its head has 3: they are numbered instead" in caplog.text


@pytest.mark.parametrize("form", ["commas", "brackets", "json", "txt", "names", "yaml-ids", "yaml-list", "list",
                                  "array"])
def test_names_name_a_bare_checkpoint(ckpts: dict[str, Path], tmp_path: Path, form: str) -> None:
    given: Any = {"commas": "car, truck,bus", "brackets": " [car, truck , bus]", "json": json.dumps(NAMES),
                  "list": NAMES, "array": np.array(NAMES)}.get(form)
    if form in ("txt", "names"):  # names: Darknet's coco.names, one a line as a .txt
        given = tmp_path / f"classes.{form}"
        given.write_text("car\ntruck\n\nbus\n")
    elif form.startswith("yaml"):
        given = tmp_path / "data.yaml"
        body = "{0: car, 1: truck, 2: bus}" if form == "yaml-ids" else "[car, truck, bus]"
        given.write_text(f"path: .\nval: images\nnames: {body}\n")
        given = str(given)
    with Model(ckpts["bare"], names=given) as m:
        assert m.names == NAMES


def test_names_on_infer_label_the_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       ckpts: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", "pvt_v2_b0",
                       "--weights", str(ckpts["bare"]), "--names", "cat,dog,fox", "--imgsz", "64", "--no-save",
                       "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    labels = _labels(tmp_path / "out")
    assert labels and labels <= {"cat", "dog", "fox"}, labels


def _one_line_error(err: str, needle: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and needle in lines[-1], err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["infer", "export"])
def test_a_wrong_number_of_names_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], ckpts: dict[str, Path],
                                                     tmp_path: Path, command: str) -> None:
    args = [str(sample_images()[0]), "--save-json"] if command == "infer" else ["--no-parity"]
    code, _, err = run(monkeypatch, capsys, command, *args, "--model", str(ckpts["bare"]), "--names", "car,truck",
                       "-o", str(tmp_path / "out"))
    assert code == 2
    _one_line_error(err, "--names gives 2 names, but ")
    assert "has 3 classes" in err
    assert not (tmp_path / "out").exists()


def test_export_writes_the_names_given(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    """A bare 3-class classifier checkpoint (a classifier exports in a second) named by a dataset YAML; the
    command the export's hints give to export it again (reexport_command) gives them too: it left --names
    out, and run as told, it numbered the classes 0, 1, 2."""
    from pvt_deploy.export import export_onnx
    from pvt_deploy.manifest import reexport_command
    from pvt_deploy.models import create_model

    ckpt = tmp_path / "cls.pth"
    torch.save(create_model("pvt_v2_b0-cls", num_classes=3, seed=0).state_dict(), ckpt)
    data = tmp_path / "data.yaml"
    data.write_text("names:\n  0: x y\n  1: \"'z', \\\"z\\\"\"\n  2: ü\n")
    names = ["x y", "'z', \"z\"", "ü"]  # a comma: the hint gives them as a list in brackets
    out = export_onnx(ckpt, tmp_path / "cls", imgsz=64, parity=False, simplify=False, names=data)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == names
    lone = tmp_path / "lone.onnx"  # the graph's metadata, read without the manifest
    lone.write_bytes((out / "model.onnx").read_bytes())
    with Model(lone) as m:
        assert m.names == names
    code, text, err = run(monkeypatch, capsys, "info", str(out))  # the names as --names takes them
    assert code == 0, err
    assert '3 classes: "x y", "\'z\', \\"z\\"", "ü"' in " ".join(text.split()), text
    (out / "manifest.json").unlink()  # made again from nothing
    code, _, err = run(monkeypatch, capsys, *shlex.split(reexport_command(out, manifest))[1:], "--no-parity")
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["classes"] == names


def test_names_rename_an_export_for_a_run_and_an_extension_keeps_its_own(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], named_export: Path,
        tmp_path: Path) -> None:
    with Model(named_export, names="van,lorry,coach") as m:
        assert m.names == ["van", "lorry", "coach"]
    with pytest.raises(InputError, match="names gives 4 names"):
        Model(named_export, names="a,b,c,d")
    before = (named_export / "manifest.json").read_bytes()
    code, _, err = run(monkeypatch, capsys, "export", "--model", str(named_export), "--half", "--names", "a,b,c")
    assert code == 2
    _one_line_error(err, "is an export folder whose model.onnx is reused")
    assert (named_export / "manifest.json").read_bytes() == before and not (named_export / "model.fp16.onnx").exists()


def test_names_of_a_wrong_type_or_left_blank_are_one_line_errors(tmp_path: Path) -> None:
    """A blank name in a dataset YAML (YAML's null) was the class "None"; a wrong type's error printed the
    whole object (a 1000-name array: pages)."""
    from pvt_deploy.data import given_names

    data = tmp_path / "data.yaml"
    data.write_text("names:\n  0: car\n  1:\n  2: bus\n")
    with pytest.raises(InputError, match="an empty name"):
        given_names(str(data), 3, "m")
    for text in ("[car, [truck]]", "[car, {a: 1}]", "[car, 'truck]"):  # not a list of names: one line, no repr
        with pytest.raises(InputError, match="not a list of names") as e:
            given_names(text, 2, "m")
        assert "\n" not in str(e.value) and '["car, red", "bus"]' in str(e.value)
    for wrong in (3, list(range(1000)), np.arange(1000), {0: "car"}):
        with pytest.raises(InputError, match="must be names separated by commas") as e:
            given_names(wrong, 3, "m")  # type: ignore[arg-type]
        assert "\n" not in str(e.value) and len(str(e.value)) < 200, str(e.value)


def test_names_in_brackets_are_the_text_as_typed() -> None:
    """YAML's safe loader made --names '[cat, dog, on]' the classes cat, dog and True, and [007, 1.50] 7 and 1.5."""
    from pvt_deploy.data import given_names

    assert given_names("[cat, dog, on]", 3, "m") == ["cat", "dog", "on"]
    assert given_names('[007, 1.50, null, "\\u00fc, x"]', 4, "m") == ["007", "1.50", "null", "ü, x"]


@pytest.mark.parametrize("classes", [["cat", "dog.txt"], ["a", "b.YAML"], ["car, red", "bus"], ["[a", "b]"]])
def test_the_reexport_hints_names_read_back_as_the_classes(classes: list[str]) -> None:
    """--names cat,dog.txt, as the hint gave it, was read as a names file ("no such file")."""
    from pvt_deploy.data import given_names
    from pvt_deploy.manifest import reexport_command

    args = shlex.split(reexport_command("exports/x", {"model": "pvt_v2_b0-cls", "classes": classes}))
    assert given_names(args[args.index("--names") + 1], len(classes), "m") == classes


def test_a_class_name_several_classes_share_selects_them_all() -> None:
    """--names car,car,bus: --classes car kept class 1 only, dropping class 0's cars without a word."""
    from pvt_deploy.api import class_ids
    from pvt_deploy.cli.infer import parse_classes

    assert parse_classes("car", ["car", "Car", "bus"]) == [0, 1]
    assert class_ids(["bus", "CAR"], ["car", "car", "bus"]) == [2, 0, 1]
    assert class_ids(1, ["1", "0", "2"]) == [1]  # a number is an id, as ever (the class named "0")


def test_mmseg_names_are_read_without_their_spaces(tmp_path: Path) -> None:
    """mmseg's ADE20K names say 'bed ' (a space after it): its 150 names are the zoo's, and a 3-class
    mmengine segmenter is named by its own."""
    from pvt_deploy.data import class_names
    from pvt_deploy.models import create_model

    ade = list(class_names("ade20k"))
    path = tmp_path / "ade.pth"
    torch.save({"state_dict": create_model("pvt_v2_b0-seg", seed=0).state_dict(),
                "meta": {"CLASSES": tuple(n + " " * (n == "bed") for n in ade), "PALETTE": [[0, 0, 0]] * 150}}, path)
    with Model(path) as m:
        assert m.names == ade
    torch.save({"state_dict": create_model("pvt_v2_b0-seg", num_classes=3, seed=0).state_dict(),
                "meta": {"dataset_meta": {"classes": [" sky", "road", "tree "]}}}, path)
    with Model(path) as m:
        assert m.names == ["sky", "road", "tree"]


def test_info_lists_the_names_without_an_ellipsis_when_all_are_shown(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], named_export: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "info", str(named_export))
    assert code == 0, err
    line = next(s for s in " ".join(out.split()).split(" weights:") if "classes" in s)
    assert line.endswith("3 classes: car, truck, bus"), out


def test_val_matches_categories_by_the_names_given_and_states_no_published_figure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        named_export: Path, tmp_path: Path) -> None:
    """A COCO JSON of the renamed classes, in another order: matched by name (no id-order warning); the zoo
    model's COCO AP is no figure for a 3-class model to stand beside (it was printed)."""
    picture = sample_images()[0]
    names = ["coach", "van", "lorry"]
    coco = {"images": [{"id": 1, "file_name": picture.name, "width": 512, "height": 512}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 240, 512, 272], "area": 139264,
                             "iscrowd": 0}],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING):
        code, out, err = run(monkeypatch, capsys, "val", str(tmp_path / "coco.json"), "--images",
                             str(picture.parent), "--model", str(named_export), "--names", "van,lorry,coach", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 1 and report["published"] is None
    assert "matched in id order" not in caplog.text
    with caplog.at_level(logging.WARNING):  # car, truck, bus: in id order
        code, out, err = run(monkeypatch, capsys, "val", str(tmp_path / "coco.json"), "--images",
                             str(picture.parent), "--model", str(named_export), "--json")
    assert code == 0 and "matched in id order (coach -> car" in caplog.text, err



# -- a segmenter's own colours (mmseg meta.PALETTE, mmengine meta.dataset_meta.palette) --------------------------

SEG_NAMES = ["sky", "road", "tree"]


@pytest.fixture(scope="module")
def seg_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One seeded 3-class pvt_v2_b0 Semantic FPN, saved as mmseg 0.x writes it (CLASSES, PALETTE), as mmengine
    does (its palette a list of tuples), and with palettes that do not fit its head."""
    from pvt_deploy.models import create_model

    sd = create_model("pvt_v2_b0-seg", num_classes=3, seed=0).state_dict()
    root = tmp_path_factory.mktemp("palette")
    palettes: dict[str, Any] = {"mmseg": PALETTE, "two": PALETTE[:2], "over": [[0, 0, 300], *PALETTE[1:]],
                                "text": ["red", "green", "blue"]}
    files: dict[str, Any] = {name: {"state_dict": sd, "meta": {"CLASSES": tuple(SEG_NAMES), "PALETTE": p}}
                             for name, p in palettes.items()}
    files["mmengine"] = {"state_dict": sd, "meta": {"dataset_meta": {"classes": tuple(SEG_NAMES),
                                                                     "palette": [tuple(c) for c in PALETTE]}}}
    out = {}
    for name, obj in files.items():
        torch.save(obj, root / f"{name}.pth")
        out[name] = root / f"{name}.pth"
    return out


@pytest.fixture(scope="module")
def seg_export(seg_ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pvt_deploy.export import export_onnx

    return export_onnx(seg_ckpts["mmseg"], tmp_path_factory.mktemp("palette_export") / "seg", imgsz=64,
                       parity=False, simplify=False)


def _blend(image: np.ndarray, mask: np.ndarray, colours: Any) -> np.ndarray:
    """The overlay of plot()'s default alpha 0.5: half the picture, half the class's colour."""
    return (image.astype(np.float64) + np.asarray(colours, dtype=np.float64)[mask]) / 2


def test_a_segmenters_palette_is_in_the_export_its_lone_graph_and_a_pytorch_run(
        seg_ckpts: dict[str, Path], seg_export: Path, ckpts: dict[str, Path], named_export: Path,
        tmp_path: Path) -> None:
    """In the manifest, the graph's metadata (a lone copy of model.onnx, whose overlay is drawn in it) and the
    manifest of a checkpoint run under PyTorch (mmcv and mmengine files); --names renames, colours stay. An
    mmdet file's PALETTE is left out (its boxes keep pvt-deploy's colours)."""
    from pvt_deploy.tasks.visualize import palette

    assert json.loads((seg_export / "manifest.json").read_text())["palette"] == PALETTE
    lone = tmp_path / "lone.onnx"
    lone.write_bytes((seg_export / "model.onnx").read_bytes())
    picture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with Model(lone) as m:
        assert m.manifest["palette"] == PALETTE and m.names == SEG_NAMES
        r = m.predict(picture, imgsz=64)[0]
    assert r.mask is not None
    drawn = r.plot(legend=0).astype(np.float64)
    assert np.abs(drawn - _blend(picture, r.mask, PALETTE)).max() <= 1
    assert np.abs(drawn - _blend(picture, r.mask, palette(3))).max() > 50  # pvt-deploy's colours are others
    for layout in ("mmseg", "mmengine"):
        with Model(seg_ckpts[layout]) as m:
            assert m.manifest["palette"] == PALETTE, layout
    with Model(seg_export, names="a,b,c") as m:
        assert m.names == ["a", "b", "c"] and m.manifest["palette"] == PALETTE
    assert "palette" not in json.loads((named_export / "manifest.json").read_text())
    with Model(ckpts["mmengine"]) as m:
        assert "palette" not in m.manifest


def test_infer_draws_the_overlay_in_the_checkpoints_colours(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str],
                                                           seg_ckpts: dict[str, Path], tmp_path: Path) -> None:
    """The annotated picture (a PNG: no JPEG loss) is the picture blended with PALETTE[class] at each pixel's class
    in the --save-mask map (below the legend panel, in the top-left corner), not with pvt-deploy's colours."""
    import cv2

    from pvt_deploy.tasks.visualize import palette

    picture = cv2.imread(str(sample_images()[0]))
    cv2.imwrite(str(tmp_path / "photo.png"), picture)
    code, _, err = run(monkeypatch, capsys, "infer", str(tmp_path / "photo.png"), "--model", str(seg_ckpts["mmseg"]),
                       "--imgsz", "64", "--save-mask", "-o", str(tmp_path / "out"))
    assert code == 0, err
    mask = cv2.imread(str(tmp_path / "out" / "photo_mask.png"), cv2.IMREAD_UNCHANGED)
    drawn = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "photo.png")), cv2.COLOR_BGR2RGB).astype(np.float64)
    rgb = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    below = slice(mask.shape[0] // 2, None)
    assert len(np.unique(mask[below])) > 1  # more than one class's colour is checked
    assert np.abs(drawn[below] - _blend(rgb, mask, PALETTE)[below]).max() <= 1
    assert np.abs(drawn[below] - _blend(rgb, mask, palette(3))[below]).max() > 50


@pytest.mark.parametrize("kind", ["two", "over", "text"])
def test_a_palette_that_does_not_fit_is_warned_about_and_left_out(seg_ckpts: dict[str, Path], kind: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), Model(seg_ckpts[kind]) as m:
        assert "palette" not in m.manifest and m.names == SEG_NAMES
    why = ("its meta palette has 2 colours, but its head has 3 classes" if kind == "two"
           else "its meta palette is not a list of [r, g, b] colours of 0..255")
    assert f"{why}: pvt-deploy's colours are used" in caplog.text


@pytest.mark.parametrize("damage", [[[220, 20, 60], [0, 0, 142]], [[220, 20], [0, 0, 142], [0, 60, 100]],
                                    [[220, 20, 60], [0, 0, 256], [0, 60, 100]], "red"])
def test_a_damaged_manifest_palette_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], seg_export: Path,
                                                        tmp_path: Path, damage: Any) -> None:
    folder = tmp_path / "seg"
    folder.mkdir()
    manifest = json.loads((seg_export / "manifest.json").read_text())
    (folder / "model.onnx").write_bytes((seg_export / "model.onnx").read_bytes())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "palette": damage}))
    code, _, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", str(folder), "--imgsz", "64",
                       "-o", str(tmp_path / "out"))
    assert code == 2
    _one_line_error(err, "damaged manifest: palette ")
    assert not (tmp_path / "out").exists()


def test_info_and_triton_carry_the_palette(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           seg_export: Path, tmp_path: Path) -> None:
    """info says where the colours come from; a Triton model's config embeds them for its remote clients."""
    from pvt_deploy.export.triton import MANIFEST_PARAMETER, export_triton

    code, out, err = run(monkeypatch, capsys, "info", str(seg_export))
    assert code == 0, err
    assert "palette: from the checkpoint (3 colours)" in " ".join(out.split())
    model_dir = export_triton(seg_export, tmp_path / "repo")
    pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    config = text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), pb2.ModelConfig())
    assert json.loads(config.parameters[MANIFEST_PARAMETER].string_value)["palette"] == PALETTE
    assert json.loads((model_dir / "manifest.json").read_text())["palette"] == PALETTE
