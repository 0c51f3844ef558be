"""RetinaNet (mmdet 2.x semantics): head, anchors, box decoding, and the detector module.

Checkpoint names: ``bbox_head.cls_convs.{k}.conv``, ``bbox_head.reg_convs.{k}.conv``,
``bbox_head.retina_cls``, ``bbox_head.retina_reg``.

Anchors: 9 per location (3 octave scales x 3 ratios), base size = stride, octave_base_scale 4,
centre offset 0, ordered ratio-major then scale, locations row-major — the order in which the head's
``(A*C, H, W)`` outputs flatten to ``(H, W, A, C)``. Deltas are (dx, dy, dw, dh) with means 0 and
stds 1, dw/dh clamped at |log(16/1000)|, boxes clipped to the input image.

The anchors are computed from each level's runtime size, so an exported graph decodes correctly at
every input size (no anchor table baked for the export size).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pvt_deploy.models.layers import ConvModule, PyramidTransformer
from pvt_deploy.models.necks import FPN

STRIDES = (8, 16, 32, 64, 128)
RATIOS = (0.5, 1.0, 2.0)
OCTAVE_BASE_SCALE = 4
SCALES_PER_OCTAVE = 3
NUM_ANCHORS = len(RATIOS) * SCALES_PER_OCTAVE
WH_RATIO_CLIP = 16 / 1000
MAX_DELTA = abs(math.log(WH_RATIO_CLIP))

# Official test settings (mmdet test_cfg).
PRE_NMS_TOPK = 1000
SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 100


def base_anchors(stride: int) -> Tensor:
    """(9, 4) anchors centred on (0, 0) for one level, ratio-major order (mmdet AnchorGenerator)."""
    scales = torch.tensor([OCTAVE_BASE_SCALE * 2 ** (i / SCALES_PER_OCTAVE) for i in range(SCALES_PER_OCTAVE)])
    ratios = torch.tensor(RATIOS)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (stride * w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (stride * h_ratios[:, None] * scales[None, :]).reshape(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(base: Tensor, h: int | Tensor, w: int | Tensor, stride: int) -> Tensor:
    """(H*W*9, 4) anchors of one level for a feature map of runtime size (h, w)."""
    # A traced size is a 0-d Tensor, which arange takes; torch's stub lists only Python numbers.
    xs = torch.arange(w, device=base.device).to(base.dtype) * stride  # type: ignore[arg-type]
    ys = torch.arange(h, device=base.device).to(base.dtype) * stride  # type: ignore[arg-type]
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
    return (shifts + base.reshape(1, -1, 4)).reshape(-1, 4)


def decode_deltas(anchors: Tensor, deltas: Tensor, height: Tensor | int, width: Tensor | int) -> Tensor:
    """Apply (dx, dy, dw, dh) deltas to xyxy anchors; clip to [0, width] x [0, height]."""
    px = (anchors[..., 0] + anchors[..., 2]) * 0.5
    py = (anchors[..., 1] + anchors[..., 3]) * 0.5
    pw = anchors[..., 2] - anchors[..., 0]
    ph = anchors[..., 3] - anchors[..., 1]
    dx, dy = deltas[..., 0], deltas[..., 1]
    dw = deltas[..., 2].clamp(min=-MAX_DELTA, max=MAX_DELTA)
    dh = deltas[..., 3].clamp(min=-MAX_DELTA, max=MAX_DELTA)
    gx = px + pw * dx
    gy = py + ph * dy
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    zero = torch.zeros((), dtype=deltas.dtype, device=deltas.device)
    # ``one * size`` keeps a symbolic size symbolic in both exporters; ``torch.as_tensor(size)`` is
    # baked as a constant by the dynamo exporter (boxes clipped to the trace size at every size).
    one = torch.ones((), dtype=deltas.dtype, device=deltas.device)
    w_max = one * width
    h_max = one * height
    x1 = torch.minimum(torch.maximum(gx - gw * 0.5, zero), w_max)
    y1 = torch.minimum(torch.maximum(gy - gh * 0.5, zero), h_max)
    x2 = torch.minimum(torch.maximum(gx + gw * 0.5, zero), w_max)
    y2 = torch.minimum(torch.maximum(gy + gh * 0.5, zero), h_max)
    return torch.stack([x1, y1, x2, y2], dim=-1)


class RetinaNetHead(nn.Module):
    def __init__(self, num_classes: int = 80, in_channels: int = 256, feat_channels: int = 256,
                 stacked_convs: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_convs = nn.ModuleList(
            ConvModule(in_channels if i == 0 else feat_channels, feat_channels, 3, act=True)
            for i in range(stacked_convs))
        self.reg_convs = nn.ModuleList(
            ConvModule(in_channels if i == 0 else feat_channels, feat_channels, 3, act=True)
            for i in range(stacked_convs))
        self.retina_cls = nn.Conv2d(feat_channels, NUM_ANCHORS * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, NUM_ANCHORS * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Focal-loss prior: initial foreground probability 0.01.
        assert self.retina_cls.bias is not None  # built with a bias above
        nn.init.constant_(self.retina_cls.bias, -math.log((1 - 0.01) / 0.01))

    def forward_single(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        cls: Tensor = self.retina_cls(cls_feat)
        reg: Tensor = self.retina_reg(reg_feat)
        return cls, reg

    def forward(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        outs = [self.forward_single(f) for f in feats]
        return [o[0] for o in outs], [o[1] for o in outs]


class RetinaNet(nn.Module):
    """PVT backbone + FPN (P3-P7) + RetinaNet head. ``forward`` returns the raw per-level
    ``(cls_scores, bbox_preds)`` like mmdet; decoding lives in :func:`decode_detections` so the
    exported graph and the PyTorch backend share it."""

    task = "detect"

    def __init__(self, backbone: PyramidTransformer, num_classes: int = 80) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = FPN(backbone.out_channels, 256, start_level=1, num_outs=5, extra_on_input=True)
        self.bbox_head = RetinaNetHead(num_classes)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        outs: tuple[list[Tensor], list[Tensor]] = self.bbox_head(self.neck(self.backbone(x)))
        return outs


def topk_count(n: int | Tensor | torch.SymInt, k: int) -> int | Tensor | torch.SymInt:
    """``min(n, k)`` that stays symbolic when ``n`` is a traced/exported size."""
    if isinstance(n, Tensor):
        return torch.clamp(n, max=k)
    if isinstance(n, int):
        return min(n, k)
    count: torch.SymInt = torch.sym_min(n, k)  # SymInt under torch.export
    return count


def decode_detections(cls_scores: list[Tensor], bbox_preds: list[Tensor], height: int | Tensor,
                      width: int | Tensor, pre_nms_topk: int = PRE_NMS_TOPK) -> tuple[Tensor, Tensor]:
    """Per-level sigmoid, top-k by best class score, anchor decoding; levels concatenated.

    Returns ``boxes`` (N, K, 4) xyxy in input pixels and ``scores`` (N, K, C) — the ``nms=host``
    graph outputs. Everything after this (threshold, NMS, rescaling) is host post-processing.
    """
    all_boxes, all_scores = [], []
    for cls, reg, stride in zip(cls_scores, bbox_preds, STRIDES, strict=False):
        n, _, h, w = cls.shape
        num_classes = cls.shape[1] // NUM_ANCHORS
        scores = cls.permute(0, 2, 3, 1).reshape(n, -1, num_classes).sigmoid()
        deltas = reg.permute(0, 2, 3, 1).reshape(n, -1, 4)
        anchors = grid_anchors(base_anchors(stride).to(cls.device, cls.dtype), h, w, stride)
        k = topk_count(scores.shape[1], pre_nms_topk)
        # topk takes a traced 0-d Tensor k; torch's stub lists only int/SymInt.
        _, idx = scores.max(dim=-1).values.topk(k, dim=1)  # type: ignore[arg-type]
        scores = torch.gather(scores, 1, idx.unsqueeze(-1).expand(-1, -1, num_classes))
        deltas = torch.gather(deltas, 1, idx.unsqueeze(-1).expand(-1, -1, 4))
        all_boxes.append(decode_deltas(anchors[idx], deltas, height, width))
        all_scores.append(scores)
    return torch.cat(all_boxes, dim=1), torch.cat(all_scores, dim=1)
