"""One 3x3 convolution, direct vs Winograd F(4x4, 3x3), in ONNX Runtime on the CPU.

    python benchmarks/winograd.py
    python benchmarks/winograd.py --channels 256:256,256:720 --sizes 80,40

For each (input, output) channel pair and square map size, builds a one-conv graph (bias + ReLU, as
in a RetinaNet head), rewrites it with ``pvt_deploy.export.optimize.winograd_convs`` with the
thresholds switched off, and times both sessions interleaved (``common.interleaved``). Prints the
median milliseconds, the ratio, the largest difference relative to the output's magnitude, and
whether the CPU backend would rewrite that conv (``WINOGRAD_MIN_CHANNELS``/``WINOGRAD_MIN_TILES``):
the table these thresholds were chosen from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def conv_model(cin: int, cout: int, size: int, seed: int = 0) -> Any:
    """images (N, cin, H, W) -> Conv 3x3 pad 1 (+bias) -> ReLU, nominal input size ``size``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from pvt_deploy.export.graph import set_metadata
    from pvt_deploy.utils import onnx_model

    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((cout, cin, 3, 3)) * (2.0 / (9 * cin)) ** 0.5).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", cin, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", cout, "height", "width"])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = onnx_model(graph)
    set_metadata(model, "pvt_deploy", {"preprocess": {"imgsz": [size, size]}})
    return model


def parse_channels(ap: argparse.ArgumentParser, text: str) -> list[tuple[int, int]]:
    """``--channels``: comma-separated ``in:out`` pairs of positive integers, repeats dropped."""
    return list(dict.fromkeys(common.parse_int_pairs(ap, "--channels", text, sep=":", form="in:out",
                                                     examples="256:256,256:720", what="channels")))


def parse_sizes(ap: argparse.ArgumentParser, text: str) -> list[int]:
    """``--sizes``: comma-separated square map sizes (positive integers)."""
    sizes = []
    for t in (t.strip() for t in text.split(",")):
        if not t:
            continue
        try:
            sizes.append(common.int_at_least(1)(t))
        except argparse.ArgumentTypeError as e:
            ap.error(f"--sizes {t!r}: {e}")
    if not sizes:
        ap.error("--sizes: empty; give map sizes, e.g. 80,40")
    return list(dict.fromkeys(sizes))


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    ap.add_argument("--channels", default="256:256,256:720,256:36,512:256,128:128,64:64",
                    help="comma-separated in:out channel pairs")
    ap.add_argument("--sizes", default="80,40,20,10,5", help="comma-separated square map sizes")
    ap.add_argument("--rounds", type=common.int_at_least(1), default=15)
    ap.add_argument("--threads", type=common.int_at_least(1), default=None, help="default: physical cores")
    args = ap.parse_args(argv)
    pairs = parse_channels(ap, args.channels)
    sizes = parse_sizes(ap, args.sizes)

    import numpy as np
    import onnx

    from pvt_deploy.export.optimize import WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_TILES, winograd_convs
    from pvt_deploy.runtimes.torch import physical_cores

    threads = args.threads or physical_cores()
    print(common.header_lines(common.machine()))

    rows = []
    for cin, cout in pairs:
        for size in sizes:
            direct = conv_model(cin, cout, size)
            wino = onnx.ModelProto.FromString(direct.SerializeToString())
            winograd_convs(wino, min_channels=0, min_tiles=0)
            default = winograd_convs(onnx.ModelProto.FromString(direct.SerializeToString())) > 0
            a, b = common.ort_cpu_session(direct, threads=threads), common.ort_cpu_session(wino, threads=threads)
            feed = {"images": np.random.default_rng(1).standard_normal((1, cin, size, size)).astype(np.float32)}
            ya, yb = a.run(None, feed)[0], b.run(None, feed)[0]
            err = float(np.abs(ya - yb).max() / max(float(np.abs(ya).max()), 1e-12))
            t = common.interleaved({name: lambda s=s, feed=feed: s.run(None, feed) for name, s in (("direct", a), ("winograd", b))},
                                   rounds=args.rounds, gap_s=0.0)
            td, tw = common.median_s(t["direct"]), common.median_s(t["winograd"])
            rows.append([f"{cin}->{cout}", f"{size}x{size}", f"{td * 1e3:.2f}", f"{tw * 1e3:.2f}", f"{td / tw:.2f}x",
                         f"{err:.1e}", "yes" if default else "no"])
    print(f"\n3x3 conv + bias + ReLU, batch 1, {threads} threads, {args.rounds} interleaved rounds "
          f"(rewritten by default: channels >= {WINOGRAD_MIN_CHANNELS} and >= {WINOGRAD_MIN_TILES} tiles)")
    common.print_table(rows, ["channels", "map", "direct ms", "winograd ms", "speed-up", "max err", "default"])
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run(main))
