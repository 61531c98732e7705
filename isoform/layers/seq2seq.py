"""Attention of encoder-decoder decoders: causal self-attention over the decoder tokens (optionally
through a static KV cache) and cross attention over the encoder output.

Self attention takes its masks from `CausalAttention` (query ``i`` at slot ``cache_position + i``
sees slot ``j <= `` its own, where ``attention_mask`` is 1). With ``cache_position`` the graph takes
per layer ``past.{i}.key``/``past.{i}.value`` [batch, heads, cache, head_dim] inputs, writes this
call's keys/values at ``cache_position`` with ``dynamic_update_slice`` and returns them as outputs
``present.{i}.key``/``present.{i}.value``. Cross attention reads keys/values from a callable: computed
from the encoder states (task graph) or taken as graph inputs computed once per input (step graph).
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Tensor, fn
from .attention import attention_mask
from .causal import CausalAttention

PAST, PRESENT = "past.", "present."


class SelfAttention:
    """Causal decoder self-attention, cached when ``cache_position`` is given; see the module doc."""

    def __init__(self, mask: Tensor, cache_position: Tensor | None = None):
        self.causal = CausalAttention(mask, cache_position)
        self.offset = cache_position
        self.caches: dict[str, Tensor] = {}  # updated caches by output name

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int, *, bias: Tensor | None = None,
                 scale: float | None = None) -> Tensor:
        """Attention of ``q`` over this call's ``k``/``v`` (and the cached slots before them); ``bias``
        [1, heads, seq, keys] is added to the scores of visible keys (T5's position bias)."""
        if self.offset is not None:
            k, v = self._write(f"{layer}.key", k), self._write(f"{layer}.value", v)
        mask = self.causal.mask(q)
        if bias is not None:
            mask = fn.where(mask, bias, q.builder.constant(q.dtype.lowest, q.dtype))
        return fn.attention(q, k, v, mask, scale=scale)

    def _write(self, name: str, x: Tensor) -> Tensor:
        g = x.builder
        b, heads, _, d = x.shape
        zero = g.constant(0, "i64")
        cache = g.input(PAST + name, [b, heads, "cache", d], x.dtype)
        self.caches[PRESENT + name] = fn.dynamic_update_slice(cache, x, zero, zero, self.offset, zero)
        return self.caches[PRESENT + name]


class CrossAttention:
    """Attention over the encoder output: ``kv(layer)`` gives that layer's keys and values
    [batch, heads, source, head_dim]; ``mask`` [batch, source] is the encoder's padding mask."""

    def __init__(self, mask: Tensor, kv: Callable[[int], tuple[Tensor, Tensor]]):
        self.keep = attention_mask(mask)
        self.kv = kv

    def __call__(self, q: Tensor, layer: int, *, scale: float | None = None) -> Tensor:
        k, v = self.kv(layer)
        return fn.attention(q, k, v, self.keep, scale=scale)
