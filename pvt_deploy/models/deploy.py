"""The deployable graph: what is exported to ONNX and what the PyTorch backend runs.

``DeployModule`` wraps a zoo model so that it takes raw RGB pixels (float32, 0..255, NCHW),
normalises inside, and returns the named outputs of the graph contract (docs/ARCHITECTURE.md):

* classify: ``logits``
* features: ``feat_s4``, ``feat_s8``, ``feat_s16``, ``feat_s32``
* detect:   ``boxes`` (N, K, 4) and ``scores`` (N, K, C) — decoded, per-level top-k, clipped
* segment:  ``seg_logits`` (N, C, H/4, W/4), or ``seg_mask`` (N, H, W) int32 with ``seg_output="argmax"``

Because the same module feeds the exporter and the PyTorch backend, backend parity is a property of
the graph alone, and no runtime does model-specific math.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pvt_deploy.models.layers import PyramidTransformer, resize_bilinear
from pvt_deploy.models.retinanet import (
    IOU_THRESHOLD,
    MAX_DETECTIONS,
    PRE_NMS_TOPK,
    SCORE_THRESHOLD,
    decode_detections,
)

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

OUTPUT_NAMES = {
    "classify": ("logits",),
    "features": ("feat_s4", "feat_s8", "feat_s16", "feat_s32"),
    "detect": ("boxes", "scores"),
    "segment": ("seg_logits",),
}


class DeployModule(nn.Module):
    input_names = ("images",)
    mean: Tensor  # buffers registered in __init__
    inv_std: Tensor

    def __init__(self, model: nn.Module, task: str, *, seg_output: str = "logits",
                 pre_nms_topk: int = PRE_NMS_TOPK, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        if task not in OUTPUT_NAMES:
            raise ValueError(f"unknown task {task!r}")
        if seg_output not in ("logits", "argmax"):
            raise ValueError(f"seg_output must be 'logits' or 'argmax', not {seg_output!r}")
        self.model = model
        self.task = task
        self.seg_output = seg_output
        self.pre_nms_topk = pre_nms_topk
        self.mean_values, self.std_values = tuple(mean), tuple(std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1),
                             persistent=False)
        names = OUTPUT_NAMES[task]
        if task == "segment" and seg_output == "argmax":
            names = ("seg_mask",)
        self.output_names: tuple[str, ...] = names

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        x = (images - self.mean) * self.inv_std
        if self.task == "classify":
            return (self.model(x),)
        if self.task == "features":
            if isinstance(self.model, PyramidTransformer):
                return tuple(self.model.forward_pyramid(x))
            feats: list[Tensor] = self.model.get_submodule("backbone")(x)
            return tuple(feats)
        if self.task == "detect":
            cls_scores, bbox_preds = self.model(x)
            return decode_detections(cls_scores, bbox_preds, images.shape[2], images.shape[3], self.pre_nms_topk)
        logits = self.model(x)
        if self.seg_output == "logits":
            return (logits,)
        full = resize_bilinear(logits, images.shape[2:])
        return (full.argmax(dim=1).to(torch.int32),)

    def peak_bytes(self, batch: int, height: int, width: int) -> int | None:
        """Memory the largest step of a forward pass on ``batch`` images of ``height`` x ``width`` needs:
        an attention's scores and their softmax, float32, which exist together (pvt_v2_b0-cls at
        1536x1536 on the CPU: 2.8 GB more at its peak than at 64x64, for a 1.36 GB score matrix).
        ``None`` for a model that is not a PVT."""
        backbone = self.model if isinstance(self.model, PyramidTransformer) else getattr(self.model, "backbone", None)
        if not isinstance(backbone, PyramidTransformer):
            return None
        return 2 * 4 * backbone.attention_size(batch, height, width)

    @property
    def postprocess(self) -> dict[str, Any]:
        """The manifest's ``postprocess`` record for this graph."""
        if self.task == "detect":
            return {"nms": "host", "score_threshold": SCORE_THRESHOLD, "iou_threshold": IOU_THRESHOLD,
                    "max_detections": MAX_DETECTIONS, "pre_nms_topk": self.pre_nms_topk}
        if self.task == "segment":
            return {"seg_output": self.seg_output, "output_stride": 4 if self.seg_output == "logits" else 1}
        if self.task == "classify":
            return {"topk": 5}
        return {}


def build_deploy_module(model: nn.Module, task: str | None = None, **kwargs: Any) -> DeployModule:
    """Wrap a model from :func:`create_model` (task read from the model unless given)."""
    task = task or getattr(model, "zoo_task", None)
    if task is None:
        raise ValueError("task is unknown: pass task= or a model made by create_model")
    return DeployModule(model, task, **kwargs).eval()
