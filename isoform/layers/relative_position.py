"""T5's bucketed relative position bias (Raffel et al., 2020).

The bucket of a relative position ``key - query`` is a function of the distance that saturates at
``max_distance``, so one small table over ``[-max_distance, max_distance]`` covers every sequence
length: positions are clamped into that range and looked up. The table is computed in NumPy in
float32 exactly as transformers' ``T5Attention._relative_position_bucket`` does in torch (the
``log`` then truncation to an integer), so buckets agree at the boundaries.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Tensor, fn


def relative_buckets(num_buckets: int, max_distance: int, bidirectional: bool) -> np.ndarray:
    """Bucket of every relative position ``r`` in ``[-max_distance, max_distance]`` (index ``r + max_distance``)."""
    rel = np.arange(-max_distance, max_distance + 1, dtype=np.int64)
    out = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        out += (rel > 0).astype(np.int64) * num_buckets
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    exact = num_buckets // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(rel.astype(np.float32) / np.float32(exact)) / np.float32(math.log(max_distance / exact))
                  * np.float32(num_buckets - exact))
    large = np.minimum(exact + np.where(rel < exact, 0, scaled).astype(np.int64), num_buckets - 1)
    return out + np.where(rel < exact, rel, large)


def relative_position_bias(queries: Tensor, keys: Tensor, name: str, heads: int, num_buckets: int,
                           max_distance: int, bidirectional: bool) -> Tensor:
    """Bias [1, heads, q, k] of query positions ``queries`` [q] against key positions ``keys`` [k]
    (i64), from the embedding ``<name>.weight`` [num_buckets, heads]."""
    g = queries.builder
    rel = keys.reshape(1, keys.shape[0]) - queries.reshape(queries.shape[0], 1)
    rel = fn.minimum(fn.maximum(rel, g.constant(-max_distance, "i64")), g.constant(max_distance, "i64"))
    table = g.constant(relative_buckets(num_buckets, max_distance, bidirectional).tolist(), "i64")
    buckets = fn.gather(table, rel + max_distance, axis=0)
    bias = fn.gather(g.param(f"{name}.weight", [num_buckets, heads]), buckets, axis=0)  # [q, k, heads]
    return bias.transpose(2, 0, 1).reshape(1, heads, queries.shape[0], keys.shape[0])
