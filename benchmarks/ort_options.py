"""Which ONNX Runtime session settings matter for PVT on this CPU? One model, every setting interleaved.

    python benchmarks/ort_options.py                                  # pvt_v2_b0 classifier, batch 8
    python benchmarks/ort_options.py --model pvt_v2_b0 --imgsz 640 --batch 1
    python benchmarks/ort_options.py --model pvt_small-cls --settings default,no-shards --file model.int8.onnx

Compares, on the same input and in one process (interleaved rounds):

* ``default``          — what ``OnnxRuntimeBackend`` does on CPU: level ALL, intra-op threads =
                         physical cores, each worker pinned to a core of its own, workers spinning
                         only inside a run, the exact CPU rewrites (``export.optimize``), a batch of
                         >= threads images split into one shard per thread;
* ``whole-shards``     — the same with each shard's images in one call instead of one call each;
* ``no-shards``        — the same with the whole batch in one multi-threaded call;
* ``no-pin``           — the same with the worker threads free to run on any core (not pinned);
* ``no-rewrites``      — the same (unsharded) on the graph as exported;
* ``spin``             — worker threads busy-wait between ops and after a run (ORT's own default);
* ``no-spin``          — they never busy-wait: every operator boundary is a sleep and a wake-up;
* ``extended``/``basic`` — lower graph optimisation levels (no NCHWc layouts / no fusions);
* ``threads-1``        — one intra-op thread;
* ``transformers-opt`` — the graph after ``onnxruntime.transformers.optimizer`` (its SkipLayerNorm,
                         BiasGelu fusions; its attention fusion does not match SRA).

It also times session creation from ``model.onnx`` against creation from a saved, already optimised
graph (``SessionOptions.optimized_model_filepath``), which is what a server restart pays.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SETTINGS = ("default", "whole-shards", "no-shards", "no-pin", "no-rewrites", "spin", "no-spin", "extended", "basic", "threads-1", "transformers-opt")


def transformers_optimized(src: Path, dst: Path) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimize_model(str(src), model_type="vit", num_heads=0, hidden_size=0, opt_level=0, use_gpu=False)
    model.save_model_to_file(str(dst))
    return dst


class _BackendSession:
    """``OnnxRuntimeBackend`` behind an ``InferenceSession``-like ``run(None, feed)``."""

    def __init__(self, path: Path, *, shard: bool = True, pin: bool = True, per_image: bool = True) -> None:
        from pvt_deploy.runtimes.onnxruntime import OnnxRuntimeBackend

        self.backend = OnnxRuntimeBackend(path, device="cpu", shard=shard, pin=pin)
        self.backend._shard_per_image = per_image

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.backend.infer(feed).values())


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    common.add_model_options(ap, model="pvt_v2_b0-cls", batch=8)
    ap.add_argument("--rounds", type=common.int_at_least(1), default=10)
    ap.add_argument("--file", default="model.onnx", choices=common.GRAPH_FILES,
                    help="graph of the export to time (model.int8.onnx: the CPU INT8; model.fp16.onnx: FP16); "
                         "the benchmark's cached export is extended with the file when it lacks it")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {', '.join(SETTINGS)}")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    wanted = common.parse_choices(ap, "--settings", args.settings, SETTINGS)
    common.check_output_file(ap, "--json", args.json)
    _, size = common.model_and_size(ap, args)

    from pvt_deploy.runtimes.ort_session import optimized_graph

    info = common.machine()
    print(common.header_lines(info))
    src, manifest = common.artifact_graph(args.model, args.work, args.file, imgsz=size)
    rewritten = optimized_graph(src).path
    # Scratch graphs (transformers-opt, the saved optimised graph: 15+ MB each) live in a folder that
    # is removed however the run ends (Ctrl-C and SIGTERM included, see common.run).
    with tempfile.TemporaryDirectory(prefix="pvt-ort-options-") as tmp_dir:
        return measure(args, wanted, info, manifest, src, rewritten, size, Path(tmp_dir))


def measure(args: argparse.Namespace, wanted: list[str], info: dict[str, Any], manifest: dict[str, Any],
            src: Path, rewritten: Path, size: int, tmp: Path) -> int:
    """Time the ``wanted`` settings on ``src`` (``rewritten``: its CPU-rewritten graph), then session
    creation; scratch files go to ``tmp``."""
    from pvt_deploy.runtimes.base import TensorSpec
    from pvt_deploy.runtimes.torch import physical_cores
    from pvt_deploy.tasks.pipeline import Predictor

    sessions: dict[str, Any] = {}
    for name in wanted:
        try:
            if name in ("default", "whole-shards", "no-shards", "no-pin"):
                sessions[name] = _BackendSession(src, shard=name != "no-shards", pin=name != "no-pin",
                                                 per_image=name != "whole-shards")
            elif name == "no-rewrites":
                sessions[name] = common.ort_cpu_session(src)
            elif name in ("spin", "no-spin"):
                sessions[name] = common.ort_cpu_session(rewritten, spin=name == "spin")
            elif name in ("extended", "basic"):
                sessions[name] = common.ort_cpu_session(rewritten, level=name)
            elif name == "threads-1":
                sessions[name] = common.ort_cpu_session(rewritten, threads=1)
            elif name == "transformers-opt":
                sessions[name] = common.ort_cpu_session(transformers_optimized(src, tmp / "transformers.onnx"))
        except Exception as e:  # noqa: BLE001 - one setting failing must not hide the others
            print(f"{name}: skipped ({type(e).__name__}: {' '.join(str(e).split())[:160]})")
    if not sessions:
        raise SystemExit("error: no setting could run (see above)")
    first = next(iter(sessions))

    class _Spec:
        inputs = [TensorSpec.from_json(i) for i in manifest["inputs"]]

    predictor = Predictor(_Spec(), manifest, imgsz=(size, size))  # type: ignore[arg-type]
    feed, _ = common.bench_input(predictor, args.batch)
    ref = sessions[first].run(None, feed)
    for name, s in sessions.items():  # every setting computes the same thing
        out = s.run(None, feed)
        err = max((float(np.abs(a - b).max() / max(1.0, np.abs(a).max())) for a, b in zip(ref, out, strict=True)
                   if a.dtype.kind == "f" and a.shape == b.shape), default=0.0)
        if err > 1e-3 and manifest["task"] != "detect" and args.file == "model.onnx":  # INT8: per-call
            # scales; FP16: rounding differs with the fusions of each setting
            print(f"warning: {name} differs from {first} by {err:.2e}")
    runs: dict[str, Callable[[], Any]] = {k: partial(s.run, None, feed) for k, s in sessions.items()}
    load_before = common.load_average()
    timings = common.interleaved(runs, rounds=args.rounds)
    base = common.median_s(timings[first])
    rows, result = [], {}
    for name, t in timings.items():
        s = t.summary(args.batch)
        result[name] = {"latency": s, "vs_default": round(base / common.median_s(t), 3)}
        rows.append([name, f"{s['median_ms']:.1f}", f"{s['p90_ms']:.1f}", f"{base / common.median_s(t):.2f}x"])
    shape = "x".join(str(d) for d in feed["images"].shape)
    print(f"\n{args.model} {args.file} input {shape}: {len(timings[first].seconds)} interleaved rounds, "
          f"load {load_before} -> {common.load_average()}, {physical_cores()} physical cores")
    common.print_table(rows, ["setting", "median ms", "p90 ms", f"speed vs {first}"])

    # Session creation: from the exported graph vs from a saved optimised graph.
    saved = tmp / "optimized.onnx"
    common.ort_cpu_session(rewritten, level="extended", save_to=saved)
    fresh = f"from {src.name} (+rewrites)"
    create: dict[str, list[float]] = {fresh: [], "from saved optimised graph": []}
    for _ in range(3):
        for label, path in ((fresh, rewritten), ("from saved optimised graph", saved)):
            t0 = time.perf_counter()
            common.ort_cpu_session(path)
            create[label].append(time.perf_counter() - t0)
    print("\nsession creation (median of 3): " + "; ".join(f"{k} {1000 * float(np.median(v)):.0f} ms"
                                                          for k, v in create.items()))
    if args.json:
        common.write_json(args.json, {"machine": info, "model": args.model, "file": args.file, "input": shape,
                                      "settings": result,
                                      "session_creation_ms": {k: round(1000 * float(np.median(v)), 1)
                                                              for k, v in create.items()},
                                      "load_average": [load_before, common.load_average()]})
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
