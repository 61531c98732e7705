"""Multi-head attention: head split/merge, padding masks, and self/cross attention with the
Hugging Face module names ``<name>.query``, ``<name>.key``, ``<name>.value``."""

from __future__ import annotations

from ..ir import Tensor, fn
from .linear import linear


def split_heads(x: Tensor, heads: int) -> Tensor:
    """[batch, seq, heads*d] -> [batch, heads, seq, d]."""
    b, s, width = x.shape
    return x.reshape(b, s, heads, width // heads).transpose(0, 2, 1, 3)


def merge_heads(x: Tensor) -> Tensor:
    """[batch, heads, seq, d] -> [batch, seq, heads*d]."""
    b, h, s, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, h * d)


def attention_mask(mask: Tensor) -> Tensor:
    """A padding mask [batch, seq] (1 = token, 0 = padding, any integer dtype) as the bool mask
    [batch, 1, 1, seq] the ``attention`` op broadcasts over heads and queries."""
    keep = fn.ne(mask, mask.builder.constant(0, mask.dtype))
    return keep.reshape(mask.shape[0], 1, 1, mask.shape[1])


def multi_head_attention(x: Tensor, name: str, dim: int, heads: int, mask: Tensor | None = None, *,
                         context: Tensor | None = None, causal: bool = False,
                         names: tuple[str, str, str] = ("query", "key", "value")) -> Tensor:
    """Scaled dot-product attention of ``x`` over itself (or over ``context``: cross attention),
    with projections ``<name>.<query|key|value>`` [dim -> dim] and ``heads`` heads; returns the
    merged context [batch, seq, dim] (the output projection is the caller's, its name varies).
    Scores are scaled by 1/sqrt(head_dim) as transformers does."""
    kv = x if context is None else context
    q, k, v = (split_heads(linear(t, f"{name}.{n}", dim, dim, shard="column"), heads) for t, n in zip((x, kv, kv), names))
    kind = "attentions" if context is None else "cross_attentions"
    return merge_heads(x.builder.tap(kind, fn.attention(q, k, v, mask, causal=causal)))
