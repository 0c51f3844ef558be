"""Inputs and outputs: :func:`open_source` for anything a user points at, and the sinks that
write results (H.264 video, images, JSON Lines, COCO results). Imports only numpy, OpenCV and
PyAV."""

from __future__ import annotations

from pvt_deploy.io.sinks import (
    COCO80_TO_91,
    CocoJsonWriter,
    ImageWriter,
    JsonlWriter,
    VideoWriter,
    available_h264_encoders,
    coco_category_ids,
    coco_image_id,
    resolve_codec,
)
from pvt_deploy.io.sources import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    FrameReader,
    Reconnect,
    Source,
    open_source,
    read_image,
)

__all__ = [
    "COCO80_TO_91",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "CocoJsonWriter",
    "Frame",
    "FrameReader",
    "ImageWriter",
    "JsonlWriter",
    "Reconnect",
    "Source",
    "VideoWriter",
    "available_h264_encoders",
    "coco_category_ids",
    "coco_image_id",
    "open_source",
    "read_image",
    "resolve_codec",
]
