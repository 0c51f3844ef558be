"""PVT v1 (Wang et al., ICCV 2021): pvt_tiny / small / medium / large.

One class serves as classifier (``num_classes > 0``: cls token in stage 4, final norm, head) and as
the detection/segmentation backbone (``num_classes == 0``: four NCHW maps at strides 4/8/16/32, no
cls token/norm/head — exactly the official mmdet/mmseg backbone, whose ``pos_embed4`` still carries
the unused cls slot).

Export note: the official code skips positional-embedding interpolation when a stage's token count
equals stage 1's at 224 (``H*W == 3136``), a branch on sizes that tracing bakes in and that crashes
at sizes such as 448x448. Here the embeddings are always interpolated (bilinear,
align_corners=False), which is bit-exact at the training size and correct everywhere else.

The classifier's output depends on the last block only through its cls-token row, so the exported
graph computes that block's query, output projection and MLP for the cls row alone (its keys and
values still see every token): the same logits to float rounding, for ~4 % fewer multiplies in
``pvt_small``. Eager mode runs the official forward, which the export parity gate compares against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pvt_deploy.models.layers import (
    BLOCK_NORM_EPS,
    Block,
    PatchEmbed,
    PyramidTransformer,
    is_exporting,
    resize_bilinear,
)


@dataclass(frozen=True)
class PVTConfig:
    depths: tuple[int, int, int, int]
    embed_dims: tuple[int, int, int, int] = (64, 128, 320, 512)
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    mlp_ratios: tuple[float, float, float, float] = (8, 8, 4, 4)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    linear: bool = False  # PVT v2 "li" only


CONFIGS: dict[str, PVTConfig] = {
    "pvt_tiny": PVTConfig(depths=(2, 2, 2, 2)),
    "pvt_small": PVTConfig(depths=(3, 4, 6, 3)),
    "pvt_medium": PVTConfig(depths=(3, 4, 18, 3)),
    "pvt_large": PVTConfig(depths=(3, 8, 27, 3)),
}

PRETRAIN_SIZE = 224  # positional embeddings are learnt on a 224x224 input


class PyramidVisionTransformer(PyramidTransformer):
    is_v2 = False

    def __init__(self, cfg: PVTConfig, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.out_channels = list(cfg.embed_dims)
        self.pos_grids: list[int] = []
        prev = in_chans
        for i, dim in enumerate(cfg.embed_dims):
            patch = 4 if i == 0 else 2
            grid = PRETRAIN_SIZE // (4 * 2**i)
            self.pos_grids.append(grid)
            setattr(self, f"patch_embed{i + 1}", PatchEmbed(prev, dim, kernel=patch, stride=patch))
            n_pos = grid * grid + (1 if i == 3 else 0)  # stage 4 keeps a cls slot, even in backbones
            setattr(self, f"pos_embed{i + 1}", nn.Parameter(torch.zeros(1, n_pos, dim)))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                Block(dim, cfg.num_heads[i], cfg.mlp_ratios[i], cfg.sr_ratios[i], v2=False)
                for _ in range(cfg.depths[i])))
            prev = dim
        if num_classes > 0:
            self.norm = nn.LayerNorm(cfg.embed_dims[3], eps=BLOCK_NORM_EPS)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dims[3]))
            self.head = nn.Linear(cfg.embed_dims[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for i in range(4):
            nn.init.trunc_normal_(getattr(self, f"pos_embed{i + 1}"), std=0.02)
        if self.num_classes > 0:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _pos_embed(self, i: int, h: int | Tensor, w: int | Tensor) -> Tensor:
        pos = getattr(self, f"pos_embed{i + 1}")
        if i == 3:
            pos = pos[:, 1:]
        g = self.pos_grids[i]
        grid = pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        return resize_bilinear(grid, (h, w)).flatten(2).transpose(1, 2)

    def _stage(self, i: int, x: Tensor, with_cls: bool = False) -> tuple[Tensor, int | Tensor, int | Tensor]:
        x, h, w = getattr(self, f"patch_embed{i + 1}")(x)
        pos = self._pos_embed(i, h, w)
        if with_cls:
            cls_pos = getattr(self, f"pos_embed{i + 1}")[:, :1]
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            pos = torch.cat([cls_pos, pos], dim=1)
        x = x + pos
        blocks = getattr(self, f"block{i + 1}")
        # The classifier reads only the cls token after the last block, so the exported graph computes
        # that block for the cls row alone (see the module docstring); eager runs the official forward.
        prune = with_cls and is_exporting()
        for blk in blocks[:-1] if prune else blocks:
            x = blk(x, h, w)
        if prune:
            x = blocks[-1].forward_first(x, h, w)
        return x, h, w

    def _pool(self, tokens: Tensor) -> Tensor:
        """The normalised cls token."""
        normed: Tensor = self.norm(tokens)
        return normed[:, 0]
