"""Bundled sample media: three photos and a short H.264 clip, for demos, docs and tests.

They let ``pvt-deploy infer`` and the tests run with no download. The photos come from
scikit-image's data set (public domain and CC0, see ``CREDITS.md`` beside this file); the clip is a
slow pan/zoom over them, made by ``scripts/make_assets.py``.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea")
SAMPLE_VIDEO = "sample.mp4"

# What the files are, so tests and docs can check them without decoding anything first.
IMAGE_SIZES = {"astronaut": (512, 512), "coffee": (600, 400), "chelsea": (451, 300)}  # (width, height)
VIDEO_SIZE, VIDEO_FPS, VIDEO_FRAMES = (640, 360), 25, 75


def sample_image(name: str = "astronaut") -> Path:
    """Path of a bundled photo: ``astronaut`` (person), ``coffee`` (cup, spoon), ``chelsea`` (cat)."""
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; choose from {', '.join(SAMPLE_IMAGES)}")
    return ASSETS_DIR / f"{name}.jpg"


def sample_images() -> list[Path]:
    """All bundled photos, in a fixed order."""
    return [sample_image(name) for name in SAMPLE_IMAGES]


def sample_images_dir() -> Path:
    """A folder whose images are exactly the bundled photos (folder sources read only images)."""
    return ASSETS_DIR


def sample_video() -> Path:
    """Path of the bundled 3 s, 640x360, 25 fps H.264 clip."""
    return ASSETS_DIR / SAMPLE_VIDEO
