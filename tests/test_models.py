"""Model zoo: architectures, parameter counts, output shapes, and the exact b2_li pooling."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from pvt_deploy.errors import ModelNotFoundError
from pvt_deploy.models import build_deploy_module, count_parameters, create_model, resolve_name
from pvt_deploy.models.layers import adaptive_avg_pool2d, adaptive_avg_pool2d_matmul
from pvt_deploy.models.zoo import BACKBONES, build_model, parameter_count, zoo_entries

# Published parameter counts (millions) of the official ImageNet classifiers.
CLASSIFIER_PARAMS_M = {
    "pvt_tiny": 13.23, "pvt_small": 24.49, "pvt_medium": 44.21, "pvt_large": 61.37,
    "pvt_v2_b0": 3.67, "pvt_v2_b1": 14.01, "pvt_v2_b2": 25.36, "pvt_v2_b2_li": 22.55,
    "pvt_v2_b3": 45.24, "pvt_v2_b4": 62.56, "pvt_v2_b5": 81.96,
}
# RetinaNet / Semantic FPN totals reported by the PVT papers (millions, one decimal).
DETECTOR_PARAMS_M = {"pvt_tiny": 23.0, "pvt_small": 34.2, "pvt_medium": 53.9, "pvt_large": 71.1}
SEGMENTER_PARAMS_M = {"pvt_tiny": 17.0, "pvt_small": 28.2, "pvt_medium": 48.0, "pvt_large": 65.1}


@pytest.mark.parametrize("name", sorted(CLASSIFIER_PARAMS_M))
def test_classifier_parameter_counts(name: str) -> None:
    assert round(parameter_count(resolve_name(name, "classify")) / 1e6, 2) == CLASSIFIER_PARAMS_M[name]


@pytest.mark.parametrize("name", sorted(DETECTOR_PARAMS_M))
def test_detector_and_segmenter_parameter_counts(name: str) -> None:
    assert round(parameter_count(resolve_name(name, "detect")) / 1e6, 1) == DETECTOR_PARAMS_M[name]
    assert round(parameter_count(resolve_name(name, "segment")) / 1e6, 1) == SEGMENTER_PARAMS_M[name]


def test_parameters_counted_without_weights_are_the_built_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pvt-deploy models`` counts on the meta device and skips the weights' initialisation there (which
    took 5 s for the zoo, through torch's reference implementations and an import of torch._dynamo): the
    counts and shapes are those of the models built for real, and no random initialisation is run."""
    for name, task in (("pvt_v2_b0", "detect"), ("pvt_v2_b0", "segment"), ("pvt_tiny", "classify")):
        entry = resolve_name(name, task)
        built = build_model(entry)
        assert parameter_count(entry) == count_parameters(built), (name, task)
        with torch.device("meta"):
            shapes = [(n, p.shape) for n, p in build_model(entry).named_parameters()]
        assert shapes == [(n, p.shape) for n, p in built.named_parameters()]
    from torch.utils._python_dispatch import TorchDispatchMode

    class Writes(TorchDispatchMode):  # the in-place operators that reach a tensor
        def __init__(self) -> None:
            super().__init__()
            self.seen: set[str] = set()

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func._schema.name.endswith("_"):
                self.seen.add(func._schema.name)
            return func(*args, **(kwargs or {}))

    with Writes() as skipped:
        assert sum(parameter_count(e) for e in zoo_entries()) > 0
    with Writes() as plain, torch.device("meta"):
        build_model(resolve_name("pvt_v2_b0", "detect"))  # what it sees where nothing is skipped
    assert skipped.seen == set() and {"aten::normal_", "aten::uniform_"} <= plain.seen, (skipped.seen, plain.seen)


def test_zoo_names_resolve() -> None:
    assert resolve_name("pvt_small").task == "detect"
    assert resolve_name("pvt_small-seg").task == "segment"
    assert resolve_name("pvt_small-cls").task == "classify"
    assert resolve_name("pvt_v2_b2_li", "segment").name == "pvt_v2_b2_li-seg"
    assert len(resolve_name("pvt_v2_b0").classes) == 80
    assert len(resolve_name("pvt_v2_b0-seg").classes) == 150
    assert len(resolve_name("pvt_v2_b0-cls").classes) == 1000
    with pytest.raises(ModelNotFoundError, match="unknown model 'pvt_huge'"):
        resolve_name("pvt_huge")
    with pytest.raises(ModelNotFoundError, match="is a segment model"):
        resolve_name("pvt_small-seg", "classify")


def test_a_mistyped_name_lists_its_whole_family() -> None:
    """``pvt_smal`` said "known backbones: pvt_small", as if PVT v1 had no other size: the list was the
    names sharing the typo's first six characters. It is the family the name is of (v1 or v2)."""
    with pytest.raises(ModelNotFoundError) as e:
        resolve_name("pvt_smal")
    assert "did you mean 'pvt_small'? known backbones: pvt_tiny, pvt_small, pvt_medium, pvt_large (" in str(e.value)
    with pytest.raises(ModelNotFoundError) as e:
        resolve_name("pvt_v2_b9-cls")
    assert "known backbones: pvt_v2_b0, pvt_v2_b1, pvt_v2_b2, pvt_v2_b2_li, pvt_v2_b3, pvt_v2_b4, pvt_v2_b5 (" \
        in str(e.value)


def test_every_backbone_is_registered() -> None:
    assert set(BACKBONES) == set(CLASSIFIER_PARAMS_M)


@pytest.fixture(scope="module", params=["pvt_tiny", "pvt_v2_b0", "pvt_v2_b2_li"])
def graphs(request: pytest.FixtureRequest) -> tuple[str, dict[str, nn.Module]]:
    """The four task graphs of one backbone, built once (weight init dominates test time)."""
    name = request.param
    model = create_model(name)  # detector; segmenter/features share its backbone weights' shapes
    return name, {
        "detect": build_deploy_module(model),
        "segment": build_deploy_module(create_model(name, task="segment")),
        "classify": build_deploy_module(create_model(name, task="classify")),
        "features": build_deploy_module(model.backbone, task="features"),
    }


@pytest.mark.parametrize("hw", [(224, 224), (160, 288), (320, 96)])
def test_output_shapes_every_task(graphs: tuple[str, dict[str, nn.Module]], hw: tuple[int, int]) -> None:
    name, g = graphs
    h, w = hw
    x = torch.rand(2, 3, h, w) * 255
    with torch.no_grad():
        det, seg, cls, feats = (g[t](x) for t in ("detect", "segment", "classify", "features"))
    levels = [(h // s) * (w // s) * 9 for s in (8, 16, 32)] + [-(-h // s) * -(-w // s) * 9 for s in (64, 128)]
    k = sum(min(1000, n) for n in levels)
    assert det[0].shape == (2, k, 4) and det[1].shape == (2, k, 80)
    assert seg[0].shape == (2, 150, h // 4, w // 4)
    assert cls[0].shape == (2, 1000)
    dims = BACKBONES[name].embed_dims
    assert [tuple(f.shape) for f in feats] == [(2, dims[i], h // s, w // s) for i, s in enumerate((4, 8, 16, 32))]
    # Boxes are clipped to the input and scores are probabilities.
    assert float(det[0][..., 0::2].max()) <= w and float(det[0][..., 1::2].max()) <= h
    assert float(det[0].min()) >= 0 and float(det[1].min()) >= 0 and float(det[1].max()) <= 1


def test_segmentation_argmax_output_matches_logits() -> None:
    model = create_model("pvt_v2_b0", task="segment")
    x = torch.rand(1, 3, 128, 160) * 255
    with torch.no_grad():
        (logits,) = build_deploy_module(model)(x)
        (mask,) = build_deploy_module(model, seg_output="argmax")(x)
    full = torch.nn.functional.interpolate(logits, size=(128, 160), mode="bilinear", align_corners=False)
    assert mask.dtype == torch.int32 and mask.shape == (1, 128, 160)
    assert torch.equal(mask, full.argmax(1).to(torch.int32))


def test_seeded_models_built_at_once_in_threads_are_their_seeds_models() -> None:
    """A server loading its models in threads (``Model("pvt_v2_b0-cls")`` without weights is seeded,
    so that it matches its export): each build reseeded and drew from torch's one global generator,
    so two at once, or one beside an unseeded build, took each other's draws and got other weights."""
    import threading

    specs = [("pvt_v2_b0-cls", 5), ("pvt_v2_b0-seg", 6), ("pvt_v2_b0-cls", None)]
    alone = [create_model(name, seed=seed).state_dict() for name, seed in specs[:2]]
    for _ in range(2):
        built: dict[int, dict[str, torch.Tensor]] = {}
        start = threading.Barrier(len(specs), timeout=60)

        def build(i: int, start: threading.Barrier, built: dict[int, dict[str, torch.Tensor]]) -> None:
            start.wait()
            built[i] = create_model(specs[i][0], seed=specs[i][1]).state_dict()

        threads = [threading.Thread(target=build, args=(i, start, built)) for i in range(len(specs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for i, reference in enumerate(alone):
            assert all(torch.equal(built[i][k], v) for k, v in reference.items()), specs[i]


def test_block_forward_first_is_row_zero_of_forward() -> None:
    """What the exported v1 classifier computes for its last block: row 0 of the full forward."""
    from pvt_deploy.models.layers import Block

    torch.manual_seed(0)
    x = torch.randn(2, 50, 64)
    for sr in (1, 2):  # stage-4 attention (sr 1) and a reduced one (7x7 grid without the cls row)
        blk = Block(64, 2, 4, sr, v2=False).eval()
        with torch.no_grad():
            tokens = x if sr == 1 else x[:, 1:]
            full = blk(tokens, 7, 7)
            first = blk.forward_first(tokens, 7, 7)
        assert first.shape == (2, 1, 64)
        torch.testing.assert_close(first, full[:, :1], rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="token-wise"):
        Block(64, 2, 4, 1, v2=True).forward_first(x, 7, 7)


SIZES = [(1, 1), (1, 9), (3, 5), (6, 6), (7, 7), (8, 8), (13, 29), (14, 14), (25, 38), (56, 56), (100, 152)]


@pytest.mark.parametrize("hw", SIZES)
def test_b2_li_pooling_equals_adaptive_avg_pool(hw: tuple[int, int]) -> None:
    x = torch.randn(2, 16, *hw)
    ref = nn.AdaptiveAvgPool2d(7)(x)
    torch.testing.assert_close(adaptive_avg_pool2d_matmul(x, 7), ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(adaptive_avg_pool2d(x, 7), ref)  # eager path is PyTorch's own kernel


def test_b2_li_pooling_exports_exactly_at_every_size(tmp_path) -> None:
    """One ONNX graph, exported at one size, pools correctly at sizes it never saw."""

    class Pool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return adaptive_avg_pool2d(x, 7)

    path = tmp_path / "pool.onnx"
    torch.onnx.export(Pool(), (torch.randn(1, 8, 16, 16),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in SIZES:
        x = np.random.default_rng(h * 100 + w).standard_normal((2, 8, h, w)).astype(np.float32)
        (y,) = sess.run(None, {"x": x})
        ref = nn.AdaptiveAvgPool2d(7)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6, err_msg=f"{h}x{w}")


def test_random_init_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        model = create_model("pvt_v2_b0")
    assert model.random_init is True
    assert "RANDOMLY INITIALISED" in caplog.text


@pytest.mark.parametrize(("name", "hw", "batch"), [
    ("pvt_v2_b0-cls", (100, 70), 2),  # v2's overlapping patches round up
    ("pvt_tiny-cls", (96, 130), 1),  # v1's stage 4 attends with its cls token
    ("pvt_v2_b2_li-features", (97, 64), 1),  # linear SRA: 7x7 keys at every size
    ("pvt_v2_b0-seg", (131, 99), 1),
])
def test_peak_bytes_counts_the_attention_the_forward_pass_makes(name: str, hw: tuple[int, int], batch: int) -> None:
    """The memory estimate the PyTorch backend refuses a size by: its largest attention-score matrix is
    the one a forward pass makes (queries and reduced keys read off a hook), at odd sizes too."""
    from pvt_deploy.models.layers import SpatialReductionAttention

    module = build_deploy_module(create_model(name, seed=0))
    seen: list[int] = []

    def hook(attn: SpatialReductionAttention, args: tuple, out: torch.Tensor) -> None:
        x, h, w = args[:3]
        seen.append(x.shape[0] * attn.num_heads * x.shape[1] * attn._reduce(x, h, w).shape[1])

    for m in module.modules():
        if isinstance(m, SpatialReductionAttention):
            m.register_forward_hook(hook)
    with torch.inference_mode():
        module(torch.rand(batch, 3, *hw) * 255)
    assert module.peak_bytes(batch, *hw) == 2 * 4 * max(seen)  # scores and softmax, float32


def test_peak_bytes_at_5000_is_the_allocation_pytorch_failed_on() -> None:
    """pvt_v2_b0-cls at 5000x5000 failed with 'you tried to allocate 152100000000 bytes': one score matrix."""
    with torch.device("meta"):
        module = build_deploy_module(build_model(resolve_name("pvt_v2_b0-cls")), "classify")
    assert module.peak_bytes(1, 5000, 5000) == 2 * 152100000000
    assert module.peak_bytes(3, 5000, 5000) == 3 * module.peak_bytes(1, 5000, 5000)


# --- RetinaNet anchors and box coder against mmdet's numbers (no test compared them before: a wrong
# ratio, octave scale, shift order or decode moved every box identically in PyTorch and ONNX Runtime) ---

def test_retinanet_base_anchors_are_mmdets() -> None:
    """mmdet's AnchorGenerator(octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1, 2], center_offset=0):
    stride 8's first anchor is the one its own tests list, [-22.6274, -11.3137, 22.6274, 11.3137]; the rest
    follow w = stride * scale / sqrt(ratio), h = stride * scale * sqrt(ratio), ratio-major."""
    from pvt_deploy.models.retinanet import base_anchors

    got = base_anchors(8).double().numpy()
    assert got.shape == (9, 4)
    np.testing.assert_allclose(got[0], [-22.6274, -11.3137, 22.6274, 11.3137], atol=1e-4)
    expect = []
    for ratio in (0.5, 1.0, 2.0):
        for octave in (0, 1, 2):
            scale = 4 * 2 ** (octave / 3)
            w, h = 16 * scale / np.sqrt(ratio), 16 * scale * np.sqrt(ratio)
            expect.append([-w / 2, -h / 2, w / 2, h / 2])
    np.testing.assert_allclose(base_anchors(16).double().numpy(), expect, rtol=1e-5)


def test_retinanet_grid_anchors_shift_x_along_width_row_major() -> None:
    from pvt_deploy.models.retinanet import base_anchors, grid_anchors

    base = base_anchors(8)
    got = grid_anchors(base, 2, 3, 8).numpy()  # h=2, w=3: (y * 3 + x) * 9 + anchor
    assert got.shape == (2 * 3 * 9, 4)
    for y in range(2):
        for x in range(3):
            np.testing.assert_allclose(got[(y * 3 + x) * 9:(y * 3 + x + 1) * 9],
                                       base.numpy() + np.array([8 * x, 8 * y, 8 * x, 8 * y]), rtol=0, atol=1e-5)


def _delta2bbox(anchors: np.ndarray, deltas: np.ndarray, h: float, w: float) -> np.ndarray:
    """mmdet 2.x delta2bbox (means 0, stds 1, wh_ratio_clip 16/1000, max_shape (h, w)) in numpy."""
    clip = abs(np.log(16 / 1000))
    px, py = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    dx, dy = deltas[:, 0], deltas[:, 1]
    dw, dh = np.clip(deltas[:, 2], -clip, clip), np.clip(deltas[:, 3], -clip, clip)
    gx, gy, gw, gh = px + pw * dx, py + ph * dy, pw * np.exp(dw), ph * np.exp(dh)
    return np.stack([np.clip(gx - gw / 2, 0, w), np.clip(gy - gh / 2, 0, h),
                     np.clip(gx + gw / 2, 0, w), np.clip(gy + gh / 2, 0, h)], axis=1)


def test_retinanet_decode_is_mmdets_delta2bbox() -> None:
    from pvt_deploy.models.retinanet import decode_deltas

    anchors = np.array([[10, 20, 50, 40], [30, 5, 40, 65], [0, 0, 8, 8], [60, 30, 90, 50]], np.float64)
    deltas = np.array([[0.1, -0.2, 0.3, -0.1],  # inside the picture
                       [-0.3, 0.25, -0.5, 0.4],
                       [0.0, 0.0, 9.0, -9.0],  # dw/dh clamped at |log(16/1000)|
                       [0.5, 0.1, 0.7, 0.2]], np.float64)  # past the right edge: clipped to the width
    h, w = 70, 100  # not square: clipping x to the height or y to the width shows
    got = decode_deltas(torch.from_numpy(anchors), torch.from_numpy(deltas), h, w).numpy()
    np.testing.assert_allclose(got, _delta2bbox(anchors, deltas, h, w), rtol=1e-6, atol=1e-6)
    assert got[3, 2] == w  # the clip is exercised


def test_retinanet_scores_and_boxes_come_from_the_same_anchor() -> None:
    """The head's (A*C, H, W) and (A*4, H, W) maps flatten to (H, W, A) rows: a single confident logit at
    (anchor a, class c, y, x) is the row whose box is anchor a at (x, y), decoded with its deltas."""
    from pvt_deploy.models.retinanet import NUM_ANCHORS, STRIDES, base_anchors, decode_detections

    num_classes, h, w, a, c, y, x = 3, 2, 4, 5, 2, 1, 2  # (y, x) is another row if x were major
    cls = [torch.full((1, NUM_ANCHORS * num_classes, -(-h // (s // 8)), -(-w // (s // 8))), -10.0) for s in STRIDES]
    reg = [torch.zeros(1, NUM_ANCHORS * 4, *t.shape[2:]) for t in cls]
    cls[0][0, a * num_classes + c, y, x] = 5.0
    reg[0][0, a * 4:a * 4 + 4, y, x] = torch.tensor([0.1, -0.2, 0.3, 0.05])
    boxes, scores = decode_detections(cls, reg, 8 * h * 4, 8 * w * 4)
    best = int(scores[0].max(dim=-1).values.argmax())
    assert int(scores[0, best].argmax()) == c
    assert float(scores[0, best, c]) == pytest.approx(1 / (1 + np.exp(-5.0)), rel=1e-6)
    anchor = base_anchors(8)[a].double().numpy() + np.array([8 * x, 8 * y, 8 * x, 8 * y])
    expect = _delta2bbox(anchor[None], np.array([[0.1, -0.2, 0.3, 0.05]]), 8 * h * 4, 8 * w * 4)[0]
    np.testing.assert_allclose(boxes[0, best].double().numpy(), expect, rtol=1e-5, atol=1e-4)
