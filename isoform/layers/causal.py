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
and ``mask[j]`` (``attention_mask`` [batch, cache]).

With a growing cache (``past=True``, Optimum's ONNX decoders), the cache inputs are
[batch, kv_heads, past, head_dim] (past may be 0) and the outputs are ``concat(past, new)`` along
axis 2, [batch, kv_heads, past+seq, head_dim]; ``attention_mask`` [batch, past+seq] (a graph
input's dims are plain names: `growing_mask` gives it that axis) and query ``i`` sits at slot
``past + i`` (`past_length`), masked as above. Sliding windows (Mistral, Qwen2, GPT-Neo local
layers) further require ``j > slot - window``, on slot indices as transformers counts them (left
padding included). Masks are built once per window size from ``iota`` and shared by the layers.
"""

from __future__ import annotations

from ..errors import GraphError
from ..ir import GraphBuilder, Tensor, fn
from ..ir import dims as D
from ..ir.dims import Dim

PAST, PRESENT = "past_key_values", "present"  # prefixes of the cache inputs / updated-cache outputs
PAST_DIM = "past"  # the symbolic length of growing caches (``past=True``)


def cache_name(prefix: str, layer: int, kind: str, part: str | None = None) -> str:
    """``{prefix}.{layer}.{kind}``, or ``{prefix}.{layer}.{part}.{kind}`` for the ``decoder`` (self)
    and ``encoder`` (cross) caches of an encoder-decoder; ``kind`` is ``key`` or ``value``."""
    return ".".join([prefix, str(layer), *([part] if part else []), kind])


class CausalAttention:
    """Masks and (when ``cache_position`` is given) the static KV cache of one decoder graph, or
    (``past=True``) its growing cache. ``mask`` [batch, keys]: 1 for real tokens, 0 for padding
    (keys = seq, the cache length, or past+seq); ``part``: the cache names' part (``"decoder"`` in
    encoder-decoders, see `cache_name`). ``offset``: the slot of the first query (None: 0)."""

    def __init__(self, mask: Tensor, cache_position: Tensor | None = None, part: str | None = None, *,
                 past: bool = False, present: bool = False):
        """``present=True`` without a cache: this call's keys/values are the ``present.*`` outputs
        (Optimum's first decoder call, which has no past inputs)."""
        if past and cache_position is not None:
            raise GraphError("a growing cache (past=True) starts at the past length: cache_position must be None")
        self.keep = fn.ne(mask, mask.builder.constant(0, mask.dtype)).reshape(mask.shape[0], 1, 1, mask.shape[1])
        self.past, self.present = past, present
        self.offset = past_length(mask.builder) if past else cache_position
        self.part = part
        self.caches: dict[str, Tensor] = {}  # updated cache tensors by output name
        self._masks: dict[int | None, Tensor] = {}

    @property
    def key_length(self) -> Dim:
        """Number of key slots: the sequence length, the cache length, or past+seq (growing cache)."""
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
        if self.past:
            k, v = self._append(layer, "key", k), self._append(layer, "value", v)
        elif self.offset is not None:
            k, v = self._write(layer, "key", k), self._write(layer, "value", v)
        elif self.present:
            self.caches[cache_name(PRESENT, layer, "key", self.part)] = k
            self.caches[cache_name(PRESENT, layer, "value", self.part)] = v
        mask = self.mask(q, window)
        if bias is not None:
            mask = fn.where(mask, bias, q.builder.constant(q.dtype.lowest, q.dtype))
        return q.builder.tap("attentions", fn.attention(q, k, v, mask, scale=scale))

    def _write(self, layer: int, kind: str, x: Tensor) -> Tensor:
        g = x.builder
        b, heads, _, d = x.shape
        cache = g.input(cache_name(PAST, layer, kind, self.part), [b, heads, "cache", d], x.dtype,
                        sharding=(None, "model", None, None))  # split over heads, as the column-parallel k/v
        zero = g.constant(0, "i64")
        out = fn.dynamic_update_slice(cache, x, zero, zero, self.offset, zero)
        self.caches[cache_name(PRESENT, layer, kind, self.part)] = out
        return out

    def _append(self, layer: int, kind: str, x: Tensor) -> Tensor:
        b, heads, _, d = x.shape
        past = x.builder.input(cache_name(PAST, layer, kind, self.part), [b, heads, PAST_DIM, d], x.dtype,
                               sharding=(None, "model", None, None))  # as the static cache
        out = fn.concat(past, x, axis=2)
        self.caches[cache_name(PRESENT, layer, kind, self.part)] = out
        return out


def growing_mask(mask: Tensor, seq: Dim) -> Tensor:
    """The ``attention_mask`` input [batch, keys] of a growing-cache graph as [batch, past+seq] (the
    key axis of its caches; ``seq``: the query count), for `CausalAttention` with ``past=True``."""
    index = mask.builder.add("iota", shape=[D.add(PAST_DIM, seq)], axis=0, dtype="i64")
    return fn.gather(mask, index, axis=1)


def past_length(g: GraphBuilder) -> Tensor:
    """The growing caches' length ``past`` (the symbolic dim of their axis 2) as an i64 scalar."""
    return g.add("iota", shape=[f"{PAST_DIM}+1"], axis=0, dtype="i64")[-1]
