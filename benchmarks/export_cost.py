"""How long does exporting cost? ONNX + FP16 + INT8 calibration of the pvt_small detector at 640.

    python benchmarks/export_cost.py                       # library call, each step timed
    python benchmarks/export_cost.py --cli                 # the same through `pvt-deploy export`
    python benchmarks/export_cost.py --model pvt_v2_b0 --no-parity

Runs ``export_onnx(model, weights=..., imgsz=640, half=True, int8=True)`` — what
``pvt-deploy export --half --int8`` does: trace, onnxslim, graph checks, the FP16 graph, INT8
calibration and quantization (both flavours by default), and the parity gate on the bundled photos —
into a fresh folder, and prints the seconds of every step as the exporter records them
(``manifest.export.seconds``) plus the wall time. Synthetic seeded weights (a checkpoint file, as a
user passes one) so the parity gate sees real detections. The target is < 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET_S = 120.0


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="pvt_small",
                    help="zoo name, synthetic weights (default pvt_small, the model the target is set for)")
    ap.add_argument("--imgsz", type=common.imgsz_arg, default=640, help="input side of the export (default 640)")
    ap.add_argument("--int8-flavour", default="both", choices=("cpu", "trt", "both"),
                    help="the INT8 graphs calibrated and written (default both, as the target counts)")
    ap.add_argument("--no-parity", action="store_true", help="skip the parity gate (not the default export)")
    ap.add_argument("--cli", action="store_true", help="time `pvt-deploy export` as a subprocess instead")
    ap.add_argument("--work", type=Path, default=common.DEFAULT_WORK,
                    help="cache of the synthetic weights (the export itself goes to a fresh temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here (checked before the run)")
    args = ap.parse_args(argv)
    common.check_output_file(ap, "--json", args.json)
    common.check_work(ap, args.work)
    common.check_models(ap, "--model", [args.model])
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    info = common.machine()
    print(common.header_lines(info))
    weights = common.synthetic_checkpoint(args.model, args.work)
    tmp = Path(tempfile.mkdtemp(prefix="pvt-export-cost-"))
    try:  # removed however the run ends: Ctrl-C and SIGTERM (common.run) included
        out = tmp / args.model
        load_before = common.load_average()
        t0 = time.perf_counter()
        if args.cli:
            exe = shutil.which("pvt-deploy")
            cmd = [*([exe] if exe else [sys.executable, "-m", "pvt_deploy"]), "export", "--model", args.model,
                   "--weights", str(weights), "--imgsz", str(args.imgsz), "--half", "--int8",
                   "--int8-flavour", args.int8_flavour, "-o", str(out)]
            if args.no_parity:
                cmd.append("--no-parity")
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"export failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}")
            command = " ".join(cmd)
        else:
            from pvt_deploy.export import export_onnx

            export_onnx(args.model, out, weights=weights, imgsz=args.imgsz, half=True, int8=True,
                        int8_flavour=args.int8_flavour, parity=not args.no_parity)
            command = (f"export_onnx({args.model!r}, weights=..., imgsz={args.imgsz}, half=True, int8=True, "
                       f"int8_flavour={args.int8_flavour!r}, parity={not args.no_parity})")
        wall = time.perf_counter() - t0
        manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        sizes = {name: round((out / name).stat().st_size / 2**20, 1) for name in manifest.get("files", {})}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = (manifest.get("export") or {}).get("seconds") or {}
    print(f"\n{command}")
    rows = [[step, f"{s:.1f}"] for step, s in seconds.items()]
    rows.append(["(other: imports, image loading, manifest)", f"{max(0.0, wall - sum(seconds.values())):.1f}"])
    rows.append(["total wall time", f"{wall:.1f}"])
    common.print_table(rows, ["step", "seconds"])
    verdict = "met" if wall < TARGET_S else "NOT met"
    if (args.model, args.imgsz) != ("pvt_small", 640):  # the target is the issue's: pvt_small at 640
        verdict = f"{verdict} here, but it is set for pvt_small at 640"
    print(f"target < {TARGET_S:.0f} s: {verdict}; load {load_before} -> {common.load_average()}; files (MiB): {sizes}")
    parity = manifest.get("parity") or {}
    for name, rep in parity.items():
        agreement = rep.get("agreement")
        shown = f"{agreement:.3f}" if isinstance(agreement, float) else agreement
        print(f"  parity {name}: {'passed' if rep.get('passed') else 'FAILED'} agreement {shown}, "
              f"median batch {rep.get('latency_s')} s (PyTorch {rep.get('reference_latency_s')} s)")
    if args.json:
        common.write_json(args.json, {"machine": info, "command": command, "wall_s": round(wall, 1), "steps": seconds,
                                      "files_mib": sizes, "load_average": [load_before, common.load_average()],
                                      "parity": {k: {"passed": v.get("passed"), "agreement": v.get("agreement")}
                                                 for k, v in parity.items()}})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
