"""Building blocks shared by PVT v1 and v2.

Attribute names follow the official whai362/PVT code so that official checkpoints load without any
renaming (``attn.q``, ``attn.kv``, ``attn.sr``, ``attn.norm``, ``mlp.fc1``, ``mlp.dwconv.dwconv`` ...).

Everything here is written for export: shapes are read from tensors (never baked from the example
input), there is no Python branching on tensor values, and adaptive pooling is expressed as two
small matrix products built from the runtime size (exact at every size, unlike the exporters'
fixed ``AveragePool``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Official PVT norms: blocks and stage/final norms use eps=1e-6; patch-embed and SRA norms use 1e-5.
BLOCK_NORM_EPS = 1e-6
LINEAR_SR_POOL = 7  # PVT v2 "li": keys and values come from a 7x7 pool, whatever the input size


def adaptive_pool_matrix(size: Tensor | int, out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The (out, size) matrix P with ``P @ x == adaptive_avg_pool1d(x, out)`` along one axis.

    Bin ``i`` covers ``[floor(i*size/out), ceil((i+1)*size/out))`` — PyTorch's AdaptiveAvgPool rule.
    ``size`` may be a traced/symbolic size, so the graph builds the matrix at run time (ONNX Range,
    integer Div, comparisons) and stays exact for every input size.
    """
    # A traced size is a 0-d Tensor, which arange takes; torch's stub lists only Python numbers.
    j = torch.arange(size, device=device).unsqueeze(0)  # type: ignore[arg-type]  # (1, size)
    i = torch.arange(out, device=device).unsqueeze(1)  # (out, 1)
    start = torch.div(i * size, out, rounding_mode="floor")
    end = torch.div((i + 1) * size + (out - 1), out, rounding_mode="floor")
    mask = (j >= start) & (j < end)
    return mask.to(dtype) / (end - start).to(dtype)


def is_exporting() -> bool:
    """True while torch.onnx / torch.export trace the model (TorchScript or dynamo exporter)."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_exporting") and compiler.is_exporting():
        return True
    # torch.jit exports is_tracing without listing it in __all__ or annotating it.
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())  # type: ignore[attr-defined,no-untyped-call]


def adaptive_avg_pool2d(x: Tensor, out: int) -> Tensor:
    """``nn.AdaptiveAvgPool2d(out)`` for NCHW input that exports exactly at every size.

    Eager mode runs PyTorch's kernel (bit-identical to the official model). Under export the pool is
    ``P_h @ x @ P_w^T`` with the matrices built from the runtime size, because both torch exporters
    get adaptive pooling wrong for dynamic sizes (the legacy one refuses it, dynamo bakes a fixed
    ``AveragePool`` that is silently wrong at other sizes). The two agree to float rounding.
    """
    if not is_exporting():
        return F.adaptive_avg_pool2d(x, out)
    return adaptive_avg_pool2d_matmul(x, out)


def adaptive_avg_pool2d_matmul(x: Tensor, out: int) -> Tensor:
    """The matrix-product form of adaptive average pooling (see :func:`adaptive_avg_pool2d`)."""
    h, w = x.shape[-2], x.shape[-1]
    ph = adaptive_pool_matrix(h, out, x.dtype, x.device)
    pw = adaptive_pool_matrix(w, out, x.dtype, x.device)
    return torch.matmul(torch.matmul(ph, x), pw.transpose(0, 1))


def tokens_to_map(x: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
    """(B, N, C) tokens -> (B, C, H, W) map."""
    # reshape takes traced 0-d Tensor sizes; torch's stub lists only int/SymInt.
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)  # type: ignore[arg-type]


class SpatialReductionAttention(nn.Module):
    """PVT's attention: queries at full resolution, keys/values from a spatially reduced sequence.

    ``sr_ratio > 1``: a strided conv + LayerNorm shrinks the K/V tokens by ``sr_ratio**2`` (PVT v1,
    v2). ``linear=True`` (PVT v2 "li"): K/V come from a 7x7 adaptive average pool, a 1x1 conv,
    LayerNorm and GELU, so attention cost is linear in the number of tokens.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1, qkv_bias: bool = True,
                 linear: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.sr_ratio = sr_ratio
        self.linear = linear
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if linear:
            self.sr = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
            self.norm = nn.LayerNorm(dim)
            self.act = nn.GELU()
        elif sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def _reduce(self, x: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
        if not self.linear and self.sr_ratio == 1:
            return x
        feat = tokens_to_map(x, h, w)
        if self.linear:
            feat = adaptive_avg_pool2d(feat, LINEAR_SR_POOL)
        feat = self.sr(feat).flatten(2).transpose(1, 2)
        feat = self.norm(feat)
        out: Tensor = self.act(feat) if self.linear else feat
        return out

    def forward(self, x: Tensor, h: int | Tensor, w: int | Tensor, queries: Tensor | None = None) -> Tensor:
        """Attention of every token of ``x`` (or of ``queries``, tokens of the same sequence, when
        given: their rows of the output) over the reduced sequence of ``x``."""
        b, n, c = (x if queries is None else queries).shape
        q = self.q(x if queries is None else queries).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(self._reduce(x, h, w)).reshape(b, -1, 2, self.num_heads, self.head_dim)
        kv = kv.permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        # Same order as the official code ((q @ k^T) * scale) so outputs match it bit for bit.
        attn = (torch.matmul(q, k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out: Tensor = self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, c))
        return out


class Mlp(nn.Module):
    """PVT v1 feed-forward: fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
        out: Tensor = self.fc2(self.act(self.fc1(x)))
        return out


class DWConv(nn.Module):
    """3x3 depthwise conv on tokens; the doubled name (``dwconv.dwconv``) is the official key."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
        feat: Tensor = self.dwconv(tokens_to_map(x, h, w))
        return feat.flatten(2).transpose(1, 2)


class ConvMlp(nn.Module):
    """PVT v2 feed-forward: fc1 -> (ReLU, "li" only) -> DWConv3x3 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int, linear: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.relu = nn.ReLU() if linear else nn.Identity()
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
        x = self.relu(self.fc1(x))
        out: Tensor = self.fc2(self.act(self.dwconv(x, h, w)))
        return out


class Block(nn.Module):
    """Pre-norm transformer block: x + SRA(norm1(x)); x + MLP(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, *, v2: bool,
                 linear: bool = False) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio, qkv_bias=True, linear=linear)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp: nn.Module = ConvMlp(dim, hidden, linear) if v2 else Mlp(dim, hidden)

    def forward(self, x: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        out: Tensor = x + self.mlp(self.norm2(x), h, w)
        return out

    def forward_first(self, x: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
        """Row 0 of :meth:`forward`, (B, 1, C), computed alone: the keys and values still come from
        every token, but the query, output projection and MLP run on one row. Only for token-wise
        MLPs (v1); v2's depthwise conv mixes neighbouring tokens."""
        if not isinstance(self.mlp, Mlp):
            raise TypeError("forward_first needs a token-wise MLP (PVT v1 blocks)")
        y = self.norm1(x)
        x = x[:, :1] + self.attn(y, h, w, queries=y[:, :1])
        out: Tensor = x + self.mlp(self.norm2(x), h, w)
        return out


class PatchEmbed(nn.Module):
    """Conv patchify (+ LayerNorm) returning tokens and the token grid size.

    v1: non-overlapping (kernel = stride = patch). v2: overlapping (kernel 7/s4 then 3/s2, padded).
    """

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=kernel, stride=stride, padding=kernel // 2
                              if kernel > stride else 0)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int | Tensor, int | Tensor]:
        x = self.proj(x)
        h, w = x.shape[-2], x.shape[-1]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class PyramidTransformer(nn.Module):
    """What PVT v1 and v2 share: four stages, a feature pyramid for detection/segmentation, and a
    classifier path (stage-4 tokens pooled, then ``head``). Subclasses define ``_stage`` and ``_pool``."""

    num_classes: int
    out_channels: list[int]  # channels of the four pyramid levels
    head: nn.Module  # classifiers only (num_classes > 0)

    def _stage(self, i: int, x: Tensor, with_cls: bool = False) -> tuple[Tensor, int | Tensor, int | Tensor]:
        raise NotImplementedError

    def _pool(self, tokens: Tensor) -> Tensor:
        """Stage-4 tokens -> the classifier's feature vector."""
        raise NotImplementedError

    def attention_size(self, batch: int, height: int, width: int) -> int:
        """Elements of the largest attention-score matrix (batch x heads x queries x keys) a forward pass
        at a ``height`` x ``width`` input makes, counted from the layers (no tensor is made). It bounds
        the memory of a large input: stage 1's queries grow with the pixels and its spatially reduced
        keys too (pvt_v2_b0 at 5000x5000: 1250*1250 queries over 156*156 keys, 152 GB in float32)."""
        most = 0
        for i in range(4):
            proj = getattr(self, f"patch_embed{i + 1}").proj
            height, width = ((n + 2 * proj.padding[d] - proj.kernel_size[d]) // proj.stride[d] + 1
                             for d, n in enumerate((height, width)))
            attn = getattr(self, f"block{i + 1}")[0].attn
            queries = height * width + (1 if i == 3 and getattr(self, "cls_token", None) is not None else 0)
            if attn.linear:
                keys = LINEAR_SR_POOL * LINEAR_SR_POOL
            elif attn.sr_ratio > 1:
                keys = (height // attn.sr_ratio) * (width // attn.sr_ratio)
            else:
                keys = queries
            most = max(most, batch * attn.num_heads * queries * keys)
        return most

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        """The four feature maps (strides 4, 8, 16, 32) of the official detection backbone."""
        outs = []
        for i in range(4):
            x, h, w = self._stage(i, x)
            x = tokens_to_map(x, h, w).contiguous()
            outs.append(x)
        return outs

    def forward_features(self, x: Tensor) -> Tensor:
        """Classifier features (stage-4 tokens pooled)."""
        for i in range(3):
            x, h, w = self._stage(i, x)
            x = tokens_to_map(x, h, w).contiguous()
        x, _, _ = self._stage(3, x, with_cls=True)
        return self._pool(x)

    def forward_head(self, feats: Tensor) -> Tensor:
        logits: Tensor = self.head(feats)
        return logits

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.num_classes > 0:
            return self.forward_head(self.forward_features(x))
        return self.forward_pyramid(x)


class ConvModule(nn.Module):
    """Conv2d (+ BatchNorm) (+ ReLU) with mmcv's attribute names (``conv``, ``bn``) for checkpoints."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, norm: bool = False,
                 act: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not norm)
        self.bn = nn.BatchNorm2d(cout) if norm else None
        self.act = nn.ReLU(inplace=True) if act else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


def resize_bilinear(x: Tensor, size: Sequence[int | Tensor]) -> Tensor:
    """Bilinear resize (align_corners=False) to ``size`` (height, width); traced sizes stay symbolic."""
    # interpolate takes traced 0-d Tensor sizes; torch's stub lists only ints.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # type: ignore[arg-type]
