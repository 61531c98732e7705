"""Embedding lookups and their transpose (the tied language-model decoder)."""

from __future__ import annotations

from ..ir import Tensor, fn


def embedding(ids: Tensor, name: str, num_embeddings: int, dim: int, *, vocab_parallel: bool = False) -> Tensor:
    """Rows of ``<name>.weight`` [num_embeddings, dim] picked by integer ``ids``: [..., dim].
    ``vocab_parallel``: the rows split over the "model" axis (word embeddings, tied LM heads)."""
    table = ids.builder.param(f"{name}.weight", [num_embeddings, dim], sharding=("model", None) if vocab_parallel else None)
    return fn.gather(table, ids, axis=0)


def unembed(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Scores against every row of an embedding-shaped ``weight`` [vocab, dim]: ``x @ weight.T + bias``.
    Used by LM decoders, whose weight is often the word-embedding parameter itself (tied)."""
    y = x @ weight.transpose(1, 0)
    return y if bias is None else y + bias
