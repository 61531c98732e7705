"""Poolers: from per-token states [batch, seq, dim] to one vector per sequence."""

from __future__ import annotations

from ..ir import Tensor, fn
from .linear import linear


def first_token(x: Tensor) -> Tensor:
    """The state of the first token (``[CLS]`` / ``<s>``): [batch, dim]."""
    return x[:, 0]


def tanh_pooler(x: Tensor, name: str, dim: int) -> Tensor:
    """BERT's pooler: ``tanh(dense(x[:, 0]))`` with the linear layer ``<name>``."""
    return fn.tanh(linear(first_token(x), name, dim, dim))


def mean_pool(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of the states whose ``mask`` [batch, seq] is non-zero, as sentence-transformers computes
    it: ``sum(x * m) / max(sum(m), 1e-9)``."""
    m = mask.cast(x.dtype).reshape(*mask.shape, 1)
    total = (x * m).sum(1)
    count = fn.maximum(m.sum(1), x.builder.constant(1e-9, x.dtype))
    return total / count
