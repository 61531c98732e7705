"""Normalization layers."""

from __future__ import annotations

from ..ir import Tensor, fn


def layer_norm(x: Tensor, name: str, dim: int, eps: float) -> Tensor:
    """LayerNorm over the last axis with ``<name>.weight`` and ``<name>.bias`` (as ``nn.LayerNorm``)."""
    g = x.builder
    return fn.layer_norm(x, g.param(f"{name}.weight", [dim]), g.param(f"{name}.bias", [dim]), eps=eps)


def rms_norm(x: Tensor, name: str, dim: int, eps: float) -> Tensor:
    """RMSNorm with ``<name>.weight`` as Llama's: normalized in float32, rounded to the input dtype,
    then scaled by the weight in that dtype."""
    return fn.rms_norm(x, eps=eps) * x.builder.param(f"{name}.weight", [dim])
