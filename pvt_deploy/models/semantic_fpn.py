"""Semantic FPN (mmseg FPNHead semantics) and the segmenter module.

Checkpoint names: ``neck.*`` (FPN, 4 levels, no extras), ``decode_head.scale_heads.{i}.{j}.conv``
and ``.bn`` (even ``j``: Conv3x3-BN-ReLU; odd ``j``: a parameter-free bilinear x2 upsample),
``decode_head.conv_seg``. Levels at strides 4/8/16/32 get 1/1/2/3 conv modules; every level is brought
to stride 4 and summed, then a 1x1 ``conv_seg`` gives per-class logits at stride 4. Resizing the
logits to the image and the argmax are post-processing (host, or in the graph as an option).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from pvt_deploy.models.layers import ConvModule, PyramidTransformer, resize_bilinear
from pvt_deploy.models.necks import FPN

FEATURE_STRIDES = (4, 8, 16, 32)


class Upsample2x(nn.Module):
    """Bilinear x2 (align_corners=False), sized from the input like mmseg's ``Upsample``."""

    def forward(self, x: Tensor) -> Tensor:
        return resize_bilinear(x, (x.shape[2] * 2, x.shape[3] * 2))


class SemanticFPNHead(nn.Module):
    def __init__(self, num_classes: int = 150, in_channels: int = 256, channels: int = 128) -> None:
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for stride in FEATURE_STRIDES:
            length = max(1, int(math.log2(stride) - math.log2(FEATURE_STRIDES[0])))
            layers: list[nn.Module] = []
            for k in range(length):
                layers.append(ConvModule(in_channels if k == 0 else channels, channels, 3, norm=True, act=True))
                if stride != FEATURE_STRIDES[0]:
                    layers.append(Upsample2x())
            self.scale_heads.append(nn.Sequential(*layers))
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        assert self.conv_seg.bias is not None  # built with a bias above
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, feats: list[Tensor]) -> Tensor:
        out: Tensor = self.scale_heads[0](feats[0])
        for i in range(1, len(FEATURE_STRIDES)):
            out = out + resize_bilinear(self.scale_heads[i](feats[i]), out.shape[2:])
        logits: Tensor = self.conv_seg(out)  # dropout is the identity at inference
        return logits


class SemanticFPN(nn.Module):
    """PVT backbone + FPN + Semantic FPN head; ``forward`` returns logits at stride 4."""

    task = "segment"

    def __init__(self, backbone: PyramidTransformer, num_classes: int = 150) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = FPN(backbone.out_channels, 256, start_level=0, num_outs=4)
        self.decode_head = SemanticFPNHead(num_classes)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.decode_head(self.neck(self.backbone(x)))
        return logits
