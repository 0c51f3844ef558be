"""Paths no other test ran (found with ``make coverage`` in session 43), driven as a user reaches them:
``val`` on datasets that are damaged or laid out wrong, and its text report; ``--names`` files that cannot
be used; weights URLs that cannot be fetched, and a download's progress bar; manifests from a newer
pvt-deploy or with a damaged field; dataset YAMLs for ``--calib``; a backbone's results; ``info --graph``
of a missing file; the operator table of ``bench --profile``; masks of more than 256 classes. Each asserts
what the user sees: the one-line error and exit code 2, the warning, the figures, the files."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_run import run
from PIL import Image

from pvt_deploy.assets import sample_images

pytest_plugins = ["export_fixtures"]


def one_line_error(err: str) -> str:
    """The last line of stderr, which must be the one ``error: `` line, without a traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err and sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


def flat(text: str) -> str:
    """Text with the console's line wrapping undone."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------------
# val: the text report of one precision (only --json and the side-by-side table had a test)
# ---------------------------------------------------------------------------------------------------


def _table(out: str) -> dict[str, str]:
    """The rows of the metric table: label -> value as printed."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0] and cells[0] != "metric":
            rows[cells[0]] = cells[1]
    return rows


def test_val_prints_a_classifiers_metrics_as_a_table_in_percent(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    from pvt_deploy.api import Model

    with Model(str(cls_artifact.folder)) as model:  # each picture under its own top class, one under its 3rd
        results = model.predict(sample_images(), topk=5)
    for k, r in enumerate(results):
        folder = tmp_path / r.probs.labels[2 if k == 0 else 0]
        folder.mkdir(exist_ok=True)
        shutil.copyfile(r.path, folder / Path(r.path).name)
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path), "--model", str(cls_artifact.folder))
    assert code == 0, err
    assert _table(out) == {"top-1 accuracy": "66.67", "top-5 accuracy": "100.00"}, out
    text = flat(out)
    assert "pvt_tiny-cls (classify) · onnxruntime CPUExecutionProvider fp32" in text
    assert f"3 pictures of {tmp_path} ({len(list(tmp_path.iterdir()))} classes) at " in text
    # the zoo's published figure beside the one measured here, at another size
    assert "published for pvt_tiny-cls (official weights): ImageNet top-1" in text and "measured here at 64x64" in text


def test_val_prints_a_segmenters_metrics_and_its_lowest_classes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seg_artifact: Any, tmp_path: Path) -> None:
    from pvt_deploy.api import Model

    (tmp_path / "pics").mkdir()
    (tmp_path / "labels").mkdir()
    with Model(str(seg_artifact.folder)) as model:
        results = model.predict(sample_images(), batch=1)
    for r in results:  # ADE20K's PNGs: class k is k + 1 (0 is "other", left out)
        shutil.copyfile(r.path, tmp_path / "pics" / Path(r.path).name)
        Image.fromarray((r.mask + 1).astype(np.uint8)).save(tmp_path / "labels" / f"{Path(r.path).stem}.png")
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path / "pics"), "--masks", str(tmp_path / "labels"),
                         "--model", str(seg_artifact.folder))
    assert code == 0, err
    assert _table(out) == {"mean IoU": "100.00", "mean class accuracy": "100.00", "pixel accuracy": "100.00"}, out
    # the five lowest IoUs: every class the masks hold scores 100 (the classes absent are left out)
    lowest = next(line for line in out.splitlines() if line.startswith("lowest IoU: "))
    shown = lowest.removeprefix("lowest IoU: ").split(", ")
    present = {seg_artifact.manifest["classes"][c] for r in results for c in np.unique(r.mask)}
    assert len(shown) == min(5, len(present)) and all(s.endswith(" 100.0") for s in shown), lowest
    assert {s.rsplit(" ", 1)[0] for s in shown} <= present


# ---------------------------------------------------------------------------------------------------
# val: datasets that cannot be measured, each one line and exit 2 once the model has loaded
# ---------------------------------------------------------------------------------------------------


def _coco(root: Path, **changes: Any) -> Path:
    """``root/val2017`` (the sample photos) and ``root/annotations/instances_val2017.json`` with one box,
    its lists replaced by ``changes``."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    for picture in sample_images():
        shutil.copyfile(picture, root / "val2017" / picture.name)
    data = {"images": [{"id": 1, "file_name": "coffee.jpg", "width": 600, "height": 400}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}], **changes}
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("truncated", "not a readable JSON file (Expecting value"),
    ("code-page", "instances_val2017.json: cannot read it (neither UTF-8 nor UTF-16 text: invalid continuation byte "
                  "at byte"),
    ("no-lists", "not a COCO instances file (it needs 'images', 'annotations' and 'categories' lists)"),
    ("no-images", "lists no images"),
    ("no-categories", "lists no categories"),
    ("odd-image-id", "image id [1] of coffee.jpg is neither a number nor a string"),
    ("images-folder-missing", "no such folder"),
])
def test_a_coco_file_that_cannot_be_measured_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_artifact: Any, tmp_path: Path,
        case: str, message: str) -> None:
    path = _coco(tmp_path, **{
        "no-images": {"images": [{"file_name": "coffee.jpg"}]},  # no id: not a picture entry
        "no-categories": {"categories": [{"name": "person"}]},
        "odd-image-id": {"images": [{"id": [1], "file_name": "coffee.jpg"}]},
    }.get(case, {}))
    if case == "truncated":
        path.write_text('{"images": [')
    elif case == "code-page":  # a Windows code page's é: no JSON text (UTF-16, with its mark, is: test_val_49)
        path.write_text(path.read_text().replace("person", "personné"), encoding="cp1252")
    elif case == "no-lists":
        path.write_text('{"images": []}')
    args = ["--images", str(tmp_path / "nope")] if case == "images-folder-missing" else []
    code, out, err = run(monkeypatch, capsys, "val", str(path), "--model", str(det_artifact.folder), *args)
    assert code == 2 and out == "" and message in one_line_error(err), err


def test_coco_annotations_of_pictures_it_does_not_list_are_left_out_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_artifact: Any, tmp_path: Path) -> None:
    path = _coco(tmp_path, annotations=[
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0},
        {"image_id": 7, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0},
        {"image_id": {"id": 1}, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}])
    with caplog.at_level(logging.WARNING):
        code, out, err = run(monkeypatch, capsys, "val", str(path), "--model", str(det_artifact.folder), "--json")
    assert code == 0, err
    assert f"dataset {path}: 2 annotations name no image it lists: left out" in caplog.text
    assert json.loads(out)["images"] == 1


def _yolo(root: Path, labels: dict[str, bytes]) -> Path:
    """An Ultralytics dataset: images/val (the sample photos), labels/val/<stem>.txt, data.yaml (2 names)."""
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for picture in sample_images():
        shutil.copyfile(picture, root / "images" / "val" / picture.name)
    for stem, data in labels.items():
        (root / "labels" / "val" / f"{stem}.txt").write_bytes(data)
    (root / "data.yaml").write_text("path: .\nval: images/val\nnames: [person, bicycle]\n")
    return root / "data.yaml"


def test_a_yolo_dataset_without_labels_or_with_an_unreadable_one_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], det_artifact: Any, tmp_path: Path) -> None:
    data = _yolo(tmp_path / "bare", {})
    code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(det_artifact.folder))
    assert code == 2 and out == ""
    assert "none of its pictures has a label file (looked for " in one_line_error(err)
    data = _yolo(tmp_path / "cp1252", {"coffee": "0 0.5 0.5 0.2 0.2 # café\n".encode("cp1252")})  # UTF-16 is read
    code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(det_artifact.folder))
    line = one_line_error(err)
    assert code == 2 and out == "" and "coffee.txt: cannot read it (neither UTF-8 nor UTF-16 text: " in line


def test_yolo_label_lines_that_name_no_class_id_are_left_out_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_artifact: Any, tmp_path: Path) -> None:
    label = b"0 0.5 0.5 0.2 0.2\n\n   \nperson 0.5 0.5 0.1 0.1\n1.5 0.5 0.5 0.1 0.1\n-1 0.5 0.5 0.1 0.1\n"
    data = _yolo(tmp_path, {"coffee": label})
    with caplog.at_level(logging.WARNING):
        code, out, err = run(monkeypatch, capsys, "val", str(data), "--model", str(det_artifact.folder), "--json")
    assert code == 0, err
    text = flat(caplog.text)
    coffee = tmp_path / "labels" / "val" / "coffee.txt"
    # blank lines are no boxes, not malformed ones: 3 of 4 lines
    assert (f"3 of the 4 lines of its label files are left out: 1 neither 'class cx cy w h' nor a polygon ({coffee} "
            f"line 4: 'person 0.5 0.5 0.1 0.1'); 2 of a class that is not a class id ({coffee} line 5: "
            "'1.5 0.5 0.5 0.1 0.1', ...)") in text
    # the one good box is the truth: recall is measured (a number), not NaN for a dataset with no box
    assert json.loads(out)["metrics"]["AR100"] is not None


@pytest.mark.parametrize(("layout", "message"), [
    ("empty", "no class folders in it (val/<class>/*.jpg)"),
    ("no-pictures", "no pictures in its class folders"),
])
def test_class_folders_without_pictures_are_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path,
        layout: str, message: str) -> None:
    if layout == "no-pictures":
        (tmp_path / "tench").mkdir()
        (tmp_path / "tench" / "notes.txt").write_text("to do")
        (tmp_path / "goldfish").mkdir()
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path), "--model", str(cls_artifact.folder))
    assert code == 2 and out == "" and one_line_error(err) == f"error: dataset {tmp_path}: {message}"


@pytest.mark.parametrize(("case", "message"), [
    ("no-masks", "a segmenter is evaluated on pictures and their labels: give the dataset root"),
    ("masks-missing", "labels folder {masks} does not exist"),
    ("no-pairs", "no picture in {pics} has a label PNG or TIFF of its name in {masks}"),
    ("rgb-label", "label {masks}/coffee.png: a picture of mode RGB, not one channel of class ids"),
    ("not-a-png", "label {masks}/coffee.png: cannot read it (cannot identify image file"),
])
def test_a_segmentation_dataset_that_cannot_be_measured_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        seg_artifact: Any, tmp_path: Path, case: str, message: str) -> None:
    pics, masks = tmp_path / "pics", tmp_path / "masks"
    pics.mkdir()
    for picture in sample_images():
        shutil.copyfile(picture, pics / picture.name)
    if case != "masks-missing":
        masks.mkdir()
    if case == "rgb-label":
        Image.new("RGB", (600, 400)).save(masks / "coffee.png")
    elif case == "not-a-png":
        (masks / "coffee.png").write_bytes(b"not a png")
    args = [] if case == "no-masks" else ["--masks", str(masks)]
    with caplog.at_level(logging.WARNING):
        code, out, err = run(monkeypatch, capsys, "val", str(pics), "--model", str(seg_artifact.folder), *args)
    assert code == 2 and out == "" and message.format(pics=pics, masks=masks) in one_line_error(err), err
    if case in ("rgb-label", "not-a-png"):  # the pictures without a label are said before
        assert "2 of 3 pictures have no label and are left out" in caplog.text


# ---------------------------------------------------------------------------------------------------
# --names files that cannot be used: one line naming the file, before any picture is read
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "data", "message"), [
    ("nope.txt", None, "--names {path}: no such file"),
    ("cp1252.txt", "café\n".encode("cp1252"), "--names {path}: cannot read it (neither UTF-8 nor UTF-16 text: "),
    ("ids.yaml", b"names: {1: tench, 2: goldfish}\n", "--names {path}: its names: have ids [1, 2]..., not 0..1"),
    ("broken.yaml", b"names: [tench\n", "--names {path}: cannot read it (while parsing a flow sequence"),
    ("count.yaml", b"nc: 2\n", "--names {path}: names: the class names are missing (a list, or ids to names)"),
])
def test_a_names_file_that_cannot_be_used_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path,
        file: str, data: bytes | None, message: str) -> None:
    """Each names the file as --names, a YAML too: it was 'dataset broken.yaml' (the reader val shares)."""
    path = tmp_path / file
    if data is not None:
        path.write_bytes(data)
    code, out, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", str(cls_artifact.folder),
                         "--names", str(path), "-o", str(tmp_path / "out"))
    assert code == 2 and out == "" and message.format(path=path) in one_line_error(err), err
    assert not (tmp_path / "out").exists()


def test_a_names_path_of_another_kind_is_refused_by_the_api(cls_artifact: Any, tmp_path: Path) -> None:
    """A path (not a string) is a file of names whatever its suffix: a .csv is refused by name, not read
    as one class called 'classes.csv' (as a string without a names-file suffix is)."""
    from pvt_deploy.api import Model
    from pvt_deploy.errors import InputError

    path = tmp_path / "classes.csv"
    path.write_text("tench,goldfish\n")
    with pytest.raises(InputError, match=r"names .*classes\.csv: a file of names is a \.txt or \.names"):
        Model(str(cls_artifact.folder), names=path)


# ---------------------------------------------------------------------------------------------------
# weights URLs that cannot be fetched: one line, exit 2, nothing left in the cache
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound and never listening, and held for the test. Let go
    at once, it was free for any socket to take meanwhile: a server's, or the client's own local port (a
    connection to itself, which answers)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:{port}/pvt_v2_b0.pth", "could not download {url} (Connection refused)"),
    ("http://[::1/pvt_v2_b0.pth", "bad weights URL {url}: Invalid IPv6 URL"),
    ("http:///pvt_v2_b0.pth", "bad weights URL {url}: no host"),
    ("http://127.0.0.1:{port}/", "weights URL {url} names no file (expected https://HOST/.../NAME.pth)"),
])
def test_a_weights_url_that_cannot_be_fetched_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str,
        message: str, refused_port: int) -> None:
    monkeypatch.setenv("PVT_DEPLOY_CACHE", str(tmp_path / "cache"))
    url = url.format(port=refused_port)
    code, out, err = run(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--weights", url,
                         "--output", str(tmp_path / "out"))
    assert code == 2 and message.format(url=url) in one_line_error(err), err
    assert not (tmp_path / "out").exists()
    cache = tmp_path / "cache" / "weights"
    assert not cache.exists() or list(cache.iterdir()) == []  # no record of a download that never came


def test_a_cached_file_whose_hash_differs_is_fetched_again(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, refused_port: int) -> None:
    """A hub-style name carries the first digits of its sha256: a cached file of that name with other
    bytes (a copy put there by hand, a disk error) is not used; here the server is gone, so the
    download's own error follows the warning."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.utils.download import fetch

    monkeypatch.setenv("PVT_DEPLOY_CACHE", str(tmp_path / "cache"))
    url = f"http://127.0.0.1:{refused_port}/pvt_v2_b0-0a1b2c3d.pth"
    (tmp_path / "cache" / "weights").mkdir(parents=True)
    (tmp_path / "cache" / "weights" / "pvt_v2_b0-0a1b2c3d.pth").write_bytes(b"something else")
    with caplog.at_level(logging.WARNING), pytest.raises(InputError, match=r"\(Connection refused\)$"):
        fetch(url)
    assert "does not have sha256 0a1b2c3d; downloading it again" in caplog.text


# ---------------------------------------------------------------------------------------------------
# an export written by a newer pvt-deploy
# ---------------------------------------------------------------------------------------------------


def test_an_export_from_a_newer_pvt_deploy_is_one_line_with_the_upgrade(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    from pvt_deploy.manifest import FORMAT_VERSION

    folder = tmp_path / "newer"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for args in (["info", str(folder)], ["infer", str(sample_images()[0]), "--model", str(folder), "--no-save"],
                 ["check", "--model", str(folder)]):
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 2 and out == "", (args, err)
        assert one_line_error(err) == (f"error: {folder / 'manifest.json'}: manifest format {FORMAT_VERSION + 1} is "
                                       f"newer than this pvt-deploy understands ({FORMAT_VERSION}) "
                                       "(pip install -U pvt-deploy)"), args


# ---------------------------------------------------------------------------------------------------
# bench --profile: an operator name longer than its column
# ---------------------------------------------------------------------------------------------------


def test_a_long_operator_name_keeps_both_ends_and_the_table_its_80_columns() -> None:
    """PyTorch's ATen names run past the op column (aten::_scaled_dot_product_flash_attention_for_cpu is 48
    characters); two of them may share their first 20: each keeps its start and its end."""
    from rich.console import Console

    from pvt_deploy.cli.bench import render_profile

    names = ["aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_efficient_attention",
             "aten::linear"]
    ops = [{"op": n, "nodes": 4, "ms": 1.0 - 0.25 * k, "share": (1.0 - 0.25 * k) / 2.25} for k, n in enumerate(names)]
    console = Console(width=80, record=True, highlight=False)
    render_profile("torch", {"ops": ops, "calls": 10, "total_ms": 2.25}, console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.strip().startswith("aten::")}
    # 19 characters, an ellipsis, the last 20: the column's 40
    assert set(rows) == {"aten::_scaled_dot_p…sh_attention_for_cpu", "aten::_scaled_dot_p…_efficient_attention",
                         "aten::linear"}, lines
    assert rows["aten::linear"] == ["4", "0.500", "22.2%"]


def test_names_naming_a_file_of_another_kind_is_refused_as_a_file_not_read_as_one_class(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    """``--names classes.csv`` (a file that is there) said '--names gives 1 name, but ... has 1000 classes':
    the file's name taken for the one class name, with no word that the file was not read."""
    path = tmp_path / "classes.csv"
    path.write_text("tench\ngoldfish\n")
    code, out, err = run(monkeypatch, capsys, "infer", str(sample_images()[0]), "--model", str(cls_artifact.folder),
                         "--names", str(path), "--no-save")
    assert code == 2 and out == ""
    assert one_line_error(err) == (f"error: --names {path}: a file of names is a .txt or .names (one a line) or a "
                                   "dataset YAML")
    # a name with a dot that is no file here is still a name (a one-class model is named so); --names of
    # the right count read as names
    from pvt_deploy.data import given_names

    assert given_names("e.coli", 1, "the model") == ["e.coli"]
    assert given_names(f"{path},b", 2, "the model") == [str(path), "b"]


# ---------------------------------------------------------------------------------------------------
# a feature extractor (a backbone export): no test predicted with one
# ---------------------------------------------------------------------------------------------------


def test_a_backbones_results_hold_each_pictures_own_feature_maps(feat_artifact: Any) -> None:
    """Two pictures in one batch: each result's maps are its own row of the graph's outputs (not the
    first picture's, not the batch's), named and shaped as the manifest's outputs; the summary line, the
    JSON record and len() say so."""
    from pvt_deploy.api import Model

    pictures = [np.asarray(Image.open(p).convert("RGB").resize((96, 96))) for p in sample_images()[:2]]
    with Model(str(feat_artifact.folder)) as model:
        results = model.predict(pictures, batch=2)
        feed, _ = model.predictor().preprocess(pictures)
        raw = model.backend.infer(feed)
    names = [o["name"] for o in feat_artifact.manifest["outputs"]]
    assert len(results) == 2 and list(raw) == names
    for i, r in enumerate(results):
        assert r.task == "features" and list(r.features) == names and len(r) == 0
        for name in names:
            np.testing.assert_array_equal(r.features[name], raw[name][i])
        assert r.verbose() == ", ".join(f"{n} {list(raw[n].shape[1:])}" for n in names)
        assert json.loads(r.to_json())["features"] == {n: list(raw[n].shape[1:]) for n in names}
    assert not np.array_equal(results[0].features[names[0]], results[1].features[names[0]])
    # nothing to draw: infer --save writes the picture as it is, a copy (the caller may draw on it)
    drawn = results[0].plot()
    np.testing.assert_array_equal(drawn, pictures[0])
    drawn[:] = 0
    np.testing.assert_array_equal(results[0].plot(), pictures[0])


def test_len_of_a_classifiers_and_a_segmenters_result_and_boxes_asked_of_them(
        cls_artifact: Any, seg_artifact: Any, tmp_path: Path) -> None:
    """len(): a classifier's top-k classes, a segmenter's classes present (as len() of a detector's result is
    its boxes); the boxes of a result that has none are one InputError naming the task."""
    from pvt_deploy.api import Model
    from pvt_deploy.errors import InputError

    picture = sample_images()[0]
    with Model(str(cls_artifact.folder)) as model:
        top = model.predict(picture, topk=3)[0]
    with Model(str(seg_artifact.folder)) as model:
        seg = model.predict(picture)[0]
    assert len(top) == 3 and len(seg) == len(np.unique(seg.mask)) == len(seg.areas())
    for result, task in ((top, "classify"), (seg, "segment")):
        with pytest.raises(InputError, match=f"^a {task} result has no boxes$"):
            result.shown_boxes()
        with pytest.raises(InputError, match=f"^a {task} result has no boxes to crop$"):
            result.save_crop(tmp_path / task)
        assert not (tmp_path / task).exists()


# ---------------------------------------------------------------------------------------------------
# dataset YAMLs as export --calib reads them
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    (None, "calibration images: no such file: {path}"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "calibration images: dataset {path}: cannot read it (neither UTF-8 nor UTF-16 "
     "text: invalid start byte at byte 0)"),
    ("val: [a.jpg\n".encode("utf-16")[:-1], "calibration images: dataset {path}: cannot read it (not valid UTF-16 "
     "text: truncated data at byte 24)"),  # a Windows tool's UTF-16 file, cut a byte short
    (b"path: 5\nval: coffee.jpg\n", "calibration images: {path}: path: 5 is not a folder name"),
    (b"val: sample.mp4\n", "calibration images: {path}: val: sample.mp4 is a video: a split is a folder of images"),
])
def test_a_calibration_yaml_that_gives_no_images_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path,
        text: bytes | None, message: str) -> None:
    from pvt_deploy.assets import sample_video

    folder = tmp_path / "export"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    shutil.copyfile(sample_video(), tmp_path / "sample.mp4")
    path = tmp_path / "data.yaml"
    if text is not None:
        path.write_bytes(text)
    before = sorted(p.name for p in folder.iterdir())
    code, out, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", "--calib", str(path))
    assert code == 2 and message.format(path=path) in one_line_error(err), err
    assert sorted(p.name for p in folder.iterdir()) == before  # no INT8 file, no leftovers


def test_a_split_naming_one_picture_is_that_picture(tmp_path: Path) -> None:
    """``val: photo.jpg`` (a split of one picture, beside the YAML) gives that picture, as a folder gives its
    pictures; ``val: [a.jpg, more/]`` both."""
    from pvt_deploy.export.calibration import dataset_images

    one, two = sample_images()[:2]
    shutil.copyfile(one, tmp_path / one.name)
    (tmp_path / "more").mkdir()
    shutil.copyfile(two, tmp_path / "more" / two.name)
    (tmp_path / "one.yaml").write_text(f"val: {one.name}\n")
    (tmp_path / "both.yaml").write_text(f"val: [{one.name}, more]\n")
    assert dataset_images(tmp_path / "one.yaml") == [tmp_path / one.name]
    assert dataset_images(tmp_path / "both.yaml") == [tmp_path / one.name, tmp_path / "more" / two.name]


# ---------------------------------------------------------------------------------------------------
# a manifest whose preprocessing names no resize policy
# ---------------------------------------------------------------------------------------------------


def test_a_damaged_file_record_is_named_by_its_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    """A record of ``files`` whose field holds the wrong kind of value: the line names the file's entry."""
    folder = tmp_path / "edited"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["model.onnx"]["sha256"] = 5
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run(monkeypatch, capsys, "info", str(folder))
    assert code == 2 and out == "" and one_line_error(err) == (
        f'error: {folder / "manifest.json"}: damaged manifest: files["model.onnx"].sha256 is 5, not a string '
        "(re-export it, or restore the file)")


def test_a_manifest_with_an_unknown_resize_policy_is_refused_by_name_as_a_damaged_field(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    """preprocess.resize "stretch" (a hand edit): info showed 'preprocess: stretch to 64x64' and exited 0, and
    infer opened the source, printed its header, then said 'unknown resize policy' without naming the file;
    every other damaged field is refused where the manifest is read, in one line naming file and field."""
    folder = tmp_path / "edited"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["preprocess"]["resize"] = "stretch"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    expected = (f'error: {folder / "manifest.json"}: damaged manifest: preprocess.resize is "stretch", not one of '
                "letterbox, align, resize_crop (re-export it, or restore the file)")
    for args in (["info", str(folder)], ["infer", str(sample_images()[0]), "--model", str(folder), "--no-save"]):
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 2 and out == "" and one_line_error(err) == expected, (args, err)


def test_a_download_that_takes_a_while_draws_a_bar_on_a_terminal_and_lands_whole(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The progress bar of a download on a terminal (drawn once it has taken PROGRESS_AFTER_S; no test had
    drawn one): the bar shows the file's name and size, and the cached file is the server's bytes."""
    import http.server

    import torch
    from test_io_sinks import serving

    from pvt_deploy.utils import download

    source = tmp_path / "weights.pth"
    torch.save({"w": torch.arange(20_000, dtype=torch.float32)}, source)
    payload = source.read_bytes()

    class Slow(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for k in range(0, len(payload), 16_384):
                self.wfile.write(payload[k:k + 16_384])
                self.wfile.flush()

    monkeypatch.setenv("PVT_DEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich's word for a terminal
    monkeypatch.setattr(download, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(download, "_CHUNK", 16_384)
    with serving(Slow) as base:
        path = download.fetch(f"{base}/pvt_v2_b0_mine.pth")
    assert path.read_bytes() == payload and path.name == "pvt_v2_b0_mine.pth"
    err = capsys.readouterr().err
    assert "download pvt_v2_b0_mine.pth" in err and f"{len(payload) / 1e3:.1f}" in err, err


def test_info_graph_of_an_export_whose_graph_file_is_gone_says_so_in_its_row(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    """A file the manifest lists but the folder lacks (deleted by hand): its --graph row says 'no such file'
    under the precision the manifest gives it (was '(?)'), and info describes the rest, then exits 1, as an
    integrity check that fails (session 50)."""
    folder = tmp_path / "gone"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    (folder / "model.onnx").unlink()
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--graph", "--json")
    assert code == 1 and err == f"error: {folder}: model.onnx is missing (the manifest lists it)\n", err
    assert json.loads(out)["graph"] == [{"file": "model.onnx", "format": "onnx", "precision": "fp32",
                                         "error": "no such file"}]
    code, out, err = run(monkeypatch, capsys, "info", str(folder), "--graph")
    line = next(line for line in out.splitlines() if line.startswith("graph model.onnx"))
    assert code == 1 and line == "graph model.onnx (fp32): no such file", out


def test_a_mask_of_more_than_256_classes_is_coloured_by_each_class_own_colour() -> None:
    """A segmenter of 300 classes (a custom 16-bit label set): ids past 255 take numpy's lookup instead of
    cv2.LUT's 256 entries; each pixel is still its class's colour blended at alpha, as for id 5."""
    from pvt_deploy.tasks.visualize import overlay_mask

    image = np.full((2, 3, 3), 100, np.uint8)
    mask = np.array([[5, 256, 299], [0, 280, 5]], np.uint16)
    table = np.random.default_rng(0).integers(0, 256, (300, 3), dtype=np.uint8)  # a checkpoint's own palette
    table[[0, 24]] = 0  # what ids 256 and 280 would take if wrapped into a byte
    out = overlay_mask(image, mask, alpha=0.5, palette=table.tolist())
    expected = 0.5 * image + 0.5 * table[mask]
    assert np.abs(out.astype(int) - expected).max() <= 1
    # the default palette (ADE20K's, extended past 149) colours 256 and 280 apart from 0 and 24 too
    out = overlay_mask(image, mask, alpha=1.0)
    assert len({tuple(out[0, 1]), tuple(out[1, 1]), tuple(out[1, 0])}) == 3


@pytest.mark.parametrize("given", [",", "fp32,,int8", " , "])
def test_val_precision_with_an_empty_part_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path,
        given: str) -> None:
    code, out, err = run(monkeypatch, capsys, "val", str(tmp_path), "--model", str(cls_artifact.folder),
                         "--precision", given)
    assert code == 2 and out == "" and one_line_error(err) == (
        f"error: --precision {given!r}: give fp32, fp16 or int8, or several comma-separated (fp32,int8)")


def test_val_of_a_model_outside_the_zoo_shows_no_published_figure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cls_artifact: Any, tmp_path: Path) -> None:
    """An export of a fine-tuned model under its own name: no zoo entry, so no published figure to set beside
    the measured one (none is made up from the backbone's)."""
    folder = tmp_path / "mine"
    shutil.copytree(cls_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model"] = "my-finetune"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    data = tmp_path / "val" / "tench"
    data.mkdir(parents=True)
    shutil.copyfile(sample_images()[0], data / "a.jpg")
    code, out, err = run(monkeypatch, capsys, "val", str(data.parent), "--model", str(folder), "--json")
    report = json.loads(out)
    assert code == 0 and report["model"] == "my-finetune" and report["published"] is None, err
    code, out, err = run(monkeypatch, capsys, "val", str(data.parent), "--model", str(folder))
    assert code == 0 and "published" not in out, out
    assert f"1 picture of {data.parent} (1 class) at " in out, out  # was '1 pictures of ... (1 classes)'


def test_calib_given_for_int8_files_already_there_is_said_to_be_unused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        det_artifact: Any, tmp_path: Path) -> None:
    """export --model EXPORT --int8 --calib MINE where the INT8 files exist kept them, calibrated on other
    pictures, and said only 'already there: nothing to add': the pictures given were read and never used,
    without a word. The files are still kept (their parity passed); the warning says so and how to redo them."""
    folder = tmp_path / "det"
    shutil.copytree(det_artifact.folder, folder, ignore=shutil.ignore_patterns(".ort-cache"))
    before = {name: (folder / name).read_bytes() for name in ("model.int8.onnx", "model.int8.trt.onnx")}
    recorded = json.loads((folder / "manifest.json").read_text())["precision"]["int8"]["calibration"]["source"]
    mine = tmp_path / "mine"
    mine.mkdir()
    for picture in sample_images()[:2]:
        shutil.copyfile(picture, mine / picture.name)
    with caplog.at_level(logging.WARNING):
        code, out, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", "--calib", str(mine))
    assert code == 0, err
    assert (f"{folder}: --calib {mine} is not used: model.int8.onnx, model.int8.trt.onnx are already there, "
            f"calibrated on {recorded} (delete them to calibrate on the pictures given)") in caplog.text
    assert {name: (folder / name).read_bytes() for name in before} == before
    # no --calib, or the pictures they were calibrated on (named another way): nothing to say
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["precision"]["int8"]["calibration"]["source"] = str(mine)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for args in ([], ["--calib", str(mine)], ["--calib", f"{mine}/../{mine.name}"]):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            code, _, err = run(monkeypatch, capsys, "export", "--model", str(folder), "--int8", *args)
        assert code == 0 and "is not used" not in caplog.text, (args, caplog.text)
