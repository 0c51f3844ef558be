"""Segmentation post-processing: logits -> class map in original pixels, per frame.

    python benchmarks/seg_post.py
    python benchmarks/seg_post.py --sizes 720x1280,1080x1920 --classes 150 --imgsz 512
    python benchmarks/seg_post.py --ab HEAD~1 --rounds 12   # against the code of another commit

mmseg's definition: resize the stride-4 logits to the input size (bilinear, align_corners=False),
crop the letterboxed content, resize to the original image, argmax over classes. ``reference`` runs
exactly that with ``F.interpolate``, 16 classes at a time (what pvt-deploy did before, so 150
classes at 4K fit in memory); ``pvt-deploy`` is ``tasks.postprocess.seg_logits_to_map`` (both resizes
composed into one sparse map per axis, one output row at a time, single-threaded numpy). Prints
median wall and CPU milliseconds per frame, the speed-up, and the share of pixels whose class agrees
with the reference (only near-ties can differ: one composed resize rounds differently from two).
``--ab REV`` times ``seg_logits_to_map`` as it was at git revision REV in the same rounds, and
counts the pixels where the two maps differ (a faster version should change none).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def reference_map(logits: Any, meta: Any, chunk: int = 16) -> Any:
    """interpolate -> crop -> interpolate -> argmax with PyTorch, ``chunk`` classes at a time."""
    import torch
    import torch.nn.functional as F

    (ih, iw), (rh, rw), (h0, w0) = meta.input_hw, meta.resized_hw, meta.orig_hw
    t = torch.from_numpy(logits)
    best_val = best_idx = None
    with torch.no_grad():
        for start in range(0, t.shape[0], chunk):
            part = F.interpolate(t[start:start + chunk][None], size=(ih, iw), mode="bilinear",
                                 align_corners=False)[:, :, :rh, :rw]
            if (rh, rw) != (h0, w0):
                part = F.interpolate(part, size=(h0, w0), mode="bilinear", align_corners=False)
            val, idx = part[0].max(dim=0)
            idx = idx + start
            if best_val is None or best_idx is None:
                best_val, best_idx = val, idx
            else:
                better = val > best_val
                best_val, best_idx = torch.where(better, val, best_val), torch.where(better, idx, best_idx)
    assert best_idx is not None
    return best_idx.numpy()


def at_revision(ap: argparse.ArgumentParser, rev: str) -> Any:
    """``seg_logits_to_map`` as ``pvt_deploy/tasks/postprocess.py`` was at git revision ``rev``."""
    done = subprocess.run(["git", "show", f"{rev}:pvt_deploy/tasks/postprocess.py"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode:
        ap.error(f"--ab {rev}: {done.stderr.strip()}")
    module = types.ModuleType(f"postprocess_at_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(done.stdout, f"{rev}:pvt_deploy/tasks/postprocess.py", "exec"), module.__dict__)
    return module.seg_logits_to_map


def with_cpu_time(log: list[float], fn: Any) -> Any:
    """``fn``, appending the process CPU seconds of each call to ``log``."""
    def call() -> Any:
        c0 = time.process_time()
        out = fn()
        log.append(time.process_time() - c0)
        return out
    return call


def parse_sizes(ap: argparse.ArgumentParser, text: str) -> list[tuple[int, int]]:
    """``--sizes``: comma-separated HxW original image sizes."""
    return common.parse_int_pairs(ap, "--sizes", text, sep="x", form="HxW", examples="720x1280", what="sides")


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="720x1280,1080x1920,480x640", help="original image sizes, HxW")
    ap.add_argument("--classes", type=common.int_at_least(1), default=150, help="ADE20K: 150")
    ap.add_argument("--imgsz", type=common.int_at_least(4), default=512, help="square letterboxed input")
    ap.add_argument("--rounds", type=common.int_at_least(1), default=6)
    ap.add_argument("--ab", metavar="REV", help="also time the code of this git revision (e.g. HEAD~1)")
    args = ap.parse_args(argv)
    sizes = parse_sizes(ap, args.sizes)
    before = at_revision(ap, args.ab) if args.ab else None

    import numpy as np
    import torch

    from pvt_deploy.runtimes.torch import physical_cores
    from pvt_deploy.tasks.postprocess import seg_logits_to_map
    from pvt_deploy.tasks.preprocess import Letterbox

    torch.set_num_threads(physical_cores())
    print(common.header_lines(common.machine()))
    rng = np.random.default_rng(0)
    s = args.imgsz
    rows = []
    for h0, w0 in sizes:
        scale = min(s / h0, s / w0)
        meta = Letterbox(orig_hw=(h0, w0), resized_hw=(round(h0 * scale), round(w0 * scale)), input_hw=(s, s))
        # Smooth logits (a blurred random field) so that regions, not single pixels, win.
        coarse = rng.standard_normal((args.classes, s // 32 + 1, s // 32 + 1)).astype(np.float32) * 4
        logits = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=(s // 4, s // 4),
                                                 mode="bicubic", align_corners=False)[0].numpy()
        logits += rng.standard_normal(logits.shape).astype(np.float32) * 0.5
        variants = {"reference": reference_map, "pvt-deploy": seg_logits_to_map}
        if before is not None:
            variants[args.ab] = before
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        ref = reference_map(logits, meta)
        ours = seg_logits_to_map(logits, meta)
        agree = float((ref == ours).mean())
        t = common.interleaved({name: with_cpu_time(cpu[name], lambda f=fn, m=meta, lg=logits: f(lg, m))
                                for name, fn in variants.items()}, rounds=args.rounds, warmup=1, gap_s=0.0)
        wall = {name: common.median_s(t[name]) for name in variants}
        c = {name: float(np.median(cpu[name][-len(t[name].seconds):])) for name in variants}
        tr, to, cr, co = wall["reference"], wall["pvt-deploy"], c["reference"], c["pvt-deploy"]
        rows.append([f"{h0}x{w0}", f"{tr * 1e3:.1f}", f"{cr * 1e3:.1f}", f"{to * 1e3:.1f}", f"{co * 1e3:.1f}",
                     f"{tr / to:.2f}x", f"{cr / co:.2f}x", f"{agree:.6f}"])
        if before is not None:
            rows[-1] += [f"{c[args.ab] * 1e3:.1f}", f"{c[args.ab] / co:.2f}x",
                         str(int((before(logits, meta) != ours).sum()))]
    print(f"\n{args.classes} classes, logits {s // 4}x{s // 4} (input {s}x{s}), {args.rounds} interleaved rounds, "
          f"PyTorch on {physical_cores()} threads")
    common.print_table(rows, ["original", "reference ms", "cpu ms", "pvt-deploy ms", "cpu ms", "wall speed-up",
                              "cpu speed-up", "pixels agree"]
                       + ([f"{args.ab} cpu ms", f"cpu vs {args.ab}", "pixels differ"] if args.ab else []))
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run(main))
