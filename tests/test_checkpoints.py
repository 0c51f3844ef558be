"""Checkpoints in every supported layout load from disk and reproduce the outputs; bad ones fail clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from pvt_deploy.errors import CheckpointError
from pvt_deploy.models import create_model, infer_architecture, load_weights
from pvt_deploy.models.synthetic import seeded_state_dict

X = torch.rand(1, 3, 96, 128) * 4 - 2  # normalised-space input; models take it directly


def run(model: torch.nn.Module) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(X)
    if isinstance(out, torch.Tensor):
        return [out]
    flat: list[torch.Tensor] = []
    for o in out:
        flat.extend(o if isinstance(o, (list, tuple)) else [o])
    return flat


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def to_timm_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's naming of PVT v2, written independently of the loader's mapping."""
    out = {}
    for k, v in sd.items():
        k = k.replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
        if m := re.match(r"patch_embed(\d)\.(.*)", k):
            s = int(m[1]) - 1
            k = f"patch_embed.{m[2]}" if s == 0 else f"stages.{s}.downsample.{m[2]}"
        elif m := re.match(r"block(\d)\.(\d+)\.(.*)", k):
            k = f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{m[3]}"
        elif m := re.match(r"norm(\d)\.(.*)", k):
            k = f"stages.{int(m[1]) - 1}.norm.{m[2]}"
        out[k] = v
    return out


@pytest.fixture(scope="module")
def seeded() -> dict[str, torch.nn.Module]:
    """Reference models holding seeded weights (what a real checkpoint would contain)."""
    models = {}
    for name, task in [("pvt_v2_b0", "classify"), ("pvt_tiny", "classify"), ("pvt_v2_b0", "detect"),
                       ("pvt_v2_b0", "segment")]:
        m = create_model(name, task=task)
        m.load_state_dict(seeded_state_dict(m, seed=5))
        models[f"{name}-{task}"] = m
    return models


@pytest.mark.parametrize(("ref", "wrap"), [
    ("pvt_v2_b0-classify", lambda sd: sd),
    ("pvt_tiny-classify", lambda sd: sd),
    ("pvt_tiny-classify", lambda sd: {"model": sd, "epoch": 300}),
    ("pvt_v2_b0-classify", lambda sd: {"module." + k: v for k, v in sd.items()}),
    ("pvt_v2_b0-classify", to_timm_names),
    ("pvt_v2_b0-detect", lambda sd: {"state_dict": sd, "meta": {"mmdet_version": "2.8.0", "CLASSES": []}}),
    ("pvt_v2_b0-segment", lambda sd: {"state_dict": sd, "meta": {"mmseg_version": "0.13.0"}}),
], ids=["official-v2", "official-v1", "wrapped-model", "ddp-prefix", "timm", "mmdet", "mmseg"])
def test_layouts_round_trip_from_disk(ref: str, wrap, seeded, tmp_path: Path) -> None:
    src = seeded[ref]
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(src.state_dict()), path)
    name, task = ref.split("-")
    loaded = create_model(name, task=task, weights=path)
    assert loaded.random_init is False
    assert_same(run(loaded), run(src))


def test_checkpoint_path_as_model_name_infers_architecture(seeded, tmp_path: Path) -> None:
    path = tmp_path / "retinanet_pvt_v2_b0.pth"
    torch.save({"state_dict": seeded["pvt_v2_b0-detect"].state_dict(), "meta": {}}, path)
    model = create_model(str(path))
    assert model.zoo_name == "pvt_v2_b0" and model.zoo_task == "detect"
    assert_same(run(model), run(seeded["pvt_v2_b0-detect"]))
    assert infer_architecture(seeded["pvt_tiny-classify"].state_dict()) == ("pvt_tiny", "classify", 1000)


def test_backbone_checkpoint_initialises_detector_and_reports(seeded, tmp_path: Path) -> None:
    cls = seeded["pvt_v2_b0-classify"]
    path = tmp_path / "pvt_v2_b0.pth"
    torch.save(cls.state_dict(), path)
    det = create_model("pvt_v2_b0", task="detect")
    report = load_weights(det, path)
    assert report.layout == "classifier"
    assert sorted(report.ignored) == ["head.bias", "head.weight"]
    assert report.random and all(k.startswith(("neck.", "bbox_head.")) for k in report.random)
    with torch.no_grad():
        assert_same(det.backbone(X), cls.forward_pyramid(X))
    # The v1 classifier's cls token and final norm are ignored too.
    v1 = tmp_path / "pvt_tiny.pth"
    torch.save(seeded["pvt_tiny-classify"].state_dict(), v1)
    report = load_weights(create_model("pvt_tiny", task="segment"), v1)
    assert sorted(report.ignored) == ["cls_token", "head.bias", "head.weight", "norm.bias", "norm.weight"]


def test_features_model_takes_backbone_of_detector_checkpoint(seeded, tmp_path: Path) -> None:
    path = tmp_path / "det.pth"
    torch.save({"state_dict": seeded["pvt_v2_b0-detect"].state_dict()}, path)
    feats = create_model("pvt_v2_b0", task="features", weights=path)
    with torch.no_grad():
        assert_same(feats(X), seeded["pvt_v2_b0-detect"].backbone(X))


def test_class_count_read_from_checkpoint(tmp_path: Path) -> None:
    m = create_model("pvt_v2_b0", task="classify", num_classes=10)
    path = tmp_path / "ten.pth"
    torch.save(m.state_dict(), path)
    assert create_model("pvt_v2_b0-cls", weights=path).head.out_features == 10
    with pytest.raises(CheckpointError, match=r"2 mis-shaped \[head.weight: checkpoint \(10, 256\) vs model \(1000, 256\)"):
        create_model("pvt_v2_b0-cls", weights=path, num_classes=1000)


def test_wrong_variant_lists_missing_unexpected_and_counts(seeded, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(seeded["pvt_tiny-classify"].state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_weights(create_model("pvt_v2_b0", task="classify"), path)
    msg = str(err.value)
    assert "does not fit pvt_v2_b0-cls" in msg and "\n" not in msg
    assert re.search(r"\d+ missing \[.*\(\+\d+\)\]", msg)
    assert re.search(r"\d+ unexpected \[", msg) and "mis-shaped" in msg


def test_zoo_name_with_weights_of_another_variant_names_the_file_and_the_variant(
        seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--model pvt_v2_b0-cls --weights tiny.pth``: the file is read before the model is built, and
    the mismatch said "state dict" and left the user to guess what the file holds."""
    from pvt_deploy.export.onnx import _load

    path = tmp_path / "tiny.pth"
    torch.save(seeded["pvt_tiny-classify"].state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        create_model("pvt_v2_b0-cls", weights=path)
    msg = str(err.value)
    assert msg.startswith(f"{path} (classifier layout) does not fit pvt_v2_b0-cls")
    assert "its tensors are those of pvt_tiny-cls" in msg and "--model pvt_tiny-cls" in msg
    # the export records the file's absolute path, so the PyTorch backend finds it from any folder
    monkeypatch.chdir(tmp_path)
    loaded = _load("pvt_tiny-cls", task=None, weights="tiny.pth", trust=False, nms="host", seg_output="logits")
    assert loaded.weights["source"] == str(path.resolve()) and not loaded.weights["random_init"]
    assert "seed" not in loaded.weights
    fresh = _load("pvt_tiny-cls", task=None, weights=None, trust=False, nms="host", seg_output="logits")
    assert fresh.weights["random_init"] and fresh.weights["seed"] == 0


def test_weights_of_another_task_name_the_model_they_are(seeded, tmp_path: Path) -> None:
    """``--model pvt_v2_b0-seg --weights retinanet_b0.pth`` (same backbone, another task) listed dozens of
    keys and no way out, where another variant's file says what it is: a detector's file names its model."""
    path = tmp_path / "retinanet_b0.pth"
    torch.save({"state_dict": seeded["pvt_v2_b0-detect"].state_dict(), "meta": {}}, path)
    for asked in ("pvt_v2_b0-seg", "pvt_v2_b0-cls"):
        with pytest.raises(CheckpointError) as err:
            create_model(asked, weights=path)
        msg = str(err.value)
        assert msg.startswith(f"{path} (mmdet layout) does not fit {asked}") and "\n" not in msg
        assert msg.endswith("(its tensors are those of pvt_v2_b0) (--model pvt_v2_b0)"), msg


def test_arbitrary_pickle_is_refused_unless_trusted(seeded, tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"model": seeded["pvt_v2_b0-classify"].state_dict(), "args": Path("/some/where")}, path)
    with pytest.raises(CheckpointError) as err:
        create_model("pvt_v2_b0-cls", weights=path)
    # it quoted torch's first line, "... to do so you have two options, do those steps only if ...", and not
    # the options nor what the file holds; it names the object that is not a tensor
    assert str(err.value) == (f"{path}: refusing to unpickle arbitrary objects from this checkpoint (it holds "
                              f"{type(path).__module__}.{type(path).__name__}, not only tensors) (pass "
                              "--trust-checkpoint (export, infer) or trust=True only if you trust its source)")
    model = create_model("pvt_v2_b0-cls", weights=path, trust=True)
    assert_same(run(model), run(seeded["pvt_v2_b0-classify"]))


@pytest.mark.parametrize(("name", "said"), [
    ("model.onnx", "is an ONNX graph, not a PyTorch checkpoint (it runs on its own: --model {path})"),
    ("model.engine", "is a TensorRT engine, not a PyTorch checkpoint (it runs on its own: --model {path})"),
    ("street.jpg", "is an image, not a PyTorch checkpoint"),
    ("street.mp4", "is a video, not a PyTorch checkpoint"),
])
def test_weights_that_are_another_kind_of_file_say_what_they_are(name: str, said: str, tmp_path: Path) -> None:
    """``--weights exports/x/model.onnx`` (or a picture, given in the wrong place) said "corrupt or truncated
    checkpoint", sending the user to download a file that is fine. A file of a kind pvt-deploy knows by its
    suffix is named as that kind; a .pth of unreadable bytes is still said to be damaged."""
    path = tmp_path / name
    path.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(64))
    with pytest.raises(CheckpointError) as err:
        create_model("pvt_v2_b0-cls", weights=path)
    assert str(err.value) == f"{path} " + said.format(path=path)


@pytest.mark.parametrize(("content", "message"), [
    (None, "checkpoint file not found"),
    (b"not a checkpoint at all", "corrupt or truncated"),
    ("truncate", "corrupt or truncated"),
])
def test_unreadable_files_fail_in_one_line(content, message: str, seeded, tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    if content == "truncate":
        torch.save(seeded["pvt_v2_b0-classify"].state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        create_model("pvt_v2_b0-cls", weights=path)
    assert "\n" not in str(err.value)


def test_non_pvt_state_dict_is_rejected() -> None:
    with pytest.raises(CheckpointError, match="not a PVT model"):
        infer_architecture({"conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(create_model("pvt_v2_b0-cls"), {"conv1.weight": torch.zeros(64, 3, 7, 7)})
