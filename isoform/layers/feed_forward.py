"""Position-wise feed-forward blocks."""

from __future__ import annotations

from ..ir import Tensor
from .activations import activation
from .linear import linear


def feed_forward(x: Tensor, up: str, down: str, dim: int, inner: int, act: str) -> Tensor:
    """``down(act(up(x)))``: the two linear layers named ``up`` [dim -> inner] and ``down`` [inner -> dim]
    (column- and row-parallel)."""
    return linear(activation(act)(linear(x, up, dim, inner, shard="column")), down, inner, dim, shard="row")
