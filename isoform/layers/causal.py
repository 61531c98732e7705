"""Causal self-attention over the sequence itself or over a static KV cache: the one module that
writes KV caches, for decoder-only models and the decoders of encoder-decoder models alike.

Without a cache, keys are the sequence: query ``i`` sees key ``j`` iff ``j <= i`` and ``mask[j]``.
With a cache (incremental decoding), the graph takes per layer a cache input
[batch, kv_heads, cache, head_dim], writes this call's keys/values at slot ``cache_position`` with
``dynamic_update_slice`` and returns the updated cache as an output. Names follow Hugging Face
Optimum's ONNX decoders (inputs and outputs need distinct names there), see `cache_name`:
``past_key_values.{i}.key`` in / ``present.{i}.key`` out for decoder-only models,
``past_key_values.{i}.decoder.key`` / ``present.{i}.decoder.key`` for the self-attention of an
encoder-decoder, whose cross-attention keys/values are ``...{i}.encoder.key`` (see `layers.seq2seq`).

Shapes are static: the same graph serves the prefill (seq = prompt length) and every step (seq = 1).
Query ``i`` sits at slot ``cache_position + i`` and sees slot ``j`` iff ``j <= cache_position + i``
and ``mask[j]`` (``attention_mask`` [batch, cache]). Sliding windows (Mistral, Qwen2, GPT-Neo local
layers) further require ``j > slot - window``, on slot indices as transformers counts them (left
padding included). Masks are built once per window size from ``iota`` and shared by the layers.
"""

from __future__ import annotations

from ..ir import Tensor, fn
from ..ir.dims import Dim

PAST, PRESENT = "past_key_values", "present"  # prefixes of the cache inputs / updated-cache outputs


def cache_name(prefix: str, layer: int, kind: str, part: str | None = None) -> str:
    """``{prefix}.{layer}.{kind}``, or ``{prefix}.{layer}.{part}.{kind}`` for the ``decoder`` (self)
    and ``encoder`` (cross) caches of an encoder-decoder; ``kind`` is ``key`` or ``value``."""
    return ".".join([prefix, str(layer), *([part] if part else []), kind])


class CausalAttention:
    """Masks and (when ``cache_position`` is given) the static KV cache of one decoder graph.
    ``mask`` [batch, keys]: 1 for real tokens, 0 for padding (keys = seq, or the cache length);
    ``part``: the cache names' part (``"decoder"`` in encoder-decoders, see `cache_name`)."""

    def __init__(self, mask: Tensor, cache_position: Tensor | None = None, part: str | None = None):
        self.keep = fn.ne(mask, mask.builder.constant(0, mask.dtype)).reshape(mask.shape[0], 1, 1, mask.shape[1])
        self.offset = cache_position
        self.part = part
        self.caches: dict[str, Tensor] = {}  # updated cache tensors by output name
        self._masks: dict[int | None, Tensor] = {}

    @property
    def key_length(self) -> Dim:
        """Number of key slots: the sequence length, or the cache length."""
        return self.keep.shape[-1]

    def mask(self, queries: Tensor, window: int | None = None) -> Tensor:
        """Bool mask [batch, 1, seq, keys] for ``queries`` [batch, heads, seq, head_dim]."""
        if window not in self._masks:
            g, seq, keys = queries.builder, queries.shape[2], self.key_length
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
                 scale: float | None = None, bias: Tensor | None = None) -> Tensor:
        """Attention of ``q`` [batch, heads, seq, d] over this call's ``k``/``v`` [batch, kv_heads, seq, d]
        (and, when cached, everything before them in layer ``layer``'s cache). ``bias``
        [1, heads, seq, keys] is added to the scores of visible keys (T5's position bias)."""
        if self.offset is not None:
            k, v = self._write(layer, "key", k), self._write(layer, "value", v)
        mask = self.mask(q, window)
        if bias is not None:
            mask = fn.where(mask, bias, q.builder.constant(q.dtype.lowest, q.dtype))
        return fn.attention(q, k, v, mask, scale=scale)

    def _write(self, layer: int, kind: str, x: Tensor) -> Tensor:
        g = x.builder
        b, heads, _, d = x.shape
        cache = g.input(cache_name(PAST, layer, kind, self.part), [b, heads, "cache", d], x.dtype)
        zero = g.constant(0, "i64")
        out = fn.dynamic_update_slice(cache, x, zero, zero, self.offset, zero)
        self.caches[cache_name(PRESENT, layer, kind, self.part)] = out
        return out
