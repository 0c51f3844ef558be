"""PVT v2 (Wang et al., CVMJ 2022): pvt_v2_b0 .. b5 and b2_li.

Differences from v1: overlapping patch embeddings (7x7/s4, then 3x3/s2), a 3x3 depthwise conv inside
the MLP instead of positional embeddings (so any input size works without interpolation), a
LayerNorm after every stage (``norm1..4``), and the classifier averages the stage-4 tokens.
``b2_li`` uses linear spatial-reduction attention (7x7 adaptive pooling of K/V) — here written as two
matrix products so the exported graph is exact at every size (see ``layers.adaptive_avg_pool2d``).

One class serves as classifier (``num_classes > 0``) and as backbone (``num_classes == 0``).
"""

from __future__ import annotations

from torch import Tensor, nn

from pvt_deploy.models.layers import BLOCK_NORM_EPS, Block, PatchEmbed, PyramidTransformer
from pvt_deploy.models.pvt import PVTConfig

_SMALL = (32, 64, 160, 256)
CONFIGS: dict[str, PVTConfig] = {
    "pvt_v2_b0": PVTConfig(depths=(2, 2, 2, 2), embed_dims=_SMALL),
    "pvt_v2_b1": PVTConfig(depths=(2, 2, 2, 2)),
    "pvt_v2_b2": PVTConfig(depths=(3, 4, 6, 3)),
    "pvt_v2_b2_li": PVTConfig(depths=(3, 4, 6, 3), linear=True),
    "pvt_v2_b3": PVTConfig(depths=(3, 4, 18, 3)),
    "pvt_v2_b4": PVTConfig(depths=(3, 8, 27, 3)),
    "pvt_v2_b5": PVTConfig(depths=(3, 6, 40, 3), mlp_ratios=(4, 4, 4, 4)),
}


class PyramidVisionTransformerV2(PyramidTransformer):
    is_v2 = True

    def __init__(self, cfg: PVTConfig, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.out_channels = list(cfg.embed_dims)
        prev = in_chans
        for i, dim in enumerate(cfg.embed_dims):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", PatchEmbed(prev, dim, kernel=kernel, stride=stride))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                Block(dim, cfg.num_heads[i], cfg.mlp_ratios[i], cfg.sr_ratios[i], v2=True, linear=cfg.linear)
                for _ in range(cfg.depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=BLOCK_NORM_EPS))
            prev = dim
        if num_classes > 0:
            self.head = nn.Linear(cfg.embed_dims[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _stage(self, i: int, x: Tensor, with_cls: bool = False) -> tuple[Tensor, int | Tensor, int | Tensor]:
        x, h, w = getattr(self, f"patch_embed{i + 1}")(x)
        for blk in getattr(self, f"block{i + 1}"):
            x = blk(x, h, w)
        return getattr(self, f"norm{i + 1}")(x), h, w

    def _pool(self, tokens: Tensor) -> Tensor:
        """Stage-4 tokens (already through ``norm4``) averaged."""
        return tokens.mean(dim=1)
