"""Rotary position embeddings on adjacent pairs (RoFormer, Su et al., 2021): dims (x0, x1), (x2, x3) ...
rotate together, by the sinusoidal angle ``pos / 10000**(2 * (j // 2) / dim)`` of their column ``j``.
This is transformers' RoFormer convention (``apply_rotary_position_embeddings``); Llama's half-split
``rotate_half`` pairs dim ``i`` with ``i + dim/2`` instead (`isoform.layers.rotary`).

Angles are computed in float32 from the integer positions; transformers builds its table in float64,
so the two differ by at most half an ulp of the angle (as `isoform.layers.sinusoidal`)."""

from __future__ import annotations

import numpy as np

from ..ir import Tensor, fn


def pair_sinusoids(positions: Tensor, dim: int, dtype) -> tuple[Tensor, Tensor]:
    """``cos``, ``sin`` [..., dim] in ``dtype`` of i64 ``positions`` [...], each angle repeated for
    the two dims of its pair."""
    g, p = positions.builder, positions.cast("f32").reshape(*positions.shape, 1)
    denom = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim).astype(np.float32)
    angles = p / g.constant(denom.tolist(), "f32")
    return fn.cos(angles).cast(dtype), fn.sin(angles).cast(dtype)


def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x * cos + rot(x) * sin`` for ``x`` [..., dim] (even ``dim``), ``rot`` mapping each pair
    (a, b) to (-b, a); ``cos``/``sin`` broadcast against ``x``."""
    *lead, dim = x.shape
    rotated = fn.concat(-x[..., 1::2].reshape(*lead, dim // 2, 1), x[..., 0::2].reshape(*lead, dim // 2, 1), axis=-1)
    return x * cos + rotated.reshape(*lead, dim) * sin
