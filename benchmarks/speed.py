"""PyTorch eager vs ONNX Runtime (FP32, INT8) vs CUDA/TensorRT, side by side, with agreement.

    python benchmarks/speed.py --quick                 # ~2 min: pvt_v2_b0 detector + classifier
    python benchmarks/speed.py                         # full suite (< 15 min on 2 cores)
    python benchmarks/speed.py --device cuda --json gpu.json

For every (model, input size, batch) case the variants run *interleaved* in one process (see
``common.interleaved``), so the ratios compare like with like even on a shared machine. Each line
prints the median and p90 latency of the inference call, images/s, the ratio to PyTorch eager FP32
latency, and the agreement of that variant with PyTorch FP32 on real photos (detection F1 at IoU 0.5
on final detections, or top-1/top-5 agreement; cosine of the outputs).

How each figure is made. Latency: one ``infer`` call on the case's batch of real photos (the same
preprocessed array for every variant, host arrays in and out), timed after ``--warmup`` untimed calls
of each variant; median and p90 over the rounds (``--rounds``; at least 3 when ``--budget`` runs out).
img/s: batch / median. "vs torch": PyTorch's median / the variant's, both of the same interleaved run.
Agreement (once per model, one picture per call, ``--images``): detection F1 as the export's parity gate
counts it (final detections matched one-to-one, same class, IoU >= 0.5, greedily by reference score; a
detection within 0.02 of the score threshold or of the top-100 cut may flip, so it need not match;
"F1 no dets" where nothing was left to compare); top1: the fraction of pictures with the same best
class (near-ties, within 0.02 probability, are counted beside it); top5: the mean overlap of the two
top-5 sets; cos: the lowest cosine of an output over all the pictures (a classifier's logits; a
detector's best class score of each candidate, sorted, without its boxes).

Variants. CPU: ``torch`` (eager FP32, ``inference_mode``, threads = physical cores — the
reference), ``onnx`` (ONNX Runtime FP32 as the backend loads it: level-ALL optimisations plus the
exact CPU rewrites of ``pvt_deploy.export.optimize``), ``onnx-plain`` (the exported graph without
those rewrites), ``onnx-int8`` (the export's CPU INT8 graph, ``model.int8.onnx``). Asked for by name
(``--variants``), what your own ONNX Runtime code gets from the export: ``onnx-session`` (a plain
``onnxruntime.InferenceSession`` with default options on ``model.onnx``) and ``onnx-session-cpu`` (the same
on the CPU graph, ``pvt_deploy.runtimes.ort_session.optimized_graph``). GPU
(``--device cuda``, or ``auto`` with a GPU): ``torch-cuda`` (FP32), ``torch-cuda-fp16`` (autocast),
``onnx-cuda`` (onnxruntime-gpu's CUDA provider, ``model.onnx``), ``onnx-cuda-fp16`` (the same on
``model.fp16.onnx``), ``trt-fp16`` (a TensorRT engine built from ``model.fp16.onnx``). A variant that
cannot run here is printed as ``skipped`` with the reason. With GPU variants a second ratio, to
``torch-cuda`` (PyTorch eager FP32 on the same GPU), is printed beside the ratio to the CPU reference.

Models use seeded synthetic weights (see ``common``); the numbers are about speed and numerical
agreement, not accuracy.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

if TYPE_CHECKING:
    from pvt_deploy.runtimes.base import Backend

FULL: list[tuple[str, int, tuple[int, ...]]] = [("pvt_v2_b0", 640, (1, 2)), ("pvt_small", 640, (1, 2)), ("pvt_v2_b0-cls", 224, (1, 8)),
        ("pvt_small-cls", 224, (1, 8))]
QUICK: list[tuple[str, int, tuple[int, ...]]] = [("pvt_v2_b0", 640, (1,)), ("pvt_v2_b0-cls", 224, (1, 8))]
CPU_VARIANTS = ("torch", "onnx", "onnx-plain", "onnx-int8")
OWN_VARIANTS = ("onnx-session", "onnx-session-cpu")  # only when named in --variants
GPU_VARIANTS = ("torch-cuda", "torch-cuda-fp16", "onnx-cuda", "onnx-cuda-fp16", "trt-fp16")


@dataclass
class Variant:
    name: str
    infer: Callable[[dict[str, Any]], dict[str, Any]] | None
    close: Callable[[], None]
    details: dict[str, Any]
    reason: str = ""


def _skip(name: str, reason: str) -> Variant:
    return Variant(name, None, lambda: None, {}, reason)


def load_variant(name: str, folder: Path, threads: int | None) -> Variant:
    """One runnable variant of the artifact in ``folder`` (or a skipped one with the reason)."""
    from pvt_deploy.errors import PvtDeployError
    from pvt_deploy.runtimes.loader import load_backend
    from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

    try:
        if name == "torch":
            backend, _ = load_backend(folder, backend="torch", device="cpu", threads=threads)
        elif name == "onnx":
            backend = OnnxRuntimeBackend(folder / "model.onnx", device="cpu", threads=threads, precision="fp32")
        elif name == "onnx-plain":
            backend = OnnxRuntimeBackend(folder / "model.onnx", device="cpu", threads=threads, precision="fp32",
                                         rewrite=False)
        elif name in OWN_VARIANTS:
            return _own_session(name, folder, threads)
        elif name == "onnx-int8":
            if not (folder / "model.int8.onnx").is_file():
                return _skip(name, "no model.int8.onnx")
            backend = OnnxRuntimeBackend(folder / "model.int8.onnx", device="cpu", threads=threads, precision="int8")
        elif name in ("torch-cuda", "torch-cuda-fp16"):
            ok, why = common.cuda_available()
            if not ok:
                return _skip(name, why)
            backend, _ = load_backend(folder, backend="torch", device="cuda",
                                      precision="fp16" if name.endswith("fp16") else "fp32")
        elif name in ("onnx-cuda", "onnx-cuda-fp16"):
            half = name.endswith("fp16")
            file = folder / ("model.fp16.onnx" if half else "model.onnx")
            if not file.is_file():
                return _skip(name, f"no {file.name}")
            backend = OnnxRuntimeBackend(file, device="cuda", precision="fp16" if half else "fp32")
        elif name == "trt-fp16":
            from pvt_deploy.export.tensorrt import build_engine, require_tensorrt

            require_tensorrt()
            if not (folder / "model.engine").is_file():
                build_engine(folder, precision="fp16")
            backend, _ = load_backend(folder, backend="trt")
        else:
            return _skip(name, "unknown variant")
    except PvtDeployError as e:
        return _skip(name, str(e).split("\n")[0])
    except Exception as e:  # noqa: BLE001 - one variant failing must not end the suite
        return _skip(name, f"{type(e).__name__}: {' '.join(str(e).split())[:160]}")
    details = {"device": backend.info.device, "precision": backend.info.precision,
               **{k: v for k, v in backend.info.details.items() if k in ("graph_rewrites", "threads",
                                                                        "intra_op_threads", "spin", "gpu")}}
    return Variant(name, backend.infer, backend.close, details)


def _own_session(name: str, folder: Path, threads: int | None) -> Variant:
    """A plain ONNX Runtime session, as a user's own code makes one: default session options (``threads``
    when given), no shards, no pinning; ``onnx-session-cpu`` loads the CPU graph the backend would."""
    import onnxruntime as ort

    from pvt_deploy.runtimes.ort_session import optimized_graph

    graph = folder / "model.onnx"
    if name == "onnx-session-cpu":
        graph = optimized_graph(graph).path
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]

    def infer(feed: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(outputs, session.run(outputs, feed), strict=True))

    details: dict[str, Any] = {"device": "cpu", "precision": "fp32", "graph": graph.name, "session": "onnxruntime defaults"}
    if threads:  # the one option set (--threads): recorded, as the backend variants record theirs
        details.update(session=f"onnxruntime defaults, intra_op_num_threads {threads}", intra_op_threads=threads)
    return Variant(name, infer, lambda: None, details)


def run_case(model: str, size: int, batches: tuple[int, ...], variants: list[str],
             args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """All batches of one model: agreement once per variant, then interleaved timing per batch;
    yields each batch's figures as soon as they are measured (an interrupted suite keeps them)."""
    t0 = time.perf_counter()
    folder = common.artifact(model, args.work, imgsz=size, int8="onnx-int8" in variants,
                             half=bool({"trt-fp16", "onnx-cuda-fp16"} & set(variants)))
    export_s = time.perf_counter() - t0
    loaded: dict[str, Variant] = {}
    try:
        for name in dict.fromkeys(["torch", *variants]):
            loaded[name] = load_variant(name, folder, args.threads)
        yield from _measure(model, size, batches, variants, args, folder, export_s, loaded)
    finally:
        for v in loaded.values():
            v.close()


def _measure(model: str, size: int, batches: tuple[int, ...], variants: list[str], args: argparse.Namespace,
             folder: Path, export_s: float, loaded: dict[str, Variant]) -> Iterator[dict[str, Any]]:
    from pvt_deploy.manifest import read_manifest
    from pvt_deploy.tasks.pipeline import Predictor

    manifest = read_manifest(folder)
    task, post = manifest["task"], manifest.get("postprocess") or {}
    torch_variant = loaded.get("torch")
    if torch_variant is None or torch_variant.infer is None:
        raise SystemExit(f"{model}: the PyTorch reference cannot run: {torch_variant.reason if torch_variant else ''}")
    predictor = Predictor(cast("Backend", _Spec(manifest)), manifest, imgsz=(size, size))
    photos = common.eval_photos()[: args.images]
    ref, metas = common.run_per_image(torch_variant.infer, predictor, photos)
    agreements: dict[str, Any] = {}
    for name, v in loaded.items():
        if v.infer is not None and name != "torch":
            outs, _ = common.run_per_image(v.infer, predictor, photos)
            agreements[name] = common.agreement(task, post, ref, outs, metas)
    photo_arrays = [im for _, im in common.bundled_photos()]
    for batch in batches:
        images = [photo_arrays[i % len(photo_arrays)] for i in range(batch)]
        feed, records = predictor.preprocess(images)
        pre_s = common.median_call(partial(predictor.preprocess, images))
        runnable = {k: v for k, v in loaded.items() if v.infer is not None}
        load_before = common.load_average()
        with common.others_cpu() as others:
            timings = common.interleaved({k: partial(v.infer, feed) for k, v in runnable.items() if v.infer},
                                         rounds=args.rounds, warmup=args.warmup, budget_s=args.budget)
        outputs = torch_variant.infer(feed)
        frames = [_Frame(im) for im in images]
        post_s = common.median_call(partial(predictor.postprocess, outputs, records, frames))
        ref_median = common.median_s(timings["torch"])
        gpu_ref = timings.get("torch-cuda")
        gpu_median = common.median_s(gpu_ref) if gpu_ref is not None and gpu_ref.seconds else None
        case = {"model": model, "task": task, "input": list(feed["images"].shape), "batch": batch,
                "rounds": len(timings["torch"].seconds), "load_average": [load_before, common.load_average()],
                "others_cpu_share": others["share"],
                "preprocess_ms": round(1000 * pre_s, 2), "postprocess_ms": round(1000 * post_s, 2),
                "export_s": round(export_s, 1), "variants": {}}
        for name in ["torch", *[v for v in variants if v != "torch"]]:
            v = loaded[name]
            if v.infer is None:
                case["variants"][name] = {"status": "skipped", "reason": v.reason}
                continue
            t = timings[name]
            case["variants"][name] = {"status": "ok", "latency": t.summary(batch),
                                      "vs_torch": round(ref_median / common.median_s(t), 3),
                                      **({"vs_torch_cuda": round(gpu_median / common.median_s(t), 3)}
                                         if gpu_median is not None and name != "torch" else {}),
                                      "agreement": agreements.get(name), **v.details}
        yield case


class _Spec:
    """Just enough of a backend for :class:`Predictor` to plan inputs (the graph's input spec)."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        from pvt_deploy.runtimes.base import TensorSpec

        self.inputs = [TensorSpec.from_json(i) for i in manifest["inputs"]]


class _Frame:
    index = 0
    path = "bench.jpg"
    timestamp = None

    def __init__(self, image: Any) -> None:
        self.image = image


def _print_case(case: dict[str, Any]) -> None:
    shape = "x".join(str(d) for d in case["input"])
    print(f"\n{case['model']} ({case['task']}) input {shape}, {case['rounds']} interleaved rounds, "
          f"load {case['load_average'][0]} -> {case['load_average'][1]}"
          + (f", other processes {case['others_cpu_share']:.0%} of the CPU" if case.get("others_cpu_share") is not None
             else "")
          + "; host preprocess "
          f"{case['preprocess_ms']:.1f} ms, postprocess {case['postprocess_ms']:.1f} ms per batch")
    gpu = any("vs_torch_cuda" in v for v in case["variants"].values())
    rows = []
    for name, v in case["variants"].items():
        if v["status"] != "ok":
            rows.append([name, "skipped", "", "", "", *([""] if gpu else []), v.get("reason", "")[:90]])
            continue
        s = v["latency"]
        vs_gpu = [f"{v['vs_torch_cuda']:.2f}x" if "vs_torch_cuda" in v else ""] if gpu else []
        rows.append([name, f"{s['median_ms']:.1f}", f"{s['p90_ms']:.1f}", f"{s['images_per_s']:.2f}",
                     f"{v['vs_torch']:.2f}x", *vs_gpu,
                     "reference" if name == "torch" else common.agreement_text(v["agreement"])])
    common.print_table(rows, ["variant", "median ms", "p90 ms", "img/s", "vs torch",
                              *(["vs torch-cuda"] if gpu else []), "agreement vs torch fp32"])


def parse_models(ap: argparse.ArgumentParser, text: str) -> list[tuple[str, int, tuple[int, ...]]]:
    """``--models``: comma-separated ``model[:size[:batches]]`` (batches separated by ``/``); every
    part is checked here, before any work, the model names last (that loads PyTorch)."""
    specs = [t.strip() for t in text.split(",") if t.strip()]
    if not specs:
        ap.error("--models: empty; give model[:size[:batches]], e.g. pvt_v2_b0:640:1/2 (omit --models for the suite)")
    parsed: list[tuple[str, int | None, tuple[int, ...]]] = []
    for spec in specs:
        parts = [p.strip() for p in spec.split(":")]
        if len(parts) > 3 or not parts[0]:
            ap.error(f"--models {spec!r}: expected model[:size[:batches]], e.g. pvt_v2_b0:640:1/2")
        size: int | None = None
        if len(parts) > 1 and parts[1]:  # empty: the zoo's size
            try:
                size = common.imgsz_arg(parts[1])
            except argparse.ArgumentTypeError as e:
                ap.error(f"--models {spec!r}: size {e}")
        batches: tuple[int, ...] = (1,)
        if len(parts) > 2:
            try:
                batches = tuple(dict.fromkeys(common.int_at_least(1)(b) for b in parts[2].split("/")))
            except argparse.ArgumentTypeError as e:
                ap.error(f"--models {spec!r}: batch {e} (batches are separated by '/', e.g. 1/8)")
        parsed.append((parts[0], size, batches))
    entries = common.check_models(ap, "--models", [name for name, _, _ in parsed])
    return [(name, size if size is not None else entries[name].imgsz[0], batches) for name, size, batches in parsed]


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="two models, fewer rounds and images (~2 min)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="cpu: CPU variants; cuda: CPU reference + GPU variants; auto: cuda when a GPU is usable")
    ap.add_argument("--models", default=None,
                    help="comma-separated model[:size[:batches]], e.g. pvt_v2_b0:640:1/2 (size default: the "
                         "zoo's, batches default: 1)")
    ap.add_argument("--variants", default=None, help=f"subset of {', '.join(CPU_VARIANTS + OWN_VARIANTS + GPU_VARIANTS)}")
    ap.add_argument("--rounds", type=common.int_at_least(1), default=None,
                    help="interleaved timing rounds (default 10, --quick 5)")
    ap.add_argument("--warmup", type=common.int_at_least(0), default=2)
    ap.add_argument("--images", type=common.int_at_least(1), default=None,
                    help="real pictures for agreement, 1-12 (default 12, --quick 6)")
    ap.add_argument("--budget", type=common.seconds_arg, default=None,
                    help="seconds of timing per case before stopping early (after 3 rounds; default 90, --quick 30)")
    ap.add_argument("--threads", type=common.int_at_least(1), default=None, help="CPU threads (default: physical cores)")
    ap.add_argument("--work", type=Path, default=common.DEFAULT_WORK, help="cache of weights and exports")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here (checked before the run)")
    args = ap.parse_args(argv)
    if args.images is not None and args.images > 12:
        ap.error(f"argument --images: at most 12 (the real pictures there are), got {args.images}")
    variants_asked = (None if args.variants is None else common.parse_choices(
        ap, "--variants", args.variants, CPU_VARIANTS + OWN_VARIANTS + GPU_VARIANTS))
    common.check_output_file(ap, "--json", args.json)
    common.check_work(ap, args.work)
    cases: list[tuple[str, int, tuple[int, ...]]] = list(QUICK if args.quick else FULL)
    if args.models is not None:
        cases = parse_models(ap, args.models)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.rounds = args.rounds if args.rounds is not None else (5 if args.quick else 10)
    args.images = args.images if args.images is not None else (6 if args.quick else 12)
    args.budget = args.budget if args.budget is not None else (30.0 if args.quick else 90.0)
    device = common.resolve_device(args.device)
    variants = list(CPU_VARIANTS) + (list(GPU_VARIANTS) if device == "cuda" else [])
    if variants_asked is not None:
        variants = ["torch", *[v for v in variants_asked if v != "torch"]]
    info = common.machine()
    print(common.header_lines(info))
    if device != "cuda":
        ok, why = common.cuda_available()
        print(f"GPU variants skipped: {why if not ok else '--device cpu'}")
    if info["load_average_1m"] > 0.5:
        print(f"note: load average {info['load_average_1m']} > 0.5 — other processes share the cores; "
              "ratios stay comparable (interleaved), absolute times are inflated")
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []

    def save(**extra: Any) -> None:
        if args.json:
            common.write_json(args.json, {"machine": info, "command": " ".join(sys.argv), "device": device,
                                          "seconds": round(time.perf_counter() - t0, 1), **extra, "cases": results})
            print(f"wrote {args.json}" + (f" ({len(results)} finished cases)" if extra else ""))

    try:
        for model, size, batches in cases:
            for case in run_case(model, size, batches, variants, args):
                results.append(case)  # before its table is shown: an interrupt keeps what was shown
                _print_case(case)
    except (KeyboardInterrupt, common.Terminated):
        if results:  # the cases measured so far are worth keeping: a full suite takes 15 minutes
            save(interrupted=True)
        raise
    print(f"\nsuite finished in {(time.perf_counter() - t0) / 60:.1f} min")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
