"""Feature Pyramid Network with mmdet/mmseg semantics and checkpoint names.

``neck.lateral_convs.{k}.conv`` (1x1) and ``neck.fpn_convs.{k}.conv`` (3x3), nearest top-down
upsampling to the next level's size. RetinaNet (mmdet) uses ``start_level=1`` and two extra levels
computed from C5 (``add_extra_convs='on_input'``: P6 = 3x3/s2 conv on C5, P7 = 3x3/s2 conv on P6,
no ReLU between). Semantic FPN (mmseg) uses all four levels and no extras.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pvt_deploy.models.layers import ConvModule


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int = 256, *, start_level: int = 0,
                 num_outs: int | None = None, extra_on_input: bool = False) -> None:
        super().__init__()
        self.start_level = start_level
        used = len(in_channels) - start_level
        self.num_outs = num_outs or used
        self.num_extra = self.num_outs - used
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1) for c in in_channels[start_level:])
        self.fpn_convs = nn.ModuleList(ConvModule(out_channels, out_channels, 3) for _ in range(used))
        for i in range(self.num_extra):
            cin = in_channels[-1] if (i == 0 and extra_on_input) else out_channels
            self.fpn_convs.append(ConvModule(cin, out_channels, 3, stride=2))
        self.extra_on_input = extra_on_input
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs: list[Tensor]) -> list[Tensor]:
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        used = len(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        if self.num_extra:
            source = inputs[-1] if self.extra_on_input else outs[-1]
            outs.append(self.fpn_convs[used](source))
            for i in range(used + 1, self.num_outs):
                outs.append(self.fpn_convs[i](outs[-1]))
        return outs
