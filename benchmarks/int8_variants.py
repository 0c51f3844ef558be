"""Which INT8 graph runs fastest on this CPU at acceptable agreement? Measures every flavour side by side.

    python benchmarks/int8_variants.py                          # pvt_v2_b0 detector, 640x640
    python benchmarks/int8_variants.py --model pvt_small --rounds 8
    python benchmarks/int8_variants.py --model pvt_v2_b0-cls --imgsz 224 --batch 8

Flavours (all calibrated with MinMax on the bundled photos, preprocessed as at inference; U8
activations, S8 per-channel weights):

* ``export``        — what ``export_onnx(int8=True)`` writes as ``model.int8.onnx`` (the CPU flavour of
                      ``pvt_deploy.export.precision``: static on MatMuls and Conv chains, see
                      ``cpu_int8_plan``), and the ablations of its choices:
* ``no-amx``        — the export without the load-time rewrite that CPUs with
                      AMX get (``optimize.amx_conv_weights``: conv weights re-based so ``QLinearConv``
                      runs on the AMX GEMM; bit-identical outputs). On other CPUs it equals ``export``;
* ``no-layout``     — the same on the pre-processed export instead of its CPU INT8 layout (attention
                      and GELU unfused, float depthwise convs between NCHWc reorders); the other
                      ablations below start from the layout;
* ``no-window``     — the same, score logits quantized over their calibrated min/max instead of the
                      score window (``retina_cls`` still runs as ``QLinearConv``);
* ``7bit``          — the same with 7-bit weights (``reduce_range``, the usual advice for x86 without VNNI,
                      where the backend instead re-bases 8-bit weights to uint8: exact);
* ``+patch-convs``  — the same, plus every other Conv (patch embeddings, spatial reduction, laterals);
* ``mm-rounded``    — the same, MatMul outputs quantized too (``QLinearMatMul`` instead of
                      ``MatMulIntegerToFloat``);
* ``qdq``           — onnxruntime's plain static QDQ on every Conv/MatMul/Gemm, outputs quantized;
* ``dynamic``       — weights-only INT8 on MatMul/Gemm, activations quantized per call, on the export's
                      CPU INT8 layout (patch/SR convs as MatMuls, channels-last depthwise convs,
                      attention as plain operators, fused GELU: ``optimize.int8_cpu_layout``), depthwise
                      convs and v2's overlapping patch convs static INT8 — the classifiers' export flavour;
* ``float-depthwise`` — the same with v2's depthwise and overlapping patch convs left float (calibrated
                      static INT8 in ``dynamic``, which ONNX Runtime runs channels-last without reorders);
* ``dynamic-plain`` — ``float-depthwise`` on the graph as exported (patch/SR convs stay float convs);
* ``head-7bit``     — detectors: the RetinaNet head's stacked 3x3 convs only, 7-bit weights (what the
                      export shipped before, on a CPU without VNNI).

Each is run in ONNX Runtime with the session settings the backend uses, interleaved with the FP32
graph, and compared with FP32 PyTorch on twelve real pictures (detection F1 at IoU 0.5 / top-1, and
cosine). Prints a table and writes ``--json``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

FLAVOURS = ("export", "no-amx", "no-layout", "no-window", "7bit", "+patch-convs", "mm-rounded", "qdq", "dynamic",
            "float-depthwise", "dynamic-plain", "head-7bit")


def build_flavour(flavour: str, folder: Path, prepared: Path, out: Path, batches: list[Any]) -> dict[str, Any]:
    """Write the ``flavour`` INT8 graph of ``folder/model.onnx`` to ``out``; return its settings."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, quantize_dynamic, quantize_static

    from pvt_deploy.export.calibration import calibration_reader
    from pvt_deploy.export.precision import (
        cpu_int8_plan,
        int8_settings,
        quantize_int8,
        score_window_overrides,
        unquantize_other_inputs,
        write_cpu_layout,
    )

    t0 = time.perf_counter()
    if flavour == "export":
        import shutil

        shutil.copyfile(folder / "model.int8.onnx", out)
        return {"source": "export_onnx(int8=True, int8_flavour='cpu')"}
    if flavour == "no-amx":  # this CPU's other load-time rewrites applied here, the session then adds none
        from pvt_deploy.export.optimize import optimize_for_ort
        from pvt_deploy.runtimes.ort_session import default_rewrites

        others = [r for r in default_rewrites() if r != "amx_conv_weights"]
        onnx.save_model(optimize_for_ort(onnx.load(str(folder / "model.int8.onnx")), others)[0], str(out))
        return {"source": "export_onnx(int8=True, int8_flavour='cpu')", "load_time_rewrites": others}
    if flavour in ("dynamic", "float-depthwise"):
        # the dynamic graph is returned as the quantizer wrote it to ``out``: nothing to save again
        _, record = quantize_int8(prepared, out, flavour="cpu", batches=batches if flavour == "dynamic" else [],
                                  method="dynamic", source=folder / "model.onnx")
        return {"ops": ["MatMul", "Gemm"], "dynamic": True, "layout": record["layout"],
                "static_depthwise": record.get("static_depthwise", {}).get("convs", 0),
                "static_patch_convs": record.get("static_patch_convs", {}).get("convs", 0),
                "build_s": round(time.perf_counter() - t0, 1)}
    if flavour == "dynamic-plain":
        quantize_dynamic(str(prepared), str(out), **int8_settings("cpu", "dynamic")["kwargs"])
        return {"ops": ["MatMul", "Gemm"], "dynamic": True, "build_s": round(time.perf_counter() - t0, 1)}
    kwargs = int8_settings("cpu", "static")["kwargs"]
    if flavour != "no-layout":  # the ablations of the export's static choices start from its layout
        prepared, _ = write_cpu_layout(folder / "model.onnx", out.with_suffix(".layout.onnx"), method="static")
    plan = cpu_int8_plan(prepared)
    nodes, scores, restore = plan.nodes, plan.scores, True
    window = score_window_overrides(scores)
    if flavour == "no-window":
        window = {}
    elif flavour == "7bit":
        kwargs["reduce_range"] = True
    elif flavour == "+patch-convs":
        graph = onnx.load(str(prepared), load_external_data=False).graph
        nodes = nodes + [n.name for n in graph.node if n.op_type == "Conv" and n.name not in nodes]
    elif flavour == "no-layout":
        pass
    elif flavour == "mm-rounded":
        kwargs["extra_options"] = {"MatMulConstBOnly": True}
    elif flavour == "qdq":
        kwargs["extra_options"], nodes, window, restore = {"MatMulConstBOnly": True}, None, {}, False
    elif flavour == "head-7bit":
        graph = onnx.load(str(prepared), load_external_data=False).graph
        nodes = [n.name for n in graph.node if n.op_type == "Conv" and "/bbox_head/" in n.name and "_convs." in n.name]
        if not nodes:
            raise ValueError("no RetinaNet head convs in this graph (the head flavour is for detectors)")
        kwargs["reduce_range"], kwargs["extra_options"], window, restore = True, {"MatMulConstBOnly": True}, {}, False
    else:
        raise ValueError(f"unknown flavour {flavour!r}")
    kwargs["extra_options"] = {**kwargs["extra_options"], "TensorQuantOverrides": window}
    quantize_static(str(prepared), str(out), calibration_reader(batches), nodes_to_quantize=nodes,
                    calibrate_method=CalibrationMethod.MinMax, **kwargs)
    if restore:
        model = onnx.load(str(out))
        unquantize_other_inputs(model, nodes, keep=scores)  # score logits stay INT8, window or not
        onnx.save_model(model, str(out))
    return {"nodes": len(nodes) if nodes else "all", "reduce_range": kwargs["reduce_range"],
            "score_window": bool(window), "build_s": round(time.perf_counter() - t0, 1)}


def ort_runner(path: Path, threads: int | None, *,
               rewrite: bool | None = None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The backend's CPU session for ``path`` (``rewrite=False``: the file as written, no load-time
    rewrite)."""
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path, device="cpu", threads=threads, precision="int8", rewrite=rewrite)
    return backend.infer


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    common.add_model_options(ap, model="pvt_v2_b0", batch=1)
    ap.add_argument("--rounds", type=common.int_at_least(1), default=10)
    ap.add_argument("--flavours", default=",".join(FLAVOURS), help=f"comma-separated subset of {', '.join(FLAVOURS)}")
    ap.add_argument("--threads", type=common.int_at_least(1), default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    flavours = common.parse_choices(ap, "--flavours", args.flavours, FLAVOURS)
    common.check_output_file(ap, "--json", args.json)
    entry, size = common.model_and_size(ap, args)

    from pvt_deploy.export.calibration import make_batches
    from pvt_deploy.export.precision import prepare_for_quantization
    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend
    from pvt_deploy.tasks.pipeline import Predictor
    from pvt_deploy.tasks.preprocess import Preprocessor

    info = common.machine()
    print(common.header_lines(info))
    # export and no-amx copy the export's own model.int8.onnx
    folder = common.artifact(args.model, args.work, imgsz=size, int8=bool({"export", "no-amx"} & set(flavours)))
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
        for flavour in flavours:
            path = tmp / f"{flavour}.onnx"
            try:
                settings = build_flavour(flavour, folder, prepared, path, batches)
                run = ort_runner(path, args.threads, rewrite=False if flavour == "no-amx" else None)
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
    sys.exit(common.run(main))
