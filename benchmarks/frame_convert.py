"""Converting a decoded video frame of more than 8 bits (yuv420p10le: 10-bit HEVC or H.264) to 8-bit RGB.

    python benchmarks/frame_convert.py
    python benchmarks/frame_convert.py --sizes 1080x1920 --rounds 30

Every frame a video reader gives goes through one conversion (``pvt_deploy.io.sources._frame_to_rgb``), on
the decode thread, so its cost bounds the video's frame rate. Each candidate is timed on a 10-bit 4:2:0 frame
of each size, interleaved with the others (``common.interleaved``): median wall and process CPU milliseconds
(FFmpeg's swscale and OpenCV both use threads). Its error is measured against the matrix's sum in float64 of
the frame's samples, on a frame of 16x16 blocks of one chroma each (luma varies within a block), 3 pixels in
from each block's edge, where chroma interpolation cannot matter: the worst and the mean over three tags of
the frame (BT.601 limited range, which a stream that names no matrix gets, BT.709 limited and BT.709 full),
and the darkest value of a white block (limited range 940, 512, 512), which should be 255.

Candidates: FFmpeg's rgb24 as it converts by default (what the code did before 6f1b7f3) and with other
swscale flags (full_chroma_int, the code of 6f1b7f3; fast bilinear or point with it; accurate rounding;
one thread); two passes (to 8-bit yuv420p, then rgb24 as an 8-bit video is converted); rgb48 rounded; swscale
to yuv444p16le then the matrix in OpenCV; and pvt-deploy's (the matrix in OpenCV from the planes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# (colorspace, color_range) tags the error is measured under: BT.601 unnamed, BT.709 limited, BT.709 full
_TAGS = {(2, 1): (0.299, 0.114), (1, 1): (0.2126, 0.0722), (1, 2): (0.2126, 0.0722)}


def block_frame(av: Any, np: Any, height: int, width: int, colorspace: int, color_range: int) -> Any:
    """A yuv420p10le frame of 16x16 blocks of one random colour each (luma with noise in it), the first block
    white and the second black in limited range, tagged ``colorspace`` and ``color_range``."""
    rng = np.random.default_rng(0)
    rows, cols = -(-height // 16), -(-width // 16)
    luma = np.repeat(np.repeat(rng.integers(64, 941, (rows, cols)), 16, 0), 16, 1)[:height, :width]
    luma = np.clip(luma + rng.integers(-8, 9, luma.shape), 0, 1023)
    chroma = [np.repeat(np.repeat(rng.integers(64, 961, (rows, cols)), 8, 0), 8, 1)[:height // 2, :width // 2]
              for _ in range(2)]
    luma[:16, :16], luma[:16, 16:32], chroma[0][:8, :16], chroma[1][:8, :16] = 940, 64, 512, 512
    frame = av.VideoFrame(width, height, "yuv420p10le")
    for plane, samples in zip(frame.planes, [luma, *chroma], strict=True):
        padded = np.zeros((plane.height, plane.line_size // 2), np.uint16)
        padded[:, :plane.width] = samples
        plane.update(padded.tobytes())
    frame.colorspace, frame.color_range = colorspace, color_range
    return frame


def exact_sum(np: Any, frame: Any, weights: tuple[float, float]) -> Any:
    """The matrix's sum of ``frame``'s samples in float64 (chroma repeated: exact inside a block), 0-255."""
    y, u, v = (np.frombuffer(bytes(p), np.uint16).reshape(p.height, p.line_size // 2)[:, :p.width]
               .astype(np.float64) / 4 for p in frame.planes)
    u, v = (np.repeat(np.repeat(c, 2, 0), 2, 1)[:frame.height, :frame.width] for c in (u, v))
    if frame.color_range == 2:
        y, u, v = y / 255, (u - 128) / 255, (v - 128) / 255
    else:
        y, u, v = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
    kr, kb = weights
    kg = 1 - kr - kb
    r, b = y + 2 * (1 - kr) * v, y + 2 * (1 - kb) * u
    g = y - 2 * (1 - kb) * kb / kg * u - 2 * (1 - kr) * kr / kg * v
    return np.clip(np.stack([r, g, b], axis=-1) * 255, 0, 255)


def candidates() -> dict[str, Any]:
    """name -> frame -> HxWx3 uint8 RGB."""
    import numpy as np
    from av.video.reformatter import Interpolation as I  # noqa: N817

    from pvt_deploy.io.sources import _frame_to_rgb, _to_uint8, _yuv_to_rgb

    def sws(flags: Any = None, threads: int | None = None) -> Any:
        return lambda f: f.reformat(format="rgb24", interpolation=flags, threads=threads).to_ndarray()

    def via_444p16(f: Any) -> Any:
        wide = f.reformat(format="yuv444p16le")
        return _yuv_to_rgb(wide, wide.width)

    return {
        "rgb24 (before 6f1b7f3)": sws(),
        "bilinear+full_chr (6f1b7f3)": sws(I.BILINEAR | I.FULL_CHR_H_INT),
        "bilinear+full_chr 1 thread": sws(I.BILINEAR | I.FULL_CHR_H_INT, threads=1),
        "fast_bilinear+full_chr": sws(I.FAST_BILINEAR | I.FULL_CHR_H_INT),
        "point+full_chr": sws(I.POINT | I.FULL_CHR_H_INT),
        "bilinear+accurate_rnd": sws(I.BILINEAR | I.ACCURATE_RND),
        "full_chr+accurate_rnd": sws(I.BILINEAR | I.FULL_CHR_H_INT | I.ACCURATE_RND),
        "two passes (yuv420p, rgb24)": lambda f: f.reformat(format="yuv420p").reformat(format="rgb24").to_ndarray(),
        "rgb48 rounded": lambda f: _to_uint8(f.reformat(format="rgb48le").to_ndarray()),
        "yuv444p16 + OpenCV matrix": via_444p16,
        "pvt-deploy (planes + OpenCV)": lambda f: np.asarray(_frame_to_rgb(f)),
    }


def errors(av: Any, np: Any, convert: Any) -> tuple[float, float, int]:
    """(worst, mean) distance from the exact sum inside the blocks over the three tags, and the darkest value of
    the white block (1080p)."""
    worst, total, count, white = 0.0, 0.0, 0, 255
    inside = np.zeros((1080, 1920), bool)
    for r in range(0, 1080, 16):
        for c in range(0, 1920, 16):
            inside[r + 3:r + 13, c + 3:c + 13] = True
    for (colorspace, color_range), weights in _TAGS.items():
        frame = block_frame(av, np, 1080, 1920, colorspace, color_range)
        image = convert(frame)
        off = np.abs(image.astype(np.float64) - exact_sum(np, frame, weights))[inside]
        worst, total, count = max(worst, float(off.max())), total + float(off.sum()), count + off.size
        if color_range == 1:
            white = min(white, int(image[3:13, 3:13].min()))
    return worst, total / count, white


def with_cpu_time(log: list[float], convert: Any, frame: Any) -> Any:
    """A call of ``convert(frame)`` that appends its process CPU seconds to ``log``."""
    def call() -> None:
        c0 = time.process_time()
        convert(frame)
        log.append(time.process_time() - c0)
    return call


def main(argv: list[str] | None = None) -> int:
    ap = common.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1080x1920,2160x3840", help="frame sizes, HxW")
    ap.add_argument("--rounds", type=common.int_at_least(1), default=15)
    args = ap.parse_args(argv)
    sizes = common.parse_int_pairs(ap, "--sizes", args.sizes, sep="x", form="HxW", examples="1080x1920",
                                   what="sides")

    import av
    import numpy as np

    print(common.header_lines(common.machine()))
    runs = candidates()
    rows = {name: [] for name in runs}
    for name, convert in runs.items():
        worst, mean, white = errors(av, np, convert)
        rows[name] += [f"{worst:.2f}", f"{mean:.3f}", str(white)]
    for height, width in sizes:
        frame = block_frame(av, np, height, width, 2, 1)
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        t = common.interleaved({name: with_cpu_time(cpu[name], fn, frame) for name, fn in runs.items()},
                               rounds=args.rounds, warmup=1)
        for name in runs:
            rows[name] += [f"{common.median_s(t[name]) * 1e3:.1f}",
                           f"{float(np.median(cpu[name][-len(t[name].seconds):])) * 1e3:.1f}"]
    print(f"\nyuv420p10le, {args.rounds} interleaved rounds; error in 8-bit levels inside 16x16 blocks, 3 tags; "
          f"load after: {common.load_average():.2f}")
    header = ["candidate", "max err", "mean err", "white"]
    for height, width in sizes:
        header += [f"{width}x{height} ms", "cpu ms"]
    common.print_table([[name, *r] for name, r in rows.items()], header)
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run(main))
