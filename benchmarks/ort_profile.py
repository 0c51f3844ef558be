"""Where does ONNX Runtime spend a PVT graph's time? Per-operator totals from ORT's own profiler.

    python benchmarks/ort_profile.py                                     # pvt_small classifier, batch 8
    python benchmarks/ort_profile.py --model pvt_v2_b0 --imgsz 640 --batch 1
    python benchmarks/ort_profile.py --model pvt_small --file model.int8.onnx

Loads the graph exactly as the CPU backend does (``OnnxRuntimeBackend``: level-ALL optimisations and
the exact CPU rewrites for FP32 files), runs it ``--runs`` times on a real photo with ORT's profiler
on, and prints milliseconds per run and share of the total for each operator type. For MatMul/Gemm
nodes it also adds up the multiply-adds from the profiled input shapes and prints the achieved
GFLOP/s — the figure that tells whether a GEMM-bound graph has anything left to gain.

``--roof`` first measures the reference rates on the same cores: PyTorch's SGEMM on a 4096³ product
and on the stage-1 MLP product of ``pvt_small`` (3136·batch × 64 × 512), and one RetinaNet head conv
(256 → 256 channels, 3x3, 80x80, FP32) in PyTorch and in ONNX Runtime, then ONNX Runtime's FP32
and 8-bit GEMMs on that conv's im2col product: on x86 without VNNI the 8-bit rate is about the
FP32 one and int8 weights (U8S8) saturate, which is why INT8 gains little there.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

GEMM_OPS = ("MatMul", "Gemm", "FusedMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul")


def gemm_flops(args: dict[str, Any]) -> float:
    """2*M*N*K of a MatMul-like node from its profiled shapes: output [..., M, N], first input [..., M, K]
    (stored weights are not listed among the profiled inputs, but the output shape holds N)."""
    ins, outs = args.get("input_type_shape") or [], args.get("output_type_shape") or []
    if not ins or not outs:
        return 0.0
    a, y = next(iter(ins[0].values())), next(iter(outs[0].values()))
    return 2.0 * math.prod(y) * a[-1] if a and y else 0.0


def roof(threads: int, batch: int) -> None:
    """Reference FP32 rates on these cores (GFLOP/s): what a GEMM/conv-bound graph can hope for."""
    import numpy as np
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from pvt_deploy.utils import onnx_model

    torch.set_num_threads(threads)
    rows = []
    with torch.inference_mode():
        for m, k, n in ((4096, 4096, 4096), (3136 * batch, 64, 512)):
            a, b = torch.randn(m, k), torch.randn(k, n)
            t = common.median_call(lambda a=a, b=b: a @ b, 7, warmup=2)
            rows.append([f"PyTorch SGEMM {m}x{k}x{n}", f"{2 * m * k * n / t / 1e9:.0f}"])
        x, w, bias = torch.randn(1, 256, 80, 80), torch.randn(256, 256, 3, 3), torch.randn(256)
        flops = 2.0 * 80 * 80 * 256 * 256 * 9
        t = common.median_call(lambda: torch.nn.functional.conv2d(x, w, bias, padding=1), 7, warmup=2)
        rows.append(["PyTorch conv 3x3 256->256 80x80", f"{flops / t / 1e9:.0f}"])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 80, 80])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w.numpy(), "w"), numpy_helper.from_array(bias.numpy(), "b")])
    session = common.ort_cpu_session(onnx_model(graph),
                                     threads=threads)
    feed = {"x": np.ascontiguousarray(x.numpy())}
    t = common.median_call(lambda: session.run(None, feed), 7, warmup=2)
    rows.append(["ONNX Runtime conv 3x3 256->256 80x80", f"{flops / t / 1e9:.0f}"])
    rows += _int8_gemm_rates(threads)
    print(f"\nreference rates, {threads} threads (INT8: GOP/s, and the largest error against exact integers)")
    common.print_table(rows, ["kernel", "GFLOP/s or GOP/s"])


def _int8_gemm_rates(threads: int) -> list[list[str]]:
    """ONNX Runtime's FP32 MatMul and its 8-bit ``MatMulInteger`` (uint8 activations, int8 or uint8
    weights) on the im2col product of one head conv (6400 x 2304 x 256). Without VNNI the 8-bit
    rate is about the FP32 one, and int8 weights (U8S8) saturate 16-bit pair sums: that row shows a
    large error, the U8U8 row none."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from pvt_deploy.utils import onnx_model

    m, k, n = 6400, 2304, 256
    rng = np.random.default_rng(0)
    a = rng.integers(200, 256, (m, k), dtype=np.uint8)  # a ReLU-like activation range, near the top
    rows = []
    for label, w in (("FP32 MatMul", None), ("MatMulInteger U8S8", rng.integers(100, 128, (k, n), dtype=np.int8)),
                     ("MatMulInteger U8U8", rng.integers(228, 256, (k, n), dtype=np.uint8))):
        if w is None:
            weight = rng.standard_normal((k, n)).astype(np.float32)
            node, feed = helper.make_node("MatMul", ["a", "w"], ["y"]), a.astype(np.float32)
            dtype, out = TensorProto.FLOAT, TensorProto.FLOAT
        else:
            weight = w
            node, feed = helper.make_node("MatMulInteger", ["a", "w"], ["y"]), a
            dtype, out = TensorProto.UINT8, TensorProto.INT32
        graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", dtype, [m, k])],
                                  [helper.make_tensor_value_info("y", out, None)],
                                  [numpy_helper.from_array(weight, "w")])
        session = common.ort_cpu_session(onnx_model(graph),
                                         threads=threads)
        t = common.median_call(lambda s=session, f=feed: s.run(None, {"a": f}), 7, warmup=2)
        rate = f"{2.0 * m * k * n / t / 1e9:.0f}"
        if w is not None:
            exact = a.astype(np.int64) @ w.astype(np.int64)
            error = int(np.abs(session.run(None, {"a": feed})[0].astype(np.int64) - exact).max())
            rate += f" (max error {error})"
        rows.append([f"ONNX Runtime {label} {m}x{k}x{n}", rate])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    common.add_model_options(ap, model="pvt_small-cls", batch=8)
    ap.add_argument("--file", default="model.onnx", choices=common.GRAPH_FILES,
                    help="graph of the export to profile (the benchmark's cached export is extended with it)")
    ap.add_argument("--runs", type=common.int_at_least(1), default=10)
    ap.add_argument("--threads", type=common.int_at_least(1), default=None)
    ap.add_argument("--top", type=common.int_at_least(1), default=12, help="operator types to list")
    ap.add_argument("--roof", action="store_true", help="also measure reference SGEMM/conv rates first")
    args = ap.parse_args(argv)
    _, size = common.model_and_size(ap, args)

    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
    from pvt_deploy.runtimes.ort_session import optimized_graph
    from pvt_deploy.tasks.pipeline import Predictor

    info = common.machine()
    print(common.header_lines(info))
    path, manifest = common.artifact_graph(args.model, args.work, args.file, imgsz=size)
    spec = OnnxRuntimeBackend(path, device="cpu", threads=args.threads)
    feed, _ = common.bench_input(Predictor(spec, manifest, imgsz=(size, size)), args.batch)
    threads = int(spec.info.details["intra_op_threads"])
    spec.close()
    if args.roof:
        roof(threads, args.batch)
    warmup = 3
    # ORT writes its profile when profiling ends (or the session is destroyed): in a folder of its own,
    # removed however the run ends (Ctrl-C and SIGTERM included, see common.run).
    with tempfile.TemporaryDirectory(prefix="pvt-ort-profile-") as tmp_dir:
        session = common.ort_cpu_session(optimized_graph(path).path, threads=threads,
                                         profile_prefix=str(Path(tmp_dir) / "profile"))
        try:
            for _ in range(warmup + args.runs):
                session.run(None, feed)
        finally:
            profile = Path(session.end_profiling())
        events: list[dict[str, Any]] = json.loads(profile.read_text(encoding="utf-8"))
    runs_ = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    start = runs_[warmup - 1]["ts"] + runs_[warmup - 1]["dur"]  # node events of the warm-up runs are dropped
    events = [e for e in events if e.get("ts", 0) >= start]
    per_op: Counter[str] = Counter()
    count: Counter[str] = Counter()
    flops = 0.0
    gemm_us = 0.0
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        op = e["args"].get("op_name", "?")
        per_op[op] += e["dur"]
        count[op] += 1
        if op in GEMM_OPS:
            flops += gemm_flops(e["args"])
            gemm_us += e["dur"]
    total = sum(per_op.values())
    runs = args.runs
    print(f"\n{args.model} {args.file} {args.batch}x3x{size}x{size}, {runs} profiled runs, "
          f"{threads} threads: {total / runs / 1000:.1f} ms of operator time per run")
    rows = [[op, f"{us / runs / 1000:.2f}", f"{100 * us / total:.1f}%", str(count[op] // runs)]
            for op, us in per_op.most_common(args.top)]
    common.print_table(rows, ["operator", "ms/run", "share", "nodes"])
    if gemm_us:
        print(f"\nMatMul-like nodes: {flops / runs / 1e9:.2f} GFLOP per run in {gemm_us / runs / 1000:.1f} ms "
              f"= {flops / (gemm_us * 1e3):.0f} GFLOP/s ({100 * gemm_us / total:.0f}% of operator time)")
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
