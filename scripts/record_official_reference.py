"""Record reference outputs of the OFFICIAL PVT code for tests/test_official_reference.py.

Usage (needs a checkout of https://github.com/whai362/PVT; nothing of it is copied here):

    python scripts/record_official_reference.py --pvt-repo /path/to/PVT

The official files import timm, mmdet and mmcv only for small helpers (DropPath, to_2tuple, the
registry decorators, checkpoint loading); minimal stand-ins are installed in ``sys.modules`` so the
official model definitions themselves run unmodified. Weights are
``pvt_deploy.models.synthetic.seeded_state_dict`` of the matching classifier (official key layout),
so the test can regenerate them bit for bit. For every (model, input size) the script stores a
fixed strided sample of 512 values per output plus the output's shape and sums.
"""

from __future__ import annotations

import argparse
import collections.abc
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

CASES = {
    # name: (sizes for the detection backbone, sizes for the classifier)
    "pvt_tiny": ([(224, 224), (256, 320), (480, 640), (800, 1216)], [(224, 224), (256, 320)]),
    "pvt_v2_b0": ([(224, 224), (256, 320), (480, 640), (800, 1216)], [(224, 224), (320, 256)]),
    "pvt_v2_b2_li": ([(224, 224), (352, 288), (800, 1216)], [(224, 224), (288, 352)]),
}
SEED = 1234
SAMPLES = 512


def sample(t: torch.Tensor) -> np.ndarray:
    flat = t.detach().reshape(-1).double().numpy()
    idx = np.linspace(0, flat.size - 1, SAMPLES).round().astype(np.int64)
    return flat[idx]


def input_for(name: str, hw: tuple[int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(7 + hw[0] * 10007 + hw[1])
    return torch.randn(1, 3, *hw, generator=g)


def install_stand_ins() -> None:
    def mod(name: str) -> types.ModuleType:
        m = types.ModuleType(name)
        sys.modules[name] = m
        return m

    for n in ["timm", "timm.models", "timm.models.layers", "timm.models.registry", "timm.models.vision_transformer",
              "mmdet", "mmdet.models", "mmdet.models.builder", "mmdet.utils", "mmcv", "mmcv.runner"]:
        mod(n)

    class DropPath(nn.Identity):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__()

    class Registry:
        def register_module(self, *a: object, **k: object):  # noqa: ANN201
            return lambda c: c

    layers = sys.modules["timm.models.layers"]
    layers.DropPath = DropPath  # type: ignore[attr-defined]
    layers.to_2tuple = lambda x: x if isinstance(x, collections.abc.Iterable) else (x, x)  # type: ignore[attr-defined]
    layers.trunc_normal_ = nn.init.trunc_normal_  # type: ignore[attr-defined]
    sys.modules["timm.models.registry"].register_model = lambda f: f  # type: ignore[attr-defined]
    sys.modules["timm.models.vision_transformer"]._cfg = lambda *a, **k: {}  # type: ignore[attr-defined]
    sys.modules["mmdet.models.builder"].BACKBONES = Registry()  # type: ignore[attr-defined]
    sys.modules["mmdet.utils"].get_root_logger = lambda: None  # type: ignore[attr-defined]
    sys.modules["mmcv.runner"].load_checkpoint = lambda *a, **k: None  # type: ignore[attr-defined]


def load_module(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pvt-repo", type=Path, required=True, help="checkout of whai362/PVT")
    ap.add_argument("-o", "--out", type=Path, default=Path(__file__).parents[1] / "tests/data/official_reference.npz")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from pvt_deploy.models import create_model
    from pvt_deploy.models.synthetic import seeded_state_dict

    install_stand_ins()
    repo = args.pvt_repo
    off = {
        ("cls", 1): load_module(repo / "classification/pvt.py", "official_cls_pvt"),
        ("cls", 2): load_module(repo / "classification/pvt_v2.py", "official_cls_pvt_v2"),
        ("det", 1): load_module(repo / "detection/pvt.py", "official_det_pvt"),
        ("det", 2): load_module(repo / "detection/pvt_v2.py", "official_det_pvt_v2"),
    }
    store: dict[str, np.ndarray] = {}
    for name, (det_sizes, cls_sizes) in CASES.items():
        v = 2 if name.startswith("pvt_v2") else 1
        sd = seeded_state_dict(create_model(name, task="classify"), SEED)
        cls_model = getattr(off[("cls", v)], name)().eval()
        cls_model.load_state_dict(sd)
        det_model = getattr(off[("det", v)], name)(pretrained=None).eval()
        det_model.load_state_dict({k: t for k, t in sd.items()
                                   if not (k in ("cls_token", "norm.weight", "norm.bias") or k.startswith("head."))})
        with torch.no_grad():
            for hw in det_sizes:
                outs = det_model(input_for(name, hw))
                for i, o in enumerate(outs):
                    key = f"{name}/features/{hw[0]}x{hw[1]}/{i}"
                    store[key] = sample(o)
                    store[key + "/shape"] = np.array(o.shape)
                    store[key + "/sum"] = np.array([o.double().sum().item(), o.double().abs().sum().item()])
                print("recorded", name, "features", hw)
            for hw in cls_sizes:
                o = cls_model(input_for(name, hw))
                key = f"{name}/classify/{hw[0]}x{hw[1]}/0"
                store[key] = sample(o)
                store[key + "/shape"] = np.array(o.shape)
                store[key + "/sum"] = np.array([o.double().sum().item(), o.double().abs().sum().item()])
                print("recorded", name, "classify", hw)
    store["meta/seed"] = np.array(SEED)
    store["meta/torch"] = np.array(torch.__version__)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **store)
    print("wrote", args.out, f"({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
