"""Causal self-attention for decoder-only models, over the sequence itself or over a static KV cache.

One `CausalAttention` serves all layers of one graph. Without a cache, keys are the sequence:
query ``i`` sees key ``j`` iff ``j <= i`` and ``mask[j]``. With a cache (incremental decoding), the
graph takes per layer ``past_key_values.{i}.key``/``.value`` [batch, kv_heads, cache, head_dim] as
inputs, writes this call's keys/values at slot ``cache_position`` with ``dynamic_update_slice`` and
returns the updated caches as outputs ``present.{i}.key``/``.value`` (the names ONNX decoders use;
inputs and outputs need distinct names there). Shapes are static: the same graph serves the
prefill (seq = prompt length) and every step (seq = 1). Query ``i`` sits at slot
``cache_position + i`` and sees slot ``j`` iff ``j <= cache_position + i`` and ``mask[j]``
(``attention_mask`` [batch, cache]). Sliding windows (Mistral, Qwen2, GPT-Neo local layers)
further require ``j > slot - window``, on slot indices as transformers counts them (left padding
included). Masks are built once per window size from ``iota`` and shared by the layers.
"""

from __future__ import annotations

from ..ir import Tensor, fn

PAST, PRESENT = "past_key_values.", "present."  # name prefixes of the cache inputs / updated-cache outputs


class CausalAttention:
    """Masks and (when ``cache_position`` is given) the static KV cache of one decoder graph.
    ``mask`` [batch, keys]: 1 for real tokens, 0 for padding (keys = seq, or the cache length)."""

    def __init__(self, mask: Tensor, cache_position: Tensor | None = None):
        self.keep = fn.ne(mask, mask.builder.constant(0, mask.dtype)).reshape(mask.shape[0], 1, 1, mask.shape[1])
        self.offset = cache_position
        self.caches: dict[str, Tensor] = {}  # updated cache tensors by output name
        self._masks: dict[int | None, Tensor] = {}

    def mask(self, queries: Tensor, window: int | None = None) -> Tensor:
        """Bool mask [batch, 1, seq, keys] for ``queries`` [batch, heads, seq, head_dim]."""
        if window not in self._masks:
            g, seq, keys = queries.builder, queries.shape[2], self.keep.shape[-1]
            slot = g.add("iota", shape=[seq, keys], axis=0, dtype="i64")
            if self.offset is not None:
                slot = slot + self.offset
            key = g.add("iota", shape=[seq, keys], axis=1, dtype="i64")
            visible = fn.le(key, slot)
            if window is not None:
                visible = fn.logical_and(visible, fn.gt(key, slot - window))
            self._masks[window] = fn.logical_and(self.keep, visible)
        return self._masks[window]

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int, *, window: int | None = None,
                 scale: float | None = None) -> Tensor:
        """Attention of ``q`` [batch, heads, seq, d] over this call's ``k``/``v`` [batch, kv_heads, seq, d]
        (and, when cached, everything before them in layer ``layer``'s cache)."""
        if self.offset is not None:
            k, v = self._write(layer, "key", k), self._write(layer, "value", v)
        return fn.attention(q, k, v, self.mask(q, window), scale=scale)

    def _write(self, layer: int, kind: str, x: Tensor) -> Tensor:
        g = x.builder
        b, heads, _, d = x.shape
        cache = g.input(f"{PAST}{layer}.{kind}", [b, heads, "cache", d], x.dtype)
        zero = g.constant(0, "i64")
        self.caches[f"{PRESENT}{layer}.{kind}"] = out = fn.dynamic_update_slice(cache, x, zero, zero, self.offset, zero)
        return out
