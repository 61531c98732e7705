"""Grouped position-wise projections: the 1x1 ``nn.Conv1d(cin, cout, 1, groups=g)`` that SqueezeBERT
runs on channels-first [batch, channels, seq] states.

A kernel-1 convolution mixes channels at each position on its own, so on isoform's channels-last
[batch, seq, channels] layout it is a linear layer whose channels split into ``g`` independent
blocks: the graph stores the weight as ``[g, cin/g, cout/g]`` (one ``[in, out]`` matrix per group)
and computes all groups with one batched ``matmul`` - ``g`` times fewer multiply-adds than the dense
block-diagonal matrix, and no per-call transpose of the weight. ``g = 1`` is a plain `linear`. The
weight map reshapes and transposes the checkpoint's ``[cout, cin/g, 1]`` once at load (back at save).
"""

from __future__ import annotations

from ..ir import Tensor
from ..weights import Rename, Reshape, Rule, Transpose
from .linear import linear


def grouped_linear(x: Tensor, name: str, in_features: int, out_features: int, groups: int) -> Tensor:
    """[batch, seq, in_features] -> [batch, seq, out_features] through ``groups`` block-diagonal blocks,
    with ``<name>.weight`` [groups, in/groups, out/groups] and ``<name>.bias`` [out_features]."""
    if groups == 1:
        return linear(x, name, in_features, out_features)
    g, (batch, seq, _) = x.builder, x.shape
    w = g.param(f"{name}.weight", [groups, in_features // groups, out_features // groups])
    y = x.reshape(batch, seq, groups, in_features // groups).transpose(0, 2, 1, 3) @ w  # [batch, groups, seq, out/g]
    return y.transpose(0, 2, 1, 3).reshape(batch, seq, out_features) + g.param(f"{name}.bias", [out_features])


def conv1x1_rules(name: str, in_features: int, out_features: int, groups: int, *, prefixed: bool = True) -> list[Rule]:
    """Weight-map rules of a `grouped_linear` stored as a kernel-1 ``Conv1d`` (``[out, in/groups, 1]``)."""
    i, o = in_features // groups, out_features // groups
    back = (out_features, i, 1)
    transform = ([Reshape((out_features, in_features), back), Transpose()] if groups == 1
                 else [Reshape((groups, o, i), back), Transpose((0, 2, 1))])
    return [Rename(f"{name}.weight", f"{name}.weight", transform, prefixed=prefixed),
            Rename(f"{name}.bias", f"{name}.bias", prefixed=prefixed)]
