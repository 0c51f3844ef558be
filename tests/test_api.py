"""``Model(...).predict(...)`` on every kind of source, and what a Result offers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_runtime_artifacts import cached_clip, cached_export

from pvt_deploy import Model, api
from pvt_deploy.assets import sample_image, sample_images_dir
from pvt_deploy.errors import InputError
from pvt_deploy.io.sources import read_image


@pytest.fixture(scope="module")
def det_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    m = Model(cached_export(tmp_path_factory, "det"))
    yield m  # type: ignore[misc]
    m.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_clip(tmp_path_factory)


def test_model_describes_itself(det_model: Model) -> None:
    assert det_model.task == "detect" and len(det_model.names) == 80 and det_model.names[0] == "person"
    assert det_model.backend.info.name == "onnxruntime"
    assert det_model.manifest["model"] == "pvt_v2_b0"
    assert "detect" in repr(det_model)


def test_predict_an_image_path(det_model: Model, tmp_path: Path) -> None:
    results = det_model.predict(str(sample_image("coffee")))
    assert isinstance(results, list) and len(results) == 1
    r = results[0]
    assert r.task == "detect" and r.path.endswith("coffee.jpg") and r.frame is None
    assert r.orig_shape == (400, 600) and len(r.boxes) > 0
    b = r.boxes
    assert b.xyxy.dtype == np.float32 and b.cls.dtype == np.int64 and (np.diff(b.conf) <= 0).all()
    assert (b.xyxy[:, [0, 2]] <= 600).all() and (b.xyxy[:, [1, 3]] <= 400).all() and (b.xyxy >= 0).all()
    assert np.allclose(b.xyxyn[:, 2], b.xyxy[:, 2] / 600) and b.xywh.shape == (len(b), 4)
    assert b[b.conf > 0.0].labels == [r.names[c] for c in b.cls]
    plotted = r.plot()
    assert plotted.shape == r.orig_img.shape and not np.array_equal(plotted, r.orig_img)
    record = json.loads(r.to_json())
    assert record["width"] == 600 and len(record["detections"]) == len(b)
    assert set(record["detections"][0]) == {"box", "score", "class_id", "class"}
    saved = r.save(tmp_path / "coffee_pred.png")
    assert cv2.imread(str(saved)).shape == (400, 600, 3)


def test_predict_a_folder_an_array_and_a_list(det_model: Model) -> None:
    folder = det_model.predict(sample_images_dir(), conf=0.06)
    assert [Path(r.path).name for r in folder] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    assert all((r.boxes.conf > 0.06).all() for r in folder)
    image = read_image(sample_image("chelsea"))
    from_array = det_model.predict(image)[0]
    from_path = next(r for r in folder if r.path.endswith("chelsea.jpg"))
    assert from_array.path == "image0.jpg"
    assert np.allclose(from_array.boxes.xyxy[from_array.boxes.conf > 0.06], from_path.boxes.xyxy, atol=1e-3)
    many = det_model.predict([image, image[::2, ::2]], batch=2, classes=[0, 1, 2])
    assert [r.orig_shape for r in many] == [(300, 451), (150, 226)]
    assert all(set(r.boxes.cls.tolist()) <= {0, 1, 2} for r in many)


def test_mixed_lists_float_pictures_and_unknown_suffixes(det_model: Model, tmp_path: Path) -> None:
    path = sample_image("chelsea")
    image = read_image(path)
    ref = det_model.predict(image)[0]
    for mixed in ([str(path), image], [image, path]):  # paths and arrays in one list, either order
        results = det_model.predict(mixed)
        assert len(results) == 2 and sum(r.path.endswith("chelsea.jpg") for r in results) == 1
        for r in results:
            assert np.allclose(r.boxes.xyxy, ref.boxes.xyxy, atol=1e-3)
    # img.astype(np.float32) keeps 0..255; 0..1 floats are still read as 0..1
    for floats in (image.astype(np.float32), image.astype(np.float64) / 255.0):
        r = det_model.predict(floats)[0]
        assert np.abs(r.orig_img.astype(int) - image).max() <= 1
        assert np.allclose(r.boxes.xyxy, ref.boxes.xyxy, atol=0.5)
    with pytest.raises(InputError, match="cannot encode an image as '.xyz'"):
        ref.save(tmp_path / "x.xyz")
    assert not list(tmp_path.iterdir())


def test_predict_a_video_as_a_stream(det_model: Model, clip: Path) -> None:
    gen = det_model.predict(clip, stream=True, vid_stride=2, batch=2)
    assert not isinstance(gen, list)
    results = list(gen)
    assert [r.frame for r in results] == [0, 2, 4, 6, 8]
    assert all(r.orig_shape == (180, 320) and r.path == str(clip) for r in results)
    assert results[1].timestamp == pytest.approx(0.2, abs=0.01)
    summary = det_model.last_summary
    assert summary is not None and summary.frames == 5 and summary.stages["inference"]["frames"] == 5


def test_long_videos_and_streams_need_stream_true(det_model: Model, clip: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "MAX_LIST_FRAMES", 5)
    with pytest.raises(InputError, match="stream=True"):
        det_model.predict(clip)
    assert len(det_model.predict(clip, vid_stride=2)) == 5  # 5 frames after the stride: allowed


def test_save_writes_annotated_media_and_json(det_model: Model, clip: Path, tmp_path: Path) -> None:
    det_model.predict(sample_images_dir(), save=True, save_json=True, save_dir=tmp_path / "images")
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "predictions.jsonl", "predictions_coco.json"]
    coco = json.loads((tmp_path / "images" / "predictions_coco.json").read_text())
    assert coco and {"image_id", "category_id", "bbox", "score"} == set(coco[0])
    assert coco[0]["image_id"] in ("astronaut", "chelsea", "coffee") and 1 <= coco[0]["category_id"] <= 90
    with pytest.raises(InputError, match="save_dir"):
        det_model.predict(clip, save=True)
    image = read_image(sample_image("chelsea"))
    det_model.predict([image, image[:, ::-1]], save=True, save_dir=tmp_path / "arrays")
    assert sorted(p.name for p in (tmp_path / "arrays").iterdir()) == ["image0.jpg", "image1.jpg"]


def test_segmentation_and_classification_results(tmp_path_factory: pytest.TempPathFactory,
                                                  tmp_path: Path) -> None:
    image = read_image(sample_image("coffee"))[::3, ::3]
    with Model(cached_export(tmp_path_factory, "seg")) as seg:
        r = seg.predict(image)[0]
    assert r.mask is not None and r.mask.shape == r.orig_shape == (134, 200) and r.mask.dtype == np.int32
    areas = r.areas()
    assert sum(a["pixels"] for a in areas) == 134 * 200 and areas[0]["pixels"] >= areas[-1]["pixels"]
    assert json.loads(r.to_json())["classes"][0]["class"] == areas[0]["class"]
    assert r.plot().shape == (134, 200, 3)
    assert cv2.imread(str(r.save_mask(tmp_path / "mask.png")), cv2.IMREAD_UNCHANGED).shape == (134, 200)
    with Model(cached_export(tmp_path_factory, "cls")) as cls:
        r = cls.predict(image, topk=3)[0]
    assert r.probs is not None and len(r.probs.top) == 3 and r.probs.top1 == r.probs.top5[0]
    assert 0 < r.probs.top1conf <= 1 and r.verbose().count("%") == 3
    assert [t["class"] for t in json.loads(r.to_json())["top"]] == r.probs.labels


def test_imgsz_is_parsed_as_the_cli_parses_it(det_model: Model) -> None:
    # one parser for Model(imgsz=...), predict(imgsz=...), `--imgsz` and the exporter: a string is a
    # size, not a sequence of characters ("128" once became 1x2), and a malformed one is refused
    assert det_model.predictor(imgsz="128").preprocessor.imgsz == (128, 128)
    assert det_model.predictor(imgsz="96x128").preprocessor.imgsz == (96, 128)
    assert det_model.predictor(imgsz=(np.int64(96), 128)).preprocessor.imgsz == (96, 128)
    for bad, why in [("abc", "not whole numbers"), ((128, 1.5), "not whole numbers"), ((1, 2, 3), "not one or two"),
                     (0, "at least 1"), (True, "not whole numbers")]:
        with pytest.raises(InputError, match=why):
            det_model.predictor(imgsz=bad)
