"""Which INT8 graph runs fastest on this CPU at acceptable agreement? Measures every flavour side by side.

    python benchmarks/int8_variants.py                          # pvt_v2_b0 detector, 640x640
    python benchmarks/int8_variants.py --model pvt_small --rounds 8
    python benchmarks/int8_variants.py --model pvt_v2_b0-cls --imgsz 224 --batch 8

Flavours (all calibrated with MinMax on the bundled photos, preprocessed as at inference; U8
activations, S8 per-channel weights unless said otherwise):

* ``export``       — what ``export_onnx(int8=True)`` writes today as ``model.int8.onnx``
                     (``pvt_deploy.export.precision``, CPU flavour);
* ``qdq``          — onnxruntime's standard static QDQ on Conv/MatMul/Gemm, outputs quantized too, so
                     ONNX Runtime fuses Conv(+ReLU) into ``QLinearConv`` and chains of them stay INT8;
* ``qdq-rr``       — the same with 7-bit weights (``reduce_range``), the AVX2 (no VNNI) safe choice;
* ``qdq-conv``     — static QDQ on Conv only (transformer MatMuls stay FP32);
* ``dynamic``      — weights-only INT8 on MatMul/Gemm, activations quantized per call (no calibration);
* ``mixed``        — static QDQ on Conv + dynamic INT8 on MatMul/Gemm;
* ``head``         — detectors: static QDQ (7-bit weights) on the RetinaNet head's stacked 3x3 convs
                     only — most of a detector's FLOPs, and the layers whose rounding the detections
                     tolerate best; backbone, FPN and the two output convs stay FP32.
* ``head-all``     — every RetinaNet head conv, the two output convs included (so the last tower
                     conv's output stays INT8 too); ``head-all-8bit`` the same with full 8-bit weights
                     (safe on VNNI CPUs); ``head-all+dyn`` adds dynamic INT8 on the backbone's MatMuls.
* ``conv-keep-cls`` — static QDQ (7-bit weights) on every Conv except the classification output
                     conv (``retina_cls``, whose logits are the scores); ``mixed-keep-cls`` adds
                     dynamic INT8 on the MatMuls.

Each is run in ONNX Runtime with the session settings the backend uses, interleaved with the FP32
graph, and compared with FP32 PyTorch on twelve real pictures (detection F1 at IoU 0.5 / top-1, and
cosine). Prints a table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from pvt_deploy.export.precision import head_conv_nodes  # noqa: E402

FLAVOURS = ("export", "qdq", "qdq-rr", "qdq-conv", "dynamic", "mixed", "head", "head-all", "head-all-8bit",
            "head-all+dyn", "mixed-keep-cls", "conv-keep-cls")


def _convs_where(keep: Callable[[str], bool]) -> Callable[[Path], list[str]]:
    def pick(path: Path) -> list[str]:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        return [n.name for n in graph.node if n.op_type == "Conv" and keep(n.name)]

    return pick


# Static QDQ on a selection of Conv nodes: (which nodes, 7-bit weights, then dynamic INT8 on MatMuls).
NODE_FLAVOURS: dict[str, tuple[Callable[[Path], list[str]], bool, bool]] = {
    "head": (head_conv_nodes, True, False),
    "head-all": (_convs_where(lambda name: "/bbox_head/" in name), True, False),
    "head-all-8bit": (_convs_where(lambda name: "/bbox_head/" in name), False, False),
    "head-all+dyn": (_convs_where(lambda name: "/bbox_head/" in name), True, True),
    "conv-keep-cls": (_convs_where(lambda name: "/retina_cls" not in name), True, False),
    "mixed-keep-cls": (_convs_where(lambda name: "/retina_cls" not in name), True, True),
}


def build_flavour(flavour: str, folder: Path, prepared: Path, out: Path, batches: list[Any]) -> dict[str, Any]:
    """Write the ``flavour`` INT8 graph of ``folder/model.onnx`` to ``out``; return its settings."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from pvt_deploy.export.calibration import calibration_reader

    def static(ops: list[str], dst: Path, *, reduce_range: bool, nodes: list[str] | None = None) -> None:
        quantize_static(str(prepared), str(dst), calibration_reader(batches), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=True, reduce_range=reduce_range, nodes_to_quantize=nodes,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options={"MatMulConstBOnly": True})

    def dynamic_matmuls(src: Path, dst: Path) -> None:
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                         extra_options={"MatMulConstBOnly": True})

    t0 = time.perf_counter()
    if flavour == "export":
        import shutil

        shutil.copyfile(folder / "model.int8.onnx", out)
        settings: dict[str, Any] = {"source": "export_onnx(int8=True, int8_flavour='cpu')"}
    elif flavour in ("qdq", "qdq-rr"):
        static(["Conv", "MatMul", "Gemm"], out, reduce_range=flavour == "qdq-rr")
        settings = {"ops": ["Conv", "MatMul", "Gemm"], "reduce_range": flavour == "qdq-rr"}
    elif flavour == "qdq-conv":
        static(["Conv"], out, reduce_range=True)
        settings = {"ops": ["Conv"], "reduce_range": True}
    elif flavour == "dynamic":
        dynamic_matmuls(prepared, out)
        settings = {"ops": ["MatMul", "Gemm"], "dynamic": True}
    elif flavour == "mixed":
        mid = out.with_suffix(".conv.onnx")
        static(["Conv"], mid, reduce_range=True)
        dynamic_matmuls(mid, out)
        settings = {"static": ["Conv"], "dynamic": ["MatMul", "Gemm"], "reduce_range": True}
    elif flavour in NODE_FLAVOURS:
        pick, reduce_range, then_dynamic = NODE_FLAVOURS[flavour]
        nodes = pick(prepared)
        if not nodes:
            raise ValueError(f"no convs for the {flavour} flavour in this graph (the head flavours are for detectors)")
        dst = out.with_suffix(".static.onnx") if then_dynamic else out
        static(["Conv"], dst, reduce_range=reduce_range, nodes=nodes)
        settings = {"ops": ["Conv"], "nodes": len(nodes), "reduce_range": reduce_range}
        if then_dynamic:
            dynamic_matmuls(dst, out)
            settings["dynamic"] = ["MatMul", "Gemm"]
    else:
        raise ValueError(f"unknown flavour {flavour!r}")
    settings["build_s"] = round(time.perf_counter() - t0, 1)
    return settings


def ort_runner(path: Path, threads: int | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path, device="cpu", threads=threads, precision="int8")
    return backend.infer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", default="pvt_v2_b0")
    ap.add_argument("--imgsz", type=int, default=None, help="default: 640 detectors, 224 classifiers")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--flavours", default=",".join(FLAVOURS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", type=Path, default=common.DEFAULT_WORK)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from pvt_deploy.export.calibration import make_batches
    from pvt_deploy.export.precision import prepare_for_quantization
    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.models import resolve_name
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
    from pvt_deploy.tasks.pipeline import Predictor
    from pvt_deploy.tasks.preprocess import Preprocessor

    entry = resolve_name(args.model)
    size = args.imgsz or entry.imgsz[0]
    info = common.machine()
    print(common.header_lines(info))
    folder = common.artifact(args.model, args.work, imgsz=size, int8="export" in args.flavours)
    manifest = read_manifest(folder)
    task, post = manifest["task"], manifest.get("postprocess") or {}
    torch_backend, _ = load_backend(folder, backend="torch", device="cpu", threads=args.threads)
    fp32 = OnnxRuntimeBackend(folder / "model.onnx", device="cpu", threads=args.threads)
    predictor = Predictor(fp32, manifest, imgsz=(size, size))
    photos = common.eval_photos()
    ref, metas = common.run_per_image(torch_backend.infer, predictor, photos)
    fp32_outs, _ = common.run_per_image(fp32.infer, predictor, photos)
    pre = Preprocessor(manifest["preprocess"], dynamic=bool(manifest.get("dynamic")),
                       dynamic_range=manifest.get("dynamic"))
    from pvt_deploy.assets import sample_images

    batches = make_batches(sample_images(), pre)
    rows: dict[str, dict[str, Any]] = {"fp32": {"agreement": common.agreement(task, post, ref, fp32_outs, metas)}}
    runners: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"fp32": fp32.infer}
    with tempfile.TemporaryDirectory(prefix="pvt-int8-") as tmp_dir:
        tmp = Path(tmp_dir)
        prepared = tmp / "prepared.onnx"
        prepare_for_quantization(folder / "model.onnx", prepared)
        for flavour in [f.strip() for f in args.flavours.split(",") if f.strip()]:
            path = tmp / f"{flavour}.onnx"
            try:
                settings = build_flavour(flavour, folder, prepared, path, batches)
                run = ort_runner(path, args.threads)
            except Exception as e:  # noqa: BLE001 - one flavour failing must not hide the others
                rows[flavour] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}
                print(f"{flavour}: {rows[flavour]['error']}")
                continue
            outs, _ = common.run_per_image(run, predictor, photos)
            rows[flavour] = {"settings": settings, "bytes": path.stat().st_size,
                             "agreement": common.agreement(task, post, ref, outs, metas),
                             "agreement_vs_ort_fp32": common.agreement(task, post, fp32_outs, outs, metas)}
            runners[flavour] = run
        feed, _ = common.bench_input(predictor, args.batch)
        load_before = common.load_average()
        timings = common.interleaved({k: (lambda r=r: r(feed)) for k, r in runners.items()}
                                     | {"torch": lambda: torch_backend.infer(feed)}, rounds=args.rounds)
    base = common.median_s(timings["torch"])
    ort32 = common.median_s(timings["fp32"])
    table = []
    for name, t in timings.items():
        row = rows.setdefault(name, {})
        row["latency"] = t.summary(args.batch)
        row["vs_torch"] = round(base / common.median_s(t), 3)
        row["vs_ort_fp32"] = round(ort32 / common.median_s(t), 3)
        s = row["latency"]
        table.append([name, f"{s['median_ms']:.1f}", f"{s['p90_ms']:.1f}", f"{row['vs_torch']:.2f}x",
                      f"{row['vs_ort_fp32']:.2f}x", common.agreement_text(row.get("agreement")),
                      common.agreement_text(row.get("agreement_vs_ort_fp32"))])
    print(f"\n{args.model} {size}x{size} batch {args.batch}: {args.rounds} interleaved rounds, "
          f"load {load_before} -> {common.load_average()}")
    common.print_table(table, ["variant", "median ms", "p90 ms", "vs torch", "vs ORT fp32",
                               "agreement vs torch fp32", "vs ORT fp32"])
    if args.json:
        common.write_json(args.json, {"machine": info, "model": args.model, "imgsz": size, "batch": args.batch,
                                      "rounds": args.rounds, "variants": rows,
                                      "load_average": [load_before, common.load_average()]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
