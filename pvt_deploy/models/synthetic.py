"""Seeded synthetic weights in the official key layout.

Real PVT weights cannot be downloaded everywhere (CI, air-gapped boxes), yet tests, benchmarks and
demos need models whose outputs are deterministic and non-trivial: detections above the score
threshold, segmentation maps with several classes, peaked classifier logits. ``seeded_state_dict``
draws every tensor from a seeded generator, in sorted key order, so the same (model, seed) gives the
same bytes on every machine; the scales mimic trained networks (unit LayerNorm gains, small linear
weights, He-scaled convs) and ``head_gain`` makes the task heads confident enough to produce output.

These are NOT trained weights: nothing they predict means anything.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def seeded_state_dict(model: nn.Module, seed: int = 0, *, head_gain: float = 1.0) -> dict[str, torch.Tensor]:
    """A state dict for ``model`` (same keys and shapes) filled from ``torch.Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, ref in sorted(model.state_dict().items()):
        if not ref.is_floating_point():
            out[key] = ref.clone()
            continue
        shape = ref.shape
        noise = torch.randn(shape, generator=g, dtype=torch.float32)
        leaf = key.rsplit(".", 1)[-1]
        is_norm = ".norm" in key or key.startswith("norm") or ".bn." in key
        if leaf == "running_var":
            t = 1.0 + 0.1 * noise.abs()
        elif leaf == "running_mean":
            t = 0.1 * noise
        elif is_norm and leaf == "weight":
            t = 1.0 + 0.1 * noise
        elif leaf == "bias" or key.startswith(("pos_embed", "backbone.pos_embed")) or "cls_token" in key:
            t = 0.02 * noise
        elif len(shape) == 4:  # conv: He scale on fan-in
            fan_in = shape[1] * shape[2] * shape[3]
            t = noise * math.sqrt(2.0 / fan_in)
        elif len(shape) == 2:  # linear
            t = noise * (1.0 / math.sqrt(shape[1]))
        else:
            t = 0.02 * noise
        if key.endswith(("retina_cls.weight", "conv_seg.weight")) or key in ("head.weight",):
            t = t * head_gain
        if key.endswith("retina_cls.bias"):
            t = t - 2.0  # sigmoid(-2) ≈ 0.12: some anchors clear the 0.05 score threshold
        out[key] = t.to(ref.dtype)
    return out


def seed_model(model: nn.Module, seed: int = 0, *, head_gain: float = 1.0) -> nn.Module:
    """Load :func:`seeded_state_dict` into ``model`` in place (and mark it as synthetic)."""
    model.load_state_dict(seeded_state_dict(model, seed, head_gain=head_gain))
    model.random_init = False  # type: ignore[assignment]
    model.synthetic_weights = seed  # type: ignore[assignment]
    return model
