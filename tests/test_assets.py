"""The bundled sample media exist, decode, and are what the docs say they are."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pvt_deploy import assets
from pvt_deploy.io.sources import open_source, read_image


@pytest.mark.parametrize("name", assets.SAMPLE_IMAGES)
def test_sample_images_decode_at_documented_size(name: str) -> None:
    path = assets.sample_image(name)
    image = read_image(path)
    width, height = assets.IMAGE_SIZES[name]
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert image.std() > 20  # a photo, not a blank


def test_assets_stay_small() -> None:
    images = sum(p.stat().st_size for p in assets.sample_images())
    assert images < 400 * 1024
    assert assets.sample_video().stat().st_size < 600 * 1024


def test_sample_images_dir_yields_exactly_the_photos() -> None:
    with open_source(assets.sample_images_dir()) as source:
        names = sorted(frame.name for frame in source)
    assert names == sorted(f"{n}.jpg" for n in assets.SAMPLE_IMAGES)


def test_sample_video_is_h264_yuv420p_with_documented_shape() -> None:
    with av.open(str(assets.sample_video())) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == assets.VIDEO_SIZE
        assert stream.average_rate == assets.VIDEO_FPS
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == assets.VIDEO_FRAMES
    # Ken Burns motion: consecutive frames differ (a frozen clip would hide frame-order bugs).
    diffs = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, frames[1:], strict=False)]
    assert min(diffs) > 0.1


def test_unknown_sample_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="astronaut"):
        assets.sample_image("dog")


def test_credits_cover_every_file() -> None:
    credits = (assets.ASSETS_DIR / "CREDITS.md").read_text()
    for path in [*assets.sample_images(), assets.sample_video()]:
        assert path.name in credits
