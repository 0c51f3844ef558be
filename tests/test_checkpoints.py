"""Checkpoints in every supported layout load from disk and reproduce the outputs; bad ones fail clearly."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pvt_deploy.errors import CheckpointError, InputError
from pvt_deploy.models import create_model, infer_architecture, load_weights
from pvt_deploy.models.synthetic import seeded_state_dict
from pvt_deploy.utils import file_size

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


def test_float_weights_stored_as_other_numbers_do_not_fit(tmp_path: Path) -> None:
    """A checkpoint whose float tensors are integers, booleans or complex numbers (a quantized or foreign
    file) of the right names and shapes was loaded by casting: other weights, said by nothing (complex
    numbers: a UserWarning). It does not fit, as a mis-shaped one does not; half and double are casts of
    the same weights and load."""
    from safetensors.torch import save_file

    model = create_model("pvt_v2_b0", task="classify", num_classes=10)
    for dtype in (torch.int32, torch.bool, torch.complex64, torch.float16, torch.float64):
        name = str(dtype).removeprefix("torch.")
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.to(dtype) for k, v in model.state_dict().items()}, str(path))
        if dtype.is_floating_point:
            loaded = create_model("pvt_v2_b0-cls", weights=path)
            assert torch.equal(loaded.head.weight, model.head.weight.to(dtype).float())
            continue
        with pytest.raises(CheckpointError, match=rf"does not fit pvt_v2_b0-cls: \d+ not floating point \[\S+: "
                                                  rf"checkpoint {name} vs model float32"):
            create_model("pvt_v2_b0-cls", weights=path)


def test_a_checkpoint_holding_nan_or_inf_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A diverged run's checkpoint (NaN in a tensor) loaded: infer wrote NaN probabilities with exit 0, and
    export wrote the folder marked failed, exit 5, blaming the graph ("model.onnx disagrees with pytorch:
    logits: 3000 non-finite values"). It is refused when it loads, naming the tensors, exit 2, nothing written."""
    from cli_run import run as cli

    sd = create_model("pvt_v2_b0", task="classify", num_classes=10).state_dict()
    sd["head.weight"][0, 0] = float("nan")
    sd["norm4.bias"][1] = float("-inf")
    path = tmp_path / "diverged.pth"
    torch.save(sd, path)
    code, out, err = cli(monkeypatch, capsys, "export", "--model", str(path), "--imgsz", "32", "-o", str(tmp_path / "x"))
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (f"error: {path}: 2 tensor(s) hold NaN or infinite values [norm4.bias, "
                                            "head.weight]: a diverged or damaged checkpoint"), err
    assert not (tmp_path / "x").exists()


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


def test_weights_of_no_known_variant_say_so_where_no_model_is_named(seeded, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``export --weights odd.pth`` (no --model: pvt_small) of a PVT whose depths are no variant's listed 100+
    keys pvt_small lacks, where ``info odd.pth`` says it matches no known variant: export says that too."""
    from cli_run import run as cli

    path = tmp_path / "odd.pth"
    torch.save({k: v for k, v in seeded["pvt_tiny-classify"].state_dict().items()  # depths 1, 2, 2, 2
                if not k.startswith("block1.1.")}, path)
    said = f"{path}: checkpoint is a PVT v1 with depths [1, 2, 2, 2] and widths [64, 128, 320, 512], which matches no known variant"
    code, out, err = cli(monkeypatch, capsys, "info", str(path))
    assert (code, err.strip()) == (2, f"error: {said}"), err
    code, out, err = cli(monkeypatch, capsys, "export", "--weights", str(path), "-o", str(tmp_path / "x"))
    assert (code, out, err.strip().splitlines()[-1]) == (2, "", f"error: {said}"), err
    assert not (tmp_path / "x").exists()


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
                              "--trust-checkpoint (trust=True in Python) only if you trust its source)")
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


@pytest.mark.parametrize("name", ["missing.pth", "missing.safetensors", "MISSING.PT"])
def test_a_missing_checkpoint_given_as_the_model_is_a_missing_file(name: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``export --model missing.safetensors`` said "unknown model 'missing.safetensors'; known backbones: ..."
    (the zoo's own list of checkpoint suffixes lacked .safetensors), where missing.pth said the file is missing."""
    monkeypatch.chdir(tmp_path)  # a bare name, as typed: no folder in it says it is a path
    with pytest.raises(CheckpointError, match=f"{name}: checkpoint file not found"):
        create_model(name)


def test_non_pvt_state_dict_is_rejected() -> None:
    with pytest.raises(CheckpointError, match="not a PVT model"):
        infer_architecture({"conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(create_model("pvt_v2_b0-cls"), {"conv1.weight": torch.zeros(64, 3, 7, 7)})


# --------------------------------------------------------------------------------------------------
# --weights https://...: downloaded once into the per-user cache, then loaded as the file
# --------------------------------------------------------------------------------------------------


class Site:
    """A web server on 127.0.0.1 for checkpoint URLs, counting the requests of each path: ``/v2/NAME`` the
    checkpoint (as a GitHub release asset), ``/moved/NAME`` a redirect to it, ``/short/NAME`` a body cut
    short of its Content-Length (half of it; ``/nearly/NAME`` all but its last 1000 bytes), ``/stall/NAME`` one that
    stops sending, ``/drive/uc?id=1`` a web page,
    ``/nolength/NAME`` the bytes of ``bodies[NAME]`` with no Content-Length (the body ends as the connection
    closes, as a chunked or HTTP/1.0 answer may); anything else 404."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.bodies: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}

    def handler(self) -> type:
        import http.server

        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with contextlib.suppress(ConnectionError):  # a client that gave up (the Ctrl-C, the timeout)
                    self.answer()

            def answer(self) -> None:
                path = self.path.split("?")[0]
                site.hits[path] = site.hits.get(path, 0) + 1
                kind = path.split("/")[1]
                if kind == "moved":
                    self.send_response(302)
                    self.send_header("Location", "/v2/" + path.rsplit("/", 1)[-1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif kind == "drive":
                    page = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                elif kind == "nolength" and path.rsplit("/", 1)[-1] in site.bodies:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    self.wfile.write(site.bodies[path.rsplit("/", 1)[-1]])
                    self.close_connection = True
                elif kind in ("v2", "short", "nearly", "stall"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(site.payload)))
                    self.end_headers()
                    if kind == "v2":
                        self.wfile.write(site.payload)
                        return
                    self.wfile.write(site.payload[: len(site.payload) - 1000 if kind == "nearly"
                                                  else len(site.payload) // 2])
                    self.wfile.flush()
                    if kind == "stall":
                        time.sleep(2)
                    self.close_connection = True
                else:
                    self.send_error(404, "Not Found")

        return Handler


@pytest.fixture(scope="module")
def official_b0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pvt_v2_b0's ImageNet classifier in the official file's layout (flat keys), seeded weights."""
    model = create_model("pvt_v2_b0-cls")
    path = tmp_path_factory.mktemp("release") / "pvt_v2_b0.pth"
    torch.save(seeded_state_dict(model, seed=3), path)
    return path


@pytest.fixture
def site(official_b0: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Site, str]]:
    from test_io_sinks import serving

    monkeypatch.setenv("PVT_DEPLOY_CACHE", str(tmp_path / "cache"))
    s = Site(official_b0.read_bytes())
    with serving(s.handler()) as base:
        yield s, base


def cached(tmp_path: Path) -> list[str]:
    """Every file in the weights cache (temporary ones included), less the records of the URLs they came from."""
    folder = tmp_path / "cache" / "weights"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".url")) if folder.is_dir() else []


def test_weights_url_is_downloaded_once_and_loads_as_the_file(
        site: tuple[Site, str], official_b0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The official checkpoints are URLs (GitHub release assets); --weights took only a file, and Typer's
    Path folded http:// into http:/. Now the URL is downloaded into the per-user cache (following GitHub's
    redirect to its CDN), loaded as the file would be, and a second run reads the cached file."""
    from cli_run import run as cli

    from pvt_deploy import Model
    from pvt_deploy.assets import sample_images
    from pvt_deploy.export.onnx import _load
    from pvt_deploy.utils.files import sha256_file

    s, base = site
    photo = str(sample_images()[0])
    url = f"{base}/moved/pvt_v2_b0.pth"  # as github.com/.../releases/download/... redirects
    code, _, err = cli(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--weights", url,
                       "--imgsz", "64", "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert s.hits == {"/moved/pvt_v2_b0.pth": 1, "/v2/pvt_v2_b0.pth": 1}
    assert cached(tmp_path) == ["pvt_v2_b0.pth"]
    file = tmp_path / "cache" / "weights" / "pvt_v2_b0.pth"
    assert file.read_bytes() == official_b0.read_bytes()
    with Model("pvt_v2_b0-cls", weights=url, imgsz=64) as by_url, Model("pvt_v2_b0-cls", weights=official_b0,
                                                                          imgsz=64) as by_file:
        assert not by_url.random_weights
        np.testing.assert_array_equal(by_url.predict(photo)[0].probs.data, by_file.predict(photo)[0].probs.data)
    loaded = _load("pvt_v2_b0-cls", task=None, weights=url, trust=False, nms="host", seg_output="logits")
    assert loaded.weights["source"] == str(file.resolve()) and loaded.weights["sha256"] == sha256_file(official_b0)
    assert loaded.weights["url"] == url  # where the file came from, which the cache path does not say
    assert s.hits == {"/moved/pvt_v2_b0.pth": 1, "/v2/pvt_v2_b0.pth": 1}  # the later loads: no network


def test_a_download_cut_short_or_stalled_leaves_nothing_a_later_run_loads(
        site: tuple[Site, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body shorter than its Content-Length (the server closed), one that stops coming, or a Ctrl-C
    mid-download: an error (or the interrupt), and no file, temporary or final, in the cache."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.utils import download

    s, base = site
    with pytest.raises(InputError, match=r"could not download .*/short/pvt_v2_b0.pth: the connection closed "
                                         r"after 7\.\d MB of 14\.\d MB"):
        create_model("pvt_v2_b0-cls", weights=f"{base}/short/pvt_v2_b0.pth")
    assert cached(tmp_path) == []
    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)
    with pytest.raises(InputError, match=r"could not download .*/stall/pvt_v2_b0.pth: no data for 0.5 s after"):
        create_model("pvt_v2_b0-cls", weights=f"{base}/stall/pvt_v2_b0.pth")
    assert cached(tmp_path) == []
    monkeypatch.setattr(download, "TIMEOUT_S", 30.0)

    @contextlib.contextmanager
    def ctrl_c_midway(name: str, total: int | None) -> Iterator[object]:
        def advance(n: int) -> None:
            raise KeyboardInterrupt
        yield advance

    monkeypatch.setattr(download, "_progress", ctrl_c_midway)
    with pytest.raises(KeyboardInterrupt):
        create_model("pvt_v2_b0-cls", weights=f"{base}/v2/pvt_v2_b0.pth")
    assert cached(tmp_path) == []


def test_a_download_a_few_bytes_short_says_its_two_sizes_apart(
        site: tuple[Site, str], official_b0: Path, tmp_path: Path) -> None:
    """A download short of its length by a few bytes said sizes that read the same ('closed after 14.3 MB of 14.3
    MB', 'cut short (4.1 kB of the 4.1 kB its safetensors header gives)'): where file_size says them alike, both
    are said in bytes. Fails before."""
    from safetensors.torch import save_file

    from pvt_deploy.utils.download import fetch

    s, base = site
    whole = len(official_b0.read_bytes())
    with pytest.raises(InputError) as err:
        fetch(f"{base}/nearly/pvt_v2_b0.pth")
    assert str(err.value).endswith(f"the connection closed after {whole - 1000:,} B of {whole:,} B")
    save_file({"w": torch.zeros(1000)}, str(tmp_path / "w.safetensors"))
    tensors = (tmp_path / "w.safetensors").read_bytes()
    s.bodies = {"few.safetensors": tensors[:-10]}
    with pytest.raises(CheckpointError) as cut:
        fetch(f"{base}/nolength/few.safetensors")
    assert str(cut.value).endswith(f"cut short ({len(tensors) - 10:,} B of the {len(tensors):,} B its safetensors "
                                   "header gives)")
    assert cached(tmp_path) == []


def test_a_download_without_a_length_is_cached_only_when_its_own_records_say_it_is_whole(
        site: tuple[Site, str], official_b0: Path, tmp_path: Path) -> None:
    """A body without a Content-Length ends when the connection closes, cut short or not: it was cached when
    the close was clean, and a cut safetensors file or legacy torch pickle then failed every later load (or
    loaded cut). A zip archive is whole by its end record, a safetensors file by the length its header
    gives; a legacy pickle records none, so it is refused (one line) unless the URL gives its hash."""
    import hashlib

    from safetensors.torch import save_file

    from pvt_deploy.utils.download import fetch

    s, base = site
    state = {k: v.contiguous() for k, v in torch.load(official_b0, weights_only=True).items()
             if k.startswith(("norm.", "head.bias"))}  # a few KB: the lengths said in bytes
    save_file(state, str(tmp_path / "whole.safetensors"))
    tensors = (tmp_path / "whole.safetensors").read_bytes()
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    s.bodies = {"whole.safetensors": tensors, "cut.safetensors": tensors[:-100], "long.safetensors": tensors + b"\0",
                "header.safetensors": tensors[:20], "legacy.pth": legacy.read_bytes(),
                "zip.pth": official_b0.read_bytes(), "cutzip.pth": official_b0.read_bytes()[:-100]}
    # sizes as the CLI says them everywhere (utils.file_size): '1 bytes' and download.py's own wording were not
    sizes = f"{re.escape(file_size(len(tensors) - 100))} of the {re.escape(file_size(len(tensors)))}"
    assert sizes.endswith(" kB")
    refused = {"cut.safetensors": rf"cut short \({sizes} its safetensors header gives\)",
               "header.safetensors": r"cut short \(its safetensors header is incomplete\)",
               "long.safetensors": r"not a safetensors file \(1 B after the data its header gives\)",
               "cutzip.pth": r"cut short \(its zip archive has no end\)",
               "legacy.pth": r"the server gave no length and a legacy \(non-zip\) torch checkpoint records none"}
    for name, said in refused.items():
        with pytest.raises(CheckpointError, match=rf"^{base}/nolength/{re.escape(name)}: .*{said}") as err:
            fetch(f"{base}/nolength/{name}")
        assert "\n" not in str(err.value)
        assert cached(tmp_path) == [], name
    assert fetch(f"{base}/nolength/whole.safetensors").read_bytes() == tensors
    assert fetch(f"{base}/nolength/zip.pth").read_bytes() == official_b0.read_bytes()
    digest = hashlib.sha256(legacy.read_bytes()).hexdigest()
    assert fetch(f"{base}/nolength/legacy.pth#sha256={digest}").read_bytes() == legacy.read_bytes()
    assert cached(tmp_path) == ["legacy.pth", "whole.safetensors", "zip.pth"]


def test_weights_url_that_is_missing_or_a_web_page_is_bad_input_in_one_line(
        site: tuple[Site, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A 404 and a Google Drive link (which answers with a web page, not the file) end in one line, exit 2,
    and cache nothing."""
    from cli_run import run as cli

    _, base = site
    for url, said in ((f"{base}/releases/download/v2/pvt_v2_b9.pth", "HTTP 404 Not Found"),
                      (f"{base}/drive/uc?id=1&export=download", "this URL gave a web page, not a checkpoint "
                                                                "(download it in a browser and pass the file")):
        code, _, err = cli(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-cls", "--weights", url,
                           "-o", str(tmp_path / "out"))
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and lines[-1].startswith("error: ") and said in lines[-1], err
        assert "Traceback" not in err
    assert cached(tmp_path) == [] and not (tmp_path / "out").exists()


def test_a_hash_in_the_name_or_fragment_is_checked(site: tuple[Site, str], official_b0: Path,
                                                   tmp_path: Path) -> None:
    """torch hub's name-<sha256 prefix>.pth, or a #sha256= fragment: a download that does not match is
    refused and not kept; one that matches loads."""
    from pvt_deploy.utils.files import sha256_file

    _, base = site
    digest = sha256_file(official_b0)
    with pytest.raises(CheckpointError, match=r"sha256 is [0-9a-f]{8}\.\.\., not the deadbeef its name gives"):
        create_model("pvt_v2_b0-cls", weights=f"{base}/v2/pvt_v2_b0-deadbeef.pth")
    with pytest.raises(CheckpointError, match=r"not the 0123456789abcdef its fragment gives"):
        create_model("pvt_v2_b0-cls", weights=f"{base}/v2/pvt_v2_b0.pth#sha256=0123456789abcdef")
    assert cached(tmp_path) == []
    for fragment in ("sha256=00ff", "sha256=" + "0" * 65, "md5=00ff00ff"):  # too short or long, not a sha256
        with pytest.raises(InputError, match=r"unknown fragment #.*\(#sha256= takes 8 to 64 hex digits"):
            create_model("pvt_v2_b0-cls", weights=f"{base}/v2/pvt_v2_b0.pth#{fragment}")
    model = create_model("pvt_v2_b0-cls", weights=f"{base}/v2/pvt_v2_b0-{digest[:10]}.pth")
    assert not model.random_init
    assert cached(tmp_path) == [f"pvt_v2_b0-{digest[:10]}.pth"]


def test_an_export_from_a_weights_url_can_be_extended_with_the_same_url(
        site: tuple[Site, str], tmp_path: Path) -> None:
    """``export --model exports/x --weights URL --half`` on an export made from that URL was refused as "made
    from other weights": the reuse check looked for a file named like the URL. It compares the downloaded
    file's sha256 with the manifest's, as for a file given, and the manifest names the URL."""
    from pvt_deploy.export import export
    from pvt_deploy.manifest import read_manifest

    s, base = site
    url = f"{base}/v2/pvt_v2_b0.pth"
    folder = export("pvt_v2_b0-cls", tmp_path / "x", weights=url, imgsz=32, simplify=False, parity=False)
    assert read_manifest(folder)["weights"]["url"] == url
    export(folder, weights=url, half=True, parity=False)
    assert (folder / "model.fp16.onnx").is_file() and s.hits == {"/v2/pvt_v2_b0.pth": 1}


def test_a_weights_cache_it_cannot_use_is_named_as_such(
        site: tuple[Site, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache under a HOME this user cannot enter (the Docker image run with another --user) made the cached
    file's check raise PermissionError, which export reported as "cannot write the export to <out>"; a full disk
    while downloading is the cache's too. Both are one line naming the cache and PVT_DEPLOY_CACHE."""
    import errno
    import pathlib

    from pvt_deploy.errors import InputError
    from pvt_deploy.utils import download, files

    s, base = site
    url = f"{base}/v2/pvt_v2_b0.pth"
    cache = tmp_path / "cache" / "weights"
    is_file = pathlib.Path.is_file

    def no_entry(self: pathlib.Path, *args: Any, **kwargs: Any) -> bool:
        if cache in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return is_file(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "is_file", no_entry)
        with pytest.raises(InputError) as e:
            download.fetch(url)
    assert str(e.value) == (f"cannot use the weights cache {cache}: Permission denied (set PVT_DEPLOY_CACHE to a "
                            "folder this user can write, with room)")

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "atomic_open", disk_full)
    with pytest.raises(InputError, match=f"cannot use the weights cache {cache}: No space left on device"):
        download.fetch(url)
    assert cached(tmp_path) == [] and s.hits == {}  # the URL record is written first: nothing was requested


def test_a_checkpoint_url_as_the_model_runs_and_exports_as_its_file(
        site: tuple[Site, str], official_b0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """README: ``--model`` takes a checkpoint file instead of a name. Its URL (where the official ones are)
    was "no such checkpoint file or export folder" (export) or "no such file or folder" (infer, Model): it is
    downloaded once into the cache and runs and exports as that file; the export's manifest names the URL.
    An http(s) URL that names no checkpoint (a Triton server's HTTP port) is refused in one line."""
    from cli_run import run as cli

    from pvt_deploy import Model
    from pvt_deploy.assets import sample_images
    from pvt_deploy.errors import InputError
    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.utils.files import sha256_file

    s, base = site
    photo = str(sample_images()[0])
    url = f"{base}/moved/pvt_v2_b0.pth"
    file = tmp_path / "cache" / "weights" / "pvt_v2_b0.pth"
    code, _, err = cli(monkeypatch, capsys, "infer", photo, "--model", url, "--imgsz", "64", "-o",
                       str(tmp_path / "out"))
    assert code == 0, err
    assert cached(tmp_path) == ["pvt_v2_b0.pth"] and file.read_bytes() == official_b0.read_bytes()
    with Model(url, imgsz=64) as by_url, Model(official_b0, imgsz=64) as by_file:
        assert by_url.name == "pvt_v2_b0-cls" and not by_url.random_weights
        np.testing.assert_array_equal(by_url.predict(photo)[0].probs.data, by_file.predict(photo)[0].probs.data)
    with pytest.raises(InputError, match="weights= does not apply to .*: a model file runs with its own weights"):
        Model(url, weights=official_b0)
    code, _, err = cli(monkeypatch, capsys, "export", "--model", url, "--imgsz", "32", "--no-parity", "--no-simplify", "-o",
                       str(tmp_path / "x"))
    assert code == 0, err
    weights = read_manifest(tmp_path / "x")["weights"]
    assert weights["url"] == url and weights["source"] == str(file.resolve())
    assert weights["sha256"] == sha256_file(official_b0) and not weights["random_init"]
    assert s.hits == {"/moved/pvt_v2_b0.pth": 1, "/v2/pvt_v2_b0.pth": 1}  # downloaded once, for all of these
    for command in (["infer", photo], ["export"]):
        code, _, err = cli(monkeypatch, capsys, *command, "--model", f"{base}/v2/models/pvt_small", "-o",
                           str(tmp_path / "y"))
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and "Traceback" not in err, err
        assert lines[-1].startswith("error: ") and "an http(s) URL as a model must name a checkpoint file" in err


def test_an_export_whose_downloaded_weights_left_the_cache_downloads_them_again(
        site: tuple[Site, str], official_b0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """PyTorch rebuilds an export from the checkpoint it was made from. Made from a URL, that is the download
    cache's file; once the cache was cleaned, --backend torch failed ("weights ... are not on this machine").
    It downloads the manifest's weights.url again, and refuses in one line (exit 2) what no longer has the
    manifest's sha256 (the URL now serving other weights). ``bench`` times random weights instead of
    downloading: it warned "no weights given", as if the export had none; it says which file left the cache."""
    from cli_run import run as cli

    from pvt_deploy import Model
    from pvt_deploy.assets import sample_images
    from pvt_deploy.bench import benchmark
    from pvt_deploy.export import export
    from pvt_deploy.runtimes.loader import backend_candidates

    s, base = site
    photo = str(sample_images()[0])
    url = f"{base}/v2/pvt_v2_b0.pth"
    folder = export("pvt_v2_b0-cls", tmp_path / "x", weights=url, imgsz=32, simplify=False, parity=False)
    file = tmp_path / "cache" / "weights" / "pvt_v2_b0.pth"
    file.unlink()
    torch_row = backend_candidates(folder)[0]  # info, check and bench: PyTorch can run it
    assert torch_row.available and torch_row.file == url and "downloaded again" in torch_row.reason
    assert s.hits == {"/v2/pvt_v2_b0.pth": 1}  # saying so downloads nothing
    with caplog.at_level("WARNING"):
        report = benchmark(folder, backends="torch", imgsz=32, warmup=0, iters=1)
    assert report["results"][0]["status"] == "ok" and report["results"][0]["random_weights"]
    assert s.hits == {"/v2/pvt_v2_b0.pth": 1} and not file.exists()  # timing is not worth a download
    warning = next(r.getMessage() for r in caplog.records if "RANDOMLY INITIALISED" in r.getMessage())
    assert "no weights given" not in warning, warning
    assert (f"{folder}: its weights, downloaded from {url}, are no longer in the download cache ({file.resolve()}); "
            "bench times the architecture rather than download them again") in warning, warning
    with Model(folder, backend="torch", imgsz=32) as again, Model(official_b0, imgsz=32) as by_file:
        assert not again.random_weights
        np.testing.assert_array_equal(again.predict(photo)[0].probs.data, by_file.predict(photo)[0].probs.data)
    assert s.hits == {"/v2/pvt_v2_b0.pth": 2} and file.read_bytes() == official_b0.read_bytes()
    other = tmp_path / "other.pth"
    torch.save(seeded_state_dict(create_model("pvt_v2_b0-cls"), seed=4), other)
    s.payload = other.read_bytes()  # the URL serves other weights now
    file.unlink()
    code, _, err = cli(monkeypatch, capsys, "infer", photo, "--model", str(folder), "--backend", "torch",
                       "-o", str(tmp_path / "out"))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith(f"error: {folder}: cannot rebuild the PyTorch model: {url} now serves a file "
                                "with sha256 "), err
    assert "the export was made from" in lines[-1]
    # the next run finds that download in the cache, as it would a file replaced there by hand: the file is
    # named, not the URL (which it said served the file, asking nothing of it)
    hits = dict(s.hits)
    with pytest.raises(CheckpointError, match=f"^{re.escape(f'{folder}: cannot rebuild the PyTorch model: {file} now holds weights with sha256 ')}"):
        Model(folder, backend="torch")
    assert s.hits == hits


def test_an_export_whose_cached_name_another_url_took_downloads_its_own(
        site: tuple[Site, str], official_b0: Path, tmp_path: Path) -> None:
    """The cache was cleaned, then another URL of the same file name (hubs give every model one) was
    downloaded: PyTorch on the export made from the first URL found the name's file, another model's, and
    refused the export ("now holds weights with sha256 ..."). It downloads its own URL's file instead."""
    from pvt_deploy import Model
    from pvt_deploy.assets import sample_images
    from pvt_deploy.export import export

    s, base = site
    photo = str(sample_images()[0])
    first, second = f"{base}/v2/a/model.pth", f"{base}/v2/b/model.pth"
    folder = export("pvt_v2_b0-cls", tmp_path / "x", weights=first, imgsz=32, simplify=False, parity=False)
    cache = tmp_path / "cache" / "weights"
    for p in cache.iterdir():
        p.unlink()
    s.payload = _saved(seeded_state_dict(create_model("pvt_v2_b0-cls"), seed=4), tmp_path / "other.pth")
    create_model(second)  # takes the name model.pth
    s.payload = official_b0.read_bytes()
    with Model(folder, backend="torch", imgsz=32) as again, Model(official_b0, imgsz=32) as by_file:
        np.testing.assert_array_equal(again.predict(photo)[0].probs.data, by_file.predict(photo)[0].probs.data)
    assert s.hits == {"/v2/a/model.pth": 2, "/v2/b/model.pth": 1} and len(cached(tmp_path)) == 2


@pytest.mark.parametrize("wrap", [lambda sd: sd, to_timm_names], ids=["official-v2", "timm"])
def test_a_safetensors_checkpoint_loads_as_its_torch_save_twin(
        wrap: Any, seeded: dict[str, torch.nn.Module], tmp_path: Path) -> None:
    """timm's PVT v2 weights on the Hugging Face hub are model.safetensors files; torch.load took them for a
    damaged checkpoint ("neither a PyTorch zip archive nor a pickle"). They load by their first bytes, as the
    torch.save file of the same tensors would, given as --weights or as the model; a cut file is one line."""
    from safetensors.torch import save_file

    src = seeded["pvt_v2_b0-classify"]
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in wrap(src.state_dict()).items()}, str(path))
    loaded = create_model("pvt_v2_b0", task="classify", weights=path)
    assert loaded.random_init is False
    assert_same(run(loaded), run(src))
    named = create_model(str(path))  # the architecture read from its tensors
    assert named.zoo_name == "pvt_v2_b0-cls" and named.zoo_task == "classify"
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.safetensors: corrupt or truncated safetensors checkpoint \("):
        create_model("pvt_v2_b0", task="classify", weights=cut)


def test_a_torch_save_file_named_safetensors_loads_by_its_first_bytes(
        seeded: dict[str, torch.nn.Module], tmp_path: Path) -> None:
    """torch.load takes a path ending in .safetensors for a safetensors file: a torch.save checkpoint so
    named (renamed, or a URL's name) ended in a traceback ("header too large", exit 1). A checkpoint is told
    apart by its first bytes, whatever its name, as the README says: a zip archive or an old bare pickle."""
    from pvt_deploy.models.checkpoints import read_checkpoint

    sd = seeded["pvt_v2_b0-classify"].state_dict()
    for zipped in (True, False):
        path = tmp_path / f"renamed{int(zipped)}.safetensors"
        torch.save(sd, path, _use_new_zipfile_serialization=zipped)
        read = read_checkpoint(path)
        assert read.keys() == sd.keys() and all(torch.equal(read[k], v) for k, v in sd.items())
    assert create_model(str(path)).zoo_name == "pvt_v2_b0-cls"  # the architecture read from its tensors


def test_a_safetensors_url_downloads_and_loads(seeded: dict[str, torch.nn.Module], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A download is checked to be a checkpoint by its first bytes: a safetensors file was refused as "not a
    PyTorch checkpoint"."""
    from safetensors.torch import save_file
    from test_io_sinks import served

    monkeypatch.setenv("PVT_DEPLOY_CACHE", str(tmp_path / "cache"))
    src = seeded["pvt_v2_b0-classify"]
    (tmp_path / "hub").mkdir()
    save_file(src.state_dict(), str(tmp_path / "hub" / "model.safetensors"))
    with served(tmp_path / "hub") as base:
        loaded = create_model("pvt_v2_b0", task="classify", weights=f"{base}/model.safetensors")
    assert_same(run(loaded), run(src))
    assert cached(tmp_path) == ["model.safetensors"]


def test_urls_that_share_a_file_name_are_cached_apart(site: tuple[Site, str], official_b0: Path,
                                                     tmp_path: Path) -> None:
    """The cache went by file name alone, and hubs give every model the same one (timm's on the Hugging Face
    hub are all .../resolve/main/model.safetensors): the second model's URL loaded the first one's cached
    weights, unsaid. The cache records the URL each name was downloaded from; another URL of that name is
    kept under its own (the URL's hash before the name), and each URL keeps loading its own file."""
    s, base = site
    first, second = f"{base}/v2/timm/pvt_v2_b0.a/model.pth", f"{base}/v2/timm/pvt_v2_b0.b/model.pth"
    other = seeded_state_dict(create_model("pvt_v2_b0-cls"), seed=4)
    weights = torch.load(official_b0, weights_only=True)
    key = "head.weight"
    assert torch.equal(create_model(first).state_dict()[key], weights[key])
    s.payload = _saved(other, tmp_path / "other.pth")  # the second URL serves other weights
    assert torch.equal(create_model(second).state_dict()[key], other[key])
    s.payload = b"not served again"
    assert torch.equal(create_model(first).state_dict()[key], weights[key])  # both from the cache now
    assert s.hits == {"/v2/timm/pvt_v2_b0.a/model.pth": 1, "/v2/timm/pvt_v2_b0.b/model.pth": 1}
    assert len(cached(tmp_path)) == 2 and "model.pth" in cached(tmp_path)
    # a download's record is written before its file lands, so a file without one was put there by hand (an
    # air-gapped machine): the first URL of its name takes it without the network (it was downloaded again,
    # which offline is an error), and keeps it
    cache = tmp_path / "cache" / "weights"
    for p in cache.iterdir():
        p.unlink()
    (cache / "model.pth").write_bytes((tmp_path / "other.pth").read_bytes())
    s.payload = b"not served"
    for _ in range(2):
        assert torch.equal(create_model(second).state_dict()[key], other[key])
    assert (cache / ".model.pth.url").read_text(encoding="utf-8").strip() == second
    assert s.hits["/v2/timm/pvt_v2_b0.b/model.pth"] == 1
    with pytest.raises(CheckpointError):  # the first URL is another's now: downloaded under its own name
        create_model(first)
    assert s.hits["/v2/timm/pvt_v2_b0.a/model.pth"] == 2


def test_a_failed_download_leaves_no_record_of_its_url(site: tuple[Site, str], tmp_path: Path) -> None:
    """A URL's record is written before its download; one that failed (a 404, a web page) left the record
    behind with no file, so the name stayed that URL's: a file then copied in by hand under it was not taken
    by the URL that serves it (README: the first URL of its name takes it), which downloaded it again under
    another name, an error offline. A failed download leaves nothing, record included."""
    from pvt_deploy.errors import InputError
    from pvt_deploy.utils.download import fetch

    s, base = site
    cache = tmp_path / "cache" / "weights"
    with pytest.raises(InputError):
        fetch(f"{base}/missing/model.pth")  # a typo: 404
    with pytest.raises(CheckpointError):
        fetch(f"{base}/drive/model.pth")  # a web page
    assert sorted(p.name for p in cache.iterdir()) == []
    (cache / "model.pth").write_bytes(s.payload)  # copied by hand
    s.payload = b"not served"
    assert fetch(f"{base}/v2/b0/model.pth") == cache / "model.pth"
    assert "/v2/b0/model.pth" not in s.hits


def test_a_weights_url_with_a_password_is_refused_without_showing_it(
        site: tuple[Site, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """urllib takes ``user:password@host`` for the host's name: ``--model http://user:secret@host/x.pth`` failed as
    "could not download http://user:secret@host/x.pth (Name or service not known)", the password on the
    terminal. It is one line that says why, with the password left out, exit 2."""
    from cli_run import run as cli

    s, base = site
    url = base.replace("http://", "http://user:secret@") + "/v2/pvt_v2_b0.pth"
    for args in (["infer", "--model", url], ["export", "--model", "pvt_v2_b0-cls", "--weights", url]):
        code, _, err = cli(monkeypatch, capsys, *args, "--imgsz", "32", "-o", str(tmp_path / "out"))
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2 and "secret" not in err and "Traceback" not in err, err
        assert lines[-1].startswith("error: weights URL http://***@127.0.0.1:") and lines[-1].endswith(
            "/v2/pvt_v2_b0.pth: a user name or password in the URL is not supported (download the file and pass "
            "its path)"), err
    assert s.hits == {} and cached(tmp_path) == []


def test_info_says_which_url_an_export_was_downloaded_from(
        site: tuple[Site, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The manifest records weights.url beside the cached file, but info showed only the file
    (~/.cache/pvt-deploy/weights/model.safetensors), which does not say which model's weights those are."""
    from cli_run import run as cli

    from pvt_deploy.export import export

    _, base = site
    url = f"{base}/v2/pvt_v2_b0.pth"
    folder = export("pvt_v2_b0-cls", tmp_path / "x", weights=url, imgsz=32, simplify=False, parity=False)
    monkeypatch.setenv("COLUMNS", "1000")
    code, out, err = cli(monkeypatch, capsys, "info", str(folder))
    file = tmp_path / "cache" / "weights" / "pvt_v2_b0.pth"
    assert code == 0 and f"weights: {file.resolve()} (downloaded from {url})\n" in out, out + err
    code, out, err = cli(monkeypatch, capsys, "info", str(folder), "--json")
    assert code == 0 and json.loads(out)["weights"]["url"] == url


def test_info_of_a_checkpoint_url_names_the_url(site: tuple[Site, str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """README: info takes a checkpoint file "or its http(s):// URL". It described the download cache's file
    instead, as if given that path: the URL was in none of its lines nor its JSON, and the hint to export it
    named the cache's file, where bench of the same URL names the URL. Now the URL is the artifact and
    the weights' url, the cached file their source, as info of an export made from it says."""
    from cli_run import run as cli

    _, base = site
    url = f"{base}/v2/pvt_v2_b0.pth"
    file = tmp_path / "cache" / "weights" / "pvt_v2_b0.pth"
    monkeypatch.setenv("COLUMNS", "1000")
    code, out, err = cli(monkeypatch, capsys, "info", url, "--graph")
    assert code == 0, err
    assert out.startswith(f"{url} — PyTorch checkpoint\n")
    assert f"weights: {file.resolve()} (downloaded from {url})\n" in out
    assert f"graph: no ONNX graph here (export it: pvt-deploy export --model {url})" in out, out
    code, out, err = cli(monkeypatch, capsys, "info", url, "--json")
    facts = json.loads(out)
    assert code == 0 and facts["path"] == url and facts["weights"]["url"] == url
    assert facts["weights"]["source"] == str(file.resolve()) and facts["model"] == "pvt_v2_b0-cls"


def _saved(state: dict[str, torch.Tensor], path: Path) -> bytes:
    torch.save(state, path)
    return path.read_bytes()


@pytest.mark.parametrize("url", ["ftp://example.org/pvt_v2_b0.pth", "s3://bucket/pvt_v2_b0.pth",
                                 "hf://timm/pvt_v2_b0.in1k/model.safetensors"])
def test_a_weights_url_of_another_scheme_is_named_as_such(url: str) -> None:
    """``--weights ftp://...`` said "does not exist", as if a file of that name were missing; only http(s)
    URLs are downloaded, and the refusal says so."""
    from pvt_deploy.errors import InputError

    with pytest.raises(InputError) as e:
        create_model("pvt_v2_b0-cls", weights=url)
    assert str(e.value) == f"weights {url}: only http(s):// URLs are downloaded (download it yourself and pass the file)"


# --weights official: the zoo entry's official checkpoint, by its URL
# --------------------------------------------------------------------------------------------------


def test_weights_official_downloads_the_entrys_url_once_and_loads_as_the_file(
        site: tuple[Site, str], official_b0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A user who knows the model's name had to hunt for its checkpoint's URL (``--weights official`` was read
    as a file named "official": "does not exist"). It is the zoo entry's official URL, downloaded once through
    the weights cache and loaded as that file: by the CLI, by ``Model``, and by ``export_onnx``, whose manifest
    names the URL."""
    from cli_run import run as cli

    from pvt_deploy import Model
    from pvt_deploy.assets import sample_images
    from pvt_deploy.errors import InputError
    from pvt_deploy.export import export
    from pvt_deploy.export.onnx import export_onnx
    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.models import zoo

    s, base = site
    url = f"{base}/moved/pvt_v2_b0.pth"  # as github.com/.../releases/download/... redirects
    monkeypatch.setitem(zoo.OFFICIAL_WEIGHTS, "pvt_v2_b0", url)
    photo = str(sample_images()[0])
    code, _, err = cli(monkeypatch, capsys, "infer", photo, "--model", "pvt_v2_b0-cls", "--weights", "official",
                       "--imgsz", "64", "--save-json", "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert s.hits == {"/moved/pvt_v2_b0.pth": 1, "/v2/pvt_v2_b0.pth": 1}
    assert cached(tmp_path) == ["pvt_v2_b0.pth"]
    with Model("pvt_v2_b0-cls", weights="official", imgsz=64) as official, \
            Model("pvt_v2_b0-cls", weights=official_b0, imgsz=64) as by_file:
        assert not official.random_weights
        np.testing.assert_array_equal(official.predict(photo)[0].probs.data, by_file.predict(photo)[0].probs.data)
    folder = export_onnx("pvt_v2_b0-cls", tmp_path / "x", weights="official", imgsz=32, simplify=False, parity=False)
    assert read_manifest(folder)["weights"]["url"] == url
    with pytest.raises(InputError) as e:  # an export folder has its weights: 'official' names a zoo model's
        export(folder, weights="official", half=True, parity=False)
    assert str(e.value) == (f"weights='official': the official weights are a zoo model's; the model {folder} is not a zoo name "
                            "(pass the checkpoint file or its URL)")
    assert s.hits == {"/moved/pvt_v2_b0.pth": 1, "/v2/pvt_v2_b0.pth": 1}  # the later loads: the cached file
    # a detector built on that backbone loads the same file as its backbone (neck and head random, reported)
    detector = create_model("pvt_v2_b0", weights="official")
    report = detector.load_report
    assert report.loaded and report.random and not [k for k in report.random if k.startswith("backbone.")]


def test_weights_official_without_a_direct_download_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An entry whose official weights are no direct download (a Google Drive link), and a model that is no
    zoo name, are refused in one line, exit 2, saying where the official weights are listed and to pass the
    file; nothing is downloaded."""
    from cli_run import run as cli

    from pvt_deploy.models import zoo

    monkeypatch.setenv("PVT_DEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delitem(zoo.OFFICIAL_WEIGHTS, "pvt_v2_b0")
    code, _, err = cli(monkeypatch, capsys, "infer", "--model", "pvt_v2_b0", "--weights", "official")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: pvt_v2_b0: its official weights are no direct download; they are linked from "
        "https://github.com/whai362/PVT (detection/README.md) (download the file and pass it as the weights)"]
    code, _, err = cli(monkeypatch, capsys, "export", "--model", "pvt_v2_b0-seg", "--weights", "official",
                       "-o", str(tmp_path / "x"))
    assert code == 2 and "(segmentation/README.md)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and cached(tmp_path) == []


def test_weights_with_a_checkpoint_as_the_model_are_refused(seeded: dict[str, torch.nn.Module], tmp_path: Path) -> None:
    """``create_model("a.pth", weights=other)`` loaded a.pth and dropped ``weights`` without a word (Model and
    the CLI refuse the pair already): it is refused, naming the model file."""
    from pvt_deploy.errors import InputError

    path = tmp_path / "a.pth"
    torch.save(seeded["pvt_v2_b0-classify"].state_dict(), path)
    with pytest.raises(InputError) as e:
        create_model(str(path), weights=tmp_path / "other.pth")
    assert str(e.value) == f"weights does not apply to {path}: a model file runs with its own weights"
    assert create_model(str(path)).random_init is False


def test_bench_on_a_checkpoint_url_names_the_url(site: tuple[Site, str]) -> None:
    """``bench --model URL``: the onnx row's hint said "export --model ~/.cache/pvt-deploy/weights/x.pth", a path
    whose export would not record where the weights came from, and the report named the cache's file."""
    from pvt_deploy.bench import benchmark

    s, base = site
    url = f"{base}/v2/pvt_v2_b0.pth"
    report = benchmark(url, backends="torch,onnx", imgsz=32, warmup=0, iters=1)
    torch_row, onnx_row = report["results"]
    assert report["model"] == url and torch_row["status"] == "ok" and onnx_row["status"] == "skipped"
    assert f"pvt-deploy export --model {url}" in onnx_row["reason"], onnx_row
    assert s.hits == {"/v2/pvt_v2_b0.pth": 1}
