"""DeBERTa's disentangled attention (He et al., 2020): content-to-content scores plus content-to-
position (c2p) and position-to-content (p2c) scores over a table of relative-position embeddings.

transformers projects the whole relative table (``2 * span`` rows) in every layer, multiplies it
with every query/key, then gathers the column of each (query, key) pair's relative position. Both
scores only ever read the row of a pair's distance ``query - key``, which lies in
``[-(seq - 1), seq - 1]``, so here the table is first gathered by distance into ``2 * seq`` rows
(`distance_rows`), which are projected and multiplied instead; the c2p/p2c column of a pair is then
``distance + seq`` (`take_by_distance`). The arithmetic per pair is the same, and short sequences
project fewer rows than the table has.

A distance's table row (clamped, optionally log-bucketed) is a NumPy table computed as
transformers computes it in torch (float32 ``log``/``ceil``), so buckets agree at the boundaries.
"""

from __future__ import annotations

import numpy as np

from ..ir import Tensor, dims, fn


def log_buckets(distances: np.ndarray, buckets: int, max_position: int) -> np.ndarray:
    """transformers' ``make_log_bucket_position``: distances below ``buckets // 2`` as they are,
    larger ones log-spaced up to ``max_position``."""
    mid = buckets // 2
    far = np.abs(distances)
    far = np.where((distances < mid) & (distances > -mid), mid - 1, far)
    log = np.log(far.astype(np.float32) / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
    log = np.ceil(log * np.float32(mid - 1)) + np.float32(mid)
    return np.where(far <= mid, distances.astype(np.float32), log * np.sign(distances)).astype(np.int64)


def row_of_distance(span: int, reach: int, buckets: int = 0, max_position: int = 0) -> np.ndarray:
    """The relative-table row of every distance ``d`` in ``[-reach, reach]`` (index ``d + reach``):
    ``clamp(bucket(d) + span, 0, 2 * span - 1)``, ``bucket`` the identity unless ``buckets``. Every
    distance beyond ``reach`` has the row of ``±reach`` (the clamp saturates there)."""
    d = np.arange(-reach, reach + 1, dtype=np.int64)
    if buckets > 0:
        d = log_buckets(d, buckets, max_position)
    return np.clip(d + span, 0, 2 * span - 1)


def distance_rows(table: Tensor, seq: dims.Dim, rows: np.ndarray) -> Tensor:
    """Rows of the relative ``table`` for the distances ``-seq .. seq - 1`` ([2 * seq, width]), by
    ``rows`` from `row_of_distance`."""
    g = table.builder
    reach = (len(rows) - 1) // 2
    d = g.add("iota", shape=[dims.mul(2, seq)], axis=0, dtype="i64") - _length(table, seq)
    d = fn.minimum(fn.maximum(d, g.constant(-reach, "i64")), g.constant(reach, "i64"))
    return fn.gather(table, fn.gather(g.constant(rows.tolist(), "i64"), d + reach, axis=0), axis=0)


def take_by_distance(scores: Tensor, *, by_key: bool = False) -> Tensor:
    """Scores [batch, heads, n, 2n] of n states against the `distance_rows` of ``-n .. n - 1`` ->
    [batch, heads, n (query), n (key)], each pair's column of its distance ``query - key``:
    ``out[q, k] = scores[q, q - k + n]`` (c2p: rows are queries) or, ``by_key``,
    ``scores[k, q - k + n]`` (p2c: rows are keys)."""
    g = scores.builder
    b, h, n, _ = scores.shape
    q = g.add("iota", shape=[n, n], axis=0, dtype="i64")
    k = g.add("iota", shape=[n, n], axis=1, dtype="i64")
    size = _length(scores, n)
    flat = k * (size * 2 - 1) + q + size if by_key else q * (size * 2 + 1) - k + size
    return fn.gather(scores.reshape(b, h, dims.mul(n, dims.mul(2, n))), flat.reshape(dims.mul(n, n)), axis=2
                     ).reshape(b, h, n, n)


def _length(like: Tensor, n: dims.Dim) -> Tensor:
    """The size ``n`` (a symbolic dim) as an i64 scalar tensor."""
    return like.builder.add("iota", shape=[n], axis=0, dtype="i64").max(0) + 1
