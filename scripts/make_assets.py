"""Regenerate the bundled sample media in ``pvt_deploy/assets/`` (committed for reproducibility).

    python scripts/make_assets.py

Needs scikit-image (source photos) and Pillow at *build* time only; the package never imports
either for its assets. Photos are saved as baseline JPEG, quality 90 (small, and decodable
everywhere). The clip is three 1 s shots, one per photo, each a slow Ken Burns pan/zoom so that
consecutive frames differ (a still clip would hide frame-handling bugs such as repeated or dropped
frames), encoded by pvt-deploy's own :class:`~pvt_deploy.io.sinks.VideoWriter` with libx264.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image

from pvt_deploy.assets import ASSETS_DIR, SAMPLE_IMAGES, SAMPLE_VIDEO, VIDEO_FPS, VIDEO_FRAMES, VIDEO_SIZE
from pvt_deploy.io.sinks import VideoWriter

JPEG_QUALITY = 90
VIDEO_CRF = 26  # visually clean at 640x360 and keeps the clip well under the 600 KB budget


def save_jpeg(image: np.ndarray, path: Path) -> int:
    """Write RGB ``image`` as an optimised baseline JPEG; returns the size in bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True, subsampling="4:2:0")
    path.write_bytes(buf.getvalue())
    return len(buf.getvalue())


def ken_burns(
    image: np.ndarray,
    t: float,
    *,
    zoom: tuple[float, float],
    pan: tuple[tuple[float, float], tuple[float, float]],
) -> np.ndarray:
    """The frame at progress ``t`` in [0, 1]: a 16:9 window that zooms from ``zoom[0]`` to
    ``zoom[1]`` while its centre moves from ``pan[0]`` to ``pan[1]`` (fractions of the free margin,
    -1 = left/top edge, 1 = right/bottom edge). Rendered with sub-pixel precision so the motion is
    smooth rather than stepping a pixel at a time."""
    out_w, out_h = VIDEO_SIZE
    h, w = image.shape[:2]
    ease = 0.5 - 0.5 * np.cos(np.pi * t)  # ease in/out: no jolt at the start and end of a shot
    base = min(w / out_w, h / out_h)  # largest 16:9 window that fits
    scale = base / (zoom[0] + (zoom[1] - zoom[0]) * ease)  # source pixels per output pixel
    win_w, win_h = out_w * scale, out_h * scale
    px = pan[0][0] + (pan[1][0] - pan[0][0]) * ease
    py = pan[0][1] + (pan[1][1] - pan[0][1]) * ease
    x0 = (w - win_w) / 2 * (1 + px)
    y0 = (h - win_h) / 2 * (1 + py)
    affine = np.array([[1 / scale, 0, -x0 / scale], [0, 1 / scale, -y0 / scale]], dtype=np.float64)
    return cv2.warpAffine(image, affine, (out_w, out_h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


SHOTS = {  # photo -> (zoom from, to), (pan from, pan to)
    "astronaut": ((1.0, 1.3), ((0.0, -0.75), (0.1, -0.9))),
    "coffee": ((1.15, 1.0), ((-0.8, 0.0), (0.4, 0.2))),
    "chelsea": ((1.0, 1.2), ((0.2, -0.2), (-0.4, 0.3))),
}


def main() -> None:
    photos = {name: getattr(skimage.data, name)() for name in SAMPLE_IMAGES}
    total = 0
    for name, image in photos.items():
        size = save_jpeg(image, ASSETS_DIR / f"{name}.jpg")
        total += size
        print(f"{name}.jpg  {image.shape[1]}x{image.shape[0]}  {size / 1024:.1f} KiB")
    print(f"images total {total / 1024:.1f} KiB")

    per_shot = VIDEO_FRAMES // len(SHOTS)
    with VideoWriter(
        ASSETS_DIR / SAMPLE_VIDEO, VIDEO_FPS, VIDEO_SIZE, codec="libx264", crf=VIDEO_CRF, preset="slow"
    ) as writer:
        for name, (zoom, pan) in SHOTS.items():
            for i in range(per_shot):
                writer.write(ken_burns(photos[name], i / (per_shot - 1), zoom=zoom, pan=pan))
    size = (ASSETS_DIR / SAMPLE_VIDEO).stat().st_size
    print(
        f"{SAMPLE_VIDEO}  {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}  {VIDEO_FRAMES} frames @ {VIDEO_FPS} fps  {size / 1024:.1f} KiB"
    )


if __name__ == "__main__":
    main()
