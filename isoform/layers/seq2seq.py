"""Cross attention of encoder-decoder decoders over the encoder output. (Their causal self-attention,
cached or not, is `isoform.layers.causal.CausalAttention` with ``part="decoder"``.)

Keys and values come from a callable: computed from the encoder states (task graph, encoder graph)
or taken as inputs of the cached decoder graph, computed once per input by the encoder graph, named
``past_key_values.{i}.encoder.key`` / ``.value`` (outputs ``present.{i}.encoder.key`` of the encoder
graph), as Optimum names them; see `cross_cache_name`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Tensor, fn
from .attention import attention_mask
from .causal import cache_name

ENCODER = "encoder"


def cross_cache_name(prefix: str, layer: int, kind: str) -> str:
    """Name of layer ``layer``'s cross-attention ``kind`` (key/value) cache with ``prefix`` (PAST/PRESENT)."""
    return cache_name(prefix, layer, kind, ENCODER)


class CrossAttention:
    """Attention over the encoder output: ``kv(layer)`` gives that layer's keys and values
    [batch, heads, source, head_dim]; ``mask`` [batch, source] is the encoder's padding mask."""

    def __init__(self, mask: Tensor, kv: Callable[[int], tuple[Tensor, Tensor]]):
        self.keep = attention_mask(mask)
        self.kv = kv

    def __call__(self, q: Tensor, layer: int, *, scale: float | None = None) -> Tensor:
        k, v = self.kv(layer)
        return q.builder.tap("cross_attentions", fn.attention(q, k, v, self.keep, scale=scale))
