"""Sinusoidal position embeddings, computed in the graph from integer positions.

Two layouts exist in transformers: Marian/Pegasus (``create_weight``: ``sin`` of the even angles
in the first half, ``cos`` of the odd ones in the second, angle ``pos / 10000**(2*(j//2)/dim)``)
and fairseq/M2M100 (``get_embedding``: ``[sin, cos]`` of ``pos * exp(-k * log(10000)/(half-1))``,
a zero column for odd ``dim``). The angles are computed in float32: transformers builds the
Marian/Pegasus table in float64, so the two differ by at most half an ulp of the angle
(~6e-5 at position 1000, ~1e-6 below 20).
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Tensor, fn


def marian_positions(positions: Tensor, dim: int, dtype) -> Tensor:
    """Marian/Pegasus embedding [..., dim] of i64 ``positions`` [...]: sin of the even-``j`` angles,
    then cos of the odd-``j`` ones."""
    g, p = positions.builder, positions.cast("f32").reshape(*positions.shape, 1)
    denom = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim).astype(np.float32)
    s = fn.sin(p / g.constant(denom[0::2].tolist(), "f32"))
    c = fn.cos(p / g.constant(denom[1::2].tolist(), "f32"))
    return fn.concat(s, c, axis=-1).cast(dtype)


def fairseq_positions(positions: Tensor, dim: int, padding_idx: int | None, dtype) -> Tensor:
    """fairseq/M2M100 embedding [..., dim] of i64 ``positions``; the ``padding_idx`` row is zero."""
    half = dim // 2
    step = np.float32(math.log(10000) / (half - 1))
    freq = np.exp(np.arange(half, dtype=np.float32) * -step)
    g, p = positions.builder, positions.cast("f32").reshape(*positions.shape, 1)
    angles = p * g.constant(freq.tolist(), "f32")
    parts = [fn.sin(angles), fn.cos(angles)]
    if dim % 2:
        parts.append(fn.broadcast_to(g.constant([0.0], "f32"), shape=[*positions.shape, 1]))
    x = fn.concat(*parts, axis=-1).cast(dtype)
    if padding_idx is None:
        return x
    keep = fn.ne(positions, positions.builder.constant(padding_idx, positions.dtype)).cast(dtype)
    return x * keep.reshape(*positions.shape, 1)
