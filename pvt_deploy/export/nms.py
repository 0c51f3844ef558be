"""Non-maximum suppression inside the exported graph (``--nms graph``).

The default detection graph stops at decoded boxes and scores and leaves NMS to the host (shared code,
OpenCV's batched NMS). ``--nms graph`` appends NMS to the graph instead, with the fixed-size output
layout of TensorRT's ``EfficientNMS_TRT`` plugin, so a consumer that cannot run Python (Triton, a C++
app, DeepStream) gets final detections::

    num_dets    int32   (N, 1)      how many rows of the tensors below are valid
    det_boxes   float32 (N, M, 4)   xyxy in input pixels, best first; rows past num_dets are zero
    det_scores  float32 (N, M)
    det_classes int32   (N, M)

``M`` is ``max_detections``. NMS is per class at ``iou_threshold`` (suppress when IoU > threshold,
mmcv's rule), on (box, class) pairs whose score is above ``score_threshold``; each class keeps at most
``M`` boxes and the best ``M`` over all classes are returned — the host NMS's semantics.

How it exports without torchvision: NMS is a custom op, ``pvt_deploy::nms``, with the exact signature
and output of ONNX ``NonMaxSuppression``. Its eager kernel (used by PyTorch inference and tests) does
the greedy suppression; the TorchScript exporter maps it through a registered symbolic and the dynamo
exporter through a custom translation (onnxscript), both emitting the standard ONNX op, which ONNX
Runtime and TensorRT implement. Everything after it (gathering, the top-``M`` and zero padding) is
plain tensor code that traces at any batch size and box count.

One difference to the host path: the graph does not know each image's letterbox, so boxes are
clipped to the padded input, not to the image content, before NMS. Boxes reaching into the padding
can therefore suppress slightly differently; with inputs that need no padding the two agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pvt_deploy.models.deploy import DeployModule

NMS_OP = "pvt_deploy::nms"
GRAPH_NMS_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


def _greedy_nms(boxes: np.ndarray, iou_threshold: float, limit: int) -> list[int]:
    """Indices kept by greedy NMS over score-sorted xyxy ``boxes`` (ONNX/mmcv IoU, no +1 offset)."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.arange(boxes.shape[0])
    keep: list[int] = []
    while order.size and len(keep) < limit:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.maximum(iw, 0) * np.maximum(ih, 0)
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[~(iou > iou_threshold)]
    return keep


@torch.library.custom_op(NMS_OP, mutates_args=())
def onnx_nms(boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float,
             score_threshold: float) -> Tensor:
    """ONNX ``NonMaxSuppression`` (corner boxes): boxes (N, K, 4), scores (N, C, K) -> (S, 3) int64
    rows ``[batch, class, box]``, per batch and class in descending score order."""
    b = boxes.detach().to(torch.float32).cpu().numpy()
    s = scores.detach().to(torch.float32).cpu().numpy()
    rows: list[np.ndarray] = []
    for n in range(s.shape[0]):
        for c in range(s.shape[1]):
            cand = np.nonzero(s[n, c] > score_threshold)[0]
            if cand.size == 0 or max_per_class <= 0:
                continue
            cand = cand[np.argsort(-s[n, c, cand], kind="stable")]
            kept = cand[_greedy_nms(b[n, cand], iou_threshold, max_per_class)]
            rows.append(np.stack([np.full(kept.size, n), np.full(kept.size, c), kept], axis=1))
    out = np.concatenate(rows, axis=0) if rows else np.zeros((0, 3), dtype=np.int64)
    return torch.from_numpy(out.astype(np.int64)).to(boxes.device)


@onnx_nms.register_fake
def _onnx_nms_fake(boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float,
                   score_threshold: float) -> Tensor:
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((count, 3), dtype=torch.int64)


def _nms_symbolic(g: Any, boxes: Any, scores: Any, max_per_class: Any, iou_threshold: Any,
                  score_threshold: Any) -> Any:
    """TorchScript-exporter symbolic: the standard ONNX op with its thresholds as constants."""
    from torch.onnx import symbolic_helper as sh

    def const(value: Any, kind: str, dtype: torch.dtype) -> Any:
        return g.op("Constant", value_t=torch.tensor([sh._get_const(value, kind, "nms")], dtype=dtype))

    return g.op("NonMaxSuppression", boxes, scores, const(max_per_class, "i", torch.int64),
                const(iou_threshold, "f", torch.float32), const(score_threshold, "f", torch.float32))


_registered = False


def register_torchscript_symbolic() -> None:
    """Teach the TorchScript exporter ``pvt_deploy::nms`` (idempotent)."""
    global _registered
    if not _registered:
        # NonMaxSuppression-11 and later
        torch.onnx.register_custom_op_symbolic(NMS_OP, _nms_symbolic, 11)  # type: ignore[attr-defined]
        _registered = True


def dynamo_translation_table(opset: int) -> dict[Any, Any]:
    """``custom_translation_table`` for the dynamo exporter: ``pvt_deploy::nms`` -> ONNX NMS."""
    import onnxscript

    op = getattr(onnxscript, f"opset{opset}")

    def nms_onnx(boxes: Any, scores: Any, max_per_class: int, iou_threshold: float,
                 score_threshold: float) -> Any:
        return op.NonMaxSuppression(boxes, scores, op.Constant(value_ints=[max_per_class]),
                                    op.Constant(value_floats=[iou_threshold]),
                                    op.Constant(value_floats=[score_threshold]))

    return {torch.ops.pvt_deploy.nms.default: nms_onnx}


def pack_detections(boxes: Tensor, scores: Tensor, *, max_detections: int, iou_threshold: float,
                    score_threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(N, K, 4) boxes and (N, K, C) scores -> the EfficientNMS layout (see the module docstring).

    The selected (batch, class, box) rows are scattered into an (N, S + M) score matrix (-1 where a
    row belongs to another image, plus M padding columns so top-M always exists), and top-M picks each
    image's best detections; padding rows come out as zeros.
    """
    n, k, c = scores.shape
    m = max_detections
    sel = onnx_nms(boxes, scores.transpose(1, 2), m, iou_threshold, score_threshold)
    b, cls, idx = sel[:, 0], sel[:, 1], sel[:, 2]
    flat = b * k + idx
    sel_scores = scores.reshape(-1)[flat * c + cls]
    sel_boxes = boxes.reshape(-1, 4)[flat]
    image_ids = torch.arange(n, device=boxes.device)
    mine = b.unsqueeze(0) == image_ids.unsqueeze(1)  # (N, S)
    dense = torch.where(mine, sel_scores.unsqueeze(0), torch.full_like(sel_scores, -1.0).unsqueeze(0))
    dense = torch.cat([dense, torch.full((n, m), -1.0, dtype=scores.dtype, device=scores.device)], dim=1)
    top_scores, top_idx = dense.topk(m, dim=1)
    valid = top_scores > -0.5
    all_boxes = torch.cat([sel_boxes, torch.zeros((m, 4), dtype=boxes.dtype, device=boxes.device)], dim=0)
    all_classes = torch.cat([cls, torch.zeros((m,), dtype=cls.dtype, device=cls.device)], dim=0)
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    num_dets = valid.sum(dim=1, keepdim=True).to(torch.int32)
    det_boxes = torch.where(valid.unsqueeze(-1), all_boxes[top_idx], zero)
    det_scores = torch.where(valid, top_scores, zero)
    det_classes = torch.where(valid, all_classes[top_idx], torch.zeros((), dtype=cls.dtype,
                                                                       device=cls.device)).to(torch.int32)
    return num_dets, det_boxes, det_scores, det_classes


class GraphNMSModule(nn.Module):
    """A detection :class:`~pvt_deploy.models.DeployModule` with NMS appended (``nms=graph``).

    Same input and attributes as the wrapped module; outputs :data:`GRAPH_NMS_OUTPUTS`. Thresholds
    default to the wrapped module's ``postprocess`` record (the manifest's), so host and graph NMS
    agree.
    """

    input_names = ("images",)
    output_names = GRAPH_NMS_OUTPUTS

    def __init__(self, deploy: DeployModule, *, max_detections: int | None = None,
                 score_threshold: float | None = None, iou_threshold: float | None = None) -> None:
        super().__init__()
        if getattr(deploy, "task", None) != "detect":
            raise ValueError("graph NMS needs a detection graph")
        post = deploy.postprocess
        self.deploy = deploy
        self.task = "detect"
        self.mean_values, self.std_values = deploy.mean_values, deploy.std_values
        self.max_detections = int(max_detections if max_detections is not None else post["max_detections"])
        self.score_threshold = float(score_threshold if score_threshold is not None else post["score_threshold"])
        self.iou_threshold = float(iou_threshold if iou_threshold is not None else post["iou_threshold"])

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        boxes, scores = self.deploy(images)
        return pack_detections(boxes, scores, max_detections=self.max_detections,
                               iou_threshold=self.iou_threshold, score_threshold=self.score_threshold)

    def peak_bytes(self, batch: int, height: int, width: int) -> int | None:
        """The wrapped module's (:meth:`DeployModule.peak_bytes`): NMS adds little."""
        return self.deploy.peak_bytes(batch, height, width)

    @property
    def postprocess(self) -> dict[str, Any]:
        return {**self.deploy.postprocess, "nms": "graph", "score_threshold": self.score_threshold,
                "iou_threshold": self.iou_threshold, "max_detections": self.max_detections}


def build_graph_nms(deploy: DeployModule, **kwargs: Any) -> GraphNMSModule:
    """Wrap a detection deploy module so that NMS runs in the graph (see :class:`GraphNMSModule`)."""
    return GraphNMSModule(deploy, **kwargs).eval()
